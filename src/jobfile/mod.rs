//! Jobs as files: `cronhook jobs export`, `cronhook jobs apply -f FILE` and
//! `cronhook jobs import-crontab FILE`.
//!
//! These commands talk to a running server over its REST API (`--url`, `--token`), so
//! they work the same on SQLite and on a PostgreSQL cluster. The file format is a YAML
//! or JSON list of jobs in the API's input shape; see `format`. `plan` decides what
//! apply changes, `crontab` converts classic crontab lines.

pub mod crontab;
pub mod format;
pub mod plan;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use awc::http::Method;
use clap::{Args, Subcommand};
use serde_json::Value;

use self::format::Format;
use self::plan::{label, Action, Entry, FileJob, Prune};
use crate::cli::CliError;
use crate::routes::{JobView, Page};

/// The admin token. Never printed: its `Debug` is redacted, and clap hides the
/// environment value in `--help`.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::str::FromStr for Token {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Token(s.to_string()))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServerConn {
    /// Base URL of the running cronhook server.
    #[arg(long, env = "CRONHOOK_URL", default_value = "http://127.0.0.1:7070")]
    pub url: String,
    /// Admin API token (prefer CRONHOOK_TOKEN: a flag shows in the process list).
    #[arg(long, env = "CRONHOOK_TOKEN", hide_env_values = true)]
    pub token: Option<Token>,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Write the server's jobs as a job file (YAML, or JSON).
    Export {
        #[command(flatten)]
        server: ServerConn,
        /// Write to this file instead of stdout (its extension picks the format).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Only jobs of this group (repeatable).
        #[arg(long)]
        group: Vec<String>,
    },
    /// Make the server's jobs match a job file: create missing jobs, update changed
    /// ones, and with --prune delete the jobs the file does not list.
    Apply {
        #[command(flatten)]
        server: ServerConn,
        /// The job file (`-` reads stdin).
        #[arg(long, short = 'f')]
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Delete server jobs that are not in the file, in the groups the file uses.
        #[arg(long)]
        prune: bool,
        /// Like --prune, in every group.
        #[arg(long)]
        prune_all: bool,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Convert a classic crontab (one target URL per line) into a job file, or apply it.
    ImportCrontab {
        /// The crontab file (`-` reads stdin).
        file: PathBuf,
        #[command(flatten)]
        server: ServerConn,
        /// Write the job file here instead of stdout (its extension picks the format).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Group of the created jobs.
        #[arg(long, default_value = "crontab")]
        group: String,
        /// Time zone of the lines before any CRON_TZ= line.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Apply the converted jobs to the server instead of printing them.
        #[arg(long)]
        apply: bool,
        /// With --apply: print what would change, change nothing.
        #[arg(long, requires = "apply")]
        dry_run: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum JobFileError {
    #[error("{source_name}: {reason}")]
    Parse { source_name: String, reason: String },
    #[error("jobs[{index}]: {reason}")]
    Entry { index: usize, reason: String },
    #[error("cannot render the job file: {0}")]
    Render(String),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("no admin token: pass --token or set CRONHOOK_TOKEN")]
    NoToken,
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{what}: the server answered {status}: {detail}")]
    Server {
        what: String,
        status: u16,
        detail: String,
    },
}

impl From<JobFileError> for CliError {
    fn from(e: JobFileError) -> Self {
        match e {
            JobFileError::Parse { .. }
            | JobFileError::Entry { .. }
            | JobFileError::Usage(_)
            | JobFileError::NoToken => CliError::Invalid(e.to_string()),
            JobFileError::Io { .. } => CliError::Invalid(e.to_string()),
            _ => CliError::Failed(e.to_string()),
        }
    }
}

pub fn run(command: JobsCommand) -> Result<(), CliError> {
    match command {
        JobsCommand::Export {
            server,
            output,
            format,
            group,
        } => {
            let format = Format::pick(format, output.as_deref());
            let views = block_on(&server, |api| async move { api.list_jobs().await })?;
            let mut views: Vec<&JobView> = views
                .iter()
                .filter(|v| group.is_empty() || group.contains(&v.group))
                .collect();
            views.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
            let mut inputs = Vec::with_capacity(views.len());
            for view in views {
                inputs.push(plan::export_input(view).map_err(|e| {
                    CliError::Failed(format!("{}/{}: cannot export: {e}", view.group, view.name))
                })?);
            }
            let jobs: Vec<FileJob> = inputs.iter().map(FileJob::of).collect();
            let text = format::render(&jobs, format)?;
            write_output(output.as_deref(), &text)?;
            if let Some(path) = &output {
                eprintln!("exported {} job(s) to {}", jobs.len(), path.display());
            }
            Ok(())
        }
        JobsCommand::Apply {
            server,
            file,
            format,
            prune,
            prune_all,
            dry_run,
        } => {
            let format = Format::pick(format, Some(&file));
            let text = read_input(&file)?;
            let items = format::parse(&text, format, &file.display().to_string())?;
            let entries = plan::entries(items, crate::time::now_ms())?;
            let prune = match (prune, prune_all) {
                (_, true) => Prune::All,
                (true, false) => Prune::FileGroups,
                _ => Prune::No,
            };
            if prune == Prune::All && entries.is_empty() {
                return Err(CliError::Invalid(format!(
                    "{} lists no jobs: --prune-all would delete every job on the server; refusing",
                    file.display()
                )));
            }
            apply(&server, entries, prune, dry_run)
        }
        JobsCommand::ImportCrontab {
            file,
            server,
            output,
            format,
            group,
            tz,
            apply: apply_now,
            dry_run,
        } => {
            crate::domain::trigger::parse_time_zone("--tz", &tz)
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            if !crontab::valid_name(&group) {
                return Err(CliError::Invalid(format!(
                    "--group: {group:?} is not a valid group (use letters, digits, '-', '_', '.')"
                )));
            }
            let text = read_input(&file)?;
            let conversion = crontab::convert(&text, &group, &tz);
            let mut err = std::io::stderr().lock();
            for failure in &conversion.failures {
                let _ = writeln!(
                    err,
                    "{}:{}: not converted: {}",
                    file.display(),
                    failure.line,
                    failure.reason
                );
            }
            drop(err);
            let converted = conversion.jobs.len();
            let jobs: Vec<FileJob> = conversion.jobs.iter().map(FileJob::of).collect();
            let result = if apply_now {
                let items = jobs
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CliError::Failed(format!("cannot encode the jobs: {e}")))?;
                let entries = plan::entries(items, crate::time::now_ms())?;
                apply(&server, entries, Prune::No, dry_run)
            } else {
                let format = Format::pick(format, output.as_deref());
                let text = format::render(&jobs, format)?;
                write_output(output.as_deref(), &text)
            };
            result?;
            if !conversion.failures.is_empty() {
                return Err(CliError::Invalid(format!(
                    "{} line(s) of {} could not be converted (listed above); the other {} job(s) were {}",
                    conversion.failures.len(),
                    file.display(),
                    converted,
                    if apply_now { "applied" } else { "written" },
                )));
            }
            Ok(())
        }
    }
}

fn read_input(path: &Path) -> Result<String, JobFileError> {
    let io = |e: std::io::Error| JobFileError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(io)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(io)
    }
}

fn write_output(path: Option<&Path>, text: &str) -> Result<(), CliError> {
    match path {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CliError::Failed(format!("{}: cannot write: {e}", path.display()))),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| CliError::Failed(format!("cannot write to stdout: {e}")))
        }
    }
}

/// Runs `work` against the server inside a fresh actix system.
fn block_on<T, F, Fut>(server: &ServerConn, work: F) -> Result<T, JobFileError>
where
    F: FnOnce(Api) -> Fut,
    Fut: std::future::Future<Output = Result<T, JobFileError>>,
{
    let token = server.token.clone().ok_or(JobFileError::NoToken)?;
    let base = server.url.trim_end_matches('/').to_string();
    url::Url::parse(&base)
        .map_err(|e| JobFileError::Usage(format!("--url: {base:?} is not a valid URL: {e}")))?;
    actix_rt::System::new().block_on(async move {
        let api = Api {
            client: awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish(),
            authorization: format!("Bearer {}", token.0),
            base,
        };
        work(api).await
    })
}

struct Api {
    client: awc::Client,
    authorization: String,
    base: String,
}

/// The human part of an error answer: the problem's `detail`, else the body.
fn detail(body: &Value) -> String {
    match body.get("detail").and_then(Value::as_str) {
        Some(d) => d.to_string(),
        None => match body {
            Value::Null => "(no detail)".into(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), JobFileError> {
        let url = format!("{}/api/v1{path}", self.base);
        let request = self
            .client
            .request(method, &url)
            .insert_header(("Authorization", self.authorization.as_str()));
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(|e| JobFileError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let bytes = response.body().limit(64 * 1024 * 1024).await.map_err(|e| {
            JobFileError::Unreachable {
                url: self.base.clone(),
                reason: format!("answer to {path} unreadable: {e}"),
            }
        })?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    async fn list_jobs(&self) -> Result<Vec<JobView>, JobFileError> {
        let mut jobs = Vec::new();
        loop {
            let path = format!("/jobs?limit=500&offset={}", jobs.len());
            let (status, body) = self.call(Method::GET, &path, None).await?;
            if status != 200 {
                return Err(JobFileError::Server {
                    what: "listing jobs".into(),
                    status,
                    detail: detail(&body),
                });
            }
            let page: Page<JobView> =
                serde_json::from_value(body).map_err(|e| JobFileError::Server {
                    what: "listing jobs".into(),
                    status,
                    detail: format!("unexpected answer: {e}"),
                })?;
            let done =
                page.items.is_empty() || jobs.len() + page.items.len() >= page.total as usize;
            jobs.extend(page.items);
            if done {
                return Ok(jobs);
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    created: usize,
    updated: usize,
    unchanged: usize,
    deleted: usize,
    /// Jobs the file got wrong (local check or the server's 400).
    invalid: Vec<String>,
    /// Everything else that failed (409 on prune, server errors).
    failed: Vec<String>,
}

/// One report line: the word padded so the keys line up.
fn report(word: &str, key: &plan::Key, extra: &str) {
    println!("{word:<10} {}{extra}", label(key));
}

fn apply(
    server: &ServerConn,
    entries: Vec<Entry>,
    prune: Prune,
    dry_run: bool,
) -> Result<(), CliError> {
    let tally = block_on(server, |api| async move {
        let views = api.list_jobs().await?;
        let steps = plan::plan(&entries, &views, prune, crate::time::now_ms());
        let mut tally = Tally::default();
        for step in steps {
            let raw = step.entry.map(|i| &entries[i].raw);
            run_step(&api, &step, raw, dry_run, &mut tally).await?;
        }
        Ok(tally)
    })?;
    let failures = tally.invalid.len() + tally.failed.len();
    println!(
        "{}{} created, {} updated, {} unchanged, {} deleted, {} failed",
        if dry_run {
            "dry run, nothing changed: would have "
        } else {
            ""
        },
        tally.created,
        tally.updated,
        tally.unchanged,
        tally.deleted,
        failures
    );
    if failures == 0 {
        return Ok(());
    }
    let all: Vec<String> = tally.invalid.iter().chain(&tally.failed).cloned().collect();
    let message = format!(
        "{failures} job(s) not applied (the others were): {}",
        all.join("; ")
    );
    if tally.failed.is_empty() {
        Err(CliError::Invalid(message))
    } else {
        Err(CliError::Failed(message))
    }
}

async fn run_step(
    api: &Api,
    step: &plan::Step,
    raw: Option<&Value>,
    dry_run: bool,
    tally: &mut Tally,
) -> Result<(), JobFileError> {
    let key = &step.key;
    let name = label(key);
    // Records a refusal: 400 means the file's job is wrong, anything else is a failure.
    let refused = |status: u16, what: &str, body: &Value, tally: &mut Tally| {
        let line = format!("{name}: {what}: {} (HTTP {status})", detail(body));
        report(
            "failed",
            key,
            &format!(": {what}: {} (HTTP {status})", detail(body)),
        );
        if status == 400 || status == 422 {
            tally.invalid.push(line);
        } else {
            tally.failed.push(line);
        }
    };
    match &step.action {
        Action::Invalid(reason) => {
            report("invalid", key, &format!(": {reason}"));
            tally.invalid.push(format!("{name}: {reason}"));
        }
        Action::Unchanged => {
            report("unchanged", key, "");
            tally.unchanged += 1;
        }
        Action::Create => {
            if dry_run {
                report("create", key, " (dry run)");
                tally.created += 1;
                return Ok(());
            }
            let body = raw.cloned().unwrap_or(Value::Null);
            let (status, answer) = api.call(Method::POST, "/jobs", Some(&body)).await?;
            if status == 201 {
                report("created", key, "");
                tally.created += 1;
            } else {
                refused(status, "not created", &answer, tally);
            }
        }
        Action::Update { id, fields, pause } => {
            let mut what: Vec<&str> = fields.clone();
            match pause {
                Some(true) => what.push("paused"),
                Some(false) => what.push("resumed"),
                None => {}
            }
            let what = format!(" ({})", what.join(", "));
            if dry_run {
                report("update", key, &format!("{what} (dry run)"));
                tally.updated += 1;
                return Ok(());
            }
            if !fields.is_empty() {
                let body = raw.cloned().unwrap_or(Value::Null);
                let (status, answer) = api
                    .call(Method::PUT, &format!("/jobs/{id}"), Some(&body))
                    .await?;
                if status != 200 {
                    refused(status, "not updated", &answer, tally);
                    return Ok(());
                }
            }
            if let Some(pause) = pause {
                let verb = if *pause { "pause" } else { "resume" };
                let (status, answer) = api
                    .call(Method::POST, &format!("/jobs/{id}/{verb}"), None)
                    .await?;
                if status != 200 {
                    refused(status, &format!("not {verb}d"), &answer, tally);
                    return Ok(());
                }
            }
            report("updated", key, &what);
            tally.updated += 1;
        }
        Action::Delete { id } => {
            if dry_run {
                report("delete", key, " (dry run)");
                tally.deleted += 1;
                return Ok(());
            }
            let (status, answer) = api
                .call(Method::DELETE, &format!("/jobs/{id}"), None)
                .await?;
            match status {
                204 | 200 => {
                    report("deleted", key, "");
                    tally.deleted += 1;
                }
                404 => report("deleted", key, " (already gone)"),
                _ => refused(status, "not deleted", &answer, tally),
            }
        }
    }
    Ok(())
}
