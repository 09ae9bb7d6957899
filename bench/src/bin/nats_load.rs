//! The JetStream side of the send-path comparison: N connections × M publishes in
//! flight to a NATS JetStream stream (file storage, one replica), each publish
//! waiting for the stream's acknowledgement, as `wire_load --mode send` waits for
//! SEND_OK. Same shape of generator (async Rust, one connection per `--inflight`
//! publishes, latency histogram, 1 KiB bodies) and the same JSON report, so
//! `bench/scripts/vs_nats.sh` compares the two brokers in one run.
//!
//! Example: `cargo run --release -p bench --bin nats_load -- --server
//! nats://127.0.0.1:4222 --connections 4 --inflight 16 --duration 8s`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream;
use bench::{body, Stats};
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Parser)]
#[command(name = "nats_load", about = "NATS JetStream publish load generator")]
struct Args {
    /// Server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    server: String,
    /// Stream (created with file storage and one replica if missing).
    #[arg(long, default_value = "BENCH")]
    stream: String,
    /// Subject every publish goes to (must match the stream's `bench.>`).
    #[arg(long, default_value = "bench.load")]
    subject: String,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Publishes in flight per connection.
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// The server's pid: its CPU per message is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let first = async_nats::connect(&args.server).await.context("connecting")?;
    jetstream::new(first)
        .get_or_create_stream(jetstream::stream::Config {
            name: args.stream.clone(),
            subjects: vec!["bench.>".into()],
            storage: jetstream::stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .context("creating the stream")?;
    let stats = Stats::new();
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..args.connections {
        let js = jetstream::new(async_nats::connect(&args.server).await.context("connecting")?);
        for _ in 0..args.inflight {
            let (js, stats, stop, subject, size) =
                (js.clone(), stats.clone(), stop.clone(), args.subject.clone(), args.size);
            handles.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let acked = async { js.publish(subject.clone(), body(size, epoch)).await?.await };
                    match acked.await {
                        Ok(_) => stats.record(1, size as u64, Some(started.elapsed())),
                        Err(_) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    let mut run = serde_json::json!({
        "system": "nats-jetstream",
        "mode": "send",
        "size": args.size,
        "connections": args.connections,
        "inflight_per_connection": args.inflight,
    });
    let elapsed = bench::measure(&stats, args.server_pid, args.warmup, args.duration, &mut run).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.abort();
    }
    stats.report("nats send", elapsed, run, args.json);
    Ok(())
}
