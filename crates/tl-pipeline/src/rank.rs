//! The rank runner: transferability scores of candidate backbones and layers for a
//! labelled dataset, computed without training a head, beside the linear-probe accuracy
//! each candidate actually reaches and each score's rank correlation with it.

use serde::{Deserialize, Serialize};
use tl_adapt::transfer::{h_score, kendall_tau, leep, logme, nce};
use tl_data::{Part, Split, SplitConfig};
use tl_head::{
    net::TaskSpec,
    probe::{ProbeConfig, ProbeData, accuracy, fit_path},
};

use crate::{
    Env, Result,
    config::{ProbeSettings, RankConfig},
    source::{FeatureRequest, feature_source},
    train::{gather_part, tasks_of},
};

/// One candidate's scores and the probe accuracy it reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub model: String,
    pub layer: String,
    pub width: usize,
    /// NaN (`null` in JSON) where the evidence is undefined.
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub logme: f64,
    #[serde(deserialize_with = "tl_core::io::nan_if_null")]
    pub h_score: f64,
    pub nce: Option<f64>,
    pub leep: Option<f64>,
    pub probe_test_accuracy: f64,
    pub probe_c: f64,
}

/// Labelled rows per part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankRows {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// Kendall's τ between each score and the probe accuracy over the candidates (none
/// where fewer than two candidates have the score, or where it is NaN for one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Taus {
    pub logme: Option<f64>,
    pub h_score: Option<f64>,
    pub nce: Option<f64>,
    pub leep: Option<f64>,
}

/// What a ranking found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ranking {
    pub data: String,
    pub task: String,
    pub rows: RankRows,
    pub candidates: Vec<Candidate>,
    pub kendall_tau_with_probe_accuracy: Taus,
}

/// Scores every candidate of `c` on the training rows of a seeded split, then fits each
/// one's exact linear probe (C on validation) for the test accuracy the scores predict.
pub fn rank(c: &RankConfig, env: &Env) -> Result<Ranking> {
    let ds = env.dataset(&c.data)?;
    let task = tasks_of(&ds, c.task.as_slice())?.remove(0);
    let mut sc = SplitConfig::new(&task.name, c.seed);
    sc.budget = c.budget;
    let split = Split::stratified(&ds, &sc)?;
    let on = Scored {
        sub: split.used_rows(&ds),
        split,
        task,
        image_size: c.image_size,
    };
    let mut rows = RankRows {
        train: 0,
        val: 0,
        test: 0,
    };
    let mut out = Vec::new();
    for cand in &c.models {
        let (candidate, r) = score(cand, &on, env)?;
        rows = r;
        out.push(candidate);
    }
    Ok(Ranking {
        data: ds.name.clone(),
        task: on.task.name.clone(),
        rows,
        kendall_tau_with_probe_accuracy: taus(&out),
        candidates: out,
    })
}

/// What every candidate is scored on.
struct Scored {
    split: Split,
    /// The rows the split uses.
    sub: tl_data::Dataset,
    task: TaskSpec,
    image_size: Option<u32>,
}

/// One candidate (`MODEL` or `MODEL:LAYER`): its scores, its probe's accuracy, and the
/// labelled rows per part.
fn score(cand: &str, on: &Scored, env: &Env) -> Result<(Candidate, RankRows)> {
    let (model, layer) = match cand.split_once(':') {
        Some((m, l)) => (m, Some(l.to_string())),
        None => (cand, None),
    };
    let req = |layer: Option<String>| FeatureRequest {
        layer,
        image_size: on.image_size,
        ..FeatureRequest::new(model)
    };
    let tasks = std::slice::from_ref(&on.task);
    let src = feature_source(&req(layer), &on.sub, env)?;
    let part = |p: Part| -> Result<_> { Ok(gather_part(&on.split, p, &src, tasks)?.task_rows(0)) };
    let ((xtr, ytr), (xva, yva), (xte, yte)) =
        (part(Part::Train)?, part(Part::Val)?, part(Part::Test)?);
    let k = on.task.classes.len();
    let lm = logme(xtr.view(), &ytr, k)?;
    let hs = h_score(xtr.view(), &ytr, k)?;
    // The source classifier: the model's logits output, where it has one.
    let logits = tl_hub::Registry::builtin()?
        .get(model)
        .ok()
        .and_then(|e| e.outputs.as_ref().and_then(|o| o.logits.clone()));
    let (nc, le) = match logits {
        Some(node) => {
            let classifier = feature_source(&req(Some(node)), &on.sub, env)?;
            let (z, _) = gather_part(&on.split, Part::Train, &classifier, tasks)?.task_rows(0);
            let p = tl_adapt::loss::probabilities(z.mapv(f64::from).view());
            (
                Some(nce(p.view(), &ytr, k)?),
                Some(leep(p.view(), &ytr, k)?),
            )
        }
        None => (None, None),
    };
    let path = fit_path(
        &ProbeData {
            x: xtr.view(),
            y: &ytr,
            classes: k,
        },
        &ProbeData {
            x: xva.view(),
            y: &yva,
            classes: k,
        },
        &ProbeSettings::default().cs,
        &ProbeConfig::default(),
    )?;
    let acc = accuracy(&path.probe.predict(xte.view()), &yte);
    env.note(format!(
        "{model}:{}: LogME {lm:.4}, H-score {hs:.3}, probe test accuracy {acc:.4}",
        src.layer
    ));
    let rows = RankRows {
        train: ytr.len(),
        val: yva.len(),
        test: yte.len(),
    };
    let candidate = Candidate {
        model: model.to_string(),
        layer: src.layer.clone(),
        width: src.width,
        logme: lm,
        h_score: hs,
        nce: nc,
        leep: le,
        probe_test_accuracy: acc,
        probe_c: path.best_c,
    };
    Ok((candidate, rows))
}

/// Each score's Kendall τ with the probe accuracy.
fn taus(out: &[Candidate]) -> Taus {
    let acc: Vec<f64> = out.iter().map(|c| c.probe_test_accuracy).collect();
    // A score that some candidate lacks, or that is undefined (NaN) for one, ranks nothing.
    let tau = |f: &dyn Fn(&Candidate) -> Option<f64>| -> Option<f64> {
        let v: Option<Vec<f64>> = out.iter().map(|c| f(c).filter(|x| x.is_finite())).collect();
        v.filter(|v| v.len() >= 2).map(|v| kendall_tau(&v, &acc))
    };
    Taus {
        logme: tau(&|c| Some(c.logme)),
        h_score: tau(&|c| Some(c.h_score)),
        nce: tau(&|c| c.nce),
        leep: tau(&|c| c.leep),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(logme: f64, acc: f64) -> Candidate {
        Candidate {
            model: "m".into(),
            layer: "features".into(),
            width: 4,
            logme,
            h_score: acc * 2.0,
            nce: None,
            leep: None,
            probe_test_accuracy: acc,
            probe_c: 1.0,
        }
    }

    #[test]
    fn an_undefined_score_ranks_nothing_and_reads_back() {
        let out = vec![
            candidate(f64::NAN, 0.9),
            candidate(0.5, 0.8),
            candidate(0.2, 0.7),
        ];
        let t = taus(&out);
        assert_eq!(t.logme, None, "a NaN LogME must not be ordered");
        assert_eq!(t.h_score, Some(1.0));
        assert_eq!(t.nce, None);
        // NaN is written as null and read back as NaN, so a ranking always reads back.
        let json = serde_json::to_string(&out[0]).unwrap();
        assert!(json.contains("\"logme\":null"), "{json}");
        let back: Candidate = serde_json::from_str(&json).unwrap();
        assert!(back.logme.is_nan());
        assert_eq!(back.probe_test_accuracy, 0.9);
    }
}
