//! The ACL's administration requests (UPDATE_AND_CREATE_ACL_CONFIG 50,
//! DELETE_ACL_CONFIG 51, GET_BROKER_CLUSTER_ACL_INFO 52,
//! UPDATE_GLOBAL_WHITE_ADDRS_CONFIG 53, GET_BROKER_CLUSTER_ACL_CONFIG 54): edits
//! written back to the broker's `plain_acl.yml`, with RocketMQ's failure codes and
//! remarks.

use std::sync::Arc;

use common::ResponseCode;
use remoting::header::broker::{
    CreateAccessConfigRequestHeader, DeleteAccessConfigRequestHeader, GetBrokerAclConfigResponseHeader,
    UpdateGlobalWhiteAddrsConfigRequestHeader,
};
use remoting::{Channel, RemotingCommand};

use crate::acl::plain::AccountEntry;
use crate::acl::AccessValidator;
use crate::context::BrokerContext;
use crate::processor::try_header;

/// The validator, or the refusal of a broker without ACL (`failed` is the request's
/// failure code). RocketMQ answers these with an empty remark; we say why.
fn validator(ctx: &BrokerContext, failed: ResponseCode) -> Result<&Arc<AccessValidator>, RemotingCommand> {
    ctx.acl
        .as_ref()
        .ok_or_else(|| RemotingCommand::error(failed, "ACL is not enabled on this broker (aclEnable=false)"))
}

/// Splits a comma-joined list, dropping blanks.
fn list(joined: Option<&str>) -> Vec<String> {
    joined.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// UPDATE_AND_CREATE_ACL_CONFIG: creates or replaces an account.
pub async fn update_and_create_acl_config(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let failed = ResponseCode::UPDATE_AND_CREATE_ACL_CONFIG_FAILED;
    let acl = match validator(ctx, failed) {
        Ok(v) => v,
        Err(resp) => return Some(resp),
    };
    let h: CreateAccessConfigRequestHeader = try_header!(&req);
    let entry = AccountEntry {
        access_key: h.access_key.clone(),
        secret_key: h.secret_key.unwrap_or_default(),
        white_remote_address: h.white_remote_address.filter(|w| !w.is_empty()),
        admin: h.admin.unwrap_or(false),
        default_topic_perm: h.default_topic_perm.filter(|p| !p.is_empty()),
        default_group_perm: h.default_group_perm.filter(|p| !p.is_empty()),
        topic_perms: list(h.topic_perms.as_deref()),
        group_perms: list(h.group_perms.as_deref()),
    };
    Some(match acl.upsert_account(entry) {
        Ok(()) => {
            tracing::info!(access_key = %h.access_key, "ACL account created or updated");
            RemotingCommand::success()
        }
        Err(e) => RemotingCommand::error(failed, e),
    })
}

/// DELETE_ACL_CONFIG: removes an account.
pub async fn delete_acl_config(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let failed = ResponseCode::DELETE_ACL_CONFIG_FAILED;
    let acl = match validator(ctx, failed) {
        Ok(v) => v,
        Err(resp) => return Some(resp),
    };
    let h: DeleteAccessConfigRequestHeader = try_header!(&req);
    Some(match acl.delete_account(&h.access_key) {
        Ok(true) => {
            tracing::info!(access_key = %h.access_key, "ACL account deleted");
            RemotingCommand::success()
        }
        Ok(false) => RemotingCommand::error(
            failed,
            format!("The accesskey[{}] corresponding to accessConfig has been deleted failed.", h.access_key),
        ),
        Err(e) => RemotingCommand::error(failed, e),
    })
}

/// UPDATE_GLOBAL_WHITE_ADDRS_CONFIG: replaces the global white list.
pub async fn update_global_white_addrs_config(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let failed = ResponseCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED;
    let acl = match validator(ctx, failed) {
        Ok(v) => v,
        Err(resp) => return Some(resp),
    };
    let h: UpdateGlobalWhiteAddrsConfigRequestHeader = try_header!(&req);
    // This broker has one file; naming another is a mistake, not a new file.
    if let Some(path) = h.acl_file_full_path.as_deref().filter(|p| !p.is_empty()) {
        if std::path::Path::new(path) != acl.path() {
            return Some(RemotingCommand::error(
                failed,
                format!("The globalWhiteAddresses[{}] has been updated failed.", h.global_white_addrs),
            ));
        }
    }
    Some(match acl.set_global_white(list(Some(&h.global_white_addrs))) {
        Ok(()) => RemotingCommand::success(),
        Err(e) => RemotingCommand::error(failed, e),
    })
}

/// GET_BROKER_CLUSTER_ACL_CONFIG: the white list and the accounts.
pub async fn get_broker_cluster_acl_config(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    let acl = match validator(ctx, ResponseCode::SYSTEM_ERROR) {
        Ok(v) => v,
        Err(resp) => return Some(resp),
    };
    Some(match remoting::json::to_vec(&acl.config()) {
        Ok(body) => RemotingCommand::success().with_body(body),
        Err(e) => RemotingCommand::error(ResponseCode::SYSTEM_ERROR, e.to_string()),
    })
}

/// GET_BROKER_CLUSTER_ACL_INFO: the file's version.
pub async fn get_broker_cluster_acl_info(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    let acl = match validator(ctx, ResponseCode::SYSTEM_ERROR) {
        Ok(v) => v,
        Err(resp) => return Some(resp),
    };
    let v = acl.version();
    let version = serde_json::json!({ "counter": v.counter, "timestamp": v.timestamp }).to_string();
    let all =
        serde_json::json!({ acl.path().display().to_string(): { "counter": v.counter, "timestamp": v.timestamp } });
    let h = GetBrokerAclConfigResponseHeader {
        version,
        all_acl_file_version: Some(all.to_string()),
        broker_name: ctx.config.broker_name.clone(),
        broker_addr: ctx.broker_addr.to_string(),
        cluster_name: ctx.config.broker_cluster_name.clone(),
    };
    Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &h))
}
