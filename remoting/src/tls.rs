//! TLS on the remoting port, with RocketMQ's server modes: `disabled` (plain TCP),
//! `permissive` (TLS and plain TCP on one port, told apart by the first byte: a TLS
//! handshake starts with 0x16, a remoting frame with its length's high byte, 0 for
//! any frame under 16 MiB) and `enforcing` (TLS only; a plaintext peer is closed
//! with a log line saying why). rustls with the `ring` provider; certificates and
//! keys are PEM files, read again when they change.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// The first byte of a TLS handshake record.
pub const HANDSHAKE_BYTE: u8 = 0x16;

/// How long a new connection has to send its first byte, then to finish its handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection accepted on a port with TLS.
pub enum Accepted {
    /// Plain TCP (a `permissive` port).
    Plain(TcpStream),
    /// The handshake completed.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// How a server port treats TLS (RocketMQ's `tls.server.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disabled,
    Permissive,
    Enforcing,
}

/// Whether a server asks for client certificates (`tls.server.need.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Verified when offered.
    Optional,
    /// Required and verified.
    Require,
}

/// Why TLS could not be set up.
#[derive(Debug)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// rustls with *ring*: it builds with a C compiler alone (aws-lc-rs, rustls's other
/// provider, needs more of a toolchain). *ring* has no post-quantum key exchange,
/// which RocketMQ's Java clients do not offer either.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| TlsError(format!("cannot read certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError(format!("cannot read a private key from {}: {e}", path.display())))
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).map_err(|e| TlsError(format!("a certificate of {} is not a usable root: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The files a server's TLS is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Roots that client certificates must chain to (needed unless `ClientAuth::None`).
    pub trust: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl ServerFiles {
    fn build(&self) -> Result<rustls::ServerConfig, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let trust = self.trust.as_deref().ok_or_else(|| {
                    TlsError("client certificates are asked for, but no trust file says which to accept".into())
                })?;
                let v =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(trust)?), provider());
                let v = if auth == ClientAuth::Optional { v.allow_unauthenticated() } else { v };
                builder.with_client_cert_verifier(v.build().map_err(|e| TlsError(e.to_string()))?)
            }
        };
        builder.with_single_cert(certs(&self.cert)?, key(&self.key)?).map_err(|e| TlsError(e.to_string()))
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.trust.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// A server port's TLS: its mode and the acceptor, swapped whole when the files change.
pub struct ServerTls {
    mode: Mode,
    files: ServerFiles,
    acceptor: ArcSwap<tokio_rustls::TlsAcceptor>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").field("mode", &self.mode).field("files", &self.files).finish()
    }
}

impl ServerTls {
    /// Reads the files; `None` for `Mode::Disabled`.
    ///
    /// # Errors
    /// A file is missing or unreadable, or the key does not match the certificate.
    pub fn load(mode: Mode, files: ServerFiles) -> Result<Option<Arc<Self>>, TlsError> {
        if mode == Mode::Disabled {
            return Ok(None);
        }
        let config = files.build()?;
        Ok(Some(Arc::new(Self {
            mode,
            stamps: Mutex::new(files.stamps()),
            files,
            acceptor: ArcSwap::from_pointee(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        })))
    }

    /// The port's TLS as `[broker.tls]`, `[namesrv.tls]` or `[controller.tls]`
    /// configures it; `None` when disabled.
    ///
    /// # Errors
    /// As [`ServerTls::load`].
    pub fn from_config(c: &config::ServerTlsConfig) -> Result<Option<Arc<Self>>, TlsError> {
        let mode = match c.mode {
            config::TlsMode::Disabled => return Ok(None),
            config::TlsMode::Permissive => Mode::Permissive,
            config::TlsMode::Enforcing => Mode::Enforcing,
        };
        let files = ServerFiles {
            cert: c.cert_path.clone().unwrap_or_default(),
            key: c.key_path.clone().unwrap_or_default(),
            trust: c.trust_cert_path.clone(),
            client_auth: match c.need_client_auth {
                config::TlsClientAuth::None => ClientAuth::None,
                config::TlsClientAuth::Optional => ClientAuth::Optional,
                config::TlsClientAuth::Require => ClientAuth::Require,
            },
        };
        Self::load(mode, files)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn acceptor(&self) -> Arc<tokio_rustls::TlsAcceptor> {
        self.acceptor.load_full()
    }

    /// Sets up a connection: a TLS handshake (first byte 0x16) is completed;
    /// anything else is plain TCP on a `permissive` port and closed, with a log line
    /// saying why, on an `enforcing` one. Both steps are bounded by
    /// [`HANDSHAKE_TIMEOUT`]. `None`: the connection was closed (and why logged).
    pub async fn accept(&self, stream: TcpStream, peer: std::net::SocketAddr) -> Option<Accepted> {
        let mut first = [0u8; 1];
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "connection failed before its first byte");
                return None;
            }
            Err(_) => {
                tracing::warn!(peer = %peer, "closing a connection that sent nothing within {HANDSHAKE_TIMEOUT:?}");
                return None;
            }
        }
        if first[0] != HANDSHAKE_BYTE {
            if self.mode == Mode::Enforcing {
                tracing::warn!(
                    peer = %peer,
                    "closing a plaintext connection: this port requires TLS (tls.server.mode=enforcing)"
                );
                return None;
            }
            return Some(Accepted::Plain(stream));
        }
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(peer = %peer, error = %e, "TCP_NODELAY not set");
        }
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor().accept(stream)).await {
            Ok(Ok(s)) => Some(Accepted::Tls(Box::new(s))),
            Ok(Err(e)) => {
                tracing::warn!(peer = %peer, error = %e, "TLS handshake failed; connection closed");
                None
            }
            Err(_) => {
                tracing::warn!(peer = %peer, "TLS handshake not finished within {HANDSHAKE_TIMEOUT:?}; connection closed");
                None
            }
        }
    }

    /// Reads the files again when one of them changed; a set that does not load keeps
    /// the previous one. Returns whether new files were taken.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = self.files.stamps();
        let mut stamps = self.stamps.lock();
        if *stamps == now {
            return Ok(false);
        }
        *stamps = now;
        let config = self.files.build()?;
        self.acceptor.store(Arc::new(tokio_rustls::TlsAcceptor::from(Arc::new(config))));
        Ok(true)
    }

    /// Polls the files every second until `cancel`, logging what it does.
    pub async fn watch(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.reload_if_changed()).await {
                Ok(Ok(true)) => tracing::info!(cert = %self.files.cert.display(), "TLS certificate files reloaded"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "TLS certificate files changed but do not load; keeping the previous ones")
                }
                _ => {}
            }
        }
    }
}

/// A client's TLS (RocketMQ's `tls.enable` with `tls.client.*`).
#[derive(Clone)]
pub struct ClientTls {
    /// `Err`: TLS was asked for but its files do not load; every connect says why.
    connector: Result<tokio_rustls::TlsConnector, Arc<str>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// `trust`: roots the server's certificate must chain to; `None` accepts any
    /// server certificate (RocketMQ's `tls.client.authServer=false`, its default).
    /// `identity`: the client's certificate and key, for servers that ask.
    ///
    /// # Errors
    /// A file is missing or unreadable.
    pub fn new(trust: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?;
        let builder = match trust {
            Some(path) => builder.with_root_certificates(roots(path)?),
            None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServer(provider()))),
        };
        let config = match identity {
            Some((cert, k)) => {
                builder.with_client_auth_cert(certs(cert)?, key(k)?).map_err(|e| TlsError(e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Self { connector: Ok(tokio_rustls::TlsConnector::from(Arc::new(config))) })
    }

    /// The client side as configured (`own_port`: the TLS of the server whose
    /// connections these are, which decides when `enable` is unset): `None` when
    /// off. Files that do not load give a client whose every connection fails
    /// saying why (logged here once), never one that falls back to plain TCP.
    pub fn from_config(c: &config::ClientTlsConfig, own_port: Option<&config::ServerTlsConfig>) -> Option<Self> {
        if !c.enabled(own_port) {
            return None;
        }
        let identity = c.cert_path.as_deref().zip(c.key_path.as_deref());
        Some(Self::new(c.trust_cert_path.as_deref(), identity).unwrap_or_else(|e| {
            tracing::error!(error = %e, "TLS is enabled but cannot be set up; every connection will fail");
            Self::unusable(e)
        }))
    }

    /// A client whose TLS cannot be set up: every connection fails with `why`
    /// (rather than falling back to plain TCP).
    pub fn unusable(why: TlsError) -> Self {
        Self { connector: Err(why.0.into()) }
    }

    /// Completes a handshake over `stream` with the server at `addr` (`host:port`;
    /// the host is the name its certificate must carry).
    ///
    /// # Errors
    /// The handshake fails (untrusted certificate, wrong name, refused).
    pub async fn connect(
        &self,
        addr: &str,
        stream: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        match &self.connector {
            Ok(c) => c.connect(name, stream).await,
            Err(why) => Err(std::io::Error::other(format!("TLS cannot be used: {why}"))),
        }
    }
}

/// Accepts any server certificate (the signatures of the handshake are still
/// checked): RocketMQ clients do not authenticate servers unless told to.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
