//! OpenTelemetry spans of the SDK, through the application's global tracer provider
//! (`opentelemetry::global`): the SDK installs nothing itself, so with no provider
//! installed every span here is a no-op.
//!
//! * a send: `send {topic}` (producer), child of the caller's current context; its
//!   W3C `traceparent` goes into the message's `TRACE_CONTEXT` property (RocketMQ
//!   5's), so the broker's and the consumers' spans join the same trace;
//! * a pull that brought messages: `receive {topic}` (consumer), linked to each
//!   message's context;
//! * a consumption: `process {topic}` (consumer) per message, child of the context
//!   the message carries, covering the listener's call on its batch;
//! * a transaction check-back: `check_transaction {topic}` (server), child of the
//!   context the half message carries, covering the application's check.

use opentelemetry::global::{self, BoxedSpan, BoxedTracer};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};

use common::properties::keys;
use common::trace_context::TraceParent;
use common::{Message, MessageExt};

const SYSTEM: &str = "rocketmq";

fn tracer() -> BoxedTracer {
    global::tracer("ferromq-client")
}

fn attributes(operation_type: &'static str, operation_name: &'static str, topic: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", SYSTEM),
        KeyValue::new("messaging.operation.type", operation_type),
        KeyValue::new("messaging.operation.name", operation_name),
        KeyValue::new("messaging.destination.name", topic.to_owned()),
    ]
}

/// Starts the span of a send and writes its context into the message.
pub(crate) fn start_send(msg: &mut Message, group: &str, client_id: &str) -> BoxedSpan {
    let tracer = tracer();
    let mut attrs = attributes("send", "send", &msg.topic);
    attrs.push(KeyValue::new("messaging.rocketmq.client_group", group.to_owned()));
    attrs.push(KeyValue::new("messaging.client.id", client_id.to_owned()));
    if let Some(tag) = msg.properties.get(keys::TAGS) {
        attrs.push(KeyValue::new("messaging.rocketmq.message.tag", tag.to_owned()));
    }
    if let Some(id) = msg.properties.get(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) {
        attrs.push(KeyValue::new("messaging.message.id", id.to_owned()));
    }
    attrs.push(KeyValue::new("messaging.message.body.size", msg.body.len() as i64));
    let span = tracer
        .span_builder(format!("send {}", msg.topic))
        .with_kind(SpanKind::Producer)
        .with_attributes(attrs)
        .start(&tracer);
    let sc = span.span_context();
    if sc.is_valid() {
        let tp = TraceParent {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8(),
        };
        msg.properties.insert(keys::TRACE_CONTEXT, tp.to_string());
    }
    span
}

/// Ends a send's span with its outcome.
pub(crate) fn end_send(mut span: BoxedSpan, outcome: Result<(&str, i32), &str>) {
    match outcome {
        Ok((broker, queue_id)) => {
            span.set_attribute(KeyValue::new("messaging.destination.partition.id", queue_id.to_string()));
            span.set_attribute(KeyValue::new("server.address", broker.to_owned()));
        }
        Err(e) => span.set_status(Status::error(e.to_owned())),
    }
    span.end();
}

/// The context a consumed message carries (the root context when it carries none).
fn parent_of(msg: &MessageExt) -> Context {
    let Some(tp) = msg.properties.get(keys::TRACE_CONTEXT).and_then(TraceParent::parse) else {
        return Context::new();
    };
    let sc = SpanContext::new(
        TraceId::from_bytes(tp.trace_id),
        SpanId::from_bytes(tp.span_id),
        TraceFlags::new(tp.flags),
        true,
        TraceState::default(),
    );
    Context::new().with_remote_span_context(sc)
}

/// Records a pull that brought messages: `receive {topic}` (consumer), from
/// `started` to now, linked to the context each message carries (a batch belongs
/// to many traces, so it is their link rather than their child).
pub(crate) fn record_receive(
    topic: &str,
    group: &str,
    queue_id: i32,
    started: std::time::SystemTime,
    msgs: &[MessageExt],
) {
    let tracer = tracer();
    let mut attrs = attributes("receive", "receive", topic);
    attrs.push(KeyValue::new("messaging.consumer.group.name", group.to_owned()));
    attrs.push(KeyValue::new("messaging.destination.partition.id", queue_id.to_string()));
    attrs.push(KeyValue::new("messaging.batch.message_count", msgs.len() as i64));
    let links = msgs
        .iter()
        .filter_map(|m| {
            let cx = parent_of(m);
            let sc = cx.span().span_context().clone();
            sc.is_valid().then(|| opentelemetry::trace::Link::with_context(sc))
        })
        .collect();
    let mut span = tracer
        .span_builder(format!("receive {topic}"))
        .with_kind(SpanKind::Consumer)
        .with_start_time(started)
        .with_attributes(attrs)
        .with_links(links)
        .start_with_context(&tracer, &Context::new());
    span.end();
}

/// Starts one `process` span per message of a listener batch.
pub(crate) fn start_process(msgs: &[MessageExt], group: &str) -> Vec<BoxedSpan> {
    let tracer = tracer();
    msgs.iter()
        .map(|m| {
            let mut attrs = attributes("process", "process", &m.topic);
            attrs.push(KeyValue::new("messaging.consumer.group.name", group.to_owned()));
            attrs.push(KeyValue::new("messaging.message.id", m.msg_id()));
            attrs.push(KeyValue::new("messaging.destination.partition.id", m.queue_id.to_string()));
            attrs.push(KeyValue::new("messaging.rocketmq.message.reconsume_times", i64::from(m.reconsume_times)));
            if let Some(tag) = m.properties.get(keys::TAGS) {
                attrs.push(KeyValue::new("messaging.rocketmq.message.tag", tag.to_owned()));
            }
            tracer
                .span_builder(format!("process {}", m.topic))
                .with_kind(SpanKind::Consumer)
                .with_attributes(attrs)
                .start_with_context(&tracer, &parent_of(m))
        })
        .collect()
}

/// Starts the span of the application's answer to a transaction check-back:
/// `check_transaction {topic}` (server: the broker asked), child of the context the
/// half message carries.
pub(crate) fn start_check(half: &MessageExt, group: &str) -> BoxedSpan {
    let tracer = tracer();
    let mut attrs = attributes("settle", "check_transaction", &half.topic);
    attrs.push(KeyValue::new("messaging.rocketmq.client_group", group.to_owned()));
    attrs.push(KeyValue::new("messaging.message.id", half.msg_id()));
    tracer
        .span_builder(format!("check_transaction {}", half.topic))
        .with_kind(SpanKind::Server)
        .with_attributes(attrs)
        .start_with_context(&tracer, &parent_of(half))
}

/// Ends a check-back's span with the application's answer.
pub(crate) fn end_check(mut span: BoxedSpan, state: crate::LocalTransactionState) {
    span.set_attribute(KeyValue::new("messaging.rocketmq.transaction.resolution", format!("{state:?}")));
    span.end();
}

/// Ends the batch's spans: `ok` is the listener's verdict.
pub(crate) fn end_process(spans: Vec<BoxedSpan>, ok: bool) {
    for mut span in spans {
        if !ok {
            span.set_status(Status::error("reconsume later"));
        }
        span.end();
    }
}
