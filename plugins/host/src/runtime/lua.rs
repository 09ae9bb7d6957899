//! Lua 5.4 runtime on mlua (vendored: nothing to install).
//!
//! - **One VM per calling thread and plugin version.** A Lua VM is not `Send`, so each
//!   thread that calls a plugin gets its own VM of it (in a thread-local), built from
//!   the source on that thread's first call and kept while the plugin version lives.
//!   A call runs on the caller's thread with no hand-off: handing a batch of 32 to a
//!   worker thread and waking the caller again cost ~25 µs per call on a VM, ~0.8 µs
//!   per message. The load itself compiles and initialises a VM on the loading thread
//!   (off the hot path), so a script that does not load never reaches a caller; a
//!   reload costs each calling thread one VM build on its next call. Plugins are
//!   stateless by contract (the ABI lets a host run instances in parallel), so several
//!   VMs of one script are the same plugin.
//! - **Sandbox.** Only `string`, `table`, `math`, `utf8` and `coroutine` are opened; from
//!   the base library `load`, `loadfile`, `dofile`, `require`, `collectgarbage` and
//!   `string.dump` are removed and `print` goes to the log. Scripts are loaded as text
//!   only (no binary chunks).
//! - **Limits.** `Lua::set_memory_limit`; a count hook every 1000 instructions checks the
//!   call's wall-clock deadline and instruction budget. Once a call is over its deadline
//!   every hook invocation raises again, and `pcall`/`xpcall`/`coroutine.resume` are
//!   wrapped to re-raise, so a script cannot swallow its own timeout. After a memory
//!   error the VM is rebuilt from the source.
//! - **Fields on demand.** Message tables are reused between calls, and the host only
//!   fills the fields whose names appear in the script text (`tags`, `props`, ...), since
//!   each field costs a Rust→Lua crossing; the script's manifest declares the same
//!   fields, so its frames carry no other strings. Computed field names
//!   (`msg["ta".."gs"]`) are therefore not supported.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use plugin_api::frame::{self, Call, Frame, FrameBuf, MessageRef};
use plugin_api::manifest::FLAG_NEEDS_BODY;
use plugin_api::{
    CheckDecision, Limits, Manifest, MessageFields, PluginError, PluginKind, Verdict, NO_QUEUE, PLUGIN_ABI_VERSION,
};

use super::{Backend, Input, LoadedPlugin};

const HOOK_EVERY: u32 = 1000;

/// The message fields a script may read, in fill order, with the frame field each one
/// comes from (the selector argument is always in the frame).
const FIELDS: [(&str, MessageFields); 15] = [
    ("topic", MessageFields::TOPIC),
    ("tags", MessageFields::TAGS),
    ("keys", MessageFields::KEYS),
    ("tags_code", MessageFields::METADATA),
    ("queue_id", MessageFields::METADATA),
    ("queue_offset", MessageFields::METADATA),
    ("commit_log_offset", MessageFields::METADATA),
    ("store_timestamp", MessageFields::METADATA),
    ("born_timestamp", MessageFields::METADATA),
    ("reconsume_times", MessageFields::METADATA),
    ("body_size", MessageFields::METADATA),
    ("check_count", MessageFields::METADATA),
    ("arg", MessageFields::NONE),
    ("props", MessageFields::PROPERTIES),
    ("body", MessageFields::BODY),
];

pub(crate) struct LuaPlugin {
    setup: Arc<Setup>,
    /// Identifies this plugin version in every thread's VM table.
    id: u64,
}

/// Plugin versions loaded so far, for [`LuaPlugin::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's VM of one plugin version.
struct ThreadVm {
    id: u64,
    /// Dead once the plugin version is dropped (reloaded or removed): the VM goes too.
    owner: Weak<Setup>,
    vm: Vm,
    calls: u32,
}

thread_local! {
    static VMS: RefCell<Vec<ThreadVm>> = const { RefCell::new(Vec::new()) };
}

/// Loads the script and runs `init` on this thread (the VM then serves this thread's
/// calls); other threads build theirs on their first call.
pub(crate) fn load(
    name: &str,
    kind: PluginKind,
    path: &Path,
    bytes: Vec<u8>,
    limits: Limits,
    config: &BTreeMap<String, String>,
) -> Result<LoadedPlugin, PluginError> {
    let shown = path.display().to_string();
    let source = String::from_utf8(bytes).map_err(|_| PluginError::load(&shown, "script is not UTF-8 text"))?;
    let setup = Arc::new(Setup { name: name.to_owned(), kind, shown, source, limits, config: config.clone() });
    let vm = Vm::new(&setup)?;
    let manifest = vm.manifest.clone();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    VMS.with(|vms| {
        if let Ok(mut vms) = vms.try_borrow_mut() {
            // A reloading thread (the file watcher) drops the versions it replaced here.
            vms.retain(|t| t.owner.strong_count() > 0);
            vms.push(ThreadVm { id, owner: Arc::downgrade(&setup), vm, calls: 0 });
        }
    });
    Ok(LoadedPlugin { backend: Box::new(LuaPlugin { setup, id }), manifest })
}

impl Backend for LuaPlugin {
    fn invoke(
        &self,
        input: &Input<'_>,
        scratch: &mut FrameBuf,
        out_cap: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, PluginError> {
        let f = Frame::parse(input.bytes(scratch)).map_err(|e| PluginError::unavailable(format!("bad frame: {e}")))?;
        VMS.with(|vms| {
            // A script cannot call back into a plugin, so the table is never borrowed
            // twice; if it were, refusing the call is the safe answer.
            let mut vms =
                vms.try_borrow_mut().map_err(|_| PluginError::unavailable("re-entrant call of a Lua plugin"))?;
            vms.retain(|t| t.owner.strong_count() > 0);
            let at = match vms.iter().position(|t| t.id == self.id) {
                Some(at) => at,
                None => {
                    let vm = Vm::new(&self.setup)?;
                    vms.push(ThreadVm { id: self.id, owner: Arc::downgrade(&self.setup), vm, calls: 0 });
                    vms.len() - 1
                }
            };
            let t = &mut vms[at];
            let limits = self.setup.limits;
            t.vm.budget.arm(limits.deadline, limits.instructions);
            let result = t.vm.run(&f, out);
            t.vm.budget.disarm();
            let result = result.and_then(|()| {
                (out.len() <= out_cap).then_some(out.len()).ok_or_else(|| {
                    PluginError::bad_output(format!("{} output bytes for a {}-byte area", out.len(), out_cap))
                })
            });
            if matches!(result, Err(PluginError::MemoryLimit { .. })) {
                // The heap is at its cap and may hold garbage the script still
                // references: start over from the source on the next call.
                vms.swap_remove(at);
            } else {
                t.calls = t.calls.wrapping_add(1);
                // Lua's own incremental GC runs as the script allocates, and an
                // allocation that would pass the cap first triggers a full collection;
                // an occasional extra step between calls only tidies up. (One every 16
                // calls was an eighth of a small batch's cost: each step re-marks the
                // reused message tables.)
                if t.calls.is_multiple_of(256) {
                    let _ = t.vm.lua.gc_step();
                }
            }
            result
        })
    }
}

struct Setup {
    name: String,
    kind: PluginKind,
    shown: String,
    source: String,
    limits: Limits,
    config: BTreeMap<String, String>,
}

/// Per-call limit state shared with the hook.
#[derive(Default)]
struct Budget {
    deadline: Cell<Option<Instant>>,
    instructions: Cell<u64>,
    max_instructions: Cell<Option<u64>>,
    timed_out: Cell<bool>,
    out_of_instructions: Cell<bool>,
}

impl Budget {
    fn arm(&self, deadline: Duration, instructions: Option<u64>) {
        self.deadline.set(Some(Instant::now() + deadline));
        self.instructions.set(0);
        self.max_instructions.set(instructions);
        self.timed_out.set(false);
        self.out_of_instructions.set(false);
    }
    fn disarm(&self) {
        self.deadline.set(None);
    }
    fn aborting(&self) -> bool {
        self.timed_out.get() || self.out_of_instructions.get()
    }
}

/// A live VM with the script loaded.
struct Vm {
    lua: Lua,
    budget: Rc<Budget>,
    used: [bool; FIELDS.len()],
    entry: Function,
    batch: bool,
    /// Reused message tables (batch calls use `msgs[1..n]`), and Rust-side handles to
    /// them so filling a batch does not look each one up again.
    msgs: Table,
    msg_tables: std::cell::RefCell<Vec<Table>>,
    sub: Table,
    manifest: Manifest,
    limits: Limits,
}

impl Vm {
    fn new(s: &Setup) -> Result<Vm, PluginError> {
        let load_err = |e: mlua::Error| PluginError::load(&s.shown, e.to_string());
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE,
            LuaOptions::default(),
        )
        .map_err(load_err)?;
        let budget = Rc::new(Budget::default());
        sandbox(&lua, &s.name, &budget).map_err(load_err)?;
        lua.set_memory_limit(usize::try_from(s.limits.memory_bytes).unwrap_or(usize::MAX)).map_err(load_err)?;

        // Loading and top-level execution run under the init budget too.
        budget.arm(s.limits.deadline.max(Duration::from_secs(1)), None);
        let chunk = lua.load(&s.source).set_name(format!("@{}", s.shown)).set_mode(mlua::ChunkMode::Text);
        let r = chunk.exec();
        budget.disarm();
        r.map_err(|e| {
            classify(e, &budget, &s.limits).map_or_else(
                || PluginError::load(&s.shown, "script failed"),
                |pe| match pe {
                    PluginError::Trap { message } => PluginError::load(&s.shown, message),
                    other => other,
                },
            )
        })?;

        let globals = lua.globals();
        let mut manifest = Manifest::new(s.name.clone(), "0.0.0", s.kind);
        if let Ok(Value::Table(p)) = globals.get::<Value>("PLUGIN") {
            if let Ok(n) = p.get::<String>("name") {
                manifest.name = n;
            }
            if let Ok(v) = p.get::<String>("version") {
                manifest.version = v;
            }
            if let Ok(Some(abi)) = p.get::<Option<u32>>("abi") {
                if abi != PLUGIN_ABI_VERSION {
                    return Err(PluginError::AbiMismatch {
                        found: abi,
                        supported: PLUGIN_ABI_VERSION,
                        detail: "PLUGIN.abi of the script".into(),
                    });
                }
            }
        }
        let (single, batch) = match s.kind {
            PluginKind::Filter => ("filter", "filter_batch"),
            PluginKind::QueueSelector => ("select", "select_batch"),
            PluginKind::Allocation => ("allocate", "allocate"),
            PluginKind::TxnCheck => ("check", "check"),
        };
        let (entry, is_batch) = match (globals.get::<Option<Function>>(batch), globals.get::<Option<Function>>(single))
        {
            (Ok(Some(f)), _) if batch != single => (f, true),
            (_, Ok(Some(f))) => (f, false),
            _ => {
                return Err(PluginError::load(
                    &s.shown,
                    format!(
                        "a {} script must define function {single}{}",
                        s.kind,
                        if batch != single { format!(" or {batch}") } else { String::new() }
                    ),
                ))
            }
        };
        let needs_body = matches!(globals.get::<Value>("NEEDS_BODY"), Ok(Value::Boolean(true)));
        if needs_body {
            manifest.flags |= FLAG_NEEDS_BODY;
        }
        let mut used = [false; FIELDS.len()];
        for (u, (name, _)) in used.iter_mut().zip(FIELDS) {
            *u = s.source.contains(name);
        }
        used[FIELDS.len() - 1] &= needs_body;
        // The frame then carries only what the script reads.
        let fields = FIELDS.iter().zip(used).filter(|(_, u)| *u).fold(MessageFields::NONE, |all, ((_, f), _)| all | *f);
        manifest.declare_fields(fields);

        if let Some(init) = globals.get::<Option<Function>>("init").map_err(load_err)? {
            let cfg = lua.create_table().map_err(load_err)?;
            for (k, v) in &s.config {
                cfg.set(k.as_str(), v.as_str()).map_err(load_err)?;
            }
            budget.arm(s.limits.deadline.max(Duration::from_secs(1)), s.limits.instructions);
            let r = init.call::<Value>(cfg);
            budget.disarm();
            match r {
                Ok(Value::Boolean(false)) => return Err(PluginError::init("init returned false")),
                Ok(_) => {}
                Err(e) => {
                    return Err(PluginError::init(
                        classify(e, &budget, &s.limits).map_or_else(String::new, |e| e.to_string()),
                    ))
                }
            }
        }
        let msgs = lua.create_table().map_err(load_err)?;
        let sub = lua.create_table().map_err(load_err)?;
        Ok(Vm {
            lua,
            budget,
            used,
            entry,
            batch: is_batch,
            msgs,
            msg_tables: std::cell::RefCell::new(Vec::new()),
            sub,
            manifest,
            limits: s.limits,
        })
    }

    /// Message table `i` (1-based), created on first use and kept for later calls.
    fn msg_table(&self, i: usize) -> mlua::Result<Table> {
        let mut tables = self.msg_tables.borrow_mut();
        while tables.len() < i {
            let t = self.lua.create_table_with_capacity(0, 16)?;
            self.msgs.raw_set(tables.len() + 1, &t)?;
            tables.push(t);
        }
        Ok(tables[i - 1].clone())
    }

    fn fill(&self, t: &Table, m: &MessageRef<'_>) -> mlua::Result<()> {
        let u = &self.used;
        let lua = &self.lua;
        // `&str` values are pushed straight onto the Lua stack (no registry reference).
        macro_rules! str_field {
            ($i:expr, $name:expr, $v:expr) => {
                if u[$i] {
                    t.raw_set($name, $v)?;
                }
            };
        }
        macro_rules! int_field {
            ($i:expr, $name:expr, $v:expr) => {
                if u[$i] {
                    t.raw_set($name, $v)?;
                }
            };
        }
        str_field!(0, "topic", m.topic());
        str_field!(1, "tags", m.tags());
        str_field!(2, "keys", m.keys());
        int_field!(3, "tags_code", m.tags_code());
        int_field!(4, "queue_id", m.queue_id());
        int_field!(5, "queue_offset", m.queue_offset());
        int_field!(6, "commit_log_offset", m.commit_log_offset());
        int_field!(7, "store_timestamp", m.store_timestamp());
        int_field!(8, "born_timestamp", m.born_timestamp());
        int_field!(9, "reconsume_times", m.reconsume_times());
        int_field!(10, "body_size", m.body_size());
        int_field!(11, "check_count", m.check_count());
        if u[12] {
            t.raw_set("arg", lua.create_string(m.arg())?)?;
        }
        if u[13] {
            let props = lua.create_table()?;
            for (k, v) in m.properties() {
                props.raw_set(k, v)?;
            }
            t.raw_set("props", props)?;
        }
        if u[14] {
            match m.body() {
                Some(b) => t.raw_set("body", lua.create_string(b)?)?,
                None => t.raw_set("body", Value::Nil)?,
            }
        }
        Ok(())
    }

    fn fill_batch(&self, f: &Frame<'_>) -> mlua::Result<()> {
        if !f.is_empty() {
            self.msg_table(f.len())?;
        }
        let tables = self.msg_tables.borrow();
        for (t, m) in tables.iter().zip(f.messages()) {
            self.fill(t, &m)?;
        }
        Ok(())
    }

    fn queues_table(&self, queues: plugin_api::frame::QueuesRef<'_>) -> mlua::Result<Table> {
        let t = self.lua.create_table_with_capacity(queues.len(), 0)?;
        for (i, q) in queues.iter().enumerate() {
            let e = self.lua.create_table_with_capacity(0, 5)?;
            e.raw_set("broker_name", q.broker_name)?;
            e.raw_set("queue_id", q.queue_id)?;
            e.raw_set("perm", q.perm)?;
            e.raw_set("writable", q.is_writable())?;
            e.raw_set("zone", q.zone)?;
            t.raw_set(i + 1, e)?;
        }
        Ok(t)
    }

    /// A fresh, empty table for a batch's results: a value the script does not set
    /// must read as `nil` (a `BadOutput`), never as a previous call's. Cheaper than
    /// clearing a reused table, which walks every key.
    fn results(&self, n: usize) -> mlua::Result<Table> {
        self.lua.create_table_with_capacity(n, 0)
    }

    /// Runs script code under the memory cap.
    ///
    /// The cap is lifted while the host marshals a batch in and out: with a cap set,
    /// mlua turns every host-side table write into a protected call, which made
    /// marshalling cost ~400 ns per message. Host allocations are bounded by the batch
    /// (tables are reused); everything the script allocates happens under the cap.
    fn script<R>(&self, f: impl FnOnce() -> mlua::Result<R>) -> mlua::Result<R> {
        let _ = self.lua.set_memory_limit(self.memory_cap());
        let r = f();
        let _ = self.lua.set_memory_limit(0);
        r
    }

    fn memory_cap(&self) -> usize {
        usize::try_from(self.limits.memory_bytes).unwrap_or(usize::MAX)
    }

    /// Runs one frame; output bytes go to `out`.
    fn run(&self, f: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), PluginError> {
        let _ = self.lua.set_memory_limit(0);
        let r = self.run_unbounded(f, out);
        let _ = self.lua.set_memory_limit(self.memory_cap());
        r
    }

    fn run_unbounded(&self, f: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), PluginError> {
        out.clear();
        let n = f.len();
        let r: mlua::Result<Result<(), PluginError>> = (|| match f.call() {
            Call::Filter => {
                let ctx = f.filter_context();
                self.sub.raw_set("topic", ctx.topic)?;
                self.sub.raw_set("group", ctx.group)?;
                self.sub.raw_set("expression_type", ctx.expression_type)?;
                self.sub.raw_set("expression", ctx.expression)?;
                if self.batch {
                    self.fill_batch(f)?;
                    let results = self.results(n)?;
                    self.script(|| self.entry.call::<()>((&self.msgs, n, &results, &self.sub)))?;
                    for i in 1..=n {
                        out.push(verdict(results.raw_get::<Value>(i)?, i).map_err(mlua::Error::external)? as u8);
                    }
                } else {
                    let t = self.msg_table(1)?;
                    for m in f.messages() {
                        self.fill(&t, &m)?;
                        let v = self.script(|| self.entry.call::<Value>((&t, &self.sub)))?;
                        out.push(verdict(v, out.len() + 1).map_err(mlua::Error::external)? as u8);
                    }
                }
                Ok(Ok(()))
            }
            Call::Select => {
                let queues = f.select().queues;
                let qt = self.queues_table(queues)?;
                let mut push = |v: Value, i: usize| -> Result<(), PluginError> {
                    let q = match v {
                        Value::Integer(q) if q >= 1 && (q as usize) <= queues.len() => (q - 1) as u32,
                        Value::Nil => NO_QUEUE,
                        other => {
                            return Err(PluginError::bad_output(format!(
                                "select returned {other:?} for message {i} ({} queues)",
                                queues.len()
                            )))
                        }
                    };
                    out.extend_from_slice(&q.to_le_bytes());
                    Ok(())
                };
                if self.batch {
                    self.fill_batch(f)?;
                    let results = self.results(n)?;
                    self.script(|| self.entry.call::<()>((&self.msgs, n, &qt, &results)))?;
                    for i in 1..=n {
                        if let Err(e) = push(results.raw_get(i)?, i) {
                            return Ok(Err(e));
                        }
                    }
                } else {
                    let t = self.msg_table(1)?;
                    for (i, m) in f.messages().enumerate() {
                        self.fill(&t, &m)?;
                        if let Err(e) = push(self.script(|| self.entry.call::<Value>((&t, &qt)))?, i + 1) {
                            return Ok(Err(e));
                        }
                    }
                }
                Ok(Ok(()))
            }
            Call::Allocate => {
                let a = f.allocate();
                let ctx = self.lua.create_table()?;
                ctx.raw_set("group", a.group)?;
                ctx.raw_set("current_client", a.current_client)?;
                ctx.raw_set("current_index", a.current_index.map(|i| i + 1))?;
                ctx.raw_set("queues", self.queues_table(a.queues())?)?;
                let clients = self.lua.create_table()?;
                for (i, c) in a.clients().iter().enumerate() {
                    let e = self.lua.create_table()?;
                    e.raw_set("client_id", c.client_id)?;
                    e.raw_set("zone", c.zone)?;
                    clients.raw_set(i + 1, e)?;
                }
                ctx.raw_set("clients", clients)?;
                let Value::Table(result) = self.script(|| self.entry.call::<Value>(ctx))? else {
                    return Ok(Err(PluginError::bad_output("allocate must return a table of queue indices")));
                };
                for v in result.sequence_values::<Value>() {
                    match v? {
                        Value::Integer(q) if q >= 1 && (q as usize) <= a.queues().len() => {
                            out.extend_from_slice(&((q - 1) as u32).to_le_bytes())
                        }
                        other => {
                            return Ok(Err(PluginError::bad_output(format!(
                                "allocate returned queue {other:?} ({} queues)",
                                a.queues().len()
                            ))))
                        }
                    }
                }
                Ok(Ok(()))
            }
            Call::Check => {
                let c = f.check_context();
                let ctx = self.lua.create_table()?;
                ctx.raw_set("now_ms", c.now_ms)?;
                ctx.raw_set("max_checks", c.max_checks)?;
                let t = self.msg_table(1)?;
                let mut buf = vec![0u8; n * frame::layout::decision::SIZE];
                for (i, m) in f.messages().enumerate() {
                    self.fill(&t, &m)?;
                    let (d, ms) = self.script(|| self.entry.call::<(Value, Option<u32>)>((&t, &ctx)))?;
                    let d = match d {
                        Value::String(s) => match &*s.to_str()? {
                            "commit" => CheckDecision::Commit,
                            "rollback" => CheckDecision::Rollback,
                            "ask_producer" | "unknown" => CheckDecision::AskProducer,
                            "defer" => CheckDecision::Defer { ms: ms.unwrap_or(0) },
                            other => return Ok(Err(PluginError::bad_output(format!("check returned {other:?}")))),
                        },
                        other => return Ok(Err(PluginError::bad_output(format!("check returned {other:?}")))),
                    };
                    frame::put_decision(&mut buf, i, d);
                }
                out.extend_from_slice(&buf);
                Ok(Ok(()))
            }
            other => Ok(Err(PluginError::Failed {
                code: plugin_api::status::UNSUPPORTED,
                message: format!("call {}", other.as_str()),
            })),
        })();
        match r {
            Ok(r) => r,
            Err(e) => Err(classify(e, &self.budget, &self.limits).unwrap_or_else(|| PluginError::trap("lua error"))),
        }
    }
}

fn verdict(v: Value, i: usize) -> Result<Verdict, PluginError> {
    match v {
        Value::Boolean(b) => Ok(Verdict::from_bool(b)),
        other => Err(PluginError::bad_output(format!(
            "filter must return a boolean for message {i}, got {}",
            other.type_name()
        ))),
    }
}

/// Maps a Lua error to a plugin error using the budget's flags.
fn classify(e: mlua::Error, budget: &Budget, limits: &Limits) -> Option<PluginError> {
    if budget.timed_out.get() {
        return Some(PluginError::Timeout { deadline: limits.deadline });
    }
    if budget.out_of_instructions.get() {
        return Some(PluginError::InstructionLimit { budget: limits.instructions.unwrap_or(0) });
    }
    if is_memory_error(&e) {
        return Some(PluginError::MemoryLimit { limit: limits.memory_bytes });
    }
    if let Some(pe) = find_plugin_error(&e) {
        return Some(pe);
    }
    Some(PluginError::trap(e.to_string()))
}

fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

fn find_plugin_error(e: &mlua::Error) -> Option<PluginError> {
    match e {
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<PluginError>().cloned(),
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => find_plugin_error(cause),
        _ => None,
    }
}

/// Removes unsafe globals, routes `print` to the log, installs the limit hook and the
/// `pcall` wrappers.
fn sandbox(lua: &Lua, name: &str, budget: &Rc<Budget>) -> mlua::Result<()> {
    let g = lua.globals();
    for k in ["load", "loadfile", "dofile", "require", "collectgarbage", "loadstring"] {
        g.raw_set(k, Value::Nil)?;
    }
    if let Ok(Value::Table(s)) = g.raw_get::<Value>("string") {
        s.raw_set("dump", Value::Nil)?;
    }
    let plugin = name.to_owned();
    g.raw_set(
        "print",
        lua.create_function(move |_, args: mlua::MultiValue| {
            let line: Vec<String> =
                args.iter().map(|v| v.to_string().unwrap_or_else(|_| v.type_name().to_owned())).collect();
            crate::logs::record(&plugin, 3, &line.join("\t"));
            Ok(())
        })?,
    )?;
    // `log(level, message)`, levels as the WASM SDK numbers them (1 error … 5 trace).
    let plugin = name.to_owned();
    g.raw_set(
        "log",
        lua.create_function(move |_, (level, message): (i32, String)| {
            crate::logs::record(&plugin, level, &message);
            Ok(())
        })?,
    )?;
    let b = budget.clone();
    lua.set_global_hook(HookTriggers::new().every_nth_instruction(HOOK_EVERY), move |_, _| {
        let Some(deadline) = b.deadline.get() else { return Ok(VmState::Continue) };
        if b.aborting() {
            return Err(mlua::Error::runtime("plugin call aborted"));
        }
        let used = b.instructions.get() + u64::from(HOOK_EVERY);
        b.instructions.set(used);
        if b.max_instructions.get().is_some_and(|max| used > max) {
            b.out_of_instructions.set(true);
            return Err(mlua::Error::runtime("instruction budget exceeded"));
        }
        if Instant::now() >= deadline {
            b.timed_out.set(true);
            return Err(mlua::Error::runtime("deadline exceeded"));
        }
        Ok(VmState::Continue)
    })?;
    // `pcall`, `xpcall` and `coroutine.resume` would catch the hook's error; re-raise it
    // while the call is aborting.
    let b = budget.clone();
    let aborting = lua.create_function(move |_, ()| Ok(b.aborting()))?;
    let wrap: Function = lua
        .load(
            r#"
            local aborting, pcall, xpcall, resume, error, pack, unpack = ...
            local function check(...)
                if aborting() then error("plugin call aborted", 0) end
                return ...
            end
            return function(f, ...) return check(pcall(f, ...)) end,
                   function(f, h, ...) return check(xpcall(f, h, ...)) end,
                   function(co, ...) return check(resume(co, ...)) end
            "#,
        )
        .set_name("=sandbox")
        .into_function()?;
    let coroutine: Table = g.raw_get("coroutine")?;
    let (p, x, r): (Function, Function, Function) = wrap.call((
        aborting,
        g.raw_get::<Function>("pcall")?,
        g.raw_get::<Function>("xpcall")?,
        coroutine.raw_get::<Function>("resume")?,
        g.raw_get::<Function>("error")?,
        Value::Nil,
        Value::Nil,
    ))?;
    g.raw_set("pcall", p)?;
    g.raw_set("xpcall", x)?;
    coroutine.raw_set("resume", r)?;
    Ok(())
}
