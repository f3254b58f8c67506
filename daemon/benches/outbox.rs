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
use escalade::engine::{Clock, Engine};
use escalade::notify::Delivery;
use escalade::store::Store;
use escalade_rules::{Issue, RuleSet};
use mailin_embedded::{Handler, Response, Server as SmtpServer, response};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// The bench's time: set by hand while messages and probes are queued, then running in real
/// time from a chosen instant while the backlog drains, so the scheduler fires deadlines as the
/// daemon's would.
struct BenchClock {
    manual: std::sync::Mutex<Option<DateTime<Utc>>>,
    running: std::sync::Mutex<(Instant, DateTime<Utc>)>,
}

impl BenchClock {
    fn set(&self, t: DateTime<Utc>) {
        *self.manual.lock().unwrap() = Some(t);
    }

    /// From now on, time runs from `t`.
    fn run_from(&self, t: DateTime<Utc>) {
        *self.running.lock().unwrap() = (Instant::now(), t);
        *self.manual.lock().unwrap() = None;
    }
}

impl Clock for BenchClock {
    fn now(&self) -> DateTime<Utc> {
        if let Some(t) = *self.manual.lock().unwrap() {
            return t;
        }
        let (since, base) = *self.running.lock().unwrap();
        base + chrono::Duration::from_std(since.elapsed()).unwrap()
    }
}

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
    let clock = Arc::new(BenchClock {
        manual: std::sync::Mutex::new(Some(now)),
        running: std::sync::Mutex::new((Instant::now(), now)),
    });
    let engine = Arc::new(Engine::new(store, rules, clock.clone()));
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

    // Probes: gas leaks (urgent, acknowledge within 15 minutes on the `always` calendar) whose
    // acknowledge deadlines fall 1 to 7 s into the drain, evenly spread. The scheduler runs
    // throughout, on a clock that runs in real time from `drain`; each deadline's lateness is its
    // `deadline_passed` event's time minus the deadline.
    let drain = now + chrono::Duration::hours(1);
    let mut probes = Vec::with_capacity(PROBES);
    for k in 0..PROBES {
        let due = drain + chrono::Duration::milliseconds(1000 + (6000 * k / PROBES) as i64);
        clock.set(due - chrono::Duration::minutes(15));
        let issue: Issue = serde_json::from_value(serde_json::json!({
            "category": "gas_leak", "unit": "g-0106",
            "description": format!("楼道有煤气味，第 {k} 处")
        }))
        .unwrap();
        let s = engine.submit(issue, "bench", None).await.unwrap();
        assert_eq!(s.issue.state.acknowledge_by, Some(due));
        probes.push((s.issue.issue.id, due));
    }
    clock.run_from(drain);
    let (stop_scheduler, scheduler_stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(engine.clone().run_scheduler(scheduler_stopped));

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
        mails.load(Ordering::Relaxed) as i64,
        sent(&db, "email").await,
        "every email reached the sink once"
    );
    let (t_sms, s_sms) = deliver(&engine, dir.path(), &sms_yaml, "sms", &requests, texts).await;
    assert_eq!(
        requests.load(Ordering::Relaxed) as i64,
        sent(&db, "sms").await,
        "every SMS reached the sink once"
    );
    // The last probe deadline is 7 s into the drain; give the scheduler a second past it.
    let last = probes.iter().map(|p| p.1).max().unwrap();
    while clock.now() < last + chrono::Duration::seconds(1) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_scheduler.send(true);
    let _ = scheduler.await;
    let drained_by =
        drain + chrono::Duration::from_std(Duration::from_secs_f64(t_email + t_sms)).unwrap();
    let mut late = Vec::with_capacity(PROBES);
    let mut during = 0;
    for (id, due) in &probes {
        let fired = engine
            .store()
            .timeline(id)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.kind == "deadline_passed")
            .map(|e| e.at);
        let fired = fired.unwrap_or_else(|| panic!("probe {id}'s deadline never fired"));
        during += usize::from(*due <= drained_by);
        late.push((fired - *due).num_milliseconds());
    }
    late.sort();
    let pct = |p: f64| late[((late.len() as f64 * p) as usize).min(late.len() - 1)];
    println!(
        "email: {emails} in {t_email:.2} s: {:.0} emails/s (process CPU {s_email:.2} s)",
        emails as f64 / t_email
    );
    println!(
        "sms: {texts} in {t_sms:.2} s: {:.0} requests/s (process CPU {s_sms:.2} s)",
        texts as f64 / t_sms
    );
    println!(
        "escalations during the drain: {PROBES} deadlines due 1-7 s into it ({during} before both channels had drained), fired late by p50 {} ms, p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.99),
        late.last().unwrap()
    );
    engine.store().close().await;
}

/// Probe deadlines due while the backlog drains.
const PROBES: usize = 200;

/// Rows of `channel` sent, read from the store file.
async fn sent(db: &std::path::Path, channel: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE channel = ? AND status = 'sent'")
        .bind(channel)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
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
