//! Example native filter (a `cdylib`): deliver messages whose tag is in a configured set,
//! written with `sdk-wasm` and exported through the C ABI with
//! [`sdk_wasm::export_native!`]. The same source would also build as a WASM module.
//!
//! ```toml
//! [plugins]
//! allow_native = true   # native plugins run unsandboxed in the broker
//!
//! [[plugins.plugin]]
//! name = "tag-set"
//! kind = "filter"
//! runtime = "native"
//! path = "target/release/libnative_tag_filter.so"
//! config = { tags = "TagA || TagB" }
//! ```

use std::collections::HashSet;

use sdk_wasm::{Config, CqUnit, FromConfig, Message};

/// The accepted tags, as strings and as consume-queue tags codes.
pub struct TagSet {
    tags: HashSet<String>,
    codes: HashSet<i64>,
    all: bool,
}

impl FromConfig for TagSet {
    fn from_config(config: &Config) -> Result<Self, String> {
        let expr = config.require("tags")?;
        let tags: HashSet<String> = expr.split("||").map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        if tags.is_empty() {
            return Err("tags must name at least one tag (or *)".into());
        }
        let codes = tags.iter().map(|t| sdk_wasm::tags_code(t)).collect();
        Ok(TagSet { all: tags.contains("*"), tags, codes })
    }
}

#[sdk_wasm::filter(
    name = "tag-set",
    reads(tags),
    prefilter = by_code,
    schema = "tags: RocketMQ tag expression, e.g. \"TagA || TagB\""
)]
fn tag_set(set: &TagSet, msg: &Message<'_>) -> bool {
    set.all || set.tags.contains(msg.tags())
}

fn by_code(set: &TagSet, unit: &CqUnit) -> bool {
    set.all || set.codes.contains(&unit.tags_code)
}

sdk_wasm::export_native!();

#[cfg(test)]
mod tests {
    use sdk_wasm::testing::{Harness, TestMessage};

    use super::FERROMQ_PLUGIN;

    #[test]
    fn matches_the_tag_set() {
        let mut h = Harness::with_config(&FERROMQ_PLUGIN, &[("tags", "TagA || TagB")]).unwrap();
        let msgs = [
            TestMessage::new("T").tags("TagA"),
            TestMessage::new("T").tags("TagC"),
            TestMessage::new("T").tags("TagB"),
        ];
        let views: Vec<_> = msgs.iter().map(TestMessage::view).collect();
        assert_eq!(h.filter_bools(&views).unwrap(), [true, false, true]);
        assert!(Harness::new(&FERROMQ_PLUGIN).is_err(), "tags is required");
    }
}
