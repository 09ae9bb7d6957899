//! A RocketMQ client we did not write, installed from npm, against our name
//! server and broker: `ali-ons` 3.12.0, a pure JavaScript 4.x remoting client.
//!
//! `tests/compat/nodejs/package.json` and its `package-lock.json` (which pins every
//! transitive package) are copied into `target/compat/nodejs` and installed there
//! with `npm ci`, once per target directory under a lock; the scripts in
//! `tests/compat/nodejs/` find the package through `NODE_PATH`. Every client runs in
//! its own process with `HOME` in a temporary directory and is judged by the JSON
//! lines it prints.
//!
//! ali-ons never auto-creates topics (a missing route is an error to it), so each
//! test creates its topics first with UPDATE_AND_CREATE_TOPIC.
//!
//! `FERROMQ_SKIP_COMPAT=1` skips this file (CI never sets it); anything else that
//! keeps the client from installing fails the tests with what to do.

mod compat_support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tests::wire::Wire;
use tests::{Broker, Namesrv};

use compat_support::{
    acl_cluster, acl_denied, args, check_consumed, consumer_args, report, s, skipped, wait_route, ClientOutput,
    ClientProcess,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);
/// All 18 delay levels at one second, so a retry comes back at once.
const ALL_1S: &str = "1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s";

/// `target/compat/nodejs/node_modules`, installing it first if needed (once per
/// target directory, race-free between test processes).
///
/// # Panics
/// When the client cannot be installed: the message says what is missing.
fn node_modules() -> PathBuf {
    static MODULES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match MODULES.get_or_init(|| install().map_err(|e| format!("{e:#}"))) {
        Ok(p) => p.clone(),
        Err(e) => panic!(
            "cannot install the Node.js RocketMQ client (ali-ons, tests/compat/nodejs/package-lock.json) \
             for the compatibility tests:\n{e}\nNeeds `node` and `npm` on PATH (Debian/Ubuntu: apt-get install \
             nodejs npm) and access to the npm registry. Set FERROMQ_SKIP_COMPAT=1 to skip these tests on a \
             machine without them."
        ),
    }
}

fn install() -> Result<PathBuf> {
    let dir = compat_support::compat_dir().join("nodejs");
    let modules = dir.join("node_modules");
    let src = compat_support::scripts_dir("nodejs");
    let lock = std::fs::read_to_string(src.join("package-lock.json")).context("reading package-lock.json")?;
    let manifest = std::fs::read_to_string(src.join("package.json")).context("reading package.json")?;
    let marker = dir.join(".ferromq-installed");
    compat_support::with_install_lock("nodejs", || {
        // Reinstall whenever the lock file changes.
        if std::fs::read_to_string(&marker).is_ok_and(|m| m == lock) && modules.join("ali-ons").exists() {
            return Ok(modules.clone());
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing the incomplete {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("package.json"), &manifest)?;
        std::fs::write(dir.join("package-lock.json"), &lock)?;
        let npm = std::env::var("FERROMQ_NPM").unwrap_or_else(|_| "npm".to_owned());
        compat_support::run_step(
            "npm ci",
            std::process::Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel", "warn"])
                .current_dir(&dir)
                .env("npm_config_update_notifier", "false"),
            &compat_support::compat_dir().join("nodejs-npm.log"),
            Duration::from_secs(300),
        )?;
        compat_support::run_step(
            "loading the client",
            std::process::Command::new(node()).args(["-e", "require('ali-ons')"]).current_dir(&dir),
            &compat_support::compat_dir().join("nodejs-require.log"),
            Duration::from_secs(60),
        )?;
        std::fs::write(&marker, &lock)?;
        Ok(modules.clone())
    })
}

fn node() -> String {
    std::env::var("FERROMQ_NODE").unwrap_or_else(|_| "node".to_owned())
}

/// Starts `tests/compat/nodejs/<script>.js` with `args`.
fn spawn(name: &str, script: &str, args: &[String], home: &tempfile::TempDir) -> Result<ClientProcess> {
    let modules = node_modules().display().to_string();
    let mut argv = vec![compat_support::scripts_dir("nodejs").join(format!("{script}.js")).display().to_string()];
    argv.extend_from_slice(args);
    ClientProcess::spawn(name, &PathBuf::from(node()), &argv, &home.path().join(name), &[("NODE_PATH", &modules)])
}

/// Runs the producer to the end and checks every send succeeded.
fn produce(
    ns: &str,
    home: &tempfile::TempDir,
    topic: &str,
    run: &str,
    count: usize,
    modes: &str,
) -> Result<ClientOutput> {
    let n = count.to_string();
    let producer = spawn(
        "producer",
        "producer",
        &args(&[
            ("namesrv", ns),
            ("topic", topic),
            ("group", "CompatNodePG"),
            ("run", run),
            ("count", &n),
            ("modes", modes),
        ]),
        home,
    )?;
    let out = producer.finish(CLIENT_TIMEOUT);
    out.expect_event("done")?;
    let sent = out.events("sent");
    let want = count * modes.split(',').count();
    if sent.len() != want {
        bail!("{} sends reported instead of {want}\n{}", sent.len(), out.describe());
    }
    for v in &sent {
        if s(v, "status") != "SEND_OK" || s(v, "msg_id").is_empty() {
            bail!("send failed: {v}\n{}", out.describe());
        }
    }
    Ok(out)
}

fn consumer(
    name: &str,
    ns: &str,
    home: &tempfile::TempDir,
    group: &str,
    topic: &str,
    expect: usize,
    extra: &[&str],
) -> Result<ClientProcess> {
    spawn(name, "consumer", &consumer_args(ns, group, topic, expect, extra), home)
}

/// Creates `topics` on the broker and waits until the name server routes them.
async fn create_topics(ns: &str, w: &Wire, topics: &[(&str, i32)]) -> Result<()> {
    for (topic, queues) in topics {
        w.create_topic(topic, *queues).await?;
    }
    for (topic, _) in topics {
        wait_route(ns, topic).await?;
    }
    Ok(())
}

/// Sync and sharding-key sends with tags, keys and user properties; a TAG
/// consumer group (`TagA || TagB`) and an SQL92 group (filtered by the broker
/// alone: ali-ons filters only tags itself) each get exactly their messages once,
/// from the queue the send reported, with every field intact.
#[tokio::test]
async fn ali_ons_sends_and_consumes_with_tag_and_sql92_subscriptions() -> Result<()> {
    if skipped("compat_nodejs") {
        return Ok(());
    }
    let _ = node_modules();
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    let topic = "CompatNode";
    create_topics(&ns.addr(), &w, &[(topic, 4)]).await?;
    let home = tempfile::tempdir()?;

    let produced = produce(&ns.addr(), &home, topic, "js", 6, "sync,orderly")?;
    let sent = produced.events("sent");
    let sql = "color IN ('red', 'blue') AND idx >= 3";
    let tags = consumer("consumer-tags", &ns.addr(), &home, "CompatNodeTags", topic, 8, &["--expr", "TagA || TagB"])?;
    let sqlc =
        consumer("consumer-sql", &ns.addr(), &home, "CompatNodeSql", topic, 4, &["--type", "SQL92", "--expr", sql])?;
    let tags = tags.finish(CLIENT_TIMEOUT);
    let sqlc = sqlc.finish(CLIENT_TIMEOUT);

    let mut problems = Vec::new();
    for out in [&tags, &sqlc] {
        if let Err(e) = out.expect_event("done") {
            problems.push(e.to_string());
        }
    }
    for p in check_consumed(&sent, &tags.events("received"), topic, |v| matches!(s(v, "tag"), "TagA" | "TagB")) {
        problems.push(format!("TAG group: {p}"));
    }
    let sql_match =
        |v: &serde_json::Value| matches!(s(v, "color"), "red" | "blue") && v["index"].as_i64().unwrap_or(-1) >= 3;
    for p in check_consumed(&sent, &sqlc.events("received"), topic, sql_match) {
        problems.push(format!("SQL92 group: {p}"));
    }
    // Each message is in the queue its send reported; one sharding key, one queue.
    for r in tags.events("received").into_iter().chain(sqlc.events("received")) {
        if let Some(sent) = sent.iter().find(|v| v["body"] == r["body"]) {
            if sent["queue_id"] != r["queue_id"] {
                problems.push(format!(
                    "{} consumed from queue {} but sent to {}",
                    s(r, "body"),
                    r["queue_id"],
                    sent["queue_id"]
                ));
            }
        }
    }
    let mut orderly_queues: Vec<_> =
        sent.iter().filter(|v| s(v, "mode") == "orderly").map(|v| v["queue_id"].clone()).collect();
    orderly_queues.dedup();
    if orderly_queues.len() != 1 {
        problems.push(format!("one sharding key went to several queues: {orderly_queues:?}"));
    }
    report(problems, &[&produced, &tags, &sqlc])
}

/// A handler that throws once makes ali-ons send the message back
/// (CONSUMER_SEND_MSG_BACK with delay level 0, so the broker picks it); it comes
/// back through the group's retry topic with `reconsumeTimes` 1, its original
/// topic and every field intact.
#[tokio::test]
async fn ali_ons_failed_message_comes_back_through_the_retry_topic() -> Result<()> {
    if skipped("compat_nodejs") {
        return Ok(());
    }
    let _ = node_modules();
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[("MESSAGE_DELAY_LEVEL", ALL_1S)])?;
    let w = Wire::new(broker.addr());
    let topic = "CompatNodeRetry";
    let group = "CompatNodeRetryG";
    // ali-ons looks routes up every 30 s: the retry topic, which the broker makes
    // at the group's first heartbeat, must be routable before the consumer starts
    // or the retry waits for the next lookup.
    let retry = format!("%RETRY%{group}");
    create_topics(&ns.addr(), &w, &[(topic, 2), (&retry, 1)]).await?;
    let home = tempfile::tempdir()?;

    let produced = produce(&ns.addr(), &home, topic, "rt", 3, "sync")?;
    let sent = produced.events("sent");
    let c =
        consumer("consumer-retry", &ns.addr(), &home, group, topic, 3, &["--expr", "*", "--fail-once", "rt-sync-1"])?;
    let c = c.finish(CLIENT_TIMEOUT);
    c.expect_event("done")?;

    // A retried message is a new record: its id is not the one the send returned.
    let received = c.events("received");
    let first: Vec<&serde_json::Value> = received.iter().copied().filter(|r| r["reconsume_times"] == 0).collect();
    let retried: Vec<&serde_json::Value> = received.iter().copied().filter(|r| r["reconsume_times"] != 0).collect();
    let mut problems = check_consumed(&sent, &first, topic, |v| s(v, "body") != "rt-sync-1");
    if retried.len() != 1 || s(retried[0], "body") != "rt-sync-1" || retried[0]["reconsume_times"] != 1 {
        problems.push(format!("expected rt-sync-1 once more with reconsume_times 1, got {retried:?}"));
    } else {
        let want = sent.iter().find(|v| s(v, "body") == "rt-sync-1").expect("sent");
        for key in ["tag", "keys", "prop", "topic"] {
            let expected = if key == "topic" { serde_json::json!(topic) } else { want[key].clone() };
            if retried[0][key] != expected {
                problems.push(format!("retried rt-sync-1: {key} is {} instead of {expected}", retried[0][key]));
            }
        }
    }
    let failed = c.events("failed");
    if failed.len() != 1 || s(failed[0], "body") != "rt-sync-1" {
        problems.push(format!("expected one failed delivery of rt-sync-1, got {failed:?}"));
    }
    report(problems, &[&produced, &c])
}

/// Two BROADCASTING consumers (subscribed before the sends) each get every
/// `TagA` message once. ali-ons gives both the same client id (`IP@DEFAULT`:
/// it only appends the pid in clustering mode).
#[tokio::test]
async fn ali_ons_broadcasting_consumers_each_get_every_message() -> Result<()> {
    if skipped("compat_nodejs") {
        return Ok(());
    }
    let _ = node_modules();
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    let topic = "CompatNodeBc";
    create_topics(&ns.addr(), &w, &[(topic, 2)]).await?;
    let home = tempfile::tempdir()?;

    let extra = ["--expr", "TagA", "--broadcast"];
    let mut a = consumer("broadcast-1", &ns.addr(), &home, "CompatNodeBc", topic, 3, &extra)?;
    let mut b = consumer("broadcast-2", &ns.addr(), &home, "CompatNodeBc", topic, 3, &extra)?;
    a.wait_event("started", Duration::from_secs(30))?;
    b.wait_event("started", Duration::from_secs(30))?;
    // Without a stored offset a broadcasting consumer starts at the queue's end:
    // send only once both have a pull parked on each queue.
    w.wait_parked_pulls(4, Duration::from_secs(30)).await?;

    let produced = produce(&ns.addr(), &home, topic, "bc", 9, "sync")?;
    let sent = produced.events("sent");
    let a = a.finish(CLIENT_TIMEOUT);
    let b = b.finish(CLIENT_TIMEOUT);
    let mut problems = Vec::new();
    for out in [&a, &b] {
        if let Err(e) = out.expect_event("done") {
            problems.push(e.to_string());
        }
        for p in check_consumed(&sent, &out.events("received"), topic, |v| s(v, "tag") == "TagA") {
            problems.push(format!("{}: {p}", out.name));
        }
    }
    report(problems, &[&produced, &a, &b])
}

/// ali-ons signs with `accessKey`/`secretKey` against a broker with `aclEnable`:
/// the right account sends and consumes; a wrong secret and an account without the
/// topic's PUB are refused, counted, and not stored; a consumer whose account lacks
/// the group's SUB gets nothing.
#[tokio::test]
async fn ali_ons_signs_and_is_refused_what_its_account_may_not_do() -> Result<()> {
    if skipped("compat_nodejs") {
        return Ok(());
    }
    let _ = node_modules();
    let topic = "CompatNodeAcl";
    let (_dir, ns, broker, admin) = acl_cluster(
        "accounts:\n\
         - {accessKey: admin001, secretKey: admin-secret, admin: true}\n\
         - {accessKey: onsWriter, secretKey: writer-secret, defaultTopicPerm: DENY, defaultGroupPerm: DENY, topicPerms: [CompatNodeAcl=PUB]}\n\
         - {accessKey: onsReader, secretKey: reader-secret, defaultTopicPerm: DENY, defaultGroupPerm: DENY, topicPerms: [CompatNodeAcl=SUB], groupPerms: [CompatNodeAclGroup=SUB]}\n",
        ("admin001", "admin-secret"),
        topic,
    )
    .await?;
    let n = ns.addr();
    let broker_addr = broker.addr();
    let home = tempfile::tempdir()?;
    let run = |name: &str, run: &str, key: &str, secret: &str| -> Result<ClientOutput> {
        let argv = args(&[
            ("namesrv", &n),
            ("topic", topic),
            ("group", "CompatNodeAclPG"),
            ("run", run),
            ("count", "5"),
            ("modes", "sync"),
            ("access-key", key),
            ("secret-key", secret),
        ]);
        Ok(spawn(name, "producer", &argv, &home)?.finish(CLIENT_TIMEOUT))
    };

    let mut problems = Vec::new();
    let good = run("producer-good", "good", "onsWriter", "writer-secret")?;
    let ok = good.events("sent").into_iter().filter(|v| s(v, "status") == "SEND_OK").count();
    if ok != 5 {
        problems.push(format!("{ok} of 5 signed sends OK"));
    }
    let mut refused = Vec::new();
    for (name, key, secret, why) in [
        ("producer-wrong-secret", "onsWriter", "not-the-secret", "Check signature failed for accessKey=onsWriter"),
        ("producer-no-pub", "onsReader", "reader-secret", "No default permission for topic:CompatNodeAcl"),
    ] {
        let before = acl_denied(&admin, &broker_addr).await.context("aclDenied before")?;
        let out = run(name, name, key, secret)?;
        // ali-ons reports a refused send as failed after its retries, without the
        // broker's remark; the broker counts each refusal (and logs why).
        if out.events("sent").iter().any(|v| s(v, "status") == "SEND_OK") || out.events("error").len() != 5 {
            problems.push(format!("{name}: sends that should be refused ({why}) were not"));
        }
        let after = acl_denied(&admin, &broker_addr).await.context("aclDenied after")?;
        if after < before + 5 {
            problems.push(format!("{name}: {} refusals counted for 5 refused sends", after - before));
        }
        refused.push(out);
    }
    let want: Vec<String> = (0..5).map(|i| format!("good-sync-{i}")).collect();
    let stored = tests::stored_bodies(&n, topic, Some(("admin001", "admin-secret"))).await?;
    if stored != want {
        problems.push(format!("stored {stored:?} instead of {want:?}"));
    }

    let signed_as_reader = args(&[("access-key", "onsReader"), ("secret-key", "reader-secret")]);
    let reader = spawn(
        "consumer-reader",
        "consumer",
        &[consumer_args(&n, "CompatNodeAclGroup", topic, 5, &[]), signed_as_reader.clone()].concat(),
        &home,
    )?
    .finish(CLIENT_TIMEOUT);
    for p in check_consumed(&good.events("sent"), &reader.events("received"), topic, |_| true) {
        problems.push(format!("reader: {p}"));
    }
    let stranger = spawn(
        "consumer-other-group",
        "consumer",
        &[consumer_args(&n, "CompatNodeAclOther", topic, 5, &["--deadline", "8"]), signed_as_reader].concat(),
        &home,
    )?
    .finish(CLIENT_TIMEOUT);
    if !stranger.events("received").is_empty() {
        problems.push(format!("a group without SUB received {} messages", stranger.events("received").len()));
    }
    admin.shutdown();
    report(problems, &[&good, &refused[0], &refused[1], &reader, &stranger])
}
