//! HTML bodies to the text the model was fine-tuned on, which the index, the reranker and
//! the snippets all read.
//!
//! This is the authors' preprocessing (AnReu/ALBERT-for-Math-AR): each
//! `span.math-container` becomes its text, wrapped in `$..$` unless it already starts with
//! `$`; then BeautifulSoup's `.text` of the whole fragment, which is every text node in
//! document order, with entities decoded and nothing added: no separators for `<br>` or
//! blocks, no list markers, no image alt text. Comments and the contents of `script`,
//! `style` and `template` are not text (BeautifulSoup gives them other string types). The
//! model's tokenizer folds whitespace, so layout is irrelevant to it; display text is the
//! same text, with whitespace collapsed where a snippet is shown.

use ego_tree::NodeRef;
use scraper::{Html, Node};

/// Converts a post body or title (HTML) into the text the model reads, LaTeX kept verbatim.
/// Text without markup (a query typed by hand, `$a<b$`) is returned trimmed, never parsed:
/// an HTML parser would read `<b$ ...` as a tag.
pub fn html_to_text(html: &str) -> String {
    // Entities alone are decoded by parsing, unless a stray `<` could then read as a tag.
    let entities_only = has_entity(html) && !html.contains('<');
    if !looks_like_html(html) && !entities_only {
        return html.trim().to_owned();
    }
    let fragment = Html::parse_fragment(html);
    let mut out = String::with_capacity(html.len());
    for child in fragment.tree.root().children() {
        collect(child, &mut out);
    }
    out.trim().to_owned()
}

fn collect(node: NodeRef<'_, Node>, out: &mut String) {
    match node.value() {
        Node::Text(text) => out.push_str(text),
        Node::Element(element) => match element.name() {
            "script" | "style" | "template" => {}
            "span" if element.has_class("math-container", scraper::CaseSensitivity::AsciiCaseInsensitive) => {
                // The span's whole text, nested math spans included: the authors replace the
                // outer span first, which detaches the inner ones.
                let math: String = node.descendants().filter_map(|n| n.value().as_text().map(|t| &**t)).collect();
                if math.starts_with('$') {
                    out.push_str(&math);
                } else {
                    out.push('$');
                    out.push_str(&math);
                    out.push('$');
                }
            }
            _ => {
                for child in node.children() {
                    collect(child, out);
                }
            }
        },
        _ => {
            for child in node.children() {
                collect(child, out);
            }
        }
    }
}

/// Whether `text` holds an HTML character reference (`&amp;`, `&#955;`, `&#x3bb;`).
fn has_entity(text: &str) -> bool {
    text.match_indices('&').any(|(at, _)| {
        let rest = &text.as_bytes()[at + 1..];
        let name = rest.strip_prefix(b"#x").or_else(|| rest.strip_prefix(b"#")).unwrap_or(rest);
        let len = name.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        len > 0 && name.get(len) == Some(&b';')
    })
}

/// Segment A as the model was trained on it: the title and the body, each converted once by
/// [`html_to_text`], joined by one space. Either may be HTML or plain text.
pub fn question_text(title: &str, body: &str) -> String {
    let (title, body) = (html_to_text(title), html_to_text(body));
    match (title.is_empty(), body.is_empty()) {
        (true, _) => body,
        (false, true) => title,
        (false, false) => format!("{title} {body}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from real Math SE bodies, with what BeautifulSoup's `.text` gives after the
    /// authors' span replacement (checked with bs4 4.12).
    #[test]
    fn conversions() {
        let cases: &[(&str, &str)] = &[
            ("<p>Let $x^2+1$ be given.</p>", "Let $x^2+1$ be given."),
            (r#"<p>Then <span class="math-container">$\frac{a}{b}$</span> holds.</p>"#, r"Then $\frac{a}{b}$ holds."),
            // A span without dollars gets them; nested markup inside it is text.
            (r#"<p><span class="math-container" id="q1">x_{<b>1</b>}</span></p>"#, "$x_{1}$"),
            (r#"<span class="math-container">$$\sum_n a_n$$</span>"#, "$$\\sum_n a_n$$"),
            (
                "<p>Display:</p>\n<p>$$\n\\int_0^1 x^2\\,dx = \\frac13\n$$</p>",
                "Display:\n$$\n\\int_0^1 x^2\\,dx = \\frac13\n$$",
            ),
            ("<p>It costs \\$5, not $x$.</p>", "It costs \\$5, not $x$."),
            (
                "<pre><code>for i in range(3):\n    print(\"$i\")\n</code></pre>",
                "for i in range(3):\n    print(\"$i\")",
            ),
            ("<p>Use <code>a$b</code> here.</p>", "Use a$b here."),
            // Nested spans (ARQMath topic A.255): the outer one's text, as is.
            (
                r#"<span class="math-container">$<span class="math-container"> -\infty< x</span> $</span>"#,
                r"$ -\infty< x $",
            ),
            // `<` inside math arrives escaped in real bodies and must survive.
            (r#"<p><span class="math-container">$0\leq r&lt;q$</span> holds</p>"#, r"$0\leq r<q$ holds"),
            ("<p>a &lt; b &amp;&amp; c &gt; d &nbsp;&eacute;</p>", "a < b && c > d \u{a0}é"),
            (r#"<p>See <a href="https://example.org/x">the wiki</a>.</p>"#, "See the wiki."),
            // Lists, line breaks, images and tables add nothing: no markers, no alt text.
            ("<ul>\n<li>one</li>\n<li>two $y$</li>\n</ul>", "one\ntwo $y$"),
            ("<ol><li>first</li><li>second</li></ol>", "firstsecond"),
            ("<p>a<br>b<br/>c</p><hr><p>d</p>", "abcd"),
            (r#"<p><img src="x.png" alt="enter image description here"></p>"#, ""),
            ("<table><tr><td>1</td><td>2</td></tr></table>", "12"),
            ("<blockquote>\n  <p>quoted</p>\n</blockquote>\n\n<p>after</p>", "quoted\n\n\nafter"),
            ("<h2>Title</h2><p>text</p><!-- note -->", "Titletext"),
            ("plain $a<b$ text", "plain $a<b$ text"),
            ("Is &lambda; an eigenvalue &#955;?", "Is λ an eigenvalue λ?"),
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
        // Titles of ARQMath topics hold spans: converted like bodies, exactly once.
        assert_eq!(
            question_text(r#"Why <span class="math-container">0\leq r&lt;q</span>?"#, "<p>Body</p>"),
            r"Why $0\leq r<q$? Body"
        );
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
