//! Unsafe code (one of two modules with any; the other is `tl_core::alloc`, the counting
//! allocator): loading the NVIDIA libraries before ONNX Runtime's CUDA provider needs
//! them, and asking the NVIDIA driver which GPUs it has.
#![allow(unsafe_code)]

use std::{ffi::c_int, path::Path};

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

/// Loads `path` for the rest of the process with its symbols global, so that a later
/// library that needs its soname (the CUDA provider needs `libcublas.so.13`, ...) finds it
/// already loaded, as `onnxruntime.preload_dlls()` arranges in Python.
pub(crate) fn preload(path: &Path) -> Result<(), String> {
    // SAFETY: these are NVIDIA's CUDA libraries from the registry (or the user's CUDA
    // installation); loading them runs their initialisers, which is what ONNX Runtime
    // would do when it loads the provider. They are never unloaded (the handle is leaked).
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.map_err(loader_error)?;
    std::mem::forget(lib);
    Ok(())
}

/// libloading's error says "dlopen failed"; the loader's own words are its source.
fn loader_error(e: libloading::Error) -> String {
    match std::error::Error::source(&e) {
        Some(source) => source.to_string(),
        None => e.to_string(),
    }
}

/// One GPU as the NVIDIA driver describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub memory_bytes: u64,
    pub multiprocessors: u32,
    /// Peak SM clock in kHz, when the driver still reports it.
    pub clock_khz: Option<u32>,
    pub compute_capability: (u32, u32),
}

type CuInit = unsafe extern "C" fn(u32) -> c_int;
type CuDeviceGetCount = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut std::ffi::c_char, c_int, c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;

// CUdevice_attribute values, from cuda.h.
const CLOCK_RATE: c_int = 13;
const MULTIPROCESSOR_COUNT: c_int = 16;
const COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const COMPUTE_CAPABILITY_MINOR: c_int = 76;

/// A function of `lib`, copied out of its symbol.
///
/// # Safety
/// `T` must be the function's true signature.
unsafe fn symbol<T: Copy>(lib: &Library, name: &str) -> Result<T, String> {
    // SAFETY: the caller names the signature; the symbol is only read here.
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("the driver has no {name}: {e}"))
}

/// The GPUs the driver library at `driver` (`libcuda.so.1`) reports, through the CUDA
/// driver API (`cuInit`, `cuDeviceGetCount`, ...). An error names the call and its code.
pub(crate) fn gpus(driver: &Path) -> Result<Vec<GpuInfo>, String> {
    // SAFETY: `libcuda.so.1` is the NVIDIA driver library; the symbols below have the
    // signatures of the CUDA driver API (cuda.h), called with valid out-pointers.
    unsafe {
        let lib = Library::open(Some(driver), RTLD_NOW).map_err(loader_error)?;
        let call = |name: &str, code: c_int| -> Result<(), String> {
            match code {
                0 => Ok(()),
                100 => Err(format!(
                    "{name}: no CUDA-capable device is detected (CUDA_ERROR_NO_DEVICE)"
                )),
                35 => Err(format!(
                    "{name}: the driver is older than the CUDA runtime needs (CUDA_ERROR_INSUFFICIENT_DRIVER)"
                )),
                c => Err(format!("{name} failed with CUDA error {c}")),
            }
        };
        let cu_init: CuInit = symbol(&lib, "cuInit")?;
        let count_fn: CuDeviceGetCount = symbol(&lib, "cuDeviceGetCount")?;
        let get: CuDeviceGet = symbol(&lib, "cuDeviceGet")?;
        let name_fn: CuDeviceGetName = symbol(&lib, "cuDeviceGetName")?;
        let attr: CuDeviceGetAttribute = symbol(&lib, "cuDeviceGetAttribute")?;
        let mem: CuDeviceTotalMem = symbol(&lib, "cuDeviceTotalMem_v2")?;
        call("cuInit", cu_init(0))?;
        let mut count = 0;
        call("cuDeviceGetCount", count_fn(&mut count))?;
        let mut out = Vec::new();
        for i in 0..count {
            let mut dev = 0;
            call("cuDeviceGet", get(&mut dev, i))?;
            let mut name = [0 as std::ffi::c_char; 256];
            call("cuDeviceGetName", name_fn(name.as_mut_ptr(), 256, dev))?;
            let name = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_string_lossy()
                .into_owned();
            let attribute = |a: c_int| {
                let mut v = 0;
                (attr(&mut v, a, dev) == 0).then_some(v.max(0) as u32)
            };
            let mut bytes = 0usize;
            call("cuDeviceTotalMem", mem(&mut bytes, dev))?;
            out.push(GpuInfo {
                index: i as u32,
                name,
                memory_bytes: bytes as u64,
                multiprocessors: attribute(MULTIPROCESSOR_COUNT).unwrap_or(0),
                clock_khz: attribute(CLOCK_RATE).filter(|&c| c > 0),
                compute_capability: (
                    attribute(COMPUTE_CAPABILITY_MAJOR).unwrap_or(0),
                    attribute(COMPUTE_CAPABILITY_MINOR).unwrap_or(0),
                ),
            });
        }
        // The driver stays loaded: ONNX Runtime's provider loads it again by soname.
        std::mem::forget(lib);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preloading_a_file_that_is_no_library_names_the_loader_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("libcudart.so.13");
        std::fs::write(&p, b"not a library").unwrap();
        let err = preload(&p).unwrap_err();
        assert!(err.contains("libcudart.so.13"), "{err}");
        assert!(preload(&dir.path().join("missing.so")).is_err());
    }

    /// Builds `tests/fixtures/stub_cuda_driver.c` (a made-up driver with one GPU) with `cc`.
    pub(crate) fn stub_driver(dir: &Path, init_result: i32) -> std::path::PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stub_cuda_driver.c");
        let out = dir.join("libcuda.so.1");
        let ok = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1"])
            .arg(format!("-DINIT_RESULT={init_result}"))
            .arg("-o")
            .arg(&out)
            .arg(src)
            .status()
            .expect("the tests build a stand-in driver with `cc`")
            .success();
        assert!(ok);
        out
    }

    #[test]
    fn gpus_are_listed_through_the_driver_api() {
        let dir = tempfile::tempdir().unwrap();
        let gpus = gpus(&stub_driver(dir.path(), 0)).unwrap();
        assert_eq!(
            gpus,
            [GpuInfo {
                index: 0,
                name: "Stub GPU (not a GPU)".into(),
                memory_bytes: 1 << 30,
                multiprocessors: 4,
                clock_khz: Some(1_000_000),
                compute_capability: (8, 6),
            }]
        );
        // Another directory: the loader keys on the path, so this is a second library.
        let dir = tempfile::tempdir().unwrap();
        let err = super::gpus(&stub_driver(dir.path(), 100)).unwrap_err();
        assert_eq!(
            err,
            "cuInit: no CUDA-capable device is detected (CUDA_ERROR_NO_DEVICE)"
        );
    }

    #[test]
    fn a_driver_library_without_the_driver_api_is_named() {
        // libm is a real shared library that is certainly not the NVIDIA driver.
        let err = gpus(Path::new("libm.so.6")).unwrap_err();
        assert!(err.contains("the driver has no cuInit"), "{err}");
    }
}
