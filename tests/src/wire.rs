//! Probe-level helpers: RocketMQ requests built by hand over `remoting`, exactly as
//! a Java client would send them, for tests that check the broker byte by byte.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use common::properties::Properties;
use common::route::TopicRouteData;
use common::subscription::{ConsumerData, HeartbeatData, ProducerData, SubscriptionData};
use common::MessageExt;
use remoting::header::broker::*;
use remoting::header::namesrv::GetRouteInfoRequestHeader;
use remoting::{RemotingClient, RemotingCommand, RequestCode, ResponseCode};

pub const T: Duration = Duration::from_secs(10);

/// A connection to one broker (and its name server) with request builders.
#[derive(Clone)]
pub struct Wire {
    pub client: RemotingClient,
    pub broker: String,
}

/// What a send answered.
#[derive(Debug, Clone)]
pub struct Sent {
    pub code: ResponseCode,
    pub remark: Option<String>,
    pub msg_id: String,
    pub queue_id: i32,
    pub queue_offset: i64,
}

/// What a pull answered.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub code: ResponseCode,
    pub remark: Option<String>,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub messages: Vec<MessageExt>,
}

impl Wire {
    pub fn new(broker: impl Into<String>) -> Self {
        Self { client: RemotingClient::new(remoting::ClientConfig::default(), None), broker: broker.into() }
    }

    /// Sends `req` to the broker.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn call(&self, req: RemotingCommand) -> Result<RemotingCommand> {
        Ok(self.client.invoke(&self.broker, req, T).await?)
    }

    /// UPDATE_AND_CREATE_TOPIC with `queues` read/write queues, perm 6.
    ///
    /// # Errors
    /// Transport failures or a refused creation.
    pub async fn create_topic(&self, topic: &str, queues: i32) -> Result<()> {
        let h = CreateTopicRequestHeader::new(topic, queues);
        let resp = self.call(RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &h)).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("create topic {topic}: {:?} {:?}", resp.response_code(), resp.remark);
        }
        Ok(())
    }

    /// SEND_MESSAGE_V2 of one message with `props` (encoded by the caller's map).
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send(&self, topic: &str, queue_id: i32, body: &[u8], props: &Properties) -> Result<Sent> {
        let h = send_header(topic, queue_id, props);
        let req =
            RemotingCommand::request_with(RequestCode::SEND_MESSAGE_V2, &h).with_body(Bytes::copy_from_slice(body));
        sent(self.call(req).await?)
    }

    /// PULL_MESSAGE with an inline subscription (no heartbeat needed).
    ///
    /// # Errors
    /// Transport failures or an undecodable body.
    #[allow(clippy::too_many_arguments)] // the request's own fields, in its order
    pub async fn pull(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        expr: &str,
        expr_type: &str,
        suspend_ms: i64,
    ) -> Result<Pulled> {
        let mut sys_flag = common::sysflag::pull::SUBSCRIPTION;
        if suspend_ms > 0 {
            sys_flag |= common::sysflag::pull::SUSPEND;
        }
        let h = PullMessageRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: 32,
            sys_flag,
            commit_offset: 0,
            suspend_timeout_millis: suspend_ms,
            subscription: Some(expr.into()),
            sub_version: now_ms(),
            expression_type: Some(expr_type.into()),
            max_msg_bytes: None,
            broker_name: None,
        };
        let timeout = T + Duration::from_millis(suspend_ms.max(0) as u64);
        let resp = self
            .client
            .invoke(&self.broker, RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &h), timeout)
            .await?;
        pulled(resp)
    }

    /// HEART_BEAT for a push consumer of `group` subscribed to `subs` (topic, TAG
    /// expression), plus a producer group.
    ///
    /// # Errors
    /// Transport failures or a refused heartbeat.
    pub async fn heartbeat(&self, client_id: &str, group: &str, subs: &[(&str, &str)]) -> Result<()> {
        let hb = HeartbeatData {
            client_id: client_id.into(),
            producer_data_set: vec![ProducerData { group_name: "PG".into() }],
            consumer_data_set: vec![ConsumerData {
                group_name: group.into(),
                subscription_data_set: subs.iter().map(|(t, e)| SubscriptionData::new(*t, e, "TAG", 1)).collect(),
                ..ConsumerData::default()
            }],
        };
        let req = RemotingCommand::request(RequestCode::HEART_BEAT).with_body(serde_json::to_vec(&hb)?);
        let resp = self.call(req).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("heartbeat: {:?} {:?}", resp.response_code(), resp.remark);
        }
        Ok(())
    }
}

/// Decodes a send response.
///
/// # Errors
/// Never for a well-formed response; kept fallible for header decoding.
pub fn sent(resp: RemotingCommand) -> Result<Sent> {
    let code = resp.response_code();
    let (msg_id, queue_id, queue_offset) = match resp.decode_header::<SendMessageResponseHeader>() {
        Ok(h) => (h.msg_id, h.queue_id, h.queue_offset),
        Err(_) => (String::new(), -1, -1),
    };
    Ok(Sent { code, remark: resp.remark, msg_id, queue_id, queue_offset })
}

/// Decodes a pull response (every code carries the four offsets).
///
/// # Errors
/// Missing offset fields or an undecodable body.
pub fn pulled(resp: RemotingCommand) -> Result<Pulled> {
    let code = resp.response_code();
    let h: PullMessageResponseHeader =
        resp.decode_header().map_err(|e| anyhow::anyhow!("{e} ({code:?} {:?})", resp.remark))?;
    let messages =
        if code == ResponseCode::SUCCESS { common::record::decode_all(&resp.body_bytes(), true)? } else { Vec::new() };
    Ok(Pulled {
        code,
        remark: resp.remark,
        next_begin_offset: h.next_begin_offset,
        min_offset: h.min_offset,
        max_offset: h.max_offset,
        messages,
    })
}

/// GET_ROUTEINFO_BY_TOPIC from a name server.
///
/// # Errors
/// Transport failures.
pub async fn route(client: &RemotingClient, namesrv: &str, topic: &str) -> Result<Option<TopicRouteData>> {
    let h = GetRouteInfoRequestHeader { topic: topic.into(), accept_standard_json_only: None };
    let resp =
        client.invoke(namesrv, RemotingCommand::request_with(RequestCode::GET_ROUTEINFO_BY_TOPIC, &h), T).await?;
    if resp.response_code() != ResponseCode::SUCCESS {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&resp.body_bytes())?))
}

pub use common::time::now_ms;

/// Properties from pairs.
pub fn props(pairs: &[(&str, &str)]) -> Properties {
    pairs.iter().copied().collect()
}

// ---- helpers for the broker processor, error and recovery suites -------------------

/// A SEND_MESSAGE_V2 header with the defaults [`Wire::send`] uses; tweak fields
/// before passing it to [`Wire::send_v2`].
pub fn send_header(topic: &str, queue_id: i32, props: &Properties) -> SendMessageRequestHeaderV2 {
    SendMessageRequestHeaderV2 {
        producer_group: "PG".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp: now_ms(),
        flag: 0,
        properties: Some(props.encode()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: None,
    }
}

/// A PULL_MESSAGE header without flags (no subscription, no suspension, no commit):
/// set what a test needs.
pub fn pull_header(group: &str, topic: &str, queue_id: i32, offset: i64) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: 0,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: None,
        sub_version: 0,
        expression_type: None,
        max_msg_bytes: None,
        broker_name: None,
    }
}

/// A heartbeat of one push consumer (clustering) of `group` with `subs`
/// (topic, TAG expression), and no producer.
pub fn consumer_heartbeat(client_id: &str, group: &str, subs: &[(&str, &str)]) -> HeartbeatData {
    HeartbeatData {
        client_id: client_id.into(),
        producer_data_set: Vec::new(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            subscription_data_set: subs.iter().map(|(t, e)| SubscriptionData::new(*t, e, "TAG", 1)).collect(),
            ..ConsumerData::default()
        }],
    }
}

/// Records the requests a broker sends to a client (NOTIFY_CONSUMER_IDS_CHANGED, ...).
#[derive(Default)]
pub struct ServerRequests {
    seen: std::sync::Mutex<Vec<(RequestCode, RemotingCommand)>>,
}

impl ServerRequests {
    /// Consumer groups named by the NOTIFY_CONSUMER_IDS_CHANGED requests seen so far.
    pub fn notified_groups(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(c, _)| *c == RequestCode::NOTIFY_CONSUMER_IDS_CHANGED)
            .filter_map(|(_, r)| r.decode_header::<ConsumerGroupRequestHeader>().ok())
            .map(|h| h.consumer_group)
            .collect()
    }

    /// Every request seen so far, with whether it was oneway.
    pub fn all(&self) -> Vec<(RequestCode, bool)> {
        self.seen.lock().expect("not poisoned").iter().map(|(c, r)| (*c, r.is_oneway())).collect()
    }

    pub fn clear(&self) {
        self.seen.lock().expect("not poisoned").clear();
    }
}

impl remoting::RequestHandler for ServerRequests {
    fn handle(
        &self,
        _: remoting::Channel,
        request: RemotingCommand,
    ) -> remoting::channel::BoxFuture<Option<RemotingCommand>> {
        self.seen.lock().expect("not poisoned").push((request.request_code(), request));
        Box::pin(async { None })
    }
}

impl Wire {
    /// A connection whose broker → client requests go to `handler`.
    pub fn with_handler(broker: impl Into<String>, handler: std::sync::Arc<dyn remoting::RequestHandler>) -> Self {
        Self { client: RemotingClient::new(remoting::ClientConfig::default(), Some(handler)), broker: broker.into() }
    }

    /// SEND_MESSAGE (10): the full-name header.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send_v1(&self, h: &SendMessageRequestHeader, body: &[u8]) -> Result<Sent> {
        let req = RemotingCommand::request_with(RequestCode::SEND_MESSAGE, h).with_body(Bytes::copy_from_slice(body));
        sent(self.call(req).await?)
    }

    /// SEND_MESSAGE_V2 (310) with a caller-built header.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send_v2(&self, h: &SendMessageRequestHeaderV2, body: &[u8]) -> Result<Sent> {
        let req =
            RemotingCommand::request_with(RequestCode::SEND_MESSAGE_V2, h).with_body(Bytes::copy_from_slice(body));
        sent(self.call(req).await?)
    }

    /// SEND_BATCH_MESSAGE (320) of `msgs` with batch-wide `batch_props` in the header.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send_batch(
        &self,
        topic: &str,
        queue_id: i32,
        msgs: &[common::Message],
        batch_props: &Properties,
    ) -> Result<Sent> {
        let mut h = send_header(topic, queue_id, batch_props);
        h.batch = Some(true);
        let req =
            RemotingCommand::request_with(RequestCode::SEND_BATCH_MESSAGE, &h).with_body(common::batch::encode(msgs));
        sent(self.call(req).await?)
    }

    /// PULL_MESSAGE with a caller-built header.
    ///
    /// # Errors
    /// Transport failures or an undecodable answer.
    pub async fn pull_with(&self, h: &PullMessageRequestHeader) -> Result<Pulled> {
        self.pull_as(RequestCode::PULL_MESSAGE, h).await
    }

    /// A pull sent under `code`: PULL_MESSAGE, or LITE_PULL_MESSAGE as RocketMQ 5's
    /// lite-pull consumers send it.
    ///
    /// # Errors
    /// Transport failures or an undecodable answer.
    pub async fn pull_as(&self, code: RequestCode, h: &PullMessageRequestHeader) -> Result<Pulled> {
        let timeout = T + Duration::from_millis(h.suspend_timeout_millis.max(0) as u64);
        pulled(self.client.invoke(&self.broker, RemotingCommand::request_with(code, h), timeout).await?)
    }

    /// QUERY_CONSUMER_OFFSET: (code, offset or -1, remark).
    ///
    /// # Errors
    /// Transport failures.
    pub async fn query_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
    ) -> Result<(ResponseCode, i64, Option<String>)> {
        let h = QueryConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id,
            set_zero_if_not_found: None,
        };
        self.query_offset_with(&h).await
    }

    /// QUERY_CONSUMER_OFFSET with a caller-built header.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn query_offset_with(
        &self,
        h: &QueryConsumerOffsetRequestHeader,
    ) -> Result<(ResponseCode, i64, Option<String>)> {
        let resp = self.call(RemotingCommand::request_with(RequestCode::QUERY_CONSUMER_OFFSET, h)).await?;
        let offset = resp.decode_header::<QueryConsumerOffsetResponseHeader>().map(|h| h.offset).unwrap_or(-1);
        Ok((resp.response_code(), offset, resp.remark))
    }

    fn update_offset_request(group: &str, topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
        let h = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id,
            commit_offset: offset,
        };
        RemotingCommand::request_with(RequestCode::UPDATE_CONSUMER_OFFSET, &h)
    }

    /// UPDATE_CONSUMER_OFFSET, answered.
    ///
    /// # Errors
    /// Transport failures or a refused update.
    pub async fn update_offset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) -> Result<()> {
        let resp = self.call(Self::update_offset_request(group, topic, queue_id, offset)).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("update offset: {:?} {:?}", resp.response_code(), resp.remark);
        }
        Ok(())
    }

    /// UPDATE_CONSUMER_OFFSET oneway, as the Java client persists offsets.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn update_offset_oneway(&self, group: &str, topic: &str, queue_id: i32, offset: i64) -> Result<()> {
        let req = Self::update_offset_request(group, topic, queue_id, offset).set_oneway();
        Ok(self.client.invoke_oneway(&self.broker, req).await?)
    }

    async fn offset_answer(&self, req: RemotingCommand) -> Result<i64> {
        let resp = self.call(req).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("{:?} {:?}", resp.response_code(), resp.remark);
        }
        Ok(resp.decode_header::<OffsetResponseHeader>()?.offset)
    }

    /// GET_MAX_OFFSET.
    ///
    /// # Errors
    /// Transport failures or a non-success answer.
    pub async fn max_offset(&self, topic: &str, queue_id: i32) -> Result<i64> {
        let h = GetMaxOffsetRequestHeader { topic: topic.into(), queue_id, committed: None };
        self.offset_answer(RemotingCommand::request_with(RequestCode::GET_MAX_OFFSET, &h)).await
    }

    /// GET_MIN_OFFSET.
    ///
    /// # Errors
    /// Transport failures or a non-success answer.
    pub async fn min_offset(&self, topic: &str, queue_id: i32) -> Result<i64> {
        let h = TopicQueueRequestHeader { topic: topic.into(), queue_id };
        self.offset_answer(RemotingCommand::request_with(RequestCode::GET_MIN_OFFSET, &h)).await
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP.
    ///
    /// # Errors
    /// Transport failures or a non-success answer.
    pub async fn search_offset(&self, topic: &str, queue_id: i32, timestamp: i64) -> Result<i64> {
        let h = SearchOffsetRequestHeader { topic: topic.into(), queue_id, timestamp, boundary_type: None };
        self.offset_answer(RemotingCommand::request_with(RequestCode::SEARCH_OFFSET_BY_TIMESTAMP, &h)).await
    }

    /// GET_EARLIEST_MSG_STORETIME.
    ///
    /// # Errors
    /// Transport failures or a non-success answer.
    pub async fn earliest_store_time(&self, topic: &str, queue_id: i32) -> Result<i64> {
        let h = TopicQueueRequestHeader { topic: topic.into(), queue_id };
        let resp = self.call(RemotingCommand::request_with(RequestCode::GET_EARLIEST_MSG_STORETIME, &h)).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("{:?} {:?}", resp.response_code(), resp.remark);
        }
        Ok(resp.decode_header::<GetEarliestMsgStoretimeResponseHeader>()?.timestamp)
    }

    /// HEART_BEAT with a caller-built body.
    ///
    /// # Errors
    /// Transport failures or a refused heartbeat.
    pub async fn heartbeat_with(&self, hb: &HeartbeatData) -> Result<()> {
        let req = RemotingCommand::request(RequestCode::HEART_BEAT).with_body(serde_json::to_vec(hb)?);
        let resp = self.call(req).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("heartbeat: {:?} {:?}", resp.response_code(), resp.remark);
        }
        Ok(())
    }

    /// UNREGISTER_CLIENT of a consumer group member.
    ///
    /// # Errors
    /// Transport failures or a refused request.
    pub async fn unregister_consumer(&self, client_id: &str, group: &str) -> Result<()> {
        let h = UnregisterClientRequestHeader {
            client_id: client_id.into(),
            producer_group: None,
            consumer_group: Some(group.into()),
        };
        let resp = self.call(RemotingCommand::request_with(RequestCode::UNREGISTER_CLIENT, &h)).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("unregister: {:?} {:?}", resp.response_code(), resp.remark);
        }
        Ok(())
    }

    /// GET_CONSUMER_LIST_BY_GROUP: `Err((code, remark))` when the broker refuses.
    ///
    /// # Errors
    /// Transport failures or an unparsable body.
    pub async fn consumer_ids(
        &self,
        group: &str,
    ) -> Result<std::result::Result<Vec<String>, (ResponseCode, Option<String>)>> {
        let h = ConsumerGroupRequestHeader { consumer_group: group.into() };
        let resp = self.call(RemotingCommand::request_with(RequestCode::GET_CONSUMER_LIST_BY_GROUP, &h)).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            return Ok(Err((resp.response_code(), resp.remark)));
        }
        let body: remoting::body::ConsumerListBody = serde_json::from_slice(&resp.body_bytes())?;
        Ok(Ok(body.consumer_id_list))
    }

    /// LOCK_BATCH_MQ: the queues the broker says `client_id` now holds.
    ///
    /// # Errors
    /// Transport failures or a refused request.
    pub async fn lock_batch(
        &self,
        group: &str,
        client_id: &str,
        mqs: &[common::route::MessageQueue],
    ) -> Result<Vec<common::route::MessageQueue>> {
        let body = remoting::body::LockBatchRequestBody {
            consumer_group: group.into(),
            client_id: client_id.into(),
            mq_set: mqs.to_vec(),
            only_this_broker: false,
        };
        let req = RemotingCommand::request(RequestCode::LOCK_BATCH_MQ).with_body(serde_json::to_vec(&body)?);
        let resp = self.call(req).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("lock: {:?} {:?}", resp.response_code(), resp.remark);
        }
        let held: remoting::body::LockBatchResponseBody = serde_json::from_slice(&resp.body_bytes())?;
        let mut held = held.lock_ok_mq_set;
        held.sort();
        Ok(held)
    }

    /// UNLOCK_BATCH_MQ.
    ///
    /// # Errors
    /// Transport failures or a refused request.
    pub async fn unlock_batch(&self, group: &str, client_id: &str, mqs: &[common::route::MessageQueue]) -> Result<()> {
        let body = remoting::body::LockBatchRequestBody {
            consumer_group: group.into(),
            client_id: client_id.into(),
            mq_set: mqs.to_vec(),
            only_this_broker: false,
        };
        let req = RemotingCommand::request(RequestCode::UNLOCK_BATCH_MQ).with_body(serde_json::to_vec(&body)?);
        let resp = self.call(req).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("unlock: {:?} {:?}", resp.response_code(), resp.remark);
        }
        Ok(())
    }

    /// GET_BROKER_RUNTIME_INFO's table.
    ///
    /// # Errors
    /// Transport failures or an unparsable body.
    pub async fn runtime_info(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let resp = self.call(RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO)).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("runtime info: {:?} {:?}", resp.response_code(), resp.remark);
        }
        let kv: remoting::body::KvTable = serde_json::from_slice(&resp.body_bytes())?;
        Ok(kv.table)
    }

    /// Pulls the broker holds parked (long polling), from its runtime info.
    ///
    /// # Errors
    /// Transport failures or a missing counter.
    pub async fn parked_pulls(&self) -> Result<usize> {
        let info = self.runtime_info().await?;
        info.get("pullHeld").and_then(|v| v.parse().ok()).context("runtime info without pullHeld")
    }

    /// Waits until the broker holds at least `n` parked pulls.
    ///
    /// # Errors
    /// Fewer within `timeout`.
    pub async fn wait_parked_pulls(&self, n: usize, timeout: Duration) -> Result<()> {
        crate::eventually(timeout, &format!("{n} parked pull(s)"), || async {
            (self.parked_pulls().await.ok()? >= n).then_some(())
        })
        .await
    }
}

// ---- helpers for the delay, retry and filter suites --------------------------------

impl Wire {
    /// CONSUMER_SEND_MSG_BACK as the Java push consumer sends it: `offset` is the
    /// commit-log offset of the consumed record. Returns (code, remark).
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send_back(&self, h: &ConsumerSendMsgBackRequestHeader) -> Result<(ResponseCode, Option<String>)> {
        let resp = self.call(RemotingCommand::request_with(RequestCode::CONSUMER_SEND_MSG_BACK, h)).await?;
        Ok((resp.response_code(), resp.remark))
    }

    /// VIEW_MESSAGE_BY_ID: the record at commit-log `offset`, `None` when the broker
    /// has none there.
    ///
    /// # Errors
    /// Transport failures or an undecodable record.
    pub async fn view_message(&self, offset: i64) -> Result<Option<MessageExt>> {
        let h = ViewMessageRequestHeader { offset };
        let resp = self.call(RemotingCommand::request_with(RequestCode::VIEW_MESSAGE_BY_ID, &h)).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            return Ok(None);
        }
        Ok(Some(MessageExt::decode(&resp.body_bytes(), true)?))
    }

    /// GET_ALL_TOPIC_CONFIG: the broker's topic table.
    ///
    /// # Errors
    /// Transport failures or an unparsable body.
    pub async fn topic_configs(&self) -> Result<std::collections::BTreeMap<String, common::topic::TopicConfig>> {
        let resp = self.call(RemotingCommand::request(RequestCode::GET_ALL_TOPIC_CONFIG)).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("topic configs: {:?} {:?}", resp.response_code(), resp.remark);
        }
        let w: remoting::body::TopicConfigSerializeWrapper = serde_json::from_slice(&resp.body_bytes())?;
        Ok(w.topic_config_table)
    }

    /// GET_ALL_DELAY_OFFSET: delay level → next schedule-queue offset to deliver.
    ///
    /// # Errors
    /// Transport failures or an unparsable body.
    pub async fn delay_offsets(&self) -> Result<std::collections::BTreeMap<i32, i64>> {
        let resp = self.call(RemotingCommand::request(RequestCode::GET_ALL_DELAY_OFFSET)).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            bail!("delay offsets: {:?} {:?}", resp.response_code(), resp.remark);
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.body_bytes())?;
        let mut out = std::collections::BTreeMap::new();
        if let Some(table) = v.get("offsetTable").and_then(|t| t.as_object()) {
            for (k, v) in table {
                if let (Ok(level), Some(off)) = (k.parse::<i32>(), v.as_i64()) {
                    out.insert(level, off);
                }
            }
        }
        Ok(out)
    }
}

impl Wire {
    /// Pulls (inline `*` subscription, no suspension) until at least `n` messages
    /// are returned from `offset`: for messages that appear some time after the
    /// test's own request returns (delayed and retried messages, timers, transaction
    /// commits, other clients' sends). An acknowledged send is readable at once.
    ///
    /// # Errors
    /// Fewer than `n` messages within [`T`].
    pub async fn pull_at_least(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        n: usize,
    ) -> Result<Pulled> {
        let what = format!("{n} messages in {topic}:{queue_id} from {offset}");
        crate::eventually(T, &what, || async {
            let p = self.pull(group, topic, queue_id, offset, "*", "TAG", 0).await.ok()?;
            (p.messages.len() >= n).then_some(p)
        })
        .await
    }
}
