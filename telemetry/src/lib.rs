//! Telemetry for the FerroMQ servers: the metrics exporter RocketMQ 5 operators
//! expect (its metric names and labels, its `metricsExporterType` switches) and the
//! small HTTP responder the servers share.
//!
//! Metrics are recorded through OpenTelemetry, as RocketMQ 5 records them, and read
//! by a Prometheus endpoint ([`MetricsExporter`]). Hot paths never look an
//! instrument up by name: a caller binds an instrument to its attributes once (per
//! topic, per request code) and keeps the bound handle, which records with one
//! atomic update. The node's own labels (`cluster`, `node_type`, `node_id` and
//! `metricsLabel`'s pairs) are added by the exporter to every series, so no record
//! carries them.

pub mod http;
pub mod metrics;
mod prometheus;
pub mod rpc;
pub mod trace;

pub use metrics::{MetricsError, MetricsExporter, Node};
pub use rpc::RpcMetrics;
pub use trace::TraceExport;
