//! The native (shared library) boundary: a C ABI entry symbol returning a vtable.
//!
//! ```c
//! typedef struct fmq_native_v1 {
//!     uint32_t abi_version;   /* FMQ_ABI_VERSION = 1: checked before anything else   */
//!     uint32_t struct_size;   /* sizeof(fmq_native_v1) = 48 on 64-bit targets         */
//!     int32_t (*describe)(uint8_t *out, uint32_t out_cap);
//!     int32_t (*init)(const uint8_t *cfg, uint32_t cfg_len, void **state);
//!     int32_t (*call)(void *state, const uint8_t *in, uint32_t in_len,
//!                     uint8_t *out, uint32_t out_cap);
//!     int32_t (*last_error)(void *state, uint8_t *out, uint32_t out_cap); /* may be NULL */
//!     void    (*drop)(void *state);                                        /* may be NULL */
//! } fmq_native_v1;
//!
//! const fmq_native_v1 *ferromq_plugin_entry_v1(void);
//! ```
//!
//! The host reads `abi_version` and `struct_size` first and refuses the library when the
//! version differs or the table is shorter than v1, so a newer plugin that appended
//! functions still loads on an older host of the same major. The frames passed to `init`
//! and `call`, the manifest written by `describe`, and the outputs are exactly those of
//! the WASM boundary (see the crate README). `call` may be invoked concurrently from
//! several threads with the same `state`. Native plugins are trusted code: nothing stops
//! them from corrupting the broker's memory, and they are never unloaded.

use std::ffi::c_void;

use crate::PLUGIN_ABI_VERSION;

/// The entry symbol of ABI v1.
pub const ENTRY_SYMBOL: &str = "ferromq_plugin_entry_v1";
/// Prefix of entry symbols of every major version (`ferromq_plugin_entry_v<N>`); the
/// host looks for other majors only to report a clear mismatch.
pub const ENTRY_SYMBOL_PREFIX: &str = "ferromq_plugin_entry_v";

/// `describe`: writes the manifest to `out`; returns its length, or the required length
/// when it exceeds `out_cap` (then nothing is written), or a negative status.
pub type DescribeFn = unsafe extern "C" fn(out: *mut u8, out_cap: u32) -> i32;
/// `init`: reads the config frame and creates the plugin state; returns 0 or a negative
/// status. `*state` may be set even on failure so `last_error` can explain.
pub type InitFn = unsafe extern "C" fn(cfg: *const u8, cfg_len: u32, state: *mut *mut c_void) -> i32;
/// `call`: runs one frame; returns the number of output bytes written, or a negative
/// status.
pub type CallFn =
    unsafe extern "C" fn(state: *mut c_void, input: *const u8, in_len: u32, out: *mut u8, out_cap: u32) -> i32;
/// `last_error`: writes a UTF-8 message about the last failure on this thread/state;
/// returns its length (truncated to `out_cap`) or a negative status.
pub type LastErrorFn = unsafe extern "C" fn(state: *mut c_void, out: *mut u8, out_cap: u32) -> i32;
/// `drop`: releases the state (the host calls it when the plugin is retired; the library
/// itself stays loaded).
pub type DropFn = unsafe extern "C" fn(state: *mut c_void);
/// The entry function.
pub type EntryFnV1 = unsafe extern "C" fn() -> *const NativePluginV1;

/// The v1 vtable (`fmq_native_v1`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NativePluginV1 {
    /// Must be [`PLUGIN_ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<NativePluginV1>()` of the plugin's build; at least the v1 size.
    pub struct_size: u32,
    /// See [`DescribeFn`].
    pub describe: DescribeFn,
    /// See [`InitFn`].
    pub init: InitFn,
    /// See [`CallFn`].
    pub call: CallFn,
    /// See [`LastErrorFn`].
    pub last_error: Option<LastErrorFn>,
    /// See [`DropFn`].
    pub drop: Option<DropFn>,
}

impl NativePluginV1 {
    /// The v1 struct size on this target.
    pub const SIZE: u32 = std::mem::size_of::<NativePluginV1>() as u32;

    /// A vtable for this ABI version.
    pub const fn new(
        describe: DescribeFn,
        init: InitFn,
        call: CallFn,
        last_error: Option<LastErrorFn>,
        drop: Option<DropFn>,
    ) -> NativePluginV1 {
        NativePluginV1 {
            abi_version: PLUGIN_ABI_VERSION,
            struct_size: Self::SIZE,
            describe,
            init,
            call,
            last_error,
            drop,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn v1_layout_matches_the_c_declaration() {
        assert_eq!(super::NativePluginV1::SIZE, 48);
        assert_eq!(std::mem::offset_of!(super::NativePluginV1, describe), 8);
        assert_eq!(std::mem::offset_of!(super::NativePluginV1, drop), 40);
    }
}
