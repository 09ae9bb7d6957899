//! What each request needs, as RocketMQ's `PlainAccessValidator.parse` decides it: the
//! one table from request code to the topics and groups it touches and the
//! permission each needs. Every code the broker serves has a row; the rows that
//! only name [`Rule::Signed`] need a valid signature and nothing more, as in RocketMQ.

use remoting::{RemotingCommand, RequestCode};

use super::perm::Perm;

/// Where a topic name stands for a consumer group.
const RETRY_PREFIX: &str = "%RETRY%";

/// A resource a request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Topic(String),
    /// A consumer group, by name (a `%RETRY%` topic is its group).
    Group(String),
}

impl Resource {
    /// A topic by name; a retry topic is its group, as RocketMQ counts it.
    pub fn topic(name: &str) -> Self {
        match name.strip_prefix(RETRY_PREFIX) {
            Some(group) => Self::Group(group.to_owned()),
            None => Self::Topic(name.to_owned()),
        }
    }

    /// How RocketMQ names it in a refusal (`topic:T`, `group:G`).
    pub fn describe(&self) -> String {
        match self {
            Self::Topic(t) => format!("topic:{t}"),
            Self::Group(g) => format!("group:{g}"),
        }
    }
}

/// How a request code is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// SEND_MESSAGE: `topic` PUB; to a retry topic, the `group` field's group SUB.
    Send,
    /// SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE: topic `b` PUB; to a retry topic,
    /// group `a` SUB.
    SendV2,
    /// CONSUMER_SEND_MSG_BACK: `group` SUB.
    SendBack,
    /// PULL_MESSAGE, LITE_PULL_MESSAGE: `topic` SUB and `consumerGroup` SUB.
    Pull,
    /// POP_MESSAGE, ACK_MESSAGE, CHANGE_MESSAGE_INVISIBLETIME: `consumerGroup` SUB
    /// and `topic` SUB (a pop retry topic, `%RETRY%<group>_<topic>`, is the group's).
    Pop,
    /// QUERY_MESSAGE: `topic` SUB.
    QueryMessage,
    /// HEART_BEAT: each consumer group SUB and each topic it subscribes SUB.
    Heartbeat,
    /// UNREGISTER_CLIENT: `consumerGroup` SUB, when there is one.
    Unregister,
    /// GET_CONSUMER_LIST_BY_GROUP: `consumerGroup` SUB.
    ConsumerList,
    /// UPDATE_CONSUMER_OFFSET: `consumerGroup` SUB and `topic` SUB.
    UpdateOffset,
    /// Accounts with `admin: true` only.
    Admin,
    /// A valid signature only.
    Signed,
}

/// The table: every code the broker serves.
pub fn rule(code: RequestCode) -> Option<Rule> {
    use RequestCode as C;
    Some(match code {
        C::SEND_MESSAGE => Rule::Send,
        // RocketMQ 4.9 checks only V2; 5.x checks batches the same way.
        C::SEND_MESSAGE_V2 | C::SEND_BATCH_MESSAGE => Rule::SendV2,
        C::CONSUMER_SEND_MSG_BACK => Rule::SendBack,
        C::PULL_MESSAGE | C::LITE_PULL_MESSAGE => Rule::Pull,
        C::POP_MESSAGE | C::ACK_MESSAGE | C::CHANGE_MESSAGE_INVISIBLETIME => Rule::Pop,
        C::QUERY_MESSAGE => Rule::QueryMessage,
        C::HEART_BEAT => Rule::Heartbeat,
        C::UNREGISTER_CLIENT => Rule::Unregister,
        C::GET_CONSUMER_LIST_BY_GROUP => Rule::ConsumerList,
        C::UPDATE_CONSUMER_OFFSET => Rule::UpdateOffset,
        C::UPDATE_AND_CREATE_TOPIC
        | C::UPDATE_BROKER_CONFIG
        | C::DELETE_TOPIC_IN_BROKER
        | C::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP
        | C::DELETE_SUBSCRIPTIONGROUP => Rule::Admin,
        C::SEND_REPLY_MESSAGE
        | C::SEND_REPLY_MESSAGE_V2
        | C::END_TRANSACTION
        | C::QUERY_CONSUMER_OFFSET
        | C::SEARCH_OFFSET_BY_TIMESTAMP
        | C::GET_MAX_OFFSET
        | C::GET_MIN_OFFSET
        | C::GET_EARLIEST_MSG_STORETIME
        | C::CHECK_CLIENT_CONFIG
        | C::LOCK_BATCH_MQ
        | C::UNLOCK_BATCH_MQ
        | C::VIEW_MESSAGE_BY_ID
        | C::GET_ALL_TOPIC_CONFIG
        | C::GET_ALL_SUBSCRIPTIONGROUP_CONFIG
        | C::GET_ALL_CONSUMER_OFFSET
        | C::GET_ALL_DELAY_OFFSET
        | C::GET_BROKER_RUNTIME_INFO
        | C::GET_BROKER_HA_STATUS
        | C::GET_TOPIC_STATS_INFO
        | C::GET_CONSUME_STATS
        | C::GET_CONSUMER_CONNECTION_LIST
        | C::GET_BROKER_CONFIG
        | C::INVOKE_BROKER_TO_RESET_OFFSET
        | C::GET_BROKER_EPOCH_CACHE
        | C::NOTIFY_BROKER_ROLE_CHANGED
        | C::UPDATE_AND_CREATE_ACL_CONFIG
        | C::DELETE_ACL_CONFIG
        | C::GET_BROKER_CLUSTER_ACL_INFO
        | C::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG
        | C::VIEW_BROKER_STATS_DATA
        | C::GET_PRODUCER_CONNECTION_LIST
        | C::QUERY_TOPIC_CONSUME_BY_WHO
        | C::QUERY_CONSUME_TIME_SPAN
        | C::GET_BROKER_CONSUME_STATS
        | C::QUERY_CONSUME_QUEUE
        | C::QUERY_CORRECTION_OFFSET
        | C::GET_CONSUMER_RUNNING_INFO
        | C::CONSUME_MESSAGE_DIRECTLY
        | C::INVOKE_BROKER_TO_GET_CONSUMER_STATUS
        | C::GET_SYSTEM_TOPIC_LIST_FROM_BROKER
        | C::FERROMQ_PLUGIN_LIST
        | C::FERROMQ_PLUGIN_LOGS
        | C::FERROMQ_PLUGIN_FETCH => Rule::Signed,
        // Code that runs inside the broker: admin accounts only.
        C::FERROMQ_PLUGIN_DEPLOY
        | C::FERROMQ_PLUGIN_BIND
        | C::FERROMQ_PLUGIN_UNBIND
        | C::FERROMQ_PLUGIN_RELOAD
        | C::FERROMQ_PLUGIN_ROLLBACK
        | C::FERROMQ_PLUGIN_REMOVE => Rule::Admin,
        // RocketMQ lets any valid signature delete files, drop queues, rewrite a
        // group's offsets or re-queue a transaction; FerroMQ keeps these to admin
        // accounts, like the topic and group changes above.
        C::CLEAN_EXPIRED_CONSUMEQUEUE
        | C::CLEAN_UNUSED_TOPIC
        | C::TRIGGER_DELETE_FILES
        | C::CLONE_GROUP_OFFSET
        | C::RESUME_CHECK_HALF_MESSAGE => Rule::Admin,
        // RocketMQ lets any valid signature read every account's secret key; FerroMQ
        // keeps that to admin accounts.
        C::GET_BROKER_CLUSTER_ACL_CONFIG => Rule::Admin,
        _ => return None,
    })
}

/// The resources `req` needs and the permission each needs. A code outside the
/// table needs none. The error is RocketMQ's text for a request it cannot read.
pub fn needs(req: &RemotingCommand) -> Result<Vec<(Resource, Perm)>, String> {
    let field = |k: &str| req.ext_fields.get(k);
    let required = |k: &str| field(k).ok_or_else(|| format!("the custom field <{k}> is null"));
    let group = |g: &str| Resource::Group(g.strip_prefix(RETRY_PREFIX).unwrap_or(g).to_owned());
    // The C++ client sends empty strings for fields it has no value for.
    let field = |k: &str| field(k).filter(|v| !v.is_empty());
    let send = |topic: Option<&str>, grp: Option<&str>| match topic {
        Some(t) if t.starts_with(RETRY_PREFIX) => grp.map(|g| vec![(group(g), Perm::SUB)]).unwrap_or_default(),
        Some(t) => vec![(Resource::topic(t), Perm::PUB)],
        None => Vec::new(),
    };
    Ok(match rule(req.request_code()) {
        Some(Rule::Send) => send(field("topic"), field("group")),
        Some(Rule::SendV2) => send(field("b"), field("a")),
        Some(Rule::SendBack) => field("group").map(|g| vec![(group(g), Perm::SUB)]).unwrap_or_default(),
        Some(Rule::Pull) => {
            let mut v = Vec::new();
            if let Some(t) = field("topic") {
                v.push((Resource::topic(t), Perm::SUB));
            }
            if let Some(g) = field("consumerGroup") {
                v.push((group(g), Perm::SUB));
            }
            v
        }
        Some(Rule::Pop) => {
            let g = required("consumerGroup")?;
            let t = required("topic")?;
            let mut v = vec![(group(g), Perm::SUB)];
            if !t.starts_with(RETRY_PREFIX) {
                v.push((Resource::topic(t), Perm::SUB));
            }
            v
        }
        Some(Rule::QueryMessage) => field("topic").map(|t| vec![(Resource::topic(t), Perm::SUB)]).unwrap_or_default(),
        Some(Rule::Heartbeat) => {
            let hb: common::subscription::HeartbeatData =
                remoting::json::from_slice(&req.body_bytes()).map_err(|e| e.to_string())?;
            let mut v = Vec::new();
            for c in &hb.consumer_data_set {
                v.push((group(&c.group_name), Perm::SUB));
                v.extend(c.subscription_data_set.iter().map(|s| (Resource::topic(&s.topic), Perm::SUB)));
            }
            v
        }
        Some(Rule::Unregister) => {
            required("clientID")?;
            field("consumerGroup").map(|g| vec![(group(g), Perm::SUB)]).unwrap_or_default()
        }
        Some(Rule::ConsumerList) => vec![(group(required("consumerGroup")?), Perm::SUB)],
        Some(Rule::UpdateOffset) => {
            let g = required("consumerGroup")?;
            let t = required("topic")?;
            required("queueId")?;
            required("commitOffset")?;
            vec![(group(g), Perm::SUB), (Resource::topic(t), Perm::SUB)]
        }
        Some(Rule::Admin | Rule::Signed) | None => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(code: RequestCode, fields: &[(&str, &str)]) -> RemotingCommand {
        let mut r = RemotingCommand::request(code);
        for (k, v) in fields {
            r.ext_fields.insert(k, v);
        }
        r
    }

    /// Every code `processor::dispatcher` registers has a row: a new code without one
    /// fails here.
    #[test]
    fn every_served_code_has_a_row() {
        let source = include_str!("../processor/mod.rs");
        let mut served = Vec::new();
        for call in source.split("route!(").skip(1) {
            let args = &call[..call.find(')').expect("route!(…) closes")];
            for name in args.split(',').skip(1).map(str::trim).filter(|n| !n.is_empty()) {
                let code = RequestCode::ALL
                    .iter()
                    .copied()
                    .find(|c| c.name() == Some(name))
                    .unwrap_or_else(|| panic!("{name} is not a known request code"));
                served.push(code);
            }
        }
        assert!(served.len() > 30, "the dispatcher's routes were read: {served:?}");
        let missing: Vec<_> = served.iter().filter(|c| rule(**c).is_none()).collect();
        assert!(missing.is_empty(), "request codes without an ACL row: {missing:?}");
    }

    #[test]
    fn pops_and_acks_need_sub_on_the_group_and_the_topic() {
        for code in [RequestCode::POP_MESSAGE, RequestCode::ACK_MESSAGE, RequestCode::CHANGE_MESSAGE_INVISIBLETIME] {
            let n = needs(&req(code, &[("consumerGroup", "G"), ("topic", "T")])).unwrap();
            assert_eq!(n, vec![(Resource::Group("G".into()), Perm::SUB), (Resource::topic("T"), Perm::SUB)]);
            let retry = needs(&req(code, &[("consumerGroup", "G"), ("topic", "%RETRY%G_T")])).unwrap();
            assert_eq!(retry, vec![(Resource::Group("G".into()), Perm::SUB)]);
            assert!(needs(&req(code, &[("topic", "T")])).is_err(), "no group");
        }
    }

    #[test]
    fn sends_need_pub_on_the_topic_and_retries_the_group() {
        let v2 = req(RequestCode::SEND_MESSAGE_V2, &[("a", "PG"), ("b", "TopicA")]);
        assert_eq!(needs(&v2).unwrap(), [(Resource::Topic("TopicA".into()), Perm::PUB)]);
        let retry = req(RequestCode::SEND_MESSAGE_V2, &[("a", "CG"), ("b", "%RETRY%CG")]);
        assert_eq!(needs(&retry).unwrap(), [(Resource::Group("CG".into()), Perm::SUB)]);
        let batch = req(RequestCode::SEND_BATCH_MESSAGE, &[("a", "PG"), ("b", "TopicB")]);
        assert_eq!(needs(&batch).unwrap(), [(Resource::Topic("TopicB".into()), Perm::PUB)]);
        let v1 = req(RequestCode::SEND_MESSAGE, &[("producerGroup", "PG"), ("topic", "TopicC")]);
        assert_eq!(needs(&v1).unwrap(), [(Resource::Topic("TopicC".into()), Perm::PUB)]);
    }

    #[test]
    fn pulls_need_sub_on_topic_and_group() {
        let pull = req(RequestCode::PULL_MESSAGE, &[("consumerGroup", "CG"), ("topic", "T")]);
        assert_eq!(
            needs(&pull).unwrap(),
            [(Resource::Topic("T".into()), Perm::SUB), (Resource::Group("CG".into()), Perm::SUB)]
        );
        let back = req(RequestCode::CONSUMER_SEND_MSG_BACK, &[("group", "CG"), ("offset", "1")]);
        assert_eq!(needs(&back).unwrap(), [(Resource::Group("CG".into()), Perm::SUB)]);
    }

    #[test]
    fn heartbeats_need_every_consumer_group_and_topic() {
        let mut hb = req(RequestCode::HEART_BEAT, &[]);
        hb.body = remoting::command::Body::Bytes(bytes::Bytes::from_static(
            br#"{"clientID":"c","producerDataSet":[{"groupName":"PG"}],"consumerDataSet":[{"groupName":"CG","subscriptionDataSet":[{"topic":"T","subString":"*"},{"topic":"%RETRY%CG","subString":"*"}]}]}"#,
        ));
        assert_eq!(
            needs(&hb).unwrap(),
            [
                (Resource::Group("CG".into()), Perm::SUB),
                (Resource::Topic("T".into()), Perm::SUB),
                (Resource::Group("CG".into()), Perm::SUB),
            ]
        );
        hb.body = remoting::command::Body::Bytes(bytes::Bytes::from_static(b"not json"));
        assert!(needs(&hb).is_err());
    }

    #[test]
    fn required_fields_are_named_when_missing() {
        let r = req(RequestCode::UPDATE_CONSUMER_OFFSET, &[("consumerGroup", "CG"), ("topic", "T")]);
        assert_eq!(needs(&r).unwrap_err(), "the custom field <queueId> is null");
        let r = req(RequestCode::GET_CONSUMER_LIST_BY_GROUP, &[]);
        assert_eq!(needs(&r).unwrap_err(), "the custom field <consumerGroup> is null");
    }

    #[test]
    fn admin_codes_are_rocketmqs_five_reading_the_accounts_and_destructive_maintenance() {
        let admin: Vec<_> = RequestCode::ALL.iter().copied().filter(|c| rule(*c) == Some(Rule::Admin)).collect();
        assert_eq!(
            admin,
            [
                RequestCode::UPDATE_AND_CREATE_TOPIC,
                RequestCode::UPDATE_BROKER_CONFIG,
                RequestCode::TRIGGER_DELETE_FILES,
                RequestCode::GET_BROKER_CLUSTER_ACL_CONFIG,
                RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                RequestCode::DELETE_SUBSCRIPTIONGROUP,
                RequestCode::DELETE_TOPIC_IN_BROKER,
                RequestCode::CLEAN_EXPIRED_CONSUMEQUEUE,
                RequestCode::CLONE_GROUP_OFFSET,
                RequestCode::CLEAN_UNUSED_TOPIC,
                RequestCode::RESUME_CHECK_HALF_MESSAGE,
                RequestCode::FERROMQ_PLUGIN_DEPLOY,
                RequestCode::FERROMQ_PLUGIN_BIND,
                RequestCode::FERROMQ_PLUGIN_UNBIND,
                RequestCode::FERROMQ_PLUGIN_RELOAD,
                RequestCode::FERROMQ_PLUGIN_ROLLBACK,
                RequestCode::FERROMQ_PLUGIN_REMOVE,
            ]
        );
    }
}
