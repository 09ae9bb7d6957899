//! The registry: loads declared plugins, hands out per-kind handles, reloads.
//!
//! Each plugin lives in a *slot* whose current version is an `ArcSwap<Version>`: a call
//! clones the `Arc` and finishes on that version even if a reload swaps in a new one
//! meanwhile; the old version (WASM instances, Lua VMs) is dropped when its last call
//! returns. Reloads — from the file watcher or [`PluginRegistry::reload`] — stage the new
//! version on the calling / `plugin-reload` thread, never on a caller's hot path, and only
//! swap when staging (read, compile, ABI checks, `describe`, `init`) succeeded.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use plugin_api::frame::{FrameBuf, FrameError, MessageFrame};
use plugin_api::{FailurePolicy, Limits, Manifest, MessageFields, PluginError, PluginErrorKind, PluginKind, Runtime};
use sha2::{Digest, Sha256};

use crate::breaker::{Breaker, BreakerState};
use crate::config::{PluginConfig, PluginsConfig};
use crate::error::{Error, Result};
use crate::handles::{AllocationPlugin, FilterPlugin, QueueSelectorPlugin, TxnCheckPlugin};
use crate::runtime::{Backend, Input, LoadedPlugin};
use crate::stats::{PluginStats, StatsSnapshot};

/// Largest artifact accepted (Redpanda uses the same bound for transforms).
const MAX_ARTIFACT: u64 = 64 << 20;

/// One loaded version of a plugin.
pub(crate) struct Version {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) manifest: Manifest,
    pub(crate) sha256: String,
    pub(crate) generation: u64,
    pub(crate) loaded_at: SystemTime,
}

#[derive(Default)]
struct SlotStatus {
    last_error: Option<String>,
    last_reload_error: Option<String>,
}

/// A configured plugin: its current version, counters, breaker and status.
pub(crate) struct Slot {
    pub(crate) config: PluginConfig,
    pub(crate) limits: Limits,
    pub(crate) policy: FailurePolicy,
    pub(crate) current: ArcSwap<Version>,
    pub(crate) stats: PluginStats,
    pub(crate) breaker: Breaker,
    status: Mutex<SlotStatus>,
    generation: AtomicU64,
    /// Milliseconds since `epoch` of the last error log line (rate limit: 1/s).
    last_log_ms: AtomicU64,
    suppressed: AtomicU64,
    epoch: Instant,
}

/// The clock plugin calls are timed with (calibrated once per process).
fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

pub(crate) fn cannot_encode(e: FrameError) -> PluginError {
    PluginError::unavailable(format!("cannot encode input: {e}"))
}

thread_local! {
    /// Reused frame and output buffers: no allocation per call once warmed up, and a
    /// frame of the same shape as the last one skips zeroing its records.
    static BUFS: RefCell<(FrameBuf, Vec<u8>)> = const { RefCell::new((FrameBuf::new(), Vec::new())) };
}

impl Slot {
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn manifest_flags(&self) -> u16 {
        self.current.load().manifest.flags
    }

    /// Runs one call whose frame is encoded into a buffer: breaker check, encode,
    /// invoke, validate, count. `encode` returns the output size.
    pub(crate) fn run<T>(
        &self,
        records: usize,
        encode: impl FnOnce(&mut Vec<u8>, &Manifest) -> Result<usize, FrameError>,
        decode: impl FnOnce(&[u8]) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        self.guarded(|version, frame, out| {
            let frame = frame.vec_mut();
            let out_cap = encode(frame, &version.manifest).map_err(cannot_encode)?;
            self.invoke(version, records, &Input::Bytes(frame), &mut FrameBuf::new(), out_cap, out, decode)
        })
    }

    /// Runs one call over messages: like [`run`](Self::run), but the frame is planned
    /// (`plan` gets the fields the serving version reads and returns the frame and the
    /// output size) and each runtime writes it where the plugin reads it.
    pub(crate) fn run_messages<'a, T>(
        &self,
        records: usize,
        plan: impl FnOnce(MessageFields) -> Result<(MessageFrame<'a, 'a>, usize), PluginError>,
        decode: impl FnOnce(&[u8]) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        self.guarded(|version, scratch, out| {
            let (frame, out_cap) = plan(version.manifest.message_fields())?;
            self.invoke(version, records, &Input::Messages(&frame), scratch, out_cap, out, decode)
        })
    }

    /// The breaker check, the current version and the thread's reusable buffers around
    /// one call, and the error bookkeeping after it.
    fn guarded<T>(
        &self,
        call: impl FnOnce(&Version, &mut FrameBuf, &mut Vec<u8>) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        if !self.breaker.allow() {
            self.stats.record_breaker_rejection();
            self.stats.record_error(PluginErrorKind::Unavailable);
            return Err(PluginError::unavailable("circuit breaker open"));
        }
        let version = self.current.load();
        let result = BUFS.with(|bufs| match bufs.try_borrow_mut() {
            Ok(mut bufs) => {
                let (frame, out) = &mut *bufs;
                call(&version, frame, out)
            }
            // Re-entered from inside a call on this thread: use fresh buffers.
            Err(_) => call(&version, &mut FrameBuf::new(), &mut Vec::new()),
        });
        match &result {
            Ok(_) => self.breaker.on_success(),
            Err(e) => self.on_error(e),
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn invoke<T>(
        &self,
        version: &Version,
        records: usize,
        input: &Input<'_>,
        scratch: &mut FrameBuf,
        out_cap: usize,
        out: &mut Vec<u8>,
        decode: impl FnOnce(&[u8]) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        // A sample of the calls is timed (see `stats`), and every call while the breaker
        // counts failures: a plugin that starts failing or overrunning is watched call by
        // call until it recovers or the breaker opens. The clock is the TSC (raw ticks,
        // scaled once): `Instant::now` is a `clock_gettime` costing ~25 ns on a VM.
        let timed = self.stats.record_call(records) || !self.breaker.is_quiet();
        let clock = clock();
        let start = if timed { clock.raw() } else { 0 };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            version.backend.invoke(input, scratch, out_cap, out)
        }))
        .unwrap_or_else(|_| Err(PluginError::trap("panic in the plugin host while calling the plugin")));
        if timed {
            let elapsed = Duration::from_nanos(clock.delta_as_nanos(start, clock.raw()));
            self.stats.record_latency(elapsed);
            // Native plugins cannot be interrupted; an overrun still counts as a timeout
            // so the breaker can take a slow plugin out of the path.
            if r.is_ok() && self.config.runtime == Runtime::Native && elapsed > self.limits.deadline {
                return Err(PluginError::Timeout { deadline: self.limits.deadline });
            }
        }
        let n = r?;
        decode(&out[..n])
    }

    fn on_error(&self, e: &PluginError) {
        self.stats.record_error(e.kind());
        let tripped = self.breaker.on_failure();
        if tripped {
            self.stats.record_breaker_trip();
        }
        self.status.lock().last_error = Some(e.to_string());
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if tripped || now.saturating_sub(last) >= 1000 || last == 0 {
            self.last_log_ms.store(now.max(1), Ordering::Relaxed);
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(plugin = %self.config.name, error = %e, suppressed, breaker_open = tripped, "plugin call failed");
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn status(&self) -> PluginStatus {
        let v = self.current.load();
        let s = self.status.lock();
        PluginStatus {
            name: self.config.name.clone(),
            kind: self.config.kind,
            runtime: self.config.runtime,
            path: self.config.path.clone(),
            policy: self.policy,
            manifest: v.manifest.clone(),
            sha256: v.sha256.clone(),
            generation: v.generation,
            loaded_at: v.loaded_at,
            breaker: self.breaker.state(),
            stats: self.stats.snapshot(),
            last_error: s.last_error.clone(),
            last_reload_error: s.last_reload_error.clone(),
        }
    }
}

/// What the admin API shows about a plugin.
#[derive(Debug, Clone)]
pub struct PluginStatus {
    /// Registry name.
    pub name: String,
    /// Kind.
    pub kind: PluginKind,
    /// Runtime.
    pub runtime: Runtime,
    /// Artifact path.
    pub path: PathBuf,
    /// Effective failure policy.
    pub policy: FailurePolicy,
    /// The serving version's manifest.
    pub manifest: Manifest,
    /// SHA-256 of the serving version's artifact (hex).
    pub sha256: String,
    /// 1 for the first load, +1 per successful reload.
    pub generation: u64,
    /// When the serving version was loaded.
    pub loaded_at: SystemTime,
    /// Circuit breaker state.
    pub breaker: BreakerState,
    /// Counters.
    pub stats: StatsSnapshot,
    /// The last call error, if any.
    pub last_error: Option<String>,
    /// Why the last reload failed, if it did (cleared by a successful reload).
    pub last_reload_error: Option<String>,
}

struct Inner {
    config: PluginsConfig,
    /// What the slots' circuit breakers read the time from.
    breaker_clock: quanta::Clock,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    #[cfg(feature = "wasm")]
    wasm: Mutex<Option<Arc<crate::runtime::wasm::WasmRuntime>>>,
    watch: Mutex<Option<Watch>>,
}

struct Watch {
    watcher: notify::RecommendedWatcher,
    dirs: HashSet<PathBuf>,
}

/// Loads plugins declared in [`PluginsConfig`] and hands out per-kind handles.
///
/// Cloning is cheap (an `Arc`). Dropping the last clone stops the file watcher; handles
/// already given out keep working.
#[derive(Clone)]
pub struct PluginRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry").field("plugins", &self.names()).finish()
    }
}

impl PluginRegistry {
    /// Validates the configuration and loads every declared plugin.
    ///
    /// # Errors
    /// The first invalid setting or failed load (fail fast: a broker should not start
    /// with a plugin missing).
    pub fn new(config: PluginsConfig) -> Result<PluginRegistry> {
        Self::with_breaker_clock(config, None)
    }

    /// [`new`](Self::new), with the circuit breakers reading `breaker_clock` if given
    /// (tests pass a mock clock; calls are timed with the real one either way).
    pub(crate) fn with_breaker_clock(
        config: PluginsConfig,
        breaker_clock: Option<quanta::Clock>,
    ) -> Result<PluginRegistry> {
        config.validate()?;
        // Calibrate the call clock here rather than on the first call.
        let call_clock = clock();
        let breaker_clock = breaker_clock.unwrap_or_else(|| call_clock.clone());
        let decls = config.plugins.clone();
        let registry = PluginRegistry {
            inner: Arc::new(Inner {
                config,
                breaker_clock,
                slots: RwLock::new(BTreeMap::new()),
                #[cfg(feature = "wasm")]
                wasm: Mutex::new(None),
                watch: Mutex::new(None),
            }),
        };
        for decl in decls {
            registry.load(decl)?;
        }
        Ok(registry)
    }

    /// Loads one more plugin.
    ///
    /// # Errors
    /// Invalid declaration, duplicate name, native plugins not allowed, runtime compiled
    /// out, or the load failed (with the [`PluginError`] saying why).
    pub fn load(&self, decl: PluginConfig) -> Result<()> {
        decl.validate()?;
        if self.inner.slots.read().contains_key(&decl.name) {
            return Err(Error::DuplicateName { name: decl.name });
        }
        if decl.runtime == Runtime::Native && !self.inner.config.allow_native {
            return Err(Error::NativeNotAllowed { name: decl.name });
        }
        let version = self.stage(&decl, 1)?;
        tracing::info!(plugin = %decl.name, kind = %decl.kind, runtime = %decl.runtime,
            manifest = %version.manifest, sha256 = %version.sha256, "plugin loaded");
        let watch = decl.runtime != Runtime::Native && decl.watch.unwrap_or(self.inner.config.watch);
        let path = decl.path.clone();
        let slot = Arc::new(Slot {
            limits: decl.effective_limits(),
            policy: decl.policy(),
            breaker: Breaker::new(decl.breaker, self.inner.breaker_clock.clone()),
            config: decl,
            current: ArcSwap::from_pointee(version),
            stats: PluginStats::default(),
            status: Mutex::new(SlotStatus::default()),
            generation: AtomicU64::new(1),
            last_log_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        self.inner.slots.write().insert(slot.config.name.clone(), slot);
        if watch {
            self.watch(&path)?;
        }
        Ok(())
    }

    /// Reloads a plugin from its file now. On failure the current version keeps serving
    /// and the error is recorded in its status.
    ///
    /// # Errors
    /// Unknown name, or the staging error.
    pub fn reload(&self, name: &str) -> Result<()> {
        let slot = self.slot(name)?;
        let generation = slot.generation.load(Ordering::Relaxed) + 1;
        match self.stage(&slot.config, generation) {
            Ok(version) => {
                let unchanged = version.sha256 == slot.current.load().sha256;
                slot.generation.store(generation, Ordering::Relaxed);
                tracing::info!(plugin = %name, manifest = %version.manifest, sha256 = %version.sha256, generation,
                    unchanged, "plugin reloaded");
                slot.current.store(Arc::new(version));
                slot.stats.record_reload(true);
                slot.breaker.reset();
                slot.status.lock().last_reload_error = None;
                Ok(())
            }
            Err(e) => {
                slot.stats.record_reload(false);
                let msg = e.to_string();
                tracing::warn!(plugin = %name, error = %msg, "plugin reload failed; previous version keeps serving");
                slot.status.lock().last_reload_error = Some(msg);
                Err(e)
            }
        }
    }

    /// Removes a plugin: it takes no new handles; handles already given out keep
    /// the version they serve until they are dropped.
    ///
    /// # Errors
    /// Unknown name.
    pub fn unload(&self, name: &str) -> Result<()> {
        let slot = self.inner.slots.write().remove(name);
        slot.map(|_| tracing::info!(plugin = %name, "plugin removed"))
            .ok_or_else(|| Error::UnknownPlugin { name: name.to_owned() })
    }

    /// Reads, checks and initialises a version without installing it.
    #[cfg_attr(
        not(any(feature = "wasm", feature = "lua", feature = "native")),
        allow(unreachable_code, unused_variables)
    )]
    fn stage(&self, decl: &PluginConfig, generation: u64) -> Result<Version> {
        let wrap = |source: PluginError| Error::Plugin { name: decl.name.clone(), source };
        let shown = decl.path.display().to_string();
        let meta = std::fs::metadata(&decl.path).map_err(|e| wrap(PluginError::load(&shown, e.to_string())))?;
        if meta.len() > MAX_ARTIFACT {
            return Err(wrap(PluginError::load(
                &shown,
                format!("{} bytes exceeds the {MAX_ARTIFACT}-byte limit", meta.len()),
            )));
        }
        let bytes = std::fs::read(&decl.path).map_err(|e| wrap(PluginError::load(&shown, e.to_string())))?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let limits = decl.effective_limits();
        let loaded: LoadedPlugin = match decl.runtime {
            #[cfg(feature = "wasm")]
            Runtime::Wasm => {
                let rt = self.wasm_runtime().map_err(wrap)?;
                rt.load(&decl.name, &decl.path, &bytes, &sha256, limits, &decl.config).map_err(wrap)?
            }
            #[cfg(feature = "lua")]
            Runtime::Lua => crate::runtime::lua::load(&decl.name, decl.kind, &decl.path, bytes, limits, &decl.config)
                .map_err(wrap)?,
            #[cfg(feature = "native")]
            Runtime::Native => crate::runtime::native::load(
                &decl.path,
                &bytes,
                &sha256,
                self.inner.config.cache_dir.as_deref(),
                limits,
                &decl.config,
            )
            .map_err(wrap)?,
            #[allow(unreachable_patterns)]
            other => return Err(Error::RuntimeDisabled { name: decl.name.clone(), runtime: other }),
        };
        if loaded.manifest.kind != decl.kind {
            return Err(wrap(PluginError::init(format!(
                "the plugin implements {}, but it is declared as {}",
                loaded.manifest.kind, decl.kind
            ))));
        }
        Ok(Version {
            backend: loaded.backend,
            manifest: loaded.manifest,
            sha256,
            generation,
            loaded_at: SystemTime::now(),
        })
    }

    #[cfg(feature = "wasm")]
    fn wasm_runtime(&self) -> Result<Arc<crate::runtime::wasm::WasmRuntime>, PluginError> {
        let mut guard = self.inner.wasm.lock();
        if let Some(rt) = guard.as_ref() {
            return Ok(rt.clone());
        }
        let rt = Arc::new(crate::runtime::wasm::WasmRuntime::new(&self.inner.config)?);
        *guard = Some(rt.clone());
        Ok(rt)
    }

    /// How many WASM loads were served from the precompiled-module cache.
    pub fn wasm_cache_hits(&self) -> u64 {
        #[cfg(feature = "wasm")]
        if let Some(rt) = self.inner.wasm.lock().as_ref() {
            return rt.cache_hits.load(Ordering::Relaxed);
        }
        0
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>> {
        self.inner.slots.read().get(name).cloned().ok_or_else(|| Error::UnknownPlugin { name: name.to_owned() })
    }

    fn slot_of(&self, name: &str, wanted: PluginKind) -> Result<Arc<Slot>> {
        let slot = self.slot(name)?;
        if slot.config.kind != wanted {
            return Err(Error::WrongKind { name: name.to_owned(), actual: slot.config.kind, wanted });
        }
        Ok(slot)
    }

    /// The filter plugin `name`.
    ///
    /// # Errors
    /// Unknown name or another kind.
    pub fn filter(&self, name: &str) -> Result<FilterPlugin> {
        self.slot_of(name, PluginKind::Filter).map(FilterPlugin::new)
    }

    /// The queue-selector plugin `name`.
    ///
    /// # Errors
    /// Unknown name or another kind.
    pub fn queue_selector(&self, name: &str) -> Result<QueueSelectorPlugin> {
        self.slot_of(name, PluginKind::QueueSelector).map(QueueSelectorPlugin::new)
    }

    /// The allocation plugin `name`.
    ///
    /// # Errors
    /// Unknown name or another kind.
    pub fn allocation(&self, name: &str) -> Result<AllocationPlugin> {
        self.slot_of(name, PluginKind::Allocation).map(AllocationPlugin::new)
    }

    /// The transaction check-back plugin `name`.
    ///
    /// # Errors
    /// Unknown name or another kind.
    pub fn txn_check(&self, name: &str) -> Result<TxnCheckPlugin> {
        self.slot_of(name, PluginKind::TxnCheck).map(TxnCheckPlugin::new)
    }

    /// Names of all loaded plugins.
    pub fn names(&self) -> Vec<String> {
        self.inner.slots.read().keys().cloned().collect()
    }

    /// Status of every plugin (for the admin API and metrics).
    pub fn status(&self) -> Vec<PluginStatus> {
        self.inner.slots.read().values().map(|s| s.status()).collect()
    }

    /// Status of one plugin.
    pub fn plugin_status(&self, name: &str) -> Option<PluginStatus> {
        self.inner.slots.read().get(name).map(|s| s.status())
    }

    /// Starts watching the directory of `path` (once per directory).
    fn watch(&self, path: &Path) -> Result<()> {
        use notify::Watcher;
        let dir = absolute_parent(path);
        let mut guard = self.inner.watch.lock();
        if guard.is_none() {
            let (tx, rx) = mpsc::channel::<PathBuf>();
            let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if matches!(event.kind, notify::EventKind::Access(_)) {
                        return;
                    }
                    for p in event.paths {
                        let _ = tx.send(p);
                    }
                }
            })?;
            let weak = Arc::downgrade(&self.inner);
            let debounce = self.inner.config.reload_debounce;
            std::thread::Builder::new()
                .name("plugin-reload".into())
                .spawn(move || reload_loop(weak, rx, debounce))
                .map_err(|e| Error::Watch(notify::Error::io(e)))?;
            *guard = Some(Watch { watcher, dirs: HashSet::new() });
        }
        let w = guard.as_mut().expect("set above");
        if w.dirs.insert(dir.clone()) {
            w.watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        }
        Ok(())
    }
}

fn absolute_parent(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let parent = abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    std::fs::canonicalize(&parent).unwrap_or(parent)
}

fn same_file(event: &Path, plugin: &Path) -> bool {
    event.file_name().is_some()
        && event.file_name() == plugin.file_name()
        && absolute_parent(event) == absolute_parent(plugin)
}

/// The `plugin-reload` thread: collects changed paths, waits for a quiet period, reloads
/// the plugins whose file changed. Exits when the registry is dropped.
fn reload_loop(inner: Weak<Inner>, rx: mpsc::Receiver<PathBuf>, debounce: Duration) {
    let _span = tracing::info_span!("plugin_reload").entered();
    while let Ok(first) = rx.recv() {
        let mut changed = vec![first];
        loop {
            match rx.recv_timeout(debounce) {
                Ok(p) => changed.push(p),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        let registry = PluginRegistry { inner };
        let names: Vec<String> = registry
            .inner
            .slots
            .read()
            .values()
            .filter(|s| s.config.runtime != Runtime::Native && s.config.watch.unwrap_or(registry.inner.config.watch))
            .filter(|s| changed.iter().any(|p| same_file(p, &s.config.path)))
            .map(|s| s.config.name.clone())
            .collect();
        for name in names {
            // Errors are recorded in the slot status and logged by `reload`.
            let _ = registry.reload(&name);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
