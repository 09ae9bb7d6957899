// PERF-CRITICAL PATH: filters look up properties of every scanned message.
//! Reading one message's properties by name, the way Java's broker sees them
//! ([`PropertyLookup`]), over decoded properties, maps, and the encoded bytes as
//! stored (without decoding them or allocating).

use std::collections::HashMap;
use std::hash::BuildHasher;

use common::properties::{keys, Properties, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR};

/// Read access to one message's properties, by name.
///
/// Java's broker decodes properties into a `HashMap`, so when a name occurs twice the
/// **last** occurrence wins, and entries with an empty name or value do not exist;
/// implementations follow that.
pub trait PropertyLookup {
    fn get(&self, key: &str) -> Option<&str>;
}

impl<T: PropertyLookup + ?Sized> PropertyLookup for &T {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}

impl PropertyLookup for Properties {
    fn get(&self, key: &str) -> Option<&str> {
        self.iter().filter(|(k, _)| *k == key).map(|(_, v)| v).last()
    }
}

impl<S: BuildHasher> PropertyLookup for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// The value range of the **last** `key` entry in encoded properties
/// (`k1 \x01 v1 \x02 k2 \x01 v2`), as Java's `string2messageProperties` map keeps it;
/// empty values do not count. Zero allocations, so the pull path needs no map per
/// message. (`common::properties::find_in_encoded` returns the first match instead.)
fn find_last(bytes: &[u8], key: &str) -> Option<std::ops::Range<usize>> {
    if key.is_empty() {
        return None;
    }
    // Walk the entries from the end and compare only the name prefix. A plain byte loop
    // measured 2-3x faster here than `rsplit` plus `split_once`, or `rfind(char)`,
    // whose setup dominates on ~20-byte entries.
    let mut end = bytes.len();
    loop {
        let start = bytes[..end].iter().rposition(|&b| b == PROPERTY_SEPARATOR as u8).map_or(0, |p| p + 1);
        let entry = &bytes[start..end];
        let name_end = key.len();
        if entry.len() > name_end + 1
            && entry.starts_with(key.as_bytes())
            && entry[name_end] == NAME_VALUE_SEPARATOR as u8
        {
            return Some(start + name_end + 1..end);
        }
        if start == 0 {
            return None;
        }
        end = start - 1;
    }
}

/// `TAGS` and `KEYS` of stored properties in one forward pass (last occurrence, non-empty,
/// valid UTF-8, as [`PropertyLookup::get`] finds them): what the plugin stage reads for
/// every message, at the cost of one scan instead of two backward ones.
pub fn tags_and_keys(props: &[u8]) -> (Option<&str>, Option<&str>) {
    const TAGS: [u8; 4] = *b"TAGS";
    const KEYS: [u8; 4] = *b"KEYS";
    const _: () = assert!(keys::TAGS.len() == 4 && keys::KEYS.len() == 4);
    let (mut tags, mut found_keys) = (None, None);
    for entry in props.split(|&b| b == PROPERTY_SEPARATOR as u8) {
        // Both names are four bytes: an entry is `NAME \x01 value`.
        if entry.len() > 5 && entry[4] == NAME_VALUE_SEPARATOR as u8 {
            let value = &entry[5..];
            match [entry[0], entry[1], entry[2], entry[3]] {
                TAGS => tags = Some(value),
                KEYS => found_keys = Some(value),
                _ => {}
            }
        }
    }
    fn utf8(v: Option<&[u8]>) -> Option<&str> {
        v.and_then(|v| std::str::from_utf8(v).ok())
    }
    (utf8(tags), utf8(found_keys))
}

impl PropertyLookup for str {
    fn get(&self, key: &str) -> Option<&str> {
        // Both cut points sit next to ASCII separators, so they are char boundaries.
        find_last(self.as_bytes(), key).map(|r| &self[r])
    }
}

/// Properties as stored, not validated as a whole: only the value returned is checked
/// to be UTF-8 (a value that is not is absent).
impl PropertyLookup for [u8] {
    fn get(&self, key: &str) -> Option<&str> {
        find_last(self, key).and_then(|r| std::str::from_utf8(&self[r]).ok())
    }
}
