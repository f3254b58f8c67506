//! Reloading the rules of the 19,801-grid generated city while issues arrive at a steady rate:
//! the real daemon (release build), clients pacing submissions to RATE per second for SECONDS,
//! and a reload every two seconds of a rule directory whose policy changes each time. Prints
//! failed requests, latency percentiles of the submissions answered while a reload ran and of
//! the others, how long each reload took (loading and checking beside the requests) and how
//! long the swap held new requests.
//!
//! Run: `cargo bench -p escalade --bench reload -- [RATE] [SECONDS] [GRIDS]` (default 1000, 20,
//! 19801). Figures and commands: BENCHMARKS.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "../tests/support/mod.rs"]
mod support;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(1000);
    let seconds = args.get(1).copied().unwrap_or(20) as u64;
    let grids = args.get(2).copied().unwrap_or(19_801);
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("city");
    let summary = escalade::generate::city(&rules, grids).unwrap();
    println!("city: {summary}");
    let db = support::TestDb::new(&dir.path().join("state"));
    let r = rules.to_str().unwrap();
    let token = support::admin_token(&db, r);
    let (_daemon, addr) = support::start(&db, r);
    let policy = rules.join("policy.yaml");
    let original = std::fs::read_to_string(&policy).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = support::client(&token);
        let reloading = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let stop_at = Instant::now() + Duration::from_secs(seconds);
        // 16 clients, each pacing its share of the rate; a request is "during a reload" when
        // it was sent or answered while one ran.
        let clients = 16;
        let interval = Duration::from_secs_f64(clients as f64 / rate as f64);
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (client, reloading, failed) =
                    (client.clone(), reloading.clone(), failed.clone());
                let url = format!("http://{addr}/api/v1/issues");
                tokio::spawn(async move {
                    let mut during = Vec::new();
                    let mut outside = Vec::new();
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut i = 0u64;
                    while Instant::now() < stop_at {
                        tick.tick().await;
                        let body = json!({
                            "category": "cat-01",
                            "unit": format!("g{:05}", (i as usize * 7 + c) % grids),
                            "description": format!("client {c} report {i}"),
                        });
                        i += 1;
                        let before = reloading.load(Ordering::Relaxed);
                        let t = Instant::now();
                        match client.post(&url).json(&body).send().await {
                            Ok(r) if r.status() == 201 => {
                                r.bytes().await.unwrap();
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        let took = t.elapsed();
                        if before || reloading.load(Ordering::Relaxed) {
                            during.push(took);
                        } else {
                            outside.push(took);
                        }
                    }
                    (during, outside)
                })
            })
            .collect();
        let mut reloads = Vec::new();
        let mut n = 0;
        while Instant::now() + Duration::from_secs(2) < stop_at {
            tokio::time::sleep(Duration::from_secs(2)).await;
            n += 1;
            let changed = if n % 2 == 1 {
                format!("{}# reload {n}\n", original.replacen("acknowledge: ", "acknowledge:  ", 1))
            } else {
                original.clone()
            };
            std::fs::write(&policy, changed).unwrap();
            reloading.store(true, Ordering::Relaxed);
            let t = Instant::now();
            let r = client
                .post(format!("http://{addr}/api/v1/rules/reload"))
                .send()
                .await
                .unwrap();
            let took = t.elapsed();
            reloading.store(false, Ordering::Relaxed);
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{body}");
            reloads.push((took, body["swap_ns"].as_u64().unwrap_or(0)));
        }
        let mut during = Vec::new();
        let mut outside = Vec::new();
        for t in tasks {
            let (d, o) = t.await.unwrap();
            during.extend(d);
            outside.extend(o);
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let pct = |v: &mut Vec<Duration>, p: f64| {
            v.sort();
            v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .map(ms)
                .unwrap_or(0.0)
        };
        let total = during.len() + outside.len();
        println!(
            "submissions: {total} in {seconds} s ({:.0}/s), failed {}",
            total as f64 / seconds as f64,
            failed.load(Ordering::Relaxed)
        );
        println!(
            "  while a reload ran: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            during.len(),
            pct(&mut during, 0.5),
            pct(&mut during, 0.99),
            during.last().copied().map(ms).unwrap_or(0.0)
        );
        println!(
            "  otherwise:          {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            outside.len(),
            pct(&mut outside, 0.5),
            pct(&mut outside, 0.99),
            outside.last().copied().map(ms).unwrap_or(0.0)
        );
        let swaps: Vec<u64> = reloads.iter().map(|r| r.1).collect();
        println!(
            "reloads: {}, each {} ms (load, check, store the version, swap); swap held requests {} µs at most",
            reloads.len(),
            reloads
                .iter()
                .map(|r| format!("{:.0}", ms(r.0)))
                .collect::<Vec<_>>()
                .join("/"),
            swaps.iter().max().copied().unwrap_or(0) as f64 / 1000.0
        );
    });
}
