//! [`ClientInstance`]: what every producer and consumer of a process shares with
//! RocketMQ's `MQClientInstance` — the connections, the route cache, the heartbeat,
//! and the handling of requests brokers send to clients.
//!
//! Background tasks (all stopped by [`ClientInstance::shutdown`]):
//! * route refresh every `poll_name_server_interval`; a refresh that fails keeps
//!   the cached route, so running clients survive every name server being down;
//! * HTTP name-server discovery refresh, when configured;
//! * heartbeat to every known broker every `heartbeat_broker_interval`;
//! * for consumers: rebalance every 20 s (and at once on NOTIFY_CONSUMER_IDS_CHANGED)
//!   and offset commits every `persist_consumer_offset_interval`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use common::msgid::UniqIdGenerator;
use common::route::{MessageQueue, TopicRouteData};
use common::subscription::{ConsumerData, HeartbeatData, ProducerData};
use common::time::now_ms;
use common::{perm, topic, MessageExt, ResponseCode};
use config::ClientConfig;
use remoting::channel::BoxFuture;
use remoting::header::broker::{ConsumerGroupRequestHeader, UnregisterClientRequestHeader};
use remoting::header::namesrv::GetRouteInfoRequestHeader;
use remoting::{Channel, RemotingClient, RemotingCommand, RequestCode, RequestHandler};

use crate::consumer::running_info::{DirectResult, RunningInfo};
use crate::error::{Error, Result};
use crate::namesrv::NameServers;

/// How often consumers rebalance without being told to (`rocketmq.client.rebalance.waitInterval`).
pub const REBALANCE_INTERVAL: Duration = Duration::from_secs(20);

/// A consumer as the instance drives it.
pub trait ConsumerHandle: Send + Sync + 'static {
    fn group(&self) -> String;
    /// The consumer's part of a heartbeat.
    fn consumer_data(&self) -> ConsumerData;
    /// Reassigns queues among the group's members.
    fn rebalance(&self) -> BoxFuture<()>;
    /// Commits consumed offsets (to the broker, or to the local file when broadcasting).
    fn persist_offsets(&self) -> BoxFuture<()>;
    /// An administrator reset the group's offsets (RESET_CONSUMER_CLIENT_OFFSET).
    fn reset_offsets(&self, _topic: String, _offsets: Vec<(MessageQueue, i64)>) -> BoxFuture<()> {
        Box::pin(async {})
    }
    /// What GET_CONSUMER_RUNNING_INFO reports: by default the heartbeat's view
    /// (consume type and subscriptions) without queues.
    fn running_info(&self) -> RunningInfo {
        let data = self.consumer_data();
        let mut properties = BTreeMap::new();
        properties.insert("PROP_CONSUME_TYPE".to_owned(), data.consume_type.as_str().to_owned());
        RunningInfo { properties, subscriptions: data.subscription_data_set, queues: Vec::new() }
    }
    /// GET_CONSUMER_STATUS_FROM_CLIENT: the consumer's offsets of `topic`'s queues.
    fn queue_offsets(&self, _topic: &str) -> Vec<(MessageQueue, i64)> {
        Vec::new()
    }
    /// CONSUME_MESSAGE_DIRECTLY: hands `msg` to the listener and reports what it
    /// said; `None` for consumers without a listener.
    fn consume_directly(&self, _msg: MessageExt, _broker_name: String) -> BoxFuture<Option<DirectResult>> {
        Box::pin(async { None })
    }
}

/// A producer's hook for CHECK_TRANSACTION_STATE (transactional producers).
pub trait TransactionCheckHandle: Send + Sync + 'static {
    fn check(&self, broker_addr: String, request: RemotingCommand) -> BoxFuture<()>;
}

/// Handles on a broker's requests arriving for a producer group.
#[derive(Default, Clone)]
struct ProducerEntry {
    tx_check: Option<Arc<dyn TransactionCheckHandle>>,
}

/// How often a topic's route is re-fetched, at most, after failed requests.
const ROUTE_REFRESH_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub(crate) struct Inner {
    pub config: ClientConfig,
    pub client_id: String,
    pub remoting: RemotingClient,
    pub namesrv: NameServers,
    routes: RwLock<HashMap<String, Arc<TopicRouteData>>>,
    /// broker name → broker id → address
    brokers: RwLock<HashMap<String, BTreeMap<u64, String>>>,
    producers: RwLock<HashMap<String, ProducerEntry>>,
    consumers: RwLock<HashMap<String, Arc<dyn ConsumerHandle>>>,
    pub uniq: UniqIdGenerator,
    cancel: CancellationToken,
    /// Set by the first [`ClientInstance::start`]: a consumer and its inner producer
    /// (or several clients sharing an instance) start it once.
    started: std::sync::atomic::AtomicBool,
    /// When each topic's route was last re-fetched after a failed request.
    refreshed_after_failure: parking_lot::Mutex<HashMap<String, std::time::Instant>>,
}

/// The shared client core. Cheap to clone.
#[derive(Clone)]
pub struct ClientInstance {
    pub(crate) inner: Arc<Inner>,
}

static INSTANCE_COUNTER: AtomicU64 = AtomicU64::new(0);

fn local_ip() -> IpAddr {
    if_addrs::get_if_addrs()
        .ok()
        .and_then(|ifs| ifs.into_iter().map(|i| i.ip()).find(|ip| ip.is_ipv4() && !ip.is_loopback()))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

impl ClientInstance {
    /// Creates an instance. `namesrv` set in code overrides the config. Call
    /// [`ClientInstance::start`] (producers and consumers do) to begin the
    /// background work.
    pub fn new(config: ClientConfig, namesrv: Option<Vec<String>>) -> Self {
        let ip: IpAddr = config.client_ip.as_deref().and_then(|s| s.parse().ok()).unwrap_or_else(local_ip);
        let n = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let instance = if config.instance_name == "DEFAULT" {
            // Java replaces DEFAULT with "<pid>#<nanoTime>"; a counter keeps several
            // instances of one process apart.
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            format!("{}#{}{}", std::process::id(), nanos % 1_000_000_000_000, n)
        } else {
            config.instance_name.clone()
        };
        // RocketMQ's `buildMQClientId`: the unit name, when set, is a third part, where
        // the other members of a group read this client's zone from.
        let client_id = match config.unit_name.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(unit) => format!("{ip}@{instance}@{unit}"),
            None => format!("{ip}@{instance}"),
        };
        let salt =
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
                ^ (n as u32).wrapping_mul(2_654_435_761)) as i32;
        let namesrv = NameServers::new(namesrv, config.namesrv_addr.clone(), config.namesrv_http_url.clone());
        let credentials =
            config.access_key.as_ref().zip(config.secret_key.as_ref()).map(|(ak, sk)| remoting::acl::Credentials {
                access_key: ak.clone(),
                secret_key: sk.expose().to_owned(),
                security_token: config.security_token.as_ref().map(|t| t.expose().to_owned()),
            });
        let tls = remoting::tls::ClientTls::from_config(&config.tls(), None);
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let handler: Arc<dyn RequestHandler> = Arc::new(ServerRequests { inner: weak.clone() });
            Inner {
                remoting: RemotingClient::new(
                    remoting::ClientConfig {
                        credentials: credentials.clone(),
                        tls: tls.clone(),
                        ..remoting::ClientConfig::default()
                    },
                    Some(handler),
                ),
                config,
                client_id,
                namesrv,
                routes: RwLock::default(),
                brokers: RwLock::default(),
                producers: RwLock::default(),
                consumers: RwLock::default(),
                uniq: UniqIdGenerator::new(ip, std::process::id(), salt),
                cancel: CancellationToken::new(),
                started: std::sync::atomic::AtomicBool::new(false),
                refreshed_after_failure: parking_lot::Mutex::default(),
            }
        });
        Self { inner }
    }

    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The name servers this instance uses now (from code, config, environment or
    /// the HTTP endpoint).
    pub fn namesrv_addrs(&self) -> Vec<String> {
        self.inner.namesrv.list()
    }

    pub fn remoting(&self) -> &RemotingClient {
        &self.inner.remoting
    }

    /// A fresh UNIQ_KEY.
    pub fn next_uniq_id(&self) -> String {
        self.inner.uniq.next_id(now_ms())
    }

    /// Starts the background tasks. Idempotent: clients sharing an instance (a
    /// consumer and its inner producer) all call it; only the first call starts.
    pub fn start(&self) {
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let cancel = self.inner.cancel.clone();
        let weak = Arc::downgrade(&self.inner);
        let cfg = self.inner.config.clone();
        if self.inner.namesrv.http_url().is_some() {
            let w = weak.clone();
            let c = cancel.clone();
            tokio::spawn(
                async move {
                    loop {
                        let Some(inner) = w.upgrade() else { break };
                        if let Err(e) = inner.namesrv.refresh_from_http().await {
                            warn!(error = %e, "name server http discovery failed");
                        }
                        drop(inner);
                        tokio::select! {
                            _ = c.cancelled() => break,
                            _ = tokio::time::sleep(cfg.namesrv_http_poll_interval) => {}
                        }
                    }
                }
                .instrument(tracing::info_span!("namesrv_http")),
            );
        }
        spawn_periodic(weak.clone(), cancel.clone(), cfg.poll_name_server_interval, "route_refresh", |i| {
            Box::pin(async move { i.inner.refresh_all_routes().await })
        });
        spawn_periodic(weak.clone(), cancel.clone(), cfg.heartbeat_broker_interval, "heartbeat", |i| {
            Box::pin(async move { i.send_heartbeat_to_all().await })
        });
        spawn_periodic(weak.clone(), cancel.clone(), REBALANCE_INTERVAL, "rebalance", |i| {
            Box::pin(async move { i.rebalance_all().await })
        });
        spawn_periodic(weak, cancel, cfg.persist_consumer_offset_interval, "offset_persist", |i| {
            Box::pin(async move { i.inner.persist_all_offsets().await })
        });
    }

    pub(crate) fn register_producer(&self, group: &str, tx_check: Option<Arc<dyn TransactionCheckHandle>>) {
        self.inner.producers.write().insert(group.to_owned(), ProducerEntry { tx_check });
    }

    /// Registers `consumer` unless its group already has one on this instance
    /// (Java refuses a second consumer of a group per client instance).
    pub(crate) fn try_register_consumer(&self, consumer: Arc<dyn ConsumerHandle>) -> bool {
        let mut consumers = self.inner.consumers.write();
        let group = consumer.group();
        if consumers.contains_key(&group) {
            return false;
        }
        consumers.insert(group, consumer);
        true
    }

    /// The route of `topic`, from the cache or the name server.
    ///
    /// # Errors
    /// [`Error::NoRoute`] when no name server knows the topic (and it is not cached).
    pub async fn route(&self, topic: &str) -> Result<Arc<TopicRouteData>> {
        if let Some(r) = self.inner.routes.read().get(topic) {
            return Ok(r.clone());
        }
        self.inner.update_route(topic).await
    }

    /// Re-fetches the route of `topic` from the name server.
    ///
    /// # Errors
    /// As [`ClientInstance::route`].
    pub async fn refresh_route(&self, topic: &str) -> Result<Arc<TopicRouteData>> {
        self.inner.update_route(topic).await
    }

    /// Re-fetches `topic`'s route after a request to one of its brokers failed, at
    /// most once a second per topic: a master that died is replaced (controller
    /// mode, or an operator) long before the periodic poll
    /// (`poll_name_server_interval`, 30 s) would notice.
    pub async fn refresh_route_after_failure(&self, topic: &str) {
        {
            let mut last = self.inner.refreshed_after_failure.lock();
            let now = std::time::Instant::now();
            if last.get(topic).is_some_and(|at| now.duration_since(*at) < ROUTE_REFRESH_AFTER_FAILURE) {
                return;
            }
            last.insert(topic.to_owned(), now);
        }
        match self.inner.update_route(topic).await {
            Ok(_) => {}
            // The name servers no longer route the topic (its master is gone and its
            // successor has not registered it yet): forget the stale route, so sends
            // fall back to auto-creation (`TBW102`) as for a new topic.
            Err(Error::NoRoute(_)) => {
                self.inner.routes.write().remove(topic);
                // ... whose route (`TBW102`'s, cached too) must then be current.
                if topic != common::topic::AUTO_CREATE_TOPIC_KEY {
                    Box::pin(self.refresh_route_after_failure(common::topic::AUTO_CREATE_TOPIC_KEY)).await;
                }
            }
            Err(e) => tracing::debug!(topic, error = %e, "route refresh after a failure failed"),
        }
    }

    /// The address of `broker_name`'s master (id 0).
    pub fn master_addr(&self, broker_name: &str) -> Option<String> {
        self.inner.brokers.read().get(broker_name)?.get(&common::route::MASTER_ID).cloned()
    }

    /// The master, or else any live address of `broker_name` (consumers may read
    /// from a slave when the master is gone).
    pub fn any_addr(&self, broker_name: &str) -> Option<String> {
        let b = self.inner.brokers.read();
        let addrs = b.get(broker_name)?;
        addrs.get(&common::route::MASTER_ID).or_else(|| addrs.values().next()).cloned()
    }

    /// An address of `broker_name` for a consumer's request, chosen from the cached
    /// route by [`find_broker_in_subscribe`] (RocketMQ's
    /// `MQClientInstance.findBrokerAddressInSubscribe`). `None` when the route
    /// lists no fitting address; the caller decides whether to refresh the route.
    pub fn find_broker_in_subscribe(
        &self,
        broker_name: &str,
        broker_id: u64,
        only_this_broker: bool,
    ) -> Option<FoundBroker> {
        let b = self.inner.brokers.read();
        find_broker_in_subscribe(b.get(broker_name)?, broker_id, only_this_broker)
    }

    /// Queues a producer may send to: writable queue data whose broker has a
    /// master, sorted. An unknown topic falls back to the `TBW102` route (brokers
    /// with auto-creation), with at most `default_queue_nums` queues per broker.
    ///
    /// # Errors
    /// No route for the topic nor for `TBW102`.
    pub async fn publish_queues(&self, topic_name: &str, default_queue_nums: i32) -> Result<Vec<MessageQueue>> {
        let (route, fallback) = match self.route(topic_name).await {
            Ok(r) => (r, false),
            Err(Error::NoRoute(_)) => match self.route(topic::AUTO_CREATE_TOPIC_KEY).await {
                Ok(r) => (r, true),
                Err(_) => return Err(Error::NoRoute(topic_name.to_owned())),
            },
            Err(e) => return Err(e),
        };
        // A globally ordered topic (`orderTopicConf`, from the name server's
        // ORDER_TOPIC_CONFIG when `orderMessageEnable`): exactly the configured
        // `broker:queues` list, in its order, as Java's topicRouteData2TopicPublishInfo.
        if let Some(conf) = route.order_topic_conf.as_deref().filter(|c| !c.trim().is_empty()) {
            let queues = order_topic_queues(topic_name, conf);
            if !queues.is_empty() {
                return Ok(queues);
            }
        }
        let mut queues = Vec::new();
        let mut datas = route.queue_datas.clone();
        datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        for qd in datas {
            if !perm::is_writeable(qd.perm) || route.broker(&qd.broker_name).and_then(|b| b.master_addr()).is_none() {
                continue;
            }
            let n = if fallback { qd.write_queue_nums.min(default_queue_nums) } else { qd.write_queue_nums };
            queues.extend((0..n).map(|q| MessageQueue::new(topic_name, qd.broker_name.clone(), q)));
        }
        if queues.is_empty() {
            return Err(Error::NoRoute(topic_name.to_owned()));
        }
        Ok(queues)
    }

    /// Queues a consumer may read: readable queue data, sorted.
    ///
    /// # Errors
    /// No route for the topic.
    pub async fn subscribe_queues(&self, topic_name: &str) -> Result<Vec<MessageQueue>> {
        let route = self.route(topic_name).await?;
        let mut queues: Vec<MessageQueue> = route
            .queue_datas
            .iter()
            .filter(|qd| perm::is_readable(qd.perm))
            .flat_map(|qd| {
                (0..qd.read_queue_nums).map(move |q| MessageQueue::new(topic_name, qd.broker_name.clone(), q))
            })
            .collect();
        queues.sort();
        Ok(queues)
    }

    /// Sends a request to a broker and checks nothing about the answer.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn invoke(&self, addr: &str, req: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        Ok(self.inner.remoting.invoke(addr, req, timeout).await?)
    }

    /// Sends a oneway request.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn oneway(&self, addr: &str, req: RemotingCommand) -> Result<()> {
        Ok(self.inner.remoting.invoke_oneway(addr, req).await?)
    }

    /// Sends a request to the name servers (sticky one first, failing over).
    ///
    /// # Errors
    /// Every name server failed; the last failure is returned.
    pub async fn invoke_namesrv(&self, req: RemotingCommand) -> Result<RemotingCommand> {
        self.inner.invoke_namesrv(req).await
    }

    /// Heartbeats every known broker now.
    pub async fn send_heartbeat_to_all(&self) {
        self.inner.send_heartbeat_to_all().await;
    }

    /// Rebalances every consumer now.
    pub async fn rebalance_all(&self) {
        self.inner.rebalance_all().await;
    }

    /// Every known broker address.
    pub fn broker_addrs(&self) -> Vec<String> {
        self.inner.brokers.read().values().flat_map(|m| m.values().cloned()).collect()
    }

    /// Unregisters `producer_group`/`consumer_group` from every broker, then stops
    /// the background tasks if nothing is left.
    pub async fn unregister(&self, producer_group: Option<&str>, consumer_group: Option<&str>) {
        if let Some(g) = producer_group {
            self.inner.producers.write().remove(g);
        }
        if let Some(g) = consumer_group {
            self.inner.consumers.write().remove(g);
        }
        let header = UnregisterClientRequestHeader {
            client_id: self.inner.client_id.clone(),
            producer_group: producer_group.map(str::to_owned),
            consumer_group: consumer_group.map(str::to_owned),
        };
        for addr in self.broker_addrs() {
            let req = RemotingCommand::request_with(RequestCode::UNREGISTER_CLIENT, &header);
            if let Err(e) = self.invoke(&addr, req, self.inner.config.mq_client_api_timeout).await {
                debug!(broker = %addr, error = %e, "unregister failed");
            }
        }
    }

    /// Stops background tasks and closes connections.
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.remoting.shutdown();
    }
}

fn spawn_periodic<F>(weak: Weak<Inner>, cancel: CancellationToken, period: Duration, name: &'static str, f: F)
where
    F: Fn(ClientInstance) -> BoxFuture<()> + Send + 'static,
{
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                f(ClientInstance { inner }).await;
            }
        }
        .instrument(tracing::info_span!("client_task", task = name)),
    );
}

impl Inner {
    async fn invoke_namesrv(&self, req: RemotingCommand) -> Result<RemotingCommand> {
        let candidates = match self.namesrv.candidates() {
            // Known only through HTTP and not fetched yet (the background fetch may
            // still be running): fetch now, as the Java client does in `start`.
            Err(Error::NoNameServer) if self.namesrv.http_url().is_some() => {
                self.namesrv.refresh_from_http().await?;
                self.namesrv.candidates()?
            }
            other => other?,
        };
        let mut last = Error::NoNameServer;
        for addr in candidates {
            match self.remoting.invoke(&addr, req.clone(), self.config.mq_client_api_timeout).await {
                Ok(resp) => {
                    self.namesrv.mark_good(&addr);
                    return Ok(resp);
                }
                Err(e) => {
                    debug!(namesrv = %addr, error = %e, "name server request failed; trying the next");
                    last = e.into();
                }
            }
        }
        Err(last)
    }

    async fn update_route(&self, topic_name: &str) -> Result<Arc<TopicRouteData>> {
        let h = GetRouteInfoRequestHeader { topic: topic_name.to_owned(), accept_standard_json_only: Some(true) };
        let resp = self.invoke_namesrv(RemotingCommand::request_with(RequestCode::GET_ROUTEINFO_BY_TOPIC, &h)).await?;
        match resp.response_code() {
            ResponseCode::SUCCESS => {}
            ResponseCode::TOPIC_NOT_EXIST => return Err(Error::NoRoute(topic_name.to_owned())),
            _ => return Err(Error::from_response(&resp, "the name server")),
        }
        let route: TopicRouteData = remoting::json::from_slice(&resp.body_bytes())
            .map_err(|e| Error::Body(format!("route of {topic_name}: {e}")))?;
        let route = Arc::new(route);
        let changed = {
            let mut routes = self.routes.write();
            let changed = routes.get(topic_name).is_none_or(|old| **old != *route);
            routes.insert(topic_name.to_owned(), route.clone());
            changed
        };
        {
            let mut brokers = self.brokers.write();
            for bd in &route.broker_datas {
                brokers.insert(bd.broker_name.clone(), bd.broker_addrs.clone());
            }
        }
        if changed {
            debug!(topic = topic_name, "route updated");
        }
        Ok(route)
    }

    async fn refresh_all_routes(&self) {
        let mut topics: Vec<String> = self.routes.read().keys().cloned().collect();
        for c in self.consumers.read().values() {
            topics.extend(c.consumer_data().subscription_data_set.into_iter().map(|s| s.topic));
        }
        topics.sort();
        topics.dedup();
        for t in topics {
            if let Err(e) = self.update_route(&t).await {
                // Keep the cached route: clients keep working when name servers are down.
                debug!(topic = %t, error = %e, "route refresh failed; keeping the cached route");
            }
        }
    }

    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.client_id.clone(),
            producer_data_set: self.producers.read().keys().map(|g| ProducerData { group_name: g.clone() }).collect(),
            consumer_data_set: self.consumers.read().values().map(|c| c.consumer_data()).collect(),
        }
    }

    async fn send_heartbeat_to_all(&self) {
        let hb = self.heartbeat_data();
        if hb.producer_data_set.is_empty() && hb.consumer_data_set.is_empty() {
            return;
        }
        let Ok(body) = serde_json::to_vec(&hb) else { return };
        let addrs: Vec<String> = self.brokers.read().values().flat_map(|m| m.values().cloned()).collect();
        for addr in addrs {
            let req = RemotingCommand::request(RequestCode::HEART_BEAT).with_body(body.clone());
            match self.remoting.invoke(&addr, req, self.config.mq_client_api_timeout).await {
                Ok(r) if r.response_code() == ResponseCode::SUCCESS => {}
                Ok(r) => warn!(broker = %addr, code = r.code, remark = r.remark_str(), "heartbeat refused"),
                Err(e) => debug!(broker = %addr, error = %e, "heartbeat failed"),
            }
        }
    }

    async fn rebalance_all(&self) {
        let consumers: Vec<Arc<dyn ConsumerHandle>> = self.consumers.read().values().cloned().collect();
        for c in consumers {
            c.rebalance().await;
        }
    }

    async fn persist_all_offsets(&self) {
        let consumers: Vec<Arc<dyn ConsumerHandle>> = self.consumers.read().values().cloned().collect();
        for c in consumers {
            c.persist_offsets().await;
        }
    }
}

/// Requests brokers send to this client.
struct ServerRequests {
    inner: Weak<Inner>,
}

impl RequestHandler for ServerRequests {
    fn handle(&self, channel: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let inner = inner.upgrade()?;
            match request.request_code() {
                RequestCode::NOTIFY_CONSUMER_IDS_CHANGED => {
                    if let Ok(h) = request.decode_header::<ConsumerGroupRequestHeader>() {
                        let consumer = inner.consumers.read().get(&h.consumer_group).cloned();
                        if let Some(c) = consumer {
                            info!(group = %h.consumer_group, "consumer ids changed; rebalancing now");
                            tokio::spawn(async move { c.rebalance().await });
                        }
                    }
                    None
                }
                RequestCode::CHECK_TRANSACTION_STATE => {
                    let group = request_producer_group(&request);
                    let producers = inner.producers.read();
                    let handle = match group {
                        Some(g) => producers.get(&g).and_then(|p| p.tx_check.clone()),
                        None => producers.values().find_map(|p| p.tx_check.clone()),
                    };
                    drop(producers);
                    if let Some(h) = handle {
                        let addr = channel.peer_addr().to_string();
                        tokio::spawn(async move { h.check(addr, request).await });
                    }
                    None
                }
                RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT => Some(crate::request::on_push_reply(&request)),
                RequestCode::RESET_CONSUMER_CLIENT_OFFSET => {
                    reset_offsets(&inner, &request).await;
                    Some(RemotingCommand::success())
                }
                RequestCode::GET_CONSUMER_RUNNING_INFO => {
                    let group = request.ext_fields.get("consumerGroup").unwrap_or_default().to_owned();
                    let consumer = inner.consumers.read().get(&group).cloned();
                    Some(match consumer {
                        Some(c) => {
                            let mut info = c.running_info();
                            info.properties.insert("PROP_CLIENT_ID".to_owned(), inner.client_id.clone());
                            info.properties.insert(
                                "PROP_CLIENT_VERSION".to_owned(),
                                remoting::command::CURRENT_VERSION.to_string(),
                            );
                            info.properties
                                .insert("PROP_CLIENT_SDK".to_owned(), format!("FerroMQ {}", env!("CARGO_PKG_VERSION")));
                            info.properties.insert("PROP_NAMESERVER_ADDR".to_owned(), inner.namesrv.list().join(";"));
                            RemotingCommand::success().with_body(info.to_json().into_bytes())
                        }
                        None => not_in_this_consumer(&group),
                    })
                }
                RequestCode::GET_CONSUMER_STATUS_FROM_CLIENT => {
                    let topic = request.ext_fields.get("topic").unwrap_or_default().to_owned();
                    let group = request.ext_fields.get("group").unwrap_or_default().to_owned();
                    let consumer = inner.consumers.read().get(&group).cloned();
                    Some(match consumer {
                        Some(c) => {
                            let table = remoting::json::mq_keyed(&c.queue_offsets(&topic));
                            RemotingCommand::success()
                                .with_body(format!("{{\"messageQueueTable\":{table}}}").into_bytes())
                        }
                        None => not_in_this_consumer(&group),
                    })
                }
                RequestCode::CONSUME_MESSAGE_DIRECTLY => {
                    let group = request.ext_fields.get("consumerGroup").unwrap_or_default().to_owned();
                    let consumer = inner.consumers.read().get(&group).cloned();
                    let Some(c) = consumer else { return Some(not_in_this_consumer(&group)) };
                    let msg = match MessageExt::decode(&request.body_bytes(), false) {
                        Ok(m) => m,
                        Err(e) => {
                            return Some(RemotingCommand::error(
                                ResponseCode::SYSTEM_ERROR,
                                format!("the message to consume could not be decoded: {e}"),
                            ))
                        }
                    };
                    let broker_name = request.ext_fields.get("brokerName").unwrap_or_default().to_owned();
                    Some(match c.consume_directly(msg, broker_name).await {
                        Some(r) => RemotingCommand::success().with_body(serde_json::to_vec(&r).unwrap_or_default()),
                        None => RemotingCommand::error(
                            ResponseCode::SYSTEM_ERROR,
                            format!("the consumer of group <{group}> has no listener to consume with"),
                        ),
                    })
                }
                other => Some(RemotingCommand::error(
                    ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                    format!(" request type {} not supported", other.0),
                )),
            }
        })
    }
}

/// RocketMQ's answer when a request names a group this client does not run.
fn not_in_this_consumer(group: &str) -> RemotingCommand {
    RemotingCommand::error(
        ResponseCode::SYSTEM_ERROR,
        format!("The Consumer Group <{group}> not exist in this consumer"),
    )
}

/// A broker address picked for a consumer's request (RocketMQ's `FindBrokerResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBroker {
    pub addr: String,
    /// The id the address is listed under in the route (0 = master).
    pub broker_id: u64,
}

impl FoundBroker {
    /// Whether the address is the master's: only a master commits offsets that
    /// ride on a pull (RocketMQ clears COMMIT_OFFSET for a slave).
    pub fn is_master(&self) -> bool {
        self.broker_id == common::route::MASTER_ID
    }
}

/// RocketMQ's rule for picking one of a broker name's addresses (`brokerAddrs`, by
/// broker id) for a consumer: the address of `broker_id`; for a slave id that the
/// route lacks, the next id (`broker_id + 1`); then, unless `only_this_broker`, the
/// lowest id listed — the master while it is in the route, else a slave.
///
/// Java walks a `HashMap<Long, String>` for "any address"; for the small ids
/// brokers use, its iteration order is ascending, which the `BTreeMap` gives here.
pub fn find_broker_in_subscribe(
    addrs: &BTreeMap<u64, String>,
    broker_id: u64,
    only_this_broker: bool,
) -> Option<FoundBroker> {
    let at = |id: u64| addrs.get(&id).map(|addr| FoundBroker { addr: addr.clone(), broker_id: id });
    if let Some(found) = at(broker_id) {
        return Some(found);
    }
    if broker_id != common::route::MASTER_ID {
        if let Some(found) = broker_id.checked_add(1).and_then(at) {
            return Some(found);
        }
    }
    if only_this_broker {
        return None;
    }
    addrs.iter().next().map(|(id, addr)| FoundBroker { addr: addr.clone(), broker_id: *id })
}

/// Queues of an `orderTopicConf` value: `brokerName:queueNums` entries joined with
/// `;` (malformed entries skipped).
fn order_topic_queues(topic_name: &str, conf: &str) -> Vec<MessageQueue> {
    conf.split(';')
        .filter_map(|item| {
            let (broker, n) = item.trim().split_once(':')?;
            Some((broker.trim().to_owned(), n.trim().parse::<i32>().ok()?))
        })
        .flat_map(|(broker, n)| (0..n.max(0)).map(move |q| MessageQueue::new(topic_name, broker.clone(), q)))
        .collect()
}

/// The producer group of a half message sent back for checking (its `PGROUP`).
fn request_producer_group(request: &RemotingCommand) -> Option<String> {
    let msg = common::MessageExt::decode(&request.body_bytes(), false).ok()?;
    msg.properties.get(common::properties::keys::PRODUCER_GROUP).map(str::to_owned)
}

async fn reset_offsets(inner: &Inner, request: &RemotingCommand) {
    let Ok(h) = request.decode_header::<remoting::header::broker::ResetOffsetRequestHeader>() else { return };
    let body = request.body_bytes();
    let offsets = crate::admin::parse_mq_keyed_offsets(&body);
    let consumer = inner.consumers.read().get(&h.group).cloned();
    if let Some(c) = consumer {
        info!(group = %h.group, topic = %h.topic, queues = offsets.len(), "offsets reset by an administrator");
        c.reset_offsets(h.topic, offsets).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ids` are the broker ids the route lists; `expected` the id picked.
    fn check(ids: &[u64], broker_id: u64, only_this_broker: bool, expected: Option<u64>) {
        let addrs: BTreeMap<u64, String> = ids.iter().map(|id| (*id, format!("10.0.0.{id}:10911"))).collect();
        let got = find_broker_in_subscribe(&addrs, broker_id, only_this_broker);
        assert_eq!(
            got.as_ref().map(|f| f.broker_id),
            expected,
            "ids {ids:?}, asked {broker_id}, only {only_this_broker}"
        );
        if let Some(f) = got {
            assert_eq!(f.addr, format!("10.0.0.{}:10911", f.broker_id));
            assert_eq!(f.is_master(), f.broker_id == 0);
        }
    }

    #[test]
    fn finds_brokers_for_consumers_as_rocketmq_does() {
        // Master and slave listed: each id as asked.
        check(&[0, 1], 0, false, Some(0));
        check(&[0, 1], 1, false, Some(1));
        check(&[0, 1], 1, true, Some(1));
        // A slave id the route lacks: the next id, else the master.
        check(&[0, 2], 1, false, Some(2));
        check(&[0, 1], 3, false, Some(0));
        check(&[0, 1], 3, true, None);
        // Master missing from the route: the master only when asked for it alone,
        // else a slave (the lowest id).
        check(&[1, 2], 0, true, None);
        check(&[1, 2], 0, false, Some(1));
        check(&[2], 0, false, Some(2));
        check(&[2], 1, true, Some(2));
        check(&[], 0, false, None);
        check(&[1], u64::MAX, false, Some(1));
    }
}
