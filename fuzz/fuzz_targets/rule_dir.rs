//! The rule directory loader: the input's first line names a file of the example organisation
//! (any other name: a new `extra.yaml`), the rest becomes that file's text. Loading must give
//! a rule set or diagnostics, never panic, and each diagnostic must render and point inside
//! its file.
#![no_main]

use std::sync::Arc;

use escalade_fuzz::city_files;
use escalade_rules::RuleSet;
use escalade_rules::diag::Report;
use libfuzzer_sys::fuzz_target;
use miette::{GraphicalReportHandler, GraphicalTheme};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (name, content) = text.split_once('\n').unwrap_or((&text, ""));
    let mut files = city_files().clone();
    let name = if files.contains_key(name) {
        name
    } else {
        "extra.yaml"
    };
    files.insert(name.to_string(), Arc::from(content));
    match RuleSet::load_files(&files) {
        Ok(rules) => {
            let _ = rules.warnings();
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "a refused rule set names a problem");
            let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor());
            let lines = content.lines().count().max(1);
            for d in diags.iter() {
                let mut out = String::new();
                let _ = handler.render_report(&mut out, &Report(d));
                if let Some(l) = &d.location
                    && l.file == name
                {
                    assert!(
                        (1..=lines + 1).contains(&l.line) && l.column >= 1,
                        "{d} points outside {name} ({lines} lines)"
                    );
                }
            }
        }
    }
});
