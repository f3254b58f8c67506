//! Administration: the rules (live version, history, the last reload and its diagnostics with
//! file:line:column, a reload, a candidate's replay with its differences, shadow rules and their
//! differences), the outbox (why a message waits, dead letters and stale ones, retry), and
//! people's access (every token and session, revoking one; each person of the organisation with
//! their roles, password, invitation and sessions, inviting them, revoking their access).
//! Administrators only; each change goes through the same steward, engine and store calls as the
//! API's and the command line's.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{Session, SignedIn, foreign_form, message, page, redirect};
use crate::api::AppState;
use crate::auth::Role;
use crate::reload::{CandidateError, ReloadError};
use crate::replay::{
    CandidateReplay, CandidateReplayError, DEFAULT_LIMIT, MAX_LIMIT, ReplayReport,
};
use crate::store::{OUTBOX_STATUSES, OutboxFilter, Requeue};

/// Rows shown on an administration page.
const ROWS: i64 = 100;

/// The refusal of a page to someone not acting as administrator.
fn not_admin(session: &Session, what: &str) -> Option<Response> {
    (session.actor.role != Role::Admin).then(|| {
        message(
            StatusCode::FORBIDDEN,
            session.locale,
            "refused",
            &session.actor.may_not(what),
        )
    })
}

/// The refusal of an administration form: from someone not acting as administrator, or not
/// from a page this server rendered for this session (its origin, its form token); none if it
/// may go on. Every administration POST asks this first.
fn refused_form(
    session: &Session,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    what: &str,
) -> Option<Response> {
    not_admin(session, what).or_else(|| foreign_form(session, headers, field(form, "csrf")))
}

/// A form's field, trimmed; empty if not sent.
fn field<'f>(form: &'f HashMap<String, String>, name: &str) -> &'f str {
    form.get(name).map(|v| v.trim()).unwrap_or("")
}

/// An instant as the administration pages show it.
fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn unavailable(session: &Session, e: impl std::fmt::Display) -> Response {
    super::unavailable(session.locale, "an administration page", e)
}

/// `GET /console/admin/rules`: what is live, how the last reload went, every version, the
/// shadow rules and their differences, and the forms to replay or shadow a candidate.
pub(super) async fn rules(State(s): State<Arc<AppState>>, SignedIn(session): SignedIn) -> Response {
    if let Some(r) = not_admin(&session, "steer the rules") {
        return r;
    }
    rules_page(&s, &session, StatusCode::OK, json!({})).await
}

/// The rules page, with `extra` in its context (a form's error and what it held).
async fn rules_page(
    s: &AppState,
    session: &Session,
    status: StatusCode,
    extra: serde_json::Value,
) -> Response {
    let st = s.rules.status();
    let versions = match s.engine.store().rule_versions(None, ROWS).await {
        Ok(v) => v,
        Err(e) => return unavailable(session, e),
    };
    let shadow = match s.engine.store().shadow_summary(5).await {
        Ok(v) => v,
        Err(e) => return unavailable(session, e),
    };
    let running = s.engine.shadow();
    let last = st.last_attempt.as_ref().map(|a| {
        json!({
            "at": when(a.at),
            "by": a.by,
            "outcome": a.outcome,
            "message": a.message,
            "diagnostics": a.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "in_use": a.in_use.iter().map(|u| u.message.clone()).collect::<Vec<_>>(),
        })
    });
    let mut context = session.context();
    context["live"] = json!({
        "version": st.live.version,
        "loaded_at": when(st.live.loaded_at),
        "loaded_by": st.live.loaded_by,
        "dir": st.live.dir,
    });
    context["last"] = json!(last);
    context["versions"] = json!(versions);
    context["shadow"] = json!({
        "active": running.is_some(),
        "version": running.as_ref().map(|r| r.rules.version.to_string()),
        "dir": running.as_ref().map(|r| r.dir.clone()),
        "summary": shadow.map(|sh| json!({
            "run": sh.run,
            "version": sh.version,
            "dir": sh.dir,
            "started_at": when(sh.started_at),
            "started_by": sh.started_by,
            "stopped_at": sh.stopped_at.map(when),
            "compared": sh.compared,
            "differing": sh.differing,
            "dropped": sh.dropped,
            "by_kind": sh.by_kind,
            "recent": sh.recent.iter().map(|d| json!({
                "issue": d.issue,
                "event": d.event,
                "at": when(d.at),
                "kinds": d.kinds,
                "live": d.live.to_string(),
                "shadow": d.shadow.to_string(),
            })).collect::<Vec<_>>(),
        })),
    });
    context["replay"] = replay_form(s, &HashMap::new());
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            context[k] = v;
        }
    }
    page(status, "admin_rules.html", session.locale, context)
}

/// What the replay form offers and holds: the candidates to name, the live categories, the
/// limits, and the values `form` sent.
fn replay_form(s: &AppState, form: &HashMap<String, String>) -> serde_json::Value {
    let rules = s.engine.rules();
    json!({
        "candidates": s.rules.candidate_names(),
        "categories": rules.categories.iter().map(|c| c.code.clone()).collect::<Vec<_>>(),
        "default_limit": DEFAULT_LIMIT,
        "max_limit": MAX_LIMIT,
        "dir": field(form, "dir"),
        "from": field(form, "from"),
        "to": field(form, "to"),
        "category": field(form, "category"),
        "unit": field(form, "unit"),
        "limit": field(form, "limit"),
    })
}

/// `POST /console/admin/rules/reload`: reloads the rule directory (with `force`, sending the
/// issues whose removed things are in use to triage), then shows how it went.
pub(super) async fn reload(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused_form(&session, &headers, &f, "reload the rules") {
        return r;
    }
    let force = f.get("force").is_some_and(|v| v == "1");
    match s.rules.reload(&session.actor.name(), force).await {
        // The outcome, diagnostics included, is the status the rules page shows.
        Ok(_) | Err(ReloadError::Invalid(_)) | Err(ReloadError::InUse(_)) => {
            redirect("/console/admin/rules")
        }
        Err(ReloadError::Failed(m)) => unavailable(&session, m),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OutboxQuery {
    status: Option<String>,
}

/// `GET /console/admin/outbox[?status=dead]`: the messages by status (dead letters by
/// default), each with its attempts, last error and when it is due.
pub(super) async fn outbox(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Query(q): Query<OutboxQuery>,
) -> Response {
    if let Some(r) = not_admin(&session, "read the outbox") {
        return r;
    }
    let status = q
        .status
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "dead".into());
    if !OUTBOX_STATUSES.contains(&status.as_str()) {
        return message(
            StatusCode::BAD_REQUEST,
            session.locale,
            "error",
            &format!("unknown status `{status}`: queued, sending, sent, dead or stale"),
        );
    }
    let f = OutboxFilter {
        status: Some(status.clone()),
        after: None,
        limit: ROWS,
    };
    let rows = match s.engine.store().outbox_page(&f).await {
        Ok(r) => r,
        Err(e) => return unavailable(&session, e),
    };
    let counts = s.engine.store().outbox_counts().await.unwrap_or_default();
    let mut context = session.context();
    context["status"] = json!(status);
    context["statuses"] = json!(OUTBOX_STATUSES);
    context["counts"] = json!(
        counts
            .iter()
            .map(|(ch, st, n)| json!({"channel": ch, "status": st, "count": n}))
            .collect::<Vec<_>>()
    );
    context["messages"] = json!(rows);
    page(StatusCode::OK, "admin_outbox.html", session.locale, context)
}

/// `POST /console/admin/outbox/{id}/retry`: a dead letter or a stale message queued again.
pub(super) async fn retry(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused_form(&session, &headers, &f, "retry outbox messages") {
        return r;
    }
    match s.engine.store().requeue(id, s.engine.now()).await {
        Ok(Requeue::Requeued(_)) => redirect("/console/admin/outbox?status=queued"),
        Ok(Requeue::NotFound) => message(
            StatusCode::NOT_FOUND,
            session.locale,
            "not_found",
            &format!("no outbox message {id}"),
        ),
        Ok(Requeue::NotDead(status)) => message(
            StatusCode::CONFLICT,
            session.locale,
            "refused",
            &format!(
                "outbox message {id} is {status}: only a dead letter or a stale message is retried"
            ),
        ),
        Err(e) => unavailable(&session, e),
    }
}

/// `GET /console/admin/tokens`: every token and console session, live or not, with its owner,
/// label, last use and expiry.
pub(super) async fn tokens(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
) -> Response {
    if let Some(r) = not_admin(&session, "list tokens") {
        return r;
    }
    let now = s.engine.now();
    let tokens = match s.engine.store().tokens().await {
        Ok(t) => t,
        Err(e) => return unavailable(&session, e),
    };
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    let rows: Vec<_> = tokens
        .iter()
        .rev()
        .map(|t| {
            let live = t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now);
            json!({
                "id": t.id,
                "role": t.role,
                "scope": t.scope,
                "owner": t.person.clone().or_else(|| t.integration.as_ref().map(|i| format!("integration:{i}"))),
                "label": t.label,
                "created_at": when(Some(t.created_at)),
                "last_used_at": when(t.last_used_at),
                "expires_at": when(t.expires_at),
                "live": live,
                "mine": t.id == session.actor.token,
            })
        })
        .collect();
    let mut context = session.context();
    context["tokens"] = json!(rows);
    page(StatusCode::OK, "admin_tokens.html", session.locale, context)
}

/// `POST /console/admin/tokens/{id}/revoke`: the token (or session) stops working, on every
/// replica within a second.
pub(super) async fn revoke(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused_form(&session, &headers, &f, "revoke tokens") {
        return r;
    }
    match s.engine.store().revoke_token(id, s.engine.now()).await {
        Ok(true) => redirect("/console/admin/tokens"),
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            session.locale,
            "not_found",
            &format!("no live token {id}"),
        ),
        Err(e) => unavailable(&session, e),
    }
}

/// A candidate that cannot be read, as a form's error: what was wrong and, for rules with
/// errors, each diagnostic at its `file:line:column`.
fn candidate_refusal(dir: &str, e: CandidateError) -> (StatusCode, serde_json::Value) {
    match e {
        CandidateError::Dir(m) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"field": "dir", "message": m}),
        ),
        CandidateError::Invalid(d) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "field": "dir",
                "message": format!("the candidate {dir} has {} error(s)", d.len()),
                "diagnostics": d.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        ),
        CandidateError::Failed(m) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"field": "dir", "message": m}),
        ),
    }
}

/// A day of the replay form (`YYYY-MM-DD`, in the rules' time zone): its first instant, or
/// the first of the day after (`next`, for the last day of a period, which is included).
fn day(
    rules: &escalade_rules::RuleSet,
    name: &'static str,
    value: &str,
    next: bool,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, (&'static str, String)> {
    if value.is_empty() {
        return Ok(None);
    }
    let date = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| (name, format!("`{value}` is not a day (YYYY-MM-DD)")))?;
    let date = if next { date.succ_opt() } else { Some(date) }
        .ok_or_else(|| (name, format!("`{value}` is out of range")))?;
    let tz = rules.org.calendars[rules.settings.calendar as usize].tz();
    let midnight = date.and_time(chrono::NaiveTime::MIN);
    // A day that begins in a clock change begins at its first instant that exists.
    midnight
        .and_local_timezone(tz)
        .earliest()
        .or_else(|| {
            (midnight + chrono::Duration::hours(1))
                .and_local_timezone(tz)
                .earliest()
        })
        .map(|t| Some(t.with_timezone(&chrono::Utc)))
        .ok_or_else(|| (name, format!("`{value}` has no midnight in {}", tz.name())))
}

/// The replay the form asks for, or the field at fault and why.
fn replay_asked(
    rules: &escalade_rules::RuleSet,
    f: &HashMap<String, String>,
) -> Result<CandidateReplay, (&'static str, String)> {
    let dir = field(f, "dir");
    if dir.is_empty() {
        return Err((
            "dir",
            "name a candidate directory under the candidates_dir".into(),
        ));
    }
    let limit = match field(f, "limit") {
        "" => None,
        l => Some(l.parse::<usize>().map_err(|_| {
            (
                "limit",
                format!("`{l}` is not a number of issues (1 to {MAX_LIMIT})"),
            )
        })?),
    };
    if limit == Some(0) {
        return Err(("limit", format!("show 1 to {MAX_LIMIT} changed issues")));
    }
    let text = |name| Some(field(f, name).to_string()).filter(|v| !v.is_empty());
    Ok(CandidateReplay {
        dir: dir.to_string(),
        from: day(rules, "from", field(f, "from"), false)?,
        to: day(rules, "to", field(f, "to"), true)?,
        category: text("category"),
        unit: text("unit"),
        limit,
    })
}

/// `POST /console/admin/rules/replay`: the store's past issues lived again through a candidate
/// under `candidates_dir` (by the API's own replay), and what differs: counts, the kinds of
/// change, and the first changed issues with their differences.
pub(super) async fn replay(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused_form(&session, &headers, &f, "replay candidate rules") {
        return r;
    }
    let rules = s.engine.rules();
    let refused = |status: StatusCode, error: serde_json::Value| {
        let mut context = session.context();
        context["replay"] = replay_form(&s, &f);
        context["error"] = error;
        page(status, "admin_replay.html", session.locale, context)
    };
    let asked = match replay_asked(&rules, &f) {
        Ok(a) => a,
        Err((field, message)) => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"field": field, "message": message}),
            );
        }
    };
    let dir = asked.dir.clone();
    let report = match crate::replay::replay_candidate(&s.rules, asked).await {
        Ok(r) => r,
        Err(CandidateReplayError::Candidate(e)) => {
            let (status, error) = candidate_refusal(&dir, e);
            return refused(status, error);
        }
        Err(CandidateReplayError::Invalid { field, message }) => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"field": field, "message": message}),
            );
        }
        Err(e @ (CandidateReplayError::NoStore | CandidateReplayError::Failed(_))) => {
            tracing::error!(error = %e, "a console replay failed");
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": format!("the replay failed: {e}")}),
            );
        }
    };
    let mut context = session.context();
    context["replay"] = replay_form(&s, &f);
    context["report"] = report_context(&rules, &report);
    page(StatusCode::OK, "admin_replay.html", session.locale, context)
}

/// A replay's report as its page shows it: times local to the rules' default calendar.
fn report_context(rules: &escalade_rules::RuleSet, r: &ReplayReport) -> serde_json::Value {
    let tz = rules.org.calendars[rules.settings.calendar as usize].tz();
    let local = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
    };
    let changed: Vec<_> = r
        .changed
        .iter()
        .map(|i| {
            let mut kinds: Vec<String> = Vec::new();
            if i.refused.is_some() {
                kinds.push("refused".into());
            }
            for c in &i.changes {
                if let Some(k) = serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v["kind"].as_str().map(str::to_string))
                    && !kinds.contains(&k)
                {
                    kinds.push(k);
                }
            }
            if i.diverged.is_some() {
                kinds.push("diverged".into());
            }
            json!({
                "id": i.id,
                "category": i.category,
                "unit": i.unit,
                "area": i.area,
                "reported_at": local(i.reported_at),
                "rules_version": i.rules_version.get(..12).unwrap_or(&i.rules_version),
                "kinds": kinds,
                "lines": crate::cli::replay::lines(i, &local),
            })
        })
        .collect();
    json!({
        "candidate": r.candidate,
        "horizon": local(r.horizon),
        "tz": tz.name(),
        "issues": r.issues,
        "actions": r.actions,
        "summary": r.summary.iter().map(|g| json!({"kind": g.kind, "issues": g.issues, "line": g.line})).collect::<Vec<_>>(),
        "skipped": r.skipped,
        "fallbacks": r.fallbacks,
        "changed": changed,
        "changed_not_shown": r.changed_not_shown,
    })
}

/// `POST /console/admin/rules/shadow`: runs the candidate under `candidates_dir` beside the
/// live rules (replacing shadow rules that ran).
pub(super) async fn start_shadow(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused_form(&session, &headers, &f, "run shadow rules") {
        return r;
    }
    let dir = field(&f, "dir");
    let refused = async |status: StatusCode, error: serde_json::Value| {
        rules_page(
            &s,
            &session,
            status,
            json!({"shadow_error": error, "shadow_dir": dir}),
        )
        .await
    };
    if dir.is_empty() {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"field": "dir", "message": "name a candidate directory under the candidates_dir"}),
        )
        .await;
    }
    let (path, candidate) = match s.rules.named_candidate(dir).await {
        Ok(c) => c,
        Err(e) => {
            let (status, error) = candidate_refusal(dir, e);
            return refused(status, error).await;
        }
    };
    match crate::shadow::Shadow::replace(
        &s.engine,
        Arc::new(candidate),
        path.display().to_string(),
        &session.actor.name(),
    )
    .await
    {
        Ok(_) => redirect("/console/admin/rules#shadow"),
        Err(e) => unavailable(&session, e),
    }
}

/// `POST /console/admin/rules/shadow/stop`: stops the shadow rules; their differences stay.
pub(super) async fn stop_shadow(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused_form(&session, &headers, &f, "stop shadow rules") {
        return r;
    }
    match crate::shadow::Shadow::stop(&s.engine).await {
        Ok(Some(_)) => redirect("/console/admin/rules#shadow"),
        Ok(None) => message(
            StatusCode::CONFLICT,
            session.locale,
            "refused",
            "no shadow rules run: there is nothing to stop",
        ),
        Err(e) => unavailable(&session, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct PeopleQuery {
    q: Option<String>,
    page: Option<String>,
}

/// `GET /console/admin/people[?q=TEXT&page=N]`: the people of the organisation (those whose id
/// or name holds `q`), a hundred a page, each with their console roles, whether their password
/// is set, an invitation pending and until when, and their live sessions and tokens; then
/// anyone no longer in the organisation who still has a password or a live token.
pub(super) async fn people(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Query(q): Query<PeopleQuery>,
) -> Response {
    if let Some(r) = not_admin(&session, "list people's access") {
        return r;
    }
    let number = match q.page.as_deref().filter(|p| !p.is_empty()) {
        None => 1,
        Some(p) => match p.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return message(
                    StatusCode::BAD_REQUEST,
                    session.locale,
                    "error",
                    &format!("page `{p}` is not a page number (1, 2, ...)"),
                );
            }
        },
    };
    let now = s.engine.now();
    let store = s.engine.store();
    let (credentials, tokens) = match tokio::try_join!(
        store.credentials(),
        store.live_tokens_by_person(super::signin::SESSION_LABEL, now)
    ) {
        Ok(both) => both,
        Err(e) => return unavailable(&session, e),
    };
    let credentials: HashMap<_, _> = credentials
        .into_iter()
        .map(|c| (c.person.clone(), c))
        .collect();
    let tokens: HashMap<_, _> = tokens
        .into_iter()
        .map(|(p, sessions, all)| (p, (sessions, all)))
        .collect();
    let rules = s.engine.rules();
    let access = |id: &str| {
        let c = credentials.get(id);
        let (sessions, all) = tokens.get(id).copied().unwrap_or((0, 0));
        json!({
            "password_set_at": c.and_then(|c| c.password_set_at).map(when),
            "invite_expires_at": c.and_then(|c| c.invite_expires_at).map(when),
            "invite_live": c.and_then(|c| c.invite_expires_at).is_some_and(|t| t > now),
            "sessions": sessions,
            "other_tokens": all - sessions,
        })
    };
    let needle = q.q.as_deref().unwrap_or("").trim().to_lowercase();
    let matching: Vec<_> = rules
        .org
        .people
        .iter()
        .filter(|p| {
            needle.is_empty()
                || p.id.to_lowercase().contains(&needle)
                || p.name.to_lowercase().contains(&needle)
        })
        .collect();
    let pages = matching.len().div_ceil(ROWS as usize).max(1);
    let rows: Vec<_> = matching
        .iter()
        .skip((number - 1) * ROWS as usize)
        .take(ROWS as usize)
        .map(|p| {
            let roles: Vec<String> = super::signin::roles(&rules, &s.console.config, &p.id)
                .into_iter()
                .map(|(r, sc)| match sc {
                    Some(sc) => format!("{}:{sc}", r.as_str()),
                    None => r.as_str().to_string(),
                })
                .collect();
            let mut row = access(&p.id);
            row["id"] = json!(p.id);
            row["name"] = json!(p.name);
            row["email"] = json!(p.email);
            row["roles"] = json!(roles);
            row
        })
        .collect();
    let mut gone: Vec<&str> = credentials
        .keys()
        .chain(tokens.keys())
        .map(String::as_str)
        .filter(|id| rules.org.person(id).is_none())
        .collect();
    gone.sort_unstable();
    gone.dedup();
    let gone: Vec<_> = gone
        .into_iter()
        .map(|id| {
            let mut row = access(id);
            row["id"] = json!(id);
            row
        })
        .collect();
    let mut context = session.context();
    context["people"] = json!(rows);
    context["gone"] = json!(gone);
    let asked = q.q.unwrap_or_default();
    context["q"] = json!(asked.trim());
    context["q_query"] =
        json!(serde_urlencoded::to_string([("q", asked.trim())]).unwrap_or_default());
    context["page"] = json!(number);
    context["pages"] = json!(pages);
    context["matching"] = json!(matching.len());
    context["smtp"] = json!(s.delivery.as_ref().is_some_and(|d| d.mailer().is_some()));
    page(StatusCode::OK, "admin_people.html", session.locale, context)
}

/// Where people reach the console, for an invitation's link: `console.base_url`, else the
/// `links` base, else the address this request was made to.
fn base_url(s: &AppState, headers: &HeaderMap) -> String {
    if let Some(b) = &s.console.config.base_url {
        return b.clone();
    }
    if let Some(l) = &s.links {
        return l.base_url().to_string();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// `POST /console/admin/people/{person}/invite`: a one-time link for the person to set their
/// password, shown here once, and emailed to them when SMTP is configured and the organisation
/// has their address (as `escalade person invite` does).
pub(super) async fn invite(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(person): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused_form(&session, &headers, &f, "invite people") {
        return r;
    }
    let lifetime = chrono::Duration::from_std(s.console.config.invite.0)
        .unwrap_or(chrono::Duration::hours(72));
    let mailer = s.delivery.as_ref().and_then(|d| d.mailer());
    let rules = s.engine.rules();
    let made = super::signin::invite(
        s.engine.store(),
        &rules,
        &s.console.config,
        mailer.as_deref(),
        &base_url(&s, &headers),
        &person,
        lifetime,
        s.engine.now(),
    )
    .await;
    let made = match made {
        Ok(m) => m,
        Err(e @ super::InviteError::Unknown(_)) => {
            return message(
                StatusCode::NOT_FOUND,
                session.locale,
                "not_found",
                &e.to_string(),
            );
        }
        Err(e @ super::InviteError::NoRole(_)) => {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                session.locale,
                "refused",
                &e.to_string(),
            );
        }
        Err(super::InviteError::Store(e)) => return unavailable(&session, e),
    };
    let (emailed, address, error) = match &made.emailed {
        super::Emailed::To(a) => ("to", Some(a.clone()), None),
        super::Emailed::NoSmtp => ("no_smtp", None, None),
        super::Emailed::NoAddress => ("no_address", None, None),
        super::Emailed::Failed { address, error } => {
            ("failed", Some(address.clone()), Some(error.clone()))
        }
    };
    let name = rules
        .org
        .person(&person)
        .map(|ix| rules.org.people[ix as usize].name.clone());
    let mut context = session.context();
    context["invited"] = json!({
        "person": made.person,
        "name": name,
        "link": made.link,
        "until": when(made.until),
        "emailed": emailed,
        "back": serde_urlencoded::to_string([("q", made.person.as_str())]).unwrap_or_default(),
        "address": address,
        "error": error,
    });
    page(
        StatusCode::OK,
        "admin_invited.html",
        session.locale,
        context,
    )
}

/// `POST /console/admin/people/{person}/revoke`: the person's password and any unused
/// invitation removed, every session and token of theirs revoked, at once.
pub(super) async fn revoke_person(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(person): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused_form(&session, &headers, &f, "revoke people's access") {
        return r;
    }
    let known = s.engine.rules().org.person(&person).is_some();
    match s
        .engine
        .store()
        .revoke_access(&person, s.engine.now())
        .await
    {
        // Someone no longer in the organisation is known by what they still had.
        Ok(r) if !known && !r.credentials && r.tokens == 0 => message(
            StatusCode::NOT_FOUND,
            session.locale,
            "not_found",
            &format!(
                "unknown person `{person}`: the organisation has no such person, and nobody of that id has a password or a live token"
            ),
        ),
        Ok(r) => {
            tracing::info!(person, tokens = r.tokens, by = %session.actor.name(), "a person's console access was revoked");
            let q = serde_urlencoded::to_string([("q", person.as_str())]).unwrap_or_default();
            redirect(&format!("/console/admin/people?{q}"))
        }
        Err(e) => unavailable(&session, e),
    }
}
