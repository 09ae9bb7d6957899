//! A send's acknowledgement means the message is readable: every read path answers
//! for it at once, without a retry, with ASYNC_FLUSH and with SYNC_FLUSH.
//!
//! Each read is the first request after the send, on a queue that was empty before
//! it, so a broker that acknowledged before the message reached its consume queue
//! and index would answer "nothing there" (`-1`, `0`, OFFSET_OVERFLOW_ONE,
//! QUERY_NOT_FOUND) on some of the iterations. Every path gets its turn at being
//! first, and the others are checked right after it.

use anyhow::{ensure, Result};
use common::msgid::decode_offset_msg_id;
use common::properties::keys;
use common::MessageExt;
use remoting::header::broker::QueryMessageRequestHeader;
use remoting::{RemotingCommand, RequestCode, ResponseCode};
use tests::wire::{props, Sent, Wire};
use tests::{Broker, Namesrv};

/// Topics per test; each has one queue per read path.
const TOPICS: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadPath {
    Pull,
    MaxOffset,
    EarliestStoreTime,
    ViewById,
    QueryByKey,
}

const PATHS: [ReadPath; 5] =
    [ReadPath::Pull, ReadPath::MaxOffset, ReadPath::EarliestStoreTime, ReadPath::ViewById, ReadPath::QueryByKey];

/// What was sent, to check reads against.
struct Expect<'a> {
    topic: &'a str,
    queue_id: i32,
    key: &'a str,
    body: &'a [u8],
    sent: &'a Sent,
    phy: i64,
}

impl Expect<'_> {
    fn check_record(&self, m: &MessageExt, via: ReadPath) -> Result<()> {
        ensure!(m.body == self.body, "{via:?}: wrong body {:?}", m.body);
        ensure!(m.topic == self.topic && m.queue_id == self.queue_id, "{via:?}: wrong queue");
        ensure!(m.queue_offset == self.sent.queue_offset && m.commit_log_offset == self.phy, "{via:?}: wrong offsets");
        Ok(())
    }
}

/// One read through `path`, asserting it sees the message. Returns the store
/// timestamp when the path yields the record.
async fn read(w: &Wire, path: ReadPath, e: &Expect<'_>) -> Result<Option<i64>> {
    match path {
        ReadPath::Pull => {
            let p = w.pull("RywGroup", e.topic, e.queue_id, e.sent.queue_offset, "*", "TAG", 0).await?;
            ensure!(
                p.code == ResponseCode::SUCCESS && p.messages.len() == 1,
                "pull right after the ack: {:?} {:?}, {} messages, maxOffset {}",
                p.code,
                p.remark,
                p.messages.len(),
                p.max_offset
            );
            e.check_record(&p.messages[0], path)?;
            Ok(Some(p.messages[0].store_timestamp))
        }
        ReadPath::MaxOffset => {
            let max = w.max_offset(e.topic, e.queue_id).await?;
            ensure!(max == e.sent.queue_offset + 1, "GET_MAX_OFFSET right after the ack: {max}");
            Ok(None)
        }
        ReadPath::EarliestStoreTime => {
            let ts = w.earliest_store_time(e.topic, e.queue_id).await?;
            ensure!(ts > 0, "GET_EARLIEST_MSG_STORETIME right after the ack: {ts}");
            Ok(Some(ts))
        }
        ReadPath::ViewById => {
            let m = w.view_message(e.phy).await?;
            let Some(m) = m else { anyhow::bail!("VIEW_MESSAGE_BY_ID right after the ack: not found") };
            e.check_record(&m, path)?;
            Ok(Some(m.store_timestamp))
        }
        ReadPath::QueryByKey => {
            let h = QueryMessageRequestHeader {
                topic: e.topic.into(),
                key: e.key.into(),
                max_num: 32,
                begin_timestamp: 0,
                end_timestamp: i64::MAX,
            };
            let resp = w.call(RemotingCommand::request_with(RequestCode::QUERY_MESSAGE, &h)).await?;
            ensure!(
                resp.response_code() == ResponseCode::SUCCESS,
                "QUERY_MESSAGE right after the ack: {:?} {:?}",
                resp.response_code(),
                resp.remark
            );
            let msgs = common::record::decode_all(&resp.body_bytes(), true)?;
            ensure!(msgs.len() == 1, "QUERY_MESSAGE found {} records", msgs.len());
            e.check_record(&msgs[0], path)?;
            Ok(Some(msgs[0].store_timestamp))
        }
    }
}

/// Sends one message per read path per topic, each to an empty queue, and reads it
/// back through that path first, then through all the others.
async fn send_then_read_everywhere(settings: &[(&str, &str)], tag: &str) -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), settings)?;
    let w = Wire::new(broker.addr());
    for t in 0..TOPICS {
        let topic = format!("Ryw{tag}{t}");
        w.create_topic(&topic, PATHS.len() as i32).await?;
        for (q, &first) in PATHS.iter().enumerate() {
            let queue_id = q as i32;
            let key = format!("ryw-{tag}-{t}-{q}");
            let body = format!("body {tag} {t} {q}").into_bytes();
            let sent = w.send(&topic, queue_id, &body, &props(&[(keys::KEYS, &key)])).await?;
            ensure!(sent.code == ResponseCode::SUCCESS, "send: {:?} {:?}", sent.code, sent.remark);
            ensure!(sent.queue_offset == 0, "the queue was not empty");
            let (_, phy) = decode_offset_msg_id(&sent.msg_id)?;
            let e = Expect { topic: &topic, queue_id, key: &key, body: &body, sent: &sent, phy };
            let mut stamps = Vec::new();
            for path in std::iter::once(first).chain(PATHS.iter().copied().filter(|&p| p != first)) {
                let ts = read(&w, path, &e).await.map_err(|err| err.context(format!("{topic}:{queue_id}")))?;
                stamps.extend(ts);
            }
            ensure!(stamps.windows(2).all(|s| s[0] == s[1]), "store timestamps differ between paths: {stamps:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn async_flush_acknowledged_sends_are_readable_everywhere() -> Result<()> {
    send_then_read_everywhere(&[], "A").await
}

#[tokio::test]
async fn sync_flush_acknowledged_sends_are_readable_everywhere() -> Result<()> {
    send_then_read_everywhere(&[("STORE__FLUSH_DISK_TYPE", "SYNC_FLUSH")], "S").await
}
