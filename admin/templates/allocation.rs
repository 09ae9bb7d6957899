//! {name}: a FerroMQ rebalance (allocation) strategy, loaded by consumers. It deals
//! the queues out in turn, like RocketMQ's AllocateMessageQueueAveragelyByCircle.

use sdk_wasm::AllocateContext;

/// The indices (into `ctx.queues()`) of the queues this consumer takes.
#[sdk_wasm::allocate(name = "{name}")]
fn deal(ctx: &AllocateContext<'_>) -> Vec<usize> {
    let Some(me) = ctx.current_index else { return Vec::new() };
    let n = ctx.clients().len().max(1);
    (0..ctx.queues().len()).filter(|q| q % n == me).collect()
}

#[cfg(test)]
mod tests {
    use sdk_wasm::plugin_api::{ClientView, QueueView, PERM_READ, PERM_WRITE};
    use sdk_wasm::testing::Harness;

    use super::FERROMQ_PLUGIN;

    #[test]
    fn every_queue_has_exactly_one_consumer() {
        let mut h = Harness::new(&FERROMQ_PLUGIN).unwrap();
        let queues: Vec<QueueView> = (0..8)
            .map(|q| QueueView { broker_name: "broker-a", queue_id: q, perm: PERM_READ | PERM_WRITE, zone: "" })
            .collect();
        let clients: Vec<ClientView> = ["c1", "c2", "c3"].iter().map(|id| ClientView { client_id: id, zone: "" }).collect();
        h.allocate_all("Group", &queues, &clients).unwrap();
    }
}
