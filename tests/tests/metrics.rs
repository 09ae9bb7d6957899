//! RocketMQ 5's metrics, read the way operators read them: a real Prometheus server
//! (Debian's `prometheus` package) scrapes a broker and a name server started with
//! `metricsExporterType = PROM`, and PromQL queries through its HTTP API return the
//! counters of the messages the test wrote, under RocketMQ's names and labels.
//!
//! `prometheus` must be on the PATH (`.ci/run` installs it); `FERROMQ_SKIP_PROMETHEUS=1`
//! is the only way to skip, and it says so on stderr.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use tests::wire::{props, Wire};
use tests::{eventually, Broker, Namesrv};

const TOPIC: &str = "MetricsTopic";
const GROUP: &str = "MetricsGroup";
const IDLE: &str = "MetricsIdleGroup";
const MESSAGES: usize = 7;
const BODY: usize = 1024;

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping `targets` every 500 ms; killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(binary: PathBuf, targets: &[(&str, SocketAddr)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = String::from("global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n");
        for (job, addr) in targets {
            config.push_str(&format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config)?;
        // A free loopback port for its web API (Prometheus cannot report one it picked).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus")?;
        Ok(Self { child, addr, _dir: dir })
    }

    /// Runs an instant PromQL query; the result vector.
    async fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let body = tests::http_get(self.addr, &format!("/api/v1/query?query={}", url_encode(promql))).await?;
        let v: Value = serde_json::from_str(&body)?;
        if v["status"] != "success" {
            bail!("query {promql}: {body}");
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `promql` returns exactly one series whose value is `want`; that series.
    async fn wait_for(&self, promql: &str, want: f64) -> Result<Value> {
        eventually(Duration::from_secs(60), &format!("{promql} == {want}"), || async {
            let result = self.query(promql).await.ok()?;
            let [series] = result.as_slice() else { return None };
            let value: f64 = series["value"][1].as_str()?.parse().ok()?;
            (value == want).then(|| series.clone())
        })
        .await
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join("prometheus")).find(|p| p.is_file())
}

fn label<'a>(series: &'a Value, name: &str) -> Option<&'a str> {
    series["metric"][name].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_rocketmq_metrics_from_a_broker_and_a_name_server() -> Result<()> {
    if std::env::var("FERROMQ_SKIP_PROMETHEUS").is_ok_and(|v| v == "1") {
        let _ = std::io::stderr().lock().write_all(
            b"SKIPPED metrics: FERROMQ_SKIP_PROMETHEUS=1 is set, so the Prometheus scrape test did not run\n",
        );
        return Ok(());
    }
    let Some(binary) = prometheus_binary() else {
        bail!("`prometheus` is not on the PATH: install Debian's prometheus package (.ci/run does)");
    };
    let metrics = [
        ("TELEMETRY__METRICS__EXPORTER_TYPE", "PROM"),
        ("TELEMETRY__METRICS__PROM_EXPORTER_HOST", "127.0.0.1"),
        ("TELEMETRY__METRICS__PROM_EXPORTER_PORT", "0"),
    ];
    let ns = Namesrv::start(&metrics)?;
    let mut broker_settings = metrics.to_vec();
    broker_settings.push(("TELEMETRY__METRICS__LABEL", "deployment:metrics-test"));
    let broker = Broker::start(&ns.addr(), &broker_settings)?;
    let prometheus = Prometheus::start(
        binary,
        &[("broker", broker.process.metrics_addr()?), ("namesrv", ns.process.metrics_addr()?)],
    )?;

    let wire = Wire::new(broker.addr());
    wire.create_topic(TOPIC, 1).await?;
    let body = vec![b'm'; BODY];
    for _ in 0..MESSAGES {
        wire.send(TOPIC, 0, &body, &props(&[("TAGS", "T")])).await?;
    }
    let pulled = wire.pull(GROUP, TOPIC, 0, 0, "*", "TAG", 0).await?;
    assert_eq!(pulled.messages.len(), MESSAGES);
    // GROUP pulled all and committed 2; IDLE pulled nothing and committed 3.
    wire.update_offset(GROUP, TOPIC, 0, 2).await?;
    wire.update_offset(IDLE, TOPIC, 0, 3).await?;

    let scope = format!(r#"topic="{TOPIC}""#);
    let series = prometheus.wait_for(&format!("rocketmq_messages_in_total{{{scope}}}"), MESSAGES as f64).await?;
    for (name, want) in [
        ("cluster", "DefaultCluster"),
        ("node_type", "broker"),
        ("node_id", "broker-a"),
        ("message_type", "normal"),
        ("is_system", "false"),
        ("deployment", "metrics-test"),
    ] {
        assert_eq!(label(&series, name), Some(want), "label {name} of {series}");
    }
    prometheus.wait_for(&format!("rocketmq_throughput_in_total{{{scope}}}"), (MESSAGES * BODY) as f64).await?;
    prometheus.wait_for(&format!(r#"rocketmq_message_size_bucket{{{scope},le="1024"}}"#), MESSAGES as f64).await?;
    let out = prometheus
        .wait_for(&format!(r#"rocketmq_messages_out_total{{{scope},consumer_group="{GROUP}"}}"#), MESSAGES as f64)
        .await?;
    assert_eq!(label(&out, "is_retry"), Some("false"), "{out}");
    prometheus
        .wait_for(
            r#"sum(rocketmq_rpc_latency_count{node_type="broker",request_code="send_message_v2",response_code="success"})"#,
            MESSAGES as f64,
        )
        .await?;
    prometheus.wait_for(r#"rocketmq_topic_number{node_type="broker"} > bool 0"#, 1.0).await?;
    // Consumer progress: lag = end - committed, in flight = pulled - committed,
    // ready = end - pulled; latencies are the age of the oldest such message.
    let m = MESSAGES as f64;
    for (group, lag, inflight, ready) in [(GROUP, m - 2.0, m - 2.0, 0.0), (IDLE, m - 3.0, 0.0, m - 3.0)] {
        let g = format!(r#"{scope},consumer_group="{group}""#);
        prometheus.wait_for(&format!("rocketmq_consumer_lag_messages{{{g}}}"), lag).await?;
        prometheus.wait_for(&format!("rocketmq_consumer_inflight_messages{{{g}}}"), inflight).await?;
        prometheus.wait_for(&format!("rocketmq_consumer_ready_messages{{{g}}}"), ready).await?;
        prometheus.wait_for(&format!("rocketmq_consumer_lag_latency{{{g}}} > bool 0"), 1.0).await?;
        let queueing = if ready > 0.0 { 1.0 } else { 0.0 };
        prometheus.wait_for(&format!("rocketmq_consumer_queueing_latency{{{g}}} > bool 0"), queueing).await?;
    }

    // The name server: its own requests and route tables.
    prometheus.wait_for(r#"ferromq_namesrv_brokers{node_type="nameserver"}"#, 1.0).await?;
    prometheus
        .wait_for(
            r#"sum(rocketmq_rpc_latency_count{node_type="nameserver",request_code="register_broker"}) > bool 0"#,
            1.0,
        )
        .await?;

    // The dashboard in the repository: every query is valid PromQL, and the ones over
    // series this run produced return data.
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/ferromq-brokers.json"),
    )?)?;
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().context("panels")? {
        for target in panel["targets"].as_array().context("targets")? {
            let expr = target["expr"].as_str().context("expr")?.replace("$cluster", ".*").replace("$node", ".*");
            // Valid PromQL, or the query itself fails.
            prometheus.query(&expr).await.with_context(|| format!("panel {}", panel["title"]))?;
            exprs.push(expr);
        }
    }
    // Rates need two scrapes of the series; wait for them rather than for a fixed time.
    let answered = eventually(Duration::from_secs(60), "the dashboard's queries to return data", || async {
        let mut answered = Vec::new();
        for expr in &exprs {
            if !prometheus.query(expr).await.ok()?.is_empty() {
                answered.push(expr.clone());
            }
        }
        (answered.len() >= 10).then_some(answered)
    })
    .await;
    assert!(answered.is_ok(), "fewer than 10 of the dashboard's {} queries returned data", exprs.len());
    Ok(())
}

mod otlp {
    //! `metricsExporterType = OTLP_GRPC`: the broker pushes the same metrics to a real
    //! OTLP/gRPC `MetricsService` (built on the `opentelemetry-proto` definitions),
    //! with the request headers of `metricsGrpcExporterHeader`.

    use std::sync::{Arc, Mutex};

    use anyhow::Result;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
        MetricsService, MetricsServiceServer,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
    use tests::wire::{props, Wire};
    use tests::{eventually, Broker, Namesrv};

    /// A push and its `x-tenant` header.
    type Push = (Option<String>, ExportMetricsServiceRequest);

    #[derive(Clone, Default)]
    struct Receiver {
        requests: Arc<Mutex<Vec<Push>>>,
    }

    #[tonic::async_trait]
    impl MetricsService for Receiver {
        async fn export(
            &self,
            request: tonic::Request<ExportMetricsServiceRequest>,
        ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
            let tenant = request.metadata().get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned);
            self.requests.lock().unwrap().push((tenant, request.into_inner()));
            Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
        }
    }

    /// The latest value of `rocketmq_messages_in_total{topic}` a push carried, with
    /// the push's `x-tenant` header and the resource's `node_type`.
    fn messages_in(receiver: &Receiver, topic: &str) -> Option<(i64, Option<String>, Option<String>)> {
        let requests = receiver.requests.lock().unwrap();
        let mut found = None;
        for (tenant, request) in requests.iter() {
            for rm in &request.resource_metrics {
                let node_type = rm.resource.as_ref().and_then(|r| tests::otlp::attribute(&r.attributes, "node_type"));
                for metric in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    if metric.name != "rocketmq_messages_in_total" {
                        continue;
                    }
                    let Some(Data::Sum(sum)) = &metric.data else { continue };
                    for p in &sum.data_points {
                        if tests::otlp::attribute(&p.attributes, "topic").as_deref() == Some(topic) {
                            if let Some(Number::AsInt(v)) = p.value {
                                found = Some((v, tenant.clone(), node_type.clone()));
                            }
                        }
                    }
                }
            }
        }
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_broker_pushes_rocketmq_metrics_to_an_otlp_collector() -> Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let receiver = Receiver::default();
        let service = MetricsServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder().serve_with_incoming(service, incoming).await;
        });
        let ns = Namesrv::start(&[])?;
        let target = addr.to_string(); // no scheme, as RocketMQ's sample configurations write it
        let broker = Broker::start(
            &ns.addr(),
            &[
                ("TELEMETRY__METRICS__EXPORTER_TYPE", "OTLP_GRPC"),
                ("TELEMETRY__METRICS__GRPC_EXPORTER_TARGET", target.as_str()),
                ("TELEMETRY__METRICS__GRPC_EXPORTER_HEADER", "x-tenant:ferromq"),
                ("TELEMETRY__METRICS__GRPC_EXPORTER_INTERVAL", "300ms"),
            ],
        )?;
        let wire = Wire::new(broker.addr());
        wire.create_topic("OtlpTopic", 1).await?;
        for _ in 0..5 {
            wire.send("OtlpTopic", 0, b"otlp", &props(&[])).await?;
        }
        let (value, tenant, node_type) =
            eventually(std::time::Duration::from_secs(30), "an OTLP push with the 5 messages", || async {
                messages_in(&receiver, "OtlpTopic").filter(|(v, _, _)| *v == 5)
            })
            .await?;
        assert_eq!(value, 5);
        assert_eq!(tenant.as_deref(), Some("ferromq"));
        assert_eq!(node_type.as_deref(), Some("broker"));
        Ok(())
    }
}
