//! Appending a blob's bytes to a file without holding up the async threads.
//!
//! Chunks gather into a batch of about [`BATCH`] bytes; a full batch is written by one
//! `writev` on the blocking pool while the next one gathers. Bytes counted in
//! [`BlobWriter::written`] are in the file for any reader; a writer made
//! [`BlobWriter::reporting`] also tells how long the file is after each batch, from the
//! blocking pool, without waiting for the next one to start. After each batch the kernel is
//! asked to start writing it to disk, so that the `fdatasync` at the end finds little
//! left to do.
//!
//! A writer made [`BlobWriter::direct`] writes whole blocks straight to the disk
//! (`O_DIRECT`), from one aligned buffer, when the file system takes it: the page cache's
//! copy and bookkeeping are skipped for bytes nobody reads soon (a peer's copy of a blob).
//! The last partial block is written through the page cache.

use crate::file_io::blocking;
use bytes::Bytes;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Bytes gathered before one write.
const BATCH: usize = 1 << 20;

/// The block size direct writes are aligned to.
const ALIGN: usize = 4096;

type Pending = JoinHandle<(File, Option<Vec<u8>>, io::Result<()>)>;

/// Told the file's length after each batch is in it.
/// Told the file's length after each batch, and the batch's chunks (the bytes just
/// written before that length).
pub(crate) type Report = Arc<dyn Fn(u64, &[Bytes]) + Send + Sync>;

/// Appends to one file (opened for appending), a batch at a time.
pub(crate) struct BlobWriter {
    /// The file, while no batch is being written.
    file: Option<File>,
    /// The batch being written, and how long it is.
    writing: Option<(Pending, u64)>,
    batch: Vec<Bytes>,
    batch_len: usize,
    /// Bytes in the file.
    written: u64,
    report: Option<Report>,
    /// Whole blocks are written with `O_DIRECT`.
    direct: bool,
    /// The buffer they are copied into while no batch is being written.
    spare: Option<Vec<u8>>,
}

impl BlobWriter {
    /// A writer appending to `file`, which holds `len` bytes already.
    pub(crate) fn new(file: File, len: u64) -> BlobWriter {
        BlobWriter {
            file: Some(file),
            writing: None,
            batch: Vec::new(),
            batch_len: 0,
            written: len,
            report: None,
            direct: false,
            spare: None,
        }
    }

    /// Writes whole blocks with `O_DIRECT` when the file is at a block boundary and its
    /// file system takes it; otherwise (or on any doubt) through the page cache.
    pub(crate) fn direct(mut self) -> BlobWriter {
        let aligned = self.written.is_multiple_of(ALIGN as u64);
        if let Some(file) = self.file.as_ref().filter(|_| aligned) {
            self.direct = set_direct(file, true).is_ok();
        }
        self
    }

    /// Has `report` told the file's length after each batch.
    pub(crate) fn reporting(mut self, report: Report) -> BlobWriter {
        self.report = Some(report);
        self
    }

    /// Appends `chunk`; it is in the file once a report counts it, or after a flush.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        // An empty chunk (a stream's empty last message) writes nothing: a batch of only
        // empty slices would make `write_vectored` return 0, taken for a full disk.
        if chunk.is_empty() {
            return Ok(());
        }
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        while self.batch_len >= BATCH {
            self.submit().await?;
        }
        Ok(())
    }

    /// Writes every byte given so far to the file.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.submit().await?;
        while self.direct && self.batch_len >= ALIGN {
            self.submit().await?;
        }
        self.finish_pending().await?;
        if self.direct && self.batch_len > 0 {
            // The last partial block: through the page cache, and so is anything after
            // it (the file no longer ends on a block boundary).
            self.direct = false;
            set_direct(self.file.as_ref().expect("no batch in flight"), false)?;
            self.submit().await?;
            self.finish_pending().await?;
        }
        Ok(())
    }

    /// Writes every byte given so far and makes the file's data durable; returns the file.
    pub(crate) async fn sync(mut self) -> io::Result<File> {
        self.flush().await?;
        let file = self.file.take().expect("no batch in flight after a flush");
        blocking(move || file.sync_data().map(|()| file)).await
    }

    /// Writes every byte given so far and returns the file, not synced.
    pub(crate) async fn into_file(mut self) -> io::Result<File> {
        self.flush().await?;
        Ok(self.file.take().expect("no batch in flight after a flush"))
    }

    /// Waits for the batch being written, then starts writing the gathered one.
    async fn submit(&mut self) -> io::Result<()> {
        self.finish_pending().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let (batch, buffer) = if self.direct {
            // Whole blocks only; the rest waits for more bytes or the flush. The buffer
            // holds a batch and the slack to align it.
            let whole = (self.batch_len / ALIGN * ALIGN).min(BATCH);
            if whole == 0 {
                return Ok(());
            }
            let buffer = self.spare.take().unwrap_or_else(|| vec![0; BATCH + ALIGN]);
            (self.take_front(whole), Some(buffer))
        } else {
            self.batch_len = 0;
            (std::mem::take(&mut self.batch), None)
        };
        let len: u64 = batch.iter().map(|b| b.len() as u64).sum();
        let mut file = self.file.take().expect("no batch in flight");
        // The batch in flight (if any) was waited for: the file ends here.
        let at = self.written;
        let report = self.report.clone();
        let task = tokio::task::spawn_blocking(move || {
            let (buffer, written) = match buffer {
                Some(mut buffer) => {
                    let mut r = write_aligned(&mut file, &batch, &mut buffer);
                    if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
                        // The file system took O_DIRECT but refuses these blocks (nothing
                        // was written): through the page cache from here on.
                        r = set_direct(&file, false).and_then(|()| write_all(&mut file, &batch));
                    }
                    (Some(buffer), r)
                }
                None => (None, write_all(&mut file, &batch)),
            };
            let result = written.map(|()| {
                if let Some(report) = report {
                    report(at + len, &batch);
                }
                start_writeback(&file, at, len);
            });
            (file, buffer, result)
        });
        self.writing = Some((task, len));
        Ok(())
    }

    async fn finish_pending(&mut self) -> io::Result<()> {
        if let Some((task, len)) = self.writing.take() {
            let (file, buffer, result) = task.await.map_err(io::Error::other)?;
            self.file = Some(file);
            self.spare = buffer;
            result?;
            self.written += len;
        }
        Ok(())
    }

    /// The first `n` bytes of the batch (splitting a chunk if need be); the rest stays.
    fn take_front(&mut self, n: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut left = n;
        while left > 0 {
            let first = &mut self.batch[0];
            if first.len() <= left {
                left -= first.len();
                out.push(self.batch.remove(0));
            } else {
                out.push(first.split_to(left));
                left = 0;
            }
        }
        self.batch_len -= n;
        out
    }
}

/// Copies `chunks` (whole blocks) into the aligned part of `buffer` and writes them with
/// one direct write.
fn write_aligned(file: &mut File, chunks: &[Bytes], buffer: &mut [u8]) -> io::Result<()> {
    let start = buffer.as_ptr().align_offset(ALIGN);
    let mut end = start;
    for c in chunks {
        buffer[end..end + c.len()].copy_from_slice(c);
        end += c.len();
    }
    file.write_all(&buffer[start..end])
}

/// Turns `O_DIRECT` on or off for `file`.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on an open descriptor; they touch no memory of ours.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, _on: bool) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Writes every byte of `chunks`, in order.
fn write_all(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Asks the kernel to start writing `len` bytes at `at` to disk, without waiting. Only a
/// hint: durability comes from the `fdatasync` at the end.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor; it touches no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            at as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _at: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_every_chunk_in_order_and_reports_only_what_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"head").unwrap();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let reported = Arc::new(std::sync::Mutex::new(Vec::new()));
        let report: Report = {
            let (path, reported) = (path.clone(), reported.clone());
            Arc::new(move |len, _| {
                let in_file = std::fs::metadata(&path).unwrap().len();
                assert!(
                    len <= in_file,
                    "reported {len} bytes, the file has {in_file}"
                );
                reported.lock().unwrap().push(len);
            })
        };
        let mut w = BlobWriter::new(file, 4).reporting(report);
        let mut expected = b"head".to_vec();
        for i in 0..40u8 {
            let chunk = vec![i; 100 * 1024 + usize::from(i)];
            expected.extend_from_slice(&chunk);
            w.write(Bytes::from(chunk)).await.unwrap();
        }
        w.sync().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        let reported = reported.lock().unwrap();
        assert!(reported.len() > 1, "one report per batch: {reported:?}");
        assert!(reported.windows(2).all(|w| w[0] < w[1]), "{reported:?}");
        assert_eq!(reported.last().copied(), Some(expected.len() as u64));
    }

    #[tokio::test]
    async fn direct_writes_keep_every_byte_in_order_whatever_the_chunk_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let reported = Arc::new(std::sync::Mutex::new(Vec::new()));
        let report: Report = {
            let reported = reported.clone();
            Arc::new(move |len, _| reported.lock().unwrap().push(len))
        };
        let mut w = BlobWriter::new(file, 0).direct().reporting(report);
        let direct = w.direct;
        let mut expected = Vec::new();
        // Odd sizes, one chunk larger than a batch, and a partial block at the end.
        for (i, size) in [1usize, 4095, 4097, 3 << 20, 100 * 1024 + 7, 12_345]
            .iter()
            .enumerate()
        {
            let chunk: Vec<u8> = (0..*size).map(|j| (i * 31 + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            w.write(Bytes::from(chunk)).await.unwrap();
        }
        w.sync().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected, "direct: {direct}");
        let reported = reported.lock().unwrap();
        assert!(reported.windows(2).all(|w| w[0] < w[1]), "{reported:?}");
        assert_eq!(reported.last().copied(), Some(expected.len() as u64));
        if direct {
            // Every report but the last is of whole blocks.
            let (last, blocks) = reported.split_last().unwrap();
            assert!(
                blocks.iter().all(|r| r.is_multiple_of(ALIGN as u64)),
                "{reported:?}"
            );
            assert_eq!(*last, expected.len() as u64);
        }
    }

    #[tokio::test]
    async fn empty_chunks_write_nothing_and_fail_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let mut w = BlobWriter::new(file, 0);
        w.write(Bytes::new()).await.unwrap();
        w.write(Bytes::from_static(b"ab")).await.unwrap();
        w.write(Bytes::new()).await.unwrap();
        w.flush().await.unwrap();
        w.write(Bytes::new()).await.unwrap();
        w.sync().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"ab");
    }
}
