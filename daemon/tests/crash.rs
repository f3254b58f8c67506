//! Nothing acknowledged is lost: 2,000 submissions from 16 concurrent clients, the daemon
//! killed with SIGKILL in the middle, restarted on the same state directory. Every issue
//! answered 201 is there with its timeline, and no issue is half written.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An admin token in the store of `state`, made by `escalade token create`.
fn admin_token(state: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_escalade"))
        .args(["token", "create", "--role", "admin", "--rules", CITY])
        .env("ESCALADE_STATE_DIR", state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

/// Starts the daemon on port 0 and returns it with the address it listens on.
fn start(state: &Path) -> (Daemon, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_escalade"))
        .args(["run", "--rules", CITY])
        .env("ESCALADE_LISTEN", "127.0.0.1:0")
        .env("ESCALADE_STATE_DIR", state)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let daemon = Daemon(child);
    let addr = loop {
        let line = lines
            .next()
            .expect("the daemon logs where it listens")
            .unwrap();
        if let Some(i) = line.find("listen=") {
            break line[i + 7..].split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (daemon, addr)
}

/// A client that sends `token` with every request.
fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}

#[test]
fn issues_answered_201_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(dir.path());
    let (mut daemon, addr) = start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let accepted: Vec<String> = rt.block_on(async {
        let client = client(&token);
        let sent = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for c in 0..16 {
            let client = client.clone();
            let addr = addr.clone();
            let sent = sent.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..125 {
                    let body = json!({
                        "category": "garbage",
                        "unit": "g-0001",
                        "description": format!("client {c} report {i}"),
                    });
                    let r = client
                        .post(format!("http://{addr}/api/v1/issues"))
                        .json(&body)
                        .send()
                        .await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    // After the kill, requests fail: those were never acknowledged.
                    let Ok(r) = r else { break };
                    if r.status() != 201 {
                        break;
                    }
                    let Ok(v) = r.json::<Value>().await else {
                        break;
                    };
                    ids.push(v["id"].as_str().unwrap().to_string());
                }
                ids
            }));
        }
        // Kill in the middle of the run.
        while sent.load(Ordering::Relaxed) < 1_000 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Command::new("kill")
            .args(["-KILL", &daemon.0.id().to_string()])
            .status()
            .unwrap();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let _ = daemon.0.wait();
    assert!(
        accepted.len() >= 900,
        "only {} accepted before the kill",
        accepted.len()
    );
    assert!(accepted.len() < 2_000, "the kill came after every request");

    let (_daemon, addr) = start(dir.path());
    rt.block_on(async {
        let client = client(&token);
        for id in &accepted {
            let r = client
                .get(format!("http://{addr}/api/v1/issues/{id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "issue {id} answered 201 is gone");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["state"]["state"], "assigned", "issue {id}");
            assert_eq!(v["timeline"][0]["kind"], "reported", "issue {id}");
        }
        // No issue is half written: every stored issue has its reported event and timers.
        let r = client
            .post(format!("http://{addr}/api/v1/issues"))
            .json(&json!({"category": "garbage", "unit": "g-0001", "description": "after restart"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        let last: u64 = v["id"].as_str().unwrap().parse().unwrap();
        for id in 1..last {
            let r = client
                .get(format!("http://{addr}/api/v1/issues/{id}"))
                .send()
                .await
                .unwrap();
            if r.status() == 404 {
                continue;
            }
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                v["timeline"].as_array().unwrap().len(),
                1,
                "issue {id}: {v}"
            );
        }
    });
}
