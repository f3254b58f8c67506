//! The outbox's delivery on PostgreSQL: claims, settlements, dead letters. Replicas deliver the
//! same outbox: a claim locks the rows it takes and passes over rows another claim holds, and a
//! settlement only touches rows this process still holds.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use escalade_rules::{Issue, IssueState};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::{MAX_VARS, PgStore, instant, millis, parse};
use crate::store::{Claimed, OutboxFilter, OutboxRow, Requeue, Result, Settlement};

/// The columns `row` reads, in its order.
const COLUMNS: &str = "id, issue_id, event_seq, kind, person, channel, address, template, locale, status, urgent, attempts, last_error, not_before, sent_at, created_at, segments, COALESCE(due_at, created_at), retried_at";

/// Who claims rows from this process (`outbox.claimed_by`): its id and a random part, as a
/// process id alone repeats across hosts and restarts.
static CLAIMANT: LazyLock<String> = LazyLock::new(|| {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the operating system's random source");
    format!("{}-{}", std::process::id(), hex::encode(b))
});

fn row(r: &PgRow) -> Result<OutboxRow> {
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
        urgent: r.get(10),
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

/// What a settlement writes: status, not_before, error, sent_at, segments, attempts taken back,
/// due_at.
type Written<'a> = (
    &'static str,
    Option<i64>,
    Option<&'a str>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
);

fn written(s: &Settlement, now: DateTime<Utc>) -> Written<'_> {
    // A hold (not an attempt) makes the row due when it ends; staling is no attempt.
    match s {
        Settlement::Sent { segments } => {
            ("sent", None, None, Some(millis(now)), *segments, 0, None)
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
        Settlement::Dead { error } => ("dead", None, Some(error.as_str()), None, None, 0, None),
        Settlement::Stale { error } => ("stale", None, Some(error.as_str()), None, None, 1, None),
        Settlement::Hold { not_before } => {
            let t = Some(millis(*not_before));
            ("queued", t, None, None, None, 1, t)
        }
    }
}

impl PgStore {
    /// Queue every committed event for the webhook from now on (or stop).
    pub fn set_webhook_events(&self, on: bool) {
        self.webhook_events.store(on, Ordering::Release);
    }

    /// Outbox rows matching `f`, by id.
    pub async fn outbox_page(&self, f: &OutboxFilter) -> Result<Vec<OutboxRow>> {
        let mut q =
            QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM outbox WHERE 1 = 1"));
        if let Some(s) = &f.status {
            q.push(" AND status = ").push_bind(s.clone());
        }
        if let Some(after) = f.after {
            q.push(" AND id > ").push_bind(after);
        }
        q.push(" ORDER BY id LIMIT ").push_bind(f.limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(row).collect()
    }

    pub async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM outbox WHERE id = $1"))
            .bind(id)
            .fetch_all(&self.pool)
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
        self.claim_as(&CLAIMANT, channel, now, lease_until, limit)
            .await
    }

    /// `claim` on behalf of `claimant`. Each branch locks the rows it picks and skips those
    /// another claim has locked, and a row changed by a claim that committed meanwhile is
    /// checked again against its branch: two claims never take the same row while its lease
    /// holds. The picked ids are materialised, so the locking selects run once.
    async fn claim_as(
        &self,
        claimant: &str,
        channel: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        let rows = sqlx::query(&format!(
            "WITH picked (pick, lapsed) AS MATERIALIZED (
                 SELECT id, true FROM (SELECT id FROM outbox WHERE channel = $2
                                       AND status = 'sending' AND lease_until < $3
                                       ORDER BY lease_until, id LIMIT $4
                                       FOR UPDATE SKIP LOCKED) AS expired
                 UNION ALL
                 SELECT id, false FROM (SELECT id FROM outbox WHERE channel = $2
                                        AND status = 'queued' AND not_before <= $3
                                        ORDER BY not_before, id LIMIT $4
                                        FOR UPDATE SKIP LOCKED) AS due
                 LIMIT $4)
             UPDATE outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1,
                               claimed_by = $5
             FROM picked WHERE outbox.id = picked.pick
             RETURNING {COLUMNS}, vars, picked.lapsed"
        ))
        .bind(millis(lease_until))
        .bind(channel)
        .bind(millis(now))
        .bind(limit)
        .bind(claimant)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(Claimed {
                    row: row(r)?,
                    vars: r.get(19),
                    taken_over: r.get(20),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|c| (c.row.not_before, c.row.id));
        Ok(claimed)
    }

    /// Settles claimed rows, one statement for a batch. Only rows still `sending` under this
    /// process's claim change: a row requeued by hand meanwhile, or whose lease lapsed and
    /// which another replica claimed since, is left to its new owner.
    pub async fn settle(&self, outcomes: &[(i64, Settlement)], now: DateTime<Utc>) -> Result<()> {
        self.settle_as(&CLAIMANT, outcomes, now).await
    }

    /// `settle` on behalf of `claimant`.
    async fn settle_as(
        &self,
        claimant: &str,
        outcomes: &[(i64, Settlement)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for chunk in outcomes.chunks((MAX_VARS - 1) / 8) {
            let mut q = QueryBuilder::<Postgres>::new(
                "UPDATE outbox SET status = v.status,
                 not_before = COALESCE(v.not_before, outbox.not_before),
                 last_error = COALESCE(v.error, outbox.last_error),
                 sent_at = v.sent_at,
                 segments = COALESCE(v.segments, outbox.segments),
                 attempts = outbox.attempts - v.uncount,
                 due_at = COALESCE(v.due, outbox.due_at),
                 lease_until = NULL,
                 claimed_by = NULL
                 FROM (",
            );
            q.push_values(chunk, |mut b, (id, s)| {
                let (status, not_before, error, sent_at, segments, uncount, due) = written(s, now);
                b.push_bind(*id)
                    .push_bind(status)
                    .push_bind(not_before)
                    .push_bind(error)
                    .push_bind(sent_at)
                    .push_bind(segments)
                    .push_bind(uncount)
                    .push_bind(due);
            });
            q.push(
                ") AS v (id, status, not_before, error, sent_at, segments, uncount, due)
                 WHERE outbox.id = v.id AND outbox.status = 'sending' AND outbox.claimed_by = ",
            )
            .push_bind(claimant);
            q.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    /// When each person was last sent an email of an issue (reports do not count).
    pub async fn last_emails(&self, persons: &[&str]) -> Result<HashMap<String, DateTime<Utc>>> {
        let mut out = HashMap::new();
        for chunk in persons.chunks(MAX_VARS) {
            let mut q = QueryBuilder::<Postgres>::new(
                "SELECT person, MAX(sent_at) FROM outbox WHERE channel = 'email' AND sent_at IS NOT NULL
                 AND issue_id IS NOT NULL AND person IN (",
            );
            let mut list = q.separated(", ");
            for p in chunk {
                list.push_bind(*p);
            }
            q.push(") GROUP BY person");
            for r in q.build().fetch_all(&self.pool).await? {
                out.insert(r.get(0), instant(r.get(1))?);
            }
        }
        Ok(out)
    }

    /// The issue and its state right after each event.
    pub async fn message_context(&self, seqs: &[i64]) -> Result<HashMap<i64, (Issue, IssueState)>> {
        let mut out = HashMap::with_capacity(seqs.len());
        for chunk in seqs.chunks(MAX_VARS) {
            let mut q = QueryBuilder::<Postgres>::new(
                "SELECT e.seq, i.body, e.decision::jsonb ->> 'next' FROM events e
                 JOIN issues i ON i.id = e.issue_id WHERE e.seq IN (",
            );
            let mut list = q.separated(", ");
            for s in chunk {
                list.push_bind(*s);
            }
            q.push(")");
            for r in q.build().fetch_all(&self.pool).await? {
                let issue: Issue = parse("issue body", r.get::<&str, _>(1))?;
                let state: IssueState = parse(
                    "decision state",
                    r.get::<Option<&str>, _>(2).unwrap_or("null"),
                )?;
                out.insert(r.get(0), (issue, state));
            }
        }
        Ok(out)
    }

    /// Queues a dead letter or a stale message again, retried by hand.
    pub async fn requeue(&self, id: i64, now: DateTime<Utc>) -> Result<Requeue> {
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET status = 'queued', not_before = $1, retried_at = $1, attempts = 0,
             lease_until = NULL, claimed_by = NULL
             WHERE id = $2 AND status IN ('dead', 'stale') RETURNING {COLUMNS}"
        ))
        .bind(millis(now))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        if let Some(r) = rows.first() {
            return Ok(Requeue::Requeued(Box::new(row(r)?)));
        }
        let status: Vec<String> = sqlx::query_scalar("SELECT status FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(match status.into_iter().next() {
            Some(s) => Requeue::NotDead(s),
            None => Requeue::NotFound,
        })
    }

    /// Rows per `(channel, status)` that are not sent, in bytewise order as on SQLite.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT channel, status, COUNT(*) FROM outbox
             WHERE status IN ('queued', 'sending', 'dead', 'stale')
             GROUP BY channel, status ORDER BY channel COLLATE \"C\", status COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Whether a channel has rows queued or sending.
    pub async fn outbox_waiting(&self, channel: &str) -> Result<bool> {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE channel = $1 AND status = 'queued')
                 OR EXISTS (SELECT 1 FROM outbox WHERE channel = $1 AND status = 'sending')",
        )
        .bind(channel)
        .fetch_one(&self.pool)
        .await?;
        Ok(waiting)
    }

    /// The earliest `not_before` of a channel's queued rows.
    pub async fn next_not_before(&self, channel: &str) -> Result<Option<DateTime<Utc>>> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(not_before) FROM outbox WHERE channel = $1 AND status = 'queued'",
        )
        .bind(channel)
        .fetch_one(&self.pool)
        .await?;
        t.map(instant).transpose()
    }
}

/// Against a real server: each test makes a database of its own on the server that
/// `ESCALADE_TEST_DATABASE_URL` names (`postgres://postgres@127.0.0.1:5432/test`), opens a
/// store on it (which migrates it) and drops it when done. Without the variable they skip.
#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashSet};
    use std::path::Path;
    use std::sync::Arc;

    use chrono::{DateTime, TimeZone, Utc};
    use escalade_rules::{Channel, Issue, IssueState, State};
    use serde_json::{Value, json};
    use sqlx::{Connection, Executor, PgConnection};

    use super::super::PgStore;
    use crate::auth::{Grant, Role};
    use crate::store::{
        OutboxFilter, ReportMessage, Settlement, ShadowDiff, SqliteStore, TokenTerms, Use,
    };

    const T0: i64 = 1_700_000_000_000;
    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).unwrap()
    }

    /// A database of one test's own, dropped when the test ends, passed or failed.
    struct TestDb {
        server: String,
        name: String,
        url: String,
    }

    impl TestDb {
        async fn create(test: &str) -> Option<TestDb> {
            let Ok(server) = std::env::var("ESCALADE_TEST_DATABASE_URL") else {
                eprintln!("{test}: skipped (ESCALADE_TEST_DATABASE_URL is not set)");
                return None;
            };
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).unwrap();
            let name = format!("escalade_test_{}", hex::encode(b));
            let mut conn = PgConnection::connect(&server).await.unwrap();
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap();
            conn.close().await.unwrap();
            let url = with_database(&server, &name);
            Some(TestDb { server, name, url })
        }

        async fn store(&self) -> PgStore {
            PgStore::open(&self.url, None)
                .await
                .expect("the migration applies")
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            // The test's runtime may be shutting down: drop from a thread with a runtime of its
            // own. FORCE closes the stores' connections still open.
            let (server, name) = (self.server.clone(), self.name.clone());
            let dropped = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        let mut conn = PgConnection::connect(&server).await?;
                        conn.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
                            .await
                            .map(|_| ())
                    })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test database {}", self.name);
            }
        }
    }

    /// `url` with its database replaced by `name`, its options kept.
    fn with_database(url: &str, name: &str) -> String {
        let (base, options) = match url.split_once('?') {
            Some((b, o)) => (b, format!("?{o}")),
            None => (url, String::new()),
        };
        let host = base.find("://").map_or(0, |i| i + 3);
        let path = base[host..].find('/').map_or(base.len(), |i| host + i);
        format!("{}/{name}{options}", &base[..path])
    }

    async fn exec(s: &PgStore, sql: &str) {
        sqlx::raw_sql(sql).execute(&s.pool).await.unwrap();
    }

    async fn scalar(s: &PgStore, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&s.pool).await.unwrap()
    }

    /// An issue and its first event, which outbox rows refer to.
    async fn one_issue(s: &PgStore) {
        exec(
            s,
            "INSERT INTO issues (id, version, body, state, status, category, unit, reported_at, updated_at)
             VALUES ('1', 1, '{}', '{}', 'assigned', 'road', 'g1', 0, 0);
             INSERT INTO events (issue_id, at, actor, kind, payload, rules_version, decision)
             VALUES ('1', 0, 'ana', 'reported', '{\"event\":\"reported\"}', 'v', '{}');",
        )
        .await;
    }

    /// Queues `n` email rows of issue 1, due at 1, 2, ... ms.
    async fn queue(s: &PgStore, n: i64) {
        exec(
            s,
            &format!(
                "INSERT INTO outbox (dedupe_key, issue_id, event_seq, kind, person, channel, address,
                                     template, locale, vars, created_at, not_before)
                 SELECT 'k' || g, '1', 1, 'assigned', 'p' || g, 'email', 'p@x', 'assigned', 'en',
                        '{{}}', 0, g FROM generate_series(1, {n}) AS g"
            ),
        )
        .await;
    }

    /// Tables, columns (name, order, NOT NULL) and indexes as the SQLite migrations leave them,
    /// plus what replicas share; the partial unique index on meetings; keys checked at commit;
    /// the issue id sequence.
    #[tokio::test]
    async fn migration_gives_the_sqlite_schema() {
        let Some(db) = TestDb::create("migration_gives_the_sqlite_schema").await else {
            return;
        };
        let s = db.store().await;
        let dir = tempfile::tempdir().unwrap();
        let lite = dir.path().join("store.db");
        SqliteStore::open(&lite).await.unwrap();
        let lite = sqlx::SqlitePool::connect(&format!("sqlite://{}", lite.display()))
            .await
            .unwrap();
        let lite_tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             AND name <> '_sqlx_migrations' ORDER BY name",
        )
        .fetch_all(&lite)
        .await
        .unwrap();
        let pg_tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'
             AND table_name <> '_sqlx_migrations' ORDER BY 1",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap();
        let mut expected = lite_tables.clone();
        // Only PostgreSQL's replicas share a leader's lease, and keep photos in the database.
        expected.push("leases".into());
        expected.push("photos".into());
        expected.sort();
        assert_eq!(pg_tables, expected);
        // Columns only PostgreSQL has: replicas' claims.
        let extra = [
            ("timers", "lease_until"),
            ("timers", "claimed_by"),
            ("outbox", "claimed_by"),
        ];
        for table in &lite_tables {
            let lite_cols: Vec<(String, bool)> = sqlx::query_as::<_, (String, i64, i64)>(&format!(
                "SELECT name, \"notnull\", pk FROM pragma_table_info('{table}') ORDER BY cid"
            ))
            .fetch_all(&lite)
            .await
            .unwrap()
            .into_iter()
            .map(|(n, notnull, pk)| (n, notnull == 1 || pk > 0))
            .collect();
            let pg_cols: Vec<(String, bool)> = sqlx::query_as::<_, (String, String)>(
                "SELECT column_name::text, is_nullable::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&s.pool)
            .await
            .unwrap()
            .into_iter()
            .filter(|(n, _)| !extra.contains(&(table.as_str(), n.as_str())))
            .map(|(n, nullable)| (n, nullable == "NO"))
            .collect();
            assert_eq!(pg_cols, lite_cols, "columns of {table}");
        }
        let lite_indexes: BTreeSet<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&lite)
        .await
        .unwrap()
        .into_iter()
        .collect();
        let pg_indexes: BTreeSet<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'
             AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'",
        )
        .fetch_all(&s.pool)
        .await
        .unwrap()
        .into_iter()
        // Only PostgreSQL's replicas hold claims on timers.
        .filter(|i: &String| i != "timers_claimed")
        .collect();
        assert_eq!(pg_indexes, lite_indexes);

        // One scheduled meeting of a kind at a time; held ones do not count.
        let meeting = |status: &str| {
            format!(
                "INSERT INTO meetings (kind, at, participants, departments, status, created_at)
                 VALUES ('joint', 5, '[]', '[]', '{status}', 0)"
            )
        };
        exec(&s, &meeting("held")).await;
        exec(&s, &meeting("scheduled")).await;
        exec(&s, &meeting("held")).await;
        assert!(
            sqlx::raw_sql(&meeting("scheduled"))
                .execute(&s.pool)
                .await
                .is_err()
        );

        // A key may precede its issue in a transaction, but not outlive its absence.
        let key = "INSERT INTO idempotency_keys (key, request_hash, issue_id, created_at)
                   VALUES ('k', 'h', '7', 0)";
        let mut tx = s.pool.begin().await.unwrap();
        sqlx::raw_sql(key).execute(&mut *tx).await.unwrap();
        assert!(tx.commit().await.is_err());
        let mut tx = s.pool.begin().await.unwrap();
        sqlx::raw_sql(key).execute(&mut *tx).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO issues (id, version, body, state, status, category, unit, reported_at, updated_at)
             VALUES ('7', 1, '{}', '{}', 'assigned', 'road', 'g1', 0, 0)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();

        assert_eq!(scalar(&s, "SELECT nextval('issue_ids')").await, 1);
        assert_eq!(scalar(&s, "SELECT nextval('issue_ids')").await, 2);
        // Ids given explicitly, as a copy of a store inserts them.
        exec(
            &s,
            "INSERT INTO api_tokens (id, hash, role, created_at) VALUES (40, 'h', 'admin', 0)",
        )
        .await;
        exec(
            &s,
            "INSERT INTO leases (name, holder, until) VALUES ('leader', 'a', 10)",
        )
        .await;
        assert_eq!(scalar(&s, "SELECT fence FROM leases").await, 0);
        // A second store on the same database finds it migrated.
        db.store().await;
    }

    #[tokio::test]
    async fn tokens_are_created_looked_up_used_and_revoked() {
        let Some(db) = TestDb::create("tokens_are_created_looked_up_used_and_revoked").await else {
            return;
        };
        let s = db.store().await;
        let grant = Grant {
            role: Role::Department,
            scope: Some("roads".into()),
            person: Some("ana".into()),
            integration: None,
        };
        let terms = TokenTerms {
            label: Some("laptop".into()),
            expires_at: Some(t(T0 - D)),
        };
        let a = s
            .create_token("ha", &grant, &terms, t(T0 - 2 * D))
            .await
            .unwrap();
        let b = s
            .create_token(
                "hb",
                &Grant::unowned(Role::Admin, None),
                &TokenTerms::default(),
                t(T0),
            )
            .await
            .unwrap();
        assert!(b > a);
        // Expired tokens are still found: the caller judges the time.
        let found = s.token("ha").await.unwrap().unwrap();
        assert_eq!(found.id, a);
        assert_eq!(found.role, "department");
        assert_eq!(found.scope.as_deref(), Some("roads"));
        assert_eq!(found.person.as_deref(), Some("ana"));
        assert_eq!(found.integration, None);
        assert_eq!(found.expires_at, Some(t(T0 - D)));
        assert_eq!(s.token("hb").await.unwrap().unwrap().expires_at, None);
        assert!(s.token("nope").await.unwrap().is_none());
        // Only the same hash twice is refused.
        assert!(s.create_token("ha", &grant, &terms, t(T0)).await.is_err());

        assert!(s.token_used(a, t(T0), t(T0 - 60_000)).await.unwrap());
        assert!(
            !s.token_used(a, t(T0 + 30_000), t(T0 - 30_000))
                .await
                .unwrap()
        );
        assert!(
            s.token_used(a, t(T0 + 61_000), t(T0 + 1_000))
                .await
                .unwrap()
        );

        assert!(s.revoke_token(a, t(T0 + H)).await.unwrap());
        assert!(!s.revoke_token(a, t(T0 + 2 * H)).await.unwrap());
        assert!(!s.revoke_token(999, t(T0)).await.unwrap());
        assert!(s.token("ha").await.unwrap().is_none());

        let listed = s.tokens().await.unwrap();
        assert_eq!(listed.iter().map(|l| l.id).collect::<Vec<_>>(), [a, b]);
        assert_eq!(listed[0].label.as_deref(), Some("laptop"));
        assert_eq!(listed[0].created_at, t(T0 - 2 * D));
        assert_eq!(listed[0].last_used_at, Some(t(T0 + 61_000)));
        assert_eq!(listed[0].expires_at, Some(t(T0 - D)));
        assert_eq!(listed[0].revoked_at, Some(t(T0 + H)));
        assert_eq!(listed[1].role, "admin");
        assert_eq!(listed[1].label, None);
        assert_eq!(listed[1].last_used_at, None);
        assert_eq!(listed[1].revoked_at, None);
    }

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, Arc<str>> {
        pairs
            .iter()
            .map(|(p, c)| (p.to_string(), Arc::from(*c)))
            .collect()
    }

    #[tokio::test]
    async fn rule_versions_store_each_file_once() {
        let Some(db) = TestDb::create("rule_versions_store_each_file_once").await else {
            return;
        };
        let s = db.store().await;
        let v1 = format!("abc1{}", "0".repeat(60));
        let v2 = format!("abc2{}", "f".repeat(60));
        let f1 = files(&[("a.yaml", "same"), ("b.yaml", "one")]);
        let f2 = files(&[("a.yaml", "same"), ("c.yaml", "two")]);
        assert_eq!(
            s.record_rule_version(&v1, t(T0), "start-up", "/r", &f1)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.record_rule_version(&v2, t(T0 + H), "ana", "/r", &f2)
                .await
                .unwrap(),
            2
        );
        // Two at once that share their files (as replicas starting together do).
        let (x, y) = tokio::join!(
            s.record_rule_version(&v1, t(T0 + 2 * H), "watch", "/r", &f1),
            s.record_rule_version(&v1, t(T0 + 2 * H), "watch", "/r", &f1),
        );
        let mut ids = [x.unwrap(), y.unwrap()];
        ids.sort();
        assert_eq!(ids, [3, 4]);
        assert_eq!(scalar(&s, "SELECT COUNT(*) FROM rule_files").await, 3);

        let rows = s.rule_versions(None, 10).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [4, 3, 2, 1]);
        assert_eq!(rows[2].version, v2);
        assert_eq!(rows[2].loaded_by, "ana");
        assert_eq!(rows[2].loaded_at, t(T0 + H));
        assert_eq!(rows[2].dir, "/r");
        assert_eq!(rows[2].files, 2);
        let page = s.rule_versions(Some(3), 1).await.unwrap();
        assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);

        assert_eq!(
            s.rule_version_files("ABC1").await.unwrap(),
            Some((v1.clone(), f1))
        );
        assert_eq!(s.rule_version_files(&v2).await.unwrap(), Some((v2, f2)));
        // Ambiguous, unknown, not hex, empty.
        for prefix in ["abc", "abd", "abc1x", "%", ""] {
            assert_eq!(
                s.rule_version_files(prefix).await.unwrap(),
                None,
                "{prefix}"
            );
        }
    }

    fn report(person: &str, channel: Channel) -> ReportMessage {
        ReportMessage {
            person: person.into(),
            channel,
            address: format!("{person}@x"),
            locale: "en".into(),
            template: "overdue".into(),
            vars: json!({"n": 1}),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_run_is_recorded_once() {
        let Some(db) = TestDb::create("a_job_run_is_recorded_once").await else {
            return;
        };
        let (a, b) = (db.store().await, db.store().await);
        assert_eq!(a.job_since("daily", t(T0)).await.unwrap(), t(T0));
        assert_eq!(b.job_since("daily", t(T0 + D)).await.unwrap(), t(T0));
        assert_eq!(a.job_since("weekly", t(T0 + D)).await.unwrap(), t(T0 + D));
        assert_eq!(a.last_run("daily").await.unwrap(), None);

        let messages = [report("ana", Channel::Email), report("bob", Channel::Sms)];
        assert!(
            a.record_run("daily", t(T0), t(T0 + 5), &messages)
                .await
                .unwrap()
        );
        assert!(
            !a.record_run("daily", t(T0), t(T0 + 9), &messages)
                .await
                .unwrap()
        );
        assert!(
            !b.record_run("daily", t(T0), t(T0 + 9), &messages[..1])
                .await
                .unwrap()
        );
        assert_eq!(scalar(&a, "SELECT COUNT(*) FROM outbox").await, 2);
        assert_eq!(
            scalar(&a, "SELECT ran_at FROM job_runs WHERE job = 'daily'").await,
            T0 + 5
        );
        let row = a.outbox_row(1).await.unwrap().unwrap();
        assert_eq!(row.kind, "report");
        assert_eq!(row.issue_id, None);
        assert_eq!(row.status, "queued");
        assert_eq!(row.template, "overdue");
        assert_eq!(row.created_at, t(T0 + 5));

        // Two replicas at once: one records the run and queues its messages.
        for round in 1..=20 {
            let at = t(T0 + round * D);
            let (x, y) = tokio::join!(
                a.record_run("daily", at, at, &messages),
                b.record_run("daily", at, at, &messages),
            );
            assert!(x.unwrap() ^ y.unwrap(), "round {round}");
        }
        assert_eq!(scalar(&a, "SELECT COUNT(*) FROM outbox").await, 42);
        assert_eq!(scalar(&a, "SELECT COUNT(*) FROM job_runs").await, 21);
        assert_eq!(a.last_run("daily").await.unwrap(), Some(t(T0 + 20 * D)));
        assert_eq!(a.last_run("weekly").await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_never_share_a_row() {
        let Some(db) = TestDb::create("concurrent_claims_never_share_a_row").await else {
            return;
        };
        let (a, b) = (db.store().await, db.store().await);
        one_issue(&a).await;
        queue(&a, 200).await;
        let worker = |s: PgStore| async move {
            let mut got = Vec::new();
            loop {
                let claimed = s.claim("email", t(1_000), t(1_000 + H), 3).await.unwrap();
                if claimed.is_empty() {
                    return got;
                }
                got.extend(claimed.iter().map(|c| c.row.id));
            }
        };
        let (x, y) = tokio::join!(tokio::spawn(worker(a)), tokio::spawn(worker(b)));
        let (x, y) = (x.unwrap(), y.unwrap());
        let all: HashSet<i64> = x.iter().chain(&y).copied().collect();
        assert_eq!(x.len() + y.len(), 200, "{} + {}", x.len(), y.len());
        assert_eq!(all, (1..=200).collect());
        let s = db.store().await;
        assert_eq!(
            scalar(
                &s,
                "SELECT COUNT(*) FROM outbox WHERE status = 'sending' AND attempts = 1"
            )
            .await,
            200
        );
    }

    #[tokio::test]
    async fn claims_take_expired_leases_first_then_due_rows() {
        let Some(db) = TestDb::create("claims_take_expired_leases_first_then_due_rows").await
        else {
            return;
        };
        let s = db.store().await;
        one_issue(&s).await;
        queue(&s, 6).await;
        exec(
            &s,
            "UPDATE outbox SET not_before = 500 WHERE id = 1;
             UPDATE outbox SET status = 'sending', lease_until = 100, attempts = 1 WHERE id = 3;
             UPDATE outbox SET status = 'sending', lease_until = 900, attempts = 1 WHERE id = 4;
             UPDATE outbox SET status = 'dead' WHERE id = 5;
             UPDATE outbox SET channel = 'sms' WHERE id = 6;",
        )
        .await;
        let ids = |c: &[crate::store::Claimed]| c.iter().map(|c| c.row.id).collect::<Vec<_>>();
        let first = s.claim("email", t(200), t(1_000), 2).await.unwrap();
        // Row 3's lease expired; row 2 is the earliest due (row 1 is held until 500).
        assert_eq!(ids(&first), [2, 3]);
        // Row 3's claim lapsed mid-send: taken over; row 2 was only queued.
        assert_eq!(
            first.iter().map(|c| c.taken_over).collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(first[1].row.attempts, 2);
        assert_eq!(first[1].row.status, "sending");
        assert_eq!(first[0].vars, "{}");
        assert!(
            s.claim("email", t(200), t(1_000), 5)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            ids(&s.claim("email", t(500), t(2_000), 5).await.unwrap()),
            [1]
        );
        // Leases end: 4 at 900, 2 and 3 at 1,000, 1 at 2,000.
        assert_eq!(
            ids(&s.claim("email", t(901), t(3_000), 5).await.unwrap()),
            [4]
        );
        assert_eq!(
            ids(&s.claim("email", t(1_001), t(3_000), 5).await.unwrap()),
            [2, 3]
        );
        assert_eq!(
            ids(&s.claim("sms", t(901), t(2_000), 5).await.unwrap()),
            [6]
        );
    }

    #[tokio::test]
    async fn a_late_settler_leaves_a_row_taken_over() {
        let Some(db) = TestDb::create("a_late_settler_leaves_a_row_taken_over").await else {
            return;
        };
        let s = db.store().await;
        one_issue(&s).await;
        queue(&s, 1).await;
        let sent = Settlement::Sent { segments: Some(2) };
        assert_eq!(
            s.claim_as("a", "email", t(10), t(20), 5)
                .await
                .unwrap()
                .len(),
            1
        );
        // A's lease lapsed while it sent; B takes the row over.
        let taken = s.claim_as("b", "email", t(30), t(90), 5).await.unwrap();
        assert_eq!(taken[0].row.attempts, 2);
        s.settle_as("a", &[(1, sent.clone())], t(40)).await.unwrap();
        let row = s.outbox_row(1).await.unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.sent_at, row.segments),
            ("sending", None, None)
        );
        assert_eq!(scalar(&s, "SELECT lease_until FROM outbox").await, 90);
        let retry = Settlement::Retry {
            not_before: t(100),
            error: "timeout".into(),
        };
        s.settle_as("b", &[(1, retry)], t(50)).await.unwrap();
        let row = s.outbox_row(1).await.unwrap().unwrap();
        assert_eq!(row.status, "queued");
        assert_eq!(row.not_before, t(100));
        assert_eq!(row.last_error.as_deref(), Some("timeout"));
        assert_eq!(row.attempts, 2);
        assert_eq!(
            scalar(
                &s,
                "SELECT COUNT(*) FROM outbox WHERE lease_until IS NULL AND claimed_by IS NULL"
            )
            .await,
            1
        );
        // A row no longer sending is left alone, whoever settles it.
        s.settle_as("b", &[(1, sent.clone())], t(60)).await.unwrap();
        s.settle(&[(1, sent.clone())], t(60)).await.unwrap();
        assert_eq!(s.outbox_row(1).await.unwrap().unwrap().status, "queued");
        // Through the public pair: a hold is no attempt and makes the row due when it ends.
        assert_eq!(
            s.claim("email", t(100), t(200), 5).await.unwrap()[0]
                .row
                .attempts,
            3
        );
        s.settle(&[(1, Settlement::Hold { not_before: t(150) })], t(100))
            .await
            .unwrap();
        let row = s.outbox_row(1).await.unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.attempts), ("queued", 2));
        assert_eq!((row.not_before, row.due_at), (t(150), t(150)));
        assert_eq!(s.claim("email", t(150), t(250), 5).await.unwrap().len(), 1);
        s.settle(&[(1, sent)], t(160)).await.unwrap();
        let row = s.outbox_row(1).await.unwrap().unwrap();
        assert_eq!(row.status, "sent");
        assert_eq!(
            (row.sent_at, row.segments, row.attempts),
            (Some(t(160)), Some(2), 3)
        );
        assert_eq!(row.last_error.as_deref(), Some("timeout"));
    }

    /// The same rows in both backends: issues, their events, assignments, evaluations,
    /// meetings and outbox rows, in SQL both read. Rows are tuples, a column each.
    #[allow(clippy::type_complexity)]
    fn fixture() -> Vec<String> {
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let n = |v: Option<i64>| v.map_or("NULL".to_string(), |v| v.to_string());
        let s = |v: Option<&str>| v.map_or("NULL".to_string(), q);
        let state = |departments: &[&str]| IssueState {
            state: State::Assigned,
            departments: departments.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        };
        let mut sql = Vec::new();
        #[rustfmt::skip]
        let issues: [(&str, &str, &str, &str, Option<&str>, Option<&str>, i64, &str, Option<i64>, Option<i64>); 8] = [
            ("1", "assigned", "road", "g1", Some("roads"), Some("grid"), T0 + H, "/city/d1/s1/g1/", Some(T0 + 2 * H), Some(T0 + 5 * D)),
            ("2", "acknowledged", "light", "g2", Some("power"), Some("grid"), T0 + 2 * H, "/city/d1/s2/g2/", None, Some(T0 + D)),
            ("3", "resolved", "road", "g1", Some("roads"), Some("grid"), T0 + 3 * H, "/city/d1/s1/g1/", None, None),
            ("4", "closed", "noise", "g3", Some("police"), Some("district"), T0 + 4 * H, "/city/d2/s3/g3/", None, None),
            ("5", "in_progress", "road", "g2", Some("roads"), None, T0 + 20 * D, "/city/d1/s2/g2/", None, Some(T0 + 30 * D)),
            ("9", "assigned", "light", "g3", Some("roads"), Some("district"), T0 + H, "/city/d2/s3/g3/", Some(T0 + H), None),
            ("10", "assigned", "light", "g1", Some("roads"), Some("grid"), T0 + H, "/city/d1/s1/g1/", Some(T0 + H), None),
            ("11", "suspended", "water", "g1", None, None, T0 + 5 * H, "/city/d1/s1/g1/", None, None),
        ];
        for (id, status, category, unit, department, tier, at, branch, ack, resolve) in issues {
            let body = Issue {
                id: id.into(),
                category: category.into(),
                unit: unit.into(),
                description: format!("issue {id}'s"),
                ..Default::default()
            };
            sql.push(format!(
                "INSERT INTO issues (id, version, body, state, status, category, unit, department, tier,
                                     reported_at, updated_at, branch, acknowledge_by, resolve_by)
                 VALUES ({}, 1, {}, {}, {}, {}, {}, {}, {}, {at}, {at}, {}, {}, {})",
                q(id),
                q(&serde_json::to_string(&body).unwrap()),
                q(&serde_json::to_string(&state(&[])).unwrap()),
                q(status),
                q(category),
                q(unit),
                s(department),
                s(tier),
                q(branch),
                n(ack),
                n(resolve),
            ));
        }
        let supervision = |departments: &[&str]| json!([{"tier": "district", "unit": "g3", "leader": null, "departments": departments}]);
        #[rustfmt::skip]
        let events: Vec<(&str, i64, Value, &[&str], Value, Value)> = vec![
            /* 1 */ ("1", T0 + H, json!({"event": "reported"}), &["roads"], json!({}), json!([])),
            /* 2 */ ("2", T0 + 2 * H, json!({"event": "reported"}), &["power", "roads"], json!({}), json!([])),
            /* 3 */ ("3", T0 + 3 * H, json!({"event": "reported"}), &["roads"], json!({}), json!([])),
            /* 4 */ ("4", T0 + 4 * H, json!({"event": "reported"}), &["police"], json!({}), supervision(&["police", "roads"])),
            /* 5 */ ("5", T0 + 20 * D, json!({"event": "reported"}), &["roads"], json!({}), json!([])),
            /* 6 */ ("9", T0 + H, json!({"event": "reported"}), &["roads"], json!({}), json!([])),
            /* 7 */ ("10", T0 + H, json!({"event": "reported"}), &["roads", "power"], json!({}), json!([])),
            /* 8 */ ("11", T0 + 5 * H, json!({"event": "reported"}), &[], json!({}), json!([])),
            /* 9 */ ("1", T0 + 3 * H, json!({"event": "acknowledged"}), &["roads"], json!({}), json!([])),
            /* 10 */ ("2", T0 + 3 * H, json!({"event": "deadline_passed", "deadline": "acknowledge"}), &["power", "roads"], json!({}), json!([])),
            /* 11 */ ("2", T0 + 4 * H, json!({"event": "acknowledged"}), &["power", "roads"], json!({}), json!([])),
            /* 12 */ ("3", T0 + 4 * H, json!({"event": "acknowledged"}), &["roads"], json!({}), json!([])),
            /* 13 */ ("3", T0 + 5 * H, json!({"event": "deadline_passed", "deadline": "resolve"}), &["roads"], json!({}), json!([])),
            /* 14 */ ("3", T0 + 6 * H, json!({"event": "resolved", "note": ""}), &["roads"], json!({}), json!([])),
            /* 15 */ ("3", T0 + 7 * H, json!({"event": "rejected", "reason": "no"}), &["roads"], json!({}), json!([])),
            /* 16 */ ("3", T0 + 8 * H, json!({"event": "resolved", "note": ""}), &["roads"], json!({}), json!([])),
            /* 17 */ ("3", T0 + 9 * H, json!({"event": "verification_lapsed"}), &["roads"], json!({}), json!([])),
            /* 18 */ ("3", T0 + 10 * H, json!({"event": "confirmed"}), &["roads"], json!({}), json!([])),
            /* 19 */ ("4", T0 + 5 * H, json!({"event": "reassigned", "department": "roads"}), &["roads"], json!({"return_decided": {"department": "police", "accepted": true}}), json!([])),
            /* 20 */ ("4", T0 + 6 * H, json!({"event": "reassigned", "department": "police"}), &["police"], json!({"return_decided": {"department": "roads", "accepted": false}}), supervision(&["police"])),
            /* 21 */ ("4", T0 + 7 * H, json!({"event": "report_rated", "verdict": "valid", "department": "police"}), &["police"], json!({}), json!([])),
            /* 22 */ ("4", T0 + 8 * H, json!({"event": "report_rated", "verdict": "invalid"}), &["police"], json!({}), json!([])),
            /* 23 */ ("10", T0 + 2 * H, json!({"event": "report_rated", "verdict": "duplicate"}), &["roads", "power"], json!({}), json!([])),
            /* 24 */ ("10", T0 + 3 * H, json!({"event": "report_rated", "verdict": "not_ours"}), &["roads", "power"], json!({}), json!([])),
            /* 25 */ ("4", T0 + 9 * H, json!({"event": "evaluated", "rating": 4, "comment": "ok"}), &["police"], json!({}), json!([])),
            /* 26 */ ("1", T0 + 4 * H, json!({"event": "resolved", "note": ""}), &["roads"], json!({}), json!([])),
            /* 27 */ ("1", T0 + 5 * H, json!({"event": "confirmed"}), &["roads"], json!({}), json!([])),
            /* 28 */ ("3", T0 + 11 * H, json!({"event": "evaluated", "rating": 5}), &["roads"], json!({}), json!([])),
            /* 29 */ ("2", T0 + 15 * D, json!({"event": "acknowledged"}), &["power"], json!({}), json!([])),
            /* 30 */ ("10", T0 + 4 * H, json!({"event": "reassigned", "department": "power"}), &["power"], json!({}), json!([])),
        ];
        for (issue, at, payload, departments, effects, supervision) in events {
            let kind = payload["event"].as_str().unwrap().to_string();
            let decision = json!({
                "next": state(departments),
                "effects": effects,
                "supervision": supervision,
                "messages": [],
            });
            sql.push(format!(
                "INSERT INTO events (issue_id, at, actor, kind, payload, rules_version, decision)
                 VALUES ({}, {at}, 'ana', {}, {}, 'v1', {})",
                q(issue),
                q(&kind),
                q(&payload.to_string()),
                q(&decision.to_string()),
            ));
        }
        sql.push(
            "INSERT INTO assignments (department, issue_id, lead) VALUES
             ('roads', '1', TRUE), ('power', '2', TRUE), ('roads', '2', FALSE), ('roads', '3', TRUE),
             ('police', '4', TRUE), ('roads', '5', TRUE), ('roads', '9', TRUE), ('power', '10', TRUE),
             ('roads', '10', FALSE)"
                .into(),
        );
        sql.push(format!(
            "INSERT INTO evaluations (issue_id, event_seq, rating, comment, department, actor, at) VALUES
             ('4', 25, 4, 'ok', 'police', 'rep', {}), ('3', 28, 5, '', 'roads', 'rep', {}),
             ('2', 29, 3, '', 'power', 'rep', {}), ('1', 27, 2, '', NULL, 'rep', {})",
            T0 + 9 * H,
            T0 + 11 * H,
            T0 + 15 * D,
            T0 + 6 * H,
        ));
        sql.push(format!(
            "INSERT INTO meetings (kind, at, participants, departments, status, outcome, recorded_by,
                                   recorded_at, created_at) VALUES
             ('joint', {a}, '[\"p\"]', '[\"roads\"]', 'scheduled', NULL, NULL, NULL, {T0}),
             ('joint', {b}, '[\"p\"]', '[\"power\"]', 'held', '{{\"outcome\":\"noted\"}}', 'x', {b}, {T0}),
             ('summit', {a}, '[]', '[]', 'scheduled', NULL, NULL, NULL, {T0}),
             ('review', {c}, '[]', '[]', 'scheduled', NULL, NULL, NULL, {T0})",
            a = T0 + 3 * D,
            b = T0 + 4 * D,
            c = T0 + 5 * D,
        ));
        sql.push(
            "INSERT INTO meeting_agenda (meeting_id, issue_id, added_seq, outcome_seq) VALUES
             (1, '1', 1, NULL), (1, '3', 3, NULL), (2, '2', 2, 11), (3, '9', 6, NULL),
             (3, '10', 7, 24), (4, '4', 4, NULL)"
                .into(),
        );
        #[rustfmt::skip]
        let outbox: [(&str, Option<&str>, Option<i64>, &str, &str, &str, &str, bool, i64, Option<i64>, i64, Option<&str>, Option<i64>, Option<i64>, Option<i64>, Option<i64>); 10] = [
            // key, issue, event, kind, person, channel, status, urgent, not_before, lease_until,
            // attempts, last_error, sent_at, segments, due_at, retried_at
            ("o1", Some("1"), Some(1), "assigned", "ana", "email", "sent", false, T0, None, 1, None, Some(T0 + H), None, None, None),
            ("o2", Some("2"), Some(2), "assigned", "ana", "email", "sent", true, T0, None, 1, None, Some(T0 + 3 * H), None, None, None),
            ("o3", None, None, "report", "ana", "email", "sent", false, T0, None, 1, None, Some(T0 + 9 * H), None, None, None),
            ("o4", Some("1"), Some(1), "assigned", "bob", "sms", "sent", false, T0, None, 1, None, Some(T0 + 5 * H), Some(2), None, None),
            ("o5", Some("3"), Some(3), "assigned", "bob", "email", "queued", false, T0 + 2 * H, None, 0, None, None, None, Some(T0 + 2 * H), None),
            ("o6", Some("3"), Some(3), "assigned", "cy", "email", "dead", false, T0, None, 5, Some("bounced"), None, None, None, None),
            ("o7", Some("4"), Some(4), "webhook", "", "webhook", "sending", false, T0, Some(T0 + H), 1, None, None, None, None, None),
            ("o8", Some("4"), Some(4), "assigned", "cy", "sms", "stale", true, T0, None, 0, Some("stale: late"), None, None, None, None),
            ("o9", Some("2"), Some(2), "assigned", "dan", "email", "queued", false, T0 + H, None, 0, Some("timeout"), None, None, None, Some(T0)),
            ("o10", Some("10"), Some(7), "assigned", "eve", "sms", "queued", false, T0 + 30 * D, None, 0, None, None, None, None, None),
        ];
        for (
            key,
            issue,
            event,
            kind,
            person,
            channel,
            status,
            urgent,
            not_before,
            lease,
            attempts,
            error,
            sent,
            segments,
            due,
            retried,
        ) in outbox
        {
            sql.push(format!(
                "INSERT INTO outbox (dedupe_key, issue_id, event_seq, kind, person, channel, address,
                                     template, locale, vars, status, created_at, urgent, not_before,
                                     lease_until, attempts, last_error, sent_at, segments, due_at,
                                     retried_at)
                 VALUES ({}, {}, {}, {}, {}, {}, {}, 'assigned', 'en', '{{\"k\":1}}', {}, {T0}, {},
                         {not_before}, {}, {attempts}, {}, {}, {}, {}, {})",
                q(key),
                s(issue),
                n(event),
                q(kind),
                q(person),
                q(channel),
                q(&format!("{person}@x")),
                q(status),
                if urgent { "TRUE" } else { "FALSE" },
                n(lease),
                s(error),
                n(sent),
                n(segments),
                n(due),
                n(retried),
            ));
        }
        sql
    }

    /// Both backends over the same rows answer every read alike, and the queries that moved
    /// from SQLite's JSON functions count what they should.
    #[tokio::test]
    async fn reads_match_sqlite() {
        let Some(db) = TestDb::create("reads_match_sqlite").await else {
            return;
        };
        let pg = db.store().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let lite = SqliteStore::open(&path).await.unwrap();
        load_sqlite(&path, &fixture()).await;
        for statement in fixture() {
            exec(&pg, &statement).await;
        }
        macro_rules! same {
            ($call:ident ( $($arg:expr),* )) => {{
                let p = pg.$call($($arg),*).await.unwrap();
                let l = lite.$call($($arg),*).await.unwrap();
                assert_eq!(format!("{p:?}"), format!("{l:?}"), "{}", stringify!($call));
                p
            }};
        }

        let overdue = same!(overdue_issues(t(T0 + 2 * H)));
        assert_eq!(
            overdue.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            ["1", "10", "9"]
        );
        let (from, to) = (t(T0), t(T0 + 10 * D));
        let figures = same!(scorecard(from, to));
        let by: BTreeMap<&str, _> = figures.iter().map(|f| (f.department.as_str(), f)).collect();
        let roads = by["roads"];
        assert_eq!(
            (
                roads.assigned,
                roads.acknowledged,
                roads.acknowledged_on_time
            ),
            (6, 2, 2)
        );
        assert_eq!(
            (roads.resolved, roads.resolved_on_time, roads.reopened),
            (3, 2, 1)
        );
        assert_eq!((roads.returns_accepted, roads.returns_rejected), (0, 1));
        assert_eq!((roads.supervised, roads.supervised_resolved), (1, 1));
        assert_eq!((roads.rated, roads.rating_sum), (1, 5));
        let power = by["power"];
        assert_eq!(
            (
                power.assigned,
                power.acknowledged,
                power.acknowledged_on_time
            ),
            (2, 1, 0)
        );
        assert_eq!(power.rated, 0);
        let police = by["police"];
        assert_eq!(
            (police.assigned, police.returns_accepted, police.supervised),
            (1, 1, 1)
        );
        assert_eq!((police.rated, police.rating_sum), (1, 4));
        let units = same!(unit_figures(from, to));
        let by: BTreeMap<&str, _> = units.iter().map(|u| (u.unit.as_str(), u)).collect();
        assert_eq!(by["g1"].reported, 4);
        assert_eq!((by["g1"].rated_duplicate, by["g1"].rated_not_ours), (1, 1));
        assert_eq!(
            (by["g1"].verified_on_time, by["g1"].verification_lapsed),
            (1, 1)
        );
        assert_eq!((by["g2"].reported, by["g3"].reported), (1, 2));
        assert_eq!((by["g3"].rated_valid, by["g3"].rated_invalid), (1, 1));

        let (mut p, mut l) = (
            pg.open_uses().await.unwrap(),
            lite.open_uses().await.unwrap(),
        );
        for uses in [&mut p, &mut l] {
            for v in [
                &mut uses.categories,
                &mut uses.branches,
                &mut uses.departments,
                &mut uses.tiers,
                &mut uses.meetings,
            ] {
                v.sort();
            }
        }
        assert_eq!(format!("{p:?}"), format!("{l:?}"));
        assert_eq!(p.meetings, ["joint", "summit"]);
        for (what, value, ids, count) in [
            (Use::Category, "road", &["1", "3", "5"][..], 3),
            (Use::Unit, "s1", &["1", "3", "10"][..], 4),
            (Use::Unit, "g", &[][..], 0),
            (Use::Department, "roads", &["1", "2", "3"][..], 6),
            (Use::Tier, "district", &["9"][..], 1),
            (Use::Meeting, "joint", &["1", "3"][..], 2),
            (Use::Meeting, "summit", &["9"][..], 1),
            (Use::Meeting, "review", &[][..], 0),
        ] {
            let found = same!(open_issues_using(what, value, 3));
            assert_eq!(found.0, ids, "{what:?} {value}");
            assert_eq!(found.1, count, "{what:?} {value}");
        }
        for issue in ["1", "3", "4", "none"] {
            same!(recorded(issue));
        }

        for f in [
            OutboxFilter {
                limit: 100,
                ..Default::default()
            },
            OutboxFilter {
                status: Some("queued".into()),
                after: Some(5),
                limit: 1,
            },
        ] {
            same!(outbox_page(&f));
        }
        same!(outbox_row(2));
        same!(outbox_row(99));
        let persons = ["ana", "bob", "cy", "zed"];
        let (p, l) = (
            pg.last_emails(&persons).await.unwrap(),
            lite.last_emails(&persons).await.unwrap(),
        );
        assert_eq!(p, l);
        assert_eq!(
            p.into_iter().collect::<Vec<_>>(),
            [("ana".to_string(), t(T0 + 3 * H))]
        );
        let seqs = [1, 2, 19, 999];
        let (p, l) = (
            pg.message_context(&seqs).await.unwrap(),
            lite.message_context(&seqs).await.unwrap(),
        );
        assert_eq!(p, l);
        assert_eq!(p[&19].0.id, "4");
        assert_eq!(p[&19].1.departments, ["roads"]);
        let counts = same!(outbox_counts());
        assert_eq!(counts.len(), 5);
        for channel in ["email", "sms", "webhook", "none"] {
            same!(outbox_waiting(channel));
            same!(next_not_before(channel));
        }
        // Claims, settlements and requeues change both alike.
        let claimed = same!(claim("email", t(T0 + 3 * H), t(T0 + 4 * H), 10));
        assert_eq!(claimed.iter().map(|c| c.row.id).collect::<Vec<_>>(), [9, 5]);
        same!(claim("webhook", t(T0 + 2 * H), t(T0 + 4 * H), 10));
        let outcomes = [
            (
                9,
                Settlement::Stale {
                    error: "late".into(),
                },
            ),
            (
                5,
                Settlement::Hold {
                    not_before: t(T0 + 5 * H),
                },
            ),
            (
                7,
                Settlement::Dead {
                    error: "gone".into(),
                },
            ),
            (1, Settlement::Sent { segments: None }),
        ];
        same!(settle(&outcomes, t(T0 + 3 * H)));
        for id in [6, 7, 9, 1, 99] {
            same!(requeue(id, t(T0 + 6 * H)));
        }
        same!(outbox_page(&OutboxFilter {
            limit: 100,
            ..Default::default()
        }));

        // Shadow runs and rule versions, written through each.
        for run in 0..2 {
            same!(start_shadow("cafe", "/cand", "ana", t(T0 + run)));
        }
        let diff = |issue: &str, kinds: &[&str]| ShadowDiff {
            issue: issue.into(),
            event: "acknowledged".into(),
            at: t(T0),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            live: json!({"route": "roads"}),
            shadow: json!({"route": "power"}),
        };
        let diffs = [
            diff("1", &["route", "tier"]),
            diff("2", &["route"]),
            diff("1", &["route"]),
            diff("3", &["state", "route"]),
        ];
        same!(record_shadow(2, 10, 1, &diffs));
        let summary = same!(shadow_summary(3)).unwrap();
        assert_eq!(summary.by_kind[0].examples, ["1", "2", "3"]);
        assert_eq!(
            (summary.compared, summary.differing, summary.dropped),
            (10, 4, 1)
        );
        same!(stop_shadow(2, t(T0 + H)));
        same!(shadow_summary(1));
        let f = files(&[("a.yaml", "x")]);
        same!(record_rule_version("beef", t(T0), "ana", "/r", &f));
        same!(record_rule_version("beef", t(T0 + 1), "ana", "/r", &f));
        same!(rule_versions(None, 5));
        same!(rule_version_files("be"));
        same!(job_since("daily", t(T0)));
    }

    async fn load_sqlite(path: &Path, statements: &[String]) {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&pool)
            .await
            .unwrap();
        for statement in statements {
            sqlx::raw_sql(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
}
