//! Connections over real TCP on 127.0.0.1: correlation, timeouts, oneway, server →
//! client requests, error answers, malformed input, idle and graceful close.
//!
//! Nothing here sleeps to synchronise: tests wait for a condition with a deadline
//! ([`eventually`]) or on a `Notify` the handler signals. Sleeps inside handlers only
//! create an ordering (answer even opaques late) and pace a keep-alive loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use remoting::channel::{BoxFuture, ChannelOptions};
use remoting::code::RequestCode;
use remoting::codec::{encode_to_bytes, RemotingCodec, MAX_FRAME_LEN};
use remoting::command::{Body, RemotingCommand, SerializeType, FLAG_ONEWAY};
use remoting::header::broker::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use remoting::server::Dispatcher;
use remoting::{
    Channel, ClientConfig, Error, RemotingClient, RemotingServer, RequestHandler, ResponseCode, ServerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::Decoder;

/// Deadline for anything that should happen "promptly".
const WAIT: Duration = Duration::from_secs(10);

const ECHO: RequestCode = RequestCode(9001);
const SLOW: RequestCode = RequestCode(9002);
const PANIC: RequestCode = RequestCode(9003);
const HANG: RequestCode = RequestCode(9004);
const CLOSE: RequestCode = RequestCode(9005);
const CHAIN: RequestCode = RequestCode(9006);
const EMPTY_BYTES: RequestCode = RequestCode(9007);
const BODY_LEN: RequestCode = RequestCode(9008);

/// Polls `condition` until it holds; panics after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Awaits `fut`, failing the test after [`WAIT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Answers with the request's extFields and body.
fn echo(d: &mut Dispatcher) {
    d.register(ECHO, |_ch: Channel, req: RemotingCommand| async move {
        let mut resp = RemotingCommand::success().with_body(req.body.clone());
        for (k, v) in req.ext_fields.iter() {
            resp.ext_fields.insert(k, v);
        }
        Some(resp)
    });
}

async fn serve(d: Dispatcher) -> RemotingServer {
    serve_with(d, ChannelOptions::default()).await
}

async fn serve_with(d: Dispatcher, channel: ChannelOptions) -> RemotingServer {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.channel = channel;
    RemotingServer::bind(config, Arc::new(d)).await.unwrap()
}

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig::default(), None)
}

fn echo_request(seq: usize) -> RemotingCommand {
    let mut req = RemotingCommand::request(ECHO).with_body(format!("body-{seq}").into_bytes());
    req.ext_fields.insert("seq", seq.to_string());
    req
}

fn assert_echoed(resp: &RemotingCommand, seq: usize) {
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert!(resp.is_response());
    assert_eq!(resp.ext_fields.get("seq"), Some(seq.to_string().as_str()));
    assert_eq!(resp.body_bytes(), format!("body-{seq}").as_bytes());
}

// ---- raw sockets: a peer that is not our client ------------------------------------

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

async fn send(s: &mut TcpStream, cmd: &RemotingCommand) {
    s.write_all(&encode_to_bytes(cmd).unwrap()).await.unwrap();
}

/// Reads one whole frame: the serialize-type byte of the frame and the command.
async fn read_frame(s: &mut TcpStream) -> (u8, RemotingCommand) {
    within("a response frame", async {
        let mut prefix = [0u8; 8];
        s.read_exact(&mut prefix).await.unwrap();
        let total = u32::from_be_bytes(prefix[..4].try_into().unwrap()) as usize;
        let mut frame = BytesMut::with_capacity(4 + total);
        frame.put_slice(&prefix);
        frame.resize(4 + total, 0);
        s.read_exact(&mut frame[8..]).await.unwrap();
        let cmd = RemotingCodec.decode(&mut frame).unwrap().unwrap();
        (prefix[4], cmd)
    })
    .await
}

/// Waits for the peer to close `s` (EOF or reset), discarding anything it sends.
async fn assert_closed_by_peer(s: &mut TcpStream) {
    within("the server to close the connection", async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn raw_request(code: RequestCode, opaque: i32, ser: SerializeType) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code);
    cmd.opaque = opaque;
    cmd.serialize_type = ser;
    cmd
}

// ---- request / response --------------------------------------------------------------

#[tokio::test]
async fn request_gets_its_response() {
    let mut d = Dispatcher::new();
    echo(&mut d);
    let server = serve(d).await;
    let client = client();
    let resp = client.invoke(&server.local_addr().to_string(), echo_request(7), WAIT).await.unwrap();
    assert_echoed(&resp, 7);
    assert_eq!(resp.serialize_type, SerializeType::Json);
    assert_eq!(server.connection_count(), 1);
}

#[tokio::test]
async fn a_thousand_requests_in_flight_are_matched_by_opaque_not_order() {
    // Even opaques are answered late, odd ones at once: responses leave out of order.
    let answered = Arc::new(Mutex::new(Vec::new()));
    let mut d = Dispatcher::new();
    let log = answered.clone();
    d.register(ECHO, move |_ch: Channel, req: RemotingCommand| {
        let log = log.clone();
        async move {
            if req.opaque % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            log.lock().unwrap().push(req.opaque);
            let mut resp = RemotingCommand::success().with_body(req.body.clone());
            resp.ext_fields.insert("seq", req.ext_fields.get("seq").unwrap());
            Some(resp)
        }
    });
    let server = serve(d).await;
    let client = client();
    let ch = client.channel(&server.local_addr().to_string()).await.unwrap();

    let requests = (0..1000).map(|seq| {
        let ch = ch.clone();
        async move {
            let resp = ch.request(echo_request(seq), WAIT).await.unwrap();
            assert_echoed(&resp, seq);
        }
    });
    within("1000 responses", futures::future::join_all(requests)).await;

    let order = answered.lock().unwrap().clone();
    assert_eq!(order.len(), 1000);
    assert!(order.windows(2).any(|w| w[0] > w[1]), "the handler answered in order; the test proves nothing");
    assert_eq!(server.connection_count(), 1, "all on one connection");
}

#[tokio::test]
async fn timeout_is_reported_and_the_late_response_is_dropped() {
    let release = Arc::new(Notify::new());
    let late_answers = Arc::new(AtomicUsize::new(0));
    let mut d = Dispatcher::new();
    echo(&mut d);
    let (r, n) = (release.clone(), late_answers.clone());
    d.register(SLOW, move |_ch: Channel, _req: RemotingCommand| {
        let (r, n) = (r.clone(), n.clone());
        async move {
            r.notified().await;
            n.fetch_add(1, Ordering::SeqCst);
            let mut resp = RemotingCommand::success();
            resp.ext_fields.insert("seq", "late");
            Some(resp)
        }
    });
    let server = serve(d).await;
    let client = client();
    let ch = client.channel(&server.local_addr().to_string()).await.unwrap();

    let started = Instant::now();
    let err = ch.request(RemotingCommand::request(SLOW), Duration::from_millis(100)).await.unwrap_err();
    match err {
        Error::Timeout { code, timeout, .. } => {
            assert_eq!(code, SLOW.0);
            assert_eq!(timeout, Duration::from_millis(100));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < WAIT);

    // Let the handler answer now. On this single-threaded runtime the late response is
    // queued before the next request is even sent, so it reaches the client first.
    release.notify_one();
    eventually("the late answer", || async { late_answers.load(Ordering::SeqCst) == 1 }).await;
    let resp = ch.request(echo_request(1), WAIT).await.unwrap();
    assert_echoed(&resp, 1);
    assert!(!ch.is_closed());
    assert_eq!(client.channel(&server.local_addr().to_string()).await.unwrap(), ch, "same connection");
}

#[tokio::test]
async fn oneway_request_gets_no_response() {
    let handled = Arc::new(AtomicUsize::new(0));
    let mut d = Dispatcher::new();
    let h = handled.clone();
    // The processor returns a response even for oneway requests: the server must drop it.
    d.register(ECHO, move |_ch: Channel, req: RemotingCommand| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let mut resp = RemotingCommand::success();
            resp.ext_fields.insert("opaque", req.opaque.to_string());
            Some(resp)
        }
    });
    let server = serve(d).await;
    let mut s = connect(server.local_addr()).await;

    let mut oneway = raw_request(ECHO, 100, SerializeType::Json);
    oneway.flag = FLAG_ONEWAY;
    send(&mut s, &oneway).await;
    eventually("the oneway request to be handled", || async { handled.load(Ordering::SeqCst) == 1 }).await;
    send(&mut s, &raw_request(ECHO, 101, SerializeType::Json)).await;
    let (_, resp) = read_frame(&mut s).await;
    assert!(resp.is_response());
    assert_eq!(resp.opaque, 101, "the first frame back answers the second request");
    assert_eq!(resp.ext_fields.get("opaque"), Some("101"));

    // Through the client API too.
    let client = client();
    client.invoke_oneway(&server.local_addr().to_string(), RemotingCommand::request(ECHO)).await.unwrap();
    eventually("the client's oneway request", || async { handled.load(Ordering::SeqCst) == 3 }).await;
}

#[tokio::test]
async fn unknown_code_is_answered_with_request_code_not_supported() {
    let server = serve(Dispatcher::new()).await;
    let addr = server.local_addr();
    let resp = client().invoke(&addr.to_string(), RemotingCommand::request(RequestCode(4242)), WAIT).await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(resp.code, 3);
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 4242 not supported"),
        "Java's remark, leading space included"
    );

    // A ROCKETMQ-header peer gets the same answer in its own serialize type.
    let mut s = connect(addr).await;
    send(&mut s, &raw_request(RequestCode(4243), 9, SerializeType::RocketMq)).await;
    let (ser, resp) = read_frame(&mut s).await;
    assert_eq!(ser, 1);
    assert_eq!((resp.code, resp.opaque), (3, 9));
    assert_eq!(resp.remark.as_deref(), Some(" request type 4243 not supported"));
}

#[tokio::test]
async fn each_peer_is_answered_in_its_own_serialize_type() {
    let mut d = Dispatcher::new();
    echo(&mut d);
    let server = serve(d).await;
    let mut json_peer = connect(server.local_addr()).await;
    let mut binary_peer = connect(server.local_addr()).await;

    let mut json_req = raw_request(ECHO, 7, SerializeType::Json);
    json_req.ext_fields.insert("k", "json");
    let mut binary_req = raw_request(ECHO, 8, SerializeType::RocketMq);
    binary_req.ext_fields.insert("k", "binary");
    send(&mut json_peer, &json_req).await;
    send(&mut binary_peer, &binary_req).await;

    let (ser, resp) = read_frame(&mut json_peer).await;
    assert_eq!(ser, 0, "JSON request, JSON response");
    assert_eq!((resp.opaque, resp.ext_fields.get("k")), (7, Some("json")));
    let (ser, resp) = read_frame(&mut binary_peer).await;
    assert_eq!(ser, 1, "ROCKETMQ request, ROCKETMQ response");
    assert_eq!((resp.opaque, resp.ext_fields.get("k")), (8, Some("binary")));
    assert_eq!(resp.serialize_type, SerializeType::RocketMq);
}

// ---- broken peers ----------------------------------------------------------------------

#[tokio::test]
async fn malformed_frames_close_only_their_own_connection() {
    let mut d = Dispatcher::new();
    echo(&mut d);
    let server = serve(d).await;
    let addr = server.local_addr();
    let client = client();
    let healthy = client.channel(&addr.to_string()).await.unwrap();
    assert_echoed(&healthy.request(echo_request(0), WAIT).await.unwrap(), 0);

    let garbage_header = b"{\"code\":";
    let mut bad_frames: Vec<(&str, Vec<u8>)> = vec![
        ("a length smaller than the header-length field", vec![0, 0, 0, 2, 0, 0]),
        ("a negative length", vec![0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 0]),
        ("a header length beyond the frame", vec![0, 0, 0, 8, 0, 0, 0, 100, b'{', b'}', 0, 0]),
        ("an unknown serialize type", vec![0, 0, 0, 6, 7, 0, 0, 2, b'{', b'}']),
    ];
    let mut json = Vec::new();
    json.put_i32(4 + garbage_header.len() as i32);
    json.put_u32(garbage_header.len() as u32);
    json.put_slice(garbage_header);
    bad_frames.push(("a JSON header that does not parse", json));
    let mut binary = Vec::new();
    binary.put_i32(4 + 5);
    binary.put_u32((1 << 24) | 5);
    binary.put_slice(&[0, 10, 0, 1, 0x99]); // truncated fixed part
    bad_frames.push(("a truncated ROCKETMQ header", binary));

    for (seq, (what, bytes)) in bad_frames.into_iter().enumerate() {
        let mut s = connect(addr).await;
        s.write_all(&bytes).await.unwrap();
        assert_closed_by_peer(&mut s).await;
        let resp = healthy.request(echo_request(seq + 1), WAIT).await;
        assert_echoed(&resp.unwrap_or_else(|e| panic!("healthy connection broken by {what}: {e}")), seq + 1);
    }
    assert!(!healthy.is_closed());
    eventually("only the healthy connection left", || async { server.connection_count() == 1 }).await;
}

#[tokio::test]
async fn frames_over_16_mib_close_the_connection_and_16_mib_passes() {
    let mut d = Dispatcher::new();
    echo(&mut d);
    d.register(BODY_LEN, |_ch: Channel, req: RemotingCommand| async move {
        let mut resp = RemotingCommand::success();
        resp.ext_fields.insert("len", req.body.len().to_string());
        Some(resp)
    });
    let server = serve(d).await;
    let addr = server.local_addr();

    // Exactly the limit (length field included) is accepted.
    let mut at_limit = raw_request(BODY_LEN, 1, SerializeType::Json);
    let header_len = encode_to_bytes(&at_limit).unwrap().len() - 8;
    let body_len = MAX_FRAME_LEN - 8 - header_len;
    at_limit.body = Body::from(vec![7u8; body_len]);
    let bytes = encode_to_bytes(&at_limit).unwrap();
    assert_eq!(bytes.len(), MAX_FRAME_LEN);
    let mut s = connect(addr).await;
    s.write_all(&bytes).await.unwrap();
    let (_, resp) = read_frame(&mut s).await;
    assert_eq!(resp.ext_fields.get("len"), Some(body_len.to_string().as_str()));

    // One byte more: the length alone condemns the connection, before any body arrives.
    let mut s = connect(addr).await;
    s.write_all(&((MAX_FRAME_LEN - 3) as i32).to_be_bytes()).await.unwrap();
    assert_closed_by_peer(&mut s).await;

    // Our side refuses to send such a frame, and the connection stays usable.
    let client = client();
    let ch = client.channel(&addr.to_string()).await.unwrap();
    let too_big = RemotingCommand::request(ECHO).with_body(vec![0u8; MAX_FRAME_LEN]);
    assert!(matches!(ch.request(too_big, WAIT).await, Err(Error::FrameTooLarge(_))));
    assert_echoed(&ch.request(echo_request(2), WAIT).await.unwrap(), 2);
}

#[tokio::test]
async fn a_panicking_handler_yields_system_error_and_the_connection_survives() {
    let mut d = Dispatcher::new();
    echo(&mut d);
    fn processor_bug() -> Option<RemotingCommand> {
        panic!("processor bug")
    }
    d.register(PANIC, |_ch: Channel, _req: RemotingCommand| async move { processor_bug() });
    let server = serve(d).await;
    let client = client();
    let ch = client.channel(&server.local_addr().to_string()).await.unwrap();
    let resp = ch.request(RemotingCommand::request(PANIC), WAIT).await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(resp.remark.is_some());
    assert!(!ch.is_closed());
    assert_echoed(&ch.request(echo_request(1), WAIT).await.unwrap(), 1);
    assert_eq!(server.connection_count(), 1);
}

// ---- both directions on one connection -------------------------------------------------

/// A producer/consumer's side: answers the broker's requests on the same socket.
struct ClientSide {
    running_info_asked_on: Mutex<Option<SocketAddr>>,
}

impl RequestHandler for ClientSide {
    fn handle(&self, channel: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>> {
        match request.request_code() {
            RequestCode::GET_CONSUMER_RUNNING_INFO => {
                *self.running_info_asked_on.lock().unwrap() = Some(channel.local_addr());
                Box::pin(async { Some(RemotingCommand::success().with_body(b"running".to_vec())) })
            }
            // Java's transactional check-back: oneway broker → producer, answered by a
            // oneway END_TRANSACTION on the same connection.
            RequestCode::CHECK_TRANSACTION_STATE => Box::pin(async move {
                let check: CheckTransactionStateRequestHeader = request.decode_header().unwrap();
                let end = EndTransactionRequestHeader {
                    producer_group: "PG".into(),
                    tran_state_table_offset: check.tran_state_table_offset,
                    commit_log_offset: check.commit_log_offset,
                    commit_or_rollback: 8,
                    from_transaction_check: Some(true),
                    msg_id: check.msg_id.clone().unwrap_or_default(),
                    transaction_id: check.transaction_id.clone(),
                    topic: check.topic.clone(),
                };
                channel.oneway(RemotingCommand::request_with(RequestCode::END_TRANSACTION, &end)).await.unwrap();
                None
            }),
            _ => Box::pin(async { None }),
        }
    }
}

#[tokio::test]
async fn server_sends_requests_to_the_client_on_the_same_connection() {
    const ASK_BACK: RequestCode = RequestCode(9100);
    const TRIGGER_CHECK: RequestCode = RequestCode(9101);
    let ended: Arc<Mutex<Option<(SocketAddr, EndTransactionRequestHeader)>>> = Arc::default();
    let mut d = Dispatcher::new();
    // The server asks the client something while answering the client's request.
    d.register(ASK_BACK, |ch: Channel, _req: RemotingCommand| async move {
        let info = ch.request(RemotingCommand::request(RequestCode::GET_CONSUMER_RUNNING_INFO), WAIT).await;
        let info = info.expect("the client answers the server's request");
        let mut resp = RemotingCommand::success().with_body(info.body.clone());
        resp.ext_fields.insert("asked", ch.peer_addr().to_string());
        Some(resp)
    });
    d.register(TRIGGER_CHECK, |ch: Channel, _req: RemotingCommand| async move {
        let check = CheckTransactionStateRequestHeader {
            tran_state_table_offset: 57,
            commit_log_offset: 4096,
            msg_id: Some("7F0000010B2C18B4AAC2437E9C870000".into()),
            transaction_id: Some("7F0000010B2C18B4AAC2437E9C870000".into()),
            offset_msg_id: Some("C0A8000100002A9F0000000000001000".into()),
            topic: Some("TopicTest".into()),
        };
        ch.oneway(RemotingCommand::request_with(RequestCode::CHECK_TRANSACTION_STATE, &check)).await.unwrap();
        Some(RemotingCommand::success())
    });
    let log = ended.clone();
    d.register(RequestCode::END_TRANSACTION, move |ch: Channel, req: RemotingCommand| {
        let log = log.clone();
        async move {
            assert!(req.is_oneway());
            *log.lock().unwrap() = Some((ch.peer_addr(), req.decode_header().unwrap()));
            None
        }
    });
    let server = serve(d).await;
    let side = Arc::new(ClientSide { running_info_asked_on: Mutex::new(None) });
    let client = RemotingClient::new(ClientConfig::default(), Some(side.clone() as Arc<dyn RequestHandler>));
    let addr = server.local_addr().to_string();
    let ch = client.channel(&addr).await.unwrap();

    let resp = client.invoke(&addr, RemotingCommand::request(ASK_BACK), WAIT).await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert_eq!(resp.body_bytes(), &b"running"[..]);
    assert_eq!(resp.ext_fields.get("asked"), Some(ch.local_addr().to_string().as_str()));
    assert_eq!(*side.running_info_asked_on.lock().unwrap(), Some(ch.local_addr()), "asked on our connection");

    client.invoke(&addr, RemotingCommand::request(TRIGGER_CHECK), WAIT).await.unwrap();
    eventually("END_TRANSACTION from the client", || async { ended.lock().unwrap().is_some() }).await;
    let (peer, end) = ended.lock().unwrap().clone().unwrap();
    assert_eq!(peer, ch.local_addr(), "answered on the same connection");
    assert_eq!((end.tran_state_table_offset, end.commit_log_offset, end.commit_or_rollback), (57, 4096, 8));
    assert_eq!(end.transaction_id.as_deref(), Some("7F0000010B2C18B4AAC2437E9C870000"));
    assert_eq!(server.connection_count(), 1);
}

#[tokio::test]
async fn a_client_without_handler_answers_server_requests_with_not_supported() {
    const ASK_BACK: RequestCode = RequestCode(9100);
    let mut d = Dispatcher::new();
    d.register(ASK_BACK, |ch: Channel, _req: RemotingCommand| async move {
        let info = ch.request(RemotingCommand::request(RequestCode::GET_CONSUMER_RUNNING_INFO), WAIT).await.unwrap();
        Some(RemotingCommand::response(info.response_code(), info.remark.clone()))
    });
    let server = serve(d).await;
    let resp =
        client().invoke(&server.local_addr().to_string(), RemotingCommand::request(ASK_BACK), WAIT).await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(resp.remark.as_deref(), Some(" request type 307 not supported"));
}

// ---- closing -----------------------------------------------------------------------------

#[tokio::test]
async fn server_closing_the_connection_fails_pending_requests_at_once() {
    let hanging = Arc::new(AtomicUsize::new(0));
    let mut d = Dispatcher::new();
    echo(&mut d);
    let h = hanging.clone();
    d.register(HANG, move |_ch: Channel, _req: RemotingCommand| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            None
        }
    });
    d.register(CLOSE, |ch: Channel, _req: RemotingCommand| async move {
        ch.close();
        None
    });
    let server = serve(d).await;
    let addr = server.local_addr().to_string();
    let client = client();
    let ch = client.channel(&addr).await.unwrap();

    let long = Duration::from_secs(60);
    let pending: Vec<_> = (0..2).map(|_| tokio::spawn(ch.clone().request_owned(HANG, long))).collect();
    eventually("both requests to be parked", || async { hanging.load(Ordering::SeqCst) == 2 }).await;
    let started = Instant::now();
    let closing = client.invoke(&addr, RemotingCommand::request(CLOSE), long).await;
    assert!(matches!(closing, Err(Error::ConnectionClosed(_))), "{closing:?}");
    for p in pending {
        let r = within("pending request to fail", p).await.unwrap();
        assert!(matches!(r, Err(Error::ConnectionClosed(_))), "{r:?}");
    }
    assert!(started.elapsed() < WAIT, "failed at close, not at the 60 s timeout");
    assert!(ch.is_closed());

    // The client reconnects on the next request.
    let resp = client.invoke(&addr, echo_request(1), WAIT).await.unwrap();
    assert_echoed(&resp, 1);
    assert_ne!(client.channel(&addr).await.unwrap(), ch);
}

#[tokio::test]
async fn closing_our_side_fails_pending_requests_at_once() {
    let parked = Arc::new(Notify::new());
    let mut d = Dispatcher::new();
    let p = parked.clone();
    d.register(HANG, move |_ch: Channel, _req: RemotingCommand| {
        let p = p.clone();
        async move {
            p.notify_one();
            std::future::pending::<()>().await;
            None
        }
    });
    let server = serve(d).await;
    let client = client();
    let ch = client.channel(&server.local_addr().to_string()).await.unwrap();
    let pending = tokio::spawn(ch.clone().request_owned(HANG, Duration::from_secs(60)));
    within("the request to be parked", parked.notified()).await;
    ch.close();
    let r = within("the pending request to fail", pending).await.unwrap();
    assert!(matches!(r, Err(Error::ConnectionClosed(_))), "{r:?}");
    within("the channel to report closed", ch.closed()).await;
    eventually("the server to see the close", || async { server.connection_count() == 0 }).await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_are_not() {
    let idle = Duration::from_millis(500);
    let mut d = Dispatcher::new();
    echo(&mut d);
    let server = serve_with(d, ChannelOptions { idle_timeout: idle, ..ChannelOptions::default() }).await;
    let addr = server.local_addr();

    // A busy connection: a request every 50 ms for three idle periods.
    let client = client();
    let ch = client.channel(&addr.to_string()).await.unwrap();
    let busy_until = Instant::now() + idle * 3;
    let mut seq = 0;
    while Instant::now() < busy_until {
        assert_echoed(&ch.request(echo_request(seq), WAIT).await.unwrap(), seq);
        seq += 1;
        tokio::time::sleep(Duration::from_millis(50)).await; // pacing, not synchronisation
    }
    assert!(!ch.is_closed(), "traffic keeps a connection open");

    // A silent peer is closed after the idle timeout, not before.
    let started = Instant::now();
    let mut silent = connect(addr).await;
    assert_closed_by_peer(&mut silent).await;
    assert!(started.elapsed() >= idle - Duration::from_millis(50), "closed after {:?}", started.elapsed());
    within("our idle client channel to close", ch.closed()).await;
    eventually("the server to drop both", || async { server.connection_count() == 0 }).await;
}

#[tokio::test]
async fn client_side_idle_timeout_closes_the_client_channel() {
    let mut d = Dispatcher::new();
    echo(&mut d);
    let server = serve(d).await;
    let config = ClientConfig {
        channel: ChannelOptions { idle_timeout: Duration::from_millis(200), ..ChannelOptions::default() },
        ..ClientConfig::default()
    };
    let client = RemotingClient::new(config, None);
    let addr = server.local_addr().to_string();
    let ch = client.channel(&addr).await.unwrap();
    within("the idle client channel to close", ch.closed()).await;
    eventually("the server to see it", || async { server.connection_count() == 0 }).await;
    // The next invoke opens a new connection.
    assert_echoed(&client.invoke(&addr, echo_request(1), WAIT).await.unwrap(), 1);
}

#[tokio::test]
async fn graceful_shutdown_answers_in_flight_requests_then_stops() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let mut d = Dispatcher::new();
    let (s, r) = (started.clone(), release.clone());
    d.register(SLOW, move |_ch: Channel, _req: RemotingCommand| {
        let (s, r) = (s.clone(), r.clone());
        async move {
            s.notify_one();
            r.notified().await;
            let mut resp = RemotingCommand::success();
            resp.ext_fields.insert("finished", "true");
            Some(resp)
        }
    });
    let server = serve(d).await;
    let addr = server.local_addr();
    let client = client();
    let ch = client.channel(&addr.to_string()).await.unwrap();

    let in_flight = tokio::spawn(ch.clone().request_owned(SLOW, WAIT));
    within("the request to start", started.notified()).await;
    let shutdown = tokio::spawn(server.shutdown(WAIT));
    eventually("the listener to stop accepting", || async { TcpStream::connect(addr).await.is_err() }).await;
    assert!(!shutdown.is_finished(), "shutdown waits for the request in flight");

    release.notify_one();
    let resp = within("the in-flight response", in_flight).await.unwrap().expect("answered during shutdown");
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert_eq!(resp.ext_fields.get("finished"), Some("true"));
    within("shutdown to finish", shutdown).await.unwrap();
    within("the connection to be closed", ch.closed()).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---- bodies ------------------------------------------------------------------------------

#[tokio::test]
async fn chained_bodies_arrive_as_their_concatenation() {
    // Big enough that the vectored write is split and resumed mid-slice.
    let parts: Vec<Bytes> = vec![
        Bytes::from_static(b"hello "),
        Bytes::new(),
        Bytes::from((0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
        Bytes::from_static(b" world"),
    ];
    let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let mut d = Dispatcher::new();
    echo(&mut d);
    let chain = parts.clone();
    d.register(CHAIN, move |_ch: Channel, _req: RemotingCommand| {
        let chain = chain.clone();
        async move { Some(RemotingCommand::success().with_body(Body::Chain(chain))) }
    });
    let server = serve(d).await;
    let client = client();
    let ch = client.channel(&server.local_addr().to_string()).await.unwrap();

    let resp = ch.request(RemotingCommand::request(CHAIN), WAIT).await.unwrap();
    assert_eq!(resp.body.len(), expected.len());
    assert_eq!(resp.body_bytes(), &expected[..], "server → client chain");

    let req = RemotingCommand::request(ECHO).with_body(Body::Chain(parts));
    let resp = ch.request(req, WAIT).await.unwrap();
    assert_eq!(resp.body_bytes(), &expected[..], "client → server chain, echoed back");
}

#[tokio::test]
async fn empty_body_buffers_never_break_the_connection() {
    let mut d = Dispatcher::new();
    echo(&mut d);
    // Processors may build a body straight from an empty buffer.
    d.register(EMPTY_BYTES, |_ch: Channel, req: RemotingCommand| async move {
        let body = match req.ext_fields.get("form") {
            Some("bytes") => Body::Bytes(Bytes::new()),
            Some("chain") => Body::Chain(vec![Bytes::new(), Bytes::new()]),
            _ => Body::Chain(vec![]),
        };
        Some(RemotingCommand::success().with_body(body))
    });
    let server = serve(d).await;
    let client = client();
    let ch = client.channel(&server.local_addr().to_string()).await.unwrap();
    for (seq, form) in ["bytes", "chain", "none"].into_iter().enumerate() {
        let mut req = RemotingCommand::request(EMPTY_BYTES);
        req.ext_fields.insert("form", form);
        let resp = ch.request(req, WAIT).await.unwrap();
        assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
        assert!(resp.body.is_empty());
        assert_echoed(&ch.request(echo_request(seq), WAIT).await.unwrap(), seq);
        assert!(!ch.is_closed(), "an empty `{form}` body closed the connection");
    }
    // And from the client side.
    let req = echo_request(9).with_body(Body::Bytes(Bytes::new()));
    let resp = ch.request(req, WAIT).await.unwrap();
    assert!(resp.body.is_empty());
    assert_echoed(&ch.request(echo_request(10), WAIT).await.unwrap(), 10);
    assert!(!ch.is_closed());
}

/// `Channel::request` borrows the channel; spawned tasks need an owned future.
trait RequestOwned {
    fn request_owned(self, code: RequestCode, timeout: Duration) -> BoxFuture<remoting::Result<RemotingCommand>>;
}

impl RequestOwned for Channel {
    fn request_owned(self, code: RequestCode, timeout: Duration) -> BoxFuture<remoting::Result<RemotingCommand>> {
        Box::pin(async move { self.request(RemotingCommand::request(code), timeout).await })
    }
}

// ---- in-process connections ----------------------------------------------------------

/// Answers server → client requests with their code in a header field.
struct Answering;

impl RequestHandler for Answering {
    fn handle(&self, _: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>> {
        Box::pin(async move {
            let mut resp = RemotingCommand::success();
            resp.ext_fields.insert("asked", request.code.to_string());
            Some(resp)
        })
    }
}

#[tokio::test]
async fn a_local_connection_is_served_like_a_tcp_one_and_closes_both_ends() {
    let closed_peers = Arc::new(Mutex::new(Vec::new()));
    let server_side = Arc::new(Mutex::new(None::<Channel>));
    let mut d = Dispatcher::new();
    echo(&mut d);
    let seen = server_side.clone();
    d.register(CHAIN, move |ch: Channel, _req: RemotingCommand| {
        let seen = seen.clone();
        async move {
            // Ask the client something over the same connection, as a broker asks a
            // producer for a transaction's state.
            let asked = ch.request(RemotingCommand::request(ECHO), WAIT).await.ok()?;
            *seen.lock().unwrap() = Some(ch);
            let mut resp = RemotingCommand::success();
            resp.ext_fields.insert("client_said", asked.ext_fields.get("asked").unwrap_or("-"));
            Some(resp)
        }
    });
    let closed = closed_peers.clone();
    Dispatcher::on_close(&mut d, move |ch: &Channel| closed.lock().unwrap().push(ch.peer_addr()));
    let server = serve(d).await;

    let peer: SocketAddr = "10.1.2.3:4567".parse().unwrap();
    let conn = server.local_connector().connect(peer, Arc::new(Answering));
    let ch = conn.channel().clone();
    assert_eq!(ch.peer_addr(), server.local_addr());
    for seq in 0..100 {
        assert_echoed(&within("echo", ch.request(echo_request(seq), WAIT)).await.unwrap(), seq);
    }
    // The same requests handed to the server's handler directly.
    for seq in 0..100 {
        assert_echoed(&within("a direct echo", conn.call(echo_request(seq))).await.unwrap(), seq);
    }
    let resp = within("a request back", ch.request(RemotingCommand::request(CHAIN), WAIT)).await.unwrap();
    assert_eq!(resp.ext_fields.get("client_said"), Some(ECHO.0.to_string().as_str()));
    let server_end = server_side.lock().unwrap().clone().unwrap();
    assert_eq!(server_end.peer_addr(), peer, "the server sees the client's address");
    assert_eq!(server.connection_count(), 1);

    ch.close();
    eventually("the server end to close", || async { server_end.is_closed() }).await;
    eventually("the close hook", || async { closed_peers.lock().unwrap().as_slice() == [peer] }).await;
    eventually("the connection to be forgotten", || async { server.connection_count() == 0 }).await;
}
