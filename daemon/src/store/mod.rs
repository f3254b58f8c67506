//! The durable store: issues, their timeline, pending timers, meetings, the outbox and tokens.
//!
//! Every change an event makes (the issue's new state, the event itself, the replaced timers,
//! the queued messages, the meetings it convenes) commits in one transaction, and nothing is
//! answered before that commit. `Store` is the boundary the engine and the API see: its methods
//! and the plain types here, whatever the backend. SQLite (`sqlite.rs`) is the embedded
//! default; another backend is another variant of `Backend` with the same methods, and neither
//! the engine nor the API changes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use escalade_rules::{Decision, Event, Issue, IssueState};

/// Runs `$e` on the backend as `$s`.
macro_rules! on {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

pub mod backup;
pub mod copy;
#[macro_use]
mod credentials;
#[macro_use]
mod wall;
#[macro_use]
mod timers;
#[macro_use]
pub mod board;
#[macro_use]
mod throttle;
#[macro_use]
mod requests;
mod outbox;
mod plan;
mod postgres;
mod rules;
mod sqlite;
mod tokens;

pub use board::{Attention, BoardCounts};
pub use credentials::{Credential, Revoked};
pub use outbox::{Claimed, OUTBOX_STATUSES, OutboxFilter, Requeue, Settlement, StoreOptions};
pub use postgres::PgStore;
pub use rules::{OpenUses, Recorded, RuleVersionRow, ShadowDiff, ShadowKind, ShadowSummary, Use};
pub use sqlite::SqliteStore;
pub use tokens::{LAST_USED_EVERY, TOKEN_CACHE_TTL, TokenListing, TokenRow, TokenTerms};
pub use wall::{Ticked, WallCounts};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Another action on the same issue committed first; the caller decides again.
    #[error("issue {0} changed concurrently")]
    Conflict(String),
    /// A timer's firing whose claim another replica took over (its lease lapsed), or whose
    /// timer a decision replaced meanwhile: the firing is someone else's, and nothing of it
    /// was written.
    #[error("the firing of a timer of issue {0} is no longer this replica's")]
    LeaseLost(String),
    #[error("idempotency key `{0}` was used for a different request")]
    KeyReused(String),
    #[error("the store is closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An issue as stored: what was reported and where the rules left it.
#[derive(Clone, Debug)]
pub struct StoredIssue {
    pub issue: Issue,
    pub state: IssueState,
    pub version: i64,
}

/// What to list. Every filter present must hold.
#[derive(Clone, Debug, Default)]
pub struct IssueFilter {
    pub state: Option<String>,
    /// Only issues still someone's work: running, or suspended (held, clock stopped).
    pub open: bool,
    /// Assigned or co-assigned to this department.
    pub department: Option<String>,
    /// In the subtree of this unit.
    pub subtree: Option<String>,
    pub tier: Option<String>,
    /// Open with a deadline at or before this instant.
    pub overdue_at: Option<DateTime<Utc>>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Continue after this `(key, id)`: the key is `reported_at` (ms), or the nearest deadline
    /// (ms) with `by_deadline`.
    pub after: Option<(i64, String)>,
    pub limit: i64,
    /// By the nearest deadline (acknowledge or resolve) instead of report order.
    pub by_deadline: bool,
    /// Reported by this person.
    pub reporter: Option<String>,
    /// The latest key first (and `after` continues towards earlier ones).
    pub newest_first: bool,
    /// Open and needing attention: overdue, or raised above the first tier.
    pub attention: Option<Attention>,
}

/// A listed issue and the cursor that continues after it.
#[derive(Clone, Debug)]
pub struct Listed {
    pub issue: StoredIssue,
    pub cursor: String,
}

/// One entry of an issue's timeline.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TimelineEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub rules_version: String,
    /// What the event's decision did, readably (`escalade_rules::effects::Effects`); none for
    /// events stored before decisions carried it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effects: Option<serde_json::Value>,
    /// The decision's messages, from which the effects' `told` is filled in when served.
    #[serde(skip)]
    pub messages: Option<serde_json::Value>,
    /// The issue's state after the decision: the effects compare it with the one before.
    #[serde(skip)]
    pub next: Option<escalade_rules::IssueState>,
}

/// A pending timer that has fallen due.
/// Counts of what the store holds, read when the metrics are scraped.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// Open issues: assigned, acknowledged, in progress or suspended (what queues list).
    pub open: i64,
    /// Open issues with an acknowledge or resolve deadline passed.
    pub overdue: i64,
    /// Timers waiting to fire.
    pub timers: i64,
    /// Outbox rows: channel, status, count.
    pub outbox: Vec<(String, String, i64)>,
}

#[derive(Clone, Debug)]
pub struct DueTimer {
    pub id: i64,
    pub issue_id: String,
    pub due: DateTime<Utc>,
    pub event: Event,
    /// The claim's fencing token: the firing's write is taken only while the timer still
    /// carries it (`Firing`).
    pub fence: i64,
}

/// A timer being fired: its decision is written only if the timer is still there with this
/// claim's fence (no other replica took it over, no decision replaced it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Firing {
    pub timer: i64,
    pub fence: i64,
}

/// A message (or, on channel `webhook`, an event) in the outbox, with its delivery so far.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OutboxRow {
    pub id: i64,
    /// The issue, for a message of an issue or an event (none for a job's report).
    pub issue_id: Option<String>,
    pub event_seq: Option<i64>,
    pub kind: String,
    pub person: String,
    pub channel: String,
    pub address: String,
    pub template: String,
    pub locale: String,
    /// `queued`, `sending` (claimed by a worker), `sent`, `dead`, or `stale` (claimed longer
    /// than the policy's age after it was due: not sent, kept until retried).
    pub status: String,
    /// Of an urgent issue: never held by quiet hours or a digest.
    pub urgent: bool,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Not sent before this instant (quiet hours, a digest window, a retry's backoff).
    pub not_before: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// SMS: the segments the text was sent as.
    pub segments: Option<i64>,
    /// When it was due: its creation, or the end of the quiet hours or digest window that held
    /// it. Its age, against the policy's `stale_after`, counts from here.
    pub due_at: DateTime<Utc>,
    /// When it was last retried by hand (a dead letter, a stale message): it is then sent
    /// whatever its age.
    pub retried_at: Option<DateTime<Utc>>,
}

/// Which meetings to list. Every filter present must hold.
#[derive(Clone, Debug, Default)]
pub struct MeetingFilter {
    pub id: Option<i64>,
    pub status: Option<String>,
    /// Among the departments invited.
    pub department: Option<String>,
    /// With an agenda issue in the subtree of this unit.
    pub subtree: Option<String>,
    /// With this issue on its agenda.
    pub issue: Option<String>,
    /// Continue after this `(at ms, id)`.
    pub after: Option<(i64, i64)>,
    pub limit: i64,
    /// The latest first (and `after` continues towards earlier ones), instead of by time.
    pub latest_first: bool,
}

/// A joint meeting: when it sits, who is invited, what is on its agenda, and its outcome once
/// held.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Meeting {
    pub id: i64,
    /// The meeting's id in the rules.
    pub kind: String,
    pub at: DateTime<Utc>,
    pub participants: Vec<String>,
    pub departments: Vec<String>,
    /// `scheduled` or `held`.
    pub status: String,
    pub outcome: Option<serde_json::Value>,
    pub recorded_by: Option<String>,
    pub recorded_at: Option<DateTime<Utc>>,
    pub agenda: Vec<AgendaItem>,
}

/// An issue on a meeting's agenda.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AgendaItem {
    pub issue: String,
    /// The event that put it there.
    pub added_seq: i64,
    /// The outcome's event on the issue, once applied.
    pub outcome_seq: Option<i64>,
    /// Why the outcome was not applied, if it was not.
    pub skipped: Option<String>,
}

/// What a submission returned: the issue, and whether this is a replay of an earlier request
/// with the same idempotency key.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub issue: StoredIssue,
    pub replayed: bool,
}

/// An open issue with a deadline passed, for the overdue digest.
#[derive(Clone, Debug)]
pub struct OverdueRow {
    pub id: String,
    pub category: String,
    pub unit: String,
    /// `/city/d1/s1/g1/`: the unit and its ancestors.
    pub branch: String,
    pub department: Option<String>,
    pub acknowledge_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
}

/// A report message to queue: to one person on one channel, a report template and its
/// variables.
#[derive(Clone, Debug)]
pub struct ReportMessage {
    pub person: String,
    pub channel: escalade_rules::Channel,
    pub address: String,
    pub locale: String,
    /// The report kind, which is its template.
    pub template: String,
    pub vars: serde_json::Value,
}

/// The store the engine and the API use, over one backend.
pub struct Store {
    backend: Backend,
    /// Live tokens recently looked up, by hash: every request checks its token, and a read per
    /// request would cost more than the rest of a submission's reads and writes together.
    tokens: Mutex<HashMap<String, (Instant, TokenRow)>>,
    /// When this store last wrote each token's use (`Store::token_used`).
    used: Mutex<HashMap<i64, DateTime<Utc>>>,
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Which database a store lives in, as `database:` (or `ESCALADE_DATABASE`) names it:
/// `postgres://...` (or `postgresql://...`) for PostgreSQL, else an SQLite file (`sqlite:PATH`
/// or a bare path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Database {
    pub fn parse(s: &str) -> Database {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Database::Postgres(s.to_string())
        } else {
            Database::Sqlite(s.strip_prefix("sqlite:").unwrap_or(s).into())
        }
    }

    /// The database as an operator reads it: a PostgreSQL URL without its password.
    pub fn display(&self) -> String {
        match self {
            Database::Sqlite(p) => p.display().to_string(),
            Database::Postgres(url) => match url.split_once("://") {
                Some((scheme, rest)) => match rest.split_once('@') {
                    Some((user, host)) => {
                        let user = user.split(':').next().unwrap_or("");
                        format!("{scheme}://{user}@{host}")
                    }
                    None => url.clone(),
                },
                None => url.clone(),
            },
        }
    }
}

impl Store {
    /// Opens the store in `database` (creating and migrating it as needed) with `options`.
    pub async fn open(database: &Database, options: StoreOptions) -> Result<Store> {
        match database {
            Database::Sqlite(path) => Store::open_sqlite_with(path, options).await,
            Database::Postgres(url) => Store::open_postgres_with(url, options).await,
        }
    }

    /// Opens (creating if needed) the SQLite database at `path` and migrates it. See
    /// `SqliteStore::open` for its durability settings.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        Ok(Store::over(Backend::Sqlite(SqliteStore::open(path).await?)))
    }

    fn over(backend: Backend) -> Store {
        Store {
            backend,
            tokens: Mutex::new(HashMap::new()),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh issue id: from the database's sequence on PostgreSQL (replicas share it), from
    /// the largest stored id on SQLite (one process owns the file).
    pub async fn allocate_id(&self) -> Result<String> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(s.allocate_id()),
            Backend::Postgres(s) => s.allocate_id().await,
        }
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The issue a key was first used for, if the key is known; `KeyReused` if the request
    /// differs from the first.
    pub async fn idempotent(&self, key: &str, request_hash: &str) -> Result<Option<StoredIssue>> {
        on!(self, s => s.idempotent(key, request_hash).await)
    }

    /// Stores a new issue with its first decision, atomically with its idempotency key (a key
    /// already used answers the first issue, `replayed`). Returns after the commit.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        issue: &Issue,
        branch: &str,
        decision: &Decision,
        at: DateTime<Utc>,
        actor: &str,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Submitted> {
        on!(self, s => s.writes().create(issue, branch, decision, at, actor, idempotency).await)
    }

    /// Applies a decision to an issue last read at `stored.version`: its new state, the event,
    /// its timers (replacing the old ones), its messages and meetings, in one transaction;
    /// `Conflict` if the issue changed since. With `agenda`, the event is that meeting's
    /// outcome and marks the issue's agenda item done. With `firing`, the event is that
    /// timer's and is written only under its claim (`LeaseLost` otherwise). Returns the
    /// event's sequence number after the commit.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        stored: &StoredIssue,
        event: &Event,
        decision: &Decision,
        at: DateTime<Utc>,
        actor: &str,
        agenda: Option<i64>,
        firing: Option<Firing>,
    ) -> Result<i64> {
        on!(self, s => s.writes().apply(stored, event, decision, at, actor, agenda, firing).await)
    }

    /// Removes a timer that fired but could not be applied.
    pub async fn drop_timer(&self, id: i64) -> Result<()> {
        on!(self, s => s.drop_timer(id).await)
    }

    /// Moves a timer that could not be decided now (the machine was too busy) to `due`.
    pub async fn postpone_timer(&self, id: i64, due: DateTime<Utc>) -> Result<()> {
        on!(self, s => s.postpone_timer(id, due).await)
    }

    pub async fn issue(&self, id: &str) -> Result<Option<StoredIssue>> {
        on!(self, s => s.issue(id).await)
    }

    /// The issue as the engine reads it before deciding: it reflects every answered write.
    pub async fn issue_for_update(&self, id: &str) -> Result<Option<StoredIssue>> {
        on!(self, s => s.issue_for_update(id).await)
    }

    pub async fn timeline(&self, id: &str) -> Result<Vec<TimelineEntry>> {
        on!(self, s => s.timeline(id).await)
    }

    /// When the earliest pending timer may be claimed (its due time, or the end of another
    /// replica's claim on it), if there is one.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        on!(self, s => s.next_due().await)
    }

    /// Claims timers due at or before `now`, earliest first, until `lease_until`: on
    /// PostgreSQL no other replica claims them before then (a replica that dies leaves them to
    /// the others once it passes); on SQLite one process owns every timer.
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueTimer>> {
        on!(self, s => s.claim_due(now, lease_until, limit).await)
    }

    /// Extends this replica's claims on `timers` (still its own) to `lease_until`.
    pub async fn renew_claims(&self, timers: &[Firing], lease_until: DateTime<Utc>) -> Result<()> {
        on!(self, s => s.renew_claims(timers, lease_until).await)
    }

    /// Takes or keeps the lease `name` for this replica until `until` (it is free when nobody
    /// holds it or its holder's lease ended by `now`); false if another replica holds it. On
    /// SQLite the one process always holds it.
    pub async fn lead(&self, name: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(s) => s.lead(name, now, until).await,
        }
    }

    /// Whether photos live in the database (PostgreSQL: every replica reads them there, and
    /// each keeps a copy of those it served in its photo directory) rather than only in the
    /// photo directory (SQLite: one process owns it).
    pub fn keeps_photos(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Stores photos in the database, once each by their hash: `(hash, type, bytes)`. Nothing
    /// on SQLite, whose photos live in the photo directory alone.
    pub async fn put_photos(
        &self,
        photos: &[(String, &str, Vec<u8>)],
        at: DateTime<Utc>,
    ) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(s) => s.put_photos(photos, at).await,
        }
    }

    /// A photo's bytes and type from the database; none on SQLite or if it is not there.
    pub async fn photo(&self, hash: &str) -> Result<Option<(Vec<u8>, String)>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(s) => s.photo(hash).await,
        }
    }

    /// Removes from the database the photos nothing committed names that were stored before
    /// `before`; how many. Nothing on SQLite.
    pub async fn sweep_photos(&self, before: DateTime<Utc>) -> Result<u64> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(0),
            Backend::Postgres(s) => s.sweep_photos(before).await,
        }
    }

    /// This replica's name in the claims and leases it holds (none on SQLite).
    pub fn replica(&self) -> Option<&str> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(s) => Some(s.replica()),
        }
    }

    /// How often the scheduler looks for due timers at least: other replicas add timers this
    /// one is not told of (on PostgreSQL); none on SQLite, where every timer is this process's.
    pub fn poll_every(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(s) => Some(s.poll_every()),
        }
    }

    /// Tells the other replicas that a timer just committed falls due at `due`, so that one
    /// sleeping past it looks sooner (PostgreSQL; a hint, debounced, sent after the commit).
    /// Nothing on SQLite, where one process owns every timer.
    pub fn hint_timer(&self, due: DateTime<Utc>) {
        if let Backend::Postgres(s) = &self.backend {
            s.hint_timer(due);
        }
    }

    /// When a timer falls due that another replica committed and told of: waits for the next
    /// such hint (forever on SQLite). Cancel-safe.
    pub async fn timer_hint(&self) -> DateTime<Utc> {
        match &self.backend {
            Backend::Sqlite(_) => std::future::pending().await,
            Backend::Postgres(s) => s.timer_hint().await,
        }
    }

    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        on!(self, s => s.outbox(limit).await)
    }

    /// Issues matching `f`, in report order, from after its cursor.
    pub async fn list(&self, f: &IssueFilter) -> Result<Vec<Listed>> {
        on!(self, s => s.list(f).await)
    }

    /// A meeting with its agenda.
    pub async fn meeting(&self, id: i64) -> Result<Option<Meeting>> {
        on!(self, s => s.meeting(id).await)
    }

    /// Meetings matching `f`, by time (or the latest first), with their agendas.
    pub async fn meetings(&self, f: &MeetingFilter) -> Result<Vec<Meeting>> {
        on!(self, s => s.meetings(f).await)
    }

    /// Marks a scheduled meeting held with its outcome; false if it was not scheduled.
    pub async fn hold_meeting(
        &self,
        id: i64,
        outcome: &serde_json::Value,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        on!(self, s => s.hold_meeting(id, outcome, actor, at).await)
    }

    /// Records why a meeting's outcome was not applied to an agenda issue.
    pub async fn skip_agenda_item(&self, meeting: i64, issue: &str, why: &str) -> Result<()> {
        on!(self, s => s.skip_agenda_item(meeting, issue, why).await)
    }

    /// Open issues with a deadline at or before `now`.
    pub async fn overdue_issues(&self, now: DateTime<Utc>) -> Result<Vec<OverdueRow>> {
        on!(self, s => s.overdue_issues(now).await)
    }

    /// Each department's figures over `[from, to)`.
    pub async fn scorecard(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<escalade_rules::scoring::DepartmentFigures>> {
        on!(self, s => s.scorecard(from, to).await)
    }

    /// Each unit's counts over `[from, to)`, by the unit an issue was reported in.
    pub async fn unit_figures(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<escalade_rules::scoring::UnitFigures>> {
        on!(self, s => s.unit_figures(from, to).await)
    }

    /// When the daemon first saw a job (now, if it is new).
    pub async fn job_since(&self, job: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        on!(self, s => s.job_since(job, now).await)
    }

    /// The latest scheduled time a job ran for.
    pub async fn last_run(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        on!(self, s => s.last_run(job).await)
    }

    /// Records a job's run for `scheduled_at` with its messages, at most once per scheduled
    /// time; false if it was recorded already.
    pub async fn record_run(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        ran_at: DateTime<Utc>,
        messages: &[ReportMessage],
    ) -> Result<bool> {
        on!(self, s => s.record_run(job, scheduled_at, ran_at, messages).await)
    }

    /// What the store holds now, for the metrics' gauges.
    pub async fn gauges(&self, now: DateTime<Utc>) -> Result<Gauges> {
        on!(self, s => s.gauges(now).await)
    }

    /// Every photo name a committed issue or resolution holds.
    pub async fn photo_names(&self) -> Result<std::collections::HashSet<String>> {
        on!(self, s => s.photo_names().await)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        on!(self, s => s.ping().await)
    }

    /// Closes the backend, waiting for its connections.
    pub async fn close(&self) {
        on!(self, s => s.close().await)
    }
}
