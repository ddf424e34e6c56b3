//! Row-by-row reading of `Posts.xml`.

use std::borrow::Cow;
use std::io::BufRead;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::limit::{OFFSET, TOO_LARGE, TagLimiter, UNCHANGED};
use crate::{Error, Result};

/// The largest `<row>` read, in bytes of XML. Stack Exchange caps a post at 30,000 characters,
/// so real rows stay far below; a larger one is skipped as `too_large` in bounded memory.
pub const MAX_ROW_BYTES: usize = 8 << 20;

/// The two post types mathrank uses; every other `PostTypeId` is counted and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PostKind {
    Question,
    Answer,
}

/// One valid question or answer row.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub id: u64,
    pub kind: PostKind,
    /// The question of an answer (`ParentId`); `None` for questions.
    pub parent_id: Option<u64>,
    /// `AcceptedAnswerId` of a question.
    pub accepted_answer_id: Option<u64>,
    /// Question title (empty for answers).
    pub title: String,
    /// Question tags (empty for answers).
    pub tags: Vec<String>,
    /// Body as HTML, entities of the XML layer already decoded.
    pub body_html: String,
    /// Votes (`Score`).
    pub score: i64,
    /// `CreationDate` as seconds since the Unix epoch (UTC).
    pub created: i64,
}

/// A row that could not be used, with where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedRow {
    /// 1-based index of the `<row>` element in the file.
    pub row: u64,
    /// Byte offset of the row in the (decompressed) XML.
    pub byte_offset: u64,
    /// The row's `Id` attribute as written, when it has one.
    pub post_id: Option<String>,
    /// A short stable key (`bad_id`, `bad_date`, `invalid_char`, ...) used for counting.
    pub reason: &'static str,
    /// What exactly was wrong, for the warnings file.
    pub detail: String,
}

/// What one `<row>` turned into.
#[derive(Debug, Clone, PartialEq)]
pub enum RowEvent {
    Post(Post),
    /// A valid row of another post type (wiki, tag excerpt, ...), skipped by design.
    OtherType {
        post_type: u32,
    },
    Skipped(SkippedRow),
    /// A row whose content hash the reader's caller already had, so it was not parsed: only
    /// with [`crate::DumpSource::posts_skipping_known`].
    Unchanged {
        id: u64,
        /// Its `CreationDate`, as [`Post::created`].
        created: i64,
    },
}

/// Streams the rows of a `Posts.xml` document. Memory use does not depend on the file size.
pub struct PostsReader<R: BufRead> {
    reader: Reader<TagLimiter<R>>,
    /// Input bytes the parser never saw (oversized rows), to report real offsets.
    removed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    buf: Vec<u8>,
    name: String,
    rows: u64,
    saw_root: bool,
    finished: bool,
}

impl<R: BufRead> PostsReader<R> {
    pub fn new(input: R) -> Self {
        Self::with_name(input, "input")
    }

    /// `name` (usually the path) appears in error messages.
    pub fn with_name(input: R, name: impl Into<String>) -> Self {
        Self::with_row_limit(input, name, MAX_ROW_BYTES)
    }

    /// [`with_name`](Self::with_name) with another cap on a row's size in bytes.
    pub fn with_row_limit(input: R, name: impl Into<String>, max_row_bytes: usize) -> Self {
        let removed = std::sync::Arc::default();
        let mut reader = Reader::from_reader(TagLimiter::new(input, max_row_bytes, std::sync::Arc::clone(&removed)));
        reader.config_mut().trim_text(true);
        Self {
            reader,
            removed,
            buf: Vec::with_capacity(16 * 1024),
            name: name.into(),
            rows: 0,
            saw_root: false,
            finished: false,
        }
    }

    /// Rows whose id and [`crate::content_hash`], computed from their bytes by a
    /// [`crate::RowHasher`], satisfy `is_known` come back as [`RowEvent::Unchanged`] without
    /// being parsed. A row the hasher cannot read is parsed as usual.
    pub fn skip_known(self, is_known: impl FnMut(u64, u64) -> bool + Send + 'static) -> Self {
        self.skip_known_in_batches(is_known, crate::limit::BATCH_BYTES)
    }

    /// [`skip_known`](Self::skip_known), framing about `batch_bytes` of input at a time.
    pub(crate) fn skip_known_in_batches(
        mut self,
        is_known: impl FnMut(u64, u64) -> bool + Send + 'static,
        batch_bytes: usize,
    ) -> Self {
        let known = crate::limit::KnownRows { hashers: Default::default(), is_known: Box::new(is_known), batch_bytes };
        self.reader.get_mut().set_known(known);
        self
    }

    /// Bytes of XML consumed so far.
    pub fn position(&self) -> u64 {
        self.reader.buffer_position() + self.removed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn not_posts(&self, reason: impl Into<String>) -> Error {
        Error::NotPostsXml { path: self.name.clone(), reason: reason.into() }
    }

    fn next_event(&mut self) -> Result<Option<RowEvent>> {
        loop {
            self.buf.clear();
            let offset = PostsReader::position(self);
            let event = self.reader.read_event_into(&mut self.buf).map_err(|err| {
                if self.saw_root {
                    Error::Xml { position: self.reader.error_position(), reason: err.to_string() }
                } else {
                    Error::NotPostsXml { path: self.name.clone(), reason: err.to_string() }
                }
            })?;
            match event {
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
                Event::Start(start) if !self.saw_root => {
                    if start.local_name().as_ref() != "posts" {
                        let found = start.local_name().as_ref().to_owned();
                        return Err(self.not_posts(format!("root element is <{found}>, expected <posts>")));
                    }
                    self.saw_root = true;
                }
                Event::Empty(start) | Event::Start(start) if start.local_name().as_ref() == "row" => {
                    if !self.saw_root {
                        return Err(self.not_posts("<row> outside of <posts>"));
                    }
                    self.rows += 1;
                    return Ok(Some(parse_row(&start, self.rows, offset)));
                }
                Event::Empty(_) | Event::Start(_) | Event::End(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    if !self.saw_root {
                        return Err(self.not_posts("no <posts> root element"));
                    }
                }
                Event::Text(text) => {
                    if !self.saw_root && !text.chars().all(|c| c.is_whitespace() || c == '\u{feff}') {
                        return Err(self.not_posts("text before the <posts> root element"));
                    }
                }
                Event::Eof => {
                    if !self.saw_root {
                        return Err(self.not_posts("no <posts> root element (empty or not XML)"));
                    }
                    return Ok(None);
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for PostsReader<R> {
    type Item = Result<RowEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.next_event() {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(err) => {
                self.finished = true;
                Some(Err(err))
            }
        }
    }
}

/// The attributes of a row that mathrank reads, decoded, before they are checked.
#[derive(Default)]
pub(crate) struct RawRow<'a> {
    pub id: Option<Cow<'a, str>>,
    pub post_type: Option<Cow<'a, str>>,
    pub parent_id: Option<Cow<'a, str>>,
    pub accepted: Option<Cow<'a, str>>,
    pub title: Option<Cow<'a, str>>,
    pub tags: Option<Cow<'a, str>>,
    pub body: Option<Cow<'a, str>>,
    pub score: Option<Cow<'a, str>>,
    pub created: Option<Cow<'a, str>>,
}

impl<'a> RawRow<'a> {
    /// The slot of an attribute mathrank reads; `None` for the others.
    pub fn slot(&mut self, key: &[u8]) -> Option<&mut Option<Cow<'a, str>>> {
        Some(match key {
            b"Id" => &mut self.id,
            b"PostTypeId" => &mut self.post_type,
            b"ParentId" => &mut self.parent_id,
            b"AcceptedAnswerId" => &mut self.accepted,
            b"Title" => &mut self.title,
            b"Tags" => &mut self.tags,
            b"Body" => &mut self.body,
            b"Score" => &mut self.score,
            b"CreationDate" => &mut self.created,
            _ => return None,
        })
    }
}

/// A row's attributes once checked, texts still borrowed from the [`RawRow`].
pub(crate) struct Checked {
    pub id: u64,
    pub kind: PostKind,
    pub parent_id: Option<u64>,
    pub accepted_answer_id: Option<u64>,
    pub score: i64,
    pub created: i64,
}

/// Why a row is not a post.
pub(crate) enum NotAPost {
    OtherType(u32),
    /// A skip reason and its detail.
    Bad(&'static str, String),
}

/// The checks and conversions of a row's attributes, shared by the parser and the
/// [`crate::RowHasher`] so that both read a row alike.
pub(crate) fn check_row(raw: &RawRow<'_>) -> std::result::Result<Checked, NotAPost> {
    let bad = |reason, detail| Err(NotAPost::Bad(reason, detail));
    let Some(id_text) = raw.id.as_deref() else {
        return bad("missing_id", "row has no Id attribute".into());
    };
    let Ok(id) = id_text.trim().parse::<u64>() else {
        return bad("bad_id", format!("Id {id_text:?} is not a non-negative integer"));
    };
    let Some(type_text) = raw.post_type.as_deref() else {
        return bad("missing_post_type", "row has no PostTypeId attribute".into());
    };
    let Ok(post_type) = type_text.trim().parse::<u32>() else {
        return bad("bad_post_type", format!("PostTypeId {type_text:?} is not an integer"));
    };
    let kind = match post_type {
        1 => PostKind::Question,
        2 => PostKind::Answer,
        other => return Err(NotAPost::OtherType(other)),
    };
    let parent_id = match (kind, raw.parent_id.as_deref()) {
        (PostKind::Question, _) => None,
        (PostKind::Answer, None) => return bad("missing_parent_id", "answer has no ParentId".into()),
        (PostKind::Answer, Some(text)) => match text.trim().parse::<u64>() {
            Ok(parent) => Some(parent),
            Err(_) => return bad("bad_parent_id", format!("ParentId {text:?} is not an integer")),
        },
    };
    let accepted_answer_id = match raw.accepted.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match text.parse::<u64>() {
            Ok(accepted) => Some(accepted),
            Err(_) => return bad("bad_accepted_answer_id", format!("AcceptedAnswerId {text:?} is not an integer")),
        },
    };
    let score = match raw.score.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(text) => match text.parse::<i64>() {
            Ok(score) => score,
            Err(_) => return bad("bad_score", format!("Score {text:?} is not an integer")),
        },
    };
    let Some(created_text) = raw.created.as_deref() else {
        return bad("bad_date", "row has no CreationDate".into());
    };
    let Some(created) = parse_creation_date(created_text) else {
        return bad("bad_date", format!("CreationDate {created_text:?} is not yyyy-mm-ddThh:mm:ss[.fff]"));
    };
    Ok(Checked { id, kind, parent_id, accepted_answer_id, score, created })
}

fn parse_row(start: &BytesStart<'_>, row: u64, byte_offset: u64) -> RowEvent {
    let mut raw = RawRow::default();
    let skip = |raw_id: Option<&str>, reason: &'static str, detail: String| {
        RowEvent::Skipped(SkippedRow { row, byte_offset, post_id: raw_id.map(str::to_owned), reason, detail })
    };
    if let Some(unchanged) = start.try_get_attribute(UNCHANGED).ok().flatten() {
        let mut parts = unchanged.value.split(',').map(str::parse::<i64>);
        if let (Some(Ok(id)), Some(Ok(created))) = (parts.next(), parts.next()) {
            return RowEvent::Unchanged { id: id as u64, created };
        }
    }
    if let Some(length) = start.try_get_attribute(TOO_LARGE).ok().flatten() {
        let offset = start.try_get_attribute(OFFSET).ok().flatten();
        let offset = offset.and_then(|a| a.value.parse().ok()).unwrap_or(byte_offset);
        let id = start.try_get_attribute("Id").ok().flatten().map(|a| a.value.into_owned());
        let length = length.value.into_owned();
        return RowEvent::Skipped(SkippedRow {
            row,
            byte_offset: offset,
            post_id: id,
            reason: "too_large",
            detail: format!("the row is {length} bytes; rows over {MAX_ROW_BYTES} bytes are skipped unread"),
        });
    }
    for attribute in start.attributes() {
        let attribute = match attribute {
            Ok(attribute) => attribute,
            Err(err) => return skip(raw.id.as_deref(), "bad_attribute", format!("malformed attribute: {err}")),
        };
        let key = attribute.key.as_ref();
        if raw.slot(key.as_bytes()).is_none() {
            continue;
        }
        let key = key.to_owned();
        match attribute.normalized_value(XmlVersion::Implicit1_0) {
            Ok(value) => {
                if !all_xml_chars(&value) {
                    let bad = value.chars().find(|c| !is_xml_char(*c)).map_or(0, |c| c as u32);
                    return skip(
                        raw.id.as_deref(),
                        "invalid_char",
                        format!("attribute {key} holds U+{bad:04X}, which XML 1.0 does not allow"),
                    );
                }
                if let Some(slot) = raw.slot(key.as_bytes()) {
                    *slot = Some(value);
                }
            }
            Err(err) => return skip(raw.id.as_deref(), "bad_entity", format!("attribute {key}: {err}")),
        }
    }
    let checked = match check_row(&raw) {
        Ok(checked) => checked,
        Err(NotAPost::OtherType(post_type)) => return RowEvent::OtherType { post_type },
        Err(NotAPost::Bad(reason, detail)) => return skip(raw.id.as_deref(), reason, detail),
    };
    RowEvent::Post(Post {
        id: checked.id,
        kind: checked.kind,
        parent_id: checked.parent_id,
        accepted_answer_id: checked.accepted_answer_id,
        title: raw.title.map(Cow::into_owned).unwrap_or_default(),
        tags: raw.tags.as_deref().map(parse_tags).unwrap_or_default(),
        body_html: raw.body.map(Cow::into_owned).unwrap_or_default(),
        score: checked.score,
        created: checked.created,
    })
}

/// Whether every character of `text` is one XML 1.0 allows, as [`is_xml_char`] for each, but
/// on bytes: in valid UTF-8 the only others are C0 controls and U+FFFE/U+FFFF (surrogates
/// cannot occur), and dumps are hundreds of megabytes.
pub(crate) fn all_xml_chars(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !bytes.iter().fold(true, |ok, &b| ok & (b >= 0x20 || b == b'\t' || b == b'\n' || b == b'\r')) {
        return false;
    }
    // U+FFFE and U+FFFF are EF BF BE and EF BF BF.
    !memchr::memchr_iter(0xEF, bytes)
        .any(|at| bytes.get(at + 1) == Some(&0xBF) && matches!(bytes.get(at + 2), Some(0xBE | 0xBF)))
}

pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Parses both tag formats: `<a><b>` (dumps before 2024) and `|a|b|` (2024 on).
pub fn parse_tags(text: &str) -> Vec<String> {
    tags_of(text).map(str::to_owned).collect()
}

/// The tags of a `Tags` attribute, borrowed.
pub(crate) fn tags_of(text: &str) -> impl Iterator<Item = &str> {
    let separators: &[char] = if text.contains('<') { &['<', '>'] } else { &['|'] };
    text.split(separators).map(str::trim).filter(|tag| !tag.is_empty())
}

/// Parses a dump date (`2010-11-02T03:24:21.730`, optional fraction and `Z`) into Unix seconds.
pub fn parse_creation_date(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = parse_digits(date_parts.next()?, 4)?;
    let month: i64 = parse_digits(date_parts.next()?, 2)?;
    let day: i64 = parse_digits(date_parts.next()?, 2)?;
    let time = time.split_once('.').map_or(
        time,
        |(whole, fraction)| {
            if fraction.bytes().all(|b| b.is_ascii_digit()) { whole } else { "" }
        },
    );
    let mut time_parts = time.splitn(3, ':');
    let hour: i64 = parse_digits(time_parts.next()?, 2)?;
    let minute: i64 = parse_digits(time_parts.next()?, 2)?;
    let second: i64 = parse_digits(time_parts.next()?, 2)?;
    let days_in_month = [31, if is_leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month[(month - 1) as usize] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn parse_digits(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(xml: &str) -> Vec<RowEvent> {
        PostsReader::new(xml.as_bytes()).collect::<Result<Vec<_>>>().unwrap()
    }

    fn doc(rows: &str) -> String {
        format!("\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<posts>\r\n{rows}\r\n</posts>\r\n")
    }

    #[test]
    fn both_tag_formats() {
        assert_eq!(parse_tags("<real-analysis><limits>"), vec!["real-analysis", "limits"]);
        assert_eq!(parse_tags("|real-analysis|limits|"), vec!["real-analysis", "limits"]);
        assert!(parse_tags("").is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_creation_date("1970-01-01T00:00:00.000"), Some(0));
        assert_eq!(parse_creation_date("2010-11-02T03:24:21.730"), Some(1_288_668_261));
        assert_eq!(parse_creation_date("2024-02-29T12:00:00"), Some(1_709_208_000));
        assert_eq!(parse_creation_date("2023-02-29T12:00:00"), None);
        assert_eq!(parse_creation_date("yesterday"), None);
        assert_eq!(parse_creation_date("2010-13-01T00:00:00"), None);
    }

    #[test]
    fn bom_crlf_old_tags_and_newline_references() {
        let xml = doc(concat!(
            r#"  <row Id="1" PostTypeId="1" CreationDate="2010-08-16T20:20:28.943" Score="19" Title="A &amp; B" Tags="&lt;graph-theory&gt;&lt;np&gt;" Body="&lt;p&gt;line one&lt;/p&gt;&#xA;&lt;p&gt;two&lt;/p&gt;" />"#,
            "\r\n",
            r#"  <row Id="2" PostTypeId="5" CreationDate="2010-08-16T20:20:28.943" Body="wiki" />"#
        ));
        let events = rows(&xml);
        assert_eq!(events.len(), 2);
        let RowEvent::Post(post) = &events[0] else { panic!("{events:?}") };
        assert_eq!(post.title, "A & B");
        assert_eq!(post.tags, vec!["graph-theory", "np"]);
        assert_eq!(post.body_html, "<p>line one</p>\n<p>two</p>");
        assert_eq!(post.score, 19);
        assert_eq!(events[1], RowEvent::OtherType { post_type: 5 });
    }

    #[test]
    fn an_oversized_row_is_skipped_unread_and_later_offsets_stay_true() {
        let body = "&lt;p&gt;".repeat(2000);
        let xml = doc(&format!(
            concat!(
                r#"<row Id="1" PostTypeId="1" CreationDate="2010-08-16T20:20:28.943" Title="t" Body="{}" />"#,
                r#"<row Id="2" PostTypeId="1" CreationDate="2010-08-16T20:20:28.943" Title="fine" />"#,
                r#"<row Id="3" PostTypeId="1" CreationDate="later" />"#,
            ),
            body
        ));
        let events: Vec<RowEvent> =
            PostsReader::with_row_limit(xml.as_bytes(), "test", 1024).map(|event| event.unwrap()).collect();
        let RowEvent::Skipped(big) = &events[0] else { panic!("{:?}", events[0]) };
        assert_eq!((big.reason, big.post_id.as_deref()), ("too_large", Some("1")));
        assert_eq!(big.byte_offset as usize, xml.find(r#"<row Id="1""#).unwrap());
        assert!(matches!(&events[1], RowEvent::Post(post) if post.id == 2));
        let RowEvent::Skipped(bad_date) = &events[2] else { panic!("{:?}", events[2]) };
        assert_eq!(
            bad_date.byte_offset as usize,
            xml.find(r#"<row Id="3""#).unwrap(),
            "offsets count the skipped bytes"
        );
        // With the default cap the same row is read whole.
        assert!(matches!(rows(&xml)[0], RowEvent::Post(_)));
    }

    #[test]
    fn bad_rows_are_skipped_with_reason_and_location() {
        let xml = doc(concat!(
            r#"<row PostTypeId="1" CreationDate="2010-08-16T20:20:28.943" />"#,
            r#"<row Id="x1" PostTypeId="1" CreationDate="2010-08-16T20:20:28.943" />"#,
            r#"<row Id="3" PostTypeId="q" CreationDate="2010-08-16T20:20:28.943" />"#,
            r#"<row Id="4" PostTypeId="2" CreationDate="2010-08-16T20:20:28.943" />"#,
            r#"<row Id="5" PostTypeId="2" ParentId="one" CreationDate="2010-08-16T20:20:28.943" />"#,
            r#"<row Id="6" PostTypeId="1" CreationDate="last tuesday" />"#,
            r#"<row Id="7" PostTypeId="1" CreationDate="2010-08-16T20:20:28.943" Body="&bogus;" />"#,
            r#"<row Id="8" PostTypeId="1" CreationDate="2010-08-16T20:20:28.943" Body="a&#x1;b" />"#,
            r#"<row Id="9" PostTypeId="1" CreationDate="2010-08-16T20:20:28.943" Score="many" />"#,
            r#"<row Id="10" PostTypeId="1" CreationDate="2010-08-16T20:20:28.943" Title="fine" />"#,
        ));
        let events = rows(&xml);
        let reasons: Vec<&str> = events
            .iter()
            .map(|event| match event {
                RowEvent::Skipped(skipped) => skipped.reason,
                RowEvent::Post(_) => "ok",
                RowEvent::OtherType { .. } => "other",
                RowEvent::Unchanged { .. } => "unchanged",
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "missing_id",
                "bad_id",
                "bad_post_type",
                "missing_parent_id",
                "bad_parent_id",
                "bad_date",
                "bad_entity",
                "invalid_char",
                "bad_score",
                "ok"
            ]
        );
        let RowEvent::Skipped(skipped) = &events[1] else { unreachable!() };
        assert_eq!(skipped.row, 2);
        assert_eq!(skipped.post_id.as_deref(), Some("x1"));
        assert!(skipped.byte_offset > 0);
    }

    #[test]
    fn not_xml_is_a_clear_error() {
        let err = PostsReader::new(&b"Id,PostTypeId\n1,1\n"[..]).next().unwrap().unwrap_err();
        assert!(err.to_string().contains("not a Stack Exchange Posts.xml"), "{err}");
        let err = PostsReader::new(&b"<users><row Id=\"1\"/></users>"[..]).next().unwrap().unwrap_err();
        assert!(err.to_string().contains("<users>"), "{err}");
        let err = PostsReader::new(&b""[..]).next().unwrap().unwrap_err();
        assert!(err.to_string().contains("no <posts>"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn reader_never_panics(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            for event in PostsReader::new(&input[..]).take(1000) {
                let _ = event;
            }
        }

        #[test]
        fn reader_never_panics_on_row_like_input(body in "[<>&;#a-zA-Z0-9 =\"/|-]{0,200}") {
            let xml = doc(&format!("<row Id=\"1\" PostTypeId=\"1\" CreationDate=\"2020-01-01T00:00:00\" Body=\"{body}\" />"));
            for event in PostsReader::new(xml.as_bytes()).take(1000) {
                let _ = event;
            }
        }
    }
}
