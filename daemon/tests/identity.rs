//! Who reports: a person's token reports as its person, an admin's or an integration's may
//! report on someone's behalf (and the timeline says so), a token of no one names no reporter
//! unless it is an admin's. The API in-process on the example organisation, on a fresh store.

use escalade::auth::{Actor, Grant, Role};
use serde_json::{Value, json};

mod support;

use support::{Api, client, integration_token, person_token, token};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

async fn start() -> Api {
    Api::start(CITY, "2026-03-03T10:00:00+08:00").await
}

impl Api {
    /// Submits `issue` with `c`: the status and the body.
    async fn submit(&self, c: &reqwest::Client, issue: &Value) -> (u16, Value) {
        support::call(c.post(format!("{}/api/v1/issues", self.base)).json(issue)).await
    }

    /// The issue as an admin reads it.
    async fn issue(&self, id: &str) -> Value {
        let r = self
            .admin
            .get(format!("{}/api/v1/issues/{id}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// How many issues the store holds.
    async fn count(&self) -> usize {
        let r = self
            .admin
            .get(format!("{}/api/v1/issues", self.base))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        body["issues"].as_array().unwrap().len()
    }

    /// Submits `issue` with `c`, which must be accepted: the reporter recorded on the issue and
    /// the actor of its `reported` event.
    async fn reported(&self, c: &reqwest::Client, issue: &Value) -> (Value, String) {
        let (status, body) = self.submit(c, issue).await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap();
        let stored = self.issue(id).await;
        assert_eq!(stored["issue"]["reporter"], body["issue"]["reporter"]);
        assert_eq!(stored["timeline"][0]["kind"], "reported");
        (
            body["issue"]["reporter"].clone(),
            stored["timeline"][0]["actor"].as_str().unwrap().to_string(),
        )
    }
}

/// Garbage in `unit`, reported by `reporter` if given.
fn garbage(unit: &str, reporter: Option<&str>) -> Value {
    let mut issue = json!({"category": "garbage", "unit": unit, "description": "垃圾桶满溢"});
    if let Some(r) = reporter {
        issue["reporter"] = json!(r);
    }
    issue
}

/// The defect: a reporter token of grid g-0001 filed an issue as `reporter: p-mayor`. Whoever
/// it belongs to, it is refused 403 on the field `reporter`, and no issue is created.
#[tokio::test]
async fn a_grid_reporter_may_not_file_as_the_mayor() {
    let s = start().await;
    let grid = client(&person_token(&s.engine, "p-g-0001", None, None).await);
    let (status, body) = s.submit(&grid, &garbage("g-0001", Some("p-mayor"))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(body["error"]["field"], "reporter");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("p-mayor") && message.contains("p-g-0001"),
        "{message}"
    );
    // A token of no one, as tokens were before they had owners: refused too.
    let unowned = client(&token(&s.engine, "reporter", Some("g-0001")).await);
    let (status, body) = s
        .submit(&unowned, &garbage("g-0001", Some("p-mayor")))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["field"], "reporter");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("belongs to no person"),
        "{body}"
    );
    // Retried with an idempotency key, still refused, still nothing stored.
    let r = grid
        .post(format!("{}/api/v1/issues", s.base))
        .header("idempotency-key", "as-the-mayor")
        .json(&garbage("g-0001", Some("p-mayor")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.count().await, 0);
}

/// A person's token reports as its person: the reporter is filled in when the body names
/// none, accepted when it names the same person, and the actor names the person.
#[tokio::test]
async fn a_persons_token_reports_as_its_person() {
    let s = start().await;
    let grid = client(&person_token(&s.engine, "p-g-0001", None, None).await);
    let (reporter, actor) = s.reported(&grid, &garbage("g-0001", None)).await;
    assert_eq!(reporter, "p-g-0001");
    assert!(
        actor.starts_with("reporter:g-0001#") && actor.ends_with("(p-g-0001)"),
        "{actor}"
    );
    let (reporter, same) = s
        .reported(&grid, &garbage("g-0001", Some("p-g-0001")))
        .await;
    assert_eq!(reporter, "p-g-0001");
    assert_eq!(same, actor);
    // A community's leader reports anywhere in the community, as themself; another grid's
    // leader inside it is still someone else.
    let community = client(&person_token(&s.engine, "p-c-001", None, None).await);
    let (reporter, actor) = s.reported(&community, &garbage("g-0002", None)).await;
    assert_eq!(reporter, "p-c-001");
    assert!(actor.starts_with("leader:c-001#") && actor.ends_with("(p-c-001)"));
    let (status, body) = s
        .submit(&community, &garbage("g-0002", Some("p-g-0002")))
        .await;
    assert_eq!((status, &body["error"]["field"]), (403, &json!("reporter")));
    // A department's contact does not report at all.
    let urban = client(&person_token(&s.engine, "p-urban-li", None, None).await);
    let (status, body) = s.submit(&urban, &garbage("g-0001", None)).await;
    assert_eq!((status, &body["error"]["field"]), (403, &json!("unit")));
    assert_eq!(s.count().await, 3);
}

/// An admin or an integration may name the reporter: the issue is the reporter's, and the
/// `reported` event's actor says on whose behalf the token submitted it.
#[tokio::test]
async fn an_admin_or_an_integration_reports_on_someones_behalf() {
    let s = start().await;
    // An admin token of no one.
    let (reporter, actor) = s
        .reported(&s.admin, &garbage("g-0001", Some("p-g-0001")))
        .await;
    assert_eq!(reporter, "p-g-0001");
    assert!(
        actor.starts_with("admin#") && actor.ends_with(" on behalf of p-g-0001"),
        "{actor}"
    );
    // An integration's reporter token of the grid.
    let wechat = client(&integration_token(&s.engine, "wechat", "reporter", Some("g-0001")).await);
    let (reporter, actor) = s
        .reported(&wechat, &garbage("g-0001", Some("p-g-0001")))
        .await;
    assert_eq!(reporter, "p-g-0001");
    assert!(
        actor.starts_with("reporter:g-0001#")
            && actor.ends_with("(integration:wechat) on behalf of p-g-0001"),
        "{actor}"
    );
    // Naming no one, it reports for no one.
    let (reporter, actor) = s.reported(&wechat, &garbage("g-0001", None)).await;
    assert_eq!(reporter, Value::Null);
    assert!(actor.ends_with("(integration:wechat)"), "{actor}");
    // Still only within its scope.
    let (status, body) = s
        .submit(&wechat, &garbage("g-0002", Some("p-g-0002")))
        .await;
    assert_eq!((status, &body["error"]["field"]), (403, &json!("unit")));
    // A person's admin token reports as its person, or on someone's behalf.
    let mayor = client(&person_token(&s.engine, "p-mayor", Some("admin"), None).await);
    let (reporter, actor) = s.reported(&mayor, &garbage("g-0001", None)).await;
    assert_eq!(reporter, "p-mayor");
    assert!(
        actor.starts_with("admin#") && actor.ends_with("(p-mayor)"),
        "{actor}"
    );
    let (reporter, actor) = s
        .reported(&mayor, &garbage("g-0001", Some("p-g-0001")))
        .await;
    assert_eq!(reporter, "p-g-0001");
    assert!(
        actor.ends_with("(p-mayor) on behalf of p-g-0001"),
        "{actor}"
    );
    // On behalf of someone the organisation does not know: the rules refuse it.
    let (status, body) = s
        .submit(&s.admin, &garbage("g-0001", Some("p-nobody")))
        .await;
    assert_eq!((status, &body["error"]["field"]), (422, &json!("reporter")));
    assert_eq!(s.count().await, 5);
}

/// Tokens made before owners existed keep their role and scope; a reporter's or a leader's
/// reports for no one and may not name a reporter, not even the grid's own.
#[tokio::test]
async fn tokens_of_no_one_keep_working_but_name_no_reporter() {
    let s = start().await;
    let reporter = client(&token(&s.engine, "reporter", Some("g-0001")).await);
    let (who, actor) = s.reported(&reporter, &garbage("g-0001", None)).await;
    assert_eq!(who, Value::Null);
    assert!(actor.starts_with("reporter:g-0001#"), "{actor}");
    assert!(!actor.contains('('), "{actor}");
    let (status, body) = s
        .submit(&reporter, &garbage("g-0001", Some("p-g-0001")))
        .await;
    assert_eq!((status, &body["error"]["field"]), (403, &json!("reporter")));
    let leader = client(&token(&s.engine, "leader", Some("zz")).await);
    let (status, body) = s.submit(&leader, &garbage("g-0001", Some("p-mayor"))).await;
    assert_eq!((status, &body["error"]["field"]), (403, &json!("reporter")));
    assert_eq!(s.count().await, 1);
}

/// An actor's name, as events record it, reads back as the token that acted: what replay
/// checks recorded actions with.
#[test]
fn actor_names_read_back() {
    let owned = |person: Option<&str>, integration: Option<&str>| {
        Actor::new(
            7,
            Grant {
                person: person.map(str::to_string),
                integration: integration.map(str::to_string),
                ..Grant::unowned(Role::Reporter, Some("g-0001"))
            },
        )
    };
    for (actor, name) in [
        (owned(None, None), "reporter:g-0001#7"),
        (owned(Some("p-g-0001"), None), "reporter:g-0001#7(p-g-0001)"),
        (
            owned(None, Some("wechat")),
            "reporter:g-0001#7(integration:wechat)",
        ),
        (Actor::new(1, Grant::unowned(Role::Admin, None)), "admin#1"),
    ] {
        assert_eq!(actor.name(), name);
        for recorded in [name.to_string(), format!("{name} on behalf of p-g-0002")] {
            let back = escalade::replay::actor_of(&recorded).unwrap();
            assert_eq!(
                (
                    back.token,
                    back.role,
                    back.scope,
                    back.person,
                    back.integration
                ),
                (
                    actor.token,
                    actor.role,
                    actor.scope.clone(),
                    actor.person.clone(),
                    actor.integration.clone()
                ),
                "{recorded}"
            );
        }
    }
    assert!(escalade::replay::actor_of("scheduler").is_none());
}

/// A token with an expiry works until then and answers 401 `token_expired` from then on, naming
/// when; one without works on. Its last use is written at most once a minute (by the clock of
/// the requests), so checking a token adds no write to every request.
#[tokio::test]
async fn a_token_expires_and_its_last_use_is_written_at_most_once_a_minute() {
    let api = start().await;
    let store = api.engine.store();
    let grant = Grant::unowned(Role::Admin, None);
    let t0 = support::at("2026-03-03T10:00:00+08:00");
    let terms = escalade::store::TokenTerms {
        label: Some("night shift".into()),
        expires_at: Some(t0 + chrono::TimeDelta::hours(2)),
    };
    let (token, hash) = escalade::auth::new_token();
    let id = store
        .create_token_with(&hash, &grant, &terms, t0)
        .await
        .unwrap();
    let c = client(&token);
    let listed = |tokens: Vec<escalade::store::TokenListing>| {
        tokens.into_iter().find(|t| t.id == id).unwrap()
    };
    assert_eq!(listed(store.tokens().await.unwrap()).last_used_at, None);

    let (status, body) = api.get(&c, "/api/v1/issues").await;
    assert_eq!(status, 200, "{body}");
    let t = listed(store.tokens().await.unwrap());
    assert_eq!(t.label.as_deref(), Some("night shift"));
    assert_eq!(t.last_used_at, Some(t0));

    // Within the minute: not written again.
    api.clock.set(t0 + chrono::TimeDelta::seconds(59));
    assert_eq!(api.get(&c, "/api/v1/issues").await.0, 200);
    assert_eq!(listed(store.tokens().await.unwrap()).last_used_at, Some(t0));
    // After it: written.
    let t1 = t0 + chrono::TimeDelta::seconds(61);
    api.clock.set(t1);
    assert_eq!(api.get(&c, "/api/v1/issues").await.0, 200);
    assert_eq!(listed(store.tokens().await.unwrap()).last_used_at, Some(t1));

    // A moment before the expiry it works; at the expiry it is refused, cached or not.
    let last = t0 + chrono::TimeDelta::hours(2) - chrono::TimeDelta::milliseconds(1);
    api.clock.set(last);
    assert_eq!(api.get(&c, "/api/v1/issues").await.0, 200);
    api.clock.set(t0 + chrono::TimeDelta::hours(2));
    let (status, body) = api.get(&c, "/api/v1/issues").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "token_expired", "{body}");
    assert_eq!(body["error"]["field"], "Authorization", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("token {id} expired at 2026-03-03T04:00:00Z")),
        "{message}"
    );
    // A refused request is no use.
    assert_eq!(
        listed(store.tokens().await.unwrap()).last_used_at,
        Some(last)
    );
    // The admin's token, made without an expiry, works on.
    assert_eq!(api.get(&api.admin, "/api/v1/issues").await.0, 200);
}
