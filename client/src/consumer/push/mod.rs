//! The push consumer (RocketMQ's `DefaultMQPushConsumer`): the application gives
//! a listener, the consumer does the rest — membership, queue assignment, long
//! polling, flow control, offsets, retries and, for orderly listeners, queue locks.
//!
//! ```no_run
//! # async fn demo() -> client::Result<()> {
//! use client::consumer::{ConsumeContext, ConsumeStatus, PushConsumer};
//! use client::MessageExt;
//! let consumer = PushConsumer::builder("my_group")
//!     .namesrv("127.0.0.1:9876")
//!     .subscribe("TopicTest", "TagA || TagB")
//!     .on_message(|msgs: &[MessageExt], _ctx: &ConsumeContext| {
//!         println!("got {} messages", msgs.len());
//!         ConsumeStatus::Success
//!     })
//!     .start()
//!     .await?;
//! // ...
//! consumer.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! How it runs (the shape of the Java client, with tasks instead of thread pools),
//! one submodule per part:
//!
//! * [`rebalance`] (every 20 s, on NOTIFY_CONSUMER_IDS_CHANGED, on demand): which
//!   queues this member consumes; removed queues stop and commit, new queues get a
//!   start offset and a pull loop. Rebalances are serialized.
//! * [`pull_loop`], one task per assigned queue: long polling (15 s hold), flow
//!   control (per-queue message/byte caps → wait 50 ms), errors → wait 3 s,
//!   OFFSET_ILLEGAL → commit the broker's offset and drop the queue until the next
//!   rebalance.
//! * [`concurrent`] consumption: listener batches run as tasks, at most
//!   `consume_concurrency` at once; failed batches go back to the broker, else to the
//!   retry topic through the inner producer, else are consumed again locally 5 s
//!   later. The committed offset is the smallest offset still in flight.
//! * [`orderly`] consumption: one task per queue, one batch at a time, only while
//!   the broker lock is held (clustering). Newly assigned queues are locked at
//!   once, and a queue whose lock is still held by a previous owner retries every
//!   `lock_retry_interval` rather than waiting for the 20 s lock refresh (RocketMQ
//!   pain point #10). A queue leaving this member waits for its batch in progress,
//!   commits, then unlocks, so the next owner starts exactly after it.
//!
//! This file holds what the parts share: the options, the builder, the consumer
//! handle, its state (`Inner`), offsets commits and resets, and shutdown.
//!
//! Delivery is at-least-once: a queue that changes owner may deliver messages
//! consumed but not yet committed by the previous owner again.

mod concurrent;
mod orderly;
mod pull_loop;
mod rebalance;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use common::properties::keys;
use common::route::MessageQueue;
use common::subscription::{ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, SubscriptionData};
use common::time::now_ms;
use common::{topic, MessageExt};
use remoting::channel::BoxFuture;

use crate::consumer::listener::{
    AsyncFnListener, ConsumeContext, ConsumeOrderlyStatus, ConsumeStatus, DynConcurrent, DynOrderly,
    MessageListenerConcurrently, MessageListenerOrderly,
};
use crate::consumer::offset_store::OffsetStore;
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::pull_api::PullApi;
use crate::consumer::rebalance::{AllocateAveragely, AllocateStrategy};
use crate::consumer::running_info::{DirectResult, ProcessQueueInfo, RunningInfo};
use crate::error::{Error, Result};
use crate::instance::{ClientInstance, ConsumerHandle, REBALANCE_INTERVAL};
use crate::msg_trace::{self, MsgTracer};
use crate::producer::{Producer, ProducerOptions};

/// Push consumer settings (RocketMQ's names in snake case, same defaults).
#[derive(Debug, Clone)]
pub struct PushConsumerOptions {
    /// Messages asked for per pull (`pullBatchSize`).
    pub pull_batch_size: i32,
    /// Messages per listener call (`consumeMessageBatchMaxSize`).
    pub consume_batch_size: usize,
    /// Listener calls in flight at once, across queues (`consumeThreadMax`).
    pub consume_concurrency: usize,
    /// Cached messages per queue above which pulling pauses (`pullThresholdForQueue`).
    pub pull_threshold_for_queue: usize,
    /// Cached body bytes per queue above which pulling pauses
    /// (`pullThresholdSizeForQueue`, 100 MiB).
    pub pull_threshold_size_for_queue: usize,
    /// Pause of a flow-controlled pull loop.
    pub flow_control_delay: Duration,
    /// Deliveries before a message goes to the DLQ (`maxReconsumeTimes`); `None`
    /// means 16 for concurrent listeners and unlimited for orderly ones, as Java.
    pub max_reconsume_times: Option<i32>,
    /// How long the broker may hold a pull (`brokerSuspendMaxTimeMillis`).
    pub suspend: Duration,
    /// Timeout of a long-polling pull (`consumerTimeoutMillisWhenSuspend`).
    pub pull_timeout: Duration,
    /// Pause of a pull loop after an error (`pullTimeDelayMillsWhenException`).
    pub pull_error_delay: Duration,
    /// Period of the rebalance (`rocketmq.client.rebalance.waitInterval`); values
    /// below 20 s add a timer of this consumer's own (tests use it).
    pub rebalance_interval: Duration,
    /// Orderly: period of the lock refresh of every assigned queue.
    pub lock_interval: Duration,
    /// Orderly: retry period of a queue whose lock is held by someone else.
    pub lock_retry_interval: Duration,
    /// Orderly: pause after `SuspendCurrentQueueAMoment` (`suspendCurrentQueueTimeMillis`).
    pub suspend_current_queue_time: Duration,
    /// Pause before consuming again messages that could not be sent back.
    pub reconsume_later_delay: Duration,
    /// How long `shutdown` waits for listener calls in progress.
    pub shutdown_timeout: Duration,
    /// Send the subscription with every pull (`postSubscriptionWhenPull`).
    pub post_subscription_when_pull: bool,
    /// Broadcasting: directory of the local offset files (default
    /// `~/.rocketmq_offsets`).
    pub offset_store_dir: Option<PathBuf>,
    /// Record every consumption in RocketMQ's message-trace format
    /// (`enableMsgTrace`; see [`crate::msg_trace`]).
    pub enable_msg_trace: bool,
    /// The topic those records go to (`customizedTraceTopic`); `None`:
    /// `RMQ_SYS_TRACE_TOPIC`.
    pub customized_trace_topic: Option<String>,
}

impl Default for PushConsumerOptions {
    fn default() -> Self {
        Self {
            pull_batch_size: 32,
            consume_batch_size: 1,
            consume_concurrency: 20,
            pull_threshold_for_queue: 1000,
            pull_threshold_size_for_queue: 100 * 1024 * 1024,
            flow_control_delay: Duration::from_millis(50),
            max_reconsume_times: None,
            suspend: Duration::from_secs(15),
            pull_timeout: Duration::from_secs(30),
            pull_error_delay: Duration::from_secs(3),
            rebalance_interval: REBALANCE_INTERVAL,
            lock_interval: Duration::from_secs(20),
            lock_retry_interval: Duration::from_millis(500),
            suspend_current_queue_time: Duration::from_secs(1),
            reconsume_later_delay: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            post_subscription_when_pull: false,
            offset_store_dir: None,
            enable_msg_trace: false,
            customized_trace_topic: None,
        }
    }
}

#[derive(Clone)]
enum Listener {
    Concurrent(Arc<dyn DynConcurrent>),
    Orderly(Arc<dyn DynOrderly>),
}

/// Builds a [`PushConsumer`]; [`PushConsumerBuilder::start`] validates and starts it.
pub struct PushConsumerBuilder {
    group: String,
    namesrv: Option<Vec<String>>,
    config: config::ClientConfig,
    instance: Option<ClientInstance>,
    subscriptions: Vec<(String, String, String)>,
    model: MessageModel,
    from_where: ConsumeFromWhere,
    consume_timestamp: Option<i64>,
    strategy: Arc<dyn AllocateStrategy>,
    options: PushConsumerOptions,
    listener: Option<Listener>,
}

impl PushConsumerBuilder {
    /// Name servers, `host:port;host:port` (overrides the client config's).
    pub fn namesrv(mut self, addrs: &str) -> Self {
        self.namesrv = Some(addrs.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect());
        self
    }

    /// Client settings (name servers, instance name, intervals).
    pub fn config(mut self, config: config::ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs on an existing instance (shared with producers of the process); the
    /// consumer then leaves it running at shutdown.
    pub fn instance(mut self, instance: ClientInstance) -> Self {
        self.instance = Some(instance);
        self
    }

    /// Subscribes to `topic` with a TAG expression: `*`, `TagA`, `TagA || TagB`.
    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.subscriptions.push((topic.into(), expression.into(), "TAG".to_owned()));
        self
    }

    /// Subscribes to `topic` with an SQL92 expression on message properties (the
    /// broker needs `enablePropertyFilter`).
    pub fn subscribe_sql(mut self, topic: impl Into<String>, sql: impl Into<String>) -> Self {
        self.subscriptions.push((topic.into(), sql.into(), "SQL92".to_owned()));
        self
    }

    /// Subscribes to `topic` through the broker's filter plugin `plugin` (declared in
    /// the broker's `[plugins]`); `argument` reaches the plugin verbatim as the
    /// subscription expression. On the wire the expression type is `PLUGIN:<plugin>`.
    pub fn subscribe_plugin(
        mut self,
        topic: impl Into<String>,
        plugin: impl AsRef<str>,
        argument: impl Into<String>,
    ) -> Self {
        let ty = format!("{}{}", common::subscription::PLUGIN_EXPRESSION_PREFIX, plugin.as_ref());
        self.subscriptions.push((topic.into(), argument.into(), ty));
        self
    }

    /// CLUSTERING (default: the group shares the queues) or BROADCASTING (every
    /// member gets everything).
    pub fn message_model(mut self, model: MessageModel) -> Self {
        self.model = model;
        self
    }

    /// Where a group with no committed offset starts (default LAST_OFFSET).
    ///
    /// As with RocketMQ, a broker answers "offset 0" for a queue the group never
    /// committed while the queue's first message is still in memory, so LAST_OFFSET
    /// on a young queue starts at its beginning. TIMESTAMP asks the broker not to
    /// (RocketMQ 5's `setZeroIfNotFound=false`), so it always searches by time.
    pub fn consume_from(mut self, from_where: ConsumeFromWhere) -> Self {
        self.from_where = from_where;
        self
    }

    /// The time (ms since the epoch) CONSUME_FROM_TIMESTAMP starts at (default:
    /// 30 minutes before start).
    pub fn consume_timestamp(mut self, ms: i64) -> Self {
        self.consume_timestamp = Some(ms);
        self
    }

    /// The queue allocation strategy (default [`AllocateAveragely`]).
    pub fn allocate_strategy(mut self, strategy: Arc<dyn AllocateStrategy>) -> Self {
        self.strategy = strategy;
        self
    }

    pub fn options(mut self, options: PushConsumerOptions) -> Self {
        self.options = options;
        self
    }

    /// Adjusts the options in place: `.with_options(|o| o.consume_batch_size = 4)`.
    pub fn with_options(mut self, f: impl FnOnce(&mut PushConsumerOptions)) -> Self {
        f(&mut self.options);
        self
    }

    /// A concurrent listener.
    pub fn listener(mut self, listener: impl MessageListenerConcurrently) -> Self {
        self.listener = Some(Listener::Concurrent(Arc::new(listener)));
        self
    }

    /// An orderly listener: each queue's messages one batch at a time, in order.
    pub fn listener_orderly(mut self, listener: impl MessageListenerOrderly) -> Self {
        self.listener = Some(Listener::Orderly(Arc::new(listener)));
        self
    }

    /// A concurrent listener from a closure.
    pub fn on_message<F>(self, f: F) -> Self
    where
        F: Fn(&[MessageExt], &ConsumeContext) -> ConsumeStatus + Send + Sync + 'static,
    {
        self.listener(f)
    }

    /// A concurrent listener from an async closure (it gets its own copy of each batch).
    pub fn on_message_async<F, Fut>(self, f: F) -> Self
    where
        F: Fn(Vec<MessageExt>, ConsumeContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ConsumeStatus> + Send + 'static,
    {
        self.listener(AsyncFnListener(f))
    }

    /// An orderly listener from a closure.
    pub fn on_message_orderly<F>(self, f: F) -> Self
    where
        F: Fn(&[MessageExt], &ConsumeContext) -> ConsumeOrderlyStatus + Send + Sync + 'static,
    {
        self.listener_orderly(f)
    }

    /// Validates, registers with the brokers and does the first rebalance.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`]: no listener, no subscription, a bad group or
    /// topic name, or the group already has a consumer on the instance.
    pub async fn start(self) -> Result<PushConsumer> {
        let listener =
            self.listener.ok_or_else(|| Error::InvalidArgument("a push consumer needs a listener".into()))?;
        topic::validate_topic(&self.group)
            .map_err(|e| Error::InvalidArgument(format!("group `{}`: {e}", self.group)))?;
        if self.group == common::topic::CLIENT_INNER_PRODUCER_GROUP || self.group == "DEFAULT_CONSUMER" {
            return Err(Error::InvalidArgument(format!("`{}` is reserved", self.group)));
        }
        if self.subscriptions.is_empty() {
            return Err(Error::InvalidArgument("a push consumer needs at least one subscription".into()));
        }
        if self.options.consume_batch_size == 0
            || self.options.consume_concurrency == 0
            || self.options.pull_batch_size <= 0
        {
            return Err(Error::InvalidArgument("batch sizes and concurrency must be positive".into()));
        }
        let version = now_ms();
        let mut subs: Vec<Arc<SubscriptionData>> = Vec::new();
        for (t, expr, ty) in &self.subscriptions {
            topic::validate_topic(t).map_err(|e| Error::InvalidArgument(format!("topic `{t}`: {e}")))?;
            subs.retain(|s| &s.topic != t);
            subs.push(Arc::new(SubscriptionData::new(t.clone(), expr, ty, version)));
        }
        let retry = topic::retry_topic(&self.group);
        if self.model == MessageModel::Clustering && !subs.iter().any(|s| s.topic == retry) {
            subs.push(Arc::new(SubscriptionData::new(retry, "*", "TAG", version)));
        }
        let owns_instance = self.instance.is_none();
        let instance = self.instance.unwrap_or_else(|| ClientInstance::new(self.config, self.namesrv));
        let api = PullApi::new(instance.clone());
        let mut store = match self.model {
            MessageModel::Clustering => OffsetStore::remote(api.clone(), self.group.clone()),
            MessageModel::Broadcasting => OffsetStore::local(
                OffsetStore::default_local_path(
                    self.options.offset_store_dir.as_deref(),
                    instance.client_id(),
                    &self.group,
                ),
                self.group.clone(),
            ),
        };
        store.set_strict_query(self.from_where == ConsumeFromWhere::Timestamp);
        store.load()?;
        let inner_producer = (self.model == MessageModel::Clustering).then(|| {
            Producer::with_instance(
                common::topic::CLIENT_INNER_PRODUCER_GROUP,
                instance.clone(),
                ProducerOptions::default(),
            )
        });
        let msg_trace = self.options.enable_msg_trace.then(|| {
            let topic = msg_trace::trace_topic(self.options.customized_trace_topic.as_deref());
            MsgTracer::start(&instance, &self.group, msg_trace::Side::Consume, topic)
        });
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(self.options.consume_concurrency)),
            group: self.group,
            instance,
            owns_instance,
            api,
            model: self.model,
            from_where: self.from_where,
            consume_timestamp: self.consume_timestamp.unwrap_or_else(|| now_ms() - 30 * 60 * 1000),
            strategy: self.strategy,
            subs,
            listener,
            store,
            opts: self.options,
            table: Mutex::default(),
            rebalance_lock: tokio::sync::Mutex::new(()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            inner_producer,
            msg_trace,
            shut_down: AtomicBool::new(false),
            started_ms: now_ms(),
        });
        let handle = Arc::new(Handle { group: inner.group.clone(), inner: Arc::downgrade(&inner) });
        if !inner.instance.try_register_consumer(handle) {
            return Err(Error::InvalidArgument(format!(
                "group `{}` already has a consumer on this client instance",
                inner.group
            )));
        }
        inner.instance.start();
        for s in &inner.subs {
            if let Err(e) = inner.instance.route(&s.topic).await {
                // The topic may be created later; rebalances keep asking.
                debug!(group = %inner.group, topic = %s.topic, error = %e, "no route yet");
            }
        }
        inner.instance.send_heartbeat_to_all().await;
        inner.spawn_timers();
        inner.rebalance().await;
        info!(group = %inner.group, client_id = %inner.instance.client_id(), model = ?inner.model, "push consumer started");
        Ok(PushConsumer { inner })
    }
}

/// A push consumer. Cheap to clone; clones share the consumer. Call
/// [`PushConsumer::shutdown`] to stop it: its tasks keep it alive until then.
#[derive(Clone)]
pub struct PushConsumer {
    inner: Arc<Inner>,
}

impl PushConsumer {
    /// A builder for a consumer of `group`.
    pub fn builder(group: impl Into<String>) -> PushConsumerBuilder {
        PushConsumerBuilder {
            group: group.into(),
            namesrv: None,
            config: config::ClientConfig::default(),
            instance: None,
            subscriptions: Vec::new(),
            model: MessageModel::Clustering,
            from_where: ConsumeFromWhere::LastOffset,
            consume_timestamp: None,
            strategy: Arc::new(AllocateAveragely),
            options: PushConsumerOptions::default(),
            listener: None,
        }
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    pub fn client_id(&self) -> &str {
        self.inner.instance.client_id()
    }

    pub fn instance(&self) -> &ClientInstance {
        &self.inner.instance
    }

    pub fn message_model(&self) -> MessageModel {
        self.inner.model
    }

    /// The queues this member consumes now (all subscribed topics, the retry
    /// topic included), sorted.
    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = self.inner.table.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// The consumer's offsets (in memory; committed every
    /// `persist_consumer_offset_interval`).
    pub fn offset_store(&self) -> &OffsetStore {
        &self.inner.store
    }

    /// Pulled messages whose body could not be decoded (corrupt compressed bytes, an
    /// undefined compression type). The listener never sees them; in clustering mode
    /// they are sent to the group's DLQ.
    pub fn undecodable_messages(&self) -> u64 {
        self.inner.api.undecodable_messages()
    }

    /// Rebalances now instead of waiting for the timer or a notification.
    pub async fn rebalance(&self) {
        self.inner.rebalance().await;
    }

    /// Commits the offsets of every assigned queue now.
    pub async fn persist_offsets(&self) {
        self.inner.persist_all().await;
    }

    /// Stops pulling, waits (up to `shutdown_timeout`) for listener calls in
    /// progress, commits offsets, releases orderly locks and leaves the group.
    /// Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}

struct Inner {
    group: String,
    instance: ClientInstance,
    owns_instance: bool,
    api: PullApi,
    opts: PushConsumerOptions,
    model: MessageModel,
    from_where: ConsumeFromWhere,
    consume_timestamp: i64,
    strategy: Arc<dyn AllocateStrategy>,
    /// Fixed at start: user subscriptions plus the retry topic (clustering).
    subs: Vec<Arc<SubscriptionData>>,
    listener: Listener,
    store: OffsetStore,
    table: Mutex<HashMap<MessageQueue, Arc<ProcessQueue>>>,
    /// Listener calls in flight.
    permits: Arc<Semaphore>,
    /// Rebalances and offset resets change the table one at a time.
    rebalance_lock: tokio::sync::Mutex<()>,
    cancel: CancellationToken,
    /// Listener tasks, awaited at shutdown.
    tasks: TaskTracker,
    inner_producer: Option<Producer>,
    /// The message-trace recorder, when `enable_msg_trace` is set.
    msg_trace: Option<Arc<MsgTracer>>,
    shut_down: AtomicBool,
    /// When the consumer started (PROP_CONSUMER_START_TIMESTAMP).
    started_ms: i64,
}

/// A listener call's spans and message-trace records in progress.
pub(super) struct Processing {
    spans: Vec<opentelemetry::global::BoxedSpan>,
    records: Option<msg_trace::Consumption>,
}

impl Inner {
    /// Starts the spans and `SubBefore` records of a listener call on `msgs`.
    pub(super) fn begin_processing(&self, msgs: &[MessageExt]) -> Processing {
        Processing {
            spans: crate::trace::start_process(msgs, &self.group),
            records: self.msg_trace.as_ref().map(|t| t.on_consume(&self.instance, msgs)),
        }
    }

    /// Ends them with the listener's verdict.
    pub(super) fn end_processing(&self, p: Processing, success: bool) {
        crate::trace::end_process(p.spans, success);
        if let (Some(tracer), Some(records)) = (&self.msg_trace, p.records) {
            tracer.on_consumed(records, success);
        }
    }
}

/// The instance's view of the consumer (weak: dropping the consumer ends it).
struct Handle {
    group: String,
    inner: Weak<Inner>,
}

impl ConsumerHandle for Handle {
    fn group(&self) -> String {
        self.group.clone()
    }

    fn consumer_data(&self) -> ConsumerData {
        match self.inner.upgrade() {
            Some(i) => i.consumer_data(),
            None => ConsumerData { group_name: self.group.clone(), ..ConsumerData::default() },
        }
    }

    fn rebalance(&self) -> BoxFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some(i) = inner.upgrade() {
                i.rebalance().await;
            }
        })
    }

    fn persist_offsets(&self) -> BoxFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some(i) = inner.upgrade() {
                i.persist_all().await;
            }
        })
    }

    fn reset_offsets(&self, topic: String, offsets: Vec<(MessageQueue, i64)>) -> BoxFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some(i) = inner.upgrade() {
                i.reset_offsets(&topic, offsets).await;
            }
        })
    }

    fn running_info(&self) -> RunningInfo {
        let Some(i) = self.inner.upgrade() else { return RunningInfo::default() };
        let mut properties = BTreeMap::new();
        let mut prop = |k: &str, v: String| {
            properties.insert(k.to_owned(), v);
        };
        prop("PROP_CONSUME_TYPE", ConsumeType::ConsumePassively.as_str().to_owned());
        prop("PROP_CONSUMEORDERLY", i.is_orderly().to_string());
        prop("PROP_THREADPOOL_CORE_SIZE", i.opts.consume_concurrency.to_string());
        prop("PROP_CONSUMER_START_TIMESTAMP", i.started_ms.to_string());
        prop("messageModel", i.model.as_str().to_owned());
        prop("consumeFromWhere", i.from_where.as_str().to_owned());
        let table: Vec<(MessageQueue, Arc<ProcessQueue>)> =
            i.table.lock().iter().map(|(mq, pq)| (mq.clone(), pq.clone())).collect();
        let mut queues: Vec<(MessageQueue, ProcessQueueInfo)> = table
            .into_iter()
            .map(|(mq, pq)| {
                let (count, bytes) = pq.cached();
                let info = ProcessQueueInfo {
                    commit_offset: i.store.read(&mq).unwrap_or(-1),
                    cached_msg_count: i32::try_from(count).unwrap_or(i32::MAX),
                    cached_msg_size_in_mib: i32::try_from(bytes / (1024 * 1024)).unwrap_or(i32::MAX),
                    locked: pq.is_locked(),
                    droped: pq.is_dropped(),
                    ..ProcessQueueInfo::default()
                };
                (mq, info)
            })
            .collect();
        queues.sort_by(|a, b| a.0.cmp(&b.0));
        RunningInfo { properties, subscriptions: i.subs.iter().map(|s| (**s).clone()).collect(), queues }
    }

    fn queue_offsets(&self, topic: &str) -> Vec<(MessageQueue, i64)> {
        let Some(i) = self.inner.upgrade() else { return Vec::new() };
        let mqs: Vec<MessageQueue> = i.table.lock().keys().filter(|mq| mq.topic == topic).cloned().collect();
        let mut out: Vec<(MessageQueue, i64)> =
            mqs.into_iter().filter_map(|mq| Some((mq.clone(), i.store.read(&mq)?))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn consume_directly(&self, msg: MessageExt, broker_name: String) -> BoxFuture<Option<DirectResult>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let i = inner.upgrade()?;
            let mq = MessageQueue::new(msg.topic.clone(), broker_name, msg.queue_id);
            let ctx = ConsumeContext::new(mq);
            let started = std::time::Instant::now();
            let msgs = [msg];
            let (order, result) = match &i.listener {
                Listener::Concurrent(l) => {
                    let r = match l.consume(&msgs, &ctx).await {
                        ConsumeStatus::Success => "CR_SUCCESS",
                        ConsumeStatus::ReconsumeLater => "CR_LATER",
                    };
                    (false, r)
                }
                Listener::Orderly(l) => {
                    let r = match l.consume(&msgs, &ctx).await {
                        ConsumeOrderlyStatus::Success => "CR_SUCCESS",
                        ConsumeOrderlyStatus::SuspendCurrentQueueAMoment => "CR_LATER",
                    };
                    (true, r)
                }
            };
            Some(DirectResult {
                order,
                auto_commit: true,
                consume_result: result,
                remark: None,
                spent_time_mills: started.elapsed().as_millis() as i64,
            })
        })
    }
}

/// Sleeps unless `cancel` fires first; false when cancelled.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

impl Inner {
    fn is_orderly(&self) -> bool {
        matches!(self.listener, Listener::Orderly(_))
    }

    /// Orderly consumers of a clustering group need broker locks.
    fn needs_lock(&self) -> bool {
        self.is_orderly() && self.model == MessageModel::Clustering
    }

    fn max_reconsume_times(&self) -> i32 {
        match self.opts.max_reconsume_times {
            Some(n) => n,
            None if self.is_orderly() => i32::MAX,
            None => 16,
        }
    }

    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            group_name: self.group.clone(),
            consume_type: ConsumeType::ConsumePassively,
            message_model: self.model,
            consume_from_where: self.from_where,
            subscription_data_set: self.subs.iter().map(|s| (**s).clone()).collect(),
            unit_mode: false,
        }
    }

    fn spawn_timers(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        if self.opts.rebalance_interval < REBALANCE_INTERVAL {
            spawn_periodic(weak.clone(), self.cancel.clone(), self.opts.rebalance_interval, "rebalance", |i| {
                Box::pin(async move { i.rebalance().await })
            });
        }
        if self.needs_lock() {
            spawn_periodic(weak, self.cancel.clone(), self.opts.lock_interval, "lock_all", |i| {
                Box::pin(async move { i.lock_all().await })
            });
        }
    }

    /// Messages of `%RETRY%<group>` get back the topic they were first sent to.
    fn restore_retry_topic(&self, msgs: &mut [MessageExt]) {
        let retry = topic::retry_topic(&self.group);
        for m in msgs {
            if m.topic == retry {
                if let Some(t) = m.properties.get(keys::RETRY_TOPIC) {
                    m.topic = t.to_owned();
                }
            }
        }
    }

    fn assigned(&self) -> Vec<MessageQueue> {
        self.table.lock().keys().cloned().collect()
    }

    /// Periodic commit. Serialized with rebalances, so a commit of a queue being
    /// handed over cannot overtake the final one made on its removal.
    async fn persist_all(&self) {
        let _serial = self.rebalance_lock.lock().await;
        self.store.persist_all(&self.assigned()).await;
    }

    /// An administrator moved the group's offsets (RESET_CONSUMER_CLIENT_OFFSET):
    /// queues of this member restart from the given offsets, whatever was in flight.
    async fn reset_offsets(self: &Arc<Self>, topic_name: &str, offsets: Vec<(MessageQueue, i64)>) {
        let _serial = self.rebalance_lock.lock().await;
        let Some(sub) = self.subs.iter().find(|s| s.topic == topic_name).cloned() else { return };
        for (mq, offset) in offsets {
            let Some(old) = self.table.lock().get(&mq).cloned() else { continue };
            old.drop_queue(true);
            if self.is_orderly() {
                // Let a batch in progress finish before the new loop delivers again.
                let _ = tokio::time::timeout(Duration::from_secs(1), old.consume_lock.lock()).await;
            }
            self.store.update(&mq, offset, false);
            if let Err(e) = self.store.persist(&mq).await {
                debug!(group = %self.group, topic = %mq.topic, queue_id = mq.queue_id, error = %e, "offset commit after reset failed");
            }
            let pq = Arc::new(ProcessQueue::new(mq.clone(), self.cancel.child_token()));
            pq.set_locked(old.is_locked());
            info!(group = %self.group, topic = %mq.topic, queue_id = mq.queue_id, offset, "offset reset; restarting the queue");
            self.table.lock().insert(mq, pq.clone());
            self.spawn_pull_loop(pq, sub.clone(), Some(offset));
        }
    }

    async fn shutdown(self: &Arc<Self>) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let _serial = self.rebalance_lock.lock().await;
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(self.opts.shutdown_timeout, self.tasks.wait()).await.is_err() {
            warn!(group = %self.group, "listener calls still running at shutdown; their offsets are not committed");
        }
        let pqs: Vec<Arc<ProcessQueue>> = self.table.lock().drain().map(|(_, p)| p).collect();
        let mqs: Vec<MessageQueue> = pqs.iter().map(|p| p.mq.clone()).collect();
        match self.model {
            MessageModel::Clustering => {
                for mq in &mqs {
                    if let Err(e) = self.store.persist(mq).await {
                        warn!(group = %self.group, topic = %mq.topic, queue_id = mq.queue_id, error = %e, "offset commit at shutdown failed");
                    }
                }
            }
            MessageModel::Broadcasting => self.store.persist_all(&mqs).await,
        }
        if self.needs_lock() {
            let mut by_broker: BTreeMap<&str, Vec<MessageQueue>> = BTreeMap::new();
            for pq in pqs.iter().filter(|p| p.is_locked()) {
                by_broker.entry(pq.mq.broker_name.as_str()).or_default().push(pq.mq.clone());
            }
            for (broker, mqs) in by_broker {
                if let Err(e) = self.api.unlock_batch(&self.group, broker, &mqs, false).await {
                    debug!(group = %self.group, broker_name = broker, error = %e, "unlock at shutdown failed");
                }
            }
        }
        if let Some(tracer) = &self.msg_trace {
            tracer.shutdown().await;
        }
        let producer_group =
            (self.owns_instance && self.inner_producer.is_some()).then_some(common::topic::CLIENT_INNER_PRODUCER_GROUP);
        self.instance.unregister(producer_group, Some(&self.group)).await;
        if self.owns_instance {
            self.instance.shutdown();
        }
        info!(group = %self.group, "push consumer shut down");
    }
}

fn spawn_periodic<F>(weak: Weak<Inner>, cancel: CancellationToken, period: Duration, name: &'static str, f: F)
where
    F: Fn(Arc<Inner>) -> BoxFuture<()> + Send + 'static,
{
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate; start already did the work
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                f(inner).await;
            }
        }
        .instrument(tracing::info_span!("consumer_task", task = name)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn start_validates_its_arguments() {
        let no_listener = PushConsumer::builder("G").namesrv("127.0.0.1:1").subscribe("T", "*").start().await;
        assert!(matches!(no_listener, Err(Error::InvalidArgument(_))));
        let no_sub = PushConsumer::builder("G")
            .namesrv("127.0.0.1:1")
            .on_message(|_: &[MessageExt], _: &ConsumeContext| ConsumeStatus::Success)
            .start()
            .await;
        assert!(matches!(no_sub, Err(Error::InvalidArgument(_))));
        let bad_group = PushConsumer::builder("bad group")
            .subscribe("T", "*")
            .on_message(|_: &[MessageExt], _: &ConsumeContext| ConsumeStatus::Success)
            .start()
            .await;
        assert!(matches!(bad_group, Err(Error::InvalidArgument(_))));
    }
}
