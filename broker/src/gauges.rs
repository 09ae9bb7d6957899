//! The broker's gauges (RocketMQ 5's `rocketmq_topic_number`, connections, consumer
//! lag, storage backlogs; FerroMQ's disk usage, replication lag and plugin counters),
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
    gauge("rocketmq_broker_permission", "Broker permission", |c| i64::from(c.config.broker_permission));
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
    let w = weak.clone();
    meter
        .i64_observable_gauge("rocketmq_consumer_lag_messages")
        .with_description("Consumer lag messages")
        .with_callback(move |o| {
            let Some(ctx) = w.upgrade() else { return };
            for (key, queues) in ctx.offsets.snapshot().offset_table {
                let Some((topic, group)) = key.split_once('@') else { continue };
                let lag: i64 = queues
                    .iter()
                    .map(|(&queue_id, &committed)| (ctx.store.max_offset_in_queue(topic, queue_id) - committed).max(0))
                    .sum();
                o.observe(
                    lag,
                    &[
                        KeyValue::new("topic", topic.to_owned()),
                        KeyValue::new("consumer_group", group.to_owned()),
                        KeyValue::new("is_retry", topic::is_retry_topic(topic)),
                        KeyValue::new("is_system", topic::is_system_topic(topic) || is_system_group(group)),
                    ],
                );
            }
        })
        .build();

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
