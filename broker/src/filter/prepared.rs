// PERF-CRITICAL PATH: the pull path runs these stages on every scanned message.
//! A subscription compiled for the pull path ([`PreparedFilter`]) and the cache that
//! reuses it while the subscription is unchanged ([`FilterCache`]).
//!
//! A prepared filter chains the built-in stages ([`MessageFilter`]: the tag-hash
//! pre-filter on consume-queue entries, then TAG/SQL92 on properties) with plugin
//! filters (a `PLUGIN:<name>` subscription and/or a `[[broker.plugin_binding]]` of the
//! topic and group), which run on a found batch, one call per plugin. Parked pulls
//! keep their prepared filter, so an arrival is matched against the same stages the
//! pull ran. This module decides; it does not read the store beyond the consume-queue
//! window the plugins' pre-filters look at.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use common::record::RecordView;
use common::subscription::SubscriptionData;
use plugin_api::{CqUnit, FailurePolicy, FilterContext, MessageFields, MessageFilter as _, MessageView, Verdict};
use plugin_host::FilterPlugin;
use store::MessageStore;

use crate::filter::MessageFilter;
use crate::plugins::{BoundFilter, BrokerPlugins};

/// A compiled subscription filter, shared by a pull and its parked re-runs: the
/// built-in TAG/SQL92 stages, then plugin filters (a `PLUGIN:<name>` subscription
/// and/or a `[[broker.plugin_binding]]` of the topic and group).
pub struct PreparedFilter {
    filter: MessageFilter,
    plugins: Vec<PluginStage>,
    /// A fault for tests: the pull path panics when it re-runs a parked pull with
    /// this filter.
    #[cfg(test)]
    pub(crate) panics_on_rerun: bool,
}

/// One plugin filter with the subscription it filters for.
struct PluginStage {
    bound: BoundFilter,
    expression_type: String,
    expression: String,
}

/// What the plugin stage left of a found batch.
pub struct PluginPass {
    /// Per message: delivered? (false from `deliverable` on)
    pub keep: Vec<bool>,
    /// Messages `deliverable..` were not decided (policy `pause`): offer them again.
    pub deliverable: usize,
}

impl PreparedFilter {
    pub fn new(filter: MessageFilter) -> Self {
        Self {
            filter,
            plugins: Vec::new(),
            #[cfg(test)]
            panics_on_rerun: false,
        }
    }

    /// Consume-queue stage: may accept what the record stage rejects, never the
    /// reverse.
    pub fn pre_filter(&self, tags_code: i64) -> bool {
        self.filter.pre_filter(tags_code)
    }

    /// Record stage: properties (SQL92, plugins).
    pub fn matches_record(&self, view: &RecordView<'_>) -> bool {
        self.filter.matches_properties(view.properties_raw())
    }

    /// Built-in stages on an arrival event (long-polling wake-up); plugin filters
    /// decide when the woken pull runs.
    pub fn matches_arrival(&self, tags_code: i64, properties: &[u8]) -> bool {
        if !self.pre_filter(tags_code) {
            return false;
        }
        self.filter.matches_properties(properties)
    }

    /// Whether the record stage reads properties (else the consume-queue stage decides).
    pub fn needs_record_stage(&self) -> bool {
        self.filter.needs_properties()
    }

    /// Whether plugin filters run on found batches.
    pub fn has_plugins(&self) -> bool {
        !self.plugins.is_empty()
    }

    /// Runs the plugins' consume-queue pre-filters (those that have one) over the
    /// entries a pull of `group` from `topic`/`queue_id` at `from` will scan first
    /// (`max_msgs` of them), and returns the commit-log
    /// offsets they rejected, sorted. Entries past that window are not pre-filtered (a
    /// pre-filter may over-match, never under-match, so skipping it is always safe); a
    /// failing pre-filter rejects nothing.
    pub fn run_prefilters(
        &self,
        store: &MessageStore,
        (topic, group): (&str, &str),
        queue_id: i32,
        from: i64,
        max_msgs: usize,
    ) -> Vec<i64> {
        let stages: Vec<(&PluginStage, &FilterPlugin)> = self
            .plugins
            .iter()
            .filter_map(|s| s.bound.plugin.as_ref().ok().filter(|p| p.has_prefilter()).map(|p| (s, p)))
            .collect();
        if stages.is_empty() {
            return Vec::new();
        }
        // As many units as the pull may return: a wider window costs a consume-queue read
        // and a plugin call per unit that the pull mostly never reaches.
        let entries = store.cq_entries(topic, queue_id, from, max_msgs);
        let units: Vec<CqUnit> = entries
            .iter()
            .map(|(queue_offset, e)| CqUnit {
                queue_offset: *queue_offset,
                store_timestamp: 0,
                tags_code: e.tags_code,
                msg_size: e.size.max(0) as u32,
            })
            .collect();
        let mut verdicts = vec![Verdict::Accept; units.len()];
        let mut rejected = Vec::new();
        for (stage, plugin) in stages {
            let fctx =
                FilterContext { topic, group, expression_type: &stage.expression_type, expression: &stage.expression };
            plugin.prefilter_with_policy(&fctx, &units, &mut verdicts);
            rejected.extend(
                entries.iter().zip(&verdicts).filter(|(_, v)| **v == Verdict::Reject).map(|((_, e), _)| e.phy_offset),
            );
        }
        rejected.sort_unstable();
        rejected.dedup();
        rejected
    }

    /// Runs the plugin filters over a found batch, in one call per plugin.
    pub fn run_plugins(&self, topic: &str, group: &str, records: &[bytes::Bytes]) -> PluginPass {
        let n = records.len();
        let mut pass = PluginPass { keep: vec![true; n], deliverable: n };
        if self.plugins.is_empty() || n == 0 {
            return pass;
        }
        // The views fill only what the plugins read (ABI 1.1 declarations): a plugin that
        // reads no message field needs no record parsed at all.
        let carried = self
            .plugins
            .iter()
            .filter_map(|s| s.bound.plugin.as_ref().ok())
            .fold(MessageFields::NONE, |all, p| all.union(p.message_fields()));
        let views: Vec<MessageView<'_>> = if carried.difference(MessageFields::TOPIC) == MessageFields::NONE {
            vec![MessageView { topic, ..MessageView::default() }; n]
        } else {
            // The records come straight from the page cache and are usually not in the
            // CPU cache yet (nothing before this stage read them): keep the loads of the
            // next few records in flight while parsing one.
            use common::record::{prefetch, PREFETCH_AHEAD};
            records.iter().take(PREFETCH_AHEAD).for_each(|r| prefetch(r));
            records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    if let Some(next) = records.get(i + PREFETCH_AHEAD) {
                        prefetch(next);
                    }
                    RecordView::parse(r).map_or_else(|_| MessageView::default(), |v| view_of(topic, &v, carried))
                })
                .collect()
        };
        let mut verdicts = vec![Verdict::Reject; n];
        for stage in &self.plugins {
            let d = pass.deliverable;
            if d == 0 {
                break;
            }
            let ctx =
                FilterContext { topic, group, expression_type: &stage.expression_type, expression: &stage.expression };
            match &stage.bound.plugin {
                Ok(plugin) => {
                    let report = plugin.filter_views_with_policy(&ctx, &views[..d], carried, &mut verdicts[..d]);
                    pass.deliverable = report.deliverable;
                    for (k, v) in pass.keep.iter_mut().zip(&verdicts[..report.deliverable]) {
                        *k &= *v == Verdict::Accept;
                    }
                }
                // Not loaded: as if every call failed.
                Err(_) => match stage.bound.policy {
                    FailurePolicy::Deliver => {}
                    FailurePolicy::Skip => pass.keep[..d].fill(false),
                    _ => pass.deliverable = 0,
                },
            }
        }
        pass.keep[pass.deliverable..].fill(false);
        pass
    }
}

/// A stored record of the pulled `topic` as plugins see it (borrowed; the body is
/// passed along, the host hands it over only to plugins that ask for it). Every view
/// of a pull shares the one `topic` slice, so the frame carries it once. Tags and keys
/// (a pass over the properties) are looked up only if a plugin reads them or the
/// metadata (which holds the tags' hash).
fn view_of<'a>(topic: &'a str, v: &RecordView<'a>, carried: MessageFields) -> MessageView<'a> {
    let props = v.properties_raw();
    let wants_tags = [MessageFields::TAGS, MessageFields::KEYS, MessageFields::METADATA];
    let (tags, found_keys) = if wants_tags.iter().any(|f| carried.contains(*f)) {
        crate::filter::tags_and_keys(props)
    } else {
        (None, None)
    };
    let body = v.body();
    MessageView {
        topic,
        tags: tags.unwrap_or(""),
        keys: found_keys.unwrap_or(""),
        properties: v.properties_raw(),
        body: Some(body),
        body_size: body.len() as u32,
        queue_id: v.queue_id().max(0) as u32,
        queue_offset: v.queue_offset(),
        commit_log_offset: v.physical_offset(),
        store_timestamp: v.store_timestamp(),
        born_timestamp: v.born_timestamp(),
        tags_code: common::hash::tags_code(tags),
        reconsume_times: v.reconsume_times().max(0) as u32,
        ..MessageView::default()
    }
}

/// A compiled filter and what it was compiled from: (subscription version, expression
/// type, expression, filter).
type CachedFilter = (i64, String, String, Arc<PreparedFilter>);

/// Compiled filters by (group, topic), reused while the subscription is unchanged.
#[derive(Default)]
pub struct FilterCache {
    map: RwLock<HashMap<(String, String), CachedFilter>>,
}

impl FilterCache {
    /// Forgets every compiled filter (the plugin bindings changed): the next pull
    /// of each group compiles its filter again.
    pub fn clear(&self) {
        self.map.write().clear();
    }

    /// Puts `prepared` in the cache as the compiled form of `sub` (tests inject
    /// faulty filters this way).
    #[cfg(test)]
    pub(crate) fn insert(&self, group: &str, sub: &SubscriptionData, prepared: PreparedFilter) {
        let key = (group.to_owned(), sub.topic.clone());
        let entry = (sub.sub_version, sub.sub_string.clone(), sub.expression_type.clone(), Arc::new(prepared));
        self.map.write().insert(key, entry);
    }

    /// The compiled filter of `group`'s subscription, compiled when the subscription
    /// (version, type or expression) changed.
    ///
    /// # Errors
    /// The expression does not compile, or names a plugin that is not a declared
    /// filter: the remark to answer.
    pub fn get_or_compile(
        &self,
        plugins: &BrokerPlugins,
        group: &str,
        sub: &SubscriptionData,
    ) -> Result<Arc<PreparedFilter>, String> {
        let key = (group.to_owned(), sub.topic.clone());
        if let Some((ver, expr, ty, f)) = self.map.read().get(&key) {
            if *ver == sub.sub_version && *expr == sub.sub_string && *ty == sub.expression_type {
                return Ok(f.clone());
            }
        }
        let mut prepared = PreparedFilter::new(MessageFilter::All);
        let stage = |bound: BoundFilter| PluginStage {
            bound,
            expression_type: sub.expression_type.clone(),
            expression: sub.sub_string.clone(),
        };
        if let Some(name) = sub.plugin_name() {
            prepared.plugins.push(stage(plugins.filter_named(name)?));
        } else {
            prepared.filter = MessageFilter::from_subscription(sub).map_err(|e| e.to_string())?;
        }
        if let Some(bound) = plugins.filter_for(&sub.topic, group) {
            if prepared.plugins.iter().all(|s| s.bound.name != bound.name) {
                prepared.plugins.push(stage(bound));
            }
        }
        let prepared = Arc::new(prepared);
        self.map
            .write()
            .insert(key, (sub.sub_version, sub.sub_string.clone(), sub.expression_type.clone(), prepared.clone()));
        Ok(prepared)
    }
}
