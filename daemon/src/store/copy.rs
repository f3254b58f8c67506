//! Copying an SQLite store, with its photos, into an empty PostgreSQL database: what a city
//! moving to PostgreSQL runs once, with the daemon stopped.
//!
//! The SQLite file is opened read-only and must be an escalade store with every migration this
//! version knows applied. The target is migrated as the daemon migrates it, and must hold no row.
//! Then, in one PostgreSQL transaction, every table is copied in the order its foreign keys
//! need, every column with its value (ids included), a chunk of rows per statement; the photos
//! the store names are read from the photo directory, checked against their names and stored in
//! the `photos` table; the identities and the issue id sequence are moved past the copied ids;
//! and each table's count is checked against SQLite's. Only then is it committed: a failure at
//! any step leaves the target as it was.
//!
//! The columns are those of the PostgreSQL table, read from its catalogue, and read from SQLite
//! by the same names, each converted by its PostgreSQL type: one copier serves every table. A
//! PostgreSQL column SQLite lacks (a replica's claim) takes its default; an SQLite column
//! PostgreSQL lacks would be lost, and is refused.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::str::FromStr;

use futures_util::TryStreamExt;
use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Arguments, Connection, Row};

use super::Database;
use super::sqlite::PHOTO_NAMES;
use crate::photos::{detect, is_hash, name_of};

/// The tables copied, in an order that inserts every row after the rows it refers to.
/// PostgreSQL's other tables (`leases`, `photos`) are its own: a lease exists only among
/// replicas, and the photos come from the photo directory.
pub const TABLES: [&str; 18] = [
    "issues",
    "events",
    "idempotency_keys",
    "timers",
    "outbox",
    "api_tokens",
    "credentials",
    "sign_in_failures",
    "meetings",
    "meeting_agenda",
    "assignments",
    "evaluations",
    "jobs_known",
    "job_runs",
    "rule_files",
    "rule_versions",
    "shadow_runs",
    "shadow_diffs",
];

/// Rows per INSERT: a store of a million events is streamed, never held.
const CHUNK: usize = 1000;

/// How long the copy waits for another session's lock on a target table before giving up.
const LOCK_TIMEOUT: &str = "10s";

/// What was copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySummary {
    /// Each table and its rows, in the order copied.
    pub tables: Vec<(String, i64)>,
    pub photos: i64,
    /// The photos' bytes together.
    pub photo_bytes: i64,
}

/// How a column's values are read from SQLite and sent to PostgreSQL, by its PostgreSQL type.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Int,
    /// SQLite's 0/1 flags.
    Bool,
    Text,
}

impl Kind {
    fn of(data_type: &str) -> Option<Kind> {
        match data_type {
            "bigint" => Some(Kind::Int),
            "boolean" => Some(Kind::Bool),
            "text" => Some(Kind::Text),
            _ => None,
        }
    }

    /// The array type a chunk of the column is bound as.
    fn array(self) -> &'static str {
        match self {
            Kind::Int => "bigint[]",
            Kind::Bool => "boolean[]",
            Kind::Text => "text[]",
        }
    }
}

/// One column's values in the chunk being gathered.
enum Values {
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
}

struct Column {
    name: String,
    kind: Kind,
    /// An identity: its sequence is moved past the copied values.
    identity: bool,
}

/// A name quoted as an SQL identifier (the same quoting in SQLite and PostgreSQL).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Copies the SQLite store `from`, with the photos it names from `photos_dir` (the daemon's
/// `STATE_DIR/photos`), into the empty PostgreSQL database `to`. The caller holds the SQLite
/// store's lock: no daemon writes it meanwhile.
pub async fn copy(from: &Path, photos_dir: Option<&Path>, to: &str) -> Result<CopySummary, String> {
    let target = Database::Postgres(to.to_string()).display();
    let mut src = open_source(from).await?;
    let mut pg = PgConnection::connect(to)
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    let r = copy_into(&mut src, from, photos_dir, &mut pg, &target).await;
    src.close().await.ok();
    pg.close().await.ok();
    r
}

/// The SQLite store at `path`, read-only, once it is shown to be an escalade store migrated to
/// this version's schema.
async fn open_source(path: &Path) -> Result<SqliteConnection, String> {
    if !path.is_file() {
        return Err(format!("no SQLite store at {}", path.display()));
    }
    let not_store = |why: String| format!("{} is not an escalade store: {why}", path.display());
    let options = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|e| e.to_string())?
        .filename(path)
        .read_only(true);
    let mut db = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut db)
            .await
            .map_err(|e| not_store(said(&e)))?;
    for needed in ["issues", "_sqlx_migrations"] {
        if !tables.iter().any(|t| t == needed) {
            return Err(not_store(format!("it has no `{needed}` table")));
        }
    }
    let applied: BTreeSet<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut db)
            .await
            .map_err(|e| not_store(said(&e)))?
            .into_iter()
            .collect();
    let known: BTreeSet<i64> = sqlx::migrate!("migrations/sqlite")
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    let newest = |s: &BTreeSet<i64>| s.last().copied().unwrap_or(0);
    if let Some(v) = applied.difference(&known).next() {
        return Err(format!(
            "{} was migrated by a newer escalade (migration {v}; this one knows up to {}): copy \
             it with that version",
            path.display(),
            newest(&known)
        ));
    }
    if let Some(v) = known.difference(&applied).next() {
        return Err(format!(
            "{} lacks migration {v} (it is at {}, this escalade at {}): run the daemon on it \
             once (`escalade run`) to migrate it, stop it, then copy",
            path.display(),
            newest(&applied),
            newest(&known)
        ));
    }
    Ok(db)
}

/// What the database said, without sqlx's wrapping.
fn said(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        e => e.to_string(),
    }
}

async fn copy_into(
    src: &mut SqliteConnection,
    from: &Path,
    photos_dir: Option<&Path>,
    pg: &mut PgConnection,
    target: &str,
) -> Result<CopySummary, String> {
    let at_target = |e: sqlx::Error| format!("{target}: {}", said(&e));
    // A database holding tables of something else is not migrated into: that would change it
    // before the copy refused it.
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut *pg)
    .await
    .map_err(at_target)?;
    if !existing.is_empty() && !existing.iter().any(|t| t == "_sqlx_migrations") {
        return Err(format!(
            "{target} holds tables ({}) but is not an escalade store: copy into a new, empty \
             database",
            existing.join(", ")
        ));
    }
    sqlx::migrate!("migrations/postgres")
        .run(&mut *pg)
        .await
        .map_err(|e| format!("{target}: migration failed: {e}"))?;

    let mut tx = pg.begin().await.map_err(at_target)?;
    // One read transaction on SQLite: every table as of the same commit.
    let mut read = src
        .begin()
        .await
        .map_err(|e| format!("{}: {e}", from.display()))?;
    let r = fill(&mut read, from, photos_dir, &mut tx, target).await;
    read.rollback().await.ok();
    match r {
        Ok(summary) => {
            tx.commit().await.map_err(at_target)?;
            Ok(summary)
        }
        Err(e) => {
            tx.rollback().await.ok();
            Err(e)
        }
    }
}

/// Everything inside the target's transaction: the checks, the rows, the photos, the
/// sequences and the counts.
async fn fill(
    src: &mut SqliteConnection,
    from: &Path,
    photos_dir: Option<&Path>,
    pg: &mut PgConnection,
    target: &str,
) -> Result<CopySummary, String> {
    let at_target = |e: sqlx::Error| format!("{target}: {}", said(&e));
    let at_source = |e: sqlx::Error| format!("{}: {}", from.display(), said(&e));

    let pg_tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
           AND table_name <> '_sqlx_migrations'
         ORDER BY table_name",
    )
    .fetch_all(&mut *pg)
    .await
    .map_err(at_target)?;
    // A session holding a table (a daemon already running on the target) is not waited for
    // indefinitely.
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *pg)
        .await
        .map_err(at_target)?;
    // Held to the commit: a daemon started on the target meanwhile waits, and so does a second
    // copy, which then finds the target no longer empty.
    let all: Vec<String> = pg_tables.iter().map(|t| ident(t)).collect();
    sqlx::query(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", all.join(", ")))
        .execute(&mut *pg)
        .await
        .map_err(|e| {
            format!(
                "{target}: cannot lock its tables (is a daemon using it?): {}",
                said(&e)
            )
        })?;
    let mut held = Vec::new();
    for t in &pg_tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", ident(t)))
            .fetch_one(&mut *pg)
            .await
            .map_err(at_target)?;
        if n > 0 {
            held.push(format!("{t}: {n}"));
        }
    }
    if !held.is_empty() {
        return Err(format!(
            "{target} is not empty, its tables hold rows ({}): copy into a new, empty database; \
             nothing was changed",
            held.join(", ")
        ));
    }

    // Every table of the SQLite store must have a place here, or its rows would be left behind.
    let sqlite_tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *src)
    .await
    .map_err(at_source)?;
    if let Some(t) = sqlite_tables.iter().find(|t| !TABLES.contains(&t.as_str())) {
        return Err(format!(
            "{} has a table `{t}` this escalade does not copy",
            from.display()
        ));
    }
    if let Some(t) = TABLES.iter().find(|t| !pg_tables.iter().any(|p| p == *t)) {
        return Err(format!("{target} has no table `{t}` after its migrations"));
    }
    if let Some(t) = TABLES
        .iter()
        .find(|t| !sqlite_tables.iter().any(|s| s == *t))
    {
        return Err(format!("{} has no table `{t}`", from.display()));
    }

    let mut tables = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let n = copy_table(src, pg, table, from, target).await?;
        tables.push((table.to_string(), n));
    }
    let (photos, photo_bytes) = copy_photos(src, pg, from, photos_dir, target).await?;

    // The issue ids go on from the largest copied one, as SQLite's store allocates them.
    let last_issue: Option<i64> =
        sqlx::query_scalar("SELECT MAX(id::bigint) FROM issues WHERE id ~ '^[0-9]{1,18}$'")
            .fetch_one(&mut *pg)
            .await
            .map_err(at_target)?;
    if let Some(n) = last_issue.filter(|n| *n >= 1) {
        sqlx::query("SELECT setval('issue_ids', $1)")
            .bind(n)
            .execute(&mut *pg)
            .await
            .map_err(at_target)?;
    }

    // Counted again on both sides before the commit.
    for (table, copied) in &tables {
        let q = format!("SELECT COUNT(*) FROM {}", ident(table));
        let there: i64 = sqlx::query_scalar(&q)
            .fetch_one(&mut *pg)
            .await
            .map_err(at_target)?;
        let here: i64 = sqlx::query_scalar(&q)
            .fetch_one(&mut *src)
            .await
            .map_err(at_source)?;
        if there != here || *copied != here {
            return Err(format!(
                "{table}: {here} rows in {}, {copied} copied, {there} in {target}; nothing was \
                 committed",
                from.display()
            ));
        }
    }
    let there: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM photos")
        .fetch_one(&mut *pg)
        .await
        .map_err(at_target)?;
    if there != photos {
        return Err(format!(
            "photos: the store names {photos}, {target} holds {there}; nothing was committed"
        ));
    }
    Ok(CopySummary {
        tables,
        photos,
        photo_bytes,
    })
}

/// Copies one table, a chunk of rows per statement, then moves its identity past the copied
/// ids. Returns the rows copied.
async fn copy_table(
    src: &mut SqliteConnection,
    pg: &mut PgConnection,
    table: &str,
    from: &Path,
    target: &str,
) -> Result<i64, String> {
    let at_target = |e: sqlx::Error| format!("{target}: {table}: {}", said(&e));
    let at_source = |e: sqlx::Error| format!("{}: {table}: {}", from.display(), said(&e));
    let rows = sqlx::query(
        "SELECT column_name::text, data_type::text, is_identity::text = 'YES'
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *pg)
    .await
    .map_err(at_target)?;
    let source: HashSet<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(&mut *src)
        .await
        .map_err(at_source)?
        .into_iter()
        .collect();
    let mut columns = Vec::new();
    for r in rows {
        let name: String = r.get(0);
        let data_type: String = r.get(1);
        if !source.contains(&name) {
            // Only PostgreSQL has it: its default (a replica's claim, none yet) stands.
            continue;
        }
        let kind = Kind::of(&data_type).ok_or_else(|| {
            format!("{target}: {table}.{name} is {data_type}, which the copy does not convert to")
        })?;
        columns.push(Column {
            name,
            kind,
            identity: r.get(2),
        });
    }
    if let Some(lost) = source
        .iter()
        .find(|s| !columns.iter().any(|c| &c.name == *s))
    {
        return Err(format!(
            "{}: column {table}.{lost} has no place in {target}",
            from.display()
        ));
    }

    let names: Vec<String> = columns.iter().map(|c| ident(&c.name)).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.kind.array()))
        .collect();
    let insert = format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
        ident(table),
        names.join(", "),
        arrays.join(", ")
    );
    let select = format!(
        "SELECT {} FROM {} ORDER BY rowid",
        names.join(", "),
        ident(table)
    );

    let empty = || -> Vec<Values> {
        columns
            .iter()
            .map(|c| match c.kind {
                Kind::Int => Values::Int(Vec::with_capacity(CHUNK)),
                Kind::Bool => Values::Bool(Vec::with_capacity(CHUNK)),
                Kind::Text => Values::Text(Vec::with_capacity(CHUNK)),
            })
            .collect()
    };
    let mut chunk = empty();
    let mut in_chunk = 0;
    let mut copied = 0i64;
    let mut stream = sqlx::query(&select).fetch(&mut *src);
    while let Some(row) = stream.try_next().await.map_err(at_source)? {
        gather(&row, &columns, &mut chunk)
            .map_err(|e| format!("{}: {table}: {e}", from.display()))?;
        in_chunk += 1;
        if in_chunk == CHUNK {
            copied += insert_chunk(pg, &insert, std::mem::replace(&mut chunk, empty()))
                .await
                .map_err(at_target)?;
            in_chunk = 0;
        }
    }
    drop(stream);
    if in_chunk > 0 {
        copied += insert_chunk(pg, &insert, chunk).await.map_err(at_target)?;
    }

    for c in columns.iter().filter(|c| c.identity) {
        // Past the largest id SQLite ever handed out, deleted rows' (fired timers') included, as
        // SQLite's AUTOINCREMENT never hands one out again.
        let handed_out: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
                .bind(table)
                .fetch_optional(&mut *src)
                .await
                .map_err(at_source)?;
        let copied_max: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT MAX({}) FROM {}",
            ident(&c.name),
            ident(table)
        ))
        .fetch_one(&mut *pg)
        .await
        .map_err(at_target)?;
        let last = handed_out.max(copied_max);
        if let Some(last) = last.filter(|n| *n >= 1) {
            sqlx::query("SELECT setval(pg_get_serial_sequence($1, $2), $3)")
                .bind(ident(table))
                .bind(&c.name)
                .bind(last)
                .execute(&mut *pg)
                .await
                .map_err(at_target)?;
        }
    }
    Ok(copied)
}

/// Appends a row's values to the chunk, each converted by its column's kind.
fn gather(row: &SqliteRow, columns: &[Column], chunk: &mut [Values]) -> Result<(), String> {
    for (i, (c, values)) in columns.iter().zip(chunk.iter_mut()).enumerate() {
        let bad = |e: sqlx::Error| format!("column {}: {e}", c.name);
        match values {
            Values::Int(v) => v.push(row.try_get(i).map_err(bad)?),
            Values::Text(v) => v.push(row.try_get(i).map_err(bad)?),
            Values::Bool(v) => {
                let flag: Option<i64> = row.try_get(i).map_err(bad)?;
                v.push(match flag {
                    None => None,
                    Some(0) => Some(false),
                    Some(1) => Some(true),
                    Some(n) => return Err(format!("column {} holds {n}, not 0 or 1", c.name)),
                });
            }
        }
    }
    Ok(())
}

async fn insert_chunk(
    pg: &mut PgConnection,
    insert: &str,
    chunk: Vec<Values>,
) -> sqlx::Result<i64> {
    let mut args = PgArguments::default();
    for values in chunk {
        match values {
            Values::Int(v) => args.add(v),
            Values::Bool(v) => args.add(v),
            Values::Text(v) => args.add(v),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    let done = sqlx::query_with(insert, args).execute(&mut *pg).await?;
    Ok(done.rows_affected() as i64)
}

/// Stores every photo the store names, from `photos_dir`, each checked against its name.
/// Returns how many, and their bytes together.
async fn copy_photos(
    src: &mut SqliteConnection,
    pg: &mut PgConnection,
    from: &Path,
    photos_dir: Option<&Path>,
    target: &str,
) -> Result<(i64, i64), String> {
    let names: Vec<String> = sqlx::query_scalar(PHOTO_NAMES)
        .fetch_all(&mut *src)
        .await
        .map_err(|e| format!("{}: {}", from.display(), said(&e)))?;
    // Only a photo's name can name a file: anything else never was one.
    let names: BTreeSet<String> = names.into_iter().filter(|n| is_hash(n)).collect();
    if names.is_empty() {
        return Ok((0, 0));
    }
    let Some(dir) = photos_dir else {
        return Err(format!(
            "the store names {} photos and no photo directory was given",
            names.len()
        ));
    };
    let created_at = chrono::Utc::now().timestamp_millis();
    let mut bytes_total = 0i64;
    for name in &names {
        // The daemon's layout (`photos::PhotoStore::path`): a directory per first two digits.
        let path = dir.join(&name[..2]).join(name);
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::read(path))
                .await
                .map_err(|e| e.to_string())?
        };
        let bytes = match read {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "the store names photo {name}, which is not in {}: nothing was copied",
                    dir.display()
                ));
            }
            Err(e) => return Err(format!("cannot read photo {}: {e}", path.display())),
        };
        let actual = name_of(&bytes);
        if actual != *name {
            return Err(format!(
                "photo {name} ({}) is damaged: its bytes hash to {actual}; nothing was copied",
                path.display()
            ));
        }
        // As the daemon serves a stored photo whose type its bytes no longer tell.
        let content_type = detect(&bytes).unwrap_or("application/octet-stream");
        let size = bytes.len() as i64;
        sqlx::query(
            "INSERT INTO photos (hash, content_type, bytes, size, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(name)
        .bind(content_type)
        .bind(bytes)
        .bind(size)
        .bind(created_at)
        .execute(&mut *pg)
        .await
        .map_err(|e| format!("{target}: photo {name}: {}", said(&e)))?;
        bytes_total += size;
    }
    Ok((names.len() as i64, bytes_total))
}
