//! [`RemotingCommand`]: one request or response, and its `extFields`.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::de::{MapAccess, Visitor};
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
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtFields(Vec<(String, String)>);

impl ExtFields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Sets `key`; a later value for the same key replaces the earlier one.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Appends without checking for duplicates (encoders of typed headers, whose keys
    /// are distinct by construction).
    pub fn push(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let pos = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(pos).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ExtFields {
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
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Accepts any scalar as a value (the C++ client sends numbers and booleans) and
/// skips `null`s, which Java would treat as absent.
impl<'de> Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of scalar values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<ExtFields, A::Error> {
                let mut e = ExtFields::with_capacity(a.size_hint().unwrap_or(8));
                while let Some((k, v)) = a.next_entry::<String, Scalar>()? {
                    if let Some(v) = v.0 {
                        e.insert(k, v);
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

struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(Some(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(V)
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
