//! Question bodies for the join, in memory or spilled to disk.
//!
//! Every answer's index document holds its question's body, so the join must still have a
//! question's body when an answer comes, possibly years of posts later. Holding all 1.7M
//! bodies of Math Stack Exchange would take gigabytes, so a build writes each body once to a
//! temporary file next to the index and keeps only its offset, plus the most recent bodies
//! in memory: in a dump ordered by id, most answers come soon after their question, and the
//! rest are read back from the file (usually from the page cache).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Where question bodies live during a join.
#[derive(Debug, Default)]
pub struct QuestionBodies {
    backend: Backend,
}

#[derive(Debug, Default)]
enum Backend {
    /// Everything in memory: tests, samples and small dumps.
    #[default]
    Memory,
    Spill(Box<Spill>),
}

#[derive(Debug)]
struct Spill {
    path: PathBuf,
    writer: BufWriter<File>,
    reader: File,
    /// Bytes written to `writer`, and the part of them known to be in the file.
    written: u64,
    flushed: u64,
    /// Offset and length of each body in the file.
    located: HashMap<u64, (u64, u32)>,
    /// The most recent bodies, oldest first, within `recent_limit` bytes.
    recent: HashMap<u64, String>,
    order: VecDeque<u64>,
    recent_bytes: usize,
    recent_limit: usize,
}

/// Memory for the most recent question bodies of a spilled join.
pub const RECENT_BODY_BYTES: usize = 64 << 20;

impl QuestionBodies {
    /// Bodies spilled to a new file at `path` (truncated if it exists), the most recent
    /// `recent_limit` bytes of them also kept in memory. The caller removes the file.
    pub fn spill_to(path: &Path, recent_limit: usize) -> Result<Self> {
        let io = |source| Error::Spill { path: path.display().to_string(), source };
        let file = File::options().create(true).truncate(true).read(true).write(true).open(path).map_err(io)?;
        let reader = file.try_clone().map_err(io)?;
        Ok(Self {
            backend: Backend::Spill(Box::new(Spill {
                path: path.to_path_buf(),
                writer: BufWriter::with_capacity(1 << 20, file),
                reader,
                written: 0,
                flushed: 0,
                located: HashMap::new(),
                recent: HashMap::new(),
                order: VecDeque::new(),
                recent_bytes: 0,
                recent_limit,
            })),
        })
    }

    /// Bytes written to the spill file (0 in memory).
    pub fn spilled_bytes(&self) -> u64 {
        match &self.backend {
            Backend::Memory => 0,
            Backend::Spill(spill) => spill.written,
        }
    }

    /// Stores a body; returns it to keep in memory when bodies are not spilled.
    pub(crate) fn put(&mut self, id: u64, body: String) -> Result<Option<String>> {
        let Backend::Spill(spill) = &mut self.backend else { return Ok(Some(body)) };
        let io = |source| Error::Spill { path: spill.path.display().to_string(), source };
        let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
        spill.writer.write_all(&body.as_bytes()[..length as usize]).map_err(io)?;
        spill.located.insert(id, (spill.written, length));
        spill.written += u64::from(length);
        spill.recent_bytes += body.len();
        spill.recent.insert(id, body);
        spill.order.push_back(id);
        while spill.recent_bytes > spill.recent_limit {
            let Some(oldest) = spill.order.pop_front() else { break };
            if let Some(evicted) = spill.recent.remove(&oldest) {
                spill.recent_bytes -= evicted.len();
            }
        }
        Ok(None)
    }

    /// A spilled body; `None` when bodies are kept in memory by the caller, or for an unknown id.
    pub(crate) fn get(&mut self, id: u64) -> Result<Option<String>> {
        let Backend::Spill(spill) = &mut self.backend else { return Ok(None) };
        if let Some(body) = spill.recent.get(&id) {
            return Ok(Some(body.clone()));
        }
        let Some(&(offset, length)) = spill.located.get(&id) else { return Ok(None) };
        let io = |source| Error::Spill { path: spill.path.display().to_string(), source };
        if offset + u64::from(length) > spill.flushed {
            spill.writer.flush().map_err(io)?;
            spill.flushed = spill.written;
        }
        let mut buffer = vec![0u8; length as usize];
        spill.reader.seek(SeekFrom::Start(offset)).map_err(io)?;
        spill.reader.read_exact(&mut buffer).map_err(io)?;
        // Written from a `String` a moment ago; a cut at u32::MAX could split a character.
        Ok(Some(String::from_utf8_lossy(&buffer).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_bodies_come_back_from_memory_and_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // Room for about two bodies in memory: older ones are read back from the file.
        let mut bodies = QuestionBodies::spill_to(&dir.path().join("bodies"), 30).unwrap();
        for id in 1..=10u64 {
            assert_eq!(bodies.put(id, format!("<p>body number {id}</p>")).unwrap(), None);
        }
        for id in (1..=10u64).rev() {
            assert_eq!(bodies.get(id).unwrap().as_deref(), Some(format!("<p>body number {id}</p>").as_str()));
        }
        assert_eq!(bodies.get(11).unwrap(), None);
        assert!(bodies.spilled_bytes() > 100);
        let mut memory = QuestionBodies::default();
        assert_eq!(memory.put(1, "kept".into()).unwrap().as_deref(), Some("kept"));
        assert_eq!(memory.get(1).unwrap(), None);
    }
}
