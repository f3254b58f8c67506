//! `escalade backup` (beside the running daemon) and `escalade restore` (into a stopped or new
//! store); the work is `store::backup`'s.

use std::path::{Path, PathBuf};

use clap::Args;

use super::store::config;
use super::{Failure, runtime};
use crate::store::backup::{self, Summary};

#[derive(Args)]
pub struct BackupArgs {
    /// The file to write: one SQLite database holding the store and its photos.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// The daemon's configuration, for the location of its store.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup to restore (written by `escalade backup`).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// Only check the backup (integrity, photos against their hashes) and say what it holds.
    #[arg(long, conflicts_with = "force")]
    pub check: bool,
    /// Replace a store that is not empty (its database; its photos are kept beside the
    /// backup's).
    #[arg(long)]
    pub force: bool,
    /// The daemon's configuration: where the store is restored to.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `123 issues, 456 events, 3 tokens, 7 photos (81920 bytes)`.
fn holds(s: &Summary) -> String {
    format!(
        "{} issues, {} events, {} tokens, {} photos ({} bytes)",
        s.issues, s.events, s.tokens, s.photos, s.photo_bytes
    )
}

fn taken(s: &Summary) -> String {
    s.taken_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `escalade backup --to FILE`.
pub fn backup(a: BackupArgs) -> Result<(), Failure> {
    let cfg = config(a.config.as_deref())?;
    let db = cfg.database_path("escalade backup")?;
    let s = runtime()?
        .block_on(backup::backup(&db, &cfg.state_dir, &a.to, a.force))
        .map_err(Failure::Usage)?;
    println!(
        "backup {}: {}, as of {}; {} bytes; integrity and photo hashes checked",
        a.to.display(),
        holds(&s),
        taken(&s),
        s.file_bytes
    );
    Ok(())
}

/// Why the store at `db` (photos under `state_dir`) is not empty, if it is not.
fn not_empty(db: &Path, state_dir: &Path) -> Option<String> {
    for suffix in ["", "-wal"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            return Some(format!("{} exists", p.display()));
        }
    }
    let photos = state_dir.join("photos");
    let any = std::fs::read_dir(&photos).ok()?.flatten().any(|e| {
        e.path().is_file() || std::fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_some())
    });
    any.then(|| format!("{} holds photos", photos.display()))
}

/// `escalade restore --from FILE`: the backup is checked first (nothing is written for a bad
/// one), then the store's lock is taken and its emptiness checked, then it is restored.
pub fn restore(a: RestoreArgs) -> Result<(), Failure> {
    let rt = runtime()?;
    let checked = rt
        .block_on(backup::verify(&a.from))
        .map_err(Failure::Usage)?;
    if a.check {
        println!(
            "backup {}: {}, as of {}; integrity and photo hashes checked",
            a.from.display(),
            holds(&checked),
            taken(&checked)
        );
        return Ok(());
    }
    let cfg = config(a.config.as_deref())?;
    let db = cfg.database_path("escalade restore")?;
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    // No daemon may run on the store while it is replaced: its lock is held throughout.
    let _owned = super::run::own_store(&db)?;
    if !a.force
        && let Some(why) = not_empty(&db, &cfg.state_dir)
    {
        return Err(Failure::Usage(format!(
            "the store is not empty ({why}): restore into a new state_dir or database, or give \
             --force to replace it"
        )));
    }
    let s = rt
        .block_on(backup::restore(&a.from, checked, &db, &cfg.state_dir))
        .map_err(Failure::Usage)?;
    println!(
        "restored {} into {} (photos in {}): {}, as of {}",
        a.from.display(),
        db.display(),
        cfg.state_dir.join("photos").display(),
        holds(&s),
        taken(&s)
    );
    Ok(())
}
