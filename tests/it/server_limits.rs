//! Slow clients: one that never finishes its headers loses its connection, and a request that
//! takes too long (here: a body that never arrives) is answered with a problem+json 503.

use crate::harness::TestApp;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; `None` if it has not within `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = TestApp::spawn_with(|args| args.header_read_timeout_ms = 300).await;
    // A prompt client is served.
    let ok = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    let mut slow = TcpStream::connect(app.app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: hermes\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    let answer = answer.expect("the connection is still open 5 s after its headers stalled");
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_503_request_timeout() {
    let app = TestApp::spawn_with(|args| args.request_timeout_ms = 500).await;
    let mut slow = TcpStream::connect(app.app.addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: hermes\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{{\"to\": ",
        app.api_key
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(5))
        .await
        .expect("no answer within 5 s");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");

    // Requests that finish in time are unaffected.
    let ok = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}
