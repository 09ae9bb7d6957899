//! The message store (commit log, consume queues, index); filled by the store issue.
