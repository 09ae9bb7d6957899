// PERF-CRITICAL PATH: every request and response passes through here.
//! Frame codec.
//!
//! ```text
//! +----------------+------------------------------+--------------+------------+
//! | total_len: i32 | ser_type: u8 | header_len: u24 | header     | body       |
//! +----------------+------------------------------+--------------+------------+
//!   total_len = 4 + header_len + body_len (everything after the length field)
//! ```
//! `ser_type` 0 is a JSON header, 1 RocketMQ's binary header:
//!
//! ```text
//! code i16 | language u8 | version i16 | opaque i32 | flag i32
//! | remark_len i32 + remark | ext_len i32 + (key_len i16 + key + val_len i32 + val)*
//! ```
//! A frame may be at most 16 MiB including its length field, as Java's decoder
//! allows. Decoding follows mini-redis: check that a whole frame is buffered, then
//! parse it; a partial frame is `Ok(None)`. Any malformed frame is an `Err`, and the
//! connection that sent it is closed — the only correct reaction once framing is lost.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Deserialize;
use tokio_util::codec::{Decoder, Encoder};

use crate::command::{Body, ExtFields, LanguageCode, RemotingCommand, SerializeType};
use crate::error::{Error, Result};

/// Largest frame, length field included (`com.rocketmq.remoting.frameMaxLength`).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
const MAX_HEADER_LEN: usize = 0x00FF_FFFF;

/// Decoder and encoder of whole commands, for `tokio_util::codec::Framed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemotingCodec;

impl Decoder for RemotingCodec {
    type Item = RemotingCommand;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>> {
        if src.len() < 4 {
            return Ok(None);
        }
        let total = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if total < 4 {
            return Err(Error::Malformed(format!("frame length {total} is smaller than its header length field")));
        }
        let frame_len = 4 + total as usize;
        if frame_len > MAX_FRAME_LEN {
            return Err(Error::FrameTooLarge(frame_len));
        }
        if src.len() < frame_len {
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        let frame = src.split_to(frame_len).freeze();
        decode_frame(frame.slice(4..)).map(Some)
    }
}

/// Decodes a frame without its length field: `ser_type|header_len`, header, body.
///
/// # Errors
/// Inconsistent lengths, an unknown serialize type, or a header that does not parse.
pub fn decode_frame(frame: Bytes) -> Result<RemotingCommand> {
    if frame.len() < 4 {
        return Err(Error::Malformed("frame too short for its header length".into()));
    }
    let ser_byte = frame[0];
    let header_len = (usize::from(frame[1]) << 16) | (usize::from(frame[2]) << 8) | usize::from(frame[3]);
    if header_len > frame.len() - 4 {
        return Err(Error::Malformed(format!("header length {header_len} exceeds the frame ({} bytes)", frame.len())));
    }
    let header = &frame[4..4 + header_len];
    let ser = SerializeType::from_byte(ser_byte).ok_or(Error::UnknownSerializeType(ser_byte))?;
    let mut cmd = match ser {
        SerializeType::Json => decode_json_header(header)?,
        SerializeType::RocketMq => decode_binary_header(header)?,
    };
    cmd.serialize_type = ser;
    cmd.body = Body::from(frame.slice(4 + header_len..));
    Ok(cmd)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JsonHeaderIn {
    #[serde(deserialize_with = "common::lenient::i32")]
    code: i32,
    #[serde(deserialize_with = "common::lenient::string")]
    language: String,
    #[serde(deserialize_with = "common::lenient::i32")]
    version: i32,
    #[serde(deserialize_with = "common::lenient::i32")]
    opaque: i32,
    #[serde(deserialize_with = "common::lenient::i32")]
    flag: i32,
    remark: Option<String>,
    #[serde(rename = "extFields")]
    ext_fields: Option<ExtFields>,
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand> {
    match crate::json_header::decode(header) {
        Some(cmd) => Ok(cmd),
        None => decode_json_header_general(header),
    }
}

/// Any JSON header serde accepts: numbers as strings, escapes, unknown keys.
pub(crate) fn decode_json_header_general(header: &[u8]) -> Result<RemotingCommand> {
    let h: JsonHeaderIn = serde_json::from_slice(header).map_err(|e| Error::Malformed(format!("json header: {e}")))?;
    Ok(RemotingCommand {
        code: h.code,
        language: LanguageCode::from_name_lossy(&h.language),
        version: h.version,
        opaque: h.opaque,
        flag: h.flag,
        remark: h.remark.filter(|r| !r.is_empty()),
        ext_fields: h.ext_fields.unwrap_or_default(),
        serialize_type: SerializeType::Json,
        body: Body::Empty,
    })
}

fn decode_binary_header(mut h: &[u8]) -> Result<RemotingCommand> {
    fn need(h: &[u8], n: usize, what: &str) -> Result<()> {
        if h.remaining() < n {
            return Err(Error::Malformed(format!("binary header truncated in {what}")));
        }
        Ok(())
    }
    fn utf8<'a>(h: &mut &'a [u8], len: usize, what: &str) -> Result<&'a str> {
        need(h, len, what)?;
        let s = std::str::from_utf8(&h[..len]).map_err(|_| Error::Malformed(format!("{what} is not UTF-8")))?;
        h.advance(len);
        Ok(s)
    }
    need(h, 21, "fixed part")?;
    let code = i32::from(h.get_i16());
    let language = LanguageCode::from_byte(h.get_u8());
    let version = i32::from(h.get_i16());
    let opaque = h.get_i32();
    let flag = h.get_i32();
    let remark_len = h.get_i32();
    if remark_len < 0 {
        return Err(Error::Malformed("negative remark length".into()));
    }
    let remark = utf8(&mut h, remark_len as usize, "remark")?;
    need(h, 4, "ext length")?;
    let ext_len = h.get_i32();
    if ext_len < 0 || ext_len as usize > h.remaining() {
        return Err(Error::Malformed(format!("ext fields length {ext_len} is invalid")));
    }
    let mut ext = &h[..ext_len as usize];
    let mut ext_fields = ExtFields::with_capacity(16);
    while ext.has_remaining() {
        need(ext, 2, "ext key length")?;
        let klen = ext.get_i16();
        if klen < 0 {
            return Err(Error::Malformed("negative ext key length".into()));
        }
        let key = utf8(&mut ext, klen as usize, "ext key")?;
        need(ext, 4, "ext value length")?;
        let vlen = ext.get_i32();
        if vlen < 0 {
            return Err(Error::Malformed("negative ext value length".into()));
        }
        let value = utf8(&mut ext, vlen as usize, "ext value")?;
        // Java turns zero-length strings into null: an empty value is an absent key.
        if !key.is_empty() && !value.is_empty() {
            ext_fields.insert(key, value);
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark: (!remark.is_empty()).then(|| remark.to_owned()),
        ext_fields,
        serialize_type: SerializeType::RocketMq,
        body: Body::Empty,
    })
}

/// The JSON header's shape, as serde writes it; [`write_json_header`] writes the
/// same bytes by hand, and a test holds the two equal.
#[cfg(test)]
#[derive(serde::Serialize)]
struct JsonHeaderOut<'a> {
    code: i32,
    #[serde(rename = "extFields", skip_serializing_if = "ExtFields::is_empty")]
    ext_fields: &'a ExtFields,
    flag: i32,
    language: &'static str,
    opaque: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: Option<&'a str>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type: &'static str,
    version: i32,
}

/// Writes `cmd`'s JSON header: the fields in the order and shape Java's fastjson and
/// serde write them (`extFields` left out when empty, `remark` when absent).
///
/// By hand rather than through serde: every response of every request goes through
/// here, and serde's per-field calls and per-character escaping cost ~4 % of the
/// broker's CPU per send; this writes runs of unescaped bytes at once.
fn write_json_header(cmd: &RemotingCommand, dst: &mut BytesMut) {
    let mut int = itoa::Buffer::new();
    dst.put_slice(b"{\"code\":");
    dst.put_slice(int.format(cmd.code).as_bytes());
    if !cmd.ext_fields.is_empty() {
        dst.put_slice(b",\"extFields\":{");
        for (i, (k, v)) in cmd.ext_fields.iter().enumerate() {
            if i > 0 {
                dst.put_u8(b',');
            }
            json_string(dst, k);
            dst.put_u8(b':');
            json_string(dst, v);
        }
        dst.put_u8(b'}');
    }
    dst.put_slice(b",\"flag\":");
    dst.put_slice(int.format(cmd.flag).as_bytes());
    dst.put_slice(b",\"language\":");
    json_string(dst, cmd.language.as_str());
    dst.put_slice(b",\"opaque\":");
    dst.put_slice(int.format(cmd.opaque).as_bytes());
    if let Some(remark) = &cmd.remark {
        dst.put_slice(b",\"remark\":");
        json_string(dst, remark);
    }
    dst.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    dst.put_slice(int.format(cmd.version).as_bytes());
    dst.put_u8(b'}');
}

/// A JSON string with JSON's mandatory escapes only, as serde_json writes it (`\"`,
/// `\\`, the short forms of control characters, `\u00xx` for the others).
fn json_string(dst: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    dst.put_u8(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        dst.put_slice(&bytes[start..i]);
        match b {
            b'"' => dst.put_slice(b"\\\""),
            b'\\' => dst.put_slice(b"\\\\"),
            b'\n' => dst.put_slice(b"\\n"),
            b'\r' => dst.put_slice(b"\\r"),
            b'\t' => dst.put_slice(b"\\t"),
            0x08 => dst.put_slice(b"\\b"),
            0x0c => dst.put_slice(b"\\f"),
            _ => {
                dst.put_slice(b"\\u00");
                dst.put_u8(HEX[usize::from(b >> 4)]);
                dst.put_u8(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    dst.put_slice(&bytes[start..]);
    dst.put_u8(b'"');
}

/// Encodes the header of `cmd` in its serialize type.
///
/// # Errors
/// The header is larger than the 24-bit length field allows.
pub fn encode_header(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<()> {
    let start = dst.len();
    match cmd.serialize_type {
        SerializeType::Json => write_json_header(cmd, dst),
        SerializeType::RocketMq => {
            dst.put_i16(cmd.code as i16);
            dst.put_u8(cmd.language.to_byte());
            dst.put_i16(cmd.version as i16);
            dst.put_i32(cmd.opaque);
            dst.put_i32(cmd.flag);
            match cmd.remark.as_deref() {
                Some(r) if !r.is_empty() => {
                    dst.put_i32(r.len() as i32);
                    dst.put_slice(r.as_bytes());
                }
                _ => dst.put_i32(0),
            }
            let len_at = dst.len();
            dst.put_i32(0);
            for (k, v) in cmd.ext_fields.iter() {
                dst.put_i16(k.len() as i16);
                dst.put_slice(k.as_bytes());
                dst.put_i32(v.len() as i32);
                dst.put_slice(v.as_bytes());
            }
            let ext_len = (dst.len() - len_at - 4) as i32;
            dst[len_at..len_at + 4].copy_from_slice(&ext_len.to_be_bytes());
        }
    }
    let header_len = dst.len() - start;
    if header_len > MAX_HEADER_LEN {
        return Err(Error::Malformed(format!("header of {header_len} bytes does not fit 24 bits")));
    }
    Ok(())
}

/// Writes everything of a frame except the body: length, serialize type, header
/// length and header. The body follows as its own slices (vectored write).
///
/// # Errors
/// The frame would exceed [`MAX_FRAME_LEN`].
pub fn encode_prefix(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<()> {
    let at = dst.len();
    dst.put_u64(0); // total_len + ser_type/header_len, patched below
    encode_header(cmd, dst)?;
    let header_len = dst.len() - at - 8;
    let body_len = cmd.body.len();
    let frame_len = 8 + header_len + body_len;
    if frame_len > MAX_FRAME_LEN {
        dst.truncate(at);
        return Err(Error::FrameTooLarge(frame_len));
    }
    let total = (4 + header_len + body_len) as i32;
    let mark = (u32::from(cmd.serialize_type.to_byte()) << 24) | header_len as u32;
    dst[at..at + 4].copy_from_slice(&total.to_be_bytes());
    dst[at + 4..at + 8].copy_from_slice(&mark.to_be_bytes());
    Ok(())
}

impl Encoder<RemotingCommand> for RemotingCodec {
    type Error = Error;

    fn encode(&mut self, cmd: RemotingCommand, dst: &mut BytesMut) -> Result<()> {
        encode_prefix(&cmd, dst)?;
        for part in cmd.body.parts() {
            dst.extend_from_slice(part);
        }
        Ok(())
    }
}

/// Encodes a whole command into one buffer (tests, fuzzing, benches).
///
/// # Errors
/// As [`encode_prefix`].
pub fn encode_to_bytes(cmd: &RemotingCommand) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256 + cmd.body.len());
    RemotingCodec.encode(cmd.clone(), &mut buf)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::RequestCode;
    use proptest::prelude::*;

    fn round_trip(cmd: &RemotingCommand) -> RemotingCommand {
        let bytes = encode_to_bytes(cmd).unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let out = RemotingCodec.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn partial_frames_are_incomplete_not_errors() {
        let cmd = RemotingCommand::request(RequestCode::HEART_BEAT).with_body(b"{}".to_vec());
        let bytes = encode_to_bytes(&cmd).unwrap();
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert!(RemotingCodec.decode(&mut buf).unwrap().is_none(), "cut {cut}");
        }
    }

    #[test]
    fn oversized_frames_are_rejected_before_buffering() {
        let mut buf = BytesMut::new();
        buf.put_i32(MAX_FRAME_LEN as i32);
        assert!(matches!(RemotingCodec.decode(&mut buf), Err(Error::FrameTooLarge(_))));
        let mut buf = BytesMut::new();
        buf.put_i32(2);
        assert!(matches!(RemotingCodec.decode(&mut buf), Err(Error::Malformed(_))));
    }

    #[test]
    fn json_header_is_what_strict_clients_require() {
        let mut cmd = RemotingCommand::success();
        cmd.opaque = 17;
        cmd.ext_fields.insert("queueId", "2");
        let bytes = encode_to_bytes(&cmd).unwrap();
        let header_len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) & 0xFF_FFFF;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len as usize]).unwrap();
        for key in ["code", "language", "version", "opaque", "flag", "serializeTypeCurrentRPC"] {
            assert!(header.get(key).is_some(), "missing {key}: {header}");
        }
        assert_eq!(header["extFields"]["queueId"], "2");
        assert_eq!(header["flag"], 1);
    }

    #[test]
    fn cpp_style_header_with_numbers_is_accepted() {
        let header = br#"{"code":310,"language":"CPP","version":333,"opaque":5,"flag":0,"remark":"",
            "extFields":{"a":"PG","d":4,"e":0,"k":false,"AccessKey":"","x":null}}"#;
        let mut frame = BytesMut::new();
        frame.put_i32((4 + header.len()) as i32);
        frame.put_u32(header.len() as u32);
        frame.put_slice(header);
        let cmd = RemotingCodec.decode(&mut frame).unwrap().unwrap();
        assert_eq!(cmd.language, LanguageCode::Cpp);
        assert_eq!(cmd.ext_fields.get("d"), Some("4"));
        assert_eq!(cmd.ext_fields.get("k"), Some("false"));
        assert_eq!(cmd.ext_fields.get("x"), None);
        assert_eq!(cmd.remark, None);
    }

    #[test]
    fn unknown_language_maps_to_other() {
        let header = br#"{"code":1,"language":"COBOL","opaque":1}"#;
        let mut frame = BytesMut::new();
        frame.put_i32((4 + header.len()) as i32);
        frame.put_u32(header.len() as u32);
        frame.put_slice(header);
        let cmd = RemotingCodec.decode(&mut frame).unwrap().unwrap();
        assert_eq!(cmd.language, LanguageCode::Other);
    }

    #[test]
    fn binary_header_layout() {
        let mut cmd = RemotingCommand::request(RequestCode::PULL_MESSAGE);
        cmd.serialize_type = SerializeType::RocketMq;
        cmd.language = LanguageCode::Java;
        cmd.opaque = 9;
        cmd.ext_fields.insert("topic", "T");
        let bytes = encode_to_bytes(&cmd).unwrap();
        assert_eq!(bytes[4], 1, "serialize type byte");
        let h = &bytes[8..];
        assert_eq!(&h[0..2], &11i16.to_be_bytes());
        assert_eq!(h[2], 0);
        assert_eq!(&h[3..5], &409i16.to_be_bytes());
        assert_eq!(&h[5..9], &9i32.to_be_bytes());
        assert_eq!(&h[13..17], &0i32.to_be_bytes(), "null remark");
        assert_eq!(&h[17..21], &(2 + 5 + 4 + 1i32).to_be_bytes());
        assert_eq!(round_trip(&cmd), cmd);
    }

    fn command() -> impl Strategy<Value = RemotingCommand> {
        (
            any::<i16>(),
            0u8..13,
            any::<i16>(),
            any::<i32>(),
            0i32..4,
            proptest::option::of("[a-zA-Z0-9 ]{1,20}"),
            proptest::collection::vec(("[a-zA-Z]{1,8}", "[a-zA-Z0-9\u{1}\u{2} ]{1,16}"), 0..6),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
        )
            .prop_map(|(code, lang, version, opaque, flag, remark, ext, body, binary)| RemotingCommand {
                code: code.into(),
                language: LanguageCode::from_byte(lang),
                version: version.into(),
                opaque,
                flag,
                remark,
                ext_fields: ext.into_iter().collect(),
                serialize_type: if binary { SerializeType::RocketMq } else { SerializeType::Json },
                body: Body::from(body),
            })
    }

    proptest! {
        #[test]
        fn frames_round_trip_in_both_serialize_types(cmd in command()) {
            prop_assert_eq!(round_trip(&cmd), cmd);
        }

        /// Every header our encoder (and so, in shape, a Java client) writes takes the
        /// fast JSON path, and it reads what serde reads.
        /// The hand-written JSON header is byte for byte what serde writes, for any
        /// field values (control characters, quotes, backslashes, any Unicode).
        #[test]
        fn json_header_writer_matches_serde(
            cmd in command(),
            remark in proptest::option::of(any::<String>()),
            fields in proptest::collection::vec((any::<String>(), "[\\x00-\\x7f\"\\\\]{0,12}"), 0..6),
        ) {
            let mut cmd = cmd;
            cmd.remark = remark;
            for (k, v) in &fields {
                cmd.ext_fields.push(k, v);
            }
            let mut ours = BytesMut::new();
            write_json_header(&cmd, &mut ours);
            let serde = serde_json::to_vec(&JsonHeaderOut {
                code: cmd.code,
                ext_fields: &cmd.ext_fields,
                flag: cmd.flag,
                language: cmd.language.as_str(),
                opaque: cmd.opaque,
                remark: cmd.remark.as_deref(),
                serialize_type: "JSON",
                version: cmd.version,
            })
            .unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde));
        }

        #[test]
        fn json_headers_take_the_fast_path(cmd in command()) {
            let mut cmd = cmd;
            cmd.serialize_type = SerializeType::Json;
            let mut buf = BytesMut::new();
            encode_header(&cmd, &mut buf).unwrap();
            let header = &buf[..];
            let fast = crate::json_header::decode(header);
            prop_assert!(fast.is_some(), "{}", String::from_utf8_lossy(header));
            prop_assert_eq!(fast, decode_json_header_general(header).ok());
        }

        #[test]
        fn arbitrary_json_reads_the_same_on_both_paths(json in r#"\{("(code|opaque|remark|language|extFields|x)": ?(-?[0-9]{1,12}|"[a-zA-Z\\"\u{1}]{0,4}"|null|true|\{("[a-z]{1,2}":(-?[0-9]{1,3}|"[a-z\\u0-9]{0,6}"|null|false|1\.5),?){0,3}\}),?){0,4}\}"#) {
            if let Some(fast) = crate::json_header::decode(json.as_bytes()) {
                prop_assert_eq!(Some(fast), decode_json_header_general(json.as_bytes()).ok(), "{}", json);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = RemotingCodec.decode(&mut buf) {}
            let _ = decode_frame(Bytes::from(data));
        }

        #[test]
        fn well_framed_garbage_headers_never_panic(
            ser in 0u8..3, header in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut buf = BytesMut::new();
            buf.put_i32((4 + header.len()) as i32);
            buf.put_u32((u32::from(ser) << 24) | header.len() as u32);
            buf.put_slice(&header);
            let _ = RemotingCodec.decode(&mut buf);
        }
    }
}
