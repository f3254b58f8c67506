//! The delivery channels of the daemon's configuration (`smtp`, `sms`, `webhook`, `delivery`):
//! what the YAML says, checked and with its secrets read (`Config::load` calls `check`).
//!
//! Secrets are never written in the YAML: a password or a key comes from an environment
//! variable (`password_env: NAME`) or a file (`password_file: PATH`); a literal is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A secret read from the environment or a file: shown as `***` in debug output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A duration written `500ms`, `10s`, `5m`, `1h` (or a number of seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Negative(i64),
            Fraction(f64),
            Text(String),
        }
        let not = |what: String| {
            serde::de::Error::custom(format!(
                "{what}: write a number and a unit, `500ms`, `10s`, `5m` or `1h`"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Negative(n) => Err(not(format!("`{n}` is negative, not a duration"))),
            Raw::Fraction(f) => Err(not(format!("`{f}` is not a duration"))),
            Raw::Text(t) => parse_duration(&t)
                .map(Dur)
                .ok_or_else(|| not(format!("`{t}` is not a duration"))),
        }
    }
}

/// `500ms`, `10s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

/// Refuses a password written in the configuration itself.
fn no_password<'de, D: Deserializer<'de>>(_: D) -> Result<Option<NoLiteral>, D::Error> {
    Err(serde::de::Error::custom(
        "the key `smtp.password` is refused: a password is never written in the configuration; \
         set `password_env: NAME` (an environment variable) or `password_file: PATH` (a file) \
         that holds it",
    ))
}

/// Refuses a webhook key written in the configuration itself.
fn no_secret<'de, D: Deserializer<'de>>(_: D) -> Result<Option<NoLiteral>, D::Error> {
    Err(serde::de::Error::custom(
        "the key `webhook.secret` is refused: a secret is never written in the configuration; \
         set `secret_env: NAME` (an environment variable) or `secret_file: PATH` (a file) that \
         holds it",
    ))
}

/// The type of a refused key: it never deserialises.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoLiteral;

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (a relay on the same host or network only).
    None,
    /// STARTTLS, required (port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465 by default).
    Tls,
}

/// `smtp`: email through an SMTP relay.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default by `tls`: 25 (`none`), 587 (`starttls`), 465 (`tls`).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The file that holds the password (its trailing newline dropped).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default, rename = "password", deserialize_with = "no_password")]
    pub password_literal: Option<NoLiteral>,
    /// A PEM file of certificate authorities to trust besides the system's, for a relay whose
    /// certificate a private authority signed.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The sender: `escalade@city.example` or `网格化管理 <escalade@city.example>`.
    pub from: String,
    /// Connections kept open to the relay, and sends at once at most.
    #[serde(default = "default_pool")]
    pub pool: u32,
    /// Tasks claiming email rows.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How long one SMTP command may take.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// An email due longer ago than this is not sent but made stale; default
    /// `delivery.stale_after`.
    #[serde(default, deserialize_with = "smtp_age")]
    pub stale_after: Option<Dur>,
    /// The password, read from `password_env` or `password_file` by `check`.
    #[serde(skip)]
    pub password: Option<Secret>,
}

impl Default for SmtpConfig {
    fn default() -> SmtpConfig {
        SmtpConfig {
            host: String::new(),
            port: None,
            tls: TlsMode::default(),
            username: None,
            password_env: None,
            password_file: None,
            password_literal: None,
            ca_file: None,
            from: String::new(),
            pool: default_pool(),
            workers: default_workers(),
            timeout: default_timeout(),
            stale_after: None,
            password: None,
        }
    }
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        })
    }
}

fn default_pool() -> u32 {
    4
}

fn default_workers() -> usize {
    2
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}

/// A header value: a literal, or read from the environment or a file (an API key).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum HeaderSource {
    Value(String),
    Env { env: String },
    File { file: PathBuf },
}

/// How the SMS gateway's request body is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    #[default]
    Json,
    Form,
}

/// What a refusal by the gateway (a 2xx answer whose success field says otherwise) means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refused {
    /// A dead letter at once.
    #[default]
    Dead,
    /// Retried with backoff, like a transient failure.
    Retry,
}

/// `sms`: a generic HTTP gateway.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// Headers sent with every request; a value may be `{env: NAME}` or `{file: PATH}`.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderSource>,
    /// The request body: a mapping whose strings are minijinja templates over `to`, `text`,
    /// `segments` and `id` (the outbox row's id, for the gateway's deduplication).
    #[serde(default = "default_sms_body")]
    pub body: serde_json::Value,
    #[serde(default)]
    pub body_format: BodyFormat,
    /// Statuses that mean accepted; default any 2xx.
    #[serde(default)]
    pub success_status: Vec<u16>,
    /// A field of the JSON answer (dotted: `result.code`) that must equal `success_value`.
    #[serde(default)]
    pub success_field: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    pub success_value: Option<String>,
    /// What an answer that is not a success but not an HTTP error either means.
    #[serde(default)]
    pub refused: Refused,
    /// Requests per second at most, over all SMS workers (a token bucket).
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// Requests the bucket lets through at once after a quiet spell; default 1.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Tasks claiming SMS rows.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Requests in flight at most.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// An SMS due longer ago than this is not sent but made stale; default
    /// `delivery.stale_after`.
    #[serde(default, deserialize_with = "sms_age")]
    pub stale_after: Option<Dur>,
    /// Header values with their secrets read, by `check`.
    #[serde(skip)]
    pub resolved_headers: Vec<(String, Secret)>,
}

impl Default for SmsConfig {
    fn default() -> SmsConfig {
        SmsConfig {
            url: String::new(),
            method: default_method(),
            headers: BTreeMap::new(),
            body: default_sms_body(),
            body_format: BodyFormat::default(),
            success_status: Vec::new(),
            success_field: None,
            success_value: None,
            refused: Refused::default(),
            rate_per_second: None,
            burst: default_burst(),
            workers: default_workers(),
            concurrency: default_concurrency(),
            timeout: default_timeout(),
            stale_after: None,
            resolved_headers: Vec::new(),
        }
    }
}

fn default_method() -> String {
    "POST".into()
}

fn default_sms_body() -> serde_json::Value {
    serde_json::json!({"to": "{{ to }}", "text": "{{ text }}"})
}

fn default_burst() -> u32 {
    1
}

fn default_concurrency() -> usize {
    8
}

/// A string, number or boolean, as text (`success_value: 0` and `"0"` mean the same).
fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
            Some(v.to_string())
        }
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a string or a number, not {other}"
            )));
        }
    })
}

/// `webhook`: every committed event, POSTed as JSON and signed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The environment variable that holds the HMAC-SHA256 key.
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default, rename = "secret", deserialize_with = "no_secret")]
    pub secret_literal: Option<NoLiteral>,
    #[serde(default = "default_webhook_workers")]
    pub workers: usize,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// An event due longer ago than this is not posted but made stale; default
    /// `delivery.stale_after`.
    #[serde(default, deserialize_with = "webhook_age")]
    pub stale_after: Option<Dur>,
    /// The key, read by `check`.
    #[serde(skip)]
    pub secret: Secret,
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            url: String::new(),
            secret_env: None,
            secret_file: None,
            secret_literal: None,
            workers: default_webhook_workers(),
            concurrency: default_concurrency(),
            timeout: default_timeout(),
            stale_after: None,
            secret: Secret::default(),
        }
    }
}

fn default_webhook_workers() -> usize {
    1
}

/// `delivery`: retries, batches and leases, for every channel.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Attempts before a row that keeps failing transiently becomes a dead letter.
    pub max_attempts: u32,
    /// The first retry's delay at most; each later one doubles it.
    pub backoff: Dur,
    pub backoff_cap: Dur,
    /// Rows one worker claims at a time.
    pub batch: usize,
    /// How long a claim holds a row: if the worker has not settled it by then (it died), the row
    /// is due again. A batch's sends must finish well within it.
    pub lease: Dur,
    /// How often an idle worker looks for due rows.
    pub poll: Dur,
    /// A message claimed for sending longer than this after it was due (created, or released
    /// by quiet hours or a digest window) is not sent but made `stale`: a backlog that waited
    /// for its channel does not all go out late. Each channel's `stale_after` overrides it.
    #[serde(deserialize_with = "delivery_age")]
    pub stale_after: Dur,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            max_attempts: 10,
            backoff: Dur(Duration::from_secs(5)),
            backoff_cap: Dur(Duration::from_secs(3600)),
            batch: 32,
            lease: Dur(Duration::from_secs(300)),
            poll: Dur(Duration::from_secs(1)),
            stale_after: Dur(Duration::from_secs(24 * 3600)),
        }
    }
}

/// Reads an age (`stale_after`), naming its key in an error: the YAML parser's names only the
/// section.
fn age<'de, D: Deserializer<'de>>(key: &str, d: D) -> Result<Dur, D::Error> {
    Dur::deserialize(d).map_err(|e| serde::de::Error::custom(format!("{key}: {e}")))
}

fn delivery_age<'de, D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
    age("delivery.stale_after", d)
}

fn smtp_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Dur>, D::Error> {
    age("smtp.stale_after", d).map(Some)
}

fn sms_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Dur>, D::Error> {
    age("sms.stale_after", d).map(Some)
}

fn webhook_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Dur>, D::Error> {
    age("webhook.stale_after", d).map(Some)
}

/// Refuses an age of zero for `{section}.stale_after` (a negative or unreadable one is refused
/// as it is read).
fn positive_age(section: &str, age: Option<Dur>) -> Result<(), String> {
    match age {
        Some(Dur(d)) if d.is_zero() => Err(format!(
            "{section}.stale_after: must be a positive duration (how long after it was due a \
             message is still sent, such as `24h`), not 0"
        )),
        _ => Ok(()),
    }
}

/// Reads a secret from the environment variable or the file named, naming the key at fault.
pub(crate) fn read_secret(
    section: &str,
    env_key: &str,
    file_key: &str,
    env_name: Option<&str>,
    file: Option<&PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    match (env_name, file) {
        (Some(_), Some(_)) => Err(format!(
            "{section}: set `{env_key}` or `{file_key}`, not both"
        )),
        (Some(name), None) => env(name).map(|v| Some(Secret(v))).ok_or_else(|| {
            format!("{section}.{env_key}: the environment variable `{name}` is not set")
        }),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|v| Some(Secret(v.trim_end_matches(['\r', '\n']).to_string())))
            .map_err(|e| format!("{section}.{file_key}: cannot read {}: {e}", path.display())),
        (None, None) => Ok(None),
    }
}

impl SmtpConfig {
    /// Checks the section and reads the password.
    pub fn check(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("smtp.host: the SMTP relay's host name is required".into());
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!(
                "smtp.from: `{}` is not an email address (`escalade@city.example` or `Name <escalade@city.example>`)",
                self.from
            ));
        }
        if self.pool == 0 || self.workers == 0 {
            return Err("smtp.pool and smtp.workers: at least 1".into());
        }
        positive_age("smtp", self.stale_after)?;
        self.password = read_secret(
            "smtp",
            "password_env",
            "password_file",
            self.password_env.as_deref(),
            self.password_file.as_ref(),
            env,
        )?;
        if self.password.is_some() && self.username.is_none() {
            return Err("smtp.username: a password is set but no username".into());
        }
        if self.username.is_some() && self.password.is_none() {
            return Err(
                "smtp: a username is set but no password (`password_env` or `password_file`)"
                    .into(),
            );
        }
        Ok(())
    }
}

impl SmsConfig {
    /// Checks the section (the body's templates compile, the URL and method are valid) and
    /// reads the header secrets.
    pub fn check(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        if reqwest::Url::parse(&self.url).is_err() {
            return Err(format!("sms.url: `{}` is not a URL", self.url));
        }
        if reqwest::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes()).is_err() {
            return Err(format!(
                "sms.method: `{}` is not an HTTP method",
                self.method
            ));
        }
        crate::notify::sms::BodyTemplate::compile(&self.body, self.body_format)?;
        if self.success_field.is_some() != self.success_value.is_some() {
            return Err("sms.success_field and sms.success_value go together".into());
        }
        if let Some(s) = self
            .success_status
            .iter()
            .find(|s| !(100..600).contains(*s))
        {
            return Err(format!("sms.success_status: {s} is not an HTTP status"));
        }
        if let Some(r) = self.rate_per_second
            && !(r.is_finite() && r > 0.0)
        {
            return Err(format!("sms.rate_per_second: {r} is not a positive number"));
        }
        if self.burst == 0 || self.workers == 0 || self.concurrency == 0 {
            return Err("sms.burst, sms.workers and sms.concurrency: at least 1".into());
        }
        positive_age("sms", self.stale_after)?;
        self.resolved_headers.clear();
        for (name, source) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("sms.headers: `{name}` is not a header name"));
            }
            let key = format!("headers.{name}");
            let value = match source {
                HeaderSource::Value(v) => Secret(v.clone()),
                HeaderSource::Env { env: var } => {
                    read_secret("sms", &key, &key, Some(var), None, env)?.unwrap_or_default()
                }
                HeaderSource::File { file } => {
                    read_secret("sms", &key, &key, None, Some(file), env)?.unwrap_or_default()
                }
            };
            if reqwest::header::HeaderValue::from_str(&value.0).is_err() {
                return Err(format!("sms.{key}: the value is not a valid header value"));
            }
            self.resolved_headers.push((name.clone(), value));
        }
        Ok(())
    }
}

impl WebhookConfig {
    /// Checks the section and reads the key.
    pub fn check(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        if reqwest::Url::parse(&self.url).is_err() {
            return Err(format!("webhook.url: `{}` is not a URL", self.url));
        }
        if self.workers == 0 || self.concurrency == 0 {
            return Err("webhook.workers and webhook.concurrency: at least 1".into());
        }
        positive_age("webhook", self.stale_after)?;
        self.secret = read_secret(
            "webhook",
            "secret_env",
            "secret_file",
            self.secret_env.as_deref(),
            self.secret_file.as_ref(),
            env,
        )?
        .ok_or_else(|| {
            "webhook: the signing key is required: `secret_env: NAME` or `secret_file: PATH`"
                .to_string()
        })?;
        if self.secret.0.is_empty() {
            return Err("webhook: the signing key is empty".into());
        }
        Ok(())
    }
}

impl DeliveryConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.max_attempts == 0 || self.batch == 0 {
            return Err("delivery.max_attempts and delivery.batch: at least 1".into());
        }
        if self.backoff.0.is_zero() || self.backoff_cap.0 < self.backoff.0 {
            return Err(
                "delivery.backoff must be positive and delivery.backoff_cap at least as long"
                    .into(),
            );
        }
        if self.lease.0 < Duration::from_secs(1) || self.poll.0.is_zero() {
            return Err("delivery.lease: at least 1s; delivery.poll: positive".into());
        }
        positive_age("delivery", Some(self.stale_after))
    }
}
