// PERF-CRITICAL PATH
//! [`MessageStore`]: the store's public face, and [`Core`], the state its threads
//! share.
//!
//! Threads (all named, all owned by the store and joined on shutdown):
//! `store-append` (the writer; with ASYNC_FLUSH it also dispatches each batch),
//! `store-alloc` (next segment), `store-flush` (commit-log flush / group commit; with
//! SYNC_FLUSH it also dispatches what each sync made durable), `store-cq-flush`
//! (consume queue + index flush and checkpoint), `store-clean` (retention). There is
//! no dispatcher thread: see [`crate::dispatch`].
//! Async callers only touch channels and atomics; nothing here blocks a runtime
//! worker on disk I/O except reads of mapped memory in `get_messages` & co., which
//! hit the page cache for warm data (RocketMQ reads the same way).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::record::{RecordView, PREFETCH_AHEAD};
use config::StoreConfig;
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::ack::OffsetWaiters;
use crate::checkpoint::Checkpoint;
use crate::commit_log::CommitLog;
use crate::consume_queue::{decode_entry, ConsumeQueue};
use crate::dispatch::{self, KnownTags};
use crate::error::{Error, IoContext, Result};
use crate::flush;
use crate::index::IndexService;
use crate::recovery;
use crate::retention::{self, CleanReport};
use crate::settings::{Settings, StoreOptions, CQ_ENTRY_SIZE};
use crate::types::{
    ArrivalListener, GetRequest, GetResult, GetStatus, PutMessage, PutResult, PutStatus, RecoveryReport, StoreStats,
};
use crate::util::{self, StoreLock};
use crate::writer::{self, Acks, Allocator, AppendQueue, AppendRequest, Appended, Payload, TopicTable, Writer};

/// Counters behind [`StoreStats`].
#[derive(Default)]
pub(crate) struct Stats {
    pub puts_ok: AtomicU64,
    pub puts_failed: AtomicU64,
    pub put_bytes: AtomicU64,
    pub put_latency: [AtomicU64; 32],
    pub flushes: AtomicU64,
    pub writer_batches: AtomicU64,
    pub gets: AtomicU64,
    pub get_messages: AtomicU64,
}

type QueueMap = HashMap<String, HashMap<i32, Arc<ConsumeQueue>>>;

/// State shared by the store's threads and its handle.
pub(crate) struct Core {
    pub settings: Settings,
    pub store_host: SocketAddr,
    pub commit_log: CommitLog,
    pub queues: RwLock<QueueMap>,
    pub index: Option<IndexService>,
    pub queue: AppendQueue,
    pub allocator: Allocator,
    /// SYNC_FLUSH puts waiting for their records to be durable and dispatched, one
    /// signal per writer batch; registered by the writer, resolved by the flusher.
    pub visible_waiters: OffsetWaiters,
    /// SYNC_MASTER puts waiting for a replica to hold their records, one signal per
    /// writer batch; registered by the writer, resolved by [`MessageStore::replica_progress`].
    pub replica_waiters: OffsetWaiters,
    /// Connected replicas, and the most any of them holds (-1: none yet).
    pub replicas: AtomicUsize,
    pub replica_acked: AtomicI64,
    /// Whether SYNC_MASTER puts wait for replicas now (see
    /// [`MessageStore::set_replicas_required`]).
    pub replicas_required: AtomicBool,
    /// Wakes whoever streams the commit log (a master's replication connections)
    /// after every published batch.
    pub appended: tokio::sync::Notify,
    /// Reads stop before this commit-log offset (`i64::MAX`: no limit), see
    /// [`MessageStore::set_read_limit`].
    pub read_limit: AtomicI64,
    /// Wakes whoever waits for records the read limit held back (parked pulls).
    pub read_limit_raised: tokio::sync::Notify,
    pub topic_table: Mutex<TopicTable>,
    pub listener: RwLock<Option<ArrivalListener>>,
    pub checkpoint: Mutex<Checkpoint>,
    pub stats: Stats,
    dispatched: AtomicI64,
    pub last_written_ts: AtomicI64,
    pub last_flushed_ts: AtomicI64,
    pub last_dispatched_ts: AtomicI64,
    pub writable: AtomicBool,
    pub disk_full: AtomicBool,
    /// The last measured disk usage ratio of the store's file system, as `f64`
    /// bits; NaN until the first retention run or when it cannot be measured.
    pub disk_usage: AtomicU64,
    stopping: AtomicBool,
    halted: AtomicBool,
    pub writer_done: AtomicBool,
    flusher_thread: OnceLock<Thread>,
    pub(crate) clean_lock: Mutex<()>,
}

impl Core {
    #[inline]
    pub(crate) fn dispatched(&self) -> i64 {
        self.dispatched.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn set_dispatched(&self, pos: i64) {
        self.dispatched.store(pos, Ordering::Release);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    /// Wakes the flusher: with SYNC_FLUSH after each published batch (group commit),
    /// and once the writer has stopped.
    #[inline]
    pub(crate) fn wake_flusher(&self) {
        if let Some(t) = self.flusher_thread.get() {
            t.unpark();
        }
    }

    /// The consume queue of `topic`/`queue_id`, if it exists.
    #[inline]
    pub(crate) fn find_queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.queues.read().get(topic)?.get(&queue_id).cloned()
    }

    /// The consume queue of `topic`/`queue_id`, created if needed (dispatch).
    pub(crate) fn queue_for(&self, topic: &str, queue_id: i32) -> Arc<ConsumeQueue> {
        if let Some(q) = self.find_queue(topic, queue_id) {
            return q;
        }
        let mut map = self.queues.write();
        let queues = map.entry(topic.to_owned()).or_default();
        queues
            .entry(queue_id)
            .or_insert_with(|| {
                let dir = self.settings.cq_dir().join(topic).join(queue_id.to_string());
                Arc::new(ConsumeQueue::create(topic, queue_id, dir, self.settings.cq_segment))
            })
            .clone()
    }

    pub(crate) fn all_queues(&self) -> Vec<Arc<ConsumeQueue>> {
        self.queues.read().values().flat_map(|q| q.values().cloned()).collect()
    }
}

struct Threads {
    writer: Option<JoinHandle<()>>,
    alloc: Option<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
    cq_flusher: Option<JoinHandle<()>>,
    cleaner: Option<JoinHandle<()>>,
}

/// The message store: commit log, consume queues, index, flush, recovery and
/// retention behind one handle. Cheap to share behind an `Arc`; all methods take
/// `&self`.
///
/// Dropping it shuts it down cleanly (as [`MessageStore::shutdown`]).
pub struct MessageStore {
    pub(crate) core: Arc<Core>,
    threads: Mutex<Threads>,
    report: RecoveryReport,
    /// The directory's lock, released by [`MessageStore::shutdown`] so the same
    /// process may open the store again (a broker restarting in place) while stale
    /// handles to this one are still being dropped.
    lock: Mutex<Option<StoreLock>>,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("root", &self.core.settings.root)
            .field("commit_log_max_offset", &self.core.commit_log.written())
            .finish()
    }
}

fn spawn(name: &'static str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f).map_err(|source| Error::Thread { name, source })
}

impl MessageStore {
    /// Opens (creating if needed) the store under `config.store_path_root_dir`, runs
    /// recovery and starts the store threads. `store_host` is written into every
    /// record and must be the broker's client-reachable `ip:port`.
    ///
    /// # Errors
    /// Invalid configuration, I/O errors, a store locked by another process, or
    /// files that cannot belong to a store (foreign names, wrong sizes, gaps).
    pub fn open(config: Arc<StoreConfig>, store_host: SocketAddr) -> Result<Self> {
        Self::open_with(config, store_host, StoreOptions::default())
    }

    /// [`MessageStore::open`] with non-default [`StoreOptions`].
    ///
    /// # Errors
    /// As [`MessageStore::open`].
    pub fn open_with(config: Arc<StoreConfig>, store_host: SocketAddr, opts: StoreOptions) -> Result<Self> {
        let settings = Settings::from_config(&config, opts)?;
        let root = settings.root.clone();
        std::fs::create_dir_all(&root).at(&root)?;
        let lock = StoreLock::acquire(&root)?;
        let started = Instant::now();
        let rec = recovery::recover(&settings)?;
        let mut report = rec.report;
        let end = rec.end;

        let mut queue_map: QueueMap = HashMap::new();
        for q in rec.queues {
            queue_map.entry(q.topic().to_owned()).or_default().insert(q.queue_id(), Arc::new(q));
        }
        let active = rec.segments.last().cloned().expect("recovery leaves an active segment");
        let allocator = Allocator::new(
            settings.commit_log_dir(),
            settings.commit_log_segment,
            settings.warm || settings.sync_flush,
            settings.sync_flush,
        );
        let checkpoint = Checkpoint::open(&recovery::checkpoint_path(&root))?;
        let core = Arc::new(Core {
            store_host,
            commit_log: CommitLog::new(settings.commit_log_segment, rec.segments, end),
            queues: RwLock::new(queue_map),
            index: rec.index,
            queue: AppendQueue::new(settings.opts.put_queue_capacity),
            allocator,
            visible_waiters: OffsetWaiters::new(),
            replica_waiters: OffsetWaiters::new(),
            replicas: AtomicUsize::new(0),
            replica_acked: AtomicI64::new(-1),
            replicas_required: AtomicBool::new(true),
            appended: tokio::sync::Notify::new(),
            read_limit: AtomicI64::new(i64::MAX),
            read_limit_raised: tokio::sync::Notify::new(),
            topic_table: Mutex::new(HashMap::new()),
            listener: RwLock::new(None),
            checkpoint: Mutex::new(checkpoint),
            stats: Stats::default(),
            dispatched: AtomicI64::new(rec.redispatch_from),
            last_written_ts: AtomicI64::new(rec.last_store_ts),
            last_flushed_ts: AtomicI64::new(rec.last_store_ts),
            last_dispatched_ts: AtomicI64::new(rec.last_store_ts),
            writable: AtomicBool::new(true),
            disk_full: AtomicBool::new(false),
            disk_usage: AtomicU64::new(f64::NAN.to_bits()),
            stopping: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            writer_done: AtomicBool::new(false),
            flusher_thread: OnceLock::new(),
            clean_lock: Mutex::new(()),
            settings,
        });

        // Rebuild consume queues and index past their last good entry, before any
        // store thread runs (live dispatching starts from `end`).
        if rec.redispatch_from < end {
            let (reached, n) = dispatch::dispatch_range(&core, rec.redispatch_from, end, KnownTags::none());
            report.records_redispatched = n;
            if reached < end {
                tracing::error!(reached, end, "re-dispatch stopped early");
            }
        }
        core.set_dispatched(end);
        // Next queue offsets come from the rebuilt consume queues.
        {
            let mut table = core.topic_table.lock();
            for q in core.all_queues() {
                table.entry(q.topic().to_owned()).or_default().insert(q.queue_id(), q.max_offset());
            }
        }
        flush::checkpoint_now(&core)?;
        retention::measure_disk(&core);
        let abort = recovery::abort_path(&root);
        std::fs::write(&abort, b"").at(&abort)?;
        util::sync_dir(&root)?;
        let fresh = report.commit_log_end == 0 && report.truncated.is_none();
        if fresh {
            tracing::info!(root = %root.display(), "new store");
        } else if !report.clean_shutdown || report.truncated.is_some() {
            tracing::warn!(?report, elapsed_ms = started.elapsed().as_millis() as u64, "store recovered after a crash");
        } else {
            tracing::info!(commit_log_end = end, elapsed_ms = started.elapsed().as_millis() as u64, "store opened");
        }

        let writer = active.take_log_writer().ok_or(Error::Corrupt {
            path: active.path().to_owned(),
            offset: 0,
            reason: "active segment already has a writer",
        })?;
        core.allocator.warm_active(active.clone(), writer.pos());
        core.allocator.prefetch(active.end());
        let last_ts = core.last_written_ts.load(Ordering::Acquire);
        let w = Writer::new(core.clone(), writer, last_ts);
        let mut threads = Threads { writer: None, alloc: None, flusher: None, cq_flusher: None, cleaner: None };
        let c = core.clone();
        threads.alloc = Some(spawn("store-alloc", move || c.allocator.run(|| c.commit_log.written()))?);
        let c = core.clone();
        let h = spawn("store-flush", move || flush::run_flusher(c))?;
        let _ = core.flusher_thread.set(h.thread().clone());
        threads.flusher = Some(h);
        let c = core.clone();
        threads.writer = Some(spawn("store-append", move || {
            w.run();
            c.writer_done.store(true, Ordering::Release);
            c.wake_flusher();
        })?);
        let c = core.clone();
        threads.cq_flusher = Some(spawn("store-cq-flush", move || flush::run_cq_flusher(c))?);
        let c = core.clone();
        threads.cleaner = Some(spawn("store-clean", move || retention::run_cleaner(c))?);

        Ok(Self {
            core,
            threads: Mutex::new(threads),
            report,
            lock: Mutex::new(Some(lock)),
            shut_down: AtomicBool::new(false),
        })
    }

    /// What recovery found at open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Root directory of the store.
    pub fn root(&self) -> &std::path::Path {
        &self.core.settings.root
    }

    // ---------------------------------------------------------------- append

    /// Appends one message. Resolves once the message is visible to every read path
    /// (consume queue, index, lookups by offset); with SYNC_FLUSH only durable
    /// records become visible, so it is also durable (`FlushDiskTimeout` when it is
    /// not durable after `sync_flush_timeout`). Never blocks the calling runtime
    /// thread on disk I/O. With ASYNC_FLUSH the writer's answer is the
    /// acknowledgement (it dispatches before answering): one wake-up per put.
    ///
    /// Must be polled inside a tokio runtime with the time driver enabled (used for
    /// the queue and acknowledgement timeouts).
    pub async fn put(&self, msg: PutMessage) -> PutResult {
        let t0 = Instant::now();
        let c = &self.core;
        if let Some(status) = self.refuse() {
            return self.fail(status);
        }
        let p = match writer::prepare(msg, c.store_host, c.settings.max_message_size, c.settings.commit_log_segment) {
            Ok(p) => p,
            Err(status) => return self.fail(status),
        };
        self.submit(Payload::One(p), t0).await
    }

    /// Appends several messages of one topic and queue atomically: contiguous in the
    /// commit log with consecutive queue offsets (SEND_BATCH_MESSAGE). The result
    /// carries the first offsets and [`PutResult::batch_offsets`].
    pub async fn put_batch(&self, msgs: Vec<PutMessage>) -> PutResult {
        let t0 = Instant::now();
        let c = &self.core;
        if let Some(status) = self.refuse() {
            return self.fail(status);
        }
        let Some(first) = msgs.first() else {
            return self.fail(PutStatus::MessageIllegal);
        };
        let (topic, queue_id) = (first.topic.clone(), first.queue_id);
        let mut items = Vec::with_capacity(msgs.len());
        let mut total = 0usize;
        for m in msgs {
            if m.topic != topic || m.queue_id != queue_id {
                return self.fail(PutStatus::MessageIllegal);
            }
            match writer::prepare(m, c.store_host, c.settings.max_message_size, c.settings.commit_log_segment) {
                Ok(p) => {
                    total += p.len;
                    items.push(p);
                }
                Err(status) => return self.fail(status),
            }
        }
        if total + common::record::BLANK_LEN > c.settings.commit_log_segment {
            return self.fail(PutStatus::MessageIllegal);
        }
        self.submit(Payload::Batch(items, total), t0).await
    }

    fn refuse(&self) -> Option<PutStatus> {
        let c = &self.core;
        if c.stopping() {
            Some(PutStatus::ServiceNotAvailable)
        } else if !c.writable.load(Ordering::Acquire) {
            Some(PutStatus::UnknownError)
        } else if c.disk_full.load(Ordering::Acquire) {
            Some(PutStatus::DiskFull)
        } else {
            None
        }
    }

    fn fail(&self, status: PutStatus) -> PutResult {
        self.core.stats.puts_failed.fetch_add(1, Ordering::Relaxed);
        PutResult::failed(status, self.core.store_host)
    }

    async fn submit(&self, payload: Payload, t0: Instant) -> PutResult {
        let c = &self.core;
        let (tx, rx) = oneshot::channel();
        let req = AppendRequest { payload, reply: tx };
        if let Err(status) = c.queue.push(req, c.settings.opts.put_queue_timeout).await {
            return self.fail(status);
        }
        let mut a: Appended = match rx.await {
            Ok(a) => a,
            Err(_) => return self.fail(PutStatus::ServiceNotAvailable),
        };
        if a.status != PutStatus::PutOk {
            return self.fail(a.status);
        }
        // The writer gives a stored request the waiters of whatever its reply does not
        // already prove.
        let status = match a.acks.take() {
            Some(acks) => self.acknowledge(acks, a.end).await,
            None => PutStatus::PutOk,
        };
        let s = &c.stats;
        s.puts_ok.fetch_add(a.count as u64, Ordering::Relaxed);
        s.put_bytes.fetch_add(a.wrote as u64, Ordering::Relaxed);
        let us = t0.elapsed().as_micros() as u64;
        let bucket = (63 - us.max(1).leading_zeros()).min(31) as usize;
        s.put_latency[bucket].fetch_add(1, Ordering::Relaxed);
        PutResult {
            status,
            physical_offset: a.phy,
            wrote_bytes: a.wrote,
            queue_offset: a.queue_offset,
            store_timestamp: a.store_ts,
            msg_count: a.count,
            store_host: c.store_host,
            batch_offsets: a.batch_offsets,
        }
    }

    /// Waits for a stored put's remaining ack conditions ([`crate::ack`]) and answers
    /// its status. Every condition shares one deadline, `sync_flush_timeout`.
    async fn acknowledge(&self, acks: Acks, end: i64) -> PutStatus {
        let c = &self.core;
        let deadline = tokio::time::Instant::now() + c.settings.sync_flush_timeout;
        let mut status = PutStatus::PutOk;
        if let Some(visible) = acks.visible {
            if !visible.wait_until(deadline).await {
                // Not visible in time, released because dispatch stopped on an
                // unreadable record, or the flusher stopped. What the producer must
                // learn is whether the message is durable: if so, an error would only
                // make it send a duplicate.
                tracing::debug!(offset = end, dispatched = c.dispatched(), "put acknowledged before it became visible");
                if c.commit_log.flushed() < end {
                    status = PutStatus::FlushDiskTimeout;
                }
            }
        }
        let replicas_required = c.replicas_required.load(Ordering::Acquire);
        if let (Some(replica), Some(policy), true) = (acks.replica, c.settings.opts.replica_ack, replicas_required) {
            // RocketMQ's `isSlaveOK`: with no replica, or only one too far behind to
            // wait for, the put does not wait; it is stored all the same.
            let acked = c.replica_acked.load(Ordering::Acquire);
            if c.replicas.load(Ordering::Acquire) == 0 || end - acked > policy.max_gap {
                return PutStatus::SlaveNotAvailable;
            }
            if !replica.wait_until(deadline).await && c.replica_acked.load(Ordering::Acquire) < end {
                return PutStatus::FlushSlaveTimeout;
            }
        }
        status
    }

    // ---------------------------------------------------------------- reads

    /// Reads up to `req.max_msgs` messages from a queue, with RocketMQ's
    /// `getMessage` semantics (remoting-protocol.md §12.5): scans at most
    /// `max(800, max_msgs)` consume-queue entries within one consume-queue file,
    /// applies the consume-queue filter then the record filter, stops before
    /// `max_bytes` (but always returns at least one message), and reports where the
    /// next pull should start. Records are zero-copy slices of the mapped commit log.
    ///
    /// Blocking only in the sense of reading mapped memory (page cache for warm data).
    pub fn get_messages(&self, req: &GetRequest<'_>) -> GetResult {
        let c = &self.core;
        c.stats.gets.fetch_add(1, Ordering::Relaxed);
        let Some(cq) = c.find_queue(req.topic, req.queue_id) else {
            return GetResult::empty(GetStatus::NoMatchedLogicQueue, 0, 0, 0);
        };
        let (min, max) = (cq.min_offset(), cq.max_offset());
        let offset = req.offset;
        if max == 0 {
            return GetResult::empty(GetStatus::NoMessageInQueue, 0, min, max);
        }
        if offset < min {
            return GetResult::empty(GetStatus::OffsetTooSmall, min, min, max);
        }
        if offset == max {
            return GetResult::empty(GetStatus::OffsetOverflowOne, offset, min, max);
        }
        if offset > max {
            // RocketMQ 4.9: back to min when the queue starts at 0, else to max.
            let next = if min == 0 { min } else { max };
            return GetResult::empty(GetStatus::OffsetOverflowBadly, next, min, max);
        }
        let scan_limit = req.max_msgs.max(800);
        let max_msgs = req.max_msgs.max(1);
        let mut res = GetResult {
            status: GetStatus::NoMatchedMessage,
            next_begin_offset: offset,
            min_offset: min,
            max_offset: max,
            messages: Vec::with_capacity(max_msgs.min(64)),
            queue_offsets: Vec::with_capacity(max_msgs.min(64)),
            total_bytes: 0,
        };
        let scanned = cq.with_entries(offset, scan_limit, |buf| {
            let n = buf.len() / CQ_ENTRY_SIZE;
            let log = c.commit_log.view();
            // A record filter reads every candidate record, which is usually not in the
            // CPU cache yet: keep the loads of the next few candidates in flight.
            let prefetch = |j: usize| {
                if req.record_filter.is_some() && j < n {
                    let e = decode_entry(&buf[j * CQ_ENTRY_SIZE..]);
                    if e.size > 0 && req.cq_filter.is_none_or(|f| f(&e)) {
                        log.prefetch(e.phy_offset, e.size as usize);
                    }
                }
            };
            (0..PREFETCH_AHEAD).for_each(prefetch);
            let mut next_file_start = i64::MIN;
            let read_limit = c.read_limit.load(Ordering::Acquire);
            let mut i = 0;
            while i < n {
                prefetch(i + PREFETCH_AHEAD);
                let e = decode_entry(&buf[i * CQ_ENTRY_SIZE..]);
                if e.size <= 0 || (next_file_start != i64::MIN && e.phy_offset < next_file_start) {
                    i += 1;
                    continue;
                }
                if e.phy_offset + i64::from(e.size) > read_limit {
                    // Records not wholly below the read limit are not served (not yet
                    // held by every replica that could become master, or a replica
                    // ahead of its master): the queue ends here for now.
                    break;
                }
                if !res.messages.is_empty()
                    && (res.messages.len() >= max_msgs || res.total_bytes + e.size as usize > req.max_bytes)
                {
                    break;
                }
                i += 1;
                if let Some(f) = req.cq_filter {
                    if !f(&e) {
                        continue;
                    }
                }
                let Some(rec) = log.read(e.phy_offset, e.size as usize) else {
                    if res.messages.is_empty() {
                        res.status = GetStatus::MessageWasRemoving;
                    }
                    next_file_start = c.commit_log.roll_next(e.phy_offset);
                    continue;
                };
                if let Some(f) = req.record_filter {
                    match RecordView::parse(&rec) {
                        Ok(v) if f(&v) => {}
                        _ => continue,
                    }
                }
                res.total_bytes += rec.len();
                res.messages.push(rec);
                res.queue_offsets.push(offset + i as i64 - 1);
                res.status = GetStatus::Found;
                next_file_start = i64::MIN;
            }
            i
        });
        match scanned {
            Some(i) => {
                res.next_begin_offset = offset + i as i64;
                c.stats.get_messages.fetch_add(res.messages.len() as u64, Ordering::Relaxed);
                res
            }
            None => {
                let epf = (c.settings.cq_segment / CQ_ENTRY_SIZE) as i64;
                let next = offset + epf - offset.rem_euclid(epf);
                GetResult::empty(GetStatus::OffsetFoundNull, next, min, max)
            }
        }
    }

    /// Up to `max` consume-queue entries of a queue from `from`, with their logical
    /// offsets (the broker's timer service rebuilds its pending set from these).
    pub fn cq_entries(&self, topic: &str, queue_id: i32, from: i64, max: usize) -> Vec<(i64, crate::types::CqEntry)> {
        let Some(q) = self.core.find_queue(topic, queue_id) else { return Vec::new() };
        let start = from.max(q.min_offset());
        let end = q.max_offset().min(start.saturating_add(max as i64));
        (start..end).filter_map(|o| q.get(o).map(|e| (o, e))).collect()
    }

    /// Next logical offset of a queue (its entry count); 0 if it does not exist.
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.core.find_queue(topic, queue_id).map_or(0, |q| q.max_offset())
    }

    /// First logical offset still readable in a queue; 0 if it does not exist.
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.core.find_queue(topic, queue_id).map_or(0, |q| q.min_offset())
    }

    /// The first queue offset whose message was stored at or after `timestamp` (ms),
    /// clamped to `[min, max]` (SEARCH_OFFSET_BY_TIMESTAMP). 0 if the queue does not
    /// exist.
    pub fn offset_by_timestamp(&self, topic: &str, queue_id: i32, timestamp: i64) -> i64 {
        let Some(q) = self.core.find_queue(topic, queue_id) else {
            return 0;
        };
        q.search_time(timestamp, |phy| self.core.commit_log.store_timestamp_at(phy))
    }

    /// Store time of the message at `offset` of a queue (RocketMQ's
    /// `getMessageStoreTimeStamp`); `None` past the queue's end or for a removed one.
    pub fn message_store_time(&self, topic: &str, queue_id: i32, offset: i64) -> Option<i64> {
        let q = self.core.find_queue(topic, queue_id)?;
        if offset < q.min_offset() || offset >= q.max_offset() {
            return None;
        }
        let e = q.get(offset).filter(|e| e.size > 0)?;
        self.core.commit_log.store_timestamp_at(e.phy_offset)
    }

    /// Store time of the oldest record in the commit log, if there is one.
    pub fn earliest_message_time_overall(&self) -> Option<i64> {
        let c = &self.core;
        let min = c.commit_log.min_offset();
        (min < c.commit_log.written()).then(|| c.commit_log.store_timestamp_at(min)).flatten()
    }

    /// Store time of the message at a queue's min offset (GET_EARLIEST_MSG_STORETIME).
    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let q = self.core.find_queue(topic, queue_id)?;
        let mut at = q.min_offset();
        while at < q.max_offset() {
            let e = q.get(at)?;
            if e.size > 0 {
                return self.core.commit_log.store_timestamp_at(e.phy_offset);
            }
            at += 1;
        }
        None
    }

    /// The record stored at commit-log offset `phy_offset` (VIEW_MESSAGE_BY_ID), if it
    /// exists and has been dispatched.
    pub fn look_message_by_offset(&self, phy_offset: i64) -> Option<Bytes> {
        let c = &self.core;
        // Up to what may be dispatched (written, or durable with SYNC_FLUSH), not to
        // what has been: RocketMQ reads the commit log directly here. (An
        // acknowledged put is dispatched anyway.)
        let limit = if c.settings.sync_flush { c.commit_log.flushed() } else { c.commit_log.written() };
        let limit = limit.min(c.read_limit.load(Ordering::Acquire));
        if phy_offset < 0 || phy_offset >= limit {
            return None;
        }
        let size = c.commit_log.with_record(phy_offset, limit, |v| v.total_size())?;
        c.commit_log.read(phy_offset, size)
    }

    /// Records of `topic` whose `KEYS` or `UNIQ_KEY` equals `key`, stored within
    /// `[begin, end]` (ms), newest first, at most `max_num` (QUERY_MESSAGE).
    pub fn query_message(&self, topic: &str, key: &str, max_num: usize, begin: i64, end: i64) -> Vec<Bytes> {
        let c = &self.core;
        let Some(index) = &c.index else {
            return Vec::new();
        };
        let limit = c.dispatched().min(c.read_limit.load(Ordering::Acquire));
        let mut out = Vec::new();
        // Ask for more candidates than needed: collisions are filtered below.
        for phy in index.query(topic, key, max_num.saturating_mul(2).max(max_num + 16), begin, end) {
            if out.len() >= max_num {
                break;
            }
            let matched = c.commit_log.with_record(phy, limit, |v| {
                v.physical_offset() == phy && v.topic() == topic && record_has_key(&v, key)
            });
            if matched == Some(true) {
                let size = c.commit_log.with_record(phy, limit, |v| v.total_size()).unwrap_or(0);
                if let Some(b) = c.commit_log.read(phy, size) {
                    out.push(b);
                }
            }
        }
        out
    }

    // ---------------------------------------------------------------- replication

    /// Commit-log bytes from `offset`, at most `max`, within one segment and up to what
    /// is written: a zero-copy slice of the mapping (what a master sends its replicas).
    /// `None` when `offset` is at or past the end, or its segment is gone.
    pub fn commit_log_data(&self, offset: i64, max: usize) -> Option<Bytes> {
        let cl = &self.core.commit_log;
        let written = cl.written();
        if offset < 0 || offset >= written || max == 0 {
            return None;
        }
        let seg = cl.segment_for(offset)?;
        let local = (offset - seg.start()) as usize;
        let end = ((written - seg.start()) as usize).min(seg.published());
        if end <= local {
            return None;
        }
        seg.bytes(local, (end - local).min(max))
    }

    /// The size of a commit-log segment.
    pub fn commit_log_segment_size(&self) -> usize {
        self.core.commit_log.segment_size()
    }

    /// Resolves after the next batch is published (or at once if one is published
    /// between this call and the first poll of a future that was `enable`d first).
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.core.appended.notified()
    }

    /// Whether the commit log holds nothing at all (a new replica).
    pub fn is_empty(&self) -> bool {
        self.core.commit_log.written() == 0
    }

    /// Appends a replica's copy of its master's commit log, `data` from commit-log
    /// offset `offset`, byte for byte; consume queues and the index are built from it
    /// as from this store's own writes. Returns the new end of the log.
    ///
    /// # Errors
    /// `offset` is not this log's end (nor, in an empty log, a segment start), the data
    /// crosses a segment (segment sizes differ from the master's), or the store
    /// refuses writes.
    pub async fn append_replicated(&self, offset: i64, data: Bytes) -> Result<i64> {
        let c = &self.core;
        if c.stopping() {
            return Err(Error::Replica { offset, reason: "the store is shutting down" });
        }
        let (tx, rx) = oneshot::channel();
        let req = AppendRequest { payload: Payload::Raw { offset, data }, reply: tx };
        if c.queue.push(req, c.settings.opts.put_queue_timeout).await.is_err() {
            return Err(Error::Replica { offset, reason: "the append queue is full or closed" });
        }
        match rx.await {
            Ok(a) if a.status == PutStatus::PutOk => Ok(a.end),
            Ok(_) => Err(Error::Replica { offset, reason: "the data does not continue this log (see the log)" }),
            Err(_) => Err(Error::Replica { offset, reason: "the store is shutting down" }),
        }
    }

    /// What the master's replication connections report: how many replicas are
    /// connected and the most any holds. Resolves the SYNC_MASTER puts it covers.
    pub fn replica_progress(&self, connected: usize, acked: i64) {
        let c = &self.core;
        c.replicas.store(connected, Ordering::Release);
        let previous = c.replica_acked.fetch_max(acked, Ordering::AcqRel);
        if acked > previous {
            c.replica_waiters.resolve_up_to(acked);
        }
    }

    /// Whether puts wait for a replica (SYNC_MASTER with `replica_ack`): off, they
    /// are acknowledged without (a controller-mode master whose SyncStateSet is
    /// itself alone, with nobody else to wait for).
    pub fn set_replicas_required(&self, required: bool) {
        self.core.replicas_required.store(required, Ordering::Release);
    }

    /// Stops serving records that do not end at or before `limit` (pulls, lookups,
    /// key queries) — a replica whose log runs past its master's serves nothing the
    /// master lacks — or serves everything again (`None`).
    ///
    /// Raising it wakes [`Self::read_limit_raised`]. A master in controller mode with
    /// `allAckInSyncStateSet` keeps it at its confirm offset, and its slaves at the
    /// confirm offset it sends them (RocketMQ 5's `confirmOffset`): a consumer never
    /// reads a record that a newly elected master could lack, so it never commits an
    /// offset past where the new master's own records go.
    pub fn set_read_limit(&self, limit: Option<i64>) {
        let limit = limit.unwrap_or(i64::MAX);
        let before = self.core.read_limit.swap(limit, Ordering::AcqRel);
        if limit > before {
            self.core.read_limit_raised.notify_one();
        }
    }

    /// The read limit set by [`Self::set_read_limit`], if any.
    pub fn read_limit(&self) -> Option<i64> {
        let limit = self.core.read_limit.load(Ordering::Acquire);
        (limit != i64::MAX).then_some(limit)
    }

    /// Resolves after the read limit was raised (once per raise or run of raises
    /// since the last wait: a single waiter is meant, the broker's hold service).
    pub fn read_limit_raised(&self) -> tokio::sync::futures::Notified<'_> {
        self.core.read_limit_raised.notified()
    }

    /// Whether the entry at `offset` of a queue exists and may be read now (its
    /// record lies wholly below the read limit): what a parked pull waits for.
    pub fn readable_at(&self, topic: &str, queue_id: i32, offset: i64) -> bool {
        let Some(q) = self.core.find_queue(topic, queue_id) else { return false };
        if offset >= q.max_offset() {
            return false;
        }
        let limit = self.core.read_limit.load(Ordering::Acquire);
        limit == i64::MAX || q.get(offset.max(q.min_offset())).is_none_or(|e| e.phy_offset + i64::from(e.size) <= limit)
    }

    /// End of the commit log (next append position).
    pub fn commit_log_max_offset(&self) -> i64 {
        self.core.commit_log.written()
    }

    /// Smallest commit-log offset still stored.
    pub fn commit_log_min_offset(&self) -> i64 {
        self.core.commit_log.min_offset()
    }

    /// Commit-log offset up to which records are durable.
    pub fn commit_log_flushed_offset(&self) -> i64 {
        self.core.commit_log.flushed()
    }

    /// Commit-log offset up to which records are visible through consume queues and
    /// the index.
    pub fn dispatched_offset(&self) -> i64 {
        self.core.dispatched()
    }

    /// Every topic and its queue ids that have a consume queue.
    pub fn topic_queues(&self) -> Vec<(String, Vec<i32>)> {
        let map = self.core.queues.read();
        let mut out: Vec<(String, Vec<i32>)> = map
            .iter()
            .map(|(t, q)| {
                let mut ids: Vec<i32> = q.keys().copied().collect();
                ids.sort_unstable();
                (t.clone(), ids)
            })
            .collect();
        out.sort();
        out
    }

    /// Drops a topic's consume queues (files included) and its queue-offset counters.
    /// Its records stay in the commit log until retention removes them.
    pub fn delete_topic(&self, topic: &str) {
        let removed = self.core.queues.write().remove(topic);
        self.core.topic_table.lock().remove(topic);
        if let Some(queues) = removed {
            for q in queues.values() {
                q.destroy();
            }
            let _ = std::fs::remove_dir(self.core.settings.cq_dir().join(topic));
        }
    }

    /// Installs the hook called after each consume-queue entry becomes visible, e.g.
    /// to wake long-polling pulls. It runs on the thread that dispatches: the writer
    /// (ASYNC_FLUSH) or the flusher (SYNC_FLUSH), inside the acknowledgement path of
    /// every put, so it must be cheap and never block.
    pub fn set_arrival_listener(&self, listener: ArrivalListener) {
        *self.core.listener.write() = Some(listener);
    }

    /// A snapshot of the runtime counters.
    pub fn stats(&self) -> StoreStats {
        let c = &self.core;
        let s = &c.stats;
        let mut hist = [0u64; 32];
        for (h, a) in hist.iter_mut().zip(s.put_latency.iter()) {
            *h = a.load(Ordering::Relaxed);
        }
        let max = c.commit_log.written();
        let dispatched = c.dispatched();
        StoreStats {
            puts_ok: s.puts_ok.load(Ordering::Relaxed),
            puts_failed: s.puts_failed.load(Ordering::Relaxed),
            put_bytes: s.put_bytes.load(Ordering::Relaxed),
            put_latency_us_log2: hist,
            commit_log_min_offset: c.commit_log.min_offset(),
            commit_log_max_offset: max,
            commit_log_flushed_offset: c.commit_log.flushed(),
            dispatched_offset: dispatched,
            dispatch_lag_bytes: max - dispatched,
            flushes: s.flushes.load(Ordering::Relaxed),
            writer_batches: s.writer_batches.load(Ordering::Relaxed),
            gets: s.gets.load(Ordering::Relaxed),
            get_messages: s.get_messages.load(Ordering::Relaxed),
            disk_usage_ratio: Some(f64::from_bits(c.disk_usage.load(Ordering::Relaxed))).filter(|r| !r.is_nan()),
            disk_full: c.disk_full.load(Ordering::Acquire),
            disk_warning_ratio: c.settings.disk_warning_ratio,
        }
    }

    /// Runs retention now, as the `store-clean` thread does at `delete_when`: deletes
    /// commit-log segments older than `file_reserved_time` (and, above the forced
    /// disk ratio, the oldest ones regardless of age), then consume-queue and index
    /// files that only reference deleted data. Blocking (file deletions).
    pub fn delete_expired_files(&self) -> CleanReport {
        retention::clean(&self.core, common::time::now_ms(), true)
    }

    /// Deletes consume-queue files whose entries all point below the commit log's
    /// first offset (CLEAN_EXPIRED_CONSUMEQUEUE); returns how many were deleted.
    /// Retention does the same after deleting segments; this runs it on demand.
    pub fn clean_expired_consume_queues(&self) -> usize {
        let cl_min = self.core.commit_log.min_offset();
        self.core.all_queues().iter().map(|q| q.delete_expired(cl_min)).sum()
    }

    /// Flushes consume queues and index and writes a checkpoint now. Blocking.
    ///
    /// # Errors
    /// A sync or the checkpoint write failed.
    pub fn checkpoint(&self) -> Result<()> {
        flush::checkpoint_now(&self.core)
    }

    /// Stops accepting puts, lets queued ones finish, flushes everything, writes the
    /// checkpoint and removes the `abort` marker, so the next open trusts the
    /// checkpoint. Idempotent. Blocking: call it from a blocking context
    /// (`spawn_blocking`) inside async code.
    ///
    /// # Errors
    /// The final flush or checkpoint failed (the store is stopped anyway and the next
    /// open will run crash recovery).
    pub fn shutdown(&self) -> Result<()> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.shutdown_inner();
        self.lock.lock().take();
        result
    }

    fn shutdown_inner(&self) -> Result<()> {
        self.stop_threads();
        if self.core.halted() {
            return Ok(());
        }
        let c = &self.core;
        // Threads are gone: finish anything left (normally nothing).
        flush::flush_once(c)?;
        let written = c.commit_log.written();
        if c.dispatched() < written {
            dispatch::dispatch_range(c, c.dispatched(), written, KnownTags::none());
        }
        for q in c.all_queues() {
            q.flush()?;
        }
        if let Some(index) = &c.index {
            index.flush_all()?;
        }
        if c.dispatched() == written && c.commit_log.flushed() == written {
            flush::checkpoint_now(c)?;
            let abort = recovery::abort_path(&c.settings.root);
            std::fs::remove_file(&abort).at(&abort)?;
            util::sync_dir(&c.settings.root)?;
            tracing::info!(commit_log_end = written, "store shut down cleanly");
        } else {
            tracing::warn!(
                written,
                dispatched = c.dispatched(),
                "store could not finish dispatching; next open recovers"
            );
        }
        Ok(())
    }

    fn stop_threads(&self) {
        let c = &self.core;
        c.stopping.store(true, Ordering::Release);
        c.queue.close();
        let mut t = self.threads.lock();
        if let Some(h) = t.writer.take() {
            let _ = h.join();
        }
        c.writer_done.store(true, Ordering::Release);
        c.wake_flusher();
        if let Some(h) = t.flusher.take() {
            let _ = h.join();
        }
        // Normally empty (with SYNC_FLUSH the flusher exits after syncing and
        // dispatching everything written); after `halt` or a failed sync, the puts
        // still waiting answer now instead of at their timeout.
        c.visible_waiters.abandon();
        c.replica_waiters.abandon();
        c.allocator.stop();
        if let Some(h) = t.alloc.take() {
            let _ = h.join();
        }
        for h in [t.cq_flusher.take(), t.cleaner.take()].into_iter().flatten() {
            h.thread().unpark();
            let _ = h.join();
        }
    }

    /// Stops every thread abruptly, without the final flush and checkpoint, leaving
    /// the `abort` marker: what a crash leaves behind, minus the page cache loss.
    /// For recovery tests.
    #[doc(hidden)]
    pub fn halt(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.core.halted.store(true, Ordering::Release);
        self.stop_threads();
    }

    /// Waits (blocking, up to `timeout`) until everything written so far is
    /// dispatched. For tests and benches.
    #[doc(hidden)]
    pub fn wait_dispatched(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let target = self.core.commit_log.written();
        while self.core.dispatched() < target {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Whether background segment preparation is done (the active segment is
    /// warm as far ahead as it is kept, and the next one is ready). For benches.
    #[doc(hidden)]
    pub fn is_warm(&self) -> bool {
        self.core.allocator.is_idle()
    }

    /// Paths of the commit-log segment files, oldest first. For tests and tools.
    #[doc(hidden)]
    pub fn commit_log_files(&self) -> Vec<PathBuf> {
        self.core.commit_log.segments().iter().map(|s| s.path().to_owned()).collect()
    }
}

fn record_has_key(v: &RecordView<'_>, key: &str) -> bool {
    let Ok(props) = std::str::from_utf8(v.properties_raw()) else {
        return false;
    };
    use common::properties::{find_in_encoded, keys};
    find_in_encoded(props, keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == Some(key)
        || find_in_encoded(props, keys::KEYS).is_some_and(|ks| ks.split(' ').any(|k| k == key))
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "store shutdown on drop failed");
        }
    }
}
