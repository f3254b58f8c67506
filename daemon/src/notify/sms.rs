//! SMS through a generic HTTP gateway: the request body is a template of the configuration,
//! the answer is judged by its status (and optionally a field of its JSON), and a token bucket
//! shared by every SMS worker holds the send rate.

use std::sync::Mutex;
use std::time::Duration;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::config::{BodyFormat, Refused, SmsConfig};
use super::{Failure, http_failure, snippet};

/// The variables the body's templates may use.
pub const BODY_VARIABLES: &[&str] = &["to", "text", "segments", "id"];

/// The request body: the configuration's structure with each string a compiled template.
#[derive(Debug)]
pub struct BodyTemplate {
    env: Environment<'static>,
    root: Node,
    format: BodyFormat,
}

#[derive(Debug)]
enum Node {
    /// A string: the name of its template in the environment.
    Template(String),
    /// A number, boolean or null, sent as written.
    Literal(Value),
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
}

impl BodyTemplate {
    /// Compiles every string of `body` as a template over `to`, `text`, `segments` and `id`;
    /// an error names the key (`sms.body.text`). A form body is one level of scalars.
    pub fn compile(body: &Value, format: BodyFormat) -> Result<BodyTemplate, String> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        if format == BodyFormat::Form {
            let Value::Object(map) = body else {
                return Err(
                    "sms.body: with `body_format: form` the body is a mapping of fields".into(),
                );
            };
            if let Some((k, _)) = map.iter().find(|(_, v)| v.is_object() || v.is_array()) {
                return Err(format!(
                    "sms.body.{k}: with `body_format: form` every field is a string or a number"
                ));
            }
        }
        let root = build(&mut env, "sms.body", body)?;
        Ok(BodyTemplate { env, root, format })
    }

    pub fn format(&self) -> BodyFormat {
        self.format
    }

    /// The body for one message.
    pub fn render(&self, to: &str, text: &str, segments: usize, id: i64) -> Result<Value, String> {
        let ctx = minijinja::context! { to, text, segments, id => id.to_string() };
        self.render_node(&self.root, &ctx)
    }

    fn render_node(&self, node: &Node, ctx: &minijinja::Value) -> Result<Value, String> {
        Ok(match node {
            Node::Template(name) => {
                let t = self
                    .env
                    .get_template(name)
                    .map_err(|e| format!("{name}: {e}"))?;
                Value::String(t.render(ctx).map_err(|e| format!("{name}: {e:#}"))?)
            }
            Node::Literal(v) => v.clone(),
            Node::Map(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, n)| Ok((k.clone(), self.render_node(n, ctx)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Node::List(items) => Value::Array(
                items
                    .iter()
                    .map(|n| self.render_node(n, ctx))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }
}

fn build(env: &mut Environment<'static>, path: &str, v: &Value) -> Result<Node, String> {
    Ok(match v {
        Value::String(source) => {
            env.add_template_owned(path.to_string(), source.clone())
                .map_err(|e| format!("{path}: the template does not compile: {e}"))?;
            let t = env.get_template(path).map_err(|e| format!("{path}: {e}"))?;
            let mut unknown: Vec<String> = t
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !BODY_VARIABLES.contains(&v.as_str()))
                .collect();
            unknown.sort();
            if let Some(u) = unknown.first() {
                return Err(format!(
                    "{path}: the template uses unknown variable `{u}` (known: {})",
                    BODY_VARIABLES.join(", ")
                ));
            }
            Node::Template(path.to_string())
        }
        Value::Object(map) => Node::Map(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), build(env, &format!("{path}.{k}"), v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Array(items) => Node::List(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| build(env, &format!("{path}[{i}]"), v))
                .collect::<Result<_, String>>()?,
        ),
        other => Node::Literal(other.clone()),
    })
}

/// A token bucket (as GCRA): one request per `interval`, `burst` at once after a quiet spell.
/// Each caller is given the next free instant and sleeps until then.
pub struct RateLimit {
    interval: Duration,
    tolerance: Duration,
    /// The theoretical arrival time of the next request.
    tat: Mutex<Option<Instant>>,
}

impl RateLimit {
    pub fn new(per_second: f64, burst: u32) -> RateLimit {
        let interval = Duration::from_secs_f64(1.0 / per_second);
        RateLimit {
            interval,
            tolerance: interval * burst.saturating_sub(1),
            tat: Mutex::new(None),
        }
    }

    pub async fn acquire(&self) {
        let slot = {
            let mut tat = self.tat.lock().expect("rate limit lock");
            let now = Instant::now();
            let due = tat.map_or(now, |t| t.checked_sub(self.tolerance).unwrap_or(now));
            let slot = due.max(now);
            *tat = Some(tat.map_or(slot, |t| t.max(slot)) + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// How long `n` requests take at least.
    pub fn span(&self, n: usize) -> Duration {
        self.interval * n as u32
    }
}

pub struct Sms {
    client: reqwest::Client,
    url: reqwest::Url,
    method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    body: BodyTemplate,
    success_status: Vec<u16>,
    /// The success field's path, split at dots, and the value it must have.
    success: Option<(Vec<String>, String)>,
    refused: Refused,
    pub(super) limit: Option<RateLimit>,
    slots: Semaphore,
}

impl Sms {
    pub fn new(c: &SmsConfig) -> Result<Sms, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &c.resolved_headers {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| format!("sms.headers.{name}: {e}"))?,
                reqwest::header::HeaderValue::from_str(&value.0)
                    .map_err(|e| format!("sms.headers.{name}: {e}"))?,
            );
        }
        Ok(Sms {
            client: reqwest::Client::builder()
                .timeout(c.timeout.0)
                .build()
                .map_err(|e| format!("sms: cannot build the HTTP client: {e}"))?,
            url: reqwest::Url::parse(&c.url).map_err(|e| format!("sms.url: {e}"))?,
            method: reqwest::Method::from_bytes(c.method.to_ascii_uppercase().as_bytes())
                .map_err(|e| format!("sms.method: {e}"))?,
            headers,
            body: BodyTemplate::compile(&c.body, c.body_format)?,
            success_status: c.success_status.clone(),
            success: c
                .success_field
                .as_ref()
                .zip(c.success_value.as_ref())
                .map(|(f, v)| (f.split('.').map(str::to_string).collect(), v.clone())),
            refused: c.refused,
            limit: c.rate_per_second.map(|r| RateLimit::new(r, c.burst)),
            slots: Semaphore::new(c.concurrency),
        })
    }

    /// Sends one SMS through the gateway.
    pub async fn send(
        &self,
        id: i64,
        to: &str,
        text: &str,
        segments: usize,
    ) -> Result<(), Failure> {
        let body = self
            .body
            .render(to, text, segments, id)
            .map_err(|e| Failure::Permanent(format!("the SMS body: {e}")))?;
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        request = match self.body.format() {
            BodyFormat::Json => request.json(&body),
            BodyFormat::Form => {
                let fields: Vec<(String, String)> = body
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| match v {
                        Value::String(s) => (k.clone(), s.clone()),
                        Value::Null => (k.clone(), String::new()),
                        other => (k.clone(), other.to_string()),
                    })
                    .collect();
                request.form(&fields)
            }
        };
        let _slot = self.slots.acquire().await.expect("never closed");
        if let Some(limit) = &self.limit {
            limit.acquire().await;
        }
        let response = request.send().await.map_err(|e| Failure::Transient {
            error: format!("SMS gateway: {e}"),
            after: None,
        })?;
        let status = response.status();
        let retry_after = super::retry_after(response.headers());
        let text = response.text().await.map_err(|e| Failure::Transient {
            error: format!("SMS gateway: reading the answer: {e}"),
            after: None,
        })?;
        let accepted = if self.success_status.is_empty() {
            status.is_success()
        } else {
            self.success_status.contains(&status.as_u16())
        };
        let refused = |error: String| match self.refused {
            Refused::Dead => Failure::Permanent(error),
            Refused::Retry => Failure::Transient { error, after: None },
        };
        if accepted {
            let Some((path, want)) = &self.success else {
                return Ok(());
            };
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let got = path.iter().try_fold(&answer, |v, k| v.get(k));
            let got_text = match got {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            };
            if got_text.as_deref() == Some(want.as_str()) {
                return Ok(());
            }
            return Err(refused(format!(
                "the SMS gateway refused the message: `{}` is {} (success is {want}): {}",
                path.join("."),
                got.map(Value::to_string)
                    .unwrap_or_else(|| "missing".into()),
                snippet(&text)
            )));
        }
        Err(
            http_failure("SMS gateway", status, retry_after, &text).unwrap_or_else(|| {
                refused(format!(
                    "the SMS gateway answered {status}, not a success: {}",
                    snippet(&text)
                ))
            }),
        )
    }
}
