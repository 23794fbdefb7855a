//! An in-memory index over one trained version's passages: BM25, and
//! sentence vectors for FAQ questions when the version has them.
//!
//! Lexical ranking is Okapi BM25 (k1 = 1.2, b = 0.75) with the FAQ question
//! and the document title counted three times, since they say what a
//! passage is about. An FAQ may also carry two sentence vectors: its
//! question's, and its question's read together with its answer (customers
//! often ask in the answer's words: "is delivery ever complimentary?" for
//! "do you offer free shipping?"). When the asked question's vector is
//! given, each score is standardised over the version (a z-score); the
//! better of the two vector scores is mixed with the lexical one, so a
//! paraphrase that shares no word with the stored question still finds it.
//!
//! Confidence is separate from rank. For an FAQ with vectors it is the
//! higher cosine similarity of the asked question to the two; otherwise the
//! share of the question's IDF mass the passage contains. A question about
//! something the bot was never taught scores low on both, and that drives
//! the handoff.

use std::collections::HashMap;

use super::{analyzer::Analyzer, embedder::similarity};

const K1: f32 = 1.2;
const B: f32 = 0.75;
const TITLE_WEIGHT: u16 = 3;
/// The lexical share of a mixed score, the better vector score the rest.
/// Measured on the support fixture (tests/fixtures/faq_retail.json) with
/// all-mpnet-base-v2: top-1 is 96 or 97 of 105 anywhere from 0.05 to 0.2,
/// 94 at 0.25 and 94 with vectors alone; BM25 alone misses paraphrases,
/// vectors alone some exact product terms. (Averaging the two vector
/// scores instead of taking the better one peaks as high but falls away
/// faster either side.)
const LEXICAL_SHARE: f32 = 0.15;

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
    /// An FAQ's sentence vectors, when embedded.
    pub vectors: Option<Vectors>,
}

/// Unit-length sentence vectors of one FAQ.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    /// The question alone.
    pub question: Vec<f32>,
    /// The question followed by its answer.
    pub pair: Vec<f32>,
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
    /// Passages with a vector, and the vectors' length.
    embedded: Vec<u32>,
    dimensions: usize,
}

/// BM25 of one question against every passage.
struct Lexical {
    /// Per passage: BM25 score, and the IDF mass of the question it holds.
    scores: Vec<(f32, f32)>,
    touched: Vec<u32>,
    /// The IDF mass of the whole question.
    total_weight: f32,
}

#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    pub passage: &'a Passage,
    pub score: f32,
    /// 0..1: how surely this passage answers the question.
    pub confidence: f32,
    /// Cosine similarity of the question and the closer of the passage's
    /// vectors.
    pub similarity: Option<f32>,
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
        let embedded: Vec<u32> = (0..passages.len() as u32)
            .filter(|&p| passages[p as usize].vectors.is_some())
            .collect();
        let dimensions = embedded
            .first()
            .and_then(|&p| passages[p as usize].vectors.as_ref())
            .map_or(0, |v| v.question.len());
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
            embedded,
            dimensions,
        }
    }

    /// Memory in units of about 1 KiB: one per passage, and two vectors'
    /// 4 bytes a dimension on top.
    pub fn weight(&self) -> usize {
        self.passages.len() + self.embedded.len() * (2 * self.dimensions * 4).div_ceil(1024)
    }

    /// Whether a question's vector would be used: some passages have one.
    pub fn has_vectors(&self) -> bool {
        !self.embedded.is_empty()
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

    /// The best `limit` passages for `question`, best first; mixed with
    /// vector similarity when the question's `vector` is given.
    pub fn search(&self, question: &str, vector: Option<&[f32]>, limit: usize) -> Vec<Hit<'_>> {
        if self.passages.is_empty() || limit == 0 {
            return Vec::new();
        }
        let lexical = self.lexical(question);
        let ranked = match vector.filter(|v| self.has_vectors() && v.len() == self.dimensions) {
            Some(vector) => self.mixed(&lexical, vector),
            None => lexical
                .touched
                .iter()
                .map(|&p| (p, lexical.scores[p as usize].0, None))
                .collect(),
        };
        top(ranked, limit)
            .into_iter()
            .map(|(passage, score, similarity)| {
                let lexical_confidence = lexical.scores[passage as usize].1 / lexical.total_weight.max(f32::EPSILON);
                Hit {
                    passage: &self.passages[passage as usize],
                    score,
                    confidence: similarity.unwrap_or(lexical_confidence).clamp(0.0, 1.0),
                    similarity,
                }
            })
            .collect()
    }

    fn lexical(&self, question: &str) -> Lexical {
        let mut query = self.analyzer.terms(question);
        query.sort_unstable();
        query.dedup();
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
        Lexical {
            scores,
            touched,
            total_weight,
        }
    }

    /// Standardised BM25 and vector scores, mixed; passages with neither a
    /// matching word nor vectors are left out.
    fn mixed(&self, lexical: &Lexical, vector: &[f32]) -> Vec<(u32, f32, Option<f32>)> {
        let n = self.passages.len() as f32;
        let bm25 = lexical.touched.iter().map(|&p| lexical.scores[p as usize].0);
        // Passages without a matching word score 0, and count in the spread.
        let lexical_z = standardiser(bm25, n);
        // (passage, similarity to its question, to its question with answer)
        let similarities: Vec<(u32, f32, f32)> = self
            .embedded
            .iter()
            .filter_map(|&p| {
                let v = self.passages[p as usize].vectors.as_ref()?;
                Some((p, similarity(&v.question, vector), similarity(&v.pair, vector)))
            })
            .collect();
        let m = similarities.len() as f32;
        let question_z = standardiser(similarities.iter().map(|s| s.1), m);
        let pair_z = standardiser(similarities.iter().map(|s| s.2), m);
        let mut mixed: Vec<(u32, f32, Option<f32>)> = Vec::with_capacity(lexical.touched.len() + similarities.len());
        for &(p, question, pair) in &similarities {
            let score = LEXICAL_SHARE * lexical_z(lexical.scores[p as usize].0)
                + (1.0 - LEXICAL_SHARE) * question_z(question).max(pair_z(pair));
            mixed.push((p, score, Some(question.max(pair))));
        }
        for &p in &lexical.touched {
            if self.passages[p as usize].vectors.is_none() {
                mixed.push((p, LEXICAL_SHARE * lexical_z(lexical.scores[p as usize].0), None));
            }
        }
        mixed
    }
}

/// `x -> (x - mean) / deviation` over `values`, of which there are `n`
/// (values left out count as zeros).
fn standardiser(values: impl Iterator<Item = f32>, n: f32) -> impl Fn(f32) -> f32 {
    let (sum, squares) = values.fold((0.0f32, 0.0f32), |(s, q), x| (s + x, q + x * x));
    let n = n.max(1.0);
    let mean = sum / n;
    let deviation = (squares / n - mean * mean).max(0.0).sqrt();
    let deviation = if deviation > f32::EPSILON { deviation } else { 1.0 };
    move |x| (x - mean) / deviation
}
/// The `limit` highest scores, best first; ties go to the earlier passage.
fn top(mut ranked: Vec<(u32, f32, Option<f32>)>, limit: usize) -> Vec<(u32, f32, Option<f32>)> {
    let keep = limit.min(ranked.len());
    if keep == 0 {
        return Vec::new();
    }
    let order = |a: &(u32, f32, Option<f32>), b: &(u32, f32, Option<f32>)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    ranked.select_nth_unstable_by(keep - 1, order);
    ranked.truncate(keep);
    ranked.sort_unstable_by(order);
    ranked
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
            vectors: None,
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
        let hits = index.search("I'd like to cancel an order I placed", None, 3);
        assert_eq!(hits[0].passage.item_id, "kn_1");
        assert!(hits[0].confidence > 0.4, "{}", hits[0].confidence);
    }

    #[test]
    fn a_question_about_something_never_taught_has_low_confidence() {
        let index = index();
        let hits = index.search("What is the capital city of Mongolia?", None, 3);
        assert!(hits.iter().all(|h| h.confidence < 0.2), "{hits:?}");
    }

    #[test]
    fn an_empty_or_function_word_question_finds_nothing() {
        assert!(index().search("how do I?", None, 3).is_empty());
        assert!(Index::build("en", Vec::new()).search("refund", None, 3).is_empty());
    }

    fn with_vectors(vectors: [[f32; 3]; 3]) -> Index {
        let mut passages = vec![
            faq("kn_1", "How do I cancel my order?", "Open the order and choose Cancel."),
            faq("kn_2", "Do you sell gift cards?", "Yes, from 10 to 500 dollars."),
            faq("kn_3", "Do you ship abroad?", "We ship to 40 countries."),
        ];
        for (passage, vector) in passages.iter_mut().zip(vectors) {
            passage.vectors = Some(Vectors {
                question: vector.to_vec(),
                pair: vector.to_vec(),
            });
        }
        Index::build("en", passages)
    }

    #[test]
    fn a_paraphrase_sharing_no_word_is_found_by_its_vector() {
        let index = with_vectors([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        assert!(index.search("purple elephants dance", None, 3).is_empty());
        let hits = index.search("purple elephants dance", Some(&[0.1, 0.8, 0.1]), 3);
        assert_eq!(hits[0].passage.item_id, "kn_2");
        assert_eq!(hits[0].similarity, Some(0.8));
        assert!((hits[0].confidence - 0.8).abs() < 1e-6, "{}", hits[0].confidence);
    }

    #[test]
    fn a_question_asked_in_the_answers_words_is_found_by_the_pair_vector() {
        let mut passages = with_vectors([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).passages;
        for (at, passage) in passages.iter_mut().enumerate() {
            let vectors = passage.vectors.as_mut().expect("with_vectors gives vectors");
            vectors.question.push(0.0);
            vectors.pair.push(0.0);
            if at == 1 {
                // The gift cards' answer is about amounts, as is the question.
                vectors.pair = vec![0.0, 0.6, 0.0, 0.8];
            }
        }
        let index = Index::build("en", passages);
        let hits = index.search("what values can I buy", Some(&[0.0, 0.0, 0.0, 1.0]), 3);
        assert_eq!(hits[0].passage.item_id, "kn_2");
        let similarity = hits[0].similarity.unwrap_or_default();
        assert!(
            (similarity - 0.8).abs() < 1e-6,
            "the closer vector sets confidence: {similarity}"
        );
    }

    #[test]
    fn shared_rare_words_still_count_when_vectors_are_close() {
        let index = with_vectors([[0.6, 0.6, 0.0], [0.6, 0.6, 0.0], [0.0, 0.0, 1.0]]);
        let hits = index.search("cancel the order", Some(&[0.7, 0.7, 0.0]), 3);
        assert_eq!(hits[0].passage.item_id, "kn_1");
    }

    #[test]
    fn vectors_weigh_on_the_cache_as_well_as_passages() {
        assert_eq!(index().weight(), 3);
        let mut passages = vec![faq("kn_1", "q", "a"), faq("kn_2", "r", "b")];
        passages[0].vectors = Some(Vectors {
            question: vec![0.0; 384],
            pair: vec![0.0; 384],
        });
        assert_eq!(Index::build("en", passages).weight(), 2 + 3);
    }

    #[test]
    fn a_vector_of_another_length_is_ignored() {
        let index = with_vectors([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        let hits = index.search("cancel my order", Some(&[0.0, 1.0]), 3);
        assert_eq!(hits[0].passage.item_id, "kn_1");
        assert_eq!(hits[0].similarity, None);
    }
}
