//! The MPNet encoder (Song et al., 2020) as sentence-transformers models
//! such as all-mpnet-base-v2 use it, for CPU inference.
//!
//! candle ships BERT but not MPNet. The two differ in three places, all
//! here: positions start after the padding id, as in RoBERTa; there are no
//! token types; and every layer adds one shared, learnt bias per head for
//! the bucketed distance between two tokens (T5's relative positions).
//! Weight names follow the Hugging Face checkpoint, so its
//! `model.safetensors` loads as it is.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_buckets() -> usize {
    32
}
fn default_pad() -> u32 {
    1
}

/// Distances beyond this share the last bucket (as in the reference).
const MAX_DISTANCE: i64 = 128;

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    dense: Linear,
    output_norm: LayerNorm,
}

pub struct MpNet {
    words: Embedding,
    positions: Embedding,
    embedding_norm: LayerNorm,
    relative_bias: Embedding,
    layers: Vec<Layer>,
    heads: usize,
    buckets: usize,
    first_position: u32,
    max_tokens: usize,
}

impl MpNet {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        if !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            candle_core::bail!("hidden_size is not a multiple of num_attention_heads");
        }
        let h = config.hidden_size;
        let norm = |vb: VarBuilder| layer_norm(h, config.layer_norm_eps, vb);
        let embeddings = vb.pp("embeddings");
        let encoder = vb.pp("encoder");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let vb = encoder.pp(format!("layer.{i}"));
                let attention = vb.pp("attention");
                Ok(Layer {
                    query: linear(h, h, attention.pp("attn.q"))?,
                    key: linear(h, h, attention.pp("attn.k"))?,
                    value: linear(h, h, attention.pp("attn.v"))?,
                    output: linear(h, h, attention.pp("attn.o"))?,
                    attention_norm: norm(attention.pp("LayerNorm"))?,
                    intermediate: linear(h, config.intermediate_size, vb.pp("intermediate.dense"))?,
                    dense: linear(config.intermediate_size, h, vb.pp("output.dense"))?,
                    output_norm: norm(vb.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            words: embedding(config.vocab_size, h, embeddings.pp("word_embeddings"))?,
            positions: embedding(config.max_position_embeddings, h, embeddings.pp("position_embeddings"))?,
            embedding_norm: norm(embeddings.pp("LayerNorm"))?,
            relative_bias: embedding(
                config.relative_attention_num_buckets,
                config.num_attention_heads,
                encoder.pp("relative_attention_bias"),
            )?,
            layers,
            heads: config.num_attention_heads,
            buckets: config.relative_attention_num_buckets,
            first_position: config.pad_token_id + 1,
            max_tokens: config
                .max_position_embeddings
                .saturating_sub(config.pad_token_id as usize + 1),
        })
    }

    /// The longest input the position table covers.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token states `(batch, width, hidden)` for ids `(batch, width)`; `mask`
    /// is 1 for real tokens, 0 for padding at the end of a row.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, width) = ids.dims2()?;
        let device = ids.device();
        // Padding sits after every real token, so real tokens' positions are
        // the same as in the reference, which counts only real tokens.
        let positions = Tensor::arange(self.first_position, self.first_position + width as u32, device)?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&positions)?)?;
        let mut x = self.embedding_norm.forward(&x)?;
        let bias = self.position_bias(width, device)?;
        // 0 where a key is a real token, a large negative where it is padding.
        let blocked = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((batch, 1, 1, width))?;
        let bias = bias.broadcast_add(&blocked)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, self.heads)?;
        }
        Ok(x)
    }

    /// `(1, heads, width, width)`: each head's learnt bias for key j seen
    /// from query i.
    fn position_bias(&self, width: usize, device: &Device) -> Result<Tensor> {
        let buckets: Vec<u32> = (0..width as i64)
            .flat_map(|i| (0..width as i64).map(move |j| (i, j)))
            .map(|(i, j)| bucket(j - i, self.buckets as i64))
            .collect();
        let buckets = Tensor::from_vec(buckets, (width, width), device)?;
        self.relative_bias.forward(&buckets)?.permute((2, 0, 1))?.unsqueeze(0)
    }
}

impl Layer {
    fn forward(&self, x: &Tensor, bias: &Tensor, heads: usize) -> Result<Tensor> {
        let (batch, width, hidden) = x.dims3()?;
        let head = hidden / heads;
        let split = |t: Tensor| t.reshape((batch, width, heads, head))?.transpose(1, 2)?.contiguous();
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head as f64).sqrt())?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, width, hidden))?;
        let attended = self.attention_norm.forward(&(self.output.forward(&context)? + x)?)?;
        let inner = self.intermediate.forward(&attended)?.gelu_erf()?;
        self.output_norm.forward(&(self.dense.forward(&inner)? + attended)?)
    }
}

/// T5's bucketing of a relative position (key minus query): the sign
/// halves the buckets, near distances get one each, and far ones share
/// logarithmically wider buckets up to `MAX_DISTANCE`.
fn bucket(relative: i64, buckets: i64) -> u32 {
    let half = buckets / 2;
    let mut bucket = if relative > 0 { half } else { 0 };
    let distance = relative.abs();
    let exact = half / 2;
    bucket += if distance < exact {
        distance
    } else {
        let far = (distance as f64 / exact as f64).ln() / (MAX_DISTANCE as f64 / exact as f64).ln();
        (exact + (far * (half - exact) as f64) as i64).min(half - 1)
    };
    bucket as u32
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn distances_bucket_as_in_the_reference() {
        // Values from the Hugging Face implementation with 32 buckets.
        let cases = [
            (0, 0),
            (-1, 1),
            (-7, 7),
            (-8, 8),
            (-12, 9),
            (-16, 10),
            (-100, 15),
            (-500, 15),
            (1, 17),
            (7, 23),
            (8, 24),
            (127, 31),
            (1000, 31),
        ];
        for (relative, expected) in cases {
            assert_eq!(bucket(relative, 32), expected, "relative position {relative}");
        }
    }
}
