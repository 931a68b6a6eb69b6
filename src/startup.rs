//! Wires settings, database, auth, scheduler and HTTP server into one running
//! [`Application`]; `tests/` start it the same way through `spawn_app`.

use std::fs::File;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tokio::sync::watch;

use crate::auth::{AuthState, GeneratedSecrets};
use crate::configuration::Settings;
use crate::db::{Backend, Db, DbError};
use crate::housekeeping::Housekeeping;
use crate::routes;
use crate::scheduler::Scheduler;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// A started node: HTTP server bound, scheduler loops running.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    server_handle: ServerHandle,
    scheduler: Scheduler,
    housekeeping: Housekeeping,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    _sqlite_lock: Option<File>,
    pub generated: GeneratedSecrets,
    pub state: AppState,
}

/// Asks a running [`Application`] to shut down gracefully (tests use it like a SIGTERM).
#[derive(Clone)]
pub struct StopHandle(watch::Sender<bool>);

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// SQLite is single-node: a second process on the same file would fire everything twice.
fn lock_sqlite_file(backend: &Backend) -> Result<Option<File>, StartError> {
    let Backend::Sqlite(path) = backend else {
        return Ok(None);
    };
    let lock_path = path.with_extension("lock");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StartError::Other(format!("cannot create directory {}: {e}", dir.display()))
        })?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StartError::Other(format!(
                "cannot create lock file {}: {e}",
                lock_path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(_) => Err(StartError::Other(format!(
            "another cronhook node is already running on {} (lock {} is held). SQLite is single-node; use PostgreSQL to run several nodes",
            path.display(),
            lock_path.display()
        ))),
    }
}

impl Application {
    /// Must be called inside an actix system (`#[actix_web::main]`, `#[actix_web::test]`).
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        let backend = Backend::from_url(&settings.database_url)?;
        let sqlite_lock = lock_sqlite_file(&backend)?;
        let db = {
            let url = settings.database_url.clone();
            tokio::task::spawn_blocking(move || -> Result<Db, DbError> {
                let db = Db::open(&url)?;
                let applied = db.run_migrations()?;
                if !applied.is_empty() {
                    log::info!("applied {} migration(s)", applied.len());
                }
                Ok(db)
            })
            .await
            .map_err(|e| StartError::Other(e.to_string()))??
        };
        log::info!("database: {}", db.backend.describe());
        let (auth, mut generated) = {
            let db = db.clone();
            let token = settings.admin_token.clone();
            let secret = settings.signing_secret.clone();
            let alert_url = settings.alert_url.clone();
            tokio::task::spawn_blocking(move || {
                crate::db::settings::store_alert_url(&db, alert_url.as_deref())?;
                AuthState::initialise(&db, token.as_deref(), secret.as_deref())
            })
            .await
            .map_err(|e| StartError::Other(e.to_string()))??
        };
        generated.admin_password = {
            let db = db.clone();
            let password = settings.admin_password.clone();
            tokio::task::spawn_blocking(move || {
                crate::auth::ensure_console_admin(&db, password.as_deref())
            })
            .await
            .map_err(|e| StartError::Other(e.to_string()))?
            .map_err(|e| StartError::Other(format!("console admin user: {e}")))?
        };

        let listener = TcpListener::bind(&settings.listen).map_err(|source| StartError::Bind {
            addr: settings.listen.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| StartError::Other(e.to_string()))?
            .port();
        let callback_base = settings.public_base_url(port);

        let scheduler = Scheduler::start(
            db.clone(),
            settings.scheduler.clone(),
            Arc::new(auth.signing_secret().to_vec()),
            callback_base,
        )
        .map_err(|e| StartError::Other(format!("scheduler: {e}")))?;
        let housekeeping = Housekeeping::start(db.clone(), settings.retention.clone())
            .map_err(|e| StartError::Other(format!("housekeeping: {e}")))?;
        let state = AppState {
            db,
            settings: settings.clone(),
            scheduler: scheduler.handle(),
        };
        let app_state = web::Data::new(state.clone());
        let auth_data = web::Data::new(auth);
        let max_body = settings.max_body_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(
                    actix_web::middleware::Logger::new("%a \"%r\" %s %b %Dms")
                        .exclude("/healthz")
                        .exclude("/readyz")
                        .exclude("/metrics"),
                )
                .app_data(app_state.clone())
                .app_data(auth_data.clone())
                // Per worker thread: its write-backs are recorded in batches.
                .app_data(routes::WriteBacks::start(app_state.db.clone()))
                .configure(|cfg| routes::configure(cfg, max_body))
        })
        // Signals are handled below so the scheduler drains before the server stops.
        .disable_signals()
        .shutdown_timeout(5);
        if settings.http_workers > 0 {
            server = server.workers(settings.http_workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Bind {
                addr: settings.listen.clone(),
                source,
            })?
            .run();
        let server_handle = server.handle();
        let (stop_tx, stop_rx) = watch::channel(false);
        Ok(Application {
            port,
            server,
            server_handle,
            scheduler,
            housekeeping,
            stop_tx,
            stop_rx,
            _sqlite_lock: sqlite_lock,
            generated,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop_tx.clone())
    }

    /// Serves until SIGINT/SIGTERM (or a [`StopHandle`]), then stops claiming, lets
    /// in-flight dispatches finish, hands back claimed fires, and stops the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            server_handle,
            scheduler,
            housekeeping,
            stop_tx: _keep_stop_open,
            mut stop_rx,
            _sqlite_lock,
            ..
        } = self;
        let server_task = actix_rt::spawn(server);
        tokio::select! {
            _ = shutdown_signal() => log::info!("shutdown signal received"),
            _ = stop_rx.wait_for(|stop| *stop) => log::info!("shutdown requested"),
        }
        housekeeping.stop().await;
        // The HTTP server stays up while the scheduler drains, so write-backs still land.
        scheduler.shutdown().await;
        server_handle.stop(true).await;
        let _ = server_task.await;
        drop(_sqlite_lock);
        log::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
