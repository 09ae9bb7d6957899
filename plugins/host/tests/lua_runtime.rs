//! Lua runtime: the example scripts for each kind, the sandbox, hostile scripts, and hot
//! reload.
#![cfg(feature = "lua")]

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use plugin_api::types::encode_properties;
use plugin_api::{
    AllocateInput, CheckContext, CheckDecision, ClientView, FilterContext, MessageFields, MessageFilter, MessageView,
    PluginError, PluginErrorKind, PluginKind, QueueView, Runtime, SelectContext, Verdict, PERM_READ, PERM_WRITE,
};
use plugin_host::{BreakerState, Error, LimitsConfig, PluginRegistry, PluginsConfig};

fn example(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/lua").join(file)
}

fn lua(dir: &std::path::Path, kind: PluginKind, src: &str) -> plugin_host::PluginConfig {
    let path = write(dir, "p.lua", src);
    decl("p", kind, Runtime::Lua, &path)
}

fn load_err(kind: PluginKind, src: &str) -> PluginError {
    let dir = fixtures_dir();
    match PluginRegistry::new(PluginsConfig {
        plugins: vec![lua(dir.path(), kind, src)],
        watch: false,
        ..Default::default()
    }) {
        Err(Error::Plugin { source, .. }) => source,
        other => panic!("expected a plugin load error, got {other:?}"),
    }
}

/// A memory cap of `mib` and a deadline a slow debug build on a busy machine meets:
/// the tests using it are about memory, not time.
fn memory_capped(mib: u64) -> LimitsConfig {
    LimitsConfig {
        memory: Some(bytesize::ByteSize::mib(mib)),
        deadline: Some(Duration::from_secs(5)),
        ..Default::default()
    }
}

fn queues(n: u32) -> Vec<QueueView<'static>> {
    (0..n).map(|i| QueueView { broker_name: "b", queue_id: i, perm: PERM_READ | PERM_WRITE, zone: "" }).collect()
}

#[test]
fn example_filter_selector_allocation_and_check_run() {
    let mut vip = decl("vip", PluginKind::Filter, Runtime::Lua, &example("vip_filter.lua"));
    vip.config.insert("min_level".into(), "5".into());
    let mut sel = decl("sel", PluginKind::QueueSelector, Runtime::Lua, &example("hash_selector.lua"));
    sel.config.insert("key_property".into(), "ORDER".into());
    let reg = registry(vec![
        vip,
        sel,
        decl("zone", PluginKind::Allocation, Runtime::Lua, &example("zone_allocation.lua")),
        decl("paid", PluginKind::TxnCheck, Runtime::Lua, &example("txn_check.lua")),
    ]);

    let f = reg.filter("vip").unwrap();
    let (p7, p2) = (encode_properties([("level", "7")]), encode_properties([("level", "2")]));
    let msgs = [
        MessageView { tags: "vip", ..msg("vip") },
        MessageView { properties: &p7, ..msg("x") },
        MessageView { properties: &p2, ..msg("x") },
        msg("y"),
    ];
    let mut v = [Verdict::Reject; 4];
    f.filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept, Verdict::Accept, Verdict::Reject, Verdict::Reject]);
    assert_eq!(f.status().manifest.name, "vip-filter");

    let s = reg.queue_selector("sel").unwrap();
    let qs = queues(4);
    let ctx = SelectContext { topic: "T", queues: &qs };
    let o1 = encode_properties([("ORDER", "order-1")]);
    let o2 = encode_properties([("ORDER", "order-2")]);
    let batch = [
        MessageView { properties: &o1, ..Default::default() },
        MessageView { properties: &o2, ..Default::default() },
        MessageView { properties: &o1, ..Default::default() },
    ];
    let mut q = [0u32; 3];
    let r = s.select_with_policy(&ctx, &batch, &mut q).unwrap();
    assert_eq!(r.fallbacks, 0);
    assert_eq!(q[0], q[2], "same key, same queue");
    let java_like = |s: &str| s.bytes().fold(0u64, |h, b| (h * 31 + u64::from(b)) & 0xFFFF_FFFF);
    assert_eq!(q[0] as u64, java_like("order-1") % 4);
    // No key at all: the built-in round robin routes it (counted as a fallback).
    let r = s.select_with_policy(&ctx, &[MessageView::default()], &mut q[..1]).unwrap();
    assert_eq!(r.fallbacks, 1);

    let a = reg.allocation("zone").unwrap();
    let qs: Vec<_> = [("az1@b1", 0), ("az1@b1", 1), ("az2@b2", 0), ("az2@b2", 1), ("az3@b3", 0)]
        .into_iter()
        .map(|(b, q)| QueueView { broker_name: b, queue_id: q, perm: PERM_READ | PERM_WRITE, zone: "" })
        .collect();
    let clients = [
        ClientView { client_id: "10.0.0.1@a", zone: "az1" },
        ClientView { client_id: "10.0.0.2@b", zone: "az2" },
        ClientView { client_id: "10.0.0.3@c", zone: "az2" },
    ];
    let mut all = Vec::new();
    for c in &clients {
        let mut out = Vec::new();
        let input = AllocateInput { group: "g", current_client: c.client_id, queues: &qs, clients: &clients };
        let r = a.allocate_with_policy(&input, None, &mut out);
        assert!(!r.fallback, "{:?}", r.error);
        all.push(out);
    }
    // az1 queues stay in az1, az2 queues are split in az2, the orphan az3 queue goes round robin.
    assert_eq!(all, vec![vec![0, 1, 4], vec![2], vec![3]]);

    let c = reg.txn_check("paid").unwrap();
    let (yes, no) = (encode_properties([("PAID", "true")]), encode_properties([("PAID", "false")]));
    let halves = [
        MessageView { properties: &yes, ..Default::default() },
        MessageView { properties: &no, ..Default::default() },
        MessageView { check_count: 1, ..Default::default() },
        MessageView { check_count: 3, ..Default::default() },
    ];
    let mut d = [CheckDecision::Error; 4];
    let r = c.check_with_policy(&CheckContext { now_ms: 0, max_checks: 15 }, &halves, &mut d);
    assert_eq!(r.fallbacks, 0);
    assert_eq!(
        d,
        [CheckDecision::Commit, CheckDecision::Rollback, CheckDecision::AskProducer, CheckDecision::Defer { ms: 5000 }]
    );
}

#[test]
fn per_message_and_batch_entry_points_agree() {
    let dir = fixtures_dir();
    let single = write(dir.path(), "s.lua", "function filter(m, sub) return m.tags == sub.expression end");
    let batch = write(
        dir.path(),
        "b.lua",
        "function filter_batch(ms, n, out, sub) for i = 1, n do out[i] = ms[i].tags == sub.expression end end",
    );
    let reg = registry(vec![
        decl("s", PluginKind::Filter, Runtime::Lua, &single),
        decl("b", PluginKind::Filter, Runtime::Lua, &batch),
    ]);
    let ctx = FilterContext { expression: "A", ..Default::default() };
    let msgs: Vec<_> = (0..100).map(|i| msg(if i % 7 == 0 { "A" } else { "B" })).collect();
    let (mut v1, mut v2) = (vec![Verdict::Error; 100], vec![Verdict::Error; 100]);
    reg.filter("s").unwrap().filter(&ctx, &msgs, &mut v1).unwrap();
    reg.filter("b").unwrap().filter(&ctx, &msgs, &mut v2).unwrap();
    assert_eq!(v1, v2);
    assert_eq!(v1.iter().filter(|v| **v == Verdict::Accept).count(), 15);
}

#[test]
fn a_script_declares_the_fields_it_names_and_reads_them() {
    let dir = fixtures_dir();
    let tags = write(dir.path(), "t.lua", "function filter(m) return m.tags == 'A' end");
    let props = write(dir.path(), "p.lua", "function filter(m) return m.props.price == '9' and m.keys == 'k' end");
    let reg = registry(vec![
        decl("tags", PluginKind::Filter, Runtime::Lua, &tags),
        decl("props", PluginKind::Filter, Runtime::Lua, &props),
    ]);
    assert_eq!(reg.filter("tags").unwrap().status().manifest.message_fields(), MessageFields::TAGS);
    assert_eq!(
        reg.filter("props").unwrap().status().manifest.message_fields(),
        MessageFields::KEYS | MessageFields::PROPERTIES
    );
    let p9 = encode_properties([("price", "9")]);
    let p8 = encode_properties([("price", "8")]);
    let msgs = [
        MessageView { keys: "k", properties: &p9, ..msg("A") },
        MessageView { keys: "k", properties: &p8, ..msg("B") },
    ];
    let mut v = vec![Verdict::Error; 2];
    reg.filter("tags").unwrap().filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept, Verdict::Reject]);
    reg.filter("props").unwrap().filter(&FilterContext::default(), &msgs, &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept, Verdict::Reject]);
}

#[test]
fn the_sandbox_has_no_io_os_package_or_load() {
    let dir = fixtures_dir();
    let d = lua(
        dir.path(),
        PluginKind::Filter,
        r#"function filter(m)
             return io == nil and os == nil and package == nil and require == nil and debug == nil
                and load == nil and loadfile == nil and dofile == nil and string.dump == nil
                and string.format("%d", 1) == "1" and math.floor(1.5) == 1 and utf8 ~= nil
           end"#,
    );
    let reg = registry(vec![d]);
    let mut v = [Verdict::Reject];
    reg.filter("p").unwrap().filter(&FilterContext::default(), &[msg("x")], &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept]);
}

fn timeout_case(src: &str) {
    let dir = fixtures_dir();
    let mut d = lua(dir.path(), PluginKind::Filter, src);
    d.limits = LimitsConfig { deadline: Some(Duration::from_millis(30)), ..Default::default() };
    let reg = registry(vec![d]);
    let f = reg.filter("p").unwrap();
    for _ in 0..2 {
        let start = Instant::now();
        let mut v = [Verdict::Reject];
        let e = f.filter(&FilterContext::default(), &[msg("x")], &mut v).unwrap_err();
        let took = start.elapsed();
        eprintln!("lua timeout after {took:?} (deadline 30ms): {src}");
        assert!(matches!(e, PluginError::Timeout { .. }), "{src}: {e}");
        assert!(took < Duration::from_millis(30 + 150), "{src}: {took:?}");
    }
}

#[test]
fn infinite_loops_time_out_even_under_pcall_and_coroutines() {
    timeout_case("function filter(m) while true do end end");
    timeout_case("function filter(m) while true do pcall(function() while true do end end) end end");
    timeout_case("function filter(m) while true do xpcall(function() while true do end end, function() end) end end");
    timeout_case(
        "function filter(m) while true do coroutine.resume(coroutine.create(function() while true do end end)) end end",
    );
}

#[test]
fn instruction_budget_is_enforced() {
    let dir = fixtures_dir();
    let mut d = lua(
        dir.path(),
        PluginKind::Filter,
        "function filter(m) local x = 0 for i = 1, 1e7 do x = x + i end return true end",
    );
    d.limits =
        LimitsConfig { instructions: Some(100_000), deadline: Some(Duration::from_secs(5)), ..Default::default() };
    let reg = registry(vec![d]);
    let mut v = [Verdict::Reject];
    let e = reg.filter("p").unwrap().filter(&FilterContext::default(), &[msg("x")], &mut v).unwrap_err();
    assert_eq!(e, PluginError::InstructionLimit { budget: 100_000 });
}

/// Each calling thread runs the script in its own VM: concurrent callers get the same
/// answers, and a memory error on one thread leaves the others' VMs alone.
#[test]
fn threads_call_one_plugin_concurrently() {
    let dir = fixtures_dir();
    let mut d = lua(
        dir.path(),
        PluginKind::Filter,
        r#"function filter_batch(ms, n, out, sub)
             for i = 1, n do
               if ms[i].tags == "bomb" then local t = {} for j = 1, 1e9 do t[j] = string.rep("x", 100) .. j end end
               out[i] = ms[i].tags == sub.expression
             end
           end"#,
    );
    d.limits = memory_capped(8);
    let reg = registry(vec![d]);
    let f = reg.filter("p").unwrap();
    let ctx = FilterContext { expression: "A", ..Default::default() };
    let msgs: Vec<_> = (0..64).map(|i| msg(if i % 3 == 0 { "A" } else { "B" })).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (f, ctx, msgs) = (&f, &ctx, &msgs);
                s.spawn(move || {
                    for round in 0..50 {
                        if t == 0 && round == 10 {
                            let e = f.filter(ctx, &[msg("bomb")], &mut [Verdict::Reject]).unwrap_err();
                            assert!(matches!(e, PluginError::MemoryLimit { .. }), "{e:?}");
                        }
                        let mut v = vec![Verdict::Error; msgs.len()];
                        f.filter(ctx, msgs, &mut v).unwrap();
                        assert_eq!(v.iter().filter(|v| **v == Verdict::Accept).count(), 22, "thread {t} round {round}");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    });
}

/// Garbage a script leaves behind on every call is collected: thousands of calls, each
/// allocating about a tenth of the cap, never reach it.
#[test]
fn per_call_garbage_never_reaches_the_memory_cap() {
    let dir = fixtures_dir();
    let mut d = lua(
        dir.path(),
        PluginKind::Filter,
        r#"function filter_batch(ms, n, out)
             local junk = {}
             for j = 1, 2000 do junk[j] = { j, tostring(j) } end
             for i = 1, n do out[i] = #junk == 2000 end
           end"#,
    );
    d.limits = memory_capped(2);
    let reg = registry(vec![d]);
    let f = reg.filter("p").unwrap();
    let msgs: Vec<_> = (0..32).map(|_| msg("A")).collect();
    let mut v = vec![Verdict::Error; msgs.len()];
    for call in 0..3000 {
        f.filter(&FilterContext::default(), &msgs, &mut v).unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert!(v.iter().all(|v| *v == Verdict::Accept));
    }
}

#[test]
fn memory_bomb_hits_the_memory_limit_and_the_vm_recovers() {
    let dir = fixtures_dir();
    let mut d = lua(
        dir.path(),
        PluginKind::Filter,
        r#"local calls = 0
           function filter(m)
             calls = calls + 1
             if m.tags == "bomb" then local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 100) .. i end end
             return true
           end"#,
    );
    d.limits = memory_capped(8);
    let reg = registry(vec![d]);
    let f = reg.filter("p").unwrap();
    let mut v = [Verdict::Reject];
    let e = f.filter(&FilterContext::default(), &[msg("bomb")], &mut v).unwrap_err();
    assert_eq!(e, PluginError::MemoryLimit { limit: 8 << 20 });
    f.filter(&FilterContext::default(), &[msg("fine")], &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept]);
}

#[test]
fn error_on_every_call_is_counted_and_opens_the_breaker() {
    let dir = fixtures_dir();
    let d = lua(dir.path(), PluginKind::QueueSelector, r#"function select(m, q) error("boom") end"#);
    // The breaker's clock stands still: it stays open however slow the calls are.
    let reg = registry_on(&MockClock::new(), vec![d]);
    let s = reg.queue_selector("p").unwrap();
    let qs = queues(2);
    let ctx = SelectContext { topic: "T", queues: &qs };
    for _ in 0..5 {
        // Policy `builtin`: every send still gets a queue.
        let q = s.select_one(&ctx, &MessageView { arg: b"k", ..Default::default() }).unwrap();
        assert!(q < 2);
    }
    let st = s.status();
    assert_eq!(st.breaker, BreakerState::Open);
    assert_eq!(st.stats.errors_of(PluginErrorKind::Trap), 3);
    assert_eq!(st.stats.breaker_rejections, 2);
    assert!(st.last_error.unwrap().contains("boom"));
}

#[test]
fn bad_scripts_are_refused_with_clear_errors() {
    let e = load_err(PluginKind::Filter, "function filter(m) return true");
    assert_eq!(e.kind(), PluginErrorKind::Load);
    assert!(e.to_string().contains("p.lua"), "{e}");
    let e = load_err(PluginKind::Filter, "function select(m) return 1 end");
    assert!(e.to_string().contains("must define function filter or filter_batch"), "{e}");
    let e = load_err(PluginKind::Filter, "PLUGIN = { abi = 2 }\nfunction filter(m) return true end");
    assert!(matches!(e, PluginError::AbiMismatch { found: 2, supported: 1, .. }), "{e}");
    let e = load_err(PluginKind::Filter, "function init(c) error('need key') end\nfunction filter(m) return true end");
    assert_eq!(e.kind(), PluginErrorKind::Init, "{e}");
    assert!(e.to_string().contains("need key"), "{e}");
    let e = load_err(PluginKind::Filter, "\x1bLua binary chunk");
    assert_eq!(e.kind(), PluginErrorKind::Load, "{e}");
    let e = load_err(PluginKind::Filter, "while true do end");
    assert_eq!(e.kind(), PluginErrorKind::Timeout, "top-level code runs under a deadline too: {e}");
}

#[test]
fn bad_output_is_a_counted_error() {
    let dir = fixtures_dir();
    let d = lua(dir.path(), PluginKind::Filter, "function filter(m) return 1 end");
    let reg = registry(vec![d]);
    let mut v = [Verdict::Reject];
    let e = reg.filter("p").unwrap().filter(&FilterContext::default(), &[msg("x")], &mut v).unwrap_err();
    assert_eq!(e.kind(), PluginErrorKind::BadOutput, "{e}");
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

#[test]
fn hot_reload_swaps_a_selector_and_keeps_the_old_one_on_a_bad_edit() {
    let dir = fixtures_dir();
    let path = write(dir.path(), "sel.lua", "function select(m, queues) return 1 end");
    let mut d = decl("sel", PluginKind::QueueSelector, Runtime::Lua, &path);
    d.watch = Some(true);
    let reg = PluginRegistry::new(PluginsConfig {
        plugins: vec![d],
        reload_debounce: Duration::from_millis(50),
        ..Default::default()
    })
    .unwrap();
    let sel = reg.queue_selector("sel").unwrap();
    let qs = queues(3);

    // A producer sending in a loop during the edits: no call may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let producer = {
        let (sel, stop, failures, sent, qs) = (sel.clone(), stop.clone(), failures.clone(), sent.clone(), qs.clone());
        std::thread::spawn(move || {
            let ctx = SelectContext { topic: "T", queues: &qs };
            while !stop.load(Ordering::Relaxed) {
                let mut out = [0u32; 1];
                match plugin_api::QueueSelector::select(&sel, &ctx, &[MessageView::default()], &mut out) {
                    Ok(()) => {}
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let current = |sel: &plugin_host::QueueSelectorPlugin| {
        sel.select_one(&SelectContext { topic: "T", queues: &qs }, &MessageView::default()).unwrap()
    };
    assert_eq!(current(&sel), 0);

    // Edit: new behaviour within 1 s.
    std::fs::write(&path, "-- v2\nfunction select(m, queues) return 3 end").unwrap();
    let took = wait_for("the new selector", Duration::from_secs(1), || current(&sel) == 2);
    eprintln!("reload observed after {took:?}");
    assert_eq!(sel.status().generation, 2);

    // A broken edit: the old version keeps serving and the error is recorded.
    std::fs::write(&path, "function select(m, queues) return 2").unwrap();
    wait_for("the failed reload to be recorded", Duration::from_secs(2), || sel.status().last_reload_error.is_some());
    assert_eq!(current(&sel), 2);
    let st = sel.status();
    assert!(st.last_reload_error.as_deref().unwrap().contains("sel.lua"), "{:?}", st.last_reload_error);
    assert_eq!(st.generation, 2);
    assert!(st.stats.reload_failures >= 1);

    // Fixing the file recovers.
    std::fs::write(&path, "function select(m, queues) return 2 end").unwrap();
    wait_for("the fixed selector", Duration::from_secs(1), || current(&sel) == 1);
    assert_eq!(sel.status().last_reload_error, None);

    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    assert!(sent.load(Ordering::Relaxed) > 10);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "zero failed calls during the swaps");
}

#[test]
fn explicit_reload_reports_errors() {
    let dir = fixtures_dir();
    let path = write(dir.path(), "f.lua", "function filter(m) return true end");
    let reg = registry(vec![decl("f", PluginKind::Filter, Runtime::Lua, &path)]);
    std::fs::write(&path, "syntax error here").unwrap();
    let e = reg.reload("f").unwrap_err();
    assert_eq!(e.plugin_error().map(PluginError::kind), Some(PluginErrorKind::Load));
    let mut v = [Verdict::Reject];
    reg.filter("f").unwrap().filter(&FilterContext::default(), &[msg("x")], &mut v).unwrap();
    assert_eq!(v, [Verdict::Accept]);
    assert!(matches!(reg.reload("nope"), Err(Error::UnknownPlugin { .. })));
}
