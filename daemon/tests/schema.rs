//! The API agrees with its document (`src/openapi.yaml`) where the two once differed: times are
//! RFC 3339 in UTC to the second, everywhere the API serves one.

use serde_json::{Value, json};

mod support;

use support::{Api, fire_hazard};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// Every string of `v` that reads as an RFC 3339 date-time, with where it sits.
fn times<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => out.push((path, s)),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                times(x, format!("{path}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                times(x, format!("{path}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// `2026-03-03T10:00:00Z`: UTC, to the second.
fn to_the_second(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ").is_ok() && s.len() == 20
}

/// Asserts every time in `v` is written to the second in UTC (but a reporter's description,
/// served as written); returns how many there were.
fn all_to_the_second(what: &str, v: &Value) -> usize {
    let mut out = Vec::new();
    times(v, String::new(), &mut out);
    out.retain(|(p, _)| !p.ends_with("/description"));
    let bad: Vec<_> = out.iter().filter(|(_, t)| !to_the_second(t)).collect();
    assert!(bad.is_empty(), "{what}: times not to the second: {bad:?}");
    out.len()
}

/// A clock with milliseconds, an issue that convenes a meeting, runs late, escalates and is
/// acted on: every answer's times (states, the timeline and its effects, the stored decisions
/// `explain` shows, outbox rows, the meeting, rule versions, scorecards' periods, an error's
/// time) are to the second; a reporter's words that look like a time are served as written;
/// `explain` still finds every stored decision the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_time_the_api_serves_is_utc_to_the_second() {
    let s = Api::start(CITY, "2026-03-03T10:00:00.123+08:00").await;
    let admin = s.admin.clone();
    let mut seen = 0;
    let (st, a) = s
        .post(&admin, "/api/v1/issues", fire_hazard("g-0001"))
        .await;
    assert_eq!(st, 201, "{a}");
    seen += all_to_the_second("submit", &a);
    let id = a["id"].as_str().unwrap().to_string();
    let words = "2026-03-03T02:00:00.123Z";
    let (st, b) = s
        .post(
            &admin,
            "/api/v1/issues",
            json!({"category": "fire_hazard", "unit": "g-0002", "description": words}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["issue"]["description"], words);

    // The meeting has not sat yet: the error names its time.
    let (st, m) = s.get(&admin, "/api/v1/meetings/1").await;
    assert_eq!(st, 200, "{m}");
    seen += all_to_the_second("meeting", &m);
    let (st, e) = s
        .post(
            &admin,
            "/api/v1/meetings/1/outcome",
            json!({"outcome": "noted"}),
        )
        .await;
    assert_eq!(st, 409, "{e}");
    assert!(to_the_second(e["error"]["at"].as_str().unwrap()), "{e}");

    // Late: the deadlines pass, the ladder climbs; then acted on.
    s.advance("2026-03-09T10:00:00.456+08:00").await;
    let (st, acted) = s.act(&admin, &id, json!({"event": "acknowledged"})).await;
    assert_eq!(st, 200, "{acted}");
    seen += all_to_the_second("act", &acted);
    let (st, acted) = s
        .act(&admin, &id, json!({"event": "commented", "text": "on it"}))
        .await;
    assert_eq!(st, 200, "{acted}");

    let (st, issue) = s.get(&admin, &format!("/api/v1/issues/{id}")).await;
    assert_eq!(st, 200, "{issue}");
    assert!(issue["timeline"].as_array().unwrap().len() >= 5, "{issue}");
    assert_eq!(
        issue["state"]["reported_at"], "2026-03-03T02:00:00Z",
        "cut, not rounded"
    );
    for path in [
        format!("/api/v1/issues/{id}"),
        format!("/api/v1/issues/{id}/explain"),
        "/api/v1/issues".into(),
        "/api/v1/departments/fire/queue".into(),
        "/api/v1/units/d-jinshui/overdue".into(),
        "/api/v1/outbox".into(),
        "/api/v1/meetings".into(),
        "/api/v1/meetings/1".into(),
        "/api/v1/rules".into(),
        "/api/v1/rules/versions".into(),
        "/api/v1/scorecards".into(),
    ] {
        let (st, v) = s.get(&admin, &path).await;
        assert_eq!(st, 200, "{path}: {v}");
        seen += all_to_the_second(&path, &v);
    }
    assert!(seen > 100, "only {seen} times seen");

    let (_, explain) = s.get(&admin, &format!("/api/v1/issues/{id}/explain")).await;
    assert_eq!(explain["all_match"], true, "{explain}");
    let (_, list) = s.get(&admin, "/api/v1/issues?unit=g-0002").await;
    assert_eq!(list["issues"][0]["issue"]["description"], words, "{list}");
}

/// An empty `cursor=` is 400 `invalid_query` naming `cursor` on every list, as the document
/// says (`minLength: 1`), not a first page.
#[tokio::test]
async fn an_empty_cursor_is_refused_naming_it_on_every_list() {
    let s = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    for list in [
        "/api/v1/issues",
        "/api/v1/departments/fire/queue",
        "/api/v1/units/d-jinshui/overdue",
        "/api/v1/meetings",
        "/api/v1/outbox",
        "/api/v1/rules/versions",
    ] {
        let (st, body) = s.get(&s.admin, &format!("{list}?cursor=")).await;
        assert_eq!(st, 400, "{list}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{list}: {body}");
        assert_eq!(body["error"]["field"], "cursor", "{list}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("empty"),
            "{list}: {body}"
        );
    }
}

/// A rating is an integer as JSON Schema counts them: `3.0` is 3; `3.5` is 422 naming
/// `rating`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rating_written_3_0_is_the_integer_3() {
    let s = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let admin = s.admin.clone();
    let (st, a) = s
        .post(&admin, "/api/v1/issues", fire_hazard("g-0001"))
        .await;
    assert_eq!(st, 201, "{a}");
    let id = a["id"].as_str().unwrap();
    for e in ["acknowledged", "resolved", "confirmed"] {
        let (st, body) = s.act(&admin, id, json!({"event": e})).await;
        assert_eq!(st, 200, "{e}: {body}");
    }
    let (st, body) = s
        .act(&admin, id, json!({"event": "evaluated", "rating": 3.5}))
        .await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["field"], "rating", "{body}");
    let (st, body) = s
        .act(&admin, id, json!({"event": "evaluated", "rating": 3.0}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["state"]["rating"], 3, "{body}");
}

/// The document gives every event `additionalProperties: false`: a field an event does not
/// have is 422 naming it, for events with fields and without, and nothing is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_a_field_it_does_not_have_is_refused_naming_it() {
    let s = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let admin = s.admin.clone();
    let (st, a) = s
        .post(&admin, "/api/v1/issues", fire_hazard("g-0001"))
        .await;
    assert_eq!(st, 201, "{a}");
    let id = a["id"].as_str().unwrap();
    for bad in [
        json!({"event": "acknowledged", "urgent": true}),
        json!({"event": "progress", "note": "x", "urgent": true}),
        json!({"event": "commented", "text": "x", "urgent": true}),
    ] {
        let (st, body) = s.act(&admin, id, bad.clone()).await;
        assert_eq!(st, 422, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid", "{bad}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("urgent"),
            "{bad}: {body}"
        );
        assert_eq!(body["error"]["field"], "urgent", "{bad}: {body}");
    }
    let timeline = s.engine.store().timeline(id).await.unwrap();
    assert_eq!(timeline.len(), 1, "only the report");
}

/// An unknown department, unit, tier or status in any list's filter is 400 naming it, never
/// an empty page.
#[tokio::test]
async fn unknown_filters_are_refused_on_every_list() {
    let s = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    for (path, field) in [
        ("/api/v1/issues?department=nobody", "department"),
        ("/api/v1/issues?tier=nowhere", "tier"),
        ("/api/v1/issues?unit=nowhere", "unit"),
        ("/api/v1/issues?state=later", "state"),
        ("/api/v1/departments/fire/queue?tier=nowhere", "tier"),
        ("/api/v1/departments/fire/queue?unit=nowhere", "unit"),
        (
            "/api/v1/units/d-jinshui/overdue?department=nobody",
            "department",
        ),
        ("/api/v1/units/d-jinshui/overdue?tier=nowhere", "tier"),
        ("/api/v1/meetings?status=later", "status"),
        ("/api/v1/outbox?status=later", "status"),
        ("/api/v1/scorecards?department=nobody", "department"),
        ("/api/v1/scorecards?unit=nowhere", "unit"),
    ] {
        let (st, body) = s.get(&s.admin, path).await;
        assert_eq!(st, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
}

/// Follows local `$ref`s.
fn deref(v: &Value) -> &Value {
    let doc = escalade::openapi::document();
    let mut v = v;
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        v = doc.pointer(r.strip_prefix('#').unwrap()).unwrap();
    }
    v
}

/// The error codes the document lists for `method path` answering `status`.
fn documented_codes(path: &str, method: &str, status: u16) -> Vec<String> {
    let doc = escalade::openapi::document();
    let response = deref(&doc["paths"][path][method]["responses"][status.to_string()]);
    let schema = deref(&response["content"]["application/json"]["schema"]);
    let mut codes = Vec::new();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let code = &deref(part)["properties"]["error"]["properties"]["code"];
        for c in code["enum"].as_array().into_iter().flatten() {
            codes.push(c.as_str().unwrap().to_string());
        }
    }
    codes
}

/// Found by schemathesis: a multipart event with a part other than `event` and `photo` is 400
/// `invalid` naming the part, and the document lists that code for the operation's 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_multipart_part_on_an_event_is_a_documented_400() {
    let s = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let (st, a) = s
        .post(&s.admin, "/api/v1/issues", fire_hazard("g-0001"))
        .await;
    assert_eq!(st, 201, "{a}");
    for (name, field) in [("extra", "extra"), ("", "event")] {
        let form = reqwest::multipart::Form::new()
            .part(name.to_string(), reqwest::multipart::Part::text("{}"));
        let r = s
            .admin
            .post(format!("{}/api/v1/issues/1/events", s.base))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid", "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    assert!(
        documented_codes("/api/v1/issues/{id}/events", "post", 400).contains(&"invalid".into())
    );
}
