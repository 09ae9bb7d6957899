//! Request processors, one module per family, and the processor table.
//!
//! Each processor turns every failure into a response with a RocketMQ code and a
//! remark; the dispatcher answers codes without a processor with
//! REQUEST_CODE_NOT_SUPPORTED.

pub mod admin;
pub mod admin_acl;
pub mod client;
pub mod consumer_admin;
pub mod end_transaction;
pub mod offset;
pub mod plugin_admin;
pub mod pop;
pub mod pull;
pub mod query;
pub mod reply;
pub mod send;

use std::sync::Arc;

use common::ResponseCode;
use remoting::header::CommandHeader;
use remoting::server::Dispatcher;
use remoting::{Channel, RemotingCommand, RequestCode};

use crate::context::BrokerContext;

/// Decodes a typed header or answers SYSTEM_ERROR with Java's message.
pub(crate) fn header<H: CommandHeader>(req: &RemotingCommand) -> Result<H, RemotingCommand> {
    req.decode_header::<H>().map_err(|e| RemotingCommand::error(ResponseCode::SYSTEM_ERROR, e.to_string()))
}

macro_rules! try_header {
    ($req:expr) => {
        match $crate::processor::header($req) {
            Ok(h) => h,
            Err(resp) => return Some(resp),
        }
    };
}
pub(crate) use try_header;

/// A success response with a compact JSON body.
pub(crate) fn json_response<T: serde::Serialize>(value: &T) -> RemotingCommand {
    match remoting::json::to_vec(value) {
        Ok(b) => RemotingCommand::success().with_body(b),
        Err(e) => RemotingCommand::error(ResponseCode::SYSTEM_ERROR, e.to_string()),
    }
}

/// The broker's processor table.
pub fn dispatcher(ctx: Arc<BrokerContext>) -> Dispatcher {
    let mut d = Dispatcher::new();
    macro_rules! route {
        ($f:path, $($code:ident),+) => {{
            $(
                let c = ctx.clone();
                d.register(RequestCode::$code, move |ch: Channel, req: RemotingCommand| {
                    let c = c.clone();
                    async move { $f(&c, &ch, req).await }
                });
            )+
        }};
    }
    route!(send::process, SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE);
    route!(controller_mode, GET_BROKER_EPOCH_CACHE, NOTIFY_BROKER_ROLE_CHANGED);
    route!(pull::process, PULL_MESSAGE, LITE_PULL_MESSAGE);
    route!(pop::pop_message, POP_MESSAGE);
    route!(pop::ack_message, ACK_MESSAGE);
    route!(pop::change_invisible_time, CHANGE_MESSAGE_INVISIBLETIME);
    route!(reply::send_reply, SEND_REPLY_MESSAGE, SEND_REPLY_MESSAGE_V2);
    route!(send::consumer_send_msg_back, CONSUMER_SEND_MSG_BACK);
    route!(end_transaction::end_transaction, END_TRANSACTION);
    route!(offset::query_consumer_offset, QUERY_CONSUMER_OFFSET);
    route!(offset::update_consumer_offset, UPDATE_CONSUMER_OFFSET);
    route!(offset::search_offset_by_timestamp, SEARCH_OFFSET_BY_TIMESTAMP);
    route!(offset::get_max_offset, GET_MAX_OFFSET);
    route!(offset::get_min_offset, GET_MIN_OFFSET);
    route!(offset::get_earliest_msg_storetime, GET_EARLIEST_MSG_STORETIME);
    route!(offset::get_consumer_list_by_group, GET_CONSUMER_LIST_BY_GROUP);
    route!(client::heart_beat, HEART_BEAT);
    route!(client::unregister_client, UNREGISTER_CLIENT);
    route!(client::check_client_config, CHECK_CLIENT_CONFIG);
    route!(client::lock_batch_mq, LOCK_BATCH_MQ);
    route!(client::unlock_batch_mq, UNLOCK_BATCH_MQ);
    route!(query::view_message_by_id, VIEW_MESSAGE_BY_ID);
    route!(query::query_message, QUERY_MESSAGE);
    route!(admin::update_and_create_topic, UPDATE_AND_CREATE_TOPIC);
    route!(admin::delete_topic, DELETE_TOPIC_IN_BROKER);
    route!(admin::get_all_topic_config, GET_ALL_TOPIC_CONFIG);
    route!(admin::update_and_create_subscription_group, UPDATE_AND_CREATE_SUBSCRIPTIONGROUP);
    route!(admin::get_all_subscription_group, GET_ALL_SUBSCRIPTIONGROUP_CONFIG);
    route!(admin::delete_subscription_group, DELETE_SUBSCRIPTIONGROUP);
    route!(admin::get_all_consumer_offset, GET_ALL_CONSUMER_OFFSET);
    route!(admin::get_all_delay_offset, GET_ALL_DELAY_OFFSET);
    route!(admin::get_broker_runtime_info, GET_BROKER_RUNTIME_INFO);
    route!(admin::get_broker_ha_status, GET_BROKER_HA_STATUS);
    route!(admin::get_topic_stats_info, GET_TOPIC_STATS_INFO);
    route!(admin::get_consume_stats, GET_CONSUME_STATS);
    route!(admin::get_consumer_connection_list, GET_CONSUMER_CONNECTION_LIST);
    route!(admin::get_broker_config, GET_BROKER_CONFIG);
    route!(admin::update_broker_config, UPDATE_BROKER_CONFIG);
    route!(admin::view_broker_stats_data, VIEW_BROKER_STATS_DATA);
    route!(admin::clean_expired_consume_queue, CLEAN_EXPIRED_CONSUMEQUEUE);
    route!(admin::clean_unused_topic, CLEAN_UNUSED_TOPIC);
    route!(admin::trigger_delete_files, TRIGGER_DELETE_FILES);
    route!(admin::resume_check_half_message, RESUME_CHECK_HALF_MESSAGE);
    route!(plugin_admin::deploy, FERROMQ_PLUGIN_DEPLOY);
    route!(plugin_admin::bind, FERROMQ_PLUGIN_BIND);
    route!(plugin_admin::unbind, FERROMQ_PLUGIN_UNBIND);
    route!(plugin_admin::reload, FERROMQ_PLUGIN_RELOAD);
    route!(plugin_admin::rollback, FERROMQ_PLUGIN_ROLLBACK);
    route!(plugin_admin::remove, FERROMQ_PLUGIN_REMOVE);
    route!(plugin_admin::list, FERROMQ_PLUGIN_LIST);
    route!(plugin_admin::logs, FERROMQ_PLUGIN_LOGS);
    route!(plugin_admin::fetch, FERROMQ_PLUGIN_FETCH);
    route!(consumer_admin::get_producer_connection_list, GET_PRODUCER_CONNECTION_LIST);
    route!(consumer_admin::query_topic_consume_by_who, QUERY_TOPIC_CONSUME_BY_WHO);
    route!(consumer_admin::query_consume_time_span, QUERY_CONSUME_TIME_SPAN);
    route!(consumer_admin::get_broker_consume_stats, GET_BROKER_CONSUME_STATS);
    route!(consumer_admin::query_consume_queue, QUERY_CONSUME_QUEUE);
    route!(consumer_admin::clone_group_offset, CLONE_GROUP_OFFSET);
    route!(consumer_admin::query_correction_offset, QUERY_CORRECTION_OFFSET);
    route!(consumer_admin::get_consumer_running_info, GET_CONSUMER_RUNNING_INFO);
    route!(consumer_admin::consume_message_directly, CONSUME_MESSAGE_DIRECTLY);
    route!(consumer_admin::invoke_broker_to_get_consumer_status, INVOKE_BROKER_TO_GET_CONSUMER_STATUS);
    route!(consumer_admin::get_system_topic_list, GET_SYSTEM_TOPIC_LIST_FROM_BROKER);
    route!(admin::reset_offset, INVOKE_BROKER_TO_RESET_OFFSET);
    route!(admin_acl::update_and_create_acl_config, UPDATE_AND_CREATE_ACL_CONFIG);
    route!(admin_acl::delete_acl_config, DELETE_ACL_CONFIG);
    route!(admin_acl::get_broker_cluster_acl_info, GET_BROKER_CLUSTER_ACL_INFO);
    route!(admin_acl::get_broker_cluster_acl_config, GET_BROKER_CLUSTER_ACL_CONFIG);
    route!(admin_acl::update_global_white_addrs_config, UPDATE_GLOBAL_WHITE_ADDRS_CONFIG);
    if let Some(acl) = &ctx.acl {
        d.guard(acl.clone());
    }
    let c = ctx.clone();
    d.on_close(move |ch| {
        for group in c.clients.channel_closed(ch) {
            c.notify_group_changed(&group);
        }
    });
    d
}

/// Controller mode's requests to a broker: its epoch history, and the
/// controllers' notice of a new master.
async fn controller_mode(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let resp = match req.request_code() {
        RequestCode::GET_BROKER_EPOCH_CACHE => epoch_cache(ctx),
        _ => role_changed(ctx, &req),
    };
    (!req.is_oneway()).then_some(resp)
}

/// GET_BROKER_EPOCH_CACHE: this broker's epochs.
fn epoch_cache(ctx: &BrokerContext) -> RemotingCommand {
    let Some(m) = &ctx.membership else {
        return RemotingCommand::error(ResponseCode::SYSTEM_ERROR, "this request only for controllerMode ");
    };
    let max = ctx.store.commit_log_max_offset();
    let list = m.epochs.lock().entries();
    let body = remoting::body::controller::EpochEntryCache {
        cluster_name: ctx.config.broker_cluster_name.clone(),
        broker_name: ctx.config.broker_name.clone(),
        broker_id: ctx.config.broker_id,
        epoch_list: list
            .iter()
            .map(|e| remoting::body::controller::EpochEntryBody {
                epoch: e.epoch,
                start_offset: e.start_offset,
                end_offset: e.end_offset,
            })
            .collect(),
        max_offset: max,
    };
    RemotingCommand::success().with_body(remoting::json::to_vec(&body).unwrap_or_default())
}

/// NOTIFY_BROKER_ROLE_CHANGED: a newer epoch wakes the supervisor.
fn role_changed(ctx: &BrokerContext, req: &RemotingCommand) -> RemotingCommand {
    if let (Some(m), Ok(h)) =
        (&ctx.membership, req.decode_header::<remoting::header::controller::NotifyBrokerRoleChangedRequestHeader>())
    {
        let epoch = h.master_epoch.unwrap_or(0);
        if epoch > m.master_epoch.load(std::sync::atomic::Ordering::Acquire) {
            m.notified_epoch.fetch_max(epoch, std::sync::atomic::Ordering::AcqRel);
            m.role_changed.notify_one();
        }
    }
    RemotingCommand::success()
}
