//! `GET /api/v1/scorecards`: each department's and each unit's figures over a period, with the
//! points of the rules' `scoring:` section (see `crate::scorecards`).

use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::Deserialize;

use super::{Answer, ApiError, AppState, bad_query, forbidden, query};
use crate::auth::{Actor, Role};
use crate::engine::EngineError;
use crate::scorecards::{Show, Which, scorecards};

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
    // Who sees what: an admin everything; a leader the departments and the units of its
    // subtree; a department its own card.
    let which = match actor.role {
        Role::Admin => match (q.department, q.unit) {
            (Some(d), _) => Which {
                departments: Show::Only(d),
                units: Show::None,
            },
            (None, Some(u)) => Which {
                departments: Show::None,
                units: Show::Only(u),
            },
            (None, None) => Which::default(),
        },
        Role::Leader => {
            let scope = actor.scope.clone().unwrap_or_default();
            match (q.department, q.unit) {
                (_, Some(u)) if !actor.in_subtree(&rules, &u) => {
                    return Err(forbidden(&actor, &format!("read the scorecards of {u}")));
                }
                (None, Some(u)) => Which {
                    departments: Show::None,
                    units: Show::Only(u),
                },
                (Some(d), _) => Which {
                    departments: Show::Only(d),
                    units: Show::None,
                },
                (None, None) => Which {
                    departments: Show::All,
                    units: Show::Only(scope),
                },
            }
        }
        Role::Department => {
            let own = actor.scope.clone().unwrap_or_default();
            if q.unit.is_some() || q.department.as_ref().is_some_and(|d| *d != own) {
                return Err(forbidden(
                    &actor,
                    "read another department's or a unit's scorecard",
                ));
            }
            Which {
                departments: Show::Only(own),
                units: Show::None,
            }
        }
        Role::Reporter => return Err(forbidden(&actor, "read scorecards")),
    };
    let cards = scorecards(
        s.engine.store(),
        &rules,
        from,
        to,
        &which,
        &rules.settings.locale,
    )
    .await
    .map_err(EngineError::from)?;
    Ok(Answer(
        serde_json::to_value(cards).expect("plain data serialises"),
    ))
}
