//! Frame codec hot paths: a SEND_MESSAGE_V2 request as the Java client sends it, and
//! a PULL_MESSAGE response header, in both serialize types.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use remoting::code::RequestCode;
use remoting::codec::{encode_prefix, RemotingCodec};
use remoting::command::{RemotingCommand, SerializeType};
use remoting::header::broker::{PullMessageResponseHeader, SendMessageRequestHeaderV2};
use remoting::header::CommandHeader;
use remoting::ResponseCode;
use tokio_util::codec::{Decoder, Encoder};

fn send_request(ser: SerializeType) -> RemotingCommand {
    let h = SendMessageRequestHeaderV2 {
        producer_group: "PG".into(),
        topic: "TopicTest".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 2,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some("TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}UNIQ_KEY\u{1}7F0000010B2C18B4AAC2437E9C870000".into()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: Some("broker-a".into()),
    };
    let mut cmd = RemotingCommand::request_with(RequestCode::SEND_MESSAGE_V2, &h).with_body(vec![b'x'; 1024]);
    cmd.serialize_type = ser;
    cmd.opaque = 17;
    cmd
}

fn pull_response(ser: SerializeType) -> RemotingCommand {
    let h = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 1_234_567,
        min_offset: 0,
        max_offset: 2_000_000,
    };
    let mut cmd = RemotingCommand::response_with(ResponseCode::SUCCESS, &h);
    cmd.serialize_type = ser;
    cmd.opaque = 99;
    cmd
}

fn bench(c: &mut Criterion) {
    for (name, ser) in [("json", SerializeType::Json), ("rocketmq", SerializeType::RocketMq)] {
        let mut g = c.benchmark_group(format!("codec/{name}"));
        g.throughput(Throughput::Elements(1));
        let send = send_request(ser);
        let mut encoded = BytesMut::new();
        RemotingCodec.encode(send.clone(), &mut encoded).unwrap();
        let send_frame = encoded.freeze();

        g.bench_function("encode_send_request", |b| {
            let mut buf = BytesMut::with_capacity(4096);
            b.iter(|| {
                buf.clear();
                encode_prefix(black_box(&send), &mut buf).unwrap();
                black_box(&buf);
            })
        });
        g.bench_function("decode_send_request", |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&send_frame[..]);
                let cmd = RemotingCodec.decode(&mut buf).unwrap().unwrap();
                black_box(SendMessageRequestHeaderV2::decode(&cmd.ext_fields).unwrap());
            })
        });

        let pull = pull_response(ser);
        let mut encoded = BytesMut::new();
        RemotingCodec.encode(pull.clone(), &mut encoded).unwrap();
        let pull_frame = encoded.freeze();
        g.bench_function("encode_pull_response_header", |b| {
            let mut buf = BytesMut::with_capacity(512);
            b.iter(|| {
                buf.clear();
                encode_prefix(black_box(&pull), &mut buf).unwrap();
                black_box(&buf);
            })
        });
        g.bench_function("decode_pull_response_header", |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&pull_frame[..]);
                let cmd = RemotingCodec.decode(&mut buf).unwrap().unwrap();
                black_box(PullMessageResponseHeader::decode(&cmd.ext_fields).unwrap());
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
