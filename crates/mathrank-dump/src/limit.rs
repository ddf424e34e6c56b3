//! A bounded framing layer under the XML parser: no `<row>` tag longer than a cap reaches it.
//!
//! A parser buffers a whole start tag, attributes included, before it returns it; a row with
//! an enormous `Body` (a corrupt or hostile dump) would be held whole and then copied. This
//! layer reads the input one tag at a time into a buffer of at most the cap. A `<row` tag that
//! outgrows it is skipped to its end without being held, and the parser sees a small
//! placeholder row instead, which the reader reports as skipped (`too_large`) with the row's
//! real byte offset.
//!
//! For a delta against a store, it can also replace the rows the caller already has: it then
//! frames a few megabytes of tags at a time, hashes their rows on two threads with a
//! [`crate::RowHasher`], and puts a small placeholder where a row's id and content hash are
//! known, so that the parser never reads those rows (the reader returns
//! [`crate::RowEvent::Unchanged`]).

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The attribute that marks a placeholder: the length of the row it replaces.
pub(crate) const TOO_LARGE: &str = "mathrank-too-large";
/// The replaced row's byte offset in the input.
pub(crate) const OFFSET: &str = "mathrank-offset";
/// The attribute that marks a row the caller already has: `Id,CreationDate` (Unix seconds).
pub(crate) const UNCHANGED: &str = "mathrank-same";

/// Decides from a row's bytes, without parsing it, that the caller already has it.
pub(crate) struct KnownRows {
    /// One per thread that hashes.
    pub hashers: [crate::RowHasher; 2],
    /// Called with a row's id and content hash: true when the caller has that content.
    pub is_known: Box<dyn FnMut(u64, u64) -> bool + Send>,
    /// Input framed at once, [`BATCH_BYTES`] but in tests.
    pub batch_bytes: usize,
}

/// Input framed at once when rows are hashed: enough rows to share between two threads.
pub(crate) const BATCH_BYTES: usize = 4 << 20;

/// Rows below which a batch is hashed on the calling thread alone.
const PARALLEL_ROWS: usize = 64;

/// What [`TagLimiter::frame`] put into `out`.
enum Framed {
    End,
    /// A text run or a tag other than a row.
    Other,
    /// A whole `<row>` tag, at this range of `out`.
    Row(std::ops::Range<usize>),
    /// The placeholder of an oversized row, at this range of `out`, which stands for
    /// `removed` more input bytes.
    Oversized {
        range: std::ops::Range<usize>,
        removed: u64,
    },
}

pub(crate) struct TagLimiter<R> {
    inner: R,
    cap: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// Input bytes consumed.
    consumed: u64,
    /// Input bytes that the parser did not see (replaced rows, minus their placeholders),
    /// so that the reader can report real offsets.
    removed: Arc<AtomicU64>,
    /// Bytes to add to `removed` once the parser has read `out` up to a position, in order:
    /// counted as the parser passes each placeholder, offsets stay exact with whole batches
    /// in `out`.
    pending: std::collections::VecDeque<(usize, u64)>,
    known: Option<KnownRows>,
}

impl<R: BufRead> TagLimiter<R> {
    pub(crate) fn new(inner: R, cap: usize, removed: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            cap: cap.max(64),
            out: Vec::new(),
            out_pos: 0,
            consumed: 0,
            removed,
            pending: Default::default(),
            known: None,
        }
    }

    pub(crate) fn set_known(&mut self, known: KnownRows) {
        self.known = Some(known);
    }

    /// Refills `out`: with the next text run or tag, or, when known rows are skipped, with a
    /// batch of them whose known rows are replaced by placeholders.
    fn refill(&mut self) -> std::io::Result<()> {
        self.out.clear();
        self.out_pos = 0;
        if self.consumed == 0 && self.inner.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
            // A UTF-8 byte order mark: the parser would not count it in its positions, so it
            // never sees it, and it counts as removed.
            self.inner.consume(3);
            self.consumed = 3;
            self.removed.fetch_add(3, Ordering::Relaxed);
        }
        let Some(batch_bytes) = self.known.as_ref().map(|known| known.batch_bytes) else {
            if let Framed::Oversized { range, removed } = self.frame()? {
                self.pending.push_back((range.end, removed));
            }
            return Ok(());
        };
        let mut framed = Vec::new();
        while self.out.len() < batch_bytes.max(1) {
            match self.frame()? {
                Framed::End => break,
                Framed::Other => {}
                item => framed.push(item),
            }
        }
        self.replace_known(framed);
        Ok(())
    }

    /// Rebuilds `out` with the rows the caller knows replaced by placeholders, hashing the
    /// rows on two threads.
    fn replace_known(&mut self, framed: Vec<Framed>) {
        let Some(known) = &mut self.known else { return };
        let rows: Vec<std::ops::Range<usize>> = framed
            .iter()
            .filter_map(|item| match item {
                Framed::Row(range) => Some(range.clone()),
                _ => None,
            })
            .collect();
        let digests = hash_rows(&self.out, &rows, &mut known.hashers);
        let mut rebuilt = Vec::with_capacity(self.out.len());
        let (mut copied, mut row) = (0, 0);
        for item in &framed {
            match item {
                Framed::Row(range) => {
                    let digest = digests[row].filter(|d| (known.is_known)(d.id, d.hash));
                    row += 1;
                    let Some(digest) = digest else { continue };
                    rebuilt.extend_from_slice(&self.out[copied..range.start]);
                    // Never longer than the row: a row that hashes holds at least `Id`,
                    // `PostTypeId` and a 19-character `CreationDate`.
                    let placeholder = format!("<row {UNCHANGED}=\"{},{}\"/>", digest.id, digest.created);
                    rebuilt.extend_from_slice(placeholder.as_bytes());
                    let saved = range.len().saturating_sub(placeholder.len()) as u64;
                    self.pending.push_back((rebuilt.len(), saved));
                    copied = range.end;
                }
                Framed::Oversized { range, removed } => {
                    rebuilt.extend_from_slice(&self.out[copied..range.end]);
                    self.pending.push_back((rebuilt.len(), *removed));
                    copied = range.end;
                }
                Framed::End | Framed::Other => {}
            }
        }
        rebuilt.extend_from_slice(&self.out[copied..]);
        self.out = rebuilt;
    }
    /// Appends the next text run or tag of the input to `out`.
    fn frame(&mut self) -> std::io::Result<Framed> {
        let start = self.consumed;
        let out_start = self.out.len();
        let available = self.inner.fill_buf()?;
        let Some(&first) = available.first() else { return Ok(Framed::End) };
        if first != b'<' {
            let len = memchr::memchr(b'<', available).unwrap_or(available.len());
            self.out.extend_from_slice(&available[..len]);
            self.inner.consume(len);
            self.consumed += len as u64;
            return Ok(Framed::Other);
        }
        // A tag: up to its `>` outside quotes. Only rows are limited: they are what a dump
        // holds by the million, and what the reader can skip.
        let is_row = available.starts_with(b"<row")
            && available.get(4).is_some_and(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>');
        let mut quote: Option<u8> = None;
        let mut overflow = false;
        let mut length = 0u64;
        loop {
            let available = self.inner.fill_buf()?;
            if available.is_empty() {
                break; // Truncated input: the parser reports it.
            }
            let end = tag_end(available, &mut quote);
            let take = end.unwrap_or(available.len());
            if !overflow {
                if !is_row || self.out.len() - out_start + take <= self.cap {
                    self.out.extend_from_slice(&available[..take]);
                } else {
                    // Keep the first bytes (for the row's Id), drop the rest unseen.
                    let room = self.cap.saturating_sub(self.out.len() - out_start);
                    self.out.extend_from_slice(&available[..room.min(take)]);
                    overflow = true;
                }
            }
            length += take as u64;
            self.inner.consume(take);
            self.consumed += take as u64;
            if end.is_some() {
                break;
            }
        }
        if !overflow {
            return Ok(if is_row { Framed::Row(out_start..self.out.len()) } else { Framed::Other });
        }
        let id = row_id(&self.out[out_start..]);
        let mut placeholder = format!("<row {TOO_LARGE}=\"{length}\" {OFFSET}=\"{start}\"");
        if let Some(id) = id {
            placeholder.push_str(&format!(" Id=\"{id}\""));
        }
        placeholder.push_str(" />");
        self.out.truncate(out_start);
        self.out.extend_from_slice(placeholder.as_bytes());
        let removed = length.saturating_sub(placeholder.len() as u64);
        Ok(Framed::Oversized { range: out_start..self.out.len(), removed })
    }
}

/// The digests of the rows at `rows` of `out`, in order; the second half on another thread
/// when there are enough rows to share.
fn hash_rows(
    out: &[u8],
    rows: &[std::ops::Range<usize>],
    hashers: &mut [crate::RowHasher; 2],
) -> Vec<Option<crate::RowDigest>> {
    let [first, second] = hashers;
    if rows.len() < PARALLEL_ROWS {
        return rows.iter().map(|range| first.hash(&out[range.clone()])).collect();
    }
    let (head, tail) = rows.split_at(rows.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| tail.iter().map(|range| second.hash(&out[range.clone()])).collect::<Vec<_>>());
        let mut digests: Vec<_> = head.iter().map(|range| first.hash(&out[range.clone()])).collect();
        // A panic in the hasher would be a bug; the rows are then parsed instead.
        digests.extend(other.join().unwrap_or_else(|_| vec![None; tail.len()]));
        digests
    })
}

/// Where the tag that `bytes` continues ends (just past its `>` outside quotes), carrying
/// the open quote across calls. Values are long runs inside quotes, so it jumps with memchr.
fn tag_end(bytes: &[u8], quote: &mut Option<u8>) -> Option<usize> {
    let mut at = 0;
    while at < bytes.len() {
        match *quote {
            Some(q) => match memchr::memchr(q, &bytes[at..]) {
                Some(found) => {
                    at += found + 1;
                    *quote = None;
                }
                None => return None,
            },
            None => match memchr::memchr3(b'"', b'\'', b'>', &bytes[at..]) {
                Some(found) => {
                    let b = bytes[at + found];
                    at += found + 1;
                    if b == b'>' {
                        return Some(at);
                    }
                    *quote = Some(b);
                }
                None => return None,
            },
        }
    }
    None
}

/// The `Id` attribute among the first bytes of a row, when they hold it (digits only).
fn row_id(prefix: &[u8]) -> Option<String> {
    let at = prefix.windows(5).position(|w| w == b" Id=\"")? + 5;
    let digits: Vec<u8> = prefix[at..].iter().take_while(|b| b.is_ascii_digit()).copied().collect();
    (!digits.is_empty() && digits.len() <= 20).then(|| String::from_utf8_lossy(&digits).into_owned())
}

impl<R: BufRead> Read for TagLimiter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for TagLimiter<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.out_pos >= self.out.len() {
            self.refill()?;
        }
        Ok(&self.out[self.out_pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.out_pos = (self.out_pos + amount).min(self.out.len());
        while let Some(&(end, removed)) = self.pending.front() {
            if end > self.out_pos {
                break;
            }
            self.removed.fetch_add(removed, Ordering::Relaxed);
            self.pending.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], cap: usize) -> (String, u64) {
        let removed = Arc::new(AtomicU64::new(0));
        let mut limiter = TagLimiter::new(input, cap, Arc::clone(&removed));
        let mut out = String::new();
        limiter.read_to_string(&mut out).unwrap();
        (out, removed.load(Ordering::Relaxed))
    }

    #[test]
    fn small_tags_pass_through_unchanged() {
        let xml = "<?xml version=\"1.0\"?>\n<posts>\n  <row Id=\"1\" Body=\"a &gt; b\" T='x>y' />\n</posts>";
        assert_eq!(run(xml.as_bytes(), 1024), (xml.to_owned(), 0));
    }

    #[test]
    fn an_oversized_row_becomes_a_placeholder_with_its_offset() {
        let body = "x".repeat(5000);
        let xml = format!("<posts><row Id=\"7\" Body=\"{body} > still body\" /><row Id=\"8\" /></posts>");
        let (out, removed) = run(xml.as_bytes(), 256);
        let row_len = xml.find("<row Id=\"8\"").unwrap() - 7;
        assert_eq!(
            out,
            format!("<posts><row {TOO_LARGE}=\"{row_len}\" {OFFSET}=\"7\" Id=\"7\" /><row Id=\"8\" /></posts>")
        );
        assert_eq!(removed as usize, xml.len() - out.len());
    }

    #[test]
    fn known_rows_become_placeholders_beside_oversized_ones_in_any_batch_size() {
        let row = |id: u32, body: &str| {
            format!(r#"<row Id="{id}" PostTypeId="1" CreationDate="2020-01-01T00:00:00" Body="{body}" />"#)
        };
        let big = "y".repeat(5000);
        let xml = format!("<posts>\n{}\n{}\n{}\n</posts>", row(1, "a"), row(2, &big), row(3, "c"));
        let created = crate::parse_creation_date("2020-01-01T00:00:00").unwrap();
        for batch_bytes in [1, 100, 1 << 20] {
            let removed = Arc::new(AtomicU64::new(0));
            let mut limiter = TagLimiter::new(xml.as_bytes(), 256, Arc::clone(&removed));
            limiter.set_known(KnownRows {
                hashers: Default::default(),
                is_known: Box::new(|id, _| id != 2),
                batch_bytes,
            });
            let mut out = String::new();
            limiter.read_to_string(&mut out).unwrap();
            let oversized = xml.find("<row Id=\"2\"").unwrap();
            let expected = format!(
                "<posts>\n<row {UNCHANGED}=\"1,{created}\"/>\n<row {TOO_LARGE}=\"{}\" {OFFSET}=\"{oversized}\" Id=\"2\" />\n<row {UNCHANGED}=\"3,{created}\"/>\n</posts>",
                row(2, &big).len()
            );
            assert_eq!(out, expected, "batches of {batch_bytes}");
            assert_eq!(removed.load(Ordering::Relaxed) as usize, xml.len() - out.len(), "batches of {batch_bytes}");
        }
    }
}
