//! WASM runtime: each kind loads and runs; hostile modules are contained.
#![cfg(feature = "wasm")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use plugin_api::{
    AllocateInput, CheckContext, CheckDecision, ClientView, FilterContext, MessageFields, MessageFilter, MessageView,
    PluginError, PluginErrorKind, PluginKind, QueueView, Runtime, SelectContext, Verdict, PERM_READ, PERM_WRITE,
};
use plugin_host::{BreakerState, Error, LimitsConfig, PluginRegistry, PluginsConfig};

fn load_err(kind: PluginKind, bytes: &[u8]) -> PluginError {
    let dir = fixtures_dir();
    let path = write(dir.path(), "p.wasm", bytes);
    match PluginRegistry::new(PluginsConfig {
        plugins: vec![decl("p", kind, Runtime::Wasm, &path)],
        watch: false,
        ..Default::default()
    }) {
        Err(Error::Plugin { source, .. }) => source,
        other => panic!("expected a plugin load error, got {other:?}"),
    }
}

#[test]
fn accept_all_filter_accepts_every_message() {
    let dir = fixtures_dir();
    let f = write(dir.path(), "all.wasm", Wat::new(PluginKind::Filter, FILTER_ACCEPT_ALL).bytes());
    let reg = registry(vec![decl("all", PluginKind::Filter, Runtime::Wasm, &f)]);
    let msgs: Vec<_> = ["A", "B", ""].into_iter().map(msg).collect();
    let mut v = vec![Verdict::Reject; msgs.len()];
    reg.filter("all").unwrap().filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept; 3]);
}

/// Accepts a message when its frame holds no properties, keys, topic or queue offset,
/// and the header says those were omitted (omitted = topic | keys | properties |
/// metadata = 45).
const ACCEPT_IF_LEAN: &str = r#"
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (local.get $out) (local.get $i))
        (i32.and
          (i32.eq (i32.load16_u offset=36 (local.get $in)) (i32.const 45))
          (i32.eqz (i32.or (i32.or (i32.load offset=60 (local.get $rec)) (i64.ne (i64.load (local.get $rec)) (i64.const 0)))
                   (i32.or (i32.load offset=76 (local.get $rec)) (i32.load offset=84 (local.get $rec)))))))
      (local.set $rec (i32.add (local.get $rec) (local.get $sz)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $n)"#;

#[test]
fn frames_carry_only_the_fields_a_plugin_declares() {
    let dir = fixtures_dir();
    let lean = Wat::new(PluginKind::Filter, ACCEPT_IF_LEAN);
    let declared = write(dir.path(), "declared.wasm", lean.reads(MessageFields::TAGS).bytes());
    let undeclared = write(dir.path(), "undeclared.wasm", Wat::new(PluginKind::Filter, ACCEPT_IF_LEAN).bytes());
    let reg = registry(vec![
        decl("declared", PluginKind::Filter, Runtime::Wasm, &declared),
        decl("undeclared", PluginKind::Filter, Runtime::Wasm, &undeclared),
    ]);
    let props = plugin_api::types::encode_properties([("TAGS", "A"), ("KEYS", "k")]);
    let msgs = vec![MessageView { keys: "k", properties: &props, queue_offset: 7, ..msg("A") }; 3];
    let mut v = vec![Verdict::Error; msgs.len()];
    reg.filter("declared").unwrap().filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept; 3]);
    reg.filter("undeclared").unwrap().filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    assert_eq!(v, [Verdict::Reject; 3], "a plugin declaring nothing gets every field");
    assert_eq!(reg.filter("declared").unwrap().status().manifest.message_fields(), MessageFields::TAGS);

    // A caller may fill only the fields the plugin reads (the broker skips the rest);
    // views lacking one it reads (built before a reload made it read more) are refused,
    // and the policy (pause) decides.
    let h = reg.filter("declared").unwrap();
    assert_eq!(h.message_fields(), MessageFields::TAGS);
    let bare = vec![MessageView { tags: "A", ..Default::default() }; 3];
    let r = h.filter_views_with_policy(&FilterContext::default(), &bare, MessageFields::TAGS, &mut v);
    assert_eq!((r.deliverable, r.error, v.clone()), (3, None, vec![Verdict::Accept; 3]));
    let r = h.filter_views_with_policy(&FilterContext::default(), &bare, MessageFields::METADATA, &mut v);
    assert_eq!(r.deliverable, 0);
    let e = r.error.expect("refused");
    assert_eq!(e.kind(), PluginErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("now reads tags"), "{e}");
}

#[test]
fn filter_selector_allocation_and_check_run() {
    let dir = fixtures_dir();
    let f = write(dir.path(), "f.wasm", Wat::new(PluginKind::Filter, FILTER_TAGS_A).bytes());
    let s = write(dir.path(), "s.wasm", Wat::new(PluginKind::QueueSelector, SELECT_MOD).bytes());
    let a = write(dir.path(), "a.wasm", Wat::new(PluginKind::Allocation, ALLOCATE_CIRCLE).bytes());
    let c = write(dir.path(), "c.wasm", Wat::new(PluginKind::TxnCheck, CHECK_PARITY).bytes());
    let reg = registry(vec![
        decl("f", PluginKind::Filter, Runtime::Wasm, &f),
        decl("s", PluginKind::QueueSelector, Runtime::Wasm, &s),
        decl("a", PluginKind::Allocation, Runtime::Wasm, &a),
        decl("c", PluginKind::TxnCheck, Runtime::Wasm, &c),
    ]);

    let filter = reg.filter("f").unwrap();
    let msgs: Vec<_> = ["A1", "B", "", "Apple"].into_iter().map(msg).collect();
    let mut v = vec![Verdict::Reject; msgs.len()];
    filter.filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept, Verdict::Reject, Verdict::Reject, Verdict::Accept]);
    // A big batch is split by max_batch (1024) and still answered in order.
    let many: Vec<_> = (0..3000).map(|i| msg(if i % 3 == 0 { "A" } else { "B" })).collect();
    let mut v = vec![Verdict::Reject; many.len()];
    filter.filter(&FilterContext::default(), &many, &mut v).unwrap();
    assert!(v.iter().enumerate().all(|(i, v)| (*v == Verdict::Accept) == (i % 3 == 0)));
    assert_eq!(filter.stats().calls, 4);

    let queues: Vec<_> =
        (0..3).map(|i| QueueView { broker_name: "b", queue_id: i, perm: PERM_READ | PERM_WRITE, zone: "" }).collect();
    let sel = reg.queue_selector("s").unwrap();
    let mut q = vec![0; 5];
    let r = sel
        .select_with_policy(&SelectContext { topic: "T", queues: &queues }, &vec![MessageView::default(); 5], &mut q)
        .unwrap();
    assert_eq!((q, r.fallbacks), (vec![0, 1, 2, 0, 1], 0));

    let clients = [ClientView { client_id: "c0", zone: "" }, ClientView { client_id: "c1", zone: "" }];
    let queues: Vec<_> = (0..5).map(|i| QueueView { broker_name: "b", queue_id: i, ..Default::default() }).collect();
    let alloc = reg.allocation("a").unwrap();
    let mut out = Vec::new();
    let input = AllocateInput { group: "g", current_client: "c1", queues: &queues, clients: &clients };
    assert!(!alloc.allocate_with_policy(&input, None, &mut out).fallback);
    assert_eq!(out, [1, 3]);

    let check = reg.txn_check("c").unwrap();
    let halves =
        [MessageView { check_count: 2, ..Default::default() }, MessageView { check_count: 3, ..Default::default() }];
    let mut d = [CheckDecision::Error; 2];
    let r = check.check_with_policy(&CheckContext { now_ms: 1, max_checks: 15 }, &halves, &mut d);
    assert_eq!((d, r.fallbacks), ([CheckDecision::Commit, CheckDecision::Rollback], 0));

    // Kind confusion is refused.
    assert!(matches!(reg.filter("s"), Err(Error::WrongKind { .. })));
    let st = reg.plugin_status("f").unwrap();
    assert_eq!((st.manifest.name.as_str(), st.generation, st.breaker), ("wat-test", 1, BreakerState::Closed));
}

#[test]
fn an_instance_idle_past_its_deadline_still_grows_its_buffer() {
    // Regression: the deadline must be re-armed before any guest entry of a call,
    // including the `fmq_alloc` that grows the host buffer for a bigger batch.
    let dir = fixtures_dir();
    let path = write(dir.path(), "f.wasm", Wat::new(PluginKind::Filter, FILTER_TAGS_A).bytes());
    let mut d = decl("f", PluginKind::Filter, Runtime::Wasm, &path);
    d.limits = LimitsConfig { deadline: Some(Duration::from_millis(5)), max_batch: Some(4096), ..Default::default() };
    let reg = registry(vec![d]);
    let f = reg.filter("f").unwrap();
    let mut v = [Verdict::Reject];
    f.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let many: Vec<_> = (0..3000).map(|_| msg("A")).collect();
    let mut v = vec![Verdict::Reject; many.len()];
    f.filter(&FilterContext::default(), &many, &mut v).unwrap();
    assert!(v.iter().all(|v| *v == Verdict::Accept));
}

#[test]
fn infinite_loop_times_out_within_the_deadline() {
    let dir = fixtures_dir();
    let path = write(dir.path(), "loop.wasm", Wat::new(PluginKind::Filter, INFINITE_LOOP).bytes());
    let mut d = decl("loop", PluginKind::Filter, Runtime::Wasm, &path);
    d.limits = LimitsConfig { deadline: Some(Duration::from_millis(20)), ..Default::default() };
    let reg = registry(vec![d]);
    let f = reg.filter("loop").unwrap();
    for _ in 0..2 {
        let start = Instant::now();
        let mut v = [Verdict::Reject];
        let err = f.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err();
        let took = start.elapsed();
        eprintln!("wasm timeout after {took:?} (deadline 20ms)");
        assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
        assert!(took >= Duration::from_millis(19), "{took:?}");
        assert!(took < Duration::from_millis(20 + 150), "deadline overrun: {took:?}");
    }
    // Default policy `pause`: nothing deliverable, nothing lost.
    let mut v = [Verdict::Accept; 2];
    let report = f.filter_with_policy(&FilterContext::default(), &[msg("A"), msg("B")], &mut v);
    assert_eq!(report.deliverable, 0);
    assert_eq!(report.error.map(|e| e.kind()), Some(PluginErrorKind::Timeout));
    assert_eq!(f.stats().errors_of(PluginErrorKind::Timeout), 3);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let dir = fixtures_dir();
    let path = write(dir.path(), "bomb.wasm", Wat::new(PluginKind::Filter, MEMORY_BOMB).bytes());
    let mut d = decl("bomb", PluginKind::Filter, Runtime::Wasm, &path);
    d.limits = LimitsConfig { memory: Some(bytesize_mib(4)), ..Default::default() };
    let reg = registry(vec![d]);
    let f = reg.filter("bomb").unwrap();
    let mut v = [Verdict::Reject];
    let err = f.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err();
    assert_eq!(err, PluginError::MemoryLimit { limit: 4 << 20 });
    // The next call gets a fresh instance and fails the same way (no state leaks).
    let err = f.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::MemoryLimit);
}

fn bytesize_mib(n: u64) -> bytesize::ByteSize {
    bytesize::ByteSize::mib(n)
}

#[test]
fn trap_on_every_call_is_counted_and_opens_the_breaker() {
    let dir = fixtures_dir();
    let trap = write(dir.path(), "trap.wasm", Wat::new(PluginKind::Filter, TRAP).bytes());
    let fail = write(dir.path(), "fail.wasm", Wat::new(PluginKind::Filter, FAIL).bytes());
    let mut deliver = decl("fail", PluginKind::Filter, Runtime::Wasm, &fail);
    deliver.failure_policy = Some(plugin_api::FailurePolicy::Deliver);
    let clock = MockClock::new();
    let reg = registry_on(&clock, vec![decl("trap", PluginKind::Filter, Runtime::Wasm, &trap), deliver]);
    let f = reg.filter("trap").unwrap();
    let mut v = [Verdict::Reject];
    for _ in 0..3 {
        let e = f.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err();
        assert_eq!(e.kind(), PluginErrorKind::Trap, "{e}");
    }
    assert_eq!(f.status().breaker, BreakerState::Open);
    let e = f.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err();
    assert_eq!(e.kind(), PluginErrorKind::Unavailable, "breaker open: the plugin is not entered");
    let s = f.stats();
    assert_eq!((s.calls, s.errors_of(PluginErrorKind::Trap), s.breaker_rejections, s.breaker_trips), (3, 3, 1, 1));
    assert!(f.status().last_error.unwrap().contains("unreachable"));
    // After the cool-down (200 ms), a probe goes through (and fails again: reopened for
    // twice as long).
    clock.advance(Duration::from_millis(199));
    assert_eq!(
        f.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err().kind(),
        PluginErrorKind::Unavailable
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(f.status().breaker, BreakerState::HalfOpen);
    assert_eq!(f.filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err().kind(), PluginErrorKind::Trap);
    assert_eq!(f.status().breaker, BreakerState::Open);
    clock.advance(Duration::from_millis(399));
    assert_eq!(f.status().breaker, BreakerState::Open);
    clock.advance(Duration::from_millis(1));
    assert_eq!(f.status().breaker, BreakerState::HalfOpen);

    // A plugin reporting an error code: policy `deliver` fails open.
    let g = reg.filter("fail").unwrap();
    let mut v = [Verdict::Reject; 2];
    let r = g.filter_with_policy(&FilterContext::default(), &[msg("A"), msg("B")], &mut v);
    assert_eq!((r.deliverable, r.fallbacks, v), (2, 2, [Verdict::Accept; 2]));
    assert!(matches!(r.error, Some(PluginError::Failed { code: -1, .. })));
}

#[test]
fn wrong_abi_version_is_refused_at_load() {
    let mut w = Wat::new(PluginKind::Filter, FILTER_TAGS_A);
    w.marker = "fmq_abi_v2";
    let e = load_err(PluginKind::Filter, &w.bytes());
    assert!(matches!(e, PluginError::AbiMismatch { found: 2, supported: 1, .. }), "{e}");
    assert!(e.to_string().contains("ABI version 2 is not supported"), "{e}");

    let mut w = Wat::new(PluginKind::Filter, FILTER_TAGS_A);
    w.manifest_abi = 3;
    let e = load_err(PluginKind::Filter, &w.bytes());
    assert!(matches!(e, PluginError::AbiMismatch { found: 3, .. }), "{e}");

    // A manifest of another kind than declared.
    let e = load_err(PluginKind::QueueSelector, &Wat::new(PluginKind::Filter, FILTER_TAGS_A).bytes());
    assert!(e.to_string().contains("implements filter, but it is declared as queue_selector"), "{e}");
}

#[test]
fn corrupt_or_foreign_modules_are_refused_with_a_clear_error() {
    let e = load_err(PluginKind::Filter, b"\0asm\x01\0\0\0garbage");
    assert_eq!(e.kind(), PluginErrorKind::Load, "{e}");
    let e = load_err(PluginKind::Filter, b"this is not wasm");
    assert_eq!(e.kind(), PluginErrorKind::Load, "{e}");

    let mut w = Wat::new(PluginKind::Filter, FILTER_TAGS_A);
    w.imports = r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#;
    let e = load_err(PluginKind::Filter, &w.bytes());
    assert!(e.to_string().contains("imports wasi_snapshot_preview1.fd_write, which the host does not provide"), "{e}");

    let mut w = Wat::new(PluginKind::Filter, FILTER_TAGS_A);
    w.marker = "something_else";
    let e = load_err(PluginKind::Filter, &w.bytes());
    assert!(e.to_string().contains("no fmq_abi_v1 export"), "{e}");

    let dir = fixtures_dir();
    let missing = dir.path().join("missing.wasm");
    let e = PluginRegistry::new(PluginsConfig {
        plugins: vec![decl("m", PluginKind::Filter, Runtime::Wasm, &missing)],
        watch: false,
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("missing.wasm"), "{e}");
}

#[test]
fn init_receives_the_config_and_can_refuse_it() {
    // fmq_init fails unless the config frame has exactly 2 entries.
    let mut w = Wat::new(PluginKind::Filter, FILTER_TAGS_A);
    w.extra = r#"(func (export "fmq_init") (param $in i32) (param $len i32) (result i32)
        (if (result i32) (i32.eq (i32.load offset=16 (local.get $in)) (i32.const 2)) (then (i32.const 0)) (else (i32.const -1))))"#;
    let bytes = w.bytes();
    let dir = fixtures_dir();
    let path = write(dir.path(), "init.wasm", &bytes);
    let mut d = decl("init", PluginKind::Filter, Runtime::Wasm, &path);
    let e = PluginRegistry::new(PluginsConfig { plugins: vec![d.clone()], watch: false, ..Default::default() })
        .unwrap_err();
    assert_eq!(e.plugin_error().map(PluginError::kind), Some(PluginErrorKind::Init), "{e}");
    d.config.insert("a".into(), "1".into());
    d.config.insert("b".into(), "2".into());
    registry(vec![d]);
}

#[test]
fn host_log_import_is_allowed_and_bounded() {
    let mut w = Wat::new(PluginKind::Filter, "(call $log (i32.const 3) (i32.const 1024) (i32.const 4)) (local.get $n) (drop) (i32.const 0) (local.set $i) (block $done (loop $next (br_if $done (i32.ge_u (local.get $i) (local.get $n))) (i32.store8 (i32.add (local.get $out) (local.get $i)) (i32.const 1)) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $next))) (local.get $n)");
    w.imports = r#"(import "fmq_host_v1" "log" (func $log (param i32 i32 i32)))"#;
    let dir = fixtures_dir();
    let path = write(dir.path(), "log.wasm", w.bytes());
    let reg = registry(vec![decl("log", PluginKind::Filter, Runtime::Wasm, &path)]);
    let mut v = [Verdict::Reject; 2];
    reg.filter("log").unwrap().filter(&FilterContext::default(), &[msg("x"), msg("y")], &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept; 2]);
}

#[test]
fn precompiled_modules_are_cached_by_content_and_engine() {
    let dir = fixtures_dir();
    let cache = dir.path().join("cache");
    let path = write(dir.path(), "f.wasm", Wat::new(PluginKind::Filter, FILTER_TAGS_A).bytes());
    let cfg = || PluginsConfig {
        plugins: vec![decl("f", PluginKind::Filter, Runtime::Wasm, &path)],
        cache_dir: Some(cache.clone()),
        watch: false,
        ..Default::default()
    };
    let first = PluginRegistry::new(cfg()).unwrap();
    assert_eq!(first.wasm_cache_hits(), 0);
    let files: Vec<_> =
        std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(&first.plugin_status("f").unwrap().sha256) && files[0].ends_with(".cwasm"));
    let start = Instant::now();
    let second = PluginRegistry::new(cfg()).unwrap();
    let cold_from_cache = start.elapsed();
    assert_eq!(second.wasm_cache_hits(), 1);
    assert!(cold_from_cache < Duration::from_millis(500), "{cold_from_cache:?}");
    // A corrupt cache entry is discarded and recompiled.
    std::fs::write(cache.join(&files[0]), b"garbage").unwrap();
    let third = PluginRegistry::new(cfg()).unwrap();
    let mut v = [Verdict::Reject];
    third.filter("f").unwrap().filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept]);
}

#[test]
fn bad_output_is_detected() {
    // Claims to have written more than the output area.
    let dir = fixtures_dir();
    let path =
        write(dir.path(), "bad.wasm", Wat::new(PluginKind::Filter, "(i32.add (local.get $cap) (i32.const 1))").bytes());
    let bad_sel = write(
        dir.path(),
        "sel.wasm",
        Wat::new(PluginKind::QueueSelector, "(i32.store (local.get $out) (i32.const 99)) (i32.const 4)").bytes(),
    );
    let reg = registry(vec![
        decl("bad", PluginKind::Filter, Runtime::Wasm, &path),
        decl("sel", PluginKind::QueueSelector, Runtime::Wasm, &bad_sel),
    ]);
    let mut v = [Verdict::Reject];
    let e = reg.filter("bad").unwrap().filter(&FilterContext::default(), &[msg("A")], &mut v).unwrap_err();
    assert_eq!(e.kind(), PluginErrorKind::BadOutput);
    // Out-of-range queue: policy `builtin` routes the message anyway.
    let queues = [QueueView { broker_name: "b", queue_id: 0, perm: PERM_WRITE, zone: "" }];
    let sel = reg.queue_selector("sel").unwrap();
    let q = sel.select_one(&SelectContext { topic: "T", queues: &queues }, &MessageView::default()).unwrap();
    assert_eq!(q, 0);
    assert_eq!(sel.stats().errors_of(PluginErrorKind::BadOutput), 1);
    assert_eq!(sel.stats().fallbacks, 1);
}
