//! The library names settings by their config keys; a person typed flags. This module
//! says errors in the terms of the command line.

use tl_pipeline::Error;

/// The flag that sets a config key (`train.augment` → `--augment-*`, `pretrained_lr` →
/// `--pretrained-lr`, `probe.cs` → `--cs`).
pub fn flag_of(key: &str) -> String {
    match key {
        "train.augment" => "--augment-*".into(),
        _ => format!(
            "--{}",
            key.rsplit('.').next().unwrap_or(key).replace('_', "-")
        ),
    }
}

/// The top-level error as a person reads it: a setting by its flag, a model without a
/// contract with the flag that supplies one; anything else as the library says it.
pub fn describe(e: &anyhow::Error) -> String {
    let mut text = match e.downcast_ref::<Error>() {
        Some(err) => describe_pipeline(err),
        None => e.to_string(),
    };
    // The runtime names the device it could not use; the person typed --device.
    let device = e
        .downcast_ref::<Error>()
        .and_then(unusable_device)
        .or_else(|| match e.downcast_ref::<tl_runtime::Error>() {
            Some(tl_runtime::Error::CudaUnavailable { requested, .. }) => Some(*requested),
            _ => None,
        });
    // Fetching offline is the fetch commands' --from.
    let hub = e
        .downcast_ref::<tl_hub::Error>()
        .or_else(|| match e.downcast_ref::<Error>() {
            Some(Error::Hub(h)) => Some(h),
            _ => None,
        });
    if hub.is_some_and(tl_hub::Error::local_directory_helps) {
        text.push_str(" (`tl models fetch --from DIR` fetches from a local directory)");
    }
    if let Some(requested) = device {
        text = text.replace(
            &format!("device `{requested}` cannot be used"),
            &format!("--device {requested} cannot be used"),
        );
    }
    text
}

/// The device the runtime could not use, wherever the pipeline's error holds it.
fn unusable_device(err: &Error) -> Option<tl_core::Device> {
    match err {
        Error::Runtime(tl_runtime::Error::CudaUnavailable { requested, .. })
        | Error::Features(tl_features::Error::Runtime(tl_runtime::Error::CudaUnavailable {
            requested,
            ..
        })) => Some(*requested),
        Error::Step { source, .. } => unusable_device(source),
        _ => None,
    }
}

fn describe_pipeline(err: &Error) -> String {
    match err {
        Error::Setting { key, reason } => Error::describe_setting(key, reason, flag_of),
        Error::Step { step, source } => format!("{step}: {}", describe_pipeline(source)),
        Error::Hub(tl_hub::Error::NoContract { .. }) => {
            format!("{err} (--contract FILE.toml)")
        }
        Error::Offline { .. } => format!(
            "{err} (--offline; run without it to fetch on first use, or fetch first: `tl models fetch ID`, `tl data fetch NAME`)"
        ),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_become_the_flags_that_set_them() {
        assert_eq!(flag_of("pretrained_lr"), "--pretrained-lr");
        assert_eq!(flag_of("probe.cs"), "--cs");
        assert_eq!(flag_of("train.augment"), "--augment-*");
        assert_eq!(flag_of("target_labels"), "--target-labels");
        assert_eq!(flag_of("head.hidden"), "--hidden");
        let e = anyhow::Error::new(Error::setting("layer_decay", "2 must be in (0, 1]"));
        assert_eq!(describe(&e), "--layer-decay 2 must be in (0, 1]");
        // Other settings named in the reason become flags too; the library names keys.
        let e = Error::setting("init", "random applies to ({finetune} last|all)");
        assert_eq!(
            e.to_string(),
            "`init` random applies to (`finetune` last|all)"
        );
        assert_eq!(
            describe(&anyhow::Error::new(e)),
            "--init random applies to (--finetune last|all)"
        );
    }

    #[test]
    fn an_unusable_device_is_said_as_the_flag_wherever_the_error_holds_it() {
        let unusable = || tl_runtime::Error::CudaUnavailable {
            requested: tl_core::Device::Cuda { id: 1 },
            reason: "no GPU".into(),
        };
        assert_eq!(
            unusable().to_string(),
            "device `cuda:1` cannot be used: no GPU"
        );
        let direct = anyhow::Error::new(unusable());
        assert_eq!(describe(&direct), "--device cuda:1 cannot be used: no GPU");
        let nested = Error::from(tl_features::Error::Runtime(unusable())).in_step("extraction");
        assert_eq!(
            describe(&anyhow::Error::new(nested)),
            "extraction: --device cuda:1 cannot be used: no GPU"
        );
    }

    #[test]
    fn a_fetch_that_a_local_directory_would_rescue_names_the_flag() {
        let e = tl_hub::Error::PipMissing {
            python: "python3".into(),
            reason: "not found".into(),
        };
        assert!(!e.to_string().contains("--from"), "{e}");
        let text = describe(&anyhow::Error::new(Error::from(e)));
        assert!(
            text.ends_with("(`tl models fetch --from DIR` fetches from a local directory)"),
            "{text}"
        );
    }
}
