//! Progress of long steps, reported to whoever called: libraries never draw bars or print;
//! a caller that shows progress (the CLI) implements [`Progress`].

/// What a step counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Dataset rows (images, texts).
    Rows,
    /// Bytes (downloads).
    Bytes,
}

/// Receives notes and the progress of long steps.
pub trait Progress: Send + Sync {
    /// A line worth showing a person.
    fn note(&self, text: &str) {
        let _ = text;
    }

    /// A long step of `total` units (unknown when none) begins; the meter it returns is
    /// advanced as the step goes and finished when it ends.
    fn start(&self, what: &str, unit: Unit, total: Option<u64>) -> Box<dyn Meter> {
        let _ = (what, unit, total);
        Box::new(Silent)
    }
}

/// The progress of one step.
pub trait Meter: Send + Sync {
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The step ended (finished or abandoned).
    fn finish(&self) {}
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

impl Meter for Silent {
    fn advance(&self, _: u64) {}
}

/// A reader that advances a meter by the bytes read.
#[derive(Debug)]
pub struct MeteredRead<'a, R> {
    inner: R,
    meter: &'a dyn Meter,
}

impl std::fmt::Debug for dyn Progress + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl std::fmt::Debug for dyn Meter + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter")
    }
}

impl<'a, R> MeteredRead<'a, R> {
    pub fn new(inner: R, meter: &'a dyn Meter) -> Self {
        Self { inner, meter }
    }
}

impl<R: std::io::Read> std::io::Read for MeteredRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Read, sync::atomic::AtomicU64};

    struct Count(AtomicU64);

    impl Meter for Count {
        fn advance(&self, n: u64) {
            self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn a_metered_reader_counts_every_byte_read() {
        let count = Count(AtomicU64::new(0));
        let mut r = MeteredRead::new(&[7u8; 1000][..], &count);
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).unwrap();
        assert_eq!(sink.len(), 1000);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 1000);
        // The silent default shows nothing and accepts every call.
        Silent.start("x", Unit::Rows, Some(3)).advance(3);
    }
}
