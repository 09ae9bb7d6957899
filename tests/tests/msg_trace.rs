//! RocketMQ 4.x message trace with our SDK: a producer, a push consumer and a
//! transactional producer with `enable_msg_trace` record their sends, consumptions
//! and transaction ends into the broker's trace topic (`traceTopicEnable`), and
//! `ferromq-admin queryMsgTraceById` prints each message's timeline from it.

mod client_support;

use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
use client::msg_trace::data::{TraceMessageType, TraceRecord};
use client::msg_trace::DEFAULT_TRACE_TOPIC;
use client::{
    LocalTransactionState, Message, MessageExt, Producer, ProducerOptions, TransactionListener, TransactionProducer,
};
use tests::{binary, eventually, Broker, Namesrv};

use client_support::{client_config, create_topic, WAIT};

fn traced() -> ProducerOptions {
    ProducerOptions { enable_msg_trace: true, ..ProducerOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_records_sends_consumptions_and_transaction_ends_that_the_admin_tool_reads() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(
        &ns.addr(),
        &[
            ("TRACE_TOPIC_ENABLE", "true"),
            ("AUTO_CREATE_TOPIC_ENABLE", "false"),
            ("TRANSACTION_CHECK_INTERVAL", "1s"),
            ("TRANSACTION_TIME_OUT", "1s"),
        ],
    )?;
    create_topic(&ns.addr(), "TracedOrders", 2, 1).await?;

    let delivered: Arc<Mutex<Vec<MessageExt>>> = Arc::default();
    let log = delivered.clone();
    let consumer = PushConsumer::builder("TracedOrdersCG")
        .namesrv(&ns.addr())
        .subscribe("TracedOrders", "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| o.enable_msg_trace = true)
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            log.lock().unwrap().extend_from_slice(msgs);
            ConsumeStatus::Success
        })
        .start()
        .await?;
    let producer = Producer::new("TracedOrdersPG", client_config(&ns.addr()), None, traced());
    let sent = producer
        .send(Message::new("TracedOrders", b"order 42".to_vec()).with_tags("Paid").with_keys(["order-42"]))
        .await?;
    let tx = TransactionProducer::new("TracedOrdersTG", client_config(&ns.addr()), None, traced(), UnknownThenCommit);
    let half = tx.send_message_in_transaction(Message::new("TracedOrders", b"order 43".to_vec()), ()).await?;
    eventually(WAIT, "both messages consumed", || async { (delivered.lock().unwrap().len() >= 2).then_some(()) })
        .await?;
    // Shutdown sends what is still queued.
    consumer.shutdown().await;
    producer.shutdown().await;

    let admin = client::Admin::new(client_config(&ns.addr()), None);
    let records = eventually(WAIT, "the send's and the consumption's records", || async {
        let r = admin.query_msg_trace(DEFAULT_TRACE_TOPIC, &sent.msg_id, 64, 0, i64::MAX).await.ok()?;
        (r.len() >= 3).then_some(r)
    })
    .await?;
    let [(TraceRecord::Pub(p), _), (TraceRecord::SubBefore(b), _), (TraceRecord::SubAfter(a), _)] = &records[..] else {
        panic!("want Pub, SubBefore, SubAfter: {records:#?}");
    };
    assert_eq!(
        (p.group.as_str(), p.topic.as_str(), p.tags.as_deref(), p.keys.as_deref()),
        ("TracedOrdersPG", "TracedOrders", Some("Paid"), Some("order-42"))
    );
    assert_eq!(
        (p.offset_msg_id.as_deref(), p.store_host.as_str()),
        (Some(sent.offset_msg_id.as_str()), broker.addr().as_str())
    );
    assert_eq!(
        (p.msg_type, p.success, p.body_length, p.region_id.as_str()),
        (TraceMessageType::Normal, true, 8, "DefaultRegion")
    );
    assert_eq!((b.group.as_str(), b.retry_times, b.keys.as_deref()), ("TracedOrdersCG", 0, Some("order-42")));
    assert_eq!((a.request_id.as_str(), a.success, a.context_code), (b.request_id.as_str(), true, Some(0)));
    assert!(a.timestamp.unwrap_or(0) >= b.timestamp && b.timestamp >= p.timestamp, "{records:#?}");
    // Trace messages are indexed by the message's keys too.
    let by_key = admin.query_message(DEFAULT_TRACE_TOPIC, "order-42", 64, 0, i64::MAX).await?;
    assert!(!by_key.is_empty());

    // The transaction: its half message's send, the producer's UNKNOW, then the
    // check-back's commit.
    let ends = eventually(WAIT, "the transaction's end records", || async {
        let r = admin.query_msg_trace(DEFAULT_TRACE_TOPIC, &half.transaction_id, 64, 0, i64::MAX).await.ok()?;
        let ends: Vec<_> = r
            .into_iter()
            .filter_map(|(r, _)| match r {
                TraceRecord::EndTransaction(e) => Some((e.state, e.from_check, e.group)),
                _ => None,
            })
            .collect();
        (ends.len() >= 2).then_some(ends)
    })
    .await?;
    assert_eq!(
        ends,
        [
            ("UNKNOW".to_owned(), false, "TracedOrdersTG".to_owned()),
            ("COMMIT_MESSAGE".to_owned(), true, "TracedOrdersTG".to_owned())
        ]
    );
    tx.shutdown().await;

    // The command line prints the timeline.
    let out = Command::new(binary("ferromq-admin"))
        .args(["-n", &ns.addr(), "queryMsgTraceById", "-i", &sent.msg_id])
        .env_remove("NAMESRV_ADDR")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let pub_row = text.lines().find(|l| l.starts_with("Pub ")).unwrap_or_default();
    let sub_row = text.lines().find(|l| l.starts_with("Sub ")).unwrap_or_default();
    assert!(pub_row.contains("TracedOrdersPG") && pub_row.ends_with("success"), "{text}");
    assert!(sub_row.contains("TracedOrdersCG") && sub_row.ends_with("success"), "{text}");
    admin.shutdown();
    drop(broker);
    Ok(())
}

/// With message trace off (the default), nothing reaches the trace topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_enable_msg_trace_nothing_is_recorded() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let _broker = Broker::start(&ns.addr(), &[("TRACE_TOPIC_ENABLE", "true")])?;
    create_topic(&ns.addr(), "Untraced", 1, 1).await?;
    let producer = Producer::new("UntracedPG", client_config(&ns.addr()), None, ProducerOptions::default());
    let sent = producer.send(Message::new("Untraced", b"x".to_vec())).await?;
    assert!(producer.msg_tracer().is_none());
    producer.shutdown().await;
    let admin = client::Admin::new(client_config(&ns.addr()), None);
    // Shutdown has returned, so a record, had one been made, would be stored now.
    assert!(admin.query_msg_trace(DEFAULT_TRACE_TOPIC, &sent.msg_id, 64, 0, i64::MAX).await?.is_empty());
    admin.shutdown();
    Ok(())
}

/// A local transaction that stays undecided until the broker asks, then commits.
struct UnknownThenCommit;

impl TransactionListener for UnknownThenCommit {
    type Arg = ();

    async fn execute_local_transaction(&self, _msg: &Message, _arg: &()) -> LocalTransactionState {
        LocalTransactionState::Unknow
    }

    async fn check_local_transaction(&self, _msg: &MessageExt) -> LocalTransactionState {
        LocalTransactionState::CommitMessage
    }
}
