//! The web console over HTTP, on the real binary: a person invited through the CLI sets a
//! password through the one-time link, signs in, finds the department's open issues in its
//! inbox in the order of their deadlines, acknowledges one through a plain form, and signs out.
//! Each refusal (a spent invitation, a bad password, a form without its token or from another
//! origin, an action not allowed now, an issue out of scope, too many failed sign-ins, a session
//! ended or expired) reads as a page and changes nothing.

mod support;

use std::time::Duration;

use reqwest::header::COOKIE;
use serde_json::{Value, json};
use support::console::{
    Browser, CITY, Setup, api_issue, csrf, hidden, hidden_attr, listed, only_local_references,
    report, signed_in,
};
use support::{TestDb, admin_token, escalade_in, expect_code, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_person_sets_a_password_signs_in_and_works_the_inbox() {
    let s = Setup::new("{map_url: \"https://maps.example/?q={lat},{lon}\"}");
    let invite = s.invite("p-urban-li");
    let (_daemon, addr) = s.start();
    let api = support::client(&s.admin);
    // Urban's work: garbage (normal) and a gas-free urgent one elsewhere; one for another
    // department.
    let mut urban = Vec::new();
    for (category, unit) in [
        ("garbage", "g-0001"),
        ("street_vendors", "g-0002"),
        ("garbage", "g-0003"),
    ] {
        urban.push(
            report(
                &api,
                &addr,
                json!({"category": category, "unit": unit, "description": format!("{category} at {unit}"),
                       "location": {"lat": 34.78, "lon": 113.66}}),
            )
            .await,
        );
    }
    let other = report(
        &api,
        &addr,
        json!({"category": "air_pollution", "unit": "g-0001", "description": "smoke"}),
    )
    .await;

    let mut b = Browser::new(&addr);
    // The invitation's page, then its refusals: passwords that differ, one too short.
    let p = b.get(&invite).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("p-urban-li"), "{}", p.body);
    let p = b
        .post(
            &invite,
            &[("password", "long enough 1"), ("repeat", "long enough 2")],
        )
        .await;
    assert_eq!(p.status, 422);
    let p = b
        .post(&invite, &[("password", "short"), ("repeat", "short")])
        .await;
    assert_eq!(p.status, 422);
    assert!(b.cookie.is_none());
    // Set: signed in, on to the inbox.
    let p = b
        .post(
            &invite,
            &[
                ("password", "urban pass 2026"),
                ("repeat", "urban pass 2026"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/console/inbox"));
    assert!(b.cookie.is_some());
    // The link is spent.
    let mut stranger = Browser::new(&addr);
    assert_eq!(stranger.get(&invite).await.status, 410);

    // The inbox: urban's open issues, the nearest deadline first, as the API's queue orders
    // them; not the other department's.
    let p = b.get("/console/inbox").await;
    assert_eq!(p.status, 200, "{}", p.body);
    let csp = p.csp.clone().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    only_local_references(&p.body);
    let queue: Value = api
        .get(format!("http://{addr}/api/v1/departments/urban/queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_deadline: Vec<String> = queue["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed(&p.body), by_deadline);
    for id in &urban {
        assert!(by_deadline.contains(id), "{id} in {by_deadline:?}");
    }
    assert!(!listed(&p.body).contains(&other));
    assert!(p.body.contains("class=\"clock green\""), "{}", p.body);
    // Filters in the URL.
    let p = b.get("/console/inbox?state=acknowledged").await;
    assert!(!p.body.contains("id=\"more\""), "one page: {}", p.body);
    assert!(listed(&p.body).is_empty(), "{}", p.body);
    let p = b.get("/console/inbox?state=nonsense").await;
    assert_eq!(p.status, 400);

    // The issue page offers what urban may do now: acknowledge, not confirm.
    let id = &urban[0];
    let p = b.get(&format!("/console/issues/{id}")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    // Its place on the map the configuration names, the only link elsewhere.
    assert!(
        p.body.contains(
            "<a href=\"https:&#x2f;&#x2f;maps.example&#x2f;?q=34.78,113.66\" rel=\"noreferrer external\""
        ),
        "{}",
        p.body
    );
    assert!(p.body.contains("value=\"acknowledged\""), "{}", p.body);
    assert!(!p.body.contains("value=\"confirmed\""), "{}", p.body);
    let token = csrf(&p.body);
    let act = format!("/console/issues/{id}/act");
    // Without the form's token, or from another origin: refused, nothing done.
    let p = b.post(&act, &[("event", "acknowledged")]).await;
    assert_eq!(p.status, 403);
    let r = b
        .http
        .post(format!("{}{act}", b.base))
        .header("origin", "https://elsewhere.example")
        .header(COOKIE, b.cookie.clone().unwrap())
        .form(&[("event", "acknowledged"), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        api_issue(&api, &addr, id).await["state"]["state"],
        "assigned"
    );
    // With it: acknowledged, as the person's session.
    let p = b
        .post(&act, &[("event", "acknowledged"), ("csrf", token.as_str())])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let now = api_issue(&api, &addr, id).await;
    assert_eq!(now["state"]["state"], "acknowledged");
    let actor = now["timeline"].as_array().unwrap().last().unwrap()["actor"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        actor.starts_with("department:urban#") && actor.ends_with("(p-urban-li)"),
        "{actor}"
    );
    // Again: not allowed now, a 409 naming what is.
    let p = b
        .post(&act, &[("event", "acknowledged"), ("csrf", token.as_str())])
        .await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p.body.contains("progress"), "{}", p.body);
    // A note of progress, shown on the page's timeline.
    let p = b
        .post(
            &act,
            &[
                ("event", "progress"),
                ("note", "crew on site <b>now</b>"),
                ("csrf", token.as_str()),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let p = b.get(&format!("/console/issues/{id}")).await;
    assert!(
        p.body.contains("crew on site &lt;b&gt;now&lt;&#x2f;b&gt;"),
        "escaped: {}",
        p.body
    );
    // A field the action does not take.
    let p = b
        .post(
            &act,
            &[
                ("event", "commented"),
                ("text", "x"),
                ("rating", "5"),
                ("csrf", token.as_str()),
            ],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);
    // Another department's issue: refused.
    assert_eq!(b.get(&format!("/console/issues/{other}")).await.status, 403);
    assert_eq!(b.get("/console/issues/999999").await.status, 404);

    // The sessions are tokens of the person's, labelled.
    let out = s.cli(&["token", "list", "--json"]);
    expect_code(&out, 0, "token list");
    let tokens: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["label"] == "console session"
                && t["person"] == "p-urban-li"
                && t["role"] == "department"),
        "{tokens}"
    );

    // Signing out ends the session: the old cookie opens nothing.
    let old = b.cookie.clone();
    let p = b
        .post("/console/sign-out", &[("csrf", token.as_str())])
        .await;
    assert_eq!(p.status, 303);
    assert!(b.cookie.is_none());
    b.cookie = old;
    let p = b.get("/console/inbox").await;
    assert_eq!(p.status, 303);
    assert!(
        p.location
            .as_deref()
            .unwrap()
            .starts_with("/console/sign-in?next="),
        "{:?}",
        p.location
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refuses_wrong_passwords_then_throttles_and_a_session_expires() {
    let s = Setup::new("{session: 3s, admins: [p-mayor]}");
    let invite = s.invite("p-mayor");
    let (daemon, addr) = s.start();
    let mut b = Browser::new(&addr);
    let set = b
        .post(
            &invite,
            &[
                ("password", "mayor pass 2026"),
                ("repeat", "mayor pass 2026"),
            ],
        )
        .await;
    assert_eq!(set.status, 303);
    // Several roles: leading the city and administering; the first is the unit's.
    let p = b.get("/console/inbox").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("leader:zz"), "{}", p.body);
    assert!(p.body.contains("<option value=\"admin\""), "{}", p.body);
    // Switching to administrator: a new session, the old one revoked.
    let old = b.cookie.clone().unwrap();
    let p = b
        .post(
            "/console/role",
            &[("role", "admin"), ("csrf", &csrf(&p.body))],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_ne!(b.cookie.as_deref(), Some(old.as_str()));
    let p = b.get("/console/inbox").await;
    assert!(
        p.body.contains("<option value=\"admin\" selected"),
        "{}",
        p.body
    );
    // A role the person does not hold.
    let p = b
        .post(
            "/console/role",
            &[("role", "department:urban"), ("csrf", &csrf(&p.body))],
        )
        .await;
    assert_eq!(p.status, 403);

    // The session lapses after its 3 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let p = b.get("/console/inbox").await;
    assert_eq!(p.status, 303, "{}", p.body);

    // Wrong passwords, and an unknown person, read the same.
    let mut c = Browser::new(&addr);
    let wrong = c
        .post(
            "/console/sign-in",
            &[("person", "p-mayor"), ("password", "not it at all")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    let unknown = c
        .post(
            "/console/sign-in",
            &[("person", "p-nobody"), ("password", "not it at all")],
        )
        .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(
        wrong.body.replace("p-mayor", "X"),
        unknown.body.replace("p-nobody", "X")
    );
    // The right one works, and goes on to the page asked for.
    let p = c
        .post(
            "/console/sign-in",
            &[
                ("person", "p-mayor"),
                ("password", "mayor pass 2026"),
                ("next", "/console/inbox?tier=city"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/console/inbox?tier=city"));
    // Five failures close sign-in for the person, even with the right password.
    for _ in 0..5 {
        let p = c
            .post(
                "/console/sign-in",
                &[("person", "p-mayor"), ("password", "wrong wrong")],
            )
            .await;
        assert_eq!(p.status, 401);
    }
    let p = c
        .post(
            "/console/sign-in",
            &[("person", "p-mayor"), ("password", "mayor pass 2026")],
        )
        .await;
    assert_eq!(p.status, 429, "{}", p.body);
    // The store counts them: the daemon started again (or another replica) refuses too, and
    // another person may still sign in.
    drop(daemon);
    let (_daemon, addr) = s.start();
    let mut c = Browser::new(&addr);
    let p = c
        .post(
            "/console/sign-in",
            &[("person", "p-mayor"), ("password", "mayor pass 2026")],
        )
        .await;
    assert_eq!(p.status, 429, "{}", p.body);
    let p = c
        .post(
            "/console/sign-in",
            &[("person", "p-urban-li"), ("password", "not set at all")],
        )
        .await;
    assert_eq!(p.status, 401, "{}", p.body);
    // A form from another origin is refused before any password is checked.
    let r = c
        .http
        .post(format!("{}/console/sign-in", c.base))
        .header("origin", "https://elsewhere.example")
        .form(&[("person", "p-mayor"), ("password", "mayor pass 2026")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[test]
fn an_invitation_for_no_such_person_is_refused() {
    let s = Setup::new("{}");
    let out = s.cli(&["person", "invite", "p-nobody", "--rules", CITY]);
    expect_code(&out, 2, "person invite p-nobody");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("unknown person `p-nobody`"), "{said}");
    let bad = Setup::new("{session: soon}");
    let out = bad.cli(&["person", "invite", "p-urban-li", "--rules", CITY]);
    expect_code(&out, 2, "a bad console configuration");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("console.session"), "{said}");
}

/// The reporter's path and the department's, on phones: a grid leader reports with a photo and
/// the place, the department acknowledges and resolves with a photo of the fixed site, the
/// reporter finds the resolution to check, confirms it and rates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_with_a_photo_is_resolved_with_another_then_confirmed_and_rated() {
    use reqwest::multipart::{Form, Part};
    let s = Setup::new("{}");
    let reporter_link = s.invite("p-g-0001");
    let urban_link = s.invite("p-urban-li");
    let (_daemon, addr) = s.start();
    let api = support::client(&s.admin);
    let mut reporter = Browser::new(&addr);
    reporter.accept(&reporter_link, "grid one pass").await;
    let mut urban = Browser::new(&addr);
    urban.accept(&urban_link, "urban pass 2026").await;

    // The form: every category in the reporter's language, the grid preselected.
    let p = reporter.get("/console/report").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("<option value=\"garbage\">"), "{}", p.body);
    assert!(
        p.body.contains("name=\"unit\" value=\"g-0001\""),
        "{}",
        p.body
    );
    only_local_references(&p.body);
    let (token, key) = (csrf(&p.body), hidden(&p.body, "key"));
    let photo = support::png(5);
    let form = |photo: Vec<u8>| {
        Form::new()
            .text("csrf", token.clone())
            .text("key", key.clone())
            .text("category", "garbage")
            .text("unit", "g-0001")
            .text("description", "垃圾桶满溢")
            .text("address", "农科路 12 号")
            .text("lat", "34.7906")
            .text("lon", "113.6742")
            .part(
                "photo",
                Part::bytes(photo)
                    .file_name("bins.png")
                    .mime_str("image/png")
                    .unwrap(),
            )
    };
    let sent = reporter
        .post_multipart("/console/report", form(photo.clone()))
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let at = sent.location.clone().unwrap();
    let id = at.trim_start_matches("/console/issues/").to_string();
    // The same form sent twice is the same report.
    let again = reporter
        .post_multipart("/console/report", form(photo.clone()))
        .await;
    assert_eq!(again.location.as_deref(), Some(at.as_str()));
    let stored = api_issue(&api, &addr, &id).await;
    assert_eq!(stored["issue"]["reporter"], "p-g-0001");
    assert_eq!(stored["issue"]["location"]["lat"], 34.7906);
    let hash = stored["issue"]["photos"][0].as_str().unwrap().to_string();
    // The reporter sees the photo, on the issue page too.
    let img = reporter
        .get(&format!("/console/issues/{id}/photos/{hash}"))
        .await;
    assert_eq!(img.status, 200);
    let p = reporter.get(&at).await;
    assert!(
        p.body
            .contains(&format!("/console/issues/{id}/photos/{hash}")),
        "{}",
        p.body
    );
    assert!(
        !p.body.contains("value=\"acknowledged\""),
        "a reporter does not acknowledge"
    );

    // Urban acknowledges, then resolves with a photo of the fixed site.
    let p = urban.get(&at).await;
    let token_u = csrf(&p.body);
    let act = format!("{at}/act");
    let ack = urban
        .post(
            &act,
            &[("event", "acknowledged"), ("csrf", token_u.as_str())],
        )
        .await;
    assert_eq!(ack.status, 303, "{}", ack.body);
    let after = support::png(9);
    let resolved = urban
        .post_multipart(
            &act,
            Form::new()
                .text("csrf", token_u.clone())
                .text("event", "resolved")
                .text("note", "清运完毕")
                .part(
                    "photo",
                    Part::bytes(after.clone())
                        .file_name("clean.png")
                        .mime_str("image/png")
                        .unwrap(),
                ),
        )
        .await;
    assert_eq!(resolved.status, 303, "{}", resolved.body);
    let stored = api_issue(&api, &addr, &id).await;
    assert_eq!(stored["state"]["state"], "resolved");
    assert_eq!(stored["state"]["after_photos"].as_array().unwrap().len(), 1);
    // Photos with another action are refused.
    let p = urban
        .post_multipart(
            &act,
            Form::new()
                .text("csrf", token_u.clone())
                .text("event", "commented")
                .text("text", "x")
                .part(
                    "photo",
                    Part::bytes(after)
                        .file_name("x.png")
                        .mime_str("image/png")
                        .unwrap(),
                ),
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);

    // The reporter finds it to check, confirms and rates it.
    let inbox = reporter.get("/console/inbox").await;
    assert!(
        inbox
            .body
            .contains(&format!("href=\"/console/issues/{id}\"")),
        "{}",
        inbox.body
    );
    let p = reporter.get(&at).await;
    assert!(p.body.contains("value=\"confirmed\""), "{}", p.body);
    let token_r = csrf(&p.body);
    let done = reporter
        .post(
            &format!("{at}/act"),
            &[("event", "confirmed"), ("csrf", token_r.as_str())],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let rated = reporter
        .post(
            &format!("{at}/act"),
            &[
                ("event", "evaluated"),
                ("rating", "4"),
                ("comment", "及时"),
                ("csrf", token_r.as_str()),
            ],
        )
        .await;
    assert_eq!(rated.status, 303, "{}", rated.body);
    let stored = api_issue(&api, &addr, &id).await;
    assert_eq!(stored["state"]["state"], "closed");
    assert_eq!(stored["state"]["rating"], 4);
    // A department may not report.
    assert_eq!(urban.get("/console/report").await.status, 403);
}

/// An open inbox hears of a new assignment within a second of its commit, and of nothing that
/// is not its own; signing out ends the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_inbox_is_told_of_a_new_assignment_within_a_second() {
    let s = Setup::new("{}");
    let link = s.invite("p-urban-li");
    let (_daemon, addr) = s.start();
    let api = support::client(&s.admin);
    let mut b = Browser::new(&addr);
    b.accept(&link, "urban pass 2026").await;
    let p = b.get("/console/inbox").await;
    // As a browser reads the attribute: its entities decoded.
    let live = hidden_attr(&p.body, "data-live")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    assert!(live.starts_with("/console/inbox/live?since="), "{live}");
    let mut stream = b
        .http
        .get(format!("{}{live}", b.base))
        .header(COOKIE, b.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "{:?}",
        stream.headers()
    );
    // The next event of the stream, if one comes within `wait`.
    async fn next_event(stream: &mut reqwest::Response, wait: Duration) -> Option<String> {
        let mut text = String::new();
        let until = tokio::time::Instant::now() + wait;
        loop {
            let chunk = tokio::time::timeout_at(until, stream.chunk())
                .await
                .ok()?
                .ok()??;
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(e) = text.lines().find_map(|l| l.strip_prefix("event: ")) {
                return Some(e.to_string());
            }
        }
    }
    // Another department's new issue: nothing for urban's inbox.
    report(
        &api,
        &addr,
        json!({"category": "air_pollution", "unit": "g-0001", "description": "smoke"}),
    )
    .await;
    assert_eq!(
        next_event(&mut stream, Duration::from_millis(1500)).await,
        None
    );
    // Urban's: told within a second of the answer.
    let committed = std::time::Instant::now();
    let id = report(
        &api,
        &addr,
        json!({"category": "garbage", "unit": "g-0001", "description": "bins"}),
    )
    .await;
    let heard = next_event(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(heard.as_deref(), Some("changed"), "within a second");
    println!(
        "console: an open inbox heard of issue {id} {:.0} ms after its commit was answered",
        committed.elapsed().as_secs_f64() * 1000.0
    );
    let p = b.get("/console/inbox").await;
    assert!(listed(&p.body).contains(&id));
    // A burst of assignments is read once per settle time (250 ms), not once per commit; the
    // last read sees them all.
    let burst = std::time::Instant::now();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            report(
                &api,
                &addr,
                json!({"category": "garbage", "unit": "g-0003", "description": format!("burst {n}")}),
            )
            .await,
        );
    }
    let took = burst.elapsed();
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut told = String::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(until, stream.chunk()).await {
        told.push_str(&String::from_utf8_lossy(&chunk));
    }
    let changes = told.matches("event: changed").count();
    let most = took.as_millis() as usize / 250 + 2;
    assert!(
        (1..=most).contains(&changes),
        "{changes} changes told for 20 commits in {took:?} (at most {most})"
    );
    let p = b.get("/console/inbox").await;
    assert!(
        ids.iter().all(|i| listed(&p.body).contains(i)),
        "{}",
        p.body
    );
    // Signing out ends the stream.
    b.post("/console/sign-out", &[("csrf", csrf(&p.body).as_str())])
        .await;
    // Any commit makes the stream look again; it finds the session over.
    report(
        &api,
        &addr,
        json!({"category": "garbage", "unit": "g-0002", "description": "more bins"}),
    )
    .await;
    assert_eq!(
        next_event(&mut stream, Duration::from_secs(3))
            .await
            .as_deref(),
        Some("ended")
    );
}

/// A street's leader sees its subtree's overdue and escalated work on the board, grouped by the
/// community it lies in, and nothing of another street; a department has no board.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_sees_the_overdue_and_escalated_work_of_its_subtree_by_unit() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    let (_, late) = api
        .post(
            &api.admin,
            "/api/v1/issues",
            json!({"category": "garbage", "unit": "g-0001", "description": "bins"}),
        )
        .await;
    let late = late["id"].as_str().unwrap().to_string();
    // Two working days on: the acknowledge deadline passed and the ladder acted.
    api.advance("2026-03-04T17:00:00+08:00").await;
    let (_, fresh) = api
        .post(
            &api.admin,
            "/api/v1/issues",
            json!({"category": "garbage", "unit": "g-0002", "description": "fresh"}),
        )
        .await;
    let fresh = fresh["id"].as_str().unwrap().to_string();
    let mut leader = signed_in(&api, "p-s-huayuanlu").await;
    let p = leader.get("/console/board").await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    let shown = listed(&p.body);
    assert!(shown.contains(&late), "the overdue issue: {shown:?}");
    assert!(
        !shown.contains(&fresh),
        "on time and not escalated: {shown:?}"
    );
    // Its acknowledge deadline passed (the ladder extended it since): the API's overdue board
    // of the street says the same.
    let (_, board) = api
        .get(&api.admin, "/api/v1/units/s-huayuanlu/overdue")
        .await;
    let overdue: Vec<&str> = board["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(overdue, [late.as_str()], "{board}");
    assert!(p.body.contains("<svg class=\"chart\""), "{}", p.body);
    // Grouped under the community below the street.
    assert!(
        p.body.contains("<summary>农科社区 (1)</summary>"),
        "{}",
        p.body
    );
    // A department has no board; a leader elsewhere sees none of it.
    let mut urban = signed_in(&api, "p-urban-li").await;
    assert_eq!(urban.get("/console/board").await.status, 403);
    let mut elsewhere = signed_in(&api, "p-s-jingbalu").await;
    let p = elsewhere.get("/console/board").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(listed(&p.body).is_empty(), "{}", p.body);
}

/// A department reads its scorecard as a chart and a table, and takes it away as CSV; a
/// reporter reads none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_reads_its_scorecard_and_exports_it() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    let (_, issue) = api
        .post(
            &api.admin,
            "/api/v1/issues",
            json!({"category": "garbage", "unit": "g-0001", "description": "bins"}),
        )
        .await;
    let id = issue["id"].as_str().unwrap().to_string();
    let (code, _) = api
        .act(&api.admin, &id, json!({"event": "acknowledged"}))
        .await;
    assert_eq!(code, 200);
    let (code, _) = api
        .act(
            &api.admin,
            &id,
            json!({"event": "resolved", "note": "done"}),
        )
        .await;
    assert_eq!(code, 200);
    api.advance("2026-03-02T12:00:00+08:00").await;
    let mut urban = signed_in(&api, "p-urban-li").await;
    let p = urban.get("/console/scorecards?period=week").await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    assert!(p.body.contains("<svg class=\"chart\""), "{}", p.body);
    // Its own card only: one row, assigned 1, resolved 1 on time.
    assert_eq!(
        p.body.matches("<th scope=\"row\">").count(),
        1,
        "{}",
        p.body
    );
    assert!(
        p.body.contains("<td>1</td><td>1</td><td>1</td><td>1</td>"),
        "{}",
        p.body
    );
    let r = urban
        .http
        .get(format!("{}/console/scorecards.csv?period=week", urban.base))
        .header(COOKIE, urban.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let csv = r.text().await.unwrap();
    let mut lines = csv.lines();
    assert!(
        lines.next().unwrap().starts_with("kind,id,name,assigned"),
        "{csv}"
    );
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&row[..2], ["department", "urban"], "{csv}");
    assert_eq!(row[3], "1", "assigned: {csv}");
    assert_eq!(lines.next(), None, "its own card only: {csv}");
    assert_eq!(
        urban.get("/console/scorecards?period=year").await.status,
        400
    );
    // A chosen period: the day of the issue counts it, the day before does not; the CSV
    // link carries the days.
    let p = urban
        .get("/console/scorecards?from=2026-03-02&to=2026-03-02")
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("<td>1</td><td>1</td><td>1</td><td>1</td>"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("datetime=\"2026-03-01T16:00:00Z\""),
        "local midnight: {}",
        p.body
    );
    assert!(
        p.body.contains("from=2026-03-02&amp;to=2026-03-02"),
        "{}",
        p.body
    );
    let p = urban
        .get("/console/scorecards?from=2026-03-01&to=2026-03-01")
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("<td>0</td>"), "{}", p.body);
    assert!(
        !p.body.contains("<td>1</td><td>1</td><td>1</td><td>1</td>"),
        "{}",
        p.body
    );
    for (query, says) in [
        ("from=2026-03-05&to=2026-03-01", "is after"),
        ("from=2025-01-01&to=2026-03-01", "longer than 366 days"),
        ("from=March", "is not a day"),
    ] {
        let p = urban.get(&format!("/console/scorecards?{query}")).await;
        assert_eq!(p.status, 400, "{query}: {}", p.body);
        assert!(p.body.contains(says), "{query}: {}", p.body);
    }
    let mut reporter = signed_in(&api, "p-g-0001").await;
    assert_eq!(reporter.get("/console/scorecards").await.status, 403);
}

/// The big screen opens with a kiosk link and shows counts and a ticker, never an issue's text
/// or reporter; the kiosk's token can do nothing else, and the wall follows new reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_link_opens_the_wall_and_nothing_else() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    for (unit, text) in [("g-0001", "secret text one"), ("g-0002", "secret text two")] {
        let (code, _) = api
            .post(
                &api.admin,
                "/api/v1/issues",
                json!({"category": "garbage", "unit": unit, "description": text, "reporter": "p-g-0001"}),
            )
            .await;
        assert_eq!(code, 201);
    }
    let kiosk = support::token(&api.engine, "kiosk", None).await;
    let mut wall = Browser::new(api.base.trim_start_matches("http://"));
    let p = wall.get(&format!("/console/wall/{kiosk}")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    assert!(
        p.body
            .contains("<span class=\"number\" id=\"reported-today\">2</span>"),
        "{}",
        p.body
    );
    assert!(
        p.body
            .contains("<span class=\"number\" id=\"open-now\">2</span>"),
        "{}",
        p.body
    );
    assert!(
        !p.body.contains("secret text"),
        "no issue's text on the wall"
    );
    assert!(!p.body.contains("p-g-0001"), "no reporter on the wall");
    // The kiosk's token opens nothing else: the API refuses it, and as a session it is none.
    let k = support::client(&kiosk);
    assert_eq!(api.get(&k, "/api/v1/issues").await.0, 403);
    let (code, _) = api
        .post(
            &k,
            "/api/v1/issues",
            json!({"category": "garbage", "unit": "g-0001", "description": "x"}),
        )
        .await;
    assert_eq!(code, 403);
    wall.cookie = Some(format!("escalade_session={kiosk}"));
    let p = wall.get("/console/inbox").await;
    assert_eq!(p.status, 303, "a kiosk has no session: {}", p.body);
    // Another role's token, or none that works, opens no wall.
    let dept = support::token(&api.engine, "department", Some("urban")).await;
    assert_eq!(wall.get(&format!("/console/wall/{dept}")).await.status, 403);
    assert_eq!(wall.get("/console/wall/nonsense").await.status, 401);
    // The wall hears of a new report.
    wall.cookie = None;
    let p = wall.get(&format!("/console/wall/{kiosk}")).await;
    let live = hidden_attr(&p.body, "data-live").replace("&#x2f;", "/");
    let mut stream = wall
        .http
        .get(format!("{}{live}", wall.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let (code, _) = api
        .post(
            &api.admin,
            "/api/v1/issues",
            json!({"category": "garbage", "unit": "g-0003", "description": "third"}),
        )
        .await;
    assert_eq!(code, 201);
    let mut text = String::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains("event: changed") {
        let chunk = tokio::time::timeout_at(until, stream.chunk())
            .await
            .expect("a change within 5 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let p = wall.get(&format!("/console/wall/{kiosk}")).await;
    assert!(
        p.body.contains("id=\"reported-today\">3</span>"),
        "{}",
        p.body
    );
}

/// An administrator steers from the console: the live rules and the last reload with its
/// diagnostics at file:line:column, a reload refused and one accepted; the outbox by status and
/// a retry refused for a message that is not dead; every token, and one revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_reloads_the_rules_reads_the_outbox_and_revokes_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules");
    support::copy_rules(CITY, &rules);
    let rules_arg = rules.to_str().unwrap().to_string();
    let db = TestDb::new(&tmp.path().join("state"));
    let config = tmp.path().join("escalade.yaml");
    std::fs::write(&config, "console: {admins: [p-mayor]}\n").unwrap();
    let cfg = config.to_str().unwrap();
    let admin = admin_token(&db, &rules_arg);
    let out = escalade_in(
        &db,
        &[],
        &[
            "person", "invite", "p-mayor", "--rules", &rules_arg, "--config", cfg,
        ],
    );
    expect_code(&out, 0, "person invite");
    let link = String::from_utf8(out.stdout).unwrap();
    let invite = link[link.find("/console/invite/").unwrap()..]
        .trim()
        .to_string();
    let (_daemon, addr) = start_with(
        &db,
        &rules_arg,
        std::process::Command::new(env!("CARGO_BIN_EXE_escalade")),
        &["--config", cfg],
    );
    let api = support::client(&admin);
    report(
        &api,
        &addr,
        json!({"category": "garbage", "unit": "g-0001", "description": "bins"}),
    )
    .await;
    let mut b = Browser::new(&addr);
    b.accept(&invite, "mayor pass 2026").await;
    // As the city's leader first: no administration.
    assert_eq!(b.get("/console/admin/rules").await.status, 403);
    let p = b.get("/console/inbox").await;
    let switched = b
        .post(
            "/console/role",
            &[("role", "admin"), ("csrf", &csrf(&p.body))],
        )
        .await;
    assert_eq!(switched.status, 303, "{}", switched.body);

    let live: Value = api
        .get(format!("http://{addr}/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let version = live["version"].as_str().unwrap().to_string();
    let p = b.get("/console/admin/rules").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body
            .contains(&format!("<code id=\"live-version\">{version}</code>")),
        "{}",
        p.body
    );
    let token = csrf(&p.body);
    // A broken file: refused, the diagnostic names where, the old rules stay.
    let categories = rules.join("categories.yaml");
    let good = std::fs::read_to_string(&categories).unwrap();
    std::fs::write(
        &categories,
        good.replacen("department: urban", "department: nowhere", 1),
    )
    .unwrap();
    let r = b
        .post("/console/admin/rules/reload", &[("csrf", token.as_str())])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let p = b.get("/console/admin/rules").await;
    assert!(
        p.body.contains("id=\"last-outcome\">invalid</span>"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("categories.yaml:"),
        "file:line:column: {}",
        p.body
    );
    assert!(p.body.contains("nowhere"), "{}", p.body);
    assert!(
        p.body
            .contains(&format!("<code id=\"live-version\">{version}</code>")),
        "{}",
        p.body
    );
    // Mended: the same rules, unchanged.
    std::fs::write(&categories, &good).unwrap();
    b.post("/console/admin/rules/reload", &[("csrf", token.as_str())])
        .await;
    let p = b.get("/console/admin/rules").await;
    assert!(
        p.body.contains("id=\"last-outcome\">unchanged</span>"),
        "{}",
        p.body
    );
    // Without the form's token: refused.
    assert_eq!(b.post("/console/admin/rules/reload", &[]).await.status, 403);

    // The outbox: the report's messages wait (no channel is configured); one is not dead, so
    // it is not retried.
    let p = b.get("/console/admin/outbox?status=queued").await;
    assert_eq!(p.status, 200, "{}", p.body);
    let at = p.body.find("<tr id=\"message-").expect("a queued message");
    let rest = &p.body[at + "<tr id=\"message-".len()..];
    let id = &rest[..rest.find('"').unwrap()];
    let r = b
        .post(
            &format!("/console/admin/outbox/{id}/retry"),
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(b.get("/console/admin/outbox?status=lost").await.status, 400);

    // Access: the admin token is listed and revoked; the API refuses it after.
    let p = b.get("/console/admin/tokens").await;
    assert!(p.body.contains("<tr id=\"token-1\">"), "{}", p.body);
    assert!(p.body.contains("console session"), "{}", p.body);
    let r = b
        .post(
            "/console/admin/tokens/1/revoke",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let refused = api
        .get(format!("http://{addr}/api/v1/issues"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

/// An inbox longer than a page links to the next, with its filters kept; the pages together
/// list every open issue once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_of_more_than_a_page_goes_on_to_the_next() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    let mut ids = Vec::new();
    for i in 0..53 {
        let (code, v) = api
            .post(
                &api.admin,
                "/api/v1/issues",
                json!({"category": "garbage", "unit": "g-0001", "description": format!("bins {i}")}),
            )
            .await;
        assert_eq!(code, 201);
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let mut urban = signed_in(&api, "p-urban-li").await;
    let first = urban.get("/console/inbox?state=assigned").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(listed(&first.body).len(), 50);
    let at = first
        .body
        .find("id=\"more\"")
        .expect("a link to the next page");
    let start = first.body[..at].rfind("href=\"").unwrap() + "href=\"".len();
    let link = first.body[start..at]
        .trim_end_matches("\" ")
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    assert!(
        link.starts_with("/console/inbox?state=assigned&after="),
        "{link}"
    );
    let second = urban.get(&link).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let mut all = listed(&first.body);
    all.extend(listed(&second.body));
    all.sort();
    ids.sort();
    assert_eq!(all, ids);
    assert!(!second.body.contains("id=\"more\""), "the last page");
}

/// A department asks for more time; the street's leader, whom the policy names, decides it on
/// the issue page; the department itself is offered no decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_grants_an_extension_on_the_issue_page() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    let (_, v) = api
        .post(
            &api.admin,
            "/api/v1/issues",
            json!({"category": "garbage", "unit": "g-0001", "description": "bins"}),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    let urban_api = api.client("department", Some("urban")).await;
    assert_eq!(
        api.act(&urban_api, &id, json!({"event": "acknowledged"}))
            .await
            .0,
        200
    );
    let (code, asked) = api
        .act(
            &urban_api,
            &id,
            json!({"event": "extension_requested", "duration": "1d", "reason": "waiting for a truck"}),
        )
        .await;
    assert_eq!(code, 200, "{asked}");
    let before =
        api.get(&api.admin, &format!("/api/v1/issues/{id}")).await.1["state"]["resolve_by"]
            .as_str()
            .unwrap()
            .to_string();
    let mut urban = signed_in(&api, "p-urban-li").await;
    let p = urban.get(&format!("/console/issues/{id}")).await;
    assert!(!p.body.contains("value=\"request_decided\""), "{}", p.body);
    let mut leader = signed_in(&api, "p-s-huayuanlu").await;
    let page = format!("/console/issues/{id}");
    let p = leader.get(&page).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("value=\"request_decided\""), "{}", p.body);
    assert!(p.body.contains("waiting for a truck"), "{}", p.body);
    let token = csrf(&p.body);
    let decided = leader
        .post(
            &format!("{page}/act"),
            &[
                ("event", "request_decided"),
                ("request", "extension"),
                ("granted", "true"),
                ("note", "agreed"),
                ("csrf", token.as_str()),
            ],
        )
        .await;
    assert_eq!(decided.status, 303, "{}", decided.body);
    let state = api.get(&api.admin, &format!("/api/v1/issues/{id}")).await.1["state"].clone();
    assert!(state.get("request").is_none_or(|r| r.is_null()), "{state}");
    assert!(
        state["resolve_by"].as_str().unwrap() > before.as_str(),
        "moved from {before}: {state}"
    );
    // Decided: no form any more.
    let p = leader.get(&page).await;
    assert!(!p.body.contains("value=\"request_decided\""), "{}", p.body);
}

/// The `datetime` of each step a page's "if nobody acts" list shows, in its order.
fn steps_ahead(page: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
    let Some(at) = page.find("<ol class=\"next\">") else {
        return Vec::new();
    };
    let list = &page[at..page[at..].find("</ol>").unwrap() + at];
    list.match_indices("datetime=\"")
        .map(|(i, m)| {
            let rest = &list[i + m.len()..];
            support::at(&rest[..rest.find('"').unwrap()])
        })
        .collect()
}

/// The rung a page marks as where the issue is now.
fn current_rung(page: &str) -> String {
    let at = page
        .find("aria-current=\"step\">")
        .unwrap_or_else(|| panic!("no current rung in {page}"));
    let rest = &page[at + "aria-current=\"step\">".len()..];
    rest[..rest.find("</li>").unwrap()].to_string()
}

/// The issue page shows the ladder: the issue's branch with the tier it is at, and what happens
/// next and when if nobody acts, as the pending timers will fire it. Once the resolve deadline
/// has passed twice the issue is a tier up, and the page says so and shows the step after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_page_shows_the_ladder_and_what_happens_next_if_nobody_acts() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    let (_, v) = api
        .post(
            &api.admin,
            "/api/v1/issues",
            json!({"category": "garbage", "unit": "g-0001", "description": "bins"}),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    let page = format!("/console/issues/{id}");
    let mut urban = signed_in(&api, "p-urban-li").await;
    let p = urban.get(&page).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let rung = current_rung(&p.body);
    assert!(
        rung.contains("网格") && rung.contains("农科社区第1网格"),
        "{rung}"
    );
    // The first step to come is when the acknowledge deadline passes.
    let stored = api.get(&api.admin, &format!("/api/v1/issues/{id}")).await.1;
    let ack_by = support::at(stored["state"]["acknowledge_by"].as_str().unwrap());
    let steps = steps_ahead(&p.body);
    assert_eq!(steps.first(), Some(&ack_by), "{}", p.body);
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
    assert!(p.body.contains("签收超时"), "{}", p.body);
    // The acknowledge steps remind and extend: the issue stays at the grid.
    assert!(p.body.contains("签收超时: 仍在 网格"), "{}", p.body);

    // Acknowledged: the acknowledge steps are gone; the next is the resolve deadline's.
    let urban_api = api.client("department", Some("urban")).await;
    assert_eq!(
        api.act(&urban_api, &id, json!({"event": "acknowledged"}))
            .await
            .0,
        200
    );
    let p = urban.get(&page).await;
    assert!(!p.body.contains("签收超时"), "{}", p.body);
    let stored = api.get(&api.admin, &format!("/api/v1/issues/{id}")).await.1;
    let resolve_by = support::at(stored["state"]["resolve_by"].as_str().unwrap());
    assert_eq!(
        steps_ahead(&p.body).first(),
        Some(&resolve_by),
        "{}",
        p.body
    );

    // Nobody acts: the resolve deadline passes, is extended, passes again, and the issue
    // climbs to the community, as the page had said it would.
    let said = steps_ahead(&p.body);
    assert!(said.len() >= 2, "{said:?}");
    for at in &said[..2] {
        api.clock.set(*at);
        while api.engine.fire_due().await.unwrap() > 0 {}
    }
    let stored = api.get(&api.admin, &format!("/api/v1/issues/{id}")).await.1;
    assert_eq!(stored["state"]["tier"], "community", "{stored}");
    // A week on, the morning's session has expired: signed in again.
    let mut urban = signed_in(&api, "p-urban-li").await;
    let p = urban.get(&page).await;
    assert_eq!(p.status, 200, "{p:?}");
    let rung = current_rung(&p.body);
    assert!(rung.contains("社区") && !rung.contains("网格"), "{rung}");
    let next = steps_ahead(&p.body);
    assert!(next.first().is_some_and(|n| *n > said[1]), "{next:?}");
    assert!(p.body.contains("升至 街道"), "{}", p.body);

    // Resolved: nothing is pending.
    assert_eq!(
        api.act(
            &urban_api,
            &id,
            json!({"event": "resolved", "note": "cleared"})
        )
        .await
        .0,
        200
    );
    let p = urban.get(&page).await;
    assert!(steps_ahead(&p.body).is_empty(), "{}", p.body);
    assert!(p.body.contains("没有待发生的升级"), "{}", p.body);
}

/// The options of select `id` on a page, as `(value, label)`.
fn options(page: &str, id: &str) -> Vec<(String, String)> {
    let at = page
        .find(&format!("<select id=\"{id}\""))
        .unwrap_or_else(|| panic!("no select {id} in {page}"));
    let select = &page[at..at + page[at..].find("</select>").unwrap()];
    select
        .match_indices("<option value=\"")
        .map(|(i, m)| {
            let rest = &select[i + m.len()..];
            let value = &rest[..rest.find('"').unwrap()];
            let label = &rest[rest.find('>').unwrap() + 1..];
            (
                value.to_string(),
                label[..label.find('<').unwrap()].to_string(),
            )
        })
        .collect()
}

/// The street's leader reassigns an issue to another department and merges a duplicate into
/// it from the issue page; the department rates the report; the grid's reporter closes a
/// small matter at the grid. Each goes through the engine as the API's would; a duplicate of
/// no issue is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_reassigns_and_merges_a_duplicate_a_department_rates_the_report() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    let mut ids = Vec::new();
    for text in [
        "bins overflowing",
        "bins overflowing again",
        "a bag on the path",
    ] {
        let (code, v) = api
            .post(
                &api.admin,
                "/api/v1/issues",
                json!({"category": "garbage", "unit": "g-0001", "description": text, "reporter": "p-g-0001"}),
            )
            .await;
        assert_eq!(code, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let state = |id: String| {
        let api = &api;
        async move { api.get(&api.admin, &format!("/api/v1/issues/{id}")).await.1["state"].clone() }
    };

    // The department rates the report.
    let mut urban = signed_in(&api, "p-urban-li").await;
    let page = format!("/console/issues/{}", ids[0]);
    let p = urban.get(&page).await;
    assert!(p.body.contains("value=\"report_rated\""), "{}", p.body);
    assert!(
        !p.body.contains("name=\"event\" value=\"duplicate\""),
        "{}",
        p.body
    );
    let verdicts: Vec<String> = options(&p.body, "report_rated-verdict")
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(verdicts, ["valid", "invalid", "duplicate", "not_ours"]);
    let rated = urban
        .post(
            &format!("{page}/act"),
            &[
                ("event", "report_rated"),
                ("verdict", "valid"),
                ("comment", "clear photo"),
                ("csrf", csrf(&p.body).as_str()),
            ],
        )
        .await;
    assert_eq!(rated.status, 303, "{}", rated.body);
    let timeline = api
        .get(&api.admin, &page.replace("/console/", "/api/v1/"))
        .await
        .1;
    assert!(
        timeline["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "report_rated" && e["payload"]["verdict"] == "valid"),
        "{timeline}"
    );

    // The leader reassigns it: the choice is every department but the ones holding it.
    let mut leader = signed_in(&api, "p-s-huayuanlu").await;
    let p = leader.get(&page).await;
    let choices = options(&p.body, "reassigned-department");
    assert!(
        !choices.is_empty() && choices.iter().all(|(d, _)| d != "urban"),
        "{choices:?}"
    );
    let (to, name) = choices[0].clone();
    assert!(
        !name.is_empty() && name != to,
        "named in the leader's language: {name}"
    );
    let moved = leader
        .post(
            &format!("{page}/act"),
            &[
                ("event", "reassigned"),
                ("department", to.as_str()),
                ("csrf", csrf(&p.body).as_str()),
            ],
        )
        .await;
    assert_eq!(moved.status, 303, "{}", moved.body);
    assert_eq!(state(ids[0].clone()).await["departments"], json!([to]));

    // A duplicate of no issue: refused, nothing changes.
    let dup_page = format!("/console/issues/{}", ids[1]);
    let p = leader.get(&dup_page).await;
    let token = csrf(&p.body);
    let before = state(ids[1].clone()).await;
    let refused = leader
        .post(
            &format!("{dup_page}/act"),
            &[
                ("event", "duplicate"),
                ("original", "999999"),
                ("csrf", token.as_str()),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("999999"), "{}", refused.body);
    assert_eq!(state(ids[1].clone()).await, before);
    // The duplicate of the first: closed, following it.
    let merged = leader
        .post(
            &format!("{dup_page}/act"),
            &[
                ("event", "duplicate"),
                ("original", ids[0].as_str()),
                ("csrf", token.as_str()),
            ],
        )
        .await;
    assert_eq!(merged.status, 303, "{}", merged.body);
    let after = state(ids[1].clone()).await;
    assert_eq!(after["state"], "closed", "{after}");

    // The grid's reporter closes the third at the grid.
    let mut grid = signed_in(&api, "p-g-0001").await;
    let page = format!("/console/issues/{}", ids[2]);
    let p = grid.get(&page).await;
    assert!(p.body.contains("value=\"closed_at_grid\""), "{}", p.body);
    let closed = grid
        .post(
            &format!("{page}/act"),
            &[
                ("event", "closed_at_grid"),
                ("note", "picked it up myself"),
                ("csrf", csrf(&p.body).as_str()),
            ],
        )
        .await;
    assert_eq!(closed.status, 303, "{}", closed.body);
    assert_eq!(state(ids[2].clone()).await["state"], "closed_at_grid");
}

/// A grid leader's own reports, the latest first with their states, a page at a time: not
/// another reporter's, nor one the centre filed in the same grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reporter_reads_their_own_reports_the_latest_first() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    let mut mine = Vec::new();
    for n in 0..53 {
        api.clock
            .set(support::at("2026-03-02T09:00:00+08:00") + chrono::Duration::seconds(n));
        let (code, v) = api
            .post(
                &api.admin,
                "/api/v1/issues",
                json!({"category": "garbage", "unit": "g-0001", "description": format!("bins {n}"), "reporter": "p-g-0001"}),
            )
            .await;
        assert_eq!(code, 201, "{v}");
        mine.push(v["id"].as_str().unwrap().to_string());
    }
    for body in [
        json!({"category": "garbage", "unit": "g-0001", "description": "the centre's own"}),
        json!({"category": "garbage", "unit": "g-0002", "description": "next door", "reporter": "p-g-0002"}),
    ] {
        assert_eq!(api.post(&api.admin, "/api/v1/issues", body).await.0, 201);
    }
    mine.reverse();
    let mut grid = signed_in(&api, "p-g-0001").await;
    let p = grid.get("/console/mine").await;
    assert_eq!(p.status, 200, "{}", p.body);
    let first = listed(&p.body);
    assert_eq!(first, mine[..50], "{}", p.body);
    assert!(p.body.contains("已派遣"), "{}", p.body);
    let end = p.body.find("\" id=\"more\"").unwrap();
    let start = p.body[..end].rfind("href=\"").unwrap() + "href=\"".len();
    let more = p.body[start..end]
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    let p = grid.get(&more).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(listed(&p.body), mine[50..], "{}", p.body);
    assert!(!p.body.contains("id=\"more\""), "{}", p.body);
    assert_eq!(grid.get("/console/mine?after=nonsense").await.status, 400);

    // Someone who reported nothing reads that they have not.
    let mut other = signed_in(&api, "p-g-0003").await;
    let p = other.get("/console/mine").await;
    assert!(
        listed(&p.body).is_empty() && p.body.contains("您还没有上报过问题"),
        "{}",
        p.body
    );
}

/// The board's counts are every issue needing attention, not only the hundred it lists: 103
/// overdue in one community, one raised to the street in another (an emergency nobody took),
/// none from the street next door; by unit and by department.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_counts_every_issue_needing_attention_and_lists_the_most_urgent() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    let report = |category: &'static str, unit: &'static str| {
        let api = &api;
        async move {
            let (code, v) = api
                .post(
                    &api.admin,
                    "/api/v1/issues",
                    json!({"category": category, "unit": unit, "description": "x"}),
                )
                .await;
            assert_eq!(code, 201, "{v}");
            v["id"].as_str().unwrap().to_string()
        }
    };
    for _ in 0..103 {
        report("garbage", "g-0001").await;
    }
    report("garbage", "g-0022").await;
    api.advance("2026-03-04T17:00:00+08:00").await;
    let raised = report("gas_leak", "g-0008").await;
    // Nobody acknowledges it in 30 minutes: the street is called.
    api.advance("2026-03-04T17:31:00+08:00").await;
    let stored = api
        .get(&api.admin, &format!("/api/v1/issues/{raised}"))
        .await
        .1;
    assert_eq!(stored["state"]["tier"], "street", "{stored}");

    let mut leader = signed_in(&api, "p-s-huayuanlu").await;
    let p = leader.get("/console/board").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("<strong id=\"board-total\">104</strong>"),
        "{}",
        p.body
    );
    assert_eq!(listed(&p.body).len(), 100, "{}", p.body);
    // The nearest deadlines first: the overdue ones; the raised one, not overdue, is counted.
    assert!(!listed(&p.body).contains(&raised), "{}", p.body);
    assert!(
        p.body.contains("<summary>农科社区 (103)</summary>"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("<summary>丰产社区 (1)</summary>"),
        "{}",
        p.body
    );
    assert!(p.body.contains("城市管理局: 103"), "{}", p.body);
    assert!(p.body.contains("公用事业局: 1"), "{}", p.body);
    // By lead department: the fire brigade assists with the gas leak, and is not counted.
    assert!(!p.body.contains("消防救援支队: "), "{}", p.body);
}

/// Failed sign-ins close signing in for the person for the throttle's window, counted on the
/// daemon's clock: once it has passed, the right password works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_person_signs_in_again_once_the_window_has_passed() {
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    signed_in(&api, "p-urban-li").await;
    let mut b = Browser::new(api.base.trim_start_matches("http://"));
    let try_with = |password: &'static str| [("person", "p-urban-li"), ("password", password)];
    for _ in 0..5 {
        assert_eq!(
            b.post("/console/sign-in", &try_with("wrong")).await.status,
            401
        );
    }
    let right = try_with("a long enough password");
    assert_eq!(b.post("/console/sign-in", &right).await.status, 429);
    api.clock.set(support::at("2026-03-02T09:14:00+08:00"));
    assert_eq!(b.post("/console/sign-in", &right).await.status, 429);
    api.clock.set(support::at("2026-03-02T09:16:00+08:00"));
    assert_eq!(b.post("/console/sign-in", &right).await.status, 303);
}
