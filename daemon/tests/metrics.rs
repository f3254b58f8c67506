//! `/metrics`: every metric the daemon exports moves when what it counts happens. The engine,
//! delivery (to a webhook receiver that fails once, then takes) and the API run in-process on a
//! fresh store (its state directory a temp dir), with a clock the test moves; the metrics are
//! scraped over HTTP and read as Prometheus text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use escalade::config::Config;
use escalade::engine::{Engine, ManualClock};
use escalade::notify::{Delivery, Route};
use escalade::store::StoreOptions;
use escalade_rules::RuleSet;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::at;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// A webhook receiver that answers 500 to its first call and 200 to the rest.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let mut got = Vec::new();
                // Read the head and the body its Content-Length announces.
                loop {
                    let Ok(k) = s.read(&mut buf).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..k]);
                    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let status = if n == 0 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (base, calls)
}

/// The samples of a Prometheus text answer: `name{labels}` to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The sum of the samples whose key starts with `prefix` and holds every one of `labels`.
fn sum(s: &BTreeMap<String, f64>, prefix: &str, labels: &[&str]) -> f64 {
    s.iter()
        .filter(|(k, _)| {
            (k.as_str() == prefix || k.starts_with(&format!("{prefix}{{")))
                && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_moves_when_what_it_counts_happens() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, calls) = receiver().await;
    let f = dir.path().join("escalade.yaml");
    std::fs::write(
        &f,
        format!("webhook:\n  url: {hook}/hook\n  secret_env: HOOK_KEY\n"),
    )
    .unwrap();
    let cfg = Config::load(Some(&f), |k| (k == "HOOK_KEY").then(|| "k3y".to_string())).unwrap();
    let db = support::TestDb::new(dir.path());
    let store = db
        .open(StoreOptions {
            webhook_events: true,
            ..Default::default()
        })
        .await;
    let clock = Arc::new(ManualClock::new(at("2026-03-03T10:00:00+08:00")));
    let engine = Arc::new(Engine::new(
        store,
        RuleSet::load(CITY).unwrap(),
        clock.clone(),
    ));
    let delivery = Arc::new(Delivery::new(engine.clone(), &cfg).unwrap());
    let (base, _stop) = support::serve_api(engine.clone(), CITY, dir.path(), 1 << 20).await;
    let admin = support::client(&support::token(&engine, "admin", None).await);
    let scrape = || async {
        let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        samples(&r.text().await.unwrap())
    };
    let before = scrape().await;

    // A report taken, and one refused.
    let r = admin
        .post(format!("{base}/api/v1/issues"))
        .json(&json!({"category": "garbage", "unit": "g-0001", "description": "小区门口垃圾三天未清运"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The department acknowledges late, so the first deadline's timer has fired by then.
    clock.set(at("2026-03-04T10:00:00+08:00"));
    while engine.fire_due().await.unwrap() > 0 {}
    let urban = support::client(&support::token(&engine, "department", Some("urban")).await);
    let r = urban
        .post(format!("{base}/api/v1/issues/{id}/events"))
        .json(&json!({"event": "acknowledged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = admin
        .post(format!("{base}/api/v1/issues"))
        .json(&json!({"category": "no-such", "unit": "g-0001", "description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Nobody resolves: the deadline passes, the ladder escalates, the timers fire late.
    for day in ["2026-03-20T10:00:00+08:00", "2026-03-24T10:00:00+08:00"] {
        clock.set(at(day));
        while engine.fire_due().await.unwrap() > 0 {}
    }
    // The webhook refuses its first call, then takes the rest.
    let now = at("2026-03-24T10:00:00+08:00");
    delivery.run_once(Route::Webhook, now).await.unwrap();
    clock.set(at("2026-03-24T12:00:00+08:00"));
    for _ in 0..5 {
        delivery
            .run_once(Route::Webhook, at("2026-03-24T12:00:00+08:00"))
            .await
            .unwrap();
    }
    assert!(calls.load(Ordering::SeqCst) >= 2);
    // A reload of the rules.
    let r = admin
        .post(format!("{base}/api/v1/rules/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let after = scrape().await;
    let moved = |name: &str, labels: &[&str]| {
        let (a, b) = (sum(&before, name, labels), sum(&after, name, labels));
        assert!(b > a, "{name} {labels:?} did not move: {a} -> {b}");
    };
    moved("escalade_issues_received_total", &[]);
    moved("escalade_issues_refused_total", &["reason=\"invalid\""]);
    moved(
        "escalade_decisions_total",
        &["event=\"reported\"", "outcome=\"decided\""],
    );
    moved("escalade_decisions_total", &["outcome=\"refused\""]);
    moved("escalade_timer_lateness_seconds_count", &[]);
    moved("escalade_escalations_total", &[]);
    moved(
        "escalade_notifications_sent_total",
        &["channel=\"webhook\""],
    );
    moved(
        "escalade_notifications_failed_total",
        &["channel=\"webhook\"", "retried=\"true\""],
    );
    moved(
        "escalade_notification_latency_seconds_count",
        &["channel=\"webhook\""],
    );
    moved("escalade_store_commit_batch_size_count", &[]);
    moved("escalade_store_commit_duration_seconds_count", &[]);
    moved(
        "escalade_http_requests_total",
        &[
            "route=\"/api/v1/issues\"",
            "method=\"POST\"",
            "status=\"201\"",
        ],
    );
    moved(
        "escalade_http_request_duration_seconds_count",
        &["route=\"/api/v1/issues\""],
    );
    moved("escalade_config_last_reload_success_timestamp_seconds", &[]);
    // Gauges read from the store when scraped.
    assert_eq!(sum(&after, "escalade_issues_open", &[]), 1.0);
    assert_eq!(sum(&after, "escalade_issues_overdue", &[]), 1.0);
    assert!(sum(&after, "escalade_timers_pending", &[]) >= 1.0);
    assert!(
        sum(
            &after,
            "escalade_outbox_messages",
            &["channel=\"webhook\"", "status=\"sent\""]
        ) >= 1.0
    );
    assert!(sum(&after, "escalade_outbox_messages", &["channel=\"email\""]) >= 1.0);
    assert_eq!(
        sum(&after, "escalade_config_last_reload_successful", &[]),
        1.0
    );
    let version = engine.rules().version.to_string();
    assert_eq!(
        sum(
            &after,
            "escalade_rules_version_info",
            &[&format!("version=\"{version}\"")]
        ),
        1.0
    );
    // Buckets, not summaries.
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("escalade_http_request_duration_seconds_bucket{")),
        "histograms have buckets"
    );
    // An id of an issue never makes a series of its own.
    assert!(
        !after.keys().any(|k| k.contains("route=\"/api/v1/issues/1")),
        "routes are the declared ones"
    );
}
