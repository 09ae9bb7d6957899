//! The gRPC side of the protocol comparison: N HTTP/2 connections × M SendMessage
//! calls in flight to a broker's gRPC endpoint (RocketMQ 5's
//! `apache.rocketmq.v2.MessagingService`), each waiting for its SendResultEntry, as
//! `wire_load --mode send` waits for SEND_OK. Same shape of generator (async Rust,
//! latency histogram, 1 KiB bodies) and the same JSON report, so
//! `bench/scripts/grpc_vs_remoting.sh` compares the two protocols in one run.
//!
//! `--mode receive` measures consumption instead: after `--prefill` sends, each of
//! the N × M tasks loops ReceiveMessage (batches of `--batch`) and one AckMessage for
//! everything it received, as a simple consumer does; a message counts once acked.
//!
//! Each connection is hyper's HTTP/2 client driven directly (the generated tonic client
//! over it), with writes gathered as the remoting generator gathers them: the calls
//! that are ready in the same scheduler tick leave in one `write`, as grpc-java's and
//! grpc-go's transports flush a batch of frames at once. tonic's own `Channel` puts a
//! queue and a task hand-off in front of every call and writes each call's frames on
//! their own; it cost the generator about as much CPU per send as the broker spends.
//!
//! Example: `cargo run --release -p bench --bin grpc_load -- --endpoint
//! 127.0.0.1:8081 --topic BenchGrpc --connections 4 --inflight 16 --duration 8s`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::{body, Stats};
use clap::Parser;
use grpc::pb::{self, messaging_service_client::MessagingServiceClient, Code};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Parser)]
#[command(name = "grpc_load", about = "RocketMQ 5 gRPC SendMessage load generator")]
struct Args {
    /// The broker's gRPC endpoint (`host:port`).
    #[arg(long, default_value = "127.0.0.1:8081")]
    endpoint: String,
    /// An existing topic (create it first: `ferromq-admin updateTopic`).
    #[arg(long, default_value = "BenchGrpc")]
    topic: String,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Sends in flight per connection.
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// `send`, or `receive` (receive + ack of what `--prefill` sent).
    #[arg(long, default_value = "send")]
    mode: String,
    /// Messages sent before `--mode receive` starts: more than the warm-up and the
    /// measured window take, or the run is refused.
    #[arg(long, default_value_t = 1_500_000)]
    prefill: u64,
    /// Messages per ReceiveMessage in `--mode receive`.
    #[arg(long, default_value_t = 32)]
    batch: i32,
    /// Consumer group of `--mode receive`.
    #[arg(long, default_value = "BENCH_GRPC_CG")]
    group: String,
    /// The broker's pid: its CPU per message is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    json: bool,
}

/// One HTTP/2 connection as the service the generated client calls.
#[derive(Clone)]
struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

type Client = MessagingServiceClient<H2>;

impl tower_service::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// A new HTTP/2 connection to `endpoint` (`host:port`), writes gathered.
async fn connect(endpoint: &str) -> Result<Client> {
    let tcp = tokio::net::TcpStream::connect(endpoint).await.with_context(|| format!("connecting to {endpoint}"))?;
    tcp.set_nodelay(true)?;
    let io = hyper_util::rt::TokioIo::new(grpc::Gathered::new(tcp));
    let (send, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .handshake(io)
        .await
        .context("HTTP/2 handshake")?;
    tokio::spawn(conn);
    let origin: http::Uri = format!("http://{endpoint}").parse().context("endpoint")?;
    Ok(MessagingServiceClient::with_origin(H2(send), origin))
}

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource { resource_namespace: String::new(), name: name.to_owned() })
}

fn named<T>(body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.metadata_mut().insert("x-mq-client-id", "grpc-load".parse().expect("ascii"));
    r
}

/// One ReceiveMessage and one AckMessage of what it brought; the number acked.
async fn receive_and_ack(client: &mut Client, topic: &str, group: &str, batch: i32) -> Result<u64> {
    let r = pb::ReceiveMessageRequest {
        group: resource(group),
        message_queue: Some(pb::MessageQueue { topic: resource(topic), id: -1, ..Default::default() }),
        filter_expression: Some(pb::FilterExpression { r#type: pb::FilterType::Tag as i32, expression: "*".into() }),
        batch_size: batch,
        invisible_duration: Some(grpc::prost_types::Duration { seconds: 60, nanos: 0 }),
        auto_renew: false,
        long_polling_timeout: Some(grpc::prost_types::Duration { seconds: 5, nanos: 0 }),
        attempt_id: None,
    };
    let mut stream = client.receive_message(named(r)).await?.into_inner();
    let mut entries = Vec::new();
    while let Some(item) = stream.message().await? {
        if let Some(pb::receive_message_response::Content::Message(m)) = item.content {
            let sp = m.system_properties.unwrap_or_default();
            entries.push(pb::AckMessageEntry {
                message_id: sp.message_id,
                receipt_handle: sp.receipt_handle.unwrap_or_default(),
                lite_topic: None,
            });
        }
    }
    if entries.is_empty() {
        return Ok(0);
    }
    let n = entries.len() as u64;
    let ack = client
        .ack_message(named(pb::AckMessageRequest { group: resource(group), topic: resource(topic), entries }))
        .await?
        .into_inner();
    if ack.status.as_ref().map_or(0, |s| s.code) != Code::Ok as i32 {
        bail!("ack failed: {:?}", ack.status);
    }
    Ok(n)
}

fn request(topic: &str, id: u64, bytes: bytes::Bytes) -> tonic::Request<pb::SendMessageRequest> {
    let message = pb::Message {
        topic: Some(pb::Resource { resource_namespace: String::new(), name: topic.to_owned() }),
        user_properties: Default::default(),
        system_properties: Some(pb::SystemProperties {
            message_id: format!("BENCH{id:024X}"),
            message_type: pb::MessageType::Normal as i32,
            body_encoding: pb::Encoding::Identity as i32,
            ..Default::default()
        }),
        body: bytes.to_vec(),
    };
    let mut r = tonic::Request::new(pb::SendMessageRequest { messages: vec![message] });
    r.metadata_mut().insert("x-mq-client-id", "grpc-load".parse().expect("ascii"));
    r
}

/// Sends `--prefill` messages, 64 in flight.
async fn prefill(args: &Args) -> Result<()> {
    let client = connect(&args.endpoint).await?;
    let next = Arc::new(AtomicU64::new(1));
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (mut client, next, topic, size, total) =
            (client.clone(), next.clone(), args.topic.clone(), args.size, args.prefill);
        tasks.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id > total {
                    return Ok::<_, anyhow::Error>(());
                }
                let r = client.send_message(request(&topic, id, body(size, epoch))).await?.into_inner();
                if r.status.as_ref().map_or(0, |s| s.code) != Code::Ok as i32 {
                    bail!("prefill send failed: {:?}", r.status);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // One send first: a wrong topic or endpoint fails here, with the broker's reason.
    let mut probe = connect(&args.endpoint).await?;
    let first = probe.send_message(request(&args.topic, 0, body(args.size, Instant::now()))).await?.into_inner();
    let code = first.status.as_ref().map_or(0, |s| s.code);
    if code != Code::Ok as i32 {
        bail!("the first send failed: {:?}", first.status);
    }
    let stats = Stats::new();
    let stop = Arc::new(AtomicBool::new(false));
    let ids = Arc::new(AtomicU64::new(1));
    // Receives, and those of the measured window that brought nothing (a long poll
    // that ran out): the backlog is gone and the window measures an idle topic.
    let calls = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let epoch = Instant::now();
    let mut handles = Vec::new();
    let receive = args.mode == "receive";
    if receive {
        prefill(&args).await?;
    }
    for _ in 0..args.connections {
        let client = connect(&args.endpoint).await?;
        for _ in 0..args.inflight {
            let (mut client, stats, stop, ids, args, calls) =
                (client.clone(), stats.clone(), stop.clone(), ids.clone(), args.clone(), calls.clone());
            handles.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let done = if receive {
                        receive_and_ack(&mut client, &args.topic, &args.group, args.batch).await
                    } else {
                        send_one(&mut client, &args, ids.fetch_add(1, Ordering::Relaxed), epoch).await
                    };
                    if receive {
                        calls.0.fetch_add(1, Ordering::Relaxed);
                    }
                    match done {
                        Ok(0) => {
                            if receive && stats.measuring.load(Ordering::Relaxed) {
                                calls.1.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(n) => stats.record(n, n * args.size as u64, Some(started.elapsed())),
                        Err(_) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    let mut run = serde_json::json!({
        "system": "ferromq-grpc",
        "mode": args.mode,
        "size": args.size,
        "connections": args.connections,
        "inflight_per_connection": args.inflight,
    });
    if receive {
        run["batch"] = args.batch.into();
    }
    let elapsed = bench::measure(&stats, args.server_pid, args.warmup, args.duration, &mut run).await;
    stop.store(true, Ordering::Relaxed);
    if receive {
        let empty = calls.1.load(Ordering::Relaxed);
        run["receives"] = calls.0.load(Ordering::Relaxed).into();
        run["empty_receives"] = empty.into();
        if empty > 0 {
            // Counted as errors, so that the scripts refuse the run's figures.
            eprintln!("{empty} receives came back empty while measuring: the backlog ran out; raise --prefill");
            stats.errors.fetch_add(empty, Ordering::Relaxed);
        }
    }
    for h in handles {
        h.abort();
    }
    stats.report(if receive { "grpc receive+ack" } else { "grpc send" }, elapsed, run, args.json);
    Ok(())
}

/// One SendMessage, waited for: 1 once its status is OK.
async fn send_one(client: &mut Client, args: &Args, id: u64, epoch: Instant) -> Result<u64> {
    let r = client.send_message(request(&args.topic, id, body(args.size, epoch))).await?.into_inner();
    match r.status {
        Some(s) if s.code == Code::Ok as i32 => Ok(1),
        other => bail!("send failed: {other:?}"),
    }
}
