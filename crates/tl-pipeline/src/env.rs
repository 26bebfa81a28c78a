//! Where a run finds its files, how its models run, and whom it tells what it does.

use std::{path::PathBuf, sync::Arc};

use tl_core::{
    Device, Precision,
    progress::{Progress, Silent},
};
use tl_head::train::EpochLog;

/// Where and how a model runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compute {
    /// The device ONNX Runtime runs on (resolved before its first call).
    pub device: Device,
    /// Intra-op threads for ONNX Runtime (none: one per physical core).
    pub threads: Option<usize>,
    pub precision: Precision,
}

/// Receives what a run reports as it goes: notes and the progress of long steps (through
/// [`Progress`]) and training epochs. Libraries never print: the caller decides what a
/// person sees.
pub trait Observer: Progress {
    /// A training epoch ended (`epochs`: how many the run trains at most).
    fn epoch(&self, log: &EpochLog, epochs: usize) {
        let _ = (log, epochs);
    }

    /// The `auto` device chose a provider (when ONNX Runtime loaded, or after a session
    /// could not use CUDA).
    fn device(&self, choice: &tl_runtime::AutoChoice) {
        self.note(&format!("device {choice}"));
    }
}

impl Observer for Silent {}

/// The surroundings of a run: the cache directory, the compute settings and the
/// observer.
#[derive(Clone)]
pub struct Env {
    /// `TL_HOME`: fetched models and data, the feature store.
    pub home: PathBuf,
    pub compute: Compute,
    pub observer: Arc<dyn Observer>,
    /// How the run was invoked, recorded in manifests and reports (default: this
    /// process's arguments).
    pub command: Vec<String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("home", &self.home)
            .field("compute", &self.compute)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// CPU, default threads and precision, nothing reported.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            compute: Compute::default(),
            observer: Arc::new(Silent),
            command: std::env::args().collect(),
        }
    }

    /// The same surroundings reporting to another observer.
    #[must_use]
    pub fn observed(&self, observer: Arc<dyn Observer>) -> Self {
        Self {
            observer,
            ..self.clone()
        }
    }

    /// The same surroundings with other compute settings.
    #[must_use]
    pub fn with_compute(mut self, compute: Compute) -> Self {
        self.compute = compute;
        self
    }

    /// Tells the observer what the `auto` device chose, when ONNX Runtime loaded and
    /// when a session fell back to the CPU since; call it after making sessions.
    pub fn report_device(&self, rt: &tl_runtime::Runtime) {
        if let Some(choice) = &rt.device().note {
            self.observer.device(choice);
        }
        if let Some(choice) = rt.take_fallback() {
            self.observer.device(&choice);
        }
    }

    /// Tells the observer `text`.
    pub fn note(&self, text: impl AsRef<str>) {
        self.observer.note(text.as_ref());
    }

    /// The observer as the progress sink of the lower crates (extraction, fetching).
    pub fn progress(&self) -> Arc<dyn Progress> {
        self.observer.clone()
    }
}
