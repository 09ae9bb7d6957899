//! {name}: a FerroMQ transaction check-back handler. It commits a half message whose
//! configured property (`property`, default `PAID`) is `true`, rolls back one where
//! it is `false`, and otherwise asks the producer, as RocketMQ does.

use sdk_wasm::{CheckDecision, Config, FromConfig, Message};

/// The settings given in the plugin's `config`.
pub struct Settings {
    property: String,
}

impl FromConfig for Settings {
    fn from_config(config: &Config) -> Result<Self, String> {
        Ok(Settings { property: config.get("property").unwrap_or("PAID").to_owned() })
    }
}

/// What to do with one half message.
#[sdk_wasm::txn_check(name = "{name}", schema = "property: the property that settles it (default PAID)")]
fn settle(settings: &Settings, msg: &Message<'_>) -> CheckDecision {
    match msg.property(&settings.property) {
        Some("true") => CheckDecision::Commit,
        Some("false") => CheckDecision::Rollback,
        _ => CheckDecision::AskProducer,
    }
}

#[cfg(test)]
mod tests {
    use sdk_wasm::testing::{Harness, TestMessage};
    use sdk_wasm::{CheckContext, CheckDecision};

    use super::FERROMQ_PLUGIN;

    #[test]
    fn settles_by_the_property() {
        let mut h = Harness::new(&FERROMQ_PLUGIN).unwrap();
        let msgs = [
            TestMessage::new("Orders").property("PAID", "true"),
            TestMessage::new("Orders").property("PAID", "false"),
            TestMessage::new("Orders"),
        ];
        let views: Vec<_> = msgs.iter().map(TestMessage::view).collect();
        let ctx = CheckContext { now_ms: 0, max_checks: 15 };
        let d = h.check(&ctx, &views).unwrap();
        assert_eq!(d, [CheckDecision::Commit, CheckDecision::Rollback, CheckDecision::AskProducer]);
    }
}
