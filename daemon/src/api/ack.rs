//! `/ack/{token}`: the page an acknowledgement link opens. `GET` shows the issue and a button
//! and never acts, so a mail system's link scanner visiting it acknowledges nothing; `POST`
//! (the button) acknowledges through the engine, which checks the link inside the issue's turn.
//!
//! The token is the credential: no bearer token is asked. Answers are a small self-contained
//! HTML page (no external resource, a strict Content-Security-Policy, every inserted text
//! escaped), or the API's JSON when the client sends `Accept: application/json`. Not part of
//! the API under `/api/v1`, and not in its OpenAPI document: these are pages for people.
//!
//! 200: the page, or acknowledged; 400: the token is malformed; 403: its signature is not this
//! server's; 404: links are not configured, or the issue is unknown; 410: the link expired, was
//! used, or the issue moved on (reassigned, a new deadline, closed).

use std::sync::{Arc, LazyLock};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use escalade_rules::RuleSet;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::engine::EngineError;
use crate::links::{Claim, Spent, TokenError};
use crate::store::StoredIssue;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;\
padding:0 1rem;line-height:1.5;color:#1b1b1b}dt{font-weight:600}dd{margin:0 0 .6rem 0}\
button{font-size:1.1rem;padding:.6rem 1.4rem}.ok{color:#176117}.no{color:#9b1c1c}";

/// Nothing may load from anywhere; the one inline style is allowed by its hash; the form posts
/// back to this server only; no page may frame this one.
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    )
});

/// What a refusal says: its status, a code for JSON, a title and a sentence.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    message: String,
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Refusal {
        let (status, code) = match e {
            TokenError::Malformed(_) => (StatusCode::BAD_REQUEST, "link_malformed"),
            TokenError::BadSignature => (StatusCode::FORBIDDEN, "link_bad_signature"),
        };
        Refusal {
            status,
            code,
            title: "链接无效 / This link is not valid",
            message: e.to_string(),
        }
    }
}

impl From<Spent> for Refusal {
    fn from(e: Spent) -> Refusal {
        let title = match e {
            Spent::Expired(_) => "链接已过期 / This link has expired",
            Spent::Used { .. } => "链接已使用 / This link was used",
            _ => "链接已失效 / This link no longer applies",
        };
        Refusal {
            status: StatusCode::GONE,
            code: e.code(),
            title,
            message: e.to_string(),
        }
    }
}

impl Refusal {
    fn not_found(code: &'static str, message: String) -> Refusal {
        Refusal {
            status: StatusCode::NOT_FOUND,
            code,
            title: "未找到 / Not found",
            message,
        }
    }

    fn answer(self, json: bool) -> Response {
        if json {
            return ApiError::new(self.status, self.code, self.message).into_response();
        }
        let body = format!(
            "<h1 class=\"no\">{}</h1>\n<p>{}</p>",
            escape(self.title),
            escape(&self.message)
        );
        page(self.status, self.title, &body)
    }
}

/// Whether the client asked for JSON rather than a page.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// The token's claim, or why not.
fn claim(s: &AppState, token: &str) -> Result<Claim, Refusal> {
    let links = s.links.as_ref().ok_or_else(|| {
        Refusal::not_found(
            "links_not_configured",
            "acknowledgement links are not configured on this server (`links` in its configuration)"
                .into(),
        )
    })?;
    Ok(links.verify(token)?)
}

async fn stored(s: &AppState, claim: &Claim) -> Result<StoredIssue, Refusal> {
    s.engine
        .store()
        .issue(&claim.issue)
        .await
        .map_err(|e| internal(e.to_string()))?
        .ok_or_else(|| Refusal::not_found("not_found", format!("no issue {}", claim.issue)))
}

fn internal(message: String) -> Refusal {
    tracing::error!(error = %message, "acknowledgement link failed");
    Refusal {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        title: "出错了 / Something went wrong",
        message,
    }
}

/// `GET /ack/{token}`: the issue and a button, if the link still applies. Changes nothing.
pub(super) async fn show(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let json = wants_json(&headers);
    let shown = async {
        let claim = claim(&s, &token)?;
        let stored = stored(&s, &claim).await?;
        claim.admits(&stored.state, s.engine.now())?;
        Ok::<_, Refusal>((claim, stored))
    }
    .await;
    let (claim, stored) = match shown {
        Ok(v) => v,
        Err(r) => return r.answer(json),
    };
    let rules = s.engine.rules();
    let facts = Facts::of(&rules, &claim, &stored);
    if json {
        return (
            StatusCode::OK,
            super::Answer(json!({
                "issue": claim.issue,
                "department": claim.department,
                "deadline": claim.deadline,
                "expires": claim.expires,
                "state": stored.state.state.as_str(),
            })),
        )
            .into_response();
    }
    let title = "签收问题 / Acknowledge an issue";
    let body = format!(
        "<h1>{}</h1>\n{}\n<form method=\"post\"><button type=\"submit\">签收 / Acknowledge</button></form>\n\
         <p>签收后，本链接即失效。/ Once acknowledged, this link no longer works.</p>",
        escape(title),
        facts.html()
    );
    page(StatusCode::OK, title, &body)
}

/// `POST /ack/{token}`: acknowledges the issue for the link's department, through the engine.
pub(super) async fn acknowledge(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let json = wants_json(&headers);
    let claim = match claim(&s, &token) {
        Ok(v) => v,
        Err(r) => return r.answer(json),
    };
    let (stored, _) = match s.engine.acknowledge_by_link(&claim).await {
        Ok(v) => v,
        Err(EngineError::LinkSpent(spent)) => return Refusal::from(spent).answer(json),
        Err(EngineError::NotFound(id)) => {
            return Refusal::not_found("not_found", format!("no issue {id}")).answer(json);
        }
        Err(e) => {
            let e = ApiError::from(e);
            return Refusal {
                status: e.status,
                code: e.code,
                title: "未签收 / Not acknowledged",
                message: e.message,
            }
            .answer(json);
        }
    };
    if json {
        return (
            StatusCode::OK,
            super::Answer(json!({
                "issue": claim.issue,
                "department": claim.department,
                "state": stored.state.state.as_str(),
                "version": stored.version,
            })),
        )
            .into_response();
    }
    let rules = s.engine.rules();
    let facts = Facts::of(&rules, &claim, &stored);
    let title = "已签收 / Acknowledged";
    let body = format!(
        "<h1 class=\"ok\">{}</h1>\n<p>问题 {} 已由{}签收。/ Issue {} is acknowledged for {}.</p>\n{}",
        escape(title),
        escape(&claim.issue),
        escape(&facts.department),
        escape(&claim.issue),
        escape(&facts.department),
        facts.html()
    );
    page(StatusCode::OK, title, &body)
}

/// What the page says of the issue, in the rules' default locale.
struct Facts {
    id: String,
    category: String,
    unit: String,
    description: String,
    department: String,
    deadline: String,
}

impl Facts {
    fn of(rules: &RuleSet, claim: &Claim, stored: &StoredIssue) -> Facts {
        let org = &rules.org;
        let locale = rules.settings.locale.as_str();
        let issue = &stored.issue;
        let category = rules
            .category(&issue.category)
            .map(|c| rules.categories[c as usize].names.get(locale).to_string())
            .unwrap_or_else(|| issue.category.clone());
        let unit = org
            .unit(&issue.unit)
            .map(|u| org.units[u as usize].names.get(locale).to_string())
            .unwrap_or_else(|| issue.unit.clone());
        let department = org
            .department(&claim.department)
            .map(|d| org.departments[d as usize].names.get(locale).to_string())
            .unwrap_or_else(|| claim.department.clone());
        let tz = org.calendars[rules.settings.calendar as usize].tz();
        let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
        Facts {
            id: issue.id.clone(),
            category,
            unit,
            description: issue.description.clone(),
            department,
            deadline: local(claim.deadline),
        }
    }

    fn html(&self) -> String {
        let rows = [
            ("问题编号 / Issue", &self.id),
            ("类别 / Category", &self.category),
            ("地点 / Unit", &self.unit),
            ("描述 / Description", &self.description),
            ("部门 / Department", &self.department),
            ("签收时限 / Acknowledge by", &self.deadline),
        ];
        let mut out = String::from("<dl>\n");
        for (label, value) in rows {
            out.push_str(&format!(
                "<dt>{}</dt><dd>{}</dd>\n",
                escape(label),
                escape(value)
            ));
        }
        out.push_str("</dl>");
        out
    }
}

/// A whole page: `body` is HTML already escaped.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n",
        escape(title)
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&CSP) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    // The token is in the URL: it is never sent on, kept, or framed.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// Text made safe to insert in HTML, in an element or a quoted attribute.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape(r#"<script>alert("x&'y")</script>"#),
            "&lt;script&gt;alert(&quot;x&amp;&#39;y&quot;)&lt;/script&gt;"
        );
    }

    #[test]
    fn the_policy_allows_the_pages_one_style_by_its_hash_and_nothing_else() {
        let r = page(StatusCode::OK, "t", "<p>b</p>");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
    }
}
