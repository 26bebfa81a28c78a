//! A run fetches the registry entries it needs on first use, or, offline, fails naming
//! every one missing; here from a local directory holding the pinned file (tests never
//! reach the network), into a fresh `TL_HOME`.

use tl_pipeline::{Env, Error, Fetching, config::RunConfig, train::train};

#[test]
fn a_dataset_is_fetched_on_first_use_and_offline_names_what_is_missing() {
    let real = tl_core::home::tl_home().unwrap();
    // The pinned file itself (its sha256 is checked as for any source).
    let from = real.join("datasets/sklearn-digits");
    assert!(
        from.join("digits.csv.gz").is_file(),
        "cargo xtask test fetches sklearn-digits first"
    );
    let home = tempfile::tempdir().unwrap();

    // Offline: nothing is fetched, and the error names the entry.
    let offline = Env::new(home.path()).with_fetching(Fetching::Offline);
    match offline.dataset("sklearn-digits") {
        Err(Error::Offline { missing }) => assert_eq!(missing, ["sklearn-digits"]),
        other => panic!("expected Error::Offline, got {other:?}"),
    }
    assert!(
        !home.path().join("datasets").exists(),
        "offline wrote into TL_HOME"
    );
    // A whole run stops at the first entry it lacks, before any work.
    let cfg = RunConfig {
        data: "sklearn-digits".into(),
        ..RunConfig::default()
    };
    let err = train(&cfg, &home.path().join("run"), None, &offline).unwrap_err();
    assert!(
        matches!(&err, Error::Offline { missing } if missing == &["sklearn-digits"]),
        "{err}"
    );

    // On first use: fetched (from the directory), checked, loaded; then present.
    let env = Env::new(home.path()).with_fetching(Fetching::FromDirectory(from));
    let ds = env.dataset("sklearn-digits").unwrap();
    assert_eq!(ds.rows.len(), 1797);
    assert_eq!(
        std::fs::read(home.path().join("datasets/sklearn-digits/digits.csv.gz")).unwrap(),
        std::fs::read(real.join("datasets/sklearn-digits/digits.csv.gz")).unwrap()
    );
    // Now even offline finds it.
    assert_eq!(offline.dataset("sklearn-digits").unwrap().rows.len(), 1797);
    // Paths are never fetched: a missing one is the resolver's error.
    let err = offline.dataset("no/such/folder").unwrap_err().to_string();
    assert!(err.contains("no/such/folder"), "{err}");
}
