//! Message filtering on pull (`remoting-protocol.md` §8.9, §12.5): TAG and SQL92
//! subscriptions, given inline (SUBSCRIPTION flag) or through the heartbeat as Java
//! push consumers do, `nextBeginOffset` past scanned non-matching entries, and a
//! parked (long-polling) pull that only a matching arrival wakes.
//!
//! Every test starts its own name server and broker, so they run in parallel.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use common::hash::java_string_hash;
use common::properties::{keys, Properties};
use common::subscription::{ConsumerData, HeartbeatData, SubscriptionData};
use common::sysflag::pull as pull_flag;
use common::MessageExt;
use remoting::ResponseCode;
use tests::wire::{now_ms, pull_header, Pulled, Wire};
use tests::{eventually, Broker, Namesrv};

/// How long a parked pull must stay parked after a non-matching arrival to count as
/// "not woken". The broker's periodic re-check runs every 5 s, so the whole
/// non-matching phase has to stay well below that.
const NOT_WOKEN_WINDOW: Duration = Duration::from_millis(700);

async fn start() -> Result<(Namesrv, Broker, Wire)> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    Ok((ns, broker, w))
}

fn bodies(msgs: &[MessageExt]) -> Vec<String> {
    msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
}

/// Sends `msgs` (body, properties) to `topic` queue 0 in order and waits until they
/// are all visible to pulls; returns the bodies.
async fn send_all(w: &Wire, topic: &str, msgs: &[(String, Properties)]) -> Result<Vec<String>> {
    for (i, (body, props)) in msgs.iter().enumerate() {
        let s = w.send(topic, 0, body.as_bytes(), props).await?;
        ensure!(s.code == ResponseCode::SUCCESS, "send {body}: {:?} {:?}", s.code, s.remark);
        ensure!(s.queue_offset == i as i64, "send {body} got queue offset {}", s.queue_offset);
    }
    // The consume queue is written by the store's dispatcher just after the ack.
    wait_max_offset(w, topic, msgs.len() as i64).await?;
    Ok(msgs.iter().map(|(b, _)| b.clone()).collect())
}

/// Pulls everything `expr` matches from offset 0 to the end of queue 0, one inline
/// (SUBSCRIPTION-flag) pull after another, checking that `nextBeginOffset` only
/// moves forward. Returns the bodies in queue order.
async fn pull_all(w: &Wire, group: &str, topic: &str, expr: &str, ty: &str) -> Result<Vec<String>> {
    let mut offset = 0;
    let mut got = Vec::new();
    loop {
        let p = w.pull(group, topic, 0, offset, expr, ty, 0).await?;
        match p.code {
            ResponseCode::SUCCESS => got.extend(bodies(&p.messages)),
            ResponseCode::PULL_RETRY_IMMEDIATELY => ensure!(p.messages.is_empty()),
            ResponseCode::PULL_NOT_FOUND => {
                ensure!(p.next_begin_offset == offset && offset == p.max_offset, "not found at {offset}: {p:?}");
                return Ok(got);
            }
            other => anyhow::bail!("pull {expr:?} at {offset}: {other:?} {:?}", p.remark),
        }
        ensure!(p.next_begin_offset > offset, "nextBeginOffset did not move: {offset} → {p:?}");
        offset = p.next_begin_offset;
    }
}

/// The code of a pull that fails before reading the queue (such answers carry no
/// offsets, in Java too: the client throws on them without reading the header).
async fn pull_code(
    w: &Wire,
    h: &remoting::header::broker::PullMessageRequestHeader,
) -> Result<(ResponseCode, Option<String>)> {
    let resp = w.call(remoting::RemotingCommand::request_with(remoting::RequestCode::PULL_MESSAGE, h)).await?;
    Ok((resp.response_code(), resp.remark))
}

fn tagged(body: &str, tag: Option<&str>) -> (String, Properties) {
    let mut p = Properties::default();
    if let Some(t) = tag {
        p.insert(keys::TAGS, t);
    }
    (body.to_owned(), p)
}

/// TAG `A || B` returns exactly those tags in queue order, `*` and an empty
/// expression return everything, a tag nobody sent gives PULL_RETRY_IMMEDIATELY with
/// nextBeginOffset at the end of the scanned range, and a full batch stops
/// nextBeginOffset right after its last message.
#[tokio::test]
async fn tag_filter_returns_exactly_the_subscribed_tags() -> Result<()> {
    let (_ns, _broker, w) = start().await?;
    w.create_topic("TagTopic", 1).await?;
    let tags = [Some("TagA"), Some("TagB"), Some("TagC"), None, Some("tagA"), Some("TagAB")];
    let msgs: Vec<(String, Properties)> = (0..30)
        .map(|i| {
            let t = tags[i % tags.len()];
            tagged(&format!("m{i}-{}", t.unwrap_or("none")), t)
        })
        .collect();
    let all = send_all(&w, "TagTopic", &msgs).await?;
    let with_tags = |wanted: &[&str]| -> Vec<String> {
        msgs.iter()
            .filter(|(_, p)| p.get(keys::TAGS).is_some_and(|t| wanted.contains(&t)))
            .map(|(b, _)| b.clone())
            .collect()
    };

    // One pull covers the whole queue: every match, and nextBeginOffset = max.
    let p = w.pull("G", "TagTopic", 0, 0, "TagA || TagB", "TAG", 0).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(bodies(&p.messages), with_tags(&["TagA", "TagB"]));
    assert_eq!((p.next_begin_offset, p.max_offset), (30, 30));
    for m in &p.messages {
        assert!(matches!(m.tags(), Some("TagA" | "TagB")), "{:?}", m.tags());
    }
    // Spaces around `||` are trimmed; a single tag works; tags are case-sensitive.
    assert_eq!(pull_all(&w, "G", "TagTopic", " TagB||TagC ", "TAG").await?, with_tags(&["TagB", "TagC"]));
    assert_eq!(pull_all(&w, "G", "TagTopic", "tagA", "TAG").await?, with_tags(&["tagA"]));
    // `*` and an empty expression: everything, untagged messages included.
    assert_eq!(pull_all(&w, "G", "TagTopic", "*", "TAG").await?, all);
    assert_eq!(pull_all(&w, "G", "TagTopic", "", "TAG").await?, all);

    // Nothing matches in the scanned range: 20 with nextBeginOffset past it.
    let p = w.pull("G", "TagTopic", 0, 0, "TagZ", "TAG", 0).await?;
    assert_eq!(p.code, ResponseCode::PULL_RETRY_IMMEDIATELY, "{p:?}");
    assert_eq!(p.next_begin_offset, 30);
    assert!(p.messages.is_empty());
    // The same from the middle of the queue, past the last TagA (offset 24).
    let p = w.pull("G", "TagTopic", 0, 25, "TagA", "TAG", 0).await?;
    assert_eq!((p.code, p.next_begin_offset), (ResponseCode::PULL_RETRY_IMMEDIATELY, 30), "{p:?}");
    // At the end of the queue it is "not found", nextBeginOffset unchanged.
    let p = w.pull("G", "TagTopic", 0, 30, "TagA", "TAG", 0).await?;
    assert_eq!((p.code, p.next_begin_offset), (ResponseCode::PULL_NOT_FOUND, 30), "{p:?}");

    // A full batch: maxMsgNums 2 of TagB (offsets 1, 7) → nextBeginOffset 8, not
    // past the non-matching entries after the batch (RocketMQ checks "batch full"
    // before it looks at the next entry's tag).
    let mut h = pull_header("G", "TagTopic", 0, 0);
    h.sys_flag = pull_flag::SUBSCRIPTION;
    h.subscription = Some("TagB".into());
    h.expression_type = Some("TAG".into());
    h.sub_version = now_ms();
    h.max_msg_nums = 2;
    let p = w.pull_with(&h).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(p.messages.iter().map(|m| m.queue_offset).collect::<Vec<_>>(), [1, 7]);
    assert_eq!(p.next_begin_offset, 8);
    Ok(())
}

/// Tags whose Java hashes collide ("Aa" and "BB" both hash to 2112). RocketMQ's
/// broker compares hash codes only and its client drops the colliding messages by
/// string; either way a subscriber of "Aa" must end up with exactly the "Aa"
/// messages, and the broker must never return a message whose hash differs.
#[tokio::test]
async fn colliding_tag_hashes_never_leak_other_tags_to_the_consumer() -> Result<()> {
    assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
    let (_ns, _broker, w) = start().await?;
    w.create_topic("Collide", 1).await?;
    let tags = ["Aa", "BB", "Ab", "Aa", "BB", "BB", "Aa"];
    let msgs: Vec<(String, Properties)> =
        tags.iter().enumerate().map(|(i, t)| tagged(&format!("{i}-{t}"), Some(t))).collect();
    send_all(&w, "Collide", &msgs).await?;

    let p = w.pull("G", "Collide", 0, 0, "Aa", "TAG", 0).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(p.next_begin_offset, 7);
    for m in &p.messages {
        let tag = m.tags().unwrap_or("");
        assert_eq!(java_string_hash(tag), java_string_hash("Aa"), "broker returned {tag:?} for a subscription to Aa");
    }
    // The Java client's re-check (`tagsSet.contains(tag)`).
    let after_client: Vec<String> = p
        .messages
        .iter()
        .filter(|m| m.tags() == Some("Aa"))
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(after_client, ["0-Aa", "3-Aa", "6-Aa"]);
    // FerroMQ also checks the string on the broker (saves the bandwidth; RocketMQ
    // would send the BB messages and let the client drop them).
    assert_eq!(bodies(&p.messages), ["0-Aa", "3-Aa", "6-Aa"]);
    Ok(())
}

/// A message for the SQL92 suite: body `s<i>` and the given properties.
fn sql_msg(i: usize) -> (String, Properties) {
    let regions = [Some("eu"), Some("us"), Some("ap"), None];
    let tags = [Some("TagA"), Some("TagB"), None];
    let mut p = Properties::default();
    // One message carries a non-numeric `a`: comparing it with a number fails the
    // evaluation, which RocketMQ counts as "no match".
    let a = if i == 13 { "x".to_owned() } else { (i % 10).to_string() };
    p.insert("a", a);
    if let Some(r) = regions[i % regions.len()] {
        p.insert("region", r);
    }
    if i.is_multiple_of(3) {
        p.insert("b", format!("b{i}"));
    }
    if let Some(t) = tags[i % tags.len()] {
        p.insert(keys::TAGS, t);
    }
    (format!("s{i}"), p)
}

/// The expected result of each expression, written independently of the broker's
/// evaluator (NULL semantics: a missing property never matches a comparison).
fn sql_model(expr: &str, p: &Properties) -> bool {
    let a: Option<i64> = p.get("a").and_then(|a| a.parse().ok());
    let region = p.get("region");
    let b = p.get("b");
    let tag = p.get(keys::TAGS);
    match expr {
        "a > 5 AND region IN ('eu','us')" => a.is_some_and(|a| a > 5) && matches!(region, Some("eu" | "us")),
        "b IS NULL" => b.is_none(),
        "b IS NOT NULL" => b.is_some(),
        "a BETWEEN 3 AND 7" => a.is_some_and(|a| (3..=7).contains(&a)),
        "a NOT BETWEEN 3 AND 7" => a.is_some_and(|a| !(3..=7).contains(&a)),
        "region = 'eu'" => region == Some("eu"),
        "region <> 'eu'" => region.is_some_and(|r| r != "eu"),
        "TAGS = 'TagA'" => tag == Some("TagA"),
        "TAGS IN ('TagA', 'TagB') AND a < 4" => matches!(tag, Some("TagA" | "TagB")) && a.is_some_and(|a| a < 4),
        "b IS NOT NULL AND NOT (region = 'eu')" => b.is_some() && region.is_some_and(|r| r != "eu"),
        "(a = 1 OR a = 9) AND TAGS IS NULL" => a.is_some_and(|a| a == 1 || a == 9) && tag.is_none(),
        other => panic!("no model for {other}"),
    }
}

/// SQL92 subscriptions on user properties and TAGS return exactly the messages the
/// model selects, in queue order; nothing matching gives PULL_RETRY_IMMEDIATELY with
/// nextBeginOffset past the scanned range; a bad expression is
/// SUBSCRIPTION_PARSE_FAILED.
#[tokio::test]
async fn sql92_filter_returns_exactly_the_matching_messages() -> Result<()> {
    let (_ns, _broker, w) = start().await?;
    w.create_topic("SqlTopic", 1).await?;
    let msgs: Vec<(String, Properties)> = (0..40).map(sql_msg).collect();
    send_all(&w, "SqlTopic", &msgs).await?;

    let exprs = [
        "a > 5 AND region IN ('eu','us')",
        "b IS NULL",
        "b IS NOT NULL",
        "a BETWEEN 3 AND 7",
        "a NOT BETWEEN 3 AND 7",
        "region = 'eu'",
        "region <> 'eu'",
        "TAGS = 'TagA'",
        "TAGS IN ('TagA', 'TagB') AND a < 4",
        "b IS NOT NULL AND NOT (region = 'eu')",
        "(a = 1 OR a = 9) AND TAGS IS NULL",
    ];
    for expr in exprs {
        let expected: Vec<String> = msgs.iter().filter(|(_, p)| sql_model(expr, p)).map(|(b, _)| b.clone()).collect();
        assert!(!expected.is_empty() && expected.len() < msgs.len(), "{expr} should select some but not all");
        // One pull scans the whole queue (40 entries, ≤ 32 matches).
        let p = w.pull("GS", "SqlTopic", 0, 0, expr, "SQL92", 0).await?;
        assert_eq!(p.code, ResponseCode::SUCCESS, "{expr}: {:?}", p.remark);
        assert_eq!(bodies(&p.messages), expected, "{expr}");
        assert_eq!(p.next_begin_offset, 40, "{expr}");
        // Same answer through successive pulls starting mid-queue.
        let mut tail = Vec::new();
        let mut offset = 20;
        while offset < 40 {
            let p: Pulled = w.pull("GS", "SqlTopic", 0, offset, expr, "sql92", 0).await?;
            assert!(matches!(p.code, ResponseCode::SUCCESS | ResponseCode::PULL_RETRY_IMMEDIATELY), "{expr}: {p:?}");
            assert!(p.next_begin_offset > offset);
            tail.extend(bodies(&p.messages));
            offset = p.next_begin_offset;
        }
        let expected_tail: Vec<String> =
            msgs[20..].iter().filter(|(_, p)| sql_model(expr, p)).map(|(b, _)| b.clone()).collect();
        assert_eq!(tail, expected_tail, "{expr} from offset 20");
    }

    // Message 13 has `a = 'x'` and region "us": Java evaluates `a > 100` first, the
    // conversion throws, and the whole evaluation fails — the OR's right side never
    // rescues it.
    let p = w.pull("GS", "SqlTopic", 0, 13, "a > 100 OR region = 'us'", "SQL92", 0).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(bodies(&p.messages), ["s17", "s21", "s25", "s29", "s33", "s37"]);

    // Nothing matches: retry immediately, from past everything scanned.
    let p = w.pull("GS", "SqlTopic", 0, 0, "a > 100", "SQL92", 0).await?;
    assert_eq!((p.code, p.next_begin_offset), (ResponseCode::PULL_RETRY_IMMEDIATELY, 40), "{p:?}");
    let p = w.pull("GS", "SqlTopic", 0, 5, "region = 'mars'", "SQL92", 0).await?;
    assert_eq!((p.code, p.next_begin_offset), (ResponseCode::PULL_RETRY_IMMEDIATELY, 40), "{p:?}");

    // A broken expression.
    let mut h = pull_header("GS", "SqlTopic", 0, 0);
    h.sys_flag = pull_flag::SUBSCRIPTION;
    h.subscription = Some("a >".into());
    h.expression_type = Some("SQL92".into());
    let (code, remark) = pull_code(&w, &h).await?;
    assert_eq!(code, ResponseCode::SUBSCRIPTION_PARSE_FAILED, "{remark:?}");
    Ok(())
}

fn heartbeat(group: &str, topic: &str, expr: &str, ty: &str, version: i64) -> HeartbeatData {
    HeartbeatData {
        client_id: "127.0.0.1@filter-test".into(),
        producer_data_set: Vec::new(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            subscription_data_set: vec![SubscriptionData::new(topic, expr, ty, version)],
            ..ConsumerData::default()
        }],
    }
}

/// A pull as the Java push consumer sends it by default (`postSubscriptionWhenPull`
/// false): SUSPEND (+ COMMIT_OFFSET), no SUBSCRIPTION flag and no expression; the
/// broker must filter with the subscription from the heartbeat.
fn push_pull(
    group: &str,
    topic: &str,
    offset: i64,
    sub_version: i64,
) -> remoting::header::broker::PullMessageRequestHeader {
    let mut h = pull_header(group, topic, 0, offset);
    h.sys_flag = pull_flag::SUSPEND;
    h.suspend_timeout_millis = 0; // never actually parks: every pull below finds data
    h.sub_version = sub_version;
    h
}

/// Filtering through the heartbeat subscription: TAG, then SQL92, then a changed
/// subscription (newer subVersion) that the broker picks up; an older heartbeat
/// than the pull is SUBSCRIPTION_NOT_LATEST, an unknown group SUBSCRIPTION_NOT_EXIST.
#[tokio::test]
async fn heartbeat_subscription_filters_pulls_without_subscription_flag() -> Result<()> {
    let (_ns, _broker, w) = start().await?;
    w.create_topic("HbTopic", 1).await?;
    let msgs: Vec<(String, Properties)> = (0..12)
        .map(|i| {
            let tag = ["TagA", "TagB", "TagC"][i % 3];
            let mut p = Properties::default();
            p.insert(keys::TAGS, tag);
            p.insert("n", i.to_string());
            (format!("h{i}-{tag}"), p)
        })
        .collect();
    send_all(&w, "HbTopic", &msgs).await?;
    let select =
        |f: &dyn Fn(usize) -> bool| -> Vec<String> { (0..12).filter(|i| f(*i)).map(|i| msgs[i].0.clone()).collect() };

    // No heartbeat yet: the broker knows no subscription for the group.
    let (code, remark) = pull_code(&w, &push_pull("GH", "HbTopic", 0, 1)).await?;
    assert_eq!(code, ResponseCode::SUBSCRIPTION_NOT_EXIST, "{remark:?}");

    w.heartbeat_with(&heartbeat("GH", "HbTopic", "TagA || TagC", "TAG", 100)).await?;
    let p = w.pull_with(&push_pull("GH", "HbTopic", 0, 100)).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(bodies(&p.messages), select(&|i| i % 3 != 1));
    assert_eq!(p.next_begin_offset, 12);

    // The pull claims a newer subscription than the broker has: the client must
    // heartbeat again.
    let (code, remark) = pull_code(&w, &push_pull("GH", "HbTopic", 0, 101)).await?;
    assert_eq!(code, ResponseCode::SUBSCRIPTION_NOT_LATEST, "{remark:?}");

    // The consumer re-subscribes with SQL92 (newer version): the broker follows.
    w.heartbeat_with(&heartbeat("GH", "HbTopic", "n >= 6 AND TAGS <> 'TagB'", "SQL92", 200)).await?;
    let p = w.pull_with(&push_pull("GH", "HbTopic", 0, 200)).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(bodies(&p.messages), select(&|i| i >= 6 && i % 3 != 1));

    // And back to a single tag.
    w.heartbeat_with(&heartbeat("GH", "HbTopic", "TagB", "TAG", 300)).await?;
    let p = w.pull_with(&push_pull("GH", "HbTopic", 0, 300)).await?;
    assert_eq!(bodies(&p.messages), select(&|i| i % 3 == 1));

    // A heartbeat with an older version does not replace the subscription.
    w.heartbeat_with(&heartbeat("GH", "HbTopic", "*", "TAG", 250)).await?;
    let p = w.pull_with(&push_pull("GH", "HbTopic", 0, 300)).await?;
    assert_eq!(bodies(&p.messages), select(&|i| i % 3 == 1));

    // With the SUBSCRIPTION flag the request's own expression wins over the heartbeat.
    let p = w.pull("GH", "HbTopic", 0, 0, "TagC", "TAG", 0).await?;
    assert_eq!(bodies(&p.messages), select(&|i| i % 3 == 2));
    Ok(())
}

/// Waits until the broker holds exactly `n` parked pulls.
async fn wait_parked(w: &Wire, n: usize) -> Result<()> {
    eventually(Duration::from_secs(5), &format!("{n} parked pull(s)"), || async {
        (w.parked_pulls().await.ok()? == n).then_some(())
    })
    .await
}

/// Waits until queue 0 of `topic` has `n` messages (the arrival hook has run once
/// the consume-queue entry is visible).
async fn wait_max_offset(w: &Wire, topic: &str, n: i64) -> Result<()> {
    eventually(Duration::from_secs(5), &format!("{topic} max offset {n}"), || async {
        (w.max_offset(topic, 0).await.ok()? == n).then_some(())
    })
    .await
}

/// A parked pull is not woken by an arrival its filter rejects, and is woken (and
/// answered with just the matching message) by one it accepts — for TAG and SQL92.
#[tokio::test]
async fn parked_filtered_pull_wakes_only_for_matching_arrivals() -> Result<()> {
    let (_ns, _broker, w) = start().await?;
    for (topic, expr, ty, miss, hit) in [
        ("ParkTag", "TagA", "TAG", vec![(keys::TAGS, "TagB")], vec![(keys::TAGS, "TagA")]),
        (
            "ParkSql",
            "color = 'red' AND n > 2",
            "SQL92",
            vec![("color", "red"), ("n", "1")],
            vec![("color", "red"), ("n", "3")],
        ),
    ] {
        w.create_topic(topic, 1).await?;
        let puller = w.clone();
        let (t, e, ty2) = (topic.to_owned(), expr.to_owned(), ty.to_owned());
        let mut parked = tokio::spawn(async move {
            let p = puller.pull("GP", &t, 0, 0, &e, &ty2, 15_000).await;
            (p, std::time::Instant::now())
        });
        wait_parked(&w, 1).await?;
        let parked_at = std::time::Instant::now();

        let s = w.send(topic, 0, b"miss", &miss.iter().copied().collect()).await?;
        assert_eq!(s.code, ResponseCode::SUCCESS);
        wait_max_offset(&w, topic, 1).await?;
        // The arrival has been seen; the pull must stay parked.
        let early = tokio::time::timeout(NOT_WOKEN_WINDOW, &mut parked).await;
        assert!(early.is_err(), "{ty} {expr}: a non-matching arrival woke the parked pull: {early:?}");
        assert_eq!(w.runtime_info().await?.get("pullHeld").map(String::as_str), Some("1"));

        let hit_sent = std::time::Instant::now();
        let s = w.send(topic, 0, b"hit", &hit.iter().copied().collect()).await?;
        assert_eq!(s.code, ResponseCode::SUCCESS);
        let (p, answered) = tokio::time::timeout(Duration::from_secs(3), parked).await??;
        let p = p?;
        // Still well inside the broker's 5 s re-check: the wake-up came from the arrival.
        assert!(answered.duration_since(parked_at) < Duration::from_secs(4));
        let lag = answered.duration_since(hit_sent);
        assert!(lag < Duration::from_millis(500), "{ty}: woken {lag:?} after the matching send");
        assert_eq!(p.code, ResponseCode::SUCCESS, "{p:?}");
        assert_eq!(bodies(&p.messages), ["hit"], "{ty}");
        assert_eq!(p.next_begin_offset, 2);
        wait_parked(&w, 0).await?;
    }
    Ok(())
}

/// Several parked pulls on one queue with different filters: an arrival wakes
/// exactly the ones it matches.
#[tokio::test]
async fn an_arrival_wakes_only_the_parked_pulls_it_matches() -> Result<()> {
    let (_ns, _broker, w) = start().await?;
    w.create_topic("Multi", 1).await?;
    let mut handles = Vec::new();
    for (group, expr) in [("GA", "TagA"), ("GB", "TagB"), ("GAB", "TagA || TagB"), ("GALL", "*")] {
        let puller = w.clone();
        let (g, e) = (group.to_owned(), expr.to_owned());
        handles.push((group, tokio::spawn(async move { puller.pull(&g, "Multi", 0, 0, &e, "TAG", 15_000).await })));
        wait_parked(&w, handles.len()).await?;
    }
    let s = w.send("Multi", 0, b"b", &[(keys::TAGS, "TagB")].into_iter().collect()).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS);
    // GB, GAB and GALL answer; GA stays parked.
    wait_parked(&w, 1).await?;
    let mut woken = BTreeSet::new();
    let mut still = Vec::new();
    for (group, h) in handles {
        if group == "GA" {
            still.push(h);
            continue;
        }
        let p = tokio::time::timeout(Duration::from_secs(3), h).await???;
        assert_eq!(p.code, ResponseCode::SUCCESS, "{group}: {p:?}");
        assert_eq!(bodies(&p.messages), ["b"]);
        woken.insert(group);
    }
    assert_eq!(woken, BTreeSet::from(["GB", "GAB", "GALL"]));
    let ga = still.pop().expect("GA");
    assert!(!ga.is_finished());
    let s = w.send("Multi", 0, b"a", &[(keys::TAGS, "TagA")].into_iter().collect()).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS);
    let p = tokio::time::timeout(Duration::from_secs(3), ga).await???;
    assert_eq!(bodies(&p.messages), ["a"]);
    Ok(())
}

/// A pull scans at most 800 consume-queue entries (RocketMQ's
/// `max(16000, maxMsgNums × 20)` *bytes* of consume queue): 1000 non-matching
/// messages then one match take two pulls — PULL_RETRY_IMMEDIATELY with
/// nextBeginOffset 800, then the match with nextBeginOffset past it. Same for SQL92.
#[tokio::test]
async fn a_pull_scans_a_bounded_window_of_non_matching_entries() -> Result<()> {
    let (_ns, _broker, w) = start().await?;
    w.create_topic("Window", 1).await?;
    for chunk in 0..4 {
        let msgs: Vec<common::Message> = (0..250)
            .map(|i| {
                common::Message::new("Window", format!("x{}", chunk * 250 + i))
                    .with_tags("TagX")
                    .with_property("k", "0")
            })
            .collect();
        let s = w.send_batch("Window", 0, &msgs, &Properties::default()).await?;
        assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
    }
    let s = w.send("Window", 0, b"needle", &[(keys::TAGS, "TagA"), ("k", "1")].into_iter().collect()).await?;
    assert_eq!((s.code, s.queue_offset), (ResponseCode::SUCCESS, 1000));
    wait_max_offset(&w, "Window", 1001).await?;

    for (expr, ty) in [("TagA", "TAG"), ("k = 1", "SQL92")] {
        let p = w.pull("GW", "Window", 0, 0, expr, ty, 0).await?;
        assert_eq!((p.code, p.next_begin_offset), (ResponseCode::PULL_RETRY_IMMEDIATELY, 800), "{ty}: {p:?}");
        let p = w.pull("GW", "Window", 0, 800, expr, ty, 0).await?;
        assert_eq!(p.code, ResponseCode::SUCCESS, "{ty}: {:?}", p.remark);
        assert_eq!(bodies(&p.messages), ["needle"]);
        assert_eq!(p.next_begin_offset, 1001);
        // With one message wanted and a match straight away, only that entry counts.
        let mut h = pull_header("GW", "Window", 0, 1000);
        h.sys_flag = pull_flag::SUBSCRIPTION;
        h.subscription = Some(expr.into());
        h.expression_type = Some(ty.into());
        h.max_msg_nums = 1;
        let p = w.pull_with(&h).await?;
        assert_eq!((p.code, p.next_begin_offset), (ResponseCode::SUCCESS, 1001), "{ty}: {p:?}");
    }
    Ok(())
}

/// The Java push consumer's long poll: SUSPEND without the SUBSCRIPTION flag, the
/// filter coming from the heartbeat. A non-matching arrival leaves it parked, a
/// matching one answers it.
#[tokio::test]
async fn parked_push_consumer_pull_uses_the_heartbeat_filter() -> Result<()> {
    let (_ns, _broker, w) = start().await?;
    w.create_topic("ParkHb", 1).await?;
    w.heartbeat_with(&heartbeat("GPH", "ParkHb", "TagA || TagC", "TAG", 10)).await?;
    let puller = w.clone();
    let mut parked = tokio::spawn(async move {
        let mut h = push_pull("GPH", "ParkHb", 0, 10);
        h.suspend_timeout_millis = 15_000;
        puller.pull_with(&h).await
    });
    wait_parked(&w, 1).await?;
    let s = w.send("ParkHb", 0, b"b", &[(keys::TAGS, "TagB")].into_iter().collect()).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS);
    wait_max_offset(&w, "ParkHb", 1).await?;
    let early = tokio::time::timeout(NOT_WOKEN_WINDOW, &mut parked).await;
    assert!(early.is_err(), "a non-matching arrival woke the parked pull: {early:?}");
    let s = w.send("ParkHb", 0, b"c", &[(keys::TAGS, "TagC")].into_iter().collect()).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS);
    let p = tokio::time::timeout(Duration::from_secs(3), parked).await???;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{p:?}");
    assert_eq!(bodies(&p.messages), ["c"]);
    assert_eq!(p.next_begin_offset, 2);
    Ok(())
}
