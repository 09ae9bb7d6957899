//! The broker's gauges (RocketMQ 5's `rocketmq_topic_number`, connections, consumer
//! lag, in-flight and ready messages, storage backlogs; FerroMQ's disk usage,
//! replication lag and plugin counters and latency),
//! read from the broker's state only when a scrape asks. See `metrics.rs` for the
//! counters the request paths record.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;

use common::topic;

use crate::context::BrokerContext;
use crate::metrics::is_system_group;

/// Registers the gauges, read from `ctx` when a scrape asks.
pub fn register(meter: &Meter, ctx: &Arc<BrokerContext>) {
    let weak = Arc::downgrade(ctx);
    let gauge = |name: &'static str, description: &'static str, read: fn(&BrokerContext) -> i64| {
        let weak: Weak<BrokerContext> = weak.clone();
        meter
            .i64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |o| {
                if let Some(ctx) = weak.upgrade() {
                    o.observe(read(&ctx), &[]);
                }
            })
            .build();
    };
    gauge("rocketmq_topic_number", "Active topic number", |c| c.topics.topic_names().len() as i64);
    gauge("rocketmq_consumer_group_number", "Active subscription group number", |c| {
        c.groups.snapshot().subscription_group_table.len() as i64
    });
    gauge("rocketmq_broker_permission", "Broker permission", |c| i64::from(c.runtime.broker_permission()));
    gauge("rocketmq_storage_size", "Bytes of commit log stored", |c| {
        c.store.commit_log_max_offset() - c.store.commit_log_min_offset()
    });
    gauge("rocketmq_storage_flush_behind_bytes", "Commit log bytes written but not yet flushed", |c| {
        c.store.commit_log_max_offset() - c.store.commit_log_flushed_offset()
    });
    gauge("rocketmq_storage_dispatch_behind_bytes", "Commit log bytes not yet dispatched", |c| {
        c.store.commit_log_max_offset() - c.store.dispatched_offset()
    });

    let w = weak.clone();
    meter
        .i64_observable_gauge("rocketmq_producer_connections")
        .with_description("Producer connections")
        .with_callback(move |o| {
            let Some(ctx) = w.upgrade() else { return };
            for ((language, version), n) in by_client(ctx.clients.producer_groups().values().flatten()) {
                o.observe(n, &[KeyValue::new("language", language), KeyValue::new("version", i64::from(version))]);
            }
        })
        .build();
    let w = weak.clone();
    meter
        .i64_observable_gauge("rocketmq_consumer_connections")
        .with_description("Consumer connections")
        .with_callback(move |o| {
            let Some(ctx) = w.upgrade() else { return };
            for group in ctx.clients.consumer_groups() {
                let Some(info) = ctx.clients.consumer_group(&group) else { continue };
                for ((language, version), n) in by_client(info.channels.values()) {
                    o.observe(
                        n,
                        &[
                            KeyValue::new("consumer_group", group.clone()),
                            KeyValue::new("language", language),
                            KeyValue::new("version", i64::from(version)),
                            KeyValue::new("is_system", is_system_group(&group)),
                        ],
                    );
                }
            }
        })
        .build();
    register_consumer_gauges(meter, &weak);

    let w = weak.clone();
    meter
        .f64_observable_gauge("ferromq_disk_usage_ratio")
        .with_description("Used fraction of the store's file system at the last measurement")
        .with_callback(move |o| {
            if let Some(ratio) = w.upgrade().and_then(|c| c.store.stats().disk_usage_ratio) {
                o.observe(ratio, &[]);
            }
        })
        .build();
    let w = weak.clone();
    meter
        .i64_observable_gauge("ferromq_replication_lag_bytes")
        .with_description("Bytes each connected slave is behind this master")
        .with_callback(move |o| {
            let Some(ctx) = w.upgrade() else { return };
            let info = ctx.role.runtime_info();
            for slave in &info.ha_connection_info {
                o.observe(slave.diff, &[KeyValue::new("slave", slave.addr.clone())]);
            }
        })
        .build();
    register_plugin_metrics(meter, weak);
}

/// One (topic, group)'s consumption, from the offsets RocketMQ's
/// `ConsumerLagCalculator` reads: committed (`c`), pulled (`p`) and the queue's end
/// (`m`), summed over the topic's queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Consumption {
    pub topic: String,
    pub group: String,
    /// `m - c`: stored, not yet consumed.
    pub lag: i64,
    /// Age of the oldest message not yet consumed (ms; 0 with no lag).
    pub lag_latency_ms: i64,
    /// `p - c`: pulled, not yet committed.
    pub inflight: i64,
    /// Age of the oldest message not yet pulled (ms; 0 when all are pulled).
    pub queueing_latency_ms: i64,
    /// `m - p`: stored, not yet pulled.
    pub ready: i64,
}

/// Every (topic, group) with committed offsets. A queue never pulled counts as
/// pulled up to its committed offset; one never committed, as committed at its end
/// (RocketMQ's fallbacks).
pub(crate) fn consumptions(ctx: &BrokerContext, now_ms: i64) -> Vec<Consumption> {
    let age = |topic: &str, queue_id: i32, offset: i64| {
        ctx.store.message_store_time(topic, queue_id, offset).map_or(0, |t| (now_ms - t).max(0))
    };
    let mut out = Vec::new();
    for (key, queues) in ctx.offsets.snapshot().offset_table {
        let Some((topic, group)) = key.split_once('@') else { continue };
        let mut c = Consumption { topic: topic.to_owned(), group: group.to_owned(), ..Consumption::default() };
        for (&queue_id, &committed) in &queues {
            let max = ctx.store.max_offset_in_queue(topic, queue_id);
            let committed = if committed < 0 { max } else { committed.min(max) };
            let pulled = match ctx.offsets.query_pull(group, topic, queue_id) {
                p if p < 0 => committed,
                p => p.clamp(committed, max),
            };
            c.lag += max - committed;
            c.inflight += pulled - committed;
            c.ready += max - pulled;
            if committed < max {
                c.lag_latency_ms = c.lag_latency_ms.max(age(topic, queue_id, committed));
            }
            if pulled < max {
                c.queueing_latency_ms = c.queueing_latency_ms.max(age(topic, queue_id, pulled));
            }
        }
        out.push(c);
    }
    out
}

/// The consumer gauges. One scrape reads all five: the first to be called computes
/// [`consumptions`] and the others, called within [`CONSUMPTION_REUSE`], reuse it.
fn register_consumer_gauges(meter: &Meter, weak: &Weak<BrokerContext>) {
    type Cache = parking_lot::Mutex<Option<(std::time::Instant, Arc<Vec<Consumption>>)>>;
    let cache: Arc<Cache> = Arc::default();
    let gauge = |name: &'static str, description: &'static str, read: fn(&Consumption) -> i64| {
        let (weak, cache) = (weak.clone(), cache.clone());
        meter
            .i64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |o| {
                let Some(ctx) = weak.upgrade() else { return };
                let rows = {
                    let mut cached = cache.lock();
                    match &*cached {
                        Some((at, rows)) if at.elapsed() < CONSUMPTION_REUSE => rows.clone(),
                        _ => {
                            let rows = Arc::new(consumptions(&ctx, common::time::now_ms()));
                            *cached = Some((std::time::Instant::now(), rows.clone()));
                            rows
                        }
                    }
                };
                for c in rows.iter() {
                    o.observe(
                        read(c),
                        &[
                            KeyValue::new("topic", c.topic.clone()),
                            KeyValue::new("consumer_group", c.group.clone()),
                            KeyValue::new("is_retry", topic::is_retry_topic(&c.topic)),
                            KeyValue::new("is_system", topic::is_system_topic(&c.topic) || is_system_group(&c.group)),
                        ],
                    );
                }
            })
            .build();
    };
    gauge("rocketmq_consumer_lag_messages", "Consumer lag messages", |c| c.lag);
    gauge("rocketmq_consumer_lag_latency", "Consumer lag time", |c| c.lag_latency_ms);
    gauge("rocketmq_consumer_inflight_messages", "Consumer inflight messages", |c| c.inflight);
    gauge("rocketmq_consumer_queueing_latency", "Consumer queueing time", |c| c.queueing_latency_ms);
    gauge("rocketmq_consumer_ready_messages", "Consumer ready messages", |c| c.ready);
}

/// How long one computation of the consumer gauges serves the others of a scrape.
const CONSUMPTION_REUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Connections counted by client language (lower case, as RocketMQ labels it) and version.
fn by_client<'a>(
    channels: impl Iterator<Item = &'a crate::client_manager::ClientChannelInfo>,
) -> HashMap<(String, i32), i64> {
    let mut counts = HashMap::new();
    for c in channels {
        *counts.entry((format!("{:?}", c.language).to_ascii_lowercase(), c.version)).or_default() += 1;
    }
    counts
}

fn register_plugin_metrics(meter: &Meter, weak: Weak<BrokerContext>) {
    let w = weak.clone();
    meter
        .u64_observable_counter("ferromq_plugin_calls_total")
        .with_description("Plugin calls")
        .with_callback(move |o| {
            let Some(ctx) = w.upgrade() else { return };
            for s in ctx.plugins.status() {
                o.observe(
                    s.stats.calls,
                    &[KeyValue::new("plugin", s.name.clone()), KeyValue::new("kind", s.kind.to_string())],
                );
            }
        })
        .build();
    let w = weak.clone();
    meter
        .u64_observable_counter("ferromq_plugin_errors_total")
        .with_description("Failed plugin calls by kind of failure (timeout, trap, memory_limit, ...)")
        .with_callback(move |o| {
            let Some(ctx) = w.upgrade() else { return };
            for s in ctx.plugins.status() {
                for kind in plugin_api::PluginErrorKind::ALL {
                    o.observe(
                        s.stats.errors[kind as usize],
                        &[KeyValue::new("plugin", s.name.clone()), KeyValue::new("error", kind.as_str())],
                    );
                }
            }
        })
        .build();
    // The sampled latency histogram (`plugins::host::stats`) as Prometheus' classic
    // histogram series: cumulative `_bucket{le}` counts, `_sum` and `_count`, so
    // `histogram_quantile` reads it. Bucket `i` holds calls under 2^i µs.
    let w = weak.clone();
    meter
        .u64_observable_counter("ferromq_plugin_latency_seconds_bucket")
        .with_description("Timed plugin calls (one in eight) by latency bucket, cumulative")
        .with_callback(move |o| {
            let Some(ctx) = w.upgrade() else { return };
            for s in ctx.plugins.status() {
                let mut cumulative = 0;
                let last = s.stats.latency_buckets.len() - 1;
                for (i, n) in s.stats.latency_buckets.iter().enumerate() {
                    cumulative += n;
                    let le = if i == last { "+Inf".to_owned() } else { format!("{}", (1u64 << i) as f64 / 1e6) };
                    o.observe(cumulative, &[KeyValue::new("plugin", s.name.clone()), KeyValue::new("le", le)]);
                }
            }
        })
        .build();
    let w = weak.clone();
    meter
        .f64_observable_counter("ferromq_plugin_latency_seconds_sum")
        .with_description("Time spent in the timed plugin calls")
        .with_callback(move |o| {
            let Some(ctx) = w.upgrade() else { return };
            for s in ctx.plugins.status() {
                o.observe(s.stats.latency_sum.as_secs_f64(), &[KeyValue::new("plugin", s.name.clone())]);
            }
        })
        .build();
    let w = weak.clone();
    meter
        .u64_observable_counter("ferromq_plugin_latency_seconds_count")
        .with_description("Timed plugin calls")
        .with_callback(move |o| {
            let Some(ctx) = w.upgrade() else { return };
            for s in ctx.plugins.status() {
                o.observe(s.stats.timed_calls, &[KeyValue::new("plugin", s.name.clone())]);
            }
        })
        .build();
    meter
        .i64_observable_gauge("ferromq_plugin_breaker_open")
        .with_description("1 while a plugin's circuit breaker is open or half open")
        .with_callback(move |o| {
            let Some(ctx) = weak.upgrade() else { return };
            for s in ctx.plugins.status() {
                let open = i64::from(s.breaker.as_str() != "closed");
                o.observe(open, &[KeyValue::new("plugin", s.name.clone())]);
            }
        })
        .build();
}
