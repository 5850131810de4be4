//! `hermes kafka init` (the topic, as configured) and the readiness probe.

use super::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use std::sync::Arc;
use std::time::Duration;

/// What `init` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Init {
    Created,
    /// The topic was there already (with whatever settings it has: init changes nothing).
    Existed,
}

/// Creates the topic with the configured partitions, replication and retention.
pub async fn init(config: &KafkaConfig) -> anyhow::Result<Init> {
    let admin: AdminClient<DefaultClientContext> = config.producer().create()?;
    let retention = config.retention_ms.to_string();
    let topic = NewTopic::new(
        &config.topic,
        config.partitions,
        TopicReplication::Fixed(config.replication),
    )
    .set("retention.ms", &retention);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics([&topic], &options).await?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(Init::Created),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(Init::Existed),
        Some(Err((name, code))) => anyhow::bail!("cannot create topic {name}: {code}"),
        None => anyhow::bail!("the broker answered nothing about topic {}", config.topic),
    }
}

/// Asks the brokers for the topic's metadata: for `/readyz`.
#[derive(Clone)]
pub struct BrokerProbe {
    client: Arc<BaseConsumer>,
    topic: String,
}

impl BrokerProbe {
    pub fn new(config: &KafkaConfig) -> anyhow::Result<Self> {
        Ok(Self {
            client: Arc::new(config.metadata_client().create()?),
            topic: config.topic.clone(),
        })
    }

    /// Whether a broker answers within `timeout` and knows the topic.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let probe = self.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = probe
                .client
                .fetch_metadata(Some(&probe.topic), timeout)
                .map_err(|e| format!("the Kafka brokers do not answer: {e}"))?;
            match metadata.topics().first() {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                _ => Err(format!(
                    "the Kafka topic {} does not exist (create it with `hermes kafka init`)",
                    probe.topic
                )),
            }
        })
        .await
        .map_err(|e| format!("the broker probe failed: {e}"))?
    }
}
