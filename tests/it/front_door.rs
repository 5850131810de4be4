//! A provider that fails on command: a front door that answers 503 while it is down and
//! otherwise passes sends to a real mock provider (which sends receipts signed with [`SECRET`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use hermes_adapters::mock::{self, MockProviderConfig, MockProviderHandle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The secret the mock behind the door signs its receipts with.
pub const SECRET: &str = "front-door-test-secret";

/// The provider's front door: answers 503 while `down`, else passes sends to the mock.
pub struct FrontDoor {
    pub mock: MockProviderHandle,
    http: reqwest::Client,
    /// While set, every send is answered 503.
    pub down: AtomicBool,
    /// Sends answered 503.
    pub refused: AtomicUsize,
    /// When each send passed through to the mock.
    pub passed_at: std::sync::Mutex<Vec<std::time::Instant>>,
}

async fn send(
    State(door): State<Arc<FrontDoor>>,
    body: Bytes,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    Bytes,
) {
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    if door.down.load(Ordering::SeqCst) {
        door.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            Bytes::from_static(b"{}"),
        );
    }
    door.passed_at
        .lock()
        .unwrap()
        .push(std::time::Instant::now());
    let r = door
        .http
        .post(format!("{}/messages", door.mock.base_url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the mock answers");
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    (status, json, r.bytes().await.unwrap())
}

/// Starts a mock provider behind a door, `down` or not at first; answers the door's URL.
pub async fn start_front_door(down: bool) -> (String, Arc<FrontDoor>) {
    let mock = mock::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MockProviderConfig {
            receipt_delay: Duration::from_millis(20),
            secret: SECRET.into(),
        },
    )
    .await;
    let door = Arc::new(FrontDoor {
        mock,
        http: hermes_adapters::http::client(),
        down: AtomicBool::new(down),
        refused: AtomicUsize::new(0),
        passed_at: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/messages", axum::routing::post(send))
        .with_state(door.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, door)
}
