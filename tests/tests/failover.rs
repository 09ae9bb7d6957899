//! Automatic failover in controller mode, with real processes: three controllers, a
//! name server and a broker set of three brokers (`allAckInSyncStateSet`,
//! `minInSyncReplicas` 2), under a
//! sending load of 64 sends in flight. Faults are injected as they happen — SIGKILL,
//! SIGSTOP/SIGCONT — and every test ends with the checker: every message acknowledged
//! SEND_OK is served by the set's master exactly once, everything served was sent by
//! the test (once), and every slave serves exactly what its master does.

mod client_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
use client::{Message, MessageExt, Producer, ProducerOptions, SendStatus};
use common::ResponseCode;
use remoting::body::controller::BrokerReplicasInfo;
use remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode};
use tests::{eventually, Broker, Controller, Namesrv};

use client_support::stored;

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "Failover";
const SET: &str = "broker-f";

/// The set as the leading controller sees it.
#[derive(Debug, Clone)]
struct SetState {
    master: u64,
    master_addr: String,
    in_sync: BTreeSet<u64>,
    epoch: i32,
}

async fn set_state(client: &RemotingClient, controllers: &[String]) -> Option<SetState> {
    for addr in controllers {
        let body = format!("[\"{SET}\"]").into_bytes();
        let cmd = RemotingCommand::request(RequestCode::CONTROLLER_GET_SYNC_STATE_DATA).with_body(body);
        let Ok(resp) = client.invoke(addr, cmd, Duration::from_secs(3)).await else { continue };
        if resp.response_code() != ResponseCode::SUCCESS {
            continue;
        }
        let info: BrokerReplicasInfo = remoting::json::from_slice(&resp.body_bytes()).ok()?;
        let set = info.replicas_info_table.get(SET)?;
        return Some(SetState {
            master: set.master_broker_id?,
            master_addr: set.master_address.clone()?,
            in_sync: set.in_sync_replicas.iter().map(|r| r.broker_id).collect(),
            epoch: set.master_epoch,
        });
    }
    None
}

fn start_brokers(namesrv: &str, controller_addr: &str, n: usize) -> Result<Vec<Broker>> {
    let owned = tests::controller_mode_settings(SET, controller_addr);
    let settings: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (0..n).map(|_| Broker::start(namesrv, &settings)).collect()
}

/// 64 sends in flight through the SDK, each remembered as sent and, when answered
/// SEND_OK, as acknowledged with when and by which broker.
struct Load {
    producer: Producer,
    acked: Arc<Mutex<BTreeSet<String>>>,
    acks_by: Arc<Mutex<Vec<(Instant, String)>>>,
    sent: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(namesrv: &str) -> Self {
        // RocketMQ's default route poll (30 s): a producer learns a new master from
        // the failed sends themselves.
        let cfg = config::ClientConfig {
            namesrv_addr: namesrv.split(';').map(str::to_owned).collect(),
            ..config::ClientConfig::default()
        };
        // No retries inside the SDK: a retried send whose first attempt was stored
        // would be a legitimate duplicate, and the checker counts every copy.
        let options = ProducerOptions { retry_times_when_send_failed: 0, ..ProducerOptions::default() };
        let producer = Producer::new("FailoverPG", cfg, None, options);
        let mut load = Self {
            producer,
            acked: Arc::default(),
            acks_by: Arc::default(),
            sent: Arc::default(),
            stop: Arc::default(),
            workers: Vec::new(),
        };
        for w in 0..64 {
            let (p, acked, acks_by) = (load.producer.clone(), load.acked.clone(), load.acks_by.clone());
            let (sent, stop) = (load.sent.clone(), load.stop.clone());
            load.workers.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("w{w}-{i}");
                    i += 1;
                    let mut msg = Message::new(TOPIC, id.clone().into_bytes());
                    msg.properties.insert("FAILOVER_ID", id.clone());
                    sent.lock().unwrap().insert(id.clone());
                    match p.send(msg).await {
                        Ok(r) if r.status == SendStatus::SendOk => {
                            acked.lock().unwrap().insert(id);
                            if let Ok((host, _)) = common::msgid::decode_offset_msg_id(&r.offset_msg_id) {
                                acks_by.lock().unwrap().push((Instant::now(), host.to_string()));
                            }
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }));
        }
        load
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits for `n` more acknowledgements.
    async fn more_acks(&self, n: usize, what: &str) -> Result<()> {
        let before = self.acked_count();
        eventually(WAIT, what, || async { (self.acked_count() >= before + n).then_some(()) }).await
    }

    /// The first acknowledgement by `broker` after `since`.
    async fn first_ack_by(&self, broker: &str, since: Instant) -> Result<Instant> {
        eventually(WAIT, &format!("a send acknowledged by {broker}"), || async {
            self.acks_by.lock().unwrap().iter().find(|(at, host)| *at > since && host == broker).map(|(at, _)| *at)
        })
        .await
    }

    /// Acknowledgements by `broker` in `[from, to)`.
    fn acks_by_between(&self, broker: &str, from: Instant, to: Instant) -> usize {
        self.acks_by.lock().unwrap().iter().filter(|(at, host)| *at >= from && *at < to && host == broker).count()
    }

    async fn finish(self) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await?;
        }
        self.producer.shutdown().await;
        let acked = self.acked.lock().unwrap().clone();
        let sent = self.sent.lock().unwrap().clone();
        Ok((acked, sent))
    }
}

fn ids_of(msgs: &[common::MessageExt]) -> BTreeMap<String, usize> {
    msgs.iter().fold(BTreeMap::new(), |mut m, msg| {
        *m.entry(msg.properties.get("FAILOVER_ID").unwrap_or_default().to_owned()).or_default() += 1;
        m
    })
}

/// The checker: every acknowledged message on the master, no message there twice
/// (each was sent once) and nothing unsent, and every other broker serving exactly
/// its master's messages once caught up.
async fn check(acked: &BTreeSet<String>, sent: &BTreeSet<String>, master: &str, brokers: &[&Broker]) -> Result<usize> {
    let on_master = eventually(WAIT, "every acknowledged message on the master", || async {
        let ids = ids_of(&stored(master, TOPIC, 8).await.ok()?);
        acked.iter().all(|id| ids.contains_key(id)).then_some(ids)
    })
    .await;
    let on_master = match on_master {
        Ok(ids) => ids,
        Err(_) => {
            let ids = ids_of(&stored(master, TOPIC, 8).await?);
            let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains_key(*id)).collect();
            bail!(
                "{} acknowledged messages missing on {master}, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
        }
    };
    let invented: Vec<&String> = on_master.keys().filter(|id| !sent.contains(*id)).collect();
    assert!(invented.is_empty(), "messages nobody sent: {invented:?}");
    let twice: Vec<(&String, &usize)> = on_master.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "messages served more than once: {twice:?}");
    for b in brokers.iter().filter(|b| b.addr() != master) {
        // What a slave serves is always within its master's, and once the load
        // stopped it is all of it.
        eventually(WAIT, "a slave holding what its master holds", || async {
            let ids = ids_of(&stored(&b.addr(), TOPIC, 8).await.ok()?);
            let extra: Vec<&String> = ids.keys().filter(|id| !on_master.contains_key(*id)).collect();
            assert!(extra.is_empty(), "slave {} serves messages its master lacks: {extra:?}", b.addr());
            (ids == on_master).then_some(())
        })
        .await?;
    }
    Ok(on_master.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_master_under_load_elects_another_and_loses_nothing_acknowledged() -> Result<()> {
    let group = Controller::start_group(3, &[("SCAN_NOT_ACTIVE_BROKER_INTERVAL", "500ms")])?;
    let controllers: Vec<String> = group.iter().map(Controller::addr).collect();
    let ns = Namesrv::start(&[])?;
    let brokers = start_brokers(&ns.addr(), &controllers.join(";"), 3)?;
    failover_rounds(&controllers, &ns.addr(), brokers, 5).await?;
    drop(group);
    Ok(())
}

/// `rounds` times: kill whichever broker is master, see another take writes, bring
/// the killed one back as a slave (it truncates what it alone held) and wait until
/// it is in sync again; then the checker, and a push consumer that ran throughout
/// (never restarted) must have received every acknowledged message.
async fn failover_rounds(controllers: &[String], namesrv: &str, mut brokers: Vec<Broker>, rounds: usize) -> Result<()> {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let mut epoch = eventually(WAIT, "a master with every broker in sync", || async {
        set_state(&client, controllers).await.filter(|s| s.in_sync.len() == 3)
    })
    .await?
    .epoch;
    let load = Load::start(namesrv);
    load.more_acks(1, "a first acknowledged send (the topic exists)").await?;
    let received: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let log = received.clone();
    let consumer = PushConsumer::builder("FailoverCG")
        .namesrv(namesrv)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            let mut log = log.lock().unwrap();
            for (id, n) in ids_of(msgs) {
                *log.entry(id).or_default() += n;
            }
            ConsumeStatus::Success
        })
        .start()
        .await?;
    let mut failovers = Vec::new();
    for round in 0..rounds {
        let state = eventually(WAIT, "every broker in sync", || async {
            set_state(&client, controllers).await.filter(|s| s.in_sync.len() == 3 && s.epoch >= epoch)
        })
        .await?;
        load.more_acks(200, "sends acknowledged before the kill").await?;
        let pos = brokers.iter().position(|b| b.addr() == state.master_addr).context("the master's process")?;
        let killed_at = Instant::now();
        let stopped = brokers.remove(pos).kill9_and_keep();
        let next = eventually(WAIT, "another master", || async {
            set_state(&client, controllers).await.filter(|s| s.master != state.master && s.epoch > state.epoch)
        })
        .await?;
        // Failover time: from the kill to the first send the new master acknowledged.
        let took = load.first_ack_by(&next.master_addr, killed_at).await?.duration_since(killed_at);
        anyhow::ensure!(
            took < Duration::from_secs(10),
            "round {round}: the new master's first acknowledgement took {took:?}"
        );
        failovers.push(took);
        eprintln!(
            "round {round}: master {} killed, {} elected (epoch {}); first acknowledgement after {took:?}",
            state.master, next.master, next.epoch
        );
        epoch = next.epoch;
        brokers.push(stopped.start(namesrv)?);
    }
    let last = eventually(WAIT, "every broker in sync at the end", || async {
        set_state(&client, controllers).await.filter(|s| s.in_sync.len() == 3 && s.epoch >= epoch)
    })
    .await?;
    let (acked, sent) = load.finish().await?;
    let refs: Vec<&Broker> = brokers.iter().collect();
    let stored = check(&acked, &sent, &last.master_addr, &refs).await?;
    // The consumer learns the last master from its failed pulls or its route poll.
    let missing = || acked.iter().filter(|id| !received.lock().unwrap().contains_key(*id)).count();
    if let Err(e) = eventually(Duration::from_secs(90), "the consumer holding every acknowledged message", || async {
        (missing() == 0).then_some(())
    })
    .await
    {
        bail!("{e:#}: {} of {} acknowledged messages never delivered", missing(), acked.len());
    }
    let redelivered = received.lock().unwrap().values().filter(|n| **n > 1).count();
    consumer.shutdown().await;
    // Every broker's epoch history (mqadmin getBrokerEpoch) ends in the last epoch.
    let out = std::process::Command::new(tests::binary("ferromq-admin"))
        .args(["-n", namesrv, "getBrokerEpoch", "-b", SET])
        .env_remove("NAMESRV_ADDR")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("#brokerAddr").count(), 3, "{text}");
    assert_eq!(text.matches(&format!("EpochEntry{{epoch={},", last.epoch)).count(), 3, "{text}");
    failovers.sort();
    eprintln!(
        "failover: {} acknowledged, {stored} stored, {redelivered} delivered more than once; failover times \
         {failovers:?} (median {:?})",
        acked.len(),
        failovers[failovers.len() / 2]
    );
    Ok(())
}

/// A master that hangs (SIGSTOP) past the controllers' heartbeat timeout is
/// replaced; resumed, it acknowledges nothing in its old epoch and ends as a slave.
/// Then the controller leader is killed (brokers keep their roles and serve), and
/// the controller quorum is lost (no election, the brokers keep serving) and comes
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_is_fenced_and_the_controllers_failures_change_no_role() -> Result<()> {
    let mut group = Controller::start_group(3, &[("SCAN_NOT_ACTIVE_BROKER_INTERVAL", "500ms")])?;
    let controllers: Vec<String> = group.iter().map(Controller::addr).collect();
    let ns = Namesrv::start(&[])?;
    let brokers = start_brokers(&ns.addr(), &controllers.join(";"), 3)?;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let first = eventually(WAIT, "a master with every broker in sync", || async {
        set_state(&client, &controllers).await.filter(|s| s.in_sync.len() == 3)
    })
    .await?;
    let load = Load::start(&ns.addr());
    load.more_acks(200, "sends acknowledged by the first master").await?;

    // Hang the master past the heartbeat timeout.
    let hung = brokers.iter().find(|b| b.addr() == first.master_addr).context("the master's process")?;
    hung.process.pause();
    let paused_at = Instant::now();
    let next = eventually(WAIT, "a master replacing the hung one", || async {
        set_state(&client, &controllers).await.filter(|s| s.master != first.master && s.epoch > first.epoch)
    })
    .await?;
    load.first_ack_by(&next.master_addr, paused_at).await?;
    hung.process.resume();
    let resumed_at = Instant::now();
    // It learns the new epoch and restarts as a slave: in sync again under the new master.
    eventually(WAIT, "the resumed broker back in sync as a slave", || async {
        set_state(&client, &controllers).await.filter(|s| s.master == next.master && s.in_sync.len() == 3)
    })
    .await?;
    // Nothing it stored after it was replaced was acknowledged: its puts needed
    // SyncStateSet members that follow the new master.
    assert_eq!(
        load.acks_by_between(&first.master_addr, resumed_at, Instant::now()),
        0,
        "the old master acknowledged writes after it was replaced"
    );

    // The controller leader dies: another leads, no broker changes role.
    let leader = eventually(WAIT, "the controller leader", || async {
        for (i, c) in group.iter().enumerate() {
            let resp = client
                .invoke(
                    &c.addr(),
                    RemotingCommand::request(RequestCode::CONTROLLER_GET_METADATA_INFO),
                    Duration::from_secs(3),
                )
                .await
                .ok()?;
            let h: remoting::header::controller::GetMetaDataResponseHeader = resp.decode_header().ok()?;
            if h.is_leader {
                return Some(i);
            }
        }
        None
    })
    .await?;
    let _dead_leader = group.remove(leader).kill9();
    let remaining: Vec<String> = group.iter().map(Controller::addr).collect();
    load.more_acks(200, "sends acknowledged while the controllers elect a leader").await?;
    let after =
        eventually(WAIT, "the new controller leader's view", || async { set_state(&client, &remaining).await }).await?;
    assert_eq!((after.master, after.epoch), (next.master, next.epoch), "a controller failure changed a role");

    // Quorum lost: the brokers keep serving with their roles.
    let _second = group.remove(0).kill9();
    load.more_acks(200, "sends acknowledged without a controller quorum").await?;
    let (acked, sent) = load.finish().await?;
    let refs: Vec<&Broker> = brokers.iter().collect();
    check(&acked, &sent, &next.master_addr, &refs).await?;
    Ok(())
}

/// The same failover with the controllers embedded in three name servers
/// (`enableControllerInNamesrv`), the brokers registering with all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_embedded_in_name_servers_fail_over_too() -> Result<()> {
    let ports = tests::free_ports(3)?;
    let peers: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("n{i}-127.0.0.1:{p}")).collect();
    let peers = peers.join(";");
    let stores: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir()).collect::<std::io::Result<_>>()?;
    let mut name_servers = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let id = format!("n{i}");
        let path = store.path().display().to_string();
        name_servers.push(Namesrv::start(&[
            ("ENABLE_CONTROLLER_IN_NAMESRV", "true"),
            ("CONTROLLER__CONTROLLER_DLEGER_PEERS", &peers),
            ("CONTROLLER__CONTROLLER_DLEGER_SELF_ID", &id),
            ("CONTROLLER__CONTROLLER_STORE_PATH", &path),
            ("CONTROLLER__SCAN_NOT_ACTIVE_BROKER_INTERVAL", "500ms"),
        ])?);
    }
    let controllers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let namesrv: Vec<String> = name_servers.iter().map(Namesrv::addr).collect();
    let namesrv = namesrv.join(";");
    let brokers = start_brokers(&namesrv, &controllers.join(";"), 3)?;
    failover_rounds(&controllers, &namesrv, brokers, 3).await
}
