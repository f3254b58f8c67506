//! Nothing acknowledged is lost: 2,000 submissions from 16 concurrent clients, the daemon
//! killed with SIGKILL in the middle, restarted on the same store. Every issue
//! answered 201 is there with its timeline, and no issue is half written.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

mod support;

use support::{TestDb, admin_token, client, start};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

#[test]
fn issues_answered_201_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    let token = admin_token(&db, CITY);
    let (mut daemon, addr) = start(&db, CITY);
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

    let (_daemon, addr) = start(&db, CITY);
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
