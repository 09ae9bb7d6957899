//! A RocketMQ client we did not write, installed from PyPI, against our name
//! server and broker: `rocketmq-python-cvs` 2.1.0.3, a Python binding that ships
//! `librocketmq.so`, the rocketmq-client-cpp 2.1 core.
//!
//! The venv is made once per target directory (`target/compat/python-venv`, under
//! a lock) with `python3 -m venv` and `pip install`; the client scripts are in
//! `tests/compat/python/` and print one JSON line per send or delivery. Every
//! client runs in its own process with `HOME` in a temporary directory (the C++
//! core logs there) and is judged by its lines, not its exit status: the core has
//! crashed in shutdown after finishing its work.
//!
//! `FERROMQ_SKIP_COMPAT=1` skips this file (CI never sets it); anything else that
//! keeps the client from installing fails the tests with what to do.

mod compat_support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use client::msg_trace::data::TraceRecord;
use tests::wire::Wire;
use tests::{Broker, Controller, Namesrv};

use compat_support::{
    acl_cluster, acl_denied, args, check_consumed, consumer_args, report, s, skipped, wait_route, ClientOutput,
    ClientProcess,
};

const PACKAGE: &str = "rocketmq-python-cvs==2.1.0.3";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);
/// All 18 delay levels at one second, so a retry comes back at once.
const ALL_1S: &str = "1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s";

/// The venv's interpreter, making the venv first if needed (once per target
/// directory, race-free between test processes).
///
/// # Panics
/// When the venv cannot be made: the message says what to install.
fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(|| make_venv().map_err(|e| format!("{e:#}"))) {
        Ok(p) => p.clone(),
        Err(e) => panic!(
            "cannot install the Python RocketMQ client ({PACKAGE}) for the compatibility tests:\n{e}\n\
             Needs `python3 -m venv` (Debian/Ubuntu: apt-get install python3-venv; .ci/run installs it) \
             and pip access to PyPI. Set FERROMQ_SKIP_COMPAT=1 to skip these tests on a machine without them."
        ),
    }
}

fn make_venv() -> Result<PathBuf> {
    compat_support::python_venv("python-venv", PACKAGE, "import rocketmq.client")
}

/// Starts `tests/compat/python/<script>.py` with `args`.
fn spawn(name: &str, script: &str, args: &[String], home: &tempfile::TempDir) -> Result<ClientProcess> {
    let py = python();
    let mut argv = vec![compat_support::scripts_dir("python").join(format!("{script}.py")).display().to_string()];
    argv.extend_from_slice(args);
    ClientProcess::spawn(
        name,
        &py,
        &argv,
        &home.path().join(name),
        &[("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")],
    )
}

/// Runs the producer to the end and checks every send succeeded.
fn produce(
    ns: &str,
    home: &tempfile::TempDir,
    topic: &str,
    run: &str,
    count: usize,
    modes: &str,
) -> Result<ClientOutput> {
    let n = count.to_string();
    let argv = args(&[
        ("namesrv", ns),
        ("topic", topic),
        ("group", "CompatPyPG"),
        ("run", run),
        ("count", &n),
        ("modes", modes),
    ]);
    let producer = spawn("producer", "producer", &argv, home)?;
    let out = producer.finish(CLIENT_TIMEOUT);
    out.expect_event("done")?;
    let sent = out.events("sent");
    let want = count * modes.split(',').count();
    if sent.len() != want {
        bail!("{} sends reported instead of {want}\n{}", sent.len(), out.describe());
    }
    for v in &sent {
        if s(v, "status") != "OK" {
            bail!("send not OK: {v}\n{}", out.describe());
        }
        if matches!(s(v, "mode"), "sync" | "orderly") && s(v, "msg_id").is_empty() {
            bail!("no message id for {v}\n{}", out.describe());
        }
    }
    Ok(out)
}

/// Starts the consumer script; `extra` holds `--expr`, `--model`, `--fail-once`.
fn consumer(
    name: &str,
    ns: &str,
    home: &tempfile::TempDir,
    group: &str,
    topic: &str,
    expect: usize,
    extra: &[&str],
) -> Result<ClientProcess> {
    spawn(name, "consumer", &consumer_args(ns, group, topic, expect, extra), home)
}

/// Sync, oneway, orderly (a selector picking queue `i % 2`) and batch sends with
/// tags, keys and a user property, into a topic the first send auto-creates;
/// then two CLUSTERING consumer groups, one with `TagA || TagB` and one with `*`,
/// each get exactly their messages once with every field intact.
#[tokio::test]
async fn cpp_client_sends_four_ways_and_two_groups_consume_with_tag_filter() -> Result<()> {
    if skipped("compat_python") {
        return Ok(());
    }
    let _ = python();
    let ns = Namesrv::start(&[])?;
    let _broker = Broker::start(&ns.addr(), &[])?;
    let home = tempfile::tempdir()?;
    let topic = "CompatPy";

    let produced = produce(&ns.addr(), &home, topic, "py", 6, "sync,oneway,orderly,batch")?;
    let sent = produced.events("sent");

    let tags = consumer("consumer-tags", &ns.addr(), &home, "CompatPyTags", topic, 16, &["--expr", "TagA || TagB"])?;
    let all = consumer("consumer-all", &ns.addr(), &home, "CompatPyAll", topic, 24, &["--expr", "*"])?;
    let tags = tags.finish(CLIENT_TIMEOUT);
    let all = all.finish(CLIENT_TIMEOUT);
    tags.expect_event("done")
        .and(all.expect_event("done"))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", produced.describe()))?;

    let mut problems = Vec::new();
    let got_tags = tags.events("received");
    let got_all = all.events("received");
    for p in check_consumed(&sent, &got_tags, topic, |v| matches!(s(v, "tag"), "TagA" | "TagB")) {
        problems.push(format!("group CompatPyTags: {p}"));
    }
    for p in check_consumed(&sent, &got_all, topic, |_| true) {
        problems.push(format!("group CompatPyAll: {p}"));
    }
    // The selector's queue is the queue the message is in.
    for r in got_all.iter().filter(|r| s(r, "body").starts_with("py-orderly-")) {
        let i: i64 = s(r, "body").rsplit('-').next().and_then(|i| i.parse().ok()).unwrap_or(-1);
        if r["queue_id"].as_i64() != Some(i % 2) {
            problems.push(format!("orderly message {} in queue {} instead of {}", s(r, "body"), r["queue_id"], i % 2));
        }
    }
    // One batch is one queue with consecutive offsets.
    let mut batch: Vec<(i64, i64)> = got_all
        .iter()
        .filter(|r| s(r, "body").starts_with("py-batch-"))
        .map(|r| (r["queue_id"].as_i64().unwrap_or(-1), r["queue_offset"].as_i64().unwrap_or(-1)))
        .collect();
    batch.sort_unstable();
    if batch.windows(2).any(|w| w[0].0 != w[1].0 || w[1].1 != w[0].1 + 1) {
        problems.push(format!("batch messages not consecutive in one queue: {batch:?}"));
    }
    report(problems, &[&produced, &tags, &all])
}

/// The frame rocketmq-client-cpp 2.1 sends for `send_batch` (captured on the
/// wire): SEND_MESSAGE_V2, not SEND_BATCH_MESSAGE, with the batch flag `m` as "1"
/// (which Java's `Boolean.parseBoolean` reads as false, so a Java broker stores the
/// whole batch as one message). We store its three messages. Needs no Python.
#[tokio::test]
async fn cpp_batch_frame_over_send_message_v2_stores_each_message() -> Result<()> {
    use common::properties::keys;
    let frame = std::fs::read(compat_support::scripts_dir("fixtures").join("cpp_batch_send_message_v2_request.bin"))?;
    let req = remoting::codec::decode_frame(bytes::Bytes::from(frame).slice(4..))?;
    assert_eq!(req.request_code(), remoting::RequestCode::SEND_MESSAGE_V2);
    assert_eq!(req.ext_fields.get("m"), Some("1"));
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    let sent = tests::wire::sent(w.call(req).await?)?;
    assert_eq!(sent.code, remoting::ResponseCode::SUCCESS, "{:?}", sent.remark);
    assert_eq!((sent.queue_id, sent.queue_offset), (0, 0));
    assert_eq!(sent.msg_id.split(',').count(), 3, "one offset id per message: {}", sent.msg_id);
    // Acknowledged means in the commit log; the consume queue follows a moment later.
    let p = w.pull_at_least("G", "CompatB", 0, 0, 3).await?;
    assert_eq!(p.code, remoting::ResponseCode::SUCCESS, "{:?}", p.remark);
    type Fields<'a> = (String, Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let got: Vec<Fields> = p
        .messages
        .iter()
        .map(|m| {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            (body, m.properties.get(keys::TAGS), m.properties.get(keys::KEYS), m.properties.get("compat_prop"))
        })
        .collect();
    let want: Vec<Fields> = vec![
        ("r2-batch-0".into(), Some("TagA"), Some("key-batch-0"), Some("prop-r2-batch-0")),
        ("r2-batch-1".into(), Some("TagB"), Some("key-batch-1"), Some("prop-r2-batch-1")),
        ("r2-batch-2".into(), Some("TagC"), Some("key-batch-2"), Some("prop-r2-batch-2")),
    ];
    assert_eq!(got, want);
    for m in &p.messages {
        assert!(
            m.properties.get(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX).is_some_and(|k| !k.is_empty()),
            "{:?}",
            m.properties
        );
    }
    Ok(())
}

/// Two BROADCASTING consumers of one group (subscribed before the sends, on a
/// topic created beforehand) each get every `TagA` message once.
#[tokio::test]
async fn cpp_broadcasting_consumers_each_get_every_message() -> Result<()> {
    if skipped("compat_python") {
        return Ok(());
    }
    let _ = python();
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    let topic = "CompatPyBc";
    w.create_topic(topic, 2).await?;
    wait_route(&ns.addr(), topic).await?;
    let home = tempfile::tempdir()?;

    let extra = ["--expr", "TagA", "--model", "broadcasting"];
    let mut a = consumer("broadcast-1", &ns.addr(), &home, "CompatPyBc", topic, 3, &extra)?;
    let mut b = consumer("broadcast-2", &ns.addr(), &home, "CompatPyBc", topic, 3, &extra)?;
    a.wait_event("started", Duration::from_secs(30))?;
    b.wait_event("started", Duration::from_secs(30))?;
    // A broadcasting consumer without a local offset starts at the queue's end:
    // send only once both have a pull parked on each queue.
    w.wait_parked_pulls(4, Duration::from_secs(30)).await?;

    let produced = produce(&ns.addr(), &home, topic, "bc", 9, "sync")?;
    let sent = produced.events("sent");
    let a = a.finish(CLIENT_TIMEOUT);
    let b = b.finish(CLIENT_TIMEOUT);
    let mut problems = Vec::new();
    for out in [&a, &b] {
        if let Err(e) = out.expect_event("done") {
            problems.push(e.to_string());
        }
        for p in check_consumed(&sent, &out.events("received"), topic, |v| s(v, "tag") == "TagA") {
            problems.push(format!("{}: {p}", out.name));
        }
    }
    report(problems, &[&produced, &a, &b])
}

/// A handler that fails a message once (RECONSUME_LATER) makes the C++ core send
/// it back (CONSUMER_SEND_MSG_BACK); it comes back through the group's retry topic
/// with `reconsume_times` 1 and its original topic, id, tag, keys and property.
#[tokio::test]
async fn cpp_consumer_failure_comes_back_through_the_retry_topic() -> Result<()> {
    if skipped("compat_python") {
        return Ok(());
    }
    let _ = python();
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[("MESSAGE_DELAY_LEVEL", ALL_1S)])?;
    let w = Wire::new(broker.addr());
    let topic = "CompatPyRetry";
    let group = "CompatPyRetryG";
    w.create_topic(topic, 2).await?;
    // The retry topic appears with the group's first heartbeat, after the client
    // looked its route up; the C++ core looks again only ~10 s later. Creating it
    // first keeps the test short without changing what the client sends.
    let retry = format!("%RETRY%{group}");
    w.create_topic(&retry, 1).await?;
    wait_route(&ns.addr(), topic).await?;
    wait_route(&ns.addr(), &retry).await?;
    let home = tempfile::tempdir()?;

    let produced = produce(&ns.addr(), &home, topic, "rt", 3, "sync")?;
    let sent = produced.events("sent");
    let c =
        consumer("consumer-retry", &ns.addr(), &home, group, topic, 3, &["--expr", "*", "--fail-once", "rt-sync-1"])?;
    let c = c.finish(CLIENT_TIMEOUT);
    c.expect_event("done")?;

    let mut problems = check_consumed(&sent, &c.events("received"), topic, |_| true);
    let failed = c.events("failed");
    if failed.len() != 1 || s(failed[0], "body") != "rt-sync-1" {
        problems.push(format!("expected one failed delivery of rt-sync-1, got {failed:?}"));
    }
    for r in c.events("received") {
        let want = i64::from(s(r, "body") == "rt-sync-1");
        if r["reconsume_times"].as_i64() != Some(want) {
            problems.push(format!(
                "{} delivered with reconsume_times {} instead of {want}",
                s(r, "body"),
                r["reconsume_times"]
            ));
        }
    }
    report(problems, &[&produced, &c])
}

/// The C++ core with message trace on, producing and consuming: its `Pub`,
/// `SubBefore` and `SubAfter` records land in its trace topic
/// (`rmq_sys_TRACE_DATA_<region>`, the region being the one our broker names) and
/// read back, by message id, with the groups, keys, broker and outcomes it
/// recorded. The clients stay up until the records are read (the core drops
/// records still queued when it shuts down).
#[tokio::test]
async fn cpp_client_message_trace_records_are_readable() -> Result<()> {
    if skipped("compat_python") {
        return Ok(());
    }
    let _ = python();
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[("REGION_ID", "CompatRegion")])?;
    let topic = "CompatPyTraced";
    Wire::new(broker.addr()).create_topic(topic, 2).await?;
    wait_route(&ns.addr(), topic).await?;
    let home = tempfile::tempdir()?;
    let release = home.path().join("release");
    let stay = ["--trace".to_owned(), "--stay-until".to_owned(), release.display().to_string()];

    let mut argv = args(&[
        ("namesrv", &ns.addr()),
        ("topic", topic),
        ("group", "CompatPyPG"),
        ("run", "tr"),
        ("count", "2"),
        ("modes", "sync"),
    ]);
    argv.extend(stay.iter().cloned());
    let mut producer = spawn("producer", "producer", &argv, &home)?;
    producer.wait_event("done", CLIENT_TIMEOUT)?;
    let mut argv = consumer_args(&ns.addr(), "CompatPyTracedCG", topic, 2, &[]);
    argv.extend(stay.iter().cloned());
    let mut consumer = spawn("consumer-traced", "consumer", &argv, &home)?;
    consumer.wait_event("done", CLIENT_TIMEOUT)?;
    let sent: Vec<(String, String)> = producer
        .lines
        .iter()
        .filter(|v| v["event"] == "sent")
        .map(|v| (s(v, "msg_id").to_owned(), s(v, "keys").to_owned()))
        .collect();

    let admin = client::Admin::new(config::ClientConfig::default(), Some(vec![ns.addr()]));
    let trace_topic = "rmq_sys_TRACE_DATA_CompatRegion";
    let mut problems = Vec::new();
    for (id, keys) in &sent {
        let found = tests::eventually(Duration::from_secs(30), "the C++ client's trace records", || async {
            let records = admin.query_msg_trace(trace_topic, id, 64, 0, i64::MAX).await.ok()?;
            let kinds: Vec<&str> = records.iter().map(|(r, _)| kind(r)).collect();
            (kinds.contains(&"Pub") && kinds.contains(&"SubBefore") && kinds.contains(&"SubAfter")).then_some(records)
        })
        .await;
        let records = match found {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{id}: {e}"));
                continue;
            }
        };
        for (r, _host) in &records {
            let ok = match r {
                TraceRecord::Pub(p) => {
                    (
                        p.group.as_str(),
                        p.topic.as_str(),
                        p.region_id.as_str(),
                        p.keys.as_deref(),
                        p.store_host.as_str(),
                        p.success,
                    ) == ("CompatPyPG", topic, "CompatRegion", Some(keys.as_str()), broker.addr().as_str(), true)
                }
                TraceRecord::SubBefore(b) => b.group == "CompatPyTracedCG" && b.keys.as_deref() == Some(keys.as_str()),
                TraceRecord::SubAfter(a) => a.success,
                TraceRecord::EndTransaction(_) => false,
            };
            if !ok {
                problems.push(format!("{id}: unexpected record {r:?}"));
            }
        }
    }
    admin.shutdown();
    std::fs::write(&release, b"")?;
    let produced = producer.finish(CLIENT_TIMEOUT);
    let consumed = consumer.finish(CLIENT_TIMEOUT);
    if sent.len() != 2 {
        problems.push(format!("{} sends instead of 2", sent.len()));
    }
    report(problems, &[&produced, &consumed])
}

fn kind(r: &TraceRecord) -> &'static str {
    match r {
        TraceRecord::Pub(_) => "Pub",
        TraceRecord::SubBefore(_) => "SubBefore",
        TraceRecord::SubAfter(_) => "SubAfter",
        TraceRecord::EndTransaction(_) => "EndTransaction",
    }
}

/// With its master killed, a `broker-a` slave serves a C++-core push consumer every
/// message the master had replicated (the route then lists only the slave).
#[tokio::test]
async fn cpp_consumer_reads_a_slave_whose_master_is_down() -> Result<()> {
    if skipped("compat_python") {
        return Ok(());
    }
    let _ = python();
    let ns = Namesrv::start(&[])?;
    let master = Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a")])?;
    let slave =
        Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a"), ("BROKER_ROLE", "SLAVE"), ("BROKER_ID", "1")])?;
    let home = tempfile::tempdir()?;
    let topic = "CompatPySlave";
    let (mw, sw) = (Wire::new(master.addr()), Wire::new(slave.addr()));
    mw.create_topic(topic, 2).await?;
    let produced = produce(&ns.addr(), &home, topic, "ha", 8, "sync")?;
    let sent = produced.events("sent");
    // The slave holds every byte and the topic (copied from the master).
    let end: i64 = mw.runtime_info().await?.get("commitLogMaxOffset").and_then(|v| v.parse().ok()).unwrap_or(-1);
    tests::eventually(Duration::from_secs(30), "the slave to catch up and know the topic", || async {
        let info = sw.runtime_info().await.ok()?;
        let max: i64 = info.get("commitLogMaxOffset")?.parse().ok()?;
        let known = sw.topic_configs().await.ok()?.contains_key(topic);
        (max >= end && info.get("dispatchBehindBytes")? == "0" && known).then_some(())
    })
    .await?;
    master.process.kill9();
    // The route of the topic names the slave alone once the name server dropped the
    // master.
    let client = remoting::RemotingClient::new(remoting::ClientConfig::default(), None);
    tests::eventually(Duration::from_secs(60), "a route with only the slave", || async {
        let r = tests::wire::route(&client, &ns.addr(), topic).await.ok()??;
        let b = r.broker_datas.first()?;
        (!b.broker_addrs.contains_key(&0) && b.broker_addrs.contains_key(&1)).then_some(())
    })
    .await?;
    let got = consumer("consumer-slave", &ns.addr(), &home, "CompatPySlaveG", topic, sent.len(), &["--expr", "*"])?;
    let got = got.finish(CLIENT_TIMEOUT);
    got.expect_event("done").map_err(|e| anyhow::anyhow!("{e}\n{}", produced.describe()))?;
    let problems = check_consumed(&sent, &got.events("received"), topic, |_| true);
    report(problems, &[&produced, &got])
}

/// rocketmq-client-cpp signs with `set_session_credentials` against a broker with
/// `aclEnable`: the right account sends and consumes; a wrong secret and an
/// account without the topic's PUB are refused, and what was refused is not stored;
/// a consumer whose account lacks the group's SUB gets nothing.
#[tokio::test]
async fn cpp_client_signs_and_is_refused_what_its_account_may_not_do() -> Result<()> {
    if skipped("compat_python") {
        return Ok(());
    }
    let _ = python();
    let topic = "CompatPyAcl";
    let (_dir, ns, broker, admin) = acl_cluster(
        "accounts:\n\
         - {accessKey: admin001, secretKey: admin-secret, admin: true}\n\
         - {accessKey: cppWriter, secretKey: writer-secret, defaultTopicPerm: DENY, defaultGroupPerm: DENY, topicPerms: [CompatPyAcl=PUB]}\n\
         - {accessKey: cppReader, secretKey: reader-secret, defaultTopicPerm: DENY, defaultGroupPerm: DENY, topicPerms: [CompatPyAcl=SUB], groupPerms: [CompatPyAclGroup=SUB]}\n",
        ("admin001", "admin-secret"),
        topic,
    )
    .await?;
    let n = ns.addr();
    let home = tempfile::tempdir()?;

    let run = |name: &str, run: &str, key: &str, secret: &str| -> Result<ClientOutput> {
        let argv = args(&[
            ("namesrv", &n),
            ("topic", topic),
            ("group", "CompatPyAclPG"),
            ("run", run),
            ("count", "5"),
            ("modes", "sync"),
            ("access-key", key),
            ("secret-key", secret),
        ]);
        Ok(spawn(name, "producer", &argv, &home)?.finish(CLIENT_TIMEOUT))
    };
    let good = run("producer-good", "good", "cppWriter", "writer-secret")?;
    let mut problems = Vec::new();
    let ok: Vec<_> = good.events("sent").into_iter().filter(|v| s(v, "status") == "OK").collect();
    if ok.len() != 5 {
        problems.push(format!("{} of 5 signed sends OK", ok.len()));
    }
    // The C++ core reports a refused send as a missing route once its retries
    // fail; the broker counts each refusal (and logs why).
    let broker_addr = broker.addr();
    let denied = || acl_denied(&admin, &broker_addr);
    let mut refused = Vec::new();
    for (name, key, secret, why) in [
        ("producer-wrong-secret", "cppWriter", "not-the-secret", "Check signature failed for accessKey=cppWriter"),
        ("producer-no-pub", "cppReader", "reader-secret", "No default permission for topic:CompatPyAcl"),
    ] {
        let before = denied().await.context("aclDenied before")?;
        let out = run(name, name, key, secret)?;
        if out.events("sent").iter().any(|v| s(v, "status") == "OK") || out.events("error").is_empty() {
            problems.push(format!("{name}: sends that should be refused ({why}) were not"));
        }
        let after = denied().await.context("aclDenied after")?;
        if after < before + 5 {
            problems.push(format!("{name}: {} refusals counted for 5 refused sends ({why})", after - before));
        }
        refused.push(out);
    }
    let want: Vec<String> = (0..5).map(|i| format!("good-sync-{i}")).collect();
    let stored = tests::stored_bodies(&n, topic, Some(("admin001", "admin-secret"))).await?;
    if stored != want {
        problems.push(format!("stored {stored:?} instead of {want:?}"));
    }

    let reader = spawn(
        "consumer-reader",
        "consumer",
        &[
            consumer_args(&n, "CompatPyAclGroup", topic, 5, &["--expr", "*"]),
            args(&[("access-key", "cppReader"), ("secret-key", "reader-secret")]),
        ]
        .concat(),
        &home,
    )?
    .finish(CLIENT_TIMEOUT);
    let sent = good.events("sent");
    for p in check_consumed(&sent, &reader.events("received"), topic, |_| true) {
        problems.push(format!("reader: {p}"));
    }
    let stranger = spawn(
        "consumer-other-group",
        "consumer",
        &[
            consumer_args(&n, "CompatPyAclOther", topic, 5, &["--expr", "*", "--deadline", "8"]),
            args(&[("access-key", "cppReader"), ("secret-key", "reader-secret")]),
        ]
        .concat(),
        &home,
    )?
    .finish(CLIENT_TIMEOUT);
    if !stranger.events("received").is_empty() {
        problems.push(format!("a group without SUB received {} messages", stranger.events("received").len()));
    }
    admin.shutdown();
    report(problems, &[&good, &refused[0], &refused[1], &reader, &stranger])
}

/// The set's master as the name servers route it (broker id 0).
async fn master_of(admin: &client::Admin, set: &str, not: Option<&str>) -> Result<String> {
    tests::eventually(Duration::from_secs(60), &format!("a master of {set}"), || async {
        let info = admin.cluster_info().await.ok()?;
        let master = info.broker_addr_table.get(set)?.broker_addrs.get(&0)?.clone();
        (Some(master.as_str()) != not).then_some(master)
    })
    .await
}

/// rocketmq-client-cpp keeps sending and consuming through a failover without a
/// restart: a broker set of three in controller mode, the C++ producer sending one
/// sync message after another and a C++ push consumer reading them, the master killed
/// with `kill -9`. The controllers elect another master, the producer is acknowledged
/// by it once it has the new route (the C++ core polls routes every 30 s), every
/// message it was acknowledged is stored and reaches the consumer, and nothing it did
/// not send is stored. Its own retries may store a message twice; those are only
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_clients_keep_sending_and_consuming_through_a_failover() -> Result<()> {
    if skipped("compat_python") {
        return Ok(());
    }
    let _ = python();
    let group = Controller::start_group(3, &[("SCAN_NOT_ACTIVE_BROKER_INTERVAL", "500ms")])?;
    let controllers: Vec<String> = group.iter().map(Controller::addr).collect();
    let ns = Namesrv::start(&[])?;
    let n = ns.addr();
    let set = "broker-cpp";
    let owned = tests::controller_mode_settings(set, &controllers.join(";"));
    let settings: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut brokers = (0..3).map(|_| Broker::start(&n, &settings)).collect::<Result<Vec<_>>>()?;
    let admin = client::Admin::new(
        config::ClientConfig { namesrv_addr: vec![n.clone()], ..config::ClientConfig::default() },
        None,
    );
    let master = master_of(&admin, set, None).await?;
    let topic = "CompatPyFailover";
    Wire::new(master.clone()).create_topic(topic, 4).await?;
    wait_route(&n, topic).await?;
    // Every broker of the set knows the topic (slaves copy it) before the kill.
    for b in &brokers {
        let w = Wire::new(b.addr());
        tests::eventually(Duration::from_secs(30), "the topic on every broker", || async {
            w.topic_configs().await.ok()?.contains_key(topic).then_some(())
        })
        .await?;
    }

    let home = tempfile::tempdir()?;
    // Started before the kill and never restarted; it stops when the test is done.
    let mut consumer = spawn(
        "consumer",
        "consumer",
        &consumer_args(&n, "CompatPyFailoverCG", topic, 1_000_000, &["--deadline", "170"]),
        &home,
    )?;
    consumer.wait_event("started", CLIENT_TIMEOUT)?;
    let stop = home.path().join("stop-sending");
    let argv = args(&[
        ("namesrv", &n),
        ("topic", topic),
        ("group", "CompatPyFailoverPG"),
        ("run", "fo"),
        ("modes", "sync"),
        ("until-file", &stop.display().to_string()),
    ]);
    let mut producer = spawn("producer", "producer", &argv, &home)?;
    let acked =
        |lines: &[serde_json::Value]| lines.iter().filter(|v| v["event"] == "sent" && s(v, "status") == "OK").count();
    producer.wait_lines("100 acknowledged sends", CLIENT_TIMEOUT, |l| acked(l) >= 100)?;

    let killed = brokers.iter().position(|b| b.addr() == master).context("the master is a broker of the set")?;
    brokers.remove(killed).process.kill9();
    let new_master = master_of(&admin, set, Some(&master)).await?;
    producer.drain();
    let before = acked(&producer.lines);
    producer
        .wait_lines("50 sends acknowledged by the new master", Duration::from_secs(120), |l| acked(l) >= before + 50)?;
    std::fs::File::create(&stop)?;
    let out = producer.finish(CLIENT_TIMEOUT);
    out.expect_event("done")?;

    let sent = out.events("sent");
    let acked_bodies: std::collections::BTreeSet<&str> =
        sent.iter().filter(|v| s(v, "status") == "OK").map(|v| s(v, "body")).collect();
    let last = sent.iter().chain(out.events("error").iter()).filter_map(|v| v["index"].as_u64()).max().unwrap_or(0);
    let attempted: std::collections::BTreeSet<String> = (0..=last).map(|i| format!("fo-sync-{i}")).collect();
    let stored = tests::stored_bodies(&n, topic, None).await?;
    let stored_set: std::collections::BTreeSet<&str> = stored.iter().map(String::as_str).collect();
    let missing: Vec<&&str> = acked_bodies.iter().filter(|b| !stored_set.contains(**b)).collect();
    let invented: Vec<&&str> = stored_set.iter().filter(|b| !attempted.contains(**b)).collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("{} acknowledged messages not stored on {new_master}: {missing:?}", missing.len()));
    }
    if !invented.is_empty() {
        problems.push(format!("stored messages the producer never sent: {invented:?}"));
    }
    let all_received = |lines: &[serde_json::Value]| {
        let got: std::collections::BTreeSet<&str> =
            lines.iter().filter(|v| v["event"] == "received").map(|v| s(v, "body")).collect();
        acked_bodies.iter().all(|b| got.contains(b))
    };
    if let Err(e) = consumer.wait_lines("every acknowledged message received", Duration::from_secs(120), all_received) {
        problems.push(format!("{e:#}"));
    }
    let consumed = consumer.finish(Duration::ZERO);
    println!(
        "cpp failover: {} acknowledged ({} after the new master), {} stored, {} stored twice, {} sends failed, {} deliveries",
        acked_bodies.len(),
        acked(&out.lines) - before,
        stored.len(),
        stored.len() - stored_set.len(),
        out.events("error").len(),
        consumed.events("received").len()
    );
    drop(group);
    report(problems, &[&out, &consumed])
}

/// Runs `ferromq-admin -n <ns> <args>` (the `plugin build` of it with the example
/// plugins' target directory, whose dependencies are already built); fails on a
/// non-zero exit with the output.
fn admin_ok(ns: &str, args: &[&str]) -> Result<String> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(tests::binary("ferromq-admin"))
        .arg("-n")
        .arg(ns)
        .args(args)
        .env_remove("NAMESRV_ADDR")
        .env("CARGO_TARGET_DIR", workspace.join("target/wasm-examples"))
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "ferromq-admin {args:?} failed: {text}");
    Ok(text)
}

fn wasm_target_installed() -> bool {
    let Ok(out) = std::process::Command::new("rustc").args(["--print", "sysroot"]).output() else { return false };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    std::path::Path::new(&sysroot).join("lib/rustlib/wasm32-unknown-unknown/lib").is_dir()
}

/// A plugin author's whole loop against a stock client: `plugin new` scaffolds a
/// Rust filter, `plugin build` builds it to WASM, `plugin test` shows its verdicts,
/// `plugin deploy` sends it (configured to keep `TagA`) to a two-broker cluster and
/// `plugin bind` binds it to one consumer group. The C++ client's consumer of that
/// group receives exactly the TagA messages; another group receives all of them.
#[tokio::test]
async fn cpp_consumer_of_a_group_bound_to_a_scaffolded_deployed_filter() -> Result<()> {
    if skipped("compat_python") {
        return Ok(());
    }
    if !wasm_target_installed() {
        eprintln!("skipping: wasm32-unknown-unknown is not installed (rustup target add wasm32-unknown-unknown)");
        return Ok(());
    }
    let _ = python();
    let work = tempfile::tempdir()?;
    let project = work.path().join("tag-filter");
    let project_arg = project.to_str().context("utf-8 path")?;
    let dir_arg = work.path().to_str().context("utf-8 path")?;
    let ns = Namesrv::start(&[])?;
    let n = ns.addr();
    admin_ok(&n, &["plugin", "new", "filter", "tag-filter", "--dir", dir_arg])?;
    let built = admin_ok(&n, &["plugin", "build", project_arg])?;
    anyhow::ensure!(built.contains("tag-filter 0.1.0 (filter"), "{built}");
    let tested = admin_ok(&n, &["plugin", "test", project_arg, "--json"])?;
    let verdicts: Vec<String> = serde_json::from_str::<serde_json::Value>(&tested)?
        .as_array()
        .context("a table")?
        .iter()
        .filter(|r| r["Message"].is_number())
        .map(|r| r["Verdict"].as_str().unwrap_or_default().to_owned())
        .collect();
    anyhow::ensure!(verdicts == ["deliver", "reject", "deliver"], "{tested}");
    // What the plugin logged while it ran (its init names the tag it keeps).
    anyhow::ensure!(tested.contains("delivering messages tagged vip"), "{tested}");

    let cluster = "CompatPluginCluster";
    let topic = "CompatPyPlugin";
    let _brokers: Vec<Broker> = ["broker-c1", "broker-c2"]
        .iter()
        .map(|b| Broker::start(&n, &[("BROKER_NAME", b), ("BROKER_CLUSTER_NAME", cluster)]))
        .collect::<Result<_>>()?;
    tests::eventually(Duration::from_secs(20), "both brokers in the cluster", || async {
        let out = admin_ok(&n, &["clusterList"]).ok()?;
        (out.contains("broker-c1") && out.contains("broker-c2")).then_some(())
    })
    .await?;
    admin_ok(&n, &["updateTopic", "-t", topic, "--clusterName", cluster, "-r", "2", "-w", "2"])?;
    wait_route(&n, topic).await?;
    let deployed = admin_ok(&n, &["plugin", "deploy", project_arg, "--set", "tag=TagA", "--clusterName", cluster])?;
    anyhow::ensure!(deployed.matches("deployed").count() == 2, "{deployed}");
    admin_ok(&n, &["plugin", "bind", "tag-filter", "-t", topic, "-g", "CompatPyPluginTagA", "--clusterName", cluster])?;

    let home = tempfile::tempdir()?;
    let produced = produce(&n, &home, topic, "py", 12, "sync")?;
    let sent = produced.events("sent");
    let tag_a = sent.iter().filter(|v| s(v, "tag") == "TagA").count();
    let filtered = consumer("consumer-plugin", &n, &home, "CompatPyPluginTagA", topic, tag_a, &["--expr", "*"])?;
    let all = consumer("consumer-all", &n, &home, "CompatPyPluginAll", topic, sent.len(), &["--expr", "*"])?;
    let filtered = filtered.finish(CLIENT_TIMEOUT);
    let all = all.finish(CLIENT_TIMEOUT);
    filtered
        .expect_event("done")
        .and(all.expect_event("done"))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", produced.describe()))?;
    let mut problems = Vec::new();
    for p in check_consumed(&sent, &filtered.events("received"), topic, |v| s(v, "tag") == "TagA") {
        problems.push(format!("group CompatPyPluginTagA: {p}"));
    }
    for p in check_consumed(&sent, &all.events("received"), topic, |_| true) {
        problems.push(format!("group CompatPyPluginAll: {p}"));
    }
    report(problems, &[&produced, &filtered, &all])
}
