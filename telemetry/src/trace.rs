//! OpenTelemetry spans exported over OTLP ([`TraceExport`]), and the helpers the
//! broker and the client SDK share to name and link messaging spans.
//!
//! Spans follow OpenTelemetry's messaging conventions (`messaging.system` =
//! `rocketmq`, `messaging.destination.name`, `messaging.operation.type`, ...).
//! Context crosses processes inside the message: the producer writes its send span's
//! W3C `traceparent` into RocketMQ 5's `TRACE_CONTEXT` property, and the broker and
//! consumers start their spans as its children.
//!
//! Export runs on the batch span processor's own thread: a request only queues its
//! finished span. A full queue or a failed export drops spans; both are counted
//! ([`TraceExport::dropped`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use common::trace_context::TraceParent;
use config::{OtlpProtocol, TraceExporter, TracesConfig};

pub use opentelemetry::trace::{Span, SpanKind, Status, Tracer};
pub use opentelemetry_sdk::trace::{Span as SdkSpan, Tracer as SdkTracer};

/// `messaging.system` of every span.
pub const SYSTEM: &str = "rocketmq";

/// Counts what the exporter sent and what it lost.
#[derive(Debug, Default)]
pub struct ExportCounters {
    pub exported: AtomicU64,
    /// Spans of failed exports (collector down, slow, refusing).
    pub failed: AtomicU64,
}

/// Wraps the OTLP exporter to count exported and failed spans.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    counters: Arc<ExportCounters>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() { &self.counters.exported } else { &self.counters.failed };
        counter.fetch_add(n, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("traces: {0}")]
pub struct TraceError(String);

/// A running span pipeline.
pub struct TraceExport {
    provider: SdkTracerProvider,
    counters: Arc<ExportCounters>,
}

impl std::fmt::Debug for TraceExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceExport").field("counters", &self.counters).finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl TraceExport {
    /// Starts what `config` and the `OTEL_*` variables ask for: nothing when the
    /// exporter is `none` (no thread, no span recorded), else an OTLP exporter behind
    /// a batch span processor. Call it inside the Tokio runtime (the gRPC client
    /// binds to it).
    ///
    /// # Errors
    /// An exporter that cannot be built (a malformed endpoint).
    pub fn start(config: &TracesConfig, default_service: &str) -> Result<Option<Self>, TraceError> {
        let exporter = match env("OTEL_TRACES_EXPORTER").as_deref() {
            Some("otlp") => TraceExporter::Otlp,
            Some("none") => TraceExporter::None,
            Some(other) => return Err(TraceError(format!("OTEL_TRACES_EXPORTER `{other}`: expected otlp or none"))),
            None => config.exporter,
        };
        if exporter == TraceExporter::None {
            return Ok(None);
        }
        let protocol = match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            Some(p) if p == "grpc" => OtlpProtocol::Grpc,
            Some(p) if p == "http/protobuf" => OtlpProtocol::HttpProtobuf,
            Some(p) => {
                return Err(TraceError(format!("OTEL_EXPORTER_OTLP_PROTOCOL `{p}`: expected grpc or http/protobuf")))
            }
            None => config.protocol,
        };
        // The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT itself; the file's
        // endpoint applies only when neither is set.
        let endpoint = (env("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
            && !config.endpoint.trim().is_empty())
        .then(|| config.endpoint.trim().to_owned());
        let built = match protocol {
            OtlpProtocol::Grpc => {
                let b = opentelemetry_otlp::SpanExporter::builder().with_tonic();
                match endpoint {
                    Some(e) => b.with_endpoint(e).build(),
                    None => b.build(),
                }
            }
            OtlpProtocol::HttpProtobuf => {
                let b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
                match endpoint {
                    Some(e) => b.with_endpoint(e).build(),
                    None => b.build(),
                }
            }
        };
        let inner = built.map_err(|e| TraceError(e.to_string()))?;
        let counters = Arc::new(ExportCounters::default());
        let service = env("OTEL_SERVICE_NAME").unwrap_or_else(|| {
            if config.service_name.trim().is_empty() {
                default_service.to_owned()
            } else {
                config.service_name.trim().to_owned()
            }
        });
        let mut builder = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build())
            .with_batch_exporter(CountingExporter { inner, counters: counters.clone() });
        // OTEL_TRACES_SAMPLER, when set, is read by the SDK itself.
        if env("OTEL_TRACES_SAMPLER").is_none() {
            builder =
                builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))));
        }
        Ok(Some(Self { provider: builder.build(), counters }))
    }

    /// A tracer named after the component (`ferromq-broker`).
    pub fn tracer(&self, name: &'static str) -> SdkTracer {
        use opentelemetry::trace::TracerProvider as _;
        self.provider.tracer(name)
    }

    /// Spans exported.
    pub fn exported(&self) -> u64 {
        self.counters.exported.load(Ordering::Relaxed)
    }

    /// Spans lost: exports that failed.
    pub fn dropped(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Exports what is queued (bounded by the exporter's timeout).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::debug!(error = %e, "span flush failed");
        }
    }

    /// Flushes and stops the exporter thread.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "span exporter shutdown");
        }
    }
}

/// The remote parent named by a `TRACE_CONTEXT` value, as an OpenTelemetry context
/// (the root context when the value is absent or malformed).
pub fn remote_parent(trace_context: Option<&str>) -> Context {
    let Some(tp) = trace_context.and_then(TraceParent::parse) else { return Context::new() };
    let span = SpanContext::new(
        TraceId::from_bytes(tp.trace_id),
        SpanId::from_bytes(tp.span_id),
        TraceFlags::new(tp.flags),
        true,
        TraceState::default(),
    );
    Context::new().with_remote_span_context(span)
}

/// The `TRACE_CONTEXT` value naming `span` as the parent, when it is valid.
pub fn trace_context_of(span: &SpanContext) -> Option<String> {
    span.is_valid().then(|| {
        TraceParent {
            trace_id: span.trace_id().to_bytes(),
            span_id: span.span_id().to_bytes(),
            flags: span.trace_flags().to_u8(),
        }
        .to_string()
    })
}

/// The attributes every messaging span carries.
pub fn messaging_attributes(operation_type: &'static str, operation_name: &'static str, topic: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", SYSTEM),
        KeyValue::new("messaging.operation.type", operation_type),
        KeyValue::new("messaging.operation.name", operation_name),
        KeyValue::new("messaging.destination.name", topic.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_context_round_trips_through_an_otel_context() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = remote_parent(Some(value));
        let span = cx.span().span_context().clone();
        assert!(span.is_remote() && span.is_sampled());
        assert_eq!(trace_context_of(&span).as_deref(), Some(value));
        assert!(!remote_parent(Some("garbage")).span().span_context().is_valid());
        assert!(!remote_parent(None).has_active_span());
    }

    #[test]
    fn none_starts_nothing() {
        // The test process sets no OTEL_TRACES_EXPORTER.
        assert!(TraceExport::start(&TracesConfig::default(), "test").unwrap().is_none());
    }
}
