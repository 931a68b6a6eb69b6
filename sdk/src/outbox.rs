//! The durable outbox: one JSON file per result not yet delivered, so results
//! survive a scheduler outage and an executor restart.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
    #[error("could not encode the result of fire {fire_id}: {source}")]
    Encode {
        fire_id: Uuid,
        #[source]
        source: serde_json::Error,
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

#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Creates the directory if needed and clears temporary files of interrupted writes.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        fs::create_dir_all(dir).map_err(|source| OutboxError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let outbox = Outbox {
            dir: dir.to_owned(),
        };
        for path in outbox.files("tmp")? {
            // A temp file was never renamed into place, so its result was never
            // acknowledged as stored: the run it belongs to died before that point.
            let _ = fs::remove_file(path);
        }
        Ok(outbox)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, fire_id: Uuid) -> PathBuf {
        self.dir.join(format!("{fire_id}.json"))
    }

    pub fn contains(&self, fire_id: Uuid) -> bool {
        self.path(fire_id).exists()
    }

    /// Writes the entry durably: temp file, fsync, rename, fsync of the directory.
    pub fn store(&self, entry: &OutboxEntry) -> Result<(), OutboxError> {
        let body = serde_json::to_vec_pretty(entry).map_err(|source| OutboxError::Encode {
            fire_id: entry.fire_id,
            source,
        })?;
        let path = self.path(entry.fire_id);
        let tmp = self.dir.join(format!("{}.json.tmp", entry.fire_id));
        let write = || -> io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&body)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            // The rename is durable only once the directory entry is.
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            OutboxError::Write {
                path: path.clone(),
                source,
            }
        })
    }

    /// Removes a delivered entry; a missing file is fine (another instance sharing the
    /// directory may have delivered it).
    pub fn remove(&self, fire_id: Uuid) -> Result<(), OutboxError> {
        let path = self.path(fire_id);
        match fs::remove_file(&path) {
            Err(source) if source.kind() != io::ErrorKind::NotFound => {
                Err(OutboxError::Remove { path, source })
            }
            _ => Ok(()),
        }
    }

    pub fn read(&self, fire_id: Uuid) -> Option<OutboxEntry> {
        let text = fs::read(self.path(fire_id)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Every stored entry. An unreadable file is renamed to `*.corrupt` and logged,
    /// never deleted, so an operator can look at it.
    pub fn load(&self) -> Result<Vec<OutboxEntry>, OutboxError> {
        let mut entries = Vec::new();
        for path in self.files("json")? {
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<OutboxEntry>(&bytes).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(entry) => entries.push(entry),
                Err(reason) => {
                    let corrupt = path.with_extension("corrupt");
                    log::error!(
                        "outbox file {} is unreadable ({reason}); moved to {}",
                        path.display(),
                        corrupt.display()
                    );
                    let _ = fs::rename(&path, &corrupt);
                }
            }
        }
        entries.sort_by_key(|e| e.created_at);
        Ok(entries)
    }

    fn files(&self, extension: &str) -> Result<Vec<PathBuf>, OutboxError> {
        let read_err = |source| OutboxError::ReadDir {
            path: self.dir.clone(),
            source,
        };
        let mut files = Vec::new();
        for item in fs::read_dir(&self.dir).map_err(read_err)? {
            let path = item.map_err(read_err)?.path();
            if path.extension().and_then(|e| e.to_str()) == Some(extension) && path.is_file() {
                files.push(path);
            }
        }
        Ok(files)
    }
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

    #[test]
    fn store_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        outbox.store(&entry(id)).unwrap();
        assert!(outbox.contains(id));
        fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
        fs::write(dir.path().join("x.json.tmp"), b"partial").unwrap();

        let reopened = Outbox::open(dir.path()).unwrap();
        assert!(!dir.path().join("x.json.tmp").exists());
        let loaded = reopened.load().unwrap();
        assert_eq!(
            loaded,
            vec![entry(id)]
                .into_iter()
                .map(|mut e| {
                    e.created_at = loaded[0].created_at;
                    e
                })
                .collect::<Vec<_>>()
        );
        assert!(dir.path().join("junk.corrupt").exists());

        reopened.remove(id).unwrap();
        reopened.remove(id).unwrap();
        assert!(!reopened.contains(id));
        assert!(reopened.load().unwrap().is_empty());
    }
}
