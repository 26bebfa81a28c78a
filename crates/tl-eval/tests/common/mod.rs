//! The golden cases of `tests/golden/metrics.json` (made by
//! `tests/reference/metrics_reference.py`), shared by the tests.
#![allow(dead_code)]

use ndarray::Array2;
use serde::Deserialize;
use tl_eval::{EvalOptions, Evaluation, Scored};

#[derive(Deserialize)]
pub struct Golden {
    pub provenance: serde_json::Value,
    pub cases: Vec<Case>,
}

/// One case: the inputs (logits and labels) and what scikit-learn, NumPy and SciPy made
/// of them.
#[derive(Deserialize)]
pub struct Case {
    pub name: String,
    pub classes: usize,
    pub val_logits: Vec<Vec<f64>>,
    pub val_labels: Vec<u32>,
    pub test_logits: Vec<Vec<f64>>,
    pub test_labels: Vec<u32>,
    pub confusion: Vec<Vec<u64>>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f1: Vec<f64>,
    pub support: Vec<u64>,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub macro_f1: f64,
    pub log_loss: f64,
    pub ece: f64,
    pub temperature: f64,
    pub log_loss_scaled: f64,
    pub ece_scaled: f64,
}

pub fn matrix(rows: &[Vec<f64>]) -> Array2<f64> {
    Array2::from_shape_vec((rows.len(), rows[0].len()), rows.concat()).unwrap()
}

pub fn golden() -> Golden {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/metrics.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

impl Case {
    /// tl's evaluation of the case's test logits, the temperature fitted on its
    /// validation logits, with `classes` as class names.
    pub fn evaluate(&self, classes: &[String]) -> Evaluation {
        let (zv, zt) = (matrix(&self.val_logits), matrix(&self.test_logits));
        Evaluation::new(
            classes,
            Scored {
                logits: zt.view(),
                labels: &self.test_labels,
            },
            Some(Scored {
                logits: zv.view(),
                labels: &self.val_labels,
            }),
            EvalOptions::default(),
        )
        .unwrap()
    }
}
