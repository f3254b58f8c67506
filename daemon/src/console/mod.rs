//! The web console: pages for the people of the organisation, served by the daemon itself under
//! `/console`. Server-rendered HTML (minijinja), every form a plain HTML form first, htmx served
//! from the binary; no request to any other origin (a strict Content-Security-Policy says so).
//!
//! A person signs in with a password set through a one-time invitation
//! (`escalade person invite`). A session is an API token of the person's, made at sign-in with
//! their role and scope from the organisation (a department's contact acts for it, a unit's
//! leader leads its subtree, an administrator named in the configuration administers), a label
//! and an expiry, and held in an HttpOnly, SameSite cookie: replicas share it through the
//! store, signing out revokes it, and everything the console does goes through the engine as
//! that token, as the API would. Every form that changes something carries a token derived from
//! the session (CSRF), and its `Origin` must be this server's.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::AppState;
use crate::auth::{Actor, Role};
use crate::notify::config::Dur;

mod admin;
mod board;
mod inbox;
mod issue;
mod leader;
mod report;
mod signin;
mod wall;

pub use signin::{Emailed, Invitation, InviteError, hash_password, invitable, invite, new_invite};

/// The console's files: templates, styles, scripts and messages, embedded in the binary.
#[derive(rust_embed::RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/console/"]
struct Files;

/// `console:` in the daemon's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// People of the organisation who may sign in as administrators.
    pub admins: Vec<String>,
    /// How long a session lasts from sign-in.
    pub session: Dur,
    /// How long an invitation's link works.
    pub invite: Dur,
    /// The console's address as people reach it (`https://escalade.city.example/`), for the
    /// links `person invite` prints; default the `links` base, else the listen address.
    pub base_url: Option<String>,
    /// A map's address for an issue's place, `{lat}` and `{lon}` replaced by its coordinates
    /// (WGS 84 degrees): `https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=18/{lat}/{lon}`.
    /// Without it the issue page shows the coordinates alone.
    pub map_url: Option<String>,
}

impl ConsoleConfig {
    /// Checks the section: a map template is an http or https URL that places both coordinates.
    pub fn check(&self) -> Result<(), String> {
        if let Some(t) = &self.map_url {
            let bad = |why: &str| format!("console.map_url: `{t}` {why}");
            if !t.contains("{lat}") || !t.contains("{lon}") {
                return Err(bad("places no `{lat}` or no `{lon}`"));
            }
            let filled = t.replace("{lat}", "0").replace("{lon}", "0");
            if let Some(i) = filled.find(['{', '}']) {
                return Err(bad(&format!(
                    "has `{}`, which is not `{{lat}}` or `{{lon}}`",
                    &filled[i..=i]
                )));
            }
            let url = reqwest::Url::parse(&filled).map_err(|_| bad("is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("is not an http or https URL"));
            }
        }
        Ok(())
    }

    /// The map's address for a place, when a template is configured.
    pub fn map_link(&self, lat: f64, lon: f64) -> Option<String> {
        self.map_url.as_ref().map(|t| {
            t.replace("{lat}", &format!("{lat}"))
                .replace("{lon}", &format!("{lon}"))
        })
    }
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            admins: Vec::new(),
            session: Dur(std::time::Duration::from_secs(12 * 3600)),
            invite: Dur(std::time::Duration::from_secs(72 * 3600)),
            base_url: None,
            map_url: None,
        }
    }
}

/// The console's state beside the API's: its configuration.
#[derive(Default)]
pub struct Console {
    pub config: ConsoleConfig,
}

impl Console {
    pub fn new(config: ConsoleConfig) -> Console {
        Console { config }
    }
}

/// The console's routes; the forms that carry photos take bodies as large as the API's uploads.
pub fn router(state: &AppState) -> Router<Arc<AppState>> {
    let l = state.photo_limits;
    let uploads = axum::extract::DefaultBodyLimit::max(
        state
            .turns
            .max_body_bytes
            .saturating_add(l.max_photos.saturating_mul(l.max_photo_bytes))
            .saturating_add(64 << 10),
    );
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route(
            "/console/sign-in",
            get(signin::sign_in_page).post(signin::sign_in),
        )
        .route("/console/sign-out", post(signin::sign_out))
        .route("/console/role", post(signin::switch_role))
        .route(
            "/console/invite/{token}",
            get(signin::invite_page).post(signin::accept_invite),
        )
        .route("/console/inbox", get(inbox::inbox))
        .route("/console/inbox/live", get(inbox::live))
        .route("/console/board", get(board::board))
        .route("/console/admin/rules", get(admin::rules))
        .route("/console/admin/rules/reload", post(admin::reload))
        .route("/console/admin/outbox", get(admin::outbox))
        .route("/console/admin/outbox/{id}/retry", post(admin::retry))
        .route("/console/admin/tokens", get(admin::tokens))
        .route("/console/admin/tokens/{id}/revoke", post(admin::revoke))
        .route("/console/admin/rules/replay", post(admin::replay))
        .route("/console/admin/rules/shadow", post(admin::start_shadow))
        .route("/console/admin/rules/shadow/stop", post(admin::stop_shadow))
        .route("/console/admin/people", get(admin::people))
        .route("/console/admin/people/{person}/invite", post(admin::invite))
        .route(
            "/console/admin/people/{person}/revoke",
            post(admin::revoke_person),
        )
        .route("/console/wall/{token}", get(wall::wall))
        .route("/console/wall/{token}/live", get(wall::live))
        .route("/console/scorecards", get(board::scorecards))
        .route("/console/scorecards.csv", get(board::scorecards_csv))
        .route("/console/issues/{id}", get(issue::show))
        .route("/console/issues/{id}/act", post(issue::act).layer(uploads))
        .route(
            "/console/report",
            get(report::form).post(report::submit).layer(uploads),
        )
        .route("/console/mine", get(report::mine))
        .route("/console/issues/{id}/photos/{hash}", get(issue::photo))
        .route("/console/requests", get(leader::requests))
        .route("/console/meetings", get(leader::meetings))
        .route("/console/meetings/{id}", get(leader::meeting))
        .route("/console/meetings/{id}/outcome", post(leader::outcome))
        .route("/console/static/{file}", get(asset))
}

/// An instant as people of the organisation read it: minutes, in the time zone of its
/// settings' calendar.
pub(super) fn local(rules: &escalade_rules::RuleSet, t: chrono::DateTime<chrono::Utc>) -> String {
    let tz = rules.org.calendars[rules.settings.calendar as usize].tz();
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// A tier's name in `locale` (its id if the rules have no such tier).
pub(super) fn tier_name(rules: &escalade_rules::RuleSet, locale: &str, id: &str) -> String {
    rules
        .org
        .tier(id)
        .map(|t| rules.org.tiers[t as usize].names.get(locale).to_string())
        .unwrap_or_else(|| id.to_string())
}

// ---- pages ----------------------------------------------------------------------------------

/// Scripts and styles come from this server only; forms post back to it; nothing frames a page.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    for name in Files::iter().filter(|n| n.starts_with("templates/")) {
        let file = Files::get(&name).expect("an embedded file listed is there");
        let text = String::from_utf8(file.data.into_owned()).expect("templates are UTF-8");
        let short = name.trim_start_matches("templates/").to_string();
        env.add_template_owned(short, text)
            .unwrap_or_else(|e| panic!("console template {name}: {e}"));
    }
    env
});

/// The console's words in each locale: `messages.yaml`, `key: {en: ..., zh-CN: ...}`.
static MESSAGES: LazyLock<HashMap<String, HashMap<String, String>>> = LazyLock::new(|| {
    let file = Files::get("messages.yaml").expect("messages.yaml is embedded");
    serde_yaml::from_slice(&file.data).expect("messages.yaml is a map of keys to locales")
});

/// The locales the console speaks.
pub const LOCALES: [&str; 2] = ["zh-CN", "en"];

/// `locale` if the console speaks it, else the nearest: any `en-*` is `en`, anything else the
/// first, `zh-CN`.
fn spoken(locale: &str) -> &'static str {
    if locale.to_ascii_lowercase().starts_with("en") {
        "en"
    } else {
        "zh-CN"
    }
}

/// The words of `locale`, by key.
fn words(locale: &str) -> HashMap<&'static str, &'static str> {
    MESSAGES
        .iter()
        .map(|(k, by)| {
            let text = by
                .get(locale)
                .or_else(|| by.get("en"))
                .map(String::as_str)
                .unwrap_or(k.as_str());
            (k.as_str(), text)
        })
        .collect()
}

/// The locale of a visitor not signed in: the first the browser asks for that the console
/// speaks, else the rules' default.
fn browser_locale(headers: &HeaderMap, default: &str) -> &'static str {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|l| spoken(l.split(';').next().unwrap_or("").trim()))
        .unwrap_or_else(|| spoken(default))
}

/// A page: `template` rendered with `context` and the words of `locale`, with the console's
/// headers.
fn page(
    status: StatusCode,
    template: &str,
    locale: &str,
    mut context: serde_json::Value,
) -> Response {
    context["t"] = serde_json::to_value(words(locale)).unwrap_or_default();
    context["locale"] = locale.into();
    let rendered = TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(&context));
    match rendered {
        Ok(html) => (status, secured(), html).into_response(),
        Err(e) => {
            tracing::error!(template, error = %e, "a console page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                secured(),
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The headers every console answer carries.
fn secured() -> [(header::HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// A page saying one thing (an error, a refusal), with a way back.
fn message(status: StatusCode, locale: &str, title_key: &str, text: &str) -> Response {
    page(
        status,
        "message.html",
        locale,
        serde_json::json!({"title_key": title_key, "text": text}),
    )
}

/// The page of a store that cannot be read or written, the error logged.
fn unavailable(locale: &str, what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what} failed");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        locale,
        "error",
        "the store cannot be reached: try again shortly",
    )
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// `GET /console`: the signed-in person's work, or the sign-in page.
async fn home(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match Session::from_headers(&s, &headers).await {
        Ok(Some(_)) => redirect("/console/inbox"),
        Ok(None) => redirect("/console/sign-in"),
        Err(r) => r,
    }
}

/// `GET /console/static/{file}`: the console's scripts and styles, cached a day.
async fn asset(Path(file): Path<String>) -> Response {
    let Some(f) = Files::get(&format!("static/{file}")) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let kind = match file.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        f.data.into_owned(),
    )
        .into_response()
}

// ---- sessions -------------------------------------------------------------------------------

/// The session cookie's name.
const COOKIE: &str = "escalade_session";

/// A signed-in person: their session's token (and so its role and scope), their locale.
pub struct Session {
    pub actor: Actor,
    pub person: String,
    pub name: String,
    pub locale: &'static str,
    /// The form token this session's forms carry.
    pub csrf: String,
    /// The roles the person may switch to: `(role, scope)`.
    pub roles: Vec<(Role, Option<String>)>,
}

/// The value of cookie `name` in the request, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The form token of a session: derived from its secret, so only a page this server rendered
/// for the session knows it.
fn csrf_of(token: &str) -> String {
    hex::encode(&Sha256::digest(format!("escalade console form:{token}"))[..16])
}

impl Session {
    /// The session the request's cookie names, if it is live and belongs to a person; none
    /// when there is no cookie or it no longer works (signed out, expired, revoked).
    async fn from_headers(s: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Response> {
        let Some(token) = cookie(headers, COOKIE) else {
            return Ok(None);
        };
        let found = crate::auth::authenticate(s.engine.store(), token, s.engine.now())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading a console session failed");
                message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "zh-CN",
                    "error",
                    "the store cannot be read",
                )
            })?;
        let Ok(actor) = found else { return Ok(None) };
        let Some(person) = actor.person.clone() else {
            return Ok(None);
        };
        let rules = s.engine.rules();
        let (name, locale) = match rules.org.person(&person) {
            Some(ix) => {
                let p = &rules.org.people[ix as usize];
                (p.name.clone(), spoken(&p.locale))
            }
            None => (person.clone(), spoken(&rules.settings.locale)),
        };
        let roles = signin::roles(&rules, &s.console.config, &person);
        Ok(Some(Session {
            csrf: csrf_of(token),
            actor,
            person,
            name,
            locale,
            roles,
        }))
    }

    /// What every signed-in page shows in its header.
    fn context(&self) -> serde_json::Value {
        let role = |r: Role, sc: &Option<String>| match sc {
            Some(sc) => format!("{}:{sc}", r.as_str()),
            None => r.as_str().to_string(),
        };
        serde_json::json!({
            "me": {
                "person": self.person,
                "name": self.name,
                "role": self.actor.role.as_str(),
                "scope": self.actor.scope,
                "acting": role(self.actor.role, &self.actor.scope),
                "roles": self.roles.iter().map(|(r, sc)| role(*r, sc)).collect::<Vec<_>>(),
            },
            "csrf": self.csrf,
        })
    }
}

/// The signed-in person, or the sign-in page (which returns here after).
pub struct SignedIn(pub Session);

impl axum::extract::FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Arc<AppState>,
    ) -> Result<SignedIn, Response> {
        match Session::from_headers(s, &parts.headers).await? {
            Some(session) => Ok(SignedIn(session)),
            None => {
                let back = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/console/inbox");
                let next = serde_urlencoded::to_string([("next", back)]).unwrap_or_default();
                Err(redirect(&format!("/console/sign-in?{next}")))
            }
        }
    }
}

/// Refuses a form that does not come from this server: its `Origin` (sent by browsers with
/// every POST) must name the host the request was made to.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()),
        host,
    ) {
        // A client that sends no Origin (not a browser) cannot be made to post by a page.
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host),
        (Some(_), None) => false,
    }
}

/// The refusal of a session's form that is not from this server (its origin) or not from a
/// page rendered for this session (its form token); none if it is.
fn foreign_form(session: &Session, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    (!same_origin(headers) || csrf != session.csrf).then(|| {
        message(
            StatusCode::FORBIDDEN,
            session.locale,
            "refused",
            "this form did not come from this page: reload it and try again",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_speaks_every_locale() {
        for (key, by) in MESSAGES.iter() {
            for l in LOCALES {
                assert!(
                    by.get(l).is_some_and(|t| !t.is_empty()),
                    "message `{key}` has no {l}"
                );
            }
        }
    }

    #[test]
    fn every_template_compiles() {
        assert!(TEMPLATES.templates().count() >= 5);
    }

    #[test]
    fn a_cookie_is_read_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; escalade_session=tok; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn a_form_from_another_origin_is_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
    }

    #[test]
    fn locales_fall_back_to_the_nearest_spoken() {
        assert_eq!(spoken("en-GB"), "en");
        assert_eq!(spoken("zh-TW"), "zh-CN");
        assert_eq!(spoken("fr"), "zh-CN");
    }
}
