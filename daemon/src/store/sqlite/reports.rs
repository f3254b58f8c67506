//! What scheduled reports read (overdue issues, a period's figures per department) and how a
//! job's run is recorded with its messages.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use escalade_rules::scoring::{DepartmentFigures, UnitFigures};

use super::super::{OverdueRow, ReportMessage, Result};
use super::{SqliteStore, instant, json, millis};

impl SqliteStore {
    /// Open issues with a deadline at or before `now`, by report time.
    pub async fn overdue_issues(&self, now: DateTime<Utc>) -> Result<Vec<OverdueRow>> {
        let rows = sqlx::query(
            "SELECT id, category, unit, branch, department, acknowledge_by, resolve_by FROM issues
             WHERE status IN ('assigned', 'acknowledged', 'in_progress')
               AND (acknowledge_by <= ?1 OR resolve_by <= ?1)
             ORDER BY reported_at, id",
        )
        .bind(millis(now))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(OverdueRow {
                    id: r.get(0),
                    category: r.get(1),
                    unit: r.get(2),
                    branch: r.get(3),
                    department: r.get(4),
                    acknowledge_by: r.get::<Option<i64>, _>(5).map(instant).transpose()?,
                    resolve_by: r.get::<Option<i64>, _>(6).map(instant).transpose()?,
                })
            })
            .collect()
    }

    /// Each department's figures over `[from, to)`: issues assigned to it (reported or
    /// reassigned to it), acknowledged and resolved before their deadline passed, rejections by
    /// the reporter, and ratings.
    pub async fn scorecard(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DepartmentFigures>> {
        let (from, to) = (millis(from), millis(to));
        let mut rows: std::collections::BTreeMap<String, DepartmentFigures> = Default::default();
        fn row(
            rows: &mut std::collections::BTreeMap<String, DepartmentFigures>,
            d: String,
        ) -> &mut DepartmentFigures {
            rows.entry(d.clone()).or_insert_with(|| DepartmentFigures {
                department: d,
                ..Default::default()
            })
        }
        let assigned = sqlx::query(
            "SELECT d.value, COUNT(DISTINCT e.issue_id) FROM events e,
                    json_each(e.decision, '$.next.departments') AS d
             WHERE e.at >= ? AND e.at < ? AND e.kind IN ('reported', 'reassigned', 'meeting_outcome')
             GROUP BY d.value",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        for r in assigned {
            row(&mut rows, r.get(0)).assigned = r.get::<i64, _>(1) as u64;
        }
        // A deadline passed before the action (for resolving: since the issue last reopened)
        // makes it late.
        let on_time = sqlx::query(
            "SELECT json_extract(e.decision, '$.next.departments[0]') AS d,
                    SUM(e.kind = 'acknowledged' AND NOT EXISTS (
                        SELECT 1 FROM events p WHERE p.issue_id = e.issue_id AND p.seq < e.seq
                          AND p.kind = 'deadline_passed'
                          AND json_extract(p.payload, '$.deadline') = 'acknowledge')),
                    SUM(e.kind = 'resolved' AND NOT EXISTS (
                        SELECT 1 FROM events p WHERE p.issue_id = e.issue_id AND p.seq < e.seq
                          AND p.seq > COALESCE((SELECT MAX(r.seq) FROM events r
                                                WHERE r.issue_id = e.issue_id AND r.seq < e.seq
                                                  AND r.kind = 'rejected'), 0)
                          AND p.kind = 'deadline_passed'
                          AND json_extract(p.payload, '$.deadline') = 'resolve')),
                    SUM(e.kind = 'rejected'),
                    SUM(e.kind = 'acknowledged'),
                    SUM(e.kind = 'resolved')
             FROM events e
             WHERE e.at >= ? AND e.at < ? AND e.kind IN ('acknowledged', 'resolved', 'rejected')
             GROUP BY d",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        for r in on_time {
            let Some(d) = r.get::<Option<String>, _>(0) else {
                continue;
            };
            let x = row(&mut rows, d);
            x.acknowledged_on_time = r.get::<i64, _>(1) as u64;
            x.resolved_on_time = r.get::<i64, _>(2) as u64;
            x.reopened = r.get::<i64, _>(3) as u64;
            x.acknowledged = r.get::<i64, _>(4) as u64;
            x.resolved = r.get::<i64, _>(5) as u64;
        }
        // Returns decided in the period: the dispatcher's next assignment says whether the
        // department that returned the issue was right.
        let returns = sqlx::query(
            "SELECT json_extract(decision, '$.effects.return_decided.department') AS d,
                    SUM(json_extract(decision, '$.effects.return_decided.accepted') = 1),
                    SUM(json_extract(decision, '$.effects.return_decided.accepted') = 0)
             FROM events
             WHERE at >= ? AND at < ? AND kind = 'reassigned' AND d IS NOT NULL
             GROUP BY d",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        for r in returns {
            let x = row(&mut rows, r.get(0));
            x.returns_accepted = r.get::<i64, _>(1) as u64;
            x.returns_rejected = r.get::<i64, _>(2) as u64;
        }
        // Issues a supervision notice named a department on in the period, and how many of
        // them are resolved or closed now.
        let supervised = sqlx::query(
            "SELECT d.value, COUNT(DISTINCT e.issue_id),
                    COUNT(DISTINCT CASE WHEN i.status IN ('resolved', 'closed', 'closed_at_grid')
                                        THEN e.issue_id END)
             FROM events e
             JOIN issues i ON i.id = e.issue_id,
                  json_each(e.decision, '$.supervision') AS s,
                  json_each(s.value, '$.departments') AS d
             WHERE e.at >= ? AND e.at < ?
             GROUP BY d.value",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        for r in supervised {
            let x = row(&mut rows, r.get(0));
            x.supervised = r.get::<i64, _>(1) as u64;
            x.supervised_resolved = r.get::<i64, _>(2) as u64;
        }
        let rated = sqlx::query(
            "SELECT department, COUNT(*), SUM(rating) FROM evaluations
             WHERE at >= ? AND at < ? AND department IS NOT NULL GROUP BY department",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        for r in rated {
            let x = row(&mut rows, r.get(0));
            x.rated = r.get::<i64, _>(1) as u64;
            x.rating_sum = r.get::<i64, _>(2) as u64;
        }
        Ok(rows.into_values().collect())
    }

    /// Each unit's counts over `[from, to)`, by the unit an issue was reported in (the daemon
    /// rolls them up to the scored tier).
    pub async fn unit_figures(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UnitFigures>> {
        let (from, to) = (millis(from), millis(to));
        let mut rows: std::collections::BTreeMap<String, UnitFigures> = Default::default();
        let reported = sqlx::query(
            "SELECT unit, COUNT(*) FROM issues WHERE reported_at >= ? AND reported_at < ?
             GROUP BY unit",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        for r in reported {
            let u: String = r.get(0);
            rows.entry(u.clone())
                .or_insert_with(|| UnitFigures {
                    unit: u,
                    ..Default::default()
                })
                .reported = r.get::<i64, _>(1) as u64;
        }
        // The departments' verdicts, and the checks on site: a confirmation counts as on time
        // unless the time to verify lapsed since the resolution it confirms; a lapse counts
        // once per resolution.
        let checked = sqlx::query(
            "SELECT i.unit,
                    SUM(e.kind = 'report_rated' AND json_extract(e.payload, '$.verdict') = 'valid'),
                    SUM(e.kind = 'report_rated' AND json_extract(e.payload, '$.verdict') = 'invalid'),
                    SUM(e.kind = 'report_rated' AND json_extract(e.payload, '$.verdict') = 'duplicate'),
                    SUM(e.kind = 'report_rated' AND json_extract(e.payload, '$.verdict') = 'not_ours'),
                    SUM(e.kind IN ('confirmed', 'verification_lapsed') AND NOT EXISTS (
                        SELECT 1 FROM events p WHERE p.issue_id = e.issue_id AND p.seq < e.seq
                          AND p.kind = 'verification_lapsed'
                          AND p.seq > COALESCE((SELECT MAX(r.seq) FROM events r
                                                WHERE r.issue_id = e.issue_id AND r.seq < e.seq
                                                  AND r.kind = 'resolved'), 0))
                        AND e.kind = 'confirmed'),
                    SUM(e.kind = 'verification_lapsed' AND NOT EXISTS (
                        SELECT 1 FROM events p WHERE p.issue_id = e.issue_id AND p.seq < e.seq
                          AND p.kind = 'verification_lapsed'
                          AND p.seq > COALESCE((SELECT MAX(r.seq) FROM events r
                                                WHERE r.issue_id = e.issue_id AND r.seq < e.seq
                                                  AND r.kind = 'resolved'), 0)))
             FROM events e JOIN issues i ON i.id = e.issue_id
             WHERE e.at >= ? AND e.at < ?
               AND e.kind IN ('report_rated', 'confirmed', 'verification_lapsed')
             GROUP BY i.unit",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        for r in checked {
            let u: String = r.get(0);
            let x = rows.entry(u.clone()).or_insert_with(|| UnitFigures {
                unit: u,
                ..Default::default()
            });
            x.rated_valid = r.get::<i64, _>(1) as u64;
            x.rated_invalid = r.get::<i64, _>(2) as u64;
            x.rated_duplicate = r.get::<i64, _>(3) as u64;
            x.rated_not_ours = r.get::<i64, _>(4) as u64;
            x.verified_on_time = r.get::<i64, _>(5) as u64;
            x.verification_lapsed = r.get::<i64, _>(6) as u64;
        }
        Ok(rows.into_values().collect())
    }

    /// When the daemon first saw job `job`, registering it now if it is new.
    pub async fn job_since(&self, job: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        sqlx::query("INSERT INTO jobs_known (job, since) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(job)
            .bind(millis(now))
            .execute(&self.writer)
            .await?;
        let since: i64 = sqlx::query_scalar("SELECT since FROM jobs_known WHERE job = ?")
            .bind(job)
            .fetch_one(&self.writer)
            .await?;
        instant(since)
    }

    /// The latest scheduled time job `job` ran for.
    pub async fn last_run(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT MAX(scheduled_at) FROM job_runs WHERE job = ?")
                .bind(job)
                .fetch_one(&self.writer)
                .await?;
        at.map(instant).transpose()
    }

    /// Records that job `job` ran for `scheduled_at` and queues its messages, in one
    /// transaction. False, queueing nothing, if that run was recorded already.
    pub async fn record_run(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        ran_at: DateTime<Utc>,
        messages: &[ReportMessage],
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let new = sqlx::query(
            "INSERT INTO job_runs (job, scheduled_at, ran_at, messages) VALUES (?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(job)
        .bind(millis(scheduled_at))
        .bind(millis(ran_at))
        .bind(messages.len() as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !new {
            return Ok(false);
        }
        // Nine values a row.
        for chunk in messages.chunks(super::MAX_VARS / 9) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (dedupe_key, kind, person, channel, address, template, locale, vars, created_at) ",
            );
            q.push_values(chunk, |mut b, m| {
                b.push_bind(format!(
                    "job/{job}/{}/{}/{}",
                    millis(scheduled_at),
                    m.person,
                    m.channel.as_str()
                ))
                .push_bind("report")
                .push_bind(&m.person)
                .push_bind(m.channel.as_str())
                .push_bind(&m.address)
                .push_bind(&m.template)
                .push_bind(&m.locale)
                .push_bind(json(&m.vars))
                .push_bind(millis(ran_at));
            });
            q.push(" ON CONFLICT (dedupe_key) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
