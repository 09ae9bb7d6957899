//! Plugins deployed and bound while the brokers run, with `ferromq-admin plugin`: a
//! Lua filter deployed to a two-broker cluster and bound to a topic + group filters
//! for that group's consumer while another group receives everything; a redeploy
//! changes the filter without a restart; a broken version is refused with its reason
//! while the old one keeps serving; the deployment and binding survive a restart;
//! rollback, unbind and remove work across the cluster.

mod client_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use client::{Message, Producer, ProducerOptions};
use tests::{binary, eventually, Broker, Namesrv};

use client_support::{admin_fails as fails, admin_ok as ok};
use client_support::{recording_consumer, Received, WAIT};

const CLUSTER: &str = "PluginCluster";
const TOPIC: &str = "Painted";

/// A Lua filter delivering the messages whose `color` property is `color`, and
/// logging what it kept.
fn color_filter(color: &str) -> String {
    format!(
        "PLUGIN = {{ name = \"colors\", version = \"1.0.0\", abi = 1 }}\n\
         function filter_batch(msgs, n, out, sub)\n  \
           local kept = 0\n  \
           for i = 1, n do out[i] = msgs[i].props.color == \"{color}\"; if out[i] then kept = kept + 1 end end\n  \
           log(3, \"{color} kept \" .. kept .. \" of \" .. n)\n\
         end\n"
    )
}

/// `plugin list --json` rows of plugin `colors`, one per broker.
fn listed(ns: &str) -> Result<Vec<Value>> {
    let out = ok(ns, &["plugin", "list", "--clusterName", CLUSTER, "--json"])?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("no JSON: {out}"))?;
    Ok(v.as_array().cloned().unwrap_or_default().into_iter().filter(|r| r["Plugin"] == "colors").collect())
}

/// A cell as text (`--json` prints number-like cells as numbers).
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `plugin logs colors --follow` running, its lines collected.
struct Follow {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Follow {
    fn start(ns: &str) -> Result<Self> {
        use std::io::BufRead;
        let mut child = Command::new(binary("ferromq-admin"))
            .args(["-n", ns, "plugin", "logs", "colors", "--clusterName", CLUSTER, "--follow"])
            .env_remove("NAMESRV_ADDR")
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
                sink.lock().expect("not poisoned").push(line);
            }
        });
        Ok(Self { child, lines })
    }

    fn printed(&self) -> Vec<String> {
        self.lines.lock().expect("not poisoned").clone()
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256_of(path: &Path) -> Result<String> {
    use sha2::Digest;
    Ok(sha2::Sha256::digest(std::fs::read(path)?).iter().map(|b| format!("{b:02x}")).collect())
}

/// Sends `n` messages, alternating red and blue, tagged with `round`; returns
/// (red ids, all ids).
async fn paint(producer: &Producer, round: &str, n: usize) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let (mut red, mut all) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..n {
        let color = if i % 2 == 0 { "red" } else { "blue" };
        let id = format!("{round}-{i}-{color}");
        let mut msg = Message::new(TOPIC, id.clone().into_bytes());
        msg.properties.insert("color", color.to_owned());
        producer.send(msg).await?;
        if color == "red" {
            red.insert(id.clone());
        }
        all.insert(id);
    }
    Ok((red, all))
}

/// The bodies `seen` holds that start with `round`.
fn of_round(seen: &Received, round: &str) -> BTreeSet<String> {
    let seen = seen.lock().expect("not poisoned");
    seen.iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .filter(|b| b.starts_with(&format!("{round}-")))
        .collect()
}

/// Waits until `seen` holds exactly `want` of `round` (and, for a filtered group,
/// nothing else of it once the unfiltered group has everything).
async fn received(seen: &Received, round: &str, want: &BTreeSet<String>, what: &str) -> Result<()> {
    eventually(WAIT, what, || async { (of_round(seen, round) == *want).then_some(()) })
        .await
        .with_context(|| format!("{what}: got {:?}", of_round(seen, round)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_is_deployed_bound_redeployed_and_removed_without_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let write = |name: &str, text: &str| -> Result<std::path::PathBuf> {
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    };
    let red = write("red.lua", &color_filter("red"))?;
    let blue = write("blue.lua", &color_filter("blue"))?;
    let broken =
        write("broken.lua", "PLUGIN = { name = \"colors\", version = \"9\", abi = 1 }\nfunction filter_batch(")?;

    let ns = Namesrv::start(&[])?;
    let n = ns.addr();
    let mut brokers = Vec::new();
    for name in ["broker-p1", "broker-p2"] {
        brokers.push(Broker::start(&n, &[("BROKER_NAME", name), ("BROKER_CLUSTER_NAME", CLUSTER)])?);
    }
    eventually(WAIT, "both brokers registered", || async {
        ok(&n, &["clusterList"]).ok().filter(|o| brokers.iter().all(|b| o.contains(&b.addr())))
    })
    .await?;
    ok(&n, &["updateTopic", "-t", TOPIC, "--clusterName", CLUSTER, "-r", "2", "-w", "2"])?;

    // Deploy to the cluster: every broker answers the artifact's SHA-256.
    let red_sha = sha256_of(&red)?;
    let out =
        ok(&n, &["plugin", "deploy", red.to_str().context("utf-8")?, "--name", "colors", "--clusterName", CLUSTER])?;
    ensure!(out.matches(&red_sha).count() == 2, "both brokers serve the red filter: {out}");
    ok(&n, &["plugin", "bind", "colors", "-t", TOPIC, "-g", "RedOnly", "--clusterName", CLUSTER])?;
    let rows = listed(&n)?;
    ensure!(rows.len() == 2, "{rows:?}");
    for r in &rows {
        ensure!(r["State"] == "loaded" && r["Source"] == "deployed" && r["Generation"] == 1, "{r}");
        ensure!(r["Bindings"] == format!("{TOPIC}@RedOnly"), "{r}");
    }

    let producer = Producer::new("PaintPG", client_support::client_config(&n), None, ProducerOptions::default());
    let (filtered, filtered_seen) = recording_consumer(&n, "RedOnly", TOPIC, "*").await?;
    let (everything, all_seen) = recording_consumer(&n, "Everything", TOPIC, "*").await?;

    let (want_red, want_all) = paint(&producer, "r1", 40).await?;
    received(&all_seen, "r1", &want_all, "the unbound group receiving every message").await?;
    received(&filtered_seen, "r1", &want_red, "the bound group receiving only red messages").await?;

    // The plugin's log lines, on every broker of the cluster.
    let logged = ok(&n, &["plugin", "logs", "colors", "--clusterName", CLUSTER])?;
    ensure!(logged.contains("INFO  red kept"), "{logged}");
    let follow = Follow::start(&n)?;

    // A new version, hot: blue from now on, generation 2 on both brokers.
    let blue_sha = sha256_of(&blue)?;
    let out =
        ok(&n, &["plugin", "deploy", blue.to_str().context("utf-8")?, "--name", "colors", "--clusterName", CLUSTER])?;
    ensure!(out.matches(&blue_sha).count() == 2, "{out}");
    let (want_red, want_all) = paint(&producer, "r2", 40).await?;
    let want_blue: BTreeSet<String> = want_all.difference(&want_red).cloned().collect();
    received(&all_seen, "r2", &want_all, "every message of the second round").await?;
    received(&filtered_seen, "r2", &want_blue, "only blue messages after the redeploy").await?;
    eventually(WAIT, "`plugin logs --follow` printing the new version's lines", || async {
        follow.printed().iter().any(|l| l.contains("blue kept")).then_some(())
    })
    .await?;
    drop(follow);

    // A broken version is refused with the reason; blue keeps serving.
    let out = fails(
        &n,
        &["plugin", "deploy", broken.to_str().context("utf-8")?, "--name", "colors", "--clusterName", CLUSTER],
    )?;
    ensure!(out.contains("previous version keeps serving") && out.contains("2 broker(s) refused"), "{out}");
    for r in listed(&n)? {
        ensure!(r["Generation"] == 2 && text(&r["SHA-256"]) == blue_sha[..12], "still the blue version: {r}");
    }
    // A truncated WASM module is refused too, and nothing of it is kept.
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/wasm/price_range_filter.wasm");
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &std::fs::read(&wasm)?[..200])?;
    let out = fails(
        &n,
        &["plugin", "deploy", truncated.to_str().context("utf-8")?, "--name", "half", "--clusterName", CLUSTER],
    )?;
    ensure!(out.contains("refused: ") && out.contains("2 broker(s) refused"), "{out}");
    let all = ok(&n, &["plugin", "list", "--clusterName", CLUSTER, "--json"])?;
    ensure!(!all.contains("\"half\""), "a refused plugin is not listed: {all}");

    let (want_red, want_all) = paint(&producer, "r3", 20).await?;
    let want_blue: BTreeSet<String> = want_all.difference(&want_red).cloned().collect();
    received(&filtered_seen, "r3", &want_blue, "blue still filtered after the refused deploy").await?;

    // Deployment and binding survive a restart (kill -9) of a broker.
    let first = brokers.remove(0);
    brokers.insert(0, first.restart(&n, true)?);
    let restarted = brokers[0].addr();
    eventually(WAIT, "the restarted broker listing the plugin", || async {
        let rows = listed(&n).ok()?;
        rows.iter()
            .any(|r| {
                r["Broker"] == restarted.as_str()
                    && text(&r["SHA-256"]) == blue_sha[..12]
                    && r["Bindings"] == format!("{TOPIC}@RedOnly")
            })
            .then_some(())
    })
    .await?;

    // Rollback serves red again.
    let out = ok(&n, &["plugin", "rollback", "colors", "--clusterName", CLUSTER])?;
    ensure!(out.matches(&red_sha).count() == 2, "{out}");
    let (want_red, _) = paint(&producer, "r4", 20).await?;
    received(&filtered_seen, "r4", &want_red, "red again after the rollback").await?;

    // A bound plugin is not removed; unbound, the group receives everything again.
    let out = fails(&n, &["plugin", "remove", "colors", "--clusterName", CLUSTER])?;
    ensure!(out.contains("still bound"), "{out}");
    ok(&n, &["plugin", "unbind", "colors", "-t", TOPIC, "-g", "RedOnly", "--clusterName", CLUSTER])?;
    let (_, want_all) = paint(&producer, "r5", 20).await?;
    received(&filtered_seen, "r5", &want_all, "every message once unbound").await?;
    ok(&n, &["plugin", "remove", "colors", "--clusterName", CLUSTER])?;
    ensure!(listed(&n)?.is_empty(), "removed from every broker");
    let out = fails(&n, &["plugin", "bind", "colors", "-t", TOPIC, "-g", "RedOnly", "--clusterName", CLUSTER])?;
    ensure!(out.contains("no plugin named `colors`"), "{out}");

    filtered.shutdown().await;
    everything.shutdown().await;
    producer.shutdown().await;
    Ok(())
}
