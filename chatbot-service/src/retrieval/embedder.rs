//! Sentence embeddings from a local BERT-family model, run on the CPU.
//!
//! Built for sentence-transformers models such as all-MiniLM-L6-v2: a
//! directory with `config.json`, `model.safetensors` and `vocab.txt`. A
//! sentence's vector is the mean of its token states, normalised to unit
//! length, so a dot product is the cosine similarity. Embedding is CPU work;
//! async callers run it on the blocking pool.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};

use super::wordpiece::WordPiece;

/// FAQ questions and chat messages are short; longer text is cut here.
pub const MAX_TOKENS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum EmbedderError {
    #[error("the embedding model in {dir}: {reason}")]
    Load { dir: PathBuf, reason: String },
    #[error("embedding text: {0}")]
    Run(#[from] candle_core::Error),
}

pub struct Embedder {
    model: BertModel,
    tokenizer: WordPiece,
    id: String,
    dimensions: usize,
}

impl Embedder {
    pub fn load(dir: &Path) -> Result<Self, EmbedderError> {
        let fail = |reason: String| EmbedderError::Load {
            dir: dir.to_owned(),
            reason,
        };
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| fail(format!("reading {name}: {e}")));
        let config: Config =
            serde_json::from_slice(&read("config.json")?).map_err(|e| fail(format!("config.json: {e}")))?;
        let vocab = String::from_utf8(read("vocab.txt")?).map_err(|e| fail(format!("vocab.txt: {e}")))?;
        let tokenizer = WordPiece::new(&vocab, lowercases(dir)).map_err(|e| fail(e.to_string()))?;
        let weights = read("model.safetensors")?;
        // Vectors from different weights are not comparable; the digest
        // names the model so a version trained with another one is noticed.
        let digest = Sha256::digest(&weights);
        let id = format!("sha256:{}", hex(&digest[..8]));
        let builder = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let model = BertModel::load(builder, &config).map_err(|e| fail(format!("model.safetensors: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            id,
            dimensions: config.hidden_size,
        })
    }

    /// Names the weights, so vectors are only compared with their kind.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// One unit vector per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encoded: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenizer.encode(t, MAX_TOKENS)).collect();
        let width = encoded.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(texts.len() * width);
        let mut mask = Vec::with_capacity(texts.len() * width);
        for row in &encoded {
            ids.extend(row.iter().copied().chain(std::iter::repeat_n(0, width - row.len())));
            mask.extend((0..width).map(|i| u32::from(i < row.len())));
        }
        let shape = (texts.len(), width);
        let ids = Tensor::from_vec(ids, shape, &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, shape, &Device::Cpu)?;
        let states = self.model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
        // Mean over the real tokens only, then unit length.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = states.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let means = summed.broadcast_div(&counts)?;
        let norms = means.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(means.broadcast_div(&norms)?.to_vec2()?)
    }
}

/// The model in `dir`, loaded once per process and kept: every service
/// started in it (tests start many, one after another) shares one copy of
/// the weights instead of reading and hashing 87 MB each time.
pub fn shared(dir: &Path) -> Result<Arc<Embedder>, EmbedderError> {
    static LOADED: Mutex<Vec<(PathBuf, Arc<Embedder>)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, model)) = loaded.iter().find(|(path, _)| path == dir) {
        return Ok(model.clone());
    }
    let model = Arc::new(Embedder::load(dir)?);
    loaded.push((dir.to_owned(), model.clone()));
    Ok(model)
}

/// Whether the model's tokenizer lower-cases; uncased unless it says not.
fn lowercases(dir: &Path) -> bool {
    std::fs::read(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|config| config["do_lower_case"].as_bool())
        .unwrap_or(true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cosine similarity of two unit vectors.
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model deploy/test.sh fetches; these tests need the real weights.
    fn embedder() -> Embedder {
        let dir = std::env::var("CHATBOT_EMBEDDING_MODEL_DIR").expect(
            "CHATBOT_EMBEDDING_MODEL_DIR must name the embedding model's directory; \
             deploy/test.sh fetches all-MiniLM-L6-v2 and sets it",
        );
        Embedder::load(Path::new(&dir)).expect("the embedding model loads")
    }

    #[test]
    fn token_ids_match_the_reference_tokenizer() {
        let embedder = embedder();
        // Ids from the Hugging Face tokenizer shipped with the model.
        let cases: [(&str, &[u32]); 2] = [
            (
                "Where's my parcel? Naïve café-au-lait, 東京!",
                &[
                    101, 2073, 1005, 1055, 2026, 20463, 1029, 15743, 7668, 1011, 8740, 1011, 21110, 2102, 1010, 1879,
                    1755, 999, 102,
                ],
            ),
            (
                "unaffable refundability",
                &[101, 14477, 20961, 3468, 25416, 18426, 8553, 102],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(embedder.tokenizer.encode(text, MAX_TOKENS), expected, "{text}");
        }
    }

    #[test]
    fn paraphrases_are_closer_than_unrelated_sentences() {
        let embedder = embedder();
        let vectors = embedder
            .embed(&[
                "How do I track my order?",
                "Where can I see where my package is right now?",
                "Who won the football World Cup in 2018?",
            ])
            .expect("the sentences embed");
        assert_eq!(vectors[0].len(), embedder.dimensions());
        let norm = similarity(&vectors[0], &vectors[0]);
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        let close = similarity(&vectors[0], &vectors[1]);
        let far = similarity(&vectors[0], &vectors[2]);
        assert!(close > far + 0.3 && far < 0.2, "paraphrase {close}, unrelated {far}");
    }

    #[test]
    fn a_batch_embeds_each_text_as_it_would_alone() {
        let embedder = embedder();
        let texts = ["Can I cancel my order?", "Do you ship abroad to Canada and Mexico?"];
        let batch = embedder.embed(&texts).expect("the batch embeds");
        for (text, together) in texts.iter().zip(&batch) {
            let alone = &embedder.embed(&[text]).expect("the text embeds")[0];
            assert!(similarity(alone, together) > 0.9999, "{text}");
        }
    }
}
