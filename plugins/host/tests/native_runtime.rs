//! Native runtime: a C plugin written from the spec, hostile libraries, and the
//! `allow_native` switch. Needs a C compiler (`cc`); skipped with a message otherwise.
#![cfg(feature = "native")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use plugin_api::{
    AllocateInput, CheckContext, CheckDecision, ClientView, FilterContext, MessageFilter, MessageView, PluginError,
    PluginErrorKind, PluginKind, QueueView, Runtime, SelectContext, Verdict,
};
use plugin_host::{Error, LimitsConfig, PluginConfig, PluginRegistry, PluginsConfig};

fn cc(dir: &Path, name: &str, defines: &[&str]) -> Option<PathBuf> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/native/c_filter.c");
    let out = dir.join(format!("lib{name}.so"));
    let status = Command::new("cc").args(["-shared", "-fPIC", "-O1", "-o"]).arg(&out).arg(&src).args(defines).status();
    match status {
        Ok(s) if s.success() => Some(out),
        _ => {
            eprintln!("skipping: no working C compiler (cc)");
            None
        }
    }
}

fn native_config(plugins: Vec<PluginConfig>, cache: &Path) -> PluginsConfig {
    PluginsConfig {
        plugins,
        allow_native: true,
        watch: false,
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    }
}

fn native_registry(plugins: Vec<PluginConfig>, cache: &Path) -> plugin_host::Result<PluginRegistry> {
    PluginRegistry::new(native_config(plugins, cache))
}

fn load_err(dir: &Path, lib: &Path) -> PluginError {
    match native_registry(vec![decl("n", PluginKind::Filter, Runtime::Native, lib)], dir) {
        Err(Error::Plugin { source, .. }) => source,
        other => panic!("expected a plugin load error, got {other:?}"),
    }
}

#[test]
fn c_plugin_written_from_the_spec_filters() {
    let dir = fixtures_dir();
    let Some(lib) = cc(dir.path(), "ok", &[]) else { return };
    let reg = native_registry(vec![decl("c", PluginKind::Filter, Runtime::Native, &lib)], dir.path()).unwrap();
    let f = reg.filter("c").unwrap();
    let msgs: Vec<_> = ["A", "B", "", "Ax"].into_iter().map(msg).collect();
    let mut v = vec![Verdict::Error; 4];
    f.filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept, Verdict::Reject, Verdict::Reject, Verdict::Accept]);
    let st = f.status();
    assert_eq!((st.manifest.name.as_str(), st.manifest.version.as_str()), ("c-filter", "1.0.0"));
    // Every call is counted; one in eight (the first, the ninth, ...) is timed.
    for _ in 1..16 {
        f.filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    }
    let s = f.stats();
    assert_eq!((s.calls, s.timed_calls, s.records), (16, 2, 64));
    assert_eq!(s.latency_buckets.iter().sum::<u64>(), 2);
    // Reload maps a fresh private copy; the old library stays loaded.
    reg.reload("c").unwrap();
    f.filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    assert_eq!(f.status().generation, 2);
}

#[test]
fn c_selector_allocation_and_check_run() {
    let dir = fixtures_dir();
    let Some(sel) = cc(dir.path(), "sel", &["-DKIND=2"]) else { return };
    let alloc = cc(dir.path(), "alloc", &["-DKIND=3"]).unwrap();
    let check = cc(dir.path(), "check", &["-DKIND=4"]).unwrap();
    let reg = native_registry(
        vec![
            decl("sel", PluginKind::QueueSelector, Runtime::Native, &sel),
            decl("alloc", PluginKind::Allocation, Runtime::Native, &alloc),
            decl("check", PluginKind::TxnCheck, Runtime::Native, &check),
        ],
        dir.path(),
    )
    .unwrap();
    let queues: Vec<_> = (0..3).map(|i| QueueView { broker_name: "b", queue_id: i, perm: 6, zone: "" }).collect();
    let mut q = vec![0; 4];
    let r = reg.queue_selector("sel").unwrap().select_with_policy(
        &SelectContext { topic: "T", queues: &queues },
        &[MessageView::default(); 4],
        &mut q,
    );
    assert_eq!((q, r.unwrap().fallbacks), (vec![0, 1, 2, 0], 0));

    let clients = [ClientView { client_id: "a", zone: "" }, ClientView { client_id: "b", zone: "" }];
    let mut out = Vec::new();
    let input = AllocateInput { group: "g", current_client: "b", queues: &queues, clients: &clients };
    assert!(!reg.allocation("alloc").unwrap().allocate_with_policy(&input, None, &mut out).fallback);
    assert_eq!(out, [1]);

    let halves =
        [MessageView { check_count: 0, ..Default::default() }, MessageView { check_count: 1, ..Default::default() }];
    let mut d = [CheckDecision::Error; 2];
    reg.txn_check("check").unwrap().check_with_policy(&CheckContext::default(), &halves, &mut d);
    assert_eq!(d, [CheckDecision::Commit, CheckDecision::Rollback]);
}

#[test]
fn native_plugins_need_allow_native() {
    let dir = fixtures_dir();
    let lib = write(dir.path(), "libx.so", b"whatever");
    let e = PluginRegistry::new(PluginsConfig {
        plugins: vec![decl("n", PluginKind::Filter, Runtime::Native, &lib)],
        watch: false,
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, Error::NativeNotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("allow_native is false"));
}

#[test]
fn wrong_abi_versions_are_refused() {
    let dir = fixtures_dir();
    let Some(vt) = cc(dir.path(), "vt2", &["-DVT_ABI=2"]) else { return };
    let e = load_err(dir.path(), &vt);
    assert!(matches!(e, PluginError::AbiMismatch { found: 2, supported: 1, .. }), "{e}");
    assert!(e.to_string().contains("native vtable abi_version"), "{e}");

    let sym = cc(dir.path(), "sym3", &["-DENTRY=ferromq_plugin_entry_v3"]).unwrap();
    let e = load_err(dir.path(), &sym);
    assert!(matches!(e, PluginError::AbiMismatch { found: 3, .. }), "{e}");

    let man = cc(dir.path(), "man2", &["-DMANIFEST_ABI=2"]).unwrap();
    let e = load_err(dir.path(), &man);
    assert!(matches!(e, PluginError::AbiMismatch { found: 2, .. }), "{e}");
}

#[test]
fn corrupt_library_is_a_clear_load_error() {
    let dir = fixtures_dir();
    let lib = write(dir.path(), "libcorrupt.so", b"\x7fELF this is not a library");
    let e = load_err(dir.path(), &lib);
    assert_eq!(e.kind(), PluginErrorKind::Load, "{e}");
    assert!(e.to_string().contains("libcorrupt.so"), "{e}");
}

#[test]
fn failing_and_slow_plugins_are_counted_and_break_the_circuit() {
    let dir = fixtures_dir();
    let Some(fail) = cc(dir.path(), "fail", &["-DFAIL"]) else { return };
    let slow = cc(dir.path(), "slow", &["-DSLEEP_MS=30"]).unwrap();
    let mut slow_decl = decl("slow", PluginKind::Filter, Runtime::Native, &slow);
    slow_decl.limits = LimitsConfig { deadline: Some(Duration::from_millis(10)), ..Default::default() };
    // The breakers' clock stands still: once open, they stay open however slow the calls.
    let decls = vec![decl("fail", PluginKind::Filter, Runtime::Native, &fail), slow_decl];
    let reg = registry_with_clock(native_config(decls, dir.path()), &MockClock::new()).unwrap();

    let f = reg.filter("fail").unwrap();
    let mut v = [Verdict::Reject];
    let e = f.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err();
    assert_eq!(e, PluginError::Failed { code: -1, message: "the C plugin refuses everything".into() });
    for _ in 0..3 {
        let _ = f.filter(&FilterContext::default(), &[msg("A")], &mut v);
    }
    let s = f.stats();
    assert_eq!((s.errors_of(PluginErrorKind::Failed), s.breaker_rejections), (3, 1));

    // A native call cannot be interrupted, but an overrun counts as a timeout. Calls are
    // timed one in eight: the first is, and once one has failed every call is, until
    // the breaker (3 failures) opens.
    let g = reg.filter("slow").unwrap();
    for _ in 0..3 {
        let e = g.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err();
        assert!(matches!(e, PluginError::Timeout { .. }), "{e}");
    }
    let e = g.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err();
    assert_eq!(e.kind(), PluginErrorKind::Unavailable, "{e}");
    let s = g.stats();
    assert_eq!((s.calls, s.timed_calls, s.errors_of(PluginErrorKind::Timeout), s.breaker_trips), (3, 3, 3, 1));
}
