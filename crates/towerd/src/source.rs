//! A blob sent to a site from the tower's registry, at most at the rollout's per-site
//! rate. The registry streams what it holds; a blob it lacks it fetches from its
//! upstream as it streams it (once: a second site's send reads what the first brought).

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use site_core::Digest;
use site_delivery::exit::Error;
use site_delivery::transfer::{Source, UpstreamBlob};
use site_delivery::upstream::{ByteStream, Upstream};
use site_upstream::Reference;
use std::time::Duration;
use tokio::time::Instant;

/// A blob of the tower's registry.
pub struct RegistryBlob<'a> {
    /// The registry's client.
    pub client: &'a Upstream,
    /// The image's manifest there (any reference of its repository).
    pub reference: Reference,
    /// The blob.
    pub digest: &'a Digest,
    /// Bytes per second at most.
    pub rate: Option<u64>,
}

impl RegistryBlob<'_> {
    fn read(&self) -> UpstreamBlob<'_> {
        UpstreamBlob {
            upstream: self.client,
            reference: &self.reference,
            digest: self.digest,
        }
    }
}

impl Source for RegistryBlob<'_> {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<(ByteStream, u64), Error>> {
        Box::pin(async move {
            let (stream, skip) = self.read().open(offset).await?;
            Ok((throttle(stream, self.rate), skip))
        })
    }

    fn is_transient(&self, error: &Error) -> bool {
        self.read().is_transient(error)
    }

    fn read_error(&self, error: &std::io::Error) -> Error {
        self.read().read_error(error)
    }

    fn describe(&self) -> String {
        format!("{} of the tower's registry", self.read().describe())
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
