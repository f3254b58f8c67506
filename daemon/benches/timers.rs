//! Pending deadlines: a store seeded with N pending timers, the real daemon (release build)
//! started on it; start-up time, resident memory, and how late a sample of deadlines fires.
//!
//! Run: `cargo bench -p escalade --bench timers -- [TIMERS] [SAMPLES]` (default 1,000,000 and
//! 1,000). Figures and commands: BENCHMARKS.md.
//!
//! Seeding goes through the library, as the daemon would take the issues in: `Engine::submit`
//! on a manual clock, a few hundred submissions in flight so the store's group commit batches
//! them. The bulk issues (everyday categories on the office calendar, four timers each) are
//! reported four weeks from now, so none of their timers falls due during the run. Then SAMPLES
//! gas leaks (urgent, `always` calendar, acknowledge in 15 minutes) are reported so that their
//! acknowledge deadlines fall 15 to 45 s after the daemon is started; their reminders (10
//! minutes before) are already due then, which is the catch-up a restart has to do.
//!
//! Measured on the spawned daemon: spawn to `listen=` logged and to `/readyz` answering 200
//! (polled every 10 ms); `VmRSS`/`VmHWM` after ready and after the deadlines; for each sample,
//! the `at` of its `deadline_passed` event (read from the store, read-only) minus its
//! `acknowledge_by`.
//!
//! `ESCALADE_BENCH_LOG=1` echoes the daemon's log with milliseconds since spawn (combine with
//! `RUST_LOG=info,sqlx::query=debug` to see where start-up goes). `ESCALADE_BENCH_COLD=1` drops
//! the database file's pages from the page cache (`dd iflag=nocache`) before the daemon starts.
//! `ESCALADE_BENCH_KEEP=1` keeps the state directory (its path is printed) for a look at it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use escalade::engine::{Engine, ManualClock};
use escalade::store::Store;
use escalade_rules::{Event, Issue, IssueState, RuleSet};
use serde_json::json;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

#[path = "../tests/support/mod.rs"]
mod support;

/// Submissions in flight while seeding: enough to fill the group commit's batches.
const IN_FLIGHT: usize = 384;
/// Everyday categories at `normal` priority on the office calendar: two deadlines with one
/// reminder each.
const BULK_CATEGORIES: [&str; 4] = ["garbage", "road_damage", "street_lights", "air_pollution"];
/// The sample deadlines fall due from this long after the daemon is started ...
const FIRST_DUE: Duration = Duration::from_secs(15);
/// ... over this long.
const SPREAD: Duration = Duration::from_secs(30);
/// A sample deadline that has not fired this long after it was due counts as missed.
const MISSED_AFTER: Duration = Duration::from_secs(5);

fn main() {
    // `cargo bench` passes `--bench`; the numbers are ours.
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let target = args.first().copied().unwrap_or(1_000_000);
    let samples = args.get(1).copied().unwrap_or(1_000);
    let echo = std::env::var_os("ESCALADE_BENCH_LOG").is_some();
    let cold = std::env::var_os("ESCALADE_BENCH_COLD").is_some();

    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("ESCALADE_BENCH_KEEP").is_some() {
        eprintln!("timers: keeping {}", dir.path().display());
    }
    let db = dir.path().join("escalade.sqlite");
    let grids = grids();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // ---- seeding ----
    let seeded = rt.block_on(seed(&db, target, samples, &grids));
    let counts = rt.block_on(count(&db, seeded.start));
    let db_bytes = file_size(&db) + file_size(&db.with_extension("sqlite-wal"));

    // ---- the daemon ----
    let wait = (seeded.start - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    if wait.is_zero() {
        eprintln!(
            "timers: warning: sample seeding overran the planned start by {} ms",
            (Utc::now() - seeded.start).num_milliseconds()
        );
    }
    std::thread::sleep(wait);
    if cold {
        // Drops this file's pages (only) from the page cache, as after a reboot.
        for f in [db.clone(), db.with_extension("sqlite-wal")] {
            let f = f.display().to_string();
            let ok = Command::new("sync")
                .arg(&f)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new("dd")
                    .args([format!("if={f}"), "iflag=nocache".into(), "count=0".into()])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(ok, "could not drop {f} from the page cache");
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spawned_at = Utc::now();
    let spawned = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_escalade"))
        .args(["run", "--rules", CITY])
        .env("ESCALADE_LISTEN", format!("127.0.0.1:{port}"))
        .env("ESCALADE_STATE_DIR", dir.path())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let daemon = support::Daemon(child);
    let (listened, listen_line) = std::sync::mpsc::channel();
    // Reads the log (so the daemon never blocks on a full pipe) and notes when it listens.
    std::thread::spawn(move || {
        let mut listened = Some(listened);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let ms = spawned.elapsed().as_secs_f64() * 1000.0;
            if echo {
                eprintln!("[+{ms:9.1} ms] {line}");
            }
            if line.contains("listen=")
                && let Some(tx) = listened.take()
            {
                let _ = tx.send((spawned.elapsed(), line));
            }
        }
    });
    let ready = loop {
        if readyz(port) {
            break spawned.elapsed();
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(600),
            "the daemon did not become ready in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mem_ready = memory(pid);
    let cpu_ready = cpu(pid);
    // What one `/readyz` costs once serving (a probe with a timeout would see this).
    let mut probes: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            assert!(readyz(port), "/readyz stays 200");
            t.elapsed()
        })
        .collect();
    probes.sort();
    let (listen, line) = listen_line
        .recv_timeout(Duration::from_secs(10))
        .expect("the daemon logs where it listens");
    let fired_at_start = field(&line, "timers_fired_at_start=").unwrap_or_default();

    // ---- the sample deadlines ----
    let last_due = seeded
        .samples
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(seeded.start);
    let check = last_due + chrono::Duration::from_std(MISSED_AFTER).unwrap();
    std::thread::sleep((check - Utc::now()).to_std().unwrap_or(Duration::ZERO));
    let mem_after = memory(pid);
    let mut fired = rt.block_on(fired_at(&db, &seeded.samples));
    let missed = seeded
        .samples
        .iter()
        .zip(&fired)
        .filter(|((_, due), at)| at.is_none_or(|at| at > *due + MISSED_AFTER))
        .count();
    // Wait a while longer for any deadline still pending, so its lateness is known too.
    let give_up = Instant::now() + Duration::from_secs(120);
    while fired.iter().any(Option::is_none) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_secs(1));
        fired = rt.block_on(fired_at(&db, &seeded.samples));
    }
    let mem_end = memory(pid);
    drop(daemon);
    if std::env::var_os("ESCALADE_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }

    let mut lateness: Vec<i64> = seeded
        .samples
        .iter()
        .zip(&fired)
        .filter_map(|((_, due), at)| at.map(|at| (at - *due).num_milliseconds()))
        .collect();
    lateness.sort_unstable();
    let never = seeded.samples.len() - lateness.len();
    let pct = |p: f64| {
        lateness
            .get(((lateness.len() as f64 * p) as usize).min(lateness.len().saturating_sub(1)))
            .copied()
            .unwrap_or(-1)
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mb = |kb: u64| kb as f64 / 1024.0;

    println!(
        "timers: pending deadlines, N = {target}, {samples} samples, database {} in the page cache",
        if cold { "not" } else { "warm" }
    );
    println!(
        "| seeding | {} issues ({} bulk + {} samples) in {:.1} s: {:.0} issues/s, {:.0} timers/s |",
        counts.issues,
        seeded.bulk_issues,
        seeded.samples.len(),
        seeded.bulk_secs,
        seeded.bulk_issues as f64 / seeded.bulk_secs,
        seeded.bulk_timers as f64 / seeded.bulk_secs,
    );
    println!(
        "| store | {} pending timers ({} due at start), {} outbox rows; {:.0} MB on disk (database + WAL) |",
        counts.timers,
        counts.due_at_start,
        counts.outbox,
        db_bytes as f64 / 1e6
    );
    println!(
        "| start-up | listen= logged {:.0} ms, /readyz 200 {:.0} ms after spawn; {fired_at_start} timers fired at start; daemon CPU (user + system) until ready {:.0} ms |",
        ms(listen),
        ms(ready),
        ms(cpu_ready),
    );
    println!(
        "| /readyz | 5 calls once ready: median {:.1} ms, max {:.1} ms |",
        ms(probes[2]),
        ms(probes[4]),
    );
    println!(
        "| memory | VmRSS {:.1} MB (VmHWM {:.1}) when ready; VmRSS {:.1} MB (VmHWM {:.1}) after the deadlines; VmRSS {:.1} MB (VmHWM {:.1}) at the end |",
        mb(mem_ready.0),
        mb(mem_ready.1),
        mb(mem_after.0),
        mb(mem_after.1),
        mb(mem_end.0),
        mb(mem_end.1),
    );
    if seeded.samples.is_empty() {
        println!("| lateness | no sample deadlines |");
        return;
    }
    println!(
        "| lateness | {} deadlines due {:.0}-{:.0} s after spawn: p50 {} ms, p99 {} ms, max {} ms; {missed} not fired by due + {} s; {never} never fired |",
        seeded.samples.len(),
        seeded
            .samples
            .iter()
            .map(|s| (s.1 - spawned_at).num_milliseconds())
            .min()
            .unwrap_or_default() as f64
            / 1000.0,
        (last_due - spawned_at).num_milliseconds() as f64 / 1000.0,
        pct(0.50),
        pct(0.99),
        lateness.last().copied().unwrap_or(-1),
        MISSED_AFTER.as_secs(),
    );
}

struct Seeded {
    bulk_issues: usize,
    bulk_timers: usize,
    bulk_secs: f64,
    /// When the daemon is to be started.
    start: DateTime<Utc>,
    /// Each sample's id and acknowledge deadline.
    samples: Vec<(String, DateTime<Utc>)>,
}

fn issue(category: &str, unit: &str, description: String) -> Issue {
    serde_json::from_value(json!({
        "category": category,
        "unit": unit,
        "description": description,
    }))
    .unwrap()
}

/// Seeds the store through the engine until the bulk issues hold `target` timers, then the
/// samples; closes the store.
async fn seed(db: &Path, target: usize, samples: usize, grids: &[String]) -> Seeded {
    let rules = RuleSet::load(CITY).expect("examples/city loads");
    let far = Utc::now() + chrono::Duration::days(28);
    let clock = Arc::new(ManualClock::new(far));
    let store = Store::open_sqlite(db).await.unwrap();
    let engine = Arc::new(Engine::new(store, rules, clock.clone()));

    // Timers per bulk issue, from the decision itself.
    let per: Vec<usize> = BULK_CATEGORIES
        .iter()
        .map(|c| {
            let i = issue(c, &grids[0], "probe".into());
            let d = engine
                .rules()
                .decide(&i, &IssueState::default(), &Event::Reported, far)
                .unwrap();
            assert!(!d.next.triage, "{c} goes to triage");
            d.timers.len()
        })
        .collect();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let (mut issues, mut timers) = (0usize, 0usize);
    while timers < target {
        if tasks.len() >= IN_FLIGHT {
            tasks.join_next().await.unwrap().unwrap();
        }
        let c = issues % BULK_CATEGORIES.len();
        // One report a second from four weeks on: the deadlines spread over days.
        clock.set(far + chrono::Duration::seconds(issues as i64));
        let i = issue(
            BULK_CATEGORIES[c],
            &grids[issues % grids.len()],
            format!("bulk report {issues}"),
        );
        let engine = engine.clone();
        tasks.spawn(async move { engine.submit(i, "bench", None).await.unwrap() });
        issues += 1;
        timers += per[c];
        if issues.is_multiple_of(25_000) {
            eprintln!(
                "timers: seeded {issues} issues, {timers} timers, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let bulk_secs = started.elapsed().as_secs_f64();

    // The samples, one after another (each at its own time on the clock): at about 10 ms each,
    // the daemon starts 10 s plus that after now.
    let start = Utc::now()
        + chrono::Duration::seconds(10)
        + chrono::Duration::milliseconds(10 * samples as i64);
    let mut sampled = Vec::with_capacity(samples);
    for k in 0..samples {
        let due = start
            + chrono::Duration::from_std(FIRST_DUE + SPREAD.mul_f64(k as f64 / samples as f64))
                .unwrap();
        clock.set(due - chrono::Duration::minutes(15));
        let i = issue(
            "gas_leak",
            &grids[(k * 7) % grids.len()],
            format!("smell of gas in the stairwell, sample {k}"),
        );
        let s = engine.submit(i, "bench", None).await.unwrap();
        let ack = s
            .issue
            .state
            .acknowledge_by
            .expect("an acknowledge deadline");
        assert_eq!(ack, due, "gas leaks are acknowledged within 15 minutes");
        sampled.push((s.issue.issue.id, ack));
    }
    engine.store().close().await;
    drop(engine);
    Seeded {
        bulk_issues: issues,
        bulk_timers: timers,
        bulk_secs,
        start,
        samples: sampled,
    }
}

/// A read-only connection to the store.
async fn reader(db: &Path) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(db)
                .read_only(true)
                .busy_timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap()
}

struct Counts {
    issues: i64,
    timers: i64,
    /// Messages queued (none delivered: no daemon ran while seeding).
    outbox: i64,
    due_at_start: i64,
}

async fn count(db: &Path, start: DateTime<Utc>) -> Counts {
    let pool = reader(db).await;
    let one = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let c = Counts {
        issues: one("SELECT COUNT(*) FROM issues")
            .fetch_one(&pool)
            .await
            .unwrap(),
        timers: one("SELECT COUNT(*) FROM timers")
            .fetch_one(&pool)
            .await
            .unwrap(),
        outbox: one("SELECT COUNT(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .unwrap(),
        due_at_start: one("SELECT COUNT(*) FROM timers WHERE due <= ?")
            .bind(start.timestamp_millis())
            .fetch_one(&pool)
            .await
            .unwrap(),
    };
    pool.close().await;
    c
}

/// When each sample's acknowledge deadline fired (its first `deadline_passed` event), if yet.
async fn fired_at(db: &Path, samples: &[(String, DateTime<Utc>)]) -> Vec<Option<DateTime<Utc>>> {
    let pool = reader(db).await;
    let mut out = Vec::with_capacity(samples.len());
    for (id, _) in samples {
        let rows = sqlx::query(
            "SELECT at FROM events WHERE issue_id = ? AND kind = 'deadline_passed'
             AND json_extract(payload, '$.deadline') = 'acknowledge' ORDER BY seq LIMIT 1",
        )
        .bind(id)
        .fetch_all(&pool)
        .await
        .unwrap();
        out.push(
            rows.first()
                .and_then(|r| DateTime::from_timestamp_millis(r.get::<i64, _>(0))),
        );
    }
    pool.close().await;
    out
}

/// The example city's grids.
fn grids() -> Vec<String> {
    let units = std::fs::read_to_string(Path::new(CITY).join("units.csv")).unwrap();
    units
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            let id = f.next()?;
            (f.next()? == "grid").then(|| id.to_string())
        })
        .collect()
}

/// Whether `/readyz` answers 200.
fn readyz(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// `(VmRSS, VmHWM)` of a process, in kB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat`.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: state is field 3, utime and stime 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The value after `key` in a log line.
fn field(line: &str, key: &str) -> Option<String> {
    let i = line.find(key)?;
    line[i + key.len()..]
        .split_whitespace()
        .next()
        .map(str::to_string)
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
