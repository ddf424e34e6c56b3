//! LaTeX-aware text analysis, shared by indexing and querying.
//!
//! A text is split into prose and math segments (`$..$`, `$$..$$`, `\(..\)`, `\[..\]`; `\$` is
//! a literal dollar). Prose becomes lowercased, stemmed English words without stop words. Math
//! becomes symbol tokens — commands (`\frac`, `\int`), identifiers (case kept: `x` and `X`
//! differ), numbers, operators — plus bigrams of adjacent symbols (`x·^`, `^·2`), which is what
//! lets BM25 see structure such as `x^2` versus `2^x`. Layout-only commands (`\left`, `\,`,
//! `\displaystyle`) and braces carry no meaning for retrieval and are dropped. The words inside
//! `\text{...}`, `\mathrm{...}`, `\operatorname{...}` and their kin are words: whole tokens in
//! the math analysis, and prose words too. Function names count whole whether or not they are
//! written as commands: `sin x`, `sinx` and `\sin x` all give `\sin`.
//!
//! At index time a text may count several times (the question's words weigh more than the
//! answer's, BM25F-style): [`repeated`] marks it, and both analyzers then give each of its terms
//! that many times, which multiplies their term frequencies and the field's length alike.

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter, TextAnalyzer, Token, TokenFilter, TokenStream,
    Tokenizer,
};

/// Name under which the prose analyzer is registered.
pub const PROSE_ANALYZER: &str = "mathrank_prose";
/// Name under which the math analyzer is registered.
pub const MATH_ANALYZER: &str = "mathrank_math";
/// Bumped whenever analysis changes what terms a text yields (an index must then be rebuilt).
/// 3: words of `\text{..}`-like commands, function names whole without a backslash.
/// 4: the words that phrase a question ("how do I") are stop words too.
pub const ANALYZER_VERSION: u32 = 4;

/// The prose stop words: Lucene's English set (what tantivy ships), and the words that
/// phrase a question rather than say what it is about ("How do I ...", "Can someone help
/// me ..."). On a site's full corpus these are in most documents and weigh almost nothing,
/// but on a small index (a sample, a few hundred threads) their weight is large, and a
/// question made mostly of LaTeX was then ranked by them. Words that say what is asked
/// (`prove`, `show`, `find`, `compute`) and quantifiers (`all`, `any`, `some`) stay terms.
const STOP_WORDS: &[&str] = &[
    // Lucene's English stop set (`EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`).
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
    // Question phrasing.
    "how", "what", "why", "which", "who", "whom", "do", "does", "did", "i", "me", "my", "we", "us", "our", "you",
    "your", "am", "can", "could", "would", "should", "please", "anyone", "someone", "somebody", "help", "thanks",
    "thank", "hi", "hello",
];

/// Joins the two symbols of a structure bigram; not a character LaTeX source uses.
const BIGRAM_JOINER: char = '\u{b7}';

/// The first of 256 private-use characters that, leading a text, say how many times its terms
/// count (see [`repeated`]).
const REPEAT_MARK: u32 = 0xF_0000;

/// `text` marked so that both analyzers give each of its terms `times` times (at most 255): how a
/// document's title or question body gets more weight than its answer within one field.
/// Terms of a text without the mark count once.
pub fn repeated(text: &str, times: u8) -> String {
    let mark = char::from_u32(REPEAT_MARK + u32::from(times)).unwrap_or('\u{F0001}');
    let mut marked = String::with_capacity(text.len() + mark.len_utf8());
    marked.push(mark);
    marked.push_str(text);
    marked
}

/// `text` without a leading repeat mark (a query means its words once).
pub fn strip_repeat_mark(text: &str) -> &str {
    split_repeats(text).1
}

/// How many times the terms of `text` count, and the text without its mark.
fn split_repeats(text: &str) -> (usize, &str) {
    match text.chars().next() {
        Some(c) if (REPEAT_MARK..REPEAT_MARK + 256).contains(&u32::from(c)) => {
            ((u32::from(c) - REPEAT_MARK) as usize, &text[c.len_utf8()..])
        }
        _ => (1, text),
    }
}

/// A piece of text that is either prose or math (delimiters removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    Prose(&'a str, usize),
    Math(&'a str, usize),
}

/// Splits `text` into prose and math segments; each carries its byte offset in `text`.
pub fn segments(text: &str) -> Vec<Segment<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut prose_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (open_len, close): (usize, &str) = match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'$') => {
                i += 2;
                continue;
            }
            b'\\' if bytes.get(i + 1) == Some(&b'(') => (2, "\\)"),
            b'\\' if bytes.get(i + 1) == Some(&b'[') => (2, "\\]"),
            b'$' if bytes.get(i + 1) == Some(&b'$') => (2, "$$"),
            b'$' => (1, "$"),
            _ => {
                i += 1;
                continue;
            }
        };
        let body_start = i + open_len;
        let Some(found) = find_unescaped(&text[body_start..], close) else {
            i += open_len;
            continue;
        };
        if i > prose_start {
            out.push(Segment::Prose(&text[prose_start..i], prose_start));
        }
        out.push(Segment::Math(&text[body_start..body_start + found], body_start));
        i = body_start + found + close.len();
        prose_start = i;
    }
    if prose_start < text.len() {
        out.push(Segment::Prose(&text[prose_start..], prose_start));
    }
    out
}

fn find_unescaped(haystack: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = haystack[from..].find(needle) {
        let at = from + found;
        let escaped = needle.starts_with('$') && haystack[..at].ends_with('\\') && !haystack[..at].ends_with("\\\\");
        if !escaped {
            return Some(at);
        }
        from = at + needle.len();
    }
    None
}

/// Emits the words of the prose segments (math is skipped).
#[derive(Clone, Default)]
pub struct ProseTokenizer;

/// Emits the symbols and symbol bigrams of the math segments (prose is skipped).
#[derive(Clone, Default)]
pub struct MathTokenizer;

/// A token stream over tokens computed up front.
pub struct VecTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

fn push_token(tokens: &mut Vec<Token>, text: &str, from: usize, to: usize) {
    let position = tokens.len();
    tokens.push(Token { offset_from: from, offset_to: to, position, text: text.to_owned(), position_length: 1 });
}

/// Marks every token with the number of times it counts, for [`Repeat`] at the end of the
/// analyzer (the filters in between keep `position_length`, which mathrank does not index).
fn tokens_repeated(mut tokens: Vec<Token>, times: usize) -> VecTokenStream {
    if times != 1 {
        for token in &mut tokens {
            token.position_length = times;
        }
    }
    VecTokenStream { tokens, next: 0 }
}

/// Gives each token `position_length` times (set by the tokenizers from a [`repeated`] text),
/// then once more never: the last filter of both analyzers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Repeat;

impl TokenFilter for Repeat {
    type Tokenizer<T: Tokenizer> = RepeatTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> RepeatTokenizer<T> {
        RepeatTokenizer(tokenizer)
    }
}

#[derive(Clone)]
pub struct RepeatTokenizer<T>(T);

impl<T: Tokenizer> Tokenizer for RepeatTokenizer<T> {
    type TokenStream<'a> = RepeatTokenStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        RepeatTokenStream { tail: self.0.token_stream(text), left: 0 }
    }
}

pub struct RepeatTokenStream<T> {
    tail: T,
    /// Copies of the current token still to give.
    left: usize,
}

impl<T: TokenStream> TokenStream for RepeatTokenStream<T> {
    fn advance(&mut self) -> bool {
        if self.left > 0 {
            self.left -= 1;
            return true;
        }
        loop {
            if !self.tail.advance() {
                return false;
            }
            let times = self.tail.token().position_length;
            if times > 0 {
                self.left = times - 1;
                return true;
            }
        }
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

/// The alphanumeric words of `text` (at byte offset `base` of the whole).
fn push_words(tokens: &mut Vec<Token>, text: &str, base: usize) {
    let mut word_start = None;
    for (offset, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_alphanumeric(), word_start) {
            (true, None) => word_start = Some(offset),
            (false, Some(start)) => {
                push_token(tokens, &text[start..offset], base + start, base + offset);
                word_start = None;
            }
            _ => {}
        }
    }
}

/// Commands whose argument is text, not math: its words are read as words.
const TEXT_COMMANDS: &[&str] = &[
    "text",
    "textrm",
    "textit",
    "textbf",
    "textsf",
    "texttt",
    "textnormal",
    "textup",
    "mathrm",
    "mathit",
    "mathsf",
    "mathtt",
    "operatorname",
    "mbox",
    "hbox",
];

/// Function names that count whole, with or without a backslash (`sin x`, `\sin x`). Longer
/// names first, so that `sinh` is not read as `sin` followed by `h`.
const FUNCTION_NAMES: &[&str] = &[
    "arcsin", "arccos", "arctan", "limsup", "liminf", "sinh", "cosh", "tanh", "coth", "sin", "cos", "tan", "cot",
    "sec", "csc", "log", "exp", "lim", "sup", "inf", "max", "min", "det", "dim", "ker", "deg", "gcd", "lcm", "arg",
    "mod", "ln", "lg",
];

/// The known function name that `letters` starts with, if any.
fn function_prefix(letters: &str) -> Option<&'static str> {
    FUNCTION_NAMES.iter().copied().find(|name| letters.starts_with(name))
}

/// Byte ranges of the arguments of text commands in a math segment (`\text{...}`), braces
/// balanced; an unclosed brace runs to the end.
pub fn text_command_contents(math: &str) -> Vec<(usize, usize)> {
    let bytes = math.as_bytes();
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let name_len = bytes[i + 1..].iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let name = &math[i + 1..i + 1 + name_len];
        i += 1 + name_len.max(1);
        if !TEXT_COMMANDS.contains(&name) {
            continue;
        }
        let mut open = i;
        while open < bytes.len() && bytes[open] == b' ' {
            open += 1;
        }
        if bytes.get(open) != Some(&b'{') {
            continue;
        }
        let (mut depth, mut end) = (0usize, open);
        while end < bytes.len() {
            match bytes[end] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            end += 1;
        }
        ranges.push((open + 1, end.min(bytes.len())));
        i = (end + 1).min(bytes.len());
    }
    ranges
}

impl Tokenizer for ProseTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let (times, text) = split_repeats(text);
        let mut tokens = Vec::new();
        for segment in segments(text) {
            match segment {
                Segment::Prose(prose, base) => push_words(&mut tokens, prose, base),
                // `\text{if } x > 0`: the words of text commands are prose inside math.
                Segment::Math(math, base) => {
                    for (start, end) in text_command_contents(math) {
                        push_words(&mut tokens, &math[start..end], base + start);
                    }
                }
            }
        }
        tokens_repeated(tokens, times)
    }
}

/// Commands that only change layout or size: no retrieval value.
const LAYOUT_COMMANDS: &[&str] = &[
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "limits",
    "nolimits",
    "quad",
    "qquad",
    "mathrm",
    "mathit",
    "mathbf",
    "rm",
    "bf",
    "it",
    "text",
    "textrm",
    "mbox",
    "hspace",
    "vspace",
    "phantom",
    "tag",
    "label",
    "nonumber",
    "begin",
    "end",
    "middle",
];

/// One name for commands that write the same thing: `3 \bmod 7` and `\pmod{7}` are both
/// "mod", `\le` is `\leq`, `\dfrac` is `\frac`.
fn canonical_command(name: &str) -> &str {
    match name {
        "bmod" | "pmod" | "pod" => "mod",
        "le" | "leqslant" => "leq",
        "ge" | "geqslant" => "geq",
        "ne" => "neq",
        "to" => "rightarrow",
        "gets" => "leftarrow",
        "dfrac" | "tfrac" | "cfrac" => "frac",
        "iff" => "Longleftrightarrow",
        "land" => "wedge",
        "lor" => "vee",
        "lnot" => "neg",
        other => other,
    }
}

/// The symbols of one math segment, in order.
pub fn math_symbols(math: &str) -> Vec<(String, usize, usize)> {
    let bytes = math.as_bytes();
    let mut symbols = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c == b'\\' {
            let name_len = bytes[i + 1..].iter().take_while(|b| b.is_ascii_alphabetic()).count();
            if name_len > 0 {
                let name = &math[i + 1..i + 1 + name_len];
                i += 1 + name_len;
                if TEXT_COMMANDS.contains(&name)
                    && let Some(&(from, to)) = text_command_contents(&math[start..]).first()
                    && math[i..start + from].trim() == "{"
                {
                    // `\operatorname{rank}`, `\text{ if }`: words, whole; one letter
                    // (`\mathrm{d}x`) stays an identifier.
                    let (from, to) = (start + from, start + to);
                    text_symbols(&math[from..to], from, &mut symbols);
                    i = (to + 1).min(bytes.len());
                } else if !LAYOUT_COMMANDS.contains(&name) {
                    symbols.push((format!("\\{}", canonical_command(name)), start, i));
                }
            } else {
                // `\{`, `\|`, `\,` ...: keep set braces and norms, drop spacing.
                let next = math[i + 1..].chars().next();
                i += 1 + next.map_or(0, char::len_utf8);
                if let Some(symbol @ ('{' | '}' | '|')) = next {
                    symbols.push((format!("\\{symbol}"), start, i));
                }
            }
        } else if c.is_ascii_digit() {
            while i < bytes.len()
                && (bytes[i].is_ascii_digit() || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            symbols.push((math[start..i].to_owned(), start, i));
        } else if c.is_ascii_alphabetic() {
            // Every letter is an identifier (`xy` is x times y), except that a function name
            // counts whole, as its command would: `sin x` and `sinx` give `\sin`.
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let mut offset = start;
            if let Some(name) = function_prefix(&math[start..i]) {
                symbols.push((format!("\\{}", canonical_command(name)), start, start + name.len()));
                offset += name.len();
            }
            for offset in offset..i {
                symbols.push((math[offset..offset + 1].to_owned(), offset, offset + 1));
            }
        } else if c.is_ascii() {
            i += 1;
            if !(c.is_ascii_whitespace() || matches!(c, b'{' | b'}' | b'&' | b'~' | b'$')) {
                symbols.push(((c as char).to_string(), start, i));
            }
        } else {
            let ch = math[i..].chars().next().unwrap_or(' ');
            i += ch.len_utf8();
            if !ch.is_whitespace() {
                symbols.push((ch.to_string(), start, i));
            }
        }
    }
    symbols
}

/// The symbols of a text command's argument at byte `base`: a single letter is an identifier,
/// a function name is its command, any other word a lowercased word token.
fn text_symbols(content: &str, base: usize, symbols: &mut Vec<(String, usize, usize)>) {
    let trimmed = content.trim();
    if trimmed.len() == 1 && trimmed.as_bytes()[0].is_ascii_alphabetic() {
        let at = base + (content.len() - content.trim_start().len());
        symbols.push((trimmed.to_owned(), at, at + 1));
        return;
    }
    let mut word_start = None;
    for (offset, c) in content.char_indices().chain(std::iter::once((content.len(), ' '))) {
        match (c.is_alphanumeric(), word_start) {
            (true, None) => word_start = Some(offset),
            (false, Some(from)) => {
                let word = &content[from..offset];
                let token = if FUNCTION_NAMES.contains(&word) {
                    format!("\\{}", canonical_command(word))
                } else {
                    word.to_lowercase()
                };
                symbols.push((token, base + from, base + offset));
                word_start = None;
            }
            _ => {}
        }
    }
}

impl Tokenizer for MathTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let (times, text) = split_repeats(text);
        let mut tokens = Vec::new();
        for segment in segments(text) {
            let Segment::Math(math, base) = segment else { continue };
            let symbols = math_symbols(math);
            for (index, (symbol, from, to)) in symbols.iter().enumerate() {
                push_token(&mut tokens, symbol, base + from, base + to);
                if let Some((next, _, next_to)) = symbols.get(index + 1) {
                    let bigram = format!("{symbol}{BIGRAM_JOINER}{next}");
                    push_token(&mut tokens, &bigram, base + from, base + next_to);
                }
            }
        }
        tokens_repeated(tokens, times)
    }
}

/// The prose analyzer: words, lowercased, English stop words removed, English stemming.
pub fn prose_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(ProseTokenizer)
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(STOP_WORDS.iter().map(|word| (*word).to_owned())))
        .filter(Stemmer::new(Language::English))
        .filter(Repeat)
        .build()
}

/// The math analyzer: symbols and symbol bigrams of the LaTeX segments.
pub fn math_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(MathTokenizer).filter(RemoveLongFilter::limit(60)).filter(Repeat).build()
}

/// Registers both analyzers; must run on every index open or create.
pub fn register(index: &tantivy::Index) {
    index.tokenizers().register(PROSE_ANALYZER, prose_analyzer());
    index.tokenizers().register(MATH_ANALYZER, math_analyzer());
}

/// All terms an analyzer yields for `text`, in order.
pub fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut terms = Vec::new();
    while stream.advance() {
        terms.push(stream.token().text.clone());
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_phrasing_is_not_searched_but_what_is_asked_is() {
        let terms = analyze(
            &mut prose_analyzer(),
            "How do I compute this? Can someone help me prove that all of them are zero",
        );
        assert_eq!(terms, ["comput", "prove", "all", "them", "zero"]);
    }

    #[test]
    fn segments_split_prose_and_math() {
        let text = r"Let $x^2$ and $$\int_0^1 f$$ cost \$5 or \(a\) and \[b\] $unclosed";
        let kinds: Vec<String> = segments(text)
            .iter()
            .map(|segment| match segment {
                Segment::Prose(s, _) => format!("P:{s}"),
                Segment::Math(s, _) => format!("M:{s}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "P:Let ",
                "M:x^2",
                "P: and ",
                r"M:\int_0^1 f",
                r"P: cost \$5 or ",
                "M:a",
                "P: and ",
                "M:b",
                "P: $unclosed"
            ]
        );
    }

    #[test]
    fn prose_is_lowercased_stemmed_without_math_or_stop_words() {
        let terms = analyze(&mut prose_analyzer(), r"The Integrals of $\sin x$ are converging");
        assert_eq!(terms, ["integr", "converg"]);
    }

    #[test]
    fn text_command_words_are_words() {
        let names = |math: &str| math_symbols(math).into_iter().map(|(s, _, _)| s).collect::<Vec<_>>();
        assert_eq!(names(r"\operatorname{rank}(A)"), ["rank", "(", "A", ")"]);
        assert_eq!(names(r"f(x) = 0 \text{ otherwise}"), ["f", "(", "x", ")", "=", "0", "otherwise"]);
        assert_eq!(names(r"\mathrm{d}x"), ["d", "x"]);
        assert_eq!(names(r"\operatorname{Tr}"), ["tr"]);
        assert_eq!(names(r"\text{sin}"), [r"\sin"]);
        assert_eq!(names(r"\text{unclosed"), ["unclosed"]);
        // And the prose analyzer reads them as words.
        let prose =
            analyze(&mut prose_analyzer(), r"the $\operatorname{rank}$ of $f(x)=1 \text{ if } x \in \mathbb{Q}$");
        assert_eq!(prose, ["rank"]);
        let prose = analyze(&mut prose_analyzer(), r"$\text{determinants of matrices}$");
        assert_eq!(prose, ["determin", "matric"]);
    }

    #[test]
    fn function_names_count_whole_with_or_without_a_backslash() {
        let names = |math: &str| math_symbols(math).into_iter().map(|(s, _, _)| s).collect::<Vec<_>>();
        assert_eq!(names("sin x"), names(r"\sin x"));
        assert_eq!(names("sinx"), [r"\sin", "x"]);
        assert_eq!(names(r"\sinh t"), [r"\sinh", "t"]);
        assert_eq!(names("sinh t"), [r"\sinh", "t"]);
        assert_eq!(names("log n"), [r"\log", "n"]);
        assert_eq!(names("xy"), ["x", "y"], "other letters stay single identifiers");
        assert_eq!(names(r"a \bmod n"), names("a mod n"));
    }

    #[test]
    fn equivalent_commands_share_a_token() {
        let names = |math: &str| math_symbols(math).into_iter().map(|(s, _, _)| s).collect::<Vec<_>>();
        assert_eq!(names(r"3 \bmod 7"), names(r"3 \mod 7"));
        assert_eq!(names(r"\pmod{7}"), [r"\mod", "7"]);
        assert_eq!(names(r"a \le b"), names(r"a \leq b"));
        assert_eq!(names(r"\dfrac12"), names(r"\frac12"));
    }

    #[test]
    fn math_symbols_and_structure() {
        let terms = analyze(&mut math_analyzer(), r"see $\frac{x^2}{2}\,\left(y\right)$");
        assert_eq!(
            terms,
            [r"\frac", "\\frac·x", "x", "x·^", "^", "^·2", "2", "2·2", "2", "2·(", "(", "(·y", "y", "y·)", ")"]
        );
        assert!(analyze(&mut math_analyzer(), "no math here").is_empty());
        assert_eq!(analyze(&mut math_analyzer(), "$X$"), ["X"]);
    }

    #[test]
    fn integral_query_terms() {
        let terms = analyze(&mut math_analyzer(), r"$\int_0^1 x^2 dx$");
        for expected in [r"\int", "\\int·_", "_·0", "x·^", "^·2", "d", "x"] {
            assert!(terms.iter().any(|t| t == expected), "missing {expected} in {terms:?}");
        }
    }

    #[test]
    fn repeated_texts_give_each_term_that_many_times() {
        let text = r"Integrals of $x^2$";
        for analyzer in [&mut prose_analyzer(), &mut math_analyzer()] {
            let once = analyze(analyzer, text);
            assert!(!once.is_empty());
            let thrice: Vec<String> = once.iter().flat_map(|t| [t.clone(), t.clone(), t.clone()]).collect();
            assert_eq!(analyze(analyzer, &repeated(text, 3)), thrice);
            assert!(analyze(analyzer, &repeated(text, 0)).is_empty(), "a text that counts 0 times gives nothing");
            assert_eq!(analyze(analyzer, &repeated(text, 1)), once);
        }
    }

    proptest::proptest! {
        #[test]
        fn analyzers_never_panic_and_offsets_are_valid(text in "\\PC{0,120}") {
            for analyzer in [&mut prose_analyzer(), &mut math_analyzer()] {
                let mut stream = analyzer.token_stream(&text);
                while stream.advance() {
                    let token = stream.token();
                    proptest::prop_assert!(token.offset_from <= token.offset_to && token.offset_to <= text.len());
                    proptest::prop_assert!(text.is_char_boundary(token.offset_from) && text.is_char_boundary(token.offset_to));
                }
            }
        }
    }
}
