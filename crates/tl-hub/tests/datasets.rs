//! The registry's real datasets load with the class counts their sources document
//! (ASSETS.md: MNIST-5k 500 per class; digits 1,797 rows; Rotten Tomatoes 7,403 fresh,
//! 5,405 rotten, 1,097 plot summaries of which 14 have no text; drug reviews 71 % positive).

use tl_hub::Registry;

fn load(id: &str) -> tl_data::Dataset {
    let home = tl_core::home::tl_home().unwrap();
    let reg = Registry::builtin().unwrap();
    reg.get(id)
        .unwrap()
        .load_dataset(&home)
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask fetch-models {id}`)"))
}

#[test]
fn mnist_5k() {
    let d = load("mnist-5k");
    assert_eq!(d.class_counts(0), (vec![500; 10], 0));
    let tl_data::Content::Pixels {
        width,
        height,
        data,
        ..
    } = &d.rows[0].content
    else {
        panic!()
    };
    assert_eq!((*width, *height), (28, 28));
    assert_eq!(data.iter().copied().max(), Some(255));
}

#[test]
fn sklearn_digits_are_scaled_to_8_bits() {
    let d = load("sklearn-digits");
    assert_eq!(d.rows.len(), 1797);
    assert_eq!(d.class_counts(0).0.iter().sum::<usize>(), 1797);
    let max = d
        .rows
        .iter()
        .map(|r| match &r.content {
            tl_data::Content::Pixels { data, .. } => data.iter().copied().max().unwrap(),
            _ => panic!("digits are pixels"),
        })
        .max();
    assert_eq!(max, Some(255), "16 must map to 255");
}

#[test]
fn rotten_tomatoes_has_two_tasks() {
    let d = load("rotten-tomatoes");
    let s = d.task_index("sentiment").unwrap();
    let o = d.task_index("subjectivity").unwrap();
    assert_eq!(d.class_counts(s), (vec![5405, 7403], 1083));
    assert_eq!(d.class_counts(o), (vec![1083, 12808], 0));
    assert_eq!(d.skipped.len(), 14);
}

#[test]
fn drug_reviews_positive_share() {
    let d = load("drug-reviews");
    assert_eq!(d.rows.len(), 979);
    let (counts, neutral) = d.class_counts(d.task_index("sentiment").unwrap());
    assert_eq!((counts[0], counts[1], neutral), (256, 633, 90));
    let share = counts[1] as f64 / (counts[0] + counts[1]) as f64;
    assert!((share - 0.71).abs() < 0.005, "{share}");
    // HTML entities are decoded and the wrapping quotes removed.
    assert!(d.rows.iter().all(|r| match &r.content {
        tl_data::Content::Text(t) => !t.contains("&rsquo;") && !t.starts_with('"'),
        _ => false,
    }));
}
