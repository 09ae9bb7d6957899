//! Message body compression as RocketMQ marks it in the message sys flag.
//!
//! Bit 0 of the sys flag (`COMPRESSED`) says the body is compressed; bits 8–10 name
//! the codec (RocketMQ's `MessageSysFlag.COMPRESSION_*_TYPE` and `CompressionType`):
//!
//! ```text
//!  bit  10 9 8 ... 0
//!       └─┬──┘     └─ COMPRESSED
//!         type: 0 = ZLIB (clients before RocketMQ 5 set no type), 1 = LZ4,
//!               2 = ZSTD, 3 = ZLIB, 4..7 undefined
//! ```
//!
//! The framings are those of the Java client's codecs: ZLIB is a zlib stream
//! (`java.util.zip.DeflaterOutputStream`), LZ4 is the LZ4 frame format (lz4-java's
//! `LZ4FrameOutputStream`), ZSTD is a zstd frame (zstd-jni's `ZstdOutputStream`).
//!
//! This module owns the codec choice and the decoding. A body that does not decode
//! is an [`Error`], never the compressed bytes passed off as the body: what a consumer
//! does with such a message is the consumer's business (see [`crate::consumer::pull_api`]).
//! The producer writes ZLIB only, as the Java client does by default.

use std::io::{Read, Write};

use bytes::Bytes;

use common::sysflag::message::{COMPRESSED, COMPRESSION_TYPE_MASK};

use crate::error::{Error, Result};

/// A compression codec RocketMQ defines for message bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Zlib,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec of a body with `sys_flag`: `None` when the body is not compressed.
    ///
    /// # Errors
    /// [`Error::UnknownCompression`]: the type bits hold a value RocketMQ does not
    /// define (Java's `CompressionType.findByValue` throws on it too).
    pub fn from_sys_flag(sys_flag: i32) -> Result<Option<Compression>> {
        if sys_flag & COMPRESSED == 0 {
            return Ok(None);
        }
        match (sys_flag & COMPRESSION_TYPE_MASK) >> 8 {
            0 | 3 => Ok(Some(Compression::Zlib)),
            1 => Ok(Some(Compression::Lz4)),
            2 => Ok(Some(Compression::Zstd)),
            value => Err(Error::UnknownCompression { sys_flag, value }),
        }
    }

    /// RocketMQ's value of the codec in the type bits (`CompressionType.getValue`).
    pub const fn value(self) -> i32 {
        match self {
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
            Compression::Zlib => 3,
        }
    }

    /// The sys flag bits of a body compressed with this codec: `COMPRESSED` plus the
    /// type (`CompressionType.getCompressionFlag`).
    pub const fn sys_flag_bits(self) -> i32 {
        COMPRESSED | (self.value() << 8)
    }

    /// Decompresses a whole body.
    ///
    /// # Errors
    /// [`Error::Decompress`]: the bytes are not a complete, valid stream of this codec.
    pub fn decompress(self, body: &[u8]) -> Result<Vec<u8>> {
        if body.is_empty() {
            // Every codec writes a header, so an empty body is no stream at all (the
            // LZ4 frame decoder would read it as zero frames, an empty body).
            let source = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "empty compressed body");
            return Err(Error::Decompress { compression: self, source });
        }
        let mut out = Vec::with_capacity(body.len().saturating_mul(4));
        let read = match self {
            Compression::Zlib => flate2::read::ZlibDecoder::new(body).read_to_end(&mut out),
            Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(body).read_to_end(&mut out),
            // ruzstd rather than the `zstd` crate: only consumers meet ZSTD bodies
            // (the producer writes ZLIB), so decoding is all that is needed, and the
            // pure-Rust decoder builds in seconds without a C toolchain, where
            // zstd-sys compiles libzstd's C sources into every build. It decodes
            // roughly half as fast as libzstd; message bodies are at most a few MiB,
            // so that is far below a pull's network time.
            Compression::Zstd => match ruzstd::decoding::StreamingDecoder::new(body) {
                Ok(mut d) => d.read_to_end(&mut out),
                Err(e) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            },
        };
        read.map_err(|source| Error::Decompress { compression: self, source })?;
        Ok(out)
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::Zlib => "zlib",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

/// The body a producer sent, given the stored body and its sys flag: the body itself
/// when it is not compressed.
///
/// # Errors
/// [`Error::UnknownCompression`] or [`Error::Decompress`]: the body cannot be
/// recovered; the caller decides what happens to the message.
pub fn decompress_body(sys_flag: i32, body: &Bytes) -> Result<Bytes> {
    match Compression::from_sys_flag(sys_flag)? {
        None => Ok(body.clone()),
        Some(c) => c.decompress(body).map(Bytes::from),
    }
}

/// `sys_flag` without the compression bits, for a body that was decompressed.
pub const fn clear_compression(sys_flag: i32) -> i32 {
    sys_flag & !(COMPRESSED | COMPRESSION_TYPE_MASK)
}

/// ZLIB at `level`, as the Java producer compresses (`compressMsgBodyOverHowmuch`,
/// level 5); `None` if the encoder fails, in which case the body goes uncompressed.
pub(crate) fn zlib_compress(body: &[u8], level: u32) -> Option<Bytes> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::with_capacity(body.len() / 2), flate2::Compression::new(level));
    z.write_all(body).ok()?;
    z.finish().ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies compressed by independent implementations (see
    /// `tests/fixtures/compression/README.md`).
    fn fixture(name: &str) -> Bytes {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compression").join(name);
        Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    /// (file, the sys flag RocketMQ's Java client stores with it)
    const FIXTURES: [(&str, i32); 3] = [("body.zlib", 0x301), ("body.lz4", 0x101), ("body.zst", 0x201)];

    #[test]
    fn flags_match_rocketmq() {
        // MessageSysFlag: COMPRESSION_LZ4_TYPE 0x100, ZSTD 0x200, ZLIB 0x300.
        assert_eq!(Compression::Lz4.sys_flag_bits(), 0x101);
        assert_eq!(Compression::Zstd.sys_flag_bits(), 0x201);
        assert_eq!(Compression::Zlib.sys_flag_bits(), 0x301);
        for c in [Compression::Zlib, Compression::Lz4, Compression::Zstd] {
            assert_eq!(Compression::from_sys_flag(c.sys_flag_bits() | 0x10).unwrap(), Some(c));
        }
        // Type 0 is ZLIB (clients before 5.x); no COMPRESSED bit means plain, whatever the type.
        assert_eq!(Compression::from_sys_flag(COMPRESSED).unwrap(), Some(Compression::Zlib));
        assert_eq!(Compression::from_sys_flag(0x300).unwrap(), None);
        for bad in 4..8 {
            let err = Compression::from_sys_flag(COMPRESSED | (bad << 8)).unwrap_err();
            assert!(matches!(err, Error::UnknownCompression { value, .. } if value == bad), "{err}");
        }
        assert_eq!(clear_compression(0x301 | 0x10), 0x10);
    }

    #[test]
    fn decodes_bodies_of_independent_compressors() {
        let plain = fixture("body.txt");
        for (name, flag) in FIXTURES {
            let compressed = fixture(name);
            assert!(compressed.len() < plain.len(), "{name} is not compressed");
            let body = decompress_body(flag, &compressed).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(body, plain, "{name}");
        }
        assert_eq!(decompress_body(0, &plain).unwrap(), plain);
    }

    #[test]
    fn corrupt_bodies_are_errors() {
        for (name, flag) in FIXTURES {
            let compressed = fixture(name);
            let truncated = compressed.slice(..compressed.len() / 2);
            let mut flipped = compressed.to_vec();
            let mid = flipped.len() / 2;
            flipped[mid..].iter_mut().for_each(|b| *b = !*b);
            for (what, body) in [("truncated", truncated), ("flipped", Bytes::from(flipped)), ("empty", Bytes::new())] {
                match decompress_body(flag, &body) {
                    Err(Error::Decompress { .. }) => {}
                    other => panic!("{what} {name}: expected a decompress error, got {other:?}"),
                }
            }
        }
        // The plain text is no valid stream of any codec.
        let plain = fixture("body.txt");
        for (name, flag) in FIXTURES {
            assert!(decompress_body(flag, &plain).is_err(), "plain text read as {name}");
        }
    }

    #[test]
    fn the_producer_codec_round_trips() {
        let plain = fixture("body.txt");
        let z = zlib_compress(&plain, 5).unwrap();
        assert!(z.len() < plain.len());
        assert_eq!(decompress_body(Compression::Zlib.sys_flag_bits(), &z).unwrap(), plain);
    }
}
