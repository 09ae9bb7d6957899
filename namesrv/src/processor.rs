//! Request processing: one function per request code, registered in [`dispatcher`].
//!
//! Every failure becomes a response with a RocketMQ code and a remark; codes without
//! a processor get REQUEST_CODE_NOT_SUPPORTED from the dispatcher.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use common::topic::ORDER_TOPIC_CONFIG_NAMESPACE;
use common::ResponseCode;
use config::NamesrvConfig;
use remoting::body::{DataVersion, KvTable, RegisterBrokerBody, TopicList};
use remoting::header::namesrv::*;
use remoting::header::{CommandHeader, HeaderError};
use remoting::server::Dispatcher;
use remoting::{Channel, RemotingCommand, RequestCode};

use crate::kv::KvConfigManager;
use crate::route::{Registration, RouteInfoManager};

/// Shared state of the processors.
#[derive(Debug)]
pub struct NamesrvState {
    pub config: NamesrvConfig,
    pub routes: RouteInfoManager,
    pub kv: KvConfigManager,
    /// `orderMessageEnable`, which UPDATE_NAMESRV_CONFIG may change at run time.
    pub order_message_enable: AtomicBool,
}

impl NamesrvState {
    pub fn new(config: NamesrvConfig, routes: RouteInfoManager, kv: KvConfigManager) -> Self {
        let order_message_enable = AtomicBool::new(config.order_message_enable);
        Self { config, routes, kv, order_message_enable }
    }
}

/// The processor table.
pub fn dispatcher(state: Arc<NamesrvState>) -> Dispatcher {
    let mut d = Dispatcher::new();
    macro_rules! route {
        ($code:ident, $f:ident) => {{
            let s = state.clone();
            d.register(RequestCode::$code, move |ch: Channel, req: RemotingCommand| {
                let s = s.clone();
                async move { Some($f(&s, &ch, req)) }
            });
        }};
    }
    route!(REGISTER_BROKER, register_broker);
    route!(UNREGISTER_BROKER, unregister_broker);
    route!(GET_ROUTEINFO_BY_TOPIC, get_route_info);
    route!(GET_BROKER_CLUSTER_INFO, get_cluster_info);
    route!(GET_ALL_TOPIC_LIST_FROM_NAMESERVER, get_all_topics);
    route!(GET_TOPICS_BY_CLUSTER, get_topics_by_cluster);
    route!(QUERY_DATA_VERSION, query_data_version);
    route!(PUT_KV_CONFIG, put_kv);
    route!(GET_KV_CONFIG, get_kv);
    route!(DELETE_KV_CONFIG, delete_kv);
    route!(GET_KVLIST_BY_NAMESPACE, get_kv_list);
    route!(WIPE_WRITE_PERM_OF_BROKER, wipe_write_perm);
    route!(ADD_WRITE_PERM_OF_BROKER, add_write_perm);
    route!(DELETE_TOPIC_IN_NAMESRV, delete_topic);
    route!(GET_SYSTEM_TOPIC_LIST_FROM_NS, get_system_topics);
    route!(GET_UNIT_TOPIC_LIST, get_unit_topics);
    route!(GET_HAS_UNIT_SUB_TOPIC_LIST, get_has_unit_sub_topics);
    route!(GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST, get_has_unit_sub_ununit_topics);
    route!(GET_NAMESRV_CONFIG, get_namesrv_config);
    route!(UPDATE_NAMESRV_CONFIG, update_namesrv_config);
    let s = state.clone();
    d.on_close(move |ch| {
        s.routes.on_channel_closed(ch);
    });
    d
}

#[allow(clippy::result_large_err)] // the error is the response to send
fn header<H: CommandHeader>(req: &RemotingCommand) -> Result<H, RemotingCommand> {
    req.decode_header::<H>().map_err(|e: HeaderError| {
        debug!(error = %e, "bad request header");
        RemotingCommand::error(ResponseCode::SYSTEM_ERROR, e.to_string())
    })
}

fn json_body<T: serde::Serialize>(value: &T) -> RemotingCommand {
    match remoting::json::to_vec(value) {
        Ok(b) => RemotingCommand::success().with_body(b),
        Err(e) => RemotingCommand::error(ResponseCode::SYSTEM_ERROR, e.to_string()),
    }
}

macro_rules! try_header {
    ($req:expr) => {
        match header($req) {
            Ok(h) => h,
            Err(resp) => return resp,
        }
    };
}

fn register_broker(s: &NamesrvState, ch: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: RegisterBrokerRequestHeader = try_header!(&req);
    let body = req.body_bytes();
    if let Some(expected) = h.body_crc32.filter(|c| *c != 0) {
        let actual = (crc32fast::hash(&body) & 0x7FFF_FFFF) as i32;
        if actual != expected {
            warn!(broker_addr = %h.broker_addr, expected, actual, "register broker body crc mismatch");
            return RemotingCommand::error(ResponseCode::SYSTEM_ERROR, "crc32 not match");
        }
    }
    let decoded = if body.is_empty() {
        RegisterBrokerBody::default()
    } else {
        match RegisterBrokerBody::decode(&body, h.compressed.unwrap_or(false)) {
            Ok(b) => b,
            Err(e) => {
                warn!(broker_addr = %h.broker_addr, error = %e, "register broker body rejected");
                return RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("invalid register body: {e}"));
            }
        }
    };
    let Ok(broker_id) = u64::try_from(h.broker_id) else {
        return RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("invalid brokerId {}", h.broker_id));
    };
    tracing::Span::current().record("broker_name", h.broker_name.as_str());
    let result = s.routes.register_broker(Registration {
        cluster_name: h.cluster_name,
        broker_addr: h.broker_addr,
        broker_name: h.broker_name,
        broker_id,
        ha_server_addr: h.ha_server_addr,
        heartbeat_timeout: h.heartbeat_timeout_millis.filter(|ms| *ms > 0).map(|ms| Duration::from_millis(ms as u64)),
        enable_acting_master: h.enable_acting_master.unwrap_or(false),
        topic_config: decoded.topic_config_serialize_wrapper,
        filter_server_list: decoded.filter_server_list,
        channel: Some(ch.clone()),
    });
    let mut resp = RemotingCommand::response_with(
        ResponseCode::SUCCESS,
        &RegisterBrokerResponseHeader { ha_server_addr: result.ha_server_addr, master_addr: result.master_addr },
    );
    if let Some(table) = s.kv.list(ORDER_TOPIC_CONFIG_NAMESPACE) {
        if let Ok(b) = remoting::json::to_vec(&KvTable { table }) {
            resp = resp.with_body(b);
        }
    }
    resp
}

fn unregister_broker(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: UnRegisterBrokerRequestHeader = try_header!(&req);
    s.routes.unregister_broker(&h.cluster_name, &h.broker_addr, &h.broker_name, h.broker_id.max(0) as u64);
    RemotingCommand::success()
}

fn get_route_info(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: GetRouteInfoRequestHeader = try_header!(&req);
    tracing::Span::current().record("topic", h.topic.as_str());
    match s.routes.pickup_topic_route_data(&h.topic) {
        Some(mut route) => {
            if s.order_message_enable.load(Ordering::Relaxed) {
                route.order_topic_conf = s.kv.get(ORDER_TOPIC_CONFIG_NAMESPACE, &h.topic);
            }
            // Always the standard form (quoted numeric keys): every studied client
            // reads it, and the Rust client reads nothing else.
            json_body(&route)
        }
        None => RemotingCommand::error(
            ResponseCode::TOPIC_NOT_EXIST,
            format!("No topic route info in name server for the topic: {}", h.topic),
        ),
    }
}

fn get_cluster_info(s: &NamesrvState, _: &Channel, _: RemotingCommand) -> RemotingCommand {
    json_body(&s.routes.cluster_info())
}

fn get_all_topics(s: &NamesrvState, _: &Channel, _: RemotingCommand) -> RemotingCommand {
    json_body(&TopicList { topic_list: s.routes.all_topics(), broker_addr: None })
}

/// GET_SYSTEM_TOPIC_LIST_FROM_NS (304): as RocketMQ's name server answers it, the
/// cluster names and broker names (each is a topic brokers create for themselves),
/// with one broker address to ask for the broker-side list.
fn get_system_topics(s: &NamesrvState, _: &Channel, _: RemotingCommand) -> RemotingCommand {
    let info = s.routes.cluster_info();
    let mut topics = std::collections::BTreeSet::new();
    for (cluster, brokers) in &info.cluster_addr_table {
        topics.insert(cluster.clone());
        topics.extend(brokers.iter().cloned());
    }
    let broker_addr = info.broker_addr_table.values().find_map(|b| b.broker_addrs.values().next().cloned());
    json_body(&TopicList { topic_list: topics.into_iter().collect(), broker_addr })
}

/// Topic system flags (RocketMQ's `TopicSysFlag`).
const FLAG_UNIT: i32 = 0x1;
const FLAG_UNIT_SUB: i32 = 0x2;

/// GET_UNIT_TOPIC_LIST (311).
fn get_unit_topics(s: &NamesrvState, _: &Channel, _: RemotingCommand) -> RemotingCommand {
    json_body(&TopicList { topic_list: s.routes.topics_with_sys_flag(FLAG_UNIT, 0), broker_addr: None })
}

/// GET_HAS_UNIT_SUB_TOPIC_LIST (312).
fn get_has_unit_sub_topics(s: &NamesrvState, _: &Channel, _: RemotingCommand) -> RemotingCommand {
    json_body(&TopicList { topic_list: s.routes.topics_with_sys_flag(FLAG_UNIT_SUB, 0), broker_addr: None })
}

/// GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST (313): unit-subscribed topics that are not
/// unit topics themselves.
fn get_has_unit_sub_ununit_topics(s: &NamesrvState, _: &Channel, _: RemotingCommand) -> RemotingCommand {
    json_body(&TopicList { topic_list: s.routes.topics_with_sys_flag(FLAG_UNIT_SUB, FLAG_UNIT), broker_addr: None })
}

/// GET_NAMESRV_CONFIG (319): the settings as a properties text, under RocketMQ's
/// names and units where RocketMQ has the setting.
fn get_namesrv_config(s: &NamesrvState, _: &Channel, _: RemotingCommand) -> RemotingCommand {
    let mut text = String::new();
    for (k, v) in config::namesrv_properties(&s.config) {
        let v = if k == "orderMessageEnable" { s.order_message_enable.load(Ordering::Relaxed).to_string() } else { v };
        text.push_str(&format!("{k}={v}\n"));
    }
    RemotingCommand::success().with_body(text.into_bytes())
}

/// Name-server settings UPDATE_NAMESRV_CONFIG may change while it runs.
const NAMESRV_CHANGEABLE: &[&str] = &["orderMessageEnable"];

/// UPDATE_NAMESRV_CONFIG (318): applies `orderMessageEnable`; any other setting
/// is refused, with a remark naming it, and nothing is changed.
fn update_namesrv_config(s: &NamesrvState, ch: &Channel, req: RemotingCommand) -> RemotingCommand {
    let body = req.body_bytes();
    let settings = match config::parse_namesrv_update(&String::from_utf8_lossy(&body)) {
        Ok(settings) => settings,
        Err(why) => return RemotingCommand::error(ResponseCode::SYSTEM_ERROR, why),
    };
    if let Some(fixed) = settings.iter().find(|s| !NAMESRV_CHANGEABLE.contains(&s.rocketmq.as_str())) {
        return RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!(
                "{} cannot be changed while the name server runs; set it in its configuration file and restart \
                 (changeable: {})",
                fixed.rocketmq,
                NAMESRV_CHANGEABLE.join(", ")
            ),
        );
    }
    for setting in settings {
        if let Some(b) = setting.as_bool() {
            s.order_message_enable.store(b, Ordering::Relaxed);
        } else {
            return RemotingCommand::error(
                ResponseCode::SYSTEM_ERROR,
                format!("{}: expected true or false", setting.rocketmq),
            );
        }
    }
    tracing::info!(caller = %ch.peer_addr(), "name server settings changed");
    RemotingCommand::success()
}

fn get_topics_by_cluster(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: GetTopicsByClusterRequestHeader = try_header!(&req);
    json_body(&TopicList { topic_list: s.routes.topics_by_cluster(&h.cluster), broker_addr: None })
}

fn query_data_version(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: QueryDataVersionRequestHeader = try_header!(&req);
    let version: DataVersion = match remoting::json::from_slice(&req.body_bytes()) {
        Ok(v) => v,
        Err(e) => return RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("invalid data version: {e}")),
    };
    let (changed, stored) = s.routes.query_data_version(&h.broker_addr, &version);
    let resp = RemotingCommand::response_with(ResponseCode::SUCCESS, &QueryDataVersionResponseHeader { changed });
    match stored.and_then(|v| remoting::json::to_vec(&v).ok()) {
        Some(b) => resp.with_body(b),
        None => resp,
    }
}

fn put_kv(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: PutKvConfigRequestHeader = try_header!(&req);
    match s.kv.put(&h.namespace, &h.key, &h.value) {
        Ok(()) => RemotingCommand::success(),
        Err(e) => RemotingCommand::error(ResponseCode::SYSTEM_ERROR, e.to_string()),
    }
}

fn get_kv(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: GetKvConfigRequestHeader = try_header!(&req);
    match s.kv.get(&h.namespace, &h.key) {
        Some(value) => {
            RemotingCommand::response_with(ResponseCode::SUCCESS, &GetKvConfigResponseHeader { value: Some(value) })
        }
        None => RemotingCommand::error(
            ResponseCode::QUERY_NOT_FOUND,
            format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
        ),
    }
}

fn delete_kv(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: DeleteKvConfigRequestHeader = try_header!(&req);
    match s.kv.delete(&h.namespace, &h.key) {
        Ok(()) => RemotingCommand::success(),
        Err(e) => RemotingCommand::error(ResponseCode::SYSTEM_ERROR, e.to_string()),
    }
}

fn get_kv_list(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: GetKvListByNamespaceRequestHeader = try_header!(&req);
    match s.kv.list(&h.namespace) {
        Some(table) => json_body(&KvTable { table }),
        None => {
            RemotingCommand::error(ResponseCode::QUERY_NOT_FOUND, format!("No config item, Namespace: {}", h.namespace))
        }
    }
}

fn wipe_write_perm(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: WipeWritePermOfBrokerRequestHeader = try_header!(&req);
    let count = s.routes.set_write_perm_of_broker(&h.broker_name, false);
    tracing::info!(broker_name = %h.broker_name, topics = count, "write permission wiped");
    RemotingCommand::response_with(
        ResponseCode::SUCCESS,
        &WipeWritePermOfBrokerResponseHeader { wipe_topic_count: count },
    )
}

fn add_write_perm(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: AddWritePermOfBrokerRequestHeader = try_header!(&req);
    let count = s.routes.set_write_perm_of_broker(&h.broker_name, true);
    tracing::info!(broker_name = %h.broker_name, topics = count, "write permission granted");
    RemotingCommand::response_with(
        ResponseCode::SUCCESS,
        &AddWritePermOfBrokerResponseHeader { add_topic_count: count },
    )
}

fn delete_topic(s: &NamesrvState, _: &Channel, req: RemotingCommand) -> RemotingCommand {
    let h: DeleteTopicFromNamesrvRequestHeader = try_header!(&req);
    s.routes.delete_topic(&h.topic, h.cluster_name.as_deref().filter(|c| !c.is_empty()));
    tracing::info!(topic = %h.topic, "topic deleted from name server");
    RemotingCommand::success()
}
