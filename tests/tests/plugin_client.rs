//! Client-side plugins against real processes: a Lua queue selector
//! rewritten on disk while a producer sends, and a Lua allocation strategy deciding
//! which member of a push-consumer group reads which queue (also across an edit).
//!
//! Scripts live in temporary directories watched by the client's plugin registry
//! (hot reload after a 150 ms quiet period); conditions are awaited with deadlines.

mod client_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use client::consumer::{AllocateStrategy, ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
use client::plugins::{ClientPlugins, PluginConfig, PluginKind, PluginsConfig, Runtime};
use client::{Message, MessageExt, MessageQueue};
use tests::{eventually, Broker, Namesrv};

use client_support::{create_topic, producer, stored_by_uniq_key, WAIT};

/// How soon after the file is written every send must go where the new script says.
const RELOAD_BOUND: Duration = Duration::from_secs(1);

fn start_cluster() -> Result<(Namesrv, Broker)> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a")])?;
    Ok((ns, broker))
}

/// A registry with one Lua plugin `name` of `kind` at `path`, watched.
fn plugins(name: &str, kind: PluginKind, path: &Path) -> Result<ClientPlugins> {
    let mut decl = PluginConfig::new(name, kind, Runtime::Lua, path);
    // Debug builds on a shared machine: the defaults (1 ms for a selector) are tight.
    decl.limits.deadline = Some(Duration::from_millis(500));
    let config = PluginsConfig { watch: true, plugins: vec![decl], ..PluginsConfig::default() };
    Ok(ClientPlugins::from_config(&config)?)
}

/// Replaces `path` the way editors and deploy tools do: a new file renamed over it.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("lua.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

// ---------------------------------------------------------------------- selector

/// Version 1: always the second queue (Lua indices are 1-based): queue id 1.
const SELECTOR_V1: &str = "function select(msg, queues) return 2 end\n";
/// Version 2: always the last queue: queue id 3 of 4.
const SELECTOR_V2: &str = "function select(msg, queues) return #queues end\n";

/// One send of the producer loop.
struct Sent {
    started: Instant,
    done: Instant,
    /// Queue id and msgId, or the error.
    outcome: Result<(i32, String), String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lua_selector_edited_while_a_producer_runs_moves_sends_within_1s_without_failures() -> Result<()> {
    const TOPIC: &str = "PluginSelectorTopic";
    let (ns, broker) = start_cluster()?;
    create_topic(&ns.addr(), TOPIC, 4, 1).await?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("selector.lua");
    std::fs::write(&script, SELECTOR_V1)?;
    let plugins = plugins("live-selector", PluginKind::QueueSelector, &script)?;
    let selector = plugins.queue_selector("live-selector")?;

    let p = producer(&ns.addr(), "PluginSelectorProducer");
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (p, sent, stop) = (p.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = p.send_with_selector(Message::new(TOPIC, format!("m{i}")), &selector).await;
                let done = Instant::now();
                let outcome = r.map(|r| (r.message_queue.queue_id, r.msg_id)).map_err(|e| e.to_string());
                sent.lock().unwrap().push(Sent { started, done, outcome });
                i += 1;
                // Pacing only: about 100 sends a second.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let on_queue = |q: i32| sent.lock().unwrap().iter().filter(|s| matches!(s.outcome, Ok((id, _)) if id == q)).count();

    eventually(WAIT, "20 sends on queue 1 (version 1)", || async { (on_queue(1) >= 20).then_some(()) }).await?;
    let written = Instant::now();
    replace_file(&script, SELECTOR_V2)?;
    // Long enough for a reload to be late rather than missing: lateness is asserted below.
    eventually(WAIT, "50 sends on queue 3 (version 2)", || async { (on_queue(3) >= 50).then_some(()) }).await?;
    stop.store(true, Ordering::Relaxed);
    sender.await?;
    p.shutdown().await;

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let failed: Vec<&String> = sent.iter().filter_map(|s| s.outcome.as_ref().err()).collect();
    ensure!(failed.is_empty(), "{} of {} sends failed: {failed:?}", failed.len(), sent.len());
    let queue = |s: &Sent| s.outcome.as_ref().map(|(q, _)| *q).unwrap_or(-1);
    let before: BTreeSet<i32> = sent.iter().filter(|s| s.started < written).map(queue).collect();
    ensure!(before == BTreeSet::from([1]), "before the edit the sends went to queues {before:?}, not just 1");
    let first_new = sent.iter().position(|s| queue(s) == 3).context("no send reached queue 3")?;
    let lag = sent[first_new].done.saturating_duration_since(written);

    ensure!(lag <= RELOAD_BOUND, "the first send to queue 3 completed {lag:?} after the edit (bound {RELOAD_BOUND:?})");
    let strays: Vec<(usize, i32)> =
        sent.iter().enumerate().skip(first_new).map(|(i, s)| (i, queue(s))).filter(|(_, q)| *q != 3).collect();
    ensure!(strays.is_empty(), "sends after the switch that did not go to queue 3 (index, queue): {strays:?}");
    let between: BTreeSet<i32> = sent[..first_new].iter().map(queue).collect();
    ensure!(between == BTreeSet::from([1]), "before the switch the sends went to {between:?}");

    // The broker stored each message where the send result says.
    let by_key = stored_by_uniq_key(&broker.addr(), TOPIC, 4, sent.len()).await?;
    for s in &sent {
        let (q, id) = s.outcome.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        let stored: Vec<i32> = by_key.get(id).map(|v| v.iter().map(|m| m.queue_id).collect()).unwrap_or_default();
        ensure!(stored == [*q], "message {id} was sent to queue {q} but is stored on {stored:?}");
    }

    let status = plugins.registry().plugin_status("live-selector").context("status")?;
    ensure!(status.generation == 2, "expected exactly one reload, generation is {}", status.generation);
    ensure!(status.stats.total_errors() == 0, "plugin errors: {:?}", status.last_error);
    ensure!(status.stats.fallbacks == 0, "{} sends were routed by the fallback", status.stats.fallbacks);
    Ok(())
}

// -------------------------------------------------------------------- allocation

/// Version 1: queue id q belongs to the member at sorted index (q + 1) mod members:
/// with two members the first reads the odd queues, the second the even ones (neither
/// AVG nor AVG_BY_CIRCLE would do that).
const ALLOCATION_V1: &str = r#"
function allocate(ctx)
  local mine = {}
  for i, q in ipairs(ctx.queues) do
    if (q.queue_id + 1) % #ctx.clients == ctx.current_index - 1 then table.insert(mine, i) end
  end
  return mine
end
"#;

/// Version 2: the first member reads the three highest queue ids, the last member
/// everything else.
const ALLOCATION_V2: &str = r#"
function allocate(ctx)
  local mine = {}
  for i, q in ipairs(ctx.queues) do
    local owner = #ctx.clients
    if q.queue_id >= #ctx.queues - 3 then owner = 1 end
    if owner == ctx.current_index then table.insert(mine, i) end
  end
  return mine
end
"#;

fn rule_v1(queue_id: i32, member: usize, members: usize) -> bool {
    (queue_id as usize + 1) % members == member
}

fn rule_v2(queue_id: i32, member: usize, members: usize) -> bool {
    let owner = if queue_id >= 8 - 3 { 0 } else { members - 1 };
    owner == member
}

/// Deliveries of one consumer: (queue id, body).
type Deliveries = Arc<Mutex<Vec<(i32, String)>>>;

fn topic_queue_ids(c: &PushConsumer, topic: &str) -> Vec<i32> {
    c.assigned_queues().into_iter().filter(|q| q.topic == topic).map(|q| q.queue_id).collect()
}

/// What `rule` gives each of `members` (in the order given), by sorted client id.
fn expected(members: &[&PushConsumer], rule: fn(i32, usize, usize) -> bool) -> Vec<Vec<i32>> {
    let mut cids: Vec<&str> = members.iter().map(|c| c.client_id()).collect();
    cids.sort_unstable();
    members
        .iter()
        .map(|c| {
            let k = cids.iter().position(|id| *id == c.client_id()).unwrap_or(usize::MAX);
            (0..8).filter(|q| rule(*q, k, cids.len())).collect()
        })
        .collect()
}

async fn assigned_as(
    members: &[&PushConsumer],
    topic: &str,
    rule: fn(i32, usize, usize) -> bool,
    what: &str,
) -> Result<()> {
    let last = Mutex::new(Vec::new());
    let r = eventually(WAIT, what, || async {
        let got: Vec<Vec<i32>> = members.iter().map(|c| topic_queue_ids(c, topic)).collect();
        let ok = got == expected(members, rule);
        *last.lock().unwrap() = got;
        ok.then_some(())
    })
    .await;
    r.with_context(|| format!("assignment {:?}, expected {:?}", last.lock().unwrap(), expected(members, rule)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lua_allocation_strategy_assigns_queues_as_written_and_follows_edits() -> Result<()> {
    const TOPIC: &str = "PluginAllocTopic";
    const GROUP: &str = "PluginAllocGroup";
    let (ns, _broker) = start_cluster()?;
    create_topic(&ns.addr(), TOPIC, 8, 1).await?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("allocation.lua");
    std::fs::write(&script, ALLOCATION_V1)?;
    let plugins = plugins("odd-even", PluginKind::Allocation, &script)?;
    // One strategy shared by both members: its only state is keyed per member.
    let strategy = Arc::new(plugins.allocation("odd-even")?);
    ensure!(strategy.name() == "odd-even", "name {}", strategy.name());

    let start = |log: Deliveries| {
        let strategy: Arc<dyn AllocateStrategy> = strategy.clone();
        PushConsumer::builder(GROUP)
            .namesrv(&ns.addr())
            .subscribe(TOPIC, "*")
            .consume_from(ConsumeFromWhere::FirstOffset)
            .allocate_strategy(strategy)
            .with_options(|o| o.rebalance_interval = Duration::from_secs(1))
            .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
                log.lock().unwrap().extend(msgs.iter().map(|m| (m.queue_id, String::from_utf8_lossy(&m.body).into())));
                ConsumeStatus::Success
            })
            .start()
    };
    let (log1, log2): (Deliveries, Deliveries) = (Arc::default(), Arc::default());
    let c1 = start(log1.clone()).await?;
    assigned_as(&[&c1], TOPIC, rule_v1, "a lone member to read every queue").await?;
    let c2 = start(log2.clone()).await?;
    assigned_as(&[&c1, &c2], TOPIC, rule_v1, "two members to split the queues odd/even").await?;

    // Each member receives exactly the messages of its queues.
    let p = producer(&ns.addr(), "PluginAllocProducer");
    for q in 0..8 {
        p.send_to_queue(Message::new(TOPIC, format!("q{q}")), &MessageQueue::new(TOPIC, "broker-a", q)).await?;
    }
    eventually(WAIT, "the 8 messages consumed", || async {
        (log1.lock().unwrap().len() + log2.lock().unwrap().len() >= 8).then_some(())
    })
    .await?;
    let want = expected(&[&c1, &c2], rule_v1);
    for (i, log) in [&log1, &log2].into_iter().enumerate() {
        let got: BTreeMap<i32, String> = log.lock().unwrap().iter().cloned().collect();
        let want: BTreeMap<i32, String> = want[i].iter().map(|q| (*q, format!("q{q}"))).collect();
        ensure!(got == want, "member {i} consumed {got:?}, expected {want:?}");
    }

    // Edit the strategy while both members run: the next rebalance follows it.
    replace_file(&script, ALLOCATION_V2)?;
    assigned_as(&[&c1, &c2], TOPIC, rule_v2, "the members to take the edited split").await?;

    let status = plugins.registry().plugin_status("odd-even").context("status")?;
    ensure!(status.generation == 2, "expected one reload, generation is {}", status.generation);
    ensure!(strategy.fallbacks() == 0, "{} allocations fell back: {:?}", strategy.fallbacks(), status.last_error);
    c1.shutdown().await;
    c2.shutdown().await;
    p.shutdown().await;
    Ok(())
}
