//! Errors raised while decoding RocketMQ binary structures.

/// Why a byte sequence is not a valid RocketMQ structure.
///
/// Decoders never panic on input; every malformed case ends up here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("need {needed} bytes but only {available} are available")]
    Truncated { needed: usize, available: usize },
    #[error("unknown magic code {0:#010x}")]
    BadMagic(u32),
    #[error("record size {size} is invalid (minimum {min}, available {available})")]
    BadSize { size: i64, min: usize, available: usize },
    #[error("body crc mismatch: stored {stored}, computed {computed}")]
    BodyCrc { stored: u32, computed: u32 },
    #[error("field `{field}` has invalid length {len}")]
    BadLength { field: &'static str, len: i64 },
    #[error("field `{0}` is not valid UTF-8")]
    Utf8(&'static str),
    #[error("invalid message id `{0}`")]
    BadMessageId(String),
}

pub type Result<T, E = DecodeError> = std::result::Result<T, E>;
