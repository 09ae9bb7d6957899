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

/// `clusterList` shows a master/slave pair's roles and HA addresses; `haStatus`
/// shows the master's slave with its acknowledged offset and lag, and the slave's
/// master.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_list_and_ha_status_show_replication() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let master = Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a"), ("BROKER_ROLE", "SYNC_MASTER")])?;
    let slave =
        Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a"), ("BROKER_ROLE", "SLAVE"), ("BROKER_ID", "1")])?;
    let n = ns.addr();
    let listed = eventually(Duration::from_secs(20), "both brokers in clusterList", || async {
        let (ok, out) = admin(&n, &["clusterList"]).ok()?;
        (ok && out.contains(&master.addr()) && out.contains(&slave.addr())).then_some(out)
    })
    .await?;
    let line = |addr: &str| listed.lines().find(|l| l.contains(addr)).unwrap_or_default().to_owned();
    let (m, s) = (line(&master.addr()), line(&slave.addr()));
    assert!(m.contains("SYNC_MASTER") && m.contains("127.0.0.1:"), "{listed}");
    assert!(s.contains("SLAVE"), "{listed}");
    let ha = eventually(Duration::from_secs(20), "the slave in the master's haStatus", || async {
        let (ok, out) = admin(&n, &["haStatus", "-b", &master.addr(), "--json"]).ok()?;
        (ok && out.contains("\"slaveAckOffset\"") && out.contains("\"inSync\": true")).then_some(out)
    })
    .await?;
    assert!(ha.contains("\"master\": true"), "{ha}");
    let (ok, out) = admin(&n, &["haStatus", "-b", &slave.addr()])?;
    assert!(ok && out.to_lowercase().contains("master"), "{out}");
    Ok(())
}
