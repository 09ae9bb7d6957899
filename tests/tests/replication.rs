//! Master/slave replication with real processes: a name server, a master and one or
//! two slaves of `broker-a` on ephemeral ports. Faults are injected as they happen —
//! `kill -9`, SIGSTOP/SIGCONT — and every fault test ends by comparing what was
//! acknowledged with what the slave can give back: nothing missing, nothing invented.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::properties::keys;
use common::sysflag::message as sysflag;
use remoting::header::broker::{EndTransactionRequestHeader, UpdateConsumerOffsetRequestHeader};
use remoting::{RemotingCommand, RequestCode, ResponseCode};
use replication::status::HaRuntimeInfo;
use tests::wire::{props, Wire};
use tests::{eventually, Broker, Namesrv};

const WAIT: Duration = Duration::from_secs(30);

/// A master of `broker-a` with `role` and `slaves` slaves, all registered with one
/// name server; returns once every slave is connected to the master.
struct Pair {
    ns: Namesrv,
    master: Broker,
    slaves: Vec<Broker>,
}

fn slave_settings(id: usize, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut s = vec![
        ("BROKER_NAME".to_owned(), "broker-a".to_owned()),
        ("BROKER_ROLE".to_owned(), "SLAVE".to_owned()),
        ("BROKER_ID".to_owned(), id.to_string()),
    ];
    s.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    s
}

fn start_slave(ns: &str, id: usize, extra: &[(&str, &str)]) -> Result<Broker> {
    let owned = slave_settings(id, extra);
    let refs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Broker::start(ns, &refs)
}

async fn pair(role: &str, slaves: usize, extra: &[(&str, &str)]) -> Result<Pair> {
    let ns = Namesrv::start(&[])?;
    let mut settings = vec![("BROKER_NAME", "broker-a"), ("BROKER_ROLE", role)];
    settings.extend_from_slice(extra);
    let master = Broker::start(&ns.addr(), &settings)?;
    let mut list = Vec::new();
    for id in 1..=slaves {
        list.push(start_slave(&ns.addr(), id, extra)?);
    }
    let w = Wire::new(master.addr());
    wait_slaves(&w, slaves).await?;
    Ok(Pair { ns, master, slaves: list })
}

async fn ha_status(w: &Wire) -> Result<HaRuntimeInfo> {
    let resp = w.call(RemotingCommand::request(RequestCode::GET_BROKER_HA_STATUS)).await?;
    ensure!(resp.response_code() == ResponseCode::SUCCESS, "haStatus: {:?}", resp.remark);
    Ok(serde_json::from_slice(&resp.body_bytes())?)
}

async fn wait_slaves(master: &Wire, n: usize) -> Result<HaRuntimeInfo> {
    eventually(WAIT, &format!("{n} slave(s) connected"), || async {
        ha_status(master).await.ok().filter(|s| s.master && s.ha_connection_info.len() == n)
    })
    .await
}

/// Waits until the slave has copied `topic` from its master (every 10 s, and once
/// at registration): a slave serves pulls only for topics it knows.
async fn slave_knows(slave: &Wire, topic: &str) -> Result<()> {
    eventually(WAIT, &format!("the slave to know {topic}"), || async {
        slave.topic_configs().await.ok()?.contains_key(topic).then_some(())
    })
    .await
}

/// The commit-log end a broker reports.
async fn max_offset(w: &Wire) -> Result<i64> {
    let info = w.runtime_info().await?;
    info.get("commitLogMaxOffset").context("commitLogMaxOffset")?.parse().context("a number")
}

/// Waits until the slave holds and has dispatched everything up to `end`.
async fn caught_up(slave: &Wire, end: i64) -> Result<()> {
    eventually(WAIT, &format!("the slave to hold and dispatch up to {end}"), || async {
        let info = slave.runtime_info().await.ok()?;
        let max: i64 = info.get("commitLogMaxOffset")?.parse().ok()?;
        let behind: i64 = info.get("dispatchBehindBytes")?.parse().ok()?;
        (max >= end && behind == 0).then_some(())
    })
    .await
}

/// A message acknowledged by the master, and what the slave must give back for it.
#[derive(Debug, Clone)]
struct Acked {
    body: String,
    queue_id: i32,
    queue_offset: i64,
    commit_log_offset: i64,
}

/// What a load sent: every SEND_OK, and every body it tried to send.
#[derive(Default)]
struct Sent {
    acked: Vec<Acked>,
    attempted: BTreeSet<String>,
}

/// Sends from `tasks` concurrent senders, one request in flight each, until `stop`;
/// records every SEND_OK.
fn load(w: &Wire, topic: &str, tasks: usize, tag: &str, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Sent>> {
    (0..tasks)
        .map(|t| {
            let (w, topic, tag, stop) = (w.clone(), topic.to_owned(), tag.to_owned(), stop.clone());
            tokio::spawn(async move {
                let mut sent = Sent::default();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("{tag}-{t}-{i}");
                    i += 1;
                    sent.attempted.insert(body.clone());
                    let p = props(&[("body", &body), (keys::KEYS, &body)]);
                    let Ok(s) = w.send(&topic, (t % 4) as i32, body.as_bytes(), &p).await else { continue };
                    if s.code == ResponseCode::SUCCESS {
                        let Ok((_, commit_log_offset)) = common::msgid::decode_offset_msg_id(&s.msg_id) else {
                            continue;
                        };
                        sent.acked.push(Acked {
                            body,
                            queue_id: s.queue_id,
                            queue_offset: s.queue_offset,
                            commit_log_offset,
                        });
                    }
                }
                sent
            })
        })
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Sent>>) -> Result<Sent> {
    let mut all = Sent::default();
    for h in handles {
        let s = h.await?;
        all.acked.extend(s.acked);
        all.attempted.extend(s.attempted);
    }
    Ok(all)
}

/// Every message of `topic`'s `queues` on `broker`, read from the start.
async fn everything(broker: &Wire, topic: &str, queues: i32) -> Result<Vec<String>> {
    let mut got = Vec::new();
    for q in 0..queues {
        let mut offset = 0;
        loop {
            let p = broker.pull("HaReaders", topic, q, offset, "*", "TAG", 0).await?;
            if p.messages.is_empty() {
                break;
            }
            offset = p.next_begin_offset;
            got.extend(p.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
        }
    }
    Ok(got)
}

/// Nothing invented: every message the slave holds was sent (acknowledged, or in
/// flight when the master died), and none twice.
async fn nothing_invented(slave: &Wire, topic: &str, sent: &Sent) -> Result<()> {
    let held = everything(slave, topic, 4).await?;
    let distinct: BTreeSet<&String> = held.iter().collect();
    ensure!(distinct.len() == held.len(), "the slave holds {} duplicates", held.len() - distinct.len());
    let invented: Vec<&&String> = distinct.iter().filter(|b| !sent.attempted.contains(**b)).take(5).collect();
    ensure!(invented.is_empty(), "the slave holds messages nobody sent: {invented:?}");
    ensure!(held.len() >= sent.acked.len(), "the slave holds {} of {} acknowledged", held.len(), sent.acked.len());
    Ok(())
}

/// Every acknowledged message is on the slave, at the same commit-log offset (so its
/// offsetMsgId resolves there), queue and queue offset, with the same body and
/// properties.
async fn check_acked_on(slave: &Wire, topic: &str, acked: &[Acked]) -> Result<()> {
    let mut problems = Vec::new();
    for a in acked {
        match slave.view_message(a.commit_log_offset).await? {
            None => problems.push(format!("{} at {} is missing", a.body, a.commit_log_offset)),
            Some(m) => {
                let ok = m.topic == topic
                    && m.body == a.body.as_bytes()
                    && m.queue_id == a.queue_id
                    && m.queue_offset == a.queue_offset
                    && m.commit_log_offset == a.commit_log_offset
                    && m.properties.get("body") == Some(a.body.as_str())
                    && m.properties.get(keys::KEYS) == Some(a.body.as_str());
                if !ok {
                    problems.push(format!("{a:?} reads back as {m:?}"));
                }
            }
        }
        if problems.len() > 10 {
            break;
        }
    }
    ensure!(
        problems.is_empty(),
        "{} of {} acknowledged messages wrong on the slave:\n{}",
        problems.len(),
        acked.len(),
        problems.join("\n")
    );
    let mut by_queue: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for a in acked {
        ensure!(
            by_queue.entry(a.queue_id).or_default().insert(a.queue_offset),
            "queue offset acknowledged twice: {a:?}"
        );
    }
    Ok(())
}

/// SYNC_MASTER and one slave under 64 sends in flight; the master is killed with
/// SIGKILL mid-load. Every SEND_OK is on the slave, byte for byte where it matters.
/// Three rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_killed_mid_load_loses_nothing_it_acknowledged() -> Result<()> {
    for round in 0..3 {
        let Pair { ns: _ns, master, slaves } = pair("SYNC_MASTER", 1, &[]).await?;
        let mw = Wire::new(master.addr());
        let sw = Wire::new(slaves[0].addr());
        let topic = "HaSync";
        mw.create_topic(topic, 4).await?;
        slave_knows(&sw, topic).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let handles = load(&mw, topic, 64, &format!("r{round}"), stop.clone());
        eventually(WAIT, "sends acknowledged before the kill", || async {
            (max_offset(&mw).await.ok()? > 400_000).then_some(())
        })
        .await?;
        master.process.kill9();
        stop.store(true, Ordering::Relaxed);
        let sent = collect(handles).await?;
        ensure!(sent.acked.len() > 1000, "round {round}: only {} sends acknowledged", sent.acked.len());
        let end = sent.acked.iter().map(|a| a.commit_log_offset).max().unwrap_or(0);
        caught_up(&sw, end + 1).await?;
        check_acked_on(&sw, topic, &sent.acked).await.with_context(|| format!("round {round}"))?;
        nothing_invented(&sw, topic, &sent).await.with_context(|| format!("round {round}"))?;
    }
    Ok(())
}

/// SYNC_MASTER with its slave frozen (SIGSTOP): sends answer FLUSH_SLAVE_TIMEOUT
/// within `sync_flush_timeout` — every one of many at once, nothing hangs; after
/// SIGCONT they succeed again; with the slave killed they answer
/// SLAVE_NOT_AVAILABLE. Every one of these sends is stored (the codes are stored
/// statuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_answers_for_a_frozen_then_dead_slave() -> Result<()> {
    let timeout = Duration::from_secs(1);
    let Pair { ns: _ns, master, slaves } = pair("SYNC_MASTER", 1, &[("STORE__SYNC_FLUSH_TIMEOUT", "1s")]).await?;
    let w = Wire::new(master.addr());
    w.create_topic("HaStop", 1).await?;
    let ok = w.send("HaStop", 0, b"before", &props(&[])).await?;
    ensure!(ok.code == ResponseCode::SUCCESS, "{:?}", ok.remark);

    slaves[0].process.pause();
    let started = Instant::now();
    let sends: Vec<_> = (0..32)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move { w.send("HaStop", 0, format!("frozen-{i}").as_bytes(), &props(&[])).await })
        })
        .collect();
    for s in sends {
        let s = s.await??;
        ensure!(s.code == ResponseCode::FLUSH_SLAVE_TIMEOUT, "frozen slave: {:?} {:?}", s.code, s.remark);
        ensure!(s.queue_offset >= 1, "a FLUSH_SLAVE_TIMEOUT send is stored and says where");
    }
    let took = started.elapsed();
    ensure!(took < timeout * 4, "32 sends took {took:?} with a {timeout:?} sync_flush_timeout");

    slaves[0].process.resume();
    eventually(WAIT, "sends to succeed once the slave runs again", || async {
        let s = w.send("HaStop", 0, b"after", &props(&[])).await.ok()?;
        (s.code == ResponseCode::SUCCESS).then_some(())
    })
    .await?;

    let mut slaves = slaves;
    slaves.remove(0).process.kill9();
    let s = eventually(WAIT, "SLAVE_NOT_AVAILABLE once the slave is gone", || async {
        let s = w.send("HaStop", 0, b"alone", &props(&[])).await.ok()?;
        (s.code == ResponseCode::SLAVE_NOT_AVAILABLE).then_some(s)
    })
    .await?;
    ensure!(s.queue_offset > 0, "a SLAVE_NOT_AVAILABLE send is stored");
    Ok(())
}

/// ASYNC_MASTER with two slaves: both converge to the master's end once the load
/// stops, and a consumer reading from a slave after the master is killed receives
/// every message the slave holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_slaves_converge_and_serve_after_the_master_dies() -> Result<()> {
    let Pair { ns: _ns, master, slaves } = pair("ASYNC_MASTER", 2, &[]).await?;
    let (mw, sw) = (Wire::new(master.addr()), Wire::new(slaves[0].addr()));
    let other = Wire::new(slaves[1].addr());
    let topic = "HaAsync";
    mw.create_topic(topic, 4).await?;
    slave_knows(&sw, topic).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(&mw, topic, 16, "a", stop.clone());
    eventually(WAIT, "some load", || async { (max_offset(&mw).await.ok()? > 200_000).then_some(()) }).await?;
    stop.store(true, Ordering::Relaxed);
    let sent = collect(handles).await?;
    let end = max_offset(&mw).await?;
    caught_up(&sw, end).await?;
    caught_up(&other, end).await?;
    ensure!(max_offset(&sw).await? == end, "the slave converged past the master's end");
    let status = eventually(WAIT, "both slaves to report the end", || async {
        let s = ha_status(&mw).await.ok()?;
        s.ha_connection_info.iter().all(|c| c.diff == 0 && c.in_sync).then_some(s)
    })
    .await?;
    ensure!(status.ha_connection_info.len() == 2 && status.in_sync_slave_nums == 2, "{status:?}");

    master.process.kill9();
    // Every queue from the start, as a consumer of the slave reads it: with the load
    // stopped before the kill, every send was answered, so the slave holds exactly
    // the acknowledged messages.
    let got: BTreeSet<String> = everything(&sw, topic, 4).await?.into_iter().collect();
    let acked: BTreeSet<String> = sent.acked.iter().map(|a| a.body.clone()).collect();
    ensure!(got == acked, "the slave served {} messages, {} were acknowledged", got.len(), acked.len());
    Ok(())
}

/// A slave killed mid-stream and restarted resumes from its own end: after the load
/// its commit log is the master's, byte for byte, with no duplicate and no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_slave_resumes_byte_for_byte() -> Result<()> {
    let Pair { ns, master, mut slaves } = pair("ASYNC_MASTER", 1, &[]).await?;
    let mw = Wire::new(master.addr());
    mw.create_topic("HaResume", 4).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(&mw, "HaResume", 16, "x", stop.clone());
    eventually(WAIT, "load before the restart", || async { (max_offset(&mw).await.ok()? > 300_000).then_some(()) })
        .await?;
    let slave = slaves.remove(0);
    let slave = tokio::task::block_in_place(|| slave.restart(&ns.addr(), true))?;
    eventually(WAIT, "load after the restart", || async { (max_offset(&mw).await.ok()? > 900_000).then_some(()) })
        .await?;
    stop.store(true, Ordering::Relaxed);
    collect(handles).await?;
    let end = max_offset(&mw).await?;
    let sw = Wire::new(slave.addr());
    caught_up(&sw, end).await?;
    ensure!(max_offset(&sw).await? == end);
    compare_logs(&master.store_dir(), &slave.store_dir(), end)?;
    Ok(())
}

/// The two commit logs hold the same bytes up to `end`.
fn compare_logs(master: &Path, slave: &Path, end: i64) -> Result<()> {
    let files = |dir: &Path| -> Result<BTreeMap<String, std::path::PathBuf>> {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(dir.join("commitlog"))? {
            let e = e?;
            out.insert(e.file_name().to_string_lossy().into_owned(), e.path());
        }
        Ok(out)
    };
    let (m, s) = (files(master)?, files(slave)?);
    let mut compared = 0i64;
    for (name, mpath) in &m {
        let start: i64 = name.parse()?;
        if start >= end {
            continue;
        }
        let spath = s.get(name).with_context(|| format!("the slave has no segment {name}"))?;
        let (mb, sb) = (std::fs::read(mpath)?, std::fs::read(spath)?);
        let len = ((end - start) as usize).min(mb.len());
        ensure!(sb.len() >= len, "the slave's segment {name} is shorter");
        if let Some(at) = (0..len).find(|&i| mb[i] != sb[i]) {
            anyhow::bail!("segment {name} differs at byte {at} (commit-log offset {})", start + at as i64);
        }
        compared += len as i64;
    }
    ensure!(
        compared == end - m.keys().next().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0),
        "compared {compared} bytes of {end}"
    );
    Ok(())
}

/// What an operator changes on the master reaches the slave: a topic, a subscription
/// group, a committed offset and the delay levels' progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_follows_the_master() -> Result<()> {
    let Pair { ns: _ns, master, slaves } = pair("ASYNC_MASTER", 1, &[("MESSAGE_DELAY_LEVEL", "1s 2s")]).await?;
    let (mw, sw) = (Wire::new(master.addr()), Wire::new(slaves[0].addr()));
    mw.create_topic("HaMeta", 2).await?;
    let group = common::subscription::SubscriptionGroupConfig::new("HaMetaGroup");
    let body = serde_json::to_vec(&group)?;
    let r = mw.call(RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(body)).await?;
    ensure!(r.response_code() == ResponseCode::SUCCESS);
    mw.send("HaMeta", 0, b"m", &props(&[])).await?;
    mw.update_offset("HaMetaGroup", "HaMeta", 0, 1).await?;
    let d = mw.send("HaMeta", 1, b"later", &props(&[(keys::DELAY_TIME_LEVEL, "1")])).await?;
    ensure!(d.code == ResponseCode::SUCCESS);
    let delivered = eventually(WAIT, "the delayed message delivered on the master", || async {
        let offsets = mw.delay_offsets().await.ok()?;
        (offsets.get(&1).copied().unwrap_or(0) >= 1).then_some(offsets)
    })
    .await?;

    eventually(WAIT, "the slave to copy the master's metadata", || async {
        let topics = sw.topic_configs().await.ok()?;
        let groups = sw.call(RemotingCommand::request(RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG)).await.ok()?;
        let groups: serde_json::Value = serde_json::from_slice(&groups.body_bytes()).ok()?;
        let offsets = sw.call(RemotingCommand::request(RequestCode::GET_ALL_CONSUMER_OFFSET)).await.ok()?;
        let offsets: serde_json::Value = serde_json::from_slice(&offsets.body_bytes()).ok()?;
        let delay = sw.delay_offsets().await.ok()?;
        let ok = topics.get("HaMeta").is_some_and(|t| t.read_queue_nums == 2)
            && groups["subscriptionGroupTable"].get("HaMetaGroup").is_some()
            && offsets["offsetTable"]["HaMeta@HaMetaGroup"]["0"] == 1
            && delay.get(&1) == delivered.get(&1);
        ok.then_some(())
    })
    .await?;

    // A plugin deployed to and bound on the master alone reaches the slave, and so
    // does its removal.
    let script = "PLUGIN = { name = \"ha-filter\", version = \"1.0.0\", abi = 1 }\n\
                  function filter_batch(msgs, n, out, sub) for i = 1, n do out[i] = true end end\n";
    let deploy = remoting::header::plugin::DeployPluginRequestHeader {
        name: "ha-filter".into(),
        kind: "filter".into(),
        runtime: "lua".into(),
        failure_policy: None,
        config: None,
    };
    let r = mw
        .call(
            RemotingCommand::request_with(RequestCode::FERROMQ_PLUGIN_DEPLOY, &deploy)
                .with_body(script.as_bytes().to_vec()),
        )
        .await?;
    ensure!(r.response_code() == ResponseCode::SUCCESS, "{:?}", r.remark_str());
    let bind = remoting::header::plugin::BindPluginRequestHeader {
        name: "ha-filter".into(),
        topic: "HaMeta".into(),
        group: Some("HaMetaGroup".into()),
    };
    let r = mw.call(RemotingCommand::request_with(RequestCode::FERROMQ_PLUGIN_BIND, &bind)).await?;
    ensure!(r.response_code() == ResponseCode::SUCCESS, "{:?}", r.remark_str());
    let plugins = |w: &Wire| {
        let w = w.clone();
        async move {
            let r = w.call(RemotingCommand::request(RequestCode::FERROMQ_PLUGIN_LIST)).await.ok()?;
            serde_json::from_slice::<Vec<remoting::body::plugin::PluginInfo>>(&r.body_bytes()).ok()
        }
    };
    let on_master = plugins(&mw).await.context("the master's plugins")?;
    eventually(WAIT, "the slave to deploy and bind the master's plugin", || async {
        let on_slave = plugins(&sw).await?;
        let (m, s) = (on_master.first()?, on_slave.first()?);
        (s.name == "ha-filter" && s.sha256 == m.sha256 && s.bindings == m.bindings && s.state == "loaded").then_some(())
    })
    .await?;
    let r = mw.call(RemotingCommand::request_with(RequestCode::FERROMQ_PLUGIN_UNBIND, &bind)).await?;
    ensure!(r.response_code() == ResponseCode::SUCCESS, "{:?}", r.remark_str());
    let name = remoting::header::plugin::PluginNameRequestHeader { name: "ha-filter".into() };
    let r = mw.call(RemotingCommand::request_with(RequestCode::FERROMQ_PLUGIN_REMOVE, &name)).await?;
    ensure!(r.response_code() == ResponseCode::SUCCESS, "{:?}", r.remark_str());
    eventually(WAIT, "the slave to remove it too", || async { plugins(&sw).await?.is_empty().then_some(()) }).await?;
    Ok(())
}

/// A slave refuses sends (SERVICE_NOT_AVAILABLE) and END_TRANSACTION
/// (SLAVE_NOT_AVAILABLE) as RocketMQ's slaves do, and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_refuses_writes() -> Result<()> {
    let Pair { ns: _ns, master, slaves } = pair("ASYNC_MASTER", 1, &[]).await?;
    let (mw, sw) = (Wire::new(master.addr()), Wire::new(slaves[0].addr()));
    mw.create_topic("HaRefuse", 1).await?;
    let s = sw.send("HaRefuse", 0, b"to a slave", &props(&[])).await?;
    ensure!(s.code == ResponseCode::SERVICE_NOT_AVAILABLE, "{:?} {:?}", s.code, s.remark);
    ensure!(s.remark.as_deref().unwrap_or("").contains("slave"), "{:?}", s.remark);
    let h = EndTransactionRequestHeader {
        producer_group: "g".into(),
        tran_state_table_offset: 0,
        commit_log_offset: 0,
        commit_or_rollback: sysflag::TRANSACTION_COMMIT_TYPE,
        from_transaction_check: Some(false),
        msg_id: "x".into(),
        transaction_id: None,
        topic: None,
    };
    let r = sw.call(RemotingCommand::request_with(RequestCode::END_TRANSACTION, &h)).await?;
    ensure!(r.response_code() == ResponseCode::SLAVE_NOT_AVAILABLE, "{:?}", r.response_code());
    ensure!(max_offset(&sw).await? == max_offset(&mw).await?, "the slave stored something of its own");
    let u = UpdateConsumerOffsetRequestHeader {
        consumer_group: "HaRefuseGroup".into(),
        topic: "HaRefuse".into(),
        queue_id: 0,
        commit_offset: 0,
    };
    // Offsets are not messages: a slave takes them (consumers commit there while the
    // master is away).
    let r = sw.call(RemotingCommand::request_with(RequestCode::UPDATE_CONSUMER_OFFSET, &u)).await?;
    ensure!(r.response_code() == ResponseCode::SUCCESS, "{:?}", r.remark);
    Ok(())
}

/// RocketMQ's own `2m-2s-sync` and `2m-2s-async` broker-a / broker-a-s files start
/// as they ship (only addresses and paths come from the harness), and replicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmqs_sample_pairs_start_as_they_are() -> Result<()> {
    for (layout, role) in [("2m-2s-sync", "SYNC_MASTER"), ("2m-2s-async", "ASYNC_MASTER")] {
        let conf = |id: u8, role: &str| {
            format!(
                "brokerClusterName=DefaultCluster\nbrokerName=broker-a\nbrokerId={id}\ndeleteWhen=04\n\
                 fileReservedTime=48\nbrokerRole={role}\nflushDiskType=ASYNC_FLUSH\n"
            )
        };
        let ns = Namesrv::start(&[])?;
        let master = Broker::start_with_properties(&ns.addr(), &conf(0, role), &[])?;
        let slave = Broker::start_with_properties(&ns.addr(), &conf(1, "SLAVE"), &[])?;
        let (mw, sw) = (Wire::new(master.addr()), Wire::new(slave.addr()));
        let info = mw.runtime_info().await?;
        ensure!(info.get("brokerRole").map(String::as_str) == Some(role), "{layout}: {info:?}");
        wait_slaves(&mw, 1).await.with_context(|| layout.to_owned())?;
        mw.create_topic("Sample", 1).await?;
        let s = mw.send("Sample", 0, b"sample", &props(&[])).await?;
        ensure!(s.code == ResponseCode::SUCCESS, "{layout}: {:?}", s.remark);
        caught_up(&sw, max_offset(&mw).await?).await?;
        drop((master, slave));
    }
    Ok(())
}

/// A slave whose log runs past its master's — here the master came back with an
/// empty store, as an ASYNC_MASTER that lost its disk would — serves nothing past the
/// master's end, says so in its runtime info, and keeps its own bytes for the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_ahead_of_its_master_serves_nothing_the_master_lacks() -> Result<()> {
    let Pair { ns, master, slaves } = pair("ASYNC_MASTER", 1, &[]).await?;
    let (mw, sw) = (Wire::new(master.addr()), Wire::new(slaves[0].addr()));
    mw.create_topic("HaAhead", 1).await?;
    slave_knows(&sw, "HaAhead").await?;
    let mut offsets = Vec::new();
    for i in 0..20 {
        let s = mw.send("HaAhead", 0, format!("m{i}").as_bytes(), &props(&[])).await?;
        offsets.push(common::msgid::decode_offset_msg_id(&s.msg_id)?.1);
    }
    let end = max_offset(&mw).await?;
    caught_up(&sw, end).await?;
    ensure!(sw.view_message(offsets[0]).await?.is_some());

    master.process.kill9();
    let fresh = Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a"), ("BROKER_ROLE", "ASYNC_MASTER")])?;
    let info = eventually(WAIT, "the slave to find its new master behind it", || async {
        let info = sw.runtime_info().await.ok()?;
        (info.get("haMasterBehindAt")?.as_str() == "0").then_some(info)
    })
    .await?;
    ensure!(
        info.get("commitLogMaxOffset").map(String::as_str) == Some(end.to_string().as_str()),
        "the slave kept its bytes"
    );
    for o in &offsets {
        ensure!(sw.view_message(*o).await?.is_none(), "the slave served {o}, which its master does not have");
    }
    drop(fresh);
    Ok(())
}

/// SYNC_MASTER with SYNC_FLUSH: a send waits for its disk sync and for the slave,
/// and is on both when acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_with_sync_flush_acknowledges_disk_and_slave() -> Result<()> {
    let Pair { ns: _ns, master, slaves } = pair("SYNC_MASTER", 1, &[("STORE__FLUSH_DISK_TYPE", "SYNC_FLUSH")]).await?;
    let (mw, sw) = (Wire::new(master.addr()), Wire::new(slaves[0].addr()));
    mw.create_topic("HaBoth", 1).await?;
    for i in 0..50 {
        let s = mw.send("HaBoth", 0, format!("both-{i}").as_bytes(), &props(&[])).await?;
        ensure!(s.code == ResponseCode::SUCCESS, "{:?} {:?}", s.code, s.remark);
        let (_, at) = common::msgid::decode_offset_msg_id(&s.msg_id)?;
        // Flushed on the master (the commit-log flush offset covers it) and held by
        // the slave (its end is past it) when the answer arrives.
        let info = mw.runtime_info().await?;
        let flushed: i64 = info.get("commitLogFlushedOffset").context("flushed offset")?.parse()?;
        ensure!(flushed > at, "acknowledged before its disk sync: flushed {flushed}, record at {at}");
        ensure!(max_offset(&sw).await? > at, "acknowledged before the slave held it");
    }
    Ok(())
}
