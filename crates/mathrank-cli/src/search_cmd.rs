//! `mathrank search`: in-process over an index directory.

use std::path::PathBuf;

use clap::Args;
use mathrank_index::{AnswerIndex, Filters, SearchRequest, snippet};

use crate::output::{HitOut, SearchOut, print};

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The question: title and body, plain text or HTML, LaTeX in `$..$` or bare.
    pub query: String,
    /// Index directory to search in-process.
    #[arg(long, env = "MATHRANK_INDEX", default_value = "index/default")]
    pub index: PathBuf,
    /// Keep BM25 order (no cross-encoder).
    #[arg(long, env = "MATHRANK_NO_RERANK")]
    pub no_rerank: bool,
    /// Number of hits to return.
    #[arg(long, env = "MATHRANK_TOP_K", default_value_t = 10)]
    pub top_k: usize,
    /// Only answers to questions with this tag (repeatable: any of them).
    #[arg(long = "tag", env = "MATHRANK_TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Only answers to questions with all of these tags (repeatable).
    #[arg(long = "all-tags", env = "MATHRANK_ALL_TAGS", value_delimiter = ',')]
    pub all_tags: Vec<String>,
    /// Only answers with at least this score.
    #[arg(long, env = "MATHRANK_MIN_VOTES")]
    pub min_votes: Option<i64>,
    /// Only accepted answers.
    #[arg(long, env = "MATHRANK_ACCEPTED_ONLY")]
    pub accepted_only: bool,
    /// Only answers created at or after this Unix time (seconds).
    #[arg(long, env = "MATHRANK_CREATED_FROM")]
    pub created_from: Option<i64>,
    /// Only answers created before this Unix time (seconds).
    #[arg(long, env = "MATHRANK_CREATED_TO")]
    pub created_to: Option<i64>,
    /// Print JSON (`{"hits":[...]}`) instead of a table.
    #[arg(long, env = "MATHRANK_JSON")]
    pub json: bool,
}

impl SearchArgs {
    pub fn filters(&self) -> Filters {
        Filters {
            tags_any: self.tags.clone(),
            tags_all: self.all_tags.clone(),
            min_votes: self.min_votes,
            accepted_only: self.accepted_only,
            created_from: self.created_from,
            created_to: self.created_to,
        }
    }
}

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    if !args.no_rerank {
        anyhow::bail!("reranking in `mathrank search` needs --model, which is not available yet; pass --no-rerank");
    }
    let index = AnswerIndex::open(&args.index)?;
    let text = mathrank_dump::question_text("", &args.query);
    let mut request = SearchRequest::new(text, args.top_k);
    request.filters = args.filters();
    let hits = index.search(&request)?;
    let out = SearchOut {
        hits: hits
            .iter()
            .enumerate()
            .map(|(i, hit)| HitOut {
                rank: i + 1,
                answer_id: hit.answer_id,
                question_id: hit.question_id,
                title: hit.title.clone(),
                tags: hit.tags.clone(),
                bm25_score: hit.bm25_score,
                bm25_rank: hit.bm25_rank,
                rerank_logit: None,
                relevance: None,
                votes: hit.votes,
                accepted: hit.accepted,
                snippet: snippet(&hit.body, 240),
            })
            .collect(),
        reranked: 0,
        partial: false,
    };
    print(&out, args.json)
}
