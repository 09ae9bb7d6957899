//! Transactional messages (RocketMQ's `TransactionMQProducer`,
//! `remoting-protocol.md` §5.10, §5.11, §12.10).
//!
//! [`TransactionProducer::send_message_in_transaction`] sends a *half* message
//! (`TRAN_MSG=true`, `PGROUP=<group>`, the PREPARED sys flag), which the broker
//! parks where no consumer sees it; runs the application's local transaction
//! ([`TransactionListener::execute_local_transaction`]); then tells the broker the
//! outcome with a oneway END_TRANSACTION: commit (the broker publishes the message
//! to its real topic), rollback (discarded) or unknown (left for the check-back).
//!
//! A half message left undecided — unknown state, a lost END_TRANSACTION, a
//! producer that died — is checked back: the broker sends CHECK_TRANSACTION_STATE
//! to a live producer of the same group, which answers with
//! [`TransactionListener::check_local_transaction`] in an END_TRANSACTION marked
//! `fromTransactionCheck`, carrying the offsets of the check (the broker re-appends
//! the half message before each check, so they differ from the send's).
//!
//! Any producer of the group may be asked, not only the one that sent: the check
//! must answer from the application's own records (a database row keyed by the
//! transaction id, typically), never from memory of the send. A process that
//! restarts should call [`TransactionProducer::register_with_brokers`] so that the
//! brokers know it before it sends anything.
//!
//! The transaction id is the message's UNIQ_KEY (its msgId), as RocketMQ uses it.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::{debug, warn};

use common::properties::keys;
use common::sysflag::message as sysflag;
use common::{Message, MessageExt};
use remoting::channel::BoxFuture;
use remoting::header::broker::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use remoting::{RemotingCommand, RequestCode};

use crate::error::{Error, Result};
use crate::instance::{ClientInstance, TransactionCheckHandle};
use crate::msg_trace::{MsgTracer, TransactionEnd};
use crate::producer::{Producer, ProducerOptions, SendResult, SendStatus};

/// The outcome of a local transaction (RocketMQ's `LocalTransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalTransactionState {
    /// Publish the message (`COMMIT_MESSAGE`).
    CommitMessage,
    /// Discard it (`ROLLBACK_MESSAGE`).
    RollbackMessage,
    /// Not decided yet: the broker will ask again (`UNKNOW`, RocketMQ's spelling).
    Unknow,
}

impl LocalTransactionState {
    /// The `commitOrRollback` value of END_TRANSACTION.
    pub fn end_type(self) -> i32 {
        match self {
            LocalTransactionState::CommitMessage => sysflag::TRANSACTION_COMMIT_TYPE,
            LocalTransactionState::RollbackMessage => sysflag::TRANSACTION_ROLLBACK_TYPE,
            LocalTransactionState::Unknow => sysflag::TRANSACTION_NOT_TYPE,
        }
    }
}

/// What the application implements (RocketMQ's `TransactionListener`).
///
/// Both methods may be called concurrently, from tasks of the client's runtime.
/// `async fn` in an implementation satisfies the signatures.
pub trait TransactionListener: Send + Sync + 'static {
    /// Passed from [`TransactionProducer::send_message_in_transaction`] to
    /// [`TransactionListener::execute_local_transaction`] (Java's `Object arg`);
    /// `()` when unused.
    type Arg: Send + Sync;

    /// Runs the local transaction of a half message the broker has stored. `msg`
    /// carries the UNIQ_KEY that identifies the transaction.
    fn execute_local_transaction(
        &self,
        msg: &Message,
        arg: &Self::Arg,
    ) -> impl Future<Output = LocalTransactionState> + Send;

    /// Answers a check-back about a half message still undecided (`msg` is the
    /// half message as the broker stored it, with its real topic; its
    /// `msg_id()` is the transaction id).
    fn check_local_transaction(&self, msg: &MessageExt) -> impl Future<Output = LocalTransactionState> + Send;
}

/// A listener made of two plain functions (no argument); see
/// [`transaction_listener_fn`].
pub struct FnTransactionListener<E, C> {
    execute: E,
    check: C,
}

/// A [`TransactionListener`] from two synchronous functions, for local
/// transactions that do not await anything.
pub fn transaction_listener_fn<E, C>(execute: E, check: C) -> FnTransactionListener<E, C>
where
    E: Fn(&Message) -> LocalTransactionState + Send + Sync + 'static,
    C: Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
{
    FnTransactionListener { execute, check }
}

impl<E, C> TransactionListener for FnTransactionListener<E, C>
where
    E: Fn(&Message) -> LocalTransactionState + Send + Sync + 'static,
    C: Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
{
    type Arg = ();

    fn execute_local_transaction(&self, msg: &Message, _: &()) -> impl Future<Output = LocalTransactionState> + Send {
        std::future::ready((self.execute)(msg))
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> impl Future<Output = LocalTransactionState> + Send {
        std::future::ready((self.check)(msg))
    }
}

/// The outcome of [`TransactionProducer::send_message_in_transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSendResult {
    /// The half message's send.
    pub send_result: SendResult,
    /// What the local transaction decided (and END_TRANSACTION reported).
    pub local_state: LocalTransactionState,
    /// The transaction id: the message's UNIQ_KEY.
    pub transaction_id: String,
}

/// Answers CHECK_TRANSACTION_STATE for the producer group.
struct Checker<L> {
    group: String,
    instance: ClientInstance,
    listener: Arc<L>,
    msg_trace: Option<Arc<MsgTracer>>,
}

impl<L: TransactionListener> TransactionCheckHandle for Checker<L> {
    fn check(&self, broker_addr: String, request: RemotingCommand) -> BoxFuture<()> {
        let group = self.group.clone();
        let instance = self.instance.clone();
        let listener = self.listener.clone();
        let msg_trace = self.msg_trace.clone();
        Box::pin(async move {
            let h: CheckTransactionStateRequestHeader = match request.decode_header() {
                Ok(h) => h,
                Err(e) => {
                    warn!(broker = %broker_addr, error = %e, "malformed CHECK_TRANSACTION_STATE header");
                    return;
                }
            };
            let mut msg = match MessageExt::decode(&request.body_bytes(), false) {
                Ok(m) => m,
                Err(e) => {
                    warn!(broker = %broker_addr, error = %e, "malformed CHECK_TRANSACTION_STATE body");
                    return;
                }
            };
            // Java decodes the body with decompression on, and a message that does not
            // decode gets no answer: the broker asks again at its next check round.
            match crate::compression::decompress_body(msg.sys_flag, &msg.body) {
                Ok(body) => {
                    msg.body = body;
                    msg.sys_flag = crate::compression::clear_compression(msg.sys_flag);
                }
                Err(e) => {
                    warn!(broker = %broker_addr, msg_id = %msg.offset_msg_id(), error = %e, "transaction check of a message whose body does not decode; not answered");
                    return;
                }
            }
            let span = crate::trace::start_check(&msg, &group);
            let state = listener.check_local_transaction(&msg).await;
            crate::trace::end_check(span, state);
            if let Some(tracer) = &msg_trace {
                let id = msg.msg_id();
                tracer.on_end_transaction(
                    &TransactionEnd {
                        topic: &msg.topic,
                        msg_id: &id,
                        tags: msg.properties.get(keys::TAGS),
                        keys: msg.properties.get(keys::KEYS),
                        broker: &broker_addr,
                        transaction_id: h.transaction_id.as_deref().unwrap_or(&id),
                        region_id: msg.properties.get(keys::MSG_REGION).unwrap_or(""),
                    },
                    state,
                    true,
                );
            }
            let end = EndTransactionRequestHeader {
                producer_group: group.clone(),
                tran_state_table_offset: h.tran_state_table_offset,
                commit_log_offset: h.commit_log_offset,
                commit_or_rollback: state.end_type(),
                from_transaction_check: Some(true),
                msg_id: msg.properties.uniq_key().map(str::to_owned).unwrap_or_else(|| msg.offset_msg_id()),
                transaction_id: h.transaction_id.clone(),
                topic: Some(msg.topic.clone()),
            };
            debug!(group = %group, msg_id = %end.msg_id, ?state, "transaction check answered");
            let cmd = RemotingCommand::request_with(RequestCode::END_TRANSACTION, &end);
            if let Err(e) = instance.oneway(&broker_addr, cmd).await {
                warn!(broker = %broker_addr, error = %e, "could not answer a transaction check");
            }
        })
    }
}

/// A producer of transactional messages. Normal sends go through
/// [`TransactionProducer::producer`].
pub struct TransactionProducer<L: TransactionListener> {
    producer: Producer,
    listener: Arc<L>,
    /// Brokers this producer has announced itself to (heartbeat) since it sent a
    /// half message there: check-backs need the broker to know the group.
    announced: Mutex<HashSet<String>>,
}

impl<L: TransactionListener> TransactionProducer<L> {
    /// A transactional producer of `group` with its own client instance, started
    /// at once (name servers from `namesrv`, else `config`).
    pub fn new(
        group: impl Into<String>,
        config: config::ClientConfig,
        namesrv: Option<Vec<String>>,
        opts: ProducerOptions,
        listener: L,
    ) -> Self {
        Self::wrap(Producer::new(group, config, namesrv, opts), listener)
    }

    /// A transactional producer on an existing instance.
    pub fn with_instance(
        group: impl Into<String>,
        instance: ClientInstance,
        opts: ProducerOptions,
        listener: L,
    ) -> Self {
        Self::wrap(Producer::with_instance(group, instance, opts), listener)
    }

    /// A transactional producer with the default settings, talking to `namesrv`
    /// (`host:port;host:port`).
    pub fn connect(group: impl Into<String>, namesrv: &str, listener: L) -> Self {
        let addrs = namesrv.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        Self::new(group, config::ClientConfig::default(), Some(addrs), ProducerOptions::default(), listener)
    }

    fn wrap(producer: Producer, listener: L) -> Self {
        let listener = Arc::new(listener);
        let checker = Arc::new(Checker {
            group: producer.group().to_owned(),
            instance: producer.instance().clone(),
            listener: listener.clone(),
            msg_trace: producer.msg_tracer().cloned(),
        });
        // Replaces the plain registration `Producer` made: checks for this group
        // now reach the listener.
        producer.instance().register_producer(producer.group(), Some(checker));
        Self { producer, listener, announced: Mutex::default() }
    }

    /// The underlying producer (normal sends, group, instance).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    pub fn listener(&self) -> &Arc<L> {
        &self.listener
    }

    /// Makes the brokers serving `topics` know this producer group now (route
    /// lookup + heartbeat), so that they can check back transactions another
    /// producer of the group left undecided. Sending does it by itself.
    ///
    /// # Errors
    /// None of the topics has a route.
    pub async fn register_with_brokers(&self, topics: &[&str]) -> Result<()> {
        let instance = self.producer.instance();
        let mut last = None;
        let mut found = false;
        for t in topics {
            match instance.route(t).await {
                Ok(_) => found = true,
                Err(e) => last = Some(e),
            }
        }
        if !found {
            if let Some(e) = last {
                return Err(e);
            }
        }
        instance.send_heartbeat_to_all().await;
        Ok(())
    }

    /// Sends `msg` as a half message, runs the local transaction with `arg`, and
    /// reports its outcome to the broker (RocketMQ's `sendMessageInTransaction`).
    ///
    /// A half message the broker did not store as asked (flush or slave timeout)
    /// is rolled back without running the local transaction, as in Java. A lost
    /// END_TRANSACTION is not an error: the check-back settles it.
    ///
    /// # Errors
    /// Invalid message (a delay level is dropped, as Java does), no route, or the
    /// half message could not be sent.
    pub async fn send_message_in_transaction(&self, mut msg: Message, arg: L::Arg) -> Result<TransactionSendResult> {
        if common::topic::is_retry_topic(&msg.topic) {
            return Err(Error::InvalidArgument("a transactional message cannot go to a retry topic".into()));
        }
        msg.properties.remove(keys::DELAY_TIME_LEVEL);
        msg.properties.insert(keys::TRANSACTION_PREPARED, "true");
        msg.properties.insert(keys::PRODUCER_GROUP, self.producer.group());
        if msg.uniq_key().is_none() {
            // Stamped here rather than in `send` so the listener sees the id.
            msg.properties.insert(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, self.producer.instance().next_uniq_id());
        }
        let send_result = self.producer.send(msg.clone()).await?;
        self.announce(&send_result.message_queue.broker_name).await;
        let transaction_id = send_result.msg_id.clone();
        let local_state = if send_result.status == SendStatus::SendOk {
            self.listener.execute_local_transaction(&msg, &arg).await
        } else {
            warn!(topic = %msg.topic, status = ?send_result.status, "half message not stored as asked; rolling back");
            LocalTransactionState::RollbackMessage
        };
        if let Err(e) = self.end_transaction(&send_result, local_state).await {
            warn!(msg_id = %transaction_id, error = %e, ?local_state, "END_TRANSACTION failed; the broker will check back");
        }
        if let Some(tracer) = self.producer.msg_tracer() {
            let broker = self.producer.instance().master_addr(&send_result.message_queue.broker_name);
            tracer.on_end_transaction(
                &TransactionEnd {
                    topic: &msg.topic,
                    msg_id: &transaction_id,
                    tags: msg.properties.get(keys::TAGS),
                    keys: msg.properties.get(keys::KEYS),
                    broker: broker.as_deref().unwrap_or_default(),
                    transaction_id: &transaction_id,
                    region_id: &send_result.region_id,
                },
                local_state,
                false,
            );
        }
        Ok(TransactionSendResult { send_result, local_state, transaction_id })
    }

    async fn announce(&self, broker_name: &str) {
        if self.announced.lock().contains(broker_name) {
            return;
        }
        self.producer.instance().send_heartbeat_to_all().await;
        self.announced.lock().insert(broker_name.to_owned());
    }

    /// END_TRANSACTION (oneway) for the half message `sent` (§5.10).
    async fn end_transaction(&self, sent: &SendResult, state: LocalTransactionState) -> Result<()> {
        let (stored_at, commit_log_offset) = common::msgid::decode_offset_msg_id(&sent.offset_msg_id)
            .map_err(|e| Error::Body(format!("offsetMsgId {}: {e}", sent.offset_msg_id)))?;
        let instance = self.producer.instance();
        let addr = instance.master_addr(&sent.message_queue.broker_name).unwrap_or_else(|| stored_at.to_string());
        let h = EndTransactionRequestHeader {
            producer_group: self.producer.group().to_owned(),
            tran_state_table_offset: sent.queue_offset,
            commit_log_offset,
            commit_or_rollback: state.end_type(),
            from_transaction_check: Some(false),
            msg_id: sent.msg_id.clone(),
            transaction_id: Some(sent.msg_id.clone()),
            topic: Some(sent.message_queue.topic.clone()),
        };
        instance.oneway(&addr, RemotingCommand::request_with(RequestCode::END_TRANSACTION, &h)).await
    }

    /// Unregisters from the brokers and stops the producer.
    pub async fn shutdown(&self) {
        self.producer.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_end_transaction_types() {
        assert_eq!(LocalTransactionState::CommitMessage.end_type(), 8);
        assert_eq!(LocalTransactionState::RollbackMessage.end_type(), 12);
        assert_eq!(LocalTransactionState::Unknow.end_type(), 0);
    }
}
