//! Writing the commands' results to stdout. A reader that goes away (`engram jobs | head -5`)
//! ends the command quietly, the way ripgrep and git do, instead of a panic and a backtrace.

use std::fmt;
use std::io::{self, Write as _};

/// Stdout was closed by its reader: the command stops, and `main` exits without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether an error chain ends in a closed stdout.
pub fn is_stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<StdoutClosed>().is_some()
            || cause
                .downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn written(result: io::Result<()>) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(error) => Err(anyhow::Error::new(error).context("cannot write to stdout")),
    }
}

/// Writes `args` and a newline.
pub fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    written(
        stdout
            .write_fmt(args)
            .and_then(|()| stdout.write_all(b"\n")),
    )
}

/// Writes `args` and flushes at once (streamed answers).
pub fn text(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    written(stdout.write_fmt(args).and_then(|()| stdout.flush()))
}

/// Writes a line to stdout, returning `StdoutClosed` from the enclosing function when the
/// reader has gone.
macro_rules! outln {
    () => {
        $crate::cli::output::line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))?
    };
}

/// Writes to stdout without a newline, flushed.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::text(format_args!($($arg)*))?
    };
}

pub(crate) use out;
pub(crate) use outln;
