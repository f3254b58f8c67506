//! Joint meetings through the API on the example organisation: issues convened to one meeting,
//! who may see and record it, the outcome applied to every agenda issue (a closed one skipped),
//! a recording repeated or contradicted, bad outcomes that change nothing; and comments.

use serde_json::json;

mod support;

use support::{Api, at, fire_hazard};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

async fn start() -> Api {
    Api::start(CITY, "2026-03-03T10:00:00+08:00").await
}

/// The kinds of issue `id`'s events, in order.
async fn events(s: &Api, id: &str) -> Vec<String> {
    s.engine
        .store()
        .timeline(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joint_meeting_is_convened_seen_by_its_invitees_and_its_outcome_recorded_once() {
    let s = start().await;
    let admin = s.client("admin", None).await;
    let (st, a) = s
        .post(&admin, "/api/v1/issues", fire_hazard("g-0001"))
        .await;
    assert_eq!(st, 201, "{a}");
    let (st, b) = s
        .post(&admin, "/api/v1/issues", fire_hazard("g-0002"))
        .await;
    assert_eq!(st, 201, "{b}");
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    // Both issues are on the agenda of one meeting, Wednesday 09:00 Beijing time.
    let (st, list) = s.get(&admin, "/api/v1/meetings").await;
    assert_eq!(st, 200, "{list}");
    let meetings = list["meetings"].as_array().unwrap();
    assert_eq!(meetings.len(), 1, "{list}");
    let m = &meetings[0];
    assert_eq!(m["kind"], "joint");
    assert_eq!(m["status"], "scheduled");
    assert_eq!(m["at"], "2026-03-04T01:00:00Z");
    let agenda: Vec<&str> = m["agenda"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["issue"].as_str().unwrap())
        .collect();
    assert_eq!(agenda, [a, b]);
    for p in ["p-fire-tao", "p-g-0001", "p-g-0002", "p-jinshui"] {
        assert!(
            m["participants"].as_array().unwrap().contains(&json!(p)),
            "{p} not invited: {m}"
        );
    }
    let id = m["id"].as_i64().unwrap();
    let path = format!("/api/v1/meetings/{id}");
    let outcome = format!("{path}/outcome");

    // Who sees it: the invited department, a leader of a subtree with an agenda issue.
    let fire = s.client("department", Some("fire")).await;
    let water = s.client("department", Some("water")).await;
    let grid_leader = s.client("leader", Some("g-0001")).await;
    let other_leader = s.client("leader", Some("d-erqi")).await;
    let reporter = s.client("reporter", Some("g-0001")).await;
    assert_eq!(s.get(&fire, &path).await.0, 200);
    assert_eq!(s.get(&grid_leader, &path).await.0, 200);
    let (st, body) = s.get(&water, &path).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(s.get(&other_leader, &path).await.0, 403);
    // A leader sees only the agenda items of its subtree, and not the people invited for the
    // others: g-0001's leader sees issue a, not b of g-0002 nor who was invited for it.
    for listed in [
        s.get(&grid_leader, &path).await.1,
        s.get(&grid_leader, "/api/v1/meetings").await.1["meetings"][0].clone(),
    ] {
        let agenda: Vec<&str> = listed["agenda"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["issue"].as_str().unwrap())
            .collect();
        assert_eq!(agenda, [a], "{listed}");
        assert_eq!(listed["participants"], json!([]), "{listed}");
        assert!(
            listed
                .get("issues")
                .is_none_or(|i| i.as_array().unwrap().len() == 1),
            "{listed}"
        );
    }
    let (st, body) = s.get(&water, "/api/v1/meetings").await;
    assert_eq!(st, 200);
    assert_eq!(body["meetings"], json!([]));
    let (st, body) = s.get(&reporter, "/api/v1/meetings").await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (st, body) = s.get(&admin, "/api/v1/meetings/999").await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(s.get(&admin, "/api/v1/meetings/abc").await.0, 404);
    let (st, body) = s.get(&admin, "/api/v1/meetings?status=later").await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );

    // The grid reporter handles issue b before the meeting.
    let (st, body) = s
        .post(
            &reporter,
            &format!("/api/v1/issues/{b}/events"),
            json!({"event": "closed_at_grid", "note": "cleared the stairs"}),
        )
        .await;
    assert_eq!(st, 403, "a g-0001 reporter may not touch g-0002: {body}");
    let reporter_b = s.client("reporter", Some("g-0002")).await;
    let (st, body) = s
        .post(
            &reporter_b,
            &format!("/api/v1/issues/{b}/events"),
            json!({"event": "closed_at_grid", "note": "cleared the stairs"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");

    let enforcement = json!({"outcome": "enforcement", "departments": ["urban", "housing"],
                             "resolve": "3d", "note": "joint inspection of the estate"});
    // Before the meeting sits: refused, nothing changes.
    let (st, body) = s.post(&admin, &outcome, enforcement.clone()).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("meeting_not_yet")),
        "{body}"
    );
    s.clock.set(at("2026-03-04T11:00:00+08:00"));
    // Bad outcomes, each refused with nothing changed.
    for (bad, field) in [
        (json!({"outcome": "enforcement"}), Some("departments")),
        (
            json!({"outcome": "enforcement", "departments": ["nobody"]}),
            Some("departments"),
        ),
        (
            json!({"outcome": "noted", "departments": ["urban"]}),
            Some("departments"),
        ),
        (json!({"outcome": "postponed"}), None),
        (json!({"outcome": "noted", "minutes": "x"}), None),
    ] {
        let (st, body) = s.post(&admin, &outcome, bad.clone()).await;
        assert_eq!(st, 422, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid", "{bad}: {body}");
        if let Some(f) = field {
            assert_eq!(body["error"]["field"], f, "{bad}: {body}");
        }
    }
    // Not theirs to record: a department, a leader whose subtree lacks issue b.
    let (st, body) = s.post(&fire, &outcome, enforcement.clone()).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (st, _) = s.post(&grid_leader, &outcome, enforcement.clone()).await;
    assert_eq!(st, 403);
    let (_, m) = s.get(&admin, &path).await;
    assert_eq!(m["status"], "scheduled");
    assert_eq!(events(&s, a).await, ["reported"]);
    // Per issue, the outcome goes through the meeting.
    let (st, body) = s
        .post(
            &admin,
            &format!("/api/v1/issues/{a}/events"),
            json!({"event": "meeting_outcome", "meeting": "joint", "outcome": "noted"}),
        )
        .await;
    assert_eq!((st, body["error"]["code"].as_str()), (422, Some("invalid")));

    // The district's leader records the joint enforcement action.
    let district = s.client("leader", Some("d-jinshui")).await;
    let (st, held) = s.post(&district, &outcome, enforcement.clone()).await;
    assert_eq!(st, 200, "{held}");
    assert_eq!(held["status"], "held");
    assert_eq!(held["outcome"]["outcome"], "enforcement");
    assert!(
        held["recorded_by"]
            .as_str()
            .unwrap()
            .starts_with("leader:d-jinshui#")
    );
    let items = held["agenda"].as_array().unwrap();
    assert!(items[0]["outcome_seq"].is_i64(), "{held}");
    assert!(
        items[1]["skipped"]
            .as_str()
            .unwrap()
            .contains("closed_at_grid"),
        "{held}"
    );
    // The enforcement is tracked on the issue: its departments and its own deadline
    // (Wed 11:00 + 3 days on the fire department's round-the-clock calendar = Sat 11:00).
    let ia = &held["issues"][0];
    assert_eq!(ia["state"], "in_progress");
    assert_eq!(ia["departments"], json!(["fire", "urban", "housing"]));
    assert_eq!(ia["resolve_by"], "2026-03-07T03:00:00Z");
    assert_eq!(events(&s, a).await, ["reported", "meeting_outcome"]);
    assert_eq!(events(&s, b).await, ["reported", "closed_at_grid"]);
    // The housing department now sees issue a in its queue.
    let housing = s.client("department", Some("housing")).await;
    let (_, q) = s.get(&housing, "/api/v1/departments/housing/queue").await;
    assert_eq!(q["issues"][0]["id"], a, "{q}");

    // The same outcome again finishes nothing new; another one is refused.
    let (st, again) = s.post(&district, &outcome, enforcement).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(events(&s, a).await, ["reported", "meeting_outcome"]);
    let (st, body) = s
        .post(&district, &outcome, json!({"outcome": "resolved"}))
        .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("meeting_held"))
    );
    assert_eq!(body["error"]["recorded"]["outcome"], "enforcement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_who_sees_an_issue_may_comment_and_nobody_else() {
    let s = start().await;
    let admin = s.client("admin", None).await;
    let (_, a) = s
        .post(
            &admin,
            "/api/v1/issues",
            json!({"category": "garbage", "unit": "g-0001", "description": "小区门口垃圾三天未清运"}),
        )
        .await;
    let a = a["id"].as_str().unwrap();
    let events = format!("/api/v1/issues/{a}/events");
    let urban = s.client("department", Some("urban")).await;
    let reporter = s.client("reporter", Some("c-001")).await;
    let stranger = s.client("reporter", Some("g-0106")).await;
    let (st, body) = s
        .post(
            &urban,
            &events,
            json!({"event": "commented", "text": "truck booked for 14:00"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["state"]["state"], "assigned");
    let (st, _) = s
        .post(
            &reporter,
            &events,
            json!({"event": "commented", "text": "thanks"}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, body) = s
        .post(
            &stranger,
            &events,
            json!({"event": "commented", "text": "me too"}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (st, body) = s
        .post(&urban, &events, json!({"event": "commented", "text": " "}))
        .await;
    assert_eq!((st, body["error"]["field"].as_str()), (422, Some("text")));
    let (st, body) = s.post(&urban, &events, json!({"event": "commented"})).await;
    assert_eq!(st, 422, "{body}");
    let (_, issue) = s.get(&admin, &format!("/api/v1/issues/{a}")).await;
    let timeline: Vec<(&str, &str)> = issue["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["payload"]["text"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        timeline,
        [
            ("reported", ""),
            ("commented", "truck booked for 14:00"),
            ("commented", "thanks")
        ]
    );
}
