//! Transactional messages end to end (`remoting-protocol.md` §5.10, §5.11, §12.10):
//! the SDK's `TransactionProducer` against a real broker whose check-back runs
//! every second (`TRANSACTION_CHECK_INTERVAL=1s`, `TRANSACTION_TIME_OUT=1s`).
//!
//! What is read back goes through hand-built pulls of the real topic and of the
//! internal check-back offset, so the SDK is checked against the broker's bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use client::{
    LocalTransactionState, Message, MessageExt, ProducerOptions, TransactionListener, TransactionProducer,
    TransactionSendResult,
};
use common::properties::keys;
use common::sysflag::message as sysflag;
use common::topic::{TRANS_CHECK_GROUP, TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC};
use remoting::header::broker::EndTransactionRequestHeader;
use remoting::{RemotingCommand, RequestCode, ResponseCode};
use tests::wire::Wire;
use tests::{eventually, Broker, Namesrv};
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(30);
const TX_SETTINGS: &[(&str, &str)] = &[("TRANSACTION_CHECK_INTERVAL", "1s"), ("TRANSACTION_TIME_OUT", "1s")];

/// What the test's local transactions do.
#[derive(Clone, Copy)]
enum Plan {
    /// Execute waits for a permit, then commits.
    CommitWhenReleased,
    Rollback,
    /// Execute answers UNKNOW; checks answer UNKNOW `n` times, then COMMIT.
    UnknownThenCommitOnCheck(usize),
    /// Execute and every check answer UNKNOW.
    AlwaysUnknown,
}

struct Listener {
    plan: Plan,
    release: Arc<Semaphore>,
    executing: Arc<Semaphore>,
    executed: AtomicUsize,
    checks: AtomicUsize,
    /// The messages the checks were about.
    checked: Mutex<Vec<MessageExt>>,
}

impl Listener {
    fn new(plan: Plan) -> Self {
        Self {
            plan,
            release: Arc::new(Semaphore::new(0)),
            executing: Arc::new(Semaphore::new(0)),
            executed: AtomicUsize::new(0),
            checks: AtomicUsize::new(0),
            checked: Default::default(),
        }
    }
}

impl TransactionListener for Listener {
    type Arg = ();

    async fn execute_local_transaction(&self, _msg: &Message, _arg: &()) -> LocalTransactionState {
        self.executed.fetch_add(1, Ordering::SeqCst);
        self.executing.add_permits(1);
        match self.plan {
            Plan::CommitWhenReleased => {
                self.release.acquire().await.expect("semaphore open").forget();
                LocalTransactionState::CommitMessage
            }
            Plan::Rollback => LocalTransactionState::RollbackMessage,
            Plan::UnknownThenCommitOnCheck(_) | Plan::AlwaysUnknown => LocalTransactionState::Unknow,
        }
    }

    async fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let n = self.checks.fetch_add(1, Ordering::SeqCst) + 1;
        self.checked.lock().unwrap().push(msg.clone());
        match self.plan {
            Plan::UnknownThenCommitOnCheck(unknowns) if n > unknowns => LocalTransactionState::CommitMessage,
            _ => LocalTransactionState::Unknow,
        }
    }
}

async fn cluster(topic: &str) -> Result<(Namesrv, Broker, Wire)> {
    cluster_with(topic, &[]).await
}

async fn cluster_with(topic: &str, extra: &[(&str, &str)]) -> Result<(Namesrv, Broker, Wire)> {
    let ns = Namesrv::start(&[])?;
    let mut settings = TX_SETTINGS.to_vec();
    settings.extend_from_slice(extra);
    let broker = Broker::start(&ns.addr(), &settings)?;
    let w = Wire::new(broker.addr());
    w.create_topic(topic, 1).await?;
    let client = remoting::RemotingClient::new(remoting::ClientConfig::default(), None);
    eventually(WAIT, &format!("the route of {topic}"), || async {
        tests::wire::route(&client, &ns.addr(), topic).await.ok().flatten().map(|_| ())
    })
    .await?;
    Ok((ns, broker, w))
}

fn tx_producer(ns: &Namesrv, group: &str, listener: Listener) -> TransactionProducer<Listener> {
    TransactionProducer::new(
        group,
        config::ClientConfig::default(),
        Some(vec![ns.addr()]),
        ProducerOptions::default(),
        listener,
    )
}

/// Every message of `topic` queue 0 (inline-subscription pulls from offset 0).
async fn real_messages(w: &Wire, topic: &str) -> Result<Vec<MessageExt>> {
    let mut out = Vec::new();
    let max = w.max_offset(topic, 0).await?;
    let mut offset = 0;
    while offset < max {
        let p = w.pull_at_least("TxReader", topic, 0, offset, 1).await?;
        offset = p.next_begin_offset;
        out.extend(p.messages);
    }
    Ok(out)
}

/// How far the broker's check-back has walked the half queue.
async fn check_progress(w: &Wire) -> Result<i64> {
    let (code, offset, _) = w.query_offset(TRANS_CHECK_GROUP, TRANS_HALF_TOPIC, 0).await?;
    Ok(if code == ResponseCode::SUCCESS { offset } else { -1 })
}

/// END_TRANSACTION as a request (not oneway) so the broker's answer is visible.
async fn end_transaction(
    w: &Wire,
    group: &str,
    sent: &TransactionSendResult,
    commit_or_rollback: i32,
) -> Result<RemotingCommand> {
    let (_, commit_log_offset) = common::msgid::decode_offset_msg_id(&sent.send_result.offset_msg_id)?;
    let h = EndTransactionRequestHeader {
        producer_group: group.into(),
        tran_state_table_offset: sent.send_result.queue_offset,
        commit_log_offset,
        commit_or_rollback,
        from_transaction_check: Some(false),
        msg_id: sent.transaction_id.clone(),
        transaction_id: Some(sent.transaction_id.clone()),
        topic: None,
    };
    w.call(RemotingCommand::request_with(RequestCode::END_TRANSACTION, &h)).await
}

/// A committed message as the real topic must hold it: the producer's body and
/// UNIQ_KEY, the COMMIT transaction type, a pointer to the half record (or to the
/// copy a check-back re-appended later), and none of the half-message properties.
fn check_committed(m: &MessageExt, sent: &TransactionSendResult, body: &[u8]) -> Result<()> {
    ensure!(&m.body[..] == body, "body {:?}", m.body);
    ensure!(m.msg_id() == sent.transaction_id, "UNIQ_KEY {} vs transaction id {}", m.msg_id(), sent.transaction_id);
    ensure!(sysflag::transaction_type(m.sys_flag) == sysflag::TRANSACTION_COMMIT_TYPE, "sys flag {:#x}", m.sys_flag);
    let half_offset = common::msgid::decode_offset_msg_id(&sent.send_result.offset_msg_id)?.1;
    ensure!(
        m.prepared_transaction_offset >= half_offset,
        "preparedTransactionOffset {} before the half record {half_offset}",
        m.prepared_transaction_offset
    );
    for k in [keys::TRANSACTION_PREPARED, keys::REAL_TOPIC, keys::REAL_QUEUE_ID, keys::TRANSACTION_CHECK_TIMES] {
        ensure!(m.properties.get(k).is_none(), "{k} left on the committed message: {:?}", m.properties);
    }
    Ok(())
}

#[tokio::test]
async fn commit_publishes_only_after_the_local_transaction_and_decisions_are_final() -> Result<()> {
    let topic = "TxCommit";
    let (ns, broker, w) = cluster(topic).await?;
    let producer = Arc::new(tx_producer(&ns, "TxCommitGroup", Listener::new(Plan::CommitWhenReleased)));
    let p = producer.clone();
    let send = tokio::spawn(async move {
        p.send_message_in_transaction(Message::new(topic, "order-1 paid").with_tags("Paid"), ()).await
    });

    // The half message is stored and the local transaction is running: the real
    // topic shows nothing, even to a long poll.
    let listener = producer.listener().clone();
    tokio::time::timeout(WAIT, listener.executing.acquire()).await?.context("executing")?.forget();
    eventually(WAIT, "the half message in the half topic", || async {
        (w.max_offset(TRANS_HALF_TOPIC, 0).await.ok()? == 1).then_some(())
    })
    .await?;
    let polled = w.pull("TxReader", topic, 0, 0, "*", "TAG", 1500).await?;
    ensure!(
        polled.code == ResponseCode::PULL_NOT_FOUND && polled.messages.is_empty(),
        "visible before commit: {polled:?}"
    );
    ensure!(w.max_offset(topic, 0).await? == 0);

    listener.release.add_permits(1);
    let sent = send.await??;
    ensure!(sent.local_state == LocalTransactionState::CommitMessage);
    let got = eventually(WAIT, "the committed message", || async {
        real_messages(&w, topic).await.ok().filter(|m| !m.is_empty())
    })
    .await?;
    ensure!(got.len() == 1, "{} messages", got.len());
    check_committed(&got[0], &sent, b"order-1 paid")?;
    let half_offset = common::msgid::decode_offset_msg_id(&sent.send_result.offset_msg_id)?.1;
    ensure!(got[0].prepared_transaction_offset == half_offset, "preparedTransactionOffset points at the half record");
    ensure!(got[0].tags() == Some("Paid"));

    // A second COMMIT is a no-op; a ROLLBACK after the commit is refused.
    let again = end_transaction(&w, "TxCommitGroup", &sent, sysflag::TRANSACTION_COMMIT_TYPE).await?;
    ensure!(
        again.response_code() == ResponseCode::SUCCESS,
        "second commit: {:?} {:?}",
        again.response_code(),
        again.remark
    );
    let rollback = end_transaction(&w, "TxCommitGroup", &sent, sysflag::TRANSACTION_ROLLBACK_TYPE).await?;
    ensure!(
        rollback.response_code() == ResponseCode::TRANSACTION_FAILED,
        "rollback after commit: {:?}",
        rollback.response_code()
    );
    ensure!(w.max_offset(topic, 0).await? == 1, "still one message");

    // The decision survives a restart (rebuilt from the op records).
    producer.shutdown().await;
    let broker = broker.restart(&ns.addr(), false)?;
    let w = Wire::new(broker.addr());
    let rollback = end_transaction(&w, "TxCommitGroup", &sent, sysflag::TRANSACTION_ROLLBACK_TYPE).await?;
    ensure!(
        rollback.response_code() == ResponseCode::TRANSACTION_FAILED,
        "rollback after restart: {:?}",
        rollback.response_code()
    );
    let again = end_transaction(&w, "TxCommitGroup", &sent, sysflag::TRANSACTION_COMMIT_TYPE).await?;
    ensure!(again.response_code() == ResponseCode::SUCCESS);
    ensure!(w.max_offset(topic, 0).await? == 1, "still one message after the restart");
    // The check-back walks past the resolved message without asking anyone.
    eventually(WAIT, "the check-back to pass the half message", || async {
        (check_progress(&w).await.ok()? >= 1).then_some(())
    })
    .await?;
    ensure!(producer.listener().checks.load(Ordering::SeqCst) == 0, "a committed transaction was checked");
    Ok(())
}

#[tokio::test]
async fn rollback_discards_the_half_message_and_it_is_never_checked() -> Result<()> {
    let topic = "TxRollback";
    let (ns, _broker, w) = cluster(topic).await?;
    let producer = tx_producer(&ns, "TxRollbackGroup", Listener::new(Plan::Rollback));
    let sent = producer.send_message_in_transaction(Message::new(topic, "order-2 failed"), ()).await?;
    ensure!(sent.local_state == LocalTransactionState::RollbackMessage);
    // Wait until the check-back has walked past the half message (older than the
    // 1 s timeout, so it would have been checked had it been undecided).
    eventually(WAIT, "the check-back to pass the half message", || async {
        (check_progress(&w).await.ok()? >= 1).then_some(())
    })
    .await?;
    ensure!(producer.listener().checks.load(Ordering::SeqCst) == 0, "a rolled-back transaction was checked");
    ensure!(w.max_offset(topic, 0).await? == 0, "a rolled-back message reached the topic");
    let commit = end_transaction(&w, "TxRollbackGroup", &sent, sysflag::TRANSACTION_COMMIT_TYPE).await?;
    ensure!(
        commit.response_code() == ResponseCode::TRANSACTION_FAILED,
        "commit after rollback: {:?}",
        commit.response_code()
    );
    ensure!(w.max_offset(topic, 0).await? == 0);
    producer.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unknown_twice_then_commit_through_the_check_back() -> Result<()> {
    let topic = "TxCheck";
    let (ns, _broker, w) = cluster(topic).await?;
    let producer = tx_producer(&ns, "TxCheckGroup", Listener::new(Plan::UnknownThenCommitOnCheck(2)));
    let sent = producer.send_message_in_transaction(Message::new(topic, "order-3 pending"), ()).await?;
    ensure!(sent.local_state == LocalTransactionState::Unknow);
    ensure!(w.max_offset(topic, 0).await? == 0, "an unknown transaction is not published");

    let got = eventually(WAIT, "the message committed by the third check", || async {
        real_messages(&w, topic).await.ok().filter(|m| !m.is_empty())
    })
    .await?;
    ensure!(got.len() == 1);
    check_committed(&got[0], &sent, b"order-3 pending")?;
    // Two UNKNOW answers, then COMMIT. (A fourth check can only happen if the
    // COMMIT took longer than a check interval to arrive; it answers COMMIT too.)
    let l = producer.listener();
    let checks = l.checks.load(Ordering::SeqCst);
    ensure!((3..=4).contains(&checks), "{checks} checks");
    for m in l.checked.lock().unwrap().clone() {
        ensure!(
            m.topic == topic && m.queue_id == 0,
            "the check carries the real topic and queue: {} {}",
            m.topic,
            m.queue_id
        );
        ensure!(m.msg_id() == sent.transaction_id, "the check names the transaction");
        ensure!(&m.body[..] == b"order-3 pending");
    }
    // Half queue: the original and one copy per check; the check-back passes
    // them all without asking again.
    let half = w.max_offset(TRANS_HALF_TOPIC, 0).await?;
    ensure!(half == 1 + checks as i64, "{half} half records for {checks} checks");
    eventually(WAIT, "the check-back to pass every copy", || async {
        (check_progress(&w).await.ok()? >= half).then_some(())
    })
    .await?;
    ensure!(l.checks.load(Ordering::SeqCst) == checks, "checked again after the commit");
    ensure!(w.max_offset(topic, 0).await? == 1, "committed once");
    producer.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_new_producer_of_the_group_answers_for_one_that_died() -> Result<()> {
    let topic = "TxFailover";
    let (ns, _broker, w) = cluster(topic).await?;
    let first = tx_producer(&ns, "TxFailoverGroup", Listener::new(Plan::AlwaysUnknown));
    let sent = first.send_message_in_transaction(Message::new(topic, "order-4"), ()).await?;
    ensure!(sent.local_state == LocalTransactionState::Unknow);
    // The producer process dies: its connections close, it never unregisters.
    first.producer().instance().shutdown();

    let second = tx_producer(&ns, "TxFailoverGroup", Listener::new(Plan::UnknownThenCommitOnCheck(0)));
    second.register_with_brokers(&[topic]).await?;
    let got = eventually(WAIT, "the message committed by the new producer", || async {
        real_messages(&w, topic).await.ok().filter(|m| !m.is_empty())
    })
    .await?;
    ensure!(got.len() == 1);
    check_committed(&got[0], &sent, b"order-4")?;
    ensure!(first.listener().checks.load(Ordering::SeqCst) == 0, "the dead producer was asked");
    ensure!(second.listener().checks.load(Ordering::SeqCst) >= 1);
    ensure!(second.listener().executed.load(Ordering::SeqCst) == 0);
    second.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_transaction_checked_too_often_is_parked_and_stays_unpublished() -> Result<()> {
    let topic = "TxCheckMax";
    let (ns, _broker, w) = cluster_with(topic, &[("TRANSACTION_CHECK_MAX", "2")]).await?;
    let producer = tx_producer(&ns, "TxCheckMaxGroup", Listener::new(Plan::AlwaysUnknown));
    let sent = producer.send_message_in_transaction(Message::new(topic, "order-5"), ()).await?;
    let parked = eventually(WAIT, "the half message parked in TRANS_CHECK_MAX_TIME_TOPIC", || async {
        let max = w.max_offset(TRANS_CHECK_MAX_TIME_TOPIC, 0).await.ok()?;
        if max < 1 {
            return None;
        }
        w.pull_at_least("TxReader", TRANS_CHECK_MAX_TIME_TOPIC, 0, 0, 1).await.ok()
    })
    .await?;
    ensure!(parked.messages.len() == 1 && parked.messages[0].msg_id() == sent.transaction_id);
    ensure!(
        producer.listener().checks.load(Ordering::SeqCst) == 2,
        "checked {} times",
        producer.listener().checks.load(Ordering::SeqCst)
    );
    ensure!(w.max_offset(topic, 0).await? == 0, "a parked transaction was published");
    // Parked is final: a late COMMIT is refused.
    let commit = end_transaction(&w, "TxCheckMaxGroup", &sent, sysflag::TRANSACTION_COMMIT_TYPE).await?;
    ensure!(commit.response_code() == ResponseCode::TRANSACTION_FAILED, "late commit: {:?}", commit.response_code());
    ensure!(w.max_offset(topic, 0).await? == 0);
    producer.shutdown().await;
    Ok(())
}

/// A producer that sets no UNIQ_KEY (hand-written clients do that): the broker gives
/// each half message its own, so two of them resolve independently instead of the
/// second being refused as "already resolved".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_messages_without_uniq_key_resolve_independently() -> Result<()> {
    let (_ns, _broker, w) = cluster("TxNoUniq").await?;
    let props = tests::wire::props(&[(keys::TRANSACTION_PREPARED, "true"), (keys::PRODUCER_GROUP, "bare")]);
    let mut decided = Vec::new();
    for (body, decision) in [("keep", sysflag::TRANSACTION_COMMIT_TYPE), ("drop", sysflag::TRANSACTION_ROLLBACK_TYPE)] {
        let sent = w.send("TxNoUniq", 0, body.as_bytes(), &props).await?;
        ensure!(sent.code == ResponseCode::SUCCESS, "half send: {:?}", sent.remark);
        let (_, commit_log_offset) = common::msgid::decode_offset_msg_id(&sent.msg_id)?;
        let h = EndTransactionRequestHeader {
            producer_group: "bare".into(),
            tran_state_table_offset: sent.queue_offset,
            commit_log_offset,
            commit_or_rollback: decision,
            from_transaction_check: Some(false),
            msg_id: sent.msg_id.clone(),
            transaction_id: None,
            topic: None,
        };
        let resp = w.call(RemotingCommand::request_with(RequestCode::END_TRANSACTION, &h)).await?;
        ensure!(resp.response_code() == ResponseCode::SUCCESS, "END_TRANSACTION {body}: {:?}", resp.remark);
        decided.push(body);
    }
    assert_eq!(decided, ["keep", "drop"]);
    let published = eventually(WAIT, "the committed message", || async {
        let m = real_messages(&w, "TxNoUniq").await.ok()?;
        (!m.is_empty()).then_some(m)
    })
    .await?;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].body.as_ref(), b"keep");
    assert!(published[0].properties.uniq_key().is_some_and(|u| !u.is_empty()), "{:?}", published[0].properties);
    Ok(())
}

/// A decision whose store write is refused (the disk is full) leaves the transaction
/// undecided, and the check-back never walks past it; once the disk has room again
/// the decision is applied exactly once: the committed message is delivered once, the
/// rolled-back one never, and each gets one op record.
#[tokio::test]
async fn a_decision_the_store_refuses_stays_undecided_and_applies_once_later() -> Result<()> {
    let topic = "TxDisk";
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/lua/txn_check.lua");
    // The example check-back plugin decides from the PAID property, so decisions are
    // made in the broker's check round, where only the store can refuse them.
    let toml = format!(
        "[[broker.plugin_binding]]\nplugin = \"paid\"\ntopic = \"{topic}\"\n\n[plugins]\nwatch = false\n\n\
         [[plugins.plugin]]\nname = \"paid\"\nkind = \"txn_check\"\nruntime = \"lua\"\npath = {:?}\n\
         config = {{ property = \"PAID\" }}\n",
        script.display().to_string()
    );
    let ns = Namesrv::start(&[])?;
    // Half messages stored while they are too young to be checked.
    let broker = Broker::start_with_config(
        &ns.addr(),
        &toml,
        &[("TRANSACTION_CHECK_INTERVAL", "1s"), ("TRANSACTION_TIME_OUT", "1h")],
    )?;
    let w = Wire::new(broker.addr());
    w.create_topic(topic, 1).await?;
    for (body, paid) in [("paid", "true"), ("refused", "false")] {
        let uniq = format!("tx-disk-{body}");
        let p = tests::wire::props(&[("TRAN_MSG", "true"), ("PGROUP", "gone"), ("PAID", paid), ("UNIQ_KEY", &uniq)]);
        let sent = w.send(topic, 0, body.as_bytes(), &p).await?;
        ensure!(sent.code == ResponseCode::SUCCESS, "half message {body}: {:?}", sent.remark);
    }

    // A full disk (any file system is more than a billionth used), checks due at once.
    let full_disk = [
        ("TRANSACTION_TIME_OUT", "1s"),
        ("STORE__DISK_SPACE_WARNING_LEVEL_RATIO", "0.000000001"),
        ("STORE__DISK_SPACE_CLEAN_FORCIBLY_RATIO", "0.000000001"),
    ];
    let broker = broker.restart_with(&ns.addr(), false, &full_disk)?;
    let w = Wire::new(broker.addr());
    eventually(WAIT, "two check rounds whose decisions the store refused", || async {
        let info = w.runtime_info().await.ok()?;
        let refused: u64 = info.get("transactionWritesRefused")?.parse().ok()?;
        (refused >= 2).then_some(())
    })
    .await?;
    ensure!(w.max_offset(topic, 0).await? == 0, "a commit was published although its write was refused");
    ensure!(check_progress(&w).await? <= 0, "the check-back walked past an undecided transaction");

    // Room again: both decisions are applied, once.
    let room: Vec<(&str, &str)> =
        tests::IGNORE_DISK_USAGE.iter().map(|(k, v)| (&k["FERROMQ_BROKER_".len()..], *v)).collect();
    let broker = broker.restart_with(&ns.addr(), false, &room)?;
    let w = Wire::new(broker.addr());
    eventually(WAIT, "the check-back to settle both half messages", || async {
        (check_progress(&w).await.ok()? >= 2).then_some(())
    })
    .await?;
    let delivered = real_messages(&w, topic).await?;
    let bodies: Vec<&[u8]> = delivered.iter().map(|m| &m.body[..]).collect();
    ensure!(bodies == [b"paid".as_slice()], "delivered {bodies:?}");
    let ops = real_messages(&w, common::topic::TRANS_OP_HALF_TOPIC).await?;
    let mut decisions: Vec<(String, String)> = ops
        .iter()
        .filter_map(|m| Some((m.properties.get("TX_UNIQ")?.to_owned(), m.properties.get("TX_DECISION")?.to_owned())))
        .collect();
    decisions.sort();
    ensure!(
        decisions
            == [
                ("tx-disk-paid".to_owned(), "COMMIT".to_owned()),
                ("tx-disk-refused".to_owned(), "ROLLBACK".to_owned())
            ],
        "op records {decisions:?}"
    );
    Ok(())
}
