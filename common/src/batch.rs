//! The body of SEND_BATCH_MESSAGE: the producer's per-message "client encoding",
//! records back to back.
//!
//! ```text
//!  TOTALSIZE i32 | MAGIC i32 (0) | BODYCRC i32 (0) | FLAG i32 | BODY_LEN i32 + body
//!  | PROPERTIES_LEN i16 + properties
//! ```
//! Each record is `22 + body + properties` bytes. Topic, queue, sys flag and born
//! timestamp come from the request header; the broker builds one stored record per
//! item (see [`merge_properties`] for how item and batch properties combine).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, Result};
use crate::message::Message;
use crate::properties::PROPERTY_SEPARATOR;

/// Fixed bytes of one batch item besides body and properties.
pub const ITEM_OVERHEAD: usize = 22;

/// One message of a batch body; body and properties share the request's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub flag: i32,
    pub body: Bytes,
    /// Encoded properties of this item.
    pub properties: Bytes,
}

impl BatchItem {
    pub fn properties_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.properties)
    }
}

/// Encodes messages as a batch body (what a producer sends).
pub fn encode(messages: &[Message]) -> Bytes {
    let mut buf = BytesMut::new();
    for m in messages {
        let props = m.properties.encode();
        let total = ITEM_OVERHEAD + m.body.len() + props.len();
        buf.reserve(total);
        buf.put_i32(total as i32);
        buf.put_i32(0);
        buf.put_i32(0);
        buf.put_i32(m.flag);
        buf.put_i32(m.body.len() as i32);
        buf.put_slice(&m.body);
        buf.put_i16(props.len() as i16);
        buf.put_slice(props.as_bytes());
    }
    buf.freeze()
}

/// Decodes a batch body.
///
/// # Errors
/// A size field that does not fit the remaining bytes, or lengths that do not add up.
pub fn decode(body: &Bytes) -> Result<Vec<BatchItem>> {
    let mut items = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let rest = &body[at..];
        if rest.len() < ITEM_OVERHEAD {
            return Err(DecodeError::Truncated { needed: ITEM_OVERHEAD, available: rest.len() });
        }
        let total = i32::from_be_bytes(rest[0..4].try_into().expect("4 bytes"));
        if total < ITEM_OVERHEAD as i32 || total as usize > rest.len() {
            return Err(DecodeError::BadSize { size: total.into(), min: ITEM_OVERHEAD, available: rest.len() });
        }
        let total = total as usize;
        let flag = i32::from_be_bytes(rest[12..16].try_into().expect("4 bytes"));
        let body_len = i32::from_be_bytes(rest[16..20].try_into().expect("4 bytes"));
        if body_len < 0 || 20 + body_len as usize + 2 > total {
            return Err(DecodeError::BadLength { field: "body", len: body_len.into() });
        }
        let body_start = at + 20;
        let body_end = body_start + body_len as usize;
        let props_len = i16::from_be_bytes([body[body_end], body[body_end + 1]]);
        if props_len < 0 || 20 + body_len as usize + 2 + props_len as usize != total {
            return Err(DecodeError::BadLength { field: "properties", len: props_len.into() });
        }
        let props_start = body_end + 2;
        items.push(BatchItem {
            flag,
            body: body.slice(body_start..body_end),
            properties: body.slice(props_start..props_start + props_len as usize),
        });
        at += total;
    }
    Ok(items)
}

/// The stored properties of a batch item: the item's own properties, a separator
/// when needed, then the batch-wide properties from the request header (RocketMQ's
/// `MessageExtBatch` expansion).
pub fn merge_properties(item: &str, batch: &str) -> String {
    let mut out = String::with_capacity(item.len() + 1 + batch.len());
    out.push_str(item);
    if !item.is_empty() && !batch.is_empty() && !item.ends_with(PROPERTY_SEPARATOR) {
        out.push(PROPERTY_SEPARATOR);
    }
    out.push_str(batch);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_java_layout() {
        let m = Message::new("T", &b"ab"[..]).with_tags("A");
        let body = encode(std::slice::from_ref(&m));
        assert_eq!(body.len(), 22 + 2 + 6);
        assert_eq!(&body[0..4], &30i32.to_be_bytes());
        assert_eq!(&body[4..12], &[0; 8]);
        let items = decode(&body).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(&items[0].body[..], b"ab");
        assert_eq!(&items[0].properties[..], b"TAGS\x01A");
    }

    #[test]
    fn merges_properties_like_rocketmq() {
        assert_eq!(merge_properties("A\u{1}1", "W\u{1}t"), "A\u{1}1\u{2}W\u{1}t");
        assert_eq!(merge_properties("A\u{1}1\u{2}", "W\u{1}t"), "A\u{1}1\u{2}W\u{1}t");
        assert_eq!(merge_properties("", "W\u{1}t"), "W\u{1}t");
        assert_eq!(merge_properties("A\u{1}1", ""), "A\u{1}1");
    }

    #[test]
    fn rejects_inconsistent_sizes() {
        let m = Message::new("T", &b"abc"[..]);
        let mut body = encode(&[m]).to_vec();
        body[3] += 1; // total size one too large
        assert!(decode(&Bytes::from(body.clone())).is_err());
        body[3] -= 2;
        assert!(decode(&Bytes::from(body)).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(items in proptest::collection::vec(
            (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..64), "[A-Z]{1,4}\u{1}[a-z]{1,4}"), 0..6)) {
            let msgs: Vec<Message> = items.iter().map(|(flag, body, props)| Message {
                topic: "T".into(), flag: *flag, body: Bytes::from(body.clone()),
                properties: crate::Properties::decode(props),
            }).collect();
            let decoded = decode(&encode(&msgs)).unwrap();
            prop_assert_eq!(decoded.len(), msgs.len());
            for (d, m) in decoded.iter().zip(&msgs) {
                prop_assert_eq!(d.flag, m.flag);
                prop_assert_eq!(&d.body, &m.body);
                prop_assert_eq!(d.properties_str().into_owned(), m.properties.encode());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&Bytes::from(data));
        }
    }
}
