//! A slave copies its master's metadata at start and every 10 s (RocketMQ's
//! `SlaveSynchronize`): topic configs (GET_ALL_TOPIC_CONFIG, 21), consumer offsets
//! (GET_ALL_CONSUMER_OFFSET, 43), delay-level progress (GET_ALL_DELAY_OFFSET, 45) and
//! subscription groups (GET_ALL_SUBSCRIPTIONGROUP_CONFIG, 201), over remoting from
//! the master's broker address. The commit log itself comes over the HA transport
//! (`replication`); this is everything else a slave needs to serve consumers, and to
//! take over as master with the same configuration. FerroMQ masters also hand over
//! their deployed plugins and runtime plugin bindings (FERROMQ_PLUGIN_LIST, and
//! FERROMQ_PLUGIN_FETCH for an artifact the slave lacks), which the slave deploys and
//! binds through the same checks as `ferromq-admin plugin deploy/bind`; plugins and
//! bindings its own configuration declares stay as they are.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use common::ResponseCode;
use remoting::body::plugin::PluginInfo;
use remoting::body::TopicConfigSerializeWrapper;
use remoting::header::plugin::{FetchPluginResponseHeader, PluginNameRequestHeader};
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
            sync_plugins(&ctx, &client, &master).await;
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

/// Makes this slave's deployed plugins and runtime bindings those of its master.
pub async fn sync_plugins(ctx: &Arc<BrokerContext>, client: &RemotingClient, master: &str) {
    let cmd = RemotingCommand::request(RequestCode::FERROMQ_PLUGIN_LIST);
    let theirs: Vec<PluginInfo> = match client.invoke(master, cmd, TIMEOUT).await {
        Ok(r) if r.response_code() == ResponseCode::SUCCESS => match serde_json::from_slice(&r.body_bytes()) {
            Ok(list) => list,
            Err(e) => return warn!(master, error = %e, "the master's plugin list could not be read"),
        },
        // A RocketMQ master has no plugins to hand over.
        Ok(r) if r.response_code() == ResponseCode::REQUEST_CODE_NOT_SUPPORTED => return,
        Ok(r) => return warn!(master, code = r.code, remark = r.remark_str(), "the master refused its plugin list"),
        Err(e) => return debug!(master, error = %e, "the master did not answer its plugin list"),
    };
    let ours = ctx.plugins.list();
    let deployed = |l: &[PluginInfo], name: &str| l.iter().find(|p| p.name == name && p.source == "deployed").cloned();
    let runtime_bindings = |l: &[PluginInfo]| -> BTreeSet<(String, String, Option<String>)> {
        l.iter()
            .flat_map(|p| {
                p.bindings
                    .iter()
                    .filter(|b| b.source == "runtime")
                    .map(|b| (p.name.clone(), b.topic.clone(), b.group.clone()))
            })
            .collect()
    };
    let (want, have) = (runtime_bindings(&theirs), runtime_bindings(&ours));
    // Unbind first (a plugin is removed only once unbound), then deploy, then bind.
    for (name, topic, group) in have.difference(&want) {
        change(ctx, format!("unbinding {name} from {topic}"), {
            let (name, topic, group) = (name.clone(), topic.clone(), group.clone());
            move |c| c.plugins.unbind(&name, &topic, group.as_deref())
        })
        .await;
    }
    for p in ours.iter().filter(|p| p.source == "deployed" && deployed(&theirs, &p.name).is_none()) {
        let name = p.name.clone();
        change(ctx, format!("removing {name}"), move |c| c.plugins.remove(&name)).await;
    }
    for p in theirs.iter().filter(|p| p.source == "deployed") {
        let mine = ours.iter().find(|o| o.name == p.name);
        if mine.is_some_and(|o| o.source != "deployed" || o.sha256 == p.sha256) {
            continue;
        }
        let h = PluginNameRequestHeader { name: p.name.clone() };
        let cmd = RemotingCommand::request_with(RequestCode::FERROMQ_PLUGIN_FETCH, &h);
        let resp = match client.invoke(master, cmd, Duration::from_secs(30)).await {
            Ok(r) if r.response_code() == ResponseCode::SUCCESS => r,
            Ok(r) => {
                warn!(master, plugin = %p.name, remark = r.remark_str(), "the master refused a plugin's artifact");
                continue;
            }
            Err(e) => {
                debug!(master, plugin = %p.name, error = %e, "the master did not send a plugin's artifact");
                continue;
            }
        };
        let Ok(f) = resp.decode_header::<FetchPluginResponseHeader>() else { continue };
        let (Ok(kind), Ok(runtime)) = (f.kind.parse(), f.runtime.parse()) else { continue };
        let policy = f.failure_policy.as_deref().and_then(|p| p.parse().ok());
        let config = f.config.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
        let (name, bytes) = (p.name.clone(), resp.body_bytes());
        change(ctx, format!("deploying {name} from the master"), move |c| {
            c.plugins.deploy(&name, kind, runtime, policy, config, &bytes).map(|_| ())
        })
        .await;
    }
    for (name, topic, group) in want.difference(&have) {
        change(ctx, format!("binding {name} to {topic}"), {
            let (name, topic, group) = (name.clone(), topic.clone(), group.clone());
            move |c| c.plugins.bind(&name, &topic, group.as_deref())
        })
        .await;
    }
}

/// Runs one plugin change off the async threads, logs a refusal, and drops compiled
/// filters so the next pulls see it.
async fn change(
    ctx: &Arc<BrokerContext>,
    what: String,
    f: impl FnOnce(&BrokerContext) -> Result<(), String> + Send + 'static,
) {
    let c = ctx.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let r = f(&c);
        c.filters.clear();
        r
    })
    .await;
    match outcome {
        Ok(Ok(())) => tracing::info!("{what}: done, as on the master"),
        Ok(Err(why)) => warn!(reason = %why, "{what}: refused"),
        Err(e) => warn!(error = %e, "{what}: failed"),
    }
}
