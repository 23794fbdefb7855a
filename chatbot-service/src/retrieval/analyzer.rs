//! Text to index terms: Unicode word split, lower case, stop words dropped
//! (English) after the support thesaurus has merged synonyms, Snowball
//! stemming in the bot's language. The same analyzer
//! runs over passages and questions, so both meet on the same terms.

use rust_stemmers::{Algorithm, Stemmer};

use super::thesaurus;

pub struct Analyzer {
    stemmer: Option<Stemmer>,
    english: bool,
}

impl Analyzer {
    /// The analyzer for a BCP 47 tag; languages without a Snowball stemmer
    /// are matched on whole words.
    pub fn for_language(tag: &str) -> Self {
        let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
        let algorithm = match primary.as_str() {
            "en" => Some(Algorithm::English),
            "de" => Some(Algorithm::German),
            "fr" => Some(Algorithm::French),
            "es" => Some(Algorithm::Spanish),
            "pt" => Some(Algorithm::Portuguese),
            "it" => Some(Algorithm::Italian),
            "nl" => Some(Algorithm::Dutch),
            "sv" => Some(Algorithm::Swedish),
            "da" => Some(Algorithm::Danish),
            "no" | "nb" | "nn" => Some(Algorithm::Norwegian),
            "fi" => Some(Algorithm::Finnish),
            "ru" => Some(Algorithm::Russian),
            "ro" => Some(Algorithm::Romanian),
            "hu" => Some(Algorithm::Hungarian),
            "tr" => Some(Algorithm::Turkish),
            _ => None,
        };
        Self {
            stemmer: algorithm.map(Stemmer::create),
            english: primary == "en",
        }
    }

    /// Appends the terms of `text` to `out`, in order, repeats kept.
    pub fn terms_into(&self, text: &str, out: &mut Vec<String>) {
        let mut words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|token| !token.is_empty())
            .map(|token| token.chars().flat_map(char::to_lowercase).collect())
            .collect();
        if self.english {
            thesaurus::canonicalise(&mut words);
        }
        for word in words {
            if self.english && is_english_stop_word(&word) {
                continue;
            }
            let term = match &self.stemmer {
                Some(stemmer) => stemmer.stem(&word).into_owned(),
                None => word,
            };
            out.push(term);
        }
    }

    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.terms_into(text, &mut out);
        out
    }
}

/// Function words that say nothing about what a question is about: the
/// usual English list of search engines, plus the fillers of chat ("please",
/// "something", "possible"). Negations stay: "not delivered" is a topic.
fn is_english_stop_word(word: &str) -> bool {
    matches!(
        word,
        "i" | "me"
            | "my"
            | "myself"
            | "we"
            | "our"
            | "ours"
            | "ourselves"
            | "you"
            | "your"
            | "yours"
            | "yourself"
            | "yourselves"
            | "he"
            | "him"
            | "his"
            | "himself"
            | "she"
            | "her"
            | "hers"
            | "herself"
            | "it"
            | "its"
            | "itself"
            | "they"
            | "them"
            | "their"
            | "theirs"
            | "themselves"
            | "what"
            | "which"
            | "who"
            | "whom"
            | "this"
            | "that"
            | "these"
            | "those"
            | "am"
            | "is"
            | "are"
            | "was"
            | "were"
            | "be"
            | "been"
            | "being"
            | "have"
            | "has"
            | "had"
            | "having"
            | "do"
            | "does"
            | "did"
            | "doing"
            | "a"
            | "an"
            | "the"
            | "and"
            | "but"
            | "if"
            | "or"
            | "because"
            | "as"
            | "until"
            | "while"
            | "of"
            | "at"
            | "by"
            | "for"
            | "with"
            | "about"
            | "against"
            | "between"
            | "into"
            | "through"
            | "during"
            | "before"
            | "after"
            | "above"
            | "below"
            | "to"
            | "from"
            | "up"
            | "down"
            | "in"
            | "out"
            | "on"
            | "off"
            | "over"
            | "under"
            | "again"
            | "further"
            | "then"
            | "once"
            | "here"
            | "there"
            | "when"
            | "where"
            | "why"
            | "how"
            | "all"
            | "any"
            | "both"
            | "each"
            | "few"
            | "more"
            | "most"
            | "other"
            | "some"
            | "such"
            | "nor"
            | "only"
            | "own"
            | "same"
            | "so"
            | "than"
            | "too"
            | "very"
            | "s"
            | "t"
            | "can"
            | "will"
            | "just"
            | "don"
            | "should"
            | "now"
            | "d"
            | "ll"
            | "m"
            | "o"
            | "re"
            | "ve"
            | "y"
            | "could"
            | "would"
            | "might"
            | "must"
            | "shall"
            | "may"
            | "get"
            | "got"
            | "also"
            | "ever"
            | "still"
            | "yet"
            | "something"
            | "anything"
            | "everything"
            | "nothing"
            | "someone"
            | "anyone"
            | "everyone"
            | "somebody"
            | "anybody"
            | "thing"
            | "things"
            | "one"
            | "ones"
            | "else"
            | "please"
            | "hi"
            | "hello"
            | "hey"
            | "thanks"
            | "thank"
            | "want"
            | "wanted"
            | "need"
            | "needed"
            | "like"
            | "know"
            | "tell"
            | "let"
            | "ok"
            | "okay"
            | "possible"
            | "allowed"
            | "able"
            | "way"
            | "im"
            | "really"
            | "actually"
            | "right"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_words_meet_on_their_stems_and_function_words_vanish() {
        let analyzer = Analyzer::for_language("en-GB");
        assert_eq!(analyzer.terms("How do I cancel my Orders?"), ["cancel", "order"]);
        assert_eq!(
            analyzer.terms("cancelled order"),
            analyzer.terms("canceling the orders")
        );
    }

    #[test]
    fn languages_without_a_stemmer_match_whole_lower_case_words() {
        let analyzer = Analyzer::for_language("ja");
        assert_eq!(analyzer.terms("Ship It, NOW"), ["ship", "it", "now"]);
    }
}
