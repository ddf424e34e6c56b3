//! mathrank's measurement tools, kept out of the product crates: the deterministic synthetic
//! dump generator ([`synth`]) and what every benchmark reports ([`measure`]). The
//! `mathrank-bench` binary runs them: `gen-dump`, `rerank`, `latency`, `cost-model`, `load`
//! and `flood`.
//!
//! ```
//! use mathrank_bench::synth::{SynthOptions, generate};
//!
//! let mut xml = Vec::new();
//! let options = SynthOptions { questions: 3, answers: 5, bad_row_every: 0, ..SynthOptions::default() };
//! let summary = generate(&options, &mut xml)?;
//! assert_eq!((summary.questions, summary.answers), (3, 5));
//! assert!(xml.starts_with("\u{feff}<?xml".as_bytes()));
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod measure;
pub mod synth;
