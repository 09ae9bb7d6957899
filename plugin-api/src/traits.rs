//! The four plugin kinds as Rust traits.
//!
//! These are the caller-facing contracts: the broker and the client call a
//! `dyn MessageFilter` (or another kind) without knowing whether it is a WASM module, a
//! Lua script, a native library or a built-in Rust strategy. `plugin-host`'s handles
//! implement them for loaded plugins and [`builtin`](crate::builtin) implements the
//! defaults the failure policies fall back to.
//!
//! All methods are batch-first: one call per pull, send batch, rebalance or check round,
//! never one per message on the hot path (a WASM call costs ~30 ns, a Lua call ~100 ns).
//! Output slices have exactly one slot per input record.

use crate::error::PluginError;
use crate::types::{
    AllocateInput, CheckContext, CheckDecision, CqUnit, FilterContext, MessageView, SelectContext, Verdict,
};

/// A message filter.
pub trait MessageFilter: Send + Sync {
    /// Whether [`prefilter`](MessageFilter::prefilter) does anything; when false the
    /// caller skips the pre-stage.
    fn has_prefilter(&self) -> bool {
        false
    }

    /// The cheap stage over consume-queue units. It may over-match (return `Accept` for a
    /// message the precise stage rejects) but must never under-match.
    ///
    /// # Errors
    /// A [`PluginError`]; callers treat a failed pre-filter as "all match".
    fn prefilter(&self, ctx: &FilterContext<'_>, units: &[CqUnit], out: &mut [Verdict]) -> Result<(), PluginError> {
        let _ = (ctx, units);
        out.fill(Verdict::Accept);
        Ok(())
    }

    /// The precise stage: one verdict per message.
    ///
    /// # Errors
    /// A [`PluginError`] when the whole call failed.
    fn filter(&self, ctx: &FilterContext<'_>, msgs: &[MessageView<'_>], out: &mut [Verdict])
        -> Result<(), PluginError>;
}

/// A queue selector: one queue index (into `ctx.queues`) per message, or
/// [`NO_QUEUE`](crate::NO_QUEUE).
pub trait QueueSelector: Send + Sync {
    /// Selects a queue for each message.
    ///
    /// # Errors
    /// A [`PluginError`] when the whole call failed.
    fn select(&self, ctx: &SelectContext<'_>, msgs: &[MessageView<'_>], out: &mut [u32]) -> Result<(), PluginError>;
}

/// A rebalance (queue allocation) strategy. Must be deterministic: every member of the
/// group runs it on the same input and the results must partition the queues.
pub trait AllocationStrategy: Send + Sync {
    /// Replaces `out` with the indices (into `input.queues`) of the queues
    /// `input.current_client` owns.
    ///
    /// # Errors
    /// A [`PluginError`] when the call failed or the answer is invalid.
    fn allocate(&self, input: &AllocateInput<'_>, out: &mut Vec<u32>) -> Result<(), PluginError>;
}

/// A transaction check-back handler: decides about half messages before (or instead of)
/// asking the producer.
pub trait TxnCheckHandler: Send + Sync {
    /// One decision per half message.
    ///
    /// # Errors
    /// A [`PluginError`] when the whole call failed.
    fn check(&self, ctx: &CheckContext, msgs: &[MessageView<'_>], out: &mut [CheckDecision])
        -> Result<(), PluginError>;
}

/// A [`MessageFilter`] from a plain Rust closure over one message (for built-in filters,
/// tests and benchmarks).
pub struct FnFilter<F>(pub F);

impl<F> MessageFilter for FnFilter<F>
where
    F: Fn(&FilterContext<'_>, &MessageView<'_>) -> bool + Send + Sync,
{
    fn filter(
        &self,
        ctx: &FilterContext<'_>,
        msgs: &[MessageView<'_>],
        out: &mut [Verdict],
    ) -> Result<(), PluginError> {
        for (m, v) in msgs.iter().zip(out.iter_mut()) {
            *v = Verdict::from_bool((self.0)(ctx, m));
        }
        Ok(())
    }
}
