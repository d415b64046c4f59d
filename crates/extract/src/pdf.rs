//! PDF: page count (`pdfinfo`), text layer (`pdftotext`), and OCR of pages without one
//! (`pdftoppm` → raw PGM on a pipe → tesseract). Every poppler call is size-capped and
//! inherits this process's resource limits.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;

use crate::error::{clean_message, ExtractError};
use crate::image_input;
use crate::ocr::{Ocr, MIN_TEXT_CHARS};
use crate::protocol::Emitter;

/// `pdfinfo` output is a few lines per page at most.
const MAX_INFO_BYTES: u64 = 1024 * 1024;
/// The whole text layer. Beyond this the document is refused rather than truncated.
const MAX_TEXT_BYTES: u64 = 128 * 1024 * 1024;
/// One rendered page as raw 8-bit PGM (a 300 dpi letter page is 8.4 MB).
const MAX_RENDER_BYTES: u64 = 128 * 1024 * 1024;
/// Stderr kept for messages.
const MAX_STDERR_BYTES: u64 = 16 * 1024;
/// Resolution for OCR rendering, lowered for huge pages to stay within the pixel budget.
const RENDER_DPI: u32 = 300;
const MIN_RENDER_DPI: u32 = 50;
/// Scans are never rendered below this for OCR, whatever their own resolution.
const SCAN_MIN_DPI: u32 = 200;
/// Pixel budget for one rendered page.
const MAX_RENDER_PIXELS: f64 = 40_000_000.0;

/// What a capped run of an external program produced.
#[derive(Debug)]
struct ToolOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl ToolOutput {
    /// The first non-empty stderr line, without poppler's "Syntax Error (123):" prefix.
    fn reason(&self) -> String {
        let line = self
            .stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no error message");
        let line = match line.split_once(": ") {
            Some((prefix, rest))
                if prefix.starts_with("Syntax Error")
                    || prefix.starts_with("Syntax Warning")
                    || prefix.starts_with("Internal Error")
                    || prefix.starts_with("I/O Error")
                    || prefix == "Error" =>
            {
                rest
            }
            _ => line,
        };
        clean_message(line)
    }
}

/// Run `program` with `args`, reading at most `max_stdout` bytes of its stdout (the child is
/// killed if it writes more) and a little of its stderr. Returns `Ok(None)` if the cap was hit.
fn run_capped(
    program: &str,
    args: &[&OsStr],
    max_stdout: u64,
) -> Result<Option<ToolOutput>, ExtractError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ExtractError::internal(format_args!(
                "{program} is not installed (the poppler-utils package provides it)"
            )),
            _ => ExtractError::internal(format_args!("cannot run {program}: {e}")),
        })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    // Drain stderr on a thread so a chatty child can never block on a full pipe.
    let stderr_reader = thread::spawn(move || {
        let mut kept = Vec::new();
        let mut stderr = stderr;
        let _ = (&mut stderr).take(MAX_STDERR_BYTES).read_to_end(&mut kept);
        let _ = io::copy(&mut stderr, &mut io::sink());
        String::from_utf8_lossy(&kept).into_owned()
    });

    let mut out = Vec::new();
    let read = (&mut stdout).take(max_stdout + 1).read_to_end(&mut out);
    let over_cap = out.len() as u64 > max_stdout;
    if over_cap || read.is_err() {
        let _ = child.kill();
    }
    drop(stdout);
    let status = child
        .wait()
        .map_err(|e| ExtractError::internal(format_args!("cannot wait for {program}: {e}")))?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if over_cap {
        return Ok(None);
    }
    read.map_err(|e| ExtractError::internal(format_args!("cannot read from {program}: {e}")))?;
    Ok(Some(ToolOutput {
        status,
        stdout: out,
        stderr,
    }))
}

/// Turn a failed poppler run into the right error.
fn poppler_failure(output: &ToolOutput) -> ExtractError {
    let reason = output.reason();
    if output.stderr.contains("Incorrect password") {
        return ExtractError::Unsupported("password-protected PDF".into());
    }
    ExtractError::corrupt(format_args!("the PDF is damaged: {reason}"))
}

/// Page count and, if asked for one page, its size in points.
#[derive(Debug, Default, PartialEq)]
struct Info {
    pages: Option<u64>,
    page_size_pts: Option<(f64, f64)>,
}

fn parse_info(stdout: &str) -> Info {
    let mut info = Info::default();
    for line in stdout.lines() {
        if let Some(v) = line.strip_prefix("Pages:") {
            info.pages = v.trim().parse().ok();
        } else if line.starts_with("Page ") && line.contains(" size:") {
            // "Page    1 size:  612 x 792 pts (letter)"
            let dims = line.split_once(" size:").map_or("", |(_, d)| d);
            let mut nums = dims
                .split_whitespace()
                .filter_map(|w| w.parse::<f64>().ok());
            if let (Some(w), Some(h)) = (nums.next(), nums.next()) {
                info.page_size_pts = Some((w, h));
            }
        }
    }
    info
}

fn pdfinfo(path: &Path, page: Option<u64>, max_pages: u64) -> Result<Info, ExtractError> {
    let (first, last) = page.map_or((String::new(), String::new()), |p| {
        (p.to_string(), p.to_string())
    });
    let mut args: Vec<&OsStr> = Vec::new();
    if page.is_some() {
        args.extend([
            OsStr::new("-f"),
            OsStr::new(&first),
            OsStr::new("-l"),
            OsStr::new(&last),
        ]);
    }
    args.push(path.as_os_str());
    let output = run_capped("pdfinfo", &args, MAX_INFO_BYTES)?
        .ok_or_else(|| ExtractError::corrupt("the PDF is damaged: pdfinfo output is too large"))?;
    if !output.status.success() {
        // Poppler refuses a /Count larger than the object count; that is still a page-count
        // claim, and the one the user should hear about.
        if let Some(declared) = declared_page_count(&output.stderr) {
            if declared > max_pages {
                return Err(ExtractError::TooManyPages {
                    declared,
                    limit: max_pages,
                });
            }
        }
        return Err(poppler_failure(&output));
    }
    Ok(parse_info(&String::from_utf8_lossy(&output.stdout)))
}

/// The N of poppler's "Page count (N) larger than number of objects (M)".
fn declared_page_count(stderr: &str) -> Option<u64> {
    let rest = &stderr[stderr.find("Page count (")? + "Page count (".len()..];
    rest[..rest.find(')')?].trim().parse().ok()
}

/// The text layer of every page, or of page `only` (`pdftotext -layout`), split at form feeds.
fn text_layer(path: &Path, only: Option<u64>) -> Result<Vec<String>, ExtractError> {
    let page = only.map(|p| p.to_string()).unwrap_or_default();
    let mut args: Vec<&OsStr> = Vec::new();
    if only.is_some() {
        args.extend([
            OsStr::new("-f"),
            OsStr::new(&page),
            OsStr::new("-l"),
            OsStr::new(&page),
        ]);
    }
    args.extend([
        OsStr::new("-layout"),
        OsStr::new("-enc"),
        OsStr::new("UTF-8"),
        path.as_os_str(),
        OsStr::new("-"),
    ]);
    let output = run_capped("pdftotext", &args, MAX_TEXT_BYTES)?.ok_or_else(|| {
        ExtractError::too_large(format_args!(
            "the PDF's text is over {} MiB",
            MAX_TEXT_BYTES / (1024 * 1024)
        ))
    })?;
    if !output.status.success() {
        return Err(poppler_failure(&output));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.split('\x0c').map(clean_page_text).collect())
}

/// Tidy one page of `pdftotext -layout` output: no trailing spaces, at most one blank line in
/// a row, no leading/trailing blank lines.
fn clean_page_text(page: &str) -> String {
    crate::text::normalize(page)
}

/// Render one page to 8-bit gray pixels with `pdftoppm`, at a DPI that keeps it within the
/// pixel budget. Returns the image and the DPI used.
/// The resolution of the scan on a page: the highest `x-ppi` that `pdfimages -list` reports
/// for its images, if any.
fn scan_resolution(path: &Path, page: u64) -> Option<u32> {
    let page_s = page.to_string();
    let args = [
        OsStr::new("-list"),
        OsStr::new("-f"),
        OsStr::new(&page_s),
        OsStr::new("-l"),
        OsStr::new(&page_s),
        path.as_os_str(),
    ];
    let output = run_capped("pdfimages", &args, MAX_INFO_BYTES).ok()??;
    if !output.status.success() {
        return None;
    }
    parse_image_ppi(&String::from_utf8_lossy(&output.stdout))
}

/// The largest `x-ppi` column value of `pdfimages -list` output.
fn parse_image_ppi(listing: &str) -> Option<u32> {
    let mut lines = listing.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let column = header.iter().position(|name| *name == "x-ppi")?;
    lines
        .filter_map(|line| line.split_whitespace().nth(column)?.parse::<u32>().ok())
        .max()
}

fn render_page(path: &Path, page: u64) -> Result<(image::GrayImage, u32), ExtractError> {
    // Render a scanned page at the resolution it was scanned at (between 200 and 300 dpi):
    // more pixels than the scan has add OCR time and memory, not detail.
    let wanted =
        scan_resolution(path, page).map_or(RENDER_DPI, |ppi| ppi.clamp(SCAN_MIN_DPI, RENDER_DPI));
    let dpi = match pdfinfo(path, Some(page), u64::MAX)?.page_size_pts {
        Some((w, h)) if w > 0.0 && h > 0.0 => {
            let inches = (w / 72.0) * (h / 72.0);
            let fit = (MAX_RENDER_PIXELS / inches).sqrt();
            (fit.min(f64::from(wanted)) as u32).max(MIN_RENDER_DPI)
        }
        _ => wanted,
    };
    let page_s = page.to_string();
    let dpi_s = dpi.to_string();
    let args = [
        OsStr::new("-f"),
        OsStr::new(&page_s),
        OsStr::new("-l"),
        OsStr::new(&page_s),
        OsStr::new("-r"),
        OsStr::new(&dpi_s),
        // Raw PGM, not PNG: zlib-compressing the page only to inflate it again cost ~4 s.
        OsStr::new("-gray"),
        path.as_os_str(),
    ];
    let output = run_capped("pdftoppm", &args, MAX_RENDER_BYTES)?
        .ok_or_else(|| ExtractError::too_large(format_args!("page {page} renders too large")))?;
    if !output.status.success() || output.stdout.is_empty() {
        return Err(ExtractError::corrupt(format_args!(
            "the PDF is damaged: page {page} cannot be rendered: {}",
            output.reason()
        )));
    }
    let gray = parse_pgm(output.stdout).ok_or_else(|| {
        ExtractError::corrupt(format_args!("page {page} rendered to an unreadable image"))
    })??;
    Ok((gray, dpi))
}

/// Parse binary PGM (`P5`, 8-bit) as written by `pdftoppm -gray`. `None` if malformed;
/// `Some(Err)` if the declared size is over the pixel budget.
fn parse_pgm(mut bytes: Vec<u8>) -> Option<Result<image::GrayImage, ExtractError>> {
    let mut pos = 2;
    if !bytes.starts_with(b"P5") {
        return None;
    }
    let mut field = || -> Option<u32> {
        loop {
            match bytes.get(pos)? {
                b'#' => pos += bytes[pos..].iter().position(|&b| b == b'\n')?,
                b if b.is_ascii_whitespace() => pos += 1,
                _ => break,
            }
        }
        let start = pos;
        while bytes.get(pos)?.is_ascii_digit() {
            pos += 1;
        }
        std::str::from_utf8(&bytes[start..pos]).ok()?.parse().ok()
    };
    let (width, height, maxval) = (field()?, field()?, field()?);
    if maxval == 0 || maxval > 255 || !bytes.get(pos)?.is_ascii_whitespace() {
        return None;
    }
    if let Err(e) = image_input::check_dimensions(width, height) {
        return Some(Err(e));
    }
    let len = width as usize * height as usize;
    let data_start = pos + 1;
    if bytes.len() < data_start + len {
        return None;
    }
    bytes.drain(..data_start);
    bytes.truncate(len);
    image::GrayImage::from_raw(width, height, bytes).map(Ok)
}

fn visible_chars(s: &str) -> usize {
    s.chars().filter(|c| !c.is_whitespace()).count()
}

/// Which pages of a PDF one run reads. OCR is the slow part, so the parent can spread a
/// scanned PDF over several runs (one page each) and keep every core it has busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pages {
    /// Every page, OCR included.
    All,
    /// Every page, but only the first page that needs OCR is OCR'd here: the others are listed
    /// as `deferred` in the `document` line and left out, for runs with [`Pages::Only`].
    DeferOcr,
    /// Only this page (1-based).
    Only(u64),
}

/// Extract a PDF page by page, streaming `document` and `page` events to `out`. Returns how
/// many pages were deferred.
pub fn extract(
    path: &Path,
    max_pages: u64,
    pages: Pages,
    ocr: &mut Ocr,
    out: &mut Emitter<impl Write>,
) -> Result<usize, ExtractError> {
    let count = pdfinfo(path, None, max_pages)?.pages.ok_or_else(|| {
        ExtractError::corrupt("the PDF is damaged: it has no readable page count")
    })?;
    if count > max_pages {
        return Err(ExtractError::TooManyPages {
            declared: count,
            limit: max_pages,
        });
    }
    if count == 0 {
        return Err(ExtractError::NoText("the PDF has no pages".into()));
    }
    let (range, only) = match pages {
        Pages::Only(page) if page == 0 || page > count => {
            return Err(ExtractError::internal(format_args!(
                "page {page} was asked for; the PDF has {count} pages"
            )))
        }
        Pages::Only(page) => (page..=page, Some(page)),
        Pages::All | Pages::DeferOcr => (1..=count, None),
    };
    let layer = text_layer(path, only)?;
    let text_of = |page: u64| {
        let index = (page - range.start()) as usize;
        layer.get(index).map_or("", String::as_str)
    };
    let needs_ocr = |page: &u64| visible_chars(text_of(*page)) < MIN_TEXT_CHARS;
    let deferred: Vec<u32> = match pages {
        Pages::DeferOcr => range
            .clone()
            .filter(needs_ocr)
            .skip(1)
            .map(|page| page as u32)
            .collect(),
        Pages::All | Pages::Only(_) => Vec::new(),
    };
    let write_failed =
        |e: io::Error| ExtractError::internal(format_args!("cannot write output: {e}"));
    out.document("pdf", count as u32, &deferred)
        .map_err(write_failed)?;

    for page in range.clone() {
        if deferred.contains(&(page as u32)) {
            continue;
        }
        let text = text_of(page);
        if !needs_ocr(&page) {
            out.page(page as u32, text, false, None)
                .map_err(write_failed)?;
            continue;
        }
        // No usable text layer: a scan. A page that cannot be rendered or OCR'd is reported
        // on that page and the rest of the document still goes through.
        let result = render_page(path, page)
            .and_then(|(gray, dpi)| ocr.recognize(gray, Some(dpi), page as u32));
        match result {
            Ok(found) => out
                .page(page as u32, &found.text, true, found.warning.as_deref())
                .map_err(write_failed)?,
            Err(e @ ExtractError::Internal(_)) => return Err(e),
            Err(e) => {
                let warning = clean_message(&format!("page {page}: {}", e.message()));
                out.page(page as u32, "", true, Some(&warning))
                    .map_err(write_failed)?
            }
        }
    }
    Ok(deferred.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pdfinfo() {
        let info = parse_info(
            "Producer:       x\nPages:          3\nPage    1 size:  612 x 792 pts (letter)\n",
        );
        assert_eq!(
            info,
            Info {
                pages: Some(3),
                page_size_pts: Some((612.0, 792.0))
            }
        );
        assert_eq!(parse_info("garbage").pages, None);
        assert_eq!(
            declared_page_count(
                "Syntax Error: Page count (100000) larger than number of objects (4)\n"
            ),
            Some(100_000)
        );
        assert_eq!(declared_page_count("Syntax Error: other"), None);
    }

    #[test]
    fn reads_the_scan_resolution() {
        let listing = "page   num  type   width height color comp bpc  enc interp  object ID x-ppi y-ppi size ratio\n\
            --------------------------------------------------------------------------------------------\n\
               1     0 image    1700  2200  rgb     3   8  jpeg   no         7  0   200   200  399K 3.6%\n";
        assert_eq!(parse_image_ppi(listing), Some(200));
        assert_eq!(parse_image_ppi("page num\n"), None);
    }

    #[test]
    fn parses_pgm() {
        let mut pgm = b"P5\n3 2\n255\n".to_vec();
        pgm.extend_from_slice(&[0, 1, 2, 3, 4, 5]);
        let img = parse_pgm(pgm.clone()).unwrap().unwrap();
        assert_eq!(img.dimensions(), (3, 2));
        assert_eq!(img.as_raw(), &[0, 1, 2, 3, 4, 5]);
        assert!(parse_pgm(pgm[..12].to_vec()).is_none());
        assert!(parse_pgm(b"P6\n1 1\n255\n\0\0\0".to_vec()).is_none());
        let huge = b"P5\n50000 50000\n255\n".to_vec();
        assert_eq!(parse_pgm(huge).unwrap().unwrap_err().kind(), "too_large");
    }

    #[test]
    fn capped_run_kills_a_flood() {
        let args = [OsStr::new("/dev/zero")];
        assert!(run_capped("cat", &args, 1024).unwrap().is_none());
        let args = [
            OsStr::new("-c"),
            OsStr::new("echo 'Syntax Error (12): bad xref' >&2; exit 1"),
        ];
        let out = run_capped("sh", &args, 1024).unwrap().unwrap();
        assert!(!out.status.success());
        assert_eq!(out.reason(), "bad xref");
    }
}
