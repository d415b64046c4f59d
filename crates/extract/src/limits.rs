//! Process resource limits (address space, CPU, open files, file size), applied before the
//! input is touched and inherited by every program the extractor starts.

use std::io;

use rlimit::Resource;

/// Open file descriptors: enough for tesseract's data files and a few pipes.
const MAX_OPEN_FILES: u64 = 64;
/// Largest regular file we (or poppler) may write: stdout is normally a pipe, which this does
/// not affect; the cap only matters if someone redirects stdout to a file.
const MAX_WRITTEN_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The limits to apply, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct ResourceLimits {
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
}

/// Lower the soft and hard limits of this process. A limit never goes above the current hard
/// limit (an unprivileged process may not raise it), so this cannot fail for that reason.
pub fn apply(limits: ResourceLimits) -> io::Result<()> {
    lower(Resource::AS, limits.memory_bytes, limits.memory_bytes)?;
    // SIGXCPU at the soft limit, SIGKILL one second later if it is ignored.
    lower(
        Resource::CPU,
        limits.cpu_seconds,
        limits.cpu_seconds.saturating_add(1),
    )?;
    lower(Resource::NOFILE, MAX_OPEN_FILES, MAX_OPEN_FILES)?;
    lower(
        Resource::FSIZE,
        MAX_WRITTEN_FILE_BYTES,
        MAX_WRITTEN_FILE_BYTES,
    )?;
    Ok(())
}

fn lower(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let (_, current_hard) = resource.get()?;
    let hard = hard.min(current_hard);
    resource.set(soft.min(hard), hard)
}
