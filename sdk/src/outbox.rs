//! The durable outbox: results not yet delivered, on disk, so they survive a
//! scheduler outage and an executor restart.
//!
//! Writes are group-committed by one writer thread: the results waiting when it
//! looks are written together and made durable with one fsync of the file and one of
//! the directory. A lone result goes to `<fire_id>.json`; several go to one
//! `batch-<id>.jsonl` (a JSON entry per line), removed once every result in it is
//! delivered. At thousands of results a second, an fsync pair per result was the
//! executor's bottleneck.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::WriteBack;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("could not create outbox directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not read outbox directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not remove {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A result waiting for delivery, as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct OutboxEntry {
    pub fire_id: Uuid,
    #[serde(default)]
    pub job: String,
    pub callback_url: String,
    pub result: WriteBack,
    pub created_at: DateTime<Utc>,
}

/// Results written together at most.
const MAX_BATCH: usize = 1_024;

/// A file holding stored results, and how many of them are not yet delivered.
#[derive(Debug)]
struct StoredFile {
    path: PathBuf,
    remaining: AtomicUsize,
}

#[derive(Debug)]
struct Stored {
    entry: OutboxEntry,
    file: Arc<StoredFile>,
}

type Index = Arc<Mutex<HashMap<Uuid, Stored>>>;
type StoreRequest = (
    OutboxEntry,
    tokio::sync::oneshot::Sender<Result<(), OutboxError>>,
);

#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    dir: PathBuf,
    /// Every result stored and not yet delivered, by fire id.
    index: Index,
    writes: mpsc::Sender<StoreRequest>,
}

impl Outbox {
    /// Creates the directory if needed, clears temporary files of interrupted writes
    /// and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        fs::create_dir_all(dir).map_err(|source| OutboxError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        for path in list_files(dir, "tmp")? {
            // A temp file was never renamed into place, so its results were never
            // acknowledged as stored: the run they belong to died before that point.
            let _ = fs::remove_file(path);
        }
        let index: Index = Arc::default();
        let (writes, requests) = mpsc::channel::<StoreRequest>();
        let writer_dir = dir.to_owned();
        let writer_index = index.clone();
        std::thread::Builder::new()
            .name("cronhook-outbox".into())
            .spawn(move || write_loop(&writer_dir, &writer_index, requests))
            .map_err(|source| OutboxError::Write {
                path: dir.to_owned(),
                source,
            })?;
        Ok(Outbox {
            dir: dir.to_owned(),
            index,
            writes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn single_path(&self, fire_id: Uuid) -> PathBuf {
        self.dir.join(format!("{fire_id}.json"))
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Stored>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stored here and not yet delivered, or written by another instance sharing the
    /// directory.
    pub fn contains(&self, fire_id: Uuid) -> bool {
        self.index().contains_key(&fire_id) || self.single_path(fire_id).exists()
    }

    /// Stores the entry durably; resolves once it is on disk (fsynced, renamed into
    /// place, directory fsynced), together with whatever else was waiting.
    pub async fn store(&self, entry: OutboxEntry) -> Result<(), OutboxError> {
        let path = self.single_path(entry.fire_id);
        let stopped = || OutboxError::Write {
            path: path.clone(),
            source: io::Error::other("the outbox writer has stopped"),
        };
        let (done, stored) = tokio::sync::oneshot::channel();
        self.writes.send((entry, done)).map_err(|_| stopped())?;
        stored.await.map_err(|_| stopped())?
    }

    /// Forgets a delivered entry; its file goes once nothing in it waits any more. A
    /// missing file is fine (another instance sharing the directory may have
    /// delivered it).
    pub fn remove(&self, fire_id: Uuid) -> Result<(), OutboxError> {
        let stored = self.index().remove(&fire_id);
        let path = match stored {
            Some(stored) if stored.file.remaining.fetch_sub(1, Ordering::AcqRel) == 1 => {
                stored.file.path.clone()
            }
            Some(_) => return Ok(()),
            None => self.single_path(fire_id),
        };
        match fs::remove_file(&path) {
            Err(source) if source.kind() != io::ErrorKind::NotFound => {
                Err(OutboxError::Remove { path, source })
            }
            _ => Ok(()),
        }
    }

    pub fn read(&self, fire_id: Uuid) -> Option<OutboxEntry> {
        if let Some(stored) = self.index().get(&fire_id) {
            return Some(stored.entry.clone());
        }
        let text = fs::read(self.single_path(fire_id)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Every stored entry, oldest first. An unreadable file is renamed to `*.corrupt`
    /// and logged, never deleted, so an operator can look at it; the readable lines of
    /// a damaged batch are stored again first.
    pub fn load(&self) -> Result<Vec<OutboxEntry>, OutboxError> {
        let mut loaded: Vec<(OutboxEntry, Arc<StoredFile>)> = Vec::new();
        for path in list_files(&self.dir, "json")? {
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<OutboxEntry>(&bytes).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(entry) => loaded.push((entry, stored_file(path, 1))),
                Err(reason) => set_aside(&path, &reason),
            }
        }
        for path in list_files(&self.dir, "jsonl")? {
            let (entries, damage) = match fs::read(&path) {
                Ok(bytes) => parse_batch(&bytes),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            match damage {
                None => {
                    let file = stored_file(path, entries.len());
                    loaded.extend(entries.into_iter().map(|entry| (entry, file.clone())));
                }
                Some(reason) => {
                    if !entries.is_empty() {
                        let kept = write_batch(&self.dir, &entries)
                            .map_err(|(path, source)| OutboxError::Write { path, source })?;
                        let file = stored_file(kept, entries.len());
                        loaded.extend(entries.into_iter().map(|entry| (entry, file.clone())));
                    }
                    set_aside(&path, &reason);
                }
            }
        }
        loaded.sort_by_key(|(entry, _)| entry.created_at);
        let mut index = self.index();
        let mut entries = Vec::with_capacity(loaded.len());
        for (entry, file) in loaded {
            if index.contains_key(&entry.fire_id) {
                // The same result in two files (a crash between writing a batch and
                // removing an older copy): one delivery, the other file is let go.
                file.remaining.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            entries.push(entry.clone());
            index.insert(entry.fire_id, Stored { entry, file });
        }
        Ok(entries)
    }
}

fn stored_file(path: PathBuf, entries: usize) -> Arc<StoredFile> {
    Arc::new(StoredFile {
        path,
        remaining: AtomicUsize::new(entries),
    })
}

fn set_aside(path: &Path, reason: &str) {
    let corrupt = path.with_extension("corrupt");
    log::error!(
        "outbox file {} is unreadable ({reason}); moved to {}",
        path.display(),
        corrupt.display()
    );
    let _ = fs::rename(path, &corrupt);
}

/// The entries of a batch file, and what was wrong with it if a line was unreadable.
fn parse_batch(bytes: &[u8]) -> (Vec<OutboxEntry>, Option<String>) {
    let mut entries = Vec::new();
    let mut damage = None;
    for (number, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<OutboxEntry>(line) {
            Ok(entry) => entries.push(entry),
            Err(e) => damage = Some(format!("line {}: {e}", number + 1)),
        }
    }
    (entries, damage)
}

/// The writer thread: takes what is waiting, writes it as one file, answers each.
fn write_loop(dir: &Path, index: &Index, requests: mpsc::Receiver<StoreRequest>) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let entries: Vec<OutboxEntry> = batch.iter().map(|(entry, _)| entry.clone()).collect();
        match write_batch(dir, &entries) {
            Ok(path) => {
                let file = stored_file(path, entries.len());
                {
                    let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
                    for entry in entries {
                        index.insert(
                            entry.fire_id,
                            Stored {
                                entry,
                                file: file.clone(),
                            },
                        );
                    }
                }
                for (_, done) in batch {
                    let _ = done.send(Ok(()));
                }
            }
            Err((path, e)) => {
                for (_, done) in batch {
                    let _ = done.send(Err(OutboxError::Write {
                        path: path.clone(),
                        source: io::Error::new(e.kind(), e.to_string()),
                    }));
                }
            }
        }
    }
}

/// Writes entries durably: temp file, fsync, rename, fsync of the directory.
fn write_batch(dir: &Path, entries: &[OutboxEntry]) -> Result<PathBuf, (PathBuf, io::Error)> {
    let (path, body) = match entries {
        [entry] => (
            dir.join(format!("{}.json", entry.fire_id)),
            serde_json::to_vec_pretty(entry).map_err(io::Error::other),
        ),
        _ => {
            let mut body = Vec::new();
            let mut encoded = Ok(());
            for entry in entries {
                if let Err(e) = serde_json::to_writer(&mut body, entry) {
                    encoded = Err(io::Error::other(e));
                    break;
                }
                body.push(b'\n');
            }
            (
                dir.join(format!("batch-{}.jsonl", Uuid::now_v7())),
                encoded.map(|()| body),
            )
        }
    };
    let tmp = path.with_extension(match entries {
        [_] => "json.tmp",
        _ => "jsonl.tmp",
    });
    let write = |body: Vec<u8>| -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    };
    match body.and_then(write) {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err((path, e))
        }
    }
}

fn list_files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, OutboxError> {
    let read_err = |source| OutboxError::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for item in fs::read_dir(dir).map_err(read_err)? {
        let path = item.map_err(read_err)?.path();
        if path.extension().and_then(|e| e.to_str()) == Some(extension) && path.is_file() {
            files.push(path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ResultStatus;

    fn entry(id: Uuid) -> OutboxEntry {
        OutboxEntry {
            fire_id: id,
            job: "g/n".into(),
            callback_url: "http://127.0.0.1:1/x".into(),
            result: WriteBack {
                fire_id: None,
                status: ResultStatus::Succeeded,
                output: Some("out".into()),
                error: None,
                started_at: None,
                finished_at: None,
            },
            created_at: Utc::now(),
        }
    }

    fn files(dir: &Path, extension: &str) -> usize {
        list_files(dir, extension).unwrap().len()
    }

    #[tokio::test]
    async fn store_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        let stored = entry(id);
        outbox.store(stored.clone()).await.unwrap();
        assert!(outbox.contains(id));
        assert!(
            dir.path().join(format!("{id}.json")).exists(),
            "a lone result has its own file"
        );
        assert_eq!(outbox.read(id), Some(stored.clone()));
        fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
        fs::write(dir.path().join("x.json.tmp"), b"partial").unwrap();

        let reopened = Outbox::open(dir.path()).unwrap();
        assert!(!dir.path().join("x.json.tmp").exists());
        assert_eq!(reopened.load().unwrap(), vec![stored]);
        assert!(dir.path().join("junk.corrupt").exists());

        reopened.remove(id).unwrap();
        reopened.remove(id).unwrap();
        assert!(!reopened.contains(id));
        assert!(reopened.load().unwrap().is_empty());
    }

    #[tokio::test]
    async fn results_stored_together_share_a_file_that_goes_once_all_are_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let entries: Vec<OutboxEntry> = (0..200).map(|_| entry(Uuid::new_v4())).collect();
        let stores = entries.iter().map(|e| outbox.store(e.clone()));
        for stored in futures_util::future::join_all(stores).await {
            stored.unwrap();
        }
        let written = files(dir.path(), "json") + files(dir.path(), "jsonl");
        assert!(
            written < entries.len() / 10,
            "{written} files for {} results stored at once",
            entries.len()
        );

        let reopened = Outbox::open(dir.path()).unwrap();
        let mut loaded = reopened.load().unwrap();
        let mut expected = entries.clone();
        loaded.sort_by_key(|e| e.fire_id);
        expected.sort_by_key(|e| e.fire_id);
        assert!(loaded == expected, "every stored result is loaded again");
        let (last, delivered) = expected.split_last().unwrap();
        for e in delivered {
            reopened.remove(e.fire_id).unwrap();
        }
        // A file goes only when every result in it is delivered.
        assert!(reopened.contains(last.fire_id));
        assert!(files(dir.path(), "json") + files(dir.path(), "jsonl") >= 1);
        reopened.remove(last.fire_id).unwrap();
        assert_eq!(files(dir.path(), "json") + files(dir.path(), "jsonl"), 0);
    }

    #[tokio::test]
    async fn a_damaged_batch_keeps_its_readable_results_and_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let good = entry(Uuid::new_v4());
        let mut text = serde_json::to_string(&good).unwrap();
        text.push_str("\n{\"fire_id\": oops\n");
        fs::write(dir.path().join("batch-1.jsonl"), text).unwrap();

        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.load().unwrap(), vec![good.clone()]);
        assert!(dir.path().join("batch-1.corrupt").exists());
        assert!(!dir.path().join("batch-1.jsonl").exists());
        // The readable result was stored again, so it survives another restart.
        let again = Outbox::open(dir.path()).unwrap();
        assert_eq!(again.load().unwrap(), vec![good]);
    }
}
