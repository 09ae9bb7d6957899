//! WebAssembly runtime on wasmtime.
//!
//! - **Compile once.** Modules are compiled with Cranelift and, when a cache directory
//!   is configured, stored as precompiled artifacts named
//!   `<sha256 of the .wasm>-<engine compatibility hash>.cwasm`; a later load (another
//!   process, a reload of the same bytes) deserializes instead of compiling.
//! - **Cheap instances.** One `InstancePre` per module, the pooling allocator for
//!   instance memory, and a small pool of idle initialised instances per plugin version,
//!   so a call normally reuses an instance and a trap costs one re-instantiation
//!   (a few microseconds) plus `init`.
//! - **Limits.** One engine-wide epoch ticker thread (`plugins.epoch_tick`, 1 ms); each
//!   call sets its deadline in ticks. A per-instance `ResourceLimiter` caps linear memory
//!   (`memory.grow` beyond the cap returns -1 and the failure is classified as
//!   `MemoryLimit`). Fuel meters instructions only when `plugins.wasm_fuel` is on.
//! - **Isolation.** The linker offers only `fmq_host_v1.log`; any other import is refused
//!   at load. There is no WASI: no files, no network, no clock.
//! - **After a trap** the instance is dropped, never reused.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plugin_api::frame::FrameBuf;
use plugin_api::{status, Limits, Manifest, PluginError, PLUGIN_ABI_VERSION};
use wasmtime::{
    Caller, Config, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, TypedFunc,
};

use super::{config_frame, Backend, Input, LoadedPlugin};
use crate::config::PluginsConfig;

const MARKER: &str = "fmq_abi_v1";
const MARKER_PREFIX: &str = "fmq_abi_v";
const HOST_MODULE: &str = "fmq_host_v1";
/// Idle instances kept per plugin version (more are created under concurrency and
/// dropped when returned).
const MAX_IDLE: usize = 4;
/// Log lines a single call may emit through `fmq_host_v1.log`.
const MAX_LOGS_PER_CALL: u32 = 16;

/// The engine, linker and epoch ticker shared by all WASM plugins of a registry.
pub(crate) struct WasmRuntime {
    engine: Engine,
    linker: Linker<StoreData>,
    engine_hash: u64,
    cache_dir: Option<PathBuf>,
    tick: Duration,
    fuel: bool,
    stop: Arc<AtomicBool>,
    pub(crate) cache_hits: AtomicU64,
}

impl WasmRuntime {
    pub(crate) fn new(cfg: &PluginsConfig) -> Result<WasmRuntime, PluginError> {
        let mut pool = PoolingAllocationConfig::default();
        let n = cfg.wasm_max_instances;
        pool.total_core_instances(n)
            .total_memories(n)
            .total_tables(n)
            .max_memory_size(usize::try_from(cfg.wasm_max_memory.as_u64()).unwrap_or(usize::MAX));
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(cfg.wasm_fuel);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| PluginError::unavailable(format!("wasm engine: {e:#}")))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hasher.finish();

        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(HOST_MODULE, "log", host_log)
            .map_err(|e| PluginError::unavailable(format!("wasm linker: {e:#}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let (ticker_engine, ticker_stop, tick) = (engine.clone(), stop.clone(), cfg.epoch_tick);
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::unavailable(format!("epoch ticker: {e}")))?;
        if let Some(dir) = &cfg.cache_dir {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot create plugin cache dir; compiling in memory");
            }
        }
        Ok(WasmRuntime {
            engine,
            linker,
            engine_hash,
            cache_dir: cfg.cache_dir.clone(),
            tick,
            fuel: cfg.wasm_fuel,
            stop,
            cache_hits: AtomicU64::new(0),
        })
    }

    /// Compiles (or loads from the cache), checks the ABI, instantiates a first
    /// instance, reads the manifest and runs `init`.
    pub(crate) fn load(
        &self,
        name: &str,
        path: &Path,
        bytes: &[u8],
        sha256: &str,
        limits: Limits,
        config: &BTreeMap<String, String>,
    ) -> Result<LoadedPlugin, PluginError> {
        let shown = path.display().to_string();
        let module = self.compile(bytes, sha256).map_err(|e| PluginError::load(&shown, e))?;
        check_module(&module, &shown)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| PluginError::load(&shown, format!("cannot link: {e:#}")))?;
        let plugin = WasmPlugin {
            engine: self.engine.clone(),
            pre,
            name: Arc::from(name),
            limits,
            deadline_ticks: ticks(limits.deadline, self.tick),
            init_ticks: ticks(limits.deadline.max(Duration::from_secs(1)), self.tick),
            fuel: self.fuel.then_some(limits.instructions.unwrap_or(u64::MAX)),
            config_frame: config_frame(config)?,
            idle: Mutex::new(Vec::new()),
        };
        let mut first = plugin.instantiate_raw()?;
        let manifest = first.describe(&plugin)?;
        first.init(&plugin)?;
        plugin.idle.lock().push(first);
        Ok(LoadedPlugin { backend: Box::new(plugin), manifest })
    }

    fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Module, String> {
        let Some(dir) = &self.cache_dir else {
            return Module::new(&self.engine, bytes).map_err(|e| format!("{e:#}"));
        };
        let file = dir.join(format!("{sha256}-{:016x}.cwasm", self.engine_hash));
        // Read into memory rather than `deserialize_file`: that one mmaps the file, and
        // anyone truncating or rewriting it in place (an operator cleaning the cache)
        // would then crash the process with SIGBUS.
        if let Ok(cached) = std::fs::read(&file) {
            // SAFETY: the cache directory is operator-owned and only this runtime writes
            // into it (atomically, by rename); the file name binds the artifact to the
            // exact source bytes (sha256) and to this engine's configuration and wasmtime
            // version, and `deserialize` re-checks the version and configuration embedded
            // in the artifact.
            match unsafe { Module::deserialize(&self.engine, &cached) } {
                Ok(m) => {
                    self.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(m);
                }
                Err(e) => tracing::warn!(file = %file.display(), error = %e, "discarding unusable cached module"),
            }
        }
        let compiled = self.engine.precompile_module(bytes).map_err(|e| format!("{e:#}"))?;
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        if let Err(e) = std::fs::write(&tmp, &compiled).and_then(|()| std::fs::rename(&tmp, &file)) {
            tracing::warn!(file = %file.display(), error = %e, "cannot write module cache");
            let _ = std::fs::remove_file(&tmp);
        }
        // SAFETY: `compiled` was produced just now by this engine's `precompile_module`.
        unsafe { Module::deserialize(&self.engine, &compiled) }.map_err(|e| format!("{e:#}"))
    }
}

impl Drop for WasmRuntime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn ticks(d: Duration, tick: Duration) -> u64 {
    // +1: the epoch may advance right after the deadline is set.
    (d.as_nanos().div_ceil(tick.as_nanos().max(1)) as u64).max(1) + 1
}

/// The ABI checks that need only the module: marker, exports, imports.
fn check_module(module: &Module, path: &str) -> Result<(), PluginError> {
    let exports: Vec<String> = module.exports().map(|e| e.name().to_owned()).collect();
    if !exports.iter().any(|e| e == MARKER) {
        let other = exports.iter().filter_map(|e| e.strip_prefix(MARKER_PREFIX)).find_map(|v| v.parse::<u32>().ok());
        return Err(match other {
            Some(found) => PluginError::AbiMismatch {
                found,
                supported: PLUGIN_ABI_VERSION,
                detail: format!("module exports {MARKER_PREFIX}{found}, not {MARKER}"),
            },
            None => PluginError::load(path, format!("not a FerroMQ plugin: no {MARKER} export")),
        });
    }
    for required in ["memory", "fmq_alloc", "fmq_describe", "fmq_call"] {
        if !exports.iter().any(|e| e == required) {
            return Err(PluginError::load(path, format!("missing required export {required}")));
        }
    }
    for import in module.imports() {
        if import.module() != HOST_MODULE || import.name() != "log" {
            return Err(PluginError::load(
                path,
                format!(
                    "imports {}.{}, which the host does not provide (only {HOST_MODULE}.log)",
                    import.module(),
                    import.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Per-store state: the memory limiter and the plugin name for logs.
pub(crate) struct StoreData {
    limiter: MemLimiter,
    name: Arc<str>,
    logs_left: u32,
}

struct MemLimiter {
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 16)
    }
}

fn host_log(mut caller: Caller<'_, StoreData>, level: i32, ptr: i32, len: i32) {
    if caller.data().logs_left == 0 {
        return;
    }
    caller.data_mut().logs_left -= 1;
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else { return };
    let data = memory.data(&caller);
    let (ptr, len) = (ptr as u32 as usize, (len as u32 as usize).min(1024));
    let Some(bytes) = data.get(ptr..ptr.saturating_add(len)) else { return };
    let msg = String::from_utf8_lossy(bytes);
    crate::logs::record(&caller.data().name, level, &msg);
}

/// One loaded module version.
struct WasmPlugin {
    engine: Engine,
    pre: InstancePre<StoreData>,
    name: Arc<str>,
    limits: Limits,
    deadline_ticks: u64,
    init_ticks: u64,
    fuel: Option<u64>,
    config_frame: Vec<u8>,
    idle: Mutex<Vec<Instance>>,
}

impl WasmPlugin {
    /// A new instance, not yet initialised.
    fn instantiate_raw(&self) -> Result<Instance, PluginError> {
        let data = StoreData {
            limiter: MemLimiter { limit: usize::try_from(self.limits.memory_bytes).unwrap_or(usize::MAX), hit: false },
            name: self.name.clone(),
            logs_left: MAX_LOGS_PER_CALL,
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|d| &mut d.limiter);
        store.set_epoch_deadline(self.init_ticks);
        if let Some(f) = self.fuel {
            store.set_fuel(f).map_err(|e| PluginError::unavailable(format!("{e:#}")))?;
        }
        let instance = match self.pre.instantiate(&mut store) {
            Ok(i) => i,
            // A trap in a start function is the plugin's fault; anything else (pooling
            // allocator slots exhausted, out of address space) is the host's capacity.
            Err(e) if e.downcast_ref::<Trap>().is_some() || store.data().limiter.hit => {
                return Err(classify(e, &store, &self.limits, "instantiate"))
            }
            Err(e) => return Err(PluginError::unavailable(format!("cannot instantiate: {e:#}"))),
        };
        let get = |store: &mut Store<StoreData>, name: &str| {
            instance
                .get_export(&mut *store, name)
                .ok_or_else(|| PluginError::load(&*self.name, format!("missing export {name}")))
        };
        let memory = get(&mut store, "memory")?
            .into_memory()
            .ok_or_else(|| PluginError::load(&*self.name, "export memory is not a memory"))?;
        let typed = |e: wasmtime::Error, what: &str| {
            PluginError::load(&*self.name, format!("export {what} has the wrong signature: {e:#}"))
        };
        let call = instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, "fmq_call")
            .map_err(|e| typed(e, "fmq_call"))?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut store, "fmq_alloc").map_err(|e| typed(e, "fmq_alloc"))?;
        let describe = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "fmq_describe")
            .map_err(|e| typed(e, "fmq_describe"))?;
        let init = match instance.get_export(&mut store, "fmq_init") {
            Some(_) => Some(
                instance.get_typed_func::<(i32, i32), i32>(&mut store, "fmq_init").map_err(|e| typed(e, "fmq_init"))?,
            ),
            None => None,
        };
        let last_error = match instance.get_export(&mut store, "fmq_last_error") {
            Some(_) => Some(
                instance
                    .get_typed_func::<(i32, i32), i32>(&mut store, "fmq_last_error")
                    .map_err(|e| typed(e, "fmq_last_error"))?,
            ),
            None => None,
        };
        Ok(Instance { store, memory, call, alloc, describe, init, last_error, buf: 0, cap: 0 })
    }

    /// A new initialised instance.
    fn instantiate(&self) -> Result<Instance, PluginError> {
        let mut inst = self.instantiate_raw()?;
        inst.init(self)?;
        Ok(inst)
    }
}

impl Backend for WasmPlugin {
    fn invoke(
        &self,
        input: &Input<'_>,
        _scratch: &mut FrameBuf,
        out_cap: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, PluginError> {
        let idle = self.idle.lock().pop();
        let mut inst = match idle {
            Some(i) => i,
            None => self.instantiate()?,
        };
        match inst.call(self, input, out_cap, out) {
            Ok(()) => {
                let mut idle = self.idle.lock();
                if idle.len() < MAX_IDLE {
                    idle.push(inst);
                }
                Ok(out.len())
            }
            // The plugin reported an error through the ABI: its state is intact.
            Err(e @ PluginError::Failed { .. }) => {
                self.idle.lock().push(inst);
                Err(e)
            }
            // Trap, timeout, memory limit, bad output: the instance may be corrupt.
            Err(e) => Err(e),
        }
    }
}

struct Instance {
    store: Store<StoreData>,
    memory: Memory,
    call: TypedFunc<(i32, i32, i32, i32), i32>,
    alloc: TypedFunc<i32, i32>,
    describe: TypedFunc<(i32, i32), i32>,
    init: Option<TypedFunc<(i32, i32), i32>>,
    last_error: Option<TypedFunc<(i32, i32), i32>>,
    buf: u32,
    cap: u32,
}

fn classify(err: wasmtime::Error, store: &Store<StoreData>, limits: &Limits, what: &str) -> PluginError {
    if store.data().limiter.hit {
        return PluginError::MemoryLimit { limit: limits.memory_bytes };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout { deadline: limits.deadline },
        Some(Trap::OutOfFuel) => PluginError::InstructionLimit { budget: limits.instructions.unwrap_or(0) },
        Some(trap) => PluginError::trap(format!("{what}: {trap}")),
        None => PluginError::trap(format!("{what}: {err:#}")),
    }
}

impl Instance {
    /// Makes sure the host buffer holds `need` bytes (8-aligned start).
    fn reserve(&mut self, plugin: &WasmPlugin, need: usize) -> Result<(), PluginError> {
        if need <= self.cap as usize {
            return Ok(());
        }
        let size = need.next_power_of_two().max(64 * 1024);
        let size = i32::try_from(size).map_err(|_| PluginError::unavailable("frame exceeds 2 GiB"))?;
        let ptr = match self.alloc.call(&mut self.store, size) {
            Ok(p) => p,
            Err(e) => return Err(classify(e, &self.store, &plugin.limits, "fmq_alloc")),
        };
        let end = (ptr as u32 as usize).checked_add(size as usize);
        if ptr == 0 || ptr % 8 != 0 || end.is_none_or(|end| end > self.memory.data_size(&self.store)) {
            if self.store.data().limiter.hit {
                return Err(PluginError::MemoryLimit { limit: plugin.limits.memory_bytes });
            }
            return Err(PluginError::bad_output(format!("fmq_alloc({size}) returned unusable pointer {ptr}")));
        }
        self.buf = ptr as u32;
        self.cap = size as u32;
        Ok(())
    }

    fn arm(&mut self, plugin: &WasmPlugin, ticks: u64) -> Result<(), PluginError> {
        self.store.data_mut().limiter.hit = false;
        self.store.data_mut().logs_left = MAX_LOGS_PER_CALL;
        self.store.set_epoch_deadline(ticks);
        if let Some(f) = plugin.fuel {
            self.store.set_fuel(f).map_err(|e| PluginError::unavailable(format!("{e:#}")))?;
        }
        Ok(())
    }

    fn last_error(&mut self, plugin: &WasmPlugin) -> String {
        let Some(f) = self.last_error.clone() else { return String::new() };
        let (ptr, cap) = (self.buf, self.cap.min(1024));
        if cap == 0 || self.arm(plugin, plugin.init_ticks).is_err() {
            return String::new();
        }
        match f.call(&mut self.store, (ptr as i32, cap as i32)) {
            Ok(n) if n > 0 => {
                let n = (n as u32).min(cap) as usize;
                let data = self.memory.data(&self.store);
                data.get(ptr as usize..ptr as usize + n)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            }
            _ => String::new(),
        }
    }

    fn describe(&mut self, plugin: &WasmPlugin) -> Result<Manifest, PluginError> {
        self.arm(plugin, plugin.init_ticks)?;
        self.reserve(plugin, 4096)?;
        let mut cap = self.cap as usize;
        loop {
            self.arm(plugin, plugin.init_ticks)?;
            let n = match self.describe.call(&mut self.store, (self.buf as i32, cap as i32)) {
                Ok(n) => n,
                Err(e) => return Err(classify(e, &self.store, &plugin.limits, "fmq_describe")),
            };
            if n < 0 {
                let message = self.last_error(plugin);
                return Err(PluginError::init(format!("fmq_describe returned {n} {message}").trim_end().to_owned()));
            }
            let n = n as usize;
            if n > plugin_api::manifest::MAX_MANIFEST_LEN {
                return Err(PluginError::init(format!("manifest of {n} bytes is too large")));
            }
            if n > cap {
                self.reserve(plugin, n)?;
                cap = self.cap as usize;
                continue;
            }
            let data = self.memory.data(&self.store);
            let bytes = data
                .get(self.buf as usize..self.buf as usize + n)
                .ok_or_else(|| PluginError::init("manifest outside memory"))?;
            return Manifest::decode(bytes);
        }
    }

    fn init(&mut self, plugin: &WasmPlugin) -> Result<(), PluginError> {
        let Some(init) = self.init.clone() else { return Ok(()) };
        let len = plugin.config_frame.len();
        self.arm(plugin, plugin.init_ticks)?;
        self.reserve(plugin, len)?;
        let at = self.buf as usize;
        self.memory.data_mut(&mut self.store)[at..at + len].copy_from_slice(&plugin.config_frame);
        self.arm(plugin, plugin.init_ticks)?;
        match init.call(&mut self.store, (at as i32, len as i32)) {
            Ok(status::OK) => Ok(()),
            Ok(code) => {
                let message = self.last_error(plugin);
                Err(PluginError::init(if message.is_empty() { format!("fmq_init returned {code}") } else { message }))
            }
            Err(e) => Err(classify(e, &self.store, &plugin.limits, "fmq_init")),
        }
    }

    fn call(
        &mut self,
        plugin: &WasmPlugin,
        input: &Input<'_>,
        out_cap: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), PluginError> {
        let in_len = input.len();
        let out_at = (in_len + 7) & !7;
        // Arm first: the deadline set by an earlier call is relative to *its* start, so
        // an instance that sat idle would trap on its first entry (`fmq_alloc` below).
        self.arm(plugin, plugin.deadline_ticks)?;
        self.reserve(plugin, out_at + out_cap)?;
        let base = self.buf as usize;
        input.write(&mut self.memory.data_mut(&mut self.store)[base..base + in_len]);
        let args = (base as i32, in_len as i32, (base + out_at) as i32, out_cap as i32);
        let n = match self.call.call(&mut self.store, args) {
            Ok(n) => n,
            Err(e) => return Err(classify(e, &self.store, &plugin.limits, "fmq_call")),
        };
        if n < 0 {
            if self.store.data().limiter.hit {
                return Err(PluginError::MemoryLimit { limit: plugin.limits.memory_bytes });
            }
            return Err(PluginError::Failed { code: n, message: self.last_error(plugin) });
        }
        let n = n as usize;
        if n > out_cap {
            return Err(PluginError::bad_output(format!("fmq_call returned {n} bytes, the output area has {out_cap}")));
        }
        let data = self.memory.data(&self.store);
        out.clear();
        out.extend_from_slice(&data[base + out_at..base + out_at + n]);
        Ok(())
    }
}
