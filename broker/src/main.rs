//! `broker`: the FerroMQ broker.
//!
//! `broker` starts with embedded defaults (cluster `DefaultCluster`, `broker-a`,
//! port 10911, store under `~/store`); `-c broker.toml` reads FerroMQ's TOML and
//! `-c broker.conf` RocketMQ's properties; `-n host:9876;host2:9876` names the name
//! servers as RocketMQ's `mqbroker -n` does (else `NAMESRV_ADDR` or the file).

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
    #[command(flatten)]
    server: config::cli::ServerArgs,
    /// Name server addresses, `;`-separated (overrides the file and NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrv-addr")]
    namesrv_addr: Option<String>,
}

/// The runtime's workers: one per core but one, which the store's `store-append`
/// writer keeps busy under load (every append and its dispatch run on it). One worker
/// per core as well puts more busy threads than cores on the machine, and the workers
/// and the writer preempt each other: on 2 cores, 1 worker spent a median 11 % less
/// broker CPU per send than 2, and a quarter less per pulled message (BENCHMARKS.md,
/// "Runtime workers: one per core but one").
/// `TOKIO_WORKER_THREADS` sets the number instead.
fn worker_threads() -> usize {
    if let Some(n) = std::env::var("TOKIO_WORKER_THREADS").ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0) {
        return n;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let loaded = config::load_broker(args.server.config.as_deref()).context("loading configuration")?;
    let mut file = loaded.config;
    if let Some(n) = args.namesrv_addr.as_deref() {
        file.broker.namesrv_addr = n.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    }
    args.server.install_logging(&mut file.telemetry, &loaded.warnings).context("installing logging")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .thread_name("broker")
        .build()?;
    runtime.block_on(async move {
        if file.broker.enable_controller_mode {
            // Controller mode: the role comes from the controllers, and the broker
            // restarts in place when it changes; the ready lines are printed once.
            let mut first = true;
            let stop = async {
                let _ = remoting::server::shutdown_signal().await;
                tracing::info!("shutdown signal received");
            };
            broker::controlled::run(file, stop, |b| {
                if std::mem::take(&mut first) {
                    println!("listening on {}", b.local_addr());
                    println!("advertised as {}", b.broker_addr());
                    if let Some(addr) = b.grpc_addr() {
                        println!("grpc on {addr}");
                    }
                }
            })
            .await
            .context("running in controller mode")?;
            return anyhow::Ok(());
        }
        let broker = broker::Broker::start_observed(file.broker, &file.plugins, &file.telemetry)
            .await
            .context("starting the broker")?;
        // The ready line tests and scripts wait for.
        println!("listening on {}", broker.local_addr());
        println!("advertised as {}", broker.broker_addr());
        if let Some(addr) = broker.grpc_addr() {
            println!("grpc on {addr}");
        }
        if let Some(addr) = broker.metrics_addr() {
            println!("metrics on http://{addr}/metrics");
        }
        // A second ready line: from here on clients find the broker through the name
        // servers (scripts wait for it; it is printed whatever the log level).
        let registered = async {
            let n = broker.registered().await;
            println!("registered with {n} name server(s)");
            std::future::pending::<()>().await
        };
        tokio::select! {
            signal = remoting::server::shutdown_signal() => signal.context("installing signal handlers")?,
            () = registered => {}
        }
        tracing::info!("shutdown signal received");
        broker.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}
