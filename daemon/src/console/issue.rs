//! The issue page: what was reported (text, photos, place), every deadline's clock, the
//! readable timeline with each decision's effects, and the actions the signed-in role may take
//! in the issue's state, each a plain form posted through the engine.

use std::sync::Arc;

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use escalade_rules::{Event, IssueState, RuleSet};
use serde_json::{Value, json};

use super::{Session, SignedIn, foreign_form, message, page, redirect};
use crate::api::AppState;
use crate::auth::Actor;
use crate::engine::EngineError;
use escalade_rules::Refusal;

/// The actions the console offers, each with its form's fields (`name`, kind): `long` a
/// paragraph, `rating` 1 to 5, `duration` working time (`4h`, `2d`), `yesno` a grant or a
/// refusal, `request` the kind of the request waiting on the issue (filled in by the page),
/// `department` one of the organisation's departments, `issue` another issue's id, `verdict`
/// a department's verdict on the report.
const ACTIONS: [(&str, &[(&str, &str)]); 16] = [
    ("acknowledged", &[]),
    ("progress", &[("note", "long")]),
    ("resolved", &[("note", "long")]),
    ("returned", &[("reason", "long")]),
    (
        "extension_requested",
        &[("duration", "duration"), ("reason", "long")],
    ),
    ("suspension_requested", &[("reason", "long")]),
    ("resumed", &[("note", "long")]),
    ("confirmed", &[]),
    ("rejected", &[("reason", "long")]),
    ("evaluated", &[("rating", "rating"), ("comment", "long")]),
    ("commented", &[("text", "long")]),
    ("closed_at_grid", &[("note", "long")]),
    ("reassigned", &[("department", "department")]),
    ("duplicate", &[("original", "issue")]),
    (
        "report_rated",
        &[("verdict", "verdict"), ("comment", "long")],
    ),
    (
        "request_decided",
        &[
            ("request", "request"),
            ("granted", "yesno"),
            ("note", "long"),
        ],
    ),
];

/// An event of kind `name` with placeholder fields: what permission and the state are checked
/// against before a form is offered (a decision, of the request waiting on the issue: none
/// without one).
fn sample(name: &str, state: &IssueState) -> Option<Event> {
    let fields = match name {
        "extension_requested" => json!({"duration": "1h"}),
        "reassigned" => json!({"department": "-"}),
        "duplicate" => json!({"original": "-"}),
        "report_rated" => json!({"verdict": "valid"}),
        "evaluated" => json!({"rating": 5}),
        "commented" => json!({"text": "-"}),
        "request_decided" => json!({"request": state.request.as_ref()?.kind, "granted": true}),
        _ => json!({}),
    };
    let mut v = fields;
    v["event"] = name.into();
    serde_json::from_value(v).ok()
}

/// The actions `actor` may take on the issue as it stands, with their fields.
fn offered(
    rules: &RuleSet,
    actor: &Actor,
    issue: &escalade_rules::Issue,
    state: &IssueState,
) -> Vec<Value> {
    ACTIONS
        .iter()
        .filter(|(name, _)| {
            sample(name, state).is_some_and(|e| {
                e.allowed_in(state.state) && actor.may_act(rules, issue, state, &e)
            })
        })
        .map(|(name, fields)| {
            json!({
                "event": name,
                "fields": fields.iter().map(|(f, kind)| json!({"name": f, "kind": kind})).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// Steps to come shown on the page; the rest are counted.
const STEPS_SHOWN: usize = 5;

/// The escalation ladder as the page shows it: the issue's branch from its unit up, each rung
/// with its tier, unit and leader and the one the issue is at marked; then what happens next,
/// and when, if nobody acts.
fn ladder(
    rules: &RuleSet,
    locale: &str,
    issue: &escalade_rules::Issue,
    ahead: &escalade_rules::explain::Ahead,
) -> Value {
    let org = &rules.org;
    let tier_name = |id: &str| super::tier_name(rules, locale, id);
    let person_name = |id: &str| {
        org.person(id)
            .map(|p| org.people[p as usize].name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let rungs: Vec<Value> = org
        .unit(&issue.unit)
        .map(|u| org.branch(u).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|u| {
            let unit = &org.units[u as usize];
            let tier = &org.tiers[unit.tier as usize];
            json!({
                "tier": tier.names.get(locale),
                "unit": unit.names.get(locale),
                "leader": unit.leader.map(|l| org.people[l as usize].name.clone()),
                "current": tier.id == ahead.tier,
            })
        })
        .collect();
    let local = |at: &str| {
        chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|_| at.to_string())
    };
    // Each step's tier against the one before it (the first's, against where the issue is).
    let before = std::iter::once(ahead.tier.as_str())
        .chain(ahead.escalations.iter().map(|p| p.tier.as_str()));
    let next: Vec<Value> = ahead
        .escalations
        .iter()
        .zip(before)
        .take(STEPS_SHOWN)
        .map(|(p, was)| {
            json!({
                "at": local(&p.at),
                "datetime": p.at,
                "trigger": p.trigger,
                "tier": tier_name(&p.tier),
                "raised": p.tier != was,
                "notify": p.notify.iter().map(|n| person_name(n)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut convened: Vec<&escalade_rules::explain::ProjectedMeeting> =
        ahead.meetings.iter().collect();
    convened.sort_by(|a, b| a.at.cmp(&b.at));
    let meetings: Vec<Value> = convened
        .into_iter()
        .map(|m| {
            json!({
                "name": rules
                    .meeting(&m.meeting)
                    .map(|i| rules.meetings[i as usize].names.get(locale).to_string())
                    .unwrap_or_else(|| m.meeting.clone()),
                "at": local(&m.at),
            })
        })
        .collect();
    json!({
        "tier": tier_name(&ahead.tier),
        "rungs": rungs,
        "next": next,
        "more": ahead.escalations.len().saturating_sub(STEPS_SHOWN),
        "meetings": meetings,
    })
}

/// The issue page as `session` may see it.
async fn page_of(s: &AppState, session: &Session, id: &str) -> Response {
    let stored = match s.engine.issue_for(&session.actor, id).await {
        Ok(st) => st,
        Err(e) => return refusal(session, e),
    };
    let mut timeline = match s.engine.store().timeline(id).await {
        Ok(t) => t,
        Err(e) => return refusal(session, e.into()),
    };
    let rules = s.engine.rules();
    let now = s.engine.now();
    let mut before = IssueState::default();
    let mut entries = Vec::with_capacity(timeline.len());
    for e in &mut timeline {
        let next = e.next.take();
        let mut lines = Vec::new();
        if let Some(v) = &mut e.effects {
            let messages = e.messages.take();
            crate::api::readable(
                &rules,
                v,
                messages.as_ref().and_then(Value::as_array),
                &before,
                next.as_ref(),
            );
            lines = v["lines"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
        }
        if let Some(n) = next {
            before = n;
        }
        entries.push(json!({
            "seq": e.seq,
            "at": e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "at_local": super::local(&rules, e.at),
            "actor": e.actor,
            "kind": e.kind,
            "payload": e.payload,
            "lines": lines,
        }));
    }
    let ahead = match s.engine.ahead(rules.clone(), &stored).await {
        Ok(a) => a,
        Err(e) => return refusal(session, e),
    };
    // The meetings with the issue on their agenda, for a role that may see meetings.
    let on_agenda = crate::store::MeetingFilter {
        issue: Some(id.to_string()),
        limit: 20,
        ..Default::default()
    };
    let meetings = match s.engine.meetings_for(&session.actor, on_agenda).await {
        Ok(m) => m,
        Err(EngineError::Forbidden { .. }) => Vec::new(),
        Err(e) => return refusal(session, e),
    };
    let meetings: Vec<Value> = meetings
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "name": rules
                    .meeting(&m.kind)
                    .map(|i| rules.meetings[i as usize].names.get(session.locale).to_string())
                    .unwrap_or_else(|| m.kind.clone()),
                "at": m.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "at_local": super::local(&rules, m.at),
                "status": m.status,
            })
        })
        .collect();
    let issue = &stored.issue;
    let state = &stored.state;
    let row = super::inbox::row(&rules, session.locale, issue, state, now);
    let location = issue.location.as_ref().map(|l| {
        let mut v = json!(l);
        v["map"] = json!(s.console.config.map_link(l.lat, l.lon));
        v
    });
    let mut context = session.context();
    context["issue"] = row;
    context["raw"] = json!({
        "address": issue.address,
        "location": location,
        "photos": issue.photos,
        "after_photos": state.after_photos,
        "reporter": issue.reporter,
        "version": stored.version,
        "meetings": state.meetings,
        "rating": state.rating,
        "request": state.request.as_ref().map(|r| json!({"kind": r.kind, "department": r.department, "duration": r.duration, "reason": r.reason})),
    });
    context["ladder"] = ladder(&rules, session.locale, issue, &ahead);
    context["departments"] = json!(
        rules
            .org
            .departments
            .iter()
            .filter(|d| !state.departments.contains(&d.id))
            .map(|d| json!({"id": d.id, "name": d.names.get(session.locale)}))
            .collect::<Vec<_>>()
    );
    context["meetings"] = json!(meetings);
    context["timeline"] = json!(entries);
    context["actions"] = json!(offered(&rules, &session.actor, issue, state));
    page(StatusCode::OK, "issue.html", session.locale, context)
}

/// `GET /console/issues/{id}`.
pub(super) async fn show(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> Response {
    page_of(&s, &session, &id).await
}

/// An engine's refusal as a page: the same statuses the API answers.
pub(super) fn refusal(session: &Session, e: EngineError) -> Response {
    match e {
        EngineError::NotFound(id) => message(
            StatusCode::NOT_FOUND,
            session.locale,
            "not_found",
            &format!("no issue {id}"),
        ),
        EngineError::Forbidden { message: m, .. } => {
            message(StatusCode::FORBIDDEN, session.locale, "refused", &m)
        }
        EngineError::Refused(Refusal::NotAllowed {
            event,
            state,
            allowed,
        }) => message(
            StatusCode::CONFLICT,
            session.locale,
            "refused",
            &format!(
                "`{event}` is not allowed while the issue is {state}; allowed now: {}",
                allowed.join(", ")
            ),
        ),
        EngineError::Refused(r) => message(
            StatusCode::UNPROCESSABLE_ENTITY,
            session.locale,
            "refused",
            &r.to_string(),
        ),
        other => {
            tracing::error!(error = %other, "a console action failed");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                session.locale,
                "error",
                &other.to_string(),
            )
        }
    }
}

/// The event a form describes: its kind (`event`) among those the console offers, its fields as
/// the form gave them (a rating as a number). A field the kind does not take is refused.
fn event_of(form: &HashMap<String, String>) -> Result<Event, String> {
    let kind = form.get("event").map(String::as_str).unwrap_or("");
    let Some((name, fields)) = ACTIONS.iter().find(|(n, _)| *n == kind) else {
        return Err(format!("`{kind}` is not an action of the console"));
    };
    let mut v = json!({"event": name});
    for (k, value) in form {
        if k == "event" || k == "csrf" {
            continue;
        }
        let Some((_, kind)) = fields.iter().find(|(f, _)| f == k) else {
            return Err(format!("`{name}` has no field `{k}`"));
        };
        v[k.as_str()] = match *kind {
            "rating" => match value.trim().parse::<u8>() {
                Ok(r) => json!(r),
                Err(_) => return Err(format!("rating `{value}`: a whole number from 1 to 5")),
            },
            "yesno" => match value.as_str() {
                "true" => json!(true),
                "false" => json!(false),
                _ => return Err(format!("{k} `{value}`: true or false")),
            },
            _ => json!(value),
        };
    }
    serde_json::from_value(v).map_err(|e| format!("`{name}`: {e}"))
}

/// `POST /console/issues/{id}/act`: one action, through the engine as the session's token;
/// back to the issue page, which shows what it did. A resolution may carry photos of the fixed
/// site (a multipart form).
pub(super) async fn act(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let posted = match super::report::read(&s, request, session.locale).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some(r) = foreign_form(&session, &headers, posted.get("csrf")) {
        return r;
    }
    let event = match event_of(&posted.fields) {
        Ok(e) => e,
        Err(m) => {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                session.locale,
                "refused",
                &m,
            );
        }
    };
    let done = match event {
        Event::Resolved { note, .. } if !posted.photos.is_empty() => {
            s.engine
                .resolve_with_photos(&id, note, &session.actor, &s.photos, posted.photos)
                .await
        }
        _ if !posted.photos.is_empty() => {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                session.locale,
                "refused",
                "only a resolution carries photos",
            );
        }
        event => s.engine.act(&id, event, &session.actor).await,
    };
    match done {
        Ok(_) => redirect(&format!("/console/issues/{id}")),
        Err(e) => refusal(&session, e),
    }
}

/// `GET /console/issues/{id}/photos/{hash}`: a photo of the issue, for whoever may see it.
pub(super) async fn photo(
    state: State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    ids: Path<(String, String)>,
) -> Response {
    crate::api::serve_photo(state, session.actor, ids)
        .await
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(event: &str, fields: &[(&str, &str)]) -> HashMap<String, String> {
        let mut f: HashMap<String, String> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        f.insert("event".into(), event.into());
        f
    }

    #[test]
    fn every_offered_action_has_a_sample_event() {
        let waiting = IssueState {
            request: Some(escalade_rules::issue::Request {
                kind: escalade_rules::issue::RequestKind::Extension,
                department: "urban".into(),
                duration: None,
                reason: String::new(),
                asked_at: chrono::DateTime::default(),
                decide_by: None,
            }),
            ..IssueState::default()
        };
        for (name, _) in ACTIONS {
            assert_eq!(sample(name, &waiting).map(|e| e.name()), Some(name));
        }
        assert!(sample("request_decided", &IssueState::default()).is_none());
    }

    #[test]
    fn a_form_becomes_its_event_and_a_stray_field_is_refused() {
        assert_eq!(
            event_of(&form("progress", &[("note", "crew on site")])).unwrap(),
            Event::Progress {
                note: "crew on site".into()
            }
        );
        assert!(matches!(
            event_of(&form("evaluated", &[("rating", "4")])).unwrap(),
            Event::Evaluated { rating: 4, .. }
        ));
        assert!(event_of(&form("evaluated", &[("rating", "four")])).is_err());
        assert!(event_of(&form("acknowledged", &[("note", "x")])).is_err());
        assert!(event_of(&form("deadline_passed", &[])).is_err());
        assert!(event_of(&form("extension_requested", &[("duration", "soon")])).is_err());
        assert!(matches!(
            event_of(&form(
                "request_decided",
                &[("request", "extension"), ("granted", "false")]
            ))
            .unwrap(),
            Event::RequestDecided { granted: false, .. }
        ));
        assert!(
            event_of(&form(
                "request_decided",
                &[("request", "extension"), ("granted", "maybe")]
            ))
            .is_err()
        );
    }
}
