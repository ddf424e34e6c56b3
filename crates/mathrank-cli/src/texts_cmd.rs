//! `mathrank texts`: the text the model reads for every post of a dump, one JSON line each,
//! so that anyone can audit mathrank's input against the authors' preprocessing.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use mathrank_dump::{DumpSource, PostKind, RowEvent};

#[derive(Args, Debug)]
pub struct TextsArgs {
    /// Posts.xml, its directory, or the site's .7z.
    #[arg(long, env = "MATHRANK_DUMP")]
    pub dump: PathBuf,
    /// Instead, one line per answer joined with its question, as another engine would index
    /// it: `{"id": "ANSWER_ID", "contents": "TITLE\nQUESTION\nANSWER"}` (Anserini's
    /// JsonCollection), the text that mathrank's index holds for that answer.
    #[arg(long, env = "MATHRANK_DOCUMENTS")]
    pub documents: bool,
}

pub fn run(args: TextsArgs) -> anyhow::Result<()> {
    let source = DumpSource::open(&args.dump)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.documents {
        // Question bodies spill to a temporary file, as in an index build.
        let spill = tempfile::NamedTempFile::new()?;
        let bodies = mathrank_dump::QuestionBodies::spill_to(spill.path(), mathrank_dump::RECENT_BODY_BYTES)?;
        let mut joiner = mathrank_dump::AnswerJoiner::with_bodies(bodies);
        for event in source.posts() {
            let RowEvent::Post(post) = event? else { continue };
            for answer in joiner.push(post)? {
                let contents = format!(
                    "{}\n{}\n{}",
                    mathrank_dump::html_to_text(&answer.question_title),
                    mathrank_dump::html_to_text(&answer.question_body_html),
                    mathrank_dump::html_to_text(&answer.body_html)
                );
                writeln!(out, "{}", serde_json::json!({ "id": answer.answer_id.to_string(), "contents": contents }))?;
            }
        }
        out.flush()?;
        return Ok(());
    }
    for event in source.posts() {
        let RowEvent::Post(post) = event? else { continue };
        let (kind, text) = match post.kind {
            // Segment A of a question, as the reranker would read it as a query.
            PostKind::Question => ("question", mathrank_dump::question_text(&post.title, &post.body_html)),
            // Segment B: the answer body exactly as the index stores it.
            PostKind::Answer => ("answer", mathrank_dump::html_to_text(&post.body_html)),
        };
        writeln!(out, "{}", serde_json::json!({ "id": post.id, "kind": kind, "text": text }))?;
    }
    out.flush()?;
    Ok(())
}
