//! BERT's WordPiece tokenizer, which MPNet models use too (with their own
//! marker tokens), as the sentence-embedding models expect it.
//!
//! The scheme is fixed and small (clean, split punctuation and CJK, lower
//! case and strip accents, then greedy longest-match sub-words), so it is
//! written here rather than pulling in the `tokenizers` crate, which would
//! bring three duplicate major versions into the build. Its output matches
//! the reference tokenizer's ids (see the tests in `embedder`).

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// Words longer than this are unknown, as in the reference implementation.
const MAX_WORD_CHARS: usize = 100;

pub struct WordPiece {
    vocab: HashMap<String, u32>,
    lowercase: bool,
    unknown: u32,
    classify: u32,
    separator: u32,
}

/// The marker tokens a model was trained with, by their text.
pub struct Specials {
    pub classify: String,
    pub separator: String,
    pub unknown: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the vocabulary lacks the special token {0}")]
pub struct MissingToken(String);

impl WordPiece {
    /// From a `vocab.txt`: one token per line, the line number its id.
    pub fn new(vocab_text: &str, lowercase: bool, specials: &Specials) -> Result<Self, MissingToken> {
        let vocab: HashMap<String, u32> = vocab_text
            .lines()
            .enumerate()
            .map(|(id, token)| (token.to_owned(), id as u32))
            .collect();
        let special = |name: &str| vocab.get(name).copied().ok_or_else(|| MissingToken(name.to_owned()));
        Ok(Self {
            unknown: special(&specials.unknown)?,
            classify: special(&specials.classify)?,
            separator: special(&specials.separator)?,
            vocab,
            lowercase,
        })
    }

    /// `<s> pieces… </s>` (or `[CLS]`…`[SEP]`), at most `max_tokens` long.
    pub fn encode(&self, text: &str, max_tokens: usize) -> Vec<u32> {
        let mut ids = vec![self.classify];
        let room = max_tokens.saturating_sub(2);
        for word in self.words(text) {
            self.pieces_into(&word, &mut ids);
            if ids.len() > room {
                break;
            }
        }
        ids.truncate(room + 1);
        ids.push(self.separator);
        ids
    }

    /// Normalised words, each punctuation mark and CJK character its own.
    fn words(&self, text: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut current = String::new();
        let flush = |current: &mut String, words: &mut Vec<String>| {
            if !current.is_empty() {
                words.push(std::mem::take(current));
            }
        };
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || is_control(c) {
                continue;
            }
            if c.is_whitespace() {
                flush(&mut current, &mut words);
            } else if is_punctuation(c) || is_cjk(c) {
                flush(&mut current, &mut words);
                words.push(self.normalise(c));
            } else {
                current.push_str(&self.normalise(c));
            }
        }
        flush(&mut current, &mut words);
        words
    }

    fn normalise(&self, c: char) -> String {
        if !self.lowercase {
            return c.to_string();
        }
        c.to_lowercase()
            .nfd()
            .filter(|c| c.general_category() != GeneralCategory::NonspacingMark)
            .collect()
    }

    /// Greedy longest-match sub-words; a word with an unmatchable part is
    /// one unknown token.
    fn pieces_into(&self, word: &str, ids: &mut Vec<u32>) {
        let chars: Vec<(usize, char)> = word.char_indices().collect();
        if chars.len() > MAX_WORD_CHARS {
            ids.push(self.unknown);
            return;
        }
        let mark = ids.len();
        let mut start = 0;
        let mut candidate = String::new();
        while start < chars.len() {
            let mut end = chars.len();
            let found = loop {
                if end == start {
                    break None;
                }
                let from = chars[start].0;
                let to = chars.get(end).map_or(word.len(), |(at, _)| *at);
                candidate.clear();
                if start > 0 {
                    candidate.push_str("##");
                }
                candidate.push_str(&word[from..to]);
                if let Some(&id) = self.vocab.get(&candidate) {
                    break Some(id);
                }
                end -= 1;
            };
            let Some(id) = found else {
                ids.truncate(mark);
                ids.push(self.unknown);
                return;
            };
            ids.push(id);
            start = end;
        }
    }
}

/// Control characters other than the whitespace ones.
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(c.general_category(), GeneralCategory::Control | GeneralCategory::Format)
}

/// All non-alphanumeric ASCII counts, as in BERT, plus Unicode punctuation.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.general_category_group() == GeneralCategoryGroup::Punctuation
}

/// The CJK Unified Ideograph blocks, which BERT splits per character.
fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: &str = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nun\n##aff\n##able\ncafe\n,\n!\nhello\nworld\n東\n京\n##s";

    fn bert() -> Specials {
        Specials {
            classify: "[CLS]".into(),
            separator: "[SEP]".into(),
            unknown: "[UNK]".into(),
        }
    }

    fn tokenizer() -> WordPiece {
        WordPiece::new(VOCAB, true, &bert()).expect("the test vocabulary has the special tokens")
    }

    #[test]
    fn words_split_into_the_longest_known_pieces() {
        assert_eq!(tokenizer().encode("unaffable", 16), [2, 4, 5, 6, 3]);
    }

    #[test]
    fn case_accents_punctuation_and_cjk_are_normalised_and_split() {
        assert_eq!(
            tokenizer().encode("Hello, CAFÉ!\u{200b} 東京", 16),
            [2, 10, 8, 7, 9, 12, 13, 3]
        );
    }

    #[test]
    fn a_word_with_an_unknown_part_is_one_unknown_token() {
        assert_eq!(tokenizer().encode("hellox world", 16), [2, 1, 11, 3]);
    }

    #[test]
    fn long_text_is_cut_but_keeps_its_end_marker() {
        let ids = tokenizer().encode(&"hello ".repeat(50), 8);
        assert_eq!(ids.len(), 8);
        assert_eq!(ids.first(), Some(&2));
        assert_eq!(ids.last(), Some(&3));
    }

    #[test]
    fn a_vocabulary_without_special_tokens_is_refused() {
        assert!(WordPiece::new("hello\nworld", true, &bert()).is_err());
    }
}
