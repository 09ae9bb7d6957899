//! Ordered messages, producer side — RocketMQ's `ordermessage.Producer`: every
//! step of an order goes to the queue chosen by hashing the order id, so one
//! order's steps sit in one queue, in order. Pair with `orderly_consumer`.
//!
//! ```sh
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run -p client --example orderly_producer -- [ORDERS] [TOPIC]
//! ```
//!
//! Sends ORDERS (default 10) orders × 4 steps (create, pay, ship, done) to TOPIC
//! (default `TopicTestOrderly`), tags `TagA`..`TagD`, and exits.

use client::producer::SelectByHash;
use client::{Message, Producer, ProducerOptions};

fn client_config() -> config::ClientConfig {
    let mut cfg = config::load_client(None).map(|l| l.config.client).unwrap_or_default();
    if cfg.namesrv_addr.is_empty() && cfg.namesrv_http_url.is_none() {
        cfg.namesrv_addr = vec!["127.0.0.1:9876".to_owned()];
    }
    cfg
}

const STEPS: [(&str, &str); 4] = [("create", "TagA"), ("pay", "TagB"), ("ship", "TagC"), ("done", "TagD")];

#[tokio::main]
async fn main() -> Result<(), client::Error> {
    let mut args = std::env::args().skip(1);
    let orders: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let topic = args.next().unwrap_or_else(|| "TopicTestOrderly".to_owned());

    let producer = Producer::new("orderly_producer_group", client_config(), None, ProducerOptions::default());
    // Step by step across orders, so orders interleave in time but never within a queue.
    for (step, tag) in STEPS {
        for order in 0..orders {
            let order_id = format!("order-{order:04}");
            let msg = Message::new(topic.as_str(), format!("{order_id} {step}"))
                .with_tags(tag)
                .with_keys([order_id.as_str()]);
            let r = producer.send_with_selector(msg, &SelectByHash(order_id.clone())).await?;
            println!(
                "{order_id} {step:<6} -> queue {}:{} offset {}",
                r.message_queue.broker_name, r.message_queue.queue_id, r.queue_offset
            );
        }
    }
    producer.shutdown().await;
    Ok(())
}
