//! The slave's side: follow a master's commit log (RocketMQ's `HAClient`).
//!
//! The slave connects to its master's HA address (which may change: the broker feeds
//! it from configuration or from the name servers' registration answers), reports its
//! max offset, and appends every transfer that starts exactly at its own end through
//! its store, which rebuilds consume queues and indexes from it. Any gap, a silent
//! master (`housekeeping_interval`), a malformed transfer or a new master address
//! closes the connection; the slave reconnects and resumes from its own end, so no
//! byte is appended twice and none is skipped.
//!
//! A master whose log ends before the slave's (an ASYNC_MASTER that lost its tail)
//! says so in its heartbeats: the slave then logs it as an error, serves nothing past
//! the master's end ([`store::MessageStore::set_read_limit`]) and appends nothing
//! more, until an operator resolves it and restarts it (see `docs/replication.md`).
//!
//! A slave that named itself (controller mode) also serves nothing past the confirm
//! offset its master sends: a record not yet on every SyncStateSet member could be
//! missing from whichever of them is elected next.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, Instrument};

use store::MessageStore;

use crate::protocol::{self, HEADER_LEN, MAX_TRANSFER};
use crate::status::{HaClientRuntimeInfo, HaRuntimeInfo};
use crate::HaSettings;

/// How long to wait before connecting again after a failure.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Progress {
    master: Mutex<Option<String>>,
    connected: AtomicBool,
    last_read_ms: AtomicI64,
    last_write_ms: AtomicI64,
    received: AtomicU64,
    rate: AtomicU64,
    /// The master's end when it is behind this slave (-1 otherwise).
    master_behind_at: AtomicI64,
}

/// A running slave replication task.
pub struct HaSlave {
    store: Arc<MessageStore>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl HaSlave {
    /// Follows the master whose HA address `master` holds (`None`: not known yet).
    pub fn start(store: Arc<MessageStore>, master: watch::Receiver<Option<String>>, settings: HaSettings) -> Self {
        let progress = Arc::new(Progress { master_behind_at: AtomicI64::new(-1), ..Progress::default() });
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(
            follow(store.clone(), master, settings, progress.clone(), cancel.clone())
                .instrument(tracing::info_span!("ha_sync")),
        );
        tasks.close();
        Self { store, progress, cancel, tasks }
    }

    /// Whether a master connection is up.
    pub fn is_connected(&self) -> bool {
        self.progress.connected.load(Ordering::Acquire)
    }

    /// RocketMQ's `HARuntimeInfo` of a slave.
    pub fn runtime_info(&self) -> HaRuntimeInfo {
        let p = &self.progress;
        HaRuntimeInfo {
            master: false,
            ha_client_runtime_info: HaClientRuntimeInfo {
                master_addr: p.master.lock().clone().unwrap_or_default(),
                transferred_byte_in_second: p.rate.load(Ordering::Relaxed) as i64,
                max_offset: self.store.commit_log_max_offset(),
                last_read_timestamp: p.last_read_ms.load(Ordering::Relaxed),
                last_write_timestamp: p.last_write_ms.load(Ordering::Relaxed),
                master_flush_offset: 0,
                is_activated: p.connected.load(Ordering::Acquire),
            },
            ..HaRuntimeInfo::default()
        }
    }

    /// The master's end offset when the master is behind this slave.
    pub fn master_behind_at(&self) -> Option<i64> {
        Some(self.progress.master_behind_at.load(Ordering::Acquire)).filter(|o| *o >= 0)
    }

    /// Stops following and waits for the connection to close.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }
}

async fn follow(
    store: Arc<MessageStore>,
    mut master: watch::Receiver<Option<String>>,
    settings: HaSettings,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) {
    let rates = tokio::spawn(rate_loop(store.clone(), progress.clone(), cancel.clone()));
    loop {
        let addr = master.borrow_and_update().clone();
        let Some(addr) = addr else {
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = master.changed() => if changed.is_err() { break },
            }
            continue;
        };
        *progress.master.lock() = Some(addr.clone());
        let session = session(&store, &addr, &settings, &progress);
        let outcome = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = master.changed() => "the master's address changed".to_owned(),
            why = session => why,
        };
        progress.connected.store(false, Ordering::Release);
        info!(master = %addr, reason = %outcome, "replication connection closed; reconnecting");
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
    progress.connected.store(false, Ordering::Release);
    rates.abort();
}

/// One connection to the master; returns why it ended.
async fn session(store: &MessageStore, addr: &str, settings: &HaSettings, progress: &Progress) -> String {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return format!("connecting to {addr} failed: {e}"),
        Err(_) => return format!("connecting to {addr} timed out"),
    };
    let _ = stream.set_nodelay(true);
    match &settings.client_tls {
        None => {
            let (rd, wr) = stream.into_split();
            follow_over(store, rd, wr, addr, settings, progress).await
        }
        Some(tls) => match tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(addr, stream)).await {
            Ok(Ok(stream)) => {
                let (rd, wr) = tokio::io::split(stream);
                follow_over(store, rd, wr, addr, settings, progress).await
            }
            Ok(Err(e)) => format!("TLS handshake with {addr} failed: {e}"),
            Err(_) => format!("TLS handshake with {addr} timed out"),
        },
    }
}

/// Follows the master over an established connection until it ends.
async fn follow_over(
    store: &MessageStore,
    rd: impl AsyncRead + Unpin,
    mut wr: impl AsyncWrite + Unpin,
    addr: &str,
    settings: &HaSettings,
    progress: &Progress,
) -> String {
    if let Some(id) = settings.identity {
        if let Err(e) = wr.write_all(&protocol::identity(id)).await {
            return format!("naming itself to {addr} failed: {e}");
        }
    }
    progress.connected.store(true, Ordering::Release);
    info!(master = %addr, offset = store.commit_log_max_offset(), "following the master");
    // Reading and reporting run side by side; neither is ever cancelled halfway
    // through a frame while the connection lives (a half-read header would desync
    // the stream), and the session ends when either fails.
    let appended = Notify::new();
    tokio::select! {
        why = receive(store, rd, settings, progress, &appended) => why,
        why = report(store, wr, settings, progress, &appended) => why,
    }
}

/// Reports the store's end on connect, after every append and on every heartbeat.
async fn report(
    store: &MessageStore,
    mut wr: impl AsyncWrite + Unpin,
    settings: &HaSettings,
    progress: &Progress,
    appended: &Notify,
) -> String {
    loop {
        let sent = async {
            wr.write_all(&protocol::report(store.commit_log_max_offset())).await?;
            wr.flush().await
        };
        if let Err(e) = sent.await {
            return format!("report failed: {e}");
        }
        progress.last_write_ms.store(common::time::now_ms(), Ordering::Relaxed);
        tokio::select! {
            _ = appended.notified() => {}
            _ = tokio::time::sleep(settings.heartbeat_interval) => {}
        }
    }
}

/// Reads transfers and appends them.
async fn receive(
    store: &MessageStore,
    rd: impl AsyncRead + Unpin,
    settings: &HaSettings,
    progress: &Progress,
    appended: &Notify,
) -> String {
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let mut header = [0u8; HEADER_LEN];
    loop {
        match tokio::time::timeout(settings.housekeeping_interval, rd.read_exact(&mut header)).await {
            Err(_) => return format!("nothing from the master for {:?}", settings.housekeeping_interval),
            Ok(Err(e)) => return format!("read failed: {e}"),
            Ok(Ok(_)) => {}
        }
        progress.last_read_ms.store(common::time::now_ms(), Ordering::Relaxed);
        let (master_offset, size) = protocol::parse_header(&header);
        if size == protocol::CONFIRM && settings.identity.is_some() && protocol::plausible(master_offset) {
            // What every SyncStateSet member holds: consumers read no further here
            // either (unless a master behind this slave set a lower limit for good).
            if progress.master_behind_at.load(Ordering::Acquire) < 0 {
                store.set_read_limit(Some(master_offset));
            }
            continue;
        }
        if size < 0 || size as usize > MAX_TRANSFER || !protocol::plausible(master_offset) {
            return format!("malformed transfer header (offset {master_offset}, size {size})");
        }
        let own = store.commit_log_max_offset();
        if size == 0 {
            // Once found, it stays: the bytes past the master's end are not the
            // master's, whatever the master writes later.
            if master_offset < own && progress.master_behind_at.load(Ordering::Acquire) < 0 {
                master_is_behind(store, progress, master_offset, own);
            }
            continue;
        }
        let mut data = BytesMut::zeroed(size as usize);
        if let Err(e) = rd.read_exact(&mut data).await {
            return format!("reading a transfer failed: {e}");
        }
        progress.received.fetch_add(size as u64, Ordering::Relaxed);
        if progress.master_behind_at.load(Ordering::Acquire) >= 0 {
            // Nothing is appended on top of a log the master does not have.
            continue;
        }
        if master_offset != own && !(own == 0 && store.is_empty()) {
            return format!("the master sent offset {master_offset} but this slave's log ends at {own}");
        }
        match store.append_replicated(master_offset, data.freeze()).await {
            Ok(end) => debug!(end, "appended from the master"),
            Err(e) => return format!("appending at {master_offset} failed: {e}"),
        }
        appended.notify_one();
    }
}

fn master_is_behind(store: &MessageStore, progress: &Progress, master_end: i64, own: i64) {
    progress.master_behind_at.store(master_end, Ordering::Release);
    {
        error!(
            master_end,
            slave_end = own,
            extra_bytes = own - master_end,
            "this slave's commit log runs past its master's: the master lost data this slave holds (an \
             ASYNC_MASTER that crashed before replicating its tail). The slave serves nothing past the \
             master's end and appends nothing until an operator decides: keep the master's history (stop \
             this slave, move its store away, restart it to copy the master again) or promote this slave's \
             (stop the master, make this broker the master)"
        );
        store.set_read_limit(Some(master_end));
    }
}

/// Computes the transfer rate every second and, while data flows, logs the slave's
/// progress every 10 s (a slave catching up after downtime says how it goes).
async fn rate_loop(store: Arc<MessageStore>, progress: Arc<Progress>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut last, mut logged, mut seconds) = (0u64, 0u64, 0u32);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = progress.received.load(Ordering::Relaxed);
        progress.rate.store(now - last, Ordering::Relaxed);
        last = now;
        seconds += 1;
        if seconds % 10 == 0 && now > logged {
            info!(
                offset = store.commit_log_max_offset(),
                mib_per_s = (now - logged) as f64 / 10.0 / (1 << 20) as f64,
                "replicating from the master"
            );
            logged = now;
        }
    }
}
