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
