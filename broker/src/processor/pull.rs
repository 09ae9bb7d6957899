// PERF-CRITICAL PATH: every consumed message passes through `process`.
//! PULL_MESSAGE (11) with long polling — RocketMQ's `PullMessageProcessor`
//! (`remoting-protocol.md` §12.5).
//!
//! The answer always carries `suggestWhichBrokerId`, `nextBeginOffset`, `minOffset`
//! and `maxOffset` (the Java client requires them whatever the code). Records go
//! out as a chain of slices of the mapped commit log, never copied.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tracing::Span;

use common::record::RecordView;
use common::subscription::{MessageModel, SubscriptionData};
use common::sysflag::pull as pull_flag;
use common::{perm, ResponseCode};
use plugin_api::{CqUnit, FailurePolicy, FilterContext, MessageFields, MessageFilter as _, MessageView, Verdict};
use plugin_host::FilterPlugin;
use remoting::command::Body;
use remoting::header::broker::{PullMessageRequestHeader, PullMessageResponseHeader};
use remoting::{Channel, RemotingCommand};
use store::{CqEntry, GetRequest, GetStatus};

use crate::context::BrokerContext;
use crate::filter::MessageFilter;
use crate::hold::HeldPull;
use crate::plugins::{BoundFilter, BrokerPlugins};
use crate::processor::try_header;
use crate::stats::BrokerStats;

/// A compiled subscription filter, shared by a pull and its parked re-runs: the
/// built-in TAG/SQL92 stages, then plugin filters (a `PLUGIN:<name>` subscription
/// and/or a `[[broker.plugin_binding]]` of the topic and group).
pub struct PreparedFilter {
    filter: MessageFilter,
    plugins: Vec<PluginStage>,
}

/// One plugin filter with the subscription it filters for.
struct PluginStage {
    bound: BoundFilter,
    expression_type: String,
    expression: String,
}

/// What the plugin stage left of a found batch.
struct PluginPass {
    /// Per message: delivered? (false from `deliverable` on)
    keep: Vec<bool>,
    /// Messages `deliverable..` were not decided (policy `pause`): offer them again.
    deliverable: usize,
}

impl PreparedFilter {
    pub fn new(filter: MessageFilter) -> Self {
        Self { filter, plugins: Vec::new() }
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

    fn needs_record_stage(&self) -> bool {
        self.filter.needs_properties()
    }

    /// Runs the plugins' consume-queue pre-filters (those that have one) over the
    /// entries a pull from `h.queue_offset` will scan first, and returns the commit-log
    /// offsets they rejected, sorted. Entries past that window are not pre-filtered (a
    /// pre-filter may over-match, never under-match, so skipping it is always safe); a
    /// failing pre-filter rejects nothing.
    fn run_prefilters(&self, ctx: &BrokerContext, h: &PullMessageRequestHeader, max_msgs: usize) -> Vec<i64> {
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
        let entries = ctx.store.cq_entries(&h.topic, h.queue_id, h.queue_offset, max_msgs);
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
            let fctx = FilterContext {
                topic: &h.topic,
                group: &h.consumer_group,
                expression_type: &stage.expression_type,
                expression: &stage.expression,
            };
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
    fn run_plugins(&self, topic: &str, group: &str, records: &[bytes::Bytes]) -> PluginPass {
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

/// Keeps the items of `v` whose mark is true (`marks` is as long as `v`).
fn retain_marked<T>(v: &mut Vec<T>, marks: &[bool]) {
    let mut m = marks.iter();
    v.retain(|_| m.next().copied().unwrap_or(false));
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
    fn get_or_compile(
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

/// The first execution of a pull: may commit the piggy-backed offset and park.
pub async fn process_first(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    process(ctx, ch, req, true).await
}

/// Runs a pull; `first` is false when a parked pull is re-run (no offset commit, no
/// second suspension). `None` means the request was parked.
pub async fn process(
    ctx: &Arc<BrokerContext>,
    ch: &Channel,
    req: RemotingCommand,
    first: bool,
) -> Option<RemotingCommand> {
    let h: PullMessageRequestHeader = try_header!(&req);
    let span = Span::current();
    span.record("topic", h.topic.as_str());
    span.record("queue_id", h.queue_id);
    span.record("group", h.consumer_group.as_str());
    if first {
        BrokerStats::add(&ctx.stats.pull_requests, 1);
    }
    match pull(ctx, ch, &h, first) {
        Outcome::Respond(r) => Some(r),
        Outcome::Delay(hold) => {
            ctx.holds.delay(ch.clone(), req, hold);
            None
        }
        Outcome::Park(filter) => {
            let hold = if ctx.config.long_polling_enable {
                Duration::from_millis(h.suspend_timeout_millis.max(0) as u64)
            } else {
                ctx.config.short_polling_time_mills
            };
            ctx.holds.park(HeldPull {
                channel: ch.clone(),
                request: req,
                topic: h.topic,
                queue_id: h.queue_id,
                offset: h.queue_offset,
                filter,
                hold,
            });
            None
        }
    }
}

/// How long a pull whose plugin filter is paused is held before it is answered.
const PLUGIN_PAUSE_RETRY: Duration = Duration::from_secs(1);

enum Outcome {
    Respond(RemotingCommand),
    Park(Arc<PreparedFilter>),
    /// Answer after this long, ignoring arrivals (a closed queue of an expanded
    /// ordered topic).
    Delay(Duration),
}

fn error(code: ResponseCode, remark: String) -> Outcome {
    Outcome::Respond(RemotingCommand::error(code, remark))
}

fn pull(ctx: &Arc<BrokerContext>, ch: &Channel, h: &PullMessageRequestHeader, first: bool) -> Outcome {
    if !ctx.is_readable() {
        return error(
            ResponseCode::NO_PERMISSION,
            format!("the broker[{}] pulling message is forbidden", ctx.broker_addr),
        );
    }
    let Some(group) = ctx.groups.find_or_create(&h.consumer_group) else {
        return error(
            ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("subscription group [{}] does not exist", h.consumer_group),
        );
    };
    if !group.consume_enable {
        return error(ResponseCode::NO_PERMISSION, format!("subscription group no permission, {}", h.consumer_group));
    }
    let Some(tc) = ctx.topics.get(&h.topic) else {
        return error(ResponseCode::TOPIC_NOT_EXIST, format!("topic[{}] not exist, apply first please!", h.topic));
    };
    if !perm::is_readable(tc.perm) {
        return error(ResponseCode::NO_PERMISSION, format!("the topic[{}] pulling message is forbidden", h.topic));
    }
    if h.queue_id < 0 || h.queue_id >= tc.read_queue_nums {
        return error(
            ResponseCode::SYSTEM_ERROR,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}] consumer:[{}]",
                h.queue_id,
                h.topic,
                tc.read_queue_nums,
                ch.peer_addr()
            ),
        );
    }

    let has_subscription_flag = h.sys_flag & pull_flag::SUBSCRIPTION != 0;
    let subscription = if has_subscription_flag {
        SubscriptionData::new(
            h.topic.clone(),
            h.subscription.as_deref().unwrap_or("*"),
            h.expression_type.as_deref().unwrap_or("TAG"),
            h.sub_version,
        )
    } else {
        let Some(info) = ctx.clients.consumer_group(&h.consumer_group) else {
            return error(
                ResponseCode::SUBSCRIPTION_NOT_EXIST,
                format!("the consumer's group info not exist, group: {}", h.consumer_group),
            );
        };
        if !group.consume_broadcast_enable && info.message_model == MessageModel::Broadcasting {
            return error(
                ResponseCode::NO_PERMISSION,
                format!("the consumer group[{}] can not consume by broadcast way", h.consumer_group),
            );
        }
        let Some(sub) = info.subscriptions.get(&h.topic).cloned() else {
            return error(
                ResponseCode::SUBSCRIPTION_NOT_EXIST,
                format!("the consumer's subscription not exist, group: {} topic: {}", h.consumer_group, h.topic),
            );
        };
        if sub.sub_version < h.sub_version {
            return error(
                ResponseCode::SUBSCRIPTION_NOT_LATEST,
                format!("the consumer's subscription not latest, group: {} topic: {}", h.consumer_group, h.topic),
            );
        }
        sub
    };
    if !subscription.is_tag_type()
        && !ctx.config.enable_property_filter
        && subscription.expression_type.eq_ignore_ascii_case("SQL92")
    {
        return error(
            ResponseCode::SYSTEM_ERROR,
            format!("The broker does not support consumer to filter message by {}", subscription.expression_type),
        );
    }
    let filter = match ctx.filters.get_or_compile(&ctx.plugins, &h.consumer_group, &subscription) {
        Ok(f) => f,
        Err(e) => {
            return error(
                ResponseCode::SUBSCRIPTION_PARSE_FAILED,
                format!("parse the consumer's subscription failed: {e}"),
            )
        }
    };

    if tc.order {
        if let Some(closed) = ctx.order_expansions.gate(
            &h.topic,
            &h.consumer_group,
            h.queue_id,
            |q| ctx.offsets.query(&h.consumer_group, &h.topic, q),
            |q| ctx.store.min_offset_in_queue(&h.topic, q),
        ) {
            let broadcasting = ctx
                .clients
                .consumer_group(&h.consumer_group)
                .is_some_and(|g| g.message_model == MessageModel::Broadcasting);
            if !broadcasting {
                return closed_queue(ctx, h, first, &closed);
            }
        }
    }

    let max_msgs = h.max_msg_nums.clamp(1, 1024) as usize;
    let plugin_rejects = filter.run_prefilters(ctx, h, max_msgs);
    let cq_filter =
        |e: &CqEntry| filter.pre_filter(e.tags_code) && plugin_rejects.binary_search(&e.phy_offset).is_err();
    let record_filter = |v: &RecordView<'_>| filter.matches_record(v);
    let mut get = GetRequest::new(&h.topic, h.queue_id, h.queue_offset, max_msgs).cq_filter(&cq_filter);
    if filter.needs_record_stage() {
        get = get.record_filter(&record_filter);
    }
    if let Some(max_bytes) = h.max_msg_bytes.filter(|b| *b > 0) {
        get = get.max_bytes(max_bytes as usize);
    }
    let mut result = ctx.store.get_messages(&get);
    let mut plugin_paused = false;
    if result.status == GetStatus::Found && !filter.plugins.is_empty() {
        let pass = filter.run_plugins(&h.topic, &h.consumer_group, &result.messages);
        if pass.deliverable < result.messages.len() {
            result.next_begin_offset = result.queue_offsets[pass.deliverable];
            plugin_paused = true;
        }
        retain_marked(&mut result.messages, &pass.keep);
        retain_marked(&mut result.queue_offsets, &pass.keep);
        result.total_bytes = result.messages.iter().map(bytes::Bytes::len).sum();
        if result.messages.is_empty() {
            result.status = GetStatus::NoMatchedMessage;
        }
    }
    if plugin_paused && result.messages.is_empty() && result.next_begin_offset == h.queue_offset {
        // A plugin filter that cannot decide (failing, breaker open, not loaded)
        // under policy `pause`: nothing is delivered or skipped; the consumer asks
        // again from the same offset, at most about once per PLUGIN_PAUSE_RETRY.
        if first && h.sys_flag & pull_flag::SUSPEND != 0 {
            return Outcome::Delay(PLUGIN_PAUSE_RETRY);
        }
        let header = PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: h.queue_offset,
            min_offset: result.min_offset,
            max_offset: result.max_offset,
        };
        let mut resp = RemotingCommand::response_with(ResponseCode::PULL_NOT_FOUND, &header);
        resp.remark = Some("delivery paused: the subscription's filter plugin cannot decide".into());
        return Outcome::Respond(resp);
    }

    let (code, next) = match result.status {
        GetStatus::Found => (ResponseCode::SUCCESS, result.next_begin_offset),
        GetStatus::NoMatchedLogicQueue | GetStatus::NoMessageInQueue => {
            if h.queue_offset != 0 {
                (ResponseCode::PULL_OFFSET_MOVED, 0)
            } else {
                (ResponseCode::PULL_NOT_FOUND, 0)
            }
        }
        GetStatus::OffsetFoundNull | GetStatus::OffsetOverflowOne => {
            (ResponseCode::PULL_NOT_FOUND, result.next_begin_offset)
        }
        GetStatus::MessageWasRemoving | GetStatus::NoMatchedMessage => {
            (ResponseCode::PULL_RETRY_IMMEDIATELY, result.next_begin_offset)
        }
        // Past the tail: continue from the tail (remoting-protocol.md §12.5, RocketMQ
        // 5.x). The store suggests min when min is 0 (4.9's rule), which would make a
        // consumer whose offset ran ahead re-consume the whole queue.
        GetStatus::OffsetOverflowBadly => (ResponseCode::PULL_OFFSET_MOVED, result.max_offset),
        GetStatus::OffsetTooSmall => (ResponseCode::PULL_OFFSET_MOVED, result.next_begin_offset),
    };

    if first && h.sys_flag & pull_flag::COMMIT_OFFSET != 0 && ctx.config.broker_role.is_master() {
        ctx.offsets.commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    }

    if code == ResponseCode::PULL_NOT_FOUND && first && h.sys_flag & pull_flag::SUSPEND != 0 {
        return Outcome::Park(filter);
    }

    let header = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: next,
        min_offset: result.min_offset,
        max_offset: result.max_offset,
    };
    let mut resp = RemotingCommand::response_with(code, &header);
    if code == ResponseCode::SUCCESS {
        BrokerStats::add(&ctx.stats.pull_messages, result.messages.len() as u64);
        BrokerStats::add(&ctx.stats.pull_bytes, result.total_bytes as u64);
        resp.body = Body::Chain(result.messages);
    } else if code == ResponseCode::PULL_OFFSET_MOVED {
        tracing::info!(group = %h.consumer_group, topic = %h.topic, queue_id = h.queue_id, requested = h.queue_offset,
                       next = next, min = result.min_offset, max = result.max_offset, "pull offset moved");
    }
    Outcome::Respond(resp)
}

/// A queue added to an ordered topic that the group may not read yet
/// (`order_expansion`): nothing found, from where it asked, so the consumer keeps
/// its offset and asks again.
fn closed_queue(
    ctx: &BrokerContext,
    h: &PullMessageRequestHeader,
    first: bool,
    closed: &crate::order_expansion::Closed,
) -> Outcome {
    if first && h.sys_flag & pull_flag::COMMIT_OFFSET != 0 && ctx.config.broker_role.is_master() {
        ctx.offsets.commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    }
    if first && h.sys_flag & pull_flag::SUSPEND != 0 {
        let suspend = Duration::from_millis(h.suspend_timeout_millis.max(0) as u64);
        return Outcome::Delay(suspend.min(crate::order_expansion::GATE_RECHECK));
    }
    let header = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: h.queue_offset,
        min_offset: ctx.store.min_offset_in_queue(&h.topic, h.queue_id),
        max_offset: ctx.store.max_offset_in_queue(&h.topic, h.queue_id),
    };
    let mut resp = RemotingCommand::response_with(ResponseCode::PULL_NOT_FOUND, &header);
    resp.remark = Some(closed.to_string());
    Outcome::Respond(resp)
}
