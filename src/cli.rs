//! The command line: `serve`, `migrate`, `backup`, `cron next`, `cron explain`, and
//! `jobs` (export, apply, import-crontab; in [`crate::jobfile`]).

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use figment::providers::Serialized;

use crate::configuration::Settings;
use crate::domain::trigger::parse_time_zone;
use crate::schedule::cron::CronExpr;
use crate::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "cronhook",
    version,
    about = "A Quartz-style HTTP callback scheduler"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler and its HTTP API.
    Serve(ServerArgs),
    /// Apply pending database migrations and exit.
    Migrate(ServerArgs),
    /// Copy the SQLite database to FILE, consistently, even while the server runs.
    Backup(BackupArgs),
    /// Work with Quartz cron expressions.
    #[command(subcommand)]
    Cron(CronCommand),
    /// Jobs as files: export, apply, import a crontab (talks to a running server).
    #[command(subcommand)]
    Jobs(crate::jobfile::JobsCommand),
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML settings file (every setting is described in docs/configuration.md).
    #[arg(long, short = 'c', env = "CRONHOOK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:7070.
    #[arg(long)]
    pub listen: Option<String>,
    /// sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long)]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the copy; must not exist yet.
    pub file: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Print the next fire times, RFC 3339 UTC, one per line.
    Next {
        expression: String,
        /// IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Start after this instant (RFC 3339); default now.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
    /// Describe an expression in plain English.
    Explain { expression: String },
}

/// Exit code for invalid input.
pub const EXIT_INVALID: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Invalid(_) => EXIT_INVALID,
            CliError::Failed(_) => 1,
        }
    }
}

impl ServerArgs {
    fn settings(&self) -> Result<Settings, CliError> {
        let mut flags = serde_json::Map::new();
        if let Some(listen) = &self.listen {
            flags.insert("listen".into(), listen.clone().into());
        }
        if let Some(db) = &self.database {
            flags.insert("database_url".into(), db.clone().into());
        }
        Settings::load(
            self.config.as_deref(),
            Serialized::globals(serde_json::Value::Object(flags)),
        )
        .map_err(|e| CliError::Invalid(e.to_string()))
    }
}

pub use crate::logging::init_logging;

pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => {
            let settings = args.settings()?;
            init_logging(&settings.log_format);
            serve(settings)
        }
        Command::Migrate(args) => {
            let settings = args.settings()?;
            init_logging(&settings.log_format);
            let db = crate::db::Db::open(&settings.database_url)
                .map_err(|e| CliError::Failed(e.to_string()))?;
            let applied = db
                .run_migrations()
                .map_err(|e| CliError::Failed(e.to_string()))?;
            println!(
                "{} migration(s) applied to {}",
                applied.len(),
                db.backend.describe()
            );
            Ok(())
        }
        Command::Backup(args) => {
            let settings = args.server.settings()?;
            let bytes =
                crate::backup::backup(&settings.database_url, &args.file).map_err(|e| match e {
                    crate::backup::BackupError::Invalid(m) => CliError::Invalid(m),
                    crate::backup::BackupError::Failed(m) => CliError::Failed(m),
                })?;
            println!(
                "backed up {} to {} ({bytes} bytes)",
                crate::db::Backend::from_url(&settings.database_url)
                    .map(|b| b.describe())
                    .unwrap_or_default(),
                args.file.display()
            );
            Ok(())
        }
        Command::Cron(CronCommand::Next {
            expression,
            tz,
            after,
            count,
        }) => {
            let expr = CronExpr::parse(&expression)
                .map_err(|e| CliError::Invalid(format!("invalid cron expression: {e}")))?;
            let zone =
                parse_time_zone("--tz", &tz).map_err(|e| CliError::Invalid(e.to_string()))?;
            let after = match after {
                Some(text) => DateTime::parse_from_rfc3339(&text)
                    .map_err(|e| {
                        CliError::Invalid(format!(
                            "--after: {text:?} is not an RFC 3339 instant: {e}"
                        ))
                    })?
                    .with_timezone(&Utc),
                None => Utc::now(),
            };
            let mut out = std::io::stdout().lock();
            for instant in crate::routes::next_times(&expr, zone, after, count) {
                let _ = writeln!(
                    out,
                    "{}",
                    instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            Ok(())
        }
        Command::Cron(CronCommand::Explain { expression }) => {
            let expr = CronExpr::parse(&expression)
                .map_err(|e| CliError::Invalid(format!("invalid cron expression: {e}")))?;
            println!("{}", expr.explain());
            Ok(())
        }
        Command::Jobs(command) => crate::jobfile::run(command),
    }
}

fn serve(settings: Settings) -> Result<(), CliError> {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let app = Application::build(settings)
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?;
        announce_generated(&app);
        log::info!("cronhook listening on port {}", app.port());
        app.run_until_stopped()
            .await
            .map_err(|e| CliError::Failed(e.to_string()))
    })
}

/// Secrets generated at first start are shown once, on the terminal, never in the log.
fn announce_generated(app: &Application) {
    let mut err = std::io::stderr().lock();
    if let Some(token) = &app.generated.admin_token {
        let _ = writeln!(err, "\n  Admin API token (shown once, stored hashed): {token}\n  Use it as: Authorization: Bearer <token>\n");
    }
    if let Some(password) = &app.generated.admin_password {
        let _ = writeln!(err, "  Web console login (shown once, stored as an argon2 hash): user `admin`, password {password}\n  Set CRONHOOK_ADMIN_PASSWORD to choose it instead.\n");
    }
    if let Some(secret) = &app.generated.signing_secret {
        let _ = writeln!(err, "  Executor signing secret (shown once; give it to your executors as CRONHOOK_SECRET): {secret}\n");
    }
}
