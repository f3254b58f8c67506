//! Online backup and restore of an SQLite store with its photos.
//!
//! A backup is one SQLite file. `VACUUM INTO` writes it from a connection of its own while the
//! daemon runs: one read transaction, so the copy is the database as of one commit, whatever is
//! written meanwhile. The photos the copy's issues and events name are then read from
//! `<state_dir>/photos`, checked against their names (the SHA-256 of their bytes) and stored in
//! the copy as the table `backup_photos (hash, bytes)`. Photos are content-addressed, a photo
//! is on disk before the issue naming it commits, and the daemon's sweep removes only photos no
//! committed issue names: those a snapshot names are on disk while it is read, and photos
//! written after it are simply not needed. Then
//! `PRAGMA integrity_check` and every photo's hash are checked on the copy, which is renamed into
//! place only if all is well.
//!
//! A restore checks all of that first (`verify`), then writes the photos (each atomically, as
//! the daemon writes them) and last the database: a copy without the backup's own tables,
//! migrated to this version's schema, renamed over the target. Until that rename the target
//! store is as it was; after it, it is the backup's, photos included.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};

use super::sqlite::PHOTO_NAMES;
use crate::photos::{PhotoStore, is_hash, name_of};

/// The version of the backup's layout (`backup_meta.format`).
const FORMAT: &str = "1";

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub issues: i64,
    pub events: i64,
    pub tokens: i64,
    pub photos: i64,
    /// The photos' bytes together.
    pub photo_bytes: i64,
    /// The size of the backup file.
    pub file_bytes: u64,
    /// When the snapshot was taken.
    pub taken_at: DateTime<Utc>,
    /// The last migration the store had.
    pub schema: i64,
}

/// What SQLite said, without sqlx's wrapping (`database disk image is malformed`).
fn said(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        e => e.to_string(),
    }
}

fn options(path: &Path) -> Result<SqliteConnectOptions, String> {
    Ok(SqliteConnectOptions::from_str("sqlite://")
        .map_err(|e| e.to_string())?
        .filename(path)
        .busy_timeout(Duration::from_secs(10)))
}

async fn connect(opts: SqliteConnectOptions, path: &Path) -> Result<SqliteConnection, String> {
    SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A temporary file beside `target`, removed if it is left from an earlier attempt. Its path is
/// UTF-8: SQLite is given it as text (`VACUUM INTO`).
fn temp_beside(target: &Path, what: &str) -> Result<PathBuf, String> {
    if target.to_str().is_none() {
        return Err(format!(
            "{} is not valid UTF-8: name a path in UTF-8",
            target.display()
        ));
    }
    let name = target
        .file_name()
        .ok_or_else(|| format!("{} names no file", target.display()))?
        .to_string_lossy();
    let temp = target.with_file_name(format!(".{name}.{what}-{}", std::process::id()));
    remove_db_files(&temp)?;
    Ok(temp)
}

/// Removes an SQLite file with its `-wal`, `-shm` and `-journal`, those that exist.
fn remove_db_files(db: &Path) -> Result<(), String> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", p.display())),
        }
    }
    Ok(())
}

/// Makes `file`'s bytes, then its name in `dir`, durable.
fn sync(file: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot sync {}: {e}", file.display());
    fs::File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io)
}

/// Writes a backup of the store `db` and the photos under `state_dir` to `to`: refused if `to`
/// exists, unless `overwrite`. Runs beside the daemon.
pub async fn backup(
    db: &Path,
    state_dir: &Path,
    to: &Path,
    overwrite: bool,
) -> Result<Summary, String> {
    if !db.is_file() {
        return Err(format!("no store at {}", db.display()));
    }
    if to.exists() && !overwrite {
        return Err(format!(
            "{} exists: name a new file, or give --force to replace it",
            to.display()
        ));
    }
    if to.is_dir() {
        return Err(format!("{} is a directory, not a file", to.display()));
    }
    match to.parent() {
        Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => {
            return Err(format!(
                "cannot write {}: {} is not a directory",
                to.display(),
                d.display()
            ));
        }
        _ => {}
    }
    let temp = temp_beside(to, "partial")?;
    let r = write_backup(db, state_dir, &temp).await;
    match r {
        Ok(()) => {}
        Err(e) => {
            let _ = remove_db_files(&temp);
            return Err(e);
        }
    }
    // The copy is checked as a restore will check it, before it takes the name.
    let summary = match verify(&temp).await {
        Ok(s) => s,
        Err(e) => {
            let _ = remove_db_files(&temp);
            return Err(format!("the copy failed its check: {e}"));
        }
    };
    sync(&temp)?;
    fs::rename(&temp, to).map_err(|e| {
        let _ = remove_db_files(&temp);
        format!("cannot rename {} to {}: {e}", temp.display(), to.display())
    })?;
    sync(to)?;
    Ok(summary)
}

async fn write_backup(db: &Path, state_dir: &Path, temp: &Path) -> Result<(), String> {
    let taken_at = Utc::now();
    {
        let mut src = connect(options(db)?.read_only(true), db).await?;
        // One statement, one read transaction: the database as of one commit.
        sqlx::query("VACUUM INTO ?")
            .bind(temp.to_str().expect("a UTF-8 path (temp_beside)"))
            .execute(&mut src)
            .await
            .map_err(|e| format!("{}: cannot copy into {}: {e}", db.display(), temp.display()))?;
        src.close().await.ok();
    }
    let mut copy = connect(
        options(temp)?
            .journal_mode(SqliteJournalMode::Delete)
            .synchronous(SqliteSynchronous::Full),
        temp,
    )
    .await?;
    let err = |e: sqlx::Error| format!("{}: {e}", temp.display());
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('issues', 'events', '_sqlx_migrations')",
    )
    .fetch_one(&mut copy)
    .await
    .map_err(err)?;
    if tables < 3 {
        return Err(format!(
            "{} is not an escalade store (it has no issues, events and migrations)",
            db.display()
        ));
    }
    let names: Vec<String> = sqlx::query_scalar(PHOTO_NAMES)
        .fetch_all(&mut copy)
        .await
        .map_err(err)?;
    let names: Vec<&String> = names.iter().filter(|n| is_hash(n)).collect();
    // As a reader: the daemon's uploads in flight are its own.
    let photos = PhotoStore::reader(state_dir);
    let mut tx = copy.begin().await.map_err(err)?;
    sqlx::query("CREATE TABLE backup_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    sqlx::query("CREATE TABLE backup_photos (hash TEXT PRIMARY KEY, bytes BLOB NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    for name in names {
        let path = photos.path(name).expect("a photo name");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "the store names photo {name}, which is not in {}: the photo store is \
                     incomplete",
                    photos.root().display()
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let actual = name_of(&bytes);
        if actual != *name {
            return Err(format!(
                "photo {} is damaged: its bytes hash to {actual}",
                path.display()
            ));
        }
        sqlx::query("INSERT INTO backup_photos (hash, bytes) VALUES (?, ?)")
            .bind(name)
            .bind(bytes)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    for (k, v) in [
        ("format", FORMAT.to_string()),
        (
            "taken_at",
            taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
    ] {
        sqlx::query("INSERT INTO backup_meta (key, value) VALUES (?, ?)")
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    copy.close().await.map_err(err)?;
    Ok(())
}

/// Checks a backup file: an SQLite database that passes `PRAGMA integrity_check`, written by
/// `backup` (a known format), holding every photo its issues and events name, each photo's
/// bytes hashing to its name. Returns what it holds.
pub async fn verify(file: &Path) -> Result<Summary, String> {
    let meta = fs::metadata(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", file.display()));
    }
    let not_backup = |why: String| format!("{} is not a usable backup: {why}", file.display());
    let mut db = connect(options(file)?.read_only(true), file).await?;
    let checked: Result<Vec<String>, _> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut db)
        .await;
    match checked {
        Ok(rows) if rows == ["ok"] => {}
        Ok(rows) => {
            return Err(not_backup(format!(
                "its integrity check failed: {}",
                rows.into_iter().take(5).collect::<Vec<_>>().join("; ")
            )));
        }
        Err(e) => return Err(not_backup(said(&e))),
    }
    let format: Option<String> =
        sqlx::query_scalar("SELECT value FROM backup_meta WHERE key = 'format'")
            .fetch_optional(&mut db)
            .await
            .map_err(|e| not_backup(format!("it was not written by `escalade backup` ({e})")))?;
    match format.as_deref() {
        Some(FORMAT) => {}
        other => {
            return Err(not_backup(format!(
                "its format is {}, this escalade reads {FORMAT}",
                other.unwrap_or("missing")
            )));
        }
    }
    let taken_at: String =
        sqlx::query_scalar("SELECT value FROM backup_meta WHERE key = 'taken_at'")
            .fetch_one(&mut db)
            .await
            .map_err(|e| not_backup(e.to_string()))?;
    let taken_at = DateTime::parse_from_rfc3339(&taken_at)
        .map_err(|e| not_backup(format!("its time `{taken_at}`: {e}")))?
        .with_timezone(&Utc);
    let mut n = [0i64; 3];
    for (i, t) in ["issues", "events", "api_tokens"].into_iter().enumerate() {
        let q = format!("SELECT COUNT(*) FROM {t}");
        n[i] = sqlx::query_scalar(&q)
            .fetch_one(&mut db)
            .await
            .map_err(|e| not_backup(e.to_string()))?;
    }
    let schema: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
        .fetch_one(&mut db)
        .await
        .map_err(|e| not_backup(e.to_string()))?;
    let known = sqlx::migrate!("migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if schema > known {
        return Err(not_backup(format!(
            "it was taken by a newer escalade (schema {schema}; this one knows up to {known})"
        )));
    }
    // Every photo's bytes against its name, one at a time.
    let mut held = BTreeSet::new();
    let mut photo_bytes = 0i64;
    let mut last = String::new();
    loop {
        let row = sqlx::query(
            "SELECT hash, bytes FROM backup_photos WHERE hash > ? ORDER BY hash LIMIT 1",
        )
        .bind(&last)
        .fetch_optional(&mut db)
        .await
        .map_err(|e| not_backup(e.to_string()))?;
        let Some(row) = row else { break };
        let hash: String = row.get(0);
        let bytes: Vec<u8> = row.get(1);
        let actual = format!("{:x}", Sha256::digest(&bytes));
        if actual != hash {
            return Err(not_backup(format!(
                "photo {hash} is damaged: its bytes hash to {actual}"
            )));
        }
        photo_bytes += bytes.len() as i64;
        held.insert(hash.clone());
        last = hash;
    }
    let names: Vec<String> = sqlx::query_scalar(PHOTO_NAMES)
        .fetch_all(&mut db)
        .await
        .map_err(|e| not_backup(e.to_string()))?;
    if let Some(missing) = names.iter().find(|n| is_hash(n) && !held.contains(*n)) {
        return Err(not_backup(format!(
            "the store names photo {missing}, which the backup does not hold"
        )));
    }
    db.close().await.ok();
    Ok(Summary {
        issues: n[0],
        events: n[1],
        tokens: n[2],
        photos: held.len() as i64,
        photo_bytes,
        file_bytes: meta.len(),
        taken_at,
        schema,
    })
}

/// Restores the backup `from`, which `verify` passed (`checked` is what it said), into the
/// store `db` and the photos under `state_dir`. The caller has made sure no daemon owns the
/// store and that it may be replaced. Photos first, each written atomically (extra ones are
/// harmless: they are named by their content); then the database, migrated and renamed over
/// `db` in one step.
pub async fn restore(
    from: &Path,
    checked: Summary,
    db: &Path,
    state_dir: &Path,
) -> Result<Summary, String> {
    let summary = checked;
    fs::create_dir_all(state_dir)
        .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let photos = PhotoStore::open(state_dir)
        .map_err(|e| format!("cannot open the photos of {}: {e}", state_dir.display()))?;
    let mut src = connect(options(from)?.read_only(true), from).await?;
    let err = |e: sqlx::Error| format!("{}: {e}", from.display());
    let mut last = String::new();
    loop {
        let row = sqlx::query(
            "SELECT hash, bytes FROM backup_photos WHERE hash > ? ORDER BY hash LIMIT 1",
        )
        .bind(&last)
        .fetch_optional(&mut src)
        .await
        .map_err(err)?;
        let Some(row) = row else { break };
        let hash: String = row.get(0);
        let bytes: Vec<u8> = row.get(1);
        let put = photos
            .put(&bytes)
            .map_err(|e| format!("cannot restore photo {hash}: {e}"))?;
        if put.hash != hash {
            return Err(format!("photo {hash} changed while it was restored"));
        }
        last = hash;
    }
    let temp = temp_beside(db, "restoring")?;
    let written = async {
        sqlx::query("VACUUM INTO ?")
            .bind(temp.to_str().expect("a UTF-8 path (temp_beside)"))
            .execute(&mut src)
            .await
            .map_err(err)?;
        src.close().await.ok();
        let mut copy = connect(
            options(&temp)?
                .journal_mode(SqliteJournalMode::Delete)
                .synchronous(SqliteSynchronous::Full),
            &temp,
        )
        .await?;
        let err = |e: sqlx::Error| format!("{}: {e}", temp.display());
        for stmt in [
            "DROP TABLE backup_photos",
            "DROP TABLE backup_meta",
            "VACUUM",
        ] {
            sqlx::query(stmt).execute(&mut copy).await.map_err(err)?;
        }
        copy.close().await.map_err(err)?;
        // Brought to this version's schema, and shown to open as the daemon opens it.
        let store = super::Store::open_sqlite(&temp)
            .await
            .map_err(|e| format!("the restored store does not open: {e}"))?;
        store.close().await;
        drop(store);
        // Back to a single file (the daemon turns WAL on again when it opens it). Leaving WAL
        // needs the file to itself, and SQLite refuses at once (no busy wait) while a
        // connection just closed is still being torn down on its worker thread: a few tries.
        let mut copy = connect(options(&temp)?, &temp).await?;
        let mut tries = 0;
        loop {
            match sqlx::query("PRAGMA journal_mode = DELETE")
                .execute(&mut copy)
                .await
            {
                Ok(_) => break,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("5") && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(err(e)),
            }
        }
        copy.close().await.map_err(err)?;
        sync(&temp)
    }
    .await;
    if let Err(e) = written {
        let _ = remove_db_files(&temp);
        return Err(e);
    }
    // The old database's journal files would be read as the new one's: they go first.
    for suffix in ["-wal", "-shm", "-journal"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            fs::remove_file(&p).map_err(|e| format!("cannot remove {}: {e}", p.display()))?;
        }
    }
    fs::rename(&temp, db).map_err(|e| {
        let _ = remove_db_files(&temp);
        format!("cannot rename {} to {}: {e}", temp.display(), db.display())
    })?;
    sync(db)?;
    Ok(summary)
}
