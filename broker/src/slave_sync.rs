//! A slave copies its master's metadata at start and every 10 s (RocketMQ's
//! `SlaveSynchronize`): topic configs (GET_ALL_TOPIC_CONFIG, 21), consumer offsets
//! (GET_ALL_CONSUMER_OFFSET, 43), delay-level progress (GET_ALL_DELAY_OFFSET, 45) and
//! subscription groups (GET_ALL_SUBSCRIPTIONGROUP_CONFIG, 201), over remoting from
//! the master's broker address. The commit log itself comes over the HA transport
//! (`replication`); this is everything else a slave needs to serve consumers, and to
//! take over as master with the same configuration.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use common::ResponseCode;
use remoting::body::TopicConfigSerializeWrapper;
use remoting::{RemotingClient, RemotingCommand, RequestCode};

use crate::consumer_offset::ConsumerOffsetWrapper;
use crate::context::BrokerContext;
use crate::schedule::offsets::DelayOffsetWrapper;
use crate::subscription_group::SubscriptionGroupWrapper;

/// RocketMQ's period.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(3);

/// The copy loop (slaves only).
pub async fn run(ctx: Arc<BrokerContext>, cancel: CancellationToken) {
    if !ctx.role.is_slave() {
        return;
    }
    let client = crate::outgoing_client(&ctx.config);
    let mut registered = ctx.registered.subscribe();
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            // The first registration names the master: copy at once, not 10 s later.
            _ = registered.changed() => {}
        }
        if let Some(master) = ctx.role.master().broker_addr {
            sync_all(&ctx, &client, &master).await;
        }
    }
    client.shutdown();
}

/// One round of copying; each part is tried independently and failures are logged.
pub async fn sync_all(ctx: &BrokerContext, client: &RemotingClient, master: &str) {
    if let Some(topics) = fetch::<TopicConfigSerializeWrapper>(client, master, RequestCode::GET_ALL_TOPIC_CONFIG).await
    {
        ctx.topics.replace_from_master(topics);
    }
    if let Some(offsets) = fetch::<ConsumerOffsetWrapper>(client, master, RequestCode::GET_ALL_CONSUMER_OFFSET).await {
        ctx.offsets.merge_from_master(offsets);
        if let Err(e) = ctx.offsets.persist() {
            warn!(error = %e, "could not persist the consumer offsets copied from the master");
        }
    }
    if let Some(delay) = fetch::<DelayOffsetWrapper>(client, master, RequestCode::GET_ALL_DELAY_OFFSET).await {
        ctx.delay_offsets.replace(delay);
        if let Err(e) = ctx.delay_offsets.persist() {
            warn!(error = %e, "could not persist the delay offsets copied from the master");
        }
    }
    let groups = fetch::<SubscriptionGroupWrapper>(client, master, RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG).await;
    if let Some(groups) = groups {
        ctx.groups.replace_from_master(groups);
    }
    debug!(master, "metadata copied from the master");
}

async fn fetch<T: DeserializeOwned>(client: &RemotingClient, master: &str, code: RequestCode) -> Option<T> {
    let resp = match client.invoke(master, RemotingCommand::request(code), TIMEOUT).await {
        Ok(r) => r,
        Err(e) => {
            debug!(master, ?code, error = %e, "the master did not answer a metadata request");
            return None;
        }
    };
    if resp.response_code() != ResponseCode::SUCCESS {
        warn!(master, ?code, code = resp.code, remark = resp.remark_str(), "the master refused a metadata request");
        return None;
    }
    match remoting::json::from_slice(&resp.body_bytes()) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(master, ?code, error = %e, "the master's metadata could not be read");
            None
        }
    }
}
