// PERF-CRITICAL PATH
//! Dispatching (RocketMQ's `ReputMessageService`): reads records back from the
//! commit log, appends their consume-queue entries and index entries, tells the
//! arrival listener, and advances `dispatched`. There is no dispatcher thread: a
//! range is dispatched by the thread that makes it eligible, right after doing so,
//! and that thread then acknowledges the puts it made visible ([`crate::ack`]):
//!
//! * ASYNC_FLUSH — the `store-append` writer, after publishing a batch (`written`
//!   moved), request by request: it answers each request once its records are
//!   dispatched, and that reply is the acknowledgement.
//! * SYNC_FLUSH — the `store-flush` thread, after a sync (`flushed` moved); then it
//!   fires the visibility signals of the batches it covered.
//! * Recovery and shutdown — the thread opening or closing the store, with no other
//!   store thread running ([`dispatch_range`]).
//!
//! So the acknowledgement crosses no thread beyond the one that had to run anyway,
//! and at any moment at most one thread dispatches: a [`Dispatcher`] is owned by the
//! writer or by the flusher, never both.
//!
//! Records are always read back from the mapping rather than taken from the writer's
//! requests, because not every record is encoded by this store's writer (recovery
//! re-dispatch; a replica appending its master's bytes). Tags codes the writer has
//! in hand ([`KnownTags`]) save re-deriving them; a record without one is derived
//! from the record itself ([`derive_tags_code`]), with the same result.
//!
//! The arrival listener runs on the dispatching thread, i.e. on the writer or the
//! flusher, so it must stay cheap and never block: the broker's does hash-map lookups
//! under short locks, a tag or SQL92 check per pull parked on that queue, and
//! oneshot/notify sends.
//!
//! Invariants:
//! * Live dispatch reads up to `written` with ASYNC_FLUSH and up to `flushed` with
//!   SYNC_FLUSH, so with SYNC_FLUSH no consumer ever sees a message that could be
//!   lost.
//! * `dispatched` only moves forward, and only past a record after its consume-queue
//!   entry is visible, so readers that go through consume queues or check
//!   `dispatched` never return a record that is not visible.
//! * A put is acknowledged only after `dispatched` has passed its records, so an
//!   acknowledged message is returned by every read path.
//! * Dispatching is idempotent (consume queues ignore offsets below their max; the
//!   index ignores offsets below its last one), which makes re-dispatch after a crash
//!   safe.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::properties::{find_in_encoded, keys, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR};
use common::record::{self, Entry, RecordView};
use common::sysflag::message::{transaction_type, TRANSACTION_PREPARED_TYPE, TRANSACTION_ROLLBACK_TYPE};

use crate::consume_queue::ConsumeQueue;
use crate::settings::StoreOptions;
use crate::store::Core;
use crate::types::{Arrival, ArrivalListener, CqEntry};

/// The consume-queue tags code RocketMQ derives from a stored record: the delivery
/// time (`store timestamp + delay`) for `SCHEDULE_TOPIC_XXXX` records with a `DELAY`
/// level, the `TIMER_DELIVER_MS` property for the timer topic, else the Java hash
/// of `TAGS` (0 without a tag).
pub fn derive_tags_code(view: &RecordView<'_>, opts: &StoreOptions) -> i64 {
    let props = std::str::from_utf8(view.properties_raw()).unwrap_or("");
    if view.topic() == common::topic::TIMER_TOPIC {
        if let Some(at) = find_in_encoded(props, keys::TIMER_DELIVER_MS).and_then(|v| v.parse::<i64>().ok()) {
            return at;
        }
    }
    if view.topic() == common::topic::SCHEDULE_TOPIC {
        if let Some(level) = find_in_encoded(props, keys::DELAY_TIME_LEVEL).and_then(|l| l.parse::<i32>().ok()) {
            let delay = opts.delay_levels.delay(level).map_or(1000, |d| d.as_millis() as i64);
            return view.store_timestamp() + delay;
        }
    }
    common::hash::tags_code(find_in_encoded(props, keys::TAGS))
}

/// Tags codes the writer has in hand for records it just encoded, as `(commit-log
/// offset, code)` in commit-log order. Records not listed get theirs derived.
#[derive(Clone, Copy)]
pub(crate) struct KnownTags<'a> {
    codes: &'a [(i64, i64)],
}

impl<'a> KnownTags<'a> {
    /// No codes in hand: derive every one (recovery, shutdown, SYNC_FLUSH).
    pub(crate) fn none() -> KnownTags<'static> {
        KnownTags { codes: &[] }
    }

    pub(crate) fn new(codes: &'a [(i64, i64)]) -> Self {
        Self { codes }
    }

    /// The code of the record at `phy`, dropping the codes of records before it.
    #[inline]
    fn take(&mut self, phy: i64) -> Option<i64> {
        while let Some((&(p, code), rest)) = self.codes.split_first() {
            if p > phy {
                return None;
            }
            self.codes = rest;
            if p == phy {
                return Some(code);
            }
        }
        None
    }
}

/// Whether `buf` starts with the beginning of a record (or blank) whose end is not in
/// it yet: a replica appends its master's log in transfers that may end mid-record,
/// and the rest follows with the next one. Anything else that does not parse is
/// unreadable.
fn incomplete(buf: &[u8]) -> bool {
    if buf.len() < 8 {
        return true;
    }
    let total = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
    let magic = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    let known = matches!(magic, record::MAGIC_V1 | record::MAGIC_V2 | record::BLANK_MAGIC);
    known && total >= record::BLANK_LEN as i32 && total as usize > buf.len()
}

/// Whether the records at `[at, limit)` end with a record not complete yet (see
/// [`incomplete`]): dispatch then resumes there once more is written.
pub(crate) fn waits_for_more(core: &Core, at: i64, limit: i64) -> bool {
    let Some(seg) = core.commit_log.segment_for(at) else { return false };
    let local = (at - seg.start()) as usize;
    let avail = ((limit - seg.start()) as usize).min(seg.published());
    avail > local && seg.read(local, avail - local).is_some_and(incomplete)
}

/// Dispatches every record in `[from, limit)`; returns where it stopped (`limit`;
/// earlier at a record not complete yet, see [`waits_for_more`]; or earlier on a
/// record it cannot parse, which is logged).
pub(crate) fn dispatch_range(core: &Core, from: i64, limit: i64, mut tags: KnownTags<'_>) -> (i64, u64) {
    dispatch_range_with(core, from, limit, &mut tags, &mut RangeCtx::new(core))
}

fn dispatch_range_with(core: &Core, from: i64, limit: i64, tags: &mut KnownTags<'_>, ctx: &mut RangeCtx) -> (i64, u64) {
    let cl = &core.commit_log;
    let mut pos = from;
    let mut count = 0u64;
    'segments: while pos < limit {
        let Some(seg) = cl.segment_for(pos) else {
            tracing::error!(offset = pos, "dispatch position has no commit log segment");
            break;
        };
        let local = (pos - seg.start()) as usize;
        let avail = ((limit - seg.start()) as usize).min(seg.published());
        if avail <= local {
            break;
        }
        let Some(buf) = seg.read(local, avail - local) else {
            break;
        };
        let mut at = 0usize;
        while at < buf.len() {
            match record::scan(&buf[at..], false) {
                Ok(Entry::Record(view)) => {
                    let phy = pos;
                    dispatch_one(core, &view, phy, tags.take(phy), ctx);
                    let size = view.total_size();
                    at += size;
                    pos += size as i64;
                    count += 1;
                    if count.is_multiple_of(64) {
                        core.set_dispatched(pos);
                    }
                }
                Ok(Entry::Blank(_)) => {
                    pos = seg.end();
                    continue 'segments;
                }
                Err(e) => {
                    if !incomplete(&buf[at..]) {
                        tracing::error!(offset = pos, error = %e, "unreadable record in the dispatch range; dispatch stops");
                    }
                    core.set_dispatched(pos);
                    return (pos, count);
                }
            }
        }
    }
    core.set_dispatched(pos);
    (pos, count)
}

/// What consecutive records reuse: within one range, or across the calls of one
/// writer batch or one sync ([`Dispatcher`]). Kept no longer, so that a listener
/// replaced or a topic deleted in the meantime is seen by the next batch.
struct RangeCtx {
    listener: Option<ArrivalListener>,
    /// The consume queue of the previous record: consecutive records often share
    /// one (a batch put, a busy queue), which saves the map lookup.
    queue: Option<Arc<ConsumeQueue>>,
}

impl RangeCtx {
    fn new(core: &Core) -> Self {
        // Cloned out, so a listener may replace itself without deadlocking.
        Self { listener: core.listener.read().clone(), queue: None }
    }
}

#[inline]
fn dispatch_one(core: &Core, view: &RecordView<'_>, phy: i64, tags: Option<i64>, ctx: &mut RangeCtx) {
    let tx = transaction_type(view.sys_flag());
    let topic = view.topic();
    let store_ts = view.store_timestamp();
    if tx != TRANSACTION_PREPARED_TYPE && tx != TRANSACTION_ROLLBACK_TYPE {
        // A delay-level delivery time depends on the store timestamp, which only the
        // writer knows: always derive it from the record.
        let tags = if topic == common::topic::SCHEDULE_TOPIC { None } else { tags };
        let tags_code = tags.unwrap_or_else(|| derive_tags_code(view, &core.settings.opts));
        let queue_id = view.queue_id();
        if !ctx.queue.as_ref().is_some_and(|q| q.queue_id() == queue_id && q.topic() == topic) {
            ctx.queue = Some(core.queue_for(topic, queue_id));
        }
        let cq = ctx.queue.as_ref().expect("set above");
        let entry = CqEntry { phy_offset: phy, size: view.total_size() as i32, tags_code };
        match cq.put(view.queue_offset(), entry) {
            Ok(()) => {
                if let Some(listener) = &ctx.listener {
                    listener(&Arrival {
                        topic,
                        queue_id,
                        queue_offset: view.queue_offset(),
                        tags_code,
                        store_timestamp: store_ts,
                        phy_offset: phy,
                        properties: view.properties_raw(),
                    });
                }
            }
            Err(e) => {
                tracing::error!(topic, queue_id, error = %e, "consume queue append failed")
            }
        }
    }
    if tx != TRANSACTION_ROLLBACK_TYPE {
        if let Some(index) = &core.index {
            let props = std::str::from_utf8(view.properties_raw()).unwrap_or("");
            let (uniq, words) = index_keys(props);
            if uniq.is_some() || words.is_some() {
                let words = words.into_iter().flat_map(|k| k.split(' '));
                if let Err(e) = index.build(topic, uniq.into_iter().chain(words), phy, store_ts) {
                    tracing::error!(error = %e, "index append failed");
                }
            }
        }
    }
    core.last_dispatched_ts.store(store_ts, Ordering::Relaxed);
}

/// The `UNIQ_KEY` and `KEYS` values of encoded properties (as
/// [`find_in_encoded`] finds each), in one pass: this runs on the writer's thread for
/// every record.
fn index_keys(props: &str) -> (Option<&str>, Option<&str>) {
    let (mut uniq, mut words) = (None, None);
    for piece in props.split(PROPERTY_SEPARATOR) {
        let Some((k, v)) = piece.split_once(NAME_VALUE_SEPARATOR) else { continue };
        if v.is_empty() {
            continue;
        }
        if k == keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX {
            uniq = uniq.or(Some(v));
        } else if k == keys::KEYS {
            words = words.or(Some(v));
        }
        if uniq.is_some() && words.is_some() {
            break;
        }
    }
    (uniq, words)
}

/// Live dispatching, owned by the one thread that makes ranges eligible while the
/// store runs: the writer with ASYNC_FLUSH, the flusher with SYNC_FLUSH.
pub(crate) struct Dispatcher {
    /// A dispatch stopped short of its limit (an unreadable record, logged). The bytes
    /// there do not change, so retrying would only repeat the error.
    stuck: bool,
    /// Set by the first call of a group, dropped by [`Dispatcher::finish`].
    ctx: Option<RangeCtx>,
}

impl Dispatcher {
    pub(crate) fn new() -> Self {
        Self { stuck: false, ctx: None }
    }

    /// Dispatches every record below `limit` not dispatched yet, then fires the
    /// visibility signals of the batches it covered. Call only once everything below
    /// `limit` is eligible (written, or durable with SYNC_FLUSH). Several calls may
    /// cover one writer batch or one sync piece by piece (`tags` keeps its place);
    /// [`Dispatcher::finish`] ends the group.
    pub(crate) fn dispatch_to(&mut self, core: &Core, limit: i64, tags: &mut KnownTags<'_>) {
        let from = core.dispatched();
        if !self.stuck && from < limit {
            let ctx = self.ctx.get_or_insert_with(|| RangeCtx::new(core));
            let (reached, _) = dispatch_range_with(core, from, limit, tags, ctx);
            core.visible_waiters.resolve_up_to(reached);
            if reached < limit && !waits_for_more(core, reached, limit) {
                tracing::error!(offset = reached, limit, "dispatch stopped; later records stay invisible");
                self.stuck = true;
            }
        }
        if self.stuck {
            // Their puts must not wait for a visibility that will not come: released
            // unfired, they answer from what they can check (see `ack`).
            core.visible_waiters.abandon_up_to(limit);
        }
    }

    /// Ends a group of [`Dispatcher::dispatch_to`] calls.
    pub(crate) fn finish(&mut self) {
        self.ctx = None;
    }
}

#[cfg(test)]
mod tests {
    use common::properties::{find_in_encoded, keys};

    use super::{index_keys, KnownTags};

    /// Looks up `wanted` offsets in order and compares the codes found.
    fn check(codes: &[(i64, i64)], wanted: &[i64], expected: &[Option<i64>]) {
        let mut known = KnownTags::new(codes);
        let got: Vec<Option<i64>> = wanted.iter().map(|&phy| known.take(phy)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn index_keys_match_separate_lookups() {
        for props in [
            "",
            "TAGS\u{1}a",
            "UNIQ_KEY\u{1}U1\u{2}KEYS\u{1}k1 k2",
            "KEYS\u{1}k1\u{2}TAGS\u{1}t\u{2}UNIQ_KEY\u{1}U2\u{2}UNIQ_KEY\u{1}U3",
            "KEYS\u{1}\u{2}KEYS\u{1}second\u{2}UNIQ_KEY",
        ] {
            let separate =
                (find_in_encoded(props, keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX), find_in_encoded(props, keys::KEYS));
            assert_eq!(index_keys(props), separate, "{props:?}");
        }
    }

    #[test]
    fn known_tags_are_found_in_commit_log_order_and_missing_ones_derived() {
        let codes = [(0, 7), (100, 8), (250, 9)];
        check(&codes, &[0, 100, 250], &[Some(7), Some(8), Some(9)]);
        // A record the writer did not encode (no code) between known ones.
        check(&codes, &[0, 50, 100, 250, 400], &[Some(7), None, Some(8), Some(9), None]);
        // Dispatch starting past some codes skips them.
        check(&codes, &[100, 250], &[Some(8), Some(9)]);
        check(&[], &[0, 10], &[None, None]);
    }
}
