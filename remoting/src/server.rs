//! The remoting server: accepts connections and dispatches requests by code.
//!
//! [`Dispatcher`] is the processor table: request code → [`Processor`]; a code with
//! no processor is answered with REQUEST_CODE_NOT_SUPPORTED and the remark Java uses.
//! [`RemotingServer`] owns the listener; shutdown stops accepting, waits (bounded) for
//! requests already being processed and writes their responses, then closes every
//! connection.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use common::ResponseCode;

use crate::channel::{BoxFuture, Channel, ChannelOptions, RequestHandler};
use crate::code::RequestCode;
use crate::command::RemotingCommand;
use crate::error::Result;

/// Processes one kind of request.
pub trait Processor: Send + Sync + 'static {
    fn process(&self, channel: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>>;
}

impl<F, Fut> Processor for F
where
    F: Fn(Channel, RemotingCommand) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<RemotingCommand>> + Send + 'static,
{
    fn process(&self, channel: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>> {
        Box::pin(self(channel, request))
    }
}

type CloseHook = Arc<dyn Fn(&Channel) + Send + Sync>;

/// Sees every request a [`Dispatcher`] answers: its code, the response's code
/// (`None` for a oneway request or a request answered with nothing) and how long
/// the processor took, a held pull's wait included. Called on the request's task;
/// it must be cheap.
pub trait RequestObserver: Send + Sync + 'static {
    fn observe(&self, request_code: i32, response_code: Option<i32>, elapsed: Duration);
}

/// Admits or refuses a request before its processor runs (RocketMQ's RPC hooks run
/// there: the ACL check). A refusal is answered with the response `refuse` returns,
/// or not at all for a oneway request. Called on the connection's read path for
/// every request: it must be cheap.
pub trait RequestGuard: Send + Sync + 'static {
    /// `None` admits the request.
    fn refuse(&self, channel: &Channel, request: &RemotingCommand) -> Option<RemotingCommand>;
}

/// Routes requests to processors by request code.
#[derive(Default)]
pub struct Dispatcher {
    table: HashMap<i32, Arc<dyn Processor>>,
    close_hooks: Vec<CloseHook>,
    observer: Option<Arc<dyn RequestObserver>>,
    guard: Option<Arc<dyn RequestGuard>>,
}

impl Dispatcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `processor` for `code`, replacing an earlier one.
    pub fn register(&mut self, code: RequestCode, processor: impl Processor) -> &mut Self {
        self.table.insert(code.0, Arc::new(processor));
        self
    }

    /// Registers one shared processor for several codes.
    pub fn register_many(&mut self, codes: &[RequestCode], processor: Arc<dyn Processor>) -> &mut Self {
        for c in codes {
            self.table.insert(c.0, processor.clone());
        }
        self
    }

    /// Runs `hook` whenever a connection closes.
    pub fn on_close(&mut self, hook: impl Fn(&Channel) + Send + Sync + 'static) -> &mut Self {
        self.close_hooks.push(Arc::new(hook));
        self
    }

    /// Reports every request to `observer` (the RPC latency metric).
    pub fn observe(&mut self, observer: Arc<dyn RequestObserver>) -> &mut Self {
        self.observer = Some(observer);
        self
    }

    /// Passes every request with a processor through `guard` first.
    pub fn guard(&mut self, guard: Arc<dyn RequestGuard>) -> &mut Self {
        self.guard = Some(guard);
        self
    }

    pub fn handles(&self, code: RequestCode) -> bool {
        self.table.contains_key(&code.0)
    }
}

impl RequestHandler for Dispatcher {
    fn handle(&self, channel: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>> {
        let Some(p) = self.table.get(&request.code) else {
            let code = request.code;
            tracing::debug!(opcode = code, "request code not supported");
            return Box::pin(async move {
                Some(RemotingCommand::error(
                    ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                    format!(" request type {code} not supported"),
                ))
            });
        };
        if let Some(guard) = &self.guard {
            if let Some(refusal) = guard.refuse(&channel, &request) {
                let answer = (!request.is_oneway()).then_some(refusal);
                return Box::pin(async move { answer });
            }
        }
        match &self.observer {
            None => p.process(channel, request),
            Some(observer) => {
                let (observer, code, start) = (observer.clone(), request.code, std::time::Instant::now());
                let answer = p.process(channel, request);
                Box::pin(async move {
                    let response = answer.await;
                    observer.observe(code, response.as_ref().map(|r| r.code), start.elapsed());
                    response
                })
            }
        }
    }

    fn on_close(&self, channel: &Channel) {
        for hook in &self.close_hooks {
            hook(channel);
        }
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub channel: ChannelOptions,
    /// Connections above this are accepted and closed at once (port scanners and
    /// health checks must not exhaust memory).
    pub max_connections: usize,
    /// TLS on this port (`permissive` or `enforcing`); `None`: plain TCP.
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

impl ServerConfig {
    pub fn new(bind: SocketAddr) -> Self {
        Self { bind, channel: ChannelOptions::default(), max_connections: 65_536, tls: None }
    }
}

/// Sets up a connection on a TLS port (see [`crate::tls::ServerTls::accept`]).
/// `None`: the connection was closed.
async fn accept_tls(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: &crate::tls::ServerTls,
    handler: Arc<dyn RequestHandler>,
    options: &ChannelOptions,
    tracker: TaskTracker,
    cancel: CancellationToken,
) -> Option<Channel> {
    let local = stream.local_addr().ok()?;
    match tls.accept(stream, peer).await? {
        crate::tls::Accepted::Plain(stream) => Channel::spawn(stream, handler, options, tracker, cancel)
            .inspect_err(|e| warn!(peer = %peer, error = %e, "could not set up connection"))
            .ok(),
        crate::tls::Accepted::Tls(s) => Some(Channel::spawn_io(*s, (peer, local), handler, options, tracker, cancel)),
    }
}

/// A running server.
pub struct RemotingServer {
    local_addr: SocketAddr,
    /// Stops the accept loop.
    cancel: CancellationToken,
    /// Parent of every connection's token: cancelled last, so that requests finishing
    /// during shutdown can still write their responses.
    connections: CancellationToken,
    tracker: TaskTracker,
    accept: tokio::task::JoinHandle<()>,
    channels: Arc<Mutex<HashMap<u64, Channel>>>,
    local: LocalConnector,
}

/// Opens connections to a [`RemotingServer`] from inside its own process, over an
/// in-memory pipe instead of TCP. The server treats them as any connection (same
/// handler, guard, observers, shutdown); the broker's gRPC endpoint gives each of its
/// clients one, as RocketMQ's proxy in local mode calls the broker's processors.
#[derive(Clone)]
pub struct LocalConnector {
    local_addr: SocketAddr,
    handler: Arc<dyn RequestHandler>,
    options: ChannelOptions,
    tracker: TaskTracker,
    connections: CancellationToken,
    channels: Arc<Mutex<HashMap<u64, Channel>>>,
}

impl LocalConnector {
    /// Bytes buffered in each direction of the pipe.
    const PIPE: usize = 256 * 1024;

    /// A connection to the server from a client at `peer` (the server sees that
    /// address, as it would a TCP peer's). Requests the server sends the client are
    /// handled by `inbound`. Closing it closes the server's end.
    pub fn connect(&self, peer: SocketAddr, inbound: Arc<dyn RequestHandler>) -> LocalConnection {
        let (client_io, server_io) = tokio::io::duplex(Self::PIPE);
        let server = Channel::spawn_io(
            server_io,
            (peer, self.local_addr),
            self.handler.clone(),
            &self.options,
            self.tracker.clone(),
            self.connections.child_token(),
        );
        self.channels.lock().insert(server.id(), server.clone());
        let client = Channel::spawn_io(
            client_io,
            (self.local_addr, peer),
            inbound,
            &self.options,
            TaskTracker::new(),
            self.connections.child_token(),
        );
        LocalConnection { client, server, handler: self.handler.clone() }
    }
}

/// An in-process connection ([`LocalConnector::connect`]).
///
/// A request can go through the pipe ([`Channel::request`] on [`Self::channel`]), or
/// straight to the server's handler with [`Self::call`]: the same handler (the
/// server's guard, observers and processors) with the connection's server end as its
/// channel, without encoding, copying or waking a reader on either side. Requests
/// the server sends the client still cross the pipe.
#[derive(Clone)]
pub struct LocalConnection {
    client: Channel,
    server: Channel,
    handler: Arc<dyn RequestHandler>,
}

impl LocalConnection {
    /// The client's end.
    pub fn channel(&self) -> &Channel {
        &self.client
    }

    /// Serves `request` as the server serves one arriving on this connection; `None`
    /// for a oneway request (or a handler that answers nothing). A panic in the
    /// handler is answered SYSTEM_ERROR, as on the wire.
    pub async fn call(&self, request: RemotingCommand) -> Option<RemotingCommand> {
        let span = tracing::debug_span!(
            "request",
            opcode = request.code,
            opaque = request.opaque,
            peer = %self.server.peer_addr(),
            topic = tracing::field::Empty,
            queue_id = tracing::field::Empty,
            group = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let oneway = request.is_oneway();
        let answer = tracing::Instrument::instrument(
            crate::channel::answer(&*self.handler, self.server.clone(), request),
            span.clone(),
        )
        .await;
        if let Some(r) = &answer {
            span.record("status", r.code);
        }
        answer.filter(|_| !oneway)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed() || self.server.is_closed()
    }

    /// Closes both ends; the server's close hooks run as for a closed TCP connection.
    pub fn close(&self) {
        self.client.close();
    }
}

impl RemotingServer {
    /// Binds and starts accepting.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(config: ServerConfig, handler: Arc<dyn RequestHandler>) -> Result<Self> {
        let listener = TcpListener::bind(config.bind).await?;
        Self::serve(listener, config, handler)
    }

    /// Serves an already bound listener (a broker binds first so that it knows its
    /// port before it opens the store, whose records carry that address).
    ///
    /// # Errors
    /// The listener's local address cannot be read.
    pub fn serve(listener: TcpListener, config: ServerConfig, handler: Arc<dyn RequestHandler>) -> Result<Self> {
        let local_addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let connections = CancellationToken::new();
        let tracker = TaskTracker::new();
        let channels: Arc<Mutex<HashMap<u64, Channel>>> = Arc::default();
        let handler: Arc<dyn RequestHandler> = Arc::new(Tracked { inner: handler, channels: channels.clone() });
        let local = LocalConnector {
            local_addr,
            handler: handler.clone(),
            options: config.channel.clone(),
            tracker: tracker.clone(),
            connections: connections.clone(),
            channels: channels.clone(),
        };
        let accept = tokio::spawn(
            accept_loop(
                listener,
                config,
                handler,
                cancel.clone(),
                connections.clone(),
                tracker.clone(),
                channels.clone(),
            )
            .instrument(tracing::info_span!("accept", addr = %local_addr)),
        );
        Ok(Self { local_addr, cancel, connections, tracker, accept, channels, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Opens in-process connections to this server.
    pub fn local_connector(&self) -> LocalConnector {
        self.local.clone()
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.channels.lock().len()
    }

    /// Stops accepting, waits up to `grace` for requests in progress to finish, then
    /// closes every connection.
    ///
    /// Connections stay open while requests finish, so their responses reach the
    /// peers: a request that completes within `grace` is answered. Each connection's
    /// writer flushes what is queued before it closes.
    pub async fn shutdown(self, grace: Duration) {
        self.cancel.cancel();
        let _ = self.accept.await;
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            warn!("requests still running after the shutdown grace period");
        }
        self.connections.cancel();
    }
}

struct Tracked {
    inner: Arc<dyn RequestHandler>,
    channels: Arc<Mutex<HashMap<u64, Channel>>>,
}

impl RequestHandler for Tracked {
    fn handle(&self, channel: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>> {
        self.inner.handle(channel, request)
    }

    fn on_close(&self, channel: &Channel) {
        self.channels.lock().remove(&channel.id());
        self.inner.on_close(channel);
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<dyn RequestHandler>,
    cancel: CancellationToken,
    connections: CancellationToken,
    tracker: TaskTracker,
    channels: Arc<Mutex<HashMap<u64, Channel>>>,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if channels.lock().len() >= config.max_connections {
            warn!(peer = %peer, "connection limit reached; refusing connection");
            drop(stream);
            continue;
        }
        if let Some(tls) = &config.tls {
            // The first byte and the handshake are awaited off the accept loop: a
            // slow or silent peer must not hold up the others.
            let (tls, handler, options) = (tls.clone(), handler.clone(), config.channel.clone());
            let (tracker, token, channels) = (tracker.clone(), connections.child_token(), channels.clone());
            tokio::spawn(async move {
                if let Some(ch) = accept_tls(stream, peer, &tls, handler, &options, tracker, token).await {
                    tracing::debug!(peer = %peer, "connection accepted");
                    channels.lock().insert(ch.id(), ch);
                }
            });
            continue;
        }
        match Channel::spawn(stream, handler.clone(), &config.channel, tracker.clone(), connections.child_token()) {
            Ok(ch) => {
                tracing::debug!(peer = %peer, "connection accepted");
                channels.lock().insert(ch.id(), ch);
            }
            Err(e) => warn!(peer = %peer, error = %e, "could not set up connection"),
        }
    }
    info!("stopped accepting connections");
}

/// Resolves when the process is asked to stop: SIGTERM (what `kill` and service
/// managers send) or SIGINT (Ctrl-C). A server binary awaits it, then shuts down
/// gracefully.
///
/// # Errors
/// The signal handlers cannot be installed.
pub async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
