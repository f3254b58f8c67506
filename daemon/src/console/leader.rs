//! A leader's decisions and meetings: the extension (延期) and suspension (挂起) requests the
//! signed-in role decides, each with its decide-by clock and a grant-or-refuse form posted to
//! the issue's actions; the joint meetings it may see, upcoming and recent; and a meeting's page
//! with its agenda as each issue stands now and, for whoever may record it, the outcome's form.
//! Everything is found, checked and done through the engine.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use escalade_rules::{Outcome, RuleSet, WorkDuration};
use serde_json::{Value, json};

use super::{Session, SignedIn, foreign_form, message, page, redirect};
use crate::api::AppState;
use crate::engine::{EngineError, OutcomeRecord};
use crate::store::{Meeting, MeetingFilter};

/// Requests listed at most, the soonest to lapse first.
const REQUESTS: i64 = 100;

/// Meetings listed at most: those still to sit or be recorded, and the latest held.
const SCHEDULED: i64 = 50;
const HELD: i64 = 20;

/// The outcomes a meeting may record, as the form offers them.
const OUTCOMES: [&str; 3] = ["resolved", "enforcement", "noted"];

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The name of `names` in `locale`.
fn named(names: &escalade_rules::model::Names, locale: &str) -> String {
    if locale == "en" {
        names.en.clone()
    } else {
        names.zh.clone()
    }
}

fn department_name(rules: &RuleSet, locale: &str, id: &str) -> String {
    rules
        .org
        .department(id)
        .map(|ix| named(&rules.org.departments[ix as usize].names, locale))
        .unwrap_or_else(|| id.to_string())
}

fn person_name(rules: &RuleSet, id: &str) -> String {
    rules
        .org
        .person(id)
        .map(|ix| rules.org.people[ix as usize].name.clone())
        .unwrap_or_else(|| id.to_string())
}

/// An engine's refusal as a page, meetings' own included: the statuses the API answers.
fn refusal(session: &Session, e: EngineError) -> Response {
    match e {
        EngineError::MeetingNotFound(id) => message(
            StatusCode::NOT_FOUND,
            session.locale,
            "not_found",
            &format!("no meeting {id}"),
        ),
        e @ (EngineError::MeetingHeld { .. } | EngineError::MeetingNotYet { .. }) => message(
            StatusCode::CONFLICT,
            session.locale,
            "refused",
            &e.to_string(),
        ),
        e => super::issue::refusal(session, e),
    }
}

/// The page of a meeting path whose id is not a number: there is no such meeting.
fn not_a_meeting(session: &Session, raw: &str) -> Response {
    message(
        StatusCode::NOT_FOUND,
        session.locale,
        "not_found",
        &format!("no meeting {raw}: a meeting's id is a number"),
    )
}

// ---- requests -------------------------------------------------------------------------------

/// `GET /console/requests`: the open issues whose extension or suspension request the role
/// decides, the soonest to lapse first, each with a form to grant or refuse it.
pub(super) async fn requests(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
) -> Response {
    let waiting = match s.engine.requests_for(&session.actor, REQUESTS).await {
        Ok(w) => w,
        Err(e) => return refusal(&session, e),
    };
    let rules = s.engine.rules();
    let now = s.engine.now();
    let locale = session.locale;
    let rows: Vec<Value> = waiting
        .iter()
        .filter_map(|st| {
            let (issue, state) = (&st.issue, &st.state);
            let r = state.request.as_ref()?;
            let mut row = super::inbox::row(&rules, locale, issue, state, now);
            // The decider's clock runs from when the request was asked.
            let decide = r.decide_by.map(|due| {
                let mut asked = state.clone();
                asked.reported_at = Some(r.asked_at);
                super::inbox::clock(&rules, issue, &asked, "decide", due, now)
            });
            row["request"] = json!({
                "kind": r.kind.as_str(),
                "department": department_name(&rules, locale, &r.department),
                "duration": r.duration.map(|d| d.to_string()),
                "reason": r.reason,
                "asked_at": time(r.asked_at),
                "decide": decide,
            });
            Some(row)
        })
        .collect();
    let mut context = session.context();
    context["full"] = json!(rows.len() as i64 == REQUESTS);
    context["requests"] = json!(rows);
    page(StatusCode::OK, "requests.html", locale, context)
}

// ---- meetings -------------------------------------------------------------------------------

/// A meeting as a list or its page shows it.
fn meeting_view(rules: &RuleSet, locale: &str, m: &Meeting, now: DateTime<Utc>) -> Value {
    let kind = rules
        .meeting(&m.kind)
        .map(|ix| named(&rules.meetings[ix as usize].names, locale))
        .unwrap_or_else(|| m.kind.clone());
    let outcome = m.outcome.as_ref().map(|o| {
        let departments: Vec<String> = o["departments"]
            .as_array()
            .map(|ds| {
                ds.iter()
                    .filter_map(Value::as_str)
                    .map(|d| department_name(rules, locale, d))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "outcome": o["outcome"],
            "departments": departments,
            "resolve": o["resolve"],
            "note": o["note"],
        })
    });
    json!({
        "id": m.id,
        "kind": kind,
        "at": time(m.at),
        "sat": m.at <= now,
        "status": m.status,
        "participants": m.participants.iter().map(|p| person_name(rules, p)).collect::<Vec<_>>(),
        "departments": m.departments.iter().map(|d| department_name(rules, locale, d)).collect::<Vec<_>>(),
        "agenda": m.agenda.iter().map(|a| json!({
            "issue": a.issue,
            "applied": a.outcome_seq.is_some(),
            "skipped": a.skipped,
        })).collect::<Vec<_>>(),
        "outcome": outcome,
        "recorded_by": m.recorded_by,
        "recorded_at": m.recorded_at.map(time),
    })
}

/// `GET /console/meetings`: the meetings the role may see: those still to sit or to be
/// recorded, by time, and the latest held.
pub(super) async fn meetings(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
) -> Response {
    let scheduled = MeetingFilter {
        status: Some("scheduled".into()),
        limit: SCHEDULED,
        ..Default::default()
    };
    let held = MeetingFilter {
        status: Some("held".into()),
        limit: HELD,
        latest_first: true,
        ..Default::default()
    };
    let (scheduled, held) = match (
        s.engine.meetings_for(&session.actor, scheduled).await,
        s.engine.meetings_for(&session.actor, held).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return refusal(&session, e),
    };
    let rules = s.engine.rules();
    let now = s.engine.now();
    let view = |ms: &[Meeting]| -> Vec<Value> {
        ms.iter()
            .map(|m| meeting_view(&rules, session.locale, m, now))
            .collect()
    };
    let mut context = session.context();
    context["scheduled"] = json!(view(&scheduled));
    context["held"] = json!(view(&held));
    page(StatusCode::OK, "meetings.html", session.locale, context)
}

/// The meeting page as `session` may see it.
async fn meeting_page(s: &AppState, session: &Session, id: i64) -> Response {
    let m = match s.engine.meeting_visible(&session.actor, id).await {
        Ok(m) => m,
        Err(e) => return refusal(session, e),
    };
    let may_record = match s.engine.may_record_outcome(&session.actor, id).await {
        Ok(may) => may && m.status == "scheduled",
        Err(e) => return refusal(session, e),
    };
    let rules = s.engine.rules();
    let now = s.engine.now();
    let mut issues = Vec::with_capacity(m.agenda.len());
    for item in &m.agenda {
        match s.engine.issue_for(&session.actor, &item.issue).await {
            Ok(st) => {
                let mut row = super::inbox::row(&rules, session.locale, &st.issue, &st.state, now);
                row["applied"] = json!(item.outcome_seq.is_some());
                row["skipped"] = json!(item.skipped);
                issues.push(row);
            }
            // Gone or no longer the caller's since the meeting was read: not shown.
            Err(EngineError::NotFound(_) | EngineError::Forbidden { .. }) => {}
            Err(e) => return refusal(session, e),
        }
    }
    let departments: Vec<Value> = rules
        .org
        .departments
        .iter()
        .map(|d| json!({"id": d.id, "name": named(&d.names, session.locale)}))
        .collect();
    let mut context = session.context();
    context["meeting"] = meeting_view(&rules, session.locale, &m, now);
    context["issues"] = json!(issues);
    context["may_record"] = json!(may_record);
    context["outcomes"] = json!(OUTCOMES);
    context["all_departments"] = json!(departments);
    page(StatusCode::OK, "meeting.html", session.locale, context)
}

/// `GET /console/meetings/{id}`.
pub(super) async fn meeting(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Path(raw): Path<String>,
) -> Response {
    match raw.parse() {
        Ok(id) => meeting_page(&s, &session, id).await,
        Err(_) => not_a_meeting(&session, &raw),
    }
}

/// The outcome a form records, or what is wrong with it: `outcome` one of the three, for a
/// joint enforcement action the `departments` ticked and its working time to `resolve` (empty:
/// the category's), a `note`. Any other field is refused.
fn outcome_of(form: &[(String, String)]) -> Result<OutcomeRecord, String> {
    let mut outcome = None;
    let mut departments = Vec::new();
    let mut resolve = None;
    let mut note = String::new();
    for (k, v) in form {
        match k.as_str() {
            "csrf" => {}
            "outcome" => {
                outcome = Some(serde_json::from_value::<Outcome>(json!(v)).map_err(|_| {
                    format!("unknown outcome `{v}`: resolved, enforcement or noted")
                })?)
            }
            "departments" => departments.push(v.clone()),
            "resolve" if v.trim().is_empty() => {}
            "resolve" => {
                resolve =
                    Some(WorkDuration::parse(v.trim()).map_err(|e| format!("resolve `{v}`: {e}"))?)
            }
            "note" => note = v.trim().to_string(),
            other => return Err(format!("the outcome's form has no field `{other}`")),
        }
    }
    let outcome = outcome.ok_or("choose an outcome: resolved, enforcement or noted")?;
    Ok(OutcomeRecord {
        outcome,
        departments,
        resolve,
        note,
    })
}

/// `POST /console/meetings/{id}/outcome`: records the meeting's outcome through the engine as
/// the session's token (which applies it to every agenda issue), then shows the meeting.
pub(super) async fn outcome(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Ok(id) = raw.parse::<i64>() else {
        return not_a_meeting(&session, &raw);
    };
    let Ok(Form(form)) = form else {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            session.locale,
            "refused",
            "the outcome comes as a form",
        );
    };
    let csrf = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if let Some(r) = foreign_form(&session, &headers, csrf) {
        return r;
    }
    let record = match outcome_of(&form) {
        Ok(r) => r,
        Err(m) => {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                session.locale,
                "refused",
                &m,
            );
        }
    };
    if let Err(e) = s.engine.meeting_visible(&session.actor, id).await {
        return refusal(&session, e);
    }
    match s.engine.record_outcome(id, &record, &session.actor).await {
        Ok(_) => redirect(&format!("/console/meetings/{id}")),
        Err(e) => refusal(&session, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_outcome_form_becomes_its_record_and_a_bad_one_is_refused() {
        let r = outcome_of(&form(&[
            ("csrf", "x"),
            ("outcome", "enforcement"),
            ("departments", "urban"),
            ("departments", "housing"),
            ("resolve", "3d"),
            ("note", " joint inspection "),
        ]))
        .unwrap();
        assert_eq!(r.outcome, Outcome::Enforcement);
        assert_eq!(r.departments, ["urban", "housing"]);
        assert_eq!(r.resolve.map(|d| d.to_string()).as_deref(), Some("3d"));
        assert_eq!(r.note, "joint inspection");
        let noted = outcome_of(&form(&[("outcome", "noted"), ("resolve", "")])).unwrap();
        assert_eq!((noted.outcome, noted.resolve), (Outcome::Noted, None));
        assert!(
            outcome_of(&form(&[("outcome", "postponed")]))
                .unwrap_err()
                .contains("unknown outcome `postponed`")
        );
        assert!(outcome_of(&form(&[("note", "x")])).is_err());
        assert!(outcome_of(&form(&[("outcome", "noted"), ("resolve", "soon")])).is_err());
        assert!(outcome_of(&form(&[("outcome", "noted"), ("minutes", "x")])).is_err());
    }
}
