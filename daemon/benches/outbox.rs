//! Delivery of the outbox: N messages (half email, half SMS) queued in a temp store, delivered
//! by the daemon's own delivery workers to a local SMTP sink (`mailin-embedded`, in a thread
//! pool) and a local HTTP sink (axum), one channel after the other. Prints emails/s and SMS
//! requests/s, from the first claim to the last row settled `sent`.
//!
//! The messages are real ones: some issues reported on the example city (urban's staff are told
//! of each by email and SMS), their outbox rows copied until there are N. Every row is rendered
//! from its issue and event, as in the daemon. Quiet hours and digests are off (the bench
//! measures sending; a digest would merge the copies).
//!
//! Run: `cargo bench -p escalade --bench outbox -- [MESSAGES]` (default 100000).
//! Figures and commands: BENCHMARKS.md.

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use chrono::{DateTime, Utc};
use escalade::config::Config;
use escalade::engine::{Engine, ManualClock};
use escalade::notify::Delivery;
use escalade::store::Store;
use escalade_rules::{Issue, RuleSet};
use mailin_embedded::{Handler, Response, Server as SmtpServer, response};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// Counts the messages it accepts, and keeps nothing.
#[derive(Clone)]
struct Sink(Arc<AtomicUsize>);

impl Handler for Sink {
    fn data_end(&mut self) -> Response {
        self.0.fetch_add(1, Ordering::Relaxed);
        response::OK
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run(n));
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("escalade.sqlite");

    // The sinks.
    let mails = Arc::new(AtomicUsize::new(0));
    let smtp = StdListener::bind("127.0.0.1:0").unwrap();
    let smtp_port = smtp.local_addr().unwrap().port();
    let sink = Sink(mails.clone());
    std::thread::spawn(move || {
        let mut server = SmtpServer::new(sink);
        server
            .with_name("sink.test")
            .with_num_threads(16)
            .with_tcp_listener(smtp);
        let _ = server.serve();
    });
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let app = Router::new().route(
        "/send",
        post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                r#"{"code": "0"}"#
            }
        }),
    );
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(http, app).await.unwrap() });

    // The store, with N messages queued.
    let now: DateTime<Utc> = "2026-03-03T02:00:00Z".parse().unwrap();
    let mut rules = RuleSet::load(CITY).unwrap();
    rules.notifications.digest = None;
    rules.notifications.quiet_hours = None;
    let store = Store::open_sqlite(&db).await.unwrap();
    let engine = Arc::new(Engine::new(store, rules, Arc::new(ManualClock::new(now))));
    let started = Instant::now();
    const ISSUES: usize = 200;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..ISSUES {
        let engine = engine.clone();
        tasks.spawn(async move {
            let issue: Issue = serde_json::from_value(serde_json::json!({
                "category": "garbage", "unit": "g-0001",
                "description": format!("小区门口垃圾堆积，第 {i} 处")
            }))
            .unwrap();
            engine.submit(issue, "bench", None).await.unwrap();
        });
    }
    while tasks.join_next().await.is_some() {}
    let (emails, texts) = (n / 2, n - n / 2);
    copy_rows(&db, "email", emails).await;
    copy_rows(&db, "sms", texts).await;
    println!(
        "queued {emails} emails and {texts} SMS ({ISSUES} issues reported, their rows copied) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let pool = std::env::var("ESCALADE_BENCH_SMTP_POOL").unwrap_or_else(|_| "8".into());
    let email_yaml = format!(
        "smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, from: \"网格化管理 <escalade@city.example>\", pool: {pool}, workers: 2}}\ndelivery: {{batch: 64}}\n"
    );
    let sms_yaml = format!(
        "sms: {{url: \"http://{http_addr}/send\", concurrency: 16, workers: 2}}\ndelivery: {{batch: 64}}\n"
    );
    let (t_email, s_email) =
        deliver(&engine, dir.path(), &email_yaml, "email", &mails, emails).await;
    assert_eq!(
        mails.load(Ordering::Relaxed),
        emails,
        "every email reached the sink once"
    );
    let (t_sms, s_sms) = deliver(&engine, dir.path(), &sms_yaml, "sms", &requests, texts).await;
    assert_eq!(
        requests.load(Ordering::Relaxed),
        texts,
        "every SMS reached the sink once"
    );
    println!(
        "email: {emails} in {t_email:.2} s: {:.0} emails/s (process CPU {s_email:.2} s)",
        emails as f64 / t_email
    );
    println!(
        "sms: {texts} in {t_sms:.2} s: {:.0} requests/s (process CPU {s_sms:.2} s)",
        texts as f64 / t_sms
    );
    engine.store().close().await;
}

/// Copies the issues' rows of `channel` (new dedupe keys) until there are `total`.
async fn copy_rows(db: &std::path::Path, channel: &str, total: usize) {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(db)
                .busy_timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE channel = ?")
        .bind(channel)
        .fetch_one(&pool)
        .await
        .unwrap();
    let copies = (total as i64 + have.max(1) - 1) / have.max(1);
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO outbox (dedupe_key, issue_id, event_seq, kind, person, channel, address,
                             template, locale, vars, created_at, urgent, not_before)
         SELECT o.dedupe_key || '#' || n.i, o.issue_id, o.event_seq, o.kind, o.person, o.channel,
                o.address, o.template, o.locale, o.vars, o.created_at, o.urgent, o.not_before
         FROM outbox o, n WHERE o.channel = ? LIMIT ?",
    )
    .bind(copies)
    .bind(channel)
    .bind(total as i64 - have)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

/// Runs the delivery workers `yaml` configures until `count` rows of `channel` reached the sink
/// (`received`) and are settled; returns the wall-clock seconds and the process's CPU seconds
/// meanwhile. The sink's counter is watched first: counting the rows left in the store is
/// itself a query over them.
async fn deliver(
    engine: &Arc<Engine>,
    dir: &std::path::Path,
    yaml: &str,
    channel: &str,
    received: &AtomicUsize,
    count: usize,
) -> (f64, f64) {
    let f = dir.join(format!("{channel}.yaml"));
    std::fs::write(&f, yaml).unwrap();
    let cfg = Config::load(Some(&f), |_| None).unwrap();
    let delivery = Arc::new(Delivery::new(engine.clone(), &cfg).unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let workers = delivery.clone().spawn(stopped);
    while received.load(Ordering::Relaxed) < count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let counts = engine.store().outbox_counts().await.unwrap();
        let left: i64 = counts
            .iter()
            .filter(|(c, s, _)| c == channel && s != "dead")
            .map(|(_, _, n)| n)
            .sum();
        let dead: i64 = counts
            .iter()
            .filter(|(c, s, _)| c == channel && s == "dead")
            .map(|(_, _, n)| n)
            .sum();
        assert_eq!(dead, 0, "no {channel} fails: {counts:?}");
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let _ = stop.send(true);
    let _ = workers.await;
    (elapsed, cpu)
}

/// User plus system CPU seconds of this process so far (`/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command.
    (ticks(11) + ticks(12)) / 100.0
}
