//! The HTTP API in-process on port 0 against a real store (SQLite or PostgreSQL, as the run
//! chooses), and the real binary spawned, serving, and stopping on SIGTERM.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use escalade::engine::{Engine, ManualClock};
use serde_json::{Value, json};

mod support;

use escalade::auth::{Grant, Role};
use support::{TestDb, client, token};

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/tests/fixtures/mini");

struct Server {
    base: String,
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    /// An admin token.
    admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    db: TestDb,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(max_body: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let now: DateTime<Utc> = "2026-03-02T02:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let engine = Arc::new(support::engine(&db, MINI, clock.clone()).await);
    let admin = token(&engine, "admin", None).await;
    let (base, stop) = support::serve_api(engine.clone(), MINI, dir.path(), max_body).await;
    Server {
        base,
        engine,
        clock,
        admin,
        stop: Some(stop),
        db,
        _dir: dir,
    }
}

fn garbage() -> Value {
    json!({"category": "garbage", "unit": "g1", "description": "bins overflowing", "reporter": "p-g1"})
}

/// Posts `body` as JSON, written as the test wrote it (malformed, say).
async fn post(c: &reqwest::Client, url: &str, body: &str) -> (u16, Value) {
    support::call(
        c.post(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

/// A token revoked by another process (`escalade token revoke` on the same database) stops
/// working within the token cache's lifetime.
#[tokio::test]
async fn a_token_revoked_elsewhere_stops_working_within_a_second() {
    let s = start(1 << 20).await;
    let (tid, token) = support::granted(&s.engine, &Grant::unowned(Role::Admin, None)).await;
    let list = format!("{}/api/v1/issues", s.base);
    let c = client(&token);
    assert_eq!(c.get(&list).send().await.unwrap().status(), 200);
    let other = s.db.open(Default::default()).await;
    assert!(other.revoke_token(tid, Utc::now()).await.unwrap());
    other.close().await;
    tokio::time::sleep(escalade::store::TOKEN_CACHE_TTL + Duration::from_millis(100)).await;
    let r = c.get(&list).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_token"
    );
}

#[tokio::test]
async fn submit_read_and_act_through_the_api() {
    let s = start(1 << 20).await;
    let c = client(&s.admin);
    let (status, body) = post(
        &c,
        &format!("{}/api/v1/issues", s.base),
        &garbage().to_string(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["state"]["departments"], json!(["urban"]));

    let (status, body) = post(
        &c,
        &format!("{}/api/v1/issues/{id}/events", s.base),
        r#"{"event": "acknowledged"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["state"], "acknowledged");

    // An action the state forbids: 409, naming the state and the allowed actions.
    let (status, body) = post(
        &c,
        &format!("{}/api/v1/issues/{id}/events", s.base),
        r#"{"event": "confirmed"}"#,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_allowed");
    assert_eq!(body["error"]["state"], "acknowledged");
    assert!(
        body["error"]["allowed"]
            .as_array()
            .unwrap()
            .contains(&json!("progress"))
    );

    let r = c
        .get(format!("{}/api/v1/issues/{id}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let kinds: Vec<&str> = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reported", "acknowledged"]);
    assert_eq!(body["timeline"][1]["actor"], "admin#1");

    let r = c
        .get(format!("{}/api/v1/outbox", s.base))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["person"] == "p-urban")
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let s = start(4096).await;
    let c = client(&s.admin);
    let issues = format!("{}/api/v1/issues", s.base);
    let cases: Vec<(String, u16, &str, Option<&str>)> = vec![
        (
            "{\"category\": \"garbage\",".into(),
            400,
            "malformed_json",
            None,
        ),
        (
            json!({"category": "garbage", "unit": "g1"}).to_string(),
            422,
            "invalid",
            None,
        ),
        (
            json!({"category": "nope", "unit": "g1", "description": "x"}).to_string(),
            422,
            "invalid",
            Some("category"),
        ),
        (
            json!({"category": "garbage", "unit": "g9", "description": "x"}).to_string(),
            422,
            "invalid",
            Some("unit"),
        ),
        (
            json!({"category": "garbage", "unit": "g1", "description": "x", "colour": "red"})
                .to_string(),
            422,
            "invalid",
            None,
        ),
        (
            json!({"category": "garbage", "unit": "g1", "description": "x".repeat(5000)})
                .to_string(),
            413,
            "body_too_large",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let (got, answer) = post(&c, &issues, &body).await;
        assert_eq!(got, status, "{body:.80}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        if let Some(f) = field {
            assert_eq!(answer["error"]["field"], f, "{answer}");
        }
    }
    // Nothing was stored (refused reports may use up an id, never store one).
    for id in 1..=6 {
        let r = c
            .get(format!("{}/api/v1/issues/{id}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = c
        .get(format!("{}/api/v1/outbox", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["messages"], json!([]));
    let (status, body) = post(&c, &issues, &garbage().to_string()).await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().unwrap().to_string();
    let (status, body) = post(
        &c,
        &format!("{}/api/v1/issues/{id}/events", s.base),
        r#"{"event": "deadline_passed", "deadline": "resolve"}"#,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid"))
    );
    // A progress note that says nothing is refused, naming the field; the issue is unchanged.
    let events = format!("{}/api/v1/issues/{id}/events", s.base);
    assert_eq!(
        post(&c, &events, r#"{"event": "acknowledged"}"#).await.0,
        200
    );
    for body in [
        r#"{"event": "progress"}"#,
        r#"{"event": "progress", "note": " "}"#,
    ] {
        let (status, answer) = post(&c, &events, body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], "note", "{answer}");
    }
    let st = s.engine.store().issue(&id).await.unwrap().unwrap();
    assert_eq!(st.state.state, escalade_rules::State::Acknowledged);
    let r = c
        .get(format!("{}/api/v1/issues/77", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_answer_or_refuses_another_body() {
    let s = start(1 << 20).await;
    let c = client(&s.admin);
    let url = format!("{}/api/v1/issues", s.base);
    let send = |body: String| {
        c.post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", "k-1")
            .body(body)
            .send()
    };
    let first: Value = send(garbage().to_string())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again = send(garbage().to_string()).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let other = send(json!({"category": "noise", "unit": "g1", "description": "x"}).to_string())
        .await
        .unwrap();
    assert_eq!(other.status(), 422);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
}

#[test]
fn the_binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let admin = support::admin_token(&db, MINI);
    let (mut daemon, addr) = support::start(&db, MINI);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client(&admin);
        let r = c.get(format!("http://{addr}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (status, _) = post(
            &c,
            &format!("http://{addr}/api/v1/issues"),
            &garbage().to_string(),
        )
        .await;
        assert_eq!(status, 201);
    });
    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // On SQLite, the store is the binary's default: a file in its state directory.
    if db.sqlite_path().is_some() {
        assert!(dir.path().join("escalade.sqlite").exists());
    }
}

#[tokio::test]
async fn tokens_roles_and_scopes() {
    let s = start(1 << 20).await;
    let issues = format!("{}/api/v1/issues", s.base);
    let admin = client(&s.admin);
    let (status, body) = post(&admin, &issues, &garbage().to_string()).await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().unwrap().to_string();
    let events = format!("{}/api/v1/issues/{id}/events", s.base);

    // Missing, malformed, unknown and revoked tokens: 401, nothing changes.
    let r = reqwest::Client::new()
        .post(&issues)
        .json(&garbage())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "missing_token"
    );
    let (status, body) = post(&client("esc_nope"), &issues, &garbage().to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let (tid, revoked) = support::granted(&s.engine, &Grant::unowned(Role::Admin, None)).await;
    // Used once, so the token is in the daemon's cache when it is revoked.
    let r = client(&revoked)
        .get(format!("{}/api/v1/issues", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        s.engine
            .store()
            .revoke_token(tid, Utc::now())
            .await
            .unwrap()
    );
    let (status, body) = post(&client(&revoked), &issues, &garbage().to_string()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );

    // A reporter scoped to grid g2 may not report in g1, nor see its issues.
    let g2 = client(&token(&s.engine, "reporter", Some("g2")).await);
    let (status, body) = post(&g2, &issues, &garbage().to_string()).await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["field"].as_str()
        ),
        (403, Some("forbidden"), Some("unit"))
    );
    let r = g2
        .get(format!("{}/api/v1/issues/{id}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The police department may not touch urban management's issue; urban management may.
    let police = client(&token(&s.engine, "department", Some("police")).await);
    let (status, _) = post(&police, &events, r#"{"event": "acknowledged"}"#).await;
    assert_eq!(status, 403);
    let urban = client(&token(&s.engine, "department", Some("urban")).await);
    let (status, body) = post(&urban, &events, r#"{"event": "acknowledged"}"#).await;
    assert_eq!(status, 200, "{body}");
    // A department may not confirm its own fix: that is the reporter's.
    let (status, _) = post(&urban, &events, r#"{"event": "resolved"}"#).await;
    assert_eq!(status, 200);
    let (status, _) = post(&urban, &events, r#"{"event": "confirmed"}"#).await;
    assert_eq!(status, 403);
    // The reporter of street s1 (which holds g1) confirms.
    let s1 = client(&token(&s.engine, "reporter", Some("s1")).await);
    let (status, body) = post(&s1, &events, r#"{"event": "confirmed"}"#).await;
    assert_eq!(status, 200, "{body}");
    // Every event records its actor.
    let t: Value = admin
        .get(format!("{}/api/v1/issues/{id}", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actors: Vec<&str> = t["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    // The admin reported on p-g1's behalf.
    assert_eq!(actors[0], "admin#1 on behalf of p-g1");
    assert!(actors[1].starts_with("department:urban#"), "{actors:?}");
    assert!(actors[3].starts_with("reporter:s1#"), "{actors:?}");
    // Only an admin reads the outbox.
    assert_eq!(
        urban
            .get(format!("{}/api/v1/outbox", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn lists_queues_and_overdue_boards_with_cursors_and_scopes() {
    let s = start(1 << 20).await;
    let admin = client(&s.admin);
    let issues = format!("{}/api/v1/issues", s.base);
    // Three garbage issues in g1, two in g2 (both grids of street s1), one fight (police + urban).
    for unit in ["g1", "g1", "g1", "g2", "g2"] {
        let body = json!({"category": "garbage", "unit": unit, "description": "bins"});
        assert_eq!(post(&admin, &issues, &body.to_string()).await.0, 201);
    }
    let fight = json!({"category": "garbage", "unit": "g2", "description": "a fight"});
    assert_eq!(post(&admin, &issues, &fight.to_string()).await.0, 201);

    let get = |c: &reqwest::Client, url: String| {
        let c = c.clone();
        async move {
            let r = c.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["issues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = get(&admin, issues.clone()).await;
    assert_eq!(ids(&all), ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(all["next_cursor"], Value::Null);
    // Pages of two, each continuing after the last.
    let (_, p1) = get(&admin, format!("{issues}?limit=2")).await;
    assert_eq!(ids(&p1), ["1", "2"]);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = get(&admin, format!("{issues}?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&p2), ["3", "4"]);
    // Filters: unit subtree, co-assigned department.
    let (_, g2) = get(&admin, format!("{issues}?unit=g2")).await;
    assert_eq!(ids(&g2), ["4", "5", "6"]);
    let (_, police) = get(&admin, format!("{issues}?department=police")).await;
    assert_eq!(ids(&police), ["6"]);
    // A reporter of g2 sees only g2; asking for g1 is forbidden.
    let rep = client(&token(&s.engine, "reporter", Some("g2")).await);
    let (_, mine) = get(&rep, issues.clone()).await;
    assert_eq!(ids(&mine), ["4", "5", "6"]);
    assert_eq!(get(&rep, format!("{issues}?unit=g1")).await.0, 403);
    // The police department's queue holds only its issue.
    let police = client(&token(&s.engine, "department", Some("police")).await);
    let (status, q) = get(
        &police,
        format!("{}/api/v1/departments/police/queue", s.base),
    )
    .await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(ids(&q), ["6"]);
    assert_eq!(
        get(
            &police,
            format!("{}/api/v1/departments/urban/queue", s.base)
        )
        .await
        .0,
        403
    );
    // Nothing is overdue yet; after the acknowledge deadlines (Mon 12:00) everything open is.
    let board = format!("{}/api/v1/units/s1/overdue", s.base);
    assert_eq!(ids(&get(&admin, board.clone()).await.1).len(), 0);
    let r = admin
        .post(format!("{issues}/1/events"))
        .json(&json!({"event": "acknowledged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.clock.set("2026-03-02T05:00:00Z".parse().unwrap());
    assert_eq!(ids(&get(&admin, board).await.1), ["2", "3", "4", "5", "6"]);
    // A department's queue is ordered by the nearest deadline: issue 1, acknowledged, now waits
    // only for its resolve deadline, the others for their acknowledgement (due first). Pages of
    // two continue in that order; `order=reported` gives report order.
    let urban_queue = format!("{}/api/v1/departments/urban/queue", s.base);
    let (status, q) = get(&admin, urban_queue.clone()).await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(ids(&q), ["2", "3", "4", "5", "6", "1"]);
    let mut paged = Vec::new();
    let mut url = format!("{urban_queue}?limit=2");
    loop {
        let (_, page) = get(&admin, url.clone()).await;
        paged.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{urban_queue}?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, ["2", "3", "4", "5", "6", "1"]);
    let (_, q) = get(&admin, format!("{urban_queue}?order=reported")).await;
    assert_eq!(ids(&q), ["1", "2", "3", "4", "5", "6"]);
    let (status, e) = get(&admin, format!("{urban_queue}?order=random")).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("order")));
    // Bad queries: 400 naming the parameter.
    let (status, e) = get(&admin, format!("{issues}?state=lost")).await;
    assert_eq!((status, e["error"]["field"].as_str()), (400, Some("state")));
    let (status, e) = get(&admin, format!("{issues}?cursor=zzz")).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("cursor"))
    );
    let (status, _) = get(&admin, format!("{issues}?colour=red")).await;
    assert_eq!(status, 400);
    // Unknown departments and tiers are named, not answered with an empty list.
    let (status, e) = get(&admin, format!("{issues}?department=parks")).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("department")),
        "{e}"
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("parks"));
    let (status, e) = get(&admin, format!("{issues}?tier=province")).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (400, Some("tier")),
        "{e}"
    );
    // Every issue has a tier from its report: the grid's, until the ladder raises it.
    let (status, grid) = get(&admin, format!("{issues}?tier=grid")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&grid), ["1", "2", "3", "4", "5", "6"]);
    let (status, street) = get(&admin, format!("{issues}?tier=street")).await;
    assert_eq!(status, 200);
    assert!(ids(&street).is_empty());
}

/// While the ladder escalates an issue and extends its next escalation, the issue stays on the
/// overdue list and the leader's board, until it is resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalated_issue_stays_overdue_until_resolved() {
    let s = start(1 << 20).await;
    let c = client(&s.admin);
    let issues = format!("{}/api/v1/issues", s.base);
    let (status, body) = post(&c, &issues, &garbage().to_string()).await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().unwrap().to_string();
    let events = format!("{issues}/{id}/events");
    assert_eq!(
        post(&c, &events, r#"{"event": "acknowledged"}"#).await.0,
        200
    );
    let overdue = |c: reqwest::Client, url: String| async move {
        let body: Value = c.get(url).send().await.unwrap().json().await.unwrap();
        body["issues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let list = format!("{issues}?overdue=true");
    let board = format!("{}/api/v1/units/s1/overdue", s.base);
    assert!(overdue(c.clone(), list.clone()).await.is_empty());
    // The resolve deadline (Tue 10:00) passes: raised to the street, extended by a day.
    s.clock.set("2026-03-03T02:30:00Z".parse().unwrap());
    s.engine.fire_due().await.unwrap();
    let st = s.engine.store().issue(&id).await.unwrap().unwrap();
    assert_eq!(st.state.tier.as_deref(), Some("street"));
    assert!(st.state.resolve_by.unwrap() > s.engine.now());
    assert_eq!(overdue(c.clone(), list.clone()).await, vec![id.clone()]);
    assert_eq!(overdue(c.clone(), board.clone()).await, vec![id.clone()]);
    // Resolved: off the lists.
    assert_eq!(post(&c, &events, r#"{"event": "resolved"}"#).await.0, 200);
    assert!(overdue(c.clone(), list).await.is_empty());
    assert!(overdue(c, board).await.is_empty());
}
