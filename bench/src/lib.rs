//! Load generators: `store_load` drives the store in process; `wire_load`,
//! `client_load` and `timer_load` drive a running broker over the wire. This library
//! holds what the wire-level generators share.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use remoting::header::broker::CreateTopicRequestHeader;
use remoting::{RemotingClient, RemotingCommand, RequestCode, ResponseCode};

/// Counters and a latency histogram, recording only while `measuring` is set (so
/// warm-up is excluded).
pub struct Stats {
    pub msgs: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    pub hist: Mutex<Histogram<u64>>,
    pub measuring: AtomicBool,
}

impl Stats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            msgs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")),
            measuring: AtomicBool::new(false),
        })
    }

    pub fn record(&self, n: u64, bytes: u64, latency: Option<Duration>) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        self.msgs.fetch_add(n, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(l) = latency {
            let _ = self.hist.lock().record((l.as_micros() as u64).max(1));
        }
    }

    /// Prints what was measured over `elapsed` seconds: one JSON object (`run`, the
    /// run's description, plus rates, errors, latency percentiles, commit and CPUs) with
    /// `json`, else two readable lines headed by `label`.
    pub fn report(&self, label: &str, elapsed: f64, mut run: serde_json::Value, json: bool) {
        let msgs = self.msgs.load(Ordering::Relaxed) as f64 / elapsed;
        let mb = self.bytes.load(Ordering::Relaxed) as f64 / elapsed / 1_000_000.0;
        let errors = self.errors.load(Ordering::Relaxed);
        let (p50, p99, p999, max) = {
            let hist = self.hist.lock();
            let pct = |q: f64| if hist.is_empty() { 0.0 } else { hist.value_at_quantile(q) as f64 / 1000.0 };
            (pct(0.5), pct(0.99), pct(0.999), hist.max() as f64 / 1000.0)
        };
        if json {
            if let Some(o) = run.as_object_mut() {
                o.insert("seconds".into(), elapsed.into());
                o.insert("msgs_per_sec".into(), msgs.into());
                o.insert("mb_per_sec".into(), mb.into());
                o.insert("errors".into(), errors.into());
                o.insert("latency_ms".into(), serde_json::json!({ "p50": p50, "p99": p99, "p999": p999, "max": max }));
                o.insert("commit".into(), option_env!("FERROMQ_COMMIT").unwrap_or("unknown").into());
                o.insert("cpus".into(), std::thread::available_parallelism().map_or(0, |n| n.get()).into());
            }
            println!("{run}");
        } else {
            println!("{label}: {msgs:.0} msgs/s, {mb:.1} MB/s, errors {errors}");
            println!("latency ms: p50 {p50:.3}  p99 {p99:.3}  p999 {p999:.3}  max {max:.3}");
        }
    }
}

/// A body of `size` bytes whose first 8 bytes are the send instant (ns since `epoch`),
/// so consumers can measure produce-to-consume latency.
pub fn body(size: usize, epoch: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(8));
    b.put_u64(epoch.elapsed().as_nanos() as u64);
    b.resize(size.max(8), b'x');
    b.freeze()
}

/// Creates (or updates) `topic` with `queues` queues on `broker`.
///
/// # Errors
/// Transport failure or a refusal.
pub async fn create_topic(client: &RemotingClient, broker: &str, topic: &str, queues: i32) -> Result<()> {
    let h = CreateTopicRequestHeader::new(topic, queues);
    let resp = client
        .invoke(broker, RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &h), Duration::from_secs(5))
        .await?;
    if resp.response_code() != ResponseCode::SUCCESS {
        bail!("creating topic {topic}: {:?} {}", resp.response_code(), resp.remark_str());
    }
    Ok(())
}

/// The queue's next offset.
///
/// # Errors
/// Transport failure or a malformed answer.
pub async fn max_offset(client: &RemotingClient, broker: &str, topic: &str, queue: i32) -> Result<i64> {
    let h =
        remoting::header::broker::GetMaxOffsetRequestHeader { topic: topic.into(), queue_id: queue, committed: None };
    let resp = client
        .invoke(broker, RemotingCommand::request_with(RequestCode::GET_MAX_OFFSET, &h), Duration::from_secs(5))
        .await?;
    Ok(resp.decode_header::<remoting::header::broker::OffsetResponseHeader>()?.offset)
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`
/// (`None`: this process).
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let text = std::fs::read_to_string(path).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces:
    // the first of them is field 3 (state), so utime (14) and stime (15) are 11 and 12.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports them in USER_HZ, 100 per second on every ABI this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// The CPU a server process and this generator spend over a measurement window.
pub struct CpuWindow {
    server: Option<u32>,
    server_at_start: Option<Duration>,
    own_at_start: Option<Duration>,
}

impl CpuWindow {
    /// Opens the window (`server`: the server's pid, if it is to be measured).
    pub fn start(server: Option<u32>) -> Self {
        Self { server, server_at_start: server.and_then(|p| cpu_time(Some(p))), own_at_start: cpu_time(None) }
    }

    /// Closes it: `server_cpu_us_per_msg` and `client_cpu_us_per_msg` for `msgs`
    /// messages, added to `run`.
    pub fn finish(&self, msgs: u64, run: &mut serde_json::Value) {
        let per_msg = |start: Option<Duration>, end: Option<Duration>| match (start, end) {
            (Some(s), Some(e)) if msgs > 0 => Some(e.saturating_sub(s).as_secs_f64() * 1e6 / msgs as f64),
            _ => None,
        };
        let server = per_msg(self.server_at_start, self.server.and_then(|p| cpu_time(Some(p))));
        let own = per_msg(self.own_at_start, cpu_time(None));
        if let Some(o) = run.as_object_mut() {
            if let Some(us) = server {
                o.insert("server_cpu_us_per_msg".into(), us.into());
            }
            if let Some(us) = own {
                o.insert("client_cpu_us_per_msg".into(), us.into());
            }
        }
    }
}

/// Waits out `warmup`, then counts for `duration`; returns the measured seconds and
/// adds the server's (`server_pid`) and this generator's CPU per message over that
/// window to `run`.
pub async fn measure(
    stats: &Stats,
    server_pid: Option<u32>,
    warmup: Duration,
    duration: Duration,
    run: &mut serde_json::Value,
) -> f64 {
    tokio::time::sleep(warmup).await;
    let cpu = CpuWindow::start(server_pid);
    stats.measuring.store(true, Ordering::Relaxed);
    let started = std::time::Instant::now();
    tokio::time::sleep(duration).await;
    stats.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    cpu.finish(stats.msgs.load(Ordering::Relaxed), run);
    elapsed
}
