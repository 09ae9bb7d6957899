//! RocketMQ's ACL request signature (`remoting-protocol.md` §13), for both ends.
//!
//! A signing client adds `AccessKey` (and `SecurityToken` when it has one) to the
//! request's extFields, then signs: HMAC-SHA1, keyed with the secret key, over the
//! values of every extField but `Signature`, in the order of their keys as Java's
//! `TreeMap<String, _>` sorts them (UTF-16 code units), concatenated with no
//! separator, followed by the body; Base64 with padding. The server recomputes the
//! same signature with the secret it holds for the access key and compares the two
//! in constant time.
//!
//! What an account may do is the broker's business (its permission table and
//! account file); this module only proves who signed a request.

use std::cmp::Ordering;
use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::command::{Body, ExtFields, RemotingCommand};

/// The extField naming the account that signed a request.
pub const ACCESS_KEY: &str = "AccessKey";
/// The extField holding the signature.
pub const SIGNATURE: &str = "Signature";
/// The extField holding a temporary credential's token, signed like any field.
pub const SECURITY_TOKEN: &str = "SecurityToken";
/// The extField a query by unique key adds. RocketMQ's brokers leave it out of the
/// signature; its 4.9.4+ Java clients sign it. We sign without it, and accept both.
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

/// An account's credentials, as RocketMQ's `SessionCredentials`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub security_token: Option<String>,
}

impl Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self { access_key: access_key.into(), secret_key: secret_key.into(), security_token: None }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("security_token", &self.security_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Java's `String.compareTo`: UTF-16 code unit order. It differs from byte order only
/// between a character above U+FFFF (a surrogate pair, 0xD800..) and one in
/// U+E000..=U+FFFF.
fn java_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// A secret key ready to sign: HMAC's keyed state, computed once per account
/// rather than once per request (it costs two of the ~20 SHA-1 blocks a 1 KiB send
/// hashes).
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha1>);

impl SigningKey {
    pub fn new(secret: &str) -> Self {
        // HMAC accepts a key of any length.
        Self(Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length"))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// HMAC-SHA1 of what a signature covers: `fields` but `Signature` (and, unless
/// `with_unique_key_query`, `_UNIQUE_KEY_QUERY`), values in key order, then `body`.
fn mac(key: &SigningKey, fields: &ExtFields, body: &Body, with_unique_key_query: bool) -> Hmac<Sha1> {
    let mut entries: Vec<(&str, &str)> =
        fields.iter().filter(|(k, _)| *k != SIGNATURE && (with_unique_key_query || *k != UNIQUE_KEY_QUERY)).collect();
    entries.sort_unstable_by(|a, b| java_order(a.0, b.0));
    let mut mac = key.0.clone();
    for (_, value) in entries {
        mac.update(value.as_bytes());
    }
    match body {
        Body::Empty => {}
        Body::Bytes(b) => mac.update(b),
        Body::Chain(parts) => parts.iter().for_each(|p| mac.update(p)),
    }
    mac
}

/// The signature of `fields` and `body` under `secret` (Base64 with padding).
pub fn signature(secret: &str, fields: &ExtFields, body: &Body) -> String {
    signature_of(&SigningKey::new(secret), fields, body, false)
}

fn signature_of(key: &SigningKey, fields: &ExtFields, body: &Body, with_unique_key_query: bool) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(mac(key, fields, body, with_unique_key_query).finalize().into_bytes())
}

/// Signs `cmd` as RocketMQ's `AclClientRPCHook` does: adds the access key (and the
/// security token), then the signature of everything else.
pub fn sign(cmd: &mut RemotingCommand, credentials: &Credentials) {
    sign_with(cmd, credentials, &SigningKey::new(&credentials.secret_key));
}

/// [`sign`] with the secret's [`SigningKey`] made beforehand.
pub fn sign_with(cmd: &mut RemotingCommand, credentials: &Credentials, key: &SigningKey) {
    cmd.ext_fields.insert(ACCESS_KEY, &credentials.access_key);
    if let Some(token) = &credentials.security_token {
        cmd.ext_fields.insert(SECURITY_TOKEN, token);
    }
    let sig = signature_of(key, &cmd.ext_fields, &cmd.body, false);
    cmd.ext_fields.insert(SIGNATURE, sig);
}

/// Whether `cmd` carries the signature `secret` gives it, compared in constant time.
/// A request with no `Signature` field is not signed.
pub fn verify(secret: &str, cmd: &RemotingCommand) -> bool {
    verify_with(&SigningKey::new(secret), cmd)
}

/// [`verify`] with the secret's [`SigningKey`] made beforehand.
pub fn verify_with(key: &SigningKey, cmd: &RemotingCommand) -> bool {
    let Some(given) = cmd.ext_fields.get(SIGNATURE) else { return false };
    let same = |expected: String| -> bool { expected.as_bytes().ct_eq(given.as_bytes()).into() };
    same(signature_of(key, &cmd.ext_fields, &cmd.body, false))
        || (cmd.ext_fields.get(UNIQUE_KEY_QUERY).is_some() && same(signature_of(key, &cmd.ext_fields, &cmd.body, true)))
}

/// RocketMQ 5's gRPC authorization (ACL 1.0): the `authorization` metadata
/// `MQv2-HMAC-SHA1 Credential=<accessKey>, SignedHeaders=x-mq-date-time, Signature=<hex>`,
/// where the signature is HMAC-SHA1 of the `x-mq-date-time` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcAuthorization {
    pub access_key: String,
    /// Lower-case hex.
    pub signature: String,
}

impl GrpcAuthorization {
    /// Parses the `authorization` value; `None` if it is not RocketMQ's.
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.trim().strip_prefix("MQv2-HMAC-SHA1")?;
        let mut access_key = None;
        let mut signature = None;
        for part in rest.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            match k.trim() {
                "Credential" => access_key = Some(v.trim().to_owned()),
                "Signature" => signature = Some(v.trim().to_ascii_lowercase()),
                _ => {}
            }
        }
        Some(Self { access_key: access_key.filter(|k| !k.is_empty())?, signature: signature? })
    }

    /// Signs `date_time` (the `x-mq-date-time` value) as `credentials`, as 5.x clients do.
    pub fn sign(credentials: &Credentials, date_time: &str) -> Self {
        Self {
            access_key: credentials.access_key.clone(),
            signature: hex_mac(&SigningKey::new(&credentials.secret_key), date_time),
        }
    }

    /// The `authorization` metadata value.
    pub fn header_value(&self) -> String {
        format!(
            "MQv2-HMAC-SHA1 Credential={}, SignedHeaders=x-mq-date-time, Signature={}",
            self.access_key, self.signature
        )
    }

    /// Whether the signature is `key`'s of `date_time`, compared in constant time.
    pub fn verify(&self, key: &SigningKey, date_time: &str) -> bool {
        hex_mac(key, date_time).as_bytes().ct_eq(self.signature.as_bytes()).into()
    }
}

fn hex_mac(key: &SigningKey, text: &str) -> String {
    let mut mac = key.0.clone();
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_authorization_parses_and_verifies_as_the_5x_clients_sign() {
        let a = GrpcAuthorization::parse(
            "MQv2-HMAC-SHA1 Credential=RocketMQ, SignedHeaders=x-mq-date-time, Signature=AB01",
        )
        .unwrap();
        assert_eq!(a.access_key, "RocketMQ");
        assert_eq!(a.signature, "ab01");
        assert!(GrpcAuthorization::parse("Bearer x").is_none());
        assert!(GrpcAuthorization::parse("MQv2-HMAC-SHA1 Signature=ab").is_none(), "no access key");
        // HMAC-SHA1(key "12345678", "20240101T000000Z"), as Python's hmac computes it.
        let key = SigningKey::new("12345678");
        let good =
            GrpcAuthorization { access_key: "k".into(), signature: "c6fc09021280e20533c17364f135c0e3217d83e9".into() };
        assert!(good.verify(&key, "20240101T000000Z"));
        assert!(!good.verify(&key, "20240101T000001Z"));
        assert!(!good.verify(&SigningKey::new("other"), "20240101T000000Z"));
        let signed = GrpcAuthorization::sign(&Credentials::new("k", "12345678"), "20240101T000000Z");
        assert_eq!(signed, good);
        assert_eq!(GrpcAuthorization::parse(&signed.header_value()), Some(good));
    }
    use bytes::Bytes;

    fn fields(pairs: &[(&str, &str)]) -> ExtFields {
        let mut f = ExtFields::new();
        for (k, v) in pairs {
            f.insert(k, v);
        }
        f
    }

    fn hmac_b64(secret: &str, data: &[u8]) -> String {
        let mut m = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(data);
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    }

    /// RFC 2202's first HMAC-SHA1 vector, through the whole signing path: one field
    /// whose value is the data.
    #[test]
    fn rfc_2202_vector() {
        let key = "\u{b}".repeat(20);
        let f = fields(&[("k", "Hi There")]);
        // b617318655057264e28bc0b6fb378c8ef146be00
        assert_eq!(signature(&key, &f, &Body::Empty), "thcxhlUFcmTii8C2+zeMjvFGvgA=");
    }

    /// The protocol document's example: values in key order, then the body.
    #[test]
    fn values_in_key_order_then_the_body() {
        let f = fields(&[("b", "T"), ("a", "G"), ("AccessKey", "ak")]);
        let body = Body::Bytes(Bytes::from_static(b"xy"));
        assert_eq!(signature("secret", &f, &body), hmac_b64("secret", b"akGTxy"));
        // A chained body signs as its concatenation.
        let chain = Body::Chain(vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")]);
        assert_eq!(signature("secret", &f, &chain), hmac_b64("secret", b"akGTxy"));
    }

    #[test]
    fn an_empty_body_adds_nothing() {
        let f = fields(&[("AccessKey", "ak"), ("topic", "T")]);
        assert_eq!(signature("s", &f, &Body::Empty), hmac_b64("s", b"akT"));
        assert_eq!(signature("s", &f, &Body::Bytes(Bytes::new())), hmac_b64("s", b"akT"));
    }

    #[test]
    fn non_ascii_values_sign_as_utf8() {
        let f = fields(&[("AccessKey", "ak"), ("topic", "主题-é")]);
        assert_eq!(signature("密钥", &f, &Body::Empty), hmac_b64("密钥", "ak主题-é".as_bytes()));
    }

    /// U+FF61 (UTF-8 `EF BD A1`, UTF-16 `FF61`) and U+1F600 (UTF-8 `F0 9F 98 80`,
    /// UTF-16 `D83D DE00`): byte order puts U+FF61 first, Java's order U+1F600.
    #[test]
    fn keys_sort_by_utf16_units_as_java_does() {
        let (bmp, astral) = ("\u{FF61}", "\u{1F600}");
        assert!(bmp.as_bytes() < astral.as_bytes(), "byte order: the BMP key first");
        let f = fields(&[(bmp, "B"), (astral, "A")]);
        assert_eq!(signature("s", &f, &Body::Empty), hmac_b64("s", b"AB"), "Java's order: the astral key first");
    }

    #[test]
    fn sign_then_verify_and_tampering_fails() {
        let creds = Credentials::new("RocketMQ", "12345678");
        let mut cmd = RemotingCommand::request(crate::RequestCode(310));
        cmd.ext_fields.insert("a", "group");
        cmd.ext_fields.insert("b", "TopicTest");
        cmd.body = Body::Bytes(Bytes::from_static(b"hello"));
        sign(&mut cmd, &creds);
        assert_eq!(cmd.ext_fields.get(ACCESS_KEY), Some("RocketMQ"));
        assert!(verify("12345678", &cmd));
        assert!(!verify("12345679", &cmd), "another secret");
        let mut other = cmd.clone();
        other.ext_fields.insert("b", "OtherTopic");
        assert!(!verify("12345678", &other), "a changed field");
        let mut other = cmd.clone();
        other.body = Body::Bytes(Bytes::from_static(b"hellO"));
        assert!(!verify("12345678", &other), "a changed body");
        let mut other = cmd.clone();
        other.ext_fields.remove(SIGNATURE);
        assert!(!verify("12345678", &other), "no signature");
        // Re-signing replaces the signature rather than signing it.
        let before = cmd.ext_fields.get(SIGNATURE).unwrap().to_owned();
        sign(&mut cmd, &creds);
        assert_eq!(cmd.ext_fields.get(SIGNATURE), Some(before.as_str()));
    }

    #[test]
    fn a_security_token_is_signed_too() {
        let creds = Credentials { security_token: Some("tok".into()), ..Credentials::new("ak", "sk") };
        let mut cmd = RemotingCommand::request(crate::RequestCode(34));
        sign(&mut cmd, &creds);
        assert_eq!(cmd.ext_fields.get(SECURITY_TOKEN), Some("tok"));
        // AccessKey < SecurityToken.
        assert_eq!(cmd.ext_fields.get(SIGNATURE).unwrap(), hmac_b64("sk", b"aktok"));
    }

    /// A query by unique key verifies whether or not the client signed the flag.
    #[test]
    fn the_unique_key_query_flag_is_signed_or_not() {
        let mut cmd = RemotingCommand::request(crate::RequestCode(12));
        cmd.ext_fields.insert("topic", "T");
        cmd.ext_fields.insert(UNIQUE_KEY_QUERY, "true");
        sign(&mut cmd, &Credentials::new("ak", "sk"));
        assert_eq!(cmd.ext_fields.get(SIGNATURE).unwrap(), hmac_b64("sk", b"akT"), "left out, as brokers do");
        assert!(verify("sk", &cmd));
        // As a 4.9.4+ Java client signs it: every field.
        cmd.ext_fields.insert(SIGNATURE, hmac_b64("sk", b"aktrueT"));
        assert!(verify("sk", &cmd));
        cmd.ext_fields.insert(SIGNATURE, hmac_b64("sk", b"akfalseT"));
        assert!(!verify("sk", &cmd));
    }

    #[test]
    fn credentials_never_print_the_secret() {
        let shown = format!("{:?}", Credentials::new("ak", "very-secret"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    proptest::proptest! {
        /// Any fields and body: signing never panics, and what was signed verifies.
        #[test]
        fn any_request_signs_and_verifies(
            pairs in proptest::collection::vec(("\\PC{0,8}", "\\PC{0,16}"), 0..8),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            secret in "\\PC{0,12}",
        ) {
            let mut cmd = RemotingCommand::request(crate::RequestCode(10));
            for (k, v) in &pairs {
                cmd.ext_fields.insert(k, v);
            }
            cmd.body = Body::Bytes(Bytes::from(body));
            sign(&mut cmd, &Credentials::new("ak", secret.clone()));
            proptest::prop_assert!(verify(&secret, &cmd));
        }

        /// Any received request, any signature text: checking never panics.
        #[test]
        fn verifying_garbage_never_panics(
            pairs in proptest::collection::vec(("\\PC{0,8}", "\\PC{0,16}"), 0..8),
            sig in "\\PC{0,40}",
        ) {
            let mut cmd = RemotingCommand::request(crate::RequestCode(10));
            for (k, v) in &pairs {
                cmd.ext_fields.insert(k, v);
            }
            cmd.ext_fields.insert(SIGNATURE, &sig);
            let _ = verify("secret", &cmd);
        }
    }
}
