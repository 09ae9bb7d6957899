//! Example WASM filter written with `sdk-wasm`: deliver messages whose numeric property
//! lies in a range, e.g. orders with `price` between 100 and 500.
//!
//! ```toml
//! [[plugins.plugin]]
//! name = "price-range"
//! kind = "filter"
//! runtime = "wasm"
//! path = "plugins/examples/wasm/price_range_filter.wasm"
//! config = { property = "price", min = "100", max = "500", tag = "order" }
//! ```
//!
//! With `tag` set, the pre-filter drops consume-queue units whose tags code is not that
//! tag's hash before the broker reads the messages (it may over-match on a hash
//! collision, never under-match, as the ABI requires).
//!
//! Build: `plugins/examples/build-wasm.sh` (the repository keeps the built module in
//! `plugins/examples/wasm/`).

use sdk_wasm::{Config, CqUnit, FromConfig, Message};

/// The filter's configuration.
pub struct PriceRange {
    property: String,
    min: f64,
    max: f64,
    tag_code: Option<i64>,
}

impl FromConfig for PriceRange {
    fn from_config(config: &Config) -> Result<Self, String> {
        let range = PriceRange {
            property: config.get("property").unwrap_or("price").to_owned(),
            min: config.parse_or("min", f64::NEG_INFINITY)?,
            max: config.parse_or("max", f64::INFINITY)?,
            tag_code: config.get("tag").map(sdk_wasm::tags_code),
        };
        if range.min > range.max {
            return Err(format!("min {} is greater than max {}", range.min, range.max));
        }
        Ok(range)
    }
}

/// Messages without the property, or with a non-numeric value, are not delivered.
#[sdk_wasm::filter(
    name = "price-range",
    reads(properties, metadata),
    prefilter = by_tag,
    schema = "property: name of a numeric property (default price); min, max: inclusive bounds; tag: optional tag to pre-filter on"
)]
fn price_range(range: &PriceRange, msg: &Message<'_>) -> bool {
    if let Some(code) = range.tag_code {
        if msg.tags_code() != code {
            return false;
        }
    }
    msg.property(&range.property)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .is_some_and(|v| v >= range.min && v <= range.max)
}

fn by_tag(range: &PriceRange, unit: &CqUnit) -> bool {
    range.tag_code.is_none_or(|code| unit.tags_code == code)
}

#[cfg(test)]
mod tests {
    use sdk_wasm::testing::{Harness, TestMessage};
    use sdk_wasm::{CqUnit, Verdict};

    use super::FERROMQ_PLUGIN;

    fn order(price: &str) -> TestMessage {
        TestMessage::new("orders").tags("order").property("price", price)
    }

    #[test]
    fn delivers_prices_in_range() {
        let mut h = Harness::with_config(&FERROMQ_PLUGIN, &[("min", "100"), ("max", "500")]).unwrap();
        let msgs = [
            order("99.99"),
            order("100"),
            order("250"),
            order("500"),
            order("501"),
            order("n/a"),
            TestMessage::new("orders"),
        ];
        let views: Vec<_> = msgs.iter().map(TestMessage::view).collect();
        assert_eq!(h.filter_bools(&views).unwrap(), [false, true, true, true, false, false, false]);
        assert_eq!(h.manifest().name, "price-range");
        assert!(h.manifest().has_prefilter());
    }

    #[test]
    fn other_property_and_tag() {
        let mut h =
            Harness::with_config(&FERROMQ_PLUGIN, &[("property", "qty"), ("min", "2"), ("tag", "order")]).unwrap();
        let yes = TestMessage::new("t").tags("order").property("qty", "3");
        let wrong_tag = TestMessage::new("t").tags("refund").property("qty", "3");
        assert_eq!(h.filter_bools(&[yes.view(), wrong_tag.view()]).unwrap(), [true, false]);
        let units = [
            CqUnit { tags_code: sdk_wasm::tags_code("order"), ..Default::default() },
            CqUnit { tags_code: sdk_wasm::tags_code("refund"), ..Default::default() },
        ];
        assert_eq!(h.prefilter(&units).unwrap(), [Verdict::Accept, Verdict::Reject]);
    }

    #[test]
    fn bad_config_is_refused() {
        let e = Harness::with_config(&FERROMQ_PLUGIN, &[("min", "9"), ("max", "1")]).err().unwrap();
        assert!(e.to_string().contains("min 9 is greater than max 1"), "{e}");
        let e = Harness::with_config(&FERROMQ_PLUGIN, &[("min", "cheap")]).err().unwrap();
        assert!(e.to_string().contains("\"min\""), "{e}");
    }
}
