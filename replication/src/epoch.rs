//! A broker's epoch file (RocketMQ 5's `EpochFileCache`, `epochFileCheckpoint`):
//! for each master epoch this broker's commit log went through, the offset where the
//! epoch's first message was written. Two brokers that agree on an epoch and its
//! start offset hold the same bytes up to where either of them left that epoch, which
//! is how a broker that follows a new master finds the end of what they share and
//! truncates the rest ([`EpochFile::consistent_point`]).
//!
//! The file is RocketMQ's text format, so the tools that read one read the other:
//!
//! ```text
//! 2                 ← number of entries
//! 1739289447        ← CRC32 of the entry lines, masked to 31 bits (0: unchecked)
//! 1-0               ← epoch-startOffset, one per line, ascending
//! 2-4096
//! ```
//!
//! Every change rewrites the file (the previous one kept as `.bak`, which a file that
//! does not check out falls back to) and syncs it before returning.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One epoch: where it starts and (for all but the last) where the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
    /// The next epoch's start; `i64::MAX` for the last epoch.
    pub end_offset: i64,
}

/// The epoch file and its entries.
#[derive(Debug)]
pub struct EpochFile {
    path: PathBuf,
    /// epoch → start offset.
    entries: BTreeMap<i32, i64>,
}

impl EpochFile {
    /// Opens the file at `path` (its backup when it does not check out); a missing
    /// file is an empty history.
    ///
    /// # Errors
    /// Neither the file nor its backup can be read, or both are corrupt.
    pub fn open(path: &Path) -> io::Result<Self> {
        let entries = match read(path) {
            Ok(Some(e)) => e,
            Ok(None) => read(&backup(path))?.unwrap_or_default(),
            Err(e) => match read(&backup(path)) {
                Ok(Some(b)) => {
                    tracing::warn!(path = %path.display(), error = %e, "epoch file unreadable; using its backup");
                    b
                }
                _ => return Err(e),
            },
        };
        Ok(Self { path: path.to_owned(), entries })
    }

    /// Every epoch, oldest first.
    pub fn entries(&self) -> Vec<EpochEntry> {
        let mut out: Vec<EpochEntry> = self
            .entries
            .iter()
            .map(|(&epoch, &start_offset)| EpochEntry { epoch, start_offset, end_offset: i64::MAX })
            .collect();
        for i in 1..out.len() {
            out[i - 1].end_offset = out[i].start_offset;
        }
        out
    }

    /// The newest epoch, if any.
    pub fn last_epoch(&self) -> Option<i32> {
        self.entries.keys().next_back().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Refused (false) unless the
    /// epoch is newer than the last and does not start before it.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn append(&mut self, epoch: i32, start_offset: i64) -> io::Result<bool> {
        if let Some((&last, &last_start)) = self.entries.iter().next_back() {
            if epoch <= last || start_offset < last_start {
                return Ok(false);
            }
        }
        self.entries.insert(epoch, start_offset);
        self.persist()?;
        Ok(true)
    }

    /// Forgets the epochs that start at or after `offset` (the log was truncated
    /// there).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn truncate_suffix_by_offset(&mut self, offset: i64) -> io::Result<()> {
        let before = self.entries.len();
        self.entries.retain(|_, start| *start < offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// The end of the log this broker shares with a broker whose epochs are
    /// `other` (each history's last epoch ending at that broker's log end:
    /// `own_end` and `other_end`): the newest epoch both have with the same start
    /// offset, up to where the first of the two left it. `None` when they share no
    /// epoch (nothing can be trusted to match).
    pub fn consistent_point(&self, own_end: i64, other: &[EpochEntry], other_end: i64) -> Option<i64> {
        let mine = with_last_end(self.entries(), own_end);
        let theirs = with_last_end(other.to_vec(), other_end);
        mine.iter().rev().find_map(|m| {
            theirs
                .iter()
                .find(|t| t.epoch == m.epoch && t.start_offset == m.start_offset)
                .map(|t| m.end_offset.min(t.end_offset))
        })
    }

    fn persist(&self) -> io::Result<()> {
        let mut lines = String::new();
        for (epoch, start) in &self.entries {
            lines.push_str(&format!("{epoch}-{start}\n"));
        }
        let crc = crc32fast::hash(lines.as_bytes()) & 0x7FFF_FFFF;
        let text = format!("{}\n{crc}\n{lines}", self.entries.len());
        if self.path.exists() {
            fs::copy(&self.path, backup(&self.path))?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn with_last_end(mut entries: Vec<EpochEntry>, end: i64) -> Vec<EpochEntry> {
    if let Some(last) = entries.last_mut() {
        last.end_offset = end;
    }
    entries
}

fn backup(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".bak");
    path.with_file_name(name)
}

/// The entries of one file: `None` if it does not exist or is empty.
fn read(path: &Path) -> io::Result<Option<BTreeMap<i32, i64>>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()));
    let mut lines = text.lines();
    let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| bad("no entry count"))?;
    let crc: u32 = lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| bad("no checksum"))?;
    let mut body = String::new();
    let mut entries = BTreeMap::new();
    for line in lines.by_ref().take(count) {
        let (epoch, start) = line.trim().split_once('-').ok_or_else(|| bad("an entry is not epoch-offset"))?;
        let epoch: i32 = epoch.parse().map_err(|_| bad("an epoch is not a number"))?;
        let start: i64 = start.parse().map_err(|_| bad("an offset is not a number"))?;
        entries.insert(epoch, start);
        body.push_str(line.trim());
        body.push('\n');
    }
    if entries.len() != count {
        return Err(bad("fewer entries than its count"));
    }
    if crc != 0 && crc32fast::hash(body.as_bytes()) & 0x7FFF_FFFF != crc {
        return Err(bad("checksum mismatch"));
    }
    Ok(Some(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(pairs: &[(i32, i64)]) -> Vec<EpochEntry> {
        let mut out: Vec<EpochEntry> = pairs
            .iter()
            .map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset, end_offset: i64::MAX })
            .collect();
        for i in 1..out.len() {
            out[i - 1].end_offset = out[i].start_offset;
        }
        out
    }

    #[test]
    fn entries_persist_in_rocketmqs_format_and_survive_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epochFileCheckpoint");
        let mut f = EpochFile::open(&path).unwrap();
        assert!(f.append(1, 0).unwrap());
        assert!(f.append(2, 4096).unwrap());
        assert!(!f.append(2, 5000).unwrap(), "not a newer epoch");
        assert!(!f.append(3, 100).unwrap(), "starts before the last");
        let text = fs::read_to_string(&path).unwrap();
        let body = "1-0\n2-4096\n";
        assert_eq!(text, format!("2\n{}\n{body}", crc32fast::hash(body.as_bytes()) & 0x7FFF_FFFF));
        assert_eq!(EpochFile::open(&path).unwrap().entries(), history(&[(1, 0), (2, 4096)]));

        // A torn main file: the backup (the state before the last change) is used.
        fs::write(&path, "2\n123\n1-0\n").unwrap();
        assert_eq!(EpochFile::open(&path).unwrap().entries(), history(&[(1, 0)]));
        fs::write(&path, "2\n1\n1-0\n2-4096\n").unwrap();
        fs::remove_file(backup(&path)).unwrap();
        assert!(EpochFile::open(&path).is_err(), "a checksum mismatch with no backup");
    }

    #[test]
    fn truncation_forgets_later_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = EpochFile::open(&dir.path().join("e")).unwrap();
        for (e, o) in [(1, 0), (2, 100), (3, 250)] {
            f.append(e, o).unwrap();
        }
        f.truncate_suffix_by_offset(250).unwrap();
        assert_eq!(f.last_epoch(), Some(2));
        assert_eq!(EpochFile::open(&dir.path().join("e")).unwrap().last_epoch(), Some(2));
    }

    #[test]
    fn the_consistent_point_is_where_the_shared_history_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut old_master = EpochFile::open(&dir.path().join("e")).unwrap();
        for (e, o) in [(1, 0), (2, 100)] {
            old_master.append(e, o).unwrap();
        }
        // The old master wrote up to 300 in epoch 2; the new master had 180 of it
        // when it took over at epoch 3 and has written on since.
        let new_master = history(&[(1, 0), (2, 100), (3, 180)]);
        assert_eq!(old_master.consistent_point(300, &new_master, 500), Some(180));
        // A slave that is behind keeps all it has.
        assert_eq!(old_master.consistent_point(150, &new_master, 500), Some(150));
        // Epoch 2 started elsewhere on the other broker: only epoch 1 is shared.
        let diverged = history(&[(1, 0), (2, 90)]);
        assert_eq!(old_master.consistent_point(300, &diverged, 400), Some(90));
        assert_eq!(old_master.consistent_point(300, &history(&[(5, 0)]), 10), None);
    }
}
