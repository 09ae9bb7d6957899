//! The README's first command works: `scripts/quickstart.sh --once` builds, starts
//! a name server and a broker, sends 10 messages with the quickstart producer
//! example, receives all 10 with the push consumer example, and stops both
//! servers. Run on free ports with its own state directory, so it neither
//! disturbs nor reuses a quick start a developer left running.

use std::net::TcpListener;
use std::process::Command;

use anyhow::{ensure, Result};

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[test]
fn quickstart_script_sends_and_receives_then_stops() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let state = tempfile::tempdir()?;
    let (ns_port, broker_port) = (free_port()?, free_port()?);
    let out = Command::new("bash")
        .arg(root.join("scripts/quickstart.sh"))
        .arg("--once")
        // The script's broker inherits the environment, overrides included.
        .envs(tests::IGNORE_DISK_USAGE)
        .env("NAMESRV_PORT", ns_port.to_string())
        .env("BROKER_PORT", broker_port.to_string())
        .env("GRPC_PORT", "0")
        .env("BROKER_HA_PORT", "0")
        .env("CONSOLE_PORT", "0")
        .env("FERROMQ_QUICKSTART_STATE", state.path())
        .env("CARGO", std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .env_remove("NAMESRV_ADDR")
        // The script waits on the ready lines the servers print on stdout, not on
        // log messages, so the log level cannot stall it.
        .env("RUST_LOG", "error")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    ensure!(out.status.success(), "quickstart.sh failed ({}):\n{report}", out.status);
    ensure!(stdout.matches("SendResult [status=SendOk").count() == 10, "10 sends:\n{report}");
    ensure!(stdout.matches("Received [topic=TopicTest").count() == 10, "10 receipts:\n{report}");
    ensure!(stdout.contains("received 10 message(s)"), "{report}");
    ensure!(stdout.contains("stopped broker") && stdout.contains("stopped namesrv"), "{report}");
    ensure!(stdout.contains("the web console is at http://127.0.0.1:"), "{report}");
    ensure!(stdout.contains("stopped console"), "{report}");
    // Nothing is left listening.
    ensure!(TcpListener::bind(("127.0.0.1", ns_port)).is_ok(), "the name server still holds port {ns_port}");
    Ok(())
}

/// On a disk fuller than the broker's limit the script says so, in one line naming
/// the setting to change, instead of starting a broker that refuses every send.
#[test]
fn quickstart_script_refuses_a_disk_the_broker_would_refuse() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let state = tempfile::tempdir()?;
    let (ns_port, broker_port) = (free_port()?, free_port()?);
    let out = Command::new("bash")
        .arg(root.join("scripts/quickstart.sh"))
        .arg("--once")
        // Any file system is more than a billionth used.
        .env("FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO", "0.000000001")
        .env("NAMESRV_PORT", ns_port.to_string())
        .env("BROKER_PORT", broker_port.to_string())
        .env("GRPC_PORT", "0")
        .env("BROKER_HA_PORT", "0")
        .env("FERROMQ_QUICKSTART_STATE", state.path())
        .env("CARGO", std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the script went on with a full disk:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("% used")).collect();
    ensure!(lines.len() == 1, "one line about the disk:\n{stderr}");
    ensure!(lines[0].contains("broker.store.disk_space_warning_level_ratio"), "{stderr}");
    ensure!(lines[0].contains("FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO"), "{stderr}");
    ensure!(TcpListener::bind(("127.0.0.1", ns_port)).is_ok(), "a name server was started anyway");
    Ok(())
}
