//! `POST /api/v1/issues`: a report, as JSON or as multipart with photos.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use escalade_rules::Issue;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    Answer, ApiError, AppState, JsonBody, field_error, idempotency_key, internal, is_multipart,
    multipart_error, parse, read_json_part, read_photo, require_json, too_slow, turn,
};
use crate::auth::Actor;
use crate::photos::Received;

/// `POST /api/v1/issues`: the issue as JSON, or `multipart/form-data` with an `issue` part (the
/// same JSON) and `photo` parts. Nothing is stored unless all of it is valid.
pub(crate) async fn submit(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    max_body_bytes: usize,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let (issue, photos, hash) = if is_multipart(&headers) {
        let _turn = turn(&s.turns.uploads, "uploads").await?;
        let limit = s.turns.limits.upload_timeout.0;
        let form = tokio::time::timeout(limit, read_form(&s, &actor, request, max_body_bytes))
            .await
            .map_err(|_| too_slow("upload", limit))??;
        (form.issue, Some(form.photos), form.hash)
    } else {
        require_json(&headers)?;
        let JsonBody(body) = JsonBody::read(&s, request).await?;
        let issue: Issue = parse(&body)?;
        (issue, None, format!("{:x}", Sha256::digest(&body)))
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
        Answer(json!({"id": submitted.issue.issue.id, "issue": submitted.issue.issue, "state": submitted.issue.state})),
    )
        .into_response();
    if submitted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `POST /api/v1/issues` with a body limit large enough for an issue and its photos; the JSON,
/// alone or as the `issue` part, is still held to `max_body_bytes` by `submit`.
pub(crate) fn submit_route(state: &AppState, max_body_bytes: usize) -> MethodRouter<Arc<AppState>> {
    let l = state.photo_limits;
    // Room for the part headers and boundaries too.
    let whole = max_body_bytes
        .saturating_add(l.max_photos.saturating_mul(l.max_photo_bytes))
        .saturating_add(64 << 10);
    post(
        move |s: State<Arc<AppState>>, actor: Actor, request: Request| {
            submit(s, actor, max_body_bytes, request)
        },
    )
    .layer(DefaultBodyLimit::max(whole))
}

/// A multipart submission read and checked: its photos received (in the photo store's uploads,
/// not in it), nothing stored yet.
pub(crate) struct Form {
    issue: Issue,
    /// The photos, in order, each a supported image.
    photos: Vec<Received>,
    /// The request's hash for idempotency: of the issue part and the photos' hashes, not of
    /// the boundaries (which a client may choose anew on a retry).
    hash: String,
}

/// Reads the form: the `issue` part first (parsed and its unit's scope checked), then every
/// `photo`, each checked for size and, by its bytes, for type. The first error ends the reading.
pub(crate) async fn read_form(
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
    let mut photos: Vec<Received> = Vec::new();
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
                let received = read_photo(&mut field, n, limits, &s.photos, "an issue").await?;
                hasher.update(received.photo.hash.as_bytes());
                photos.push(received);
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

/// A JSON submission may name photos already stored (by their SHA-256), up to the limit.
pub(crate) async fn check_listed_photos(s: &AppState, photos: &[String]) -> Result<(), ApiError> {
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
