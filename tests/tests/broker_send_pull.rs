//! Send and pull against a real broker registered with a real name server.

use std::time::{Duration, Instant};

use anyhow::Result;
use common::properties::keys;
use remoting::ResponseCode;
use tests::wire::{props, route, Wire};
use tests::{eventually, Broker, Namesrv};

#[tokio::test]
async fn broker_registers_and_messages_go_through() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("TopicTest", 4).await?;
    let r = eventually(Duration::from_secs(10), "route of TopicTest", || async {
        route(&w.client, &ns.addr(), "TopicTest").await.ok().flatten()
    })
    .await?;
    assert_eq!(r.broker_datas[0].master_addr(), Some(broker.addr().as_str()));
    assert_eq!(r.queue_datas[0].write_queue_nums, 4);

    let mut sent = Vec::new();
    for i in 0..10 {
        let s = w
            .send("TopicTest", 1, format!("hello {i}").as_bytes(), &props(&[(keys::TAGS, "TagA"), (keys::KEYS, "k1")]))
            .await?;
        assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
        assert_eq!(s.queue_offset, i);
        sent.push(s);
    }
    // Acknowledged means in the commit log; the consume queue follows a moment later.
    let p = w.pull_at_least("G1", "TopicTest", 1, 0, 10).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(p.messages.len(), 10);
    assert_eq!(p.next_begin_offset, 10);
    assert_eq!(p.max_offset, 10);
    for (i, m) in p.messages.iter().enumerate() {
        assert_eq!(&m.body[..], format!("hello {i}").as_bytes());
        assert_eq!(m.offset_msg_id(), sent[i].msg_id);
        assert_eq!(m.properties.get(keys::CLUSTER), Some("DefaultCluster"));
        assert_eq!(m.store_host.to_string(), broker.addr());
    }
    Ok(())
}

#[tokio::test]
async fn parked_pull_returns_within_100ms_of_a_send() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("LongPoll", 1).await?;
    let puller = w.clone();
    let parked = tokio::spawn(async move {
        let p = puller.pull("G", "LongPoll", 0, 0, "*", "TAG", 15_000).await;
        (p, Instant::now())
    });
    // Wait until the broker has parked the pull.
    w.wait_parked_pulls(1, Duration::from_secs(5)).await?;
    let sent_at = Instant::now();
    let s = w.send("LongPoll", 0, b"wake up", &props(&[])).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS);
    let (p, answered_at) = parked.await?;
    let p = p?;
    assert_eq!(p.code, ResponseCode::SUCCESS);
    assert_eq!(&p.messages[0].body[..], b"wake up");
    let lag = answered_at.duration_since(sent_at);
    assert!(lag < Duration::from_millis(100), "parked pull answered {lag:?} after the send");
    Ok(())
}

/// RocketMQ 5's lite-pull consumers pull with LITE_PULL_MESSAGE (361) and the lite-pull
/// system flag: served like PULL_MESSAGE, long polling included, and refused with
/// RocketMQ's NO_PERMISSION remark when `lite_pull_message_enable` is off.
#[tokio::test]
async fn lite_pull_message_is_served_like_a_pull() -> Result<()> {
    use common::sysflag::pull as pull_flag;
    use remoting::RequestCode;
    use tests::wire::pull_header;

    const LITE_PULL: i32 = 0x1 << 4;
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("LiteT", 1).await?;
    let s = w.send("LiteT", 0, b"first", &props(&[(keys::TAGS, "A")])).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);

    let mut h = pull_header("LiteG", "LiteT", 0, 0);
    h.sys_flag = pull_flag::SUBSCRIPTION | LITE_PULL;
    h.subscription = Some("*".into());
    h.expression_type = Some("TAG".into());
    let p = w.pull_as(RequestCode::LITE_PULL_MESSAGE, &h).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(p.messages.len(), 1);
    assert_eq!(&p.messages[0].body[..], b"first");
    assert_eq!(p.next_begin_offset, 1);

    // Nothing more: held (as RocketMQ 5 holds a suspendable lite pull) until the next
    // message arrives.
    h.queue_offset = 1;
    h.sys_flag |= pull_flag::SUSPEND;
    h.suspend_timeout_millis = 20_000;
    let held = tokio::spawn({
        let (w, h) = (w.clone(), h.clone());
        async move { w.pull_as(RequestCode::LITE_PULL_MESSAGE, &h).await }
    });
    w.wait_parked_pulls(1, Duration::from_secs(10)).await?;
    let started = Instant::now();
    w.send("LiteT", 0, b"second", &props(&[])).await?;
    let p = held.await??;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(&p.messages[0].body[..], b"second");
    assert!(started.elapsed() < Duration::from_secs(10), "answered on arrival");

    let off = Broker::start(&ns.addr(), &[("LITE_PULL_MESSAGE_ENABLE", "false")])?;
    let w = Wire::new(off.addr());
    h.queue_offset = 0;
    h.sys_flag &= !pull_flag::SUSPEND;
    let refused = w.call(remoting::RemotingCommand::request_with(RequestCode::LITE_PULL_MESSAGE, &h)).await?;
    assert_eq!(refused.response_code(), ResponseCode::NO_PERMISSION);
    assert!(refused.remark_str().contains("for lite pull consumer is forbidden"), "{:?}", refused.remark);
    Ok(())
}
