//! Small OS helpers: wall clock, RocketMQ-style time names, disk usage, the store
//! lock and directory syncs.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `yyyyMMddHHmmssSSS` (UTC) of `ms`, the shape of RocketMQ index file names.
pub(crate) fn timestamp_name(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}{m:02}{d:02}{h:02}{min:02}{s:02}{milli:03}")
}

/// Hour of day (UTC) of `ms`.
pub(crate) fn hour_of_day(ms: i64) -> u8 {
    (ms.rem_euclid(86_400_000) / 3_600_000) as u8
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Fraction of the file system holding `path` that is in use (0.0..=1.0).
pub(crate) fn disk_usage_ratio(path: &Path) -> Option<f64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of
    // the right type; statvfs initialises it on success (checked).
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    let total = st.f_blocks as f64;
    if total <= 0.0 {
        return None;
    }
    let free = st.f_bfree as f64;
    let avail = st.f_bavail as f64;
    // Same as `df`: used / (used + available to unprivileged users).
    let used = total - free;
    Some(used / (used + avail))
}

/// An exclusive advisory lock on `<root>/lock`, held while the store is open.
pub(crate) struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub(crate) fn acquire(root: &Path) -> Result<Self> {
        let path = root.join("lock");
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).at(&path)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Error::Locked { path });
        }
        Ok(Self { _file: file })
    }
}

/// fsyncs a directory so a file created or removed in it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_names() {
        assert_eq!(timestamp_name(0), "19700101000000000");
        // 2024-02-29T13:14:15.678Z
        assert_eq!(timestamp_name(1_709_212_455_678), "20240229131415678");
        assert_eq!(hour_of_day(1_709_212_455_678), 13);
    }

    #[test]
    fn disk_usage_is_a_ratio() {
        let r = disk_usage_ratio(Path::new("/")).unwrap();
        assert!((0.0..=1.0).contains(&r));
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let a = StoreLock::acquire(dir.path()).unwrap();
        assert!(matches!(StoreLock::acquire(dir.path()), Err(Error::Locked { .. })));
        drop(a);
        StoreLock::acquire(dir.path()).unwrap();
    }
}
