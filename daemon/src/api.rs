//! The HTTP API under `/api/v1` (axum, JSON). Errors are JSON with a stable code, a message and
//! the field at fault; nothing is answered before the store has committed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use escalade_rules::{Issue, Refusal};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::{Actor, Role};
use crate::engine::{Engine, EngineError};
use crate::photos::{PhotoLimits, PhotoStore};
use crate::store::{IssueFilter, StoreError};

mod ack;
mod events;

use events::events_route;
mod meetings;
mod outbox;
mod rules;
mod scorecards;

/// What the handlers share.
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Set while the scheduler runs; `/readyz` reports it.
    pub scheduler_running: Arc<AtomicBool>,
    /// The photos attached to issues, and how many and how large they may be.
    pub photos: Arc<PhotoStore>,
    pub photo_limits: PhotoLimits,
    /// The live rules' steward: reloads, their status, the versions.
    pub rules: Arc<crate::reload::Rules>,
    /// The delivery workers, if they run: `/readyz` shows each channel's rows and names the
    /// channels with rows waiting but no configuration.
    pub delivery: Option<Arc<crate::notify::Delivery>>,
    /// Acknowledgement links, when configured: `/ack/{token}` checks them; without, it
    /// answers 404.
    pub links: Option<Arc<crate::links::Links>>,
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
            EngineError::Refused(Refusal::Overloaded { hook, message }) => {
                tracing::error!(alarm = "hook_overloaded", hook, error = %message, "a request's decision was stopped by the wall clock");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
            }
            EngineError::Refused(Refusal::Invalid { field, message }) => ApiError {
                field: Some(field.into()),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            },
            EngineError::Refused(Refusal::Unchanged { field, message }) => ApiError {
                field: Some(field.into()),
                ..ApiError::new(StatusCode::CONFLICT, "unchanged", message)
            },
            EngineError::NotFound(id) => not_found(format!("issue {id}")),
            EngineError::Forbidden { message, field } => ApiError {
                field: Some(field.into()),
                ..ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            },
            EngineError::MeetingNotFound(id) => not_found(format!("meeting {id}")),
            EngineError::LinkSpent(spent) => {
                ApiError::new(StatusCode::GONE, spent.code(), spent.to_string())
            }
            EngineError::MeetingHeld { id, outcome } => ApiError {
                field: Some("outcome".into()),
                extra: Some(json!({ "recorded": outcome })),
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    "meeting_held",
                    format!("meeting {id} was already held with another outcome"),
                )
            },
            EngineError::MeetingNotYet { id, at } => ApiError {
                extra: Some(json!({ "at": at })),
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    "meeting_not_yet",
                    format!("meeting {id} sits at {at}; its outcome can be recorded from then on"),
                )
            },
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
    let row =
        found.ok_or_else(|| unauthorized("invalid_token", "the token is unknown or revoked"))?;
    let role = Role::parse(&row.role)
        .ok_or_else(|| unauthorized("invalid_token", "the token's role is unknown"))?;
    Ok(Actor {
        token: row.id,
        role,
        scope: row.scope,
        person: row.person,
        integration: row.integration,
    })
}

fn forbidden(actor: &Actor, what: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", actor.may_not(what))
}

/// Parses a JSON body, naming line and column of a syntax error and the field of a data error.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let (e, path) = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        // Nothing but white space may follow the value.
        Ok(v) => match de.end() {
            Ok(()) => return Ok(v),
            Err(e) => (e, None),
        },
        Err(e) => {
            let path = e.path().to_string();
            (e.into_inner(), Some(path).filter(|p| p != "."))
        }
    };
    use serde_json::error::Category;
    // Valid JSON with a wrong field is 422 naming it (`priority`, `location.lat`), whatever
    // kind of error the parser reports it as (an enum given a number reads as a syntax error).
    let valid_json = || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    Err(match e.classify() {
        Category::Data | Category::Syntax if path.is_some() || valid_json() => ApiError {
            field: path,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
        },
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        ),
    })
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/issues",
            submit_route(&state, max_body_bytes).get(list),
        )
        .route("/api/v1/departments/{id}/queue", get(queue))
        .route("/api/v1/units/{id}/overdue", get(overdue))
        .route("/api/v1/issues/{id}", get(issue))
        .route(
            "/api/v1/issues/{id}/events",
            events_route(&state, max_body_bytes),
        )
        .route("/api/v1/issues/{id}/explain", get(rules::explain))
        .route("/api/v1/issues/{id}/photos/{hash}", get(photo))
        .route("/api/v1/scorecards", get(scorecards::get))
        .route("/api/v1/outbox", get(outbox::list))
        .route("/api/v1/outbox/{id}/retry", post(outbox::retry))
        .route("/api/v1/rules", get(rules::status))
        .route("/api/v1/rules/reload", post(rules::reload))
        .route("/api/v1/rules/versions", get(rules::versions))
        .route("/api/v1/rules/replay", post(rules::replay))
        .route(
            "/api/v1/rules/shadow",
            get(rules::shadow)
                .put(rules::start_shadow)
                .delete(rules::stop_shadow),
        )
        .route("/api/v1/meetings", get(meetings::list))
        .route("/api/v1/meetings/{id}", get(meetings::get))
        .route("/api/v1/meetings/{id}/outcome", post(meetings::outcome))
        .route("/ack/{token}", get(ack::show).post(ack::acknowledge))
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

/// The OpenAPI document; needs no token (it describes the API and reveals no data).
async fn openapi() -> Json<&'static Value> {
    Json(crate::openapi::document())
}

async fn readyz(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let store = s.engine.store().ping().await.is_ok();
    let scheduler = s.scheduler_running.load(Ordering::Relaxed);
    let mut body =
        json!({"store": store, "rules": &*s.engine.rules().version, "scheduler": scheduler});
    if let Some(d) = &s.delivery {
        // Which channels are configured, and which have rows waiting without one: those stay
        // queued, never dropped. The API itself is ready either way.
        body["delivery"] = d.readiness().await.unwrap_or(Value::Null);
    }
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

/// Adds to a decision's effects, as stored, who was told (from its messages), what changed from
/// the state before to its next state, and the sentences
/// a person reads (`lines`), times in the rules' default zone. Effects that no longer read as
/// `Effects` are served as stored.
fn readable(
    rules: &escalade_rules::RuleSet,
    effects: &mut Value,
    messages: Option<&Vec<Value>>,
    before: &escalade_rules::IssueState,
    next: Option<&escalade_rules::IssueState>,
) {
    let Ok(mut e) = serde_json::from_value::<escalade_rules::effects::Effects>(effects.clone())
    else {
        return;
    };
    if let Some(m) = messages {
        e.told_from(m);
    }
    if let Some(n) = next {
        e.compare(before, n);
    }
    let lines = rules.effect_lines(&e);
    *effects = serde_json::to_value(&e).expect("plain data serialises");
    effects["lines"] = json!(lines);
}

/// The longest idempotency key taken, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// An `Idempotency-Key`: 1 to 200 visible ASCII characters.
fn idempotency_key(v: &HeaderValue) -> Result<&str, ApiError> {
    let bad = |message: String| ApiError {
        field: Some("Idempotency-Key".into()),
        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", message)
    };
    let k = v
        .to_str()
        .map_err(|_| bad("the idempotency key must be visible ASCII".into()))?;
    if k.trim().is_empty() {
        return Err(bad("the idempotency key is empty".into()));
    }
    if k.len() > MAX_IDEMPOTENCY_KEY {
        return Err(bad(format!(
            "the idempotency key has {} characters, at most {MAX_IDEMPOTENCY_KEY}",
            k.len()
        )));
    }
    Ok(k)
}

/// A JSON body must say it is JSON: `application/json`, or a `+json` type.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError {
        field: Some("Content-Type".into()),
        ..ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            if ct.is_empty() {
                "the body is sent without a Content-Type: send JSON as application/json".to_string()
            } else {
                format!("the body is sent as `{ct}`: send JSON as application/json")
            },
        )
    })
}

/// `POST /api/v1/issues`: the issue as JSON, or `multipart/form-data` with an `issue` part (the
/// same JSON) and `photo` parts. Nothing is stored unless all of it is valid.
async fn submit(
    State(s): State<Arc<AppState>>,
    max_body_bytes: usize,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let (actor, issue, photos, hash) = if is_multipart(&headers) {
        let actor = authenticate(&s, &headers).await?;
        let form = read_form(&s, &actor, request, max_body_bytes).await?;
        (actor, form.issue, Some(form.photos), form.hash)
    } else {
        let body = Bytes::from_request(limit_body(request, max_body_bytes), &())
            .await
            .map_err(body_error)?;
        let actor = authenticate(&s, &headers).await?;
        require_json(&headers)?;
        let issue: Issue = parse(&body)?;
        (actor, issue, None, format!("{:x}", Sha256::digest(&body)))
    };
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(idempotency_key(v)?),
        None => None,
    };
    if photos.is_none() {
        check_listed_photos(&s, &issue.photos).await?;
    }
    let submitted = s
        .engine
        .submit_with_photos(
            issue,
            &actor,
            key.map(|k| (k, hash.as_str())),
            photos.map(|p| (&*s.photos, p)),
        )
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
    let stored = s.engine.issue_for(&actor, &id).await?;
    let mut timeline = store.timeline(&id).await.map_err(EngineError::from)?;
    let rules = s.engine.rules();
    // Each decision's effects completed from the state before it (the previous decision's)
    // and its own next state and messages.
    let mut before = escalade_rules::IssueState::default();
    for e in &mut timeline {
        let next = e.next.take();
        if let Some(v) = &mut e.effects {
            let messages = e.messages.take();
            readable(
                &rules,
                v,
                messages.as_ref().and_then(Value::as_array),
                &before,
                next.as_ref(),
            );
        }
        if let Some(n) = next {
            before = n;
        }
    }
    Ok(Json(
        json!({"id": id, "issue": stored.issue, "state": stored.state, "version": stored.version, "timeline": timeline}),
    ))
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
    /// `reported` (report order) or `deadline` (the nearest deadline first); a department's
    /// queue defaults to `deadline`, other lists to `reported`.
    order: Option<String>,
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
    queue: bool,
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
        limit: page_limit(q.limit),
        by_deadline: match q.order.as_deref() {
            None => queue,
            Some("deadline") => true,
            Some("reported") => false,
            Some(o) => {
                return Err(bad_query(
                    "order",
                    format!("unknown order `{o}`: deadline or reported"),
                ));
            }
        },
    };
    if let Some(st) = &f.state
        && escalade_rules::State::parse(st).is_none()
    {
        return Err(bad_query("state", format!("unknown state `{st}`")));
    }
    if let Some(u) = &f.subtree
        && org.unit(u).is_none()
    {
        return Err(bad_query("unit", format!("unknown unit `{u}`")));
    }
    if let Some(d) = &f.department
        && org.department(d).is_none()
    {
        return Err(bad_query("department", format!("unknown department `{d}`")));
    }
    if let Some(t) = &f.tier
        && org.tier(t).is_none()
    {
        return Err(bad_query("tier", format!("unknown tier `{t}`")));
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

/// A page's size: 100 unless asked, at most 1,000.
fn page_limit(asked: Option<i64>) -> i64 {
    asked.unwrap_or(100).clamp(1, 1000)
}

/// A query string as `T`; none at all is `T::default()`.
fn query<T: serde::de::DeserializeOwned + Default>(raw: Option<&str>) -> Result<T, ApiError> {
    match raw {
        None | Some("") => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(q).map_err(|e| bad_query("query", e.to_string())),
    }
}

async fn list(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticate(&s, &headers).await?;
    run_list(&s, &actor, query(uri.query())?, false, false).await
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
    let mut q: ListQuery = query(uri.query())?;
    q.department = Some(id);
    run_list(&s, &actor, q, true, true).await
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
    let mut q: ListQuery = query(uri.query())?;
    q.unit = Some(id);
    q.overdue = Some(true);
    run_list(&s, &actor, q, true, false).await
}

// Photos: multipart submissions and reading a photo back.

/// `POST /api/v1/issues` with a body limit large enough for an issue and its photos; the JSON,
/// alone or as the `issue` part, is still held to `max_body_bytes` by `submit`.
fn submit_route(state: &AppState, max_body_bytes: usize) -> MethodRouter<Arc<AppState>> {
    let l = state.photo_limits;
    // Room for the part headers and boundaries too.
    let whole = max_body_bytes
        .saturating_add(l.max_photos.saturating_mul(l.max_photo_bytes))
        .saturating_add(64 << 10);
    post(move |s: State<Arc<AppState>>, request: Request| submit(s, max_body_bytes, request))
        .layer(DefaultBodyLimit::max(whole))
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// The request with its body cut off after `limit` bytes (a longer one is refused 413).
fn limit_body(request: Request, limit: usize) -> Request {
    request.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, limit)))
}

fn field_error(
    status: StatusCode,
    code: &'static str,
    field: &str,
    message: impl Into<String>,
) -> ApiError {
    ApiError {
        field: Some(field.into()),
        ..ApiError::new(status, code, message)
    }
}

fn internal(message: String) -> ApiError {
    tracing::error!(error = %message, "request failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// A multipart submission read and checked in memory: nothing is stored yet.
struct Form {
    issue: Issue,
    /// The photos' bytes, in order, each a supported image.
    photos: Vec<Vec<u8>>,
    /// The request's hash for idempotency: of the issue part and the photos, not of the
    /// boundaries (which a client may choose anew on a retry).
    hash: String,
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(e.status(), code, e.body_text())
}

/// Reads the form: the `issue` part first (parsed and its unit's scope checked), then every
/// `photo`, each checked for size and, by its bytes, for type. The first error ends the reading.
async fn read_form(
    s: &AppState,
    actor: &Actor,
    request: Request,
    max_body_bytes: usize,
) -> Result<Form, ApiError> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    let limits = s.photo_limits;
    let mut issue: Option<Issue> = None;
    let mut photos: Vec<Vec<u8>> = Vec::new();
    let mut hasher = Sha256::new();
    hasher.update(b"multipart");
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "issue" => {
                let bytes =
                    read_json_part(&mut field, issue.is_some(), "issue", max_body_bytes).await?;
                let parsed: Issue = parse(&bytes)?;
                // Refused before any photo is read; the engine asks again when it decides.
                s.engine.may_submit(actor, &parsed)?;
                if !parsed.photos.is_empty() {
                    return Err(field_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid",
                        "photos",
                        "a multipart submission sends its photos as `photo` parts, not in `photos`",
                    ));
                }
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(&bytes);
                issue = Some(parsed);
            }
            "photo" => {
                if issue.is_none() {
                    return Err(field_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid",
                        "issue",
                        "the `issue` part must come first, before any `photo` part",
                    ));
                }
                let n = photos.len() + 1;
                let bytes = read_photo(&mut field, n, limits, "an issue").await?;
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(&bytes);
                photos.push(bytes);
            }
            "" => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "a part without a name: send one `issue` part and any `photo` parts",
                ));
            }
            other => {
                return Err(field_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    other,
                    format!("unknown part `{other}`: send one `issue` part and any `photo` parts"),
                ));
            }
        }
    }
    let issue = issue.ok_or_else(|| {
        field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "issue",
            "the `issue` part (the issue as JSON) is missing",
        )
    })?;
    Ok(Form {
        issue,
        photos,
        hash: format!("{:x}", hasher.finalize()),
    })
}

/// Photo `n` of a multipart request, read as it arrives and refused as soon as it is one too
/// many, too large, or not an image of a supported type matching its declared one.
async fn read_photo(
    field: &mut axum::extract::multipart::Field<'_>,
    n: usize,
    limits: PhotoLimits,
    with: &str,
) -> Result<Vec<u8>, ApiError> {
    if n > limits.max_photos {
        return Err(field_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_photos",
            "photo",
            format!("at most {} photos may come with {with}", limits.max_photos),
        ));
    }
    let what = match field.file_name() {
        Some(f) => format!("photo {n} (`{f}`)"),
        None => format!("photo {n}"),
    };
    let declared = field.content_type().map(str::to_string);
    let bytes = read_field(field, limits.max_photo_bytes)
        .await?
        .ok_or_else(|| {
            field_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "photo_too_large",
                "photo",
                format!("{what} is larger than {} bytes", limits.max_photo_bytes),
            )
        })?;
    let declared_as = declared
        .as_deref()
        .map(|d| format!("declared {d}"))
        .unwrap_or_else(|| "sent without a type".into());
    let unsupported = |message: String| {
        field_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_photo",
            "photo",
            message,
        )
    };
    let Some(detected) = crate::photos::detect(&bytes) else {
        return Err(unsupported(format!(
            "{what} is {declared_as} but its bytes are {}: send a JPEG, PNG, WebP or HEIF image",
            crate::photos::describe(&bytes)
        )));
    };
    if !crate::photos::declared_agrees(declared.as_deref(), detected) {
        return Err(unsupported(format!(
            "{what} is {declared_as} but its bytes are {detected}: the part's Content-Type must match the image"
        )));
    }
    if let Err(e) = crate::photos::check_header(&bytes, detected) {
        return Err(unsupported(format!(
            "{what} begins like {detected} but is not one: {e}"
        )));
    }
    Ok(bytes)
}

/// The JSON part `name` of a multipart request, the only one of its name, at most `limit` bytes.
async fn read_json_part(
    field: &mut axum::extract::multipart::Field<'_>,
    seen: bool,
    name: &'static str,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    if seen {
        return Err(field_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            name,
            format!("more than one `{name}` part"),
        ));
    }
    read_field(field, limit).await?.ok_or_else(|| {
        field_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            name,
            format!("the `{name}` part is larger than {limit} bytes"),
        )
    })
}

/// A part's bytes, or `None` once they pass `limit` (the rest is not read).
async fn read_field(
    field: &mut axum::extract::multipart::Field<'_>,
    limit: usize,
) -> Result<Option<Vec<u8>>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > limit {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

/// A JSON submission may name photos already stored (by their SHA-256), up to the limit.
async fn check_listed_photos(s: &AppState, photos: &[String]) -> Result<(), ApiError> {
    if photos.is_empty() {
        return Ok(());
    }
    let invalid = |message: String| {
        field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "photos",
            message,
        )
    };
    let max = s.photo_limits.max_photos;
    if photos.len() > max {
        return Err(invalid(format!(
            "at most {max} photos may come with an issue"
        )));
    }
    for (i, p) in photos.iter().enumerate() {
        if !crate::photos::is_hash(p) {
            return Err(invalid(format!(
                "`{p}` is not a photo name (the SHA-256 of its bytes, 64 lowercase hex digits)"
            )));
        }
        if photos[..i].contains(p) {
            return Err(invalid(format!("photo {p} is listed twice")));
        }
    }
    let store = s.photos.clone();
    let listed = photos.to_vec();
    let missing =
        tokio::task::spawn_blocking(move || listed.into_iter().find(|p| !store.contains(p)))
            .await
            .map_err(|e| internal(format!("looking up photos: {e}")))?;
    match missing {
        Some(p) => Err(invalid(format!(
            "no photo {p} is stored: send photos with a multipart submission"
        ))),
        None => Ok(()),
    }
}

/// `GET /api/v1/issues/{id}/photos/{hash}`: one of the issue's photos, to whoever may see it.
async fn photo(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, hash)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = authenticate(&s, &headers).await?;
    let stored = s.engine.issue_for(&actor, &id).await?;
    if !stored.issue.photos.contains(&hash) && !stored.state.after_photos.contains(&hash) {
        return Err(not_found(format!("photo {hash} on issue {id}")));
    }
    let store = s.photos.clone();
    let name = hash.clone();
    let found = tokio::task::spawn_blocking(move || store.get(&name))
        .await
        .map_err(|e| internal(format!("reading photo {hash}: {e}")))?
        .map_err(|e| internal(format!("reading photo {hash}: {e}")))?;
    let Some((bytes, content_type)) = found else {
        return Err(internal(format!(
            "photo {hash} of issue {id} is missing from the photo store"
        )));
    };
    Ok((
        [
            ("content-type", content_type),
            // The name is the content: it never changes.
            ("cache-control", "private, max-age=31536000, immutable"),
            ("x-content-type-options", "nosniff"),
        ],
        bytes,
    )
        .into_response())
}
