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
}

pub fn run(args: TextsArgs) -> anyhow::Result<()> {
    let source = DumpSource::open(&args.dump)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
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
