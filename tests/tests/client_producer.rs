//! The SDK's producer against real name-server and broker processes: every send
//! mode, queue selectors, compression, UNIQ_KEY stamping and
//! its survival across retries, and failover when one of two brokers is killed.
//! What a send reports is checked against what the broker stored, read back with
//! hand-built pulls.

mod client_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use client::compression::decompress_body;
use client::producer::SelectByHash;
use client::{Message, MessageQueue, Producer, ProducerOptions, SendResult, SendStatus};
use common::properties::keys;
use common::sysflag::message as sysflag;
use tests::wire::Wire;
use tests::{eventually, Broker, Namesrv};

use client_support::{cluster, create_topic, kill9, producer, stored, stored_by_uniq_key, text, WAIT};

/// The message a send result points at, read back from the broker.
async fn stored_at(w: &Wire, r: &SendResult) -> Result<common::MessageExt> {
    let q = &r.message_queue;
    let p = w.pull_at_least("ClientTestReader", &q.topic, q.queue_id, r.queue_offset, 1).await?;
    Ok(p.messages.into_iter().next().expect("pull_at_least returned one"))
}

/// Sync, async (future), async (callback) and oneway sends, then a batch: each is
/// stored once with its body, tags, keys and user property, under the UNIQ_KEY the
/// send reported as `msg_id`, at the queue and offset it reported, with the
/// broker's `offset_msg_id`; the batch is consecutive in one queue in order.
#[tokio::test]
async fn every_send_mode_stores_what_it_reports() -> Result<()> {
    let (ns, brokers) = cluster(&["broker-a"])?;
    let topic = "ClientSendModes";
    create_topic(&ns.addr(), topic, 4, 1).await?;
    let p = producer(&ns.addr(), "ClientSendModesPG");
    let w = Wire::new(brokers[0].addr());
    let msg = |body: &str, tag: &str| {
        Message::new(topic, body.to_owned())
            .with_tags(tag)
            .with_keys([format!("key-{body}")])
            .with_property("origin", "rust")
    };

    // Sync.
    let r = p.send(msg("sync-0", "TagA")).await?;
    assert_eq!(r.status, SendStatus::SendOk);
    assert_eq!(r.message_queue.broker_name, "broker-a");
    let m = stored_at(&w, &r).await?;
    assert_eq!(text(&m.body), "sync-0");
    assert_eq!(m.tags(), Some("TagA"));
    assert_eq!(m.properties.get(keys::KEYS), Some("key-sync-0"));
    assert_eq!(m.properties.get("origin"), Some("rust"));
    assert_eq!(m.properties.uniq_key(), Some(r.msg_id.as_str()));
    assert_eq!(m.offset_msg_id(), r.offset_msg_id);
    assert_eq!(m.queue_id, r.message_queue.queue_id);

    // Async, future style: many in flight at once on one producer.
    let futures: Vec<_> = (0..16).map(|i| p.send(msg(&format!("future-{i}"), "TagB"))).collect();
    let results = futures::future::join_all(futures).await;
    let mut queues = BTreeSet::new();
    for (i, r) in results.into_iter().enumerate() {
        let r = r?;
        queues.insert(r.message_queue.queue_id);
        let m = stored_at(&w, &r).await?;
        assert_eq!(text(&m.body), format!("future-{i}"));
        assert_eq!(m.properties.uniq_key(), Some(r.msg_id.as_str()));
    }
    assert_eq!(queues.len(), 4, "round-robin spreads 16 sends over the 4 queues: {queues:?}");

    // Async, callback style.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..4 {
        let tx = tx.clone();
        p.send_with_callback(msg(&format!("callback-{i}"), "TagC"), move |r| {
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let mut called = 0;
    while let Some((i, r)) = rx.recv().await {
        let r = r?;
        let m = stored_at(&w, &r).await?;
        assert_eq!(text(&m.body), format!("callback-{i}"));
        assert_eq!(m.properties.uniq_key(), Some(r.msg_id.as_str()));
        called += 1;
    }
    assert_eq!(called, 4, "every callback ran once");

    // Oneway: no answer, so find it in the store.
    p.send_oneway(msg("oneway-0", "TagD")).await?;
    let found = eventually(WAIT, "the oneway message stored", || async {
        let all = stored(&brokers[0].addr(), topic, 4).await.ok()?;
        all.into_iter().find(|m| text(&m.body) == "oneway-0")
    })
    .await?;
    assert_eq!(found.tags(), Some("TagD"));
    assert!(found.properties.uniq_key().is_some_and(|k| k.len() == 32), "{:?}", found.properties);

    // Batch: one request, consecutive offsets in one queue, per-message properties.
    let batch: Vec<Message> = (0..5).map(|i| msg(&format!("batch-{i}"), "TagE")).collect();
    let r = p.send_batch(batch).await?;
    let ids: Vec<&str> = r.msg_id.split(',').collect();
    assert_eq!(ids.len(), 5, "{}", r.msg_id);
    let q = &r.message_queue;
    let got = w.pull_at_least("ClientTestReader", topic, q.queue_id, r.queue_offset, 5).await?;
    for (i, m) in got.messages.iter().take(5).enumerate() {
        assert_eq!(text(&m.body), format!("batch-{i}"));
        assert_eq!(m.queue_offset, r.queue_offset + i as i64);
        assert_eq!(m.tags(), Some("TagE"));
        assert_eq!(m.properties.get(keys::KEYS), Some(format!("key-batch-{i}").as_str()));
        assert_eq!(m.properties.uniq_key(), Some(ids[i]));
    }

    // Everything is stored exactly once.
    let all = stored_by_uniq_key(&brokers[0].addr(), topic, 4, 1 + 16 + 4 + 1 + 5).await?;
    assert_eq!(all.len(), 1 + 16 + 4 + 1 + 5);
    assert!(all.values().all(|v| v.len() == 1));
    p.shutdown().await;
    Ok(())
}

/// `send_with_selector` with `SelectByHash`: equal keys share a queue, in send
/// order; a closure selector and `send_to_queue` put messages where they say.
#[tokio::test]
async fn selectors_and_explicit_queues_decide_the_queue() -> Result<()> {
    let (ns, brokers) = cluster(&["broker-a"])?;
    let topic = "ClientSelectors";
    create_topic(&ns.addr(), topic, 4, 1).await?;
    let p = producer(&ns.addr(), "ClientSelectorsPG");
    let w = Wire::new(brokers[0].addr());

    let mut by_order: std::collections::BTreeMap<String, Vec<(i32, i64)>> = Default::default();
    for step in 0..5 {
        for order in ["order-1", "order-2", "order-3", "order-42"] {
            let m = Message::new(topic, format!("{order}:{step}"));
            let r = p.send_with_selector(m, &SelectByHash(order.to_owned())).await?;
            by_order.entry(order.to_owned()).or_default().push((r.message_queue.queue_id, r.queue_offset));
        }
    }
    for (order, sends) in &by_order {
        let queue = sends[0].0;
        let expected = (common::hash::java_string_hash(order).unsigned_abs() % 4) as i32;
        assert_eq!(queue, expected, "{order} goes to hash % 4");
        assert!(sends.iter().all(|(q, _)| *q == queue), "{order} stays in one queue: {sends:?}");
        assert!(sends.windows(2).all(|s| s[0].1 < s[1].1), "{order} in send order: {sends:?}");
        let got = w.pull_at_least("ClientTestReader", topic, queue, 0, 5).await?;
        let mine: Vec<String> =
            got.messages.iter().map(|m| text(&m.body)).filter(|b| b.starts_with(&format!("{order}:"))).collect();
        assert_eq!(mine, (0..5).map(|s| format!("{order}:{s}")).collect::<Vec<_>>());
    }

    let last = |qs: &[MessageQueue], _: &Message| qs.len() - 1;
    let r = p.send_with_selector(Message::new(topic, "closure"), &last).await?;
    assert_eq!(r.message_queue.queue_id, 3);
    let r = p.send_to_queue(Message::new(topic, "explicit"), &MessageQueue::new(topic, "broker-a", 2)).await?;
    assert_eq!(r.message_queue, MessageQueue::new(topic, "broker-a", 2));
    assert_eq!(text(&stored_at(&w, &r).await?.body), "explicit");
    p.shutdown().await;
    Ok(())
}

/// A body over 4 KiB is stored zlib-compressed (sys flag COMPRESSED, smaller than
/// sent) and inflates back to the exact bytes; a small body is stored as is.
#[tokio::test]
async fn bodies_over_4_kib_are_compressed_and_round_trip() -> Result<()> {
    let (ns, brokers) = cluster(&["broker-a"])?;
    let topic = "ClientCompress";
    create_topic(&ns.addr(), topic, 1, 1).await?;
    let p = producer(&ns.addr(), "ClientCompressPG");
    let w = Wire::new(brokers[0].addr());
    let big: Vec<u8> = (0..64 * 1024).map(|i| b"ferromq-compression-"[i % 20] ^ (i / 4096) as u8).collect();

    let r = p.send(Message::new(topic, big.clone()).with_tags("big")).await?;
    let m = stored_at(&w, &r).await?;
    // COMPRESSED with RocketMQ's ZLIB type (MessageSysFlag.COMPRESSION_ZLIB_TYPE), as
    // the Java producer flags it.
    assert_eq!(m.sys_flag & 0x701, 0x301, "sys flag {:#x}", m.sys_flag);
    assert!(m.body.len() < big.len() / 4, "stored {} bytes for {}", m.body.len(), big.len());
    assert_eq!(decompress_body(m.sys_flag, &m.body)?[..], big[..]);
    assert_eq!(m.tags(), Some("big"));

    let small = vec![b'x'; 4096];
    let r = p.send(Message::new(topic, small.clone())).await?;
    let m = stored_at(&w, &r).await?;
    assert_eq!(m.sys_flag & sysflag::COMPRESSED, 0, "4096 bytes is not over the threshold");
    assert_eq!(m.body[..], small[..]);
    p.shutdown().await;
    Ok(())
}

/// Acceptance: a producer survives one of two brokers being killed (kill -9).
///
/// Four senders send continuously to a topic on `broker-a` and `broker-b`. After
/// `broker-a` dies, sends that were in flight to it or picked it may fail within
/// the first retry window (one `send_timeout`), but every send started after that
/// window succeeds, on `broker-b`, and quickly: the first failure isolates
/// `broker-a` and later sends skip it without trying it. Every success is stored
/// on the broker it names, under the msgId it reports.
#[tokio::test]
async fn producer_survives_one_of_two_brokers_being_killed() -> Result<()> {
    let (ns, mut brokers) = cluster(&["broker-a", "broker-b"])?;
    let topic = "ClientFailover";
    create_topic(&ns.addr(), topic, 4, 2).await?;
    let b_addr = brokers[1].addr();
    let opts = ProducerOptions { send_timeout: Duration::from_secs(3), ..ProducerOptions::default() };
    let p = Producer::new("ClientFailoverPG", config::ClientConfig::default(), Some(vec![ns.addr()]), opts.clone());

    struct Outcome {
        started: Instant,
        took: Duration,
        result: Result<SendResult, String>,
    }
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(parking_lot_free::Log::default());
    let mut senders = Vec::new();
    for s in 0..4 {
        let (p, stop, log) = (p.clone(), stop.clone(), log.clone());
        senders.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = p.send(Message::new(topic, format!("s{s}-{i}"))).await.map_err(|e| e.to_string());
                log.push(Outcome { started, took: started.elapsed(), result });
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // Both brokers take traffic before the kill.
    eventually(WAIT, "sends on both brokers", || async {
        let names: BTreeSet<String> = log.with(|o: &[Outcome]| {
            o.iter().filter_map(|o| o.result.as_ref().ok()).map(|r| r.message_queue.broker_name.clone()).collect()
        });
        (names.len() == 2).then_some(())
    })
    .await?;
    let a = brokers.remove(0);
    let killed_at = Instant::now();
    let _a_home = kill9(a);
    // Run well past the retry window, but inside the 30 s isolation.
    tokio::time::sleep(opts.send_timeout + Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await?;
    }
    let window_end = killed_at + opts.send_timeout;

    let outcomes = log.take();
    let before = outcomes.iter().filter(|o| o.started < killed_at).count();
    let during: Vec<&Outcome> = outcomes.iter().filter(|o| o.started >= killed_at && o.started < window_end).collect();
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.started >= window_end).collect();
    let failed_after: Vec<&String> = after.iter().filter_map(|o| o.result.as_ref().err()).collect();
    let ok_after_kill = outcomes.iter().filter(|o| o.started >= killed_at && o.result.is_ok()).count();
    let failed_during = during.iter().filter(|o| o.result.is_err()).count();
    let slowest_after = after.iter().map(|o| o.took).max().unwrap_or_default();
    eprintln!(
        "failover: {before} sends before the kill; {} in the first retry window ({failed_during} failed); \
         {} after it ({} failed, slowest {slowest_after:?}); {ok_after_kill} successes after the kill",
        during.len(),
        after.len(),
        failed_after.len()
    );
    ensure!(failed_after.is_empty(), "sends failed after the retry window: {failed_after:?}");
    ensure!(after.len() >= 100, "messages keep flowing after the kill: only {} sends", after.len());
    for o in &after {
        let r = o.result.as_ref().expect("checked above");
        ensure!(r.message_queue.broker_name == "broker-b", "a send after the window went to {:?}", r.message_queue);
    }
    // A send tried broker-a after the kill, failed, and isolated it (30 s by default).
    ensure!(!p.faults().is_available("broker-a"), "broker-a is not isolated");
    ensure!(p.faults().is_available("broker-b"));
    // Fault avoidance: after the window nobody waits on the dead broker.
    ensure!(slowest_after < Duration::from_millis(1500), "a send after the window took {slowest_after:?}");

    // Every success after the kill is stored on broker-b under its msgId.
    let reported_b =
        outcomes.iter().filter(|o| o.result.as_ref().is_ok_and(|r| r.message_queue.broker_name == "broker-b")).count();
    let on_b = stored_by_uniq_key(&b_addr, topic, 4, reported_b).await?;
    for o in outcomes.iter().filter(|o| o.started >= killed_at) {
        if let Ok(r) = &o.result {
            let copies = on_b.get(&r.msg_id).map(Vec::len).unwrap_or(0);
            ensure!(copies >= 1, "{} reported stored on {:?} but not on broker-b", r.msg_id, r.message_queue);
            ensure!(on_b[&r.msg_id].iter().any(|m| m.offset_msg_id() == r.offset_msg_id));
        }
    }
    p.shutdown().await;
    drop(ns);
    Ok(())
}

/// A broker stand-in that registers with the name server as `broker-a` hosting
/// `topic`, records the UNIQ_KEY and body of every send it gets, and answers
/// each with `code` (with send-result fields, so FLUSH_DISK_TIMEOUT reads as
/// "stored, but not as asked").
struct FakeBroker {
    server: remoting::RemotingServer,
    seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    code: Arc<std::sync::atomic::AtomicI32>,
    /// The registration connection: the name server drops a broker whose
    /// connection closes.
    _ns_client: remoting::RemotingClient,
}

struct FakeHandler {
    seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    code: Arc<std::sync::atomic::AtomicI32>,
}

impl remoting::RequestHandler for FakeHandler {
    fn handle(
        &self,
        _: remoting::Channel,
        req: remoting::RemotingCommand,
    ) -> remoting::channel::BoxFuture<Option<remoting::RemotingCommand>> {
        use remoting::header::broker::{SendMessageRequestHeaderV2, SendMessageResponseHeader};
        let resp = if req.request_code() == remoting::RequestCode::SEND_MESSAGE_V2 {
            let h = req.decode_header::<SendMessageRequestHeaderV2>().expect("a V2 send header");
            let props = common::properties::Properties::decode(h.properties.as_deref().unwrap_or(""));
            let key = props.uniq_key().unwrap_or_default().to_owned();
            self.seen.lock().expect("not poisoned").push((key, text(&req.body_bytes())));
            let code = remoting::ResponseCode(self.code.load(Ordering::Relaxed));
            let rh = SendMessageResponseHeader {
                msg_id: "7F00000100002A9F0000000000000000".into(),
                queue_id: h.queue_id,
                queue_offset: 0,
                ..Default::default()
            };
            let mut r = remoting::RemotingCommand::response_with(code, &rh);
            r.remark = Some("fake broker".into());
            r
        } else {
            remoting::RemotingCommand::success()
        };
        let oneway = req.is_oneway();
        Box::pin(async move { (!oneway).then_some(resp) })
    }
}

impl FakeBroker {
    async fn start(namesrv: &str, topic: &str, queues: i32, code: remoting::ResponseCode) -> Result<Self> {
        use remoting::body::{DataVersion, RegisterBrokerBody, TopicConfigSerializeWrapper};
        use remoting::header::namesrv::RegisterBrokerRequestHeader;
        let seen: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
        let code = Arc::new(std::sync::atomic::AtomicI32::new(code.0));
        let handler = Arc::new(FakeHandler { seen: seen.clone(), code: code.clone() });
        let server =
            remoting::RemotingServer::bind(remoting::ServerConfig::new("127.0.0.1:0".parse()?), handler).await?;
        let addr = server.local_addr().to_string();
        let mut table = std::collections::BTreeMap::new();
        table.insert(topic.to_owned(), common::topic::TopicConfig::new(topic, queues, 6));
        let body = RegisterBrokerBody {
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                topic_config_table: table,
                data_version: DataVersion { timestamp: tests::wire::now_ms(), counter: 1, state_version: None },
            },
            filter_server_list: vec![],
        }
        .encode(false)?;
        let header = RegisterBrokerRequestHeader {
            broker_name: "broker-a".into(),
            broker_addr: addr.clone(),
            cluster_name: "DefaultCluster".into(),
            ha_server_addr: addr,
            broker_id: 0,
            compressed: Some(false),
            body_crc32: Some((crc32fast::hash(&body) & 0x7FFF_FFFF) as i32),
            ..Default::default()
        };
        let ns_client = remoting::RemotingClient::new(remoting::ClientConfig::default(), None);
        let req =
            remoting::RemotingCommand::request_with(remoting::RequestCode::REGISTER_BROKER, &header).with_body(body);
        let resp = ns_client.invoke(namesrv, req, WAIT).await?;
        ensure!(resp.response_code() == remoting::ResponseCode::SUCCESS, "fake registration: {:?}", resp.remark);
        Ok(Self { server, seen, code, _ns_client: ns_client })
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

/// UNIQ_KEY is kept across retries. `broker-a` is a stand-in that records every
/// send it gets. While it answers SYSTEM_BUSY (a retryable refusal), every message
/// it saw is retried on the real `broker-b` and stored there under the same
/// UNIQ_KEY, which is also the msgId the send reports. While it answers
/// FLUSH_DISK_TIMEOUT ("stored, not as asked"), a producer with
/// `retry_another_broker_when_not_store_ok` sends the same message again to
/// `broker-b`, and a default producer reports the status instead of retrying.
/// Fault isolation is off so that round-robin keeps choosing `broker-a` first.
#[tokio::test]
async fn uniq_key_is_kept_when_a_send_is_retried_on_another_broker() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let b = Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-b")])?;
    let topic = "ClientRetryKey";
    Wire::new(b.addr()).create_topic(topic, 2).await?;
    let fake = FakeBroker::start(&ns.addr(), topic, 2, remoting::ResponseCode::SYSTEM_BUSY).await?;
    let route_client = remoting::RemotingClient::new(remoting::ClientConfig::default(), None);
    eventually(WAIT, "the route on broker-a (fake) and broker-b", || async {
        let r = tests::wire::route(&route_client, &ns.addr(), topic).await.ok()??;
        (r.queue_datas.len() == 2).then_some(())
    })
    .await?;
    let no_isolation = ProducerOptions { fault_isolation: Duration::ZERO, ..ProducerOptions::default() };
    let wb = Wire::new(b.addr());

    // 1. Retryable refusal.
    let p =
        Producer::new("ClientRetryKeyPG", config::ClientConfig::default(), Some(vec![ns.addr()]), no_isolation.clone());
    let mut results = Vec::new();
    for i in 0..10 {
        results.push(p.send(Message::new(topic, format!("busy-{i}"))).await?);
    }
    let seen = fake.seen();
    ensure!(seen.len() >= 3, "round-robin sent to the fake broker first {} times", seen.len());
    for (key, body) in &seen {
        let r = results.iter().find(|r| &r.msg_id == key).with_context(|| format!("no result has msgId {key}"))?;
        ensure!(r.message_queue.broker_name == "broker-b" && r.status == SendStatus::SendOk, "{r:?}");
        let m = stored_at(&wb, r).await?;
        ensure!(
            m.properties.uniq_key() == Some(key.as_str()),
            "stored under {:?}, sent to broker-a as {key}",
            m.properties.uniq_key()
        );
        ensure!(&text(&m.body) == body);
    }
    for r in &results {
        ensure!(r.message_queue.broker_name == "broker-b");
        ensure!(stored_at(&wb, r).await?.properties.uniq_key() == Some(r.msg_id.as_str()));
    }
    p.shutdown().await;

    // 2. Stored but not as asked: retried only when asked to.
    fake.code.store(remoting::ResponseCode::FLUSH_DISK_TIMEOUT.0, Ordering::Relaxed);
    let before = fake.seen().len();
    let opts = ProducerOptions { retry_another_broker_when_not_store_ok: true, ..no_isolation.clone() };
    let p = Producer::new("ClientRetryKeyPG2", config::ClientConfig::default(), Some(vec![ns.addr()]), opts);
    let mut results = Vec::new();
    for i in 0..10 {
        results.push(p.send(Message::new(topic, format!("flush-{i}"))).await?);
    }
    let seen = fake.seen()[before..].to_vec();
    ensure!(seen.len() >= 3, "round-robin sent to the fake broker first {} times", seen.len());
    for (key, _) in &seen {
        let r = results.iter().find(|r| &r.msg_id == key).with_context(|| format!("no result has msgId {key}"))?;
        ensure!(r.message_queue.broker_name == "broker-b" && r.status == SendStatus::SendOk, "{r:?}");
        ensure!(stored_at(&wb, r).await?.properties.uniq_key() == Some(key.as_str()));
    }
    p.shutdown().await;
    let p = Producer::new("ClientRetryKeyPG3", config::ClientConfig::default(), Some(vec![ns.addr()]), no_isolation);
    let r = p.send_to_queue(Message::new(topic, "flush-default"), &MessageQueue::new(topic, "broker-a", 1)).await?;
    ensure!(r.status == SendStatus::FlushDiskTimeout && r.message_queue.broker_name == "broker-a", "{r:?}");
    ensure!(fake.seen().last().map(|(k, _)| k) == Some(&r.msg_id));
    p.shutdown().await;
    drop(fake.server);
    Ok(())
}

/// Messages the producer refuses before sending anything.
#[tokio::test]
async fn invalid_messages_are_refused_client_side() -> Result<()> {
    let (ns, _brokers) = cluster(&["broker-a"])?;
    let p = producer(&ns.addr(), "ClientInvalidPG");
    let err = p.send(Message::new("bad topic!", "x")).await.expect_err("bad topic name");
    assert!(matches!(err, client::Error::InvalidArgument(_)), "{err}");
    let err = p.send(Message::new("ClientInvalid", Vec::<u8>::new())).await.expect_err("empty body");
    assert!(matches!(err, client::Error::InvalidArgument(_)), "{err}");
    let err = p.send(Message::new("ClientInvalid", vec![0u8; 4 * 1024 * 1024 + 1])).await.expect_err("too large");
    assert!(matches!(err, client::Error::InvalidArgument(_)), "{err}");
    let mixed = vec![Message::new("ClientInvalidA", "a"), Message::new("ClientInvalidB", "b")];
    let err = p.send_batch(mixed).await.expect_err("mixed topics");
    assert!(matches!(err, client::Error::InvalidArgument(_)), "{err}");
    p.shutdown().await;
    Ok(())
}

/// A tiny append-only log shared by tasks (std mutex: held only to push or copy).
mod parking_lot_free {
    pub struct Log<T>(std::sync::Mutex<Vec<T>>);

    impl<T> Default for Log<T> {
        fn default() -> Self {
            Self(std::sync::Mutex::new(Vec::new()))
        }
    }

    impl<T> Log<T> {
        pub fn push(&self, v: T) {
            self.0.lock().expect("not poisoned").push(v);
        }
        pub fn with<R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
            f(&self.0.lock().expect("not poisoned"))
        }
        pub fn take(&self) -> Vec<T> {
            std::mem::take(&mut *self.0.lock().expect("not poisoned"))
        }
    }
}
