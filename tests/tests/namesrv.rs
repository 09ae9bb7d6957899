//! The real `namesrv` binary, driven over TCP.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Result;
use bytes::{Buf, BufMut, BytesMut};
use common::route::{ClusterInfo, TopicRouteData};
use common::topic::TopicConfig;
use remoting::body::{DataVersion, KvTable, RegisterBrokerBody, TopicConfigSerializeWrapper, TopicList};
use remoting::header::namesrv::*;
use remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode, ResponseCode};
use tests::{eventually, Namesrv};

const T: Duration = Duration::from_secs(5);

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig::default(), None)
}

fn register_request(name: &str, addr: &str, topics: &[(&str, i32)], counter: i64, compressed: bool) -> RemotingCommand {
    let mut table = BTreeMap::new();
    for (t, q) in topics {
        table.insert((*t).to_owned(), TopicConfig::new(*t, *q, 6));
    }
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: table,
            data_version: DataVersion { timestamp: 1_700_000_000_000, counter, state_version: None },
        },
        filter_server_list: vec![],
    }
    .encode(compressed)
    .unwrap();
    let crc = (crc32fast::hash(&body) & 0x7FFF_FFFF) as i32;
    let header = RegisterBrokerRequestHeader {
        broker_name: name.into(),
        broker_addr: addr.into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: "127.0.0.1:10912".into(),
        broker_id: 0,
        compressed: Some(compressed),
        body_crc32: Some(crc),
        ..Default::default()
    };
    RemotingCommand::request_with(RequestCode::REGISTER_BROKER, &header).with_body(body)
}

async fn route(c: &RemotingClient, ns: &str, topic: &str) -> Result<RemotingCommand> {
    let h = GetRouteInfoRequestHeader { topic: topic.into(), accept_standard_json_only: None };
    Ok(c.invoke(ns, RemotingCommand::request_with(RequestCode::GET_ROUTEINFO_BY_TOPIC, &h), T).await?)
}

#[tokio::test]
async fn register_plain_then_route_and_cluster_info() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let c = client();
    let resp =
        c.invoke(&ns.addr(), register_request("broker-a", "127.0.0.1:10911", &[("TopicTest", 4)], 1, false), T).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);

    let resp = route(&c, &ns.addr(), "TopicTest").await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    let body = resp.body_bytes();
    // Strict JSON with the keys strict clients need.
    let raw: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(raw["brokerDatas"][0]["brokerAddrs"]["0"], "127.0.0.1:10911");
    assert_eq!(raw["brokerDatas"][0]["enableActingMaster"], false);
    assert_eq!(raw["queueDatas"][0]["topicSysFlag"], 0);
    assert!(raw["filterServerTable"].is_object());
    let route: TopicRouteData = serde_json::from_slice(&body)?;
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert_eq!(route.queue_datas[0].perm, 6);

    let resp = c.invoke(&ns.addr(), RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO), T).await?;
    let info: ClusterInfo = remoting::json::from_slice(&resp.body_bytes())?;
    assert!(info.cluster_addr_table["DefaultCluster"].contains("broker-a"));
    assert_eq!(info.broker_addr_table["broker-a"].master_addr(), Some("127.0.0.1:10911"));

    let resp =
        c.invoke(&ns.addr(), RemotingCommand::request(RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER), T).await?;
    let topics: TopicList = remoting::json::from_slice(&resp.body_bytes())?;
    assert_eq!(topics.topic_list, ["TopicTest"]);
    Ok(())
}

#[tokio::test]
async fn register_compressed_body() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let c = client();
    let topics: Vec<(String, i32)> = (0..500).map(|i| (format!("Topic{i}"), 8)).collect();
    let refs: Vec<(&str, i32)> = topics.iter().map(|(t, q)| (t.as_str(), *q)).collect();
    let resp = c.invoke(&ns.addr(), register_request("broker-z", "127.0.0.1:20911", &refs, 3, true), T).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    let resp = route(&c, &ns.addr(), "Topic499").await?;
    let route: TopicRouteData = serde_json::from_slice(&resp.body_bytes())?;
    assert_eq!(route.broker_datas[0].broker_name, "broker-z");
    Ok(())
}

#[tokio::test]
async fn crc_mismatch_is_refused() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let c = client();
    let mut req = register_request("broker-a", "127.0.0.1:10911", &[("T", 4)], 1, false);
    req.ext_fields.insert("bodyCrc32", "12345");
    let resp = c.invoke(&ns.addr(), req, T).await?;
    assert_eq!(resp.response_code(), ResponseCode::SYSTEM_ERROR);
    assert_eq!(resp.remark.as_deref(), Some("crc32 not match"));
    assert_eq!(route(&c, &ns.addr(), "T").await?.response_code(), ResponseCode::TOPIC_NOT_EXIST);
    Ok(())
}

#[tokio::test]
async fn unknown_topic_and_unknown_code() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let c = client();
    let resp = route(&c, &ns.addr(), "Nope").await?;
    assert_eq!(resp.response_code(), ResponseCode::TOPIC_NOT_EXIST);
    assert!(resp.remark_str().contains("Nope"));
    let resp = c.invoke(&ns.addr(), RemotingCommand::request(RequestCode(9999)), T).await?;
    assert_eq!(resp.response_code(), ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(resp.remark.as_deref(), Some(" request type 9999 not supported"));
    Ok(())
}

#[tokio::test]
async fn silent_broker_expires() -> Result<()> {
    let ns = Namesrv::start(&[("BROKER_CHANNEL_EXPIRED_TIME", "1s"), ("SCAN_NOT_ACTIVE_BROKER_INTERVAL", "100ms")])?;
    let c = client();
    c.invoke(&ns.addr(), register_request("broker-a", "127.0.0.1:10911", &[("T", 4)], 1, false), T).await?;
    assert_eq!(route(&c, &ns.addr(), "T").await?.response_code(), ResponseCode::SUCCESS);
    let started = std::time::Instant::now();
    // Expiry closes the broker's connection; query on a fresh client.
    let probe = client();
    eventually(Duration::from_secs(10), "route to expire", || async {
        let r = route(&probe, &ns.addr(), "T").await.ok()?;
        (r.response_code() == ResponseCode::TOPIC_NOT_EXIST).then_some(())
    })
    .await?;
    assert!(started.elapsed() >= Duration::from_millis(900), "expired too early: {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn closing_the_broker_connection_removes_its_routes() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = client();
    broker.invoke(&ns.addr(), register_request("broker-a", "127.0.0.1:10911", &[("T", 4)], 1, false), T).await?;
    let c = client();
    assert_eq!(route(&c, &ns.addr(), "T").await?.response_code(), ResponseCode::SUCCESS);
    broker.shutdown();
    eventually(T, "route removal after disconnect", || async {
        let r = route(&c, &ns.addr(), "T").await.ok()?;
        (r.response_code() == ResponseCode::TOPIC_NOT_EXIST).then_some(())
    })
    .await?;
    let resp = c.invoke(&ns.addr(), RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO), T).await?;
    let info: ClusterInfo = remoting::json::from_slice(&resp.body_bytes())?;
    assert!(info.broker_addr_table.is_empty());
    Ok(())
}

#[tokio::test]
async fn unregister_removes_routes() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let c = client();
    c.invoke(&ns.addr(), register_request("broker-a", "127.0.0.1:10911", &[("T", 4)], 1, false), T).await?;
    let h = UnRegisterBrokerRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: "127.0.0.1:10911".into(),
        cluster_name: "DefaultCluster".into(),
        broker_id: 0,
    };
    let resp = c.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::UNREGISTER_BROKER, &h), T).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert_eq!(route(&c, &ns.addr(), "T").await?.response_code(), ResponseCode::TOPIC_NOT_EXIST);
    Ok(())
}

/// Frames a request by hand, so the test controls the serialize type.
fn raw_frame(ser: u8, header: &[u8]) -> Vec<u8> {
    let mut f = BytesMut::new();
    f.put_i32((4 + header.len()) as i32);
    f.put_u32((u32::from(ser) << 24) | header.len() as u32);
    f.put_slice(header);
    f.to_vec()
}

fn read_frame(s: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut rest = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut rest)?;
    Ok(rest)
}

#[tokio::test]
async fn json_and_binary_clients_get_answers_in_their_own_format() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let addr = ns.process.addr;
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut json = std::net::TcpStream::connect(addr)?;
        json.set_read_timeout(Some(T))?;
        json.write_all(&raw_frame(
            0,
            br#"{"code":106,"language":"GO","version":317,"opaque":7,"flag":0,"remark":""}"#,
        ))?;
        let resp = read_frame(&mut json)?;
        assert_eq!(resp[0], 0, "JSON request, JSON answer");
        let hlen = (u32::from_be_bytes(resp[0..4].try_into()?) & 0xFF_FFFF) as usize;
        let header: serde_json::Value = serde_json::from_slice(&resp[4..4 + hlen])?;
        assert_eq!(header["opaque"], 7);
        assert_eq!(header["code"], 0);

        let mut binary = std::net::TcpStream::connect(addr)?;
        binary.set_read_timeout(Some(T))?;
        let mut h = BytesMut::new();
        h.put_i16(106); // GET_BROKER_CLUSTER_INFO
        h.put_u8(0); // JAVA
        h.put_i16(409);
        h.put_i32(8); // opaque
        h.put_i32(0); // flag
        h.put_i32(0); // remark
        h.put_i32(0); // ext fields
        binary.write_all(&raw_frame(1, &h))?;
        let resp = read_frame(&mut binary)?;
        assert_eq!(resp[0], 1, "ROCKETMQ request, ROCKETMQ answer");
        let mut hdr = &resp[4..];
        assert_eq!(hdr.get_i16(), 0, "SUCCESS");
        hdr.advance(3);
        assert_eq!(hdr.get_i32(), 8, "opaque echoed");
        assert_eq!(hdr.get_i32() & 1, 1, "response flag");
        Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test]
async fn malformed_frame_closes_only_that_connection() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let c = client();
    let addr = ns.process.addr;
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut bad = std::net::TcpStream::connect(addr)?;
        bad.set_read_timeout(Some(T))?;
        bad.write_all(&raw_frame(0, b"{this is not json"))?;
        let mut buf = [0u8; 16];
        let n = bad.read(&mut buf)?;
        assert_eq!(n, 0, "connection closed without an answer");
        let mut bad2 = std::net::TcpStream::connect(addr)?;
        bad2.set_read_timeout(Some(T))?;
        bad2.write_all(&(-5i32).to_be_bytes())?;
        assert_eq!(bad2.read(&mut buf)?, 0);
        Ok(())
    })
    .await??;
    let resp = c.invoke(&ns.addr(), RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO), T).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    Ok(())
}

#[tokio::test]
async fn kv_config_round_trip_survives_restart_and_feeds_order_topic_conf() -> Result<()> {
    let ns = Namesrv::start(&[("ORDER_MESSAGE_ENABLE", "true")])?;
    let c = client();
    let put = PutKvConfigRequestHeader {
        namespace: "ORDER_TOPIC_CONFIG".into(),
        key: "Orders".into(),
        value: "broker-a:4".into(),
    };
    let resp = c.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::PUT_KV_CONFIG, &put), T).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    let reg =
        c.invoke(&ns.addr(), register_request("broker-a", "127.0.0.1:10911", &[("Orders", 4)], 1, false), T).await?;
    let table: KvTable = remoting::json::from_slice(&reg.body_bytes())?;
    assert_eq!(table.table["Orders"], "broker-a:4", "register answers with ORDER_TOPIC_CONFIG");
    let r: TopicRouteData = serde_json::from_slice(&route(&c, &ns.addr(), "Orders").await?.body_bytes())?;
    assert_eq!(r.order_topic_conf.as_deref(), Some("broker-a:4"));

    // Restart on the same KV file.
    let Namesrv { process, home } = ns;
    let status = process.terminate(T)?;
    assert!(status.success(), "exit status {status}");
    let ns = Namesrv::start_in(home, &[])?;
    let c = client();
    let get = GetKvConfigRequestHeader { namespace: "ORDER_TOPIC_CONFIG".into(), key: "Orders".into() };
    let resp = c.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::GET_KV_CONFIG, &get), T).await?;
    assert_eq!(resp.decode_header::<GetKvConfigResponseHeader>()?.value.as_deref(), Some("broker-a:4"));
    let del = DeleteKvConfigRequestHeader { namespace: "ORDER_TOPIC_CONFIG".into(), key: "Orders".into() };
    c.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::DELETE_KV_CONFIG, &del), T).await?;
    let resp = c.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::GET_KV_CONFIG, &get), T).await?;
    assert_eq!(resp.response_code(), ResponseCode::QUERY_NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn write_permission_topics_by_cluster_delete_and_data_version() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let c = client();
    c.invoke(&ns.addr(), register_request("broker-a", "127.0.0.1:10911", &[("T1", 4), ("T2", 2)], 5, false), T).await?;

    let wipe = WipeWritePermOfBrokerRequestHeader { broker_name: "broker-a".into() };
    let resp =
        c.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::WIPE_WRITE_PERM_OF_BROKER, &wipe), T).await?;
    assert_eq!(resp.decode_header::<WipeWritePermOfBrokerResponseHeader>()?.wipe_topic_count, 2);
    let r: TopicRouteData = serde_json::from_slice(&route(&c, &ns.addr(), "T1").await?.body_bytes())?;
    assert_eq!(r.queue_datas[0].perm, 4, "read only after wipe");
    let add = AddWritePermOfBrokerRequestHeader { broker_name: "broker-a".into() };
    let resp =
        c.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::ADD_WRITE_PERM_OF_BROKER, &add), T).await?;
    assert_eq!(resp.decode_header::<AddWritePermOfBrokerResponseHeader>()?.add_topic_count, 2);

    let by_cluster = GetTopicsByClusterRequestHeader { cluster: "DefaultCluster".into() };
    let resp =
        c.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::GET_TOPICS_BY_CLUSTER, &by_cluster), T).await?;
    let list: TopicList = remoting::json::from_slice(&resp.body_bytes())?;
    assert_eq!(list.topic_list, ["T1", "T2"]);

    let del = DeleteTopicFromNamesrvRequestHeader { topic: "T2".into(), cluster_name: None };
    c.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::DELETE_TOPIC_IN_NAMESRV, &del), T).await?;
    assert_eq!(route(&c, &ns.addr(), "T2").await?.response_code(), ResponseCode::TOPIC_NOT_EXIST);

    let q = QueryDataVersionRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: "127.0.0.1:10911".into(),
        cluster_name: "DefaultCluster".into(),
        broker_id: 0,
    };
    let same = DataVersion { timestamp: 1_700_000_000_000, counter: 5, state_version: None };
    let req = RemotingCommand::request_with(RequestCode::QUERY_DATA_VERSION, &q).with_body(serde_json::to_vec(&same)?);
    let resp = c.invoke(&ns.addr(), req, T).await?;
    assert!(!resp.decode_header::<QueryDataVersionResponseHeader>()?.changed);
    let newer = DataVersion { counter: 6, ..same };
    let req = RemotingCommand::request_with(RequestCode::QUERY_DATA_VERSION, &q).with_body(serde_json::to_vec(&newer)?);
    let resp = c.invoke(&ns.addr(), req, T).await?;
    assert!(resp.decode_header::<QueryDataVersionResponseHeader>()?.changed);
    Ok(())
}

#[tokio::test]
async fn http_endpoint_serves_the_address_list() -> Result<()> {
    let ns = Namesrv::start(&[("HTTP_LISTEN_PORT", "0")])?;
    let line = ns.process.extra.iter().find(|l| l.starts_with("http address list on ")).cloned();
    let http: std::net::SocketAddr =
        line.expect("http ready line").trim_start_matches("http address list on ").parse()?;
    let expected = ns.addr();
    let body = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut s = std::net::TcpStream::connect(http)?;
        s.set_read_timeout(Some(T))?;
        s.write_all(b"GET /rocketmq/nsaddr HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .await??;
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.ends_with(&format!("\r\n\r\n{expected}")), "{body}");
    Ok(())
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let status = ns.process.terminate(T)?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}
