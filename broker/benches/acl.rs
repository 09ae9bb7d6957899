//! What ACL adds to every request: the signature of a 1 KiB SEND_MESSAGE_V2 (both
//! ends compute one) and the broker's whole check (signature, then the topic's PUB).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use remoting::acl::{sign, signature, Credentials};
use remoting::header::broker::SendMessageRequestHeaderV2;
use remoting::{RemotingCommand, RequestCode};

fn send_v2() -> RemotingCommand {
    let h = SendMessageRequestHeaderV2 {
        producer_group: "BenchmarkPG".into(),
        topic: "BenchmarkLoad".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 3,
        sys_flag: 0,
        born_timestamp: 1_765_000_000_000,
        flag: 0,
        properties: Some("TAGS\u{1}TagA\u{2}KEYS\u{1}order-1\u{2}UNIQ_KEY\u{1}7F0000010001AB12\u{2}".into()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        ..SendMessageRequestHeaderV2::default()
    };
    RemotingCommand::request_with(RequestCode::SEND_MESSAGE_V2, &h).with_body(Bytes::from(vec![b'x'; 1024]))
}

fn bench(c: &mut Criterion) {
    let creds = Credentials::new("benchmark", "benchmark-secret");
    let mut signed = send_v2();
    sign(&mut signed, &creds);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain_acl.yml");
    std::fs::write(
        &path,
        "accounts:\n  - accessKey: benchmark\n    secretKey: benchmark-secret\n    defaultTopicPerm: DENY\n    topicPerms: [ BenchmarkLoad=PUB ]\n",
    )
    .unwrap();
    let acl = broker::acl::AccessValidator::open(path).unwrap();
    let peer = "127.0.0.1".parse().unwrap();
    acl.check(peer, &signed).unwrap();

    let mut g = c.benchmark_group("acl");
    g.bench_function("signature_send_1KiB", |b| {
        b.iter(|| black_box(signature("benchmark-secret", &signed.ext_fields, &signed.body)))
    });
    g.bench_function("check_send_1KiB", |b| b.iter(|| black_box(acl.check(peer, black_box(&signed)))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
