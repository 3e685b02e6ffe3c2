//! A time limit for writing responses on the control socket, which hyper
//! 0.14 does not provide. A write stalls while the socket's send buffer is
//! full, and it times out once the client has read nothing from that
//! buffer for the limit. The same stream reports to an [`OutputObserver`]
//! when response bytes wait in hyper for the socket.

use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Maximum bytes passed to one write of the socket. Linux frees the send
/// buffer space of a unix stream write only once the reader has read all
/// of it, so a reader shows progress at least every `MAX_WRITE` bytes.
pub const MAX_WRITE: usize = 16 * 1024;

/// Number of times per timeout that a stalled write checks whether the
/// client has read anything.
const CHECKS_PER_TIMEOUT: u32 = 10;

/// The error of a response write that timed out, wrapped in an
/// [`io::Error`] of kind [`io::ErrorKind::TimedOut`].
#[derive(Debug, thiserror::Error)]
#[error(
    "timed out writing a response: the client read none of the {unread} bytes \
     waiting in the socket for {timeout:?}"
)]
pub struct WriteTimedOut {
    pub timeout: Duration,
    /// Bytes in the socket's send buffer as SIOCOUTQ counts them, which
    /// includes the kernel's bookkeeping, or 0 when SIOCOUTQ failed.
    pub unread: usize,
}

impl WriteTimedOut {
    /// Returns the [`WriteTimedOut`] that `error`, an error of hyper or of
    /// I/O, wraps. [`io::Error::source`] skips the error it wraps, so this
    /// looks into each [`io::Error`] of the chain with `get_ref`.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a WriteTimedOut> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(found) = error.downcast_ref::<WriteTimedOut>() {
                return Some(found);
            }
            let wrapped = error
                .downcast_ref::<io::Error>()
                .and_then(|error| error.get_ref())
                .and_then(|inner| inner.downcast_ref::<WriteTimedOut>());
            if wrapped.is_some() {
                return wrapped;
            }
            current = error.source();
        }
        None
    }
}

/// Receiver of a stream's output events: a write begins output, and a
/// completed flush ends it. hyper 0.14 flushes the stream only once its own
/// write buffer is empty (`Buffered::poll_flush` in `src/proto/h1/io.rs`
/// of hyper 0.14.32), so after a completed flush the socket has taken every
/// byte of the response.
pub trait OutputObserver {
    fn output_began(&self);
    fn output_flushed(&self);
}

/// The observer of a stream whose output is not tracked.
impl OutputObserver for () {
    fn output_began(&self) {}
    fn output_flushed(&self) {}
}

/// A stream whose writes fail with [`WriteTimedOut`] when they stall for
/// `timeout` without the peer reading, and which reports writes and
/// flushes to `observer`. Reads pass through unchanged.
pub struct WriteTimeout<S, O = ()> {
    inner: S,
    timeout: Duration,
    stall: Option<Stall>,
    observer: O,
}

/// A write that found the send buffer full.
struct Stall {
    /// The next check of the send buffer.
    check: Pin<Box<Sleep>>,
    /// When the peer was last seen reading, or the stall began.
    progress_at: Instant,
    /// Bytes in the send buffer at `progress_at`.
    unread: Option<usize>,
}

impl<S, O> WriteTimeout<S, O> {
    pub fn with_observer(inner: S, timeout: Duration, observer: O) -> Self {
        WriteTimeout {
            inner,
            timeout,
            stall: None,
            observer,
        }
    }
}

impl<S: AsFd, O: OutputObserver> WriteTimeout<S, O> {
    /// Returns `Pending` while the peer reads or the timeout has not
    /// passed, and the timeout error otherwise. A `Pending` return has
    /// registered the waker for the next check.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let interval = self.timeout / CHECKS_PER_TIMEOUT;
        let stall = self.stall.get_or_insert_with(|| Stall {
            check: Box::pin(tokio::time::sleep(interval)),
            progress_at: Instant::now(),
            unread: unread_bytes(self.inner.as_fd()),
        });
        loop {
            if stall.check.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let unread = unread_bytes(self.inner.as_fd());
            let read_some =
                matches!((unread, stall.unread), (Some(after), Some(before)) if after < before);
            if read_some {
                stall.progress_at = now;
                stall.unread = unread;
            }
            let deadline = stall.progress_at + self.timeout;
            if now >= deadline {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    WriteTimedOut {
                        timeout: self.timeout,
                        unread: unread.unwrap_or(0),
                    },
                ));
            }
            stall.check.as_mut().reset((now + interval).min(deadline));
        }
    }

    /// Runs one write: its result ends a stall, and a full send buffer
    /// starts or continues one.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut S, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        self.observer.output_began();
        match write(&mut self.inner, cx) {
            Poll::Pending => self.poll_stall(cx).map(Err),
            ready => {
                self.stall = None;
                ready
            }
        }
    }
}

/// Returns the bytes in the send buffer of socket `fd` that its peer has
/// not read, as SIOCOUTQ counts them, or `None` when the ioctl fails.
fn unread_bytes(fd: BorrowedFd<'_>) -> Option<usize> {
    let mut unread: libc::c_int = 0;
    // SAFETY: `fd` is an open descriptor for the whole call, because it is
    // borrowed from the stream. SIOCOUTQ (TIOCOUTQ) writes one c_int
    // through the pointer, which points to `unread`, a live c_int.
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut unread) };
    if result < 0 {
        return None;
    }
    usize::try_from(unread).ok()
}

/// Returns the first [`MAX_WRITE`] bytes of `bufs`.
fn capped<'a>(bufs: &'a [IoSlice<'a>]) -> Vec<IoSlice<'a>> {
    let mut left = MAX_WRITE;
    let mut slices = Vec::with_capacity(bufs.len());
    for buf in bufs {
        if left == 0 {
            break;
        }
        let take = buf.len().min(left);
        slices.push(IoSlice::new(&buf[..take]));
        left -= take;
    }
    slices
}

impl<S: AsyncWrite + AsFd + Unpin, O: OutputObserver + Unpin> AsyncWrite for WriteTimeout<S, O> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let buf = &buf[..buf.len().min(MAX_WRITE)];
        self.get_mut()
            .poll_write_with(cx, |inner, cx| Pin::new(inner).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs = capped(bufs);
        self.get_mut().poll_write_with(cx, |inner, cx| {
            Pin::new(inner).poll_write_vectored(cx, &bufs)
        })
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            this.observer.output_flushed();
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin, O: Unpin> AsyncRead for WriteTimeout<S, O> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn unread_response_times_out() {
        let (server, _client) = UnixStream::pair().unwrap();
        let mut server = WriteTimeout::with_observer(server, TIMEOUT, ());
        let began = std::time::Instant::now();
        // Far more than a unix socket's send buffer holds.
        let body = vec![b'x'; 8 * 1024 * 1024];
        let error = server.write_all(&body).await.unwrap_err();
        let elapsed = began.elapsed();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        let timed_out = WriteTimedOut::find(&error).expect("the error wraps WriteTimedOut");
        assert_eq!(timed_out.timeout, TIMEOUT);
        assert!(timed_out.unread > 0, "{timed_out:?}");
        assert!(elapsed >= TIMEOUT, "timed out after {elapsed:?}");
        assert!(elapsed < TIMEOUT * 3, "timed out only after {elapsed:?}");
    }

    #[tokio::test]
    async fn slow_reader_keeps_the_stream() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let mut server = WriteTimeout::with_observer(server, TIMEOUT, ());
        // The reader takes 4 KiB every 50 ms, so draining the send buffer
        // far enough for the next write takes longer than the timeout, but
        // each check finds bytes read.
        let size = 384 * 1024;
        let reader = tokio::spawn(async move {
            let mut received = 0;
            let mut chunk = vec![0; 4096];
            let began = std::time::Instant::now();
            while received < size {
                let count = client.read(&mut chunk).await.unwrap();
                assert_ne!(count, 0, "the writer closed after {received} bytes");
                received += count;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            began.elapsed()
        });
        server.write_all(&vec![b'x'; size]).await.unwrap();
        let took = reader.await.unwrap();
        assert!(took > TIMEOUT * 4, "the reader took only {took:?}");
    }

    #[tokio::test]
    async fn writes_are_capped() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let mut server = WriteTimeout::with_observer(server, TIMEOUT, ());
        let body = vec![b'x'; MAX_WRITE * 3];
        let written = server.write(&body).await.unwrap();
        assert_eq!(written, MAX_WRITE);
        let head = [IoSlice::new(b"head"), IoSlice::new(&body)];
        let written = server.write_vectored(&head).await.unwrap();
        assert_eq!(written, MAX_WRITE);
        drop(server);
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received.len(), MAX_WRITE * 2);
        assert!(received[MAX_WRITE..].starts_with(b"headxx"));
    }

    #[test]
    fn capped_keeps_order_and_limit() {
        let first = vec![1u8; 10];
        let second = vec![2u8; MAX_WRITE];
        let bufs = [IoSlice::new(&first), IoSlice::new(&second)];
        let slices = capped(&bufs);
        let lengths: Vec<usize> = slices.iter().map(|slice| slice.len()).collect();
        assert_eq!(lengths, [10, MAX_WRITE - 10]);
        assert_eq!(capped(&[]).len(), 0);
    }
}
