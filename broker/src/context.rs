//! [`BrokerContext`]: everything the processors and background services share.
//!
//! The context holds state only — tables, managers, the store and the services'
//! state — and imports no processor and no service task, so every module can take
//! `&BrokerContext` without the module graph looping back through it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Notify;

use common::delay::DelayLevels;
use config::BrokerConfig;
use store::{MessageStore, StoreOptions};

use crate::client_manager::ClientManager;
use crate::consumer_offset::ConsumerOffsetManager;
use crate::error::{Error, Result};
use crate::filter::prepared::FilterCache;
use crate::hold::PullHoldService;
use crate::lock::RebalanceLockManager;
use crate::outcome::StoreFacts;
use crate::role::Replication;
use crate::schedule::offsets::DelayOffsets;
use crate::stats::BrokerStats;
use crate::subscription_group::SubscriptionGroupManager;
use crate::topic_config::TopicConfigManager;

pub struct BrokerContext {
    pub config: BrokerConfig,
    /// Advertised `ip:port`: registered with name servers, written into records.
    pub broker_addr: SocketAddr,
    pub store: Arc<MessageStore>,
    /// Master or slave, and the replication state.
    pub role: Replication,
    pub topics: TopicConfigManager,
    pub groups: SubscriptionGroupManager,
    pub offsets: ConsumerOffsetManager,
    pub clients: ClientManager,
    pub locks: RebalanceLockManager,
    pub holds: PullHoldService,
    pub filters: FilterCache,
    pub delay_levels: DelayLevels,
    pub delay_offsets: DelayOffsets,
    pub stats: BrokerStats,
    /// Per-topic and per-group counters with minute/hour/day windows.
    pub stats_items: crate::stats_items::StatsItems,
    /// Put and get totals at the last two local midnights.
    pub daily_put: crate::stats_items::DailyMarks,
    pub daily_get: crate::stats_items::DailyMarks,
    /// RocketMQ 5's request metrics (recording nothing when metrics are off).
    pub metrics: crate::metrics::BrokerMetrics,
    /// The span exporter, when `[telemetry.traces]` exports spans.
    pub traces: Option<Arc<telemetry::TraceExport>>,
    /// Controller mode: what the broker shares with its supervisor.
    pub membership: Option<Arc<crate::membership::Membership>>,
    /// RocketMQ's plain ACL, when `acl_enable` is on.
    pub acl: Option<Arc<crate::acl::AccessValidator>>,
    /// Its tracer (`None`: no span is ever started).
    pub tracer: Option<telemetry::trace::SdkTracer>,
    pub transactions: crate::transaction::state::TransactionState,
    pub timers: crate::timer::state::TimerService,
    /// Barriers of expanded ordered topics (`config/orderExpansion.json`).
    pub order_expansions: crate::order_expansion::OrderExpansions,
    /// POP consumption: queue locks, orderly holds, the revive task's wake-up.
    pub pop: crate::pop::state::PopState,
    /// UNIQ_KEYs for half messages whose producer set none (see `reroute::to_half`).
    pub uniq_ids: common::msgid::UniqIdGenerator,
    /// Loaded plugins and their bindings (`[plugins]`, `[[broker.plugin_binding]]`).
    pub plugins: crate::plugins::BrokerPlugins,
    /// The settings UPDATE_BROKER_CONFIG may change while the broker runs.
    pub runtime: crate::runtime_config::RuntimeConfig,
    /// The configuration's data version (GET_BROKER_CONFIG), moved on by each update.
    pub config_version: parking_lot::Mutex<remoting::body::DataVersion>,
    /// Wakes the registration task at once (topic created or changed).
    pub register_now: Notify,
    /// How many name servers accepted the last registration round (0 before the
    /// first success).
    pub registered: tokio::sync::watch::Sender<usize>,
    boot_ms: i64,
}

impl BrokerContext {
    /// Why this broker takes no writes now, as a response: a slave's refusal, or a
    /// controller-mode master whose SyncStateSet is below `min_in_sync_replicas`.
    pub fn refuse_write(&self) -> Option<remoting::RemotingCommand> {
        self.role
            .refuse_write(&self.config.broker_name)
            .or_else(|| self.membership.as_ref().and_then(|m| m.refuse_write()))
    }

    /// Opens the store and loads the state files.
    ///
    /// # Errors
    /// Invalid configuration or unreadable state.
    pub fn open(
        config: BrokerConfig,
        plugins: &config::PluginsConfig,
        broker_addr: SocketAddr,
        ha_addr: SocketAddr,
        metrics: crate::metrics::BrokerMetrics,
        traces: Option<Arc<telemetry::TraceExport>>,
        start: &crate::StartOptions,
    ) -> Result<Arc<Self>> {
        config.validate().map_err(|e| Error::Config(e.to_string()))?;
        let delay_levels = config.delay_levels().map_err(|e| Error::Config(e.to_string()))?;
        let root = config.store.store_path_root_dir.clone();
        let config_dir = root.join("config");
        // A SYNC_MASTER's puts wait for a slave as well (`replication` reports them).
        let replica_ack = (config.broker_role == config::BrokerRole::SyncMaster).then(|| store::ReplicaAck {
            max_gap: i64::try_from(config.ha_max_gap_not_in_sync.as_u64()).unwrap_or(i64::MAX),
        });
        let opts = StoreOptions {
            delay_levels: delay_levels.clone(),
            replica_ack,
            truncate_to: start.truncate_to,
            ..StoreOptions::default()
        };
        let store = Arc::new(MessageStore::open_with(Arc::new(config.store.clone()), broker_addr, opts)?);
        let role = Replication::new(config.broker_role, ha_addr, config.ha_master_address.clone())
            .with_slave_reads(config.slave_read_enable, config.access_message_in_memory_max_ratio);
        let report = store.recovery_report();
        if !report.clean_shutdown && report.commit_log_end > 0 {
            tracing::warn!(commit_log_end = report.commit_log_end, truncated = ?report.truncated,
                           redispatched = report.records_redispatched, "recovered after an unclean shutdown");
        }
        let topics = TopicConfigManager::load(config_dir.join("topics.json"), &config)?;
        let groups = SubscriptionGroupManager::load(
            config_dir.join("subscriptionGroup.json"),
            config.auto_create_subscription_group,
        )?
        .with_default_retry_max_times(i32::try_from(config.max_reconsume_times).unwrap_or(i32::MAX));
        let offsets = ConsumerOffsetManager::load(config_dir.join("consumerOffset.json"))?;
        let delay_offsets = DelayOffsets::load(config_dir.join("delayOffset.json"))?;
        let timers = crate::timer::state::TimerService::load(config_dir.join("timerCheckpoint.json"))?;
        let order_expansions = crate::order_expansion::OrderExpansions::load(config_dir.join("orderExpansion.json"))?;
        let plugins = crate::plugins::BrokerPlugins::load(plugins, &config.plugin_bindings, Some(root.join("plugins")));
        let acl = match config.acl_enable {
            true => {
                let path =
                    crate::acl::AccessValidator::default_path(config.acl_file.as_deref()).map_err(Error::Config)?;
                Some(crate::acl::AccessValidator::open(path).map_err(Error::Config)?)
            }
            false => None,
        };
        let ctx = Arc::new(Self {
            acl,
            uniq_ids: common::msgid::UniqIdGenerator::new(broker_addr.ip(), std::process::id(), rand::random()),
            plugins,
            runtime: crate::runtime_config::RuntimeConfig::new(&config),
            config_version: parking_lot::Mutex::new(remoting::body::DataVersion::new(common::time::now_ms())),
            locks: RebalanceLockManager::new(config.rebalance_lock_max_live_time),
            holds: PullHoldService::new(),
            filters: FilterCache::default(),
            clients: ClientManager::new(),
            stats: BrokerStats::default(),
            stats_items: Default::default(),
            daily_put: Default::default(),
            daily_get: Default::default(),
            metrics,
            tracer: traces.as_ref().map(|t| t.tracer("ferromq-broker")),
            traces,
            membership: start.membership.clone(),
            transactions: Default::default(),
            timers,
            order_expansions,
            pop: crate::pop::state::PopState::new(&config.broker_cluster_name),
            register_now: Notify::new(),
            registered: tokio::sync::watch::Sender::new(0),
            boot_ms: common::time::now_ms(),
            delay_levels,
            delay_offsets,
            config,
            broker_addr,
            store,
            role,
            topics,
            groups,
            offsets,
        });
        let weak = Arc::downgrade(&ctx);
        ctx.topics.set_change_hook(Arc::new(move || {
            if let Some(c) = weak.upgrade() {
                c.register_now.notify_one();
            }
        }));
        Ok(ctx)
    }

    /// Notifies a consumer group that its membership or subscriptions changed, if the
    /// group allows it.
    pub fn notify_group_changed(&self, group: &str) {
        let enabled = self.groups.get(group).is_none_or(|g| g.notify_consumer_ids_changed_enable);
        if enabled {
            self.clients.notify_ids_changed(group);
        }
    }

    /// Persists offsets and delay progress (shutdown and periodic flushes).
    pub fn persist_all(&self) {
        if let Err(e) = self.offsets.persist() {
            tracing::error!(error = %e, "could not persist consumer offsets");
        }
        if let Err(e) = self.delay_offsets.persist() {
            tracing::error!(error = %e, "could not persist delay offsets");
        }
        if let Err(e) = self.timers.persist() {
            tracing::error!(error = %e, "could not persist the timer checkpoint");
        }
        if let Err(e) = self.topics.persist() {
            tracing::error!(error = %e, "could not persist topics");
        }
    }

    pub fn stats_boot_ms(&self) -> i64 {
        self.boot_ms
    }

    pub fn broker_addr_string(&self) -> String {
        self.broker_addr.to_string()
    }

    /// Counts `n` messages of `bytes` stored for `topic`.
    pub fn record_put(&self, topic: &str, n: u64, bytes: u64) {
        BrokerStats::add(&self.stats.send_messages, n);
        BrokerStats::add(&self.stats.send_bytes, bytes);
        self.stats_items.add(crate::stats_items::TOPIC_PUT, topic, n, bytes);
    }

    /// Counts `n` messages of `bytes` that a pull of `group` returned from `topic`.
    pub fn record_get(&self, topic: &str, group: &str, n: u64, bytes: u64) {
        BrokerStats::add(&self.stats.pull_messages, n);
        BrokerStats::add(&self.stats.pull_bytes, bytes);
        self.stats_items.add(crate::stats_items::GROUP_GET, &format!("{topic}@{group}"), n, bytes);
    }

    /// Brings the broker-wide stats items (`BROKER_PUT_NUMS`, `BROKER_GET_NUMS`, keyed
    /// by cluster name) up to the broker's counters.
    pub fn refresh_broker_stats(&self) {
        use crate::stats_items::{BROKER_GET, BROKER_PUT};
        let st = &self.stats;
        let cluster = &self.config.broker_cluster_name;
        let get = BrokerStats::get;
        self.stats_items.set(BROKER_PUT, cluster, get(&st.send_messages), get(&st.send_requests));
        self.stats_items.set(BROKER_GET, cluster, get(&st.pull_messages), get(&st.pull_requests));
    }

    /// The put and get totals at the last local midnight and the one before.
    pub fn daily_marks(&self) -> (crate::stats_items::Marks, crate::stats_items::Marks) {
        let day = store::local_day_start(common::time::now_ms());
        (
            self.daily_put.at(day, BrokerStats::get(&self.stats.send_messages)),
            self.daily_get.at(day, BrokerStats::get(&self.stats.pull_messages)),
        )
    }

    pub fn is_writeable(&self) -> bool {
        common::perm::is_writeable(i32::from(self.runtime.broker_permission()))
    }

    pub fn is_readable(&self) -> bool {
        common::perm::is_readable(i32::from(self.runtime.broker_permission()))
    }
}

impl StoreFacts for BrokerContext {
    fn max_message_size(&self) -> u64 {
        self.config.store.max_message_size.as_u64()
    }

    fn disk(&self) -> store::StoreStats {
        self.store.stats()
    }
}
