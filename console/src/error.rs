//! The console's one error type, and how each error becomes an HTTP answer.
//!
//! Every failure reaches the browser (or a script) as `{"error": "..."}` with a
//! non-2xx status. The text names what was asked and what failed: for a refusal,
//! the address that answered, RocketMQ's response code and its remark; the answer
//! also carries that `code` and `addr` as fields, so scripts need not parse text.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::ResponseCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the name servers or a broker failed; `action` says which.
    #[error("{action}")]
    Cluster {
        action: String,
        #[source]
        source: client::Error,
    },
    /// Every broker asked failed; each of `errors` explains one.
    #[error("{action}: no broker answered: {}", errors.join("; "))]
    NoBrokerAnswered { action: String, errors: Vec<String> },
    /// A topic name RocketMQ would refuse.
    #[error("invalid topic name `{topic}`")]
    InvalidTopic {
        topic: String,
        #[source]
        source: common::topic::TopicNameError,
    },
    /// A queue count outside what a broker accepts.
    #[error("queue count {queues} is outside 1..={max}")]
    QueueCount { queues: i32, max: i32 },
    /// A reset time that is neither ms since the epoch nor `now`.
    #[error("`{value}` is not a timestamp in ms since the epoch (or `now`)")]
    Timestamp { value: String },
    /// A request body or query string that does not read as the route expects.
    #[error("bad request: {reason}")]
    BadRequest { reason: String },
    /// No route of the API has this path (or this method).
    #[error("no API route {method} {path}")]
    NoApiRoute { method: String, path: String },
    /// The path is an API route, but not for this method.
    #[error("{path} does not answer {method}")]
    MethodNotAllowed { method: String, path: String },
    /// No broker of the cluster lists this plugin (`unasked`: why some brokers could
    /// not be asked).
    #[error("no broker of the cluster lists plugin `{name}`{}", if unasked.is_empty() { String::new() } else { format!(" (some brokers could not be asked: {})", unasked.join("; ")) })]
    PluginNotFound { name: String, unasked: Vec<String> },
    /// A message looked up by key or id is not there.
    #[error("message {msg_id} not found{}", topic.as_deref().map(|t| format!(" in topic {t}")).unwrap_or_default())]
    MessageNotFound { msg_id: String, topic: Option<String> },
    /// A message id that is not a broker offset id, asked for without a topic.
    #[error("message id {msg_id} is not a broker offset id: give its topic (`?topic=`) to find it by its UNIQ_KEY")]
    NeedTopic { msg_id: String },
    /// An offset id whose store host is no broker of the cluster, asked for without a
    /// topic (it may be a producer's id, which only a topic search finds).
    #[error(
        "message id {msg_id} names store host {host}, which is no broker of the cluster: \
         if it is a producer's id, give its topic (`?topic=`)"
    )]
    UnknownStoreHost { msg_id: String, host: String },
    /// A consumer client that no broker of the cluster has among the group's
    /// connections.
    #[error("client {client_id} of consumer group {group} is not online")]
    ClientNotOnline { group: String, client_id: String },
    /// No broker of the topic has a producer of the group connected.
    #[error("no producer of group {group} is connected to the brokers of topic {topic}")]
    NoProducer { group: String, topic: String },
    /// A message asked to be re-sent that is not in a dead-letter topic.
    #[error("message {msg_id} is in topic {topic}, not a dead-letter topic")]
    NotDeadLetter { msg_id: String, topic: String },
    /// A dead-letter message that does not name the topic it came from.
    #[error("message {msg_id} does not say which topic it came from (no RETRY_TOPIC property)")]
    NoOriginTopic { msg_id: String },
    /// An address that is no broker registered with the name servers.
    #[error("no broker at {addr} is registered with the name servers")]
    UnknownBroker { addr: String },
    /// The console cannot serve on its address.
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Serving stopped on an I/O error.
    #[error("serving the console failed")]
    Serve(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failed cluster request; `action` names what was asked ("route of topic T").
    pub fn cluster(action: impl Into<String>, source: client::Error) -> Self {
        Error::Cluster { action: action.into(), source }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Cluster { source, .. } => cluster_status(source),
            Error::InvalidTopic { .. }
            | Error::QueueCount { .. }
            | Error::Timestamp { .. }
            | Error::BadRequest { .. }
            | Error::NeedTopic { .. }
            | Error::NotDeadLetter { .. }
            | Error::NoOriginTopic { .. } => StatusCode::BAD_REQUEST,
            Error::NoApiRoute { .. }
            | Error::MessageNotFound { .. }
            | Error::PluginNotFound { .. }
            | Error::UnknownStoreHost { .. }
            | Error::UnknownBroker { .. }
            | Error::ClientNotOnline { .. }
            | Error::NoProducer { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::NoBrokerAnswered { .. } => StatusCode::BAD_GATEWAY,
            Error::Listen { .. } | Error::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The whole explanation: this error, then each cause, joined with `: `. A
    /// broker's refusal reads `ADDR: CODE(n): remark`.
    pub fn explain(&self) -> String {
        let mut out = self.to_string();
        match self {
            Error::Cluster { source, .. } => {
                out.push_str(": ");
                out.push_str(&describe(source));
            }
            _ => out = with_causes(out, std::error::Error::source(self)),
        }
        out
    }

    /// RocketMQ's response code and the answering address, for a refusal.
    fn refusal(&self) -> Option<(ResponseCode, &str)> {
        match self {
            Error::Cluster { source: client::Error::Broker { code, addr, .. }, .. } => Some((*code, addr.as_str())),
            Error::Cluster { source: client::Error::SendFailed { last, .. }, .. } => match last.as_ref() {
                client::Error::Broker { code, addr, .. } => Some((*code, addr.as_str())),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A client error with the address of a refusal in front (the client's own text
/// leaves it out).
fn describe(e: &client::Error) -> String {
    match e {
        client::Error::Broker { code, remark, addr } => format!("{addr}: {code}: {remark}"),
        client::Error::SendFailed { topic, attempts, last } => {
            format!("send to {topic} failed after {attempts} attempts: {}", describe(last))
        }
        other => with_causes(other.to_string(), std::error::Error::source(other)),
    }
}

/// `text`, then each cause that does not already show in it (some errors, such as
/// `std::io::Error`, print their source themselves).
fn with_causes(mut text: String, mut cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn cluster_status(e: &client::Error) -> StatusCode {
    match e {
        client::Error::NoRoute(_) | client::Error::NoBrokerAddr(_) => StatusCode::NOT_FOUND,
        client::Error::Broker { code, .. } => match *code {
            ResponseCode::TOPIC_NOT_EXIST
            | ResponseCode::QUERY_NOT_FOUND
            | ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST
            | ResponseCode::CONSUMER_NOT_ONLINE => StatusCode::NOT_FOUND,
            ResponseCode::NO_PERMISSION => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_GATEWAY,
        },
        client::Error::SendFailed { last, .. } => cluster_status(last),
        client::Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        client::Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        client::Error::NoNameServer => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = serde_json::json!({ "error": self.explain() });
        if let Some((code, addr)) = self.refusal() {
            body["code"] = i32::from(code).into();
            body["addr"] = addr.into();
        }
        if status.is_server_error() {
            tracing::warn!(error = %self.explain(), "console request failed");
        } else {
            tracing::debug!(error = %self.explain(), "console request refused");
        }
        (status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: Error, status: StatusCode, text: &str) {
        assert_eq!(e.status(), status, "{e:?}");
        assert_eq!(e.explain(), text);
    }

    #[test]
    fn answers_name_what_failed() {
        check(
            Error::cluster(
                "status of topic T",
                client::Error::Broker {
                    code: ResponseCode::TOPIC_NOT_EXIST,
                    remark: "topic[T] not exist".into(),
                    addr: "10.0.0.1:10911".into(),
                },
            ),
            StatusCode::NOT_FOUND,
            "status of topic T: 10.0.0.1:10911: TOPIC_NOT_EXIST(17): topic[T] not exist",
        );
        check(
            Error::cluster("route of topic Missing", client::Error::NoRoute("Missing".into())),
            StatusCode::NOT_FOUND,
            "route of topic Missing: no route info of topic Missing: create it, or enable autoCreateTopicEnable on a broker",
        );
        check(
            Error::cluster("cluster info", client::Error::Timeout(std::time::Duration::from_secs(3))),
            StatusCode::GATEWAY_TIMEOUT,
            "cluster info: timed out after 3s",
        );
        check(
            Error::InvalidTopic { topic: "a b".into(), source: common::topic::TopicNameError::IllegalChar(' ') },
            StatusCode::BAD_REQUEST,
            &format!("invalid topic name `a b`: {}", common::topic::TopicNameError::IllegalChar(' ')),
        );
        check(
            Error::MessageNotFound { msg_id: "X".into(), topic: Some("T".into()) },
            StatusCode::NOT_FOUND,
            "message X not found in topic T",
        );
    }

    #[test]
    fn refusals_carry_code_and_address() {
        let e = Error::cluster(
            "send to T",
            client::Error::SendFailed {
                topic: "T".into(),
                attempts: 3,
                last: Box::new(client::Error::Broker {
                    code: ResponseCode::NO_PERMISSION,
                    remark: "no PUB".into(),
                    addr: "b:1".into(),
                }),
            },
        );
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(e.refusal(), Some((ResponseCode::NO_PERMISSION, "b:1")));
        assert_eq!(e.explain(), "send to T: send to T failed after 3 attempts: b:1: NO_PERMISSION(16): no PUB");
    }
}
