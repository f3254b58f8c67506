//! A leader's board counted by the store: the open issues that need attention (overdue, or
//! raised above the first tier) in a subtree, by branch and by lead department, in one pass
//! over the covering index `issues_deadlines`. The statements are
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
    /// By lead department (主办: the one answerable; co-assigned ones are not counted).
    pub by_department: Vec<(String, i64)>,
}

impl BoardCounts {
    /// The counts from `(branch, lead department, issues)` rows.
    pub(super) fn of(rows: Vec<(String, Option<String>, i64)>) -> BoardCounts {
        let mut by_branch = std::collections::BTreeMap::new();
        let mut by_department = std::collections::BTreeMap::new();
        for (branch, department, n) in rows {
            *by_branch.entry(branch).or_insert(0) += n;
            if let Some(d) = department {
                *by_department.entry(d).or_insert(0) += n;
            }
        }
        BoardCounts {
            total: by_branch.values().sum(),
            by_branch: by_branch.into_iter().collect(),
            by_department: by_department.into_iter().collect(),
        }
    }
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
                // One pass over the covering index: by branch and lead department together.
                let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(&format!(
                    "SELECT i.branch, i.department, COUNT(*) FROM issues i WHERE {}
                     GROUP BY i.branch, i.department",
                    crate::store::board::ATTENTION_SQL
                ))
                .bind(attention.at.timestamp_millis())
                .bind(&attention.first_tier)
                .bind(&pattern)
                .fetch_all(&self.$read)
                .await?;
                Ok(crate::store::board::BoardCounts::of(rows))
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
