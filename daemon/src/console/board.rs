//! A leader's screens: the overdue and escalated work of their subtree, grouped by child unit
//! and by department; and the scorecards of a period, as charts and as CSV.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{SignedIn, message, page};
use crate::api::AppState;
use crate::engine::EngineError;

/// Issues listed on the board at most, the nearest deadline first; the counts cover them all.
const SHOWN: i64 = 100;

/// `GET /console/board`: open issues of the leader's subtree (the whole city for an
/// administrator) that are overdue or escalated above the first tier, counted by child unit
/// and by department, the most urgent listed under their unit.
pub(super) async fn board(State(s): State<Arc<AppState>>, SignedIn(session): SignedIn) -> Response {
    let rules = s.engine.rules();
    let now = s.engine.now();
    let (counts, listed) = match s.engine.board_for(&session.actor, &rules, SHOWN).await {
        Ok(b) => b,
        Err(EngineError::Forbidden { message: m, .. }) => {
            return message(StatusCode::FORBIDDEN, session.locale, "refused", &m);
        }
        Err(e) => return super::unavailable(session.locale, "reading the board", e),
    };
    let org = &rules.org;
    let name = |n: &escalade_rules::model::Names| n.get(session.locale).to_string();
    // The child of the leader's unit each issue lies under (the child of the city for an
    // administrator; the unit itself when it is the leader's).
    let top = session.actor.scope.as_deref().and_then(|u| org.unit(u));
    let child_of = |unit: &str| -> String {
        let Some(u) = org.unit(unit) else {
            return unit.to_string();
        };
        let path: Vec<_> = org.branch(u).collect();
        // `branch` runs from the unit up to the root.
        let child = match top {
            Some(t) => path
                .iter()
                .position(|x| *x == t)
                .and_then(|i| i.checked_sub(1))
                .map(|i| path[i]),
            None => path.len().checked_sub(2).map(|i| path[i]),
        };
        name(&org.units[child.unwrap_or(u) as usize].names)
    };
    let mut by_unit: BTreeMap<String, (i64, Vec<Value>)> = BTreeMap::new();
    for (branch, n) in &counts.by_branch {
        // A branch ends with the issue's own unit: `/zz/d-1/s-1/c-1/g-1/`.
        let unit = branch
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        by_unit.entry(child_of(unit)).or_default().0 += n;
    }
    for l in &listed {
        let row = super::inbox::row(&rules, session.locale, &l.issue.issue, &l.issue.state, now);
        by_unit
            .entry(child_of(&l.issue.issue.unit))
            .or_default()
            .1
            .push(row);
    }
    let mut by_department: BTreeMap<String, i64> = BTreeMap::new();
    for (d, n) in &counts.by_department {
        let shown = org
            .department(d)
            .map(|ix| name(&org.departments[ix as usize].names))
            .unwrap_or_else(|| d.clone());
        *by_department.entry(shown).or_default() += n;
    }
    let mut context = session.context();
    context["total"] = json!(counts.total);
    context["shown"] = json!(listed.len());
    context["units"] = json!(
        by_unit
            .into_iter()
            .map(|(unit, (count, issues))| json!({"unit": unit, "count": count, "issues": issues}))
            .collect::<Vec<_>>()
    );
    let most = by_department.values().copied().max().unwrap_or(0).max(1);
    context["departments"] = json!(
        by_department
            .into_iter()
            .map(|(d, n)| json!({"department": d, "count": n, "share": n * 100 / most}))
            .collect::<Vec<_>>()
    );
    page(StatusCode::OK, "board.html", session.locale, context)
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct PeriodQuery {
    /// `day`, `week` (the default) or `month`, up to now.
    period: Option<String>,
    /// The first day (`2026-03-01`) of a chosen period, in the organisation's time zone.
    from: Option<String>,
    /// Its last day, included (default today).
    to: Option<String>,
}

/// The longest period a card may cover.
const MAX_DAYS: i64 = 366;

impl PeriodQuery {
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }

    /// The instants the cards cover: the days from `from` to `to` (both included) in `tz`
    /// when either is given, else the last day, week or month up to `now`.
    fn span(
        &self,
        tz: chrono_tz::Tz,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
        if Self::given(&self.from).is_none() && Self::given(&self.to).is_none() {
            let days = match Self::given(&self.period).unwrap_or("week") {
                "day" => 1,
                "week" => 7,
                "month" => 30,
                other => return Err(format!("unknown period `{other}`: day, week or month")),
            };
            return Ok((now - Duration::days(days), now));
        }
        let day = |field: &str, v: &str| {
            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| format!("{field} `{v}` is not a day (2026-03-01)"))
        };
        let today = now.with_timezone(&tz).date_naive();
        let to = match Self::given(&self.to) {
            Some(v) => day("to", v)?,
            None => today,
        };
        let from = match Self::given(&self.from) {
            Some(v) => day("from", v)?,
            None => to,
        };
        if from > to {
            return Err(format!("from {from} is after to {to}"));
        }
        if (to - from).num_days() >= MAX_DAYS {
            return Err(format!(
                "from {from} to {to} is longer than {MAX_DAYS} days"
            ));
        }
        // Midnight in the zone; on a day a clock change skips midnight, the first instant.
        let start = |d: chrono::NaiveDate| {
            let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
            tz.from_local_datetime(&midnight)
                .earliest()
                .unwrap_or_else(|| tz.from_utc_datetime(&midnight))
                .with_timezone(&Utc)
        };
        let end = to
            .succ_opt()
            .ok_or_else(|| format!("to {to} is out of range"))?;
        Ok((start(from), start(end)))
    }

    /// The query as a URL carries it.
    fn url_query(&self) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("period", Self::given(&self.period)),
            ("from", Self::given(&self.from)),
            ("to", Self::given(&self.to)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// The cards of the period the caller may read, or the page saying why not.
async fn cards(
    s: &AppState,
    session: &super::Session,
    q: &PeriodQuery,
) -> Result<crate::scorecards::Scorecards, Response> {
    let rules = s.engine.rules();
    let tz = rules.org.calendars[rules.settings.calendar as usize].tz();
    let (from, to) = q
        .span(tz, s.engine.now())
        .map_err(|m| message(StatusCode::BAD_REQUEST, session.locale, "error", &m))?;
    s.engine
        .scorecards_for(&session.actor, from, to, None, None, session.locale)
        .await
        .map_err(|e| match e {
            EngineError::Forbidden { message: m, .. } => {
                message(StatusCode::FORBIDDEN, session.locale, "refused", &m)
            }
            e => super::unavailable(session.locale, "reading the scorecards", e),
        })
}

/// A score as a share of its maximum, in percent (none when nothing is scored).
fn percent(score: &Option<escalade_rules::scoring::Score>) -> Option<f64> {
    score
        .as_ref()
        .filter(|s| s.out_of > 0.0)
        .map(|s| (s.points / s.out_of * 1000.0).round() / 10.0)
}

/// `GET /console/scorecards`: the departments' and units' cards of a period, with a chart of
/// their points.
pub(super) async fn scorecards(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let c = match cards(&s, &session, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let departments: Vec<Value> = c
        .departments
        .iter()
        .map(|d| {
            let f = &d.figures;
            json!({
                "name": d.name,
                "assigned": f.assigned,
                "acknowledged_on_time": f.acknowledged_on_time,
                "resolved": f.resolved,
                "resolved_on_time": f.resolved_on_time,
                "reopened": f.reopened,
                "rating": (f.rated > 0).then(|| (f.rating_sum as f64 / f.rated as f64 * 10.0).round() / 10.0),
                "points": d.score.as_ref().map(|s| s.points),
                "out_of": d.score.as_ref().map(|s| s.out_of),
                "percent": percent(&d.score),
            })
        })
        .collect();
    let units: Vec<Value> = c
        .units
        .iter()
        .map(|u| {
            let f = &u.figures;
            json!({
                "name": u.name,
                "reported": f.reported,
                "rated_valid": f.rated_valid,
                "verified_on_time": f.verified_on_time,
                "verification_lapsed": f.verification_lapsed,
                "points": u.score.as_ref().map(|s| s.points),
                "percent": percent(&u.score),
            })
        })
        .collect();
    let mut context = session.context();
    context["period"] = json!(
        q.period
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "week".into())
    );
    context["chosen"] =
        json!({"from": PeriodQuery::given(&q.from), "to": PeriodQuery::given(&q.to)});
    context["csv"] = json!(format!("/console/scorecards.csv?{}", q.url_query()));
    context["from"] = json!(c.from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    context["to"] = json!(c.to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    context["departments"] = json!(departments);
    context["units"] = json!(units);
    page(StatusCode::OK, "scorecards.html", session.locale, context)
}

/// `GET /console/scorecards.csv`: the same cards as CSV, one row per department then per
/// unit.
pub(super) async fn scorecards_csv(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let c = match cards(&s, &session, &q).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "kind",
        "id",
        "name",
        "assigned",
        "acknowledged_on_time",
        "resolved",
        "resolved_on_time",
        "reopened",
        "rated",
        "rating_sum",
        "reported",
        "verified_on_time",
        "points",
        "out_of",
    ]);
    let n = |x: u64| x.to_string();
    let pts = |s: &Option<escalade_rules::scoring::Score>| {
        s.as_ref()
            .map(|s| (s.points.to_string(), s.out_of.to_string()))
            .unwrap_or_default()
    };
    for d in &c.departments {
        let f = &d.figures;
        let (p, o) = pts(&d.score);
        let _ = w.write_record([
            "department".to_string(),
            f.department.clone(),
            d.name.clone(),
            n(f.assigned),
            n(f.acknowledged_on_time),
            n(f.resolved),
            n(f.resolved_on_time),
            n(f.reopened),
            n(f.rated),
            n(f.rating_sum),
            String::new(),
            String::new(),
            p,
            o,
        ]);
    }
    for u in &c.units {
        let f = &u.figures;
        let (p, o) = pts(&u.score);
        let _ = w.write_record([
            "unit".to_string(),
            f.unit.clone(),
            u.name.clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            n(f.reported),
            n(f.verified_on_time),
            p,
            o,
        ]);
    }
    let body = w.into_inner().unwrap_or_default();
    let file = format!(
        "attachment; filename=\"scorecards-{}-{}.csv\"",
        c.from.format("%Y%m%d"),
        c.to.format("%Y%m%d")
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, file),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}
