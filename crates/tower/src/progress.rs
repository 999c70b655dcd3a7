//! The progress bar of a delivery: bytes the site holds of the missing blobs, on stderr
//! (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};

/// Progress over the bytes of one delivery (several blobs may be in flight at once).
pub struct Progress {
    bar: ProgressBar,
    /// Bytes the site holds of the delivery's blobs, as far as we know.
    held: AtomicU64,
}

/// Progress of one blob within a [`Progress`].
pub struct BlobProgress<'a> {
    progress: &'a Progress,
    held: AtomicU64,
}

impl Progress {
    /// A bar over `total` bytes.
    pub fn new(total: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        Progress {
            bar,
            held: AtomicU64::new(0),
        }
    }

    /// Progress of one more blob, at 0 bytes.
    pub fn blob(&self) -> BlobProgress<'_> {
        BlobProgress {
            progress: self,
            held: AtomicU64::new(0),
        }
    }

    /// A short message next to the bar (what is being sent).
    pub fn message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Prints a line on stderr without tearing the bar.
    pub fn note(&self, line: &str) {
        self.bar.suspend(|| eprintln!("towerctl: {line}"));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl BlobProgress<'_> {
    /// The blob holds `bytes` at the site.
    pub fn set(&self, bytes: u64) {
        let before = self.held.swap(bytes, Ordering::Relaxed);
        let total = &self.progress.held;
        let now = if bytes >= before {
            total.fetch_add(bytes - before, Ordering::Relaxed) + (bytes - before)
        } else {
            total.fetch_sub(before - bytes, Ordering::Relaxed) - (before - bytes)
        };
        self.progress.bar.set_position(now);
    }

    /// Prints a line on stderr without tearing the bar.
    pub fn note(&self, line: &str) {
        self.progress.note(line);
    }
}

impl crate::transfer::Meter for BlobProgress<'_> {
    fn set(&self, bytes: u64) {
        BlobProgress::set(self, bytes);
    }

    fn note(&self, line: &str) {
        BlobProgress::note(self, line);
    }
}
