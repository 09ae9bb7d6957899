//! `rocketmq_rpc_latency`: the latency of every remoting request, by request and
//! response code, as RocketMQ 5's `RemotingMetricsManager` records it.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::metrics::{BoundHistogram, Histogram, Meter};
use opentelemetry::KeyValue;
use parking_lot::RwLock;

use common::ResponseCode;
use remoting::server::RequestObserver;
use remoting::RequestCode;

/// RocketMQ's bucket bounds for `rocketmq_rpc_latency`, in milliseconds.
const LATENCY_BUCKETS_MS: [f64; 9] = [1.0, 3.0, 5.0, 7.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0];

/// A request code and the response's code (`None`: no response).
type CodePair = (i32, Option<i32>);

/// Records `rocketmq_rpc_latency{protocol_type, request_code, response_code, result}`
/// (milliseconds). Label values are RocketMQ's: the code's constant name in lower
/// case (`send_message_v2`, `success`), or the number for a code without a name.
pub struct RpcMetrics {
    latency: Histogram<u64>,
    /// One bound histogram per (request code, response code) seen: a request looks
    /// its pair up under a read lock and records with one atomic update.
    bound: RwLock<HashMap<CodePair, BoundHistogram<u64>>>,
}

impl RpcMetrics {
    pub fn new(meter: &Meter) -> Self {
        let latency = meter
            .u64_histogram("rocketmq_rpc_latency")
            .with_description("Rpc latency")
            .with_boundaries(LATENCY_BUCKETS_MS.to_vec())
            .build();
        Self { latency, bound: RwLock::new(HashMap::new()) }
    }

    fn attributes(request_code: i32, response_code: Option<i32>) -> Vec<KeyValue> {
        let request =
            RequestCode(request_code).name().map_or_else(|| request_code.to_string(), str::to_ascii_lowercase);
        let mut attributes = vec![KeyValue::new("protocol_type", "remoting"), KeyValue::new("request_code", request)];
        match response_code {
            Some(code) => {
                let response = ResponseCode(code).name().map_or_else(|| code.to_string(), str::to_ascii_lowercase);
                attributes.push(KeyValue::new("response_code", response));
                attributes.push(KeyValue::new("result", "success"));
            }
            None => attributes.push(KeyValue::new("result", "oneway")),
        }
        attributes
    }
}

impl RequestObserver for RpcMetrics {
    fn observe(&self, request_code: i32, response_code: Option<i32>, elapsed: Duration) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let key = (request_code, response_code);
        if let Some(bound) = self.bound.read().get(&key) {
            bound.record(ms);
            return;
        }
        let mut table = self.bound.write();
        let bound =
            table.entry(key).or_insert_with(|| self.latency.bind(&Self::attributes(request_code, response_code)));
        bound.record(ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_rocketmq_code_names_in_lower_case() {
        let attrs = RpcMetrics::attributes(RequestCode::SEND_MESSAGE_V2.0, Some(ResponseCode::SUCCESS.0));
        let get = |k: &str| attrs.iter().find(|kv| kv.key.as_str() == k).map(|kv| kv.value.to_string());
        assert_eq!(get("request_code").as_deref(), Some("send_message_v2"));
        assert_eq!(get("response_code").as_deref(), Some("success"));
        assert_eq!(get("protocol_type").as_deref(), Some("remoting"));
        let unknown = RpcMetrics::attributes(99_999, None);
        assert_eq!(unknown[1].value.to_string(), "99999");
        assert_eq!(unknown.last().map(|kv| kv.value.to_string()).as_deref(), Some("oneway"));
    }
}
