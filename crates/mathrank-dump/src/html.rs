//! HTML bodies to the plain text the index and the reranker read.
//!
//! The text must be faithful: LaTeX stays exactly as written between `$..$` / `$$..$$`
//! (math-container spans are unwrapped), code keeps its spacing, links keep their text,
//! entities are decoded and block elements become line breaks.

use ego_tree::NodeRef;
use scraper::{Html, Node};

/// Converts a post body (HTML) into plain text with LaTeX kept verbatim.
pub fn html_to_text(html: &str) -> String {
    // Plain text (a query typed by hand, `$a<b$`) must not go through an HTML parser,
    // which would read `<b$ ...` as a tag.
    if !html.contains('&') && !looks_like_html(html) {
        return tidy(html);
    }
    let fragment = Html::parse_fragment(html);
    let mut writer = TextWriter::default();
    for child in fragment.tree.root().children() {
        walk(child, &mut writer);
    }
    writer.finish()
}

/// The question as the reranker and the first stage see it: `title + " " + body text`.
/// The body may be HTML (converted) or plain text (used as is).
pub fn question_text(title: &str, body: &str) -> String {
    let body = if looks_like_html(body) { html_to_text(body) } else { body.trim().to_owned() };
    match (title.trim(), body.is_empty()) {
        ("", _) => body,
        (title, true) => title.to_owned(),
        (title, false) => format!("{title} {body}"),
    }
}

/// True when `text` contains an HTML tag that Stack Exchange bodies use. LaTeX like `$a<b$`
/// is not mistaken for HTML: only known tag names followed by `>`, `/` or a space count.
pub fn looks_like_html(text: &str) -> bool {
    const TAGS: &[&str] = &[
        "p",
        "br",
        "div",
        "span",
        "a",
        "em",
        "strong",
        "b",
        "i",
        "ul",
        "ol",
        "li",
        "pre",
        "code",
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "img",
        "sup",
        "sub",
        "table",
        "tr",
        "td",
        "th",
        "strike",
        "del",
    ];
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(found) = text[start..].find('<') {
        let tag_start = start + found + 1;
        let rest = &bytes[tag_start..];
        let rest = rest.strip_prefix(b"/").unwrap_or(rest);
        let name_len = rest.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        let name = &rest[..name_len];
        let after = rest.get(name_len).copied();
        if matches!(after, Some(b'>' | b' ' | b'/' | b'\n'))
            && TAGS.iter().any(|tag| tag.as_bytes().eq_ignore_ascii_case(name))
        {
            return true;
        }
        start = tag_start;
    }
    false
}

#[derive(Default)]
struct TextWriter {
    out: String,
    /// Line breaks owed before the next text: 1 = new line, 2 = blank line.
    pending_breaks: u8,
    pre_depth: usize,
    list_counters: Vec<Option<u32>>,
}

impl TextWriter {
    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn request_break(&mut self, breaks: u8) {
        self.pending_breaks = self.pending_breaks.max(breaks);
    }

    fn flush_breaks(&mut self) {
        if self.pending_breaks > 0 && !self.out.is_empty() {
            while self.out.ends_with([' ', '\t']) {
                self.out.pop();
            }
            let have = self.out.chars().rev().take_while(|c| *c == '\n').count() as u8;
            for _ in have..self.pending_breaks {
                self.out.push('\n');
            }
        }
        self.pending_breaks = 0;
    }

    fn text(&mut self, text: &str) {
        if self.pre_depth > 0 {
            if !text.is_empty() {
                self.flush_breaks();
                self.out.push_str(text);
            }
            return;
        }
        // Outside <pre>, indentation and blank lines of the source HTML carry no meaning.
        let mut text = text;
        if self.pending_breaks > 0 || self.at_line_start() {
            text = text.trim_start();
        }
        if text.is_empty() {
            return;
        }
        self.flush_breaks();
        let mut lines = text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let line = if self.at_line_start() { line.trim_start_matches([' ', '\t']) } else { line };
            self.out.push_str(line);
            if lines.peek().is_some() {
                while self.out.ends_with([' ', '\t']) {
                    self.out.pop();
                }
                self.out.push('\n');
            }
        }
    }

    fn finish(mut self) -> String {
        self.pending_breaks = 0;
        let trimmed_len = self.out.trim_end().len();
        self.out.truncate(trimmed_len);
        self.out
    }
}

fn walk(node: NodeRef<'_, Node>, writer: &mut TextWriter) {
    match node.value() {
        Node::Text(text) => writer.text(text),
        Node::Element(element) => {
            let name = element.name();
            match name {
                "script" | "style" | "head" | "template" => {}
                "br" => {
                    writer.flush_breaks();
                    writer.out.push('\n');
                }
                "hr" => writer.request_break(2),
                "img" => {
                    if let Some(alt) = element.attr("alt").map(str::trim).filter(|alt| !alt.is_empty()) {
                        writer.text(&format!("[{alt}]"));
                    }
                }
                "span" if element.has_class("math-container", scraper::CaseSensitivity::AsciiCaseInsensitive) => {
                    let math: String = node.descendants().filter_map(|n| n.value().as_text().map(|t| &**t)).collect();
                    let trimmed = math.trim();
                    if trimmed.starts_with('$') || trimmed.starts_with("\\(") || trimmed.starts_with("\\[") {
                        writer.text(&math);
                    } else if !trimmed.is_empty() {
                        writer.text(&format!("${trimmed}$"));
                    }
                }
                "pre" => {
                    writer.request_break(2);
                    writer.pre_depth += 1;
                    children(node, writer);
                    writer.pre_depth -= 1;
                    writer.request_break(2);
                }
                "ul" | "ol" => {
                    writer.request_break(if writer.list_counters.is_empty() { 2 } else { 1 });
                    writer.list_counters.push((name == "ol").then_some(0));
                    children(node, writer);
                    writer.list_counters.pop();
                    writer.request_break(if writer.list_counters.is_empty() { 2 } else { 1 });
                }
                "li" => {
                    writer.request_break(1);
                    writer.flush_breaks();
                    let depth = writer.list_counters.len().saturating_sub(1);
                    writer.out.push_str(&"  ".repeat(depth));
                    let marker = match writer.list_counters.last_mut() {
                        Some(Some(counter)) => {
                            *counter += 1;
                            format!("{counter}. ")
                        }
                        _ => "- ".to_owned(),
                    };
                    writer.out.push_str(&marker);
                    children(node, writer);
                    writer.request_break(1);
                }
                "td" | "th" => {
                    if node.prev_siblings().any(|sibling| sibling.value().is_element()) {
                        writer.text(" | ");
                    }
                    children(node, writer);
                }
                "p" | "div" | "blockquote" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "dl" => {
                    writer.request_break(2);
                    children(node, writer);
                    writer.request_break(2);
                }
                "tr" | "dt" | "dd" => {
                    writer.request_break(1);
                    children(node, writer);
                    writer.request_break(1);
                }
                _ => children(node, writer),
            }
        }
        _ => children(node, writer),
    }
}

fn children(node: NodeRef<'_, Node>, writer: &mut TextWriter) {
    for child in node.children() {
        walk(child, writer);
    }
}

fn tidy(text: &str) -> String {
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let cases: &[(&str, &str)] = &[
            ("<p>Let $x^2+1$ be given.</p>", "Let $x^2+1$ be given."),
            (r#"<p>Then <span class="math-container">$\frac{a}{b}$</span> holds.</p>"#, r"Then $\frac{a}{b}$ holds."),
            (r#"<p><span class="math-container" id="q1">x_{<b>1</b>}</span></p>"#, "$x_{1}$"),
            (
                "<p>Display:</p>\n<p>$$\n\\int_0^1 x^2\\,dx = \\frac13\n$$</p>",
                "Display:\n\n$$\n\\int_0^1 x^2\\,dx = \\frac13\n$$",
            ),
            ("<p>It costs \\$5, not $x$.</p>", "It costs \\$5, not $x$."),
            (
                "<pre><code>for i in range(3):\n    print(\"$i\")\n</code></pre>",
                "for i in range(3):\n    print(\"$i\")",
            ),
            ("<p>Use <code>a$b</code> here.</p>", "Use a$b here."),
            ("<p>a &lt; b &amp;&amp; c &gt; d &nbsp;&eacute;</p>", "a < b && c > d \u{a0}é"),
            (r#"<p>See <a href="https://example.org/x">the wiki</a>.</p>"#, "See the wiki."),
            ("<ul>\n<li>one</li>\n<li>two $y$</li>\n</ul>", "- one\n- two $y$"),
            ("<ol><li>first</li><li>second</li></ol>", "1. first\n2. second"),
            ("<p>a<br>b<br/>c</p><hr><p>d</p>", "a\nb\nc\n\nd"),
            ("<blockquote>\n  <p>quoted</p>\n</blockquote>\n\n<p>after</p>", "quoted\n\nafter"),
            ("<h2>Title</h2><p>text</p>", "Title\n\ntext"),
            ("plain $a<b$ text", "plain $a<b$ text"),
            (r#"<p><img src="x.png" alt="diagram"></p>"#, "[diagram]"),
            ("", ""),
        ];
        for (html, expected) in cases {
            assert_eq!(html_to_text(html), *expected, "input: {html:?}");
        }
    }

    #[test]
    fn html_detection() {
        assert!(looks_like_html("<p>hi</p>"));
        assert!(looks_like_html("text<br/>more"));
        assert!(!looks_like_html("$a<b$ and $c>d$"));
        assert!(!looks_like_html("$x<p$"));
        assert!(!looks_like_html("plain"));
    }

    #[test]
    fn question_text_joins_title_and_body() {
        assert_eq!(question_text("Title?", "<p>Body $x$</p>"), "Title? Body $x$");
        assert_eq!(question_text("", "just $x<y$"), "just $x<y$");
        assert_eq!(question_text("Only title", "  "), "Only title");
    }

    proptest::proptest! {
        #[test]
        fn converter_never_panics(html in "(<[a-z/ \"=]{0,12}>|[^<]{0,20}|&[a-z#0-9]{0,6};?|\\$){0,40}") {
            let _ = html_to_text(&html);
            let _ = looks_like_html(&html);
        }

        #[test]
        fn text_without_markup_is_kept(text in "[a-zA-Z0-9 $^_+=()\\\\{}]{0,80}") {
            proptest::prop_assert_eq!(html_to_text(&text), text.trim());
        }
    }
}
