//! [`NamesrvConfig`]: the name server's settings.
//!
//! Field names are the snake_case forms of RocketMQ's `NamesrvConfig` and
//! `NettyServerConfig` names, and defaults are RocketMQ's, so an operator
//! who knows `namesrv.properties` recognises every line. Settings FerroMQ
//! adds (the HTTP address endpoint) say so in their docs.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::Result;

/// Name-server settings, the `[namesrv]` section of `namesrv.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamesrvConfig {
    /// Address the RocketMQ remoting listener binds to.
    pub bind_address: IpAddr,
    /// Remoting port; RocketMQ's default is 9876. `0` asks the OS for a free
    /// port, which is what tests use (the binary prints the real one).
    pub listen_port: u16,
    /// Where the KV config (namespace -> key -> value, e.g. the
    /// `ORDER_TOPIC_CONFIG` namespace) is persisted. Default
    /// `$HOME/namesrv/kvConfig.json`, as in RocketMQ.
    pub kv_config_path: PathBuf,
    /// How often brokers that stopped sending heartbeats are looked for.
    #[serde(with = "humantime_serde")]
    pub scan_not_active_broker_interval: Duration,
    /// A broker whose last registration is older than this is removed from
    /// the route table (RocketMQ's `BROKER_CHANNEL_EXPIRED_TIME`). It must
    /// stay above the brokers' `register_name_server_period`.
    #[serde(with = "humantime_serde")]
    pub broker_channel_expired_time: Duration,
    /// FerroMQ addition: the port of an HTTP endpoint serving the name-server
    /// address list (`ip:port;ip:port`) for RocketMQ's HTTP discovery
    /// (`rocketmq.namesrv.domain`). `None` leaves the endpoint off.
    pub http_listen_port: Option<u16>,
    /// FerroMQ addition: the `ip:port` the HTTP endpoint advertises. Needed
    /// behind NAT or in containers, where the bind address is not what
    /// clients can reach. `None` advertises the listener's own address.
    pub advertised_addr: Option<String>,
    /// Connections idle for this long are closed (RocketMQ's
    /// `serverChannelMaxIdleTimeSeconds`).
    #[serde(with = "humantime_serde")]
    pub channel_idle_timeout: Duration,
    /// Return the `ORDER_TOPIC_CONFIG` KV namespace with routes, for
    /// globally ordered topics.
    pub order_message_enable: bool,
    /// Run a controller inside the name server, configured by the `[controller]`
    /// section (`enableControllerInNamesrv`).
    pub enable_controller_in_namesrv: bool,
    /// TLS on the remoting port, `[namesrv.tls]` in TOML.
    pub tls: crate::tls::ServerTlsConfig,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        Self {
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen_port: 9876,
            kv_config_path: crate::user_home().join("namesrv").join("kvConfig.json"),
            scan_not_active_broker_interval: Duration::from_secs(10),
            broker_channel_expired_time: Duration::from_secs(120),
            http_listen_port: None,
            advertised_addr: None,
            channel_idle_timeout: Duration::from_secs(120),
            order_message_enable: false,
            enable_controller_in_namesrv: false,
            tls: crate::tls::ServerTlsConfig::default(),
        }
    }
}

impl NamesrvConfig {
    /// Checks what the types cannot: non-zero intervals, distinct ports and a
    /// well-formed advertised address.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        check::not_blank("kv_config_path", &self.kv_config_path.to_string_lossy())?;
        check::non_zero("scan_not_active_broker_interval", self.scan_not_active_broker_interval)?;
        check::non_zero("broker_channel_expired_time", self.broker_channel_expired_time)?;
        check::non_zero("channel_idle_timeout", self.channel_idle_timeout)?;
        self.tls.validate().map_err(|e| e.within("tls"))?;
        if let Some(http_port) = self.http_listen_port {
            check::distinct_ports("http_listen_port", http_port, "listen_port", self.listen_port)?;
        }
        if let Some(addr) = &self.advertised_addr {
            check::host_port("advertised_addr", addr)?;
        }
        Ok(())
    }
}
