//! Registration with the name servers (RocketMQ's `BrokerOuterAPI`).
//!
//! The broker registers with **every** configured name server at start, every
//! `register_name_server_period`, and at once when its topic table changes; each
//! registration carries the full topic table (zlib-compressed when
//! `compressed_register` is set) and a CRC of the body. Clean shutdown unregisters.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use common::ResponseCode;
use remoting::body::RegisterBrokerBody;
use remoting::header::namesrv::{
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, UnRegisterBrokerRequestHeader,
};
use remoting::{RemotingClient, RemotingCommand, RequestCode};

use crate::context::BrokerContext;
use crate::topic_config::registration_view;

const TIMEOUT: Duration = Duration::from_secs(6);

fn ha_server_addr(ctx: &BrokerContext) -> String {
    ctx.role.ha_addr().to_string()
}

fn register_request(ctx: &BrokerContext) -> Option<RemotingCommand> {
    let mut wrapper = registration_view(ctx.topics.snapshot(), i32::from(ctx.runtime.broker_permission()));
    // Controller mode: the master epoch rides as the state version, so a name server
    // never lets a superseded master's registration replace its successor's.
    if let Some(m) = &ctx.membership {
        wrapper.data_version.state_version = Some(i64::from(m.master_epoch.load(std::sync::atomic::Ordering::Acquire)));
    }
    let body = RegisterBrokerBody { topic_config_serialize_wrapper: wrapper, filter_server_list: Vec::new() };
    let bytes = match body.encode(ctx.config.compressed_register) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "cannot encode the registration body");
            return None;
        }
    };
    let header = RegisterBrokerRequestHeader {
        broker_name: ctx.config.broker_name.clone(),
        broker_addr: ctx.broker_addr_string(),
        cluster_name: ctx.config.broker_cluster_name.clone(),
        ha_server_addr: ha_server_addr(ctx),
        broker_id: ctx.config.broker_id as i64,
        heartbeat_timeout_millis: None,
        enable_acting_master: None,
        compressed: Some(ctx.config.compressed_register),
        body_crc32: Some((crc32(&bytes) & 0x7FFF_FFFF) as i32),
    };
    Some(RemotingCommand::request_with(RequestCode::REGISTER_BROKER, &header).with_body(bytes))
}

fn crc32(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b);
    h.finalize()
}

/// Registers with every name server; returns how many accepted.
pub async fn register_all(ctx: &BrokerContext, client: &RemotingClient) -> usize {
    let Some(req) = register_request(ctx) else { return 0 };
    let mut calls = Vec::new();
    for addr in &ctx.config.namesrv_addr {
        let req = req.clone();
        let addr = addr.clone();
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            let r = client.invoke(&addr, req, TIMEOUT).await;
            (addr, r)
        }));
    }
    let mut ok = 0;
    let mut master: Option<RegisterBrokerResponseHeader> = None;
    for c in calls {
        let Ok((addr, r)) = c.await else { continue };
        match r {
            Ok(resp) if resp.response_code() == ResponseCode::SUCCESS => {
                ok += 1;
                debug!(namesrv = %addr, "registered");
                // A slave's answer names its master while the master is registered.
                if let Ok(h) = resp.decode_header::<RegisterBrokerResponseHeader>() {
                    if master.as_ref().is_none_or(|m| m.master_addr.is_none()) {
                        master = Some(h);
                    }
                }
            }
            Ok(resp) => warn!(namesrv = %addr, code = resp.code, remark = resp.remark_str(), "registration refused"),
            Err(e) => warn!(namesrv = %addr, error = %e, "registration failed"),
        }
    }
    if let Some(h) = master {
        ctx.role.on_registered(h.master_addr, h.ha_server_addr);
    }
    ok
}

/// The registration loop.
pub async fn run(ctx: Arc<BrokerContext>, cancel: CancellationToken) {
    if ctx.config.namesrv_addr.is_empty() {
        warn!("no name server configured (namesrv_addr / NAMESRV_ADDR / -n): clients cannot discover this broker");
    }
    let client = crate::outgoing_client(&ctx.config);
    let period = ctx.config.register_name_server_period;
    let mut first = true;
    loop {
        if !ctx.config.namesrv_addr.is_empty() {
            let ok = register_all(&ctx, &client).await;
            if first && ok > 0 {
                info!(name_servers = ok, "registered with name servers");
                first = false;
            }
            ctx.registered.send_replace(ok);
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
            _ = ctx.register_now.notified() => {}
        }
    }
    client.shutdown();
}

/// UNREGISTER_BROKER to every name server (clean shutdown).
pub async fn unregister_all(ctx: &BrokerContext) {
    let client = crate::outgoing_client(&ctx.config);
    let header = UnRegisterBrokerRequestHeader {
        broker_name: ctx.config.broker_name.clone(),
        broker_addr: ctx.broker_addr_string(),
        cluster_name: ctx.config.broker_cluster_name.clone(),
        broker_id: ctx.config.broker_id as i64,
    };
    for addr in &ctx.config.namesrv_addr {
        let req = RemotingCommand::request_with(RequestCode::UNREGISTER_BROKER, &header);
        match client.invoke(addr, req, Duration::from_secs(3)).await {
            Ok(_) => info!(namesrv = %addr, "unregistered"),
            Err(e) => warn!(namesrv = %addr, error = %e, "unregister failed"),
        }
    }
    client.shutdown();
}
