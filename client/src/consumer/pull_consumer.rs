//! Application-driven consumers: [`PullConsumer`] (RocketMQ's
//! `DefaultMQPullConsumer`: the application names the queue and the offset of
//! every pull) and [`LitePullConsumer`] (RocketMQ's `DefaultLitePullConsumer`: the
//! application calls [`LitePullConsumer::poll`]; queues come from a rebalance
//! among the group's members, or from [`LitePullConsumer::assign`]).
//!
//! Both send the subscription with every pull (PullSysFlag SUBSCRIPTION), so
//! brokers need no heartbeat-registered subscription before the first pull, and
//! both register their group with the brokers as `CONSUME_ACTIVELY`, which is what
//! group membership (GET_CONSUMER_LIST_BY_GROUP) and admin tools see.
//!
//! Lite pull invariants the caller relies on:
//! * messages of one queue come out of `poll` in queue order, and a message comes
//!   out once unless the application seeks back, the offset store is reset, or
//!   the queue moves to another member before its offset was committed
//!   (at-least-once);
//! * `poll` is where consumption is acknowledged: the offset after the last
//!   message it returned for a queue becomes the queue's consumed offset, which
//!   auto-commit (every `auto_commit_interval`, at the next `poll` or the
//!   instance's persist tick) or [`LitePullConsumer::commit_sync`] writes to the
//!   broker;
//! * after [`LitePullConsumer::seek`] nothing pulled before the seek is returned
//!   for that queue (buffered batches carry the queue's seek generation and stale
//!   ones are dropped).
//!
//! A pulled message whose body does not decode is never returned by `poll`: it goes
//! to the group's DLQ and is counted ([`LitePullConsumer::undecodable_messages`]);
//! [`PullConsumer`] hands such messages to the application in
//! [`PullResult::undecodable`].
//!
//! One background task per assigned queue long-polls the broker and hands whole
//! batches to a bounded channel; a full channel stops the pulling (flow control).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use common::route::MessageQueue;
use common::subscription::{ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, SubscriptionData};
use common::time::now_ms;
use common::MessageExt;
use remoting::channel::BoxFuture;

use crate::consumer::offset_store::OffsetStore;
use crate::consumer::pull_api::{PullApi, PullRequest, PullResult, PullStatus, STALLED_RETRY_DELAY};
use crate::consumer::rebalance::{AllocateAveragely, AllocateStrategy};
use crate::error::{Error, Result};
use crate::instance::{ClientInstance, ConsumerHandle};

/// How long a pull that should block may be held by the broker when nothing is
/// there (Java `BROKER_SUSPEND_MAX_TIME_MILLIS` is 20 s).
pub const DEFAULT_PULL_HOLD: Duration = Duration::from_secs(20);
/// Request timeout of a non-blocking pull (`consumerPullTimeoutMillis`).
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(10);

fn subscription(topic: &str, expression: &str) -> Arc<SubscriptionData> {
    let (ty, expr) = match expression.strip_prefix("SQL92:") {
        Some(sql) => ("SQL92", sql),
        None => ("TAG", expression),
    };
    Arc::new(SubscriptionData::new(topic, expr, ty, now_ms()))
}

fn split_addrs(namesrv: &str) -> Vec<String> {
    namesrv.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------
// PullConsumer

struct PullInner {
    instance: ClientInstance,
    /// Created by this consumer (not shared): shut down with it.
    owns_instance: bool,
    api: PullApi,
    group: String,
    /// Topics this consumer pulled or asked queues of (for the heartbeat).
    topics: Mutex<BTreeSet<String>>,
}

/// A consumer whose application decides what to pull: queue, offset and count.
/// Offsets are the application's business; [`PullConsumer::update_offset`] and
/// [`PullConsumer::fetch_offset`] keep them on the broker, per group. Cheap to
/// clone.
///
/// Subscription expressions are TAG expressions (`*`, `TagA || TagB`); prefix
/// one with `SQL92:` for an SQL92 filter (`SQL92:a > 5`).
#[derive(Clone)]
pub struct PullConsumer {
    inner: Arc<PullInner>,
}

impl PullConsumer {
    /// A pull consumer of `group` with name servers from `config` (or `namesrv`
    /// set in code, which wins), started at once.
    pub fn new(group: impl Into<String>, config: config::ClientConfig, namesrv: Option<Vec<String>>) -> Self {
        Self::build(group, ClientInstance::new(config, namesrv), true)
    }

    /// A pull consumer with the defaults, talking to `namesrv` (`host:port;host:port`).
    pub fn connect(group: impl Into<String>, namesrv: &str) -> Self {
        Self::new(group, config::ClientConfig::default(), Some(split_addrs(namesrv)))
    }

    /// A pull consumer on an existing instance (shared with producers of the
    /// process); [`PullConsumer::shutdown`] leaves the instance running.
    pub fn with_instance(group: impl Into<String>, instance: ClientInstance) -> Self {
        Self::build(group, instance, false)
    }

    fn build(group: impl Into<String>, instance: ClientInstance, owns_instance: bool) -> Self {
        let inner = Arc::new(PullInner {
            api: PullApi::new(instance.clone()),
            instance,
            owns_instance,
            group: group.into(),
            topics: Mutex::default(),
        });
        let handle: Arc<dyn ConsumerHandle> = Arc::new(PullHandle(Arc::downgrade(&inner)));
        // Registration only feeds heartbeats (admin tools see the group); a group
        // that already has a consumer on a shared instance keeps that one.
        if !inner.instance.try_register_consumer(handle) {
            debug!(group = %inner.group, "group already registered on this instance; pulls work without it");
        }
        inner.instance.start();
        Self { inner }
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    pub fn instance(&self) -> &ClientInstance {
        &self.inner.instance
    }

    /// The broker calls underneath, for what this type does not wrap.
    pub fn api(&self) -> &PullApi {
        &self.inner.api
    }

    fn note_topic(&self, topic: &str) {
        if self.inner.topics.lock().insert(topic.to_owned()) {
            let instance = self.inner.instance.clone();
            tokio::spawn(async move { instance.send_heartbeat_to_all().await });
        }
    }

    /// The readable queues of `topic`, sorted, fresh from the name server (the
    /// cached route when no name server answers).
    ///
    /// # Errors
    /// No route for the topic.
    pub async fn fetch_subscribe_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        if let Err(e) = self.inner.instance.refresh_route(topic).await {
            debug!(topic, error = %e, "route refresh failed; using the cached route");
        }
        let queues = self.inner.instance.subscribe_queues(topic).await?;
        self.note_topic(topic);
        Ok(queues)
    }

    /// Pulls up to `max_nums` messages of `mq` matching `expression` from
    /// `offset`, answering at once when there is nothing.
    ///
    /// # Errors
    /// No broker for the queue, transport failures, a broker refusal. Finding
    /// nothing is a [`PullStatus`], not an error.
    pub async fn pull(&self, mq: &MessageQueue, expression: &str, offset: i64, max_nums: i32) -> Result<PullResult> {
        self.pull_inner(mq, expression, offset, max_nums, None).await
    }

    /// As [`PullConsumer::pull`], but when nothing is there the broker holds the
    /// request up to `hold` and answers as soon as a matching message arrives
    /// (long polling).
    ///
    /// # Errors
    /// As [`PullConsumer::pull`].
    pub async fn pull_block_if_not_found(
        &self,
        mq: &MessageQueue,
        expression: &str,
        offset: i64,
        max_nums: i32,
        hold: Duration,
    ) -> Result<PullResult> {
        self.pull_inner(mq, expression, offset, max_nums, Some(hold)).await
    }

    async fn pull_inner(
        &self,
        mq: &MessageQueue,
        expression: &str,
        offset: i64,
        max_nums: i32,
        hold: Option<Duration>,
    ) -> Result<PullResult> {
        if max_nums <= 0 {
            return Err(Error::InvalidArgument(format!("max_nums must be positive, not {max_nums}")));
        }
        self.note_topic(&mq.topic);
        let mut req =
            PullRequest::new(self.inner.group.clone(), mq.clone(), offset, subscription(&mq.topic, expression));
        req.max_msg_nums = max_nums;
        req.post_subscription = true;
        req.suspend = hold;
        req.timeout = match hold {
            Some(h) => h + DEFAULT_PULL_TIMEOUT,
            None => DEFAULT_PULL_TIMEOUT,
        };
        self.inner.api.pull(&req).await
    }

    /// Commits `offset` (the next offset to consume) of `mq` for the group on the
    /// broker (the master, or a slave while the route has none) and waits for it
    /// to be stored.
    ///
    /// # Errors
    /// No address for the queue's broker, transport failures, a refusal.
    pub async fn update_offset(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        self.inner.api.update_consumer_offset(&self.inner.group, mq, offset).await
    }

    /// The group's committed offset of `mq` on the broker; `None` when the group
    /// never committed one (the broker may answer 0 for a queue whose first
    /// message is still in memory, as RocketMQ does). Asked of the master, or of a
    /// slave while the route has none.
    ///
    /// # Errors
    /// No address for the queue's broker, transport failures, a refusal.
    pub async fn fetch_offset(&self, mq: &MessageQueue) -> Result<Option<i64>> {
        self.inner.api.query_consumer_offset(&self.inner.group, mq).await
    }

    /// Moves the group's committed offset of `mq` to `offset`, which must lie
    /// within the queue's `[min_offset, max_offset]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an offset outside the queue, else as
    /// [`PullConsumer::update_offset`].
    pub async fn seek(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        check_range(&self.inner.api, mq, offset).await?;
        self.update_offset(mq, offset).await
    }

    /// The smallest offset still stored in `mq`.
    ///
    /// # Errors
    /// No broker, transport failures, a refusal.
    pub async fn min_offset(&self, mq: &MessageQueue) -> Result<i64> {
        self.inner.api.min_offset(mq).await
    }

    /// The offset the next message of `mq` will get.
    ///
    /// # Errors
    /// As [`PullConsumer::min_offset`].
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<i64> {
        self.inner.api.max_offset(mq).await
    }

    /// The offset of the first message of `mq` stored at or after `timestamp` (ms).
    ///
    /// # Errors
    /// As [`PullConsumer::min_offset`].
    pub async fn offset_for_timestamp(&self, mq: &MessageQueue, timestamp: i64) -> Result<i64> {
        self.inner.api.search_offset(mq, timestamp).await
    }

    /// Unregisters from the brokers and stops the background tasks (of an
    /// instance this consumer created).
    pub async fn shutdown(&self) {
        self.inner.instance.unregister(None, Some(&self.inner.group)).await;
        if self.inner.owns_instance {
            self.inner.instance.shutdown();
        }
    }
}

async fn check_range(api: &PullApi, mq: &MessageQueue, offset: i64) -> Result<()> {
    let (min, max) = (api.min_offset(mq).await?, api.max_offset(mq).await?);
    if offset < min || offset > max {
        return Err(Error::InvalidArgument(format!(
            "offset {offset} of {}:{}:{} is outside [{min}, {max}]",
            mq.topic, mq.broker_name, mq.queue_id
        )));
    }
    Ok(())
}

struct PullHandle(Weak<PullInner>);

impl ConsumerHandle for PullHandle {
    fn group(&self) -> String {
        self.0.upgrade().map(|i| i.group.clone()).unwrap_or_default()
    }

    fn consumer_data(&self) -> ConsumerData {
        let Some(inner) = self.0.upgrade() else { return ConsumerData::default() };
        let subs = inner.topics.lock().iter().map(|t| SubscriptionData::new(t.as_str(), "*", "TAG", 0)).collect();
        ConsumerData {
            group_name: inner.group.clone(),
            consume_type: ConsumeType::ConsumeActively,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            subscription_data_set: subs,
            unit_mode: false,
        }
    }

    fn rebalance(&self) -> BoxFuture<()> {
        Box::pin(async {})
    }

    fn persist_offsets(&self) -> BoxFuture<()> {
        Box::pin(async {})
    }
}

// ---------------------------------------------------------------------------------
// LitePullConsumer

/// Lite pull consumer settings (RocketMQ's names in snake case).
#[derive(Clone)]
pub struct LitePullOptions {
    /// Where a queue the group never committed starts (`consumeFromWhere`).
    pub consume_from_where: ConsumeFromWhere,
    /// Start time (ms) for [`ConsumeFromWhere::Timestamp`]; default: 30 min ago.
    pub consume_timestamp: Option<i64>,
    /// Messages asked for per pull (`pullBatchSize`).
    pub pull_batch_size: i32,
    /// Most messages one `poll` returns (whole batches; the first batch always).
    pub max_poll_messages: usize,
    /// How long the broker may hold a pull that finds nothing.
    pub pull_hold: Duration,
    /// Commit consumed offsets automatically (`autoCommit`).
    pub auto_commit: bool,
    /// Period of automatic commits (`autoCommitIntervalMillis`).
    pub auto_commit_interval: Duration,
    /// Pulled batches buffered across all queues before pulling pauses.
    pub buffered_batches: usize,
    /// Wait after a failed pull before pulling that queue again.
    pub pull_retry_delay: Duration,
    /// How queues are divided among the group's members.
    pub allocate: Arc<dyn AllocateStrategy>,
}

impl Default for LitePullOptions {
    fn default() -> Self {
        Self {
            consume_from_where: ConsumeFromWhere::LastOffset,
            consume_timestamp: None,
            pull_batch_size: 32,
            max_poll_messages: 256,
            pull_hold: DEFAULT_PULL_HOLD,
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            buffered_batches: 64,
            pull_retry_delay: Duration::from_secs(1),
            allocate: Arc::new(AllocateAveragely),
        }
    }
}

impl std::fmt::Debug for LitePullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LitePullOptions")
            .field("consume_from_where", &self.consume_from_where)
            .field("pull_batch_size", &self.pull_batch_size)
            .field("auto_commit", &self.auto_commit)
            .field("allocate", &self.allocate.name())
            .finish_non_exhaustive()
    }
}

/// A batch handed from a queue's pull task to `poll`.
struct Batch {
    mq: MessageQueue,
    generation: u64,
    /// The offset after these messages (next to pull).
    next_offset: i64,
    messages: Vec<MessageExt>,
}

struct QueueState {
    generation: u64,
    cancel: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unset,
    Subscribe,
    Assign,
}

struct LiteState {
    mode: Mode,
    started: bool,
    shut_down: bool,
    subscriptions: HashMap<String, Arc<SubscriptionData>>,
    assigned: HashMap<MessageQueue, QueueState>,
    /// Queues assigned before `start`.
    pending_assign: Vec<MessageQueue>,
    next_generation: u64,
    last_commit: Instant,
}

struct LiteInner {
    instance: ClientInstance,
    /// Created by this consumer (not shared): shut down with it.
    owns_instance: bool,
    api: PullApi,
    group: String,
    opts: LitePullOptions,
    offsets: OffsetStore,
    state: Mutex<LiteState>,
    tx: mpsc::Sender<Batch>,
    /// Held across the wait in `poll` (one poller at a time), hence tokio's mutex.
    rx: tokio::sync::Mutex<mpsc::Receiver<Batch>>,
    /// Serializes rebalances (the periodic one, notifications, `start`).
    rebalancing: tokio::sync::Mutex<()>,
}

/// A consumer that the application polls: background tasks long-poll the queues
/// it owns and buffer what they find; [`LitePullConsumer::poll`] hands it out.
/// Owned queues come from [`LitePullConsumer::subscribe`] (divided among the
/// group's members, re-divided when members come and go) or from
/// [`LitePullConsumer::assign`] (exactly these queues). Cheap to clone.
#[derive(Clone)]
pub struct LitePullConsumer {
    inner: Arc<LiteInner>,
}

impl LitePullConsumer {
    /// A lite pull consumer of `group` with name servers from `config` (or `namesrv`
    /// set in code, which wins). Subscribe or assign, then [`LitePullConsumer::start`].
    pub fn new(
        group: impl Into<String>,
        config: config::ClientConfig,
        namesrv: Option<Vec<String>>,
        opts: LitePullOptions,
    ) -> Self {
        Self::build(group, ClientInstance::new(config, namesrv), opts, true)
    }

    /// A lite pull consumer with the defaults, talking to `namesrv` (`host:port;host:port`).
    pub fn connect(group: impl Into<String>, namesrv: &str) -> Self {
        Self::new(group, config::ClientConfig::default(), Some(split_addrs(namesrv)), LitePullOptions::default())
    }

    /// A lite pull consumer on an existing instance;
    /// [`LitePullConsumer::shutdown`] leaves the instance running.
    pub fn with_instance(group: impl Into<String>, instance: ClientInstance, opts: LitePullOptions) -> Self {
        Self::build(group, instance, opts, false)
    }

    fn build(group: impl Into<String>, instance: ClientInstance, opts: LitePullOptions, owns_instance: bool) -> Self {
        let group = group.into();
        let api = PullApi::new(instance.clone());
        let (tx, rx) = mpsc::channel(opts.buffered_batches.max(1));
        let inner = Arc::new(LiteInner {
            offsets: OffsetStore::remote(api.clone(), group.clone()),
            instance,
            owns_instance,
            api,
            group,
            opts,
            state: Mutex::new(LiteState {
                mode: Mode::Unset,
                started: false,
                shut_down: false,
                subscriptions: HashMap::new(),
                assigned: HashMap::new(),
                pending_assign: Vec::new(),
                next_generation: 1,
                last_commit: Instant::now(),
            }),
            tx,
            rx: tokio::sync::Mutex::new(rx),
            rebalancing: tokio::sync::Mutex::new(()),
        });
        Self { inner }
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    pub fn instance(&self) -> &ClientInstance {
        &self.inner.instance
    }

    pub fn options(&self) -> &LitePullOptions {
        &self.inner.opts
    }

    /// Subscribes to `topic` with a TAG expression (or `SQL92:<expr>`); the
    /// group's members divide the topic's queues. May be called before or after
    /// [`LitePullConsumer::start`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] after [`LitePullConsumer::assign`] (the modes
    /// don't mix).
    pub async fn subscribe(&self, topic: &str, expression: &str) -> Result<()> {
        common::topic::validate_topic(topic).map_err(|e| Error::InvalidArgument(format!("topic `{topic}`: {e}")))?;
        let started = {
            let mut st = self.inner.state.lock();
            if st.mode == Mode::Assign {
                return Err(Error::InvalidArgument(
                    "subscribe after assign: a lite pull consumer uses one mode".into(),
                ));
            }
            st.mode = Mode::Subscribe;
            st.subscriptions.insert(topic.to_owned(), subscription(topic, expression));
            st.started
        };
        if started {
            self.inner.join_group().await;
        }
        Ok(())
    }

    /// Owns exactly `mqs` (no rebalance); queues owned before and not in `mqs`
    /// are released (their consumed offsets committed when auto-commit is on).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] after [`LitePullConsumer::subscribe`].
    pub async fn assign(&self, mqs: Vec<MessageQueue>) -> Result<()> {
        let started = {
            let mut st = self.inner.state.lock();
            if st.mode == Mode::Subscribe {
                return Err(Error::InvalidArgument(
                    "assign after subscribe: a lite pull consumer uses one mode".into(),
                ));
            }
            st.mode = Mode::Assign;
            for mq in &mqs {
                st.subscriptions.entry(mq.topic.clone()).or_insert_with(|| subscription(&mq.topic, "*"));
            }
            if !st.started {
                st.pending_assign = mqs.clone();
            }
            st.started
        };
        if started {
            self.inner.set_assignment(None, mqs).await;
        }
        Ok(())
    }

    /// Registers with the brokers and starts pulling: at once for assigned
    /// queues; after a first rebalance for subscriptions.
    ///
    /// # Errors
    /// [`Error::Shutdown`] after [`LitePullConsumer::shutdown`].
    pub async fn start(&self) -> Result<()> {
        let (mode, pending) = {
            let mut st = self.inner.state.lock();
            if st.shut_down {
                return Err(Error::Shutdown);
            }
            if st.started {
                return Ok(());
            }
            st.started = true;
            st.last_commit = Instant::now();
            (st.mode, std::mem::take(&mut st.pending_assign))
        };
        let handle: Arc<dyn ConsumerHandle> = Arc::new(LiteHandle(Arc::downgrade(&self.inner)));
        if !self.inner.instance.try_register_consumer(handle) {
            self.inner.state.lock().started = false;
            return Err(Error::InvalidArgument(format!(
                "group `{}` already has a consumer on this client instance",
                self.inner.group
            )));
        }
        self.inner.instance.start();
        match mode {
            Mode::Assign => self.inner.set_assignment(None, pending).await,
            Mode::Subscribe => self.inner.join_group().await,
            Mode::Unset => {}
        }
        info!(group = %self.inner.group, "lite pull consumer started");
        Ok(())
    }

    /// Waits up to `timeout` for messages and returns what is buffered (at most
    /// `max_poll_messages`, whole batches), in queue order per queue. Returning a
    /// message acknowledges it: its queue's consumed offset moves past it. An
    /// empty vector means nothing arrived in time.
    ///
    /// # Errors
    /// [`Error::Shutdown`] once the consumer is shut down.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<MessageExt>> {
        let inner = &self.inner;
        if inner.state.lock().shut_down {
            return Err(Error::Shutdown);
        }
        inner.maybe_auto_commit().await;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = inner.rx.lock().await;
        let mut out = Vec::new();
        loop {
            let batch = if out.is_empty() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(b)) => b,
                    Ok(None) => return Err(Error::Shutdown),
                    Err(_) => break,
                }
            } else {
                match rx.try_recv() {
                    Ok(b) => b,
                    Err(_) => break,
                }
            };
            if !inner.accept(&batch) {
                continue;
            }
            out.extend(batch.messages);
            if out.len() >= inner.opts.max_poll_messages {
                break;
            }
        }
        Ok(out)
    }

    /// Commits every owned queue's consumed offset to the broker and waits for
    /// the answers.
    ///
    /// # Errors
    /// The first commit that failed (the others are still attempted).
    pub async fn commit_sync(&self) -> Result<()> {
        self.inner.commit_all().await
    }

    /// Restarts `mq` (an owned queue) at `offset`, which must lie within the
    /// queue's `[min_offset, max_offset]`: buffered messages of the queue are
    /// dropped, the next messages polled from it start at `offset`, and the
    /// consumed offset becomes `offset` (so a commit records the seek).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a queue this consumer does not own or an
    /// offset outside the queue; transport failures reading the queue's range.
    pub async fn seek(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        if !self.inner.state.lock().assigned.contains_key(mq) {
            return Err(Error::InvalidArgument(format!(
                "seek on {}:{}:{}, which this consumer does not own",
                mq.topic, mq.broker_name, mq.queue_id
            )));
        }
        check_range(&self.inner.api, mq, offset).await?;
        self.inner.restart_queue(mq, offset);
        Ok(())
    }

    /// [`LitePullConsumer::seek`] to the queue's smallest stored offset.
    ///
    /// # Errors
    /// As [`LitePullConsumer::seek`].
    pub async fn seek_to_begin(&self, mq: &MessageQueue) -> Result<()> {
        let min = self.inner.api.min_offset(mq).await?;
        self.seek(mq, min).await
    }

    /// [`LitePullConsumer::seek`] to the queue's end (only new messages).
    ///
    /// # Errors
    /// As [`LitePullConsumer::seek`].
    pub async fn seek_to_end(&self, mq: &MessageQueue) -> Result<()> {
        let max = self.inner.api.max_offset(mq).await?;
        self.seek(mq, max).await
    }

    /// Pulled messages whose body could not be decoded (corrupt compressed bytes, an
    /// undefined compression type): `poll` never returns them, they are sent to the
    /// group's DLQ and the consumed offset moves past them.
    pub fn undecodable_messages(&self) -> u64 {
        self.inner.api.undecodable_messages()
    }

    /// The queues this consumer owns now, sorted.
    pub fn assignment(&self) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = self.inner.state.lock().assigned.keys().cloned().collect();
        v.sort();
        v
    }

    /// The consumed offset of `mq` in memory (what the next commit writes).
    pub fn consumed_offset(&self, mq: &MessageQueue) -> Option<i64> {
        self.inner.offsets.read(mq)
    }

    /// The group's committed offset of `mq` on the broker (the master, or a slave
    /// while the route has none).
    ///
    /// # Errors
    /// No address for the queue's broker, transport failures, a refusal.
    pub async fn committed(&self, mq: &MessageQueue) -> Result<Option<i64>> {
        self.inner.api.query_consumer_offset(&self.inner.group, mq).await
    }

    /// The readable queues of `topic` (to pick queues for [`LitePullConsumer::assign`]).
    ///
    /// # Errors
    /// No route for the topic.
    pub async fn fetch_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        self.inner.instance.subscribe_queues(topic).await
    }

    /// Stops pulling, commits consumed offsets (when auto-commit is on), leaves
    /// the group (the others rebalance) and stops the background tasks.
    pub async fn shutdown(&self) {
        let tokens: Vec<CancellationToken> = {
            let mut st = self.inner.state.lock();
            if st.shut_down {
                return;
            }
            st.shut_down = true;
            st.assigned.values().map(|q| q.cancel.clone()).collect()
        };
        for t in tokens {
            t.cancel();
        }
        if self.inner.opts.auto_commit {
            if let Err(e) = self.inner.commit_all().await {
                warn!(group = %self.inner.group, error = %e, "committing offsets at shutdown failed");
            }
        }
        self.inner.instance.unregister(None, Some(&self.inner.group)).await;
        if self.inner.owns_instance {
            self.inner.instance.shutdown();
        }
        self.inner.rx.lock().await.close();
    }
}

impl LiteInner {
    /// Accepts a batch for `poll` if its queue is still owned at the same
    /// generation, moving the queue's consumed offset past it.
    fn accept(&self, b: &Batch) -> bool {
        let st = self.state.lock();
        match st.assigned.get(&b.mq) {
            Some(q) if q.generation == b.generation => {
                self.offsets.update(&b.mq, b.next_offset, false);
                true
            }
            _ => false,
        }
    }

    fn owned(&self) -> Vec<MessageQueue> {
        self.state.lock().assigned.keys().cloned().collect()
    }

    async fn maybe_auto_commit(&self) {
        if !self.opts.auto_commit {
            return;
        }
        let due = {
            let mut st = self.state.lock();
            let due = st.last_commit.elapsed() >= self.opts.auto_commit_interval;
            if due {
                st.last_commit = Instant::now();
            }
            due
        };
        if due {
            self.offsets.persist_all(&self.owned()).await;
        }
    }

    async fn commit_all(&self) -> Result<()> {
        self.state.lock().last_commit = Instant::now();
        let mut first_err = None;
        for mq in self.owned() {
            if let Err(e) = self.offsets.persist(&mq).await {
                warn!(group = %self.group, topic = %mq.topic, queue_id = mq.queue_id, error = %e, "offset commit failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Heartbeats (so the brokers list this member), then rebalances.
    async fn join_group(&self) {
        let topics: Vec<String> = self.state.lock().subscriptions.keys().cloned().collect();
        for t in &topics {
            if let Err(e) = self.instance.refresh_route(t).await {
                debug!(topic = %t, error = %e, "no route yet; the periodic rebalance will retry");
            }
        }
        self.instance.send_heartbeat_to_all().await;
        self.rebalance().await;
    }

    async fn rebalance(&self) {
        let _one = self.rebalancing.lock().await;
        let (mode, subs) = {
            let st = self.state.lock();
            if st.shut_down || !st.started {
                return;
            }
            (st.mode, st.subscriptions.keys().cloned().collect::<Vec<_>>())
        };
        if mode != Mode::Subscribe {
            return;
        }
        for topic in subs {
            let mine = crate::consumer::rebalance::allocate_topic(
                &self.api,
                &self.opts.allocate,
                &self.group,
                &topic,
                MessageModel::Clustering,
            )
            .await;
            if let Some(mine) = mine {
                self.set_assignment(Some(&topic), mine).await;
            }
        }
    }

    /// Makes the owned queues (of `topic`, or of every topic) exactly `mqs`.
    async fn set_assignment(&self, topic: Option<&str>, mqs: Vec<MessageQueue>) {
        let wanted: BTreeSet<MessageQueue> = mqs.into_iter().collect();
        let (removed, added) = {
            let mut st = self.state.lock();
            if st.shut_down {
                return;
            }
            let removed: Vec<MessageQueue> = st
                .assigned
                .keys()
                .filter(|mq| topic.is_none_or(|t| mq.topic == t) && !wanted.contains(*mq))
                .cloned()
                .collect();
            let added: Vec<MessageQueue> = wanted.iter().filter(|mq| !st.assigned.contains_key(*mq)).cloned().collect();
            for mq in &removed {
                if let Some(q) = st.assigned.remove(mq) {
                    q.cancel.cancel();
                }
            }
            (removed, added)
        };
        if !removed.is_empty() || !added.is_empty() {
            info!(group = %self.group, removed = removed.len(), added = added.len(), "lite pull assignment changed");
        }
        for mq in &removed {
            if self.opts.auto_commit {
                if let Err(e) = self.offsets.persist(mq).await {
                    debug!(group = %self.group, topic = %mq.topic, queue_id = mq.queue_id, error = %e, "commit of a released queue failed");
                }
            }
            self.offsets.remove(mq);
        }
        for mq in added {
            self.start_queue(mq, None);
        }
    }

    fn restart_queue(&self, mq: &MessageQueue, offset: i64) {
        if let Some(q) = self.state.lock().assigned.get(mq) {
            q.cancel.cancel();
        }
        self.offsets.update(mq, offset, false);
        self.start_queue(mq.clone(), Some(offset));
    }

    /// Spawns the pull task of `mq` (replacing any), from `offset` or from where
    /// the group left off.
    fn start_queue(&self, mq: MessageQueue, offset: Option<i64>) {
        let cancel = CancellationToken::new();
        let (generation, sub) = {
            let mut st = self.state.lock();
            if st.shut_down {
                return;
            }
            let generation = st.next_generation;
            st.next_generation += 1;
            let sub = st.subscriptions.get(&mq.topic).cloned().unwrap_or_else(|| subscription(&mq.topic, "*"));
            if let Some(old) = st.assigned.insert(mq.clone(), QueueState { generation, cancel: cancel.clone() }) {
                old.cancel.cancel();
            }
            (generation, sub)
        };
        let task = QueueTask {
            api: self.api.clone(),
            offsets_group: self.group.clone(),
            opts: self.opts.clone(),
            tx: self.tx.clone(),
            mq: mq.clone(),
            sub,
            generation,
            cancel,
        };
        let span = tracing::info_span!("lite_pull", group = %self.group, topic = %mq.topic, queue_id = mq.queue_id);
        tokio::spawn(task.run(offset).instrument(span));
    }
}

/// One owned queue's pull loop.
struct QueueTask {
    api: PullApi,
    offsets_group: String,
    opts: LitePullOptions,
    tx: mpsc::Sender<Batch>,
    mq: MessageQueue,
    sub: Arc<SubscriptionData>,
    generation: u64,
    cancel: CancellationToken,
}

impl QueueTask {
    async fn run(self, start: Option<i64>) {
        let mut offset = match start {
            Some(o) => o,
            None => loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    r = self.start_offset() => match r {
                        Ok(o) => break o,
                        Err(e) => debug!(error = %e, "cannot compute the start offset yet"),
                    },
                }
                if self.pause(self.opts.pull_retry_delay).await {
                    return;
                }
            },
        };
        let mut req = PullRequest::new(self.offsets_group.clone(), self.mq.clone(), offset, self.sub.clone());
        req.max_msg_nums = self.opts.pull_batch_size;
        req.post_subscription = true;
        req.lite = true;
        req.suspend = Some(self.opts.pull_hold);
        req.timeout = self.opts.pull_hold + DEFAULT_PULL_TIMEOUT;
        loop {
            req.offset = offset;
            let result = tokio::select! {
                _ = self.cancel.cancelled() => return,
                r = self.api.pull(&req) => r,
            };
            match result {
                Ok(r) => match r.status {
                    // Nothing moved (a slave behind the offset): nothing to hand over.
                    _ if r.is_stalled(offset) => {
                        if self.pause(STALLED_RETRY_DELAY).await {
                            return;
                        }
                    }
                    PullStatus::Found | PullStatus::NoMatchedMsg => {
                        if !r.undecodable.is_empty() {
                            // Never handed to `poll`; kept in the DLQ (RocketMQ's
                            // default of 16 deliveries: the broker only reads it to
                            // decide a DLQ, and delay level -1 asks for the DLQ).
                            self.api.dead_letter_undecodable(&self.offsets_group, &self.mq, &r.undecodable, 16).await;
                        }
                        offset = r.next_begin_offset;
                        // A filtered-out range is handed over too (empty), so the
                        // consumed offset moves past it.
                        let batch = Batch {
                            mq: self.mq.clone(),
                            generation: self.generation,
                            next_offset: offset,
                            messages: r.messages,
                        };
                        tokio::select! {
                            _ = self.cancel.cancelled() => return,
                            sent = self.tx.send(batch) => if sent.is_err() { return },
                        }
                    }
                    PullStatus::NoNewMsg => offset = r.next_begin_offset,
                    PullStatus::OffsetIllegal => {
                        warn!(
                            offset,
                            corrected = r.next_begin_offset,
                            "offset outside the queue; continuing from the broker's correction"
                        );
                        offset = r.next_begin_offset;
                    }
                },
                Err(e) => {
                    debug!(offset, error = %e, "pull failed; retrying");
                    if self.pause(self.opts.pull_retry_delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps `d`; true when cancelled meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    /// Where the group left off, else where `consume_from_where` says (RocketMQ's
    /// `computePullFromWhere`).
    async fn start_offset(&self) -> Result<i64> {
        if let Some(o) = self.api.query_consumer_offset(&self.offsets_group, &self.mq).await? {
            if o >= 0 {
                return Ok(o);
            }
        }
        let retry = common::topic::is_retry_topic(&self.mq.topic);
        match self.opts.consume_from_where {
            ConsumeFromWhere::FirstOffset | ConsumeFromWhere::MinOffset => self.api.min_offset(&self.mq).await,
            ConsumeFromWhere::Timestamp if !retry => {
                let ts = self.opts.consume_timestamp.unwrap_or_else(|| now_ms() - 30 * 60 * 1000);
                self.api.search_offset(&self.mq, ts).await
            }
            _ if retry => Ok(0),
            _ => self.api.max_offset(&self.mq).await,
        }
    }
}

struct LiteHandle(Weak<LiteInner>);

impl ConsumerHandle for LiteHandle {
    fn group(&self) -> String {
        self.0.upgrade().map(|i| i.group.clone()).unwrap_or_default()
    }

    fn consumer_data(&self) -> ConsumerData {
        let Some(inner) = self.0.upgrade() else { return ConsumerData::default() };
        let subs = inner.state.lock().subscriptions.values().map(|s| (**s).clone()).collect();
        ConsumerData {
            group_name: inner.group.clone(),
            consume_type: ConsumeType::ConsumeActively,
            message_model: MessageModel::Clustering,
            consume_from_where: inner.opts.consume_from_where,
            subscription_data_set: subs,
            unit_mode: false,
        }
    }

    fn rebalance(&self) -> BoxFuture<()> {
        let inner = self.0.clone();
        Box::pin(async move {
            if let Some(i) = inner.upgrade() {
                i.rebalance().await;
            }
        })
    }

    fn persist_offsets(&self) -> BoxFuture<()> {
        let inner = self.0.clone();
        Box::pin(async move {
            if let Some(i) = inner.upgrade() {
                i.maybe_auto_commit().await;
            }
        })
    }

    fn reset_offsets(&self, topic: String, offsets: Vec<(MessageQueue, i64)>) -> BoxFuture<()> {
        let inner = self.0.clone();
        Box::pin(async move {
            let Some(i) = inner.upgrade() else { return };
            for (mq, offset) in offsets {
                if mq.topic == topic && i.state.lock().assigned.contains_key(&mq) {
                    i.restart_queue(&mq, offset);
                    // Record the reset at once, so a restart resumes from it.
                    if let Err(e) = i.offsets.persist(&mq).await {
                        debug!(topic = %mq.topic, queue_id = mq.queue_id, error = %e, "committing a reset offset failed");
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_choose_the_filter_type() {
        let s = subscription("T", "TagA || TagB");
        assert_eq!((s.expression_type.as_str(), s.tags_set.len()), ("TAG", 2));
        let s = subscription("T", "SQL92:a > 5");
        assert_eq!((s.expression_type.as_str(), s.sub_string.as_str()), ("SQL92", "a > 5"));
        assert!(subscription("T", "").subscribes_all());
    }

    #[tokio::test]
    async fn modes_do_not_mix() {
        let c = LitePullConsumer::new(
            "G",
            config::ClientConfig::default(),
            Some(vec!["127.0.0.1:1".into()]),
            LitePullOptions::default(),
        );
        c.subscribe("T", "*").await.unwrap();
        let err = c.assign(vec![MessageQueue::new("T", "b", 0)]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let c = LitePullConsumer::new(
            "G",
            config::ClientConfig::default(),
            Some(vec!["127.0.0.1:1".into()]),
            LitePullOptions::default(),
        );
        c.assign(vec![MessageQueue::new("T", "b", 0)]).await.unwrap();
        assert!(c.subscribe("T", "*").await.is_err());
        // Nothing started: seek on a queue not yet owned is refused.
        assert!(c.seek(&MessageQueue::new("T", "b", 0), 0).await.is_err());
    }
}
