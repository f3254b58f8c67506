//! The rules as administrators steer them: what is live and how the last reload went, a reload
//! that answers when it has finished, and every version that went live. Admins only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{Answer, ApiError, AppState, JsonBody, bad_query, forbidden, page_limit, query};
use crate::auth::{Actor, Role};
use crate::engine::EngineError;
use crate::reload::{CandidateError, ReloadError};
use crate::replay::{CandidateReplay, CandidateReplayError};

fn admin(actor: &Actor, what: &str) -> Result<(), ApiError> {
    if actor.role == Role::Admin {
        Ok(())
    } else {
        Err(forbidden(actor, what))
    }
}

/// `GET /api/v1/rules`: the live version, when, by whom and from where it was loaded, its
/// summary, and the last reload attempt with its outcome and diagnostics.
pub(super) async fn status(
    State(s): State<Arc<AppState>>,
    actor: Actor,
) -> Result<Answer, ApiError> {
    admin(&actor, "read the rules' status")?;
    let st = s.rules.status();
    Ok(Answer(json!({
        "version": st.live.version,
        "loaded_at": st.live.loaded_at,
        "loaded_by": st.live.loaded_by,
        "dir": st.live.dir,
        "summary": st.live.summary,
        "last_attempt": st.last_attempt,
    })))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadQuery {
    force: Option<bool>,
}

/// `POST /api/v1/rules/reload[?force=true]`: answers when the reload has finished: 200 with
/// the new version, 422 with the diagnostics, 409 with the removed things open issues use; on
/// any refusal the old rules stay live.
pub(super) async fn reload(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    uri: axum::http::Uri,
) -> Result<Answer, ApiError> {
    let q: ReloadQuery = query(uri.query())?;
    admin(&actor, "reload the rules")?;
    match s
        .rules
        .reload(&actor.name(), q.force.unwrap_or(false))
        .await
    {
        Ok(r) => Ok(Answer(
            serde_json::to_value(r).expect("plain data serialises"),
        )),
        Err(ReloadError::Invalid(diagnostics)) => Err(ApiError {
            extra: Some(json!({ "diagnostics": diagnostics })),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_rules",
                format!(
                    "the rule directory {} has {} error(s); the old rules stay live",
                    s.rules.dir().display(),
                    diagnostics.len()
                ),
            )
        }),
        Err(ReloadError::InUse(in_use)) => Err(ApiError {
            extra: Some(json!({ "in_use": in_use })),
            ..ApiError::new(
                StatusCode::CONFLICT,
                "rules_in_use",
                format!(
                    "{}; the old rules stay live (reload with ?force=true to send those issues to triage)",
                    in_use
                        .iter()
                        .map(|u| u.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
        }),
        Err(ReloadError::Failed(m)) => Err(super::internal(m)),
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionsQuery {
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/rules/versions`: every version that went live, newest first.
pub(super) async fn versions(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    uri: axum::http::Uri,
) -> Result<Answer, ApiError> {
    let q: VersionsQuery = query(uri.query())?;
    admin(&actor, "list the rule versions")?;
    let before = match &q.cursor {
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| bad_query("cursor", format!("invalid cursor `{c}`")))?,
        ),
        None => None,
    };
    let limit = page_limit(q.limit);
    let rows = s
        .engine
        .store()
        .rule_versions(before, limit)
        .await
        .map_err(EngineError::from)?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Answer(json!({ "versions": rows, "next_cursor": next })))
}

/// `GET /api/v1/issues/{id}/explain`: every event of the issue decided again by the rules
/// version that decided it, with its trace, and checked against the stored decision.
pub(super) async fn explain(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Answer, ApiError> {
    admin(&actor, &format!("explain issue {id}"))?;
    match crate::explain::explain_issue(s.engine.store(), &s.rules, &id).await {
        Ok(x) => Ok(Answer(
            serde_json::to_value(x).expect("plain data serialises"),
        )),
        Err(crate::explain::ExplainError::NotFound(id)) => {
            Err(super::not_found(format!("issue {id}")))
        }
        Err(crate::explain::ExplainError::Store(e)) => Err(EngineError::from(e).into()),
    }
}

fn bad_candidate(message: String) -> ApiError {
    ApiError {
        field: Some("dir".into()),
        ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
}

fn invalid_rules(dir: &str, diagnostics: Vec<crate::reload::DiagnosticJson>) -> ApiError {
    ApiError {
        extra: Some(json!({ "diagnostics": diagnostics })),
        field: Some("dir".into()),
        ..ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            format!("the candidate {dir} has {} error(s)", diagnostics.len()),
        )
    }
}

/// The answer to a candidate that cannot be read.
fn candidate_error(dir: &str, e: CandidateError) -> ApiError {
    match e {
        CandidateError::Dir(m) => bad_candidate(m),
        CandidateError::Invalid(d) => invalid_rules(dir, d),
        CandidateError::Failed(m) => super::internal(m),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateBody {
    /// A directory under `candidates_dir`.
    dir: String,
}

/// `GET /api/v1/rules/shadow`: whether shadow rules run, and the differences of the latest
/// run since it started: counts by kind, example issues, the latest differences.
pub(super) async fn shadow(
    State(s): State<Arc<AppState>>,
    actor: Actor,
) -> Result<Answer, ApiError> {
    admin(&actor, "read the shadow rules")?;
    let running = s.engine.shadow();
    let summary = s
        .engine
        .store()
        .shadow_summary(5)
        .await
        .map_err(EngineError::from)?;
    Ok(Answer(json!({
        "active": running.is_some(),
        "version": running.as_ref().map(|r| r.rules.version.to_string()),
        "dir": running.as_ref().map(|r| r.dir.clone()),
        "summary": summary,
    })))
}

/// `PUT /api/v1/rules/shadow` with `{"dir": NAME}`: runs the candidate under `candidates_dir`
/// beside the live rules (replacing shadow rules that ran).
pub(super) async fn start_shadow(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    JsonBody(body): JsonBody,
) -> Result<Answer, ApiError> {
    admin(&actor, "run shadow rules")?;
    let b: CandidateBody = super::parse(&body)?;
    let (path, rules) = s
        .rules
        .named_candidate(&b.dir)
        .await
        .map_err(|e| candidate_error(&b.dir, e))?;
    let started = crate::shadow::Shadow::replace(
        &s.engine,
        Arc::new(rules),
        path.display().to_string(),
        &actor.name(),
    )
    .await
    .map_err(EngineError::from)?;
    Ok(Answer(
        json!({"active": true, "version": started.rules.version.to_string(), "run": started.run}),
    ))
}

/// `DELETE /api/v1/rules/shadow`: stops the shadow rules; their differences stay readable.
pub(super) async fn stop_shadow(
    State(s): State<Arc<AppState>>,
    actor: Actor,
) -> Result<Answer, ApiError> {
    admin(&actor, "stop shadow rules")?;
    let stopped = crate::shadow::Shadow::stop(&s.engine)
        .await
        .map_err(EngineError::from)?;
    Ok(Answer(json!({"active": false, "stopped": stopped})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// A directory under `candidates_dir`.
    dir: String,
    #[serde(default)]
    from: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[serde(default)]
    to: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    /// Changed issues shown in detail at most (the summary counts them all).
    #[serde(default)]
    limit: Option<usize>,
}

/// `POST /api/v1/rules/replay`: past issues of the store lived again through a candidate under
/// `candidates_dir` and through the versions that decided them; what differs.
pub(super) async fn replay(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    JsonBody(body): JsonBody,
) -> Result<Answer, ApiError> {
    admin(&actor, "replay candidate rules")?;
    let b: ReplayBody = super::parse(&body)?;
    let dir = b.dir.clone();
    let asked = CandidateReplay {
        dir: b.dir,
        from: b.from.map(|t| t.with_timezone(&chrono::Utc)),
        to: b.to.map(|t| t.with_timezone(&chrono::Utc)),
        category: b.category,
        unit: b.unit,
        limit: b.limit,
    };
    match crate::replay::replay_candidate(&s.rules, asked).await {
        Ok(r) => Ok(Answer(
            serde_json::to_value(r).expect("plain data serialises"),
        )),
        Err(CandidateReplayError::Candidate(e)) => Err(candidate_error(&dir, e)),
        Err(CandidateReplayError::Invalid { field, message }) => Err(ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }),
        Err(e @ (CandidateReplayError::NoStore | CandidateReplayError::Failed(_))) => {
            Err(super::internal(e.to_string()))
        }
    }
}
