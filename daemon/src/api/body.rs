//! Reading what a request sends: JSON bodies, headers, multipart parts and photos.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};

use std::sync::Arc;

use axum::extract::FromRequest;

use super::{ApiError, AppState, bad_query, body_error, field_error, multipart_error};
use crate::photos::{PhotoLimits, PhotoStore, Received, UploadError};

/// Parses a JSON body, naming line and column of a syntax error and the field of a data error.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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

/// The longest idempotency key taken, in bytes.
pub(crate) const MAX_IDEMPOTENCY_KEY: usize = 200;

/// An `Idempotency-Key`: 1 to 200 visible ASCII characters.
pub(crate) fn idempotency_key(v: &HeaderValue) -> Result<&str, ApiError> {
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
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
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

/// The request with its body cut off after `limit` bytes (a longer one is refused 413).
pub(crate) fn limit_body(request: Request, limit: usize) -> Request {
    request.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, limit)))
}

pub(crate) fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// A part's bytes, or `None` once they pass `limit` (the rest is not read).
pub(crate) async fn read_field(
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

/// The JSON part `name` of a multipart request, the only one of its name, at most `limit` bytes.
pub(crate) async fn read_json_part(
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

/// Photo `n` of a multipart request, written to the photo store's uploads as it arrives (never
/// held whole in memory), and refused as soon as it is one too many or too large, or once
/// received, if it is not an image of a supported type matching its declared one.
pub(crate) async fn read_photo(
    field: &mut axum::extract::multipart::Field<'_>,
    n: usize,
    limits: PhotoLimits,
    store: &PhotoStore,
    with: &str,
) -> Result<Received, ApiError> {
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
    let io = |e: std::io::Error| super::internal(format!("receiving {what}: {e}"));
    let mut upload = store.receive().map_err(io)?;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if upload.size() + chunk.len() as u64 > limits.max_photo_bytes as u64 {
            return Err(field_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "photo_too_large",
                "photo",
                format!("{what} is larger than {} bytes", limits.max_photo_bytes),
            ));
        }
        upload = tokio::task::spawn_blocking(move || upload.write(&chunk).map(|()| upload))
            .await
            .map_err(|e| super::internal(format!("receiving {what}: {e}")))?
            .map_err(io)?;
    }
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
    let received = tokio::task::spawn_blocking(move || upload.finish())
        .await
        .map_err(|e| super::internal(format!("receiving {what}: {e}")))?;
    let received = match received {
        Ok(r) => r,
        Err(UploadError::Unsupported(found)) => {
            return Err(unsupported(format!(
                "{what} is {declared_as} but its bytes are {found}: send a JPEG, PNG, WebP or HEIF image"
            )));
        }
        Err(e @ UploadError::NotImage { .. }) => {
            return Err(unsupported(format!("{what} {e}")));
        }
        Err(UploadError::Io(e)) => return Err(io(e)),
    };
    let detected = received.photo.content_type;
    if !crate::photos::declared_agrees(declared.as_deref(), detected) {
        return Err(unsupported(format!(
            "{what} is {declared_as} but its bytes are {detected}: the part's Content-Type must match the image"
        )));
    }
    Ok(received)
}

/// A query string as `T`; none at all is `T::default()`.
pub(crate) fn query<T: serde::de::DeserializeOwned + Default>(
    raw: Option<&str>,
) -> Result<T, ApiError> {
    match raw {
        None | Some("") => Ok(T::default()),
        Some(q) => {
            // `cursor=` is no first page: a cursor is the `next_cursor` a page gave, never empty.
            if serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .is_ok_and(|p| p.iter().any(|(k, v)| k == "cursor" && v.is_empty()))
            {
                return Err(bad_query(
                    "cursor",
                    "empty cursor: leave `cursor` out for the first page, then pass the `next_cursor` of the page before".into(),
                ));
            }
            serde_urlencoded::from_str(q).map_err(|e| bad_query("query", e.to_string()))
        }
    }
}

/// A page's size: 100 unless asked, at most 1,000.
pub(crate) fn page_limit(asked: Option<i64>) -> i64 {
    asked.unwrap_or(100).clamp(1, 1000)
}

/// How long a request waits for its turn to have its body read before it is answered 503.
const TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A turn from `turns`, or 503 `busy` after waiting a second.
pub(crate) async fn turn<'a>(
    turns: &'a tokio::sync::Semaphore,
    what: &str,
) -> Result<tokio::sync::SemaphorePermit<'a>, ApiError> {
    match tokio::time::timeout(TURN_WAIT, turns.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        _ => {
            tracing::warn!(
                what,
                "a request waited a second for its turn and was refused"
            );
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("too many {what} are being read at once: try again shortly"),
            ))
        }
    }
}

/// 408: the client did not send its body in time.
pub(crate) fn too_slow(what: &str, limit: std::time::Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!("the {what} did not arrive within {}s", limit.as_secs_f64()),
    )
}

/// A JSON body, read in its turn (at most `http.max_body_reads` at once), within
/// `http.body_timeout`, and at most `max_body_bytes` long. Handlers take it after the caller,
/// so nothing is read for a request without a valid token.
pub(crate) struct JsonBody(pub axum::body::Bytes);

impl JsonBody {
    pub(crate) async fn read(s: &AppState, request: Request) -> Result<JsonBody, ApiError> {
        let _turn = turn(&s.turns.bodies, "request bodies").await?;
        let limit = s.turns.limits.body_timeout.0;
        let read =
            axum::body::Bytes::from_request(limit_body(request, s.turns.max_body_bytes), &());
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(b)) => Ok(JsonBody(b)),
            Ok(Err(e)) => Err(body_error(e)),
            Err(_) => Err(too_slow("request body", limit)),
        }
    }
}

impl axum::extract::FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, s: &Arc<AppState>) -> Result<JsonBody, ApiError> {
        JsonBody::read(s, request).await
    }
}
