//! The big screen (大屏): a command centre's read-only wall, opened with a kiosk link
//! (`/console/wall/{token}`, a token of role `kiosk`, which can do nothing else): today's
//! reports, open work by tier, overdue work by district, and a ticker of the latest events,
//! kept current by Server-Sent Events. No issue's text, reporter or photo is shown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use escalade_rules::RuleSet;
use serde_json::{Value, json};

use super::{browser_locale, message, page};
use crate::api::AppState;
use crate::auth::Actor;
use crate::engine::EngineError;

/// Events in the ticker.
const TICKER: i64 = 20;

/// A wall refreshes at most this often, however busy the city.
const WALL_EVERY: Duration = Duration::from_secs(2);

/// The kiosk (or administrator) the link's token names, or the page saying why not.
async fn kiosk(s: &AppState, token: &str, locale: &str) -> Result<Actor, Response> {
    match crate::auth::authenticate(s.engine.store(), token, s.engine.now()).await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(r)) => Err(message(
            StatusCode::UNAUTHORIZED,
            locale,
            "refused",
            &r.message,
        )),
        Err(e) => {
            tracing::error!(error = %e, "reading a kiosk's token failed");
            Err(message(
                StatusCode::SERVICE_UNAVAILABLE,
                locale,
                "error",
                "the store cannot be read",
            ))
        }
    }
}

/// The wall's figures, named in `locale`.
fn figures(
    rules: &RuleSet,
    locale: &str,
    counts: &crate::store::WallCounts,
    ticked: &[crate::store::Ticked],
) -> Value {
    let org = &rules.org;
    let english = locale == "en";
    let name = |n: &escalade_rules::model::Names| if english { n.en.clone() } else { n.zh.clone() };
    // Open work by tier, in the ladder's order.
    let by_tier: Vec<Value> = org
        .tiers
        .iter()
        .map(|t| {
            let n = counts
                .open_by_tier
                .iter()
                .filter(|(tier, _)| tier.as_deref() == Some(t.id.as_str()))
                .map(|(_, n)| n)
                .sum::<i64>();
            json!({"tier": name(&t.names), "count": n})
        })
        .collect();
    let open: i64 = counts.open_by_tier.iter().map(|(_, n)| n).sum();
    // Overdue work by district: each branch's unit under the district it lies in.
    let district_tier = org.tier("district");
    let mut by_district: BTreeMap<String, i64> = BTreeMap::new();
    for (branch, n) in &counts.overdue_by_branch {
        let unit = branch
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        let district = org.unit(unit).and_then(|u| match district_tier {
            Some(t) => org.unit_at_tier(u, t),
            None => Some(u),
        });
        let label =
            district.map_or_else(|| unit.to_string(), |d| name(&org.units[d as usize].names));
        *by_district.entry(label).or_default() += n;
    }
    let most = by_district.values().copied().max().unwrap_or(0).max(1);
    let overdue: i64 = by_district.values().sum();
    let ticker: Vec<Value> = ticked
        .iter()
        .map(|t| {
            let category = rules
                .category(&t.category)
                .map(|c| name(&rules.categories[c as usize].names))
                .unwrap_or_else(|| t.category.clone());
            let unit = org
                .unit(&t.unit)
                .map(|u| name(&org.units[u as usize].names))
                .unwrap_or_else(|| t.unit.clone());
            json!({
                "at": t.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "at_local": super::local(rules, t.at),
                "kind": t.kind,
                "category": category,
                "unit": unit,
            })
        })
        .collect();
    json!({
        "reported": counts.reported,
        "open": open,
        "overdue": overdue,
        "by_tier": by_tier,
        "by_district": by_district
            .into_iter()
            .map(|(d, n)| json!({"district": d, "count": n, "share": n * 100 / most}))
            .collect::<Vec<_>>(),
        "ticker": ticker,
    })
}

/// `GET /console/wall/{token}`: the wall.
pub(super) async fn wall(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let rules = s.engine.rules();
    let locale = browser_locale(&headers, &rules.settings.locale);
    let actor = match kiosk(&s, &token, locale).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (counts, ticked) = match s.engine.wall_for(&actor, TICKER).await {
        Ok(w) => w,
        Err(EngineError::Forbidden { message: m, .. }) => {
            return message(StatusCode::FORBIDDEN, locale, "refused", &m);
        }
        Err(e) => {
            return super::unavailable(locale, "reading the wall", e);
        }
    };
    let since = ticked.first().map_or(0, |t| t.seq);
    let mut context = json!({"wall": figures(&rules, locale, &counts, &ticked)});
    context["live"] = json!(format!("/console/wall/{token}/live?since={since}"));
    page(StatusCode::OK, "wall.html", locale, context)
}

/// `GET /console/wall/{token}/live`: a `changed` event when anything was committed (at most
/// every 2 s), so the wall reads itself again; it ends when the token stops working.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct LiveQuery {
    /// The latest event the page showed.
    since: i64,
}

pub(super) async fn live(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LiveQuery>,
) -> Response {
    let locale = browser_locale(&headers, &s.engine.rules().settings.locale);
    if let Err(r) = kiosk(&s, &token, locale).await {
        return r;
    }
    let poll = s.engine.store().poll_every();
    let commits = s.engine.commits();
    let events = futures_util::stream::unfold(
        Some((s, token, commits, Some(q.since))),
        move |w| async move {
            let (s, token, mut commits, mut last) = w?;
            loop {
                tokio::time::sleep(WALL_EVERY).await;
                let waited = match poll {
                    Some(p) => tokio::time::timeout(p, commits.changed())
                        .await
                        .unwrap_or(Ok(())),
                    None => commits.changed().await,
                };
                if waited.is_err() {
                    return None;
                }
                let live = crate::auth::authenticate(s.engine.store(), &token, s.engine.now())
                    .await
                    .is_ok_and(|r| r.is_ok());
                if !live {
                    let end = Event::default()
                        .event("ended")
                        .data("the link no longer works");
                    return Some((Ok::<_, std::convert::Infallible>(end), None));
                }
                // What changed, by the latest event (another replica's commits too).
                let latest = s
                    .engine
                    .store()
                    .ticker(1)
                    .await
                    .ok()
                    .and_then(|t| t.first().map(|t| t.seq));
                if latest != last {
                    last = latest;
                    let changed = Event::default()
                        .event("changed")
                        .data(latest.unwrap_or(0).to_string());
                    return Some((Ok(changed), Some((s, token, commits, last))));
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
