//! Intake over HTTP: the real daemon (release build) on a temp state directory, C concurrent
//! clients submitting issues, throughput and latency percentiles of the answers (each one after
//! its durable commit).
//!
//! Run: `cargo bench -p escalade --bench intake -- [CLIENTS] [REQUESTS]` (default 16, 20000).
//! Figures and commands: BENCHMARKS.md.

use std::time::{Duration, Instant};

use serde_json::json;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

#[path = "../tests/support/mod.rs"]
mod support;

fn main() {
    // `cargo bench` passes `--bench`; the numbers are ours.
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = args.first().copied().unwrap_or(16);
    let requests = args.get(1).copied().unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path());
    let token = support::admin_token(&db, CITY);
    let (daemon, addr) = support::start(&db, CITY);
    let pid = daemon.0.id();
    let cpu_before = (
        support::cpu_seconds(&[pid]),
        support::cpu_seconds(&support::processes_named("postgres")),
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (elapsed, mut latencies) = rt.block_on(async {
        let client = support::client(&token);
        let started = Instant::now();
        let per = requests / clients;
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let client = client.clone();
                let url = format!("http://{addr}/api/v1/issues");
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per);
                    for i in 0..per {
                        let body = json!({
                            "category": "garbage",
                            "unit": "g-0001",
                            "description": format!("client {c} report {i}"),
                        });
                        let t = Instant::now();
                        let r = client.post(&url).json(&body).send().await.unwrap();
                        assert_eq!(r.status(), 201);
                        r.bytes().await.unwrap();
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (started.elapsed(), all)
    });
    let cpu = (
        support::cpu_seconds(&[pid]) - cpu_before.0,
        support::cpu_seconds(&support::processes_named("postgres")) - cpu_before.1,
    );
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "intake: {} issues, {clients} clients, {:.2} s: {:.0} issues/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap()),
    );
    let per_thousand = 1000.0 / latencies.len() as f64;
    println!(
        "cpu per 1,000 issues: daemon {:.2} s, PostgreSQL {:.2} s (every postgres process on the machine)",
        cpu.0 * per_thousand,
        cpu.1 * per_thousand,
    );
}
