// PERF-CRITICAL PATH: every consumed message passes through `process`.
//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361) with long polling — RocketMQ's
//! `PullMessageProcessor` (`remoting-protocol.md` §12.5).
//!
//! The answer always carries `suggestWhichBrokerId`, `nextBeginOffset`, `minOffset`
//! and `maxOffset` (the Java client requires them whatever the code). Records go
//! out as a chain of slices of the mapped commit log, never copied.

use std::sync::Arc;
use std::time::Duration;

use tracing::Span;

use common::record::RecordView;
use common::subscription::{MessageModel, SubscriptionData};
use common::sysflag::pull as pull_flag;
use common::{perm, ResponseCode};
use remoting::command::Body;
use remoting::header::broker::{PullMessageRequestHeader, PullMessageResponseHeader};
use remoting::{Channel, RemotingCommand, RequestCode};
use store::{CqEntry, GetRequest, GetStatus};

use crate::context::BrokerContext;
use crate::filter::prepared::PreparedFilter;
use crate::processor::try_header;
use crate::stats::BrokerStats;

/// Keeps the items of `v` whose mark is true (`marks` is as long as `v`).
fn retain_marked<T>(v: &mut Vec<T>, marks: &[bool]) {
    let mut m = marks.iter();
    v.retain(|_| m.next().copied().unwrap_or(false));
}

/// PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361): RocketMQ 5's lite-pull consumers
/// send the same header under code 361, served the same way (including long
/// polling when the request allows suspension), unless `lite_pull_message_enable`
/// is off.
///
/// A pull that finds nothing and may suspend waits here, in its own request task,
/// until data arrives, its hold time ends or the broker shuts down, then runs once
/// more (without committing the offset again or suspending) and answers.
pub async fn process(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: PullMessageRequestHeader = try_header!(&req);
    let Some(tracer) = &ctx.tracer else { return serve(ctx, ch, &req, h).await };
    let cx = crate::spans::start_pull(tracer, &h.topic, &h.consumer_group, h.queue_id, h.queue_offset);
    let response = opentelemetry::trace::FutureExt::with_context(serve(ctx, ch, &req, h), cx.clone()).await;
    let (code, messages) = response
        .as_ref()
        .map_or((-1, 0), |r| (r.code, if let remoting::command::Body::Chain(m) = &r.body { m.len() } else { 0 }));
    crate::spans::end_pull(&cx, code, messages);
    response
}

async fn serve(
    ctx: &Arc<BrokerContext>,
    ch: &Channel,
    req: &RemotingCommand,
    h: PullMessageRequestHeader,
) -> Option<RemotingCommand> {
    let span = Span::current();
    span.record("topic", h.topic.as_str());
    span.record("queue_id", h.queue_id);
    span.record("group", h.consumer_group.as_str());
    BrokerStats::add(&ctx.stats.pull_requests, 1);
    if req.request_code() == RequestCode::LITE_PULL_MESSAGE && !ctx.config.lite_pull_message_enable {
        return Some(RemotingCommand::error(
            ResponseCode::NO_PERMISSION,
            format!("the broker[{}] for lite pull consumer is forbidden", ctx.broker_addr.ip()),
        ));
    }
    match pull(ctx, ch, &h, true) {
        Outcome::Respond(r) => return Some(r),
        Outcome::Delay(hold) => ctx.holds.hold_for(hold).await,
        Outcome::Park(filter) => {
            let hold = if ctx.runtime.long_polling_enable() {
                Duration::from_millis(h.suspend_timeout_millis.max(0) as u64)
            } else {
                ctx.runtime.short_polling_time()
            };
            wait_for_arrival(ctx, ch, &h, filter, hold).await;
        }
    }
    if ch.is_closed() {
        return None;
    }
    match pull(ctx, ch, &h, false) {
        Outcome::Respond(r) => Some(r),
        // A re-run never suspends.
        Outcome::Delay(_) | Outcome::Park(_) => None,
    }
}

/// How often a parked pull re-checks its queue even without an arrival (covers what
/// the arrival's filter pre-check rejected but the pull's own stages would take).
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Parks a pull that found nothing until a matching arrival, a re-check that finds
/// the queue grew, a closed connection, shutdown, or the end of `hold`.
async fn wait_for_arrival(
    ctx: &BrokerContext,
    ch: &Channel,
    h: &PullMessageRequestHeader,
    filter: Arc<PreparedFilter>,
    hold: Duration,
) {
    let grew = || ctx.store.readable_at(&h.topic, h.queue_id, h.queue_offset);
    let mut parked = ctx.holds.park(&h.topic, h.queue_id, h.queue_offset, filter);
    BrokerStats::add(&ctx.stats.pull_held, 1);
    // A message may have been dispatched between the read that found nothing and
    // the registration above: look once more so it is not missed.
    if grew() {
        return;
    }
    let deadline = tokio::time::Instant::now() + hold;
    loop {
        let tick = (tokio::time::Instant::now() + CHECK_INTERVAL).min(deadline);
        tokio::select! {
            _ = parked.woken() => return,
            _ = tokio::time::sleep_until(tick) => {
                if tokio::time::Instant::now() >= deadline || grew() || ch.is_closed() {
                    return;
                }
            }
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
        && !ctx.runtime.enable_property_filter()
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

    #[cfg(test)]
    if !first && filter.panics_on_rerun {
        panic!("a filter set to panic on the re-run of a parked pull");
    }

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
    let max_bytes = h.max_msg_bytes.filter(|b| *b > 0).map(|b| b as usize);
    let Filtered { result, plugin_paused } = read_filtered(
        ctx,
        &filter,
        QueueRead { topic: &h.topic, group: &h.consumer_group, queue_id: h.queue_id, offset: h.queue_offset },
        max_msgs,
        max_bytes,
    );
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

    // A slave does not correct offsets (RocketMQ's `offsetCheckInSlave` off): what it
    // lacks may be on its master, so the consumer keeps its offset and asks again.
    let (code, next) = if code == ResponseCode::PULL_OFFSET_MOVED && ctx.role.is_slave() {
        (ResponseCode::PULL_RETRY_IMMEDIATELY, h.queue_offset)
    } else {
        (code, next)
    };

    if first && h.sys_flag & pull_flag::COMMIT_OFFSET != 0 && !ctx.role.is_slave() {
        ctx.offsets.commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    }

    // Whether this consumer reads from behind the page cache (RocketMQ's
    // `isSuggestPullingFromSlave`), judged by the last record it gets.
    let too_slow = result
        .messages
        .last()
        .and_then(|r| RecordView::parse(r).ok())
        .is_some_and(|v| ctx.role.behind_page_cache(v.physical_offset(), ctx.store.commit_log_max_offset()));
    let suggestion = ctx.role.suggest(group.broker_id, group.which_broker_when_consume_slowly, too_slow);
    let code = if suggestion.retry_on_master && code != ResponseCode::SUCCESS {
        ResponseCode::PULL_RETRY_IMMEDIATELY
    } else {
        code
    };
    if code == ResponseCode::PULL_NOT_FOUND && first && h.sys_flag & pull_flag::SUSPEND != 0 {
        return Outcome::Park(filter);
    }

    let header = PullMessageResponseHeader {
        suggest_which_broker_id: suggestion.broker_id,
        next_begin_offset: next,
        min_offset: result.min_offset,
        max_offset: result.max_offset,
    };
    let mut resp = RemotingCommand::response_with(code, &header);
    if code == ResponseCode::SUCCESS {
        ctx.record_get(&h.topic, &h.consumer_group, result.messages.len() as u64, result.total_bytes as u64);
        if ctx.metrics.enabled() {
            ctx.metrics.record_out(
                &h.topic,
                &h.consumer_group,
                result.messages.len() as u64,
                result.total_bytes as u64,
            );
            ctx.offsets.commit_pull(&h.consumer_group, &h.topic, h.queue_id, next);
        }
        resp.body = Body::Chain(result.messages);
    } else if code == ResponseCode::PULL_OFFSET_MOVED {
        tracing::info!(group = %h.consumer_group, topic = %h.topic, queue_id = h.queue_id, requested = h.queue_offset,
                       next = next, min = result.min_offset, max = result.max_offset, "pull offset moved");
    }
    Outcome::Respond(resp)
}

/// Which queue a read is for, and from where.
#[derive(Clone, Copy)]
pub(crate) struct QueueRead<'a> {
    pub topic: &'a str,
    pub group: &'a str,
    pub queue_id: i32,
    pub offset: i64,
}

/// What [`read_filtered`] found.
pub(crate) struct Filtered {
    pub result: store::GetResult,
    /// A plugin filter could not decide: `result.next_begin_offset` stops before the
    /// first message it held back.
    pub plugin_paused: bool,
}

/// Reads up to `max_msgs` messages of a queue that pass `filter`: its consume-queue
/// stage (tag codes and plugin pre-filters), its record stage and its plugins. The
/// one read of pulls and pops.
pub(crate) fn read_filtered(
    ctx: &BrokerContext,
    filter: &PreparedFilter,
    at: QueueRead<'_>,
    max_msgs: usize,
    max_bytes: Option<usize>,
) -> Filtered {
    let plugin_rejects = filter.run_prefilters(&ctx.store, (at.topic, at.group), at.queue_id, at.offset, max_msgs);
    let cq_filter =
        |e: &CqEntry| filter.pre_filter(e.tags_code) && plugin_rejects.binary_search(&e.phy_offset).is_err();
    let record_filter = |v: &RecordView<'_>| filter.matches_record(v);
    let mut get = GetRequest::new(at.topic, at.queue_id, at.offset, max_msgs).cq_filter(&cq_filter);
    if filter.needs_record_stage() {
        get = get.record_filter(&record_filter);
    }
    if let Some(max_bytes) = max_bytes {
        get = get.max_bytes(max_bytes);
    }
    let mut result = ctx.store.get_messages(&get);
    let mut plugin_paused = false;
    if result.status == GetStatus::Found && filter.has_plugins() {
        let pass = filter.run_plugins(at.topic, at.group, &result.messages);
        crate::spans::record_plugin_verdicts(plugin_rejects.len(), &pass);
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
    Filtered { result, plugin_paused }
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
    if first && h.sys_flag & pull_flag::COMMIT_OFFSET != 0 && !ctx.role.is_slave() {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use common::subscription::SubscriptionData;
    use common::sysflag::pull as pull_flag;
    use common::topic::TopicConfig;
    use common::{perm, ResponseCode};
    use remoting::header::broker::{GetMaxOffsetRequestHeader, PullMessageRequestHeader};
    use remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode};

    use crate::filter::prepared::PreparedFilter;
    use crate::filter::MessageFilter;

    fn config(dir: &std::path::Path) -> config::BrokerConfig {
        let mut c = config::BrokerConfig {
            bind_address: [127, 0, 0, 1].into(),
            broker_ip1: Some("127.0.0.1".into()),
            listen_port: 0,
            ha_listen_port: 0,
            grpc_server_port: -1,
            ..config::BrokerConfig::default()
        };
        c.store.store_path_root_dir = dir.to_owned();
        c.store.mapped_file_size_commit_log = bytesize::ByteSize::mib(4);
        c.store.disk_space_warning_level_ratio = 1.0;
        c.store.disk_space_clean_forcibly_ratio = 1.0;
        c.store.disk_max_used_space_ratio = 95;
        c
    }

    /// A parked pull re-runs inside its request's task, so a panic there is answered
    /// SYSTEM_ERROR like a first run's, and the connection goes on serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_when_a_parked_pull_is_woken_is_answered_and_the_connection_serves_on() {
        let dir = tempfile::tempdir().unwrap();
        let broker = crate::Broker::start(config(dir.path()), &config::PluginsConfig::default()).await.unwrap();
        let ctx = broker.context().clone();
        ctx.topics.upsert(TopicConfig::new("Woken", 1, perm::READ_WRITE));
        let sub = SubscriptionData::new("Woken".to_owned(), "*", "TAG", 0);
        let mut faulty = PreparedFilter::new(MessageFilter::All);
        faulty.panics_on_rerun = true;
        ctx.filters.insert("WokenGroup", &sub, faulty);

        let client = RemotingClient::new(ClientConfig::default(), None);
        let addr = broker.local_addr().to_string();
        let pull = PullMessageRequestHeader {
            consumer_group: "WokenGroup".into(),
            topic: "Woken".into(),
            queue_id: 0,
            queue_offset: 0,
            max_msg_nums: 32,
            sys_flag: pull_flag::SUSPEND | pull_flag::SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout_millis: 15_000,
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
            broker_name: None,
        };
        let parked = {
            let (client, addr) = (client.clone(), addr.clone());
            let cmd = RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &pull);
            tokio::spawn(async move { client.invoke(&addr, cmd, Duration::from_secs(30)).await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ctx.holds.parked() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the pull never parked");
            tokio::task::yield_now().await;
        }
        let put = ctx.store.put(store::PutMessage::new("Woken", 0, Bytes::from_static(b"wake"))).await;
        assert!(put.status.is_stored());

        let answer = parked.await.unwrap().expect("the parked pull is answered");
        assert_eq!(answer.response_code(), ResponseCode::SYSTEM_ERROR, "{:?}", answer.remark);
        let max = RemotingCommand::request_with(
            RequestCode::GET_MAX_OFFSET,
            &GetMaxOffsetRequestHeader { topic: "Woken".into(), queue_id: 0, committed: None },
        );
        let served = client.invoke(&addr, max, Duration::from_secs(10)).await.expect("the connection still serves");
        assert_eq!(served.response_code(), ResponseCode::SUCCESS);
        broker.shutdown(Duration::from_secs(5)).await;
    }
}
