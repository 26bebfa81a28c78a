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
    let Some(err) = e.downcast_ref::<Error>() else {
        return e.to_string();
    };
    describe_pipeline(err)
}

fn describe_pipeline(err: &Error) -> String {
    match err {
        Error::Setting { key, reason } => Error::describe_setting(key, reason, flag_of),
        Error::Step { step, source } => format!("{step}: {}", describe_pipeline(source)),
        Error::Hub(tl_hub::Error::NoContract { .. }) => {
            format!("{err} (--contract FILE.toml)")
        }
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
}
