//! The HTTP JSON API under `/api`, documented route by route in `console/README.md`.
//!
//! Handlers only translate: path, query and body in; a few cluster requests through
//! `client::Admin` or the `admin` library; JSON out. Every
//! failure is an [`Error`] and answers `{"error": ...}` with a non-2xx status, so the
//! UI and scripts read one shape. Bodies must be sent as `application/json`, which
//! also keeps plain cross-site form posts out. Requests to several brokers go out at
//! once; a broker that fails one of them is reported in the answer, not fatal, where
//! the others' answers still mean something (cluster, groups).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use client::admin::QueueProgress;
use client::msg_trace::data::TraceRecord;
use client::{Message, MessageExt};
use common::properties::keys;
use common::route::{ClusterInfo, MASTER_ID};
use futures::future::join_all;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::Console;

/// The most queues a topic may be given from the console.
pub const MAX_QUEUES: i32 = 1024;

/// Messages a key search returns per broker, at most (the broker caps it too).
const DEFAULT_SEARCH_MAX: i32 = 64;

/// Messages a time-range search returns by default, and at most.
const DEFAULT_RANGE_MAX: usize = 64;
const RANGE_MAX: usize = 256;

/// The group a time-range search pulls as (RocketMQ's tools group, which brokers
/// create for themselves and the groups page counts as a system group); it commits
/// nothing.
const BROWSE_GROUP: &str = "TOOLS_CONSUMER";

/// The API's routes, with `console` as their state.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/api/cluster", get(cluster))
        .route("/api/brokers/{addr}/runtime", get(broker_runtime))
        .route("/api/topics", get(topics).post(create_topic))
        .route("/api/topics/{topic}", delete(delete_topic))
        .route("/api/topics/{topic}/route", get(topic_route))
        .route("/api/topics/{topic}/status", get(topic_status))
        .route("/api/topics/{topic}/messages", get(range_messages).post(send_message))
        .route("/api/groups", get(groups))
        .route("/api/groups/{group}/progress", get(group_progress))
        .route("/api/groups/{group}/reset", post(reset_offsets))
        .route("/api/groups/{group}/clients/{client_id}", get(client_running_info))
        .route("/api/producers", get(producers))
        .route("/api/plugins", get(plugins))
        .route("/api/plugins/{name}/reload", post(reload_plugin))
        .route("/api/plugins/{name}/rollback", post(rollback_plugin))
        .route("/api/messages", get(search_messages))
        .route("/api/messages/{msg_id}", get(message))
        .route("/api/messages/{msg_id}/resend", post(resend_dead_letter))
        .route("/api/messages/{msg_id}/trace", get(message_trace))
        .route("/api/{*rest}", axum::routing::any(no_route))
        .method_not_allowed_fallback(wrong_method)
        .with_state(console)
}

async fn no_route(method: Method, uri: Uri) -> Error {
    Error::NoApiRoute { method: method.to_string(), path: uri.path().to_owned() }
}

async fn wrong_method(method: Method, uri: Uri) -> Error {
    Error::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() }
}

// ---- extractors whose rejections are the API's JSON errors ----

/// A JSON body (`Content-Type: application/json`).
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(r) => Err(Error::BadRequest { reason: r.body_text() }),
        }
    }
}

/// The query string.
struct Params<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(r) => Err(Error::BadRequest { reason: r.body_text() }),
        }
    }
}

/// The path's parameters, percent-decoded.
struct Segment<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segment<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Segment(v)),
            Err(r) => Err(Error::BadRequest { reason: r.body_text() }),
        }
    }
}

fn valid_topic(topic: &str) -> Result<()> {
    common::topic::validate_topic(topic).map_err(|source| Error::InvalidTopic { topic: topic.to_owned(), source })
}

fn required(value: Option<String>, name: &str) -> Result<String> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Error::BadRequest { reason: format!("missing query parameter `{name}`") })
}

// ---- cluster ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterAnswer {
    namesrv: Vec<String>,
    brokers: Vec<BrokerRow>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BrokerRow {
    cluster: String,
    broker_name: String,
    broker_id: u64,
    addr: String,
    role: String,
    version: Option<String>,
    put_tps: Option<f64>,
    get_tps: Option<f64>,
    put_today: Option<u64>,
    get_today: Option<u64>,
    /// Used fraction of the commit log's file system (0..1).
    disk_ratio: Option<f64>,
    boot_timestamp: Option<i64>,
    /// Why the broker's runtime information is missing.
    error: Option<String>,
}

async fn cluster(State(c): State<Arc<Console>>) -> Result<Json<ClusterAnswer>> {
    let info = c.admin.cluster_info().await.map_err(|e| Error::cluster("cluster info from the name servers", e))?;
    let brokers = admin::cluster_brokers(&info, None);
    let answers = join_all(brokers.iter().map(|b| c.admin.broker_runtime_info(&b.addr))).await;
    let now = Instant::now();
    c.rates.retain(&brokers.iter().map(|b| b.addr.as_str()).collect::<Vec<_>>());
    let rows = brokers
        .into_iter()
        .zip(answers)
        .map(|(b, answer)| {
            let (table, error) = match answer {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(Error::cluster(format!("runtime info of {}", b.addr), e).explain())),
            };
            let rates = table.as_ref().map(|t| c.rates.observe(&b.addr, t, now)).unwrap_or_default();
            let field = |k: &str| table.as_ref().and_then(|t| t.get(k)).map(|v| v.trim().to_owned());
            let version = match (field("brokerVersionDesc"), field("brokerImpl")) {
                (Some(v), Some(imp)) => Some(format!("{v} ({imp})")),
                (v, imp) => v.or(imp),
            };
            BrokerRow {
                role: admin::broker_role(b.broker_id, table.as_ref()),
                version,
                put_tps: rates.put,
                get_tps: rates.get,
                put_today: field("msgPutTotalTodayNow").and_then(|v| v.parse().ok()),
                get_today: field("msgGetTotalTodayNow").and_then(|v| v.parse().ok()),
                disk_ratio: field("commitLogDiskRatio").and_then(|v| v.parse().ok()),
                boot_timestamp: field("bootTimestamp").and_then(|v| v.parse().ok()),
                error,
                cluster: b.cluster,
                broker_name: b.broker_name,
                broker_id: b.broker_id,
                addr: b.addr,
            }
        })
        .collect();
    Ok(Json(ClusterAnswer { namesrv: c.admin.instance().namesrv_addrs(), brokers: rows }))
}

#[derive(Serialize)]
struct RuntimeAnswer {
    addr: String,
    table: BTreeMap<String, String>,
}

async fn broker_runtime(State(c): State<Arc<Console>>, Segment(addr): Segment<String>) -> Result<Json<RuntimeAnswer>> {
    // Only the cluster's brokers are asked (signed), never an address a link names.
    let info = c.admin.cluster_info().await.map_err(|e| Error::cluster("cluster info from the name servers", e))?;
    if !admin::cluster_brokers(&info, None).iter().any(|b| b.addr == addr) {
        return Err(Error::UnknownBroker { addr });
    }
    let table =
        c.admin.broker_runtime_info(&addr).await.map_err(|e| Error::cluster(format!("runtime info of {addr}"), e))?;
    Ok(Json(RuntimeAnswer { addr, table }))
}

// ---- topics ----

#[derive(Serialize)]
struct TopicRow {
    name: String,
    /// `normal`, `retry`, `dlq` or `system`.
    kind: &'static str,
}

#[derive(Serialize)]
struct TopicsAnswer {
    topics: Vec<TopicRow>,
}

async fn topics(State(c): State<Arc<Console>>) -> Result<Json<TopicsAnswer>> {
    let (names, info) = tokio::join!(c.admin.topic_list(), c.admin.cluster_info());
    let names = names.map_err(|e| Error::cluster("topic list from the name servers", e))?;
    // Brokers register their cluster's and their own name as topics, as RocketMQ's do.
    let info = info.unwrap_or_default();
    let rows = names
        .into_iter()
        .map(|name| {
            let kind = topic_kind(&name, &info);
            TopicRow { name, kind }
        })
        .collect();
    Ok(Json(TopicsAnswer { topics: rows }))
}

fn topic_kind(name: &str, info: &ClusterInfo) -> &'static str {
    if common::topic::is_retry_topic(name) {
        "retry"
    } else if common::topic::is_dlq_topic(name) {
        "dlq"
    } else if common::topic::is_system_topic(name)
        || info.cluster_addr_table.contains_key(name)
        || info.broker_addr_table.contains_key(name)
    {
        "system"
    } else {
        "normal"
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTopic {
    topic: String,
    #[serde(default = "default_queues")]
    queues: i32,
    #[serde(default)]
    cluster: Option<String>,
}

fn default_queues() -> i32 {
    8
}

#[derive(Serialize)]
struct CreateTopicAnswer {
    topic: String,
    queues: i32,
    cluster: Option<String>,
}

async fn create_topic(State(c): State<Arc<Console>>, Body(req): Body<CreateTopic>) -> Result<Json<CreateTopicAnswer>> {
    valid_topic(&req.topic)?;
    if !(1..=MAX_QUEUES).contains(&req.queues) {
        return Err(Error::QueueCount { queues: req.queues, max: MAX_QUEUES });
    }
    let cluster = req.cluster.filter(|c| !c.trim().is_empty());
    let action = match &cluster {
        Some(cl) => format!("create topic {} on cluster {cl}", req.topic),
        None => format!("create topic {}", req.topic),
    };
    c.admin.create_topic(&req.topic, req.queues, cluster.as_deref()).await.map_err(|e| Error::cluster(action, e))?;
    Ok(Json(CreateTopicAnswer { topic: req.topic, queues: req.queues, cluster }))
}

#[derive(Serialize)]
struct DeleteTopicAnswer {
    topic: String,
    brokers: Vec<String>,
}

async fn delete_topic(
    State(c): State<Arc<Console>>,
    Segment(topic): Segment<String>,
) -> Result<Json<DeleteTopicAnswer>> {
    let delete = async {
        let brokers = c.admin.route_masters(&topic).await?;
        c.admin.delete_topic(&topic, &brokers, None).await?;
        client::Result::Ok(brokers)
    };
    let brokers = delete.await.map_err(|e| Error::cluster(format!("delete topic {topic}"), e))?;
    Ok(Json(DeleteTopicAnswer { topic, brokers }))
}

async fn topic_route(
    State(c): State<Arc<Console>>,
    Segment(topic): Segment<String>,
) -> Result<Json<common::route::TopicRouteData>> {
    let route = c.admin.topic_route(&topic).await.map_err(|e| Error::cluster(format!("route of topic {topic}"), e))?;
    Ok(Json(route))
}

#[derive(Serialize)]
struct StatusAnswer {
    topic: String,
    /// Messages stored in all queues (max - min offsets).
    total: i64,
    queues: Vec<client::admin::QueueOffsets>,
}

async fn topic_status(State(c): State<Arc<Console>>, Segment(topic): Segment<String>) -> Result<Json<StatusAnswer>> {
    let queues =
        c.admin.topic_stats(&topic).await.map_err(|e| Error::cluster(format!("status of topic {topic}"), e))?;
    let total = queues.iter().map(|q| (q.max_offset - q.min_offset).max(0)).sum();
    Ok(Json(StatusAnswer { topic, total, queues }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessage {
    #[serde(default)]
    tags: Option<String>,
    /// Business keys, separated by spaces or commas.
    #[serde(default)]
    keys: Option<String>,
    body: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SendAnswer {
    /// RocketMQ's name of the outcome (`SEND_OK`, `FLUSH_DISK_TIMEOUT`, ...).
    status: &'static str,
    msg_id: String,
    offset_msg_id: String,
    topic: String,
    broker_name: String,
    queue_id: i32,
    queue_offset: i64,
}

async fn send_message(
    State(c): State<Arc<Console>>,
    Segment(topic): Segment<String>,
    Body(req): Body<SendMessage>,
) -> Result<Json<SendAnswer>> {
    valid_topic(&topic)?;
    let mut msg = Message::new(topic.clone(), bytes::Bytes::from(req.body.into_bytes()));
    if let Some(tags) = req.tags.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        msg = msg.with_tags(tags);
    }
    if let Some(k) = &req.keys {
        let keys: Vec<&str> = k.split([' ', ',']).filter(|k| !k.is_empty()).collect();
        if !keys.is_empty() {
            msg = msg.with_keys(keys);
        }
    }
    let r = c.producer().send(msg).await.map_err(|e| Error::cluster(format!("send to topic {topic}"), e))?;
    Ok(Json(SendAnswer::of(r)))
}

impl SendAnswer {
    fn of(r: client::SendResult) -> Self {
        let status = match r.status {
            client::SendStatus::SendOk => "SEND_OK",
            client::SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            client::SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            client::SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
        };
        SendAnswer {
            status,
            msg_id: r.msg_id,
            offset_msg_id: r.offset_msg_id,
            topic: r.message_queue.topic,
            broker_name: r.message_queue.broker_name,
            queue_id: r.message_queue.queue_id,
            queue_offset: r.queue_offset,
        }
    }
}

#[derive(Deserialize)]
struct Range {
    /// Stored from (ms), default the beginning.
    #[serde(default)]
    begin: Option<i64>,
    /// Stored until (ms), default now and on.
    #[serde(default)]
    end: Option<i64>,
    #[serde(default)]
    max: Option<usize>,
}

#[derive(Serialize)]
struct RangeAnswer {
    topic: String,
    begin: i64,
    end: i64,
    /// In store-time order, without bodies.
    messages: Vec<MessageView>,
    /// Whether `max` cut the list short.
    truncated: bool,
}

async fn range_messages(
    State(c): State<Arc<Console>>,
    Segment(topic): Segment<String>,
    Params(q): Params<Range>,
) -> Result<Json<RangeAnswer>> {
    use client::consumer::{PullApi, PullRequest, PullStatus};

    valid_topic(&topic)?;
    let (begin, end) = (q.begin.unwrap_or(0), q.end.unwrap_or(i64::MAX));
    if begin > end {
        return Err(Error::BadRequest { reason: format!("begin {begin} is after end {end}") });
    }
    let max = q.max.unwrap_or(DEFAULT_RANGE_MAX).clamp(1, RANGE_MAX);
    let action = format!("messages of topic {topic} by store time");
    let route = c.admin.topic_route(&topic).await.map_err(|e| Error::cluster(action.clone(), e))?;
    let api = PullApi::new(c.admin.instance().clone());
    let all = Arc::new(common::subscription::SubscriptionData::new(topic.as_str(), "*", "TAG", 0));
    let mut found: Vec<MessageExt> = Vec::new();
    let mut truncated = false;
    'queues: for qd in &route.queue_datas {
        for queue_id in 0..qd.read_queue_nums {
            let mq = client::MessageQueue::new(topic.as_str(), qd.broker_name.as_str(), queue_id);
            let mut offset = api.search_offset(&mq, begin).await.map_err(|e| Error::cluster(action.clone(), e))?;
            loop {
                if found.len() >= max {
                    truncated = true;
                    break 'queues;
                }
                let req = PullRequest {
                    max_msg_nums: (max - found.len()).min(32) as i32,
                    suspend: None,
                    post_subscription: true,
                    timeout: api.timeout(),
                    ..PullRequest::new(BROWSE_GROUP, mq.clone(), offset, all.clone())
                };
                let r = api.pull(&req).await.map_err(|e| Error::cluster(action.clone(), e))?;
                if r.status != PullStatus::Found || r.next_begin_offset <= offset {
                    break;
                }
                offset = r.next_begin_offset;
                let past_end = r.messages.iter().any(|m| m.store_timestamp > end);
                found.extend(r.messages.into_iter().filter(|m| (begin..=end).contains(&m.store_timestamp)));
                if past_end || offset >= r.max_offset {
                    break;
                }
            }
        }
    }
    found.truncate(max);
    found.sort_by_key(|m| m.store_timestamp);
    let messages = found.iter().map(|m| MessageView::of(m, false)).collect();
    Ok(Json(RangeAnswer { topic, begin, end, messages, truncated }))
}

// ---- consumer groups ----

/// Consumer groups every broker creates for itself (RocketMQ's `MixAll`).
const SYSTEM_GROUPS: [&str; 8] = [
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_ONSAPI_PULL",
    common::topic::TRANS_CHECK_GROUP,
];

fn is_system_group(group: &str) -> bool {
    SYSTEM_GROUPS.contains(&group) || group.starts_with("CID_RMQ_SYS_")
}

/// The address each broker name's requests go to: its master, else its first slave.
fn broker_name_addrs(info: &ClusterInfo) -> Vec<String> {
    info.broker_addr_table
        .values()
        .filter_map(|bd| bd.broker_addrs.get(&MASTER_ID).or_else(|| bd.broker_addrs.values().next()).cloned())
        .collect()
}

#[derive(Deserialize)]
struct TopicFilter {
    #[serde(default)]
    topic: Option<String>,
}

#[derive(Serialize)]
struct BrokerError {
    addr: String,
    error: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupRow {
    group: String,
    /// Topics the group has committed offsets on.
    topics: Vec<String>,
    /// Messages not yet consumed (on `topic` when filtered); `None` for system groups.
    lag: Option<i64>,
    system: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupsAnswer {
    groups: Vec<GroupRow>,
    /// Brokers that did not answer; their groups and lag are missing.
    broker_errors: Vec<BrokerError>,
}

async fn groups(State(c): State<Arc<Console>>, Params(filter): Params<TopicFilter>) -> Result<Json<GroupsAnswer>> {
    let topic = filter.topic.filter(|t| !t.trim().is_empty());
    let info = c.admin.cluster_info().await.map_err(|e| Error::cluster("cluster info from the name servers", e))?;
    let addrs = broker_name_addrs(&info);
    let answers = join_all(addrs.iter().map(|addr| async {
        let groups = c.admin.subscription_groups(addr).await.map(|g| g.into_keys().collect::<BTreeSet<String>>());
        let offsets = c.admin.consumer_offsets(addr).await;
        (groups, offsets)
    }))
    .await;
    let mut topics_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut broker_errors = Vec::new();
    let mut reachable = Vec::new();
    for (addr, (groups, offsets)) in addrs.iter().zip(answers) {
        match groups.and_then(|g| offsets.map(|o| (g, o))) {
            Ok((groups, offsets)) => {
                reachable.push(addr.clone());
                for g in groups {
                    topics_of.entry(g).or_default();
                }
                for key in offsets.into_keys() {
                    if let Some((t, g)) = key.split_once('@') {
                        topics_of.entry(g.to_owned()).or_default().insert(t.to_owned());
                    }
                }
            }
            Err(e) => broker_errors.push(BrokerError {
                addr: addr.clone(),
                error: Error::cluster(format!("consumer groups of {addr}"), e).explain(),
            }),
        }
    }
    if reachable.is_empty() && !broker_errors.is_empty() {
        return Err(Error::NoBrokerAnswered {
            action: "consumer groups".to_owned(),
            errors: broker_errors.into_iter().map(|e| e.error).collect(),
        });
    }
    if let Some(t) = &topic {
        topics_of.retain(|_, topics| topics.contains(t));
    }
    let lags = join_all(topics_of.keys().map(|g| {
        let reachable = &reachable;
        let c = &c;
        let topic = topic.as_deref();
        async move {
            if is_system_group(g) {
                return None;
            }
            let mut lag = 0;
            for addr in reachable {
                let rows = c.admin.group_consume_stats(addr, g).await.ok()?;
                lag += rows
                    .iter()
                    .filter(|r| topic.is_none_or(|t| r.queue.topic == t))
                    .map(QueueProgress::lag)
                    .sum::<i64>();
            }
            Some(lag)
        }
    }))
    .await;
    let groups = topics_of
        .into_iter()
        .zip(lags)
        .map(|((group, topics), lag)| GroupRow {
            system: is_system_group(&group),
            group,
            topics: topics.into_iter().collect(),
            lag,
        })
        .collect();
    Ok(Json(GroupsAnswer { groups, broker_errors }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueRow {
    topic: String,
    broker_name: String,
    queue_id: i32,
    broker_offset: i64,
    consumer_offset: i64,
    lag: i64,
    /// Store time of the last consumed message (ms), 0 when none.
    last_timestamp: i64,
}

impl From<QueueProgress> for QueueRow {
    fn from(p: QueueProgress) -> Self {
        QueueRow {
            lag: p.lag(),
            topic: p.queue.topic,
            broker_name: p.queue.broker_name,
            queue_id: p.queue.queue_id,
            broker_offset: p.broker_offset,
            consumer_offset: p.consumer_offset,
            last_timestamp: p.last_timestamp,
        }
    }
}

#[derive(Serialize)]
struct ProgressAnswer {
    group: String,
    topic: Option<String>,
    lag: i64,
    queues: Vec<QueueRow>,
    /// Client ids of the group's consumers online now.
    clients: Vec<String>,
}

async fn group_progress(
    State(c): State<Arc<Console>>,
    Segment(group): Segment<String>,
    Params(filter): Params<TopicFilter>,
) -> Result<Json<ProgressAnswer>> {
    let topic = filter.topic.filter(|t| !t.trim().is_empty());
    let action = match &topic {
        Some(t) => format!("progress of group {group} on topic {t}"),
        None => format!("progress of group {group}"),
    };
    let info = c.admin.cluster_info().await.map_err(|e| Error::cluster(action.clone(), e))?;
    let addrs = broker_name_addrs(&info);
    let rows = match &topic {
        Some(t) => c.admin.consumer_progress(&group, t).await.map_err(|e| Error::cluster(action.clone(), e))?,
        None => {
            let mut rows = Vec::new();
            for answer in join_all(addrs.iter().map(|a| c.admin.group_consume_stats(a, &group))).await {
                rows.extend(answer.map_err(|e| Error::cluster(action.clone(), e))?);
            }
            rows.sort_by(|a, b| a.queue.cmp(&b.queue));
            rows
        }
    };
    let mut clients = BTreeSet::new();
    for (addr, answer) in addrs.iter().zip(join_all(addrs.iter().map(|a| c.admin.consumer_clients(a, &group))).await) {
        match answer {
            Ok(ids) => clients.extend(ids),
            // The clients are a detail of the page; the offsets above are what it is for.
            Err(e) => tracing::debug!(group = %group, addr = %addr, error = %e, "consumer connections unavailable"),
        }
    }
    let queues: Vec<QueueRow> = rows.into_iter().map(QueueRow::from).collect();
    let lag = queues.iter().map(|q| q.lag).sum();
    Ok(Json(ProgressAnswer { group, topic, lag, queues, clients: clients.into_iter().collect() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reset {
    topic: String,
    /// Ms since the epoch (a number or a string), or `now`.
    timestamp: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResetOffset {
    topic: String,
    broker_name: String,
    queue_id: i32,
    offset: i64,
}

#[derive(Serialize)]
struct ResetAnswer {
    group: String,
    topic: String,
    timestamp: i64,
    offsets: Vec<ResetOffset>,
}

async fn reset_offsets(
    State(c): State<Arc<Console>>,
    Segment(group): Segment<String>,
    Body(req): Body<Reset>,
) -> Result<Json<ResetAnswer>> {
    valid_topic(&req.topic)?;
    let timestamp = match &req.timestamp {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => admin::parse_timestamp(s.trim()).ok(),
        _ => None,
    }
    .ok_or_else(|| Error::Timestamp {
        value: match &req.timestamp {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    })?;
    let offsets = c
        .admin
        .reset_offset_by_timestamp(&group, &req.topic, timestamp)
        .await
        .map_err(|e| Error::cluster(format!("reset offsets of group {group} on topic {}", req.topic), e))?;
    let offsets = offsets
        .into_iter()
        .map(|(mq, offset)| ResetOffset { topic: mq.topic, broker_name: mq.broker_name, queue_id: mq.queue_id, offset })
        .collect();
    Ok(Json(ResetAnswer { group, topic: req.topic, timestamp, offsets }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionRow {
    topic: String,
    /// The expression (`*`, `TagA || TagB`, SQL92).
    sub_string: String,
    /// `TAG`, `SQL92`, or a plugin's.
    expression_type: String,
}

/// A queue a consumer holds, from its running info's `ProcessQueueInfo`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HeldQueue {
    topic: String,
    broker_name: String,
    queue_id: i32,
    /// The offset the client will commit next.
    commit_offset: Option<i64>,
    cached_msg_count: Option<i64>,
    cached_msg_min_offset: Option<i64>,
    cached_msg_max_offset: Option<i64>,
    locked: Option<bool>,
    dropped: Option<bool>,
    last_pull_timestamp: Option<i64>,
    last_consume_timestamp: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunningAnswer {
    group: String,
    client_id: String,
    /// The broker that relayed the request.
    addr: String,
    properties: BTreeMap<String, String>,
    subscriptions: Vec<SubscriptionRow>,
    queues: Vec<HeldQueue>,
}

/// A JSON value as text: strings as they are, anything else as JSON.
fn text_of(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

async fn client_running_info(
    State(c): State<Arc<Console>>,
    Segment((group, client_id)): Segment<(String, String)>,
) -> Result<Json<RunningAnswer>> {
    let action = format!("running info of client {client_id} of consumer group {group}");
    let info = c.admin.cluster_info().await.map_err(|e| Error::cluster(action.clone(), e))?;
    // The request is relayed over the client's own connection: ask a broker it is
    // connected to.
    let addrs = broker_name_addrs(&info);
    let connected = join_all(addrs.iter().map(|a| c.admin.consumer_clients(a, &group))).await;
    let Some(addr) = addrs
        .iter()
        .zip(connected)
        .find_map(|(a, ids)| ids.ok().filter(|ids| ids.contains(&client_id)).map(|_| a.clone()))
    else {
        return Err(Error::ClientNotOnline { group, client_id });
    };
    let body = c
        .admin
        .consumer_running_info(&addr, &group, &client_id)
        .await
        .map_err(|e| Error::cluster(action.clone(), e))?;
    let plain = admin::ops::running_info_json(&body);
    let properties =
        plain["properties"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), text_of(v))).collect();
    let mut subscriptions: Vec<SubscriptionRow> = plain["subscriptionSet"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| SubscriptionRow {
            topic: text_of(&s["topic"]),
            sub_string: s["subString"].as_str().unwrap_or("*").to_owned(),
            expression_type: s["expressionType"].as_str().unwrap_or("TAG").to_owned(),
        })
        .collect();
    subscriptions.sort_by(|a, b| a.topic.cmp(&b.topic));
    // The queues keep their typed keys; a client holding none sends an empty table.
    let held = remoting::json::mq_keyed_values::<serde_json::Value>(body.as_bytes(), "mqTable").unwrap_or_default();
    let mut queues: Vec<HeldQueue> = held
        .into_iter()
        .map(|(mq, q)| HeldQueue {
            commit_offset: q["commitOffset"].as_i64(),
            cached_msg_count: q["cachedMsgCount"].as_i64(),
            cached_msg_min_offset: q["cachedMsgMinOffset"].as_i64(),
            cached_msg_max_offset: q["cachedMsgMaxOffset"].as_i64(),
            locked: q["locked"].as_bool(),
            // Java's field is spelled `droped`.
            dropped: q["droped"].as_bool().or_else(|| q["dropped"].as_bool()),
            last_pull_timestamp: q["lastPullTimestamp"].as_i64(),
            last_consume_timestamp: q["lastConsumeTimestamp"].as_i64(),
            topic: mq.topic,
            broker_name: mq.broker_name,
            queue_id: mq.queue_id,
        })
        .collect();
    queues.sort_by(|a, b| (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id)));
    Ok(Json(RunningAnswer { group, client_id, addr, properties, subscriptions, queues }))
}

// ---- producers ----

#[derive(Deserialize)]
struct ProducerQuery {
    group: Option<String>,
    topic: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProducerRow {
    client_id: String,
    client_addr: String,
    language: String,
    version: i32,
    /// The broker the connection is to.
    broker: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProducersAnswer {
    group: String,
    topic: String,
    connections: Vec<ProducerRow>,
    /// Brokers of the topic that failed otherwise than by not knowing the group.
    broker_errors: Vec<BrokerError>,
}

/// A broker's answer for a producer group none of whose producers is connected to it.
fn is_unknown_producer_group(e: &client::Error) -> bool {
    matches!(e, client::Error::Broker { code, remark, .. }
        if *code == common::ResponseCode::SYSTEM_ERROR && remark.contains("not exist"))
}

async fn producers(State(c): State<Arc<Console>>, Params(q): Params<ProducerQuery>) -> Result<Json<ProducersAnswer>> {
    let group = required(q.group, "group")?;
    let topic = required(q.topic, "topic")?;
    valid_topic(&topic)?;
    let action = format!("producers of group {group} on topic {topic}");
    let masters = c.admin.route_masters(&topic).await.map_err(|e| Error::cluster(action.clone(), e))?;
    let answers = join_all(masters.iter().map(|a| c.admin.producer_connections(a, &group))).await;
    let mut connections = Vec::new();
    let mut failures = Vec::new();
    for (addr, answer) in masters.iter().zip(answers) {
        match answer {
            Ok(conns) => connections.extend(conns.into_iter().map(|p| ProducerRow {
                client_id: p.client_id,
                client_addr: p.client_addr,
                language: p.language,
                version: p.version,
                broker: addr.clone(),
            })),
            Err(e) if is_unknown_producer_group(&e) => {}
            Err(e) => failures.push((addr.clone(), e)),
        }
    }
    if connections.is_empty() {
        return Err(match failures.into_iter().next() {
            Some((_, e)) => Error::cluster(action, e),
            None => Error::NoProducer { group, topic },
        });
    }
    connections.sort_by(|a, b| (&a.client_id, &a.broker).cmp(&(&b.client_id, &b.broker)));
    let broker_errors = failures
        .into_iter()
        .map(|(addr, e)| BrokerError { error: Error::cluster(format!("{action} on {addr}"), e).explain(), addr })
        .collect();
    Ok(Json(ProducersAnswer { group, topic, connections, broker_errors }))
}

// ---- plugins ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PluginRow {
    name: String,
    /// `loaded` or `unavailable`.
    state: String,
    kind: String,
    runtime: String,
    /// `config` (declared in the broker's configuration) or `deployed`.
    source: String,
    /// The manifest's name and version.
    version: String,
    /// The same as `version` (what earlier answers called it).
    manifest: String,
    sha256: String,
    generation: u64,
    rollback_available: bool,
    /// `topic@group`, or `topic` for a binding without a group.
    bindings: Vec<String>,
    breaker: String,
    calls: u64,
    errors: u64,
    timeouts: u64,
    fallbacks: u64,
    p50_micros: u64,
    p99_micros: u64,
    last_error: Option<String>,
    last_reload_error: Option<String>,
}

impl From<remoting::body::plugin::PluginInfo> for PluginRow {
    fn from(p: remoting::body::plugin::PluginInfo) -> Self {
        let text = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let bindings = p
            .bindings
            .into_iter()
            .map(|b| match b.group {
                Some(group) => format!("{}@{group}", b.topic),
                None => b.topic,
            })
            .collect();
        PluginRow {
            manifest: p.version.clone(),
            version: p.version,
            last_error: text(p.last_error),
            last_reload_error: text(p.last_reload_error),
            name: p.name,
            state: p.state,
            kind: p.kind,
            runtime: p.runtime,
            source: p.source,
            sha256: p.sha256,
            generation: p.generation,
            rollback_available: p.rollback_available,
            bindings,
            breaker: p.breaker,
            calls: p.calls,
            errors: p.errors,
            timeouts: p.timeouts,
            fallbacks: p.fallbacks,
            p50_micros: p.p50_micros,
            p99_micros: p.p99_micros,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BrokerPlugins {
    addr: String,
    broker_name: String,
    broker_id: u64,
    plugins: Vec<PluginRow>,
    /// Why the broker's plugins are missing.
    error: Option<String>,
}

#[derive(Serialize)]
struct PluginsAnswer {
    brokers: Vec<BrokerPlugins>,
}

/// Every broker of the cluster with its answer to FERROMQ_PLUGIN_LIST, asked at once.
async fn plugin_lists(
    c: &Console,
) -> Result<Vec<(admin::ClusterBroker, client::Result<Vec<remoting::body::plugin::PluginInfo>>)>> {
    let info = c.admin.cluster_info().await.map_err(|e| Error::cluster("cluster info from the name servers", e))?;
    let brokers = admin::cluster_brokers(&info, None);
    let answers = join_all(brokers.iter().map(|b| c.admin.plugin_list(&b.addr))).await;
    Ok(brokers.into_iter().zip(answers).collect())
}

async fn plugins(State(c): State<Arc<Console>>) -> Result<Json<PluginsAnswer>> {
    let brokers = plugin_lists(&c)
        .await?
        .into_iter()
        .map(|(b, answer)| {
            let (plugins, error) = match answer {
                Ok(ps) => (ps.into_iter().map(PluginRow::from).collect(), None),
                Err(e) => (Vec::new(), Some(Error::cluster(format!("plugins of {}", b.addr), e).explain())),
            };
            BrokerPlugins { addr: b.addr, broker_name: b.broker_name, broker_id: b.broker_id, plugins, error }
        })
        .collect();
    Ok(Json(PluginsAnswer { brokers }))
}

/// How long a broker may take to load a plugin's version (it compiles and
/// initialises it before it answers).
const PLUGIN_CHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A plugin name as brokers accept it: `[a-z0-9][a-z0-9_-]{0,63}`.
fn valid_plugin_name(name: &str) -> Result<()> {
    if config::is_valid_plugin_name(name) {
        Ok(())
    } else {
        Err(Error::BadRequest {
            reason: format!(
                "invalid plugin name `{name}`: write 1 to 64 of a-z, 0-9, `_`, `-`, starting with a letter or digit"
            ),
        })
    }
}

/// One broker's answer to a reload or rollback.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PluginChange {
    addr: String,
    broker_name: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct PluginChangeAnswer {
    results: Vec<PluginChange>,
    /// When a broker refused: who, and why (the shape of every failed answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn reload_plugin(
    State(c): State<Arc<Console>>,
    Segment(name): Segment<String>,
) -> Result<axum::response::Response> {
    change_plugin(&c, name, remoting::RequestCode::FERROMQ_PLUGIN_RELOAD, "reload").await
}

async fn rollback_plugin(
    State(c): State<Arc<Console>>,
    Segment(name): Segment<String>,
) -> Result<axum::response::Response> {
    change_plugin(&c, name, remoting::RequestCode::FERROMQ_PLUGIN_ROLLBACK, "rollback").await
}

/// Sends `code` for plugin `name` to every broker that lists it, at once: 200 when
/// all of them did it, 502 when one refused or failed, 404 when no broker lists it.
async fn change_plugin(
    c: &Console,
    name: String,
    code: remoting::RequestCode,
    what: &str,
) -> Result<axum::response::Response> {
    valid_plugin_name(&name)?;
    let action = format!("{what} of plugin {name}");
    let lists = plugin_lists(c).await?;
    let asked = lists.len();
    let mut failures = Vec::new();
    let mut holders = Vec::new();
    for (b, answer) in lists {
        match answer {
            Ok(ps) if ps.iter().any(|p| p.name == name) => holders.push(b),
            Ok(_) => {}
            Err(e) => failures.push(Error::cluster(format!("plugins of {}", b.addr), e).explain()),
        }
    }
    if holders.is_empty() {
        if asked > 0 && failures.len() == asked {
            return Err(Error::NoBrokerAnswered { action, errors: failures });
        }
        return Err(Error::PluginNotFound { name, unasked: failures });
    }
    let header = remoting::header::plugin::PluginNameRequestHeader { name: name.clone() };
    let answers = join_all(holders.iter().map(|b| {
        c.admin.call_with_timeout(
            &b.addr,
            remoting::RemotingCommand::request_with(code, &header),
            PLUGIN_CHANGE_TIMEOUT,
        )
    }))
    .await;
    let results: Vec<PluginChange> = holders
        .into_iter()
        .zip(answers)
        .map(|(b, answer)| {
            let mut row = PluginChange {
                addr: b.addr,
                broker_name: b.broker_name,
                ok: false,
                generation: None,
                sha256: None,
                error: None,
            };
            match answer {
                Ok(resp) => {
                    row.ok = true;
                    if let Ok(h) = resp.decode_header::<remoting::header::plugin::DeployPluginResponseHeader>() {
                        row.generation = Some(h.generation);
                        row.sha256 = Some(h.sha256);
                    }
                }
                Err(e) => row.error = Some(Error::cluster(action.clone(), e).explain()),
            }
            row
        })
        .collect();
    let refused: Vec<&str> = results.iter().filter_map(|r| r.error.as_deref()).collect();
    let (status, error) = if refused.is_empty() {
        (axum::http::StatusCode::OK, None)
    } else {
        (
            axum::http::StatusCode::BAD_GATEWAY,
            Some(format!("{} of {} broker(s) refused: {}", refused.len(), results.len(), refused.join("; "))),
        )
    };
    if let Some(error) = &error {
        tracing::warn!(%error, "console request failed");
    }
    Ok(axum::response::IntoResponse::into_response((status, Json(PluginChangeAnswer { results, error }))))
}

// ---- messages ----

/// A stored message; `body` only when one message is asked for.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageView {
    msg_id: String,
    offset_msg_id: String,
    topic: String,
    tags: Option<String>,
    keys: Option<String>,
    queue_id: i32,
    queue_offset: i64,
    commit_log_offset: i64,
    store_size: i32,
    born_timestamp: i64,
    born_host: String,
    store_timestamp: i64,
    store_host: String,
    reconsume_times: i32,
    sys_flag: i32,
    body_size: usize,
    /// The body as text when it is UTF-8, else base64 (see `bodyEncoding`).
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// `utf-8` or `base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_encoding: Option<&'static str>,
    properties: BTreeMap<String, String>,
}

impl MessageView {
    fn of(m: &MessageExt, with_body: bool) -> Self {
        let (body, body_encoding) = if !with_body {
            (None, None)
        } else {
            match std::str::from_utf8(&m.body) {
                Ok(text) => (Some(text.to_owned()), Some("utf-8")),
                Err(_) => (Some(base64::engine::general_purpose::STANDARD.encode(&m.body)), Some("base64")),
            }
        };
        MessageView {
            msg_id: m.msg_id(),
            offset_msg_id: m.offset_msg_id(),
            topic: m.topic.clone(),
            tags: m.tags().map(str::to_owned),
            keys: m.properties.get(keys::KEYS).map(str::to_owned),
            queue_id: m.queue_id,
            queue_offset: m.queue_offset,
            commit_log_offset: m.commit_log_offset,
            store_size: m.store_size,
            born_timestamp: m.born_timestamp,
            born_host: m.born_host.to_string(),
            store_timestamp: m.store_timestamp,
            store_host: m.store_host.to_string(),
            reconsume_times: m.reconsume_times,
            sys_flag: m.sys_flag,
            body_size: m.body.len(),
            body,
            body_encoding,
            properties: m.properties.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        }
    }
}

#[derive(Deserialize)]
struct Search {
    topic: Option<String>,
    key: Option<String>,
    /// Stored from (ms), default the beginning.
    #[serde(default)]
    begin: Option<i64>,
    /// Stored until (ms), default now and on.
    #[serde(default)]
    end: Option<i64>,
    #[serde(default)]
    max: Option<i32>,
}

#[derive(Serialize)]
struct SearchAnswer {
    topic: String,
    key: String,
    messages: Vec<MessageView>,
}

async fn search_messages(State(c): State<Arc<Console>>, Params(q): Params<Search>) -> Result<Json<SearchAnswer>> {
    let topic = required(q.topic, "topic")?;
    let key = required(q.key, "key")?;
    valid_topic(&topic)?;
    let max = q.max.unwrap_or(DEFAULT_SEARCH_MAX).clamp(1, DEFAULT_SEARCH_MAX);
    let found = c
        .admin
        .query_message(&topic, &key, max, q.begin.unwrap_or(0), q.end.unwrap_or(i64::MAX))
        .await
        .map_err(|e| Error::cluster(format!("messages of topic {topic} with key {key}"), e))?;
    let messages = found.iter().map(|m| MessageView::of(m, false)).collect();
    Ok(Json(SearchAnswer { topic, key, messages }))
}

#[derive(Deserialize)]
struct MessageQuery {
    #[serde(default)]
    topic: Option<String>,
}

async fn message(
    State(c): State<Arc<Console>>,
    Segment(msg_id): Segment<String>,
    Params(q): Params<MessageQuery>,
) -> Result<Json<MessageView>> {
    let topic = q.topic.filter(|t| !t.trim().is_empty());
    if let Some(t) = &topic {
        valid_topic(t)?;
        // A producer's id is the message's UNIQ_KEY, which the broker indexes.
        let found = c
            .admin
            .query_message(t, &msg_id, DEFAULT_SEARCH_MAX, 0, i64::MAX)
            .await
            .map_err(|e| Error::cluster(format!("message {msg_id} in topic {t}"), e))?;
        if let Some(m) = found.iter().rev().find(|m| m.msg_id() == msg_id || m.offset_msg_id() == msg_id) {
            return Ok(Json(MessageView::of(m, true)));
        }
    }
    let Ok((host, _)) = common::msgid::decode_offset_msg_id(&msg_id) else {
        return Err(match topic {
            Some(t) => Error::MessageNotFound { msg_id, topic: Some(t) },
            None => Error::NeedTopic { msg_id },
        });
    };
    // A producer's id has the same shape as an offset id: ask only a broker of the
    // cluster, never whatever address the id happens to spell.
    let info = c.admin.cluster_info().await.map_err(|e| Error::cluster("cluster info from the name servers", e))?;
    let host = host.to_string();
    if !admin::cluster_brokers(&info, None).iter().any(|b| b.addr == host) {
        return Err(match topic {
            Some(t) => Error::MessageNotFound { msg_id, topic: Some(t) },
            None => Error::UnknownStoreHost { msg_id, host },
        });
    }
    let m = c
        .admin
        .view_message(&msg_id)
        .await
        .map_err(|e| Error::cluster(format!("message {msg_id} by its offset id"), e))?;
    if topic.as_ref().is_some_and(|t| *t != m.topic) {
        return Err(Error::MessageNotFound { msg_id, topic });
    }
    Ok(Json(MessageView::of(&m, true)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResendAnswer {
    /// The dead-letter message re-sent (its offset id).
    resent: String,
    /// The dead-letter topic it is in.
    from: String,
    #[serde(flatten)]
    sent: SendAnswer,
}

/// Re-sends a dead-letter message to the topic it first failed in, as `mqadmin
/// resendDLQ` (`admin::ops::resend_dlq`) does: a copy with its body, tags and keys.
async fn resend_dead_letter(
    State(c): State<Arc<Console>>,
    Segment(msg_id): Segment<String>,
) -> Result<Json<ResendAnswer>> {
    let Ok((host, _)) = common::msgid::decode_offset_msg_id(&msg_id) else {
        return Err(Error::BadRequest {
            reason: format!("message id {msg_id} is not a broker offset id (a message's offsetMsgId)"),
        });
    };
    let info = c.admin.cluster_info().await.map_err(|e| Error::cluster("cluster info from the name servers", e))?;
    let host = host.to_string();
    if !admin::cluster_brokers(&info, None).iter().any(|b| b.addr == host) {
        return Err(Error::UnknownBroker { addr: host });
    }
    let m = c
        .admin
        .view_message(&msg_id)
        .await
        .map_err(|e| Error::cluster(format!("message {msg_id} by its offset id"), e))?;
    let copy = match client::admin::dead_letter_copy(&m) {
        Ok(copy) => copy,
        Err(client::admin::NotResendable::NotDeadLetter { topic }) => {
            return Err(Error::NotDeadLetter { msg_id, topic })
        }
        Err(client::admin::NotResendable::NoOrigin) => return Err(Error::NoOriginTopic { msg_id }),
    };
    let origin = copy.topic.clone();
    let r =
        c.producer().send(copy).await.map_err(|e| Error::cluster(format!("re-send {msg_id} to topic {origin}"), e))?;
    Ok(Json(ResendAnswer { resent: msg_id, from: m.topic, sent: SendAnswer::of(r) }))
}

// ---- message trace ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraceQuery {
    /// The topic trace records are written to, default RocketMQ's.
    #[serde(default)]
    trace_topic: Option<String>,
}

/// One message-trace record, flattened: fields a record type does not have are `null`.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct TraceRow {
    /// `Pub`, `SubBefore`, `SubAfter` or `EndTransaction`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// When the event happened (ms); a `SubAfter` that does not say has its
    /// `SubBefore`'s time.
    timestamp: Option<i64>,
    /// The client host that wrote the record.
    host: String,
    /// The producer group (`Pub`, `EndTransaction`) or consumer group (`SubBefore`,
    /// and a `SubAfter` through its `SubBefore`).
    group: Option<String>,
    topic: Option<String>,
    cost_ms: Option<i64>,
    success: Option<bool>,
    /// `success` or `failed` (`Pub`, `SubAfter`, with why a consumption failed when
    /// the client says), `delivered` (`SubBefore`), or the transaction's state.
    status: String,
    keys: Option<String>,
    tags: Option<String>,
    store_host: Option<String>,
    offset_msg_id: Option<String>,
    /// Shared by the `SubBefore` and `SubAfter` of one delivery.
    request_id: Option<String>,
    retry_times: Option<i32>,
    transaction_id: Option<String>,
    from_check: Option<bool>,
}

#[derive(Serialize)]
struct TraceAnswer {
    records: Vec<TraceRow>,
}

/// The trace records of message `msg_id` (its producer's id), in event order, as
/// `mqadmin queryMsgTraceById` reads them.
async fn message_trace(
    State(c): State<Arc<Console>>,
    Segment(msg_id): Segment<String>,
    Params(q): Params<TraceQuery>,
) -> Result<Json<TraceAnswer>> {
    let topic = q
        .trace_topic
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| client::msg_trace::DEFAULT_TRACE_TOPIC.to_owned());
    valid_topic(&topic)?;
    let records = match c.admin.query_msg_trace(&topic, &msg_id, DEFAULT_SEARCH_MAX, 0, i64::MAX).await {
        Ok(r) => r,
        // No broker has the trace topic: message trace is off, so there is nothing to read.
        Err(client::Error::NoRoute(_)) => Vec::new(),
        Err(e) => return Err(Error::cluster(format!("trace of message {msg_id} in topic {topic}"), e)),
    };
    Ok(Json(TraceAnswer { records: trace_rows(&records) }))
}

/// Flattens `records` (in event order) into rows, naming each consumption's group
/// from its `SubBefore`.
fn trace_rows(records: &[(TraceRecord, std::net::SocketAddr)]) -> Vec<TraceRow> {
    // A consumption's group and start are in its SubBefore (same request id; the C++
    // client leaves the id empty, so fall back to the latest SubBefore before it).
    let before = |upto: usize, request_id: &str| {
        records[..upto].iter().rev().find_map(|(r, _)| match r {
            TraceRecord::SubBefore(b) if request_id.is_empty() || b.request_id == request_id => Some(b),
            _ => None,
        })
    };
    let outcome = |ok: bool| if ok { "success" } else { "failed" }.to_owned();
    records
        .iter()
        .enumerate()
        .map(|(i, (r, host))| {
            let row = TraceRow {
                kind: "",
                timestamp: None,
                host: host.to_string(),
                group: None,
                topic: None,
                cost_ms: None,
                success: None,
                status: String::new(),
                keys: r.keys().map(str::to_owned),
                tags: None,
                store_host: None,
                offset_msg_id: None,
                request_id: None,
                retry_times: None,
                transaction_id: None,
                from_check: None,
            };
            match r {
                TraceRecord::Pub(p) => TraceRow {
                    kind: "Pub",
                    timestamp: Some(p.timestamp),
                    group: Some(p.group.clone()),
                    topic: Some(p.topic.clone()),
                    cost_ms: Some(p.cost_ms),
                    success: Some(p.success),
                    status: outcome(p.success),
                    tags: p.tags.clone(),
                    store_host: Some(p.store_host.clone()),
                    offset_msg_id: p.offset_msg_id.clone(),
                    ..row
                },
                TraceRecord::SubBefore(b) => TraceRow {
                    kind: "SubBefore",
                    timestamp: Some(b.timestamp),
                    group: Some(b.group.clone()),
                    status: "delivered".to_owned(),
                    request_id: Some(b.request_id.clone()),
                    retry_times: Some(b.retry_times),
                    ..row
                },
                TraceRecord::SubAfter(a) => {
                    let b = before(i, &a.request_id);
                    let status = match (a.success, a.context_code) {
                        (false, Some(1)) => "failed (timed out)".to_owned(),
                        (false, Some(2)) => "failed (exception)".to_owned(),
                        (false, Some(3)) => "failed (returned null)".to_owned(),
                        (ok, _) => outcome(ok),
                    };
                    TraceRow {
                        kind: "SubAfter",
                        timestamp: r.timestamp().or(b.map(|b| b.timestamp)),
                        group: b.map(|b| b.group.clone()),
                        cost_ms: Some(a.cost_ms),
                        success: Some(a.success),
                        status,
                        request_id: Some(a.request_id.clone()),
                        ..row
                    }
                }
                TraceRecord::EndTransaction(e) => TraceRow {
                    kind: "EndTransaction",
                    timestamp: Some(e.timestamp),
                    group: Some(e.group.clone()),
                    topic: Some(e.topic.clone()),
                    status: e.state.clone(),
                    tags: e.tags.clone(),
                    store_host: Some(e.store_host.clone()),
                    transaction_id: Some(e.transaction_id.clone()),
                    from_check: Some(e.from_check),
                    ..row
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_kinds() {
        let mut info = ClusterInfo::default();
        info.cluster_addr_table.insert("DefaultCluster".into(), ["broker-a".to_owned()].into());
        info.broker_addr_table.insert("broker-a".into(), common::route::BrokerData::default());
        for (name, kind) in [
            ("Orders", "normal"),
            ("%RETRY%G", "retry"),
            ("%DLQ%G", "dlq"),
            ("TBW102", "system"),
            ("RMQ_SYS_TRACE_TOPIC", "system"),
            ("DefaultCluster", "system"),
            ("broker-a", "system"),
        ] {
            assert_eq!(topic_kind(name, &info), kind, "{name}");
        }
        assert!(is_system_group("TOOLS_CONSUMER") && is_system_group("CID_RMQ_SYS_TRANS"));
        assert!(!is_system_group("OrderConsumers"));
    }

    #[test]
    fn a_consumption_is_named_by_its_delivery() {
        use client::msg_trace::data::{SubAfterRecord, SubBeforeRecord};
        let host: std::net::SocketAddr = ([10, 0, 0, 7], 40000).into();
        let delivery = |group: &str, request_id: &str, timestamp| {
            TraceRecord::SubBefore(SubBeforeRecord {
                timestamp,
                region_id: "DefaultRegion".into(),
                group: group.into(),
                request_id: request_id.into(),
                msg_id: "M".into(),
                retry_times: 0,
                keys: Some("order-1".into()),
            })
        };
        let outcome = |request_id: &str, success, context_code| {
            TraceRecord::SubAfter(SubAfterRecord {
                request_id: request_id.into(),
                msg_id: "M".into(),
                cost_ms: 4,
                success,
                keys: Some("order-1".into()),
                context_code,
                timestamp: None,
            })
        };
        let records = [
            (delivery("A", "r1", 10), host),
            (delivery("B", "r2", 11), host),
            (outcome("r1", true, Some(0)), host),
            (outcome("r2", false, Some(2)), host),
        ];
        let rows = trace_rows(&records);
        let got: Vec<_> = rows.iter().map(|r| (r.kind, r.group.as_deref(), r.timestamp, r.status.as_str())).collect();
        assert_eq!(
            got,
            [
                ("SubBefore", Some("A"), Some(10), "delivered"),
                ("SubBefore", Some("B"), Some(11), "delivered"),
                ("SubAfter", Some("A"), Some(10), "success"),
                ("SubAfter", Some("B"), Some(11), "failed (exception)"),
            ]
        );
        assert_eq!(rows[2].host, "10.0.0.7:40000");
        assert_eq!(rows[2].keys.as_deref(), Some("order-1"));
    }
}
