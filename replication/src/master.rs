//! The master's side: a listener on `haListenPort` and, per connected slave, a task
//! that streams the commit log and reads the slave's acknowledgements (RocketMQ's
//! `HAService`, `HAConnection`).
//!
//! Every acknowledgement updates the store's view of its replicas
//! ([`store::MessageStore::replica_progress`]): how many slaves are connected and the
//! highest offset one of them holds, which is what a SYNC_MASTER put waits for (one
//! acknowledgement resolves every put of the group commits below it).
//!
//! A peer is dropped — alone, without disturbing the other slaves — when it sends
//! something that is not a slave's report (a negative, implausibly large or
//! decreasing offset: an HTTP probe, a port scanner), when it reads or writes
//! nothing for `housekeeping_interval`, or when its socket fails.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use remoting::tls::Accepted;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use store::MessageStore;

use crate::protocol::{self, HEADER_LEN};
use crate::status::{HaConnectionInfo, HaRuntimeInfo};
use crate::HaSettings;

/// One connected slave, as the status view and the ack bookkeeping see it.
struct Slave {
    id: u64,
    addr: SocketAddr,
    /// The broker id the slave named itself with (controller mode; -1: none).
    broker_id: AtomicI64,
    /// When (ms) the slave last reported holding everything the master had when it
    /// last sent it data (RocketMQ's `lastCaughtUpTime`).
    caught_up_ms: AtomicI64,
    /// The master's log end when it last sent this slave data.
    end_at_send: AtomicI64,
    /// The newest offset the slave reported (-1 before its first report).
    acked: AtomicI64,
    /// Where the next transfer starts (-1 before the first).
    next: AtomicI64,
    /// Bytes sent, and the rate of the last full second.
    sent: AtomicU64,
    rate: AtomicU64,
}

#[derive(Default)]
struct Slaves {
    list: Mutex<Vec<Arc<Slave>>>,
    next_id: AtomicU64,
    /// How far puts are held.
    ack: Mutex<AckPolicy>,
    /// With [`AckPolicy::AllOf`] members, the confirm offset: what every member
    /// holds, and at least what was written when the policy began to hold puts
    /// (visible then, it stays visible). It only rises; `None` under other policies.
    confirm: Mutex<Option<i64>>,
    /// Wakes the streams to send a slave the new confirm offset.
    confirm_moved: tokio::sync::Notify,
}

/// How far a SYNC_MASTER's puts are held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AckPolicy {
    /// Until the most advanced slave holds them (RocketMQ 4.x's SYNC_MASTER).
    #[default]
    AnySlave,
    /// Until every one of these slaves (broker ids) holds them: controller mode's
    /// `allAckInSyncStateSet`, the SyncStateSet without the master. Empty: not held.
    AllOf(std::collections::BTreeSet<u64>),
    /// Until this many slaves hold them: controller mode's `inSyncReplicas` less the
    /// master. 0: not held.
    AtLeast(usize),
}

impl Slaves {
    /// Tells the store how many slaves there are and, by the [`AckPolicy`], how far
    /// the slaves a put waits for all hold (a slave not connected holds nothing).
    fn publish(&self, store: &MessageStore) {
        let list = self.list.lock();
        let acks = |s: &Arc<Slave>| s.acked.load(Ordering::Acquire);
        let policy = self.ack.lock();
        if !matches!(&*policy, AckPolicy::AllOf(m) if !m.is_empty()) && self.confirm.lock().take().is_some() {
            store.set_read_limit(None);
            self.confirm_moved.notify_waiters();
        }
        match &*policy {
            AckPolicy::AnySlave => {
                store.set_replicas_required(true);
                store.replica_progress(list.len(), list.iter().map(acks).max().unwrap_or(-1));
            }
            // Nobody to wait for.
            AckPolicy::AllOf(members) if members.is_empty() => store.set_replicas_required(false),
            AckPolicy::AtLeast(0) => store.set_replicas_required(false),
            AckPolicy::AllOf(members) => {
                store.set_replicas_required(true);
                let mut connected = 0;
                let mut least = i64::MAX;
                for id in members {
                    let held = list
                        .iter()
                        .filter(|s| u64::try_from(s.broker_id.load(Ordering::Acquire)).ok() == Some(*id))
                        .map(acks)
                        .max();
                    connected += usize::from(held.is_some());
                    least = least.min(held.unwrap_or(-1));
                }
                // Visible before acknowledged: a client that was told SEND_OK can
                // read what it sent (an END_TRANSACTION finds its half message).
                self.raise_confirm(store, (connected == members.len()).then_some(least));
                store.replica_progress(connected, least);
            }
            AckPolicy::AtLeast(k) => {
                store.set_replicas_required(true);
                let mut held: Vec<i64> = list.iter().map(acks).collect();
                held.sort_unstable_by(|a, b| b.cmp(a));
                // Fewer slaves than a put needs: none to wait for (SLAVE_NOT_AVAILABLE).
                let enough = if held.len() >= *k { held.len() } else { 0 };
                store.replica_progress(enough, held.get(k - 1).copied().unwrap_or(-1));
            }
        }
    }
}

impl Slaves {
    /// Raises the confirm offset to `least` (what every member holds, `None` while
    /// one is not connected: it then stays where it is, as RocketMQ's does) and
    /// limits reads to it.
    fn raise_confirm(&self, store: &MessageStore, least: Option<i64>) {
        let mut confirm = self.confirm.lock();
        let floor = confirm.unwrap_or_else(|| store.commit_log_max_offset());
        let next = floor.max(least.unwrap_or(i64::MIN));
        if *confirm != Some(next) {
            *confirm = Some(next);
            store.set_read_limit(Some(next));
            self.confirm_moved.notify_waiters();
        }
    }

    /// What a slave may serve: the confirm offset, or everything this master wrote
    /// when it holds no put for the SyncStateSet.
    fn confirm_offset(&self, store: &MessageStore) -> i64 {
        self.confirm.lock().unwrap_or_else(|| store.commit_log_max_offset())
    }
}

/// A running HA listener.
pub struct HaMaster {
    local_addr: SocketAddr,
    store: Arc<MessageStore>,
    settings: HaSettings,
    slaves: Arc<Slaves>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl HaMaster {
    /// Serves slaves on `listener` from `store`.
    ///
    /// # Errors
    /// The listener's address cannot be read.
    pub fn start(listener: TcpListener, store: Arc<MessageStore>, settings: HaSettings) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let slaves = Arc::new(Slaves::default());
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let accept =
            accept_loop(listener, store.clone(), settings.clone(), slaves.clone(), cancel.clone(), tasks.clone());
        tasks.spawn(accept.instrument(tracing::info_span!("ha_accept", addr = %local_addr)));
        let rates = rate_loop(slaves.clone(), cancel.clone());
        tasks.spawn(rates);
        info!(addr = %local_addr, "HA service listening");
        Ok(Self { local_addr, store, settings, slaves, cancel, tasks })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connected slaves.
    pub fn slave_count(&self) -> usize {
        self.slaves.list.lock().len()
    }

    /// How far puts are held from now on (see [`AckPolicy`]).
    pub fn set_ack_policy(&self, policy: AckPolicy) {
        *self.slaves.ack.lock() = policy;
        self.slaves.publish(&self.store);
    }

    /// The broker ids of the connected slaves that named themselves and held
    /// everything this master had within the last `max_lag` (RocketMQ's
    /// `haMaxTimeSlaveNotCatchup`) and now hold the confirm offset: the slaves a
    /// SyncStateSet may count on.
    pub fn caught_up_slaves(&self, max_lag: std::time::Duration) -> std::collections::BTreeSet<u64> {
        let now = common::time::now_ms();
        let lag = i64::try_from(max_lag.as_millis()).unwrap_or(i64::MAX);
        let confirm = self.slaves.confirm.lock().unwrap_or(0);
        self.slaves
            .list
            .lock()
            .iter()
            .filter(|s| {
                // RocketMQ expands the set only with a slave at or past the confirm
                // offset: a member never lacks what consumers may have read.
                let seen = s.caught_up_ms.load(Ordering::Acquire);
                seen > 0 && now - seen <= lag && s.acked.load(Ordering::Acquire) >= confirm
            })
            .filter_map(|s| u64::try_from(s.broker_id.load(Ordering::Acquire)).ok())
            .collect()
    }

    /// RocketMQ's `HARuntimeInfo` of a master.
    pub fn runtime_info(&self) -> HaRuntimeInfo {
        let max = self.store.commit_log_max_offset();
        let list = self.slaves.list.lock();
        let connections: Vec<HaConnectionInfo> = list
            .iter()
            .map(|s| {
                let acked = s.acked.load(Ordering::Acquire).max(0);
                let diff = max - acked;
                HaConnectionInfo {
                    addr: s.addr.to_string(),
                    slave_ack_offset: acked,
                    diff,
                    in_sync: diff < self.settings.max_gap_not_in_sync,
                    transferred_byte_in_second: s.rate.load(Ordering::Relaxed) as i64,
                    transfer_from_where: s.next.load(Ordering::Relaxed),
                }
            })
            .collect();
        HaRuntimeInfo {
            master: true,
            master_commit_log_max_offset: max,
            in_sync_slave_nums: connections.iter().filter(|c| c.in_sync).count() as i32,
            ha_connection_info: connections,
            ..HaRuntimeInfo::default()
        }
    }

    /// Stops accepting, closes every slave connection and waits for the tasks.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.slaves.list.lock().clear();
        self.slaves.publish(&self.store);
    }
}

async fn accept_loop(
    listener: TcpListener,
    store: Arc<MessageStore>,
    settings: HaSettings,
    slaves: Arc<Slaves>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "HA accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let slave = Arc::new(Slave {
            id: slaves.next_id.fetch_add(1, Ordering::Relaxed),
            addr: peer,
            broker_id: AtomicI64::new(-1),
            caught_up_ms: AtomicI64::new(0),
            end_at_send: AtomicI64::new(0),
            acked: AtomicI64::new(-1),
            next: AtomicI64::new(-1),
            sent: AtomicU64::new(0),
            rate: AtomicU64::new(0),
        });
        let (store, settings, slaves, cancel) = (store.clone(), settings.clone(), slaves.clone(), cancel.clone());
        tasks.spawn(
            async move {
                let accepted = match &settings.server_tls {
                    None => Accepted::Plain(stream),
                    Some(tls) => match tls.accept(stream, peer).await {
                        Some(a) => a,
                        None => return,
                    },
                };
                info!(tls = matches!(accepted, Accepted::Tls(_)), "slave connected");
                let why = match accepted {
                    Accepted::Plain(stream) => {
                        let (rd, wr) = stream.into_split();
                        serve(rd, wr, &slave, &store, &settings, &slaves, &cancel).await
                    }
                    Accepted::Tls(stream) => {
                        let (rd, wr) = tokio::io::split(stream);
                        serve(rd, wr, &slave, &store, &settings, &slaves, &cancel).await
                    }
                };
                slaves.list.lock().retain(|s| s.id != slave.id);
                slaves.publish(&store);
                info!(reason = %why, "slave connection closed");
            }
            .instrument(tracing::info_span!("ha_slave", peer = %peer)),
        );
    }
}

/// Runs one connection until it ends; returns why.
async fn serve(
    rd: impl AsyncRead + Unpin,
    wr: impl AsyncWrite + Unpin,
    slave: &Arc<Slave>,
    store: &MessageStore,
    settings: &HaSettings,
    slaves: &Slaves,
    cancel: &CancellationToken,
) -> String {
    let registered = std::sync::atomic::AtomicBool::new(false);
    let read = read_reports(rd, slave, store, settings, slaves, &registered);
    let write = stream_log(wr, slave, store, settings, slaves);
    tokio::select! {
        _ = cancel.cancelled() => "the broker is shutting down".to_owned(),
        why = read => why,
        why = write => why,
    }
}

/// Reads the slave's reports until the connection fails or turns out not to be a
/// slave's.
async fn read_reports(
    mut rd: impl AsyncRead + Unpin,
    slave: &Arc<Slave>,
    store: &MessageStore,
    settings: &HaSettings,
    slaves: &Slaves,
    registered: &std::sync::atomic::AtomicBool,
) -> String {
    let mut buf = [0u8; 1024];
    let mut filled = 0usize;
    loop {
        let n = match tokio::time::timeout(settings.housekeeping_interval, rd.read(&mut buf[filled..])).await {
            Err(_) => return format!("nothing read for {:?}", settings.housekeeping_interval),
            Ok(Err(e)) => return format!("read failed: {e}"),
            Ok(Ok(0)) => return "closed by the slave".to_owned(),
            Ok(Ok(n)) => n,
        };
        filled += n;
        let (values, used) = protocol::reports(&buf[..filled]);
        buf.copy_within(used..filled, 0);
        filled -= used;
        let mut newest = None;
        for value in values {
            // A slave in controller mode names itself before its first report.
            if let Some(id) =
                protocol::parse_identity(value).filter(|_| newest.is_none() && !registered.load(Ordering::Acquire))
            {
                slave.broker_id.store(id as i64, Ordering::Release);
                continue;
            }
            newest = Some(value);
        }
        let Some(offset) = newest else { continue };
        let previous = slave.acked.load(Ordering::Acquire);
        if !protocol::plausible(offset) || offset < previous {
            return format!("not a slave's report (offset {offset} after {previous}); closing");
        }
        slave.acked.store(offset, Ordering::Release);
        if offset >= slave.end_at_send.load(Ordering::Acquire).min(store.commit_log_max_offset()) {
            slave.caught_up_ms.store(common::time::now_ms(), Ordering::Release);
        }
        if !registered.swap(true, Ordering::AcqRel) {
            // Counted as a slave (for SLAVE_NOT_AVAILABLE) from its first report on.
            slaves.list.lock().push(slave.clone());
            debug!(offset, "slave's first report");
        }
        slaves.publish(store);
    }
}

/// Streams the commit log from where the slave asked, with heartbeats when idle.
async fn stream_log(
    mut wr: impl AsyncWrite + Unpin,
    slave: &Slave,
    store: &MessageStore,
    settings: &HaSettings,
    slaves: &Slaves,
) -> String {
    // Where to start: the slave's first report (0: an empty slave, which starts at the
    // master's last segment, as RocketMQ's master does).
    let first = loop {
        let acked = slave.acked.load(Ordering::Acquire);
        if acked >= 0 {
            break acked;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut next = if first != 0 {
        first
    } else if settings.sync_from_last_file {
        let max = store.commit_log_max_offset();
        max - max.rem_euclid(store.commit_log_segment_size() as i64)
    } else {
        store.commit_log_min_offset()
    };
    info!(slave_offset = first, from = next, "streaming the commit log to the slave");
    slave.next.store(next, Ordering::Relaxed);
    let mut last_write = Instant::now();
    let mut warned_gone = false;
    // The confirm offset this slave was last sent (named slaves only).
    let mut confirm_sent = i64::MIN;
    loop {
        let appended = store.appended();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let moved = slaves.confirm_moved.notified();
        tokio::pin!(moved);
        moved.as_mut().enable();
        let data = store.commit_log_data(next, settings.transfer_batch_size);
        let confirm = (slave.broker_id.load(Ordering::Acquire) >= 0)
            .then(|| slaves.confirm_offset(store))
            .filter(|c| *c != confirm_sent);
        if let Some(data) = data {
            let len = data.len();
            slave.end_at_send.store(store.commit_log_max_offset(), Ordering::Release);
            let started = settings.on_transfer.as_ref().map(|_| std::time::SystemTime::now());
            if let Err(e) = write_transfer(&mut wr, confirm, Some((next, data))).await {
                return format!("write failed: {e}");
            }
            confirm_sent = confirm.unwrap_or(confirm_sent);
            if let (Some(observe), Some(started)) = (&settings.on_transfer, started) {
                observe(&crate::Transfer {
                    slave: slave.addr,
                    offset: next,
                    bytes: len,
                    started,
                    ended: std::time::SystemTime::now(),
                });
            }
            next += len as i64;
            slave.next.store(next, Ordering::Relaxed);
            slave.sent.fetch_add(len as u64, Ordering::Relaxed);
            last_write = Instant::now();
            continue;
        }
        let max = store.commit_log_max_offset();
        if next < store.commit_log_min_offset() && !warned_gone {
            warn!(
                next,
                min = store.commit_log_min_offset(),
                "the slave needs commit log this master has deleted; it cannot catch up from here"
            );
            warned_gone = true;
        }
        let due = last_write + settings.heartbeat_interval;
        if Instant::now() >= due {
            // A slave ahead of this master learns it from a heartbeat below its own
            // end (RocketMQ's slaves reconnect on it).
            let at = next.min(max);
            if let Err(e) = write_transfer(&mut wr, confirm, Some((at, Bytes::new()))).await {
                return format!("heartbeat failed: {e}");
            }
            confirm_sent = confirm.unwrap_or(confirm_sent);
            last_write = Instant::now();
            continue;
        }
        if let Some(c) = confirm {
            if let Err(e) = write_transfer(&mut wr, Some(c), None).await {
                return format!("sending the confirm offset failed: {e}");
            }
            confirm_sent = c;
            continue;
        }
        tokio::select! {
            _ = appended => {}
            _ = moved => {}
            _ = tokio::time::sleep_until(due.into()) => {}
        }
    }
}

/// One write: a confirm-offset header if given, then a transfer (header and data,
/// the data straight from the mapping) if given, all in vectored writes.
async fn write_transfer(
    wr: &mut (impl AsyncWrite + Unpin),
    confirm: Option<i64>,
    transfer: Option<(i64, Bytes)>,
) -> std::io::Result<()> {
    let confirm = confirm.map(protocol::confirm);
    let header = transfer.as_ref().map(|(offset, data)| protocol::header(*offset, data.len() as u32));
    let mut parts: [&[u8]; 3] = [
        confirm.as_ref().map_or(&[], |c| &c[..]),
        header.as_ref().map_or(&[], |h| &h[..]),
        transfer.as_ref().map_or(&[], |(_, d)| &d[..]),
    ];
    while parts.iter().any(|p| !p.is_empty()) {
        let slices = parts.map(IoSlice::new);
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        for p in &mut parts {
            let used = n.min(p.len());
            *p = &p[used..];
            n -= used;
        }
    }
    debug_assert!(header.is_none_or(|h| h.len() == HEADER_LEN));
    // Nothing for plain TCP; a TLS stream may still hold the end of the record.
    wr.flush().await
}

/// Computes each connection's transfer rate once a second.
async fn rate_loop(slaves: Arc<Slaves>, cancel: CancellationToken) {
    let mut last: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let list = slaves.list.lock().clone();
        let mut seen = std::collections::HashMap::with_capacity(list.len());
        for s in list {
            let sent = s.sent.load(Ordering::Relaxed);
            let before = last.get(&s.id).copied().unwrap_or(sent);
            s.rate.store(sent - before, Ordering::Relaxed);
            seen.insert(s.id, sent);
        }
        last = seen;
    }
}
