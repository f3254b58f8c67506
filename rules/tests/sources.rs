//! A rule set loaded again from the files it keeps: what a stored version is.

use std::collections::BTreeMap;
use std::sync::Arc;

use escalade_rules::RuleSet;

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mini");
const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

#[test]
fn the_kept_files_load_into_the_same_version() {
    for dir in [MINI, CITY] {
        let rs = RuleSet::load(dir).unwrap_or_else(|d| panic!("{d}"));
        // Every kind of file is kept: YAML, the CSV it names, holidays, scripts.
        assert!(rs.files.keys().any(|k| k.ends_with(".yaml")), "{dir}");
        assert!(rs.files.keys().any(|k| k.ends_with(".csv")), "{dir}");
        assert!(rs.files.keys().any(|k| k.starts_with("scripts/")), "{dir}");
        let again = RuleSet::load_files(&rs.files).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(again.version, rs.version, "{dir}");
        assert_eq!(again.summary(), rs.summary(), "{dir}");
        assert_eq!(again.files, rs.files, "{dir}");
    }
}

#[test]
fn a_changed_kept_file_is_another_version() {
    let rs = RuleSet::load(MINI).unwrap();
    let mut files: BTreeMap<String, Arc<str>> = (*rs.files).clone();
    let (name, text) = files.iter().find(|(k, _)| k.ends_with(".yaml")).unwrap();
    let changed: Arc<str> = format!("{text}\n# a comment\n").into();
    files.insert(name.clone(), changed);
    let other = RuleSet::load_files(&files).unwrap_or_else(|d| panic!("{d}"));
    assert_ne!(other.version, rs.version);
}

#[test]
fn a_missing_kept_file_is_a_diagnostic_naming_it() {
    let rs = RuleSet::load(MINI).unwrap();
    let mut files: BTreeMap<String, Arc<str>> = (*rs.files).clone();
    let csv = files.keys().find(|k| k.ends_with(".csv")).cloned().unwrap();
    files.remove(&csv);
    let err = RuleSet::load_files(&files).unwrap_err().to_string();
    assert!(err.contains(&csv), "{err}");
}
