//! `Admin::broker_ha_status` against in-process brokers: one answering
//! GET_BROKER_HA_STATUS as a RocketMQ 5 slave does, one that does not know the
//! request (as a RocketMQ 4 broker).

use std::sync::Arc;

use client::{Admin, Error};
use common::ResponseCode;
use remoting::server::{Dispatcher, RemotingServer, ServerConfig};
use remoting::{Channel, RemotingCommand, RequestCode};

async fn serve(d: Dispatcher) -> RemotingServer {
    RemotingServer::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()), Arc::new(d)).await.unwrap()
}

#[tokio::test]
async fn reads_a_slaves_ha_status_and_reports_a_broker_without_one() {
    const BODY: &str = r#"{"haClientRuntimeInfo":{"lastReadTimestamp":1700000000000,"lastWriteTimestamp":1700000000001,"masterAddr":"10.0.0.1:10912","masterFlushOffset":900,"maxOffset":1000,"transferredByteInSecond":64},"haConnectionInfo":[],"inSyncSlaveNums":0,"master":false,"masterCommitLogMaxOffset":0}"#;
    let mut d = Dispatcher::new();
    d.register(RequestCode::GET_BROKER_HA_STATUS, |_ch: Channel, _req: RemotingCommand| async {
        Some(RemotingCommand::success().with_body(BODY.as_bytes().to_vec()))
    });
    let slave = serve(d).await;
    let old = serve(Dispatcher::new()).await;

    let admin = Admin::new(config::ClientConfig::default(), Some(vec!["127.0.0.1:1".into()]));
    let info = admin.broker_ha_status(&slave.local_addr().to_string()).await.unwrap();
    assert!(!info.master);
    let c = &info.ha_client_runtime_info;
    assert_eq!((c.master_addr.as_str(), c.max_offset, c.master_flush_offset), ("10.0.0.1:10912", 1000, 900));
    assert_eq!((c.last_read_timestamp, c.transferred_byte_in_second, c.is_activated), (1_700_000_000_000, 64, None));

    let err = admin.broker_ha_status(&old.local_addr().to_string()).await.unwrap_err();
    assert!(matches!(err, Error::Broker { code: ResponseCode::REQUEST_CODE_NOT_SUPPORTED, .. }), "{err}");
    admin.shutdown();
}
