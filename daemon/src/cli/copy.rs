//! `escalade store copy`: moves an SQLite store, with its photos, into an empty PostgreSQL
//! database, once, while no daemon runs on the SQLite store; the work is `store::copy`'s.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::store::config;
use super::{Failure, runtime};
use crate::store::Database;

#[derive(Subcommand)]
pub enum StoreAction {
    /// Copy an SQLite store and its photos into an empty PostgreSQL database, in one
    /// transaction; no daemon may run on the SQLite store meanwhile.
    Copy(CopyArgs),
}

#[derive(Args)]
pub struct CopyArgs {
    /// The SQLite store to copy (`sqlite:PATH` or PATH); default the configuration's.
    #[arg(long, value_name = "sqlite:PATH")]
    pub from: Option<String>,
    /// The PostgreSQL database to copy into (`postgres://user@host/db`); it is migrated, and
    /// must hold no rows.
    #[arg(long, value_name = "postgres://URL")]
    pub to: String,
    /// The directory of the store's photos; default the configuration's `state_dir/photos`.
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,
}

/// `escalade store copy`.
pub fn store(action: StoreAction, config_file: Option<&Path>) -> Result<(), Failure> {
    match action {
        StoreAction::Copy(a) => copy(a, config_file),
    }
}

fn copy(a: CopyArgs, config_file: Option<&Path>) -> Result<(), Failure> {
    let Database::Postgres(to) = Database::parse(&a.to) else {
        return Err(Failure::Usage(format!(
            "--to `{}` is not a PostgreSQL URL (postgres://user@host/db)",
            a.to
        )));
    };
    let cfg = config(config_file)?;
    let from = match &a.from {
        Some(f) => match Database::parse(f) {
            Database::Sqlite(p) => p,
            Database::Postgres(_) => {
                return Err(Failure::Usage(
                    "--from names a PostgreSQL database: the copy reads an SQLite store \
                     (sqlite:PATH)"
                        .into(),
                ));
            }
        },
        None => cfg.database_path("escalade store copy")?,
    };
    let photos = a.photos.unwrap_or_else(|| cfg.state_dir.join("photos"));
    // Checked before the lock, whose file would otherwise be made beside a store that is not
    // there.
    if !from.is_file() {
        return Err(Failure::Usage(format!(
            "no SQLite store at {}",
            from.display()
        )));
    }
    // No daemon may write the store while it is copied: its lock is held throughout.
    let _owned = super::run::own_store(&from)?;
    let s = runtime()?
        .block_on(crate::store::copy::copy(&from, Some(&photos), &to))
        .map_err(Failure::Usage)?;
    for (table, n) in &s.tables {
        println!("{table}: {n}");
    }
    println!("photos: {} ({} bytes)", s.photos, s.photo_bytes);
    let rows: i64 = s.tables.iter().map(|(_, n)| n).sum();
    println!(
        "copied {} into {}: {rows} rows in {} tables, {} photos; every count checked",
        from.display(),
        Database::Postgres(to).display(),
        s.tables.len(),
        s.photos
    );
    Ok(())
}
