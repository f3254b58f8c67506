//! What a command centre's wall shows, counted by the store: reports since an instant, open
//! issues by tier, overdue ones by branch, the latest events. The statements are the same on
//! both backends, written once here and expanded into each over its reading connections.

use chrono::{DateTime, Utc};

use super::{Backend, Result, Store};

/// The wall's counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WallCounts {
    /// Issues reported since the instant asked for.
    pub reported: i64,
    /// Open issues (held or suspended) by tier (none: no tier).
    pub open_by_tier: Vec<(Option<String>, i64)>,
    /// Open issues with a deadline passed, by their unit's branch (`/zz/d-1/s-1/c-1/g-1/`).
    pub overdue_by_branch: Vec<(String, i64)>,
}

/// One line of the wall's ticker: an event with what it happened to, never who reported or
/// what they wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Ticked {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub category: String,
    pub unit: String,
}

macro_rules! wall_queries {
    ($store:ty, $read:ident) => {
        impl $store {
            pub async fn wall_counts(
                &self,
                since: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> crate::store::Result<crate::store::WallCounts> {
                let reported: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM issues WHERE reported_at >= $1")
                        .bind(since.timestamp_millis())
                        .fetch_one(&self.$read)
                        .await?;
                let open_by_tier: Vec<(Option<String>, i64)> = sqlx::query_as(
                    "SELECT tier, COUNT(*) FROM issues
                     WHERE status IN ('assigned', 'acknowledged', 'in_progress', 'suspended')
                     GROUP BY tier ORDER BY tier",
                )
                .fetch_all(&self.$read)
                .await?;
                let overdue_by_branch: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT branch, COUNT(*) FROM issues
                     WHERE status IN ('assigned', 'acknowledged', 'in_progress')
                       AND (acknowledge_by <= $1 OR resolve_by <= $1)
                     GROUP BY branch ORDER BY branch",
                )
                .bind(now.timestamp_millis())
                .fetch_all(&self.$read)
                .await?;
                Ok(crate::store::WallCounts {
                    reported,
                    open_by_tier,
                    overdue_by_branch,
                })
            }

            pub async fn ticker(&self, limit: i64) -> crate::store::Result<Vec<crate::store::Ticked>> {
                let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
                    "SELECT e.seq, e.at, e.kind, i.category, i.unit
                     FROM events e JOIN issues i ON i.id = e.issue_id
                     ORDER BY e.seq DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.$read)
                .await?;
                rows.into_iter()
                    .map(|(seq, at, kind, category, unit)| {
                        Ok(crate::store::Ticked {
                            seq,
                            at: chrono::TimeZone::timestamp_millis_opt(&chrono::Utc, at)
                                .single()
                                .ok_or_else(|| {
                                    crate::store::StoreError::Corrupt(format!(
                                        "instant {at} out of range"
                                    ))
                                })?,
                            kind,
                            category,
                            unit,
                        })
                    })
                    .collect()
            }
        }
    };
}

impl Store {
    /// The wall's counts: reports since `since`, open issues by tier, overdue ones at `now` by
    /// branch.
    pub async fn wall_counts(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<WallCounts> {
        on!(self, s => s.wall_counts(since, now).await)
    }

    /// The latest `limit` events, the latest first.
    pub async fn ticker(&self, limit: i64) -> Result<Vec<Ticked>> {
        on!(self, s => s.ticker(limit).await)
    }
}
