//! `namesrv`: the FerroMQ name server.
//!
//! Flags are for runtime behaviour only; settings live in the config file
//! (`-c namesrv.toml`, or RocketMQ's `namesrv.properties`) and the environment
//! (`FERROMQ_NAMESRV_*`). With `enable_controller_in_namesrv` it also runs a
//! controller, configured by the file's `[controller]` section.

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
        let embed = file.namesrv.enable_controller_in_namesrv;
        let server = namesrv::NameServer::start_observed(file.namesrv, &file.telemetry.metrics)
            .await
            .context("starting the name server")?;
        // RocketMQ's `enableControllerInNamesrv`: a controller in the same process, on
        // its own peer port.
        let controller = if embed {
            Some(controller::ControllerServer::start(file.controller).await.context("starting the controller")?)
        } else {
            None
        };
        // The ready line tests and scripts wait for.
        println!("listening on {}", server.local_addr());
        if let Some(addr) = controller.as_ref().and_then(controller::ControllerServer::local_addr) {
            println!("controller on {addr}");
        }
        if let Some(addr) = server.metrics_addr() {
            println!("metrics on http://{addr}/metrics");
        }
        if let Some(http) = server.http_addr() {
            println!("http address list on {http}");
        }
        remoting::server::shutdown_signal().await.context("installing signal handlers")?;
        tracing::info!("shutdown signal received");
        if let Some(c) = controller {
            c.shutdown(Duration::from_secs(5)).await;
        }
        server.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}
