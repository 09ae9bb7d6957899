//! A master store and a slave store in one process, replicating over loopback with
//! the real HA transport: the slave's commit log becomes the master's byte for byte,
//! SYNC_MASTER puts wait for the slave, and a peer that is not a slave is dropped
//! without disturbing the slaves; over TLS as over plain TCP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use replication::{AckPolicy, HaMaster, HaSettings, HaSlave};
use store::{GetRequest, MessageStore, PutMessage, PutStatus, ReplicaAck, StoreConfig, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const SEGMENT: u64 = 1 << 20;

fn open(dir: &std::path::Path, port: u16, opts: StoreOptions) -> Arc<MessageStore> {
    let cfg = StoreConfig {
        store_path_root_dir: dir.to_owned(),
        mapped_file_size_commit_log: bytesize::ByteSize::b(SEGMENT),
        disk_space_warning_level_ratio: 1.0,
        disk_space_clean_forcibly_ratio: 1.0,
        disk_max_used_space_ratio: 95,
        ..StoreConfig::default()
    };
    Arc::new(MessageStore::open_with(Arc::new(cfg), ([127, 0, 0, 1], port).into(), opts).expect("store opens"))
}

fn settings() -> HaSettings {
    HaSettings { heartbeat_interval: Duration::from_millis(200), ..HaSettings::default() }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn put(store: &MessageStore, i: usize) -> store::PutResult {
    let body = Bytes::from(format!("message-{i}-{}", "x".repeat(i % 300)));
    store.put(PutMessage::new("Ha", (i % 3) as i32, body).with_properties(format!("TAGS\u{1}t{}", i % 5))).await
}

fn log_bytes(store: &MessageStore, from: i64, to: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let chunk = store.commit_log_data(at, (to - at) as usize).expect("readable commit log");
        at += chunk.len() as i64;
        out.extend_from_slice(&chunk);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_copies_the_master_byte_for_byte_across_segments() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path(), 10911, StoreOptions::default());
    // More than one 1 MiB segment before the slave connects (~260 bytes a record),
    // so where an empty slave starts does not depend on when its first report lands.
    for i in 0..6000 {
        assert_eq!(put(&master, i).await.status, PutStatus::PutOk);
    }
    assert!(master.commit_log_max_offset() > SEGMENT as i64, "the master has a second segment");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ha = HaMaster::start(listener, master.clone(), settings()).unwrap();
    let slave = open(sd.path(), 10921, StoreOptions::default());
    let (_tx, rx) = watch::channel(Some(ha.local_addr().to_string()));
    let follower = HaSlave::start(slave.clone(), rx, settings());
    // And more while it follows.
    for i in 6000..8000 {
        assert_eq!(put(&master, i).await.status, PutStatus::PutOk);
    }
    let end = master.commit_log_max_offset();
    wait_until("the slave to catch up", || slave.commit_log_max_offset() == end).await;
    // An empty slave starts at the master's newest segment, as RocketMQ's does.
    let start = slave.commit_log_min_offset();
    assert_eq!(start % SEGMENT as i64, 0);
    assert!(start > 0, "the master had several segments; the slave starts at the last");
    assert_eq!(log_bytes(&slave, start, end), log_bytes(&master, start, end));
    // The slave built its own consume queues from the copy.
    wait_until("the slave's consume queues", || {
        (0..3).all(|q| slave.max_offset_in_queue("Ha", q) == master.max_offset_in_queue("Ha", q))
    })
    .await;
    let info = ha.runtime_info();
    assert_eq!(info.ha_connection_info.len(), 1);
    assert_eq!(info.ha_connection_info[0].slave_ack_offset, end);
    assert!(info.ha_connection_info[0].in_sync);
    assert!(follower.runtime_info().ha_client_runtime_info.is_activated);
    follower.shutdown().await;
    ha.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_puts_wait_for_a_slave() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = StoreOptions { replica_ack: Some(ReplicaAck { max_gap: 1 << 30 }), ..StoreOptions::default() };
    let master = open(md.path(), 10911, opts);
    // No slave: stored, but answered SLAVE_NOT_AVAILABLE at once.
    let alone = put(&master, 0).await;
    assert_eq!(alone.status, PutStatus::SlaveNotAvailable);
    assert!(alone.physical_offset >= 0, "stored all the same");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ha = HaMaster::start(listener, master.clone(), settings()).unwrap();
    let slave = open(sd.path(), 10921, StoreOptions::default());
    let (_tx, rx) = watch::channel(Some(ha.local_addr().to_string()));
    let follower = HaSlave::start(slave.clone(), rx, settings());
    wait_until("the slave's first report", || ha.slave_count() == 1).await;
    for i in 1..200 {
        let r = put(&master, i).await;
        assert_eq!(r.status, PutStatus::PutOk, "put {i}");
        // Acknowledged means the slave holds it.
        assert!(slave.commit_log_max_offset() >= r.physical_offset + r.wrote_bytes as i64, "put {i}");
    }
    follower.shutdown().await;
    wait_until("the master to notice", || ha.slave_count() == 0).await;
    assert_eq!(put(&master, 500).await.status, PutStatus::SlaveNotAvailable);
    ha.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_not_a_slave_is_dropped_alone() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path(), 10911, StoreOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ha = HaMaster::start(listener, master.clone(), settings()).unwrap();
    let slave = open(sd.path(), 10921, StoreOptions::default());
    let (_tx, rx) = watch::channel(Some(ha.local_addr().to_string()));
    let follower = HaSlave::start(slave.clone(), rx, settings());

    // An HTTP health check on the HA port.
    let mut probe = tokio::net::TcpStream::connect(ha.local_addr()).await.unwrap();
    probe.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match probe.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the master kept a peer that sent text");

    for i in 0..100 {
        put(&master, i).await;
    }
    let end = master.commit_log_max_offset();
    wait_until("the real slave to keep following", || slave.commit_log_max_offset() == end).await;
    assert_eq!(ha.slave_count(), 1);
    follower.shutdown().await;
    ha.shutdown().await;
}

/// Controller mode: a slave names itself when it connects, and its master counts it
/// among the caught-up slaves (a SyncStateSet's candidates) while it keeps up, and not
/// once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_slave_is_counted_caught_up_while_it_keeps_up() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path(), 10911, StoreOptions::default());
    for i in 0..100 {
        put(&master, i).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ha = HaMaster::start(listener, master.clone(), settings()).unwrap();
    let slave = open(sd.path(), 10921, StoreOptions::default());
    let (_tx, rx) = watch::channel(Some(ha.local_addr().to_string()));
    let follower = HaSlave::start(slave.clone(), rx, HaSettings { identity: Some(7), ..settings() });
    let lag = Duration::from_secs(2);
    wait_until("slave 7 caught up", || ha.caught_up_slaves(lag).contains(&7)).await;
    // Still counted while the master takes more writes and the slave follows.
    for i in 100..400 {
        put(&master, i).await;
    }
    let end = master.commit_log_max_offset();
    wait_until("the slave to hold the new writes", || slave.commit_log_max_offset() == end).await;
    assert_eq!(ha.caught_up_slaves(lag), std::collections::BTreeSet::from([7]));
    follower.shutdown().await;
    wait_until("slave 7 gone", || ha.caught_up_slaves(lag).is_empty()).await;

    // A slave that does not name itself (RocketMQ 4.x's protocol) replicates as
    // before but is nobody's SyncStateSet member.
    let sd2 = tempfile::tempdir().unwrap();
    let plain = open(sd2.path(), 10931, StoreOptions::default());
    let (_tx2, rx2) = watch::channel(Some(ha.local_addr().to_string()));
    let follower = HaSlave::start(plain.clone(), rx2, settings());
    wait_until("the plain slave to catch up", || plain.commit_log_max_offset() == end).await;
    assert!(ha.caught_up_slaves(lag).is_empty());
    follower.shutdown().await;
    ha.shutdown().await;
}

/// Controller mode without `syncFromLastFile`: an empty slave copies the master's
/// whole log, from its oldest byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sync_from_last_file_an_empty_slave_copies_everything() {
    let (md, sd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path(), 10911, StoreOptions::default());
    for i in 0..6000 {
        assert_eq!(put(&master, i).await.status, PutStatus::PutOk);
    }
    assert!(master.commit_log_max_offset() > SEGMENT as i64, "the master has a second segment");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ha =
        HaMaster::start(listener, master.clone(), HaSettings { sync_from_last_file: false, ..settings() }).unwrap();
    let slave = open(sd.path(), 10921, StoreOptions::default());
    let (_tx, rx) = watch::channel(Some(ha.local_addr().to_string()));
    let follower = HaSlave::start(slave.clone(), rx, settings());
    let end = master.commit_log_max_offset();
    wait_until("the slave to catch up", || slave.commit_log_max_offset() == end).await;
    assert_eq!(slave.commit_log_min_offset(), 0);
    assert_eq!(log_bytes(&slave, 0, end), log_bytes(&master, 0, end));
    wait_until("the slave's consume queues", || {
        (0..3).all(|q| slave.max_offset_in_queue("Ha", q) == master.max_offset_in_queue("Ha", q))
    })
    .await;
    follower.shutdown().await;
    ha.shutdown().await;
}

/// `inSyncReplicas` 3: a put waits for two slaves; with one it is not acknowledged
/// as replicated, and with the policy at none it waits for nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_least_policy_waits_for_that_many_slaves() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let opts = StoreOptions { replica_ack: Some(ReplicaAck { max_gap: 1 << 30 }), ..StoreOptions::default() };
    let master = open(dirs[0].path(), 10911, opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ha = HaMaster::start(listener, master.clone(), settings()).unwrap();
    ha.set_ack_policy(AckPolicy::AtLeast(2));
    let first = open(dirs[1].path(), 10921, StoreOptions::default());
    let (_tx, rx) = watch::channel(Some(ha.local_addr().to_string()));
    let one = HaSlave::start(first.clone(), rx.clone(), settings());
    wait_until("the first slave", || ha.slave_count() == 1).await;
    let short = put(&master, 0).await;
    assert_eq!(short.status, PutStatus::SlaveNotAvailable, "one slave of two");
    assert!(short.physical_offset >= 0, "stored all the same");

    let second = open(dirs[2].path(), 10931, StoreOptions::default());
    let two = HaSlave::start(second.clone(), rx, settings());
    wait_until("the second slave", || ha.slave_count() == 2).await;
    for i in 1..100 {
        let r = put(&master, i).await;
        assert_eq!(r.status, PutStatus::PutOk, "put {i}");
        let end = r.physical_offset + r.wrote_bytes as i64;
        assert!(first.commit_log_max_offset() >= end && second.commit_log_max_offset() >= end, "put {i}");
    }
    one.shutdown().await;
    two.shutdown().await;
    wait_until("the master to notice", || ha.slave_count() == 0).await;
    ha.set_ack_policy(AckPolicy::AtLeast(0));
    assert_eq!(put(&master, 200).await.status, PutStatus::PutOk, "nobody to wait for");
    ha.shutdown().await;
}

/// How many messages of queue `q` of the test topic `store` serves from offset 0.
fn served(store: &MessageStore, q: i32) -> usize {
    store.get_messages(&GetRequest::new("Ha", q, 0, 10_000)).messages.len()
}

/// `allAckInSyncStateSet`: master and named slaves serve consumers only what every
/// SyncStateSet member holds (the confirm offset); what was written before the
/// policy held puts stays readable; a record stored while a member is away becomes
/// readable once that member holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_all_members_acking_reads_stop_at_the_confirm_offset() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let opts = StoreOptions { replica_ack: Some(ReplicaAck { max_gap: 1 << 30 }), ..StoreOptions::default() };
    let master = open(dirs[0].path(), 10911, opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ha = HaMaster::start(listener, master.clone(), settings()).unwrap();
    ha.set_ack_policy(AckPolicy::AllOf(Default::default()));
    for i in 0..30 {
        assert_eq!(put(&master, i).await.status, PutStatus::PutOk, "alone in the set: nobody to wait for");
    }
    assert_eq!(master.read_limit(), None);
    ha.set_ack_policy(AckPolicy::AllOf([7].into()));
    assert_eq!(master.read_limit(), Some(master.commit_log_max_offset()), "written before stays readable");
    assert_eq!((0..3).map(|q| served(&master, q)).sum::<usize>(), 30);

    // Member 7 away: a put is stored but nobody may read it yet.
    let away = put(&master, 30).await;
    assert_ne!(away.status, PutStatus::PutOk);
    let q = 30 % 3;
    assert!(!master.readable_at("Ha", q, away.queue_offset));
    assert_eq!(served(&master, q), 10, "the unreplicated record is not served");

    // Member 7 connects and catches up: the record is released, on both sides.
    let slave = open(dirs[1].path(), 10921, StoreOptions::default());
    let (_tx, rx) = watch::channel(Some(ha.local_addr().to_string()));
    let follower = HaSlave::start(slave.clone(), rx, HaSettings { identity: Some(7), ..settings() });
    let raised = master.read_limit_raised();
    wait_until("the master to release the record", || master.readable_at("Ha", q, away.queue_offset)).await;
    tokio::time::timeout(Duration::from_secs(5), raised).await.expect("the raise is announced");
    assert_eq!(served(&master, q), 11);
    for i in 31..200 {
        let r = put(&master, i).await;
        assert_eq!(r.status, PutStatus::PutOk, "put {i}");
        // Acknowledged means readable, at once.
        assert!(master.readable_at("Ha", (i % 3) as i32, r.queue_offset), "put {i}");
    }
    let confirm = master.read_limit().expect("a confirm offset");
    assert_eq!(confirm, master.commit_log_max_offset());
    wait_until("the slave to learn the confirm offset", || slave.read_limit() == Some(confirm)).await;
    wait_until("the slave to serve all of it", || (0..3).map(|q| served(&slave, q)).sum::<usize>() == 200).await;

    // The slave holds a record the set's other member lacks: neither serves it.
    ha.set_ack_policy(AckPolicy::AllOf([7, 8].into()));
    let short = put(&master, 200).await;
    assert_ne!(short.status, PutStatus::PutOk);
    let end = master.commit_log_max_offset();
    wait_until("the slave to hold it", || slave.commit_log_max_offset() == end).await;
    let q = 200 % 3;
    assert!(!master.readable_at("Ha", q, short.queue_offset));
    assert!(!slave.readable_at("Ha", q, short.queue_offset));
    assert_eq!(master.read_limit(), Some(confirm), "the confirm offset waits for member 8");

    // Back to no member to wait for: everything is readable again.
    ha.set_ack_policy(AckPolicy::AllOf(Default::default()));
    assert_eq!(master.read_limit(), None);
    assert!(master.readable_at("Ha", q, short.queue_offset));
    wait_until("the slave to serve it", || slave.readable_at("Ha", q, short.queue_offset)).await;
    follower.shutdown().await;
    ha.shutdown().await;
}

/// A self-signed certificate for 127.0.0.1, written to `dir`.
fn certificate(dir: &std::path::Path) -> remoting::tls::ServerFiles {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("ha.pem"), dir.join("ha-key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    remoting::tls::ServerFiles {
        cert: cert_path,
        key: key_path,
        trust: None,
        client_auth: remoting::tls::ClientAuth::None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforcing_ha_port_replicates_over_tls_and_closes_plaintext_peers() {
    let (md, sd, pki) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files = certificate(pki.path());
    let server_tls = remoting::tls::ServerTls::load(remoting::tls::Mode::Enforcing, files.clone()).unwrap();
    let opts = StoreOptions { replica_ack: Some(ReplicaAck { max_gap: 1 << 30 }), ..StoreOptions::default() };
    let master = open(md.path(), 10911, opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ha = HaMaster::start(listener, master.clone(), HaSettings { server_tls, ..settings() }).unwrap();

    // A slave speaking plain TCP is closed before it counts as a slave.
    let mut plain = tokio::net::TcpStream::connect(ha.local_addr()).await.unwrap();
    plain.write_all(&0i64.to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), plain.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "the master answered a plaintext slave: {read:?}");
    assert_eq!(ha.slave_count(), 0);

    // One that verifies the master's certificate follows it, and SYNC_MASTER puts
    // are acknowledged once it holds them.
    let slave = open(sd.path(), 10921, StoreOptions::default());
    let client_tls = remoting::tls::ClientTls::new(Some(&files.cert), None).unwrap();
    let (_tx, rx) = watch::channel(Some(ha.local_addr().to_string()));
    let follower = HaSlave::start(slave.clone(), rx, HaSettings { client_tls: Some(client_tls), ..settings() });
    wait_until("the TLS slave's first report", || ha.slave_count() == 1).await;
    let start = master.commit_log_max_offset();
    for i in 0..300 {
        let r = put(&master, i).await;
        assert_eq!(r.status, PutStatus::PutOk, "put {i}");
        assert!(slave.commit_log_max_offset() >= r.physical_offset + r.wrote_bytes as i64, "put {i}");
    }
    let end = master.commit_log_max_offset();
    wait_until("the slave to catch up", || slave.commit_log_max_offset() == end).await;
    assert_eq!(log_bytes(&slave, start, end), log_bytes(&master, start, end));
    follower.shutdown().await;
    ha.shutdown().await;
}
