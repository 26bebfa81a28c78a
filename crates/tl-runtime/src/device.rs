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

/// What the `auto` device chose, and why: for the caller to report in its own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoChoice {
    pub provider: Provider,
    /// Why not CUDA, when `auto` chose the CPU.
    pub reason: Option<String>,
    /// Whether CUDA failed only when a session was made, after the library loaded.
    pub after_load: bool,
}

impl fmt::Display for AutoChoice {
    /// `auto chose cpu: REASON`, `auto chose cuda:0`, `auto chose cpu after all: REASON`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.provider {
            Provider::Cpu => f.write_str("auto chose cpu")?,
            Provider::Cuda { id } => write!(f, "auto chose cuda:{id}")?,
        }
        if self.after_load {
            f.write_str(" after all")?;
        }
        match &self.reason {
            Some(r) => write!(f, ": {r}"),
            None => Ok(()),
        }
    }
}

/// The outcome of resolving a requested [`Device`].
#[derive(Debug, Clone)]
pub struct ResolvedDevice {
    pub provider: Provider,
    /// The ONNX Runtime library for that provider.
    pub library: PathBuf,
    /// What `auto` chose and why (none for an explicit device).
    pub note: Option<AutoChoice>,
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
                    note: Some(AutoChoice {
                        provider: Provider::Cuda { id: 0 },
                        reason: None,
                        after_load: false,
                    }),
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
        note: Some(AutoChoice {
            provider: Provider::Cpu,
            reason: Some(reason.to_string()),
            after_load: false,
        }),
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
            err.contains("device `cuda` cannot be used") && err.contains("`cuda` feature"),
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
        let home = tempfile::tempdir().unwrap();
        let dir = tl_core::home::runtime_dir(home.path(), CPU_RUNTIME_ID);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        // The CPU library the fallback takes: ORT_DYLIB_PATH when the environment sets
        // it (as CI may), else the one in this home.
        let expected = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => dir.join("libonnxruntime.so.1.31.1"),
        };
        let r = resolve(Device::Auto, home.path()).unwrap();
        assert_eq!(r.provider, Provider::Cpu);
        assert_eq!(r.library, expected);
        assert!(r.cuda.is_none());
        let note = r.note.unwrap().to_string();
        assert!(note.starts_with("auto chose cpu:"), "{note}");
    }
}
