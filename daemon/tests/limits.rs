//! The server under hostile clients: connections that never send, heads and bodies sent slowly,
//! bodies sent without a token, more connections than the cap. Each is held to a limit of the
//! `http:` configuration (set short here), over raw TCP, as an attacker would send them.

use std::time::{Duration, Instant};

use escalade::api::HttpLimits;
use escalade::notify::config::Dur;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::Api;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");
const NOW: &str = "2026-03-03T10:00:00+08:00";

fn short() -> HttpLimits {
    HttpLimits {
        header_timeout: Dur(Duration::from_millis(500)),
        body_timeout: Dur(Duration::from_millis(1500)),
        upload_timeout: Dur(Duration::from_millis(1500)),
        ..HttpLimits::default()
    }
}

fn addr(api: &Api) -> String {
    api.base.trim_start_matches("http://").to_string()
}

/// Reads until the server answers and closes, or `within` passes: the bytes, and whether the
/// connection was closed by the server.
async fn read_all(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

/// The JSON body of a raw HTTP/1.1 answer.
fn body_of(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_or_half_a_head_is_closed() {
    let api = Api::start_with(CITY, NOW, short()).await;
    let mut idle = TcpStream::connect(addr(&api)).await.unwrap();
    let mut half = TcpStream::connect(addr(&api)).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_all(&mut idle, Duration::from_secs(5)).await;
    assert!(closed, "an idle connection is closed after header_timeout");
    let (_, closed) = read_all(&mut half, Duration::from_secs(5)).await;
    assert!(closed, "a connection stalled mid-head is closed");

    // A connection kept alive after a request is closed once it idles too.
    let mut kept = TcpStream::connect(addr(&api)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_all(&mut kept, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "a kept-alive connection that idles is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_a_token_is_refused_before_it_is_read() {
    let api = Api::start_with(CITY, NOW, short()).await;
    for path in [
        "/api/v1/issues",
        "/api/v1/issues/1/events",
        "/api/v1/rules/replay",
    ] {
        let mut s = TcpStream::connect(addr(&api)).await.unwrap();
        // A megabyte announced, none of it sent.
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (answer, _) = read_all(&mut s, Duration::from_millis(1000)).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer:?}");
        assert_eq!(body_of(&answer)["error"]["code"], "missing_token", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_is_answered_408() {
    let api = Api::start_with(CITY, NOW, short()).await;
    let token = support::token(&api.engine, "admin", None).await;
    let mut s = TcpStream::connect(addr(&api)).await.unwrap();
    s.write_all(
        format!(
            "POST /api/v1/issues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"category\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (answer, _) = read_all(&mut s, Duration::from_secs(6)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(body_of(&answer)["error"]["code"], "body_timeout");
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_a_few_at_a_time_and_the_next_is_told_busy() {
    let api = Api::start_with(
        CITY,
        NOW,
        HttpLimits {
            max_body_reads: 1,
            body_timeout: Dur(Duration::from_secs(5)),
            ..short()
        },
    )
    .await;
    let token = support::token(&api.engine, "admin", None).await;
    let mut stalled = TcpStream::connect(addr(&api)).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /api/v1/issues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = api
        .admin
        .post(format!("{}/api/v1/issues", api.base))
        .json(&serde_json::json!({"category": "garbage", "unit": "g-0001", "description": "垃圾"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "busy");
    // Reading is not held by a request that needs no body.
    let (status, _) = api.get(&api.admin, "/api/v1/issues").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_client_waits_until_a_connection_closes() {
    let api = Api::start_with(
        CITY,
        NOW,
        HttpLimits {
            max_connections: 3,
            header_timeout: Dur(Duration::from_millis(1500)),
            ..short()
        },
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr(&api)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = TcpStream::connect(addr(&api)).await.unwrap();
    next.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_all(&mut next, Duration::from_millis(700)).await;
    assert_eq!(
        answer, "",
        "the fourth connection is not served while three are held"
    );
    // Closing one lets it in at once, long before the idle ones time out.
    drop(idle.pop());
    let (answer, _) = read_all(&mut next, Duration::from_millis(600)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_and_errors_name_it() {
    let api = Api::start(CITY, NOW).await;
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{}/api/v1/issues", api.base))
        .header("x-request-id", "complaint-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "complaint-42");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["request_id"], "complaint-42");

    // None sent, or one that is not usable: one is made.
    for sent in [None, Some("x".repeat(201)), Some("has space".to_string())] {
        let mut req = c.get(format!("{}/healthz", api.base));
        if let Some(s) = &sent {
            req = req.header("x-request-id", s);
        }
        let r = req.send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 32, "{sent:?} -> {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

#[test]
fn each_bad_http_limit_is_refused_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, key) in [
        ("http:\n  max_connections: 0\n", "http.max_connections"),
        ("http:\n  max_body_reads: 0\n", "http.max_body_reads"),
        ("http:\n  max_uploads: 0\n", "http.max_uploads"),
        ("http:\n  header_timeout: 0s\n", "http.header_timeout"),
        ("http:\n  body_timeout: 0s\n", "http.body_timeout"),
        ("http:\n  upload_timeout: 0ms\n", "http.upload_timeout"),
        ("http:\n  header_timeout: soon\n", "header_timeout"),
        ("http:\n  max_connection: 5\n", "max_connection"),
    ] {
        let f = dir.path().join("escalade.yaml");
        std::fs::write(&f, yaml).unwrap();
        let e = escalade::config::Config::load_for_store(Some(&f), |_| None).unwrap_err();
        assert!(e.contains(key), "{yaml}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_issues_is_bounded_in_bytes_and_the_cursor_goes_on() {
    let api = Api::start(CITY, NOW).await;
    // 200 issues of the longest description taken: 12 KB each as UTF-8, 2.4 MB in all.
    let long = "垃".repeat(4000);
    for _ in 0..200 {
        let (status, body) = api
            .post(
                &api.admin,
                "/api/v1/issues",
                serde_json::json!({"category": "garbage", "unit": "g-0001", "description": long}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut pages = 0;
    let mut path = "/api/v1/issues?limit=1000".to_string();
    loop {
        let r = api
            .admin
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        assert!(
            text.len() <= (2 << 20) + 20_000,
            "a page of {} bytes",
            text.len()
        );
        let b: Value = serde_json::from_str(&text).unwrap();
        pages += 1;
        for i in b["issues"].as_array().unwrap() {
            assert!(
                seen.insert(i["id"].as_str().unwrap().to_string()),
                "twice: {}",
                i["id"]
            );
        }
        match b["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/issues?limit=1000&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 200);
    assert!(pages >= 2, "one page held 2.4 MB");
}
