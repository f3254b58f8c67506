//! The rule author's tools: `check`, `test`, `explain`, and `generate-city` for benchmarks.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::Args;
use escalade_rules::diag::Report;
use escalade_rules::ruletest::{self, Fix};
use escalade_rules::{Diagnostic, Diagnostics, Issue};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, Severity, SourceCode};

use super::{Failure, load, print_diagnostics};
use crate::generate;

#[derive(Args)]
pub struct CheckArgs {
    /// The rule directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Args)]
pub struct TestArgs {
    /// The rule directory; its tests are DIR/tests/*.yaml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Rewrite the expectations of failing cases in the test files to the actual results
    /// (each in place, the rest of the file untouched), print what changed, and run again.
    #[arg(long)]
    pub update: bool,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// The rule directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The issue, as JSON: {"category", "unit", "description", ...}.
    #[arg(long)]
    pub issue: PathBuf,
    /// When it is reported (RFC 3339); default: now.
    #[arg(long)]
    pub at: Option<DateTime<chrono::FixedOffset>>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Number of grids; streets and communities scale with it.
    #[arg(long, default_value_t = 19_801)]
    pub grids: usize,
    /// The directory to write (created; must be empty or absent).
    #[arg(long)]
    pub out: PathBuf,
}

/// `escalade check DIR`: validates a rule directory, warns about rules that can never take
/// effect, and summarises it. Warnings do not fail the check.
pub fn check(a: CheckArgs) -> Result<(), Failure> {
    let rules = load(&a.dir)?;
    let warnings = rules.warnings();
    print_warnings(&warnings);
    match warnings.len() {
        0 => println!("{}", summary_line(&rules)),
        n => println!(
            "{}; {n} warning{}",
            summary_line(&rules),
            if n == 1 { "" } else { "s" }
        ),
    }
    // Each job's next three runs, in its own time zone.
    let now = Utc::now();
    for job in &rules.jobs {
        let runs: Vec<String> = job
            .upcoming(now, 3)
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M %:z").to_string())
            .collect();
        println!(
            "job {} ({}, {}): {}",
            job.id,
            job.cron,
            job.tz.name(),
            if runs.is_empty() {
                "never runs again".to_string()
            } else {
                runs.join(", ")
            }
        );
    }
    Ok(())
}

/// The one line `check` prints about a clean rule set.
pub fn summary_line(rules: &escalade_rules::RuleSet) -> String {
    let s = rules.summary();
    format!(
        "ok: {} units, {} people, {} departments, {} categories, {} routes, {} ladders, {} meetings, {} templates, {} scripts ({} functions); version {}",
        s.units,
        s.people,
        s.departments,
        s.categories,
        s.routes,
        s.ladders,
        s.meetings,
        s.templates,
        s.scripts,
        s.hooks,
        &rules.version[..16]
    )
}

/// A warning drawn by miette: a diagnostic's source, label and help, with warning severity.
struct Warning<'a>(Report<'a>);

impl std::fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Warning<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Warning<'_> {}

impl miette::Diagnostic for Warning<'_> {
    fn severity(&self) -> Option<Severity> {
        Some(Severity::Warning)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        miette::Diagnostic::help(&self.0)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        miette::Diagnostic::source_code(&self.0)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        miette::Diagnostic::labels(&self.0)
    }
}

/// Each warning as miette draws it, then in the one-line form of compilers
/// (`file:line:column: warning: message`), as `print_diagnostics` prints errors.
fn print_warnings(warnings: &[Diagnostic]) {
    let theme = if std::io::stderr().is_terminal() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    for w in warnings {
        let mut out = String::new();
        if handler.render_report(&mut out, &Warning(Report(w))).is_ok() {
            eprint!("{out}");
        }
        let at = w
            .location
            .as_ref()
            .map(|l| format!("{}:{}:{}: ", l.file, l.line, l.column))
            .unwrap_or_default();
        let help = w
            .help
            .as_ref()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        eprintln!("  --> {at}warning: {}{help}\n", w.message);
    }
}

/// `escalade test DIR`: runs the rule tests; with `--update`, rewrites failing expectations to
/// the actual results first and runs again.
pub fn test(a: TestArgs) -> Result<(), Failure> {
    let rules = load(&a.dir)?;
    let mut report = ruletest::run(&rules, &a.dir);
    if a.update {
        let failing = report.cases.iter().any(|c| !c.fixes.is_empty());
        update(&a.dir, &report)?;
        if failing {
            report = ruletest::run(&rules, &a.dir);
        }
    }
    print_diagnostics(&Diagnostics(report.errors.clone()));
    for c in &report.cases {
        if c.failures.is_empty() {
            println!("ok   {} :: {}", c.file, c.name);
        } else {
            println!("FAIL {} :: {}", c.file, c.name);
            for f in &c.failures {
                println!("       {f}");
            }
        }
    }
    println!(
        "{} passed, {} failed",
        report.passed(),
        report.failed() + report.errors.len()
    );
    if report.failed() > 0 || !report.errors.is_empty() {
        Err(Failure::Rules)
    } else {
        Ok(())
    }
}

/// Rewrites the failing expectations of `report` in the test files under `dir`, file by file,
/// and prints each change and each failure no change can mend.
fn update(dir: &Path, report: &ruletest::Report) -> Result<(), Failure> {
    let mut by_file: BTreeMap<&str, (Vec<Fix>, BTreeMap<usize, &str>)> = BTreeMap::new();
    for c in report.cases.iter().filter(|c| !c.failures.is_empty()) {
        let (fixes, names) = by_file.entry(&c.file).or_default();
        fixes.extend(c.fixes.iter().cloned());
        names.insert(c.index, &c.name);
        for u in &c.unfixable {
            println!("not updated {} :: {}: {u}", c.file, c.name);
        }
    }
    for (file, (fixes, names)) in by_file {
        if fixes.is_empty() {
            continue;
        }
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
        let w = ruletest::rewrite(file, &text, &fixes);
        print_diagnostics(&Diagnostics(w.skipped.clone()));
        if w.applied.is_empty() {
            continue;
        }
        // A temporary file renamed over the test file: it is the old text or the new, whole.
        let tmp = path.with_extension("yaml.update");
        std::fs::write(&tmp, &w.text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
        for a in &w.applied {
            // `cases[3].expect.state`: the case by name, the expectation by its own path.
            let (case, what) = a
                .path
                .strip_prefix("cases[")
                .and_then(|p| p.split_once("]."))
                .and_then(|(i, rest)| Some((names.get(&i.parse::<usize>().ok()?)?, rest)))
                .map(|(n, rest)| (n.to_string(), rest.to_string()))
                .unwrap_or_else(|| (String::new(), a.path.clone()));
            match &a.new {
                Some(new) => println!(
                    "updated {file}:{}:{} :: {case}: {what}: {} -> {new}",
                    a.line, a.column, a.old
                ),
                None => println!(
                    "updated {file}:{}:{} :: {case}: {what}: removed {}",
                    a.line, a.column, a.old
                ),
            }
        }
    }
    Ok(())
}

/// `escalade explain DIR --issue FILE`: the decision for a new issue and what follows.
pub fn explain(a: ExplainArgs) -> Result<(), Failure> {
    let issue = &a.issue;
    let text = std::fs::read_to_string(issue)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", issue.display())))?;
    let parsed: Issue = serde_json::from_str(&text).map_err(|e| {
        Failure::Usage(format!(
            "{}:{}:{}: invalid issue: {e}",
            issue.display(),
            e.line(),
            e.column()
        ))
    })?;
    let rules = load(&a.dir)?;
    let at = a.at.map(|t| t.with_timezone(&Utc)).unwrap_or_else(Utc::now);
    let x = rules
        .explain(&parsed, at)
        .map_err(|e| Failure::Usage(format!("{}: {e}", issue.display())))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&x).expect("serialisable")
        );
    } else {
        print_explanation(&x);
    }
    Ok(())
}

/// `escalade generate-city`: a synthetic organisation of the given size.
pub fn generate_city(a: GenerateArgs) -> Result<(), Failure> {
    if a.grids == 0 {
        return Err(Failure::Usage("--grids must be at least 1".into()));
    }
    let summary = generate::city(&a.out, a.grids)
        .map_err(|e| Failure::Usage(format!("{}: {e}", a.out.display())))?;
    println!("{summary}");
    Ok(())
}

fn print_explanation(x: &escalade_rules::explain::Explanation) {
    println!("rules version   {}", x.rules_version);
    println!("reported at     {}", x.reported_at);
    println!("priority        {}", x.priority);
    println!("departments     {}", x.departments.join(", "));
    if let Some(t) = &x.triage {
        println!("TRIAGE          {t}");
    }
    println!("\ntrace:");
    for t in &x.trace {
        println!("  - {t}");
    }
    println!("\ndeadlines:");
    println!(
        "  acknowledge by {}",
        x.deadlines.acknowledge.as_deref().unwrap_or("-")
    );
    println!(
        "  resolve by     {}",
        x.deadlines.resolve.as_deref().unwrap_or("-")
    );
    for s in &x.deadline_steps {
        println!("  {s}");
    }
    println!("\nmessages:");
    for m in &x.messages {
        println!(
            "  - {} by {} ({}), template {}:",
            m.to,
            m.channel.as_str(),
            m.locale,
            m.template
        );
        if let Some(s) = &m.subject {
            println!("      subject: {s}");
        }
        for line in m.text.lines() {
            println!("      {line}");
        }
    }
    println!("\nif nobody acts:");
    if x.escalations.is_empty() {
        println!("  (no escalation)");
    }
    for e in &x.escalations {
        println!(
            "  {}  {}  tier {}  told: {}",
            e.at,
            e.trigger,
            e.tier,
            if e.notify.is_empty() {
                "-".into()
            } else {
                e.notify.join(", ")
            }
        );
        for t in &e.trace {
            println!("      {t}");
        }
    }
    for c in &x.cut {
        println!("  cut: {c}");
    }
    for m in &x.meetings {
        println!(
            "  meeting {} at {} with {}",
            m.meeting,
            m.at,
            m.participants.join(", ")
        );
    }
}
