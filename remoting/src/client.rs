//! The remoting client: one connection per remote address, created on demand and
//! shared by every request to that address.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acl::Credentials;
use crate::channel::{BoxFuture, Channel, ChannelOptions, RequestHandler};
use crate::command::RemotingCommand;
use crate::error::{Error, Result};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub channel: ChannelOptions,
    /// Every request this client sends is signed with these, as RocketMQ's
    /// `AclClientRPCHook` signs them ([`crate::acl`]).
    pub credentials: Option<Credentials>,
    /// Connect with TLS (RocketMQ's `tls.enable`).
    pub tls: Option<crate::tls::ClientTls>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            channel: ChannelOptions::default(),
            credentials: None,
            tls: None,
        }
    }
}

/// Answers requests a server sends us with REQUEST_CODE_NOT_SUPPORTED.
struct NoHandler;

impl RequestHandler for NoHandler {
    fn handle(&self, _: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>> {
        let code = request.code;
        Box::pin(async move {
            Some(RemotingCommand::error(
                common::ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {code} not supported"),
            ))
        })
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Channel>>>;

struct Inner {
    config: ClientConfig,
    /// The credentials' secret, keyed once.
    signing_key: Option<crate::acl::SigningKey>,
    handler: Arc<dyn RequestHandler>,
    slots: Mutex<HashMap<String, Slot>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// A pool of connections keyed by `host:port`.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<Inner>,
}

impl RemotingClient {
    /// `handler` serves requests servers send to us (check-back, notifications).
    pub fn new(config: ClientConfig, handler: Option<Arc<dyn RequestHandler>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                signing_key: config.credentials.as_ref().map(|c| crate::acl::SigningKey::new(&c.secret_key)),
                config,
                handler: handler.unwrap_or_else(|| Arc::new(NoHandler)),
                slots: Mutex::new(HashMap::new()),
                cancel: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// The open connection to `addr`, connecting if there is none.
    ///
    /// # Errors
    /// The address is invalid or the connection cannot be made in time.
    pub async fn channel(&self, addr: &str) -> Result<Channel> {
        let slot = {
            let mut slots = self.inner.slots.lock();
            slots.entry(addr.to_owned()).or_default().clone()
        };
        // One connect per address at a time; other callers wait for its outcome.
        let mut guard = slot.lock().await;
        if let Some(ch) = guard.as_ref() {
            if !ch.is_closed() {
                return Ok(ch.clone());
            }
        }
        let stream = tokio::time::timeout(self.inner.config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Connect {
                addr: addr.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })?
            .map_err(|source| Error::Connect { addr: addr.to_owned(), source })?;
        let ch = match &self.inner.config.tls {
            None => Channel::spawn(
                stream,
                self.inner.handler.clone(),
                &self.inner.config.channel,
                self.inner.tracker.clone(),
                self.inner.cancel.child_token(),
            )?,
            Some(tls) => {
                stream.set_nodelay(true)?;
                let ends = (stream.peer_addr()?, stream.local_addr()?);
                let connect_error = |source| Error::Connect { addr: addr.to_owned(), source };
                let session = tokio::time::timeout(self.inner.config.connect_timeout, tls.connect(addr, stream))
                    .await
                    .map_err(|_| {
                        connect_error(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))
                    })?
                    .map_err(connect_error)?;
                Channel::spawn_io(
                    session,
                    ends,
                    self.inner.handler.clone(),
                    &self.inner.config.channel,
                    self.inner.tracker.clone(),
                    self.inner.cancel.child_token(),
                )
            }
        };
        *guard = Some(ch.clone());
        Ok(ch)
    }

    /// Sends `cmd` to `addr` and waits for the response.
    ///
    /// # Errors
    /// Connection failures, timeouts, a closed connection.
    pub async fn invoke(&self, addr: &str, mut cmd: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        self.sign(&mut cmd);
        let ch = self.channel(addr).await?;
        let result = ch.request(cmd, timeout).await;
        if matches!(result, Err(Error::ConnectionClosed(_))) {
            self.close(addr);
        }
        result
    }

    /// Sends a oneway request.
    ///
    /// # Errors
    /// Connection failures.
    pub async fn invoke_oneway(&self, addr: &str, mut cmd: RemotingCommand) -> Result<()> {
        self.sign(&mut cmd);
        self.channel(addr).await?.oneway(cmd).await
    }

    fn sign(&self, cmd: &mut RemotingCommand) {
        if let (Some(credentials), Some(key)) = (&self.inner.config.credentials, &self.inner.signing_key) {
            crate::acl::sign_with(cmd, credentials, key);
        }
    }

    /// Closes the connection to `addr`, if any.
    pub fn close(&self, addr: &str) {
        if let Some(slot) = self.inner.slots.lock().remove(addr) {
            if let Ok(guard) = slot.try_lock() {
                if let Some(ch) = guard.as_ref() {
                    ch.close();
                }
            }
        }
    }

    /// Closes every connection.
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.slots.lock().clear();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
