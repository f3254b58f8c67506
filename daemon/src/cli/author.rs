//! The rule author's tools: `check`, `test`, `explain`, and `generate-city` for benchmarks.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;
use escalade_rules::{Diagnostics, Issue};

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

/// `escalade check DIR`: validates a rule directory and summarises it.
pub fn check(a: CheckArgs) -> Result<(), Failure> {
    let rules = load(&a.dir)?;
    println!("{}", summary_line(&rules));
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

/// `escalade test DIR`: runs the rule tests.
pub fn test(a: TestArgs) -> Result<(), Failure> {
    let rules = load(&a.dir)?;
    let report = escalade_rules::ruletest::run(&rules, &a.dir);
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
        println!("  - {m}");
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
    for m in &x.meetings {
        println!(
            "  meeting {} at {} with {}",
            m.meeting,
            m.at,
            m.participants.join(", ")
        );
    }
}
