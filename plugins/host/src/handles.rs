// PERF-CRITICAL PATH: filter and selector calls run once per pull / send batch.
//! One handle per plugin kind.
//!
//! Each handle implements the kind's `plugin_api` trait (the raw call: errors are
//! returned, counted and fed to the circuit breaker) and adds a `*_with_policy` method
//! that applies the plugin's [`FailurePolicy`] so callers always get an answer they can
//! act on. Inputs longer than `limits.max_batch` are split into several calls.

use std::sync::Arc;

use plugin_api::builtin::{allocate_averagely, HashOrRoundRobin};
use plugin_api::frame::{self, Call, MessageFrame};
use plugin_api::{
    AllocateInput, AllocationStrategy, CheckContext, CheckDecision, CqUnit, FailurePolicy, FilterContext,
    MessageFields, MessageFilter, MessageView, PluginError, QueueSelector, SelectContext, TxnCheckHandler, Verdict,
    NO_QUEUE,
};

use crate::registry::{cannot_encode, Slot};
use crate::stats::StatsSnapshot;

macro_rules! common_methods {
    () => {
        /// The plugin's registry name.
        pub fn name(&self) -> &str {
            self.slot.name()
        }

        /// The effective failure policy.
        pub fn policy(&self) -> FailurePolicy {
            self.slot.policy
        }

        /// A copy of the plugin's counters.
        pub fn stats(&self) -> StatsSnapshot {
            self.slot.stats.snapshot()
        }

        /// The full status (manifest, breaker, last errors, counters).
        pub fn status(&self) -> crate::PluginStatus {
            self.slot.status()
        }
    };
}

fn max_batch(slot: &Slot) -> usize {
    slot.limits.max_batch.max(1) as usize
}

// ------------------------------------------------------------------------------ filter

/// A filter plugin.
#[derive(Clone)]
pub struct FilterPlugin {
    slot: Arc<Slot>,
}

/// What [`FilterPlugin::filter_with_policy`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterReport {
    /// Deliver (according to the verdicts) only messages `0..deliverable`; the rest must
    /// be offered again later (policy `pause`). Equal to the batch length unless paused.
    pub deliverable: usize,
    /// The error that made the policy step in, if any.
    pub error: Option<PluginError>,
    /// How many messages were decided by the policy instead of the plugin.
    pub fallbacks: usize,
}

impl FilterPlugin {
    pub(crate) fn new(slot: Arc<Slot>) -> FilterPlugin {
        FilterPlugin { slot }
    }

    common_methods!();

    /// The message fields the serving version's frames carry: a caller building views
    /// for it can leave the others empty (see [`filter_views_with_policy`](Self::filter_views_with_policy)).
    pub fn message_fields(&self) -> MessageFields {
        self.slot.current.load().manifest.message_fields()
    }

    fn call_filter(
        &self,
        ctx: &FilterContext<'_>,
        msgs: &[MessageView<'_>],
        carried: MessageFields,
        out: &mut [Verdict],
    ) -> Result<(), PluginError> {
        self.slot.run_messages(
            msgs.len(),
            |fields| {
                if !carried.contains(fields) {
                    // Views built for a version that read less, and a reload in between.
                    return Err(PluginError::unavailable(format!(
                        "the messages carry {carried}; the plugin now reads {fields}"
                    )));
                }
                let frame = MessageFrame::filter(ctx, msgs, fields).map_err(cannot_encode)?;
                Ok((frame, frame::output_len(Call::Filter, msgs.len(), 0)))
            },
            |bytes| frame::read_verdicts(bytes, out),
        )
    }

    fn call_prefilter(
        &self,
        ctx: &FilterContext<'_>,
        units: &[CqUnit],
        out: &mut [Verdict],
    ) -> Result<(), PluginError> {
        self.slot.run(
            units.len(),
            |buf, _| {
                frame::encode_prefilter(buf, ctx, units)?;
                Ok(frame::output_len(Call::Prefilter, units.len(), 0))
            },
            |bytes| frame::read_verdicts(bytes, out),
        )
    }

    /// Filters `msgs` and applies the failure policy to whatever the plugin could not
    /// decide. After the call, `out[..report.deliverable]` holds only `Accept`/`Reject`.
    ///
    /// # Panics
    /// If `out.len() != msgs.len()`.
    pub fn filter_with_policy(
        &self,
        ctx: &FilterContext<'_>,
        msgs: &[MessageView<'_>],
        out: &mut [Verdict],
    ) -> FilterReport {
        self.filter_views_with_policy(ctx, msgs, MessageFields::ALL, out)
    }

    /// [`filter_with_policy`](Self::filter_with_policy) over views that fill only the
    /// `carried` fields (the rest empty or zero), built for the plugin's
    /// [`message_fields`](Self::message_fields) — a caller skips extracting what the
    /// plugin does not read. If a reload made the plugin read more in between, the call
    /// fails as `unavailable` and the policy decides, as for any failed call.
    ///
    /// # Panics
    /// If `out.len() != msgs.len()`.
    pub fn filter_views_with_policy(
        &self,
        ctx: &FilterContext<'_>,
        msgs: &[MessageView<'_>],
        carried: MessageFields,
        out: &mut [Verdict],
    ) -> FilterReport {
        assert_eq!(msgs.len(), out.len(), "one verdict slot per message");
        let mut report = FilterReport { deliverable: msgs.len(), error: None, fallbacks: 0 };
        let step = max_batch(&self.slot);
        for (start, chunk) in (0..msgs.len()).step_by(step).zip(msgs.chunks(step)) {
            let slots = &mut out[start..start + chunk.len()];
            if let Err(e) = self.call_filter(ctx, chunk, carried, slots) {
                slots.fill(Verdict::Error);
                report.error.get_or_insert(e);
            }
            for (i, v) in slots.iter_mut().enumerate() {
                if *v != Verdict::Error {
                    continue;
                }
                report.fallbacks += 1;
                match self.slot.policy {
                    FailurePolicy::Deliver => *v = Verdict::Accept,
                    FailurePolicy::Skip => *v = Verdict::Reject,
                    _ => {
                        report.deliverable = start + i;
                        report.fallbacks = msgs.len() - report.deliverable;
                        report.error.get_or_insert_with(|| PluginError::Failed {
                            code: -1,
                            message: format!("plugin could not decide message {}", start + i),
                        });
                        self.slot.stats.record_fallback();
                        return report;
                    }
                }
            }
        }
        if report.fallbacks > 0 {
            self.slot.stats.record_fallback();
        }
        report
    }

    /// Runs the pre-filter if the plugin has one; on any failure every unit is accepted
    /// (a pre-filter may over-match, never under-match). Returns the error, if any.
    ///
    /// # Panics
    /// If `out.len() != units.len()`.
    pub fn prefilter_with_policy(
        &self,
        ctx: &FilterContext<'_>,
        units: &[CqUnit],
        out: &mut [Verdict],
    ) -> Option<PluginError> {
        assert_eq!(units.len(), out.len(), "one verdict slot per unit");
        match MessageFilter::prefilter(self, ctx, units, out) {
            Ok(()) => {
                // An undecided unit is a match.
                out.iter_mut().filter(|v| **v == Verdict::Error).for_each(|v| *v = Verdict::Accept);
                None
            }
            Err(e) => {
                out.fill(Verdict::Accept);
                self.slot.stats.record_fallback();
                Some(e)
            }
        }
    }
}

impl MessageFilter for FilterPlugin {
    fn has_prefilter(&self) -> bool {
        self.slot.manifest_flags() & plugin_api::manifest::FLAG_HAS_PREFILTER != 0
    }

    fn prefilter(&self, ctx: &FilterContext<'_>, units: &[CqUnit], out: &mut [Verdict]) -> Result<(), PluginError> {
        if !self.has_prefilter() {
            out.fill(Verdict::Accept);
            return Ok(());
        }
        let step = max_batch(&self.slot);
        for (u, o) in units.chunks(step).zip(out.chunks_mut(step)) {
            self.call_prefilter(ctx, u, o)?;
        }
        Ok(())
    }

    fn filter(
        &self,
        ctx: &FilterContext<'_>,
        msgs: &[MessageView<'_>],
        out: &mut [Verdict],
    ) -> Result<(), PluginError> {
        let step = max_batch(&self.slot);
        for (m, o) in msgs.chunks(step).zip(out.chunks_mut(step)) {
            self.call_filter(ctx, m, MessageFields::ALL, o)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------- selector

/// A queue-selector plugin.
#[derive(Clone)]
pub struct QueueSelectorPlugin {
    slot: Arc<Slot>,
    builtin: Arc<HashOrRoundRobin>,
}

/// What [`QueueSelectorPlugin::select_with_policy`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectReport {
    /// The error that made the policy step in, if any.
    pub error: Option<PluginError>,
    /// How many messages were routed by the built-in selector.
    pub fallbacks: usize,
}

impl QueueSelectorPlugin {
    pub(crate) fn new(slot: Arc<Slot>) -> QueueSelectorPlugin {
        QueueSelectorPlugin { slot, builtin: Arc::new(HashOrRoundRobin::default()) }
    }

    common_methods!();

    /// Selects a queue for each message; with policy `builtin`, messages the plugin could
    /// not route go through [`HashOrRoundRobin`].
    ///
    /// # Errors
    /// Only with policy `reject`: the plugin's error.
    ///
    /// # Panics
    /// If `out.len() != msgs.len()`.
    pub fn select_with_policy(
        &self,
        ctx: &SelectContext<'_>,
        msgs: &[MessageView<'_>],
        out: &mut [u32],
    ) -> Result<SelectReport, PluginError> {
        assert_eq!(msgs.len(), out.len(), "one queue slot per message");
        let mut report = SelectReport { error: None, fallbacks: 0 };
        if let Err(e) = QueueSelector::select(self, ctx, msgs, out) {
            out.fill(NO_QUEUE);
            report.error = Some(e);
        }
        for (m, q) in msgs.iter().zip(out.iter_mut()) {
            if *q != NO_QUEUE {
                continue;
            }
            if self.slot.policy == FailurePolicy::Reject {
                return Err(report
                    .error
                    .unwrap_or_else(|| PluginError::Failed { code: -1, message: "plugin chose no queue".into() }));
            }
            *q = self.builtin.select_one(ctx.queues, m);
            report.fallbacks += 1;
        }
        if report.fallbacks > 0 {
            self.slot.stats.record_fallback();
        }
        Ok(report)
    }

    /// Selects the queue of one message (a single send).
    ///
    /// # Errors
    /// Only with policy `reject`.
    pub fn select_one(&self, ctx: &SelectContext<'_>, msg: &MessageView<'_>) -> Result<u32, PluginError> {
        let mut out = [NO_QUEUE];
        self.select_with_policy(ctx, std::slice::from_ref(msg), &mut out)?;
        Ok(out[0])
    }
}

impl QueueSelector for QueueSelectorPlugin {
    fn select(&self, ctx: &SelectContext<'_>, msgs: &[MessageView<'_>], out: &mut [u32]) -> Result<(), PluginError> {
        let step = max_batch(&self.slot);
        for (m, o) in msgs.chunks(step).zip(out.chunks_mut(step)) {
            self.slot.run_messages(
                m.len(),
                |fields| {
                    let frame = MessageFrame::select(ctx, m, fields).map_err(cannot_encode)?;
                    Ok((frame, frame::output_len(Call::Select, m.len(), 0)))
                },
                |bytes| frame::read_queue_indices(bytes, ctx.queues.len(), o),
            )?;
        }
        Ok(())
    }
}

// -------------------------------------------------------------------------- allocation

/// An allocation-strategy plugin.
#[derive(Clone)]
pub struct AllocationPlugin {
    slot: Arc<Slot>,
}

/// What [`AllocationPlugin::allocate_with_policy`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateReport {
    /// The error that made the policy step in, if any.
    pub error: Option<PluginError>,
    /// Whether the assignment came from the policy (built-in or previous).
    pub fallback: bool,
}

impl AllocationPlugin {
    pub(crate) fn new(slot: Arc<Slot>) -> AllocationPlugin {
        AllocationPlugin { slot }
    }

    common_methods!();

    /// Allocates; on failure uses `AllocateMessageQueueAveragely` (policy `builtin`) or
    /// `previous` (policy `keep_previous`, falling back to averagely without one).
    pub fn allocate_with_policy(
        &self,
        input: &AllocateInput<'_>,
        previous: Option<&[u32]>,
        out: &mut Vec<u32>,
    ) -> AllocateReport {
        match AllocationStrategy::allocate(self, input, out) {
            Ok(()) => AllocateReport { error: None, fallback: false },
            Err(e) => {
                self.slot.stats.record_fallback();
                match (self.slot.policy, previous) {
                    (FailurePolicy::KeepPrevious, Some(prev)) => {
                        out.clear();
                        out.extend_from_slice(prev);
                    }
                    _ => allocate_averagely(input, out),
                }
                AllocateReport { error: Some(e), fallback: true }
            }
        }
    }
}

impl AllocationStrategy for AllocationPlugin {
    fn allocate(&self, input: &AllocateInput<'_>, out: &mut Vec<u32>) -> Result<(), PluginError> {
        self.slot.run(
            input.queues.len(),
            |buf, _| {
                frame::encode_allocate(buf, input)?;
                Ok(frame::output_len(Call::Allocate, 0, input.queues.len()))
            },
            |bytes| frame::read_assignment(bytes, input.queues.len(), out),
        )
    }
}

// --------------------------------------------------------------------------- txn check

/// A transaction check-back plugin.
#[derive(Clone)]
pub struct TxnCheckPlugin {
    slot: Arc<Slot>,
}

/// What [`TxnCheckPlugin::check_with_policy`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The error that made the policy step in, if any.
    pub error: Option<PluginError>,
    /// How many half messages fell back to asking the producer.
    pub fallbacks: usize,
}

impl TxnCheckPlugin {
    pub(crate) fn new(slot: Arc<Slot>) -> TxnCheckPlugin {
        TxnCheckPlugin { slot }
    }

    common_methods!();

    /// Decides for each half message; undecided ones get
    /// [`CheckDecision::AskProducer`].
    ///
    /// # Panics
    /// If `out.len() != msgs.len()`.
    pub fn check_with_policy(
        &self,
        ctx: &CheckContext,
        msgs: &[MessageView<'_>],
        out: &mut [CheckDecision],
    ) -> CheckReport {
        assert_eq!(msgs.len(), out.len(), "one decision slot per message");
        let mut report = CheckReport { error: None, fallbacks: 0 };
        if let Err(e) = TxnCheckHandler::check(self, ctx, msgs, out) {
            out.fill(CheckDecision::Error);
            report.error = Some(e);
        }
        for d in out.iter_mut().filter(|d| **d == CheckDecision::Error) {
            *d = CheckDecision::AskProducer;
            report.fallbacks += 1;
        }
        if report.fallbacks > 0 {
            self.slot.stats.record_fallback();
        }
        report
    }
}

impl TxnCheckHandler for TxnCheckPlugin {
    fn check(
        &self,
        ctx: &CheckContext,
        msgs: &[MessageView<'_>],
        out: &mut [CheckDecision],
    ) -> Result<(), PluginError> {
        let step = max_batch(&self.slot);
        for (m, o) in msgs.chunks(step).zip(out.chunks_mut(step)) {
            self.slot.run_messages(
                m.len(),
                |fields| {
                    let frame = MessageFrame::check(ctx, m, fields).map_err(cannot_encode)?;
                    Ok((frame, frame::output_len(Call::Check, m.len(), 0)))
                },
                |bytes| frame::read_decisions(bytes, o),
            )?;
        }
        Ok(())
    }
}
