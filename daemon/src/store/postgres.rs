//! The PostgreSQL backend: one database shared by every replica.
//!
//! Writes of issues go through a group commit as on SQLite (every write waiting joins one
//! transaction, answered after its commit), executing the batch plan built above the backend
//! (`store::plan`). Reads and the delivery's claims go through the pool.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use escalade_rules::MeetingCall;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};

mod hints;
mod outbox;
mod reports;
mod rules;
mod tokens;

use super::plan;
use super::{
    AgendaItem, DueTimer, IssueFilter, Listed, Meeting, MeetingFilter, OutboxRow, Result,
    StoreError, StoredIssue, TimelineEntry,
};

pub struct PgStore {
    pool: PgPool,
    /// This replica's name in the claims it holds: host, process and a random part (a
    /// restarted process is another replica).
    replica: String,
    /// Writes of issues and events go to the group-commit task.
    writes: plan::Writes,
    /// Queue every committed event for the webhook too (read by the group commit per batch).
    webhook_events: Arc<AtomicBool>,
    /// Wake-up hints to and from the other replicas.
    hints: hints::Hints,
    /// How often the scheduler looks for timers at least (others add timers it is not told of
    /// when a hint is lost).
    poll: Duration,
}

/// How often each replica looks for due timers at least, unless opened with another interval.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

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

/// Bound parameters per statement at most (PostgreSQL allows 65,535).
const MAX_VARS: usize = 60_000;

/// How long a transaction may wait for a row lock before it is aborted (and its batch tried
/// again): a stuck replica's lock must not hold the others' writes for longer.
const LOCK_TIMEOUT: &str = "5s";

credential_queries!(PgStore, pool, pool);
wall_queries!(PgStore, pool);
timer_queries!(PgStore, pool);
board_queries!(PgStore, pool);
throttle_queries!(PgStore, pool, pool);
request_queries!(PgStore, pool, " COLLATE \"C\"");

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host/db`) and migrates it.
    pub async fn open(url: &str, poll: Option<Duration>) -> Result<PgStore> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.options([("lock_timeout", LOCK_TIMEOUT)]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let webhook_events = Arc::new(AtomicBool::new(false));
        let writes = plan::Writes::start(Writer(pool.clone()), webhook_events.clone());
        let replica = replica_name();
        Ok(PgStore {
            hints: hints::Hints::start(pool.clone(), replica.clone()),
            pool,
            replica,
            writes,
            webhook_events,
            poll: poll.unwrap_or(POLL_EVERY),
        })
    }

    /// A fresh issue id, from the database's sequence: replicas never hand out the same one.
    pub async fn allocate_id(&self) -> Result<String> {
        let id: i64 = sqlx::query_scalar("SELECT nextval('issue_ids')")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.to_string())
    }

    /// The issue a key was first used for, if the key is known; `KeyReused` if the request
    /// differs from the first. The group commit checks again inside its transaction.
    pub async fn idempotent(&self, key: &str, request_hash: &str) -> Result<Option<StoredIssue>> {
        let row = sqlx::query("SELECT request_hash, issue_id FROM idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        if row.get::<&str, _>(0) != request_hash {
            return Err(StoreError::KeyReused(key.to_string()));
        }
        let id: String = row.get(1);
        fetch_issue(&self.pool, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("idempotency key names missing issue {id}")))
            .map(Some)
    }

    /// The queue of this store's writes of issues (the group commit).
    pub(super) fn writes(&self) -> &plan::Writes {
        &self.writes
    }

    pub async fn drop_timer(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM timers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn postpone_timer(&self, id: i64, due: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE timers SET due = $1, lease_until = NULL, claimed_by = NULL WHERE id = $2",
        )
        .bind(millis(due))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn issue(&self, id: &str) -> Result<Option<StoredIssue>> {
        fetch_issue(&self.pool, id).await
    }

    /// The issue as the engine reads it before deciding: a read after a commit sees it, and a
    /// write by another replica since is caught by the version check.
    pub async fn issue_for_update(&self, id: &str) -> Result<Option<StoredIssue>> {
        fetch_issue(&self.pool, id).await
    }

    pub async fn timeline(&self, id: &str) -> Result<Vec<TimelineEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, kind, payload, rules_version,
                    (decision::jsonb -> 'effects')::text, (decision::jsonb -> 'messages')::text,
                    (decision::jsonb -> 'next')::text
             FROM events WHERE issue_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let part = |i: usize, what: &str| -> Result<Option<serde_json::Value>> {
                    r.get::<Option<&str>, _>(i)
                        .filter(|t| *t != "null")
                        .map(|e| parse(what, e))
                        .transpose()
                };
                Ok(TimelineEntry {
                    seq: r.get(0),
                    at: instant(r.get(1))?,
                    actor: r.get(2),
                    kind: r.get(3),
                    payload: parse("event payload", r.get::<&str, _>(4))?,
                    rules_version: r.get(5),
                    effects: part(6, "decision effects")?,
                    messages: part(7, "decision messages")?,
                    next: r
                        .get::<Option<&str>, _>(8)
                        .filter(|t| *t != "null")
                        .map(|e| parse("decision state", e))
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Tells the other replicas that a timer committed here falls due at `due` (debounced,
    /// after the commit): one sleeping past it looks sooner.
    pub fn hint_timer(&self, due: DateTime<Utc>) {
        self.hints.hint(millis(due));
    }

    /// When a timer falls due that another replica told of (waits for its next hint).
    pub async fn timer_hint(&self) -> DateTime<Utc> {
        loop {
            if let Ok(due) = instant(self.hints.next().await) {
                return due;
            }
        }
    }

    /// How often the scheduler looks for timers at least.
    pub fn poll_every(&self) -> Duration {
        self.poll
    }

    /// When the earliest timer may be claimed: the earliest unclaimed one's due time, or the
    /// end of a claim (a replica that died leaves its timers to the others then).
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT LEAST(
                (SELECT due FROM timers WHERE lease_until IS NULL ORDER BY due, id LIMIT 1),
                (SELECT MIN(GREATEST(due, lease_until)) FROM timers WHERE lease_until IS NOT NULL))",
        )
        .fetch_one(&self.pool)
        .await?;
        due.map(instant).transpose()
    }

    /// Claims timers due at or before `now` until `lease_until`, earliest first: those nobody
    /// holds, those whose claim lapsed, and this replica's own (it claims one pass at a time,
    /// so its own are left over from the last pass). Each claim bumps the timer's fence; rows
    /// another replica is claiming at this instant are skipped, not waited for.
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueTimer>> {
        let rows = sqlx::query(
            "UPDATE timers SET lease_until = $2, claimed_by = $3, fence = timers.fence + 1
             WHERE id IN (
                SELECT id FROM timers
                WHERE due <= $1 AND (lease_until IS NULL OR lease_until <= $1 OR claimed_by = $3)
                ORDER BY due, id LIMIT $4
                FOR UPDATE SKIP LOCKED)
             RETURNING id, issue_id, due, event, fence",
        )
        .bind(millis(now))
        .bind(millis(lease_until))
        .bind(&self.replica)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut due: Vec<DueTimer> = rows
            .into_iter()
            .map(|r| {
                Ok(DueTimer {
                    id: r.get(0),
                    issue_id: r.get(1),
                    due: instant(r.get(2))?,
                    event: parse("timer event", r.get::<&str, _>(3))?,
                    fence: r.get(4),
                })
            })
            .collect::<Result<_>>()?;
        due.sort_by_key(|t| (t.due, t.id));
        Ok(due)
    }

    /// Takes the lease `name` for this replica until `until` if nobody holds it or its holder's
    /// lease ended by `now`, or keeps it if this replica holds it; false if another does. The
    /// fence is bumped each time the lease changes hands.
    pub async fn lead(&self, name: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool> {
        let held: Option<i64> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, until, fence) VALUES ($1, $2, $3, 1)
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until,
                 fence = CASE WHEN leases.holder = EXCLUDED.holder THEN leases.fence
                              ELSE leases.fence + 1 END
             WHERE leases.holder = EXCLUDED.holder OR leases.until <= $4
             RETURNING fence",
        )
        .bind(name)
        .bind(&self.replica)
        .bind(millis(until))
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(held.is_some())
    }

    pub async fn put_photos(
        &self,
        photos: &[(String, &str, Vec<u8>)],
        at: DateTime<Utc>,
    ) -> Result<()> {
        for (hash, content_type, bytes) in photos {
            sqlx::query(
                "INSERT INTO photos (hash, content_type, bytes, size, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING",
            )
            .bind(hash)
            .bind(content_type)
            .bind(bytes)
            .bind(bytes.len() as i64)
            .bind(millis(at))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    pub async fn photo(&self, hash: &str) -> Result<Option<(Vec<u8>, String)>> {
        Ok(
            sqlx::query_as("SELECT bytes, content_type FROM photos WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn sweep_photos(&self, before: DateTime<Utc>) -> Result<u64> {
        let named: Vec<String> = self.photo_names().await?.into_iter().collect();
        let r = sqlx::query("DELETE FROM photos WHERE created_at < $1 AND NOT (hash = ANY($2))")
            .bind(millis(before))
            .bind(&named)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Extends this replica's claims on `timers` that are still its own.
    pub async fn renew_claims(
        &self,
        timers: &[super::Firing],
        lease_until: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE timers SET lease_until = $1
             FROM UNNEST($2::int8[], $3::int8[]) AS c(id, fence)
             WHERE timers.id = c.id AND timers.fence = c.fence AND timers.claimed_by = $4",
        )
        .bind(millis(lease_until))
        .bind(timers.iter().map(|f| f.timer).collect::<Vec<_>>())
        .bind(timers.iter().map(|f| f.fence).collect::<Vec<_>>())
        .bind(&self.replica)
        .execute(&self.pool)
        .await?;
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
        let key = if f.by_deadline {
            "COALESCE(LEAST(acknowledge_by, resolve_by), 9223372036854775807)"
        } else {
            "reported_at"
        };
        // The page is chosen by ids and keys first (the covering index serves a queue), and only
        // its rows' bodies are read: sorting thousands of whole rows for fifty costs more.
        let mut q = QueryBuilder::<Postgres>::new(format!(
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
            q.push(" AND strpos(branch, ")
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
            // Ids compare as SQLite compares text: byte by byte.
            q.push(format!(" AND ({key} {after} "))
                .push_bind(*at)
                .push(format!(" OR ({key} = "))
                .push_bind(*at)
                .push(format!(" AND id COLLATE \"C\" {after} "))
                .push_bind(id.clone())
                .push("))");
        }
        q.push(format!(
            " ORDER BY {key}{order}, id COLLATE \"C\"{order} LIMIT "
        ))
        .push_bind(f.limit)
        .push(format!(") ORDER BY {key}{order}, id COLLATE \"C\"{order}"));
        let rows = q.build().fetch_all(&self.pool).await?;
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

    pub async fn meeting(&self, id: i64) -> Result<Option<Meeting>> {
        let f = MeetingFilter {
            id: Some(id),
            limit: 1,
            ..Default::default()
        };
        Ok(self.meetings(&f).await?.into_iter().next())
    }

    pub async fn meetings(&self, f: &MeetingFilter) -> Result<Vec<Meeting>> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id, kind, at, participants, departments, status, outcome, recorded_by, recorded_at FROM meetings m WHERE 1 = 1",
        );
        if let Some(id) = f.id {
            q.push(" AND id = ").push_bind(id);
        }
        if let Some(st) = &f.status {
            q.push(" AND status = ").push_bind(st.clone());
        }
        if let Some(d) = &f.department {
            q.push(" AND m.departments::jsonb ? ").push_bind(d.clone());
        }
        if let Some(u) = &f.subtree {
            q.push(
                " AND EXISTS (SELECT 1 FROM meeting_agenda a JOIN issues i ON i.id = a.issue_id WHERE a.meeting_id = m.id AND strpos(i.branch, ",
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
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.get(0);
            let agenda = sqlx::query(
                "SELECT issue_id, added_seq, outcome_seq, skipped FROM meeting_agenda WHERE meeting_id = $1 ORDER BY added_seq",
            )
            .bind(id)
            .fetch_all(&self.pool)
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

    pub async fn hold_meeting(
        &self,
        id: i64,
        outcome: &serde_json::Value,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE meetings SET status = 'held', outcome = $1, recorded_by = $2, recorded_at = $3 WHERE id = $4 AND status = 'scheduled'",
        )
        .bind(json(outcome))
        .bind(actor)
        .bind(millis(at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn skip_agenda_item(&self, meeting: i64, issue: &str, why: &str) -> Result<()> {
        sqlx::query(
            "UPDATE meeting_agenda SET skipped = $1 WHERE meeting_id = $2 AND issue_id = $3 AND outcome_seq IS NULL",
        )
        .bind(why)
        .bind(meeting)
        .bind(issue)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn gauges(&self, now: DateTime<Utc>) -> Result<super::Gauges> {
        let t = millis(now);
        let (open, overdue, timers): (i64, i64, i64) = sqlx::query_as(
            "SELECT
               (SELECT COUNT(*) FROM issues
                 WHERE status IN ('assigned', 'acknowledged', 'in_progress', 'suspended')),
               (SELECT COUNT(*) FROM issues
                 WHERE status IN ('assigned', 'acknowledged', 'in_progress')
                   AND (acknowledge_by <= $1 OR resolve_by <= $1)),
               (SELECT COUNT(*) FROM timers)",
        )
        .bind(t)
        .fetch_one(&self.pool)
        .await?;
        let outbox: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(super::Gauges {
            open,
            overdue,
            timers,
            outbox,
        })
    }

    pub async fn photo_names(&self) -> Result<HashSet<String>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT jsonb_array_elements_text(body::jsonb -> 'photos') FROM issues
             WHERE jsonb_typeof(body::jsonb -> 'photos') = 'array'
             UNION
             SELECT jsonb_array_elements_text(payload::jsonb -> 'photos') FROM events
             WHERE kind = 'resolved' AND jsonb_typeof(payload::jsonb -> 'photos') = 'array'",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// An issue by id.
async fn fetch_issue<'e>(e: impl sqlx::PgExecutor<'e>, id: &str) -> Result<Option<StoredIssue>> {
    let row = sqlx::query("SELECT body, state, version FROM issues WHERE id = $1")
        .bind(id)
        .fetch_optional(e)
        .await?;
    row.map(|r| {
        Ok(StoredIssue {
            issue: parse("issue body", r.get::<&str, _>(0))?,
            state: parse("issue state", r.get::<&str, _>(1))?,
            version: r.get(2),
        })
    })
    .transpose()
}

/// The pool, as the group commit begins its batches on it.
struct Writer(PgPool);

/// A batch's transaction, executing the plan's row sets. Row sets go as arrays (`UNNEST`):
/// one statement of a dozen parameters whatever the batch's size.
struct PgTx(sqlx::Transaction<'static, Postgres>);

impl plan::Begin for Writer {
    type Tx = PgTx;

    async fn begin(&self) -> sqlx::Result<PgTx> {
        Ok(PgTx(self.0.begin().await?))
    }

    fn transient(e: &sqlx::Error) -> bool {
        // Deadlock between replicas' batches, a serialisation failure, a lock waited on too
        // long (`lock_timeout`).
        matches!(e, sqlx::Error::Database(d)
            if matches!(d.code().as_deref(), Some("40P01" | "40001" | "55P03")))
    }
}

impl plan::Executor for PgTx {
    async fn known_keys(
        &mut self,
        keys: &[&str],
    ) -> sqlx::Result<HashMap<String, (String, String)>> {
        let rows = sqlx::query(
            "SELECT key, request_hash, issue_id FROM idempotency_keys WHERE key = ANY($1)",
        )
        .bind(keys)
        .fetch_all(&mut *self.0)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect())
    }

    async fn issue(&mut self, id: &str) -> Result<Option<StoredIssue>> {
        fetch_issue(&mut *self.0, id).await
    }

    async fn claim_keys(&mut self, rows: &[plan::KeyRow<'_>]) -> sqlx::Result<HashSet<String>> {
        // In key order: two replicas' batches wait on each other's keys in one order only.
        let mut rows: Vec<&plan::KeyRow> = rows.iter().collect();
        rows.sort_by_key(|r| r.key);
        let claimed: Vec<String> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (key, request_hash, issue_id, created_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[])
             ON CONFLICT (key) DO NOTHING RETURNING key",
        )
        .bind(rows.iter().map(|r| r.key).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.hash).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.issue_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
        .fetch_all(&mut *self.0)
        .await?;
        Ok(claimed.into_iter().collect())
    }

    async fn insert_issues(&mut self, rows: &[plan::IssueRow<'_>]) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO issues (id, version, body, state, status, category, unit, department, tier, reported_at, updated_at, branch, acknowledge_by, resolve_by, reporter, request_kind, request_by)
             SELECT id, 1, body, state, status, category, unit, department, tier, at, at, branch, ack, res, reporter, req, req_by
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::int8[], $10::text[], $11::int8[], $12::int8[],
                         $13::text[], $14::text[], $15::int8[])
                  AS v(id, body, state, status, category, unit, department, tier, at, branch, ack, res, reporter, req, req_by)",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.category).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.unit).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.department).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.tier).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.branch).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.acknowledge_by).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.resolve_by).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.reporter).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.request_kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.request_by).collect::<Vec<_>>())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn fences(&mut self, timers: &[i64]) -> sqlx::Result<HashMap<i64, i64>> {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, fence FROM timers WHERE id = ANY($1)")
                .bind(timers)
                .fetch_all(&mut *self.0)
                .await?;
        Ok(rows.into_iter().collect())
    }

    async fn update_issues(
        &mut self,
        rows: &[plan::IssueUpdate<'_>],
    ) -> sqlx::Result<HashSet<String>> {
        // The issues are locked in id order first: replicas' batches touching the same issues
        // then wait on each other in one order, never in a cycle.
        let mut rows: Vec<&plan::IssueUpdate> = rows.iter().collect();
        rows.sort_by_key(|r| r.id);
        let ids: Vec<&str> = rows.iter().map(|r| r.id).collect();
        sqlx::query("SELECT id FROM issues WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .fetch_all(&mut *self.0)
            .await?;
        let changed: Vec<String> = sqlx::query_scalar(
            "UPDATE issues SET version = issues.version + 1, state = v.state, status = v.status,
                    department = v.department, tier = v.tier, updated_at = v.at,
                    acknowledge_by = v.ack, resolve_by = v.res,
                    request_kind = v.req, request_by = v.req_by
             FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],
                         $12::text[], $13::int8[])
                  AS v(id, version, state, status, department, tier, at, ack, res, timer, fence,
                       req, req_by)
             WHERE issues.id = v.id AND issues.version = v.version
               AND (v.timer IS NULL OR EXISTS
                    (SELECT 1 FROM timers t WHERE t.id = v.timer AND t.fence = v.fence))
             RETURNING issues.id",
        )
        .bind(&ids)
        .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.department).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.tier).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.acknowledge_by).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.resolve_by).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.firing.map(|f| f.timer))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.firing.map(|f| f.fence))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.request_kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.request_by).collect::<Vec<_>>())
        .fetch_all(&mut *self.0)
        .await?;
        Ok(changed.into_iter().collect())
    }

    async fn insert_events(
        &mut self,
        rows: &[plan::EventRow<'_>],
    ) -> sqlx::Result<HashMap<String, i64>> {
        let out = sqlx::query(
            "INSERT INTO events (issue_id, at, actor, kind, payload, rules_version, decision)
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[])
             RETURNING seq, issue_id",
        )
        .bind(rows.iter().map(|r| r.issue_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.actor).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.rules_version).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.decision.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *self.0)
        .await?;
        Ok(out.into_iter().map(|r| (r.get(1), r.get(0))).collect())
    }

    async fn delete_of_issues(
        &mut self,
        table: plan::Replaced,
        issues: &[&str],
    ) -> sqlx::Result<()> {
        sqlx::query(&format!(
            "DELETE FROM {} WHERE issue_id = ANY($1)",
            table.table()
        ))
        .bind(issues)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_timers(&mut self, rows: &[plan::TimerRow<'_>]) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO timers (issue_id, due, event)
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[])",
        )
        .bind(rows.iter().map(|r| r.issue_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.due).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.event.as_str()).collect::<Vec<_>>())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_outbox(&mut self, rows: &[plan::OutboxInsert<'_>]) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO outbox (dedupe_key, issue_id, event_seq, kind, person, channel, address, template, locale, vars, created_at, urgent, not_before)
             SELECT key, issue, seq, kind, person, channel, address, template, locale, vars, at, urgent, at
             FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::bool[])
                  AS v(key, issue, seq, kind, person, channel, address, template, locale, vars, at, urgent)
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(rows.iter().map(|r| r.dedupe_key.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.issue_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.event_seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.person.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.channel).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.address.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.template.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.locale.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.vars.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.urgent).collect::<Vec<_>>())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_assignments(&mut self, rows: &[plan::AssignmentRow<'_>]) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO assignments (department, issue_id, lead)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bool[])
             ON CONFLICT DO NOTHING",
        )
        .bind(rows.iter().map(|r| r.department).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.issue_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.lead).collect::<Vec<_>>())
        .execute(&mut *self.0)
        .await?;
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
            "INSERT INTO meetings (kind, at, participants, departments, created_at) VALUES ($1, $2, '[]', '[]', $3)
             ON CONFLICT (kind, at) WHERE status = 'scheduled' DO NOTHING",
        )
        .bind(&call.meeting)
        .bind(millis(call.at))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        // Locked: another replica convening the same meeting merges its names after this one.
        let row = sqlx::query(
            "SELECT id, participants, departments FROM meetings WHERE kind = $1 AND at = $2 AND status = 'scheduled' FOR UPDATE",
        )
        .bind(&call.meeting)
        .bind(millis(call.at))
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.get(0);
        sqlx::query("UPDATE meetings SET participants = $1, departments = $2 WHERE id = $3")
            .bind(plan::merge_names(row.get(1), &call.participants))
            .bind(plan::merge_names(row.get(2), &call.departments))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO meeting_agenda (meeting_id, issue_id, added_seq) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
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
            "INSERT INTO evaluations (issue_id, event_seq, rating, comment, department, actor, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
            "UPDATE meeting_agenda SET outcome_seq = $1 WHERE meeting_id = $2 AND issue_id = $3",
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

/// This process's name among the replicas: its host, its pid and a random part.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!("{host}/{}/{}", std::process::id(), hex::encode(random))
}
