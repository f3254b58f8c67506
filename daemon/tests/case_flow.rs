//! The case flow through the API on the example city: who may return, ask, decide, merge and
//! rate; what each step leaves in the timeline; a duplicate's reporter told when the original
//! is resolved. The rules' side of each step is covered by examples/city/tests/case_flow.yaml,
//! replayed through the API by flows.rs.

use serde_json::{Value, json};

mod support;

use support::Api;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

fn garbage(unit: &str, reporter: &str) -> Value {
    json!({"category": "garbage", "unit": unit, "description": "小区门口垃圾三天未清运", "reporter": reporter})
}

async fn submit(api: &Api, body: Value) -> String {
    let (status, b) = api.post(&api.admin, "/api/v1/issues", body).await;
    assert_eq!(status, 201, "{b}");
    b["id"].as_str().unwrap().to_string()
}

async fn issue(api: &Api, id: &str) -> Value {
    let (status, b) = api.get(&api.admin, &format!("/api/v1/issues/{id}")).await;
    assert_eq!(status, 200, "{b}");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_primary_department_returns_and_the_dispatcher_decides_the_return() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let id = submit(&api, garbage("g-0001", "p-g-0001")).await;
    let env = api.client("department", Some("environment")).await;
    let urban = api.client("department", Some("urban")).await;
    let triage = api.client("department", Some("triage")).await;
    let return_it = json!({"event": "returned", "reason": "河道保洁属水务部门"});

    // A department that does not hold the issue cannot return it; nothing changes.
    let (status, b) = api.act(&env, &id, return_it.clone()).await;
    assert_eq!(status, 403, "{b}");
    // A return must say why.
    let (status, b) = api
        .act(&urban, &id, json!({"event": "returned", "reason": " "}))
        .await;
    assert_eq!(
        (status, b["error"]["field"].as_str()),
        (422, Some("reason")),
        "{b}"
    );
    assert_eq!(
        issue(&api, &id).await["state"]["departments"],
        json!(["urban"])
    );

    api.clock.set(support::at("2026-03-03T10:30:00+08:00"));
    let (status, b) = api.act(&urban, &id, return_it.clone()).await;
    assert_eq!(status, 200, "{b}");
    let state = &issue(&api, &id).await["state"];
    assert_eq!(state["departments"], json!(["triage"]));
    assert_eq!(state["returned_by"], "urban");
    assert_eq!(state["counts"]["returns"], 1);

    // The department that returned it may not take it back by itself; the triage desk, the
    // dispatcher, assigns it to the department responsible.
    let (status, _) = api
        .act(
            &urban,
            &id,
            json!({"event": "reassigned", "department": "water"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, b) = api
        .act(
            &triage,
            &id,
            json!({"event": "reassigned", "department": "water"}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let body = issue(&api, &id).await;
    assert_eq!(body["state"]["departments"], json!(["water"]));
    let last = body["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["effects"]["return_decided"],
        json!({"department": "urban", "accepted": true}),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_is_decided_by_the_leader_the_policy_names_and_nobody_else() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let id = submit(&api, garbage("g-0001", "p-g-0001")).await;
    let urban = api.client("department", Some("urban")).await;
    let (status, _) = api.act(&urban, &id, json!({"event": "acknowledged"})).await;
    assert_eq!(status, 200);
    api.clock.set(support::at("2026-03-05T10:00:00+08:00"));
    let (status, b) = api
        .act(
            &urban,
            &id,
            json!({"event": "extension_requested", "duration": "2d", "reason": "需协调大型机械"}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    // A second request while one waits is refused.
    let (status, b) = api
        .act(
            &urban,
            &id,
            json!({"event": "extension_requested", "duration": "1d", "reason": "再申请"}),
        )
        .await;
    assert_eq!(status, 422, "{b}");

    let grant = json!({"event": "request_decided", "request": "extension", "granted": true});
    // Not the department that asked, not another street's leader, not the district below... only
    // the leader of the issue's street (case_flow.extensions.decided_by: {tier: street}) or above.
    for (role, scope) in [
        ("department", "urban"),
        ("leader", "s-renminlu"),
        ("leader", "c-001"),
    ] {
        let c = api.client(role, Some(scope)).await;
        let (status, b) = api.act(&c, &id, grant.clone()).await;
        assert_eq!(status, 403, "{role} {scope}: {b}");
    }
    assert_eq!(
        issue(&api, &id).await["state"]["request"]["kind"],
        "extension"
    );
    let street = api.client("leader", Some("s-huayuanlu")).await;
    let (status, b) = api.act(&street, &id, grant).await;
    assert_eq!(status, 200, "{b}");
    let body = issue(&api, &id).await;
    assert_eq!(body["state"]["request"], Value::Null);
    assert_eq!(body["state"]["resolve_by"], "2026-03-12T02:00:00Z");
    let last = body["timeline"].as_array().unwrap().last().unwrap().clone();
    let moved = last["effects"]["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "resolve")
        .unwrap()
        .clone();
    assert_eq!(moved["from"], "2026-03-10T02:00:00Z");
    assert_eq!(moved["to"], "2026-03-12T02:00:00Z");
    assert_eq!(
        moved["basis"],
        json!({"duration": "2d", "calendar": "cn-office", "from": "2026-03-10T02:00:00Z"}),
        "moved from the deadline promised: {moved}"
    );
    assert!(
        last["effects"]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l
                == "resolve deadline moved from 2026-03-10T10:00:00+08:00 to 2026-03-12T10:00:00+08:00 (2d of working time on cn-office from 2026-03-10T10:00:00+08:00)"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicates_reporter_is_told_when_the_original_is_resolved() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let original = submit(&api, garbage("g-0001", "p-g-0001")).await;
    let dup = submit(&api, garbage("g-0002", "p-g-0002")).await;
    let triage = api.client("department", Some("triage")).await;
    let urban = api.client("department", Some("urban")).await;

    // Bad originals change nothing.
    for (original, field_message) in [("999", "no issue 999"), (dup.as_str(), "itself")] {
        let (status, b) = api
            .act(
                &triage,
                &dup,
                json!({"event": "duplicate", "original": original}),
            )
            .await;
        assert_eq!(status, 422, "{b}");
        assert_eq!(b["error"]["field"], "original", "{b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field_message),
            "{b}"
        );
    }
    // A department that handles the issue is not its dispatcher.
    let (status, _) = api
        .act(
            &urban,
            &dup,
            json!({"event": "duplicate", "original": original}),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        issue(&api, &original).await["state"]["followers"],
        Value::Null
    );

    let (status, b) = api
        .act(
            &triage,
            &dup,
            json!({"event": "duplicate", "original": original}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let d = issue(&api, &dup).await;
    assert_eq!(d["state"]["state"], "closed");
    assert_eq!(d["state"]["duplicate_of"], original.as_str());
    assert_eq!(
        issue(&api, &original).await["state"]["followers"],
        json!(["p-g-0002"])
    );
    // Merging into a duplicate is refused: merge into its original.
    let third = submit(&api, garbage("g-0003", "p-g-0003")).await;
    let (status, b) = api
        .act(
            &triage,
            &third,
            json!({"event": "duplicate", "original": dup}),
        )
        .await;
    assert_eq!(status, 422, "{b}");

    api.act(&urban, &original, json!({"event": "acknowledged"}))
        .await;
    let (status, b) = api
        .act(
            &urban,
            &original,
            json!({"event": "resolved", "note": "已清运"}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let (_, outbox) = api.get(&api.admin, "/api/v1/outbox?limit=1000").await;
    let told: Vec<&str> = outbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["issue_id"] == original.as_str() && m["template"] == "resolved")
        .map(|m| m["person"].as_str().unwrap())
        .collect();
    assert!(told.contains(&"p-g-0001"), "{told:?}");
    assert!(told.contains(&"p-g-0002"), "{told:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_rates_a_report_as_itself_once() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let id = submit(&api, garbage("g-0001", "p-g-0001")).await;
    let urban = api.client("department", Some("urban")).await;
    let (status, b) = api
        .act(
            &urban,
            &id,
            json!({"event": "report_rated", "verdict": "valid", "department": "water"}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["field"].as_str()),
        (403, Some("department")),
        "{b}"
    );
    let (status, b) = api
        .act(
            &urban,
            &id,
            json!({"event": "report_rated", "verdict": "valid"}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let (status, b) = api
        .act(
            &urban,
            &id,
            json!({"event": "report_rated", "verdict": "invalid"}),
        )
        .await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(
        issue(&api, &id).await["state"]["report_ratings"],
        json!([{"department": "urban", "verdict": "valid"}])
    );
    // The daemon's own events are not posted.
    let (status, b) = api
        .act(
            &urban,
            &id,
            json!({"event": "followed", "person": "p-g-0002", "duplicate": "9"}),
        )
        .await;
    assert_eq!(status, 422, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_timeline_entry_says_what_its_decision_did() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let id = submit(&api, garbage("g-0001", "p-g-0001")).await;
    // Two acknowledge deadlines pass: the ladder reminds, then tells the grid's leader.
    api.advance("2026-03-03T16:00:00+08:00").await;
    api.advance("2026-03-04T09:30:00+08:00").await;
    let body = issue(&api, &id).await;
    let timeline = body["timeline"].as_array().unwrap();
    let reported = &timeline[0]["effects"];
    assert_eq!(
        reported["departments"],
        json!({"from": null, "to": ["urban"]})
    );
    assert_eq!(reported["routed"]["route"], Value::Null, "{reported}");
    assert_eq!(
        reported["state"],
        json!({"from": "reported", "to": "assigned"})
    );
    let ack = reported["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "acknowledge")
        .unwrap();
    assert_eq!(ack["to"], "2026-03-03T07:30:00Z");
    assert_eq!(
        ack["basis"],
        json!({"duration": "4h", "calendar": "cn-office", "from": "2026-03-03T02:00:00Z"})
    );
    assert!(
        reported["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l
                == "acknowledge deadline set to 2026-03-03T15:30:00+08:00 (4h of working time on cn-office from 2026-03-03T10:00:00+08:00)"),
        "{reported}"
    );
    assert!(
        reported["told"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["person"] == "p-urban-li" && t["template"] == "assigned"),
        "{reported}"
    );
    let passed: Vec<&Value> = timeline
        .iter()
        .filter(|e| e["kind"] == "deadline_passed")
        .collect();
    assert_eq!(passed.len(), 2, "{timeline:?}");
    assert_eq!(
        passed[1]["effects"]["step"],
        json!({"ladder": "standard", "step": 2, "trigger": "acknowledge_overdue", "occurrence": 2})
    );
    let lines: Vec<&str> = passed[1]["effects"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ladder `standard` step 2 ran")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("p-g-0001") && l.contains("`escalated`")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("acknowledge deadline moved from")),
        "{lines:?}"
    );
    for e in timeline {
        assert_eq!(e["rules_version"], timeline[0]["rules_version"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_carries_photos_of_the_fixed_site_where_the_policy_asks_for_them() {
    use reqwest::multipart::{Form, Part};
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let id = submit(
        &api,
        json!({"category": "road_damage", "unit": "g-0001", "description": "人行道地砖破损", "reporter": "p-g-0001"}),
    )
    .await;
    let transport = api.client("department", Some("transport")).await;
    api.act(&transport, &id, json!({"event": "acknowledged"}))
        .await;
    let photos_dir = api.dir.path().join("photos");
    let files = || walk(&photos_dir);
    fn walk(d: &std::path::Path) -> usize {
        std::fs::read_dir(d)
            .map(|r| {
                r.map(|e| {
                    let p = e.unwrap().path();
                    if p.is_dir() { walk(&p) } else { 1 }
                })
                .sum()
            })
            .unwrap_or(0)
    }
    let resolve = |parts: Vec<(&'static str, Part)>| {
        let mut form = Form::new();
        for (name, part) in parts {
            form = form.part(name, part);
        }
        transport
            .post(format!("{}/api/v1/issues/{id}/events", api.base))
            .multipart(form)
            .send()
    };
    let event = || Part::text(json!({"event": "resolved", "note": "已修复"}).to_string());
    let png = || {
        Part::bytes(support::PNG.to_vec())
            .mime_str("image/png")
            .unwrap()
    };

    // The category needs a photo: a resolution without one is refused.
    let (status, b) = api
        .act(
            &transport,
            &id,
            json!({"event": "resolved", "note": "已修复"}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["field"].as_str()),
        (422, Some("photos")),
        "{b}"
    );
    // Not an image: refused, nothing written.
    let r = resolve(vec![
        ("event", event()),
        (
            "photo",
            Part::bytes(b"<html>".to_vec())
                .mime_str("image/png")
                .unwrap(),
        ),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 415);
    // Another event than a resolution does not carry photos.
    let r = resolve(vec![
        (
            "event",
            Part::text(json!({"event": "progress", "note": "x"}).to_string()),
        ),
        ("photo", png()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    // Refused before the decision (a leader may not resolve): the photo is not written.
    let street = api.client("leader", Some("s-huayuanlu")).await;
    let r = street
        .post(format!("{}/api/v1/issues/{id}/events", api.base))
        .multipart(Form::new().part("event", event()).part("photo", png()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(files(), 0);
    assert_eq!(issue(&api, &id).await["state"]["state"], "acknowledged");

    let r = resolve(vec![("event", event()), ("photo", png())])
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(files(), 1);
    let body = issue(&api, &id).await;
    assert_eq!(body["state"]["state"], "resolved");
    let name = body["state"]["after_photos"][0]
        .as_str()
        .unwrap()
        .to_string();
    let last = body["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["payload"]["photos"], json!([name]));
    // Served to whoever may see the issue, as any photo of it.
    let reporter = api.client("reporter", Some("g-0001")).await;
    let r = reporter
        .get(format!("{}/api/v1/issues/{id}/photos/{name}", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &support::PNG[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scorecards_score_departments_and_grids_on_the_policys_points() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let urban = api.client("department", Some("urban")).await;
    let triage = api.client("department", Some("triage")).await;
    let grid1 = api.client("reporter", Some("g-0001")).await;
    let at = |t: &str| api.clock.set(support::at(t));
    // A: acknowledged and resolved in time, the report rated valid, confirmed on site, rated 4.
    let a = submit(&api, garbage("g-0001", "p-g-0001")).await;
    // B: acknowledged late.
    let b = submit(&api, garbage("g-0002", "p-g-0002")).await;
    // C: returned by urban, and sent back to it: the return was wrong.
    let c = submit(&api, garbage("g-0001", "p-g-0001")).await;
    // D: a report urban rates invalid.
    let d = submit(&api, garbage("g-0002", "p-g-0002")).await;
    at("2026-03-03T10:30:00+08:00");
    for (who, id, event) in [
        (&urban, &a, json!({"event": "acknowledged"})),
        (
            &urban,
            &a,
            json!({"event": "report_rated", "verdict": "valid"}),
        ),
        (&urban, &a, json!({"event": "resolved", "note": "已清运"})),
        (&grid1, &a, json!({"event": "confirmed"})),
        (&grid1, &a, json!({"event": "evaluated", "rating": 4})),
        (
            &urban,
            &c,
            json!({"event": "returned", "reason": "不归我们"}),
        ),
        (
            &triage,
            &c,
            json!({"event": "reassigned", "department": "urban"}),
        ),
        (
            &urban,
            &d,
            json!({"event": "report_rated", "verdict": "invalid"}),
        ),
    ] {
        let (status, body) = api.act(who, id, event.clone()).await;
        assert_eq!(status, 200, "{event} on {id}: {body}");
    }
    api.advance("2026-03-03T16:00:00+08:00").await; // B's acknowledge deadline (15:30) passes
    let (status, body) = api.act(&urban, &b, json!({"event": "acknowledged"})).await;
    assert_eq!(status, 200, "{body}");

    let week = "from=2026-03-02T00:00:00%2B08:00&to=2026-03-09T00:00:00%2B08:00";
    let (status, cards) = api
        .get(&api.admin, &format!("/api/v1/scorecards?{week}"))
        .await;
    assert_eq!(status, 200, "{cards}");
    let card = |kind: &str, id: &str| -> Value {
        cards[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c[if kind == "units" {
                    "unit"
                } else {
                    "department"
                }] == id
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} card {id}: {cards}"))
    };
    let u = card("departments", "urban");
    assert_eq!(
        (
            u["acknowledged"].as_u64(),
            u["acknowledged_on_time"].as_u64()
        ),
        (Some(2), Some(1)),
        "{u}"
    );
    assert_eq!(
        (u["resolved"].as_u64(), u["resolved_on_time"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (
            u["returns_accepted"].as_u64(),
            u["returns_rejected"].as_u64()
        ),
        (Some(0), Some(1))
    );
    // 60 × 1 (resolved on time) + 10 × 0.5 (acknowledged on time) + 5 × 1 (no rework)
    // + 5 × 0 (return accuracy) + 10 × 0.8 (satisfaction); nothing was supervised: left out.
    assert_eq!(u["score"]["points"], 78.0, "{u}");
    assert_eq!(u["score"]["out_of"], 90.0, "{u}");
    let supervised = u["score"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["figure"] == "supervised_resolved")
        .unwrap()
        .clone();
    assert_eq!(supervised["points"], Value::Null);
    // The grids: g-0001's report valid and its check on time; g-0002's report invalid.
    let g1 = card("units", "g-0001");
    assert_eq!(
        (
            g1["score"]["points"].as_f64(),
            g1["score"]["out_of"].as_f64()
        ),
        (Some(100.0), Some(100.0)),
        "{g1}"
    );
    let g2 = card("units", "g-0002");
    assert_eq!(
        (
            g2["score"]["points"].as_f64(),
            g2["score"]["out_of"].as_f64()
        ),
        (Some(0.0), Some(60.0)),
        "{g2}"
    );
    assert_eq!(g2["tier"], "grid");

    // Who sees what.
    let (status, own) = api.get(&urban, "/api/v1/scorecards").await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["departments"].as_array().unwrap().len(), 1);
    assert_eq!(own["units"], json!([]));
    for (c, path) in [
        (&urban, "/api/v1/scorecards?department=water"),
        (&urban, "/api/v1/scorecards?unit=g-0001"),
        (&grid1, "/api/v1/scorecards"),
    ] {
        let (status, b) = api.get(c, path).await;
        assert_eq!(status, 403, "{path}: {b}");
    }
    let street = api.client("leader", Some("s-huayuanlu")).await;
    let (status, mine) = api
        .get(&street, &format!("/api/v1/scorecards?{week}"))
        .await;
    assert_eq!(status, 200, "{mine}");
    assert!(mine["departments"].as_array().unwrap().len() > 1);
    assert_eq!(mine["units"].as_array().unwrap().len(), 2);
    let (status, _) = api.get(&street, "/api/v1/scorecards?unit=d-erqi").await;
    assert_eq!(status, 403);
    // Bad queries name the field and change nothing.
    for (path, field) in [
        ("/api/v1/scorecards?period=year", "period"),
        ("/api/v1/scorecards?from=2026-03-02T00:00:00Z", "to"),
        (
            "/api/v1/scorecards?period=week&from=2026-03-02T00:00:00Z",
            "period",
        ),
        (
            "/api/v1/scorecards?from=2026-03-09T00:00:00Z&to=2026-03-02T00:00:00Z",
            "to",
        ),
        (
            "/api/v1/scorecards?from=2024-01-01T00:00:00Z&to=2026-03-02T00:00:00Z",
            "from",
        ),
        ("/api/v1/scorecards?department=parks", "department"),
        ("/api/v1/scorecards?unit=g-9999", "unit"),
        ("/api/v1/scorecards?department=urban&unit=g-0001", "unit"),
        ("/api/v1/scorecards?colour=red", "query"),
    ] {
        let (status, b) = api.get(&api.admin, path).await;
        assert_eq!(
            (status, b["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}: {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassigning_an_issue_to_its_own_department_is_refused_and_restarts_nothing() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let id = submit(&api, garbage("g-0001", "p-g-0001")).await;
    let before = issue(&api, &id).await["state"]["acknowledge_by"].clone();
    api.clock.set(support::at("2026-03-03T15:00:00+08:00"));
    let street = api.client("leader", Some("s-huayuanlu")).await;
    let (status, b) = api
        .act(
            &street,
            &id,
            json!({"event": "reassigned", "department": "urban"}),
        )
        .await;
    assert_eq!(
        (
            status,
            b["error"]["code"].as_str(),
            b["error"]["field"].as_str()
        ),
        (409, Some("unchanged"), Some("department")),
        "{b}"
    );
    let after = issue(&api, &id).await;
    assert_eq!(after["state"]["acknowledge_by"], before);
    assert_eq!(after["timeline"].as_array().unwrap().len(), 1);
}
