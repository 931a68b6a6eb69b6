use std::io::Write;

use clap::Parser;

/// jemalloc for Rust and, through its unprefixed `malloc`, for SQLite and libpq too:
/// glibc's allocator was an eighth of the SQLite writer's time at 16,000 fires/s
/// (fragmented bins, consolidation on large frees); see docs/performance.md, point 24.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = cronhook::cli::Cli::parse();
    let code = match cronhook::cli::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cronhook: {e}");
            e.exit_code()
        }
    };
    exit_without_atexit_handlers(code);
}

/// Ends the process once everything cronhook owns is finished and flushed, without
/// running C `atexit` handlers. The connection pool's worker threads (r2d2) may still
/// be opening a PostgreSQL connection when `main` returns; libpq then creates an
/// OpenSSL context while OpenSSL's own exit handler is tearing OpenSSL down, which
/// crashed `cronhook migrate` with SIGSEGV about one run in three. Nothing cronhook
/// needs is left to those handlers: the database work is committed and logs go
/// straight to stderr.
fn exit_without_atexit_handlers(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; stdout and stderr were flushed above.
    unsafe { libc::_exit(code) }
}
