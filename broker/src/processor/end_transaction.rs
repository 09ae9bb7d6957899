//! END_TRANSACTION (37): a producer's commit or rollback of a half message
//! (`remoting-protocol.md` §12.10), checked against the half message it names and
//! applied once by [`crate::transaction::resolve`].

use std::sync::Arc;

use tracing::{debug, warn, Span};

use common::sysflag::message as sysflag;
use common::topic::TRANS_HALF_TOPIC;
use common::{MessageExt, ResponseCode};
use remoting::header::broker::EndTransactionRequestHeader;
use remoting::{Channel, RemotingCommand};

use opentelemetry::trace::{Span as _, SpanKind, Status};
use opentelemetry::KeyValue;

use crate::context::BrokerContext;
use crate::processor::try_header;
use crate::transaction::state::Decision;
use crate::transaction::{self, Refused};

/// END_TRANSACTION (37).
pub async fn end_transaction(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: EndTransactionRequestHeader = try_header!(&req);
    Span::current().record("group", h.producer_group.as_str());
    if let Some(refused) = ctx.role.refuse_end_transaction() {
        return Some(refused);
    }
    let decision = match h.commit_or_rollback {
        sysflag::TRANSACTION_COMMIT_TYPE => Decision::Commit,
        sysflag::TRANSACTION_ROLLBACK_TYPE => Decision::Rollback,
        _ => {
            debug!(msg_id = %h.msg_id, from_check = h.from_transaction_check.unwrap_or(false), "transaction state unknown; wait for the check");
            return None;
        }
    };
    let result = end(ctx, &h, decision).await;
    if let Err(resp) = &result {
        warn!(peer = %ch.peer_addr(), msg_id = %h.msg_id, remark = resp.remark_str(), "END_TRANSACTION refused");
    }
    Some(match result {
        Ok(r) | Err(r) => r,
    })
}

async fn end(
    ctx: &BrokerContext,
    h: &EndTransactionRequestHeader,
    decision: Decision,
) -> Result<RemotingCommand, RemotingCommand> {
    let err = |remark: String| RemotingCommand::error(ResponseCode::SYSTEM_ERROR, remark);
    let raw = ctx
        .store
        .look_message_by_offset(h.commit_log_offset)
        .ok_or_else(|| err(format!("Find prepared transaction message failed at offset {}", h.commit_log_offset)))?;
    let half = MessageExt::decode(&raw, false).map_err(|e| err(format!("unreadable half message: {e}")))?;
    if half.topic != TRANS_HALF_TOPIC {
        return Err(err(format!("the message at {} is not a half message", h.commit_log_offset)));
    }
    if half.properties.get(common::properties::keys::PRODUCER_GROUP) != Some(h.producer_group.as_str()) {
        return Err(err("The producer group wrong".into()));
    }
    if half.queue_offset != h.tran_state_table_offset {
        return Err(err("The transaction state table offset wrong".into()));
    }
    if half.commit_log_offset != h.commit_log_offset {
        return Err(err("The commit log offset wrong".into()));
    }
    let uniq = half.properties.uniq_key().unwrap_or(&h.msg_id).to_owned();
    let span = ctx.tracer.as_ref().and_then(|t| {
        crate::spans::start_transaction(t, "end_transaction", SpanKind::Server, &half, &h.producer_group)
    });
    let resolved = transaction::resolve(ctx, &half, &uniq, decision).await;
    if let Some(mut span) = span {
        let resolution = match decision {
            Decision::Commit => "commit",
            Decision::Rollback => "rollback",
            Decision::Discard => "discard",
        };
        span.set_attribute(KeyValue::new("messaging.rocketmq.transaction.resolution", resolution));
        span.set_attribute(KeyValue::new(
            "messaging.rocketmq.transaction.from_check",
            h.from_transaction_check.unwrap_or(false),
        ));
        if resolved.is_err() {
            span.set_status(Status::error("refused"));
        }
        span.end();
    }
    match resolved {
        Ok(()) => Ok(RemotingCommand::success()),
        Err(Refused::Contrary { uniq, made }) => Err(RemotingCommand::error(
            ResponseCode::TRANSACTION_FAILED,
            format!("transaction {uniq} was already resolved as {}", made.as_str()),
        )),
        Err(e @ Refused::NoRealTopic) => Err(err(e.to_string())),
        Err(Refused::Store(outcome)) => Err(outcome.into_error()),
    }
}
