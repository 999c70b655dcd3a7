//! Blocking reads of files, and the hand-off of blocking file work to tokio's blocking
//! pool: the bottom of the node's file code, which `files.rs`, `file_system.rs` and
//! `blob_writer.rs` build on.

use site_core::{Algorithm, DigestHasher};
use std::fs;
use std::io::{self, Read};
use std::path::Path;

/// Runs file work `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// `n` bytes of `file` at `pos`, read into a buffer that is not zeroed first (a peer's
/// copy of a 256 MiB layer would otherwise clear 256 MiB only to overwrite it); a file
/// that ends first is `UnexpectedEof`.
pub(crate) fn read_at(file: &std::fs::File, pos: u64, n: usize) -> io::Result<bytes::Bytes> {
    use std::os::fd::AsRawFd;
    let mut buf: Vec<u8> = Vec::with_capacity(n);
    while buf.len() < n {
        let done = buf.len();
        // SAFETY: the destination is the vector's spare capacity (`n - done` bytes from
        // its end), written by the kernel through a raw pointer; only the bytes it
        // reports written are then counted in the length.
        let got = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(done).cast(),
                n - done,
                (pos + done as u64) as libc::off_t,
            )
        };
        match got {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            // SAFETY: the kernel wrote `got` bytes right after the `done` already there.
            got => unsafe { buf.set_len(done + got as usize) },
        }
    }
    Ok(bytes::Bytes::from(buf))
}

/// The running `algorithm` hash of every byte of the file at `path`. Blocking.
pub(crate) fn hash_file(path: &Path, algorithm: Algorithm) -> io::Result<DigestHasher> {
    let mut file = fs::File::open(path)?;
    let mut hasher = DigestHasher::with(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hasher),
            n => hasher.update(&buf[..n]),
        }
    }
}
