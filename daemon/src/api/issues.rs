//! Reading issues: one with its readable timeline, lists, queues, overdue boards, photos.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, ApiError, AppState, bad_query, internal, not_found, page_limit, query};
use crate::auth::Actor;
use crate::engine::EngineError;
use crate::store::IssueFilter;

pub(crate) async fn issue(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Answer, ApiError> {
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
    Ok(Answer(
        json!({"id": id, "issue": stored.issue, "state": stored.state, "version": stored.version, "timeline": timeline}),
    ))
}

/// Adds to a decision's effects, as stored, who was told (from its messages), what changed from
/// the state before to its next state, and the sentences
/// a person reads (`lines`), times in the rules' default zone. Effects that no longer read as
/// `Effects` are served as stored.
pub(crate) fn readable(
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

/// Query of `GET /api/v1/issues`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
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

/// The most a page of issues holds, in bytes of JSON (about 2 MiB).
const MAX_PAGE_BYTES: usize = 2 << 20;

/// Lists issues, narrowed to what the caller may see: a reporter's or leader's unit subtree, a
/// department's own issues.
pub(crate) async fn run_list(
    s: &AppState,
    actor: &Actor,
    q: ListQuery,
    open: bool,
    queue: bool,
) -> Result<Answer, ApiError> {
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
        reporter: None,
        newest_first: false,
        attention: None,
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
    let limit = f.limit;
    let rows = s.engine.list_for(actor, f).await?;
    let full = rows.len() as i64 == limit;
    // A page ends at `limit` issues or once it holds `MAX_PAGE_BYTES`, whichever comes first;
    // the cursor goes on from its last issue.
    let mut issues: Vec<Value> = Vec::with_capacity(rows.len());
    let mut bytes = 0usize;
    let mut next = None;
    let count = rows.len();
    for (i, r) in rows.into_iter().enumerate() {
        let v = json!({"id": r.issue.issue.id, "issue": r.issue.issue, "state": r.issue.state, "version": r.issue.version});
        bytes += serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0);
        issues.push(v);
        if (bytes >= MAX_PAGE_BYTES && i + 1 < count) || (full && i + 1 == count) {
            next = Some(r.cursor);
            break;
        }
    }
    Ok(Answer(json!({"issues": issues, "next_cursor": next})))
}

pub(crate) async fn list(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    uri: axum::http::Uri,
) -> Result<Answer, ApiError> {
    run_list(&s, &actor, query(uri.query())?, false, false).await
}

/// A department's queue: its open issues.
pub(crate) async fn queue(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Answer, ApiError> {
    if s.engine.rules().org.department(&id).is_none() {
        return Err(not_found(format!("department {id}")));
    }
    let mut q: ListQuery = query(uri.query())?;
    q.department = Some(id);
    run_list(&s, &actor, q, true, true).await
}

/// A leader's overdue board: the open issues of a subtree with a deadline passed.
pub(crate) async fn overdue(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Answer, ApiError> {
    if s.engine.rules().org.unit(&id).is_none() {
        return Err(not_found(format!("unit {id}")));
    }
    let mut q: ListQuery = query(uri.query())?;
    q.unit = Some(id);
    q.overdue = Some(true);
    run_list(&s, &actor, q, true, false).await
}

/// `GET /api/v1/issues/{id}/photos/{hash}`: one of the issue's photos, to whoever may see it.
pub(crate) async fn photo(
    State(s): State<Arc<AppState>>,
    actor: Actor,
    Path((id, hash)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let stored = s.engine.issue_for(&actor, &id).await?;
    if !stored.issue.photos.contains(&hash) && !stored.state.after_photos.contains(&hash) {
        return Err(not_found(format!("photo {hash} on issue {id}")));
    }
    let found = s
        .engine
        .open_photo(&s.photos, &hash)
        .await
        .map_err(|e| internal(format!("reading photo {hash}: {e}")))?;
    let Some((file, content_type, size)) = found else {
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
            ("content-length", &size.to_string()),
        ],
        axum::body::Body::from_stream(chunks(file)),
    )
        .into_response())
}

/// A file's bytes as a stream of 64 KiB chunks, each read on a blocking thread: a photo is sent
/// without being held whole in memory.
fn chunks(
    file: std::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 64 << 10];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, file))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match read {
            Ok((buf, _)) if buf.is_empty() => None,
            Ok((buf, file)) => Some((Ok(axum::body::Bytes::from(buf)), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    })
}
