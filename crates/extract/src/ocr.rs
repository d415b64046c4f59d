//! OCR: image preprocessing (grayscale, resampling to a size tesseract reads well, despeckling,
//! binarisation to one bit per pixel) and one lazily created tesseract engine.

use image::imageops::{self, FilterType};
use image::GrayImage;
use tesseract::{PageSegMode, Tesseract};

use crate::error::ExtractError;

/// Pages (images or rendered PDF pages) narrower than this are upscaled 2x: tesseract reads
/// best when x-heights are ~20–30 px.
const UPSCALE_BELOW_WIDTH: u32 = 1500;
/// Pages whose typical glyph (the median height of the ink components that are not specks) is
/// taller than this many pixels are shrunk until it is this tall. Tesseract scales every text
/// line to a fixed height before the LSTM reads it, so pixels beyond that only cost layout
/// analysis time. The shared corpus has glyphs of 25–27 px on its 300 dpi scans and 17 px on
/// its 200 dpi scanned PDF, which reads as well; shrinking to 18 px cut a 300 dpi page's
/// instructions by 15% (to 22 px: 7%). Targets of 17–20 px gave overall CERs of 2.67–2.74%
/// (2.73% unshrunk), the pages differing by a character or two.
const MAX_GLYPH_HEIGHT: u32 = 17;
/// Resolution assumed for images that do not say (a page scan).
const DEFAULT_DPI: u32 = 300;
/// A page whose OCR text has fewer non-whitespace characters than this counts as empty.
pub const MIN_TEXT_CHARS: usize = 20;

/// The OCR engine of this process (created on first use: most files never need it).
pub struct Ocr {
    lang: String,
    datapath: Option<String>,
    engine: Option<Tesseract>,
}

impl std::fmt::Debug for Ocr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ocr")
            .field("lang", &self.lang)
            .field("datapath", &self.datapath)
            .field("ready", &self.engine.is_some())
            .finish()
    }
}

/// Text recognised on one page, or a warning why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageText {
    pub text: String,
    pub warning: Option<String>,
}

impl Ocr {
    pub fn new(lang: &str, datapath: Option<&str>) -> Self {
        Ocr {
            lang: lang.to_owned(),
            datapath: datapath.map(str::to_owned),
            engine: None,
        }
    }

    fn engine(&mut self) -> Result<Tesseract, ExtractError> {
        if let Some(engine) = self.engine.take() {
            return Ok(engine);
        }
        let mut engine =
            Tesseract::new(self.datapath.as_deref(), Some(&self.lang)).map_err(|e| {
                ExtractError::internal(format_args!(
                "cannot start OCR for language {:?}: {e} (is tesseract's language data installed?)",
                self.lang
            ))
            })?;
        engine.set_page_seg_mode(PageSegMode::PsmAuto);
        // The fixed-pitch search only shapes how blobs are grouped into words before the LSTM
        // reads whole lines. Off, it saved 4% of a page's instructions with identical text on
        // the shared corpus.
        engine
            .set_variable("textord_disable_pitch_test", "1")
            .map_err(|e| ExtractError::internal(format_args!("cannot configure OCR: {e}")))
    }

    /// Recognise the text of one page. `dpi` is the scan resolution if known.
    /// `page` only labels the warning.
    pub fn recognize(
        &mut self,
        image: GrayImage,
        dpi: Option<u32>,
        page: u32,
    ) -> Result<PageText, ExtractError> {
        let bitmap = prepare(image, dpi.unwrap_or(DEFAULT_DPI));
        let too_big = || ExtractError::too_large("the image is too large to OCR");
        let w = i32::try_from(bitmap.width).map_err(|_| too_big())?;
        let h = i32::try_from(bitmap.height).map_err(|_| too_big())?;
        let stride = i32::try_from(bitmap.stride()).map_err(|_| too_big())?;
        let failed =
            |e: &dyn std::fmt::Display| ExtractError::internal(format_args!("OCR failed: {e}"));

        let engine = self.engine()?;
        // One bit per pixel: tesseract then keeps a 1 MB copy of a letter page instead of
        // 8-bit copies of the page, its grey version and its threshold map (~25 MB at 300 dpi),
        // and skips its own thresholding (ours already ran).
        let engine = engine
            .set_frame(&bitmap.bits, w, h, 0, stride)
            .map_err(|e| failed(&e))?;
        let dpi = i32::try_from(bitmap.dpi).map_err(|_| too_big())?;
        drop(bitmap);
        // Tesseract guesses 70 dpi without this, which hurts its size heuristics.
        let engine = engine.set_source_resolution(dpi);
        let mut engine = engine.recognize().map_err(|e| failed(&e))?;
        let raw = engine.get_text().map_err(|e| failed(&e))?;
        self.engine = Some(engine);

        let text = crate::text::normalize(&raw);
        let visible = text.chars().filter(|c| !c.is_whitespace()).count();
        if visible < MIN_TEXT_CHARS {
            return Ok(PageText {
                text: String::new(),
                warning: Some(format!(
                    "page {page}: OCR found almost no text (scan too faint or not text)"
                )),
            });
        }
        Ok(PageText {
            text,
            warning: None,
        })
    }
}

/// A binarised page packed one bit per pixel, most significant bit first, 1 = white: the
/// layout tesseract's `SetImage` takes for `bytes_per_pixel` 0.
#[derive(Debug)]
struct Bitmap {
    bits: Vec<u8>,
    width: u32,
    height: u32,
    dpi: u32,
}

impl Bitmap {
    fn stride(&self) -> usize {
        (self.width as usize).div_ceil(8)
    }
}

/// Turn a page into what tesseract reads: upscale narrow pages, drop isolated specks, shrink
/// pages with large text, binarise with Otsu's threshold (measured on the shared corpus:
/// despeckling took the heavy-noise scan from 19.1% to 5.9% CER and the scanned PDF from
/// 10.3%/5.2% to 2.2%/2.5%; Otsu after it lowered the overall CER from 2.79% to 2.58%; a 3x3
/// median was slower and worse on clean pages).
fn prepare(mut image: GrayImage, mut dpi: u32) -> Bitmap {
    let upscaled = image.width() < UPSCALE_BELOW_WIDTH;
    if upscaled {
        image = imageops::resize(
            &image,
            image.width() * 2,
            image.height() * 2,
            FilterType::CatmullRom,
        );
        dpi *= 2;
    }
    let glyph_height = despeckle(&mut image, dpi);
    if let Some(glyph) = glyph_height.filter(|&g| !upscaled && g > MAX_GLYPH_HEIGHT) {
        let (w, h) = image.dimensions();
        let shrink =
            |side: u32| (u64::from(side) * u64::from(MAX_GLYPH_HEIGHT) / u64::from(glyph)) as u32;
        let (new_w, new_h) = (shrink(w).max(1), shrink(h).max(1));
        image = shrink_area(&image, new_w, new_h);
        dpi = (u64::from(dpi) * u64::from(new_w) / u64::from(w)).max(1) as u32;
    }
    let threshold = otsu_threshold(&image);
    pack_bits(&image, threshold, dpi)
}

/// Binarise at `threshold` (darker than or equal to it is ink) and pack one bit per pixel.
fn pack_bits(image: &GrayImage, threshold: u8, dpi: u32) -> Bitmap {
    let (width, height) = image.dimensions();
    let stride = (width as usize).div_ceil(8);
    let mut bits = vec![0u8; stride * height as usize];
    if width > 0 {
        for (row, out) in image
            .as_raw()
            .chunks_exact(width as usize)
            .zip(bits.chunks_exact_mut(stride))
        {
            for (byte, pixels) in out.iter_mut().zip(row.chunks(8)) {
                for (bit, &p) in pixels.iter().enumerate() {
                    if p > threshold {
                        *byte |= 0x80 >> bit;
                    }
                }
            }
        }
    }
    Bitmap {
        bits,
        width,
        height,
        dpi,
    }
}

/// Shrink `image` to `new_w` x `new_h` (each at most the old size) by area averaging: every
/// output pixel is the mean of the source area it covers, partly covered source pixels
/// weighted by the part. One pass over the source and one row of accumulators (the `image`
/// crate's filters keep a float copy of the whole page).
fn shrink_area(image: &GrayImage, new_w: u32, new_h: u32) -> GrayImage {
    let (sw, sh) = (image.width() as usize, image.height() as usize);
    let (nw, nh) = (new_w as usize, new_h as usize);
    assert!(
        0 < nw && nw <= sw && 0 < nh && nh <= sh,
        "shrink_area only shrinks"
    );
    // Coordinates are scaled so that a source pixel is `nw` (or `nh`) units wide and an
    // output pixel `sw` (or `sh`): every overlap is then a whole number of units. Per source
    // column: the output column it starts in and how many of its units fall there (the rest,
    // if any, fall in the next one).
    let columns: Vec<(usize, u32)> = (0..sw)
        .map(|x| {
            let start = x * nw;
            let out_x = start / sw;
            let here = ((out_x + 1) * sw - start).min(nw);
            (out_x, here as u32)
        })
        .collect();
    let unit = nw as u32;
    let scale = 1.0 / (sw as f64 * sh as f64);
    // One spare cell: the last source column spills nothing into it.
    let mut row = vec![0u32; nw + 1];
    let mut acc = vec![0u64; nw];
    let mut out = Vec::with_capacity(nw * nh);
    let mut out_y = 0;
    for (y, src) in image.as_raw().chunks_exact(sw).enumerate() {
        row.fill(0);
        for (&p, &(out_x, here)) in src.iter().zip(&columns) {
            let p = u32::from(p);
            row[out_x] += p * here;
            row[out_x + 1] += p * (unit - here);
        }
        let (start, end) = (y * nh, (y + 1) * nh);
        let boundary = (out_y + 1) * sh;
        let here = (end.min(boundary) - start) as u64;
        for (a, &r) in acc.iter_mut().zip(&row) {
            *a += u64::from(r) * here;
        }
        if end >= boundary {
            // Adding 0.5 and truncating rounds these non-negative means without a libm call.
            out.extend(acc.iter().map(|&a| (a as f64 * scale + 0.5) as u8));
            out_y += 1;
            let next = (end - boundary) as u64;
            for (a, &r) in acc.iter_mut().zip(&row) {
                *a = u64::from(r) * next;
            }
        }
    }
    GrayImage::from_raw(new_w, new_h, out).expect("one byte per output pixel")
}

/// Otsu's global threshold for an 8-bit image.
pub fn otsu_threshold(image: &GrayImage) -> u8 {
    // Four partial histograms: on a page that is mostly paper, one counter incremented for
    // every pixel is a chain of dependent read-modify-writes.
    let mut partial = [[0u64; 256]; 4];
    let mut quads = image.as_raw().chunks_exact(4);
    for quad in &mut quads {
        for (hist, &p) in partial.iter_mut().zip(quad) {
            hist[usize::from(p)] += 1;
        }
    }
    for &p in quads.remainder() {
        partial[0][usize::from(p)] += 1;
    }
    let hist: [u64; 256] = std::array::from_fn(|i| partial.iter().map(|h| h[i]).sum());
    let total: u64 = hist.iter().sum();
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut w_b, mut sum_b, mut best, mut best_t) = (0u64, 0f64, -1f64, 0u8);
    for (t, &n) in hist.iter().enumerate() {
        w_b += n;
        if w_b == 0 {
            continue;
        }
        let w_f = total - w_b;
        if w_f == 0 {
            break;
        }
        sum_b += t as f64 * n as f64;
        let m_b = sum_b / w_b as f64;
        let m_f = (sum_all - sum_b) / w_f as f64;
        let between = w_b as f64 * w_f as f64 * (m_b - m_f) * (m_b - m_f);
        if between > best {
            best = between;
            best_t = t as u8;
        }
    }
    best_t
}

/// Remove isolated specks: small dark connected components with no larger ink nearby (dust
/// and noise in margins and between lines; dots of `i` and full stops sit next to letters
/// and are kept). `dpi` scales the size and distance thresholds. Returns the median height
/// of the larger components (the page's typical glyph height), if it has any.
pub fn despeckle(image: &mut GrayImage, dpi: u32) -> Option<u32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w == 0 || h == 0 {
        return None;
    }
    let scale = f64::from(dpi) / 300.0;
    let max_speck_area = ((120.0 * scale * scale) as usize).max(1);
    let radius = ((12.0 * scale).round() as usize).max(1);
    let threshold = otsu_threshold(image);

    // One byte per pixel for all the bookkeeping (a 300 dpi page is 8.4 M pixels, so every
    // full-page array counts): UNSEEN, then SMALL or BIG once its component is labelled.
    const UNSEEN: u8 = 0;
    const SMALL: u8 = 1;
    const BIG: u8 = 2;
    let mut state = vec![UNSEEN; w * h];
    let mut specks: Vec<u32> = Vec::new();
    let mut speck_ranges: Vec<(usize, usize)> = Vec::new();
    let mut component: Vec<u32> = Vec::new();
    let mut stack: Vec<u32> = Vec::new();
    let mut heights: Vec<u32> = Vec::new();
    let w32 = w as u32;
    {
        let raw = image.as_raw();
        let dark = |i: usize| raw[i] <= threshold;
        for start in 0..w * h {
            if !dark(start) || state[start] != UNSEEN {
                continue;
            }
            // Label 8-connected dark components with an explicit stack (no recursion).
            component.clear();
            state[start] = SMALL;
            stack.push(start as u32);
            let (mut top, mut bottom) = (start / w, start / w);
            while let Some(i) = stack.pop() {
                component.push(i);
                // 32-bit division is several times cheaper than 64-bit and runs for every ink
                // pixel (pages are far below 2^32 pixels).
                let y = (i / w32) as usize;
                let x = i as usize - y * w;
                top = top.min(y);
                bottom = bottom.max(y);
                for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                    for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                        let n = ny * w + nx;
                        if dark(n) && state[n] == UNSEEN {
                            state[n] = SMALL;
                            stack.push(n as u32);
                        }
                    }
                }
            }
            if component.len() > max_speck_area {
                heights.push((bottom - top + 1) as u32);
                for &i in &component {
                    state[i as usize] = BIG;
                }
            } else {
                speck_ranges.push((specks.len(), specks.len() + component.len()));
                specks.extend_from_slice(&component);
            }
        }
    }
    // Reuse the state array: it becomes "within `radius` of a big component".
    for cell in state.iter_mut() {
        *cell = u8::from(*cell == BIG);
    }
    dilate_in_place(&mut state, w, h, radius);
    let pixels = image.as_mut();
    for (a, b) in speck_ranges {
        let comp = &specks[a..b];
        if !comp.iter().any(|&i| state[i as usize] != 0) {
            for &i in comp {
                pixels[i as usize] = 255;
            }
        }
    }
    if heights.is_empty() {
        return None;
    }
    let middle = heights.len() / 2;
    Some(*heights.select_nth_unstable(middle).1)
}

/// Square dilation of a 0/1 mask by `r` pixels, in place: separable running counts, O(pixels).
/// Both passes read the mask row by row (a column-by-column pass over a page-sized array
/// misses the cache on every pixel); the vertical one keeps the last `r + 1` rows as they
/// were before it overwrote them.
fn dilate_in_place(mask: &mut [u8], w: usize, h: usize, r: usize) {
    let mut line = vec![0u8; w];
    for row in mask.chunks_exact_mut(w) {
        line.copy_from_slice(row);
        let mut count = line[..r.min(w)].iter().filter(|&&b| b != 0).count();
        for x in 0..w {
            if x + r < w && line[x + r] != 0 {
                count += 1;
            }
            if x > r && line[x - r - 1] != 0 {
                count -= 1;
            }
            row[x] = u8::from(count > 0);
        }
    }
    // Per column, how many rows of the window [y - r, y + r] are set.
    let mut counts = vec![0u32; w];
    let add = |counts: &mut [u32], row: &[u8]| {
        for (c, &b) in counts.iter_mut().zip(row) {
            *c += u32::from(b);
        }
    };
    for row in mask.chunks_exact(w).take(r) {
        add(&mut counts, row);
    }
    let mut ring = vec![0u8; (r + 1) * w];
    for y in 0..h {
        if y + r < h {
            add(&mut counts, &mask[(y + r) * w..(y + r + 1) * w]);
        }
        let row = &mut mask[y * w..(y + 1) * w];
        let slot = (y % (r + 1)) * w;
        ring[slot..slot + w].copy_from_slice(row);
        for (cell, &c) in row.iter_mut().zip(&counts) {
            *cell = u8::from(c > 0);
        }
        if y >= r {
            let slot = ((y - r) % (r + 1)) * w;
            for (c, &b) in counts.iter_mut().zip(&ring[slot..slot + w]) {
                *c -= u32::from(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn despeckle_keeps_text_and_drops_isolated_dots() {
        let mut img = GrayImage::from_pixel(200, 200, image::Luma([255]));
        // A big "letter" block and a dot beside it, plus a lone dot far away.
        for y in 50..80 {
            for x in 50..70 {
                img.put_pixel(x, y, image::Luma([0]));
            }
        }
        for (x0, y0) in [(74, 75), (150, 150)] {
            for y in y0..y0 + 4 {
                for x in x0..x0 + 4 {
                    img.put_pixel(x, y, image::Luma([0]));
                }
            }
        }
        let glyph_height = despeckle(&mut img, 300);
        assert_eq!(
            glyph_height,
            Some(30),
            "the letter's height; dots do not count"
        );
        assert_eq!(img.get_pixel(60, 60).0[0], 0, "letter kept");
        assert_eq!(img.get_pixel(75, 76).0[0], 0, "full stop kept");
        assert_eq!(img.get_pixel(151, 151).0[0], 255, "lone speck removed");
    }

    #[test]
    fn otsu_splits_two_levels() {
        let mut img = GrayImage::from_pixel(10, 10, image::Luma([200]));
        for x in 0..10 {
            img.put_pixel(x, 0, image::Luma([20]));
        }
        let t = otsu_threshold(&img);
        assert!((20..200).contains(&t));
    }

    #[test]
    fn shrinking_averages_the_covered_area() {
        // Columns 0, 100, 200 and rows alike: 3x3 -> 2x2 splits the middle pixel in halves.
        let img = GrayImage::from_fn(3, 3, |x, y| image::Luma([(x * 100 + y * 10) as u8]));
        let small = shrink_area(&img, 2, 2);
        // Output (0,0) covers source [0,1.5)²: weights 1, .5 per axis.
        let expect = |xs: [f64; 2], ys: [f64; 2]| {
            let mut sum = 0.0;
            for (i, wx) in [xs[0], xs[1]].iter().enumerate() {
                for (j, wy) in [ys[0], ys[1]].iter().enumerate() {
                    sum += wx * wy * f64::from(img.get_pixel(i as u32, j as u32).0[0]);
                }
            }
            (sum / 2.25).round() as u8
        };
        assert_eq!(small.get_pixel(0, 0).0[0], expect([1.0, 0.5], [1.0, 0.5]));
        assert_eq!(small.dimensions(), (2, 2));
        // A uniform page stays uniform, whatever the ratio.
        let gray = GrayImage::from_pixel(2550, 33, image::Luma([77]));
        let small = shrink_area(&gray, 1700, 22);
        assert!(small.pixels().all(|p| p.0[0] == 77));
        assert_eq!(shrink_area(&gray, 2550, 33), gray, "same size is a copy");
    }

    #[test]
    fn pages_with_large_text_are_shrunk_and_packed_one_bit_per_pixel() {
        // Letters 40 px tall at 300 dpi: shrunk to MAX_GLYPH_HEIGHT, the resolution with them.
        let mut img = GrayImage::from_pixel(1600, 400, image::Luma([230]));
        for letter in 0..30 {
            for y in 100..140 {
                for x in 40 + letter * 50..60 + letter * 50 {
                    img.put_pixel(x, y, image::Luma([20]));
                }
            }
        }
        let bitmap = prepare(img, 300);
        let shrink = |side: u32| side * MAX_GLYPH_HEIGHT / 40;
        assert_eq!(
            (bitmap.width, bitmap.height, bitmap.dpi),
            (shrink(1600), shrink(400), shrink(300))
        );
        assert_eq!(bitmap.bits.len(), bitmap.stride() * bitmap.height as usize);
        let white = |x: u32, y: u32| {
            bitmap.bits[y as usize * bitmap.stride() + x as usize / 8] & (0x80 >> (x % 8)) != 0
        };
        assert!(white(0, 0), "paper is white (1)");
        let (x, y) = (shrink(50), shrink(120));
        assert!(!white(x, y), "ink is black (0)");
    }

    #[test]
    fn packing_pads_rows_to_whole_bytes() {
        let img = GrayImage::from_fn(10, 2, |x, _| {
            image::Luma([if x % 2 == 0 { 0 } else { 255 }])
        });
        let bitmap = pack_bits(&img, 127, 300);
        assert_eq!(bitmap.stride(), 2);
        assert_eq!(
            bitmap.bits,
            [0b0101_0101, 0b0100_0000, 0b0101_0101, 0b0100_0000]
        );
    }

    #[test]
    fn dilation_matches_the_definition() {
        let (w, h) = (37, 23);
        // A fixed pseudo-random sparse mask.
        let mut seed = 12345u32;
        let mask: Vec<u8> = (0..w * h)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                u8::from((seed >> 16).is_multiple_of(29))
            })
            .collect();
        for r in [1, 3, 12, 40] {
            let mut fast = mask.clone();
            dilate_in_place(&mut fast, w, h, r);
            for y in 0..h {
                for x in 0..w {
                    let near = (y.saturating_sub(r)..=(y + r).min(h - 1)).any(|ny| {
                        (x.saturating_sub(r)..=(x + r).min(w - 1)).any(|nx| mask[ny * w + nx] != 0)
                    });
                    assert_eq!(fast[y * w + x], u8::from(near), "r {r} at ({x}, {y})");
                }
            }
        }
    }
}
