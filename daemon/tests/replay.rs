//! Replay on real stores: histories generated into SQLite in a temp dir, replayed through the
//! library and through the real binary, checked against counts read from the store itself. A
//! history is an SQLite file whichever backend the run's stores are on.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use escalade::generate::{HistoryOptions, HistoryStats, history};
use escalade::replay::{ReplayError, ReplayFilter, ReplayReport, replay};
use escalade_rules::RuleSet;
use escalade_rules::replay::Cause;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// The route `vendors-office-hours` moved from urban (with market) to market alone.
const MOVE_VENDORS: (&str, &str, &str) = (
    "routes.yaml",
    "      working: true\n    department: urban\n    co_assign: [market]",
    "      working: true\n    department: market",
);

/// The example city's rules with a comment added: another version, the same behaviour.
const COMMENT: (&str, &str, &str) = ("routes.yaml", "", "\n# reviewed, nothing changed\n");

/// A copy of the example city under `tmp/name` with `edits` applied (`(file, from, to)`, an
/// empty `from` appends).
fn rules_dir(tmp: &Path, name: &str, edits: &[(&str, &str, &str)]) -> PathBuf {
    let dir = tmp.join(name);
    support::copy_rules_edited(CITY, &dir, edits);
    dir
}

fn load(dir: &Path) -> Arc<RuleSet> {
    Arc::new(RuleSet::load(dir).unwrap_or_else(|d| panic!("{}: {d:?}", dir.display())))
}

/// A generated history of `issues` example-city issues at `tmp/history.db`.
async fn generated(tmp: &Path, issues: usize) -> (PathBuf, HistoryStats) {
    let db = tmp.join("history.db");
    let city = RuleSet::load(CITY).unwrap();
    let o = HistoryOptions {
        issues,
        start: chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
        days: 30,
        seed: 7,
    };
    let stats = history(&city, "examples/city", &db, &o).await.unwrap();
    assert_eq!(stats.issues, issues);
    (db, stats)
}

/// The whole history, lived to its end.
fn whole(stats: &HistoryStats) -> ReplayFilter {
    ReplayFilter {
        to: Some(stats.horizon),
        ..ReplayFilter::default()
    }
}

/// Answers of `sql` on the store, read with a connection of the test's own.
async fn strings(db: &Path, sql: &str) -> Vec<String> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(db).read_only(true))
        .await
        .unwrap();
    let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

async fn execute(db: &Path, sql: &str) {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(db))
        .await
        .unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

/// The ids of the issues whose report took the route `vendors-office-hours`, as the recorded
/// decisions say.
const VENDOR_ISSUES: &str = "SELECT issue_id FROM events WHERE kind = 'reported' \
     AND decision LIKE '%route `vendors-office-hours` matched%'";

fn ids(r: &ReplayReport) -> BTreeSet<String> {
    r.changed.iter().map(|i| i.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_that_behaves_the_same_shows_no_difference_over_the_whole_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, stats) = generated(tmp.path(), 10_000).await;
    let stored: Vec<String> = strings(&db, "SELECT id FROM issues").await;
    assert_eq!(stored.len(), 10_000);

    // Another version (a comment added): every issue is lived through both rule sets.
    let commented = load(&rules_dir(tmp.path(), "commented", &[COMMENT]));
    assert_ne!(commented.version.to_string(), stats.rules_version);
    let r = replay(&db, commented, whole(&stats), None).await.unwrap();
    assert_eq!(r.issues.read, 10_000);
    assert_eq!(r.issues.replayed, 10_000);
    assert_eq!(r.issues.unchanged, 10_000, "{:#?}", r.summary);
    assert_eq!((r.issues.changed, r.issues.skipped), (0, 0));
    assert!(r.summary.is_empty() && r.changed.is_empty());
    assert!(!r.differs());
    assert_eq!(r.recorded.len(), 1);
    assert_eq!(r.recorded[0].version, stats.rules_version);
    assert_eq!(r.recorded[0].issues, 10_000);
    assert!(
        r.actions > 10_000,
        "people acted on most issues: {}",
        r.actions
    );

    // The very rules that recorded it.
    let same = load(Path::new(CITY));
    let r = replay(&db, same, whole(&stats), None).await.unwrap();
    assert_eq!((r.issues.replayed, r.issues.changed), (10_000, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moved_route_shows_exactly_the_issues_of_that_route() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, stats) = generated(tmp.path(), 10_000).await;
    let expected: BTreeSet<String> = strings(&db, VENDOR_ISSUES).await.into_iter().collect();
    assert!(expected.len() > 50, "only {} vendor issues", expected.len());
    // Those urban acted on before the end diverge at that action.
    let urban_acted: BTreeSet<String> = strings(
        &db,
        &format!(
            "SELECT DISTINCT issue_id FROM events WHERE actor LIKE 'department:urban#%' \
             AND issue_id IN ({VENDOR_ISSUES})"
        ),
    )
    .await
    .into_iter()
    .collect();

    let moved = load(&rules_dir(tmp.path(), "moved", &[MOVE_VENDORS]));
    let r = replay(&db, moved, whole(&stats), Some(10_000))
        .await
        .unwrap();
    assert_eq!(r.issues.replayed, 10_000);
    assert_eq!(ids(&r), expected);
    assert_eq!(r.issues.changed as usize, expected.len());
    assert_eq!(r.changed_not_shown, 0);
    let diverged: BTreeSet<String> = r
        .changed
        .iter()
        .filter(|i| i.diverged.is_some())
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(diverged, urban_acted);
    assert_eq!(r.issues.diverged as usize, urban_acted.len());

    let route: Vec<_> = r.summary.iter().filter(|g| g.kind == "route").collect();
    assert_eq!(route.len(), 1, "{route:#?}");
    assert_eq!(route[0].issues as usize, expected.len());
    assert!(
        route[0].line.starts_with(&format!(
            "route: {} issues urban+market -> market (street_vendors in ",
            expected.len()
        )),
        "{}",
        route[0].line
    );
    assert!(r.differs());

    // With a limit, the first changed issues in report order, the rest counted.
    let moved = load(&rules_dir(tmp.path(), "moved-again", &[MOVE_VENDORS]));
    let few = replay(&db, moved, whole(&stats), Some(5)).await.unwrap();
    assert_eq!(few.changed.len(), 5);
    assert_eq!(few.changed_not_shown as usize, expected.len() - 5);
    let first: Vec<&str> = r.changed.iter().take(5).map(|i| i.id.as_str()).collect();
    let shown: Vec<&str> = few.changed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(shown, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_no_longer_allowed_shows_the_issue_diverged_at_that_event() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, stats) = generated(tmp.path(), 1_000).await;
    let moved = load(&rules_dir(tmp.path(), "moved", &[MOVE_VENDORS]));
    let r = replay(&db, moved, whole(&stats), Some(1_000))
        .await
        .unwrap();
    let diverged: Vec<_> = r.changed.iter().filter(|i| i.diverged.is_some()).collect();
    assert!(!diverged.is_empty());
    for i in diverged {
        let d = i.diverged.as_ref().unwrap();
        // The first action urban took on the issue, as the store has it.
        let first = strings(
            &db,
            &format!(
                "SELECT CAST(seq AS TEXT) || ' ' || kind || ' ' || actor FROM events \
                 WHERE issue_id = '{}' AND actor LIKE 'department:urban#%' ORDER BY seq LIMIT 1",
                i.id
            ),
        )
        .await;
        assert_eq!(
            first,
            vec![format!("{} {} {}", d.seq, d.event, d.actor)],
            "issue {}",
            i.id
        );
        assert_eq!(d.cause, Cause::Forbidden);
        assert_eq!(d.departments, vec!["market".to_string()]);
        assert!(d.reason.contains("may not post"), "{}", d.reason);
    }
    let line = &r
        .summary
        .iter()
        .find(|g| g.kind == "diverged")
        .unwrap()
        .line;
    assert!(
        line.ends_with("by department:urban (department:urban may no longer act: the candidate gave them to market)"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_select_by_time_category_and_subtree() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, stats) = generated(tmp.path(), 1_000).await;
    let commented = load(&rules_dir(tmp.path(), "commented", &[COMMENT]));
    let count = async |sql: &str| {
        strings(
            &db,
            &format!("SELECT CAST(COUNT(*) AS TEXT) FROM issues WHERE {sql}"),
        )
        .await[0]
            .parse::<u64>()
            .unwrap()
    };

    let from: DateTime<Utc> = "2026-03-10T00:00:00Z".parse().unwrap();
    let to: DateTime<Utc> = "2026-03-20T00:00:00Z".parse().unwrap();
    let f = ReplayFilter {
        from: Some(from),
        to: Some(to),
        ..ReplayFilter::default()
    };
    let r = replay(&db, commented.clone(), f, None).await.unwrap();
    let want = count(&format!(
        "reported_at >= {} AND reported_at < {}",
        from.timestamp_millis(),
        to.timestamp_millis()
    ))
    .await;
    assert!(want > 0 && want < 1_000);
    assert_eq!((r.issues.read, r.issues.changed), (want, 0));
    assert_eq!(r.horizon, to);

    let f = ReplayFilter {
        category: Some("noise".into()),
        ..whole(&stats)
    };
    let r = replay(&db, commented.clone(), f, None).await.unwrap();
    assert_eq!(r.issues.read, count("category = 'noise'").await);

    let f = ReplayFilter {
        unit: Some("d-erqi".into()),
        ..whole(&stats)
    };
    let r = replay(&db, commented, f, None).await.unwrap();
    let want = count("branch LIKE '%/d-erqi/%'").await;
    assert!(want > 0);
    assert_eq!(r.issues.read, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unstored_version_is_said_and_its_later_decisions_version_used_or_the_issue_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, stats) = generated(tmp.path(), 300).await;
    // Issues 1-10 were reported under a version the store does not have; their later decisions
    // (if any) are of the stored one.
    execute(
        &db,
        "UPDATE events SET rules_version = 'feedfacefeedface' WHERE kind = 'reported' AND CAST(issue_id AS INTEGER) <= 10",
    )
    .await;
    let with_later: Vec<String> = strings(
        &db,
        "SELECT DISTINCT issue_id FROM events WHERE kind != 'reported' AND CAST(issue_id AS INTEGER) <= 10",
    )
    .await;
    let moved = load(&rules_dir(tmp.path(), "moved", &[MOVE_VENDORS]));
    let r = replay(&db, moved.clone(), whole(&stats), None)
        .await
        .unwrap();
    assert_eq!(r.fallbacks.len(), usize::from(!with_later.is_empty()));
    if let Some(f) = r.fallbacks.first() {
        assert_eq!(
            (f.missing.as_str(), f.used.as_str()),
            ("feedfacefeedface", stats.rules_version.as_str())
        );
        assert_eq!(f.issues as usize, with_later.len());
    }
    let alone = 10 - with_later.len() as u64;
    assert_eq!(r.issues.skipped, alone);
    assert_eq!(r.issues.replayed, 300 - alone);

    // No stored version at all: every issue is skipped, with the reason counted.
    execute(&db, "DELETE FROM rule_versions").await;
    let r = replay(&db, moved, whole(&stats), None).await.unwrap();
    assert_eq!(
        (r.issues.read, r.issues.skipped, r.issues.replayed),
        (300, 300, 0)
    );
    let reasons: Vec<(&str, u64)> = r
        .skipped
        .iter()
        .map(|s| (s.reason.as_str(), s.issues))
        .collect();
    assert!(
        reasons.contains(&(
            &format!("rules version {} is not stored", &stats.rules_version[..12]),
            290
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("rules version feedfacefeed is not stored", 10)),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_filters_and_stores_are_refused_with_the_field_at_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, stats) = generated(tmp.path(), 50).await;
    let city = load(Path::new(CITY));
    let invalid = |e: ReplayError| match e {
        ReplayError::Invalid { field, message } => (field, message),
        other => panic!("expected an invalid filter, got {other}"),
    };
    let f = ReplayFilter {
        category: Some("nope".into()),
        ..whole(&stats)
    };
    let (field, msg) = invalid(replay(&db, city.clone(), f, None).await.unwrap_err());
    assert_eq!(field, "category");
    assert!(msg.contains("unknown category `nope`"), "{msg}");
    let f = ReplayFilter {
        unit: Some("g-9999".into()),
        ..whole(&stats)
    };
    let (field, msg) = invalid(replay(&db, city.clone(), f, None).await.unwrap_err());
    assert_eq!(field, "unit");
    assert!(msg.contains("unknown unit `g-9999`"), "{msg}");
    let f = ReplayFilter {
        from: Some(stats.horizon),
        to: Some(stats.horizon),
        ..ReplayFilter::default()
    };
    assert_eq!(
        invalid(replay(&db, city.clone(), f, None).await.unwrap_err()).0,
        "from"
    );

    let missing = tmp.path().join("nothing.db");
    let e = replay(&missing, city.clone(), whole(&stats), None)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("no store at "), "{e}");
    assert!(!missing.exists(), "a replay creates no store");
    let not_a_store = tmp.path().join("other.db");
    execute_create(&not_a_store).await;
    let e = replay(&not_a_store, city, whole(&stats), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is not an escalade store"), "{e}");
}

async fn execute_create(db: &Path) {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(db)
                .create_if_missing(true),
        )
        .await
        .unwrap();
    sqlx::query("CREATE TABLE notes (text TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// `escalade replay` with the store at `db`.
fn binary(db: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_escalade"))
        .arg("replay")
        .args(args)
        .env("ESCALADE_DATABASE", db)
        .env_remove("ESCALADE_STATE_DIR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_by_fail_on_change_and_prints_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, stats) = generated(tmp.path(), 400).await;
    let to = stats.horizon.to_rfc3339();
    let commented = rules_dir(tmp.path(), "commented", &[COMMENT]);
    let moved = rules_dir(tmp.path(), "moved", &[MOVE_VENDORS]);
    let (c, m) = (commented.to_str().unwrap(), moved.to_str().unwrap());

    let (code, out, err) = binary(&db, &["--rules", c, "--to", &to, "--fail-on-change"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("replayed 400 of 400 issues through rules ") && out.contains(": 0 changed"),
        "{out}"
    );
    assert!(!out.contains("what differs"), "{out}");

    let (code, out, err) = binary(&db, &["--rules", m, "--to", &to]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("what differs:\n  route: "), "{out}");
    assert!(out.contains("  route: urban+market -> market\n"), "{out}");
    assert!(out.contains("  diverged at event "), "{out}");

    let (code, out, err) = binary(
        &db,
        &[
            "--rules",
            m,
            "--to",
            &to,
            "--fail-on-change",
            "--json",
            "--limit",
            "3",
        ],
    );
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let vendors = strings(&db, VENDOR_ISSUES).await.len() as u64;
    assert_eq!(v["issues"]["read"], 400);
    assert_eq!(v["issues"]["replayed"], 400);
    assert_eq!(v["issues"]["changed"], vendors);
    assert_eq!(v["candidate"].as_str().unwrap().len(), 64);
    assert_eq!(
        v["horizon"],
        stats
            .horizon
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(v["filter"]["to"], v["horizon"]);
    assert_eq!(v["recorded"][0]["version"], stats.rules_version.as_str());
    assert_eq!(v["changed"].as_array().unwrap().len(), 3);
    assert_eq!(v["changed_not_shown"], vendors - 3);
    let first = &v["changed"][0];
    for key in [
        "id",
        "category",
        "unit",
        "reported_at",
        "rules_version",
        "changes",
    ] {
        assert!(!first[key].is_null(), "{key} missing in {first}");
    }
    assert_eq!(first["category"], "street_vendors");
    assert_eq!(first["changes"][0]["kind"], "route");
    assert_eq!(
        first["changes"][0]["before"],
        serde_json::json!(["urban", "market"])
    );
    assert_eq!(first["changes"][0]["after"], serde_json::json!(["market"]));
    let route = v["summary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kind"] == "route")
        .unwrap();
    assert_eq!(route["issues"], vendors);
    assert_eq!(route["category"], "street_vendors");
    assert!(route["line"].as_str().unwrap().starts_with("route: "));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = generated(tmp.path(), 20).await;
    let city = CITY;

    let (code, _, err) = binary(&db, &["--rules", "/nonexistent/rules"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/nonexistent/rules is not a directory"),
        "{err}"
    );

    let broken = rules_dir(
        tmp.path(),
        "broken",
        &[(
            "routes.yaml",
            "    department: emergency\n",
            "    department: emergancy\n",
        )],
    );
    let (code, out, err) = binary(&db, &["--rules", broken.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("unknown department `emergancy`"), "{err}");
    assert!(err.contains("did you mean `emergency`?"), "{err}");

    let (code, _, err) = binary(&tmp.path().join("absent.db"), &["--rules", city]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no store at "), "{err}");

    let (code, _, err) = binary(&db, &["--rules", city, "--category", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--category: unknown category `nope`"), "{err}");

    let (code, _, err) = binary(&db, &["--rules", city, "--unit", "g-9999"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--unit: unknown unit `g-9999`"), "{err}");

    let (code, _, err) = binary(&db, &["--rules", city, "--from", "last tuesday"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--from"), "{err}");

    let (code, _, err) = binary(
        &db,
        &[
            "--rules",
            city,
            "--from",
            "2026-04-01T00:00:00+08:00",
            "--to",
            "2026-03-01T00:00:00+08:00",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--from: from (") && err.contains("is not before to"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_reads_while_the_daemon_runs_and_writes() {
    if !support::sqlite_only("the daemon serves a history generated into an SQLite file") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let city = RuleSet::load(CITY).unwrap();
    let o = HistoryOptions {
        issues: 2_000,
        start: chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
        days: 20,
        seed: 3,
    };
    let store = support::TestDb::new(&state);
    let db = store.sqlite_path().unwrap().to_path_buf();
    let stats = history(&city, CITY, &db, &o).await.unwrap();
    let token = support::admin_token(&store, CITY);
    let (_daemon, addr) = support::start(&store, CITY);
    let client = support::client(&token);
    let moved = rules_dir(tmp.path(), "moved", &[MOVE_VENDORS]);
    let to = stats.horizon.to_rfc3339();
    let (moved, db2) = (moved.clone(), db.clone());
    let replaying = std::thread::spawn(move || {
        binary(
            &db2,
            &[
                "--rules",
                moved.to_str().unwrap(),
                "--to",
                &to,
                "--json",
                "--limit",
                "0",
            ],
        )
    });
    // The daemon takes reports while the replay reads.
    let mut created = 0;
    while !replaying.is_finished() || created < 5 {
        let r = client
            .post(format!("http://{addr}/api/v1/issues"))
            .json(&serde_json::json!({"category": "garbage", "unit": "g-0001", "description": "垃圾"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        created += 1;
    }
    let (code, out, err) = replaying.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    // Issues reported now are after the history's horizon: the replay reads the history only.
    assert_eq!(v["issues"]["read"], 2_000);
    assert!(v["issues"]["changed"].as_u64().unwrap() > 0);
    assert!(created >= 5);
}
