//! Deterministic synthetic dumps for scale work (`mathrank-bench gen-dump`).
//!
//! The generator streams a `Posts.xml` with Math-Stack-Exchange-like shapes: answer HTML with a
//! median around 500 characters and a lognormal tail to 30k, questions with titles and 1-5
//! tags, inline and display LaTeX, Zipf-distributed vocabulary and tags, votes, accepted
//! answers, a few answers before their question and a few bad rows. The same seed always gives
//! the same bytes. Memory does not grow with the output size.

use std::io::Write;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub questions: u64,
    pub answers: u64,
    pub seed: u64,
    /// Write tags as `<a><b>` (dumps before 2024) instead of `|a|b|`.
    pub old_tag_format: bool,
    /// One bad row (bad date, broken entity, bad id...) per this many posts; 0 = none.
    pub bad_row_every: u64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self { questions: 1000, answers: 1500, seed: 1, old_tag_format: false, bad_row_every: 50_000 }
    }
}

/// Counts of what was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthSummary {
    pub questions: u64,
    pub answers: u64,
    pub bad_rows: u64,
    pub bytes: u64,
}

/// SplitMix64: tiny, fast, and stable across versions (unlike a crate's default RNG).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Samples ranks 0..n with probability proportional to 1/(r+1)^s.
#[derive(Debug, Clone)]
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                total += 1.0 / ((r + 1) as f64).powf(s);
                total
            })
            .collect();
        Self { cumulative }
    }

    fn sample(&self, rng: &mut SplitMix64) -> usize {
        let target = rng.unit() * self.cumulative.last().copied().unwrap_or(1.0);
        self.cumulative.partition_point(|&c| c < target).min(self.cumulative.len() - 1)
    }
}

const CORE_WORDS: &[&str] = &[
    "the",
    "of",
    "is",
    "a",
    "and",
    "to",
    "that",
    "we",
    "in",
    "this",
    "it",
    "for",
    "be",
    "by",
    "so",
    "if",
    "then",
    "let",
    "with",
    "on",
    "as",
    "not",
    "are",
    "function",
    "since",
    "can",
    "have",
    "which",
    "there",
    "proof",
    "show",
    "prove",
    "any",
    "all",
    "one",
    "number",
    "set",
    "where",
    "but",
    "from",
    "integral",
    "series",
    "limit",
    "matrix",
    "group",
    "prime",
    "sequence",
    "converges",
    "continuous",
    "derivative",
    "polynomial",
    "space",
    "field",
    "ring",
    "vector",
    "eigenvalue",
    "probability",
    "random",
    "variable",
    "expected",
    "value",
    "theorem",
    "lemma",
    "definition",
    "hence",
    "therefore",
    "suppose",
    "assume",
    "contradiction",
    "induction",
    "integer",
    "real",
    "complex",
    "rational",
    "bounded",
    "compact",
    "open",
    "closed",
    "subset",
    "element",
    "map",
    "linear",
    "basis",
    "dimension",
    "kernel",
    "image",
    "order",
    "finite",
    "infinite",
    "countable",
    "measure",
    "distribution",
    "variance",
    "convergence",
    "uniformly",
    "pointwise",
    "differentiable",
    "equation",
    "solution",
    "root",
    "roots",
    "factor",
    "divides",
    "modulo",
    "congruent",
    "graph",
    "vertex",
    "edge",
    "tree",
    "path",
    "cycle",
    "permutation",
    "combination",
    "binomial",
    "coefficient",
    "sum",
    "product",
    "inequality",
    "equality",
    "maximum",
    "minimum",
    "interval",
    "point",
    "topology",
    "homeomorphism",
    "manifold",
    "homomorphism",
    "isomorphism",
    "subgroup",
    "normal",
    "quotient",
    "ideal",
    "module",
    "norm",
    "inner",
    "orthogonal",
    "determinant",
    "trace",
    "rank",
    "symmetric",
    "positive",
    "negative",
    "zero",
    "constant",
    "because",
    "follows",
    "obtain",
    "get",
    "write",
    "consider",
    "note",
    "observe",
    "clearly",
    "similarly",
    "exists",
    "unique",
    "given",
    "using",
];

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ra", "tu", "vi", "so", "de", "pa", "ri", "mo", "te", "lu", "na", "ge", "bo", "fi", "xa",
    "zen", "tor", "lin", "mar", "quo", "sta", "tri", "hom", "morph", "alg", "ebr", "top", "ord", "ser", "int",
];

const TAG_STEMS: &[&str] = &[
    "calculus",
    "real-analysis",
    "linear-algebra",
    "abstract-algebra",
    "probability",
    "combinatorics",
    "number-theory",
    "general-topology",
    "complex-analysis",
    "group-theory",
    "sequences-and-series",
    "integration",
    "limits",
    "functional-analysis",
    "statistics",
    "geometry",
    "algebra-precalculus",
    "elementary-number-theory",
    "differential-equations",
    "matrices",
    "measure-theory",
    "discrete-mathematics",
    "inequality",
    "polynomials",
    "graph-theory",
    "logic",
    "category-theory",
    "ring-theory",
    "field-theory",
    "algebraic-geometry",
];

struct Vocabulary {
    words: Vec<String>,
    word_zipf: Zipf,
    tags: Vec<String>,
    tag_zipf: Zipf,
}

impl Vocabulary {
    fn new(rng: &mut SplitMix64) -> Self {
        let mut words: Vec<String> = CORE_WORDS.iter().map(|w| (*w).to_owned()).collect();
        while words.len() < 30_000 {
            let syllables = 2 + rng.below(3);
            let word: String = (0..syllables).map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize]).collect();
            words.push(word);
        }
        let mut tags: Vec<String> = TAG_STEMS.iter().map(|t| (*t).to_owned()).collect();
        let mut k = 0;
        while tags.len() < 1500 {
            tags.push(format!("{}-{}", TAG_STEMS[k % TAG_STEMS.len()], words[CORE_WORDS.len() + k]));
            k += 1;
        }
        Self { word_zipf: Zipf::new(words.len(), 1.07), words, tag_zipf: Zipf::new(tags.len(), 1.0), tags }
    }

    fn word(&self, rng: &mut SplitMix64) -> &str {
        &self.words[self.word_zipf.sample(rng)]
    }
}

fn math(rng: &mut SplitMix64) -> String {
    let var = ["x", "y", "n", "k", "t", "z", "a", "b"][rng.below(8) as usize];
    let (a, b) = (rng.below(9) + 1, rng.below(12) + 2);
    match rng.below(14) {
        0 => format!("{var}^{{{b}}}"),
        1 => format!("\\frac{{{a}}}{{{b}}}"),
        2 => format!("\\int_0^{{{a}}} {var}^{{{b}}}\\,d{var}"),
        3 => format!("\\sum_{{{var}=1}}^{{\\infty}} \\frac{{1}}{{{var}^{{{b}}}}}"),
        4 => format!("\\lim_{{{var}\\to 0}} \\frac{{\\sin({a}{var})}}{{{var}}}"),
        5 => format!("\\sqrt{{{var}^2 + {a}}}"),
        6 => format!("f({var}) = {a}{var}^2 - {b}{var} + 1"),
        7 => format!("{var} \\in \\mathbb{{R}}"),
        8 => format!("\\begin{{pmatrix}} {a} & {b} \\\\ 0 & {a} \\end{{pmatrix}}"),
        9 => format!("{a}^{{{b}}} \\equiv 1 \\pmod{{{}}}", b + 1),
        10 => "\\epsilon > 0".to_owned(),
        11 => format!("|{var}_n - L| < \\varepsilon"),
        12 => format!("\\binom{{{b}}}{{{a}}}"),
        _ => format!("G/H \\cong \\mathbb{{Z}}_{{{b}}}"),
    }
}

fn escape_attr(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#xA;"),
            other => out.push(other),
        }
    }
}

struct Writer<'v> {
    rng: SplitMix64,
    vocabulary: &'v Vocabulary,
    options: SynthOptions,
}

impl Writer<'_> {
    fn sentence(&mut self, html: &mut String, math_container: bool) {
        let words = 6 + self.rng.below(14);
        for i in 0..words {
            if i > 0 {
                html.push(' ');
            }
            if self.rng.chance(0.06) {
                let expression = math(&mut self.rng);
                if math_container {
                    html.push_str(&format!("<span class=\"math-container\">${expression}$</span>"));
                } else {
                    html.push_str(&format!("${expression}$"));
                }
            } else {
                html.push_str(self.vocabulary.word(&mut self.rng));
            }
        }
        html.push_str(". ");
    }

    /// HTML of about `target` characters.
    fn body(&mut self, target: usize) -> String {
        let math_container = self.rng.chance(0.7);
        let mut html = String::with_capacity(target + 200);
        while html.len() < target {
            match self.rng.below(20) {
                0 => {
                    html.push_str("<pre><code>");
                    for _ in 0..(1 + self.rng.below(4)) {
                        html.push_str(&format!("x = {} * y + {}\n", self.rng.below(100), self.rng.below(100)));
                    }
                    html.push_str("</code></pre>\n");
                }
                1 => {
                    html.push_str("<ul>\n");
                    for _ in 0..(2 + self.rng.below(3)) {
                        html.push_str("<li>");
                        self.sentence(&mut html, math_container);
                        html.push_str("</li>\n");
                    }
                    html.push_str("</ul>\n");
                }
                2 | 3 => {
                    let display = math(&mut self.rng);
                    html.push_str(&format!("<p>$${display}$$</p>\n"));
                }
                _ => {
                    html.push_str("<p>");
                    for _ in 0..(1 + self.rng.below(3)) {
                        self.sentence(&mut html, math_container);
                    }
                    html.push_str("</p>\n");
                }
            }
        }
        html
    }

    fn lognormal_length(&mut self, median: f64, sigma: f64, max: f64) -> usize {
        (median * (sigma * self.rng.normal()).exp()).clamp(40.0, max) as usize
    }

    fn date(&mut self, id: u64, total: u64) -> String {
        // Dates rise with ids, from 2010 to 2024, like a real site.
        let span_days = 14.0 * 365.0;
        let day = (id as f64 / total.max(1) as f64 * span_days) as i64 + self.rng.below(3) as i64;
        let (year, month, dom) = civil_from_days(14_610 + day);
        format!(
            "{year:04}-{month:02}-{dom:02}T{:02}:{:02}:{:02}.{:03}",
            self.rng.below(24),
            self.rng.below(60),
            self.rng.below(60),
            self.rng.below(1000)
        )
    }

    fn tags(&mut self) -> String {
        let count = 1 + self.rng.below(5) as usize;
        let mut chosen: Vec<&str> = Vec::with_capacity(count);
        while chosen.len() < count {
            let tag = &self.vocabulary.tags[self.vocabulary.tag_zipf.sample(&mut self.rng)];
            if !chosen.contains(&tag.as_str()) {
                chosen.push(tag);
            }
        }
        if self.options.old_tag_format {
            chosen.iter().map(|t| format!("<{t}>")).collect()
        } else {
            format!("|{}|", chosen.join("|"))
        }
    }
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes a synthetic `Posts.xml` to `out`.
pub fn generate(options: &SynthOptions, out: &mut dyn Write) -> std::io::Result<SynthSummary> {
    let mut rng = SplitMix64::new(options.seed);
    let vocabulary = Vocabulary::new(&mut rng);
    let mut writer = Writer { rng, vocabulary: &vocabulary, options: options.clone() };
    let mut summary = SynthSummary::default();
    let mut buffered = std::io::BufWriter::with_capacity(1 << 20, out);
    let header = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<posts>\r\n";
    buffered.write_all(header.as_bytes())?;
    summary.bytes += header.len() as u64;
    let total_posts = options.questions + options.answers;
    let mut next_id: u64 = 1;
    let mut answers_left = options.answers;
    let mut held_back: Option<String> = None;
    let mut row = String::with_capacity(64 * 1024);
    for q in 0..options.questions {
        let questions_left = options.questions - q;
        // Spread the answers evenly on average (uniform 0..2x the mean left per question), so
        // that some questions have none and the total comes out exact.
        let mean = answers_left as f64 / questions_left as f64;
        let count = if questions_left == 1 {
            answers_left
        } else {
            ((mean * 2.0 * writer.rng.unit()).round() as u64).min(answers_left)
        };
        answers_left -= count;
        let question_id = next_id;
        next_id += 1;
        let answer_ids: Vec<u64> = (0..count).map(|i| next_id + i).collect();
        next_id += count;
        let accepted = if !answer_ids.is_empty() && writer.rng.chance(0.55) {
            Some(answer_ids[writer.rng.below(answer_ids.len() as u64) as usize])
        } else {
            None
        };
        row.clear();
        row.push_str(&format!("  <row Id=\"{question_id}\" PostTypeId=\"1\""));
        if let Some(accepted) = accepted {
            row.push_str(&format!(" AcceptedAnswerId=\"{accepted}\""));
        }
        let date = writer.date(question_id, total_posts);
        let score = (writer.rng.normal() * 4.0).round() as i64 + 1;
        row.push_str(&format!(
            " CreationDate=\"{date}\" Score=\"{score}\" ViewCount=\"{}\" Body=\"",
            10 + writer.rng.below(50_000)
        ));
        let length = writer.lognormal_length(400.0, 0.8, 20_000.0);
        let body = writer.body(length);
        escape_attr(&body, &mut row);
        row.push_str("\" Title=\"");
        let title_words = 5 + writer.rng.below(10);
        let mut title = String::new();
        for i in 0..title_words {
            if i > 0 {
                title.push(' ');
            }
            if i == title_words / 2 && writer.rng.chance(0.4) {
                title.push_str(&format!("${}$", math(&mut writer.rng)));
            } else {
                title.push_str(vocabulary.word(&mut writer.rng));
            }
        }
        escape_attr(&title, &mut row);
        row.push_str("\" Tags=\"");
        let tags = writer.tags();
        escape_attr(&tags, &mut row);
        row.push_str(&format!("\" AnswerCount=\"{count}\" ContentLicense=\"CC BY-SA 4.0\" />\r\n"));
        let question_row = std::mem::take(&mut row);
        // About one question in 2000 is written after its first answer (answers before their
        // question occur in real dumps after merges).
        let question_late = count > 0 && writer.rng.chance(0.0005);
        if !question_late {
            buffered.write_all(question_row.as_bytes())?;
            summary.bytes += question_row.len() as u64;
        } else {
            held_back = Some(question_row.clone());
        }
        summary.questions += 1;
        for (i, answer_id) in answer_ids.iter().enumerate() {
            row.clear();
            let date = writer.date(*answer_id, total_posts);
            let score = ((writer.rng.unit().powi(3)) * 60.0) as i64 - 1;
            row.push_str(&format!(
                "  <row Id=\"{answer_id}\" PostTypeId=\"2\" ParentId=\"{question_id}\" CreationDate=\"{date}\" Score=\"{score}\" Body=\""
            ));
            let length = writer.lognormal_length(500.0, 0.9, 30_000.0);
            let body = writer.body(length);
            escape_attr(&body, &mut row);
            row.push_str("\" ContentLicense=\"CC BY-SA 4.0\" />\r\n");
            buffered.write_all(row.as_bytes())?;
            summary.bytes += row.len() as u64;
            summary.answers += 1;
            if i == 0
                && let Some(late) = held_back.take()
            {
                buffered.write_all(late.as_bytes())?;
                summary.bytes += late.len() as u64;
            }
        }
        if options.bad_row_every > 0 && (q + 1) % options.bad_row_every == 0 {
            let bad = match writer.rng.below(4) {
                0 => format!("  <row Id=\"{next_id}\" PostTypeId=\"1\" CreationDate=\"someday\" Title=\"bad date\" Body=\"x\" />\r\n"),
                1 => format!("  <row Id=\"{next_id}\" PostTypeId=\"1\" CreationDate=\"2015-01-01T00:00:00.000\" Title=\"broken &nope; entity\" Body=\"x\" />\r\n"),
                2 => "  <row Id=\"oops\" PostTypeId=\"2\" ParentId=\"1\" CreationDate=\"2015-01-01T00:00:00.000\" Body=\"x\" />\r\n".to_owned(),
                _ => format!("  <row Id=\"{next_id}\" PostTypeId=\"2\" ParentId=\"x\" CreationDate=\"2015-01-01T00:00:00.000\" Body=\"x\" />\r\n"),
            };
            next_id += 1;
            buffered.write_all(bad.as_bytes())?;
            summary.bytes += bad.len() as u64;
            summary.bad_rows += 1;
        }
    }
    let footer = "</posts>\r\n";
    buffered.write_all(footer.as_bytes())?;
    summary.bytes += footer.len() as u64;
    buffered.flush()?;
    Ok(summary)
}

/// Writes the embedded sample `copies` times with ids shifted per copy (scale tests that keep
/// the sample's realistic text).
pub fn replicate_sample(copies: u64, out: &mut dyn Write) -> std::io::Result<u64> {
    let sample = mathrank_dump::SAMPLE_POSTS_XML;
    let start = sample.find("<posts>").map_or(0, |i| i + "<posts>".len());
    let end = sample.rfind("</posts>").unwrap_or(sample.len());
    let rows = &sample[start..end];
    let mut buffered = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut bytes = 0u64;
    let header = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<posts>";
    buffered.write_all(header.as_bytes())?;
    bytes += header.len() as u64;
    for copy in 0..copies {
        let offset = copy * 10_000_000;
        let mut shifted = String::with_capacity(rows.len() + 4096);
        let mut rest = rows;
        // Shift every numeric Id, ParentId and AcceptedAnswerId.
        while let Some(at) = find_id_attribute(rest) {
            let (before, after) = rest.split_at(at.value_start);
            shifted.push_str(before);
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            match after[..digits].parse::<u64>() {
                Ok(id) if digits > 0 => shifted.push_str(&(id + offset).to_string()),
                _ => shifted.push_str(&after[..digits]),
            }
            rest = &after[digits..];
        }
        shifted.push_str(rest);
        buffered.write_all(shifted.as_bytes())?;
        bytes += shifted.len() as u64;
    }
    let footer = "</posts>\r\n";
    buffered.write_all(footer.as_bytes())?;
    buffered.flush()?;
    Ok(bytes + footer.len() as u64)
}

struct IdAttribute {
    value_start: usize,
}

fn find_id_attribute(text: &str) -> Option<IdAttribute> {
    ["Id=\"", "ParentId=\"", "AcceptedAnswerId=\""]
        .iter()
        .filter_map(|key| {
            let mut from = 0;
            while let Some(found) = text[from..].find(key) {
                let at = from + found;
                // `Id="` also matches the end of `ParentId="`: require a space before the key.
                if at > 0 && text.as_bytes()[at - 1] == b' ' {
                    return Some(at + key.len());
                }
                from = at + key.len();
            }
            None
        })
        .min()
        .map(|value_start| IdAttribute { value_start })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mathrank_dump::{AnswerJoiner, PostsReader, RowEvent};

    fn read(xml: &[u8]) -> (mathrank_dump::JoinSummary, u64, Vec<usize>) {
        let mut joiner = AnswerJoiner::default();
        let mut skipped = 0;
        let mut lengths = Vec::new();
        for event in PostsReader::new(xml) {
            match event.unwrap() {
                RowEvent::Post(post) => {
                    if post.kind == mathrank_dump::PostKind::Answer {
                        lengths.push(post.body_html.len());
                    }
                    joiner.push(post).unwrap();
                }
                RowEvent::Skipped(_) => skipped += 1,
                RowEvent::OtherType { .. } | RowEvent::Unchanged { .. } => {}
            }
        }
        (joiner.finish(), skipped, lengths)
    }

    #[test]
    fn generates_the_requested_counts_deterministically() {
        let options =
            SynthOptions { questions: 2000, answers: 3000, seed: 7, old_tag_format: false, bad_row_every: 500 };
        let mut first = Vec::new();
        let summary = generate(&options, &mut first).unwrap();
        let mut second = Vec::new();
        generate(&options, &mut second).unwrap();
        assert_eq!(first, second, "same seed, same bytes");
        assert_eq!((summary.questions, summary.answers, summary.bad_rows), (2000, 3000, 4));
        let (joined, skipped, mut lengths) = read(&first);
        let text = String::from_utf8(first.clone()).unwrap();
        let half = text.len() / 2;
        let first_half_answers = text[..half].matches("PostTypeId=\"2\"").count();
        assert!(
            (1200..=1800).contains(&first_half_answers),
            "answers spread evenly: {first_half_answers} in the first half"
        );
        assert_eq!((joined.questions, joined.answers, joined.orphan_answers), (2000, 3000, 0));
        assert_eq!(skipped, 4);
        lengths.sort_unstable();
        let median = lengths[lengths.len() / 2];
        assert!((350..=800).contains(&median), "answer HTML median {median}");
        assert!(*lengths.last().unwrap() > 3 * median, "long tail");
        let text = String::from_utf8(first).unwrap();
        for needle in ["math-container", "$$", "&lt;pre&gt;", "&lt;li&gt;"] {
            assert!(text.contains(needle), "no {needle} in the output");
        }
        let mut old = Vec::new();
        generate(&SynthOptions { old_tag_format: true, ..options }, &mut old).unwrap();
        assert!(String::from_utf8(old).unwrap().contains("Tags=\"&lt;"));
    }

    #[test]
    fn replicated_sample_keeps_every_row_joinable() {
        let mut out = Vec::new();
        replicate_sample(3, &mut out).unwrap();
        let (joined, skipped, _) = read(&out);
        let (single, single_skipped, _) = read(mathrank_dump::SAMPLE_POSTS_XML.as_bytes());
        assert_eq!(joined.answers, single.answers * 3);
        assert_eq!(joined.questions, single.questions * 3);
        assert_eq!(skipped, single_skipped * 3);
        assert_eq!(joined.duplicate_ids, 0);
    }
}
