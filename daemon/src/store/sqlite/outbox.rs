//! The outbox's delivery on SQLite: claims, settlements, dead letters. Claims and settlements
//! go through the one writer connection, a statement each (not the group commit: they change
//! no issue).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use escalade_rules::{Issue, IssueState};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{MAX_VARS, SqliteStore, instant, millis, parse};
use crate::store::{Claimed, OutboxFilter, OutboxRow, Requeue, Result, Settlement};

/// The columns `row` reads, in its order.
const COLUMNS: &str = "id, issue_id, event_seq, kind, person, channel, address, template, locale, status, urgent, attempts, last_error, not_before, sent_at, created_at, segments, COALESCE(due_at, created_at), retried_at";

fn row(r: &SqliteRow) -> Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0),
        issue_id: r.get(1),
        event_seq: r.get(2),
        kind: r.get(3),
        person: r.get(4),
        channel: r.get(5),
        address: r.get(6),
        template: r.get(7),
        locale: r.get(8),
        status: r.get(9),
        urgent: r.get::<i64, _>(10) != 0,
        attempts: r.get(11),
        last_error: r.get(12),
        not_before: instant(r.get(13))?,
        sent_at: r.get::<Option<i64>, _>(14).map(instant).transpose()?,
        created_at: instant(r.get(15))?,
        segments: r.get(16),
        due_at: instant(r.get(17))?,
        retried_at: r.get::<Option<i64>, _>(18).map(instant).transpose()?,
    })
}

impl SqliteStore {
    /// Queue every committed event for the webhook from now on (or stop).
    pub fn set_webhook_events(&self, on: bool) {
        self.webhook_events.store(on, Ordering::Release);
    }

    /// Outbox rows matching `f`, by id.
    pub async fn outbox_page(&self, f: &OutboxFilter) -> Result<Vec<OutboxRow>> {
        let mut q =
            QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM outbox WHERE 1 = 1"));
        if let Some(s) = &f.status {
            q.push(" AND status = ").push_bind(s.clone());
        }
        if let Some(after) = f.after {
            q.push(" AND id > ").push_bind(after);
        }
        q.push(" ORDER BY id LIMIT ").push_bind(f.limit);
        let rows = q.build().fetch_all(&self.reader).await?;
        rows.iter().map(row).collect()
    }

    pub async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?"))
            .bind(id)
            .fetch_all(&self.reader)
            .await?;
        rows.first().map(row).transpose()
    }

    /// Claims a channel's due rows: expired leases first (a worker died mid-send), then queued
    /// rows in due order. Each branch reads the `outbox_due` index in order and stops at the
    /// limit, so a claim costs the same with a backlog of a million rows as with ten.
    pub async fn claim(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        let now = millis(now);
        // Two statements in one transaction, so that each claimed row is known to be taken
        // over (from the first) or not (SQLite's RETURNING sees only the updated table).
        let mut tx = self.writer.begin().await?;
        let mut claimed = Vec::new();
        for (taken_over, branch) in [
            (
                true,
                "status = 'sending' AND lease_until < ? ORDER BY lease_until, id",
            ),
            (
                false,
                "status = 'queued' AND not_before <= ? ORDER BY not_before, id",
            ),
        ] {
            let left = limit - claimed.len() as i64;
            if left <= 0 {
                break;
            }
            let rows = sqlx::query(&format!(
                "UPDATE outbox SET status = 'sending', lease_until = ?, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM outbox WHERE channel = ? AND {branch} LIMIT ?)
                 RETURNING {COLUMNS}, vars"
            ))
            .bind(millis(lease_until))
            .bind(channel)
            .bind(now)
            .bind(left)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                claimed.push(Claimed {
                    row: row(r)?,
                    vars: r.get(19),
                    taken_over,
                });
            }
        }
        tx.commit().await?;
        claimed.sort_by_key(|c| (c.row.not_before, c.row.id));
        Ok(claimed)
    }

    /// Settles claimed rows, one statement for a batch.
    pub async fn settle(&self, outcomes: &[(i64, Settlement)], now: DateTime<Utc>) -> Result<()> {
        for chunk in outcomes.chunks(MAX_VARS / 8) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "UPDATE outbox SET status = v.column2,
                 not_before = COALESCE(v.column3, outbox.not_before),
                 last_error = COALESCE(v.column4, outbox.last_error),
                 sent_at = v.column5,
                 segments = COALESCE(v.column6, outbox.segments),
                 attempts = outbox.attempts - v.column7,
                 due_at = COALESCE(v.column8, outbox.due_at),
                 lease_until = NULL
                 FROM (",
            );
            q.push_values(chunk, |mut b, (id, s)| {
                // A hold (not an attempt) makes the row due when it ends; staling is no attempt.
                let (status, not_before, error, sent_at, segments, uncount, due) = match s {
                    Settlement::Sent { segments } => {
                        ("sent", None, None, Some(millis(now)), *segments, 0i64, None)
                    }
                    Settlement::Retry { not_before, error } => (
                        "queued",
                        Some(millis(*not_before)),
                        Some(error.as_str()),
                        None,
                        None,
                        0,
                        None,
                    ),
                    Settlement::Dead { error } => {
                        ("dead", None, Some(error.as_str()), None, None, 0, None)
                    }
                    Settlement::Stale { error } => {
                        ("stale", None, Some(error.as_str()), None, None, 1, None)
                    }
                    Settlement::Hold { not_before } => {
                        let t = Some(millis(*not_before));
                        ("queued", t, None, None, None, 1, t)
                    }
                };
                b.push_bind(*id)
                    .push_bind(status)
                    .push_bind(not_before)
                    .push_bind(error)
                    .push_bind(sent_at)
                    .push_bind(segments)
                    .push_bind(uncount)
                    .push_bind(due);
            });
            q.push(") AS v WHERE outbox.id = v.column1 AND outbox.status = 'sending'");
            q.build().execute(&self.writer).await?;
        }
        Ok(())
    }

    /// When each person was last sent an email of an issue (reports do not count).
    pub async fn last_emails(&self, persons: &[&str]) -> Result<HashMap<String, DateTime<Utc>>> {
        let mut out = HashMap::new();
        for chunk in persons.chunks(MAX_VARS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT person, MAX(sent_at) FROM outbox WHERE channel = 'email' AND sent_at IS NOT NULL
                 AND issue_id IS NOT NULL AND person IN (",
            );
            let mut list = q.separated(", ");
            for p in chunk {
                list.push_bind(*p);
            }
            q.push(") GROUP BY person");
            for r in q.build().fetch_all(&self.reader).await? {
                out.insert(r.get(0), instant(r.get(1))?);
            }
        }
        Ok(out)
    }

    /// The issue and its state right after each event.
    pub async fn message_context(&self, seqs: &[i64]) -> Result<HashMap<i64, (Issue, IssueState)>> {
        let mut out = HashMap::with_capacity(seqs.len());
        for chunk in seqs.chunks(MAX_VARS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT e.seq, i.body, json_extract(e.decision, '$.next') FROM events e
                 JOIN issues i ON i.id = e.issue_id WHERE e.seq IN (",
            );
            let mut list = q.separated(", ");
            for s in chunk {
                list.push_bind(*s);
            }
            q.push(")");
            for r in q.build().fetch_all(&self.reader).await? {
                let issue: Issue = parse("issue body", r.get::<&str, _>(1))?;
                let state: IssueState = parse("decision state", r.get::<&str, _>(2))?;
                out.insert(r.get(0), (issue, state));
            }
        }
        Ok(out)
    }

    /// Queues a dead letter or a stale message again, retried by hand.
    pub async fn requeue(&self, id: i64, now: DateTime<Utc>) -> Result<Requeue> {
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET status = 'queued', not_before = ?1, retried_at = ?1, attempts = 0,
             lease_until = NULL
             WHERE id = ?2 AND status IN ('dead', 'stale') RETURNING {COLUMNS}"
        ))
        .bind(millis(now))
        .bind(id)
        .fetch_all(&self.writer)
        .await?;
        if let Some(r) = rows.first() {
            return Ok(Requeue::Requeued(Box::new(row(r)?)));
        }
        let status: Vec<String> = sqlx::query_scalar("SELECT status FROM outbox WHERE id = ?")
            .bind(id)
            .fetch_all(&self.writer)
            .await?;
        Ok(match status.into_iter().next() {
            Some(s) => Requeue::NotDead(s),
            None => Requeue::NotFound,
        })
    }

    /// Rows per `(channel, status)` that are not sent.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT channel, status, COUNT(*) FROM outbox
             WHERE status IN ('queued', 'sending', 'dead', 'stale')
             GROUP BY channel, status ORDER BY channel, status",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Whether a channel has rows queued or sending.
    pub async fn outbox_waiting(&self, channel: &str) -> Result<bool> {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE channel = ?1 AND status = 'queued')
                 OR EXISTS (SELECT 1 FROM outbox WHERE channel = ?1 AND status = 'sending')",
        )
        .bind(channel)
        .fetch_one(&self.reader)
        .await?;
        Ok(waiting)
    }

    /// The earliest `not_before` of a channel's queued rows.
    pub async fn next_not_before(&self, channel: &str) -> Result<Option<DateTime<Utc>>> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(not_before) FROM outbox WHERE channel = ? AND status = 'queued'",
        )
        .bind(channel)
        .fetch_one(&self.reader)
        .await?;
        t.map(instant).transpose()
    }
}
