//! Plugins in the broker: loading the `[plugins]` section and resolving the
//! `[[broker.plugin_binding]]` entries (and `PLUGIN:<name>` subscriptions) to
//! plugin handles.
//!
//! Where each kind is called:
//! * filters — on pull ([`crate::processor::pull`]), after the built-in TAG/SQL92
//!   stage, on the found batch;
//! * queue selectors — on send ([`crate::processor::send`]): the broker picks the
//!   queue and the response names it;
//! * transaction check-back handlers — in the check-back round
//!   ([`crate::transaction`]), before asking the producer.
//!
//! A plugin that cannot be loaded (missing or corrupt file, wrong ABI, refused
//! native library) does not stop the broker: it is logged, shown in the runtime
//! info (`plugin.<name>.*`), and its bindings act as if every call failed, so the
//! binding's failure policy decides (a filter pauses delivery by default, so
//! nothing is skipped; a selector leaves the client's queue; a check-back handler
//! leaves the question to the producer).

use std::collections::{BTreeMap, HashMap};

use config::{PluginBinding, PluginsConfig};
use plugin_api::{FailurePolicy, PluginKind};
use plugin_host::{FilterPlugin, PluginRegistry, QueueSelectorPlugin, TxnCheckPlugin};

/// A filter as the pull path uses it: the plugin, or why it is not there, plus
/// the policy that applies when it cannot decide.
#[derive(Clone)]
pub struct BoundFilter {
    pub name: String,
    pub plugin: Result<FilterPlugin, String>,
    pub policy: FailurePolicy,
}

/// The broker's loaded plugins and bindings.
#[derive(Default)]
pub struct BrokerPlugins {
    registry: Option<PluginRegistry>,
    /// Declared plugins: kind and effective policy.
    declared: HashMap<String, (PluginKind, FailurePolicy)>,
    /// Plugins that failed to load, with the reason.
    unavailable: BTreeMap<String, String>,
    /// (topic, group) → plugin; either may be `*`.
    filters: HashMap<(String, String), String>,
    selectors: HashMap<String, String>,
    txn_checks: HashMap<String, String>,
}

const ANY: &str = "*";

impl BrokerPlugins {
    /// Loads every declared plugin; failures are logged and remembered, never fatal.
    /// `bindings` must have passed `BrokerFile::validate`.
    pub fn load(config: &PluginsConfig, bindings: &[PluginBinding]) -> Self {
        let mut this = BrokerPlugins::default();
        for p in &config.plugins {
            this.declared.insert(p.name.clone(), (p.kind, p.policy()));
        }
        for b in bindings {
            let Some((kind, _)) = this.declared.get(&b.plugin) else { continue };
            let table = match kind {
                PluginKind::Filter => {
                    let group = b.group.clone().unwrap_or_else(|| ANY.to_owned());
                    this.filters.insert((b.topic.clone(), group), b.plugin.clone());
                    continue;
                }
                PluginKind::QueueSelector => &mut this.selectors,
                PluginKind::TxnCheck => &mut this.txn_checks,
                _ => continue,
            };
            table.insert(b.topic.clone(), b.plugin.clone());
        }
        if config.plugins.is_empty() {
            return this;
        }
        let engine = PluginsConfig { plugins: Vec::new(), ..config.clone() };
        let registry = match PluginRegistry::new(engine) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "plugin host could not start; every plugin is unavailable");
                for p in &config.plugins {
                    this.unavailable.insert(p.name.clone(), e.to_string());
                }
                return this;
            }
        };
        for p in &config.plugins {
            if let Err(e) = registry.load(p.clone()) {
                tracing::error!(plugin = %p.name, path = %p.path.display(), error = %e,
                    "plugin could not be loaded; its bindings apply their failure policy");
                this.unavailable.insert(p.name.clone(), e.to_string());
            }
        }
        this.registry = Some(registry);
        this
    }

    /// Whether any plugin is declared.
    pub fn is_empty(&self) -> bool {
        self.declared.is_empty()
    }

    /// The filter a `PLUGIN:<name>` subscription names.
    ///
    /// # Errors
    /// The name is not a declared filter plugin (the subscription cannot be served).
    pub fn filter_named(&self, name: &str) -> Result<BoundFilter, String> {
        match self.declared.get(name) {
            Some((PluginKind::Filter, policy)) => Ok(self.bound_filter(name, *policy)),
            Some((kind, _)) => Err(format!("plugin `{name}` is a {kind} plugin, not a filter")),
            None => Err(format!("filter plugin `{name}` is not declared on this broker")),
        }
    }

    /// The filter bound to `topic` + `group`: exact match first, then `*` for the
    /// group, then for the topic, then both.
    pub fn filter_for(&self, topic: &str, group: &str) -> Option<BoundFilter> {
        let candidates = [(topic, group), (topic, ANY), (ANY, group), (ANY, ANY)];
        let name = candidates.iter().find_map(|(t, g)| self.filters.get(&((*t).to_owned(), (*g).to_owned())))?;
        let (_, policy) = self.declared.get(name)?;
        Some(self.bound_filter(name, *policy))
    }

    fn bound_filter(&self, name: &str, policy: FailurePolicy) -> BoundFilter {
        let plugin = match (&self.registry, self.unavailable.get(name)) {
            (_, Some(why)) => Err(why.clone()),
            (Some(r), None) => r.filter(name).map_err(|e| e.to_string()),
            (None, None) => Err("plugin host not started".to_owned()),
        };
        BoundFilter { name: name.to_owned(), plugin, policy }
    }

    /// The server-side queue selector of `topic`, if one is bound and loaded.
    pub fn selector_for(&self, topic: &str) -> Option<QueueSelectorPlugin> {
        let name = self.selectors.get(topic).or_else(|| self.selectors.get(ANY))?;
        self.registry.as_ref()?.queue_selector(name).ok()
    }

    /// The check-back handler of `topic` (the half message's real topic), if one is
    /// bound and loaded.
    pub fn txn_check_for(&self, topic: &str) -> Option<TxnCheckPlugin> {
        let name = self.txn_checks.get(topic).or_else(|| self.txn_checks.get(ANY))?;
        self.registry.as_ref()?.txn_check(name).ok()
    }

    /// The loaded plugins' state and counters.
    pub fn status(&self) -> Vec<plugin_host::PluginStatus> {
        self.registry.as_ref().map(|r| r.status()).unwrap_or_default()
    }

    /// `plugin.<name>.<field>` entries for GET_BROKER_RUNTIME_INFO.
    pub fn runtime_info(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(r) = &self.registry {
            for s in r.status() {
                let key = |f: &str| format!("plugin.{}.{f}", s.name);
                out.push((key("state"), "loaded".to_owned()));
                out.push((key("kind"), s.kind.to_string()));
                out.push((key("runtime"), s.runtime.to_string()));
                out.push((key("generation"), s.generation.to_string()));
                out.push((key("manifest"), s.manifest.to_string()));
                // The message fields its frames carry (all but the body unless declared).
                out.push((key("fields"), s.manifest.message_fields().to_string()));
                out.push((key("breaker"), s.breaker.as_str().to_owned()));
                out.push((key("calls"), s.stats.calls.to_string()));
                out.push((key("records"), s.stats.records.to_string()));
                out.push((key("errors"), s.stats.total_errors().to_string()));
                out.push((key("fallbacks"), s.stats.fallbacks.to_string()));
                if let Some(e) = &s.last_error {
                    out.push((key("lastError"), e.clone()));
                }
                if let Some(e) = &s.last_reload_error {
                    out.push((key("lastReloadError"), e.clone()));
                }
            }
        }
        for (name, why) in &self.unavailable {
            out.push((format!("plugin.{name}.state"), "unavailable".to_owned()));
            out.push((format!("plugin.{name}.lastError"), why.clone()));
        }
        out
    }
}
