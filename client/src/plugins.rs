//! Queue selectors and allocation strategies implemented as plugins (WASM, Lua or
//! native, loaded by [`plugin_host`]).
//!
//! * [`PluginQueueSelector`] is a [`QueueSelector`] for
//!   [`Producer::send_with_selector`](crate::Producer::send_with_selector);
//! * [`PluginAllocateStrategy`] is an [`AllocateStrategy`] for
//!   [`PushConsumerBuilder::allocate_strategy`](crate::consumer::PushConsumerBuilder::allocate_strategy)
//!   and the pull consumers;
//! * [`ClientPlugins`] loads the `[plugins]` section of `client.toml`
//!   ([`config::ClientFile::plugins`]) and hands out both.
//!
//! ```no_run
//! # async fn demo(file: config::ClientFile, producer: client::Producer) -> client::Result<()> {
//! use std::sync::Arc;
//! use client::plugins::ClientPlugins;
//!
//! let plugins = ClientPlugins::from_config(&file.plugins)?;
//! let selector = plugins.queue_selector("order-selector")?;
//! let msg = client::Message::new("Orders", "paid").with_property("ORDER_ID", "42");
//! producer.send_with_selector(msg, &selector).await?;
//!
//! let builder = client::consumer::PushConsumer::builder("OrderGroup")
//!     .allocate_strategy(Arc::new(plugins.allocation("zone-aware")?));
//! # drop(builder);
//! # Ok(()) }
//! ```
//!
//! Lua and WASM plugins are hot-reloaded when their file changes, as long as the
//! registry lives: every adapter handed out by [`ClientPlugins`] keeps it alive, so the
//! reload keeps working after the `ClientPlugins` value itself is dropped.
//!
//! What the plugins see:
//! - selectors: the topic's writable queues in route order (`perm` = writable, zone
//!   empty), and the message's topic, tags, keys, encoded properties, body size and body
//!   (for plugins that ask for it), plus the argument set with
//!   [`PluginQueueSelector::with_arg`]. Born time and offsets are zero (not known yet);
//! - allocation: group, asking client, the topic's readable queues (`perm` = readable,
//!   zone = the broker's `zoneName` when its route names one) and the group's client
//!   ids (zone = the asking client's `ClientConfig::unit_name`, and for the others the
//!   unit name in their id, `ip@instance@unit`), both sorted as [`AllocateStrategy`]
//!   requires.
//!
//! Failures never panic and never make a send or a rebalance stall:
//! - a selector call that fails goes to the plugin's failure policy. `builtin` routes
//!   the message with RocketMQ's `SelectMessageQueueByHash` (argument) or round robin.
//!   `reject` fails the send through [`QueueSelector::try_select`]; only a caller of the
//!   infallible [`QueueSelector::select`] gets the built-in choice instead (it cannot
//!   report an error), counted in [`PluginQueueSelector::fallbacks`];
//! - an allocation call that fails gives `AllocateMessageQueueAveragely` (`builtin`) or
//!   the member's previous assignment (`keep_previous`; averagely when there is none).
//!
//! Errors are logged at `warn` when a plugin starts failing or its error changes (at
//! most once per second), and at `info` when it answers again; `plugin-host` logs
//! every failed call on its own, rate-limited, and counts it in the plugin's status.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plugin_api::builtin::HashOrRoundRobin;
use plugin_api::{AllocateInput, ClientView, MessageView, QueueView, SelectContext, PERM_READ, PERM_WRITE};
use tracing::{info, warn};

use common::route::MessageQueue;
use common::Message;

use crate::consumer::rebalance::{client_zone, AllocateContext};
use crate::consumer::AllocateStrategy;
use crate::error::{Error, Result};
use crate::producer::QueueSelector;

pub use plugin_api::{FailurePolicy, PluginKind, Runtime};
pub use plugin_host::{
    AllocationPlugin, PluginConfig, PluginRegistry, PluginStatus, PluginsConfig, QueueSelectorPlugin, StatsSnapshot,
};

/// The plugins of a client application: a [`PluginRegistry`] built from the
/// `[plugins]` section of `client.toml`, handing out selector and allocation
/// adapters. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClientPlugins {
    registry: PluginRegistry,
}

impl ClientPlugins {
    /// Validates `config` and loads every declared plugin (fail fast: a missing or
    /// broken plugin is an error here, not at the first send).
    ///
    /// # Errors
    /// [`Error::PluginHost`]: invalid settings or a plugin that does not load.
    pub fn from_config(config: &PluginsConfig) -> Result<ClientPlugins> {
        Ok(ClientPlugins { registry: PluginRegistry::new(config.clone())? })
    }

    /// Wraps a registry built elsewhere.
    pub fn new(registry: PluginRegistry) -> ClientPlugins {
        ClientPlugins { registry }
    }

    /// The registry: status, counters, on-demand reloads.
    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }

    /// The queue-selector plugin `name`, as a [`QueueSelector`].
    ///
    /// # Errors
    /// [`Error::PluginHost`]: no plugin of that name, or not a queue selector.
    pub fn queue_selector(&self, name: &str) -> Result<PluginQueueSelector> {
        let mut s = PluginQueueSelector::new(self.registry.queue_selector(name)?);
        s.registry = Some(self.registry.clone());
        Ok(s)
    }

    /// The allocation plugin `name`, as an [`AllocateStrategy`].
    ///
    /// # Errors
    /// [`Error::PluginHost`]: no plugin of that name, or not an allocation strategy.
    pub fn allocation(&self, name: &str) -> Result<PluginAllocateStrategy> {
        let mut s = PluginAllocateStrategy::new(self.registry.allocation(name)?);
        s.registry = Some(self.registry.clone());
        Ok(s)
    }
}

// ------------------------------------------------------------------------ error log

/// Logs a plugin's failures when they start or change (at most once per second) and
/// its recovery, instead of once per call.
#[derive(Default)]
struct FailureLog {
    /// Fast path: nothing to do on success while the plugin is healthy.
    failing: AtomicBool,
    state: Mutex<FailureState>,
}

#[derive(Default)]
struct FailureState {
    last_error: Option<String>,
    last_log: Option<Instant>,
    suppressed: u64,
}

const LOG_INTERVAL: Duration = Duration::from_secs(1);

impl FailureLog {
    fn failed(&self, plugin: &str, error: &str, fallback: &str) {
        let mut s = self.state.lock();
        let first = !self.failing.swap(true, Ordering::Relaxed);
        let changed = s.last_error.as_deref() != Some(error);
        let quiet = s.last_log.is_none_or(|t| t.elapsed() >= LOG_INTERVAL);
        if first || (changed && quiet) {
            warn!(
                plugin,
                error,
                fallback,
                suppressed = s.suppressed,
                "client plugin failed; its failure policy answered"
            );
            s.last_log = Some(Instant::now());
            s.suppressed = 0;
            s.last_error = Some(error.to_owned());
        } else {
            s.suppressed += 1;
        }
    }

    fn succeeded(&self, plugin: &str) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.state.lock();
        if self.failing.swap(false, Ordering::Relaxed) {
            info!(plugin, suppressed = s.suppressed, "client plugin answers again");
            *s = FailureState::default();
        }
    }
}

fn queue_id(mq: &MessageQueue) -> u32 {
    u32::try_from(mq.queue_id).unwrap_or(0)
}

// ------------------------------------------------------------------------- selector

/// A queue-selector plugin as a [`QueueSelector`].
///
/// The index the plugin returns is an index into the queues
/// [`Producer::send_with_selector`](crate::Producer::send_with_selector) offers (the
/// topic's writable queues in route order); Lua scripts answer 1-based indices, which
/// the host converts. Cheap to clone; clones share the counters.
#[derive(Clone)]
pub struct PluginQueueSelector {
    plugin: QueueSelectorPlugin,
    arg: Arc<[u8]>,
    shared: Arc<SelectorShared>,
    /// Keeps the file watcher (hot reload) alive while the selector is in use.
    registry: Option<PluginRegistry>,
}

#[derive(Default)]
struct SelectorShared {
    /// Used when `select` (which cannot fail) meets a `reject` error.
    builtin: HashOrRoundRobin,
    fallbacks: AtomicU64,
    log: FailureLog,
}

impl std::fmt::Debug for PluginQueueSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginQueueSelector")
            .field("plugin", &self.plugin.name())
            .field("arg", &String::from_utf8_lossy(&self.arg))
            .finish_non_exhaustive()
    }
}

impl PluginQueueSelector {
    /// Wraps a selector handle from a [`PluginRegistry`]. Keep the registry alive for
    /// hot reload ([`ClientPlugins::queue_selector`] does).
    pub fn new(plugin: QueueSelectorPlugin) -> PluginQueueSelector {
        PluginQueueSelector { plugin, arg: Arc::from(&[][..]), shared: Arc::default(), registry: None }
    }

    /// The same selector with the send argument `arg` (RocketMQ's
    /// `send(msg, selector, arg)`, for example an order id): plugins read it as
    /// `msg.arg`, and the built-in fallback hashes it so equal arguments keep sharing a
    /// queue.
    pub fn with_arg(&self, arg: impl AsRef<[u8]>) -> PluginQueueSelector {
        PluginQueueSelector { arg: Arc::from(arg.as_ref()), ..self.clone() }
    }

    /// The plugin's registry name.
    pub fn name(&self) -> &str {
        self.plugin.name()
    }

    /// The plugin handle (status, counters, policy).
    pub fn plugin(&self) -> &QueueSelectorPlugin {
        &self.plugin
    }

    /// Messages this adapter routed itself because the plugin failed under policy
    /// `reject` and the caller used the infallible [`QueueSelector::select`]. (Fallbacks
    /// under policy `builtin` are counted in the plugin's own stats.)
    pub fn fallbacks(&self) -> u64 {
        self.shared.fallbacks.load(Ordering::Relaxed)
    }

    /// Runs the plugin and its failure policy. A `reject` error is returned when
    /// `fallback` is false, and answered by the built-in selector when it is true.
    fn route(&self, queues: &[MessageQueue], msg: &Message, fallback: bool) -> Result<usize> {
        if queues.is_empty() {
            return Ok(0);
        }
        let views: Vec<QueueView<'_>> = queues
            .iter()
            .map(|q| QueueView { broker_name: &q.broker_name, queue_id: queue_id(q), perm: PERM_WRITE, zone: "" })
            .collect();
        let properties = msg.properties.encode();
        let view = MessageView {
            topic: &msg.topic,
            tags: msg.properties.tags().unwrap_or(""),
            keys: msg.properties.get(common::properties::keys::KEYS).unwrap_or(""),
            properties: properties.as_bytes(),
            body: Some(&msg.body),
            body_size: u32::try_from(msg.body.len()).unwrap_or(u32::MAX),
            arg: &self.arg,
            ..MessageView::default()
        };
        let ctx = SelectContext { topic: &msg.topic, queues: &views };
        let builtin = || (self.shared.builtin.select_one(&views, &view) as usize).min(queues.len() - 1);
        match self.plugin.select_one(&ctx, &view) {
            Ok(q) => {
                self.shared.log.succeeded(self.plugin.name());
                // The host checks the index; stay defensive all the same.
                Ok(if (q as usize) < queues.len() { q as usize } else { builtin() })
            }
            Err(e) if fallback => {
                self.shared.log.failed(self.plugin.name(), &e.to_string(), "built-in selector (select cannot fail)");
                self.shared.fallbacks.fetch_add(1, Ordering::Relaxed);
                Ok(builtin())
            }
            Err(e) => {
                self.shared.log.failed(self.plugin.name(), &e.to_string(), "the send fails (policy reject)");
                Err(Error::Plugin { plugin: self.plugin.name().to_owned(), source: e })
            }
        }
    }
}

impl QueueSelector for PluginQueueSelector {
    /// The plugin's choice; if the plugin fails under policy `reject`, the built-in
    /// choice (hash of the argument, else round robin), logged and counted in
    /// [`PluginQueueSelector::fallbacks`].
    fn select(&self, queues: &[MessageQueue], msg: &Message) -> usize {
        self.route(queues, msg, true).unwrap_or(0)
    }

    /// The plugin's choice; [`Error::Plugin`] if it failed under policy `reject`.
    fn try_select(&self, queues: &[MessageQueue], msg: &Message) -> Result<usize> {
        self.route(queues, msg, false)
    }
}

// ----------------------------------------------------------------------- allocation

/// An allocation-strategy plugin as an [`AllocateStrategy`].
///
/// The plugin answers indices into the queues it was given; they are mapped back to
/// the [`MessageQueue`]s. Like every strategy it must be a pure function of its inputs
/// so the members of a group partition the queues without talking to each other. The
/// one piece of state here is the member's last assignment per (group, client, topic),
/// consulted only when the plugin fails under policy `keep_previous`.
pub struct PluginAllocateStrategy {
    plugin: AllocationPlugin,
    previous: Mutex<HashMap<PreviousKey, Vec<MessageQueue>>>,
    fallbacks: AtomicU64,
    log: FailureLog,
    /// Keeps the file watcher (hot reload) alive while the strategy is in use.
    registry: Option<PluginRegistry>,
}

/// (group, client id, topic).
type PreviousKey = (String, String, String);

/// Bound on remembered assignments (a process has few consumers and topics).
const MAX_PREVIOUS: usize = 4096;

impl std::fmt::Debug for PluginAllocateStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginAllocateStrategy").field("plugin", &self.plugin.name()).finish_non_exhaustive()
    }
}

impl PluginAllocateStrategy {
    /// Wraps an allocation handle from a [`PluginRegistry`]. Keep the registry alive
    /// for hot reload ([`ClientPlugins::allocation`] does).
    pub fn new(plugin: AllocationPlugin) -> PluginAllocateStrategy {
        PluginAllocateStrategy {
            plugin,
            previous: Mutex::new(HashMap::new()),
            fallbacks: AtomicU64::new(0),
            log: FailureLog::default(),
            registry: None,
        }
    }

    /// The plugin handle (status, counters, policy).
    pub fn plugin(&self) -> &AllocationPlugin {
        &self.plugin
    }

    /// Allocations the failure policy answered instead of the plugin.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

impl AllocateStrategy for PluginAllocateStrategy {
    /// The plugin's registry name.
    fn name(&self) -> &str {
        self.plugin.name()
    }

    /// Without a context the zones come from the client ids alone ([`client_zone`]);
    /// brokers have none.
    fn allocate(
        &self,
        group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Vec<MessageQueue> {
        let no_zones = std::collections::BTreeMap::new();
        self.run(&AllocateContext {
            group,
            current_cid,
            current_zone: client_zone(current_cid),
            mq_all,
            cid_all,
            broker_zones: &no_zones,
        })
    }

    /// Never refuses: a failing plugin is answered by its failure policy.
    fn try_allocate(&self, ctx: &AllocateContext<'_>) -> Result<Vec<MessageQueue>> {
        Ok(self.run(ctx))
    }
}

impl PluginAllocateStrategy {
    fn run(&self, ctx: &AllocateContext<'_>) -> Vec<MessageQueue> {
        let AllocateContext { group, current_cid, mq_all, cid_all, .. } = *ctx;
        if mq_all.is_empty() || !cid_all.iter().any(|c| c == current_cid) {
            return Vec::new();
        }
        let queues: Vec<QueueView<'_>> = mq_all
            .iter()
            .map(|q| QueueView {
                broker_name: &q.broker_name,
                queue_id: queue_id(q),
                perm: PERM_READ,
                zone: ctx.broker_zone(&q.broker_name),
            })
            .collect();
        let clients: Vec<ClientView<'_>> =
            cid_all.iter().map(|c| ClientView { client_id: c, zone: ctx.client_zone(c) }).collect();
        let input = AllocateInput { group, current_client: current_cid, queues: &queues, clients: &clients };
        let key: PreviousKey = (group.to_owned(), current_cid.to_owned(), mq_all[0].topic.clone());
        let previous: Option<Vec<u32>> = self
            .previous
            .lock()
            .get(&key)
            .map(|prev| prev.iter().filter_map(|p| mq_all.iter().position(|q| q == p)).map(|i| i as u32).collect());
        let mut out = Vec::new();
        let report = self.plugin.allocate_with_policy(&input, previous.as_deref(), &mut out);
        match &report.error {
            Some(e) => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                let fallback = match (self.plugin.policy(), &previous) {
                    (FailurePolicy::KeepPrevious, Some(_)) => "previous assignment",
                    _ => "AllocateMessageQueueAveragely",
                };
                self.log.failed(self.plugin.name(), &e.to_string(), fallback);
            }
            None => self.log.succeeded(self.plugin.name()),
        }
        let mut mine: Vec<MessageQueue> = Vec::with_capacity(out.len());
        for i in out {
            if let Some(q) = mq_all.get(i as usize) {
                if !mine.contains(q) {
                    mine.push(q.clone());
                }
            }
        }
        let mut prev = self.previous.lock();
        if prev.len() >= MAX_PREVIOUS && !prev.contains_key(&key) {
            prev.clear();
        }
        prev.insert(key, mine.clone());
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::Path;

    fn registry(dir: &Path, decls: &[(&str, PluginKind, &str, Option<FailurePolicy>)]) -> ClientPlugins {
        let mut config = PluginsConfig { watch: false, ..PluginsConfig::default() };
        for (name, kind, script, policy) in decls {
            let path = dir.join(format!("{name}.lua"));
            std::fs::write(&path, script).unwrap();
            let mut decl = PluginConfig::new(*name, *kind, Runtime::Lua, path);
            decl.failure_policy = *policy;
            // Generous: debug builds on a loaded machine.
            decl.limits.deadline = Some(Duration::from_secs(1));
            config.plugins.push(decl);
        }
        ClientPlugins::from_config(&config).unwrap()
    }

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n).map(|i| MessageQueue::new("T", "broker-a", i)).collect()
    }

    /// Routes by what the message carries, so every field the adapter fills is used.
    const SELECTOR: &str = r#"
        function select(msg, queues)
          if msg.arg ~= "" then return tonumber(msg.arg) end
          if msg.props["ROUTE"] ~= nil then return tonumber(msg.props["ROUTE"]) end
          if msg.tags == "last" then return #queues end
          if msg.keys == "k1 k2" then return 2 end
          if msg.topic ~= "T" or queues[1].broker_name ~= "broker-a" or not queues[1].writable then
            error("unexpected input")
          end
          if msg.body_size == 3 then return 1 end
          return nil
        end
    "#;

    #[test]
    fn selector_sees_the_message_and_answers_zero_based_indices() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = registry(dir.path(), &[("sel", PluginKind::QueueSelector, SELECTOR, None)]);
        let s = plugins.queue_selector("sel").unwrap();
        assert_eq!(s.name(), "sel");
        let qs = queues(4);
        assert_eq!(s.select(&qs, &Message::new("T", "abc")), 0);
        assert_eq!(s.select(&qs, &Message::new("T", "x").with_tags("last")), 3);
        assert_eq!(s.select(&qs, &Message::new("T", "x").with_keys(["k1", "k2"])), 1);
        assert_eq!(s.select(&qs, &Message::new("T", "x").with_property("ROUTE", "3")), 2);
        assert_eq!(s.with_arg("4").select(&qs, &Message::new("T", "x")), 3);
        assert_eq!(s.try_select(&qs, &Message::new("T", "x").with_tags("last")).unwrap(), 3);
        assert_eq!(plugins.registry().plugin_status("sel").unwrap().stats.total_errors(), 0);
        // An empty queue list is not the plugin's problem (and must not panic).
        assert_eq!(s.select(&[], &Message::new("T", "abc")), 0);
    }

    #[test]
    fn selector_failures_follow_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = registry(
            dir.path(),
            &[
                ("builtin", PluginKind::QueueSelector, SELECTOR, None),
                ("strict", PluginKind::QueueSelector, SELECTOR, Some(FailurePolicy::Reject)),
            ],
        );
        let qs = queues(4);
        // `nil` (no choice): round robin covers every queue; an argument is hashed
        // like SelectMessageQueueByHash.
        let builtin = plugins.queue_selector("builtin").unwrap();
        let picked: std::collections::BTreeSet<usize> =
            (0..8).map(|_| builtin.try_select(&qs, &Message::new("T", "no route")).unwrap()).collect();
        assert_eq!(picked.len(), 4, "round robin over every queue, got {picked:?}");
        let out_of_range = builtin.with_arg("order-7");
        let want = plugin_api::builtin::select_by_hash(b"order-7", 4) as usize;
        // "order-7" is not a number: tonumber gives nil, the built-in hashes the argument.
        assert_eq!(out_of_range.try_select(&qs, &Message::new("T", "x")).unwrap(), want);
        assert_eq!(builtin.fallbacks(), 0);

        // `reject`: the send fails; the infallible `select` falls back and counts.
        let strict = plugins.queue_selector("strict").unwrap();
        let err = strict.try_select(&qs, &Message::new("T", "no route")).unwrap_err();
        assert!(matches!(&err, Error::Plugin { plugin, .. } if plugin == "strict"), "{err}");
        let bad_topic = Message::new("Other", "no route");
        assert!(strict.try_select(&qs, &bad_topic).is_err());
        let i = strict.select(&qs, &bad_topic);
        assert!(i < 4);
        assert_eq!(strict.fallbacks(), 1);
        assert_eq!(strict.with_arg("order-7").select(&qs, &bad_topic), want);
        assert_eq!(strict.fallbacks(), 2);
        // Out of range (5 of 4 queues) is a bad output, not a panic.
        assert!(strict.with_arg("5").try_select(&qs, &Message::new("T", "x")).is_err());
        assert!(plugins.registry().plugin_status("strict").unwrap().stats.total_errors() >= 3);
    }

    #[test]
    fn selector_follows_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = registry(
            dir.path(),
            &[("sel", PluginKind::QueueSelector, "function select(msg, queues) return 1 end", None)],
        );
        let s = plugins.queue_selector("sel").unwrap();
        let qs = queues(3);
        assert_eq!(s.select(&qs, &Message::new("T", "x")), 0);
        std::fs::write(dir.path().join("sel.lua"), "function select(msg, queues) return #queues end").unwrap();
        plugins.registry().reload("sel").unwrap();
        assert_eq!(s.select(&qs, &Message::new("T", "x")), 2);
        // A broken edit keeps the previous version serving.
        std::fs::write(dir.path().join("sel.lua"), "function select(msg, queues) return").unwrap();
        assert!(plugins.registry().reload("sel").is_err());
        assert_eq!(s.select(&qs, &Message::new("T", "x")), 2);
    }

    /// Queue with id q belongs to the member at sorted index (q + 1) mod members; the
    /// script refuses to work for exactly three members.
    const ALLOCATION: &str = r#"
        function allocate(ctx)
          if #ctx.clients == 3 then error("three is a crowd") end
          local me = ctx.current_index
          local mine = {}
          for i, q in ipairs(ctx.queues) do
            if (q.queue_id + 1) % #ctx.clients == me - 1 then table.insert(mine, i) end
          end
          return mine
        end
    "#;

    fn ids(qs: &[MessageQueue]) -> Vec<i32> {
        qs.iter().map(|q| q.queue_id).collect()
    }

    #[test]
    fn allocation_maps_indices_back_to_queues() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = registry(dir.path(), &[("odd-even", PluginKind::Allocation, ALLOCATION, None)]);
        let s = plugins.allocation("odd-even").unwrap();
        assert_eq!(s.name(), "odd-even");
        let mqs = queues(8);
        let cids = vec!["10.0.0.1@a".to_owned(), "10.0.0.1@b".to_owned()];
        assert_eq!(ids(&s.allocate("G", &cids[0], &mqs, &cids)), [1, 3, 5, 7]);
        assert_eq!(ids(&s.allocate("G", &cids[1], &mqs, &cids)), [0, 2, 4, 6]);
        assert_eq!(ids(&s.allocate("G", &cids[0], &mqs, &cids[..1])), [0, 1, 2, 3, 4, 5, 6, 7]);
        // Not a member, no queues: nothing, without asking the plugin.
        assert!(s.allocate("G", "stranger", &mqs, &cids).is_empty());
        assert!(s.allocate("G", &cids[0], &[], &cids).is_empty());
        // Pure: same inputs, same answer.
        assert_eq!(s.allocate("G", &cids[1], &mqs, &cids), s.allocate("G", &cids[1], &mqs, &cids));
        assert_eq!(s.fallbacks(), 0);
    }

    /// Reads the queues of the zone of the asking client.
    const SAME_ZONE: &str = r#"
        function allocate(ctx)
          local my_zone = ctx.clients[ctx.current_index].zone
          local mine = {}
          for i, q in ipairs(ctx.queues) do
            if q.zone == my_zone then table.insert(mine, i) end
          end
          return mine
        end
    "#;

    #[test]
    fn allocation_sees_the_zones_of_brokers_and_clients() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = registry(dir.path(), &[("same-zone", PluginKind::Allocation, SAME_ZONE, None)]);
        let s = plugins.allocation("same-zone").unwrap();
        let mqs: Vec<MessageQueue> =
            ["broker-a", "broker-b"].iter().flat_map(|b| (0..2).map(move |i| MessageQueue::new("T", *b, i))).collect();
        let cids = vec!["10.0.0.1@a@az1".to_owned(), "10.0.0.2@b@az2".to_owned()];
        let zones: std::collections::BTreeMap<String, String> =
            [("broker-a".to_owned(), "az1".to_owned()), ("broker-b".to_owned(), "az2".to_owned())].into();
        let ctx = |me: &'static str, my_zone: &'static str| AllocateContext {
            group: "G",
            current_cid: me,
            current_zone: my_zone,
            mq_all: &mqs,
            cid_all: &cids,
            broker_zones: &zones,
        };
        let names = |qs: Vec<MessageQueue>| qs.into_iter().map(|q| q.to_string()).collect::<Vec<_>>();
        assert_eq!(names(s.try_allocate(&ctx("10.0.0.1@a@az1", "az1")).unwrap()), ["T@broker-a#0", "T@broker-a#1"]);
        assert_eq!(names(s.try_allocate(&ctx("10.0.0.2@b@az2", "az2")).unwrap()), ["T@broker-b#0", "T@broker-b#1"]);
        // The configured zone is what the plugin sees for the asking client.
        assert_eq!(names(s.try_allocate(&ctx("10.0.0.1@a@az1", "az2")).unwrap()), ["T@broker-b#0", "T@broker-b#1"]);
        // Without a context: client zones from the ids, brokers without zones.
        assert!(s.allocate("G", &cids[0], &mqs, &cids).is_empty());
        assert_eq!(s.fallbacks(), 0);
    }

    #[test]
    fn allocation_failures_follow_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = registry(
            dir.path(),
            &[
                ("averagely", PluginKind::Allocation, ALLOCATION, None),
                ("sticky", PluginKind::Allocation, ALLOCATION, Some(FailurePolicy::KeepPrevious)),
            ],
        );
        let mqs = queues(6);
        let two = vec!["a".to_owned(), "b".to_owned()];
        let three = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];

        let averagely = plugins.allocation("averagely").unwrap();
        assert_eq!(ids(&averagely.allocate("G", "b", &mqs, &two)), [0, 2, 4]);
        assert_eq!(ids(&averagely.allocate("G", "b", &mqs, &three)), [2, 3]);
        assert_eq!(averagely.fallbacks(), 1);

        let sticky = plugins.allocation("sticky").unwrap();
        // No previous assignment yet: averagely.
        assert_eq!(ids(&sticky.allocate("G", "a", &mqs, &three)), [0, 1]);
        assert_eq!(ids(&sticky.allocate("G", "a", &mqs, &two)), [1, 3, 5]);
        assert_eq!(ids(&sticky.allocate("G", "a", &mqs, &three)), [1, 3, 5]);
        // Queues that disappeared are dropped from the kept assignment.
        assert_eq!(ids(&sticky.allocate("G", "a", &mqs[..4], &three)), [1, 3]);
        // Kept per client and group.
        assert_eq!(ids(&sticky.allocate("G2", "a", &mqs, &three)), [0, 1]);
        assert_eq!(sticky.fallbacks(), 4);
    }
}
