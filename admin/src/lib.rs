//! `ferromq-admin`: an `mqadmin`-style command line for FerroMQ and Apache RocketMQ
//! clusters (they speak the same protocol).
//!
//! Commands mirror `mqadmin`'s names and flags where one exists: `clusterList`,
//! `brokerStatus`, `haStatus`, `topicRoute`, `updateTopic`, `consumerProgress`,
//! `resetOffsetByTime`, `queryMsgTraceById`, the controller-mode verbs
//! `getControllerMetaData`, `getSyncStateSet`, `getBrokerEpoch`, `electMaster` and
//! `cleanBrokerMetadata`, the ACL verbs, and the day-two verbs of [`ops`] (topics,
//! subscription groups, broker settings and maintenance, consumers and producers,
//! messages, the name servers' KV table and settings, plugins), plus `send` and
//! `consume` to check a cluster end to end. Name servers come from `-n`,
//! `NAMESRV_ADDR` or the client configuration file, as for every client.
//!
//! Commands that ask every broker (`clusterList`, `haStatus --cluster`) ask them
//! concurrently, and a broker that does not answer is reported, not fatal.

pub mod ops;
pub mod plugin_dev;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use client::admin::{HaClientRuntimeInfo, HaRuntimeInfo};
use client::consumer::pull_api::PullStatus;
use client::consumer::pull_consumer::PullConsumer;
use client::msg_trace::data::TraceRecord;
use client::{Admin, Message, Producer, ProducerOptions};
use common::route::{ClusterInfo, MASTER_ID};
use common::ResponseCode;
use remoting::body::controller::{BrokerReplicasInfo, ElectMasterBody, EpochEntryCache};
use remoting::header::controller::{
    CleanBrokerDataRequestHeader, ElectMasterRequestHeader, ElectMasterResponseHeader, GetMetaDataResponseHeader,
};
use remoting::{RemotingCommand, RequestCode};

/// Name servers: `-n` wins over `NAMESRV_ADDR` and the client config.
pub fn namesrv_list(flag: Option<&str>) -> Option<Vec<String>> {
    flag.map(|n| n.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

/// One broker of a cluster, as the name server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBroker {
    pub cluster: String,
    pub broker_name: String,
    /// 0 for the master, above for slaves.
    pub broker_id: u64,
    pub addr: String,
}

/// Every broker of `info`, by cluster, broker name and id; only those of `cluster`
/// when given.
pub fn cluster_brokers(info: &ClusterInfo, cluster: Option<&str>) -> Vec<ClusterBroker> {
    let mut out = Vec::new();
    for (c, names) in &info.cluster_addr_table {
        if cluster.is_some_and(|want| want != c) {
            continue;
        }
        for name in names {
            let Some(bd) = info.broker_addr_table.get(name) else { continue };
            for (id, addr) in &bd.broker_addrs {
                out.push(ClusterBroker {
                    cluster: c.clone(),
                    broker_name: name.clone(),
                    broker_id: *id,
                    addr: addr.clone(),
                });
            }
        }
    }
    out
}

/// Runs `call` on every broker address at once; each answer comes back with its
/// address, in the order of `addrs`.
async fn ask_all<T, F, Fut>(admin: &Admin, addrs: Vec<String>, call: F) -> Vec<(String, client::Result<T>)>
where
    T: Send + 'static,
    F: Fn(Admin, String) -> Fut,
    Fut: std::future::Future<Output = client::Result<T>> + Send + 'static,
{
    let tasks: Vec<_> = addrs.into_iter().map(|addr| (addr.clone(), tokio::spawn(call(admin.clone(), addr)))).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for (addr, task) in tasks {
        let answer = match task.await {
            Ok(answer) => answer,
            Err(e) => Err(client::Error::Io(std::io::Error::other(e))),
        };
        out.push((addr, answer));
    }
    out
}

/// A broker's role as RocketMQ names it (ASYNC_MASTER, SYNC_MASTER, SLAVE), from the
/// `brokerRole` its GET_BROKER_RUNTIME_INFO reports — also FerroMQ's older spelling
/// (`AsyncMaster`) — else from its id as RocketMQ decides it: 0 is the MASTER, any
/// other id a SLAVE.
pub fn broker_role(broker_id: u64, runtime_info: Option<&BTreeMap<String, String>>) -> String {
    let reported = runtime_info.and_then(|kv| kv.get("brokerRole")).map(|r| r.replace('_', "").to_ascii_uppercase());
    match reported.as_deref() {
        Some("ASYNCMASTER") => "ASYNC_MASTER".to_owned(),
        Some("SYNCMASTER") => "SYNC_MASTER".to_owned(),
        Some("SLAVE") => "SLAVE".to_owned(),
        _ if broker_id == MASTER_ID => "MASTER".to_owned(),
        _ => "SLAVE".to_owned(),
    }
}

/// The HA address a broker's GET_BROKER_RUNTIME_INFO reports (`haServerAddr`), `-`
/// when it reports none.
pub fn ha_server_addr(runtime_info: Option<&BTreeMap<String, String>>) -> String {
    runtime_info
        .and_then(|kv| kv.get("haServerAddr"))
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .unwrap_or("-")
        .to_owned()
}

/// `clusterList`'s table: one line per broker, with its id, role and HA address
/// from its runtime information (`None`: the broker did not answer).
pub fn format_cluster_list(brokers: &[(ClusterBroker, Option<BTreeMap<String, String>>)]) -> String {
    let mut out = format!(
        "{:<18} {:<23} {:<5} {:<13} {:<22} {}\n",
        "#Cluster Name", "#Broker Name", "#BID", "#Role", "#Addr", "#HAAddr"
    );
    for (b, info) in brokers {
        out.push_str(&format!(
            "{:<18} {:<23} {:<5} {:<13} {:<22} {}\n",
            b.cluster,
            b.broker_name,
            b.broker_id,
            broker_role(b.broker_id, info.as_ref()),
            b.addr,
            ha_server_addr(info.as_ref())
        ));
    }
    out
}

/// `clusterList`: brokers by cluster, one line each, with id, role and HA address.
/// A broker that does not answer GET_BROKER_RUNTIME_INFO is still listed, its role
/// from its id and its HA address `-`.
///
/// # Errors
/// No name server answered.
pub async fn cluster_list(admin: &Admin) -> Result<String> {
    let info = admin.cluster_info().await?;
    let brokers = cluster_brokers(&info, None);
    let addrs = brokers.iter().map(|b| b.addr.clone()).collect();
    let answers = ask_all(admin, addrs, |a, addr| async move { a.broker_runtime_info(&addr).await }).await;
    let rows: Vec<_> = brokers.into_iter().zip(answers).map(|(b, (_, info))| (b, info.ok())).collect();
    Ok(format_cluster_list(&rows))
}

/// `haStatus`: the replication state of the broker at `broker_addr`, or of every
/// broker of `cluster`. For a cluster RocketMQ asks the masters (they list their
/// slaves); a broker name whose master is not registered has its slaves asked
/// instead. With `json`, prints the `HARuntimeInfo` bodies as a JSON object keyed by
/// broker address.
///
/// # Errors
/// Neither a broker nor a cluster given, an unknown cluster, no name server
/// answered, or — for a single broker — the broker did not answer.
pub async fn ha_status(admin: &Admin, broker_addr: Option<&str>, cluster: Option<&str>, json: bool) -> Result<String> {
    let addrs = match (broker_addr, cluster) {
        (Some(addr), _) => {
            let info = admin.broker_ha_status(addr).await.with_context(|| format!("replication status of {addr}"))?;
            return format_ha_answers(&[(addr.to_owned(), Ok(info))], json);
        }
        (None, Some(cluster)) => {
            let info = admin.cluster_info().await?;
            let brokers = cluster_brokers(&info, Some(cluster));
            if brokers.is_empty() {
                bail!("cluster {cluster} has no broker registered");
            }
            ha_targets(&brokers)
        }
        (None, None) => bail!("haStatus needs a broker (-b ip:port) or a cluster (--cluster name)"),
    };
    let answers = ask_all(admin, addrs, |a, addr| async move { a.broker_ha_status(&addr).await }).await;
    format_ha_answers(&answers, json)
}

/// The brokers `haStatus --cluster` asks: each broker name's master, or its slaves
/// when no master is registered.
pub fn ha_targets(brokers: &[ClusterBroker]) -> Vec<String> {
    let mut by_name: BTreeMap<&str, Vec<&ClusterBroker>> = BTreeMap::new();
    for b in brokers {
        by_name.entry(b.broker_name.as_str()).or_default().push(b);
    }
    let mut out = Vec::new();
    for members in by_name.values() {
        match members.iter().find(|b| b.broker_id == MASTER_ID) {
            Some(master) => out.push(master.addr.clone()),
            None => out.extend(members.iter().map(|b| b.addr.clone())),
        }
    }
    out
}

fn format_ha_answers(answers: &[(String, client::Result<HaRuntimeInfo>)], json: bool) -> Result<String> {
    if json {
        let mut map = serde_json::Map::new();
        for (addr, answer) in answers {
            let v = match answer {
                Ok(info) => serde_json::to_value(info)?,
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            map.insert(addr.clone(), v);
        }
        return Ok(serde_json::to_string_pretty(&map)?);
    }
    let mut out = String::new();
    for (addr, answer) in answers {
        match answer {
            Ok(info) => out.push_str(&format_ha_status(addr, info)),
            Err(e) => out.push_str(&format!("#BrokerAddr                {addr}\n#Error                     {e}\n")),
        }
        out.push('\n');
    }
    Ok(out)
}

/// One broker's replication state, laid out as `mqadmin haStatus` prints it: for a
/// master its commit-log end and a line per slave (acknowledged offset, bytes
/// behind, transfer rate, in sync or not, where the next transfer starts); for a
/// slave its master's HA address and its own commit-log end.
pub fn format_ha_status(broker_addr: &str, info: &HaRuntimeInfo) -> String {
    let mut out = String::new();
    if info.master {
        let slaves = &info.ha_connection_info;
        out.push_str(&format!("#MasterAddr                {broker_addr}\n"));
        out.push_str(&format!("#MasterCommitLogMaxOffset  {}\n", info.master_commit_log_max_offset));
        out.push_str(&format!("#SlaveNum                  {}\n", slaves.len()));
        out.push_str(&format!("#InSyncSlaveNum            {}\n", info.in_sync_slave_nums));
        out.push_str(&format!(
            "{:<32} {:>16} {:>16} {:>20} {:>12} {:>18}\n",
            "#SlaveAddr", "#SlaveAckOffset", "#Diff", "#TransferSpeed(KB/s)", "#Status", "#TransferFromWhere"
        ));
        for c in slaves {
            out.push_str(&format!(
                "{:<32} {:>16} {:>16} {:>20.2} {:>12} {:>18}\n",
                c.addr,
                c.slave_ack_offset,
                c.diff,
                c.transferred_byte_in_second as f64 / 1024.0,
                if c.in_sync { "OK" } else { "Fall Behind" },
                c.transfer_from_where
            ));
        }
    } else {
        let c: &HaClientRuntimeInfo = &info.ha_client_runtime_info;
        let or_dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
        out.push_str(&format!("#SlaveAddr                 {broker_addr}\n"));
        out.push_str(&format!("#MasterAddr                {}\n", or_dash(&c.master_addr)));
        out.push_str(&format!("#CommitLogMaxOffset        {}\n", c.max_offset));
        out.push_str(&format!("#TransferSpeed(KB/s)       {:.2}\n", c.transferred_byte_in_second as f64 / 1024.0));
        out.push_str(&format!("#LastReadTime              {}\n", utc_time(c.last_read_timestamp)));
        out.push_str(&format!("#LastWriteTime             {}\n", utc_time(c.last_write_timestamp)));
        out.push_str(&format!("#MasterFlushOffset         {}\n", c.master_flush_offset));
        let activated = c.is_activated.map_or_else(|| "-".to_owned(), |a| a.to_string());
        out.push_str(&format!("#Activated                 {activated}\n"));
    }
    out
}

/// `ms` since the epoch as `yyyy-MM-ddTHH:mm:ss.SSSZ`; `-` for 0 (never).
/// `# 2026-12-07T13:05:00.000Z`: the heading of one view of a repeating command.
pub fn utc_now_line() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    format!("# {}", utc_time(now))
}

pub(crate) fn utc_time(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    let t = common::time::DateTime::from_ms(ms, 0);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond
    )
}

/// `queryMsgTraceById`: the message-trace timeline of one message in RocketMQ's
/// layout — its sends (`Pub`), then its consumptions (`Sub`) grouped by consumer
/// group, then its transaction ends — each with the client host that recorded it.
pub fn format_msg_trace(msg_id: &str, records: &[(TraceRecord, SocketAddr)]) -> String {
    if records.is_empty() {
        return format!("no message-trace record of {msg_id}\n");
    }
    let row = |kind: &str, group: &str, host: &SocketAddr, ms: i64, cost: String, status: &str| {
        format!("{kind:<10} {group:<24} {:<22} {:<25} {cost:<10} {status}\n", host.to_string(), utc_time(ms))
    };
    let status = |ok: bool| if ok { "success" } else { "failed" };
    let mut out = String::new();
    for (r, host) in records {
        if let TraceRecord::Pub(p) = r {
            out.push_str("#Type      #ProducerGroup           #ClientHost            #SendTime                 #CostTimes #Status\n");
            out.push_str(&row("Pub", &p.group, host, p.timestamp, format!("{}ms", p.cost_ms), status(p.success)));
            out.push('\n');
        }
    }
    // A consumption's group and start are in its SubBefore (same request id; the C++
    // client leaves the id empty, so fall back to the message's latest SubBefore).
    let before = |request_id: &str| {
        records.iter().rev().find_map(|(r, _)| match r {
            TraceRecord::SubBefore(b) if request_id.is_empty() || b.request_id == request_id => Some(b),
            _ => None,
        })
    };
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (r, host) in records {
        if let TraceRecord::SubAfter(a) = r {
            let b = before(&a.request_id);
            let group = b.map_or("-", |b| b.group.as_str());
            let ms = a.timestamp.filter(|t| *t > 0).or(b.map(|b| b.timestamp)).unwrap_or(0);
            by_group.entry(group.to_owned()).or_default().push(row(
                "Sub",
                group,
                host,
                ms,
                format!("{}ms", a.cost_ms),
                status(a.success),
            ));
        }
    }
    for rows in by_group.values() {
        out.push_str(
            "#Type      #ConsumerGroup           #ClientHost            #ConsumerTime             #CostTimes #Status\n",
        );
        rows.iter().for_each(|r| out.push_str(r));
        out.push('\n');
    }
    let ends: Vec<_> = records
        .iter()
        .filter_map(|(r, host)| match r {
            TraceRecord::EndTransaction(e) => Some((e, host)),
            _ => None,
        })
        .collect();
    if !ends.is_empty() {
        out.push_str(
            "#Type      #ProducerGroup           #ClientHost            #EndTime                  #FromCheck #State\n",
        );
        for (e, host) in ends {
            out.push_str(&row("EndTx", &e.group, host, e.timestamp, e.from_check.to_string(), &e.state));
        }
    }
    out
}

/// GET_METADATA_INFO of the controller at `addr`.
async fn controller_metadata_of(admin: &Admin, addr: &str) -> Result<GetMetaDataResponseHeader> {
    let resp = admin
        .instance()
        .invoke(addr, RemotingCommand::request(RequestCode::CONTROLLER_GET_METADATA_INFO), COMMAND_TIMEOUT)
        .await?;
    if resp.response_code() != ResponseCode::SUCCESS {
        bail!("{addr}: {} {}", resp.response_code(), resp.remark_str());
    }
    Ok(resp.decode_header()?)
}

/// The leading controller, asked of the first of `addrs` (`a;b;c`) that answers.
async fn controller_leader(admin: &Admin, addrs: &str) -> Result<String> {
    let mut last = None;
    for addr in addrs.split(';').map(str::trim).filter(|a| !a.is_empty()) {
        match controller_metadata_of(admin, addr).await {
            Ok(h) => match h.controller_leader_address.filter(|a| !a.is_empty()) {
                Some(leader) => return Ok(leader),
                None => last = Some(anyhow::anyhow!("{addr} knows no leader")),
            },
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no controller address given")))
}

/// A controller request sent to the leader; the response when it succeeded.
async fn controller_call(admin: &Admin, addrs: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
    let leader = controller_leader(admin, addrs).await?;
    let resp = admin.instance().invoke(&leader, cmd, COMMAND_TIMEOUT).await?;
    if resp.response_code() != ResponseCode::SUCCESS {
        bail!("{leader}: {} {}", resp.response_code(), resp.remark_str());
    }
    Ok(resp)
}

/// `getControllerMetaData`: the controller group as `addr` sees it.
///
/// # Errors
/// The controller does not answer.
pub async fn controller_metadata(admin: &Admin, addr: &str) -> Result<String> {
    let h = controller_metadata_of(admin, addr).await?;
    let mut out = format!(
        "#ControllerGroup\t{}\n#ControllerLeaderId\t{}\n#ControllerLeaderAddress\t{}\n",
        h.group,
        h.controller_leader_id.unwrap_or_default(),
        h.controller_leader_address.unwrap_or_default()
    );
    for peer in h.peers.split(';').filter(|p| !p.is_empty()) {
        out.push_str(&format!("#Peer:\t{peer}\n"));
    }
    Ok(out)
}

/// `getSyncStateSet`: master, epochs and replicas of broker sets, from the leader.
///
/// # Errors
/// No controller answers, or the leader refuses.
pub async fn sync_state_set(admin: &Admin, addrs: &str, broker_names: &[String]) -> Result<String> {
    let body = serde_json::to_vec(broker_names)?;
    let cmd = RemotingCommand::request(RequestCode::CONTROLLER_GET_SYNC_STATE_DATA).with_body(body);
    let resp = controller_call(admin, addrs, cmd).await?;
    let info: BrokerReplicasInfo = remoting::json::from_slice(&resp.body_bytes())?;
    let mut out = String::new();
    for (name, r) in &info.replicas_info_table {
        out.push_str(&format!(
            "\n#brokerName\t{name}\n#MasterBrokerId\t{}\n#MasterAddr\t{}\n#MasterEpoch\t{}\n#SyncStateSetEpoch\t{}\n#SyncStateSetNums\t{}\n",
            r.master_broker_id.map_or_else(|| "-".to_owned(), |i| i.to_string()),
            r.master_address.as_deref().unwrap_or("-"),
            r.master_epoch,
            r.sync_state_set_epoch,
            r.in_sync_replicas.len()
        ));
        for (kind, list) in [("InSyncReplica", &r.in_sync_replicas), ("NotInSyncReplica", &r.not_in_sync_replicas)] {
            for m in list {
                out.push_str(&format!(
                    "\t{kind}:\tReplicaIdentity{{brokerName='{}', brokerId={}, brokerAddress='{}', alive={}}}\n",
                    m.broker_name, m.broker_id, m.broker_address, m.alive
                ));
            }
        }
    }
    Ok(out)
}

/// `electMaster`: makes `broker_id` the master of `broker_name` (it must be alive and
/// in the SyncStateSet, unless the controllers elect unclean masters).
///
/// # Errors
/// No controller answers, or the election is refused.
pub async fn elect_master(
    admin: &Admin,
    addrs: &str,
    cluster: &str,
    broker_name: &str,
    broker_id: u64,
) -> Result<String> {
    let header = ElectMasterRequestHeader {
        cluster_name: cluster.to_owned(),
        broker_name: broker_name.to_owned(),
        broker_id: Some(broker_id as i64),
        designate_elect: Some(true),
        invoke_time: Some(common::time::now_ms()),
    };
    let resp =
        controller_call(admin, addrs, RemotingCommand::request_with(RequestCode::CONTROLLER_ELECT_MASTER, &header))
            .await?;
    let h: ElectMasterResponseHeader = resp.decode_header()?;
    let body: ElectMasterBody = remoting::json::from_slice(&resp.body_bytes())?;
    let mut out = format!(
        "#ClusterName\t{cluster}\n#BrokerName\t{broker_name}\n#BrokerMasterAddr\t{}\n#MasterEpoch\t{}\n#SyncStateSetEpoch\t{}\n",
        h.master_address.unwrap_or_default(),
        h.master_epoch.unwrap_or_default(),
        h.sync_state_set_epoch.unwrap_or_default()
    );
    for (id, addr) in body.broker_member_group.map(|g| g.broker_addrs).unwrap_or_default() {
        out.push_str(&format!("\t#Broker\t{id}\t{addr}\n"));
    }
    Ok(out)
}

/// `getBrokerEpoch`: the epoch history of every broker of a broker name (from the
/// name servers' cluster info), each asked with GET_BROKER_EPOCH_CACHE.
///
/// # Errors
/// No name server answers, or no broker has that name.
pub async fn broker_epochs(admin: &Admin, broker_name: &str) -> Result<String> {
    let info = admin.cluster_info().await?;
    let addrs: Vec<String> = info
        .broker_addr_table
        .get(broker_name)
        .map(|bd| bd.broker_addrs.values().cloned().collect())
        .unwrap_or_default();
    if addrs.is_empty() {
        bail!("no broker named {broker_name} is registered");
    }
    let mut out = String::new();
    for addr in addrs {
        let resp = admin
            .instance()
            .invoke(&addr, RemotingCommand::request(RequestCode::GET_BROKER_EPOCH_CACHE), COMMAND_TIMEOUT)
            .await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            out.push_str(&format!("#brokerAddr\t{addr}\t{}\n", resp.remark_str()));
            continue;
        }
        let cache: EpochEntryCache = remoting::json::from_slice(&resp.body_bytes())?;
        out.push_str(&format!(
            "\n#clusterName\t{}\n#brokerName\t{}\n#brokerAddr\t{addr}\n#brokerId\t{}\n",
            cache.cluster_name, cache.broker_name, cache.broker_id
        ));
        let n = cache.epoch_list.len();
        for (i, e) in cache.epoch_list.iter().enumerate() {
            // The open last epoch ends, for now, where the log ends.
            let end = if i + 1 == n { cache.max_offset } else { e.end_offset };
            out.push_str(&format!(
                "#Epoch: EpochEntry{{epoch={}, startOffset={}, endOffset={end}}}\n",
                e.epoch, e.start_offset
            ));
        }
    }
    Ok(out)
}

/// `cleanBrokerMetadata`: forgets brokers of a set (`ids` `1;2`, or the whole set).
///
/// # Errors
/// No controller answers, or the leader refuses (a broker still alive, unless
/// `living`).
pub async fn clean_broker_metadata(
    admin: &Admin,
    addrs: &str,
    cluster: Option<&str>,
    broker_name: &str,
    ids: Option<&str>,
    living: bool,
) -> Result<String> {
    let header = CleanBrokerDataRequestHeader {
        cluster_name: cluster.map(str::to_owned),
        broker_name: broker_name.to_owned(),
        broker_controller_ids_to_clean: ids.map(str::to_owned),
        is_clean_living_broker: Some(living),
        invoke_time: Some(common::time::now_ms()),
    };
    controller_call(admin, addrs, RemotingCommand::request_with(RequestCode::CLEAN_BROKER_DATA, &header)).await?;
    Ok(format!("clear broker {broker_name} metadata from controller success!"))
}

/// `topicRoute`: the route as JSON.
///
/// # Errors
/// Unknown topic, or no name server answered.
pub async fn topic_route(admin: &Admin, topic: &str) -> Result<String> {
    let route = admin.topic_route(topic).await?;
    Ok(serde_json::to_string_pretty(&route)?)
}

/// `consumerProgress`: per-queue broker offset, consumer offset and lag.
///
/// # Errors
/// Unknown topic, or a broker refused.
pub async fn consumer_progress(admin: &Admin, group: &str, topic: &str) -> Result<String> {
    let rows = admin.consumer_progress(group, topic).await?;
    let mut out =
        String::from("#Topic                  #Broker Name   #QID  #Broker Offset  #Consumer Offset  #Diff\n");
    let mut total = 0;
    for r in rows {
        total += r.lag();
        out.push_str(&format!(
            "{:<24} {:<14} {:<5} {:<15} {:<17} {}\n",
            r.queue.topic,
            r.queue.broker_name,
            r.queue.queue_id,
            r.broker_offset,
            r.consumer_offset,
            r.lag()
        ));
    }
    out.push_str(&format!("Diff Total: {total}\n"));
    Ok(out)
}

/// `send`: one message, printing the send result.
///
/// # Errors
/// The send failed.
pub async fn send(
    namesrv: Option<Vec<String>>,
    cfg: config::ClientConfig,
    topic: &str,
    tags: Option<&str>,
    body: &str,
) -> Result<String> {
    let producer = Producer::new("ferromq-admin", cfg, namesrv, ProducerOptions::default());
    let mut msg = Message::new(topic, bytes::Bytes::copy_from_slice(body.as_bytes()));
    if let Some(t) = tags {
        msg = msg.with_tags(t);
    }
    let r = producer.send(msg).await;
    producer.shutdown().await;
    let r = r?;
    Ok(format!(
        "{:?} msgId={} offsetMsgId={} queue={} queueOffset={}",
        r.status, r.msg_id, r.offset_msg_id, r.message_queue, r.queue_offset
    ))
}

/// `consume`: reads up to `max` messages of `topic` from the start of every queue
/// (without committing), printing one line per message.
///
/// # Errors
/// Unknown topic, or a broker refused.
pub async fn consume(
    namesrv: Option<Vec<String>>,
    cfg: config::ClientConfig,
    topic: &str,
    max: usize,
) -> Result<String> {
    let consumer = PullConsumer::new("ferromq-admin", cfg, namesrv);
    let mut out = String::new();
    let mut seen = 0;
    let queues = consumer.fetch_subscribe_queues(topic).await.with_context(|| format!("no route for {topic}"))?;
    for mq in queues {
        let mut offset = consumer.min_offset(&mq).await?;
        loop {
            if seen >= max {
                break;
            }
            let r = consumer.pull(&mq, "*", offset, 32).await?;
            if r.status != PullStatus::Found {
                break;
            }
            for m in &r.messages {
                if seen >= max {
                    break;
                }
                seen += 1;
                out.push_str(&format!(
                    "{} queue={} offset={} tags={} body={}\n",
                    m.msg_id(),
                    m.queue_id,
                    m.queue_offset,
                    m.tags().unwrap_or(""),
                    String::from_utf8_lossy(&m.body)
                ));
            }
            offset = r.next_begin_offset;
        }
    }
    consumer.shutdown().await;
    if seen == 0 {
        bail!("no message in {topic}");
    }
    Ok(out)
}

/// Parses `resetOffsetByTime`'s timestamp: ms since the epoch, or `now`.
///
/// # Errors
/// Neither form.
pub fn parse_timestamp(s: &str) -> Result<i64> {
    if s == "now" {
        return Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64);
    }
    s.parse::<i64>().with_context(|| format!("`{s}` is not a timestamp in ms (or `now`)"))
}

/// How long a single admin command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// `mqadmin` signs with the account in `$ROCKETMQ_HOME/conf/tools.yml` (`accessKey`,
/// `secretKey`); so does this tool when its own configuration names none.
///
/// # Errors
/// The file exists but does not read as that YAML.
pub fn credentials_from_tools_yml(cfg: &mut config::ClientConfig) -> Result<()> {
    if cfg.access_key.is_some() {
        return Ok(());
    }
    let Some(home) = std::env::var_os("ROCKETMQ_HOME") else { return Ok(()) };
    let path = std::path::Path::new(&home).join("conf").join("tools.yml");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let text_of = |k: &str| match yaml.get(k) {
        Some(serde_yaml_ng::Value::String(s)) => Some(s.clone()),
        Some(serde_yaml_ng::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if let (Some(ak), Some(sk)) = (text_of("accessKey"), text_of("secretKey")) {
        cfg.access_key = Some(ak);
        cfg.secret_key = Some(config::Secret(sk));
    }
    Ok(())
}

/// The brokers an ACL command goes to: `broker`, or every broker (masters and slaves,
/// which keep their own files) of `cluster`.
async fn acl_targets(admin: &Admin, broker: Option<&str>, cluster: Option<&str>) -> Result<Vec<String>> {
    match (broker, cluster) {
        (Some(b), _) => Ok(vec![b.to_owned()]),
        (None, Some(c)) => {
            let info = admin.cluster_info().await?;
            let brokers = cluster_brokers(&info, Some(c));
            if brokers.is_empty() {
                bail!("cluster {c} has no broker registered");
            }
            Ok(brokers.into_iter().map(|b| b.addr).collect())
        }
        (None, None) => bail!("name a broker (-b ip:port) or a cluster (--clusterName name)"),
    }
}

/// One line per broker: `done` with its address, or why it refused. Fails when any did.
fn report_each(answers: Vec<(String, client::Result<()>)>, done: &str) -> Result<String> {
    let mut out = String::new();
    let mut failed = 0;
    for (addr, answer) in answers {
        match answer {
            Ok(()) => out.push_str(&done.replace("{}", &addr)),
            Err(e) => {
                failed += 1;
                out.push_str(&format!("{addr}: {e}"));
            }
        }
        out.push('\n');
    }
    if failed > 0 {
        bail!("{out}{failed} broker(s) refused");
    }
    Ok(out)
}

/// `updateAclConfig`.
pub async fn update_acl_config(
    admin: &Admin,
    broker: Option<&str>,
    cluster: Option<&str>,
    account: &remoting::header::broker::CreateAccessConfigRequestHeader,
) -> Result<String> {
    let targets = acl_targets(admin, broker, cluster).await?;
    let account = account.clone();
    let answers = ask_all(admin, targets, move |a, addr| {
        let account = account.clone();
        async move { a.update_acl_config(&addr, &account).await }
    })
    .await;
    report_each(answers, "create or update plain access config to {} success.")
}

/// `deleteAclConfig`.
pub async fn delete_acl_config(
    admin: &Admin,
    broker: Option<&str>,
    cluster: Option<&str>,
    access_key: &str,
) -> Result<String> {
    let targets = acl_targets(admin, broker, cluster).await?;
    let ak = access_key.to_owned();
    let answers = ask_all(admin, targets, move |a, addr| {
        let ak = ak.clone();
        async move { a.delete_acl_config(&addr, &ak).await }
    })
    .await;
    report_each(answers, "delete plain access config account from {} success.")
}

/// `updateGlobalWhiteAddr`.
pub async fn update_global_white_addr(
    admin: &Admin,
    broker: Option<&str>,
    cluster: Option<&str>,
    addresses: &[String],
) -> Result<String> {
    let targets = acl_targets(admin, broker, cluster).await?;
    let list = addresses.to_vec();
    let answers = ask_all(admin, targets, move |a, addr| {
        let list = list.clone();
        async move { a.update_global_white_addrs(&addr, &list).await }
    })
    .await;
    report_each(answers, "update global white remote addresses to {} success.")
}

/// `getAclConfig`: each broker's white list and accounts, laid out as mqadmin
/// prints them.
///
/// # Errors
/// The targets cannot be resolved.
pub async fn acl_configs(admin: &Admin, broker: Option<&str>, cluster: Option<&str>) -> Result<String> {
    let targets = acl_targets(admin, broker, cluster).await?;
    let answers = ask_all(admin, targets, |a, addr| async move { a.acl_config(&addr).await }).await;
    let mut out = String::new();
    for (addr, answer) in answers {
        let c = match answer {
            Ok(c) => c,
            Err(e) => {
                out.push_str(&format!("{addr}: {e}\n"));
                continue;
            }
        };
        out.push_str(&format!(
            "\n{:<20}: [{}]\n\naccounts:\n",
            "globalWhiteRemoteAddresses",
            c.global_white_addrs.join(", ")
        ));
        for a in &c.plain_access_configs {
            let opt = |v: &Option<String>| v.clone().unwrap_or_default();
            for (k, v) in [
                ("accessKey", a.access_key.clone()),
                ("secretKey", a.secret_key.clone()),
                ("whiteRemoteAddress", opt(&a.white_remote_address)),
                ("admin", a.admin.to_string()),
                ("defaultTopicPerm", opt(&a.default_topic_perm)),
                ("defaultGroupPerm", opt(&a.default_group_perm)),
                ("topicPerms", format!("[{}]", a.topic_perms.join(", "))),
                ("groupPerms", format!("[{}]", a.group_perms.join(", "))),
            ] {
                out.push_str(&format!("  {k:<18}: {v}\n"));
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// `clusterAclConfigVersion`: a row per broker.
///
/// # Errors
/// The targets cannot be resolved.
pub async fn acl_config_versions(admin: &Admin, broker: Option<&str>, cluster: Option<&str>) -> Result<String> {
    let targets = acl_targets(admin, broker, cluster).await?;
    let answers = ask_all(admin, targets, |a, addr| async move { a.acl_config_version(&addr).await }).await;
    let mut out = format!(
        "{:<20} {:<20} {:<22} {:<24} {:<20}\n",
        "#Cluster Name", "#Broker Name", "#Broker Addr", "#AclConfigVersionNum", "#AclLastUpdateTime"
    );
    for (addr, answer) in answers {
        match answer {
            Ok(h) => {
                let v: serde_json::Value = serde_json::from_str(&h.version).unwrap_or_default();
                let counter = v.get("counter").and_then(serde_json::Value::as_i64).unwrap_or(0);
                let ts = v.get("timestamp").and_then(serde_json::Value::as_i64).unwrap_or(0);
                out.push_str(&format!(
                    "{:<20} {:<20} {:<22} {:<24} {:<20}\n",
                    h.cluster_name, h.broker_name, h.broker_addr, counter, ts
                ));
            }
            Err(e) => out.push_str(&format!("{addr}: {e}\n")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namesrv_flag_splits_like_rocketmq() {
        assert_eq!(namesrv_list(Some("a:9876; b:9876;")), Some(vec!["a:9876".to_owned(), "b:9876".to_owned()]));
        assert_eq!(namesrv_list(None), None);
        assert!(parse_timestamp("now").unwrap() > 1_700_000_000_000);
        assert_eq!(parse_timestamp("1700000000000").unwrap(), 1_700_000_000_000);
        assert!(parse_timestamp("yesterday").is_err());
    }

    fn broker(name: &str, id: u64, addr: &str) -> ClusterBroker {
        ClusterBroker { cluster: "C".into(), broker_name: name.into(), broker_id: id, addr: addr.into() }
    }

    fn kv(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn roles_come_from_the_broker_else_from_the_id() {
        let check = |id, info: Option<BTreeMap<String, String>>, role: &str| {
            assert_eq!(broker_role(id, info.as_ref()), role, "id {id}, {info:?}");
        };
        check(0, kv(&[("brokerRole", "SYNC_MASTER")]), "SYNC_MASTER");
        check(0, kv(&[("brokerRole", "AsyncMaster")]), "ASYNC_MASTER");
        check(1, kv(&[("brokerRole", "SLAVE")]), "SLAVE");
        // What the broker says wins over the id (a misconfigured broker shows).
        check(0, kv(&[("brokerRole", "SLAVE")]), "SLAVE");
        // No answer, no key, or a word we do not know: RocketMQ's rule on the id.
        check(0, None, "MASTER");
        check(2, None, "SLAVE");
        check(0, kv(&[("brokerRole", "LEADER")]), "MASTER");
        check(3, kv(&[]), "SLAVE");
    }

    #[test]
    fn cluster_list_shows_id_role_and_ha_address() {
        let rows = vec![
            (
                broker("broker-a", 0, "10.0.0.1:10911"),
                kv(&[("brokerRole", "ASYNC_MASTER"), ("haServerAddr", "10.0.0.1:10912")]),
            ),
            (broker("broker-a", 1, "10.0.0.2:10911"), kv(&[("brokerRole", "SLAVE"), ("haServerAddr", "")])),
            (broker("broker-b", 1, "10.0.0.3:10911"), None),
        ];
        assert_eq!(
            format_cluster_list(&rows),
            "\
#Cluster Name      #Broker Name            #BID  #Role         #Addr                  #HAAddr
C                  broker-a                0     ASYNC_MASTER  10.0.0.1:10911         10.0.0.1:10912
C                  broker-a                1     SLAVE         10.0.0.2:10911         -
C                  broker-b                1     SLAVE         10.0.0.3:10911         -
"
        );
    }

    #[test]
    fn ha_status_asks_masters_or_else_the_slaves() {
        let mut info = ClusterInfo::default();
        for (cluster, name, addrs) in [
            ("C", "broker-a", vec![(0, "a0"), (1, "a1")]),
            ("C", "broker-b", vec![(1, "b1"), (2, "b2")]),
            ("D", "broker-c", vec![(0, "c0")]),
        ] {
            info.cluster_addr_table.entry(cluster.to_owned()).or_default().insert(name.to_owned());
            let bd = common::route::BrokerData {
                cluster: cluster.into(),
                broker_name: name.into(),
                broker_addrs: addrs.into_iter().map(|(id, a)| (id, a.to_owned())).collect(),
                ..Default::default()
            };
            info.broker_addr_table.insert(name.to_owned(), bd);
        }
        let c = cluster_brokers(&info, Some("C"));
        assert_eq!(c.len(), 4);
        assert_eq!(ha_targets(&c), ["a0", "b1", "b2"]);
        assert_eq!(cluster_brokers(&info, None).len(), 5);
        assert!(cluster_brokers(&info, Some("E")).is_empty());
    }

    fn master_info() -> HaRuntimeInfo {
        HaRuntimeInfo {
            master: true,
            master_commit_log_max_offset: 4096,
            in_sync_slave_nums: 1,
            ha_connection_info: vec![
                client::admin::HaConnectionInfo {
                    addr: "10.0.0.2:53012".into(),
                    slave_ack_offset: 4096,
                    diff: 0,
                    in_sync: true,
                    transferred_byte_in_second: 2048,
                    transfer_from_where: 4096,
                },
                client::admin::HaConnectionInfo {
                    addr: "10.0.0.3:53013".into(),
                    slave_ack_offset: 1024,
                    diff: 3072,
                    in_sync: false,
                    transferred_byte_in_second: 0,
                    transfer_from_where: 1024,
                },
            ],
            ha_client_runtime_info: HaClientRuntimeInfo::default(),
        }
    }

    #[test]
    fn ha_status_of_a_master_lists_its_slaves() {
        assert_eq!(
            format_ha_status("10.0.0.1:10911", &master_info()),
            "\
#MasterAddr                10.0.0.1:10911
#MasterCommitLogMaxOffset  4096
#SlaveNum                  2
#InSyncSlaveNum            1
#SlaveAddr                        #SlaveAckOffset            #Diff #TransferSpeed(KB/s)      #Status #TransferFromWhere
10.0.0.2:53012                               4096                0                 2.00           OK               4096
10.0.0.3:53013                               1024             3072                 0.00  Fall Behind               1024
"
        );
    }

    #[test]
    fn ha_status_of_a_slave_names_its_master() {
        let info = HaRuntimeInfo {
            master: false,
            ha_client_runtime_info: HaClientRuntimeInfo {
                master_addr: "10.0.0.1:10912".into(),
                transferred_byte_in_second: 512,
                max_offset: 4000,
                last_read_timestamp: 1_700_000_000_123,
                last_write_timestamp: 0,
                master_flush_offset: 3900,
                is_activated: None,
            },
            ..HaRuntimeInfo::default()
        };
        assert_eq!(
            format_ha_status("10.0.0.2:10911", &info),
            "\
#SlaveAddr                 10.0.0.2:10911
#MasterAddr                10.0.0.1:10912
#CommitLogMaxOffset        4000
#TransferSpeed(KB/s)       0.50
#LastReadTime              2023-11-14T22:13:20.123Z
#LastWriteTime             -
#MasterFlushOffset         3900
#Activated                 -
"
        );
    }

    #[test]
    fn msg_trace_prints_sends_then_consumptions_by_group_then_transaction_ends() {
        use client::msg_trace::data::{
            EndTransactionRecord, PubRecord, SubAfterRecord, SubBeforeRecord, TraceMessageType,
        };
        let host: SocketAddr = "10.0.0.7:40000".parse().unwrap();
        let before = |group: &str, request_id: &str, ts| {
            TraceRecord::SubBefore(SubBeforeRecord {
                timestamp: ts,
                region_id: "R".into(),
                group: group.into(),
                request_id: request_id.into(),
                msg_id: "M".into(),
                retry_times: 0,
                keys: None,
            })
        };
        let after = |request_id: &str, ok, ts| {
            TraceRecord::SubAfter(SubAfterRecord {
                request_id: request_id.into(),
                msg_id: "M".into(),
                cost_ms: 4,
                success: ok,
                keys: None,
                context_code: Some(0),
                timestamp: ts,
            })
        };
        let records = vec![
            (
                TraceRecord::Pub(PubRecord {
                    timestamp: 1_000,
                    region_id: "R".into(),
                    group: "PG".into(),
                    topic: "T".into(),
                    msg_id: "M".into(),
                    tags: None,
                    keys: None,
                    store_host: "10.0.0.1:10911".into(),
                    body_length: 3,
                    cost_ms: 2,
                    msg_type: TraceMessageType::TransactionHalf,
                    offset_msg_id: None,
                    success: true,
                }),
                host,
            ),
            (before("CG2", "r1", 2_000), host),
            (before("CG1", "r2", 3_000), host),
            (after("r1", false, Some(2_500)), host),
            (after("r2", true, None), host),
            (
                TraceRecord::EndTransaction(EndTransactionRecord {
                    timestamp: 1_500,
                    region_id: "R".into(),
                    group: "PG".into(),
                    topic: "T".into(),
                    msg_id: "M".into(),
                    tags: None,
                    keys: None,
                    store_host: "10.0.0.1:10911".into(),
                    msg_type: TraceMessageType::TransactionHalf,
                    transaction_id: "M".into(),
                    state: "COMMIT_MESSAGE".into(),
                    from_check: true,
                }),
                host,
            ),
        ];
        let out = format_msg_trace("M", &records);
        let rows: Vec<&str> = out.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
        assert_eq!(rows.len(), 4, "{out}");
        assert!(
            rows[0].starts_with("Pub        PG ")
                && rows[0].contains("1970-01-01T00:00:01.000Z")
                && rows[0].ends_with("2ms        success"),
            "{out}"
        );
        // Groups in name order; a SubAfter's group and (missing) time come from its SubBefore.
        assert!(
            rows[1].starts_with("Sub        CG1 ") && rows[1].contains("00:00:03.000Z") && rows[1].ends_with("success"),
            "{out}"
        );
        assert!(
            rows[2].starts_with("Sub        CG2 ") && rows[2].contains("00:00:02.500Z") && rows[2].ends_with("failed"),
            "{out}"
        );
        assert!(rows[3].starts_with("EndTx      PG ") && rows[3].ends_with("true       COMMIT_MESSAGE"), "{out}");
        assert!(rows.iter().all(|r| r.contains("10.0.0.7:40000")));
        assert_eq!(format_msg_trace("X", &[]), "no message-trace record of X\n");
    }

    #[test]
    fn ha_answers_as_json_keep_rocketmqs_names_and_report_failures() {
        let answers = vec![
            ("10.0.0.1:10911".to_owned(), Ok(master_info())),
            ("10.0.0.9:10911".to_owned(), Err(client::Error::NoBrokerAddr("broker-z".into()))),
        ];
        let text = format_ha_answers(&answers, true).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["10.0.0.1:10911"]["masterCommitLogMaxOffset"], 4096);
        assert_eq!(v["10.0.0.1:10911"]["haConnectionInfo"][1]["diff"], 3072);
        assert_eq!(v["10.0.0.1:10911"]["haConnectionInfo"][1]["inSync"], false);
        assert_eq!(v["10.0.0.9:10911"]["error"], "no broker address for broker broker-z");
        let text = format_ha_answers(&answers, false).unwrap();
        assert!(text.contains("#Error                     no broker address for broker broker-z"), "{text}");
    }
}
