//! Reading what a refused request still sends, so its client reads the
//! answer instead of a reset connection.
//!
//! Why: many answers come before the request body is read: 401 without
//! credentials, 429, 413 for a `Content-Length` over the limit. Over
//! HTTP/1.1 hyper then closes the connection with the unread body still in
//! the socket, the kernel answers the client's next segment with a reset,
//! and a client that is still sending (Python's `requests`, curl) reports
//! "connection reset" or "EOF occurred in violation of protocol" instead of
//! the 413 or 401 the server sent. Servers such as nginx "linger": they
//! read and drop the rest of the body for a while before closing. This
//! module does the same for every HTTP/1 request: [`track`] wraps the body
//! so that whatever the handler leaves unread comes back to the outer
//! middleware, and [`drain`] reads and drops it within a byte and a time
//! budget. HTTP/2 needs none of this: an unread stream is reset on its
//! own and the connection lives on.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;

/// Most bytes of a refused body read and dropped before giving up and
/// closing the connection.
pub(crate) const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
/// Longest time spent reading a refused body.
pub(crate) const DRAIN_TIME: Duration = Duration::from_secs(10);

/// A request body that hands back what was left unread when it is dropped.
struct Handback {
    inner: Option<Body>,
    back: Option<oneshot::Sender<Body>>,
}

impl http_body::Body for Handback {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Handback {
    fn drop(&mut self) {
        if let (Some(body), Some(back)) = (self.inner.take(), self.back.take())
            && !http_body::Body::is_end_stream(&body)
        {
            // The middleware may be gone (a cancelled request): then the
            // connection closes anyway.
            let _ = back.send(body);
        }
    }
}

/// Wraps `req`'s body; the receiver gets whatever part of it the handler
/// did not read, once the handler has dropped the request.
pub(crate) fn track(req: Request) -> (Request, oneshot::Receiver<Body>) {
    let (tx, rx) = oneshot::channel();
    let (parts, body) = req.into_parts();
    let body = Body::new(Handback {
        inner: Some(body),
        back: Some(tx),
    });
    (Request::from_parts(parts, body), rx)
}

/// Reads and drops the rest of `body`. True when it was read to its end,
/// so the connection can be kept; false when it was too large, too slow or
/// broken (then the caller should close the connection).
pub(crate) async fn drain(body: Body, max_bytes: u64, max_time: Duration) -> bool {
    if body.size_hint().lower() > max_bytes {
        return false;
    }
    let read = async move {
        let mut body = body;
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > max_bytes {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(max_time, read).await.unwrap_or(false)
}
