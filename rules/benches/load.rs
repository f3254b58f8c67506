//! Load-and-validate time of a city-sized rule directory.
//!
//! The directory is generated beforehand (the bench cannot depend on the daemon crate):
//!
//! ```sh
//! cargo run --release -p escalade -- generate-city --grids 19801 --out target/city-19801
//! cargo bench -p escalade-rules --bench load
//! ```
//!
//! `ESCALADE_BENCH_CITY` names another directory. The time is reading, parsing, validating and
//! indexing the directory; dropping the rule set afterwards is not timed. Figures and targets:
//! BENCHMARKS.md.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use escalade_rules::RuleSet;

const DEFAULT_CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/city-19801");

fn load_city(c: &mut Criterion) {
    let dir = std::env::var_os("ESCALADE_BENCH_CITY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CITY));
    if !dir.is_dir() {
        eprintln!(
            "load_city skipped: no rule directory at {}.\n\
             Generate it from the workspace root with\n  \
             cargo run --release -p escalade -- generate-city --grids 19801 --out target/city-19801\n\
             or point ESCALADE_BENCH_CITY at one.",
            dir.display()
        );
        return;
    }
    let rs = RuleSet::load(&dir).unwrap_or_else(|e| panic!("{}: {e:?}", dir.display()));
    let s = rs.summary();
    eprintln!(
        "load_city: {}: {} units, {} people, {} departments",
        dir.display(),
        s.units,
        s.people,
        s.departments
    );
    drop(rs);

    let mut g = c.benchmark_group("load_city");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let name = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    g.bench_function(name, |b| {
        b.iter_with_large_drop(|| RuleSet::load(black_box(&dir)).unwrap())
    });
    g.finish();
}

criterion_group!(load, load_city);
criterion_main!(load);
