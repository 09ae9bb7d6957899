//! Plugins in the broker: loading the `[plugins]` section and resolving the
//! `[[broker.plugin_binding]]` entries (and `PLUGIN:<name>` subscriptions) to
//! plugin handles; and plugins deployed and bound while the broker runs
//! (FERROMQ_PLUGIN_* requests, `ferromq-admin plugin deploy/bind/...`).
//!
//! A deployed plugin lives under `<storeRoot>/plugins/<name>/` (`current.<ext>`, and
//! `previous.<ext>` for a rollback); `<storeRoot>/plugins/plugins.json` lists the
//! deployed plugins and the bindings made at run time, and is read at start-up after
//! the configuration, which wins: a name or binding the configuration declares is
//! never replaced by the stored one. Every change is checked before it is kept — a
//! new version is compiled and initialised by the plugin host, and a failed one
//! leaves the serving version in place — and written to `plugins.json` atomically.
//! Lookups read one snapshot of the tables (`ArcSwap`), so a change never blocks a
//! send or a pull.
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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use config::{PluginBinding, PluginConfig, PluginsConfig};
use plugin_api::{FailurePolicy, PluginKind, Runtime};
use plugin_host::{FilterPlugin, PluginRegistry, QueueSelectorPlugin, TxnCheckPlugin};
use remoting::body::plugin::{PluginBindingInfo, PluginInfo};

/// A filter as the pull path uses it: the plugin, or why it is not there, plus
/// the policy that applies when it cannot decide.
#[derive(Clone)]
pub struct BoundFilter {
    pub name: String,
    pub plugin: Result<FilterPlugin, String>,
    pub policy: FailurePolicy,
}

/// Where a declaration or binding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// broker.toml / broker.conf: fixed while the broker runs.
    Config,
    /// Deployed or bound at run time, kept in `plugins.json`.
    Runtime,
}

impl Source {
    fn as_str(self, plugin: bool) -> &'static str {
        match (self, plugin) {
            (Source::Config, _) => "config",
            (Source::Runtime, true) => "deployed",
            (Source::Runtime, false) => "runtime",
        }
    }
}

#[derive(Clone)]
struct Declared {
    kind: PluginKind,
    runtime: Runtime,
    policy: FailurePolicy,
    source: Source,
}

/// One consistent view of the plugins and bindings; replaced whole on a change.
#[derive(Default, Clone)]
struct Tables {
    registry: Option<PluginRegistry>,
    declared: HashMap<String, Declared>,
    /// Plugins that failed to load, with the reason.
    unavailable: BTreeMap<String, String>,
    /// (topic, group) → plugin; either may be `*`.
    filters: HashMap<(String, String), (String, Source)>,
    selectors: HashMap<String, (String, Source)>,
    txn_checks: HashMap<String, (String, Source)>,
}

/// `plugins.json`: what was deployed and bound at run time.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Stored {
    plugins: Vec<StoredPlugin>,
    bindings: Vec<PluginBinding>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredPlugin {
    name: String,
    kind: PluginKind,
    runtime: Runtime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_policy: Option<FailurePolicy>,
    /// Settings handed to its `init`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    config: BTreeMap<String, String>,
}

/// The broker's loaded plugins and bindings.
#[derive(Default)]
pub struct BrokerPlugins {
    tables: ArcSwap<Tables>,
    /// Serialises changes: one deploy, bind or removal at a time, each kept.
    change: Mutex<()>,
    /// The `[plugins]` engine settings (without declarations).
    engine: PluginsConfig,
    /// `<storeRoot>/plugins`; `None`: nothing can be deployed.
    dir: Option<PathBuf>,
}

const ANY: &str = "*";
const STORED: &str = "plugins.json";

/// Why a change was refused: the remark the requester reads.
pub type Refusal = String;

impl BrokerPlugins {
    /// Loads every declared plugin; failures are logged and remembered, never fatal.
    /// `bindings` must have passed `BrokerFile::validate`. Without `dir` nothing can
    /// be deployed at run time.
    pub fn load(config: &PluginsConfig, bindings: &[PluginBinding], dir: Option<PathBuf>) -> Self {
        let mut t = Tables::default();
        for p in &config.plugins {
            let d = Declared { kind: p.kind, runtime: p.runtime, policy: p.policy(), source: Source::Config };
            t.declared.insert(p.name.clone(), d);
        }
        for b in bindings {
            bind_into(&mut t, b, Source::Config);
        }
        let engine = PluginsConfig { plugins: Vec::new(), ..config.clone() };
        let stored = dir.as_deref().map(read_stored).unwrap_or_default();
        let this = BrokerPlugins { tables: ArcSwap::default(), change: Mutex::new(()), engine, dir };
        if !config.plugins.is_empty() || !stored.plugins.is_empty() {
            match PluginRegistry::new(this.engine.clone()) {
                Ok(r) => t.registry = Some(r),
                Err(e) => tracing::error!(error = %e, "plugin host could not start; every plugin is unavailable"),
            }
        }
        for p in &config.plugins {
            t.load(p.clone());
        }
        for p in &stored.plugins {
            if t.declared.contains_key(&p.name) {
                tracing::warn!(plugin = %p.name, "a deployed plugin has the name of a configured one; the configuration wins");
                continue;
            }
            let d = Declared {
                kind: p.kind,
                runtime: p.runtime,
                policy: p.failure_policy.unwrap_or(FailurePolicy::default_for(p.kind)),
                source: Source::Runtime,
            };
            t.declared.insert(p.name.clone(), d);
            let path = this.artifact(&p.name, p.runtime, "current");
            t.load(this.declaration(p, path));
        }
        for b in &stored.bindings {
            if t.binding_source(b).is_some() {
                tracing::warn!(plugin = %b.plugin, topic = %b.topic, "a stored binding conflicts with a configured one; the configuration wins");
            } else if t.declared.contains_key(&b.plugin) {
                bind_into(&mut t, b, Source::Runtime);
            }
        }
        this.tables.store(Arc::new(t));
        this
    }

    /// Whether any plugin is declared.
    pub fn is_empty(&self) -> bool {
        self.tables.load().declared.is_empty()
    }

    /// Whether `name` is a declared plugin (loaded or not).
    pub fn is_declared(&self, name: &str) -> bool {
        self.tables.load().declared.contains_key(name)
    }

    /// The filter a `PLUGIN:<name>` subscription names.
    ///
    /// # Errors
    /// The name is not a declared filter plugin (the subscription cannot be served).
    pub fn filter_named(&self, name: &str) -> Result<BoundFilter, String> {
        let t = self.tables.load();
        match t.declared.get(name) {
            Some(d) if d.kind == PluginKind::Filter => Ok(t.bound_filter(name, d.policy)),
            Some(d) => Err(format!("plugin `{name}` is a {} plugin, not a filter", d.kind)),
            None => Err(format!("filter plugin `{name}` is not declared on this broker")),
        }
    }

    /// The filter bound to `topic` + `group`: exact match first, then `*` for the
    /// group, then for the topic, then both.
    pub fn filter_for(&self, topic: &str, group: &str) -> Option<BoundFilter> {
        let t = self.tables.load();
        if t.filters.is_empty() {
            return None;
        }
        let candidates = [(topic, group), (topic, ANY), (ANY, group), (ANY, ANY)];
        let (name, _) = candidates.iter().find_map(|(tp, g)| t.filters.get(&((*tp).to_owned(), (*g).to_owned())))?;
        let d = t.declared.get(name)?;
        Some(t.bound_filter(name, d.policy))
    }

    /// The server-side queue selector of `topic`, if one is bound and loaded.
    pub fn selector_for(&self, topic: &str) -> Option<QueueSelectorPlugin> {
        let t = self.tables.load();
        if t.selectors.is_empty() {
            return None;
        }
        let (name, _) = t.selectors.get(topic).or_else(|| t.selectors.get(ANY))?;
        t.registry.as_ref()?.queue_selector(name).ok()
    }

    /// The check-back handler of `topic` (the half message's real topic), if one is
    /// bound and loaded.
    pub fn txn_check_for(&self, topic: &str) -> Option<TxnCheckPlugin> {
        let t = self.tables.load();
        let (name, _) = t.txn_checks.get(topic).or_else(|| t.txn_checks.get(ANY))?;
        t.registry.as_ref()?.txn_check(name).ok()
    }

    /// The loaded plugins' state and counters.
    pub fn status(&self) -> Vec<plugin_host::PluginStatus> {
        self.tables.load().registry.as_ref().map(|r| r.status()).unwrap_or_default()
    }

    /// Every declared plugin with its version, bindings and counters
    /// (FERROMQ_PLUGIN_LIST).
    pub fn list(&self) -> Vec<PluginInfo> {
        let t = self.tables.load();
        let mut names: Vec<&String> = t.declared.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let d = &t.declared[name];
                let mut info = PluginInfo {
                    name: name.clone(),
                    kind: d.kind.to_string(),
                    runtime: d.runtime.to_string(),
                    source: d.source.as_str(true).to_owned(),
                    bindings: t.bindings_of(name),
                    rollback_available: d.source == Source::Runtime
                        && self.artifact(name, d.runtime, "previous").is_some_and(|p| p.exists()),
                    ..PluginInfo::default()
                };
                match t.registry.as_ref().and_then(|r| r.plugin_status(name)) {
                    Some(s) => {
                        info.state = "loaded".to_owned();
                        info.version = s.manifest.to_string();
                        info.sha256 = s.sha256;
                        info.generation = s.generation;
                        info.calls = s.stats.calls;
                        info.errors = s.stats.total_errors();
                        info.timeouts = s.stats.errors_of(plugin_api::PluginErrorKind::Timeout);
                        info.fallbacks = s.stats.fallbacks;
                        info.p50_micros = s.stats.latency_quantile(0.5).as_micros() as u64;
                        info.p99_micros = s.stats.latency_quantile(0.99).as_micros() as u64;
                        info.breaker = s.breaker.as_str().to_owned();
                        info.last_error = s.last_error;
                        info.last_reload_error = s.last_reload_error;
                    }
                    None => {
                        info.state = "unavailable".to_owned();
                        info.last_error = t.unavailable.get(name).cloned();
                    }
                }
                info
            })
            .collect()
    }

    /// Deploys `bytes` as plugin `name`: a new plugin, or a new version of one
    /// deployed before (a hot reload). The version is compiled and initialised
    /// before it is kept; a refused one changes nothing. Answers the serving
    /// version's SHA-256 and generation.
    ///
    /// # Errors
    /// The remark: invalid declaration, a configured plugin's name, another kind,
    /// or why the plugin host refused the artifact.
    pub fn deploy(
        &self,
        name: &str,
        kind: PluginKind,
        runtime: Runtime,
        policy: Option<FailurePolicy>,
        config: BTreeMap<String, String>,
        bytes: &[u8],
    ) -> Result<(String, u64), Refusal> {
        let _one = self.change.lock();
        let dir = self.dir.as_ref().ok_or("this broker has no store directory to deploy plugins to")?;
        if runtime == Runtime::Native {
            return Err("native plugins are not deployed over the network: install the library on the broker's \
                        host and declare it in broker.toml"
                .to_owned());
        }
        let stored = StoredPlugin { name: name.to_owned(), kind, runtime, failure_policy: policy, config };
        let current = self.artifact(name, runtime, "current").ok_or("no store directory")?;
        let decl = self.declaration(&stored, Some(current.clone()));
        decl.validate().map_err(|e| e.to_string())?;
        let mut t = Tables::clone(&self.tables.load());
        if let Some(d) = t.declared.get(name) {
            if d.source == Source::Config {
                return Err(format!("plugin `{name}` is declared in the broker's configuration; change it there"));
            }
            if (d.kind, d.runtime) != (kind, runtime) {
                return Err(format!(
                    "plugin `{name}` is deployed as a {} {} plugin; remove it before deploying a {kind} {runtime} one",
                    d.runtime, d.kind
                ));
            }
        }
        let plugin_dir = dir.join(name);
        std::fs::create_dir_all(&plugin_dir).map_err(|e| format!("creating {}: {e}", plugin_dir.display()))?;
        let incoming = plugin_dir.join(format!("incoming.{}", extension(runtime)));
        write_synced(&incoming, bytes)?;
        let registry = match &t.registry {
            Some(r) => r.clone(),
            None => {
                let r = PluginRegistry::new(self.engine.clone()).map_err(|e| format!("plugin host: {e}"))?;
                t.registry = Some(r.clone());
                r
            }
        };
        if let Some(serving) = registry.plugin_status(name) {
            // A new version: swap the files, reload, and swap back if it is refused.
            let old = plugin_dir.join(format!("replaced.{}", extension(runtime)));
            rename(&current, &old)?;
            rename(&incoming, &current)?;
            let previous = read_stored(dir).plugins.into_iter().find(|p| p.name == name);
            let same_settings =
                previous.as_ref().is_some_and(|p| p.config == stored.config) && serving.policy == decl.policy();
            let reloaded = if same_settings {
                registry.reload(name).map_err(|e| e.to_string())
            } else {
                // New settings: a new declaration, or the old one back if refused.
                let _ = registry.unload(name);
                registry.load(decl).map_err(|e| {
                    if let Some(p) = &previous {
                        let _ = std::fs::copy(&old, &current);
                        let _ = registry.load(self.declaration(p, Some(current.clone())));
                    }
                    e.to_string()
                })
            };
            if let Err(e) = reloaded {
                let _ = std::fs::remove_file(&current);
                rename(&old, &current)?;
                return Err(format!("refused; the previous version keeps serving: {e}"));
            }
            rename(&old, &self.artifact(name, runtime, "previous").ok_or("no store directory")?)?;
        } else {
            rename(&incoming, &current)?;
            if let Err(e) = registry.load(decl) {
                let _ = std::fs::remove_dir_all(&plugin_dir);
                return Err(format!("refused: {e}"));
            }
        }
        let policy = policy.unwrap_or(FailurePolicy::default_for(kind));
        t.declared.insert(name.to_owned(), Declared { kind, runtime, policy, source: Source::Runtime });
        t.unavailable.remove(name);
        let serving = registry.plugin_status(name).map(|s| (s.sha256, s.generation)).unwrap_or_default();
        self.keep(t, Some(stored))?;
        tracing::info!(plugin = %name, sha256 = %serving.0, generation = serving.1, "plugin deployed");
        Ok(serving)
    }

    /// A deployed plugin's serving artifact with what deploying it again needs:
    /// (kind, runtime, failure policy, config, SHA-256, bytes) — what a slave copies.
    ///
    /// # Errors
    /// Not a deployed plugin, or its file cannot be read.
    #[allow(clippy::type_complexity)]
    pub fn artifact_of(
        &self,
        name: &str,
    ) -> Result<(PluginKind, Runtime, Option<FailurePolicy>, BTreeMap<String, String>, String, Vec<u8>), Refusal> {
        let t = self.tables.load();
        let d = self.deployed(&t, name)?;
        let path = self.artifact(name, d.runtime, "current").ok_or("no store directory")?;
        let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let stored = self.dir.as_deref().map(read_stored).unwrap_or_default();
        let p = stored.plugins.into_iter().find(|p| p.name == name);
        let sha = t.registry.as_ref().and_then(|r| r.plugin_status(name)).map(|s| s.sha256).unwrap_or_default();
        let (policy, config) = p.map(|p| (p.failure_policy, p.config)).unwrap_or_default();
        Ok((d.kind, d.runtime, policy, config, sha, bytes))
    }

    /// Reloads a plugin from its file (a configured plugin's path, a deployed
    /// plugin's current version).
    ///
    /// # Errors
    /// Unknown or unloaded plugin, or why the new version was refused (the old one
    /// keeps serving).
    pub fn reload(&self, name: &str) -> Result<(String, u64), Refusal> {
        let _one = self.change.lock();
        let t = self.tables.load();
        let registry = t.registry.as_ref().ok_or_else(|| format!("no plugin named `{name}` is loaded"))?;
        registry.reload(name).map_err(|e| e.to_string())?;
        Ok(registry.plugin_status(name).map(|s| (s.sha256, s.generation)).unwrap_or_default())
    }

    /// Serves a deployed plugin's previous version again (the current one becomes
    /// the previous).
    ///
    /// # Errors
    /// Not a deployed plugin, no previous version, or the previous version was
    /// refused (the current one keeps serving).
    pub fn rollback(&self, name: &str) -> Result<(String, u64), Refusal> {
        let _one = self.change.lock();
        let t = self.tables.load();
        let d = self.deployed(&t, name)?;
        let (current, previous) = (
            self.artifact(name, d.runtime, "current").ok_or("no store directory")?,
            self.artifact(name, d.runtime, "previous").ok_or("no store directory")?,
        );
        if !previous.exists() {
            return Err(format!("plugin `{name}` has no previous version"));
        }
        let swap = previous.with_extension("swap");
        rename(&current, &swap)?;
        rename(&previous, &current)?;
        let registry = t.registry.as_ref().ok_or("plugin host not started")?;
        if let Err(e) = registry.reload(name) {
            rename(&current, &previous)?;
            rename(&swap, &current)?;
            return Err(format!("the previous version was refused; the current one keeps serving: {e}"));
        }
        rename(&swap, &previous)?;
        tracing::info!(plugin = %name, "plugin rolled back");
        Ok(registry.plugin_status(name).map(|s| (s.sha256, s.generation)).unwrap_or_default())
    }

    /// Removes a deployed plugin that nothing is bound to.
    ///
    /// # Errors
    /// Not a deployed plugin, or still bound.
    pub fn remove(&self, name: &str) -> Result<(), Refusal> {
        let _one = self.change.lock();
        let mut t = Tables::clone(&self.tables.load());
        self.deployed(&t, name)?;
        let bound = t.bindings_of(name);
        if let Some(b) = bound.first() {
            return Err(format!(
                "plugin `{name}` is still bound ({} binding(s), e.g. topic {} group {}); unbind it first",
                bound.len(),
                b.topic,
                b.group.as_deref().unwrap_or("-")
            ));
        }
        t.declared.remove(name);
        t.unavailable.remove(name);
        if let Some(r) = &t.registry {
            let _ = r.unload(name);
        }
        self.keep(t, None)?;
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir.join(name));
        }
        tracing::info!(plugin = %name, "plugin removed");
        Ok(())
    }

    /// Binds a declared plugin at run time: a filter to `topic` + `group`, a queue
    /// selector or check-back handler to `topic`. Replaces a runtime binding of the
    /// same place; a configured one stays.
    ///
    /// # Errors
    /// Unknown plugin, a kind that cannot be bound, a group given or missing, or the
    /// place is bound by the configuration.
    pub fn bind(&self, name: &str, topic: &str, group: Option<&str>) -> Result<(), Refusal> {
        let _one = self.change.lock();
        let mut t = Tables::clone(&self.tables.load());
        let b = t.checked_binding(name, topic, group)?;
        if t.binding_source(&b) == Some(Source::Config) {
            return Err(format!("topic {topic} is bound by the broker's configuration; change it there"));
        }
        bind_into(&mut t, &b, Source::Runtime);
        self.keep(t, None)?;
        tracing::info!(plugin = %name, topic, group, "plugin bound");
        Ok(())
    }

    /// Removes a runtime binding.
    ///
    /// # Errors
    /// No such runtime binding (a configured one is changed in the configuration).
    pub fn unbind(&self, name: &str, topic: &str, group: Option<&str>) -> Result<(), Refusal> {
        let _one = self.change.lock();
        let mut t = Tables::clone(&self.tables.load());
        let b = t.checked_binding(name, topic, group)?;
        match t.binding_source(&b) {
            Some(Source::Config) => {
                return Err("this binding is in the broker's configuration; change it there".to_owned())
            }
            None => return Err(format!("plugin `{name}` is not bound to topic {topic}")),
            Some(Source::Runtime) => {}
        }
        let bound_here = |v: &(String, Source)| v.0 == name;
        let removed = match t.declared[name].kind {
            PluginKind::Filter => {
                let key = (b.topic.clone(), b.group.clone().unwrap_or_else(|| ANY.to_owned()));
                t.filters.get(&key).is_some_and(bound_here).then(|| t.filters.remove(&key)).flatten()
            }
            PluginKind::QueueSelector => {
                t.selectors.get(topic).is_some_and(bound_here).then(|| t.selectors.remove(topic)).flatten()
            }
            _ => t.txn_checks.get(topic).is_some_and(bound_here).then(|| t.txn_checks.remove(topic)).flatten(),
        };
        if removed.is_none() {
            return Err(format!("topic {topic} is bound to another plugin"));
        }
        self.keep(t, None)?;
        tracing::info!(plugin = %name, topic, group, "plugin unbound");
        Ok(())
    }

    /// `plugin.<name>.<field>` entries for GET_BROKER_RUNTIME_INFO.
    pub fn runtime_info(&self) -> Vec<(String, String)> {
        let t = self.tables.load();
        let mut out = Vec::new();
        if let Some(r) = &t.registry {
            for s in r.status() {
                let key = |f: &str| format!("plugin.{}.{f}", s.name);
                out.push((key("state"), "loaded".to_owned()));
                out.push((key("kind"), s.kind.to_string()));
                out.push((key("runtime"), s.runtime.to_string()));
                out.push((key("generation"), s.generation.to_string()));
                out.push((key("manifest"), s.manifest.to_string()));
                out.push((key("sha256"), s.sha256.clone()));
                // The message fields its frames carry (all but the body unless declared).
                out.push((key("fields"), s.manifest.message_fields().to_string()));
                out.push((key("breaker"), s.breaker.as_str().to_owned()));
                out.push((key("calls"), s.stats.calls.to_string()));
                out.push((key("records"), s.stats.records.to_string()));
                out.push((key("errors"), s.stats.total_errors().to_string()));
                out.push((key("fallbacks"), s.stats.fallbacks.to_string()));
                out.push((key("timeouts"), s.stats.errors_of(plugin_api::PluginErrorKind::Timeout).to_string()));
                out.push((key("p50Micros"), s.stats.latency_quantile(0.5).as_micros().to_string()));
                out.push((key("p99Micros"), s.stats.latency_quantile(0.99).as_micros().to_string()));
                let bindings: Vec<String> = t
                    .bindings_of(&s.name)
                    .iter()
                    .map(|b| match &b.group {
                        Some(g) => format!("{}@{g}", b.topic),
                        None => b.topic.clone(),
                    })
                    .collect();
                out.push((key("bindings"), bindings.join(",")));
                if let Some(e) = &s.last_error {
                    out.push((key("lastError"), e.clone()));
                }
                if let Some(e) = &s.last_reload_error {
                    out.push((key("lastReloadError"), e.clone()));
                }
            }
        }
        for (name, why) in &t.unavailable {
            out.push((format!("plugin.{name}.state"), "unavailable".to_owned()));
            out.push((format!("plugin.{name}.lastError"), why.clone()));
        }
        out
    }

    fn deployed<'t>(&self, t: &'t Tables, name: &str) -> Result<&'t Declared, Refusal> {
        match t.declared.get(name) {
            Some(d) if d.source == Source::Runtime => Ok(d),
            Some(_) => Err(format!("plugin `{name}` is declared in the broker's configuration; change it there")),
            None => Err(format!("no plugin named `{name}` is deployed on this broker")),
        }
    }

    /// `<dir>/<name>/<version>.<ext>`.
    fn artifact(&self, name: &str, runtime: Runtime, version: &str) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(name).join(format!("{version}.{}", extension(runtime))))
    }

    fn declaration(&self, p: &StoredPlugin, path: Option<PathBuf>) -> PluginConfig {
        let mut decl = PluginConfig::new(&p.name, p.kind, p.runtime, path.unwrap_or_default());
        decl.failure_policy = p.failure_policy;
        decl.config = p.config.clone();
        // Versions arrive by deployment, never by a file changing underneath.
        decl.watch = Some(false);
        decl
    }

    /// Writes `plugins.json` for `t` (with `changed` replacing or adding its
    /// plugin's entry) and publishes `t`.
    fn keep(&self, t: Tables, changed: Option<StoredPlugin>) -> Result<(), Refusal> {
        let dir = self.dir.as_ref().ok_or("this broker has no store directory to keep plugins in")?;
        let mut stored = read_stored(dir);
        stored.plugins.retain(|p| t.declared.get(&p.name).is_some_and(|d| d.source == Source::Runtime));
        if let Some(c) = changed {
            stored.plugins.retain(|p| p.name != c.name);
            stored.plugins.push(c);
        }
        stored.bindings = t.runtime_bindings();
        let json = serde_json::to_vec_pretty(&stored).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let tmp = dir.join(format!("{STORED}.tmp"));
        write_synced(&tmp, &json)?;
        rename(&tmp, &dir.join(STORED))?;
        self.tables.store(Arc::new(t));
        Ok(())
    }
}

impl Tables {
    /// Loads one declaration into the registry, remembering a failure.
    fn load(&mut self, p: PluginConfig) {
        let Some(registry) = &self.registry else {
            self.unavailable.insert(p.name.clone(), "plugin host not started".to_owned());
            return;
        };
        if let Err(e) = registry.load(p.clone()) {
            tracing::error!(plugin = %p.name, path = %p.path.display(), error = %e,
                "plugin could not be loaded; its bindings apply their failure policy");
            self.unavailable.insert(p.name.clone(), e.to_string());
        }
    }

    fn bound_filter(&self, name: &str, policy: FailurePolicy) -> BoundFilter {
        let plugin = match (&self.registry, self.unavailable.get(name)) {
            (_, Some(why)) => Err(why.clone()),
            (Some(r), None) => r.filter(name).map_err(|e| e.to_string()),
            (None, None) => Err("plugin host not started".to_owned()),
        };
        BoundFilter { name: name.to_owned(), plugin, policy }
    }

    /// The binding a request describes, checked against the plugin's kind.
    fn checked_binding(&self, name: &str, topic: &str, group: Option<&str>) -> Result<PluginBinding, Refusal> {
        let d = self.declared.get(name).ok_or_else(|| format!("no plugin named `{name}` on this broker"))?;
        if topic.is_empty() {
            return Err("a binding needs a topic (or `*`)".to_owned());
        }
        match (d.kind, group) {
            (PluginKind::Filter, None) => Err("a filter is bound to a topic and a consumer group (or `*`)".to_owned()),
            (PluginKind::Filter, Some(_)) | (PluginKind::QueueSelector | PluginKind::TxnCheck, None) => {
                Ok(PluginBinding { plugin: name.to_owned(), topic: topic.to_owned(), group: group.map(str::to_owned) })
            }
            (PluginKind::QueueSelector | PluginKind::TxnCheck, Some(_)) => {
                Err(format!("a {} plugin is bound to a topic only, not to a group", d.kind))
            }
            (kind, _) => Err(format!("a {kind} plugin is not bound in the broker (consumers load it)")),
        }
    }

    /// Who binds the place `b` describes, if anyone.
    fn binding_source(&self, b: &PluginBinding) -> Option<Source> {
        let kind = self.declared.get(&b.plugin).map(|d| d.kind);
        match kind {
            Some(PluginKind::Filter) => {
                let group = b.group.clone().unwrap_or_else(|| ANY.to_owned());
                self.filters.get(&(b.topic.clone(), group)).map(|v| v.1)
            }
            Some(PluginKind::QueueSelector) => self.selectors.get(&b.topic).map(|v| v.1),
            Some(PluginKind::TxnCheck) => self.txn_checks.get(&b.topic).map(|v| v.1),
            _ => None,
        }
    }

    fn bindings_of(&self, name: &str) -> Vec<PluginBindingInfo> {
        let info = |topic: &str, group: Option<&str>, source: Source| PluginBindingInfo {
            topic: topic.to_owned(),
            group: group.map(str::to_owned),
            source: source.as_str(false).to_owned(),
        };
        let mut out: Vec<PluginBindingInfo> = self
            .filters
            .iter()
            .filter(|(_, v)| v.0 == name)
            .map(|((t, g), v)| info(t, Some(g), v.1))
            .chain(
                self.selectors
                    .iter()
                    .chain(&self.txn_checks)
                    .filter(|(_, v)| v.0 == name)
                    .map(|(t, v)| info(t, None, v.1)),
            )
            .collect();
        out.sort();
        out
    }

    fn runtime_bindings(&self) -> Vec<PluginBinding> {
        let b = |plugin: &str, topic: &str, group: Option<&str>| PluginBinding {
            plugin: plugin.to_owned(),
            topic: topic.to_owned(),
            group: group.map(str::to_owned),
        };
        let mut out: Vec<PluginBinding> = self
            .filters
            .iter()
            .filter(|(_, v)| v.1 == Source::Runtime)
            .map(|((t, g), v)| b(&v.0, t, Some(g)))
            .chain(
                self.selectors
                    .iter()
                    .chain(&self.txn_checks)
                    .filter(|(_, v)| v.1 == Source::Runtime)
                    .map(|(t, v)| b(&v.0, t, None)),
            )
            .collect();
        out.sort_by(|x, y| (&x.plugin, &x.topic, &x.group).cmp(&(&y.plugin, &y.topic, &y.group)));
        out
    }
}

/// Adds a binding of a declared plugin (others are ignored: the configuration's
/// validation reports them).
fn bind_into(t: &mut Tables, b: &PluginBinding, source: Source) {
    let Some(d) = t.declared.get(&b.plugin) else { return };
    let value = (b.plugin.clone(), source);
    match d.kind {
        PluginKind::Filter => {
            let group = b.group.clone().unwrap_or_else(|| ANY.to_owned());
            t.filters.insert((b.topic.clone(), group), value);
        }
        PluginKind::QueueSelector => {
            t.selectors.insert(b.topic.clone(), value);
        }
        PluginKind::TxnCheck => {
            t.txn_checks.insert(b.topic.clone(), value);
        }
        _ => {}
    }
}

fn extension(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Wasm => "wasm",
        Runtime::Lua => "lua",
        Runtime::Native => "so",
    }
}

fn read_stored(dir: &Path) -> Stored {
    let path = dir.join(STORED);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::error!(path = %path.display(), error = %e, "unreadable; no deployed plugin or runtime binding is loaded");
            Stored::default()
        }),
        Err(_) => Stored::default(),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Refusal> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| format!("writing {}: {e}", path.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn rename(from: &Path, to: &Path) -> Result<(), Refusal> {
    std::fs::rename(from, to).map_err(|e| format!("renaming {} to {}: {e}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP_ALL: &str = "PLUGIN = { name = \"keep\", version = \"1.0.0\", abi = 1 }\n\
                            function filter_batch(msgs, n, out, sub) for i = 1, n do out[i] = true end end\n";

    fn configured(dir: &Path) -> (PluginsConfig, Vec<PluginBinding>) {
        let script = dir.join("configured.lua");
        std::fs::write(&script, KEEP_ALL).unwrap();
        let mut decl = PluginConfig::new("configured", PluginKind::Filter, Runtime::Lua, script);
        decl.watch = Some(false);
        let config = PluginsConfig { watch: false, plugins: vec![decl], ..PluginsConfig::default() };
        let binding = PluginBinding { plugin: "configured".into(), topic: "T".into(), group: Some("G".into()) };
        (config, vec![binding])
    }

    #[test]
    fn deployments_and_bindings_survive_a_restart_and_the_configuration_wins() {
        let home = tempfile::tempdir().unwrap();
        let store = home.path().join("plugins");
        let (config, bindings) = configured(home.path());
        let plugins = BrokerPlugins::load(&config, &bindings, Some(store.clone()));
        let (sha, generation) = plugins
            .deploy("deployed", PluginKind::Filter, Runtime::Lua, None, BTreeMap::new(), KEEP_ALL.as_bytes())
            .unwrap();
        assert_eq!(generation, 1);
        // The configuration's names and places are not the runtime's to change.
        let e =
            plugins.deploy("configured", PluginKind::Filter, Runtime::Lua, None, BTreeMap::new(), b"x").unwrap_err();
        assert!(e.contains("declared in the broker's configuration"), "{e}");
        let e = plugins.bind("deployed", "T", Some("G")).unwrap_err();
        assert!(e.contains("bound by the broker's configuration"), "{e}");
        plugins.bind("deployed", "T", Some("Other")).unwrap();
        assert!(plugins.bind("deployed", "T", None).unwrap_err().contains("consumer group"));
        assert_eq!(plugins.filter_for("T", "Other").map(|f| f.name), Some("deployed".to_owned()));
        assert_eq!(plugins.filter_for("T", "G").map(|f| f.name), Some("configured".to_owned()));

        // Restarted: the same deployment and bindings, from plugins.json.
        drop(plugins);
        let again = BrokerPlugins::load(&config, &bindings, Some(store.clone()));
        let listed = again.list();
        let deployed = listed.iter().find(|p| p.name == "deployed").expect("still deployed");
        assert_eq!((deployed.sha256.as_str(), deployed.source.as_str()), (sha.as_str(), "deployed"));
        assert_eq!(again.filter_for("T", "Other").map(|f| f.name), Some("deployed".to_owned()));

        // A stored binding of a place the configuration now binds, and a stored plugin
        // the configuration now declares, give way to the configuration.
        let mut stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.join(STORED)).unwrap()).unwrap();
        stored["bindings"][0]["group"] = "G".into();
        std::fs::write(store.join(STORED), serde_json::to_vec(&stored).unwrap()).unwrap();
        let (mut config, bindings) = configured(home.path());
        let mut same_name = config.plugins[0].clone();
        same_name.name = "deployed".into();
        config.plugins.push(same_name);
        let third = BrokerPlugins::load(&config, &bindings, Some(store));
        assert_eq!(third.filter_for("T", "G").map(|f| f.name), Some("configured".to_owned()));
        let deployed = third.list().into_iter().find(|p| p.name == "deployed").unwrap();
        assert_eq!(deployed.source, "config", "the configuration's declaration wins");
    }

    #[test]
    fn a_refused_version_leaves_the_serving_one_and_rollback_goes_back() {
        let home = tempfile::tempdir().unwrap();
        let plugins = BrokerPlugins::load(&PluginsConfig::default(), &[], Some(home.path().join("plugins")));
        let deploy = |bytes: &[u8]| plugins.deploy("p", PluginKind::Filter, Runtime::Lua, None, BTreeMap::new(), bytes);
        let (first, _) = deploy(KEEP_ALL.as_bytes()).unwrap();
        let second_src = KEEP_ALL.replace("1.0.0", "2.0.0");
        let (second, generation) = deploy(second_src.as_bytes()).unwrap();
        assert_eq!(generation, 2);
        let e = deploy(b"function filter_batch(").unwrap_err();
        assert!(e.contains("previous version keeps serving"), "{e}");
        assert_eq!(plugins.list()[0].sha256, second);
        assert!(plugins.list()[0].rollback_available);
        let (back, _) = plugins.rollback("p").unwrap();
        assert_eq!(back, first);
        plugins.remove("p").unwrap();
        assert!(plugins.list().is_empty());
        assert!(!home.path().join("plugins/p").exists(), "its files are gone");
    }
}
