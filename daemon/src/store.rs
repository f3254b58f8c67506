//! The durable store: issues, their timeline, pending timers and the outbox.
//!
//! SQLite through sqlx is the embedded default. Every change an event makes (the issue's new
//! state, the event itself, the replaced timers, the queued messages) commits in one
//! transaction, and nothing is answered before that commit. `Store` is the boundary the engine
//! sees; a PostgreSQL backend is another variant behind the same methods.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use escalade_rules::{Decision, Event, Issue, IssueState};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqliteExecutor, Transaction};
use tokio::sync::{mpsc, oneshot};

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

/// What a submission returned: the issue, and whether this is a replay of an earlier request
/// with the same idempotency key.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub issue: StoredIssue,
    pub replayed: bool,
}

pub struct Store {
    /// One connection writes: SQLite has one writer anyway, and queueing in-process avoids
    /// "database is locked" between deferred transactions.
    writer: SqlitePool,
    reader: SqlitePool,
    next_id: AtomicI64,
    /// Writes of issues and events go to the group-commit task.
    jobs: mpsc::Sender<Job>,
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

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    ///
    /// WAL with `synchronous = FULL`: a commit is on disk before it returns, so an issue
    /// answered 201 survives power loss, not only a crash of the process (NORMAL would risk the
    /// last commits on power loss).
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
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
        tokio::spawn(group_commit(writer.clone(), queue));
        Ok(Store {
            writer,
            reader,
            next_id: AtomicI64::new(max.unwrap_or(0) + 1),
            jobs,
        })
    }

    /// A fresh issue id. Ids are allocated in memory from the largest stored one: one process
    /// owns an SQLite file.
    pub fn allocate_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// The issue a key was first used for, if the key is known; `KeyReused` if the request
    /// differs from the first.
    pub async fn idempotent(&self, key: &str, request_hash: &str) -> Result<Option<StoredIssue>> {
        let mut conn = self.writer.acquire().await?;
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
    /// event's sequence number after the commit.
    pub async fn apply(
        &self,
        stored: &StoredIssue,
        event: &Event,
        decision: &Decision,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<i64> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Apply {
            id: stored.issue.id.clone(),
            version: stored.version,
            event: event.clone(),
            decision: decision.clone(),
            at,
            actor: actor.to_string(),
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

    pub async fn issue(&self, id: &str) -> Result<Option<StoredIssue>> {
        self.issue_on(&self.reader, id).await
    }

    async fn issue_on(&self, pool: &SqlitePool, id: &str) -> Result<Option<StoredIssue>> {
        fetch_issue(pool, id).await
    }

    /// The issue read through the writer, so it sees every commit (the engine's read before a
    /// write must not lag behind it).
    pub async fn issue_for_update(&self, id: &str) -> Result<Option<StoredIssue>> {
        self.issue_on(&self.writer, id).await
    }

    pub async fn timeline(&self, id: &str) -> Result<Vec<TimelineEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, kind, payload, rules_version FROM events WHERE issue_id = ? ORDER BY seq",
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
                })
            })
            .collect()
    }

    /// The earliest pending timer, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let due: Option<i64> = sqlx::query_scalar("SELECT MIN(due) FROM timers")
            .fetch_one(&self.writer)
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
        .fetch_all(&self.writer)
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
        let rows = sqlx::query(
            "SELECT id, issue_id, kind, person, channel, address, template, status FROM outbox ORDER BY id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OutboxRow {
                id: r.get(0),
                issue_id: r.get(1),
                kind: r.get(2),
                person: r.get(3),
                channel: r.get(4),
                address: r.get(5),
                template: r.get(6),
                status: r.get(7),
            })
            .collect())
    }

    /// Issues matching `f`, in report order, from after its cursor.
    pub async fn list(&self, f: &IssueFilter) -> Result<Vec<Listed>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, body, state, version, reported_at FROM issues WHERE 1 = 1",
        );
        if let Some(v) = &f.state {
            q.push(" AND status = ").push_bind(v.clone());
        }
        if f.open {
            q.push(" AND status IN ('assigned', 'acknowledged', 'in_progress')");
        }
        if let Some(v) = &f.department {
            q.push(" AND EXISTS (SELECT 1 FROM json_each(issues.state, '$.departments') WHERE value = ")
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
            q.push(" AND (reported_at > ")
                .push_bind(*at)
                .push(" OR (reported_at = ")
                .push_bind(*at)
                .push(" AND id > ")
                .push_bind(id.clone())
                .push("))");
        }
        q.push(" ORDER BY reported_at, id LIMIT ")
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

    /// Stores a token's hash; returns the token's id.
    pub async fn create_token(
        &self,
        hash: &str,
        role: &str,
        scope: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (hash, role, scope, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(hash)
        .bind(role)
        .bind(scope)
        .bind(millis(at))
        .fetch_one(&self.writer)
        .await?;
        Ok(id)
    }

    /// Revokes a token; false if no live token has that id.
    pub async fn revoke_token(&self, id: i64, at: DateTime<Utc>) -> Result<bool> {
        let r =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(millis(at))
                .bind(id)
                .execute(&self.writer)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The live token with this hash: `(id, role, scope)`.
    pub async fn token(&self, hash: &str) -> Result<Option<(i64, String, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT id, role, scope FROM api_tokens WHERE hash = ? AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// Whether the database answers.
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
        event: Event,
        decision: Decision,
        at: DateTime<Utc>,
        actor: String,
        reply: oneshot::Sender<Result<i64>>,
    },
}

/// The most writes committed together.
const MAX_BATCH: usize = 512;

/// The group commit: takes every write waiting, runs them in one transaction, commits once, and
/// only then answers each. With
/// `synchronous = FULL` the commit's fsync is the cost of a write; sharing it is the throughput.
async fn group_commit(pool: SqlitePool, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcome = run_batch(&pool, &mut batch).await;
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

/// Runs a batch; on a failed commit every write of it fails.
async fn run_batch(pool: &SqlitePool, batch: &mut [Job]) -> Vec<Done> {
    let fail_all = |e: &sqlx::Error, n: usize| -> Vec<Done> {
        (0..n)
            .map(|_| {
                Done::Failed(StoreError::Db(sqlx::Error::Protocol(format!(
                    "commit failed: {e}"
                ))))
            })
            .collect()
    };
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(&e, batch.len()),
    };
    let mut out = Vec::with_capacity(batch.len());
    for job in batch.iter() {
        // A job refuses (a reused idempotency key, a version conflict) before it writes
        // anything; any other failure leaves the transaction unusable, and the whole batch
        // fails without committing.
        let done = match job {
            Job::Create {
                issue,
                branch,
                decision,
                at,
                actor,
                idempotency,
                ..
            } => {
                match create_in(
                    &mut tx,
                    issue,
                    branch,
                    decision,
                    *at,
                    actor,
                    idempotency.as_ref(),
                )
                .await
                {
                    Err(StoreError::Db(e)) => return fail_all(&e, batch.len()),
                    r => Done::Created(Box::new(r)),
                }
            }
            Job::Apply {
                id,
                version,
                event,
                decision,
                at,
                actor,
                ..
            } => match apply_in(&mut tx, id, *version, event, decision, *at, actor).await {
                Err(StoreError::Db(e)) => return fail_all(&e, batch.len()),
                r => Done::Applied(r),
            },
        };
        out.push(done);
    }
    match tx.commit().await {
        Ok(()) => out,
        Err(e) => fail_all(&e, batch.len()),
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

#[allow(clippy::too_many_arguments)]
async fn create_in(
    tx: &mut Transaction<'_, Sqlite>,
    issue: &Issue,
    branch: &str,
    decision: &Decision,
    at: DateTime<Utc>,
    actor: &str,
    idempotency: Option<&(String, String)>,
) -> Result<Submitted> {
    if let Some((key, hash)) = idempotency
        && let Some(first) = keyed_issue(tx, key, hash).await?
    {
        return Ok(Submitted {
            issue: first,
            replayed: true,
        });
    }
    let s = &decision.next;
    sqlx::query(
        "INSERT INTO issues (id, version, body, state, status, category, unit, department, tier, reported_at, updated_at, branch, acknowledge_by, resolve_by)
         VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&issue.id)
    .bind(json(issue))
    .bind(json(s))
    .bind(s.state.as_str())
    .bind(&issue.category)
    .bind(&issue.unit)
    .bind(s.departments.first())
    .bind(&s.tier)
    .bind(millis(at))
    .bind(millis(at))
    .bind(branch)
    .bind(s.acknowledge_by.map(millis))
    .bind(s.resolve_by.map(millis))
    .execute(&mut **tx)
    .await?;
    if let Some((key, hash)) = idempotency {
        sqlx::query("INSERT INTO idempotency_keys (key, request_hash, issue_id, created_at) VALUES (?, ?, ?, ?)")
            .bind(key)
            .bind(hash)
            .bind(&issue.id)
            .bind(millis(at))
            .execute(&mut **tx)
            .await?;
    }
    record(tx, &issue.id, &Event::Reported, decision, at, actor).await?;
    Ok(Submitted {
        issue: StoredIssue {
            issue: issue.clone(),
            state: s.clone(),
            version: 1,
        },
        replayed: false,
    })
}

#[allow(clippy::too_many_arguments)]
async fn apply_in(
    tx: &mut Transaction<'_, Sqlite>,
    id: &str,
    version: i64,
    event: &Event,
    decision: &Decision,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<i64> {
    let s = &decision.next;
    let updated = sqlx::query(
        "UPDATE issues SET version = version + 1, state = ?, status = ?, department = ?, tier = ?, updated_at = ?,
         acknowledge_by = ?, resolve_by = ? WHERE id = ? AND version = ?",
    )
    .bind(json(s))
    .bind(s.state.as_str())
    .bind(s.departments.first())
    .bind(&s.tier)
    .bind(millis(at))
    .bind(s.acknowledge_by.map(millis))
    .bind(s.resolve_by.map(millis))
    .bind(id)
    .bind(version)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::Conflict(id.to_string()));
    }
    record(tx, id, event, decision, at, actor).await
}

/// Writes an event, replaces the issue's timers with the decision's and queues its messages.
async fn record(
    tx: &mut Transaction<'_, Sqlite>,
    issue_id: &str,
    event: &Event,
    decision: &Decision,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<i64> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (issue_id, at, actor, kind, payload, rules_version, decision) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(issue_id)
    .bind(millis(at))
    .bind(actor)
    .bind(event.name())
    .bind(json(event))
    .bind(&*decision.rules_version)
    .bind(json(decision))
    .fetch_one(&mut **tx)
    .await?;
    // A new issue has no timers yet.
    if *event != Event::Reported {
        sqlx::query("DELETE FROM timers WHERE issue_id = ?")
            .bind(issue_id)
            .execute(&mut **tx)
            .await?;
    }
    // One statement for all the rows of each table: a statement is a round trip to SQLite's
    // worker thread, and an issue brings several timers and messages.
    if !decision.timers.is_empty() {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO timers (issue_id, due, event) ");
        q.push_values(&decision.timers, |mut b, t| {
            b.push_bind(issue_id)
                .push_bind(millis(t.at))
                .push_bind(json(&t.event));
        });
        q.build().execute(&mut **tx).await?;
    }
    if !decision.messages.is_empty() {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO outbox (dedupe_key, issue_id, event_seq, kind, person, channel, address, template, locale, vars, created_at) ",
        );
        q.push_values(&decision.messages, |mut b, m| {
            b.push_bind(format!(
                "{issue_id}/{seq}/{}/{}/{}",
                m.to,
                m.channel.as_str(),
                m.template
            ))
            .push_bind(issue_id)
            .push_bind(seq)
            .push_bind(m.kind)
            .push_bind(m.to.to_string())
            .push_bind(m.channel.as_str())
            .push_bind(m.address.to_string())
            .push_bind(m.template.to_string())
            .push_bind(m.locale.to_string())
            .push_bind(json(&m.vars))
            .push_bind(millis(at));
        });
        q.push(" ON CONFLICT (dedupe_key) DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(seq)
}
