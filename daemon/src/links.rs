//! One-click acknowledgement links: an `assigned` message's email and SMS carry a link that
//! acknowledges the issue for the department the message is for.
//!
//! A link is `{base_url}/ack/{token}`. The token is `{payload}.{tag}`, both base64url without
//! padding: the payload is the issue's id, the department, the acknowledge deadline the link was
//! made for and the instant it expires (both Unix milliseconds), one per line; the tag is the
//! first 16 bytes of HMAC-SHA256 over a fixed label and the payload, keyed by the configured
//! secret. The same message makes the same link whenever it is rendered (a retry, a digest).
//!
//! A link expires `grace` after its deadline. It is single-use without any record of its own:
//! acknowledging the issue, reassigning it or setting its acknowledge deadline anew leaves the
//! issue with another state, department or deadline than the link is bound to, and the engine,
//! which checks the link inside the issue's turn (`By::Link`), refuses it as spent.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use escalade_rules::{DeadlineKind, IssueState, State};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer};
use sha2::Sha256;

use crate::notify::config::{Dur, NoLiteral, Secret, read_secret};

/// What the tag is computed over before the payload: a key shared with another use of HMAC
/// cannot make a link.
const LABEL: &[u8] = b"escalade acknowledge link v1\n";

/// Bytes of the HMAC-SHA256 kept in a token (128 bits).
const TAG_BYTES: usize = 16;

/// The shortest secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 32;

/// `links`: acknowledgement links in messages.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksConfig {
    /// Where people reach the daemon: `https://escalade.example.org` (a path prefix may follow
    /// when a proxy serves it under one).
    pub base_url: String,
    /// The environment variable that holds the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The file that holds the signing secret (its trailing newline dropped).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default, rename = "secret", deserialize_with = "no_secret")]
    pub secret_literal: Option<NoLiteral>,
    /// How long after the deadline it stands for a link still works.
    #[serde(default = "default_grace")]
    pub grace: Dur,
    /// The secret, read by `check`.
    #[serde(skip)]
    pub secret: Secret,
}

impl Default for LinksConfig {
    fn default() -> LinksConfig {
        LinksConfig {
            base_url: String::new(),
            secret_env: None,
            secret_file: None,
            secret_literal: None,
            grace: default_grace(),
            secret: Secret::default(),
        }
    }
}

fn default_grace() -> Dur {
    Dur(Duration::from_secs(72 * 3600))
}

fn no_secret<'de, D: Deserializer<'de>>(_: D) -> Result<Option<NoLiteral>, D::Error> {
    Err(serde::de::Error::custom(
        "the key `links.secret` is refused: a secret is never written in the configuration; \
         set `secret_env: NAME` (an environment variable) or `secret_file: PATH` (a file) that \
         holds it",
    ))
}

impl LinksConfig {
    /// Checks the section and reads the secret.
    pub fn check(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|_| format!("links.base_url: `{}` is not a URL", self.base_url))?;
        if !matches!(url.scheme(), "http" | "https")
            || url.cannot_be_a_base()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!(
                "links.base_url: `{}` is not an http or https URL without a query or fragment",
                self.base_url
            ));
        }
        // As parsed: anything a URL may not hold is percent-encoded.
        self.base_url = url.as_str().trim_end_matches('/').to_string();
        self.secret = read_secret(
            "links",
            "secret_env",
            "secret_file",
            self.secret_env.as_deref(),
            self.secret_file.as_ref(),
            env,
        )?
        .ok_or_else(|| {
            "links: the signing secret is required: `secret_env: NAME` or `secret_file: PATH`"
                .to_string()
        })?;
        if self.secret.0.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "links: the signing secret is {} bytes long; it needs at least {MIN_SECRET_BYTES} (`openssl rand -hex 32` makes one)",
                self.secret.0.len()
            ));
        }
        if chrono::Duration::from_std(self.grace.0).is_err() {
            return Err("links.grace: too long".into());
        }
        Ok(())
    }
}

/// What a token binds: the acknowledgement of `issue` by `department`, while the issue's
/// acknowledge deadline is `deadline`, until `expires`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub issue: String,
    pub department: String,
    pub deadline: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// Why a token is not a link at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not the shape of a token (cut short or mangled in copying): 400.
    #[error("the link is malformed: {0}")]
    Malformed(String),
    /// Well formed, but not signed by this server's secret (tampered with): 403.
    #[error("the link's signature is not valid: it was not made by this server, or was altered")]
    BadSignature,
}

/// Why a genuine link no longer acknowledges: 410.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Spent {
    #[error("the link expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the link was used: issue {issue} is {state} already")]
    Used { issue: String, state: &'static str },
    #[error("issue {issue} is {state}: there is nothing to acknowledge")]
    Finished { issue: String, state: &'static str },
    #[error("issue {issue} is no longer with {department}: it moved on to {now_with}")]
    MovedOn {
        issue: String,
        department: String,
        now_with: String,
    },
    #[error(
        "issue {issue} has a new acknowledge deadline since this link was sent: use the link of the latest message"
    )]
    DeadlineChanged { issue: String },
}

impl Spent {
    /// A short code for JSON answers.
    pub fn code(&self) -> &'static str {
        match self {
            Spent::Expired(_) => "link_expired",
            Spent::Used { .. } => "link_used",
            Spent::Finished { .. } | Spent::MovedOn { .. } | Spent::DeadlineChanged { .. } => {
                "link_moved_on"
            }
        }
    }
}

impl Claim {
    /// Whether the link still acknowledges the issue in `state` at `now`: what the engine asks
    /// inside the issue's turn, and what the confirmation page asks before it offers the button.
    pub fn admits(&self, state: &IssueState, now: DateTime<Utc>) -> Result<(), Spent> {
        if now > self.expires {
            return Err(Spent::Expired(self.expires));
        }
        let issue = self.issue.clone();
        if !state.departments.contains(&self.department) {
            return Err(Spent::MovedOn {
                issue,
                department: self.department.clone(),
                now_with: if state.departments.is_empty() {
                    "no department".into()
                } else {
                    state.departments.join(", ")
                },
            });
        }
        match state.state {
            State::Assigned => {}
            State::Acknowledged | State::InProgress => {
                return Err(Spent::Used {
                    issue,
                    state: state.state.as_str(),
                });
            }
            s => {
                return Err(Spent::Finished {
                    issue,
                    state: s.as_str(),
                });
            }
        }
        if state.acknowledge_by != Some(self.deadline) {
            return Err(Spent::DeadlineChanged { issue });
        }
        Ok(())
    }
}

/// The configured links: what delivery renders into messages and the routes verify.
pub struct Links {
    base_url: String,
    key: Hmac<Sha256>,
    grace: chrono::Duration,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base_url", &self.base_url)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Links {
    /// From a checked section (`LinksConfig::check` has read the secret).
    pub fn new(c: &LinksConfig) -> Links {
        Links {
            base_url: c.base_url.trim_end_matches('/').to_string(),
            key: Hmac::new_from_slice(c.secret.0.as_bytes()).expect("HMAC takes a key of any size"),
            grace: chrono::Duration::from_std(c.grace.0).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Where people reach the daemon, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn tag(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.key.clone();
        mac.update(LABEL);
        mac.update(payload);
        mac
    }

    /// The claim of a link for `department` to acknowledge `issue` by `deadline`.
    pub fn claim(&self, issue: &str, department: &str, deadline: DateTime<Utc>) -> Claim {
        Claim {
            issue: issue.to_string(),
            department: department.to_string(),
            deadline,
            expires: deadline
                .checked_add_signed(self.grace)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// The token of a claim; `None` if an id holds a line break (no id the rules make does).
    pub fn token(&self, c: &Claim) -> Option<String> {
        if c.issue.contains('\n') || c.department.contains('\n') {
            return None;
        }
        let payload = format!(
            "{}\n{}\n{}\n{}",
            c.issue,
            c.department,
            c.deadline.timestamp_millis(),
            c.expires.timestamp_millis()
        );
        let tag = self.tag(payload.as_bytes()).finalize().into_bytes();
        Some(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        ))
    }

    /// The URL of a token.
    pub fn url(&self, token: &str) -> String {
        format!("{}/ack/{token}", self.base_url)
    }

    /// The acknowledgement link a message carries: for a message to a department with an
    /// acknowledge deadline, else none.
    pub fn acknowledge(
        &self,
        issue: &str,
        department: Option<&str>,
        deadline: Option<(DeadlineKind, DateTime<Utc>)>,
    ) -> Option<String> {
        match (department, deadline) {
            (Some(d), Some((DeadlineKind::Acknowledge, at))) => {
                self.token(&self.claim(issue, d, at)).map(|t| self.url(&t))
            }
            _ => None,
        }
    }

    /// The claim of a token, if this server signed it. The tag is compared in constant time.
    pub fn verify(&self, token: &str) -> Result<Claim, TokenError> {
        let malformed = |why: &str| TokenError::Malformed(why.to_string());
        let (payload, tag) = token
            .split_once('.')
            .ok_or_else(|| malformed("it has no signature part"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| malformed("its first part is not base64url"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| malformed("its signature part is not base64url"))?;
        if tag.len() != TAG_BYTES {
            return Err(malformed("its signature part has the wrong length"));
        }
        self.tag(&payload)
            .verify_truncated_left(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        // Signed by this server, so made by `token`: anything else is a secret shared with
        // another program's format, refused as malformed all the same.
        let text = String::from_utf8(payload).map_err(|_| malformed("not text"))?;
        let fields: Vec<&str> = text.split('\n').collect();
        let [issue, department, deadline, expires] = fields[..] else {
            return Err(malformed("it does not have four fields"));
        };
        let instant = |s: &str| {
            s.parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis)
                .ok_or_else(|| malformed("an instant is not a number"))
        };
        Ok(Claim {
            issue: issue.to_string(),
            department: department.to_string(),
            deadline: instant(deadline)?,
            expires: instant(expires)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn links(secret: &str, grace: &str) -> Links {
        Links::new(&LinksConfig {
            base_url: "https://escalade.example.org/".into(),
            secret: Secret(secret.into()),
            grace: Dur(crate::notify::config::parse_duration(grace).unwrap()),
            ..LinksConfig::default()
        })
    }

    fn deadline() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_772_503_200_123).unwrap()
    }

    fn assigned(departments: &[&str], by: DateTime<Utc>) -> IssueState {
        IssueState {
            state: State::Assigned,
            departments: departments.iter().map(|d| d.to_string()).collect(),
            acknowledge_by: Some(by),
            ..IssueState::default()
        }
    }

    #[test]
    fn a_token_verifies_to_its_claim_and_is_url_safe_and_short() {
        let l = links(SECRET, "72h");
        let c = l.claim("1042", "urban", deadline());
        assert_eq!(c.expires, deadline() + chrono::Duration::hours(72));
        let t = l.token(&c).unwrap();
        assert!(
            t.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)),
            "{t}"
        );
        assert!(t.len() < 90, "{} characters: {t}", t.len());
        assert_eq!(l.verify(&t), Ok(c.clone()));
        // The same claim makes the same token: a message rendered again keeps its link.
        assert_eq!(l.token(&c).unwrap(), t);
        let url = l
            .acknowledge(
                "1042",
                Some("urban"),
                Some((DeadlineKind::Acknowledge, deadline())),
            )
            .unwrap();
        assert_eq!(url, format!("https://escalade.example.org/ack/{t}"));
    }

    #[test]
    fn only_a_departments_message_with_an_acknowledge_deadline_has_a_link() {
        let l = links(SECRET, "72h");
        let ack = Some((DeadlineKind::Acknowledge, deadline()));
        assert!(l.acknowledge("1", None, ack).is_none());
        assert!(
            l.acknowledge(
                "1",
                Some("urban"),
                Some((DeadlineKind::Resolve, deadline()))
            )
            .is_none()
        );
        assert!(l.acknowledge("1", Some("urban"), None).is_none());
        assert!(l.acknowledge("1", Some("ur\nban"), ack).is_none());
    }

    #[test]
    fn an_altered_token_or_another_secret_is_a_bad_signature() {
        let l = links(SECRET, "72h");
        let t = l.token(&l.claim("1042", "urban", deadline())).unwrap();
        let (payload, tag) = t.split_once('.').unwrap();
        // The payload of another department, with the first one's tag.
        let forged = URL_SAFE_NO_PAD.encode(format!(
            "1042\npolice\n{}\n{}",
            deadline().timestamp_millis(),
            (deadline() + chrono::Duration::hours(72)).timestamp_millis()
        ));
        assert_eq!(
            l.verify(&format!("{forged}.{tag}")),
            Err(TokenError::BadSignature)
        );
        // A tag altered in its first byte.
        let mut bytes = URL_SAFE_NO_PAD.decode(tag).unwrap();
        bytes[0] ^= 1;
        let altered = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(l.verify(&altered), Err(TokenError::BadSignature));
        // Another server's secret.
        let other = links("fedcba9876543210fedcba9876543210", "72h");
        assert_eq!(other.verify(&t), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_mangled_token_is_malformed_naming_what_is_wrong() {
        let l = links(SECRET, "72h");
        let t = l.token(&l.claim("1042", "urban", deadline())).unwrap();
        let (payload, tag) = t.split_once('.').unwrap();
        let cases = [
            ("nodot".to_string(), "no signature part"),
            (format!("{payload}!.{tag}"), "first part is not base64url"),
            (
                format!("{payload}.{tag}*"),
                "signature part is not base64url",
            ),
            (
                format!("{payload}.{}", URL_SAFE_NO_PAD.encode([7u8; 8])),
                "wrong length",
            ),
        ];
        for (token, why) in cases {
            match l.verify(&token) {
                Err(TokenError::Malformed(m)) => assert!(m.contains(why), "{token}: {m}"),
                other => panic!("{token}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_claim_admits_only_the_assignment_it_was_made_for() {
        let l = links(SECRET, "1h");
        let c = l.claim("1042", "urban", deadline());
        let now = deadline() - chrono::Duration::minutes(5);
        assert_eq!(
            c.admits(&assigned(&["urban", "police"], deadline()), now),
            Ok(())
        );
        // Past its deadline but within the grace, still good; after it, expired.
        let late = deadline() + chrono::Duration::minutes(59);
        assert_eq!(c.admits(&assigned(&["urban"], deadline()), late), Ok(()));
        let after = deadline() + chrono::Duration::minutes(61);
        assert_eq!(
            c.admits(&assigned(&["urban"], deadline()), after),
            Err(Spent::Expired(c.expires))
        );
        let mut acked = assigned(&["urban"], deadline());
        acked.state = State::Acknowledged;
        assert!(matches!(c.admits(&acked, now), Err(Spent::Used { .. })));
        acked.state = State::Resolved;
        assert!(matches!(c.admits(&acked, now), Err(Spent::Finished { .. })));
        match c.admits(&assigned(&["police"], deadline()), now) {
            Err(e @ Spent::MovedOn { .. }) => {
                assert!(e.to_string().contains("moved on to police"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let later = deadline() + chrono::Duration::hours(2);
        assert_eq!(
            c.admits(&assigned(&["urban"], later), now),
            Err(Spent::DeadlineChanged {
                issue: "1042".into()
            })
        );
    }
}
