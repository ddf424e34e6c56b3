//! The content hash of a `<row>` straight from its bytes, for deltas: most rows of a newer dump
//! are unchanged, and recognising them this way costs a few times less than parsing them.
//!
//! The result is exactly [`crate::content_hash`] of the post that [`crate::PostsReader`]
//! would parse from the same row: the attributes are decoded as XML attribute-value
//! normalization does, then go through the parser's own checks ([`check_row`]). Whatever this
//! decoder does not handle the way the parser does (an entity other than the predefined five or
//! a character reference, a literal tab or line break, a duplicate attribute, bytes that are not
//! UTF-8, any oddity of syntax) makes it return `None`, and the row is parsed as usual. A
//! property test holds both readings equal.

use std::borrow::Cow;
use std::ops::Range;

use crate::hash::{Fields, join_tags_into};
use crate::reader::{RawRow, all_xml_chars, check_row, tags_of};

/// Attributes compared for duplicates; a row with more is parsed.
const MAX_ATTRIBUTES: usize = 32;

/// The longest reference decoded here, `;` included (`&#x10FFFF;` has 9 bytes after `&`).
const MAX_REFERENCE: usize = 12;

/// What [`RowHasher::hash`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDigest {
    pub id: u64,
    /// `CreationDate` in Unix seconds.
    pub created: i64,
    /// [`crate::content_hash`] of the post.
    pub hash: u64,
}

/// Hashes rows from their bytes, reusing one buffer for the decoded values.
#[derive(Debug, Default)]
pub struct RowHasher {
    decoded: String,
    joined_tags: String,
}

/// The attributes mathrank reads.
const KEYS: [&str; 9] =
    ["Id", "PostTypeId", "ParentId", "AcceptedAnswerId", "Title", "Tags", "Body", "Score", "CreationDate"];

/// One attribute mathrank reads: which, and where its decoded value is in the buffer.
#[derive(Default)]
struct Found {
    key: &'static [u8],
    value: Range<usize>,
}

impl RowHasher {
    /// The digest of one question or answer row (`<row ... />`, the whole tag), or `None` when
    /// the row must be parsed to know (another post type and rows the parser would skip
    /// included).
    pub fn hash(&mut self, tag: &[u8]) -> Option<RowDigest> {
        let text = std::str::from_utf8(tag).ok()?;
        let attributes = text.strip_prefix("<row")?.strip_suffix("/>")?;
        if !attributes.starts_with([' ', '\t', '\n', '\r']) && !attributes.is_empty() {
            return None;
        }
        self.decoded.clear();
        let mut found: [Found; KEYS.len()] = Default::default();
        let count = decode_attributes(attributes, &mut self.decoded, &mut found)?;
        let mut raw = RawRow::default();
        for Found { key, value } in &found[..count] {
            let slot = raw.slot(key)?;
            *slot = Some(Cow::Borrowed(&self.decoded[value.clone()]));
        }
        let checked = check_row(&raw).ok()?;
        self.joined_tags.clear();
        join_tags_into(tags_of(raw.tags.as_deref().unwrap_or_default()), &mut self.joined_tags);
        let joined_tags = self.joined_tags.as_str();
        let fields = Fields {
            kind: checked.kind,
            parent_id: checked.parent_id,
            accepted_answer_id: checked.accepted_answer_id,
            score: checked.score,
            created: checked.created,
            title: raw.title.as_deref().unwrap_or_default(),
            joined_tags,
            body_html: raw.body.as_deref().unwrap_or_default(),
        };
        Some(RowDigest { id: checked.id, created: checked.created, hash: fields.hash() })
    }
}

/// Splits `name="value"` pairs separated by whitespace, decodes the values of the attributes
/// mathrank reads into `decoded` (their places into `found`; returns how many), and checks that
/// no name repeats.
fn decode_attributes(mut rest: &str, decoded: &mut String, found: &mut [Found; KEYS.len()]) -> Option<usize> {
    let mut names: [&str; MAX_ATTRIBUTES] = [""; MAX_ATTRIBUTES];
    let (mut count, mut known) = (0, 0);
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r']);
        if trimmed.is_empty() {
            break;
        }
        if trimmed.len() == rest.len() {
            return None; // Attributes must be separated by whitespace.
        }
        let equals = trimmed.find('=')?;
        let name = &trimmed[..equals];
        if name.is_empty() || name.contains([' ', '\t', '\n', '\r', '"', '\'', '<', '>', '/', '&']) {
            return None;
        }
        let after = &trimmed[equals + 1..];
        let quote = after.as_bytes().first().copied().filter(|q| matches!(q, b'"' | b'\''))?;
        let close = memchr::memchr(quote, &after.as_bytes()[1..])? + 1;
        let value = &after[1..close];
        rest = &after[close + 1..];
        if count == MAX_ATTRIBUTES || names[..count].contains(&name) {
            return None;
        }
        names[count] = name;
        count += 1;
        if let Some(key) = KEYS.iter().find(|key| **key == name) {
            let start = decoded.len();
            decode_value(value, decoded)?;
            if !all_xml_chars(&decoded[start..]) {
                return None;
            }
            // Names do not repeat, so at most one slot each.
            found[known] = Found { key: key.as_bytes(), value: start..decoded.len() };
            known += 1;
        }
    }
    Some(known)
}

/// Appends the value with its references replaced; `None` for what the parser may read
/// differently (literal whitespace other than spaces, which normalization turns into spaces,
/// a `<`, an entity other than the predefined five).
fn decode_value(value: &str, out: &mut String) -> Option<()> {
    let bytes = value.as_bytes();
    // A fold, not `any`: it compiles to vector instructions, and bodies are most of a dump.
    if bytes.iter().fold(false, |bad, &b| bad | (b < 0x20) | (b == b'<')) {
        return None;
    }
    let mut at = 0;
    while let Some(found) = memchr::memchr(b'&', &bytes[at..]) {
        let amp = at + found;
        out.push_str(&value[at..amp]);
        // References are short: a longer one is left to the parser.
        let window = &bytes[amp + 1..bytes.len().min(amp + 1 + MAX_REFERENCE)];
        let semicolon = amp + 1 + window.iter().position(|&b| b == b';')?;
        let name = &value[amp + 1..semicolon];
        match name {
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "amp" => out.push('&'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            _ => out.push(char_reference(name)?),
        }
        at = semicolon + 1;
    }
    out.push_str(&value[at..]);
    Some(())
}

/// `#123` or `#x7B` (lowercase `x`, as the parser), never 0.
fn char_reference(name: &str) -> Option<char> {
    let number = name.strip_prefix('#')?;
    let (digits, radix) = match number.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit() && (radix == 16 || b.is_ascii_digit())) {
        return None;
    }
    let code = u32::from_str_radix(digits, radix).ok().filter(|code| *code != 0)?;
    char::from_u32(code)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{PostsReader, RowEvent, content_hash};

    fn parsed(row: &str) -> Option<RowEvent> {
        let xml = format!("<posts>{row}</posts>");
        PostsReader::new(xml.as_bytes()).next().and_then(|event| event.ok())
    }

    #[test]
    fn a_dump_row_hashes_as_its_parsed_post() {
        let row = r#"<row Id="5" PostTypeId="1" AcceptedAnswerId="7" CreationDate="2019-12-31T00:00:00.000" Score="3" ViewCount="10" Body="&lt;p&gt;Why is $a&amp;b &#x3C; c$?&#xA;&lt;/p&gt;" Title="A &quot;title&quot;" Tags="|algebra|group-theory|" />"#;
        let Some(RowEvent::Post(post)) = parsed(row) else { panic!("the row parses") };
        let digest = RowHasher::default().hash(row.as_bytes()).expect("a plain row hashes");
        assert_eq!(digest, RowDigest { id: 5, created: post.created, hash: content_hash(&post) });
    }

    #[test]
    fn rows_the_parser_reads_otherwise_are_left_to_it() {
        for row in [
            r#"<row Id="5" PostTypeId="3" CreationDate="2019-12-31T00:00:00" />"#,
            r#"<row Id="5" PostTypeId="1" CreationDate="2019-12-31T00:00:00" Body="a&nbsp;b" />"#,
            r#"<row Id="5" PostTypeId="1" CreationDate="2019-12-31T00:00:00" Body="a
b" />"#,
            r#"<row Id="5" PostTypeId="1" CreationDate="2019-12-31T00:00:00" Body="a" Body="b" />"#,
            r#"<row Id="5" PostTypeId="1" CreationDate="2019-12-31T00:00:00" X="1" X="2" />"#,
            r#"<row Id="5" PostTypeId="1" CreationDate="2019-12-31T00:00:00" Body="&#0;" />"#,
            r#"<row Id="5" PostTypeId="1" CreationDate="2019-12-31T00:00:00" Body="&#X41;" />"#,
            r#"<row Id="5" PostTypeId="1" CreationDate="2019-12-31T00:00:00" Body="&#1;" />"#,
            r#"<row Id="5" PostTypeId="1" CreationDate="2019-12-31T00:00:00"></row>"#,
            r#"<row Id="-5" PostTypeId="1" CreationDate="2019-12-31T00:00:00" />"#,
        ] {
            assert_eq!(RowHasher::default().hash(row.as_bytes()), None, "{row}");
        }
    }

    /// Pieces of rows, the tricky ones included, to build rows from.
    fn value() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("a".to_owned()),
            Just("x y".to_owned()),
            Just("&lt;".to_owned()),
            Just("&gt;".to_owned()),
            Just("&amp;".to_owned()),
            Just("&quot;".to_owned()),
            Just("&apos;".to_owned()),
            Just("&#xA;".to_owned()),
            Just("&#10;".to_owned()),
            Just("&#x1F600;".to_owned()),
            Just("&#0;".to_owned()),
            Just("&#1;".to_owned()),
            Just("&#xD800;".to_owned()),
            Just("&#xFFFE;".to_owned()),
            Just("&#X41;".to_owned()),
            Just("&nbsp;".to_owned()),
            Just("&".to_owned()),
            Just(";".to_owned()),
            Just("'".to_owned()),
            Just("\t".to_owned()),
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("|t|".to_owned()),
            Just("<a>".to_owned()),
            Just("é∑".to_owned()),
            Just("\u{FFFF}".to_owned()),
            Just(" 7 ".to_owned()),
            Just("12".to_owned()),
            Just("-3".to_owned()),
            Just("2020-02-29T10:11:12.5".to_owned()),
            Just("2019-02-29T10:11:12".to_owned()),
        ];
        proptest::collection::vec(piece, 0..4).prop_map(|pieces| pieces.concat())
    }

    fn attribute() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("Id"),
            Just("PostTypeId"),
            Just("ParentId"),
            Just("AcceptedAnswerId"),
            Just("Title"),
            Just("Tags"),
            Just("Body"),
            Just("Score"),
            Just("CreationDate"),
            Just("ViewCount"),
            Just("x:Id"),
        ];
        let good = prop_oneof![Just("1".to_owned()), Just("2".to_owned()), Just("2020-01-02T03:04:05.000".to_owned())];
        let value = prop_oneof![good, value()];
        let quote = prop_oneof![Just('"'), Just('\'')];
        let space = prop_oneof![Just(" "), Just("  "), Just("\n  "), Just(""), Just(" = ")];
        (name, value, quote, space).prop_map(|(name, value, quote, space)| {
            let value = value.replace(quote, if quote == '"' { "&quot;" } else { "&apos;" });
            match space {
                " = " => format!(" {name} = {quote}{value}{quote}"),
                space => format!("{space}{name}={quote}{value}{quote}"),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whenever the hasher answers, the parser reads the same post from the row.
        #[test]
        fn the_hash_of_a_row_is_the_hash_of_the_post_parsed_from_it(
            attributes in (proptest::collection::vec(attribute(), 0..6), prop_oneof![4 => Just(4usize), 1 => 0..4usize]).prop_flat_map(|(mut extra, kept)| {
                // Mostly rows that have what a post needs, so that the hasher answers often.
                let needed = [" Id=\"12\"", " PostTypeId=\"2\"", " ParentId=\"3\"", " CreationDate=\"2020-01-02T03:04:05\""];
                extra.extend(needed.iter().take(kept).map(|a| (*a).to_owned()));
                Just(extra).prop_shuffle()
            }),
            end in prop_oneof![Just(" />"), Just("/>"), Just(">")],
        ) {
            let row = format!("<row{}{end}", attributes.concat());
            let row = if end == ">" { format!("{row}</row>") } else { row };
            let digest = RowHasher::default().hash(row.as_bytes());
            if let Some(digest) = digest {
                match parsed(&row) {
                    Some(RowEvent::Post(post)) => {
                        prop_assert_eq!(digest, RowDigest { id: post.id, created: post.created, hash: content_hash(&post) });
                    }
                    other => prop_assert!(false, "hashed {row:?} but the parser read {other:?}"),
                }
            }
        }

        /// The fast check of characters agrees with the one per character.
        #[test]
        fn the_byte_check_of_xml_characters_is_the_character_check(text in any::<String>()) {
            prop_assert_eq!(all_xml_chars(&text), text.chars().all(crate::reader::is_xml_char));
        }
    }
}
