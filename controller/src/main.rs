//! `controller`: a FerroMQ controller (RocketMQ 5's controller mode).
//!
//! Settings live in the config file (`-c controller.toml`, or RocketMQ's
//! `controller.properties`) and the environment (`FERROMQ_CONTROLLER_*`). Without
//! either, it forms a one-node group on `127.0.0.1:9878` with its store in
//! `~/DLedgerController`.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "controller", version, about = "FerroMQ controller (RocketMQ 5 controller mode)")]
struct Args {
    #[command(flatten)]
    server: config::cli::ServerArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let loaded = config::load_controller(args.server.config.as_deref()).context("loading configuration")?;
    let mut file = loaded.config;
    args.server.install_logging(&mut file.telemetry, &loaded.warnings).context("installing logging")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("controller").build()?;
    runtime.block_on(async move {
        let server = controller::ControllerServer::start(file.controller).await.context("starting the controller")?;
        // The ready line tests and scripts wait for.
        if let Some(addr) = server.local_addr() {
            println!("listening on {addr}");
        }
        remoting::server::shutdown_signal().await.context("installing signal handlers")?;
        tracing::info!("shutdown signal received");
        server.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}
