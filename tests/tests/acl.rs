//! RocketMQ's plain ACL end to end: a name server and a broker with `aclEnable`,
//! real processes, clients signing with the SDK's credentials. What the broker
//! refuses is refused with RocketMQ's words and never reaches the store; a changed
//! `plain_acl.yml` is obeyed by the next request, a broken one keeps the last good
//! rules; the ACL admin requests edit the file through `ferromq-admin`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use client::consumer::pull_consumer::PullConsumer;
use client::{Admin, Message, Producer, ProducerOptions};
use tests::{binary, eventually, Broker, Namesrv};

const WAIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "AclTopic";
const GROUP: &str = "AclGroup";

const ACL_FILE: &str = r#"
accounts:
  - accessKey: admin001
    secretKey: admin-secret
    admin: true
  - accessKey: producer1
    secretKey: producer-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms: [ "AclTopic=PUB" ]
  - accessKey: reader01
    secretKey: reader-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms: [ "AclTopic=SUB" ]
    groupPerms: [ "AclGroup=SUB" ]
"#;

fn signed(namesrv: &str, ak: Option<(&str, &str)>) -> config::ClientConfig {
    config::ClientConfig {
        namesrv_addr: vec![namesrv.to_owned()],
        access_key: ak.map(|(a, _)| a.to_owned()),
        secret_key: ak.map(|(_, s)| config::Secret(s.to_owned())),
        // Failed sends refresh routes; keep the retries quick.
        mq_client_api_timeout: Duration::from_secs(3),
        ..config::ClientConfig::default()
    }
}

async fn producer(namesrv: &str, ak: Option<(&str, &str)>) -> Result<Producer> {
    let opts = ProducerOptions { retry_times_when_send_failed: 0, ..ProducerOptions::default() };
    Ok(Producer::new("AclPG", signed(namesrv, ak), None, opts))
}

/// The error a send of one message gets, or `None` when it was stored.
async fn send_error(p: &Producer, body: &str) -> Option<String> {
    p.send(Message::new(TOPIC, body.as_bytes().to_vec())).await.err().map(|e| format!("{e:#}"))
}

/// Every message body in the topic, read by the admin account.
async fn stored(namesrv: &str) -> Result<Vec<String>> {
    tests::stored_bodies(namesrv, TOPIC, Some(("admin001", "admin-secret"))).await
}

fn admin_cli(ns: &str, home: &Path, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(binary("ferromq-admin"))
        .arg("-n")
        .arg(ns)
        .args(args)
        .env_remove("NAMESRV_ADDR")
        .env("ROCKETMQ_HOME", home)
        .output()?;
    Ok((
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

async fn runtime_info(admin: &Admin, broker: &str, key: &str) -> Option<u64> {
    admin.broker_runtime_info(broker).await.ok()?.get(key)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_obey_the_file_and_refusals_never_reach_the_store() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let acl = dir.path().join("plain_acl.yml");
    std::fs::write(&acl, ACL_FILE)?;
    let ns = Namesrv::start(&[])?;
    let n = ns.addr();
    let broker = Broker::start(&n, &[("ACL_ENABLE", "true"), ("ACL_FILE", &acl.display().to_string())])?;
    let addr = broker.addr();

    // Topics are created by an admin only.
    let admin = Admin::new(signed(&n, Some(("admin001", "admin-secret"))), None);
    let not_admin = Admin::new(signed(&n, Some(("producer1", "producer-secret"))), None);
    eventually(WAIT, "the broker registered", || async {
        admin.cluster_info().await.ok().filter(|i| !i.broker_addr_table.is_empty())
    })
    .await?;
    let refused = not_admin.create_topic(TOPIC, 4, None).await.expect_err("only admins create topics");
    assert!(format!("{refused:#}").contains("Need admin permission for request code=17"), "{refused:#}");
    admin.create_topic(TOPIC, 4, None).await?;
    eventually(WAIT, "the topic's route", || async { admin.topic_route(TOPIC).await.ok() }).await?;

    // The right account sends; the wrong secret, no account and an account
    // without PUB are refused in RocketMQ's words.
    let good = producer(&n, Some(("producer1", "producer-secret"))).await?;
    for i in 0..20 {
        if let Some(e) = send_error(&good, &format!("ok-{i:02}")).await {
            bail!("send {i} refused: {e}");
        }
    }
    let cases = [
        (Some(("producer1", "not-the-secret")), "Check signature failed for accessKey=producer1"),
        (None, "No accessKey is configured"),
        (Some(("nobody01", "whatever1")), "No acl config for nobody01"),
        (Some(("reader01", "reader-secret")), "No default permission for topic:AclTopic"),
    ];
    for (i, (creds, why)) in cases.iter().enumerate() {
        let p = producer(&n, *creds).await?;
        let e = send_error(&p, &format!("refused-{i}")).await.context("a refused send")?;
        assert!(e.contains(why) && e.contains("AclException"), "{creds:?}: {e}");
        p.shutdown().await;
    }
    let want: Vec<String> = (0..20).map(|i| format!("ok-{i:02}")).collect();
    assert_eq!(stored(&n).await?, want, "exactly what was acknowledged");
    let denied = runtime_info(&admin, &addr, "aclDenied").await.context("aclDenied")?;
    assert!(denied >= 4, "refusals are counted: {denied}");

    // Consumers: the reader's group may pull, another group may not.
    let reader = PullConsumer::new(GROUP, signed(&n, Some(("reader01", "reader-secret"))), None);
    let queues = reader.fetch_subscribe_queues(TOPIC).await?;
    let mut read = 0;
    for mq in &queues {
        read += reader.pull(mq, "*", 0, 32).await?.messages.len();
    }
    assert_eq!(read, 20);
    reader.shutdown().await;
    let other = PullConsumer::new("OtherGroup", signed(&n, Some(("reader01", "reader-secret"))), None);
    let e = other.pull(&queues[0], "*", 0, 32).await.expect_err("a group without SUB");
    assert!(format!("{e:#}").contains("No default permission for group:OtherGroup"), "{e:#}");
    other.shutdown().await;

    // Hot reload: PUB taken away while the producer sends; the next requests obey.
    std::fs::write(&acl, ACL_FILE.replace("AclTopic=PUB", "AclTopic=DENY"))?;
    let mut acked = want.clone();
    let deadline = std::time::Instant::now() + WAIT;
    let refusal = loop {
        let body = format!("reload-{:04}", acked.len());
        match send_error(&good, &body).await {
            None => acked.push(body),
            Some(e) => break e,
        }
        assert!(std::time::Instant::now() < deadline, "sends still accepted {WAIT:?} after the change");
    };
    assert!(refusal.contains("No default permission for topic:AclTopic"), "{refusal}");
    // A broken edit keeps the last good rules and is counted.
    std::fs::write(&acl, "accounts: [ {")?;
    eventually(WAIT, "the broken file noticed", || async {
        runtime_info(&admin, &addr, "aclReloadsRefused").await.filter(|n| *n >= 1)
    })
    .await?;
    assert!(send_error(&good, "while-broken").await.is_some(), "the last good rules still deny");
    assert!(admin.topic_route(TOPIC).await.is_ok());
    acked.sort();
    assert_eq!(stored(&n).await?, acked, "nothing refused was stored, nothing acknowledged is missing");

    // The ACL admin requests, through ferromq-admin signing as the admin account of
    // $ROCKETMQ_HOME/conf/tools.yml (where mqadmin reads it).
    std::fs::write(&acl, ACL_FILE)?;
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("conf"))?;
    std::fs::write(home.join("conf/tools.yml"), "accessKey: admin001\nsecretKey: admin-secret\n")?;
    let (ok, out) =
        admin_cli(&n, &home, &["updateAclConfig", "-b", &addr, "-a", "newuser01", "-s", "new-secret", "-i", "PUB"])?;
    assert!(ok && out.contains("create or update plain access config to"), "{out}");
    assert!(std::fs::read_to_string(&acl)?.contains("newuser01"), "written back to the file");
    let newcomer = producer(&n, Some(("newuser01", "new-secret"))).await?;
    assert_eq!(send_error(&newcomer, "from-newcomer").await, None);
    let (ok, out) = admin_cli(&n, &home, &["clusterAclConfigVersion", "-b", &addr])?;
    assert!(ok && out.contains(&addr), "{out}");
    let (ok, out) = admin_cli(&n, &home, &["getAclConfig", "-b", &addr])?;
    assert!(ok && out.contains("newuser01") && out.contains("new-secret") && out.contains("admin001"), "{out}");
    // Maintenance that deletes or rewrites state needs an admin account; reading needs
    // a valid signature.
    let producer_home = dir.path().join("home-producer");
    std::fs::create_dir_all(producer_home.join("conf"))?;
    std::fs::write(producer_home.join("conf/tools.yml"), "accessKey: producer1\nsecretKey: producer-secret\n")?;
    let (ok, out) = admin_cli(&n, &producer_home, &["cleanUnusedTopic", "-b", &addr])?;
    assert!(!ok && out.contains("Need admin permission for request code=316, but accessKey=producer1"), "{out}");
    let (ok, out) = admin_cli(&n, &producer_home, &["getBrokerConfig", "-b", &addr, "--json"])?;
    assert!(ok && out.contains("\"aclEnable\": \"true\""), "{out}");
    let (ok, out) = admin_cli(&n, &home, &["cleanUnusedTopic", "-b", &addr])?;
    assert!(ok, "{out}");
    let (ok, out) = admin_cli(&n, &home, &["updateAclConfig", "-b", &addr, "-a", "short", "-s", "new-secret"])?;
    assert!(!ok && out.contains("accessKey=short"), "{out}");
    let (ok, out) = admin_cli(&n, &home, &["deleteAclConfig", "-b", &addr, "-a", "newuser01"])?;
    assert!(ok && out.contains("delete plain access config account from"), "{out}");
    let e = send_error(&newcomer, "after-delete").await.context("a deleted account is refused")?;
    assert!(e.contains("No acl config for newuser01"), "{e}");
    let (ok, out) = admin_cli(&n, &home, &["updateGlobalWhiteAddr", "-b", &addr, "-g", "127.0.0.*"])?;
    assert!(ok, "{out}");
    // White-listed: even an unsigned producer sends.
    let anonymous = producer(&n, None).await?;
    assert_eq!(send_error(&anonymous, "white-listed").await, None);
    // Without credentials, the admin tool is refused.
    std::fs::remove_file(home.join("conf/tools.yml"))?;
    std::fs::write(&acl, ACL_FILE)?;
    eventually(WAIT, "the white list removed", || async { send_error(&anonymous, "probe").await }).await?;
    let (ok, out) = admin_cli(&n, &home, &["updateAclConfig", "-b", &addr, "-a", "sneaky01", "-s", "sneaky-secret"])?;
    assert!(!ok && out.contains("No accessKey is configured"), "{out}");

    for p in [good, newcomer, anonymous] {
        p.shutdown().await;
    }
    admin.shutdown();
    not_admin.shutdown();
    Ok(())
}
