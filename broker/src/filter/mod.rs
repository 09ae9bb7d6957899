// PERF-CRITICAL PATH: the pull path asks these filters about every scanned message.
//! Message filtering on pull: TAG subscriptions ([`tag`]) and SQL92 subscriptions
//! ([`sql92`]), behind the two-stage [`MessageFilter`] the pull path uses.
//!
//! This module decides whether a message matches a subscription. It does not read
//! the store, decode records, or know about plugin filters (expression types other
//! than TAG and SQL92 are an error here); [`prepared`] chains these stages with the
//! plugin filters for the pull path and caches the result per group and topic.
//!
//! # The two stages
//!
//! 1. [`MessageFilter::pre_filter`] runs on the consume-queue entry's tags code,
//!    before the commit log is read. It is cheap and **may return false positives,
//!    never false negatives**: for every message,
//!    `matches_properties(props)` implies `pre_filter(tags_code(props.TAGS))`.
//!    So a caller can always skip it, and must never skip stage 2 because of it.
//! 2. [`MessageFilter::matches_properties`] is the exact decision, made on the
//!    message's properties (user properties and system ones such as `TAGS`).

pub mod lookup;
pub mod prepared;
pub mod sql92;
pub mod tag;

use common::properties::keys;
use common::subscription::SubscriptionData;
use common::ResponseCode;

pub use lookup::{tags_and_keys, PropertyLookup};
pub use sql92::{SqlError, SqlFilter};
pub use tag::TagFilter;

/// Why a subscription cannot be turned into a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("unsupported expression type {0:?}")]
    UnsupportedExpressionType(String),
}

impl FilterError {
    /// Both cases are `SUBSCRIPTION_PARSE_FAILED`, as in Java's `PullMessageProcessor`
    /// (a failed `ConsumerFilterManager.build` returns null, answered with that code).
    pub fn response_code(&self) -> ResponseCode {
        ResponseCode::SUBSCRIPTION_PARSE_FAILED
    }
}

/// The filter of one subscription, as the pull path applies it.
#[derive(Debug, Clone)]
pub enum MessageFilter {
    /// `*` (or a legacy class-filter subscription, which Java also passes through).
    All,
    Tag(TagFilter),
    Sql(SqlFilter),
}

impl MessageFilter {
    /// Builds the filter for a subscription: TAG when `expressionType` is empty or
    /// `TAG`, SQL92 when it is `SQL92` (both case-insensitive).
    ///
    /// # Errors
    /// [`FilterError::Sql`] when the SQL92 expression does not compile,
    /// [`FilterError::UnsupportedExpressionType`] for any other type.
    pub fn from_subscription(sub: &SubscriptionData) -> Result<MessageFilter, FilterError> {
        if sub.class_filter_mode {
            // `ExpressionMessageFilter` returns true at both stages in class-filter mode.
            return Ok(MessageFilter::All);
        }
        if sub.is_tag_type() {
            let tags = TagFilter::from_subscription(sub);
            return Ok(if tags.is_all() { MessageFilter::All } else { MessageFilter::Tag(tags) });
        }
        if sub.expression_type.eq_ignore_ascii_case("SQL92") {
            return Ok(MessageFilter::Sql(SqlFilter::compile(&sub.sub_string)?));
        }
        Err(FilterError::UnsupportedExpressionType(sub.expression_type.clone()))
    }

    /// Stage 1, on the consume-queue tags code: false positives allowed, false
    /// negatives never (see the module doc). SQL92 filters always pass here: we keep
    /// no consume-queue bloom filter.
    pub fn pre_filter(&self, tags_code: i64) -> bool {
        match self {
            MessageFilter::All | MessageFilter::Sql(_) => true,
            MessageFilter::Tag(tags) => tags.matches_tags_code(tags_code),
        }
    }

    /// Stage 2, the exact decision on the message's properties.
    pub fn matches_properties<P: PropertyLookup + ?Sized>(&self, props: &P) -> bool {
        match self {
            MessageFilter::All => true,
            MessageFilter::Tag(tags) => tags.matches_tag(props.get(keys::TAGS)),
            MessageFilter::Sql(sql) => sql.matches(props),
        }
    }

    /// Whether stage 2 looks at properties at all; when it does not, the pull path can
    /// skip decoding them.
    pub fn needs_properties(&self) -> bool {
        !matches!(self, MessageFilter::All)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::hash::tags_code;
    use common::properties::Properties;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn sub(expr: &str, ty: &str) -> SubscriptionData {
        SubscriptionData::new("TopicTest", expr, ty, 1)
    }

    #[test]
    fn encoded_lookup_matches_java_decoding() {
        let enc = "a\u{1}1\u{2}TAGS\u{1}TagA\u{2}empty\u{1}\u{2}\u{1}x\u{2}a\u{1}2\u{2}";
        assert_eq!(PropertyLookup::get(enc, "a"), Some("2"), "last occurrence wins, as in Java's HashMap");
        assert_eq!(PropertyLookup::get(enc, "TAGS"), Some("TagA"));
        assert_eq!(PropertyLookup::get(enc, "empty"), None);
        assert_eq!(PropertyLookup::get(enc, ""), None);
        assert_eq!(PropertyLookup::get(enc, "TAG"), None);
        assert_eq!(PropertyLookup::get("", "a"), None);
        assert_eq!(PropertyLookup::get("v\u{1}x\u{1}y", "v"), Some("x\u{1}y"));
        // The byte form agrees, and checks only the value it returns.
        assert_eq!(PropertyLookup::get(enc.as_bytes(), "a"), Some("2"));
        assert_eq!(PropertyLookup::get(enc.as_bytes(), "empty"), None);
        assert_eq!(PropertyLookup::get(&b"bad\x01\xff\x02ok\x01yes"[..], "ok"), Some("yes"));
        assert_eq!(PropertyLookup::get(&b"bad\x01\xff\x02ok\x01yes"[..], "bad"), None);
    }

    proptest! {
        /// The fused pass finds what two separate lookups find.
        #[test]
        fn tags_and_keys_agree_with_lookups(
            entries in proptest::collection::vec(
                ("(TAGS|KEYS|TAG|KEYSX|a|)", proptest::collection::vec(prop_oneof![Just(1u8), Just(2u8), Just(0xFFu8), 97u8..100], 0..4)),
                0..6,
            ),
            trailing in any::<bool>(),
        ) {
            let mut raw = Vec::new();
            for (name, value) in &entries {
                raw.extend_from_slice(name.as_bytes());
                raw.push(1);
                raw.extend_from_slice(value);
                raw.push(2);
            }
            if !trailing {
                raw.pop();
            }
            let want = (PropertyLookup::get(&raw[..], keys::TAGS), PropertyLookup::get(&raw[..], keys::KEYS));
            prop_assert_eq!(tags_and_keys(&raw), want);
        }
    }

    #[test]
    fn properties_lookup_agrees_with_encoded() {
        let p = Properties::decode("a\u{1}1\u{2}b\u{1}2\u{2}a\u{1}3");
        assert_eq!(PropertyLookup::get(&p, "a"), Some("3"));
        assert_eq!(PropertyLookup::get(&p, "b"), Some("2"));
        let m: HashMap<String, String> = [("a".into(), "1".into()), ("e".into(), String::new())].into();
        assert_eq!(PropertyLookup::get(&m, "a"), Some("1"));
        assert_eq!(PropertyLookup::get(&m, "e"), None);
    }

    #[test]
    fn builds_each_kind_of_filter() {
        assert!(matches!(MessageFilter::from_subscription(&sub("*", "TAG")), Ok(MessageFilter::All)));
        assert!(matches!(MessageFilter::from_subscription(&sub("", "")), Ok(MessageFilter::All)));
        assert!(matches!(MessageFilter::from_subscription(&sub("TagA", "TAG")), Ok(MessageFilter::Tag(_))));
        assert!(matches!(MessageFilter::from_subscription(&sub("a > 1", "SQL92")), Ok(MessageFilter::Sql(_))));
        assert!(matches!(MessageFilter::from_subscription(&sub("a > 1", "sql92")), Ok(MessageFilter::Sql(_))));
        let mut legacy = sub("whatever", "SQL92");
        legacy.class_filter_mode = true;
        assert!(matches!(MessageFilter::from_subscription(&legacy), Ok(MessageFilter::All)));
    }

    #[test]
    fn build_errors_map_to_subscription_parse_failed() {
        let err = MessageFilter::from_subscription(&sub("a >", "SQL92")).unwrap_err();
        assert!(matches!(err, FilterError::Sql(SqlError::UnexpectedToken { position: 3, .. })));
        assert_eq!(err.response_code(), ResponseCode::SUBSCRIPTION_PARSE_FAILED);
        assert_eq!(err.to_string(), "expected an expression at position 3, found end of input");
        let err = MessageFilter::from_subscription(&sub("x", "LUA")).unwrap_err();
        assert_eq!(err, FilterError::UnsupportedExpressionType("LUA".into()));
        assert_eq!(err.response_code(), ResponseCode::SUBSCRIPTION_PARSE_FAILED);
    }

    #[test]
    fn two_stage_tag_filter() {
        let f = MessageFilter::from_subscription(&sub("TagA || TagB", "TAG")).unwrap();
        assert!(f.pre_filter(tags_code(Some("TagA"))));
        assert!(!f.pre_filter(tags_code(Some("TagC"))));
        assert!(!f.pre_filter(0));
        assert!(f.matches_properties("TAGS\u{1}TagB"));
        assert!(!f.matches_properties("KEYS\u{1}k"));
        assert!(f.needs_properties());
        assert!(!MessageFilter::All.needs_properties());
    }

    #[test]
    fn two_stage_sql_filter() {
        let f = MessageFilter::from_subscription(&sub("TAGS = 'TagA' AND a > 5", "SQL92")).unwrap();
        assert!(f.pre_filter(0) && f.pre_filter(-1));
        assert!(f.matches_properties("TAGS\u{1}TagA\u{2}a\u{1}6"));
        assert!(!f.matches_properties("TAGS\u{1}TagA\u{2}a\u{1}5"));
    }

    fn tag_expr() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            Just(String::new()),
            proptest::collection::vec("[A-Za-z]{1,3}", 1..4).prop_map(|t| t.join(" || ")),
        ]
    }

    proptest! {
        /// The documented invariant: stage 1 never rejects what stage 2 accepts.
        #[test]
        fn pre_filter_has_no_false_negatives(expr in tag_expr(), tag in proptest::option::of("[A-Za-z]{1,3}")) {
            let f = MessageFilter::from_subscription(&sub(&expr, "TAG")).unwrap();
            let props: Properties = tag.iter().map(|t| ("TAGS", t.as_str())).collect();
            if f.matches_properties(&props) {
                prop_assert!(f.pre_filter(tags_code(tag.as_deref())));
            }
        }
    }
}
