//! Small OS helpers: the local time zone's offset, disk usage, the store lock and
//! directory syncs.
//!
//! Local time is RocketMQ's choice, not ours: it names index files
//! (`yyyyMMddHHmmssSSS`) and checks the `deleteWhen` hours with Java's
//! `Calendar.getInstance()`, i.e. in the machine's time zone. The calendar arithmetic
//! is `common::time`; this module only supplies the zone's offset.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Once;

use common::time::DateTime;

use crate::error::{Error, IoContext, Result};

/// Seconds east of UTC of the machine's local time zone at the instant `ms` (epoch
/// milliseconds), daylight saving time included: the zone Java's default `TimeZone`
/// takes, from `TZ` or else `/etc/localtime`. 0 (UTC) when the C library cannot
/// convert the instant.
///
/// The C library's `localtime_r` rather than a time-zone crate: it reads the same
/// system zone database and `TZ` rules the JVM reads, the store asks for an offset a
/// few times a minute at most, and `libc` is already a dependency.
pub(crate) fn local_offset_secs(ms: i64) -> i32 {
    extern "C" {
        // POSIX, but not exported by the `libc` crate on Unix targets.
        fn tzset();
    }
    static TZSET: Once = Once::new();
    // `localtime_r` need not read `TZ` itself (POSIX only promises that of
    // `localtime`); one `tzset` at first use does. Java also fixes its default zone
    // once, at start.
    // SAFETY: tzset reads `TZ` and the zone files and sets the C library's zone
    // globals under its own lock. Only a concurrent `setenv` could race with it, and
    // nothing in this workspace modifies the environment.
    TZSET.call_once(|| unsafe { tzset() });
    let secs = ms.div_euclid(1000) as libc::time_t;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: both pointers are valid for the call: `secs` is a live time_t and `tm`
    // is writable storage of the right type. localtime_r is the reentrant form.
    let res = unsafe { libc::localtime_r(&secs, tm.as_mut_ptr()) };
    if res.is_null() {
        return 0;
    }
    // SAFETY: localtime_r returned non-null, so it filled `tm` (it was zeroed anyway).
    let tm = unsafe { tm.assume_init() };
    i32::try_from(tm.tm_gmtoff).unwrap_or(0)
}

/// The calendar fields of the instant `ms` in the machine's local time zone.
pub(crate) fn local_time(ms: i64) -> DateTime {
    DateTime::from_ms(ms, local_offset_secs(ms))
}

/// The epoch-ms instant at which the local calendar day holding `ms` began (the
/// machine's time zone, as [`local_time`]).
pub fn local_day_start(ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    let offset = i64::from(local_offset_secs(ms)) * 1000;
    (ms + offset).div_euclid(DAY) * DAY - offset
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
pub(crate) mod tests {
    use super::*;

    /// Set, to its `TZ`, in a child started by [`run_in_time_zone`].
    const CHILD_TZ: &str = "FERROMQ_STORE_TEST_CHILD_TZ";

    /// In a child started by [`run_in_time_zone`]: the `TZ` it runs under.
    pub(crate) fn child_time_zone() -> Option<String> {
        std::env::var(CHILD_TZ).ok()
    }

    /// Runs the unit test at `path` (`module_path!()` plus its name) again, alone, in
    /// a child process started with `TZ=tz`, and asserts that it ran and passed. A
    /// test cannot switch its own process's zone: `setenv` races with every other
    /// thread of the test harness.
    pub(crate) fn run_in_time_zone(path: &str, tz: &str) {
        let name = path.split_once("::").map_or(path, |(_crate, rest)| rest);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1"])
            .env("TZ", tz)
            .env(CHILD_TZ, tz)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{name} with TZ={tz}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// 2024-02-29T13:14:15.678Z
    const FEB: i64 = 1_709_212_455_678;
    /// 2024-07-01T12:00:00Z
    const JUL: i64 = 1_719_835_200_000;

    /// The offset follows `TZ`, per instant (daylight saving time included). POSIX
    /// zone strings, so no zone database is needed.
    #[test]
    fn local_time_follows_tz() {
        const NEW_YORK: &str = "EST5EDT,M3.2.0,M11.1.0";
        let check = |ms: i64, offset: i32, name: &str| {
            assert_eq!(local_offset_secs(ms), offset);
            assert_eq!(local_time(ms).compact(), name);
        };
        match child_time_zone().as_deref() {
            None => {
                for tz in ["UTC0", "CST-8", NEW_YORK] {
                    run_in_time_zone(concat!(module_path!(), "::local_time_follows_tz"), tz);
                }
            }
            Some("UTC0") => check(FEB, 0, "20240229131415678"),
            Some("CST-8") => {
                check(FEB, 8 * 3600, "20240229211415678");
                assert_eq!(local_time(FEB).hour, 21);
            }
            Some(NEW_YORK) => {
                check(FEB, -5 * 3600, "20240229081415678");
                check(JUL, -4 * 3600, "20240701080000000");
            }
            Some(other) => panic!("no expectations for TZ={other}"),
        }
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
