//! The progress bar of a delivery: bytes the site holds of the missing blobs, on stderr
//! (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};

/// Progress over the bytes of one delivery.
pub struct Progress {
    bar: ProgressBar,
    /// Bytes of the blobs already done.
    done: AtomicU64,
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
            done: AtomicU64::new(0),
        }
    }

    /// The current blob holds `bytes` at the site.
    pub fn set_blob(&self, bytes: u64) {
        self.bar
            .set_position(self.done.load(Ordering::Relaxed).saturating_add(bytes));
    }

    /// The current blob, of `size` bytes, is done: the next one starts.
    pub fn end_blob(&self, size: u64) {
        let done = self.done.fetch_add(size, Ordering::Relaxed) + size;
        self.bar.set_position(done);
    }

    /// A short message next to the bar (the blob being sent).
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
