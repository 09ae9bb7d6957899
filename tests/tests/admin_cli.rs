//! The `ferromq-admin` command line against a real cluster.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use tests::{binary, eventually, Broker, Namesrv};

fn admin(ns: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(binary("ferromq-admin")).arg("-n").arg(ns).args(args).env_remove("NAMESRV_ADDR").output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_topic_send_consume_and_progress() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let n = ns.addr();
    let listed = eventually(Duration::from_secs(10), "the broker in clusterList", || async {
        let (ok, out) = admin(&n, &["clusterList"]).ok()?;
        (ok && out.contains(&broker.addr())).then_some(out)
    })
    .await?;
    assert!(listed.contains("DefaultCluster") && listed.contains("broker-a"), "{listed}");

    let (ok, out) = admin(&n, &["updateTopic", "-t", "AdminTopic", "-q", "2"])?;
    assert!(ok, "{out}");
    let route = eventually(Duration::from_secs(10), "the route of AdminTopic", || async {
        let (ok, out) = admin(&n, &["topicRoute", "-t", "AdminTopic"]).ok()?;
        ok.then_some(out)
    })
    .await?;
    assert!(route.contains("\"writeQueueNums\": 2"), "{route}");

    let (ok, out) = admin(&n, &["send", "-t", "AdminTopic", "--tags", "TagA", "-b", "hello from the cli"])?;
    assert!(ok && out.contains("SendOk"), "{out}");
    let consumed = eventually(Duration::from_secs(10), "the message to be readable", || async {
        let (ok, out) = admin(&n, &["consume", "-t", "AdminTopic"]).ok()?;
        (ok && out.contains("hello from the cli")).then_some(out)
    })
    .await?;
    assert!(consumed.contains("tags=TagA"), "{consumed}");

    let (ok, out) = admin(&n, &["consumerProgress", "-g", "NoSuchGroup", "-t", "AdminTopic"])?;
    assert!(ok && out.contains("Diff Total: 1"), "{out}");

    let (ok, out) = admin(&n, &["topicRoute", "-t", "Missing"])?;
    assert!(!ok && out.contains("Missing"), "an unknown topic is an error naming it: {out}");
    Ok(())
}
