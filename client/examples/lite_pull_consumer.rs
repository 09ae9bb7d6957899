//! A lite pull consumer: the application polls; queues are divided among the
//! group's members; offsets are committed automatically — RocketMQ's
//! `LitePullConsumerSubscribe`, in Rust.
//!
//! ```sh
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run -p client --example lite_pull_consumer -- [COUNT] [TOPIC]
//! ```
//!
//! Prints every message of TOPIC (default `TopicTest`) from the start of the
//! group's progress, and exits after COUNT messages (default 10) or 10 s without
//! any. Run it twice: the second run prints only what arrived in between.

use std::time::{Duration, Instant};

use client::consumer::{LitePullConsumer, LitePullOptions};
use common::subscription::ConsumeFromWhere;

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

    let opts = LitePullOptions { consume_from_where: ConsumeFromWhere::FirstOffset, ..LitePullOptions::default() };
    let consumer = LitePullConsumer::new("lite_pull_consumer_group", client_config(), None, opts);
    consumer.subscribe(&topic, "*").await?;
    consumer.start().await?;

    let mut received = 0;
    let mut last = Instant::now();
    while received < count && last.elapsed() < Duration::from_secs(10) {
        for m in consumer.poll(Duration::from_secs(1)).await? {
            received += 1;
            last = Instant::now();
            println!(
                "Received [topic={}, queue={}, offset={}, tags={}, msgId={}]: {}",
                m.topic,
                m.queue_id,
                m.queue_offset,
                m.tags().unwrap_or(""),
                m.msg_id(),
                String::from_utf8_lossy(&m.body)
            );
        }
    }
    println!("received {received} message(s)");
    consumer.shutdown().await;
    Ok(())
}
