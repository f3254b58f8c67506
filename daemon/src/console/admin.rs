//! Administration: the rules (live version, history, the last reload and its diagnostics with
//! file:line:column, a reload), the outbox (why a message waits, dead letters and stale ones,
//! retry), and people's access (every token and session, revoking one). Administrators only;
//! each change goes through the same steward and store calls as the API's.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{Session, SignedIn, foreign_form, message, page, redirect};
use crate::api::AppState;
use crate::auth::Role;
use crate::reload::ReloadError;
use crate::store::{OUTBOX_STATUSES, OutboxFilter, Requeue};

/// Rows shown on an administration page.
const ROWS: i64 = 100;

/// The refusal of a page to someone not acting as administrator.
fn not_admin(session: &Session, what: &str) -> Option<Response> {
    (session.actor.role != Role::Admin).then(|| {
        message(
            StatusCode::FORBIDDEN,
            session.locale,
            "refused",
            &session.actor.may_not(what),
        )
    })
}

fn unavailable(session: &Session, e: impl std::fmt::Display) -> Response {
    super::unavailable(session.locale, "an administration page", e)
}

/// `GET /console/admin/rules`: what is live, how the last reload went, every version.
pub(super) async fn rules(State(s): State<Arc<AppState>>, SignedIn(session): SignedIn) -> Response {
    if let Some(r) = not_admin(&session, "steer the rules") {
        return r;
    }
    let st = s.rules.status();
    let versions = match s.engine.store().rule_versions(None, ROWS).await {
        Ok(v) => v,
        Err(e) => return unavailable(&session, e),
    };
    let last = st.last_attempt.as_ref().map(|a| {
        json!({
            "at": a.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "by": a.by,
            "outcome": a.outcome,
            "message": a.message,
            "diagnostics": a.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "in_use": a.in_use.iter().map(|u| u.message.clone()).collect::<Vec<_>>(),
        })
    });
    let mut context = session.context();
    context["live"] = json!({
        "version": st.live.version,
        "loaded_at": st.live.loaded_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "loaded_by": st.live.loaded_by,
        "dir": st.live.dir,
    });
    context["last"] = json!(last);
    context["versions"] = json!(versions);
    page(StatusCode::OK, "admin_rules.html", session.locale, context)
}

/// `POST /console/admin/rules/reload`: reloads the rule directory (with `force`, sending the
/// issues whose removed things are in use to triage), then shows how it went.
pub(super) async fn reload(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = not_admin(&session, "reload the rules") {
        return r;
    }
    let csrf = f.get("csrf").map(String::as_str).unwrap_or("");
    if let Some(r) = foreign_form(&session, &headers, csrf) {
        return r;
    }
    let force = f.get("force").is_some_and(|v| v == "1");
    match s.rules.reload(&session.actor.name(), force).await {
        // The outcome, diagnostics included, is the status the rules page shows.
        Ok(_) | Err(ReloadError::Invalid(_)) | Err(ReloadError::InUse(_)) => {
            redirect("/console/admin/rules")
        }
        Err(ReloadError::Failed(m)) => unavailable(&session, m),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OutboxQuery {
    status: Option<String>,
}

/// `GET /console/admin/outbox[?status=dead]`: the messages by status (dead letters by
/// default), each with its attempts, last error and when it is due.
pub(super) async fn outbox(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Query(q): Query<OutboxQuery>,
) -> Response {
    if let Some(r) = not_admin(&session, "read the outbox") {
        return r;
    }
    let status = q
        .status
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "dead".into());
    if !OUTBOX_STATUSES.contains(&status.as_str()) {
        return message(
            StatusCode::BAD_REQUEST,
            session.locale,
            "error",
            &format!("unknown status `{status}`: queued, sending, sent, dead or stale"),
        );
    }
    let f = OutboxFilter {
        status: Some(status.clone()),
        after: None,
        limit: ROWS,
    };
    let rows = match s.engine.store().outbox_page(&f).await {
        Ok(r) => r,
        Err(e) => return unavailable(&session, e),
    };
    let counts = s.engine.store().outbox_counts().await.unwrap_or_default();
    let mut context = session.context();
    context["status"] = json!(status);
    context["statuses"] = json!(OUTBOX_STATUSES);
    context["counts"] = json!(
        counts
            .iter()
            .map(|(ch, st, n)| json!({"channel": ch, "status": st, "count": n}))
            .collect::<Vec<_>>()
    );
    context["messages"] = json!(rows);
    page(StatusCode::OK, "admin_outbox.html", session.locale, context)
}

/// `POST /console/admin/outbox/{id}/retry`: a dead letter or a stale message queued again.
pub(super) async fn retry(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = not_admin(&session, "retry outbox messages") {
        return r;
    }
    let csrf = f.get("csrf").map(String::as_str).unwrap_or("");
    if let Some(r) = foreign_form(&session, &headers, csrf) {
        return r;
    }
    match s.engine.store().requeue(id, s.engine.now()).await {
        Ok(Requeue::Requeued(_)) => redirect("/console/admin/outbox?status=queued"),
        Ok(Requeue::NotFound) => message(
            StatusCode::NOT_FOUND,
            session.locale,
            "not_found",
            &format!("no outbox message {id}"),
        ),
        Ok(Requeue::NotDead(status)) => message(
            StatusCode::CONFLICT,
            session.locale,
            "refused",
            &format!(
                "outbox message {id} is {status}: only a dead letter or a stale message is retried"
            ),
        ),
        Err(e) => unavailable(&session, e),
    }
}

/// `GET /console/admin/tokens`: every token and console session, live or not, with its owner,
/// label, last use and expiry.
pub(super) async fn tokens(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
) -> Response {
    if let Some(r) = not_admin(&session, "list tokens") {
        return r;
    }
    let now = s.engine.now();
    let tokens = match s.engine.store().tokens().await {
        Ok(t) => t,
        Err(e) => return unavailable(&session, e),
    };
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    let rows: Vec<_> = tokens
        .iter()
        .rev()
        .map(|t| {
            let live = t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now);
            json!({
                "id": t.id,
                "role": t.role,
                "scope": t.scope,
                "owner": t.person.clone().or_else(|| t.integration.as_ref().map(|i| format!("integration:{i}"))),
                "label": t.label,
                "created_at": when(Some(t.created_at)),
                "last_used_at": when(t.last_used_at),
                "expires_at": when(t.expires_at),
                "live": live,
                "mine": t.id == session.actor.token,
            })
        })
        .collect();
    let mut context = session.context();
    context["tokens"] = json!(rows);
    page(StatusCode::OK, "admin_tokens.html", session.locale, context)
}

/// `POST /console/admin/tokens/{id}/revoke`: the token (or session) stops working, on every
/// replica within a second.
pub(super) async fn revoke(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = not_admin(&session, "revoke tokens") {
        return r;
    }
    let csrf = f.get("csrf").map(String::as_str).unwrap_or("");
    if let Some(r) = foreign_form(&session, &headers, csrf) {
        return r;
    }
    match s.engine.store().revoke_token(id, s.engine.now()).await {
        Ok(true) => redirect("/console/admin/tokens"),
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            session.locale,
            "not_found",
            &format!("no live token {id}"),
        ),
        Err(e) => unavailable(&session, e),
    }
}
