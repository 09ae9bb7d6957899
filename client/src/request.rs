//! Request-reply over messages (RocketMQ 4.6+'s RPC: `DefaultMQProducer.request`,
//! `MessageUtil.createReplyMessage`).
//!
//! The requester ([`Producer::request`]) stamps the message with
//! `CORRELATION_ID` (fresh per request), `REPLY_TO_CLIENT` (its client id) and
//! `TTL` (the timeout in ms), sends it as usual, and waits. A responder — any
//! consumer of the request topic — builds the answer with
//! [`create_reply_message`] (topic `<cluster>_REPLY_TOPIC`, from the `CLUSTER`
//! property the broker stamped on the request; `MSG_TYPE=reply` and the three
//! properties copied) and sends it with [`Producer::send_reply`]; the producer
//! sends messages marked `MSG_TYPE=reply` as SEND_REPLY_MESSAGE_V2 (325). The
//! broker pushes the reply to the requester's connection (PUSH_REPLY_MESSAGE_TO_CLIENT,
//! 326), where the client instance hands it to [`on_push_reply`], which completes
//! the request waiting on that correlation id.
//!
//! Pending requests live in one process-wide table keyed by correlation id (Java's
//! `RequestFutureHolder` is a singleton too): correlation ids are unique across
//! client instances, and an instance only ever receives replies addressed to its
//! own client id. A reply nobody waits for (it came after the timeout) is logged
//! and dropped.
//!
//! The broker finds the requester among the connections that sent it a heartbeat,
//! so a request to a topic whose route this instance did not know yet is preceded
//! by a heartbeat to every known broker, as Java does.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use common::properties::{keys, Properties};
use common::route::MessageQueue;
use common::{Message, MessageExt, ResponseCode};
use remoting::header::broker::ReplyMessageRequestHeader;
use remoting::RemotingCommand;

use crate::error::{Error, Result};
use crate::producer::{Producer, QueueSelector, SendResult};

/// Requests waiting for their reply: correlation id → completion.
/// A reply whose body does not decompress completes its request with the error.
static PENDING: LazyLock<Mutex<HashMap<String, oneshot::Sender<Result<MessageExt>>>>> = LazyLock::new(Mutex::default);

/// (client id, topic) pairs whose brokers already had a heartbeat for requests.
static ANNOUNCED: LazyLock<Mutex<HashSet<(String, String)>>> = LazyLock::new(Mutex::default);

/// Removes a pending request when its waiter goes away (reply, timeout, error or
/// a dropped future).
struct PendingGuard(String);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        PENDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.0);
    }
}

fn pending() -> std::sync::MutexGuard<'static, HashMap<String, oneshot::Sender<Result<MessageExt>>>> {
    PENDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Requests in flight in this process (for tests and metrics).
pub fn pending_requests() -> usize {
    pending().len()
}

enum Target<'a> {
    Any,
    Queue(&'a MessageQueue),
    Selector(&'a dyn QueueSelector),
}

impl Producer {
    /// Sends `msg` as a request and waits up to `timeout` for its reply.
    ///
    /// # Errors
    /// The send failed, or [`Error::Timeout`] when no reply came in time.
    pub async fn request(&self, msg: Message, timeout: Duration) -> Result<MessageExt> {
        self.request_inner(msg, Target::Any, timeout).await
    }

    /// [`Producer::request`] to one queue.
    ///
    /// # Errors
    /// As [`Producer::request`].
    pub async fn request_to_queue(&self, msg: Message, mq: &MessageQueue, timeout: Duration) -> Result<MessageExt> {
        self.request_inner(msg, Target::Queue(mq), timeout).await
    }

    /// [`Producer::request`] to the queue `selector` picks.
    ///
    /// # Errors
    /// As [`Producer::request`].
    pub async fn request_with_selector(
        &self,
        msg: Message,
        selector: &dyn QueueSelector,
        timeout: Duration,
    ) -> Result<MessageExt> {
        self.request_inner(msg, Target::Selector(selector), timeout).await
    }

    /// Sends a reply built by [`create_reply_message`] (as SEND_REPLY_MESSAGE_V2).
    ///
    /// # Errors
    /// `reply` is not a reply message, or the send failed (the broker refuses a
    /// reply whose requester is not connected).
    pub async fn send_reply(&self, reply: Message) -> Result<SendResult> {
        if reply.properties.get(keys::MESSAGE_TYPE) != Some(keys::REPLY_MESSAGE_FLAG) {
            return Err(Error::InvalidArgument("not a reply message: build it with create_reply_message".into()));
        }
        self.send(reply).await
    }

    async fn request_inner(&self, mut msg: Message, target: Target<'_>, timeout: Duration) -> Result<MessageExt> {
        let started = Instant::now();
        let instance = self.instance();
        let correlation_id = instance.next_uniq_id();
        msg.properties.insert(keys::CORRELATION_ID, correlation_id.clone());
        msg.properties.insert(keys::MESSAGE_REPLY_TO_CLIENT, instance.client_id());
        msg.properties.insert(keys::MESSAGE_TTL, timeout.as_millis().to_string());

        let key = (instance.client_id().to_owned(), msg.topic.clone());
        let known = ANNOUNCED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&key);
        if !known {
            instance.route(&msg.topic).await?;
            instance.send_heartbeat_to_all().await;
            ANNOUNCED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key);
        }

        // Registered before sending: the reply can overtake the send's answer.
        let (tx, rx) = oneshot::channel();
        pending().insert(correlation_id.clone(), tx);
        let _guard = PendingGuard(correlation_id.clone());
        match target {
            Target::Any => self.send(msg).await?,
            Target::Queue(mq) => self.send_to_queue(msg, mq).await?,
            Target::Selector(s) => self.send_with_selector(msg, s).await?,
        };
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(Error::Shutdown),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }
}

/// The reply to `request` with `body` (RocketMQ's `MessageUtil.createReplyMessage`):
/// topic `<cluster>_REPLY_TOPIC`, `MSG_TYPE=reply`, and the request's
/// `CORRELATION_ID`, `REPLY_TO_CLIENT` and `TTL`.
///
/// # Errors
/// The request carries no `CLUSTER` property (it did not come from a broker) or
/// is not a request (no `REPLY_TO_CLIENT`).
pub fn create_reply_message(request: &MessageExt, body: impl Into<Bytes>) -> Result<Message> {
    let p = &request.properties;
    let Some(cluster) = p.get(keys::CLUSTER) else {
        return Err(Error::InvalidArgument("create reply message fail: the request has no CLUSTER property".into()));
    };
    let Some(reply_to) = p.get(keys::MESSAGE_REPLY_TO_CLIENT) else {
        return Err(Error::InvalidArgument(
            "create reply message fail: the request has no REPLY_TO_CLIENT property".into(),
        ));
    };
    // MixAll.getReplyTopic; the broker creates this topic at start.
    let mut reply = Message::new(format!("{cluster}_REPLY_TOPIC"), body);
    reply.properties.insert(keys::MESSAGE_TYPE, keys::REPLY_MESSAGE_FLAG);
    reply.properties.insert(keys::MESSAGE_REPLY_TO_CLIENT, reply_to);
    if let Some(c) = p.get(keys::CORRELATION_ID) {
        reply.properties.insert(keys::CORRELATION_ID, c);
    }
    if let Some(ttl) = p.get(keys::MESSAGE_TTL) {
        reply.properties.insert(keys::MESSAGE_TTL, ttl);
    }
    Ok(reply)
}

/// PUSH_REPLY_MESSAGE_TO_CLIENT from a broker (RocketMQ's
/// `ClientRemotingProcessor.receiveReplyMessage`): completes the waiting request.
/// Answers SUCCESS unless the request is malformed.
pub fn on_push_reply(request: &RemotingCommand) -> RemotingCommand {
    let h: ReplyMessageRequestHeader = match request.decode_header() {
        Ok(h) => h,
        Err(e) => return RemotingCommand::error(ResponseCode::SYSTEM_ERROR, e.to_string()),
    };
    let mut msg = reply_message(h, request.body_bytes());
    // Java hands the compressed bytes on when they do not inflate; the requester gets
    // the error instead, so a corrupt reply is never taken for the answer.
    let decoded = match crate::compression::decompress_body(msg.sys_flag, &msg.body) {
        Ok(body) => {
            msg.body = body;
            msg.sys_flag = crate::compression::clear_compression(msg.sys_flag);
            Ok(())
        }
        Err(e) => {
            warn!(topic = %msg.topic, error = %e, "reply body does not decode");
            Err(e)
        }
    };
    let Some(correlation_id) = msg.properties.get(keys::CORRELATION_ID).map(str::to_owned) else {
        warn!(topic = %msg.topic, "reply without CORRELATION_ID dropped");
        return RemotingCommand::success();
    };
    match pending().remove(&correlation_id) {
        Some(tx) => {
            let _ = tx.send(decoded.map(|()| msg));
        }
        None => debug!(correlation_id = %correlation_id, "reply for no pending request (timed out?) dropped"),
    }
    RemotingCommand::success()
}

fn parse_addr(s: &str) -> SocketAddr {
    // Java writes `RemotingHelper.parseSocketAddressAddr`: "ip:port", older
    // brokers "/ip:port".
    s.trim().trim_start_matches('/').parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn reply_message(h: ReplyMessageRequestHeader, body: Bytes) -> MessageExt {
    let mut properties = Properties::decode(h.properties.as_deref().unwrap_or(""));
    properties.insert(keys::REPLY_MESSAGE_ARRIVE_TIME, common::time::now_ms().to_string());
    MessageExt {
        topic: h.topic,
        queue_id: h.queue_id,
        flag: h.flag,
        queue_offset: 0,
        commit_log_offset: 0,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        born_host: parse_addr(&h.born_host),
        store_timestamp: h.store_timestamp,
        store_host: parse_addr(&h.store_host),
        reconsume_times: h.reconsume_times.unwrap_or(0),
        prepared_transaction_offset: 0,
        body_crc: 0,
        store_size: 0,
        properties,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_ext(props: &[(&str, &str)]) -> MessageExt {
        let mut properties = Properties::new();
        for (k, v) in props {
            properties.insert(*k, *v);
        }
        MessageExt {
            topic: "Req".into(),
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: parse_addr("127.0.0.1:1"),
            store_timestamp: 0,
            store_host: parse_addr("127.0.0.1:2"),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body_crc: 0,
            store_size: 0,
            properties,
            body: Bytes::from_static(b"q"),
        }
    }

    #[test]
    fn reply_goes_to_the_cluster_reply_topic_with_the_request_ids() {
        let req = request_ext(&[
            ("CLUSTER", "C1"),
            ("REPLY_TO_CLIENT", "10.0.0.1@x"),
            ("CORRELATION_ID", "abc"),
            ("TTL", "3000"),
        ]);
        let r = create_reply_message(&req, "a").unwrap();
        assert_eq!(r.topic, "C1_REPLY_TOPIC");
        assert_eq!(r.properties.get("MSG_TYPE"), Some("reply"));
        assert_eq!(r.properties.get("CORRELATION_ID"), Some("abc"));
        assert_eq!(r.properties.get("REPLY_TO_CLIENT"), Some("10.0.0.1@x"));
        assert_eq!(r.properties.get("TTL"), Some("3000"));
        assert!(create_reply_message(&request_ext(&[("REPLY_TO_CLIENT", "x")]), "a").is_err());
        assert!(create_reply_message(&request_ext(&[("CLUSTER", "C1")]), "a").is_err());
    }

    #[test]
    fn a_pushed_reply_completes_its_request_and_strays_are_dropped() {
        let (tx, mut rx) = oneshot::channel();
        pending().insert("corr-1".into(), tx);
        let mut props = Properties::new();
        props.insert(keys::CORRELATION_ID, "corr-1");
        let h = ReplyMessageRequestHeader {
            producer_group: "G".into(),
            topic: "C1_REPLY_TOPIC".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 0,
            sys_flag: 0,
            born_timestamp: 5,
            flag: 0,
            properties: Some(props.encode()),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            born_host: "/127.0.0.1:5000".into(),
            store_host: "127.0.0.1:10911".into(),
            store_timestamp: 6,
        };
        let cmd = RemotingCommand::request_with(remoting::RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT, &h)
            .with_body(Bytes::from_static(b"answer"));
        assert_eq!(on_push_reply(&cmd).response_code(), ResponseCode::SUCCESS);
        let got = rx.try_recv().unwrap().unwrap();
        assert_eq!(&got.body[..], b"answer");
        assert_eq!(got.born_host, parse_addr("127.0.0.1:5000"));
        assert!(got.properties.get(keys::REPLY_MESSAGE_ARRIVE_TIME).is_some());
        // Nobody waits any more: still SUCCESS.
        assert_eq!(on_push_reply(&cmd).response_code(), ResponseCode::SUCCESS);

        // A compressed reply is inflated; one that does not inflate fails the request.
        for (corr, body, inflates) in [("corr-2", &zlib(b"answer")[..], true), ("corr-3", &b"answer"[..], false)] {
            let (tx, mut rx) = oneshot::channel();
            pending().insert(corr.into(), tx);
            let mut props = Properties::new();
            props.insert(keys::CORRELATION_ID, corr);
            let h = ReplyMessageRequestHeader {
                sys_flag: crate::Compression::Zlib.sys_flag_bits(),
                properties: Some(props.encode()),
                ..h.clone()
            };
            let cmd = RemotingCommand::request_with(remoting::RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT, &h)
                .with_body(Bytes::copy_from_slice(body));
            assert_eq!(on_push_reply(&cmd).response_code(), ResponseCode::SUCCESS);
            match rx.try_recv().unwrap() {
                Ok(m) if inflates => assert_eq!((&m.body[..], m.sys_flag), (&b"answer"[..], 0)),
                Err(Error::Decompress { .. }) if !inflates => {}
                other => panic!("{corr}: {other:?}"),
            }
        }
    }

    fn zlib(b: &[u8]) -> Bytes {
        crate::compression::zlib_compress(b, 5).unwrap()
    }
}
