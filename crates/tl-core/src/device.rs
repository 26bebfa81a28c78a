//! The execution device a user asks for.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::Error;

/// Where a model should run: `cpu`, `cuda` / `cuda:N`, or `auto`.
///
/// `auto` means "CUDA if it can be had, else CPU, and say which"; `cuda` means
/// CUDA or a clear error, never a silent CPU run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Device {
    #[default]
    Cpu,
    Cuda {
        id: u32,
    },
    Auto,
}

impl FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Parse {
            what: "device",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "auto" => Ok(Device::Auto),
            "cuda" | "gpu" => Ok(Device::Cuda { id: 0 }),
            other => match other.strip_prefix("cuda:") {
                Some(id) => id.parse().map(|id| Device::Cuda { id }).map_err(|_| {
                    bad("the CUDA device index must be a whole number, as in `cuda:1`")
                }),
                None => Err(bad("expected `cpu`, `cuda`, `cuda:N` or `auto`")),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda { id: 0 } => f.write_str("cuda"),
            Device::Cuda { id } => write!(f, "cuda:{id}"),
            Device::Auto => f.write_str("auto"),
        }
    }
}

/// The floating-point precision a model computes in: `f32` (as stored) or `f16` (weights
/// and arithmetic in half precision, float32 at the inputs and outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            _ => Err(Error::Parse {
                what: "precision",
                value: s.to_string(),
                reason: "expected `f32` or `f16`".into(),
            }),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions_parse_and_print() {
        for (s, p) in [
            ("f32", Precision::F32),
            ("FP16", Precision::F16),
            ("half", Precision::F16),
        ] {
            let parsed: Precision = s.parse().unwrap();
            assert_eq!(parsed, p);
            assert_eq!(parsed.to_string().parse::<Precision>().unwrap(), p);
        }
        let err = "bf16".parse::<Precision>().unwrap_err().to_string();
        assert!(
            err.contains("bf16") && err.contains("`f32` or `f16`"),
            "{err}"
        );
    }

    #[test]
    fn parse_and_display_roundtrip() {
        for (s, d) in [
            ("cpu", Device::Cpu),
            ("CUDA", Device::Cuda { id: 0 }),
            ("cuda:3", Device::Cuda { id: 3 }),
            ("auto", Device::Auto),
        ] {
            let parsed: Device = s.parse().unwrap();
            assert_eq!(parsed, d);
            assert_eq!(parsed.to_string().parse::<Device>().unwrap(), d);
        }
        let err = "tpu".parse::<Device>().unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("cuda:N"), "{err}");
        assert!("cuda:x".parse::<Device>().is_err());
    }
}
