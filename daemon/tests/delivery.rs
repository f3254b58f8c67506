//! Delivery of the outbox against real servers: email through an SMTP server embedded in the
//! test (`mailin-embedded`), SMS through an HTTP server playing a provider's gateway, the webhook
//! to the same kind of server. The engine runs on the example city with a manual clock; the
//! tests drive delivery with `Delivery::drain(now)`, one pass per channel at a time they choose,
//! so retries' backoff and quiet hours are deterministic.

use std::collections::{HashSet, VecDeque};
use std::net::TcpListener as StdListener;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Duration;
use escalade::api::{AppState, serve};
use escalade::config::Config;
use escalade::engine::{Engine, ManualClock};
use escalade::notify::{Delivery, Pass};
use escalade::store::{OutboxFilter, OutboxRow, StoreOptions};
use escalade_rules::{Event, Issue, RuleSet};
use mailin_embedded::Server as SmtpServer;
use mailparse::MailHeaderMap;
use serde_json::{Value, json};
use support::smtp::{Mail, Mailbox, closed_port, smtp_running, smtp_yaml, start_smtp};

mod support;

use support::{TestDb, at};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// Tuesday 10:00 in Beijing: working hours, outside quiet hours.
const MORNING: &str = "2026-03-03T10:00:00+08:00";

// ---- an HTTP server playing the SMS gateway and the webhook's receiver ----------------------

#[derive(Clone, Debug)]
struct Request {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Gateway {
    sms: Mutex<Vec<Request>>,
    hooks: Mutex<Vec<Request>>,
    /// Answers to give to SMS requests, in order; then 200 `{"code": "0"}`.
    script: Mutex<VecDeque<(u16, &'static str)>>,
}

impl Gateway {
    fn sms(&self) -> Vec<Request> {
        self.sms.lock().unwrap().clone()
    }

    fn hooks(&self) -> Vec<Request> {
        self.hooks.lock().unwrap().clone()
    }

    fn answer(&self, answers: &[(u16, &'static str)]) {
        self.script.lock().unwrap().extend(answers.iter().copied());
    }
}

async fn start_gateway() -> (Arc<Gateway>, String) {
    async fn sms(
        State(g): State<Arc<Gateway>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        let at = Instant::now();
        g.sms.lock().unwrap().push(Request { at, headers, body });
        let (status, body) = g
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((200, r#"{"code": "0", "msg": "ok"}"#));
        (StatusCode::from_u16(status).unwrap(), body.to_string())
    }
    async fn hook(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let at = Instant::now();
        g.hooks.lock().unwrap().push(Request { at, headers, body });
        StatusCode::NO_CONTENT
    }
    let g = Arc::new(Gateway::default());
    let app = Router::new()
        .route("/send", post(sms))
        .route("/hook", post(hook))
        .with_state(g.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (g, base)
}

fn sms_yaml(base: &str, extra: &str) -> String {
    format!(
        r#"sms:
  url: {base}/send
  headers: {{authorization: {{env: SMS_KEY}}, x-tenant: city}}
  body:
    phone: "{{{{ to }}}}"
    content: "{{{{ text }}}}"
    ref: "{{{{ id }}}}"
    parts: "{{{{ segments }}}}"
  success_field: code
  success_value: 0
  timeout: 5s
{extra}"#
    )
}

// ---- the engine and delivery ----------------------------------------------------------------

struct Setup {
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    delivery: Arc<Delivery>,
    db: TestDb,
    dir: tempfile::TempDir,
}

const ENV: &[(&str, &str)] = &[
    ("SMS_KEY", "Bearer k-123"),
    ("HOOK_KEY", "s3cret-key"),
    ("LINK_KEY", LINK_KEY),
];

fn load_config(dir: &std::path::Path, yaml: &str) -> Config {
    let f = dir.join("escalade.yaml");
    std::fs::write(&f, yaml).unwrap();
    Config::load(Some(&f), |k| {
        ENV.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

/// The example city on a fresh store (its state directory a temp dir, where the CLI finds the
/// store), the clock at `now`, and delivery as `yaml` configures it.
async fn setup(yaml: &str, now: &str) -> Setup {
    setup_rules(yaml, now, CITY).await
}

/// `setup` on the rule directory `rules`.
async fn setup_rules(yaml: &str, now: &str, rules: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load_config(dir.path(), yaml);
    let db = TestDb::new(dir.path());
    let store = db
        .open(StoreOptions {
            webhook_events: cfg.webhook.is_some(),
            ..Default::default()
        })
        .await;
    let clock = Arc::new(ManualClock::new(at(now)));
    let engine = Arc::new(Engine::new(
        store,
        RuleSet::load(rules).unwrap(),
        clock.clone(),
    ));
    let delivery = Arc::new(Delivery::new(engine.clone(), &cfg).unwrap());
    Setup {
        engine,
        clock,
        delivery,
        db,
        dir,
    }
}

impl Setup {
    /// Reports garbage at grid g-0001: urban's p-urban-li is told by SMS and email,
    /// p-urban-zhao by email.
    async fn report(&self, priority: Option<&str>) -> String {
        let mut issue = json!({"category": "garbage", "unit": "g-0001",
            "description": "小区门口垃圾堆积三天无人清运，气味难闻"});
        if let Some(p) = priority {
            issue["priority"] = json!(p);
        }
        let issue: Issue = serde_json::from_value(issue).unwrap();
        let s = self.engine.submit(issue, "admin#1", None).await.unwrap();
        s.issue.issue.id
    }

    async fn rows(&self, channel: &str) -> Vec<OutboxRow> {
        let f = OutboxFilter {
            limit: 1000,
            ..Default::default()
        };
        self.engine
            .store()
            .outbox_page(&f)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.channel == channel)
            .collect()
    }

    /// Delivery as `yaml` configures it from now on: what a restart with a new configuration
    /// does.
    fn configure(&mut self, yaml: &str) {
        let cfg = load_config(self.dir.path(), yaml);
        self.delivery = Arc::new(Delivery::new(self.engine.clone(), &cfg).unwrap());
    }

    async fn drain(&self, now: &str) -> Pass {
        self.clock.set(at(now));
        self.delivery.drain(at(now)).await.unwrap()
    }
}

fn parse(mail: &Mail) -> mailparse::ParsedMail<'_> {
    mailparse::parse_mail(&mail.data).unwrap()
}

// ---- email ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_a_real_smtp_server_with_a_chinese_subject_and_html() {
    let (mailbox, port) = smtp_running();
    let s = setup(&smtp_yaml(port), MORNING).await;
    let id = s.report(None).await;
    let pass = s.drain(MORNING).await;
    assert_eq!((pass.sent, pass.dead, pass.retried), (2, 0, 0), "{pass:?}");

    let mails = mailbox.mails();
    assert_eq!(mails.len(), 2);
    let to: HashSet<&str> = mails
        .iter()
        .flat_map(|m| m.to.iter().map(String::as_str))
        .collect();
    assert_eq!(
        to,
        HashSet::from(["urban.li@example.org", "urban.zhao@example.org"])
    );
    let li = &mailbox.to("urban.li@example.org")[0];
    let raw = String::from_utf8_lossy(&li.data).to_string();
    // The subject is RFC 2047-encoded on the wire; decoded, it is the template's Chinese.
    let subject_line = raw
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("subject:"))
        .unwrap();
    assert!(
        subject_line.to_ascii_lowercase().contains("=?utf-8?"),
        "{subject_line}"
    );
    let parsed = parse(li);
    let subject = parsed.headers.get_first_value("Subject").unwrap();
    assert_eq!(subject, format!("【新派遣】垃圾堆放 {id}"));
    assert!(
        parsed
            .headers
            .get_first_value("From")
            .unwrap()
            .contains("网格化管理"),
    );
    let to_header = parsed.headers.get_first_value("To").unwrap();
    assert!(to_header.contains("李卫东"), "{to_header}");
    // multipart/alternative: the plain text and the HTML, both in Chinese.
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    let parts: Vec<(String, String)> = parsed
        .subparts
        .iter()
        .map(|p| (p.ctype.mimetype.clone(), p.get_body().unwrap()))
        .collect();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].0, "text/plain");
    assert!(parts[0].1.contains("李卫东："), "{}", parts[0].1);
    assert!(parts[0].1.contains("请及时签收并处置"), "{}", parts[0].1);
    assert_eq!(parts[1].0, "text/html");
    assert!(
        parts[1].1.contains("<strong>垃圾堆放</strong>"),
        "{}",
        parts[1].1
    );
    // The Message-ID names the outbox row: a message sent twice keeps it.
    let rows = s.rows("email").await;
    let row = rows.iter().find(|r| r.person == "p-urban-li").unwrap();
    assert_eq!(
        parsed.headers.get_first_value("Message-ID").unwrap(),
        format!("<escalade-{}@city.example>", row.id)
    );
    assert!(
        rows.iter()
            .all(|r| r.status == "sent" && r.attempts == 1 && r.sent_at == Some(at(MORNING)))
    );

    // No SMS gateway is configured: the SMS stays queued, and the status says why.
    let sms = s.rows("sms").await;
    assert_eq!(sms.len(), 1);
    assert_eq!((sms[0].status.as_str(), sms[0].attempts), ("queued", 0));
    let status = s.delivery.status().await.unwrap();
    assert_eq!(status["unconfigured"], json!(["sms"]), "{status}");
    assert_eq!(status["channels"]["sms"]["queued"], 1);
    assert_eq!(status["channels"]["email"]["configured"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_at_first_gets_the_email_once_it_is_up() {
    let port = closed_port();
    let s = setup(&smtp_yaml(port), MORNING).await;
    s.report(None).await;
    let pass = s.drain(MORNING).await;
    assert_eq!((pass.sent, pass.retried), (0, 2), "{pass:?}");
    for r in s.rows("email").await {
        assert_eq!((r.status.as_str(), r.attempts), ("queued", 1));
        assert!(r.last_error.as_deref().unwrap().contains("SMTP"), "{r:?}");
        // Full jitter below the first backoff of 5 s, never at once.
        assert!(
            r.not_before > at(MORNING) && r.not_before <= at(MORNING) + Duration::seconds(5),
            "{r:?}"
        );
    }
    // Nothing is due again before the backoff ends.
    assert_eq!(s.drain(MORNING).await.claimed, 0);

    let mailbox = Mailbox::default();
    start_smtp(
        StdListener::bind(("127.0.0.1", port)).unwrap(),
        mailbox.clone(),
    );
    let pass = s.drain("2026-03-03T10:00:05+08:00").await;
    assert_eq!(pass.sent, 2, "{pass:?}");
    assert_eq!(s.drain("2026-03-03T11:00:00+08:00").await.claimed, 0);
    // Exactly once each.
    assert_eq!(mailbox.to("urban.li@example.org").len(), 1);
    assert_eq!(mailbox.to("urban.zhao@example.org").len(), 1);
    assert_eq!(mailbox.mails().len(), 2);
    for r in s.rows("email").await {
        assert_eq!((r.status.as_str(), r.attempts), ("sent", 2));
    }
}

/// A relay with STARTTLS and a certificate of a private authority: trusted through `ca_file`,
/// the email goes encrypted; without it, the certificate is refused and the email waits, retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_to_a_relay_whose_certificate_the_ca_file_vouches_for() {
    // This test binary links two rustls providers (the test server's and the daemon's): name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certs.path().join("relay.pem");
    let key = certs.path().join("relay.key");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mailbox = Mailbox::default();
    let tls_box = mailbox.clone();
    let (cert_path, key_path) = (cert.display().to_string(), key.display().to_string());
    std::thread::spawn(move || {
        let mut server = SmtpServer::new(tls_box);
        server
            .with_name("localhost")
            .with_num_threads(4)
            .with_ssl(mailin_embedded::SslConfig::SelfSigned {
                cert_path,
                key_path,
            })
            .unwrap()
            .with_tcp_listener(listener);
        let _ = server.serve();
    });
    let yaml = |ca: &str| {
        format!(
            "smtp:\n  host: localhost\n  port: {port}\n  tls: starttls\n  from: escalade@city.example\n  timeout: 5s\n{ca}"
        )
    };

    // Not trusted: refused at the handshake, retried later, nothing delivered.
    let s = setup(&yaml(""), MORNING).await;
    s.report(None).await;
    let pass = s.drain(MORNING).await;
    assert_eq!((pass.sent, pass.retried), (0, 2), "{pass:?}");
    for r in s.rows("email").await {
        assert_eq!(r.status, "queued");
        assert!(
            r.last_error
                .as_deref()
                .unwrap()
                .to_lowercase()
                .contains("certificate"),
            "{r:?}"
        );
    }
    assert!(mailbox.mails().is_empty());

    // Trusted through `ca_file`: delivered, once each.
    let s = setup(&yaml(&format!("  ca_file: {}\n", cert.display())), MORNING).await;
    s.report(None).await;
    let pass = s.drain(MORNING).await;
    assert_eq!(pass.sent, 2, "{pass:?}");
    assert_eq!(mailbox.to("urban.li@example.org").len(), 1);
    assert_eq!(mailbox.mails().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_end_as_a_dead_letter_after_the_attempts_allowed() {
    let port = closed_port();
    let yaml = format!("{}delivery: {{max_attempts: 2}}\n", smtp_yaml(port));
    let s = setup(&yaml, MORNING).await;
    s.report(None).await;
    assert_eq!(s.drain(MORNING).await.retried, 2);
    let pass = s.drain("2026-03-03T10:01:00+08:00").await;
    assert_eq!(pass.dead, 2, "{pass:?}");
    for r in s.rows("email").await {
        assert_eq!((r.status.as_str(), r.attempts), ("dead", 2));
        assert!(
            r.last_error
                .as_deref()
                .unwrap()
                .contains("gave up after 2 attempts"),
            "{r:?}"
        );
    }
}

/// The API in-process over the same engine and delivery, and an admin client.
async fn api(s: &Setup) -> (String, reqwest::Client, tokio::sync::oneshot::Sender<()>) {
    let state = Arc::new(AppState {
        rules: support::steward(&s.engine, CITY).await,
        engine: s.engine.clone(),
        scheduler_running: Arc::new(AtomicBool::new(true)),
        photos: Arc::new(escalade::photos::PhotoStore::open(s.dir.path()).unwrap()),
        photo_limits: Default::default(),
        delivery: Some(s.delivery.clone()),
        links: s.delivery.links(),
        turns: Default::default(),
        console: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    let token = support::token(&s.engine, "admin", None).await;
    (base, support::client(&token), stop)
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn post_to(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.post(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_is_a_dead_letter_retried_through_the_api() {
    let (mailbox, port) = smtp_running();
    mailbox
        .refuse
        .lock()
        .unwrap()
        .insert("urban.zhao@example.org".into());
    let s = setup(&smtp_yaml(port), MORNING).await;
    s.report(None).await;
    let pass = s.drain(MORNING).await;
    assert_eq!((pass.sent, pass.dead), (1, 1), "{pass:?}");
    assert_eq!(mailbox.mails().len(), 1);

    let (base, admin, _stop) = api(&s).await;
    let (status, body) = get(&admin, format!("{base}/api/v1/outbox?status=dead")).await;
    assert_eq!(status, 200, "{body}");
    let dead = body["messages"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{body}");
    let d = &dead[0];
    assert_eq!(d["address"], "urban.zhao@example.org");
    assert_eq!(d["attempts"], 1);
    assert!(d["last_error"].as_str().unwrap().contains("550"), "{d}");
    assert!(d["not_before"].is_string() && d["sent_at"].is_null(), "{d}");
    let dead_id = d["id"].as_i64().unwrap();

    // Pages: one row a page, the cursor continues.
    let (_, page) = get(&admin, format!("{base}/api/v1/outbox?limit=1")).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, next) = get(
        &admin,
        format!("{base}/api/v1/outbox?limit=1&cursor={cursor}"),
    )
    .await;
    assert!(
        next["messages"][0]["id"].as_i64().unwrap() > page["messages"][0]["id"].as_i64().unwrap()
    );
    let (status, body) = get(&admin, format!("{base}/api/v1/outbox?status=lost")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );

    // Only a dead letter is retried.
    let sent = s
        .rows("email")
        .await
        .into_iter()
        .find(|r| r.status == "sent")
        .unwrap();
    let (status, body) = post_to(&admin, format!("{base}/api/v1/outbox/{}/retry", sent.id)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_dead")),
        "{body}"
    );
    let (status, _) = post_to(&admin, format!("{base}/api/v1/outbox/999999/retry")).await;
    assert_eq!(status, 404);

    // The mailbox exists now; the retried letter is delivered.
    mailbox.refuse.lock().unwrap().clear();
    let (status, body) = post_to(&admin, format!("{base}/api/v1/outbox/{dead_id}/retry")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["status"], "queued");
    assert_eq!(body["message"]["attempts"], 0);
    let pass = s.drain("2026-03-03T10:00:01+08:00").await;
    assert_eq!(pass.sent, 1, "{pass:?}");
    assert_eq!(mailbox.to("urban.zhao@example.org").len(), 1);
    let (_, body) = get(&admin, format!("{base}/api/v1/outbox?status=dead")).await;
    assert_eq!(body["messages"], json!([]));

    // Readiness names the channel that has messages waiting and no configuration.
    let (status, body) = get(&admin, format!("{base}/readyz")).await;
    assert_eq!(status, 200);
    assert_eq!(body["delivery"]["unconfigured"], json!(["sms"]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_merges_emails_to_one_person_due_together() {
    let (mailbox, port) = smtp_running();
    let s = setup(&smtp_yaml(port), MORNING).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(s.report(None).await);
    }
    let pass = s.drain(MORNING).await;
    assert_eq!((pass.sent, pass.digests), (6, 2), "{pass:?}");
    let li = mailbox.to("urban.li@example.org");
    assert_eq!(li.len(), 1, "three emails to one person are one digest");
    let parsed = parse(&li[0]);
    assert_eq!(
        parsed.headers.get_first_value("Subject").unwrap(),
        "【汇总】3 条通知"
    );
    let text = parsed.subparts[0].get_body().unwrap();
    for id in &ids {
        assert!(
            text.contains(&format!("== 【新派遣】垃圾堆放 {id} ==")),
            "{text}"
        );
    }
    assert_eq!(mailbox.to("urban.zhao@example.org").len(), 1);

    // Another one five minutes later waits for the window's end (15 minutes after the digest).
    s.report(None).await;
    let pass = s.drain("2026-03-03T10:05:00+08:00").await;
    assert_eq!((pass.sent, pass.held), (0, 2), "{pass:?}");
    let held: Vec<OutboxRow> = s
        .rows("email")
        .await
        .into_iter()
        .filter(|r| r.status == "queued")
        .collect();
    assert!(
        held.iter()
            .all(|r| r.not_before == at("2026-03-03T10:15:00+08:00") && r.attempts == 0)
    );
    assert_eq!(s.drain("2026-03-03T10:14:59+08:00").await.claimed, 0);
    let pass = s.drain("2026-03-03T10:15:00+08:00").await;
    assert_eq!((pass.sent, pass.digests), (2, 0), "{pass:?}");
    assert_eq!(mailbox.to("urban.li@example.org").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_report_is_rendered_from_its_own_variables_and_never_merged() {
    use escalade_rules::jobs::{Named, OverdueDigestVars, OverdueIssue};
    let (mailbox, port) = smtp_running();
    let s = setup(&smtp_yaml(port), MORNING).await;
    // An email of an issue to the same person first: a report does not wait for the digest.
    s.report(None).await;
    s.drain(MORNING).await;
    let vars = OverdueDigestVars {
        recipient: Named {
            id: "p-urban-li".into(),
            name: "李卫东".into(),
        },
        unit: Named {
            id: "d-jinshui".into(),
            name: "金水区".into(),
        },
        issues: vec![OverdueIssue {
            id: "1".into(),
            category_name: "垃圾堆放".into(),
            unit_name: "网格一".into(),
            department_name: "城市管理局".into(),
            deadline_kind: "acknowledge".into(),
            deadline_at: "2026-03-03 09:30".into(),
            overdue_by: "30m".into(),
        }],
        as_of: "2026-03-03 10:01".into(),
    };
    let report = escalade::store::ReportMessage {
        person: "p-urban-li".into(),
        channel: escalade_rules::Channel::Email,
        address: "urban.li@example.org".into(),
        locale: "zh-CN".into(),
        template: "overdue_digest".into(),
        vars: serde_json::to_value(&vars).unwrap(),
    };
    let run = at("2026-03-03T10:01:00+08:00");
    assert!(
        s.engine
            .store()
            .record_run("overdue-digest", run, run, &[report])
            .await
            .unwrap()
    );
    let pass = s.drain("2026-03-03T10:01:00+08:00").await;
    assert_eq!((pass.sent, pass.held, pass.digests), (1, 0, 0), "{pass:?}");
    let mails = mailbox.to("urban.li@example.org");
    assert_eq!(mails.len(), 2);
    let parsed = parse(&mails[1]);
    assert_eq!(
        parsed.headers.get_first_value("Subject").unwrap(),
        "【超时督办】金水区辖区 1 件问题超时未办结"
    );
    let row = s
        .rows("email")
        .await
        .into_iter()
        .find(|r| r.issue_id.is_none())
        .unwrap();
    assert_eq!((row.status.as_str(), row.kind.as_str()), ("sent", "report"));
}

// ---- SMS ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_goes_through_the_gateway_with_the_configured_body_and_headers() {
    let (g, base) = start_gateway().await;
    let s = setup(&sms_yaml(&base, ""), MORNING).await;
    let id = s.report(None).await;
    let pass = s.drain(MORNING).await;
    assert_eq!(pass.sent, 1, "{pass:?}");
    let got = g.sms();
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    let row = &s.rows("sms").await[0];
    assert_eq!(body["phone"], "+8613900000011");
    assert_eq!(body["ref"], row.id.to_string());
    assert_eq!(body["parts"], "1");
    let text = body["content"].as_str().unwrap();
    assert!(
        text.starts_with("【网格化管理】") && text.contains(&id),
        "{text}"
    );
    assert_eq!(got[0].headers["authorization"], "Bearer k-123");
    assert_eq!(got[0].headers["x-tenant"], "city");
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(
        (row.status.as_str(), row.attempts, row.segments),
        ("sent", 1, Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_body_is_sent_as_a_form() {
    let (g, base) = start_gateway().await;
    let yaml = format!(
        "sms:\n  url: {base}/send\n  body_format: form\n  body: {{mobile: \"{{{{ to }}}}\", msg: \"{{{{ text }}}}\"}}\n"
    );
    let s = setup(&yaml, MORNING).await;
    s.report(None).await;
    assert_eq!(s.drain(MORNING).await.sent, 1);
    let got = &g.sms()[0];
    assert_eq!(
        got.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&got.body).unwrap();
    assert_eq!(form[0], ("mobile".into(), "+8613900000011".into()));
    assert!(form[1].1.starts_with("【网格化管理】"), "{form:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_error_is_retried_and_the_sms_is_delivered_once() {
    let (g, base) = start_gateway().await;
    g.answer(&[(500, "upstream down")]);
    let s = setup(&sms_yaml(&base, ""), MORNING).await;
    s.report(None).await;
    let pass = s.drain(MORNING).await;
    assert_eq!(pass.retried, 1, "{pass:?}");
    let row = &s.rows("sms").await[0];
    assert!(
        row.last_error.as_deref().unwrap().contains("500"),
        "{row:?}"
    );
    let pass = s.drain("2026-03-03T10:00:05+08:00").await;
    assert_eq!(pass.sent, 1, "{pass:?}");
    assert_eq!(g.sms().len(), 2);
    let row = &s.rows("sms").await[0];
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 2));
    assert_eq!(s.drain("2026-03-03T12:00:00+08:00").await.claimed, 0);
    assert_eq!(g.sms().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_a_dead_letter() {
    let (g, base) = start_gateway().await;
    g.answer(&[(400, r#"{"error": "invalid number"}"#)]);
    let s = setup(&sms_yaml(&base, ""), MORNING).await;
    s.report(None).await;
    let pass = s.drain(MORNING).await;
    assert_eq!(pass.dead, 1, "{pass:?}");
    let row = &s.rows("sms").await[0];
    assert_eq!(row.status, "dead");
    let e = row.last_error.as_deref().unwrap();
    assert!(e.contains("400") && e.contains("invalid number"), "{e}");
    assert_eq!(s.drain("2026-03-03T12:00:00+08:00").await.claimed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_field_that_says_failure_is_dead_or_retried_as_configured() {
    for (refused, status, attempts) in [("dead", "dead", 1), ("retry", "queued", 1)] {
        let (g, base) = start_gateway().await;
        g.answer(&[(200, r#"{"code": "7", "msg": "blacklisted"}"#)]);
        let s = setup(
            &sms_yaml(&base, &format!("  refused: {refused}\n")),
            MORNING,
        )
        .await;
        s.report(None).await;
        s.drain(MORNING).await;
        let row = &s.rows("sms").await[0];
        assert_eq!(
            (row.status.as_str(), row.attempts),
            (status, attempts),
            "{refused}"
        );
        let e = row.last_error.as_deref().unwrap();
        assert!(
            e.contains("`code` is \"7\"") && e.contains("blacklisted"),
            "{e}"
        );
        if refused == "retry" {
            // The next answer is a success.
            assert_eq!(s.drain("2026-03-03T10:00:05+08:00").await.sent, 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_a_batch() {
    let (g, base) = start_gateway().await;
    let s = setup(&sms_yaml(&base, "  rate_per_second: 20\n"), MORNING).await;
    // A first message opens the connection, so the measured ones all reuse it.
    s.report(None).await;
    assert_eq!(s.drain(MORNING).await.sent, 1);
    const N: usize = 6;
    for _ in 0..N {
        s.report(None).await;
    }
    let pass = s.drain(MORNING).await;
    assert_eq!(pass.sent, N, "{pass:?}");
    let got = g.sms();
    assert_eq!(got.len(), N + 1);
    let span = got[N].at - got[1].at;
    // (N - 1) / R: 250 ms. The bucket spaces the sends by 50 ms each (a timer never fires
    // early); the server's receive times carry each request's own trip over loopback, which on
    // a loaded machine (CI compiling beside it) varies by milliseconds: 246 ms was seen. Without
    // the bucket the six arrive within a few milliseconds, so 200 ms still shows the spacing.
    assert!(
        span >= std::time::Duration::from_millis(200),
        "{N} SMS at 20/s arrived within {span:?}"
    );
}

// ---- quiet hours ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_an_sms_until_morning_and_an_urgent_one_goes_at_once() {
    let (g, base) = start_gateway().await;
    let night = "2026-03-03T23:00:00+08:00";
    let s = setup(&sms_yaml(&base, ""), night).await;
    let normal = s.report(None).await;
    let urgent = s.report(Some("urgent")).await;
    let pass = s.drain(night).await;
    assert_eq!((pass.sent, pass.held), (1, 1), "{pass:?}");
    let got = g.sms();
    assert_eq!(got.len(), 1);
    assert!(got[0].json()["content"].as_str().unwrap().contains(&urgent));
    let held = s
        .rows("sms")
        .await
        .into_iter()
        .find(|r| r.issue_id.as_deref() == Some(normal.as_str()))
        .unwrap();
    assert_eq!(held.status, "queued");
    assert_eq!(held.not_before, at("2026-03-04T07:00:00+08:00"));
    assert_eq!(held.attempts, 0, "being held is not an attempt");

    assert_eq!(s.drain("2026-03-04T06:59:59+08:00").await.claimed, 0);
    let pass = s.drain("2026-03-04T07:00:00+08:00").await;
    assert_eq!(pass.sent, 1, "{pass:?}");
    let got = g.sms();
    assert_eq!(got.len(), 2);
    assert!(got[1].json()["content"].as_str().unwrap().contains(&normal));
}

// ---- the webhook ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_posted_to_the_webhook_signed() {
    use hmac::{Hmac, Mac};
    let (g, base) = start_gateway().await;
    let yaml = format!("webhook:\n  url: {base}/hook\n  secret_env: HOOK_KEY\n");
    let s = setup(&yaml, MORNING).await;
    let id = s.report(None).await;
    s.engine
        .act(&id, Event::Acknowledged, "department:urban#2")
        .await
        .unwrap();
    let pass = s.drain(MORNING).await;
    assert_eq!(pass.sent, 2, "{pass:?}");
    let hooks = g.hooks();
    assert_eq!(hooks.len(), 2);
    let mut kinds = Vec::new();
    for h in &hooks {
        let sig = h.headers["x-escalade-signature"].to_str().unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret-key").unwrap();
        mac.update(&h.body);
        let hex = sig.strip_prefix("sha256=").unwrap();
        mac.verify_slice(&hex::decode(hex).unwrap())
            .expect("the signature verifies with the secret");
        let mut wrong = Hmac::<sha2::Sha256>::new_from_slice(b"another key").unwrap();
        wrong.update(&h.body);
        assert!(wrong.verify_slice(&hex::decode(hex).unwrap()).is_err());
        let body = h.json();
        assert_eq!(body["issue_id"], id);
        assert!(body["seq"].is_i64() && body["at"].is_string(), "{body}");
        // What the decision did travels with the event, with the rules version that decided.
        assert_eq!(body["rules_version"].as_str().unwrap().len(), 64, "{body}");
        let state = &body["effects"]["state"];
        match body["kind"].as_str().unwrap() {
            "reported" => {
                assert_eq!(body["effects"]["departments"]["to"][0], "urban", "{body}");
                assert_eq!(
                    body["effects"]["deadlines"][0]["basis"]["duration"], "4h",
                    "{body}"
                );
                assert_eq!(state["to"], "assigned", "{body}");
            }
            _ => assert_eq!(state["to"], "acknowledged", "{body}"),
        }
        kinds.push((body["kind"].clone(), body["actor"].clone()));
    }
    kinds.sort_by_key(|k| k.0.to_string());
    assert_eq!(
        kinds,
        [
            (json!("acknowledged"), json!("department:urban#2")),
            (json!("reported"), json!("admin#1"))
        ]
    );
    // The messages are not the webhook's: with no email or SMS configured they stay queued.
    assert_eq!(s.rows("email").await.len(), 2);
    assert!(s.rows("email").await.iter().all(|r| r.status == "queued"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_no_event_is_queued_for_it() {
    let (_g, base) = start_gateway().await;
    let s = setup(&sms_yaml(&base, ""), MORNING).await;
    s.report(None).await;
    assert!(s.rows("webhook").await.is_empty());
}

// ---- leases and the CLI ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_a_worker_that_died_mid_send_go_again_when_the_lease_ends() {
    let (g, base) = start_gateway().await;
    let s = setup(&sms_yaml(&base, "delivery: {lease: 60s}\n"), MORNING).await;
    s.report(None).await;
    // A worker claims the row and dies before settling it.
    let claimed = s
        .engine
        .store()
        .claim("sms", at(MORNING), at(MORNING) + Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(!claimed[0].taken_over, "a first claim takes nothing over");
    assert_eq!(s.drain("2026-03-03T10:00:59+08:00").await.claimed, 0);
    let pass = s.drain("2026-03-03T10:01:01+08:00").await;
    assert_eq!(pass.sent, 1, "{pass:?}");
    // The second claim took over a lapsed one: the SMS may have gone out twice, and says so.
    assert_eq!(pass.taken_over, 1, "{pass:?}");
    assert_eq!(g.sms().len(), 1);
    let row = &s.rows("sms").await[0];
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 2));
    assert_eq!(
        s.delivery.status().await.unwrap()["channels"]["sms"]["sending"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_dead_letters_and_retries_one() {
    let (g, base) = start_gateway().await;
    g.answer(&[(400, "no such number")]);
    let s = setup(&sms_yaml(&base, ""), MORNING).await;
    s.report(None).await;
    s.drain(MORNING).await;
    let dead = s.rows("sms").await[0].id;
    let cli = |args: &[&str]| support::escalade_in(&s.db, &[], &[&["outbox"], args].concat());
    let out = cli(&["list", "--status", "dead"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{dead}\t")))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("dead\tsms\t+8613900000011") && line.contains("no such number"),
        "{line}"
    );
    assert_eq!(
        text.lines().count(),
        2,
        "a header and the one dead letter: {text}"
    );

    let out = cli(&["retry", &dead.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["retry", &dead.to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is queued, not dead"));
    let out = cli(&["list", "--status", "lost"]);
    assert_eq!(out.status.code(), Some(2));

    // Queued again, due at the CLI's (real) time, its attempts counted afresh.
    let row = &s.rows("sms").await[0];
    assert_eq!((row.status.as_str(), row.attempts), ("queued", 0));
}

// ---- a stale backlog, and reminders under a digest ------------------------------------------

/// Monday 10:00 in Beijing.
const MONDAY: &str = "2026-03-02T10:00:00+08:00";

/// The subjects of the emails `address` received, in order.
fn subjects(mailbox: &Mailbox, address: &str) -> Vec<String> {
    mailbox
        .to(address)
        .iter()
        .map(|m| parse(m).headers.get_first_value("Subject").unwrap())
        .collect()
}

/// Messages queued while no channel was configured: once email and SMS are, the messages due
/// less than the policy's age ago go out; the older ones are not sent but kept `stale` (the
/// email's age is the default 24 h, the SMS lane's its own 48 h), listed by the API and the
/// CLI, and one retried by hand is delivered, whatever its age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_that_waited_for_its_channel_sends_the_young_and_keeps_the_old_stale() {
    let (mailbox, port) = smtp_running();
    let (g, base) = start_gateway().await;
    let mut s = setup("listen: 127.0.0.1:0\n", MONDAY).await;
    let old = s.report(None).await;
    s.clock.set(at("2026-03-03T12:00:00+08:00"));
    let young = s.report(None).await;
    assert_eq!(s.drain("2026-03-03T12:30:00+08:00").await.claimed, 0);
    assert_eq!(s.rows("email").await.len(), 4);

    // Tuesday 13:00: the channels are configured. Monday's emails are 27 h old.
    s.configure(&format!(
        "{}{}",
        smtp_yaml(port),
        sms_yaml(&base, "  stale_after: 48h\n")
    ));
    let pass = s.drain("2026-03-03T13:00:00+08:00").await;
    assert_eq!(
        (pass.sent, pass.stale, pass.retried, pass.dead),
        (4, 2, 0, 0),
        "{pass:?}"
    );
    for address in ["urban.li@example.org", "urban.zhao@example.org"] {
        assert_eq!(
            subjects(&mailbox, address),
            vec![format!("【新派遣】垃圾堆放 {young}")],
            "only the young email went to {address}"
        );
    }
    // The SMS lane's age is 48 h: both texts went.
    assert_eq!(g.sms().len(), 2);
    for r in s.rows("email").await {
        let issue = r.issue_id.clone().unwrap();
        if issue == old {
            assert_eq!((r.status.as_str(), r.attempts), ("stale", 0), "{r:?}");
            assert_eq!(r.sent_at, None);
            let error = r.last_error.as_deref().unwrap();
            assert!(error.contains("24h") && error.contains("stale"), "{error}");
        } else {
            assert_eq!(r.status, "sent", "{r:?}");
        }
    }
    assert!(s.rows("sms").await.iter().all(|r| r.status == "sent"));
    let status = s.delivery.status().await.unwrap();
    assert_eq!(status["channels"]["email"]["stale"], 2, "{status}");
    assert_eq!(status["unconfigured"], json!([]), "{status}");

    // Listed by the API, due when they were created, oldest first.
    let (api_base, admin, _stop) = api(&s).await;
    let (code, body) = get(&admin, format!("{api_base}/api/v1/outbox?status=stale")).await;
    assert_eq!(code, 200, "{body}");
    let stale = body["messages"].as_array().unwrap();
    assert_eq!(stale.len(), 2, "{body}");
    for m in stale {
        assert_eq!(
            (m["issue_id"].as_str(), m["status"].as_str()),
            (Some(old.as_str()), Some("stale"))
        );
        assert_eq!(m["due_at"].as_str().map(at), Some(at(MONDAY)), "{m}");
        assert!(m["retried_at"].is_null(), "{m}");
    }
    // And by the CLI, on the same store.
    let out = support::escalade_in(&s.db, &[], &["outbox", "list", "--status", "stale"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        3,
        "a header and the two stale emails: {text}"
    );
    assert!(
        text.lines().skip(1).all(|l| l.contains("\tstale\temail\t")),
        "{text}"
    );

    // Li's is retried: due now, and never stale again, though 27 h old. Li was emailed at
    // 13:00, so the digest window holds it until 13:15; then it goes.
    let li = stale
        .iter()
        .find(|m| m["address"] == "urban.li@example.org")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (code, body) = post_to(&admin, format!("{api_base}/api/v1/outbox/{li}/retry")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["message"]["status"], "queued");
    assert_eq!(
        body["message"]["retried_at"].as_str().map(at),
        Some(at("2026-03-03T13:00:00+08:00"))
    );
    let pass = s.drain("2026-03-03T13:00:00+08:00").await;
    assert_eq!((pass.stale, pass.held, pass.sent), (0, 1, 0), "{pass:?}");
    let pass = s.drain("2026-03-03T13:15:00+08:00").await;
    assert_eq!((pass.stale, pass.sent), (0, 1), "{pass:?}");
    assert_eq!(
        subjects(&mailbox, "urban.li@example.org"),
        vec![
            format!("【新派遣】垃圾堆放 {young}"),
            format!("【新派遣】垃圾堆放 {old}")
        ]
    );
    // Zhao's stays stale, and is not claimed again.
    let (_, body) = get(&admin, format!("{api_base}/api/v1/outbox?status=stale")).await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["messages"][0]["address"], "urban.zhao@example.org");
    assert_eq!(s.drain("2026-03-04T13:00:00+08:00").await.claimed, 0);
    assert_eq!(mailbox.to("urban.zhao@example.org").len(), 1);
}

/// A dead letter retried long after it died is sent, not made stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_retried_days_later_is_sent() {
    let (g, base) = start_gateway().await;
    g.answer(&[(400, "no such number")]);
    let s = setup(&sms_yaml(&base, ""), MORNING).await;
    s.report(None).await;
    assert_eq!(s.drain(MORNING).await.dead, 1);
    let id = s.rows("sms").await[0].id;
    let later = "2026-03-06T10:00:00+08:00";
    s.engine.store().requeue(id, at(later)).await.unwrap();
    let pass = s.drain(later).await;
    assert_eq!((pass.sent, pass.stale), (1, 0), "{pass:?}");
    assert_eq!(g.sms().len(), 2);
    assert_eq!(s.rows("sms").await[0].status, "sent");
}

/// A message held (quiet hours) is due when the hold ends: its age counts from then, not from
/// when it was created, so a night's wait does not make it stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_by_quiet_hours_is_aged_from_their_end() {
    let (g, base) = start_gateway().await;
    let s = setup(
        &sms_yaml(&base, "  stale_after: 2h\n"),
        "2026-03-02T23:00:00+08:00",
    )
    .await;
    s.report(None).await;
    let pass = s.drain("2026-03-02T23:00:00+08:00").await;
    assert_eq!((pass.held, pass.sent), (1, 0), "{pass:?}");
    let row = &s.rows("sms").await[0];
    assert_eq!(row.due_at, at("2026-03-03T07:00:00+08:00"));
    // Eight hours after it was created, one after it was due.
    let pass = s.drain("2026-03-03T08:00:00+08:00").await;
    assert_eq!((pass.sent, pass.stale), (1, 0), "{pass:?}");
    assert_eq!(g.sms().len(), 1);
}

/// Under a digest window of 2 h, a reminder whose deadline is an hour away is not held until
/// the window ends: it goes at once, on its own, while a message with no deadline that close
/// waits for the digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_window_longer_than_a_reminders_lead_sends_the_reminder_before_the_deadline() {
    let (mailbox, port) = smtp_running();
    let rules = tempfile::tempdir().unwrap();
    support::copy_rules_edited(
        CITY,
        rules.path(),
        &[(
            "notifications.yaml",
            "digest: {window: 15m",
            "digest: {window: 2h",
        )],
    );
    let s = setup_rules(&smtp_yaml(port), MORNING, rules.path().to_str().unwrap()).await;
    // Tuesday 10:00: acknowledge within 4 working hours, by 15:30; reminded at 14:30.
    let first = s.report(None).await;
    s.drain(MORNING).await;
    let deadline = s
        .engine
        .store()
        .issue(&first)
        .await
        .unwrap()
        .unwrap()
        .state
        .acknowledge_by
        .unwrap();
    assert_eq!(deadline, at("2026-03-03T15:30:00+08:00"));
    // 14:00: another issue; Li is emailed, and the window runs to 16:00.
    s.clock.set(at("2026-03-03T14:00:00+08:00"));
    let second = s.report(None).await;
    assert_eq!(s.drain("2026-03-03T14:00:00+08:00").await.sent, 2);
    assert_eq!(
        s.engine.store().next_due().await.unwrap(),
        Some(at("2026-03-03T14:30:00+08:00"))
    );
    // 14:30: the reminder, and a third issue (acknowledged by tomorrow).
    let reminded = "2026-03-03T14:30:00+08:00";
    s.clock.set(at(reminded));
    assert!(s.engine.fire_due().await.unwrap() > 0);
    let third = s.report(None).await;
    let pass = s.drain(reminded).await;
    assert_eq!((pass.sent, pass.held, pass.digests), (2, 2, 0), "{pass:?}");
    let li = subjects(&mailbox, "urban.li@example.org");
    assert_eq!(li.len(), 3, "{li:?}");
    assert!(
        li[0].ends_with(&first) && li[1].ends_with(&second),
        "{li:?}"
    );
    assert!(
        li[2].starts_with(&format!("【即将到期】{first} ")),
        "{li:?}"
    );
    for r in s.rows("email").await {
        if r.kind == "reminder" {
            assert_eq!(r.sent_at, Some(at(reminded)), "{r:?}");
            assert!(r.sent_at.unwrap() < deadline);
        } else if r.issue_id.as_deref() == Some(third.as_str()) {
            assert_eq!(r.status, "queued", "{r:?}");
            assert_eq!(r.not_before, at("2026-03-03T16:00:00+08:00"), "{r:?}");
        }
    }
    // The reminder was an email too: the third issue's wait for the window after it.
    let pass = s.drain("2026-03-03T16:00:00+08:00").await;
    assert_eq!((pass.sent, pass.held), (0, 2), "{pass:?}");
    let pass = s.drain("2026-03-03T16:30:00+08:00").await;
    assert_eq!((pass.sent, pass.stale), (2, 0), "{pass:?}");
    assert!(subjects(&mailbox, "urban.li@example.org")[3].ends_with(&third));
}

/// Each bad age is refused, naming the key and what is wrong.
#[test]
fn a_bad_stale_after_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("escalade.yaml");
    let load = |yaml: &str| {
        std::fs::write(&f, yaml).unwrap();
        Config::load(Some(&f), |k| (k == "SMS_KEY").then(|| "k".to_string()))
    };
    let gateway = "http://127.0.0.1:9/send";
    for (yaml, key, says) in [
        (
            "delivery: {stale_after: 0}\n".to_string(),
            "delivery.stale_after",
            "positive",
        ),
        (
            "delivery: {stale_after: 0s}\n".to_string(),
            "delivery.stale_after",
            "positive",
        ),
        (
            "delivery: {stale_after: -1h}\n".to_string(),
            "delivery.stale_after",
            "`-1h`",
        ),
        (
            "delivery: {stale_after: -5}\n".to_string(),
            "delivery.stale_after",
            "negative",
        ),
        (
            "delivery: {stale_after: 1.5}\n".to_string(),
            "delivery.stale_after",
            "`1.5`",
        ),
        (
            "delivery: {stale_after: a day}\n".to_string(),
            "delivery.stale_after",
            "`a day`",
        ),
        (
            sms_yaml(gateway, "  stale_after: 0m\n"),
            "sms.stale_after",
            "positive",
        ),
        (
            sms_yaml(gateway, "  stale_after: -2h\n"),
            "sms.stale_after",
            "`-2h`",
        ),
        (
            format!("{}  stale_after: soon\n", smtp_yaml(25)),
            "smtp.stale_after",
            "`soon`",
        ),
        (
            format!("{}  stale_after: 0h\n", smtp_yaml(25)),
            "smtp.stale_after",
            "positive",
        ),
    ] {
        let e = load(&yaml).expect_err(&yaml);
        assert!(e.contains(key) && e.contains(says), "{yaml}: {e}");
    }
    // A good one is read, per channel over the policy's.
    let c = load(&format!(
        "{}  stale_after: 2h\ndelivery: {{stale_after: 36h}}\n",
        smtp_yaml(25)
    ))
    .unwrap();
    assert_eq!(
        c.delivery.stale_after.0,
        std::time::Duration::from_secs(36 * 3600)
    );
    assert_eq!(
        c.smtp.unwrap().stale_after.unwrap().0,
        std::time::Duration::from_secs(7200)
    );
    assert_eq!(
        Config::load(None, |_| None).unwrap().delivery.stale_after.0,
        std::time::Duration::from_secs(24 * 3600)
    );
}

// ---- acknowledgement links ------------------------------------------------------------------

const LINK_KEY: &str = "3f1c0a8e9b7d4c2a6e5f1b0d9c8a7e6f";

/// Public links under a path prefix; each works until `grace` after its deadline.
fn links_yaml(grace: &str) -> String {
    format!(
        "links:\n  base_url: \"https://escalade.example.org/city/\"\n  secret_env: LINK_KEY\n  grace: {grace}\n"
    )
}

const LINK_BASE: &str = "https://escalade.example.org/city/ack/";

/// The plain text of an email (of its text/plain part, when it has several).
fn text_of(mail: &Mail) -> String {
    let parsed = parse(mail);
    if parsed.subparts.is_empty() {
        return parsed.get_body().unwrap();
    }
    parsed
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "text/plain")
        .map(|p| p.get_body().unwrap())
        .unwrap_or_default()
}

/// Every acknowledgement link in `text`, as its token.
fn tokens_in(text: &str) -> Vec<String> {
    text.match_indices(LINK_BASE)
        .map(|(i, _)| {
            text[i + LINK_BASE.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .collect()
        })
        .collect()
}

impl Setup {
    /// The tokens of the links in the emails `address` received about issue `id`, oldest first
    /// (which issue a link is for, the server's own check of it says).
    fn tokens(&self, mailbox: &Mailbox, address: &str, id: &str) -> Vec<String> {
        let links = self.delivery.links().expect("links are configured");
        mailbox
            .to(address)
            .iter()
            .flat_map(|m| tokens_in(&text_of(m)))
            .filter(|t| links.verify(t).is_ok_and(|c| c.issue == id))
            .collect()
    }

    async fn state(&self, id: &str) -> String {
        let stored = self.engine.store().issue(id).await.unwrap().unwrap();
        stored.state.state.as_str().to_string()
    }
}

/// A page (`GET`) or the button (`POST`) of a link, without any token: status, headers, body.
async fn ack(
    base: &str,
    method: reqwest::Method,
    token: &str,
    json: bool,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = reqwest::Client::new().request(method, format!("{base}/ack/{token}"));
    if json {
        r = r.header("accept", "application/json");
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

async fn ack_json(base: &str, method: reqwest::Method, token: &str) -> (u16, Value) {
    let (status, _, body) = ack(base, method, token, true).await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assignment_email_carries_a_link_whose_page_acknowledges_only_when_confirmed() {
    use reqwest::Method;
    let (mailbox, port) = smtp_running();
    let (g, gateway) = start_gateway().await;
    let yaml = format!(
        "{}{}{}",
        smtp_yaml(port),
        sms_yaml(&gateway, ""),
        links_yaml("72h")
    );
    let s = setup(&yaml, MORNING).await;
    let id = s.report(None).await;
    let pass = s.drain(MORNING).await;
    assert_eq!((pass.sent, pass.dead), (3, 0), "{pass:?}");

    // The email to urban's contact: the link in the text, the same in the HTML, and in the SMS.
    let mail = &mailbox.to("urban.li@example.org")[0];
    let text = text_of(mail);
    let tokens = tokens_in(&text);
    assert_eq!(tokens.len(), 1, "{text}");
    let token = tokens[0].clone();
    assert!(text.contains("一键签收"), "{text}");
    // HTML parts escape what they insert, the link too (`/` as `&#x2f;`, which a browser reads
    // back as `/`).
    let html = parse(mail).subparts[1].get_body().unwrap();
    let href = format!("{LINK_BASE}{token}").replace('/', "&#x2f;");
    assert!(html.contains(&format!("href=\"{href}\"")), "{html}");
    let sms = g.sms()[0].json();
    let sms_text = sms["content"].as_str().unwrap();
    assert!(
        sms_text.ends_with(&format!("{LINK_BASE}{token}")),
        "the SMS has the whole link: {sms_text}"
    );
    assert!(
        escalade_rules::sms_segments(sms_text).segments <= 3,
        "{sms_text}"
    );
    // urban's other contact gets a link of their own department too.
    assert_eq!(
        s.tokens(&mailbox, "urban.zhao@example.org", &id),
        vec![token.clone()]
    );

    let (base, _admin, _stop) = api(&s).await;
    // GET shows the issue and a button, and acknowledges nothing: a scanner may visit it.
    for _ in 0..2 {
        let (status, headers, page) = ack(&base, Method::GET, &token, false).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["cache-control"], "no-store");
        for shown in [
            id.as_str(),
            "垃圾堆放",
            "小区门口垃圾堆积三天无人清运，气味难闻",
            "<form method=\"post\">",
        ] {
            assert!(page.contains(shown), "{shown} missing: {page}");
        }
        assert!(
            !page.contains("src=") && !page.contains("<script") && !page.contains("http"),
            "{page}"
        );
        assert_eq!(s.state(&id).await, "assigned");
    }
    let (status, body) = ack_json(&base, Method::GET, &token).await;
    assert_eq!(
        (status, &body["department"]),
        (200, &json!("urban")),
        "{body}"
    );
    assert_eq!(s.state(&id).await, "assigned");

    // POST acknowledges, recorded as the link of the department.
    let (status, _, page) = ack(&base, Method::POST, &token, false).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("已签收 / Acknowledged"), "{page}");
    assert_eq!(s.state(&id).await, "acknowledged");
    let timeline = s.engine.store().timeline(&id).await.unwrap();
    let last = timeline.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("acknowledged", "link:urban")
    );

    // Used: a second POST, by anyone who has the link, is refused and changes nothing.
    let (status, _, page) = ack(&base, Method::POST, &token, false).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("This link was used"), "{page}");
    assert!(page.contains("acknowledged already"), "{page}");
    let (status, body) = ack_json(&base, Method::POST, &token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("link_used")),
        "{body}"
    );
    let (status, _, _) = ack(&base, Method::GET, &token, false).await;
    assert_eq!(status, 410);
    assert_eq!(
        s.engine.store().timeline(&id).await.unwrap().len(),
        timeline.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_malformed_tampered_expired_moved_on_or_for_an_old_deadline_is_refused() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use reqwest::Method;
    let (mailbox, port) = smtp_running();
    let s = setup(&format!("{}{}", smtp_yaml(port), links_yaml("1h")), MORNING).await;
    let (base, _admin, _stop) = api(&s).await;
    let li = "urban.li@example.org";

    // Malformed: 400, naming what is wrong.
    for (token, why) in [
        ("garbage", "no signature part"),
        ("YQ.YQ", "signature part has the wrong length"),
    ] {
        let (status, body) = ack_json(&base, Method::POST, token).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("link_malformed")),
            "{body}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
    let (status, _, page) = ack(&base, Method::GET, "garbage", false).await;
    assert_eq!(status, 400);
    assert!(page.contains("This link is not valid"), "{page}");

    // Tampered: the link of one issue made to say another department: 403, nothing changes.
    let a = s.report(None).await;
    s.drain(MORNING).await;
    let token = s.tokens(&mailbox, li, &a).remove(0);
    let (payload, tag) = token.split_once('.').unwrap();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let forged = URL_SAFE_NO_PAD.encode(text.replacen("\nurban\n", "\nenvironment\n", 1));
    for method in [Method::GET, Method::POST] {
        let (status, body) = ack_json(&base, method, &format!("{forged}.{tag}")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("link_bad_signature")),
            "{body}"
        );
    }
    assert_eq!(s.state(&a).await, "assigned");

    // Expired: an hour after the deadline it stands for, the page and the button say so.
    let deadline = s
        .engine
        .store()
        .issue(&a)
        .await
        .unwrap()
        .unwrap()
        .state
        .acknowledge_by
        .unwrap();
    s.clock.set(deadline + Duration::minutes(61));
    let (status, _, page) = ack(&base, Method::GET, &token, false).await;
    assert_eq!(status, 410);
    assert!(page.contains("This link has expired"), "{page}");
    let (status, body) = ack_json(&base, Method::POST, &token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("link_expired")),
        "{body}"
    );
    assert_eq!(s.state(&a).await, "assigned");
    s.clock.set(at(MORNING));

    // Moved on: reassigned to another department, urban's link no longer acknowledges.
    let b = s.report(None).await;
    s.drain("2026-03-03T10:20:00+08:00").await;
    let old = s.tokens(&mailbox, li, &b).remove(0);
    let department = Event::Reassigned {
        department: "environment".into(),
    };
    s.engine.act(&b, department, "admin#1").await.unwrap();
    let (status, body) = ack_json(&base, Method::POST, &old).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("link_moved_on")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer with urban: it moved on to environment"),
        "{body}"
    );
    assert_eq!(s.state(&b).await, "assigned");

    // An old deadline: back to urban later, with a new deadline and a new link; the first
    // link is refused, the new one acknowledges.
    s.clock.set(at("2026-03-03T10:40:00+08:00"));
    let back = Event::Reassigned {
        department: "urban".into(),
    };
    s.engine.act(&b, back, "admin#1").await.unwrap();
    s.drain("2026-03-03T10:40:00+08:00").await;
    let tokens = s.tokens(&mailbox, li, &b);
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_eq!(tokens[0], old);
    let (status, _, page) = ack(&base, Method::POST, &old, false).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("new acknowledge deadline"), "{page}");
    assert_eq!(s.state(&b).await, "assigned");
    let (status, body) = ack_json(&base, Method::POST, &tokens[1]).await;
    assert_eq!(
        (status, &body["state"]),
        (200, &json!("acknowledged")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_links_configured_messages_carry_none_and_the_page_answers_404() {
    use reqwest::Method;
    let (mailbox, port) = smtp_running();
    let s = setup(&smtp_yaml(port), MORNING).await;
    s.report(None).await;
    s.drain(MORNING).await;
    let text = text_of(&mailbox.to("urban.li@example.org")[0]);
    assert!(
        !text.contains("/ack/") && !text.contains("一键签收"),
        "{text}"
    );
    assert!(text.contains("请及时签收并处置"), "{text}");
    assert!(s.delivery.links().is_none());

    let (base, _admin, _stop) = api(&s).await;
    let (status, _, page) = ack(&base, Method::GET, "anything.at-all", false).await;
    assert_eq!(status, 404);
    assert!(page.contains("not configured"), "{page}");
    let (status, body) = ack_json(&base, Method::POST, "anything.at-all").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("links_not_configured")),
        "{body}"
    );
}

// ---- the daemon ----------------------------------------------------------------------------

/// The real binary, configured through the environment: its delivery workers post each event
/// to the webhook, `/readyz` shows the channels, and SIGTERM stops them with the rest.
#[test]
fn the_daemon_delivers_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (g, base) = rt.block_on(start_gateway());
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let admin = support::admin_token(&db, CITY);
    let mut child = db
        .command()
        .args(["run", "--rules", CITY])
        .env("ESCALADE_LISTEN", "127.0.0.1:0")
        .env("ESCALADE_WEBHOOK_URL", format!("{base}/hook"))
        .env("ESCALADE_WEBHOOK_SECRET_ENV", "HOOK_KEY")
        .env("HOOK_KEY", "s3cret-key")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let daemon = support::Daemon(child);
    let addr = loop {
        let line = lines
            .next()
            .expect("the daemon logs where it listens")
            .unwrap();
        if let Some(i) = line.find("listen=") {
            break line[i + 7..].split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    rt.block_on(async {
        let c = support::client(&admin);
        let r = c
            .post(format!("http://{addr}/api/v1/issues"))
            .json(&json!({"category": "garbage", "unit": "g-0001", "description": "垃圾堆积"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let started = Instant::now();
        while g.hooks().is_empty() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "no webhook call"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(g.hooks()[0].json()["kind"], "reported");
        let ready: Value = c
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            ready["delivery"]["channels"]["webhook"]["configured"], true,
            "{ready}"
        );
        assert_eq!(
            ready["delivery"]["unconfigured"],
            json!(["email", "sms"]),
            "{ready}"
        );
    });
    let mut daemon = daemon;
    Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The real binary: messages queued while email was not configured and older than
/// `stale_after` when it is are not sent; one warning names the channel, the count and the
/// oldest; a stale email retried through the API is delivered, and a new one goes at once.
#[test]
fn the_daemon_configured_late_marks_the_old_backlog_stale_and_says_so_once() {
    use std::process::Command;
    let (mailbox, port) = smtp_running();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let admin = support::admin_token(&db, CITY);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = support::client(&admin);
    let report = |addr: &str| {
        let r = rt.block_on(
            c.post(format!("http://{addr}/api/v1/issues"))
                .json(&json!({"category": "garbage", "unit": "g-0001", "description": "垃圾堆积"}))
                .send(),
        );
        let r = r.unwrap();
        assert_eq!(r.status(), 201);
        rt.block_on(r.json::<Value>()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(15),
                "{what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };

    // No email channel: three issues' six emails wait.
    let (daemon, addr) = support::start(&db, CITY);
    let old: Vec<String> = (0..3).map(|_| report(&addr)).collect();
    drop(daemon);
    std::thread::sleep(std::time::Duration::from_millis(5500));

    // Email configured; messages older than 5 s are not sent. One worker claims them two at a
    // time, and says so once.
    let config = dir.path().join("escalade.yaml");
    std::fs::write(
        &config,
        format!(
            "{}  workers: 1\ndelivery: {{stale_after: 5s, batch: 2}}\n",
            smtp_yaml(port)
        ),
    )
    .unwrap();
    let (_daemon, addr, log) = support::start_logged(
        &db,
        CITY,
        Command::new(env!("CARGO_BIN_EXE_escalade")),
        &["--config", config.to_str().unwrap()],
    );
    let stale_lines = || -> Vec<String> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("marked stale"))
            .cloned()
            .collect()
    };
    wait_for("the daemon says it marked the backlog stale", &|| {
        !stale_lines().is_empty()
    });
    let (status, body) = rt.block_on(get(&c, format!("http://{addr}/api/v1/outbox?status=stale")));
    assert_eq!(status, 200, "{body}");
    let stale = body["messages"].as_array().unwrap().clone();
    assert_eq!(stale.len(), 6, "{body}");
    let lines = stale_lines();
    assert_eq!(lines.len(), 1, "one warning for the backlog: {lines:?}");
    assert!(
        lines[0].contains("6 email message(s) due more than 5s ago") && lines[0].contains("WARN"),
        "{}",
        lines[0]
    );
    assert!(mailbox.mails().is_empty());

    // Li's first is retried: delivered.
    let li = stale
        .iter()
        .find(|m| m["address"] == "urban.li@example.org" && m["issue_id"] == old[0].as_str())
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, body) = rt.block_on(post_to(
        &c,
        format!("http://{addr}/api/v1/outbox/{li}/retry"),
    ));
    assert_eq!(status, 200, "{body}");
    wait_for("the retried email", &|| {
        !mailbox.to("urban.li@example.org").is_empty()
    });
    assert_eq!(
        subjects(&mailbox, "urban.li@example.org"),
        vec![format!("【新派遣】垃圾堆放 {}", old[0])]
    );
    // A new issue's email goes at once.
    let new = report(&addr);
    wait_for("the new email", &|| {
        !mailbox.to("urban.zhao@example.org").is_empty()
    });
    assert_eq!(
        subjects(&mailbox, "urban.zhao@example.org"),
        vec![format!("【新派遣】垃圾堆放 {new}")]
    );
    assert_eq!(stale_lines().len(), 1);
}

/// The real binary, its email and links configured through the environment: the assignment
/// email it delivers to the SMTP server carries a link whose page acknowledges when confirmed.
#[test]
fn the_daemon_configured_from_the_environment_sends_a_link_that_acknowledges() {
    use std::process::Command;
    let (mailbox, port) = smtp_running();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let admin = support::admin_token(&db, CITY);
    let mut command = Command::new(env!("CARGO_BIN_EXE_escalade"));
    command
        .env("ESCALADE_SMTP_HOST", "127.0.0.1")
        .env("ESCALADE_SMTP_PORT", port.to_string())
        .env("ESCALADE_SMTP_TLS", "none")
        .env("ESCALADE_SMTP_FROM", "escalade@city.example")
        .env(
            "ESCALADE_LINKS_BASE_URL",
            "https://escalade.example.org/city",
        )
        .env("ESCALADE_LINKS_SECRET_ENV", "LINK_KEY")
        .env("LINK_KEY", LINK_KEY);
    let (_daemon, addr) = support::start_with(&db, CITY, command, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = support::client(&admin);
        let r = c
            .post(format!("http://{addr}/api/v1/issues"))
            .json(&json!({"category": "garbage", "unit": "g-0001", "description": "垃圾堆积"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let started = Instant::now();
        while mailbox.to("urban.li@example.org").is_empty() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "no email"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let text = text_of(&mailbox.to("urban.li@example.org")[0]);
        let token = tokens_in(&text).pop().unwrap_or_else(|| panic!("{text}"));
        let state = |c: reqwest::Client| {
            let url = format!("http://{addr}/api/v1/issues/{id}");
            async move {
                let v: Value = c.get(url).send().await.unwrap().json().await.unwrap();
                (
                    v["state"]["state"].as_str().unwrap().to_string(),
                    v["timeline"].as_array().unwrap().last().unwrap()["actor"].clone(),
                )
            }
        };
        let base = format!("http://{addr}");
        let (status, _, page) = ack(&base, reqwest::Method::GET, &token, false).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(state(c.clone()).await.0, "assigned");
        let (status, _, page) = ack(&base, reqwest::Method::POST, &token, false).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            state(c.clone()).await,
            ("acknowledged".to_string(), json!("link:urban"))
        );
        let (status, _, _) = ack(&base, reqwest::Method::POST, &token, false).await;
        assert_eq!(status, 410);
    });
}
