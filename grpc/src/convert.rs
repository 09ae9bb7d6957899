//! Translations between the 5.x messages and the remoting protocol's: a gRPC
//! `Message` into a send header and body, a `TopicRouteData` into message queues.

use common::properties::{keys, Properties};
use common::route::TopicRouteData;
use common::sysflag::message as sysflag;
use remoting::header::broker::SendMessageRequestHeader;

use crate::pb::{self, Code, MessageType};
use crate::status::Failure;

/// The longest encoded properties a stored record can hold.
const MAX_PROPERTIES_LEN: usize = common::properties::MAX_PROPERTIES_LEN;

/// The template topic auto-creation copies (`TBW102`).
const DEFAULT_TOPIC: &str = "TBW102";

/// A topic's accepted message type: the `message.type` attribute RocketMQ 5 topics
/// carry. `None` (no attribute, or `MIXED`) accepts every type.
pub(crate) fn declared_type(attribute: Option<&str>) -> Option<MessageType> {
    match attribute?.trim().to_ascii_uppercase().as_str() {
        "NORMAL" => Some(MessageType::Normal),
        "FIFO" => Some(MessageType::Fifo),
        "DELAY" => Some(MessageType::Delay),
        "TRANSACTION" => Some(MessageType::Transaction),
        _ => None,
    }
}

/// The types a queue of a topic declared as `declared` accepts, as a route lists them.
pub(crate) fn accepted_types(declared: Option<MessageType>) -> Vec<i32> {
    match declared {
        Some(t) => vec![t as i32],
        None => [MessageType::Normal, MessageType::Fifo, MessageType::Delay, MessageType::Transaction]
            .iter()
            .map(|t| *t as i32)
            .collect(),
    }
}

/// The topic name a resource stands for: RocketMQ's namespaced name `ns%name` when
/// the resource has a namespace.
pub(crate) fn resource_name(r: Option<&pb::Resource>) -> Option<String> {
    let r = r?;
    if r.name.is_empty() {
        return None;
    }
    Some(if r.resource_namespace.is_empty() { r.name.clone() } else { format!("{}%{}", r.resource_namespace, r.name) })
}

/// Java's `String.hashCode`, which RocketMQ hashes message groups with, so a group
/// lands on the queue a Java-side selector would pick.
pub(crate) fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The queue a message of `group` goes to among `queues`.
pub(crate) fn queue_of_group(group: &str, queues: i32) -> i32 {
    if queues <= 0 {
        return -1;
    }
    (java_hash(group) % queues).abs()
}

/// What a send needs: the remoting header and the body.
pub(crate) struct Outgoing {
    pub header: SendMessageRequestHeader,
    pub body: bytes::Bytes,
    pub message_type: MessageType,
    pub message_id: String,
    /// The FIFO message group (`__SHARDINGKEY`), which picks the queue.
    pub group: Option<String>,
}

/// Checks a 5.x message and turns it into a remoting send of `topic`.
/// `producer_group` names the client for transactional messages (their check-back
/// finds the producer by it).
pub(crate) fn outgoing(
    msg: pb::Message,
    topic: String,
    producer_group: &str,
    max_body: usize,
) -> Result<Outgoing, Failure> {
    let sp =
        msg.system_properties.ok_or_else(|| Failure::new(Code::BadRequest, "the message has no system properties"))?;
    if msg.body.is_empty() {
        return Err(Failure::new(Code::MessageBodyEmpty, "the message body is empty"));
    }
    if msg.body.len() > max_body {
        return Err(Failure::new(
            Code::MessageBodyTooLarge,
            format!("the message body size {} exceeds the maximum {max_body} (maxMessageSize)", msg.body.len()),
        ));
    }
    let message_type = MessageType::try_from(sp.message_type).unwrap_or(MessageType::Unspecified);
    let group = sp.message_group.clone().filter(|g| !g.is_empty());
    let delivery_ms = sp.delivery_timestamp.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
    match message_type {
        MessageType::Normal if group.is_some() || delivery_ms.is_some() => {
            return Err(conflict("a NORMAL message carries neither a message group nor a delivery time"))
        }
        MessageType::Fifo if group.is_none() => return Err(conflict("a FIFO message needs a message group")),
        MessageType::Delay if delivery_ms.is_none() => return Err(conflict("a DELAY message needs a delivery time")),
        MessageType::Transaction if delivery_ms.is_some() => {
            return Err(conflict("a TRANSACTION message cannot have a delivery time"))
        }
        MessageType::Unspecified | MessageType::Lite | MessageType::Priority => {
            return Err(Failure::new(
                Code::Unsupported,
                format!("message type {} is not served by this broker", message_type.as_str_name()),
            ))
        }
        _ => {}
    }

    let mut props = Properties::new();
    for (k, v) in &msg.user_properties {
        if k.is_empty()
            || k.contains(common::properties::NAME_VALUE_SEPARATOR)
            || k.contains(common::properties::PROPERTY_SEPARATOR)
        {
            return Err(Failure::new(Code::IllegalMessagePropertyKey, format!("property key {k:?} is not allowed")));
        }
        props.insert(k, v);
    }
    if let Some(tag) = sp.tag.as_deref().filter(|t| !t.is_empty()) {
        if tag.trim().is_empty() || tag.contains('|') {
            return Err(Failure::new(Code::IllegalMessageTag, format!("tag {tag:?} is blank or contains '|'")));
        }
        props.insert(keys::TAGS, tag);
    }
    if !sp.keys.is_empty() {
        if sp.keys.iter().any(|k| k.trim().is_empty()) {
            return Err(Failure::new(Code::IllegalMessageKey, "a message key is blank"));
        }
        props.insert(keys::KEYS, sp.keys.join(keys::KEY_SEPARATOR));
    }
    if sp.message_id.is_empty() {
        return Err(Failure::new(Code::IllegalMessageId, "the message has no message id"));
    }
    props.insert(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &sp.message_id);
    if let Some(group) = &group {
        props.insert(keys::SHARDING_KEY, group);
    }
    if let Some(ms) = delivery_ms {
        props.insert(keys::TIMER_DELIVER_MS, ms.to_string());
    }
    if message_type == MessageType::Transaction {
        props.insert(keys::TRANSACTION_PREPARED, "true");
        props.insert(keys::PRODUCER_GROUP, producer_group);
        if let Some(d) = &sp.orphaned_transaction_recovery_duration {
            props.insert(keys::CHECK_IMMUNITY_TIME_IN_SECONDS, d.seconds.max(0).to_string());
        }
    }
    if let Some(tc) = sp.trace_context.as_deref().filter(|t| !t.is_empty()) {
        props.insert(keys::TRACE_CONTEXT, tc);
    }
    props.insert(keys::WAIT_STORE_MSG_OK, "true");
    let properties = props.encode();
    if properties.len() > MAX_PROPERTIES_LEN {
        return Err(Failure::new(
            Code::MessagePropertiesTooLarge,
            format!("the message properties take {} bytes, more than {MAX_PROPERTIES_LEN}", properties.len()),
        ));
    }

    let mut sys_flag = 0;
    if sp.body_encoding == pb::Encoding::Gzip as i32 {
        sys_flag |= sysflag::COMPRESSED;
    }
    if message_type == MessageType::Transaction {
        sys_flag |= sysflag::TRANSACTION_PREPARED_TYPE;
    }
    let born = sp
        .born_timestamp
        .as_ref()
        .map_or_else(common::time::now_ms, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
    let header = SendMessageRequestHeader {
        producer_group: producer_group.to_owned(),
        topic,
        default_topic: DEFAULT_TOPIC.to_owned(),
        default_topic_queue_nums: 4,
        queue_id: -1,
        sys_flag,
        born_timestamp: born,
        flag: 0,
        properties: Some(properties),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: None,
    };
    Ok(Outgoing { header, body: msg.body.into(), message_type, message_id: sp.message_id, group })
}

/// The transaction id a half message's SendResultEntry and check-back carry: where
/// the half message is (its offset message id) and its queue offset, which is what
/// END_TRANSACTION needs. Clients only echo it back, so it survives broker restarts.
pub(crate) fn transaction_id(offset_msg_id: &str, queue_offset: i64) -> String {
    format!("{offset_msg_id}-{queue_offset}")
}

/// The commit-log offset and queue offset of a [`transaction_id`].
pub(crate) fn parse_transaction_id(id: &str) -> Option<(i64, i64)> {
    let (msg_id, queue_offset) = id.rsplit_once('-')?;
    let (_, commit_log_offset) = common::msgid::decode_offset_msg_id(msg_id).ok()?;
    Some((commit_log_offset, queue_offset.parse().ok()?))
}

/// Properties the broker and the remoting protocol set, which a 5.x message carries in
/// its system properties or not at all; the rest are the user's.
const SYSTEM_KEYS: &[&str] = &[
    keys::TAGS,
    keys::KEYS,
    keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
    keys::WAIT_STORE_MSG_OK,
    keys::DELAY_TIME_LEVEL,
    keys::RETRY_TOPIC,
    keys::REAL_TOPIC,
    keys::REAL_QUEUE_ID,
    keys::TRANSACTION_PREPARED,
    keys::PRODUCER_GROUP,
    keys::MIN_OFFSET,
    keys::MAX_OFFSET,
    keys::MSG_REGION,
    keys::TRACE_SWITCH,
    keys::MAX_RECONSUME_TIMES,
    keys::CONSUME_START_TIMESTAMP,
    keys::TRANSACTION_PREPARED_QUEUE_OFFSET,
    keys::TRANSACTION_CHECK_TIMES,
    keys::CHECK_IMMUNITY_TIME_IN_SECONDS,
    keys::CLUSTER,
    keys::TRANSACTION_ID,
    keys::TIMER_DELIVER_MS,
    keys::TIMER_DELAY_SEC,
    keys::TIMER_DELAY_MS,
    keys::SHARDING_KEY,
    keys::TRACE_CONTEXT,
    keys::RECONSUME_TIME,
    keys::ORIGIN_MESSAGE_ID,
    keys::DLQ_ORIGIN_TOPIC,
    keys::DLQ_ORIGIN_MESSAGE_ID,
    common::pop::PROPERTY_POP_CK,
    common::pop::PROPERTY_FIRST_POP_TIME,
];

pub(crate) fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// A stored message as a 5.x client receives it, of type `message_type`.
pub(crate) fn incoming(m: &common::MessageExt, message_type: MessageType) -> pb::Message {
    let props = &m.properties;
    let compressed = m.sys_flag & sysflag::COMPRESSED != 0;
    let body = if compressed {
        // Stored deflated (zlib) by a remoting producer: inflate, so the client reads
        // the body it expects without knowing RocketMQ's compression.
        let mut out = Vec::new();
        match std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&m.body[..]), &mut out) {
            Ok(_) => out,
            Err(_) => m.body.to_vec(),
        }
    } else {
        m.body.to_vec()
    };
    let checksum = format!("{:08X}", crc32(&body));
    let system_properties = pb::SystemProperties {
        tag: props.get(keys::TAGS).map(str::to_owned),
        keys: props
            .get(keys::KEYS)
            .map(|k| k.split(' ').filter(|k| !k.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        message_id: m.msg_id(),
        body_digest: Some(pb::Digest { r#type: pb::DigestType::Crc32 as i32, checksum }),
        body_encoding: pb::Encoding::Identity as i32,
        message_type: message_type as i32,
        born_timestamp: Some(timestamp(m.born_timestamp)),
        born_host: m.born_host.ip().to_string(),
        store_timestamp: Some(timestamp(m.store_timestamp)),
        store_host: m.store_host.to_string(),
        queue_id: m.queue_id,
        queue_offset: Some(m.queue_offset),
        delivery_attempt: Some(m.reconsume_times + 1),
        message_group: props.get(keys::SHARDING_KEY).map(str::to_owned),
        trace_context: props.get(keys::TRACE_CONTEXT).map(str::to_owned),
        ..Default::default()
    };
    pb::Message {
        topic: Some(pb::Resource { resource_namespace: String::new(), name: m.topic.clone() }),
        user_properties: props
            .iter()
            .filter(|(k, _)| !SYSTEM_KEYS.contains(k))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        system_properties: Some(system_properties),
        body,
    }
}

fn crc32(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b);
    h.finalize()
}

fn conflict(why: &str) -> Failure {
    Failure::new(Code::MessagePropertyConflictWithType, why)
}

/// The message queues of a route, each pointing at the gRPC endpoint of the broker
/// that holds it (`endpoint_of` maps a broker's remoting address). Only masters
/// (broker id 0) carry queues, as RocketMQ's proxy answers.
pub(crate) fn queues(
    topic: &pb::Resource,
    route: &TopicRouteData,
    accepted: &[i32],
    endpoint_of: impl Fn(&str) -> Option<pb::Endpoints>,
) -> Vec<pb::MessageQueue> {
    let mut out = Vec::new();
    for qd in &route.queue_datas {
        let Some(bd) = route.broker_datas.iter().find(|b| b.broker_name == qd.broker_name) else { continue };
        let Some(endpoints) = bd.broker_addrs.get(&0).and_then(|a| endpoint_of(a)) else { continue };
        let broker = pb::Broker { name: qd.broker_name.clone(), id: 0, endpoints: Some(endpoints) };
        let readable = common::perm::is_readable(qd.perm);
        let writeable = common::perm::is_writeable(qd.perm);
        for id in 0..qd.read_queue_nums.max(qd.write_queue_nums) {
            let r = readable && id < qd.read_queue_nums;
            let w = writeable && id < qd.write_queue_nums;
            let permission = match (r, w) {
                (true, true) => pb::Permission::ReadWrite,
                (true, false) => pb::Permission::Read,
                (false, true) => pb::Permission::Write,
                (false, false) => pb::Permission::None,
            };
            out.push(pb::MessageQueue {
                topic: Some(topic.clone()),
                id,
                permission: permission as i32,
                broker: Some(broker.clone()),
                accept_message_types: accepted.to_vec(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: MessageType) -> pb::Message {
        pb::Message {
            topic: Some(pb::Resource { resource_namespace: String::new(), name: "T".into() }),
            user_properties: [("color".to_owned(), "red".to_owned())].into(),
            system_properties: Some(pb::SystemProperties {
                tag: Some("TagA".into()),
                keys: vec!["k1".into(), "k2".into()],
                message_id: "01ABC".into(),
                message_type: kind as i32,
                ..Default::default()
            }),
            body: b"hello".to_vec(),
        }
    }

    #[test]
    fn a_normal_message_carries_tag_keys_id_and_user_properties() {
        let out = outgoing(message(MessageType::Normal), "T".into(), "", 1024).unwrap();
        let props = Properties::decode(out.header.properties.as_deref().unwrap());
        assert_eq!(props.get(keys::TAGS), Some("TagA"));
        assert_eq!(props.get(keys::KEYS), Some("k1 k2"));
        assert_eq!(props.get(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX), Some("01ABC"));
        assert_eq!(props.get("color"), Some("red"));
        assert_eq!(props.get(keys::TRANSACTION_PREPARED), None);
        assert_eq!((out.header.queue_id, &out.body[..]), (-1, &b"hello"[..]));
    }

    #[test]
    fn types_and_their_properties_must_agree() {
        let mut fifo = message(MessageType::Fifo);
        assert_eq!(
            outgoing(fifo.clone(), "T".into(), "", 1024).err().unwrap().code,
            Code::MessagePropertyConflictWithType
        );
        fifo.system_properties.as_mut().unwrap().message_group = Some("g1".into());
        let out = outgoing(fifo, "T".into(), "", 1024).unwrap();
        assert_eq!(Properties::decode(out.header.properties.as_deref().unwrap()).get(keys::SHARDING_KEY), Some("g1"));

        let mut delay = message(MessageType::Delay);
        assert_eq!(
            outgoing(delay.clone(), "T".into(), "", 1024).err().unwrap().code,
            Code::MessagePropertyConflictWithType
        );
        delay.system_properties.as_mut().unwrap().delivery_timestamp =
            Some(prost_types::Timestamp { seconds: 10, nanos: 5_000_000 });
        let out = outgoing(delay, "T".into(), "", 1024).unwrap();
        assert_eq!(
            Properties::decode(out.header.properties.as_deref().unwrap()).get(keys::TIMER_DELIVER_MS),
            Some("10005")
        );

        let out = outgoing(message(MessageType::Transaction), "T".into(), "P", 1024).unwrap();
        let props = Properties::decode(out.header.properties.as_deref().unwrap());
        assert_eq!((props.get(keys::TRANSACTION_PREPARED), props.get(keys::PRODUCER_GROUP)), (Some("true"), Some("P")));
        assert_ne!(out.header.sys_flag & sysflag::TRANSACTION_PREPARED_TYPE, 0);
    }

    #[test]
    fn bad_messages_get_the_code_for_their_fault() {
        let code = |m: pb::Message, max| outgoing(m, "T".into(), "", max).err().map(|f| f.code);
        assert_eq!(code(message(MessageType::Normal), 4), Some(Code::MessageBodyTooLarge));
        let mut empty = message(MessageType::Normal);
        empty.body.clear();
        assert_eq!(code(empty, 1024), Some(Code::MessageBodyEmpty));
        let mut bad_tag = message(MessageType::Normal);
        bad_tag.system_properties.as_mut().unwrap().tag = Some("a|b".into());
        assert_eq!(code(bad_tag, 1024), Some(Code::IllegalMessageTag));
        let mut no_props = message(MessageType::Normal);
        no_props.system_properties = None;
        assert_eq!(code(no_props, 1024), Some(Code::BadRequest));
        let mut huge = message(MessageType::Normal);
        huge.user_properties.insert("big".into(), "x".repeat(MAX_PROPERTIES_LEN));
        assert_eq!(code(huge, 1024), Some(Code::MessagePropertiesTooLarge));
        assert_eq!(code(message(MessageType::Unspecified), 1024), Some(Code::Unsupported));
    }

    #[test]
    fn message_groups_hash_as_java_strings_do() {
        // "hello".hashCode() in Java is 99162322.
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(queue_of_group("hello", 8), 99_162_322 % 8);
        assert!((0..4).contains(&queue_of_group("a-group-whose-hash-is-negative-perhaps", 4)));
        assert_eq!(queue_of_group("g", 0), -1);
    }

    #[test]
    fn declared_types_limit_what_a_route_accepts() {
        assert_eq!(accepted_types(declared_type(Some("FIFO"))), vec![MessageType::Fifo as i32]);
        assert_eq!(accepted_types(declared_type(Some("MIXED"))).len(), 4);
        assert_eq!(accepted_types(declared_type(None)).len(), 4);
    }

    #[test]
    fn transaction_ids_carry_what_end_transaction_needs() {
        let addr: std::net::SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let offset_msg_id = common::msgid::offset_msg_id(addr, 123_456);
        let id = transaction_id(&offset_msg_id, 42);
        assert_eq!(parse_transaction_id(&id), Some((123_456, 42)));
        assert_eq!(parse_transaction_id("made-up"), None);
        assert_eq!(parse_transaction_id(&offset_msg_id), None);
    }

    #[test]
    fn a_stored_message_reaches_a_5x_client_with_user_properties_apart_and_a_digest() {
        let mut props = Properties::new();
        for (k, v) in [
            (keys::TAGS, "Tx"),
            (keys::KEYS, "a b"),
            (keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "ID1"),
            (keys::PRODUCER_GROUP, "P"),
            ("color", "red"),
        ] {
            props.insert(k, v);
        }
        let addr: std::net::SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let ext = common::MessageExt {
            topic: "T".into(),
            queue_id: 1,
            flag: 0,
            queue_offset: 7,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 1_500,
            born_host: addr,
            store_timestamp: 2_000,
            store_host: addr,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body_crc: 0,
            store_size: 0,
            properties: props,
            body: bytes::Bytes::from_static(b"hello"),
        };
        let m = incoming(&ext, MessageType::Transaction);
        assert_eq!(m.user_properties.len(), 1);
        assert_eq!(m.user_properties.get("color").map(String::as_str), Some("red"));
        let sp = m.system_properties.unwrap();
        assert_eq!(
            (sp.tag.as_deref(), sp.keys.as_slice(), sp.message_id.as_str()),
            (Some("Tx"), &["a".to_owned(), "b".to_owned()][..], "ID1")
        );
        // zlib.crc32(b"hello") = 0x3610A686.
        assert_eq!(sp.body_digest.unwrap().checksum, "3610A686");
        assert_eq!(sp.born_timestamp, Some(prost_types::Timestamp { seconds: 1, nanos: 500_000_000 }));
        assert_eq!((sp.queue_id, sp.queue_offset), (1, Some(7)));
    }
}
