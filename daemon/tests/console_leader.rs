//! The leader's decisions and meetings in the web console, on the example city and the
//! in-process API with a manual clock: the extension and suspension requests each role decides,
//! listed the soonest to lapse first and decided from the list; the meetings a role may see,
//! a meeting's agenda as it stands, and its outcome recorded as the API records it. Every bad
//! input (an unknown outcome, a meeting id that is not a number, a meeting already held, a form
//! without its token or from another origin, a role that may not record) reads as a page with
//! the API's status and changes nothing.

mod support;

use serde_json::{Value, json};
use support::console::{Browser, CITY, Page, csrf, listed, only_local_references, signed_in};
use support::{Api, at, fire_hazard};

/// The issue as the admin reads it through the API.
async fn issue(api: &Api, id: &str) -> Value {
    let (st, v) = api.get(&api.admin, &format!("/api/v1/issues/{id}")).await;
    assert_eq!(st, 200, "{v}");
    v
}

/// The kinds of issue `id`'s events, in order.
async fn events(api: &Api, id: &str) -> Vec<String> {
    api.engine
        .store()
        .timeline(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// A garbage report in `unit`, acknowledged by the urban department: its id.
async fn acknowledged_garbage(api: &Api, unit: &str) -> String {
    let (st, v) = api
        .post(
            &api.admin,
            "/api/v1/issues",
            json!({"category": "garbage", "unit": unit, "description": "bins overflowing"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let urban = api.client("department", Some("urban")).await;
    let (st, v) = api.act(&urban, &id, json!({"event": "acknowledged"})).await;
    assert_eq!(st, 200, "{v}");
    id
}

/// Asks for something on issue `id` as the urban department.
async fn ask(api: &Api, id: &str, request: Value) {
    let urban = api.client("department", Some("urban")).await;
    let (st, v) = api.act(&urban, id, request).await;
    assert_eq!(st, 200, "{v}");
}

/// The issue ids of a requests page, in its order.
fn requests_listed(p: &Page) -> Vec<String> {
    assert_eq!(p.status, 200, "{}", p.body);
    listed(&p.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_decides_the_requests_waiting_for_them_from_one_list() {
    let api = Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    // Huayuan Road's issues a and d, Jingba Road's b, each asking for more time; c asking for
    // its clock to stop, which the command centre decides.
    let a = acknowledged_garbage(&api, "g-0001").await;
    let b = acknowledged_garbage(&api, "g-0022").await;
    let c = acknowledged_garbage(&api, "g-0002").await;
    let d = acknowledged_garbage(&api, "g-0003").await;
    ask(
        &api,
        &a,
        json!({"event": "extension_requested", "duration": "1d", "reason": "waiting for a truck"}),
    )
    .await;
    ask(
        &api,
        &b,
        json!({"event": "extension_requested", "duration": "2d", "reason": "the other street"}),
    )
    .await;
    ask(
        &api,
        &c,
        json!({"event": "suspension_requested", "reason": "awaiting a court ruling"}),
    )
    .await;
    api.clock.set(at("2026-03-02T10:00:00+08:00"));
    ask(
        &api,
        &d,
        json!({"event": "extension_requested", "duration": "4h", "reason": "a second crew"}),
    )
    .await;

    // The street's leader: its own two, the one asked first (lapsing first) on top, each with
    // who asked, for how long, why, when, and the decider's clock.
    let mut leader = signed_in(&api, "p-s-huayuanlu").await;
    let p = leader.get("/console/requests").await;
    assert_eq!(requests_listed(&p), [a.as_str(), d.as_str()], "{}", p.body);
    only_local_references(&p.body);
    assert!(p.body.contains("<h1>"), "{}", p.body);
    for words in ["waiting for a truck", "a second crew", "1d", "4h"] {
        assert!(p.body.contains(words), "{words}: {}", p.body);
    }
    assert!(!p.body.contains("the other street"), "{}", p.body);
    let state_a = issue(&api, &a).await["state"].clone();
    let decide_by = state_a["request"]["decide_by"].as_str().unwrap();
    assert!(
        p.body.contains(&format!("title=\"{decide_by}\"")),
        "no clock to {decide_by}: {}",
        p.body
    );
    assert!(
        p.body
            .contains(&format!("action=\"/console/issues/{a}/act\"")),
        "{}",
        p.body
    );
    assert_eq!(p.body.matches("value=\"request_decided\"").count(), 2);
    assert!(p.body.contains("href=\"/console/requests\""), "{}", p.body);

    // Another street's leader, the command centre, a department that only asks, a reporter.
    let mut other = signed_in(&api, "p-s-jingbalu").await;
    assert_eq!(
        requests_listed(&other.get("/console/requests").await),
        [b.as_str()]
    );
    let mut triage = signed_in(&api, "p-tri-duty").await;
    let p = triage.get("/console/requests").await;
    assert_eq!(requests_listed(&p), [c.as_str()]);
    assert!(p.body.contains("value=\"suspension\""), "{}", p.body);
    let mut urban = signed_in(&api, "p-urban-li").await;
    let p = urban.get("/console/requests").await;
    assert_eq!(requests_listed(&p), Vec::<String>::new());
    assert!(!p.body.contains("value=\"request_decided\""), "{}", p.body);
    let mut reporter = signed_in(&api, "p-g-0001").await;
    let p = reporter.get("/console/requests").await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(!p.body.contains("href=\"/console/requests\""), "{}", p.body);

    // Granted from the list: the issue's deadline moves by the working day asked for, and the
    // request leaves the list.
    let before = state_a["resolve_by"].as_str().unwrap().to_string();
    let p = leader.get("/console/requests").await;
    let token = csrf(&p.body);
    let grant = [
        ("csrf", token.as_str()),
        ("event", "request_decided"),
        ("request", "extension"),
        ("granted", "true"),
        ("note", "agreed"),
    ];
    let done = leader
        .post(&format!("/console/issues/{a}/act"), &grant)
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some(format!("/console/issues/{a}").as_str())
    );
    let after = issue(&api, &a).await["state"].clone();
    assert!(after.get("request").is_none_or(Value::is_null), "{after}");
    assert!(
        after["resolve_by"].as_str().unwrap() > before.as_str(),
        "moved from {before}: {after}"
    );
    assert_eq!(
        requests_listed(&leader.get("/console/requests").await),
        [d.as_str()]
    );
    // The same form again finds nothing of theirs to decide: refused as the API refuses it,
    // nothing changes.
    let seen = events(&api, &a).await;
    let again = leader
        .post(&format!("/console/issues/{a}/act"), &grant)
        .await;
    assert_eq!(again.status, 403, "{}", again.body);
    assert!(
        again.body.contains("may not post `request_decided`"),
        "{}",
        again.body
    );
    assert_eq!(events(&api, &a).await, seen);

    // Refused: the deadline stays where it was.
    let before_d = issue(&api, &d).await["state"]["resolve_by"].clone();
    let refused = leader
        .post(
            &format!("/console/issues/{d}/act"),
            &[
                ("csrf", token.as_str()),
                ("event", "request_decided"),
                ("request", "extension"),
                ("granted", "false"),
                ("note", "finish it today"),
            ],
        )
        .await;
    assert_eq!(refused.status, 303, "{}", refused.body);
    let state_d = issue(&api, &d).await["state"].clone();
    assert!(
        state_d.get("request").is_none_or(Value::is_null),
        "{state_d}"
    );
    assert_eq!(state_d["resolve_by"], before_d);
    assert_eq!(
        requests_listed(&leader.get("/console/requests").await),
        Vec::<String>::new()
    );
    // The other street's request and the suspension still wait.
    assert_eq!(
        requests_listed(&other.get("/console/requests").await),
        [b.as_str()]
    );
    assert_eq!(
        requests_listed(&triage.get("/console/requests").await),
        [c.as_str()]
    );
}

/// Two fire hazards of Huayuan Road (grids 1 and 2) on the agenda of the joint meeting that
/// sits on Wednesday at 09:00 Beijing time: the meeting's id and the issues'.
async fn convened(api: &Api) -> (i64, String, String) {
    let (st, a) = api
        .post(&api.admin, "/api/v1/issues", fire_hazard("g-0001"))
        .await;
    assert_eq!(st, 201, "{a}");
    let (st, b) = api
        .post(&api.admin, "/api/v1/issues", fire_hazard("g-0002"))
        .await;
    assert_eq!(st, 201, "{b}");
    let (_, list) = api.get(&api.admin, "/api/v1/meetings").await;
    let m = &list["meetings"][0];
    assert_eq!(m["at"], "2026-03-04T01:00:00Z", "{list}");
    (
        m["id"].as_i64().unwrap(),
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    )
}

async fn meeting(api: &Api, id: i64) -> Value {
    let (st, m) = api.get(&api.admin, &format!("/api/v1/meetings/{id}")).await;
    assert_eq!(st, 200, "{m}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_sees_a_meeting_its_agenda_and_records_its_outcome() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let (id, a, b) = convened(&api).await;
    let page = format!("/console/meetings/{id}");
    let outcome = format!("{page}/outcome");

    // The district's leader lists it: when, who, the agenda linked, no outcome yet.
    let mut district = signed_in(&api, "p-jinshui").await;
    let p = district.get("/console/meetings").await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    assert!(p.body.contains("<h1>"), "{}", p.body);
    assert!(p.body.contains(&format!("href=\"{page}\"")), "{}", p.body);
    assert!(p.body.contains("2026-03-04T01:00:00Z"), "{}", p.body);
    for i in [&a, &b] {
        assert!(
            p.body.contains(&format!("href=\"/console/issues/{i}\"")),
            "{i}: {}",
            p.body
        );
    }
    // 刘志强 is the district's leader, invited.
    assert!(p.body.contains("刘志强"), "{}", p.body);
    // Each agenda issue's page links to the meeting; a reporter's page of it shows none.
    let q = district.get(&format!("/console/issues/{a}")).await;
    assert!(
        q.body.contains(&format!("<a href=\"{page}\">")),
        "{}",
        q.body
    );
    let mut grid = signed_in(&api, "p-g-0001").await;
    let q = grid.get(&format!("/console/issues/{a}")).await;
    assert_eq!(q.status, 200, "{}", q.body);
    assert!(!q.body.contains(&format!("href=\"{page}\"")), "{}", q.body);
    assert!(p.body.contains("href=\"/console/meetings\""), "{}", p.body);

    // Its page: the agenda as it stands, and the form to record the outcome.
    let p = district.get(&page).await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    assert_eq!(listed(&p.body), [a.as_str(), b.as_str()], "{}", p.body);
    assert!(
        p.body.contains(&format!("action=\"{outcome}\"")),
        "{}",
        p.body
    );
    for o in ["resolved", "enforcement", "noted"] {
        assert!(p.body.contains(&format!("value=\"{o}\"")), "{o}");
    }
    let token = csrf(&p.body);

    // Who else sees it: the invited fire department (no form), the street's leader; not a
    // leader of another street, nor a grid's reporter, nor a department not invited.
    let mut fire = signed_in(&api, "p-fire-tao").await;
    let p = fire.get(&page).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        !p.body.contains(&format!("action=\"{outcome}\"")),
        "{}",
        p.body
    );
    let mut street = signed_in(&api, "p-s-huayuanlu").await;
    assert_eq!(street.get(&page).await.status, 200);
    let mut other = signed_in(&api, "p-s-jingbalu").await;
    assert_eq!(other.get(&page).await.status, 403);
    let p = other.get("/console/meetings").await;
    assert_eq!(p.status, 200);
    assert!(!p.body.contains(&format!("href=\"{page}\"")), "{}", p.body);
    let mut water = signed_in(&api, "p-wat-shi").await;
    assert_eq!(water.get(&page).await.status, 403);
    let mut reporter = signed_in(&api, "p-g-0001").await;
    assert_eq!(reporter.get("/console/meetings").await.status, 403);

    // Grid 2 clears its issue before the meeting.
    let grid2 = api.client("reporter", Some("g-0002")).await;
    let (st, v) = api
        .act(
            &grid2,
            &b,
            json!({"event": "closed_at_grid", "note": "cleared the stairs"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    let enforcement = [
        ("csrf", token.as_str()),
        ("outcome", "enforcement"),
        ("departments", "urban"),
        ("departments", "housing"),
        ("resolve", "3d"),
        ("note", "joint inspection of the estate"),
    ];
    // Before it sits: refused as the API refuses it, nothing changes.
    let early = district.post(&outcome, &enforcement).await;
    assert_eq!(early.status, 409, "{}", early.body);
    assert_eq!(meeting(&api, id).await["status"], "scheduled");

    // The meeting sits the next day; the leader signs in again (a session lasts 12 hours).
    api.clock.set(at("2026-03-04T11:00:00+08:00"));
    let mut district = signed_in(&api, "p-jinshui").await;
    let token = csrf(&district.get(&page).await.body);
    let enforcement = enforcement.map(|(k, v)| (k, if k == "csrf" { token.as_str() } else { v }));
    let done = district.post(&outcome, &enforcement).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some(page.as_str()));
    // As the API records it: held, the enforcement tracked on issue a (its departments, its
    // own deadline: Wed 11:00 + 3 days on the fire department's round-the-clock calendar),
    // closed issue b skipped.
    let held = meeting(&api, id).await;
    assert_eq!(held["status"], "held");
    assert_eq!(held["outcome"]["outcome"], "enforcement");
    assert_eq!(held["outcome"]["note"], "joint inspection of the estate");
    assert!(
        held["recorded_by"]
            .as_str()
            .unwrap()
            .starts_with("leader:d-jinshui#"),
        "{held}"
    );
    assert!(held["agenda"][0]["outcome_seq"].is_i64(), "{held}");
    assert!(
        held["agenda"][1]["skipped"]
            .as_str()
            .unwrap()
            .contains("closed_at_grid"),
        "{held}"
    );
    let state_a = issue(&api, &a).await["state"].clone();
    assert_eq!(state_a["state"], "in_progress");
    assert_eq!(state_a["departments"], json!(["fire", "urban", "housing"]));
    assert_eq!(state_a["resolve_by"], "2026-03-07T03:00:00Z");
    assert_eq!(events(&api, &a).await, ["reported", "meeting_outcome"]);
    assert_eq!(events(&api, &b).await, ["reported", "closed_at_grid"]);

    // The page shows it recorded, the agenda as it now stands, and no form.
    let p = district.get(&page).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        !p.body.contains(&format!("action=\"{outcome}\"")),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("joint inspection of the estate"),
        "{}",
        p.body
    );
    assert!(p.body.contains("2026-03-07T03:00:00Z"), "{}", p.body);
    assert!(p.body.contains("closed_at_grid"), "{}", p.body);
    let p = district.get("/console/meetings").await;
    assert!(p.body.contains(&format!("href=\"{page}\"")), "{}", p.body);

    // Already held: another outcome is refused, nothing changes.
    let noted = district
        .post(&outcome, &[("csrf", token.as_str()), ("outcome", "noted")])
        .await;
    assert_eq!(noted.status, 409, "{}", noted.body);
    assert!(noted.body.contains("already held"), "{}", noted.body);
    assert_eq!(meeting(&api, id).await["outcome"]["outcome"], "enforcement");
    assert_eq!(events(&api, &a).await, ["reported", "meeting_outcome"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_outcome_reads_as_the_api_would_answer_and_changes_nothing() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let (id, a, b) = convened(&api).await;
    api.clock.set(at("2026-03-04T11:00:00+08:00"));
    let page = format!("/console/meetings/{id}");
    let outcome = format!("{page}/outcome");
    let mut district = signed_in(&api, "p-jinshui").await;
    let token = csrf(&district.get(&page).await.body);
    let t = token.as_str();

    // Bad input, each refused with what was wrong (422).
    for (form, says) in [
        (
            vec![("csrf", t), ("outcome", "postponed")],
            "unknown outcome `postponed`",
        ),
        (vec![("csrf", t)], "choose an outcome"),
        (
            vec![("csrf", t), ("outcome", "enforcement")],
            "needs departments",
        ),
        (
            vec![
                ("csrf", t),
                ("outcome", "enforcement"),
                ("departments", "nobody"),
            ],
            "unknown department `nobody`",
        ),
        (
            vec![("csrf", t), ("outcome", "noted"), ("departments", "urban")],
            "joint enforcement action only",
        ),
        (
            vec![
                ("csrf", t),
                ("outcome", "enforcement"),
                ("departments", "urban"),
                ("resolve", "soon"),
            ],
            "resolve `soon`",
        ),
        (
            vec![("csrf", t), ("outcome", "noted"), ("minutes", "x")],
            "no field `minutes`",
        ),
    ] {
        let p = district.post(&outcome, &form).await;
        assert_eq!(p.status, 422, "{form:?}: {}", p.body);
        assert!(p.body.contains(says), "{form:?}: {}", p.body);
    }

    // A meeting id that is not a number, a meeting that does not exist (404).
    for path in ["/console/meetings/abc", "/console/meetings/999"] {
        let p = district.get(path).await;
        assert_eq!(p.status, 404, "{path}: {}", p.body);
        assert!(p.body.contains("no meeting"), "{}", p.body);
        let p = district
            .post(
                &format!("{path}/outcome"),
                &[("csrf", t), ("outcome", "noted")],
            )
            .await;
        assert_eq!(p.status, 404, "{path}: {}", p.body);
    }

    // A form without its token, with another session's, from another origin (403).
    let noted = [("csrf", t), ("outcome", "noted")];
    let p = district.post(&outcome, &[("outcome", "noted")]).await;
    assert_eq!(p.status, 403, "{}", p.body);
    let mut street = signed_in(&api, "p-s-huayuanlu").await;
    let theirs = csrf(&street.get(&page).await.body);
    assert_ne!(theirs, token);
    let p = district
        .post(&outcome, &[("csrf", theirs.as_str()), ("outcome", "noted")])
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    let r = district
        .http
        .post(format!("{}{outcome}", district.base))
        .header("origin", "https://elsewhere.example")
        .form(&noted);
    let p = district.send(r).await;
    assert_eq!(p.status, 403, "{}", p.body);

    // Roles that may not record it (403): an invited department, a leader of another street.
    for person in ["p-fire-tao", "p-s-jingbalu"] {
        let mut b: Browser = signed_in(&api, person).await;
        let token = csrf(&b.get("/console/meetings").await.body);
        let p = b
            .post(&outcome, &[("csrf", token.as_str()), ("outcome", "noted")])
            .await;
        assert_eq!(p.status, 403, "{person}: {}", p.body);
    }
    // A grid's leader (a reporter) may not see meetings at all.
    let mut reporter = signed_in(&api, "p-g-0001").await;
    let token = csrf(&reporter.get("/console/inbox").await.body);
    let p = reporter
        .post(&outcome, &[("csrf", token.as_str()), ("outcome", "noted")])
        .await;
    assert_eq!(p.status, 403, "{}", p.body);

    // Nothing changed.
    let m = meeting(&api, id).await;
    assert_eq!(m["status"], "scheduled", "{m}");
    assert!(m["outcome"].is_null(), "{m}");
    assert_eq!(events(&api, &a).await, ["reported"]);
    assert_eq!(events(&api, &b).await, ["reported"]);

    // Then recorded once, it is held: recording another outcome is refused (409).
    let p = district.post(&outcome, &noted).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let p = district
        .post(&outcome, &[("csrf", t), ("outcome", "resolved")])
        .await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert_eq!(meeting(&api, id).await["outcome"]["outcome"], "noted");
    assert_eq!(events(&api, &a).await, ["reported", "meeting_outcome"]);
}
