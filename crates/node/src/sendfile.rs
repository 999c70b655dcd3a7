//! A file's bytes to a TCP socket with `sendfile(2)`: from the page cache to the socket,
//! never through this process. The registry's plain listener sends blobs so, and a node
//! sends a peer its copy of a blob so on a cluster link without TLS.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// At most this many bytes per `sendfile` call, so that a read from a cold disk holds a
/// runtime thread only so long.
pub const STEP: usize = 1024 * 1024;

/// A non-blocking system call that writes to the socket (`call` returns what it returns:
/// bytes written, or -1 with `errno`), made when the socket has room, at most `stall`
/// after it last had.
pub async fn write_call(
    stream: &TcpStream,
    stall: Duration,
    mut call: impl FnMut() -> isize,
) -> io::Result<usize> {
    let io = stream.async_io(Interest::WRITABLE, || match call() {
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Ok(n as usize),
    });
    tokio::time::timeout(stall, io)
        .await
        .map_err(|_| stalled(stall))?
}

/// The error of a receiver that took nothing for `stall`.
pub fn stalled(stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the receiver took nothing for {} s", stall.as_secs()),
    )
}

/// Bytes `offset..offset + len` of `file` to the socket, in steps of at most [`STEP`]. A
/// file shorter than that is `UnexpectedEof`.
pub async fn send_file(
    stream: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    stall: Duration,
) -> io::Result<()> {
    let file_fd = file.as_raw_fd();
    let sock_fd = stream.as_raw_fd();
    let (mut offset, end) = (offset, offset + len);
    while offset < end {
        let step = ((end - offset) as usize).min(STEP);
        let n = write_call(stream, stall, || {
            let mut off = offset as libc::off_t;
            // SAFETY: both descriptors are open for the call's duration (the caller holds
            // the file and the socket); `off` is a valid pointer.
            unsafe { libc::sendfile(sock_fd, file_fd, &mut off, step) }
        })
        .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob file shorter than its recorded size",
            ));
        }
        offset += n as u64;
    }
    Ok(())
}

/// Asks the kernel to start reading `offset..offset + len` of `file` into the page cache
/// (without waiting), so that the next `sendfile` of a file not cached (a copy written
/// past the page cache) finds it there.
pub fn read_ahead(file: &std::fs::File, offset: u64, len: u64) {
    // SAFETY: the descriptor is open for the call's duration; the call only advises.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_WILLNEED,
        );
    }
}
