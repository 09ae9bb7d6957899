//! `ferromq-admin` — see the library docs for the commands.

use admin::ops;
use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use remoting::RequestCode;

#[derive(Debug, Parser)]
#[command(name = "ferromq-admin", version, about = "Administer FerroMQ / RocketMQ clusters")]
struct Args {
    /// Name servers (`host:9876;host2:9876`); default: NAMESRV_ADDR or the config file.
    #[arg(short = 'n', long = "namesrv-addr", global = true)]
    namesrv: Option<String>,
    /// Client config file (`client.toml`, or RocketMQ properties).
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<std::path::PathBuf>,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,
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
    /// Create or update a topic on one broker or on every master of a cluster.
    #[command(
        name = "updateTopic",
        after_help = "Examples:\n  ferromq-admin updateTopic -t TopicTest -q 8\n  ferromq-admin updateTopic -t Orders -r 4 -w 4 -o --clusterName DefaultCluster\n  ferromq-admin updateTopic -t Payments -a +message.type=FIFO   (RocketMQ 5 clients: FIFO message groups)"
    )]
    UpdateTopic {
        #[arg(short = 't', long)]
        topic: String,
        /// Read and write queue count (`-r` and `-w` set them apart).
        #[arg(short = 'q', long, default_value_t = 8)]
        queues: i32,
        #[arg(short = 'r', long = "readQueueNums")]
        read_queues: Option<i32>,
        #[arg(short = 'w', long = "writeQueueNums")]
        write_queues: Option<i32>,
        /// Permission: 2 read-only, 4 write-only, 6 read and write.
        #[arg(short = 'p', long, default_value_t = 6)]
        perm: i32,
        /// An ordered topic (its queues are kept in order across brokers).
        #[arg(short = 'o', long)]
        order: bool,
        /// Attribute changes, RocketMQ 5's `+key=value,-key`: `+message.type=FIFO`
        /// (NORMAL, FIFO, DELAY, TRANSACTION or MIXED) sets the message type the
        /// topic accepts from RocketMQ 5 clients.
        #[arg(short = 'a', long)]
        attributes: Option<String>,
        /// One broker (`ip:port`) instead of every master of the cluster.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        #[arg(long, visible_alias = "clusterName")]
        cluster: Option<String>,
    },
    /// Broker offset, consumer offset and lag per queue of a group; without `-g`,
    /// every group's backlog and consume TPS.
    #[command(
        name = "consumerProgress",
        after_help = "Examples:\n  ferromq-admin consumerProgress -g CG -t TopicTest\n  ferromq-admin consumerProgress"
    )]
    ConsumerProgress {
        #[arg(short = 'g', long = "groupName", visible_alias = "group")]
        group: Option<String>,
        #[arg(short = 't', long)]
        topic: Option<String>,
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
    /// Every topic the name servers know (`--cluster`: the topics of one cluster).
    #[command(
        name = "topicList",
        after_help = "Examples:\n  ferromq-admin topicList\n  ferromq-admin topicList --clusterName DefaultCluster --json"
    )]
    TopicList {
        #[arg(long = "clusterName", visible_alias = "cluster")]
        cluster: Option<String>,
    },
    /// Min and max offset and last store time of each queue of a topic.
    #[command(name = "topicStatus", after_help = "Example:\n  ferromq-admin topicStatus -t TopicTest")]
    TopicStatus {
        #[arg(short = 't', long)]
        topic: String,
    },
    /// The clusters a topic has queues in.
    #[command(name = "topicClusterList", after_help = "Example:\n  ferromq-admin topicClusterList -t TopicTest")]
    TopicClusterList {
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Delete a topic from the brokers of a cluster and from the name servers.
    #[command(
        name = "deleteTopic",
        after_help = "Example:\n  ferromq-admin deleteTopic -t TopicTest --clusterName DefaultCluster"
    )]
    DeleteTopic {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(long = "clusterName", visible_alias = "cluster")]
        cluster: Option<String>,
    },
    /// Set a topic's permission: 2 read-only, 4 write-only, 6 read and write.
    #[command(name = "updateTopicPerm", after_help = "Example:\n  ferromq-admin updateTopicPerm -t TopicTest -p 2")]
    UpdateTopicPerm {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'p', long)]
        perm: i32,
    },
    /// Create or update a subscription group.
    #[command(
        name = "updateSubGroup",
        after_help = "Example:\n  ferromq-admin updateSubGroup -g CG --clusterName DefaultCluster -r 3"
    )]
    UpdateSubGroup {
        #[command(flatten)]
        target: BrokerTarget,
        #[arg(short = 'g', long = "groupName")]
        group: String,
        /// Allow consumption.
        #[arg(short = 's', long = "consumeEnable", default_value_t = true)]
        consume_enable: bool,
        /// Allow broadcast consumption.
        #[arg(short = 'd', long = "consumeBroadcastEnable", default_value_t = true)]
        broadcast: bool,
        /// Retry queues.
        #[arg(short = 'q', long = "retryQueueNums", default_value_t = 1)]
        retry_queue_nums: i32,
        /// Deliveries before a message goes to the dead-letter queue.
        #[arg(short = 'r', long = "retryMaxTimes", default_value_t = 16)]
        retry_max_times: i32,
        /// Tell consumers when the group's members change.
        #[arg(short = 'a', long = "notifyConsumerIdsChanged", default_value_t = true)]
        notify: bool,
        /// A FIFO group: each queue's messages go out one batch at a time, the next
        /// after the previous is acked (RocketMQ 5 consumers; `-o true`).
        #[arg(short = 'o', long = "consumeMessageOrderly", default_value_t = false, action = clap::ArgAction::Set)]
        orderly: bool,
    },
    /// Delete a subscription group (and with `-r`, its offsets).
    #[command(
        name = "deleteSubGroup",
        after_help = "Example:\n  ferromq-admin deleteSubGroup -g CG --clusterName DefaultCluster"
    )]
    DeleteSubGroup {
        #[command(flatten)]
        target: BrokerTarget,
        #[arg(short = 'g', long = "groupName")]
        group: String,
        #[arg(short = 'r', long = "removeOffset")]
        remove_offset: bool,
    },
    /// Subscription groups of a broker or of the masters of a cluster.
    #[command(name = "subGroupList", after_help = "Example:\n  ferromq-admin subGroupList --json")]
    SubGroupList {
        #[command(flatten)]
        target: BrokerTarget,
    },
    /// A broker's settings (RocketMQ's names and units).
    #[command(name = "getBrokerConfig", after_help = "Example:\n  ferromq-admin getBrokerConfig -b 127.0.0.1:10911")]
    GetBrokerConfig {
        #[command(flatten)]
        target: BrokerTarget,
    },
    /// Change a setting while the broker runs (only those the broker can change
    /// live; it names any other and changes nothing).
    #[command(
        name = "updateBrokerConfig",
        after_help = "Example:\n  ferromq-admin updateBrokerConfig -b 127.0.0.1:10911 -k brokerPermission -v 4"
    )]
    UpdateBrokerConfig {
        #[command(flatten)]
        target: BrokerTarget,
        #[arg(short = 'k', long)]
        key: String,
        #[arg(short = 'v', long)]
        value: String,
    },
    /// Make a broker name read-only on every name server.
    #[command(name = "wipeWritePerm", after_help = "Example:\n  ferromq-admin wipeWritePerm -b broker-a")]
    WipeWritePerm {
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
    },
    /// Give a broker name its write permission back on every name server.
    #[command(name = "addWritePerm", after_help = "Example:\n  ferromq-admin addWritePerm -b broker-a")]
    AddWritePerm {
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
    },
    /// Per topic and group: backlog, TPS in and out, messages in and out over 24 h.
    #[command(
        name = "statsAll",
        after_help = "Examples:\n  ferromq-admin statsAll\n  ferromq-admin statsAll -t TopicTest"
    )]
    StatsAll {
        #[arg(short = 't', long)]
        topic: Option<String>,
        /// System and retry topics too.
        #[arg(short = 'a', long = "activeTopic")]
        all: bool,
    },
    /// Delete consume-queue files that only point at deleted data.
    #[command(
        name = "cleanExpiredCQ",
        after_help = "Example:\n  ferromq-admin cleanExpiredCQ --clusterName DefaultCluster"
    )]
    CleanExpiredCq {
        #[command(flatten)]
        target: BrokerTarget,
    },
    /// Run retention now (expired commit-log files), whatever the deleteWhen hour.
    #[command(
        name = "deleteExpiredCommitLog",
        after_help = "Example:\n  ferromq-admin deleteExpiredCommitLog -b 127.0.0.1:10911"
    )]
    DeleteExpiredCommitLog {
        #[command(flatten)]
        target: BrokerTarget,
    },
    /// Drop the consume queues of topics the broker no longer has.
    #[command(name = "cleanUnusedTopic", after_help = "Example:\n  ferromq-admin cleanUnusedTopic -b 127.0.0.1:10911")]
    CleanUnusedTopic {
        #[command(flatten)]
        target: BrokerTarget,
    },
    /// A consumer group's clients, subscriptions, consume type and model.
    #[command(name = "consumerConnection", after_help = "Example:\n  ferromq-admin consumerConnection -g CG")]
    ConsumerConnection {
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
    },
    /// A producer group's connections to a topic's brokers.
    #[command(
        name = "producerConnection",
        after_help = "Example:\n  ferromq-admin producerConnection -g PG -t TopicTest"
    )]
    ProducerConnection {
        #[arg(short = 'g', long = "producerGroup")]
        group: String,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Each online client's running info: properties, subscriptions, held queues.
    #[command(name = "consumerStatus", after_help = "Example:\n  ferromq-admin consumerStatus -g CG")]
    ConsumerStatus {
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
        /// One client id only.
        #[arg(short = 'i', long = "clientId")]
        client_id: Option<String>,
    },
    /// Copy one group's offsets on a topic to another group.
    #[command(
        name = "cloneGroupOffset",
        after_help = "Example:\n  ferromq-admin cloneGroupOffset -s CG -d CG2 -t TopicTest"
    )]
    CloneGroupOffset {
        #[arg(short = 's', long = "srcGroup")]
        src: String,
        #[arg(short = 'd', long = "destGroup")]
        dest: String,
        #[arg(short = 't', long)]
        topic: String,
        /// The source group is offline.
        #[arg(short = 'o', long)]
        offline: bool,
    },
    /// Skip a group's backlog: its offsets move to the end of every queue.
    #[command(
        name = "skipAccumulatedMessage",
        after_help = "Example:\n  ferromq-admin skipAccumulatedMessage -g CG -t TopicTest"
    )]
    SkipAccumulatedMessage {
        #[arg(short = 'g', long)]
        group: String,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// A message by its offset message id (or, with `-t`, by its unique id).
    #[command(
        name = "queryMsgById",
        after_help = "Example:\n  ferromq-admin queryMsgById -i 7F00000100002A9F0000000000000000"
    )]
    QueryMsgById {
        #[arg(short = 'i', long = "msgId")]
        msg_id: String,
        #[arg(short = 't', long)]
        topic: Option<String>,
    },
    /// Messages of a topic carrying a key.
    #[command(name = "queryMsgByKey", after_help = "Example:\n  ferromq-admin queryMsgByKey -t TopicTest -k order-42")]
    QueryMsgByKey {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'k', long = "msgKey")]
        key: String,
        #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
        begin: i64,
        #[arg(short = 'e', long = "endTimestamp", default_value_t = i64::MAX)]
        end: i64,
    },
    /// A message by its unique id (the msgId a producer's send result gives).
    #[command(
        name = "queryMsgByUniqueKey",
        after_help = "Example:\n  ferromq-admin queryMsgByUniqueKey -t TopicTest -i 7F0000010E6A18B4AAC2..."
    )]
    QueryMsgByUniqueKey {
        #[arg(short = 'i', long = "msgId")]
        msg_id: String,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// The message at one offset of one queue.
    #[command(
        name = "queryMsgByOffset",
        after_help = "Example:\n  ferromq-admin queryMsgByOffset -t TopicTest -b broker-a -i 0 -o 3"
    )]
    QueryMsgByOffset {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
        #[arg(short = 'i', long = "queueId")]
        queue_id: i32,
        #[arg(short = 'o', long)]
        offset: i64,
    },
    /// Messages of a topic stored in a time range.
    #[command(name = "printMsg", after_help = "Example:\n  ferromq-admin printMsg -t TopicTest -b 1700000000000")]
    PrintMsg {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
        begin: i64,
        #[arg(short = 'e', long = "endTimestamp", default_value_t = i64::MAX)]
        end: i64,
        #[arg(long = "maxNum", default_value_t = 100)]
        max: usize,
    },
    /// Messages of one queue stored in a time range.
    #[command(
        name = "printMsgByQueue",
        after_help = "Example:\n  ferromq-admin printMsgByQueue -t TopicTest -a broker-a -i 0"
    )]
    PrintMsgByQueue {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'a', long = "brokerName")]
        broker_name: String,
        #[arg(short = 'i', long = "queueId")]
        queue_id: i32,
        #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
        begin: i64,
        #[arg(short = 'e', long = "endTimestamp", default_value_t = i64::MAX)]
        end: i64,
        #[arg(long = "maxNum", default_value_t = 100)]
        max: usize,
    },
    /// Send one message with tags and keys.
    #[command(
        name = "sendMessage",
        after_help = "Examples:\n  ferromq-admin sendMessage -t TopicTest -p 'hello' --tags TagA -k order-42\n  \
                      ferromq-admin sendMessage -t TopicTest -p 'to queue 3' -b broker-a -i 3"
    )]
    SendMessage {
        #[arg(short = 't', long)]
        topic: String,
        /// The body.
        #[arg(short = 'p', long)]
        body: String,
        #[arg(long)]
        tags: Option<String>,
        /// Keys, comma-separated.
        #[arg(short = 'k', long)]
        keys: Option<String>,
        /// Send to this broker name's queue `-i` (both or neither).
        #[arg(short = 'b', long = "broker", requires = "queue")]
        broker: Option<String>,
        /// The queue id on broker `-b`.
        #[arg(short = 'i', long = "qid", requires = "broker")]
        queue: Option<i32>,
    },
    /// Print messages of a topic from the start of every queue (no offsets committed).
    #[command(name = "consumeMessage", after_help = "Example:\n  ferromq-admin consumeMessage -t TopicTest --max 5")]
    ConsumeMessage {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(long, default_value_t = 10)]
        max: usize,
    },
    /// Send messages one by one and print each round trip and the average.
    #[command(
        name = "checkMsgSendRT",
        after_help = "Example:\n  ferromq-admin checkMsgSendRT -t TopicTest -a 20 -s 128"
    )]
    CheckMsgSendRt {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(short = 'a', long, default_value_t = 100)]
        amount: usize,
        #[arg(short = 's', long, default_value_t = 128)]
        size: usize,
    },
    /// Send a dead-letter message (by its offset message id) back to its topic.
    #[command(
        name = "resendDLQ",
        after_help = "Example:\n  ferromq-admin resendDLQ -i 7F00000100002A9F0000000000001A2B"
    )]
    ResendDlq {
        #[arg(short = 'i', long = "msgId")]
        msg_id: String,
    },
    /// Set a KV pair on every name server.
    #[command(
        name = "updateKvConfig",
        after_help = "Example:\n  ferromq-admin updateKvConfig -s ORDER_TOPIC_CONFIG -k TopicTest -v broker-a:4"
    )]
    UpdateKvConfig {
        #[arg(short = 's', long)]
        namespace: String,
        #[arg(short = 'k', long)]
        key: String,
        #[arg(short = 'v', long)]
        value: String,
    },
    /// Delete a KV pair on every name server.
    #[command(
        name = "deleteKvConfig",
        after_help = "Example:\n  ferromq-admin deleteKvConfig -s ORDER_TOPIC_CONFIG -k TopicTest"
    )]
    DeleteKvConfig {
        #[arg(short = 's', long)]
        namespace: String,
        #[arg(short = 'k', long)]
        key: String,
    },
    /// A namespace's KV pairs.
    #[command(name = "getKvList", after_help = "Example:\n  ferromq-admin getKvList -s ORDER_TOPIC_CONFIG")]
    GetKvList {
        #[arg(short = 's', long)]
        namespace: String,
    },
    /// Every name server's settings.
    #[command(name = "getNamesrvConfig")]
    GetNamesrvConfig,
    /// Change a name server setting on every name server while they run.
    #[command(
        name = "updateNamesrvConfig",
        after_help = "Example:\n  ferromq-admin updateNamesrvConfig -k orderMessageEnable -v true"
    )]
    UpdateNamesrvConfig {
        #[arg(short = 'k', long)]
        key: String,
        #[arg(short = 'v', long)]
        value: String,
    },
    /// Watch every consumer group's backlog: the all-groups view of
    /// `consumerProgress`, printed again every interval (Ctrl-C stops it).
    #[command(
        name = "startMonitoring",
        after_help = "Example:\n  ferromq-admin startMonitoring --interval 5 --rounds 12"
    )]
    StartMonitoring {
        /// Seconds between two views.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// Stop after this many views (default: run until stopped).
        #[arg(long)]
        rounds: Option<u64>,
    },
    /// Plugins loaded by brokers: state, kind, generation, breaker, calls, errors.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Example:\n  ferromq-admin completion bash > /etc/bash_completion.d/ferromq-admin")]
    Completion { shell: clap_complete::Shell },
    /// Print up to `max` messages of a topic (from the start of every queue).
    Consume {
        #[arg(short = 't', long)]
        topic: String,
        #[arg(long, default_value_t = 10)]
        max: usize,
    },
}

/// The brokers a command goes to: one (`-b`), the masters of a cluster, or (with
/// neither) every master.
#[derive(Debug, clap::Args)]
struct BrokerTarget {
    /// The broker (`ip:port`).
    #[arg(short = 'b', long = "brokerAddr")]
    broker: Option<String>,
    /// The masters of this cluster (`-c` is the config file here).
    #[arg(long = "clusterName", visible_alias = "cluster")]
    cluster: Option<String>,
}

impl BrokerTarget {
    fn target(&self) -> ops::Target {
        ops::Target { broker: self.broker.clone(), cluster: self.cluster.clone() }
    }
}

/// The brokers a plugin command goes to: one, or every broker (masters and slaves)
/// of a cluster; with neither, every broker the name servers know.
#[derive(Debug, clap::Args)]
struct PluginTarget {
    /// The broker (`ip:port`).
    #[arg(short = 'b', long = "brokerAddr")]
    broker: Option<String>,
    /// Every broker of this cluster, masters and slaves.
    #[arg(long = "clusterName", visible_alias = "cluster")]
    cluster: Option<String>,
}

impl PluginTarget {
    fn target(&self) -> ops::Target {
        ops::Target { broker: self.broker.clone(), cluster: self.cluster.clone() }
    }
}

/// Where a plugin is bound: a filter to a topic and a consumer group, a queue
/// selector or check-back handler to a topic.
#[derive(Debug, clap::Args)]
struct BindingArgs {
    /// The plugin's name.
    name: String,
    /// The topic, or `*` for every topic.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// The consumer group (filters only), or `*` for every group.
    #[arg(short = 'g', long = "group")]
    group: Option<String>,
    #[command(flatten)]
    target: PluginTarget,
}

impl BindingArgs {
    fn header(&self) -> remoting::header::plugin::BindPluginRequestHeader {
        remoting::header::plugin::BindPluginRequestHeader {
            name: self.name.clone(),
            topic: self.topic.clone(),
            group: self.group.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// The plugins of the target brokers: source, version, SHA-256, generation,
    /// bindings, breaker, calls, errors, timeouts, latency.
    #[command(after_help = "Example:\n  ferromq-admin plugin list --clusterName DefaultCluster")]
    List {
        #[command(flatten)]
        target: PluginTarget,
    },
    /// One plugin's state and counters on the target brokers.
    #[command(
        visible_alias = "counters",
        after_help = "Example:\n  ferromq-admin plugin status price-filter -b 127.0.0.1:10911"
    )]
    Status {
        name: String,
        #[command(flatten)]
        target: PluginTarget,
    },
    /// Uploads a `.wasm` module or `.lua` script to every target broker, which checks
    /// it (ABI, compile, init) before serving it and keeps it in its store. Deploying
    /// a name again is a hot reload; a refused version leaves the old one serving.
    #[command(
        after_help = "Examples:\n  ferromq-admin plugin deploy target/wasm32-unknown-unknown/release/vip.wasm                             --name vip --clusterName DefaultCluster\n                              ferromq-admin plugin deploy vip_filter.lua --name vip -b 127.0.0.1:10911"
    )]
    Deploy {
        /// The artifact (`.wasm` or `.lua`), or a project directory made by `plugin
        /// new` (its name, kind, artifact and config are used).
        file: std::path::PathBuf,
        /// The plugin's name on the brokers (`[a-z0-9][a-z0-9_-]*`); required for an
        /// artifact.
        #[arg(long)]
        name: Option<String>,
        /// What it implements: filter, queue_selector or txn_check (an artifact's
        /// default: filter).
        #[arg(long)]
        kind: Option<String>,
        /// A setting handed to the plugin's `init`, `key=value` (repeatable; over a
        /// project's `[config]`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// What a failed call does (the kind's default if absent).
        #[arg(long = "failure-policy")]
        failure_policy: Option<String>,
        #[command(flatten)]
        target: PluginTarget,
    },
    /// Creates a plugin project: a Rust crate (built to WASM with sdk-wasm) or a Lua
    /// script, with a harness test, sample messages and a README.
    #[command(
        after_help = "Examples:\n  ferromq-admin plugin new filter vip-filter\n                              ferromq-admin plugin new queue_selector order-router --lang lua"
    )]
    New {
        /// filter, queue_selector, txn_check or allocation.
        kind: String,
        /// The plugin's name and directory (`[a-z0-9][a-z0-9_-]*`).
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: admin::plugin_dev::Lang,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
        /// FerroMQ's `sdk-wasm` directory (default: the checkout this tool was built from).
        #[arg(long)]
        sdk: Option<std::path::PathBuf>,
    },
    /// Builds a plugin project reproducibly (locked dependencies, wasm32 release
    /// profile) and checks the artifact in the plugin host the broker runs.
    #[command(after_help = "Example:\n  cd vip-filter && ferromq-admin plugin build")]
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// Runs a built plugin on sample messages through the plugin host (the broker's
    /// frames, limits and checks) and prints each verdict.
    #[command(after_help = "Example:\n  ferromq-admin plugin test --input messages.json")]
    Test {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
        /// A JSON list of messages (`topic`, `tags`, `keys`, `properties`, `body`).
        #[arg(long, default_value = "messages.json")]
        input: std::path::PathBuf,
        /// The consumer group a filter sees.
        #[arg(long, default_value = "TestGroup")]
        group: String,
        /// How many queues a queue selector chooses among (an allocation strategy
        /// shares out).
        #[arg(long, default_value_t = 4)]
        queues: u32,
        /// How many consumers an allocation strategy shares the queues among.
        #[arg(long, default_value_t = 3)]
        clients: usize,
    },
    /// Binds a plugin without a restart: a filter to a topic + consumer group, a
    /// queue selector or check-back handler to a topic. Kept across restarts; a
    /// binding in broker.toml for the same place wins.
    #[command(
        after_help = "Example:\n  ferromq-admin plugin bind vip -t Orders -g BillingGroup --clusterName DefaultCluster"
    )]
    Bind(BindingArgs),
    /// Removes a binding made with `plugin bind`.
    #[command(
        after_help = "Example:\n  ferromq-admin plugin unbind vip -t Orders -g BillingGroup --clusterName DefaultCluster"
    )]
    Unbind(BindingArgs),
    /// Reloads a plugin from its file now (a failed reload keeps the old version).
    #[command(after_help = "Example:\n  ferromq-admin plugin reload vip --clusterName DefaultCluster")]
    Reload {
        name: String,
        #[command(flatten)]
        target: PluginTarget,
    },
    /// Serves a deployed plugin's previous version again.
    #[command(after_help = "Example:\n  ferromq-admin plugin rollback vip --clusterName DefaultCluster")]
    Rollback {
        name: String,
        #[command(flatten)]
        target: PluginTarget,
    },
    /// What a plugin logged (its `log`/`print` lines, newest 1000 per broker),
    /// oldest first; `--follow` keeps printing new lines until interrupted.
    #[command(after_help = "Example:\n  ferromq-admin plugin logs vip --clusterName DefaultCluster --follow")]
    Logs {
        name: String,
        /// Keep printing new lines (every half second).
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        target: PluginTarget,
    },
    /// Removes a deployed plugin that is no longer bound.
    #[command(after_help = "Example:\n  ferromq-admin plugin remove vip --clusterName DefaultCluster")]
    Remove {
        name: String,
        #[command(flatten)]
        target: PluginTarget,
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
    if let Command::Completion { shell } = &args.command {
        clap_complete::generate(*shell, &mut Args::command(), "ferromq-admin", &mut std::io::stdout());
        return Ok(());
    }
    let json = args.json;
    let mut cfg =
        config::load_client(args.config.as_deref()).context("loading the client configuration")?.config.client;
    admin::credentials_from_tools_yml(&mut cfg)?;
    let namesrv = admin::namesrv_list(args.namesrv.as_deref());
    if let Command::StartMonitoring { interval, rounds } = &args.command {
        let a = client::Admin::new(cfg.clone(), namesrv.clone());
        let mut n = 0;
        loop {
            let view = tokio::time::timeout(admin::COMMAND_TIMEOUT, ops::all_groups_progress(&a))
                .await
                .context("the view timed out")??;
            println!("{}", admin::utc_now_line());
            println!("{}", view.render(json).trim_end());
            n += 1;
            if rounds.is_some_and(|r| n >= r) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs((*interval).max(1))).await;
        }
        a.shutdown();
        return Ok(());
    }
    if let Command::Plugin(PluginCommand::Logs { name, follow, target }) = &args.command {
        let a = client::Admin::new(cfg.clone(), namesrv.clone());
        let result = ops::plugin_logs(&a, &target.target(), name, *follow, json).await;
        a.shutdown();
        return result;
    }
    let run = async {
        let a = client::Admin::new(cfg.clone(), namesrv.clone());
        let out = match &args.command {
            Command::ClusterList => admin::cluster_list(&a).await?,
            Command::HaStatus { broker, cluster } => {
                admin::ha_status(&a, broker.as_deref(), cluster.as_deref(), args.json).await?
            }
            Command::TopicRoute { topic } => admin::topic_route(&a, topic).await?,
            Command::BrokerStatus { broker } => {
                a.broker_runtime_info(broker).await?.iter().map(|(k, v)| format!("{k:<32} : {v}\n")).collect()
            }
            Command::UpdateTopic {
                topic,
                queues,
                read_queues,
                write_queues,
                perm,
                order,
                attributes,
                broker,
                cluster,
            } => {
                let h = remoting::header::broker::CreateTopicRequestHeader {
                    read_queue_nums: read_queues.unwrap_or(*queues),
                    write_queue_nums: write_queues.unwrap_or(*queues),
                    perm: *perm,
                    order: *order,
                    attributes: attributes.clone(),
                    ..remoting::header::broker::CreateTopicRequestHeader::new(topic.as_str(), *queues)
                };
                let target = ops::Target { broker: broker.clone(), cluster: cluster.clone() };
                ops::update_topic(&a, &target, &h).await?.render(json)
            }
            Command::ConsumerProgress { group: Some(group), topic: Some(topic) } => {
                admin::consumer_progress(&a, group, topic).await?
            }
            Command::ConsumerProgress { group: None, .. } => ops::all_groups_progress(&a).await?.render(args.json),
            Command::ConsumerProgress { group: Some(_), topic: None } => {
                anyhow::bail!("consumerProgress -g needs the topic too (-t)")
            }
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
            Command::Consume { topic, max } | Command::ConsumeMessage { topic, max } => {
                admin::consume(namesrv.clone(), cfg.clone(), topic, *max).await?
            }
            Command::TopicList { cluster } => ops::topic_list(&a, cluster.as_deref()).await?.render(json),
            Command::TopicStatus { topic } => ops::topic_status(&a, topic).await?.render(json),
            Command::TopicClusterList { topic } => ops::topic_cluster_list(&a, topic).await?.render(json),
            Command::DeleteTopic { topic, cluster } => {
                ops::delete_topic(&a, topic, cluster.as_deref()).await?.render(json)
            }
            Command::UpdateTopicPerm { topic, perm } => ops::update_topic_perm(&a, topic, *perm).await?.render(json),
            Command::UpdateSubGroup {
                target,
                group,
                consume_enable,
                broadcast,
                retry_queue_nums,
                retry_max_times,
                notify,
                orderly,
            } => {
                let cfg = common::subscription::SubscriptionGroupConfig {
                    group_name: group.clone(),
                    consume_enable: *consume_enable,
                    consume_broadcast_enable: *broadcast,
                    retry_queue_nums: *retry_queue_nums,
                    retry_max_times: *retry_max_times,
                    notify_consumer_ids_changed_enable: *notify,
                    consume_message_orderly: *orderly,
                    ..Default::default()
                };
                ops::update_sub_group(&a, &target.target(), &cfg).await?.render(json)
            }
            Command::DeleteSubGroup { target, group, remove_offset } => {
                ops::delete_sub_group(&a, &target.target(), group, *remove_offset).await?.render(json)
            }
            Command::SubGroupList { target } => ops::sub_group_list(&a, &target.target()).await?.render(json),
            Command::GetBrokerConfig { target } => ops::get_broker_config(&a, &target.target()).await?.render(json),
            Command::UpdateBrokerConfig { target, key, value } => {
                ops::update_broker_config(&a, &target.target(), key, value).await?.render(json)
            }
            Command::WipeWritePerm { broker_name } => ops::write_perm(&a, broker_name, false).await?.render(json),
            Command::AddWritePerm { broker_name } => ops::write_perm(&a, broker_name, true).await?.render(json),
            Command::StatsAll { topic, all } => ops::stats_all(&a, topic.as_deref(), *all).await?.render(json),
            Command::CleanExpiredCq { target } => ops::maintenance(
                &a,
                &target.target(),
                RequestCode::CLEAN_EXPIRED_CONSUMEQUEUE,
                "clean expired consume queues",
            )
            .await?
            .render(json),
            Command::DeleteExpiredCommitLog { target } => {
                ops::maintenance(&a, &target.target(), RequestCode::TRIGGER_DELETE_FILES, "delete expired commit log")
                    .await?
                    .render(json)
            }
            Command::CleanUnusedTopic { target } => {
                ops::maintenance(&a, &target.target(), RequestCode::CLEAN_UNUSED_TOPIC, "clean unused topics")
                    .await?
                    .render(json)
            }
            Command::ConsumerConnection { group } => ops::consumer_connection(&a, group, json).await?.render(json),
            Command::ProducerConnection { group, topic } => {
                ops::producer_connection(&a, group, topic).await?.render(json)
            }
            Command::ConsumerStatus { group, client_id } => {
                ops::consumer_status(&a, group, client_id.as_deref(), json).await?.render(json)
            }
            Command::CloneGroupOffset { src, dest, topic, offline } => {
                ops::clone_group_offset(&a, src, dest, topic, *offline).await?.render(json)
            }
            Command::SkipAccumulatedMessage { group, topic } => {
                ops::skip_accumulated(&a, group, topic).await?.render(json)
            }
            Command::QueryMsgById { msg_id, topic } => {
                ops::query_msg_by_id(&a, msg_id, topic.as_deref()).await?.render(json)
            }
            Command::QueryMsgByKey { topic, key, begin, end } => {
                ops::query_msg_by_key(&a, topic, key, *begin, *end).await?.render(json)
            }
            Command::QueryMsgByUniqueKey { msg_id, topic } => {
                ops::query_msg_by_unique_key(&a, topic, msg_id).await?.render(json)
            }
            Command::QueryMsgByOffset { topic, broker_name, queue_id, offset } => {
                let mq = common::route::MessageQueue::new(topic.as_str(), broker_name.as_str(), *queue_id);
                ops::query_msg_by_offset(namesrv.clone(), cfg.clone(), mq, *offset).await?.render(json)
            }
            Command::PrintMsg { topic, begin, end, max } => {
                ops::print_msgs(&a, namesrv.clone(), cfg.clone(), topic, None, (*begin, *end), *max).await?.render(json)
            }
            Command::PrintMsgByQueue { topic, broker_name, queue_id, begin, end, max } => {
                let queue = Some((broker_name.clone(), *queue_id));
                ops::print_msgs(&a, namesrv.clone(), cfg.clone(), topic, queue, (*begin, *end), *max)
                    .await?
                    .render(json)
            }
            Command::SendMessage { topic, body, tags, keys, broker, queue } => {
                let to = broker.clone().zip(*queue);
                ops::send_message(namesrv.clone(), cfg.clone(), topic, body, tags.as_deref(), keys.as_deref(), to)
                    .await?
                    .render(json)
            }
            Command::CheckMsgSendRt { topic, amount, size } => {
                ops::check_msg_send_rt(namesrv.clone(), cfg.clone(), topic, *amount, *size).await?.render(json)
            }
            Command::ResendDlq { msg_id } => {
                ops::resend_dlq(&a, namesrv.clone(), cfg.clone(), msg_id).await?.render(json)
            }
            Command::UpdateKvConfig { namespace, key, value } => {
                ops::update_kv_config(&a, namespace, key, value).await?.render(json)
            }
            Command::DeleteKvConfig { namespace, key } => ops::delete_kv_config(&a, namespace, key).await?.render(json),
            Command::GetKvList { namespace } => ops::kv_list(&a, namespace).await?.render(json),
            Command::GetNamesrvConfig => ops::get_namesrv_config(&a).await?.render(json),
            Command::UpdateNamesrvConfig { key, value } => {
                ops::update_namesrv_config(&a, key, value).await?.render(json)
            }
            Command::Plugin(PluginCommand::List { target }) => {
                ops::plugin_status(&a, &target.target(), None).await?.render(json)
            }
            Command::Plugin(PluginCommand::Status { name, target }) => {
                ops::plugin_status(&a, &target.target(), Some(name)).await?.render(json)
            }
            Command::Plugin(PluginCommand::Deploy { file, name, kind, set, failure_policy, target }) => {
                let d = ops::Deploy::from_args(file, name.as_deref(), kind.as_deref(), set, failure_policy.as_deref())?;
                ops::plugin_deploy(&a, &target.target(), &d).await?.render(json)
            }
            Command::Plugin(PluginCommand::New { kind, name, lang, dir, sdk }) => {
                let kind: plugin_api::PluginKind = kind.parse().map_err(|e| anyhow::anyhow!("kind {kind}: {e}"))?;
                admin::plugin_dev::scaffold(kind, name, *lang, dir, sdk.as_deref())?.render(json)
            }
            Command::Plugin(PluginCommand::Build { dir }) => admin::plugin_dev::build(dir)?.render(json),
            Command::Plugin(PluginCommand::Test { dir, input, group, queues, clients }) => {
                let input = if input.is_relative() && !input.exists() { dir.join(input) } else { input.clone() };
                admin::plugin_dev::test(dir, &input, group, *queues, *clients)?.render(json)
            }
            Command::Plugin(PluginCommand::Bind(b)) => {
                let code = RequestCode::FERROMQ_PLUGIN_BIND;
                ops::plugin_change(&a, &b.target.target(), code, &b.header(), "bound").await?.render(json)
            }
            Command::Plugin(PluginCommand::Unbind(b)) => {
                let code = RequestCode::FERROMQ_PLUGIN_UNBIND;
                ops::plugin_change(&a, &b.target.target(), code, &b.header(), "unbound").await?.render(json)
            }
            Command::Plugin(PluginCommand::Reload { name, target }) => {
                let h = remoting::header::plugin::PluginNameRequestHeader { name: name.clone() };
                let code = RequestCode::FERROMQ_PLUGIN_RELOAD;
                ops::plugin_change(&a, &target.target(), code, &h, "reloaded").await?.render(json)
            }
            Command::Plugin(PluginCommand::Rollback { name, target }) => {
                let h = remoting::header::plugin::PluginNameRequestHeader { name: name.clone() };
                let code = RequestCode::FERROMQ_PLUGIN_ROLLBACK;
                ops::plugin_change(&a, &target.target(), code, &h, "rolled back").await?.render(json)
            }
            Command::Plugin(PluginCommand::Remove { name, target }) => {
                let h = remoting::header::plugin::PluginNameRequestHeader { name: name.clone() };
                let code = RequestCode::FERROMQ_PLUGIN_REMOVE;
                ops::plugin_change(&a, &target.target(), code, &h, "removed").await?.render(json)
            }
            Command::Completion { .. }
            | Command::StartMonitoring { .. }
            | Command::Plugin(PluginCommand::Logs { .. }) => {
                unreachable!("answered before the one-shot commands")
            }
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
            matches!(args.command, Command::HaStatus { broker: Some(ref b), cluster: None } if b == "10.0.0.1:10911")
                && !args.json
        );
        let args =
            Args::try_parse_from(["ferromq-admin", "-c", "client.toml", "haStatus", "--clusterName", "C", "--json"])
                .unwrap();
        assert!(
            matches!(args.command, Command::HaStatus { broker: None, cluster: Some(ref c) } if c == "C") && args.json
        );
        assert_eq!(args.config.as_deref(), Some(std::path::Path::new("client.toml")));
    }

    #[test]
    fn a_fifo_group_is_made_with_mqadmins_o_flag() {
        let args =
            Args::try_parse_from(["ferromq-admin", "updateSubGroup", "-g", "G", "-b", "h:1", "-o", "true"]).unwrap();
        assert!(matches!(args.command, Command::UpdateSubGroup { orderly: true, .. }));
        let args = Args::try_parse_from(["ferromq-admin", "updateSubGroup", "-g", "G", "-b", "h:1"]).unwrap();
        assert!(matches!(args.command, Command::UpdateSubGroup { orderly: false, .. }));
    }

    #[test]
    fn plugin_verbs_parse_beside_the_global_flags() {
        use super::PluginCommand;
        let args = Args::try_parse_from([
            "ferromq-admin",
            "-c",
            "client.toml",
            "plugin",
            "deploy",
            "vip.wasm",
            "--name",
            "vip",
            "--set",
            "tag=a",
            "--set",
            "x=1",
            "--clusterName",
            "C",
        ])
        .unwrap();
        assert!(matches!(
            args.command,
            Command::Plugin(PluginCommand::Deploy { ref set, ref name, .. }) if set.len() == 2 && name.as_deref() == Some("vip")
        ));
        let args = Args::try_parse_from(["ferromq-admin", "plugin", "logs", "vip", "-f", "-b", "h:1"]).unwrap();
        assert!(matches!(args.command, Command::Plugin(PluginCommand::Logs { follow: true, .. })));
        let args = Args::try_parse_from(["ferromq-admin", "plugin", "new", "filter", "vip", "--lang", "lua"]).unwrap();
        assert!(matches!(args.command, Command::Plugin(PluginCommand::New { .. })));
        assert!(
            Args::try_parse_from(["ferromq-admin", "plugin", "bind", "vip", "-g", "G"]).is_err(),
            "a topic is required"
        );
    }
}
