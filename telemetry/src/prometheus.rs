//! Prometheus text exposition (format 0.0.4) of everything a [`ManualReader`]
//! collects (and of what the `LOG` exporter is pushed): one `# HELP`/`# TYPE` pair per metric, one line per series (buckets,
//! `_sum` and `_count` for histograms), the node's labels on every line.
//!
//! Written here rather than with `opentelemetry-prometheus`: that exporter builds one
//! `prometheus` protobuf family per data point, with owned copies of every label,
//! and the registry then merges and sorts them. For a broker with 1,000 topics read by
//! 10 groups each (~35,000 series) that took 66 ms per scrape on an idle machine and
//! twice that under load, against a budget of 50 ms; writing the text straight from
//! the collected data points into one reused buffer is a fraction of it.

use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};
use parking_lot::Mutex;

/// The reader the meter provider owns; the encoder keeps the other handle.
#[derive(Debug, Clone)]
pub(crate) struct SharedReader(pub(crate) Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Renders a reader's metrics as Prometheus text.
#[derive(Debug)]
pub(crate) struct TextEncoder {
    /// What `render` collects from (`None`: the encoder only formats what it is given).
    reader: Option<Arc<ManualReader>>,
    /// `key="value",` for the node's labels, written before each series' own.
    node_labels: String,
    /// The previous scrape's size, to allocate the next one at once.
    last_len: Mutex<usize>,
}

impl TextEncoder {
    pub(crate) fn new(reader: Option<Arc<ManualReader>>, node_labels: &[KeyValue]) -> Self {
        let mut labels = String::new();
        for kv in node_labels {
            write_label(&mut labels, kv.key.as_str(), &kv.value);
        }
        Self { reader, node_labels: labels, last_len: Mutex::new(64 * 1024) }
    }

    pub(crate) fn render(&self) -> String {
        let Some(reader) = &self.reader else { return String::new() };
        let mut rm = ResourceMetrics::default();
        if let Err(e) = reader.collect(&mut rm) {
            tracing::warn!(error = %e, "could not collect metrics");
            return String::new();
        }
        let out = self.encode(&rm);
        *self.last_len.lock() = out.len();
        out
    }

    /// The text of already collected metrics.
    pub(crate) fn encode(&self, rm: &ResourceMetrics) -> String {
        let mut out = String::with_capacity(*self.last_len.lock() + 4096);
        for scope in rm.scope_metrics() {
            for metric in scope.metrics() {
                let name = metric.name();
                match metric.data() {
                    AggregatedMetrics::U64(d) => self.write_data(&mut out, name, metric.description(), d),
                    AggregatedMetrics::I64(d) => self.write_data(&mut out, name, metric.description(), d),
                    AggregatedMetrics::F64(d) => self.write_data(&mut out, name, metric.description(), d),
                }
            }
        }
        out
    }

    fn write_data<T: Number>(&self, out: &mut String, name: &str, help: &str, data: &MetricData<T>) {
        match data {
            MetricData::Sum(sum) => {
                header(out, name, help, if sum.is_monotonic() { "counter" } else { "gauge" });
                for dp in sum.data_points() {
                    self.series(out, name, "", dp.attributes(), None);
                    dp.value().write(out);
                    out.push('\n');
                }
            }
            MetricData::Gauge(gauge) => {
                header(out, name, help, "gauge");
                for dp in gauge.data_points() {
                    self.series(out, name, "", dp.attributes(), None);
                    dp.value().write(out);
                    out.push('\n');
                }
            }
            MetricData::Histogram(h) => {
                header(out, name, help, "histogram");
                for dp in h.data_points() {
                    let mut cumulative = 0;
                    for (bound, count) in dp.bounds().zip(dp.bucket_counts()) {
                        cumulative += count;
                        self.series(out, name, "_bucket", dp.attributes(), Some(bound));
                        let _ = writeln!(out, "{cumulative}");
                    }
                    self.series(out, name, "_bucket", dp.attributes(), Some(f64::INFINITY));
                    let _ = writeln!(out, "{}", dp.count());
                    self.series(out, name, "_sum", dp.attributes(), None);
                    dp.sum().write(out);
                    out.push('\n');
                    self.series(out, name, "_count", dp.attributes(), None);
                    let _ = writeln!(out, "{}", dp.count());
                }
            }
            // Not produced by any instrument here (no exponential aggregation is configured).
            MetricData::ExponentialHistogram(_) => {}
        }
    }

    /// `name{node labels,attributes[,le="bound"]} ` (the value follows).
    fn series<'a>(
        &self,
        out: &mut String,
        name: &str,
        suffix: &str,
        attributes: impl Iterator<Item = &'a KeyValue>,
        le: Option<f64>,
    ) {
        out.push_str(name);
        out.push_str(suffix);
        out.push('{');
        out.push_str(&self.node_labels);
        for kv in attributes {
            write_label(out, kv.key.as_str(), &kv.value);
        }
        if let Some(le) = le {
            if le.is_infinite() {
                out.push_str("le=\"+Inf\",");
            } else {
                let _ = write!(out, "le=\"{le}\",");
            }
        }
        if out.ends_with(',') {
            out.pop();
        }
        out.push_str("} ");
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// `key="value",` with the value escaped as the format requires. Keys are written
/// as given: every key here is a fixed label name or one `metricsLabel` validated.
fn write_label(out: &mut String, key: &str, value: &Value) {
    out.push_str(key);
    out.push_str("=\"");
    match value {
        Value::String(s) => escape(out, s.as_str()),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::I64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F64(f) => {
            let _ = write!(out, "{f}");
        }
        other => escape(out, &other.to_string()),
    }
    out.push_str("\",");
}

fn escape(out: &mut String, s: &str) {
    if !s.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A data point's value, written as Prometheus reads it.
pub(crate) trait Number: Copy {
    fn write(self, out: &mut String);
}

impl Number for u64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Number for i64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Number for f64 {
    fn write(self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    #[test]
    fn writes_counters_gauges_and_histograms_in_the_text_format() {
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder().with_reader(SharedReader(reader.clone())).build();
        let encoder =
            TextEncoder::new(Some(reader), &[KeyValue::new("cluster", "C"), KeyValue::new("node_id", "b\"a")]);
        let meter = provider.meter("m");
        meter.u64_counter("c_total").with_description("A counter").build().add(3, &[KeyValue::new("topic", "T")]);
        meter.u64_histogram("h").with_boundaries(vec![1.0, 10.0]).build().record(5, &[KeyValue::new("topic", "T")]);
        meter.f64_observable_gauge("g").with_callback(|o| o.observe(0.5, &[])).build();
        let text = encoder.render();
        for line in [
            "# HELP c_total A counter",
            "# TYPE c_total counter",
            r#"c_total{cluster="C",node_id="b\"a",topic="T"} 3"#,
            "# TYPE h histogram",
            r#"h_bucket{cluster="C",node_id="b\"a",topic="T",le="1"} 0"#,
            r#"h_bucket{cluster="C",node_id="b\"a",topic="T",le="10"} 1"#,
            r#"h_bucket{cluster="C",node_id="b\"a",topic="T",le="+Inf"} 1"#,
            r#"h_sum{cluster="C",node_id="b\"a",topic="T"} 5"#,
            r#"h_count{cluster="C",node_id="b\"a",topic="T"} 1"#,
            "# TYPE g gauge",
            r#"g{cluster="C",node_id="b\"a"} 0.5"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}

/// `metricsExporterType = LOG`: every `interval`, each series is written to the log
/// (target `metrics`, level info) as one Prometheus text line. RocketMQ logs OTLP JSON
/// there; a text line per series is what log search tools and people read here.
#[derive(Debug)]
pub(crate) struct LogExporter(pub(crate) TextEncoder);

impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for LogExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let text = self.0.encode(metrics);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            tracing::info!(target: "metrics", "{line}");
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}
