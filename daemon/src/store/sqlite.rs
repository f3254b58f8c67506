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
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use escalade_rules::{DeadlineKind, Decision, Event, Issue, IssueState, MeetingCall, Timer};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqliteExecutor};
use tokio::sync::{mpsc, oneshot};

mod outbox;
mod reports;
mod rules;
mod tokens;

use super::{
    AgendaItem, DueTimer, IssueFilter, Listed, Meeting, MeetingFilter, OutboxRow, Result,
    StoreError, StoredIssue, Submitted, TimelineEntry,
};

pub struct SqliteStore {
    /// One connection writes: SQLite has one writer anyway, and queueing in-process avoids
    /// "database is locked" between deferred transactions.
    writer: SqlitePool,
    reader: SqlitePool,
    next_id: AtomicI64,
    /// Writes of issues and events go to the group-commit task.
    jobs: mpsc::Sender<Job>,
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
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        let webhook_events = Arc::new(AtomicBool::new(false));
        tokio::spawn(group_commit(writer.clone(), queue, webhook_events.clone()));
        Ok(SqliteStore {
            writer,
            reader,
            next_id: AtomicI64::new(max.unwrap_or(0) + 1),
            jobs,
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

    /// Stores a new issue with its first decision, atomically with its idempotency key. Returns
    /// after the commit.
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
        let (reply, answer) = oneshot::channel();
        let job = Job::Create {
            issue: issue.clone(),
            branch: branch.to_string(),
            decision: decision.clone(),
            at,
            actor: actor.to_string(),
            idempotency: idempotency.map(|(k, h)| (k.to_string(), h.to_string())),
            reply,
        };
        self.submit_job(job, answer).await
    }

    /// Applies a decision to an issue last read at `version`: its new state, the event, its
    /// timers (replacing the old ones) and its messages, in one transaction. Returns the
    /// event's sequence number after the commit. With `agenda`, the event is that meeting's
    /// outcome and marks the issue's agenda item done in the same transaction.
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
        let (reply, answer) = oneshot::channel();
        let job = Job::Apply {
            id: stored.issue.id.clone(),
            version: stored.version,
            before: Box::new(stored.state.clone()),
            event: event.clone(),
            decision: decision.clone(),
            at,
            actor: actor.to_string(),
            agenda,
            reply,
        };
        self.submit_job(job, answer).await
    }

    async fn submit_job<T>(&self, job: Job, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
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

    /// Timers due at or before `now`, earliest first.
    pub async fn due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<DueTimer>> {
        let rows = sqlx::query(
            "SELECT id, issue_id, due, event FROM timers WHERE due <= ? ORDER BY due, id LIMIT ?",
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
                })
            })
            .collect()
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
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT id, body, state, version, {key} FROM issues WHERE 1 = 1"
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
        if let Some((at, id)) = &f.after {
            q.push(format!(" AND ({key} > "))
                .push_bind(*at)
                .push(format!(" OR ({key} = "))
                .push_bind(*at)
                .push(" AND id > ")
                .push_bind(id.clone())
                .push("))");
        }
        q.push(format!(" ORDER BY {key}, id LIMIT "))
            .push_bind(f.limit);
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
        if let Some((at, id)) = f.after {
            q.push(" AND (at > ")
                .push_bind(at)
                .push(" OR (at = ")
                .push_bind(at)
                .push(" AND id > ")
                .push_bind(id)
                .push("))");
        }
        q.push(" ORDER BY at, id LIMIT ").push_bind(f.limit);
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

/// A write waiting for the group commit.
enum Job {
    Create {
        issue: Issue,
        /// The unit's branch, `/city/d1/s1/g1/`, for subtree filters.
        branch: String,
        decision: Decision,
        at: DateTime<Utc>,
        actor: String,
        idempotency: Option<(String, String)>,
        reply: oneshot::Sender<Result<Submitted>>,
    },
    Apply {
        id: String,
        version: i64,
        /// The state the decision was made on: the webhook's effects compare with it.
        before: Box<IssueState>,
        event: Event,
        decision: Decision,
        at: DateTime<Utc>,
        actor: String,
        /// The meeting whose outcome the event is: its agenda item is marked done with it.
        agenda: Option<i64>,
        reply: oneshot::Sender<Result<i64>>,
    },
}

/// The state before a report.
static NO_STATE: std::sync::LazyLock<IssueState> = std::sync::LazyLock::new(IssueState::default);

/// The most writes committed together.
const MAX_BATCH: usize = 512;

/// The group commit: takes every write waiting, runs them in one transaction, commits once, and
/// only then answers each. With
/// `synchronous = FULL` the commit's fsync is the cost of a write; sharing it is the throughput.
async fn group_commit(
    pool: SqlitePool,
    mut jobs: mpsc::Receiver<Job>,
    webhook_events: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let webhooks = webhook_events.load(Ordering::Acquire);
        let outcome = run_batch(&pool, &mut batch, webhooks).await;
        for (job, result) in batch.drain(..).zip(outcome) {
            match (job, result) {
                (Job::Create { reply, .. }, Done::Created(r)) => {
                    let _ = reply.send(*r);
                }
                (Job::Apply { reply, .. }, Done::Applied(r)) => {
                    let _ = reply.send(r);
                }
                (Job::Create { reply, .. }, Done::Failed(e)) => {
                    let _ = reply.send(Err(e));
                }
                (Job::Apply { reply, .. }, Done::Failed(e)) => {
                    let _ = reply.send(Err(e));
                }
                _ => unreachable!("outcomes follow their jobs"),
            }
        }
    }
}

enum Done {
    Created(Box<Result<Submitted>>),
    Applied(Result<i64>),
    Failed(StoreError),
}

/// Runs a batch in one transaction; on any database error or a failed commit every write of it
/// fails, and nothing of it is stored.
async fn run_batch(pool: &SqlitePool, batch: &mut [Job], webhooks: bool) -> Vec<Done> {
    let fail_all = |e: &sqlx::Error, n: usize| -> Vec<Done> {
        (0..n)
            .map(|_| {
                Done::Failed(StoreError::Db(sqlx::Error::Protocol(format!(
                    "commit failed: {e}"
                ))))
            })
            .collect()
    };
    let started = Instant::now();
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(&e, batch.len()),
    };
    let out = match write_batch(&mut tx, batch, webhooks).await {
        Ok(out) => out,
        Err(e) => return fail_all(&e, batch.len()),
    };
    match tx.commit().await {
        Ok(()) => {
            crate::metrics::committed(batch.len(), started.elapsed().as_secs_f64());
            out
        }
        Err(e) => fail_all(&e, batch.len()),
    }
}

/// Bound parameters per statement at most (SQLite allows 32,766).
const MAX_VARS: usize = 32_000;

/// What one job of a batch writes, once its checks passed.
struct Write<'a> {
    job: usize,
    issue_id: &'a str,
    event: &'a Event,
    /// The state the decision was made on.
    before: &'a IssueState,
    decision: &'a Decision,
    at: DateTime<Utc>,
    actor: &'a str,
    /// The meeting whose outcome this event is, if it is one.
    agenda: Option<i64>,
}

/// The writes of a batch, a few statements for all of them: a statement is a round trip to
/// SQLite's worker thread, so statements per batch, not per issue, is the throughput. Checks
/// that refuse one job (a reused idempotency key, a version conflict) come first and write
/// nothing for it. With `webhooks`, every event is queued for the webhook as well.
async fn write_batch(
    tx: &mut SqliteConnection,
    batch: &[Job],
    webhooks: bool,
) -> std::result::Result<Vec<Done>, sqlx::Error> {
    let mut out: Vec<Option<Done>> = batch.iter().map(|_| None).collect();

    // Idempotency keys already stored, then a key repeated within the batch.
    let keys: Vec<&str> = batch
        .iter()
        .filter_map(|j| match j {
            Job::Create {
                idempotency: Some((k, _)),
                ..
            } => Some(k.as_str()),
            _ => None,
        })
        .collect();
    let mut known: HashMap<String, (String, String)> = HashMap::new();
    for chunk in keys.chunks(MAX_VARS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT key, request_hash, issue_id FROM idempotency_keys WHERE key IN (",
        );
        let mut list = q.separated(", ");
        for k in chunk {
            list.push_bind(*k);
        }
        q.push(")");
        for r in q.build().fetch_all(&mut *tx).await? {
            known.insert(r.get(0), (r.get(1), r.get(2)));
        }
    }
    let mut first_with_key: HashMap<&str, usize> = HashMap::new();
    let mut replays: Vec<(usize, usize)> = Vec::new();
    let mut creates: Vec<Write> = Vec::new();
    let mut applies: Vec<(Write, i64)> = Vec::new();
    let mut applying: HashSet<&str> = HashSet::new();
    for (i, job) in batch.iter().enumerate() {
        match job {
            Job::Create {
                issue,
                decision,
                at,
                actor,
                idempotency,
                ..
            } => {
                if let Some((key, hash)) = idempotency {
                    let reused = || Done::Failed(StoreError::KeyReused(key.clone()));
                    if let Some((first_hash, id)) = known.get(key) {
                        out[i] = Some(if first_hash != hash {
                            reused()
                        } else {
                            match fetch_issue(&mut *tx, id).await {
                                Ok(Some(first)) => Done::Created(Box::new(Ok(Submitted {
                                    issue: first,
                                    replayed: true,
                                }))),
                                Ok(None) => Done::Failed(StoreError::Corrupt(format!(
                                    "idempotency key names missing issue {id}"
                                ))),
                                Err(StoreError::Db(e)) => return Err(e),
                                Err(e) => Done::Failed(e),
                            }
                        });
                        continue;
                    }
                    if let Some(&j) = first_with_key.get(key.as_str()) {
                        match &batch[j] {
                            Job::Create {
                                idempotency: Some((_, h)),
                                ..
                            } if h == hash => replays.push((i, j)),
                            _ => out[i] = Some(reused()),
                        }
                        continue;
                    }
                    first_with_key.insert(key, i);
                }
                creates.push(Write {
                    job: i,
                    issue_id: &issue.id,
                    event: &Event::Reported,
                    before: &NO_STATE,
                    decision,
                    at: *at,
                    actor,
                    agenda: None,
                });
            }
            Job::Apply {
                id,
                version,
                before,
                event,
                decision,
                at,
                actor,
                agenda,
                ..
            } => {
                // One change per issue and batch: a second one read the same version.
                if !applying.insert(id.as_str()) {
                    out[i] = Some(Done::Applied(Err(StoreError::Conflict(id.clone()))));
                    continue;
                }
                applies.push((
                    Write {
                        job: i,
                        issue_id: id,
                        event,
                        before,
                        decision,
                        at: *at,
                        actor,
                        agenda: *agenda,
                    },
                    *version,
                ));
            }
        }
    }

    // New issues.
    for chunk in creates.chunks(MAX_VARS / 14) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO issues (id, version, body, state, status, category, unit, department, tier, reported_at, updated_at, branch, acknowledge_by, resolve_by) ",
        );
        q.push_values(chunk, |mut b, w| {
            let Job::Create { issue, branch, .. } = &batch[w.job] else {
                unreachable!("creates come from create jobs")
            };
            let s = &w.decision.next;
            b.push_bind(&issue.id)
                .push_bind(1i64)
                .push_bind(json(issue))
                .push_bind(json(s))
                .push_bind(s.state.as_str())
                .push_bind(&issue.category)
                .push_bind(&issue.unit)
                .push_bind(s.departments.first())
                .push_bind(&s.tier)
                .push_bind(millis(w.at))
                .push_bind(millis(w.at))
                .push_bind(branch)
                .push_bind(s.promised(DeadlineKind::Acknowledge).map(millis))
                .push_bind(s.promised(DeadlineKind::Resolve).map(millis));
        });
        q.build().execute(&mut *tx).await?;
    }
    let keyed: Vec<(&str, &str, &str, DateTime<Utc>)> = creates
        .iter()
        .filter_map(|w| match &batch[w.job] {
            Job::Create {
                idempotency: Some((k, h)),
                ..
            } => Some((k.as_str(), h.as_str(), w.issue_id, w.at)),
            _ => None,
        })
        .collect();
    for chunk in keyed.chunks(MAX_VARS / 4) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO idempotency_keys (key, request_hash, issue_id, created_at) ",
        );
        q.push_values(chunk, |mut b, (k, h, id, at)| {
            b.push_bind(*k)
                .push_bind(*h)
                .push_bind(*id)
                .push_bind(millis(*at));
        });
        q.build().execute(&mut *tx).await?;
    }

    // Changed issues, guarded by the version each was read at: an issue that returns no row
    // changed since, and its job is decided again.
    let mut changed: HashSet<String> = HashSet::new();
    for chunk in applies.chunks(MAX_VARS / 9) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE issues SET version = issues.version + 1, state = v.column3, status = v.column4,
             department = v.column5, tier = v.column6, updated_at = v.column7,
             acknowledge_by = v.column8, resolve_by = v.column9 FROM (",
        );
        q.push_values(chunk, |mut b, (w, version)| {
            let s = &w.decision.next;
            b.push_bind(w.issue_id)
                .push_bind(*version)
                .push_bind(json(s))
                .push_bind(s.state.as_str())
                .push_bind(s.departments.first())
                .push_bind(&s.tier)
                .push_bind(millis(w.at))
                .push_bind(s.promised(DeadlineKind::Acknowledge).map(millis))
                .push_bind(s.promised(DeadlineKind::Resolve).map(millis));
        });
        q.push(") AS v WHERE issues.id = v.column1 AND issues.version = v.column2 RETURNING id");
        for r in q.build().fetch_all(&mut *tx).await? {
            changed.insert(r.get(0));
        }
    }
    let mut writes = creates;
    for (w, _) in applies {
        if changed.contains(w.issue_id) {
            writes.push(w);
        } else {
            out[w.job] = Some(Done::Applied(Err(StoreError::Conflict(
                w.issue_id.to_string(),
            ))));
        }
    }

    // The events; each issue has one in the batch, so its sequence number is found by issue.
    let mut seqs: HashMap<String, i64> = HashMap::with_capacity(writes.len());
    for chunk in writes.chunks(MAX_VARS / 7) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (issue_id, at, actor, kind, payload, rules_version, decision) ",
        );
        q.push_values(chunk, |mut b, w| {
            b.push_bind(w.issue_id)
                .push_bind(millis(w.at))
                .push_bind(w.actor)
                .push_bind(w.event.name())
                .push_bind(json(w.event))
                .push_bind(&*w.decision.rules_version)
                .push_bind(json(w.decision));
        });
        q.push(" RETURNING seq, issue_id");
        for r in q.build().fetch_all(&mut *tx).await? {
            seqs.insert(r.get(1), r.get(0));
        }
    }
    let seq_of = |w: &Write| -> std::result::Result<i64, sqlx::Error> {
        seqs.get(w.issue_id).copied().ok_or_else(|| {
            sqlx::Error::Protocol(format!("no event sequence returned for {}", w.issue_id))
        })
    };

    // A decision's timers and assignments replace the issue's (a new issue has none).
    let existing: Vec<&str> = writes
        .iter()
        .filter(|w| *w.event != Event::Reported)
        .map(|w| w.issue_id)
        .collect();
    delete_of_issues(tx, "timers", &existing).await?;
    let timers: Vec<(&str, &Timer)> = writes
        .iter()
        .flat_map(|w| w.decision.timers.iter().map(move |t| (w.issue_id, t)))
        .collect();
    for chunk in timers.chunks(MAX_VARS / 3) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO timers (issue_id, due, event) ");
        q.push_values(chunk, |mut b, (id, t)| {
            b.push_bind(*id)
                .push_bind(millis(t.at))
                .push_bind(json(&t.event));
        });
        q.build().execute(&mut *tx).await?;
    }

    // The messages, each once: the dedupe key is the issue, event, recipient, channel and
    // template.
    let mut messages = Vec::new();
    for w in &writes {
        let seq = seq_of(w)?;
        messages.extend(w.decision.messages.iter().map(|m| (w, seq, m)));
    }
    for chunk in messages.chunks(MAX_VARS / 13) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO outbox (dedupe_key, issue_id, event_seq, kind, person, channel, address, template, locale, vars, created_at, urgent, not_before) ",
        );
        q.push_values(chunk, |mut b, (w, seq, m)| {
            b.push_bind(format!(
                "{}/{seq}/{}/{}/{}",
                w.issue_id,
                m.to,
                m.channel.as_str(),
                m.template
            ))
            .push_bind(w.issue_id)
            .push_bind(*seq)
            .push_bind(m.kind)
            .push_bind(m.to.to_string())
            .push_bind(m.channel.as_str())
            .push_bind(m.address.to_string())
            .push_bind(m.template.to_string())
            .push_bind(m.locale.to_string())
            .push_bind(json(&m.vars))
            .push_bind(millis(w.at))
            .push_bind(m.urgent)
            .push_bind(millis(w.at));
        });
        q.push(" ON CONFLICT (dedupe_key) DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }

    // Every event, for the webhook: its JSON, signed and posted as it is stored here.
    if webhooks {
        let mut events = Vec::with_capacity(writes.len());
        for w in &writes {
            let seq = seq_of(w)?;
            let mut effects = w.decision.effects.clone();
            effects.complete(w.before, w.decision);
            let body = serde_json::json!({
                "issue_id": w.issue_id,
                "seq": seq,
                "kind": w.event.name(),
                "at": w.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "actor": w.actor,
                "payload": w.event,
                "rules_version": &*w.decision.rules_version,
                "effects": effects,
            });
            events.push((w, seq, body.to_string()));
        }
        for chunk in events.chunks(MAX_VARS / 12) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (dedupe_key, issue_id, event_seq, kind, person, channel, address, template, locale, vars, created_at, not_before) ",
            );
            q.push_values(chunk, |mut b, (w, seq, body)| {
                b.push_bind(format!("{}/{seq}/webhook", w.issue_id))
                    .push_bind(w.issue_id)
                    .push_bind(*seq)
                    .push_bind(w.event.name())
                    .push_bind("")
                    .push_bind("webhook")
                    .push_bind("")
                    .push_bind("")
                    .push_bind("")
                    .push_bind(body)
                    .push_bind(millis(w.at))
                    .push_bind(millis(w.at));
            });
            q.push(" ON CONFLICT (dedupe_key) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
    }

    // The current assignments of every issue written.
    delete_of_issues(tx, "assignments", &existing).await?;
    let assigned: Vec<(&str, &str, bool)> = writes
        .iter()
        .flat_map(|w| {
            w.decision
                .next
                .departments
                .iter()
                .enumerate()
                .map(move |(i, d)| (w.issue_id, d.as_str(), i == 0))
        })
        .collect();
    for chunk in assigned.chunks(MAX_VARS / 3) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO assignments (department, issue_id, lead) ");
        q.push_values(chunk, |mut b, (id, d, lead)| {
            b.push_bind(*d).push_bind(*id).push_bind(*lead);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }

    // Meetings convened, evaluations, and agenda items an outcome was applied to: rare, a row
    // at a time.
    for w in &writes {
        let seq = seq_of(w)?;
        for call in &w.decision.meetings {
            convene(&mut *tx, w.issue_id, seq, call, w.at).await?;
        }
        if let Event::Evaluated { rating, comment } = w.event {
            sqlx::query(
                "INSERT INTO evaluations (issue_id, event_seq, rating, comment, department, actor, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(w.issue_id)
            .bind(seq)
            .bind(i64::from(*rating))
            .bind(comment)
            .bind(w.decision.next.departments.first())
            .bind(w.actor)
            .bind(millis(w.at))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(meeting) = w.agenda {
            sqlx::query(
                "UPDATE meeting_agenda SET outcome_seq = ? WHERE meeting_id = ? AND issue_id = ?",
            )
            .bind(seq)
            .bind(meeting)
            .bind(w.issue_id)
            .execute(&mut *tx)
            .await?;
        }
    }

    for w in &writes {
        out[w.job] = Some(match &batch[w.job] {
            Job::Create { issue, .. } => Done::Created(Box::new(Ok(Submitted {
                issue: StoredIssue {
                    issue: issue.clone(),
                    state: w.decision.next.clone(),
                    version: 1,
                },
                replayed: false,
            }))),
            Job::Apply { .. } => Done::Applied(Ok(seq_of(w)?)),
        });
    }
    for (i, j) in replays {
        let first = match &out[j] {
            Some(Done::Created(r)) => match &**r {
                Ok(s) => Done::Created(Box::new(Ok(Submitted {
                    issue: s.issue.clone(),
                    replayed: true,
                }))),
                Err(e) => Done::Failed(StoreError::Corrupt(format!(
                    "the first request with this key failed: {e}"
                ))),
            },
            _ => Done::Failed(StoreError::Corrupt(
                "the first request with this key has no answer".into(),
            )),
        };
        out[i] = Some(first);
    }
    Ok(out
        .into_iter()
        .map(|d| d.expect("every job of a batch is answered"))
        .collect())
}

/// Deletes the rows of `table` that belong to `issues`.
async fn delete_of_issues(
    tx: &mut SqliteConnection,
    table: &str,
    issues: &[&str],
) -> std::result::Result<(), sqlx::Error> {
    for chunk in issues.chunks(MAX_VARS) {
        let mut q = QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE issue_id IN ("));
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Puts an issue on the agenda of the scheduled meeting of its kind at its time, creating the
/// meeting if this is the first issue, and adds the call's participants and departments.
async fn convene(
    tx: &mut SqliteConnection,
    issue_id: &str,
    seq: i64,
    call: &MeetingCall,
    at: DateTime<Utc>,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO meetings (kind, at, participants, departments, created_at) VALUES (?, ?, '[]', '[]', ?)
         ON CONFLICT (kind, at) WHERE status = 'scheduled' DO NOTHING",
    )
    .bind(&call.meeting)
    .bind(millis(call.at))
    .bind(millis(at))
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
    let merge = |stored: &str, new: &[String]| -> String {
        let mut all: Vec<String> = serde_json::from_str(stored).unwrap_or_default();
        for n in new {
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
        json(&all)
    };
    sqlx::query("UPDATE meetings SET participants = ?, departments = ? WHERE id = ?")
        .bind(merge(row.get(1), &call.participants))
        .bind(merge(row.get(2), &call.departments))
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
