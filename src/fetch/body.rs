//! The response body as a stream that stops at the size limit and at the fetch's deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::Stream;
use tokio::time::{Instant, Sleep};

use super::FetchError;

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// Yields the body's chunks until the body ends, more than `max_bytes` have arrived, or the
/// deadline passes; the last two end the stream with an [`io::Error`] that carries the
/// [`FetchError`].
pub(super) struct LimitedBody {
    inner: ChunkStream,
    deadline: Pin<Box<Sleep>>,
    received: u64,
    max_bytes: u64,
    finished: bool,
}

impl LimitedBody {
    pub(super) fn new(response: reqwest::Response, max_bytes: u64, deadline: Instant) -> Self {
        Self {
            inner: Box::pin(response.bytes_stream()),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            received: 0,
            max_bytes,
            finished: false,
        }
    }

    fn fail(&mut self, error: io::Error) -> Poll<Option<Result<Bytes, io::Error>>> {
        // Ending the stream after an error drops nothing the caller could still use, and it
        // keeps a caller that polls again from reading past the limit.
        self.finished = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for LimitedBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.fail(io::Error::new(io::ErrorKind::TimedOut, FetchError::Timeout));
        }

        match ready!(self.inner.as_mut().poll_next(cx)) {
            None => {
                self.finished = true;
                Poll::Ready(None)
            }
            Some(Err(error)) => {
                tracing::debug!(error = %error.without_url(), "fetch body read failed");
                self.fail(io::Error::other(FetchError::Network(
                    "the connection failed while reading the response".to_owned(),
                )))
            }
            Some(Ok(chunk)) => {
                self.received = self.received.saturating_add(chunk.len() as u64);
                if self.received > self.max_bytes {
                    let max_bytes = self.max_bytes;
                    return self.fail(io::Error::other(FetchError::TooLarge(max_bytes)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
        }
    }
}
