//! The outbox: its rows with their delivery so far (dead letters and stale messages among
//! them), and requeuing one of those. Admins only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{Answer, ApiError, AppState, bad_query, forbidden, not_found, page_limit, query};
use crate::auth::{Actor, Role};
use crate::engine::EngineError;
use crate::store::{OUTBOX_STATUSES, OutboxFilter, Requeue};

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/outbox[?status=queued|sending|sent|dead|stale][&limit=N][&cursor=C]`: rows by
/// id.
pub(super) async fn list(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    uri: axum::http::Uri,
) -> Result<Answer, ApiError> {
    let q: OutboxQuery = query(uri.query())?;
    if actor.role != Role::Admin {
        return Err(forbidden(&actor, "read the outbox"));
    }
    if let Some(st) = &q.status
        && !OUTBOX_STATUSES.contains(&st.as_str())
    {
        return Err(bad_query(
            "status",
            format!("unknown status `{st}`: queued, sending, sent, dead or stale"),
        ));
    }
    let after = match &q.cursor {
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| bad_query("cursor", format!("invalid cursor `{c}`")))?,
        ),
        None => None,
    };
    let f = OutboxFilter {
        status: q.status,
        after,
        limit: page_limit(q.limit),
    };
    let rows = s
        .engine
        .store()
        .outbox_page(&f)
        .await
        .map_err(EngineError::from)?;
    let next = (rows.len() as i64 == f.limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Answer(json!({ "messages": rows, "next_cursor": next })))
}

/// `POST /api/v1/outbox/{id}/retry`: a dead letter or a stale message queued again, due now,
/// its attempts counted afresh, sent whatever its age; 404 for an unknown row, 409 for one
/// that is neither dead nor stale.
pub(super) async fn retry(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Answer, ApiError> {
    if actor.role != Role::Admin {
        return Err(forbidden(&actor, "retry outbox messages"));
    }
    let Ok(n) = id.parse::<i64>() else {
        return Err(not_found(format!("outbox message {id}")));
    };
    match s
        .engine
        .store()
        .requeue(n, s.engine.now())
        .await
        .map_err(EngineError::from)?
    {
        Requeue::Requeued(row) => Ok(Answer(json!({ "message": row }))),
        Requeue::NotFound => Err(not_found(format!("outbox message {id}"))),
        Requeue::NotDead(status) => Err(ApiError {
            field: Some("id".into()),
            extra: Some(json!({ "status": status })),
            ..ApiError::new(
                StatusCode::CONFLICT,
                "not_dead",
                format!(
                    "outbox message {id} is {status}, not dead: only a dead letter or a stale \
                     message is retried"
                ),
            )
        }),
    }
}
