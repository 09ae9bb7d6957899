//! Timer load: schedules many timed messages (`TIMER_DELIVER_MS`) on a broker,
//! then reads them back as they fire, and reports
//!
//! * the schedule throughput (timed sends/s acknowledged by the broker);
//! * the fire throughput (timers re-published per second, from the first due
//!   instant to the last delivery);
//! * the delivery lag: actual delivery minus the requested instant, as the
//!   broker's store timestamp of the re-published message (`stored`) and as the
//!   moment a long-polling consumer received it (`received`): p50, p99, p99.9, max;
//! * exactly-once: every timer delivered, none twice (the body carries its index).
//!
//! The instants are spread evenly over `--spread` starting `--lead` after the
//! schedule phase begins; `--spread 0s` makes every timer due at the same
//! instant (a burst: measures the fire throughput). `--lead` must cover the
//! schedule phase; the run says so when it does not.
//!
//! Example (a release broker on 127.0.0.1:10911):
//! `target/release/timer_load --broker 127.0.0.1:10911 --timers 1000000 --lead 30s --spread 60s`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::{create_topic, max_offset};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use remoting::header::broker::{PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeaderV2};
use remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode, ResponseCode};

#[derive(Debug, Parser)]
#[command(name = "timer_load", about = "FerroMQ timer (TIMER_DELIVER_MS) throughput and delivery lag")]
struct Args {
    /// Broker address (`ip:port`).
    #[arg(long)]
    broker: String,
    #[arg(long, default_value = "TimerLoad")]
    topic: String,
    /// Queues of the topic (created if missing); one long-polling puller each.
    #[arg(long, default_value_t = 8)]
    queues: i32,
    /// Timed messages to schedule.
    #[arg(long, default_value_t = 1_000_000)]
    timers: u64,
    /// Body size in bytes (at least 8: the timer's index).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Sending connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Sends in flight per connection.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// From the start of the schedule phase to the first due instant.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    lead: Duration,
    /// The due instants are spread evenly over this long (0s: all at once).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    spread: Duration,
    /// Give up this long after the last due instant.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

use common::time::now_ms;

fn send_request(topic: &str, queue_id: i32, at_ms: i64, index: u64, size: usize) -> RemotingCommand {
    let h = SendMessageRequestHeaderV2 {
        producer_group: "BENCH_TIMER_PG".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp: now_ms(),
        flag: 0,
        properties: Some(format!("TIMER_DELIVER_MS\u{1}{at_ms}\u{2}WAIT\u{1}true")),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: None,
    };
    let mut b = BytesMut::with_capacity(size.max(8));
    b.put_u64(index);
    b.resize(size.max(8), b't');
    let body: Bytes = b.freeze();
    RemotingCommand::request_with(RequestCode::SEND_MESSAGE_V2, &h).with_body(body)
}

fn pull_request(topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    let h = PullMessageRequestHeader {
        consumer_group: "BENCH_TIMER_CG".into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 1024,
        sys_flag: common::sysflag::pull::SUBSCRIPTION | common::sysflag::pull::SUSPEND,
        commit_offset: 0,
        suspend_timeout_millis: 5_000,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        broker_name: None,
    };
    RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &h)
}

/// Where the deliveries are recorded.
struct Observed {
    stored: Mutex<Histogram<u64>>,
    received: Mutex<Histogram<u64>>,
    early: AtomicU64,
    duplicates: AtomicU64,
    delivered: AtomicU64,
    last_store_ms: AtomicU64,
    seen: Mutex<Vec<u64>>,
}

impl Observed {
    fn new(n: u64) -> Arc<Self> {
        let h = || Mutex::new(Histogram::new_with_bounds(1, 3_600_000, 3).expect("histogram bounds"));
        Arc::new(Self {
            stored: h(),
            received: h(),
            early: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            last_store_ms: AtomicU64::new(0),
            seen: Mutex::new(vec![0u64; n.div_ceil(64) as usize]),
        })
    }

    /// Records the records of one pull answer; lags in ms (0 is recorded as 1:
    /// the histogram's floor).
    fn record(&self, body: &Bytes, received_ms: i64) -> usize {
        let mut n = 0;
        let mut stored = Vec::new();
        let mut received = Vec::new();
        let mut buf = body.clone();
        while !buf.is_empty() {
            let Ok(v) = common::record::RecordView::parse(&buf) else { break };
            let size = v.total_size();
            let props = std::str::from_utf8(v.properties_raw()).unwrap_or("");
            let at: i64 = common::properties::find_in_encoded(props, "TIMER_DELIVER_MS")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let store = v.store_timestamp();
            let b = &buf[v.body_range()];
            let index = if b.len() >= 8 { u64::from_be_bytes(b[..8].try_into().unwrap_or_default()) } else { u64::MAX };
            {
                let mut seen = self.seen.lock();
                let (w, bit) = ((index / 64) as usize, index % 64);
                if let Some(word) = seen.get_mut(w) {
                    if *word & (1 << bit) != 0 {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    *word |= 1 << bit;
                }
            }
            if store < at {
                self.early.fetch_add(1, Ordering::Relaxed);
            }
            stored.push((store - at).max(1) as u64);
            received.push((received_ms - at).max(1) as u64);
            self.last_store_ms.fetch_max(store as u64, Ordering::Relaxed);
            n += 1;
            buf = buf.slice(size.min(buf.len())..);
        }
        {
            let mut h = self.stored.lock();
            for s in stored {
                let _ = h.record(s);
            }
        }
        {
            let mut h = self.received.lock();
            for r in received {
                let _ = h.record(r);
            }
        }
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
        n
    }
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "p50_ms": h.value_at_quantile(0.5),
        "p99_ms": h.value_at_quantile(0.99),
        "p999_ms": h.value_at_quantile(0.999),
        "max_ms": h.max(),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.timers == 0 {
        bail!("--timers must be positive");
    }
    let admin = RemotingClient::new(ClientConfig::default(), None);
    create_topic(&admin, &args.broker, &args.topic, args.queues).await.context("creating the topic")?;
    let mut start_offsets = Vec::new();
    for q in 0..args.queues {
        start_offsets.push(max_offset(&admin, &args.broker, &args.topic, q).await?);
    }

    // Pullers first: they long-poll from the current tail.
    let observed = Observed::new(args.timers);
    let mut pullers = Vec::new();
    for (q, from) in start_offsets.iter().enumerate() {
        let client = RemotingClient::new(ClientConfig::default(), None);
        let (broker, topic, obs) = (args.broker.clone(), args.topic.clone(), observed.clone());
        let target = args.timers;
        let mut offset = *from;
        pullers.push(tokio::spawn(async move {
            while obs.delivered.load(Ordering::Relaxed) < target {
                let resp =
                    match client.invoke(&broker, pull_request(&topic, q as i32, offset), Duration::from_secs(15)).await
                    {
                        Ok(r) => r,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                let received = now_ms();
                if let Ok(h) = resp.decode_header::<PullMessageResponseHeader>() {
                    if resp.response_code() == ResponseCode::SUCCESS {
                        obs.record(&resp.body_bytes(), received);
                    }
                    if h.next_begin_offset > offset {
                        offset = h.next_begin_offset;
                    }
                }
            }
        }));
    }

    // Schedule.
    let n = args.timers;
    let schedule_start = Instant::now();
    let first_due = now_ms() + args.lead.as_millis() as i64;
    let spread = args.spread.as_millis() as u64;
    let at = move |i: u64| first_due + (i.saturating_mul(spread) / n) as i64;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..args.connections {
        let client = RemotingClient::new(ClientConfig::default(), None);
        let (broker, topic, next, errors) = (args.broker.clone(), args.topic.clone(), next.clone(), errors.clone());
        let (queues, size, inflight) = (args.queues, args.size, args.inflight);
        senders.push(tokio::spawn(async move {
            let indexes = futures::stream::iter(std::iter::from_fn(|| {
                let i = next.fetch_add(1, Ordering::Relaxed);
                (i < n).then_some(i)
            }));
            indexes
                .map(|i| {
                    let req = send_request(&topic, (i % queues as u64) as i32, at(i), i, size);
                    let (client, broker) = (&client, &broker);
                    async move { client.invoke(broker, req, Duration::from_secs(30)).await }
                })
                .buffer_unordered(inflight)
                .for_each(|r| {
                    if !matches!(r, Ok(ref resp) if resp.response_code() == ResponseCode::SUCCESS) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    std::future::ready(())
                })
                .await;
        }));
    }
    for s in senders {
        s.await?;
    }
    let schedule_time = schedule_start.elapsed();
    let scheduled_at = now_ms();
    let send_errors = errors.load(Ordering::Relaxed);
    let overran = scheduled_at > first_due;

    // Fire.
    let last_due = at(n - 1);
    let deadline = Instant::now() + Duration::from_millis((last_due - now_ms()).max(0) as u64) + args.timeout;
    let expected = n - send_errors;
    while observed.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in &pullers {
        p.abort();
    }
    let delivered = observed.delivered.load(Ordering::Relaxed);
    let last_store = observed.last_store_ms.load(Ordering::Relaxed) as i64;
    let fire_window_ms = (last_store - first_due).max(1);
    let stored = observed.stored.lock().clone();
    let received = observed.received.lock().clone();
    let missing = {
        let seen = observed.seen.lock();
        (0..n).filter(|i| seen[(*i / 64) as usize] & (1 << (i % 64)) == 0).count() as u64
    };
    let report = serde_json::json!({
        "timers": n,
        "queues": args.queues,
        "body_bytes": args.size.max(8),
        "lead_ms": args.lead.as_millis() as u64,
        "spread_ms": spread,
        "schedule": {
            "seconds": schedule_time.as_secs_f64(),
            "timers_per_s": n as f64 / schedule_time.as_secs_f64(),
            "errors": send_errors,
            "overran_first_due_instant": overran,
        },
        "fire": {
            "delivered": delivered,
            "missing": missing,
            "duplicates": observed.duplicates.load(Ordering::Relaxed),
            "early": observed.early.load(Ordering::Relaxed),
            "window_ms": fire_window_ms,
            "timers_per_s": delivered as f64 * 1000.0 / fire_window_ms as f64,
        },
        "lag_stored": percentiles(&stored),
        "lag_received": percentiles(&received),
    });
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "timers {n}, {} queues, instants spread over {} ms starting {} ms ahead",
            args.queues,
            spread,
            args.lead.as_millis()
        );
        println!(
            "schedule: {:.2} s, {:.0} timers/s, {send_errors} errors{}",
            schedule_time.as_secs_f64(),
            n as f64 / schedule_time.as_secs_f64(),
            if overran { " (OVERRAN the first due instant: raise --lead)" } else { "" }
        );
        println!(
            "fire: {delivered} delivered, {missing} missing, {} duplicates, {} early; first due → last delivered {} ms = {:.0} timers/s",
            observed.duplicates.load(Ordering::Relaxed),
            observed.early.load(Ordering::Relaxed),
            fire_window_ms,
            delivered as f64 * 1000.0 / fire_window_ms as f64
        );
        for (name, h) in [("stored", &stored), ("received", &received)] {
            println!(
                "lag {name:8}: p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
        }
    }
    if missing > 0 || delivered < expected {
        bail!("{missing} timers never delivered");
    }
    Ok(())
}
