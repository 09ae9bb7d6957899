//! Which broker of a broker name a consumer's requests go to, against an in-process
//! name server and brokers that record what they receive: pulls follow the broker's
//! `suggestWhichBrokerId` and commit offsets only on the master; offsets are
//! committed and queried on a slave while the route has no master; locks go to the
//! master only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use client::consumer::pull_api::{PullApi, PullRequest, PullStatus};
use client::{ClientInstance, Error};
use common::route::{BrokerData, MessageQueue, QueueData, TopicRouteData};
use common::subscription::SubscriptionData;
use common::sysflag::pull as pull_flag;
use common::{perm, ResponseCode};
use remoting::body::{LockBatchRequestBody, LockBatchResponseBody};
use remoting::header::broker::{
    PullMessageRequestHeader, PullMessageResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use remoting::server::{Dispatcher, RemotingServer, ServerConfig};
use remoting::{Channel, RemotingCommand, RequestCode};

const TOPIC: &str = "Orders";
const BROKER: &str = "broker-a";

/// A request as a fake broker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A pull: whether COMMIT_OFFSET was set, and the commit offset sent.
    Pull {
        commit_flag: bool,
        commit_offset: i64,
    },
    UpdateOffset(i64),
    QueryOffset,
    Lock,
}

/// A broker that answers pulls with PULL_NOT_FOUND and the suggestion it is told
/// to make, and keeps the offsets it is sent.
struct FakeBroker {
    server: RemotingServer,
    seen: Arc<Mutex<Vec<Seen>>>,
    suggest: Arc<AtomicI64>,
}

impl FakeBroker {
    async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let suggest = Arc::new(AtomicI64::new(0));
        let offset = Arc::new(AtomicI64::new(-1));
        let mut d = Dispatcher::new();
        let (s, sg) = (seen.clone(), suggest.clone());
        d.register(RequestCode::PULL_MESSAGE, move |_ch: Channel, req: RemotingCommand| {
            let (s, sg) = (s.clone(), sg.clone());
            async move {
                let h: PullMessageRequestHeader = req.decode_header().ok()?;
                s.lock().push(Seen::Pull {
                    commit_flag: h.sys_flag & pull_flag::COMMIT_OFFSET != 0,
                    commit_offset: h.commit_offset,
                });
                let resp = PullMessageResponseHeader {
                    suggest_which_broker_id: sg.load(Ordering::SeqCst),
                    next_begin_offset: h.queue_offset,
                    min_offset: 0,
                    max_offset: h.queue_offset,
                };
                Some(RemotingCommand::response_with(ResponseCode::PULL_NOT_FOUND, &resp))
            }
        });
        let (s, o) = (seen.clone(), offset.clone());
        d.register(RequestCode::UPDATE_CONSUMER_OFFSET, move |_ch: Channel, req: RemotingCommand| {
            let (s, o) = (s.clone(), o.clone());
            async move {
                let h: UpdateConsumerOffsetRequestHeader = req.decode_header().ok()?;
                s.lock().push(Seen::UpdateOffset(h.commit_offset));
                o.store(h.commit_offset, Ordering::SeqCst);
                (!req.is_oneway()).then(RemotingCommand::success)
            }
        });
        let (s, o) = (seen.clone(), offset.clone());
        d.register(RequestCode::QUERY_CONSUMER_OFFSET, move |_ch: Channel, req: RemotingCommand| {
            let (s, o) = (s.clone(), o.clone());
            async move {
                let _: QueryConsumerOffsetRequestHeader = req.decode_header().ok()?;
                s.lock().push(Seen::QueryOffset);
                match o.load(Ordering::SeqCst) {
                    -1 => Some(RemotingCommand::error(ResponseCode::QUERY_NOT_FOUND, "not found")),
                    offset => Some(RemotingCommand::response_with(
                        ResponseCode::SUCCESS,
                        &QueryConsumerOffsetResponseHeader { offset },
                    )),
                }
            }
        });
        let s = seen.clone();
        d.register(RequestCode::LOCK_BATCH_MQ, move |_ch: Channel, req: RemotingCommand| {
            let s = s.clone();
            async move {
                let body: LockBatchRequestBody = remoting::json::from_slice(&req.body_bytes()).ok()?;
                s.lock().push(Seen::Lock);
                let answer = LockBatchResponseBody { lock_ok_mq_set: body.mq_set };
                Some(RemotingCommand::success().with_body(remoting::json::to_vec(&answer).ok()?))
            }
        });
        let server = RemotingServer::bind(ServerConfig::new(loopback()), Arc::new(d)).await.unwrap();
        Self { server, seen, suggest }
    }

    fn addr(&self) -> String {
        self.server.local_addr().to_string()
    }

    /// What the broker received since the last call.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock())
    }

    fn suggest(&self, broker_id: i64) {
        self.suggest.store(broker_id, Ordering::SeqCst);
    }
}

/// A name server whose one route lists `BROKER` with the addresses it is given.
struct FakeNamesrv {
    server: RemotingServer,
    addrs: Arc<Mutex<BTreeMap<u64, String>>>,
}

impl FakeNamesrv {
    async fn start() -> Self {
        let addrs: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
        let mut d = Dispatcher::new();
        let a = addrs.clone();
        d.register(RequestCode::GET_ROUTEINFO_BY_TOPIC, move |_ch: Channel, _req: RemotingCommand| {
            let a = a.clone();
            async move {
                let route = TopicRouteData {
                    order_topic_conf: None,
                    queue_datas: vec![QueueData {
                        broker_name: BROKER.into(),
                        read_queue_nums: 1,
                        write_queue_nums: 1,
                        perm: perm::READ_WRITE,
                        topic_sys_flag: 0,
                    }],
                    broker_datas: vec![BrokerData {
                        cluster: "C".into(),
                        broker_name: BROKER.into(),
                        broker_addrs: a.lock().clone(),
                        zone_name: None,
                        enable_acting_master: false,
                    }],
                    filter_server_table: BTreeMap::new(),
                };
                Some(RemotingCommand::success().with_body(remoting::json::to_vec(&route).ok()?))
            }
        });
        let server = RemotingServer::bind(ServerConfig::new(loopback()), Arc::new(d)).await.unwrap();
        Self { server, addrs }
    }

    fn set(&self, addrs: &[(u64, &FakeBroker)]) {
        *self.addrs.lock() = addrs.iter().map(|(id, b)| (*id, b.addr())).collect();
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn api(namesrv: &FakeNamesrv) -> PullApi {
    let cfg = config::ClientConfig { mq_client_api_timeout: Duration::from_secs(2), ..Default::default() };
    PullApi::new(ClientInstance::new(cfg, Some(vec![namesrv.server.local_addr().to_string()])))
}

fn mq() -> MessageQueue {
    MessageQueue::new(TOPIC, BROKER, 0)
}

/// A push consumer's pull: committing `commit` when it reaches the master.
fn pull_request(commit: Option<i64>) -> PullRequest {
    let sub = Arc::new(SubscriptionData::new(TOPIC, "*", "TAG", 1));
    let mut req = PullRequest::new("G", mq(), 7, sub);
    req.suspend = None;
    req.timeout = Duration::from_secs(2);
    req.commit_offset = commit;
    req
}

async fn pull(api: &PullApi, commit: Option<i64>) -> Result<PullStatus, Error> {
    api.pull(&pull_request(commit)).await.map(|r| r.status)
}

fn pulled(commit_flag: bool, commit_offset: i64) -> Vec<Seen> {
    vec![Seen::Pull { commit_flag, commit_offset }]
}

#[tokio::test]
async fn pulls_follow_the_suggestion_and_commit_only_on_the_master() {
    let (master, slave) = (FakeBroker::start().await, FakeBroker::start().await);
    let ns = FakeNamesrv::start().await;
    ns.set(&[(0, &master), (1, &slave)]);
    let api = api(&ns);

    // First pull: the master, with the piggy-backed commit. It suggests the slave.
    master.suggest(1);
    assert_eq!(pull(&api, Some(5)).await.unwrap(), PullStatus::NoNewMsg);
    assert_eq!(master.take(), pulled(true, 5));
    assert_eq!(api.pull_from_which_node(&mq()), 1);

    // Next pulls: the slave, never with the commit flag nor an offset to commit.
    slave.suggest(1);
    pull(&api, Some(6)).await.unwrap();
    pull(&api, None).await.unwrap();
    assert_eq!(slave.take(), [pulled(false, 0), pulled(false, 0)].concat());
    assert!(master.take().is_empty());

    // The slave suggests the master: back there, committing again.
    slave.suggest(0);
    master.suggest(0);
    pull(&api, Some(8)).await.unwrap();
    pull(&api, Some(9)).await.unwrap();
    assert_eq!(slave.take(), pulled(false, 0));
    assert_eq!(master.take(), pulled(true, 9));
    assert_eq!(api.pull_from_which_node(&mq()), 0);
}

#[tokio::test]
async fn a_suggested_id_missing_from_the_route_falls_back_like_rocketmq() {
    let (master, slave1, slave2) = (FakeBroker::start().await, FakeBroker::start().await, FakeBroker::start().await);
    let ns = FakeNamesrv::start().await;
    ns.set(&[(0, &master), (2, &slave2)]);
    let api = api(&ns);

    // Id 1 is not listed: RocketMQ tries the next id, 2.
    master.suggest(1);
    pull(&api, None).await.unwrap();
    assert_eq!(master.take(), pulled(false, 0));
    slave2.suggest(5);
    pull(&api, Some(3)).await.unwrap();
    assert_eq!(slave2.take(), pulled(false, 0));

    // Ids 5 and 6 are not listed: the master.
    pull(&api, Some(4)).await.unwrap();
    assert_eq!(master.take(), pulled(true, 4));
    assert!(slave1.take().is_empty());
    assert!(slave2.take().is_empty());
}

#[tokio::test]
async fn with_the_master_gone_pulls_and_offsets_go_to_the_slave_and_come_back() {
    let (master, slave) = (FakeBroker::start().await, FakeBroker::start().await);
    let ns = FakeNamesrv::start().await;
    ns.set(&[(1, &slave)]);
    let api = api(&ns);

    // No master in the route: pull from the slave, without committing.
    assert_eq!(pull(&api, Some(5)).await.unwrap(), PullStatus::NoNewMsg);
    assert_eq!(slave.take(), pulled(false, 0));

    // Offsets: committed to and queried from the slave (after one route refresh).
    assert_eq!(api.query_consumer_offset("G", &mq()).await.unwrap(), None);
    api.update_consumer_offset("G", &mq(), 12).await.unwrap();
    assert_eq!(api.query_consumer_offset("G", &mq()).await.unwrap(), Some(12));
    api.update_consumer_offset_oneway("G", &mq(), 13).await.unwrap();
    eventually(|| slave.seen.lock().contains(&Seen::UpdateOffset(13))).await;
    assert_eq!(slave.take(), [Seen::QueryOffset, Seen::UpdateOffset(12), Seen::QueryOffset, Seen::UpdateOffset(13)]);

    // Orderly locks need the master.
    let err = api.lock_batch("G", BROKER, &[mq()]).await.unwrap_err();
    assert!(matches!(err, Error::NoBrokerAddr(ref b) if b == BROKER), "{err}");
    assert!(slave.take().is_empty());

    // The master is back in the route: pulls, commits and locks go to it.
    ns.set(&[(0, &master), (1, &slave)]);
    api.instance().refresh_route(TOPIC).await.unwrap();
    pull(&api, Some(14)).await.unwrap();
    api.update_consumer_offset("G", &mq(), 14).await.unwrap();
    assert_eq!(api.lock_batch("G", BROKER, &[mq()]).await.unwrap(), vec![mq()]);
    assert_eq!(master.take(), [pulled(true, 14), vec![Seen::UpdateOffset(14), Seen::Lock]].concat());
    assert!(slave.take().is_empty());
}

#[tokio::test]
async fn a_slave_that_stops_answering_sends_the_next_pull_to_the_master() {
    let (master, slave) = (FakeBroker::start().await, FakeBroker::start().await);
    let ns = FakeNamesrv::start().await;
    ns.set(&[(0, &master), (1, &slave)]);
    let api = api(&ns);
    master.suggest(1);
    pull(&api, None).await.unwrap();
    master.take();

    slave.server.shutdown(Duration::ZERO).await;
    assert!(pull(&api, Some(3)).await.is_err());
    assert_eq!(api.pull_from_which_node(&mq()), 0);
    master.suggest(0);
    pull(&api, Some(3)).await.unwrap();
    assert_eq!(master.take(), pulled(true, 3));
}

/// Polls `cond` for up to 5 s.
async fn eventually(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
