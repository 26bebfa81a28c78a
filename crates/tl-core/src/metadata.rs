//! The `metadata_props` keys through which ONNX files written by `tl` describe
//! themselves: one name per key, read and written only through these constants.

/// The `tl` version that wrote the file.
pub const VERSION: &str = "tl.version";
/// The input contract (JSON of [`crate::InputContract`]).
pub const INPUT_CONTRACT: &str = "tl.input_contract";
/// Class names: a JSON list for one task, a map from task to list for several.
pub const CLASS_NAMES: &str = "tl.class_names";
/// The tasks (JSON list of name, classes and weight), in output order.
pub const TASKS: &str = "tl.tasks";
/// The head's spec (JSON).
pub const HEAD: &str = "tl.head";
/// The sha256 of the backbone the file was built from.
pub const SOURCE_SHA256: &str = "tl.source_sha256";
/// The registry id (or path) of that backbone.
pub const SOURCE_MODEL: &str = "tl.source_model";
/// The tokenizer file beside a text model, by name.
pub const TOKENIZER: &str = "tl.tokenizer";
/// How texts are cut before the model (`sentences`: each text pools its sentences').
pub const SEGMENTS: &str = "tl.segments";
/// A converted CNN's architecture name.
pub const ARCHITECTURE: &str = "tl.architecture";
/// A converted CNN's BatchNorm form (`folded` or `kept`).
pub const BATCHNORM: &str = "tl.batchnorm";
/// What an AdaBN-adapted backbone was adapted on (JSON).
pub const ADABN: &str = "tl.adabn";
/// The file's own sha256: of the model's protobuf encoding without this entry. Written
/// last by the export; a file whose bytes changed since fails to load.
pub const SELF_SHA256: &str = "tl.sha256";
/// The prefix every `tl` key starts with.
pub const PREFIX: &str = "tl.";

/// The output of an exported single-task model: class probabilities.
pub const PROBABILITIES: &str = "probabilities";

/// The probabilities output of task `task` in an exported model with `tasks` tasks.
pub fn probabilities_output(task: &str, tasks: usize) -> String {
    if tasks == 1 {
        PROBABILITIES.to_string()
    } else {
        format!("{PROBABILITIES}.{task}")
    }
}
