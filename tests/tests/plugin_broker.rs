//! Plugins in a real broker process: filters named by a subscription
//! (`PLUGIN:<name>`) or bound to a topic + group in `broker.toml`, a server-side
//! queue selector, a transaction check-back handler that resolves half messages
//! with no producer online, and hostile plugins that must stay contained.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use common::properties::Properties;
use common::{MessageExt, ResponseCode};
use plugin_api::{MessageFields, PluginKind, PLUGIN_ABI_VERSION};
use plugin_host::testing::{Wat, INFINITE_LOOP, MEMORY_BOMB, TRAP};
use tests::wire::{props, Wire};
use tests::{eventually, Broker, Namesrv};

const WAIT: Duration = Duration::from_secs(20);

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path).display().to_string()
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write plugin file");
    p
}

/// TOML-quoted path.
fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// A `broker.toml` declaring the Lua plugin `name` of `kind` (`script` relative to the
/// repository, `config` the inside of its inline table) and binding it to `topic`.
fn bound_plugin(name: &str, kind: &str, topic: &str, script: &str, config: &str) -> String {
    format!(
        "[[broker.plugin_binding]]\nplugin = \"{name}\"\ntopic = \"{topic}\"\n\n[plugins]\nwatch = false\n\n\
         [[plugins.plugin]]\nname = \"{name}\"\nkind = \"{kind}\"\nruntime = \"lua\"\npath = {}\nconfig = {{ {config} }}\n",
        q(Path::new(&repo(script)))
    )
}

/// Pulls queue 0 of `topic` from offset 0 until the end, as a consumer would
/// (following NO_MATCHED retries).
async fn pull_all(wire: &Wire, group: &str, topic: &str, expr: &str, ty: &str) -> Result<Vec<MessageExt>> {
    let max = wire.max_offset(topic, 0).await?;
    let mut offset = 0;
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while offset < max {
        ensure!(Instant::now() < deadline, "pull of {topic} stuck at {offset} (max {max})");
        let p = wire.pull(group, topic, 0, offset, expr, ty, 0).await?;
        match p.code {
            ResponseCode::SUCCESS | ResponseCode::PULL_RETRY_IMMEDIATELY => {
                out.extend(p.messages);
                offset = p.next_begin_offset;
            }
            other => anyhow::bail!("pull {topic}@{offset} as {group} ({ty} {expr}): {other:?} {:?}", p.remark),
        }
    }
    Ok(out)
}

fn bodies(msgs: &[MessageExt]) -> Vec<String> {
    msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
}

async fn wait_dispatched(wire: &Wire, topic: &str, n: i64) -> Result<()> {
    eventually(WAIT, "messages dispatched", || async { (wire.max_offset(topic, 0).await.ok()? >= n).then_some(()) })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_and_lua_filters_by_expression_type_and_by_binding() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Reads no message field (ABI 1.1), so the broker parses no record for it; it
    // decides by position in the batch.
    let every_other = write(
        dir.path(),
        "every_other.wasm",
        Wat::new(PluginKind::Filter, ACCEPT_EVEN_POSITIONS).reads(MessageFields::NONE).bytes(),
    );
    let toml = format!(
        r#"
[[broker.plugin_binding]]
plugin = "vip"
topic = "Members"
group = "vip-readers"

[plugins]
watch = false

[[plugins.plugin]]
name = "price"
kind = "filter"
runtime = "wasm"
path = {wasm}
config = {{ property = "price", min = "100", max = "500" }}

[[plugins.plugin]]
name = "order-price"
kind = "filter"
runtime = "wasm"
path = {wasm}
config = {{ property = "price", min = "100", max = "500", tag = "order" }}

[[plugins.plugin]]
name = "vip"
kind = "filter"
runtime = "lua"
path = {lua}
config = {{ min_level = "3" }}

[[plugins.plugin]]
name = "every-other"
kind = "filter"
runtime = "wasm"
path = {every_other}
"#,
        wasm = q(Path::new(&repo("plugins/examples/wasm/price_range_filter.wasm"))),
        lua = q(Path::new(&repo("plugins/examples/lua/vip_filter.lua"))),
        every_other = q(&every_other),
    );
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start_with_config(&ns.addr(), &toml, &[])?;
    let wire = Wire::new(broker.addr());
    wire.create_topic("Orders", 1).await?;
    wire.create_topic("Members", 1).await?;

    // WASM filter named by the subscription's expression type.
    let prices = ["50", "100", "250", "500", "501", "abc"];
    for p in prices {
        wire.send("Orders", 0, p.as_bytes(), &props(&[("price", p)])).await?;
    }
    wire.send("Orders", 0, b"none", &Properties::default()).await?;
    wait_dispatched(&wire, "Orders", 7).await?;
    let got = pull_all(&wire, "shop", "Orders", "", "PLUGIN:price").await?;
    assert_eq!(bodies(&got), ["100", "250", "500"]);
    // The same topic without the plugin: everything.
    assert_eq!(pull_all(&wire, "audit", "Orders", "*", "TAG").await?.len(), 7);
    // A plugin reading no field still gets one verdict slot per message, in order.
    let got = pull_all(&wire, "sampler", "Orders", "", "PLUGIN:every-other").await?;
    assert_eq!(bodies(&got), ["50", "250", "501", "none"]);

    // A plugin with a consume-queue pre-filter (on the tag) sees the units first, and
    // only the units it accepts reach its message filter: 6 units + 3 messages.
    wire.create_topic("Tagged", 1).await?;
    for (i, tag) in ["order", "other", "order", "other", "order", "other"].iter().enumerate() {
        wire.send("Tagged", 0, format!("{tag}{i}").as_bytes(), &props(&[("TAGS", tag), ("price", "200")])).await?;
    }
    wait_dispatched(&wire, "Tagged", 6).await?;
    assert_eq!(
        bodies(&pull_all(&wire, "shop", "Tagged", "", "PLUGIN:order-price").await?),
        ["order0", "order2", "order4"]
    );
    let info = wire.runtime_info().await?;
    assert_eq!(info.get("plugin.order-price.calls").map(String::as_str), Some("2"), "{info:?}");
    assert_eq!(info.get("plugin.order-price.records").map(String::as_str), Some("9"), "{info:?}");
    // The example declares what it reads (ABI 1.1): its frames carry nothing else.
    assert_eq!(info.get("plugin.order-price.fields").map(String::as_str), Some("properties, metadata"), "{info:?}");

    // Lua filter bound to Members + vip-readers: a stock TAG subscription of that
    // group is filtered, other groups are not.
    for (body, tag, level) in [("gold", "vip", ""), ("high", "", "5"), ("low", "", "1"), ("plain", "std", "")] {
        let mut p = vec![("TAGS", tag)];
        if !level.is_empty() {
            p.push(("level", level));
        }
        p.retain(|(_, v)| !v.is_empty());
        wire.send("Members", 0, body.as_bytes(), &props(&p)).await?;
    }
    wait_dispatched(&wire, "Members", 4).await?;
    assert_eq!(bodies(&pull_all(&wire, "vip-readers", "Members", "*", "TAG").await?), ["gold", "high"]);
    assert_eq!(bodies(&pull_all(&wire, "others", "Members", "*", "TAG").await?), ["gold", "high", "low", "plain"]);
    // Both stages apply: the consumer's TAG expression and the bound plugin.
    assert_eq!(bodies(&pull_all(&wire, "vip-readers", "Members", "vip || std", "TAG").await?), ["gold"]);

    // A subscription naming a plugin the broker does not have is refused clearly.
    let err = wire.pull("shop", "Orders", 0, 0, "", "PLUGIN:nope", 0).await.unwrap_err().to_string();
    assert!(err.contains("SUBSCRIPTION_PARSE_FAILED") && err.contains("`nope` is not declared"), "{err}");

    let info = wire.runtime_info().await?;
    for name in ["price", "vip"] {
        assert_eq!(info.get(&format!("plugin.{name}.state")).map(String::as_str), Some("loaded"), "{info:?}");
        let calls: u64 = info[&format!("plugin.{name}.calls")].parse()?;
        assert!(calls > 0, "{name} was never called: {info:?}");
    }
    Ok(())
}

/// Accepts the messages at even positions of each call's batch.
const ACCEPT_EVEN_POSITIONS: &str = r#"
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (local.get $out) (local.get $i)) (i32.eqz (i32.and (local.get $i) (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $n)"#;

/// Java's `String.hashCode` over ASCII bytes as an unsigned 32-bit value: what
/// `plugins/examples/lua/hash_selector.lua` computes.
fn lua_hash(s: &str) -> u64 {
    s.bytes().fold(0u64, |h, b| (h * 31 + u64::from(b)) & 0xFFFF_FFFF)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_selector_picks_the_queue_by_business_key() -> Result<()> {
    let toml = bound_plugin(
        "by-order",
        "queue_selector",
        "Sel",
        "plugins/examples/lua/hash_selector.lua",
        r#"key_property = "ORDER_ID""#,
    );
    let ns = Namesrv::start(&[])?;
    let metrics = [
        ("TELEMETRY__METRICS__EXPORTER_TYPE", "PROM"),
        ("TELEMETRY__METRICS__PROM_EXPORTER_HOST", "127.0.0.1"),
        ("TELEMETRY__METRICS__PROM_EXPORTER_PORT", "0"),
    ];
    let broker = Broker::start_with_config(&ns.addr(), &toml, &metrics)?;
    let wire = Wire::new(broker.addr());
    wire.create_topic("Sel", 4).await?;
    wire.create_topic("Free", 4).await?;
    let mut seen = std::collections::BTreeSet::new();
    for order in ["o-1", "o-2", "o-3", "o-17", "o-42", "order-99"] {
        let want = (lua_hash(order) % 4) as i32;
        // The client asks for queue 3; the broker's selector decides.
        let sent = wire.send("Sel", 3, order.as_bytes(), &props(&[("ORDER_ID", order)])).await?;
        assert_eq!(sent.code, ResponseCode::SUCCESS, "{:?}", sent.remark);
        assert_eq!(sent.queue_id, want, "order {order}");
        seen.insert(want);
        let stored = eventually(WAIT, "stored in the selected queue", || async {
            let p = wire.pull("check", "Sel", want, sent.queue_offset, "*", "TAG", 0).await.ok()?;
            p.messages.into_iter().next()
        })
        .await?;
        assert_eq!(stored.body.as_ref(), order.as_bytes());
    }
    assert!(seen.len() > 1, "all keys hashed to one queue: {seen:?}");
    // A batch goes where its first message goes.
    let batch: Vec<common::Message> = ["o-42", "o-1", "o-2"]
        .iter()
        .map(|o| common::Message::new("Sel", o.as_bytes().to_vec()).with_property("ORDER_ID", *o))
        .collect();
    let sent = wire.send_batch("Sel", 3, &batch, &Properties::default()).await?;
    assert_eq!(sent.code, ResponseCode::SUCCESS, "{:?}", sent.remark);
    assert_eq!(sent.queue_id, (lua_hash("o-42") % 4) as i32);
    // A topic without a binding keeps the client's queue.
    assert_eq!(wire.send("Free", 3, b"x", &props(&[("ORDER_ID", "o-1")])).await?.queue_id, 3);

    // The plugin's calls and sampled latency, as Prometheus series: seven calls, the
    // first timed, the buckets cumulative up to +Inf = _count.
    let text = tests::http_get(broker.process.metrics_addr()?, "/metrics").await?;
    let value = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains(r#"plugin="by-order""#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(value("ferromq_plugin_calls_total{"), Some(7.0), "{text}");
    let timed = value("ferromq_plugin_latency_seconds_count{").unwrap_or(0.0);
    assert!((1.0..=7.0).contains(&timed), "{text}");
    let inf =
        text.lines().find(|l| l.starts_with("ferromq_plugin_latency_seconds_bucket{") && l.contains(r#"le="+Inf""#));
    assert_eq!(inf.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()), Some(timed), "{text}");
    assert!(value("ferromq_plugin_latency_seconds_sum{").is_some_and(|s| s > 0.0), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_back_plugin_commits_and_rolls_back_without_a_producer() -> Result<()> {
    let toml = bound_plugin(
        "paid",
        "txn_check",
        "Payments",
        "plugins/examples/lua/txn_check.lua",
        r#"property = "PAID", patience = "3""#,
    );
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start_with_config(
        &ns.addr(),
        &toml,
        &[("TRANSACTION_TIME_OUT", "1s"), ("TRANSACTION_CHECK_INTERVAL", "1s")],
    )?;
    let wire = Wire::new(broker.addr());
    wire.create_topic("Payments", 1).await?;
    // Half messages from a producer group that never comes online.
    for (body, paid) in [("paid", "true"), ("refused", "false")] {
        let uniq = format!("tx-{body}");
        let p = props(&[("TRAN_MSG", "true"), ("PGROUP", "gone-producers"), ("PAID", paid), ("UNIQ_KEY", &uniq)]);
        let sent = wire.send("Payments", 0, body.as_bytes(), &p).await?;
        assert_eq!(sent.code, ResponseCode::SUCCESS, "{:?}", sent.remark);
    }
    // Invisible until decided.
    assert_eq!(wire.max_offset("Payments", 0).await?, 0);
    let committed = eventually(WAIT, "the plugin's commit", || async {
        let p = wire.pull("payments", "Payments", 0, 0, "*", "TAG", 0).await.ok()?;
        (!p.messages.is_empty()).then_some(p.messages)
    })
    .await?;
    assert_eq!(bodies(&committed), ["paid"]);
    // Both decisions are recorded as op records; the rolled-back one is never
    // published.
    let decisions = eventually(WAIT, "both op records", || async {
        let ops = pull_all(&wire, "ops", "RMQ_SYS_TRANS_OP_HALF_TOPIC", "*", "TAG").await.ok()?;
        let d: BTreeMap<String, String> = ops
            .iter()
            .filter_map(|m| {
                Some((m.properties.get("TX_DECISION")?.to_owned(), m.properties.get("TX_UNIQ")?.to_owned()))
            })
            .collect();
        (d.len() == 2).then_some(d)
    })
    .await?;
    assert_eq!(decisions.get("COMMIT").map(String::as_str), Some("tx-paid"), "{decisions:?}");
    assert_eq!(decisions.get("ROLLBACK").map(String::as_str), Some("tx-refused"), "{decisions:?}");
    assert_eq!(wire.max_offset("Payments", 0).await?, 1);
    Ok(())
}

/// A WAT filter whose `fmq_call` misbehaves, declaring ABI version `abi`.
fn hostile_wasm(body: &str, abi: u32) -> Vec<u8> {
    Wat { manifest_abi: abi, ..Wat::new(PluginKind::Filter, body) }.bytes()
}

async fn healthy_round_trip(wire: &Wire, offset: &mut i64) -> Result<Duration> {
    let started = Instant::now();
    let sent = wire.send("Healthy", 0, b"ping", &Properties::default()).await?;
    ensure!(sent.code == ResponseCode::SUCCESS, "healthy send: {:?}", sent.remark);
    loop {
        let p = wire.pull("healthy", "Healthy", 0, *offset, "*", "TAG", 2000).await?;
        if !p.messages.is_empty() {
            *offset = p.next_begin_offset;
            return Ok(started.elapsed());
        }
        ensure!(started.elapsed() < WAIT, "healthy consumer starved");
    }
}

async fn median_round_trip(wire: &Wire, offset: &mut i64, n: usize) -> Result<Duration> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(healthy_round_trip(wire, offset).await?);
    }
    v.sort();
    Ok(v[n / 2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_contained_and_lose_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let lua_header = "PLUGIN = { name = \"hostile\", version = \"1.0.0\", abi = 1 }\n";
    let plugins = [
        ("wasm-loop", "wasm", write(d, "loop.wasm", hostile_wasm(INFINITE_LOOP, PLUGIN_ABI_VERSION))),
        (
            "wasm-bomb",
            "wasm",
            write(
                d,
                "bomb.wasm",
                hostile_wasm(MEMORY_BOMB, PLUGIN_ABI_VERSION),
            ),
        ),
        ("wasm-trap", "wasm", write(d, "trap.wasm", hostile_wasm(TRAP, PLUGIN_ABI_VERSION))),
        ("wasm-abi", "wasm", write(d, "abi.wasm", hostile_wasm("(i32.const 0)", PLUGIN_ABI_VERSION + 98))),
        ("wasm-corrupt", "wasm", write(d, "corrupt.wasm", b"\0asm\x01\0\0\0this is not a module")),
        ("lua-loop", "lua", write(d, "loop.lua", format!("{lua_header}function filter(m) while true do end end"))),
        (
            "lua-bomb",
            "lua",
            write(
                d,
                "bomb.lua",
                format!(
                    "{lua_header}function filter(m) local t = {{}} for i = 1, 1e9 do t[i] = string.rep('x', 100) .. i end end"
                ),
            ),
        ),
        ("lua-error", "lua", write(d, "error.lua", format!("{lua_header}function filter(m) error('boom') end"))),
        (
            "lua-abi",
            "lua",
            write(d, "abi.lua", "PLUGIN = { name = \"old\", version = \"1\", abi = 99 }\nfunction filter(m) return true end"),
        ),
    ];
    let mut toml = String::from("[plugins]\nwatch = false\n");
    for (name, runtime, path) in &plugins {
        toml.push_str(&format!(
            "[[plugins.plugin]]\nname = \"{name}\"\nkind = \"filter\"\nruntime = \"{runtime}\"\npath = {}\n\
             limits = {{ deadline = \"20ms\", memory = \"4MiB\" }}\n",
            q(path)
        ));
    }
    for (name, _, _) in &plugins {
        toml.push_str(&format!(
            "[[broker.plugin_binding]]\nplugin = \"{name}\"\ntopic = \"Hostile\"\ngroup = \"g-{name}\"\n"
        ));
    }
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start_with_config(&ns.addr(), &toml, &[])?;
    let wire = Wire::new(broker.addr());
    wire.create_topic("Hostile", 1).await?;
    wire.create_topic("Healthy", 1).await?;

    // Plugins that cannot load are reported, the broker serves anyway.
    let info = wire.runtime_info().await?;
    for name in ["wasm-abi", "wasm-corrupt", "lua-abi"] {
        assert_eq!(info.get(&format!("plugin.{name}.state")).map(String::as_str), Some("unavailable"), "{info:?}");
        assert!(info.get(&format!("plugin.{name}.lastError")).is_some_and(|e| !e.is_empty()), "{info:?}");
    }
    assert!(info[&"plugin.wasm-abi.lastError".to_owned()].contains("ABI"), "{info:?}");
    // The operator sees the same through ferromq-admin.
    let out = std::process::Command::new(tests::binary("ferromq-admin"))
        .args(["-n", &ns.addr(), "brokerStatus", "-b", &broker.addr()])
        .env_remove("NAMESRV_ADDR")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.lines().any(|l| l.starts_with("plugin.wasm-corrupt.state") && l.ends_with(": unavailable")), "{text}");

    let mut healthy_offset = 0;
    // Warm up, then the baseline.
    median_round_trip(&wire, &mut healthy_offset, 5).await?;
    let baseline = median_round_trip(&wire, &mut healthy_offset, 31).await?;

    for i in 0..10 {
        wire.send("Hostile", 0, format!("m{i}").as_bytes(), &Properties::default()).await?;
    }
    wait_dispatched(&wire, "Hostile", 10).await?;

    // Every hostile group pulls in a loop (as its consumer would) while the healthy
    // consumer is measured again.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pullers = Vec::new();
    for (name, _, _) in &plugins {
        let wire = Wire::new(broker.addr());
        let group = format!("g-{name}");
        let stop = stop.clone();
        pullers.push(tokio::spawn(async move {
            let mut pulls = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let p = wire.pull(&group, "Hostile", 0, 0, "*", "TAG", 1000).await?;
                // Policy `pause`: nothing delivered, nothing skipped.
                ensure!(p.messages.is_empty(), "{group} got {} messages", p.messages.len());
                ensure!(p.next_begin_offset == 0, "{group} was moved to {} ({:?})", p.next_begin_offset, p.code);
                pulls += 1;
            }
            anyhow::Ok(pulls)
        }));
    }
    let under_attack = median_round_trip(&wire, &mut healthy_offset, 31).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pullers {
        let pulls = p.await??;
        assert!(pulls > 0);
    }
    // Noise on a shared 2-core machine: allow a doubling or 5 ms, not more.
    let limit = (baseline * 2).max(baseline + Duration::from_millis(5));
    assert!(under_attack <= limit, "healthy p50 {under_attack:?} under attack vs {baseline:?} before");

    // Nothing lost: an unfiltered group reads all ten.
    assert_eq!(bodies(&pull_all(&wire, "audit", "Hostile", "*", "TAG").await?).len(), 10);
    // Plugins that failed at run time are counted, with their last error.
    let info = wire.runtime_info().await?;
    for name in ["wasm-loop", "wasm-bomb", "wasm-trap", "lua-loop", "lua-bomb", "lua-error"] {
        let errors: u64 = info.get(&format!("plugin.{name}.errors")).map_or(Ok(0), |v| v.parse())?;
        assert!(errors > 0, "{name}: no errors counted: {info:?}");
        assert!(info.contains_key(&format!("plugin.{name}.lastError")), "{name}: {info:?}");
    }
    // Bounded memory: the bombs did not blow up the broker.
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", broker.process.pid()))?
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    assert!(rss_kib < 1024 * 1024, "broker RSS {rss_kib} KiB");
    Ok(())
}
