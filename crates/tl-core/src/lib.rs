//! `tl-core`: the shared vocabulary of `tl`.
//!
//! Every other crate builds on these pieces and on nothing heavier:
//! - [`alloc`]: a counting allocator, for tests that bound what a piece of work allocates,
//!   and the process's peak resident memory;
//! - [`io`]: atomic writes (temp file + rename) and advisory lock files, so that
//!   interrupted runs and parallel tests never see half a file;
//! - [`hash`]: sha256 of files and bytes, the content hashes used by caches and manifests;
//! - [`rng`]: seeded `ChaCha8Rng` streams, one named stream per use;
//! - [`device`]: the execution device a user asks for (`cpu`, `cuda[:N]`, `auto`);
//! - [`contract`]: the input contract of a model (layout, size, resize policy, normalisation);
//! - [`home`]: where `TL_HOME` is;
//! - [`metadata`]: the keys of the metadata that ONNX files written by `tl` carry;
//! - [`progress`]: how libraries report long steps without printing;
//! - [`fault`]: named pause points at which fault tests kill a process;
//! - [`num`]: log-sum-exp, softmax, log-softmax and arg-max, the one copy of each.
//!
//! ```
//! use tl_core::{Device, rng::seeded_rng};
//! use rand::Rng;
//!
//! let device: Device = "cuda:1".parse().unwrap();
//! assert_eq!(device, Device::Cuda { id: 1 });
//! let a: u32 = seeded_rng(7, "split").random();
//! let b: u32 = seeded_rng(7, "split").random();
//! assert_eq!(a, b);
//! ```

pub mod alloc;
pub mod contract;
pub mod device;
pub mod error;
pub mod fault;
pub mod hash;
pub mod home;
pub mod io;
pub mod metadata;
pub mod num;
pub mod progress;
pub mod rng;

pub use contract::{ImageContract, InputContract, Layout, ResizePolicy, TextContract};
pub use device::{Device, Precision};
pub use error::{Error, Result};

/// The version of `tl`, written into every artifact and cache entry.
pub const TL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// An enum whose values have one spelling each, the same in config files, on the
/// command line and in reports.
pub trait Named: Sized + Copy + 'static {
    /// What the values are, for errors (`fine-tuning`).
    const WHAT: &'static str;
    /// Every value, in the order they are listed to a person.
    const ALL: &'static [Self];

    /// The value's spelling.
    fn name(self) -> &'static str;

    /// The value spelt `s`, or an error listing the spellings.
    fn parse_name(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name() == s)
            .ok_or_else(|| Error::Parse {
                what: Self::WHAT,
                value: s.to_string(),
                reason: format!("expected one of {}", Self::names().join(", ")),
            })
    }

    /// Every spelling.
    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.name()).collect()
    }
}

/// Implements [`Named`], `FromStr` and `Display` for a fieldless enum from its list of
/// `Variant => "spelling"` pairs.
#[macro_export]
macro_rules! named_enum {
    ($ty:ty, $what:expr, [$($variant:ident => $name:expr),+ $(,)?]) => {
        impl $crate::Named for $ty {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = $crate::Error;
            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::Error> {
                <$ty as $crate::Named>::parse_name(s)
            }
        }
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::Named::name(*self))
            }
        }
    };
}
