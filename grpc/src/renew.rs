//! Auto-renewed receives: what RocketMQ's proxy does for push consumers
//! (`ReceiveMessageRequest.auto_renew`). A push consumer's message stays invisible
//! while the consumer works on it: every [`RENEW_PERIOD`] the endpoint extends each
//! unsettled message whose invisibility ends within [`RENEW_AHEAD`], by 1, 3, 5, 10,
//! 30 and then 60 minutes, for up to [`RENEW_MAX`] after it was received. Past that it
//! is handed back as a failed consumption (visible again after the group's retry
//! delay). An ack, a ChangeInvisibleDuration or a dead-lettering settles a message
//! and uses the latest handle, whatever handle the client names (it holds the one it
//! received). When a client goes away its messages become visible again after
//! [`RELEASE_INVISIBLE`], not after the rest of their invisibility.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::consume::{parse_handle, retry_delay};
use crate::service::{Backend, Messaging, Session};

/// How often renewals are looked at (`renewSchedulePeriodMillis`).
pub(crate) const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// A message is renewed once its invisibility ends within this (`renewAheadTimeMillis`).
pub(crate) const RENEW_AHEAD: Duration = Duration::from_secs(10);
/// Renewed for at most this long after it was received (`renewMaxTimeMillis`).
pub(crate) const RENEW_MAX: Duration = Duration::from_secs(3 * 3600);
/// The invisibility each renewal sets, by how often the message was renewed before
/// (the proxy's `RenewStrategyPolicy`); the last one repeats.
const RENEW_SLICES: [Duration; 6] = [
    Duration::from_secs(60),
    Duration::from_secs(180),
    Duration::from_secs(300),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
];
/// Failed renewals of a message before it is left to expire (`maxRenewRetryTimes`).
const MAX_RENEW_FAILURES: u32 = 3;
/// The invisibility left to a gone client's messages (`invisibleTimeMillisWhenClear`).
pub(crate) const RELEASE_INVISIBLE: Duration = Duration::from_secs(1);

/// One auto-renewed message.
pub(crate) struct Renewal {
    group: String,
    topic: String,
    /// The handle the client was given.
    issued: String,
    /// The handle the broker knows now.
    latest: String,
    received_ms: i64,
    reconsume_times: i32,
    renewed: usize,
    failures: u32,
    /// Acked, changed, dead-lettered, handed back or given up: no longer renewed.
    settled: bool,
}

type Entry = Arc<tokio::sync::Mutex<Renewal>>;

/// A client's auto-renewed messages, by message id.
#[derive(Default)]
pub(crate) struct Renewals(Mutex<HashMap<String, Entry>>);

impl Renewals {
    /// Starts renewing a message just received with `handle`.
    pub(crate) fn add(&self, message_id: &str, group: &str, topic: &str, handle: &str, reconsume_times: i32) {
        let r = Renewal {
            group: group.to_owned(),
            topic: topic.to_owned(),
            issued: handle.to_owned(),
            latest: handle.to_owned(),
            received_ms: common::time::now_ms(),
            reconsume_times,
            renewed: 0,
            failures: 0,
            settled: false,
        };
        self.0.lock().insert(message_id.to_owned(), Arc::new(tokio::sync::Mutex::new(r)));
    }

    /// Stops renewing the message the client names by `message_id` and `handle`, and
    /// gives the handle the broker knows for it now: the renewed one, or `handle`
    /// itself if that message is not renewed. Waits for a renewal in flight, so that
    /// the answer is never a handle the renewal is replacing.
    pub(crate) async fn settle(&self, message_id: &str, handle: &str) -> String {
        let Some(entry) = self.0.lock().get(message_id).cloned() else { return handle.to_owned() };
        let mut r = entry.lock().await;
        if r.settled || (r.issued != handle && r.latest != handle) {
            return handle.to_owned();
        }
        r.settled = true;
        self.forget(message_id, &entry);
        r.latest.clone()
    }

    fn forget(&self, message_id: &str, entry: &Entry) {
        let mut map = self.0.lock();
        if map.get(message_id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(message_id);
        }
    }

    fn entries(&self) -> Vec<(String, Entry)> {
        self.0.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Moves every renewal out (a client session replaced by a new one keeps them).
    pub(crate) fn take(&self) -> Self {
        Self(Mutex::new(std::mem::take(&mut *self.0.lock())))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

/// The invisibility the `n`th renewal of a message sets.
fn slice(renewed: usize) -> Duration {
    RENEW_SLICES[renewed.min(RENEW_SLICES.len() - 1)]
}

impl<B: Backend> Messaging<B> {
    /// Renews what is due among `s`'s auto-renewed messages.
    pub(crate) async fn renew_due(&self, s: &Session) {
        for (id, entry) in s.renewals.entries() {
            let mut r = entry.lock().await;
            if r.settled {
                continue;
            }
            let Ok((extra, commit_log_offset)) = parse_handle(&r.latest) else {
                r.settled = true;
                s.renewals.forget(&id, &entry);
                continue;
            };
            let now = common::time::now_ms();
            if extra.revive_time() - now > RENEW_AHEAD.as_millis() as i64 {
                continue;
            }
            let (group, topic) = (r.group.clone(), r.topic.clone());
            if now - r.received_ms >= RENEW_MAX.as_millis() as i64 {
                // Consumed for too long: handed back as a failed consumption.
                let delay = retry_delay(r.reconsume_times);
                if let Err(f) = self.change_invisible_of(s, &group, &topic, &extra, commit_log_offset, delay).await {
                    tracing::warn!(group, topic, message_id = %id, error = %f.message, "handing back a message consumed for too long failed");
                }
                r.settled = true;
                s.renewals.forget(&id, &entry);
                continue;
            }
            match self.change_invisible_of(s, &group, &topic, &extra, commit_log_offset, slice(r.renewed)).await {
                Ok(handle) => {
                    r.latest = handle;
                    r.renewed += 1;
                    r.failures = 0;
                }
                Err(f) => {
                    r.failures += 1;
                    tracing::warn!(group, topic, message_id = %id, error = %f.message, failures = r.failures, "renewing a message's invisibility failed");
                    if r.failures >= MAX_RENEW_FAILURES || f.code == crate::pb::Code::InvalidReceiptHandle {
                        r.settled = true;
                        s.renewals.forget(&id, &entry);
                    }
                }
            }
        }
    }

    /// Lets every unsettled auto-renewed message of a departing client become visible
    /// again after [`RELEASE_INVISIBLE`].
    pub(crate) async fn release(&self, s: &Session) {
        for (id, entry) in s.renewals.take().entries() {
            let mut r = entry.lock().await;
            if r.settled {
                continue;
            }
            r.settled = true;
            let Ok((extra, commit_log_offset)) = parse_handle(&r.latest) else { continue };
            let (group, topic) = (r.group.clone(), r.topic.clone());
            if let Err(f) =
                self.change_invisible_of(s, &group, &topic, &extra, commit_log_offset, RELEASE_INVISIBLE).await
            {
                tracing::debug!(group, topic, message_id = %id, error = %f.message, "releasing a departing client's message failed; it comes back after its invisibility");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_lengthen_then_repeat_the_longest() {
        assert_eq!(slice(0), Duration::from_secs(60));
        assert_eq!(slice(1), Duration::from_secs(180));
        assert_eq!(slice(5), Duration::from_secs(3600));
        assert_eq!(slice(40), Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn settling_gives_the_latest_handle_once_and_leaves_other_handles_alone() {
        let r = Renewals::default();
        r.add("m1", "g", "t", "issued", 0);
        let entry = r.0.lock()["m1"].clone();
        entry.lock().await.latest = "renewed".to_owned();
        // Another handle of the same message (a later receive) is not ours to replace.
        assert_eq!(r.settle("m1", "other").await, "other");
        assert_eq!(r.len(), 1);
        assert_eq!(r.settle("m1", "issued").await, "renewed");
        assert_eq!(r.len(), 0);
        assert_eq!(r.settle("m1", "issued").await, "issued");
        assert_eq!(r.settle("unknown", "h").await, "h");
    }

    #[tokio::test]
    async fn a_taken_set_keeps_its_entries() {
        let r = Renewals::default();
        r.add("m1", "g", "t", "h1", 0);
        r.add("m2", "g", "t", "h2", 2);
        let moved = r.take();
        assert_eq!((r.len(), moved.len()), (0, 2));
    }
}
