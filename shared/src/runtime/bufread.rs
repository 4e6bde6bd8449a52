//! A buffered reader that neither zeroes its buffer nor has to be rebuilt to
//! grow it.
//!
//! tokio's `BufReader` zero-fills its whole buffer when it is made, and its
//! size is fixed: smtpd used to zero a 4 KB command buffer, an 8 KB backend
//! buffer and a 64 KB body buffer (plus an 8 KB placeholder while swapping
//! them) for every message — a quarter of its instructions. [`Reader`] reads
//! into the uninitialised spare capacity of a `Vec` (only bytes actually
//! received are ever written), and [`Reader::reserve`] grows the buffer in
//! place, keeping what is buffered.
//!
//! A connection that has sent nothing holds no buffer: made with capacity
//! 0, a reader waits for bytes with a small one on the stack and allocates
//! only when some come (as nginx allocates a connection's buffer when it
//! is first readable). Freeing the buffer again whenever a read would
//! block was measured too: it cost 6–9 % more CPU per message with 100
//! messages per connection (a 32 KB body buffer freed and allocated again
//! for each message), for memory only sessions idle after a command hold.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// A buffered reader over `S`: `AsyncRead` and `AsyncBufRead`, so
/// `read_until`, `fill_buf`/`consume` and `take` work as with tokio's.
#[derive(Debug)]
pub struct Reader<S> {
    inner: S,
    /// Bytes read from `inner`; `buf[pos..]` are not consumed yet.
    buf: Vec<u8>,
    pos: usize,
}

impl<S> Reader<S> {
    /// A reader with room for `capacity` bytes (allocated, not initialised;
    /// 0 allocates nothing until the first read).
    pub fn with_capacity(capacity: usize, inner: S) -> Self {
        Reader {
            inner,
            buf: Vec::with_capacity(capacity),
            pos: 0,
        }
    }

    /// Makes room for at least `capacity` bytes, keeping the buffered ones.
    pub fn reserve(&mut self, capacity: usize) {
        if self.buf.capacity() < capacity {
            self.buf.drain(..self.pos);
            self.pos = 0;
            self.buf.reserve_exact(capacity - self.buf.len());
        }
    }

    /// The buffer's size.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The bytes read but not consumed yet.
    pub fn buffer(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The underlying stream (reading from it directly skips the buffer).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The underlying stream; buffered bytes are dropped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncBufRead for Reader<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let me = self.get_mut();
        if me.pos >= me.buf.len() {
            me.buf.clear();
            me.pos = 0;
            if me.buf.capacity() == 0 {
                // No buffer: wait with a small one on the stack, and
                // allocate only for bytes that came.
                let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); STACK_READ];
                let mut rb = ReadBuf::uninit(&mut stack);
                ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
                let got = rb.filled();
                if got.is_empty() {
                    return Poll::Ready(Ok(&[]));
                }
                me.buf.reserve_exact(DEFAULT_CAPACITY.max(got.len()));
                me.buf.extend_from_slice(got);
                return Poll::Ready(Ok(&me.buf[..]));
            }
            let spare = me.buf.spare_capacity_mut();
            let start = spare.as_ptr() as *const u8;
            let mut rb = ReadBuf::uninit(spare);
            ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
            let filled = rb.filled();
            // A reader may point the ReadBuf elsewhere (it is `&mut`): only
            // bytes written into our own spare capacity may be claimed.
            if filled.as_ptr() != start {
                return Poll::Ready(Err(io::Error::other("reader swapped the read buffer")));
            }
            let n = filled.len();
            #[allow(unsafe_code)]
            // SAFETY: `ReadBuf` only reports as filled bytes that were
            // initialised, and the check above makes sure that they are the
            // first `n` bytes of `buf`'s spare capacity, so `buf[..n]` is
            // initialised (and `n <= capacity`, which ReadBuf guarantees).
            unsafe {
                me.buf.set_len(n);
            }
        }
        Poll::Ready(Ok(&me.buf[me.pos..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let me = self.get_mut();
        me.pos = (me.pos + amt).min(me.buf.len());
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Reader<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(out.remaining());
        out.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

/// The capacity a reader made with none takes at its first read.
pub const DEFAULT_CAPACITY: usize = 4096;
/// The stack buffer a reader without a buffer waits with.
const STACK_READ: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn lines_then_a_larger_buffer_then_raw_bytes() {
        let (mut w, r) = tokio::io::duplex(64);
        let mut r = Reader::with_capacity(8, r);
        let writer = tokio::spawn(async move {
            w.write_all(b"EHLO a.test\r\nDATA\r\n")
                .await
                .expect("write");
            w.write_all(&[b'x'; 1000]).await.expect("write");
            w.write_all(b"\r\n.\r\n").await.expect("write");
        });
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).await.expect("read");
        assert_eq!(line, b"EHLO a.test\r\n");
        line.clear();
        r.read_until(b'\n', &mut line).await.expect("read");
        assert_eq!(line, b"DATA\r\n");
        let kept = r.buffer().to_vec();
        r.reserve(4096);
        assert!(r.capacity() >= 4096);
        assert_eq!(r.buffer(), &kept[..], "growing keeps what is buffered");
        let mut body = Vec::new();
        r.read_to_end(&mut body).await.expect("read");
        writer.await.expect("writer");
        assert_eq!(body.len(), 1005);
        assert!(body.ends_with(b"x\r\n.\r\n"));
        assert!(r.fill_buf().await.expect("eof").is_empty());
    }

    #[tokio::test]
    async fn a_reader_made_empty_allocates_when_bytes_come() {
        let (mut w, r) = tokio::io::duplex(8192);
        let mut r = Reader::with_capacity(0, r);
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), r.fill_buf()).await;
        assert!(waiting.is_err(), "blocked");
        assert_eq!(r.capacity(), 0, "nothing while nothing comes");
        // More than the stack buffer at once: all of it arrives.
        w.write_all(&[b'a'; 3000]).await.expect("write");
        w.write_all(b"\n").await.expect("write");
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).await.expect("read");
        assert_eq!(line.len(), 3001);
        assert!(r.capacity() >= DEFAULT_CAPACITY);
        drop(w);
        assert!(r.fill_buf().await.expect("eof").is_empty());
    }
}
