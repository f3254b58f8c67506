//! Reporting from a phone: the category picker in the reporter's language, the unit preselected,
//! the text, photos from the camera and, if the browser gives it, the location; and the forms
//! that carry photos (a report, a resolution with photos of the fixed site) read as
//! `multipart/form-data`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use escalade_rules::Issue;
use escalade_rules::issue::Location;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{SignedIn, foreign_form, message, page, redirect};
use crate::api::{ApiError, AppState};
use crate::auth::Role;
use crate::photos::Received;

/// A form's text fields, and its photos received (checked, not stored yet).
pub(super) struct Posted {
    pub fields: HashMap<String, String>,
    pub photos: Vec<Received>,
}

impl Posted {
    pub fn get(&self, k: &str) -> &str {
        self.fields.get(k).map(String::as_str).unwrap_or("")
    }
}

/// An API error on a console form, as a page.
pub(super) fn refused(locale: &str, e: ApiError) -> Response {
    message(e.status, locale, "refused", &e.message)
}

/// Reads a form, URL-encoded or multipart: its text fields (at most `max_text` bytes in all)
/// and its `photo` files (each checked as a report's photos are; a file input left empty is
/// no photo), in the uploads' turn and within their time limit.
pub(super) async fn read(s: &AppState, request: Request, locale: &str) -> Result<Posted, Response> {
    let max_text = s.turns.max_body_bytes;
    if !crate::api::is_multipart(request.headers()) {
        let axum::Form(fields) = axum::Form::<HashMap<String, String>>::from_request(request, &())
            .await
            .map_err(|e| message(e.status(), locale, "refused", &e.body_text()))?;
        return Ok(Posted {
            fields,
            photos: Vec::new(),
        });
    }
    let _turn = crate::api::turn(&s.turns.uploads, "uploads")
        .await
        .map_err(|e| refused(locale, e))?;
    let limit = s.turns.limits.upload_timeout.0;
    let reading = async {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| message(e.status(), locale, "refused", &e.body_text()))?;
        let mut posted = Posted {
            fields: HashMap::new(),
            photos: Vec::new(),
        };
        let mut text = 0usize;
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|e| refused(locale, crate::api::multipart_error(e)))?
        {
            let name = field.name().unwrap_or_default().to_string();
            if name == "photo" {
                if field.file_name().is_none_or(str::is_empty) {
                    continue;
                }
                let n = posted.photos.len() + 1;
                let received =
                    crate::api::read_photo(&mut field, n, s.photo_limits, &s.photos, "a form")
                        .await
                        .map_err(|e| refused(locale, e))?;
                posted.photos.push(received);
                continue;
            }
            let value = field
                .text()
                .await
                .map_err(|e| refused(locale, crate::api::multipart_error(e)))?;
            text += value.len();
            if text > max_text {
                return Err(message(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    locale,
                    "refused",
                    &format!("the form's text is longer than {max_text} bytes"),
                ));
            }
            posted.fields.insert(name, value);
        }
        Ok(posted)
    };
    match tokio::time::timeout(limit, reading).await {
        Ok(r) => r,
        Err(_) => Err(refused(locale, crate::api::too_slow("upload", limit))),
    }
}

/// `GET /console/report`: the form, for a role that reports (a grid's reporter, an
/// administrator).
pub(super) async fn form(State(s): State<Arc<AppState>>, SignedIn(session): SignedIn) -> Response {
    if !matches!(session.actor.role, Role::Reporter | Role::Admin) {
        return message(
            StatusCode::FORBIDDEN,
            session.locale,
            "refused",
            &session.actor.may_not("report an issue"),
        );
    }
    let rules = s.engine.rules();
    let english = session.locale == "en";
    let categories: Vec<_> = rules
        .categories
        .iter()
        .map(|c| json!({"code": c.code, "name": if english { &c.names.en } else { &c.names.zh }}))
        .collect();
    let mut key = [0u8; 16];
    let _ = getrandom::fill(&mut key);
    let mut context = session.context();
    context["categories"] = json!(categories);
    context["unit"] = json!(session.actor.scope.clone().unwrap_or_default());
    context["key"] = json!(hex::encode(key));
    context["max_photos"] = json!(s.photo_limits.max_photos);
    page(StatusCode::OK, "report.html", session.locale, context)
}

/// `POST /console/report`: the report through the engine, with its photos; a form sent twice
/// (its hidden key) is the same report.
pub(super) async fn submit(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let posted = match read(&s, request, session.locale).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some(r) = foreign_form(&session, &headers, posted.get("csrf")) {
        return r;
    }
    let number = |k: &str| -> Result<Option<f64>, String> {
        let v = posted.get(k).trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{k}: `{v}` is not a number"))
    };
    let location = match (number("lat"), number("lon")) {
        (Ok(Some(lat)), Ok(Some(lon))) => Ok(Some(Location { lat, lon })),
        (Ok(None), Ok(None)) => Ok(None),
        (Err(m), _) | (_, Err(m)) => Err(m),
        _ => Err("a location needs both its latitude and its longitude".to_string()),
    };
    let location = match location {
        Ok(l) => l,
        Err(m) => {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                session.locale,
                "refused",
                &m,
            );
        }
    };
    let address = posted.get("address").trim();
    let issue = Issue {
        category: posted.get("category").to_string(),
        unit: posted.get("unit").trim().to_string(),
        description: posted.get("description").to_string(),
        address: (!address.is_empty()).then(|| address.to_string()),
        location,
        ..Issue::default()
    };
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&issue).unwrap_or_default());
    for p in &posted.photos {
        hasher.update(p.photo.hash.as_bytes());
    }
    let hash = format!("{:x}", hasher.finalize());
    let key = format!("console-{}", posted.get("key"));
    let key = (posted.get("key").len() == 32).then_some(key);
    let photos = (!posted.photos.is_empty()).then(|| (&*s.photos, posted.photos));
    match s
        .engine
        .submit_with_photos(
            issue,
            &session.actor,
            key.as_deref().map(|k| (k, hash.as_str())),
            photos,
        )
        .await
    {
        Ok(submitted) => redirect(&format!("/console/issues/{}", submitted.issue.issue.id)),
        Err(e) => super::issue::refusal(&session, e),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct MineQuery {
    /// Continue after this cursor (the previous page's last).
    after: Option<String>,
}

/// Reports on a page of one's own reports.
const MINE_PAGE: i64 = 50;

/// `GET /console/mine`: the signed-in person's own reports, the latest first, each with its
/// state and its deadlines' clocks; a page at a time.
pub(super) async fn mine(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    axum::extract::Query(q): axum::extract::Query<MineQuery>,
) -> Response {
    let Some(person) = session.actor.person.clone() else {
        return message(
            StatusCode::FORBIDDEN,
            session.locale,
            "refused",
            "this session acts for no person",
        );
    };
    let after = match q.after.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(c) => match c
            .split_once(':')
            .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
        {
            Some(a) => Some(a),
            None => {
                return message(
                    StatusCode::BAD_REQUEST,
                    session.locale,
                    "error",
                    &format!("invalid cursor `{c}`"),
                );
            }
        },
    };
    let f = crate::store::IssueFilter {
        reporter: Some(person),
        newest_first: true,
        after,
        limit: MINE_PAGE,
        ..Default::default()
    };
    let listed = match s.engine.list_for(&session.actor, f).await {
        Ok(l) => l,
        Err(crate::engine::EngineError::Forbidden { message: m, .. }) => {
            return message(StatusCode::FORBIDDEN, session.locale, "refused", &m);
        }
        Err(e) => return super::unavailable(session.locale, "listing your reports", e),
    };
    let rules = s.engine.rules();
    let now = s.engine.now();
    let rows: Vec<serde_json::Value> = listed
        .iter()
        .map(|l| super::inbox::row(&rules, session.locale, &l.issue.issue, &l.issue.state, now))
        .collect();
    let more = (listed.len() as i64 == MINE_PAGE)
        .then(|| listed.last())
        .flatten()
        .map(|l| {
            format!(
                "/console/mine?{}",
                serde_urlencoded::to_string([("after", &l.cursor)]).unwrap_or_default()
            )
        });
    let mut context = session.context();
    context["issues"] = json!(rows);
    context["more"] = json!(more);
    page(StatusCode::OK, "mine.html", session.locale, context)
}
