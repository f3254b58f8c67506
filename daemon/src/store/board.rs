//! A leader's board counted by the store: the open issues that need attention (overdue, or
//! raised above the first tier) in a subtree, by branch and by department. The statements are
//! the same on both backends, written once here and expanded into each over its reading
//! connections.

use chrono::{DateTime, Utc};

use super::{Backend, Result, Store};

/// What needs a leader's attention: an open issue overdue at `at`, or at a tier other than
/// `first_tier` (raised above where issues start).
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub at: DateTime<Utc>,
    pub first_tier: String,
}

/// The board's counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BoardCounts {
    /// Issues needing attention, all of them.
    pub total: i64,
    /// By their unit's branch (`/zz/d-1/s-1/c-1/g-1/`).
    pub by_branch: Vec<(String, i64)>,
    /// By department holding them (an issue held by two counts for each).
    pub by_department: Vec<(String, i64)>,
}

/// A `LIKE` pattern matching the branches through unit `unit`: its wildcards escaped (`\`).
pub(super) fn subtree_pattern(unit: &str) -> String {
    let escaped = unit
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%/{escaped}/%")
}

/// The condition of attention over `issues` aliased `i`: `$1` the instant in ms, `$2` the first
/// tier, `$3` the subtree's pattern (`%` for all).
pub(super) const ATTENTION_SQL: &str =
    "i.status IN ('assigned', 'acknowledged', 'in_progress', 'suspended')
     AND ((i.status <> 'suspended' AND (i.acknowledge_by <= $1 OR i.resolve_by <= $1))
          OR i.tier <> $2)
     AND i.branch LIKE $3 ESCAPE '\\'";

macro_rules! board_queries {
    ($store:ty, $read:ident) => {
        impl $store {
            pub async fn board_counts(
                &self,
                attention: &crate::store::board::Attention,
                subtree: Option<&str>,
            ) -> crate::store::Result<crate::store::BoardCounts> {
                let pattern = subtree
                    .map(crate::store::board::subtree_pattern)
                    .unwrap_or_else(|| "%".to_string());
                let at = attention.at.timestamp_millis();
                let by_branch: Vec<(String, i64)> = sqlx::query_as(&format!(
                    "SELECT i.branch, COUNT(*) FROM issues i WHERE {}
                     GROUP BY i.branch ORDER BY i.branch",
                    crate::store::board::ATTENTION_SQL
                ))
                .bind(at)
                .bind(&attention.first_tier)
                .bind(&pattern)
                .fetch_all(&self.$read)
                .await?;
                let by_department: Vec<(String, i64)> = sqlx::query_as(&format!(
                    "SELECT a.department, COUNT(*) FROM assignments a
                     JOIN issues i ON i.id = a.issue_id WHERE {}
                     GROUP BY a.department ORDER BY a.department",
                    crate::store::board::ATTENTION_SQL
                ))
                .bind(at)
                .bind(&attention.first_tier)
                .bind(&pattern)
                .fetch_all(&self.$read)
                .await?;
                Ok(crate::store::BoardCounts {
                    total: by_branch.iter().map(|(_, n)| n).sum(),
                    by_branch,
                    by_department,
                })
            }
        }
    };
}

impl Store {
    /// How many open issues of the subtree through `subtree` (all without one) need attention,
    /// by branch and by department.
    pub async fn board_counts(
        &self,
        attention: &Attention,
        subtree: Option<&str>,
    ) -> Result<BoardCounts> {
        on!(self, s => s.board_counts(attention, subtree).await)
    }
}
