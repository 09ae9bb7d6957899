//! Automatic failover in controller mode, with real processes: three controllers, a
//! name server and a broker set of three brokers (`allAckInSyncStateSet`). The master
//! is killed with SIGKILL under a sending load; a new master is elected from the
//! SyncStateSet and takes writes, and the checker compares every message acknowledged
//! SEND_OK with what the set serves afterwards: nothing missing, nothing invented.

mod client_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use client::{Message, Producer, ProducerOptions, SendStatus};
use common::ResponseCode;
use remoting::body::controller::BrokerReplicasInfo;
use remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode};
use tests::{eventually, Broker, Controller, Namesrv};

use client_support::stored;

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "Failover";

/// The set as the leading controller sees it: master id and address, and the
/// in-sync ids.
async fn set_state(client: &RemotingClient, controllers: &[String]) -> Option<(u64, String, BTreeSet<u64>, i32)> {
    for addr in controllers {
        let cmd =
            RemotingCommand::request(RequestCode::CONTROLLER_GET_SYNC_STATE_DATA).with_body(b"[\"broker-f\"]".to_vec());
        let Ok(resp) = client.invoke(addr, cmd, Duration::from_secs(3)).await else { continue };
        if resp.response_code() != ResponseCode::SUCCESS {
            continue;
        }
        let info: BrokerReplicasInfo = remoting::json::from_slice(&resp.body_bytes()).ok()?;
        let set = info.replicas_info_table.get("broker-f")?;
        let in_sync = set.in_sync_replicas.iter().map(|r| r.broker_id).collect();
        return Some((set.master_broker_id?, set.master_address.clone()?, in_sync, set.master_epoch));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_master_under_load_elects_another_and_loses_nothing_acknowledged() -> Result<()> {
    let group = Controller::start_group(3, &[("SCAN_NOT_ACTIVE_BROKER_INTERVAL", "500ms")])?;
    let controllers: Vec<String> = group.iter().map(Controller::addr).collect();
    let ns = Namesrv::start(&[])?;
    let controller_addr = controllers.join(";");
    let settings = [
        ("BROKER_NAME", "broker-f"),
        ("ENABLE_CONTROLLER_MODE", "true"),
        ("CONTROLLER_ADDR", controller_addr.as_str()),
        ("ALL_ACK_IN_SYNC_STATE_SET", "true"),
        ("BROKER_HEARTBEAT_INTERVAL", "300ms"),
        ("CONTROLLER_HEART_BEAT_TIMEOUT", "3s"),
        ("SYNC_BROKER_METADATA_PERIOD", "500ms"),
        ("CHECK_SYNC_STATE_SET_PERIOD", "500ms"),
        ("HA_MAX_TIME_SLAVE_NOT_CATCHUP", "3s"),
        ("HA_SEND_HEARTBEAT_INTERVAL", "200ms"),
        ("REGISTER_NAME_SERVER_PERIOD", "1s"),
    ];
    let mut brokers: Vec<Broker> = Vec::new();
    for _ in 0..3 {
        brokers.push(Broker::start(&ns.addr(), &settings)?);
    }
    let client = RemotingClient::new(ClientConfig::default(), None);
    let (_, _, _, first_epoch) = eventually(WAIT, "a master with every broker in sync", || async {
        set_state(&client, &controllers).await.filter(|(_, _, in_sync, _)| in_sync.len() == 3)
    })
    .await?;

    let mut cfg = config::ClientConfig::default();
    cfg.namesrv_addr = vec![ns.addr()];
    cfg.poll_name_server_interval = Duration::from_secs(1);
    let producer = Producer::new("FailoverPG", cfg, None, ProducerOptions::default());
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    // When each acknowledgement came and which broker stored the message.
    let acks_by: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    // 64 sends in flight, each loop bounded by `stop`.
    for w in 0..64 {
        let (p, acked, sent, stop) = (producer.clone(), acked.clone(), sent.clone(), stop.clone());
        let acks_by = acks_by.clone();
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut msg = Message::new(TOPIC, format!("w{w}-{i}").into_bytes());
                let id = format!("w{w}-{i}");
                msg.properties.insert("FAILOVER_ID", id.clone());
                i += 1;
                sent.lock().unwrap().insert(id.clone());
                match p.send(msg).await {
                    Ok(r) if r.status == SendStatus::SendOk => {
                        acked.lock().unwrap().insert(id);
                        if let Ok((host, _)) = common::msgid::decode_offset_msg_id(&r.offset_msg_id) {
                            acks_by.lock().unwrap().push((Instant::now(), host.to_string()));
                        }
                    }
                    other => {
                        if i % 50 == 1 && w == 0 {
                            eprintln!("send: {other:?}");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                }
            }
        }));
    }
    // Five rounds: kill whichever broker is master, see another take writes, bring
    // the killed one back as a slave (it truncates what it alone held) and wait for
    // it to be in sync again.
    let mut epoch = first_epoch;
    let mut failovers = Vec::new();
    for round in 0..5 {
        let (master_id, master_addr, _, e) = eventually(WAIT, "every broker in sync", || async {
            set_state(&client, &controllers).await.filter(|(_, _, in_sync, e)| in_sync.len() == 3 && *e >= epoch)
        })
        .await?;
        epoch = e;
        let before = acked.lock().unwrap().len();
        eventually(WAIT, "sends acknowledged before the kill", || async {
            (acked.lock().unwrap().len() >= before + 200).then_some(())
        })
        .await?;
        let pos = brokers.iter().position(|b| b.addr() == master_addr).context("the master's process")?;
        let killed_at = Instant::now();
        let stopped = brokers.remove(pos).kill9_and_keep();
        let (new_id, new_master, _, new_epoch) = eventually(WAIT, "another master", || async {
            set_state(&client, &controllers).await.filter(|(id, _, _, e)| *id != master_id && *e > epoch)
        })
        .await?;
        // Failover time: from the kill to the first send the new master acknowledged.
        let first = eventually(WAIT, "a send acknowledged by the new master", || async {
            acks_by.lock().unwrap().iter().find(|(at, host)| *at > killed_at && *host == new_master).map(|(at, _)| *at)
        })
        .await?;
        let took = first.duration_since(killed_at);
        failovers.push(took);
        eprintln!("round {round}: master {master_id} killed, {new_id} elected (epoch {new_epoch}); first acknowledgement after {took:?}");
        epoch = new_epoch;
        brokers.push(stopped.start(&ns.addr())?);
    }
    let (_, new_addr, _, _) = eventually(WAIT, "every broker in sync at the end", || async {
        set_state(&client, &controllers).await.filter(|(_, _, in_sync, e)| in_sync.len() == 3 && *e >= epoch)
    })
    .await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    producer.shutdown().await;

    // The checker: every acknowledged message is on the new master, and everything
    // there was sent by this test.
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    let on_master = eventually(WAIT, "every acknowledged message on the new master", || async {
        let all = stored(&new_addr, TOPIC, 8).await.ok()?;
        let ids: BTreeMap<String, usize> = all.iter().fold(BTreeMap::new(), |mut m, msg| {
            *m.entry(msg.properties.get("FAILOVER_ID").unwrap_or_default().to_owned()).or_default() += 1;
            m
        });
        acked.iter().all(|id| ids.contains_key(id)).then_some(ids)
    })
    .await;
    let on_master = match on_master {
        Ok(s) => s,
        Err(_) => {
            let all = stored(&new_addr, TOPIC, 8).await?;
            let ids: BTreeSet<String> =
                all.iter().map(|m| m.properties.get("FAILOVER_ID").unwrap_or_default().to_owned()).collect();
            let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(*id)).take(10).collect();
            anyhow::bail!(
                "{} acknowledged messages missing, e.g. {missing:?}",
                acked.iter().filter(|id| !ids.contains(*id)).count()
            );
        }
    };
    let invented: Vec<&String> = on_master.keys().filter(|id| !sent.contains(*id)).collect();
    assert!(invented.is_empty(), "messages nobody sent: {invented:?}");
    // The brokers that rejoined as slaves serve nothing their master lacks.
    for b in &brokers {
        if b.addr() == new_addr {
            continue;
        }
        // What a slave serves is always a subset of its master's, and once the load
        // stopped it is all of it.
        let ids = eventually(WAIT, "a slave holding what its master holds", || async {
            let msgs = stored(&b.addr(), TOPIC, 8).await.ok()?;
            let ids: BTreeSet<String> =
                msgs.iter().map(|m| m.properties.get("FAILOVER_ID").unwrap_or_default().to_owned()).collect();
            let extra: Vec<&String> = ids.iter().filter(|id| !on_master.contains_key(*id)).collect();
            assert!(extra.is_empty(), "slave {} serves messages its master lacks: {extra:?}", b.addr());
            (ids.len() == on_master.len()).then_some(ids)
        })
        .await?;
        assert_eq!(ids.len(), on_master.len());
    }
    failovers.sort();
    eprintln!(
        "failover: {} acknowledged, {} stored; failover times {failovers:?} (median {:?})",
        acked.len(),
        on_master.len(),
        failovers[failovers.len() / 2]
    );
    drop(group);
    Ok(())
}
