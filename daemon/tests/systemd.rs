//! Under systemd: the real binary started with a `NOTIFY_SOCKET` of the test's own says
//! `READY=1` once it serves, `STATUS=` on the way, `RELOADING=1` (with `MONOTONIC_USEC=`) then
//! `READY=1` around every reload, `STOPPING=1` on SIGTERM, and pings the watchdog from the
//! scheduler's loop at half of `WATCHDOG_USEC`; a scheduler that hangs stops the pings. And its
//! log as JSON, one object per line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use escalade::engine::Clock;
use escalade::systemd::Watchdog;
use serde_json::Value;

mod support;

use support::{Daemon, NotifySocket, TestDb, client, copy_rules, edit};

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/tests/fixtures/mini");

fn signal(d: &Daemon, sig: i32) {
    // SAFETY: kill(2) on the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(d.0.id() as i32, sig) }, 0);
}

/// CLOCK_MONOTONIC now, in microseconds: what `MONOTONIC_USEC=` is read against.
fn monotonic_usec() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) },
        0
    );
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

/// The address in a `STATUS=serving on ADDR; ...` line.
fn serving_on(n: &support::Notification) -> String {
    let status = n.get("STATUS").expect("READY=1 comes with a status");
    status
        .strip_prefix("serving on ")
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("not a serving status: {status}"))
        .to_string()
}

/// Waits for the daemon to exit (killing it after 15 s); its exit code.
fn exit_code(mut d: Daemon) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(s) = d.0.try_wait().unwrap() {
            return s.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_serving_and_every_reload_is_wrapped_in_reloading_and_ready() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_rules(MINI, &rules);
    let r = rules.to_str().unwrap();
    let db = TestDb::new(&dir.path().join("state"));
    let admin = client(&support::admin_token(&db, r));
    let notify = NotifySocket::bind();
    let mut command = Command::new(env!("CARGO_BIN_EXE_escalade"));
    command
        .env("NOTIFY_SOCKET", &notify.path)
        .env_remove("WATCHDOG_USEC")
        .stderr(Stdio::null());
    let daemon = support::spawn(&db, r, command, &[]);

    // Nothing but the notifications tells the test that the daemon is up.
    let start = notify.until("READY", "1");
    let ready = start.last().unwrap();
    let base = serving_on(ready);
    let health = reqwest::get(format!("http://{base}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let statuses: Vec<&str> = start.iter().filter_map(|n| n.get("STATUS")).collect();
    assert!(
        statuses[0].starts_with("opening and migrating the store ")
            && statuses[1].starts_with("loading the rules ")
            && statuses[2].contains("; rules version "),
        "{statuses:?}"
    );
    assert_eq!(start.iter().filter(|n| n.get("READY").is_some()).count(), 1);

    // SIGHUP: RELOADING=1 with the monotonic clock, then READY=1 with the outcome.
    let before = monotonic_usec();
    signal(&daemon, libc::SIGHUP);
    let reload = notify.until("RELOADING", "1");
    let reloading = reload.last().unwrap();
    let usec: u64 = reloading
        .get("MONOTONIC_USEC")
        .expect("RELOADING=1 comes with MONOTONIC_USEC=")
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= monotonic_usec(),
        "{before} {usec}"
    );
    let done = notify.until("READY", "1");
    assert!(done.iter().all(|n| n.get("RELOADING").is_none()));
    let status = done.last().unwrap().get("STATUS").unwrap();
    assert!(status.contains("reload by signal: unchanged"), "{status}");

    // Through the API (by the admin token), a reload that fails: still READY=1 after it, saying so.
    edit(
        &rules.join("policy.yaml"),
        "    department: police\n",
        "    department: polise\n",
    );
    let answer = admin
        .post(format!("http://{base}/api/v1/rules/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    let reload = notify.until("RELOADING", "1");
    assert!(reload.last().unwrap().get("MONOTONIC_USEC").is_some());
    let done = notify.until("READY", "1");
    let status = done.last().unwrap().get("STATUS").unwrap();
    assert!(
        status.contains("reload by admin#1: invalid, the old rules stay live"),
        "{status}"
    );

    // SIGTERM: STOPPING=1, and a clean exit. No watchdog was asked for: none was pinged.
    signal(&daemon, libc::SIGTERM);
    let stop = notify.until("STOPPING", "1");
    assert_eq!(exit_code(daemon), Some(0));
    assert!(
        start
            .iter()
            .chain(&stop)
            .all(|n| n.get("WATCHDOG").is_none()),
        "{stop:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_pings_the_watchdog_at_half_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let notify = NotifySocket::bind();
    let mut command = Command::new(env!("CARGO_BIN_EXE_escalade"));
    command
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000")
        .stderr(Stdio::null());
    let daemon = support::spawn(&db, MINI, command, &[]);
    notify.until("READY", "1");
    // Nothing is due: without the watchdog the scheduler would sleep a minute.
    let seen = notify.during(Duration::from_secs(3));
    let pings: Vec<Instant> = seen
        .iter()
        .filter(|n| n.get("WATCHDOG") == Some("1"))
        .map(|n| n.at)
        .collect();
    // About 6; fewer on a loaded machine, hundreds from a loop that spins.
    assert!(
        (4..=10).contains(&pings.len()),
        "{} pings in 3 s, every 500 ms expected",
        pings.len()
    );
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest < Duration::from_secs(1), "{longest:?}");
    drop(daemon);

    // A watchdog meant for another process (WATCHDOG_PID) is not this one's to ping.
    let notify = NotifySocket::bind();
    let mut command = Command::new(env!("CARGO_BIN_EXE_escalade"));
    command
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000")
        .env("WATCHDOG_PID", "1")
        .stderr(Stdio::null());
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let daemon = support::spawn(&db, MINI, command, &[]);
    let start = notify.until("READY", "1");
    let later = notify.during(Duration::from_millis(1500));
    assert!(
        start
            .iter()
            .chain(&later)
            .all(|n| n.get("WATCHDOG").is_none()),
        "{later:?}"
    );
    drop(daemon);
}

/// A clock that can be made to stop: the scheduler's next pass, which reads it first, then
/// never ends, as a pass stuck on a store that does not answer would.
struct Stoppable {
    stopped: std::sync::Mutex<bool>,
    go: std::sync::Condvar,
}

impl Clock for Stoppable {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let mut stopped = self.stopped.lock().unwrap();
        while *stopped {
            stopped = self.go.wait(stopped).unwrap();
        }
        chrono::Utc::now()
    }
}

impl Stoppable {
    fn set(&self, stop: bool) {
        *self.stopped.lock().unwrap() = stop;
        self.go.notify_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_hangs_stops_the_pings() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let clock = Arc::new(Stoppable {
        stopped: std::sync::Mutex::new(false),
        go: std::sync::Condvar::new(),
    });
    let engine = Arc::new(support::engine(&db, MINI, clock.clone()).await);
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let tx = std::sync::Mutex::new(tx);
    let watchdog = Watchdog::new(Duration::from_millis(100), move || {
        let _ = tx.lock().unwrap().send(Instant::now());
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(
        engine
            .clone()
            .run_scheduler_watched(stopped, Some(watchdog)),
    );
    let count = |span: Duration| {
        std::thread::sleep(span);
        rx.try_iter().count()
    };
    // No timer is pending: the loop wakes for the watchdog alone.
    let running = count(Duration::from_secs(1));
    assert!((6..=15).contains(&running), "{running} pings in 1 s");
    clock.set(true);
    count(Duration::from_millis(500)); // the pass under way when the clock stopped
    let hung = count(Duration::from_secs(1));
    assert_eq!(hung, 0, "pings while the scheduler's pass hangs");
    clock.set(false);
    let resumed = count(Duration::from_millis(500));
    assert!(resumed >= 2, "{resumed} pings in 500 ms once the pass ends");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), scheduler)
        .await
        .unwrap()
        .unwrap();
}

/// A long catch-up (timers that fell due while the daemon was down) is one pass of many
/// batches: each batch that completes pings, so progress is not taken for a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_catch_up_pings_after_each_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let clock = Arc::new(escalade::engine::ManualClock::new(support::at(
        "2026-03-02T10:00:00+08:00",
    )));
    let engine = Arc::new(support::engine(&db, MINI, clock.clone()).await);
    let issue = escalade_rules::Issue {
        category: "garbage".into(),
        unit: "g1".into(),
        description: "bins overflowing".into(),
        reporter: Some("p-g1".into()),
        ..Default::default()
    };
    let submitted = futures_util::future::join_all(
        (0..300).map(|_| engine.submit(issue.clone(), "reporter:p-g1", None)),
    )
    .await;
    assert!(submitted.iter().all(Result::is_ok));
    // A month later every deadline of every issue is due: more than 256 issues, so each round
    // of their timers takes two batches.
    clock.set(support::at("2026-04-01T10:00:00+08:00"));
    let due = engine
        .store()
        .claim_due(engine.now(), engine.now(), 10_000)
        .await
        .unwrap()
        .len();
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let tx = std::sync::Mutex::new(tx);
    // An interval that never lapses here: every ping comes from the loop's passes.
    let watchdog = Watchdog::new(Duration::from_secs(3600), move || {
        let _ = tx.lock().unwrap().send(Instant::now());
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(
        engine
            .clone()
            .run_scheduler_watched(stopped, Some(watchdog)),
    );
    let start = Instant::now();
    while engine.store().next_due().await.unwrap().unwrap() <= engine.now() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the catch-up did not end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pings = rx.try_iter().count();
    // The pass and the one a decision's wake-up starts ping once each at their top; the rest
    // (7 when this was written, for 1,200 due) are batches.
    assert!(
        due >= 300 && pings >= 2 + 3,
        "{pings} pings for a catch-up of {due} due timers and more"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), scheduler)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("escalade.yaml");
    std::fs::write(&config, "log_format: json\n").unwrap();
    let notify = NotifySocket::bind();
    let mut command = Command::new(env!("CARGO_BIN_EXE_escalade"));
    command
        .env("NOTIFY_SOCKET", &notify.path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    let db = TestDb::new(&dir.path().join("state"));
    let mut daemon = support::spawn(&db, MINI, command, &["--config", config.to_str().unwrap()]);
    let stderr = daemon.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    let ready = notify.until("READY", "1");
    let base = serving_on(ready.last().unwrap());
    signal(&daemon, libc::SIGHUP);
    notify.until("RELOADING", "1");
    notify.until("READY", "1");
    signal(&daemon, libc::SIGTERM);
    assert_eq!(exit_code(daemon), Some(0));

    let lines = log.join().unwrap();
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for (e, l) in events.iter().zip(&lines) {
        assert!(
            e["timestamp"].is_string()
                && e["level"].is_string()
                && e["target"].is_string()
                && e["message"].is_string(),
            "{l}"
        );
    }
    let message = |m: &str| {
        events
            .iter()
            .find(|e| e["message"] == m)
            .unwrap_or_else(|| panic!("no `{m}` in {lines:?}"))
    };
    // The event's fields beside the message.
    let serving = message("escalade is serving");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["listen"], base.as_str());
    assert_eq!(message("rules reloaded")["by"], "signal");
    message("escalade stopped");
}

#[test]
fn a_bad_log_format_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("escalade.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nlog_format: xml\n").unwrap();
    let state = dir.path().join("state");
    let db = TestDb::new(&state);
    let out = db
        .command()
        .args(["run", "--rules", MINI, "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("escalade.yaml:2:")
            && err.contains("log_format")
            && err.contains("unknown variant `xml`"),
        "{err}"
    );
    assert!(
        !state.exists(),
        "nothing is made for a refused configuration"
    );

    let out = db
        .command()
        .args(["run", "--rules", MINI])
        .env("ESCALADE_LOG_FORMAT", "text")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ESCALADE_LOG_FORMAT: unknown log format `text`, expected `pretty` or `json`"),
        "{err}"
    );
    assert!(!state.exists());
}
