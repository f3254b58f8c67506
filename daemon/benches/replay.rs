//! Replay speed: a generated history of example-city issues replayed through candidate rules.
//!
//! ```sh
//! cargo bench -p escalade --bench replay -- 1000000          # issues (default 100,000)
//! cargo bench -p escalade --bench replay -- 1000000 /path/history.db
//! ```
//!
//! The history is generated once (`escalade::generate::history`, the example city's rules with
//! timers and people's actions) and kept at `target/replay-history-N.db` (or the path given)
//! for later runs. Each case replays the whole history through one candidate and prints issues
//! per second and the process's peak resident memory during the replay (the high-water mark is
//! reset before each case, so generating the history does not count):
//!
//! - `moved route`: `vendors-office-hours` sends street vendors to market instead of urban, so
//!   those issues change (and diverge at the first action urban took);
//! - `comment only`: the rules with a comment added: another version with the same behaviour,
//!   so every issue is lived twice and nothing differs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use escalade::generate::{HistoryOptions, history};
use escalade::replay::{ReplayFilter, replay};
use escalade_rules::RuleSet;

#[path = "../tests/support/mod.rs"]
mod support;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// A copy of the example city with `edit` applied to `file`.
fn candidate(tmp: &Path, name: &str, file: &str, edit: impl Fn(&str) -> String) -> Arc<RuleSet> {
    let dir = tmp.join(name);
    support::copy_rules(CITY, &dir);
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit of {file} changed nothing");
    std::fs::write(&p, edited).unwrap();
    Arc::new(RuleSet::load(&dir).unwrap_or_else(|d| panic!("{name}: {d:?}")))
}

/// The process's peak resident memory (kB) since the last reset.
fn peak_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn reset_peak() {
    // Writing 5 to clear_refs resets the high-water mark of the resident set (Linux).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let issues: usize = args
        .first()
        .map(|a| {
            a.replace(['_', ','], "")
                .parse()
                .expect("ISSUES is a number")
        })
        .unwrap_or(100_000);
    let db: PathBuf = args.get(1).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .join(format!("replay-history-{issues}.db"))
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let city = RuleSet::load(CITY).unwrap();
    let options = HistoryOptions {
        issues,
        start: chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
        days: ((issues / 5_000).max(30)) as u32,
        seed: 1,
    };
    let horizon = {
        use chrono::TimeZone;
        let tz = city.org.calendars[city.settings.calendar as usize].tz();
        let end = options.start + chrono::Duration::days(options.days as i64);
        tz.from_local_datetime(&end.and_hms_opt(0, 0, 0).unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    if !db.exists() {
        let t = Instant::now();
        let s = rt
            .block_on(history(&city, "examples/city", &db, &options))
            .unwrap();
        println!(
            "generated {} issues, {} events over {} days in {:.1} s into {}",
            s.issues,
            s.events,
            options.days,
            t.elapsed().as_secs_f64(),
            db.display()
        );
    }
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "history: {} ({:.1} GB), horizon {horizon}, {} cores",
        db.display(),
        size as f64 / 1e9,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "moved route",
            candidate(tmp.path(), "moved", "routes.yaml", |t| {
                t.replacen(
                    "      working: true\n    department: urban\n    co_assign: [market]",
                    "      working: true\n    department: market\n    co_assign: [urban]",
                    1,
                )
            }),
        ),
        (
            "comment only",
            candidate(tmp.path(), "comment", "routes.yaml", |t| {
                format!("{t}\n# reviewed\n")
            }),
        ),
    ];
    for (name, rules) in cases {
        reset_peak();
        let t = Instant::now();
        let filter = ReplayFilter {
            to: Some(horizon),
            ..ReplayFilter::default()
        };
        let r = rt.block_on(replay(&db, rules, filter, Some(100))).unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{name}: {} issues replayed in {secs:.2} s: {:.0} issues/s; {} changed, {} diverged, {} skipped; peak RSS {} MB",
            r.issues.replayed,
            r.issues.replayed as f64 / secs,
            r.issues.changed,
            r.issues.diverged,
            r.issues.skipped,
            peak_kb() / 1024
        );
        for g in r.summary.iter().take(6) {
            println!("    {}", g.line);
        }
    }
}
