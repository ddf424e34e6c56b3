//! Where a dump comes from: `Posts.xml`, a directory holding it, or the site's `.7z` archive.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::reader::PostsReader;
use crate::{Error, Result};

/// An opened dump, ready to stream its `Posts.xml`.
pub struct DumpSource {
    /// What the user named (file, directory or archive), for reports.
    pub path: PathBuf,
    /// The uncompressed size of `Posts.xml` when known, for progress.
    pub total_bytes: Option<u64>,
    bytes_read: Arc<AtomicU64>,
    input: Box<dyn BufRead + Send>,
}

impl std::fmt::Debug for DumpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpSource").field("path", &self.path).field("total_bytes", &self.total_bytes).finish()
    }
}

impl DumpSource {
    /// Opens a `Posts.xml` file, a directory that holds `Posts.xml`, or a `.7z` archive with a
    /// `Posts.xml` entry (streamed: nothing is extracted to disk).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io_error = |source| Error::Io { path: path.display().to_string(), source };
        let metadata = std::fs::metadata(path).map_err(io_error)?;
        if metadata.is_dir() {
            let posts = ["Posts.xml", "posts.xml"].iter().map(|name| path.join(name)).find(|p| p.is_file());
            let Some(posts) = posts else {
                return Err(Error::NoPostsInDirectory { path: path.display().to_string() });
            };
            return Self::open(posts);
        }
        let mut file = File::open(path).map_err(io_error)?;
        let mut magic = [0u8; 6];
        let magic_len = file.read(&mut magic).map_err(io_error)?;
        if magic[..magic_len] == *b"7z\xBC\xAF\x27\x1C" {
            return Self::open_7z(path);
        }
        file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        Ok(Self::from_reader(path, Some(metadata.len()), read_ahead(path, file)?))
    }

    /// Wraps any byte stream (used for the embedded sample and tests).
    pub fn from_reader(path: impl Into<PathBuf>, total_bytes: Option<u64>, input: impl Read + Send + 'static) -> Self {
        let bytes_read = Arc::new(AtomicU64::new(0));
        let counting = CountingReader { inner: input, counter: Arc::clone(&bytes_read) };
        Self {
            path: path.into(),
            total_bytes,
            bytes_read,
            input: Box::new(BufReader::with_capacity(1 << 20, counting)),
        }
    }

    fn open_7z(path: &Path) -> Result<Self> {
        let seven_zip_error =
            |err: sevenz_rust2::Error| Error::SevenZip { path: path.display().to_string(), reason: err.to_string() };
        let archive =
            sevenz_rust2::ArchiveReader::open(path, sevenz_rust2::Password::empty()).map_err(seven_zip_error)?;
        let is_posts =
            |name: &str| name.rsplit(['/', '\\']).next().is_some_and(|base| base.eq_ignore_ascii_case("Posts.xml"));
        let entries = &archive.archive().files;
        let Some(entry) = entries.iter().find(|entry| !entry.is_directory() && is_posts(entry.name())) else {
            let names: Vec<&str> = entries.iter().take(10).map(|entry| entry.name()).collect();
            return Err(Error::NoPostsInArchive { path: path.display().to_string(), entries: names.join(", ") });
        };
        let total = entry.size();
        let (sender, receiver) = sync_channel::<std::result::Result<Vec<u8>, String>>(4);
        let thread_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("7z-posts".into())
            .spawn(move || stream_7z_entry(archive, &thread_path, sender, is_posts))
            .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        Ok(Self::from_reader(path, Some(total), ChannelReader { receiver, chunk: Vec::new(), offset: 0 }))
    }

    /// Bytes of `Posts.xml` read so far (shared counter, readable from another thread).
    pub fn bytes_read_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.bytes_read)
    }

    /// Streams the rows.
    pub fn posts(self) -> PostsReader<Box<dyn BufRead + Send>> {
        let name = self.path.display().to_string();
        PostsReader::with_name(self.input, name)
    }

    /// [`posts`](Self::posts), with the rows that `is_known(id, content_hash)` accepts
    /// returned as [`crate::RowEvent::Unchanged`] without being parsed (see
    /// [`PostsReader::skip_known`]): what a delta against a store needs.
    pub fn posts_skipping_known(
        self,
        is_known: impl FnMut(u64, u64) -> bool + Send + 'static,
    ) -> PostsReader<Box<dyn BufRead + Send>> {
        self.posts().skip_known(is_known)
    }
}

fn stream_7z_entry(
    mut archive: sevenz_rust2::ArchiveReader<File>,
    path: &Path,
    sender: SyncSender<std::result::Result<Vec<u8>, String>>,
    is_posts: impl Fn(&str) -> bool,
) {
    let mut found = false;
    let outcome = archive.for_each_entries_with_decision(|entry, reader| {
        if found || !is_posts(entry.name()) {
            return Ok(sevenz_rust2::EntryDecision::Continue);
        }
        found = true;
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            let read = reader.read(&mut chunk)?;
            if read == 0 {
                return Ok(sevenz_rust2::EntryDecision::Stop);
            }
            chunk.truncate(read);
            if sender.send(Ok(chunk)).is_err() {
                // The consumer stopped reading (an error or an interrupted build): stop decoding.
                return Ok(sevenz_rust2::EntryDecision::Stop);
            }
        }
    });
    if let Err(err) = outcome {
        let _ = sender.send(Err(format!("decompressing Posts.xml from {}: {err}", path.display())));
    }
}

/// Reads `file` on a thread of its own, a few chunks ahead: copying the dump out of the page
/// cache then costs the parsing thread nothing (a tenth of a delta's time otherwise).
fn read_ahead(path: &Path, mut file: File) -> Result<ChannelReader> {
    let (sender, receiver) = sync_channel::<std::result::Result<Vec<u8>, String>>(4);
    let thread_path = path.to_path_buf();
    std::thread::Builder::new()
        .name("dump-read".into())
        .spawn(move || {
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                let outcome = match file.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(read) => {
                        chunk.truncate(read);
                        Ok(chunk)
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(err) => Err(format!("reading {}: {err}", thread_path.display())),
                };
                let failed = outcome.is_err();
                if sender.send(outcome).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    Ok(ChannelReader { receiver, chunk: Vec::new(), offset: 0 })
}

struct ChannelReader {
    receiver: Receiver<std::result::Result<Vec<u8>, String>>,
    chunk: Vec<u8>,
    offset: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.chunk.len() {
            match self.receiver.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.offset = 0;
                }
                Ok(Err(message)) => return Err(std::io::Error::other(message)),
                Err(_) => return Ok(0),
            }
        }
        let count = buf.len().min(self.chunk.len() - self.offset);
        buf[..count].copy_from_slice(&self.chunk[self.offset..self.offset + count]);
        self.offset += count;
        Ok(count)
    }
}

/// A reader that counts the bytes passing through it in a shared counter.
pub struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let count = self.inner.read(buf)?;
        self.counter.fetch_add(count as u64, Ordering::Relaxed);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RowEvent;

    const XML: &str = "<?xml version=\"1.0\"?>\n<posts>\n<row Id=\"1\" PostTypeId=\"1\" CreationDate=\"2020-01-01T00:00:00\" Title=\"t\" />\n</posts>\n";

    fn count_posts(source: DumpSource) -> usize {
        source.posts().filter(|event| matches!(event, Ok(RowEvent::Post(_)))).count()
    }

    #[test]
    fn opens_file_directory_and_7z() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir(&site).unwrap();
        std::fs::write(site.join("Posts.xml"), XML).unwrap();
        std::fs::write(site.join("Users.xml"), "<users/>").unwrap();
        assert_eq!(count_posts(DumpSource::open(site.join("Posts.xml")).unwrap()), 1);
        assert_eq!(count_posts(DumpSource::open(&site).unwrap()), 1);
        let archive = dir.path().join("site.7z");
        sevenz_rust2::compress_to_path(&site, &archive).unwrap();
        let source = DumpSource::open(&archive).unwrap();
        assert_eq!(source.total_bytes, Some(XML.len() as u64));
        let counter = source.bytes_read_counter();
        assert_eq!(count_posts(source), 1);
        assert_eq!(counter.load(Ordering::Relaxed), XML.len() as u64);
    }

    #[test]
    fn clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = DumpSource::open(dir.path().join("missing.xml")).unwrap_err();
        assert!(err.to_string().contains("missing.xml"), "{err}");
        let err = DumpSource::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("holds no Posts.xml"), "{err}");
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("Users.xml"), "<users/>").unwrap();
        let archive = dir.path().join("other.7z");
        sevenz_rust2::compress_to_path(&other, &archive).unwrap();
        let err = DumpSource::open(&archive).unwrap_err();
        assert!(err.to_string().contains("no Posts.xml entry") && err.to_string().contains("Users.xml"), "{err}");
    }
}
