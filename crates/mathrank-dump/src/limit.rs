//! A bounded framing layer under the XML parser: no `<row>` tag longer than a cap reaches it.
//!
//! A parser buffers a whole start tag, attributes included, before it returns it; a row with
//! an enormous `Body` (a corrupt or hostile dump) would be held whole and then copied. This
//! layer reads the input one tag at a time into a buffer of at most the cap. A `<row` tag that
//! outgrows it is skipped to its end without being held, and the parser sees a small
//! placeholder row instead, which the reader reports as skipped (`too_large`) with the row's
//! real byte offset.

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The attribute that marks a placeholder: the length of the row it replaces.
pub(crate) const TOO_LARGE: &str = "mathrank-too-large";
/// The replaced row's byte offset in the input.
pub(crate) const OFFSET: &str = "mathrank-offset";

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
}

impl<R: BufRead> TagLimiter<R> {
    pub(crate) fn new(inner: R, cap: usize, removed: Arc<AtomicU64>) -> Self {
        Self { inner, cap: cap.max(64), out: Vec::new(), out_pos: 0, consumed: 0, removed }
    }

    /// Moves the next text run or the next tag from the input into `out`.
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
        let start = self.consumed;
        let available = self.inner.fill_buf()?;
        let Some(&first) = available.first() else { return Ok(()) };
        if first != b'<' {
            let len = available.iter().position(|&b| b == b'<').unwrap_or(available.len());
            self.out.extend_from_slice(&available[..len]);
            self.inner.consume(len);
            self.consumed += len as u64;
            return Ok(());
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
            let mut end = None;
            for (i, &b) in available.iter().enumerate() {
                match (quote, b) {
                    (Some(q), b) if b == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => quote = Some(b),
                    (None, b'>') => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => {}
                }
            }
            let take = end.unwrap_or(available.len());
            if !overflow {
                if !is_row || self.out.len() + take <= self.cap {
                    self.out.extend_from_slice(&available[..take]);
                } else {
                    // Keep the first bytes (for the row's Id), drop the rest unseen.
                    let room = self.cap.saturating_sub(self.out.len());
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
        if overflow {
            let id = row_id(&self.out);
            let mut placeholder = format!("<row {TOO_LARGE}=\"{length}\" {OFFSET}=\"{start}\"");
            if let Some(id) = id {
                placeholder.push_str(&format!(" Id=\"{id}\""));
            }
            placeholder.push_str(" />");
            self.removed.fetch_add(length.saturating_sub(placeholder.len() as u64), Ordering::Relaxed);
            self.out.clear();
            self.out.extend_from_slice(placeholder.as_bytes());
        }
        Ok(())
    }
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
}
