//! Raster images (PNG, JPEG, TIFF, WebP, GIF): header-first size checks and bounded decoding
//! to 8-bit grayscale with the `image` crate (the pixels OCR reads).

use std::io::Cursor;

use image::{GrayImage, ImageError, ImageReader, Limits};

use crate::error::ExtractError;
use crate::sniff::ImageFormat;

/// Largest width or height we decode.
pub const MAX_SIDE: u32 = 12_000;
/// Largest pixel count we decode (a 600 dpi A3 scan is ~70 Mpx).
pub const MAX_PIXELS: u64 = 80_000_000;
/// Most memory the decoder may allocate.
const MAX_DECODER_ALLOC: u64 = 512 * 1024 * 1024;

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    limits
}

fn reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.to_image_crate());
    reader.limits(limits());
    reader
}

fn decode_error(format: ImageFormat, e: ImageError) -> ExtractError {
    match e {
        ImageError::Limits(l) => ExtractError::too_large(format_args!(
            "the {} image is too large to decode safely: {l}",
            format.kind().to_uppercase()
        )),
        ImageError::Unsupported(u) => ExtractError::Unsupported(format!(
            "{} variant this reader cannot decode ({u})",
            format.kind().to_uppercase()
        )),
        other => ExtractError::corrupt(format_args!(
            "the {} image is damaged: {other}",
            format.kind().to_uppercase()
        )),
    }
}

/// Decode `bytes` to 8-bit grayscale, checking the declared dimensions before any pixel
/// buffer is allocated (the first frame of animations and multi-page TIFFs).
pub fn decode_gray(bytes: &[u8], format: ImageFormat) -> Result<GrayImage, ExtractError> {
    let (width, height) = reader(bytes, format)
        .into_dimensions()
        .map_err(|e| decode_error(format, e))?;
    check_dimensions(width, height)?;
    let image = reader(bytes, format)
        .decode()
        .map_err(|e| decode_error(format, e))?;
    Ok(image.into_luma8())
}

/// Refuse images over the side or pixel budget.
pub fn check_dimensions(width: u32, height: u32) -> Result<(), ExtractError> {
    if width == 0 || height == 0 {
        return Err(ExtractError::corrupt(format_args!(
            "the image declares an empty size ({width}x{height} pixels)"
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if width > MAX_SIDE || height > MAX_SIDE || pixels > MAX_PIXELS {
        return Err(ExtractError::too_large(format_args!(
            "the image is {width}x{height} pixels; the limit is {MAX_SIDE} pixels a side and \
             {} megapixels",
            MAX_PIXELS / 1_000_000
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimension_budget() {
        assert!(check_dimensions(2550, 3300).is_ok());
        assert_eq!(
            check_dimensions(50_000, 50_000).unwrap_err().kind(),
            "too_large"
        );
        assert_eq!(
            check_dimensions(11_000, 11_000).unwrap_err().kind(),
            "too_large"
        );
        assert_eq!(check_dimensions(0, 10).unwrap_err().kind(), "corrupt");
    }

    #[test]
    fn decodes_a_small_png() {
        let img = GrayImage::from_pixel(3, 2, image::Luma([7]));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let back = decode_gray(&png, ImageFormat::Png).unwrap();
        assert_eq!(back.dimensions(), (3, 2));
        let err = decode_gray(&png[..20], ImageFormat::Png).unwrap_err();
        assert_eq!(err.kind(), "corrupt");
    }
}
