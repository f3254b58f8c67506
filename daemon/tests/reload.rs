//! Reloading the rules without a restart: over HTTP (answered when finished), by SIGHUP and by
//! watching the files, through one path that never replaces good rules with broken ones,
//! refuses to strand open issues, keeps every version, and lets one daemon own a store.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use escalade::engine::{Engine, ManualClock};
use escalade_rules::RuleSet;
use serde_json::{Value, json};

mod support;

use support::{TestDb, call, client, copy_rules, edit};

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/tests/fixtures/mini");

struct Server {
    base: String,
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    admin: reqwest::Client,
    rules: std::path::PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
    db: TestDb,
    _dir: tempfile::TempDir,
}

/// The API in-process on a copy of the mini rules, which `prepare` may edit first.
async fn start(prepare: impl FnOnce(&Path)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_rules(MINI, &rules);
    prepare(&rules);
    let db = TestDb::new(dir.path());
    let now: DateTime<Utc> = "2026-03-02T02:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let engine = Arc::new(support::engine(&db, &rules, clock.clone()).await);
    let admin = client(&support::token(&engine, "admin", None).await);
    let candidates = dir.path().join("candidates");
    std::fs::create_dir_all(&candidates).unwrap();
    // Replays over the API read the store, whichever its backend.
    let steward = escalade::reload::Rules::adopt(engine.clone(), rules.clone())
        .await
        .unwrap()
        .with_candidates(Some(candidates))
        .with_database(db.database());
    let (base, stop) =
        support::serve_steward(engine.clone(), Arc::new(steward), dir.path(), 1 << 20).await;
    Server {
        base,
        engine,
        clock,
        admin,
        rules,
        _stop: stop,
        db,
        _dir: dir,
    }
}

/// A department `parks` that takes reports mentioning trees: what a later reload removes.
fn with_parks(rules: &Path) {
    edit(
        &rules.join("org.yaml"),
        "  - {id: triage, contacts: [p-triage]}",
        "  - {id: triage, contacts: [p-triage]}\n  - {id: parks, contacts: [p-urban]}",
    );
    edit(
        &rules.join("policy.yaml"),
        "routes:\n",
        "routes:\n  - name: trees\n    when: {text_any: [tree]}\n    department: parks\n",
    );
}

fn without_parks(rules: &Path) {
    edit(
        &rules.join("org.yaml"),
        "\n  - {id: parks, contacts: [p-urban]}",
        "",
    );
    edit(
        &rules.join("policy.yaml"),
        "  - name: trees\n    when: {text_any: [tree]}\n    department: parks\n",
        "",
    );
}

/// Misspells a department in the route `fights`: an error at policy.yaml:49:17.
fn misspell(rules: &Path) {
    edit(
        &rules.join("policy.yaml"),
        "    department: police\n",
        "    department: polise\n",
    );
}

/// The acknowledge deadline of normal priority, changed from 2h to `hours`: a new version.
fn acknowledge_in(rules: &Path, hours: u32) {
    edit(
        &rules.join("policy.yaml"),
        "normal: {acknowledge: 2h,",
        &format!("normal: {{acknowledge: {hours}h,"),
    );
}

async fn reload(s: &Server) -> (u16, Value) {
    call(s.admin.post(format!("{}/api/v1/rules/reload", s.base))).await
}

async fn submit(s: &Server, description: &str) -> String {
    let (status, body) = call(
        s.admin
            .post(format!("{}/api/v1/issues", s.base))
            .json(&json!({
                "category": "garbage", "unit": "g1", "description": description, "reporter": "p-g1"
            })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_over_http_answers_when_done_and_keeps_every_version() {
    let s = start(|_| {}).await;
    let first = s.engine.rules().version.to_string();
    // Nothing changed: 200, the same version, nothing swapped.
    let (status, body) = reload(&s).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], false);
    assert_eq!(body["version"], first);
    // A deadline changed: the answer names both versions and the summary.
    acknowledge_in(&s.rules, 3);
    let (status, body) = reload(&s).await;
    assert_eq!(status, 200, "{body}");
    let second = body["version"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(body["previous_version"], first);
    assert_eq!(body["changed"], true);
    assert_eq!(body["summary"]["departments"], 3);
    assert_eq!(*s.engine.rules().version, *second);
    // The status says who loaded what, and how the last attempt went.
    let (status, body) = call(s.admin.get(format!("{}/api/v1/rules", s.base))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], second);
    assert!(
        body["loaded_by"].as_str().unwrap().starts_with("admin#"),
        "{body}"
    );
    assert_eq!(body["dir"], s.rules.display().to_string());
    assert_eq!(body["last_attempt"]["outcome"], "loaded");
    // Both versions are kept, newest first, and the first loads back from the store as it was.
    let (status, body) = call(s.admin.get(format!("{}/api/v1/rules/versions", s.base))).await;
    assert_eq!(status, 200, "{body}");
    let versions: Vec<&str> = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [second.as_str(), first.as_str()]);
    let (full, files) = s
        .engine
        .store()
        .rule_version_files(&first[..12])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(full, first);
    assert_eq!(*RuleSet::load_files(&files).unwrap().version, *first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_rules_are_refused_with_diagnostics_and_the_old_rules_stay_live() {
    let s = start(|_| {}).await;
    let live = s.engine.rules().version.to_string();
    misspell(&s.rules);
    let (status, body) = reload(&s).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_rules");
    let d = &body["error"]["diagnostics"][0];
    assert_eq!(d["file"], "policy.yaml", "{body}");
    assert!(d["line"].as_u64().unwrap() > 1, "{body}");
    assert!(d["column"].as_u64().unwrap() > 1, "{body}");
    assert!(d["message"].as_str().unwrap().contains("polise"), "{body}");
    assert_eq!(d["help"], "did you mean `police`?", "{body}");
    assert_eq!(*s.engine.rules().version, *live);
    let (_, body) = call(s.admin.get(format!("{}/api/v1/rules", s.base))).await;
    assert_eq!(body["version"], live);
    assert_eq!(body["last_attempt"]["outcome"], "invalid");
    assert_eq!(
        body["last_attempt"]["diagnostics"][0]["file"],
        "policy.yaml"
    );
    // An issue submitted now is decided by the old rules.
    let id = submit(&s, "bins").await;
    let t = s.engine.store().timeline(&id).await.unwrap();
    assert_eq!(t[0].rules_version, live);
    // Only admins reload.
    let dept = client(&support::token(&s.engine, "department", Some("urban")).await);
    let (status, body) = call(dept.post(format!("{}/api/v1/rules/reload", s.base))).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(dept.get(format!("{}/api/v1/rules/versions", s.base))).await;
    assert_eq!(status, 403);
    // A bad query is named.
    let (status, body) = call(
        s.admin
            .post(format!("{}/api/v1/rules/reload?force=maybe", s.base)),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_that_remove_what_open_issues_use_are_refused_unless_forced() {
    let s = start(with_parks).await;
    let trees: Vec<String> = [
        submit(&s, "a fallen tree").await,
        submit(&s, "tree on the road").await,
    ]
    .into();
    let bins = submit(&s, "bins").await;
    let live = s.engine.rules().version.to_string();
    without_parks(&s.rules);
    let (status, body) = reload(&s).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "rules_in_use");
    let expected = format!(
        "department parks is removed but open issues use it: {} (2)",
        trees.join(", ")
    );
    assert_eq!(body["error"]["in_use"][0]["message"], expected, "{body}");
    assert_eq!(body["error"]["in_use"][0]["count"], 2);
    assert_eq!(*s.engine.rules().version, *live);
    // Forced: live, and each issue that used the department goes to triage with the reason.
    let (status, body) = call(
        s.admin
            .post(format!("{}/api/v1/rules/reload?force=true", s.base)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sent_to_triage"], json!(trees));
    assert_ne!(*s.engine.rules().version, *live);
    for id in &trees {
        let stored = s.engine.store().issue(id).await.unwrap().unwrap();
        assert_eq!(stored.state.departments, ["triage"], "issue {id}");
        assert!(stored.state.triage);
        let t = s.engine.store().timeline(id).await.unwrap();
        let last = t.last().unwrap();
        assert_eq!(last.kind, "sent_to_triage");
        assert_eq!(last.actor, "rules-reload");
        assert!(
            last.payload["reason"]
                .as_str()
                .unwrap()
                .starts_with("department parks removed by rules version"),
            "{:?}",
            last.payload
        );
        assert_eq!(last.rules_version, *s.engine.rules().version);
    }
    // The issue that used nothing removed is untouched.
    let t = s.engine.store().timeline(&bins).await.unwrap();
    assert_eq!(t.len(), 1);
    // The triage department was told, on the new rules' triage template.
    let out = s.engine.store().outbox(1000).await.unwrap();
    assert!(
        out.iter()
            .any(|m| m.issue_id.as_deref() == Some(trees[0].as_str())
                && m.person == "p-triage"
                && m.kind == "triage"),
        "{out:?}"
    );
    // A daemon's own event cannot be posted.
    let (status, body) = call(
        s.admin
            .post(format!("{}/api/v1/issues/{bins}/events", s.base))
            .json(&json!({"event": "sent_to_triage", "reason": "x"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
}

/// What open issues keep across a reload: their departments and the deadlines already
/// promised; what follows is decided by the new rules (the next ladder step from the new
/// ladder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_issues_keep_their_deadlines_and_climb_the_new_ladder() {
    let s = start(|_| {}).await;
    let id = submit(&s, "bins").await;
    let before = s.engine.store().issue(&id).await.unwrap().unwrap();
    let promised = before.state.acknowledge_by.unwrap();
    // The new rules acknowledge in 4h instead of 2h, and their first ladder step raises the
    // tier instead of reminding.
    acknowledge_in(&s.rules, 4);
    edit(
        &s.rules.join("policy.yaml"),
        "      - on: acknowledge_overdue\n        actions: [{remind: departments}, {extend: 1h}]",
        "      - on: acknowledge_overdue\n        actions: [{raise: next}, {extend: 1h}]",
    );
    let (status, body) = reload(&s).await;
    assert_eq!(status, 200, "{body}");
    let after = s.engine.store().issue(&id).await.unwrap().unwrap();
    assert_eq!(after.state.acknowledge_by, Some(promised));
    assert_eq!(after.state.departments, ["urban"]);
    // The promised deadline passes: the new ladder's step runs.
    s.clock.set(promised + chrono::Duration::minutes(1));
    s.engine.fire_due().await.unwrap();
    let now = s.engine.store().issue(&id).await.unwrap().unwrap();
    assert_eq!(now.state.tier.as_deref(), Some("street"), "{:?}", now.state);
    let t = s.engine.store().timeline(&id).await.unwrap();
    let passed = t.iter().find(|e| e.kind == "deadline_passed").unwrap();
    assert_eq!(passed.rules_version, *s.engine.rules().version);
    // A new issue gets the new deadline: reported at 12:01, in the lunch break, four working
    // hours from 13:00.
    let fresh = submit(&s, "more bins").await;
    let f = s.engine.store().issue(&fresh).await.unwrap().unwrap();
    assert_eq!(
        f.state.acknowledge_by,
        Some(
            "2026-03-02T17:00:00+08:00"
                .parse::<DateTime<Utc>>()
                .unwrap()
        )
    );
}

/// 16 clients submit while the rules are reloaded back and forth: no request fails, and every
/// event names one of the two versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_concurrent_submissions_fail_no_request() {
    let s = start(|_| {}).await;
    let a = s.engine.rules().version.to_string();
    let policy = s.rules.join("policy.yaml");
    let original = std::fs::read_to_string(&policy).unwrap();
    let changed = original.replace("normal: {acknowledge: 2h,", "normal: {acknowledge: 3h,");
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..16 {
        let (admin, base) = (s.admin.clone(), s.base.clone());
        clients.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let r = admin
                    .post(format!("{base}/api/v1/issues"))
                    .json(&json!({"category": "garbage", "unit": "g1",
                        "description": format!("bins {c}/{i}"), "reporter": "p-g1"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                let body: Value = r.json().await.unwrap();
                ids.push(body["id"].as_str().unwrap().to_string());
            }
            ids
        });
    }
    let mut b = None;
    for i in 0..6 {
        std::fs::write(&policy, if i % 2 == 0 { &changed } else { &original }).unwrap();
        let (status, body) = reload(&s).await;
        assert_eq!(status, 200, "{body}");
        if i == 0 {
            b = Some(body["version"].as_str().unwrap().to_string());
        }
    }
    let b = b.unwrap();
    let mut seen = std::collections::HashSet::new();
    while let Some(ids) = clients.join_next().await {
        for id in ids.unwrap() {
            let t = s.engine.store().timeline(&id).await.unwrap();
            let v = &t[0].rules_version;
            assert!(*v == a || *v == b, "issue {id}: version {v}");
            // The deadline is the one of the version that decided it, never the other's:
            // reported at 10:00, two working hours (12:00) or three (14:00, after lunch).
            let st = s.engine.store().issue(&id).await.unwrap().unwrap();
            let by = if *v == a { "12:00" } else { "14:00" };
            let expected: DateTime<Utc> = format!("2026-03-02T{by}:00+08:00").parse().unwrap();
            assert_eq!(st.state.acknowledge_by, Some(expected), "issue {id}");
            seen.insert(v.clone());
        }
    }
    assert_eq!(seen.len(), 2, "both versions decided submissions");
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_rules(c: &reqwest::Client, base: &str) -> Value {
    let (status, body) = call(c.get(format!("http://{base}/api/v1/rules"))).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// SIGHUP reloads; a broken directory logs its diagnostics and the daemon serves on with the
/// old rules; a second daemon on the same store refuses to start and names the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_failed_one_never_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_rules(MINI, &rules);
    let db = TestDb::new(&dir.path().join("state"));
    let r = rules.to_str().unwrap();
    let admin = client(&support::admin_token(&db, r));
    let (daemon, base) = support::start(&db, r);
    let pid = daemon.0.id().to_string();
    let first = get_rules(&admin, &base).await["version"]
        .as_str()
        .unwrap()
        .to_string();
    misspell(&rules);
    let hup = || {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    hup();
    wait_for("the failed reload", || async {
        get_rules(&admin, &base).await["last_attempt"]["outcome"] == "invalid"
    })
    .await;
    let st = get_rules(&admin, &base).await;
    assert_eq!(st["version"], first.as_str());
    assert_eq!(st["last_attempt"]["by"], "signal");
    assert_eq!(st["last_attempt"]["diagnostics"][0]["file"], "policy.yaml");
    // A second daemon on the same SQLite store is refused, naming the first (on PostgreSQL a
    // second daemon is a replica: `replicas.rs`).
    if db.sqlite_path().is_some() {
        let second = db
            .command()
            .args(["run", "--rules", MINI])
            .env("ESCALADE_LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        assert_eq!(second.status.code(), Some(2));
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(
            err.contains(&format!("another escalade (pid {pid}) owns the store")),
            "{err}"
        );
    }
    // Fixed: the next SIGHUP puts it live.
    edit(
        &rules.join("policy.yaml"),
        "    department: polise\n",
        "    department: police\n",
    );
    acknowledge_in(&rules, 3);
    hup();
    wait_for("the good reload", || async {
        get_rules(&admin, &base).await["last_attempt"]["outcome"] == "loaded"
    })
    .await;
    assert_ne!(get_rules(&admin, &base).await["version"], first.as_str());
    drop(daemon);
}

/// With `rules_watch`, saving a file reloads the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_rule_directory_reloads_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_rules(MINI, &rules);
    let db = TestDb::new(&dir.path().join("state"));
    let r = rules.to_str().unwrap();
    let admin = client(&support::admin_token(&db, r));
    // Shadow rules from the configuration too: the same rules, so they never differ.
    let mut command = Command::new(env!("CARGO_BIN_EXE_escalade"));
    command
        .env("ESCALADE_RULES_WATCH", "true")
        .env("ESCALADE_SHADOW_RULES", MINI);
    let (daemon, base) = support::start_with(&db, r, command, &[]);
    let first = get_rules(&admin, &base).await["version"]
        .as_str()
        .unwrap()
        .to_string();
    acknowledge_in(&rules, 3);
    wait_for("the watched reload", || async {
        get_rules(&admin, &base).await["version"] != first.as_str()
    })
    .await;
    let (status, _) = call(
        admin
            .post(format!("http://{base}/api/v1/issues"))
            .json(&json!({
                "category": "garbage", "unit": "g1", "description": "bins", "reporter": "p-g1"
            })),
    )
    .await;
    assert_eq!(status, 201);
    wait_for("the shadow to compare", || async {
        let (_, body) = call(admin.get(format!("http://{base}/api/v1/rules/shadow"))).await;
        body["active"] == true && body["summary"]["compared"] == 1
    })
    .await;
    assert_eq!(
        get_rules(&admin, &base).await["last_attempt"]["by"],
        "watch"
    );
    drop(daemon);
}

/// `explain` decides every event again with the version that decided it, across reloads, and
/// finds a stored decision that the rules did not make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_redecides_each_event_with_its_own_version() {
    if !support::sqlite_only("rewrites stored decisions in the SQLite file with its JSON functions")
    {
        return;
    }
    let s = start(|_| {}).await;
    let id = submit(&s, "bins").await;
    let old = s.engine.rules().version.to_string();
    acknowledge_in(&s.rules, 3);
    let (status, _) = reload(&s).await;
    assert_eq!(status, 200);
    let new = s.engine.rules().version.to_string();
    let (status, _) = call(
        s.admin
            .post(format!("{}/api/v1/issues/{id}/events", s.base))
            .json(&json!({"event": "acknowledged"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, x) = call(
        s.admin
            .get(format!("{}/api/v1/issues/{id}/explain", s.base)),
    )
    .await;
    assert_eq!(status, 200, "{x}");
    assert_eq!(x["all_match"], true, "{x:#}");
    let events = x["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["rules_version"], old);
    assert_eq!(events[1]["rules_version"], new);
    assert!(
        events[0]["trace"][0].as_str().unwrap().contains("urban"),
        "{x:#}"
    );
    let db = s.db.sqlite_path().unwrap();
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        db.display()
    ))
    .await
    .unwrap();
    // Decisions stored before they carried their effects and their messages' departments
    // still match: those parts are not compared when the stored decision lacks them.
    sqlx::query(
        "UPDATE events SET decision = json_remove(decision, '$.effects', '$.messages[0].vars.department') WHERE issue_id = ?",
    )
    .bind(&id)
    .execute(&mut conn)
    .await
    .unwrap();
    let (_, x) = call(
        s.admin
            .get(format!("{}/api/v1/issues/{id}/explain", s.base)),
    )
    .await;
    assert_eq!(x["all_match"], true, "{x:#}");
    // Any other part missing is a difference.
    sqlx::query(
        "UPDATE events SET decision = json_remove(decision, '$.timers') WHERE issue_id = ? AND kind = 'reported'",
    )
    .bind(&id)
    .execute(&mut conn)
    .await
    .unwrap();
    let (_, x) = call(
        s.admin
            .get(format!("{}/api/v1/issues/{id}/explain", s.base)),
    )
    .await;
    assert_eq!(x["events"][0]["differences"], json!(["/timers"]), "{x:#}");
    sqlx::query(
        "UPDATE events SET decision = json_set(decision, '$.timers', json(?)) WHERE issue_id = ? AND kind = 'reported'",
    )
    .bind(x["events"][0]["decision"]["timers"].to_string())
    .bind(&id)
    .execute(&mut conn)
    .await
    .unwrap();
    // A stored decision the rules did not make is found, and where.
    sqlx::query(
        "UPDATE events SET decision = json_set(decision, '$.next.departments[0]', 'police') WHERE issue_id = ? AND kind = 'reported'",
    )
    .bind(&id)
    .execute(&mut conn)
    .await
    .unwrap();
    let (_, x) = call(
        s.admin
            .get(format!("{}/api/v1/issues/{id}/explain", s.base)),
    )
    .await;
    assert_eq!(x["all_match"], false);
    assert_eq!(x["events"][0]["matches"], false);
    assert_eq!(
        x["events"][0]["differences"],
        json!(["/next/departments/0"]),
        "{x:#}"
    );
    // Unknown issue, and not an admin.
    let (status, _) = call(s.admin.get(format!("{}/api/v1/issues/999/explain", s.base))).await;
    assert_eq!(status, 404);
    let dept = client(&support::token(&s.engine, "department", Some("urban")).await);
    let (status, _) = call(dept.get(format!("{}/api/v1/issues/{id}/explain", s.base))).await;
    assert_eq!(status, 403);
}

/// Shadow rules decide every live event beside the live rules with no effect, and their
/// differences are summarised by kind with example issues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_rules_decide_beside_the_live_ones_with_no_effect() {
    let s = start(|_| {}).await;
    let candidates = s._dir.path().join("candidates");
    // The candidate sends garbage to the police.
    copy_rules(MINI, &candidates.join("police"));
    edit(
        &candidates.join("police/policy.yaml"),
        "  - code: garbage\n    names: {zh: 垃圾, en: Garbage}\n    department: urban",
        "  - code: garbage\n    names: {zh: 垃圾, en: Garbage}\n    department: police",
    );
    // A broken candidate, and paths that are not candidates.
    copy_rules(MINI, &candidates.join("broken"));
    edit(
        &candidates.join("broken/policy.yaml"),
        "    department: police\n",
        "    department: polise\n",
    );
    let url = format!("{}/api/v1/rules/shadow", s.base);
    for (dir, code) in [
        ("../rules", "invalid"),
        ("nowhere", "invalid"),
        ("/etc", "invalid"),
        ("broken", "invalid_rules"),
    ] {
        let (status, body) = call(s.admin.put(&url).json(&json!({ "dir": dir }))).await;
        assert_eq!(status, 422, "{dir}: {body}");
        assert_eq!(body["error"]["code"], code, "{dir}: {body}");
        assert_eq!(body["error"]["field"], "dir", "{dir}: {body}");
    }
    let (_, body) = call(s.admin.get(&url)).await;
    assert_eq!(body["active"], false);
    let (status, body) = call(s.admin.put(&url).json(&json!({"dir": "police"}))).await;
    assert_eq!(status, 200, "{body}");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(submit(&s, &format!("bins {i}")).await);
    }
    let (status, _) = call(
        s.admin
            .post(format!("{}/api/v1/issues/{}/events", s.base, ids[0]))
            .json(&json!({"event": "acknowledged"})),
    )
    .await;
    assert_eq!(status, 200);
    wait_for("the shadow to decide", || async {
        call(s.admin.get(&url)).await.1["summary"]["compared"] == 4
    })
    .await;
    let (_, body) = call(s.admin.get(&url)).await;
    assert_eq!(body["active"], true);
    let summary = &body["summary"];
    assert_eq!(summary["differing"], 3, "{body:#}");
    let route = summary["by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "route")
        .unwrap_or_else(|| panic!("{body:#}"));
    assert_eq!(route["count"], 3);
    assert_eq!(route["examples"], json!(ids));
    assert_eq!(
        summary["recent"][0]["shadow"]["departments"],
        json!(["police"])
    );
    assert_eq!(
        summary["recent"][0]["live"]["departments"],
        json!(["urban"])
    );
    // No effect: the issues stay with urban, and nobody at the police was told.
    for id in &ids {
        let st = s.engine.store().issue(id).await.unwrap().unwrap();
        assert_eq!(st.state.departments, ["urban"]);
    }
    let out = s.engine.store().outbox(1000).await.unwrap();
    assert!(out.iter().all(|m| m.person != "p-police"), "{out:?}");
    // The same candidate replayed over the API shows the same three issues rerouted.
    let (status, body) = call(
        s.admin
            .post(format!("{}/api/v1/rules/replay", s.base))
            .json(&json!({"dir": "police"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issues"]["read"], 3, "{body:#}");
    assert_eq!(body["issues"]["changed"], 3, "{body:#}");
    let (status, body) = call(
        s.admin
            .post(format!("{}/api/v1/rules/replay", s.base))
            .json(&json!({"dir": "../rules"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "dir");
    // Stopped: the summary stays, and the command line reads the same from the store.
    let (status, body) = call(s.admin.delete(&url)).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(s.admin.get(&url)).await;
    assert_eq!(body["active"], false);
    assert!(body["summary"]["stopped_at"].is_string(), "{body}");
    let out = support::escalade_in(&s.db, &[], &["rules", "shadow"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("4 events compared, 3 decided differently, 0 dropped"),
        "{text}"
    );
    assert!(
        text.contains(&format!("route: 3 events (issues {})", ids.join(", "))),
        "{text}"
    );
}

/// `escalade rules versions` lists what went live; `rules show` writes a version back out,
/// which loads into the same version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_version_is_listed_and_written_back_out() {
    let s = start(|_| {}).await;
    let first = s.engine.rules().version.to_string();
    acknowledge_in(&s.rules, 3);
    let (status, _) = reload(&s).await;
    assert_eq!(status, 200);
    let cli = |args: &[&str]| support::escalade_in(&s.db, &[], args);
    let out = cli(&["rules", "versions"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[2].starts_with(&first), "{text}");
    assert!(lines[1].contains("admin#"), "{text}");
    let back = s._dir.path().join("back");
    let out = cli(&[
        "rules",
        "show",
        &first[..10],
        "--out",
        back.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(*RuleSet::load(&back).unwrap().version, *first);
    // Refusals: a directory with files, an unknown version.
    let out = cli(&[
        "rules",
        "show",
        &first[..10],
        "--out",
        back.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an empty directory"));
    let out = cli(&["rules", "show", "ffffffff", "--out", "/tmp/escalade-never"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rule version `ffffffff`"));
}

/// A hook stopped by the wall clock is not a routing outcome: the request answers 503 and
/// nothing is stored, where an operation limit would have sent the issue to triage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_stopped_by_the_wall_clock_answers_503_and_stores_nothing() {
    let s = start(|rules| {
        edit(
            &rules.join("policy.yaml"),
            "  ladder: standard\n",
            "  ladder: standard\n  hook_limits: {max_operations: 1000000000000000, timeout_ms: 1}\n",
        )
    })
    .await;
    let (status, body) = call(
        s.admin
            .post(format!("{}/api/v1/issues", s.base))
            .json(&json!({
                "category": "spin", "unit": "g1", "description": "loops", "reporter": "p-g1"
            })),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wall-clock"),
        "{body}"
    );
    let listed = s
        .engine
        .store()
        .list(&escalade::store::IssueFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.is_empty());
}

/// At start-up, rules that no longer know what open issues use are refused, naming them; with
/// `--force-rules` the daemon starts and those issues go to triage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_rules_removing_what_open_issues_use_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_rules(MINI, &rules);
    with_parks(&rules);
    let db = TestDb::new(&dir.path().join("state"));
    let r = rules.to_str().unwrap();
    let admin = client(&support::admin_token(&db, r));
    let (daemon, base) = support::start(&db, r);
    let (status, body) = call(admin.post(format!("http://{base}/api/v1/issues")).json(&json!({
        "category": "garbage", "unit": "g1", "description": "a fallen tree", "reporter": "p-g1"
    })))
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    drop(daemon);
    without_parks(&rules);
    let refused = db
        .command()
        .args(["run", "--rules", r])
        .env("ESCALADE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!(
            "department parks is removed but open issues use it: {id} (1)"
        )) && err.contains("--force-rules"),
        "{err}"
    );
    let (daemon, base) = support::start_with(
        &db,
        r,
        Command::new(env!("CARGO_BIN_EXE_escalade")),
        &["--force-rules"],
    );
    let (status, body) = call(admin.get(format!("http://{base}/api/v1/issues/{id}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["departments"], json!(["triage"]), "{body}");
    let timeline = body["timeline"].as_array().unwrap();
    assert_eq!(timeline.last().unwrap()["kind"], "sent_to_triage");
    drop(daemon);
}
