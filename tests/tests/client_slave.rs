//! The SDK's consumers and a master/slave pair of `broker-a`: while the master is
//! gone they consume from the slave and commit their offsets there; when it returns
//! they go back to it and no consumer's position moves backwards.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Result};
use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
use client::{Message, MessageExt};
use remoting::{RemotingCommand, RequestCode};
use tests::wire::Wire;
use tests::{eventually, Broker, Namesrv};

mod client_support;
use client_support::{producer, text, WAIT};

fn fast_client(ns: &str) -> config::ClientConfig {
    config::ClientConfig {
        namesrv_addr: vec![ns.to_owned()],
        poll_name_server_interval: Duration::from_secs(1),
        persist_consumer_offset_interval: Duration::from_millis(200),
        ..config::ClientConfig::default()
    }
}

/// Deliveries per body.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<BTreeMap<String, usize>>>);

impl Log {
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn duplicates(&self) -> Vec<(String, usize)> {
        self.0.lock().unwrap().iter().filter(|(_, n)| **n > 1).map(|(b, n)| (b.clone(), *n)).collect()
    }
}

/// A group's committed offsets on a broker (GET_ALL_CONSUMER_OFFSET), summed over
/// the topic's queues.
async fn committed(w: &Wire, topic: &str, group: &str) -> Option<i64> {
    let r = w.call(RemotingCommand::request(RequestCode::GET_ALL_CONSUMER_OFFSET)).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body_bytes()).ok()?;
    let queues = v["offsetTable"][format!("{topic}@{group}")].as_object()?.clone();
    Some(queues.values().filter_map(serde_json::Value::as_i64).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_consumer_goes_on_with_the_slave_and_back_to_the_master() -> Result<()> {
    let topic = "SlaveRead";
    let ns = Namesrv::start(&[])?;
    let master = Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a")])?;
    let slave =
        Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a"), ("BROKER_ROLE", "SLAVE"), ("BROKER_ID", "1")])?;
    let (mw, sw) = (Wire::new(master.addr()), Wire::new(slave.addr()));
    mw.create_topic(topic, 2).await?;
    eventually(WAIT, "the slave to know the topic", || async {
        sw.topic_configs().await.ok()?.contains_key(topic).then_some(())
    })
    .await?;
    let p = producer(&ns.addr(), "SlaveReadProducer");
    for i in 0..40 {
        p.send(Message::new(topic, format!("before-{i}"))).await?;
    }
    let end: i64 = mw.runtime_info().await?["commitLogMaxOffset"].parse()?;
    eventually(WAIT, "the slave to catch up", || async {
        let info = sw.runtime_info().await.ok()?;
        (info.get("commitLogMaxOffset")?.parse::<i64>().ok()? >= end && info.get("dispatchBehindBytes")? == "0")
            .then_some(())
    })
    .await?;

    // The master goes away; the name servers drop it with its connection.
    let stopped = master.kill9_and_keep();
    let log = Log::default();
    let l = log.clone();
    let consumer = PushConsumer::builder("SlaveReadGroup")
        .config(fast_client(&ns.addr()))
        .subscribe(topic, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| o.rebalance_interval = Duration::from_secs(1))
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            let mut seen = l.0.lock().unwrap();
            for m in msgs {
                *seen.entry(text(&m.body)).or_default() += 1;
            }
            ConsumeStatus::Success
        })
        .start()
        .await?;
    eventually(WAIT, "every message consumed from the slave", || async { (log.distinct() == 40).then_some(()) })
        .await?;
    eventually(WAIT, "the offsets committed on the slave", || async {
        (committed(&sw, topic, "SlaveReadGroup").await? == 40).then_some(())
    })
    .await?;

    // The master returns: new messages come from it, the position carries on.
    let master = stopped.start(&ns.addr())?;
    let mw = Wire::new(master.addr());
    eventually(WAIT, "the master's route back", || async {
        let client = remoting::RemotingClient::new(remoting::ClientConfig::default(), None);
        let r = tests::wire::route(&client, &ns.addr(), topic).await.ok()??;
        r.broker_datas.first()?.broker_addrs.contains_key(&0).then_some(())
    })
    .await?;
    // A producer started now finds the master where it came back.
    p.shutdown().await;
    let p = producer(&ns.addr(), "SlaveReadProducer");
    for i in 0..10 {
        p.send(Message::new(topic, format!("after-{i}"))).await?;
    }
    eventually(WAIT, "the new messages consumed", || async { (log.distinct() == 50).then_some(()) }).await?;
    eventually(WAIT, "the master's offsets to catch up with the consumer's", || async {
        (committed(&mw, topic, "SlaveReadGroup").await? == 50).then_some(())
    })
    .await?;
    ensure!(log.duplicates().is_empty(), "redelivered: {:?}", log.duplicates());
    consumer.shutdown().await;
    p.shutdown().await;
    Ok(())
}

/// With `slaveReadEnable`, a master sends consumers that read from behind the page
/// cache to its slave (here every consumer: the allowed share of RAM is 0); the SDK
/// follows the suggestion, consumes everything from the slave and commits on the
/// master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_read_the_slave_when_the_master_suggests_it() -> Result<()> {
    let topic = "SlaveSuggested";
    let ns = Namesrv::start(&[])?;
    let reads = [("SLAVE_READ_ENABLE", "true"), ("ACCESS_MESSAGE_IN_MEMORY_MAX_RATIO", "0")];
    let mut m = vec![("BROKER_NAME", "broker-a")];
    m.extend_from_slice(&reads);
    let master = Broker::start(&ns.addr(), &m)?;
    let mut s = vec![("BROKER_NAME", "broker-a"), ("BROKER_ROLE", "SLAVE"), ("BROKER_ID", "1")];
    s.extend_from_slice(&reads);
    let slave = Broker::start(&ns.addr(), &s)?;
    let (mw, sw) = (Wire::new(master.addr()), Wire::new(slave.addr()));
    mw.create_topic(topic, 2).await?;
    eventually(WAIT, "the slave to know the topic", || async {
        sw.topic_configs().await.ok()?.contains_key(topic).then_some(())
    })
    .await?;
    let p = producer(&ns.addr(), "SlaveSuggestedProducer");
    for i in 0..40 {
        p.send(Message::new(topic, format!("m-{i}"))).await?;
    }
    let pulls = |w: Wire| async move {
        let info = w.runtime_info().await.ok()?;
        info.get("pullRequests")?.parse::<u64>().ok()
    };
    let slave_before = pulls(sw.clone()).await.unwrap_or(0);
    let log = Log::default();
    let l = log.clone();
    let consumer = PushConsumer::builder("SlaveSuggestedGroup")
        .config(fast_client(&ns.addr()))
        .subscribe(topic, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| o.rebalance_interval = Duration::from_secs(1))
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            let mut seen = l.0.lock().unwrap();
            for m in msgs {
                *seen.entry(text(&m.body)).or_default() += 1;
            }
            ConsumeStatus::Success
        })
        .start()
        .await?;
    eventually(WAIT, "every message consumed", || async { (log.distinct() == 40).then_some(()) }).await?;
    let slave_after = pulls(sw.clone()).await.unwrap_or(0);
    ensure!(slave_after > slave_before, "no pull went to the slave ({slave_before} -> {slave_after})");
    eventually(WAIT, "the offsets committed on the master", || async {
        (committed(&mw, topic, "SlaveSuggestedGroup").await? == 40).then_some(())
    })
    .await?;
    consumer.shutdown().await;
    p.shutdown().await;
    Ok(())
}
