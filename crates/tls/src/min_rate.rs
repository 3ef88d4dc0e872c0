//! A request body must keep arriving at a minimum average rate (after a grace
//! period), as Kestrel's `MinRequestBodyDataRate` (240 B/s, 5 s grace) has it: a
//! client trickling a body a byte at a time cannot hold a connection and a worker
//! for hours. The idle limit alone would let one byte every two minutes through.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Bytes per second a body must average once the grace period is over.
pub const MIN_BODY_RATE: u64 = 240;
/// How long a body may take to get going.
pub const BODY_GRACE: Duration = Duration::from_secs(5);

/// The error a too-slow body ends with; handlers see it as a failed body read.
#[derive(Debug)]
pub struct BodyTooSlow;

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body arrived slower than {MIN_BODY_RATE} bytes per second"
        )
    }
}

impl std::error::Error for BodyTooSlow {}

/// `inner`, failing once it falls behind `rate` bytes/s after `grace`.
pub(crate) struct MinRate<B> {
    inner: B,
    started: Instant,
    received: u64,
    rate: u64,
    grace: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> MinRate<B> {
    pub(crate) fn new(inner: B, rate: u64, grace: Duration) -> Self {
        let started = Instant::now();
        Self {
            inner,
            started,
            received: 0,
            rate,
            grace,
            deadline: Box::pin(tokio::time::sleep_until(started + grace)),
        }
    }

    /// When the body falls behind if nothing more arrives.
    fn behind_at(&self) -> Instant {
        let earned = Duration::from_secs_f64((self.received + 1) as f64 / self.rate as f64);
        self.started + self.grace + earned
    }
}

impl<B> HttpBody for MinRate<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let at = self.behind_at();
                self.deadline.as_mut().reset(at);
                match self.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: every request body is held to the minimum rate.
pub(crate) async fn enforce(request: Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = Body::new(MinRate::new(body, MIN_BODY_RATE, BODY_GRACE));
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_trickle_fails_after_the_grace_and_a_steady_body_passes() {
        // One byte every 100 ms against 1,000 B/s after 200 ms: falls behind.
        let trickle = futures::stream::unfold(0, |n| async move {
            (n < 20).then_some(())?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), n + 1))
        });
        let slow = MinRate::new(Body::from_stream(trickle), 1000, Duration::from_millis(200));
        let err = slow.collect().await.unwrap_err();
        assert!(err.is::<BodyTooSlow>(), "{err}");

        // 10 KB every 100 ms is 100 KB/s: passes whole.
        let steady = futures::stream::unfold(0, |n| async move {
            (n < 5).then_some(())?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((
                Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 10_000])),
                n + 1,
            ))
        });
        let fast = MinRate::new(Body::from_stream(steady), 1000, Duration::from_millis(200));
        assert_eq!(fast.collect().await.unwrap().to_bytes().len(), 50_000);
    }
}
