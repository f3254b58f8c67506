//! The console's pages under a city's load: a store of 100,000 generated issues (a month of the
//! example city, mostly closed) plus 10,000 open garbage reports in one department (urban), the
//! real daemon (release build) on it, and each page fetched over loopback by a signed-in person:
//!
//! - the inbox of urban's contact (its 10,000 open issues, the first page by nearest deadline);
//! - an issue page (urban's open issues, and issues of the history with their whole timelines);
//! - the board of the city's leader (every overdue or escalated open issue of the city).
//!
//! Prints p50, p99 and max of the answer's time (the request's whole round trip on loopback: an
//! upper bound of the server's time) and the bytes of each page.
//!
//! Run: `cargo bench -p escalade --bench console -- [REQUESTS] [postgres]` (default 300 per
//! page). The history is generated once and kept at `target/console-history-100000.db`; with
//! `postgres`, the seeded store is copied (`store copy`) into a database of its own on the server
//! `ESCALADE_TEST_DATABASE_URL` names and the daemon runs on that. Figures and commands:
//! BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use escalade::engine::{Engine, SystemClock};
use escalade::generate::{HistoryOptions, history};
use escalade::store::Store;
use escalade_rules::{Issue, RuleSet};

#[path = "../tests/support/mod.rs"]
mod support;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// Issues of the generated history.
const HISTORY: usize = 100_000;
/// Open issues added in one department.
const OPEN: usize = 10_000;
/// Submissions in flight while seeding, so the group commit batches them.
const IN_FLIGHT: usize = 256;

fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let on_postgres = std::env::args().skip(1).any(|a| a == "postgres");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let city = RuleSet::load(CITY).unwrap();

    // The history, generated once.
    let kept = support::browser::target_dir().join(format!("console-history-{HISTORY}.db"));
    if !kept.exists() {
        let started = Instant::now();
        let o = HistoryOptions {
            issues: HISTORY,
            start: chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            days: 30,
            seed: 7,
        };
        let stats = rt
            .block_on(history(&city, "examples/city", &kept, &o))
            .unwrap();
        println!(
            "console: generated {} issues ({} events) in {:.1} s",
            stats.issues,
            stats.events,
            started.elapsed().as_secs_f64()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::sqlite(&dir.path().join("state"));
    let file = db.sqlite_path().unwrap().to_path_buf();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::copy(&kept, &file).unwrap();

    // 10,000 open reports for urban, now, and the people's passwords.
    let (urban_open, invites) = rt.block_on(async {
        let store = Store::open_sqlite(&file).await.unwrap();
        let engine = Arc::new(Engine::new(
            store,
            RuleSet::load(CITY).unwrap(),
            Arc::new(SystemClock),
        ));
        let started = Instant::now();
        let mut ids = Vec::with_capacity(OPEN);
        let mut pending = Vec::new();
        for i in 0..OPEN {
            let e = engine.clone();
            pending.push(tokio::spawn(async move {
                let issue = Issue {
                    category: "garbage".into(),
                    unit: format!("g-{:04}", 1 + i % 40),
                    description: format!("bins overflowing, report {i}"),
                    ..Issue::default()
                };
                e.submit(issue, "bench", None).await.unwrap().issue.issue.id
            }));
            if pending.len() == IN_FLIGHT {
                for p in pending.drain(..) {
                    ids.push(p.await.unwrap());
                }
            }
        }
        for p in pending {
            ids.push(p.await.unwrap());
        }
        println!(
            "console: {OPEN} open issues for urban added in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut invites = Vec::new();
        for person in ["p-urban-li", "p-mayor"] {
            let (token, hash) = escalade::console::new_invite();
            let until = chrono::Utc::now() + chrono::Duration::hours(1);
            engine.store().invite(person, &hash, until).await.unwrap();
            invites.push(token);
        }
        engine.store().close().await;
        (ids, invites)
    });

    // On PostgreSQL: the same store, copied.
    let pg = on_postgres.then(|| {
        let pg = support::TestDb::postgres(&dir.path().join("pg-state"))
            .expect("`postgres` needs ESCALADE_TEST_DATABASE_URL");
        let url = match pg.database() {
            escalade::store::Database::Postgres(u) => u,
            _ => unreachable!("a PostgreSQL test database"),
        };
        let started = Instant::now();
        let copied = rt
            .block_on(escalade::store::copy::copy(&file, None, &url))
            .unwrap();
        let rows: i64 = copied.tables.iter().map(|(_, n)| n).sum();
        println!(
            "console: the store copied to PostgreSQL ({rows} rows) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        pg
    });
    let (_daemon, addr) = support::start(pg.as_ref().unwrap_or(&db), CITY);
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let session = |token: &str| -> String {
        rt.block_on(async {
            let r = http
                .post(format!("{base}/console/invite/{token}"))
                .form(&[
                    ("password", "bench password 1"),
                    ("repeat", "bench password 1"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
            r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string()
        })
    };
    let urban = session(&invites[0]);
    let mayor = session(&invites[1]);

    // A few history issues with the longest timelines, beside urban's open ones.
    let long: Vec<String> = rt.block_on(async {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&file)
                    .read_only(true),
            )
            .await
            .unwrap();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT issue_id FROM events GROUP BY issue_id ORDER BY COUNT(*) DESC LIMIT 20",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        ids
    });
    let admin_view: Vec<String> = urban_open.iter().step_by(OPEN / 20).cloned().collect();

    let measure = |name: &str, cookie: &str, paths: &[String]| {
        let (mut times, bytes) = rt.block_on(async {
            let mut times = Vec::with_capacity(requests);
            let mut bytes = 0;
            for i in 0..requests + 20 {
                let path = &paths[i % paths.len()];
                let t = Instant::now();
                let r = http
                    .get(format!("{base}{path}"))
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body = r.bytes().await.unwrap();
                assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
                let took = t.elapsed();
                if i >= 20 {
                    times.push(took);
                    bytes = bytes.max(body.len());
                }
            }
            (times, bytes)
        });
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "console: {name}: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; page {:.1} KB",
            times.len(),
            ms(pct(0.50)),
            ms(pct(0.99)),
            ms(*times.last().unwrap()),
            bytes as f64 / 1024.0
        );
    };
    measure(
        "inbox (urban, 10,000 open)",
        &urban,
        &["/console/inbox".to_string()],
    );
    let mut pages: Vec<String> = admin_view
        .iter()
        .map(|id| format!("/console/issues/{id}"))
        .collect();
    measure("issue page (urban's open issues)", &urban, &pages);
    pages = long
        .iter()
        .map(|id| format!("/console/issues/{id}"))
        .collect();
    measure(
        "issue page (the longest timelines, as the city's leader)",
        &mayor,
        &pages,
    );
    measure(
        "board (the city's leader)",
        &mayor,
        &["/console/board".to_string()],
    );
}
