//! Progress reports of an import, for a caller that draws them (the CLI
//! draws bars on a terminal) or ignores them.

use std::io::{self, Read};

use super::unpack::UnpackStats;

/// Outcome of one layer of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerOutcome {
    /// The layer was unpacked into the store.
    Unpacked(UnpackStats),
    /// The store already had the layer, so its blob was not read.
    Reused,
}

/// Receives progress reports of an import. Every method defaults to doing
/// nothing.
pub trait Progress {
    /// Layer `index` of `count` (from 0, bottom first) starts. `size` is
    /// the number of bytes that will be read for it, when known.
    fn layer_started(&self, _index: usize, _count: usize, _label: &str, _size: Option<u64>) {}
    /// `bytes` more bytes of the current layer were read.
    fn bytes_read(&self, _bytes: u64) {}
    /// Layer `index` is in the store.
    fn layer_finished(&self, _index: usize, _outcome: LayerOutcome) {}
}

/// Ignores every report.
pub struct NoProgress;

impl Progress for NoProgress {}

/// A reader that reports the bytes read through it.
pub(crate) struct ProgressReader<'a, R> {
    pub inner: R,
    pub progress: &'a dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buf)?;
        self.progress.bytes_read(count as u64);
        Ok(count)
    }
}
