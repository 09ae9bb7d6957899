//! The broker's OpenTelemetry spans (when `[telemetry.traces]` exports them).
//!
//! * a send: `store {topic}` (server), the child of the producer's span named by the
//!   message's `TRACE_CONTEXT`, with a `store.append {topic}` child covering the
//!   store's put — the append, then the flush or replication acknowledgement the
//!   broker's flush type and role require;
//! * a pull: `pull {topic}` (server), with the consumer group, the queue and offset
//!   asked for, the response code and number of messages returned, and the verdicts
//!   of the plugin filters it ran;
//! * a master's transfer to a slave: `replicate {broker_name}` (client), with the
//!   slave, the offset and the bytes sent;
//! * a transaction: `end_transaction {topic}` (server: the producer's commit or
//!   rollback, with the resolution) and `check_transaction {topic}` (client: the
//!   broker's check-back), children of the context the half message carries.
//!
//! Without a tracer nothing here runs. With one, a request whose message carries no
//! sampled context costs one sampler decision (the broker starts traces of its own
//! only at `sample_ratio`, 0 by default).

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};

use common::properties::{find_in_encoded, keys};
use remoting::header::broker::SendMessageRequestHeader;
use telemetry::trace::{messaging_attributes, remote_parent, SdkSpan, SdkTracer};

use crate::context::BrokerContext;

/// The span of one send, the parent of its store span. The sampler decides first,
/// on the name alone; names and attributes are built only for a span it records.
pub fn start_send(tracer: &SdkTracer, ctx: &BrokerContext, h: &SendMessageRequestHeader, batch: bool) -> Context {
    let properties = h.properties.as_deref().unwrap_or("");
    let parent = remote_parent(find_in_encoded(properties, keys::TRACE_CONTEXT));
    let mut span = tracer.span_builder("store").with_kind(SpanKind::Server).start_with_context(tracer, &parent);
    if span.is_recording() {
        span.update_name(format!("store {}", h.topic));
        let mut attributes = messaging_attributes("receive", "store", &h.topic);
        attributes.push(KeyValue::new("messaging.rocketmq.client_group", h.producer_group.clone()));
        attributes.push(KeyValue::new("messaging.rocketmq.namespace", ctx.config.broker_cluster_name.clone()));
        attributes.push(KeyValue::new("messaging.batch", batch));
        if let Some(tag) = find_in_encoded(properties, keys::TAGS) {
            attributes.push(KeyValue::new("messaging.rocketmq.message.tag", tag.to_owned()));
        }
        if let Some(k) = find_in_encoded(properties, keys::KEYS) {
            let keys: Vec<opentelemetry::StringValue> =
                k.split(keys::KEY_SEPARATOR).map(|s| s.to_owned().into()).collect();
            attributes.push(KeyValue::new(
                "messaging.rocketmq.message.keys",
                opentelemetry::Value::Array(opentelemetry::Array::String(keys)),
            ));
        }
        if let Some(id) = find_in_encoded(properties, keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) {
            attributes.push(KeyValue::new("messaging.message.id", id.to_owned()));
        }
        span.set_attributes(attributes);
    }
    parent.with_span(span)
}

/// Ends a send's span with the response code it answered.
pub fn end_send(cx: &Context, code: i32, ok: bool) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("messaging.rocketmq.response_code", i64::from(code)));
    if !ok {
        span.set_status(Status::error(format!("response code {code}")));
    }
    span.end();
}

/// The span of a store put (append through its acknowledgement), child of the
/// current context's span — `None` unless that span is recorded.
pub fn start_append(tracer: &SdkTracer, ctx: &BrokerContext, topic: &str) -> Option<SdkSpan> {
    let parent = Context::current();
    if !parent.span().is_recording() {
        return None;
    }
    let attributes = vec![
        KeyValue::new("ferromq.flush_disk_type", format!("{:?}", ctx.config.store.flush_disk_type)),
        KeyValue::new("ferromq.broker_role", ctx.role.role().as_str()),
    ];
    Some(
        tracer
            .span_builder(format!("store.append {topic}"))
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent),
    )
}

/// A master's transfer of commit log to a slave: `replicate {broker_name}` (client),
/// a root span the sampler decides on (a transfer carries many messages' bytes),
/// from the write's start to its end.
pub fn record_transfer(tracer: &SdkTracer, broker_name: &str, t: &replication::Transfer) {
    let mut span = tracer
        .span_builder("replicate")
        .with_kind(SpanKind::Client)
        .with_start_time(t.started)
        .start_with_context(tracer, &Context::new());
    if !span.is_recording() {
        return;
    }
    span.update_name(format!("replicate {broker_name}"));
    span.set_attributes([
        KeyValue::new("messaging.system", "rocketmq"),
        KeyValue::new("server.address", t.slave.ip().to_string()),
        KeyValue::new("server.port", i64::from(t.slave.port())),
        KeyValue::new("ferromq.replication.offset", t.offset),
        KeyValue::new("ferromq.replication.bytes", t.bytes as i64),
    ]);
    span.end_with_timestamp(t.ended);
}

/// The span of one pull (a root span: a pull belongs to no message's trace).
pub fn start_pull(tracer: &SdkTracer, topic: &str, group: &str, queue_id: i32, offset: i64) -> Context {
    let mut span = tracer.span_builder("pull").with_kind(SpanKind::Server).start_with_context(tracer, &Context::new());
    if span.is_recording() {
        span.update_name(format!("pull {topic}"));
        let mut attributes = messaging_attributes("receive", "pull", topic);
        attributes.push(KeyValue::new("messaging.consumer.group.name", group.to_owned()));
        attributes.push(KeyValue::new("messaging.destination.partition.id", queue_id.to_string()));
        attributes.push(KeyValue::new("messaging.rocketmq.queue_offset", offset));
        span.set_attributes(attributes);
    }
    Context::new().with_span(span)
}

/// Adds a pull's plugin-filter verdicts to its span (when one is recorded):
/// messages the pre-filters rejected by tag, and of those read, how many the
/// filters kept, dropped and left undecided (policy `pause`).
pub fn record_plugin_verdicts(prefilter_rejected: usize, pass: &crate::filter::prepared::PluginPass) {
    let cx = Context::current();
    let span = cx.span();
    if !span.is_recording() {
        return;
    }
    let kept = pass.keep.iter().filter(|k| **k).count();
    let undecided = pass.keep.len() - pass.deliverable;
    span.set_attribute(KeyValue::new("ferromq.plugin.prefilter_rejected", prefilter_rejected as i64));
    span.set_attribute(KeyValue::new("ferromq.plugin.kept", kept as i64));
    span.set_attribute(KeyValue::new("ferromq.plugin.dropped", (pass.deliverable - kept) as i64));
    span.set_attribute(KeyValue::new("ferromq.plugin.undecided", undecided as i64));
}

/// Ends a pull's span: what it returned.
pub fn end_pull(cx: &Context, code: i32, messages: usize) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("messaging.rocketmq.response_code", i64::from(code)));
    span.set_attribute(KeyValue::new("messaging.batch.message_count", messages as i64));
    span.end();
}

/// The span of a transaction step on a half message: `end_transaction {topic}`
/// (server: the producer's commit or rollback) or `check_transaction {topic}` (client:
/// the broker asking the producer), child of the context the half message carries.
/// `None` unless it is recorded.
pub fn start_transaction(
    tracer: &SdkTracer,
    operation: &'static str,
    kind: SpanKind,
    half: &common::MessageExt,
    group: &str,
) -> Option<SdkSpan> {
    let parent = remote_parent(half.properties.get(keys::TRACE_CONTEXT));
    let mut span = tracer.span_builder(operation).with_kind(kind).start_with_context(tracer, &parent);
    if !span.is_recording() {
        return None;
    }
    let topic = half.properties.get(keys::REAL_TOPIC).unwrap_or(&half.topic);
    span.update_name(format!("{operation} {topic}"));
    let mut attributes = messaging_attributes("settle", operation, topic);
    attributes.push(KeyValue::new("messaging.rocketmq.client_group", group.to_owned()));
    if let Some(id) = half.properties.uniq_key() {
        attributes.push(KeyValue::new("messaging.message.id", id.to_owned()));
    }
    span.set_attributes(attributes);
    Some(span)
}
