//! A connection's socket, the same operations over both runtimes (io_uring and epoll).

use bytes::Bytes;

/// The socket operations a connection needs, for both runtimes.
pub trait Conn: 'static {
    /// Reads into `buf` (its length is the room); returns the bytes read (0 at EOF).
    fn read(
        &self,
        buf: Vec<u8>,
    ) -> impl std::future::Future<Output = (std::io::Result<usize>, Vec<u8>)>;
    /// Writes all of `buf`.
    fn write_all(&self, buf: Bytes) -> impl std::future::Future<Output = std::io::Result<()>>;
    /// Writes all of `bufs`, in order, with as few (vectored) writes as the socket takes
    /// (by default, one after another).
    fn write_all_vectored(
        &self,
        bufs: Vec<Bytes>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> {
        async move {
            for buf in bufs {
                self.write_all(buf).await?;
            }
            Ok(())
        }
    }
    /// Closes both directions.
    fn close(&self);
}

pub(super) struct UringConn(pub(super) tokio_uring::net::TcpStream);

impl Conn for UringConn {
    async fn read(&self, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        self.0.read(buf).await
    }

    async fn write_all(&self, buf: Bytes) -> std::io::Result<()> {
        self.0.write_all(buf).await.0
    }

    async fn write_all_vectored(&self, mut bufs: Vec<Bytes>) -> std::io::Result<()> {
        while !bufs.is_empty() {
            // The kernel refuses a writev of more than 1024 buffers (EINVAL), and
            // tokio-uring passes them all: one reply may carry thousands of batches.
            let rest = bufs.split_off(bufs.len().min(WRITE_BUFS_MAX));
            let (written, mut returned) = self.0.writev(bufs).await;
            returned.extend(rest);
            bufs = returned;
            consume(&mut bufs, written?)?;
        }
        Ok(())
    }

    fn close(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

pub(super) struct TokioConn(pub(super) tokio::net::TcpStream);

impl Conn for TokioConn {
    async fn read(&self, mut buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        loop {
            if let Err(e) = self.0.readable().await {
                return (Err(e), buf);
            }
            match self.0.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return (r, buf),
            }
        }
    }

    async fn write_all_vectored(&self, mut bufs: Vec<Bytes>) -> std::io::Result<()> {
        while !bufs.is_empty() {
            self.0.writable().await?;
            let slices: Vec<std::io::IoSlice<'_>> =
                bufs.iter().map(|b| std::io::IoSlice::new(b)).collect();
            match self.0.try_write_vectored(&slices) {
                Ok(n) => consume(&mut bufs, n)?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn write_all(&self, buf: Bytes) -> std::io::Result<()> {
        let mut at = 0;
        while at < buf.len() {
            self.0.writable().await?;
            match self.0.try_write(&buf[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn close(&self) {
        // Dropping the stream closes it; shut the write side now so the peer sees EOF.
        let _ = socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both);
    }
}

/// At most this many buffers in one vectored write (the kernel takes up to 1024).
pub(super) const WRITE_BUFS_MAX: usize = 256;
/// Replies are gathered into one write until they reach this many bytes.
pub(super) const WRITE_BYTES_MAX: usize = 1 << 20;

/// Drops the first `written` bytes of `bufs` (a vectored write's progress).
fn consume(bufs: &mut Vec<Bytes>, mut written: usize) -> std::io::Result<()> {
    if written == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    let done = bufs
        .iter()
        .take_while(|b| {
            let whole = written >= b.len();
            if whole {
                written -= b.len();
            }
            whole
        })
        .count();
    bufs.drain(..done);
    if let Some(first) = bufs.first_mut() {
        *first = first.slice(written..);
    }
    Ok(())
}

/// Reads exactly `n` bytes, or fails at EOF.
pub(super) async fn read_exact<C: Conn>(conn: &C, n: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (r, buf) = conn.read(vec![0u8; n - out.len()]).await;
        match r? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            got => out.extend_from_slice(&buf[..got]),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vectored write's progress drops whole buffers, then the front of a partial one.
    #[test]
    fn consume_drops_what_was_written() {
        let mut bufs: Vec<Bytes> =
            vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de"), Bytes::from_static(b"f")];
        consume(&mut bufs, 4).expect("progress");
        assert_eq!(bufs, vec![Bytes::from_static(b"e"), Bytes::from_static(b"f")]);
        consume(&mut bufs, 1).expect("progress");
        assert_eq!(bufs, vec![Bytes::from_static(b"f")]);
        consume(&mut bufs, 1).expect("progress");
        assert!(bufs.is_empty());
        let mut bufs = vec![Bytes::from_static(b"xyz")];
        assert_eq!(
            consume(&mut bufs, 0).expect_err("no progress").kind(),
            std::io::ErrorKind::WriteZero
        );
    }
}
