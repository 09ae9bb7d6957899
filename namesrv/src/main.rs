//! `namesrv`: the FerroMQ name server.
//!
//! Flags are for runtime behaviour only; settings live in the config file
//! (`-c namesrv.toml`, or RocketMQ's `namesrv.properties`) and the environment
//! (`FERROMQ_NAMESRV_*`).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "namesrv", version, about = "FerroMQ name server (RocketMQ-compatible)")]
struct Args {
    #[command(flatten)]
    server: config::cli::ServerArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let loaded = config::load_namesrv(args.server.config.as_deref()).context("loading configuration")?;
    let mut file = loaded.config;
    args.server.install_logging(&mut file.telemetry, &loaded.warnings).context("installing logging")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("namesrv").build()?;
    runtime.block_on(async move {
        let server = namesrv::NameServer::start_observed(file.namesrv, &file.telemetry.metrics)
            .await
            .context("starting the name server")?;
        // The ready line tests and scripts wait for.
        println!("listening on {}", server.local_addr());
        if let Some(addr) = server.metrics_addr() {
            println!("metrics on http://{addr}/metrics");
        }
        if let Some(http) = server.http_addr() {
            println!("http address list on {http}");
        }
        remoting::server::shutdown_signal().await.context("installing signal handlers")?;
        tracing::info!("shutdown signal received");
        server.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}
