//! Every case of the example organisation's rule tests (`examples/city/tests/*.yaml`) replayed
//! through the daemon: the issue submitted over HTTP, each event posted over HTTP with a token
//! of the role that would post it (a meeting's outcome recorded on the meeting), deadlines
//! passing on the test clock and fired by the engine's scheduler path, and the state, tier,
//! meetings and queued messages read back over HTTP. The rule tests' own checks then apply, so
//! a flow that passes in memory but not in the daemon fails here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use escalade::engine::{Clock, Engine, ManualClock};
use escalade_rules::decide::Decider;
use escalade_rules::ruletest::{Replay, Sent, run_with};
use escalade_rules::{Channel, Event, Issue, IssueState, RuleSet};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

mod support;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// One case's daemon: a fresh store in a temp dir, the shared rules, a manual clock, the API on
/// port 0.
struct ApiReplay<'a> {
    rt: &'a Runtime,
    rules: Arc<RuleSet>,
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    base: String,
    admin: reqwest::Client,
    issue: Option<(String, Issue)>,
    /// The originals of duplicates: the case's id and the id the API gave the copy.
    originals: Vec<(String, String)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

impl Drop for ApiReplay<'_> {
    fn drop(&mut self) {
        // Every decision of the flow, made again by the version that made it, is the decision
        // stored: `decide` is pure.
        if let Some((id, _)) = &self.issue
            && !std::thread::panicking()
        {
            let x = self.get(&format!("/api/v1/issues/{id}/explain"));
            assert_eq!(x["all_match"], true, "issue {id}: {x:#}");
            assert!(!x["events"].as_array().unwrap().is_empty());
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl<'a> ApiReplay<'a> {
    fn new(rt: &'a Runtime, rules: Arc<RuleSet>) -> ApiReplay<'a> {
        let dir = tempfile::tempdir().unwrap();
        let db = support::TestDb::new(dir.path());
        let clock = Arc::new(ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap()));
        let (engine, base, stop) = rt.block_on(async {
            let store = db.open(Default::default()).await;
            let engine = Arc::new(Engine::with_rules(store, rules.clone(), clock.clone()));
            let (base, stop) = support::serve_api(engine.clone(), CITY, dir.path(), 1 << 20).await;
            (engine, base, stop)
        });
        let mut r = ApiReplay {
            rt,
            rules,
            engine,
            clock,
            base,
            admin: reqwest::Client::new(),
            issue: None,
            originals: Vec::new(),
            stop: Some(stop),
            _db: db,
            _dir: dir,
        };
        r.admin = r.client("admin", None);
        r
    }

    /// A client with a new token of `role` and `scope` belonging to no one (the admin reading).
    fn client(&self, role: &str, scope: Option<&str>) -> reqwest::Client {
        support::client(&self.rt.block_on(support::token(&self.engine, role, scope)))
    }

    /// A client with a new token of `person`, derived from the organisation as
    /// `escalade token create --person` derives it (`role` and `scope` choose among several).
    fn person(&self, person: &str, role: Option<&str>, scope: Option<&str>) -> reqwest::Client {
        support::client(
            &self
                .rt
                .block_on(support::person_token(&self.engine, person, role, scope)),
        )
    }

    /// The token of the person who reported the case's issue; an integration's for an issue
    /// reported by no one.
    fn reporter(&self, issue: &Issue) -> reqwest::Client {
        match &issue.reporter {
            Some(p) => self.person(p, None, None),
            None => support::client(&self.rt.block_on(support::integration_token(
                &self.engine,
                "flows",
                "reporter",
                Some(&issue.unit),
            ))),
        }
    }

    /// A token of a person acting for `department`: its first contact, or the first on its
    /// rota.
    fn department(&self, department: &str) -> reqwest::Client {
        let org = &self.rules.org;
        let d = &org.departments[org.department(department).unwrap() as usize];
        let ix = d
            .contacts
            .first()
            .or_else(|| d.rota.as_ref().and_then(|r| r.people.first()))
            .copied()
            .unwrap();
        self.person(
            &org.people[ix as usize].id,
            Some("department"),
            Some(department),
        )
    }

    /// A token of the leader of `unit`.
    fn leader(&self, unit: &str) -> reqwest::Client {
        let org = &self.rules.org;
        let leader = org.units[org.unit(unit).unwrap() as usize]
            .leader
            .expect("the unit has a leader");
        self.person(&org.people[leader as usize].id, Some("leader"), Some(unit))
    }

    fn get(&self, path: &str) -> Value {
        self.rt.block_on(async {
            let r = self
                .admin
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "GET {path}");
            r.json().await.unwrap()
        })
    }

    fn post(&self, client: &reqwest::Client, path: &str, body: &Value) -> Result<Value, String> {
        self.rt.block_on(async {
            let r = client
                .post(format!("{}{path}", self.base))
                .json(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("POST {path}: {status} {body}"))
            }
        })
    }

    fn id(&self) -> &str {
        &self.issue.as_ref().expect("reported first").0
    }

    /// A multipart resolution with `n` photos (a PNG and variants of it).
    fn resolve_with_photo(
        &self,
        client: &reqwest::Client,
        id: &str,
        note: &str,
        n: usize,
    ) -> Result<(), String> {
        self.rt.block_on(async {
            let mut form = reqwest::multipart::Form::new().text(
                "event",
                json!({"event": "resolved", "note": note}).to_string(),
            );
            for _ in 0..n {
                form = form.part(
                    "photo",
                    reqwest::multipart::Part::bytes(support::PNG.to_vec())
                        .mime_str("image/png")
                        .unwrap(),
                );
            }
            let r = client
                .post(format!("{}/api/v1/issues/{id}/events", self.base))
                .multipart(form)
                .send()
                .await
                .unwrap();
            let status = r.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!(
                    "POST (multipart) /api/v1/issues/{id}/events: {status} {}",
                    r.text().await.unwrap_or_default()
                ))
            }
        })
    }

    /// The top unit: leaders there may reassign anything and record any meeting.
    fn top(&self) -> String {
        let org = &self.rules.org;
        let mut u = org.unit(&self.issue.as_ref().unwrap().1.unit).unwrap();
        while let Some(p) = org.units[u as usize].parent {
            u = p;
        }
        org.units[u as usize].id.clone()
    }
}

impl Replay for ApiReplay<'_> {
    fn report(&mut self, issue: &Issue, at: DateTime<Utc>) -> Result<(), String> {
        self.clock.set(at);
        let reporter = self.reporter(issue);
        let body = self.post(
            &reporter,
            "/api/v1/issues",
            &serde_json::to_value(issue).unwrap(),
        )?;
        let id = body["id"].as_str().unwrap().to_string();
        self.issue = Some((id, issue.clone()));
        Ok(())
    }

    fn apply(&mut self, at: DateTime<Utc>, event: Event) -> Result<(), String> {
        self.advance_to(at);
        self.clock.set(at.max(self.clock.now()));
        let id = self.id().to_string();
        if let Event::MeetingOutcome {
            meeting,
            outcome,
            departments,
            resolve,
        } = &event
        {
            let leader = self.leader(&self.top());
            let listed = self.get("/api/v1/meetings?status=scheduled");
            let m = listed["meetings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| {
                    m["kind"] == meeting.as_str()
                        && m["agenda"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|a| a["issue"] == id.as_str())
                })
                .ok_or_else(|| format!("no scheduled meeting `{meeting}` has issue {id}"))?;
            let mut body = json!({"outcome": outcome, "departments": departments});
            if let Some(r) = resolve {
                body["resolve"] = json!(r.to_string());
            }
            let held = self.post(
                &leader,
                &format!("/api/v1/meetings/{}/outcome", m["id"]),
                &body,
            )?;
            assert_eq!(held["status"], "held");
            return Ok(());
        }
        let mut event = event;
        if let Event::Duplicate { original } = &mut event {
            // The case names an original by a number of its own: the API run reports a copy of
            // the issue as that original, and reads its id back as the case's (`state`).
            let copy = self.post(
                &self.admin,
                "/api/v1/issues",
                &serde_json::to_value(&self.issue.as_ref().unwrap().1).unwrap(),
            )?;
            let real = copy["id"].as_str().unwrap().to_string();
            self.originals.push((original.clone(), real.clone()));
            *original = real;
        }
        let client = match &event {
            Event::Acknowledged
            | Event::Progress { .. }
            | Event::Resolved { .. }
            | Event::Returned { .. }
            | Event::ExtensionRequested { .. }
            | Event::SuspensionRequested { .. }
            | Event::Resumed { .. } => {
                let state = self.state();
                let dept = state.departments.first().cloned().unwrap_or_default();
                self.department(&dept)
            }
            Event::ReportRated { department, .. } => self.client("department", Some(department)),
            Event::RequestDecided { .. } => {
                let (_, issue) = self.issue.as_ref().unwrap();
                match self.rules.decider(issue, &self.state()) {
                    Some(Decider::Leader(unit)) => self.client("leader", Some(&unit)),
                    Some(Decider::Department(d)) => self.client("department", Some(&d)),
                    _ => self.admin.clone(),
                }
            }
            Event::Confirmed
            | Event::Rejected { .. }
            | Event::Evaluated { .. }
            | Event::ClosedAtGrid { .. } => self.reporter(&self.issue.as_ref().unwrap().1),
            _ => self.leader(&self.top()),
        };
        if let Event::Resolved { note, photos } = &event
            && !photos.is_empty()
        {
            // A case names its after-photos by hash; the API run sends a photo with them.
            return self.resolve_with_photo(&client, &id, note, photos.len());
        }
        self.post(
            &client,
            &format!("/api/v1/issues/{id}/events"),
            &serde_json::to_value(&event).unwrap(),
        )
        .map(|_| ())
    }

    fn advance_to(&mut self, until: DateTime<Utc>) {
        let store = self.engine.store();
        loop {
            let next = self.rt.block_on(store.next_due()).unwrap();
            match next {
                Some(due) if due <= until => {
                    self.clock.set(due.max(self.clock.now()));
                    self.rt.block_on(self.engine.fire_due()).unwrap();
                }
                _ => break,
            }
        }
        self.clock.set(until.max(self.clock.now()));
    }

    fn state(&self) -> IssueState {
        let body = self.get(&format!("/api/v1/issues/{}", self.id()));
        let mut state: IssueState = serde_json::from_value(body["state"].clone()).unwrap();
        if let Some(d) = &mut state.duplicate_of
            && let Some((case, _)) = self.originals.iter().find(|(_, real)| real == d)
        {
            *d = case.clone();
        }
        state
    }

    fn messages(&self) -> Vec<Sent> {
        let body = self.get("/api/v1/outbox?limit=1000");
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["issue_id"] == self.id())
            .map(|m| Sent {
                to: m["person"].as_str().unwrap().into(),
                channel: serde_json::from_value::<Channel>(m["channel"].clone()).unwrap(),
                template: m["template"].as_str().unwrap().into(),
                kind: m["kind"].as_str().unwrap().into(),
            })
            .collect()
    }

    /// When each message was queued: the outbox row's `created_at`, the time of the decision
    /// that made it.
    fn timed_messages(&self) -> Option<Vec<(DateTime<Utc>, Sent)>> {
        let body = self.get("/api/v1/outbox?limit=1000");
        Some(
            body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["issue_id"] == self.id())
                .map(|m| {
                    (
                        m["created_at"].as_str().unwrap().parse().unwrap(),
                        Sent {
                            to: m["person"].as_str().unwrap().into(),
                            channel: serde_json::from_value::<Channel>(m["channel"].clone())
                                .unwrap(),
                            template: m["template"].as_str().unwrap().into(),
                            kind: m["kind"].as_str().unwrap().into(),
                        },
                    )
                })
                .collect(),
        )
    }

    fn triage_reason(&self) -> Option<String> {
        None
    }
}

#[test]
fn every_example_flow_runs_through_the_api() {
    let rules = Arc::new(RuleSet::load(CITY).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = run_with(&rules, std::path::Path::new(CITY), || {
        ApiReplay::new(&rt, rules.clone())
    });
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let failed: Vec<String> = report
        .cases
        .iter()
        .filter(|c| !c.failures.is_empty())
        .map(|c| format!("{} / {}:\n  {}", c.file, c.name, c.failures.join("\n  ")))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // The example has flows of every kind: make sure they all ran.
    assert!(report.cases.len() >= 95, "{} cases", report.cases.len());
}
