//! The requests waiting on open issues for their deciders (延期, 挂起), the soonest to lapse
//! first: found by the issues' `request_kind` and `request_by` columns under a partial index,
//! without reading every open issue's state. The statement is the same on both backends, written
//! once here and expanded into each over its reading connections (ids compare byte by byte on
//! both, as SQLite compares text).

use super::{Backend, Listed, Result, Store};

/// The query, expanded into a backend's `impl` with the pool it reads through and how its ids
/// compare byte by byte. Listed by when the decider's time runs out (a request without a limit
/// last), then by id.
macro_rules! request_queries {
    ($store:ty, $read:ident, $bytewise:literal) => {
        impl $store {
            pub async fn requests(
                &self,
                subtree: Option<&str>,
                after: Option<(i64, String)>,
                limit: i64,
            ) -> crate::store::Result<Vec<crate::store::Listed>> {
                // `%/unit/%`, the pattern's own wildcards escaped; LIKE may ignore case, so the
                // caller still checks each issue's unit.
                let branch = subtree.map(|u| {
                    let escaped = u
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    format!("%/{escaped}/%")
                });
                let (key, id) = after.unwrap_or((i64::MIN, String::new()));
                let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(concat!(
                    "SELECT id, body, state, version, COALESCE(request_by, 9223372036854775807)
                     FROM issues
                     WHERE request_kind IS NOT NULL
                       AND status IN ('assigned', 'acknowledged', 'in_progress')
                       AND ($1 IS NULL OR branch LIKE $1 ESCAPE '\\')
                       AND (COALESCE(request_by, 9223372036854775807) > $2
                            OR (COALESCE(request_by, 9223372036854775807) = $2 AND id",
                    $bytewise,
                    " > $3))
                     ORDER BY COALESCE(request_by, 9223372036854775807), id",
                    $bytewise,
                    " LIMIT $4"
                ))
                .bind(branch)
                .bind(key)
                .bind(id)
                .bind(limit)
                .fetch_all(&self.$read)
                .await?;
                let corrupt = |what: &str| {
                    let what = what.to_string();
                    move |e: serde_json::Error| {
                        crate::store::StoreError::Corrupt(format!("{what}: {e}"))
                    }
                };
                rows.into_iter()
                    .map(|(id, body, state, version, key)| {
                        Ok(crate::store::Listed {
                            issue: crate::store::StoredIssue {
                                issue: serde_json::from_str(&body)
                                    .map_err(corrupt("issue body"))?,
                                state: serde_json::from_str(&state)
                                    .map_err(corrupt("issue state"))?,
                                version,
                            },
                            cursor: format!("{key}:{id}"),
                        })
                    })
                    .collect()
            }
        }
    };
}

impl Store {
    /// Open issues with a request waiting for its decider, in `subtree` if named (an issue
    /// outside it may slip in: check each), the soonest to lapse first, from after the cursor
    /// `(request_by ms, id)` a listed issue's `cursor` carries; at most `limit`.
    pub async fn requests(
        &self,
        subtree: Option<&str>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Listed>> {
        on!(self, s => s.requests(subtree, after, limit).await)
    }
}
