//! [`ClientConfig`]: settings of the Rust client SDK (RocketMQ's `ClientConfig`),
//! the `[client]` section of `client.toml`.
//!
//! Name servers reach a client four ways, as in RocketMQ: set in code (overrides
//! everything), this file's `namesrv_addr` (RocketMQ's `rocketmq.namesrv.addr`),
//! the `NAMESRV_ADDR` environment variable, or an HTTP endpoint
//! (`namesrv_http_url`, RocketMQ's `rocketmq.namesrv.domain`) that returns the
//! list and is polled periodically.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::Result;
use crate::serde_util::addr_list;
pub use crate::serde_util::Secret;

/// Client SDK settings, the `[client]` section of `client.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// Name servers (`host:port`; a `;`-separated string is accepted too).
    #[serde(deserialize_with = "addr_list::deserialize")]
    pub namesrv_addr: Vec<String>,
    /// An HTTP URL returning `host:port;host:port` (RocketMQ's HTTP discovery).
    pub namesrv_http_url: Option<String>,
    /// How often the HTTP endpoint is polled.
    #[serde(with = "humantime_serde")]
    pub namesrv_http_poll_interval: Duration,
    /// Instance name, the second half of the client id (`ip@instance`);
    /// `DEFAULT` is replaced by the process id as the Java client does.
    pub instance_name: String,
    /// The IP in the client id; detected when absent.
    pub client_ip: Option<String>,
    /// The client's zone (RocketMQ's `unitName`, the machine room it runs in).
    /// When set it becomes the third part of the client id (`ip@instance@unit`), as
    /// in RocketMQ, which is how the other members of a group learn it; allocation
    /// strategies and plugins see it as the client's zone.
    pub unit_name: Option<String>,
    /// Route refresh (`pollNameServerInterval`).
    #[serde(with = "humantime_serde")]
    pub poll_name_server_interval: Duration,
    /// Heartbeat to brokers (`heartbeatBrokerInterval`).
    #[serde(with = "humantime_serde")]
    pub heartbeat_broker_interval: Duration,
    /// Consumer offset commit period (`persistConsumerOffsetInterval`).
    #[serde(with = "humantime_serde")]
    pub persist_consumer_offset_interval: Duration,
    /// Timeout of control requests (`mqClientApiTimeout`).
    #[serde(with = "humantime_serde")]
    pub mq_client_api_timeout: Duration,
    /// The ACL account every request is signed with (RocketMQ's `SessionCredentials`
    /// given to `AclClientRPCHook`); with `secret_key`, or neither.
    pub access_key: Option<String>,
    /// The account's secret: signs requests, never sent.
    pub secret_key: Option<Secret>,
    /// A temporary credential's token, signed with the request (`SecurityToken`).
    pub security_token: Option<Secret>,
    /// Connect to name servers and brokers with TLS (`tls.enable`).
    pub tls_enable: bool,
    /// Roots the servers' certificates must chain to (`tls.client.trustCertPath`).
    /// Unset: any server certificate is accepted, as RocketMQ's clients do unless
    /// `tls.client.authServer` is on.
    pub tls_trust_cert_path: Option<std::path::PathBuf>,
    /// The client's certificate, for servers that ask (`tls.client.certPath`).
    pub tls_cert_path: Option<std::path::PathBuf>,
    /// Its key (`tls.client.keyPath`).
    pub tls_key_path: Option<std::path::PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            namesrv_addr: Vec::new(),
            namesrv_http_url: None,
            namesrv_http_poll_interval: Duration::from_secs(120),
            instance_name: "DEFAULT".to_owned(),
            client_ip: None,
            unit_name: None,
            poll_name_server_interval: Duration::from_secs(30),
            heartbeat_broker_interval: Duration::from_secs(30),
            persist_consumer_offset_interval: Duration::from_secs(5),
            mq_client_api_timeout: Duration::from_secs(3),
            access_key: None,
            secret_key: None,
            security_token: None,
            tls_enable: false,
            tls_trust_cert_path: None,
            tls_cert_path: None,
            tls_key_path: None,
        }
    }
}

impl ClientConfig {
    /// The TLS settings as the one shape servers' outgoing connections use too.
    pub fn tls(&self) -> crate::tls::ClientTlsConfig {
        crate::tls::ClientTlsConfig {
            enable: Some(self.tls_enable),
            trust_cert_path: self.tls_trust_cert_path.clone(),
            cert_path: self.tls_cert_path.clone(),
            key_path: self.tls_key_path.clone(),
        }
    }

    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        for addr in &self.namesrv_addr {
            check::host_port("namesrv_addr", addr)?;
        }
        check::not_blank("instance_name", &self.instance_name)?;
        if let Some(unit) = &self.unit_name {
            check::not_blank("unit_name", unit)?;
            // An `@` would shift the parts of the client id every member parses.
            if unit.contains('@') {
                return Err(crate::error::Error::invalid(
                    "unit_name",
                    crate::error::Invalid::Malformed { value: unit.clone(), expected: "a name without `@`" },
                ));
            }
        }
        check::non_zero("poll_name_server_interval", self.poll_name_server_interval)?;
        check::non_zero("heartbeat_broker_interval", self.heartbeat_broker_interval)?;
        check::non_zero("persist_consumer_offset_interval", self.persist_consumer_offset_interval)?;
        check::non_zero("mq_client_api_timeout", self.mq_client_api_timeout)?;
        check::non_zero("namesrv_http_poll_interval", self.namesrv_http_poll_interval)?;
        match (&self.access_key, &self.secret_key) {
            (Some(_), None) => return Err(one_without_the_other("access_key", "secret_key")),
            (None, Some(_)) => return Err(one_without_the_other("secret_key", "access_key")),
            (Some(ak), Some(_)) => check::not_blank("access_key", ak)?,
            (None, None) => {}
        }
        match (&self.tls_cert_path, &self.tls_key_path) {
            (Some(_), None) => return Err(one_without_the_other("tls_cert_path", "tls_key_path")),
            (None, Some(_)) => return Err(one_without_the_other("tls_key_path", "tls_cert_path")),
            _ => {}
        }
        Ok(())
    }
}

fn one_without_the_other(key: &str, other: &'static str) -> crate::error::Error {
    crate::error::Error::invalid(key, crate::error::Invalid::Conflict { other, why: "an account needs both keys" })
}
