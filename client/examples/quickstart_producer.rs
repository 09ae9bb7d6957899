//! Sends a few messages and prints what the broker answered — RocketMQ's
//! quickstart `Producer`, in Rust.
//!
//! ```sh
//! cargo run -p namesrv &            # name server on 127.0.0.1:9876
//! cargo run -p broker &             # broker, registers with it
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run -p client --example quickstart_producer -- [COUNT] [TOPIC]
//! ```
//!
//! The name server comes from `NAMESRV_ADDR` (or `FERROMQ_CLIENT_NAMESRV_ADDR`, or
//! `FERROMQ_CLIENT_NAMESRV_HTTP_URL`), else `127.0.0.1:9876`. The topic (default
//! `TopicTest`) is created by the broker on first use. Exits after the last send.

use client::{Message, Producer, ProducerOptions};

fn client_config() -> config::ClientConfig {
    let mut cfg = match config::load_client(None) {
        Ok(loaded) => loaded.config.client,
        Err(e) => {
            eprintln!("ignoring the client configuration from the environment: {e}");
            config::ClientConfig::default()
        }
    };
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

    let producer = Producer::new("please_rename_unique_group_name", client_config(), None, ProducerOptions::default());
    for i in 0..count {
        let msg = Message::new(topic.as_str(), format!("Hello FerroMQ {i}"))
            .with_tags("TagA")
            .with_keys([format!("OrderID{i:03}")]);
        let r = producer.send(msg).await?;
        println!(
            "SendResult [status={:?}, msgId={}, offsetMsgId={}, queue={}:{}, queueOffset={}]",
            r.status, r.msg_id, r.offset_msg_id, r.message_queue.broker_name, r.message_queue.queue_id, r.queue_offset
        );
    }
    producer.shutdown().await;
    Ok(())
}
