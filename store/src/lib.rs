//! FerroMQ's message store: a RocketMQ-compatible commit log with consume queues, a
//! key index, group-commit flushing, crash recovery and retention. It knows nothing
//! of RPC; the broker drives it through [`MessageStore`].
//!
//! ```text
//!  put() ──► AppendQueue ──► store-append ───────► commit log segments (pwrite
//!  (async)   (bounded)       (single writer,        per batch, read through
//!    ▲                        group commit)         mmap) ◄── store-flush (msync)
//!    │                           │ ASYNC: after publishing                 │ SYNC: after
//!    │                           │ a batch (`written`)                     │ each sync
//!    │                           ▼                                         ▼ (`flushed`)
//!    │                     dispatch, on that same thread: consume queues (20-byte
//!    │                     entries), index (hash files), arrival listener
//!    │                           │
//!    └───────────────────────────┘ ASYNC: the writer's reply; SYNC: the batch's signal
//!  get_messages() ──► consume queue ──► Bytes slices of the mapped commit log
//! ```
//!
//! Invariants the broker can rely on:
//! * Records are RocketMQ's exact stored layout ([`common::record`]); what
//!   [`MessageStore::get_messages`] returns can be written to a socket as a pull body.
//! * A put resolves once its records are visible to every read path (consume queue,
//!   index, lookups by offset): a reader that starts after the ack finds the message.
//!   Records are dispatched by the thread that makes them eligible, with no extra
//!   hand-off: the writer with ASYNC_FLUSH, the flusher after each sync with
//!   SYNC_FLUSH, so with SYNC_FLUSH only durable records become visible and the ack
//!   also means durable. Disk syncs never run on a runtime worker.
//! * The arrival listener runs on that dispatching thread (writer or flusher), inside
//!   every put's acknowledgement path: it must be cheap and never block.
//! * Reads only return records that have been made visible (lookups by offset:
//!   records that may be dispatched, i.e. written, or durable with SYNC_FLUSH).
//! * After recovery, consume queues and the index never point past the commit log,
//!   and a torn tail is cut off and reported ([`RecoveryReport`]), never served.
//! * All `unsafe` for memory maps lives in `mapped_file`.

mod ack;
mod checkpoint;
mod commit_log;
mod consume_queue;
mod dispatch;
mod error;
mod flush;
mod index;
mod mapped_file;
mod recovery;
mod retention;
mod settings;
mod store;
mod types;
mod util;
mod writer;

pub use config::{FlushDiskType, StoreConfig};
pub use dispatch::derive_tags_code;
pub use error::{Error, Result};
pub use retention::CleanReport;
pub use settings::{ReplicaAck, StoreOptions, CQ_ENTRY_SIZE};
pub use store::MessageStore;
pub use types::{
    Arrival, ArrivalListener, CqEntry, CqFilter, GetRequest, GetResult, GetStatus, PutMessage, PutResult, PutStatus,
    RecordFilter, RecoveryReport, StoreStats, TruncatedTail,
};
pub use util::local_day_start;
