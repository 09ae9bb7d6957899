//! RocketMQ 4.x message trace (`enableMsgTrace`): producers and push consumers with
//! [`ProducerOptions::enable_msg_trace`](crate::ProducerOptions) /
//! [`PushConsumerOptions::enable_msg_trace`](crate::consumer::push::PushConsumerOptions)
//! record each send, each consumption and each transaction end in RocketMQ's trace
//! format ([`data`]) into a trace topic (`RMQ_SYS_TRACE_TOPIC` unless a custom one is
//! set), indexed by message id and keys, so `mqadmin queryMsgTraceById`, RocketMQ's
//! dashboard and `ferromq-admin queryMsgTraceById` show where a message went.
//!
//! Recording never waits on the network: records go into a bounded queue that a
//! background task drains, packing up to [`MAX_RECORDS_PER_SEND`] records (at most
//! [`MAX_BODY`] bytes) into each trace message it sends through an inner producer of
//! group `_INNER_TRACE_PRODUCER-<group>-<PRODUCE|CONSUME>` on the same client
//! instance. A full queue drops the record and counts it ([`MsgTracer::dropped`]).

pub mod data;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use common::properties::keys;
use common::{Message, MessageExt};

use crate::instance::ClientInstance;
use crate::producer::{Producer, SendResult, SendStatus};
use crate::transaction::LocalTransactionState;
use data::{EndTransactionRecord, PubRecord, SubAfterRecord, SubBeforeRecord, TraceMessageType, TraceRecord};

pub use data::DEFAULT_TRACE_TOPIC;

/// Records waiting to be sent, at most (RocketMQ's `queueSize`).
const QUEUE_SIZE: usize = 2048;
/// Records per trace message, at most (RocketMQ's `batchSize`).
pub const MAX_RECORDS_PER_SEND: usize = 100;
/// Body bytes per trace message, at most (RocketMQ's `maxMsgSize`).
pub const MAX_BODY: usize = 128_000;
/// How long shutdown waits for the queued records to be sent.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(5);
/// The region a record names when the broker named none (RocketMQ's
/// `DEFAULT_TRACE_REGION_ID`).
const DEFAULT_REGION: &str = "DefaultRegion";

/// Which side of the client records: part of the inner producer's group name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Produce,
    Consume,
}

/// One client's message-trace recorder; see the module docs.
pub struct MsgTracer {
    group: String,
    tx: mpsc::Sender<TraceRecord>,
    dropped: AtomicU64,
    sent: Arc<AtomicU64>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl MsgTracer {
    /// Starts the recorder of `group`'s client, sending into `topic`.
    pub(crate) fn start(instance: &ClientInstance, group: &str, side: Side, topic: String) -> Arc<Self> {
        let side = match side {
            Side::Produce => "PRODUCE",
            Side::Consume => "CONSUME",
        };
        let producer = Producer::internal(format!("_INNER_TRACE_PRODUCER-{group}-{side}"), instance.clone());
        let (tx, rx) = mpsc::channel(QUEUE_SIZE);
        let cancel = CancellationToken::new();
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(drain(rx, producer, topic, cancel.clone(), sent.clone()));
        Arc::new(Self {
            group: group.to_owned(),
            tx,
            dropped: AtomicU64::new(0),
            sent,
            cancel,
            task: Mutex::new(Some(task)),
        })
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records the broker acknowledged.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn record(&self, r: TraceRecord) {
        if self.tx.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what is queued (waiting at most [`FLUSH_AT_SHUTDOWN`]) and stops.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        let task = self.task.lock().take();
        if let Some(task) = task {
            if tokio::time::timeout(FLUSH_AT_SHUTDOWN, task).await.is_err() {
                warn!(group = %self.group, "message-trace records still unsent at shutdown are dropped");
            }
        }
    }

    /// A `Pub` record for a send the broker answered (when it says its region
    /// traces: `TRACE_ON`).
    pub(crate) fn on_send(&self, msg: &Message, started_ms: i64, took: Duration, broker: &str, r: &SendResult) {
        if !r.trace_on {
            return;
        }
        let msg_type = if msg.properties.get(keys::TRANSACTION_PREPARED).is_some_and(|v| v == "true") {
            TraceMessageType::TransactionHalf
        } else if msg.delay_level() > 0 {
            TraceMessageType::Delay
        } else {
            TraceMessageType::Normal
        };
        self.record(TraceRecord::Pub(PubRecord {
            timestamp: started_ms,
            region_id: r.region_id.clone(),
            group: self.group.clone(),
            topic: msg.topic.clone(),
            msg_id: msg.uniq_key().unwrap_or_default().to_owned(),
            tags: msg.properties.get(keys::TAGS).map(str::to_owned),
            keys: msg.properties.get(keys::KEYS).map(str::to_owned),
            store_host: broker.to_owned(),
            body_length: msg.body.len() as i64,
            cost_ms: took.as_millis() as i64,
            msg_type,
            offset_msg_id: Some(r.offset_msg_id.clone()),
            success: r.status == SendStatus::SendOk,
        }));
    }

    /// `Pub` records for the messages of an acknowledged batch.
    pub(crate) fn on_send_batch(
        &self,
        msgs: &[Message],
        started_ms: i64,
        took: Duration,
        broker: &str,
        r: &SendResult,
    ) {
        let mut offset_ids = r.offset_msg_id.split(',');
        for m in msgs {
            let one = SendResult { offset_msg_id: offset_ids.next().unwrap_or_default().to_owned(), ..r.clone() };
            self.on_send(m, started_ms, took, broker, &one);
        }
    }

    /// An `EndTransaction` record: the producer ended `half`'s transaction with
    /// `state`, on its own or answering a check-back.
    pub(crate) fn on_end_transaction(&self, half: &TransactionEnd<'_>, state: LocalTransactionState, from_check: bool) {
        let state = match state {
            LocalTransactionState::CommitMessage => "COMMIT_MESSAGE",
            LocalTransactionState::RollbackMessage => "ROLLBACK_MESSAGE",
            LocalTransactionState::Unknow => "UNKNOW",
        };
        self.record(TraceRecord::EndTransaction(EndTransactionRecord {
            timestamp: common::time::now_ms(),
            region_id: region_or_default(Some(half.region_id)),
            group: self.group.clone(),
            topic: half.topic.to_owned(),
            msg_id: half.msg_id.to_owned(),
            tags: half.tags.map(str::to_owned),
            keys: half.keys.map(str::to_owned),
            store_host: half.broker.to_owned(),
            msg_type: TraceMessageType::TransactionHalf,
            transaction_id: half.transaction_id.to_owned(),
            state: state.to_owned(),
            from_check,
        }));
    }

    /// `SubBefore` records for a listener call about to start on `msgs`; the
    /// returned value finishes them with [`MsgTracer::on_consumed`].
    pub(crate) fn on_consume(&self, instance: &ClientInstance, msgs: &[MessageExt]) -> Consumption {
        let request_id = instance.next_uniq_id();
        let timestamp = common::time::now_ms();
        let mut traced = Vec::with_capacity(msgs.len());
        for m in msgs {
            // A message whose broker says its region does not trace is left out.
            if m.properties.get(keys::TRACE_SWITCH) == Some("false") {
                continue;
            }
            let msg_id = m.msg_id();
            let keys = m.properties.get(keys::KEYS).map(str::to_owned);
            self.record(TraceRecord::SubBefore(SubBeforeRecord {
                timestamp,
                region_id: m.properties.get(keys::MSG_REGION).unwrap_or(DEFAULT_REGION).to_owned(),
                group: self.group.clone(),
                request_id: request_id.clone(),
                msg_id: msg_id.clone(),
                retry_times: m.reconsume_times,
                keys: keys.clone(),
            }));
            traced.push((msg_id, keys));
        }
        Consumption { request_id, started: Instant::now(), traced }
    }

    /// `SubAfter` records: the listener's verdict on the call `c` began.
    pub(crate) fn on_consumed(&self, c: Consumption, success: bool) {
        if c.traced.is_empty() {
            return;
        }
        // RocketMQ's cost per message: the call's time shared by its messages.
        let cost_ms = c.started.elapsed().as_millis() as i64 / c.traced.len() as i64;
        let timestamp = common::time::now_ms();
        // `ConsumeReturnType`: SUCCESS (0) or FAILED (4).
        let context_code = if success { 0 } else { 4 };
        for (msg_id, keys) in c.traced {
            self.record(TraceRecord::SubAfter(SubAfterRecord {
                request_id: c.request_id.clone(),
                msg_id,
                cost_ms,
                success,
                keys,
                context_code: Some(context_code),
                timestamp: Some(timestamp),
            }));
        }
    }
}

/// What an `EndTransaction` record says about the half message.
pub(crate) struct TransactionEnd<'a> {
    pub topic: &'a str,
    pub msg_id: &'a str,
    pub tags: Option<&'a str>,
    pub keys: Option<&'a str>,
    pub broker: &'a str,
    pub transaction_id: &'a str,
    pub region_id: &'a str,
}

/// A listener call in progress: what its `SubAfter` records need.
pub(crate) struct Consumption {
    request_id: String,
    started: Instant,
    traced: Vec<(String, Option<String>)>,
}

/// The background task: sends queued records, packed, until cancelled; then sends
/// what is left and ends.
async fn drain(
    mut rx: mpsc::Receiver<TraceRecord>,
    producer: Producer,
    topic: String,
    cancel: CancellationToken,
    sent: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_RECORDS_PER_SEND);
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = cancel.cancelled() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_RECORDS_PER_SEND {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        send_packed(&producer, &topic, &mut batch, &sent).await;
    }
    rx.close();
    while let Ok(r) = rx.try_recv() {
        batch.push(r);
        if batch.len() == MAX_RECORDS_PER_SEND {
            send_packed(&producer, &topic, &mut batch, &sent).await;
        }
    }
    send_packed(&producer, &topic, &mut batch, &sent).await;
    producer.shutdown().await;
}

/// Sends `batch` as trace messages of at most [`MAX_BODY`] bytes each, and empties it.
async fn send_packed(producer: &Producer, topic: &str, batch: &mut Vec<TraceRecord>, sent: &AtomicU64) {
    let mut start = 0;
    let mut body = String::new();
    for (i, r) in batch.iter().enumerate() {
        let before = body.len();
        r.encode_into(&mut body);
        if body.len() > MAX_BODY && i > start {
            body.truncate(before);
            send_one(producer, topic, &batch[start..i], std::mem::take(&mut body), sent).await;
            start = i;
            r.encode_into(&mut body);
        }
    }
    if start < batch.len() {
        send_one(producer, topic, &batch[start..], body, sent).await;
    }
    batch.clear();
}

async fn send_one(producer: &Producer, topic: &str, records: &[TraceRecord], body: String, sent: &AtomicU64) {
    let mut msg = Message::new(topic, body.into_bytes());
    msg.properties.insert(keys::KEYS, data::index_keys(records));
    match producer.send(msg).await {
        Ok(_) => {
            sent.fetch_add(records.len() as u64, Ordering::Relaxed);
        }
        Err(e) => debug!(topic, records = records.len(), error = %e, "message-trace records not sent"),
    }
}

/// The region a send response names (`MSG_REGION`), RocketMQ's default when none.
pub(crate) fn region_or_default(region: Option<&str>) -> String {
    region.filter(|r| !r.is_empty()).unwrap_or(DEFAULT_REGION).to_owned()
}

/// The trace topic of a client: its custom one, else [`DEFAULT_TRACE_TOPIC`].
pub(crate) fn trace_topic(custom: Option<&str>) -> String {
    custom.map(str::trim).filter(|t| !t.is_empty()).unwrap_or(DEFAULT_TRACE_TOPIC).to_owned()
}
