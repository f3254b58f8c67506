//! The SQLite backend: the embedded default.
//!
//! WAL with `synchronous = FULL`; one writer connection fed by a group commit (every write
//! waiting joins one transaction, a few multi-row statements per batch, one fsync), and a pool
//! of readers.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use escalade_rules::MeetingCall;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqliteExecutor};

mod outbox;
mod reports;
mod rules;
mod tokens;

use super::plan;
use super::{
    AgendaItem, DueTimer, IssueFilter, Listed, Meeting, MeetingFilter, OutboxRow, Result,
    StoreError, StoredIssue, TimelineEntry,
};

pub struct SqliteStore {
    /// One connection writes: SQLite has one writer anyway, and queueing in-process avoids
    /// "database is locked" between deferred transactions.
    writer: SqlitePool,
    reader: SqlitePool,
    next_id: AtomicI64,
    /// Writes of issues and events go to the group-commit task.
    writes: plan::Writes,
    /// Queue every committed event for the webhook too (read by the group commit per batch).
    webhook_events: Arc<AtomicBool>,
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn instant(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("instant {ms} out of range")))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

credential_queries!(SqliteStore, writer, reader);
wall_queries!(SqliteStore, reader);
timer_queries!(SqliteStore, reader);
board_queries!(SqliteStore, reader);
throttle_queries!(SqliteStore, writer, reader);
request_queries!(SqliteStore, reader, "");

impl SqliteStore {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    ///
    /// WAL with `synchronous = FULL`: a commit is on disk before it returns, so an issue
    /// answered 201 survives power loss, not only a crash of the process (NORMAL would risk the
    /// last commits on power loss).
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(CAST(id AS INTEGER)) FROM issues")
            .fetch_one(&writer)
            .await?;
        let webhook_events = Arc::new(AtomicBool::new(false));
        let writes = plan::Writes::start(Writer(writer.clone()), webhook_events.clone());
        Ok(SqliteStore {
            writer,
            reader,
            next_id: AtomicI64::new(max.unwrap_or(0) + 1),
            writes,
            webhook_events,
        })
    }

    /// A fresh issue id. Ids are allocated in memory from the largest stored one: one process
    /// owns an SQLite file.
    pub fn allocate_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// The issue a key was first used for, if the key is known; `KeyReused` if the request
    /// differs from the first. Read outside the group commit, which checks again inside its
    /// transaction: a key first used a moment ago is still caught there.
    pub async fn idempotent(&self, key: &str, request_hash: &str) -> Result<Option<StoredIssue>> {
        let mut conn = self.reader.acquire().await?;
        keyed_issue(&mut conn, key, request_hash).await
    }

    /// The queue of this store's writes of issues (the group commit).
    pub(super) fn writes(&self) -> &plan::Writes {
        &self.writes
    }

    /// Removes a timer that fired but whose event changed nothing (it was stale).
    pub async fn drop_timer(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM timers WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn postpone_timer(&self, id: i64, due: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE timers SET due = ? WHERE id = ?")
            .bind(millis(due))
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn issue(&self, id: &str) -> Result<Option<StoredIssue>> {
        self.issue_on(&self.reader, id).await
    }

    async fn issue_on(&self, pool: &SqlitePool, id: &str) -> Result<Option<StoredIssue>> {
        fetch_issue(pool, id).await
    }

    /// The issue as the engine reads it before deciding. Through a reader: in WAL mode a read
    /// that starts after a commit sees it, and should another writer have changed the issue
    /// since, the write's version check refuses it and the engine decides again. Reading through
    /// the one writer connection would queue every action behind the group commit.
    pub async fn issue_for_update(&self, id: &str) -> Result<Option<StoredIssue>> {
        self.issue_on(&self.reader, id).await
    }

    pub async fn timeline(&self, id: &str) -> Result<Vec<TimelineEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, kind, payload, rules_version, json_extract(decision, '$.effects'), json_extract(decision, '$.messages'), json_extract(decision, '$.next') FROM events WHERE issue_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(TimelineEntry {
                    seq: r.get(0),
                    at: instant(r.get(1))?,
                    actor: r.get(2),
                    kind: r.get(3),
                    payload: parse("event payload", r.get::<&str, _>(4))?,
                    rules_version: r.get(5),
                    effects: r
                        .get::<Option<&str>, _>(6)
                        .map(|e| parse("decision effects", e))
                        .transpose()?,
                    messages: r
                        .get::<Option<&str>, _>(7)
                        .map(|e| parse("decision messages", e))
                        .transpose()?,
                    next: r
                        .get::<Option<&str>, _>(8)
                        .map(|e| parse("decision state", e))
                        .transpose()?,
                })
            })
            .collect()
    }

    /// The earliest pending timer, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let due: Option<i64> = sqlx::query_scalar("SELECT MIN(due) FROM timers")
            .fetch_one(&self.reader)
            .await?;
        due.map(instant).transpose()
    }

    /// Timers due at or before `now`, earliest first. One process owns an SQLite store and
    /// one scheduler fires its timers, so a claim is a read: nobody else could take them.
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        _lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueTimer>> {
        let rows = sqlx::query(
            "SELECT id, issue_id, due, event, fence FROM timers WHERE due <= ? ORDER BY due, id LIMIT ?",
        )
        .bind(millis(now))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DueTimer {
                    id: r.get(0),
                    issue_id: r.get(1),
                    due: instant(r.get(2))?,
                    event: parse("timer event", r.get::<&str, _>(3))?,
                    fence: r.get(4),
                })
            })
            .collect()
    }

    /// Nothing to extend: claims on SQLite never lapse (see `claim_due`).
    pub async fn renew_claims(
        &self,
        _timers: &[super::Firing],
        _lease_until: DateTime<Utc>,
    ) -> Result<()> {
        Ok(())
    }

    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        self.outbox_page(&super::OutboxFilter {
            limit,
            ..Default::default()
        })
        .await
    }

    /// Issues matching `f`, in report order (or by their nearest deadline), from after its
    /// cursor.
    pub async fn list(&self, f: &IssueFilter) -> Result<Vec<Listed>> {
        // The key issues are listed by: when reported, or the nearest deadline (an issue with
        // none last).
        let key = if f.by_deadline {
            "(CASE WHEN acknowledge_by IS NULL THEN COALESCE(resolve_by, 9223372036854775807) \
             WHEN resolve_by IS NULL THEN acknowledge_by \
             ELSE MIN(acknowledge_by, resolve_by) END)"
        } else {
            "reported_at"
        };
        // The page is chosen by ids and keys first (an index covers them for a queue), and only
        // its rows' bodies are read: sorting thousands of whole rows for fifty costs more.
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT id, body, state, version, {key} FROM issues WHERE id IN (
             SELECT id FROM issues WHERE 1 = 1"
        ));
        if let Some(v) = &f.state {
            q.push(" AND status = ").push_bind(v.clone());
        }
        if f.open {
            q.push(" AND status IN ('assigned', 'acknowledged', 'in_progress', 'suspended')");
        }
        if let Some(v) = &f.department {
            q.push(" AND id IN (SELECT issue_id FROM assignments WHERE department = ")
                .push_bind(v.clone())
                .push(")");
        }
        if let Some(v) = &f.subtree {
            q.push(" AND instr(branch, ")
                .push_bind(format!("/{v}/"))
                .push(") > 0");
        }
        if let Some(v) = &f.tier {
            q.push(" AND tier = ").push_bind(v.clone());
        }
        if let Some(v) = &f.reporter {
            q.push(" AND reporter = ").push_bind(v.clone());
        }
        if let Some(a) = &f.attention {
            let at = millis(a.at);
            q.push(
                " AND status IN ('assigned', 'acknowledged', 'in_progress', 'suspended') \
                 AND ((status <> 'suspended' AND (acknowledge_by <= ",
            )
            .push_bind(at)
            .push(" OR resolve_by <= ")
            .push_bind(at)
            .push(")) OR tier <> ")
            .push_bind(a.first_tier.clone())
            .push(")");
        }
        if let Some(t) = f.overdue_at {
            q.push(" AND status IN ('assigned', 'acknowledged', 'in_progress') AND (acknowledge_by <= ")
                .push_bind(millis(t))
                .push(" OR resolve_by <= ")
                .push_bind(millis(t))
                .push(")");
        }
        if let Some(t) = f.from {
            q.push(" AND reported_at >= ").push_bind(millis(t));
        }
        if let Some(t) = f.to {
            q.push(" AND reported_at < ").push_bind(millis(t));
        }
        let (after, order) = if f.newest_first {
            ("<", " DESC")
        } else {
            (">", "")
        };
        if let Some((at, id)) = &f.after {
            q.push(format!(" AND ({key} {after} "))
                .push_bind(*at)
                .push(format!(" OR ({key} = "))
                .push_bind(*at)
                .push(format!(" AND id {after} "))
                .push_bind(id.clone())
                .push("))");
        }
        q.push(format!(" ORDER BY {key}{order}, id{order} LIMIT "))
            .push_bind(f.limit)
            .push(format!(") ORDER BY {key}{order}, id{order}"));
        let rows = q.build().fetch_all(&self.reader).await?;
        rows.into_iter()
            .map(|r| {
                Ok(Listed {
                    issue: StoredIssue {
                        issue: parse("issue body", r.get::<&str, _>(1))?,
                        state: parse("issue state", r.get::<&str, _>(2))?,
                        version: r.get(3),
                    },
                    cursor: format!("{}:{}", r.get::<i64, _>(4), r.get::<String, _>(0)),
                })
            })
            .collect()
    }

    /// A meeting with its agenda.
    pub async fn meeting(&self, id: i64) -> Result<Option<Meeting>> {
        let f = MeetingFilter {
            id: Some(id),
            limit: 1,
            ..Default::default()
        };
        Ok(self.meetings(&f).await?.into_iter().next())
    }

    /// Meetings matching `f`, by time, with their agendas.
    pub async fn meetings(&self, f: &MeetingFilter) -> Result<Vec<Meeting>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, kind, at, participants, departments, status, outcome, recorded_by, recorded_at FROM meetings m WHERE 1 = 1",
        );
        if let Some(id) = f.id {
            q.push(" AND id = ").push_bind(id);
        }
        if let Some(st) = &f.status {
            q.push(" AND status = ").push_bind(st.clone());
        }
        if let Some(d) = &f.department {
            q.push(" AND EXISTS (SELECT 1 FROM json_each(m.departments) WHERE value = ")
                .push_bind(d.clone())
                .push(")");
        }
        if let Some(u) = &f.subtree {
            q.push(
                " AND EXISTS (SELECT 1 FROM meeting_agenda a JOIN issues i ON i.id = a.issue_id WHERE a.meeting_id = m.id AND instr(i.branch, ",
            )
            .push_bind(format!("/{u}/"))
            .push(") > 0)");
        }
        if let Some(issue) = &f.issue {
            q.push(
                " AND EXISTS (SELECT 1 FROM meeting_agenda a WHERE a.meeting_id = m.id AND a.issue_id = ",
            )
            .push_bind(issue.clone())
            .push(")");
        }
        let (later, order) = if f.latest_first {
            ("<", " ORDER BY at DESC, id DESC LIMIT ")
        } else {
            (">", " ORDER BY at, id LIMIT ")
        };
        if let Some((at, id)) = f.after {
            q.push(format!(" AND (at {later} "))
                .push_bind(at)
                .push(" OR (at = ")
                .push_bind(at)
                .push(format!(" AND id {later} "))
                .push_bind(id)
                .push("))");
        }
        q.push(order).push_bind(f.limit);
        let rows = q.build().fetch_all(&self.reader).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.get(0);
            let agenda = sqlx::query(
                "SELECT issue_id, added_seq, outcome_seq, skipped FROM meeting_agenda WHERE meeting_id = ? ORDER BY added_seq",
            )
            .bind(id)
            .fetch_all(&self.reader)
            .await?
            .into_iter()
            .map(|a| AgendaItem {
                issue: a.get(0),
                added_seq: a.get(1),
                outcome_seq: a.get(2),
                skipped: a.get(3),
            })
            .collect();
            out.push(Meeting {
                id,
                kind: r.get(1),
                at: instant(r.get(2))?,
                participants: parse("meeting participants", r.get::<&str, _>(3))?,
                departments: parse("meeting departments", r.get::<&str, _>(4))?,
                status: r.get(5),
                outcome: r
                    .get::<Option<&str>, _>(6)
                    .map(|o| parse("meeting outcome", o))
                    .transpose()?,
                recorded_by: r.get(7),
                recorded_at: r.get::<Option<i64>, _>(8).map(instant).transpose()?,
                agenda,
            });
        }
        Ok(out)
    }

    /// Marks a scheduled meeting held with its outcome; false if it was not scheduled (held
    /// already, or unknown).
    pub async fn hold_meeting(
        &self,
        id: i64,
        outcome: &serde_json::Value,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE meetings SET status = 'held', outcome = ?, recorded_by = ?, recorded_at = ? WHERE id = ? AND status = 'scheduled'",
        )
        .bind(json(outcome))
        .bind(actor)
        .bind(millis(at))
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records why a meeting's outcome was not applied to an agenda issue.
    pub async fn skip_agenda_item(&self, meeting: i64, issue: &str, why: &str) -> Result<()> {
        sqlx::query(
            "UPDATE meeting_agenda SET skipped = ? WHERE meeting_id = ? AND issue_id = ? AND outcome_seq IS NULL",
        )
        .bind(why)
        .bind(meeting)
        .bind(issue)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Whether the database answers.
    pub async fn gauges(&self, now: DateTime<Utc>) -> Result<super::Gauges> {
        let t = millis(now);
        let (open, overdue, timers): (i64, i64, i64) = sqlx::query_as(
            "SELECT
               (SELECT COUNT(*) FROM issues
                 WHERE status IN ('assigned', 'acknowledged', 'in_progress', 'suspended')),
               (SELECT COUNT(*) FROM issues
                 WHERE status IN ('assigned', 'acknowledged', 'in_progress')
                   AND (acknowledge_by <= ? OR resolve_by <= ?)),
               (SELECT COUNT(*) FROM timers)",
        )
        .bind(t)
        .bind(t)
        .fetch_one(&self.reader)
        .await?;
        let outbox: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status ORDER BY 1, 2",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(super::Gauges {
            open,
            overdue,
            timers,
            outbox,
        })
    }

    pub async fn photo_names(&self) -> Result<std::collections::HashSet<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(PHOTO_NAMES).fetch_all(&self.reader).await?;
        Ok(rows.into_iter().map(|(h,)| h).collect())
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Closes both pools, waiting for their connections.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// The photos committed issues and resolutions name: what the photo sweep keeps and what a
/// backup holds (`store::backup`).
pub(super) const PHOTO_NAMES: &str =
    "SELECT j.value FROM issues, json_each(issues.body, '$.photos') AS j
     UNION
     SELECT j.value FROM events, json_each(events.payload, '$.photos') AS j
     WHERE events.kind = 'resolved'";

/// Bound parameters per statement at most (SQLite allows 32,766).
const MAX_VARS: usize = 32_000;

/// A batch's transaction on the writer connection, executing the plan's row sets.
pub(super) struct SqliteTx(sqlx::Transaction<'static, Sqlite>);

/// The writer pool, as the group commit begins its batches on it.
struct Writer(SqlitePool);

impl plan::Begin for Writer {
    type Tx = SqliteTx;

    async fn begin(&self) -> sqlx::Result<SqliteTx> {
        let mut tx = self.0.begin().await?;
        // Keys are stored before their issues (`plan`): foreign keys are checked at commit.
        sqlx::query("PRAGMA defer_foreign_keys = ON")
            .execute(&mut *tx)
            .await?;
        Ok(SqliteTx(tx))
    }

    fn transient(_: &sqlx::Error) -> bool {
        // One process writes, through one connection: nothing aborts a batch but a real fault.
        false
    }
}

impl plan::Executor for SqliteTx {
    async fn known_keys(
        &mut self,
        keys: &[&str],
    ) -> sqlx::Result<HashMap<String, (String, String)>> {
        let mut known = HashMap::new();
        for chunk in keys.chunks(MAX_VARS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT key, request_hash, issue_id FROM idempotency_keys WHERE key IN (",
            );
            let mut list = q.separated(", ");
            for k in chunk {
                list.push_bind(*k);
            }
            q.push(")");
            for r in q.build().fetch_all(&mut *self.0).await? {
                known.insert(r.get(0), (r.get(1), r.get(2)));
            }
        }
        Ok(known)
    }

    async fn issue(&mut self, id: &str) -> Result<Option<StoredIssue>> {
        fetch_issue(&mut *self.0, id).await
    }

    async fn claim_keys(&mut self, rows: &[plan::KeyRow<'_>]) -> sqlx::Result<HashSet<String>> {
        let mut claimed = HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_VARS / 4) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO idempotency_keys (key, request_hash, issue_id, created_at) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.key)
                    .push_bind(r.hash)
                    .push_bind(r.issue_id)
                    .push_bind(r.at);
            });
            q.push(" ON CONFLICT (key) DO NOTHING RETURNING key");
            for r in q.build().fetch_all(&mut *self.0).await? {
                claimed.insert(r.get(0));
            }
        }
        Ok(claimed)
    }

    async fn insert_issues(&mut self, rows: &[plan::IssueRow<'_>]) -> sqlx::Result<()> {
        for chunk in rows.chunks(MAX_VARS / 17) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO issues (id, version, body, state, status, category, unit, department, tier, reported_at, updated_at, branch, acknowledge_by, resolve_by, reporter, request_kind, request_by) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(1i64)
                    .push_bind(&r.body)
                    .push_bind(&r.state)
                    .push_bind(r.status)
                    .push_bind(r.category)
                    .push_bind(r.unit)
                    .push_bind(r.department)
                    .push_bind(r.tier)
                    .push_bind(r.at)
                    .push_bind(r.at)
                    .push_bind(r.branch)
                    .push_bind(r.acknowledge_by)
                    .push_bind(r.resolve_by)
                    .push_bind(r.reporter)
                    .push_bind(r.request_kind)
                    .push_bind(r.request_by);
            });
            q.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn fences(&mut self, timers: &[i64]) -> sqlx::Result<HashMap<i64, i64>> {
        let mut fences = HashMap::with_capacity(timers.len());
        for chunk in timers.chunks(MAX_VARS) {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT id, fence FROM timers WHERE id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            for r in q.build().fetch_all(&mut *self.0).await? {
                fences.insert(r.get(0), r.get(1));
            }
        }
        Ok(fences)
    }

    async fn update_issues(
        &mut self,
        rows: &[plan::IssueUpdate<'_>],
    ) -> sqlx::Result<HashSet<String>> {
        let mut changed = HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_VARS / 13) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "UPDATE issues SET version = issues.version + 1, state = v.column3, status = v.column4,
                 department = v.column5, tier = v.column6, updated_at = v.column7,
                 acknowledge_by = v.column8, resolve_by = v.column9,
                 request_kind = v.column12, request_by = v.column13 FROM (",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.version)
                    .push_bind(&r.state)
                    .push_bind(r.status)
                    .push_bind(r.department)
                    .push_bind(r.tier)
                    .push_bind(r.at)
                    .push_bind(r.acknowledge_by)
                    .push_bind(r.resolve_by)
                    .push_bind(r.firing.map(|f| f.timer))
                    .push_bind(r.firing.map(|f| f.fence))
                    .push_bind(r.request_kind)
                    .push_bind(r.request_by);
            });
            q.push(
                ") AS v WHERE issues.id = v.column1 AND issues.version = v.column2
                 AND (v.column10 IS NULL OR EXISTS
                      (SELECT 1 FROM timers t WHERE t.id = v.column10 AND t.fence = v.column11))
                 RETURNING id",
            );
            for r in q.build().fetch_all(&mut *self.0).await? {
                changed.insert(r.get(0));
            }
        }
        Ok(changed)
    }

    async fn insert_events(
        &mut self,
        rows: &[plan::EventRow<'_>],
    ) -> sqlx::Result<HashMap<String, i64>> {
        let mut seqs = HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_VARS / 7) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (issue_id, at, actor, kind, payload, rules_version, decision) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.issue_id)
                    .push_bind(r.at)
                    .push_bind(r.actor)
                    .push_bind(r.kind)
                    .push_bind(&r.payload)
                    .push_bind(r.rules_version)
                    .push_bind(&r.decision);
            });
            q.push(" RETURNING seq, issue_id");
            for r in q.build().fetch_all(&mut *self.0).await? {
                seqs.insert(r.get(1), r.get(0));
            }
        }
        Ok(seqs)
    }

    async fn delete_of_issues(
        &mut self,
        table: plan::Replaced,
        issues: &[&str],
    ) -> sqlx::Result<()> {
        for chunk in issues.chunks(MAX_VARS) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "DELETE FROM {} WHERE issue_id IN (",
                table.table()
            ));
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn insert_timers(&mut self, rows: &[plan::TimerRow<'_>]) -> sqlx::Result<()> {
        for chunk in rows.chunks(MAX_VARS / 3) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO timers (issue_id, due, event) ");
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.issue_id).push_bind(r.due).push_bind(&r.event);
            });
            q.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn insert_outbox(&mut self, rows: &[plan::OutboxInsert<'_>]) -> sqlx::Result<()> {
        for chunk in rows.chunks(MAX_VARS / 13) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (dedupe_key, issue_id, event_seq, kind, person, channel, address, template, locale, vars, created_at, urgent, not_before) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(&r.dedupe_key)
                    .push_bind(r.issue_id)
                    .push_bind(r.event_seq)
                    .push_bind(r.kind)
                    .push_bind(&r.person)
                    .push_bind(r.channel)
                    .push_bind(&r.address)
                    .push_bind(&r.template)
                    .push_bind(&r.locale)
                    .push_bind(&r.vars)
                    .push_bind(r.at)
                    .push_bind(r.urgent)
                    .push_bind(r.at);
            });
            q.push(" ON CONFLICT (dedupe_key) DO NOTHING");
            q.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn insert_assignments(&mut self, rows: &[plan::AssignmentRow<'_>]) -> sqlx::Result<()> {
        for chunk in rows.chunks(MAX_VARS / 3) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO assignments (department, issue_id, lead) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.department)
                    .push_bind(r.issue_id)
                    .push_bind(r.lead);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn convene(
        &mut self,
        issue_id: &str,
        seq: i64,
        call: &MeetingCall,
        at: i64,
    ) -> sqlx::Result<()> {
        let tx = &mut *self.0;
        sqlx::query(
            "INSERT INTO meetings (kind, at, participants, departments, created_at) VALUES (?, ?, '[]', '[]', ?)
             ON CONFLICT (kind, at) WHERE status = 'scheduled' DO NOTHING",
        )
        .bind(&call.meeting)
        .bind(millis(call.at))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT id, participants, departments FROM meetings WHERE kind = ? AND at = ? AND status = 'scheduled'",
        )
        .bind(&call.meeting)
        .bind(millis(call.at))
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.get(0);
        sqlx::query("UPDATE meetings SET participants = ?, departments = ? WHERE id = ?")
            .bind(plan::merge_names(row.get(1), &call.participants))
            .bind(plan::merge_names(row.get(2), &call.departments))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO meeting_agenda (meeting_id, issue_id, added_seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(issue_id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn insert_evaluation(&mut self, r: &plan::EvaluationRow<'_>) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO evaluations (issue_id, event_seq, rating, comment, department, actor, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(r.issue_id)
        .bind(r.event_seq)
        .bind(r.rating)
        .bind(r.comment)
        .bind(r.department)
        .bind(r.actor)
        .bind(r.at)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn mark_agenda(&mut self, meeting: i64, issue_id: &str, seq: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE meeting_agenda SET outcome_seq = ? WHERE meeting_id = ? AND issue_id = ?",
        )
        .bind(seq)
        .bind(meeting)
        .bind(issue_id)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn commit(self) -> sqlx::Result<()> {
        self.0.commit().await
    }
}

/// An issue by id, through a pool, a connection or a transaction.
async fn fetch_issue<'e>(e: impl SqliteExecutor<'e>, id: &str) -> Result<Option<StoredIssue>> {
    // `fetch_all`, not `fetch_optional`: a statement left mid-step would keep its read snapshot
    // open on a pooled connection, and later reads there would miss new commits.
    let rows = sqlx::query("SELECT body, state, version FROM issues WHERE id = ?")
        .bind(id)
        .fetch_all(e)
        .await?;
    rows.into_iter()
        .next()
        .map(|r| {
            Ok(StoredIssue {
                issue: parse("issue body", r.get::<&str, _>(0))?,
                state: parse("issue state", r.get::<&str, _>(1))?,
                version: r.get(2),
            })
        })
        .transpose()
}

/// The issue an idempotency key was first used for: `None` for a new key, `KeyReused` when the
/// request differs from the first one.
async fn keyed_issue(
    conn: &mut SqliteConnection,
    key: &str,
    request_hash: &str,
) -> Result<Option<StoredIssue>> {
    let row = sqlx::query("SELECT request_hash, issue_id FROM idempotency_keys WHERE key = ?")
        .bind(key)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .next();
    let Some(row) = row else { return Ok(None) };
    if row.get::<&str, _>(0) != request_hash {
        return Err(StoreError::KeyReused(key.to_string()));
    }
    let id: String = row.get(1);
    fetch_issue(&mut *conn, &id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("idempotency key names missing issue {id}")))
        .map(Some)
}
