//! A push consumer: the client pulls (long polling) and calls the listener —
//! RocketMQ's quickstart `Consumer`, in Rust.
//!
//! ```sh
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run -p client --example push_consumer -- [COUNT] [TOPIC]
//! ```
//!
//! Subscribes to every tag of TOPIC (default `TopicTest`) in group
//! `please_rename_unique_group_name_4`, from the first offset when the group is
//! new, prints each message, and exits after COUNT messages (default 10) or 10 s
//! without any. Offsets are committed on the broker: a second run continues
//! where the first stopped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
use client::MessageExt;

fn client_config() -> config::ClientConfig {
    let mut cfg = config::load_client(None).map(|l| l.config.client).unwrap_or_default();
    if cfg.namesrv_addr.is_empty() && cfg.namesrv_http_url.is_none() {
        cfg.namesrv_addr = vec!["127.0.0.1:9876".to_owned()];
    }
    cfg
}

#[tokio::main]
async fn main() -> Result<(), client::Error> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let topic = args.next().unwrap_or_else(|| "TopicTest".to_owned());

    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let consumer = PushConsumer::builder("please_rename_unique_group_name_4")
        .config(client_config())
        .subscribe(topic.as_str(), "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .on_message(move |msgs: &[MessageExt], ctx: &ConsumeContext| {
            for m in msgs {
                println!(
                    "Received [topic={}, queue={}:{}, offset={}, tags={}, msgId={}]: {}",
                    m.topic,
                    ctx.mq.broker_name,
                    m.queue_id,
                    m.queue_offset,
                    m.tags().unwrap_or(""),
                    m.msg_id(),
                    String::from_utf8_lossy(&m.body)
                );
            }
            counter.fetch_add(msgs.len(), Ordering::Relaxed);
            ConsumeStatus::Success
        })
        .start()
        .await?;
    println!("consumer started; waiting for {count} message(s)");

    let mut last = (0, Instant::now());
    loop {
        let n = received.load(Ordering::Relaxed);
        if n != last.0 {
            last = (n, Instant::now());
        }
        if n >= count || last.1.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("received {} message(s)", received.load(Ordering::Relaxed));
    consumer.shutdown().await;
    Ok(())
}
