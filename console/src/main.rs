//! `console` — FerroMQ's web console; see the library docs and `console/README.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

/// The name server asked when no flag, variable or file names one.
const DEFAULT_NAMESRV: &str = "127.0.0.1:9876";

#[derive(Debug, Parser)]
#[command(
    name = "console",
    version,
    about = "FerroMQ web console: cluster, topics, consumer groups, messages, producers and plugins"
)]
struct Args {
    /// Name servers (`host:9876;host2:9876`); default: NAMESRV_ADDR, the config file,
    /// else 127.0.0.1:9876.
    #[arg(short = 'n', long = "namesrv")]
    namesrv: Option<String>,
    /// Address to serve the console on. The console has no login: keep it on
    /// loopback, or put an authenticating proxy in front.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Client config file (`client.toml`, or RocketMQ properties): ACL account, TLS,
    /// timeouts.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// ACL account the console signs its requests with.
    #[arg(long, env = "ROCKETMQ_ACCESS_KEY", requires = "secret_key")]
    access_key: Option<String>,
    /// The account's secret.
    #[arg(long, env = "ROCKETMQ_SECRET_KEY", hide_env_values = true, requires = "access_key")]
    secret_key: Option<String>,
}

/// Two workers serve a console's few users; more would only cost memory.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let file = config::load_client(args.config.as_deref()).context("loading the client configuration")?.config;
    file.telemetry.install().context("installing logging")?;
    let mut cfg = file.client;
    if let (Some(ak), Some(sk)) = (&args.access_key, &args.secret_key) {
        cfg.access_key = Some(ak.clone());
        cfg.secret_key = Some(config::Secret(sk.clone()));
    }
    admin::credentials_from_tools_yml(&mut cfg)?;
    let namesrv = admin::namesrv_list(args.namesrv.as_deref()).or_else(|| {
        (cfg.namesrv_addr.is_empty() && cfg.namesrv_http_url.is_none()).then(|| vec![DEFAULT_NAMESRV.to_owned()])
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| console::Error::Listen { addr: args.listen, source })?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let console = Arc::new(console::Console::new(cfg, namesrv));
    tracing::info!(addr = %addr, namesrv = ?console.admin().instance().namesrv_addrs(), "console started");
    println!("listening on {addr}");

    let served = console::serve(listener, console.clone(), shutdown_signal()).await;
    console.shutdown().await;
    tracing::info!("console stopped");
    Ok(served?)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; stop the console with SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Args;

    #[test]
    fn flags_parse_and_default_to_loopback() {
        Args::command().debug_assert();
        let a = Args::try_parse_from(["console"]).unwrap();
        assert_eq!(a.listen.to_string(), "127.0.0.1:8080");
        let a = Args::try_parse_from(["console", "--namesrv", "10.0.0.1:9876", "--listen", "127.0.0.1:0"]).unwrap();
        assert_eq!((a.namesrv.as_deref(), a.listen.port()), (Some("10.0.0.1:9876"), 0));
        assert!(Args::try_parse_from(["console", "--listen", "nowhere"]).is_err());
    }
}
