//! Per-message filter overhead by runtime, at batch 32 and 1024.
//!
//! All four filters run the same logic — deliver when the tag is in {TagA, TagB} — on
//! the same messages (topic, tags, keys, five properties, no body):
//! - `rust_closure`: a plain Rust closure through `plugin_api::FnFilter` (the baseline,
//!   what a built-in TAG filter costs);
//! - `native`: `plugins/examples/native-tag-filter` as a cdylib through the C ABI;
//! - `wasm`: the same source compiled to `plugins/examples/wasm/tag_set_filter.wasm`;
//! - `lua_batch` / `lua_per_message`: a Lua script using `filter_batch` / `filter`.
//!
//! Each plugin runs through the registry handle, as the broker calls it: breaker check,
//! frame encoding, the call, output validation, counters. A last group calls the C
//! plugin straight through its vtable, to show what the registry adds per call.
//! Criterion reports time per element (message). Figures go to BENCHMARKS.md, section
//! "Plugins".

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "../tests/common/mod.rs"]
mod common;
use plugin_api::types::encode_properties;
use plugin_api::{FilterContext, FnFilter, MessageFields, MessageFilter, MessageView, PluginKind, Runtime, Verdict};
use plugin_host::{PluginConfig, PluginRegistry, PluginsConfig};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn native_lib() -> PathBuf {
    let target_dir = workspace().join("target/plugin-examples");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace())
        .args(["build", "--release", "-p", "native-tag-filter", "--target-dir"])
        .arg(&target_dir)
        .status()
        .expect("cargo");
    assert!(status.success());
    target_dir.join(format!(
        "release/{}native_tag_filter{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

const LUA: &str = r#"
local wanted = { TagA = true, TagB = true }
function filter_batch(msgs, n, out)
  for i = 1, n do out[i] = wanted[msgs[i].tags] == true end
end
"#;

const LUA_SINGLE: &str = r#"
local wanted = { TagA = true, TagB = true }
function filter(m) return wanted[m.tags] == true end
"#;

fn plugin(name: &str, runtime: Runtime, path: PathBuf) -> PluginConfig {
    let mut d = PluginConfig::new(name, PluginKind::Filter, runtime, path);
    d.config.insert("tags".into(), "TagA || TagB".into());
    // Generous: the bench machine is shared; a timeout would abort the run.
    d.limits.deadline = Some(Duration::from_secs(2));
    d
}

fn c_plugin(dir: &std::path::Path) -> PathBuf {
    let out = dir.join("libc_filter.so");
    let src = workspace().join("plugins/host/tests/native/c_filter.c");
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "a C compiler is needed for the native overhead bench");
    out
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("tags.lua");
    std::fs::write(&lua, LUA).unwrap();
    let lua_single = dir.path().join("tags_single.lua");
    std::fs::write(&lua_single, LUA_SINGLE).unwrap();
    let c_lib = c_plugin(dir.path());
    let registry = PluginRegistry::new(PluginsConfig {
        allow_native: true,
        watch: false,
        cache_dir: Some(dir.path().join("cache")),
        plugins: vec![
            plugin("native", Runtime::Native, native_lib()),
            plugin("wasm", Runtime::Wasm, workspace().join("plugins/examples/wasm/tag_set_filter.wasm")),
            plugin("lua-batch", Runtime::Lua, lua),
            plugin("lua-per-message", Runtime::Lua, lua_single),
            plugin("c-first-a", Runtime::Native, c_lib.clone()),
            plugin("wat-first-a", Runtime::Wasm, wat_first_a(dir.path())),
            plugin("lua-first-a", Runtime::Lua, lua_first_a(dir.path())),
        ],
        ..Default::default()
    })
    .unwrap();

    let tags = ["TagA", "TagB", "TagC", "TagD"];
    let props: Vec<Vec<u8>> = (0..1024)
        .map(|i| {
            let uniq = format!("7F0000010001{i:012X}");
            encode_properties([
                ("TAGS", tags[i % 4]),
                ("KEYS", "order-42"),
                ("UNIQ_KEY", uniq.as_str()),
                ("WAIT", "true"),
                ("price", "120"),
            ])
        })
        .collect();
    let msgs: Vec<MessageView<'_>> = (0..1024)
        .map(|i| MessageView {
            topic: "orders",
            tags: tags[i % 4],
            keys: "order-42",
            properties: &props[i],
            body: None,
            body_size: 1024,
            queue_id: 3,
            queue_offset: i as i64,
            commit_log_offset: (i * 1300) as i64,
            store_timestamp: 1_700_000_000_000 + i as i64,
            born_timestamp: 1_700_000_000_000,
            tags_code: plugin_api::builtin::tags_code(tags[i % 4]),
            reconsume_times: 0,
            check_count: 0,
            arg: b"",
        })
        .collect();
    let ctx = FilterContext { topic: "orders", group: "g", expression_type: "TAG", expression: "TagA || TagB" };

    let wanted: std::collections::HashSet<&str> = ["TagA", "TagB"].into_iter().collect();
    let closure = FnFilter(move |_: &FilterContext<'_>, m: &MessageView<'_>| wanted.contains(m.tags));
    let handles: Vec<(&str, Box<dyn MessageFilter>)> = vec![
        ("rust_closure", Box::new(closure)),
        ("native", Box::new(registry.filter("native").unwrap())),
        ("wasm", Box::new(registry.filter("wasm").unwrap())),
        ("lua_batch", Box::new(registry.filter("lua-batch").unwrap())),
        ("lua_per_message", Box::new(registry.filter("lua-per-message").unwrap())),
    ];

    // Group 1: ABI overhead. The logic is trivial (tag starts with 'A'), written by hand in
    // C (native), WAT (wasm) and Lua, so the figures are the cost of crossing the boundary
    // (encode, copy, call, validate) per message.
    let first_a = FnFilter(|_: &FilterContext<'_>, m: &MessageView<'_>| m.tags.as_bytes().first() == Some(&b'A'));
    let trivial: Vec<(&str, Box<dyn MessageFilter>)> = vec![
        ("rust_closure", Box::new(first_a)),
        ("native_c", Box::new(registry.filter("c-first-a").unwrap())),
        ("wasm_wat", Box::new(registry.filter("wat-first-a").unwrap())),
        ("lua_batch", Box::new(registry.filter("lua-first-a").unwrap())),
    ];
    run_group(c, "filter_overhead", &trivial, &ctx, &msgs);

    // Group 2: a realistic plugin: the same Rust source (tag-set lookup) as a closure,
    // a native library and a WASM module built with sdk-wasm, and its Lua equivalent.
    run_group(c, "filter_per_message", &handles, &ctx, &msgs);

    // Group 3: the native ABI without the registry around it.
    floor(c, &c_lib, &ctx, &msgs);

    // Frame encoding and guest-side reading alone: `cargo bench -p plugin-api`.
}

fn wat_first_a(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("first_a.wasm");
    std::fs::write(&p, common::Wat::new(PluginKind::Filter, common::FILTER_TAGS_A).reads(MessageFields::TAGS).bytes())
        .unwrap();
    p
}

fn lua_first_a(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("first_a.lua");
    std::fs::write(
        &p,
        // `string.byte` kept in a local, as Lua code on a hot path does (a global and a
        // field lookup per message otherwise).
        "local byte = string.byte\n\
         function filter_batch(msgs, n, out) for i = 1, n do out[i] = byte(msgs[i].tags, 1) == 65 end end",
    )
    .unwrap();
    p
}

fn run_group(
    c: &mut Criterion,
    name: &str,
    handles: &[(&str, Box<dyn MessageFilter>)],
    ctx: &FilterContext<'_>,
    msgs: &[MessageView<'_>],
) {
    let mut want = vec![Verdict::Error; msgs.len()];
    handles[0].1.filter(ctx, msgs, &mut want).unwrap();
    for (n, h) in handles {
        let mut got = vec![Verdict::Error; msgs.len()];
        if let Err(e) = h.filter(ctx, msgs, &mut got) {
            panic!("{n} failed: {e}");
        }
        assert_eq!(got, want, "{n} disagrees");
    }
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(30);
    for batch in [32usize, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        let input = &msgs[..batch];
        for (n, h) in handles {
            let mut out = vec![Verdict::Error; batch];
            group.bench_with_input(BenchmarkId::new(*n, batch), &input, |b, input| {
                b.iter(|| h.filter(ctx, input, &mut out).unwrap());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// Group 3: the floor under the native row of group 1 — the same C plugin and frame,
/// called straight through its vtable: plan and write the frame (into a reused
/// `FrameBuf`, as the registry does), call, validate the
/// verdicts, and nothing else (no registry: no breaker, counters, timing, version guard
/// or failure policy). The difference to `filter_overhead/native_c` is the registry's
/// per-call cost.
fn floor(c: &mut Criterion, c_lib: &std::path::Path, ctx: &FilterContext<'_>, msgs: &[MessageView<'_>]) {
    use plugin_api::frame::{read_verdicts, FrameBuf, MessageFrame};
    // SAFETY: our own C test plugin, loaded as the native runtime loads it.
    let lib = unsafe { libloading::Library::new(c_lib) }.unwrap();
    // SAFETY: the ABI fixes the entry point's type; the vtable is static in the library.
    let entry = unsafe { lib.get::<plugin_api::native::EntryFnV1>(b"ferromq_plugin_entry_v1") }.unwrap();
    let vt = unsafe { *entry() };
    let mut state = std::ptr::null_mut();
    let mut cfg = Vec::new();
    plugin_api::frame::encode_config(&mut cfg, [("a", "b")]).unwrap();
    // SAFETY: a valid config frame and out pointer, per the ABI.
    assert_eq!(unsafe { (vt.init)(cfg.as_ptr(), cfg.len() as u32, &mut state) }, 0);
    let mut group = c.benchmark_group("filter_floor");
    let mut buf = FrameBuf::new();
    for n in [1usize, 32, 1024] {
        group.throughput(Throughput::Elements(n as u64));
        let mut out = vec![0u8; n];
        let mut v = vec![Verdict::Error; n];
        group.bench_function(BenchmarkId::new("native_direct", n), |b| {
            b.iter(|| {
                let f = MessageFrame::filter(ctx, &msgs[..n], MessageFields::TAGS).unwrap();
                let frame = buf.write(&f);
                // SAFETY: input and output buffers are valid for the lengths passed.
                let rc = unsafe { (vt.call)(state, frame.as_ptr(), frame.len() as u32, out.as_mut_ptr(), n as u32) };
                read_verdicts(&out[..rc as usize], &mut v).unwrap();
            })
        });
    }
    group.finish();
    // Never unloaded, like the native runtime's libraries.
    std::mem::forget(lib);
}
