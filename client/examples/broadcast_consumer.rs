//! A broadcasting push consumer: every member of the group gets every message,
//! and each keeps its own progress in a local file
//! (`~/.rocketmq_offsets/<clientId>/<group>/offsets.json`) — RocketMQ's
//! `broadcast.PushConsumer`. Start two, then run `quickstart_producer`: both
//! print every message.
//!
//! ```sh
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run -p client --example broadcast_consumer -- [COUNT] [TOPIC]
//! ```
//!
//! Exits after COUNT messages (default 10) or 20 s without any. A member without
//! a local offset starts at the queues' ends, so start consumers before sending.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::consumer::{ConsumeContext, ConsumeStatus, MessageModel, PushConsumer};
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
    let consumer = PushConsumer::builder("broadcast_consumer_group")
        .config(client_config())
        .subscribe(topic.as_str(), "*")
        .message_model(MessageModel::Broadcasting)
        .on_message(move |msgs: &[MessageExt], _ctx: &ConsumeContext| {
            for m in msgs {
                println!(
                    "Received [queue={}, offset={}]: {}",
                    m.queue_id,
                    m.queue_offset,
                    String::from_utf8_lossy(&m.body)
                );
            }
            counter.fetch_add(msgs.len(), Ordering::Relaxed);
            ConsumeStatus::Success
        })
        .start()
        .await?;
    println!("broadcast consumer {} started", consumer.client_id());

    let mut last = (0, Instant::now());
    loop {
        let n = received.load(Ordering::Relaxed);
        if n != last.0 {
            last = (n, Instant::now());
        }
        if n >= count || last.1.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("received {} message(s)", received.load(Ordering::Relaxed));
    consumer.shutdown().await;
    Ok(())
}
