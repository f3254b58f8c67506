//! Replicas of the real daemon (release build) on one PostgreSQL database, two measurements:
//!
//! - `scale`: intake over HTTP (`POST /api/v1/issues`, C concurrent clients spread round-robin
//!   over the replicas, each answer after its durable commit) against 1 replica, then against 3
//!   on a fresh database, the same number of requests. Each replica's CPU is capped by a cgroup of
//!   its own (cgroup v1, `cpu.cfs_quota_us` over a `cpu.cfs_period_us` of 100 ms), so that on a
//!   small machine the replicas are the limit rather than PostgreSQL or the load generator.
//!   Printed for each: issues/s, latency percentiles, CPU-seconds per 1,000 issues of the daemons,
//!   of PostgreSQL (every `postgres` process) and of the load generator, how often the caps
//!   throttled, and the mean group-commit batch (from each replica's `/metrics`); then the ratio.
//! - `takeover`: a store of N pending timers that do not fall due during the run (seeded on
//!   SQLite through the library, as `timers.rs` does, and moved with the real
//!   `escalade store copy`, which is timed), plus S sample deadlines (gas leaks, acknowledge in
//!   15 minutes on the `always` calendar) reported on PostgreSQL through the library on manual
//!   clocks so that they fall due at a steady rate during the run. Three replicas run on it. Every
//!   15 s one replica (in turn) is sent SIGKILL as soon as it holds a claim on a timer (its name
//!   from `/readyz`, its claims polled in `timers`), then started again, until K kills have
//!   stranded a timer (at most 3K tries: the firing of a claim seen may already be committing).
//!   Printed: for each timer it held, the time from the kill to the timer firing elsewhere (its
//!   row gone); and the lateness of every other sample over the whole run (its `deadline_passed`
//!   event's `at` minus its `acknowledge_by`), and of those due from 1 s before a kill to 10 s
//!   after.
//!
//! Run (PostgreSQL at `ESCALADE_TEST_DATABASE_URL`; each run makes a database of its own on it
//! and drops it; `scale` makes cgroups under `/sys/fs/cgroup/cpu`, so it runs as root):
//!
//! ```sh
//! ESCALADE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p escalade --bench replicas -- scale [REQUESTS] [CLIENTS] [QUOTA_US]
//! ESCALADE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p escalade --bench replicas -- takeover [TIMERS] [SAMPLES] [KILLS]
//! ```
//!
//! Defaults: 20,000 requests, 48 clients, 15,000 µs of CPU per 100 ms period (0.15 core) per
//! replica; 1,000,000 timers, 3,000 samples, 3 kills. Figures and commands: BENCHMARKS.md.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use escalade::engine::{Engine, ManualClock};
use escalade::store::{Database, Store};
use escalade_rules::{Event, Issue, IssueState, RuleSet};
use serde_json::{Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

#[path = "../tests/support/mod.rs"]
mod support;

use support::{Daemon, TestDb};

fn main() {
    // `cargo bench` passes `--bench`; the words and numbers are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let nums: Vec<u64> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    let num = |i: usize, default: u64| nums.get(i).copied().unwrap_or(default);
    if std::env::var("ESCALADE_TEST_DATABASE_URL").map_or(true, |u| u.trim().is_empty()) {
        eprintln!(
            "replicas: needs ESCALADE_TEST_DATABASE_URL, the PostgreSQL server to make its \
             databases on (e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
        std::process::exit(2);
    }
    match args.first().map(String::as_str) {
        Some("scale") => scale(num(0, 20_000) as usize, num(1, 48) as usize, num(2, 15_000)),
        Some("takeover") => takeover(
            num(0, 1_000_000) as usize,
            num(1, 3_000) as usize,
            num(2, 3) as usize,
        ),
        _ => {
            eprintln!(
                "usage: cargo bench -p escalade --bench replicas -- scale [REQUESTS] [CLIENTS] \
                 [QUOTA_US] | takeover [TIMERS] [SAMPLES] [KILLS]"
            );
            std::process::exit(2);
        }
    }
}

// ---- replicas ---------------------------------------------------------------------------------

/// One replica: the binary over the shared database, with a state directory of its own.
struct Replica {
    daemon: Daemon,
    addr: String,
    pid: u32,
    /// Its name among the replicas (`claimed_by` of the timers it claims), from `/readyz`.
    name: String,
}

/// Starts a replica on `db` with the state directory `state` and waits until `/readyz` answers
/// 200 (at most a minute); returns it with the time that took.
fn start_replica(rt: &tokio::runtime::Runtime, db: &TestDb, state: &Path) -> (Replica, Duration) {
    let spawned = Instant::now();
    let (daemon, addr) = support::start_with(
        &db.sharing(state),
        CITY,
        Command::new(env!("CARGO_BIN_EXE_escalade")),
        &[],
    );
    let pid = daemon.0.id();
    let name = loop {
        if let Some(v) = readyz(rt, &addr)
            && let Some(n) = v["replica"]["name"].as_str()
        {
            break n.to_string();
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(60),
            "a replica was not ready within a minute"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let replica = Replica {
        daemon,
        addr,
        pid,
        name,
    };
    (replica, spawned.elapsed())
}

/// `/readyz`'s body when it answers 200.
fn readyz(rt: &tokio::runtime::Runtime, addr: &str) -> Option<Value> {
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("http://{addr}/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        r.json().await.ok()
    })
}

fn database_url(db: &TestDb) -> String {
    match db.database() {
        Database::Postgres(url) => url,
        Database::Sqlite(_) => unreachable!("the replicas run on PostgreSQL"),
    }
}

// ---- CPU caps ---------------------------------------------------------------------------------

const CGROUP_CPU: &str = "/sys/fs/cgroup/cpu";
const PERIOD_US: u64 = 100_000;

/// A cgroup (v1, `cpu` controller) capping the CPU of what is put in it at `quota / period`
/// cores; removed when dropped, after moving back to the root group any process still in it (a
/// group can only be removed once empty: the replicas are killed first).
struct CpuCap {
    dir: PathBuf,
}

impl CpuCap {
    fn new(n: usize, quota_us: u64) -> CpuCap {
        let dir = Path::new(CGROUP_CPU).join(format!("escalade-bench-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "making the cgroup {}: {e} (the scale run caps each replica with cgroup v1's \
                 cpu controller, which must be mounted at {CGROUP_CPU} and writable: root)",
                dir.display()
            )
        });
        let cap = CpuCap { dir };
        cap.write("cpu.cfs_period_us", PERIOD_US);
        cap.write("cpu.cfs_quota_us", quota_us);
        cap
    }

    fn write(&self, file: &str, value: impl Display) {
        let path = self.dir.join(file);
        std::fs::write(&path, value.to_string())
            .unwrap_or_else(|e| panic!("writing {value} to {}: {e}", path.display()));
    }

    /// Moves the process `pid` (all its threads) into the group.
    fn add(&self, pid: u32) {
        self.write("cgroup.procs", pid);
    }

    /// `cpu.stat`: periods, periods throttled, time throttled (ns).
    fn stat(&self) -> (u64, u64, u64) {
        let text = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0)
        };
        (
            get("nr_periods"),
            get("nr_throttled"),
            get("throttled_time"),
        )
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(Path::new(CGROUP_CPU).join("cgroup.procs"), pid);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "replicas: could not remove the cgroup {}",
            self.dir.display()
        );
    }
}

// ---- scale: 1 replica against 3 ---------------------------------------------------------------

/// What one intake run measured.
struct IntakeRun {
    issues: usize,
    secs: f64,
    latencies: Vec<Duration>,
    /// CPU-seconds during the measured part: the daemons, PostgreSQL, this process.
    cpu: (f64, f64, f64),
    /// Per replica: (periods, periods throttled, seconds throttled) during the measured part.
    throttled: Vec<(u64, u64, f64)>,
    /// Per replica: group commits and the writes they carried, during the measured part.
    commits: Vec<(f64, f64)>,
}

fn scale(requests: usize, clients: usize, quota_us: u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cores = quota_us as f64 / PERIOD_US as f64;
    println!(
        "scale: each replica capped at {cores:.2} core (cgroup v1 cpu.cfs_quota_us = {quota_us} \
         over cpu.cfs_period_us = {PERIOD_US}); {clients} clients round-robin over the \
         replicas; {} cores on the machine",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut runs = Vec::new();
    for n in [1, 3] {
        let r = intake(&rt, n, requests, clients, quota_us);
        report_intake(n, &r, cores);
        runs.push(r);
    }
    let rate = |r: &IntakeRun| r.issues as f64 / r.secs;
    println!(
        "scale: 3 replicas / 1 replica = {:.2} ({:.0} / {:.0} issues/s; the issue's floor is 2.5)",
        rate(&runs[1]) / rate(&runs[0]),
        rate(&runs[1]),
        rate(&runs[0]),
    );
}

fn intake(
    rt: &tokio::runtime::Runtime,
    n: usize,
    requests: usize,
    clients: usize,
    quota_us: u64,
) -> IntakeRun {
    let dir = tempfile::tempdir().unwrap();
    // Dropped last (locals drop in reverse): the database after the daemons, the cgroups
    // after the daemons in them.
    let db = TestDb::postgres(&dir.path().join("replica-0")).expect("a PostgreSQL server");
    let token = support::admin_token(&db, CITY);
    let caps: Vec<CpuCap> = (0..n).map(|i| CpuCap::new(i, quota_us)).collect();
    let mut replicas = Vec::new();
    for (i, cap) in caps.iter().enumerate() {
        let (r, _) = start_replica(rt, &db, &dir.path().join(format!("replica-{i}")));
        cap.add(r.pid);
        replicas.push(r);
    }
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
    let client = support::client(&token);

    // Warm-up, not counted: connections made, pools filled, pages cached.
    post_many(rt, &client, &addrs, clients, 10 * clients, "warm-up");

    let pids: Vec<u32> = replicas.iter().map(|r| r.pid).collect();
    let self_pid = std::process::id();
    let cpu_before = (
        support::cpu_seconds(&pids),
        support::cpu_seconds(&support::processes_named("postgres")),
        support::cpu_seconds(&[self_pid]),
    );
    let stat_before: Vec<_> = caps.iter().map(CpuCap::stat).collect();
    let commits_before: Vec<_> = addrs.iter().map(|a| commit_metrics(rt, a)).collect();

    let (elapsed, mut latencies) = post_many(rt, &client, &addrs, clients, requests, "report");

    let cpu = (
        support::cpu_seconds(&pids) - cpu_before.0,
        support::cpu_seconds(&support::processes_named("postgres")) - cpu_before.1,
        support::cpu_seconds(&[self_pid]) - cpu_before.2,
    );
    let throttled = caps
        .iter()
        .zip(&stat_before)
        .map(|(c, b)| {
            let a = c.stat();
            (a.0 - b.0, a.1 - b.1, (a.2 - b.2) as f64 / 1e9)
        })
        .collect();
    let commits = addrs
        .iter()
        .zip(&commits_before)
        .map(|(a, b)| {
            let m = commit_metrics(rt, a);
            (m.0 - b.0, m.1 - b.1)
        })
        .collect();
    latencies.sort();
    drop(replicas);
    drop(caps);
    drop(db);
    IntakeRun {
        issues: latencies.len(),
        secs: elapsed.as_secs_f64(),
        latencies,
        cpu,
        throttled,
        commits,
    }
}

/// `clients` clients, client `c` sending to `addrs[c % addrs.len()]`, submit `requests` issues
/// together (a whole number per client), one after another each: the time it took and each
/// request's latency.
fn post_many(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    addrs: &[String],
    clients: usize,
    requests: usize,
    what: &'static str,
) -> (Duration, Vec<Duration>) {
    rt.block_on(async {
        let per = requests / clients;
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let client = client.clone();
                let url = format!("http://{}/api/v1/issues", addrs[c % addrs.len()]);
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per);
                    for i in 0..per {
                        let body = json!({
                            "category": "garbage",
                            "unit": "g-0001",
                            "description": format!("{what} {i} of client {c}"),
                        });
                        let t = Instant::now();
                        let r = client.post(&url).json(&body).send().await.unwrap();
                        assert_eq!(r.status(), 201);
                        r.bytes().await.unwrap();
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::with_capacity(requests);
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (started.elapsed(), all)
    })
}

/// A replica's group commits so far, from `/metrics`: (commits, writes they carried).
fn commit_metrics(rt: &tokio::runtime::Runtime, addr: &str) -> (f64, f64) {
    let text = rt.block_on(async {
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("escalade_store_commit_batch_size_count"),
        value("escalade_store_commit_batch_size_sum"),
    )
}

fn report_intake(n: usize, r: &IntakeRun, cores: f64) {
    let pct = |p: f64| r.latencies[((r.latencies.len() as f64 * p) as usize).min(r.issues - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "scale: {n} replica(s): {} issues in {:.2} s: {:.0} issues/s; latency p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms",
        r.issues,
        r.secs,
        r.issues as f64 / r.secs,
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*r.latencies.last().unwrap()),
    );
    let per_thousand = 1000.0 / r.issues as f64;
    println!(
        "scale: {n} replica(s): CPU per 1,000 issues: daemons {:.3} s, PostgreSQL {:.3} s, load \
         generator {:.3} s; over the run: daemons {:.2} cores ({:.2} each of {cores:.2} allowed), \
         PostgreSQL {:.2} cores, load generator {:.2} cores",
        r.cpu.0 * per_thousand,
        r.cpu.1 * per_thousand,
        r.cpu.2 * per_thousand,
        r.cpu.0 / r.secs,
        r.cpu.0 / r.secs / n as f64,
        r.cpu.1 / r.secs,
        r.cpu.2 / r.secs,
    );
    for (i, ((periods, throttled, secs), (commits, writes))) in
        r.throttled.iter().zip(&r.commits).enumerate()
    {
        println!(
            "scale: {n} replica(s): replica {i}: throttled in {throttled} of {periods} periods \
             ({secs:.1} s held back); {commits:.0} group commits, {:.1} writes each",
            writes / commits.max(1.0),
        );
    }
}

// ---- takeover ---------------------------------------------------------------------------------

/// Submissions in flight while seeding the bulk on SQLite.
const IN_FLIGHT: usize = 384;
/// Everyday categories at `normal` priority on the office calendar: four timers an issue.
const BULK_CATEGORIES: [&str; 4] = ["garbage", "road_damage", "street_lights", "air_pollution"];
/// Engines (each with its own manual clock) reporting the samples on PostgreSQL at once.
const SAMPLE_ENGINES: usize = 4;
/// The first sample falls due this long after the replicas are started.
const FIRST_DUE: Duration = Duration::from_secs(20);
/// A kill is tried this often, from a few seconds after the first sample is due.
const KILL_EVERY: Duration = Duration::from_secs(15);
/// Kills are tried until KILLS of them stranded a timer (a replica seen holding a claim may
/// have sent the firing's commit already), at most this many times KILLS; the samples fall due
/// over as long as that takes.
const ATTEMPTS: usize = 3;
/// Claims are polled this often while waiting to kill; the claimed rows every this while after.
const CLAIM_POLL: Duration = Duration::from_millis(1);
const ROW_POLL: Duration = Duration::from_millis(10);
/// The killed replica's claims are read again this long after the kill.
const SETTLE: Duration = Duration::from_millis(500);

fn takeover(target: usize, samples: usize, kills: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::postgres(&dir.path().join("replica-0")).expect("a PostgreSQL server");
    let url = database_url(&db);
    let grids = grids();

    // ---- the bulk, on SQLite, moved with `escalade store copy` ----
    let seed_dir = dir.path().join("seed");
    std::fs::create_dir_all(&seed_dir).unwrap();
    let sqlite = TestDb::sqlite(&seed_dir);
    let sqlite_path = sqlite.sqlite_path().unwrap().to_path_buf();
    let bulk = rt.block_on(seed_bulk(&sqlite_path, target, &grids));
    let sqlite_bytes =
        file_size(&sqlite_path) + file_size(&sqlite_path.with_extension("sqlite-wal"));
    println!(
        "takeover: seeded {} issues with {} pending timers on SQLite in {:.1} s ({:.0} issues/s); \
         {:.0} MB on disk",
        bulk.0,
        bulk.1,
        bulk.2,
        bulk.0 as f64 / bulk.2,
        sqlite_bytes as f64 / 1e6
    );
    let copying = Instant::now();
    let out = support::escalade_in(
        &sqlite,
        &[],
        &[
            "store",
            "copy",
            "--from",
            &format!("sqlite:{}", sqlite_path.display()),
            "--to",
            &url,
        ],
    );
    let copy_secs = copying.elapsed().as_secs_f64();
    support::expect_code(&out, 0, "escalade store copy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tables: Vec<(String, i64)> = stdout
        .lines()
        .filter_map(|l| {
            let (t, n) = l.split_once(": ")?;
            Some((t.to_string(), n.trim().parse().ok()?))
        })
        .filter(|(t, _)| t != "photos")
        .collect();
    let rows: i64 = tables.iter().map(|t| t.1).sum();
    let pool = rt
        .block_on(PgPoolOptions::new().max_connections(2).connect(&url))
        .unwrap();
    let pg_bytes: i64 = rt
        .block_on(
            sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&pool),
        )
        .unwrap();
    println!(
        "takeover: escalade store copy: {rows} rows in {copy_secs:.1} s ({:.0} rows/s; {}); \
         {:.0} MB in PostgreSQL after",
        rows as f64 / copy_secs,
        tables
            .iter()
            .filter(|t| t.1 > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        pg_bytes as f64 / 1e6
    );
    drop(sqlite);

    // ---- the samples, on PostgreSQL, due at a steady rate during the run ----
    let spread = KILL_EVERY * (ATTEMPTS * kills) as u32 + Duration::from_secs(10);
    // Reporting a sample on PostgreSQL takes a few ms; the replicas start after a margin.
    // Whole milliseconds, as the store keeps instants.
    let start_at = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
        + chrono::Duration::seconds(10)
        + chrono::Duration::milliseconds(8 * samples as i64 / SAMPLE_ENGINES as i64);
    let dues: Vec<DateTime<Utc>> = (0..samples)
        .map(|k| {
            start_at
                + chrono::Duration::milliseconds(
                    (FIRST_DUE + spread.mul_f64(k as f64 / samples.max(1) as f64)).as_millis()
                        as i64,
                )
        })
        .collect();
    let seeding = Instant::now();
    let sample_ids = rt.block_on(seed_samples(&db, &dues, &grids));
    println!(
        "takeover: {samples} sample deadlines reported on PostgreSQL in {:.1} s ({SAMPLE_ENGINES} \
         engines), due {:.0}-{:.0} s after the replicas start ({:.0} a second)",
        seeding.elapsed().as_secs_f64(),
        FIRST_DUE.as_secs_f64(),
        (FIRST_DUE + spread).as_secs_f64(),
        samples as f64 / spread.as_secs_f64(),
    );
    let due_of: HashMap<String, DateTime<Utc>> = sample_ids
        .iter()
        .cloned()
        .zip(dues.iter().copied())
        .collect();
    let pending: i64 = rt
        .block_on(sqlx::query_scalar("SELECT COUNT(*) FROM timers").fetch_one(&pool))
        .unwrap();

    // ---- three replicas ----
    match (start_at - Utc::now()).to_std() {
        Ok(wait) => std::thread::sleep(wait),
        Err(_) => eprintln!(
            "takeover: warning: the samples took longer to report than planned; the replicas \
             start {} ms late",
            (Utc::now() - start_at).num_milliseconds()
        ),
    }
    let started_at = Utc::now();
    let states: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("replica-{i}")))
        .collect();
    let mut replicas: Vec<Replica> = Vec::new();
    let mut ready_times = Vec::new();
    for s in &states {
        let (r, t) = start_replica(&rt, &db, s);
        replicas.push(r);
        ready_times.push(t);
    }
    println!(
        "takeover: {pending} timers pending; 3 replicas ready {} after spawn",
        ready_times
            .iter()
            .map(|t| format!("{:.2} s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // ---- the kills ----
    let first_due = dues.first().copied().unwrap_or(started_at);
    let mut kill_log: Vec<Kill> = Vec::new();
    for k in 0..ATTEMPTS * kills {
        if kill_log.iter().filter(|k| !k.stranded.is_empty()).count() >= kills {
            break;
        }
        let at = first_due
            + chrono::Duration::seconds(3)
            + chrono::Duration::from_std(KILL_EVERY * k as u32).unwrap();
        std::thread::sleep((at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        let victim = k % replicas.len();
        let kill = rt.block_on(kill_holding(&pool, &mut replicas, victim));
        let (r, t) = start_replica(&rt, &db, &states[victim]);
        replicas.push(r);
        let last = replicas.len() - 1;
        replicas.swap(victim, last);
        replicas.pop();
        println!(
            "takeover: kill {}: {}; restarted, ready in {:.2} s",
            k + 1,
            kill.describe(),
            t.as_secs_f64()
        );
        kill_log.push(kill);
    }

    // ---- the samples' lateness ----
    let last_due = dues.last().copied().unwrap_or(started_at);
    std::thread::sleep(
        (last_due + chrono::Duration::seconds(5) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    );
    let give_up = Instant::now() + Duration::from_secs(60);
    let fired = loop {
        let fired = rt.block_on(fired_at(&pool, &sample_ids));
        if fired.len() == sample_ids.len() || Instant::now() > give_up {
            break fired;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    drop(replicas);
    let stranded_issues: HashSet<&str> = kill_log
        .iter()
        .flat_map(|k| k.stranded.iter().map(|s| s.issue.as_str()))
        .collect();
    let mut late: Vec<i64> = Vec::new();
    let mut near_kill: Vec<i64> = Vec::new();
    let mut twice = 0;
    let mut worst: Vec<(i64, DateTime<Utc>)> = Vec::new();
    for id in &sample_ids {
        let Some((at, times)) = fired.get(id) else {
            continue;
        };
        if *times > 1 {
            twice += 1;
        }
        if stranded_issues.contains(id.as_str()) {
            continue;
        }
        let due = due_of[id];
        let ms = (*at - due).num_milliseconds();
        late.push(ms);
        worst.push((ms, due));
        if kill_log.iter().any(|k| {
            due >= k.at - chrono::Duration::seconds(1) && due < k.at + chrono::Duration::seconds(10)
        }) {
            near_kill.push(ms);
        }
    }
    worst.sort_unstable_by_key(|w| std::cmp::Reverse(w.0));
    for (ms, due) in worst.iter().take(3) {
        let nearest = kill_log
            .iter()
            .map(|k| (*due - k.at).num_milliseconds())
            .min_by_key(|d| d.abs())
            .unwrap_or(0);
        println!(
            "takeover: a latest other sample: {ms} ms late, due {:.2} s after the replicas \
             started, {:+.2} s from the nearest kill",
            (*due - started_at).num_milliseconds() as f64 / 1000.0,
            nearest as f64 / 1000.0
        );
    }
    late.sort_unstable();
    near_kill.sort_unstable();
    let never = sample_ids.len() - fired.len();
    println!(
        "takeover: lateness of the {} other samples over the whole run: {}; of the {} due \
         from 1 s before a kill to 10 s after: {}; {never} never fired; {twice} fired twice",
        late.len(),
        percentiles(&late),
        near_kill.len(),
        percentiles(&near_kill),
    );
    let taken: Vec<f64> = kill_log
        .iter()
        .flat_map(|k| k.stranded.iter().filter_map(|s| s.taken_over))
        .map(|d| d.as_secs_f64())
        .collect();
    let worst = taken.iter().copied().fold(0.0, f64::max);
    println!(
        "takeover: {} kills, {} timers stranded and fired elsewhere, kill to fired: {}; worst \
         {worst:.2} s (goal 10 s)",
        kill_log.len(),
        taken.len(),
        taken
            .iter()
            .map(|t| format!("{t:.2} s"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    rt.block_on(pool.close());
    drop(db);
}

/// One kill: when, and what the killed replica held.
struct Kill {
    at: DateTime<Utc>,
    /// How long until a claim was seen.
    waited: Duration,
    stranded: Vec<Stranded>,
    /// Timers it held whose firing it had already sent: committed after the kill, before its
    /// lease ended, so not taken over.
    in_flight: usize,
    /// Claims of the killed replica first seen only `SETTLE` after the kill.
    late_claims: usize,
    /// Whether no claim was seen in time (the replica was killed anyway).
    caught: bool,
}

/// A timer the killed replica held a claim on.
struct Stranded {
    issue: String,
    /// The time left on its lease at the kill.
    lease_left: Duration,
    /// From the kill to its row gone (fired), if it was.
    taken_over: Option<Duration>,
}

impl Kill {
    fn describe(&self) -> String {
        let each: Vec<String> = self
            .stranded
            .iter()
            .map(|s| match s.taken_over {
                Some(t) => format!(
                    "fired elsewhere {:.2} s after the kill (lease had {:.2} s left)",
                    t.as_secs_f64(),
                    s.lease_left.as_secs_f64()
                ),
                None => "never fired".to_string(),
            })
            .collect();
        format!(
            "{} after {:.2} s of polling, {} timer(s) held: {}{}{}",
            if self.caught {
                "SIGKILL while holding claims"
            } else {
                "no claim seen in 20 s, SIGKILL anyway"
            },
            self.waited.as_secs_f64(),
            self.stranded.len() + self.in_flight,
            if each.is_empty() {
                "none stranded".to_string()
            } else {
                each.join("; ")
            },
            if self.late_claims > 0 {
                format!(
                    "; {} of them claimed by a statement that committed after the kill",
                    self.late_claims
                )
            } else {
                String::new()
            },
            if self.in_flight > 0 {
                format!(
                    "; {} committed by the killed replica's last transaction",
                    self.in_flight
                )
            } else {
                String::new()
            }
        )
    }
}

/// Waits until the replica `victim` holds a claim on a timer (at most 20 s), kills it with
/// SIGKILL, and follows the timers it held until they are fired elsewhere (at most 30 s).
async fn kill_holding(pool: &PgPool, replicas: &mut [Replica], victim: usize) -> Kill {
    let r = &mut replicas[victim];
    let polling = Instant::now();
    let mut caught = false;
    while polling.elapsed() < Duration::from_secs(20) {
        let held: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM timers WHERE claimed_by = $1 AND lease_until > $2")
                .bind(&r.name)
                .bind(Utc::now().timestamp_millis())
                .fetch_all(pool)
                .await
                .unwrap();
        if !held.is_empty() {
            caught = true;
            break;
        }
        tokio::time::sleep(CLAIM_POLL).await;
    }
    // SAFETY: `kill` only sends a signal, to a child this process started and has not reaped.
    unsafe { libc::kill(r.pid as libc::pid_t, libc::SIGKILL) };
    let killed = Instant::now();
    let at = Utc::now();
    let waited = killed - polling;
    let _ = r.daemon.0.wait();
    // Right after the kill, and again a little later: a statement the replica had sent before
    // it died (a claim) still runs to its end on the server and may commit after the first look.
    let claimed = || {
        sqlx::query_as::<_, (i64, String, i64)>(
            "SELECT id, issue_id, lease_until FROM timers WHERE claimed_by = $1",
        )
        .bind(&r.name)
        .fetch_all(pool)
    };
    let mut held = claimed().await.unwrap();
    tokio::time::sleep(SETTLE).await;
    let mut late_claims = 0;
    for h in claimed().await.unwrap() {
        if !held.iter().any(|x| x.0 == h.0) {
            late_claims += 1;
            held.push(h);
        }
    }
    let ids: Vec<i64> = held.iter().map(|h| h.0).collect();
    let mut gone: HashMap<i64, (Instant, i64)> = HashMap::new();
    while gone.len() < ids.len() && killed.elapsed() < Duration::from_secs(30) {
        let left: HashSet<i64> = sqlx::query_scalar("SELECT id FROM timers WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let now = (Instant::now(), Utc::now().timestamp_millis());
        for id in &ids {
            if !left.contains(id) {
                gone.entry(*id).or_insert(now);
            }
        }
        tokio::time::sleep(ROW_POLL).await;
    }
    let mut stranded = Vec::new();
    let mut in_flight = 0;
    for (id, issue, lease_until) in held {
        let lease_left = Duration::from_millis((lease_until - at.timestamp_millis()).max(0) as u64);
        match gone.get(&id) {
            // Nobody else may claim it before its lease ends: gone sooner, it was the killed
            // replica's own firing, sent before the kill.
            Some((_, wall)) if *wall < lease_until => in_flight += 1,
            Some((when, _)) => stranded.push(Stranded {
                issue,
                lease_left,
                taken_over: Some(*when - killed),
            }),
            None => stranded.push(Stranded {
                issue,
                lease_left,
                taken_over: None,
            }),
        }
    }
    Kill {
        at,
        waited,
        stranded,
        in_flight,
        late_claims,
        caught,
    }
}

/// `p50 / p99 / max` of sorted milliseconds.
fn percentiles(ms: &[i64]) -> String {
    if ms.is_empty() {
        return "none".to_string();
    }
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    format!(
        "p50 {} ms, p99 {} ms, max {} ms",
        pct(0.50),
        pct(0.99),
        ms[ms.len() - 1]
    )
}

fn issue(category: &str, unit: &str, description: String) -> Issue {
    serde_json::from_value(json!({
        "category": category,
        "unit": unit,
        "description": description,
    }))
    .unwrap()
}

/// Seeds the SQLite store at `db` through the engine until its issues hold `target` timers, none
/// due for four weeks (as `timers.rs` does); closes it. Returns issues, timers and seconds.
async fn seed_bulk(db: &Path, target: usize, grids: &[String]) -> (usize, usize, f64) {
    let rules = RuleSet::load(CITY).expect("examples/city loads");
    let far = Utc::now() + chrono::Duration::days(28);
    let clock = Arc::new(ManualClock::new(far));
    let store = Store::open_sqlite(db).await.unwrap();
    let engine = Arc::new(Engine::new(store, rules, clock.clone()));
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
        if issues.is_multiple_of(50_000) {
            eprintln!(
                "takeover: seeded {issues} issues, {timers} timers, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    engine.store().close().await;
    (issues, timers, secs)
}

/// Reports one gas leak per entry of `dues` on the PostgreSQL store `db`, through engines with
/// manual clocks, each so that its acknowledge deadline (15 minutes after the report) is that
/// instant. Returns their ids, in the order of `dues`.
async fn seed_samples(db: &TestDb, dues: &[DateTime<Utc>], grids: &[String]) -> Vec<String> {
    let mut tasks = Vec::new();
    for e in 0..SAMPLE_ENGINES {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let engine = support::engine(db, CITY, clock.clone()).await;
        let mine: Vec<(usize, DateTime<Utc>)> = dues
            .iter()
            .copied()
            .enumerate()
            .skip(e)
            .step_by(SAMPLE_ENGINES)
            .collect();
        let grids = grids.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(mine.len());
            for (k, due) in mine {
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
                out.push((k, s.issue.issue.id));
            }
            engine.store().close().await;
            out
        }));
    }
    let mut ids = vec![String::new(); dues.len()];
    for t in tasks {
        for (k, id) in t.await.unwrap() {
            ids[k] = id;
        }
    }
    ids
}

/// For each sample that has fired: its acknowledge deadline's first `deadline_passed` `at`, and
/// how many such events it has.
async fn fired_at(pool: &PgPool, ids: &[String]) -> HashMap<String, (DateTime<Utc>, i64)> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT issue_id, MIN(at), COUNT(*) FROM events
         WHERE issue_id = ANY($1) AND kind = 'deadline_passed'
           AND (payload::jsonb)->>'deadline' = 'acknowledge'
         GROUP BY issue_id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .filter_map(|(id, at, n)| Some((id, (DateTime::from_timestamp_millis(at)?, n))))
        .collect()
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

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
