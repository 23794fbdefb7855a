//! Splitting documents into passages: paragraphs first, then sentences, so
//! a passage is a readable answer on its own and short enough to rank well.

/// Longest passage, in characters; a longer sentence is cut at a space.
pub const MAX_PASSAGE_CHARS: usize = 700;

/// The passages of `text`, in order. Never empty for non-blank text.
pub fn split(text: &str) -> Vec<String> {
    let mut passages = Vec::new();
    let mut current = String::new();
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        for sentence in sentences(paragraph) {
            for piece in hard_wrap(sentence) {
                if !current.is_empty() && current.chars().count() + 1 + piece.chars().count() > MAX_PASSAGE_CHARS {
                    passages.push(std::mem::take(&mut current));
                }
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(piece);
            }
        }
        // A paragraph break is a natural end once a passage has some body.
        if current.chars().count() >= MAX_PASSAGE_CHARS / 2 {
            passages.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        passages.push(current);
    }
    passages
}

/// Sentences end at `.`, `!` or `?` followed by whitespace.
fn sentences(paragraph: &str) -> impl Iterator<Item = &str> {
    let mut rest = paragraph;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let bytes = rest.as_bytes();
        let end = (0..bytes.len())
            .find(|&i| matches!(bytes[i], b'.' | b'!' | b'?') && bytes.get(i + 1).is_some_and(u8::is_ascii_whitespace))
            .map_or(rest.len(), |i| i + 1);
        let (sentence, tail) = rest.split_at(end);
        rest = tail.trim_start();
        Some(sentence.trim())
    })
    .filter(|s| !s.is_empty())
}

/// Cuts a sentence longer than a passage at spaces (or anywhere, if it has
/// none) into pieces that fit.
fn hard_wrap(sentence: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = sentence;
    while rest.chars().count() > MAX_PASSAGE_CHARS {
        let limit = rest
            .char_indices()
            .nth(MAX_PASSAGE_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let cut = rest[..limit].rfind(' ').filter(|&i| i > 0).unwrap_or(limit);
        pieces.push(rest[..cut].trim());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_documents_are_one_passage() {
        assert_eq!(
            split("Returns are free.\n\nWithin 30 days."),
            ["Returns are free. Within 30 days."]
        );
    }

    #[test]
    fn long_documents_split_at_sentences_into_passages_that_fit() {
        let sentence = "Orders ship from our warehouse within two business days of payment. ";
        let text = sentence.repeat(40);
        let passages = split(&text);
        assert!(passages.len() > 1);
        for passage in &passages {
            assert!(passage.chars().count() <= MAX_PASSAGE_CHARS);
            assert!(passage.ends_with('.'), "{passage:?} ends mid-sentence");
        }
        let joined: String = passages.join(" ");
        assert_eq!(
            joined.split_whitespace().count(),
            text.split_whitespace().count(),
            "no words lost"
        );
    }

    #[test]
    fn a_sentence_without_an_end_is_cut_at_spaces() {
        let text = "word ".repeat(500);
        let passages = split(&text);
        assert!(passages.iter().all(|p| p.chars().count() <= MAX_PASSAGE_CHARS));
        assert_eq!(
            passages.iter().map(|p| p.split_whitespace().count()).sum::<usize>(),
            500
        );
    }
}
