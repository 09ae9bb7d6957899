//! The `MessagingService` implementation: client sessions, route answers, sends and
//! the Telemetry stream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::codegen::Service;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Request, Response, Status as GrpcStatus, Streaming};
use tracing::{debug, info, warn};

use common::route::TopicRouteData;
use common::subscription::{ConsumeType, ConsumerData, HeartbeatData, ProducerData, SubscriptionData};
use common::sysflag::message as sysflag;
use common::ResponseCode;
use remoting::channel::BoxFuture;
use remoting::header::broker::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader, SendMessageRequestHeaderV2,
    SendMessageResponseHeader,
};
use remoting::header::namesrv::GetRouteInfoRequestHeader;
use remoting::{Channel, LocalConnection, RemotingClient, RemotingCommand, RequestCode, RequestHandler};

use crate::convert;
use crate::gather::Gathered;
use crate::pb::messaging_service_server::{MessagingService, MessagingServiceServer};
use crate::pb::{self, Code};
use crate::status::{ok, Failure};

/// The metadata key 5.x clients name themselves with.
const CLIENT_ID: &str = "x-mq-client-id";
/// How long a translated request may wait for the broker.
pub(crate) const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that sent nothing (no heartbeat, no request) for this long is dropped, as
/// RocketMQ's proxy drops it: its connection to the broker closes, which unregisters it.
const SESSION_IDLE: Duration = Duration::from_secs(120);

/// What the gRPC endpoint needs from the broker it serves.
pub trait Backend: Send + Sync + 'static {
    /// Opens an in-process remoting connection to the broker for the gRPC client at
    /// `peer`. Requests the broker sends to that client arrive at `inbound`.
    fn connect(&self, peer: SocketAddr, inbound: Arc<dyn RequestHandler>) -> LocalConnection;
    /// The name servers routes are asked from.
    fn name_servers(&self) -> Vec<String>;
    /// A client for the name servers, with the broker's TLS and credentials.
    fn name_server_client(&self) -> RemotingClient;
    /// The broker's advertised remoting address (`host:port`), as routes name it.
    fn broker_addr(&self) -> String;
    /// What the broker knows of `topic`; `None` if it does not hold it.
    fn topic(&self, topic: &str) -> Option<TopicInfo>;
    /// The largest message body the broker accepts (`maxMessageSize`).
    fn max_message_size(&self) -> usize;
    /// The broker's name (`brokerName`), which receipt handles carry.
    fn broker_name(&self) -> String;
    /// A consumer group as 5.x consumers see it; `None` if the broker has none by that
    /// name and creates none.
    fn consumer_group(&self, group: &str) -> Option<crate::GroupInfo>;
    /// Authenticates a call from `peer` by its `authorization` and `x-mq-date-time`
    /// metadata (RocketMQ 5's ACL 1.0): `Ok(Some(signer))` signs the remoting requests
    /// the call becomes, which the broker's ACL then authorizes as any request;
    /// `Ok(None)` sends them unsigned (ACL off, or a white-listed peer); `Err` refuses
    /// the call with the reason.
    fn authenticate(
        &self,
        peer: IpAddr,
        authorization: Option<&str>,
        date_time: Option<&str>,
    ) -> Result<Option<Signer>, String>;
}

/// How a client's remoting requests are signed: its access key and signing key.
#[derive(Clone, Debug)]
pub struct Signer {
    pub credentials: remoting::acl::Credentials,
    pub key: remoting::acl::SigningKey,
}

/// A topic as the gRPC layer needs it.
#[derive(Debug, Clone, Default)]
pub struct TopicInfo {
    pub write_queue_nums: i32,
    /// The `message.type` attribute (`NORMAL`, `FIFO`, `DELAY`, `TRANSACTION`,
    /// `MIXED`), if set.
    pub message_type: Option<String>,
}

/// A running gRPC endpoint.
pub struct GrpcServer {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and closes every client's session.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Serves `MessagingService` on `listener` for `backend`. `advertised_host` is the
/// host this endpoint is reached at (routes point clients at it).
///
/// # Errors
/// The listener's address cannot be read.
pub fn serve<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    advertised_host: String,
) -> std::io::Result<GrpcServer> {
    let local_addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let max = backend.max_message_size();
    let messaging = Arc::new(Messaging {
        host: advertised_host,
        port: local_addr.port(),
        sessions: Mutex::new(HashMap::new()),
        namesrv: backend.name_server_client(),
        backend,
    });
    let svc = MessagingServiceServer::from_arc(messaging.clone())
        // A message of maxMessageSize plus its properties and framing.
        .max_decoding_message_size(max + (1 << 20))
        .max_encoding_message_size(max + (1 << 20));
    let (stop, sweep) = (cancel.clone(), cancel.clone());
    let task = tokio::spawn(async move {
        tokio::spawn(sweep_idle(messaging.clone(), sweep.clone()));
        tokio::spawn(renew(messaging.clone(), sweep));
        let connections = TaskTracker::new();
        accept(listener, svc, &connections, &stop).await;
        // Sessions first: their Telemetry streams end, so connections can finish.
        for (_, s) in messaging.sessions.lock().drain() {
            s.conn.close();
        }
        connections.close();
        connections.wait().await;
    });
    info!(addr = %local_addr, "gRPC endpoint serving apache.rocketmq.v2.MessagingService");
    Ok(GrpcServer { local_addr, cancel, task })
}

/// How long a connection may finish its calls once the endpoint stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// A failed accept (out of file descriptors) is retried after this.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves each accepted connection with hyper's HTTP/2 server until `stop`.
///
/// The service is called straight from hyper (not through tonic's `transport::Server`
/// and its router): this endpoint serves one service, and the router's layers
/// (path routing, error recovery, per-call timeout, boxing) cost a gRPC send about as
/// much as its conversion to a remoting request. What they did that a client relies
/// on is done here or by the service: unknown paths are UNIMPLEMENTED (the generated
/// service answers them), the peer's address is in each request's extensions
/// (`TcpConnectInfo`, which `Request::remote_addr` reads), a call's deadline is the
/// client's to enforce (it resets the stream, which drops the call).
async fn accept<B: Backend>(
    listener: TcpListener,
    svc: MessagingServiceServer<Messaging<B>>,
    connections: &TaskTracker,
    stop: &CancellationToken,
) {
    let mut h2 = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    h2.timer(hyper_util::rt::TokioTimer::new()).max_concurrent_streams(None);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "gRPC endpoint cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Latency over throughput, as on the remoting port: without TCP_NODELAY a
        // small response waits for the client's delayed ACK (~40 ms). Responses that
        // complete in the same scheduler tick leave in one write (`gather`).
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, %peer, "TCP_NODELAY not set");
        }
        let info = TcpConnectInfo { local_addr: stream.local_addr().ok(), remote_addr: Some(peer) };
        let svc = svc.clone();
        let call = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(info.clone());
            svc.clone().call(req)
        });
        let conn = h2.serve_connection(hyper_util::rt::TokioIo::new(Gathered::new(stream)), call);
        let stop = stop.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        debug!(error = %e, %peer, "gRPC connection ended");
                    }
                    return;
                }
                _ = stop.cancelled() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        });
    }
}

/// Drops sessions whose clients went away without NotifyClientTermination.
async fn sweep_idle<B: Backend>(m: Arc<Messaging<B>>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(SESSION_IDLE / 4);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        let mut idle = Vec::new();
        m.sessions.lock().retain(|id, s| {
            let alive = now.duration_since(*s.last_seen.lock()) < SESSION_IDLE;
            if !alive {
                debug!(client = %id, "gRPC client idle; closing its session");
                idle.push(s.clone());
            }
            alive
        });
        for s in idle {
            m.release(&s).await;
            s.conn.close();
        }
    }
}

/// Renews the invisibility of push consumers' messages (`renew`).
async fn renew<B: Backend>(m: Arc<Messaging<B>>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(crate::renew::RENEW_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sessions: Vec<Arc<Session>> = m.sessions.lock().values().cloned().collect();
        for s in sessions {
            m.renew_due(&s).await;
        }
    }
}

type TelemetrySender = mpsc::Sender<Result<pb::TelemetryCommand, GrpcStatus>>;

/// One 5.x client (by its client id): its connection to the broker, its settings and
/// its Telemetry stream.
pub(crate) struct Session {
    /// Its in-process connection to the broker; requests go straight to the broker's
    /// processors ([`remoting::LocalConnection::call`]).
    conn: LocalConnection,
    /// The last call's credentials (ACL on).
    signer: Mutex<Option<Signer>>,
    settings: Mutex<Option<pb::Settings>>,
    /// Shared with the connection's [`Inbound`], which relays the broker's requests.
    telemetry: Arc<Mutex<Option<TelemetrySender>>>,
    last_seen: Mutex<tokio::time::Instant>,
    /// Its push consumers' messages kept invisible while they work on them.
    pub(crate) renewals: crate::renew::Renewals,
}

/// Requests the broker sends a gRPC client's connection: a transaction check goes to
/// the client over its Telemetry stream; anything else is answered as not supported.
struct Inbound {
    telemetry: Arc<Mutex<Option<TelemetrySender>>>,
}

impl Inbound {
    /// CHECK_TRANSACTION_STATE as a RecoverOrphanedTransactionCommand. The client
    /// answers with EndTransaction (source SERVER_CHECK).
    fn check_transaction(&self, request: &RemotingCommand) -> Result<(), String> {
        let h: CheckTransactionStateRequestHeader = request.decode_header().map_err(|e| e.to_string())?;
        let ext = common::MessageExt::decode(&request.body_bytes(), false).map_err(|e| e.to_string())?;
        let offset_msg_id = h.offset_msg_id.ok_or("the check names no offsetMsgId")?;
        let cmd = pb::TelemetryCommand {
            status: Some(ok()),
            command: Some(pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                pb::RecoverOrphanedTransactionCommand {
                    message: Some(convert::incoming(&ext, pb::MessageType::Transaction)),
                    transaction_id: convert::transaction_id(&offset_msg_id, h.tran_state_table_offset),
                },
            )),
        };
        let sender = self.telemetry.lock().clone().ok_or("the client has no Telemetry stream open")?;
        sender.try_send(Ok(cmd)).map_err(|e| format!("the client's Telemetry stream is not taking commands: {e}"))
    }
}

impl RequestHandler for Inbound {
    fn handle(&self, _: Channel, request: RemotingCommand) -> BoxFuture<Option<RemotingCommand>> {
        let code = request.code;
        let answer = if code == RequestCode::CHECK_TRANSACTION_STATE.0 {
            // Oneway: a check that cannot be relayed is asked again later.
            if let Err(e) = self.check_transaction(&request) {
                debug!(error = %e, "transaction check not relayed to the gRPC client");
            }
            None
        } else {
            Some(RemotingCommand::error(
                ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                format!("request {code} is not relayed to gRPC clients"),
            ))
        };
        Box::pin(async move { answer })
    }
}

pub(crate) struct Messaging<B> {
    pub(crate) backend: Arc<B>,
    host: String,
    port: u16,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    namesrv: RemotingClient,
}

type Answer<T> = Result<Response<T>, GrpcStatus>;

impl<B: Backend> Messaging<B> {
    /// The session of the calling client, opened on its first request.
    pub(crate) fn session<T>(&self, req: &Request<T>) -> Result<(String, Arc<Session>), Failure> {
        let id = req
            .metadata()
            .get(CLIENT_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Failure::new(Code::ClientIdRequired, format!("the request carries no {CLIENT_ID} header")))?
            .to_owned();
        let peer = req.remote_addr().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let meta = |k: &str| req.metadata().get(k).and_then(|v| v.to_str().ok());
        let signer = self
            .backend
            .authenticate(peer.ip(), meta("authorization"), meta("x-mq-date-time"))
            .map_err(|why| Failure::new(Code::Unauthorized, why))?;
        let mut sessions = self.sessions.lock();
        let s = match sessions.get(&id) {
            Some(s) if !s.conn.is_closed() => s.clone(),
            old => {
                // A new client, or one whose connection the broker closed (idle): a
                // fresh connection, keeping what the client told us.
                debug!(client = %id, %peer, "gRPC client session opened");
                let telemetry = Arc::new(Mutex::new(old.and_then(|o| o.telemetry.lock().clone())));
                let s = Arc::new(Session {
                    conn: self.backend.connect(peer, Arc::new(Inbound { telemetry: telemetry.clone() })),
                    signer: Mutex::new(None),
                    settings: Mutex::new(old.and_then(|o| o.settings.lock().clone())),
                    telemetry,
                    last_seen: Mutex::new(tokio::time::Instant::now()),
                    renewals: old.map(|o| o.renewals.take()).unwrap_or_default(),
                });
                sessions.insert(id.clone(), s.clone());
                s
            }
        };
        *s.last_seen.lock() = tokio::time::Instant::now();
        *s.signer.lock() = signer;
        Ok((id, s))
    }

    /// Sends `cmd` to the broker over the client's connection and takes a SUCCESS answer as done, anything else as its failure.
    pub(crate) async fn invoke_ok(&self, s: &Session, cmd: RemotingCommand) -> Result<(), Failure> {
        let resp = self.invoke(s, cmd).await?;
        match resp.response_code() {
            ResponseCode::SUCCESS => Ok(()),
            code => Err(Failure::from_remoting(code, resp.remark.as_deref())),
        }
    }

    /// [`Self::invoke_ok`] for an answer whose header carries the result.
    pub(crate) async fn invoke_header<H: remoting::header::CommandHeader>(
        &self,
        s: &Session,
        cmd: RemotingCommand,
    ) -> Result<H, Failure> {
        let code = cmd.code;
        let resp = self.invoke(s, cmd).await?;
        if resp.response_code() != ResponseCode::SUCCESS {
            return Err(Failure::from_remoting(resp.response_code(), resp.remark.as_deref()));
        }
        resp.decode_header()
            .map_err(|e| Failure::new(Code::InternalServerError, format!("unreadable answer to request {code}: {e}")))
    }

    pub(crate) async fn invoke(&self, s: &Session, cmd: RemotingCommand) -> Result<RemotingCommand, Failure> {
        self.invoke_for(s, cmd, BROKER_TIMEOUT).await
    }

    /// [`Self::invoke`] waiting up to `timeout` (a pop that long-polls).
    pub(crate) async fn invoke_for(
        &self,
        s: &Session,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, Failure> {
        if let Some(signer) = s.signer.lock().as_ref() {
            remoting::acl::sign_with(&mut cmd, &signer.credentials, &signer.key);
        }
        let code = cmd.code;
        match tokio::time::timeout(timeout, s.conn.call(cmd)).await {
            Ok(Some(resp)) => Ok(resp),
            Ok(None) => {
                Err(Failure::new(Code::InternalServerError, format!("the broker gave request {code} no answer")))
            }
            Err(_) => Err(Failure::new(
                Code::ProxyTimeout,
                format!("the broker did not answer request {code} within {timeout:?}"),
            )),
        }
    }

    /// The gRPC endpoint of the broker at remoting address `addr`: this endpoint for
    /// this broker; for another, its host with this endpoint's port (RocketMQ's rule
    /// in local mode: every broker serves gRPC on the same port).
    pub(crate) fn endpoint_of(&self, addr: &str) -> Option<pb::Endpoints> {
        let (host, port) = if addr == self.backend.broker_addr() {
            (self.host.clone(), self.port)
        } else {
            let (host, _) = addr.rsplit_once(':')?;
            (host.trim_matches(['[', ']']).to_owned(), self.port)
        };
        let scheme = match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => pb::AddressScheme::IPv4,
            Ok(IpAddr::V6(_)) => pb::AddressScheme::IPv6,
            Err(_) => pb::AddressScheme::DomainName,
        };
        Some(pb::Endpoints { scheme: scheme as i32, addresses: vec![pb::Address { host, port: i32::from(port) }] })
    }

    /// The route of `topic` from the first name server that answers.
    pub(crate) async fn route(&self, topic: &str) -> Result<TopicRouteData, Failure> {
        let servers = self.backend.name_servers();
        if servers.is_empty() {
            return Err(Failure::new(
                Code::InternalServerError,
                "the broker has no name server (namesrvAddr) to ask for routes",
            ));
        }
        let mut last = None;
        for addr in &servers {
            let h = GetRouteInfoRequestHeader { topic: topic.to_owned(), accept_standard_json_only: None };
            let cmd = RemotingCommand::request_with(RequestCode::GET_ROUTEINFO_BY_TOPIC, &h);
            match self.namesrv.invoke(addr, cmd, BROKER_TIMEOUT).await {
                Ok(resp) if resp.response_code() == ResponseCode::SUCCESS => {
                    return remoting::json::from_slice(&resp.body_bytes()).map_err(|e| {
                        Failure::new(
                            Code::InternalServerError,
                            format!("name server {addr} sent an unreadable route: {e}"),
                        )
                    });
                }
                Ok(resp) if resp.response_code() == ResponseCode::TOPIC_NOT_EXIST => {
                    return Err(Failure::new(Code::TopicNotFound, format!("topic {topic} does not exist")));
                }
                Ok(resp) => last = Some(Failure::from_remoting(resp.response_code(), resp.remark.as_deref())),
                Err(e) => last = Some(Failure::new(Code::InternalServerError, format!("name server {addr}: {e}"))),
            }
        }
        Err(last.unwrap_or_else(|| Failure::new(Code::InternalServerError, "no name server answered")))
    }

    async fn send_one(&self, s: &Session, msg: pb::Message) -> Result<pb::SendResultEntry, Failure> {
        let topic = convert::resource_name(msg.topic.as_ref())
            .ok_or_else(|| Failure::new(Code::IllegalTopic, "the message names no topic"))?;
        let info = self.backend.topic(&topic);
        let mut out = convert::outgoing(msg, topic.clone(), &topic, self.backend.max_message_size())?;
        if let Some(declared) = info.as_ref().and_then(|i| convert::declared_type(i.message_type.as_deref())) {
            if declared != out.message_type {
                return Err(Failure::new(
                    Code::MessagePropertyConflictWithType,
                    format!(
                        "topic {topic} accepts {} messages, not {}",
                        declared.as_str_name(),
                        out.message_type.as_str_name()
                    ),
                ));
            }
        }
        if let (Some(group), Some(info)) = (&out.group, &info) {
            out.header.queue_id = convert::queue_of_group(group, info.write_queue_nums);
        }
        let header: SendMessageRequestHeaderV2 = out.header.into();
        let cmd = RemotingCommand::request_with(RequestCode::SEND_MESSAGE_V2, &header).with_body(out.body);
        let resp = self.invoke(s, cmd).await?;
        let code = resp.response_code();
        let h: SendMessageResponseHeader = match code {
            ResponseCode::SUCCESS
            | ResponseCode::FLUSH_DISK_TIMEOUT
            | ResponseCode::FLUSH_SLAVE_TIMEOUT
            | ResponseCode::SLAVE_NOT_AVAILABLE => resp
                .decode_header()
                .map_err(|e| Failure::new(Code::InternalServerError, format!("unreadable send response: {e}")))?,
            _ => return Err(Failure::from_remoting(code, resp.remark.as_deref())),
        };
        let status = if code == ResponseCode::SUCCESS {
            ok()
        } else {
            Failure::from_remoting(code, resp.remark.as_deref().or(Some("stored, but not as durable as configured")))
                .status()
        };
        let transaction_id = if out.message_type == pb::MessageType::Transaction {
            convert::transaction_id(&h.msg_id, h.queue_offset)
        } else {
            String::new()
        };
        Ok(pb::SendResultEntry {
            status: Some(status),
            message_id: out.message_id,
            transaction_id,
            offset: h.queue_offset,
            recall_handle: String::new(),
        })
    }

    /// The remoting heartbeat for a client: producers join the producer group of each
    /// topic they publish to, consumers their group with their subscriptions.
    fn heartbeat_data(id: &str, settings: Option<&pb::Settings>, group: Option<String>) -> HeartbeatData {
        let mut hb = HeartbeatData { client_id: id.to_owned(), producer_data_set: vec![], consumer_data_set: vec![] };
        match settings.and_then(|s| s.pub_sub.as_ref()) {
            Some(pb::settings::PubSub::Publishing(p)) => {
                hb.producer_data_set = p
                    .topics
                    .iter()
                    .filter_map(|t| convert::resource_name(Some(t)))
                    .map(|group_name| ProducerData { group_name })
                    .collect();
            }
            Some(pb::settings::PubSub::Subscription(sub)) => {
                let group = group.or_else(|| convert::resource_name(sub.group.as_ref()));
                if let Some(group_name) = group {
                    let subscription_data_set = sub
                        .subscriptions
                        .iter()
                        .filter_map(|e| {
                            let topic = convert::resource_name(e.topic.as_ref())?;
                            let (expr, kind) = match &e.expression {
                                Some(f) if f.r#type == pb::FilterType::Sql as i32 => (f.expression.as_str(), "SQL92"),
                                Some(f) if !f.expression.is_empty() => (f.expression.as_str(), "TAG"),
                                _ => ("*", "TAG"),
                            };
                            Some(SubscriptionData::new(topic, expr, kind, common::time::now_ms()))
                        })
                        .collect();
                    hb.consumer_data_set.push(ConsumerData {
                        group_name,
                        consume_type: ConsumeType::ConsumePop,
                        subscription_data_set,
                        ..ConsumerData::default()
                    });
                }
            }
            None => {}
        }
        hb
    }
}

/// The settings the broker answers a client's settings with; `group` is what the
/// broker knows of a consumer's group.
fn answer_settings(mut s: pb::Settings, max_body: usize, group: Option<crate::GroupInfo>) -> pb::Settings {
    match &mut s.pub_sub {
        Some(pb::settings::PubSub::Publishing(p)) => {
            p.max_body_size = i32::try_from(max_body).unwrap_or(i32::MAX);
            p.validate_message_type = true;
        }
        Some(pb::settings::PubSub::Subscription(sub)) => {
            sub.receive_batch_size.get_or_insert(32);
            let poll = crate::consume::MAX_POLL.as_secs() as i64;
            sub.long_polling_timeout = Some(prost_types::Duration { seconds: poll, nanos: 0 });
            if let Some(g) = group {
                sub.fifo = Some(g.fifo);
                s.backoff_policy = Some(crate::consume::backoff_policy(g));
            }
        }
        None => {}
    }
    s.metric = Some(pb::Metric { on: false, endpoints: None });
    s
}

/// The status of a call that answers nothing but its status.
fn status_of(outcome: Result<(), Failure>) -> pb::Status {
    outcome.map_or_else(|f| f.status(), |()| ok())
}

/// The status of a call with a result per entry: OK when all are, their code when
/// all failed alike, MULTIPLE_RESULTS otherwise (RocketMQ's proxy).
fn overall(entries: &[pb::AckMessageResultEntry]) -> pb::Status {
    let codes: Vec<i32> = entries.iter().map(|e| e.status.as_ref().map_or(0, |s| s.code)).collect();
    match codes.first() {
        Some(first) if codes.iter().all(|c| c == first) => entries[0].status.clone().unwrap_or_else(ok),
        _ => Failure::new(Code::MultipleResults, "some entries failed; see each entry's status").status(),
    }
}

fn not_served(what: &str) -> pb::Status {
    Failure::new(
        Code::NotImplemented,
        format!("{what} is not served over gRPC by this broker yet; consume over the remoting protocol"),
    )
    .status()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, GrpcStatus>> + Send + 'static>>;

#[tonic::async_trait]
impl<B: Backend> MessagingService for Messaging<B> {
    async fn query_route(&self, req: Request<pb::QueryRouteRequest>) -> Answer<pb::QueryRouteResponse> {
        let answer = async {
            self.session(&req)?;
            let r = req.get_ref();
            let topic = convert::resource_name(r.topic.as_ref())
                .ok_or_else(|| Failure::new(Code::IllegalTopic, "the request names no topic"))?;
            let route = self.route(&topic).await?;
            let declared = self.backend.topic(&topic).and_then(|t| convert::declared_type(t.message_type.as_deref()));
            let resource = r.topic.clone().unwrap_or_default();
            let queues =
                convert::queues(&resource, &route, &convert::accepted_types(declared), |a| self.endpoint_of(a));
            Ok::<_, Failure>(queues)
        };
        Ok(Response::new(match answer.await {
            Ok(message_queues) => pb::QueryRouteResponse { status: Some(ok()), message_queues },
            Err(f) => pb::QueryRouteResponse { status: Some(f.status()), message_queues: vec![] },
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Answer<pb::HeartbeatResponse> {
        let answer = async {
            let (id, s) = self.session(&req)?;
            let settings = s.settings.lock().clone();
            let group = convert::resource_name(req.get_ref().group.as_ref());
            let hb = Self::heartbeat_data(&id, settings.as_ref(), group);
            if hb.producer_data_set.is_empty() && hb.consumer_data_set.is_empty() {
                return Ok(());
            }
            let body =
                remoting::json::to_vec(&hb).map_err(|e| Failure::new(Code::InternalServerError, e.to_string()))?;
            self.invoke_ok(&s, RemotingCommand::request(RequestCode::HEART_BEAT).with_body(body)).await
        };
        let status = status_of(answer.await);
        Ok(Response::new(pb::HeartbeatResponse { status: Some(status) }))
    }

    async fn send_message(&self, req: Request<pb::SendMessageRequest>) -> Answer<pb::SendMessageResponse> {
        let s = match self.session(&req) {
            Ok((_, s)) => s,
            Err(f) => return Ok(Response::new(pb::SendMessageResponse { status: Some(f.status()), entries: vec![] })),
        };
        let messages = req.into_inner().messages;
        if messages.is_empty() {
            let f = Failure::new(Code::BadRequest, "the request carries no message");
            return Ok(Response::new(pb::SendMessageResponse { status: Some(f.status()), entries: vec![] }));
        }
        let mut entries = Vec::with_capacity(messages.len());
        let mut first_failure = None;
        for msg in messages {
            let id = msg.system_properties.as_ref().map(|p| p.message_id.clone()).unwrap_or_default();
            match self.send_one(&s, msg).await {
                Ok(e) => entries.push(e),
                Err(f) => {
                    first_failure.get_or_insert_with(|| f.status());
                    entries.push(pb::SendResultEntry {
                        status: Some(f.status()),
                        message_id: id,
                        ..Default::default()
                    });
                }
            }
        }
        let status = first_failure.unwrap_or_else(|| entries[0].status.clone().unwrap_or_else(ok));
        Ok(Response::new(pb::SendMessageResponse { status: Some(status), entries }))
    }

    async fn query_assignment(&self, req: Request<pb::QueryAssignmentRequest>) -> Answer<pb::QueryAssignmentResponse> {
        let answer = async {
            self.session(&req)?;
            self.query_assignment_of(req.get_ref()).await
        };
        Ok(Response::new(match answer.await {
            Ok(assignments) => pb::QueryAssignmentResponse { status: Some(ok()), assignments },
            Err(f) => pb::QueryAssignmentResponse { status: Some(f.status()), assignments: vec![] },
        }))
    }

    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;

    async fn receive_message(&self, req: Request<pb::ReceiveMessageRequest>) -> Answer<Self::ReceiveMessageStream> {
        let deadline =
            req.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(crate::consume::grpc_timeout);
        let answer = async {
            let (_, s) = self.session(&req)?;
            self.receive(&s, req.get_ref(), deadline).await
        };
        let responses = answer.await.unwrap_or_else(|f| {
            vec![pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Status(f.status())),
            }]
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(responses.into_iter().map(Ok)))))
    }

    async fn ack_message(&self, req: Request<pb::AckMessageRequest>) -> Answer<pb::AckMessageResponse> {
        let answer = async {
            let (_, s) = self.session(&req)?;
            self.ack(&s, req.get_ref()).await
        };
        Ok(Response::new(match answer.await {
            Ok(entries) => pb::AckMessageResponse { status: Some(overall(&entries)), entries },
            Err(f) => pb::AckMessageResponse { status: Some(f.status()), entries: vec![] },
        }))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        req: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Answer<pb::ForwardMessageToDeadLetterQueueResponse> {
        let answer = async {
            let (_, s) = self.session(&req)?;
            self.forward_to_dlq(&s, req.get_ref()).await
        };
        Ok(Response::new(pb::ForwardMessageToDeadLetterQueueResponse { status: Some(status_of(answer.await)) }))
    }

    type PullMessageStream = BoxStream<pb::PullMessageResponse>;

    async fn pull_message(&self, req: Request<pb::PullMessageRequest>) -> Answer<Self::PullMessageStream> {
        let deadline =
            req.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(crate::consume::grpc_timeout);
        let answer = async {
            let (_, s) = self.session(&req)?;
            self.pull(&s, req.get_ref(), deadline).await
        };
        let responses = answer.await.unwrap_or_else(|f| {
            vec![pb::PullMessageResponse { content: Some(pb::pull_message_response::Content::Status(f.status())) }]
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(responses.into_iter().map(Ok)))))
    }

    async fn update_offset(&self, req: Request<pb::UpdateOffsetRequest>) -> Answer<pb::UpdateOffsetResponse> {
        let answer = async {
            let (_, s) = self.session(&req)?;
            self.update_offset_of(&s, req.get_ref()).await
        };
        Ok(Response::new(pb::UpdateOffsetResponse { status: Some(status_of(answer.await)) }))
    }

    async fn get_offset(&self, req: Request<pb::GetOffsetRequest>) -> Answer<pb::GetOffsetResponse> {
        let answer = async {
            let (_, s) = self.session(&req)?;
            self.get_offset_of(&s, req.get_ref()).await
        };
        Ok(Response::new(match answer.await {
            Ok(offset) => pb::GetOffsetResponse { status: Some(ok()), offset },
            Err(f) => pb::GetOffsetResponse { status: Some(f.status()), offset: 0 },
        }))
    }

    async fn query_offset(&self, req: Request<pb::QueryOffsetRequest>) -> Answer<pb::QueryOffsetResponse> {
        let answer = async {
            let (_, s) = self.session(&req)?;
            self.query_offset_of(&s, req.get_ref()).await
        };
        Ok(Response::new(match answer.await {
            Ok(offset) => pb::QueryOffsetResponse { status: Some(ok()), offset },
            Err(f) => pb::QueryOffsetResponse { status: Some(f.status()), offset: 0 },
        }))
    }

    async fn end_transaction(&self, req: Request<pb::EndTransactionRequest>) -> Answer<pb::EndTransactionResponse> {
        let answer = async {
            let (_, s) = self.session(&req)?;
            let r = req.get_ref();
            let topic = convert::resource_name(r.topic.as_ref())
                .ok_or_else(|| Failure::new(Code::IllegalTopic, "the request names no topic"))?;
            let (commit_log_offset, queue_offset) =
                convert::parse_transaction_id(&r.transaction_id).ok_or_else(|| {
                    Failure::new(
                        Code::InvalidTransactionId,
                        format!("transaction id {:?} was not issued by this broker", r.transaction_id),
                    )
                })?;
            let commit_or_rollback = match pb::TransactionResolution::try_from(r.resolution) {
                Ok(pb::TransactionResolution::Commit) => sysflag::TRANSACTION_COMMIT_TYPE,
                Ok(pb::TransactionResolution::Rollback) => sysflag::TRANSACTION_ROLLBACK_TYPE,
                // Unknown: the broker asks again later; nothing to send.
                _ => return Ok(()),
            };
            let h = EndTransactionRequestHeader {
                // Transactional producers of a topic form the topic's producer group
                // (see `heartbeat_data`), which the half message names.
                producer_group: topic.clone(),
                tran_state_table_offset: queue_offset,
                commit_log_offset,
                commit_or_rollback,
                from_transaction_check: Some(r.source == pb::TransactionSource::SourceServerCheck as i32),
                msg_id: r.message_id.clone(),
                transaction_id: Some(r.transaction_id.clone()),
                topic: Some(topic),
            };
            self.invoke_ok(&s, RemotingCommand::request_with(RequestCode::END_TRANSACTION, &h)).await
        };
        let status = status_of(answer.await);
        Ok(Response::new(pb::EndTransactionResponse { status: Some(status) }))
    }

    type TelemetryStream = BoxStream<pb::TelemetryCommand>;

    async fn telemetry(&self, req: Request<Streaming<pb::TelemetryCommand>>) -> Answer<Self::TelemetryStream> {
        let (_, s) = self.session(&req).map_err(|f| GrpcStatus::invalid_argument(f.message))?;
        let (tx, rx) = mpsc::channel(16);
        *s.telemetry.lock() = Some(tx.clone());
        let mut incoming = req.into_inner();
        let max = self.backend.max_message_size();
        let backend = self.backend.clone();
        tokio::spawn(async move {
            loop {
                let cmd = match incoming.message().await {
                    Ok(Some(cmd)) => cmd,
                    Ok(None) => break,
                    Err(e) => {
                        debug!(error = %e, "telemetry stream ended");
                        break;
                    }
                };
                *s.last_seen.lock() = tokio::time::Instant::now();
                match cmd.command {
                    Some(pb::telemetry_command::Command::Settings(settings)) => {
                        *s.settings.lock() = Some(settings.clone());
                        let group = match &settings.pub_sub {
                            Some(pb::settings::PubSub::Subscription(sub)) => {
                                convert::resource_name(sub.group.as_ref()).and_then(|g| backend.consumer_group(&g))
                            }
                            _ => None,
                        };
                        let reply = pb::TelemetryCommand {
                            status: Some(ok()),
                            command: Some(pb::telemetry_command::Command::Settings(answer_settings(
                                settings, max, group,
                            ))),
                        };
                        if tx.send(Ok(reply)).await.is_err() {
                            break;
                        }
                    }
                    Some(other) => debug!(command = ?std::mem::discriminant(&other), "telemetry command ignored"),
                    None => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn notify_client_termination(
        &self,
        req: Request<pb::NotifyClientTerminationRequest>,
    ) -> Answer<pb::NotifyClientTerminationResponse> {
        let status = match req.metadata().get(CLIENT_ID).and_then(|v| v.to_str().ok()) {
            Some(id) => {
                let gone = self.sessions.lock().remove(id);
                if let Some(s) = gone {
                    // Its push consumer's messages come back soon, not after the rest
                    // of their invisibility; closing the connection unregisters the
                    // client, as a remoting client's closed connection does.
                    self.release(&s).await;
                    s.conn.close();
                }
                ok()
            }
            None => Failure::new(Code::ClientIdRequired, format!("the request carries no {CLIENT_ID} header")).status(),
        };
        Ok(Response::new(pb::NotifyClientTerminationResponse { status: Some(status) }))
    }

    async fn change_invisible_duration(
        &self,
        req: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Answer<pb::ChangeInvisibleDurationResponse> {
        let answer = async {
            let (_, s) = self.session(&req)?;
            self.change_invisible(&s, req.get_ref()).await
        };
        Ok(Response::new(match answer.await {
            Ok(receipt_handle) => pb::ChangeInvisibleDurationResponse { status: Some(ok()), receipt_handle },
            Err(f) => pb::ChangeInvisibleDurationResponse { status: Some(f.status()), receipt_handle: String::new() },
        }))
    }

    async fn recall_message(&self, _req: Request<pb::RecallMessageRequest>) -> Answer<pb::RecallMessageResponse> {
        Ok(Response::new(pb::RecallMessageResponse {
            status: Some(not_served("RecallMessage")),
            message_id: String::new(),
        }))
    }

    async fn sync_lite_subscription(
        &self,
        _req: Request<pb::SyncLiteSubscriptionRequest>,
    ) -> Answer<pb::SyncLiteSubscriptionResponse> {
        Ok(Response::new(pb::SyncLiteSubscriptionResponse { status: Some(not_served("SyncLiteSubscription")) }))
    }
}
