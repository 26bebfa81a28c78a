//! Resolving `--device` before ONNX Runtime is loaded.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use tl_core::Device;

use crate::{CPU_RUNTIME_ID, CUDA_RUNTIME_ID, Error, Result, library};

/// The execution provider a session actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda { id: u32 },
}

impl Provider {
    /// ONNX Runtime's name for it.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda { .. } => "CUDAExecutionProvider",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Cpu => f.write_str("cpu (CPUExecutionProvider)"),
            Provider::Cuda { id } => write!(f, "cuda:{id} (CUDAExecutionProvider)"),
        }
    }
}

/// The outcome of resolving a requested [`Device`].
#[derive(Debug, Clone)]
pub struct ResolvedDevice {
    pub provider: Provider,
    /// The ONNX Runtime library for that provider.
    pub library: PathBuf,
    /// Why `auto` chose what it chose.
    pub note: Option<String>,
}

/// What this build and machine offer for CUDA, for `tl doctor` and `--device auto`.
#[derive(Debug, Clone)]
pub struct CudaSupport {
    /// Built with the `cuda` feature.
    pub feature: bool,
    /// The CUDA build of ONNX Runtime, if fetched.
    pub runtime: Option<PathBuf>,
    /// `libonnxruntime_providers_cuda.so` beside it.
    pub provider_library: Option<PathBuf>,
    /// The NVIDIA driver library `libcuda.so.1`.
    pub driver: Option<PathBuf>,
    /// A GPU device node (`/dev/nvidia0`, ...).
    pub device_node: Option<PathBuf>,
}

impl CudaSupport {
    /// `None` when CUDA can be attempted, else the first reason it cannot.
    pub fn blocker(&self) -> Option<String> {
        if !self.feature {
            return Some("this `tl` was built without the `cuda` feature (rebuild with `cargo build --release -p tl-cli --features cuda`)".into());
        }
        if self.runtime.is_none() {
            return Some(format!(
                "the CUDA build of ONNX Runtime is not installed (fetch it with `tl models fetch {CUDA_RUNTIME_ID}`)"
            ));
        }
        if self.provider_library.is_none() {
            return Some(
                "libonnxruntime_providers_cuda.so is missing beside the CUDA runtime library"
                    .into(),
            );
        }
        if self.driver.is_none() {
            return Some("no NVIDIA driver found (libcuda.so.1 is not on this machine)".into());
        }
        if self.device_node.is_none() {
            return Some("no NVIDIA GPU found (no /dev/nvidia* device)".into());
        }
        None
    }
}

/// Inspects the build and the machine for CUDA, without loading anything.
pub fn cuda_support(home: &Path) -> CudaSupport {
    let runtime = library::locate_library(home, CUDA_RUNTIME_ID).ok();
    let provider_library = runtime
        .as_ref()
        .and_then(|p| p.parent())
        .map(|d| d.join("libonnxruntime_providers_cuda.so"))
        .filter(|p| p.is_file());
    let mut lib_dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    lib_dirs.extend(
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/usr/local/cuda/lib64",
            "/usr/lib/wsl/lib",
        ]
        .map(PathBuf::from),
    );
    let driver = lib_dirs
        .iter()
        .map(|d| d.join("libcuda.so.1"))
        .find(|p| p.exists());
    let device_node = (0..16)
        .map(|i| PathBuf::from(format!("/dev/nvidia{i}")))
        .find(|p| p.exists());
    CudaSupport {
        feature: cfg!(feature = "cuda"),
        runtime,
        provider_library,
        driver,
        device_node,
    }
}

/// Resolves the device to a provider and library, before ONNX Runtime is loaded.
pub(crate) fn resolve(device: Device, home: &Path) -> Result<ResolvedDevice> {
    let cpu = || -> Result<PathBuf> { library::locate_library(home, CPU_RUNTIME_ID) };
    match device {
        Device::Cpu => Ok(ResolvedDevice {
            provider: Provider::Cpu,
            library: cpu()?,
            note: None,
        }),
        Device::Cuda { id } => {
            let support = cuda_support(home);
            if let Some(reason) = support.blocker() {
                return Err(Error::CudaUnavailable {
                    requested: device,
                    reason,
                });
            }
            Ok(ResolvedDevice {
                provider: Provider::Cuda { id },
                library: support.runtime.expect("checked by blocker"),
                note: None,
            })
        }
        Device::Auto => {
            let support = cuda_support(home);
            match support.blocker() {
                None => Ok(ResolvedDevice {
                    provider: Provider::Cuda { id: 0 },
                    library: support.runtime.expect("checked by blocker"),
                    note: Some("--device auto chose cuda:0".into()),
                }),
                Some(reason) => Ok(ResolvedDevice {
                    provider: Provider::Cpu,
                    library: cpu()?,
                    note: Some(format!("--device auto chose cpu: {reason}")),
                }),
            }
        }
    }
}

/// Execution providers compiled into the loaded library.
pub(crate) fn available_providers() -> Vec<&'static str> {
    use ort::ep::{self, ExecutionProvider};
    let mut out = Vec::new();
    // `ort` only exposes the providers whose cargo features are on.
    type Check = (&'static str, fn() -> ort::Result<bool>);
    let checks: Vec<Check> = vec![
        ("CPUExecutionProvider", ep::CPU::is_available),
        #[cfg(feature = "cuda")]
        ("CUDAExecutionProvider", ep::CUDA::is_available),
    ];
    for (name, check) in checks {
        if check().unwrap_or(false) {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(feature = "cuda"))]
    fn cuda_without_the_feature_names_the_feature() {
        let home = tempfile::tempdir().unwrap();
        let err = resolve(Device::Cuda { id: 0 }, home.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--device cuda") && err.contains("`cuda` feature"),
            "{err}"
        );
    }

    #[test]
    #[cfg(feature = "cuda")]
    fn cuda_without_the_runtime_names_the_fetch_command() {
        let home = tempfile::tempdir().unwrap();
        let err = resolve(Device::Cuda { id: 0 }, home.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tl models fetch onnxruntime-cuda"), "{err}");
    }

    #[test]
    #[cfg(feature = "cuda")]
    fn cuda_with_the_runtime_but_no_driver_names_the_driver() {
        if std::env::var_os("ORT_DYLIB_PATH").is_some()
            || cuda_support(Path::new("/nonexistent")).driver.is_some()
        {
            return; // a machine with a driver tests the real path instead
        }
        let home = tempfile::tempdir().unwrap();
        let dir = tl_core::home::runtime_dir(home.path(), CUDA_RUNTIME_ID);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_cuda.so",
        ] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let err = resolve(Device::Cuda { id: 0 }, home.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no NVIDIA driver found"), "{err}");
        let auto = resolve(Device::Auto, home.path());
        // With no CPU runtime in this home either, auto reports the CPU library as missing.
        assert!(auto.is_err());
    }

    #[test]
    fn auto_falls_back_to_cpu_and_says_why() {
        if std::env::var_os("ORT_DYLIB_PATH").is_some() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let dir = tl_core::home::runtime_dir(home.path(), CPU_RUNTIME_ID);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        let r = resolve(Device::Auto, home.path()).unwrap();
        assert_eq!(r.provider, Provider::Cpu);
        let note = r.note.unwrap();
        assert!(note.starts_with("--device auto chose cpu:"), "{note}");
    }
}
