//! Connected producers and consumers (RocketMQ's `ProducerManager`,
//! `ConsumerManager` and `ClientHousekeepingService`).
//!
//! Clients announce themselves with HEART_BEAT every 30 s; a channel silent for
//! `client_channel_max_idle_time` is dropped, as is one whose connection closes.
//! Whenever a consumer group's membership or subscriptions change, every member is
//! sent NOTIFY_CONSUMER_IDS_CHANGED so it rebalances at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tracing::{debug, info};

use common::subscription::{ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, SubscriptionData};
use remoting::command::LanguageCode;
use remoting::header::broker::ConsumerGroupRequestHeader;
use remoting::{Channel, RemotingCommand, RequestCode};

/// One connection of a client.
#[derive(Debug, Clone)]
pub struct ClientChannelInfo {
    pub channel: Channel,
    pub client_id: String,
    pub language: LanguageCode,
    pub version: i32,
    pub last_update: Instant,
}

/// Everything known about one consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerGroupInfo {
    pub group: String,
    pub channels: HashMap<u64, ClientChannelInfo>,
    pub subscriptions: HashMap<String, SubscriptionData>,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
}

impl ConsumerGroupInfo {
    /// Client ids, sorted (rebalance sorts them anyway; stable output helps tools).
    pub fn client_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.channels.values().map(|c| c.client_id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

#[derive(Default)]
pub struct ClientManager {
    consumers: RwLock<HashMap<String, ConsumerGroupInfo>>,
    /// producer group → channel id → info
    producers: RwLock<HashMap<String, HashMap<u64, ClientChannelInfo>>>,
}

impl ClientManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers one consumer group of a heartbeat. Returns whether membership or
    /// subscriptions changed (the caller then notifies the group).
    pub fn register_consumer(&self, data: &ConsumerData, info: ClientChannelInfo) -> bool {
        let mut groups = self.consumers.write();
        let g = groups.entry(data.group_name.clone()).or_insert_with(|| ConsumerGroupInfo {
            group: data.group_name.clone(),
            channels: HashMap::new(),
            subscriptions: HashMap::new(),
            consume_type: data.consume_type,
            message_model: data.message_model,
            consume_from_where: data.consume_from_where,
        });
        g.consume_type = data.consume_type;
        g.message_model = data.message_model;
        g.consume_from_where = data.consume_from_where;
        let channel_id = info.channel.id();
        let new_channel = match g.channels.get_mut(&channel_id) {
            Some(existing) => {
                existing.last_update = info.last_update;
                existing.client_id = info.client_id;
                false
            }
            None => {
                info!(group = %data.group_name, client_id = %info.client_id, peer = %info.channel.peer_addr(), "consumer joined");
                g.channels.insert(channel_id, info);
                true
            }
        };
        // Merge subscriptions: add new topics, replace only with a newer subVersion,
        // drop topics this heartbeat no longer lists.
        let mut changed = false;
        for sub in &data.subscription_data_set {
            match g.subscriptions.get(&sub.topic) {
                None => {
                    g.subscriptions.insert(sub.topic.clone(), sub.clone());
                    changed = true;
                }
                Some(old) if sub.sub_version > old.sub_version => {
                    g.subscriptions.insert(sub.topic.clone(), sub.clone());
                    changed = true;
                }
                Some(_) => {}
            }
        }
        let before = g.subscriptions.len();
        g.subscriptions.retain(|topic, _| data.subscription_data_set.iter().any(|s| &s.topic == topic));
        changed |= g.subscriptions.len() != before;
        new_channel || changed
    }

    pub fn register_producer(&self, group: &str, info: ClientChannelInfo) {
        let mut p = self.producers.write();
        let members = p.entry(group.to_owned()).or_default();
        match members.get_mut(&info.channel.id()) {
            Some(existing) => existing.last_update = info.last_update,
            None => {
                debug!(group, client_id = %info.client_id, "producer registered");
                members.insert(info.channel.id(), info);
            }
        }
    }

    /// Removes `channel` from a consumer group; returns whether it was a member.
    pub fn unregister_consumer(&self, group: &str, channel: &Channel) -> bool {
        let mut groups = self.consumers.write();
        let Some(g) = groups.get_mut(group) else { return false };
        let removed = g.channels.remove(&channel.id()).is_some();
        if g.channels.is_empty() {
            groups.remove(group);
        }
        if removed {
            info!(group, peer = %channel.peer_addr(), "consumer left");
        }
        removed
    }

    pub fn unregister_producer(&self, group: &str, channel: &Channel) {
        let mut p = self.producers.write();
        if let Some(members) = p.get_mut(group) {
            members.remove(&channel.id());
            if members.is_empty() {
                p.remove(group);
            }
        }
    }

    /// Forgets a closed channel everywhere; returns the consumer groups it left.
    pub fn channel_closed(&self, channel: &Channel) -> Vec<String> {
        let mut left = Vec::new();
        {
            let mut groups = self.consumers.write();
            for (name, g) in groups.iter_mut() {
                if g.channels.remove(&channel.id()).is_some() {
                    left.push(name.clone());
                }
            }
            groups.retain(|_, g| !g.channels.is_empty());
        }
        let mut p = self.producers.write();
        for members in p.values_mut() {
            members.remove(&channel.id());
        }
        p.retain(|_, m| !m.is_empty());
        left
    }

    /// Drops channels silent for longer than `max_idle`; returns (group, channel)
    /// pairs removed from consumer groups (producers are dropped silently).
    pub fn scan_expired(&self, max_idle: Duration) -> Vec<(String, Channel)> {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut groups = self.consumers.write();
            for (name, g) in groups.iter_mut() {
                g.channels.retain(|_, c| {
                    let keep = now.duration_since(c.last_update) <= max_idle;
                    if !keep {
                        info!(group = %name, client_id = %c.client_id, "consumer channel expired");
                        expired.push((name.clone(), c.channel.clone()));
                    }
                    keep
                });
            }
            groups.retain(|_, g| !g.channels.is_empty());
        }
        let mut p = self.producers.write();
        for members in p.values_mut() {
            members.retain(|_, c| {
                let keep = now.duration_since(c.last_update) <= max_idle;
                if !keep {
                    c.channel.close();
                }
                keep
            });
        }
        p.retain(|_, m| !m.is_empty());
        expired
    }

    pub fn consumer_group(&self, group: &str) -> Option<ConsumerGroupInfo> {
        self.consumers.read().get(group).cloned()
    }

    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.consumers.read().get(group)?.subscriptions.get(topic).cloned()
    }

    pub fn consumer_groups(&self) -> Vec<String> {
        self.consumers.read().keys().cloned().collect()
    }

    /// Groups subscribed to `topic`.
    pub fn groups_subscribing(&self, topic: &str) -> Vec<String> {
        self.consumers
            .read()
            .values()
            .filter(|g| g.subscriptions.contains_key(topic))
            .map(|g| g.group.clone())
            .collect()
    }

    /// A live channel of a producer group (for transaction check-back), newest first.
    pub fn producer_channel(&self, group: &str) -> Option<Channel> {
        let p = self.producers.read();
        p.get(group)?
            .values()
            .filter(|c| !c.channel.is_closed())
            .max_by_key(|c| c.last_update)
            .map(|c| c.channel.clone())
    }

    /// The connection of the client with id `client_id` (a requester waiting for a
    /// reply), among producer and consumer connections.
    pub fn channel_of_client(&self, client_id: &str) -> Option<Channel> {
        let p = self.producers.read();
        if let Some(c) =
            p.values().flat_map(|m| m.values()).find(|c| c.client_id == client_id && !c.channel.is_closed())
        {
            return Some(c.channel.clone());
        }
        drop(p);
        let g = self.consumers.read();
        g.values()
            .flat_map(|g| g.channels.values())
            .find(|c| c.client_id == client_id && !c.channel.is_closed())
            .map(|c| c.channel.clone())
    }

    pub fn producer_groups(&self) -> HashMap<String, Vec<ClientChannelInfo>> {
        self.producers.read().iter().map(|(g, m)| (g.clone(), m.values().cloned().collect())).collect()
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every member of `group`.
    pub fn notify_ids_changed(&self, group: &str) {
        let Some(g) = self.consumer_group(group) else { return };
        for c in g.channels.into_values() {
            let cmd = RemotingCommand::request_with(
                RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
                &ConsumerGroupRequestHeader { consumer_group: group.to_owned() },
            );
            let group = group.to_owned();
            tokio::spawn(async move {
                if let Err(e) = c.channel.oneway(cmd).await {
                    debug!(group = %group, error = %e, "could not notify consumer");
                }
            });
        }
    }
}
