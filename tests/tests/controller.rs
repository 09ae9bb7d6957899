//! A group of three `controller` processes, driven the way RocketMQ 5's brokers drive
//! theirs: the brokers here speak the controller API on the wire (register, heartbeat
//! every controller, report SyncStateSets, receive NOTIFY_BROKER_ROLE_CHANGED on a
//! listener of their own). Faults are real: a broker's connections close, controllers
//! are killed with SIGKILL and restarted on their stores.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::ResponseCode;
use remoting::body::controller::{BrokerReplicasInfo, ElectMasterBody, SyncStateSetBody};
use remoting::header::controller::{
    AlterSyncStateSetRequestHeader, ApplyBrokerIdRequestHeader, BrokerHeartbeatRequestHeader, ElectMasterRequestHeader,
    ElectMasterResponseHeader, GetMetaDataResponseHeader, GetNextBrokerIdRequestHeader, GetNextBrokerIdResponseHeader,
    GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader, NotifyBrokerRoleChangedRequestHeader,
    RegisterBrokerToControllerRequestHeader,
};
use remoting::server::Dispatcher;
use remoting::{ClientConfig, RemotingClient, RemotingCommand, RemotingServer, RequestCode, ServerConfig};
use tests::{eventually, Controller};

const WAIT: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(5);

async fn call(client: &RemotingClient, addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
    Ok(client.invoke(addr, cmd, T).await?)
}

/// The controller every controller names as leader, once they agree.
async fn leader(client: &RemotingClient, group: &[&Controller]) -> Result<String> {
    eventually(WAIT, "the controllers to agree on a leader", || async {
        let mut leaders = BTreeSet::new();
        let mut leading = 0;
        for c in group {
            let resp = call(client, &c.addr(), RemotingCommand::request(RequestCode::CONTROLLER_GET_METADATA_INFO))
                .await
                .ok()?;
            let h: GetMetaDataResponseHeader = resp.decode_header().ok()?;
            leaders.insert(h.controller_leader_address?);
            leading += usize::from(h.is_leader);
        }
        (leaders.len() == 1 && leading == 1).then(|| leaders.into_iter().next().unwrap_or_default())
    })
    .await
}

/// A broker as far as the controllers can tell: a client that registers and
/// heartbeats, and a listener for the controllers' notices.
struct FakeBroker {
    id: u64,
    addr: String,
    client: RemotingClient,
    notices: Arc<Mutex<Vec<NotifyBrokerRoleChangedRequestHeader>>>,
    stop: Arc<AtomicBool>,
    _server: RemotingServer,
}

impl FakeBroker {
    /// Registers `broker-a`'s next broker with the leader (RocketMQ 5.1's flow: next
    /// id, apply it, register) and heartbeats every controller with `max_offset`.
    async fn join(leader: &str, controllers: Vec<String>, max_offset: i64) -> Result<Self> {
        let notices: Arc<Mutex<Vec<NotifyBrokerRoleChangedRequestHeader>>> = Arc::default();
        let log = notices.clone();
        let mut dispatcher = Dispatcher::new();
        dispatcher.register(RequestCode::NOTIFY_BROKER_ROLE_CHANGED, move |_ch, req: RemotingCommand| {
            if let Ok(h) = req.decode_header() {
                log.lock().unwrap().push(h);
            }
            async { Some(RemotingCommand::success()) }
        });
        let server = RemotingServer::bind(ServerConfig::new("127.0.0.1:0".parse()?), Arc::new(dispatcher)).await?;
        let addr = server.local_addr().to_string();
        let client = RemotingClient::new(ClientConfig::default(), None);

        let next = call(
            &client,
            leader,
            RemotingCommand::request_with(
                RequestCode::CONTROLLER_GET_NEXT_BROKER_ID,
                &GetNextBrokerIdRequestHeader { cluster_name: "C".into(), broker_name: "broker-a".into() },
            ),
        )
        .await?;
        let next: GetNextBrokerIdResponseHeader = next.decode_header()?;
        let id = next.next_broker_id.context("nextBrokerId")?;
        let applied = call(
            &client,
            leader,
            RemotingCommand::request_with(
                RequestCode::CONTROLLER_APPLY_BROKER_ID,
                &ApplyBrokerIdRequestHeader {
                    cluster_name: "C".into(),
                    broker_name: "broker-a".into(),
                    applied_broker_id: id,
                    register_check_code: format!("{addr};{}", common::time::now_ms()),
                },
            ),
        )
        .await?;
        if applied.response_code() != ResponseCode::SUCCESS {
            bail!("apply broker id {id}: {:?} {}", applied.response_code(), applied.remark_str());
        }
        let registered = call(
            &client,
            leader,
            RemotingCommand::request_with(
                RequestCode::CONTROLLER_REGISTER_BROKER,
                &RegisterBrokerToControllerRequestHeader {
                    cluster_name: "C".into(),
                    broker_name: "broker-a".into(),
                    broker_id: Some(id),
                    broker_address: addr.clone(),
                    invoke_time: Some(common::time::now_ms()),
                },
            ),
        )
        .await?;
        if registered.response_code() != ResponseCode::SUCCESS {
            bail!("register {id}: {:?} {}", registered.response_code(), registered.remark_str());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let hb = BrokerHeartbeatRequestHeader {
            cluster_name: "C".into(),
            broker_addr: addr.clone(),
            broker_name: "broker-a".into(),
            broker_id: Some(id),
            epoch: Some(0),
            max_offset: Some(max_offset),
            confirm_offset: Some(max_offset),
            heartbeat_timeout_mills: Some(3000),
            election_priority: None,
        };
        let (c, s) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            // Every 300 ms, as long as the broker lives.
            while !s.load(Ordering::Relaxed) {
                for ctl in &controllers {
                    let cmd = RemotingCommand::request_with(RequestCode::BROKER_HEARTBEAT, &hb).set_oneway();
                    let _ = c.invoke_oneway(ctl, cmd).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Ok(Self { id: id as u64, addr, client, notices, stop, _server: server })
    }

    /// The broker dies: heartbeats stop and its connections close.
    fn crash(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.client.shutdown();
    }
}

async fn replica_info(
    client: &RemotingClient,
    leader: &str,
) -> Result<(GetReplicaInfoResponseHeader, SyncStateSetBody)> {
    let resp = call(
        client,
        leader,
        RemotingCommand::request_with(
            RequestCode::CONTROLLER_GET_REPLICA_INFO,
            &GetReplicaInfoRequestHeader { broker_name: "broker-a".into() },
        ),
    )
    .await?;
    if resp.response_code() != ResponseCode::SUCCESS {
        bail!("replica info: {:?} {}", resp.response_code(), resp.remark_str());
    }
    Ok((resp.decode_header()?, remoting::json::from_slice(&resp.body_bytes())?))
}

fn elect_request(broker_id: Option<i64>, designate: bool) -> RemotingCommand {
    RemotingCommand::request_with(
        RequestCode::CONTROLLER_ELECT_MASTER,
        &ElectMasterRequestHeader {
            cluster_name: "C".into(),
            broker_name: "broker-a".into(),
            broker_id,
            designate_elect: Some(designate),
            invoke_time: Some(common::time::now_ms()),
        },
    )
}

fn alter_request(master: u64, master_epoch: i32, set: &[u64], sss_epoch: i32) -> RemotingCommand {
    let body = SyncStateSetBody { sync_state_set: set.iter().copied().collect(), sync_state_set_epoch: sss_epoch };
    RemotingCommand::request_with(
        RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET,
        &AlterSyncStateSetRequestHeader {
            broker_name: "broker-a".into(),
            master_broker_id: master as i64,
            master_epoch,
            invoke_time: None,
        },
    )
    .with_body(serde_json::to_vec(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_group_elects_masters_survives_its_leader_and_waits_out_a_lost_quorum() -> Result<()> {
    let mut group = Controller::start_group(3, &[("SCAN_NOT_ACTIVE_BROKER_INTERVAL", "500ms")])?;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let refs: Vec<&Controller> = group.iter().collect();
    let lead = leader(&client, &refs).await?;
    let all: Vec<String> = group.iter().map(Controller::addr).collect();

    // A follower refuses changes and says so as RocketMQ's controllers do.
    let follower = all.iter().find(|a| **a != lead).context("a follower")?;
    let refused = call(&client, follower, elect_request(Some(1), false)).await?;
    assert_eq!(refused.response_code(), ResponseCode::CONTROLLER_NOT_LEADER, "{}", refused.remark_str());

    // Three brokers register; ids are handed out in order.
    let b1 = FakeBroker::join(&lead, all.clone(), 100).await?;
    let b2 = FakeBroker::join(&lead, all.clone(), 200).await?;
    let b3 = FakeBroker::join(&lead, all.clone(), 300).await?;
    assert_eq!((b1.id, b2.id, b3.id), (1, 2, 3));

    // The first election takes the broker that asks.
    let elected = call(&client, &lead, elect_request(Some(1), false)).await?;
    assert_eq!(elected.response_code(), ResponseCode::SUCCESS, "{}", elected.remark_str());
    let h: ElectMasterResponseHeader = elected.decode_header()?;
    assert_eq!((h.master_broker_id, h.master_epoch, h.sync_state_set_epoch), (Some(1), Some(1), Some(1)));
    assert_eq!(h.master_address.as_deref(), Some(b1.addr.as_str()));
    let body: ElectMasterBody = remoting::json::from_slice(&elected.body_bytes())?;
    assert_eq!(body.sync_state_set, BTreeSet::from([1]));
    assert_eq!(body.broker_member_group.map(|g| g.broker_addrs.len()), Some(3));
    // A live master stays.
    let again = call(&client, &lead, elect_request(Some(2), false)).await?;
    assert_eq!(again.response_code(), ResponseCode::CONTROLLER_MASTER_STILL_EXIST);

    // The master reports its slaves caught up; a stale epoch is fenced.
    let altered = call(&client, &lead, alter_request(1, 1, &[1, 2, 3], 1)).await?;
    assert_eq!(altered.response_code(), ResponseCode::SUCCESS, "{}", altered.remark_str());
    let stale = call(&client, &lead, alter_request(1, 1, &[1, 2], 1)).await?;
    assert_eq!(stale.response_code(), ResponseCode::CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH);
    let not_master = call(&client, &lead, alter_request(2, 1, &[1, 2], 2)).await?;
    assert_eq!(not_master.response_code(), ResponseCode::CONTROLLER_INVALID_MASTER);

    // The master's connections close: the broker furthest ahead in the SyncStateSet
    // is elected, and the live brokers are told.
    b1.crash();
    let (info, sss) = eventually(WAIT, "a new master after the old one's connections closed", || async {
        let (h, b) = replica_info(&client, &lead).await.ok()?;
        (h.master_broker_id == Some(3)).then_some((h, b))
    })
    .await?;
    assert_eq!(info.master_epoch, Some(2));
    assert_eq!(info.master_address.as_deref(), Some(b3.addr.as_str()));
    assert_eq!(sss.sync_state_set, BTreeSet::from([3]));
    for b in [&b2, &b3] {
        let notice = eventually(WAIT, "the role change notice", || async {
            b.notices.lock().unwrap().iter().find(|n| n.master_epoch == Some(2)).cloned()
        })
        .await?;
        assert_eq!(notice.master_broker_id, Some(3));
    }

    // The SyncStateSet view (mqadmin getSyncStateSet) shows who is alive.
    let data = call(
        &client,
        &lead,
        RemotingCommand::request(RequestCode::CONTROLLER_GET_SYNC_STATE_DATA).with_body(b"[\"broker-a\"]".to_vec()),
    )
    .await?;
    let data: BrokerReplicasInfo = remoting::json::from_slice(&data.body_bytes())?;
    let a = &data.replicas_info_table["broker-a"];
    assert_eq!(a.in_sync_replicas.iter().map(|r| r.broker_id).collect::<Vec<_>>(), [3]);
    assert!(a.not_in_sync_replicas.iter().any(|r| r.broker_id == 1 && !r.alive), "{a:?}");

    // The leader is killed: another takes over with the same state; no role changes.
    let pos = group.iter().position(|c| c.addr() == lead).context("the leader's process")?;
    let old_leader = group.remove(pos).kill9();
    let refs: Vec<&Controller> = group.iter().collect();
    let lead2 = leader(&client, &refs).await?;
    assert_ne!(lead2, lead);
    let (info, _) =
        eventually(WAIT, "the new leader's view", || async { replica_info(&client, &lead2).await.ok() }).await?;
    assert_eq!((info.master_broker_id, info.master_epoch), (Some(3), Some(2)));

    // Quorum lost (2 of 3 down): no changes, no elections; the brokers' roles stand.
    let second = group.remove(0).kill9();
    let survivor = group[0].addr();
    let refused = call(&client, &survivor, elect_request(Some(2), true)).await?;
    assert_ne!(refused.response_code(), ResponseCode::SUCCESS);
    // A controller comes back: quorum again, the state is intact.
    group.push(second.restart()?);
    let refs: Vec<&Controller> = group.iter().collect();
    let lead3 = leader(&client, &refs).await?;
    let (info, _) =
        eventually(WAIT, "the state after the quorum returned", || async { replica_info(&client, &lead3).await.ok() })
            .await?;
    assert_eq!((info.master_broker_id, info.master_epoch), (Some(3), Some(2)));

    // The first leader restarts from its store and catches up.
    group.push(old_leader.restart()?);
    let refs: Vec<&Controller> = group.iter().collect();
    leader(&client, &refs).await?;
    drop((b2, b3));
    Ok(())
}

/// `enableControllerInNamesrv`: a name server runs the controller on its own peer
/// port, and brokers get the same answers from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_server_embeds_a_controller() -> Result<()> {
    let port = tests::free_ports(1)?[0];
    let peers = format!("n0-127.0.0.1:{port}");
    let store = tempfile::tempdir()?;
    let store_path = store.path().display().to_string();
    let ns = tests::Namesrv::start(&[
        ("ENABLE_CONTROLLER_IN_NAMESRV", "true"),
        ("CONTROLLER__CONTROLLER_DLEGER_PEERS", &peers),
        ("CONTROLLER__CONTROLLER_DLEGER_SELF_ID", "n0"),
        ("CONTROLLER__CONTROLLER_STORE_PATH", &store_path),
    ])?;
    let ctl = ns
        .process
        .extra
        .iter()
        .find_map(|l| l.strip_prefix("controller on "))
        .context("the name server printed no controller address")?
        .to_owned();
    assert_eq!(ctl, format!("127.0.0.1:{port}"));
    let client = RemotingClient::new(ClientConfig::default(), None);
    eventually(WAIT, "the embedded controller to lead its group", || async {
        let resp =
            call(&client, &ctl, RemotingCommand::request(RequestCode::CONTROLLER_GET_METADATA_INFO)).await.ok()?;
        let h: GetMetaDataResponseHeader = resp.decode_header().ok()?;
        (h.is_leader && h.controller_leader_id.as_deref() == Some("n0")).then_some(())
    })
    .await?;

    let b1 = FakeBroker::join(&ctl, vec![ctl.clone()], 10).await?;
    let b2 = FakeBroker::join(&ctl, vec![ctl.clone()], 10).await?;
    let elected = call(&client, &ctl, elect_request(Some(1), false)).await?;
    assert_eq!(elected.response_code(), ResponseCode::SUCCESS, "{}", elected.remark_str());
    let altered = call(&client, &ctl, alter_request(1, 1, &[1, 2], 1)).await?;
    assert_eq!(altered.response_code(), ResponseCode::SUCCESS, "{}", altered.remark_str());
    b1.crash();
    let (info, _) = eventually(WAIT, "broker 2 elected", || async {
        let (h, b) = replica_info(&client, &ctl).await.ok()?;
        (h.master_broker_id == Some(2)).then_some((h, b))
    })
    .await?;
    assert_eq!(info.master_epoch, Some(2));

    // The admin verbs RocketMQ's mqadmin has for controllers.
    let meta = admin(&["getControllerMetaData", "-a", &ctl])?;
    assert!(meta.contains("#ControllerLeaderId\tn0") && meta.contains(&format!("#Peer:\tn0:{ctl}")), "{meta}");
    let sss = admin(&["getSyncStateSet", "-a", &ctl, "-b", "broker-a"])?;
    assert!(sss.contains("#MasterBrokerId\t2") && sss.contains("#MasterEpoch\t2"), "{sss}");
    assert!(sss.contains("InSyncReplica:\tReplicaIdentity{brokerName='broker-a', brokerId=2"), "{sss}");
    // Broker 2 already leads: no election, and the command says why.
    let refused = admin(&["electMaster", "-a", &ctl, "-b", "2", "--brokerName", "broker-a", "--clusterName", "C"]);
    assert!(refused.as_ref().is_err_and(|e| e.to_string().contains("CONTROLLER_MASTER_STILL_EXIST")), "{refused:?}");
    // The dead broker 1 is forgotten; the live broker 2 is not, without -l.
    let cleaned = admin(&["cleanBrokerMetadata", "-a", &ctl, "--brokerName", "broker-a", "-b", "1"])?;
    assert!(cleaned.contains("clear broker broker-a metadata from controller success!"), "{cleaned}");
    let refused = admin(&["cleanBrokerMetadata", "-a", &ctl, "--brokerName", "broker-a", "-b", "2"]);
    assert!(refused.is_err(), "{refused:?}");
    let sss = admin(&["getSyncStateSet", "-a", &ctl])?;
    assert!(!sss.contains("brokerId=1,") && sss.contains("brokerId=2,"), "{sss}");
    drop(b2);
    Ok(())
}

/// Runs `ferromq-admin`: its stdout, or an error with what it printed.
fn admin(args: &[&str]) -> Result<String> {
    let out =
        std::process::Command::new(tests::binary("ferromq-admin")).args(args).env_remove("NAMESRV_ADDR").output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("ferromq-admin {args:?} failed: {text}");
    }
    Ok(text)
}
