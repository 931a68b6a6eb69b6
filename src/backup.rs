//! `cronhook backup FILE`: a consistent copy of the SQLite database, taken with
//! `VACUUM INTO` — safe while the server runs (it reads one snapshot, like any other
//! reader under WAL) and compact. PostgreSQL is backed up with its own tools
//! (`pg_dump`, see docs/operations.md).

use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

use crate::db::Backend;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

/// Copies the SQLite database named by `database_url` to `dest`, checks the copy,
/// and returns its size in bytes.
pub fn backup(database_url: &str, dest: &Path) -> Result<u64, BackupError> {
    let source = match Backend::from_url(database_url).map_err(|e| BackupError::Invalid(e.to_string()))? {
        Backend::Sqlite(path) => path,
        Backend::Postgres(_) => {
            return Err(BackupError::Invalid(
                "cronhook backup copies SQLite databases only; back up PostgreSQL with pg_dump (see docs/operations.md, Backups)".into(),
            ))
        }
    };
    // Opening a missing file would create an empty database and "back it up".
    if !source.is_file() {
        return Err(BackupError::Invalid(format!(
            "there is no SQLite database at {}",
            source.display()
        )));
    }
    if dest.exists() {
        return Err(BackupError::Invalid(format!(
            "{} already exists; choose a new file name (a backup never overwrites)",
            dest.display()
        )));
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(BackupError::Invalid(format!(
                "directory {} does not exist",
                dir.display()
            )));
        }
    }
    let dest_text = dest
        .to_str()
        .ok_or_else(|| BackupError::Invalid(format!("{} is not valid UTF-8", dest.display())))?;
    let mut conn = open(&source)?;
    // Wait for the server's writer instead of failing on a busy file.
    conn.batch_execute("PRAGMA busy_timeout = 10000;")
        .map_err(|e| BackupError::Failed(format!("{}: {e}", source.display())))?;
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(dest_text)
        .execute(&mut conn)
        .map_err(|e| BackupError::Failed(format!("VACUUM INTO {}: {e}", dest.display())))?;
    verify(dest)?;
    std::fs::metadata(dest)
        .map(|m| m.len())
        .map_err(|e| BackupError::Failed(format!("{}: {e}", dest.display())))
}

fn open(path: &Path) -> Result<SqliteConnection, BackupError> {
    SqliteConnection::establish(&path.to_string_lossy())
        .map_err(|e| BackupError::Failed(format!("cannot open {}: {e}", path.display())))
}

#[derive(QueryableByName)]
struct Check {
    #[diesel(sql_type = Text)]
    quick_check: String,
}

/// The copy must pass SQLite's own consistency check before it is called a backup.
fn verify(dest: &Path) -> Result<(), BackupError> {
    let mut conn = open(dest)?;
    let rows: Vec<Check> = diesel::sql_query("PRAGMA quick_check")
        .load(&mut conn)
        .map_err(|e| BackupError::Failed(format!("checking {}: {e}", dest.display())))?;
    match rows.first() {
        Some(row) if row.quick_check == "ok" => Ok(()),
        Some(row) => Err(BackupError::Failed(format!(
            "the copy {} failed its consistency check: {}",
            dest.display(),
            row.quick_check
        ))),
        None => Err(BackupError::Failed(format!(
            "the copy {} gave no consistency check answer",
            dest.display()
        ))),
    }
}
