//! RocketMQ's plain ACL on the broker (`acl_enable`): who signed a request, and
//! whether that account may do what the request does.
//!
//! * [`plain`] — `plain_acl.yml`, read, compiled and written back.
//! * [`address`] — remote address patterns; [`perm`] — permissions.
//! * [`table`] — request code → the topics and groups it needs.
//!
//! [`AccessValidator`] runs before any processor (a [`RequestGuard`] of the
//! dispatcher), in RocketMQ's order: a globally white-listed address passes; then
//! the access key must name an account; an address on the account's white list
//! passes; then the signature must match ([`remoting::acl`]); a PUB on the message
//! trace topic passes; then admin-only codes need an admin, and each resource the
//! request touches needs the account's permission for it (or its default). A refusal
//! is SYSTEM_ERROR with the remark RocketMQ's `AclException` gives, logged and
//! counted. The rules live behind an [`ArcSwap`]: a request reads them without a
//! lock, and a reload or an edit swaps them whole.

pub mod address;
pub mod perm;
pub mod plain;
pub mod table;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use common::ResponseCode;
use remoting::server::RequestGuard;
use remoting::{Channel, RemotingCommand};

use perm::Perm;
use plain::{AccountEntry, DataVersion, PlainAclFile, Rules};
use table::{Resource, Rule};

/// The message trace topic: a PUB on it is never refused (RocketMQ 4.9.4+).
const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";

/// How often the file is compared with what was loaded.
pub const RELOAD_POLL: Duration = Duration::from_millis(500);

/// The prefix of every refusal's remark, as RocketMQ's clients print it.
const ACL_EXCEPTION: &str = "org.apache.rocketmq.acl.common.AclException: ";

/// The broker's ACL: the rules, where they come from, and what was refused.
pub struct AccessValidator {
    path: PathBuf,
    rules: ArcSwap<Rules>,
    /// The file's bytes as last read, to notice a change.
    loaded: Mutex<Vec<u8>>,
    /// Serializes edits through the admin requests.
    edits: Mutex<()>,
    denied: AtomicU64,
    /// Refusals are logged at most once a second (a client retrying with a wrong key
    /// would fill the log); the next line says how many went unlogged.
    refusal_log: LogLimiter,
    reloads: AtomicU64,
    bad_reloads: AtomicU64,
}

/// At most one log line per `LogLimiter::PERIOD_MS`.
#[derive(Default)]
struct LogLimiter {
    last_ms: AtomicI64,
    unlogged: AtomicU64,
}

impl LogLimiter {
    const PERIOD_MS: i64 = 1000;

    /// `Some(n)`: log now, with `n` events since the last line that were not logged.
    fn admit(&self, now_ms: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if now_ms - last >= Self::PERIOD_MS
            && self.last_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.unlogged.swap(0, Ordering::Relaxed));
        }
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl AccessValidator {
    /// The file: `configured`, else RocketMQ's `$ROCKETMQ_HOME/conf/plain_acl.yml`.
    pub fn default_path(configured: Option<&Path>) -> Result<PathBuf, String> {
        match configured {
            Some(p) => Ok(p.to_owned()),
            None => std::env::var_os("ROCKETMQ_HOME")
                .map(|home| PathBuf::from(home).join("conf").join("plain_acl.yml"))
                .ok_or_else(|| {
                    "acl_enable is on but neither acl_file nor ROCKETMQ_HOME says where plain_acl.yml is".into()
                }),
        }
    }

    /// Loads `path`; a missing or broken file is an error (a broker asked to enforce
    /// ACL does not start without rules).
    pub fn open(path: PathBuf) -> Result<Arc<Self>, String> {
        let bytes = std::fs::read(&path).map_err(|e| format!("cannot read the ACL file {}: {e}", path.display()))?;
        let rules = compile(&bytes).map_err(|e| format!("the ACL file {} is wrong: {e}", path.display()))?;
        info!(file = %path.display(), accounts = rules.accounts.len(), "ACL enabled");
        Ok(Arc::new(Self {
            path,
            rules: ArcSwap::from_pointee(rules),
            loaded: Mutex::new(bytes),
            edits: Mutex::new(()),
            denied: AtomicU64::new(0),
            refusal_log: LogLimiter::default(),
            reloads: AtomicU64::new(0),
            bad_reloads: AtomicU64::new(0),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Requests refused so far.
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    /// Changes of the file loaded, and changes refused (the last good rules stayed).
    pub fn reloads(&self) -> (u64, u64) {
        (self.reloads.load(Ordering::Relaxed), self.bad_reloads.load(Ordering::Relaxed))
    }

    /// The file's version (bumped by every edit through the broker).
    pub fn version(&self) -> DataVersion {
        self.rules.load().version
    }

    /// Reloads the file when its bytes changed. A file that does not read or compile
    /// keeps the last good rules, and says why.
    pub fn reload_if_changed(&self) {
        let Ok(bytes) = std::fs::read(&self.path) else {
            // Being replaced, or gone: the rules stay until a readable file is back.
            return;
        };
        let mut loaded = self.loaded.lock();
        if *loaded == bytes {
            return;
        }
        match compile(&bytes) {
            Ok(rules) => {
                info!(file = %self.path.display(), accounts = rules.accounts.len(), "ACL file reloaded");
                self.rules.store(Arc::new(rules));
                self.reloads.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                warn!(file = %self.path.display(), error = %e, "ACL file change refused; the previous rules stay");
                self.bad_reloads.fetch_add(1, Ordering::Relaxed);
            }
        }
        *loaded = bytes;
    }

    /// Polls the file until `cancel`.
    pub async fn watch(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(RELOAD_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.reload_if_changed()).await.ok();
        }
    }

    /// Decides `req` from `peer`; the error is the refusal's reason, in RocketMQ's words.
    pub fn check(&self, peer: IpAddr, req: &RemotingCommand) -> Result<(), String> {
        let rules = self.rules.load();
        if rules.global_white.iter().any(|p| p.matches(peer)) {
            return Ok(());
        }
        // The C++ client sends an empty AccessKey when it has no credentials.
        let Some(ak) = req.ext_fields.get(remoting::acl::ACCESS_KEY).filter(|k| !k.is_empty()) else {
            return Err("No accessKey is configured".into());
        };
        let Some(account) = rules.accounts.get(ak) else {
            return Err(format!("No acl config for {ak}"));
        };
        if account.white.matches(peer) {
            return Ok(());
        }
        if !remoting::acl::verify_with(&account.signing_key, req) {
            return Err(format!("Check signature failed for accessKey={ak}"));
        }
        let needs = table::needs(req)?;
        if needs.iter().any(|(r, p)| *p == Perm::PUB && matches!(r, Resource::Topic(t) if t == TRACE_TOPIC)) {
            return Ok(());
        }
        if table::rule(req.request_code()) == Some(Rule::Admin) && !account.admin {
            return Err(format!("Need admin permission for request code={}, but accessKey={ak} is not", req.code));
        }
        if account.admin && account.topics.is_empty() && account.groups.is_empty() {
            return Ok(());
        }
        for (resource, needed) in &needs {
            let held = match resource {
                Resource::Topic(t) => account.topics.get(t).copied().unwrap_or(account.default_topic),
                Resource::Group(g) => account.groups.get(g).copied().unwrap_or(account.default_group),
            };
            if !held.grants(*needed) {
                return Err(format!("No default permission for {}", resource.describe()));
            }
        }
        Ok(())
    }

    /// Authenticates a gRPC client's call (RocketMQ 5's ACL 1.0): the account's
    /// access key and signing key, with which the gRPC endpoint signs the remoting
    /// requests the call becomes, so [`Self::check`] authorizes them as any request.
    /// `Ok(None)`: the call carries no authorization and its peer is white-listed.
    pub fn authenticate_grpc(
        &self,
        peer: IpAddr,
        auth: Option<&remoting::acl::GrpcAuthorization>,
        date_time: Option<&str>,
    ) -> Result<Option<(String, remoting::acl::SigningKey)>, String> {
        let rules = self.rules.load();
        let refused = |why: String| {
            self.denied.fetch_add(1, Ordering::Relaxed);
            if let Some(unlogged) = self.refusal_log.admit(common::time::now_ms()) {
                warn!(%peer, reason = %why, unlogged_since_last_line = unlogged, "gRPC call refused by ACL");
            }
            Err(why)
        };
        let Some(auth) = auth else {
            if rules.global_white.iter().any(|p| p.matches(peer)) {
                return Ok(None);
            }
            return refused("No accessKey is configured (the call carries no authorization)".into());
        };
        let Some(account) = rules.accounts.get(&auth.access_key) else {
            return refused(format!("No acl config for {}", auth.access_key));
        };
        if !date_time.is_some_and(|d| auth.verify(&account.signing_key, d)) {
            return refused(format!("Check signature failed for accessKey={}", auth.access_key));
        }
        Ok(Some((auth.access_key.clone(), account.signing_key.clone())))
    }

    /// Creates or replaces an account (UPDATE_AND_CREATE_ACL_CONFIG), in the file
    /// and in the rules.
    pub fn upsert_account(&self, entry: AccountEntry) -> Result<(), String> {
        entry.check_for_update()?;
        self.edit(|file| match file.accounts.iter_mut().find(|a| a.access_key == entry.access_key) {
            Some(a) => *a = entry,
            None => file.accounts.push(entry),
        })
    }

    /// Deletes an account (DELETE_ACL_CONFIG); false when there is none.
    pub fn delete_account(&self, access_key: &str) -> Result<bool, String> {
        if !self.rules.load().accounts.contains_key(access_key) {
            return Ok(false);
        }
        self.edit(|file| file.accounts.retain(|a| a.access_key != access_key))?;
        Ok(true)
    }

    /// Replaces the global white list (UPDATE_GLOBAL_WHITE_ADDRS_CONFIG).
    pub fn set_global_white(&self, addresses: Vec<String>) -> Result<(), String> {
        for a in &addresses {
            address::AddressPattern::parse(a)?;
        }
        self.edit(|file| file.global_white_remote_addresses = addresses)
    }

    /// The white list and the accounts as the file has them (GET_BROKER_CLUSTER_ACL_CONFIG).
    pub fn config(&self) -> remoting::body::AclConfigBody {
        let rules = self.rules.load();
        remoting::body::AclConfigBody {
            global_white_addrs: rules.file.global_white_remote_addresses.clone(),
            plain_access_configs: rules
                .file
                .accounts
                .iter()
                .map(|a| remoting::body::PlainAccessConfig {
                    access_key: a.access_key.clone(),
                    secret_key: a.secret_key.clone(),
                    white_remote_address: a.white_remote_address.clone(),
                    admin: a.admin,
                    default_topic_perm: a.default_topic_perm.clone(),
                    default_group_perm: a.default_group_perm.clone(),
                    topic_perms: a.topic_perms.clone(),
                    group_perms: a.group_perms.clone(),
                })
                .collect(),
        }
    }

    /// Applies `change` to the file, bumps its version, checks the result compiles,
    /// writes it atomically and swaps the rules.
    fn edit(&self, change: impl FnOnce(&mut PlainAclFile)) -> Result<(), String> {
        let _edit = self.edits.lock();
        let mut file = self.rules.load().file.clone();
        change(&mut file);
        let previous = file.data_version.first().copied().unwrap_or_default();
        file.data_version = vec![DataVersion { counter: previous.counter + 1, timestamp: common::time::now_ms() }];
        let rules = file.clone().compile()?;
        file.write(&self.path).map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        // What was written is what is loaded: the poll sees no change.
        *self.loaded.lock() = std::fs::read(&self.path).unwrap_or_default();
        self.rules.store(Arc::new(rules));
        Ok(())
    }
}

fn compile(bytes: &[u8]) -> Result<Rules, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    PlainAclFile::parse(text)?.compile()
}

impl RequestGuard for AccessValidator {
    fn refuse(&self, channel: &Channel, request: &RemotingCommand) -> Option<RemotingCommand> {
        let why = self.check(channel.peer_addr().ip(), request).err()?;
        self.denied.fetch_add(1, Ordering::Relaxed);
        if let Some(unlogged) = self.refusal_log.admit(common::time::now_ms()) {
            warn!(
                peer = %channel.peer_addr(),
                code = request.code,
                reason = %why,
                unlogged_since_last_line = unlogged,
                "request refused by ACL"
            );
        }
        Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("{ACL_EXCEPTION}{why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remoting::acl::{sign, Credentials};
    use remoting::RequestCode;

    const FILE: &str = r#"
globalWhiteRemoteAddresses: [ "10.10.103.*" ]
accounts:
  - accessKey: producer1
    secretKey: secret-p1
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms: [ "orders=PUB", "audit=SUB", "closed=DENY" ]
    groupPerms: [ "blocked=DENY" ]
  - accessKey: trusted1
    secretKey: secret-t1
    whiteRemoteAddress: 192.168.1.*
    defaultTopicPerm: DENY
  - accessKey: admin001
    secretKey: secret-a1
    admin: true
"#;

    fn validator(text: &str) -> (tempfile::TempDir, Arc<AccessValidator>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_acl.yml");
        std::fs::write(&path, text).unwrap();
        let v = AccessValidator::open(path).unwrap();
        (dir, v)
    }

    fn send(topic: &str, creds: Option<(&str, &str)>) -> RemotingCommand {
        let mut r = RemotingCommand::request(RequestCode::SEND_MESSAGE_V2);
        r.ext_fields.insert("a", "PG");
        r.ext_fields.insert("b", topic);
        r.body = remoting::command::Body::Bytes(bytes::Bytes::from_static(b"body"));
        if let Some((ak, sk)) = creds {
            sign(&mut r, &Credentials::new(ak, sk));
        }
        r
    }

    fn local() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn refusals_in_rocketmqs_order_and_words() {
        let (_d, v) = validator(FILE);
        assert_eq!(v.check(local(), &send("orders", None)).unwrap_err(), "No accessKey is configured");
        assert_eq!(
            v.check(local(), &send("orders", Some(("nobody00", "x")))).unwrap_err(),
            "No acl config for nobody00"
        );
        assert_eq!(
            v.check(local(), &send("orders", Some(("producer1", "wrong-secret")))).unwrap_err(),
            "Check signature failed for accessKey=producer1"
        );
        v.check(local(), &send("orders", Some(("producer1", "secret-p1")))).unwrap();
        assert_eq!(
            v.check(local(), &send("audit", Some(("producer1", "secret-p1")))).unwrap_err(),
            "No default permission for topic:audit"
        );
        assert_eq!(
            v.check(local(), &send("elsewhere", Some(("producer1", "secret-p1")))).unwrap_err(),
            "No default permission for topic:elsewhere"
        );
        // A tampered request does not verify.
        let mut r = send("orders", Some(("producer1", "secret-p1")));
        r.ext_fields.insert("b", "closed");
        assert!(v.check(local(), &r).unwrap_err().starts_with("Check signature failed"));
        // The trace topic takes anyone's traces.
        v.check(local(), &send(TRACE_TOPIC, Some(("producer1", "secret-p1")))).unwrap();
    }

    #[test]
    fn groups_and_retry_topics() {
        let (_d, v) = validator(FILE);
        let pull = |group: &str| {
            let mut r = RemotingCommand::request(RequestCode::PULL_MESSAGE);
            r.ext_fields.insert("consumerGroup", group);
            r.ext_fields.insert("topic", "audit");
            sign(&mut r, &Credentials::new("producer1", "secret-p1"));
            r
        };
        v.check(local(), &pull("any-group")).unwrap();
        assert_eq!(v.check(local(), &pull("blocked")).unwrap_err(), "No default permission for group:blocked");
        // A send to a retry topic needs the group's SUB, not the topic's PUB.
        // (A consumer sending a message back itself names its group as the producer.)
        let back = |group: &str| {
            let mut r = RemotingCommand::request(RequestCode::SEND_MESSAGE_V2);
            r.ext_fields.insert("a", group);
            r.ext_fields.insert("b", format!("%RETRY%{group}"));
            sign(&mut r, &Credentials::new("producer1", "secret-p1"));
            r
        };
        v.check(local(), &back("any-group")).unwrap();
        assert_eq!(v.check(local(), &back("blocked")).unwrap_err(), "No default permission for group:blocked");
    }

    #[test]
    fn white_lists_and_admins() {
        let (_d, v) = validator(FILE);
        // Globally white-listed: nothing is checked.
        v.check("10.10.103.7".parse().unwrap(), &send("closed", None)).unwrap();
        // The account's white list skips signature and permissions; elsewhere not.
        let unsigned_by_trusted = {
            let mut r = send("closed", None);
            r.ext_fields.insert(remoting::acl::ACCESS_KEY, "trusted1");
            r
        };
        v.check("192.168.1.20".parse().unwrap(), &unsigned_by_trusted).unwrap();
        assert!(v.check("192.168.2.20".parse().unwrap(), &unsigned_by_trusted).is_err());
        // Admin codes.
        let create = |ak: &str, sk: &str| {
            let mut r = RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_TOPIC);
            r.ext_fields.insert("topic", "new");
            sign(&mut r, &Credentials::new(ak, sk));
            r
        };
        assert_eq!(
            v.check(local(), &create("producer1", "secret-p1")).unwrap_err(),
            "Need admin permission for request code=17, but accessKey=producer1 is not"
        );
        v.check(local(), &create("admin001", "secret-a1")).unwrap();
        // An admin without per-resource rules may do anything.
        v.check(local(), &send("closed", Some(("admin001", "secret-a1")))).unwrap();
    }

    #[test]
    fn a_refusal_is_a_system_error_and_counted() {
        let (_d, v) = validator(FILE);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
            let (stream, _) = server.unwrap();
            let _client = client.unwrap();
            let ch = remoting::channel::Channel::spawn(
                stream,
                Arc::new(remoting::server::Dispatcher::new()),
                &remoting::channel::ChannelOptions::default(),
                tokio_util::task::TaskTracker::new(),
                CancellationToken::new(),
            )
            .unwrap();
            let refusal = v.refuse(&ch, &send("orders", None)).unwrap();
            assert_eq!(refusal.code, ResponseCode::SYSTEM_ERROR.0);
            assert_eq!(
                refusal.remark.as_deref(),
                Some("org.apache.rocketmq.acl.common.AclException: No accessKey is configured")
            );
            assert_eq!(v.denied(), 1);
        });
    }

    #[test]
    fn refusals_are_logged_at_most_once_a_second_with_the_count_of_the_rest() {
        let limiter = LogLimiter::default();
        assert_eq!(limiter.admit(10_000), Some(0));
        assert_eq!(limiter.admit(10_001), None);
        assert_eq!(limiter.admit(10_999), None);
        assert_eq!(limiter.admit(11_000), Some(2));
        assert_eq!(limiter.admit(11_500), None);
        assert_eq!(limiter.admit(20_000), Some(1));
    }

    #[test]
    fn a_changed_file_reloads_and_a_broken_one_keeps_the_rules() {
        let (_d, v) = validator(FILE);
        let signed = send("audit", Some(("producer1", "secret-p1")));
        assert!(v.check(local(), &signed).is_err());
        std::fs::write(v.path(), FILE.replace("audit=SUB", "audit=PUB")).unwrap();
        v.reload_if_changed();
        v.check(local(), &signed).unwrap();
        assert_eq!(v.reloads(), (1, 0));
        std::fs::write(v.path(), "accounts: [ {").unwrap();
        v.reload_if_changed();
        v.check(local(), &signed).unwrap();
        assert_eq!(v.reloads(), (1, 1));
        // Unchanged bytes are not reloaded again.
        v.reload_if_changed();
        assert_eq!(v.reloads(), (1, 1));
    }

    #[test]
    fn edits_are_written_back_and_versioned() {
        let (_d, v) = validator(FILE);
        let entry = AccountEntry {
            access_key: "newuser1".into(),
            secret_key: "newsecret".into(),
            default_topic_perm: Some("PUB".into()),
            ..AccountEntry::default()
        };
        v.upsert_account(entry).unwrap();
        assert_eq!(v.version().counter, 1);
        v.check(local(), &send("anything", Some(("newuser1", "newsecret")))).unwrap();
        let on_disk = PlainAclFile::parse(&std::fs::read_to_string(v.path()).unwrap()).unwrap();
        assert!(on_disk.accounts.iter().any(|a| a.access_key == "newuser1"));
        assert_eq!(on_disk.data_version[0].counter, 1);
        assert!(v.delete_account("newuser1").unwrap());
        assert!(!v.delete_account("newuser1").unwrap());
        assert!(v.check(local(), &send("anything", Some(("newuser1", "newsecret")))).is_err());
        v.set_global_white(vec!["127.0.0.*".into()]).unwrap();
        v.check(local(), &send("closed", None)).unwrap();
        assert!(v.set_global_white(vec!["127.0.*".into()]).is_err());
        assert_eq!(v.version().counter, 3);
        // The poll sees its own writes as no change.
        v.reload_if_changed();
        assert_eq!(v.reloads(), (0, 0));
    }
}
