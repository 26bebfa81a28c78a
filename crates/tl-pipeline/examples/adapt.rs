//! A domain-adaptation job through the library: MNIST digits (labelled source) to the
//! scikit-learn optical digits (target, unlabelled in training), closed-form CORAL on
//! EfficientNet-Lite0 features, against the source-only probe.
//!
//! `cargo run -p tl-pipeline --example adapt [OUT_DIR]` (the test command runs it).

use std::path::PathBuf;

use tl_adapt::Method;
use tl_core::Named;
use tl_pipeline::{Env, adapt::adapt, config::AdaptRunConfig};

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or("runs/example-adapt".into()),
    );
    let home = tl_core::home::tl_home()?;
    let registry = tl_hub::Registry::builtin()?;
    // Notes and progress go nowhere by default; pip's own output to TL_HOME/logs/.
    let fetch = tl_hub::FetchOptions::new(home.clone());
    let ids = [
        "onnxruntime",
        "efficientnet-lite0",
        "mnist-5k",
        "sklearn-digits-padded",
    ];
    tl_hub::Fetcher::new(registry, fetch).fetch(&ids.map(String::from))?;
    let env = Env::new(home);
    // 20 labelled source rows per class, features at 64 px; the target's labels are read
    // only to score.
    let base = AdaptRunConfig {
        image_size: Some(64),
        budget: Some(20),
        ..AdaptRunConfig::default()
    };
    for method in [Method::None, Method::CoralClosed] {
        let mut c = base.clone();
        c.adapt.method = method;
        let o = adapt(&c, Some(&out.join(method.name())), None, &env)?;
        let t = o
            .metrics
            .target_scores
            .as_ref()
            .expect("the digits are labelled");
        println!(
            "{:<13} target accuracy {:.4} [{:.4}, {:.4}], proxy A-distance {:.3}",
            method.name(),
            t.accuracy.value,
            t.accuracy.low,
            t.accuracy.high,
            o.metrics.shift_before.proxy_a_distance
        );
    }
    Ok(())
}
