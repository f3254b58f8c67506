//! An issue's pending timers as the scheduler will fire them: what the issue page projects its
//! ladder from. The statement is the same on both backends, written once here and expanded into
//! each over its reading connections.

use escalade_rules::Timer;

use super::{Backend, Result, Store};

macro_rules! timer_queries {
    ($store:ty, $read:ident) => {
        impl $store {
            pub async fn pending_timers(
                &self,
                issue_id: &str,
            ) -> crate::store::Result<Vec<escalade_rules::Timer>> {
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT due, event FROM timers WHERE issue_id = $1 ORDER BY due, id",
                )
                .bind(issue_id)
                .fetch_all(&self.$read)
                .await?;
                rows.into_iter()
                    .map(|(due, event)| {
                        let corrupt = |what: String| {
                            crate::store::StoreError::Corrupt(format!(
                                "a timer of issue {issue_id}: {what}"
                            ))
                        };
                        Ok(escalade_rules::Timer {
                            at: chrono::TimeZone::timestamp_millis_opt(&chrono::Utc, due)
                                .single()
                                .ok_or_else(|| corrupt(format!("instant {due} out of range")))?,
                            event: serde_json::from_str(&event)
                                .map_err(|e| corrupt(format!("its event: {e}")))?,
                        })
                    })
                    .collect()
            }
        }
    };
}

impl Store {
    /// Issue `issue_id`'s pending timers, the first due first (a claimed one included: it fires
    /// once, on whichever replica holds it).
    pub async fn pending_timers(&self, issue_id: &str) -> Result<Vec<Timer>> {
        on!(self, s => s.pending_timers(issue_id).await)
    }
}
