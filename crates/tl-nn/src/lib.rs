//! `tl-nn`: the one training API of `tl`.
//!
//! Layers own named parameters ([`Param`]) and implement [`Module`]: a forward pass that,
//! in training mode, keeps what its backward pass needs, and a backward pass that adds
//! parameter gradients and returns the input gradient. Losses return their value and
//! gradient. Optimisers are step functions over the parameters and an explicit
//! [`OptState`]; [`checkpoint`] saves both. Heads, fine-tuned backbone layers and
//! domain-adaptation networks (adapters, gradient reversal, extra loss terms) are all
//! built from these pieces and trained by the one trainer in `tl-head`.
//!
//! ```
//! use tl_nn::{Act, Activation, Ctx, CrossEntropy, Linear, LrGroups, ModuleExt, Module,
//!             OptState, Optimizer, Sequential, Tensor, step};
//!
//! let mut rng = tl_core::rng::seeded_rng(7, "init");
//! let mut net = Sequential::new()
//!     .push(Linear::new(4, 8, &mut rng))
//!     .push(Activation::new(Act::Relu))
//!     .push(Linear::new(8, 3, &mut rng));
//! let x = Tensor::from_shape_fn(vec![6, 4], |i| (i[0] * 4 + i[1]) as f32 / 10.0);
//! let y = [Some(0), Some(1), Some(2), Some(0), Some(1), None];
//! let (opt, mut state) = (Optimizer::adam(), OptState::default());
//! let mut first = None;
//! for _ in 0..50 {
//!     net.zero_grad();
//!     let logits = net.forward(&x, &mut Ctx::train(tl_core::rng::seeded_rng(7, "dropout")))?;
//!     let (loss, grad) = CrossEntropy::default().forward_backward(&logits, &y)?;
//!     first.get_or_insert(loss);
//!     net.backward(&grad)?;
//!     step(&opt, &mut state, &mut net, 0.05, &LrGroups::default());
//! }
//! let logits = net.predict(&x)?;
//! let (last, _) = CrossEntropy::default().forward_backward(&logits, &y)?;
//! assert!(last < first.unwrap());
//! # Ok::<(), tl_nn::Error>(())
//! ```

pub mod checkpoint;
pub mod conv;
mod error;
pub mod gradcheck;
pub mod graph;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod module;
pub mod optim;
pub mod pool;

pub use conv::{Conv2d, Padding};
pub use error::{Error, Result, check_finite};
pub use graph::Graph;
pub use layers::{
    Act, Activation, BatchNorm, Dropout, GlobalAvgPool, GradReverse, GrlHandle, Linear,
};
pub use loss::{CrossEntropy, softmax};
pub use module::{Ctx, Module, ModuleExt, Param, ParamKind, Sequential, Tensor};
pub use optim::{LrGroups, OptState, Optimizer, Schedule, step};
pub use pool::{Pool2d, PoolKind};
