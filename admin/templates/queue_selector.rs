//! {name}: a FerroMQ queue selector. Messages with the same value of the configured
//! property (`key`, default `ORDER_ID`) go to the same queue, so they stay in order;
//! messages without it are left to the broker's built-in choice.

use sdk_wasm::{Config, FromConfig, Message, SelectContext};

/// The settings given in the plugin's `config`.
pub struct Settings {
    key: String,
}

impl FromConfig for Settings {
    fn from_config(config: &Config) -> Result<Self, String> {
        Ok(Settings { key: config.get("key").unwrap_or("ORDER_ID").to_owned() })
    }
}

/// The index of the queue (into `ctx.queues`) for this message, or `None`.
#[sdk_wasm::queue_selector(name = "{name}", schema = "key: the property to route by (default ORDER_ID)")]
fn route(settings: &Settings, ctx: &SelectContext<'_>, msg: &Message<'_>) -> Option<usize> {
    let value = msg.property(&settings.key)?;
    let hash = sdk_wasm::java_string_hash(value).unsigned_abs() as usize;
    Some(hash % ctx.queues.len().max(1))
}

#[cfg(test)]
mod tests {
    use sdk_wasm::plugin_api::{QueueView, PERM_READ, PERM_WRITE};
    use sdk_wasm::testing::{Harness, TestMessage};

    use super::FERROMQ_PLUGIN;

    #[test]
    fn one_key_one_queue() {
        let mut h = Harness::new(&FERROMQ_PLUGIN).unwrap();
        let queues: Vec<QueueView> = (0..4)
            .map(|q| QueueView { broker_name: "broker-a", queue_id: q, perm: PERM_READ | PERM_WRITE, zone: "" })
            .collect();
        let msgs = [
            TestMessage::new("Orders").property("ORDER_ID", "o-1"),
            TestMessage::new("Orders").property("ORDER_ID", "o-1"),
        ];
        let views: Vec<_> = msgs.iter().map(TestMessage::view).collect();
        let chosen = h.select(&queues, &views).unwrap();
        assert_eq!(chosen[0], chosen[1]);
    }
}
