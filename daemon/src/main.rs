//! The `escalade` command: the daemon (`run`), its tokens and outbox, and the rule tools. Each
//! subcommand lives in `escalade::cli`; this file only parses the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use escalade::cli::{self, Failure, author, store};

#[derive(Parser)]
#[command(
    name = "escalade",
    version,
    about = "Routes reported problems to departments, holds them to deadlines and escalates them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the HTTP API, the engine and the scheduler.
    Run(cli::run::RunArgs),
    /// Create, list or revoke API tokens (in the daemon's store).
    Token {
        #[command(subcommand)]
        action: store::TokenAction,
        /// The daemon's configuration, for the location of its store.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// People's access to the web console: invite one to set a password.
    Person {
        #[command(subcommand)]
        action: cli::person::PersonAction,
        /// The daemon's configuration, for the location of its store and the console's address.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// List the outbox's messages or retry a dead letter (in the daemon's store).
    Outbox {
        #[command(subcommand)]
        action: store::OutboxAction,
        /// The daemon's configuration, for the location of its store.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// The rule versions that went live, their files, and how shadow rules differed.
    Rules {
        #[command(subcommand)]
        action: store::RulesAction,
        /// The daemon's configuration, for the location of its store.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Commands on a store as a whole: copy an SQLite store into PostgreSQL.
    Store {
        #[command(subcommand)]
        action: cli::copy::StoreAction,
        /// The daemon's configuration, for the location of its store and photos.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Write a backup of the store and its photos to one file, while the daemon runs.
    Backup(cli::backup::BackupArgs),
    /// Restore a backup into a store that is empty (or, with --force, replace it); no daemon
    /// may run on it. With --check, only check the backup.
    Restore(cli::backup::RestoreArgs),
    /// Validate a rule directory and summarise it.
    Check(author::CheckArgs),
    /// Run the rule tests in DIR/tests/*.yaml.
    Test(author::TestArgs),
    /// Show the decision for a new issue, its trace and the escalations projected forward.
    Explain(author::ExplainArgs),
    /// Write a store holding a plausible past of generated issues, for replay's tests and
    /// benchmarks.
    GenerateHistory(cli::replay::GenerateHistoryArgs),
    /// Write a synthetic organisation of the given size, for benchmarks.
    GenerateCity(author::GenerateArgs),
    /// Replay past issues of the store through candidate rules and show what differs.
    Replay(cli::replay::ReplayArgs),
}

/// A command whose reader goes away (`escalade check DIR | head -1`) ends as command-line tools
/// do, by SIGPIPE, quietly, rather than panic on the failed write. The daemon keeps the Rust
/// runtime's default of ignoring SIGPIPE: a client hanging up is an error on its socket, never the
/// end of the process.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: called first thing in `main`, before any thread exists; `signal` with `SIG_DFL`
    // only restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        end_quietly_on_a_closed_pipe();
    }
    let result = match cli.command {
        Command::Run(a) => cli::run::run(a),
        Command::Token { action, config } => store::token(action, config.as_deref()),
        Command::Person { action, config } => cli::person::person(action, config.as_deref()),
        Command::Outbox { action, config } => store::outbox(action, config.as_deref()),
        Command::Rules { action, config } => store::rules(action, config.as_deref()),
        Command::Store { action, config } => cli::copy::store(action, config.as_deref()),
        Command::Backup(a) => cli::backup::backup(a),
        Command::Restore(a) => cli::backup::restore(a),
        Command::Check(a) => author::check(a),
        Command::Test(a) => author::test(a),
        Command::Explain(a) => author::explain(a),
        Command::GenerateCity(a) => author::generate_city(a),
        Command::GenerateHistory(a) => cli::replay::generate_history(a),
        Command::Replay(a) => cli::replay::replay(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rules) => ExitCode::from(1),
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}
