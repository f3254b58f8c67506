//! The HTTP API under `/api/v1` (axum, JSON). Errors are JSON with a stable code, a message and
//! the field at fault; nothing is answered before the store has committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::photos::{PhotoLimits, PhotoStore};

mod ack;
mod actor;
mod answer;
mod body;
mod error;
mod events;
mod issues;
mod meetings;
mod outbox;
mod request_id;
mod rules;
mod scorecards;
mod server;
mod submit;

pub(crate) use answer::Answer;
pub(crate) use body::{
    JsonBody, idempotency_key, is_multipart, page_limit, parse, query, read_json_part, read_photo,
    require_json, too_slow, turn,
};
pub use error::ApiError;
pub(crate) use error::{
    bad_query, body_error, field_error, forbidden, internal, multipart_error, not_found,
};
use events::events_route;
use issues::{issue, list, overdue, photo, queue};
pub(crate) use issues::{photo as serve_photo, readable};
pub use server::{HttpLimits, Turns, serve};
pub(crate) use submit::check_listed_photos;
use submit::submit_route;

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
    /// The server's limits, and the turns of reading bodies and uploads.
    pub turns: Arc<Turns>,
    /// The web console's configuration and its count of failed sign-ins.
    pub console: Arc<crate::console::Console>,
}

pub fn router(state: Arc<AppState>) -> Router {
    crate::metrics::install();
    let max_body_bytes = state.turns.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
        .merge(crate::console::router(&state))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(request_id::tag))
        .with_state(state)
}

/// The OpenAPI document; needs no token (it describes the API and reveals no data).
async fn openapi() -> Json<&'static Value> {
    Json(crate::openapi::document())
}

/// `GET /metrics`: Prometheus metrics in the text format; needs no token (it names no issue or
/// person, only counts), like `/healthz`. Keep it off the public network (the unit listens on
/// 127.0.0.1).
async fn metrics(State(s): State<Arc<AppState>>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let text = crate::metrics::render(&s.engine)
        .await
        .map_err(crate::engine::EngineError::from)?;
    Ok((
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

async fn readyz(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let store = s.engine.store().ping().await.is_ok();
    let scheduler = s.scheduler_running.load(Ordering::Relaxed);
    let mut body =
        json!({"store": store, "rules": &*s.engine.rules().version, "scheduler": scheduler});
    // Among replicas on PostgreSQL: which one this is, whether it leads (runs the scheduled
    // jobs), and whether its lease is being kept (a replica whose store calls fail is not).
    let st = s.engine.store();
    body["backend"] = json!(st.backend());
    if let Some(replica) = st.replica() {
        let role = s.engine.leadership();
        body["replica"] = json!({
            "name": replica,
            "role": match role {
                Some(l) if l.leader => "leader",
                Some(_) => "follower",
                None => "starting",
            },
            "lease_healthy": role.is_some_and(|l| l.healthy),
            "lease_checked_at": role.map(|l| l.checked_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        });
    }
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
