// PERF-CRITICAL PATH: consulted for every consume-queue entry a pull scans.
//! TAG subscriptions (`expressionType=TAG`): `*`, or tags joined with `||`.
//!
//! RocketMQ splits the work in two. The broker compares the consume-queue entry's
//! tags code (Java `String.hashCode()` of the tag) with the subscription's `codeSet`
//! (`ExpressionMessageFilter.isMatchedByConsumeQueue`, which narrows the 64-bit code
//! with `intValue()`), so hash collisions get through; the Java client then drops
//! every message whose `TAGS` is not exactly in `tagsSet` (`PullAPIWrapper`). We offer
//! both checks so that the broker can do the second one too and save the bandwidth.
//!
//! What we take from the subscription: `*` or an empty expression subscribes to all.
//! Otherwise the tag set is `tagsSet`, or, if a client left it out, the expression
//! split on `||` and trimmed as the Java `FilterAPI` does; the code set is `codeSet`
//! plus the hash of every tag, so that [`TagFilter::matches_tag`] implies
//! [`TagFilter::matches_tags_code`] even for a client that sent inconsistent sets.

use common::hash::{java_string_hash, tags_code};
use common::subscription::{SubscriptionData, SUB_ALL};

/// A compiled TAG subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    all: bool,
    /// Sorted, deduplicated.
    codes: Box<[i32]>,
    /// Sorted, deduplicated.
    tags: Box<[Box<str>]>,
}

impl TagFilter {
    /// Builds the filter of a TAG-type subscription. The expression type is not
    /// checked; [`super::MessageFilter::from_subscription`] dispatches on it.
    pub fn from_subscription(sub: &SubscriptionData) -> TagFilter {
        let expr = sub.sub_string.trim();
        if expr.is_empty() || expr == SUB_ALL {
            return TagFilter::all();
        }
        let mut tags: Vec<Box<str>> = if sub.tags_set.is_empty() {
            expr.split("||").map(str::trim).filter(|t| !t.is_empty()).map(Box::from).collect()
        } else {
            sub.tags_set.iter().map(|t| Box::from(t.as_str())).collect()
        };
        tags.sort_unstable();
        tags.dedup();
        let mut codes: Vec<i32> = sub.code_set.clone();
        codes.extend(tags.iter().map(|t| java_string_hash(t)));
        codes.sort_unstable();
        codes.dedup();
        TagFilter { all: false, codes: codes.into(), tags: tags.into() }
    }

    /// Builds the filter of `"TagA || TagB"`, as the Java client would subscribe.
    pub fn from_expression(expr: &str) -> TagFilter {
        TagFilter::from_subscription(&SubscriptionData::new("", expr, "TAG", 0))
    }

    /// The filter that accepts everything (`*`).
    pub fn all() -> TagFilter {
        TagFilter { all: true, codes: Box::default(), tags: Box::default() }
    }

    /// True for `*`.
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Consume-queue pre-filter: may accept a message whose tag only collides with a
    /// subscribed one. Java compares `(int) tagsCode`, and so do we.
    pub fn matches_tags_code(&self, tags_code: i64) -> bool {
        // Truncation is the point: Java's `tagsCode.intValue()`.
        self.all || self.codes.binary_search(&(tags_code as i32)).is_ok()
    }

    /// Exact check of a message's `TAGS` property (`None` when it has none).
    ///
    /// With a tag set this is the Java client's re-filter: the tag must be in it, so an
    /// untagged message never matches. A subscription that yields no tag at all
    /// (`"||"`) falls back to the code check the Java broker would make.
    pub fn matches_tag(&self, tag: Option<&str>) -> bool {
        if self.all {
            return true;
        }
        if self.tags.is_empty() {
            return self.matches_tags_code(tags_code(tag));
        }
        tag.is_some_and(|t| self.tags.binary_search_by(|x| (**x).cmp(t)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_empty_subscribe_to_all() {
        for expr in ["*", "", "  *  "] {
            let f = TagFilter::from_expression(expr);
            assert!(f.is_all(), "{expr:?}");
            assert!(f.matches_tags_code(0) && f.matches_tags_code(12345));
            assert!(f.matches_tag(None) && f.matches_tag(Some("x")));
        }
    }

    #[test]
    fn tags_match_by_code_then_exactly() {
        let f = TagFilter::from_expression("TagA || TagB");
        assert!(f.matches_tags_code(2_598_919)); // "TagA"
        assert!(f.matches_tags_code(2_598_920)); // "TagB"
        assert!(!f.matches_tags_code(2_598_921)); // "TagC"
        assert!(!f.matches_tags_code(0));
        assert!(f.matches_tag(Some("TagA")));
        assert!(!f.matches_tag(Some("taga")));
        assert!(!f.matches_tag(None));
    }

    #[test]
    fn tags_code_is_narrowed_like_java_int_value() {
        let f = TagFilter::from_expression("TagA");
        assert!(f.matches_tags_code(2_598_919 + (1_i64 << 32)));
        let neg = TagFilter::from_expression("order-created");
        let code = java_string_hash("order-created");
        assert!(code < 0);
        assert!(neg.matches_tags_code(i64::from(code)));
    }

    #[test]
    fn hash_collisions_pass_the_code_check_but_not_the_exact_one() {
        // "Aa" and "BB" share the Java hash 2112.
        assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
        let f = TagFilter::from_expression("Aa");
        assert!(f.matches_tags_code(tags_code(Some("BB"))));
        assert!(!f.matches_tag(Some("BB")));
    }

    #[test]
    fn missing_sets_are_derived_from_the_expression() {
        let sub = SubscriptionData {
            topic: "T".into(),
            sub_string: " TagA ||TagB".into(),
            expression_type: "TAG".into(),
            ..SubscriptionData::default()
        };
        let f = TagFilter::from_subscription(&sub);
        assert!(f.matches_tags_code(2_598_919) && f.matches_tags_code(2_598_920));
        assert!(f.matches_tag(Some("TagB")));
    }

    #[test]
    fn code_set_is_kept_even_when_tags_disagree() {
        let sub = SubscriptionData {
            sub_string: "TagA".into(),
            tags_set: vec!["TagA".into()],
            code_set: vec![7],
            ..SubscriptionData::default()
        };
        let f = TagFilter::from_subscription(&sub);
        assert!(f.matches_tags_code(7) && f.matches_tags_code(2_598_919));
        assert!(!f.matches_tag(Some("TagB")));
    }

    #[test]
    fn no_tags_falls_back_to_codes() {
        let f = TagFilter::from_expression("||");
        assert!(!f.is_all());
        assert!(!f.matches_tags_code(0));
        assert!(!f.matches_tag(None));
    }
}
