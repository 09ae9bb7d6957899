//! Byte fixtures: frames and bodies exactly as RocketMQ peers put them on the wire.
//!
//! The files in `tests/fixtures/` are written by `tests/fixtures/gen/GenFixtures.java`
//! (the Java 4.9.8 framing, fastjson header layout, ROCKETMQ binary header and
//! `Deflater(BEST_COMPRESSION)` register body, plus the Go and C++ header layouts),
//! from the examples of `remoting-protocol.md` §2 and §6. The tests read the committed
//! bytes, never the generator.
//!
//! Every test checks two directions:
//! * the fixture decodes to exact typed values (and every strict prefix of a frame is
//!   "incomplete", never an error);
//! * what we emit for the same values is strict JSON (serde_json into a `Value`,
//!   no fastjson leniency) carrying every key the strictest client needs (§7.3), and
//!   compact. Where the peer is Java, our re-encoding is byte-for-byte Java's.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use bytes::BytesMut;
use common::route::{BrokerData, ClusterInfo, QueueData, TopicRouteData};
use common::subscription::{
    ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel, ProducerData, SubscriptionData,
};
use common::topic::{TopicConfig, TopicFilterType};
use common::Properties;
use remoting::body::{DataVersion, RegisterBrokerBody, TopicConfigSerializeWrapper};
use remoting::code::RequestCode;
use remoting::codec::{encode_to_bytes, RemotingCodec};
use remoting::command::{Body, LanguageCode, RemotingCommand, SerializeType};
use remoting::header::broker::{SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader};
use remoting::ResponseCode;
use serde_json::{json, Value};
use tokio_util::codec::Decoder;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A frame split by hand, independently of the codec under test.
struct RawFrame<'a> {
    ser_type: u8,
    header: &'a [u8],
    body: &'a [u8],
}

fn split_frame(bytes: &[u8]) -> RawFrame<'_> {
    let total = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
    assert_eq!(total + 4, bytes.len(), "total_len counts everything after itself");
    let mark = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
    let header_len = (mark & 0x00FF_FFFF) as usize;
    RawFrame { ser_type: (mark >> 24) as u8, header: &bytes[8..8 + header_len], body: &bytes[8 + header_len..] }
}

/// Decodes a fixture that holds exactly one frame. Every strict prefix must be
/// "incomplete" (`Ok(None)`): the frame can arrive split anywhere.
fn decode(bytes: &[u8]) -> RemotingCommand {
    for cut in 0..bytes.len() {
        let mut partial = BytesMut::from(&bytes[..cut]);
        assert!(matches!(RemotingCodec.decode(&mut partial), Ok(None)), "a {cut}-byte prefix is not incomplete");
    }
    let mut buf = BytesMut::from(bytes);
    let cmd = RemotingCodec.decode(&mut buf).expect("fixture decodes").expect("fixture is a whole frame");
    assert!(buf.is_empty(), "decoder consumed exactly one frame");
    cmd
}

/// True when `json` has whitespace outside string literals (Go's route parser
/// breaks on it).
fn has_whitespace_outside_strings(json: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for &c in json {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if c == b'"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            return true;
        }
    }
    false
}

/// Strict parse of a body we emit, checking it is compact.
fn strict_body(bytes: &[u8]) -> Value {
    assert!(!has_whitespace_outside_strings(bytes), "not compact: {}", String::from_utf8_lossy(bytes));
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not strict JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The JSON header we emit for `cmd`, parsed strictly, after checking the keys the
/// Rust crate's header struct has no default for and that extFields are strings.
fn emitted_json_header(cmd: &RemotingCommand) -> Value {
    let mut cmd = cmd.clone();
    cmd.serialize_type = SerializeType::Json;
    let bytes = encode_to_bytes(&cmd).unwrap();
    let raw = split_frame(&bytes);
    assert_eq!(raw.ser_type, 0);
    let header = strict_body(raw.header);
    for key in ["code", "language", "version", "opaque", "flag"] {
        assert!(header.get(key).is_some(), "emitted header lacks `{key}`: {header}");
    }
    for key in ["code", "version", "opaque", "flag"] {
        assert!(header[key].is_i64(), "`{key}` must be a JSON number: {header}");
    }
    assert_eq!(header["serializeTypeCurrentRPC"], "JSON");
    let language = header["language"].as_str().expect("language is a name");
    assert!(LanguageCode::from_name(language).is_some(), "`{language}` is one of the 13 Java names");
    if let Some(ext) = header.get("extFields") {
        for (k, v) in ext.as_object().expect("extFields is an object") {
            assert!(v.is_string(), "extFields.{k} must be a string: {header}");
        }
    }
    header
}

fn java_send_properties() -> &'static str {
    "TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}UNIQ_KEY\u{1}7F0000010B2C18B4AAC2437E9C870000"
}

fn java_send_header() -> SendMessageRequestHeaderV2 {
    SendMessageRequestHeaderV2 {
        producer_group: "PG".into(),
        topic: "TopicTest".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 2,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some(java_send_properties().into()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: Some("broker-a".into()),
    }
}

#[test]
fn java_send_message_v2_request() {
    let bytes = fixture("java_send_message_v2_request.bin");
    let raw = split_frame(&bytes);
    assert_eq!(raw.ser_type, 0, "JSON header");
    assert_eq!(raw.body, b"Hello RocketMQ 0");
    assert!(raw.header.windows(6).any(|w| w == br"\u0001"), "property separators are JSON-escaped");

    let cmd = decode(&bytes);
    assert_eq!(cmd.request_code(), RequestCode::SEND_MESSAGE_V2);
    assert_eq!((cmd.language, cmd.version, cmd.opaque, cmd.flag), (LanguageCode::Java, 409, 17, 0));
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.serialize_type, SerializeType::Json);
    assert!(!cmd.is_response() && !cmd.is_oneway());
    assert_eq!(cmd.body_bytes(), &b"Hello RocketMQ 0"[..]);
    assert_eq!(cmd.ext_fields.len(), 13);

    let header: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
    assert_eq!(header, java_send_header());
    let props = Properties::decode(header.properties.as_deref().unwrap());
    assert_eq!(props.tags(), Some("TagA"));
    assert_eq!(props.get("WAIT"), Some("true"));
    assert_eq!(props.uniq_key(), Some("7F0000010B2C18B4AAC2437E9C870000"));

    assert_eq!(&encode_to_bytes(&cmd).unwrap()[..], &bytes[..], "re-encoding reproduces Java's bytes");
    let ours = emitted_json_header(&cmd);
    assert_eq!(ours["extFields"]["i"], java_send_properties());
}

#[test]
fn java_send_message_v2_success_response() {
    let bytes = fixture("java_send_message_v2_response.bin");
    assert!(split_frame(&bytes).body.is_empty());
    let cmd = decode(&bytes);
    assert_eq!(cmd.response_code(), ResponseCode::SUCCESS);
    assert!(cmd.is_response());
    assert_eq!((cmd.language, cmd.version, cmd.opaque, cmd.flag), (LanguageCode::Java, 409, 17, 1));
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.body, Body::Empty);
    let header: SendMessageResponseHeader = cmd.decode_header().unwrap();
    assert_eq!(
        header,
        SendMessageResponseHeader {
            msg_id: "C0A8000100002A9F0000000000012F40".into(),
            queue_id: 2,
            queue_offset: 57,
            transaction_id: None,
            batch_uniq_id: None,
        }
    );
    assert_eq!(cmd.ext_fields.get("MSG_REGION"), Some("DefaultRegion"));
    assert_eq!(cmd.ext_fields.get("TRACE_ON"), Some("true"));
    assert_eq!(&encode_to_bytes(&cmd).unwrap()[..], &bytes[..], "re-encoding reproduces Java's bytes");

    // The response a broker builds from typed values carries what Java's carries.
    let mut ours = RemotingCommand::response_with(ResponseCode::SUCCESS, &header);
    ours.ext_fields.insert("MSG_REGION", "DefaultRegion");
    ours.ext_fields.insert("TRACE_ON", "true");
    ours.opaque = 17;
    let mut ours = emitted_json_header(&ours);
    let mut java = strict_body(split_frame(&bytes).header);
    // The language names the sender; everything else must match Java's answer.
    ours.as_object_mut().unwrap().remove("language");
    java.as_object_mut().unwrap().remove("language");
    assert_eq!(ours, java);
}

#[test]
fn java_heart_beat_request_has_no_ext_fields() {
    let bytes = fixture("java_heart_beat_request.bin");
    let raw = split_frame(&bytes);
    assert!(!raw.header.windows(9).any(|w| w == b"extFields"), "Java omits a null extFields");
    let cmd = decode(&bytes);
    assert_eq!(cmd.request_code(), RequestCode::HEART_BEAT);
    assert_eq!((cmd.opaque, cmd.flag, cmd.version), (3, 0, 409));
    assert!(cmd.ext_fields.is_empty());
    let body: HeartbeatData = remoting::json::from_slice(&cmd.body_bytes()).unwrap();
    assert_eq!(body, java_heartbeat());
    assert_eq!(&encode_to_bytes(&cmd).unwrap()[..], &bytes[..], "re-encoding reproduces Java's bytes");
}

#[test]
fn rocketmq_binary_header_request() {
    let bytes = fixture("java_send_message_v2_request_rocketmq.bin");
    let raw = split_frame(&bytes);
    assert_eq!(raw.ser_type, 1, "ROCKETMQ header");
    // Fixed part: code i16, language u8, version i16, opaque i32, flag i32, remark len i32.
    assert_eq!(&raw.header[..17], &[0x01, 0x36, 0, 0x01, 0x99, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0, 0]);
    let cmd = decode(&bytes);
    assert_eq!(cmd.serialize_type, SerializeType::RocketMq);
    assert_eq!(cmd.request_code(), RequestCode::SEND_MESSAGE_V2);
    assert_eq!((cmd.language, cmd.version, cmd.opaque, cmd.flag), (LanguageCode::Java, 409, 18, 0));
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.body_bytes(), &b"Hello RocketMQ 1"[..]);
    assert_eq!(cmd.decode_header::<SendMessageRequestHeaderV2>().unwrap(), java_send_header());
    // Raw separators (not JSON escapes) in the binary header.
    assert!(raw.header.windows(6).any(|w| w == b"TAGS\x01T"));

    // Same extFields as the JSON form of the same request.
    let json = decode(&fixture("java_send_message_v2_request.bin"));
    let as_map = |c: &RemotingCommand| {
        c.ext_fields.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<BTreeMap<_, _>>()
    };
    assert_eq!(as_map(&cmd), as_map(&json));

    assert_eq!(&encode_to_bytes(&cmd).unwrap()[..], &bytes[..], "re-encoding reproduces Java's bytes");
    emitted_json_header(&cmd);
}

#[test]
fn rocketmq_binary_header_error_response_with_remark() {
    let bytes = fixture("java_send_error_response_rocketmq.bin");
    let raw = split_frame(&bytes);
    assert_eq!(raw.ser_type, 1);
    let remark = "topic[TopicX] not exist, apply first please!";
    assert_eq!(&raw.header[13..17], &(remark.len() as i32).to_be_bytes());
    assert_eq!(&raw.header[raw.header.len() - 4..], &[0, 0, 0, 0], "empty extFields: length 0");
    let cmd = decode(&bytes);
    assert_eq!(cmd.response_code(), ResponseCode::TOPIC_NOT_EXIST);
    assert!(cmd.is_response());
    assert_eq!(cmd.opaque, 18);
    assert_eq!(cmd.remark.as_deref(), Some(remark));
    assert!(cmd.ext_fields.is_empty());
    assert_eq!(cmd.body, Body::Empty);
    assert_eq!(&encode_to_bytes(&cmd).unwrap()[..], &bytes[..], "re-encoding reproduces Java's bytes");
    let ours = emitted_json_header(&cmd);
    assert_eq!(ours["remark"], remark);
}

#[test]
fn go_send_message_header_with_full_names_and_empty_remark() {
    let bytes = fixture("go_send_message_request.bin");
    let raw = split_frame(&bytes);
    assert!(!raw.header.windows(23).any(|w| w == b"serializeTypeCurrentRPC"));
    let cmd = decode(&bytes);
    assert_eq!(cmd.request_code(), RequestCode::SEND_MESSAGE);
    assert_eq!((cmd.language, cmd.version, cmd.opaque, cmd.flag), (LanguageCode::Go, 317, 5, 0));
    assert_eq!(cmd.remark, None, "an empty remark is no remark");
    assert_eq!(cmd.body_bytes(), &b"Hello from Go"[..]);
    let header: SendMessageRequestHeader = cmd.decode_header().unwrap();
    assert_eq!(
        header,
        SendMessageRequestHeader {
            producer_group: "PG_GO".into(),
            topic: "TopicTest".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 1,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_321,
            flag: 0,
            properties: Some("UNIQ_KEY\u{1}0A0000050F2A000000002C8A60C00001\u{2}TAGS\u{1}TagA\u{2}".into()),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(false),
            max_reconsume_times: Some(0),
            broker_name: Some("broker-a".into()),
        }
    );
    let props = Properties::decode(header.properties.as_deref().unwrap());
    assert_eq!(props.len(), 2, "Go's trailing separator adds no entry");
    assert_eq!(props.tags(), Some("TagA"));
    assert_eq!(props.uniq_key(), Some("0A0000050F2A000000002C8A60C00001"));

    // What we would send back to Go: strict, with serializeTypeCurrentRPC, no null remark.
    let mut resp = RemotingCommand::success();
    resp.opaque = cmd.opaque;
    let ours = emitted_json_header(&resp);
    assert_eq!(ours["opaque"], 5);
    assert!(ours.get("remark").is_none());
}

#[test]
fn cpp_header_with_numbers_and_empty_acl_keys() {
    let bytes = fixture("cpp_send_message_v2_request.bin");
    let raw = split_frame(&bytes);
    assert_eq!(raw.header.last(), Some(&b'\n'), "jsoncpp's FastWriter ends with a newline");
    let cmd = decode(&bytes);
    assert_eq!(cmd.request_code(), RequestCode::SEND_MESSAGE_V2);
    assert_eq!((cmd.language, cmd.version, cmd.opaque, cmd.flag), (LanguageCode::Cpp, 333, 42, 0));
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.body_bytes(), &b"Hello from C++"[..]);
    // Numbers become their decimal strings; empty ACL values are kept as given.
    assert_eq!(cmd.ext_fields.get("d"), Some("4"));
    assert_eq!(cmd.ext_fields.get("l"), Some("16"));
    for key in ["AccessKey", "Signature", "OnsChannel"] {
        assert_eq!(cmd.ext_fields.get(key), Some(""), "{key}");
    }
    let header: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
    assert_eq!(
        header,
        SendMessageRequestHeaderV2 {
            producer_group: "PG_CPP".into(),
            topic: "TopicTest".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 3,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_789,
            flag: 0,
            properties: Some(
                "KEYS\u{1}order-1\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}0A000007709A00000000000000000002\u{2}".into()
            ),
            reconsume_times: Some(0),
            // Booleans through an ostream are "0": Boolean.parseBoolean("0") is false.
            unit_mode: Some(false),
            max_reconsume_times: Some(16),
            batch: Some(false),
            broker_name: None,
        }
    );
    // Re-emitted, every value is a string (cpp's asString() and the Rust crate insist).
    let ours = emitted_json_header(&cmd);
    assert_eq!(ours["extFields"]["d"], "4");
    assert_eq!(ours["extFields"]["e"], "3");
    assert_eq!(ours["extFields"]["h"], "0");
}

fn java_heartbeat() -> HeartbeatData {
    HeartbeatData {
        client_id: "192.168.0.9@4711#93847561234".into(),
        producer_data_set: vec![ProducerData { group_name: "CLIENT_INNER_PRODUCER".into() }],
        consumer_data_set: vec![ConsumerData {
            group_name: "CG".into(),
            consume_type: ConsumeType::ConsumePassively,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            subscription_data_set: vec![
                SubscriptionData {
                    class_filter_mode: false,
                    topic: "TopicTest".into(),
                    sub_string: "TagA".into(),
                    tags_set: vec!["TagA".into()],
                    code_set: vec![2_598_919],
                    sub_version: 1_700_000_000_123,
                    expression_type: "TAG".into(),
                },
                SubscriptionData {
                    class_filter_mode: false,
                    topic: "%RETRY%CG".into(),
                    sub_string: "*".into(),
                    tags_set: vec![],
                    code_set: vec![],
                    sub_version: 1_700_000_000_124,
                    expression_type: "TAG".into(),
                },
            ],
            unit_mode: false,
        }],
    }
}

/// Emits `hb`, parses it strictly and checks the enum fields are Java names.
fn check_emitted_heartbeat(hb: &HeartbeatData) {
    let bytes = remoting::json::to_vec(hb).unwrap();
    let v = strict_body(&bytes);
    for consumer in v["consumerDataSet"].as_array().unwrap() {
        for key in ["consumeType", "messageModel", "consumeFromWhere"] {
            assert!(consumer[key].is_string(), "{key} is written as its Java name: {v}");
        }
        for sub in consumer["subscriptionDataSet"].as_array().unwrap() {
            assert!(sub["subVersion"].is_i64(), "subVersion is a JSON number: {v}");
        }
    }
    let back: HeartbeatData = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(&back, hb);
}

#[test]
fn heartbeat_body_from_java() {
    let hb: HeartbeatData = remoting::json::from_slice(&fixture("heartbeat_java.json")).unwrap();
    assert_eq!(hb, java_heartbeat());
    assert_eq!(
        hb.consumer_data_set[0].subscription_data_set[0],
        SubscriptionData::new("TopicTest", "TagA", "TAG", 1_700_000_000_123)
    );
    check_emitted_heartbeat(&hb);
}

#[test]
fn heartbeat_body_from_cpp_with_ordinals_and_string_sub_version() {
    let hb: HeartbeatData = remoting::json::from_slice(&fixture("heartbeat_cpp.json")).unwrap();
    assert_eq!(hb.client_id, "10.0.0.7@28841");
    assert_eq!(hb.producer_data_set, vec![ProducerData { group_name: "PG_CPP".into() }]);
    assert_eq!(hb.consumer_data_set.len(), 1);
    let c = &hb.consumer_data_set[0];
    assert_eq!(c.group_name, "CG_CPP");
    assert_eq!(c.consume_from_where, ConsumeFromWhere::FirstOffset, "ordinal 4");
    assert_eq!(c.consume_type, ConsumeType::ConsumePassively, "ordinal 1");
    assert_eq!(c.message_model, MessageModel::Clustering, "ordinal 1");
    assert!(!c.unit_mode, "absent unitMode defaults to false");
    assert_eq!(
        c.subscription_data_set,
        vec![
            SubscriptionData {
                class_filter_mode: false,
                topic: "TopicTest".into(),
                sub_string: "TagA".into(),
                tags_set: vec!["TagA".into()],
                code_set: vec![2_598_919],
                sub_version: 1_700_000_000_456,
                expression_type: String::new(),
            },
            SubscriptionData {
                class_filter_mode: false,
                topic: "%RETRY%CG_CPP".into(),
                sub_string: "*".into(),
                tags_set: vec![],
                code_set: vec![],
                sub_version: 1_700_000_000_457,
                expression_type: String::new(),
            },
        ]
    );
    assert!(c.subscription_data_set.iter().all(SubscriptionData::is_tag_type), "absent expressionType means TAG");
    assert!(c.subscription_data_set[1].subscribes_all());
    check_emitted_heartbeat(&hb);
}

fn route() -> TopicRouteData {
    TopicRouteData {
        order_topic_conf: None,
        queue_datas: vec![QueueData {
            broker_name: "broker-a".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: common::perm::READ_WRITE,
            topic_sys_flag: 0,
        }],
        broker_datas: vec![BrokerData {
            cluster: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_addrs: [(0, "192.168.0.1:10911".into()), (1, "192.168.0.2:10911".into())].into(),
            zone_name: None,
            enable_acting_master: false,
        }],
        filter_server_table: BTreeMap::new(),
    }
}

/// Emits `route` and checks what strict clients need (§7.3).
fn emitted_route(route: &TopicRouteData) -> Value {
    let bytes = remoting::json::to_vec(route).unwrap();
    let v = strict_body(&bytes);
    assert_eq!(v["filterServerTable"], json!({}), "the Rust crate requires filterServerTable");
    for b in v["brokerDatas"].as_array().unwrap() {
        assert_eq!(b["enableActingMaster"], false, "the Rust crate requires enableActingMaster");
        assert!(b["brokerAddrs"].is_object());
    }
    for q in v["queueDatas"].as_array().unwrap() {
        assert!(q["topicSysFlag"].is_i64(), "every QueueData carries topicSysFlag");
    }
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(r#""brokerAddrs":{"0":"192.168.0.1:10911","1":"192.168.0.2:10911"}"#), "{text}");
    let back: TopicRouteData = serde_json::from_str(&text).expect("a strict serde client reads it");
    assert_eq!(&back, route);
    v
}

#[test]
fn route_data_standard_form() {
    let bytes = fixture("route_standard.json");
    let strict: TopicRouteData = serde_json::from_slice(&bytes).expect("the standard form is JSON");
    assert_eq!(strict, route());
    let lenient: TopicRouteData = remoting::json::from_slice(&bytes).unwrap();
    assert_eq!(lenient, route());
    assert_eq!(lenient.broker("broker-a").unwrap().master_addr(), Some("192.168.0.1:10911"));
    // What we emit is, as a JSON value, exactly the standard form.
    assert_eq!(emitted_route(&lenient), strict_body(&bytes));
}

#[test]
fn route_data_legacy_form_with_unquoted_keys() {
    let bytes = fixture("route_legacy_unquoted_keys.json");
    assert!(serde_json::from_slice::<Value>(&bytes).is_err(), "bare numeric keys are not JSON");
    let legacy: TopicRouteData = remoting::json::from_slice(&bytes).unwrap();
    assert_eq!(legacy, route(), "a 4.x BrokerData without enableActingMaster reads as false");
    // Whatever form came in, we emit the standard one.
    assert_eq!(emitted_route(&legacy), strict_body(&fixture("route_standard.json")));
}

#[test]
fn cluster_info_with_unquoted_keys() {
    let bytes = fixture("cluster_info.json");
    assert!(serde_json::from_slice::<Value>(&bytes).is_err(), "bare numeric keys are not JSON");
    let info: ClusterInfo = remoting::json::from_slice(&bytes).unwrap();
    let broker = |name: &str, addrs: &[(u64, &str)]| BrokerData {
        cluster: "DefaultCluster".into(),
        broker_name: name.into(),
        broker_addrs: addrs.iter().map(|(id, a)| (*id, (*a).to_owned())).collect(),
        zone_name: None,
        enable_acting_master: false,
    };
    assert_eq!(
        info,
        ClusterInfo {
            broker_addr_table: [
                ("broker-a".to_owned(), broker("broker-a", &[(0, "192.168.0.1:10911")])),
                ("broker-b".to_owned(), broker("broker-b", &[(0, "192.168.0.3:10911"), (1, "192.168.0.4:10911")])),
            ]
            .into(),
            cluster_addr_table: [("DefaultCluster".to_owned(), ["broker-a".to_owned(), "broker-b".to_owned()].into())]
                .into(),
        }
    );
    let ours = strict_body(&remoting::json::to_vec(&info).unwrap());
    assert_eq!(
        ours["brokerAddrTable"]["broker-b"]["brokerAddrs"],
        json!({"0": "192.168.0.3:10911", "1": "192.168.0.4:10911"})
    );
    assert_eq!(ours["clusterAddrTable"]["DefaultCluster"], json!(["broker-a", "broker-b"]));
}

fn register_body(topics: &[(&str, i32, i32)]) -> RegisterBrokerBody {
    RegisterBrokerBody {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: topics
                .iter()
                .map(|&(name, queues, perm)| {
                    let tc = TopicConfig {
                        topic_filter_type: TopicFilterType::SingleTag,
                        ..TopicConfig::new(name, queues, perm)
                    };
                    (name.to_owned(), tc)
                })
                .collect(),
            data_version: DataVersion { timestamp: 1_700_000_000_000, counter: 12, state_version: None },
        },
        filter_server_list: vec![],
    }
}

#[test]
fn register_broker_body_plain() {
    let bytes = fixture("register_broker_body.json");
    let body = RegisterBrokerBody::decode(&bytes, false).unwrap();
    assert_eq!(body, register_body(&[("TopicTest", 4, 6)]));
    let ours = body.encode(false).unwrap();
    assert_eq!(strict_body(&ours), strict_body(&bytes), "we emit the same document Java does");
}

/// Inflates a zlib stream and splits RegisterBrokerBody's compressed plaintext into
/// its pieces: DataVersion JSON, topic config strings, filter server list JSON.
fn compressed_pieces(body: &[u8]) -> (Value, Vec<String>, Value) {
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(body).read_to_end(&mut plain).unwrap();
    fn int(cur: &mut &[u8]) -> i32 {
        let v = i32::from_be_bytes(cur[..4].try_into().unwrap());
        *cur = &cur[4..];
        v
    }
    fn chunk(cur: &mut &[u8]) -> Vec<u8> {
        let n = usize::try_from(int(cur)).unwrap();
        let (c, rest) = cur.split_at(n);
        *cur = rest;
        c.to_vec()
    }
    let mut cur = &plain[..];
    let data_version = serde_json::from_slice(&chunk(&mut cur)).unwrap();
    let n = int(&mut cur);
    let mut topics: Vec<String> = (0..n).map(|_| String::from_utf8(chunk(&mut cur)).unwrap()).collect();
    topics.sort();
    let filters = serde_json::from_slice(&chunk(&mut cur)).unwrap();
    assert!(cur.is_empty(), "nothing after the filter server list");
    (data_version, topics, filters)
}

#[test]
fn register_broker_body_compressed_as_java_deflates_it() {
    let bytes = fixture("register_broker_body_compressed.bin");
    // zlib wrapper: CM 8 / 32 KiB window, FLEVEL 3 = Deflater.BEST_COMPRESSION.
    assert_eq!(&bytes[..2], &[0x78, 0xDA]);
    let body = RegisterBrokerBody::decode(&bytes, true).unwrap();
    let expected = register_body(&[("TopicTest", 4, 6), ("TBW102", 8, 7), ("%RETRY%CG", 1, 6)]);
    assert_eq!(body, expected);

    // Ours inflates to the same pieces as Java's (the deflate bytes differ between
    // zlib implementations; the plaintext is what the name server reads).
    let ours = body.encode(true).unwrap();
    assert_eq!(RegisterBrokerBody::decode(&ours, true).unwrap(), expected);
    let (java_dv, java_topics, java_filters) = compressed_pieces(&bytes);
    let (our_dv, our_topics, our_filters) = compressed_pieces(&ours);
    assert_eq!(java_dv, json!({"counter": 12, "timestamp": 1_700_000_000_000_i64}));
    assert_eq!(our_dv, java_dv);
    assert_eq!(java_topics, ["%RETRY%CG 1 1 6 SINGLE_TAG", "TBW102 8 8 7 SINGLE_TAG", "TopicTest 4 4 6 SINGLE_TAG"]);
    assert_eq!(our_topics, java_topics);
    assert_eq!((our_filters, java_filters), (json!([]), json!([])));
}
