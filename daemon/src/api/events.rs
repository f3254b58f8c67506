//! `POST /api/v1/issues/{id}/events`: a person's action on an issue, as JSON; or a resolution
//! with photos of the fixed site, as `multipart/form-data` with an `event` part (the `resolved`
//! event as JSON) and `photo` parts, checked as a report's photos are.

use std::sync::Arc;

use crate::auth::Actor;
use crate::photos::Received;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};
use escalade_rules::Event;
use serde_json::json;

use super::{
    Answer, ApiError, AppState, JsonBody, check_listed_photos, field_error, is_multipart,
    multipart_error, parse, read_json_part, read_photo, require_json, too_slow, turn,
};

/// The route, with a body limit large enough for a resolution and its photos; the JSON, alone or
/// as the `event` part, is still held to `max_body_bytes`.
pub(super) fn events_route(state: &AppState, max_body_bytes: usize) -> MethodRouter<Arc<AppState>> {
    let l = state.photo_limits;
    let whole = max_body_bytes
        .saturating_add(l.max_photos.saturating_mul(l.max_photo_bytes))
        .saturating_add(64 << 10);
    post(
        move |s: State<Arc<AppState>>, actor: Actor, id: Path<String>, request: Request| {
            act(s, actor, id, max_body_bytes, request)
        },
    )
    .layer(DefaultBodyLimit::max(whole))
}

async fn act(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
    max_body_bytes: usize,
    request: Request,
) -> Result<Answer, ApiError> {
    let headers = request.headers().clone();
    let (stored, decision) = if is_multipart(&headers) {
        let _turn = turn(&s.turns.uploads, "uploads").await?;
        let limit = s.turns.limits.upload_timeout.0;
        let (note, photos) =
            tokio::time::timeout(limit, read_resolution(&s, request, max_body_bytes))
                .await
                .map_err(|_| too_slow("upload", limit))??;
        s.engine
            .resolve_with_photos(&id, note, &actor, &s.photos, photos)
            .await?
    } else {
        require_json(&headers)?;
        let JsonBody(body) = JsonBody::read(&s, request).await?;
        let event: Event = parse(&body).map_err(|e| name_the_field(e, &body))?;
        refuse_unknown_fields(&event, &body)?;
        refuse_unposted(&event)?;
        if let Event::Resolved { photos, .. } = &event {
            check_listed_photos(&s, photos).await?;
        }
        s.engine.act(&id, event, &actor).await?
    };
    Ok(Answer(
        json!({"id": id, "state": stored.state, "version": stored.version, "trace": decision.trace}),
    ))
}

/// An event's fields are read from inside its tag, where the error loses its path: the field
/// is the first name in backquotes in the message that is one of the body's keys or a missing
/// field (`unknown field `urgent``, `missing field `text``, `` `rating` 3.5 is not...``).
fn name_the_field(mut e: ApiError, body: &[u8]) -> ApiError {
    if e.field.is_some() || e.status != StatusCode::UNPROCESSABLE_ENTITY {
        return e;
    }
    let keys = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .unwrap_or_default();
    let missing = e.message.starts_with("missing field");
    e.field = e
        .message
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|name| missing || keys.contains_key(*name))
        .map(str::to_string);
    e
}

/// An event without fields (`acknowledged`, `confirmed`) reads from its tag alone, and serde
/// lets any other key through for such a one; the document allows none (`additionalProperties:
/// false`): 422 naming the first. An event that lets through a key no event has is such a one.
fn refuse_unknown_fields(event: &Event, body: &[u8]) -> Result<(), ApiError> {
    let probe = json!({"event": event.name(), "\u{1}": null});
    if serde_json::from_value::<Event>(probe).is_err() {
        return Ok(());
    }
    let keys = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .unwrap_or_default();
    match keys.keys().find(|k| *k != "event") {
        Some(k) => Err(field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            k,
            format!("unknown field `{k}`: `{}` has no fields", event.name()),
        )),
        None => Ok(()),
    }
}

/// Events nobody posts here: a meeting's outcome (recorded on the meeting) and the daemon's own.
fn refuse_unposted(event: &Event) -> Result<(), ApiError> {
    let message = match event {
        Event::MeetingOutcome { meeting, .. } => format!(
            "a meeting's outcome is recorded on the meeting (POST /api/v1/meetings/ID/outcome), for every issue on its agenda; `{meeting}` is not recorded issue by issue"
        ),
        e if e.is_system() => format!("`{}` is the daemon's own event", e.name()),
        _ => return Ok(()),
    };
    Err(field_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "event",
        message,
    ))
}

/// The `event` part (a `resolved` event) and the `photo` parts of a multipart resolution.
async fn read_resolution(
    s: &AppState,
    request: Request,
    max_body_bytes: usize,
) -> Result<(String, Vec<Received>), ApiError> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    let mut note: Option<String> = None;
    let mut photos: Vec<Received> = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "event" => {
                let bytes =
                    read_json_part(&mut field, note.is_some(), "event", max_body_bytes).await?;
                match parse::<Event>(&bytes)? {
                    Event::Resolved {
                        note: n,
                        photos: listed,
                    } if listed.is_empty() => note = Some(n),
                    Event::Resolved { .. } => {
                        return Err(field_error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "invalid",
                            "photos",
                            "a multipart resolution sends its photos as `photo` parts, not in `photos`",
                        ));
                    }
                    other => {
                        return Err(field_error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "invalid",
                            "event",
                            format!(
                                "only a resolution carries photos; `{}` is sent as JSON",
                                other.name()
                            ),
                        ));
                    }
                }
            }
            "photo" => {
                if note.is_none() {
                    return Err(field_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid",
                        "event",
                        "the `event` part must come first, before any `photo` part",
                    ));
                }
                let n = photos.len() + 1;
                photos.push(
                    read_photo(&mut field, n, s.photo_limits, &s.photos, "a resolution").await?,
                );
            }
            other => {
                return Err(field_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    if other.is_empty() { "event" } else { other },
                    format!("unknown part `{other}`: send one `event` part and any `photo` parts"),
                ));
            }
        }
    }
    let note = note.ok_or_else(|| {
        field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "event",
            "the `event` part (the resolution as JSON) is missing",
        )
    })?;
    Ok((note, photos))
}
