//! The inbox: the open issues the signed-in role works on, the nearest deadline first, each
//! deadline as a clock of the working time left on its calendar. Filters live in the URL, so a
//! view can be bookmarked.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use escalade_rules::{Issue, IssueState, RuleSet};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{SignedIn, message, page};
use crate::api::AppState;
use crate::engine::EngineError;
use crate::store::IssueFilter;

/// Issues on a page of the inbox.
const PAGE: i64 = 50;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct InboxQuery {
    /// Only issues in this state.
    state: Option<String>,
    /// Only issues at this tier.
    tier: Option<String>,
    /// Only issues with a deadline passed.
    overdue: Option<String>,
    /// Continue after this cursor.
    after: Option<String>,
}

/// How a deadline stands: the working time left on its calendar, and how much of its whole
/// span that is.
pub(super) fn clock(
    rules: &RuleSet,
    issue: &Issue,
    state: &IssueState,
    kind: &str,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Value {
    let calendar = rules.category(&issue.category).map(|c| {
        let category = &rules.categories[c as usize];
        let priority = state.priority.unwrap_or(category.priority);
        rules.deadline_calendar(category, priority, &state.departments)
    });
    let (left, span) = match calendar {
        Some(cal) => (
            if due > now {
                cal.working_seconds_between(now, due)
            } else {
                -cal.working_seconds_between(due, now)
            },
            state
                .reported_at
                .map(|r| cal.working_seconds_between(r, due))
                .unwrap_or(0),
        ),
        None => ((due - now).num_seconds(), 0),
    };
    // Green while more than half the span is left, amber down to a fifth, then red; overdue
    // once passed (by the wall clock: a deadline passes at its instant).
    let level = if due <= now {
        "overdue"
    } else if span <= 0 || left * 2 > span {
        "green"
    } else if left * 5 > span {
        "amber"
    } else {
        "red"
    };
    json!({
        "kind": kind,
        "due": due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "left": human(left.abs()),
        "level": level,
        "calendar": calendar.map(|c| c.id()),
    })
}

/// `3h 20m`, `2d 4h` (days of 24 working hours would mislead: hours and minutes up to a day,
/// then days and hours of the wall clock's length).
fn human(secs: i64) -> String {
    let m = secs / 60;
    let (d, h, m) = (m / 1440, (m / 60) % 24, m % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A listed issue as the inbox shows it.
pub(super) fn row(
    rules: &RuleSet,
    locale: &str,
    issue: &Issue,
    state: &IssueState,
    now: DateTime<Utc>,
) -> Value {
    let name = |names: &escalade_rules::model::Names| {
        if locale == "en" {
            names.en.clone()
        } else {
            names.zh.clone()
        }
    };
    let category = rules
        .category(&issue.category)
        .map(|c| name(&rules.categories[c as usize].names))
        .unwrap_or_else(|| issue.category.clone());
    let unit = rules
        .org
        .unit(&issue.unit)
        .map(|u| name(&rules.org.units[u as usize].names))
        .unwrap_or_else(|| issue.unit.clone());
    let departments: Vec<String> = state
        .departments
        .iter()
        .map(|d| {
            rules
                .org
                .department(d)
                .map(|ix| name(&rules.org.departments[ix as usize].names))
                .unwrap_or_else(|| d.clone())
        })
        .collect();
    let mut clocks = Vec::new();
    if state.state.is_open() {
        if let Some(due) = state.acknowledge_by
            && state.state == escalade_rules::State::Assigned
        {
            clocks.push(clock(rules, issue, state, "acknowledge", due, now));
        }
        if let Some(due) = state.resolve_by {
            clocks.push(clock(rules, issue, state, "resolve", due, now));
        }
    }
    json!({
        "id": issue.id,
        "category": category,
        "unit": unit,
        "departments": departments,
        "state": state.state,
        "tier": state.tier,
        "description": issue.description,
        "reported_at": state.reported_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "clocks": clocks,
    })
}

/// `GET /console/inbox`: the role's open issues (a department's own, a leader's or reporter's
/// subtree, everything for an administrator), the nearest deadline first.
pub(super) async fn inbox(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Query(q): Query<InboxQuery>,
) -> Response {
    let rules = s.engine.rules();
    let now = s.engine.now();
    let mut f = IssueFilter {
        open: true,
        by_deadline: true,
        limit: PAGE,
        state: q.state.clone().filter(|v| !v.is_empty()),
        tier: q.tier.clone().filter(|v| !v.is_empty()),
        overdue_at: q.overdue.as_deref().filter(|v| !v.is_empty()).map(|_| now),
        ..IssueFilter::default()
    };
    if let Some(st) = &f.state
        && escalade_rules::State::parse(st).is_none()
    {
        return message(
            StatusCode::BAD_REQUEST,
            session.locale,
            "error",
            &format!("unknown state `{st}`"),
        );
    }
    if let Some(t) = &f.tier
        && rules.org.tier(t).is_none()
    {
        return message(
            StatusCode::BAD_REQUEST,
            session.locale,
            "error",
            &format!("unknown tier `{t}`"),
        );
    }
    if let Some(c) = &q.after {
        let parsed = c
            .split_once(':')
            .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())));
        match parsed {
            Some(p) => f.after = Some(p),
            None => {
                return message(
                    StatusCode::BAD_REQUEST,
                    session.locale,
                    "error",
                    &format!("invalid cursor `{c}`"),
                );
            }
        }
    }
    let listed = match s.engine.list_for(&session.actor, f).await {
        Ok(l) => l,
        Err(EngineError::Forbidden { message: m, .. }) => {
            return message(StatusCode::FORBIDDEN, session.locale, "refused", &m);
        }
        Err(e) => {
            tracing::error!(error = %e, "listing the inbox failed");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                session.locale,
                "error",
                "the store cannot be read",
            );
        }
    };
    let next = (listed.len() as i64 == PAGE)
        .then(|| listed.last().map(|l| l.cursor.clone()))
        .flatten();
    let rows: Vec<Value> = listed
        .iter()
        .map(|l| row(&rules, session.locale, &l.issue.issue, &l.issue.state, now))
        .collect();
    // A reporter also checks the resolutions of what was reported in its grid.
    let mut to_verify = Vec::new();
    if session.actor.role == crate::auth::Role::Reporter {
        let resolved = IssueFilter {
            state: Some("resolved".into()),
            limit: PAGE,
            ..IssueFilter::default()
        };
        match s.engine.list_for(&session.actor, resolved).await {
            Ok(l) => {
                to_verify = l
                    .iter()
                    .map(|l| row(&rules, session.locale, &l.issue.issue, &l.issue.state, now))
                    .collect();
            }
            Err(e) => tracing::error!(error = %e, "listing the resolutions to check failed"),
        }
    }
    let tiers: Vec<&str> = rules.org.tiers.iter().map(|t| t.id.as_str()).collect();
    let mut context = session.context();
    context["to_verify"] = json!(to_verify);
    context["issues"] = json!(rows);
    context["next"] = json!(next);
    context["filter"] = json!({"state": q.state, "tier": q.tier, "overdue": q.overdue.is_some_and(|v| !v.is_empty())});
    context["tiers"] = json!(tiers);
    context["states"] = json!(["assigned", "acknowledged", "in_progress", "suspended"]);
    page(StatusCode::OK, "inbox.html", session.locale, context)
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn time_left_reads_in_minutes_hours_then_days() {
        assert_eq!(human(59), "0m");
        assert_eq!(human(45 * 60), "45m");
        assert_eq!(human(3 * 3600 + 20 * 60), "3h 20m");
        assert_eq!(human(2 * 86400 + 4 * 3600 + 59), "2d 4h");
    }
}
