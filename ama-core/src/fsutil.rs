//! Durable file operations on the local file system: the pattern every
//! local write in ama follows (write a temporary file, fsync it, rename it
//! into place, fsync the directory), so a crash leaves either the old state or
//! the new one, never a torn file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// fsyncs a directory so that entries created or renamed in it are durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `path` (failing if it exists) with `data`, durably: the parent
/// directory is created if needed and fsync'ed after the file.
pub fn write_new_durable(path: &Path, data: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io(parent))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    fsync_dir(parent).map_err(io(parent))?;
    Ok(())
}
