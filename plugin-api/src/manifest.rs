//! The manifest a plugin returns from `describe`, and its binary encoding.
//!
//! ```text
//! offset size field
//!  0     4    magic "FMQM"
//!  4     4    u32 abi_version   (major; must equal PLUGIN_ABI_VERSION)
//!  8     2    u16 abi_minor     (must be <= PLUGIN_ABI_MINOR of the host)
//! 10     1    u8  kind          (1 filter, 2 queue_selector, 3 allocation, 4 txn_check)
//! 11     1    u8  reserved (0)
//! 12     2    u16 flags         (bit 0 has_prefilter, bit 1 needs_body, bit 2 declares_fields)
//! 14     2    u16 fields        (with declares_fields: the message fields read; else 0)
//! 16     4    u32 total_len     (bytes, including the strings)
//! 20     4    u32 reserved (0)
//! 24     8    span name            (offset from the manifest start, length; UTF-8)
//! 32     8    span version         (semver of the plugin)
//! 40     8    span config_schema   (free text hint: which config keys the plugin reads)
//! 48     ...  string bytes
//! ```

use std::fmt;

use crate::error::PluginError;
use crate::types::MessageFields;
use crate::{PluginKind, PLUGIN_ABI_MINOR, PLUGIN_ABI_VERSION};

/// Manifest magic, bytes `F M Q M`.
pub const MANIFEST_MAGIC: [u8; 4] = *b"FMQM";
/// Size of the fixed part of the manifest.
pub const MANIFEST_HEADER_SIZE: usize = 48;
/// Largest manifest the host accepts.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;

/// Manifest flag: the filter implements `prefilter`.
pub const FLAG_HAS_PREFILTER: u16 = 1;
/// Manifest flag: the filter reads message bodies (the host then includes them).
pub const FLAG_NEEDS_BODY: u16 = 2;
/// Manifest flag (ABI 1.1): the `fields` word lists the message fields the plugin reads;
/// frames carry only those. Without it a plugin receives [`MessageFields::DEFAULT`].
pub const FLAG_DECLARES_FIELDS: u16 = 4;

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Plugin name (informational; the registry name comes from config).
    pub name: String,
    /// Plugin version (semver).
    pub version: String,
    /// The kind it implements.
    pub kind: PluginKind,
    /// ABI major version it was built for.
    pub abi_version: u32,
    /// ABI minor version it needs.
    pub abi_minor: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// With [`FLAG_DECLARES_FIELDS`]: the [`MessageFields`] bits the plugin reads.
    pub fields: u16,
    /// Free-text hint describing the config keys the plugin reads.
    pub config_schema: String,
}

impl Manifest {
    /// A manifest for ABI 1.0 (the oldest minor that has everything it uses) with no
    /// flags and no schema.
    pub fn new(name: impl Into<String>, version: impl Into<String>, kind: PluginKind) -> Manifest {
        Manifest {
            name: name.into(),
            version: version.into(),
            kind,
            abi_version: PLUGIN_ABI_VERSION,
            abi_minor: 0,
            flags: 0,
            fields: 0,
            config_schema: String::new(),
        }
    }

    /// Whether the filter has a pre-filter.
    pub fn has_prefilter(&self) -> bool {
        self.flags & FLAG_HAS_PREFILTER != 0
    }

    /// Whether the filter needs bodies.
    pub fn needs_body(&self) -> bool {
        self.flags & FLAG_NEEDS_BODY != 0
    }

    /// Declares the message fields the plugin reads (ABI 1.1): topic, tags, keys and
    /// properties beyond `fields` are left out of its frames. `BODY` in `fields` is the
    /// same as [`FLAG_NEEDS_BODY`].
    pub fn declare_fields(&mut self, fields: MessageFields) {
        self.flags |= FLAG_DECLARES_FIELDS;
        if fields.contains(MessageFields::BODY) {
            self.flags |= FLAG_NEEDS_BODY;
        }
        self.fields = fields.difference(MessageFields::BODY).bits();
        self.abi_minor = self.abi_minor.max(1);
    }

    /// The message fields the host puts in this plugin's frames: the declared ones (all
    /// but the body when none are declared), plus the body with `needs_body`.
    pub fn message_fields(&self) -> MessageFields {
        let declared = if self.flags & FLAG_DECLARES_FIELDS != 0 {
            MessageFields::from_bits(self.fields).difference(MessageFields::BODY)
        } else {
            MessageFields::DEFAULT
        };
        if self.needs_body() {
            declared | MessageFields::BODY
        } else {
            declared
        }
    }

    /// Encodes the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; MANIFEST_HEADER_SIZE];
        b[0..4].copy_from_slice(&MANIFEST_MAGIC);
        b[4..8].copy_from_slice(&self.abi_version.to_le_bytes());
        b[8..10].copy_from_slice(&self.abi_minor.to_le_bytes());
        b[10] = self.kind as u8;
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..16].copy_from_slice(&self.fields.to_le_bytes());
        for (at, s) in [(24, &self.name), (32, &self.version), (40, &self.config_schema)] {
            let off = b.len() as u32;
            b.extend_from_slice(s.as_bytes());
            b[at..at + 4].copy_from_slice(&off.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&(s.len() as u32).to_le_bytes());
        }
        let len = b.len() as u32;
        b[16..20].copy_from_slice(&len.to_le_bytes());
        b
    }

    /// Decodes and checks a manifest: the ABI major must be [`PLUGIN_ABI_VERSION`] and the
    /// minor at most [`PLUGIN_ABI_MINOR`].
    ///
    /// # Errors
    /// [`PluginError::AbiMismatch`] for a version this host does not implement (checked
    /// first, so a future layout is reported as a version problem), and
    /// [`PluginError::Init`] for a malformed manifest.
    pub fn decode(b: &[u8]) -> Result<Manifest, PluginError> {
        let bad = |what: &str| PluginError::init(format!("malformed manifest: {what}"));
        if b.len() < 8 || b[0..4] != MANIFEST_MAGIC {
            return Err(bad("bad magic"));
        }
        let abi_version = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if abi_version != PLUGIN_ABI_VERSION {
            return Err(PluginError::AbiMismatch {
                found: abi_version,
                supported: PLUGIN_ABI_VERSION,
                detail: "manifest abi_version".into(),
            });
        }
        if b.len() < MANIFEST_HEADER_SIZE {
            return Err(bad("shorter than its header"));
        }
        let abi_minor = u16::from_le_bytes([b[8], b[9]]);
        if abi_minor > PLUGIN_ABI_MINOR {
            return Err(PluginError::AbiMismatch {
                found: abi_version,
                supported: PLUGIN_ABI_VERSION,
                detail: format!("plugin needs ABI minor {abi_minor}, host implements {PLUGIN_ABI_MINOR}"),
            });
        }
        let kind = PluginKind::from_u8(b[10]).ok_or_else(|| bad("unknown kind"))?;
        let flags = u16::from_le_bytes([b[12], b[13]]);
        let fields = u16::from_le_bytes([b[14], b[15]]);
        let total = u32::from_le_bytes([b[16], b[17], b[18], b[19]]) as usize;
        if total > b.len() {
            return Err(bad("total_len beyond the buffer"));
        }
        let b = &b[..total];
        let string = |at: usize, what: &str| -> Result<String, PluginError> {
            let off = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
            let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
            let s = off.checked_add(len).and_then(|end| b.get(off..end)).ok_or_else(|| bad(what))?;
            std::str::from_utf8(s).map(str::to_owned).map_err(|_| bad(what))
        };
        Ok(Manifest {
            name: string(24, "name")?,
            version: string(32, "version")?,
            kind,
            abi_version,
            abi_minor,
            flags,
            fields,
            config_schema: string(40, "config_schema")?,
        })
    }
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({}, abi {}.{})", self.name, self.version, self.kind, self.abi_version, self.abi_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut m = Manifest::new("vip", "1.2.3", PluginKind::Filter);
        m.flags = FLAG_HAS_PREFILTER;
        m.config_schema = "min: integer".into();
        let b = m.encode();
        assert_eq!(Manifest::decode(&b).unwrap(), m);
        assert!(Manifest::decode(&b).unwrap().has_prefilter());
        assert!(!m.needs_body());
    }

    #[test]
    fn declared_fields_round_trip_and_need_minor_1() {
        let m = Manifest::new("tags-only", "1.0.0", PluginKind::Filter);
        assert_eq!(m.abi_minor, 0);
        assert_eq!(m.message_fields(), MessageFields::DEFAULT);
        let mut d = m.clone();
        d.declare_fields(MessageFields::TAGS);
        assert_eq!(d.abi_minor, 1);
        let back = Manifest::decode(&d.encode()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.message_fields(), MessageFields::TAGS);
        // Declaring nothing at all is not the same as not declaring.
        let mut none = m.clone();
        none.declare_fields(MessageFields::NONE);
        assert_eq!(Manifest::decode(&none.encode()).unwrap().message_fields(), MessageFields::NONE);
        // The body follows needs_body, declared or not.
        let mut body = m;
        body.flags |= FLAG_NEEDS_BODY;
        assert_eq!(body.message_fields(), MessageFields::DEFAULT | MessageFields::BODY);
        body.declare_fields(MessageFields::KEYS);
        assert_eq!(body.message_fields(), MessageFields::KEYS | MessageFields::BODY);
    }

    #[test]
    fn refuses_other_abi_versions() {
        let mut m = Manifest::new("x", "0", PluginKind::Allocation);
        m.abi_version = 2;
        let e = Manifest::decode(&m.encode()).unwrap_err();
        assert!(matches!(e, PluginError::AbiMismatch { found: 2, supported: 1, .. }), "{e}");
        let mut m = Manifest::new("x", "0", PluginKind::Allocation);
        m.abi_minor = PLUGIN_ABI_MINOR + 1;
        assert!(matches!(Manifest::decode(&m.encode()), Err(PluginError::AbiMismatch { .. })));
    }

    #[test]
    fn malformed_is_an_init_error() {
        let b = Manifest::new("x", "0", PluginKind::Filter).encode();
        for n in 0..b.len() {
            assert!(Manifest::decode(&b[..n]).is_err());
        }
        let mut bad = b.clone();
        bad[10] = 9;
        assert!(matches!(Manifest::decode(&bad), Err(PluginError::Init { .. })));
    }
}
