//! [`MetricsExporter`]: the meter provider of one server and its Prometheus
//! endpoint, as `metricsExporterType = PROM` sets up in RocketMQ 5.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::{Key, KeyValue};
use opentelemetry_prometheus::ResourceSelector;
use opentelemetry_sdk::metrics::{Instrument, SdkMeterProvider, Stream};
use opentelemetry_sdk::Resource;
use prometheus::{Encoder, TextEncoder};
use tokio_util::sync::CancellationToken;

use config::{MetricsConfig, MetricsExporterType};

use crate::http::{self, Page, Routes};

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

/// A running metrics pipeline: the meter provider and the endpoint reading it.
pub struct MetricsExporter {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    endpoint: SocketAddr,
    cancel: CancellationToken,
}

impl std::fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsExporter").field("endpoint", &self.endpoint).finish_non_exhaustive()
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
        match config.exporter_type {
            MetricsExporterType::Disable => return Ok(None),
            MetricsExporterType::Prom => {}
            // `validate` refuses the others.
            other => return Err(MetricsError::Config(format!("exporter type {} is not available", other.as_str()))),
        }
        let labels = config.labels().map_err(|e| MetricsError::Config(e.to_string()))?;
        let mut attributes = vec![
            KeyValue::new("cluster", node.cluster.clone()),
            KeyValue::new("node_type", node.node_type),
            KeyValue::new("node_id", node.node_id.clone()),
        ];
        attributes.extend(labels.into_iter().map(|(k, v)| KeyValue::new(k, v)));
        let keys: std::collections::HashSet<Key> = attributes.iter().map(|kv| kv.key.clone()).collect();

        let registry = prometheus::Registry::new();
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            // RocketMQ's names already end in `_total` where they should, and carry no unit.
            .without_counter_suffixes()
            .without_units()
            .without_target_info()
            .scope_info_enabled(false)
            .with_resource_selector(ResourceSelector::KeyAllowList(keys))
            .build()
            .map_err(|e| MetricsError::Exporter(e.to_string()))?;
        let provider = SdkMeterProvider::builder()
            .with_resource(Resource::builder_empty().with_attributes(attributes).build())
            .with_reader(reader)
            .with_view(|_: &Instrument| Stream::builder().with_cardinality_limit(CARDINALITY_LIMIT).build().ok())
            .build();

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
        let cancel = CancellationToken::new();
        let exporter = Arc::new(Self { provider, registry, endpoint: listener.local_addr().unwrap_or(addr), cancel });
        let weak = Arc::downgrade(&exporter);
        let routes: Routes = Arc::new(move |path| {
            let exporter = weak.upgrade()?;
            (path == "/metrics" || path == "/")
                .then(|| Page { content_type: "text/plain; version=0.0.4; charset=utf-8", body: exporter.render() })
        });
        let endpoint = http::serve(listener, routes, exporter.cancel.clone(), "metrics")
            .map_err(|source| MetricsError::Bind { addr, source })?;
        tracing::info!(%endpoint, "metrics served for Prometheus at /metrics");
        Ok(Some(exporter))
    }

    /// A meter named `name` (RocketMQ uses `broker-meter`).
    pub fn meter(&self, name: &'static str) -> Meter {
        self.provider.meter(name)
    }

    /// The Prometheus endpoint's address.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// Every series in Prometheus's text format (what a scrape reads).
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(64 * 1024);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
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

    #[tokio::test]
    async fn a_refused_exporter_type_is_an_error() {
        let mut config = prom("");
        config.exporter_type = MetricsExporterType::OtlpGrpc;
        let err = MetricsExporter::start(&config, &node(), IpAddr::from([127, 0, 0, 1])).await.unwrap_err();
        assert!(err.to_string().contains("OTLP_GRPC"), "{err}");
    }
}
