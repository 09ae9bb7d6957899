//! The remoting POP codes at the wire level (POP_MESSAGE, ACK_MESSAGE,
//! CHANGE_MESSAGE_INVISIBLETIME) against a broker on a loopback port: hiding,
//! acking, reviving with `reconsumeTimes` + 1, long polling, orderly holds, and
//! clear refusals of bad requests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use common::pop::{self, ExtraInfo, PopAnswer};
use common::properties::{keys, Properties};
use common::subscription::SubscriptionGroupConfig;
use common::topic::TopicConfig;
use common::{perm, MessageExt, ResponseCode};
use remoting::header::broker::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader,
};
use remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode};

const BROKER_NAME: &str = "broker-pop";

fn config(dir: &std::path::Path) -> config::BrokerConfig {
    let mut c = config::BrokerConfig {
        bind_address: [127, 0, 0, 1].into(),
        broker_ip1: Some("127.0.0.1".into()),
        broker_name: BROKER_NAME.into(),
        listen_port: 0,
        ha_listen_port: 0,
        grpc_server_port: -1,
        ..config::BrokerConfig::default()
    };
    c.store.store_path_root_dir = dir.to_owned();
    c.store.mapped_file_size_commit_log = bytesize::ByteSize::mib(4);
    c.store.disk_space_warning_level_ratio = 1.0;
    c.store.disk_space_clean_forcibly_ratio = 1.0;
    c.store.disk_max_used_space_ratio = 95;
    c
}

struct Wire {
    client: RemotingClient,
    addr: String,
}

/// One popped message: its decoded form and its handle.
struct Popped {
    msg: MessageExt,
    extra: ExtraInfo,
}

impl Wire {
    async fn call(&self, cmd: RemotingCommand) -> RemotingCommand {
        self.client.invoke(&self.addr, cmd, Duration::from_secs(30)).await.expect("the broker answers")
    }

    async fn pop(&self, h: &PopMessageRequestHeader) -> (ResponseCode, Vec<Popped>) {
        let resp = self.call(RemotingCommand::request_with(RequestCode::POP_MESSAGE, h)).await;
        let code = resp.response_code();
        if code != ResponseCode::SUCCESS {
            return (code, Vec::new());
        }
        let head: PopMessageResponseHeader = resp.decode_header().expect("a pop answer's header");
        let answer = PopAnswer::new(
            head.pop_time,
            head.invisible_time,
            head.revive_qid,
            head.start_offset_info.as_deref(),
            head.order_count_info.as_deref(),
        );
        let body = resp.body.to_bytes();
        let msgs = common::record::decode_all(&body, true).expect("records");
        let popped = msgs
            .into_iter()
            .map(|msg| {
                let extra = answer
                    .extra_info(
                        BROKER_NAME,
                        &msg.topic,
                        msg.queue_id,
                        msg.queue_offset,
                        msg.properties.get(pop::PROPERTY_POP_CK),
                    )
                    .expect("every message has a handle");
                Popped { msg, extra }
            })
            .collect();
        (code, popped)
    }

    /// Acks as RocketMQ's client does: on the topic the handle names.
    async fn ack(&self, group: &str, topic: &str, p: &Popped) -> ResponseCode {
        let h = AckMessageRequestHeader {
            consumer_group: group.into(),
            topic: pop::real_topic(topic, group, &p.extra.retry_mark),
            queue_id: p.extra.queue_id,
            extra_info: p.extra.to_string(),
            offset: p.extra.queue_offset,
        };
        self.call(RemotingCommand::request_with(RequestCode::ACK_MESSAGE, &h)).await.response_code()
    }
}

fn pop_header(group: &str, topic: &str, invisible_ms: i64, poll_ms: i64) -> PopMessageRequestHeader {
    PopMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id: -1,
        max_msg_nums: 32,
        invisible_time: invisible_ms,
        poll_time: poll_ms,
        born_time: common::time::now_ms(),
        init_mode: pop::INIT_MODE_MIN,
        exp_type: Some("TAG".into()),
        exp: Some("*".into()),
        order: None,
        attempt_id: None,
    }
}

async fn put(ctx: &broker::BrokerContext, topic: &str, queue_id: i32, body: &str, tag: &str) {
    let mut props = Properties::new();
    props.insert(keys::TAGS, tag);
    let put = store::PutMessage::new(topic, queue_id, Bytes::from(body.to_owned())).with_properties(props.encode());
    assert!(ctx.store.put(put).await.status.is_stored());
}

fn bodies(p: &[Popped]) -> Vec<String> {
    let mut b: Vec<String> = p.iter().map(|p| String::from_utf8_lossy(&p.msg.body).into_owned()).collect();
    b.sort();
    b
}

async fn start() -> (tempfile::TempDir, broker::Broker, Wire) {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker::Broker::start(config(dir.path()), &config::PluginsConfig::default()).await.unwrap();
    let wire =
        Wire { client: RemotingClient::new(ClientConfig::default(), None), addr: broker.local_addr().to_string() };
    (dir, broker, wire)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popped_messages_hide_until_acked_and_come_back_once_with_reconsume_times_raised() {
    let (_dir, broker, wire) = start().await;
    let ctx = broker.context().clone();
    ctx.topics.upsert(TopicConfig::new("PopT", 2, perm::READ_WRITE));
    for i in 0..10 {
        put(&ctx, "PopT", i % 2, &format!("m{i}"), if i == 3 { "TagB" } else { "TagA" }).await;
    }

    // A tag filter: TagB stays behind, everything else is popped and hidden.
    let mut h = pop_header("G", "PopT", 1000, 0);
    h.exp = Some("TagA".into());
    let (code, first) = wire.pop(&h).await;
    assert_eq!(code, ResponseCode::SUCCESS);
    assert_eq!(bodies(&first), ["m0", "m1", "m2", "m4", "m5", "m6", "m7", "m8", "m9"]);
    assert!(first.iter().all(|p| p.msg.reconsume_times == 0 && p.msg.topic == "PopT"));
    let (code, again) = wire.pop(&h).await;
    assert_eq!(code, ResponseCode::PULL_NOT_FOUND, "hidden messages are not popped twice");
    assert!(again.is_empty());

    // Ack all but m5.
    for p in first.iter().filter(|p| &p.msg.body[..] != b"m5") {
        assert_eq!(wire.ack("G", "PopT", p).await, ResponseCode::SUCCESS);
    }
    // m5 comes back when its second of invisibility ends, once, one delivery later.
    let (code, revived) = wire.pop(&pop_header("G", "PopT", 60_000, 10_000)).await;
    assert_eq!(code, ResponseCode::SUCCESS);
    assert_eq!(bodies(&revived), ["m5"]);
    let m5 = &revived[0];
    assert_eq!(m5.msg.reconsume_times, 1);
    assert_eq!(m5.msg.topic, "PopT", "a retry goes out under its original topic");
    assert_eq!(m5.extra.retry_mark, "1", "its handle names the retry topic");
    assert_eq!(
        m5.msg.properties.uniq_key(),
        first.iter().find(|p| &p.msg.body[..] == b"m5").unwrap().msg.properties.uniq_key()
    );
    assert_eq!(wire.ack("G", "PopT", m5).await, ResponseCode::SUCCESS);

    // Nothing else comes back within twice the invisibility.
    let started = Instant::now();
    let (code, none) = wire.pop(&pop_header("G", "PopT", 1000, 2500)).await;
    assert_eq!(code, ResponseCode::POLLING_TIMEOUT, "{:?}", bodies(&none));
    assert!(started.elapsed() >= Duration::from_millis(2400), "the pop waited for its poll time");
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_invisibility_and_a_long_poll_woken_by_a_send() {
    let (_dir, broker, wire) = start().await;
    let ctx = broker.context().clone();
    ctx.topics.upsert(TopicConfig::new("PopC", 1, perm::READ_WRITE));

    // A pop that waits is answered by the message sent meanwhile.
    let waiting = {
        let (client, addr) = (wire.client.clone(), wire.addr.clone());
        let cmd = RemotingCommand::request_with(RequestCode::POP_MESSAGE, &pop_header("GC", "PopC", 60_000, 20_000));
        tokio::spawn(async move { client.invoke(&addr, cmd, Duration::from_secs(30)).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctx.holds.parked() == 0 {
        assert!(Instant::now() < deadline, "the pop never waited");
        tokio::task::yield_now().await;
    }
    let sent = Instant::now();
    put(&ctx, "PopC", 0, "late", "T").await;
    let resp = waiting.await.unwrap().unwrap();
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert!(sent.elapsed() < Duration::from_secs(5), "woken by the arrival, not the poll time");
    let head: PopMessageResponseHeader = resp.decode_header().unwrap();
    let answer =
        PopAnswer::new(head.pop_time, head.invisible_time, head.revive_qid, head.start_offset_info.as_deref(), None);
    let extra = answer.extra_info(BROKER_NAME, "PopC", 0, 0, None).unwrap();

    // Hidden for a minute, then made visible again in 300 ms.
    let change = ChangeInvisibleTimeRequestHeader {
        consumer_group: "GC".into(),
        topic: "PopC".into(),
        queue_id: 0,
        extra_info: extra.to_string(),
        offset: 0,
        invisible_time: 300,
    };
    let resp = wire.call(RemotingCommand::request_with(RequestCode::CHANGE_MESSAGE_INVISIBLETIME, &change)).await;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    let changed: ChangeInvisibleTimeResponseHeader = resp.decode_header().unwrap();
    assert_eq!(changed.invisible_time, 300);
    let (code, back) = wire.pop(&pop_header("GC", "PopC", 60_000, 10_000)).await;
    assert_eq!(code, ResponseCode::SUCCESS);
    assert_eq!(bodies(&back), ["late"]);
    assert_eq!(back[0].msg.reconsume_times, 1);

    // The old handle no longer names a hidden message: acking it changes nothing.
    let stale = AckMessageRequestHeader {
        consumer_group: "GC".into(),
        topic: "PopC".into(),
        queue_id: 0,
        extra_info: extra.to_string(),
        offset: 0,
    };
    assert_eq!(
        wire.call(RemotingCommand::request_with(RequestCode::ACK_MESSAGE, &stale)).await.response_code(),
        ResponseCode::SUCCESS
    );
    assert_eq!(wire.ack("GC", "PopC", &back[0]).await, ResponseCode::SUCCESS);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_pop_holds_its_queue_until_acked() {
    let (_dir, broker, wire) = start().await;
    let ctx = broker.context().clone();
    ctx.topics.upsert(TopicConfig::new("PopO", 1, perm::READ_WRITE));
    ctx.groups.upsert(SubscriptionGroupConfig { consume_message_orderly: true, ..SubscriptionGroupConfig::new("GO") });
    for i in 0..3 {
        put(&ctx, "PopO", 0, &format!("o{i}"), "T").await;
    }
    let (code, first) = wire.pop(&pop_header("GO", "PopO", 800, 0)).await;
    assert_eq!(code, ResponseCode::SUCCESS);
    let order: Vec<i64> = first.iter().map(|p| p.msg.queue_offset).collect();
    assert_eq!(order, [0, 1, 2], "in queue order");
    assert!(first.iter().all(|p| p.extra.is_order()));
    assert_eq!(wire.ack("GO", "PopO", &first[0]).await, ResponseCode::SUCCESS);
    let (code, _) = wire.pop(&pop_header("GO", "PopO", 800, 0)).await;
    assert_eq!(code, ResponseCode::PULL_NOT_FOUND, "the queue is held while o1 and o2 are not acked");

    // The hold expires: o1 and o2 again, counted, nothing of o0.
    let (code, again) = wire.pop(&pop_header("GO", "PopO", 60_000, 10_000)).await;
    assert_eq!(code, ResponseCode::SUCCESS);
    let offsets: Vec<i64> = again.iter().map(|p| p.msg.queue_offset).collect();
    assert_eq!(offsets, [1, 2]);
    for p in &again {
        assert_eq!(wire.ack("GO", "PopO", p).await, ResponseCode::SUCCESS);
    }
    assert_eq!(ctx.offsets.query("GO", "PopO", 0), 3, "acks move the group's offset");
    let (code, _) = wire.pop(&pop_header("GO", "PopO", 60_000, 0)).await;
    assert_eq!(code, ResponseCode::PULL_NOT_FOUND);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pop_requests_are_refused_with_a_reason() {
    let (_dir, broker, wire) = start().await;
    let ctx = broker.context().clone();
    ctx.topics.upsert(TopicConfig::new("PopB", 1, perm::READ_WRITE));
    let mut cases: BTreeMap<&str, (RemotingCommand, ResponseCode)> = BTreeMap::new();
    let mut too_many = pop_header("GB", "PopB", 1000, 0);
    too_many.max_msg_nums = 100;
    cases.insert(
        "too many",
        (RemotingCommand::request_with(RequestCode::POP_MESSAGE, &too_many), ResponseCode::INVALID_PARAMETER),
    );
    cases.insert(
        "no topic",
        (
            RemotingCommand::request_with(RequestCode::POP_MESSAGE, &pop_header("GB", "Nope", 1000, 0)),
            ResponseCode::TOPIC_NOT_EXIST,
        ),
    );
    let mut bad_queue = pop_header("GB", "PopB", 1000, 0);
    bad_queue.queue_id = 7;
    cases.insert(
        "bad queue",
        (RemotingCommand::request_with(RequestCode::POP_MESSAGE, &bad_queue), ResponseCode::SYSTEM_ERROR),
    );
    let mut bad_sql = pop_header("GB", "PopB", 1000, 0);
    bad_sql.exp_type = Some("SQL92".into());
    bad_sql.exp = Some("a >".into());
    let bad_ack = AckMessageRequestHeader {
        consumer_group: "GB".into(),
        topic: "PopB".into(),
        queue_id: 0,
        extra_info: "not an extraInfo".into(),
        offset: 0,
    };
    cases.insert(
        "bad handle",
        (RemotingCommand::request_with(RequestCode::ACK_MESSAGE, &bad_ack), ResponseCode::INVALID_PARAMETER),
    );
    for (name, (cmd, want)) in cases {
        let resp = wire.call(cmd).await;
        assert_eq!(resp.response_code(), want, "{name}: {:?}", resp.remark);
        assert!(resp.remark.as_deref().is_some_and(|r| !r.is_empty()), "{name} names its reason");
    }
    let resp = wire.call(RemotingCommand::request_with(RequestCode::POP_MESSAGE, &bad_sql)).await;
    assert_ne!(resp.response_code(), ResponseCode::SUCCESS, "a broken SQL92 expression is refused");
    // The connection still serves.
    let (code, _) = wire.pop(&pop_header("GB", "PopB", 1000, 0)).await;
    assert_eq!(code, ResponseCode::PULL_NOT_FOUND);
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pop_of_any_queue_looks_at_every_queue() {
    let (_dir, broker, wire) = start().await;
    let ctx = broker.context().clone();
    ctx.topics.upsert(TopicConfig::new("PopAny", 4, perm::READ_WRITE));
    for i in 0..20 {
        put(&ctx, "PopAny", 3, &format!("q3-{i}"), "T").await;
    }
    let mut h = pop_header("GA", "PopAny", 60_000, 0);
    h.max_msg_nums = 1;
    for i in 0..20 {
        let (code, got) = wire.pop(&h).await;
        assert_eq!(code, ResponseCode::SUCCESS, "pop {i} missed the only queue with messages");
        assert_eq!(got.len(), 1);
    }
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pops_share_a_queue_without_taking_a_message_twice() {
    let (_dir, broker, wire) = start().await;
    let ctx = broker.context().clone();
    ctx.topics.upsert(TopicConfig::new("PopShare", 1, perm::READ_WRITE));
    for i in 0..200 {
        put(&ctx, "PopShare", 0, &format!("s{i}"), "T").await;
    }
    let wire = std::sync::Arc::new(wire);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let wire = wire.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = pop_header("GS", "PopShare", 60_000, 0);
            h.max_msg_nums = 7;
            let mut mine = Vec::new();
            loop {
                let (code, got) = wire.pop(&h).await;
                if code != ResponseCode::SUCCESS {
                    return mine;
                }
                mine.extend(got.into_iter().map(|p| String::from_utf8_lossy(&p.msg.body).into_owned()));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let unique: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 200, "every message popped once");
    assert_eq!(unique.len(), 200, "no message popped twice");
    broker.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_pops_racing_their_acks_never_deliver_a_message_twice() {
    let (_dir, broker, wire) = start().await;
    let ctx = broker.context().clone();
    ctx.topics.upsert(TopicConfig::new("PopRace", 1, perm::READ_WRITE));
    ctx.groups.upsert(SubscriptionGroupConfig { consume_message_orderly: true, ..SubscriptionGroupConfig::new("GR") });
    let total = 300;
    for i in 0..total {
        put(&ctx, "PopRace", 0, &format!("{i:04}"), "T").await;
    }
    let wire = std::sync::Arc::new(wire);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let wire = wire.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = pop_header("GR", "PopRace", 60_000, 300);
            h.max_msg_nums = 2;
            let mut mine = Vec::new();
            loop {
                let (code, got) = wire.pop(&h).await;
                if code != ResponseCode::SUCCESS {
                    return mine;
                }
                for p in &got {
                    assert_eq!(wire.ack("GR", "PopRace", p).await, ResponseCode::SUCCESS);
                    mine.push(String::from_utf8_lossy(&p.msg.body).into_owned());
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), total, "every message delivered");
    assert_eq!(all.len(), total, "none delivered twice");
    broker.shutdown(Duration::from_secs(5)).await;
}
