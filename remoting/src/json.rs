//! JSON as RocketMQ peers write it.
//!
//! The Java side uses fastjson, which writes integer map keys bare (`{0:"ip:port"}`)
//! in several bodies (cluster info, legacy routes, consumer/delay offset tables). That
//! is not JSON, so [`from_slice`] first tries a strict parse and, only if that fails,
//! quotes bare numeric keys ([`normalize_fastjson`]) and parses again. Everything we
//! write is strict, compact JSON ([`to_vec`]) — the Go client's hand-written route
//! parser breaks on whitespace.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Quotes bare numeric object keys: `{0:"a",-1:2}` → `{"0":"a","-1":2}`.
/// Text inside strings is left untouched; input without such keys is borrowed.
pub fn normalize_fastjson(input: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    let mut in_string = false;
    let mut copied_to = 0;
    while i < input.len() {
        let c = input[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b',' => {
                let mut j = i + 1;
                while j < input.len() && input[j].is_ascii_whitespace() {
                    j += 1;
                }
                let start = j;
                if j < input.len() && (input[j] == b'-' || input[j].is_ascii_digit()) {
                    j += 1;
                    while j < input.len() && input[j].is_ascii_digit() {
                        j += 1;
                    }
                    let end = j;
                    while j < input.len() && input[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j < input.len() && input[j] == b':' {
                        let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len() + 16));
                        buf.extend_from_slice(&input[copied_to..start]);
                        buf.push(b'"');
                        buf.extend_from_slice(&input[start..end]);
                        buf.push(b'"');
                        copied_to = end;
                        i = end;
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    match out {
        None => Cow::Borrowed(input),
        Some(mut buf) => {
            buf.extend_from_slice(&input[copied_to..]);
            Cow::Owned(buf)
        }
    }
}

/// Parses a JSON body, accepting fastjson's bare numeric keys.
///
/// # Errors
/// The body is not JSON (even after normalisation) or does not match `T`.
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(strict_err) => match normalize_fastjson(body) {
            Cow::Borrowed(_) => Err(strict_err),
            Cow::Owned(fixed) => serde_json::from_slice(&fixed),
        },
    }
}

/// Compact JSON.
///
/// # Errors
/// Only for values serde_json cannot represent (never for our body types).
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

/// Splits a fastjson map with `common::route::MessageQueue` object keys
/// (`{{"brokerName":..,"queueId":..,"topic":..}:value,...}`) into its entries, given
/// the text of the map (from `{` to the matching `}`).
pub fn mq_keyed_entries(map: &str) -> Vec<(common::route::MessageQueue, &str)> {
    let bytes = map.as_bytes();
    let mut out = Vec::new();
    let mut i = 1; // after the outer '{'
    while i < bytes.len() {
        while i < bytes.len() && matches!(bytes[i], b',' | b' ' | b'\n' | b'\r' | b'\t') {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'{' {
            break;
        }
        let Some(key_end) = closing_brace(bytes, i) else { break };
        let key = &map[i..=key_end];
        i = key_end + 1;
        while i < bytes.len() && bytes[i] != b':' {
            i += 1;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let value_start = i;
        let value_end = if i < bytes.len() && bytes[i] == b'{' {
            match closing_brace(bytes, i) {
                Some(e) => e + 1,
                None => break,
            }
        } else {
            let mut j = i;
            while j < bytes.len() && !matches!(bytes[j], b',' | b'}') {
                j += 1;
            }
            j
        };
        if let Ok(mq) = serde_json::from_str::<common::route::MessageQueue>(key) {
            out.push((mq, map[value_start..value_end].trim()));
        }
        i = value_end;
    }
    out
}

/// Index of the brace closing the one at `open`, skipping strings.
pub fn closing_brace(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut in_str = false;
    let mut i = open;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The value text of `"<field>":{...}` in a body.
pub fn object_field<'a>(body: &'a str, field: &str) -> Option<&'a str> {
    let key = format!("\"{field}\":");
    let at = body.find(&key)? + key.len();
    let start = at + body[at..].find('{')?;
    let end = closing_brace(body.as_bytes(), start)?;
    Some(&body[start..=end])
}

/// Reads `{"offsetTable":{MQ:offset,...}}` (RESET_CONSUMER_CLIENT_OFFSET and
/// INVOKE_BROKER_TO_RESET_OFFSET bodies).
pub fn parse_mq_keyed_offsets(body: &[u8]) -> Vec<(common::route::MessageQueue, i64)> {
    mq_keyed_i64_field(body, "offsetTable")
}

/// Reads the `MessageQueue`-keyed map of integers in `field` of a body
/// (`{"messageQueueTable":{MQ:offset,...}}` and the like).
pub fn mq_keyed_i64_field(body: &[u8], field: &str) -> Vec<(common::route::MessageQueue, i64)> {
    let text = String::from_utf8_lossy(body);
    let Some(table) = object_field(&text, field) else { return Vec::new() };
    mq_keyed_entries(table).into_iter().filter_map(|(mq, v)| v.parse().ok().map(|o| (mq, o))).collect()
}

/// A `MessageQueue`-keyed map as fastjson writes it: `{{"brokerName":..,"queueId":..,
/// "topic":..}:value,...}` — object keys, which Java's admin tools expect.
pub fn mq_keyed<V: Serialize>(entries: &[(common::route::MessageQueue, V)]) -> String {
    let mut out = String::from("{");
    for (i, (mq, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(mq).unwrap_or_default());
        out.push(':');
        out.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    out.push('}');
    out
}

/// The entries of a fastjson map whose keys are `MessageQueue` objects
/// (`{"<field>":{{"brokerName":..,"queueId":..,"topic":..}:VALUE,...}}`), which is
/// not JSON: each key and value is read as one JSON value in turn.
///
/// # Errors
/// The field is missing, or a key or value does not read.
pub fn mq_keyed_values<T: DeserializeOwned>(
    body: &[u8],
    field: &str,
) -> std::result::Result<Vec<(common::route::MessageQueue, T)>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("{field}: {e}"))?;
    let name = format!("\"{field}\"");
    let at = text.find(&name).ok_or_else(|| format!("no {field} in the answer"))? + name.len();
    let b = text.as_bytes();
    let skip = |mut i: usize, extra: &[u8]| {
        while i < b.len() && (b[i].is_ascii_whitespace() || extra.contains(&b[i])) {
            i += 1;
        }
        i
    };
    let mut i = skip(at, b":");
    if b.get(i) != Some(&b'{') {
        return Err(format!("{field} is not an object"));
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        i = skip(i, b",");
        match b.get(i) {
            Some(b'}') => return Ok(out),
            None => return Err(format!("{field} ends early")),
            Some(_) => {}
        }
        let (queue, used) =
            one_value::<common::route::MessageQueue>(&text[i..]).map_err(|e| format!("{field} key: {e}"))?;
        i = skip(i + used, b"");
        if b.get(i) != Some(&b':') {
            return Err(format!("{field}: no `:` after a key"));
        }
        let (value, used) = one_value::<T>(&text[i + 1..]).map_err(|e| format!("{field} value: {e}"))?;
        out.push((queue, value));
        i += 1 + used;
    }
}

/// The first JSON value of `text` and how many bytes it took.
fn one_value<T: DeserializeOwned>(text: &str) -> std::result::Result<(T, usize), serde_json::Error> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
    match stream.next() {
        Some(v) => Ok((v?, stream.byte_offset())),
        None => Err(serde::de::Error::custom("no value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn check(input: &str, expected: &str) {
        assert_eq!(std::str::from_utf8(&normalize_fastjson(input.as_bytes())).unwrap(), expected);
    }

    #[test]
    fn quotes_bare_keys_only() {
        check(r#"{0:"a",1:"b"}"#, r#"{"0":"a","1":"b"}"#);
        check(r#"{"offsetTable":{"T@G":{0:15, 1 :3}}}"#, r#"{"offsetTable":{"T@G":{"0":15, "1" :3}}}"#);
        check(r#"{"a":[1,2,3],"b":{-1:0}}"#, r#"{"a":[1,2,3],"b":{"-1":0}}"#);
        check(r#"{"s":"{0:1,2:3}"}"#, r#"{"s":"{0:1,2:3}"}"#);
        check(r#"{"s":"\"{0:1"}"#, r#"{"s":"\"{0:1"}"#);
        assert!(matches!(normalize_fastjson(br#"{"a":1}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn parses_cluster_info_as_java_writes_it() {
        let java = r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"192.168.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster"}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#;
        let info: common::route::ClusterInfo = from_slice(java.as_bytes()).unwrap();
        assert_eq!(info.broker_addr_table["broker-a"].master_addr(), Some("192.168.0.1:10911"));
        let offsets: BTreeMap<String, BTreeMap<String, BTreeMap<i32, i64>>> =
            from_slice(br#"{"offsetTable":{"T@G":{0:15,1:3}}}"#).unwrap();
        assert_eq!(offsets["offsetTable"]["T@G"][&1], 3);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_slice::<serde_json::Value>(b"{0:").is_err());
        assert!(from_slice::<serde_json::Value>(b"\xff\xfe").is_err());
    }
}

#[cfg(test)]
mod mq_keyed_values_tests {
    use super::*;
    use common::route::MessageQueue;
    use serde::Deserialize;

    #[test]
    fn reads_object_keyed_maps_as_the_broker_writes_them() {
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(rename_all = "camelCase")]
        struct O {
            min_offset: i64,
            max_offset: i64,
        }
        let body = br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"minOffset":0,"maxOffset":3},
            {"topic":"T","brokerName":"b","queueId":"1"} : {"maxOffset":9,"minOffset":2}}}"#;
        let v = mq_keyed_values::<O>(body, "offsetTable").unwrap();
        assert_eq!(
            v,
            vec![
                (MessageQueue::new("T", "b", 0), O { min_offset: 0, max_offset: 3 }),
                (MessageQueue::new("T", "b", 1), O { min_offset: 2, max_offset: 9 }),
            ]
        );
        let ints = mq_keyed_values::<i64>(
            br#"{"consumeTps":0.0,"offsetTable":{{"brokerName":"b","queueId":2,"topic":"T"}:7}}"#,
            "offsetTable",
        )
        .unwrap();
        assert_eq!(ints, vec![(MessageQueue::new("T", "b", 2), 7)]);
        assert!(mq_keyed_values::<i64>(br#"{"offsetTable":{}}"#, "offsetTable").unwrap().is_empty());
    }

    #[test]
    fn broken_maps_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{}",
            b"{\"offsetTable\":3}",
            b"{\"offsetTable\":{",
            b"{\"offsetTable\":{{\"topic\":\"T\"}",
            b"{\"offsetTable\":{{\"topic\":\"T\"}:",
            b"{\"offsetTable\":{{\"topic\":\"T\"}:\"x\"}}",
            b"{\"offsetTable\":{[1]:2}}",
            b"\xff\xfe",
        ] {
            assert!(mq_keyed_values::<i64>(bad, "offsetTable").is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
