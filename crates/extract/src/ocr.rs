//! OCR: page preprocessing (inversion of light-on-dark pages, evening out uneven light, sizing
//! from the page's own glyphs, despeckling, binarisation to one bit per pixel), the choice
//! per page between the cleaned page, the raw page and orientation detection by tesseract's
//! confidence, and one lazily created tesseract engine.

use image::imageops::{self, FilterType};
use image::GrayImage;
use tesseract::{PageSegMode, Tesseract};

use crate::error::ExtractError;

/// Pages whose typical glyph (the ink-weighted median height of the page's ink components) is
/// taller than this many pixels are shrunk until it is this tall. Tesseract scales every text
/// line to a fixed height before the LSTM reads it, so pixels beyond that only cost layout
/// analysis time. The shared corpus has glyphs of 25–27 px on its 300 dpi scans and 17 px on
/// its 200 dpi scanned PDF, which reads as well; shrinking to 18 px cut a 300 dpi page's
/// instructions by 15% (to 22 px: 7%). Targets of 17–20 px gave overall CERs of 2.67–2.74%
/// (2.73% unshrunk), the pages differing by a character or two.
const MAX_GLYPH_HEIGHT: u32 = 17;
/// The typical glyph of 10–11 pt text scanned at 300 dpi, the size the despeckling thresholds
/// below were measured at. They scale with the page's own glyphs, never with a resolution a
/// file claims (phones write 72 dpi; many PNGs say nothing).
const REFERENCE_GLYPH: u32 = 26;
/// Ink components of at most this many pixels (at the reference glyph size) with no larger
/// ink within `SPECK_RADIUS` pixels are specks.
const SPECK_AREA: u32 = 120;
const SPECK_RADIUS: u32 = 12;
/// Ink components of at most glyph height² / this many pixels are dust, removed even next to
/// letters (a full stop covers about glyph height² / 60).
const DUST_PER_GLYPH: usize = 120;
/// Isolated specks are kept when at least this many like dots stand in an evenly spaced row.
const DOT_ROW: usize = 4;
/// Most isolated specks looked at for rows of dots (a dense table of contents has a few
/// thousand; each costs about 40 bytes).
const MAX_DOT_CANDIDATES: usize = 200_000;
/// A page whose OCR text has fewer non-whitespace characters than this counts as empty.
pub const MIN_TEXT_CHARS: usize = 20;
/// A pass whose mean word confidence reaches this is kept without trying the raw page. The
/// cleaned pages of the shared corpus read at 83–95 (83: the heavy-noise scan) and the
/// generated upright pages at 81–95; the pages read wrongly at 37–44 (sideways and upside
/// down; dot leaders, where neither way reads the spaced dots). A second pass costs a whole
/// page of OCR, so this sits below every page read right.
const SURE: f64 = 75.0;
/// Below this the page may be sideways or upside down (37–42 on the rotated test pages): it
/// is read again with tesseract's orientation and script detection (`osd.traineddata`).
const UPRIGHT_DOUBT: f64 = 50.0;
/// The OCR engine of this process (created on first use: most files never need it).
pub struct Ocr {
    lang: String,
    datapath: Option<String>,
    engine: Option<Tesseract>,
    /// Report every pass on stderr (`--ocr-report`).
    report: bool,
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

/// How a pass showed the page to tesseract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prep {
    /// Light evened out, inverted if dark, despeckled, sized, binarised by us.
    Cleaned,
    /// The page's own grey pixels (only sized), thresholded by tesseract as its CLI does.
    Raw,
}

/// What one pass read.
#[derive(Debug)]
struct Pass {
    prep: Prep,
    text: String,
    /// Tesseract's mean word confidence, 0–100.
    conf: f64,
    /// Confident characters: the characters read × the mean confidence / 100. A pass that
    /// drops text (a dark corner, a faint column) scores lower even if what it kept is sure.
    score: f64,
}

/// Pixels as tesseract's `SetImage` takes them.
enum Frame<'a> {
    Bits(&'a Bitmap),
    Gray(&'a GrayImage, Option<u32>),
}

impl Ocr {
    pub fn new(lang: &str, datapath: Option<&str>) -> Self {
        Ocr {
            lang: lang.to_owned(),
            datapath: datapath.map(str::to_owned),
            engine: None,
            report: false,
        }
    }

    /// Report each OCR pass (preparation, confidence, time) on stderr.
    pub fn report_passes(&mut self, on: bool) {
        self.report = on;
    }

    fn engine(&mut self) -> Result<Tesseract, ExtractError> {
        if let Some(engine) = self.engine.take() {
            return Ok(engine);
        }
        let engine = Tesseract::new(self.datapath.as_deref(), Some(&self.lang)).map_err(|e| {
            ExtractError::internal(format_args!(
                "cannot start OCR for language {:?}: {e} (is tesseract's language data installed?)",
                self.lang
            ))
        })?;
        // The fixed-pitch search only shapes how blobs are grouped into words before the LSTM
        // reads whole lines. Off, it saved 4% of a page's instructions with identical text on
        // the shared corpus.
        engine
            .set_variable("textord_disable_pitch_test", "1")
            .map_err(|e| ExtractError::internal(format_args!("cannot configure OCR: {e}")))
    }

    /// Recognise the text of one page. `dpi` is the scan resolution if known.
    /// `page` only labels the warning.
    ///
    /// The cleaned page is read first. When tesseract is not sure of what it read, the raw
    /// page is read too and the pass with more confident characters kept; when neither pass
    /// is sure, the page may be sideways or upside down, and the better one is read again
    /// with orientation detection.
    pub fn recognize(
        &mut self,
        image: GrayImage,
        dpi: Option<u32>,
        page: u32,
    ) -> Result<PageText, ExtractError> {
        let started = std::time::Instant::now();
        let cleaned = prepare(&image, dpi);
        // The raw page at the cleaned page's size: what a second pass would read, and on a
        // 300 dpi scan under half the pixels of the original, which is not kept.
        let raw = sized(image, cleaned.scale);
        if self.report {
            eprintln!(
                "ocr page {page}: glyphs {:?}, scale {}/{}, inverted {}, light evened {}, \
                 specks {}, dpi {:?}, prepared in {:.2}s",
                cleaned.glyphs,
                cleaned.scale.num,
                cleaned.scale.den,
                cleaned.inverted,
                cleaned.evened,
                cleaned.specks,
                cleaned.bitmap.dpi,
                started.elapsed().as_secs_f64()
            );
        }
        let mut best = self.pass(Frame::Bits(&cleaned.bitmap), Prep::Cleaned, false, page)?;
        if best.conf < UPRIGHT_DOUBT {
            let turned = self.pass(Frame::Bits(&cleaned.bitmap), Prep::Cleaned, true, page)?;
            best = better(best, turned);
        }
        if best.conf < SURE {
            let other = self.pass(
                Frame::Gray(&raw, cleaned.bitmap.dpi),
                Prep::Raw,
                false,
                page,
            )?;
            best = better(best, other);
        }

        let text = best.text;
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

    /// One tesseract run over `frame`.
    fn pass(
        &mut self,
        frame: Frame<'_>,
        prep: Prep,
        osd: bool,
        page: u32,
    ) -> Result<Pass, ExtractError> {
        let started = std::time::Instant::now();
        let too_big = || ExtractError::too_large("the image is too large to OCR");
        let failed =
            |e: &dyn std::fmt::Display| ExtractError::internal(format_args!("OCR failed: {e}"));
        let mut engine = self.engine()?;
        engine.set_page_seg_mode(if osd {
            PageSegMode::PsmAutoOsd
        } else {
            PageSegMode::PsmAuto
        });
        let (engine, dpi) = match frame {
            // One bit per pixel: tesseract then keeps a 1 MB copy of a letter page instead of
            // 8-bit copies of the page, its grey version and its threshold map (~25 MB at
            // 300 dpi), and skips its own thresholding (ours already ran).
            Frame::Bits(bitmap) => {
                let w = i32::try_from(bitmap.width).map_err(|_| too_big())?;
                let h = i32::try_from(bitmap.height).map_err(|_| too_big())?;
                let stride = i32::try_from(bitmap.stride()).map_err(|_| too_big())?;
                let engine = engine
                    .set_frame(&bitmap.bits, w, h, 0, stride)
                    .map_err(|e| failed(&e))?;
                (engine, bitmap.dpi)
            }
            Frame::Gray(image, dpi) => {
                let w = i32::try_from(image.width()).map_err(|_| too_big())?;
                let h = i32::try_from(image.height()).map_err(|_| too_big())?;
                let engine = engine
                    .set_frame(image.as_raw(), w, h, 1, w)
                    .map_err(|e| failed(&e))?;
                (engine, dpi)
            }
        };
        // Tesseract assumes 70 dpi when told nothing, which hurts its size heuristics.
        let engine = match dpi {
            Some(dpi) => engine.set_source_resolution(i32::try_from(dpi).map_err(|_| too_big())?),
            None => engine,
        };
        let mut engine = engine.recognize().map_err(|e| failed(&e))?;
        let raw = engine.get_text().map_err(|e| failed(&e))?;
        // Tesseract's own mean word confidence: asking for it costs nothing after
        // recognition, while its per-word TSV cost 70–135 ms a page.
        let conf = f64::from(engine.mean_text_conf().clamp(0, 100));
        self.engine = Some(engine);
        let text = crate::text::normalize(&raw);
        let score = conf / 100.0 * text.chars().filter(|c| !c.is_whitespace()).count() as f64;
        let pass = Pass {
            prep,
            text,
            conf,
            score,
        };
        if self.report {
            eprintln!(
                "ocr page {page}: {:?}{} conf {:.1} score {:.0} chars {} in {:.2}s",
                pass.prep,
                if osd { " +osd" } else { "" },
                pass.conf,
                pass.score,
                pass.text.chars().filter(|c| !c.is_whitespace()).count(),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(pass)
    }
}

/// The pass with more confident characters (the first on a tie).
fn better(a: Pass, b: Pass) -> Pass {
    if b.score > a.score {
        b
    } else {
        a
    }
}

/// A binarised page packed one bit per pixel, most significant bit first, 1 = white: the
/// layout tesseract's `SetImage` takes for `bytes_per_pixel` 0.
#[derive(Debug)]
struct Bitmap {
    bits: Vec<u8>,
    width: u32,
    height: u32,
    dpi: Option<u32>,
}

impl Bitmap {
    fn stride(&self) -> usize {
        (self.width as usize).div_ceil(8)
    }
}

/// The cleaned page, the scale it was drawn at (1 = the page's own size) and what was done.
#[derive(Debug)]
struct Cleaned {
    bitmap: Bitmap,
    scale: Scale,
    /// The glyph sizes before sizing.
    glyphs: Option<Glyphs>,
    inverted: bool,
    evened: bool,
    specks: usize,
}

/// A size change: `num / den` (both positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scale {
    num: u32,
    den: u32,
}

impl Scale {
    const ONE: Scale = Scale { num: 1, den: 1 };

    /// The larger of two scales.
    fn max(self, other: Scale) -> Scale {
        if u64::from(self.num) * u64::from(other.den) >= u64::from(other.num) * u64::from(self.den)
        {
            self
        } else {
            other
        }
    }

    fn apply(self, side: u32) -> u32 {
        ((u64::from(side) * u64::from(self.num) / u64::from(self.den)) as u32).max(1)
    }
}

/// `image` at `scale` (shrunk by area averaging, enlarged by Catmull-Rom).
fn sized(image: GrayImage, scale: Scale) -> GrayImage {
    let (w, h) = image.dimensions();
    match scale.num.cmp(&scale.den) {
        std::cmp::Ordering::Equal => image,
        std::cmp::Ordering::Less => shrink_area(&image, scale.apply(w), scale.apply(h)),
        std::cmp::Ordering::Greater => imageops::resize(
            &image,
            scale.apply(w),
            scale.apply(h),
            FilterType::CatmullRom,
        ),
    }
}

/// Pages whose typical glyph is smaller than this are enlarged (Catmull-Rom) until it is this
/// tall before binarisation, and no page is shrunk so far that its small print falls below
/// it: thresholding a stroke one pixel wide breaks it. 7.5 pt print at 150 dpi (9 px glyphs)
/// read at 0.15% CER as it was, 0.06–0.09% enlarged to 12 px, 0.04% to 17 px (twice the
/// pixels to lay out, and 80% more time).
const MIN_GLYPH_HEIGHT: u32 = 12;

/// Turn a page into what tesseract reads: invert a light-on-dark page, even out uneven light,
/// enlarge tiny glyphs and shrink large ones, drop isolated specks, binarise with Otsu's
/// threshold (measured on the shared corpus: despeckling took the heavy-noise scan from 19.1%
/// to 5.9% CER and the scanned PDF from 10.3%/5.2% to 2.2%/2.5%; Otsu after it lowered the
/// overall CER from 2.79% to 2.58%; a 3x3 median was slower and worse on clean pages). Every
/// size is read from the page's own glyphs, never from the resolution a file claims.
/// `dpi` is the page's resolution if known (a rendered PDF page); without it the resolution
/// given to tesseract is estimated from the glyph size.
fn prepare(image: &GrayImage, dpi: Option<u32>) -> Cleaned {
    let mut work = image.clone();
    let inverted = mostly_dark(&work);
    if inverted {
        imageops::invert(&mut work);
    }
    let evened = even_out_light(&mut work);
    let mut threshold = otsu_threshold(&work);
    let glyphs = glyph_sizes(&work, threshold);
    let mut scale = Scale::ONE;
    let mut specks = 0;
    if let Some(glyphs) = glyphs {
        if glyphs.typical < MIN_GLYPH_HEIGHT {
            scale = Scale {
                num: MIN_GLYPH_HEIGHT,
                den: glyphs.typical,
            };
            work = sized(work, scale);
            threshold = otsu_threshold(&work);
        }
        // Specks are told from punctuation at the page's own resolution, before any
        // shrinking blurs the two together, and at the size of its smallest text.
        specks = despeckle(&mut work, threshold, scale.apply(glyphs.small));
        // Shrink for the typical glyph, but never so far that the small print is lost.
        let shrink = Scale {
            num: MAX_GLYPH_HEIGHT,
            den: glyphs.typical,
        }
        .max(Scale {
            num: MIN_GLYPH_HEIGHT,
            den: glyphs.small,
        });
        if scale == Scale::ONE && shrink.num < shrink.den {
            scale = shrink;
            work = sized(work, scale);
        }
        threshold = otsu_threshold(&work);
    }
    // 10–11 pt text at 300 dpi has glyphs of about `REFERENCE_GLYPH` px; the body text is
    // the small print under a headline.
    let dpi = dpi
        .map(|d| scale.apply(d))
        .or_else(|| glyphs.map(|g| (scale.apply(300 * g.small) / REFERENCE_GLYPH).clamp(70, 1200)));
    Cleaned {
        bitmap: pack_bits(&work, threshold, dpi),
        scale,
        glyphs,
        inverted,
        evened,
        specks,
    }
}

/// Whether most of the page is darker than Otsu's threshold: light text on a dark ground.
fn mostly_dark(image: &GrayImage) -> bool {
    let threshold = otsu_threshold(image);
    let dark = image.as_raw().iter().filter(|&&p| p <= threshold).count();
    dark * 2 > image.as_raw().len()
}

/// Side of the square blocks the paper's brightness is sampled in, as a fraction of the
/// shorter side of the page.
const LIGHT_BLOCKS: u32 = 48;
/// Light that varies by more than this fraction of the brightest paper is evened out.
const UNEVEN_LIGHT: u32 = 12;

/// Even out uneven light (a photo lit from one side, a shadow from a book's spine): estimate
/// the paper's brightness over the page from the brightest pixel of each block (a block of
/// pure ink takes its brighter neighbour's), and divide every pixel by it. A page whose paper
/// varies by less than `UNEVEN_LIGHT` percent is left alone. Returns whether it changed.
fn even_out_light(image: &mut GrayImage) -> bool {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let block = (w.min(h) / LIGHT_BLOCKS as usize).max(8);
    let (bw, bh) = (w.div_ceil(block), h.div_ceil(block));
    if bw < 3 || bh < 3 {
        return false;
    }
    let mut paper = vec![0u8; bw * bh];
    for (y, row) in image.as_raw().chunks_exact(w).enumerate() {
        let cells = &mut paper[(y / block) * bw..(y / block + 1) * bw];
        for (cell, pixels) in cells.iter_mut().zip(row.chunks(block)) {
            *cell = (*cell).max(pixels.iter().copied().max().unwrap_or(0));
        }
    }
    // A block inside a large glyph or a dark picture is not paper: take the brightest of
    // each block's neighbourhood, then smooth.
    let at = |v: &[u8], x: isize, y: isize| {
        v[y.clamp(0, bh as isize - 1) as usize * bw + x.clamp(0, bw as isize - 1) as usize]
    };
    let mut widest = vec![0u8; bw * bh];
    for y in 0..bh as isize {
        for x in 0..bw as isize {
            let mut m = 0;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    m = m.max(at(&paper, x + dx, y + dy));
                }
            }
            widest[y as usize * bw + x as usize] = m;
        }
    }
    for y in 0..bh as isize {
        for x in 0..bw as isize {
            let mut sum = 0u32;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    sum += u32::from(at(&widest, x + dx, y + dy));
                }
            }
            paper[y as usize * bw + x as usize] = (sum / 9) as u8;
        }
    }
    let mut levels = paper.clone();
    levels.sort_unstable();
    let low = u32::from(levels[levels.len() / 20]);
    let high = u32::from(levels[levels.len() - 1 - levels.len() / 20]);
    if high == 0 || (high - low) * 100 <= high * UNEVEN_LIGHT {
        return false;
    }
    // Bilinear interpolation between block centres, one output row at a time.
    let centre = |i: usize| i as f32 * block as f32 + block as f32 / 2.0;
    let mut row_paper = vec![0f32; bw];
    let pixels = image.as_mut();
    for y in 0..h {
        let fy = ((y as f32 - block as f32 / 2.0) / block as f32).clamp(0.0, (bh - 1) as f32);
        let (y0, ty) = (fy as usize, fy.fract());
        let y1 = (y0 + 1).min(bh - 1);
        for (x, cell) in row_paper.iter_mut().enumerate() {
            let a = f32::from(paper[y0 * bw + x]);
            let b = f32::from(paper[y1 * bw + x]);
            *cell = a + (b - a) * ty;
        }
        let row = &mut pixels[y * w..(y + 1) * w];
        for (x, p) in row.iter_mut().enumerate() {
            let fx = ((x as f32 - centre(0)) / block as f32).clamp(0.0, (bw - 1) as f32);
            let (x0, tx) = (fx as usize, fx.fract());
            let x1 = (x0 + 1).min(bw - 1);
            let level = row_paper[x0] + (row_paper[x1] - row_paper[x0]) * tx;
            *p = (f32::from(*p) * 255.0 / level.max(1.0)).min(255.0) as u8;
        }
    }
    true
}

/// Binarise at `threshold` (darker than or equal to it is ink) and pack one bit per pixel.
fn pack_bits(image: &GrayImage, threshold: u8, dpi: Option<u32>) -> Bitmap {
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

/// Visit every 8-connected component of pixels at or below `threshold` (ink) with its pixel
/// indices and its bounding box `(left, top, right, bottom)`, inclusive. `state` is scratch:
/// one byte per pixel, zero on entry; each component's pixels are left marked with the value
/// `visit` returns (at least 1).
fn components(
    image: &GrayImage,
    threshold: u8,
    state: &mut [u8],
    mut visit: impl FnMut(&[u32], (usize, usize, usize, usize)) -> u8,
) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let raw = image.as_raw();
    let dark = |i: usize| raw[i] <= threshold;
    let mut component: Vec<u32> = Vec::new();
    let mut stack: Vec<u32> = Vec::new();
    let w32 = w as u32;
    for start in 0..w * h {
        if !dark(start) || state[start] != 0 {
            continue;
        }
        // Label with an explicit stack (no recursion).
        component.clear();
        state[start] = 1;
        stack.push(start as u32);
        let (mut top, mut bottom) = (start / w, start / w);
        let (mut left, mut right) = (start % w, start % w);
        while let Some(i) = stack.pop() {
            component.push(i);
            // 32-bit division is several times cheaper than 64-bit and runs for every ink
            // pixel (pages are far below 2^32 pixels).
            let y = (i / w32) as usize;
            let x = i as usize - y * w;
            top = top.min(y);
            bottom = bottom.max(y);
            left = left.min(x);
            right = right.max(x);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let n = ny * w + nx;
                    if dark(n) && state[n] == 0 {
                        state[n] = 1;
                        stack.push(n as u32);
                    }
                }
            }
        }
        let mark = visit(&component, (left, top, right, bottom)).max(1);
        if mark != 1 {
            for &i in &component {
                state[i as usize] = mark;
            }
        }
    }
}

/// The sizes of a page's glyphs, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Glyphs {
    /// The median height of the page's ink components, each weighted by its ink, so that a
    /// sea of specks does not outvote the letters.
    typical: u32,
    /// The ink-weighted 20th percentile: the smallest text that holds a real share of the
    /// ink (the small print under a headline; on a page of one size, its short letters).
    small: u32,
}

/// The page's glyph sizes. Rules, frames and pictures (components over a quarter of the
/// page's width or half its height) do not count.
fn glyph_sizes(image: &GrayImage, threshold: u8) -> Option<Glyphs> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w == 0 || h == 0 {
        return None;
    }
    let mut state = vec![0u8; w * h];
    // Ink per component height: a histogram, so that a page of noise costs no more memory
    // than a page of text.
    let mut ink_by_height = vec![0u64; h + 1];
    components(
        image,
        threshold,
        &mut state,
        |pixels, (left, top, right, bottom)| {
            let (cw, ch) = (right - left + 1, bottom - top + 1);
            if cw * 4 <= w && ch * 2 <= h {
                ink_by_height[ch] += pixels.len() as u64;
            }
            1
        },
    );
    let total: u64 = ink_by_height.iter().sum();
    if total == 0 {
        return None;
    }
    let percentile = |p: u64| {
        let mut seen = 0;
        ink_by_height.iter().enumerate().find_map(|(height, &ink)| {
            seen += ink;
            (seen * 100 >= total * p).then_some(height as u32)
        })
    };
    Some(Glyphs {
        typical: percentile(50)?,
        small: percentile(20)?,
    })
}

/// Remove isolated specks: small compact dark connected components with no larger ink nearby
/// (dust and noise in margins and between lines; dots of `i` and full stops sit next to
/// letters and are kept, and dashes, however far from the words, are long). The size and
/// distance thresholds scale with `glyph`, the height of the page's small print. Rows of like
/// dots (leaders, dotted lines) are kept. Returns how many specks were removed.
pub fn despeckle(image: &mut GrayImage, threshold: u8, glyph: u32) -> usize {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w == 0 || h == 0 {
        return 0;
    }
    let scale = f64::from(glyph) / f64::from(REFERENCE_GLYPH);
    let max_speck_area = ((f64::from(SPECK_AREA) * scale * scale) as usize).max(1);
    let radius = ((f64::from(SPECK_RADIUS) * scale).round() as usize).max(1);
    // Far smaller than a full stop (about a seventh of a glyph across): noise wherever it is.
    let dust = (glyph as usize).pow(2) / DUST_PER_GLYPH;

    // One byte per pixel for all the bookkeeping (a 300 dpi page is 8.4 M pixels, so every
    // full-page array counts): unseen, then SMALL or BIG once its component is labelled.
    const SMALL: u8 = 1;
    const BIG: u8 = 2;
    let mut state = vec![0u8; w * h];
    let mut specks: Vec<u32> = Vec::new();
    let mut speck_ranges: Vec<(usize, usize)> = Vec::new();
    // Half a glyph long is a letter or a rule; a quarter of one, and twice as long as it is
    // thick, a hyphen or a dash. A speck is small and compact.
    let (long, dash) = ((glyph as usize).div_ceil(2), (glyph as usize).div_ceil(4));
    components(
        image,
        threshold,
        &mut state,
        |pixels, (left, top, right, bottom)| {
            let (cw, ch) = (right - left + 1, bottom - top + 1);
            let (longest, shortest) = (cw.max(ch), cw.min(ch));
            let letter = longest >= long || (longest >= dash && longest >= 2 * shortest);
            if pixels.len() > max_speck_area || letter {
                BIG
            } else {
                speck_ranges.push((specks.len(), specks.len() + pixels.len()));
                specks.extend_from_slice(pixels);
                SMALL
            }
        },
    );
    // Reuse the state array: it becomes "within `radius` of a big component".
    for cell in state.iter_mut() {
        *cell = u8::from(*cell == BIG);
    }
    dilate_in_place(&mut state, w, h, radius);
    // Isolated specks, and dust anywhere.
    let doomed = |&(a, b): &(usize, usize)| {
        let comp = &specks[a..b];
        comp.len() <= dust || !comp.iter().any(|&i| state[i as usize] != 0)
    };
    // Dot leaders and dotted lines: rows of like dots, kept whatever their distance to text.
    // A page with more candidates than `MAX_DOT_CANDIDATES` is noise, not a table of contents.
    let dotted = if speck_ranges.iter().filter(|r| doomed(r)).count() <= MAX_DOT_CANDIDATES {
        let centres: Vec<(u32, u32, u32)> = speck_ranges
            .iter()
            .filter(|r| doomed(r))
            .map(|&(a, b)| {
                let (sx, sy) = specks[a..b].iter().fold((0u64, 0u64), |(sx, sy), &i| {
                    (sx + u64::from(i) % w as u64, sy + u64::from(i) / w as u64)
                });
                let n = (b - a) as u64;
                ((sx / n) as u32, (sy / n) as u32, n as u32)
            })
            .collect();
        in_dot_rows(&centres, dust as u32, (glyph / 16).max(1), glyph * 2)
    } else {
        Vec::new()
    };
    let pixels = image.as_mut();
    let mut removed = 0;
    for (k, &(a, b)) in speck_ranges.iter().filter(|r| doomed(r)).enumerate() {
        if !dotted.get(k).copied().unwrap_or(false) {
            removed += 1;
            for &i in &specks[a..b] {
                pixels[i as usize] = 255;
            }
        }
    }
    removed
}

/// Which of the specks `(x, y, area)` (centres) belong to a row of at least `DOT_ROW` like
/// dots: evenly spaced (each gap within a quarter of the one before), each within `gap`
/// pixels of the next and within `tolerance` pixels of its height, areas within a factor of
/// two, none of them dust (`area <= dust`). Leaders in a table of contents and dotted lines
/// are such rows; random noise seldom lines up evenly four times over.
fn in_dot_rows(specks: &[(u32, u32, u32)], dust: u32, tolerance: u32, gap: u32) -> Vec<bool> {
    let mut order: Vec<usize> = (0..specks.len()).filter(|&i| specks[i].2 > dust).collect();
    order.sort_unstable_by_key(|&i| (specks[i].1, specks[i].0));
    // Each speck's nearest like neighbour to its right, on its line.
    let mut next: Vec<Option<usize>> = vec![None; specks.len()];
    let mut has_prev = vec![false; specks.len()];
    for (k, &i) in order.iter().enumerate() {
        let (x, y, area) = specks[i];
        let mut best: Option<(u32, usize)> = None;
        // Entries before k up to `tolerance` above, and after it up to `tolerance` below.
        let above = order[..k]
            .iter()
            .rev()
            .take_while(|&&j| specks[j].1 + tolerance >= y);
        let below = order[k + 1..]
            .iter()
            .take_while(|&&j| specks[j].1 <= y + tolerance);
        for &j in above.chain(below) {
            let (x2, _, area2) = specks[j];
            let alike = area.max(area2) <= 2 * area.min(area2);
            if x2 > x && x2 - x <= gap && alike && best.is_none_or(|(d, _)| x2 - x < d) {
                best = Some((x2 - x, j));
            }
        }
        if let Some((_, j)) = best {
            next[i] = Some(j);
            has_prev[j] = true;
        }
    }
    let mut keep = vec![false; specks.len()];
    for &start in &order {
        if has_prev[start] {
            continue;
        }
        // Follow the row from its left end, cutting it where the spacing changes.
        let mut row = vec![start];
        let mut spacing: Option<u32> = None;
        let mut at = start;
        while let Some(j) = next[at] {
            let step = specks[j].0 - specks[at].0;
            let even = spacing.is_none_or(|s| s.abs_diff(step) * 4 <= s.max(4));
            if !even {
                if row.len() >= DOT_ROW {
                    row.iter().for_each(|&i| keep[i] = true);
                }
                row = vec![at];
            }
            spacing = Some(step);
            row.push(j);
            at = j;
            if row.len() > specks.len() {
                break;
            }
        }
        if row.len() >= DOT_ROW {
            row.iter().for_each(|&i| keep[i] = true);
        }
    }
    keep
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

    /// A white page with black rectangles (x, y, width, height).
    fn page(w: u32, h: u32, boxes: &[(u32, u32, u32, u32)]) -> GrayImage {
        let mut img = GrayImage::from_pixel(w, h, image::Luma([255]));
        for &(x0, y0, bw, bh) in boxes {
            for y in y0..y0 + bh {
                for x in x0..x0 + bw {
                    img.put_pixel(x, y, image::Luma([0]));
                }
            }
        }
        img
    }

    #[test]
    fn despeckle_keeps_text_and_drops_isolated_dots() {
        // A "letter" 30 px tall, a full stop beside it, a lone speck far away, a dash far
        // from the letter (long and thin), and dust touching the letter's neighbourhood.
        let mut img = page(
            200,
            200,
            &[
                (50, 50, 20, 30),
                (74, 75, 4, 4),
                (150, 150, 4, 4),
                (100, 60, 16, 2),
                (72, 52, 2, 2),
            ],
        );
        let glyph = glyph_sizes(&img, 127).map(|g| g.typical);
        assert_eq!(glyph, Some(30), "the letter's height; dots do not count");
        let removed = despeckle(&mut img, 127, 30);
        assert_eq!(removed, 2);
        assert_eq!(img.get_pixel(60, 60).0[0], 0, "letter kept");
        assert_eq!(img.get_pixel(75, 76).0[0], 0, "full stop kept");
        assert_eq!(img.get_pixel(105, 60).0[0], 0, "dash kept");
        assert_eq!(img.get_pixel(151, 151).0[0], 255, "lone speck removed");
        assert_eq!(
            img.get_pixel(72, 52).0[0],
            255,
            "dust removed even next to ink"
        );
    }

    #[test]
    fn despeckling_scales_with_the_glyphs_not_the_resolution() {
        // Small print: letters 9 px tall, 4 px wide, a full stop of 2x2 px beside one. At
        // 300 dpi thresholds every letter here would be a speck.
        let mut boxes: Vec<(u32, u32, u32, u32)> =
            (0..20).map(|i| (10 + i * 7, 20, 4, 9)).collect();
        boxes.push((150, 27, 2, 2));
        let mut img = page(200, 60, &boxes);
        let glyph = glyph_sizes(&img, 127).unwrap().small;
        assert_eq!(glyph, 9);
        assert_eq!(despeckle(&mut img, 127, glyph), 0);
        assert_eq!(img.get_pixel(150, 27).0[0], 0, "full stop kept");
    }

    #[test]
    fn dot_leaders_are_kept_and_scattered_specks_are_not() {
        // A word, then a leader of ten 3x3 dots every 14 px far from it, then a page number;
        // below, specks at random-looking places, and a row of three (too short to count).
        let mut boxes: Vec<(u32, u32, u32, u32)> = vec![(10, 20, 40, 20)];
        boxes.extend((0..10).map(|i| (90 + i * 14, 36, 3, 3)));
        boxes.push((260, 20, 10, 20));
        boxes.extend([
            (37, 90, 3, 3),
            (151, 97, 3, 3),
            (88, 131, 3, 3),
            (203, 84, 3, 3),
        ]);
        boxes.extend((0..3).map(|i| (100 + i * 14, 160, 3, 3)));
        let mut img = page(300, 200, &boxes);
        let removed = despeckle(&mut img, 127, 20);
        assert_eq!(removed, 7, "four scattered specks and a row of three");
        for i in 0..10 {
            assert_eq!(
                img.get_pixel(91 + i * 14, 37).0[0],
                0,
                "leader dot {i} kept"
            );
        }
        assert_eq!(img.get_pixel(152, 98).0[0], 255, "scattered speck removed");
        assert_eq!(img.get_pixel(101, 161).0[0], 255, "short row removed");
    }

    #[test]
    fn dot_rows_must_be_evenly_spaced() {
        let row = |xs: &[u32]| xs.iter().map(|&x| (x, 50, 9)).collect::<Vec<_>>();
        assert!(in_dot_rows(&row(&[10, 20, 30, 40]), 2, 1, 30)
            .iter()
            .all(|&k| k));
        // Gaps of 10, 25, 5: no four evenly spaced.
        assert!(!in_dot_rows(&row(&[10, 20, 45, 50]), 2, 1, 30)
            .iter()
            .any(|&k| k));
        // Dust never counts, nor dots of very different sizes.
        let mixed = vec![(10, 50, 9), (20, 50, 2), (30, 50, 9), (40, 50, 30)];
        assert!(!in_dot_rows(&mixed, 2, 1, 30).iter().any(|&k| k));
    }

    #[test]
    fn small_print_under_a_headline_keeps_its_size() {
        // A headline of letters 60 px tall (most of the ink) over lines of 14 px letters:
        // shrinking for the headline alone would make the small print 4 px tall.
        let mut boxes: Vec<(u32, u32, u32, u32)> =
            (0..12).map(|i| (20 + i * 50, 20, 30, 60)).collect();
        boxes.extend((0..60).map(|i| (20 + i * 10, 120, 5, 14)));
        boxes.extend((0..60).map(|i| (20 + i * 10, 150, 5, 14)));
        let img = page(640, 200, &boxes);
        let glyphs = glyph_sizes(&img, 127).unwrap();
        assert_eq!((glyphs.typical, glyphs.small), (60, 14));
        let cleaned = prepare(&img, Some(300));
        assert_eq!(
            cleaned.scale,
            Scale {
                num: MIN_GLYPH_HEIGHT,
                den: 14
            }
        );
        assert_eq!(cleaned.specks, 0);
    }

    #[test]
    fn glyph_height_ignores_rules_and_frames() {
        // Letters 20 px tall and a frame around the page: the frame is one huge component.
        let mut boxes: Vec<(u32, u32, u32, u32)> =
            (0..30).map(|i| (40 + i * 16, 100, 10, 20)).collect();
        boxes.extend([
            (0, 0, 600, 6),
            (0, 394, 600, 6),
            (0, 0, 6, 400),
            (594, 0, 6, 400),
        ]);
        let glyphs = glyph_sizes(&page(600, 400, &boxes), 127);
        assert_eq!(glyphs.map(|g| (g.typical, g.small)), Some((20, 20)));
        assert_eq!(glyph_sizes(&page(50, 50, &[]), 127), None);
    }

    #[test]
    fn light_on_dark_is_inverted_and_dark_on_light_is_not() {
        let boxes: Vec<(u32, u32, u32, u32)> = (0..20).map(|i| (10 + i * 20, 40, 10, 20)).collect();
        let mut img = page(420, 100, &boxes);
        assert!(!mostly_dark(&img));
        imageops::invert(&mut img);
        assert!(mostly_dark(&img));
        let cleaned = prepare(&img, Some(300));
        assert!(cleaned.inverted);
        let white = |x: u32, y: u32| {
            let b = &cleaned.bitmap;
            b.bits[y as usize * b.stride() + x as usize / 8] & (0x80 >> (x % 8)) != 0
        };
        assert!(white(5, 5), "the dark ground becomes paper");
        assert!(!white(15, 50), "the light letters become ink");
    }

    /// Text-like marks on paper lit from the left: 250 there, falling to `far` on the right.
    fn lit_page(far: u8) -> GrayImage {
        let (w, h) = (480u32, 480u32);
        GrayImage::from_fn(w, h, |x, y| {
            let paper = 250.0 - (250.0 - f32::from(far)) * x as f32 / (w - 1) as f32;
            let ink = (y / 12) % 3 == 1 && (x / 6) % 3 != 2;
            image::Luma([if ink {
                (paper * 0.25) as u8
            } else {
                paper as u8
            }])
        })
    }

    #[test]
    fn uneven_light_is_evened_out() {
        let mut img = lit_page(90);
        // Otsu on the raw page puts the dim paper on the right with the ink.
        let t = otsu_threshold(&img);
        assert!(
            img.get_pixel(470, 5).0[0] <= t,
            "dim paper reads as ink before"
        );
        assert!(even_out_light(&mut img));
        let t = otsu_threshold(&img);
        for (x, y) in [(5, 5), (240, 5), (470, 5), (470, 470)] {
            assert!(img.get_pixel(x, y).0[0] > t, "paper at ({x}, {y}) is paper");
        }
        for (x, y) in [(1, 13), (241, 13), (469, 13)] {
            assert!(img.get_pixel(x, y).0[0] <= t, "ink at ({x}, {y}) is ink");
        }
    }

    #[test]
    fn evenly_lit_pages_are_left_alone() {
        let mut img = lit_page(240);
        let before = img.clone();
        assert!(!even_out_light(&mut img));
        assert_eq!(img, before);
    }

    #[test]
    fn the_pass_with_more_confident_characters_wins() {
        let pass = |prep, score| Pass {
            prep,
            text: String::new(),
            conf: 95.0,
            score,
        };
        // A sure pass that dropped a dark corner loses to one that read the whole page.
        assert_eq!(
            better(pass(Prep::Raw, 1400.0), pass(Prep::Cleaned, 1800.0)).prep,
            Prep::Cleaned
        );
        assert_eq!(
            better(pass(Prep::Cleaned, 10.0), pass(Prep::Raw, 10.0)).prep,
            Prep::Cleaned
        );
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
        let cleaned = prepare(&img, Some(300));
        let bitmap = &cleaned.bitmap;
        let shrink = |side: u32| side * MAX_GLYPH_HEIGHT / 40;
        assert_eq!(cleaned.glyphs.map(|g| g.typical), Some(40));
        assert_eq!(
            (bitmap.width, bitmap.height, bitmap.dpi),
            (shrink(1600), shrink(400), Some(shrink(300)))
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
        let bitmap = pack_bits(&img, 127, Some(300));
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
