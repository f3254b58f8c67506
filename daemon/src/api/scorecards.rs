//! `GET /api/v1/scorecards`: each department's and each unit's figures over a period, with the
//! points of the rules' `scoring:` section (see `crate::scorecards`).

use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::Deserialize;

use super::{Answer, ApiError, AppState, bad_query, query};
use crate::auth::Actor;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScorecardQuery {
    /// `day`, `week` (the default) or `month`: the 1, 7 or 30 days up to now.
    period: Option<String>,
    from: Option<DateTime<FixedOffset>>,
    to: Option<DateTime<FixedOffset>>,
    department: Option<String>,
    unit: Option<String>,
}

/// The longest period asked for, in days.
const LONGEST_DAYS: i64 = 366;

pub(super) async fn get(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    uri: axum::http::Uri,
) -> Result<Answer, ApiError> {
    let q: ScorecardQuery = query(uri.query())?;
    let rules = s.engine.rules();
    let org = &rules.org;
    let now = s.engine.now();
    let (from, to) = match (&q.period, q.from, q.to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(bad_query(
                "period",
                "give either `period` or `from` and `to`, not both".into(),
            ));
        }
        (None, Some(f), Some(t)) => (f.with_timezone(&Utc), t.with_timezone(&Utc)),
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(bad_query(
                if q.from.is_some() { "to" } else { "from" },
                "`from` and `to` go together".into(),
            ));
        }
        (p, None, None) => {
            let days = match p.as_deref().unwrap_or("week") {
                "day" => 1,
                "week" => 7,
                "month" => 30,
                other => {
                    return Err(bad_query(
                        "period",
                        format!("unknown period `{other}`: day, week or month"),
                    ));
                }
            };
            (now - Duration::days(days), now)
        }
    };
    if to <= from {
        return Err(bad_query("to", "`to` must come after `from`".into()));
    }
    if to - from > Duration::days(LONGEST_DAYS) {
        return Err(bad_query(
            "from",
            format!("a scorecard covers at most {LONGEST_DAYS} days"),
        ));
    }
    if q.department.is_some() && q.unit.is_some() {
        return Err(bad_query(
            "unit",
            "give `department` or `unit`, not both".into(),
        ));
    }
    if let Some(d) = &q.department
        && org.department(d).is_none()
    {
        return Err(bad_query("department", format!("unknown department `{d}`")));
    }
    if let Some(u) = &q.unit
        && org.unit(u).is_none()
    {
        return Err(bad_query("unit", format!("unknown unit `{u}`")));
    }
    let cards = s
        .engine
        .scorecards_for(
            &actor,
            from,
            to,
            q.department,
            q.unit,
            &rules.settings.locale,
        )
        .await?;
    Ok(Answer(
        serde_json::to_value(cards).expect("plain data serialises"),
    ))
}
