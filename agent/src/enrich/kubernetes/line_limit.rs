//! A bound on the lines of the API server's answers. The client reads a watch as JSON lines and
//! a list as one document, each unbounded: a server that never ends a line would have the
//! agent buffer without end. [`LineBounded`] fails the body instead once one line passes
//! [`MAX_LINE_BYTES`].

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use kube::client::DynBody;
use tower::util::MapResponseLayer;

/// Most bytes of one line of an answer: one watch event, or one page of the list (at most 500
/// pods; a node runs 110 by default, a few KiB each).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// A line of an answer was longer than allowed.
#[derive(Debug, thiserror::Error)]
#[error("Kubernetes API answer has a line of more than {max} bytes")]
pub struct LineTooLong {
    /// The bound.
    pub max: usize,
}

/// A response body that fails once a line (bytes between newlines) passes `max` bytes.
#[derive(Debug)]
pub struct LineBounded<B> {
    inner: B,
    max: usize,
    /// Bytes since the last newline.
    run: usize,
}

impl<B> LineBounded<B> {
    /// `inner`, with lines of at most `max` bytes.
    pub fn new(inner: B, max: usize) -> Self {
        Self { inner, max, run: 0 }
    }
}

impl<B> Body for LineBounded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<tower::BoxError>,
{
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.run > this.max {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    for (i, piece) in data.split(|b| *b == b'\n').enumerate() {
                        this.run = if i == 0 {
                            this.run + piece.len()
                        } else {
                            piece.len()
                        };
                        if this.run > this.max {
                            return Poll::Ready(Some(Err(LineTooLong { max: this.max }.into())));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.run > self.max || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer of the Kubernetes client's service, as it comes.
pub type Answer = Response<Box<DynBody>>;
/// An answer whose lines are bounded.
pub type BoundedAnswer = Response<LineBounded<Box<DynBody>>>;

/// A layer for the Kubernetes client's service that bounds every answer's lines to `max`.
pub fn layer(max: usize) -> MapResponseLayer<impl Fn(Answer) -> BoundedAnswer + Clone> {
    MapResponseLayer::new(move |response: Answer| response.map(|body| LineBounded::new(body, max)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, StreamBody};

    async fn read(chunks: &[&'static str], max: usize) -> Result<String, String> {
        let frames = chunks
            .iter()
            .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c.to_string()))));
        let body = LineBounded::new(StreamBody::new(futures::stream::iter(frames)), max);
        match body.collect().await {
            Ok(collected) => Ok(String::from_utf8(collected.to_bytes().to_vec()).unwrap()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn lines_within_the_bound_pass_whole_across_chunks() {
        assert_eq!(
            read(&["abc", "d\nefgh\n", "ij"], 4).await,
            Ok("abcd\nefgh\nij".into())
        );
    }

    #[tokio::test]
    async fn a_line_past_the_bound_fails_the_body_inside_a_chunk_or_across_chunks() {
        for chunks in [&["ab\nabcde\nx"][..], &["abc", "de"], &["ab\nabc", "de\n"]] {
            let err = read(chunks, 4).await.unwrap_err();
            assert!(err.contains("more than 4 bytes"), "{chunks:?}: {err}");
        }
    }
}
