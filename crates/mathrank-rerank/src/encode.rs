//! Encoding (question, answer) pairs exactly as the model was trained.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::{Error, Result};

/// One encoded pair: `[CLS] question [SEP] answer [SEP]`, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    pub input_ids: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

impl EncodedPair {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// The tokenizer with the model's truncation.
#[derive(Clone)]
pub struct PairEncoder {
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, for the answer windows beyond the first.
    whole: Tokenizer,
    max_length: usize,
    pad_id: i64,
}

impl std::fmt::Debug for PairEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairEncoder").field("max_length", &self.max_length).finish()
    }
}

/// Texts longer than this many bytes per allowed token are cut before tokenizing: a 1 MB
/// answer would otherwise cost a full tokenization only to be truncated to 512 tokens.
const BYTES_PER_TOKEN_BOUND: usize = 32;

impl PairEncoder {
    /// Loads `tokenizer.json` and checks that it builds `[CLS] A [SEP] B [SEP]` pairs with
    /// token types 0/1 and ids below `vocab_size`.
    pub fn from_file(path: &Path, max_length: usize, vocab_size: Option<usize>) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidTokenizer { path: path.to_path_buf(), reason };
        let mut tokenizer = Tokenizer::from_file(path).map_err(|err| invalid(err.to_string()))?;
        let mut whole = tokenizer.clone();
        whole.with_truncation(None).map_err(|err| invalid(err.to_string()))?;
        whole.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|err| invalid(err.to_string()))?;
        tokenizer.with_padding(None);
        let cls = tokenizer.token_to_id("[CLS]").ok_or_else(|| invalid("no [CLS] token".into()))?;
        let sep = tokenizer.token_to_id("[SEP]").ok_or_else(|| invalid("no [SEP] token".into()))?;
        let pad = tokenizer.token_to_id("<pad>").or_else(|| tokenizer.token_to_id("[PAD]")).unwrap_or(0);
        let encoder = Self { tokenizer, whole, max_length, pad_id: pad as i64 };
        let probe = encoder.encode_one("question", "answer")?;
        let sep_count = probe.input_ids.iter().filter(|&&id| id == sep as i64).count();
        if probe.input_ids.first() != Some(&(cls as i64)) || sep_count != 2 {
            return Err(invalid(format!(
                "its post-processor does not build [CLS] A [SEP] B [SEP] pairs (got ids {:?})",
                probe.input_ids
            )));
        }
        if !probe.token_type_ids.contains(&1) {
            return Err(invalid("its pair template does not set token_type_ids to 1 for the answer".into()));
        }
        if let Some(vocab) = vocab_size {
            let size = encoder.tokenizer.get_vocab_size(true);
            if size > vocab {
                return Err(invalid(format!("it has {size} tokens but the model's vocab_size is {vocab}")));
            }
        }
        Ok(encoder)
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Bytes of a text that can matter: beyond them no token would survive truncation.
    pub fn max_input_bytes(&self) -> usize {
        self.max_length.saturating_mul(BYTES_PER_TOKEN_BOUND).max(4096)
    }

    fn bounded<'a>(&self, text: &'a str) -> &'a str {
        bounded_to(text, self.max_input_bytes())
    }

    /// Encodes one pair.
    pub fn encode_one(&self, question: &str, answer: &str) -> Result<EncodedPair> {
        let encoding = self
            .tokenizer
            .encode_fast((self.bounded(question), self.bounded(answer)), true)
            .map_err(|err| Error::Tokenize(err.to_string()))?;
        Ok(to_pair(&encoding))
    }

    /// Encodes one question with many answers, in parallel.
    pub fn encode_many(&self, question: &str, answers: &[&str]) -> Result<Vec<EncodedPair>> {
        let question = self.bounded(question);
        let inputs: Vec<tokenizers::EncodeInput<'_>> =
            answers.iter().map(|answer| (question, self.bounded(answer)).into()).collect();
        let encodings =
            self.tokenizer.encode_batch_fast(inputs, true).map_err(|err| Error::Tokenize(err.to_string()))?;
        Ok(encodings.iter().map(to_pair).collect())
    }

    /// Encodes one pair as overlapping windows over the answer, at most `max_windows`. The
    /// first window is exactly [`encode_one`](Self::encode_one)'s pair (the truncated pair the
    /// authors scored), so the best window scores at least as high. The later ones keep segment A
    /// as the first window has it (whole unless `longest_first` had to cut a long question) and
    /// slide over the answer by three quarters of a window, so consecutive windows share a
    /// quarter.
    pub fn encode_windows(&self, question: &str, answer: &str, max_windows: usize) -> Result<Vec<EncodedPair>> {
        let first = self.encode_one(question, answer)?;
        if max_windows <= 1 || first.len() < self.max_length {
            return Ok(vec![first]);
        }
        let Some(prefix) = first.token_type_ids.iter().position(|&t| t == 1) else { return Ok(vec![first]) };
        let Some((&sep, &sep_type)) = first.input_ids.last().zip(first.token_type_ids.last()) else {
            return Ok(vec![first]);
        };
        // Answer tokens per window: what is left after [CLS] A [SEP] and the closing [SEP].
        let window = self.max_length.saturating_sub(prefix + 1);
        if window == 0 {
            return Ok(vec![first]);
        }
        let limit = self.max_input_bytes().saturating_mul(max_windows);
        let encoding =
            self.whole.encode_fast(bounded_to(answer, limit), false).map_err(|err| Error::Tokenize(err.to_string()))?;
        let answer_ids: Vec<i64> = encoding.get_ids().iter().map(|&id| i64::from(id)).collect();
        let stride = (window * 3 / 4).max(1);
        let mut windows = vec![first];
        let mut start = stride;
        while windows.len() < max_windows && start < answer_ids.len() && window < answer_ids.len() {
            let end = (start + window).min(answer_ids.len());
            let head = &windows[0];
            let mut input_ids = head.input_ids[..prefix].to_vec();
            input_ids.extend_from_slice(&answer_ids[start..end]);
            input_ids.push(sep);
            let mut token_type_ids = head.token_type_ids[..prefix].to_vec();
            token_type_ids.resize(input_ids.len() - 1, 1);
            token_type_ids.push(sep_type);
            windows.push(EncodedPair { input_ids, token_type_ids });
            if end == answer_ids.len() {
                break;
            }
            start += stride;
        }
        Ok(windows)
    }
}

fn to_pair(encoding: &tokenizers::Encoding) -> EncodedPair {
    EncodedPair {
        input_ids: encoding.get_ids().iter().map(|&id| id as i64).collect(),
        token_type_ids: encoding.get_type_ids().iter().map(|&id| id as i64).collect(),
    }
}

/// `text` cut to at most `limit` bytes, at a character boundary.
fn bounded_to(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}
