//! Who is calling: the bearer token, checked before any body is read.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};

use super::{ApiError, AppState};
use crate::auth::Actor;
use crate::engine::EngineError;

/// The caller, from `Authorization: Bearer TOKEN`: 401 when the token is missing, unknown,
/// revoked or expired.
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
    crate::auth::authenticate(s.engine.store(), token.trim(), s.engine.now())
        .await
        .map_err(EngineError::from)?
        .map_err(|r| unauthorized(r.code, &r.message))
}

/// Handlers take the caller as an argument: it is extracted from the request's head, so a
/// request without a valid token is answered 401 before a byte of its body is read.
impl axum::extract::FromRequestParts<Arc<AppState>> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Arc<AppState>,
    ) -> Result<Actor, ApiError> {
        authenticate(s, &parts.headers).await
    }
}
