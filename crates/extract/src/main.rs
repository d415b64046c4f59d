//! engram-extract: the sandboxed extractor. One file in, its text page by page out as JSON
//! lines; it limits its own resources before it reads a byte of the input.

mod docx;
mod error;
mod html;
mod image_input;
mod limits;
mod ocr;
mod ods;
mod package;
mod pdf;
mod pptx;
mod protocol;
mod sheet;
mod sniff;
mod text;
mod xlsx;

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use error::ExtractError;
use ocr::Ocr;
use pdf::Pages;
use protocol::Emitter;
use sniff::Sniffed;

const USAGE: &str = "\
usage: engram-extract [OPTIONS] PATH

Extract the text of one file (PDF, PNG, JPEG, TIFF, WebP, GIF, DOCX, XLSX, ODS, PPTX, HTML,
Markdown, text) and print it page by page as JSON lines on stdout: a page per PDF page,
spreadsheet sheet or slide.

options:
  --memory-bytes N     address-space limit (default 1073741824)
  --cpu-seconds N      CPU-time limit (default 300)
  --max-pages N        refuse documents with more pages (default 2000)
  --max-file-bytes N   refuse larger files (default 52428800)
  --lang LANG          tesseract language(s), e.g. eng or eng+deu (default eng)
  --tessdata DIR       tesseract data directory (default: tesseract's own)
  --defer-ocr          PDFs: OCR only the first page that needs it and list the others as
                       `deferred` in the document line, to be run one by one with --page
  --page N             PDFs: read only page N
  --ocr-report         print each OCR pass (how the page was prepared, tesseract's mean
                       word confidence, time) on stderr
  --help               print this help

exit status: 0 on success, 2 on a per-file error (reported as a JSON `error` line)";

/// Parsed command line.
#[derive(Debug, Clone)]
struct Args {
    memory_bytes: u64,
    cpu_seconds: u64,
    max_pages: u64,
    max_file_bytes: u64,
    lang: String,
    tessdata: Option<String>,
    pages: Pages,
    ocr_report: bool,
    path: PathBuf,
}

/// What the command line asked for.
#[derive(Debug)]
enum Command {
    Help,
    Extract(Args),
}

fn parse_args(mut argv: impl Iterator<Item = OsString>) -> Result<Command, String> {
    let mut memory_bytes = 1_073_741_824;
    let mut cpu_seconds = 300;
    let mut max_pages = 2000;
    let mut max_file_bytes = 52_428_800;
    let mut lang = "eng".to_owned();
    let mut tessdata = None;
    let mut pages = Pages::All;
    let mut ocr_report = false;
    let mut path = None;

    fn value(name: &str, argv: &mut impl Iterator<Item = OsString>) -> Result<String, String> {
        argv.next()
            .ok_or_else(|| format!("{name} needs a value"))?
            .into_string()
            .map_err(|_| format!("{name}: value is not valid UTF-8"))
    }
    fn number(name: &str, argv: &mut impl Iterator<Item = OsString>) -> Result<u64, String> {
        let v = value(name, argv)?;
        match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}: expected a positive integer, got {v:?}")),
        }
    }

    while let Some(arg) = argv.next() {
        match arg.to_str() {
            Some("--help" | "-h") => return Ok(Command::Help),
            Some("--memory-bytes") => memory_bytes = number("--memory-bytes", &mut argv)?,
            Some("--cpu-seconds") => cpu_seconds = number("--cpu-seconds", &mut argv)?,
            Some("--max-pages") => max_pages = number("--max-pages", &mut argv)?,
            Some("--max-file-bytes") => max_file_bytes = number("--max-file-bytes", &mut argv)?,
            Some("--lang") => lang = value("--lang", &mut argv)?,
            Some("--tessdata") => tessdata = Some(value("--tessdata", &mut argv)?),
            Some("--ocr-report") => ocr_report = true,
            Some("--defer-ocr") if pages == Pages::All => pages = Pages::DeferOcr,
            Some("--page") if pages == Pages::All => {
                pages = Pages::Only(number("--page", &mut argv)?)
            }
            Some("--defer-ocr" | "--page") => {
                return Err("--defer-ocr and --page may be given once, and not together".into())
            }
            Some("--") => {
                let rest = argv.next().ok_or("-- must be followed by PATH")?;
                if path.replace(PathBuf::from(rest)).is_some() {
                    return Err("only one PATH may be given".into());
                }
            }
            Some(s) if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option {s:?}"))
            }
            _ => {
                if path.replace(PathBuf::from(arg)).is_some() {
                    return Err("only one PATH may be given".into());
                }
            }
        }
    }
    let path = path.ok_or("missing PATH")?;
    Ok(Command::Extract(Args {
        memory_bytes,
        cpu_seconds,
        max_pages,
        max_file_bytes,
        lang,
        tessdata,
        pages,
        ocr_report,
        path,
    }))
}

/// Tesseract's OpenMP threads only fight each other on small machines: one thread is ~3–5x
/// faster. libgomp reads `OMP_THREAD_LIMIT` when it is loaded, before `main`, so setting it
/// here is too late: re-exec this same binary (same pid, so the parent's timeout and kill
/// still apply) with the variable set. If exec fails we carry on, just slower.
#[allow(
    clippy::disallowed_methods,
    reason = "the extractor re-executes itself once with OpenMP limited to one thread"
)]
fn ensure_single_omp_thread() {
    const VAR: &str = "OMP_THREAD_LIMIT";
    if std::env::var_os(VAR).is_some_and(|v| v == "1") {
        return;
    }
    if let Ok(exe) = std::env::current_exe() {
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(VAR, "1")
            .exec();
        let _ = writeln!(
            io::stderr(),
            "engram-extract: cannot re-exec with {VAR}=1: {err}"
        );
    }
}

fn main() -> ExitCode {
    ensure_single_omp_thread();
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Extract(args)) => args,
        Ok(Command::Help) => {
            let _ = writeln!(io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            let _ = writeln!(io::stderr(), "engram-extract: {msg}\n\n{USAGE}");
            return ExitCode::from(64);
        }
    };

    let mut out = Emitter::new(io::stdout().lock());

    // Limits first, before the input is opened. Failing to set them is fatal: running hostile
    // input without them is exactly what this process exists to avoid.
    if let Err(e) = limits::apply(limits::ResourceLimits {
        memory_bytes: args.memory_bytes,
        cpu_seconds: args.cpu_seconds,
    }) {
        let _ = out.error(&ExtractError::internal(format_args!(
            "cannot set resource limits: {e}"
        )));
        return ExitCode::from(2);
    }

    match run(&args, &mut out) {
        Ok(()) => match out.done() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(2),
        },
        Err(e) => {
            let _ = out.error(&e);
            ExitCode::from(2)
        }
    }
}

/// Ran into an I/O error writing stdout: the parent went away; nothing useful left to do.
fn write_failed(e: io::Error) -> ExtractError {
    ExtractError::internal(format_args!("cannot write output: {e}"))
}

fn run(args: &Args, out: &mut Emitter<impl Write>) -> Result<(), ExtractError> {
    let bytes = read_input(&args.path, args.max_file_bytes)?;
    let sniffed = sniff::sniff(&bytes)?;
    let mut ocr = Ocr::new(&args.lang, args.tessdata.as_deref());
    ocr.report_passes(args.ocr_report);
    if matches!(args.pages, Pages::Only(_)) && !matches!(sniffed, Sniffed::Pdf) {
        return Err(ExtractError::internal("--page applies to PDFs only"));
    }

    // Whether this run read the whole document (else an empty result is not the last word).
    let mut whole = !matches!(args.pages, Pages::Only(_));
    match sniffed {
        Sniffed::Pdf => {
            drop(bytes);
            let deferred = pdf::extract(&args.path, args.max_pages, args.pages, &mut ocr, out)?;
            whole &= deferred == 0;
        }
        Sniffed::Image(format) => {
            let gray = image_input::decode_gray(&bytes, format)?;
            // The file's bytes are not needed while tesseract holds its model and the page.
            drop(bytes);
            let page = ocr.recognize(gray, None, 1)?;
            out.document(format.kind(), 1, &[]).map_err(write_failed)?;
            out.page(1, &page.text, true, page.warning.as_deref())
                .map_err(write_failed)?;
        }
        Sniffed::Zip => office(&bytes, args.max_pages, out)?,
        Sniffed::Text => {
            let decoded = text::decode(&bytes);
            drop(bytes);
            let (kind, text) = if html::looks_like_html(&decoded) {
                ("html", html::to_text(&decoded))
            } else {
                let kind = if text::looks_like_markdown(&decoded) {
                    "markdown"
                } else {
                    "text"
                };
                (kind, text::normalize(&decoded))
            };
            out.document(kind, 1, &[]).map_err(write_failed)?;
            out.page(1, &text, false, None).map_err(write_failed)?;
        }
    }

    if whole && out.chars() == 0 {
        return Err(ExtractError::NoText(
            "no text could be extracted from the document".into(),
        ));
    }
    Ok(())
}

/// An Office package (DOCX, XLSX, PPTX, ODS): a page per sheet or slide (one for a DOCX).
fn office(bytes: &[u8], max_pages: u64, out: &mut Emitter<impl Write>) -> Result<(), ExtractError> {
    let mut package = package::Package::open(bytes)?;
    let kind = package.identify()?;
    let noun = package.noun();
    let mut budget = package::TextBudget::new(noun);
    let check_count = |count: usize, what: &str| {
        if count as u64 > max_pages {
            return Err(ExtractError::too_large(format_args!(
                "{noun} has {count} {what}; the limit is {max_pages}"
            )));
        }
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    };
    fn emit(
        out: &mut Emitter<impl Write>,
        index: usize,
        page: &package::Page,
    ) -> Result<(), ExtractError> {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        out.page(number, &page.text, false, page.warning.as_deref())
            .map_err(write_failed)
    }
    match &kind {
        package::Kind::Word(main) => {
            let text = docx::extract(&mut package, main)?;
            out.document(kind.protocol_kind(), 1, &[])
                .map_err(write_failed)?;
            out.page(1, &text, false, None).map_err(write_failed)?;
            return Ok(());
        }
        package::Kind::Excel(main) => {
            let workbook = xlsx::Workbook::open(&mut package, main)?;
            let count = check_count(workbook.len(), "sheets")?;
            out.document(kind.protocol_kind(), count, &[])
                .map_err(write_failed)?;
            for index in 0..workbook.len() {
                let page = workbook.sheet(&mut package, index, &mut budget)?;
                emit(out, index, &page)?;
            }
        }
        package::Kind::PowerPoint(main) => {
            let deck = pptx::Presentation::open(&mut package, main)?;
            let count = check_count(deck.len(), "slides")?;
            out.document(kind.protocol_kind(), count, &[])
                .map_err(write_failed)?;
            for index in 0..deck.len() {
                let page = deck.slide(&mut package, index, &mut budget)?;
                emit(out, index, &page)?;
            }
        }
        package::Kind::OpenDocumentSpreadsheet => {
            let pages = ods::extract(&mut package, &mut budget)?;
            let count = check_count(pages.len(), "sheets")?;
            out.document(kind.protocol_kind(), count, &[])
                .map_err(write_failed)?;
            for (index, page) in pages.iter().enumerate() {
                emit(out, index, page)?;
            }
        }
    }
    if out.chars() == 0 {
        return Err(ExtractError::NoText(match kind {
            package::Kind::PowerPoint(_) => "no text in the presentation: its slides hold only                 pictures or empty shapes (text inside pictures is not read)"
                .into(),
            _ => "no text in the workbook: its sheets are empty or hold only charts".into(),
        }));
    }
    Ok(())
}

/// Read the whole input, refusing empty, oversized and non-regular files. Reads at most
/// `max_bytes + 1` bytes even if the file grows while we read it.
fn read_input(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ExtractError> {
    let file = File::open(path)
        .map_err(|e| ExtractError::internal(format_args!("cannot open {}: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| ExtractError::internal(format_args!("cannot stat the file: {e}")))?;
    if !meta.is_file() {
        return Err(ExtractError::Unsupported("not a regular file".into()));
    }
    let too_large = |len: u64| {
        ExtractError::too_large(format_args!(
            "the file is {} bytes; the limit is {max_bytes} bytes",
            len
        ))
    };
    if meta.len() > max_bytes {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ExtractError::internal(format_args!("cannot read the file: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(bytes)
}

#[cfg(test)]
mod randomized_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn defaults_and_options() {
        let Ok(Command::Extract(a)) = parse(&["f.pdf"]) else {
            panic!("expected extract")
        };
        assert_eq!(
            (a.memory_bytes, a.cpu_seconds, a.max_pages, a.max_file_bytes),
            (1_073_741_824, 300, 2000, 52_428_800)
        );
        assert_eq!(a.lang, "eng");
        assert_eq!(a.pages, Pages::All);
        let Ok(Command::Extract(a)) = parse(&["--max-pages", "5", "--lang", "deu", "x"]) else {
            panic!("expected extract")
        };
        assert_eq!((a.max_pages, a.lang.as_str()), (5, "deu"));
        assert!(matches!(parse(&["--help"]), Ok(Command::Help)));
        assert!(parse(&[]).is_err());
        assert!(parse(&["--cpu-seconds", "x", "f"]).is_err());
        assert!(parse(&["--bogus", "f"]).is_err());
        assert!(parse(&["a", "b"]).is_err());
        let Ok(Command::Extract(a)) = parse(&["--defer-ocr", "x.pdf"]) else {
            panic!("expected extract")
        };
        assert_eq!(a.pages, Pages::DeferOcr);
        let Ok(Command::Extract(a)) = parse(&["--page", "3", "x.pdf"]) else {
            panic!("expected extract")
        };
        assert_eq!(a.pages, Pages::Only(3));
        assert!(parse(&["--page", "0", "x.pdf"]).is_err());
        assert!(parse(&["--page", "2", "--defer-ocr", "x.pdf"]).is_err());
    }
}
