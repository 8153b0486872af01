//! Answers built but not yet sent, counted per connection and per client certificate. A peer
//! that opens many HTTP/2 streams and never opens their flow-control windows would otherwise
//! pin every answer in memory; past its budget, the connection that went over is closed.
//!
//! An answer is counted (its bytes, and [`STREAM_COST`] for the stream that carries it) from
//! the moment it is built until its bytes are written to the connection: handing a piece to
//! HTTP/2 is not enough, since h2 buffers what the peer's window does not take (a window of
//! one byte takes every answer at once). The connection's writes ([`Written`]) count down what
//! was handed over and not yet written; when the connection ends, what it still buffered is
//! let go with it. The body hands over its bytes in pieces no larger than [`CHUNK`], the last
//! no larger than [`LAST_CHUNK`].

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::ready;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// What a stream and its task cost besides the answer's bytes (hyper's task, h2's state).
pub const STREAM_COST: usize = 2 * 1024;
/// The largest piece of a body handed over at once.
pub const CHUNK: usize = 16 * 1024;
/// The largest last piece: what may stay buffered once the answer is no longer counted.
pub const LAST_CHUNK: usize = 1024;

/// Bytes held against one budget, and its most.
#[derive(Debug)]
pub struct Budget {
    held: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            max,
        })
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// The budgets one connection's answers count against, and the signal that closes it.
#[derive(Clone)]
pub struct Pending {
    connection: Arc<Budget>,
    certificate: Option<Arc<Budget>>,
    /// Bytes handed to the connection and not yet written by it.
    buffered: Arc<AtomicUsize>,
    /// Fires when this connection went over a budget: it is then closed.
    pub over: Arc<Notify>,
}

impl Pending {
    pub fn new(connection: Arc<Budget>, certificate: Option<Arc<Budget>>) -> Self {
        Self {
            connection,
            certificate,
            buffered: Arc::new(AtomicUsize::new(0)),
            over: Arc::new(Notify::new()),
        }
    }

    fn release(&self, n: usize) {
        for budget in std::iter::once(&self.connection).chain(self.certificate.as_ref()) {
            budget.held.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// The connection wrote `n` bytes: that much of what was handed over has left (frame
    /// headers count too, so this errs towards letting go early, by a few bytes a frame).
    fn written(&self, n: usize) {
        let mut now = self.buffered.load(Ordering::Relaxed);
        loop {
            let gone = now.min(n);
            if gone == 0 {
                return;
            }
            match self.buffered.compare_exchange_weak(
                now,
                now - gone,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.release(gone),
                Err(actual) => now = actual,
            }
        }
    }

    /// The connection is gone, and with it what it still buffered.
    fn ended(&self) {
        let left = self.buffered.swap(0, Ordering::Relaxed);
        self.release(left);
    }

    /// Counts an answer of `len` bytes until the returned body has handed it over. An answer
    /// that takes a budget past its most while others are still pending there closes the
    /// connection (one answer alone, however large, is always let through).
    pub fn charge(&self, body: Full<Bytes>) -> ChargedBody {
        let bytes = into_bytes(body);
        let n = bytes.len() + STREAM_COST;
        let mut over = false;
        for budget in std::iter::once(&self.connection).chain(self.certificate.as_ref()) {
            let before = budget.held.fetch_add(n, Ordering::Relaxed);
            over |= before > 0 && before + n > budget.max;
        }
        if over {
            self.over.notify_one();
        }
        ChargedBody {
            rest: bytes,
            charge: Some(Charge {
                pending: self.clone(),
                n,
            }),
        }
    }
}

/// An answer's share of its budgets, given back when dropped.
struct Charge {
    pending: Pending,
    n: usize,
}

impl Charge {
    /// A piece of `k` bytes was handed over: it stays counted, now as the connection's
    /// buffered bytes, until written.
    fn handed(&mut self, k: usize) {
        let k = k.min(self.n);
        self.n -= k;
        self.pending.buffered.fetch_add(k, Ordering::Relaxed);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.pending.release(self.n);
    }
}

/// An answer's body, counted until its last piece is handed over.
pub struct ChargedBody {
    rest: Bytes,
    charge: Option<Charge>,
}

impl Body for ChargedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let len = self.rest.len();
        if len == 0 {
            self.charge = None;
            return Poll::Ready(None);
        }
        let take = if len <= LAST_CHUNK {
            len
        } else {
            CHUNK.min(len - LAST_CHUNK)
        };
        let piece = self.rest.split_to(take);
        if let Some(charge) = self.charge.as_mut() {
            charge.handed(take);
        }
        if self.rest.is_empty() {
            self.charge = None;
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// A connection's transport, counting what it writes against what its answers handed over.
pub struct Written<IO> {
    io: IO,
    pending: Pending,
}

impl<IO> Written<IO> {
    pub fn new(io: IO, pending: &Pending) -> Self {
        Self {
            io,
            pending: pending.clone(),
        }
    }
}

impl<IO> Drop for Written<IO> {
    fn drop(&mut self) {
        self.pending.ended();
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Written<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Written<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.pending.written(n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        self.pending.written(n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The bytes of a `Full` body (it holds one frame, ready at once).
fn into_bytes(mut body: Full<Bytes>) -> Bytes {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(mut body: ChargedBody) -> Vec<usize> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
            out.push(f.into_data().map(|d| d.len()).unwrap_or(0));
        }
        out
    }

    #[test]
    fn a_body_is_handed_over_in_pieces_ending_small() {
        let p = Pending::new(Budget::new(1 << 20), None);
        assert_eq!(
            pieces(p.charge(Full::new(Bytes::from(vec![0u8; 40_000])))),
            vec![CHUNK, CHUNK, 40_000 - 2 * CHUNK - LAST_CHUNK, LAST_CHUNK]
        );
        assert_eq!(
            pieces(p.charge(Full::new(Bytes::from_static(b"abc")))),
            vec![3]
        );
        assert!(pieces(p.charge(Full::new(Bytes::new()))).is_empty());
    }

    #[test]
    fn answers_are_counted_until_written_and_a_second_one_past_the_budget_closes() {
        let conn = Budget::new(30_000);
        let cert = Budget::new(1 << 20);
        let p = Pending::new(conn.clone(), Some(cert.clone()));
        // One answer alone, larger than the budget, is let through.
        let big = p.charge(Full::new(Bytes::from(vec![0u8; 40_000])));
        assert_eq!(conn.held(), 40_000 + STREAM_COST);
        assert_eq!(cert.held(), 40_000 + STREAM_COST);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let over = p.over.clone();
        let told = |over: Arc<Notify>| {
            rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_millis(50), over.notified())
                    .await
                    .is_ok()
            })
        };
        assert!(!told(over.clone()));
        // A second one while it is pending goes over.
        let small = p.charge(Full::new(Bytes::from_static(b"x")));
        assert!(told(over));
        assert_eq!(
            pieces(big),
            vec![CHUNK, CHUNK, 40_000 - 2 * CHUNK - LAST_CHUNK, LAST_CHUNK]
        );
        // Dropped before it was handed over (its stream was reset): let go.
        drop(small);
        // Handed over, not yet written: still held, less the stream's cost.
        assert_eq!((conn.held(), cert.held()), (40_000, 40_000));
        p.written(39_000);
        assert_eq!((conn.held(), cert.held()), (1_000, 1_000));
        // Writes beyond what was handed over (frame headers) let go of nothing more.
        p.written(1_000_000);
        assert_eq!((conn.held(), cert.held()), (0, 0));
        p.written(10);
        assert_eq!((conn.held(), cert.held()), (0, 0));
    }

    #[test]
    fn what_a_connection_buffered_goes_with_it() {
        let conn = Budget::new(1 << 20);
        let cert = Budget::new(1 << 20);
        let p = Pending::new(conn.clone(), Some(cert.clone()));
        let io = Written::new(tokio::io::empty(), &p);
        pieces(p.charge(Full::new(Bytes::from(vec![0u8; 5_000]))));
        assert_eq!(cert.held(), 5_000);
        drop(io);
        assert_eq!((conn.held(), cert.held()), (0, 0));
    }
}
