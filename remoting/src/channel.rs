// PERF-CRITICAL PATH: request/response traffic of every connection.
//! A full-duplex remoting connection.
//!
//! Both ends of a RocketMQ connection send requests: clients send most, but brokers
//! send CHECK_TRANSACTION_STATE and NOTIFY_CONSUMER_IDS_CHANGED on the same socket.
//! So client and server connections are the same type: a [`Channel`] owns a reader
//! task (decodes frames; completes pending requests by `opaque`; runs incoming
//! requests on the [`RequestHandler`], each in its own task so a parked long-poll
//! never blocks the connection) and a writer task (batches queued frames into
//! vectored writes, so pull bodies go from the commit-log mapping to the socket
//! without being copied).
//!
//! Invariants: a response carries the request's `opaque` and serialize type; a oneway
//! request never gets a response; a malformed frame closes this connection only;
//! closing fails every pending request of the channel at once.

use std::collections::HashMap;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use common::ResponseCode;

use crate::codec::{encode_prefix, RemotingCodec};
use crate::command::{Body, RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE};
use crate::error::{Error, Result};

/// A boxed future, as handlers return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Handles requests arriving on a channel.
pub trait RequestHandler: Send + Sync + 'static {
    /// Processes `request`. `Some(response)` is sent back (unless the request was
    /// oneway); `None` means the handler answers later through
    /// [`Channel::send_response`] (long polling) or not at all.
    fn handle(&self, channel: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>>;

    /// Called once when the connection closes, for whatever reason.
    fn on_close(&self, _channel: &Channel) {}
}

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    /// Close the connection after this long without reading or writing anything.
    pub idle_timeout: Duration,
    /// Frames queued for writing before senders wait.
    pub write_queue: usize,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self { idle_timeout: Duration::from_secs(120), write_queue: 4096 }
    }
}

struct Outgoing {
    prefix: Bytes,
    body: Body,
}

struct Inner {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    tx: mpsc::Sender<Outgoing>,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    next_opaque: AtomicI32,
    closed: AtomicBool,
    cancel: CancellationToken,
    /// Milliseconds since `epoch` of the last read or write.
    last_activity: AtomicU64,
    epoch: Instant,
}

/// A cheap, clonable handle to one connection.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("id", &self.inner.id).field("peer", &self.inner.peer).finish()
    }
}

impl PartialEq for Channel {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}
impl Eq for Channel {}

impl std::hash::Hash for Channel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}

static NEXT_CHANNEL_ID: AtomicU64 = AtomicU64::new(1);

impl Channel {
    /// Takes over `stream`: spawns its reader and writer tasks on the current runtime.
    /// Request tasks are tracked by `tracker` so a server can wait for them on shutdown;
    /// `cancel` closes the channel.
    pub fn spawn(
        stream: TcpStream,
        handler: Arc<dyn RequestHandler>,
        options: &ChannelOptions,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Channel> {
        let peer = stream.peer_addr()?;
        let local = stream.local_addr()?;
        // Latency over throughput: responses are small and batched by the writer.
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(Self::spawn_halves(read, write, (peer, local), handler, options, tracker, cancel))
    }

    /// [`Channel::spawn`] over any established byte stream between `peer` and
    /// `local`: a TLS session (either side) of a TCP connection, or an in-process pipe
    /// ([`crate::server::LocalConnector`]).
    pub fn spawn_io<S>(
        stream: S,
        (peer, local): (SocketAddr, SocketAddr),
        handler: Arc<dyn RequestHandler>,
        options: &ChannelOptions,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Channel
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        Self::spawn_halves(read, write, (peer, local), handler, options, tracker, cancel)
    }

    fn spawn_halves<R, W>(
        read: R,
        write: W,
        (peer, local): (SocketAddr, SocketAddr),
        handler: Arc<dyn RequestHandler>,
        options: &ChannelOptions,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Channel
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(options.write_queue);
        let channel = Channel {
            inner: Arc::new(Inner {
                id: NEXT_CHANNEL_ID.fetch_add(1, Ordering::Relaxed),
                peer,
                local,
                tx,
                pending: Mutex::new(HashMap::new()),
                next_opaque: AtomicI32::new(0),
                closed: AtomicBool::new(false),
                cancel,
                last_activity: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        };
        tokio::spawn(write_loop(write, rx, channel.inner.cancel.clone(), channel.clone()));
        let reader =
            read_loop(FramedRead::new(read, RemotingCodec), channel.clone(), handler, tracker, options.idle_timeout);
        tokio::spawn(reader);
        channel
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Closes the connection; pending requests fail with `ConnectionClosed`.
    pub fn close(&self) {
        self.inner.cancel.cancel();
    }

    /// Resolves once the channel has closed.
    pub async fn closed(&self) {
        self.inner.cancel.cancelled().await;
    }

    /// Sends a request and waits for its response.
    ///
    /// # Errors
    /// `Timeout` after `timeout`; `ConnectionClosed` if the connection ends first;
    /// encoding errors (frame too large).
    pub async fn request(&self, mut cmd: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        let opaque = self.inner.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.opaque = opaque;
        cmd.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().insert(opaque, tx);
        let code = cmd.code;
        let sent = async {
            self.enqueue(&cmd).await?;
            rx.await.map_err(|_| Error::ConnectionClosed(self.inner.peer.to_string()))
        };
        match tokio::time::timeout(timeout, sent).await {
            Ok(result) => {
                if result.is_err() {
                    self.inner.pending.lock().remove(&opaque);
                }
                result
            }
            Err(_) => {
                self.inner.pending.lock().remove(&opaque);
                Err(Error::Timeout { addr: self.inner.peer.to_string(), code, timeout })
            }
        }
    }

    /// Sends a request that expects no response.
    ///
    /// # Errors
    /// The connection is closed, or encoding fails.
    pub async fn oneway(&self, mut cmd: RemotingCommand) -> Result<()> {
        cmd.opaque = self.inner.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.flag = (cmd.flag | FLAG_ONEWAY) & !FLAG_RESPONSE;
        self.enqueue(&cmd).await
    }

    /// Sends a response. The caller sets `opaque` and `serialize_type` from the
    /// request (the dispatcher does this for returned responses).
    ///
    /// # Errors
    /// The connection is closed, or encoding fails.
    pub async fn send_response(&self, mut cmd: RemotingCommand) -> Result<()> {
        cmd.flag |= FLAG_RESPONSE;
        self.enqueue(&cmd).await
    }

    async fn enqueue(&self, cmd: &RemotingCommand) -> Result<()> {
        if self.is_closed() {
            return Err(Error::ConnectionClosed(self.inner.peer.to_string()));
        }
        let mut prefix = BytesMut::with_capacity(192);
        encode_prefix(cmd, &mut prefix)?;
        let out = Outgoing { prefix: prefix.freeze(), body: cmd.body.clone() };
        self.inner.tx.send(out).await.map_err(|_| Error::ConnectionClosed(self.inner.peer.to_string()))
    }

    fn touch(&self) {
        let ms = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.last_activity.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = self.inner.last_activity.load(Ordering::Relaxed);
        self.inner.epoch.elapsed().saturating_sub(Duration::from_millis(last))
    }

    fn mark_closed(&self) {
        if !self.inner.closed.swap(true, Ordering::AcqRel) {
            self.inner.cancel.cancel();
            // Dropping the senders wakes every waiter with ConnectionClosed.
            self.inner.pending.lock().clear();
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut frames: FramedRead<R, RemotingCodec>,
    channel: Channel,
    handler: Arc<dyn RequestHandler>,
    tracker: TaskTracker,
    idle_timeout: Duration,
) {
    let cancel = channel.inner.cancel.clone();
    channel.touch();
    // One idle timer for the connection's life, re-armed only when it fires early:
    // arming a timer per frame would take the timer wheel's lock on every request.
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            next = frames.next() => next,
            () = &mut idle => {
                let idle_for = channel.idle_for();
                if idle_for >= idle_timeout {
                    debug!(peer = %channel.peer_addr(), "closing idle connection");
                    break;
                }
                idle.as_mut().reset(tokio::time::Instant::now() + (idle_timeout - idle_for));
                continue;
            }
        };
        let cmd = match next {
            None => break,
            Some(Ok(cmd)) => cmd,
            Some(Err(Error::Io(e))) => {
                debug!(peer = %channel.peer_addr(), error = %e, "connection read failed");
                break;
            }
            Some(Err(e)) => {
                warn!(peer = %channel.peer_addr(), error = %e, "closing connection after a malformed frame");
                break;
            }
        };
        channel.touch();
        if cmd.is_response() {
            let waiter = channel.inner.pending.lock().remove(&cmd.opaque);
            match waiter {
                Some(w) => {
                    let _ = w.send(cmd);
                }
                None => debug!(opaque = cmd.opaque, "response for an unknown or timed-out request"),
            }
            continue;
        }
        // A debug span: at the default `info` level it is disabled and costs nothing
        // per request; `remoting=debug` turns it on, and every event a request logs
        // then carries its code, opaque, peer, topic, queue and group.
        let span = tracing::debug_span!(
            "request",
            opcode = cmd.code,
            opaque = cmd.opaque,
            peer = %channel.peer_addr(),
            topic = tracing::field::Empty,
            queue_id = tracing::field::Empty,
            group = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let handler = handler.clone();
        let ch = channel.clone();
        tracker.spawn(serve_request(handler, ch, cmd).instrument(span));
    }
    channel.mark_closed();
    handler.on_close(&channel);
}

/// Runs `handler` on a request of `channel`; a panic becomes SYSTEM_ERROR.
pub(crate) async fn answer(
    handler: &dyn RequestHandler,
    channel: Channel,
    cmd: RemotingCommand,
) -> Option<RemotingCommand> {
    let code = cmd.code;
    match AssertUnwindSafe(handler.handle(channel, cmd)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(opcode = code, "request handler panicked; answering SYSTEM_ERROR");
            Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, "internal error while processing the request"))
        }
    }
}

async fn serve_request(handler: Arc<dyn RequestHandler>, channel: Channel, cmd: RemotingCommand) {
    let opaque = cmd.opaque;
    let oneway = cmd.is_oneway();
    let ser = cmd.serialize_type;
    if let Some(mut resp) = answer(&*handler, channel.clone(), cmd).await {
        if oneway {
            return;
        }
        tracing::Span::current().record("status", resp.code);
        resp.opaque = opaque;
        resp.serialize_type = ser;
        if let Err(e) = channel.send_response(resp).await {
            debug!(error = %e, "could not send response");
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Outgoing>,
    cancel: CancellationToken,
    channel: Channel,
) {
    let mut bufs: Vec<Bytes> = Vec::with_capacity(64);
    loop {
        let first = tokio::select! {
            biased;
            item = rx.recv() => match item { Some(i) => i, None => break },
            _ = cancel.cancelled() => break,
        };
        push(&mut bufs, first);
        drain(&mut rx, &mut bufs);
        // Let the tasks that are ready right now (the other requests of a group commit,
        // the other responses of a batch that just arrived) queue their frames first:
        // one `writev` then carries them all. Without this the scheduler runs this
        // task straight after the first sender and every frame costs a system call
        // and a TCP segment on both ends. The yield costs well under a microsecond
        // and does not wait for anything that is not already runnable.
        if bufs.len() < MAX_WRITE_SLICES / 2 {
            tokio::task::yield_now().await;
            drain(&mut rx, &mut bufs);
        }
        if let Err(e) = write_all_vectored(&mut w, &mut bufs).await {
            debug!(peer = %channel.peer_addr(), error = %e, "write failed; closing connection");
            break;
        }
        channel.touch();
    }
    let _ = w.shutdown().await;
    channel.mark_closed();
}

/// Slices gathered for one round of writes.
const MAX_WRITE_SLICES: usize = 256;

fn drain(rx: &mut mpsc::Receiver<Outgoing>, bufs: &mut Vec<Bytes>) {
    while bufs.len() < MAX_WRITE_SLICES {
        match rx.try_recv() {
            Ok(o) => push(bufs, o),
            Err(_) => break,
        }
    }
}

fn push(bufs: &mut Vec<Bytes>, o: Outgoing) {
    bufs.push(o.prefix);
    // Empty slices are skipped: a vectored write of nothing but empty slices returns 0,
    // which `write_all_vectored` must read as WriteZero and close the connection.
    match o.body {
        Body::Empty => {}
        Body::Bytes(b) => {
            if !b.is_empty() {
                bufs.push(b);
            }
        }
        Body::Chain(parts) => bufs.extend(parts.into_iter().filter(|p| !p.is_empty())),
    }
}

/// Writes every buffer, using `writev` for as many as the OS takes at once.
async fn write_all_vectored<W: AsyncWrite + Unpin>(w: &mut W, bufs: &mut Vec<Bytes>) -> std::io::Result<()> {
    let mut start = 0;
    while start < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[start..].iter().take(512).map(|b| IoSlice::new(b)).collect();
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let len = bufs[start].len();
            if n >= len {
                n -= len;
                start += 1;
            } else {
                bufs[start].advance(n);
                n = 0;
            }
        }
    }
    bufs.clear();
    Ok(())
}
