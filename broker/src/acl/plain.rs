//! RocketMQ's `plain_acl.yml`: the file as written (kept for edits through the admin
//! requests, written back whole and atomically) and the rules compiled from it.
//!
//! ```yaml
//! globalWhiteRemoteAddresses: [ "10.10.103.*" ]
//! accounts:
//!   - accessKey: RocketMQ
//!     secretKey: "12345678"
//!     whiteRemoteAddress:
//!     admin: false
//!     defaultTopicPerm: DENY
//!     defaultGroupPerm: SUB
//!     topicPerms: [ "topicA=DENY", "topicB=PUB|SUB" ]
//!     groupPerms: [ "groupA=DENY", "groupB=PUB|SUB" ]
//! ```

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::address::AddressPattern;
use super::perm::Perm;

/// Shortest access and secret key RocketMQ accepts is 7 characters ("longer than 6").
const MIN_KEY_LEN: usize = 7;

/// The file, field for field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlainAclFile {
    #[serde(default, deserialize_with = "scalars")]
    pub global_white_remote_addresses: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub accounts: Vec<AccountEntry>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub data_version: Vec<DataVersion>,
}

/// One account, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountEntry {
    #[serde(default, deserialize_with = "scalar")]
    pub access_key: String,
    #[serde(default, deserialize_with = "scalar")]
    pub secret_key: String,
    #[serde(default, deserialize_with = "opt_scalar", skip_serializing_if = "Option::is_none")]
    pub white_remote_address: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub admin: bool,
    #[serde(default, deserialize_with = "opt_scalar", skip_serializing_if = "Option::is_none")]
    pub default_topic_perm: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar", skip_serializing_if = "Option::is_none")]
    pub default_group_perm: Option<String>,
    #[serde(default, deserialize_with = "scalars", skip_serializing_if = "Vec::is_empty")]
    pub topic_perms: Vec<String>,
    #[serde(default, deserialize_with = "scalars", skip_serializing_if = "Vec::is_empty")]
    pub group_perms: Vec<String>,
}

/// RocketMQ's `DataVersion` of the file, bumped by every edit through the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    #[serde(default)]
    pub counter: i64,
    #[serde(default)]
    pub timestamp: i64,
}

/// An account, compiled.
#[derive(Debug)]
pub struct Account {
    pub signing_key: remoting::acl::SigningKey,
    pub white: AddressPattern,
    pub admin: bool,
    pub default_topic: Perm,
    pub default_group: Perm,
    pub topics: HashMap<String, Perm>,
    /// By group name (without `%RETRY%`).
    pub groups: HashMap<String, Perm>,
}

/// What requests are checked against.
#[derive(Debug, Default)]
pub struct Rules {
    pub global_white: Vec<AddressPattern>,
    pub accounts: HashMap<String, Account>,
    pub version: DataVersion,
    /// The file these came from, for edits.
    pub file: PlainAclFile,
}

impl PlainAclFile {
    /// Parses YAML text (an empty file has no accounts).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str::<Option<Self>>(text).map(Option::unwrap_or_default).map_err(|e| e.to_string())
    }

    /// Compiles the rules; the error names the first entry that is wrong.
    pub fn compile(self) -> Result<Rules, String> {
        let global_white =
            self.global_white_remote_addresses.iter().map(|p| AddressPattern::parse(p)).collect::<Result<_, _>>()?;
        let mut accounts = HashMap::new();
        for entry in &self.accounts {
            let account = entry.compile()?;
            if accounts.insert(entry.access_key.clone(), account).is_some() {
                return Err(format!("accessKey {} is defined twice", entry.access_key));
            }
        }
        let version = self.data_version.first().copied().unwrap_or_default();
        Ok(Rules { global_white, accounts, version, file: self })
    }

    /// Writes the file to `path` atomically: a temporary file beside it, synced, then
    /// renamed over it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_yaml_ng::to_string(self).map_err(std::io::Error::other)?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(text.as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

impl AccountEntry {
    /// Checks the keys, the address and the permissions, as RocketMQ does when it
    /// loads an account (the secret is never repeated in a message).
    pub fn compile(&self) -> Result<Account, String> {
        if self.access_key.chars().count() < MIN_KEY_LEN {
            return Err(format!("The accessKey={} cannot be null and length should longer than 6", self.access_key));
        }
        if self.secret_key.chars().count() < MIN_KEY_LEN {
            return Err(format!(
                "The secretKey of accessKey={} cannot be null and length should longer than 6",
                self.access_key
            ));
        }
        let white = AddressPattern::parse(self.white_remote_address.as_deref().unwrap_or(""))?;
        let resources = |kind: &str, list: &[String]| -> Result<HashMap<String, Perm>, String> {
            list.iter()
                .map(|entry| match entry.split('=').collect::<Vec<_>>()[..] {
                    [name, perm] => Ok((name.trim().to_owned(), Perm::parse(Some(perm)))),
                    _ => Err(format!("Parse resource permission failed for {kind}:{entry}")),
                })
                .collect()
        };
        Ok(Account {
            signing_key: remoting::acl::SigningKey::new(&self.secret_key),
            white,
            admin: self.admin,
            default_topic: Perm::parse(self.default_topic_perm.as_deref()),
            default_group: Perm::parse(self.default_group_perm.as_deref()),
            topics: resources("topic", &self.topic_perms)?,
            groups: resources("group", &self.group_perms)?,
        })
    }

    /// What an administrator may write through UPDATE_AND_CREATE_ACL_CONFIG:
    /// `compile`'s checks, and permissions spelled as RocketMQ spells them.
    pub fn check_for_update(&self) -> Result<(), String> {
        self.compile()?;
        for (kind, list) in [("topic", &self.topic_perms), ("group", &self.group_perms)] {
            for entry in list {
                match entry.split_once('=') {
                    Some((_, perm)) if Perm::is_spelled_right(perm) => {}
                    Some(_) => {
                        return Err(format!(
                            "Parse resource permission error for {entry}.\nThe expected permissions are 'SUB' or 'PUB' or 'SUB|PUB' or 'PUB|SUB'."
                        ))
                    }
                    None => {
                        return Err(format!(
                            "Parse Resource format error for {entry}.\nThe expected resource format is 'Res=Perm'. For example: {kind}A=SUB"
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads a YAML scalar of any type (`secretKey: 12345678` is a number to YAML, a
/// string to RocketMQ) as its text.
struct ScalarText;

impl serde::de::Visitor<'_> for ScalarText {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string, a number or a boolean")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn opt_scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(ScalarText)
}

fn scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_scalar(d).map(Option::unwrap_or_default)
}

/// A list of scalars; null is empty.
fn scalars<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    struct Item(#[serde(deserialize_with = "opt_scalar")] Option<String>);
    let list: Option<Vec<Item>> = Option::deserialize(d)?;
    Ok(list.unwrap_or_default().into_iter().filter_map(|i| i.0).collect())
}

fn nullable<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_scalar(d)?.is_some_and(|s| s.trim().eq_ignore_ascii_case("true")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RocketMQ's own sample file, as it ships in `distribution/conf`.
    pub(crate) const SAMPLE: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*

accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      # the group should convert to retry topic
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB

  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    # if it is admin, it could access all resources
    admin: true
"#;

    #[test]
    fn rocketmqs_sample_file_compiles() {
        let rules = PlainAclFile::parse(SAMPLE).unwrap().compile().unwrap();
        assert_eq!(rules.global_white.len(), 2);
        let a = &rules.accounts["RocketMQ"];
        assert_eq!(
            PlainAclFile::parse(SAMPLE).unwrap().accounts[0].secret_key,
            "12345678",
            "a number to YAML, a string to RocketMQ"
        );
        assert_eq!(a.white, AddressPattern::Never);
        assert!(!a.admin);
        assert_eq!((a.default_topic, a.default_group), (Perm::DENY, Perm::SUB));
        assert_eq!(a.topics["topicB"], Perm::PUB_SUB);
        assert_eq!(a.groups["groupC"], Perm::SUB);
        let b = &rules.accounts["rocketmq2"];
        assert!(b.admin && b.white.matches("192.168.1.7".parse().unwrap()));
        assert_eq!(b.default_topic, Perm::DENY, "no default: DENY");
    }

    #[test]
    fn empty_and_null_sections_are_empty() {
        for text in ["", "   \n", "accounts:\n", "globalWhiteRemoteAddresses:\naccounts: []\n", "~"] {
            let rules = PlainAclFile::parse(text).unwrap().compile().unwrap();
            assert!(rules.accounts.is_empty() && rules.global_white.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        let short = "accounts:\n  - accessKey: short\n    secretKey: 12345678\n";
        assert!(PlainAclFile::parse(short).unwrap().compile().unwrap_err().contains("accessKey=short"));
        let secret = "accounts:\n  - accessKey: longenough\n    secretKey: 123\n";
        let err = PlainAclFile::parse(secret).unwrap().compile().unwrap_err();
        assert!(err.contains("secretKey") && !err.contains("123"), "{err}");
        let perm = "accounts:\n  - accessKey: longenough\n    secretKey: 12345678\n    topicPerms: [a=PUB=SUB]\n";
        assert!(PlainAclFile::parse(perm).unwrap().compile().unwrap_err().contains("topic:a=PUB=SUB"));
        let addr = "globalWhiteRemoteAddresses: [ 192.168.* ]\n";
        assert!(PlainAclFile::parse(addr).unwrap().compile().unwrap_err().contains("192.168.*"));
        assert!(PlainAclFile::parse("accounts: [ {").is_err());
        let twice = "accounts:\n  - {accessKey: longenough, secretKey: 12345678}\n  - {accessKey: longenough, secretKey: 87654321}\n";
        assert!(PlainAclFile::parse(twice).unwrap().compile().unwrap_err().contains("twice"));
    }

    #[test]
    fn written_back_it_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_acl.yml");
        let mut file = PlainAclFile::parse(SAMPLE).unwrap();
        file.data_version = vec![DataVersion { counter: 3, timestamp: 1_700_000_000_000 }];
        file.write(&path).unwrap();
        let again = PlainAclFile::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(again, file);
        assert_eq!(again.compile().unwrap().version.counter, 3);
    }

    #[test]
    fn updates_must_spell_permissions_right() {
        let mut e = AccountEntry {
            access_key: "longenough".into(),
            secret_key: "12345678".into(),
            topic_perms: vec!["t=ANY".into()],
            ..AccountEntry::default()
        };
        assert!(e.check_for_update().unwrap_err().contains("expected permissions"));
        e.topic_perms = vec!["t".into()];
        assert!(e.check_for_update().is_err());
        e.topic_perms = vec!["t=PUB|SUB".into()];
        e.check_for_update().unwrap();
    }

    proptest::proptest! {
        /// Any text: parsed and compiled, or refused, never a panic.
        #[test]
        fn any_file_is_read_or_refused(text in "\\PC{0,200}") {
            if let Ok(f) = PlainAclFile::parse(&text) {
                let _ = f.compile();
            }
        }

        /// Text shaped like the file, with mistakes in it.
        #[test]
        fn file_shaped_text_is_read_or_refused(
            key in "[a-zA-Z0-9]{0,10}",
            secret in "[0-9a-z:\\[\\]{}]{0,10}",
            addr in "[0-9.*{},-]{0,16}",
            perm in "[A-Z|=a-z]{0,12}",
        ) {
            let text = format!(
                "globalWhiteRemoteAddresses: [ '{addr}' ]\naccounts:\n  - accessKey: {key}\n    secretKey: {secret}\n    whiteRemoteAddress: '{addr}'\n    topicPerms: [ '{perm}' ]\n"
            );
            if let Ok(f) = PlainAclFile::parse(&text) {
                let _ = f.compile();
            }
        }
    }
}
