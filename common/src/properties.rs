//! Message properties and their wire encoding.
//!
//! RocketMQ serialises a property map as `k1 \x01 v1 \x02 k2 \x01 v2` — char 1 between
//! a name and its value, char 2 between entries, no trailing separator (older Java
//! writers and the Go client leave one; we accept it). Entries with an empty name or
//! value are dropped on parse, as the Java parser does. The encoded form must fit in
//! an `i16` length (32 767 bytes) to be stored.
//!
//! [`Properties`] keeps insertion order so that a decode/encode round trip is
//! byte-identical, which lets the broker pass properties through untouched.

use std::fmt;

/// Separates a property name from its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Separates two properties.
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// Largest encoded properties length a record can hold.
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;

/// Well-known property names (`MessageConst`).
pub mod keys {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const WAIT_STORE_MSG_OK: &str = "WAIT";
    pub const DELAY_TIME_LEVEL: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QUEUE_ID: &str = "REAL_QID";
    pub const TRANSACTION_PREPARED: &str = "TRAN_MSG";
    pub const PRODUCER_GROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const BUYER_ID: &str = "BUYER_ID";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_SWITCH: &str = "TRACE_ON";
    pub const UNIQ_CLIENT_MESSAGE_ID_KEYIDX: &str = "UNIQ_KEY";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIMESTAMP: &str = "CONSUME_START_TIME";
    pub const TRANSACTION_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    pub const MESSAGE_REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    pub const MESSAGE_TTL: &str = "TTL";
    pub const REPLY_MESSAGE_ARRIVE_TIME: &str = "ARRIVE_TIME";
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    pub const MESSAGE_TYPE: &str = "MSG_TYPE";
    pub const CLUSTER: &str = "CLUSTER";
    pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
    pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
    pub const TRANSACTION_ID: &str = "__transactionId__";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
    pub const TRACE_CONTEXT: &str = "TRACE_CONTEXT";
    /// Separator between several business keys in `KEYS`.
    pub const KEY_SEPARATOR: &str = " ";
    /// Value of `MSG_TYPE` on reply messages.
    pub const REPLY_MESSAGE_FLAG: &str = "reply";
}

/// An ordered property map with RocketMQ's string encoding.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties {
    entries: Vec<(String, String)>,
}

impl Properties {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the char-1/char-2 encoding. Never fails: malformed entries are dropped
    /// exactly as the Java parser drops them.
    pub fn decode(s: &str) -> Self {
        let mut entries = Vec::new();
        for piece in s.split(PROPERTY_SEPARATOR) {
            if let Some((k, v)) = piece.split_once(NAME_VALUE_SEPARATOR) {
                if !k.is_empty() && !v.is_empty() {
                    entries.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        Self { entries }
    }

    /// Parses properties from raw bytes; invalid UTF-8 is replaced rather than rejected
    /// because Java decodes these bytes leniently too.
    pub fn decode_bytes(b: &[u8]) -> Self {
        match std::str::from_utf8(b) {
            Ok(s) => Self::decode(s),
            Err(_) => Self::decode(&String::from_utf8_lossy(b)),
        }
    }

    /// The encoded form, without a trailing separator.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut String) {
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(PROPERTY_SEPARATOR);
            }
            out.push_str(k);
            out.push(NAME_VALUE_SEPARATOR);
            out.push_str(v);
        }
    }

    /// Byte length of [`Properties::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        let payload: usize = self.entries.iter().map(|(k, v)| k.len() + v.len() + 1).sum();
        payload + self.entries.len().saturating_sub(1)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`, replacing an existing value in place (keeping its position).
    /// An empty value removes the key, since it could not survive an encode/decode.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        if key.is_empty() {
            return;
        }
        if value.is_empty() {
            self.remove(&key);
            return;
        }
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn tags(&self) -> Option<&str> {
        self.get(keys::TAGS)
    }

    /// The business keys in `KEYS`, split on spaces.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.get(keys::KEYS).into_iter().flat_map(|k| k.split(' ')).filter(|k| !k.is_empty())
    }

    pub fn uniq_key(&self) -> Option<&str> {
        self.get(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut p = Properties::new();
        for (k, v) in iter {
            p.insert(k, v);
        }
        p
    }
}

/// Looks up one property in an encoded properties string without building a map.
/// Used on hot paths (the broker reads `TAGS`, `DELAY`, `KEYS` from each send).
pub fn find_in_encoded<'a>(encoded: &'a str, key: &str) -> Option<&'a str> {
    encoded.split(PROPERTY_SEPARATOR).find_map(|piece| {
        let (k, v) = piece.split_once(NAME_VALUE_SEPARATOR)?;
        (k == key && !v.is_empty()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_java_format() {
        let p = Properties::decode("TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}UNIQ_KEY\u{1}ABC");
        assert_eq!(p.get("TAGS"), Some("TagA"));
        assert_eq!(p.get("WAIT"), Some("true"));
        assert_eq!(p.uniq_key(), Some("ABC"));
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn accepts_trailing_separator_and_drops_empty_entries() {
        let p = Properties::decode("TAGS\u{1}A\u{2}EMPTY\u{1}\u{2}\u{1}novalue\u{2}KEYS\u{1}k1 k2\u{2}");
        assert_eq!(p.len(), 2);
        assert_eq!(p.keys().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(p.encode(), "TAGS\u{1}A\u{2}KEYS\u{1}k1 k2");
    }

    #[test]
    fn value_may_contain_name_separator() {
        let p = Properties::decode("A\u{1}x\u{1}y");
        assert_eq!(p.get("A"), Some("x\u{1}y"));
    }

    #[test]
    fn insert_replaces_in_place() {
        let mut p: Properties = [("A", "1"), ("B", "2")].into_iter().collect();
        p.insert("A", "3");
        assert_eq!(p.encode(), "A\u{1}3\u{2}B\u{1}2");
        p.insert("B", "");
        assert_eq!(p.encode(), "A\u{1}3");
    }

    #[test]
    fn find_in_encoded_matches_decode() {
        let s = "TAGS\u{1}TagA\u{2}DELAY\u{1}3";
        assert_eq!(find_in_encoded(s, "DELAY"), Some("3"));
        assert_eq!(find_in_encoded(s, "TAG"), None);
    }

    fn entry() -> impl Strategy<Value = (String, String)> {
        ("[A-Za-z_][A-Za-z0-9_#]{0,12}", "[^\u{1}\u{2}]{1,20}")
    }

    proptest! {
        #[test]
        fn round_trip(entries in proptest::collection::vec(entry(), 0..8)) {
            let p: Properties = entries.into_iter().collect();
            let encoded = p.encode();
            prop_assert_eq!(encoded.len(), p.encoded_len());
            prop_assert_eq!(Properties::decode(&encoded), p);
        }

        #[test]
        fn decode_never_panics(s in "\\PC*") {
            let _ = Properties::decode(&s);
        }
    }
}
