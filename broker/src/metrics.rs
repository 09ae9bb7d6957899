//! The broker's metrics, with RocketMQ 5's names and labels (its
//! `BrokerMetricsManager`), so RocketMQ dashboards and alerts read them unchanged:
//! `rocketmq_messages_in_total`, `rocketmq_throughput_in_total` and
//! `rocketmq_message_size` per topic and message type, `rocketmq_messages_out_total`
//! and `rocketmq_throughput_out_total` per topic and group, connection, topic and
//! group counts, consumer lag, storage size and backlogs; plus FerroMQ's own under
//! `ferromq_`: plugin calls, errors by kind and breaker state, disk usage, replication
//! lag. `rocketmq_rpc_latency` is recorded by `telemetry::RpcMetrics` on the
//! dispatcher.
//!
//! Sends and pulls record into instruments bound once per topic (or topic and group):
//! a read-locked map lookup and a few atomic updates per request. The gauges
//! (`gauges.rs`) are read only when a scrape asks. With metrics off ([`BrokerMetrics::disabled`]) every
//! record call returns at once.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Histogram, Meter};
use opentelemetry::KeyValue;
use parking_lot::RwLock;

use common::properties::keys;
use common::topic;

/// RocketMQ's bucket bounds for `rocketmq_message_size`, in bytes.
const MESSAGE_SIZE_BUCKETS: [f64; 6] =
    [1024.0, 4096.0, 512.0 * 1024.0, 1024.0 * 1024.0, 2.0 * 1024.0 * 1024.0, 4.0 * 1024.0 * 1024.0];

/// RocketMQ's `message_type` label (`TopicMessageType`, lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Normal = 0,
    Fifo = 1,
    Delay = 2,
    Transaction = 3,
}

impl MessageType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Fifo => "fifo",
            Self::Delay => "delay",
            Self::Transaction => "transaction",
        }
    }

    /// RocketMQ's rule (`BrokerMetricsManager.getMessageType`): a prepared
    /// transaction, else a sharding key, else any delay or timer property.
    pub fn of(properties: &common::properties::Properties) -> Self {
        if properties.get(keys::TRANSACTION_PREPARED).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            Self::Transaction
        } else if properties.get(keys::SHARDING_KEY).is_some() {
            Self::Fifo
        } else if [
            "__STARTDELIVERTIME",
            keys::DELAY_TIME_LEVEL,
            keys::TIMER_DELIVER_MS,
            keys::TIMER_DELAY_SEC,
            keys::TIMER_DELAY_MS,
        ]
        .iter()
        .any(|k| properties.get(k).is_some())
        {
            Self::Delay
        } else {
            Self::Normal
        }
    }
}

/// A consumer group whose name starts with RocketMQ's `CID_RMQ_SYS_` prefix.
pub(crate) fn is_system_group(group: &str) -> bool {
    group.get(..12).is_some_and(|p| p.eq_ignore_ascii_case("CID_RMQ_SYS_"))
}

/// Instruments bound to one topic and message type.
struct InBound {
    messages: BoundCounter<u64>,
    bytes: BoundCounter<u64>,
    size: BoundHistogram<u64>,
}

/// Instruments bound to one topic and consumer group.
struct OutBound {
    messages: BoundCounter<u64>,
    bytes: BoundCounter<u64>,
}

struct Instruments {
    messages_in: Counter<u64>,
    throughput_in: Counter<u64>,
    message_size: Histogram<u64>,
    messages_out: Counter<u64>,
    throughput_out: Counter<u64>,
    /// topic → instruments per message type, bound at the type's first message (an
    /// unused type exports no series).
    topics_in: RwLock<HashMap<String, Arc<[OnceLock<InBound>; 4]>>>,
    /// topic → group → bound instruments (looked up by `&str`, no allocation).
    topics_out: RwLock<HashMap<String, HashMap<String, Arc<OutBound>>>>,
}

/// The broker's request metrics; see the module docs.
pub struct BrokerMetrics {
    instruments: Option<Instruments>,
}

impl BrokerMetrics {
    /// Records nothing.
    pub fn disabled() -> Self {
        Self { instruments: None }
    }

    pub fn new(meter: &Meter) -> Self {
        let instruments = Instruments {
            messages_in: meter
                .u64_counter("rocketmq_messages_in_total")
                .with_description("Total number of incoming messages")
                .build(),
            throughput_in: meter
                .u64_counter("rocketmq_throughput_in_total")
                .with_description("Total traffic of incoming messages")
                .build(),
            message_size: meter
                .u64_histogram("rocketmq_message_size")
                .with_description("Incoming messages size")
                .with_boundaries(MESSAGE_SIZE_BUCKETS.to_vec())
                .build(),
            messages_out: meter
                .u64_counter("rocketmq_messages_out_total")
                .with_description("Total number of outgoing messages")
                .build(),
            throughput_out: meter
                .u64_counter("rocketmq_throughput_out_total")
                .with_description("Total traffic of outgoing messages")
                .build(),
            topics_in: RwLock::new(HashMap::new()),
            topics_out: RwLock::new(HashMap::new()),
        };
        Self { instruments: Some(instruments) }
    }

    pub fn enabled(&self) -> bool {
        self.instruments.is_some()
    }

    /// Messages stored for `topic` (the topic the producer named): `sizes` holds each
    /// message's body size, as RocketMQ counts them.
    pub fn record_in(&self, topic: &str, message_type: MessageType, sizes: impl IntoIterator<Item = u64>) {
        let Some(i) = &self.instruments else { return };
        let types = i.topics_in.read().get(topic).cloned();
        let types = types.unwrap_or_else(|| i.topics_in.write().entry(topic.to_owned()).or_default().clone());
        let b = types[message_type as usize].get_or_init(|| {
            let attrs = [
                KeyValue::new("topic", topic.to_owned()),
                KeyValue::new("message_type", message_type.as_str()),
                KeyValue::new("is_system", topic::is_system_topic(topic)),
            ];
            InBound {
                messages: i.messages_in.bind(&attrs),
                bytes: i.throughput_in.bind(&attrs),
                size: i.message_size.bind(&attrs[..2]),
            }
        });
        let (mut n, mut total) = (0, 0);
        for size in sizes {
            b.size.record(size);
            n += 1;
            total += size;
        }
        b.messages.add(n);
        b.bytes.add(total);
    }

    /// Messages a pull of `group` returned from `topic`.
    pub fn record_out(&self, topic: &str, group: &str, messages: u64, bytes: u64) {
        let Some(i) = &self.instruments else { return };
        if messages == 0 {
            return;
        }
        let bound = i.topics_out.read().get(topic).and_then(|groups| groups.get(group)).cloned();
        let bound = bound.unwrap_or_else(|| {
            let attrs = [
                KeyValue::new("topic", topic.to_owned()),
                KeyValue::new("consumer_group", group.to_owned()),
                KeyValue::new("is_retry", topic::is_retry_topic(topic)),
                KeyValue::new("is_system", topic::is_system_topic(topic) || is_system_group(group)),
            ];
            let b = Arc::new(OutBound { messages: i.messages_out.bind(&attrs), bytes: i.throughput_out.bind(&attrs) });
            let mut table = i.topics_out.write();
            table.entry(topic.to_owned()).or_default().entry(group.to_owned()).or_insert(b).clone()
        });
        bound.messages.add(messages);
        bound.bytes.add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::properties::Properties;

    #[test]
    fn message_types_follow_rocketmq() {
        let of = |s: &str| MessageType::of(&Properties::decode(s));
        assert_eq!(of(""), MessageType::Normal);
        assert_eq!(of("TRAN_MSG\u{1}true\u{2}DELAY\u{1}3"), MessageType::Transaction);
        assert_eq!(of("__SHARDINGKEY\u{1}k\u{2}DELAY\u{1}3"), MessageType::Fifo);
        assert_eq!(of("DELAY\u{1}3"), MessageType::Delay);
        assert_eq!(of("TIMER_DELIVER_MS\u{1}1"), MessageType::Delay);
        assert_eq!(of("__STARTDELIVERTIME\u{1}1"), MessageType::Delay);
    }

    #[test]
    fn system_groups_are_recognised_by_prefix() {
        assert!(is_system_group("CID_RMQ_SYS_TRANS"));
        assert!(is_system_group("cid_rmq_sys_x"));
        assert!(!is_system_group("CID_APP"));
        assert!(!is_system_group("G"));
    }
}
