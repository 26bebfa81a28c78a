//! Texts cut into sentences: the unit a long target text is embedded in when the source's
//! texts are single sentences.
//!
//! A sentence encoder's mean-pooled embedding of a long review dilutes the sentences that
//! carry its polarity among the ones that describe; a classifier trained on one-sentence
//! snippets reads each sentence of the review better than the whole. [`segment`] turns
//! each text row into sentence rows (unlabelled, each remembering its document) and
//! [`Segments::Auto`] decides from the lengths alone, never from labels.
//!
//! ```
//! use tl_data::segment::sentences;
//!
//! let s = sentences("It worked. No side effects!\nWould take again?  Yes");
//! assert_eq!(s, ["It worked.", "No side effects!", "Would take again?", "Yes"]);
//! ```

use serde::{Deserialize, Serialize};

use crate::{Content, Dataset, Error, Result, Row};

/// How target texts are cut before they are embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Segments {
    /// Each text is one row.
    None,
    /// Each sentence is a row; a document's prediction pools its sentences'.
    Sentences,
    /// Sentences when the target's median text is more than
    /// [`AUTO_LENGTH_RATIO`] times as long (in words) as the source's; images never.
    #[default]
    Auto,
}

tl_core::named_enum!(Segments, "segmentation", [None => "none", Sentences => "sentences", Auto => "auto"]);

impl Segments {
    /// `Auto` resolved for a target of median length `target` words and a source of
    /// `source` words (`None`: not text). `None` and `Sentences` stay as they are.
    pub fn resolve(self, source: Option<f64>, target: Option<f64>) -> Self {
        match (self, source, target) {
            (Self::Auto, Some(s), Some(t)) if t > AUTO_LENGTH_RATIO * s.max(1.0) => Self::Sentences,
            (Self::Auto, ..) => Self::None,
            (other, ..) => other,
        }
    }
}

/// `Segments::Auto` cuts the target into sentences when its median text is more than this
/// many times as long as the source's: a review of several sentences against one-sentence
/// snippets (drug reviews: a median of 85 words against Rotten Tomatoes' 18).
pub const AUTO_LENGTH_RATIO: f64 = 2.0;

/// Sentences of `text`: a cut after `.`, `!` or `?` followed by white space, and at every
/// line break; pieces are trimmed and those under 2 characters dropped. A text with no
/// piece left is one sentence (itself, trimmed).
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev: Option<char> = None;
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        let t = cur.trim();
        if t.chars().count() >= 2 {
            out.push(t.to_string());
        }
        cur.clear();
    };
    for ch in text.chars() {
        let line_break = ch == '\n' || ch == '\r';
        if line_break || (ch.is_whitespace() && matches!(prev, Some('.' | '!' | '?'))) {
            flush(&mut cur, &mut out);
        } else {
            cur.push(ch);
        }
        prev = Some(ch);
    }
    flush(&mut cur, &mut out);
    if out.is_empty() {
        out.push(text.trim().to_string());
    }
    out
}

/// The median number of white-space-separated words of the texts in `rows`; `None` when
/// any row is not a text (or there are none).
pub fn median_words<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Option<f64> {
    let mut n: Vec<usize> = Vec::new();
    for r in rows {
        match &r.content {
            Content::Text(t) => n.push(t.split_whitespace().count()),
            _ => return None,
        }
    }
    if n.is_empty() {
        return None;
    }
    n.sort_unstable();
    let m = n.len() / 2;
    Some(if n.len() % 2 == 1 {
        n[m] as f64
    } else {
        (n[m - 1] + n[m]) as f64 / 2.0
    })
}

/// Sentence rows of text `docs`, in order: row `i` of the result belongs to document
/// `owner[i]` (its index in `docs`). Sentence rows carry no labels and have the id
/// `DOC#sK`.
#[derive(Debug, Clone)]
pub struct Segmented {
    pub dataset: Dataset,
    pub owner: Vec<usize>,
}

/// Cuts every row of `docs` into [`sentences`]; the dataset's name, hash and tasks are
/// `like`'s. A row that is not a text is an error naming it.
pub fn segment<'a>(like: &Dataset, docs: impl IntoIterator<Item = &'a Row>) -> Result<Segmented> {
    let mut rows = Vec::new();
    let mut owner = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        let Content::Text(t) = &d.content else {
            return Err(Error::Invalid(format!(
                "row `{}` of `{}` is not a text: only texts are cut into sentences",
                d.id, like.name
            )));
        };
        for (k, s) in sentences(t).into_iter().enumerate() {
            rows.push(Row {
                id: format!("{}#s{k}", d.id),
                content: Content::Text(s),
                labels: vec![None; like.tasks.len()],
            });
            owner.push(i);
        }
    }
    Ok(Segmented {
        dataset: Dataset {
            rows,
            skipped: Vec::new(),
            ..like.clone()
        },
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Task;
    use tl_core::Named;

    fn text(id: &str, t: &str, label: u32) -> Row {
        Row {
            id: id.into(),
            content: Content::Text(t.into()),
            labels: vec![Some(label)],
        }
    }

    #[test]
    fn cuts_after_terminal_punctuation_and_line_breaks() {
        assert_eq!(
            sentences("Dose 2.5 mg. Helped a lot!! Really?\r\nyes\n\n."),
            ["Dose 2.5 mg.", "Helped a lot!!", "Really?", "yes"]
        );
        // No cut inside a number or an abbreviation followed by no space.
        assert_eq!(sentences("e.g.it works"), ["e.g.it works"]);
        // Nothing of 2 characters: the text itself.
        assert_eq!(sentences("  ! "), ["!"]);
        assert_eq!(sentences(""), [""]);
    }

    #[test]
    fn segment_keeps_owners_in_order_and_drops_labels() {
        let like = Dataset {
            name: "d".into(),
            sha256: "h".into(),
            tasks: vec![Task {
                name: "t".into(),
                classes: vec!["a".into(), "b".into()],
            }],
            rows: vec![],
            skipped: vec![],
        };
        let docs = [text("r1", "One. Two.", 1), text("r2", "Three", 0)];
        let s = segment(&like, &docs).unwrap();
        assert_eq!(s.owner, [0, 0, 1]);
        let ids: Vec<&str> = s.dataset.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r1#s0", "r1#s1", "r2#s0"]);
        assert!(s.dataset.rows.iter().all(|r| r.labels == [None]));
        assert_eq!(s.dataset.sha256, "h");
        let img = Row {
            id: "x.png".into(),
            content: Content::ImageFile("x.png".into()),
            labels: vec![None],
        };
        let e = segment(&like, [&img]).unwrap_err().to_string();
        assert!(e.contains("x.png"), "{e}");
    }

    #[test]
    fn auto_cuts_only_texts_much_longer_than_the_source() {
        let short = [text("a", "one two three", 0), text("b", "one", 0)];
        let long = [text("c", &"w ".repeat(9), 0)];
        let ms = median_words(&short);
        assert_eq!(ms, Some(2.0));
        let ml = median_words(&long);
        assert_eq!(ml, Some(9.0));
        assert_eq!(Segments::Auto.resolve(ms, ml), Segments::Sentences);
        assert_eq!(Segments::Auto.resolve(ml, ms), Segments::None);
        assert_eq!(Segments::Auto.resolve(ms, Some(4.0)), Segments::None);
        assert_eq!(Segments::Auto.resolve(None, ml), Segments::None);
        assert_eq!(Segments::Sentences.resolve(None, None), Segments::Sentences);
        assert_eq!(Segments::None.resolve(ms, ml), Segments::None);
        let img = Row {
            id: "x".into(),
            content: Content::ImageFile("x".into()),
            labels: vec![None],
        };
        assert_eq!(median_words([&img]), None);
        assert_eq!(median_words(std::iter::empty::<&Row>()), None);
        assert!("paragraphs".parse::<Segments>().is_err());
        for s in [Segments::None, Segments::Sentences, Segments::Auto] {
            assert_eq!(s.name().parse::<Segments>().unwrap(), s);
        }
    }
}
