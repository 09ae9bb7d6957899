//! Property test: any sequence of single and batch appends over a few topics/queues,
//! with tiny segments (frequent roll-over), reads back exactly through consume
//! queues and by offset — before and after a restart (clean or crash).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use common::record::RecordView;
use proptest::prelude::*;
use store::{FlushDiskType, GetRequest, GetStatus, PutStatus};
use support::*;

#[derive(Debug, Clone)]
enum Op {
    One { topic: u8, queue: u8, body: Vec<u8>, tag: u8 },
    Batch { topic: u8, queue: u8, bodies: Vec<Vec<u8>> },
}

fn op() -> impl Strategy<Value = Op> {
    let body = proptest::collection::vec(any::<u8>(), 0..700);
    prop_oneof![
        4 => (0u8..3, 0u8..3, body.clone(), 0u8..3).prop_map(|(topic, queue, body, tag)| Op::One { topic, queue, body, tag }),
        1 => (0u8..3, 0u8..3, proptest::collection::vec(body, 1..4)).prop_map(|(topic, queue, bodies)| Op::Batch { topic, queue, bodies }),
    ]
}

/// Per (topic, queue): (physical offset, body) of each record in queue order.
type Expected = HashMap<(String, i32), Vec<(i64, Vec<u8>)>>;

fn check_reads(store: &store::MessageStore, expected: &Expected) {
    for ((topic, queue), records) in expected {
        assert_eq!(store.max_offset_in_queue(topic, *queue), records.len() as i64);
        let mut next = 0;
        let mut k = 0;
        while next < records.len() as i64 {
            let r = store.get_messages(&GetRequest::new(topic, *queue, next, 5));
            assert_eq!(r.status, GetStatus::Found);
            for (rec, qo) in r.messages.iter().zip(&r.queue_offsets) {
                let v = RecordView::parse(rec).unwrap();
                v.verify_crc().unwrap();
                assert_eq!(*qo, k as i64);
                assert_eq!(v.queue_offset(), k as i64);
                assert_eq!(v.physical_offset(), records[k].0);
                assert_eq!(v.body(), &records[k].1[..]);
                assert_eq!(v.topic(), topic);
                let by_offset = store.look_message_by_offset(records[k].0).unwrap();
                assert_eq!(by_offset, *rec);
                k += 1;
            }
            next = r.next_begin_offset;
        }
        assert_eq!(k, records.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn appends_read_back_exactly(ops in proptest::collection::vec(op(), 1..40), crash in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_config(dir.path(), 4096, FlushDiskType::AsyncFlush);
        let rt = runtime();
        let mut expected = Expected::new();
        {
            let store = open(&cfg);
            for op in &ops {
                match op {
                    Op::One { topic, queue, body, tag } => {
                        let t = format!("P{topic}");
                        let m = msg(&t, i32::from(*queue), body).with_properties(props(&format!("tag{tag}"), "", ""));
                        let r = rt.block_on(store.put(m));
                        prop_assert_eq!(r.status, PutStatus::PutOk);
                        let q = expected.entry((t, i32::from(*queue))).or_default();
                        prop_assert_eq!(r.queue_offset, q.len() as i64);
                        q.push((r.physical_offset, body.clone()));
                    }
                    Op::Batch { topic, queue, bodies } => {
                        let t = format!("P{topic}");
                        let batch = bodies.iter().map(|b| msg(&t, i32::from(*queue), b)).collect();
                        let r = rt.block_on(store.put_batch(batch));
                        prop_assert_eq!(r.status, PutStatus::PutOk);
                        let q = expected.entry((t, i32::from(*queue))).or_default();
                        prop_assert_eq!(r.queue_offset, q.len() as i64);
                        for (phy, b) in r.batch_offsets.iter().zip(bodies) {
                            q.push((*phy, b.clone()));
                        }
                    }
                }
            }
            prop_assert!(store.wait_dispatched(Duration::from_secs(5)));
            check_reads(&store, &expected);
            if crash {
                store.halt();
            }
        }
        let store = open(&cfg);
        prop_assert_eq!(store.recovery_report().clean_shutdown, !crash);
        prop_assert!(store.recovery_report().truncated.is_none());
        check_reads(&store, &expected);
    }
}
