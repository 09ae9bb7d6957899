//! Crash-safe files for the JSON state servers keep (`topics.json`,
//! `consumerOffset.json`, `kvConfig.json`, ...).
//!
//! A write goes to `<file>.tmp`, is synced, the old file is copied to `<file>.bak`,
//! and the temporary file is renamed over the original; so a crash leaves either the
//! old or the new content, never a torn file. Reading falls back to the `.bak` copy
//! when the main file is missing or empty, as RocketMQ's `ConfigManager` does.

use std::io::Write;
use std::path::{Path, PathBuf};

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Replaces `path` with `bytes` atomically, keeping the previous content as `.bak`.
///
/// # Errors
/// Any I/O failure; the original file is then unchanged.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = with_suffix(path, ".tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    if path.exists() {
        std::fs::copy(path, with_suffix(path, ".bak"))?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads `path`, or its `.bak` copy when `path` is missing or blank. `Ok(None)` when
/// neither has content.
///
/// # Errors
/// I/O failures other than "not found".
pub fn read_with_backup(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    for candidate in [path.to_path_buf(), with_suffix(path, ".bak")] {
        match std::fs::read(&candidate) {
            Ok(b) if !b.iter().all(u8::is_ascii_whitespace) => return Ok(Some(b)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_keeps_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config").join("topics.json");
        assert_eq!(read_with_backup(&path).unwrap(), None);
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(read_with_backup(&path).unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(std::fs::read(with_suffix(&path, ".bak")).unwrap(), b"one");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(read_with_backup(&path).unwrap().as_deref(), Some(&b"one"[..]), "blank file falls back to .bak");
    }
}
