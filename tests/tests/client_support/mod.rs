//! Shared by the client SDK suites (`client_producer.rs`, `client_pull.rs`,
//! `client_discovery.rs`, `client_interop.rs`): clusters of real processes, topic
//! creation through the SDK's [`client::Admin`], and reading back what a broker
//! stored with hand-built pulls ([`tests::wire`]), so the SDK is checked against
//! the broker's bytes and not against itself.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use client::{Admin, MessageExt, Producer, ProducerOptions};
use tests::wire::Wire;
use tests::{eventually, Broker, Namesrv};

/// Long enough for a broker registration and a route lookup on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// A name server and brokers named `names` (one cluster).
pub fn cluster(names: &[&str]) -> Result<(Namesrv, Vec<Broker>)> {
    let ns = Namesrv::start(&[])?;
    let mut brokers = Vec::new();
    for name in names {
        brokers.push(Broker::start(&ns.addr(), &[("BROKER_NAME", name)])?);
    }
    Ok((ns, brokers))
}

/// Client settings naming `namesrv` in the config (not in code).
pub fn client_config(namesrv: &str) -> config::ClientConfig {
    config::ClientConfig { namesrv_addr: vec![namesrv.to_owned()], ..config::ClientConfig::default() }
}

/// Creates `topic` with `queues` queues on every broker of the cluster and waits
/// until the name server routes it to `brokers` brokers.
pub async fn create_topic(namesrv: &str, topic: &str, queues: i32, brokers: usize) -> Result<()> {
    let admin = Admin::new(client_config(namesrv), None);
    eventually(WAIT, &format!("{brokers} brokers registered"), || async {
        let info = admin.cluster_info().await.ok()?;
        (info.broker_addr_table.len() >= brokers).then_some(())
    })
    .await?;
    admin.create_topic(topic, queues, None).await.with_context(|| format!("creating {topic}"))?;
    eventually(WAIT, &format!("the route of {topic} on {brokers} brokers"), || async {
        let r = admin.topic_route(topic).await.ok()?;
        (r.queue_datas.len() >= brokers).then_some(())
    })
    .await?;
    admin.shutdown();
    Ok(())
}

/// A started producer of `group` with the name server set in code.
pub fn producer(namesrv: &str, group: &str) -> Producer {
    Producer::new(group, config::ClientConfig::default(), Some(vec![namesrv.to_owned()]), ProducerOptions::default())
}

/// Every message stored in `topic`'s queues `0..queues` on `broker`, by queue and
/// offset (read with inline-subscription pulls, no consumer group state).
pub async fn stored(broker: &str, topic: &str, queues: i32) -> Result<Vec<MessageExt>> {
    let w = Wire::new(broker.to_owned());
    let mut out = Vec::new();
    for q in 0..queues {
        let max = w.max_offset(topic, q).await?;
        let mut offset = 0;
        while offset < max {
            let p = w.pull_at_least("ClientTestReader", topic, q, offset, 1).await?;
            offset = p.next_begin_offset;
            out.extend(p.messages);
        }
    }
    Ok(out)
}

/// [`stored`] once at least `n` messages are indexed: a send is answered once it
/// is in the commit log, and the consume queue follows a moment later.
pub async fn stored_at_least(broker: &str, topic: &str, queues: i32, n: usize) -> Result<Vec<MessageExt>> {
    eventually(WAIT, &format!("{n} messages of {topic} on {broker}"), || async {
        stored(broker, topic, queues).await.ok().filter(|v| v.len() >= n)
    })
    .await
}

/// [`stored_at_least`] keyed by UNIQ_KEY (the producer's msgId).
pub async fn stored_by_uniq_key(
    broker: &str,
    topic: &str,
    queues: i32,
    n: usize,
) -> Result<BTreeMap<String, Vec<MessageExt>>> {
    let mut by_key: BTreeMap<String, Vec<MessageExt>> = BTreeMap::new();
    for m in stored_at_least(broker, topic, queues, n).await? {
        by_key.entry(m.properties.uniq_key().unwrap_or_default().to_owned()).or_default().push(m);
    }
    Ok(by_key)
}

/// Kills a broker with SIGKILL, keeping its store directory for the test's life.
pub fn kill9(b: Broker) -> tempfile::TempDir {
    let Broker { process, home, .. } = b;
    process.kill9();
    home
}

/// The text of a body.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every message a listener was handed, in arrival order.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<MessageExt>>>;

/// A push consumer of `group` on `topic` (`expr` a TAG expression) from the first
/// offset, rebalancing every second, that records what it receives and answers
/// success; heartbeats every second too, so brokers see it at once.
pub async fn recording_consumer(
    namesrv: &str,
    group: &str,
    topic: &str,
    expr: &str,
) -> Result<(client::consumer::PushConsumer, Received)> {
    use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
    let seen: Received = Received::default();
    let sink = seen.clone();
    let consumer = PushConsumer::builder(group)
        .namesrv(namesrv)
        .subscribe(topic, expr)
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| o.rebalance_interval = Duration::from_secs(1))
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            sink.lock().expect("not poisoned").extend_from_slice(msgs);
            ConsumeStatus::Success
        })
        .start()
        .await?;
    Ok((consumer, seen))
}

/// Runs `ferromq-admin -n <ns> <args>`: (exit success, stdout + stderr).
pub fn admin_cli(ns: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = std::process::Command::new(tests::binary("ferromq-admin"))
        .arg("-n")
        .arg(ns)
        .args(args)
        .env_remove("NAMESRV_ADDR")
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Runs a `ferromq-admin` verb that must succeed; returns its output.
pub fn admin_ok(ns: &str, args: &[&str]) -> Result<String> {
    let (success, out) = admin_cli(ns, args)?;
    anyhow::ensure!(success, "ferromq-admin {args:?} failed: {out}");
    Ok(out)
}

/// Runs a `ferromq-admin` verb that must fail; returns its output.
pub fn admin_fails(ns: &str, args: &[&str]) -> Result<String> {
    let (success, out) = admin_cli(ns, args)?;
    anyhow::ensure!(!success, "ferromq-admin {args:?} should have failed: {out}");
    Ok(out)
}
