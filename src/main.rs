use clap::Parser;

fn main() {
    let cli = cronhook::cli::Cli::parse();
    if let Err(e) = cronhook::cli::run(cli) {
        eprintln!("cronhook: {e}");
        std::process::exit(e.exit_code());
    }
}
