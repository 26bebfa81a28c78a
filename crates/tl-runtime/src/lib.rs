//! `tl-runtime`: model import through ONNX Runtime, the only crate that talks to it.
//!
//! - [`Runtime::init`] finds the ONNX Runtime shared library (`ORT_DYLIB_PATH`, else
//!   the copy `tl models fetch onnxruntime` puts under `TL_HOME/runtimes/`), resolves
//!   the requested [`Device`] *before* the first ONNX Runtime call (one library per
//!   process), and creates the process-wide environment. A missing library is an
//!   error that names the command that fetches it, never a panic.
//! - [`Session`] wraps an ONNX Runtime session: thread count, graph optimisation
//!   level, input/output metadata, shape checks before a run, batched runs that
//!   return `ndarray` arrays, and the execution provider that actually runs it.
//!
//! ```no_run
//! use tl_runtime::{Runtime, RuntimeOptions, Session, SessionOptions, Input};
//! use ndarray::ArrayD;
//!
//! let rt = Runtime::init(&RuntimeOptions::default())?;
//! let mut session = Session::from_file(rt, "model.onnx".as_ref(), &SessionOptions::default())?;
//! let x = ArrayD::<f32>::zeros(vec![1, 3, 224, 224]);
//! let outputs = session.run(&[("input", Input::F32(x.view()))], &["logits"])?;
//! println!("{:?} on {}", outputs["logits"].shape(), session.provider());
//! # Ok::<(), tl_runtime::Error>(())
//! ```

mod cuda;
mod device;
mod dl;
mod elf;
mod error;
pub mod inspect;
mod library;
mod session;

pub use cuda::{
    CUDA_LIBRARIES_ID, CudaSupport, GpuInfo, LINKED_BY_PROVIDER, LibraryCheck, LibrarySearch,
    PROVIDER_LIBRARY, cuda_support, support_with,
};
pub use device::{AutoChoice, Provider, ResolvedDevice};
pub use elf::{DynamicInfo, dynamic_info};
pub use error::{Error, Result};
pub use library::{LibraryStatus, locate_library};
pub use session::{Input, OptLevel, Session, SessionOptions, TensorInfo};

use std::{path::PathBuf, sync::OnceLock};

use tl_core::Device;

/// Registry id of the CPU build of ONNX Runtime.
pub const CPU_RUNTIME_ID: &str = "onnxruntime";
/// Registry id of the CUDA build of ONNX Runtime.
pub const CUDA_RUNTIME_ID: &str = "onnxruntime-cuda";
/// The ONNX Runtime version `tl` is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// Options for [`Runtime::init`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RuntimeOptions {
    pub device: Device,
    /// `TL_HOME`; `None` means [`tl_core::home::tl_home`].
    pub home: Option<PathBuf>,
}

impl RuntimeOptions {
    /// Options for `device`.
    pub fn device(device: Device) -> Self {
        Self { device, home: None }
    }
    /// Uses `home` as `TL_HOME`.
    #[must_use]
    pub fn with_home(mut self, home: PathBuf) -> Self {
        self.home = Some(home);
        self
    }
}

/// The process-wide ONNX Runtime: one library, one environment, one device.
#[derive(Debug)]
pub struct Runtime {
    library: PathBuf,
    version: String,
    resolved: ResolvedDevice,
    requested: Device,
    environment: ort::environment::Environment,
    /// Why `auto` fell back to the CPU when a session was made, until reported.
    fallback: std::sync::Mutex<Option<String>>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

impl Runtime {
    /// Loads ONNX Runtime for `opts.device` (once per process) and returns it.
    ///
    /// A second call with a different device is an error: a process holds one
    /// ONNX Runtime library.
    pub fn init(opts: &RuntimeOptions) -> Result<&'static Runtime> {
        if let Some(rt) = RUNTIME.get() {
            if rt.requested != opts.device {
                return Err(Error::AlreadyInitialised {
                    current: rt.requested,
                    requested: opts.device,
                });
            }
            return Ok(rt);
        }
        let home = match &opts.home {
            Some(h) => h.clone(),
            None => tl_core::home::tl_home()?,
        };
        let mut resolved = device::resolve(opts.device, &home)?;
        // The NVIDIA libraries first, so that the provider finds them by soname.
        if let Some(Err(reason)) = resolved.cuda.as_ref().map(CudaSupport::preload) {
            if opts.device != Device::Auto {
                return Err(Error::CudaUnavailable {
                    requested: opts.device,
                    reason,
                });
            }
            resolved = device::cpu_fallback(&home, &reason)?;
        }
        let library = resolved.library.clone();
        let environment = ort::init_from(&library)
            .map_err(|e| Error::LibraryLoad {
                path: library.clone(),
                reason: e.to_string(),
            })?
            .with_name("tl")
            .with_telemetry(false)
            .build()
            .map_err(|e| Error::LibraryLoad {
                path: library.clone(),
                reason: e.to_string(),
            })?;
        let version = library::version_of(&library);
        let rt = Runtime {
            library,
            version,
            resolved,
            requested: opts.device,
            environment,
            fallback: std::sync::Mutex::new(None),
        };
        // A concurrent init may have won the race; either value describes the same library.
        let _ = RUNTIME.set(rt);
        Ok(RUNTIME.get().expect("just set"))
    }

    /// The runtime if [`Runtime::init`] already ran in this process.
    pub fn get() -> Option<&'static Runtime> {
        RUNTIME.get()
    }

    pub(crate) fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }

    /// Path of the loaded library.
    pub fn library(&self) -> &std::path::Path {
        &self.library
    }

    /// ONNX Runtime version, as reported by the library.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The device the user asked for.
    pub fn requested(&self) -> Device {
        self.requested
    }

    /// The device sessions will run on, and why it was chosen.
    pub fn device(&self) -> &ResolvedDevice {
        &self.resolved
    }

    /// `auto`'s fall back to the CPU when making a session with CUDA failed after the
    /// library loaded; returned once, for the caller to report.
    pub fn take_fallback(&self) -> Option<AutoChoice> {
        let reason = self.fallback.lock().ok()?.take()?;
        Some(AutoChoice {
            provider: Provider::Cpu,
            reason: Some(reason),
            after_load: true,
        })
    }

    /// Records the reason of a fall back to the CPU (the first one is kept).
    pub(crate) fn record_fallback(&self, reason: String) {
        if let Ok(mut f) = self.fallback.lock() {
            f.get_or_insert(reason);
        }
    }

    /// Execution providers compiled into the loaded library (`CPUExecutionProvider`, ...).
    pub fn available_providers(&self) -> Vec<&'static str> {
        device::available_providers()
    }
}
