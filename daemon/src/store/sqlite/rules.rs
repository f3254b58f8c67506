//! Rule versions and the uses of open issues on SQLite. Versions are written through the
//! writer connection in a transaction of their own (not the group commit: no issue changes).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{SqliteStore, instant, millis, parse};
use crate::store::{
    OpenUses, Recorded, Result, RuleVersionRow, ShadowDiff, ShadowKind, ShadowSummary, StoreError,
    Use,
};

/// Issues still someone's concern: not closed either way.
const OPEN: &str = "issues.status NOT IN ('closed', 'closed_at_grid')";

impl SqliteStore {
    pub async fn recorded(&self, issue: &str) -> Result<Vec<Recorded>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, payload, rules_version, decision FROM events WHERE issue_id = ? ORDER BY seq",
        )
        .bind(issue)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Recorded {
                    seq: r.get(0),
                    at: instant(r.get(1))?,
                    actor: r.get(2),
                    event: parse("event payload", r.get(3))?,
                    rules_version: r.get(4),
                    decision: parse("event decision", r.get(5))?,
                })
            })
            .collect()
    }

    pub async fn record_rule_version(
        &self,
        version: &str,
        at: DateTime<Utc>,
        by: &str,
        dir: &str,
        files: &BTreeMap<String, Arc<str>>,
    ) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let mut names: BTreeMap<&str, String> = BTreeMap::new();
        for (path, content) in files {
            let hash = format!("{:x}", Sha256::digest(content.as_bytes()));
            sqlx::query("INSERT OR IGNORE INTO rule_files (hash, content) VALUES (?, ?)")
                .bind(&hash)
                .bind(&**content)
                .execute(&mut *tx)
                .await?;
            names.insert(path, hash);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rule_versions (version, loaded_at, loaded_by, dir, files) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(version)
        .bind(millis(at))
        .bind(by)
        .bind(dir)
        .bind(serde_json::to_string(&names).expect("plain data serialises"))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn rule_versions(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RuleVersionRow>> {
        let rows = sqlx::query(
            "SELECT id, version, loaded_at, loaded_by, dir, files FROM rule_versions WHERE id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let files: BTreeMap<String, String> = parse("rule version files", r.get(5))?;
                Ok(RuleVersionRow {
                    id: r.get(0),
                    version: r.get(1),
                    loaded_at: instant(r.get(2))?,
                    loaded_by: r.get(3),
                    dir: r.get(4),
                    files: files.len(),
                })
            })
            .collect()
    }

    pub async fn rule_version_files(
        &self,
        version: &str,
    ) -> Result<Option<(String, BTreeMap<String, Arc<str>>)>> {
        // A prefix names a version when it is unique; hex digits only, so no LIKE pattern.
        let version = version.to_ascii_lowercase();
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        // One row per version (the same version's files are the same files): its latest, as
        // SQLite takes a bare column from the row whose MAX() it reports.
        let found: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT version, files, MAX(id) FROM rule_versions WHERE version >= ? AND version < ?
             GROUP BY version ORDER BY version LIMIT 2",
        )
        .bind(&version)
        .bind(format!("{version}g"))
        .fetch_all(&self.reader)
        .await?;
        let [(full, names, _)] = found.as_slice() else {
            return Ok(None);
        };
        let names: BTreeMap<String, String> = parse("rule version files", names)?;
        let mut files = BTreeMap::new();
        for (path, hash) in names {
            let content: Option<String> =
                sqlx::query_scalar("SELECT content FROM rule_files WHERE hash = ?")
                    .bind(&hash)
                    .fetch_optional(&self.reader)
                    .await?;
            let content = content.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "rule version {full}: file {path} ({hash}) is missing"
                ))
            })?;
            files.insert(path, Arc::from(content));
        }
        Ok(Some((full.clone(), files)))
    }

    pub async fn start_shadow(
        &self,
        version: &str,
        dir: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE shadow_runs SET stopped_at = ? WHERE stopped_at IS NULL")
            .bind(millis(at))
            .execute(&mut *tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO shadow_runs (version, dir, started_at, started_by) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(version)
        .bind(dir)
        .bind(millis(at))
        .bind(by)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn stop_shadow(&self, run: i64, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE shadow_runs SET stopped_at = ? WHERE id = ? AND stopped_at IS NULL")
            .bind(millis(at))
            .bind(run)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn record_shadow(
        &self,
        run: i64,
        compared: i64,
        dropped: i64,
        diffs: &[ShadowDiff],
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE shadow_runs SET compared = compared + ?, dropped = dropped + ? WHERE id = ?",
        )
        .bind(compared)
        .bind(dropped)
        .bind(run)
        .execute(&mut *tx)
        .await?;
        for d in diffs {
            sqlx::query(
                "INSERT INTO shadow_diffs (run_id, issue_id, event, at, kinds, live, shadow) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(run)
            .bind(&d.issue)
            .bind(&d.event)
            .bind(millis(d.at))
            .bind(serde_json::to_string(&d.kinds).expect("plain data serialises"))
            .bind(d.live.to_string())
            .bind(d.shadow.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn shadow_summary(&self, examples: usize) -> Result<Option<ShadowSummary>> {
        let Some(r) = sqlx::query(
            "SELECT id, version, dir, started_at, started_by, stopped_at, compared, dropped FROM shadow_runs ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        let run: i64 = r.get(0);
        let differing: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM shadow_diffs WHERE run_id = ?")
                .bind(run)
                .fetch_one(&self.reader)
                .await?;
        let kinds: Vec<(String, i64)> = sqlx::query_as(
            "SELECT k.value, COUNT(*) FROM shadow_diffs d, json_each(d.kinds) k WHERE d.run_id = ? GROUP BY k.value ORDER BY COUNT(*) DESC, k.value",
        )
        .bind(run)
        .fetch_all(&self.reader)
        .await?;
        let mut by_kind = Vec::with_capacity(kinds.len());
        for (kind, count) in kinds {
            let examples: Vec<String> = sqlx::query_scalar(
                "SELECT d.issue_id FROM shadow_diffs d, json_each(d.kinds) k
                 WHERE d.run_id = ? AND k.value = ? GROUP BY d.issue_id ORDER BY MIN(d.id) LIMIT ?",
            )
            .bind(run)
            .bind(&kind)
            .bind(examples as i64)
            .fetch_all(&self.reader)
            .await?;
            by_kind.push(ShadowKind {
                kind,
                count,
                examples,
            });
        }
        let recent = sqlx::query(
            "SELECT issue_id, event, at, kinds, live, shadow FROM shadow_diffs WHERE run_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(run)
        .bind(examples as i64)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|d| {
            Ok(ShadowDiff {
                issue: d.get(0),
                event: d.get(1),
                at: instant(d.get(2))?,
                kinds: parse("shadow kinds", d.get(3))?,
                live: parse("shadow live", d.get(4))?,
                shadow: parse("shadow decision", d.get(5))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(ShadowSummary {
            run,
            version: r.get(1),
            dir: r.get(2),
            started_at: instant(r.get(3))?,
            started_by: r.get(4),
            stopped_at: r.get::<Option<i64>, _>(5).map(instant).transpose()?,
            compared: r.get(6),
            differing,
            dropped: r.get(7),
            by_kind,
            recent,
        }))
    }

    pub async fn open_uses(&self) -> Result<OpenUses> {
        let distinct = async |sql: String| -> Result<Vec<String>> {
            Ok(sqlx::query_scalar(&sql).fetch_all(&self.reader).await?)
        };
        Ok(OpenUses {
            categories: distinct(format!("SELECT DISTINCT category FROM issues WHERE {OPEN}"))
                .await?,
            branches: distinct(format!("SELECT DISTINCT branch FROM issues WHERE {OPEN}")).await?,
            departments: distinct(format!(
                "SELECT DISTINCT a.department FROM assignments a JOIN issues ON issues.id = a.issue_id WHERE {OPEN}"
            ))
            .await?,
            tiers: distinct(format!(
                "SELECT DISTINCT tier FROM issues WHERE tier IS NOT NULL AND {OPEN}"
            ))
            .await?,
            meetings: distinct(format!(
                "SELECT DISTINCT m.kind FROM meetings m JOIN meeting_agenda g ON g.meeting_id = m.id \
                 JOIN issues ON issues.id = g.issue_id \
                 WHERE m.status = 'scheduled' AND g.outcome_seq IS NULL AND {OPEN}"
            ))
            .await?,
        })
    }

    pub async fn open_issues_using(
        &self,
        what: Use,
        value: &str,
        limit: i64,
    ) -> Result<(Vec<String>, i64)> {
        let (from, cond) = match what {
            Use::Category => ("issues", "issues.category = ?1"),
            Use::Unit => ("issues", "instr(issues.branch, '/' || ?1 || '/') > 0"),
            Use::Tier => ("issues", "issues.tier = ?1"),
            Use::Department => (
                "issues JOIN assignments a ON a.issue_id = issues.id",
                "a.department = ?1",
            ),
            Use::Meeting => (
                "issues JOIN meeting_agenda g ON g.issue_id = issues.id JOIN meetings m ON m.id = g.meeting_id",
                "m.kind = ?1 AND m.status = 'scheduled' AND g.outcome_seq IS NULL",
            ),
        };
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT issues.id FROM {from} WHERE {cond} AND {OPEN} ORDER BY CAST(issues.id AS INTEGER) LIMIT ?2"
        ))
        .bind(value)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(DISTINCT issues.id) FROM {from} WHERE {cond} AND {OPEN}"
        ))
        .bind(value)
        .fetch_one(&self.reader)
        .await?;
        Ok((ids, count))
    }
}
