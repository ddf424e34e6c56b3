//! The `mathrank` binary as users run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mathrank(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mathrank"))
        .args(args)
        .env("MATHRANK_LOG", "warn")
        .env("MATHRANK_CACHE", std::env::temp_dir().join("mathrank-cli-test-empty-cache"))
        .env_remove("MATHRANK_MODEL")
        .output()
        .expect("mathrank runs")
}

fn ok(args: &[&str]) -> String {
    let output = mathrank(args);
    assert!(output.status.success(), "mathrank {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mathrank-rerank/tests/fixtures/albert-tiny")
}

fn sample_index(dir: &Path) -> String {
    let index = dir.join("sample");
    let summary = ok(&["index", "--sample", "--index", index.to_str().unwrap()]);
    assert!(summary.contains("answers indexed") && summary.contains("skipped rows     5"), "{summary}");
    index.to_str().unwrap().to_owned()
}

#[test]
fn index_info_and_bm25_search() {
    let dir = tempfile::tempdir().unwrap();
    let index = sample_index(dir.path());
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", "--index", &index, "--json"])).unwrap();
    assert!(info["questions"].as_u64().unwrap() >= 300);
    assert!(info["answers"].as_u64().unwrap() >= 600);
    assert_eq!(info["source"], "embedded-sample");

    let out = ok(&[
        "search",
        "--index",
        &index,
        "--no-rerank",
        "--json",
        "--top-k",
        "3",
        "--tag",
        "modular-arithmetic",
        "What is $5^{100} \\bmod 7$?",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let hits = json["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    for key in ["rank", "answer_id", "question_id", "title", "tags", "bm25_score", "votes", "accepted", "snippet"] {
        assert!(hits[0].get(key).is_some(), "missing {key}");
    }
    assert!(hits.iter().all(|h| h["tags"].as_array().unwrap().iter().any(|t| t == "modular-arithmetic")));
    assert!(hits[0].get("relevance").is_none());

    let table = ok(&["search", "--index", &index, "--no-rerank", "Fermat little theorem remainder"]);
    assert!(table.contains("  1. answer "), "{table}");
}

#[test]
fn search_with_the_model_and_score_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let index = sample_index(dir.path());
    let model = tiny_model();
    let out = ok(&[
        "search",
        "--index",
        &index,
        "--model",
        model.to_str().unwrap(),
        "--json",
        "--rerank-depth",
        "12",
        "--top-k",
        "5",
        "Determinant of a 3x3 matrix",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let hits = json["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5);
    assert_eq!(json["reranked"], 12);
    assert!(hits.iter().all(|h| h["relevance"].is_number()
        && h["rerank_logit"].is_number()
        && h["relevant_logit"].is_number()
        && h["bm25_rank"].as_u64().unwrap() <= 12));
    // The hits are in the order of the key they were ranked by, which the JSON shows.
    let keys: Vec<f64> = hits.iter().map(|h| h["relevant_logit"].as_f64().unwrap()).collect();
    assert!(keys.windows(2).all(|pair| pair[0] >= pair[1]), "not sorted by relevant_logit: {keys:?}");

    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("reference.json")).unwrap()).unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    let lines: Vec<String> = reference["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| serde_json::json!({ "query": pair[0], "answer": pair[1] }).to_string())
        .collect();
    std::fs::write(&pairs, lines.join("\n") + "\n").unwrap();
    let out = ok(&["score", "--model", model.to_str().unwrap(), "--pairs", pairs.to_str().unwrap(), "--emit-ids"]);
    let scored: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(scored.len(), 5);
    for (i, line) in scored.iter().enumerate() {
        let logits = line["logits"].as_array().unwrap();
        for k in 0..2 {
            let expected = reference["logits"][i][k].as_f64().unwrap();
            assert!((logits[k].as_f64().unwrap() - expected).abs() < 1e-4, "pair {i}");
        }
        let ids: Vec<i64> = serde_json::from_value(line["input_ids"].clone()).unwrap();
        let reference_ids: Vec<i64> = serde_json::from_value(reference["input_ids"][i].clone()).unwrap();
        assert_eq!(ids, reference_ids[..ids.len()]);
        assert!(reference_ids[ids.len()..].iter().all(|&id| id == 0), "only padding after the pair");
    }
    std::fs::write(&pairs, "{\"query\": \"q\"}\n").unwrap();
    let output = mathrank(&["score", "--model", model.to_str().unwrap(), "--pairs", pairs.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 1"));
}

#[test]
fn clear_errors_for_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("posts.csv");
    std::fs::write(&csv, "Id,PostTypeId\n1,1\n").unwrap();
    let output =
        mathrank(&["index", "--dump", csv.to_str().unwrap(), "--index", dir.path().join("x").to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a Stack Exchange Posts.xml") && stderr.contains("posts.csv"), "{stderr}");
    assert!(!dir.path().join("x").exists(), "a failed build leaves nothing behind");

    let output = mathrank(&["info", "--index", dir.path().join("missing").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("mathrank index"), "says how to build one");

    let output = mathrank(&["serve", "--index", dir.path().join("idx").to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--no-rerank") && stderr.contains("model fetch"), "{stderr}");
}

#[test]
fn eval_writes_a_trec_run_and_scores_it() {
    let dir = tempfile::tempdir().unwrap();
    let index = sample_index(dir.path());
    let topics = dir.path().join("topics.xml");
    std::fs::write(
        &topics,
        "<?xml version=\"1.0\"?>\n<Topics>\n<Topic number=\"A.1\"><Title>Remainder of 3^100 divided by 7</Title><Question>&lt;p&gt;Use Fermat?&lt;/p&gt;</Question><Tags>number-theory</Tags></Topic>\n<Topic number=\"A.2\"><Title>Eigenvalues of a triangular matrix</Title><Question>&lt;p&gt;Which are they?&lt;/p&gt;</Question><Tags>linear-algebra</Tags></Topic>\n</Topics>\n",
    )
    .unwrap();
    let run = dir.path().join("run.txt");
    ok(&[
        "eval",
        "--index",
        &index,
        "--no-rerank",
        "--topics",
        topics.to_str().unwrap(),
        "--run-out",
        run.to_str().unwrap(),
        "--depth",
        "50",
        "--run-tag",
        "bm25",
    ]);
    let text = std::fs::read_to_string(&run).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 100);
    assert!(lines.iter().all(|l| l.len() == 6 && l[1] == "Q0" && l[5] == "bm25"));
    assert_eq!(lines[0][3], "1");
    // Judge the first topic's top answer relevant (3) and its second non-relevant (0).
    let qrels = dir.path().join("qrels.txt");
    std::fs::write(&qrels, format!("A.1\t0\t{}\t3\r\nA.1\t0\t{}\t0\r\n", lines[0][2], lines[1][2])).unwrap();
    let out = ok(&["eval-run", "--run", run.to_str().unwrap(), "--qrels", qrels.to_str().unwrap(), "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["ndcg_prime"], 1.0);
    assert_eq!(json["map_prime"], 1.0);
    assert!((json["p10_prime"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert_eq!(json["topics"].as_object().unwrap().len(), 1);
    assert_eq!(json["unjudged_topics"][0], "A.2");
}

/// The generator lives in `mathrank-bench`; the dump it writes is indexed by `mathrank index`.
#[test]
fn gen_dump_is_deterministic_and_indexable() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.xml");
    let b = dir.path().join("b.xml");
    for path in [&a, &b] {
        let options = mathrank_bench::synth::SynthOptions {
            questions: 300,
            answers: 500,
            seed: 3,
            bad_row_every: 100,
            ..Default::default()
        };
        mathrank_bench::synth::generate(&options, &mut std::fs::File::create(path).unwrap()).unwrap();
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let index = dir.path().join("idx");
    let summary = ok(&["index", "--dump", a.to_str().unwrap(), "--index", index.to_str().unwrap()]);
    assert!(summary.contains("questions        300") && summary.contains("answers indexed  500"), "{summary}");
    assert!(summary.contains("skipped rows     3"), "{summary}");
}

#[test]
fn eval_known_items_reports_mrr_and_recall_and_takes_fusion() {
    let dir = tempfile::tempdir().unwrap();
    let index = sample_index(dir.path());
    let found = ok(&["search", "--index", &index, "--no-rerank", "--json", "Eigenvalues of a triangular matrix"]);
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    let question = found["hits"][0]["question_id"].as_u64().unwrap();
    let items = dir.path().join("known.jsonl");
    std::fs::write(
        &items,
        format!(
            "{{\"id\":\"a\",\"question_id\":{question},\"query\":\"diagonal entries of an upper triangular matrix are its eigenvalues\",\"kind\":\"sentence\",\"split\":\"test\"}}\n\
             {{\"id\":\"b\",\"question_id\":999999999,\"query\":\"a thread that is not there\",\"kind\":\"keywords\",\"split\":\"tune\"}}\n"
        ),
    )
    .unwrap();
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["eval", "--index", &index, "--known-items", items.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&args)).unwrap()
    };
    let bm25 = eval(&["--no-rerank"]);
    assert_eq!(bm25["summary"]["all"]["queries"], 2);
    assert!((bm25["summary"]["all"]["recall_at_10"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    assert!(bm25["queries"][1]["rank"].is_null());
    assert_eq!(bm25["summary"]["split:test"]["queries"], 1);
    assert_eq!(bm25["summary"]["kind:keywords"]["recall_at_100"], 0.0);
    // Linear fusion at weight 0 keeps the BM25 order of the reranked hits.
    let model = tiny_model();
    let fused = eval(&["--model", model.to_str().unwrap(), "--fusion", "linear", "--fusion-weight", "0"]);
    assert_eq!(fused["queries"][0]["rank"], bm25["queries"][0]["rank"]);
    let test_only = eval(&["--no-rerank", "--split", "test"]);
    assert_eq!(test_only["summary"]["all"]["queries"], 1);
    let bad = mathrank(&[
        "eval",
        "--index",
        &index,
        "--known-items",
        items.to_str().unwrap(),
        "--fusion",
        "borda",
        "--no-rerank",
    ]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--fusion"));
}

/// `GET path` on a server at `port`: the status and the body, or `None` while it does not answer.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Some((status, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve_replica(index: &Path, url: &str, port: u16) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_mathrank"))
        .args(["serve", "--no-rerank", "--index", index.to_str().unwrap(), "--addr", &format!("127.0.0.1:{port}")])
        .env("MATHRANK_STORE", url)
        .env("MATHRANK_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("mathrank serve starts")
}

/// `/v1/info` of a server once `/health` says ready (within `secs`, the server still running),
/// after which the server is killed.
fn info_once_ready(mut server: std::process::Child, port: u16, secs: u64, what: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let info = loop {
        if let Some((200, _)) = http_get(port, "/health") {
            break http_get(port, "/v1/info").unwrap().1;
        }
        assert!(std::time::Instant::now() < deadline, "{what} gets ready");
        assert!(server.try_wait().unwrap().is_none(), "{what} keeps running");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    server.kill().unwrap();
    server.wait().unwrap();
    serde_json::from_str(&info).unwrap()
}

/// A replica of a shared PostgreSQL store, SIGKILLed while it builds its index from the store,
/// builds it again on restart (nothing half-built is kept) and then serves the whole store.
#[test]
fn a_replica_killed_mid_catch_up_catches_up_on_restart() {
    use mathrank_store::{Op, Post, PostKind, PostStore as _};
    let Some(cluster) = mathrank_pgtest::shared() else { return };
    let url = cluster.create_database().unwrap();
    let store = mathrank_store::PgStore::connect(&url).unwrap();
    let post = |id: u64, kind: PostKind, parent: Option<u64>| Post {
        id,
        kind,
        parent_id: parent,
        accepted_answer_id: None,
        title: format!("question {id} on finite groups"),
        tags: vec!["group-theory".into()],
        body_html: format!("<p>post {id}: every group of prime order {} is cyclic</p>", id % 97),
        score: 0,
        created: 1_700_000_000,
    };
    let mut seq = 0;
    for chunk in 0..10u64 {
        let mut ops = Vec::new();
        for n in chunk * 2000..(chunk + 1) * 2000 {
            let id = n * 3 + 1;
            ops.push(Op::Upsert { post: post(id, PostKind::Question, None), version: 1 });
            ops.push(Op::Upsert { post: post(id + 1, PostKind::Answer, Some(id)), version: 1 });
            ops.push(Op::Upsert { post: post(id + 2, PostKind::Answer, Some(id)), version: 1 });
        }
        seq = store.apply(&ops, 1_700_000_000).unwrap().seq;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let port = free_port();
    let mut replica = serve_replica(&index, &url, port);
    // Killed once the build from the store has started (a tantivy directory exists, meta.json
    // does not name it yet).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let building = || {
        std::fs::read_dir(&index).is_ok_and(|entries| {
            entries.flatten().any(|entry| entry.file_name().to_string_lossy().starts_with("tantivy"))
        })
    };
    while !building() {
        assert!(std::time::Instant::now() < deadline, "the replica starts building its index");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    replica.kill().unwrap();
    replica.wait().unwrap();
    assert!(!index.join("meta.json").exists(), "killed before the build finished (40,000 answers)");

    let port = free_port();
    let info = info_once_ready(serve_replica(&index, &url, port), port, 300, "the restarted replica");
    assert_eq!(info["searchable_seq"].as_u64(), Some(seq), "{info}");
    assert_eq!(info["index"]["answers"].as_u64(), Some(40_000), "{info}");
    let tantivy_dirs = std::fs::read_dir(&index)
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("tantivy"))
        .count();
    assert_eq!(tantivy_dirs, 1, "the half-built directory was removed");
}

/// The README's search replicas, its commands as written (with this test's dump, store, paths
/// and a free port): a dump seeds a PostgreSQL store, and a replica with no index builds it
/// from the store and serves every answer.
#[test]
fn the_readmes_search_replica_commands_seed_a_store_and_serve_it() {
    let Some(cluster) = mathrank_pgtest::shared() else { return };
    let url = cluster.create_database().unwrap();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let shown = |prefix: &str| {
        readme.lines().find(|line| line.starts_with(prefix)).unwrap_or_else(|| panic!("the README shows `{prefix}`"))
    };
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("Posts.xml");
    std::fs::write(&dump, mathrank_dump::SAMPLE_POSTS_XML).unwrap();
    let (seed, replica_index) = (dir.path().join("seed"), dir.path().join("replica-index"));
    let words = |line: &str| -> Vec<String> {
        line.split_whitespace()
            .skip(1)
            .map(|word| match word {
                "Posts.xml" => dump.to_str().unwrap().to_owned(),
                "postgres://mathrank@db:5432/mathrank" => url.clone(),
                "seed" => seed.to_str().unwrap().to_owned(),
                "replica-index" => replica_index.to_str().unwrap().to_owned(),
                other => other.to_owned(),
            })
            .collect()
    };
    let seeding = words(shown("mathrank index --update --dump"));
    let summary = ok(&seeding.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(summary.contains("applied") && summary.contains("follows"), "{summary}");

    // One more thread written to the store: the replica must serve the store, not the sample.
    {
        use mathrank_store::{Op, Post, PostKind, PostStore as _};
        let store = mathrank_store::PgStore::connect(&url).unwrap();
        let post = |id, kind, parent_id| Post {
            id,
            kind,
            parent_id,
            accepted_answer_id: None,
            title: "written after the seeding".into(),
            tags: vec![],
            body_html: "<p>a post only the store has</p>".into(),
            score: 0,
            created: 1_700_000_000,
        };
        let ops = [
            Op::Upsert { post: post(900_000_001, PostKind::Question, None), version: 1 },
            Op::Upsert { post: post(900_000_002, PostKind::Answer, Some(900_000_001)), version: 1 },
        ];
        store.apply(&ops, 1_700_000_000).unwrap();
    }
    let port = free_port();
    let mut serving = words(shown("mathrank serve --store"));
    serving.extend(["--addr".to_owned(), format!("127.0.0.1:{port}")]);
    let replica = Command::new(env!("CARGO_BIN_EXE_mathrank"))
        .args(&serving)
        .env("MATHRANK_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("mathrank serve starts");
    let info = info_once_ready(replica, port, 120, "the replica building its index from the store");
    // The seeding's last line: "index SEED follows STORE up to sequence number S (N answers; ...)".
    let seeded: u64 = summary.rsplit('(').next().and_then(|tail| tail.split(' ').next()?.parse().ok()).unwrap();
    assert!(seeded > 600, "the sample's answers: {summary}");
    assert_eq!(
        info["index"]["answers"].as_u64(),
        Some(seeded + 1),
        "the store's answers, the seeded and one more: {info}"
    );
}

/// `serve`'s configuration layers, as the binary reads them: the embedded defaults, a file,
/// the environment, flags, each overriding the one below.
#[test]
fn serve_configuration_layers_defaults_file_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serve.toml");
    std::fs::write(&file, "max_queued = 5\ngrace_seconds = 3\nidle_timeout = \"2m\"\nauth_token = \"s3cret\"\n")
        .unwrap();
    let print = |env: &[(&str, &str)], flags: &[&str]| -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mathrank"));
        command.args(["serve", "--print-config", "--config", file.to_str().unwrap()]).args(flags);
        command.env_remove("MATHRANK_MAX_QUEUED").env_remove("MATHRANK_GRACE_SECONDS");
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let file_only = print(&[], &[]);
    for line in ["max_queued = 5", "grace_seconds = 3", "idle_timeout = \"2m\"", "max_timeout = \"1m\""] {
        assert!(file_only.lines().any(|l| l == line), "{line} in\n{file_only}");
    }
    assert!(!file_only.contains("s3cret"), "the token is not printed");
    let env = print(&[("MATHRANK_MAX_QUEUED", "6")], &[]);
    assert!(env.lines().any(|l| l == "max_queued = 6") && env.lines().any(|l| l == "grace_seconds = 3"), "{env}");
    let flags = print(&[("MATHRANK_MAX_QUEUED", "6")], &["--max-queued", "7", "--max-connections", "99"]);
    assert!(
        flags.lines().any(|l| l == "max_queued = 7") && flags.lines().any(|l| l == "max_connections = 99"),
        "{flags}"
    );
    std::fs::write(&file, "max_queue = 5\n").unwrap();
    let output = mathrank(&["serve", "--print-config", "--config", file.to_str().unwrap()]);
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("max_queue"));
}

#[test]
fn serve_help_groups_its_flags_under_headings() {
    let help = ok(&["serve", "--help"]);
    let headings = [
        "Configuration:",
        "Listening:",
        "Index:",
        "Model and inference:",
        "Security:",
        "Admission and deadlines:",
        "Reranking:",
        "Connections:",
    ];
    let mut at = 0;
    for heading in headings {
        let found = help[at..].find(heading).unwrap_or_else(|| panic!("no {heading:?} after byte {at}:\n{help}"));
        at += found + heading.len();
    }
    // Each flag sits under its heading: the next heading comes after it.
    for (flag, heading, next) in [
        ("--idle-timeout", "Connections:", "--help"),
        ("--auth-token", "Security:", "Admission and deadlines:"),
        ("--no-rerank", "Model and inference:", "Security:"),
        ("--provider", "Model and inference:", "Security:"),
    ] {
        let section = help.split(heading).nth(1).unwrap().split(next).next().unwrap();
        assert!(section.contains(flag), "{flag} is not under {heading}:\n{help}");
    }
}
