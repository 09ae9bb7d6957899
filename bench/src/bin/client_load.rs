//! Load generator driving a cluster through the Rust client SDK (`client`), the
//! counterpart of `wire_load` (which hand-builds requests): the difference between
//! the two, same broker, same connections and requests in flight, is the SDK's
//! overhead (routing, queue selection, UNIQ_KEY stamping, properties, fault
//! bookkeeping, response decoding into `SendResult`/`MessageExt`).
//!
//! Modes:
//! * `send` — N producers (each its own client instance, so its own TCP
//!   connection to the broker) × M `Producer::send` calls in flight each;
//! * `pull` — pre-fills the topic, then one `PullConsumer::pull` loop per queue
//!   (N consumers), 32 messages per pull, decoded to `MessageExt`, starting over
//!   at the end of a queue as `wire_load --mode pull` does.
//!
//! Example: `cargo run --release -p bench --bin client_load -- --namesrv
//! 127.0.0.1:9876 --mode send --connections 4 --inflight 16 --size 1024 --duration 10s`.
//! The JSON report has the same fields as `wire_load`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::{body, Stats};
use clap::{Parser, ValueEnum};
use client::consumer::{PullConsumer, PullStatus};
use client::{Admin, Message, Producer, ProducerOptions};

/// The broker's allocator: the generator shares the machine's two cores with the
/// broker, so its own allocations should cost as little.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    Send,
    Pull,
}

#[derive(Debug, Parser)]
#[command(name = "client_load", about = "FerroMQ load generator using the Rust client SDK")]
struct Args {
    /// Name server address (`ip:port`).
    #[arg(long)]
    namesrv: String,
    #[arg(long, value_enum, default_value = "send")]
    mode: Mode,
    #[arg(long, default_value = "BenchmarkClient")]
    topic: String,
    /// Queues of the topic on every broker (created if missing).
    #[arg(long, default_value_t = 8)]
    queues: i32,
    /// Message body size in bytes (bodies over 4 KiB are compressed by the SDK).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Producers / consumers, each with its own client instance and connection.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Sends in flight per producer.
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    /// Measurement time (humantime).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Warm-up time before measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Messages to pre-fill for `pull` mode.
    #[arg(long, default_value_t = 200_000)]
    prefill: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

fn client_config(namesrv: &str) -> config::ClientConfig {
    config::ClientConfig { namesrv_addr: vec![namesrv.to_owned()], ..config::ClientConfig::default() }
}

async fn create_topic(args: &Args) -> Result<()> {
    let admin = Admin::new(client_config(&args.namesrv), None);
    admin.create_topic(&args.topic, args.queues, None).await.context("creating the topic")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if admin.topic_route(&args.topic).await.is_ok_and(|r| !r.queue_datas.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("no route for {} after 30 s", args.topic);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin.shutdown();
    Ok(())
}

fn producers(args: &Args) -> Vec<Producer> {
    (0..args.connections)
        .map(|i| {
            Producer::new(
                format!("BENCH_CLIENT_PG_{i}"),
                client_config(&args.namesrv),
                None,
                ProducerOptions::default(),
            )
        })
        .collect()
}

fn run_senders(
    args: &Args,
    producers: &[Producer],
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for p in producers {
        for _ in 0..args.inflight {
            let (p, stats, stop) = (p.clone(), stats.clone(), stop.clone());
            let (topic, size) = (args.topic.clone(), args.size);
            handles.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let msg = Message::new(topic.as_str(), body(size, epoch)).with_tags("bench");
                    match p.send(msg).await {
                        Ok(_) => stats.record(1, size as u64, Some(started.elapsed())),
                        Err(_) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    handles
}

async fn prefill(args: &Args, producers: &[Producer]) -> Result<()> {
    let stats = Stats::new();
    stats.measuring.store(true, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let handles = run_senders(args, producers, stats.clone(), stop.clone(), Instant::now());
    while stats.msgs.load(Ordering::Relaxed) < args.prefill {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    Ok(())
}

async fn run_pullers(
    args: &Args,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let consumers: Vec<PullConsumer> = (0..args.connections)
        .map(|_| PullConsumer::new("BENCH_CLIENT_CG", client_config(&args.namesrv), None))
        .collect();
    let queues = consumers[0].fetch_subscribe_queues(&args.topic).await?;
    let mut handles = Vec::new();
    for (i, mq) in queues.into_iter().enumerate() {
        let c = consumers[i % consumers.len()].clone();
        let (stats, stop) = (stats.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut offset = 0;
            while !stop.load(Ordering::Relaxed) {
                match c.pull(&mq, "*", offset, 32).await {
                    Ok(r) if r.status == PullStatus::Found => {
                        let bytes: usize = r.messages.iter().map(|m| m.store_size as usize).sum();
                        stats.record(r.messages.len() as u64, bytes as u64, None);
                        offset = r.next_begin_offset;
                    }
                    // Drained: start over so the measurement keeps reading warm data.
                    Ok(r) if r.status == PullStatus::NoNewMsg => offset = 0,
                    Ok(r) => offset = r.next_begin_offset,
                    Err(_) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    Ok(handles)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    create_topic(&args).await?;
    let epoch = Instant::now();
    let stats = Stats::new();
    let stop = Arc::new(AtomicBool::new(false));
    let producers = producers(&args);
    let handles = match args.mode {
        Mode::Send => run_senders(&args, &producers, stats.clone(), stop.clone(), epoch),
        Mode::Pull => {
            prefill(&args, &producers).await?;
            run_pullers(&args, stats.clone(), stop.clone()).await?
        }
    };
    tokio::time::sleep(args.warmup).await;
    stats.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    stats.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.abort();
    }
    let run = serde_json::json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "driver": "client",
        "size": args.size,
        "connections": args.connections,
        "inflight_per_connection": args.inflight,
    });
    stats.report(&format!("client mode {:?}", args.mode), elapsed, run, args.json);
    for p in &producers {
        p.shutdown().await;
    }
    Ok(())
}
