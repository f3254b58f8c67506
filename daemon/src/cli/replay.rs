//! `escalade replay`: past issues of the store lived again through candidate rules, and what
//! differs; and `generate-history`, a plausible past to replay, for tests and benchmarks.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use chrono_tz::Tz;
use clap::Args;
use escalade_rules::replay::{Change, IssueReplay, StepAt, TierAt, count};

use super::{Failure, load, runtime, store::config};
use crate::replay::{DEFAULT_LIMIT, ReplayError, ReplayFilter, ReplayReport};

#[derive(Args)]
pub struct ReplayArgs {
    /// The candidate rule directory.
    #[arg(long)]
    pub rules: PathBuf,
    /// The daemon's configuration, for the location of its store.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only issues reported at or after this instant (RFC 3339).
    #[arg(long)]
    pub from: Option<DateTime<FixedOffset>>,
    /// Only issues reported before this instant (RFC 3339); lives run to it. Default: now.
    #[arg(long)]
    pub to: Option<DateTime<FixedOffset>>,
    /// Only issues of this category.
    #[arg(long)]
    pub category: Option<String>,
    /// Only issues in this unit's subtree.
    #[arg(long)]
    pub unit: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when anything differs.
    #[arg(long)]
    pub fail_on_change: bool,
    /// Changed issues shown in detail at most (the summary counts them all).
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    pub limit: usize,
}

/// `escalade replay --rules CANDIDATE`.
pub fn replay(a: ReplayArgs) -> Result<(), Failure> {
    let candidate = Arc::new(load(&a.rules)?);
    let cfg = config(a.config.as_deref())?;
    let filter = ReplayFilter {
        from: a.from.map(|t| t.with_timezone(&Utc)),
        to: a.to.map(|t| t.with_timezone(&Utc)),
        category: a.category,
        unit: a.unit,
    };
    let db = cfg.database();
    let tz = candidate.org.calendars[candidate.settings.calendar as usize].tz();
    let report = runtime()?
        .block_on(crate::replay::replay(&db, candidate, filter, Some(a.limit)))
        .map_err(|e| match e {
            ReplayError::Invalid { field, message } => {
                Failure::Usage(format!("--{field}: {message}"))
            }
            ReplayError::Store(m) => Failure::Usage(m),
        })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plain data serialises")
        );
    } else {
        print!("{}", render(&report, tz));
    }
    if a.fail_on_change && report.differs() {
        return Err(Failure::Rules);
    }
    Ok(())
}

/// The report as text: each changed issue shown, then the summary by kind of change, then the
/// tally. Times are local to `tz` (the candidate's default calendar).
pub fn render(r: &ReplayReport, tz: Tz) -> String {
    use std::fmt::Write as _;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let mut out = String::new();
    for i in &r.changed {
        issue(&mut out, i, &local);
    }
    if r.changed_not_shown > 0 {
        let _ = writeln!(
            out,
            "... and {} more changed issues (--limit {} shows the first)\n",
            count(r.changed_not_shown),
            r.changed.len()
        );
    }
    if !r.summary.is_empty() {
        out.push_str("what differs:\n");
        for g in &r.summary {
            let _ = writeln!(out, "  {}", g.line);
        }
    }
    for f in &r.fallbacks {
        let _ = writeln!(
            out,
            "note: {} issues were reported under rules version {}, which is not stored; they were lived through {}, the version of their later decisions",
            count(f.issues),
            short(&f.missing),
            short(&f.used)
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "skipped: {} issues: {}", count(s.issues), s.reason);
    }
    let n = &r.issues;
    let _ = writeln!(
        out,
        "replayed {} of {} issues through rules {} up to {} ({}): {} changed ({} diverged, {} refused), {} unchanged, {} skipped",
        count(n.replayed),
        count(n.read),
        short(&r.candidate),
        local(r.horizon),
        tz.name(),
        count(n.changed),
        count(n.diverged),
        count(n.refused),
        count(n.unchanged),
        count(n.skipped),
    );
    out
}

fn short(v: &str) -> &str {
    v.get(..12).unwrap_or(v)
}

/// One changed issue: a heading, then a line per change.
fn issue(out: &mut String, i: &IssueReplay, local: &impl Fn(DateTime<Utc>) -> String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "issue {}: {} in {} ({}), reported {}, recorded rules {}",
        i.id,
        i.category,
        i.unit,
        i.area,
        local(i.reported_at),
        short(&i.rules_version)
    );
    for line in lines(i, local) {
        let _ = writeln!(out, "  {line}");
    }
    out.push('\n');
}

/// What differs for one changed issue, a line each: the candidate's refusal of the report,
/// each change, the action at which its life left the recorded one. Times by `local`.
pub fn lines(i: &IssueReplay, local: &impl Fn(DateTime<Utc>) -> String) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = &i.refused {
        out.push(format!("refused by the candidate at report: {why}"));
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join("+")
        }
    };
    let at = |t: &Option<DateTime<Utc>>| t.map(local).unwrap_or_else(|| "none".into());
    let tiers = |v: &[TierAt]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter()
                .map(|t| format!("{} {}", t.tier, local(t.at)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let steps = |v: &[StepAt]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter()
                .map(|s| format!("{}#{} {}", s.trigger, s.occurrence, local(s.at)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for c in &i.changes {
        out.push(match c {
            Change::Route { before, after } => {
                format!("route: {} -> {}", list(before), list(after))
            }
            Change::Priority { before, after } => format!(
                "priority: {} -> {}",
                before.map(|p| p.as_str()).unwrap_or("none"),
                after.map(|p| p.as_str()).unwrap_or("none")
            ),
            Change::Deadline {
                deadline,
                before,
                after,
                rule_before,
                rule_after,
            } => format!(
                "{} deadline: {} -> {} ({} -> {})",
                deadline.as_str(),
                at(before),
                at(after),
                rule_before.as_deref().unwrap_or("none"),
                rule_after.as_deref().unwrap_or("none")
            ),
            Change::Departments { before, after } => format!(
                "departments at the end: {} -> {}",
                list(before),
                list(after)
            ),
            Change::State { before, after } => format!(
                "state at the end: {} -> {}",
                before.as_str(),
                after.as_str()
            ),
            Change::Tiers { before, after } => {
                format!("tiers reached: {} -> {}", tiers(before), tiers(after))
            }
            Change::Steps { before, after } => {
                format!("ladder steps: {} -> {}", steps(before), steps(after))
            }
            Change::Meetings { before, after } => {
                let m = |v: &[escalade_rules::replay::MeetingAt]| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.iter()
                            .map(|m| format!("{} {}", m.meeting, local(m.at)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                format!("meetings: {} -> {}", m(before), m(after))
            }
            Change::Triage { before, after } => format!(
                "triage: {} -> {}",
                before.as_deref().unwrap_or("none"),
                after.as_deref().unwrap_or("none")
            ),
            Change::Messages {
                recipient,
                template,
                before,
                after,
            } => format!("messages to {recipient} with `{template}`: {before} -> {after}"),
        });
    }
    if let Some(d) = &i.diverged {
        out.push(format!(
            "diverged at event {} (`{}` by {} at {}): {}",
            d.seq,
            d.event,
            d.actor,
            local(d.at),
            d.reason
        ));
    }
    out
}

#[derive(Args)]
pub struct GenerateHistoryArgs {
    /// The rule directory the history is lived through (and recorded as the live version).
    #[arg(long, default_value = "examples/city")]
    pub rules: PathBuf,
    /// The SQLite file to write (it must not exist).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    pub issues: usize,
    /// The first day of reports (YYYY-MM-DD, in the rules' time zone).
    #[arg(long, default_value = "2026-03-02")]
    pub start: NaiveDate,
    /// Reports are spread over this many days.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `escalade generate-history`: writes a store with a plausible past, for `replay`'s tests and
/// benchmarks.
pub fn generate_history(a: GenerateHistoryArgs) -> Result<(), Failure> {
    let rules = load(&a.rules)?;
    let o = crate::generate::HistoryOptions {
        issues: a.issues,
        start: a.start,
        days: a.days,
        seed: a.seed,
    };
    let dir = a.rules.display().to_string();
    let s = runtime()?
        .block_on(crate::generate::history(&rules, &dir, &a.out, &o))
        .map_err(Failure::Usage)?;
    println!(
        "wrote {}: {} issues, {} events, {} not closed at the end ({}), rules {}",
        a.out.display(),
        count(s.issues as u64),
        count(s.events as u64),
        count(s.open as u64),
        s.horizon.to_rfc3339(),
        short(&s.rules_version)
    );
    Ok(())
}
