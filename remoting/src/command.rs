//! [`RemotingCommand`]: one request or response, and its `extFields`.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use common::ResponseCode;

use crate::code::RequestCode;
use crate::header::{CommandHeader, HeaderError};

/// Flag bit of a response.
pub const FLAG_RESPONSE: i32 = 0x1;
/// Flag bit of a request that expects no response.
pub const FLAG_ONEWAY: i32 = 0x2;

/// `MQVersion` ordinal we announce: V4_9_8. Clients gate SQL92 (≥ V4_1_0) and the
/// name server picks standard JSON (≥ V4_9_4) on it.
pub const CURRENT_VERSION: i32 = 409;

common::java_enum! {
    /// The sender's language; the binary header carries the ordinal as one byte.
    #[derive(Default)]
    pub enum LanguageCode {
        #[default]
        Java = "JAVA",
        Cpp = "CPP",
        Dotnet = "DOTNET",
        Python = "PYTHON",
        Delphi = "DELPHI",
        Erlang = "ERLANG",
        Ruby = "RUBY",
        Other = "OTHER",
        Http = "HTTP",
        Go = "GO",
        Php = "PHP",
        Oms = "OMS",
        Rust = "RUST",
    }
}

impl LanguageCode {
    /// Maps a name to a language; unknown names become `OTHER` rather than an error.
    pub fn from_name_lossy(s: &str) -> Self {
        Self::from_name(s).unwrap_or(Self::Other)
    }

    pub fn from_byte(b: u8) -> Self {
        Self::ALL.get(usize::from(b)).copied().unwrap_or(Self::Other)
    }

    pub fn to_byte(self) -> u8 {
        self.ordinal() as u8
    }
}

/// How the header of a frame is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum SerializeType {
    #[default]
    Json,
    /// RocketMQ's binary header.
    RocketMq,
}

impl SerializeType {
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Json => 0,
            Self::RocketMq => 1,
        }
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Json),
            1 => Some(Self::RocketMq),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::RocketMq => "ROCKETMQ",
        }
    }
}

/// The custom header of a command: string keys to string values, in insertion order.
///
/// Java keeps a `HashMap<String, String>`; order carries no meaning, but keeping ours
/// makes encoding deterministic. Lookups are linear — headers hold about a dozen keys,
/// where a scan beats hashing.
///
/// Keys and values live in one text buffer, indexed by byte ranges: decoding a header
/// of a dozen fields costs one or two allocations instead of two per field (a send
/// request is decoded on every message, so this is on the broker's hot path).
#[derive(Clone, Default)]
pub struct ExtFields {
    text: String,
    /// (key start, key end, value start, value end) in `text`.
    entries: Vec<[u32; 4]>,
}

impl ExtFields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self { text: String::with_capacity(n * 24), entries: Vec::with_capacity(n) }
    }

    #[inline]
    fn slice(&self, start: u32, end: u32) -> &str {
        &self.text[start as usize..end as usize]
    }

    fn position(&self, key: &str) -> Option<usize> {
        let (text, key) = (self.text.as_bytes(), key.as_bytes());
        // Length and first byte first: V2 send headers have single-letter keys, and a
        // `memcmp` call per entry would cost more than the comparison itself.
        self.entries.iter().position(|e| {
            let k = &text[e[0] as usize..e[1] as usize];
            k.len() == key.len() && k.first() == key.first() && k == key
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| {
            let e = self.entries[i];
            self.slice(e[2], e[3])
        })
    }

    /// Appends what `write` writes to the text buffer; returns its range.
    fn append_with(&mut self, write: impl FnOnce(&mut String)) -> [u32; 2] {
        let start = self.text.len() as u32;
        write(&mut self.text);
        [start, self.text.len() as u32]
    }

    /// Points `key` (already in the buffer) at `value`: a key seen before keeps its
    /// entry and takes the new value, as a Java map would.
    fn bind(&mut self, [ks, ke]: [u32; 2], [vs, ve]: [u32; 2]) {
        match self.position(self.slice(ks, ke)) {
            Some(i) => {
                self.entries[i][2] = vs;
                self.entries[i][3] = ve;
            }
            None => self.entries.push([ks, ke, vs, ve]),
        }
    }

    /// Sets `key`; a later value for the same key replaces the earlier one.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let k = self.append_with(|t| t.push_str(key.as_ref()));
        let v = self.append_with(|t| t.push_str(value.as_ref()));
        self.bind(k, v);
    }

    /// Appends without checking for duplicates (encoders of typed headers, whose keys
    /// are distinct by construction).
    pub fn push(&mut self, key: &str, value: &str) {
        self.push_with(key, |out| out.push_str(value));
    }

    /// Sets `key` to what `write` appends to the text buffer; `None` from `write`
    /// leaves the fields as they were (bar unused bytes in the buffer).
    pub(crate) fn insert_written(&mut self, key: &str, write: impl FnOnce(&mut String) -> Option<()>) -> Option<()> {
        let start = self.text.len();
        if write(&mut self.text).is_none() {
            self.text.truncate(start);
            return None;
        }
        let v = [start as u32, self.text.len() as u32];
        let k = self.append_with(|t| t.push_str(key));
        self.bind(k, v);
        Some(())
    }

    /// [`push`](Self::push) with a value written in place (numbers skip a `String`).
    pub fn push_with(&mut self, key: &str, value: impl FnOnce(&mut String)) {
        let [ks, ke] = self.append_with(|t| t.push_str(key));
        let [vs, ve] = self.append_with(value);
        self.entries.push([ks, ke, vs, ve]);
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.position(key)?;
        let e = self.entries.remove(i);
        Some(self.slice(e[2], e[3]).to_owned())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|e| (self.slice(e[0], e[1]), self.slice(e[2], e[3])))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Equal when the same keys map to the same values in the same order, however the
/// text buffers were filled.
impl PartialEq for ExtFields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut e = ExtFields::new();
        for (k, v) in iter {
            e.insert(k, v);
        }
        e
    }
}

impl Serialize for ExtFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Accepts any scalar as a value (the C++ client sends numbers and booleans) and
/// skips `null`s, which Java would treat as absent. Keys and values are written
/// straight into the text buffer, borrowed or not.
impl<'de> Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of scalar values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<ExtFields, A::Error> {
                let mut e = ExtFields::with_capacity(a.size_hint().unwrap_or(16));
                while let Some(k) = a.next_key_seed(Append(&mut e.text))? {
                    let v = a.next_value_seed(Append(&mut e.text))?;
                    // `null`: absent.
                    if v[0] != u32::MAX {
                        e.bind(k, v);
                    }
                }
                Ok(e)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<ExtFields, E> {
                Ok(ExtFields::new())
            }
        }
        d.deserialize_any(V)
    }
}

/// A key or a scalar value, appended to the text buffer as Java's `String.valueOf`
/// would print it; `null` gives `[u32::MAX, u32::MAX]`.
struct Append<'a>(&'a mut String);

impl Append<'_> {
    fn write(self, v: impl fmt::Display) -> [u32; 2] {
        use fmt::Write;
        let start = self.0.len() as u32;
        let _ = write!(self.0, "{v}");
        [start, self.0.len() as u32]
    }
}

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = [u32; 2];
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<[u32; 2], D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Append<'_> {
    type Value = [u32; 2];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<[u32; 2], E> {
        Ok(self.write(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<[u32; 2], E> {
        Ok(self.write(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<[u32; 2], E> {
        Ok(self.write(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<[u32; 2], E> {
        Ok(self.write(v))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<[u32; 2], E> {
        Ok(self.write(v))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<[u32; 2], E> {
        Ok([u32::MAX, u32::MAX])
    }
}

/// A command body: contiguous, or a chain of slices written with one vectored write
/// (pull responses chain records that still live in the commit-log mapping).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Body {
    #[default]
    Empty,
    Bytes(Bytes),
    Chain(Vec<Bytes>),
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len(),
            Body::Chain(parts) => parts.iter().map(Bytes::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body as one buffer; free unless the body is a chain.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Body::Empty => Bytes::new(),
            Body::Bytes(b) => b.clone(),
            Body::Chain(parts) => {
                let mut buf = BytesMut::with_capacity(self.len());
                for p in parts {
                    buf.extend_from_slice(p);
                }
                buf.freeze()
            }
        }
    }

    /// The body's slices, in order.
    pub fn parts(&self) -> &[Bytes] {
        match self {
            Body::Empty => &[],
            Body::Bytes(b) => std::slice::from_ref(b),
            Body::Chain(parts) => parts,
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Body({} bytes)", self.len())
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        if b.is_empty() {
            Body::Empty
        } else {
            Body::Bytes(b)
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::from(Bytes::from(v))
    }
}

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code in requests, response code in responses.
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    /// How the header was (or will be) encoded; responses copy the request's.
    pub serialize_type: SerializeType,
    pub body: Body,
}

impl Default for RemotingCommand {
    fn default() -> Self {
        Self {
            code: 0,
            language: LanguageCode::Rust,
            version: CURRENT_VERSION,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            serialize_type: SerializeType::Json,
            body: Body::Empty,
        }
    }
}

impl RemotingCommand {
    /// A request with no custom header. The opaque is assigned when it is sent.
    pub fn request(code: RequestCode) -> Self {
        Self { code: code.0, ..Self::default() }
    }

    /// A request carrying a typed header.
    pub fn request_with<H: CommandHeader>(code: RequestCode, header: &H) -> Self {
        let mut cmd = Self::request(code);
        header.encode(&mut cmd.ext_fields);
        cmd
    }

    /// A response (opaque and serialize type are filled in from the request when the
    /// dispatcher sends it).
    pub fn response(code: ResponseCode, remark: impl Into<Option<String>>) -> Self {
        Self { code: code.0, flag: FLAG_RESPONSE, remark: remark.into(), ..Self::default() }
    }

    pub fn success() -> Self {
        Self::response(ResponseCode::SUCCESS, None)
    }

    /// A response with a typed header.
    pub fn response_with<H: CommandHeader>(code: ResponseCode, header: &H) -> Self {
        let mut cmd = Self::response(code, None);
        header.encode(&mut cmd.ext_fields);
        cmd
    }

    /// An error response with a remark, the form every processor failure takes.
    pub fn error(code: ResponseCode, remark: impl Into<String>) -> Self {
        Self::response(code, Some(remark.into()))
    }

    pub fn with_body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    pub fn set_oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn request_code(&self) -> RequestCode {
        RequestCode(self.code)
    }

    pub fn response_code(&self) -> ResponseCode {
        ResponseCode(self.code)
    }

    /// Decodes the typed custom header.
    ///
    /// # Errors
    /// A required key is missing or a value does not parse.
    pub fn decode_header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::decode(&self.ext_fields)
    }

    /// The body as one contiguous buffer.
    pub fn body_bytes(&self) -> Bytes {
        self.body.to_bytes()
    }

    /// The remark, or an empty string.
    pub fn remark_str(&self) -> &str {
        self.remark.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::ExtFields;

    #[test]
    fn ext_fields_take_any_scalar_and_skip_nulls() {
        let e: ExtFields =
            serde_json::from_str(r#"{"a":"x","n":-12,"big":18446744073709551615,"t":true,"f":1.5,"z":null,"e":""}"#)
                .unwrap();
        let got: Vec<_> = e.iter().collect();
        assert_eq!(
            got,
            [("a", "x"), ("n", "-12"), ("big", "18446744073709551615"), ("t", "true"), ("f", "1.5"), ("e", "")]
        );
        assert_eq!(e.get("z"), None);
        // Escapes are decoded, not copied raw.
        let e: ExtFields = serde_json::from_str(r#"{"k\u0041":"v\"1"}"#).unwrap();
        assert_eq!(e.get("kA"), Some("v\"1"));
    }

    #[test]
    fn ext_fields_replace_remove_and_compare_by_content() {
        let mut a = ExtFields::new();
        a.insert("topic", "T1");
        a.push_with("queueId", |s| s.push('3'));
        a.insert("topic", "T2");
        assert_eq!(a.get("topic"), Some("T2"));
        assert_eq!(a.len(), 2);
        let b: ExtFields = [("topic", "T2"), ("queueId", "3")].into_iter().collect();
        assert_eq!(a, b, "equal content, different buffers");
        assert_eq!(a.remove("topic").as_deref(), Some("T2"));
        assert_eq!(a.get("topic"), None);
        assert_ne!(a, b);
        // A repeated key in JSON keeps the last value, as a Java map does.
        let e: ExtFields = serde_json::from_str(r#"{"k":"1","k":"2"}"#).unwrap();
        assert_eq!((e.len(), e.get("k")), (1, Some("2")));
    }
}
