//! The adaptation methods and their settings (the `[adapt]` table of the config schema).

use serde::{Deserialize, Serialize};

use crate::{
    Error, Result,
    loss::{Estimator, Kernel},
    prior::PriorMethod,
};

/// An adaptation method. Those marked *trained* minimise the source's cross-entropy plus
/// `weight` × their loss on the target rows through `tl-head`'s trainer; the others fit
/// in closed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Source only: the reference every method is compared with (trained, no extra loss).
    None,
    /// Deep CORAL on the adapter's output (trained).
    Coral,
    /// Closed-form CORAL of the source features, then a linear probe (closed form).
    CoralClosed,
    /// MMD² between the domains' adapter outputs, multi-kernel Gaussian (trained).
    Mmd,
    /// Entropy minimisation on the target predictions (trained).
    Entropy,
    /// Minimum class confusion (trained).
    Mcc,
    /// Information maximisation plus clustering pseudo-labels, SHOT-style (trained).
    Shot,
    /// Confidence-thresholded pseudo-labels on the target (trained).
    SelfTrain,
    /// A domain discriminator behind gradient reversal, λ ramped (trained).
    Dann,
    /// Label-shift correction of a source probe's outputs (closed form).
    Prior,
    /// AdaBN: the target's features come through the backbone with every BatchNorm's
    /// statistics re-estimated on the target (the caller extracts them: `tl adapt`); the
    /// head then trains as for `none`, with no extra loss.
    #[serde(rename = "adabn")]
    AdaBn,
    /// Transductive pseudo-labels (closed form): the source probe's target predictions
    /// refined by SHOT's centroid clustering, propagated on the target's k-nearest-neighbour
    /// graph and balanced to a class prior by Sinkhorn; then a probe on the target rows
    /// with those labels ([`crate::propagate`]).
    Propagate,
}

tl_core::named_enum!(Method, "adaptation method", [
    None => "none",
    Coral => "coral",
    CoralClosed => "coral-closed",
    Mmd => "mmd",
    Entropy => "entropy",
    Mcc => "mcc",
    Shot => "shot",
    SelfTrain => "self-train",
    Dann => "dann",
    Prior => "prior",
    AdaBn => "adabn",
    Propagate => "propagate",
]);

impl Method {
    /// Whether the method trains a network (the others fit a probe in closed form).
    pub fn trained(self) -> bool {
        !matches!(
            self,
            Method::CoralClosed | Method::Prior | Method::Propagate
        )
    }

    /// The default weight of the method's loss, from its paper's setting where the scale
    /// carries over (MCC 1, DANN 1, SHOT's β 0.3 on the pseudo-labels and 1 on IM) and
    /// otherwise chosen on the source-validation rule (see [`AdaptConfig`]).
    pub fn default_weight(self) -> f32 {
        match self {
            Method::None
            | Method::CoralClosed
            | Method::Prior
            | Method::AdaBn
            | Method::Propagate => 0.0,
            Method::Coral => 10.0,
            Method::Mmd => 1.0,
            Method::Entropy => 0.1,
            Method::Mcc => 1.0,
            Method::Shot => 1.0,
            Method::SelfTrain => 1.0,
            Method::Dann => 1.0,
        }
    }
}

/// How to adapt. Every setting is chosen without target labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdaptConfig {
    pub method: Method,
    /// The weight of the method's loss; `None` takes [`Method::default_weight`].
    pub weight: Option<f32>,
    /// The MMD kernel.
    pub kernel: Kernel,
    pub estimator: Estimator,
    /// MCC's temperature (2.5 in the paper).
    pub mcc_temperature: f64,
    /// Self-training: pseudo-labels only where the top probability reaches this.
    pub threshold: f32,
    /// SHOT: the weight of the clustering pseudo-labels' cross-entropy (β = 0.3).
    pub shot_beta: f32,
    /// Epochs on the source alone before pseudo-labels are drawn (self-training, SHOT).
    pub warmup_epochs: usize,
    /// Width of DANN's discriminator hidden layer.
    pub discriminator_hidden: usize,
    /// How `prior` estimates the target's class priors.
    pub prior: PriorMethod,
    /// Closed-form CORAL's ε (on features scaled to unit mean variance).
    pub coral_eps: f64,
    /// Standardise each domain's features with its own statistics before the method.
    pub per_domain_standardize: bool,
    /// Which epoch of a trained method is kept.
    pub selection: Selection,
    /// `propagate`: neighbours per row of the target's graph (10).
    pub neighbours: usize,
    /// `propagate`: Zhou et al.'s α, the weight of the neighbours against the seed labels
    /// (0.99, their setting).
    pub propagate_alpha: f64,
    /// `propagate`: the class proportions the pseudo-labels are balanced to.
    pub balance: Balance,
    /// `propagate`: Sinkhorn's entropic regularisation ε (0.05, SwAV's setting).
    pub sinkhorn_eps: f64,
}

/// The class proportions `propagate` balances the target's pseudo-labels to. None of them
/// reads target labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Every class equally often (SHOT's diversity term assumes the same).
    Uniform,
    /// The source's class frequencies.
    Source,
    /// No balancing: the propagated labels as they are.
    None,
}

tl_core::named_enum!(Balance, "class balance", [
    Uniform => "uniform",
    Source => "source",
    None => "none",
]);

/// How a trained method's epoch is chosen, without target labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The last epoch of the fixed schedule (the usual protocol of adaptation papers):
    /// adaptation losses trade a little source accuracy for alignment, so the best
    /// source-validation epoch tends to be one before the alignment took hold.
    Last,
    /// The epoch with the best source-validation accuracy (early stopping).
    SourceVal,
}

tl_core::named_enum!(Selection, "epoch selection", [Last => "last", SourceVal => "source-val"]);

impl Selection {
    pub fn describe(self) -> &'static str {
        match self {
            Selection::Last => "the last epoch of the fixed schedule",
            Selection::SourceVal => "the epoch with the best source-validation accuracy",
        }
    }
}

impl Default for AdaptConfig {
    fn default() -> Self {
        Self {
            method: Method::None,
            weight: None,
            kernel: Kernel::multi_gaussian(),
            estimator: Estimator::Unbiased,
            mcc_temperature: 2.5,
            threshold: 0.9,
            shot_beta: 0.3,
            warmup_epochs: 3,
            discriminator_hidden: 256,
            prior: PriorMethod::Em,
            coral_eps: crate::closed::CORAL_EPS,
            per_domain_standardize: true,
            selection: Selection::Last,
            neighbours: 10,
            propagate_alpha: 0.99,
            balance: Balance::Uniform,
            sinkhorn_eps: 0.05,
        }
    }
}

impl AdaptConfig {
    pub fn new(method: Method) -> Self {
        Self {
            method,
            ..Self::default()
        }
    }

    /// The weight in force.
    pub fn weight(&self) -> f32 {
        self.weight.unwrap_or(self.method.default_weight())
    }

    /// Checks every setting once, before any work.
    pub fn check(&self) -> Result<()> {
        let w = self.weight();
        if !(w.is_finite() && w >= 0.0) {
            return Err(Error::setting(
                "adaptation weight",
                format!("{w} must be ≥ 0"),
            ));
        }
        self.kernel.check()?;
        if !(self.mcc_temperature.is_finite() && self.mcc_temperature > 0.0) {
            return Err(Error::setting(
                "MCC temperature",
                format!("{} must be > 0", self.mcc_temperature),
            ));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(Error::setting(
                "pseudo-label threshold",
                format!("{} is not in [0, 1]", self.threshold),
            ));
        }
        if !(self.shot_beta.is_finite() && self.shot_beta >= 0.0) {
            return Err(Error::setting(
                "SHOT β",
                format!("{} must be ≥ 0", self.shot_beta),
            ));
        }
        if self.method == Method::Dann && self.discriminator_hidden == 0 {
            return Err(Error::setting("discriminator width", "must be ≥ 1"));
        }
        if self.neighbours == 0 {
            return Err(Error::setting("neighbours", "must be ≥ 1"));
        }
        if !(0.0..1.0).contains(&self.propagate_alpha) {
            return Err(Error::setting(
                "propagation α",
                format!("{} is not in [0, 1)", self.propagate_alpha),
            ));
        }
        if !(self.sinkhorn_eps.is_finite() && self.sinkhorn_eps > 0.0) {
            return Err(Error::setting(
                "Sinkhorn ε",
                format!("{} must be > 0", self.sinkhorn_eps),
            ));
        }
        if !(self.coral_eps.is_finite() && self.coral_eps > 0.0) {
            return Err(Error::setting(
                "CORAL ε",
                format!("{} must be > 0", self.coral_eps),
            ));
        }
        Ok(())
    }
}
