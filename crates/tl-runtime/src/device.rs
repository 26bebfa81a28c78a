//! Resolving `--device` before ONNX Runtime is loaded.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use tl_core::Device;

use crate::{CPU_RUNTIME_ID, Error, Result, cuda::cuda_support, library};

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
    /// What was found for CUDA, when the provider is CUDA (its NVIDIA libraries are
    /// loaded before ONNX Runtime).
    pub cuda: Option<crate::CudaSupport>,
}

/// Resolves the device to a provider and library, before ONNX Runtime is loaded.
pub(crate) fn resolve(device: Device, home: &Path) -> Result<ResolvedDevice> {
    let cpu = || -> Result<PathBuf> { library::locate_library(home, CPU_RUNTIME_ID) };
    match device {
        Device::Cpu => Ok(ResolvedDevice {
            provider: Provider::Cpu,
            library: cpu()?,
            note: None,
            cuda: None,
        }),
        Device::Cuda { id } => {
            let support = cuda_support(home);
            if let Some(reason) = support.blocker_for(id) {
                return Err(Error::CudaUnavailable {
                    requested: device,
                    reason,
                });
            }
            Ok(ResolvedDevice {
                provider: Provider::Cuda { id },
                library: support.runtime.clone().expect("checked by blocker"),
                note: None,
                cuda: Some(support),
            })
        }
        Device::Auto => {
            let support = cuda_support(home);
            match support.blocker() {
                None => Ok(ResolvedDevice {
                    provider: Provider::Cuda { id: 0 },
                    library: support.runtime.clone().expect("checked by blocker"),
                    note: Some("--device auto chose cuda:0".into()),
                    cuda: Some(support),
                }),
                Some(reason) => cpu_fallback(home, &reason),
            }
        }
    }
}

/// `--device auto` when CUDA cannot be had, saying why (from [`resolve`], or after loading
/// the NVIDIA libraries failed).
pub(crate) fn cpu_fallback(home: &Path, reason: &str) -> Result<ResolvedDevice> {
    Ok(ResolvedDevice {
        provider: Provider::Cpu,
        library: library::locate_library(home, CPU_RUNTIME_ID)?,
        note: Some(format!("--device auto chose cpu: {reason}")),
        cuda: None,
    })
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
