//! The `escalade` command's subcommands, one module each along their seams: the daemon
//! (`run`), the rule author's tools (`author`: check, test, explain), the commands on a store
//! (`store`: tokens, the outbox), backup and restore (`backup`), the copy of an SQLite store
//! into PostgreSQL (`copy`) and the synthetic city (`generate`).
//!
//! Exit codes: 0 success, 1 rule errors or failing rule tests, 2 usage errors (bad flags,
//! unreadable or malformed input files).

use std::io::IsTerminal;
use std::path::Path;

use escalade_rules::{Diagnostics, RuleSet};
use miette::{GraphicalReportHandler, GraphicalTheme};

pub mod author;
pub mod backup;
pub mod copy;
pub mod person;
pub mod replay;
pub mod run;
pub mod store;

/// Why a command failed: its exit code and what it says.
#[derive(Debug)]
pub enum Failure {
    /// Exit code 1: the rules or their tests are wrong (already printed).
    Rules,
    /// Exit code 2: the command was used wrongly.
    Usage(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Usage(s)
    }
}

/// A tokio runtime for a command that needs one.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))
}

/// Loads a rule directory, printing its diagnostics.
pub fn load(dir: &Path) -> Result<RuleSet, Failure> {
    if !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    RuleSet::load(dir).map_err(|d| {
        print_diagnostics(&d);
        eprintln!("{}: {} error(s)", dir.display(), d.len());
        Failure::Rules
    })
}

/// Each diagnostic as miette draws it, then in its one-line form (greppable, and what editors
/// jump to).
pub fn print_diagnostics(d: &Diagnostics) {
    let theme = if std::io::stderr().is_terminal() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    for diag in d.iter() {
        let mut out = String::new();
        match handler.render_report(&mut out, &escalade_rules::diag::Report(diag)) {
            Ok(()) => eprint!("{out}"),
            Err(_) => eprintln!("{diag}"),
        }
        eprintln!("  --> {diag}\n");
    }
}
