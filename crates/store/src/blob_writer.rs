//! Appending a blob's bytes to a file without holding up the async threads.
//!
//! Chunks gather into a batch of about [`BATCH`] bytes; a full batch is written by one
//! `writev` on the blocking pool while the next one gathers. Bytes counted in
//! [`BlobWriter::written`] are in the file for any reader; a writer made
//! [`BlobWriter::reporting`] also tells how long the file is after each batch, from the
//! blocking pool, without waiting for the next one to start. After each batch the kernel is
//! asked to start writing it to disk, so that the `fdatasync` at the end finds little
//! left to do.

use crate::files::blocking;
use bytes::Bytes;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Bytes gathered before one write.
const BATCH: usize = 1 << 20;

type Pending = JoinHandle<(File, io::Result<()>)>;

/// Told the file's length after each batch is in it.
pub(crate) type Report = Arc<dyn Fn(u64) + Send + Sync>;

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
        }
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
        if self.batch_len >= BATCH {
            self.submit().await?;
        }
        Ok(())
    }

    /// Writes every byte given so far to the file.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.submit().await?;
        self.finish_pending().await
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
        let batch = std::mem::take(&mut self.batch);
        let len = std::mem::take(&mut self.batch_len) as u64;
        let mut file = self.file.take().expect("no batch in flight");
        // The batch in flight (if any) was waited for: the file ends here.
        let at = self.written;
        let report = self.report.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = write_all(&mut file, &batch).map(|()| {
                if let Some(report) = report {
                    report(at + len);
                }
                start_writeback(&file, at, len);
            });
            (file, result)
        });
        self.writing = Some((task, len));
        Ok(())
    }

    async fn finish_pending(&mut self) -> io::Result<()> {
        if let Some((task, len)) = self.writing.take() {
            let (file, result) = task.await.map_err(io::Error::other)?;
            self.file = Some(file);
            result?;
            self.written += len;
        }
        Ok(())
    }
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
            Arc::new(move |len| {
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
