//! Signing in and out, invitations, and switching between a person's roles.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use escalade_rules::RuleSet;
use serde::Deserialize;
use serde_json::json;

use super::{
    COOKIE, ConsoleConfig, SignedIn, browser_locale, foreign_form, message, page, redirect,
    same_origin,
};
use crate::api::AppState;
use crate::auth::{Grant, Role};
use crate::store::TokenTerms;

/// The label of the tokens that are console sessions, as `token list` shows them.
pub const SESSION_LABEL: &str = "console session";

/// Failed sign-ins allowed per person in `WINDOW`; after that, sign-in is refused until the
/// window ends.
const FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);

/// A password's length at least and at most (in characters).
const MIN_PASSWORD: usize = 10;
const MAX_PASSWORD: usize = 256;

/// The roles a person may act in: those the organisation gives them, then administrator if the
/// configuration names them.
pub(super) fn roles(
    rules: &RuleSet,
    config: &ConsoleConfig,
    person: &str,
) -> Vec<(Role, Option<String>)> {
    let mut out: Vec<(Role, Option<String>)> = crate::auth::roles_of(rules, person)
        .unwrap_or_default()
        .into_iter()
        .map(|(r, s)| (r, Some(s)))
        .collect();
    if config.admins.iter().any(|a| a == person) {
        out.push((Role::Admin, None));
    }
    out
}

/// An argon2id hash of `password`, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash`.
fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash that matches no password, checked against when the person has none, so that a
/// sign-in takes as long whether the person exists or not.
static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    hash_password("no password matches this one").expect("hashing works")
});

/// A new invitation's token (for its link) and the hash the store keeps.
pub fn new_invite() -> (String, String) {
    crate::auth::new_token()
}

/// Why a person was not invited; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("unknown person `{0}`: the organisation has no such person")]
    Unknown(String),
    #[error(
        "person `{0}` has no role to act in: they are no department's contact, lead no unit, \
         and `console.admins` does not name them"
    )]
    NoRole(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// Whether an invitation's link went to the person by email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Emailed {
    /// To this address.
    To(String),
    /// No SMTP relay is configured.
    NoSmtp,
    /// The organisation has no email address for the person.
    NoAddress,
    /// The relay did not take it.
    Failed { address: String, error: String },
}

impl std::fmt::Display for Emailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Emailed::To(a) => write!(f, "the link was emailed to {a}"),
            Emailed::NoSmtp => {
                f.write_str("the link was not emailed: no SMTP relay is configured (`smtp:`)")
            }
            Emailed::NoAddress => f.write_str(
                "the link was not emailed: the organisation has no email address for them",
            ),
            Emailed::Failed { address, error } => {
                write!(f, "the link was not emailed to {address}: {error}")
            }
        }
    }
}

/// An invitation made: its one-time link, until when it works, and whether it was emailed.
#[derive(Clone, Debug)]
pub struct Invitation {
    pub person: String,
    pub link: String,
    pub until: chrono::DateTime<chrono::Utc>,
    pub emailed: Emailed,
}

/// The person of the organisation `person` names, if they may be invited: someone with a role
/// to act in.
pub fn invitable<'r>(
    rules: &'r RuleSet,
    config: &ConsoleConfig,
    person: &str,
) -> Result<&'r escalade_rules::model::Person, InviteError> {
    let Some(ix) = rules.org.person(person) else {
        return Err(InviteError::Unknown(person.to_string()));
    };
    if roles(rules, config, person).is_empty() {
        return Err(InviteError::NoRole(person.to_string()));
    }
    Ok(&rules.org.people[ix as usize])
}

/// Invites `person` to set a console password: checks they are someone of the organisation
/// with a role to act in, stores the invitation (replacing one not yet used) for `lifetime`,
/// and emails the link (`base` + `/console/invite/TOKEN`) in their language through `mailer`
/// when one is given and they have an address. What `escalade person invite` and an
/// administrator's form both do. The link works whether the email went or not.
#[allow(clippy::too_many_arguments)]
pub async fn invite(
    store: &crate::store::Store,
    rules: &RuleSet,
    config: &ConsoleConfig,
    mailer: Option<&crate::notify::Email>,
    base: &str,
    person: &str,
    lifetime: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Invitation, InviteError> {
    let p = invitable(rules, config, person)?;
    let (token, hash) = new_invite();
    let until = now + lifetime;
    store.invite(person, &hash, until).await?;
    let link = format!("{}/console/invite/{token}", base.trim_end_matches('/'));
    let emailed = match (mailer, p.email.as_deref()) {
        (None, _) => Emailed::NoSmtp,
        (Some(_), None) => Emailed::NoAddress,
        (Some(m), Some(address)) => {
            let locale = super::spoken(&p.locale);
            let tz = rules.org.calendars[rules.settings.calendar as usize].tz();
            let until_local = until
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string();
            let w = super::words(locale);
            let fill = |key: &str| {
                w.get(key)
                    .copied()
                    .unwrap_or(key)
                    .replace("{name}", &p.name)
                    .replace("{link}", &link)
                    .replace("{until}", &until_local)
            };
            let rendered = escalade_rules::template::Rendered {
                subject: Some(fill("admin_invite_subject")),
                body: fill("admin_invite_body"),
                html: None,
            };
            let id = format!("invite-{person}-{}", now.timestamp_millis());
            match m.send(address, Some(&p.name), &rendered, &id).await {
                Ok(()) => Emailed::To(address.to_string()),
                Err(
                    crate::notify::Failure::Permanent(error)
                    | crate::notify::Failure::Transient { error, .. },
                ) => Emailed::Failed {
                    address: address.to_string(),
                    error,
                },
            }
        }
    };
    match &emailed {
        Emailed::To(_) => tracing::info!(person, "a console invitation was made and emailed"),
        other => tracing::info!(person, emailed = %other, "a console invitation was made"),
    }
    Ok(Invitation {
        person: person.to_string(),
        link,
        until,
        emailed,
    })
}

/// The cookie that holds a session for `lifetime`; `Secure` when the request came over TLS
/// (through a proxy that says so).
fn session_cookie(token: &str, lifetime: Duration, headers: &HeaderMap) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let value = format!(
        "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        lifetime.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&value).expect("a token is a header value")
}

fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
    .expect("a plain header value")
}

/// On to `to` (a console path), with `cookie` set.
fn with_cookie(cookie: HeaderValue, to: &str) -> Response {
    let to = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/console/inbox"));
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, to)],
    )
        .into_response()
}

/// Makes a session for `person` acting as `role` (and `scope`): a token of theirs with the
/// session's label and expiry. Returns the token.
async fn open_session(
    s: &AppState,
    person: &str,
    role: Role,
    scope: Option<String>,
) -> Result<String, crate::store::StoreError> {
    let now = s.engine.now();
    let lifetime = s.console.config.session.0;
    let (token, hash) = crate::auth::new_token();
    let grant = Grant {
        role,
        scope,
        person: Some(person.to_string()),
        integration: None,
    };
    let terms = TokenTerms {
        label: Some(SESSION_LABEL.to_string()),
        expires_at: Some(now + chrono::Duration::from_std(lifetime).unwrap_or_default()),
    };
    s.engine
        .store()
        .create_token_with(&hash, &grant, &terms, now)
        .await?;
    Ok(token)
}

/// Where a sign-in goes on to: a console page, never elsewhere.
fn next_page(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console/") && !n.starts_with("//") => n.to_string(),
        _ => "/console/inbox".into(),
    }
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// `GET /console/sign-in`.
pub(super) async fn sign_in_page(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let locale = browser_locale(&headers, &s.engine.rules().settings.locale);
    page(
        StatusCode::OK,
        "sign_in.html",
        locale,
        json!({"next": next_page(q.next.as_deref())}),
    )
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    person: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /console/sign-in`: person and password. A wrong person or password reads the same;
/// too many failures for one person are refused for a while.
pub(super) async fn sign_in(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(f): Form<SignInForm>,
) -> Response {
    let rules = s.engine.rules();
    let locale = browser_locale(&headers, &rules.settings.locale);
    if !same_origin(&headers) {
        return message(
            StatusCode::FORBIDDEN,
            locale,
            "refused",
            "this form did not come from this server",
        );
    }
    let person = f.person.trim().to_string();
    let again = |status: StatusCode, error: &str| {
        page(
            status,
            "sign_in.html",
            locale,
            json!({"next": next_page(f.next.as_deref()), "person": person, "error": error}),
        )
    };
    // Failures are counted in the store: every replica refuses after the same ones.
    let now = s.engine.now();
    let window = chrono::Duration::from_std(WINDOW).expect("the window is short");
    match s
        .engine
        .store()
        .sign_in_failures(&person, now - window)
        .await
    {
        Ok(n) if n >= i64::from(FAILURES) => {
            return again(StatusCode::TOO_MANY_REQUESTS, "throttled");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "counting failed sign-ins failed");
            return again(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        }
    }
    let stored = match s.engine.store().password_hash(&person).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "reading a password failed");
            return again(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        }
    };
    let password = f.password.clone();
    let hash = stored.clone().unwrap_or_else(|| DUMMY.clone());
    let matches = tokio::task::spawn_blocking(move || verify(&password, &hash))
        .await
        .unwrap_or(false)
        && stored.is_some();
    let roles = roles(&rules, &s.console.config, &person);
    if !matches || roles.is_empty() {
        if let Err(e) = s
            .engine
            .store()
            .sign_in_failed(&person, now, now - window)
            .await
        {
            tracing::error!(error = %e, "counting a failed sign-in failed");
        }
        tracing::info!(person, "a console sign-in failed");
        return again(StatusCode::UNAUTHORIZED, "wrong");
    }
    if let Err(e) = s.engine.store().sign_in_succeeded(&person).await {
        tracing::warn!(error = %e, "forgetting failed sign-ins failed");
    }
    let (role, scope) = roles[0].clone();
    match open_session(&s, &person, role, scope).await {
        Ok(token) => {
            tracing::info!(person, "signed in to the console");
            with_cookie(
                session_cookie(&token, s.console.config.session.0, &headers),
                &next_page(f.next.as_deref()),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "opening a console session failed");
            again(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/sign-out`: the session's token is revoked, on every replica within a second.
pub(super) async fn sign_out(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(r) = foreign_form(&session, &headers, &f.csrf) {
        return r;
    }
    if let Err(e) = s
        .engine
        .store()
        .revoke_token(session.actor.token, s.engine.now())
        .await
    {
        return super::unavailable(session.locale, "ending a console session", e);
    }
    with_cookie(cleared_cookie(), "/console/sign-in")
}

#[derive(Deserialize)]
pub(super) struct RoleForm {
    #[serde(default)]
    csrf: String,
    role: String,
}

/// `POST /console/role`: acts in another of the person's roles: a new session in it, the old
/// one revoked.
pub(super) async fn switch_role(
    State(s): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Form(f): Form<RoleForm>,
) -> Response {
    if let Some(r) = foreign_form(&session, &headers, &f.csrf) {
        return r;
    }
    let (role, scope) = match f.role.split_once(':') {
        Some((r, sc)) => (Role::parse(r), Some(sc.to_string())),
        None => (Role::parse(&f.role), None),
    };
    let Some(role) = role.filter(|r| session.roles.contains(&(*r, scope.clone()))) else {
        return message(
            StatusCode::FORBIDDEN,
            session.locale,
            "refused",
            &format!("{} may not act as {}", session.person, f.role),
        );
    };
    let now = s.engine.now();
    let opened = open_session(&s, &session.person, role, scope).await;
    let token = match opened {
        Ok(t) => t,
        Err(e) => {
            return super::unavailable(session.locale, "opening a console session", e);
        }
    };
    if let Err(e) = s
        .engine
        .store()
        .revoke_token(session.actor.token, now)
        .await
    {
        tracing::warn!(error = %e, "the session switched from could not be revoked");
    }
    with_cookie(
        session_cookie(&token, s.console.config.session.0, &headers),
        "/console/inbox",
    )
}

/// `GET /console/invite/{token}`: the form that sets a password, while the invitation is live.
pub(super) async fn invite_page(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let rules = s.engine.rules();
    let locale = browser_locale(&headers, &rules.settings.locale);
    match s
        .engine
        .store()
        .invited(&crate::auth::hash(&token), s.engine.now())
        .await
    {
        Ok(Some(person)) => page(
            StatusCode::OK,
            "invite.html",
            locale,
            json!({"person": person, "token": token}),
        ),
        Ok(None) => spent(locale),
        Err(e) => super::unavailable(locale, "reading an invitation", e),
    }
}

fn spent(locale: &str) -> Response {
    message(
        StatusCode::GONE,
        locale,
        "invite_spent",
        "this invitation was used, replaced or has lapsed: ask an administrator for a new one",
    )
}

#[derive(Deserialize)]
pub(super) struct InviteForm {
    password: String,
    repeat: String,
}

/// `POST /console/invite/{token}`: sets the password (spending the invitation) and signs in.
pub(super) async fn accept_invite(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<InviteForm>,
) -> Response {
    let rules = s.engine.rules();
    let locale = browser_locale(&headers, &rules.settings.locale);
    if !same_origin(&headers) {
        return message(
            StatusCode::FORBIDDEN,
            locale,
            "refused",
            "this form did not come from this server",
        );
    }
    let hash = crate::auth::hash(&token);
    let now = s.engine.now();
    let person = match s.engine.store().invited(&hash, now).await {
        Ok(Some(p)) => p,
        Ok(None) => return spent(locale),
        Err(e) => {
            return super::unavailable(locale, "reading an invitation", e);
        }
    };
    let length = f.password.chars().count();
    let problem = if f.password != f.repeat {
        Some("password_mismatch")
    } else if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        Some("password_length")
    } else {
        None
    };
    if let Some(error) = problem {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invite.html",
            locale,
            json!({"person": person, "token": token, "error": error}),
        );
    }
    let password = f.password.clone();
    let hashed = match tokio::task::spawn_blocking(move || hash_password(&password)).await {
        Ok(Ok(h)) => h,
        _ => {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                locale,
                "error",
                "the password could not be hashed",
            );
        }
    };
    let set = match s.engine.store().set_password(&hash, &hashed, now).await {
        Ok(Some(p)) => p,
        // Used by another request meanwhile.
        Ok(None) => return spent(locale),
        Err(e) => {
            return super::unavailable(locale, "setting a password", e);
        }
    };
    tracing::info!(
        person = set,
        "a console password was set through an invitation"
    );
    let roles = roles(&rules, &s.console.config, &set);
    let Some((role, scope)) = roles.first().cloned() else {
        return message(
            StatusCode::FORBIDDEN,
            locale,
            "refused",
            &format!(
                "the password of {set} is set, but the organisation gives them no role to act in"
            ),
        );
    };
    match open_session(&s, &set, role, scope).await {
        Ok(token) => with_cookie(
            session_cookie(&token, s.console.config.session.0, &headers),
            "/console/inbox",
        ),
        Err(_) => redirect("/console/sign-in"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterz", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn a_sign_in_goes_on_to_a_console_page_only() {
        assert_eq!(next_page(Some("/console/issues/7")), "/console/issues/7");
        assert_eq!(next_page(Some("https://evil.example/")), "/console/inbox");
        assert_eq!(next_page(Some("//evil.example/console/")), "/console/inbox");
        assert_eq!(next_page(None), "/console/inbox");
    }
}
