//! Error answers: `{"error": {"code", "message", "field", ...}}`, and how engine errors read.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use escalade_rules::Refusal;
use serde_json::{Value, json};

use crate::auth::Actor;
use crate::engine::EngineError;
use crate::store::StoreError;

/// An error answer: `{"error": {"code", "message", "field", ...}}`.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) field: Option<String>,
    pub(crate) extra: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
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
        let mut body = json!({"code": self.code, "message": self.message, "field": self.field, "request_id": super::request_id::current()});
        if let (Some(Value::Object(extra)), Some(obj)) = (self.extra, body.as_object_mut()) {
            obj.extend(extra);
        }
        (self.status, super::Answer(json!({ "error": body }))).into_response()
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

pub(crate) fn forbidden(actor: &Actor, what: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", actor.may_not(what))
}

pub(crate) fn not_found(what: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
}

pub(crate) fn bad_query(field: &str, message: String) -> ApiError {
    ApiError {
        field: Some(field.into()),
        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }
}

pub(crate) fn field_error(
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

pub(crate) fn internal(message: String) -> ApiError {
    tracing::error!(error = %message, "request failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// A body that could not be read: over the size limit, or cut off.
pub(crate) fn body_error(e: BytesRejection) -> ApiError {
    let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(e.status(), code, e.body_text())
}

pub(crate) fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(e.status(), code, e.body_text())
}
