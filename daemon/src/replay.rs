//! Replay of past issues through candidate rules, on the store (SQLite or PostgreSQL),
//! read-only.
//!
//! Issues are read page by page in the order they were reported, each page one query on a
//! read-only connection of its own (a short read: the daemon goes on writing, and nothing held
//! here blocks it), its events gathered per issue by the database into one JSON array (the same
//! JSON on either backend). Each issue is
//! lived again through the candidate and through the rule version that decided its report,
//! loaded from `rule_versions` and `rule_files` the first time an issue needs it; the pure part
//! is `escalade_rules::replay`. A reader task runs a few pages ahead; each page is lived by one
//! thread of rayon's pool, a few pages at a time, and their results are added up in report
//! order. Memory holds those pages, SQLite's page cache (64 MiB at most), the summary's groups
//! and at most `limit` issues shown in detail, whatever the size of the history. Only the few
//! reads differ by backend (`Source`); everything above them is shared.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use escalade_rules::replay::{Action, Group, History, IssueReplay, Summary, replay_issue};
use escalade_rules::{Event, Issue, IssueState, RuleSet};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

use crate::auth::{Actor, Role};
use crate::store::Database;

/// Issues shown in detail when the caller names no limit.
pub const DEFAULT_LIMIT: usize = 100;

/// Issues read per page.
const PAGE: i64 = 500;

/// Pages read ahead of those being lived.
const READ_AHEAD: usize = 8;

/// Which past issues to replay: reported in `[from, to)`, of a category, in a unit's subtree.
/// Their lives run to `to`, or to now.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The filter is wrong: the field at fault and why.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The store cannot be read.
    #[error("{0}")]
    Store(String),
}

/// How many issues were read and what became of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Issues read from the store.
    pub read: u64,
    /// Lived through both rule sets.
    pub replayed: u64,
    pub unchanged: u64,
    /// Something differs (diverged and refused ones included).
    pub changed: u64,
    /// The candidate's life left the recorded one at a recorded action.
    pub diverged: u64,
    /// The candidate refuses the report itself.
    pub refused: u64,
    /// Not replayed; `skipped` in the report says why.
    pub skipped: u64,
}

/// Issues passed over for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub reason: String,
    pub issues: u64,
}

/// Issues whose report's rule version is not stored (or no longer loads), lived through the
/// version of their later decisions instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fallback {
    pub missing: String,
    pub used: String,
    pub issues: u64,
}

/// Issues lived through one recorded rule version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionUse {
    pub version: String,
    pub issues: u64,
}

/// What a replay found.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    /// The candidate's version.
    pub candidate: String,
    /// Lives ran to this instant.
    pub horizon: DateTime<Utc>,
    pub filter: ReplayFilter,
    pub issues: Counts,
    /// Recorded actions the candidate's lives took (before any divergence).
    pub actions: u64,
    /// The recorded rule versions lived through.
    pub recorded: Vec<VersionUse>,
    pub fallbacks: Vec<Fallback>,
    pub skipped: Vec<Skipped>,
    /// What differs, grouped by kind of change.
    pub summary: Vec<Group>,
    /// The first changed issues in report order, at most the limit.
    pub changed: Vec<IssueReplay>,
    /// Changed issues beyond the limit.
    pub changed_not_shown: u64,
}

impl ReplayReport {
    /// Whether anything differs.
    pub fn differs(&self) -> bool {
        self.issues.changed > 0
    }
}

/// Changed issues shown in detail at most, whatever a replay over the API or the console asks.
pub const MAX_LIMIT: usize = 1000;

/// A replay asked for over the API or the console: a candidate under `candidates_dir`, which
/// issues, and how many changed ones to show.
#[derive(Clone, Debug, Default)]
pub struct CandidateReplay {
    /// A directory under `candidates_dir`.
    pub dir: String,
    pub from: Option<DateTime<Utc>>,
    /// Default: now on the daemon's clock.
    pub to: Option<DateTime<Utc>>,
    pub category: Option<String>,
    pub unit: Option<String>,
    /// Default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`].
    pub limit: Option<usize>,
}

/// Why a replay of a named candidate did not run.
#[derive(Debug, thiserror::Error)]
pub enum CandidateReplayError {
    #[error(transparent)]
    Candidate(#[from] crate::reload::CandidateError),
    #[error("this daemon was given no store for replays")]
    NoStore,
    /// The filter is wrong: the field at fault and why.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Failed(String),
}

/// Replays the daemon's store through the candidate `r` names, one replay at a time (a second
/// waits for the first: each lives issues on every core). What `POST /api/v1/rules/replay` and
/// the console's replay both run.
pub async fn replay_candidate(
    steward: &crate::reload::Rules,
    r: CandidateReplay,
) -> Result<ReplayReport, CandidateReplayError> {
    let rules = Arc::new(steward.named_candidate(&r.dir).await?.1);
    let Some(db) = steward.database() else {
        return Err(CandidateReplayError::NoStore);
    };
    let filter = ReplayFilter {
        from: r.from,
        // Lives run to now on the daemon's clock, unless asked otherwise (an issue reported
        // this millisecond is in).
        to: Some(
            r.to.unwrap_or_else(|| steward.engine().now() + chrono::Duration::milliseconds(1)),
        ),
        category: r.category,
        unit: r.unit,
    };
    let limit = r.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let _one = steward
        .replays
        .acquire()
        .await
        .map_err(|e| CandidateReplayError::Failed(e.to_string()))?;
    replay(db, rules, filter, Some(limit))
        .await
        .map_err(|e| match e {
            ReplayError::Invalid { field, message } => {
                CandidateReplayError::Invalid { field, message }
            }
            e => CandidateReplayError::Failed(e.to_string()),
        })
}

/// Replays the issues of the store `db` (a [`Database`], or an SQLite file by its path) that
/// `filter` selects through `candidate`, showing at most `limit` changed issues in detail
/// (default [`DEFAULT_LIMIT`]; the summary counts them all). Opens the store read-only; the
/// daemon may be running on it.
pub async fn replay(
    db: impl Into<Database>,
    candidate: Arc<RuleSet>,
    filter: ReplayFilter,
    limit: Option<usize>,
) -> Result<ReplayReport, ReplayError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    let horizon = filter.to.unwrap_or_else(Utc::now);
    if let (Some(f), Some(t)) = (filter.from, filter.to)
        && f >= t
    {
        return Err(ReplayError::Invalid {
            field: "from",
            message: format!("from ({f}) is not before to ({t})"),
        });
    }
    let db = Source::open(&db.into()).await?;
    let result = run(&db, candidate, filter, limit, horizon).await;
    db.close().await;
    result
}

/// An SQLite file by its path.
impl From<&Path> for Database {
    fn from(path: &Path) -> Database {
        Database::Sqlite(path.to_path_buf())
    }
}

impl From<&PathBuf> for Database {
    fn from(path: &PathBuf) -> Database {
        Database::Sqlite(path.clone())
    }
}

impl From<&Database> for Database {
    fn from(db: &Database) -> Database {
        db.clone()
    }
}

async fn run(
    db: &Source,
    candidate: Arc<RuleSet>,
    filter: ReplayFilter,
    limit: usize,
    horizon: DateTime<Utc>,
) -> Result<ReplayReport, ReplayError> {
    check_filter(db, &candidate, &filter).await?;
    let versions = Arc::new(Versions::read(db).await?);
    // The reader runs ahead of the pages being lived, by a few pages at most.
    let (pages, mut next) = tokio::sync::mpsc::channel::<Vec<RawIssue>>(READ_AHEAD);
    let reader = tokio::spawn(read_all(db.clone(), filter.clone(), horizon, pages));
    let version = candidate.version.to_string();
    let mut report = Tally::new(limit);
    // Pages being lived, each by one thread of the pool, a few per thread so that none waits;
    // their results are taken in order.
    let in_flight = 4 * rayon::current_num_threads();
    let mut living = std::collections::VecDeque::new();
    let lost = |_| ReplayError::Store("a page of issues could not be lived".into());
    while let Some(page) = next.recv().await {
        let job = Job {
            candidate: candidate.clone(),
            versions: versions.clone(),
            horizon,
        };
        let (done, result) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            let _ = done.send(job.live(page));
        });
        living.push_back(result);
        if living.len() >= in_flight
            && let Some(p) = living.pop_front()
        {
            report.add(p.await.map_err(lost)?);
        }
    }
    while let Some(p) = living.pop_front() {
        report.add(p.await.map_err(lost)?);
    }
    reader
        .await
        .map_err(|e| ReplayError::Store(format!("reading the store: {e}")))??;
    Ok(report.finish(version, horizon, filter))
}

/// Reads every page the filter selects into `pages`, in report order; stops early when the
/// pages are no longer wanted.
async fn read_all(
    db: Source,
    filter: ReplayFilter,
    horizon: DateTime<Utc>,
    pages: tokio::sync::mpsc::Sender<Vec<RawIssue>>,
) -> Result<(), ReplayError> {
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = db.page(&filter, horizon, after.as_ref()).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some((last.reported_at, last.id.clone()));
        if pages.send(page).await.is_err() {
            return Ok(());
        }
    }
}

/// Runs `$e` on the source's pool as `$db`, for a query the same on either backend.
macro_rules! both {
    ($source:expr, $db:ident => $e:expr) => {
        match $source {
            Source::Sqlite($db) => $e,
            Source::Postgres($db) => $e,
        }
    };
}

/// The store as replay reads it: a pool of its own, read-only, on either backend.
#[derive(Clone)]
enum Source {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Source {
    /// Opens the store read-only and checks that it is one.
    async fn open(db: &Database) -> Result<Source, ReplayError> {
        let shown = db.display();
        let failed = |e: sqlx::Error| ReplayError::Store(format!("{shown}: {e}"));
        let source = match db {
            Database::Sqlite(path) => {
                if !path.is_file() {
                    return Err(ReplayError::Store(format!(
                        "no store at {}",
                        path.display()
                    )));
                }
                // A page of issues reads their events from pages written around the same days:
                // a larger page cache (64 MiB, bounded) reads each of them once.
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(10))
                    .pragma("cache_size", "-65536");
                Source::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(options)
                        .await
                        .map_err(failed)?,
                )
            }
            Database::Postgres(url) => {
                let options: PgConnectOptions = url.parse().map_err(failed)?;
                // Nothing here writes; the server holds us to it.
                let options = options.options([("default_transaction_read_only", "on")]);
                // The reader's page queries, and the first reads before it starts.
                Source::Postgres(
                    PgPoolOptions::new()
                        .max_connections(2)
                        .connect_with(options)
                        .await
                        .map_err(failed)?,
                )
            }
        };
        match source.has_tables("issues", "events").await {
            Ok(true) => Ok(source),
            Ok(false) => {
                source.close().await;
                Err(ReplayError::Store(format!(
                    "{shown} is not an escalade store (it has no issues and events)"
                )))
            }
            Err(e) => {
                source.close().await;
                Err(ReplayError::Store(format!("{shown}: {e}")))
            }
        }
    }

    async fn close(&self) {
        both!(self, db => db.close().await)
    }

    /// Whether the store has both tables.
    async fn has_tables(&self, a: &str, b: &str) -> Result<bool, sqlx::Error> {
        let n: i64 =
            match self {
                Source::Sqlite(db) => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                )
                .bind(a)
                .bind(b)
                .fetch_one(db)
                .await?,
                Source::Postgres(db) => {
                    sqlx::query_scalar(
                        "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_name IN ($1, $2)",
                    )
                    .bind(a)
                    .bind(b)
                    .fetch_one(db)
                    .await?
                }
            };
        Ok(n >= 2)
    }

    /// Whether some stored issue is of category `c`.
    async fn has_category(&self, c: &str) -> Result<bool, ReplayError> {
        let found: Option<i64> = match self {
            Source::Sqlite(db) => {
                sqlx::query_scalar("SELECT 1 FROM issues WHERE category = ? LIMIT 1")
                    .bind(c)
                    .fetch_optional(db)
                    .await
            }
            Source::Postgres(db) => {
                sqlx::query_scalar("SELECT 1::BIGINT FROM issues WHERE category = $1 LIMIT 1")
                    .bind(c)
                    .fetch_optional(db)
                    .await
            }
        }
        .map_err(store_error)?;
        Ok(found.is_some())
    }

    /// Whether some stored issue is of unit `u` or in its subtree.
    async fn has_unit(&self, u: &str) -> Result<bool, ReplayError> {
        let found: Option<i64> = match self {
            Source::Sqlite(db) => {
                sqlx::query_scalar(
                    "SELECT 1 FROM issues WHERE unit = ? OR branch LIKE ? ESCAPE '\\' LIMIT 1",
                )
                .bind(u)
                .bind(subtree(u))
                .fetch_optional(db)
                .await
            }
            Source::Postgres(db) => {
                sqlx::query_scalar(
                    "SELECT 1::BIGINT FROM issues \
                     WHERE unit = $1 OR branch LIKE $2 ESCAPE '\\' LIMIT 1",
                )
                .bind(u)
                .bind(subtree(u))
                .fetch_optional(db)
                .await
            }
        }
        .map_err(store_error)?;
        Ok(found.is_some())
    }

    /// The next page of issues after `after` in report order, with their events up to
    /// `horizon`.
    async fn page(
        &self,
        f: &ReplayFilter,
        horizon: DateTime<Utc>,
        after: Option<&(i64, String)>,
    ) -> Result<Vec<RawIssue>, ReplayError> {
        let h = horizon.timestamp_millis();
        match self {
            Source::Sqlite(db) => {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "SELECT i.id, i.body, i.reported_at, \
                     (SELECT json_group_array(json_array(seq, at, actor, kind, payload, rules_version)) \
                      FROM (SELECT seq, at, actor, kind, payload, rules_version FROM events \
                            WHERE issue_id = i.id AND at <= ",
                );
                q.push_bind(h).push(" ORDER BY seq))");
                page_rest(&mut q, "i.id", f, h, after);
                let rows = q.build().fetch_all(db).await.map_err(store_error)?;
                Ok(rows.iter().map(raw_issue).collect())
            }
            Source::Postgres(db) => {
                // The payload (text holding JSON) goes in as a JSON string, as SQLite's
                // json_array puts it: the same JSON whichever the backend. Ids compare
                // bytewise, as SQLite compares them.
                let mut q = QueryBuilder::<Postgres>::new(
                    "SELECT i.id, i.body, i.reported_at, COALESCE(\
                     (SELECT jsonb_agg(jsonb_build_array(seq, at, actor, kind, payload, rules_version) \
                                       ORDER BY seq)::text \
                      FROM events WHERE issue_id = i.id AND at <= ",
                );
                q.push_bind(h).push("), '[]')");
                page_rest(&mut q, "i.id COLLATE \"C\"", f, h, after);
                let rows = q.build().fetch_all(db).await.map_err(store_error)?;
                Ok(rows.iter().map(raw_issue).collect())
            }
        }
    }

    /// Every row of `rule_versions` in order: its version and its list of files.
    async fn rule_versions(&self) -> Result<Vec<(String, String)>, ReplayError> {
        both!(self, db => sqlx::query_as("SELECT version, files FROM rule_versions ORDER BY id")
            .fetch_all(db)
            .await
            .map_err(store_error))
    }

    /// Every stored rule file: its hash and content.
    async fn rule_files(&self) -> Result<Vec<(String, String)>, ReplayError> {
        both!(self, db => sqlx::query_as("SELECT hash, content FROM rule_files")
            .fetch_all(db)
            .await
            .map_err(store_error))
    }
}

/// The rest of a page's query after its columns, the same on either backend but for how ids
/// compare (`id`): the issues reported by `h` after `after` that the filter selects, in report
/// order.
fn page_rest<'a, DB: sqlx::Database>(
    q: &mut QueryBuilder<'a, DB>,
    id: &str,
    f: &ReplayFilter,
    h: i64,
    after: Option<&(i64, String)>,
) where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(" FROM issues i WHERE i.reported_at <= ")
        .push_bind(h);
    if let Some((at, after_id)) = after {
        q.push(format!(" AND (i.reported_at, {id}) > ("))
            .push_bind(*at)
            .push(", ")
            .push_bind(after_id.clone())
            .push(")");
    }
    if let Some(from) = f.from {
        q.push(" AND i.reported_at >= ")
            .push_bind(from.timestamp_millis());
    }
    if let Some(to) = f.to {
        q.push(" AND i.reported_at < ")
            .push_bind(to.timestamp_millis());
    }
    if let Some(c) = &f.category {
        q.push(" AND i.category = ").push_bind(c.clone());
    }
    if let Some(u) = &f.unit {
        q.push(" AND (i.unit = ")
            .push_bind(u.clone())
            .push(" OR i.branch LIKE ")
            .push_bind(subtree(u))
            .push(" ESCAPE '\\')");
    }
    q.push(format!(" ORDER BY i.reported_at, {id} LIMIT "))
        .push_bind(PAGE);
}

/// A row of a page, from either backend.
fn raw_issue<R: Row>(r: &R) -> RawIssue
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    RawIssue {
        id: r.get(0),
        body: r.get(1),
        reported_at: r.get(2),
        events: r.get::<Option<String>, _>(3).unwrap_or_default(),
    }
}

fn store_error(e: sqlx::Error) -> ReplayError {
    ReplayError::Store(format!("reading the store: {e}"))
}

/// The `LIKE` pattern of a unit's subtree in `issues.branch`.
fn subtree(unit: &str) -> String {
    let escaped = unit
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%/{escaped}/%")
}

/// A category or unit must be known to the candidate or to some stored issue (a candidate
/// may drop one that past issues have).
async fn check_filter(
    db: &Source,
    candidate: &RuleSet,
    f: &ReplayFilter,
) -> Result<(), ReplayError> {
    if let Some(c) = &f.category
        && candidate.category(c).is_none()
        && !db.has_category(c).await?
    {
        return Err(ReplayError::Invalid {
            field: "category",
            message: format!(
                "unknown category `{c}`: neither the candidate rules nor any stored issue have it"
            ),
        });
    }
    if let Some(u) = &f.unit
        && candidate.org.unit(u).is_none()
        && !db.has_unit(u).await?
    {
        return Err(ReplayError::Invalid {
            field: "unit",
            message: format!(
                "unknown unit `{u}`: neither the candidate rules nor any stored issue have it"
            ),
        });
    }
    Ok(())
}

/// An issue as read, its JSON not parsed yet (that happens in parallel): its events are one
/// JSON array of `[seq, at, actor, kind, payload, rules_version]` (the payload a JSON string),
/// built by the database, so that a page of issues comes back as one row per issue.
struct RawIssue {
    id: String,
    body: String,
    reported_at: i64,
    events: String,
}

/// One recorded event as the page's JSON carries it, borrowed from it where it can be.
#[derive(Deserialize)]
struct RawEvent<'a>(
    i64,
    i64,
    #[serde(borrow)] Cow<'a, str>,
    &'a str,
    #[serde(borrow)] Cow<'a, str>,
    &'a str,
);

/// A stored rule version: loaded, or why it cannot be.
type Loaded = Result<Arc<RuleSet>, String>;

/// A version the store holds: its files, and the rule set once someone needed it.
struct Stored {
    files: Result<BTreeMap<String, Arc<str>>, String>,
    rules: OnceLock<Loaded>,
}

/// The rule versions the store holds, read once at the start (their files are small and
/// shared between versions); each is loaded the first time an issue needs it.
struct Versions {
    stored: HashMap<String, Stored>,
    /// Why a version not in `stored` is missing.
    missing: &'static str,
}

impl Versions {
    async fn read(db: &Source) -> Result<Versions, ReplayError> {
        if !db
            .has_tables("rule_versions", "rule_files")
            .await
            .map_err(store_error)?
        {
            return Ok(Versions {
                stored: HashMap::new(),
                missing: " (the store keeps no rule versions)",
            });
        }
        let rows = db.rule_versions().await?;
        let contents: HashMap<String, Arc<str>> = db
            .rule_files()
            .await?
            .into_iter()
            .map(|(h, c)| (h, Arc::from(c)))
            .collect();
        let mut stored = HashMap::new();
        for (version, files) in rows {
            let name = short(&version).to_string();
            let files = serde_json::from_str::<BTreeMap<String, String>>(&files)
                .map_err(|e| format!("rules version {name}: its list of files is unreadable: {e}"))
                .and_then(|paths| {
                    paths
                        .into_iter()
                        .map(|(path, hash)| match contents.get(&hash) {
                            Some(c) => Ok((path, c.clone())),
                            None => Err(format!(
                                "rules version {name}: its file {path} ({}) is not stored",
                                short(&hash)
                            )),
                        })
                        .collect()
                });
            stored.insert(
                version,
                Stored {
                    files,
                    rules: OnceLock::new(),
                },
            );
        }
        Ok(Versions {
            stored,
            missing: "",
        })
    }

    /// The rule set of `version`, or why there is none.
    fn get(&self, version: &str) -> Loaded {
        let Some(s) = self.stored.get(version) else {
            return Err(format!(
                "rules version {} is not stored{}",
                short(version),
                self.missing
            ));
        };
        s.rules
            .get_or_init(|| {
                let files = s.files.as_ref().map_err(Clone::clone)?;
                match RuleSet::load_files(files) {
                    Ok(rules) if *rules.version == *version => Ok(Arc::new(rules)),
                    Ok(rules) => Err(format!(
                        "rules version {}: its stored files load as version {}",
                        short(version),
                        short(&rules.version)
                    )),
                    Err(d) => Err(format!(
                        "rules version {} no longer loads: {}",
                        short(version),
                        d.iter()
                            .next()
                            .map(|d| d.to_string())
                            .unwrap_or_else(|| "an error".into())
                    )),
                }
            })
            .clone()
    }
}

/// A version (or a file's hash) as lines show it.
fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// What a page is lived with.
struct Job {
    candidate: Arc<RuleSet>,
    versions: Arc<Versions>,
    horizon: DateTime<Utc>,
}

/// What became of one issue.
enum Outcome {
    Replayed {
        replay: Box<IssueReplay>,
        actions: u64,
        /// The report's version was missing: (missing, used).
        fallback: Option<(String, String)>,
    },
    Skipped(String),
}

/// What a page added up to.
#[derive(Default)]
struct PageResult {
    outcomes: Vec<Outcome>,
    summary: Summary,
}

impl Job {
    /// Lives a page's issues one after another (pages, not issues, are spread over threads).
    fn live(&self, page: Vec<RawIssue>) -> PageResult {
        let mut summary = Summary::default();
        let outcomes: Vec<Outcome> = page
            .into_iter()
            .map(|i| {
                let o = self.issue(i);
                if let Outcome::Replayed { replay, .. } = &o {
                    summary.add(replay);
                }
                o
            })
            .collect();
        PageResult { outcomes, summary }
    }

    fn issue(&self, raw: RawIssue) -> Outcome {
        let mut issue: Issue = match serde_json::from_str(&raw.body) {
            Ok(i) => i,
            Err(e) => return Outcome::Skipped(format!("its stored body is unreadable: {e}")),
        };
        if issue.id.is_empty() {
            issue.id = raw.id.clone();
        }
        let Some(reported_at) = DateTime::<Utc>::from_timestamp_millis(raw.reported_at) else {
            return Outcome::Skipped("its report time is out of range".into());
        };
        let mut events: Vec<RawEvent> = match serde_json::from_str(&raw.events) {
            Ok(e) => e,
            Err(e) => return Outcome::Skipped(format!("its events are unreadable: {e}")),
        };
        events.sort_unstable_by_key(|e| e.0);
        let Some(first) = events.first() else {
            return Outcome::Skipped("it has no recorded events".into());
        };
        let report_version = events.iter().find(|e| e.3 == "reported").unwrap_or(first).5;
        let (recorded, fallback) = match self.versions.get(report_version) {
            Ok(r) => (r, None),
            Err(why) => {
                let later = events
                    .iter()
                    .filter(|e| e.5 != report_version)
                    .find_map(|e| self.versions.get(e.5).ok());
                match later {
                    Some(r) => {
                        let used = r.version.to_string();
                        (r, Some((report_version.to_string(), used)))
                    }
                    None => return Outcome::Skipped(why),
                }
            }
        };
        let mut actions = Vec::with_capacity(events.len());
        for RawEvent(seq, at, actor, kind, payload, _) in events {
            // The report is lived anew, timers fire in each life, and an issue sent to triage
            // by a reload of the live rules is the daemon's doing, not a person's.
            if matches!(
                kind,
                "reported" | "deadline_passed" | "reminder_due" | "sent_to_triage"
            ) {
                continue;
            }
            let event: Event = match serde_json::from_str(&payload) {
                Ok(ev) => ev,
                Err(err) => {
                    return Outcome::Skipped(format!(
                        "its event {seq} (`{kind}`) is unreadable: {err}"
                    ));
                }
            };
            let Some(at) = DateTime::<Utc>::from_timestamp_millis(at) else {
                return Outcome::Skipped(format!("its event {seq} has a time out of range"));
            };
            actions.push(Action {
                seq,
                at,
                actor: actor.into_owned(),
                event,
            });
        }
        let n = actions.len() as u64;
        let history = History {
            issue,
            reported_at,
            actions,
        };
        match replay_issue(
            &recorded,
            &self.candidate,
            &history,
            self.horizon,
            &permission,
        ) {
            Ok(r) => {
                let taken = match &r.diverged {
                    Some(d) => history.actions.iter().filter(|a| a.seq < d.seq).count() as u64,
                    None => n,
                };
                Outcome::Replayed {
                    replay: Box::new(r),
                    actions: taken,
                    fallback,
                }
            }
            Err(why) => Outcome::Skipped(why),
        }
    }
}

/// The token an event's actor names (`department:urban#3`, `admin#1`,
/// `reporter:g-0001#4(p-g-0001)`, `admin#5(integration:wechat) on behalf of p-g-0001`: the form
/// `Actor::name` writes); `None` for the daemon's own actors (`scheduler`), whose events are
/// not checked.
pub fn actor_of(name: &str) -> Option<Actor> {
    // On whose behalf a report was made is the issue's reporter; the token is who acted.
    let name = name.split_once(" on behalf of ").map_or(name, |(n, _)| n);
    // The `#` followed by the token's id, then the owner in parentheses or nothing.
    let (hash, token, owner) = name.match_indices('#').find_map(|(i, _)| {
        let tail = &name[i + 1..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let rest = &tail[digits..];
        let owner = if rest.is_empty() {
            None
        } else {
            Some(rest.strip_prefix('(')?.strip_suffix(')')?)
        };
        Some((i, tail[..digits].parse::<i64>().ok()?, owner))
    })?;
    let head = &name[..hash];
    let (role, scope) = match head.split_once(':') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (head, None),
    };
    let (person, integration) = match owner {
        None => (None, None),
        Some(o) => match o.strip_prefix("integration:") {
            Some(i) => (None, Some(i.to_string())),
            None => (Some(o.to_string()), None),
        },
    };
    Some(Actor {
        token,
        role: Role::parse(role)?,
        scope,
        person,
        integration,
    })
}

/// Whether the recorded actor may post `event` to the issue as `rules` left it: what the API
/// would have answered.
fn permission(
    rules: &RuleSet,
    actor: &str,
    issue: &Issue,
    state: &IssueState,
    event: &Event,
) -> Option<String> {
    let a = actor_of(actor)?;
    if a.may_act(rules, issue, state, event) {
        return None;
    }
    Some(format!(
        "{actor} may not post `{}` to the issue (its departments: {})",
        event.name(),
        if state.departments.is_empty() {
            "none".to_string()
        } else {
            state.departments.join(", ")
        }
    ))
}

/// The report in the making.
struct Tally {
    limit: usize,
    counts: Counts,
    actions: u64,
    recorded: HashMap<String, u64>,
    fallbacks: HashMap<(String, String), u64>,
    skipped: HashMap<String, u64>,
    summary: Summary,
    changed: Vec<IssueReplay>,
    not_shown: u64,
}

impl Tally {
    fn new(limit: usize) -> Tally {
        Tally {
            limit,
            counts: Counts::default(),
            actions: 0,
            recorded: HashMap::new(),
            fallbacks: HashMap::new(),
            skipped: HashMap::new(),
            summary: Summary::default(),
            changed: Vec::new(),
            not_shown: 0,
        }
    }

    fn add(&mut self, page: PageResult) {
        self.summary.merge(page.summary);
        for o in page.outcomes {
            self.counts.read += 1;
            match o {
                Outcome::Skipped(why) => {
                    self.counts.skipped += 1;
                    *self.skipped.entry(why).or_default() += 1;
                }
                Outcome::Replayed {
                    replay,
                    actions,
                    fallback,
                } => {
                    self.counts.replayed += 1;
                    self.actions += actions;
                    *self
                        .recorded
                        .entry(replay.rules_version.to_string())
                        .or_default() += 1;
                    if let Some(f) = fallback {
                        *self.fallbacks.entry(f).or_default() += 1;
                    }
                    if !replay.changed() {
                        self.counts.unchanged += 1;
                        continue;
                    }
                    self.counts.changed += 1;
                    if replay.diverged.is_some() {
                        self.counts.diverged += 1;
                    }
                    if replay.refused.is_some() {
                        self.counts.refused += 1;
                    }
                    if self.changed.len() < self.limit {
                        self.changed.push(*replay);
                    } else {
                        self.not_shown += 1;
                    }
                }
            }
        }
    }

    fn finish(
        self,
        candidate: String,
        horizon: DateTime<Utc>,
        filter: ReplayFilter,
    ) -> ReplayReport {
        let mut recorded: Vec<VersionUse> = self
            .recorded
            .into_iter()
            .map(|(version, issues)| VersionUse { version, issues })
            .collect();
        recorded.sort_by(|a, b| b.issues.cmp(&a.issues).then(a.version.cmp(&b.version)));
        let mut fallbacks: Vec<Fallback> = self
            .fallbacks
            .into_iter()
            .map(|((missing, used), issues)| Fallback {
                missing,
                used,
                issues,
            })
            .collect();
        fallbacks.sort_by(|a, b| b.issues.cmp(&a.issues).then(a.missing.cmp(&b.missing)));
        let mut skipped: Vec<Skipped> = self
            .skipped
            .into_iter()
            .map(|(reason, issues)| Skipped { reason, issues })
            .collect();
        skipped.sort_by(|a, b| b.issues.cmp(&a.issues).then(a.reason.cmp(&b.reason)));
        ReplayReport {
            candidate,
            horizon,
            filter,
            issues: self.counts,
            actions: self.actions,
            recorded,
            fallbacks,
            skipped,
            summary: self.summary.groups(),
            changed: self.changed,
            changed_not_shown: self.not_shown,
        }
    }
}
