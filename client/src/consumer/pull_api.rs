// PERF-CRITICAL PATH: every pulled message goes through `PullApi::pull`.
//! The consumer's broker calls: one PULL_MESSAGE on one queue, and the offset,
//! membership, send-back and lock requests every consumer needs (RocketMQ's
//! `PullAPIWrapper` plus the consumer half of `MQClientAPIImpl`).
//!
//! This module owns the request/response mapping only: it retries nothing and never
//! sleeps, so push and pull consumers can build their own loops on it. The one
//! state it keeps between calls is which broker of each queue's broker name the
//! next pull goes to (RocketMQ's `pullFromWhichNodeTable`), shared by the clones of
//! a [`PullApi`]. Callers rely on these invariants:
//!
//! * a pull that finds nothing is a [`PullStatus`], not an `Err`; `Err` means the
//!   request failed (transport, timeout, or a broker refusal such as
//!   SUBSCRIPTION_NOT_LATEST) and the caller decides when to try again;
//! * [`PullStatus::Found`] always comes with at least one message: when the exact
//!   tag re-filter (tag hash collisions, §8.9) drops every message of a batch the
//!   result is [`PullStatus::NoMatchedMsg`], whose `next_begin_offset` still moves
//!   past them;
//! * returned bodies are decompressed and their `sys_flag` no longer carries the
//!   compression bits, so a message can be re-sent or re-inspected as it is;
//! * a message whose body does not decompress (corrupt bytes, an undefined
//!   compression type) is never among [`PullResult::messages`]: it comes back in
//!   [`PullResult::undecodable`] as stored, with the error, is logged at `warn` and
//!   counted ([`PullApi::undecodable_messages`]). RocketMQ's Java decoder instead
//!   drops it and every later message of the batch without a word; here the rest of
//!   the batch is delivered and the consumer decides the message's fate (the push
//!   and lite pull consumers send it to the group's DLQ);
//! * the broker address comes from the [`ClientInstance`]'s route cache, chosen as
//!   RocketMQ's clients choose it ([`find_broker_in_subscribe`](crate::instance::find_broker_in_subscribe)):
//!   - a pull goes to the broker id the previous answer for the queue suggested
//!     (`suggestWhichBrokerId`, master at first), else the master, else any
//!     address of the broker name (a slave while the master is out of the route);
//!     its piggy-backed commit offset (PullSysFlag COMMIT_OFFSET) is sent only when
//!     that address is the master's. A pull that fails in transport on a slave
//!     sends the queue's next pull to the master again (RocketMQ waits for the
//!     route to drop the slave);
//!   - offset commits and queries go to the master, and while the route has no
//!     master (after one refresh) to a slave;
//!   - locks and send-back go to the master only;
//!   - offset lookups (max, min, by time) go to the master, else any address;
//!
//!   an unknown broker name triggers one route refresh of the queue's topic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tracing::{debug, warn};

use common::route::{MessageQueue, MASTER_ID};
use common::subscription::SubscriptionData;
use common::sysflag::{message as msg_flag, pull as pull_flag};
use common::{MessageExt, ResponseCode};
use remoting::body::{ConsumerListBody, LockBatchRequestBody, LockBatchResponseBody};
use remoting::header::broker::{
    ConsumerGroupRequestHeader, ConsumerSendMsgBackRequestHeader, GetMaxOffsetRequestHeader, OffsetResponseHeader,
    PullMessageRequestHeader, PullMessageResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader, TopicQueueRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use remoting::{RemotingCommand, RequestCode};

use crate::error::{Error, Result};
use crate::instance::{ClientInstance, FoundBroker};

/// Messages asked for per pull (`pullBatchSize`).
pub const DEFAULT_PULL_BATCH_SIZE: i32 = 32;
/// How long the broker may hold a pull that finds nothing (Java push consumer: 15 s).
pub const DEFAULT_SUSPEND: Duration = Duration::from_secs(15);
/// Request timeout of a long-polling pull: twice the hold, as the Java client uses.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long consumers wait before pulling a queue again after an answer that asks
/// for an immediate retry without moving the offset ([`PullResult::is_stalled`]).
/// A RocketMQ slave answers so when the offset lies beyond what it holds (slaves do
/// not correct offsets); while the master is out of the route the retry goes to
/// that same slave, and retrying at once would only load it. RocketMQ's clients
/// retry at once.
pub const STALLED_RETRY_DELAY: Duration = Duration::from_millis(50);

/// What a pull found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// Messages were found (at least one survives the client-side re-filter).
    Found,
    /// The queue has nothing at or after the offset (after the hold, if any).
    NoNewMsg,
    /// Entries were scanned but none matched the subscription; continue from
    /// `next_begin_offset`.
    NoMatchedMsg,
    /// The offset is outside `[min_offset, max_offset]`; `next_begin_offset` is
    /// the broker's correction.
    OffsetIllegal,
}

/// The outcome of one pull.
#[derive(Debug, Clone)]
pub struct PullResult {
    pub status: PullStatus,
    /// Where the next pull of this queue should start.
    pub next_begin_offset: i64,
    /// The queue's smallest logical offset.
    pub min_offset: i64,
    /// The queue's next logical offset to be written.
    pub max_offset: i64,
    /// Decoded, decompressed, re-filtered messages, in queue order.
    pub messages: Vec<MessageExt>,
    /// Messages of the batch whose body could not be decoded, in queue order.
    pub undecodable: Vec<UndecodableMessage>,
}

impl PullResult {
    /// Whether the broker asked for an immediate retry without moving the offset
    /// (PULL_RETRY_IMMEDIATELY with `next_begin_offset` equal to the `requested`
    /// offset): nothing changes until the broker catches up.
    pub fn is_stalled(&self, requested: i64) -> bool {
        self.status == PullStatus::NoMatchedMsg && self.next_begin_offset == requested
    }
}

/// A pulled message whose body does not decompress.
#[derive(Debug, Clone)]
pub struct UndecodableMessage {
    /// The message as stored: body still compressed, sys flag untouched.
    pub message: MessageExt,
    /// Why the body cannot be read ([`Error::Decompress`] or
    /// [`Error::UnknownCompression`]).
    pub error: Arc<Error>,
}

/// One PULL_MESSAGE. Build with [`PullRequest::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub group: String,
    pub mq: MessageQueue,
    /// Logical offset to read from.
    pub offset: i64,
    /// Messages at most (`maxMsgNums`).
    pub max_msg_nums: i32,
    /// The subscription: its expression is sent when `post_subscription` is set, its
    /// `sub_version` always, and its tags re-filter the answer.
    pub subscription: Arc<SubscriptionData>,
    /// An offset for the broker to commit for the group at the same time
    /// (PullSysFlag COMMIT_OFFSET). Sent only when the pull goes to the master: a
    /// pull from a slave commits nothing.
    pub commit_offset: Option<i64>,
    /// Long polling: how long the broker may hold the request when nothing is
    /// there (PullSysFlag SUSPEND). `None` answers at once.
    pub suspend: Option<Duration>,
    /// Send the subscription with the request (PullSysFlag SUBSCRIPTION) instead of
    /// relying on what the broker learned from heartbeats (Java's
    /// `postSubscriptionWhenPull`; lite pull consumers set it).
    pub post_subscription: bool,
    /// Mark the request as a lite pull consumer's (PullSysFlag LITE_PULL).
    pub lite: bool,
    /// Request timeout; must exceed `suspend`.
    pub timeout: Duration,
}

impl PullRequest {
    /// A long-polling pull with the Java push consumer's defaults: 32 messages,
    /// 15 s hold, 30 s timeout, no commit, subscription from heartbeats.
    pub fn new(group: impl Into<String>, mq: MessageQueue, offset: i64, subscription: Arc<SubscriptionData>) -> Self {
        Self {
            group: group.into(),
            mq,
            offset,
            max_msg_nums: DEFAULT_PULL_BATCH_SIZE,
            subscription,
            commit_offset: None,
            suspend: Some(DEFAULT_SUSPEND),
            post_subscription: false,
            lite: false,
            timeout: DEFAULT_PULL_TIMEOUT,
        }
    }

    fn sys_flag(&self, commit: bool) -> i32 {
        let mut flag = pull_flag::build(commit, self.suspend.is_some(), self.post_subscription, false);
        if self.lite {
            flag |= pull_flag::LITE_PULL;
        }
        flag
    }
}

/// The consumer-side broker API. Cheap to clone.
#[derive(Clone)]
pub struct PullApi {
    instance: ClientInstance,
    /// Timeout of the control requests (`mqClientApiTimeout`).
    timeout: Duration,
    /// Messages whose body did not decode, across clones.
    undecodable: Arc<AtomicU64>,
    /// Broker id the next pull of each queue goes to, as the last answer for the
    /// queue suggested; absent means the master. Read on every pull, written only
    /// when a suggestion changes.
    pull_from: Arc<RwLock<HashMap<MessageQueue, u64>>>,
}

impl PullApi {
    pub fn new(instance: ClientInstance) -> Self {
        let timeout = instance.config().mq_client_api_timeout;
        Self { instance, timeout, undecodable: Arc::default(), pull_from: Arc::default() }
    }

    /// Messages pulled through this API (and its clones) whose body could not be
    /// decoded ([`PullResult::undecodable`]).
    pub fn undecodable_messages(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    pub fn instance(&self) -> &ClientInstance {
        &self.instance
    }

    /// Timeout used for every request except pulls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Pulls one queue.
    ///
    /// # Errors
    /// No address for the queue's broker, transport failures and timeouts, a
    /// broker refusal (any code other than SUCCESS, PULL_NOT_FOUND,
    /// PULL_RETRY_IMMEDIATELY, PULL_OFFSET_MOVED), or a malformed body.
    pub async fn pull(&self, req: &PullRequest) -> Result<PullResult> {
        let node = self.pull_from_which_node(&req.mq);
        let found = self.subscribe_addr(&req.mq, node).await?;
        let addr = found.addr.as_str();
        // RocketMQ clears COMMIT_OFFSET when the pull goes to a slave: only the
        // master stores a group's offsets from pulls.
        let commit = req.commit_offset.is_some() && found.is_master();
        let sub = &req.subscription;
        let header = PullMessageRequestHeader {
            consumer_group: req.group.clone(),
            topic: req.mq.topic.clone(),
            queue_id: req.mq.queue_id,
            queue_offset: req.offset,
            max_msg_nums: req.max_msg_nums,
            sys_flag: req.sys_flag(commit),
            commit_offset: if commit { req.commit_offset.unwrap_or(0) } else { 0 },
            suspend_timeout_millis: req.suspend.map_or(0, |d| d.as_millis() as i64),
            subscription: Some(sub.sub_string.clone()),
            sub_version: sub.sub_version,
            expression_type: Some(if sub.expression_type.is_empty() {
                "TAG".to_owned()
            } else {
                sub.expression_type.clone()
            }),
            max_msg_bytes: None,
            broker_name: Some(req.mq.broker_name.clone()),
        };
        let request = RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &header);
        let resp = match self.instance.invoke(addr, request, req.timeout).await {
            Ok(resp) => resp,
            Err(e) => {
                if !found.is_master() {
                    // The slave may be gone: the next pull asks the master, which
                    // suggests a slave again if it wants to.
                    self.forget_suggestion(&req.mq);
                }
                return Err(e);
            }
        };
        let status = match resp.response_code() {
            ResponseCode::SUCCESS => PullStatus::Found,
            ResponseCode::PULL_NOT_FOUND => PullStatus::NoNewMsg,
            ResponseCode::PULL_RETRY_IMMEDIATELY => PullStatus::NoMatchedMsg,
            ResponseCode::PULL_OFFSET_MOVED => PullStatus::OffsetIllegal,
            _ => return Err(Error::from_response(&resp, addr)),
        };
        let h: PullMessageResponseHeader =
            resp.decode_header().map_err(|e| Error::Body(format!("pull response header: {e}")))?;
        self.update_pull_from_which_node(&req.mq, h.suggest_which_broker_id);
        let mut result = PullResult {
            status,
            next_begin_offset: h.next_begin_offset,
            min_offset: h.min_offset,
            max_offset: h.max_offset,
            messages: Vec::new(),
            undecodable: Vec::new(),
        };
        if status == PullStatus::Found {
            (result.messages, result.undecodable) = decode_messages(&resp.body_bytes(), sub)?;
            if result.messages.is_empty() {
                result.status = PullStatus::NoMatchedMsg;
            }
            if let Some(first) = result.undecodable.first() {
                self.undecodable.fetch_add(result.undecodable.len() as u64, Ordering::Relaxed);
                warn!(
                    group = %req.group,
                    topic = %req.mq.topic,
                    queue_id = req.mq.queue_id,
                    offset = first.message.queue_offset,
                    msg_id = %first.message.msg_id(),
                    count = result.undecodable.len(),
                    error = %first.error,
                    "pulled message bodies do not decode; they are not delivered"
                );
            }
        }
        Ok(result)
    }

    /// The group's committed offset of `mq` (QUERY_CONSUMER_OFFSET to the master,
    /// or to a slave while the route has no master); `None` when the broker has
    /// none (QUERY_NOT_FOUND).
    ///
    /// # Errors
    /// No address for the queue's broker, transport failures, another refusal.
    pub async fn query_consumer_offset(&self, group: &str, mq: &MessageQueue) -> Result<Option<i64>> {
        self.query_consumer_offset_with(group, mq, None).await
    }

    /// [`PullApi::query_consumer_offset`] with RocketMQ 5's `setZeroIfNotFound`:
    /// `Some(false)` asks the broker to answer QUERY_NOT_FOUND instead of 0 for a
    /// young queue the group never committed (brokers before 5.x ignore it).
    ///
    /// # Errors
    /// As [`PullApi::query_consumer_offset`].
    pub async fn query_consumer_offset_with(
        &self,
        group: &str,
        mq: &MessageQueue,
        set_zero_if_not_found: Option<bool>,
    ) -> Result<Option<i64>> {
        let addr = self.offset_addr(mq).await?.addr;
        let h = QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            set_zero_if_not_found,
        };
        let resp = self.invoke(&addr, RemotingCommand::request_with(RequestCode::QUERY_CONSUMER_OFFSET, &h)).await?;
        match resp.response_code() {
            ResponseCode::SUCCESS => {
                let h: QueryConsumerOffsetResponseHeader =
                    resp.decode_header().map_err(|e| Error::Body(e.to_string()))?;
                Ok(Some(h.offset))
            }
            ResponseCode::QUERY_NOT_FOUND => Ok(None),
            _ => Err(Error::from_response(&resp, &addr)),
        }
    }

    /// Commits `offset` (next offset to consume) for the group and waits for the
    /// broker's answer. Goes to the master, or to a slave while the route has no
    /// master (RocketMQ's `RemoteBrokerOffsetStore`): the slave keeps the offset
    /// until the master is back and the next commit reaches it.
    ///
    /// # Errors
    /// No address for the queue's broker, transport failures, a refusal.
    pub async fn update_consumer_offset(&self, group: &str, mq: &MessageQueue, offset: i64) -> Result<()> {
        let addr = self.offset_addr(mq).await?.addr;
        let resp = self.invoke(&addr, update_offset_request(group, mq, offset)).await?;
        check(&resp, &addr)
    }

    /// Commits `offset` without waiting (what the periodic persist sends), to the
    /// same broker as [`PullApi::update_consumer_offset`].
    ///
    /// # Errors
    /// No address for the queue's broker, or the request could not be written.
    pub async fn update_consumer_offset_oneway(&self, group: &str, mq: &MessageQueue, offset: i64) -> Result<()> {
        let addr = self.offset_addr(mq).await?.addr;
        self.instance.oneway(&addr, update_offset_request(group, mq, offset)).await
    }

    /// The queue's next offset to be written (GET_MAX_OFFSET).
    ///
    /// # Errors
    /// No address, transport failures, a refusal.
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let addr = self.read_addr(mq).await?;
        let h = GetMaxOffsetRequestHeader { topic: mq.topic.clone(), queue_id: mq.queue_id, committed: None };
        self.offset_call(&addr, RemotingCommand::request_with(RequestCode::GET_MAX_OFFSET, &h)).await
    }

    /// The queue's smallest offset still stored (GET_MIN_OFFSET).
    ///
    /// # Errors
    /// No address, transport failures, a refusal.
    pub async fn min_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let addr = self.read_addr(mq).await?;
        let h = TopicQueueRequestHeader { topic: mq.topic.clone(), queue_id: mq.queue_id };
        self.offset_call(&addr, RemotingCommand::request_with(RequestCode::GET_MIN_OFFSET, &h)).await
    }

    /// The offset of the first message stored at or after `timestamp` (ms)
    /// (SEARCH_OFFSET_BY_TIMESTAMP).
    ///
    /// # Errors
    /// No address, transport failures, a refusal.
    pub async fn search_offset(&self, mq: &MessageQueue, timestamp: i64) -> Result<i64> {
        let addr = self.read_addr(mq).await?;
        let h = SearchOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            timestamp,
            boundary_type: None,
        };
        self.offset_call(&addr, RemotingCommand::request_with(RequestCode::SEARCH_OFFSET_BY_TIMESTAMP, &h)).await
    }

    /// The ids of the group's live consumers, asked of one broker hosting `topic`
    /// (a random one, preferring masters), sorted. A broker that knows no
    /// consumer of the group answers SYSTEM_ERROR; that is an empty list.
    ///
    /// # Errors
    /// No route or broker for the topic, transport failures, another refusal.
    pub async fn consumer_ids(&self, topic: &str, group: &str) -> Result<Vec<String>> {
        let route = self.instance.route(topic).await?;
        let masters: Vec<&str> = route.broker_datas.iter().filter_map(|b| b.master_addr()).collect();
        let pool: Vec<&str> = if masters.is_empty() {
            route.broker_datas.iter().filter_map(|b| b.select_addr()).collect()
        } else {
            masters
        };
        if pool.is_empty() {
            return Err(Error::NoRoute(topic.to_owned()));
        }
        let addr = pool[rand::random::<usize>() % pool.len()].to_owned();
        self.consumer_ids_from(&addr, group).await
    }

    /// GET_CONSUMER_LIST_BY_GROUP to one broker, sorted.
    ///
    /// # Errors
    /// As [`PullApi::consumer_ids`].
    pub async fn consumer_ids_from(&self, broker_addr: &str, group: &str) -> Result<Vec<String>> {
        let h = ConsumerGroupRequestHeader { consumer_group: group.to_owned() };
        let resp = self
            .invoke(broker_addr, RemotingCommand::request_with(RequestCode::GET_CONSUMER_LIST_BY_GROUP, &h))
            .await?;
        match resp.response_code() {
            ResponseCode::SUCCESS => {
                let body: ConsumerListBody = remoting::json::from_slice(&resp.body_bytes())
                    .map_err(|e| Error::Body(format!("consumer list: {e}")))?;
                let mut ids = body.consumer_id_list;
                ids.sort();
                ids.dedup();
                Ok(ids)
            }
            ResponseCode::SYSTEM_ERROR => Ok(Vec::new()),
            _ => Err(Error::from_response(&resp, broker_addr)),
        }
    }

    /// Returns a message the consumer failed to process to the broker it came from
    /// (CONSUMER_SEND_MSG_BACK): the broker re-stores it in `%RETRY%<group>` after a
    /// delay, or in `%DLQ%<group>` once `max_reconsume_times` is reached.
    /// `delay_level` 0 lets the broker pick (3 + reconsume times), −1 sends it
    /// straight to the DLQ. `broker_name` is the broker of the queue the message
    /// was pulled from; its master is asked, else the record's store host.
    ///
    /// # Errors
    /// Transport failures or a refusal; callers fall back to re-sending a copy.
    pub async fn send_back(
        &self,
        broker_name: &str,
        msg: &MessageExt,
        group: &str,
        delay_level: i32,
        max_reconsume_times: i32,
    ) -> Result<()> {
        let addr = match self.instance.master_addr(broker_name) {
            Some(a) => a,
            None => msg.store_host.to_string(),
        };
        let h = ConsumerSendMsgBackRequestHeader {
            offset: msg.commit_log_offset,
            group: group.to_owned(),
            delay_level,
            origin_msg_id: Some(msg.msg_id()),
            origin_topic: Some(msg.topic.clone()),
            unit_mode: Some(false),
            max_reconsume_times: Some(max_reconsume_times),
        };
        let resp = self.invoke(&addr, RemotingCommand::request_with(RequestCode::CONSUMER_SEND_MSG_BACK, &h)).await?;
        check(&resp, &addr)
    }

    /// Sends pulled messages whose body does not decode to the group's DLQ
    /// (CONSUMER_SEND_MSG_BACK with delay level −1: the broker stores the record as
    /// it is, so the DLQ keeps the original bytes for someone to inspect). Retrying
    /// such a message cannot repair it, so it is not retried. Each message is logged:
    /// at `warn` once it is in the DLQ, at `error` when the send-back failed (the
    /// group then skips the message). Returns how many reached the DLQ.
    pub async fn dead_letter_undecodable(
        &self,
        group: &str,
        mq: &MessageQueue,
        undecodable: &[UndecodableMessage],
        max_reconsume_times: i32,
    ) -> usize {
        let mut sent = 0;
        for u in undecodable {
            let m = &u.message;
            match self.send_back(&mq.broker_name, m, group, -1, max_reconsume_times).await {
                Ok(()) => {
                    sent += 1;
                    warn!(group, topic = %mq.topic, queue_id = mq.queue_id, offset = m.queue_offset, msg_id = %m.msg_id(), error = %u.error, "message body does not decode; sent to the DLQ");
                }
                Err(e) => {
                    tracing::error!(group, topic = %mq.topic, queue_id = mq.queue_id, offset = m.queue_offset, msg_id = %m.msg_id(), error = %u.error, send_back_error = %e, "message body does not decode and the DLQ refused it; the group skips it");
                }
            }
        }
        sent
    }

    /// Locks `mqs` (all of broker `broker_name`) for this client in the group
    /// (LOCK_BATCH_MQ to the master); returns the queues now held.
    ///
    /// # Errors
    /// No master, transport failures, a refusal, a malformed body.
    pub async fn lock_batch(&self, group: &str, broker_name: &str, mqs: &[MessageQueue]) -> Result<Vec<MessageQueue>> {
        let addr = self.master_addr_of(broker_name, mqs.first().map(|m| m.topic.as_str())).await?;
        let body = self.lock_body(group, mqs)?;
        let req = RemotingCommand::request(RequestCode::LOCK_BATCH_MQ).with_body(body);
        let resp = self.invoke(&addr, req).await?;
        check(&resp, &addr)?;
        let body: LockBatchResponseBody =
            remoting::json::from_slice(&resp.body_bytes()).map_err(|e| Error::Body(format!("lock response: {e}")))?;
        Ok(body.lock_ok_mq_set)
    }

    /// Releases the locks on `mqs` (UNLOCK_BATCH_MQ to the master of
    /// `broker_name`), waiting for the answer unless `oneway`.
    ///
    /// # Errors
    /// No master, transport failures, a refusal.
    pub async fn unlock_batch(&self, group: &str, broker_name: &str, mqs: &[MessageQueue], oneway: bool) -> Result<()> {
        let addr = self.master_addr_of(broker_name, mqs.first().map(|m| m.topic.as_str())).await?;
        let body = self.lock_body(group, mqs)?;
        let req = RemotingCommand::request(RequestCode::UNLOCK_BATCH_MQ).with_body(body);
        if oneway {
            return self.instance.oneway(&addr, req).await;
        }
        let resp = self.invoke(&addr, req).await?;
        check(&resp, &addr)
    }

    /// Address of the master of `mq`'s broker (route refreshed once if unknown).
    ///
    /// # Errors
    /// [`Error::NoBrokerAddr`] when the broker has no master, or the route failed.
    pub async fn master_addr(&self, mq: &MessageQueue) -> Result<String> {
        self.master_addr_of(&mq.broker_name, Some(&mq.topic)).await
    }

    /// Address to read `mq` from: the master, else any live replica.
    ///
    /// # Errors
    /// [`Error::NoBrokerAddr`] when the broker has no address, or the route failed.
    pub async fn read_addr(&self, mq: &MessageQueue) -> Result<String> {
        if let Some(a) = self.instance.any_addr(&mq.broker_name) {
            return Ok(a);
        }
        self.instance.refresh_route(&mq.topic).await?;
        self.instance.any_addr(&mq.broker_name).ok_or_else(|| Error::NoBrokerAddr(mq.broker_name.clone()))
    }

    /// The broker id the next pull of `mq` goes to: the last suggestion a broker
    /// made for the queue, the master before any (RocketMQ's
    /// `recalculatePullFromWhichNode`).
    pub fn pull_from_which_node(&self, mq: &MessageQueue) -> u64 {
        self.pull_from.read().get(mq).copied().unwrap_or(MASTER_ID)
    }

    /// Remembers a pull answer's `suggestWhichBrokerId` for `mq` (RocketMQ's
    /// `updatePullFromWhichNode`). A negative id, which no broker has, means the
    /// master.
    fn update_pull_from_which_node(&self, mq: &MessageQueue, suggested: i64) {
        let id = u64::try_from(suggested).unwrap_or(MASTER_ID);
        if self.pull_from.read().get(mq).copied().unwrap_or(MASTER_ID) == id {
            return;
        }
        debug!(topic = %mq.topic, queue_id = mq.queue_id, broker_name = %mq.broker_name, broker_id = id, "pulls of the queue follow the broker's suggestion");
        let mut table = self.pull_from.write();
        if id == MASTER_ID {
            table.remove(mq);
        } else {
            table.insert(mq.clone(), id);
        }
    }

    fn forget_suggestion(&self, mq: &MessageQueue) {
        if self.pull_from.read().contains_key(mq) {
            self.pull_from.write().remove(mq);
        }
    }

    /// Where a pull of `mq` asking for `broker_id` goes (`onlyThisBroker` false);
    /// the route is refreshed once when it does not know the broker name.
    async fn subscribe_addr(&self, mq: &MessageQueue, broker_id: u64) -> Result<FoundBroker> {
        if let Some(found) = self.instance.find_broker_in_subscribe(&mq.broker_name, broker_id, false) {
            return Ok(found);
        }
        self.instance.refresh_route(&mq.topic).await?;
        self.instance
            .find_broker_in_subscribe(&mq.broker_name, broker_id, false)
            .ok_or_else(|| Error::NoBrokerAddr(mq.broker_name.clone()))
    }

    /// Where offset commits and queries of `mq` go (RocketMQ's
    /// `RemoteBrokerOffsetStore`): the master; if the cached route has none, the
    /// route is refreshed and the master, else any address (a slave), is taken. A
    /// refresh that fails leaves the cached route to choose from.
    async fn offset_addr(&self, mq: &MessageQueue) -> Result<FoundBroker> {
        if let Some(found) = self.instance.find_broker_in_subscribe(&mq.broker_name, MASTER_ID, true) {
            return Ok(found);
        }
        if let Err(e) = self.instance.refresh_route(&mq.topic).await {
            debug!(topic = %mq.topic, broker_name = %mq.broker_name, error = %e, "route refresh for an offset request failed; using the cached route");
        }
        self.instance
            .find_broker_in_subscribe(&mq.broker_name, MASTER_ID, false)
            .ok_or_else(|| Error::NoBrokerAddr(mq.broker_name.clone()))
    }

    async fn master_addr_of(&self, broker_name: &str, topic: Option<&str>) -> Result<String> {
        if let Some(a) = self.instance.master_addr(broker_name) {
            return Ok(a);
        }
        if let Some(t) = topic {
            self.instance.refresh_route(t).await?;
        }
        self.instance.master_addr(broker_name).ok_or_else(|| Error::NoBrokerAddr(broker_name.to_owned()))
    }

    fn lock_body(&self, group: &str, mqs: &[MessageQueue]) -> Result<Vec<u8>> {
        let body = LockBatchRequestBody {
            consumer_group: group.to_owned(),
            client_id: self.instance.client_id().to_owned(),
            mq_set: mqs.to_vec(),
            only_this_broker: false,
        };
        remoting::json::to_vec(&body).map_err(|e| Error::Body(e.to_string()))
    }

    async fn invoke(&self, addr: &str, req: RemotingCommand) -> Result<RemotingCommand> {
        self.instance.invoke(addr, req, self.timeout).await
    }

    async fn offset_call(&self, addr: &str, req: RemotingCommand) -> Result<i64> {
        let resp = self.invoke(addr, req).await?;
        check(&resp, addr)?;
        let h: OffsetResponseHeader = resp.decode_header().map_err(|e| Error::Body(e.to_string()))?;
        Ok(h.offset)
    }
}

fn update_offset_request(group: &str, mq: &MessageQueue, offset: i64) -> RemotingCommand {
    let h = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        commit_offset: offset,
    };
    RemotingCommand::request_with(RequestCode::UPDATE_CONSUMER_OFFSET, &h)
}

fn check(resp: &RemotingCommand, addr: &str) -> Result<()> {
    if resp.response_code() == ResponseCode::SUCCESS {
        Ok(())
    } else {
        Err(Error::from_response(resp, addr))
    }
}

/// Decodes a pull body, decompresses bodies and drops messages whose tag is not
/// exactly one of a TAG subscription's tags (the broker matched hashes only).
/// Returns the messages, and apart those whose body does not decompress.
///
/// # Errors
/// A malformed record.
pub fn decode_messages(
    body: &bytes::Bytes,
    sub: &SubscriptionData,
) -> Result<(Vec<MessageExt>, Vec<UndecodableMessage>)> {
    let mut msgs = common::record::decode_all(body, false).map_err(|e| Error::Body(format!("pull body: {e}")))?;
    let refilter = sub.is_tag_type() && !sub.tags_set.is_empty() && !sub.class_filter_mode;
    if refilter {
        msgs.retain(|m| m.tags().is_some_and(|t| sub.tags_set.iter().any(|s| s == t)));
    }
    if msgs.iter().all(|m| m.sys_flag & msg_flag::COMPRESSED == 0) {
        return Ok((msgs, Vec::new()));
    }
    let mut decoded = Vec::with_capacity(msgs.len());
    let mut undecodable = Vec::new();
    for mut m in msgs {
        match crate::compression::decompress_body(m.sys_flag, &m.body) {
            Ok(body) => {
                m.body = body;
                m.sys_flag = crate::compression::clear_compression(m.sys_flag);
                decoded.push(m);
            }
            Err(e) => undecodable.push(UndecodableMessage { message: m, error: Arc::new(e) }),
        }
    }
    Ok((decoded, undecodable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use common::record::RecordRef;

    fn record(tag: &str, body: &[u8], sys_flag: i32, offset: i64) -> Bytes {
        let props = format!("TAGS\u{1}{tag}");
        RecordRef {
            topic: "T",
            queue_id: 0,
            flag: 0,
            queue_offset: offset,
            physical_offset: offset * 100,
            sys_flag,
            born_timestamp: 1,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp: 2,
            store_host: "127.0.0.1:2".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            properties: props.as_bytes(),
            body_crc: None,
        }
        .to_bytes()
        .unwrap()
    }

    fn check(sub: &str, records: &[(&str, &[u8], i32)], expected: &[(&str, &[u8])]) {
        let mut buf = BytesMut::new();
        for (i, (tag, body, flag)) in records.iter().enumerate() {
            buf.put(record(tag, body, *flag, i as i64));
        }
        let sub = SubscriptionData::new("T", sub, "TAG", 1);
        let (got, undecodable) = decode_messages(&buf.freeze(), &sub).unwrap();
        assert!(undecodable.is_empty(), "{undecodable:?}");
        let got: Vec<(String, Vec<u8>)> =
            got.iter().map(|m| (m.tags().unwrap_or("").to_owned(), m.body.to_vec())).collect();
        let want: Vec<(String, Vec<u8>)> = expected.iter().map(|(t, b)| ((*t).to_owned(), b.to_vec())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn refilters_by_exact_tag() {
        // "Aa" and "BB" have the same Java hash: the broker lets both through.
        assert_eq!(common::hash::java_string_hash("Aa"), common::hash::java_string_hash("BB"));
        check("Aa || TagC", &[("Aa", b"1", 0), ("BB", b"2", 0), ("TagC", b"3", 0)], &[("Aa", b"1"), ("TagC", b"3")]);
        check("*", &[("Aa", b"1", 0), ("BB", b"2", 0)], &[("Aa", b"1"), ("BB", b"2")]);
    }

    #[test]
    fn decompresses_bodies() {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        z.write_all(b"hello hello hello").unwrap();
        let compressed = z.finish().unwrap();
        let flag = msg_flag::COMPRESSED | 0x300;
        check("*", &[("A", &compressed, flag), ("B", b"plain", 0)], &[("A", b"hello hello hello"), ("B", b"plain")]);
        // Bodies of RocketMQ 5 clients: LZ4 and ZSTD, compressed by other implementations.
        let fixture = |name: &str| {
            std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compression").join(name),
            )
            .unwrap()
        };
        let plain = fixture("body.txt");
        let (lz4, zst) = (fixture("body.lz4"), fixture("body.zst"));
        check("*", &[("L", &lz4, 0x101), ("Z", &zst, 0x201)], &[("L", &plain), ("Z", &plain)]);
    }

    #[test]
    fn undecodable_bodies_are_set_apart_not_delivered() {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        z.write_all(b"fine").unwrap();
        let good = z.finish().unwrap();
        let records: [(&str, &[u8], i32); 5] = [
            ("A", &good, 0x301),
            ("B", b"not lz4 at all", 0x101),
            ("C", b"plain", msg_flag::MULTI_TAGS),
            ("D", &good[..good.len() - 3], 0x301),
            ("E", &good, COMPRESSED_TYPE_7),
        ];
        let mut buf = BytesMut::new();
        for (i, (tag, body, flag)) in records.iter().enumerate() {
            buf.put(record(tag, body, *flag, i as i64));
        }
        let sub = SubscriptionData::new("T", "*", "TAG", 1);
        let (msgs, undecodable) = decode_messages(&buf.freeze(), &sub).unwrap();
        let got: Vec<(&str, &[u8], i32)> = msgs.iter().map(|m| (m.tags().unwrap(), &m.body[..], m.sys_flag)).collect();
        assert_eq!(got, [("A", &b"fine"[..], 0), ("C", &b"plain"[..], msg_flag::MULTI_TAGS)]);
        let bad: Vec<(i64, &[u8], i32)> =
            undecodable.iter().map(|u| (u.message.queue_offset, &u.message.body[..], u.message.sys_flag)).collect();
        assert_eq!(bad, [(1, records[1].1, 0x101), (3, records[3].1, 0x301), (4, records[4].1, COMPRESSED_TYPE_7)]);
        assert!(matches!(*undecodable[0].error, Error::Decompress { compression: crate::Compression::Lz4, .. }));
        assert!(matches!(*undecodable[1].error, Error::Decompress { compression: crate::Compression::Zlib, .. }));
        assert!(matches!(*undecodable[2].error, Error::UnknownCompression { value: 7, .. }));
    }

    /// COMPRESSED with type 7, which RocketMQ does not define.
    const COMPRESSED_TYPE_7: i32 = 0x701;

    #[test]
    fn only_a_retry_that_moves_nothing_is_stalled() {
        let result = |status, next_begin_offset| PullResult {
            status,
            next_begin_offset,
            min_offset: 0,
            max_offset: 5,
            messages: Vec::new(),
            undecodable: Vec::new(),
        };
        assert!(result(PullStatus::NoMatchedMsg, 9).is_stalled(9));
        assert!(!result(PullStatus::NoMatchedMsg, 12).is_stalled(9), "entries were scanned");
        assert!(!result(PullStatus::NoNewMsg, 9).is_stalled(9), "a long poll that timed out");
        assert!(!result(PullStatus::OffsetIllegal, 9).is_stalled(9));
    }

    #[test]
    fn sys_flags_like_java() {
        let sub = Arc::new(SubscriptionData::new("T", "*", "TAG", 1));
        let mut r = PullRequest::new("G", MessageQueue::new("T", "b", 0), 0, sub);
        assert_eq!(r.sys_flag(false), pull_flag::SUSPEND);
        assert_eq!(r.sys_flag(true), pull_flag::SUSPEND | pull_flag::COMMIT_OFFSET);
        r.post_subscription = true;
        r.lite = true;
        r.suspend = None;
        assert_eq!(r.sys_flag(false), pull_flag::SUBSCRIPTION | pull_flag::LITE_PULL);
    }
}
