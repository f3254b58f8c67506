//! `escalade store copy`, the real binary, from an SQLite store the daemon wrote into a real
//! PostgreSQL server: the daemon started on the copy serves the same issues, timelines and
//! photos to the old token, and a new issue continues the ids. Each refusal (a target that is
//! not empty, a missing or foreign SQLite file, a store short of a migration, a photo deleted, a
//! daemon still running on the store) names what was wrong and commits nothing.
//!
//! Each test makes a database of its own on the server `ESCALADE_TEST_DATABASE_URL` names
//! (`postgres://postgres@127.0.0.1:5432/test`) and drops it at the end; without the variable the
//! tests say they skipped. The SQLite side is an SQLite store whatever the run's backend.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Output;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

mod support;

use escalade::store::Database;
use support::{Daemon, TestDb, admin_token, client, escalade_in, expect_code, png, start};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// A PostgreSQL database of the test's own, its state directory `state`, or `None` when
/// `ESCALADE_TEST_DATABASE_URL` names no server: then the test says it skipped (on stderr as
/// it is, which the test runner does not keep back) and returns.
fn postgres(state: &Path) -> Option<TestDb> {
    let pg = TestDb::postgres(state);
    if pg.is_none() {
        let test = std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string();
        // One write, so that the line comes whole among the runner's.
        let line = format!("{test}: skipped: set ESCALADE_TEST_DATABASE_URL\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    pg
}

/// The URL of a PostgreSQL store, as `--to` takes it.
fn url(db: &TestDb) -> String {
    match db.database() {
        Database::Postgres(url) => url,
        Database::Sqlite(path) => panic!("{} is not a PostgreSQL store", path.display()),
    }
}

/// The tables of the target's schema (its migrations' bookkeeping aside) with their rows.
async fn counts(url: &str) -> BTreeMap<String, i64> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
           AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        out.insert(t, n);
    }
    conn.close().await.unwrap();
    out
}

/// `escalade store copy ARGS` with the configuration of the store `db`.
fn copy(db: &TestDb, args: &[&str]) -> Output {
    let mut all = vec!["store", "copy"];
    all.extend_from_slice(args);
    escalade_in(db, &[], &all)
}

/// What a refused command said, after checking it exited 2 and printed nothing on stdout.
fn refused(out: &Output, what: &str) -> String {
    expect_code(out, 2, what);
    assert!(out.stdout.is_empty(), "{what}: {:?}", out.stdout);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sqlite_arg(db: &Path) -> String {
    format!("sqlite:{}", db.display())
}

/// A store the real daemon wrote, the daemon stopped.
struct City {
    _tmp: tempfile::TempDir,
    /// The SQLite store, `escalade.sqlite` in its state directory.
    db: TestDb,
    token: String,
    /// Each issue as the API served it (issue, state, version, timeline), by id.
    issues: BTreeMap<String, Value>,
    photo: Vec<u8>,
    photo_hash: String,
    photo_issue: String,
}

impl City {
    /// The SQLite store, as `--from` takes it.
    fn from(&self) -> String {
        sqlite_arg(self.db.sqlite_path().unwrap())
    }
}

/// Stops the daemon as its service manager does (SIGTERM), and waits for it.
fn stop(mut d: Daemon) {
    // SAFETY: `kill` only sends a signal, to the child this test started and has not reaped.
    let sent = unsafe { libc::kill(d.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM to the daemon");
    let status = d.0.wait().unwrap();
    assert!(status.success(), "the daemon stopped with {status}");
}

/// Three issues reported to the daemon on a new SQLite store (one with a photo, one with an
/// idempotency key), one acknowledged; then the daemon is stopped.
fn city(rt: &tokio::runtime::Runtime) -> City {
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite(&tmp.path().join("state"));
    let token = admin_token(&db, CITY);
    let (daemon, addr) = start(&db, CITY);
    let base = format!("http://{addr}/api/v1/issues");
    let c = client(&token);
    let photo = png(7);
    let (issues, photo_issue) = rt.block_on(async {
        let report = |d: &str| json!({"category": "garbage", "unit": "g-0001", "description": d});
        let mut ids = Vec::new();
        let r = c.post(&base).json(&report("first")).send().await.unwrap();
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let form = Form::new()
            .part(
                "issue",
                Part::text(report("with a photo").to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "photo",
                Part::bytes(photo.clone()).mime_str("image/png").unwrap(),
            );
        let r = c.post(&base).multipart(form).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let photo_issue = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        ids.push(photo_issue.clone());
        let r = c
            .post(&base)
            .header("idempotency-key", "copy-test-1")
            .json(&report("keyed"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let r = c
            .post(format!("{base}/{photo_issue}/events"))
            .json(&json!({"event": "acknowledged"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let mut issues = BTreeMap::new();
        for id in ids {
            let r = c.get(format!("{base}/{id}")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            issues.insert(id, r.json::<Value>().await.unwrap());
        }
        (issues, photo_issue)
    });
    stop(daemon);
    City {
        _tmp: tmp,
        db,
        token,
        issues,
        photo_hash: escalade::photos::name_of(&photo),
        photo,
        photo_issue,
    }
}

/// The copy prints each table's rows as the target then holds them, the photos, and a last
/// line; the daemon started on the copy serves every issue as before with its timeline and its
/// photo to the old token, and continues the ids and the timelines after the copied ones.
#[test]
fn a_copied_store_is_served_from_postgres_as_it_was() {
    // The daemon on the copy runs on a new, empty state directory of its own: no photo file.
    let fresh = tempfile::tempdir().unwrap();
    let Some(pg) = postgres(&fresh.path().join("state")) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let city = city(&rt);

    let out = copy(&city.db, &["--from", &city.from(), "--to", &url(&pg)]);
    expect_code(&out, 0, "copy");
    let said = String::from_utf8(out.stdout).unwrap();
    let printed: BTreeMap<String, i64> = said
        .lines()
        .filter_map(|l| {
            let (t, n) = l.split_once(": ")?;
            Some((t.to_string(), n.parse().ok()?))
        })
        .collect();
    let held = rt.block_on(counts(&url(&pg)));
    let events: usize = city
        .issues
        .values()
        .map(|i| i["timeline"].as_array().unwrap().len())
        .sum();
    assert_eq!(printed["issues"], 3, "{said}");
    assert_eq!(printed["events"], events as i64, "{said}");
    assert_eq!(printed["api_tokens"], 1, "{said}");
    assert_eq!(printed["idempotency_keys"], 1, "{said}");
    assert!(printed["rule_versions"] >= 1, "{said}");
    assert_eq!(
        printed.len(),
        escalade::store::copy::TABLES.len(),
        "a line per table: {said}"
    );
    for (t, n) in &printed {
        assert_eq!(
            held[t], *n,
            "{t}: printed {n}, the target holds {}",
            held[t]
        );
    }
    assert!(
        said.contains(&format!("photos: 1 ({} bytes)", city.photo.len())),
        "{said}"
    );
    assert!(
        said.lines().last().unwrap().starts_with("copied "),
        "{said}"
    );

    // The photo is in the target's table, as its bytes tell.
    let (content_type, bytes, size): (String, Vec<u8>, i64) = rt.block_on(async {
        let mut conn = PgConnection::connect(&url(&pg)).await.unwrap();
        sqlx::query_as("SELECT content_type, bytes, size FROM photos WHERE hash = $1")
            .bind(&city.photo_hash)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    });
    assert_eq!(
        (content_type.as_str(), &bytes, size),
        ("image/png", &city.photo, city.photo.len() as i64)
    );

    // The daemon on the copy, on a state directory that holds no photo: the photo it serves is
    // read from the database's table.
    let (_daemon, addr) = start(&pg, CITY);
    let base = format!("http://{addr}/api/v1/issues");
    let c = client(&city.token);
    rt.block_on(async {
        for (id, before) in &city.issues {
            let r = c.get(format!("{base}/{id}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "the old token reads issue {id}");
            let now: Value = r.json().await.unwrap();
            assert_eq!(&now, before, "issue {id} as served from PostgreSQL");
        }
        let r = c
            .get(format!(
                "{base}/{}/photos/{}",
                city.photo_issue, city.photo_hash
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), city.photo.as_slice());

        let last_id = city
            .issues
            .keys()
            .map(|id| id.parse::<i64>().unwrap())
            .max()
            .unwrap();
        let r = c
            .post(&base)
            .json(&json!({"category": "garbage", "unit": "g-0001", "description": "after"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["id"], (last_id + 1).to_string(), "{body}");

        // A copied issue's next event follows every copied event.
        let last_seq = city
            .issues
            .values()
            .flat_map(|i| i["timeline"].as_array().unwrap())
            .map(|e| e["seq"].as_i64().unwrap())
            .max()
            .unwrap();
        let first = city.issues.keys().next().unwrap();
        let r = c
            .post(format!("{base}/{first}/events"))
            .json(&json!({"event": "acknowledged"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let r: Value = c
            .get(format!("{base}/{first}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let seq = r["timeline"].as_array().unwrap().last().unwrap()["seq"]
            .as_i64()
            .unwrap();
        assert!(seq > last_seq, "new event {seq}, copied up to {last_seq}");
    });
}

/// A second copy into the same database finds it holding the first's rows: refused, naming
/// the tables and their rows, the target as the first copy left it.
#[test]
fn a_target_that_is_not_empty_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(pg) = postgres(&tmp.path().join("pg")) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let city = city(&rt);
    let (from, to) = (city.from(), url(&pg));
    let args = ["--from", &from, "--to", &to];
    expect_code(&copy(&city.db, &args), 0, "first copy");
    let before = rt.block_on(counts(&to));
    let said = refused(&copy(&city.db, &args), "second copy");
    assert!(said.contains("is not empty"), "{said}");
    assert!(said.contains("issues: 3"), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(rt.block_on(counts(&to)), before);
}

/// A missing file, a file that is not an escalade store, and a store short of a migration are
/// refused before the target is touched: it is left without a table.
#[test]
fn a_missing_or_foreign_or_old_store_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(pg) = postgres(&tmp.path().join("pg")) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The configuration's store: an SQLite file in the temporary directory, never made.
    let here = TestDb::sqlite(tmp.path());
    let to = url(&pg);

    let missing = tmp.path().join("nope.sqlite");
    let said = refused(
        &copy(&here, &["--from", &sqlite_arg(&missing), "--to", &to]),
        "a missing store",
    );
    assert!(
        said.contains(&format!("no SQLite store at {}", missing.display())),
        "{said}"
    );
    assert!(
        !tmp.path().join("nope.sqlite.lock").exists(),
        "no lock file is left beside a store that is not there"
    );

    let foreign = tmp.path().join("notes.txt");
    std::fs::write(
        &foreign,
        "not a database at all, but long enough to be read as one",
    )
    .unwrap();
    let said = refused(
        &copy(&here, &["--from", &sqlite_arg(&foreign), "--to", &to]),
        "a file that is not a store",
    );
    assert!(said.contains("is not an escalade store"), "{said}");

    // A store as an older escalade left it: its last migration not applied.
    let old = TestDb::sqlite(&tmp.path().join("old"));
    admin_token(&old, CITY);
    let db = old.sqlite_path().unwrap();
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&sqlite_arg(db))
            .await
            .unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    let said = refused(
        &copy(&old, &["--from", &sqlite_arg(db), "--to", &to]),
        "a store short of a migration",
    );
    assert!(said.contains("run the daemon on it once"), "{said}");

    assert_eq!(rt.block_on(counts(&to)), BTreeMap::new());
}

/// A photo the store names, deleted from the photo directory: refused naming its hash, and no
/// row reaches the target.
#[test]
fn a_deleted_photo_is_refused_and_nothing_is_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(pg) = postgres(&tmp.path().join("pg")) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let city = city(&rt);
    let file = city
        .db
        .state()
        .join("photos")
        .join(&city.photo_hash[..2])
        .join(&city.photo_hash);
    std::fs::remove_file(&file).unwrap();
    let said = refused(
        &copy(&city.db, &["--from", &city.from(), "--to", &url(&pg)]),
        "a photo missing",
    );
    assert!(said.contains(&city.photo_hash), "{said}");
    let held = rt.block_on(counts(&url(&pg)));
    assert!(
        held.contains_key("issues") && held.contains_key("photos"),
        "{held:?}"
    );
    assert!(
        held.values().all(|n| *n == 0),
        "the target holds rows: {held:?}"
    );
}

/// A daemon still running on the SQLite store holds its lock: the copy is refused with the
/// lock's message before it connects to the target.
#[test]
fn a_store_a_daemon_runs_on_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(pg) = postgres(&tmp.path().join("pg")) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = TestDb::sqlite(&tmp.path().join("state"));
    admin_token(&db, CITY);
    let (_daemon, _) = start(&db, CITY);
    // The configuration's store: no --from.
    let said = refused(&copy(&db, &["--to", &url(&pg)]), "a running daemon");
    assert!(said.contains("owns the store"), "{said}");
    assert_eq!(rt.block_on(counts(&url(&pg))), BTreeMap::new());
}

/// `escalade replay` on a generated history and on its copy in PostgreSQL says the same, byte
/// for byte, under each filter: the two stores hold the same history, and replay reads both
/// alike.
#[test]
fn a_copied_history_replays_as_the_original_under_every_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(pg) = postgres(&tmp.path().join("pg")) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sqlite = TestDb::sqlite(&tmp.path().join("state"));
    let file = sqlite.sqlite_path().unwrap().to_path_buf();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let city = escalade_rules::RuleSet::load(CITY).unwrap();
    let options = escalade::generate::HistoryOptions {
        issues: 600,
        start: chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
        days: 30,
        seed: 11,
    };
    let stats = rt
        .block_on(escalade::generate::history(
            &city,
            "examples/city",
            &file,
            &options,
        ))
        .unwrap();
    let out = copy(&sqlite, &["--from", &sqlite_arg(&file), "--to", &url(&pg)]);
    expect_code(&out, 0, "copy");

    // A candidate that moves the street vendors' route: some issues go elsewhere.
    let candidate = tmp.path().join("candidate");
    support::copy_rules_edited(
        CITY,
        &candidate,
        &[(
            "routes.yaml",
            "      working: true\n    department: urban\n    co_assign: [market]",
            "      working: true\n    department: market",
        )],
    );
    let to = stats.horizon.to_rfc3339();
    let from = (stats.horizon - chrono::Duration::days(12)).to_rfc3339();
    let filters: [&[&str]; 4] = [
        &[],
        &["--category", "street_vendors"],
        &["--unit", "s-huayuanlu"],
        &["--from", &from, "--category", "garbage"],
    ];
    let mut changed = 0;
    for filter in filters {
        let mut args = vec![
            "replay",
            "--rules",
            candidate.to_str().unwrap(),
            "--to",
            &to,
            "--json",
        ];
        args.extend_from_slice(filter);
        let on = |db: &TestDb| {
            let out = escalade_in(db, &[], &args);
            expect_code(&out, 0, &format!("replay {filter:?}"));
            String::from_utf8(out.stdout).unwrap()
        };
        let (original, copied) = (on(&sqlite), on(&pg));
        assert_eq!(original, copied, "replay {filter:?}: the copy differs");
        let report: Value = serde_json::from_str(&original).unwrap();
        assert!(
            report["issues"]["replayed"].as_u64().unwrap_or(0) > 0,
            "replay {filter:?} replayed nothing: {report}"
        );
        changed += report["issues"]["changed"].as_u64().unwrap_or(0);
    }
    assert!(
        changed > 0,
        "the candidate changed nothing: a weak comparison"
    );
}
