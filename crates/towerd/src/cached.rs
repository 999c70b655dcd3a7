//! A blob served to a site from the tower's cache, at most at the rollout's per-site rate.

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use site_tower::exit::Error;
use site_tower::transfer::Source;
use site_tower::upstream::ByteStream;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncSeekExt;
use tokio::time::Instant;

/// Bytes read from the cache file at once (the rate cap is kept at this grain).
const READ: usize = 64 * 1024;

/// A whole, verified blob of the cache.
pub struct CachedBlob {
    /// Its file.
    pub path: PathBuf,
    /// Its digest, for messages.
    pub digest: String,
    /// Bytes per second at most.
    pub rate: Option<u64>,
}

impl Source for CachedBlob {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<(ByteStream, u64), Error>> {
        Box::pin(async move {
            let mut file = tokio::fs::File::open(&self.path)
                .await
                .map_err(|e| self.error(&e))?;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| self.error(&e))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, READ).boxed();
            Ok((throttle(stream, self.rate), 0))
        })
    }

    fn is_transient(&self, _: &Error) -> bool {
        false
    }

    fn read_error(&self, error: &std::io::Error) -> Error {
        self.error(error)
    }

    fn describe(&self) -> String {
        format!("cached blob {}", self.digest)
    }
}

impl CachedBlob {
    fn error(&self, e: &std::io::Error) -> Error {
        Error::Other(format!("tower cache: {}: {e}", self.path.display()))
    }
}

/// `stream` at most `rate` bytes per second (measured from its start).
pub fn throttle(stream: ByteStream, rate: Option<u64>) -> ByteStream {
    let Some(rate) = rate.filter(|r| *r > 0) else {
        return stream;
    };
    futures_util::stream::unfold(
        (stream, Instant::now(), 0u64),
        move |(mut stream, start, sent)| async move {
            let item = stream.next().await?;
            let sent = sent + item.as_ref().map_or(0, |b| b.len() as u64);
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
            Some((item, (stream, start, sent)))
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test(start_paused = true)]
    async fn throttle_keeps_the_rate() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..10).map(|_| Ok(Bytes::from(vec![0u8; 1000]))).collect();
        let start = Instant::now();
        let out: Vec<_> = throttle(futures_util::stream::iter(chunks).boxed(), Some(2000))
            .collect()
            .await;
        assert_eq!(out.len(), 10);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
