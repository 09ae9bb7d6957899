//! The broker's side of the gRPC endpoint RocketMQ 5 clients connect to (the `grpc`
//! crate serves `apache.rocketmq.v2.MessagingService`; this is what it asks of the
//! broker). Each gRPC client gets an in-process remoting connection, so its requests
//! go through the same processors, ACL guard and observers as a remoting client's.

use std::net::SocketAddr;
use std::sync::Arc;

use remoting::{LocalConnection, LocalConnector, RemotingClient, RequestHandler};

use crate::context::BrokerContext;

pub(crate) struct GrpcBackend {
    pub ctx: Arc<BrokerContext>,
    pub local: LocalConnector,
}

impl grpc::Backend for GrpcBackend {
    fn connect(&self, peer: SocketAddr, inbound: Arc<dyn RequestHandler>) -> LocalConnection {
        self.local.connect(peer, inbound)
    }

    fn name_servers(&self) -> Vec<String> {
        self.ctx.config.namesrv_addr.clone()
    }

    fn name_server_client(&self) -> RemotingClient {
        crate::outgoing_client(&self.ctx.config)
    }

    fn broker_addr(&self) -> String {
        self.ctx.broker_addr.to_string()
    }

    fn topic(&self, topic: &str) -> Option<grpc::TopicInfo> {
        self.ctx.topics.get(topic).map(|tc| grpc::TopicInfo {
            write_queue_nums: tc.write_queue_nums,
            message_type: tc.attributes.get(common::topic::MESSAGE_TYPE_ATTRIBUTE).cloned(),
        })
    }

    fn max_message_size(&self) -> usize {
        usize::try_from(self.ctx.config.store.max_message_size.as_u64()).unwrap_or(usize::MAX)
    }

    fn broker_name(&self) -> String {
        self.ctx.config.broker_name.clone()
    }

    fn authenticate(
        &self,
        peer: std::net::IpAddr,
        authorization: Option<&str>,
        date_time: Option<&str>,
    ) -> Result<Option<grpc::Signer>, String> {
        let Some(acl) = &self.ctx.acl else { return Ok(None) };
        let auth = match authorization {
            Some(a) => Some(
                remoting::acl::GrpcAuthorization::parse(a)
                    .ok_or_else(|| format!("authorization {a:?} is not MQv2-HMAC-SHA1 Credential=.., Signature=.."))?,
            ),
            None => None,
        };
        Ok(acl.authenticate_grpc(peer, auth.as_ref(), date_time)?.map(|(access_key, key)| grpc::Signer {
            credentials: remoting::acl::Credentials::new(access_key, String::new()),
            key,
        }))
    }

    fn consumer_group(&self, group: &str) -> Option<grpc::GroupInfo> {
        self.ctx.groups.find_or_create(group).map(|g| grpc::GroupInfo {
            fifo: g.consume_message_orderly,
            max_attempts: g.retry_max_times.saturating_add(1),
        })
    }
}

/// Starts the gRPC endpoint on `grpc_server_port` (`None` when it is `-1`).
pub(crate) async fn start(ctx: &Arc<BrokerContext>, local: LocalConnector) -> crate::Result<Option<grpc::GrpcServer>> {
    let Ok(port) = u16::try_from(ctx.config.grpc_server_port) else { return Ok(None) };
    let bind = SocketAddr::new(ctx.config.bind_address, port);
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        crate::Error::Config(format!("grpc_server_port: cannot listen on {bind}: {e} (-1 turns the gRPC endpoint off)"))
    })?;
    let backend = Arc::new(GrpcBackend { ctx: ctx.clone(), local });
    let server = grpc::serve(listener, backend, ctx.broker_addr.ip().to_string())?;
    Ok(Some(server))
}
