//! `TelemetryConfig::install` sets the process-wide subscriber, so this file
//! holds a single test: it runs in its own process and nothing races it.

use config::{Error, LogFormat, TelemetryConfig};

#[test]
fn installs_once_then_reports_the_existing_subscriber() {
    let telemetry =
        TelemetryConfig { log_format: LogFormat::Json, log_level: "debug".into(), ..TelemetryConfig::default() };
    telemetry.install().unwrap();
    tracing_is_live();
    let err = TelemetryConfig::default().install().unwrap_err();
    assert!(matches!(err, Error::Telemetry(_)), "{err:?}");
}

fn tracing_is_live() {
    // Goes to stderr, which the test harness captures; it must not panic.
    tracing::info!(component = "config", "telemetry installed");
}
