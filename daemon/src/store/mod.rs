//! The durable store: issues, their timeline, pending timers, meetings, the outbox and tokens.
//!
//! Every change an event makes (the issue's new state, the event itself, the replaced timers,
//! the queued messages, the meetings it convenes) commits in one transaction, and nothing is
//! answered before that commit. `Store` is the boundary the engine and the API see: its methods
//! and the plain types here, whatever the backend. SQLite (`sqlite.rs`) is the embedded
//! default; another backend is another variant of `Backend` with the same methods, and neither
//! the engine nor the API changes.

use std::path::Path;

use chrono::{DateTime, Utc};
use escalade_rules::{Decision, Event, Issue, IssueState};

mod sqlite;

pub use sqlite::SqliteStore;

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
    /// Only issues still someone's work.
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
    /// Continue after this `(reported_at ms, id)`.
    pub after: Option<(i64, String)>,
    pub limit: i64,
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
}

/// A pending timer that has fallen due.
#[derive(Clone, Debug)]
pub struct DueTimer {
    pub id: i64,
    pub issue_id: String,
    pub due: DateTime<Utc>,
    pub event: Event,
}

/// A queued message, as the outbox holds it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub issue_id: String,
    pub kind: String,
    pub person: String,
    pub channel: String,
    pub address: String,
    pub template: String,
    pub status: String,
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
    /// Continue after this `(at ms, id)`.
    pub after: Option<(i64, i64)>,
    pub limit: i64,
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

/// The store the engine and the API use, over one backend.
pub struct Store {
    backend: Backend,
}

enum Backend {
    Sqlite(SqliteStore),
}

/// Runs `$e` on the backend as `$s`.
macro_rules! on {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $e,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it. See
    /// `SqliteStore::open` for its durability settings.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        Ok(Store {
            backend: Backend::Sqlite(SqliteStore::open(path).await?),
        })
    }

    /// A fresh issue id.
    pub fn allocate_id(&self) -> String {
        on!(self, s => s.allocate_id())
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
        on!(self, s => s.create(issue, branch, decision, at, actor, idempotency).await)
    }

    /// Applies a decision to an issue last read at `stored.version`: its new state, the event,
    /// its timers (replacing the old ones), its messages and meetings, in one transaction;
    /// `Conflict` if the issue changed since. With `agenda`, the event is that meeting's
    /// outcome and marks the issue's agenda item done. Returns the event's sequence number
    /// after the commit.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        stored: &StoredIssue,
        event: &Event,
        decision: &Decision,
        at: DateTime<Utc>,
        actor: &str,
        agenda: Option<i64>,
    ) -> Result<i64> {
        on!(self, s => s.apply(stored, event, decision, at, actor, agenda).await)
    }

    /// Removes a timer that fired but could not be applied.
    pub async fn drop_timer(&self, id: i64) -> Result<()> {
        on!(self, s => s.drop_timer(id).await)
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

    /// The earliest pending timer, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        on!(self, s => s.next_due().await)
    }

    /// Timers due at or before `now`, earliest first.
    pub async fn due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<DueTimer>> {
        on!(self, s => s.due(now, limit).await)
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

    /// Meetings matching `f`, by time, with their agendas.
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

    /// Stores a token's hash; returns the token's id.
    pub async fn create_token(
        &self,
        hash: &str,
        role: &str,
        scope: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        on!(self, s => s.create_token(hash, role, scope, at).await)
    }

    /// Revokes a token; false if no live token has that id.
    pub async fn revoke_token(&self, id: i64, at: DateTime<Utc>) -> Result<bool> {
        on!(self, s => s.revoke_token(id, at).await)
    }

    /// The live token with this hash: `(id, role, scope)`.
    pub async fn token(&self, hash: &str) -> Result<Option<(i64, String, Option<String>)>> {
        on!(self, s => s.token(hash).await)
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
