//! `ferromq-admin` — see the library docs for the commands.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ferromq-admin", version, about = "Administer FerroMQ / RocketMQ clusters")]
struct Args {
    /// Name servers (`host:9876;host2:9876`); default: NAMESRV_ADDR or the config file.
    #[arg(short = 'n', long = "namesrv-addr", global = true)]
    namesrv: Option<String>,
    /// Client config file (`client.toml`, or RocketMQ properties).
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Brokers of every cluster: id, role, address and HA address.
    #[command(name = "clusterList")]
    ClusterList,
    /// Replication status (GET_BROKER_HA_STATUS) of one broker, or of the masters
    /// of a cluster: a master's slaves and their lag, a slave's master.
    #[command(name = "haStatus")]
    HaStatus {
        /// The broker (`ip:port`).
        #[arg(short = 'b', long = "broker", visible_alias = "brokerAddr")]
        broker: Option<String>,
        /// Every broker name of this cluster (`-c` is the config file here).
        #[arg(long = "cluster", visible_alias = "clusterName")]
        cluster: Option<String>,
        /// Print the `HARuntimeInfo` bodies as JSON, keyed by broker address.
        #[arg(long)]
        json: bool,
    },
    /// Runtime information of one broker (`ip:port`): counters, store offsets and
    /// plugin status.
    #[command(name = "brokerStatus")]
    BrokerStatus {
        #[arg(short = 'b', long)]
        broker: String,
    },
    /// Route of a topic.
    #[command(name = "topicRoute")]
    TopicRoute {
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Create or update a topic on every master of a cluster.
    #[command(name = "updateTopic")]
    UpdateTopic {
        #[arg(short = 't', long)]
        topic: String,
        /// Read and write queue count.
        #[arg(short = 'q', long, default_value_t = 8)]
        queues: i32,
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Broker offset, consumer offset and lag per queue.
    #[command(name = "consumerProgress")]
    ConsumerProgress {
        #[arg(short = 'g', long)]
        group: String,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Replay: reset a group's offsets to a timestamp (ms, or `now`).
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime {
        #[arg(short = 'g', long)]
        group: String,
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 's', long)]
        timestamp: String,
    },
    /// Send one message.
    Send {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(long)]
        tags: Option<String>,
        #[arg(short = 'b', long)]
        body: String,
    },
    /// The message-trace timeline of one message: its sends, consumptions and
    /// transaction ends, from the trace topic (`mqadmin queryMsgTraceById`).
    #[command(name = "queryMsgTraceById")]
    QueryMsgTraceById {
        /// The message id (its UNIQ_KEY, as the producer's send result gives it).
        #[arg(short = 'i', long = "msgId")]
        msg_id: String,
        /// The trace topic.
        #[arg(short = 't', long = "traceTopic", default_value = client::msg_trace::DEFAULT_TRACE_TOPIC)]
        trace_topic: String,
        /// Records stored from this time on (ms since the epoch).
        #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
        begin: i64,
        /// Records stored up to this time (ms since the epoch).
        #[arg(short = 'e', long = "endTimestamp", default_value_t = i64::MAX)]
        end: i64,
        /// Trace messages read per broker, at most (`-c` is the config file here).
        #[arg(long = "maxNum", default_value_t = 64)]
        max: i32,
    },
    /// The controller group as one controller sees it (`-a ip:port`).
    #[command(name = "getControllerMetaData")]
    GetControllerMetaData {
        #[arg(short = 'a', long = "controllerAddress")]
        controller: String,
    },
    /// Master, epochs and SyncStateSet of broker sets, from the leading controller.
    #[command(name = "getSyncStateSet")]
    GetSyncStateSet {
        /// Controller addresses (`a;b;c`); the leader is asked.
        #[arg(short = 'a', long = "controllerAddress")]
        controller: String,
        /// A broker name; every broker set when absent.
        #[arg(short = 'b', long = "brokerName")]
        broker_name: Option<String>,
    },
    /// Make a broker the master of its set (it must be alive and in sync).
    #[command(name = "electMaster")]
    ElectMaster {
        #[arg(short = 'a', long = "controllerAddress")]
        controller: String,
        /// The broker's controller-assigned id.
        #[arg(short = 'b', long = "brokerId")]
        broker_id: u64,
        #[arg(long = "brokerName", visible_alias = "bn")]
        broker_name: String,
        /// (`-c` is the config file here.)
        #[arg(long = "clusterName")]
        cluster: String,
    },
    /// The epoch history of each broker of a broker name (controller mode).
    #[command(name = "getBrokerEpoch")]
    GetBrokerEpoch {
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
    },
    /// Forget brokers of a set in the controllers (all of it without `--ids`).
    #[command(name = "cleanBrokerMetadata")]
    CleanBrokerMetadata {
        #[arg(short = 'a', long = "controllerAddress")]
        controller: String,
        #[arg(long = "brokerName", visible_alias = "bn")]
        broker_name: String,
        /// Controller ids to forget, `1;2;3`.
        #[arg(short = 'b', long = "brokerControllerIdsToClean")]
        ids: Option<String>,
        #[arg(long = "clusterName")]
        cluster: Option<String>,
        /// Also brokers that are still alive.
        #[arg(short = 'l', long = "cleanLivingBroker")]
        living: bool,
    },
    /// Create or update an ACL account on a broker, or on every broker of a cluster.
    #[command(name = "updateAclConfig")]
    UpdateAclConfig {
        #[command(flatten)]
        target: AclTarget,
        #[arg(short = 'a', long = "accessKey")]
        access_key: String,
        #[arg(short = 's', long = "secretKey")]
        secret_key: String,
        #[arg(short = 'w', long = "whiteRemoteAddress")]
        white_remote_address: Option<String>,
        #[arg(short = 'i', long = "defaultTopicPerm")]
        default_topic_perm: Option<String>,
        #[arg(short = 'u', long = "defaultGroupPerm")]
        default_group_perm: Option<String>,
        /// `topicA=DENY,topicB=PUB|SUB`.
        #[arg(short = 't', long = "topicPerms")]
        topic_perms: Option<String>,
        /// `groupA=DENY,groupB=SUB`.
        #[arg(short = 'g', long = "groupPerms")]
        group_perms: Option<String>,
        #[arg(short = 'm', long = "admin")]
        admin: Option<bool>,
    },
    /// Delete an ACL account.
    #[command(name = "deleteAclConfig")]
    DeleteAclConfig {
        #[command(flatten)]
        target: AclTarget,
        #[arg(short = 'a', long = "accessKey")]
        access_key: String,
    },
    /// Replace the global white list of remote addresses (comma-separated patterns).
    #[command(name = "updateGlobalWhiteAddr")]
    UpdateGlobalWhiteAddr {
        #[command(flatten)]
        target: AclTarget,
        #[arg(short = 'g', long = "globalWhiteRemoteAddresses")]
        addresses: String,
    },
    /// Each broker's ACL white list and accounts (an admin account's request).
    #[command(name = "getAclConfig", visible_alias = "getAccessConfigSubCommand")]
    GetAclConfig {
        #[command(flatten)]
        target: AclTarget,
    },
    /// The version of each broker's ACL file.
    #[command(name = "clusterAclConfigVersion")]
    ClusterAclConfigVersion {
        #[command(flatten)]
        target: AclTarget,
    },
    /// Print up to `max` messages of a topic (from the start of every queue).
    Consume {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(long, default_value_t = 10)]
        max: usize,
    },
}

/// The brokers an ACL command goes to: one, or every broker of a cluster.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct AclTarget {
    /// The broker (`ip:port`).
    #[arg(short = 'b', long = "brokerAddr")]
    broker: Option<String>,
    /// Every broker of this cluster.
    #[arg(long = "clusterName", visible_alias = "cluster")]
    cluster: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut cfg =
        config::load_client(args.config.as_deref()).context("loading the client configuration")?.config.client;
    admin::credentials_from_tools_yml(&mut cfg)?;
    let namesrv = admin::namesrv_list(args.namesrv.as_deref());
    let run = async {
        let a = client::Admin::new(cfg.clone(), namesrv.clone());
        let out = match &args.command {
            Command::ClusterList => admin::cluster_list(&a).await?,
            Command::HaStatus { broker, cluster, json } => {
                admin::ha_status(&a, broker.as_deref(), cluster.as_deref(), *json).await?
            }
            Command::TopicRoute { topic } => admin::topic_route(&a, topic).await?,
            Command::BrokerStatus { broker } => {
                a.broker_runtime_info(broker).await?.iter().map(|(k, v)| format!("{k:<32} : {v}\n")).collect()
            }
            Command::UpdateTopic { topic, queues, cluster } => {
                a.create_topic(topic, *queues, cluster.as_deref()).await?;
                format!("topic {topic} created with {queues} queues")
            }
            Command::ConsumerProgress { group, topic } => admin::consumer_progress(&a, group, topic).await?,
            Command::ResetOffsetByTime { group, topic, timestamp } => {
                let ts = admin::parse_timestamp(timestamp)?;
                let offsets = a.reset_offset_by_timestamp(group, topic, ts).await?;
                offsets.iter().map(|(mq, o)| format!("{mq} -> {o}\n")).collect()
            }
            Command::Send { topic, tags, body } => {
                admin::send(namesrv.clone(), cfg.clone(), topic, tags.as_deref(), body).await?
            }
            Command::QueryMsgTraceById { msg_id, trace_topic, begin, end, max } => {
                let records = a.query_msg_trace(trace_topic, msg_id, *max, *begin, *end).await?;
                admin::format_msg_trace(msg_id, &records)
            }
            Command::GetControllerMetaData { controller } => admin::controller_metadata(&a, controller).await?,
            Command::GetSyncStateSet { controller, broker_name } => {
                admin::sync_state_set(&a, controller, &broker_name.iter().cloned().collect::<Vec<_>>()).await?
            }
            Command::ElectMaster { controller, broker_id, broker_name, cluster } => {
                admin::elect_master(&a, controller, cluster, broker_name, *broker_id).await?
            }
            Command::GetBrokerEpoch { broker_name } => admin::broker_epochs(&a, broker_name).await?,
            Command::CleanBrokerMetadata { controller, broker_name, ids, cluster, living } => {
                admin::clean_broker_metadata(&a, controller, cluster.as_deref(), broker_name, ids.as_deref(), *living)
                    .await?
            }
            Command::Consume { topic, max } => admin::consume(namesrv.clone(), cfg.clone(), topic, *max).await?,
            Command::UpdateAclConfig {
                target,
                access_key,
                secret_key,
                white_remote_address,
                default_topic_perm,
                default_group_perm,
                topic_perms,
                group_perms,
                admin,
            } => {
                let account = remoting::header::broker::CreateAccessConfigRequestHeader {
                    access_key: access_key.clone(),
                    secret_key: Some(secret_key.clone()),
                    white_remote_address: white_remote_address.clone(),
                    admin: *admin,
                    default_topic_perm: default_topic_perm.clone(),
                    default_group_perm: default_group_perm.clone(),
                    topic_perms: topic_perms.clone(),
                    group_perms: group_perms.clone(),
                };
                admin::update_acl_config(&a, target.broker.as_deref(), target.cluster.as_deref(), &account).await?
            }
            Command::DeleteAclConfig { target, access_key } => {
                admin::delete_acl_config(&a, target.broker.as_deref(), target.cluster.as_deref(), access_key).await?
            }
            Command::UpdateGlobalWhiteAddr { target, addresses } => {
                let list: Vec<String> =
                    addresses.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
                admin::update_global_white_addr(&a, target.broker.as_deref(), target.cluster.as_deref(), &list).await?
            }
            Command::GetAclConfig { target } => {
                admin::acl_configs(&a, target.broker.as_deref(), target.cluster.as_deref()).await?
            }
            Command::ClusterAclConfigVersion { target } => {
                admin::acl_config_versions(&a, target.broker.as_deref(), target.cluster.as_deref()).await?
            }
        };
        a.shutdown();
        anyhow::Ok(out)
    };
    let out = tokio::time::timeout(admin::COMMAND_TIMEOUT, run).await.context("the command timed out")??;
    println!("{}", out.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Args, Command};

    #[test]
    fn flags_do_not_clash_and_ha_status_takes_mqadmins_names() {
        Args::command().debug_assert();
        let args = Args::try_parse_from(["ferromq-admin", "haStatus", "--brokerAddr", "10.0.0.1:10911"]).unwrap();
        assert!(
            matches!(args.command, Command::HaStatus { broker: Some(ref b), cluster: None, json: false } if b == "10.0.0.1:10911")
        );
        let args =
            Args::try_parse_from(["ferromq-admin", "-c", "client.toml", "haStatus", "--clusterName", "C", "--json"])
                .unwrap();
        assert!(
            matches!(args.command, Command::HaStatus { broker: None, cluster: Some(ref c), json: true } if c == "C")
        );
        assert_eq!(args.config.as_deref(), Some(std::path::Path::new("client.toml")));
    }
}
