// PERF-CRITICAL PATH
//! The single append path: a bounded request queue, the `store-append` writer thread
//! that owns the active commit-log segment, and the `store-alloc` thread that creates
//! the next segment (and, with SYNC_FLUSH or `warm_mapped_file_enable`, warms the
//! active one ahead of the writer), off the hot path.
//!
//! Callers ([`crate::MessageStore::put`]) validate and CRC their message on their own
//! thread, take a permit from the queue's semaphore (bounded: a full queue makes them
//! wait up to `put_queue_timeout`, then answer `OsPageCacheBusy`) and push. The writer
//! swaps the whole pending vector out under one short lock (group commit: everything
//! that arrived while it was busy is one batch), encodes each record into the
//! segment's [`LogWriter`] buffer, assigns physical offset, queue offset and store
//! timestamp, writes the batch with one `pwrite` and publishes it (`written`). Then it acknowledges ([`crate::ack`]):
//! * ASYNC_FLUSH — the batch is eligible as soon as it is published, so the writer
//!   dispatches it itself ([`crate::dispatch`]: consume-queue and index entries,
//!   arrival listener, from the tags codes it has in hand), request by request,
//!   answering each with its offsets as soon as its records are dispatched: the
//!   reply is the acknowledgement.
//! * SYNC_FLUSH — before publishing, it registers one visibility signal for the batch,
//!   which the flusher fires once the batch is durable and dispatched, and answers
//!   every request with its offsets and a waiter on that signal.
//!
//! No lock is held while encoding except the queue-offset table, which only the
//! writer and `delete_topic`/recovery touch; none is held while dispatching.
//!
//! Invariants:
//! * Store timestamps never decrease along the log (a clock step back reuses the last
//!   value), which is what consume-queue timestamp search relies on.
//! * A batch request lands contiguously in one segment with consecutive queue offsets.
//! * PREPARED and ROLLBACK transaction records get queue offset 0 and do not advance
//!   the queue's counter.
//! * `written` moves only after every record below it is fully encoded and its
//!   segment's published prefix covers it, and after the signal of the batch that
//!   ends there is registered.
//! * With ASYNC_FLUSH a put is answered only after `dispatched` has passed its
//!   records (or dispatch stopped on an unreadable record, which is logged).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::record::{self, RecordRef};
use common::sysflag::message::{transaction_type, TRANSACTION_PREPARED_TYPE, TRANSACTION_ROLLBACK_TYPE};
use parking_lot::{Condvar, Mutex};
use tokio::sync::{oneshot, Semaphore, TryAcquireError};

use crate::ack::{self, Waiter};
use crate::dispatch::{Dispatcher, KnownTags};
use crate::error::{Error, Result};
use crate::mapped_file::{Access, LogWriter, MappedFile};
use crate::settings::segment_name;
use crate::store::Core;
use crate::types::{PutMessage, PutStatus};

/// A validated message with its precomputed body CRC and encoded length.
pub(crate) struct Prepared {
    pub msg: PutMessage,
    pub crc: u32,
    pub len: usize,
}

pub(crate) enum Payload {
    One(Prepared),
    /// Records of one topic/queue, appended contiguously; `usize` is the total length.
    Batch(Vec<Prepared>, usize),
    /// A replica's copy of its master's commit log from `offset` (see
    /// [`crate::MessageStore::append_replicated`]): raw bytes, written as they are.
    Raw {
        offset: i64,
        data: bytes::Bytes,
    },
}

pub(crate) struct AppendRequest {
    pub payload: Payload,
    pub reply: oneshot::Sender<Appended>,
}

/// What a stored put still waits for once the writer has answered (see
/// [`crate::ack`]).
#[derive(Debug, Clone)]
pub(crate) struct Acks {
    /// SYNC_FLUSH: fired by the flusher once the batch is durable and visible to
    /// every read path.
    pub visible: Option<Waiter>,
    /// SYNC_MASTER: fired once a replica reports holding the batch.
    pub replica: Option<Waiter>,
}

/// What the writer did with a request.
#[derive(Debug, Clone)]
pub(crate) struct Appended {
    pub status: PutStatus,
    pub phy: i64,
    pub wrote: usize,
    pub queue_offset: i64,
    pub store_ts: i64,
    /// Global offset just past this request's last record.
    pub end: i64,
    pub count: usize,
    pub batch_offsets: Vec<i64>,
    /// Set when the request was stored and its acknowledgement needs more than this
    /// reply (SYNC_FLUSH); `None` for a stored ASYNC_FLUSH request, already visible.
    pub acks: Option<Acks>,
}

impl Appended {
    fn failed(status: PutStatus) -> Self {
        Self {
            status,
            phy: -1,
            wrote: 0,
            queue_offset: -1,
            store_ts: 0,
            end: 0,
            count: 0,
            batch_offsets: Vec::new(),
            acks: None,
        }
    }
}

struct QueueState {
    items: Vec<AppendRequest>,
    closed: bool,
    writer_waiting: bool,
}

/// The bounded multi-producer queue in front of the writer.
pub(crate) struct AppendQueue {
    state: Mutex<QueueState>,
    cond: Condvar,
    permits: Semaphore,
}

impl AppendQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(QueueState { items: Vec::with_capacity(1024), closed: false, writer_waiting: false }),
            cond: Condvar::new(),
            permits: Semaphore::new(capacity.max(1)),
        }
    }

    /// Enqueues `req`, waiting up to `timeout` for room.
    pub(crate) async fn push(&self, req: AppendRequest, timeout: Duration) -> Result<(), PutStatus> {
        match self.permits.try_acquire() {
            Ok(p) => p.forget(),
            Err(TryAcquireError::Closed) => return Err(PutStatus::ServiceNotAvailable),
            Err(TryAcquireError::NoPermits) => match tokio::time::timeout(timeout, self.permits.acquire()).await {
                Ok(Ok(p)) => p.forget(),
                Ok(Err(_)) => return Err(PutStatus::ServiceNotAvailable),
                Err(_) => return Err(PutStatus::OsPageCacheBusy),
            },
        }
        let wake = {
            let mut st = self.state.lock();
            if st.closed {
                drop(st);
                self.permits.add_permits(1);
                return Err(PutStatus::ServiceNotAvailable);
            }
            st.items.push(req);
            std::mem::take(&mut st.writer_waiting)
        };
        if wake {
            self.cond.notify_one();
        }
        Ok(())
    }

    /// Blocks until requests are pending and moves all of them into `out` (empty on
    /// entry). Returns false once the queue is closed and drained.
    fn drain_blocking(&self, out: &mut Vec<AppendRequest>) -> bool {
        let mut st = self.state.lock();
        loop {
            if !st.items.is_empty() {
                std::mem::swap(out, &mut st.items);
                drop(st);
                self.permits.add_permits(out.len());
                return true;
            }
            if st.closed {
                return false;
            }
            st.writer_waiting = true;
            self.cond.wait(&mut st);
        }
    }

    /// Refuses new requests; the writer drains what is queued and stops.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.permits.close();
        self.cond.notify_all();
    }
}

/// Per-topic, per-queue next queue offset.
pub(crate) type TopicTable = HashMap<String, HashMap<i32, i64>>;

/// The writer thread's state: it alone owns the active segment.
pub(crate) struct Writer {
    core: Arc<Core>,
    active: LogWriter,
    last_ts: i64,
}

impl Writer {
    pub(crate) fn new(core: Arc<Core>, active: LogWriter, last_ts: i64) -> Self {
        Self { core, active, last_ts }
    }

    fn global_pos(&self) -> i64 {
        self.active.file().start() + self.active.pos() as i64
    }

    /// The writer thread's loop; returns when the queue is closed and drained.
    pub(crate) fn run(mut self) {
        let _span = tracing::info_span!("append").entered();
        let mut batch: Vec<AppendRequest> = Vec::with_capacity(1024);
        let mut replies: Vec<(oneshot::Sender<Appended>, Appended)> = Vec::with_capacity(1024);
        // The batch's tags codes, for dispatching it here (ASYNC_FLUSH).
        let mut tags: Vec<(i64, i64)> = Vec::with_capacity(4096);
        let mut dispatcher = Dispatcher::new();
        let core = self.core.clone();
        let sync = core.settings.sync_flush;
        let replicated = core.settings.opts.replica_ack.is_some();
        while core.queue.drain_blocking(&mut batch) {
            let now = common::time::now_ms().max(self.last_ts);
            self.last_ts = now;
            // SYNC_FLUSH, SYNC_MASTER: one signal per condition for the whole batch,
            // created with its first stored request. A replicated append waits for
            // nothing: the master that sent it waits for its report.
            let mut visible = None;
            let mut replica = None;
            {
                let mut table = core.topic_table.lock();
                for req in batch.drain(..) {
                    let raw = matches!(req.payload, Payload::Raw { .. });
                    let mut res = self.append(&req.payload, now, &mut table, &mut tags);
                    if res.status == PutStatus::PutOk && !raw && (sync || replicated) {
                        res.acks = Some(Acks {
                            visible: sync.then(|| visible.get_or_insert_with(ack::signal).1.clone()),
                            replica: replicated.then(|| replica.get_or_insert_with(ack::signal).1.clone()),
                        });
                    }
                    replies.push((req.reply, res));
                }
            }
            if let Err(e) = self.active.publish() {
                // Nothing of the batch reached the file (the write position is back at
                // the published end): refuse it, and everything after it.
                tracing::error!(error = %e, "commit log write failed; refusing further writes");
                core.writable.store(false, Ordering::Release);
                for (_, res) in &mut replies {
                    if res.status == PutStatus::PutOk {
                        *res = Appended::failed(PutStatus::UnknownError);
                    }
                }
                visible = None;
                replica = None;
                tags.clear();
            }
            let end = self.global_pos();
            // Registered before `written` moves, so the flusher (or the replicas'
            // reports) cannot pass these records without finding their signal.
            if let Some((signal, _)) = visible {
                core.visible_waiters.register(end, signal);
            }
            if let Some((signal, _)) = replica {
                core.replica_waiters.register(end, signal);
            }
            core.commit_log.set_written(end);
            core.last_written_ts.store(now, Ordering::Release);
            core.appended.notify_waiters();
            core.stats.writer_batches.fetch_add(1, Ordering::Relaxed);
            if sync {
                core.wake_flusher();
                for (reply, res) in replies.drain(..) {
                    let _ = reply.send(res);
                }
            } else {
                // Eligible now: make each request visible, then answer it, so the reply
                // is the acknowledgement and no other thread sits on the ack path. One
                // request at a time, so the first puts of the batch are on their way
                // (on the runtime's workers) while the writer dispatches the rest.
                let mut known = KnownTags::new(&tags);
                for (reply, res) in replies.drain(..) {
                    // A failed request has `end == 0` and nothing to dispatch.
                    dispatcher.dispatch_to(&core, res.end, &mut known);
                    let _ = reply.send(res);
                }
                // What follows the last stored request (a roll-over's blank).
                dispatcher.dispatch_to(&core, end, &mut known);
                dispatcher.finish();
            }
            tags.clear();
        }
        if let Err(e) = self.active.publish() {
            tracing::error!(error = %e, "commit log write failed at shutdown");
        }
        let end = self.global_pos();
        core.commit_log.set_written(end);
        if !sync {
            dispatcher.dispatch_to(&core, end, &mut KnownTags::none());
            dispatcher.finish();
        }
    }

    fn append(&mut self, payload: &Payload, now: i64, table: &mut TopicTable, tags: &mut Vec<(i64, i64)>) -> Appended {
        if !self.core.writable.load(Ordering::Acquire) {
            return Appended::failed(PutStatus::UnknownError);
        }
        let total = match payload {
            Payload::One(p) => p.len,
            Payload::Batch(_, total) => *total,
            Payload::Raw { offset, data } => return self.append_raw(*offset, data),
        };
        if total + record::BLANK_LEN > self.active.remaining() {
            if let Err(e) = self.roll() {
                tracing::error!(error = %e, "commit log roll-over failed; refusing further writes");
                self.core.writable.store(false, Ordering::Release);
                return Appended::failed(PutStatus::UnknownError);
            }
            if total + record::BLANK_LEN > self.active.remaining() {
                return Appended::failed(PutStatus::MessageIllegal);
            }
        }
        match payload {
            Payload::Raw { .. } => unreachable!("replicated appends return above"),
            Payload::One(p) => {
                let qo = next_queue_offset(table, &p.msg, 1);
                let phy = self.global_pos();
                if let Err(status) = self.encode(p, qo, phy, now) {
                    return Appended::failed(status);
                }
                tags.push((phy, p.msg.tags_code));
                Appended {
                    status: PutStatus::PutOk,
                    phy,
                    wrote: p.len,
                    queue_offset: qo,
                    store_ts: now,
                    end: phy + p.len as i64,
                    count: 1,
                    batch_offsets: Vec::new(),
                    acks: None,
                }
            }
            Payload::Batch(items, total) => {
                let first = &items[0].msg;
                let qo = next_queue_offset(table, first, items.len() as i64);
                let is_tx = is_prepared_or_rollback(first.sys_flag);
                let start = self.global_pos();
                let mut offsets = Vec::with_capacity(items.len());
                for (i, p) in items.iter().enumerate() {
                    let phy = self.global_pos();
                    let q = if is_tx { 0 } else { qo + i as i64 };
                    if let Err(status) = self.encode(p, q, phy, now) {
                        // Validation happened before enqueueing; this is unreachable in
                        // practice. Records already written stay (they are complete).
                        return Appended::failed(status);
                    }
                    tags.push((phy, p.msg.tags_code));
                    offsets.push(phy);
                }
                Appended {
                    status: PutStatus::PutOk,
                    phy: start,
                    wrote: *total,
                    queue_offset: qo,
                    store_ts: now,
                    end: start + *total as i64,
                    count: items.len(),
                    batch_offsets: offsets,
                    acks: None,
                }
            }
        }
    }

    /// Writes a replica's copy of its master's log at `offset`, which must be this
    /// log's end — or, in an empty log, the start of a segment: a replica that had
    /// nothing starts at its master's newest segment.
    fn append_raw(&mut self, offset: i64, data: &bytes::Bytes) -> Appended {
        let failed = |why: &str| {
            tracing::warn!(offset, len = data.len(), reason = why, "replicated data refused");
            Appended::failed(PutStatus::MessageIllegal)
        };
        if offset != self.global_pos() {
            let seg = self.core.commit_log.segment_size() as i64;
            let empty = self.global_pos() == self.active.file().start() && self.core.commit_log.segments().len() == 1;
            if !(empty && self.global_pos() == 0 && offset % seg == 0) {
                return failed("not at the end of this log");
            }
            if let Err(e) = self.rebase(offset) {
                tracing::error!(error = %e, "moving an empty commit log to its master's offset failed");
                return Appended::failed(PutStatus::UnknownError);
            }
        }
        if self.active.remaining() == 0 {
            // The master's segment ended with its own blank record, copied already.
            if let Err(e) = self.roll_full() {
                tracing::error!(error = %e, "commit log roll-over failed; refusing further writes");
                self.core.writable.store(false, Ordering::Release);
                return Appended::failed(PutStatus::UnknownError);
            }
        }
        if data.len() > self.active.remaining() {
            return failed(
                "crosses a segment boundary: are the commit-log segment sizes the same on master and slave?",
            );
        }
        if let Err(e) = self.active.append_with(data.len(), |buf| buf.copy_from_slice(data)) {
            tracing::error!(error = %e, "commit log write failed; refusing further writes");
            self.core.writable.store(false, Ordering::Release);
            return Appended::failed(PutStatus::UnknownError);
        }
        Appended {
            status: PutStatus::PutOk,
            phy: offset,
            wrote: data.len(),
            queue_offset: -1,
            store_ts: 0,
            end: offset + data.len() as i64,
            count: 0,
            batch_offsets: Vec::new(),
            acks: None,
        }
    }

    /// The segment starting at `start`, from the allocator, and its writer.
    fn new_segment(&self, start: i64) -> Result<(Arc<MappedFile>, LogWriter)> {
        let next = self.core.allocator.take(start)?;
        let writer = next.take_log_writer().ok_or(Error::Corrupt {
            path: next.path().to_owned(),
            offset: 0,
            reason: "new segment already has a writer",
        })?;
        Ok((next, writer))
    }

    /// Continues in the next segment after one filled to the last byte.
    fn roll_full(&mut self) -> Result<()> {
        self.active.publish()?;
        let next_start = self.active.file().end();
        let (next, writer) = self.new_segment(next_start)?;
        self.core.allocator.warm_active(next.clone(), WARM_AHEAD);
        self.core.commit_log.push_segment(next);
        self.active = writer;
        self.core.allocator.prefetch(next_start + self.core.commit_log.segment_size() as i64);
        Ok(())
    }

    /// Moves an empty log to start at `start` (a segment boundary): its one empty
    /// segment is replaced by one named after `start`, and every offset moves there.
    fn rebase(&mut self, start: i64) -> Result<()> {
        let (next, writer) = self.new_segment(start)?;
        self.core.allocator.warm_active(next.clone(), WARM_AHEAD);
        let old = self.core.commit_log.replace_segments(vec![next]);
        self.active = writer;
        for seg in old {
            let path = seg.path().to_owned();
            drop(seg);
            let _ = std::fs::remove_file(&path);
        }
        let c = &self.core;
        c.commit_log.set_written(start);
        c.commit_log.set_flushed(start);
        c.set_dispatched(start);
        c.allocator.prefetch(start + c.commit_log.segment_size() as i64);
        tracing::info!(start, "an empty commit log now starts at its master's newest segment");
        crate::flush::checkpoint_now(c)
    }

    #[inline]
    fn encode(&mut self, p: &Prepared, queue_offset: i64, phy: i64, now: i64) -> Result<(), PutStatus> {
        let m = &p.msg;
        let rec = RecordRef {
            topic: &m.topic,
            queue_id: m.queue_id,
            flag: m.flag,
            queue_offset,
            physical_offset: phy,
            sys_flag: m.sys_flag,
            born_timestamp: m.born_timestamp,
            born_host: m.born_host,
            store_timestamp: now,
            store_host: self.core.store_host,
            reconsume_times: m.reconsume_times,
            prepared_transaction_offset: m.prepared_transaction_offset,
            body: &m.body,
            properties: m.properties.as_bytes(),
            body_crc: Some(p.crc),
        };
        match self.active.append_with(p.len, |mut buf| rec.encode(&mut buf)) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(PutStatus::MessageIllegal),
            Err(e) => {
                tracing::error!(error = %e, "commit log write failed; refusing further writes");
                self.core.writable.store(false, Ordering::Release);
                Err(PutStatus::UnknownError)
            }
        }
    }

    /// Seals the active segment with a BLANK entry and continues in the next one.
    fn roll(&mut self) -> Result<()> {
        let rem = self.active.remaining();
        self.active.append_with(rem, |b| record::write_blank(b, rem))?;
        self.roll_full()
    }
}

fn is_prepared_or_rollback(sys_flag: i32) -> bool {
    let t = transaction_type(sys_flag);
    t == TRANSACTION_PREPARED_TYPE || t == TRANSACTION_ROLLBACK_TYPE
}

/// Reserves `n` consecutive queue offsets (0 and no reservation for PREPARED/ROLLBACK).
#[inline]
fn next_queue_offset(table: &mut TopicTable, m: &PutMessage, n: i64) -> i64 {
    if is_prepared_or_rollback(m.sys_flag) {
        return 0;
    }
    let queues = match table.get_mut(m.topic.as_str()) {
        Some(q) => q,
        None => table.entry(m.topic.clone()).or_default(),
    };
    let slot = queues.entry(m.queue_id).or_insert(0);
    let q = *slot;
    *slot += n;
    q
}

struct AllocState {
    pending: Option<i64>,
    ready: Option<(i64, Result<MappedFile>)>,
    /// The active segment to warm, from this position on, a little ahead of the
    /// writer.
    warm_active: Option<(Arc<MappedFile>, usize)>,
    /// The warming is far enough ahead of the writer and waits for it.
    parked: bool,
    busy: bool,
    stopped: bool,
}

/// How far ahead of the writer the active segment is kept warm (zeroes written).
const WARM_AHEAD: usize = 128 * 1024 * 1024;
/// What one `zero_fill` call writes: under a millisecond, so shutdown never waits
/// long, and neither does a writer that caught up with the fill.
const WARM_CHUNK: usize = 4 * 1024 * 1024;
/// How often parked warming looks at the writer's position.
const WARM_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Creates (and warms) the next commit-log segment on the `store-alloc` thread.
pub(crate) struct Allocator {
    dir: PathBuf,
    size: usize,
    /// Pre-fault pages ahead of the writer (SYNC_FLUSH, or `warm_mapped_file_enable`).
    warm: bool,
    /// Also write the zeroed pages to disk before use (SYNC_FLUSH): later syncs then
    /// overwrite allocated, initialised blocks and need no journal commit for block
    /// allocation — measured ~0.1 ms instead of ~1–4 ms per sync on ext4.
    preinit: bool,
    state: Mutex<AllocState>,
    cond: Condvar,
}

impl Allocator {
    pub(crate) fn new(dir: PathBuf, size: usize, warm: bool, preinit: bool) -> Self {
        Self {
            dir,
            size,
            warm,
            preinit: warm && preinit,
            state: Mutex::new(AllocState {
                pending: None,
                ready: None,
                warm_active: None,
                parked: false,
                busy: false,
                stopped: false,
            }),
            cond: Condvar::new(),
        }
    }

    fn create(&self, start: i64) -> Result<MappedFile> {
        let path = self.dir.join(segment_name(start));
        let f = match MappedFile::create(&path, start, self.size, Access::Append) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                // A pre-allocated segment left by the previous run (recovery removes
                // them, so this is only a race with a concurrent request).
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                MappedFile::create(&path, start, self.size, Access::Append)?
            }
            other => other?,
        };
        if self.warm {
            // Its first part only: the rest is warmed once it is the active segment,
            // at the writer's pace.
            let filled = f.zero_fill(0, WARM_AHEAD)?;
            if self.preinit {
                f.flush_range(filled.start, filled.end)?;
            }
        }
        Ok(f)
    }

    /// Asks for the rest of the active segment (from `from`) to be warmed in the
    /// background; safe while the writer appends (see [`MappedFile::zero_fill`]).
    pub(crate) fn warm_active(&self, seg: Arc<MappedFile>, from: usize) {
        if self.warm {
            self.state.lock().warm_active = Some((seg, from));
            self.cond.notify_all();
        }
    }

    /// Whether the allocator has nothing to do now: the next segment is ready and
    /// the active one is warm as far ahead of the writer as it is kept.
    pub(crate) fn is_idle(&self) -> bool {
        let st = self.state.lock();
        !st.busy && st.pending.is_none() && (st.warm_active.is_none() || st.parked)
    }

    /// Asks for the segment at `start` to be prepared in the background.
    pub(crate) fn prefetch(&self, start: i64) {
        let mut st = self.state.lock();
        if st.pending.is_none() && st.ready.is_none() && !st.stopped {
            st.pending = Some(start);
            self.cond.notify_all();
        }
    }

    /// The segment at `start`: the prepared one, or one created right now.
    pub(crate) fn take(&self, start: i64) -> Result<Arc<MappedFile>> {
        let mut st = self.state.lock();
        loop {
            if let Some((s, _)) = &st.ready {
                if *s == start {
                    let (_, r) = st.ready.take().expect("checked");
                    return r.map(Arc::new);
                }
                // Prepared for another offset: discard it.
                if let Some((_, Ok(f))) = st.ready.take() {
                    let p = f.path().to_owned();
                    drop(f);
                    let _ = std::fs::remove_file(p);
                }
            }
            if st.stopped || st.pending.is_some_and(|p| p != start) {
                break;
            }
            if st.pending.is_none() {
                st.pending = Some(start);
            }
            self.cond.notify_all();
            self.cond.wait(&mut st);
        }
        drop(st);
        tracing::debug!(start, "creating commit log segment on the append path");
        self.create(start).map(Arc::new)
    }

    /// The `store-alloc` thread's loop. `written` is the commit log's written end:
    /// the active segment is warmed at most [`WARM_AHEAD`] bytes ahead of it, so that
    /// a freshly started broker does not zero a whole segment (or two) at once while
    /// it serves its first requests, and the cost of warming is spread evenly.
    pub(crate) fn run(&self, written: impl Fn() -> i64) {
        let _span = tracing::info_span!("alloc").entered();
        let mut st = self.state.lock();
        loop {
            if st.stopped {
                break;
            }
            // The next segment first (only a sparse file and its first part to warm).
            if let Some(start) = st.pending {
                st.busy = true;
                drop(st);
                let r = self.create(start);
                if let Err(e) = &r {
                    tracing::warn!(error = %e, start, "pre-allocating commit log segment failed");
                }
                st = self.state.lock();
                st.ready = Some((start, r));
                st.pending = None;
                st.busy = false;
                self.cond.notify_all();
                continue;
            }
            let Some((seg, from)) = st.warm_active.take() else {
                st.parked = false;
                self.cond.wait(&mut st);
                continue;
            };
            let pos = usize::try_from(written() - seg.start()).unwrap_or(0);
            // A chunk's length past the writer, so that it seldom waits for a fill.
            let at = from.max(pos + WARM_CHUNK);
            if at >= seg.size() {
                st.parked = false;
                continue;
            }
            if at >= pos + WARM_AHEAD {
                st.warm_active = Some((seg, at));
                st.parked = true;
                self.cond.wait_for(&mut st, WARM_POLL);
                continue;
            }
            st.busy = true;
            st.parked = false;
            drop(st);
            let end = (at + WARM_CHUNK).min(seg.size());
            let warmed = match seg.zero_fill(at, end) {
                Ok(filled) if self.preinit => seg.flush_range(filled.start, filled.end),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            let warmed = match warmed {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "warming the active segment failed; it continues unwarmed");
                    false
                }
            };
            st = self.state.lock();
            st.busy = false;
            // Unless the writer moved to a newer segment meanwhile, or warming is
            // unsupported here.
            if warmed && st.warm_active.is_none() {
                st.warm_active = Some((seg, end));
            }
            self.cond.notify_all();
        }
    }

    pub(crate) fn stop(&self) {
        let mut st = self.state.lock();
        st.stopped = true;
        self.cond.notify_all();
    }
}

/// Checks a message against the record layout and the store limits, and computes its
/// body CRC (on the caller's thread, off the writer).
pub(crate) fn prepare(
    msg: PutMessage,
    store_host: SocketAddr,
    max_message_size: usize,
    segment_size: usize,
) -> Result<Prepared, PutStatus> {
    if msg.topic.is_empty() || msg.topic.len() > record::MAX_TOPIC_LEN_V1 {
        return Err(PutStatus::MessageIllegal);
    }
    if msg.body.len() > max_message_size {
        return Err(PutStatus::MessageIllegal);
    }
    if msg.properties.len() > common::properties::MAX_PROPERTIES_LEN {
        return Err(PutStatus::PropertiesSizeExceeded);
    }
    let len = RecordRef {
        topic: &msg.topic,
        queue_id: msg.queue_id,
        flag: msg.flag,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: msg.sys_flag,
        born_timestamp: msg.born_timestamp,
        born_host: msg.born_host,
        store_timestamp: 0,
        store_host,
        reconsume_times: msg.reconsume_times,
        prepared_transaction_offset: msg.prepared_transaction_offset,
        body: &msg.body,
        properties: msg.properties.as_bytes(),
        body_crc: Some(0),
    }
    .encoded_len()
    .map_err(|_| PutStatus::MessageIllegal)?;
    if len + record::BLANK_LEN > segment_size {
        return Err(PutStatus::MessageIllegal);
    }
    let crc = common::hash::body_crc(&msg.body);
    Ok(Prepared { msg, crc, len })
}
