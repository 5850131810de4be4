//! The HTTP server loop, with the limits `axum::serve` does not set: a client must send its request
//! headers within `header_read_timeout` (a slow or idle client cannot hold a connection open
//! forever), and every request is answered within `request_timeout` (a problem+json 503
//! `request_timeout` otherwise, see [`request_timeout`]).

use super::problem::Problem;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Longest a client may take to send a request's headers (from the connection's start, or
    /// from the previous response on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// Longest a request may take, body upload included, before it is answered with a 503.
    pub request_timeout: Duration,
}

/// Serves `app` on `listener` until the task is dropped; over TLS when `tls` is given (the
/// handshake shares the header read timeout: a client that stalls it is dropped as well).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<TlsAcceptor>,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        request_timeout,
    ));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Nagle's algorithm stays on (as with axum::serve): with TCP_NODELAY the accept benchmark
        // lost ~8% (3,760-3,900 against 4,050-4,120 msg/s, 64 clients, this 2-core machine).
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|req: Request<Incoming>| req.map(Body::new)),
        );
        let tls = tls.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .clone();
            let served = match tls {
                None => {
                    http.serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await
                }
                Some(tls) => {
                    let stream =
                        match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream))
                            .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(err)) => {
                                tracing::debug!(error = %err, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                return;
                            }
                        };
                    http.serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await
                }
            };
            if let Err(err) = served {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
}

/// Answers 503 `request_timeout` when the request takes longer than `limit`. Dropping the handler
/// at that point is safe: a write it already handed to the command side still commits, and a
/// retry with the same `Idempotency-Key` answers as the first request would have.
pub async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!(
                "the request was not answered within {} ms; if it was a write, retry it with the same Idempotency-Key",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}
