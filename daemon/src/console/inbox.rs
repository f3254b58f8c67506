//! The inbox: the open issues the signed-in role works on, the nearest deadline first, each
//! deadline as a clock of the working time left on its calendar. Filters live in the URL, so a
//! view can be bookmarked.

use std::sync::Arc;

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use escalade_rules::{Issue, IssueState, RuleSet};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Session, SignedIn, message, page};
use crate::api::AppState;
use crate::auth::Role;
use crate::engine::EngineError;
use crate::store::IssueFilter;
use sha2::{Digest, Sha256};

/// Issues on a page of the inbox.
const PAGE: i64 = 50;

#[derive(Clone, Deserialize, Default)]
#[serde(default)]
pub(super) struct InboxQuery {
    /// Only issues in this state.
    state: Option<String>,
    /// Only issues at this tier.
    tier: Option<String>,
    /// Only issues with a deadline passed.
    overdue: Option<String>,
    /// Continue after this cursor.
    after: Option<String>,
}

/// How a deadline stands: the working time left on its calendar, and how much of its whole
/// span that is.
pub(super) fn clock(
    rules: &RuleSet,
    issue: &Issue,
    state: &IssueState,
    kind: &str,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Value {
    let calendar = rules.category(&issue.category).map(|c| {
        let category = &rules.categories[c as usize];
        let priority = state.priority.unwrap_or(category.priority);
        rules.deadline_calendar(category, priority, &state.departments)
    });
    let (left, span) = match calendar {
        Some(cal) => (
            if due > now {
                cal.working_seconds_between(now, due)
            } else {
                -cal.working_seconds_between(due, now)
            },
            state
                .reported_at
                .map(|r| cal.working_seconds_between(r, due))
                .unwrap_or(0),
        ),
        None => ((due - now).num_seconds(), 0),
    };
    // Green while more than half the span is left, amber down to a fifth, then red; overdue
    // once passed (by the wall clock: a deadline passes at its instant).
    let level = if due <= now {
        "overdue"
    } else if span <= 0 || left * 2 > span {
        "green"
    } else if left * 5 > span {
        "amber"
    } else {
        "red"
    };
    json!({
        "kind": kind,
        "due": due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "due_local": super::local(rules, due),
        "left": human(left.abs()),
        "level": level,
        "calendar": calendar.map(|c| c.id()),
    })
}

/// `3h 20m`, `2d 4h` (days of 24 working hours would mislead: hours and minutes up to a day,
/// then days and hours of the wall clock's length).
fn human(secs: i64) -> String {
    let m = secs / 60;
    let (d, h, m) = (m / 1440, (m / 60) % 24, m % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A listed issue as the inbox shows it.
pub(super) fn row(
    rules: &RuleSet,
    locale: &str,
    issue: &Issue,
    state: &IssueState,
    now: DateTime<Utc>,
) -> Value {
    let name = |names: &escalade_rules::model::Names| {
        if locale == "en" {
            names.en.clone()
        } else {
            names.zh.clone()
        }
    };
    let category = rules
        .category(&issue.category)
        .map(|c| name(&rules.categories[c as usize].names))
        .unwrap_or_else(|| issue.category.clone());
    let unit = rules
        .org
        .unit(&issue.unit)
        .map(|u| name(&rules.org.units[u as usize].names))
        .unwrap_or_else(|| issue.unit.clone());
    let departments: Vec<String> = state
        .departments
        .iter()
        .map(|d| {
            rules
                .org
                .department(d)
                .map(|ix| name(&rules.org.departments[ix as usize].names))
                .unwrap_or_else(|| d.clone())
        })
        .collect();
    let mut clocks = Vec::new();
    if state.state.is_open() {
        if let Some(due) = state.acknowledge_by
            && state.state == escalade_rules::State::Assigned
        {
            clocks.push(clock(rules, issue, state, "acknowledge", due, now));
        }
        if let Some(due) = state.resolve_by {
            clocks.push(clock(rules, issue, state, "resolve", due, now));
        }
    }
    json!({
        "id": issue.id,
        "category": category,
        "unit": unit,
        "departments": departments,
        "state": state.state,
        "tier": state.tier,
        "tier_name": state.tier.as_deref().map(|t| super::tier_name(rules, locale, t)),
        "description": issue.description,
        "reported_at": state.reported_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "reported_local": state.reported_at.map(|t| super::local(rules, t)),
        "clocks": clocks,
    })
}

impl InboxQuery {
    /// The filter of the inbox's main list, or what is wrong with the query.
    fn filter(&self, rules: &RuleSet, now: DateTime<Utc>) -> Result<IssueFilter, String> {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let mut f = IssueFilter {
            open: true,
            by_deadline: true,
            limit: PAGE,
            state: given(&self.state),
            tier: given(&self.tier),
            overdue_at: given(&self.overdue).map(|_| now),
            ..IssueFilter::default()
        };
        if let Some(st) = &f.state
            && escalade_rules::State::parse(st).is_none()
        {
            return Err(format!("unknown state `{st}`"));
        }
        if let Some(t) = &f.tier
            && rules.org.tier(t).is_none()
        {
            return Err(format!("unknown tier `{t}`"));
        }
        if let Some(c) = given(&self.after) {
            let parsed = c
                .split_once(':')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())));
            f.after = Some(parsed.ok_or_else(|| format!("invalid cursor `{c}`"))?);
        }
        Ok(f)
    }

    /// The query as the inbox's URL carries it (without the live stream's `since`).
    fn url_query(&self) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("state", &self.state),
            ("tier", &self.tier),
            ("overdue", &self.overdue),
            ("after", &self.after),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// What an inbox shows: its page of open issues (and the cursor after it) and, for a reporter,
/// the resolutions to check.
struct Shown {
    issues: Vec<crate::store::Listed>,
    to_verify: Vec<crate::store::Listed>,
}

impl Shown {
    async fn read(s: &AppState, session: &Session, f: IssueFilter) -> Result<Shown, EngineError> {
        let issues = s.engine.list_for(&session.actor, f).await?;
        // A reporter also checks the resolutions of what was reported in its grid.
        let to_verify = if session.actor.role == Role::Reporter {
            let resolved = IssueFilter {
                state: Some("resolved".into()),
                limit: PAGE,
                ..IssueFilter::default()
            };
            s.engine.list_for(&session.actor, resolved).await?
        } else {
            Vec::new()
        };
        Ok(Shown { issues, to_verify })
    }

    /// What changes when anything shown changes: the issues and their versions, in order.
    fn signature(&self) -> String {
        let mut h = Sha256::new();
        for l in self.issues.iter().chain(&self.to_verify) {
            h.update(l.issue.issue.id.as_bytes());
            h.update(l.issue.version.to_be_bytes());
        }
        h.update((self.issues.len() as u64).to_be_bytes());
        hex::encode(&h.finalize()[..12])
    }
}

/// A store or permission error while reading an inbox, as a page.
fn unreadable(session: &Session, e: EngineError) -> Response {
    match e {
        EngineError::Forbidden { message: m, .. } => {
            message(StatusCode::FORBIDDEN, session.locale, "refused", &m)
        }
        e => super::unavailable(session.locale, "listing the inbox", e),
    }
}

/// `GET /console/inbox`: the role's open issues (a department's own, a leader's or reporter's
/// subtree, everything for an administrator), the nearest deadline first. The page follows
/// `/console/inbox/live` to show what changes without a reload.
pub(super) async fn inbox(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Query(q): Query<InboxQuery>,
) -> Response {
    let rules = s.engine.rules();
    let now = s.engine.now();
    let f = match q.filter(&rules, now) {
        Ok(f) => f,
        Err(m) => return message(StatusCode::BAD_REQUEST, session.locale, "error", &m),
    };
    let shown = match Shown::read(&s, &session, f).await {
        Ok(sh) => sh,
        Err(e) => return unreadable(&session, e),
    };
    let next = (shown.issues.len() as i64 == PAGE)
        .then(|| shown.issues.last().map(|l| l.cursor.clone()))
        .flatten();
    let rows = |l: &[crate::store::Listed]| -> Vec<Value> {
        l.iter()
            .map(|l| row(&rules, session.locale, &l.issue.issue, &l.issue.state, now))
            .collect()
    };
    let query = q.url_query();
    let live = format!(
        "/console/inbox/live?{}{}since={}",
        query,
        if query.is_empty() { "" } else { "&" },
        shown.signature()
    );
    let tiers: Vec<Value> = rules
        .org
        .tiers
        .iter()
        .map(|t| json!({"id": t.id, "name": t.names.get(session.locale)}))
        .collect();
    let mut context = session.context();
    context["issues"] = json!(rows(&shown.issues));
    context["to_verify"] = json!(rows(&shown.to_verify));
    // The next page: the same filters, after this page's last issue.
    context["more"] = json!(next.map(|cursor| {
        let next_page = InboxQuery {
            after: Some(cursor),
            ..q.clone()
        };
        format!("/console/inbox?{}", next_page.url_query())
    }));
    context["live"] = json!(live);
    context["filter"] = json!({"state": q.state, "tier": q.tier, "overdue": q.overdue.is_some_and(|v| !v.is_empty())});
    context["tiers"] = json!(tiers);
    context["states"] = json!(["assigned", "acknowledged", "in_progress", "suspended"]);
    page(StatusCode::OK, "inbox.html", session.locale, context)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LiveQuery {
    #[serde(flatten)]
    inbox: InboxQuery,
    /// The signature of what the page showed.
    since: String,
}

/// How often a live inbox looks at the store at least when other replicas share it (their
/// commits are not counted here).
const LIVE_POLL: Duration = Duration::from_secs(1);

/// The least time between two reads of one live inbox: commits in a burst are read once.
const LIVE_SETTLE: Duration = Duration::from_millis(250);

/// `GET /console/inbox/live`: Server-Sent Events, a `changed` event each time what the inbox
/// shows changes (an issue assigned, acted on, gone), within a second of its commit. The stream
/// ends when the session does.
pub(super) async fn live(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
) -> Response {
    let rules = s.engine.rules();
    let f = match q.inbox.filter(&rules, s.engine.now()) {
        Ok(f) => f,
        Err(m) => return message(StatusCode::BAD_REQUEST, session.locale, "error", &m),
    };
    let token = super::cookie(&headers, super::COOKIE)
        .unwrap_or_default()
        .to_string();
    let poll = s.engine.store().poll_every().map(|p| p.min(LIVE_POLL));
    let commits = s.engine.commits();
    struct Watch {
        s: Arc<AppState>,
        session: Session,
        token: String,
        f: IssueFilter,
        last: String,
        commits: tokio::sync::watch::Receiver<u64>,
        poll: Option<Duration>,
        read_at: Option<tokio::time::Instant>,
    }
    let start = Watch {
        s,
        session,
        token,
        f,
        last: q.since,
        commits,
        poll,
        read_at: None,
    };
    let events = futures_util::stream::unfold(Some(start), |w| async move {
        let mut w = w?;
        loop {
            // A commit here, or (on a shared store) the next look; a keep-alive covers the
            // quiet in between.
            let waited = match w.poll {
                Some(p) => tokio::time::timeout(p, w.commits.changed())
                    .await
                    .unwrap_or(Ok(())),
                None => w.commits.changed().await,
            };
            if waited.is_err() {
                return None;
            }
            // At most one read per settle time: the commits that come meanwhile are seen by it.
            if let Some(at) = w.read_at {
                tokio::time::sleep_until(at + LIVE_SETTLE).await;
            }
            w.commits.borrow_and_update();
            w.read_at = Some(tokio::time::Instant::now());
            let live = crate::auth::authenticate(w.s.engine.store(), &w.token, w.s.engine.now())
                .await
                .is_ok_and(|r| r.is_ok());
            if !live {
                let end = Event::default().event("ended").data("the session ended");
                return Some((Ok::<_, std::convert::Infallible>(end), None));
            }
            let Ok(shown) = Shown::read(&w.s, &w.session, w.f.clone()).await else {
                continue;
            };
            let sig = shown.signature();
            if sig != w.last {
                w.last = sig.clone();
                let changed = Event::default().event("changed").data(sig);
                return Some((Ok(changed), Some(w)));
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn time_left_reads_in_minutes_hours_then_days() {
        assert_eq!(human(59), "0m");
        assert_eq!(human(45 * 60), "45m");
        assert_eq!(human(3 * 3600 + 20 * 60), "3h 20m");
        assert_eq!(human(2 * 86400 + 4 * 3600 + 59), "2d 4h");
    }
}
