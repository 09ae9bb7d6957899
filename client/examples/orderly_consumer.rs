//! Ordered messages, consumer side — RocketMQ's `ordermessage.Consumer`: an
//! orderly listener gets each queue's messages one batch at a time, in queue
//! order, while this member holds the broker's lock on the queue. Pair with
//! `orderly_producer`: every order's steps print in order (create, pay, ship,
//! done), even though orders interleave.
//!
//! ```sh
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run -p client --example orderly_consumer -- [COUNT] [TOPIC]
//! ```
//!
//! Exits after COUNT messages (default 40: 10 orders × 4 steps) or 10 s without
//! any, and checks the order of every order's steps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeOrderlyStatus, PushConsumer};
use client::MessageExt;

fn client_config() -> config::ClientConfig {
    let mut cfg = config::load_client(None).map(|l| l.config.client).unwrap_or_default();
    if cfg.namesrv_addr.is_empty() && cfg.namesrv_http_url.is_none() {
        cfg.namesrv_addr = vec!["127.0.0.1:9876".to_owned()];
    }
    cfg
}

const STEPS: [&str; 4] = ["create", "pay", "ship", "done"];

/// Messages received, and each order's steps in the order they arrived.
type Progress = Arc<Mutex<(usize, HashMap<String, Vec<String>>)>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let topic = args.next().unwrap_or_else(|| "TopicTestOrderly".to_owned());

    // order id -> steps seen so far
    let progress: Progress = Arc::default();
    let sink = progress.clone();
    let consumer = PushConsumer::builder("orderly_consumer_group")
        .config(client_config())
        .subscribe(topic.as_str(), "TagA || TagB || TagC || TagD")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .on_message_orderly(move |msgs: &[MessageExt], ctx: &ConsumeContext| {
            let mut p = sink.lock().expect("not poisoned");
            for m in msgs {
                let body = String::from_utf8_lossy(&m.body).into_owned();
                println!("queue {}:{} offset {:>3}  {body}", ctx.mq.broker_name, ctx.mq.queue_id, m.queue_offset);
                if let Some((order, step)) = body.split_once(' ') {
                    p.1.entry(order.to_owned()).or_default().push(step.to_owned());
                }
                p.0 += 1;
            }
            ConsumeOrderlyStatus::Success
        })
        .start()
        .await?;

    let mut last = (0, Instant::now());
    loop {
        let n = progress.lock().expect("not poisoned").0;
        if n != last.0 {
            last = (n, Instant::now());
        }
        if n >= count || last.1.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.shutdown().await;

    let p = progress.lock().expect("not poisoned");
    let out_of_order: Vec<&String> =
        p.1.iter()
            .filter(|(_, steps)| !steps.iter().zip(STEPS.iter().cycle()).all(|(s, want)| s == want))
            .map(|(o, _)| o)
            .collect();
    println!("received {} message(s) of {} order(s); out of order: {:?}", p.0, p.1.len(), out_of_order);
    if !out_of_order.is_empty() {
        return Err(format!("orders delivered out of order: {out_of_order:?}").into());
    }
    Ok(())
}
