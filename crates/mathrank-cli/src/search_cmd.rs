//! `mathrank search`: in-process over an index directory, or through a running server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use mathrank_engine::{Engine, Limits, SearchParams};
use mathrank_index::{AnswerIndex, Filters, snippet};
use mathrank_proto::v1;
use mathrank_server::convert::SNIPPET_CHARS;

use crate::model_args::ModelArgs;
use crate::output::{HitOut, SearchOut, print};

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The question: title and body, plain text or HTML, LaTeX in `$..$` or bare.
    pub query: String,
    /// Index directory to search in-process.
    #[arg(long, env = "MATHRANK_INDEX", default_value = "index/default", conflicts_with = "addr")]
    pub index: PathBuf,
    /// Search through a running `mathrank serve` instead (e.g. http://127.0.0.1:50051).
    #[arg(long, env = "MATHRANK_SERVER")]
    pub addr: Option<String>,
    /// Bearer token for a server started with --auth-token.
    #[arg(long, env = "MATHRANK_AUTH_TOKEN", hide_env_values = true, requires = "addr")]
    pub auth_token: Option<String>,
    /// Keep BM25 order (no cross-encoder).
    #[arg(long, env = "MATHRANK_NO_RERANK")]
    pub no_rerank: bool,
    /// BM25 candidates to rerank.
    #[arg(long, env = "MATHRANK_RERANK_DEPTH", default_value_t = 30)]
    pub rerank_depth: u32,
    /// Number of hits to return.
    #[arg(long, env = "MATHRANK_TOP_K", default_value_t = 10)]
    pub top_k: u32,
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
    /// Give up after this many milliseconds (with a server: the gRPC deadline; reranking
    /// that does not finish in time returns partial results).
    #[arg(long, env = "MATHRANK_TIMEOUT_MS")]
    pub timeout_ms: Option<u64>,
    /// How answers longer than 512 tokens are scored: `truncate` (as the model's authors) or
    /// `max_window` (the best of overlapping windows) [default: the server's; in-process: truncate].
    #[arg(long, env = "MATHRANK_LONG_ANSWERS")]
    pub long_answers: Option<mathrank_engine::LongAnswers>,
    /// How the reranked hits are finally ordered: `rerank` (by the relevant logit), `linear`
    /// or `rrf` (see `mathrank eval --help`).
    #[arg(long, env = "MATHRANK_FUSION", default_value = "rerank")]
    pub fusion: String,
    /// The reranker's weight in linear fusion, 0 to 1 [default: 0.5].
    #[arg(long, env = "MATHRANK_FUSION_WEIGHT")]
    pub fusion_weight: Option<f32>,
    /// k of rrf fusion [default: 60].
    #[arg(long, env = "MATHRANK_RRF_K")]
    pub rrf_k: Option<u32>,
    /// Print JSON (`{"hits":[...]}`) instead of a table.
    #[arg(long, env = "MATHRANK_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

impl SearchArgs {
    fn filters(&self) -> Filters {
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let out = runtime.block_on(async {
        match &args.addr {
            Some(addr) => remote(&args, addr).await,
            None => local(&args).await,
        }
    })?;
    print(&out, args.json)
}

async fn local(args: &SearchArgs) -> anyhow::Result<SearchOut> {
    let index = Arc::new(AnswerIndex::open(&args.index)?);
    let reranker = if args.no_rerank { None } else { Some(Arc::new(args.model.load()?)) };
    // In-process, a search waits as long as it takes unless --timeout-ms says otherwise.
    let engine = Engine::new(index, reranker, Limits::unhurried());
    let params = SearchParams {
        query: args.query.clone(),
        query_is_text: false,
        top_k: args.top_k,
        rerank_depth: args.rerank_depth,
        rerank: Some(!args.no_rerank),
        filters: args.filters(),
        deadline: args.timeout_ms.map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms)),
        long_answers: args.long_answers,
        fusion: Some(
            mathrank_engine::Fusion::from_parts(&args.fusion, args.fusion_weight, args.rrf_k)
                .map_err(|(field, message)| anyhow::anyhow!("--{}: {message}", field.replace('_', "-")))?,
        ),
        field_weights: None,
    };
    let outcome = engine.search(params).await?;
    Ok(SearchOut {
        hits: outcome
            .hits
            .iter()
            .enumerate()
            .map(|(i, ranked)| HitOut {
                rank: i + 1,
                answer_id: ranked.hit.answer_id,
                question_id: ranked.hit.question_id,
                title: ranked.hit.title.clone(),
                tags: ranked.hit.tags.clone(),
                bm25_score: ranked.hit.bm25_score,
                bm25_rank: ranked.hit.bm25_rank,
                relevant_logit: ranked.score.map(|s| s.logits[1]),
                rerank_logit: ranked.score.as_ref().map(mathrank_rerank::Score::margin),
                relevance: ranked.score.map(|s| s.relevance),
                votes: ranked.hit.votes,
                accepted: ranked.hit.accepted,
                snippet: snippet(&ranked.hit.body, SNIPPET_CHARS),
            })
            .collect(),
        reranked: outcome.reranked,
        partial: outcome.partial,
    })
}

async fn remote(args: &SearchArgs, addr: &str) -> anyhow::Result<SearchOut> {
    let url = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad server address {addr}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut client = v1::answer_search_client::AnswerSearchClient::new(channel).max_decoding_message_size(64 << 20);
    let mut request = tonic::Request::new(v1::SearchRequest {
        query: args.query.clone(),
        top_k: args.top_k,
        rerank_depth: args.rerank_depth,
        rerank: Some(!args.no_rerank),
        filters: Some(mathrank_server::convert::proto_filters(&args.filters())),
        include_body: true,
        long_answers: args.long_answers.map(|mode| mode.name().to_owned()).unwrap_or_default(),
        fusion: args.fusion.clone(),
        fusion_weight: args.fusion_weight,
        rrf_k: args.rrf_k,
    });
    if let Some(ms) = args.timeout_ms {
        request.set_timeout(std::time::Duration::from_millis(ms));
    }
    if let Some(token) = &args.auth_token {
        let value = format!("Bearer {token}").parse().context("the auth token is not a valid header value")?;
        request.metadata_mut().insert("authorization", value);
    }
    let response = client
        .search(request)
        .await
        .map_err(|status| anyhow::anyhow!("server said {:?}: {}", status.code(), status.message()))?;
    let response = response.into_inner();
    Ok(SearchOut {
        hits: response
            .hits
            .iter()
            .map(|hit| HitOut {
                rank: hit.rank as usize,
                answer_id: hit.answer_id,
                question_id: hit.question_id,
                title: hit.title.clone(),
                tags: hit.tags.clone(),
                bm25_score: hit.bm25_score,
                bm25_rank: hit.bm25_rank as usize,
                relevant_logit: hit.relevant_logit,
                rerank_logit: hit.rerank_logit,
                relevance: hit.relevance,
                votes: hit.votes,
                accepted: hit.accepted,
                snippet: snippet(&hit.body, SNIPPET_CHARS),
            })
            .collect(),
        reranked: response.reranked as usize,
        partial: response.partial,
    })
}
