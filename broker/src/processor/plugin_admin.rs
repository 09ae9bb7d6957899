//! FerroMQ's plugin administration (codes 65101–65109, `ferromq-admin plugin ...`):
//! deploy a plugin to this broker, bind it, reload, roll back or remove it, and
//! list what is loaded. The work is [`crate::plugins::BrokerPlugins`]'; a refusal is
//! answered SYSTEM_ERROR with its reason.

use std::sync::Arc;

use common::ResponseCode;
use plugin_api::{FailurePolicy, PluginKind, Runtime};
use remoting::body::plugin::PluginLogLine;
use remoting::header::plugin::{
    BindPluginRequestHeader, DeployPluginRequestHeader, DeployPluginResponseHeader, FetchPluginResponseHeader,
    PluginLogsRequestHeader, PluginNameRequestHeader,
};
use remoting::{Channel, RemotingCommand};

use super::try_header;
use crate::context::BrokerContext;

fn refused(why: String) -> Option<RemotingCommand> {
    Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, why))
}

fn serving((sha256, generation): (String, u64)) -> Option<RemotingCommand> {
    Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &DeployPluginResponseHeader { sha256, generation }))
}

/// Runs a change off the request threads (a deploy compiles the module) and
/// answers with its outcome.
async fn blocking<T: Send + 'static>(
    ctx: &Arc<BrokerContext>,
    change: impl FnOnce(&BrokerContext) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let out = change(&ctx);
        // A binding or version change reaches filters compiled before it.
        ctx.filters.clear();
        out
    })
    .await
    .unwrap_or_else(|e| Err(format!("the change failed: {e}")))
}

/// FERROMQ_PLUGIN_DEPLOY: the body is the artifact.
pub async fn deploy(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: DeployPluginRequestHeader = try_header!(&req);
    let kind: PluginKind = match h.kind.parse() {
        Ok(k) => k,
        Err(e) => return refused(format!("kind `{}`: {e}", h.kind)),
    };
    let runtime: Runtime = match h.runtime.parse() {
        Ok(r) => r,
        Err(e) => return refused(format!("runtime `{}`: {e}", h.runtime)),
    };
    let policy: Option<FailurePolicy> = match h.failure_policy.as_deref().map(str::parse).transpose() {
        Ok(p) => p,
        Err(e) => return refused(format!("failure policy: {e}")),
    };
    let config: std::collections::BTreeMap<String, String> =
        match h.config.as_deref().map(serde_json::from_str).transpose() {
            Ok(c) => c.unwrap_or_default(),
            Err(e) => return refused(format!("config: not a JSON object of strings: {e}")),
        };
    let bytes = req.body_bytes();
    if bytes.is_empty() {
        return refused("the request carries no artifact".to_owned());
    }
    tracing::info!(caller = %ch.peer_addr(), plugin = %h.name, %kind, %runtime, bytes = bytes.len(), "plugin deploy");
    let name = h.name.clone();
    match blocking(ctx, move |c| c.plugins.deploy(&name, kind, runtime, policy, config, &bytes)).await {
        Ok(v) => serving(v),
        Err(why) => {
            tracing::warn!(plugin = %h.name, reason = %why, "plugin deploy refused");
            refused(why)
        }
    }
}

/// FERROMQ_PLUGIN_BIND.
pub async fn bind(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: BindPluginRequestHeader = try_header!(&req);
    tracing::info!(caller = %ch.peer_addr(), plugin = %h.name, topic = %h.topic, group = ?h.group, "plugin bind");
    match blocking(ctx, move |c| c.plugins.bind(&h.name, &h.topic, h.group.as_deref())).await {
        Ok(()) => Some(RemotingCommand::success()),
        Err(why) => refused(why),
    }
}

/// FERROMQ_PLUGIN_UNBIND.
pub async fn unbind(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: BindPluginRequestHeader = try_header!(&req);
    tracing::info!(caller = %ch.peer_addr(), plugin = %h.name, topic = %h.topic, group = ?h.group, "plugin unbind");
    match blocking(ctx, move |c| c.plugins.unbind(&h.name, &h.topic, h.group.as_deref())).await {
        Ok(()) => Some(RemotingCommand::success()),
        Err(why) => refused(why),
    }
}

/// FERROMQ_PLUGIN_RELOAD.
pub async fn reload(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: PluginNameRequestHeader = try_header!(&req);
    match blocking(ctx, move |c| c.plugins.reload(&h.name)).await {
        Ok(v) => serving(v),
        Err(why) => refused(why),
    }
}

/// FERROMQ_PLUGIN_ROLLBACK.
pub async fn rollback(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: PluginNameRequestHeader = try_header!(&req);
    match blocking(ctx, move |c| c.plugins.rollback(&h.name)).await {
        Ok(v) => serving(v),
        Err(why) => refused(why),
    }
}

/// FERROMQ_PLUGIN_REMOVE.
pub async fn remove(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: PluginNameRequestHeader = try_header!(&req);
    match blocking(ctx, move |c| c.plugins.remove(&h.name)).await {
        Ok(()) => Some(RemotingCommand::success()),
        Err(why) => refused(why),
    }
}

/// FERROMQ_PLUGIN_LIST: every declared plugin, as JSON.
pub async fn list(ctx: &Arc<BrokerContext>, _: &Channel, _: RemotingCommand) -> Option<RemotingCommand> {
    match serde_json::to_vec(&ctx.plugins.list()) {
        Ok(body) => Some(RemotingCommand::success().with_body(body)),
        Err(e) => refused(e.to_string()),
    }
}

/// FERROMQ_PLUGIN_LOGS: what a plugin logged after `since`, as JSON.
pub async fn logs(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: PluginLogsRequestHeader = try_header!(&req);
    if !ctx.plugins.is_declared(&h.name) {
        return refused(format!("no plugin named `{}` on this broker", h.name));
    }
    let lines: Vec<PluginLogLine> = plugin_host::logs::since(&h.name, h.since.unwrap_or(0))
        .into_iter()
        .map(|l| PluginLogLine {
            seq: l.seq,
            time_millis: l.time_millis,
            level: l.level.to_owned(),
            message: l.message,
        })
        .collect();
    match serde_json::to_vec(&lines) {
        Ok(body) => Some(RemotingCommand::success().with_body(body)),
        Err(e) => refused(e.to_string()),
    }
}

/// FERROMQ_PLUGIN_FETCH: a deployed plugin's serving artifact (the body) and
/// settings, for a slave copying its master's plugins.
pub async fn fetch(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: PluginNameRequestHeader = try_header!(&req);
    let (kind, runtime, policy, config, sha256, bytes) = match ctx.plugins.artifact_of(&h.name) {
        Ok(a) => a,
        Err(why) => return refused(why),
    };
    let header = FetchPluginResponseHeader {
        kind: kind.to_string(),
        runtime: runtime.to_string(),
        failure_policy: policy.map(|p| p.to_string()),
        config: (!config.is_empty()).then(|| serde_json::to_string(&config).unwrap_or_default()),
        sha256,
    };
    Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &header).with_body(bytes))
}
