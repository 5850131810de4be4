//! Kafka settings: where the brokers are, the topic the log is streamed to, and the client
//! settings every Hermes producer and consumer shares.

use rdkafka::ClientConfig;

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port,host:port`.
    pub brokers: String,
    /// The topic every event of the log goes to, keyed by stream id.
    pub topic: String,
    /// Partitions and replication factor `hermes kafka init` creates the topic with. Partitions
    /// bound how many workers share the work.
    pub partitions: i32,
    pub replication: i32,
    /// How long the broker keeps records (`retention.ms`); the event store keeps everything.
    pub retention_ms: i64,
    /// Consumer groups are named `<prefix>.<subscriber>` (`hermes.cascade-saga`).
    pub group_prefix: String,
    /// How long a worker may go silent before its partitions move to another
    /// (`session.timeout.ms`): the time a killed worker's messages wait.
    pub session_timeout_ms: u32,
}

impl KafkaConfig {
    pub const DEFAULT_TOPIC: &str = "hermes.events";

    /// The consumer group of a subscriber.
    pub fn group(&self, subscriber: &str) -> String {
        format!("{}.{subscriber}", self.group_prefix)
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            // After an outage, reconnect within a second rather than librdkafka's 10 s.
            .set("reconnect.backoff.max.ms", "1000")
            .set("client.id", "hermes");
        c
    }

    /// The relay's producer: idempotent (a retry after a lost ack is not a second record, and
    /// order per partition holds), every in-sync replica acknowledging.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.client();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            // Undelivered within this, a record fails; the relay then sends its batch again.
            .set("message.timeout.ms", "30000");
        c
    }

    /// A client that only asks for metadata (`/readyz`): a consumer's, which never has the broker
    /// create a missing topic (a producer's request may, with the broker's default partitions, and
    /// `hermes kafka init` would then leave that topic as it is).
    pub fn metadata_client(&self) -> ClientConfig {
        let mut c = self.client();
        c.set("allow.auto.create.topics", "false");
        c
    }

    /// A consumer of `group`: offsets are committed by Hermes (only past finished records),
    /// never automatically; a new group starts at the beginning of the topic.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 3).max(100).to_string(),
            )
            // A fetch waits at most this for data: it is the latency a record adds.
            .set("fetch.wait.max.ms", "10")
            .set("enable.partition.eof", "false");
        c
    }
}
