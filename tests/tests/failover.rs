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
    let (master_id, master_addr, _, epoch) = eventually(WAIT, "a master with every broker in sync", || async {
        set_state(&client, &controllers).await.filter(|(_, _, in_sync, _)| in_sync.len() == 3)
    })
    .await?;

    let mut cfg = config::ClientConfig::default();
    cfg.namesrv_addr = vec![ns.addr()];
    cfg.poll_name_server_interval = Duration::from_secs(1);
    let producer = Producer::new("FailoverPG", cfg, None, ProducerOptions::default());
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    // 64 sends in flight, each loop bounded by `stop`.
    for w in 0..64 {
        let (p, acked, sent, stop) = (producer.clone(), acked.clone(), sent.clone(), stop.clone());
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
    eventually(WAIT, "sends acknowledged before the kill", || async {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .await?;

    // Kill the master.
    let pos = brokers.iter().position(|b| b.addr() == master_addr).context("the master's process")?;
    let before = acked.lock().unwrap().len();
    let killed_at = Instant::now();
    let _dead = client_support::kill9(brokers.remove(pos));
    let (new_id, new_addr, _, new_epoch) = eventually(WAIT, "another master", || async {
        set_state(&client, &controllers).await.filter(|(id, _, _, _)| *id != master_id)
    })
    .await?;
    assert!(new_epoch > epoch);
    eventually(WAIT, "sends acknowledged by the new master", || async {
        (acked.lock().unwrap().len() >= before + 300).then_some(())
    })
    .await?;
    let failover = killed_at.elapsed();
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
    eprintln!(
        "failover: master {master_id} killed, {new_id} elected (epoch {new_epoch}); {} acknowledged, {} stored, \
         first {} acknowledged after the kill within {failover:?}",
        acked.len(),
        on_master.len(),
        300
    );
    drop(group);
    Ok(())
}
