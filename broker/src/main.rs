//! `broker`: the FerroMQ broker.
//!
//! `broker` starts with embedded defaults (cluster `DefaultCluster`, `broker-a`,
//! port 10911, store under `~/store`); `-c broker.toml` reads FerroMQ's TOML and
//! `-c broker.conf` RocketMQ's properties; `-n host:9876;host2:9876` names the name
//! servers as RocketMQ's `mqbroker -n` does (else `NAMESRV_ADDR` or the file).

use std::path::PathBuf;

// The broker allocates per request (header maps, property strings, response
// buffers) from several threads at once; glibc's allocator showed up at ~12 % of
// broker CPU under a send load (malloc, free, consolidation), mimalloc's
// thread-local free lists do the same work in a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "broker", version, about = "FerroMQ broker (RocketMQ-compatible)")]
struct Args {
    /// Config file: `.toml` (FerroMQ) or `.properties`/`.conf` (RocketMQ keys).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Name server addresses, `;`-separated (overrides the file and NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrv-addr")]
    namesrv_addr: Option<String>,
    /// Log format: `human` or `json` (overrides the config file).
    #[arg(long, value_parser = ["human", "json"])]
    log_format: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let loaded = config::load_broker(args.config.as_deref()).context("loading configuration")?;
    let mut file = loaded.config;
    if let Some(f) = args.log_format.as_deref() {
        file.telemetry.log_format = if f == "json" { config::LogFormat::Json } else { config::LogFormat::Human };
    }
    if let Some(n) = args.namesrv_addr.as_deref() {
        file.broker.namesrv_addr = n.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    }
    file.telemetry.install().context("installing logging")?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("broker").build()?;
    runtime.block_on(async move {
        let broker = broker::Broker::start(file.broker, &file.plugins).await.context("starting the broker")?;
        // The ready line tests and scripts wait for.
        println!("listening on {}", broker.local_addr());
        println!("advertised as {}", broker.broker_addr());
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        broker.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
