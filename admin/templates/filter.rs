//! {name}: a FerroMQ message filter. It delivers the messages whose tag is the
//! configured one (`tag`, default `vip`).

use sdk_wasm::{Config, FromConfig, Message};

/// The settings given in the plugin's `config` (`ferromq-plugin.toml`, or
/// `plugin deploy --set`).
pub struct Settings {
    tag: String,
}

impl FromConfig for Settings {
    fn from_config(config: &Config) -> Result<Self, String> {
        let tag = config.get("tag").unwrap_or("vip").to_owned();
        if tag.is_empty() {
            return Err("tag must not be empty".to_owned());
        }
        // To the broker's log and `ferromq-admin plugin logs`.
        sdk_wasm::log!(INFO, "delivering messages tagged {tag}");
        Ok(Settings { tag })
    }
}

/// `true`: deliver the message to the subscription; `false`: do not.
#[sdk_wasm::filter(name = "{name}", reads(tags), schema = "tag: the tag to deliver (default vip)")]
fn keep(settings: &Settings, msg: &Message<'_>) -> bool {
    msg.tags() == settings.tag
}

#[cfg(test)]
mod tests {
    use sdk_wasm::testing::{Harness, TestMessage};

    use super::FERROMQ_PLUGIN;

    #[test]
    fn delivers_only_the_configured_tag() {
        let mut h = Harness::with_config(&FERROMQ_PLUGIN, &[("tag", "vip")]).unwrap();
        let msgs = [TestMessage::new("Orders").tags("vip"), TestMessage::new("Orders").tags("plain")];
        let views: Vec<_> = msgs.iter().map(TestMessage::view).collect();
        assert_eq!(h.filter_bools(&views).unwrap(), [true, false]);
    }

    #[test]
    fn an_empty_tag_is_refused_at_init() {
        assert!(Harness::with_config(&FERROMQ_PLUGIN, &[("tag", "")]).is_err());
    }
}
