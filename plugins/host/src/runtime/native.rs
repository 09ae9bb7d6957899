//! Native runtime: shared libraries through the C ABI of `plugin_api::native`.
//!
//! Native plugins are trusted code. The host checks the ABI version before using the
//! vtable, runs its side of each call under `catch_unwind` (a Rust plugin built with
//! `sdk-wasm`'s `export_native!` catches its own panics, since a panic may not cross
//! `extern "C"`), measures the timed calls (one in eight, every one once a call failed)
//! against the deadline, and never unloads a library:
//! `dlclose` of Rust libraries with thread-local destructors is unsound. Each load maps a
//! private copy named after the content hash, because `dlopen` caches by path and would
//! otherwise hand a reload the old code.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};

use libloading::Library;
use plugin_api::frame::FrameBuf;
use plugin_api::native::{EntryFnV1, NativePluginV1, ENTRY_SYMBOL, ENTRY_SYMBOL_PREFIX};
use plugin_api::{status, Limits, Manifest, PluginError, PLUGIN_ABI_VERSION};

use super::{config_frame, Backend, Input, LoadedPlugin};

struct NativePlugin {
    vtable: NativePluginV1,
    state: *mut c_void,
}

// SAFETY: the native ABI requires `call` to be safe to invoke concurrently from several
// threads with the same state (plugin-api README §7); the state pointer is only passed
// back to the plugin.
unsafe impl Send for NativePlugin {}
// SAFETY: as above.
unsafe impl Sync for NativePlugin {}

impl Drop for NativePlugin {
    fn drop(&mut self) {
        if let Some(drop) = self.vtable.drop {
            // SAFETY: `state` came from this vtable's `init` and is dropped exactly once.
            let _ = std::panic::catch_unwind(|| unsafe { drop(self.state) });
        }
    }
}

fn private_copy(path: &Path, bytes: &[u8], sha256: &str, cache_dir: Option<&Path>) -> Result<PathBuf, PluginError> {
    let dir = cache_dir.map_or_else(|| std::env::temp_dir().join("ferromq-native-plugins"), |d| d.join("native"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| PluginError::load(path.display().to_string(), format!("{}: {e}", dir.display())))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("so");
    let copy = dir.join(format!("{stem}-{}.{ext}", &sha256[..16]));
    if !copy.exists() {
        let tmp = copy.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &copy))
            .map_err(|e| PluginError::load(path.display().to_string(), format!("{}: {e}", copy.display())))?;
    }
    Ok(copy)
}

pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    sha256: &str,
    cache_dir: Option<&Path>,
    _limits: Limits,
    config: &BTreeMap<String, String>,
) -> Result<LoadedPlugin, PluginError> {
    let shown = path.display().to_string();
    let copy = private_copy(path, bytes, sha256, cache_dir)?;
    // SAFETY: loading a library runs its initialisers; native plugins are trusted by
    // configuration (`allow_native`), which is the documented contract.
    let lib = unsafe { Library::new(&copy) }.map_err(|e| PluginError::load(&shown, e.to_string()))?;
    // SAFETY: the symbol's type is fixed by the ABI (`EntryFnV1`).
    let entry = match unsafe { lib.get::<EntryFnV1>(ENTRY_SYMBOL.as_bytes()) } {
        Ok(f) => *f,
        Err(_) => {
            let other = (0..=16u32).filter(|v| *v != PLUGIN_ABI_VERSION).find(|v| {
                // SAFETY: only probing for the symbol's presence; it is not called.
                unsafe { lib.get::<*const c_void>(format!("{ENTRY_SYMBOL_PREFIX}{v}").as_bytes()) }.is_ok()
            });
            return Err(match other {
                Some(found) => PluginError::AbiMismatch {
                    found,
                    supported: PLUGIN_ABI_VERSION,
                    detail: format!("library exports {ENTRY_SYMBOL_PREFIX}{found}, not {ENTRY_SYMBOL}"),
                },
                None => PluginError::load(&shown, format!("not a FerroMQ plugin: no {ENTRY_SYMBOL} symbol")),
            });
        }
    };
    // Never unloaded (see the module docs).
    std::mem::forget(lib);
    // SAFETY: calling the plugin's entry point, per the ABI.
    let table =
        std::panic::catch_unwind(|| unsafe { entry() }).map_err(|_| PluginError::trap("entry point panicked"))?;
    if table.is_null() {
        return Err(PluginError::load(&shown, "entry point returned NULL"));
    }
    // SAFETY: the first two fields are read before trusting the rest of the layout; the
    // pointer stays valid because the library is never unloaded.
    let (abi, size) = unsafe { ((*table.cast::<u32>()), *table.cast::<u32>().add(1)) };
    if abi != PLUGIN_ABI_VERSION {
        return Err(PluginError::AbiMismatch {
            found: abi,
            supported: PLUGIN_ABI_VERSION,
            detail: "native vtable abi_version".into(),
        });
    }
    if size < NativePluginV1::SIZE {
        return Err(PluginError::AbiMismatch {
            found: abi,
            supported: PLUGIN_ABI_VERSION,
            detail: format!("native vtable of {size} bytes is shorter than v1 ({})", NativePluginV1::SIZE),
        });
    }
    // SAFETY: version and size checked; fields are plain function pointers.
    let vtable = unsafe { *table };

    let mut buf = vec![0u8; 4096];
    let manifest = loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = catch(|| unsafe { (vtable.describe)(buf.as_mut_ptr(), buf.len() as u32) })?;
        if n < 0 {
            return Err(PluginError::init(format!("describe returned {n}")));
        }
        let n = n as usize;
        if n > plugin_api::manifest::MAX_MANIFEST_LEN {
            return Err(PluginError::init(format!("manifest of {n} bytes is too large")));
        }
        if n > buf.len() {
            buf.resize(n, 0);
            continue;
        }
        break Manifest::decode(&buf[..n])?;
    };

    let cfg = config_frame(config)?;
    let mut state: *mut c_void = std::ptr::null_mut();
    // SAFETY: `cfg` is valid for its length; `state` is a valid out pointer.
    let rc = catch(|| unsafe { (vtable.init)(cfg.as_ptr(), cfg.len() as u32, &mut state) })?;
    let plugin = NativePlugin { vtable, state };
    if rc != status::OK {
        let msg = plugin.last_error();
        return Err(PluginError::init(if msg.is_empty() { format!("init returned {rc}") } else { msg }));
    }
    Ok(LoadedPlugin { backend: Box::new(plugin), manifest })
}

fn catch<T>(f: impl FnOnce() -> T) -> Result<T, PluginError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| PluginError::trap("native plugin panicked"))
}

impl NativePlugin {
    fn last_error(&self) -> String {
        let Some(f) = self.vtable.last_error else { return String::new() };
        let mut buf = vec![0u8; 1024];
        // SAFETY: `buf` is valid for its length; `state` belongs to this vtable.
        match catch(|| unsafe { f(self.state, buf.as_mut_ptr(), buf.len() as u32) }) {
            Ok(n) if n > 0 => {
                buf.truncate((n as usize).min(1024));
                String::from_utf8_lossy(&buf).into_owned()
            }
            _ => String::new(),
        }
    }
}

impl Backend for NativePlugin {
    fn invoke(
        &self,
        input: &Input<'_>,
        scratch: &mut FrameBuf,
        out_cap: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, PluginError> {
        let frame = input.bytes(scratch);
        // Grown, never shrunk: the plugin writes into it, so its old bytes need no
        // zeroing on every call.
        if out.len() < out_cap {
            out.resize(out_cap, 0);
        }
        // The ABI promises an 8-aligned input; a Vec<u8> allocation is at least 8-aligned
        // with every allocator we ship, but copy if not rather than break the promise.
        let aligned;
        let input: &[u8] = if (frame.as_ptr() as usize).is_multiple_of(8) {
            frame
        } else {
            aligned = frame
                .chunks(8)
                .map(|c| {
                    let mut w = [0u8; 8];
                    w[..c.len()].copy_from_slice(c);
                    u64::from_ne_bytes(w)
                })
                .collect::<Vec<u64>>();
            // SAFETY: reinterpreting a u64 buffer as at least `frame.len()` bytes.
            unsafe { std::slice::from_raw_parts(aligned.as_ptr().cast::<u8>(), frame.len()) }
        };
        // SAFETY: input and output buffers are valid for the lengths passed.
        let n = catch(|| unsafe {
            (self.vtable.call)(self.state, input.as_ptr(), input.len() as u32, out.as_mut_ptr(), out_cap as u32)
        })?;
        if n < 0 {
            return Err(if n == status::PANIC {
                PluginError::trap(format!("native plugin panicked: {}", self.last_error()))
            } else {
                PluginError::Failed { code: n, message: self.last_error() }
            });
        }
        let n = n as usize;
        if n > out_cap {
            return Err(PluginError::bad_output(format!("call returned {n} bytes, the output area has {out_cap}")));
        }
        Ok(n)
    }
}
