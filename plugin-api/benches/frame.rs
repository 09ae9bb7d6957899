//! Frame encode (host side) and read (guest side) per message, at batch 32 and 1024.
//! Messages look like real ones: topic, tags, keys, five properties (~90 bytes). Encoding
//! is measured with every field (an ABI 1.0 plugin), without properties, and for a
//! plugin that declares it reads tags only — into a fresh buffer each time, and into a
//! `FrameBuf` that held a frame of the same shape, as a host's thread buffer does.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use plugin_api::frame::{encode_filter, Frame, FrameBuf, MessageFrame};
use plugin_api::types::encode_properties;
use plugin_api::{FilterContext, MessageFields, MessageView};

fn bench(c: &mut Criterion) {
    let tags = ["TagA", "TagB", "TagC", "TagD"];
    let props: Vec<Vec<u8>> = (0..1024)
        .map(|i| {
            let uniq = format!("7F0000010001{i:012X}");
            encode_properties([
                ("TAGS", tags[i % 4]),
                ("KEYS", "order-42"),
                ("UNIQ_KEY", uniq.as_str()),
                ("WAIT", "true"),
                ("price", "120"),
            ])
        })
        .collect();
    let msgs: Vec<MessageView<'_>> = (0..1024)
        .map(|i| MessageView {
            topic: "orders",
            tags: tags[i % 4],
            keys: "order-42",
            properties: &props[i],
            body_size: 1024,
            queue_offset: i as i64,
            tags_code: plugin_api::builtin::tags_code(tags[i % 4]),
            ..Default::default()
        })
        .collect();
    let ctx = FilterContext { topic: "orders", group: "g", expression_type: "TAG", expression: "TagA || TagB" };
    let bare: Vec<MessageView<'_>> = msgs.iter().map(|m| MessageView { properties: b"", ..*m }).collect();
    let mut group = c.benchmark_group("frame");
    group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(20);
    let mut buf = Vec::new();
    for batch in [32usize, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        let all = MessageFields::DEFAULT;
        group.bench_with_input(BenchmarkId::new("encode_filter", batch), &batch, |b, &n| {
            b.iter(|| encode_filter(&mut buf, &ctx, &msgs[..n], all).unwrap());
        });
        group.bench_with_input(BenchmarkId::new("encode_filter_no_properties", batch), &batch, |b, &n| {
            b.iter(|| encode_filter(&mut buf, &ctx, &bare[..n], all).unwrap());
        });
        // A plugin that declares it reads tags only (ABI 1.1).
        group.bench_with_input(BenchmarkId::new("encode_filter_tags_only", batch), &batch, |b, &n| {
            b.iter(|| encode_filter(&mut buf, &ctx, &msgs[..n], MessageFields::TAGS).unwrap());
        });
        let mut reused = FrameBuf::new();
        group.bench_with_input(BenchmarkId::new("encode_filter_tags_only_reused", batch), &batch, |b, &n| {
            b.iter(|| reused.write(&MessageFrame::filter(&ctx, &msgs[..n], MessageFields::TAGS).unwrap()).len());
        });
        encode_filter(&mut buf, &ctx, &msgs[..batch], all).unwrap();
        group.bench_with_input(BenchmarkId::new("read_tags", batch), &batch, |b, _| {
            b.iter(|| Frame::parse(&buf).unwrap().messages().filter(|m| m.tags_bytes().first() == Some(&b'A')).count());
        });
        group.bench_with_input(BenchmarkId::new("read_property", batch), &batch, |b, _| {
            b.iter(|| Frame::parse(&buf).unwrap().messages().filter(|m| m.property("price") == Some("120")).count());
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
