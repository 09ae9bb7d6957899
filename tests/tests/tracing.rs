//! OpenTelemetry traces end to end, received by a real OTLP endpoint: a gRPC
//! `TraceService` built on the `opentelemetry-proto` definitions decodes what the
//! application (with the SDK), the broker process and the SDK's push consumer export.
//!
//! One message sent by the SDK's producer and consumed by its push consumer gives one
//! trace: the producer's `send` span, the broker's `store` span (its child, through
//! the message's `TRACE_CONTEXT` property) with a `store.append` child, and the
//! consumer's `process` span (the producer's child), each with the messaging
//! attributes. A transactional message left undecided, checked back and committed
//! adds the broker's `check_transaction` and `end_transaction` spans to its trace.
//! With the collector gone, sends still succeed and the broker counts the spans it
//! could not export.

mod client_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
use client::{LocalTransactionState, Message, MessageExt, ProducerOptions, TransactionListener, TransactionProducer};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use opentelemetry_sdk::trace::SdkTracerProvider;
use remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode};
use tests::wire::{props, Wire};
use tests::{eventually, Broker, Namesrv};

use client_support::{create_topic, producer, WAIT};

/// One received span and the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: ProtoSpan,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        tests::otlp::attribute(&self.span.attributes, key)
    }
}

/// An OTLP/gRPC trace receiver on a loopback port, keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| tests::otlp::attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|span| Received { service: service.clone(), span }));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    async fn start() -> Result<(Self, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let receiver = Self::default();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder().serve_with_incoming(service, incoming).await;
        });
        Ok((receiver, addr))
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

/// The application's own tracer provider, exporting to `receiver` in batches (what
/// an application using the SDK installs).
fn install_application_tracing(receiver: SocketAddr) -> Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(format!("http://{receiver}")).build()?;
    let provider = SdkTracerProvider::builder()
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("test-application").build())
        .with_batch_exporter(exporter)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_from_producer_through_broker_to_consumer() -> Result<()> {
    const APP: &str = "test-application";
    const BROKER: &str = "ferromq-broker";
    let (receiver, addr) = Receiver::start().await?;
    let ns = Namesrv::start(&[])?;
    let endpoint = format!("http://{addr}");
    let broker = Broker::start(
        &ns.addr(),
        &[
            ("BROKER_NAME", "broker-a"),
            ("TELEMETRY__TRACES__EXPORTER", "otlp"),
            ("TELEMETRY__TRACES__ENDPOINT", endpoint.as_str()),
            ("TRANSACTION_CHECK_INTERVAL", "1s"),
            ("TRANSACTION_TIME_OUT", "1s"),
        ],
    )?;
    let provider = install_application_tracing(addr)?;
    create_topic(&ns.addr(), "TracedTopic", 2, 1).await?;

    let delivered: Arc<Mutex<Vec<MessageExt>>> = Arc::default();
    let log = delivered.clone();
    let consumer = PushConsumer::builder("TracedGroup")
        .namesrv(&ns.addr())
        .subscribe("TracedTopic", "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            log.lock().unwrap().extend_from_slice(msgs);
            ConsumeStatus::Success
        })
        .start()
        .await?;
    let producer = producer(&ns.addr(), "TracedProducer");
    let sent = producer.send(Message::new("TracedTopic", b"traced".to_vec()).with_tags("TagT")).await?;
    eventually(WAIT, "the message consumed", || async { (!delivered.lock().unwrap().is_empty()).then_some(()) })
        .await?;

    let find = |spans: &[Received], name: &str| spans.iter().find(|s| s.span.name == name).cloned();
    let spans = eventually(WAIT, "producer, broker and consumer spans", || async {
        let _ = provider.force_flush();
        let spans = receiver.spans();
        [
            "send TracedTopic",
            "store TracedTopic",
            "store.append TracedTopic",
            "receive TracedTopic",
            "process TracedTopic",
        ]
        .iter()
        .all(|n| find(&spans, n).is_some())
        .then_some(spans)
    })
    .await?;
    let send = find(&spans, "send TracedTopic").context("send span")?;
    let store = find(&spans, "store TracedTopic").context("store span")?;
    let append = find(&spans, "store.append TracedTopic").context("append span")?;
    let process = find(&spans, "process TracedTopic").context("process span")?;
    let receive = find(&spans, "receive TracedTopic").context("receive span")?;

    // One trace, linked parent to child across three processes' exporters.
    for s in [&store, &append, &process] {
        assert_eq!(hex(&s.span.trace_id), hex(&send.span.trace_id), "{} is in another trace", s.span.name);
    }
    assert_eq!(store.span.parent_span_id, send.span.span_id, "store's parent is the producer's send");
    assert_eq!(append.span.parent_span_id, store.span.span_id, "append's parent is the store span");
    assert_eq!(process.span.parent_span_id, send.span.span_id, "process's parent is the producer's send");
    assert_eq!(send.service, APP);
    assert_eq!(store.service, BROKER);
    assert_eq!(process.service, APP);
    assert_eq!(send.span.kind, SpanKind::Producer as i32);
    assert_eq!(store.span.kind, SpanKind::Server as i32);
    assert_eq!(process.span.kind, SpanKind::Consumer as i32);
    // The pull that brought the message: its own trace, linked to the message's.
    assert_eq!(receive.span.kind, SpanKind::Consumer as i32);
    assert!(receive.span.parent_span_id.is_empty());
    assert!(
        receive.span.links.iter().any(|l| l.trace_id == send.span.trace_id && l.span_id == send.span.span_id),
        "the receive span links to the send: {:?}",
        receive.span.links
    );
    assert_eq!(receive.attribute("messaging.consumer.group.name").as_deref(), Some("TracedGroup"));

    // The messaging attributes.
    for s in [&send, &store, &process] {
        assert_eq!(s.attribute("messaging.system").as_deref(), Some("rocketmq"), "{}", s.span.name);
        assert_eq!(s.attribute("messaging.destination.name").as_deref(), Some("TracedTopic"), "{}", s.span.name);
        assert_eq!(s.attribute("messaging.message.id").as_deref(), Some(sent.msg_id.as_str()), "{}", s.span.name);
        assert_eq!(s.attribute("messaging.rocketmq.message.tag").as_deref(), Some("TagT"), "{}", s.span.name);
    }
    assert_eq!(send.attribute("messaging.operation.type").as_deref(), Some("send"));
    assert_eq!(process.attribute("messaging.operation.type").as_deref(), Some("process"));
    assert_eq!(process.attribute("messaging.consumer.group.name").as_deref(), Some("TracedGroup"));
    assert_eq!(store.attribute("messaging.rocketmq.client_group").as_deref(), Some("TracedProducer"));
    assert_eq!(store.attribute("messaging.rocketmq.response_code").as_deref(), Some("0"));

    // The stored message carries the producer's context, as RocketMQ 5's clients expect.
    let stored = delivered.lock().unwrap()[0].properties.get("TRACE_CONTEXT").map(str::to_owned);
    assert_eq!(
        stored.as_deref(),
        Some(format!("00-{}-{}-01", hex(&send.span.trace_id), hex(&send.span.span_id)).as_str())
    );

    // A transaction left undecided, checked back by the broker and committed.
    let tx = TransactionProducer::new(
        "TracedTxProducer",
        config::ClientConfig::default(),
        Some(vec![ns.addr()]),
        ProducerOptions::default(),
        UnknownThenCommit,
    );
    let tx_sent =
        tx.send_message_in_transaction(Message::new("TracedTopic", b"tx".to_vec()).with_tags("TagX"), ()).await?;
    let tx_id = tx_sent.send_result.msg_id.clone();
    let by_id = |spans: &[Received], name: &str, service: &str| {
        spans
            .iter()
            .find(|s| {
                s.span.name == name
                    && s.service == service
                    && s.attribute("messaging.message.id").as_deref() == Some(&tx_id)
            })
            .cloned()
    };
    let spans = eventually(WAIT, "the transaction's check and end spans", || async {
        let _ = provider.force_flush();
        let spans = receiver.spans();
        [
            ("send TracedTopic", APP),
            ("check_transaction TracedTopic", BROKER),
            ("check_transaction TracedTopic", APP),
            ("end_transaction TracedTopic", BROKER),
        ]
        .iter()
        .all(|(n, service)| by_id(&spans, n, service).is_some())
        .then_some(spans)
    })
    .await?;
    let tx_send = by_id(&spans, "send TracedTopic", APP).context("tx send")?;
    let check = by_id(&spans, "check_transaction TracedTopic", BROKER).context("check span")?;
    let answer = by_id(&spans, "check_transaction TracedTopic", APP).context("the application's check span")?;
    let end = by_id(&spans, "end_transaction TracedTopic", BROKER).context("end span")?;
    // The application's answer to the check-back, in the same trace.
    assert_eq!(answer.span.kind, SpanKind::Server as i32);
    assert_eq!(answer.attribute("messaging.rocketmq.transaction.resolution").as_deref(), Some("CommitMessage"));
    for s in [&check, &answer, &end] {
        assert_eq!(hex(&s.span.trace_id), hex(&tx_send.span.trace_id), "{} is in another trace", s.span.name);
        assert_eq!(s.span.parent_span_id, tx_send.span.span_id, "{}'s parent is the half message's send", s.span.name);
        assert_eq!(s.attribute("messaging.rocketmq.client_group").as_deref(), Some("TracedTxProducer"));
    }
    assert_eq!(check.span.kind, SpanKind::Client as i32);
    assert_eq!(end.span.kind, SpanKind::Server as i32);
    assert_eq!(end.attribute("messaging.rocketmq.transaction.resolution").as_deref(), Some("commit"));
    assert_eq!(end.attribute("messaging.rocketmq.transaction.from_check").as_deref(), Some("true"));

    tx.shutdown().await;
    consumer.shutdown().await;
    producer.shutdown().await;
    drop(broker);
    Ok(())
}

/// A local transaction that stays undecided until the broker asks, then commits.
struct UnknownThenCommit;

impl TransactionListener for UnknownThenCommit {
    type Arg = ();

    async fn execute_local_transaction(&self, _msg: &Message, _arg: &()) -> LocalTransactionState {
        LocalTransactionState::Unknow
    }

    async fn check_local_transaction(&self, _msg: &MessageExt) -> LocalTransactionState {
        LocalTransactionState::CommitMessage
    }
}

/// GET_BROKER_RUNTIME_INFO's table.
async fn runtime_info(broker: &str) -> Result<HashMap<String, String>> {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let resp = client
        .invoke(broker, RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO), Duration::from_secs(5))
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body_bytes())?;
    Ok(serde_json::from_value(v["table"].clone())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_down_sends_succeed_and_dropped_spans_are_counted() -> Result<()> {
    // A port nothing listens on.
    let dead: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let ns = Namesrv::start(&[])?;
    let endpoint = format!("http://{dead}");
    let broker = Broker::start(
        &ns.addr(),
        &[
            ("TELEMETRY__TRACES__EXPORTER", "otlp"),
            ("TELEMETRY__TRACES__ENDPOINT", endpoint.as_str()),
            // Every send starts a trace of its own (no producer context here).
            ("TELEMETRY__TRACES__SAMPLE_RATIO", "1.0"),
        ],
    )?;
    let wire = Wire::new(broker.addr());
    wire.create_topic("Untraced", 1).await?;
    for i in 0..20 {
        let sent = wire.send("Untraced", 0, format!("m{i}").as_bytes(), &props(&[])).await?;
        assert_eq!(sent.queue_offset, i64::from(i), "send {i}");
    }
    let dropped = eventually(WAIT, "the broker to count dropped spans", || async {
        let info = runtime_info(&broker.addr()).await.ok()?;
        let dropped: u64 = info.get("traceSpansDropped")?.parse().ok()?;
        (dropped > 0).then_some(dropped)
    })
    .await?;
    let info = runtime_info(&broker.addr()).await?;
    assert_eq!(info.get("traceSpansExported").map(String::as_str), Some("0"), "{info:?}");
    assert!(dropped <= 40, "at most the 20 sends' store and append spans: {dropped}");
    Ok(())
}

/// `traceTopicEnable`: the broker creates RocketMQ's message-trace topic (one queue)
/// at start and registers it, so clients recording 4.x message traces can write
/// there even with topic auto-creation off; without it the topic does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_topic_enable_creates_the_message_trace_topic() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let on = Broker::start(
        &ns.addr(),
        &[("BROKER_NAME", "broker-t"), ("AUTO_CREATE_TOPIC_ENABLE", "false"), ("TRACE_TOPIC_ENABLE", "true")],
    )?;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let route = eventually(WAIT, "the trace topic's route", || async {
        tests::wire::route(&client, &ns.addr(), "RMQ_SYS_TRACE_TOPIC").await.ok().flatten()
    })
    .await?;
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].write_queue_nums, 1);
    let sent = Wire::new(on.addr()).send("RMQ_SYS_TRACE_TOPIC", 0, b"Pub\x01...", &props(&[])).await?;
    assert_eq!((sent.code, sent.queue_offset), (remoting::ResponseCode::SUCCESS, 0));

    let off = Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-u"), ("AUTO_CREATE_TOPIC_ENABLE", "false")])?;
    let refused = Wire::new(off.addr()).send("RMQ_SYS_TRACE_TOPIC", 0, b"x", &props(&[])).await?;
    assert_eq!(refused.code, remoting::ResponseCode::TOPIC_NOT_EXIST, "{refused:?}");
    Ok(())
}

/// A broker sampling its own pulls (`sample_ratio` 1): the pull span of a group
/// whose subscription a Lua filter plugin is bound to counts the filter's verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_span_counts_the_verdicts_of_its_plugin_filters() -> Result<()> {
    let (receiver, addr) = Receiver::start().await?;
    let ns = Namesrv::start(&[])?;
    let endpoint = format!("http://{addr}");
    let lua = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/lua/vip_filter.lua");
    let toml = format!(
        "[[broker.plugin_binding]]\nplugin = \"vip\"\ntopic = \"Members\"\ngroup = \"vip-readers\"\n\n\
         [plugins]\nwatch = false\n\n[[plugins.plugin]]\nname = \"vip\"\nkind = \"filter\"\nruntime = \"lua\"\n\
         path = {:?}\nconfig = {{ min_level = \"3\" }}\n",
        lua.display().to_string()
    );
    let broker = Broker::start_with_config(
        &ns.addr(),
        &toml,
        &[
            ("TELEMETRY__TRACES__EXPORTER", "otlp"),
            ("TELEMETRY__TRACES__ENDPOINT", endpoint.as_str()),
            ("TELEMETRY__TRACES__SAMPLE_RATIO", "1.0"),
        ],
    )?;
    let wire = Wire::new(broker.addr());
    wire.create_topic("Members", 1).await?;
    for (body, level) in [("high", "5"), ("low", "1"), ("top", "9"), ("none", "0")] {
        wire.send("Members", 0, body.as_bytes(), &props(&[("level", level)])).await?;
    }
    let pulled = wire.pull_at_least("vip-readers", "Members", 0, 0, 2).await?;
    assert_eq!(pulled.messages.len(), 2);

    let span = eventually(WAIT, "the pull span with the plugin's verdicts", || async {
        receiver
            .spans()
            .into_iter()
            .find(|s| s.span.name == "pull Members" && s.attribute("ferromq.plugin.kept").is_some_and(|k| k != "0"))
    })
    .await?;
    assert_eq!(span.attribute("messaging.consumer.group.name").as_deref(), Some("vip-readers"));
    assert_eq!(span.attribute("ferromq.plugin.kept").as_deref(), Some("2"));
    assert_eq!(span.attribute("ferromq.plugin.dropped").as_deref(), Some("2"));
    assert_eq!(span.attribute("ferromq.plugin.undecided").as_deref(), Some("0"));
    assert_eq!(span.attribute("messaging.batch.message_count").as_deref(), Some("2"));
    Ok(())
}

/// A master sampling its own work: each transfer of commit log to its slave is a
/// `replicate` span with the slave, the offset and the bytes sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_traces_its_transfers_to_the_slave() -> Result<()> {
    let (receiver, addr) = Receiver::start().await?;
    let ns = Namesrv::start(&[])?;
    let endpoint = format!("http://{addr}");
    let master = Broker::start(
        &ns.addr(),
        &[
            ("BROKER_NAME", "broker-r"),
            ("BROKER_ROLE", "SYNC_MASTER"),
            ("TELEMETRY__TRACES__EXPORTER", "otlp"),
            ("TELEMETRY__TRACES__ENDPOINT", endpoint.as_str()),
            ("TELEMETRY__TRACES__SAMPLE_RATIO", "1.0"),
        ],
    )?;
    let _slave =
        Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-r"), ("BROKER_ROLE", "SLAVE"), ("BROKER_ID", "1")])?;
    let wire = Wire::new(master.addr());
    wire.create_topic("Replicated", 1).await?;
    // A SYNC_MASTER acknowledges once the slave holds the message: the transfer
    // carrying it has been written by then.
    eventually(WAIT, "a send the slave acknowledged", || async {
        let s = wire.send("Replicated", 0, b"replicated body", &props(&[])).await.ok()?;
        (s.code == remoting::ResponseCode::SUCCESS).then_some(s)
    })
    .await?;
    let span = eventually(WAIT, "a replicate span", || async {
        receiver.spans().into_iter().find(|s| s.span.name == "replicate broker-r")
    })
    .await?;
    assert_eq!(span.span.kind, SpanKind::Client as i32);
    assert!(span.attribute("ferromq.replication.bytes").and_then(|b| b.parse::<i64>().ok()).is_some_and(|b| b > 0));
    assert!(span.attribute("ferromq.replication.offset").is_some());
    assert_eq!(span.attribute("server.address").as_deref(), Some("127.0.0.1"));
    assert!(span.span.end_time_unix_nano >= span.span.start_time_unix_nano);
    Ok(())
}
