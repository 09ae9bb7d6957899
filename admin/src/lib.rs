//! `ferromq-admin`: an `mqadmin`-style command line for FerroMQ and Apache RocketMQ
//! clusters (they speak the same protocol).
//!
//! Commands mirror `mqadmin` where one exists: `clusterList`, `topicRoute`,
//! `updateTopic`, `consumerProgress`, `resetOffsetByTime`, plus `send` and `consume`
//! to check a cluster end to end. Name servers come from `-n`, `NAMESRV_ADDR` or the
//! client configuration file, as for every client.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use client::consumer::pull_api::PullStatus;
use client::consumer::pull_consumer::PullConsumer;
use client::{Admin, Message, Producer, ProducerOptions};

/// Name servers: `-n` wins over `NAMESRV_ADDR` and the client config.
pub fn namesrv_list(flag: Option<&str>) -> Option<Vec<String>> {
    flag.map(|n| n.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

/// `clusterList`: brokers by cluster, one line each.
///
/// # Errors
/// No name server answered.
pub async fn cluster_list(admin: &Admin) -> Result<String> {
    let info = admin.cluster_info().await?;
    let mut out = String::from("#Cluster Name     #Broker Name            #BID  #Addr\n");
    for (cluster, names) in &info.cluster_addr_table {
        for name in names {
            if let Some(bd) = info.broker_addr_table.get(name) {
                for (id, addr) in &bd.broker_addrs {
                    out.push_str(&format!("{cluster:<18} {name:<23} {id:<5} {addr}\n"));
                }
            }
        }
    }
    Ok(out)
}

/// `topicRoute`: the route as JSON.
///
/// # Errors
/// Unknown topic, or no name server answered.
pub async fn topic_route(admin: &Admin, topic: &str) -> Result<String> {
    let route = admin.topic_route(topic).await?;
    Ok(serde_json::to_string_pretty(&route)?)
}

/// `consumerProgress`: per-queue broker offset, consumer offset and lag.
///
/// # Errors
/// Unknown topic, or a broker refused.
pub async fn consumer_progress(admin: &Admin, group: &str, topic: &str) -> Result<String> {
    let rows = admin.consumer_progress(group, topic).await?;
    let mut out =
        String::from("#Topic                  #Broker Name   #QID  #Broker Offset  #Consumer Offset  #Diff\n");
    let mut total = 0;
    for r in rows {
        total += r.lag();
        out.push_str(&format!(
            "{:<24} {:<14} {:<5} {:<15} {:<17} {}\n",
            r.queue.topic,
            r.queue.broker_name,
            r.queue.queue_id,
            r.broker_offset,
            r.consumer_offset,
            r.lag()
        ));
    }
    out.push_str(&format!("Diff Total: {total}\n"));
    Ok(out)
}

/// `send`: one message, printing the send result.
///
/// # Errors
/// The send failed.
pub async fn send(
    namesrv: Option<Vec<String>>,
    cfg: config::ClientConfig,
    topic: &str,
    tags: Option<&str>,
    body: &str,
) -> Result<String> {
    let producer = Producer::new("ferromq-admin", cfg, namesrv, ProducerOptions::default());
    let mut msg = Message::new(topic, bytes::Bytes::copy_from_slice(body.as_bytes()));
    if let Some(t) = tags {
        msg = msg.with_tags(t);
    }
    let r = producer.send(msg).await;
    producer.shutdown().await;
    let r = r?;
    Ok(format!(
        "{:?} msgId={} offsetMsgId={} queue={} queueOffset={}",
        r.status, r.msg_id, r.offset_msg_id, r.message_queue, r.queue_offset
    ))
}

/// `consume`: reads up to `max` messages of `topic` from the start of every queue
/// (without committing), printing one line per message.
///
/// # Errors
/// Unknown topic, or a broker refused.
pub async fn consume(
    namesrv: Option<Vec<String>>,
    cfg: config::ClientConfig,
    topic: &str,
    max: usize,
) -> Result<String> {
    let consumer = PullConsumer::new("ferromq-admin", cfg, namesrv);
    let mut out = String::new();
    let mut seen = 0;
    let queues = consumer.fetch_subscribe_queues(topic).await.with_context(|| format!("no route for {topic}"))?;
    for mq in queues {
        let mut offset = consumer.min_offset(&mq).await?;
        loop {
            if seen >= max {
                break;
            }
            let r = consumer.pull(&mq, "*", offset, 32).await?;
            if r.status != PullStatus::Found {
                break;
            }
            for m in &r.messages {
                if seen >= max {
                    break;
                }
                seen += 1;
                out.push_str(&format!(
                    "{} queue={} offset={} tags={} body={}\n",
                    m.msg_id(),
                    m.queue_id,
                    m.queue_offset,
                    m.tags().unwrap_or(""),
                    String::from_utf8_lossy(&m.body)
                ));
            }
            offset = r.next_begin_offset;
        }
    }
    consumer.shutdown().await;
    if seen == 0 {
        bail!("no message in {topic}");
    }
    Ok(out)
}

/// Parses `resetOffsetByTime`'s timestamp: ms since the epoch, or `now`.
///
/// # Errors
/// Neither form.
pub fn parse_timestamp(s: &str) -> Result<i64> {
    if s == "now" {
        return Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64);
    }
    s.parse::<i64>().with_context(|| format!("`{s}` is not a timestamp in ms (or `now`)"))
}

/// How long a single admin command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namesrv_flag_splits_like_rocketmq() {
        assert_eq!(namesrv_list(Some("a:9876; b:9876;")), Some(vec!["a:9876".to_owned(), "b:9876".to_owned()]));
        assert_eq!(namesrv_list(None), None);
        assert!(parse_timestamp("now").unwrap() > 1_700_000_000_000);
        assert_eq!(parse_timestamp("1700000000000").unwrap(), 1_700_000_000_000);
        assert!(parse_timestamp("yesterday").is_err());
    }
}
