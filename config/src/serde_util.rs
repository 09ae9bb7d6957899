//! serde adapters for the two value shapes that the derives cannot express.
//!
//! * [`byte_size`]: `ByteSize`'s own `Serialize` writes a rounded
//!   human-readable string ("1.1 GB" for 1 GiB), which would not survive the
//!   defaults -> figment -> struct round trip. We write the exact number of
//!   bytes instead and read either a number or a string such as `"1GiB"`.
//!   (The `[plugins]` section only writes exact numbers and reads sizes with
//!   `ByteSize`'s own `Deserialize`, as it always has.)
//! * [`addr_list`]: RocketMQ writes name-server lists as one `;`-separated
//!   string; TOML users expect an array. Both are read into a `Vec<String>`.
//! * [`Secret`]: a string that never reaches a log (`Debug` hides it).

/// `#[serde(with = "byte_size")]` for `bytesize::ByteSize` fields.
pub(crate) mod byte_size {
    use std::fmt;

    use bytesize::ByteSize;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(size: &ByteSize, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(size.as_u64())
    }

    /// `#[serde(serialize_with = "byte_size::serialize_opt")]` for an
    /// `Option<ByteSize>` that is read with `ByteSize`'s own `Deserialize`.
    #[allow(clippy::ref_option)] // serde's `serialize_with` passes `&Option<T>`
    pub(crate) fn serialize_opt<S: Serializer>(size: &Option<ByteSize>, serializer: S) -> Result<S::Ok, S::Error> {
        match size {
            Some(size) => serializer.serialize_some(&size.as_u64()),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }

    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = ByteSize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of bytes or a size such as \"4MiB\"")
        }

        fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
            Ok(ByteSize::b(bytes))
        }

        fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
            u64::try_from(bytes).map(ByteSize::b).map_err(|_| E::invalid_value(de::Unexpected::Signed(bytes), &self))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
            text.trim().parse::<ByteSize>().map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))
        }
    }
}

/// `#[serde(deserialize_with = "addr_list::deserialize")]` for lists of
/// `host:port` addresses.
pub(crate) mod addr_list {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::Deserializer;

    /// Splits RocketMQ's `"a:9876;b:9876"` form, dropping empty entries the
    /// way RocketMQ's own `split(";")` users do.
    pub(crate) fn split(text: &str) -> Vec<String> {
        text.split(';').map(str::trim).filter(|addr| !addr.is_empty()).map(str::to_owned).collect()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_any(AddrListVisitor)
    }

    struct AddrListVisitor;

    impl<'de> Visitor<'de> for AddrListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of addresses or a \";\"-separated string")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<String>, E> {
            Ok(split(text))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut addrs = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(addr) = seq.next_element::<String>()? {
                addrs.push(addr.trim().to_owned());
            }
            Ok(addrs)
        }
    }
}

/// A secret (an ACL secret key, a token): read and written as a plain string,
/// printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}
