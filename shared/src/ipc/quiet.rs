//! A Unix stream that wakes its process only when there is something to
//! read: the connection between smtpd and the router.
//!
//! Tokio registers every stream for reading and writing at once. On a Unix
//! socket that costs a wake-up each time the other end reads: the kernel
//! says "room to write" whenever the peer consumes a message, and a process
//! asleep in `epoll_wait` is woken for it even when it has nothing to
//! write. Between smtpd and the router, that was one useless wake-up of the
//! router for every reply smtpd read, and of smtpd for every request the
//! router read — about as many as the router's useful ones (bench/RESULTS.md,
//! "wake-ups").
//!
//! Here the socket is registered for reading only. A write goes straight to
//! the socket; only when it is full (the peer is not reading) is a second
//! descriptor of the same socket registered for writing, for as long as that
//! write waits.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream as StdStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected Unix stream, registered for reading only.
pub struct QuietStream(Arc<AsyncFd<StdStream>>);

/// The reading half of a [`QuietStream`].
pub struct QuietRead(Arc<AsyncFd<StdStream>>);

/// The writing half of a [`QuietStream`]; dropping it shuts the writing
/// direction down (the peer reads the end of the stream), as tokio's does.
pub struct QuietWrite {
    fd: Arc<AsyncFd<StdStream>>,
    /// The socket registered for writing while a write waits for room.
    room: Option<AsyncFd<StdStream>>,
}

impl QuietStream {
    /// Takes over a tokio stream (must be called within the runtime).
    pub fn new(stream: tokio::net::UnixStream) -> io::Result<Self> {
        let std = stream.into_std()?;
        std.set_nonblocking(true)?;
        Ok(QuietStream(Arc::new(register(std, Interest::READABLE)?)))
    }

    /// Connects to the socket at `path`.
    pub async fn connect(path: &std::path::Path) -> io::Result<Self> {
        Self::new(tokio::net::UnixStream::connect(path).await?)
    }

    /// The two halves, each usable by its own task.
    pub fn into_split(self) -> (QuietRead, QuietWrite) {
        (
            QuietRead(self.0.clone()),
            QuietWrite {
                fd: self.0,
                room: None,
            },
        )
    }
}

/// Registers `stream` with the runtime for `interest` only.
fn register(stream: StdStream, interest: Interest) -> io::Result<AsyncFd<StdStream>> {
    #[allow(unsafe_code)]
    // SAFETY: the descriptor is owned by `stream`, which the `AsyncFd` owns
    // from now on: it stays open, and the same, until the `AsyncFd` drops.
    let registered = unsafe { AsyncFd::register_with_interest(stream, interest) };
    registered.map_err(|e| e.into_parts().1)
}

impl AsyncRead for QuietRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match ready.try_io(|fd| fd.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Read to the end of what was there: wait for the next.
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for QuietWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.fd.get_ref().write(data) {
                Ok(n) => {
                    // Room again: the writing registration is dropped.
                    this.room = None;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Full: wait for room on a registration made for this wait.
            let room = match this.room.take() {
                Some(room) => room,
                None => {
                    let dup = this.fd.get_ref().try_clone()?;
                    register(dup, Interest::WRITABLE)?
                }
            };
            ready!(this.room.insert(room).poll_write_ready(cx))?.clear_ready();
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd.get_ref().shutdown(Shutdown::Write))
    }
}

impl Drop for QuietWrite {
    fn drop(&mut self) {
        let _ = self.fd.get_ref().shutdown(Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A pair of connected quiet streams.
    fn pair() -> (QuietStream, QuietStream) {
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        (
            QuietStream::new(a).expect("a"),
            QuietStream::new(b).expect("b"),
        )
    }

    #[tokio::test]
    async fn bytes_go_both_ways_and_dropping_the_writer_ends_the_stream() {
        let (a, b) = pair();
        let (mut ar, mut aw) = a.into_split();
        let (mut br, mut bw) = b.into_split();
        aw.write_all(b"request=route\n\n").await.expect("write");
        let mut got = [0u8; 15];
        br.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"request=route\n\n");
        bw.write_all(b"status=ok\n\n").await.expect("write back");
        let mut back = [0u8; 11];
        ar.read_exact(&mut back).await.expect("read back");
        assert_eq!(&back, b"status=ok\n\n");
        drop(aw);
        let mut rest = Vec::new();
        br.read_to_end(&mut rest).await.expect("end");
        assert!(rest.is_empty(), "nothing after the end: {rest:?}");
    }

    /// More than the socket holds: the writer waits for room (its second
    /// registration) and every byte arrives, in order.
    #[tokio::test]
    async fn a_write_larger_than_the_socket_waits_for_the_reader() {
        let (a, b) = pair();
        let (_ar, mut aw) = a.into_split();
        let (mut br, _bw) = b.into_split();
        let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let expected = big.clone();
        // The socket holds far less than 4 MB: the write completes only by
        // waiting for room, so a wait that is never woken times out here.
        let writer = tokio::spawn(async move {
            aw.write_all(&big).await.expect("write");
            assert!(aw.room.is_none(), "the writing registration is dropped");
        });
        let mut got = vec![0u8; expected.len()];
        let within = std::time::Duration::from_secs(20);
        tokio::time::timeout(within, br.read_exact(&mut got))
            .await
            .expect("the writer was woken when there was room")
            .expect("read");
        tokio::time::timeout(within, writer)
            .await
            .expect("the writer finished")
            .expect("writer");
        assert!(got == expected, "the bytes arrive unchanged and in order");
    }
}
