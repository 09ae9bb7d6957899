//! The SDK against a RocketMQ client we did not write, through our cluster:
//! `rocketmq-python-cvs` 2.1.0.3 (the rocketmq-client-cpp 2.1
//! core). Our producer feeds its push consumer; its producer feeds our push, lite
//! pull and pull consumers.
//!
//! The Python client scripts, the venv (`target/compat/python-venv`) and the
//! output checks come from the Python compatibility suite (`compat_python.rs`,
//! `tests/compat/python/`, `compat_support`); this file installs the venv the same
//! way, under the same lock and marker, if that suite has not yet.
//! `FERROMQ_SKIP_COMPAT=1` skips it, as it does that suite.

mod client_support;
mod compat_support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use client::consumer::{
    ConsumeContext, ConsumeFromWhere, ConsumeStatus, LitePullConsumer, LitePullOptions, PullConsumer, PullStatus,
    PushConsumer,
};
use client::{Message, MessageExt};
use serde_json::{json, Value};

use client_support::{cluster, create_topic, producer, WAIT};
use compat_support::{check_consumed, s, skipped, ClientOutput, ClientProcess};

const PACKAGE: &str = "rocketmq-python-cvs==2.1.0.3";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// The venv's interpreter, made as `compat_python.rs` makes it (same directory,
/// lock and marker, so the two suites share one install).
fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(|| make_venv().map_err(|e| format!("{e:#}"))) {
        Ok(p) => p.clone(),
        Err(e) => panic!(
            "cannot install the Python RocketMQ client ({PACKAGE}) for the interop tests:\n{e}\n\
             Needs `python3 -m venv` and pip access to PyPI. Set FERROMQ_SKIP_COMPAT=1 to skip."
        ),
    }
}

fn make_venv() -> Result<PathBuf> {
    compat_support::python_venv("python-venv", PACKAGE, "import rocketmq.client")
}

fn spawn(name: &str, script: &str, args: &[(&str, &str)], home: &tempfile::TempDir) -> Result<ClientProcess> {
    let py = python();
    let mut argv = vec![compat_support::scripts_dir("python").join(format!("{script}.py")).display().to_string()];
    argv.extend(args.iter().flat_map(|(k, v)| [format!("--{k}"), (*v).to_owned()]));
    ClientProcess::spawn(
        name,
        &py,
        &argv,
        &home.path().join(name),
        &[("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")],
    )
}

/// What a received message looks like in the compat suite's line format.
fn line(m: &MessageExt) -> Value {
    json!({
        "event": "received",
        "body": String::from_utf8_lossy(&m.body),
        "msg_id": m.msg_id(),
        "topic": m.topic,
        "tag": m.tags(),
        "keys": m.properties.get(common::properties::keys::KEYS),
        "prop": m.properties.get("compat_prop"),
        "queue_id": m.queue_id,
        "queue_offset": m.queue_offset,
    })
}

fn report(problems: Vec<String>, outputs: &[&ClientOutput]) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let outs: Vec<String> = outputs.iter().map(|o| o.describe()).collect();
    bail!("{}\n\n{}", problems.join("\n"), outs.join("\n\n"))
}

/// Our producer sends sync, async (callback), oneway, by selector, as a batch, and
/// one 6 KiB body (compressed by our producer), with tags, keys and a property; a
/// CLUSTERING push consumer of the C++ core receives each exactly once with every
/// field intact, the compressed body inflated, under the msgId our send reported.
#[tokio::test]
async fn our_producer_feeds_a_cpp_push_consumer() -> Result<()> {
    if skipped("client_interop") {
        return Ok(());
    }
    let _ = python();
    let (ns, _brokers) = cluster(&["broker-a"])?;
    let topic = "InteropRustToCpp";
    create_topic(&ns.addr(), topic, 4, 1).await?;
    let p = producer(&ns.addr(), "InteropRustPG");
    let tags = ["TagA", "TagB", "TagC"];
    let build = |mode: &str, i: usize| {
        let body = if mode == "big" {
            format!("rust-big-{i}-{}", "0123456789abcdef".repeat(384))
        } else {
            format!("rust-{mode}-{i}")
        };
        let tag = tags[i % 3];
        let keys = format!("key-{mode}-{i}");
        let msg = Message::new(topic, body.clone())
            .with_tags(tag)
            .with_keys([keys.as_str()])
            .with_property("compat_prop", format!("prop-{body}"));
        (msg, json!({"body": body, "tag": tag, "keys": keys, "prop": format!("prop-{body}"), "msg_id": ""}))
    };
    let mut sent: Vec<Value> = Vec::new();
    for i in 0..4 {
        let (m, mut v) = build("sync", i);
        v["msg_id"] = json!(p.send(m).await?.msg_id);
        sent.push(v);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..4 {
        let (m, v) = build("async", i);
        let tx = tx.clone();
        p.send_with_callback(m, move |r| {
            let _ = tx.send((v, r));
        });
    }
    drop(tx);
    while let Some((mut v, r)) = rx.recv().await {
        v["msg_id"] = json!(r?.msg_id);
        sent.push(v);
    }
    for i in 0..4 {
        let (m, v) = build("oneway", i);
        p.send_oneway(m).await?;
        sent.push(v);
    }
    for i in 0..4 {
        let (m, mut v) = build("orderly", i);
        v["msg_id"] =
            json!(p.send_with_selector(m, &client::producer::SelectByHash(format!("order-{}", i % 2))).await?.msg_id);
        sent.push(v);
    }
    let batch: Vec<(Message, Value)> = (0..4).map(|i| build("batch", i)).collect();
    let r = p.send_batch(batch.iter().map(|(m, _)| m.clone()).collect()).await?;
    for ((_, mut v), id) in batch.into_iter().zip(r.msg_id.split(',')) {
        v["msg_id"] = json!(id);
        sent.push(v);
    }
    let (m, mut v) = build("big", 0);
    v["msg_id"] = json!(p.send(m).await?.msg_id);
    sent.push(v);
    p.shutdown().await;

    let home = tempfile::tempdir()?;
    let n = sent.len().to_string();
    let consumer = spawn(
        "cpp-consumer",
        "consumer",
        &[
            ("namesrv", &ns.addr()),
            ("topic", topic),
            ("group", "InteropCppCG"),
            ("expr", "*"),
            ("model", "clustering"),
            ("expect", &n),
            ("deadline", "60"),
        ],
        &home,
    )?;
    let out = consumer.finish(CLIENT_TIMEOUT);
    out.expect_event("done")?;
    let got = out.events("received");
    let sent_refs: Vec<&Value> = sent.iter().collect();
    report(check_consumed(&sent_refs, &got, topic, |_| true), &[&out])
}

/// Runs the C++ producer (sync, oneway, orderly by `i % 2`, batch; 5 each) to the
/// end and returns its "sent" lines.
fn cpp_produce(ns: &str, topic: &str, home: &tempfile::TempDir) -> Result<ClientOutput> {
    let out = spawn(
        "cpp-producer",
        "producer",
        &[
            ("namesrv", ns),
            ("topic", topic),
            ("group", "InteropCppPG"),
            ("run", "cpp"),
            ("count", "5"),
            ("modes", "sync,oneway,orderly,batch"),
        ],
        home,
    )?
    .finish(CLIENT_TIMEOUT);
    out.expect_event("done")?;
    let sent = out.events("sent");
    if sent.len() != 20 || sent.iter().any(|v| s(v, "status") != "OK") {
        bail!("the C++ producer did not send 20 messages OK\n{}", out.describe());
    }
    Ok(out)
}

/// Collects until `n` distinct bodies arrived, then `linger` more.
async fn collect(seen: &Arc<Mutex<Vec<MessageExt>>>, n: usize, linger: Duration) -> Vec<MessageExt> {
    let deadline = Instant::now() + WAIT;
    loop {
        let distinct = seen.lock().expect("not poisoned").iter().map(|m| m.body.clone()).collect::<BTreeSet<_>>().len();
        if distinct >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(linger).await;
    seen.lock().expect("not poisoned").clone()
}

/// The C++ producer sends four ways into a topic its first send auto-creates; our
/// push consumer (all tags), a second push consumer filtering `TagA || TagB`, our
/// lite pull consumer and our pull consumer (reading every queue from 0) each get
/// their messages exactly once with tag, keys, property and msgId intact, and the
/// orderly messages in the queue the C++ selector chose.
#[tokio::test]
async fn cpp_producer_feeds_our_push_lite_pull_and_pull_consumers() -> Result<()> {
    if skipped("client_interop") {
        return Ok(());
    }
    let _ = python();
    let (ns, _brokers) = cluster(&["broker-a"])?;
    let topic = "InteropCppToRust";
    let home = tempfile::tempdir()?;
    let produced = cpp_produce(&ns.addr(), topic, &home)?;
    let sent = produced.events("sent");

    let push = |group: &'static str, expr: &'static str| {
        let seen: Arc<Mutex<Vec<MessageExt>>> = Arc::default();
        let sink = seen.clone();
        let ns = ns.addr();
        async move {
            let c = PushConsumer::builder(group)
                .namesrv(&ns)
                .subscribe(topic, expr)
                .consume_from(ConsumeFromWhere::FirstOffset)
                .on_message(move |msgs: &[MessageExt], _ctx: &ConsumeContext| {
                    sink.lock().expect("not poisoned").extend_from_slice(msgs);
                    ConsumeStatus::Success
                })
                .start()
                .await?;
            anyhow::Ok((c, seen))
        }
    };
    let (all, seen_all) = push("InteropRustAllCG", "*").await?;
    let (tagged, seen_tagged) = push("InteropRustTagCG", "TagA || TagB").await?;
    let got_all = collect(&seen_all, 20, Duration::from_secs(1)).await;
    let want_tagged = sent.iter().filter(|v| matches!(s(v, "tag"), "TagA" | "TagB")).count();
    let got_tagged = collect(&seen_tagged, want_tagged, Duration::from_millis(500)).await;
    all.shutdown().await;
    tagged.shutdown().await;

    let lite = LitePullConsumer::new(
        "InteropRustLiteCG",
        client_support::client_config(&ns.addr()),
        None,
        LitePullOptions { consume_from_where: ConsumeFromWhere::FirstOffset, ..LitePullOptions::default() },
    );
    lite.subscribe(topic, "*").await?;
    lite.start().await?;
    let mut got_lite = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got_lite.len() < 20 && Instant::now() < deadline {
        got_lite.extend(lite.poll(Duration::from_millis(500)).await?);
    }
    got_lite.extend(lite.poll(Duration::from_millis(500)).await?);
    lite.shutdown().await;

    let pull = PullConsumer::connect("InteropRustPullCG", &ns.addr());
    let mut got_pull = Vec::new();
    for mq in pull.fetch_subscribe_queues(topic).await? {
        let mut offset = 0;
        loop {
            let r = pull.pull(&mq, "*", offset, 32).await?;
            if r.status != PullStatus::Found {
                break;
            }
            offset = r.next_begin_offset;
            got_pull.extend(r.messages);
        }
    }
    pull.shutdown().await;

    let mut problems = Vec::new();
    for (who, got, wanted) in [
        ("push *", &got_all, None),
        ("push TagA || TagB", &got_tagged, Some(["TagA", "TagB"])),
        ("lite pull *", &got_lite, None),
        ("pull *", &got_pull, None),
    ] {
        let lines: Vec<Value> = got.iter().map(line).collect();
        let refs: Vec<&Value> = lines.iter().collect();
        for p in check_consumed(&sent, &refs, topic, |v| wanted.is_none_or(|w| w.contains(&s(v, "tag")))) {
            problems.push(format!("{who}: {p}"));
        }
    }
    for m in &got_pull {
        let body = String::from_utf8_lossy(&m.body);
        if let Some(i) = body.strip_prefix("cpp-orderly-").and_then(|i| i.parse::<i32>().ok()) {
            if m.queue_id != i % 2 {
                problems.push(format!("orderly message {body} in queue {} instead of {}", m.queue_id, i % 2));
            }
        }
    }
    report(problems, &[&produced])
}
