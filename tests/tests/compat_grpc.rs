//! RocketMQ 5's gRPC endpoint against clients we did not write: Apache RocketMQ's
//! official Python client (`rocketmq-python-client` 5.x from PyPI), which speaks only
//! `apache.rocketmq.v2.MessagingService`, and the generated tonic client of the same
//! protocol files for what the Python client never sends (malformed requests, refused
//! types).
//!
//! The broker serves the endpoint itself (`grpc_server_port`, here a free port read
//! from its `grpc on ADDR` line). What a 5.x producer sends is read back at the wire
//! level over the remoting protocol, as a 4.x consumer would: nothing missing,
//! nothing invented, every property carried over.
//!
//! What a 4.x remoting producer sends is received by 5.x simple and push consumers
//! (POP consumption): every message exactly once, an expired one again with its
//! delivery attempt raised, one past its maximum attempts in the dead-letter queue,
//! and one received but not acked before a `kill -9` once more after its
//! invisibility.
//!
//! The venv is made once per target directory (`target/compat/python5-venv`, under a
//! lock); the client scripts are in `tests/compat/python5/`.
//! `FERROMQ_SKIP_COMPAT=1` skips the Python test (CI never sets it).

mod compat_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::properties::keys;
use common::{MessageExt, ResponseCode};
use grpc::pb::{self, messaging_service_client::MessagingServiceClient, Code};
use remoting::header::broker::CreateTopicRequestHeader;
use remoting::{RemotingCommand, RequestCode};
use tests::wire::Wire;
use tests::{Broker, Namesrv};

use compat_support::{args, report, s, skipped, wait_route, ClientProcess};

const PACKAGE: &str = "rocketmq-python-client==5.1.2";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| {
        compat_support::python_venv("python5-venv", PACKAGE, "from rocketmq import Producer, ClientConfiguration")
            .map_err(|e| format!("{e:#}"))
    });
    match made {
        Ok(p) => p.clone(),
        Err(e) => panic!(
            "cannot install the RocketMQ 5 Python client ({PACKAGE}) for the gRPC tests:\n{e}\n\
             Needs `python3 -m venv` (Debian/Ubuntu: apt-get install python3-venv; .ci/run installs it) \
             and pip access to PyPI. Set FERROMQ_SKIP_COMPAT=1 to skip these tests on a machine without them."
        ),
    }
}

async fn create_topic(wire: &Wire, topic: &str, queues: i32, attributes: Option<&str>) -> Result<()> {
    let h = CreateTopicRequestHeader {
        attributes: attributes.map(str::to_owned),
        ..CreateTopicRequestHeader::new(topic, queues)
    };
    let resp = wire.call(RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &h)).await?;
    ensure!(resp.response_code() == ResponseCode::SUCCESS, "creating {topic}: {:?}", resp.remark);
    Ok(())
}

/// Every message stored in `topic`, queue by queue, in queue order.
async fn read_all(wire: &Wire, topic: &str, queues: i32) -> Result<Vec<MessageExt>> {
    let mut all = Vec::new();
    for q in 0..queues {
        let mut offset = 0;
        loop {
            let p = wire.pull("grpc-checker", topic, q, offset, "*", "TAG", 0).await?;
            if p.messages.is_empty() {
                break;
            }
            offset = p.next_begin_offset;
            all.extend(p.messages);
        }
    }
    Ok(all)
}

fn prop<'a>(m: &'a MessageExt, key: &str) -> &'a str {
    m.properties.get(key).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_5x_producer_sends_normal_fifo_and_delay_messages_that_remoting_consumers_read() -> Result<()> {
    if skipped("compat_grpc") {
        return Ok(());
    }
    let py = python();
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let endpoint = broker.process.grpc_addr()?;
    let wire = Wire::new(broker.addr());
    let (normal, fifo) = ("Grpc5Normal", "Grpc5Fifo");
    create_topic(&wire, normal, 4, None).await?;
    create_topic(&wire, fifo, 4, Some("+message.type=FIFO")).await?;
    wait_route(&ns.addr(), normal).await?;
    wait_route(&ns.addr(), fifo).await?;

    let home = tempfile::tempdir()?;
    let count = 6;
    let script = compat_support::scripts_dir("python5").join("producer.py").display().to_string();
    let mut argv = vec![script];
    argv.extend(args(&[
        ("endpoint", &endpoint.to_string()),
        ("topic", normal),
        ("fifo-topic", fifo),
        ("run", "r1"),
        ("count", &count.to_string()),
        ("delay", "2"),
    ]));
    let producer = ClientProcess::spawn(
        "python5-producer",
        &py,
        &argv,
        &home.path().join("producer"),
        &[("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")],
    )?;
    let out = producer.finish(CLIENT_TIMEOUT);
    out.expect_event("done")?;
    let sent = out.events("sent");
    ensure!(sent.len() == 3 * count, "{} sends reported instead of {}\n{}", sent.len(), 3 * count, out.describe());
    let by_body: BTreeMap<&str, &serde_json::Value> = sent.iter().map(|v| (s(v, "body"), *v)).collect();

    // The FIFO messages: each group in one queue, in send order.
    let stored_fifo = read_all(&wire, fifo, 4).await?;
    let mut groups: BTreeMap<String, Vec<(i32, String)>> = BTreeMap::new();
    for m in &stored_fifo {
        groups
            .entry(prop(m, keys::SHARDING_KEY).to_owned())
            .or_default()
            .push((m.queue_id, String::from_utf8_lossy(&m.body).into_owned()));
    }
    let want_groups: BTreeSet<String> = ["group-0", "group-1"].into_iter().map(str::to_owned).collect();
    ensure!(groups.keys().cloned().collect::<BTreeSet<_>>() == want_groups, "FIFO groups stored: {:?}", groups.keys());
    for (group, msgs) in &groups {
        let queues: BTreeSet<i32> = msgs.iter().map(|(q, _)| *q).collect();
        ensure!(queues.len() == 1, "group {group} spread over queues {queues:?}");
        let order: Vec<&str> = msgs.iter().map(|(_, b)| b.as_str()).collect();
        let want: Vec<String> =
            (0..count).filter(|i| format!("group-{}", i % 2) == *group).map(|i| format!("r1-fifo-{i}")).collect();
        ensure!(order == want, "group {group} stored as {order:?}, sent as {want:?}");
    }

    // The normal and (once due) the delay messages, in the normal topic.
    let stored = tests::eventually(Duration::from_secs(30), "the delay messages to be delivered", || async {
        let all = read_all(&wire, normal, 4).await.ok()?;
        (all.len() >= 2 * count).then_some(all)
    })
    .await?;
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for m in stored.iter().chain(&stored_fifo) {
        let body = String::from_utf8_lossy(&m.body).into_owned();
        let Some(v) = by_body.get(body.as_str()) else {
            problems.push(format!("stored but never sent: {body}"));
            continue;
        };
        if !seen.insert(body.clone()) {
            problems.push(format!("stored twice: {body}"));
        }
        for (key, want) in [
            (keys::TAGS, s(v, "tag").to_owned()),
            (keys::KEYS, s(v, "keys").to_owned()),
            (keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, s(v, "message_id").to_owned()),
            ("compat_prop", format!("prop-{body}")),
        ] {
            if prop(m, key) != want {
                problems.push(format!("{body}: {key} is {:?}, sent {want:?}", prop(m, key)));
            }
        }
        if s(v, "kind") == "delay" {
            let due_ms = v["deliver_at"].as_i64().context("deliver_at")? * 1000;
            if m.store_timestamp < due_ms {
                problems.push(format!("{body}: delivered at {} before its time {due_ms}", m.store_timestamp));
            }
            if prop(m, keys::TIMER_DELIVER_MS) != due_ms.to_string() {
                problems.push(format!("{body}: TIMER_DELIVER_MS {:?}", prop(m, keys::TIMER_DELIVER_MS)));
            }
        }
    }
    for body in by_body.keys() {
        if !seen.contains(*body) {
            problems.push(format!("acknowledged but not stored: {body}"));
        }
    }
    report(problems, &[&out])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_5x_transactions_commit_roll_back_and_answer_check_backs() -> Result<()> {
    if skipped("compat_grpc") {
        return Ok(());
    }
    let py = python();
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[("TRANSACTION_TIME_OUT", "1s"), ("TRANSACTION_CHECK_INTERVAL", "1s")])?;
    let endpoint = broker.process.grpc_addr()?;
    let wire = Wire::new(broker.addr());
    let topic = "Grpc5Tx";
    create_topic(&wire, topic, 2, Some("+message.type=TRANSACTION")).await?;
    wait_route(&ns.addr(), topic).await?;

    let home = tempfile::tempdir()?;
    let until = home.path().join("until");
    let mut argv = vec![compat_support::scripts_dir("python5").join("transactional.py").display().to_string()];
    argv.extend(args(&[
        ("endpoint", &endpoint.to_string()),
        ("topic", topic),
        ("run", "r1"),
        ("until-file", &until.display().to_string()),
    ]));
    let mut producer = ClientProcess::spawn(
        "python5-transactional",
        &py,
        &argv,
        &home.path().join("producer"),
        &[("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")],
    )?;
    let done = producer.wait_event("done", CLIENT_TIMEOUT);
    // The committed message, and the open one once the checker's answer arrives.
    let stored = match done {
        Ok(_) => {
            tests::eventually(Duration::from_secs(30), "the committed and the checked message", || async {
                let all = read_all(&wire, topic, 2).await.ok()?;
                (all.len() >= 2).then_some(all)
            })
            .await
        }
        Err(e) => Err(e),
    };
    std::fs::write(&until, "")?;
    let out = producer.finish(CLIENT_TIMEOUT);
    let stored = stored.with_context(|| out.describe())?;
    let sent: BTreeMap<&str, &serde_json::Value> = out.events("sent").iter().map(|v| (s(v, "body"), *v)).collect();
    ensure!(sent.len() == 3, "{} half messages reported\n{}", sent.len(), out.describe());
    let checked: Vec<&str> = out.events("checked").iter().map(|v| s(v, "body")).collect();
    ensure!(checked.first() == Some(&"r1-tx-open"), "check-backs for {checked:?}\n{}", out.describe());
    let bodies: BTreeSet<String> = stored.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
    let want: BTreeSet<String> = ["r1-tx-commit", "r1-tx-open"].into_iter().map(str::to_owned).collect();
    ensure!(bodies == want && stored.len() == 2, "stored {bodies:?} ({} messages), want {want:?}", stored.len());
    for m in &stored {
        let body = String::from_utf8_lossy(&m.body).into_owned();
        let v = sent[body.as_str()];
        ensure!(prop(m, keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == s(v, "message_id"), "{body}: message id");
        ensure!(prop(m, keys::TAGS) == "Tx", "{body}: tag {:?}", prop(m, keys::TAGS));
    }
    Ok(())
}

/// A request of the generated client, naming itself as 5.x clients do.
fn request<T>(body: T) -> tonic::Request<T> {
    request_as("grpc-wire-test", body)
}

/// [`request`] from the client named `client`.
fn request_as<T>(client: &str, body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.metadata_mut().insert("x-mq-client-id", client.parse().expect("ascii"));
    r
}

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource { resource_namespace: String::new(), name: name.to_owned() })
}

fn message(topic: &str, kind: pb::MessageType, group: Option<&str>) -> pb::Message {
    pb::Message {
        topic: resource(topic),
        user_properties: Default::default(),
        system_properties: Some(pb::SystemProperties {
            message_id: format!("wire-{}", kind.as_str_name()),
            message_type: kind as i32,
            message_group: group.map(str::to_owned),
            ..Default::default()
        }),
        body: b"body".to_vec(),
    }
}

fn code(status: Option<&pb::Status>) -> Code {
    status.and_then(|s| Code::try_from(s.code).ok()).unwrap_or(Code::Unspecified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_answers_routes_and_refuses_what_it_cannot_take_with_5x_codes() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let endpoint = broker.process.grpc_addr()?;
    let wire = Wire::new(broker.addr());
    create_topic(&wire, "WireFifo", 2, Some("+message.type=FIFO")).await?;
    wait_route(&ns.addr(), "WireFifo").await?;
    let mut c = MessagingServiceClient::connect(format!("http://{endpoint}")).await?;

    // A route points at this endpoint and lists what the topic accepts.
    let route = c
        .query_route(request(pb::QueryRouteRequest { topic: resource("WireFifo"), endpoints: None }))
        .await?
        .into_inner();
    ensure!(code(route.status.as_ref()) == Code::Ok, "{:?}", route.status);
    ensure!(route.message_queues.len() == 2, "{} queues", route.message_queues.len());
    for q in &route.message_queues {
        let addr = &q.broker.as_ref().and_then(|b| b.endpoints.as_ref()).context("endpoints")?.addresses[0];
        ensure!((addr.host.as_str(), addr.port) == ("127.0.0.1", i32::from(endpoint.port())), "{addr:?}");
        ensure!(q.accept_message_types == [pb::MessageType::Fifo as i32], "{:?}", q.accept_message_types);
    }
    let missing = c
        .query_route(request(pb::QueryRouteRequest { topic: resource("NoSuchTopic"), endpoints: None }))
        .await?
        .into_inner();
    ensure!(code(missing.status.as_ref()) == Code::TopicNotFound, "{:?}", missing.status);

    // A request without a client id.
    let anonymous = c
        .send_message(tonic::Request::new(pb::SendMessageRequest {
            messages: vec![message("WireFifo", pb::MessageType::Fifo, Some("g"))],
        }))
        .await?
        .into_inner();
    ensure!(code(anonymous.status.as_ref()) == Code::ClientIdRequired, "{:?}", anonymous.status);

    // A NORMAL message to a FIFO topic, and a FIFO message without its group.
    for (msg, want) in [
        (message("WireFifo", pb::MessageType::Normal, None), Code::MessagePropertyConflictWithType),
        (message("WireFifo", pb::MessageType::Fifo, None), Code::MessagePropertyConflictWithType),
    ] {
        let r = c.send_message(request(pb::SendMessageRequest { messages: vec![msg] })).await?.into_inner();
        ensure!(code(r.status.as_ref()) == want, "{:?}", r.status);
        ensure!(code(r.entries[0].status.as_ref()) == want, "{:?}", r.entries);
    }
    // No message at all.
    let empty = c.send_message(request(pb::SendMessageRequest { messages: vec![] })).await?.into_inner();
    ensure!(code(empty.status.as_ref()) == Code::BadRequest, "{:?}", empty.status);

    // A good one is stored where its group hashes to, and read back over remoting.
    let ok = c
        .send_message(request(pb::SendMessageRequest {
            messages: vec![message("WireFifo", pb::MessageType::Fifo, Some("hello"))],
        }))
        .await?
        .into_inner();
    ensure!(code(ok.status.as_ref()) == Code::Ok, "{:?}", ok.status);
    let stored = read_all(&wire, "WireFifo", 2).await?;
    ensure!(stored.len() == 1, "{} messages stored", stored.len());
    // "hello".hashCode() = 99162322, which is even.
    ensure!(stored[0].queue_id == 0, "stored in queue {}", stored[0].queue_id);
    ensure!(prop(&stored[0], keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == "wire-FIFO");

    // A transaction id the broker never issued.
    let end = c
        .end_transaction(request(pb::EndTransactionRequest {
            topic: resource("WireFifo"),
            message_id: "x".into(),
            transaction_id: "made-up".into(),
            resolution: pb::TransactionResolution::Commit as i32,
            ..Default::default()
        }))
        .await?
        .into_inner();
    ensure!(code(end.status.as_ref()) == Code::InvalidTransactionId, "{:?}", end.status);

    // Receives and acks the endpoint cannot take, each refused with its 5.x code.
    let queue = pb::MessageQueue { topic: resource("WireFifo"), id: -1, ..Default::default() };
    for (r, want) in [
        (pb::ReceiveMessageRequest { group: resource("G"), ..Default::default() }, Code::BadRequest),
        (
            pb::ReceiveMessageRequest {
                group: resource("G"),
                message_queue: Some(queue.clone()),
                batch_size: 1,
                invisible_duration: Some(grpc::prost_types::Duration { seconds: 1, nanos: 0 }),
                ..Default::default()
            },
            Code::IllegalInvisibleTime,
        ),
        (pb::ReceiveMessageRequest { message_queue: Some(queue), ..Default::default() }, Code::IllegalConsumerGroup),
    ] {
        let mut receive = c.receive_message(request(r)).await?.into_inner();
        match receive.message().await?.context("no answer")?.content {
            Some(pb::receive_message_response::Content::Status(st)) => {
                ensure!(code(Some(&st)) == want && !st.message.is_empty(), "want {want:?}, got {st:?}");
            }
            other => bail!("{other:?}"),
        }
    }
    let ack = c
        .ack_message(request(pb::AckMessageRequest {
            group: resource("G"),
            topic: resource("WireFifo"),
            entries: vec![pb::AckMessageEntry {
                message_id: "x".into(),
                receipt_handle: "forged".into(),
                lite_topic: None,
            }],
        }))
        .await?
        .into_inner();
    ensure!(code(ack.status.as_ref()) == Code::InvalidReceiptHandle, "{:?}", ack.status);
    // The broker still serves everyone after all of that.
    let again = c
        .query_route(request(pb::QueryRouteRequest { topic: resource("WireFifo"), endpoints: None }))
        .await?
        .into_inner();
    ensure!(code(again.status.as_ref()) == Code::Ok);
    Ok(())
}

/// A name server and a broker serving gRPC, with `topic` created (`queues` queues,
/// `attributes`) and routable; the broker's gRPC endpoint and a wire client.
async fn cluster_with(topic: &str, queues: i32, attributes: Option<&str>) -> Result<(Namesrv, Broker, String, Wire)> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let endpoint = broker.process.grpc_addr()?.to_string();
    let wire = Wire::new(broker.addr());
    create_topic(&wire, topic, queues, attributes).await?;
    wait_route(&ns.addr(), topic).await?;
    Ok((ns, broker, endpoint, wire))
}

/// The revive queue's progress has caught up with it: every checkpoint of a pop was
/// acked or revived.
async fn pops_settled(wire: &Wire) -> Result<()> {
    let revive = common::pop::revive_topic("DefaultCluster");
    tests::eventually(Duration::from_secs(30), "every popped message to be acked or revived", || async {
        let max = wire.max_offset(&revive, 0).await.ok()?;
        let (_, done, _) = wire.query_offset(common::pop::REVIVE_GROUP, &revive, 0).await.ok()?;
        (max > 0 && done == max).then_some(())
    })
    .await
}

/// Sends `bodies` as a 4.x producer would (SEND_MESSAGE_V2 with a tag, keys, a
/// UNIQ_KEY and a user property), spread over `queues` queues.
async fn send_4x(wire: &Wire, topic: &str, queues: i32, bodies: &[String]) -> Result<BTreeMap<String, String>> {
    let mut ids = BTreeMap::new();
    for (i, body) in bodies.iter().enumerate() {
        let id = format!("4X{i:06}{}", body.len());
        let props = tests::wire::props(&[
            (keys::TAGS, "TagA"),
            (keys::KEYS, &format!("key-{body}")),
            (keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &id),
            ("compat_prop", &format!("prop-{body}")),
        ]);
        let sent = wire.send(topic, i as i32 % queues, body.as_bytes(), &props).await?;
        ensure!(sent.code == ResponseCode::SUCCESS, "send {body}: {:?}", sent.code);
        ids.insert(body.clone(), id);
    }
    Ok(ids)
}

struct Consumer {
    process: ClientProcess,
    until: PathBuf,
    _home: tempfile::TempDir,
}

impl Consumer {
    fn start(
        py: &std::path::Path,
        endpoint: &str,
        topic: &str,
        group: &str,
        mode: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let home = tempfile::tempdir()?;
        let until = home.path().join("until");
        let mut argv = vec![compat_support::scripts_dir("python5").join("consumer.py").display().to_string()];
        argv.extend(args(&[
            ("endpoint", endpoint),
            ("topic", topic),
            ("group", group),
            ("mode", mode),
            ("until-file", &until.display().to_string()),
        ]));
        argv.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut process = ClientProcess::spawn(
            &format!("python5-{mode}-consumer"),
            py,
            &argv,
            &home.path().join("consumer"),
            &[("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")],
        )?;
        process.wait_event("started", CLIENT_TIMEOUT)?;
        Ok(Self { process, until, _home: home })
    }

    fn stop(self) -> Result<compat_support::ClientOutput> {
        std::fs::write(&self.until, "")?;
        Ok(self.process.finish(CLIENT_TIMEOUT))
    }
}

/// The bodies in events named `event`, with their delivery attempts.
fn by_body(lines: &[serde_json::Value], event: &str) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for v in lines.iter().filter(|v| v["event"] == event) {
        out.entry(s(v, "body").to_owned()).or_default().push(v["attempt"].as_i64().unwrap_or(-1));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_5x_simple_consumer_receives_a_4x_producers_messages_and_an_expired_one_again() -> Result<()> {
    if skipped("compat_grpc") {
        return Ok(());
    }
    let py = python();
    let topic = "Grpc5Simple";
    let (_ns, _broker, endpoint, wire) = cluster_with(topic, 2, None).await?;
    let bodies: Vec<String> = (0..8).map(|i| format!("simple-{i}")).collect();
    let expire = "simple-3";
    let mut consumer = Consumer::start(&py, &endpoint, topic, "Grpc5SimpleGroup", "simple", &["--expire", expire])?;
    let ids = send_4x(&wire, topic, 2, &bodies).await?;

    let all: BTreeSet<String> = bodies.iter().cloned().collect();
    let acked_all =
        |lines: &[serde_json::Value]| by_body(lines, "acked").keys().cloned().collect::<BTreeSet<_>>() == all;
    let waited = consumer.process.wait_lines("every message acked", CLIENT_TIMEOUT, acked_all);
    let settled = match waited {
        Ok(()) => pops_settled(&wire).await,
        Err(e) => Err(e),
    };
    let out = consumer.stop()?;
    settled.with_context(|| out.describe())?;

    let received: Vec<&serde_json::Value> = out.events("received");
    let deliveries = by_body(&out.lines, "received");
    let mut problems = Vec::new();
    for body in &bodies {
        let want: Vec<i64> = if body == expire { vec![1, 2] } else { vec![1] };
        if deliveries.get(body) != Some(&want) {
            problems.push(format!("{body} delivered with attempts {:?}, want {want:?}", deliveries.get(body)));
        }
    }
    for v in &received {
        let body = s(v, "body");
        let Some(id) = ids.get(body) else {
            problems.push(format!("received but never sent: {body}"));
            continue;
        };
        if s(v, "message_id") != id || s(v, "tag") != "TagA" || s(v, "topic") != topic {
            problems.push(format!(
                "{body}: id/tag/topic {:?} {:?} {:?}",
                s(v, "message_id"),
                s(v, "tag"),
                s(v, "topic")
            ));
        }
        if v["keys"] != serde_json::json!([format!("key-{body}")])
            || v["props"]["compat_prop"] != format!("prop-{body}")
        {
            problems.push(format!("{body}: keys {} props {}", v["keys"], v["props"]));
        }
    }
    report(problems, &[&out])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_5x_push_consumer_receives_every_message_once() -> Result<()> {
    if skipped("compat_grpc") {
        return Ok(());
    }
    let py = python();
    let topic = "Grpc5Push";
    let (_ns, _broker, endpoint, wire) = cluster_with(topic, 4, None).await?;
    let mut consumer = Consumer::start(&py, &endpoint, topic, "Grpc5PushGroup", "push", &[])?;
    let bodies: Vec<String> = (0..20).map(|i| format!("push-{i}")).collect();
    send_4x(&wire, topic, 4, &bodies).await?;
    let all: BTreeSet<String> = bodies.iter().cloned().collect();
    let got_all =
        |lines: &[serde_json::Value]| by_body(lines, "received").keys().cloned().collect::<BTreeSet<_>>() == all;
    let waited = consumer.process.wait_lines("every message received", CLIENT_TIMEOUT, got_all);
    let settled = match waited {
        Ok(()) => pops_settled(&wire).await,
        Err(e) => Err(e),
    };
    let out = consumer.stop()?;
    settled.with_context(|| out.describe())?;
    let twice: Vec<(String, Vec<i64>)> =
        by_body(&out.lines, "received").into_iter().filter(|(_, a)| a.len() != 1).collect();
    ensure!(twice.is_empty(), "delivered more than once: {twice:?}\n{}", out.describe());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_5x_consumer_that_always_fails_sends_the_message_to_the_dlq_after_its_max_attempts() -> Result<()> {
    if skipped("compat_grpc") {
        return Ok(());
    }
    let py = python();
    let (topic, group) = ("Grpc5Dlq", "Grpc5DlqGroup");
    let (_ns, _broker, endpoint, wire) = cluster_with(topic, 1, None).await?;
    // Two deliveries at most (retryMaxTimes 1).
    let mut sg = common::subscription::SubscriptionGroupConfig::new(group);
    sg.retry_max_times = 1;
    let resp = wire
        .call(
            RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(serde_json::to_vec(&sg)?),
        )
        .await?;
    ensure!(resp.response_code() == ResponseCode::SUCCESS, "{:?}", resp.remark);
    let consumer = Consumer::start(&py, &endpoint, topic, group, "simple", &["--fail-all"])?;
    let ids = send_4x(&wire, topic, 1, &["doomed".to_owned()]).await?;
    let dlq = common::topic::dlq_topic(group);
    let arrived = tests::eventually(Duration::from_secs(60), "the message in the DLQ", || async {
        (wire.max_offset(&dlq, 0).await.ok()? >= 1).then_some(())
    })
    .await;
    let out = consumer.stop()?;
    arrived.with_context(|| out.describe())?;
    let deliveries = by_body(&out.lines, "received");
    ensure!(deliveries.get("doomed") == Some(&vec![1, 2]), "deliveries {deliveries:?}\n{}", out.describe());
    // The DLQ is write-only, as RocketMQ makes it; an operator opens it to read.
    create_topic(&wire, &dlq, 1, None).await?;
    let dead = read_all(&wire, &dlq, 1).await?;
    ensure!(dead.len() == 1, "{} dead letters", dead.len());
    ensure!(&dead[0].body[..] == b"doomed" && prop(&dead[0], keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == ids["doomed"]);
    Ok(())
}

/// A gRPC receive of up to 32 messages of `topic` for `group` (every tag), hidden for
/// `invisible_s`, waiting up to `poll_s`: the status and the messages.
async fn receive(
    c: &mut MessagingServiceClient<tonic::transport::Channel>,
    topic: &str,
    group: &str,
    invisible_s: i64,
    poll_s: i64,
) -> Result<(Code, Vec<pb::Message>)> {
    let every_tag = pb::FilterExpression { r#type: pb::FilterType::Tag as i32, expression: "*".into() };
    receive_with(c, topic, group, every_tag, invisible_s, poll_s).await
}

/// [`receive`] with a filter expression.
async fn receive_with(
    c: &mut MessagingServiceClient<tonic::transport::Channel>,
    topic: &str,
    group: &str,
    filter: pb::FilterExpression,
    invisible_s: i64,
    poll_s: i64,
) -> Result<(Code, Vec<pb::Message>)> {
    receive_call(c, request(receive_request(topic, group, filter, invisible_s, poll_s))).await
}

fn receive_request(
    topic: &str,
    group: &str,
    filter: pb::FilterExpression,
    invisible_s: i64,
    poll_s: i64,
) -> pb::ReceiveMessageRequest {
    pb::ReceiveMessageRequest {
        group: resource(group),
        message_queue: Some(pb::MessageQueue { topic: resource(topic), id: -1, ..Default::default() }),
        filter_expression: Some(filter),
        batch_size: 32,
        invisible_duration: Some(grpc::prost_types::Duration { seconds: invisible_s, nanos: 0 }),
        auto_renew: false,
        long_polling_timeout: Some(grpc::prost_types::Duration { seconds: poll_s, nanos: 0 }),
        attempt_id: None,
    }
}

/// One ReceiveMessage call: the status and the messages.
async fn receive_call(
    c: &mut MessagingServiceClient<tonic::transport::Channel>,
    r: tonic::Request<pb::ReceiveMessageRequest>,
) -> Result<(Code, Vec<pb::Message>)> {
    let mut stream = c.receive_message(r).await?.into_inner();
    let mut status = Code::Unspecified;
    let mut messages = Vec::new();
    while let Some(item) = stream.message().await? {
        match item.content {
            Some(pb::receive_message_response::Content::Status(st)) => status = code(Some(&st)),
            Some(pb::receive_message_response::Content::Message(m)) => messages.push(m),
            _ => {}
        }
    }
    Ok((status, messages))
}

async fn ack(
    c: &mut MessagingServiceClient<tonic::transport::Channel>,
    topic: &str,
    group: &str,
    m: &pb::Message,
) -> Result<Code> {
    ack_as(c, "grpc-wire-test", topic, group, m).await
}

/// [`ack`] by the client named `client`, with the handle `m` came with.
async fn ack_as(
    c: &mut MessagingServiceClient<tonic::transport::Channel>,
    client: &str,
    topic: &str,
    group: &str,
    m: &pb::Message,
) -> Result<Code> {
    let sp = m.system_properties.as_ref().context("system properties")?;
    let r = pb::AckMessageRequest {
        group: resource(group),
        topic: resource(topic),
        entries: vec![pb::AckMessageEntry {
            message_id: sp.message_id.clone(),
            receipt_handle: sp.receipt_handle.clone().context("receipt handle")?,
            lite_topic: None,
        }],
    };
    let a = c.ack_message(request_as(client, r)).await?.into_inner();
    Ok(code(a.status.as_ref()))
}

fn body_of(m: &pb::Message) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_received_but_not_acked_before_a_kill_9_comes_back_once_after_its_invisibility() -> Result<()> {
    let (topic, group) = ("GrpcRestart", "GrpcRestartGroup");
    let (ns, broker, _, wire) = cluster_with(topic, 2, None).await?;
    let bodies: Vec<String> = (0..6).map(|i| format!("r-{i}")).collect();
    send_4x(&wire, topic, 2, &bodies).await?;

    let mut c = MessagingServiceClient::connect(format!("http://{}", broker.process.grpc_addr()?)).await?;
    let mut first = Vec::new();
    while first.len() < bodies.len() {
        let (status, got) = receive(&mut c, topic, group, 10, 5).await?;
        ensure!(status == Code::Ok, "receive answered {status:?} after {} messages", first.len());
        first.extend(got);
    }
    let received_at = std::time::Instant::now();
    ensure!(first.len() == bodies.len(), "{} received", first.len());
    // Half are acked; the broker dies before the rest are.
    let (acked, open): (Vec<_>, Vec<_>) = first.iter().partition(|m| body_of(m).ends_with(['0', '2', '4']));
    for m in &acked {
        ensure!(ack(&mut c, topic, group, m).await? == Code::Ok);
    }
    let broker = broker.restart(&ns.addr(), true)?;
    let wire = Wire::new(broker.addr());
    let mut c = MessagingServiceClient::connect(format!("http://{}", broker.process.grpc_addr()?)).await?;

    // Each unacked message once more, not before its invisibility ends, with its
    // attempt raised; no acked one.
    let mut again: Vec<pb::Message> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while again.len() < open.len() && std::time::Instant::now() < deadline {
        let (status, got) = receive(&mut c, topic, group, 10, 5).await?;
        ensure!(matches!(status, Code::Ok | Code::MessageNotFound), "receive answered {status:?}");
        if !got.is_empty() {
            ensure!(received_at.elapsed() >= Duration::from_secs(9), "visible again after {:?}", received_at.elapsed());
        }
        again.extend(got);
    }
    let mut back: Vec<String> = again.iter().map(body_of).collect();
    back.sort();
    let mut want: Vec<String> = open.iter().map(|m| body_of(m)).collect();
    want.sort();
    ensure!(back == want, "came back {back:?}, want {want:?}");
    for m in &again {
        let attempt = m.system_properties.as_ref().and_then(|p| p.delivery_attempt);
        ensure!(attempt == Some(2), "{} delivery attempt {attempt:?}", body_of(m));
        ensure!(ack(&mut c, topic, group, m).await? == Code::Ok);
    }
    pops_settled(&wire).await?;
    let (status, extra) = receive(&mut c, topic, group, 10, 5).await?;
    ensure!(
        status == Code::MessageNotFound && extra.is_empty(),
        "{status:?}: {:?}",
        extra.iter().map(body_of).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_5x_fifo_push_consumer_gets_each_message_group_in_send_order() -> Result<()> {
    if skipped("compat_grpc") {
        return Ok(());
    }
    let py = python();
    let (topic, group, queues) = ("Grpc5FifoPush", "Grpc5FifoGroup", 4);
    let (_ns, _broker, endpoint, wire) = cluster_with(topic, queues, Some("+message.type=FIFO")).await?;
    let mut sg = common::subscription::SubscriptionGroupConfig::new(group);
    sg.consume_message_orderly = true;
    let resp = wire
        .call(
            RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(serde_json::to_vec(&sg)?),
        )
        .await?;
    ensure!(resp.response_code() == ResponseCode::SUCCESS, "{:?}", resp.remark);
    let mut consumer = Consumer::start(&py, &endpoint, topic, group, "push", &[])?;

    // A 4.x orderly producer: each group's messages to the queue its name hashes to.
    let groups = ["order-a", "order-b", "order-c"];
    let per_group = 8;
    let mut sent: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for i in 0..per_group {
        for g in groups {
            let body = format!("{g}-{i}");
            let queue = common::hash::java_string_hash(g).unsigned_abs() as i32 % queues;
            let props = tests::wire::props(&[(keys::SHARDING_KEY, g), (keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &body)]);
            let r = wire.send(topic, queue, body.as_bytes(), &props).await?;
            ensure!(r.code == ResponseCode::SUCCESS, "{body}: {:?}", r.code);
            sent.entry(g).or_default().push(body);
        }
    }
    let total = groups.len() * per_group;
    let waited = consumer
        .process
        .wait_lines("every message received", CLIENT_TIMEOUT, |lines| by_body(lines, "received").len() == total);
    let out = consumer.stop()?;
    waited.with_context(|| out.describe())?;
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in out.events("received") {
        order.entry(s(v, "group").to_owned()).or_default().push(s(v, "body").to_owned());
    }
    for g in groups {
        ensure!(order.get(g) == sent.get(g), "group {g} received as {:?}, sent as {:?}", order.get(g), sent[g]);
    }
    Ok(())
}

const ACL_FILE: &str = r#"
accounts:
  - accessKey: grpcAdmin
    secretKey: admin-secret
    admin: true
  - accessKey: grpcProducer
    secretKey: producer-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms: [ "Grpc5Acl=PUB" ]
  - accessKey: grpcReader
    secretKey: reader-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms: [ "Grpc5Acl=SUB" ]
    groupPerms: [ "Grpc5AclGroup=SUB" ]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_5x_clients_sign_their_calls_and_the_brokers_acl_decides() -> Result<()> {
    if skipped("compat_grpc") {
        return Ok(());
    }
    let py = python();
    let (topic, group) = ("Grpc5Acl", "Grpc5AclGroup");
    let (_dir, ns, broker, admin) = compat_support::acl_cluster(ACL_FILE, ("grpcAdmin", "admin-secret"), topic).await?;
    let endpoint = broker.process.grpc_addr()?.to_string();
    let home = tempfile::tempdir()?;
    let mut argv = vec![compat_support::scripts_dir("python5").join("acl.py").display().to_string()];
    argv.extend(args(&[
        ("endpoint", &endpoint),
        ("topic", topic),
        ("group", group),
        ("producer", "grpcProducer:producer-secret"),
        ("consumer", "grpcReader:reader-secret"),
        ("count", "3"),
    ]));
    let out = ClientProcess::spawn(
        "python5-acl",
        &py,
        &argv,
        &home.path().join("acl"),
        &[("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")],
    )?
    .finish(CLIENT_TIMEOUT);
    out.expect_event("done")?;
    ensure!(out.events("sent").len() == 3, "{}", out.describe());
    let refused: BTreeMap<&str, (&str, i64)> =
        out.events("refused").iter().map(|v| (s(v, "step"), (s(v, "type"), v["code"].as_i64().unwrap_or(0)))).collect();
    // The client reports a refused startup as a failed route fetch; the code the
    // endpoint answered is checked below with a call of our own.
    ensure!(refused.get("wrong-secret").is_some_and(|(t, _)| *t == "Exception"), "{refused:?}\n{}", out.describe());
    ensure!(refused.get("no-pub") == Some(&("ForbiddenException", 40300)), "{refused:?}\n{}", out.describe());
    let acked: BTreeSet<&str> = out.events("acked").iter().map(|v| s(v, "body")).collect();
    ensure!(acked == BTreeSet::from(["acl-0", "acl-1", "acl-2"]), "acked {acked:?}\n{}", out.describe());
    let stored = tests::stored_bodies(&ns.addr(), topic, Some(("grpcAdmin", "admin-secret"))).await?;
    ensure!(stored.len() == 3 && stored.iter().all(|b| b.starts_with("acl-")), "stored {stored:?}");
    ensure!(compat_support::acl_denied(&admin, &broker.addr()).await.unwrap_or(0) >= 2, "refusals counted");

    // The codes themselves: a wrong signature is UNAUTHORIZED, a right one is served.
    let mut c = MessagingServiceClient::connect(format!("http://{endpoint}")).await?;
    let date = "20261207T120000Z";
    let sign = |secret: &str| {
        let creds = remoting::acl::Credentials::new("grpcProducer", secret);
        remoting::acl::GrpcAuthorization::sign(&creds, date).header_value()
    };
    for (secret, want) in [("wrong", Code::Unauthorized), ("producer-secret", Code::Ok)] {
        let mut r = request(pb::QueryRouteRequest { topic: resource(topic), endpoints: None });
        r.metadata_mut().insert("x-mq-date-time", date.parse()?);
        r.metadata_mut().insert("authorization", sign(secret).parse()?);
        let route = c.query_route(r).await?.into_inner();
        ensure!(code(route.status.as_ref()) == want, "signed with {secret}: {:?}", route.status);
    }
    let unsigned = c.query_route(request(pb::QueryRouteRequest { topic: resource(topic), endpoints: None })).await?;
    ensure!(code(unsigned.into_inner().status.as_ref()) == Code::Unauthorized, "an unsigned call is refused");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receives_apply_sql92_and_the_groups_bound_plugin_filter() -> Result<()> {
    let lua = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/lua/vip_filter.lua");
    let toml = format!(
        "[[broker.plugin_binding]]\nplugin = \"vip\"\ntopic = \"GrpcFiltered\"\ngroup = \"vip-readers\"\n\n\
         [plugins]\nwatch = false\n\n[[plugins.plugin]]\nname = \"vip\"\nkind = \"filter\"\nruntime = \"lua\"\n\
         path = {:?}\nconfig = {{ min_level = \"3\" }}\n",
        lua.display().to_string()
    );
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start_with_config(&ns.addr(), &toml, &[("ENABLE_PROPERTY_FILTER", "true")])?;
    let wire = Wire::new(broker.addr());
    let topic = "GrpcFiltered";
    create_topic(&wire, topic, 1, None).await?;
    for level in 1..=5 {
        let body = format!("level-{level}");
        let props = tests::wire::props(&[("level", &level.to_string()), (keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &body)]);
        ensure!(wire.send(topic, 0, body.as_bytes(), &props).await?.code == ResponseCode::SUCCESS);
    }
    let c = MessagingServiceClient::connect(format!("http://{}", broker.process.grpc_addr()?)).await?;
    let take = |group: &'static str, filter: pb::FilterExpression| receive_filtered(c.clone(), topic, group, filter);
    let tag = pb::FilterExpression { r#type: pb::FilterType::Tag as i32, expression: "*".into() };
    let vip = take("vip-readers", tag.clone()).await?;
    ensure!(vip == ["level-3", "level-4", "level-5"], "the bound Lua filter let through {vip:?}");
    let sql = pb::FilterExpression { r#type: pb::FilterType::Sql as i32, expression: "level > 4".into() };
    let high = take("sql-readers", sql).await?;
    ensure!(high == ["level-5"], "SQL92 `level > 4` let through {high:?}");
    let everyone = take("all-readers", tag).await?;
    ensure!(everyone.len() == 5, "an unbound group gets everything: {everyone:?}");
    Ok(())
}

/// The bodies one receive of `group` with `filter` brings, sorted.
async fn receive_filtered(
    mut c: MessagingServiceClient<tonic::transport::Channel>,
    topic: &str,
    group: &str,
    filter: pb::FilterExpression,
) -> Result<Vec<String>> {
    let (_, messages) = receive_with(&mut c, topic, group, filter, 30, 5).await?;
    let mut got: Vec<String> = messages.iter().map(body_of).collect();
    got.sort();
    Ok(got)
}

/// What one PullMessage brought: its status, the messages' bodies and the next offset.
struct Pulled {
    status: Code,
    bodies: Vec<String>,
    ids: Vec<String>,
    next: Option<i64>,
}

async fn pull(
    c: &mut MessagingServiceClient<tonic::transport::Channel>,
    topic: &str,
    queue_id: i32,
    offset: i64,
    tag: &str,
) -> Result<Pulled> {
    let r = pb::PullMessageRequest {
        group: resource("GrpcPullGroup"),
        message_queue: Some(pb::MessageQueue { topic: resource(topic), id: queue_id, ..Default::default() }),
        offset,
        batch_size: 32,
        filter_expression: Some(pb::FilterExpression { r#type: pb::FilterType::Tag as i32, expression: tag.into() }),
        long_polling_timeout: Some(grpc::prost_types::Duration { seconds: 5, nanos: 0 }),
    };
    let mut stream = c.pull_message(request(r)).await?.into_inner();
    let mut out = Pulled { status: Code::Unspecified, bodies: vec![], ids: vec![], next: None };
    while let Some(item) = stream.message().await? {
        match item.content {
            Some(pb::pull_message_response::Content::Status(st)) => out.status = code(Some(&st)),
            Some(pb::pull_message_response::Content::Message(m)) => {
                out.ids.push(m.system_properties.as_ref().map(|p| p.message_id.clone()).unwrap_or_default());
                out.bodies.push(body_of(&m));
            }
            Some(pb::pull_message_response::Content::NextOffset(n)) => out.next = Some(n),
            None => {}
        }
    }
    Ok(out)
}

fn queue(topic: &str, id: i32, broker: Option<&str>) -> Option<pb::MessageQueue> {
    Some(pb::MessageQueue {
        topic: resource(topic),
        id,
        broker: broker.map(|b| pb::Broker { name: b.to_owned(), ..Default::default() }),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_pull_consumers_pull_by_offset_and_keep_their_progress_where_4x_consumers_see_it() -> Result<()> {
    let (topic, group) = ("GrpcPull", "GrpcPullGroup");
    let (_ns, broker, endpoint, wire) = cluster_with(topic, 2, None).await?;
    // Queue 0: p-0, p-2, p-4 (TagA), then b-0 (TagB); queue 1: p-1, p-3, p-5.
    let bodies: Vec<String> = (0..6).map(|i| format!("p-{i}")).collect();
    let ids = send_4x(&wire, topic, 2, &bodies).await?;
    let tag_b = tests::wire::props(&[(keys::TAGS, "TagB")]);
    ensure!(wire.send(topic, 0, b"b-0", &tag_b).await?.code == ResponseCode::SUCCESS);
    let mut c = MessagingServiceClient::connect(format!("http://{endpoint}")).await?;

    // Where a queue starts and ends.
    let query = |policy: pb::QueryOffsetPolicy, timestamp: Option<grpc::prost_types::Timestamp>| {
        pb::QueryOffsetRequest { message_queue: queue(topic, 0, None), query_offset_policy: policy as i32, timestamp }
    };
    let begin = c.query_offset(request(query(pb::QueryOffsetPolicy::Beginning, None))).await?.into_inner();
    let end = c.query_offset(request(query(pb::QueryOffsetPolicy::End, None))).await?.into_inner();
    ensure!(code(begin.status.as_ref()) == Code::Ok && begin.offset == 0, "beginning: {begin:?}");
    ensure!(code(end.status.as_ref()) == Code::Ok && end.offset == 4, "end: {end:?}");
    let epoch = Some(grpc::prost_types::Timestamp { seconds: 0, nanos: 0 });
    let at = c.query_offset(request(query(pb::QueryOffsetPolicy::Timestamp, epoch))).await?.into_inner();
    ensure!(code(at.status.as_ref()) == Code::Ok && at.offset == 0, "by a time before every message: {at:?}");
    let no_time = c.query_offset(request(query(pb::QueryOffsetPolicy::Timestamp, None))).await?.into_inner();
    ensure!(code(no_time.status.as_ref()) == Code::BadRequest, "TIMESTAMP without a time: {no_time:?}");

    // A pull brings the queue's messages its filter accepts, with their ids, and the
    // offset after the last one it looked at.
    let first = pull(&mut c, topic, 0, 0, "TagA").await?;
    ensure!(first.status == Code::Ok, "first pull: {:?}", first.status);
    ensure!(first.bodies == ["p-0", "p-2", "p-4"], "TagA of queue 0: {:?}", first.bodies);
    ensure!(first.ids == [ids["p-0"].clone(), ids["p-2"].clone(), ids["p-4"].clone()], "message ids: {:?}", first.ids);
    ensure!(first.next == Some(4), "next offset after queue 0: {:?}", first.next);
    let every = pull(&mut c, topic, 0, 2, "*").await?;
    ensure!(every.bodies == ["p-4", "b-0"] && every.next == Some(4), "from offset 2, every tag: {:?}", every.bodies);

    // At the end of a queue a pull waits for the next message (long polling).
    let waiting = {
        let mut c = c.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            (pull(&mut c, "GrpcPull", 1, 3, "*").await, started.elapsed())
        })
    };
    ensure!(
        wire.send(topic, 1, b"late", &tests::wire::props(&[(keys::TAGS, "TagA")])).await?.code == ResponseCode::SUCCESS
    );
    let (late, waited) = waiting.await?;
    let late = late?;
    ensure!(late.status == Code::Ok && late.bodies == ["late"] && late.next == Some(4), "long poll: {:?}", late.bodies);
    ensure!(waited < Duration::from_secs(4), "the pull waited {waited:?}: the send did not wake it");

    // Progress: none yet, then what UpdateOffset stored, which a 4.x consumer of the
    // group reads too.
    let get = |id: i32| pb::GetOffsetRequest { group: resource(group), message_queue: queue(topic, id, None) };
    let none = c.get_offset(request(get(0))).await?.into_inner();
    ensure!(code(none.status.as_ref()) == Code::OffsetNotFound, "no progress yet: {none:?}");
    let update = pb::UpdateOffsetRequest { group: resource(group), message_queue: queue(topic, 0, None), offset: 4 };
    let stored = c.update_offset(request(update)).await?.into_inner();
    ensure!(code(stored.status.as_ref()) == Code::Ok, "update: {stored:?}");
    let back = c.get_offset(request(get(0))).await?.into_inner();
    ensure!(code(back.status.as_ref()) == Code::Ok && back.offset == 4, "stored progress: {back:?}");
    let (rc, seen, _) = wire.query_offset(group, topic, 0).await?;
    ensure!(rc == ResponseCode::SUCCESS && seen == 4, "a 4.x consumer sees {rc:?} {seen}");

    // Requests the endpoint cannot serve are refused with a reason.
    let far = pull(&mut c, topic, 0, 100, "*").await?;
    ensure!(
        far.status == Code::IllegalOffset && far.next == Some(4),
        "offset past the end: {:?} {:?}",
        far.status,
        far.next
    );
    let negative = pull(&mut c, topic, 0, -1, "*").await?;
    ensure!(negative.status == Code::IllegalOffset, "negative offset: {:?}", negative.status);
    let any = pull(&mut c, topic, -1, 0, "*").await?;
    ensure!(any.status == Code::BadRequest, "a pull names its queue: {:?}", any.status);
    let elsewhere =
        pb::GetOffsetRequest { group: resource(group), message_queue: queue(topic, 0, Some("not-this-broker")) };
    let elsewhere = c.get_offset(request(elsewhere)).await?.into_inner();
    ensure!(code(elsewhere.status.as_ref()) == Code::BadRequest, "another broker's queue: {elsewhere:?}");
    drop(broker);
    Ok(())
}

fn every_tag() -> pb::FilterExpression {
    pb::FilterExpression { r#type: pb::FilterType::Tag as i32, expression: "*".into() }
}

/// What `client` receives of `group` with an auto-renewed receive (as push consumers
/// receive).
async fn receive_renewed(
    c: &mut MessagingServiceClient<tonic::transport::Channel>,
    client: &str,
    topic: &str,
    group: &str,
) -> Result<(Code, Vec<pb::Message>)> {
    let mut r = receive_request(topic, group, every_tag(), 60, 5);
    r.auto_renew = true;
    receive_call(c, request_as(client, r)).await
}

/// A broker with one message `body` in `topic`, and that message received by
/// `client` with an auto-renewed receive (as a push consumer receives).
struct RenewedOne {
    _ns: Namesrv,
    _broker: Broker,
    wire: Wire,
    c: MessagingServiceClient<tonic::transport::Channel>,
    message: pb::Message,
}

async fn renewed_one(topic: &str, group: &str, body: &str, client: &str) -> Result<RenewedOne> {
    let (ns, broker, endpoint, wire) = cluster_with(topic, 1, None).await?;
    send_4x(&wire, topic, 1, &[body.to_owned()]).await?;
    let mut c = MessagingServiceClient::connect(format!("http://{endpoint}")).await?;
    let (status, mut got) = receive_renewed(&mut c, client, topic, group).await?;
    ensure!(status == Code::Ok && got.len() == 1, "{status:?}: {} messages", got.len());
    Ok(RenewedOne { _ns: ns, _broker: broker, wire, c, message: got.remove(0) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_renewed_message_stays_invisible_past_its_first_minute_until_it_is_acked() -> Result<()> {
    let (topic, group) = ("GrpcRenew", "GrpcRenewGroup");
    // Bound whole, so that the broker lives to the end of the test.
    let one = renewed_one(topic, group, "kept", "renew-worker").await?;
    let (wire, mut c, message) = (&one.wire, one.c.clone(), &one.message);
    let received_at = std::time::Instant::now();
    let invisible = message.system_properties.as_ref().and_then(|p| p.invisible_duration);
    ensure!(invisible.map(|d| d.seconds) == Some(60), "an auto-renewed receive hides for a minute: {invisible:?}");

    // Without renewal the message would be visible again after 60 s. Another consumer
    // of the group looks for it until well past that.
    while received_at.elapsed() < Duration::from_secs(75) {
        let poll = (75 - received_at.elapsed().as_secs() as i64).clamp(5, 20);
        let r = receive_request(topic, group, every_tag(), 30, poll);
        let (status, other) = receive_call(&mut c, request_as("renew-onlooker", r)).await?;
        ensure!(other.is_empty(), "delivered again {:?} after the first receive ({status:?})", received_at.elapsed());
    }
    // The worker acks with the handle it was given, which the renewals replaced.
    let acked = ack_as(&mut c, "renew-worker", topic, group, message).await?;
    ensure!(acked == Code::Ok, "ack with the first handle: {acked:?}");
    pops_settled(wire).await?;
    let (status, after) = receive(&mut c, topic, group, 10, 5).await?;
    ensure!(status == Code::MessageNotFound && after.is_empty(), "after the ack: {status:?}, {}", after.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departing_push_consumers_messages_come_back_at_once() -> Result<()> {
    let (topic, group) = ("GrpcRelease", "GrpcReleaseGroup");
    let one = renewed_one(topic, group, "released", "leaving-worker").await?;
    let mut c = one.c.clone();
    let left_at = std::time::Instant::now();
    let bye = pb::NotifyClientTerminationRequest { group: resource(group) };
    let bye = c.notify_client_termination(request_as("leaving-worker", bye)).await?.into_inner();
    ensure!(code(bye.status.as_ref()) == Code::Ok);

    // Back for the group's other consumers long before its minute of invisibility ends,
    // as its second delivery.
    let mut again = Vec::new();
    while again.is_empty() && left_at.elapsed() < Duration::from_secs(50) {
        let r = receive_request(topic, group, every_tag(), 30, 20);
        let (status, got) = receive_call(&mut c, request_as("staying-worker", r)).await?;
        ensure!(matches!(status, Code::Ok | Code::MessageNotFound), "receive answered {status:?}");
        again.extend(got);
    }
    ensure!(again.len() == 1 && body_of(&again[0]) == "released", "{} messages came back", again.len());
    ensure!(left_at.elapsed() < Duration::from_secs(30), "back after {:?}", left_at.elapsed());
    let attempt = again[0].system_properties.as_ref().and_then(|p| p.delivery_attempt);
    ensure!(attempt == Some(2), "delivery attempt {attempt:?}");
    Ok(())
}
