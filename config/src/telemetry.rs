//! [`TelemetryConfig`]: log format and level, the one place a binary installs
//! its `tracing` subscriber, and the metrics exporter's settings
//! ([`MetricsConfig`], RocketMQ 5's `metrics*` keys; the `telemetry` crate runs
//! the exporter).
//!
//! Logs go to stderr. Stdout is left to the binaries, whose ready line
//! (`listening on 127.0.0.1:PORT`) test harnesses read; a log line there
//! would break them.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::error::{Error, Invalid, Result};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event; coloured when stderr is a terminal.
    #[default]
    Human,
    /// One JSON object per event, for log shippers.
    Json,
}

/// Logging and metrics settings, the `[telemetry]` section of both files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter directive: a level (`info`) or per-target levels
    /// (`info,store=debug`). `RUST_LOG`, when set, takes precedence so that
    /// a developer can turn up logging without editing the file.
    pub log_level: String,
    /// `[telemetry.metrics]`.
    pub metrics: MetricsConfig,
    /// `[telemetry.traces]`.
    pub traces: TracesConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            metrics: MetricsConfig::default(),
            traces: TracesConfig::default(),
        }
    }
}

/// Where metrics go: RocketMQ 5's `metricsExporterType`, spelt as RocketMQ spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MetricsExporterType {
    /// No metrics are recorded and no exporter runs (RocketMQ's default).
    #[default]
    #[serde(rename = "DISABLE", alias = "disable")]
    Disable,
    /// A Prometheus text endpoint, `http://<prom_exporter_host>:<prom_exporter_port>/metrics`.
    #[serde(rename = "PROM", alias = "prom")]
    Prom,
    /// OTLP over gRPC to `grpc_exporter_target`, every `grpc_exporter_interval`.
    #[serde(rename = "OTLP_GRPC", alias = "otlp_grpc")]
    OtlpGrpc,
    /// Every series written to the log (target `metrics`) every `log_exporter_interval`.
    #[serde(rename = "LOG", alias = "log")]
    Log,
}

impl MetricsExporterType {
    /// RocketMQ's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "DISABLE",
            Self::Prom => "PROM",
            Self::OtlpGrpc => "OTLP_GRPC",
            Self::Log => "LOG",
        }
    }
}

/// `[telemetry.metrics]`: RocketMQ 5's metric switches (`metricsExporterType`,
/// `metricsPromExporterHost`, `metricsPromExporterPort`, `metricsLabel`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// `DISABLE` (default), `PROM`, `OTLP_GRPC` or `LOG`.
    pub exporter_type: MetricsExporterType,
    /// Address the Prometheus endpoint binds; empty means the broker's `broker_ip1`
    /// (RocketMQ's rule), or every address for a name server.
    pub prom_exporter_host: String,
    /// Port of the Prometheus endpoint (RocketMQ's default 5557; 0 picks a free one).
    pub prom_exporter_port: u16,
    /// Extra labels on every series: `key:value,key:value` (RocketMQ's `metricsLabel`).
    pub label: String,
    /// OTLP endpoint (`metricsGrpcExporterTarget`), for `OTLP_GRPC`.
    pub grpc_exporter_target: String,
    /// OTLP request headers, `key:value,key:value` (`metricsGrpcExporterHeader`).
    pub grpc_exporter_header: String,
    /// How often metrics are pushed over OTLP (`metricGrpcExporterIntervalInMills`).
    #[serde(with = "humantime_serde")]
    pub grpc_exporter_interval: std::time::Duration,
    /// Deadline of one OTLP push (`metricGrpcExporterTimeOutInMills`).
    #[serde(with = "humantime_serde")]
    pub grpc_exporter_timeout: std::time::Duration,
    /// How often `LOG` writes the metrics (`metricLoggingExporterIntervalInMills`).
    #[serde(with = "humantime_serde")]
    pub log_exporter_interval: std::time::Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            exporter_type: MetricsExporterType::Disable,
            prom_exporter_host: String::new(),
            prom_exporter_port: 5557,
            label: String::new(),
            grpc_exporter_target: String::new(),
            grpc_exporter_header: String::new(),
            grpc_exporter_interval: std::time::Duration::from_secs(60),
            grpc_exporter_timeout: std::time::Duration::from_secs(3),
            log_exporter_interval: std::time::Duration::from_secs(10),
        }
    }
}

impl MetricsConfig {
    /// The `label` pairs, in order.
    ///
    /// # Errors
    /// [`Error::Invalid`] keyed `label` for a pair that is not `key:value` or a key
    /// that is not a Prometheus label name.
    pub fn labels(&self) -> Result<Vec<(String, String)>> {
        pairs("label", &self.label, is_label_name)
    }

    /// The `grpc_exporter_header` pairs, in order.
    ///
    /// # Errors
    /// [`Error::Invalid`] keyed `grpc_exporter_header` for a pair that is not `key:value`.
    pub fn grpc_headers(&self) -> Result<Vec<(String, String)>> {
        pairs("grpc_exporter_header", &self.grpc_exporter_header, |k| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }

    /// Checks labels, headers and, for `OTLP_GRPC`, the target.
    ///
    /// # Errors
    /// [`Error::Invalid`] keyed `label`, `grpc_exporter_header` or `grpc_exporter_target`.
    pub fn validate(&self) -> Result<()> {
        self.labels()?;
        self.grpc_headers()?;
        match self.exporter_type {
            MetricsExporterType::Disable | MetricsExporterType::Prom | MetricsExporterType::Log => Ok(()),
            MetricsExporterType::OtlpGrpc if self.grpc_exporter_target.trim().is_empty() => Err(Error::invalid(
                "grpc_exporter_target",
                Invalid::Malformed {
                    value: String::new(),
                    expected: "the OTLP collector's address (host:port or http://host:port) for OTLP_GRPC",
                },
            )),
            MetricsExporterType::OtlpGrpc => Ok(()),
        }
    }
}

/// Where spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceExporter {
    /// No spans are recorded and no exporter thread runs.
    #[default]
    None,
    /// OTLP to `endpoint` over `protocol`.
    Otlp,
}

/// OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317 by convention).
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318, `/v1/traces`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// `[telemetry.traces]`: OpenTelemetry spans exported over OTLP. The standard
/// OpenTelemetry variables take precedence over the file: `OTEL_TRACES_EXPORTER`
/// (`otlp`/`none`), `OTEL_EXPORTER_OTLP_ENDPOINT` (and `..._TRACES_ENDPOINT`),
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` with
/// `OTEL_TRACES_SAMPLER_ARG`, and `OTEL_BSP_*` for the batch queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracesConfig {
    /// `none` (default) or `otlp`.
    pub exporter: TraceExporter,
    /// Collector endpoint; empty means OpenTelemetry's default for the protocol
    /// (`http://localhost:4317` for gRPC, `http://localhost:4318/v1/traces` for HTTP).
    pub endpoint: String,
    /// `grpc` (default) or `http/protobuf`.
    pub protocol: OtlpProtocol,
    /// `service.name` of the spans; empty means the binary's (`ferromq-broker`, ...).
    pub service_name: String,
    /// Share of traces this process starts on its own (a request that carries no
    /// trace context); requests that carry one follow their parent's decision. The
    /// default 0 means a broker never starts traces by itself.
    pub sample_ratio: f64,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            exporter: TraceExporter::None,
            endpoint: String::new(),
            protocol: OtlpProtocol::Grpc,
            service_name: String::new(),
            sample_ratio: 0.0,
        }
    }
}

impl TracesConfig {
    /// # Errors
    /// [`Error::Invalid`] keyed `sample_ratio` outside `0.0..=1.0`.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(Error::invalid(
                "sample_ratio",
                Invalid::Malformed { value: self.sample_ratio.to_string(), expected: "a ratio from 0.0 to 1.0" },
            ));
        }
        Ok(())
    }
}

/// RocketMQ's `key:value,key:value` lists; each key checked by `key_ok`.
fn pairs(key: &str, list: &str, key_ok: fn(&str) -> bool) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let pair = item.split_once(':').filter(|(k, v)| !v.contains(':') && key_ok(k.trim()));
        let Some((k, v)) = pair else {
            return Err(Error::invalid(
                key,
                Invalid::Malformed {
                    value: list.to_owned(),
                    expected: "`key:value` pairs separated by `,` (keys are names: letters, digits, `_`)",
                },
            ));
        };
        out.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(out)
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl TelemetryConfig {
    /// Checks that `log_level` is a valid filter directive, so a typo fails
    /// at load time rather than at `install`, and the metrics settings.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] keyed `log_level` or `metrics.*`.
    pub fn validate(&self) -> Result<()> {
        parse_filter("log_level", &self.log_level)?;
        self.metrics.validate().map_err(|e| e.within("metrics"))?;
        self.traces.validate().map_err(|e| e.within("traces"))
    }

    /// Installs the global `tracing` subscriber: `fmt` in the configured
    /// format, writing to stderr, filtered by `RUST_LOG` if that is set and
    /// non-empty, else by `log_level`. Call it once, early in `main`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `RUST_LOG` (keyed `RUST_LOG`) or `log_level`
    /// (keyed `telemetry.log_level`) is not a valid directive;
    /// [`Error::Telemetry`] if a global subscriber is already installed.
    pub fn install(&self) -> Result<()> {
        let filter = match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => parse_filter("RUST_LOG", &directives)?,
            _ => parse_filter("log_level", &self.log_level).map_err(|e| e.within("telemetry"))?,
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        let installed = match self.log_format {
            LogFormat::Human => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
        installed.map_err(Error::Telemetry)
    }
}

fn parse_filter(key: &str, directives: &str) -> Result<EnvFilter> {
    EnvFilter::builder().parse(directives).map_err(|_| {
        Error::invalid(
            key,
            Invalid::Malformed {
                value: directives.to_owned(),
                expected: "a tracing filter directive such as `info` or `info,store=debug`",
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_must_be_a_filter_directive() {
        let mut telemetry = TelemetryConfig::default();
        telemetry.validate().unwrap();
        telemetry.log_level = "info,store=debug".to_owned();
        telemetry.validate().unwrap();
        telemetry.log_level = "info,=[".to_owned();
        let err = telemetry.validate().unwrap_err().to_string();
        assert!(err.starts_with("log_level: "), "{err}");
    }

    #[test]
    fn metric_labels_are_key_value_pairs() {
        let mut metrics = MetricsConfig { label: "region:eu, az:eu-1a".to_owned(), ..MetricsConfig::default() };
        assert_eq!(
            metrics.labels().unwrap(),
            [("region".to_owned(), "eu".to_owned()), ("az".to_owned(), "eu-1a".to_owned())]
        );
        for bad in ["region", "region:eu:x", "1st:x", "a-b:x"] {
            metrics.label = bad.to_owned();
            let err = metrics.validate().unwrap_err().to_string();
            assert!(err.starts_with("label: "), "{bad}: {err}");
        }
    }

    #[test]
    fn otlp_needs_a_target_and_well_formed_headers() {
        let mut metrics = MetricsConfig::default();
        metrics.validate().unwrap();
        for ok in [MetricsExporterType::Prom, MetricsExporterType::Log] {
            metrics.exporter_type = ok;
            metrics.validate().unwrap();
        }
        metrics.exporter_type = MetricsExporterType::OtlpGrpc;
        let err = metrics.validate().unwrap_err().to_string();
        assert!(err.starts_with("grpc_exporter_target: "), "{err}");
        metrics.grpc_exporter_target = "127.0.0.1:4317".to_owned();
        metrics.grpc_exporter_header = "x-tenant:a,authorization:b".to_owned();
        metrics.validate().unwrap();
        metrics.grpc_exporter_header = "x tenant:a".to_owned();
        let err = metrics.validate().unwrap_err().to_string();
        assert!(err.starts_with("grpc_exporter_header: "), "{err}");
    }
}
