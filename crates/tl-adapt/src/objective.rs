//! The trained methods as a `tl-head` [`Objective`]: each batch of labelled source rows
//! is paired with as many unlabelled target rows, both go through the network in one
//! forward pass, and the loss is the source cross-entropy plus the method's term.

use ndarray::{Array2, ArrayView2, Axis, s};
use rand::seq::SliceRandom;
use tl_head::{
    net::HeadNet,
    probe::argmax_rows,
    train::{Labelled, Objective, StepInfo, Supervised},
};
use tl_nn::{
    Act, Activation, CrossEntropy, Ctx, GradReverse, GrlHandle, Linear, Module, Sequential, Tensor,
};

use crate::{
    Error, Result,
    loss::{self, Single},
    method::{AdaptConfig, Method},
};

/// The objective of a trained method (see [`Method`]).
#[derive(Debug)]
pub struct AdaptObjective<'a> {
    cfg: AdaptConfig,
    supervised: Supervised,
    /// Unlabelled target features.
    target: &'a Tensor,
    /// This epoch's order of the target rows.
    order: Vec<usize>,
    /// Pseudo-labels of the target rows (self-training, SHOT), drawn at each epoch start.
    pseudo: Vec<Option<u32>>,
    discriminator: Option<(Sequential, GrlHandle)>,
    seed: u64,
    /// Figures of the last epoch start: pseudo-labelled rows.
    pub pseudo_labelled: usize,
}

fn to64(x: ArrayView2<'_, f32>) -> Array2<f64> {
    x.mapv(f64::from)
}

fn to32(x: &Array2<f64>) -> Array2<f32> {
    x.mapv(|v| v as f32)
}

/// DANN's λ after a fraction `p` of training: `2 / (1 + exp(−10 p)) − 1` (Ganin et al.).
pub fn dann_lambda(p: f64) -> f32 {
    (2.0 / (1.0 + (-10.0 * p).exp()) - 1.0) as f32
}

impl<'a> AdaptObjective<'a> {
    /// The objective for `cfg.method` (a trained one), with the network's features of
    /// width `features` and `target` holding the target rows' inputs.
    pub fn new(
        cfg: &AdaptConfig,
        tasks: &[tl_head::net::TaskSpec],
        label_smoothing: f32,
        target: &'a Tensor,
        features: usize,
        seed: u64,
    ) -> Result<Self> {
        cfg.check()?;
        if !cfg.method.trained() {
            return Err(Error::setting(
                "method",
                format!("`{}` is fitted in closed form, not trained", cfg.method),
            ));
        }
        if target.shape()[0] == 0 {
            return Err(Error::no_rows("target"));
        }
        let discriminator = (cfg.method == Method::Dann).then(|| {
            let mut rng = tl_core::rng::seeded_rng(seed, "init/discriminator");
            let (grl, handle) = GradReverse::new(0.0);
            let d = Sequential::new()
                .push_named("grl", grl)
                .push_named(
                    "0",
                    Linear::new(features, cfg.discriminator_hidden, &mut rng),
                )
                .push_named("1", Activation::new(Act::Relu))
                .push_named("2", Linear::new(cfg.discriminator_hidden, 2, &mut rng));
            (d, handle)
        });
        Ok(Self {
            cfg: cfg.clone(),
            supervised: Supervised::new(tasks, label_smoothing),
            target,
            order: Vec::new(),
            pseudo: vec![None; target.shape()[0]],
            discriminator,
            seed,
            pseudo_labelled: 0,
        })
    }

    fn weight(&self) -> f64 {
        f64::from(self.cfg.weight())
    }

    /// Target rows paired with batch `b` of an epoch, `k` of them (cycling through the
    /// epoch's order).
    fn target_rows(&self, b: usize, k: usize) -> Vec<usize> {
        let n = self.order.len();
        (0..k).map(|i| self.order[(b * k + i) % n]).collect()
    }

    /// Features and task-0 logits of all target rows, in evaluation mode.
    fn target_outputs(&self, net: &mut HeadNet) -> Result<(Array2<f64>, Array2<f64>)> {
        let (h, z) = tl_head::train::predict_features(net, self.target, 512)?;
        Ok((to64(h.view()), to64(z.slice(s![.., net.columns(0)]))))
    }
}

/// SHOT's clustering pseudo-labels: class centroids of the L2-normalised features
/// weighted by the predictions, each row labelled by its nearest centroid (cosine), then
/// the centroids recomputed from those labels and the rows labelled once more.
pub fn cluster_labels(h: &Array2<f64>, p: &Array2<f64>) -> Vec<u32> {
    let mut f = h.clone();
    f.push_column(ndarray::Array1::ones(h.nrows()).view())
        .expect("one column");
    for mut r in f.rows_mut() {
        let norm = r.dot(&r).sqrt().max(1e-12);
        r /= norm;
    }
    let label = |centroids: &Array2<f64>| -> Vec<u32> {
        let mut c = centroids.clone();
        for mut r in c.rows_mut() {
            let norm = r.dot(&r).sqrt().max(1e-12);
            r /= norm;
        }
        argmax_rows(&f.dot(&c.t()))
    };
    let soft = p.t().dot(&f);
    let first = label(&soft);
    let k = p.ncols();
    let mut onehot = Array2::<f64>::zeros((h.nrows(), k));
    for (i, &y) in first.iter().enumerate() {
        onehot[[i, y as usize]] = 1.0;
    }
    label(&onehot.t().dot(&f))
}

impl Objective for AdaptObjective<'_> {
    fn begin_epoch(&mut self, net: &mut HeadNet, epoch: usize) -> tl_head::Result<()> {
        // The target's order: its own seeded stream per epoch, so a resumed run pairs the
        // same rows.
        let seed = self.seed;
        self.order = (0..self.target.shape()[0]).collect();
        self.order.shuffle(&mut tl_core::rng::seeded_rng(
            seed,
            &format!("target/{epoch}"),
        ));
        let labelling = matches!(self.cfg.method, Method::SelfTrain | Method::Shot);
        if labelling && epoch >= self.cfg.warmup_epochs {
            let (h, z) = self.target_outputs(net).map_err(to_head)?;
            let p = loss::probabilities(z.view());
            self.pseudo = match self.cfg.method {
                Method::SelfTrain => argmax_rows(&p)
                    .into_iter()
                    .zip(p.rows())
                    .map(|(k, r)| (r[k as usize] >= f64::from(self.cfg.threshold)).then_some(k))
                    .collect(),
                _ => cluster_labels(&h, &p).into_iter().map(Some).collect(),
            };
            self.pseudo_labelled = self.pseudo.iter().filter(|p| p.is_some()).count();
        }
        Ok(())
    }

    fn batch(
        &mut self,
        net: &mut HeadNet,
        train: &Labelled<'_>,
        rows: &[usize],
        info: StepInfo,
        ctx: &mut Ctx,
    ) -> tl_head::Result<f64> {
        self.batch_inner(net, train, rows, info, ctx)
            .map_err(to_head)
    }

    fn aux(&mut self) -> Option<&mut dyn Module> {
        self.discriminator
            .as_mut()
            .map(|(d, _)| d as &mut dyn Module)
    }
}

fn to_head(e: Error) -> tl_head::Error {
    match e {
        Error::Head(h) => h,
        other => tl_head::Error::Objective(Box::new(other)),
    }
}

impl AdaptObjective<'_> {
    fn batch_inner(
        &mut self,
        net: &mut HeadNet,
        train: &Labelled<'_>,
        rows: &[usize],
        info: StepInfo,
        ctx: &mut Ctx,
    ) -> Result<f64> {
        let ns = rows.len();
        let trows = self.target_rows(info.batch, ns);
        let xs = train.x.select(Axis(0), rows);
        let xt = self.target.select(Axis(0), &trows);
        let x = ndarray::concatenate(Axis(0), &[xs.view(), xt.view()])
            .map_err(|e| Error::data("target features", e.to_string()))?;
        let (h, logits) = net.forward_features(&x, ctx)?;
        let h = h
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| Error::data("adapter output", "features must be 2-D (a pooled layer)"))?;
        let z = logits
            .into_dimensionality::<ndarray::Ix2>()
            .expect("2-D logits");
        let labels = train.labels_of(rows);
        let (mut total, gs) = self.supervised.loss(net, z.slice(s![..ns, ..]), &labels)?;
        let mut gz = Array2::<f32>::zeros(z.raw_dim());
        gz.slice_mut(s![..ns, ..]).assign(&gs);
        let mut gh: Option<Array2<f32>> = None;
        let w = self.weight();
        let cols = net.columns(0);
        let zt = to64(z.slice(s![ns.., cols.clone()]));
        let add_logit_grad = |single: Single, scale: f64, gz: &mut Array2<f32>| -> f64 {
            let g = to32(&(single.grad * scale));
            let mut part = gz.slice_mut(s![ns.., cols.clone()]);
            part += &g;
            scale * single.loss
        };
        match self.cfg.method {
            Method::None | Method::AdaBn => {}
            Method::Coral | Method::Mmd => {
                let (hs, ht) = (to64(h.slice(s![..ns, ..])), to64(h.slice(s![ns.., ..])));
                let pair = if self.cfg.method == Method::Coral {
                    loss::coral(hs.view(), ht.view())?
                } else {
                    loss::mmd2(hs.view(), ht.view(), &self.cfg.kernel, self.cfg.estimator)?
                };
                total += w * pair.loss;
                let g = ndarray::concatenate(Axis(0), &[pair.source.view(), pair.target.view()])
                    .expect("same width");
                gh = Some(to32(&(g * w)));
            }
            Method::Entropy => total += add_logit_grad(loss::entropy(zt.view())?, w, &mut gz),
            Method::Mcc => {
                total += add_logit_grad(loss::mcc(zt.view(), self.cfg.mcc_temperature)?, w, &mut gz)
            }
            Method::Shot | Method::SelfTrain => {
                if self.cfg.method == Method::Shot {
                    total += add_logit_grad(loss::info_max(zt.view())?, w, &mut gz);
                }
                let pseudo: Vec<Option<u32>> = trows.iter().map(|&i| self.pseudo[i]).collect();
                if pseudo.iter().any(Option::is_some) {
                    let scale = if self.cfg.method == Method::Shot {
                        self.cfg.shot_beta
                    } else {
                        self.cfg.weight()
                    };
                    let zt32 = z.slice(s![ns.., cols.clone()]).to_owned().into_dyn();
                    let (l, g) = CrossEntropy::default().forward_backward(&zt32, &pseudo)?;
                    // CrossEntropy averages over labelled rows: scale to the batch's share.
                    let share = pseudo.iter().filter(|p| p.is_some()).count() as f32 / ns as f32;
                    let g = g.into_dimensionality::<ndarray::Ix2>().expect("2-D") * (scale * share);
                    let mut part = gz.slice_mut(s![ns.., cols.clone()]);
                    part += &g;
                    total += f64::from(scale * share * l);
                }
            }
            Method::Dann => {
                let (d, handle) = self.discriminator.as_mut().expect("built for DANN");
                handle.set(dann_lambda(info.progress()));
                let out = d.forward(&h.clone().into_dyn(), ctx)?;
                let domain: Vec<Option<u32>> =
                    (0..2 * ns).map(|i| Some(u32::from(i >= ns))).collect();
                let (l, g) = CrossEntropy::default().forward_backward(&out, &domain)?;
                let back = d.backward(&(g * w as f32))?;
                total += w * f64::from(l);
                gh = Some(back.into_dimensionality().expect("2-D"));
            }
            Method::CoralClosed | Method::Prior | Method::Propagate => {
                unreachable!("checked in new()")
            }
        }
        net.backward_features(&gz.into_dyn(), gh.map(|g| g.into_dyn()).as_ref())?;
        Ok(total)
    }
}

/// The network's features and task-0 probabilities for `x`, in evaluation mode.
pub fn predict_proba(net: &mut HeadNet, x: &Tensor) -> Result<Array2<f64>> {
    let cols = net.columns(0);
    let z = tl_head::train::predict(net, x, 512)?;
    Ok(loss::probabilities(to64(z.slice(s![.., cols])).view()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tl_nn::ModuleExt;

    #[test]
    fn dann_lambda_ramps_from_zero_towards_one() {
        assert_eq!(dann_lambda(0.0), 0.0);
        assert!(dann_lambda(0.5) > 0.98 && dann_lambda(1.0) < 1.0);
        let ramp: Vec<f32> = (0..=10).map(|i| dann_lambda(i as f64 / 10.0)).collect();
        assert!(ramp.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn cluster_labels_find_separated_groups() {
        // Two groups of features; predictions that only lean the right way.
        let h = ndarray::array![[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]];
        let p = ndarray::array![[0.6, 0.4], [0.55, 0.45], [0.45, 0.55], [0.4, 0.6]];
        assert_eq!(cluster_labels(&h, &p), vec![0, 0, 1, 1]);
    }

    #[test]
    fn the_discriminator_is_trained_with_the_network() {
        // The discriminator's parameters are visible to the optimiser under their names.
        let target = Tensor::zeros(vec![3, 4]);
        let tasks = [tl_head::net::TaskSpec {
            name: "y".into(),
            classes: vec!["a".into(), "b".into()],
            weight: 1.0,
        }];
        let mut o =
            AdaptObjective::new(&AdaptConfig::new(Method::Dann), &tasks, 0.0, &target, 4, 0)
                .expect("builds");
        let names = tl_nn::checkpoint::named_params(o.aux().expect("discriminator"));
        assert!(
            names.contains_key("0.weight") && names.contains_key("2.bias"),
            "{names:?}"
        );
        assert_eq!(
            o.aux().expect("d").param_count(),
            4 * 256 + 256 + 256 * 2 + 2
        );
    }
}
