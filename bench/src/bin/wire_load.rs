//! End-to-end load generator speaking RocketMQ's wire protocol to a broker.
//!
//! Modes:
//! * `send` — N connections × M requests in flight of SEND_MESSAGE_V2 (sync sends):
//!   msgs/s, MB/s and send latency percentiles; `--rate` caps the total rate (for
//!   latency at a given load).
//! * `pull` — pulls a pre-filled topic with M pulls in flight per connection:
//!   msgs/s and MB/s of message bytes.
//! * `e2e` — senders at `--rate` plus long-polling pullers: produce-to-consume
//!   latency (the body carries the send instant). With `--pull-broker` the pullers
//!   read another broker — a slave — so the latency is the replication lag as a
//!   consumer of the slave sees it.
//!
//! * `populate` — `--topics` topics (`Series0`, `Series1`, ...) with one message
//!   each, pulled by `--groups` consumer groups: the per-topic and per-group series a
//!   large broker exports; then times `--scrape` back to back.
//!
//! `--scrape http://HOST:PORT/metrics` reads a metrics endpoint every
//! `--scrape-every` during the measurement and reports how long each read took.
//!
//! * `connect` — new connections per second, each a TCP connect (and a TLS
//!   handshake with `--tls`), one heartbeat answered, then closed.
//!
//! `--tls` (or `--tls-ca PEM`, which also verifies the broker) connects over TLS.
//!
//! `--write-per-request` (send mode) writes each request with its own `write` call,
//! as a client that flushes every send does; by default a connection's ready
//! requests go out together in one `writev`, as the SDK sends them.
//!
//! `--ha-lag-from MASTER` also samples the master's GET_BROKER_HA_STATUS every 10 ms
//! during the measurement and reports its slaves' lag in bytes (largest `diff`).
//!
//! Example: `cargo run --release -p bench --bin wire_load -- --broker 127.0.0.1:10911
//! --mode send --connections 4 --inflight 64 --size 1024 --duration 10s`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bench::{body, Stats};
use bench::{create_topic, max_offset};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use remoting::header::broker::{PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeaderV2};
use remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode, ResponseCode};

/// The broker's allocator: the generator shares the machine's two cores with the
/// broker, so its own allocations should cost as little.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    Send,
    Pull,
    E2e,
    /// Creates `--topics` x `--groups` metric series, then times `--scrape`.
    Populate,
    /// Times a slave (`--pull-broker`) catching up with its master (`--broker`):
    /// from its first progress to its end matching the master's.
    CatchUp,
    /// New connections per second (with a TLS handshake under `--tls`).
    Connect,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "wire_load", about = "FerroMQ/RocketMQ wire-protocol load generator")]
struct Args {
    /// Broker address (`ip:port`).
    #[arg(long)]
    broker: String,
    #[arg(long, value_enum, default_value = "send")]
    mode: Mode,
    #[arg(long, default_value = "BenchmarkLoad")]
    topic: String,
    /// Queues of the topic (created if missing).
    #[arg(long, default_value_t = 8)]
    queues: i32,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// TCP connections (each is one RocketMQ client connection).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    /// Total send rate cap in messages/s (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Measurement time (humantime).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Warm-up time before measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Messages to pre-fill for `pull` mode.
    #[arg(long, default_value_t = 200_000)]
    prefill: u64,
    /// Consumer group of the pullers (a broker-side plugin binding may name it).
    #[arg(long, default_value = "BENCH_CG")]
    group: String,
    /// Subscription expression of the pullers.
    #[arg(long, default_value = "*")]
    expression: String,
    /// Subscription expression type: `TAG`, `SQL92` or `PLUGIN:<name>`.
    #[arg(long, default_value = "TAG")]
    expression_type: String,
    /// Broker the e2e pullers read (default: `--broker`), e.g. a slave.
    #[arg(long)]
    pull_broker: Option<String>,
    /// A master whose slaves' replication lag (bytes) is sampled every 10 ms.
    #[arg(long)]
    ha_lag_from: Option<String>,
    /// Topics for `populate`.
    #[arg(long, default_value_t = 1000)]
    topics: usize,
    /// Consumer groups reading each topic, for `populate`.
    #[arg(long, default_value_t = 10)]
    groups: usize,
    /// A metrics endpoint to read during the run (`http://127.0.0.1:5557/metrics`).
    #[arg(long)]
    scrape: Option<String>,
    /// How often `--scrape` reads it.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    scrape_every: Duration,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Sign every request with this ACL account (RocketMQ's `AclClientRPCHook`).
    #[arg(long, requires = "secret_key")]
    access_key: Option<String>,
    #[arg(long, requires = "access_key")]
    secret_key: Option<String>,
    /// The broker's pid: its CPU per message is reported (with this generator's).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Send mode: one `write` call per request instead of one `writev` per batch of
    /// ready requests (plain TCP only).
    #[arg(long, conflicts_with_all = ["tls", "tls_ca"])]
    write_per_request: bool,
    /// Connect with TLS, accepting any certificate the broker shows.
    #[arg(long)]
    tls: bool,
    /// Connect with TLS, verifying the broker against these roots (PEM).
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
}

/// The account every connection signs with, from `--access-key`/`--secret-key`.
static CREDENTIALS: std::sync::OnceLock<Option<remoting::acl::Credentials>> = std::sync::OnceLock::new();

/// The TLS of every connection, from `--tls`/`--tls-ca`.
static TLS: std::sync::OnceLock<Option<remoting::tls::ClientTls>> = std::sync::OnceLock::new();

/// Connection settings: signed when an account was given, over TLS when asked.
fn client_config() -> ClientConfig {
    ClientConfig {
        credentials: CREDENTIALS.get().cloned().flatten(),
        tls: TLS.get().cloned().flatten(),
        ..ClientConfig::default()
    }
}

/// `--mode connect`: per `--connections` loop, a new client that connects, has one
/// heartbeat answered and closes, over and over.
fn run_connectors(args: &Args, stats: &Arc<Stats>, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..args.connections)
        .map(|i| {
            let (stats, stop, broker) = (stats.clone(), stop.clone(), args.broker.clone());
            let heartbeat = format!(r#"{{"clientID":"bench-connect-{i}","producerDataSet":[],"consumerDataSet":[]}}"#);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let client = RemotingClient::new(client_config(), None);
                    let req =
                        RemotingCommand::request(RequestCode::HEART_BEAT).with_body(heartbeat.clone().into_bytes());
                    match client.invoke(&broker, req, Duration::from_secs(10)).await {
                        Ok(r) if r.response_code() == ResponseCode::SUCCESS => {
                            stats.record(1, 0, Some(started.elapsed()));
                        }
                        _ => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    client.shutdown();
                }
            })
        })
        .collect()
}

/// Samples a master's replication lag (the largest slave `diff`, bytes) every 10 ms
/// while `measuring`.
async fn sample_ha_lag(
    master: String,
    lag: Arc<parking_lot::Mutex<hdrhistogram::Histogram<u64>>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let client = RemotingClient::new(client_config(), None);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if !stats.measuring.load(Ordering::Relaxed) {
            continue;
        }
        let req = RemotingCommand::request(RequestCode::GET_BROKER_HA_STATUS);
        let Ok(resp) = client.invoke(&master, req, Duration::from_secs(1)).await else { continue };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&resp.body_bytes()) else { continue };
        let diff = v["haConnectionInfo"].as_array().and_then(|c| c.iter().filter_map(|c| c["diff"].as_i64()).max());
        if let Some(d) = diff {
            let _ = lag.lock().record(d.max(0) as u64);
        }
    }
}

/// Timeout of the requests `populate` makes.
const T: Duration = Duration::from_secs(10);

/// One GET of `url` (`http://host:port/path`): the body's length and how long the
/// whole exchange took.
async fn scrape_once(url: &str) -> Result<(usize, Duration)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("--scrape takes an http:// URL")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::with_capacity(1 << 20);
    s.read_to_end(&mut raw).await?;
    let took = started.elapsed();
    anyhow::ensure!(raw.starts_with(b"HTTP/1.1 200") || raw.starts_with(b"HTTP/1.0 200"), "scrape of {url} failed");
    Ok((raw.len(), took))
}

fn ms_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Reads `url` every `every` while `stats.measuring`, recording each read in µs.
async fn scrape_loop(
    url: String,
    every: Duration,
    hist: Arc<parking_lot::Mutex<hdrhistogram::Histogram<u64>>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(every);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if !stats.measuring.load(Ordering::Relaxed) {
            continue;
        }
        if let Ok((_, took)) = scrape_once(&url).await {
            let _ = hist.lock().record(took.as_micros().max(1) as u64);
        }
    }
}

/// `--mode populate`: `--topics` topics of one queue, one message each, read once by
/// each of `--groups` groups; then 20 back-to-back reads of `--scrape`.
async fn populate(args: &Args) -> Result<()> {
    let client = Arc::new(RemotingClient::new(client_config(), None));
    let started = Instant::now();
    let topics: Vec<usize> = (0..args.topics).collect();
    let per_task = topics.len().div_ceil(args.connections.max(1)).max(1);
    let mut tasks = Vec::new();
    for chunk in topics.chunks(per_task) {
        let (client, args, chunk) = (client.clone(), args.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for t in chunk {
                let topic = format!("Series{t}");
                create_topic(&client, &args.broker, &topic, 1).await?;
                let resp =
                    client.invoke(&args.broker, send_request(&topic, 0, body(args.size, Instant::now())), T).await?;
                anyhow::ensure!(
                    resp.response_code() == ResponseCode::SUCCESS,
                    "send to {topic}: {}",
                    resp.remark_str()
                );
                for g in 0..args.groups {
                    let reader = Args { topic: topic.clone(), group: format!("SeriesGroup{g}"), ..args.clone() };
                    client.invoke(&args.broker, pull_request(&reader, 0, 0, 0), T).await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let populated = started.elapsed();
    let mut run = serde_json::json!({ "mode": "populate", "topics": args.topics, "groups": args.groups,
                                      "populate_seconds": populated.as_secs_f64() });
    if let Some(url) = &args.scrape {
        let mut h = ms_histogram();
        let mut bytes = 0;
        for _ in 0..20 {
            let (n, took) = scrape_once(url).await?;
            bytes = n;
            let _ = h.record(took.as_micros().max(1) as u64);
        }
        run["scrape_bytes"] = bytes.into();
        run["scrape_ms"] = serde_json::json!({ "p50": h.value_at_quantile(0.5) as f64 / 1e3,
                                               "max": h.max() as f64 / 1e3, "samples": h.len() });
    }
    println!("{run}");
    Ok(())
}

fn send_request(topic: &str, queue_id: i32, body: Bytes) -> RemotingCommand {
    let h = SendMessageRequestHeaderV2 {
        producer_group: "BENCH_PG".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp: 0,
        flag: 0,
        properties: Some("TAGS\u{1}bench\u{2}WAIT\u{1}true".into()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: None,
    };
    RemotingCommand::request_with(RequestCode::SEND_MESSAGE_V2, &h).with_body(body)
}

fn pull_request(args: &Args, queue_id: i32, offset: i64, suspend_ms: i64) -> RemotingCommand {
    let mut flag = common::sysflag::pull::SUBSCRIPTION;
    if suspend_ms > 0 {
        flag |= common::sysflag::pull::SUSPEND;
    }
    let h = PullMessageRequestHeader {
        consumer_group: args.group.clone(),
        topic: args.topic.clone(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: flag,
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms,
        subscription: Some(args.expression.clone()),
        sub_version: 0,
        expression_type: Some(args.expression_type.clone()),
        max_msg_bytes: None,
        broker_name: None,
    };
    RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &h)
}

/// Paces a total rate across tasks (token bucket keyed on a shared counter).
struct Pacer {
    rate: u64,
    start: Instant,
    issued: AtomicU64,
}

impl Pacer {
    async fn wait(&self) {
        if self.rate == 0 {
            return;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let due = self.start + Duration::from_secs_f64(n as f64 / self.rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }
}

fn clients(n: usize) -> Vec<RemotingClient> {
    (0..n).map(|_| RemotingClient::new(client_config(), None)).collect()
}

/// A connection that writes each request with its own `write` call and matches
/// responses by opaque (`--write-per-request`). [`RemotingClient`] instead gathers
/// every request ready on a connection into one `writev`.
struct RawConn {
    writer: tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
    pending: Arc<parking_lot::Mutex<std::collections::HashMap<i32, tokio::sync::oneshot::Sender<RemotingCommand>>>>,
    next_opaque: std::sync::atomic::AtomicI32,
}

impl RawConn {
    async fn connect(addr: &str) -> Result<Arc<Self>> {
        use futures::StreamExt;
        let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let pending: Arc<parking_lot::Mutex<std::collections::HashMap<i32, _>>> = Arc::default();
        let responses = pending.clone();
        tokio::spawn(async move {
            let mut frames = tokio_util::codec::FramedRead::new(rd, remoting::codec::RemotingCodec);
            while let Some(Ok(resp)) = frames.next().await {
                let waiter: Option<tokio::sync::oneshot::Sender<RemotingCommand>> =
                    responses.lock().remove(&resp.opaque);
                if let Some(tx) = waiter {
                    let _ = tx.send(resp);
                }
            }
            // Closed: every waiting request fails.
            responses.lock().clear();
        });
        Ok(Arc::new(Self {
            writer: tokio::sync::Mutex::new(wr),
            pending,
            next_opaque: std::sync::atomic::AtomicI32::new(1),
        }))
    }

    async fn invoke(&self, mut req: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        use tokio::io::AsyncWriteExt;
        req.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending.lock().insert(req.opaque, tx);
        let frame = remoting::codec::encode_to_bytes(&req)?;
        self.writer.lock().await.write_all(&frame).await?;
        tokio::time::timeout(timeout, rx).await.context("timed out")?.context("connection closed")
    }
}

/// A sender's connection: the SDK's transport, or one write per request.
#[derive(Clone)]
enum Conn {
    Pooled(RemotingClient),
    Raw(Arc<RawConn>),
}

impl Conn {
    async fn invoke(&self, broker: &str, req: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        match self {
            Conn::Pooled(c) => Ok(c.invoke(broker, req, timeout).await?),
            Conn::Raw(c) => c.invoke(req, timeout).await,
        }
    }
}

async fn run_senders(
    args: &Args,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let pacer = Arc::new(Pacer { rate: args.rate, start: Instant::now(), issued: AtomicU64::new(0) });
    let mut handles = Vec::new();
    let mut q = 0;
    let conns: Vec<Conn> = if args.write_per_request {
        let mut raw = Vec::new();
        for _ in 0..args.connections {
            match RawConn::connect(&args.broker).await {
                Ok(c) => raw.push(Conn::Raw(c)),
                Err(e) => eprintln!("{e:#}"),
            }
        }
        raw
    } else {
        clients(args.connections).into_iter().map(Conn::Pooled).collect()
    };
    for client in conns {
        for _ in 0..args.inflight {
            let client = client.clone();
            let (stats, stop, pacer) = (stats.clone(), stop.clone(), pacer.clone());
            let (broker, topic, size, queues) = (args.broker.clone(), args.topic.clone(), args.size, args.queues);
            let queue = q % queues;
            q += 1;
            handles.push(tokio::spawn(async move {
                // Every send of this task has the same header: encode it once (as a
                // producer caching its header fields would), clone it per send.
                let template = send_request(&topic, queue, Bytes::new());
                while !stop.load(Ordering::Relaxed) {
                    pacer.wait().await;
                    let started = Instant::now();
                    let req = template.clone().with_body(body(size, epoch));
                    match client.invoke(&broker, req, Duration::from_secs(10)).await {
                        Ok(r) if r.response_code() == ResponseCode::SUCCESS => {
                            stats.record(1, size as u64, Some(started.elapsed()));
                        }
                        _ => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    handles
}

async fn prefill(args: &Args) -> Result<()> {
    let stats = Stats::new();
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let target = args.prefill;
    let done = stats.clone();
    done.measuring.store(true, Ordering::Relaxed);
    let handles = run_senders(&Args { rate: 0, ..args.clone() }, stats.clone(), stop.clone(), epoch).await;
    while done.msgs.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    Ok(())
}

/// Pullers: each walks its queues from offset 0 (or the tail for e2e) and records
/// message counts; e2e records produce-to-consume latency from the body stamp.
async fn run_pullers(
    args: &Args,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    from_tail: bool,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut handles = Vec::new();
    let cls = clients(args.connections);
    let shared = Arc::new(args.clone());
    for queue in 0..args.queues {
        let args = shared.clone();
        let client = cls[queue as usize % cls.len()].clone();
        let (stats, stop) = (stats.clone(), stop.clone());
        let broker = args.pull_broker.clone().unwrap_or_else(|| args.broker.clone());
        let topic = args.topic.clone();
        let mut offset = if from_tail { max_offset(&client, &broker, &topic, queue).await? } else { 0 };
        let suspend = if from_tail { 15_000 } else { 0 };
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let req = pull_request(&args, queue, offset, suspend);
                let Ok(resp) = client.invoke(&broker, req, Duration::from_secs(30)).await else {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let Ok(h) = resp.decode_header::<PullMessageResponseHeader>() else {
                    continue;
                };
                if resp.response_code() == ResponseCode::SUCCESS {
                    let body = resp.body_bytes();
                    let mut n = 0u64;
                    let mut at = 0usize;
                    let now = epoch.elapsed();
                    while at < body.len() {
                        let Ok(v) = common::record::RecordView::parse(&body[at..]) else {
                            break;
                        };
                        if from_tail {
                            let b = v.body();
                            if b.len() >= 8 {
                                let sent = u64::from_be_bytes(b[..8].try_into().unwrap_or_default());
                                let lat = now.saturating_sub(Duration::from_nanos(sent));
                                stats.record(0, 0, Some(lat));
                            }
                        }
                        n += 1;
                        at += v.total_size();
                    }
                    stats.record(n, body.len() as u64, None);
                } else if !from_tail && resp.response_code() == ResponseCode::PULL_NOT_FOUND {
                    // Drained: start over so the measurement keeps reading warm data.
                    offset = 0;
                    continue;
                }
                offset = h.next_begin_offset;
            }
        }));
    }
    Ok(handles)
}

/// A broker's commit-log end (GET_BROKER_RUNTIME_INFO `commitLogMaxOffset`).
async fn commit_log_end(client: &RemotingClient, broker: &str) -> Result<i64> {
    let resp = client
        .invoke(broker, RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO), Duration::from_secs(5))
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body_bytes())?;
    v["table"]["commitLogMaxOffset"].as_str().and_then(|s| s.parse().ok()).context("commitLogMaxOffset")
}

/// `--mode catch-up`: waits for the slave to start moving, then times it to the
/// master's end; prints bytes/s.
async fn catch_up(args: &Args) -> Result<()> {
    let client = RemotingClient::new(client_config(), None);
    let slave = args.pull_broker.clone().context("--pull-broker names the slave")?;
    let master_end = commit_log_end(&client, &args.broker).await?;
    let initial = commit_log_end(&client, &slave).await?;
    let deadline = Instant::now() + args.duration;
    let started = loop {
        if commit_log_end(&client, &slave).await? != initial {
            break Instant::now();
        }
        anyhow::ensure!(Instant::now() < deadline, "the slave never moved from {initial}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let first = commit_log_end(&client, &slave).await?;
    loop {
        let at = commit_log_end(&client, &slave).await?;
        if at >= master_end {
            let secs = started.elapsed().as_secs_f64();
            let bytes = (master_end - initial) as f64;
            let run = serde_json::json!({ "mode": "catch-up", "bytes": bytes, "seconds": secs,
                                          "mb_per_sec": bytes / secs / 1e6, "first_step_bytes": first - initial });
            println!("{run}");
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the slave reached {at} of {master_end}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let credentials = args.access_key.clone().zip(args.secret_key.clone());
    CREDENTIALS.get_or_init(|| credentials.map(|(ak, sk)| remoting::acl::Credentials::new(ak, sk)));
    let tls = (args.tls || args.tls_ca.is_some())
        .then(|| remoting::tls::ClientTls::new(args.tls_ca.as_deref(), None))
        .transpose()
        .context("setting up TLS")?;
    TLS.get_or_init(|| tls);
    if args.mode == Mode::CatchUp {
        return catch_up(&args).await;
    }
    if args.mode == Mode::Populate {
        return populate(&args).await;
    }
    let admin = RemotingClient::new(client_config(), None);
    create_topic(&admin, &args.broker, &args.topic, args.queues).await.context("creating the topic")?;
    let epoch = Instant::now();
    let stats = Stats::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    match args.mode {
        Mode::Send => handles.extend(run_senders(&args, stats.clone(), stop.clone(), epoch).await),
        Mode::Connect => handles.extend(run_connectors(&args, &stats, &stop)),
        Mode::Pull => {
            prefill(&args).await?;
            handles.extend(run_pullers(&args, stats.clone(), stop.clone(), epoch, false).await?);
        }
        Mode::E2e => {
            let send_stats = Stats::new();
            send_stats.measuring.store(true, Ordering::Relaxed);
            if let Some(pb) = &args.pull_broker {
                // The pulled broker (a slave) must hold the topic before its pullers
                // start at its tail. A slave copies topics from the master it learns
                // through the name servers; without one (this generator's usual
                // setup) the topic is created on it directly, as `updateTopic -b`
                // would. Then one message to queue 0 of the master, and a wait until
                // the slave serves it.
                create_topic(&admin, pb, &args.topic, args.queues)
                    .await
                    .context("creating the topic on --pull-broker")?;
                let resp = admin.invoke(&args.broker, send_request(&args.topic, 0, body(args.size, epoch)), T).await?;
                anyhow::ensure!(resp.response_code() == ResponseCode::SUCCESS, "marker send: {}", resp.remark_str());
                let wait = Instant::now() + Duration::from_secs(60);
                loop {
                    let probe = pull_request(&args, 0, 0, 0);
                    let answer = admin.invoke(pb, probe, T).await;
                    if answer.as_ref().is_ok_and(|r| r.response_code() == ResponseCode::SUCCESS) {
                        break;
                    }
                    let last = answer.map(|r| format!("{:?} {}", r.response_code(), r.remark_str()));
                    anyhow::ensure!(
                        Instant::now() < wait,
                        "{pb} never served {} (is it a slave of --broker?): {last:?}",
                        args.topic
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            handles.extend(run_pullers(&args, stats.clone(), stop.clone(), epoch, true).await?);
            handles.extend(run_senders(&args, send_stats, stop.clone(), epoch).await);
        }
        Mode::CatchUp | Mode::Populate => unreachable!("handled before the topic is created"),
    }
    let ha_lag = Arc::new(parking_lot::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1 << 40, 3).context("histogram bounds")?,
    ));
    if let Some(master) = &args.ha_lag_from {
        handles.push(tokio::spawn(sample_ha_lag(master.clone(), ha_lag.clone(), stats.clone(), stop.clone())));
    }
    let scrapes = Arc::new(parking_lot::Mutex::new(ms_histogram()));
    if let Some(url) = &args.scrape {
        let task = scrape_loop(url.clone(), args.scrape_every, scrapes.clone(), stats.clone(), stop.clone());
        handles.push(tokio::spawn(task));
    }
    tokio::time::sleep(args.warmup).await;
    let cpu = bench::CpuWindow::start(args.server_pid);
    stats.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    stats.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let measured = stats.msgs.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.abort();
    }
    let mut run = serde_json::json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "size": args.size,
        "connections": args.connections,
        "inflight_per_connection": args.inflight,
        "rate_cap": args.rate,
    });
    cpu.finish(measured, &mut run);
    if args.ha_lag_from.is_some() {
        let h = ha_lag.lock();
        let q = |p: f64| if h.is_empty() { 0 } else { h.value_at_quantile(p) };
        let lag = serde_json::json!({ "samples": h.len(), "p50": q(0.5), "p99": q(0.99), "max": h.max() });
        if !args.json {
            println!("replication lag bytes: p50 {}  p99 {}  max {} ({} samples)", q(0.5), q(0.99), h.max(), h.len());
        }
        run["replication_lag_bytes"] = lag;
    }
    if args.scrape.is_some() {
        let h = scrapes.lock();
        let q = |p: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(p) as f64 / 1e3 };
        run["scrape_ms"] = serde_json::json!({ "samples": h.len(), "p50": q(0.5), "max": h.max() as f64 / 1e3 });
    }
    stats.report(&format!("mode {:?}", args.mode), elapsed, run, args.json);
    Ok(())
}
