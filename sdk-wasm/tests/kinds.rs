//! Every attribute macro, through the test harness (the same frames the host sends).

use plugin_api::{ClientView, QueueView, PERM_READ, PERM_WRITE};
use sdk_wasm::testing::{Harness, TestMessage};
use sdk_wasm::{CheckDecision, Verdict};

mod zone_selector {
    use sdk_wasm::{Message, SelectContext};

    /// Route to a writable queue in the message's `zone` property, by a hash of the
    /// keys; `None` (built-in fallback) when the zone has no writable queue.
    #[sdk_wasm::queue_selector(name = "zone-selector", version = "2.0.0")]
    fn select(ctx: &SelectContext<'_>, msg: &Message<'_>) -> Option<usize> {
        let zone = msg.property("zone")?;
        let candidates: Vec<usize> =
            ctx.queues.iter().enumerate().filter(|(_, q)| q.zone == zone && q.is_writable()).map(|(i, _)| i).collect();
        let h = sdk_wasm::java_string_hash(msg.keys()).unsigned_abs() as usize;
        (!candidates.is_empty()).then(|| candidates[h % candidates.len()])
    }
}

mod circle {
    use sdk_wasm::AllocateContext;

    /// AllocateMessageQueueAveragelyByCircle.
    #[sdk_wasm::allocate]
    fn allocate(ctx: &AllocateContext<'_>) -> Result<Vec<usize>, String> {
        let me = ctx.current_index.ok_or("current client is not in the client list")?;
        let n = ctx.clients().len();
        Ok((0..ctx.queues().len()).filter(|q| q % n == me).collect())
    }
}

mod ages {
    use sdk_wasm::{CheckContext, CheckDecision, Config, FromConfig, Message};

    pub struct Ttl(i64);
    impl FromConfig for Ttl {
        fn from_config(config: &Config) -> Result<Self, String> {
            Ok(Ttl(config.parse_or("ttl_ms", 60_000)?))
        }
    }

    /// Roll back half messages older than the TTL, commit those marked paid, defer the
    /// rest; a garbage `paid` value is an error for that message only.
    #[sdk_wasm::txn_check(name = "ttl-check")]
    fn check(ttl: &Ttl, ctx: &CheckContext, msg: &Message<'_>) -> Result<CheckDecision, String> {
        if ctx.now_ms - msg.born_timestamp() > ttl.0 {
            return Ok(CheckDecision::Rollback);
        }
        match msg.property("paid") {
            Some("yes") => Ok(CheckDecision::Commit),
            Some(other) => Err(format!("bad paid value {other:?}")),
            None => Ok(CheckDecision::Defer { ms: 1000 }),
        }
    }
}

mod bodies {
    use sdk_wasm::Message;

    #[sdk_wasm::filter(needs_body)]
    fn has_json(msg: &Message<'_>) -> Result<bool, &'static str> {
        let body = msg.body().ok_or("no body")?;
        Ok(body.first() == Some(&b'{'))
    }
}

mod tags_only {
    use sdk_wasm::Message;

    /// Declares it reads tags only; it accepts exactly the messages whose frame holds
    /// their tags and none of the undeclared strings.
    #[sdk_wasm::filter(reads(tags))]
    fn lean(msg: &Message<'_>) -> bool {
        msg.tags() == "A" && msg.topic().is_empty() && msg.keys().is_empty() && msg.properties().as_bytes().is_empty()
    }
}

mod reads_nothing {
    use sdk_wasm::Message;

    /// Declares it reads no field: every string is empty and every number zero.
    #[sdk_wasm::filter(reads())]
    fn blank(msg: &Message<'_>) -> bool {
        msg.tags().is_empty() && msg.topic().is_empty() && msg.keys().is_empty() && msg.tags_code() == 0
    }
}

#[test]
fn declared_fields_are_the_only_strings_in_the_frame() {
    let mut h = Harness::new(&tags_only::FERROMQ_PLUGIN).unwrap();
    assert_eq!(h.manifest().message_fields(), sdk_wasm::MessageFields::TAGS);
    assert_eq!(h.manifest().abi_minor, 1, "declaring fields needs ABI 1.1");
    let msgs = [
        TestMessage::new("T").tags("A").keys("k").property("p", "1"),
        TestMessage::new("T").tags("B").keys("k").property("p", "1"),
    ];
    let views: Vec<_> = msgs.iter().map(TestMessage::view).collect();
    assert_eq!(h.filter(&views).unwrap(), [Verdict::Accept, Verdict::Reject]);
    // An empty declaration: nothing at all.
    let mut h = Harness::new(&reads_nothing::FERROMQ_PLUGIN).unwrap();
    assert_eq!(h.manifest().message_fields(), sdk_wasm::MessageFields::NONE);
    let busy = TestMessage::new("T").tags("A").keys("k");
    assert_eq!(h.filter(&[busy.view()]).unwrap(), [Verdict::Accept]);
    // A plugin that declares nothing still gets every string (ABI 1.0).
    let h = Harness::new(&zone_selector::FERROMQ_PLUGIN).unwrap();
    assert_eq!(h.manifest().message_fields(), sdk_wasm::MessageFields::DEFAULT);
    assert_eq!(h.manifest().abi_minor, 0);
}

#[test]
fn selector() {
    let mut h = Harness::new(&zone_selector::FERROMQ_PLUGIN).unwrap();
    assert_eq!((h.manifest().name.as_str(), h.manifest().version.as_str()), ("zone-selector", "2.0.0"));
    let rw = PERM_READ | PERM_WRITE;
    let queues = [
        QueueView { broker_name: "b1", queue_id: 0, perm: rw, zone: "az1" },
        QueueView { broker_name: "b2", queue_id: 0, perm: rw, zone: "az2" },
        QueueView { broker_name: "b2", queue_id: 1, perm: PERM_READ, zone: "az2" },
    ];
    let msgs = [
        TestMessage::new("T").keys("k1").property("zone", "az2"),
        TestMessage::new("T").property("zone", "az1"),
        TestMessage::new("T").property("zone", "az9"),
    ];
    let views: Vec<_> = msgs.iter().map(TestMessage::view).collect();
    assert_eq!(h.select(&queues, &views).unwrap(), [1, 0, sdk_wasm::NO_QUEUE]);
}

#[test]
fn allocation_partitions_the_queues() {
    let mut h = Harness::new(&circle::FERROMQ_PLUGIN).unwrap();
    let queues: Vec<_> = (0..7).map(|i| QueueView { broker_name: "b", queue_id: i, ..Default::default() }).collect();
    let clients = [
        ClientView { client_id: "a", zone: "" },
        ClientView { client_id: "b", zone: "" },
        ClientView { client_id: "c", zone: "" },
    ];
    let all = h.allocate_all("g", &queues, &clients).unwrap();
    assert_eq!(all, vec![vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
    // A client that is not in the list: the plugin's error becomes a failed call.
    let e = h
        .allocate(&plugin_api::AllocateInput { group: "g", current_client: "zz", queues: &queues, clients: &clients })
        .unwrap_err();
    assert!(e.to_string().contains("not in the client list"), "{e}");
}

#[test]
fn txn_check_with_state_and_per_message_errors() {
    let mut h = Harness::with_config(&ages::FERROMQ_PLUGIN, &[("ttl_ms", "1000")]).unwrap();
    let mut old = TestMessage::new("T").property("paid", "yes");
    old.born_timestamp = 0;
    let mut paid = TestMessage::new("T").property("paid", "yes");
    paid.born_timestamp = 9_500;
    let mut unknown = TestMessage::new("T");
    unknown.born_timestamp = 9_500;
    let mut garbage = TestMessage::new("T").property("paid", "maybe");
    garbage.born_timestamp = 9_500;
    let views: Vec<_> = [&old, &paid, &unknown, &garbage].into_iter().map(TestMessage::view).collect();
    let d = h.check(&plugin_api::CheckContext { now_ms: 10_000, max_checks: 15 }, &views).unwrap();
    assert_eq!(
        d,
        [CheckDecision::Rollback, CheckDecision::Commit, CheckDecision::Defer { ms: 1000 }, CheckDecision::Error]
    );
    assert!(Harness::with_config(&ages::FERROMQ_PLUGIN, &[("ttl_ms", "soon")]).is_err());
}

#[test]
fn needs_body_is_declared_and_bodies_arrive() {
    let mut h = Harness::new(&bodies::FERROMQ_PLUGIN).unwrap();
    assert!(h.manifest().needs_body());
    let msgs = [TestMessage::new("T").body(&b"{\"a\":1}"[..]), TestMessage::new("T").body(&b"plain"[..])];
    let views: Vec<_> = msgs.iter().map(TestMessage::view).collect();
    assert_eq!(h.filter(&views).unwrap(), [Verdict::Accept, Verdict::Reject]);
}

#[test]
fn a_frame_for_another_kind_is_refused() {
    let mut h = Harness::new(&circle::FERROMQ_PLUGIN).unwrap();
    let e = h.filter(&[TestMessage::new("T").view()]).unwrap_err();
    assert!(matches!(e, sdk_wasm::PluginError::Failed { code: plugin_api::status::UNSUPPORTED, .. }), "{e}");
}
