//! [`ServerTlsConfig`]: TLS on a server's remoting port (RocketMQ's `tls.server.*`
//! settings), `[broker.tls]` and `[namesrv.tls]` in TOML.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Invalid, Result};

/// How a port treats TLS (`tls.server.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP only.
    #[default]
    Disabled,
    /// TLS and plain TCP on the same port.
    Permissive,
    /// TLS only: a plaintext connection is closed.
    Enforcing,
}

/// Whether clients must show a certificate (`tls.server.need.client.auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsClientAuth {
    /// Not asked for.
    #[default]
    None,
    /// Verified when shown.
    Optional,
    /// Required and verified.
    Require,
}

/// TLS on a server's remoting port. The PEM files are read again when they change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerTlsConfig {
    /// `tls.server.mode`. FerroMQ's default is `disabled`: RocketMQ's is
    /// `permissive` with a self-signed certificate, which authenticates nobody.
    pub mode: TlsMode,
    /// The server's certificate chain, PEM (`tls.server.certPath`).
    pub cert_path: Option<PathBuf>,
    /// Its private key, PEM (`tls.server.keyPath`).
    pub key_path: Option<PathBuf>,
    /// Roots client certificates must chain to, PEM (`tls.server.trustCertPath`).
    pub trust_cert_path: Option<PathBuf>,
    /// `tls.server.need.client.auth`.
    pub need_client_auth: TlsClientAuth,
}

impl ServerTlsConfig {
    /// A mode other than `disabled` needs a certificate and a key; client
    /// certificates need roots.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the missing key (within `tls`).
    pub fn validate(&self) -> Result<()> {
        if self.mode == TlsMode::Disabled {
            return Ok(());
        }
        let needed = |key: &'static str, other: &'static str, why: &'static str| {
            Error::invalid(key, Invalid::Conflict { other, why })
        };
        if self.cert_path.is_none() {
            return Err(needed("cert_path", "mode", "a TLS port needs a certificate"));
        }
        if self.key_path.is_none() {
            return Err(needed("key_path", "mode", "a TLS port needs the certificate's key"));
        }
        if self.need_client_auth != TlsClientAuth::None && self.trust_cert_path.is_none() {
            return Err(needed("trust_cert_path", "need_client_auth", "client certificates are checked against it"));
        }
        Ok(())
    }
}

/// TLS on the connections a server opens itself (RocketMQ's `useTLS` with
/// `tls.client.*`): a broker's to name servers, controllers and its master, a
/// controller's to its peers and to brokers. `[broker.outgoing_tls]` and
/// `[controller.outgoing_tls]` in TOML.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientTlsConfig {
    /// Connect with TLS (`useTLS`). Unset: on when the server's own port is
    /// `enforcing`, as RocketMQ's brokers default `useTLS` to.
    pub enable: Option<bool>,
    /// Roots the peers' certificates must chain to, PEM
    /// (`tls.client.trustCertPath`). Without it any certificate is accepted, as
    /// RocketMQ does unless `tls.client.authServer` is on.
    pub trust_cert_path: Option<PathBuf>,
    /// A certificate to show peers that ask for one, PEM (`tls.client.certPath`).
    pub cert_path: Option<PathBuf>,
    /// Its private key, PEM (`tls.client.keyPath`).
    pub key_path: Option<PathBuf>,
}

impl ClientTlsConfig {
    /// Whether connections use TLS, for a server whose own port is `own_port`.
    pub fn enabled(&self, own_port: Option<&ServerTlsConfig>) -> bool {
        self.enable.unwrap_or_else(|| own_port.is_some_and(|p| p.mode == TlsMode::Enforcing))
    }

    /// A certificate comes with its key.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the key given alone.
    pub fn validate(&self) -> Result<()> {
        let alone = |key: &'static str, other: &'static str| {
            Error::invalid(key, Invalid::Conflict { other, why: "a certificate and its key go together" })
        };
        match (&self.cert_path, &self.key_path) {
            (Some(_), None) => Err(alone("cert_path", "key_path")),
            (None, Some(_)) => Err(alone("key_path", "cert_path")),
            _ => Ok(()),
        }
    }
}
