//! Request-reply between two of our clients through a real broker: the requester
//! (`Producer::request`) stamps CORRELATION_ID / REPLY_TO_CLIENT / TTL; a push
//! consumer answers each request with `create_reply_message` + `send_reply`
//! (SEND_REPLY_MESSAGE_V2); the broker pushes the reply to the requester
//! (PUSH_REPLY_MESSAGE_TO_CLIENT) and stores it in `<cluster>_REPLY_TOPIC`.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use client::consumer::{AsyncFnListener, ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
use client::{create_reply_message, Error, Message, MessageExt, Producer, ProducerOptions};
use common::properties::keys;
use remoting::RemotingClient;
use tests::wire::Wire;
use tests::{eventually, Broker, Namesrv};

const WAIT: Duration = Duration::from_secs(30);
const REPLY_TOPIC: &str = "DefaultCluster_REPLY_TOPIC";

async fn cluster(topic: &str) -> Result<(Namesrv, Broker, Wire)> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    w.create_topic(topic, 2).await?;
    let rc = RemotingClient::new(remoting::ClientConfig::default(), None);
    eventually(WAIT, "the routes", || async {
        let req = tests::wire::route(&rc, &ns.addr(), topic).await.ok().flatten();
        let reply = tests::wire::route(&rc, &ns.addr(), REPLY_TOPIC).await.ok().flatten();
        (req.is_some() && reply.is_some()).then_some(())
    })
    .await?;
    Ok((ns, broker, w))
}

fn producer(ns: &Namesrv, group: &str) -> Producer {
    Producer::new(group, config::ClientConfig::default(), Some(vec![ns.addr()]), ProducerOptions::default())
}

/// A responder: consumes requests and answers `pong: <body>`.
async fn responder(ns: &Namesrv, topic: &str) -> Result<(PushConsumer, Producer)> {
    let replies = producer(ns, "ResponderProducer");
    let p = replies.clone();
    let consumer = PushConsumer::builder("Responders")
        .namesrv(&ns.addr())
        .subscribe(topic, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .listener(AsyncFnListener(move |msgs: Vec<MessageExt>, _ctx: ConsumeContext| {
            let p = p.clone();
            async move {
                for m in msgs {
                    let body = format!("pong: {}", String::from_utf8_lossy(&m.body));
                    let Ok(reply) = create_reply_message(&m, body) else { return ConsumeStatus::Success };
                    if p.send_reply(reply).await.is_err() {
                        return ConsumeStatus::ReconsumeLater;
                    }
                }
                ConsumeStatus::Success
            }
        }))
        .start()
        .await?;
    Ok((consumer, replies))
}

#[tokio::test]
async fn a_request_gets_its_reply_from_a_consumer() -> Result<()> {
    let topic = "Requests";
    let (ns, _broker, w) = cluster(topic).await?;
    let (consumer, replies) = responder(&ns, topic).await?;
    let requester = producer(&ns, "Requesters");

    let reply = requester.request(Message::new(topic, "ping 0"), Duration::from_secs(15)).await?;
    ensure!(&reply.body[..] == b"pong: ping 0", "reply body {:?}", reply.body);
    ensure!(reply.topic == REPLY_TOPIC, "reply topic {}", reply.topic);
    let p = &reply.properties;
    ensure!(p.get(keys::MESSAGE_TYPE) == Some("reply"));
    ensure!(p.get(keys::MESSAGE_REPLY_TO_CLIENT) == Some(requester.instance().client_id()));
    ensure!(p.get(keys::CORRELATION_ID).is_some() && p.get(keys::MESSAGE_TTL) == Some("15000"));
    ensure!(p.get(keys::PUSH_REPLY_TIME).is_some() && p.get(keys::REPLY_MESSAGE_ARRIVE_TIME).is_some());

    // Concurrent requests each get their own answer.
    let mut tasks = Vec::new();
    for i in 1..=8 {
        let r = requester.clone();
        tasks.push(tokio::spawn(async move {
            r.request(Message::new(topic, format!("ping {i}")), Duration::from_secs(15)).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let reply = t.await??;
        ensure!(reply.body == format!("pong: ping {}", i + 1).as_bytes(), "reply {} body {:?}", i + 1, reply.body);
    }
    // The broker also stored every reply in the reply topic.
    eventually(WAIT, "9 replies stored", || async { (w.max_offset(REPLY_TOPIC, 0).await.ok()? >= 9).then_some(()) })
        .await?;

    consumer.shutdown().await;
    replies.shutdown().await;
    requester.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_request_nobody_answers_times_out_and_a_late_reply_is_dropped() -> Result<()> {
    let topic = "Unanswered";
    let (ns, _broker, _w) = cluster(topic).await?;
    let requester = producer(&ns, "LonelyRequesters");
    let started = Instant::now();
    let r = requester.request(Message::new(topic, "anyone?"), Duration::from_millis(1500)).await;
    let took = started.elapsed();
    ensure!(matches!(r, Err(Error::Timeout(_))), "unanswered request: {r:?}");
    ensure!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "timed out after {took:?}");

    // A responder that comes late answers into the void: the requester is
    // connected, nobody waits, and nothing breaks.
    let (consumer, replies) = responder(&ns, topic).await?;
    let reply = requester.request(Message::new(topic, "now?"), Duration::from_secs(15)).await?;
    ensure!(&reply.body[..] == b"pong: now?");
    consumer.shutdown().await;
    replies.shutdown().await;
    requester.shutdown().await;
    Ok(())
}
