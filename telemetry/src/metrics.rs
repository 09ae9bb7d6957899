//! [`MetricsExporter`]: the meter provider of one server and where it goes, as
//! RocketMQ 5's `metricsExporterType` sets it up: a Prometheus endpoint (`PROM`) or
//! periodic OTLP/gRPC pushes to a collector (`OTLP_GRPC`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{Instrument, ManualReader, SdkMeterProvider, Stream};
use opentelemetry_sdk::Resource;
use tokio_util::sync::CancellationToken;

use config::{MetricsConfig, MetricsExporterType};

use crate::http::{self, Page, Routes};
use crate::prometheus::{LogExporter, SharedReader, TextEncoder};

/// Series per instrument before OpenTelemetry folds the rest into one overflow
/// series (RocketMQ's `metricsOtelCardinalityLimit` default). A broker with 1,000
/// topics read by 10 groups each has 10,000 `rocketmq_messages_out_total` series.
const CARDINALITY_LIMIT: usize = 50_000;

/// Who is exporting: the labels RocketMQ puts on every series.
#[derive(Debug, Clone)]
pub struct Node {
    /// `broker` or `nameserver` (RocketMQ's `node_type` values).
    pub node_type: &'static str,
    /// `cluster`: the broker's cluster name (empty for a name server).
    pub cluster: String,
    /// `node_id`: the broker name, or the name server's address.
    pub node_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: {0}")]
    Config(String),
    #[error("metrics: cannot bind the Prometheus endpoint {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("metrics: {0}")]
    Exporter(String),
}

/// A running metrics pipeline: the meter provider and what reads it.
pub struct MetricsExporter {
    provider: SdkMeterProvider,
    /// The Prometheus renderer and endpoint (`PROM`).
    prometheus: Option<(Renderer, SocketAddr)>,
    cancel: CancellationToken,
}

/// Renders scrapes on a thread of its own at the lowest CPU priority (nice 19), so
/// that collecting and formatting tens of thousands of series yields the cores to
/// the request path: on a busy broker a scrape takes longer rather than the sends.
/// Scrapes are rendered one at a time, in arrival order.
struct Renderer {
    requests: std::sync::mpsc::Sender<std::sync::mpsc::SyncSender<String>>,
}

impl Renderer {
    fn start(encoder: TextEncoder) -> std::io::Result<Self> {
        let (requests, rx) = std::sync::mpsc::channel::<std::sync::mpsc::SyncSender<String>>();
        std::thread::Builder::new().name("metrics-render".into()).spawn(move || {
            lower_priority();
            // Ends when the exporter (the only sender) is dropped.
            while let Ok(reply) = rx.recv() {
                let _ = reply.send(encoder.render());
            }
        })?;
        Ok(Self { requests })
    }

    /// Blocks until the render thread answers.
    fn render(&self) -> String {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.requests.send(tx).is_err() {
            return String::new();
        }
        rx.recv().unwrap_or_default()
    }
}

/// Gives the calling thread the lowest scheduling priority (Linux: a thread's own
/// nice value). Failure only costs the yielding; it is logged.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's id; no memory is shared.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the metrics render thread's priority");
        }
    }
}

impl std::fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsExporter").field("endpoint", &self.endpoint()).finish_non_exhaustive()
    }
}

impl MetricsExporter {
    /// Starts what `config` asks for: nothing for `DISABLE`; for `PROM` a meter
    /// provider and `http://<host>:<port>/metrics`, where an empty host is
    /// `default_host` (the broker's `brokerIP1`, as RocketMQ does).
    ///
    /// # Errors
    /// Invalid labels, an exporter type this build does not run, a port that
    /// cannot be bound.
    pub async fn start(
        config: &MetricsConfig,
        node: &Node,
        default_host: IpAddr,
    ) -> Result<Option<Arc<Self>>, MetricsError> {
        config.validate().map_err(|e| MetricsError::Config(e.to_string()))?;
        if config.exporter_type == MetricsExporterType::Disable {
            return Ok(None);
        }
        let labels = config.labels().map_err(|e| MetricsError::Config(e.to_string()))?;
        let mut attributes = vec![
            KeyValue::new("cluster", node.cluster.clone()),
            KeyValue::new("node_type", node.node_type),
            KeyValue::new("node_id", node.node_id.clone()),
        ];
        attributes.extend(labels.into_iter().map(|(k, v)| KeyValue::new(k, v)));
        let builder = SdkMeterProvider::builder()
            .with_resource(Resource::builder_empty().with_attributes(attributes.clone()).build())
            .with_view(|_: &Instrument| Stream::builder().with_cardinality_limit(CARDINALITY_LIMIT).build().ok());
        match config.exporter_type {
            MetricsExporterType::Prom => {
                Self::start_prometheus(config, builder, &attributes, default_host).await.map(Some)
            }
            MetricsExporterType::OtlpGrpc => Self::start_otlp(config, builder).map(Some),
            MetricsExporterType::Log => {
                let exporter = LogExporter(TextEncoder::new(None, &attributes));
                let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                    .with_interval(config.log_exporter_interval)
                    .build();
                tracing::info!(interval = ?config.log_exporter_interval, "metrics written to the log (target `metrics`)");
                let provider = builder.with_reader(reader).build();
                Ok(Some(Arc::new(Self { provider, prometheus: None, cancel: CancellationToken::new() })))
            }
            MetricsExporterType::Disable => Ok(None),
        }
    }

    async fn start_prometheus(
        config: &MetricsConfig,
        builder: opentelemetry_sdk::metrics::MeterProviderBuilder,
        node_labels: &[KeyValue],
        default_host: IpAddr,
    ) -> Result<Arc<Self>, MetricsError> {
        // Names are written as RocketMQ spells them (already ending in `_total` where
        // they should, without unit suffixes); no `target_info`, no scope labels.
        let reader = Arc::new(ManualReader::builder().build());
        let encoder = TextEncoder::new(Some(reader.clone()), node_labels);
        let provider = builder.with_reader(SharedReader(reader)).build();
        let host: IpAddr = if config.prom_exporter_host.trim().is_empty() {
            default_host
        } else {
            config.prom_exporter_host.trim().parse().map_err(|_| {
                MetricsError::Config(format!("prom_exporter_host `{}` is not an IP address", config.prom_exporter_host))
            })?
        };
        let addr = SocketAddr::new(host, config.prom_exporter_port);
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        let cancel = CancellationToken::new();
        let renderer = Renderer::start(encoder).map_err(|source| MetricsError::Bind { addr, source })?;
        let exporter = Arc::new(Self { provider, prometheus: Some((renderer, bound)), cancel });
        let weak = Arc::downgrade(&exporter);
        let routes: Routes = Arc::new(move |path| {
            let exporter = weak.upgrade()?;
            (path == "/metrics" || path == "/")
                .then(|| Page { content_type: "text/plain; version=0.0.4; charset=utf-8", body: exporter.render() })
        });
        let endpoint = http::serve(listener, routes, exporter.cancel.clone(), "metrics")
            .map_err(|source| MetricsError::Bind { addr, source })?;
        tracing::info!(%endpoint, "metrics served for Prometheus at /metrics");
        Ok(exporter)
    }

    /// OTLP/gRPC pushes every `grpc_exporter_interval`, on the SDK's reader thread
    /// (call inside the Tokio runtime: the gRPC client binds to it). A target without
    /// a scheme is taken as `http://` (RocketMQ assumes `https://`; this build has no
    /// TLS client).
    fn start_otlp(
        config: &MetricsConfig,
        builder: opentelemetry_sdk::metrics::MeterProviderBuilder,
    ) -> Result<Arc<Self>, MetricsError> {
        use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
        let target = config.grpc_exporter_target.trim();
        let endpoint = if target.contains("://") { target.to_owned() } else { format!("http://{target}") };
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (k, v) in config.grpc_headers().map_err(|e| MetricsError::Config(e.to_string()))? {
            let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|e| MetricsError::Config(format!("grpc_exporter_header `{k}`: {e}")))?;
            let value = v.parse().map_err(|_| MetricsError::Config(format!("grpc_exporter_header value of `{k}`")))?;
            metadata.insert(key, value);
        }
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(config.grpc_exporter_timeout)
            .with_metadata(metadata)
            .build()
            .map_err(|e| MetricsError::Exporter(e.to_string()))?;
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
            .with_interval(config.grpc_exporter_interval)
            .build();
        let provider = builder.with_reader(reader).build();
        tracing::info!(%endpoint, interval = ?config.grpc_exporter_interval, "metrics pushed over OTLP/gRPC");
        Ok(Arc::new(Self { provider, prometheus: None, cancel: CancellationToken::new() }))
    }

    /// A meter named `name` (RocketMQ uses `broker-meter`).
    pub fn meter(&self, name: &'static str) -> Meter {
        self.provider.meter(name)
    }

    /// The Prometheus endpoint's address (`PROM` only).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.prometheus.as_ref().map(|(_, addr)| *addr)
    }

    /// Every series in Prometheus's text format (what a scrape reads; empty unless `PROM`).
    pub fn render(&self) -> String {
        self.prometheus.as_ref().map(|(renderer, _)| renderer.render()).unwrap_or_default()
    }

    /// Stops the endpoint and the provider.
    pub fn shutdown(&self) {
        self.cancel.cancel();
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "metrics provider shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prom(label: &str) -> MetricsConfig {
        MetricsConfig {
            exporter_type: MetricsExporterType::Prom,
            prom_exporter_host: "127.0.0.1".to_owned(),
            prom_exporter_port: 0,
            label: label.to_owned(),
            ..MetricsConfig::default()
        }
    }

    fn node() -> Node {
        Node { node_type: "broker", cluster: "DefaultCluster".to_owned(), node_id: "broker-a".to_owned() }
    }

    #[tokio::test]
    async fn disabled_starts_nothing() {
        let exporter = MetricsExporter::start(&MetricsConfig::default(), &node(), IpAddr::from([127, 0, 0, 1])).await;
        assert!(exporter.unwrap().is_none());
    }

    #[tokio::test]
    async fn series_carry_rocketmq_names_and_the_node_labels() {
        let exporter =
            MetricsExporter::start(&prom("region:eu"), &node(), IpAddr::from([127, 0, 0, 1])).await.unwrap().unwrap();
        let meter = exporter.meter("broker-meter");
        let counter = meter.u64_counter("rocketmq_messages_in_total").build();
        let bound = counter.bind(&[KeyValue::new("topic", "T"), KeyValue::new("message_type", "normal")]);
        bound.add(3);
        bound.add(4);
        let text = exporter.render();
        let line =
            text.lines().find(|l| l.starts_with("rocketmq_messages_in_total{")).unwrap_or_else(|| panic!("{text}"));
        for label in [
            r#"cluster="DefaultCluster""#,
            r#"node_type="broker""#,
            r#"node_id="broker-a""#,
            r#"region="eu""#,
            r#"topic="T""#,
            r#"message_type="normal""#,
        ] {
            assert!(line.contains(label), "{label} missing from {line}");
        }
        assert!(line.ends_with(" 7"), "{line}");
        assert!(!text.contains("otel_scope") && !text.contains("target_info"), "{text}");
        exporter.shutdown();
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn scrapes_render_on_a_thread_of_the_lowest_priority() {
        let exporter = MetricsExporter::start(&prom(""), &node(), IpAddr::from([127, 0, 0, 1])).await.unwrap().unwrap();
        assert!(exporter.render().is_empty() || exporter.render().contains('#'));
        let nice_of_render_thread = std::fs::read_dir("/proc/self/task").unwrap().find_map(|task| {
            let dir = task.ok()?.path();
            (std::fs::read_to_string(dir.join("comm")).ok()?.trim() == "metrics-render").then_some(())?;
            // Field 19 of `stat`, counted after the `(comm)` field that may hold spaces.
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            stat.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse::<i32>().ok()
        });
        assert_eq!(nice_of_render_thread, Some(19));
        exporter.shutdown();
    }

    #[tokio::test]
    async fn log_writes_every_series_to_the_log() {
        use std::sync::{Arc, Mutex};
        /// Collects what the `metrics` target logs.
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || writer.clone()).with_max_level(tracing::Level::INFO).finish();
        // The periodic reader exports on a thread of its own: the subscriber must be global.
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
        let config = MetricsConfig {
            exporter_type: MetricsExporterType::Log,
            log_exporter_interval: std::time::Duration::from_millis(50),
            ..MetricsConfig::default()
        };
        let exporter = MetricsExporter::start(&config, &node(), IpAddr::from([127, 0, 0, 1])).await.unwrap().unwrap();
        let meter = exporter.meter("broker-meter");
        meter.u64_counter("rocketmq_messages_in_total").build().add(2, &[KeyValue::new("topic", "L")]);
        exporter.provider.force_flush().unwrap();
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.lines().any(|l| l.contains(r#"rocketmq_messages_in_total{cluster="DefaultCluster",node_type="broker",node_id="broker-a",topic="L"} 2"#)),
            "{text}"
        );
        exporter.shutdown();
    }
}
