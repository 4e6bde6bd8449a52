//! A Unix stream that wakes its process only when there is something to
//! read: the connection between smtpd and the router.
//!
//! Tokio registers every stream for reading and writing at once. On a Unix
//! socket that costs a wake-up each time the other end reads: the kernel
//! says "room to write" whenever the peer consumes a message, and a process
//! asleep in `epoll_wait` is woken for it even when it has nothing to
//! write. Between smtpd and the router, that was one useless wake-up of the
//! router for every reply smtpd read, and of smtpd for every request the
//! router read — at one session, about as many as the router's useful ones
//! (bench/RESULTS.md, "Performance round 2, fourth pass").
//!
//! Here the socket is registered for reading only. A write goes straight to
//! the socket; only when it is full (the peer is not reading) is a second
//! descriptor of the same socket, made with the stream, registered for
//! writing, for as long as that write waits.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream as StdStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected Unix stream, registered for reading only.
pub struct QuietStream {
    fd: Arc<AsyncFd<StdStream>>,
    spare: StdStream,
}

/// The reading half of a [`QuietStream`].
pub struct QuietRead(Arc<AsyncFd<StdStream>>);

/// The writing half of a [`QuietStream`]; dropping it shuts the writing
/// direction down (the peer reads the end of the stream), as tokio's does.
pub struct QuietWrite {
    fd: Arc<AsyncFd<StdStream>>,
    /// A second descriptor of the socket, unregistered: made with the
    /// stream, so that waiting for room never needs a new descriptor (a
    /// process out of descriptors still waits instead of failing).
    spare: Option<StdStream>,
    /// The spare, registered for writing while a write waits for room.
    room: Option<AsyncFd<StdStream>>,
}

impl QuietStream {
    /// Takes over a tokio stream.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as tokio's own streams).
    pub fn new(stream: tokio::net::UnixStream) -> io::Result<Self> {
        let std = stream.into_std()?;
        std.set_nonblocking(true)?;
        let spare = std.try_clone()?;
        let fd = Arc::new(register(std, Interest::READABLE)?);
        Ok(QuietStream { fd, spare })
    }

    /// Connects to the socket at `path`.
    pub async fn connect(path: &std::path::Path) -> io::Result<Self> {
        Self::new(tokio::net::UnixStream::connect(path).await?)
    }

    /// The two halves, each usable by its own task.
    pub fn into_split(self) -> (QuietRead, QuietWrite) {
        (
            QuietRead(self.fd.clone()),
            QuietWrite {
                fd: self.fd,
                spare: Some(self.spare),
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
            let asked = unfilled.len();
            match ready.try_io(|fd| fd.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    // Less than asked: the socket is empty now (a stream
                    // socket gives all it holds), so the next read waits for
                    // the next event instead of trying first, as tokio does.
                    if 0 < n && n < asked {
                        ready.clear_ready();
                    }
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
                    // Room again: the spare is unregistered until next time.
                    if let Some(room) = this.room.take() {
                        this.spare = Some(room.into_inner());
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Full: wait for room on a registration made for this wait.
            let room = match (this.room.take(), this.spare.take()) {
                (Some(room), _) => room,
                (None, Some(spare)) => register(spare, Interest::WRITABLE)?,
                (None, None) => register(this.fd.get_ref().try_clone()?, Interest::WRITABLE)?,
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

    /// The events epoll watches for descriptor `fd` of this process, from
    /// the kernel's own account (`/proc/self/fdinfo` of every epoll
    /// instance): `None` if no epoll instance watches it.
    fn epoll_events(fd: std::os::fd::RawFd) -> Option<u32> {
        for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
            let entry = entry.expect("fd entry");
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            if target.to_string_lossy() != "anon_inode:[eventpoll]" {
                continue;
            }
            let name = entry.file_name();
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", name.to_string_lossy()))
                    .unwrap_or_default();
            // tfd:       12 events: 80002001 data: ...
            for line in info.lines() {
                let mut words = line.split_whitespace();
                if words.next() != Some("tfd:") {
                    continue;
                }
                let watched = words.next().and_then(|w| w.parse::<i32>().ok());
                if watched == Some(fd) && words.next() == Some("events:") {
                    let mask = words.next().expect("a mask");
                    return Some(u32::from_str_radix(mask, 16).expect("hex mask"));
                }
            }
        }
        None
    }

    const EPOLLIN: u32 = 0x1;
    const EPOLLOUT: u32 = 0x4;

    /// The point of the module: the kernel is asked to report readability
    /// only, where a tokio stream asks for room to write too.
    #[tokio::test]
    async fn the_socket_is_watched_for_reading_only() {
        use std::os::fd::AsRawFd;
        let (plain, _other) = tokio::net::UnixStream::pair().expect("socketpair");
        let plain_mask = epoll_events(plain.as_raw_fd()).expect("tokio registers its streams");
        assert_ne!(plain_mask & EPOLLOUT, 0, "a tokio stream: {plain_mask:x}");

        let (a, _b) = pair();
        let fd = a.fd.get_ref().as_raw_fd();
        let mask = epoll_events(fd).expect("registered");
        assert_ne!(mask & EPOLLIN, 0, "readable: {mask:x}");
        assert_eq!(mask & EPOLLOUT, 0, "not writable: {mask:x}");
        let spare = a.spare.as_raw_fd();
        assert_eq!(epoll_events(spare), None, "the spare is not watched");
    }

    /// A writer waiting for room whose peer goes away gets an error, at
    /// once: it does not wait for ever.
    #[tokio::test]
    async fn a_writer_waiting_for_room_fails_when_the_peer_goes_away() {
        let (a, b) = pair();
        let (_ar, mut aw) = a.into_split();
        let big = vec![b'x'; 4 * 1024 * 1024];
        let writer = tokio::spawn(async move { aw.write_all(&big).await });
        // Until the writer waits: the socket holds far less than 4 MB.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!writer.is_finished(), "the writer waits for room");
        drop(b);
        let result = tokio::time::timeout(std::time::Duration::from_secs(20), writer)
            .await
            .expect("the writer was woken")
            .expect("writer task");
        assert!(result.is_err(), "a write to a closed peer fails");
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
            assert!(aw.spare.is_some(), "and its descriptor kept for next time");
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
