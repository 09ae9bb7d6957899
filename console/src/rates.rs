//! Put and get rates (messages per second) of each broker.
//!
//! A Java broker reports its rates in GET_BROKER_RUNTIME_INFO (`putTps`,
//! `getTransferedTps`: "10 s, 1 min, 10 min" averages); FerroMQ's reports only
//! today's counts (`msgPutTotalTodayNow`, `msgGetTotalTodayNow`). For those the
//! console derives a rate from two readings of the counts at least a second apart,
//! kept per broker address. A rate is `None` until two readings exist; a count that
//! went down (the day rolled over, the broker restarted) starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Readings closer together than this keep the previous rate: a page refreshed twice
/// in a row must not divide by a few milliseconds.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    put: u64,
    get: u64,
    rates: Option<(f64, f64)>,
}

/// The last reading of each broker.
#[derive(Debug, Default)]
pub struct RateMeter {
    last: Mutex<HashMap<String, Reading>>,
}

impl RateMeter {
    /// The put and get rates of the broker at `addr`, given its runtime table read at
    /// `now`: the broker's own figures when it reports them, else the change of its
    /// counts since an earlier reading.
    pub fn observe(&self, addr: &str, table: &std::collections::BTreeMap<String, String>, now: Instant) -> Rates {
        let reported = |k: &str| table.get(k).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok());
        if let (Some(put), Some(get)) = (reported("putTps"), reported("getTransferedTps").or(reported("getFoundTps"))) {
            return Rates { put: Some(put), get: Some(get) };
        }
        let count = |k: &str| table.get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let (Some(put), Some(get)) = (count("msgPutTotalTodayNow"), count("msgGetTotalTodayNow")) else {
            return Rates::default();
        };
        let mut last = self.last.lock();
        let reading = match last.get(addr) {
            None => Reading { at: now, put, get, rates: None },
            Some(prev) if put < prev.put || get < prev.get => Reading { at: now, put, get, rates: None },
            Some(prev) => {
                let elapsed = now.saturating_duration_since(prev.at);
                if elapsed < MIN_INTERVAL {
                    return Rates::from(prev.rates);
                }
                let secs = elapsed.as_secs_f64();
                let rates = ((put - prev.put) as f64 / secs, (get - prev.get) as f64 / secs);
                Reading { at: now, put, get, rates: Some(rates) }
            }
        };
        last.insert(addr.to_owned(), reading);
        Rates::from(reading.rates)
    }

    /// Forgets brokers not in `addrs` (unregistered ones).
    pub fn retain(&self, addrs: &[&str]) {
        self.last.lock().retain(|k, _| addrs.contains(&k.as_str()));
    }
}

/// A broker's put and get rates, messages per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub put: Option<f64>,
    pub get: Option<f64>,
}

impl From<Option<(f64, f64)>> for Rates {
    fn from(r: Option<(f64, f64)>) -> Self {
        Rates { put: r.map(|r| r.0), get: r.map(|r| r.1) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn table(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn counts(put: u64, get: u64) -> BTreeMap<String, String> {
        table(&[("msgPutTotalTodayNow", &put.to_string()), ("msgGetTotalTodayNow", &get.to_string())])
    }

    #[test]
    fn rates_come_from_counts_a_second_or_more_apart() {
        let r = RateMeter::default();
        let t0 = Instant::now();
        let check = |t: Duration, put: u64, get: u64, want: Option<(f64, f64)>| {
            assert_eq!(r.observe("b:1", &counts(put, get), t0 + t), Rates::from(want), "at {t:?}");
        };
        check(Duration::ZERO, 100, 10, None);
        check(Duration::from_millis(200), 150, 10, None);
        check(Duration::from_secs(2), 300, 30, Some((100.0, 10.0)));
        // Too soon: the last rate again, and the reading is not taken.
        check(Duration::from_millis(2500), 400, 30, Some((100.0, 10.0)));
        check(Duration::from_secs(4), 500, 30, Some((100.0, 0.0)));
        // The day rolled over: start again.
        check(Duration::from_secs(6), 5, 0, None);
        check(Duration::from_secs(7), 15, 0, Some((10.0, 0.0)));
    }

    #[test]
    fn a_java_brokers_own_figures_win() {
        let r = RateMeter::default();
        let t = table(&[("putTps", "12.5 10.1 9.0"), ("getTransferedTps", "3.0 2 1"), ("msgPutTotalTodayNow", "7")]);
        assert_eq!(r.observe("b:1", &t, Instant::now()), Rates { put: Some(12.5), get: Some(3.0) });
        assert_eq!(r.observe("b:1", &table(&[("putTps", "x")]), Instant::now()), Rates::default());
    }
}
