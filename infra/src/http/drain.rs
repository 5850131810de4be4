//! Lingering read: a request refused before its body was read gets its answer only after Hermes has
//! read (and dropped) what the client is still sending.
//!
//! Why: hyper closes the connection when a response is finished while the request body is still
//! unread. The client is then usually still writing; the kernel answers its further segments with
//! a TCP reset, and a reset makes the client's kernel discard the response it had already received.
//! Most clients (reqwest, Python's urllib) then report a broken connection instead of the 401 or
//! 413 problem body. Web servers solve this with a "lingering close" (nginx's `lingering_close`);
//! hyper has none, so this middleware does it: it hands the handler a body that, when dropped
//! unfinished, gives the rest back, and reads that rest before the response leaves.
//!
//! Draining is bounded ([`DRAIN_LIMIT_BYTES`], [`DRAIN_DEADLINE`]): past either bound the response
//! goes out with `Connection: close`, as it would have without this layer. A request sent with
//! `Expect: 100-continue` whose body was never touched is not drained: hyper never asked the
//! client for it, so the client waits for the answer without sending it.

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// The most unread body bytes read after a refusal (the admin API takes 16 MiB uploads, so a
/// refused upload somewhat over that is still answered cleanly).
pub const DRAIN_LIMIT_BYTES: usize = 64 << 20;
/// The longest Hermes waits for the rest of a refused request's body.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// What the handler left unread, handed back by [`TrackedBody`]'s `Drop`.
#[derive(Default)]
struct Leftover {
    body: Option<Body>,
    /// Whether anyone polled the body (then hyper has asked a `100-continue` client to send it).
    polled: bool,
}

type Slot = Arc<Mutex<Leftover>>;

/// The request body as the handler sees it.
struct TrackedBody {
    inner: Option<Body>,
    polled: bool,
    slot: Slot,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        this.polled = true;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.inner = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        let body = self.inner.take().filter(|b| !b.is_end_stream());
        if let Ok(mut leftover) = self.slot.lock() {
            leftover.polled = self.polled;
            leftover.body = body;
        }
    }
}

/// The middleware (`axum::middleware::from_fn(drain_unread_body)`), outermost on the router.
pub async fn drain_unread_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        // Nothing to read (GET, an empty POST): the common case costs nothing.
        return next.run(Request::from_parts(parts, body)).await;
    }
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let slot = Slot::default();
    let tracked = Body::new(TrackedBody {
        inner: Some(body),
        polled: false,
        slot: slot.clone(),
    });
    let mut response = next.run(Request::from_parts(parts, tracked)).await;
    let leftover = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
    let Some(rest) = leftover.body else {
        return response;
    };
    if expects_continue && !leftover.polled {
        // The client holds the body back until told to send it; it reads this answer instead.
        return response;
    }
    if !drain(rest).await {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads and drops the rest of a body; false if it was cut short by a bound or an error.
async fn drain(body: Body) -> bool {
    let read_all = async {
        let mut stream = body.into_data_stream();
        let mut read = 0usize;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    read += bytes.len();
                    if read > DRAIN_LIMIT_BYTES {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    let drained = tokio::time::timeout(DRAIN_DEADLINE, read_all)
        .await
        .unwrap_or(false);
    if !drained {
        tracing::debug!("a refused request's body was not read to its end; closing the connection");
    }
    drained
}
