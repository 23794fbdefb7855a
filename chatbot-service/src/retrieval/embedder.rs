//! Sentence embeddings from a local MPNet model, run on the CPU.
//!
//! Built for sentence-transformers models such as all-mpnet-base-v2: a
//! directory with `config.json`, `model.safetensors`, `vocab.txt` and
//! `tokenizer_config.json`. A sentence's vector is the mean of its token
//! states, normalised to unit length, so a dot product is the cosine
//! similarity. Embedding is CPU work; async callers run it on the blocking
//! pool.
//!
//! all-mpnet-base-v2 costs about eight times what all-MiniLM-L6-v2 did per
//! token, and earns it: on the support fixture (tests/fixtures) its vectors
//! alone place the right FAQ first for 89 of 105 paraphrases, MiniLM's for
//! 70.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

use super::mpnet::{Config, MpNet};
use super::wordpiece::{Specials, WordPiece};

/// FAQ questions, answers and chat messages are short; longer text is cut
/// here, as the model was trained on.
pub const MAX_TOKENS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum EmbedderError {
    #[error("the embedding model in {dir}: {reason}")]
    Load { dir: PathBuf, reason: String },
    #[error("embedding text: {0}")]
    Run(#[from] candle_core::Error),
}

pub struct Embedder {
    model: MpNet,
    tokenizer: WordPiece,
    id: String,
    dimensions: usize,
    max_tokens: usize,
}

/// The parts of `tokenizer_config.json` the tokenizer needs.
#[derive(serde::Deserialize)]
struct TokenizerConfig {
    #[serde(default = "yes")]
    do_lower_case: bool,
    #[serde(default)]
    cls_token: Option<String>,
    #[serde(default)]
    sep_token: Option<String>,
    #[serde(default)]
    unk_token: Option<String>,
}

fn yes() -> bool {
    true
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
        if config.model_type != "mpnet" {
            return Err(fail(format!(
                "config.json says model_type {:?}; only MPNet models (such as all-mpnet-base-v2) are supported",
                config.model_type
            )));
        }
        let tokenizer_config: TokenizerConfig = serde_json::from_slice(&read("tokenizer_config.json")?)
            .map_err(|e| fail(format!("tokenizer_config.json: {e}")))?;
        let vocab = String::from_utf8(read("vocab.txt")?).map_err(|e| fail(format!("vocab.txt: {e}")))?;
        let specials = Specials {
            classify: tokenizer_config.cls_token.unwrap_or_else(|| "<s>".into()),
            separator: tokenizer_config.sep_token.unwrap_or_else(|| "</s>".into()),
            unknown: tokenizer_config.unk_token.unwrap_or_else(|| "[UNK]".into()),
        };
        let tokenizer =
            WordPiece::new(&vocab, tokenizer_config.do_lower_case, &specials).map_err(|e| fail(e.to_string()))?;
        let weights = dir.join("model.safetensors");
        // Vectors from different weights are not comparable; the digest
        // names the model so a version trained with another one is noticed.
        let mut digest = Sha256::new();
        std::fs::File::open(&weights)
            .and_then(|mut file| std::io::copy(&mut file, &mut digest))
            .map_err(|e| fail(format!("reading model.safetensors: {e}")))?;
        let id = format!("sha256:{}", hex(&digest.finalize()[..8]));
        // Mapped rather than read: reading the weights into memory and
        // copying them into tensors took long enough for the gateway to take
        // a starting replica out of rotation.
        // SAFETY: the mapping is only read while the tensors are copied out
        // of it (CPU tensors own their memory) and is dropped with `builder`
        // before `load` returns. The model directory is written once, by
        // renaming a complete download into place, and never changed in
        // place while a service runs.
        let builder = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu) }
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let model = MpNet::load(builder, &config).map_err(|e| fail(format!("model.safetensors: {e}")))?;
        Ok(Self {
            max_tokens: MAX_TOKENS.min(model.max_tokens()),
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
        let encoded: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenizer.encode(t, self.max_tokens))
            .collect();
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
        let states = self.model.forward(&ids, &mask)?;
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
/// the weights instead of reading and hashing them each time.
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
             deploy/test.sh fetches all-mpnet-base-v2 and sets it",
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
                    0, 2077, 1009, 1059, 2030, 20467, 1033, 15747, 7672, 1015, 8744, 1015, 21114, 2106, 1014, 1883,
                    1759, 1003, 2,
                ],
            ),
            (
                "unaffable refundability",
                &[0, 14481, 20965, 3472, 25420, 18430, 8557, 2],
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
