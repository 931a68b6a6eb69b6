//! The `cronhook` binary as a user runs it: cron tools, migrate, and `serve` with
//! its first-start secrets, settings layering and SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn cronhook() -> Command {
    cronhook_command()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = cronhook().args(args).output().expect("cronhook runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cron_next_prints_rfc3339_instants() {
    let (code, out, err) = run(&[
        "cron",
        "next",
        "0 15 10 ? * 6L",
        "--tz",
        "Europe/London",
        "--after",
        "2025-01-01T00:00:00Z",
        "--count",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    // Last Friday of the month at 10:15 London time (BST from the end of March).
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "2025-01-31T10:15:00Z",
            "2025-02-28T10:15:00Z",
            "2025-03-28T10:15:00Z"
        ]
    );
}

#[test]
fn cron_next_of_an_expression_that_never_fires_again_prints_nothing() {
    let (code, out, err) = run(&[
        "cron",
        "next",
        "0 0 0 1 1 ? 2020",
        "--after",
        "2024-01-01T00:00:00Z",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
}

#[test]
fn invalid_cron_input_exits_2_with_the_reason() {
    let (code, out, err) = run(&["cron", "next", "0 0 12 * * MON"]);
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert!(err.contains("invalid cron expression"), "{err}");
    assert!(
        err.contains('?'),
        "explains the day-of-month/day-of-week rule: {err}"
    );
    let (code, _, err) = run(&["cron", "next", "0 0 12 * * ?", "--tz", "Atlantis/Capital"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--tz") && err.contains("unknown time zone"),
        "{err}"
    );
    let (code, _, err) = run(&["cron", "next", "0 0 12 * * ?", "--after", "yesterday"]);
    assert_eq!(code, 2);
    assert!(err.contains("--after"), "{err}");
    let (code, _, err) = run(&["cron", "explain", "0 0 12 32 * ?"]);
    assert_eq!(code, 2);
    assert!(err.contains("day-of-month"), "names the field: {err}");
}

#[test]
fn cron_explain_describes_in_plain_english() {
    let (code, out, err) = run(&["cron", "explain", "0 0/15 9-17 ? * MON-FRI"]);
    assert_eq!(code, 0, "{err}");
    let text = out.to_lowercase();
    assert!(text.contains("15"), "{out}");
    assert!(text.contains("monday") && text.contains("friday"), "{out}");
}

/// Migrations shipped for a backend (one folder each).
fn migration_count(backend: &str) -> usize {
    let dir = format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count()
}

#[test]
fn migrate_creates_the_schema_and_is_idempotent() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.path().join("m.db").display());
    let (code, out, err) = run(&["migrate", "--database", &db]);
    assert_eq!(code, 0, "{err}");
    let expected = format!("{} migration(s) applied", migration_count("sqlite"));
    assert!(out.starts_with(&expected), "{out}");
    let (code, out, _) = run(&["migrate", "--database", &db]);
    assert_eq!(code, 0);
    assert!(out.starts_with("0 migration(s) applied"), "{out}");
    let (code, _, err) = run(&["migrate", "--database", "mysql://nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("unsupported scheme"), "{err}");
}

#[test]
fn postgres_migrations_apply_cleanly_to_a_real_server() {
    let Some(pg) = TempPostgres::create("postgres_migrations_apply_cleanly_to_a_real_server")
    else {
        return;
    };
    let (code, out, err) = run(&["migrate", "--database", &pg.url]);
    assert_eq!(code, 0, "{err}");
    let expected = format!("{} migration(s) applied", migration_count("postgres"));
    assert!(out.starts_with(&expected), "{out}");
    let (code, out, _) = run(&["migrate", "--database", &pg.url]);
    assert_eq!(code, 0);
    assert!(out.starts_with("0 migration(s) applied"), "{out}");
}

#[test]
fn unreachable_postgres_is_reported_with_host_and_reason() {
    let (code, _, err) = run(&[
        "migrate",
        "--database",
        "postgres://nobody@127.0.0.1:1/none",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(
        err.to_lowercase().contains("refused") || err.contains("connect"),
        "{err}"
    );
}

#[test]
fn bad_settings_are_refused_with_a_message() {
    let dir = temp_dir();
    let config = dir.path().join("cronhook.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nscheduler = { batch_size = 0 }\n",
    )
    .unwrap();
    let (code, _, err) = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("batch_size"), "{err}");
    std::fs::write(&config, "lisen = \"127.0.0.1:0\"\n").unwrap();
    let (code, _, err) = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("lisen"), "names the unknown key: {err}");
    let (code, _, err) = run(&["serve", "--config", "/nonexistent/cronhook.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");
}

/// A `cronhook serve` child whose stderr is collected line by line.
struct Served {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    fn start(cmd: &mut Command) -> Served {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .spawn()
            .expect("serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Served {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stderr until a line contains `needle`; returns that line.
    fn wait_line(&mut self, needle: &str) -> String {
        let end = Instant::now() + PATIENCE;
        while Instant::now() < end {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!("no line with {needle:?} in:\n{}", self.seen.join("\n"));
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> (i32, Vec<String>) {
        let seen = self.stop_child();
        (seen.0, seen.1)
    }

    fn stop_child(&mut self) -> (i32, Vec<String>) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                    self.seen.push(line);
                }
                return (status.code().unwrap_or(-1), std::mem::take(&mut self.seen));
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("serve did not stop on SIGTERM:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A failing test must not leave a server behind.
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn port_of(line: &str) -> u16 {
    line.rsplit(' ')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

#[actix_web::test]
async fn first_start_prints_a_generated_token_once_and_sigterm_stops_cleanly() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.path().join("first.db").display());
    let mut served =
        Served::start(cronhook().args(["serve", "--listen", "127.0.0.1:0", "--database", &db]));
    let token_line = served.wait_line("Admin API token");
    let token = token_line.rsplit(' ').next().unwrap().trim().to_string();
    assert_eq!(token.len(), 64, "{token_line}");
    let password_line = served.wait_line("Web console login");
    let password = password_line.rsplit(' ').next().unwrap().trim().to_string();
    assert_eq!(password.len(), 20, "{password_line}");
    let port = port_of(&served.wait_line("listening on port"));
    let base = format!("http://127.0.0.1:{port}");
    let (status, _) = call(
        "GET",
        &format!("{base}/api/v1/jobs"),
        Some(&format!("Bearer {token}")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (code, lines) = served.terminate();
    assert_eq!(code, 0, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("stopped")), "{lines:?}");
    // The token is stored hashed, never in the log lines.
    let logged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(&token) && !l.contains("Admin API token"))
        .collect();
    assert!(logged.is_empty(), "token leaked: {logged:?}");
    let logged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(&password) && !l.contains("Web console login"))
        .collect();
    assert!(logged.is_empty(), "console password leaked: {logged:?}");

    // Second start: no new token, the old one still works.
    let mut served =
        Served::start(cronhook().args(["serve", "--listen", "127.0.0.1:0", "--database", &db]));
    let port = port_of(&served.wait_line("listening on port"));
    let (status, _) = call(
        "GET",
        &format!("http://127.0.0.1:{port}/api/v1/jobs"),
        Some(&format!("Bearer {token}")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (code, lines) = served.terminate();
    assert_eq!(code, 0);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Admin API token") || l.contains("Web console login")),
        "printed once only"
    );
}

#[actix_web::test]
async fn flags_override_environment_which_overrides_the_file() {
    let dir = temp_dir();
    let config = dir.path().join("cronhook.toml");
    let file_db = format!("sqlite://{}", dir.path().join("file.db").display());
    let env_db = format!("sqlite://{}", dir.path().join("env.db").display());
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\ndatabase_url = \"{file_db}\"\nadmin_token = \"file-token-0123456789\"\n"),
    )
    .unwrap();
    // Environment overrides the file's database and token.
    let mut served = Served::start(
        cronhook()
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("CRONHOOK_DATABASE_URL", &env_db)
            .env("CRONHOOK_ADMIN_TOKEN", "env-token-0123456789"),
    );
    let port = port_of(&served.wait_line("listening on port"));
    let jobs = format!("http://127.0.0.1:{port}/api/v1/jobs");
    assert_eq!(
        call("GET", &jobs, Some("Bearer env-token-0123456789"), None)
            .await
            .0,
        200
    );
    served.terminate();
    assert!(dir.path().join("env.db").exists());
    assert!(!dir.path().join("file.db").exists());

    // A flag overrides the environment.
    let flag_db = format!("sqlite://{}", dir.path().join("flag.db").display());
    let served = Served::start(
        cronhook()
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--database",
                &flag_db,
            ])
            .env("CRONHOOK_DATABASE_URL", &env_db),
    );
    let mut served = served;
    served.wait_line("listening on port");
    served.terminate();
    assert!(dir.path().join("flag.db").exists());
}
