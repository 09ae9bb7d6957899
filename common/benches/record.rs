//! Stored-record encode/decode: the per-message work of every append and every pull.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use common::record::{RecordRef, RecordView};
use common::MessageExt;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let body = vec![0xABu8; 1024];
    let props = "TAGS\u{1}TagA\u{2}KEYS\u{1}order-42\u{2}UNIQ_KEY\u{1}7F0000010B2C18B4AAC2437E9C870000\u{2}CLUSTER\u{1}DefaultCluster";
    let rec = RecordRef {
        topic: "TopicTest",
        queue_id: 3,
        flag: 0,
        queue_offset: 123_456,
        physical_offset: 987_654_321,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "10.0.0.5:54321".parse().unwrap(),
        store_timestamp: 1_700_000_000_001,
        store_host: "10.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: &body,
        properties: props.as_bytes(),
        body_crc: None,
    };
    let encoded = rec.to_bytes().unwrap();

    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    g.bench_function("encode_1KiB_with_crc", |b| {
        let mut buf = BytesMut::with_capacity(2048);
        b.iter(|| {
            buf.clear();
            black_box(&rec).encode(&mut buf).unwrap();
        })
    });
    g.bench_function("view_parse_1KiB", |b| {
        b.iter(|| black_box(RecordView::parse(black_box(&encoded)).unwrap().queue_offset()))
    });
    g.bench_function("view_parse_and_verify_crc_1KiB", |b| {
        b.iter(|| {
            let v = RecordView::parse(black_box(&encoded)).unwrap();
            v.verify_crc().unwrap();
        })
    });
    let shared: Bytes = encoded.clone();
    g.bench_function("decode_owned_1KiB", |b| {
        b.iter(|| black_box(MessageExt::decode(black_box(&shared), false).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
