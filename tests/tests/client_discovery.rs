//! How the SDK finds name servers, and what it does without them (GitHub issue
//! #5): the `NAMESRV_ADDR` environment variable and `FERROMQ_CLIENT_*` settings
//! through `config::load_client_with_env` (the test never touches the process
//! environment), RocketMQ's HTTP address list served by our name server, failover
//! between listed name servers, and cached routes when every name server is down.

mod client_support;

use std::time::Duration;

use anyhow::{Context, Result};
use client::consumer::{PullConsumer, PullStatus};
use client::{Message, Producer, ProducerOptions};
use tests::Namesrv;

use client_support::{cluster, create_topic, producer, text};

/// The `http address list on ADDR` line a name server prints when
/// `FERROMQ_NAMESRV_HTTP_LISTEN_PORT` is set.
fn http_addr(ns: &Namesrv) -> Result<String> {
    let line =
        ns.process.extra.iter().find(|l| l.starts_with("http address list on ")).context("no http ready line")?;
    Ok(line.trim_start_matches("http address list on ").trim().to_owned())
}

/// A client with no address in code takes it from `NAMESRV_ADDR` (as RocketMQ's
/// `MixAll.NAMESRV_ADDR_ENV`); without it, sends fail with `NoNameServer`; an
/// address set in code wins over the environment.
#[tokio::test]
async fn namesrv_address_from_the_environment() -> Result<()> {
    let (ns, _brokers) = cluster(&["broker-a"])?;
    let topic = "ClientDiscoveryEnv";
    create_topic(&ns.addr(), topic, 2, 1).await?;

    let loaded = config::load_client_with_env(None, [("NAMESRV_ADDR", ns.addr())])?;
    assert_eq!(loaded.config.client.namesrv_addr, vec![ns.addr()]);
    let p = Producer::new("ClientDiscoveryEnvPG", loaded.config.client, None, ProducerOptions::default());
    let r = p.send(Message::new(topic, "via NAMESRV_ADDR")).await?;
    assert_eq!(r.message_queue.topic, topic);
    p.shutdown().await;

    // `;`-separated lists, a dead name server first: the client fails over.
    let dead = "127.0.0.1:9".to_owned();
    let loaded = config::load_client_with_env(None, [("NAMESRV_ADDR", format!("{dead};{}", ns.addr()))])?;
    assert_eq!(loaded.config.client.namesrv_addr, vec![dead.clone(), ns.addr()]);
    let p = Producer::new("ClientDiscoveryFailoverPG", loaded.config.client, None, ProducerOptions::default());
    p.send(Message::new(topic, "after failing over")).await?;
    p.shutdown().await;

    // Code wins over the environment.
    let loaded = config::load_client_with_env(None, [("NAMESRV_ADDR", dead.clone())])?;
    let p =
        Producer::new("ClientDiscoveryCodePG", loaded.config.client, Some(vec![ns.addr()]), ProducerOptions::default());
    p.send(Message::new(topic, "address set in code")).await?;
    p.shutdown().await;

    let empty: [(&str, &str); 0] = [];
    let loaded = config::load_client_with_env(None, empty)?;
    let p = Producer::new("ClientDiscoveryNonePG", loaded.config.client, None, ProducerOptions::default());
    let err = p.send(Message::new(topic, "nowhere")).await.expect_err("no name server");
    assert!(matches!(err, client::Error::NoNameServer), "{err}");
    p.shutdown().await;
    Ok(())
}

/// A client configured only with an HTTP endpoint (`FERROMQ_CLIENT_NAMESRV_HTTP_URL`,
/// RocketMQ's `rocketmq.namesrv.domain`) gets the list from the name server's
/// `/rocketmq/nsaddr` and sends through it, from its very first request.
#[tokio::test]
async fn namesrv_address_from_the_http_endpoint() -> Result<()> {
    let ns = Namesrv::start(&[("HTTP_LISTEN_PORT", "0")])?;
    let _broker = tests::Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a")])?;
    let topic = "ClientDiscoveryHttp";
    create_topic(&ns.addr(), topic, 2, 1).await?;
    let url = format!("http://{}/rocketmq/nsaddr", http_addr(&ns)?);

    let loaded = config::load_client_with_env(None, [("FERROMQ_CLIENT_NAMESRV_HTTP_URL", url.as_str())])?;
    let cfg = loaded.config.client;
    assert!(cfg.namesrv_addr.is_empty());
    assert_eq!(cfg.namesrv_http_url.as_deref(), Some(url.as_str()));
    let p = Producer::new("ClientDiscoveryHttpPG", cfg.clone(), None, ProducerOptions::default());
    let r = p.send(Message::new(topic, "via http discovery")).await?;
    assert_eq!(p.instance().namesrv_addrs(), vec![ns.addr()]);

    let c = PullConsumer::new("ClientDiscoveryHttpCG", cfg, None);
    // Long polling covers the moment between the commit-log append (the send's
    // answer) and the consume-queue entry.
    let got = c.pull_block_if_not_found(&r.message_queue, "*", r.queue_offset, 1, Duration::from_secs(10)).await?;
    assert_eq!(got.status, PullStatus::Found);
    assert_eq!(text(&got.messages[0].body), "via http discovery");
    c.shutdown().await;
    p.shutdown().await;
    Ok(())
}

/// Cached routes keep a running client working when every name server is down:
/// the name server is killed, route refreshes (every 200 ms here) fail, and the
/// producer still sends and a pull consumer still reads, on the cached routes.
#[tokio::test]
async fn cached_routes_survive_every_name_server_going_down() -> Result<()> {
    let (ns, _brokers) = cluster(&["broker-a"])?;
    let topic = "ClientDiscoveryCache";
    create_topic(&ns.addr(), topic, 2, 1).await?;
    let cfg = config::ClientConfig {
        namesrv_addr: vec![ns.addr()],
        poll_name_server_interval: Duration::from_millis(200),
        ..config::ClientConfig::default()
    };
    let p = Producer::new("ClientDiscoveryCachePG", cfg.clone(), None, ProducerOptions::default());
    let c = PullConsumer::new("ClientDiscoveryCacheCG", cfg, None);
    p.send(Message::new(topic, "before")).await?;
    let queues = c.fetch_subscribe_queues(topic).await?;

    let ns_addr = ns.addr();
    let Namesrv { process, home: _home } = ns;
    process.kill9();
    // Several refresh periods pass with every name server down.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(
            p.send(Message::new(topic, format!("after-{i}")))
                .await
                .with_context(|| format!("send {i} with the name server down"))?,
        );
    }
    assert_eq!(c.fetch_subscribe_queues(topic).await?, queues, "the cached route answers");
    for r in &sent {
        let got = c.pull_block_if_not_found(&r.message_queue, "*", r.queue_offset, 1, Duration::from_secs(10)).await?;
        assert_eq!(got.status, PullStatus::Found);
        assert_eq!(got.messages[0].properties.uniq_key(), Some(r.msg_id.as_str()));
    }
    // A brand-new client cannot start without a name server.
    let fresh = producer(&ns_addr, "ClientDiscoveryFreshPG");
    assert!(fresh.send(Message::new(topic, "x")).await.is_err());
    fresh.shutdown().await;
    c.shutdown().await;
    p.shutdown().await;
    Ok(())
}
