//! What plugins log: every line a plugin writes (`log` from the WASM SDK, `print` or
//! `log` in Lua) goes to the process log with the plugin's name attached and into a
//! per-plugin ring of the newest lines, which the broker serves to
//! `ferromq-admin plugin logs`. A plugin may write at most [`LINES_PER_SECOND`] lines
//! a second; the rest are counted and reported in one line when it may write again,
//! so a chatty plugin cannot flood the broker's log.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Lines kept per plugin.
pub const RING_LINES: usize = 1000;
/// Lines a plugin may write per second (across its instances).
pub const LINES_PER_SECOND: u32 = 100;
/// Longest line kept, in bytes.
const MAX_LINE: usize = 1024;

/// One line a plugin wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Position in the plugin's log, from 1: ask for lines after it to follow.
    pub seq: u64,
    /// When it was written (ms since the Unix epoch).
    pub time_millis: u64,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: &'static str,
    /// The line.
    pub message: String,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    next_seq: u64,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

static RINGS: LazyLock<Mutex<HashMap<String, Arc<Mutex<Ring>>>>> = LazyLock::new(Default::default);

fn ring(plugin: &str) -> Arc<Mutex<Ring>> {
    RINGS.lock().entry(plugin.to_owned()).or_default().clone()
}

fn level_name(level: i32) -> &'static str {
    match level {
        1 => "error",
        2 => "warn",
        3 => "info",
        4 => "debug",
        _ => "trace",
    }
}

/// Records a line `plugin` wrote (`level`: 1 error … 5 trace, as the SDK numbers
/// them): to the process log and the plugin's ring, within the rate limit.
pub fn record(plugin: &str, level: i32, message: &str) {
    let mut message = message.to_owned();
    if message.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let ring = ring(plugin);
    let mut r = ring.lock();
    let now = Instant::now();
    if r.window_start.is_none_or(|s| now.duration_since(s).as_secs() >= 1) {
        r.window_start = Some(now);
        r.in_window = 0;
        let suppressed = std::mem::take(&mut r.suppressed);
        if suppressed > 0 {
            let note = format!("{suppressed} line(s) suppressed: more than {LINES_PER_SECOND} a second");
            tracing::warn!(plugin, "{note}");
            push(&mut r, 2, note);
        }
    }
    if r.in_window >= LINES_PER_SECOND {
        r.suppressed += 1;
        return;
    }
    r.in_window += 1;
    match level {
        1 => tracing::error!(plugin, "{message}"),
        2 => tracing::warn!(plugin, "{message}"),
        3 => tracing::info!(plugin, "{message}"),
        4 => tracing::debug!(plugin, "{message}"),
        _ => tracing::trace!(plugin, "{message}"),
    }
    push(&mut r, level, message);
}

fn push(r: &mut Ring, level: i32, message: String) {
    r.next_seq += 1;
    let time_millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let line = LogLine { seq: r.next_seq, time_millis, level: level_name(level), message };
    if r.lines.len() == RING_LINES {
        r.lines.pop_front();
    }
    r.lines.push_back(line);
}

/// The lines of `plugin` after `since` (0: all kept), oldest first.
pub fn since(plugin: &str, since: u64) -> Vec<LogLine> {
    let Some(ring) = RINGS.lock().get(plugin).cloned() else { return Vec::new() };
    let r = ring.lock();
    r.lines.iter().filter(|l| l.seq > since).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_in_order_and_followed_by_sequence() {
        record("logs-order", 3, "first");
        record("logs-order", 1, "second");
        let all = since("logs-order", 0);
        assert_eq!(all.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["first", "second"]);
        assert_eq!(all[1].level, "error");
        assert_eq!(since("logs-order", all[0].seq), all[1..]);
        assert!(since("logs-nobody", 0).is_empty());
    }

    #[test]
    fn a_chatty_plugin_is_limited_and_the_ring_is_bounded() {
        for i in 0..(LINES_PER_SECOND + 50) {
            record("logs-chatty", 3, &format!("line {i}"));
        }
        assert_eq!(since("logs-chatty", 0).len(), LINES_PER_SECOND as usize, "the rest of the second is dropped");
        let long = "x".repeat(5000);
        record("logs-long", 3, &long);
        assert_eq!(since("logs-long", 0)[0].message.len(), MAX_LINE);
    }
}
