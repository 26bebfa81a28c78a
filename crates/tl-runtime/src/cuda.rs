//! What ONNX Runtime's CUDA provider needs, found before anything is loaded; the first
//! thing missing becomes the reason `--device cuda` gives; what is found is loaded in order.
//!
//! The checks, in the order a user fixes them: the `cuda` feature; the CUDA build of ONNX
//! Runtime (`tl models fetch onnxruntime-cuda`); `libonnxruntime_providers_cuda.so` beside
//! it; every library the provider links (read from its ELF dynamic section) and the
//! NVIDIA libraries it opens at run time (cuDNN, ...), each by name; the NVIDIA driver
//! (`libcuda.so.1`); the GPUs the driver reports.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{CUDA_RUNTIME_ID, dl, elf, library};

pub use crate::dl::GpuInfo;

/// Registry id of the NVIDIA libraries (`runtimes/cuda-libraries/`).
pub const CUDA_LIBRARIES_ID: &str = "cuda-libraries";

/// File name of the provider library beside `libonnxruntime.so`.
pub const PROVIDER_LIBRARY: &str = "libonnxruntime_providers_cuda.so";

/// [`LibraryCheck::what`] of a library the provider links that is not NVIDIA's (libc, ...).
pub const LINKED_BY_PROVIDER: &str = "linked by the provider";

/// The driver, checked on its own (it comes with the GPU, not from a registry).
const DRIVER: &str = "libcuda.so.1";

/// The NVIDIA libraries of ONNX Runtime 1.31's CUDA provider (CUDA 13, cuDNN 9), in load
/// order: each after the ones it links. The provider links the first four; it opens the
/// rest at run time (`onnxruntime.preload_dlls()` loads the same set in Python).
/// `(soname, what it is, required, preloaded)`.
const NVIDIA: &[(&str, &str, bool, bool)] = &[
    ("libcudart.so.13", "CUDA 13 runtime", true, true),
    ("libcublasLt.so.13", "cuBLASLt 13", true, true),
    ("libcublas.so.13", "cuBLAS 13", true, true),
    ("libcurand.so.10", "cuRAND 10", true, true),
    (
        "libnvJitLink.so.13",
        "nvJitLink 13 (for cuFFT)",
        false,
        true,
    ),
    ("libcufft.so.12", "cuFFT 12 (FFT ops only)", false, true),
    (
        "libnvrtc.so.13",
        "NVRTC 13 (runtime-compiled kernels)",
        false,
        true,
    ),
    ("libcudnn.so.9", "cuDNN 9", true, true),
    // cuDNN opens its parts from its own directory ($ORIGIN); they must be beside it.
    ("libcudnn_graph.so.9", "cuDNN 9 graph API", true, false),
    ("libcudnn_ops.so.9", "cuDNN 9 operations", true, false),
    ("libcudnn_cnn.so.9", "cuDNN 9 convolutions", true, false),
    (
        "libcudnn_engines_precompiled.so.9",
        "cuDNN 9 precompiled engines",
        true,
        false,
    ),
    ("libcudnn_heuristic.so.9", "cuDNN 9 heuristics", true, false),
];

/// One shared library the CUDA provider needs, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibraryCheck {
    pub soname: String,
    /// What it is ("cuDNN 9"), or [`LINKED_BY_PROVIDER`] for system libraries.
    pub what: String,
    /// The provider cannot run without it.
    pub required: bool,
    pub found: Option<PathBuf>,
    /// Loaded by `tl` before the provider (NVIDIA libraries found outside the system paths).
    #[serde(skip)]
    preload: bool,
}

/// Where shared libraries are looked for, in order: the registry's directories first,
/// then what the dynamic loader itself would search.
#[derive(Debug, Clone, Default)]
pub struct LibrarySearch {
    /// Directories searched in order.
    pub dirs: Vec<PathBuf>,
    /// The loader's cache (`ldconfig -p`): soname → path.
    pub ld_cache: BTreeMap<String, PathBuf>,
}

impl LibrarySearch {
    /// `TL_HOME/runtimes/cuda-libraries/`, the CUDA runtime's own directory, then
    /// `LD_LIBRARY_PATH`, the loader cache and the usual CUDA and system directories.
    pub fn for_home(home: &Path, runtime_dir: Option<&Path>) -> Self {
        let mut dirs = vec![tl_core::home::runtime_dir(home, CUDA_LIBRARIES_ID)];
        dirs.extend(runtime_dir.map(Path::to_path_buf));
        dirs.extend(
            std::env::var_os("LD_LIBRARY_PATH")
                .map(|v| std::env::split_paths(&v).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        dirs.extend(
            [
                "/usr/local/cuda/lib64",
                "/usr/lib/x86_64-linux-gnu",
                "/lib/x86_64-linux-gnu",
                "/usr/lib64",
                "/usr/lib",
                "/usr/lib/wsl/lib",
            ]
            .map(PathBuf::from),
        );
        Self {
            dirs,
            ld_cache: ld_cache(),
        }
    }

    /// Where `soname` is, if anywhere.
    pub fn find(&self, soname: &str) -> Option<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.join(soname))
            .find(|p| p.exists())
            .or_else(|| self.ld_cache.get(soname).cloned())
    }

    /// A short list of the places searched, for an error message.
    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .dirs
            .iter()
            .take(2)
            .map(|d| format!("`{}`", d.display()))
            .collect();
        parts.push(
            "LD_LIBRARY_PATH, the loader cache and the usual CUDA and system directories".into(),
        );
        parts.join(", ")
    }
}

/// `ldconfig -p`: what the dynamic loader finds without a path (empty when unavailable).
fn ld_cache() -> BTreeMap<String, PathBuf> {
    let out = ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .iter()
        .find_map(|cmd| std::process::Command::new(cmd).arg("-p").output().ok())
        .filter(|o| o.status.success());
    let Some(out) = out else {
        return BTreeMap::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("x86-64") || l.contains("AArch64"))
        .filter_map(|l| {
            let (name, path) = l.trim().split_once(" => ")?;
            let soname = name.split_whitespace().next()?;
            Some((soname.to_string(), PathBuf::from(path)))
        })
        .collect()
}

/// What this build and machine offer for CUDA, for `tl doctor`, `--device cuda` and `auto`.
#[derive(Debug, Clone, Serialize)]
pub struct CudaSupport {
    /// Built with the `cuda` feature.
    pub feature: bool,
    /// The CUDA build of ONNX Runtime, if fetched.
    pub runtime: Option<PathBuf>,
    /// `libonnxruntime_providers_cuda.so` beside it.
    pub provider_library: Option<PathBuf>,
    /// Why the provider library's dynamic section could not be read.
    pub provider_unreadable: Option<String>,
    /// Every library the provider links or opens, found or not.
    pub libraries: Vec<LibraryCheck>,
    /// The NVIDIA driver library `libcuda.so.1`.
    pub driver: Option<PathBuf>,
    /// A GPU device node (`/dev/nvidia0`, ...), for information (WSL has none).
    pub device_node: Option<PathBuf>,
    /// The GPUs the driver reports (asked whenever the driver library exists).
    pub gpus: Option<Result<Vec<GpuInfo>, String>>,
    /// The places libraries were looked for, for messages.
    pub searched: String,
}

impl CudaSupport {
    /// `None` when `cuda:0` can be attempted, else the first reason it cannot.
    pub fn blocker(&self) -> Option<String> {
        self.blocker_for(0)
    }

    /// `None` when `cuda:id` can be attempted, else the first reason it cannot.
    pub fn blocker_for(&self, id: u32) -> Option<String> {
        if !self.feature {
            return Some("this `tl` was built without the `cuda` feature (rebuild with `cargo build --release -p tl-cli --features cuda`)".into());
        }
        if self.runtime.is_none() {
            return Some(format!(
                "the CUDA build of ONNX Runtime is not installed (fetch it with `tl models fetch {CUDA_RUNTIME_ID}`)"
            ));
        }
        if self.provider_library.is_none() {
            return Some(format!(
                "{PROVIDER_LIBRARY} is missing beside the CUDA runtime library (fetch it again with `tl models fetch {CUDA_RUNTIME_ID}`)"
            ));
        }
        if let Some(why) = &self.provider_unreadable {
            return Some(format!("cannot read {PROVIDER_LIBRARY}: {why}"));
        }
        if let Some(missing) = self.missing_libraries().first() {
            return Some(format!(
                "{} ({}) is not found: it was looked for in {}. Fetch the NVIDIA libraries with `tl models fetch {CUDA_LIBRARIES_ID}`, or install CUDA 13 and cuDNN 9 and put them on LD_LIBRARY_PATH",
                missing.soname, missing.what, self.searched
            ));
        }
        if self.driver.is_none() {
            return Some(format!(
                "no NVIDIA driver found ({DRIVER} is not on this machine)"
            ));
        }
        match &self.gpus {
            Some(Err(e)) => Some(format!("the NVIDIA driver cannot list GPUs: {e}")),
            Some(Ok(gpus)) if gpus.is_empty() => Some("the NVIDIA driver reports no GPU".into()),
            Some(Ok(gpus)) if id as usize >= gpus.len() => Some(format!(
                "there is no GPU {id}: the driver reports {} ({})",
                gpus.len(),
                gpus.iter()
                    .map(|g| format!("{}: {}", g.index, g.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => None,
        }
    }

    /// The required libraries not found.
    pub fn missing_libraries(&self) -> Vec<&LibraryCheck> {
        self.libraries
            .iter()
            .filter(|l| l.required && l.found.is_none())
            .collect()
    }

    /// Loads the NVIDIA libraries that were found, in dependency order, so that the
    /// provider finds them by soname. A library that fails to load is named with the
    /// loader's reason.
    pub(crate) fn preload(&self) -> Result<Vec<PathBuf>, String> {
        let mut loaded = Vec::new();
        for lib in self.libraries.iter().filter(|l| l.preload) {
            let Some(path) = &lib.found else { continue };
            dl::preload(path).map_err(|e| {
                format!(
                    "cannot load {} ({}) from `{}`: {e}",
                    lib.soname,
                    lib.what,
                    path.display()
                )
            })?;
            loaded.push(path.clone());
        }
        Ok(loaded)
    }
}

/// Inspects the build and the machine for CUDA. Loads nothing but the driver, when there is
/// one, to ask it which GPUs it has.
pub fn cuda_support(home: &Path) -> CudaSupport {
    let runtime = library::locate_library(home, CUDA_RUNTIME_ID).ok();
    let search = LibrarySearch::for_home(home, runtime.as_deref().and_then(Path::parent));
    support_with(runtime, &search, true)
}

/// [`cuda_support`] with the library search given (tests give their own directories).
pub fn support_with(
    runtime: Option<PathBuf>,
    search: &LibrarySearch,
    ask_driver: bool,
) -> CudaSupport {
    let provider_library = runtime
        .as_ref()
        .and_then(|p| p.parent())
        .map(|d| d.join(PROVIDER_LIBRARY))
        .filter(|p| p.is_file());
    // The NVIDIA table in load order, then the provider's other links as it lists them.
    let mut libraries: Vec<LibraryCheck> = NVIDIA
        .iter()
        .map(|&(soname, what, required, preload)| LibraryCheck {
            soname: soname.to_string(),
            what: what.to_string(),
            required,
            found: search.find(soname),
            preload,
        })
        .collect();
    let mut provider_unreadable = None;
    if let Some(provider) = &provider_library {
        match elf::dynamic_info(provider) {
            Ok(info) => {
                for soname in info.needed.into_iter().filter(|n| n != DRIVER) {
                    match libraries.iter_mut().find(|l| l.soname == soname) {
                        Some(l) => l.required = true,
                        None => libraries.push(LibraryCheck {
                            what: LINKED_BY_PROVIDER.to_string(),
                            required: true,
                            found: search.find(&soname),
                            preload: false,
                            soname,
                        }),
                    }
                }
            }
            Err(e) => provider_unreadable = Some(e),
        }
    }
    let driver = search.find(DRIVER);
    let device_node = (0..16)
        .map(|i| PathBuf::from(format!("/dev/nvidia{i}")))
        .find(|p| p.exists());
    // The driver API, not /dev/nvidia* (absent under WSL), says whether there is a GPU.
    let gpus = driver.as_ref().filter(|_| ask_driver).map(|d| dl::gpus(d));
    CudaSupport {
        feature: cfg!(feature = "cuda"),
        runtime,
        provider_library,
        provider_unreadable,
        libraries,
        driver,
        device_node,
        gpus,
        searched: search.describe(),
    }
}

/// FP32 lanes per multiprocessor, by compute capability (CUDA C Programming Guide,
/// "Arithmetic Instructions" throughput table).
fn fp32_lanes(cc: (u32, u32)) -> Option<u32> {
    Some(match cc {
        (3, _) => 192,
        (5, _) => 128,
        (6, 0) => 64,
        (6, _) => 128,
        (7, _) => 64,
        (8, 0) => 64,
        (8, _) | (9, _) | (10, _) | (12, _) => 128,
        _ => return None,
    })
}

impl crate::GpuInfo {
    /// Peak FP32 throughput in GFLOP/s: SMs × FP32 lanes per SM × 2 × clock, where the
    /// driver reports the clock and the compute capability is known.
    pub fn peak_fp32_gflops(&self) -> Option<f64> {
        let lanes = fp32_lanes(self.compute_capability)?;
        Some(self.multiprocessors as f64 * lanes as f64 * 2.0 * self.clock_khz? as f64 * 1e3 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Builds a real shared library `dir/file` with `soname` that links `needed` (no libc),
    /// with `cc`, as a stand-in for NVIDIA's libraries.
    fn shared_lib(dir: &Path, file: &str, soname: &str, needed: &[PathBuf]) -> PathBuf {
        let src = dir.join(format!("{file}.c"));
        let symbol: String = file
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        std::fs::write(
            &src,
            format!("int tl_stub_{symbol}(void) {{ return 7; }}\n"),
        )
        .unwrap();
        let out = dir.join(file);
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-nostdlib", "-Wl,--no-as-needed"])
            .arg(format!("-Wl,-soname,{soname}"))
            .arg("-Wl,-rpath,$ORIGIN")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .args(needed)
            .status()
            .expect("the tests build stand-in libraries with `cc`");
        assert!(status.success(), "cc failed for {file}");
        std::fs::remove_file(src).unwrap();
        out
    }

    /// A CUDA runtime directory (`libonnxruntime.so.1.31.1` + a provider library that links
    /// the CUDA runtime, cuBLAS and the driver), and a directory of NVIDIA stand-ins with
    /// everything in the table except `skip`.
    struct Fixture {
        _tmp: tempfile::TempDir,
        runtime: PathBuf,
        libs: PathBuf,
    }

    fn fixture(skip: &[&str]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let runtime_dir = tmp.path().join("onnxruntime-cuda");
        let libs = tmp.path().join("cuda-libraries");
        let build = tmp.path().join("build");
        for d in [&runtime_dir, &libs, &build] {
            std::fs::create_dir_all(d).unwrap();
        }
        // The provider links these; they are built elsewhere so that only `libs` has them.
        let linked: Vec<PathBuf> = ["libcudart.so.13", "libcublas.so.13", "libcuda.so.1"]
            .iter()
            .map(|s| shared_lib(&build, s, s, &[]))
            .collect();
        shared_lib(&runtime_dir, PROVIDER_LIBRARY, PROVIDER_LIBRARY, &linked);
        let runtime = runtime_dir.join("libonnxruntime.so.1.31.1");
        std::fs::write(&runtime, b"").unwrap();
        for (soname, ..) in NVIDIA.iter().filter(|(s, ..)| !skip.contains(s)) {
            shared_lib(&libs, soname, soname, &[]);
        }
        Fixture {
            _tmp: tmp,
            runtime,
            libs,
        }
    }

    fn search(dirs: &[&Path]) -> LibrarySearch {
        LibrarySearch {
            dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
            ld_cache: BTreeMap::new(),
        }
    }

    fn support(f: &Fixture, dirs: &[&Path]) -> CudaSupport {
        let mut s = support_with(Some(f.runtime.clone()), &search(dirs), false);
        s.feature = true; // the checks after the feature's, in any build
        s
    }

    #[test]
    fn fp32_lanes_follow_the_compute_capability() {
        assert_eq!(fp32_lanes((8, 0)), Some(64)); // A100
        assert_eq!(fp32_lanes((8, 9)), Some(128)); // L4, RTX 40xx
        assert_eq!(fp32_lanes((7, 5)), Some(64)); // T4
        assert_eq!(fp32_lanes((1, 0)), None);
    }

    #[test]
    fn the_provider_links_are_read_from_its_dynamic_section_as_readelf_reads_them() {
        let f = fixture(&[]);
        let provider = f.runtime.parent().unwrap().join(PROVIDER_LIBRARY);
        let info = elf::dynamic_info(&provider).unwrap();
        assert_eq!(
            info.needed,
            ["libcudart.so.13", "libcublas.so.13", "libcuda.so.1"]
        );
        assert_eq!(info.soname.as_deref(), Some(PROVIDER_LIBRARY));
        assert_eq!(info.runpath, ["$ORIGIN"]);
        let readelf = Command::new("readelf")
            .arg("-d")
            .arg(&provider)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&readelf.stdout);
        let from_readelf: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.split(']').next())
            .collect();
        assert_eq!(info.needed, from_readelf);
    }

    #[test]
    fn each_missing_piece_is_named_in_the_order_a_user_fixes_it() {
        let f = fixture(&["libcudnn.so.9"]);
        let runtime_dir = f.runtime.parent().unwrap().to_path_buf();

        // Nothing but the provider's own directory: the first linked library is missing.
        let s = support(&f, &[&runtime_dir]);
        let why = s.blocker().unwrap();
        assert!(
            why.starts_with("libcudart.so.13 (CUDA 13 runtime) is not found"),
            "{why}"
        );
        assert!(why.contains("tl models fetch cuda-libraries"), "{why}");

        // With the NVIDIA libraries, the one not there (cuDNN) is named.
        let s = support(&f, &[&f.libs, &runtime_dir]);
        let why = s.blocker().unwrap();
        assert!(
            why.starts_with("libcudnn.so.9 (cuDNN 9) is not found"),
            "{why}"
        );
        assert_eq!(
            s.missing_libraries()
                .iter()
                .map(|l| l.soname.as_str())
                .collect::<Vec<_>>(),
            ["libcudnn.so.9"]
        );
        // Optional libraries (cuFFT, NVRTC) never block.
        let f2 = fixture(&["libcufft.so.12", "libnvrtc.so.13"]);
        let s2 = support(&f2, &[&f2.libs]);
        let why2 = s2.blocker().unwrap();
        assert!(why2.starts_with("no NVIDIA driver found"), "{why2}");

        // The provider library itself missing, or not a library.
        std::fs::remove_file(runtime_dir.join(PROVIDER_LIBRARY)).unwrap();
        let why = support(&f, &[&f.libs]).blocker().unwrap();
        assert!(
            why.starts_with("libonnxruntime_providers_cuda.so is missing"),
            "{why}"
        );
        std::fs::write(runtime_dir.join(PROVIDER_LIBRARY), b"<html>").unwrap();
        let why = support(&f, &[&f.libs]).blocker().unwrap();
        assert!(why.contains("not an ELF file"), "{why}");

        // Without the feature, that comes first; without the runtime, the fetch command.
        let mut s = support(&f, &[&f.libs]);
        s.feature = false;
        assert!(s.blocker().unwrap().contains("`cuda` feature"));
        let mut none = support_with(None, &search(&[&f.libs]), false);
        none.feature = true;
        assert!(
            none.blocker()
                .unwrap()
                .contains("tl models fetch onnxruntime-cuda")
        );
    }

    #[test]
    fn the_driver_then_the_gpus_the_driver_reports() {
        let f = fixture(&[]);
        let driver_dir = f.libs.parent().unwrap().join("driver");
        std::fs::create_dir_all(&driver_dir).unwrap();
        let mut s = support(&f, &[&f.libs]);
        assert!(
            s.blocker()
                .unwrap()
                .starts_with("no NVIDIA driver found (libcuda.so.1")
        );
        shared_lib(&driver_dir, "libcuda.so.1", "libcuda.so.1", &[]);
        s = support(&f, &[&f.libs, &driver_dir]);
        assert!(s.driver.is_some());
        // A library called libcuda.so.1 that is not the driver: the driver API is missing.
        s.gpus = Some(dl::gpus(s.driver.as_ref().unwrap()));
        let why = s.blocker().unwrap();
        assert!(
            why.starts_with("the NVIDIA driver cannot list GPUs: the driver has no cuInit"),
            "{why}"
        );
        // What the driver reports, as the driver API would (a GPU machine fills it for real).
        s.gpus = Some(Err(
            "cuInit: no CUDA-capable device is detected (CUDA_ERROR_NO_DEVICE)".into(),
        ));
        assert!(s.blocker().unwrap().contains("CUDA_ERROR_NO_DEVICE"));
        s.gpus = Some(Ok(vec![]));
        assert_eq!(s.blocker().unwrap(), "the NVIDIA driver reports no GPU");
        let gpu = GpuInfo {
            index: 0,
            name: "NVIDIA L4".into(),
            memory_bytes: 24 << 30,
            multiprocessors: 58,
            clock_khz: Some(2_040_000),
            compute_capability: (8, 9),
        };
        s.gpus = Some(Ok(vec![gpu]));
        assert_eq!(s.blocker(), None);
        assert_eq!(
            s.blocker_for(1).unwrap(),
            "there is no GPU 1: the driver reports 1 (0: NVIDIA L4)"
        );
    }

    #[test]
    fn found_libraries_are_loaded_in_order_and_a_bad_one_is_named() {
        let f = fixture(&[]);
        let s = support(&f, &[&f.libs]);
        let loaded = s.preload().unwrap();
        let names: Vec<_> = loaded
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "libcudart.so.13",
                "libcublasLt.so.13",
                "libcublas.so.13",
                "libcurand.so.10",
                "libnvJitLink.so.13",
                "libcufft.so.12",
                "libnvrtc.so.13",
                "libcudnn.so.9"
            ]
        );
        let bad = fixture(&[]);
        std::fs::write(bad.libs.join("libcurand.so.10"), b"truncated").unwrap();
        let err = support(&bad, &[&bad.libs]).preload().unwrap_err();
        assert!(
            err.starts_with("cannot load libcurand.so.10 (cuRAND 10) from `"),
            "{err}"
        );
    }

    /// The real thing, when `tl models fetch onnxruntime-cuda` has been run (2.3 GB, so not
    /// in CI): every library of the registry is found and loads on a machine without a GPU,
    /// and what is left is the driver. Run with `cargo test -p tl-runtime -- --ignored`.
    #[test]
    #[ignore = "needs `tl models fetch onnxruntime-cuda` (2.3 GB)"]
    fn the_registry_cuda_runtime_is_complete_and_loads() {
        let home = tl_core::home::tl_home().unwrap();
        let mut s = cuda_support(&home);
        s.feature = true;
        assert!(s.runtime.is_some(), "fetch onnxruntime-cuda first");
        assert_eq!(s.provider_unreadable, None);
        for l in &s.libraries {
            println!("{:40} {:40} {:?}", l.soname, l.what, l.found);
        }
        assert!(s.missing_libraries().is_empty());
        let loaded = s.preload().unwrap();
        println!("loaded {} NVIDIA libraries", loaded.len());
        assert_eq!(loaded.len(), 8);
        if s.driver.is_none() {
            assert!(s.blocker().unwrap().starts_with("no NVIDIA driver found"));
        }
    }
}
