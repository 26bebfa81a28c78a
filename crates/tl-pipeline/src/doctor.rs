//! `doctor`: what is installed and what is missing: the ONNX Runtime library and its
//! providers, CUDA readiness library by library, the cache and what is fetched.

use std::path::Path;

use serde::Serialize;
use tl_hub::{Fetcher, Registry};
use tl_runtime::{CPU_RUNTIME_ID, Runtime, RuntimeOptions, cuda_support, locate_library};

use crate::Result;

/// Schema version of the doctor's report.
pub const DOCTOR_SCHEMA_VERSION: u32 = 1;

/// What the doctor found.
#[derive(Debug, Serialize)]
pub struct Doctor {
    pub schema_version: u32,
    pub tl_version: &'static str,
    pub tl_home: String,
    pub tl_home_bytes: u64,
    pub library: Option<String>,
    pub library_error: Option<String>,
    pub onnxruntime_version: Option<String>,
    pub providers: Vec<&'static str>,
    pub cuda: Cuda,
    pub fetched: Vec<String>,
    pub not_fetched: Vec<String>,
}

/// CUDA readiness.
#[derive(Debug, Serialize)]
pub struct Cuda {
    pub feature: bool,
    pub runtime: Option<String>,
    pub provider_library: Option<String>,
    /// Every library the provider links or opens, and where it was found.
    pub libraries: Vec<tl_runtime::LibraryCheck>,
    pub driver: Option<String>,
    pub device: Option<String>,
    /// The GPUs the driver reports, or why it cannot say.
    pub gpus: Option<Result<Vec<tl_runtime::GpuInfo>, String>>,
    pub ready: bool,
    pub blocker: Option<String>,
}

/// Looks at the installation under `home` (loads ONNX Runtime when its library is found).
pub fn doctor(home: &Path) -> Result<Doctor> {
    let registry = Registry::builtin()?;
    let (library, library_error) = match locate_library(home, CPU_RUNTIME_ID) {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (version, providers) = if library.is_some() {
        match Runtime::init(&RuntimeOptions::default().with_home(home.to_path_buf())) {
            Ok(rt) => (Some(rt.version().to_string()), rt.available_providers()),
            Err(e) => (Some(format!("failed to load: {e}")), vec![]),
        }
    } else {
        (None, vec![])
    };
    let cuda = cuda_support(home);
    let blocker = cuda.blocker();
    let show = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let (fetched, not_fetched): (Vec<_>, Vec<_>) = registry
        .entries
        .iter()
        .partition(|e| Fetcher::is_present(home, e));
    Ok(Doctor {
        schema_version: DOCTOR_SCHEMA_VERSION,
        tl_version: tl_core::TL_VERSION,
        tl_home: home.display().to_string(),
        tl_home_bytes: tl_core::home::dir_size(home),
        library: show(&library),
        library_error,
        onnxruntime_version: version,
        providers,
        cuda: Cuda {
            feature: cuda.feature,
            runtime: show(&cuda.runtime),
            provider_library: show(&cuda.provider_library),
            libraries: cuda.libraries.clone(),
            driver: show(&cuda.driver),
            device: show(&cuda.device_node),
            gpus: cuda.gpus.clone(),
            ready: blocker.is_none(),
            blocker,
        },
        fetched: fetched.iter().map(|e| e.id.clone()).collect(),
        not_fetched: not_fetched.iter().map(|e| e.id.clone()).collect(),
    })
}
