//! The one response body type the server returns.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full};

/// Any error a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response gatehouse sends: a proxied, streaming body or
/// a small one of its own.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A body from bytes already in memory.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Wraps any streaming body without buffering it.
pub fn stream<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A request body that says when it has been sent in full (or failed, or
/// was dropped): the upstream timeout counts from then, so a long upload is
/// not cut off while it is still streaming.
///
/// Its trailers lose what a client may not state in headers either (see
/// [`crate::http::headers::strip_client_headers`]): identity headers, the
/// `strip` names, and the forwarding family, which no trailer carries.
pub struct NotifyOnEnd<B> {
    inner: B,
    done: Option<tokio::sync::oneshot::Sender<()>>,
    /// `None` for a body that had ended before it was wrapped.
    strip: Option<std::sync::Arc<[String]>>,
}

impl<B> NotifyOnEnd<B> {
    /// Wraps `inner`; `done` fires once, at its end. `strip` names the
    /// headers removed from trailers besides the identity and forwarding
    /// families (claim headers, `Authorization` when gatehouse sets it).
    pub fn new(
        inner: B,
        done: tokio::sync::oneshot::Sender<()>,
        strip: std::sync::Arc<[String]>,
    ) -> Self {
        Self {
            inner,
            done: Some(done),
            strip: Some(strip),
        }
    }

    /// Wraps a body that has already ended (`is_end_stream`: most requests,
    /// a GET): no one waits for its end, and no trailers can follow, so it
    /// gets no channel and no strip list (one allocation and one shared
    /// reference count less per request). Should trailers come anyway,
    /// none of them pass.
    pub fn ended(inner: B) -> Self {
        Self {
            inner,
            done: None,
            strip: None,
        }
    }
}

impl<B> http_body::Body for NotifyOnEnd<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        // trailers are headers too: an identity header may not arrive there
        if let std::task::Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(trailers) = frame.trailers_mut()
        {
            match &self.strip {
                Some(strip) => crate::http::headers::strip_client_headers(trailers, strip, false),
                None => trailers.clear(),
            }
        }
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_))))
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
