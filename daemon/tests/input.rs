//! Bad input through the API: each kind answers with its status, code and field, and changes
//! nothing.

use serde_json::{Value, json};

mod support;

use support::Api;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

fn garbage() -> Value {
    json!({"category": "garbage", "unit": "g-0001", "description": "小区门口垃圾三天未清运"})
}

async fn send(api: &Api, path: &str, content_type: Option<&str>, body: String) -> (u16, Value) {
    let mut r = api.admin.post(format!("{}{path}", api.base)).body(body);
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    support::call(r).await
}

async fn issues(api: &Api) -> usize {
    let (_, b) = api.get(&api.admin, "/api/v1/issues").await;
    b["issues"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_report_names_its_field_and_stores_nothing() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let with = |k: &str, v: Value| {
        let mut g = garbage();
        g[k] = v;
        g.to_string()
    };
    let json = Some("application/json");
    for (body, ct, status, code, field) in [
        (
            with("priority", json!(5)),
            json,
            422,
            "invalid",
            Some("priority"),
        ),
        (
            with("location", json!({"lat": 999.0, "lon": 113.6})),
            json,
            422,
            "invalid",
            Some("location.lat"),
        ),
        (
            with("location", json!({"lat": 34.7, "lon": -181.0})),
            json,
            422,
            "invalid",
            Some("location.lon"),
        ),
        (
            with("description", json!("")),
            json,
            422,
            "invalid",
            Some("description"),
        ),
        (
            with("description", json!("   ")),
            json,
            422,
            "invalid",
            Some("description"),
        ),
        (
            with("description", json!("垃圾\u{0}堆放")),
            json,
            422,
            "invalid",
            Some("description"),
        ),
        (
            with("address", json!("金水路\u{0}1号")),
            json,
            422,
            "invalid",
            Some("address"),
        ),
        (
            with("description", json!("垃".repeat(4001))),
            json,
            422,
            "invalid",
            Some("description"),
        ),
        (
            with("address", json!("路".repeat(501))),
            json,
            422,
            "invalid",
            Some("address"),
        ),
        (
            garbage().to_string(),
            Some("text/plain"),
            415,
            "unsupported_media_type",
            Some("Content-Type"),
        ),
        (
            garbage().to_string(),
            None,
            415,
            "unsupported_media_type",
            Some("Content-Type"),
        ),
        (
            format!("{} trailing", garbage()),
            json,
            400,
            "malformed_json",
            None,
        ),
    ] {
        let (got, b) = send(&api, "/api/v1/issues", ct, body.clone()).await;
        assert_eq!(
            (
                got,
                b["error"]["code"].as_str(),
                b["error"]["field"].as_str()
            ),
            (status, Some(code), field),
            "{}: {b}",
            body.chars().take(120).collect::<String>()
        );
    }
    assert_eq!(issues(&api).await, 0, "nothing was stored");
    // `application/json; charset=utf-8` and a `+json` type are JSON.
    for ct in [
        "application/json; charset=utf-8",
        "application/vnd.escalade+json",
    ] {
        let (got, b) = send(&api, "/api/v1/issues", Some(ct), garbage().to_string()).await;
        assert_eq!(got, 201, "{ct}: {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_must_be_json_and_its_texts_free_of_nul() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let (_, b) = send(
        &api,
        "/api/v1/issues",
        Some("application/json"),
        garbage().to_string(),
    )
    .await;
    let id = b["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/issues/{id}/events");
    let (got, b) = send(
        &api,
        &path,
        Some("text/plain"),
        json!({"event": "acknowledged"}).to_string(),
    )
    .await;
    assert_eq!(
        (got, b["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{b}"
    );
    let (got, b) = send(
        &api,
        &path,
        Some("application/json"),
        json!({"event": "returned", "reason": "不归\u{0}我们"}).to_string(),
    )
    .await;
    assert_eq!(
        (got, b["error"]["field"].as_str()),
        (422, Some("reason")),
        "{b}"
    );
    let (got, b) = send(
        &api,
        &path,
        Some("application/json"),
        json!({"event": "evaluated", "rating": "five"}).to_string(),
    )
    .await;
    assert_eq!(got, 422, "{b}");
    // Every text of an event is bounded, whichever event carries it.
    for (event, field) in [
        (
            json!({"event": "resolved", "note": "修".repeat(4001)}),
            "note",
        ),
        (
            json!({"event": "closed_at_grid", "note": "修".repeat(4001)}),
            "note",
        ),
        (
            json!({"event": "returned", "reason": "不".repeat(4001)}),
            "reason",
        ),
    ] {
        let (got, b) = send(&api, &path, Some("application/json"), event.to_string()).await;
        assert_eq!(
            (got, b["error"]["field"].as_str()),
            (422, Some(field)),
            "{b}"
        );
    }
    let (_, issue) = api.get(&api.admin, &format!("/api/v1/issues/{id}")).await;
    assert_eq!(issue["state"]["state"], "assigned");
    assert_eq!(issue["timeline"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_the_callers_own_and_replays_the_first_answer() {
    let api = Api::start(CITY, "2026-03-03T10:00:00+08:00").await;
    let one = api.client("reporter", Some("g-0001")).await;
    let two = api.client("reporter", Some("g-0001")).await;
    let submit = |c: &reqwest::Client, key: &str, body: Value| {
        c.post(format!("{}/api/v1/issues", api.base))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_string())
            .send()
    };
    let mut other = garbage();
    other["description"] = json!("另一处垃圾");
    // Two callers using one key make two issues: neither sees the other's request.
    let a = submit(&one, "k-1", garbage()).await.unwrap();
    assert_eq!(a.status(), 201);
    let a: Value = a.json().await.unwrap();
    let b = submit(&two, "k-1", other.clone()).await.unwrap();
    assert_eq!(b.status(), 201);
    let b: Value = b.json().await.unwrap();
    assert_ne!(a["id"], b["id"]);
    // The issue moves on; the same caller's retry gets the first answer, not today's state.
    let urban = api.client("department", Some("urban")).await;
    let id = a["id"].as_str().unwrap();
    let (status, _) = api.act(&urban, id, json!({"event": "acknowledged"})).await;
    assert_eq!(status, 200);
    let again = submit(&one, "k-1", garbage()).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], a["id"]);
    assert_eq!(again["state"], a["state"], "the first answer");
    assert_eq!(again["state"]["state"], "assigned");
    // The same caller, the same key, another body: refused.
    let reused = submit(&one, "k-1", other).await.unwrap();
    assert_eq!(reused.status(), 422);
    // Keys are 1 to 200 visible characters.
    for key in ["", "   ", &"k".repeat(201)] {
        let r = submit(&one, key, garbage()).await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status.as_u16(), body["error"]["field"].as_str()),
            (400, Some("Idempotency-Key")),
            "{key:?}: {body}"
        );
    }
    let (_, list) = api.get(&api.admin, "/api/v1/issues").await;
    assert_eq!(list["issues"].as_array().unwrap().len(), 2);
}
