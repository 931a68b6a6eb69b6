//! WAL checkpoints for SQLite, mostly off the writer thread. SQLite checkpoints from
//! whichever connection commits past 1,000 WAL pages, i.e. inside the single writer:
//! copying a thousand pages into the database file and syncing it took 40–80 ms there,
//! during which every dispatch fence waited (firing-lag spikes). This thread copies
//! the WAL into the database file every 100 ms on its own connection (PASSIVE: it
//! takes no lock the writer needs), so the writer's own checkpoint finds only the last
//! few pages to copy. The writer's checkpoint stays: only a checkpoint that catches up
//! completely between two write transactions lets SQLite start the WAL over; without
//! it the WAL grew by 500 MB in a 30-second run.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

/// How often the WAL is copied into the database file. At thousands of fires per
/// second the WAL grows by a few MB in this time.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Keeps the checkpointer running while any clone of it lives (held by every `Db` clone).
#[derive(Clone)]
pub struct Checkpointer {
    _alive: Arc<()>,
}

impl Checkpointer {
    /// Starts checkpointing `path`; the thread ends once the last clone is dropped.
    pub fn start(path: PathBuf) -> Checkpointer {
        let alive = Arc::new(());
        let watched = Arc::downgrade(&alive);
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_while_alive(path, watched));
        if let Err(e) = spawned {
            log::error!("cannot start the WAL checkpoint thread: {e}");
        }
        Checkpointer { _alive: alive }
    }
}

fn checkpoint_while_alive(path: PathBuf, alive: Weak<()>) {
    let mut conn: Option<SqliteConnection> = None;
    while alive.upgrade().is_some() {
        std::thread::sleep(CHECKPOINT_EVERY);
        if conn.is_none() {
            conn = open_for_checkpoints(&path)
                .map_err(|e| log::warn!("WAL checkpoint: cannot open {}: {e}", path.display()))
                .ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        let r = c.batch_execute("PRAGMA wal_checkpoint(PASSIVE);");
        if let Err(e) = r {
            log::warn!("WAL checkpoint failed: {e}");
            conn = None;
        }
    }
}

/// A connection that knows the file is in WAL mode: until a connection has read the
/// file it does not, and a checkpoint from it would do nothing.
fn open_for_checkpoints(path: &std::path::Path) -> Result<SqliteConnection, String> {
    let mut conn =
        SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| e.to_string())?;
    conn.batch_execute("PRAGMA busy_timeout = 1000; PRAGMA journal_mode = WAL;")
        .map_err(|e| e.to_string())?;
    Ok(conn)
}
