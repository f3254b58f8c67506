//! The HTTP API under `/api/v1` (axum, JSON). Errors are JSON with a stable code, a message and
//! the field at fault; nothing is answered before the store has committed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use escalade_rules::{Event, Issue, Refusal};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::{Actor, Role};
use crate::engine::{Engine, EngineError};
use crate::store::{IssueFilter, StoreError};

/// What the handlers share.
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Set while the scheduler runs; `/readyz` reports it.
    pub scheduler_running: Arc<AtomicBool>,
}

/// An error answer: `{"error": {"code", "message", "field", ...}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    extra: Option<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            extra: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message, "field": self.field});
        if let (Some(Value::Object(extra)), Some(obj)) = (self.extra, body.as_object_mut()) {
            obj.extend(extra);
        }
        (self.status, Json(json!({ "error": body }))).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Refused(Refusal::NotAllowed {
                event,
                state,
                allowed,
            }) => ApiError {
                status: StatusCode::CONFLICT,
                code: "not_allowed",
                message: format!("`{event}` is not allowed while the issue is {state}"),
                field: Some("event".into()),
                extra: Some(json!({"state": state, "allowed": allowed})),
            },
            EngineError::Refused(Refusal::Invalid { field, message }) => ApiError {
                field: Some(field.into()),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            },
            EngineError::NotFound(id) => not_found(format!("issue {id}")),
            EngineError::Store(StoreError::KeyReused(k)) => ApiError {
                field: Some("Idempotency-Key".into()),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    format!("idempotency key `{k}` was used for a different request"),
                )
            },
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    other.to_string(),
                )
            }
        }
    }
}

/// The caller, from `Authorization: Bearer TOKEN`: 401 when the token is missing, unknown or
/// revoked.
async fn authenticate(s: &AppState, headers: &HeaderMap) -> Result<Actor, ApiError> {
    let unauthorized = |code: &'static str, message: &str| ApiError {
        field: Some("Authorization".into()),
        ..ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    };
    let Some(value) = headers.get("authorization") else {
        return Err(unauthorized(
            "missing_token",
            "send `Authorization: Bearer TOKEN`",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            unauthorized(
                "invalid_token",
                "the Authorization header is not `Bearer TOKEN`",
            )
        })?;
    let found = s
        .engine
        .store()
        .token(&crate::auth::hash(token.trim()))
        .await
        .map_err(EngineError::from)?;
    let (id, role, scope) =
        found.ok_or_else(|| unauthorized("invalid_token", "the token is unknown or revoked"))?;
    let role = Role::parse(&role)
        .ok_or_else(|| unauthorized("invalid_token", "the token's role is unknown"))?;
    Ok(Actor {
        token: id,
        role,
        scope,
    })
}

fn forbidden(actor: &Actor, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "a {} token{} may not {what}",
            actor.role.as_str(),
            actor
                .scope
                .as_ref()
                .map(|s| format!(" for {s}"))
                .unwrap_or_default()
        ),
    )
}

/// Parses a JSON body, naming line and column of a syntax error and the field of a data error.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!(
                    "malformed JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            ),
        }
    })
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/issues", post(submit).get(list))
        .route("/api/v1/departments/{id}/queue", get(queue))
        .route("/api/v1/units/{id}/overdue", get(overdue))
        .route("/api/v1/issues/{id}", get(issue))
        .route("/api/v1/issues/{id}/events", post(act))
        .route("/api/v1/outbox", get(outbox))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    max_body_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state, max_body_bytes))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let store = s.engine.store().ping().await.is_ok();
    let scheduler = s.scheduler_running.load(Ordering::Relaxed);
    let body = json!({"store": store, "rules": &*s.engine.rules().version, "scheduler": scheduler});
    if store && scheduler {
        Ok(Json(body))
    } else {
        Err(ApiError {
            extra: Some(body),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the store or the scheduler is not running",
            )
        })
    }
}

/// A body that could not be read: over the size limit, or cut off.
fn body_error(e: BytesRejection) -> ApiError {
    let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(e.status(), code, e.body_text())
}

fn not_found(what: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
}

async fn submit(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let actor = authenticate(&s, &headers).await?;
    let issue: Issue = parse(&body)?;
    let rules = s.engine.rules();
    // An unknown unit is the engine's to refuse (422); a known one outside the scope is not ours.
    if rules.org.unit(&issue.unit).is_some() && !actor.may_submit(&rules, &issue.unit) {
        return Err(ApiError {
            field: Some("unit".into()),
            ..forbidden(&actor, &format!("report in unit {}", issue.unit))
        });
    }
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| ApiError {
            field: Some("Idempotency-Key".into()),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_header",
                "the idempotency key must be visible ASCII",
            )
        })?),
        None => None,
    };
    let hash = format!("{:x}", Sha256::digest(&body));
    let submitted = s
        .engine
        .submit(issue, &actor.name(), key.map(|k| (k, hash.as_str())))
        .await?;
    let mut response = (
        StatusCode::CREATED,
        Json(json!({"id": submitted.issue.issue.id, "issue": submitted.issue.issue, "state": submitted.issue.state})),
    )
        .into_response();
    if submitted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn issue(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticate(&s, &headers).await?;
    let store = s.engine.store();
    let stored = store
        .issue(&id)
        .await
        .map_err(EngineError::from)?
        .ok_or_else(|| not_found(format!("issue {id}")))?;
    if !actor.may_see(&s.engine.rules(), &stored.issue, &stored.state) {
        return Err(forbidden(&actor, &format!("see issue {id}")));
    }
    let timeline = store.timeline(&id).await.map_err(EngineError::from)?;
    Ok(Json(
        json!({"id": id, "issue": stored.issue, "state": stored.state, "version": stored.version, "timeline": timeline}),
    ))
}

async fn act(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let actor = authenticate(&s, &headers).await?;
    let event: Event = parse(&body)?;
    if event.is_timer() || event == Event::Reported {
        return Err(ApiError {
            field: Some("event".into()),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("`{}` is the daemon's own event", event.name()),
            )
        });
    }
    let current = s
        .engine
        .store()
        .issue(&id)
        .await
        .map_err(EngineError::from)?
        .ok_or_else(|| not_found(format!("issue {id}")))?;
    if !actor.may_act(&s.engine.rules(), &current.issue, &current.state, &event) {
        return Err(ApiError {
            field: Some("event".into()),
            ..forbidden(&actor, &format!("post `{}` to issue {id}", event.name()))
        });
    }
    let (stored, decision) = s.engine.act(&id, event, &actor.name()).await?;
    Ok(Json(
        json!({"id": id, "state": stored.state, "version": stored.version, "trace": decision.trace}),
    ))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn outbox(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticate(&s, &headers).await?;
    if actor.role != Role::Admin {
        return Err(forbidden(&actor, "read the outbox"));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = s
        .engine
        .store()
        .outbox(limit)
        .await
        .map_err(EngineError::from)?;
    Ok(Json(json!({ "messages": rows })))
}

/// Query of `GET /api/v1/issues`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    department: Option<String>,
    /// A unit: issues in its subtree.
    unit: Option<String>,
    tier: Option<String>,
    overdue: Option<bool>,
    from: Option<chrono::DateTime<chrono::FixedOffset>>,
    to: Option<chrono::DateTime<chrono::FixedOffset>>,
    cursor: Option<String>,
    limit: Option<i64>,
}

fn bad_query(field: &str, message: String) -> ApiError {
    ApiError {
        field: Some(field.into()),
        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }
}

/// Lists issues, narrowed to what the caller may see: a reporter's or leader's unit subtree, a
/// department's own issues.
async fn run_list(
    s: &AppState,
    actor: &Actor,
    q: ListQuery,
    open: bool,
) -> Result<Json<Value>, ApiError> {
    let rules = s.engine.rules();
    let org = &rules.org;
    let mut f = IssueFilter {
        state: q.state,
        open,
        department: q.department,
        subtree: q.unit,
        tier: q.tier,
        overdue_at: q.overdue.unwrap_or(false).then(|| s.engine.now()),
        from: q.from.map(|t| t.with_timezone(&chrono::Utc)),
        to: q.to.map(|t| t.with_timezone(&chrono::Utc)),
        after: None,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    if let Some(st) = &f.state
        && ![
            "reported",
            "assigned",
            "acknowledged",
            "in_progress",
            "resolved",
            "closed",
            "closed_at_grid",
        ]
        .contains(&st.as_str())
    {
        return Err(bad_query("state", format!("unknown state `{st}`")));
    }
    if let Some(u) = &f.subtree
        && org.unit(u).is_none()
    {
        return Err(bad_query("unit", format!("unknown unit `{u}`")));
    }
    if let Some(c) = q.cursor {
        let parsed = c
            .split_once(':')
            .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())));
        f.after = Some(parsed.ok_or_else(|| bad_query("cursor", format!("invalid cursor `{c}`")))?);
    }
    match actor.role {
        Role::Admin => {}
        Role::Department => match (&f.department, &actor.scope) {
            (Some(d), Some(mine)) if d != mine => {
                return Err(forbidden(actor, &format!("list the issues of {d}")));
            }
            _ => f.department = actor.scope.clone(),
        },
        Role::Reporter | Role::Leader => {
            let scope = actor.scope.clone().unwrap_or_default();
            match &f.subtree {
                Some(u) => {
                    let inside = match (org.unit(u), org.unit(&scope)) {
                        (Some(u), Some(sc)) => org.in_subtree(u, sc),
                        _ => false,
                    };
                    if !inside {
                        return Err(forbidden(actor, &format!("list the issues of {u}")));
                    }
                }
                None => f.subtree = Some(scope),
            }
        }
    }
    let rows = s.engine.store().list(&f).await.map_err(EngineError::from)?;
    let next = (rows.len() as i64 == f.limit)
        .then(|| rows.last().map(|r| r.cursor.clone()))
        .flatten();
    let issues: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"id": r.issue.issue.id, "issue": r.issue.issue, "state": r.issue.state, "version": r.issue.version}))
        .collect();
    Ok(Json(json!({"issues": issues, "next_cursor": next})))
}

fn query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    match raw {
        None | Some("") => Ok(ListQuery::default()),
        Some(q) => serde_urlencoded::from_str(q).map_err(|e| bad_query("query", e.to_string())),
    }
}

async fn list(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticate(&s, &headers).await?;
    run_list(&s, &actor, query(uri.query())?, false).await
}

/// A department's queue: its open issues.
async fn queue(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticate(&s, &headers).await?;
    if s.engine.rules().org.department(&id).is_none() {
        return Err(not_found(format!("department {id}")));
    }
    let mut q = query(uri.query())?;
    q.department = Some(id);
    run_list(&s, &actor, q, true).await
}

/// A leader's overdue board: the open issues of a subtree with a deadline passed.
async fn overdue(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticate(&s, &headers).await?;
    if s.engine.rules().org.unit(&id).is_none() {
        return Err(not_found(format!("unit {id}")));
    }
    let mut q = query(uri.query())?;
    q.unit = Some(id);
    q.overdue = Some(true);
    run_list(&s, &actor, q, true).await
}
