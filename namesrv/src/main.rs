//! `namesrv`: the FerroMQ name server.
//!
//! Flags are for runtime behaviour only; settings live in the config file
//! (`-c namesrv.toml`, or RocketMQ's `namesrv.properties`) and the environment
//! (`FERROMQ_NAMESRV_*`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "namesrv", version, about = "FerroMQ name server (RocketMQ-compatible)")]
struct Args {
    /// Config file: `.toml` (FerroMQ) or `.properties`/`.conf` (RocketMQ keys).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Log format: `human` or `json` (overrides the config file).
    #[arg(long, value_parser = ["human", "json"])]
    log_format: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let loaded = config::load_namesrv(args.config.as_deref()).context("loading configuration")?;
    let mut file = loaded.config;
    if let Some(f) = args.log_format.as_deref() {
        file.telemetry.log_format = if f == "json" { config::LogFormat::Json } else { config::LogFormat::Human };
    }
    file.telemetry.install().context("installing logging")?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("namesrv").build()?;
    runtime.block_on(async move {
        let server = namesrv::NameServer::start(file.namesrv).await.context("starting the name server")?;
        // The ready line tests and scripts wait for.
        println!("listening on {}", server.local_addr());
        if let Some(http) = server.http_addr() {
            println!("http address list on {http}");
        }
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        server.shutdown(Duration::from_secs(5)).await;
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
