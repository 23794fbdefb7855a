//! An in-memory BM25 index over one trained version's passages.
//!
//! Ranking is Okapi BM25 (k1 = 1.2, b = 0.75) with the FAQ question and the
//! document title counted twice, since they say what a passage is about.
//! Confidence is separate from rank: the share of the question's IDF mass
//! that the best passage contains. A question about something the bot was
//! never taught is mostly words the corpus lacks, so its confidence is low
//! however the scores happen to fall; that is what drives the handoff.

use std::collections::HashMap;

use super::analyzer::Analyzer;

const K1: f32 = 1.2;
const B: f32 = 0.75;
const TITLE_WEIGHT: u16 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Document,
    Faq,
}

impl Kind {
    pub fn parse(text: &str) -> Self {
        if text == "faq" { Self::Faq } else { Self::Document }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Document => "document",
            Self::Faq => "faq",
        }
    }
}

/// One passage as trained: a document chunk, or a whole FAQ pair.
#[derive(Debug, Clone)]
pub struct Passage {
    pub item_id: String,
    pub kind: Kind,
    /// Document title or FAQ question.
    pub title: String,
    /// Passage text or FAQ answer.
    pub body: String,
}

#[derive(Debug, Clone, Copy)]
struct Posting {
    passage: u32,
    frequency: u16,
}

pub struct Index {
    analyzer: Analyzer,
    passages: Vec<Passage>,
    terms: HashMap<String, u32>,
    postings: Vec<Vec<Posting>>,
    lengths: Vec<u32>,
    average_length: f32,
}

#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    pub passage: &'a Passage,
    pub score: f32,
    /// 0..1: the share of the question's weight found in this passage.
    pub confidence: f32,
}

impl Index {
    pub fn build(language: &str, passages: Vec<Passage>) -> Self {
        let analyzer = Analyzer::for_language(language);
        let mut terms: HashMap<String, u32> = HashMap::new();
        let mut postings: Vec<Vec<Posting>> = Vec::new();
        let mut lengths = Vec::with_capacity(passages.len());
        let mut scratch = Vec::new();
        let mut counts: HashMap<u32, u16> = HashMap::new();
        for (number, passage) in passages.iter().enumerate() {
            counts.clear();
            let mut length = 0u32;
            for (text, weight) in [(&passage.title, TITLE_WEIGHT), (&passage.body, 1)] {
                scratch.clear();
                analyzer.terms_into(text, &mut scratch);
                length += scratch.len() as u32 * u32::from(weight);
                for term in scratch.drain(..) {
                    let next = terms.len() as u32;
                    let id = *terms.entry(term).or_insert(next);
                    if id == next {
                        postings.push(Vec::new());
                    }
                    let count = counts.entry(id).or_default();
                    *count = count.saturating_add(weight);
                }
            }
            for (&term, &frequency) in &counts {
                postings[term as usize].push(Posting {
                    passage: number as u32,
                    frequency,
                });
            }
            lengths.push(length);
        }
        let average_length = if lengths.is_empty() {
            1.0
        } else {
            (lengths.iter().map(|&l| f64::from(l)).sum::<f64>() / lengths.len() as f64).max(1.0) as f32
        };
        Self {
            analyzer,
            passages,
            terms,
            postings,
            lengths,
            average_length,
        }
    }

    pub fn len(&self) -> usize {
        self.passages.len()
    }

    /// Inverse document frequency; a term the corpus lacks gets the most.
    fn idf(&self, document_frequency: usize) -> f32 {
        let n = self.passages.len() as f32;
        let df = document_frequency as f32;
        ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
    }

    /// The best `limit` passages for `question`, best first.
    pub fn search(&self, question: &str, limit: usize) -> Vec<Hit<'_>> {
        let mut query = self.analyzer.terms(question);
        query.sort_unstable();
        query.dedup();
        if query.is_empty() || self.passages.is_empty() {
            return Vec::new();
        }
        let mut total_weight = 0.0f32;
        // Dense accumulators: common words touch most passages, and an
        // array beats hashing at that scale.
        let mut scores: Vec<(f32, f32)> = vec![(0.0, 0.0); self.passages.len()];
        let mut touched: Vec<u32> = Vec::new();
        for term in &query {
            let Some(&id) = self.terms.get(term) else {
                total_weight += self.idf(0);
                continue;
            };
            let list = &self.postings[id as usize];
            let idf = self.idf(list.len());
            total_weight += idf;
            for posting in list {
                let tf = f32::from(posting.frequency);
                let length = self.lengths[posting.passage as usize] as f32;
                let norm = K1 * (1.0 - B + B * length / self.average_length);
                let entry = &mut scores[posting.passage as usize];
                if entry.1 == 0.0 {
                    touched.push(posting.passage);
                }
                entry.0 += idf * tf * (K1 + 1.0) / (tf + norm);
                entry.1 += idf;
            }
        }
        let mut hits: Vec<(u32, f32, f32)> = touched
            .into_iter()
            .map(|p| (p, scores[p as usize].0, scores[p as usize].1))
            .collect();
        let keep = limit.min(hits.len());
        if keep == 0 {
            return Vec::new();
        }
        hits.select_nth_unstable_by(keep - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(keep);
        hits.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.into_iter()
            .map(|(passage, score, weight)| Hit {
                passage: &self.passages[passage as usize],
                score,
                confidence: (weight / total_weight).clamp(0.0, 1.0),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faq(id: &str, question: &str, answer: &str) -> Passage {
        Passage {
            item_id: id.into(),
            kind: Kind::Faq,
            title: question.into(),
            body: answer.into(),
        }
    }

    fn index() -> Index {
        Index::build(
            "en",
            vec![
                faq("kn_1", "How do I cancel my order?", "Open the order and choose Cancel."),
                faq(
                    "kn_2",
                    "When will my refund arrive?",
                    "Refunds reach your card in 5 to 10 days.",
                ),
                faq("kn_3", "Do you ship abroad?", "We ship to 40 countries."),
            ],
        )
    }

    #[test]
    fn the_passage_sharing_the_rarest_words_ranks_first_with_high_confidence() {
        let index = index();
        let hits = index.search("I'd like to cancel an order I placed", 3);
        assert_eq!(hits[0].passage.item_id, "kn_1");
        assert!(hits[0].confidence > 0.4, "{}", hits[0].confidence);
    }

    #[test]
    fn a_question_about_something_never_taught_has_low_confidence() {
        let index = index();
        let hits = index.search("What is the capital city of Mongolia?", 3);
        assert!(hits.iter().all(|h| h.confidence < 0.2), "{hits:?}");
    }

    #[test]
    fn an_empty_or_function_word_question_finds_nothing() {
        assert!(index().search("how do I?", 3).is_empty());
        assert!(Index::build("en", Vec::new()).search("refund", 3).is_empty());
    }
}
