//! Named, keyed counters with minute, hour and day windows: RocketMQ's
//! `BrokerStatsManager` items, which VIEW_BROKER_STATS_DATA, `mqadmin statsAll`
//! and the runtime info's TPS fields read.
//!
//! An item counts messages, their bytes and the number of requests that added
//! them; RocketMQ's `*_NUMS` and `*_SIZE` items are the message and byte views of
//! one item, so the send and pull paths make one lookup per request. The
//! broker-wide items are set from the broker's own counters rather than added to.
//! A sampler snapshots every item every ten seconds; a window's figures are the
//! difference between the item now and its oldest snapshot inside the window, so a
//! window that is not yet full reports what it has (a broker started 20 s ago has
//! a 20 s minute).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

/// Messages stored per topic (key: topic).
pub const TOPIC_PUT_NUMS: &str = "TOPIC_PUT_NUMS";
/// Bytes stored per topic (key: topic).
pub const TOPIC_PUT_SIZE: &str = "TOPIC_PUT_SIZE";
/// Messages pulled per group and topic (key: `topic@group`).
pub const GROUP_GET_NUMS: &str = "GROUP_GET_NUMS";
/// Bytes pulled per group and topic (key: `topic@group`).
pub const GROUP_GET_SIZE: &str = "GROUP_GET_SIZE";
/// Messages stored by the broker (key: the cluster name, as RocketMQ keys it).
pub const BROKER_PUT_NUMS: &str = "BROKER_PUT_NUMS";
/// Messages pulled from the broker (key: the cluster name).
pub const BROKER_GET_NUMS: &str = "BROKER_GET_NUMS";

/// How often the sampler runs.
pub const SAMPLE_EVERY_MS: i64 = 10_000;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Puts per topic: `TOPIC_PUT_NUMS` and `TOPIC_PUT_SIZE`.
pub const TOPIC_PUT: &str = "TOPIC_PUT";
/// Gets per `topic@group`: `GROUP_GET_NUMS` and `GROUP_GET_SIZE`.
pub const GROUP_GET: &str = "GROUP_GET";
/// The broker's puts: `BROKER_PUT_NUMS`.
pub const BROKER_PUT: &str = "BROKER_PUT";
/// The broker's gets: `BROKER_GET_NUMS`.
pub const BROKER_GET: &str = "BROKER_GET";

/// The family and view of a RocketMQ stats name (`None` for names FerroMQ does
/// not count).
fn family(name: &str) -> Option<(&'static str, bool)> {
    Some(match name {
        TOPIC_PUT_NUMS => (TOPIC_PUT, false),
        TOPIC_PUT_SIZE => (TOPIC_PUT, true),
        GROUP_GET_NUMS => (GROUP_GET, false),
        GROUP_GET_SIZE => (GROUP_GET, true),
        BROKER_PUT_NUMS => (BROKER_PUT, false),
        BROKER_GET_NUMS => (BROKER_GET, false),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: i64,
    value: u64,
    bytes: u64,
    times: u64,
}

#[derive(Debug)]
pub struct StatsItem {
    value: AtomicU64,
    bytes: AtomicU64,
    times: AtomicU64,
    /// Snapshots, oldest first: every 10 s for the last 10 minutes, then one per
    /// 10 minutes for the last day.
    samples: parking_lot::Mutex<VecDeque<Sample>>,
}

/// One window's figures, as RocketMQ's `BrokerStatsItem` (`sum`, `tps`, `avgpt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Window {
    pub sum: u64,
    pub tps: f64,
    pub avgpt: f64,
}

impl StatsItem {
    fn new(now_ms: i64) -> Self {
        let first = Sample { at_ms: now_ms, value: 0, bytes: 0, times: 0 };
        Self {
            value: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            times: AtomicU64::new(0),
            samples: parking_lot::Mutex::new(VecDeque::from([first])),
        }
    }

    fn add(&self, value: u64, bytes: u64) {
        self.value.fetch_add(value, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.times.fetch_add(1, Ordering::Relaxed);
    }

    fn set(&self, value: u64, times: u64) {
        self.value.store(value, Ordering::Relaxed);
        self.times.store(times, Ordering::Relaxed);
    }

    fn now(&self) -> Sample {
        Sample {
            at_ms: 0,
            value: self.value.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            times: self.times.load(Ordering::Relaxed),
        }
    }

    fn sample(&self, now_ms: i64) {
        let s = Sample { at_ms: now_ms, ..self.now() };
        let mut q = self.samples.lock();
        q.push_back(s);
        // Thin what is older than ten minutes to one sample per ten minutes, and
        // drop what is older than a day (keeping the one sample just past it).
        let fine_from = now_ms - 10 * MINUTE_MS;
        let mut kept: VecDeque<Sample> = VecDeque::with_capacity(q.len());
        for s in q.drain(..) {
            if let Some(last) = kept.back() {
                if s.at_ms < fine_from && s.at_ms - last.at_ms < 10 * MINUTE_MS {
                    continue;
                }
            }
            kept.push_back(s);
        }
        while kept.len() > 2 && kept[1].at_ms <= now_ms - DAY_MS {
            kept.pop_front();
        }
        *q = kept;
    }

    /// The figures over the last `span_ms` (or since the item began, if younger), of
    /// messages, or with `bytes` of their bytes.
    fn window(&self, now_ms: i64, span_ms: i64, bytes: bool) -> Window {
        let q = self.samples.lock();
        let from = now_ms - span_ms;
        // The newest sample at or before the window's start, else the oldest.
        let base = q.iter().rev().find(|s| s.at_ms <= from).or_else(|| q.front()).copied();
        drop(q);
        let Some(base) = base else { return Window::default() };
        let now = self.now();
        let pick = |s: &Sample| if bytes { s.bytes } else { s.value };
        let sum = pick(&now).saturating_sub(pick(&base));
        let calls = now.times.saturating_sub(base.times);
        let elapsed = (now_ms - base.at_ms).max(1) as f64 / 1000.0;
        Window { sum, tps: sum as f64 / elapsed, avgpt: if calls == 0 { 0.0 } else { sum as f64 / calls as f64 } }
    }
}

/// One RocketMQ stats item: the messages or the bytes of a [`StatsItem`].
#[derive(Debug, Clone)]
pub struct ItemView {
    item: Arc<StatsItem>,
    bytes: bool,
}

impl ItemView {
    pub fn window(&self, now_ms: i64, span_ms: i64) -> Window {
        self.item.window(now_ms, span_ms, self.bytes)
    }

    pub fn minute(&self, now_ms: i64) -> Window {
        self.window(now_ms, MINUTE_MS)
    }

    pub fn hour(&self, now_ms: i64) -> Window {
        self.window(now_ms, HOUR_MS)
    }

    pub fn day(&self, now_ms: i64) -> Window {
        self.window(now_ms, DAY_MS)
    }
}

/// Every stats item of a broker, by name and key.
#[derive(Debug, Default)]
pub struct StatsItems {
    items: RwLock<HashMap<&'static str, HashMap<String, Arc<StatsItem>>>>,
}

impl StatsItems {
    /// Adds `n` messages of `bytes` (one request) to the item `family`/`key`,
    /// creating it. On the send and pull paths: one read-locked lookup, and no clock
    /// read unless the item is new.
    pub fn add(&self, family: &'static str, key: &str, n: u64, bytes: u64) {
        self.item(family, key, common::time::now_ms).add(n, bytes);
    }

    /// Sets the broker-wide item `family`/`key` to a counter's totals.
    pub fn set(&self, family: &'static str, key: &str, n: u64, requests: u64) {
        self.item(family, key, common::time::now_ms).set(n, requests);
    }

    fn item(&self, family: &'static str, key: &str, now_ms: impl FnOnce() -> i64) -> Arc<StatsItem> {
        if let Some(item) = self.items.read().get(family).and_then(|m| m.get(key)) {
            return item.clone();
        }
        let mut w = self.items.write();
        w.entry(family).or_default().entry(key.to_owned()).or_insert_with(|| Arc::new(StatsItem::new(now_ms()))).clone()
    }

    /// The item RocketMQ names `name` (`TOPIC_PUT_NUMS`, `GROUP_GET_SIZE`, ...) for
    /// `key`, if it has counted anything.
    pub fn get(&self, name: &str, key: &str) -> Option<ItemView> {
        let (family, bytes) = family(name)?;
        let item = self.items.read().get(family)?.get(key).cloned()?;
        Some(ItemView { item, bytes })
    }

    /// Takes a snapshot of every item (the sampler calls this every 10 s).
    pub fn sample(&self, now_ms: i64) {
        let all: Vec<Arc<StatsItem>> = self.items.read().values().flat_map(|m| m.values().cloned()).collect();
        for item in all {
            item.sample(now_ms);
        }
    }

    /// Forgets a topic's items (the topic was deleted).
    pub fn remove_topic(&self, topic: &str) {
        let prefix = format!("{topic}@");
        let mut w = self.items.write();
        if let Some(m) = w.get_mut(TOPIC_PUT) {
            m.remove(topic);
        }
        if let Some(m) = w.get_mut(GROUP_GET) {
            m.retain(|k, _| !k.starts_with(&prefix));
        }
    }
}

/// Today's and yesterday's starting totals of a counter, for RocketMQ's
/// `msgPutTotalTodayMorning`-style fields: the total at the last local midnight
/// (and the one before), so that today's count is `now - today_morning`.
#[derive(Debug, Default)]
pub struct DailyMarks {
    inner: parking_lot::Mutex<Marks>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// Local midnight the marks belong to (epoch ms).
    pub day_start_ms: i64,
    pub today_morning: u64,
    pub yesterday_morning: u64,
}

impl DailyMarks {
    /// The marks for the day holding `now_ms` given the counter's `total` now.
    /// Crossing a midnight moves today's mark to yesterday's and starts today at
    /// `total` (the count at the first look after midnight: the sampler looks
    /// every 10 s, so at most 10 s of the new day count as the old one's).
    pub fn at(&self, day_start_ms: i64, total: u64) -> Marks {
        let mut m = self.inner.lock();
        if m.day_start_ms == 0 {
            // A broker that starts today counts today from zero.
            *m = Marks { day_start_ms, today_morning: 0, yesterday_morning: 0 };
        } else if day_start_ms > m.day_start_ms {
            let consecutive = day_start_ms - m.day_start_ms <= DAY_MS + HOUR_MS;
            m.yesterday_morning = if consecutive { m.today_morning } else { total };
            m.today_morning = total;
            m.day_start_ms = day_start_ms;
        }
        *m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_difference_against_the_sample_at_their_start() {
        let items = StatsItems::default();
        let t0 = 1_000_000;
        items.item(TOPIC_PUT, "T", || t0).add(10, 1000);
        let nums = items.get(TOPIC_PUT_NUMS, "T").unwrap();
        let size = items.get(TOPIC_PUT_SIZE, "T").unwrap();
        // Younger than a minute: everything since the start, over the time elapsed.
        let w = nums.minute(t0 + 5_000);
        assert_eq!(w.sum, 10);
        assert!((w.tps - 2.0).abs() < 1e-9, "{w:?}");
        assert_eq!(size.minute(t0 + 5_000).sum, 1000);
        for i in 1..=12 {
            items.sample(t0 + i * SAMPLE_EVERY_MS);
            items.add(TOPIC_PUT, "T", 100, 10_000);
        }
        // At t0+120 s the minute starts at the t0+60 s sample (10 + 5*100, taken before
        // that tick's add): the adds of ticks 6 to 12, 700, came since.
        let now = t0 + 120_000;
        let w = nums.minute(now);
        assert_eq!(w.sum, 700, "{w:?}");
        assert!((w.tps - 700.0 / 60.0).abs() < 1e-9, "{w:?}");
        assert_eq!(nums.hour(now).sum, 1210);
        assert!((nums.hour(now).avgpt - 1210.0 / 13.0).abs() < 1e-9);
        assert_eq!(size.minute(now).sum, 70_000, "bytes of the same adds");
        assert!(items.get(TOPIC_PUT_NUMS, "U").is_none());
        assert!(items.get("NO_SUCH_STATS", "T").is_none());
        items.set(BROKER_PUT, "C", 500, 40);
        items.set(BROKER_PUT, "C", 800, 60);
        assert_eq!(items.get(BROKER_PUT_NUMS, "C").unwrap().day(now).sum, 800, "set, not added");
        items.remove_topic("T");
        assert!(items.get(TOPIC_PUT_NUMS, "T").is_none());
    }

    #[test]
    fn old_samples_thin_out_and_a_day_is_kept() {
        let item = StatsItem::new(0);
        for i in 1..=(2 * 8640) {
            item.add(1, 1);
            item.sample(i * SAMPLE_EVERY_MS);
        }
        let n = item.samples.lock().len();
        let item = ItemView { item: Arc::new(item), bytes: false };
        // 10 minutes at 10 s, then 10-minute steps back to a day.
        assert!(n < 60 + 150, "{n} samples kept");
        let now = 2 * 8640 * SAMPLE_EVERY_MS;
        assert_eq!(item.minute(now).sum, 6);
        let day = item.day(now).sum;
        assert!((8640..=8640 + 60).contains(&day), "{day}");
    }

    #[test]
    fn daily_marks_move_at_midnight() {
        let d = DailyMarks::default();
        let day1 = 10 * DAY_MS;
        assert_eq!(d.at(day1, 7).today_morning, 0);
        assert_eq!(d.at(day1, 70).today_morning, 0);
        let m = d.at(day1 + DAY_MS, 100);
        assert_eq!((m.yesterday_morning, m.today_morning), (0, 100));
        let m = d.at(day1 + 2 * DAY_MS, 130);
        assert_eq!((m.yesterday_morning, m.today_morning), (100, 130));
    }
}
