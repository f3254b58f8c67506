//! Joint meetings: list, get, and record the outcome (which applies to every agenda issue).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, ApiError, AppState, JsonBody, bad_query, not_found, page_limit, parse, query};
use crate::auth::Actor;
use crate::engine::{EngineError, OutcomeRecord};
use crate::store::{Meeting, MeetingFilter};

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeetingQuery {
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

pub(super) async fn list(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    uri: axum::http::Uri,
) -> Result<Answer, ApiError> {
    let q: MeetingQuery = query(uri.query())?;
    let mut f = MeetingFilter {
        status: q.status,
        limit: page_limit(q.limit),
        ..Default::default()
    };
    if let Some(st) = &f.status
        && st != "scheduled"
        && st != "held"
    {
        return Err(bad_query(
            "status",
            format!("unknown status `{st}`: scheduled or held"),
        ));
    }
    if let Some(c) = q.cursor {
        let parsed = c
            .split_once(':')
            .and_then(|(at, id)| Some((at.parse().ok()?, id.parse().ok()?)));
        f.after = Some(parsed.ok_or_else(|| bad_query("cursor", format!("invalid cursor `{c}`")))?);
    }
    let limit = f.limit;
    let meetings = s.engine.meetings_for(&actor, f).await?;
    let next = (meetings.len() as i64 == limit)
        .then(|| {
            meetings
                .last()
                .map(|m| format!("{}:{}", m.at.timestamp_millis(), m.id))
        })
        .flatten();
    Ok(Answer(json!({"meetings": meetings, "next_cursor": next})))
}

/// The meeting with where each agenda issue stands now: after a joint enforcement action, its
/// departments and deadline are tracked on the issue like any other.
async fn with_issues(s: &AppState, meeting: Meeting) -> Result<Value, ApiError> {
    let mut issues = Vec::with_capacity(meeting.agenda.len());
    for item in &meeting.agenda {
        if let Some(i) = s
            .engine
            .store()
            .issue(&item.issue)
            .await
            .map_err(EngineError::from)?
        {
            issues.push(json!({
                "id": i.issue.id,
                "category": i.issue.category,
                "unit": i.issue.unit,
                "state": i.state.state,
                "departments": i.state.departments,
                "tier": i.state.tier,
                "resolve_by": i.state.resolve_by,
            }));
        }
    }
    let mut v = serde_json::to_value(&meeting).expect("plain data serialises");
    v["issues"] = Value::Array(issues);
    Ok(v)
}

fn meeting_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| not_found(format!("meeting {raw}")))
}

pub(super) async fn get(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Answer, ApiError> {
    let id = meeting_id(&id)?;
    let meeting = s.engine.meeting_visible(&actor, id).await?;
    Ok(Answer(with_issues(&s, meeting).await?))
}

/// Records the outcome: a leader whose subtree holds every agenda issue, or an admin.
pub(super) async fn outcome(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Answer), ApiError> {
    let id = meeting_id(&id)?;
    super::require_json(&headers)?;
    let record: OutcomeRecord = parse(&body)?;
    s.engine.meeting_visible(&actor, id).await?;
    let held = s.engine.record_outcome(id, &record, &actor).await?;
    let held = s.engine.meeting_for(&actor, held).await?;
    Ok((StatusCode::OK, Answer(with_issues(&s, held).await?)))
}
