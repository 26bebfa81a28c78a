//! ONNX Runtime sessions with checked inputs and `ndarray` outputs.

use std::{collections::HashMap, path::Path};

use ndarray::{ArrayD, ArrayViewD};
use ort::{
    session::builder::GraphOptimizationLevel,
    value::{TensorRef, ValueType},
};
use tl_onnx::OnnxModel;

use crate::{Error, Provider, Result, Runtime};

/// Graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

/// Options for creating a [`Session`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SessionOptions {
    /// Intra-op threads; `None` lets ONNX Runtime use one per physical core.
    pub threads: Option<usize>,
    pub opt_level: OptLevel,
    /// `F16` rewrites the model to compute in half precision ([`OnnxModel::to_float16`]).
    pub precision: tl_core::Precision,
    /// Runs through ONNX Runtime's I/O binding; `None`: on for CUDA, off for the CPU.
    pub io_binding: Option<bool>,
}

impl SessionOptions {
    /// Sets the thread count.
    #[must_use]
    pub fn threads(mut self, n: Option<usize>) -> Self {
        self.threads = n;
        self
    }
    /// Forces I/O binding on or off.
    #[must_use]
    pub fn io_binding(mut self, on: bool) -> Self {
        self.io_binding = Some(on);
        self
    }
    /// Sets the precision.
    #[must_use]
    pub fn precision(mut self, precision: tl_core::Precision) -> Self {
        self.precision = precision;
        self
    }
    /// Sets the optimisation level.
    #[must_use]
    pub fn opt_level(mut self, level: OptLevel) -> Self {
        self.opt_level = level;
        self
    }
}

/// Name, element type and shape of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Element type (`"f32"`, `"i64"`, ...).
    pub dtype: String,
    /// Dimensions; `None` for a dynamic one.
    pub shape: Vec<Option<i64>>,
}

impl TensorInfo {
    fn from_outlet(name: &str, ty: &ValueType) -> Self {
        match ty {
            ValueType::Tensor { ty, shape, .. } => TensorInfo {
                name: name.to_string(),
                dtype: ty.to_string(),
                shape: shape.iter().map(|&d| (d >= 0).then_some(d)).collect(),
            },
            other => TensorInfo {
                name: name.to_string(),
                dtype: format!("{other:?}"),
                shape: Vec::new(),
            },
        }
    }

    /// `[N, 3, 224, 224]`-style rendering, `?` for dynamic dimensions.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
            .collect();
        format!("[{}]", dims.join(", "))
    }
}

/// One input tensor for [`Session::run`].
#[derive(Debug, Clone)]
pub enum Input<'a> {
    F32(ArrayViewD<'a, f32>),
    I64(ArrayViewD<'a, i64>),
}

impl Input<'_> {
    fn shape(&self) -> &[usize] {
        match self {
            Input::F32(a) => a.shape(),
            Input::I64(a) => a.shape(),
        }
    }
}

/// A loaded model, ready to run batches.
#[derive(Debug)]
pub struct Session {
    inner: ort::session::Session,
    name: String,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    provider: Provider,
    precision: tl_core::Precision,
    io_binding: bool,
}

impl Session {
    /// Loads an ONNX file. The file is checked by `tl-onnx` first, so a truncated or
    /// non-ONNX file gets an error naming it and what is wrong.
    pub fn from_file(rt: &Runtime, path: &Path, opts: &SessionOptions) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| tl_core::Error::io("cannot read model", path, e))?;
        let model = OnnxModel::from_bytes(&bytes, path)?;
        if opts.precision == tl_core::Precision::F16 {
            return Self::from_model(rt, &model, &path.display().to_string(), opts);
        }
        Self::from_bytes(rt, &bytes, &path.display().to_string(), opts)
    }

    /// Loads a model held in memory (for example one with tapped outputs).
    pub fn from_model(
        rt: &Runtime,
        model: &OnnxModel,
        name: &str,
        opts: &SessionOptions,
    ) -> Result<Self> {
        match opts.precision {
            tl_core::Precision::F32 => Self::from_bytes(rt, &model.to_bytes(), name, opts),
            tl_core::Precision::F16 => {
                let half = model.to_float16().map_err(|e| Error::Inputs {
                    model: name.to_string(),
                    reason: format!("cannot convert to float16: {e}"),
                })?;
                Self::from_bytes(rt, &half.to_bytes(), name, opts)
            }
        }
    }

    fn from_bytes(rt: &Runtime, bytes: &[u8], name: &str, opts: &SessionOptions) -> Result<Self> {
        let mut provider = rt.device().provider;
        let level = match opts.opt_level {
            OptLevel::Disable => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::All,
        };
        let new_builder = || -> Result<ort::session::builder::SessionBuilder> {
            let mut builder =
                ort::session::Session::builder(rt.environment())?.with_optimization_level(level)?;
            if let Some(n) = opts.threads {
                builder = builder.with_intra_threads(n)?.with_inter_threads(1)?;
            }
            Ok(builder)
        };
        let mut builder = match register_provider(new_builder()?, provider) {
            Ok(b) => b,
            // `auto` promised "CUDA if it can be had, else CPU, and say which": the CUDA
            // build of ONNX Runtime has the CPU provider too.
            Err(Error::CudaUnavailable { reason, .. })
                if rt.requested() == tl_core::Device::Auto =>
            {
                rt.record_fallback(reason);
                provider = Provider::Cpu;
                new_builder()?
            }
            Err(e) => return Err(e),
        };
        let inner = builder
            .commit_from_memory(bytes)
            .map_err(|e| Error::ModelLoad {
                path: name.into(),
                reason: e.to_string(),
            })?;
        let inputs = inner
            .inputs()
            .iter()
            .map(|o| TensorInfo::from_outlet(o.name(), o.dtype()))
            .collect();
        let outputs = inner
            .outputs()
            .iter()
            .map(|o| TensorInfo::from_outlet(o.name(), o.dtype()))
            .collect();
        Ok(Self {
            inner,
            name: name.to_string(),
            inputs,
            outputs,
            provider,
            precision: opts.precision,
            io_binding: opts
                .io_binding
                .unwrap_or(matches!(provider, Provider::Cuda { .. })),
        })
    }

    /// The model's inputs.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// The model's outputs.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// The execution provider this session runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The precision the model computes in.
    pub fn precision(&self) -> tl_core::Precision {
        self.precision
    }

    /// Checks names, ranks and fixed dimensions of `inputs` against the model.
    pub fn check_inputs(&self, inputs: &[(&str, Input<'_>)]) -> Result<()> {
        for (name, value) in inputs {
            let Some(info) = self.inputs.iter().find(|i| i.name == *name) else {
                return Err(Error::Inputs {
                    model: self.name.clone(),
                    reason: format!(
                        "it has no input `{name}` (its inputs: {})",
                        self.inputs
                            .iter()
                            .map(|i| format!("`{}`", i.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            };
            let got = value.shape();
            let fits = got.len() == info.shape.len()
                && got
                    .iter()
                    .zip(&info.shape)
                    .all(|(g, e)| e.is_none_or(|e| e == *g as i64));
            if !fits {
                return Err(Error::ShapeMismatch {
                    model: self.name.clone(),
                    input: name.to_string(),
                    expected: info.shape_string(),
                    got: got.to_vec(),
                });
            }
        }
        if let Some(missing) = self
            .inputs
            .iter()
            .find(|i| !inputs.iter().any(|(n, _)| *n == i.name))
        {
            return Err(Error::Inputs {
                model: self.name.clone(),
                reason: format!(
                    "input `{}` {} was not given",
                    missing.name,
                    missing.shape_string()
                ),
            });
        }
        Ok(())
    }

    /// Runs one batch and returns every output's element type and concrete shape,
    /// whatever its type (used by `tl models inspect` to show the shape of every value).
    pub fn run_shapes(&mut self, inputs: &[(&str, Input<'_>)]) -> Result<Vec<TensorInfo>> {
        self.check_inputs(inputs)?;
        let values = session_inputs(inputs)?;
        let names: Vec<String> = self.outputs.iter().map(|o| o.name.clone()).collect();
        let result = self.inner.run(values)?;
        Ok(names
            .iter()
            .filter_map(|n| result.get(n).map(|v| TensorInfo::from_outlet(n, v.dtype())))
            .collect())
    }

    /// Runs one batch and returns the named float outputs (all outputs when `outputs` is empty).
    pub fn run(
        &mut self,
        inputs: &[(&str, Input<'_>)],
        outputs: &[&str],
    ) -> Result<HashMap<String, ArrayD<f32>>> {
        self.check_inputs(inputs)?;
        for o in outputs {
            if !self.outputs.iter().any(|i| i.name == *o) {
                return Err(Error::Output {
                    model: self.name.clone(),
                    output: o.to_string(),
                    reason: "the model has no such output (tap it first with tl-onnx)".into(),
                });
            }
        }
        let model = self.name.clone();
        let wanted: Vec<String> = if outputs.is_empty() {
            self.outputs.iter().map(|o| o.name.clone()).collect()
        } else {
            outputs.iter().map(|s| s.to_string()).collect()
        };
        let extract = |result: &ort::session::SessionOutputs<'_>| {
            let mut out = HashMap::with_capacity(wanted.len());
            for name in &wanted {
                let value = result.get(name).ok_or_else(|| Error::Output {
                    model: model.clone(),
                    output: name.clone(),
                    reason: "missing from the run's results".into(),
                })?;
                let arr = value
                    .try_extract_array::<f32>()
                    .map_err(|e| Error::Output {
                        model: model.clone(),
                        output: name.clone(),
                        reason: format!("not a float tensor: {e}"),
                    })?;
                out.insert(name.clone(), arr.to_owned());
            }
            Ok::<_, Error>(out)
        };
        if !self.io_binding {
            let result = self.inner.run(session_inputs(inputs)?)?;
            return extract(&result);
        }
        // I/O binding: inputs bound once per call, outputs allocated by ONNX Runtime where
        // the provider wants them read (pinned host memory for CUDA, plain for the CPU).
        let mut binding = self.inner.create_binding()?;
        // Owned copies: ort clones a borrowed input before binding it anyway, and that clone
        // never returned with ort 2.0.0-rc.15 here (tests/sessions.rs binds owned tensors).
        for (name, input) in inputs {
            let value: ort::value::DynValue = match input {
                Input::F32(a) => ort::value::Tensor::from_array(a.to_owned())?.into_dyn(),
                Input::I64(a) => ort::value::Tensor::from_array(a.to_owned())?.into_dyn(),
            };
            binding.bind_input(*name, &value)?;
        }
        let memory = output_memory(self.provider)?;
        for name in &wanted {
            binding.bind_output_to_device(name.as_str(), &memory)?;
        }
        extract(&self.inner.run_binding(&binding)?)
    }
}

/// Where bound outputs are allocated: host memory the provider can write directly
/// (`CudaPinned` for CUDA, so the copy back is one DMA; plain CPU memory otherwise).
fn output_memory(provider: Provider) -> Result<ort::memory::MemoryInfo<'static>> {
    use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
    Ok(match provider {
        Provider::Cpu => MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::Default,
        )?,
        Provider::Cuda { id } => MemoryInfo::new(
            AllocationDevice::CUDA_PINNED,
            id as i32,
            AllocatorType::Device,
            MemoryType::CPUOutput,
        )?,
    })
}

type InputValues<'a> = Vec<(
    std::borrow::Cow<'a, str>,
    ort::session::SessionInputValue<'a>,
)>;

fn session_inputs<'a>(inputs: &'a [(&str, Input<'_>)]) -> Result<InputValues<'a>> {
    let mut values: InputValues<'a> = Vec::with_capacity(inputs.len());
    for (name, input) in inputs {
        let v: ort::session::SessionInputValue<'_> = match input {
            Input::F32(a) => TensorRef::from_array_view(a.view())?.into(),
            Input::I64(a) => TensorRef::from_array_view(a.view())?.into(),
        };
        values.push(((*name).into(), v));
    }
    Ok(values)
}

fn register_provider(
    builder: ort::session::builder::SessionBuilder,
    provider: Provider,
) -> Result<ort::session::builder::SessionBuilder> {
    match provider {
        Provider::Cpu => Ok(builder),
        #[cfg(feature = "cuda")]
        Provider::Cuda { id } => {
            // `error_on_failure`: a CUDA provider that cannot start is an error, never a silent CPU run.
            let ep = ort::ep::CUDA::default()
                .with_device_id(id as i32)
                .build()
                .error_on_failure();
            builder
                .with_execution_providers([ep])
                .map_err(|e| Error::CudaUnavailable {
                    requested: tl_core::Device::Cuda { id },
                    reason: format!("ONNX Runtime could not start its CUDA provider: {e}"),
                })
        }
        #[cfg(not(feature = "cuda"))]
        Provider::Cuda { id } => Err(Error::CudaUnavailable {
            requested: tl_core::Device::Cuda { id },
            reason: "this `tl` was built without the `cuda` feature".into(),
        }),
    }
}
