//! Runtime glue used by the generated code. Not a stable API: use the macros.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;

use plugin_api::frame::{self, Call, Frame};
use plugin_api::{status, CheckContext, CheckDecision, CqUnit, FilterContext, PluginKind, Verdict};

use crate::{AllocateContext, Config, FromConfig, Message, PluginDef, SelectContext, State};

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `e` as the last error (for `fmq_last_error`) and returns `value`.
pub fn record_error<T>(e: &dyn fmt::Display, value: T) -> T {
    set_last_error(e.to_string());
    value
}

/// Sets the message `fmq_last_error` returns.
pub fn set_last_error(message: String) {
    LAST_ERROR.with(|l| *l.borrow_mut() = message);
}

/// Copies the last error into `out`; returns the number of bytes written.
pub fn last_error_into(out: &mut [u8]) -> usize {
    LAST_ERROR.with(|l| {
        let l = l.borrow();
        let n = l.len().min(out.len());
        out[..n].copy_from_slice(&l.as_bytes()[..n]);
        n
    })
}

/// `init` for a state type.
///
/// # Errors
/// The state's config error.
pub fn init_state<S: FromConfig + Send + Sync + 'static>(config: &Config) -> Result<State, String> {
    S::from_config(config).map(|s| Box::new(s) as State)
}

/// The typed state.
///
/// # Panics
/// If the state is not an `S` (the macros guarantee it is).
pub fn state<S: 'static>(state: &(dyn Any + Send + Sync)) -> &S {
    state.downcast_ref::<S>().expect("plugin state has the type its init produced")
}

fn check_out(out: &[u8], need: usize) -> Result<(), i32> {
    if out.len() < need {
        return Err(status::OUTPUT_TOO_SMALL);
    }
    Ok(())
}

/// The filter batch loop (and pre-filter, when given).
///
/// # Errors
/// A status code.
pub fn run_filter(
    f: &Frame<'_>,
    out: &mut [u8],
    filter: impl Fn(&FilterContext<'_>, &Message<'_>) -> Verdict,
    prefilter: Option<impl Fn(&CqUnit) -> Verdict>,
) -> Result<usize, i32> {
    let ctx = f.filter_context();
    let n = f.len();
    check_out(out, n)?;
    match (f.call(), prefilter) {
        (Call::Filter, _) => {
            for (o, m) in out.iter_mut().zip(f.messages()) {
                *o = filter(&ctx, &m) as u8;
            }
        }
        (Call::Prefilter, Some(pre)) => {
            for (i, o) in out.iter_mut().enumerate().take(n) {
                *o = f.cq_unit(i).map_or(Verdict::Accept, |u| pre(&u)) as u8;
            }
        }
        _ => return Err(status::UNSUPPORTED),
    }
    Ok(n)
}

/// The selector batch loop.
///
/// # Errors
/// A status code.
pub fn run_select(
    f: &Frame<'_>,
    out: &mut [u8],
    select: impl Fn(&SelectContext<'_>, &Message<'_>) -> u32,
) -> Result<usize, i32> {
    if f.call() != Call::Select {
        return Err(status::UNSUPPORTED);
    }
    let ctx = f.select();
    check_out(out, f.len() * 4)?;
    for (i, m) in f.messages().enumerate() {
        frame::put_u32_le(out, i, select(&ctx, &m));
    }
    Ok(f.len() * 4)
}

/// The allocation call.
///
/// # Errors
/// A status code (`FAILED` with the message recorded).
pub fn run_allocate(
    f: &Frame<'_>,
    out: &mut [u8],
    allocate: impl Fn(&AllocateContext<'_>) -> Result<Vec<u32>, String>,
) -> Result<usize, i32> {
    if f.call() != Call::Allocate {
        return Err(status::UNSUPPORTED);
    }
    let assigned = allocate(&f.allocate()).map_err(|e| record_error(&e, status::FAILED))?;
    check_out(out, assigned.len() * 4)?;
    for (i, q) in assigned.iter().enumerate() {
        frame::put_u32_le(out, i, *q);
    }
    Ok(assigned.len() * 4)
}

/// The check-back batch loop.
///
/// # Errors
/// A status code.
pub fn run_check(
    f: &Frame<'_>,
    out: &mut [u8],
    check: impl Fn(&CheckContext, &Message<'_>) -> CheckDecision,
) -> Result<usize, i32> {
    if f.call() != Call::Check {
        return Err(status::UNSUPPORTED);
    }
    let ctx = f.check_context();
    let need = f.len() * frame::layout::decision::SIZE;
    check_out(out, need)?;
    for (i, m) in f.messages().enumerate() {
        frame::put_decision(out, i, check(&ctx, &m));
    }
    Ok(need)
}

/// `describe` into `out`: the manifest length (nothing written when it does not fit).
pub fn describe(def: &PluginDef, out: &mut [u8]) -> i32 {
    let m = def.manifest().encode();
    if m.len() <= out.len() {
        out[..m.len()].copy_from_slice(&m);
    }
    m.len() as i32
}

/// `init` from a config frame: the new state, or a status code (message recorded).
///
/// # Errors
/// A status code.
pub fn init(def: &PluginDef, config_frame: &[u8]) -> Result<State, i32> {
    let f = Frame::parse(config_frame).map_err(|e| record_error(&e, status::BAD_INPUT))?;
    if f.call() != Call::Init {
        return Err(record_error(&"init expects an init frame", status::BAD_INPUT));
    }
    let config = Config::from_pairs(f.config().iter());
    (def.init)(&config).map_err(|e| record_error(&e, status::FAILED))
}

/// `call`: parses the frame, checks it is for this kind, runs the plugin.
pub fn call(def: &PluginDef, state: Option<&(dyn Any + Send + Sync)>, input: &[u8], out: &mut [u8]) -> i32 {
    let Some(state) = state else {
        return record_error(&"call before a successful init", status::NOT_INITIALIZED);
    };
    let f = match Frame::parse(input) {
        Ok(f) => f,
        Err(e) => return record_error(&e, status::BAD_INPUT),
    };
    if f.call().kind() != Some(def.kind) {
        return record_error(
            &format_args!("a {} plugin cannot answer {}", def.kind, f.call().as_str()),
            status::UNSUPPORTED,
        );
    }
    match (def.call)(state, &f, out) {
        Ok(n) => n as i32,
        Err(code) => code,
    }
}

/// Whether a kind has a given call (used by docs and tests).
pub fn kind_of(call: Call) -> Option<PluginKind> {
    call.kind()
}

// ----------------------------------------------------------------------------- wasm32

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::cell::UnsafeCell;

    use super::State;

    /// The single instance's state (wasm32 instances are single-threaded).
    pub struct StateCell(pub UnsafeCell<Option<State>>);
    // SAFETY: a wasm32 instance has one thread; the host never calls it concurrently.
    unsafe impl Sync for StateCell {}
    pub static STATE: StateCell = StateCell(UnsafeCell::new(None));

    #[link(wasm_import_module = "fmq_host_v1")]
    extern "C" {
        pub fn log(level: i32, ptr: i32, len: i32);
    }
}

/// Logs through the host.
pub fn host_log(level: i32, message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads `len` bytes at `ptr` from this instance's memory.
    unsafe {
        wasm::log(level, message.as_ptr() as i32, message.len() as i32)
    };
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[plugin log {level}] {message}");
}

/// `fmq_alloc`: 8-aligned, never freed (the host allocates rarely and reuses).
#[cfg(target_arch = "wasm32")]
pub fn wasm_alloc(size: i32) -> i32 {
    let Ok(layout) = std::alloc::Layout::from_size_align(size.max(1) as usize, 8) else { return 0 };
    // SAFETY: non-zero size; the memory is handed to the host per the ABI.
    unsafe { std::alloc::alloc(layout) as i32 }
}

/// # Safety
/// `(ptr, len)` must be a region of this instance's memory (the ABI guarantees it).
#[cfg(target_arch = "wasm32")]
unsafe fn region<'a>(ptr: i32, len: i32) -> &'a mut [u8] {
    if len <= 0 {
        return &mut [];
    }
    std::slice::from_raw_parts_mut(ptr as usize as *mut u8, len as usize)
}

/// `fmq_describe`.
#[cfg(target_arch = "wasm32")]
pub fn wasm_describe(def: &PluginDef, out: i32, cap: i32) -> i32 {
    // SAFETY: the host passes an output area of `cap` bytes.
    describe(def, unsafe { region(out, cap) })
}

/// `fmq_init`.
#[cfg(target_arch = "wasm32")]
pub fn wasm_init(def: &PluginDef, ptr: i32, len: i32) -> i32 {
    // SAFETY: the host passes the init frame.
    match init(def, unsafe { region(ptr, len) }) {
        Ok(s) => {
            // SAFETY: single-threaded instance, no outstanding borrows during init.
            unsafe { *wasm::STATE.0.get() = Some(s) };
            status::OK
        }
        Err(code) => code,
    }
}

/// `fmq_call`.
#[cfg(target_arch = "wasm32")]
pub fn wasm_call(def: &PluginDef, ptr: i32, len: i32, out: i32, cap: i32) -> i32 {
    // SAFETY: single-threaded instance; the state is only replaced by `fmq_init`.
    let state = unsafe { (*wasm::STATE.0.get()).as_deref() };
    // SAFETY: the host passes non-overlapping input and output regions.
    let (input, output) = unsafe { (region(ptr, len), region(out, cap)) };
    call(def, state, input, output)
}

/// `fmq_last_error`.
#[cfg(target_arch = "wasm32")]
pub fn wasm_last_error(out: i32, cap: i32) -> i32 {
    // SAFETY: the host passes an output area of `cap` bytes.
    last_error_into(unsafe { region(out, cap) }) as i32
}

/// Generates the WASM exports for a [`PluginDef`] (the attribute macros call it).
#[macro_export]
macro_rules! export_wasm {
    ($def:path) => {
        #[no_mangle]
        pub extern "C" fn fmq_abi_v1() {}
        #[no_mangle]
        pub extern "C" fn fmq_alloc(size: i32) -> i32 {
            $crate::rt::wasm_alloc(size)
        }
        #[no_mangle]
        pub extern "C" fn fmq_describe(out: i32, cap: i32) -> i32 {
            $crate::rt::wasm_describe(&$def, out, cap)
        }
        #[no_mangle]
        pub extern "C" fn fmq_init(ptr: i32, len: i32) -> i32 {
            $crate::rt::wasm_init(&$def, ptr, len)
        }
        #[no_mangle]
        pub extern "C" fn fmq_call(ptr: i32, len: i32, out: i32, cap: i32) -> i32 {
            $crate::rt::wasm_call(&$def, ptr, len, out, cap)
        }
        #[no_mangle]
        pub extern "C" fn fmq_last_error(out: i32, cap: i32) -> i32 {
            $crate::rt::wasm_last_error(out, cap)
        }
    };
}

// ----------------------------------------------------------------------------- native

/// Native `describe` (panic-safe).
///
/// # Safety
/// `out` valid for `cap` bytes.
pub unsafe fn native_describe(def: &PluginDef, out: *mut u8, cap: u32) -> i32 {
    let out = if cap == 0 || out.is_null() { &mut [][..] } else { std::slice::from_raw_parts_mut(out, cap as usize) };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| describe(def, out))).unwrap_or(status::PANIC)
}

/// Native `init` (panic-safe): stores a `Box<State>` in `*state`.
///
/// # Safety
/// `cfg` valid for `len` bytes, `state` a valid out pointer.
pub unsafe fn native_init(def: &PluginDef, cfg: *const u8, len: u32, state: *mut *mut std::ffi::c_void) -> i32 {
    let input = if len == 0 || cfg.is_null() { &[][..] } else { std::slice::from_raw_parts(cfg, len as usize) };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| init(def, input))) {
        Ok(Ok(s)) => {
            *state = Box::into_raw(Box::new(s)).cast();
            status::OK
        }
        Ok(Err(code)) => code,
        Err(_) => record_error(&"panic in init", status::PANIC),
    }
}

/// Native `call` (panic-safe).
///
/// # Safety
/// `state` from [`native_init`]; `input`/`out` valid for their lengths.
pub unsafe fn native_call(
    def: &PluginDef,
    state: *mut std::ffi::c_void,
    input: *const u8,
    len: u32,
    out: *mut u8,
    cap: u32,
) -> i32 {
    let st: Option<&(dyn Any + Send + Sync)> = (!state.is_null()).then(|| &**(state as *const State));
    let input = if len == 0 || input.is_null() { &[][..] } else { std::slice::from_raw_parts(input, len as usize) };
    let out = if cap == 0 || out.is_null() { &mut [][..] } else { std::slice::from_raw_parts_mut(out, cap as usize) };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(def, st, input, out))).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        record_error(&format_args!("panic: {msg}"), status::PANIC)
    })
}

/// Native `last_error`.
///
/// # Safety
/// `out` valid for `cap` bytes.
pub unsafe fn native_last_error(out: *mut u8, cap: u32) -> i32 {
    if cap == 0 || out.is_null() {
        return 0;
    }
    last_error_into(std::slice::from_raw_parts_mut(out, cap as usize)) as i32
}

/// Native `drop`.
///
/// # Safety
/// `state` from [`native_init`], dropped once.
pub unsafe fn native_drop(state: *mut std::ffi::c_void) {
    if !state.is_null() {
        drop(Box::from_raw(state as *mut State));
    }
}

/// Exports the plugin of this crate as a native plugin (`ferromq_plugin_entry_v1`).
/// Put `sdk_wasm::export_native!();` in a `cdylib` crate that uses one of the attribute
/// macros.
#[macro_export]
macro_rules! export_native {
    () => {
        $crate::export_native!(FERROMQ_PLUGIN);
    };
    ($def:path) => {
        #[no_mangle]
        pub extern "C" fn ferromq_plugin_entry_v1() -> *const $crate::plugin_api::native::NativePluginV1 {
            unsafe extern "C" fn describe(out: *mut u8, cap: u32) -> i32 {
                $crate::rt::native_describe(&$def, out, cap)
            }
            unsafe extern "C" fn init(cfg: *const u8, len: u32, state: *mut *mut ::std::ffi::c_void) -> i32 {
                $crate::rt::native_init(&$def, cfg, len, state)
            }
            unsafe extern "C" fn call(
                state: *mut ::std::ffi::c_void,
                input: *const u8,
                len: u32,
                out: *mut u8,
                cap: u32,
            ) -> i32 {
                $crate::rt::native_call(&$def, state, input, len, out, cap)
            }
            unsafe extern "C" fn last_error(_state: *mut ::std::ffi::c_void, out: *mut u8, cap: u32) -> i32 {
                $crate::rt::native_last_error(out, cap)
            }
            unsafe extern "C" fn drop_state(state: *mut ::std::ffi::c_void) {
                $crate::rt::native_drop(state)
            }
            static VTABLE: $crate::plugin_api::native::NativePluginV1 = $crate::plugin_api::native::NativePluginV1::new(
                describe,
                init,
                call,
                Some(last_error),
                Some(drop_state),
            );
            &VTABLE
        }
    };
}
