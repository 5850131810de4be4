//! What the relay produces for each event: key, value and headers.
//!
//! - key: the stream id as text, so a message's events go to one partition, in log order;
//! - value: the stored event as JSON (schema below), the same event a Postgres subscriber reads;
//! - headers: `event_type`, `stream_type`, `tenant_id`, `schema_version`, `event_id` and, when the
//!   event has one, `traceparent`: routing and tracing without decoding the value.
//!
//! Decoding tolerates fields it does not know, so a newer relay can add some while older
//! consumers run.

use crate::event_store::{EventMetadata, StoredEvent};
use chrono::{DateTime, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The value's layout. Borrowed on the way out, so encoding copies nothing but bytes.
#[derive(Serialize)]
struct ValueOut<'a> {
    position: i64,
    tx_id: i64,
    tenant_id: Uuid,
    stream_type: &'a str,
    stream_id: Uuid,
    stream_version: i64,
    event_id: Uuid,
    event_type: &'a str,
    schema_version: i32,
    payload: &'a serde_json::Value,
    metadata: &'a EventMetadata,
    recorded_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct ValueIn {
    position: i64,
    tx_id: i64,
    tenant_id: Uuid,
    stream_type: String,
    stream_id: Uuid,
    stream_version: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    payload: serde_json::Value,
    #[serde(default)]
    metadata: EventMetadata,
    recorded_at: DateTime<Utc>,
}

pub fn key(event: &StoredEvent) -> String {
    event.stream_id.to_string()
}

pub fn value(event: &StoredEvent) -> Vec<u8> {
    serde_json::to_vec(&ValueOut {
        position: event.position,
        tx_id: event.tx_id,
        tenant_id: event.tenant_id,
        stream_type: &event.stream_type,
        stream_id: event.stream_id,
        stream_version: event.stream_version,
        event_id: event.event_id,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        payload: &event.payload,
        metadata: &event.metadata.0,
        recorded_at: event.recorded_at,
    })
    .expect("an event serializes")
}

pub fn headers(event: &StoredEvent) -> OwnedHeaders {
    let text = |key, value: &str| -> (&'static str, String) { (key, value.to_owned()) };
    let mut pairs = vec![
        text("event_type", &event.event_type),
        text("stream_type", &event.stream_type),
        ("tenant_id", event.tenant_id.to_string()),
        ("schema_version", event.schema_version.to_string()),
        ("event_id", event.event_id.to_string()),
    ];
    if let Some(traceparent) = &event.metadata.traceparent {
        pairs.push(text("traceparent", traceparent));
    }
    pairs.iter().fold(
        OwnedHeaders::new_with_capacity(pairs.len()),
        |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        },
    )
}

pub fn decode(value: &[u8]) -> Result<StoredEvent, serde_json::Error> {
    let v: ValueIn = serde_json::from_slice(value)?;
    Ok(StoredEvent {
        position: v.position,
        tx_id: v.tx_id,
        tenant_id: v.tenant_id,
        stream_type: v.stream_type,
        stream_id: v.stream_id,
        stream_version: v.stream_version,
        event_id: v.event_id,
        event_type: v.event_type,
        schema_version: v.schema_version,
        payload: v.payload,
        metadata: sqlx::types::Json(v.metadata),
        recorded_at: v.recorded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    fn event() -> StoredEvent {
        StoredEvent {
            position: 42,
            tx_id: 7,
            tenant_id: Uuid::now_v7(),
            stream_type: "message".into(),
            stream_id: Uuid::now_v7(),
            stream_version: 3,
            event_id: Uuid::now_v7(),
            event_type: "StepStarted".into(),
            schema_version: 1,
            payload: serde_json::json!({"step_index": 0, "nested": {"a": [1, 2.5, null]}}),
            metadata: sqlx::types::Json(EventMetadata {
                correlation_id: Some(Uuid::now_v7()),
                causation_id: None,
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                actor: Some("saga".into()),
                cause: Some(crate::event_store::Cause::Timer {
                    timer: serde_json::json!({"kind": "step_timeout", "step_index": 0}),
                    timer_id: 7,
                }),
            }),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn a_record_decodes_to_the_event_it_was_made_from() {
        let e = event();
        let back = decode(&value(&e)).unwrap();
        assert_eq!(back.position, e.position);
        assert_eq!(back.tx_id, e.tx_id);
        assert_eq!(back.tenant_id, e.tenant_id);
        assert_eq!(back.stream_type, e.stream_type);
        assert_eq!(back.stream_id, e.stream_id);
        assert_eq!(back.stream_version, e.stream_version);
        assert_eq!(back.event_id, e.event_id);
        assert_eq!(back.event_type, e.event_type);
        assert_eq!(back.schema_version, e.schema_version);
        assert_eq!(back.payload, e.payload);
        assert_eq!(back.metadata.0, e.metadata.0);
        assert_eq!(back.recorded_at, e.recorded_at);
        assert_eq!(key(&e), e.stream_id.to_string());
    }

    #[test]
    fn headers_carry_what_routing_and_tracing_need() {
        let e = event();
        let h = headers(&e);
        let got: Vec<(String, String)> = h
            .iter()
            .map(|h| {
                let value = String::from_utf8(h.value.unwrap().to_vec()).unwrap();
                (h.key.to_owned(), value)
            })
            .collect();
        let want = [
            ("event_type", e.event_type.clone()),
            ("stream_type", "message".to_owned()),
            ("tenant_id", e.tenant_id.to_string()),
            ("schema_version", "1".to_owned()),
            ("event_id", e.event_id.to_string()),
            ("traceparent", e.metadata.traceparent.clone().unwrap()),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_newer_field_is_tolerated_and_a_broken_value_is_an_error() {
        let e = event();
        let mut v: serde_json::Value = serde_json::from_slice(&value(&e)).unwrap();
        v["added_later"] = serde_json::json!(true);
        assert_eq!(
            decode(&serde_json::to_vec(&v).unwrap()).unwrap().event_id,
            e.event_id
        );
        assert!(decode(b"{\"position\": 1}").is_err());
        assert!(decode(b"\x00not json").is_err());
    }
}
