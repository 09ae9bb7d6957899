//! The producer (RocketMQ's `DefaultMQProducer`).
//!
//! A sync send picks a queue round-robin over the topic's writable queues, skipping
//! brokers that recently failed ([`FaultTolerance`]), and on a network error or a
//! retryable broker code tries again on another broker — `1 + retry_times` attempts
//! within one `send_timeout` budget. Every message gets a UNIQ_KEY (kept across
//! retries, so a retried message keeps its msgId); bodies over
//! `compress_over` bytes are zlib-compressed and flagged as RocketMQ's ZLIB type
//! ([`crate::compression`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{debug, warn};

use common::properties::keys;
use common::route::MessageQueue;
use common::sysflag::message as sysflag;
use common::{Message, ResponseCode};
use remoting::header::broker::{SendMessageRequestHeaderV2, SendMessageResponseHeader};
use remoting::{RemotingCommand, RequestCode};

use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::instance::ClientInstance;
use crate::msg_trace::{self, MsgTracer};

/// Producer settings (RocketMQ's names in snake case).
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Whole budget of one send, retries included (`sendMsgTimeout`).
    pub send_timeout: Duration,
    /// Extra attempts of a sync send on another broker (`retryTimesWhenSendFailed`).
    pub retry_times_when_send_failed: usize,
    /// Extra attempts of an async send (`retryTimesWhenSendAsyncFailed`).
    pub retry_times_when_send_async_failed: usize,
    /// Bodies larger than this are zlib-compressed (`compressMsgBodyOverHowmuch`).
    pub compress_over: usize,
    /// Largest body accepted (`maxMessageSize`).
    pub max_message_size: usize,
    /// Queues asked for when the broker auto-creates the topic.
    pub default_topic_queue_nums: i32,
    /// Retry when the broker stored the message but not as asked (flush/slave timeouts).
    pub retry_another_broker_when_not_store_ok: bool,
    /// How long a broker that failed a send is avoided.
    pub fault_isolation: Duration,
    /// Record every acknowledged send in RocketMQ's message-trace format
    /// (`enableMsgTrace`; see [`crate::msg_trace`]).
    pub enable_msg_trace: bool,
    /// The topic those records go to (`customizedTraceTopic`); `None`:
    /// `RMQ_SYS_TRACE_TOPIC`.
    pub customized_trace_topic: Option<String>,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            send_timeout: Duration::from_secs(3),
            retry_times_when_send_failed: 2,
            retry_times_when_send_async_failed: 2,
            compress_over: 4096,
            max_message_size: 4 * 1024 * 1024,
            default_topic_queue_nums: 4,
            retry_another_broker_when_not_store_ok: false,
            fault_isolation: Duration::from_secs(30),
            enable_msg_trace: false,
            customized_trace_topic: None,
        }
    }
}

/// Whether the broker stored the message as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    SendOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

/// The outcome of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// The message id applications use: the UNIQ_KEY (comma-joined for batches).
    pub msg_id: String,
    /// The broker's id of the stored record(s).
    pub offset_msg_id: String,
    pub message_queue: MessageQueue,
    pub queue_offset: i64,
    pub transaction_id: Option<String>,
    /// The broker's region (`MSG_REGION`; `DefaultRegion` when it names none).
    pub region_id: String,
    /// Whether the broker's region records message traces (`TRACE_ON`).
    pub trace_on: bool,
}

/// Chooses a queue for a message (RocketMQ's `MessageQueueSelector`). Closures
/// `Fn(&[MessageQueue], &Message) -> usize` are selectors.
pub trait QueueSelector: Send + Sync {
    /// Index into `queues` (taken modulo its length).
    fn select(&self, queues: &[MessageQueue], msg: &Message) -> usize;

    /// [`select`](QueueSelector::select) for selectors that may refuse to choose
    /// (a plugin selector with failure policy `reject`): an error fails the send.
    /// [`Producer::send_with_selector`] calls this; the default never fails.
    ///
    /// # Errors
    /// The selector cannot choose a queue for `msg`.
    fn try_select(&self, queues: &[MessageQueue], msg: &Message) -> Result<usize> {
        Ok(self.select(queues, msg))
    }
}

impl<F: Fn(&[MessageQueue], &Message) -> usize + Send + Sync> QueueSelector for F {
    fn select(&self, queues: &[MessageQueue], msg: &Message) -> usize {
        self(queues, msg)
    }
}

/// Selects by the Java hash of a key (`SelectMessageQueueByHash`): equal keys share
/// a queue, which is what ordered messages need.
pub struct SelectByHash(pub String);

impl QueueSelector for SelectByHash {
    fn select(&self, queues: &[MessageQueue], _: &Message) -> usize {
        (common::hash::java_string_hash(&self.0).unsigned_abs() as usize) % queues.len().max(1)
    }
}

/// Selects a random queue (`SelectMessageQueueByRandom`).
pub struct SelectByRandom;

impl QueueSelector for SelectByRandom {
    fn select(&self, queues: &[MessageQueue], _: &Message) -> usize {
        rand::random::<usize>() % queues.len().max(1)
    }
}

/// Brokers to avoid for a while after a failure (RocketMQ's latency fault
/// tolerance, simplified to what matters: a broker that just failed is skipped
/// until its isolation ends).
#[derive(Default)]
pub struct FaultTolerance {
    until: Mutex<HashMap<String, Instant>>,
}

impl FaultTolerance {
    pub fn mark_failed(&self, broker: &str, isolation: Duration) {
        self.until.lock().insert(broker.to_owned(), Instant::now() + isolation);
    }

    pub fn mark_ok(&self, broker: &str) {
        self.until.lock().remove(broker);
    }

    pub fn is_available(&self, broker: &str) -> bool {
        self.until.lock().get(broker).is_none_or(|t| Instant::now() >= *t)
    }
}

struct Inner {
    instance: ClientInstance,
    /// Created by this producer (not shared): shut down with it.
    owns_instance: bool,
    group: String,
    opts: ProducerOptions,
    next_queue: AtomicUsize,
    faults: FaultTolerance,
    /// The message-trace recorder, when `enable_msg_trace` is set.
    msg_trace: Option<Arc<MsgTracer>>,
    /// An inner producer of the SDK (message trace): no spans, no trace records.
    internal: bool,
}

/// A producer. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// A producer of `group` with name servers from `config` (or `namesrv` set in
    /// code, which wins), started at once.
    pub fn new(
        group: impl Into<String>,
        config: config::ClientConfig,
        namesrv: Option<Vec<String>>,
        opts: ProducerOptions,
    ) -> Self {
        Self::build(group, ClientInstance::new(config, namesrv), opts, true, false)
    }

    /// A producer on an existing instance (shared with consumers of the process);
    /// [`Producer::shutdown`] leaves the instance running.
    pub fn with_instance(group: impl Into<String>, instance: ClientInstance, opts: ProducerOptions) -> Self {
        Self::build(group, instance, opts, false, false)
    }

    /// An inner producer of the SDK on `instance`: it records no spans and no trace.
    pub(crate) fn internal(group: impl Into<String>, instance: ClientInstance) -> Self {
        Self::build(group, instance, ProducerOptions::default(), false, true)
    }

    fn build(
        group: impl Into<String>,
        instance: ClientInstance,
        opts: ProducerOptions,
        owns_instance: bool,
        internal: bool,
    ) -> Self {
        let group = group.into();
        instance.register_producer(&group, None);
        instance.start();
        let next_queue = AtomicUsize::new(rand::random::<u16>() as usize);
        let msg_trace = (opts.enable_msg_trace && !internal).then(|| {
            let topic = msg_trace::trace_topic(opts.customized_trace_topic.as_deref());
            MsgTracer::start(&instance, &group, msg_trace::Side::Produce, topic)
        });
        Self {
            inner: Arc::new(Inner {
                instance,
                owns_instance,
                group,
                opts,
                next_queue,
                faults: FaultTolerance::default(),
                msg_trace,
                internal,
            }),
        }
    }

    /// A producer with the defaults, talking to `namesrv` (`host:port;host:port`).
    pub fn connect(group: impl Into<String>, namesrv: &str) -> Self {
        let addrs = namesrv.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        Self::new(group, config::ClientConfig::default(), Some(addrs), ProducerOptions::default())
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    pub fn instance(&self) -> &ClientInstance {
        &self.inner.instance
    }

    pub fn options(&self) -> &ProducerOptions {
        &self.inner.opts
    }

    /// The brokers this producer currently avoids after failures.
    pub fn faults(&self) -> &FaultTolerance {
        &self.inner.faults
    }

    /// The message-trace recorder, when `enable_msg_trace` is set.
    pub fn msg_tracer(&self) -> Option<&Arc<MsgTracer>> {
        self.inner.msg_trace.as_ref()
    }

    /// Sends and waits for the broker's answer, retrying on other brokers.
    ///
    /// # Errors
    /// Invalid message, no route, or every attempt failed.
    pub async fn send(&self, msg: Message) -> Result<SendResult> {
        let retries = self.inner.opts.retry_times_when_send_failed;
        self.send_with_retries(msg, retries, None).await
    }

    /// Sends to one queue, without retrying elsewhere.
    ///
    /// # Errors
    /// Invalid message, or the attempt failed.
    pub async fn send_to_queue(&self, msg: Message, mq: &MessageQueue) -> Result<SendResult> {
        let mut msg = self.prepare(msg)?;
        let deadline = Instant::now() + self.inner.opts.send_timeout;
        self.send_kernel(&mut msg, mq, deadline, RequestCode::SEND_MESSAGE_V2).await
    }

    /// Sends to the queue `selector` picks among the topic's writable queues (ordered
    /// messages: equal keys → same queue). No retry on another queue, as in RocketMQ.
    ///
    /// # Errors
    /// Invalid message, no route, the selector refused ([`QueueSelector::try_select`]),
    /// or the attempt failed.
    pub async fn send_with_selector(&self, msg: Message, selector: &dyn QueueSelector) -> Result<SendResult> {
        let queues = self.inner.instance.publish_queues(&msg.topic, self.inner.opts.default_topic_queue_nums).await?;
        let idx = selector.try_select(&queues, &msg)? % queues.len();
        let mq = queues[idx].clone();
        self.send_to_queue(msg, &mq).await
    }

    /// Sends in the background and calls `callback` with the outcome (RocketMQ's
    /// async send); the future-style async send is [`Producer::send`] itself.
    pub fn send_with_callback(&self, msg: Message, callback: impl FnOnce(Result<SendResult>) + Send + 'static) {
        let p = self.clone();
        tokio::spawn(async move {
            let retries = p.inner.opts.retry_times_when_send_async_failed;
            callback(p.send_with_retries(msg, retries, None).await);
        });
    }

    /// Sends without waiting for any answer (loss-tolerant bulk data).
    ///
    /// # Errors
    /// Invalid message, no route, or the request could not be written.
    pub async fn send_oneway(&self, msg: Message) -> Result<()> {
        let mut msg = self.prepare(msg)?;
        let queues = self.inner.instance.publish_queues(&msg.topic, self.inner.opts.default_topic_queue_nums).await?;
        let mq = self.pick_queue(&queues, None);
        let addr = self.broker_addr(&mq).await?;
        let req = self.build_request(&mut msg, &mq, RequestCode::SEND_MESSAGE_V2);
        self.inner.instance.oneway(&addr, req).await
    }

    /// Sends messages of one topic as one SEND_BATCH_MESSAGE (stored consecutively in
    /// one queue).
    ///
    /// # Errors
    /// Mixed topics, delayed or transactional messages, too large a batch, or every
    /// attempt failed.
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult> {
        let Some(first) = msgs.first() else { return Err(Error::InvalidArgument("empty batch".into())) };
        let topic_name = first.topic.clone();
        let mut prepared = Vec::with_capacity(msgs.len());
        let mut ids = Vec::with_capacity(msgs.len());
        for m in msgs {
            if m.topic != topic_name {
                return Err(Error::InvalidArgument("every message of a batch must have the same topic".into()));
            }
            if m.delay_level() > 0 {
                return Err(Error::InvalidArgument("batch messages cannot be delayed".into()));
            }
            if common::topic::is_retry_topic(&m.topic) {
                return Err(Error::InvalidArgument("batch messages cannot go to a retry topic".into()));
            }
            let m = self.prepare(m)?;
            ids.push(m.uniq_key().unwrap_or_default().to_owned());
            prepared.push(m);
        }
        let body = common::batch::encode(&prepared);
        if body.len() > self.inner.opts.max_message_size {
            return Err(Error::InvalidArgument(format!("batch of {} bytes exceeds max_message_size", body.len())));
        }
        let mut batch = Message { topic: topic_name, body, ..Message::default() };
        batch.properties.insert(keys::WAIT_STORE_MSG_OK, "true");
        let (started_ms, started) = (common::time::now_ms(), Instant::now());
        let mut result = self
            .send_attempts(&mut batch, self.inner.opts.retry_times_when_send_failed, RequestCode::SEND_BATCH_MESSAGE)
            .await?;
        result.msg_id = ids.join(",");
        if let Some(tracer) = &self.inner.msg_trace {
            let broker = self.inner.instance.master_addr(&result.message_queue.broker_name).unwrap_or_default();
            tracer.on_send_batch(&prepared, started_ms, started.elapsed(), &broker, &result);
        }
        Ok(result)
    }

    /// Sends the message-trace records still queued, unregisters from the brokers
    /// and stops the background tasks (of an instance this producer created).
    pub async fn shutdown(&self) {
        if let Some(tracer) = &self.inner.msg_trace {
            tracer.shutdown().await;
        }
        self.inner.instance.unregister(Some(&self.inner.group), None).await;
        if self.inner.owns_instance {
            self.inner.instance.shutdown();
        }
    }

    /// Validates the message and stamps UNIQ_KEY; compresses a large body.
    fn prepare(&self, mut msg: Message) -> Result<Message> {
        common::topic::validate_topic(&msg.topic)
            .map_err(|e| Error::InvalidArgument(format!("topic `{}`: {e}", msg.topic)))?;
        if msg.body.is_empty() {
            return Err(Error::InvalidArgument("the message body is empty".into()));
        }
        if msg.body.len() > self.inner.opts.max_message_size {
            return Err(Error::InvalidArgument(format!(
                "the message body is {} bytes; max_message_size is {}",
                msg.body.len(),
                self.inner.opts.max_message_size
            )));
        }
        if msg.uniq_key().is_none() {
            msg.properties.insert(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, self.inner.instance.next_uniq_id());
        }
        Ok(msg)
    }

    pub(crate) async fn send_with_retries(
        &self,
        msg: Message,
        retries: usize,
        _hint: Option<()>,
    ) -> Result<SendResult> {
        let mut msg = self.prepare(msg)?;
        self.send_attempts(&mut msg, retries, RequestCode::SEND_MESSAGE_V2).await
    }

    /// [`Producer::send_attempts_untraced`] inside the send's span.
    async fn send_attempts(&self, msg: &mut Message, retries: usize, code: RequestCode) -> Result<SendResult> {
        if self.inner.internal {
            return self.send_attempts_untraced(msg, retries, code).await;
        }
        let span = crate::trace::start_send(msg, &self.inner.group, self.inner.instance.client_id());
        let result = self.send_attempts_untraced(msg, retries, code).await;
        match &result {
            Ok(r) => crate::trace::end_send(span, Ok((&r.message_queue.broker_name, r.message_queue.queue_id))),
            Err(e) => crate::trace::end_send(span, Err(&e.to_string())),
        }
        result
    }

    async fn send_attempts_untraced(&self, msg: &mut Message, retries: usize, code: RequestCode) -> Result<SendResult> {
        let deadline = Instant::now() + self.inner.opts.send_timeout;
        let attempts = 1 + retries;
        let mut last_broker: Option<String> = None;
        let mut last_err = None;
        let mut made = 0;
        for attempt in 0..attempts {
            if Instant::now() >= deadline {
                break;
            }
            let queues =
                match self.inner.instance.publish_queues(&msg.topic, self.inner.opts.default_topic_queue_nums).await {
                    Ok(q) => q,
                    // Nothing was sent: no route, no name server. Say so as it is
                    // (after asking again: a set between masters has no writable
                    // queue until its new master registers).
                    Err(e) if made == 0 => {
                        self.inner.instance.refresh_route_after_failure(&msg.topic).await;
                        return Err(e);
                    }
                    Err(e) => {
                        last_err = Some(e);
                        break;
                    }
                };
            let mq = self.pick_queue(&queues, last_broker.as_deref());
            made += 1;
            match self.send_kernel(msg, &mq, deadline, code).await {
                Ok(r) => {
                    self.inner.faults.mark_ok(&mq.broker_name);
                    if r.status != SendStatus::SendOk
                        && self.inner.opts.retry_another_broker_when_not_store_ok
                        && attempt + 1 < attempts
                    {
                        last_broker = Some(mq.broker_name.clone());
                        last_err = None;
                        continue;
                    }
                    return Ok(r);
                }
                Err(e) => {
                    let retryable = is_retryable(&e);
                    if matches!(e, Error::Remoting(_) | Error::Timeout(_) | Error::NoBrokerAddr(_) | Error::Io(_)) {
                        // The broker may be gone for good: learn its successor now.
                        self.inner.instance.refresh_route_after_failure(&msg.topic).await;
                    }
                    debug!(topic = %msg.topic, broker_name = %mq.broker_name, attempt, error = %e, retryable, "send attempt failed");
                    self.inner.faults.mark_failed(&mq.broker_name, self.inner.opts.fault_isolation);
                    last_broker = Some(mq.broker_name.clone());
                    if !retryable {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        let last = last_err.unwrap_or(Error::Timeout(self.inner.opts.send_timeout));
        warn!(topic = %msg.topic, attempts = made, error = %last, "send failed");
        Err(Error::SendFailed { topic: msg.topic.clone(), attempts: made, last: Box::new(last) })
    }

    /// Round-robin, skipping isolated brokers and the broker of the previous attempt.
    fn pick_queue(&self, queues: &[MessageQueue], avoid: Option<&str>) -> MessageQueue {
        let n = queues.len();
        let start = self.inner.next_queue.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let mq = &queues[(start + i) % n];
            if avoid == Some(mq.broker_name.as_str()) || !self.inner.faults.is_available(&mq.broker_name) {
                continue;
            }
            return mq.clone();
        }
        // Everything is avoided: prefer another broker than the last, else anything.
        for i in 0..n {
            let mq = &queues[(start + i) % n];
            if avoid != Some(mq.broker_name.as_str()) {
                return mq.clone();
            }
        }
        queues[start % n].clone()
    }

    async fn broker_addr(&self, mq: &MessageQueue) -> Result<String> {
        if let Some(a) = self.inner.instance.master_addr(&mq.broker_name) {
            return Ok(a);
        }
        self.inner.instance.refresh_route(&mq.topic).await?;
        self.inner.instance.master_addr(&mq.broker_name).ok_or_else(|| Error::NoBrokerAddr(mq.broker_name.clone()))
    }

    fn build_request(&self, msg: &mut Message, mq: &MessageQueue, code: RequestCode) -> RemotingCommand {
        let mut sys_flag = 0;
        let mut body = msg.body.clone();
        if code != RequestCode::SEND_BATCH_MESSAGE && body.len() > self.inner.opts.compress_over {
            if let Some(z) = crate::compression::zlib_compress(&body, 5) {
                body = z;
                // COMPRESSED with the ZLIB type (0x301), as the Java client sets.
                sys_flag |= Compression::Zlib.sys_flag_bits();
            }
        }
        if msg.properties.get(keys::TRANSACTION_PREPARED).is_some_and(|v| v == "true") {
            sys_flag |= sysflag::TRANSACTION_PREPARED_TYPE;
        }
        let reconsume_times = msg.properties.get(keys::RECONSUME_TIME).and_then(|v| v.parse().ok());
        let max_reconsume_times = msg.properties.get(keys::MAX_RECONSUME_TIMES).and_then(|v| v.parse().ok());
        let h = SendMessageRequestHeaderV2 {
            producer_group: self.inner.group.clone(),
            topic: msg.topic.clone(),
            default_topic: common::topic::AUTO_CREATE_TOPIC_KEY.to_owned(),
            default_topic_queue_nums: self.inner.opts.default_topic_queue_nums,
            queue_id: mq.queue_id,
            sys_flag,
            born_timestamp: common::time::now_ms(),
            flag: msg.flag,
            properties: Some(msg.properties.encode()),
            reconsume_times: Some(reconsume_times.unwrap_or(0)),
            unit_mode: Some(false),
            max_reconsume_times,
            batch: Some(code == RequestCode::SEND_BATCH_MESSAGE),
            broker_name: Some(mq.broker_name.clone()),
        };
        // A reply (`request::create_reply_message`) goes as SEND_REPLY_MESSAGE_V2,
        // as Java's MQClientAPIImpl sends it: the broker pushes it to the requester.
        let code = if code == RequestCode::SEND_MESSAGE_V2
            && msg.properties.get(keys::MESSAGE_TYPE) == Some(keys::REPLY_MESSAGE_FLAG)
        {
            RequestCode::SEND_REPLY_MESSAGE_V2
        } else {
            code
        };
        RemotingCommand::request_with(code, &h).with_body(body)
    }

    async fn send_kernel(
        &self,
        msg: &mut Message,
        mq: &MessageQueue,
        deadline: Instant,
        code: RequestCode,
    ) -> Result<SendResult> {
        let addr = self.broker_addr(mq).await?;
        let req = self.build_request(msg, mq, code);
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started);
        if left.is_zero() {
            return Err(Error::Timeout(self.inner.opts.send_timeout));
        }
        let started_ms = common::time::now_ms();
        let resp = self.inner.instance.invoke(&addr, req, left).await?;
        let status = match resp.response_code() {
            ResponseCode::SUCCESS => SendStatus::SendOk,
            ResponseCode::FLUSH_DISK_TIMEOUT => SendStatus::FlushDiskTimeout,
            ResponseCode::FLUSH_SLAVE_TIMEOUT => SendStatus::FlushSlaveTimeout,
            ResponseCode::SLAVE_NOT_AVAILABLE => SendStatus::SlaveNotAvailable,
            _ => return Err(Error::from_response(&resp, &addr)),
        };
        let h: SendMessageResponseHeader = resp.decode_header().map_err(|e| Error::Body(e.to_string()))?;
        let result = SendResult {
            status,
            msg_id: msg.uniq_key().unwrap_or_default().to_owned(),
            offset_msg_id: h.msg_id,
            message_queue: MessageQueue::new(mq.topic.clone(), mq.broker_name.clone(), h.queue_id),
            queue_offset: h.queue_offset,
            transaction_id: h.transaction_id,
            region_id: msg_trace::region_or_default(resp.ext_fields.get(keys::MSG_REGION)),
            trace_on: resp.ext_fields.get(keys::TRACE_SWITCH) != Some("false"),
        };
        if let Some(tracer) = self.inner.msg_trace.as_ref().filter(|_| code != RequestCode::SEND_BATCH_MESSAGE) {
            tracer.on_send(msg, started_ms, started.elapsed(), &addr, &result);
        }
        Ok(result)
    }
}

/// Java's sync-send retry set: network errors and codes {17, 14, 1, 16, 204, 205}.
fn is_retryable(e: &Error) -> bool {
    match e {
        Error::Remoting(_) | Error::Timeout(_) | Error::NoBrokerAddr(_) | Error::Io(_) => true,
        Error::Broker { code, .. } => matches!(
            *code,
            ResponseCode::TOPIC_NOT_EXIST
                | ResponseCode::SERVICE_NOT_AVAILABLE
                | ResponseCode::SYSTEM_ERROR
                | ResponseCode::NO_PERMISSION
                | ResponseCode::NO_BUYER_ID
                | ResponseCode::NOT_IN_CURRENT_UNIT
                | ResponseCode::SYSTEM_BUSY
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_bodies_go_zlib_compressed_with_rocketmq_flags() {
        let p = Producer::new(
            "PG",
            config::ClientConfig::default(),
            Some(vec!["127.0.0.1:1".into()]),
            ProducerOptions::default(),
        );
        let mq = MessageQueue::new("T", "broker-a", 0);
        let big = vec![b'a'; 5000];
        let req = p.build_request(&mut Message::new("T", big.clone()), &mq, RequestCode::SEND_MESSAGE_V2);
        let h: SendMessageRequestHeaderV2 = req.decode_header().unwrap();
        // MessageSysFlag.COMPRESSED_FLAG | COMPRESSION_ZLIB_TYPE.
        assert_eq!(h.sys_flag, 0x301);
        assert_eq!(crate::compression::decompress_body(h.sys_flag, &req.body_bytes()).unwrap()[..], big[..]);
        let small = vec![b'a'; 4096];
        let req = p.build_request(&mut Message::new("T", small.clone()), &mq, RequestCode::SEND_MESSAGE_V2);
        let h: SendMessageRequestHeaderV2 = req.decode_header().unwrap();
        assert_eq!((h.sys_flag, &req.body_bytes()[..]), (0, &small[..]));
        p.shutdown().await;
    }
}
