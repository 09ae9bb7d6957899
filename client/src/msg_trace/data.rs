//! RocketMQ's message-trace data (`TraceDataEncoder`): what a trace message's body
//! holds. Records are separated by `\u{2}`, fields by `\u{1}`, in the order RocketMQ's
//! Java client writes them, so its tools (and the dashboard) read ours and we read
//! those of the Java and C++ clients:
//!
//! | type | fields after the type |
//! |---|---|
//! | `Pub` | timestamp, region, producer group, topic, msgId, tags, keys, store host, body length, cost ms, message type, offsetMsgId, success |
//! | `SubBefore` | timestamp, region, consumer group, request id, msgId, retry times, keys |
//! | `SubAfter` | request id, msgId, cost ms, success, keys, context code, timestamp |
//! | `EndTransaction` | timestamp, region, producer group, topic, msgId, tags, keys, store host, message type, transaction id, state, from check-back |
//!
//! Older writers leave off trailing fields (the C++ client's `SubAfter` stops at keys,
//! its `Pub` may stop at the message type); a missing optional field reads as `None`.
//! An absent tag or key is written `null`, as the Java client writes it: Java's
//! decoder splits away trailing empty fields and would then fail on the record.

use std::fmt::Write as _;

/// The trace topic of RocketMQ's Java client (and of `traceTopicEnable` brokers).
pub const DEFAULT_TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// The C++ client's trace topic prefix; its region id follows.
pub const CPP_TRACE_TOPIC_PREFIX: &str = "rmq_sys_TRACE_DATA_";

const CONTENT: char = '\u{1}';
const FIELD: char = '\u{2}';
const NULL: &str = "null";

/// RocketMQ's `MessageType` (its ordinal is what the data holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMessageType {
    Normal = 0,
    TransactionHalf = 1,
    TransactionCommit = 2,
    Delay = 3,
    Order = 4,
}

impl TraceMessageType {
    fn from_ordinal(n: u8) -> Option<Self> {
        Some(match n {
            0 => Self::Normal,
            1 => Self::TransactionHalf,
            2 => Self::TransactionCommit,
            3 => Self::Delay,
            4 => Self::Order,
            _ => return None,
        })
    }
}

/// A send: one per message the broker acknowledged (`TraceType.Pub`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubRecord {
    pub timestamp: i64,
    pub region_id: String,
    pub group: String,
    pub topic: String,
    pub msg_id: String,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub store_host: String,
    pub body_length: i64,
    pub cost_ms: i64,
    pub msg_type: TraceMessageType,
    pub offset_msg_id: Option<String>,
    pub success: bool,
}

/// A message handed to a consumer's listener (`TraceType.SubBefore`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubBeforeRecord {
    pub timestamp: i64,
    pub region_id: String,
    pub group: String,
    /// Shared by the `SubBefore` and `SubAfter` records of one listener call.
    pub request_id: String,
    pub msg_id: String,
    pub retry_times: i32,
    pub keys: Option<String>,
}

/// The listener's verdict on a message (`TraceType.SubAfter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAfterRecord {
    pub request_id: String,
    pub msg_id: String,
    pub cost_ms: i64,
    pub success: bool,
    pub keys: Option<String>,
    /// RocketMQ's `ConsumeReturnType` ordinal (0 success, 1 time-out, 2 exception,
    /// 3 null return, 4 failed).
    pub context_code: Option<i32>,
    pub timestamp: Option<i64>,
}

/// A transaction's end, by the producer or in answer to a check-back
/// (`TraceType.EndTransaction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTransactionRecord {
    pub timestamp: i64,
    pub region_id: String,
    pub group: String,
    pub topic: String,
    pub msg_id: String,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub store_host: String,
    pub msg_type: TraceMessageType,
    pub transaction_id: String,
    /// `COMMIT_MESSAGE`, `ROLLBACK_MESSAGE` or `UNKNOW` (RocketMQ's spelling).
    pub state: String,
    pub from_check: bool,
}

/// One record of a trace message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceRecord {
    Pub(PubRecord),
    SubBefore(SubBeforeRecord),
    SubAfter(SubAfterRecord),
    EndTransaction(EndTransactionRecord),
}

impl TraceRecord {
    /// The id of the message the record is about.
    pub fn msg_id(&self) -> &str {
        match self {
            Self::Pub(r) => &r.msg_id,
            Self::SubBefore(r) => &r.msg_id,
            Self::SubAfter(r) => &r.msg_id,
            Self::EndTransaction(r) => &r.msg_id,
        }
    }

    /// When the record's event happened (ms), if it says.
    pub fn timestamp(&self) -> Option<i64> {
        match self {
            Self::Pub(r) => Some(r.timestamp),
            Self::SubBefore(r) => Some(r.timestamp),
            Self::SubAfter(r) => r.timestamp.filter(|t| *t > 0),
            Self::EndTransaction(r) => Some(r.timestamp),
        }
    }

    /// Where the record's event falls in a message's life: a send, its
    /// transaction's end, a delivery, its outcome.
    pub fn causal_rank(&self) -> u8 {
        match self {
            Self::Pub(_) => 0,
            Self::EndTransaction(_) => 1,
            Self::SubBefore(_) => 2,
            Self::SubAfter(_) => 3,
        }
    }

    /// The message's keys (space-separated), if it has any.
    pub fn keys(&self) -> Option<&str> {
        match self {
            Self::Pub(r) => r.keys.as_deref(),
            Self::SubBefore(r) => r.keys.as_deref(),
            Self::SubAfter(r) => r.keys.as_deref(),
            Self::EndTransaction(r) => r.keys.as_deref(),
        }
    }

    /// Appends the record, terminated, to a trace message body.
    pub fn encode_into(&self, out: &mut String) {
        let mut w = Writer(out);
        match self {
            Self::Pub(r) => {
                w.s("Pub").n(r.timestamp).s(&r.region_id).s(&r.group).s(&r.topic).s(&r.msg_id);
                w.o(&r.tags).o(&r.keys).s(&r.store_host).n(r.body_length).n(r.cost_ms).n(r.msg_type as i64);
                w.s(r.offset_msg_id.as_deref().unwrap_or("")).last(r.success);
            }
            Self::SubBefore(r) => {
                w.s("SubBefore").n(r.timestamp).s(&r.region_id).s(&r.group).s(&r.request_id).s(&r.msg_id);
                w.n(i64::from(r.retry_times)).last(r.keys.as_deref().unwrap_or(NULL));
            }
            Self::SubAfter(r) => {
                w.s("SubAfter").s(&r.request_id).s(&r.msg_id).n(r.cost_ms).s(r.success).o(&r.keys);
                w.n(i64::from(r.context_code.unwrap_or(0))).last(r.timestamp.unwrap_or(0));
            }
            Self::EndTransaction(r) => {
                w.s("EndTransaction").n(r.timestamp).s(&r.region_id).s(&r.group).s(&r.topic).s(&r.msg_id);
                w.o(&r.tags).o(&r.keys).s(&r.store_host).n(r.msg_type as i64).s(&r.transaction_id).s(&r.state);
                w.last(r.from_check);
            }
        }
    }
}

/// Writes fields with their separators.
struct Writer<'a>(&'a mut String);

impl Writer<'_> {
    fn s(&mut self, v: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "{v}{CONTENT}");
        self
    }

    fn n(&mut self, v: i64) -> &mut Self {
        self.s(v)
    }

    fn o(&mut self, v: &Option<String>) -> &mut Self {
        self.s(v.as_deref().unwrap_or(NULL))
    }

    fn last(&mut self, v: impl std::fmt::Display) {
        let _ = write!(self.0, "{v}{FIELD}");
    }
}

/// Encodes records into one trace message body.
pub fn encode(records: &[TraceRecord]) -> String {
    let mut out = String::with_capacity(records.len() * 160);
    for r in records {
        r.encode_into(&mut out);
    }
    out
}

/// Decodes a trace message body. Records of an unknown type or with fields that do
/// not parse are skipped: one bad writer must not hide the others' records.
pub fn decode(body: &str) -> Vec<TraceRecord> {
    body.split(FIELD)
        .filter(|r| !r.is_empty())
        .filter_map(|r| decode_record(&r.split(CONTENT).collect::<Vec<_>>()))
        .collect()
}

fn decode_record(f: &[&str]) -> Option<TraceRecord> {
    let text = |i: usize| f.get(i).map(|s| (*s).to_owned());
    let opt = |i: usize| f.get(i).filter(|s| !s.is_empty() && **s != NULL).map(|s| (*s).to_owned());
    let num = |i: usize| f.get(i)?.trim().parse::<i64>().ok();
    let flag = |i: usize| f.get(i).map(|s| s.trim().eq_ignore_ascii_case("true"));
    let msg_type = |i: usize| TraceMessageType::from_ordinal(f.get(i)?.trim().parse().ok()?);
    Some(match *f.first()? {
        "Pub" => {
            // Java: 13 fields end with success; 14 or more put the offsetMsgId first.
            let (offset_msg_id, success) = if f.len() == 13 { (None, flag(12)?) } else { (opt(12), flag(13)?) };
            TraceRecord::Pub(PubRecord {
                timestamp: num(1)?,
                region_id: text(2)?,
                group: text(3)?,
                topic: text(4)?,
                msg_id: text(5)?,
                tags: opt(6),
                keys: opt(7),
                store_host: text(8)?,
                body_length: num(9)?,
                cost_ms: num(10)?,
                msg_type: msg_type(11)?,
                offset_msg_id,
                success,
            })
        }
        "SubBefore" => TraceRecord::SubBefore(SubBeforeRecord {
            timestamp: num(1)?,
            region_id: text(2)?,
            group: text(3)?,
            request_id: text(4)?,
            msg_id: text(5)?,
            retry_times: i32::try_from(num(6)?).ok()?,
            keys: opt(7),
        }),
        "SubAfter" => TraceRecord::SubAfter(SubAfterRecord {
            request_id: text(1)?,
            msg_id: text(2)?,
            cost_ms: num(3)?,
            success: flag(4)?,
            keys: opt(5),
            context_code: num(6).and_then(|n| i32::try_from(n).ok()),
            timestamp: num(7),
        }),
        "EndTransaction" => TraceRecord::EndTransaction(EndTransactionRecord {
            timestamp: num(1)?,
            region_id: text(2)?,
            group: text(3)?,
            topic: text(4)?,
            msg_id: text(5)?,
            tags: opt(6),
            keys: opt(7),
            store_host: text(8)?,
            msg_type: msg_type(9)?,
            transaction_id: text(10)?,
            state: text(11)?,
            from_check: flag(12)?,
        }),
        _ => return None,
    })
}

/// The keys a trace message is indexed under (RocketMQ's `TraceTransferBean`
/// trans keys): every record's msgId and keys, each once, space-separated as
/// RocketMQ's `KEYS` property separates keys.
pub fn index_keys(records: &[TraceRecord]) -> String {
    let mut keys: Vec<&str> = Vec::new();
    for r in records {
        for k in std::iter::once(r.msg_id()).chain(r.keys().into_iter().flat_map(|k| k.split(' '))) {
            if !k.is_empty() && !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish() -> TraceRecord {
        TraceRecord::Pub(PubRecord {
            timestamp: 1_700_000_000_000,
            region_id: "DefaultRegion".into(),
            group: "PG".into(),
            topic: "T".into(),
            msg_id: "7F00000100002A9F0000000000000001".into(),
            tags: Some("TagA".into()),
            keys: None,
            store_host: "127.0.0.1:10911".into(),
            body_length: 11,
            cost_ms: 3,
            msg_type: TraceMessageType::Normal,
            offset_msg_id: Some("7F00000100002A9F0000000000000000".into()),
            success: true,
        })
    }

    #[test]
    fn a_pub_record_is_written_as_the_java_client_writes_it() {
        let body = encode(&[publish()]);
        assert_eq!(
            body,
            "Pub\u{1}1700000000000\u{1}DefaultRegion\u{1}PG\u{1}T\u{1}7F00000100002A9F0000000000000001\u{1}TagA\u{1}null\u{1}127.0.0.1:10911\u{1}11\u{1}3\u{1}0\u{1}7F00000100002A9F0000000000000000\u{1}true\u{2}"
        );
        assert_eq!(decode(&body), vec![publish()]);
    }

    #[test]
    fn every_record_type_round_trips_in_one_body() {
        let records = vec![
            publish(),
            TraceRecord::SubBefore(SubBeforeRecord {
                timestamp: 5,
                region_id: "DefaultRegion".into(),
                group: "CG".into(),
                request_id: "R1".into(),
                msg_id: "M1".into(),
                retry_times: 2,
                keys: Some("k1 k2".into()),
            }),
            TraceRecord::SubAfter(SubAfterRecord {
                request_id: "R1".into(),
                msg_id: "M1".into(),
                cost_ms: 7,
                success: false,
                keys: Some("k1 k2".into()),
                context_code: Some(4),
                timestamp: Some(12),
            }),
            TraceRecord::EndTransaction(EndTransactionRecord {
                timestamp: 9,
                region_id: "DefaultRegion".into(),
                group: "TG".into(),
                topic: "T".into(),
                msg_id: "M2".into(),
                tags: None,
                keys: None,
                store_host: "127.0.0.1:10911".into(),
                msg_type: TraceMessageType::TransactionHalf,
                transaction_id: "X".into(),
                state: "COMMIT_MESSAGE".into(),
                from_check: true,
            }),
        ];
        assert_eq!(decode(&encode(&records)), records);
        assert_eq!(index_keys(&records), "7F00000100002A9F0000000000000001 M1 k1 k2 M2");
    }

    #[test]
    fn the_cpp_clients_shorter_records_read_and_bad_ones_are_skipped() {
        // rocketmq-client-cpp 2.x: a SubAfter without context code or timestamp.
        let body = "SubAfter\u{1}\u{1}M1\u{1}4\u{1}true\u{1}\u{2}Nope\u{1}x\u{2}Pub\u{1}notanumber\u{2}";
        let records = decode(body);
        assert_eq!(records.len(), 1);
        let TraceRecord::SubAfter(r) = &records[0] else { panic!("{records:?}") };
        assert_eq!(
            (r.msg_id.as_str(), r.cost_ms, r.success, r.keys.as_deref(), r.timestamp),
            ("M1", 4, true, None, None)
        );
    }
}
