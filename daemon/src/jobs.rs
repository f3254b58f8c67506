//! Scheduled jobs: the rules' cron-scheduled reports, run at their local times.
//!
//! A run is recorded in the transaction that queues its messages, keyed by the scheduled time:
//! a restart never repeats a run. At start-up, the latest run missed while the daemon was down
//! (since the job's last run, or since the daemon first saw the job) happens once; older missed
//! runs of the same job are not replayed, as a report of the present state supersedes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use escalade_rules::jobs::{
    Named, OverdueDigestVars, OverdueIssue, Period, Report, ScorecardRow, ScorecardVars,
    format_overdue,
};
use escalade_rules::{Channel, Job, RuleSet};
use tokio::sync::watch;

use crate::engine::Engine;
use escalade_rules::scoring::DepartmentFigures;

use crate::store::{OverdueRow, ReportMessage, Result};

/// A job run that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ran {
    pub job: String,
    pub scheduled_at: DateTime<Utc>,
    pub messages: usize,
}

/// Runs every job whose latest scheduled time at or before `now` has not run yet. Returns the
/// runs made.
pub async fn run_due(engine: &Engine, now: DateTime<Utc>) -> Result<Vec<Ran>> {
    let rules = engine.rules();
    let store = engine.store();
    let mut ran = Vec::new();
    for job in &rules.jobs {
        let since = store.job_since(&job.id, now).await?;
        let last = store.last_run(&job.id).await?.unwrap_or(since).max(since);
        let Some(at) = job.latest_at_or_before(now, last) else {
            continue;
        };
        let messages = build(engine, &rules, job, now).await?;
        if store.record_run(&job.id, at, now, &messages).await? {
            tracing::info!(job = %job.id, scheduled = %at, messages = messages.len(), "job ran");
            ran.push(Ran {
                job: job.id.clone(),
                scheduled_at: at,
                messages: messages.len(),
            });
        }
    }
    Ok(ran)
}

/// The earliest scheduled time of any job after `t`.
pub fn next_run(rules: &RuleSet, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    rules.jobs.iter().filter_map(|j| j.next_after(t)).min()
}

/// Runs jobs at their times until `shutdown` turns true: due runs first (a run missed while
/// the daemon was down happens here, once), then a sleep until the next scheduled time (at most
/// a minute, so a changed clock or rule set is noticed).
pub async fn run_jobs(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = engine.now();
        // One replica leads and runs the jobs; a run is recorded once per job and scheduled
        // time whoever tries it, so two replicas that both believe they lead still run it once.
        let leads = engine.lead().await;
        let result = if leads {
            run_due(&engine, now).await
        } else {
            Ok(Vec::new())
        };
        let wait = match result {
            Ok(_) => next_run(&engine.rules(), now)
                .and_then(|next| (next - engine.now()).to_std().ok())
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(10), Duration::from_secs(60)),
            Err(e) => {
                tracing::error!(error = %e, "scheduled jobs failed; retrying shortly");
                Duration::from_secs(5)
            }
        };
        // Among replicas, the lease is renewed (or watched, to take it over) every third of it.
        let wait = match engine.store().replica() {
            Some(_) => wait.min(crate::engine::LEADER_LEASE / 3),
            None => wait,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// The email a report goes to; reports are long, so a person without an email address gets
/// none (and the log says so).
fn addressed(
    rules: &RuleSet,
    person: u32,
    template: &str,
    vars: serde_json::Value,
) -> Option<ReportMessage> {
    let p = &rules.org.people[person as usize];
    let Some(email) = &p.email else {
        tracing::warn!(person = %p.id, report = template, "no email address: report not sent");
        return None;
    };
    Some(ReportMessage {
        person: p.id.to_string(),
        channel: Channel::Email,
        address: email.to_string(),
        locale: p.locale.to_string(),
        template: template.to_string(),
        vars,
    })
}

async fn build(
    engine: &Engine,
    rules: &RuleSet,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<Vec<ReportMessage>> {
    Ok(match &job.report {
        Report::OverdueDigest { tiers } => {
            let rows = engine.store().overdue_issues(now).await?;
            overdue_digest(rules, job, tiers, &rows, now)
        }
        Report::Scorecard { period } => {
            let from = now - *period;
            let rows = engine.store().scorecard(from, now).await?;
            scorecard(rules, job, &rows, from, now)
        }
    })
}

/// One digest per leader of a unit on one of `tiers` (all tiers if none) with overdue issues in
/// its subtree, in the leader's language.
fn overdue_digest(
    rules: &RuleSet,
    job: &Job,
    tiers: &[u8],
    rows: &[OverdueRow],
    now: DateTime<Utc>,
) -> Vec<ReportMessage> {
    let org = &rules.org;
    // (leader, unit) -> overdue issues in the unit's subtree.
    let mut boards: BTreeMap<(u32, u32), Vec<&OverdueRow>> = BTreeMap::new();
    for row in rows {
        let Some(unit) = org.unit(&row.unit) else {
            continue;
        };
        for u in org.branch(unit) {
            let unit = &org.units[u as usize];
            if !tiers.is_empty() && !tiers.contains(&unit.tier) {
                continue;
            }
            if let Some(leader) = unit.leader {
                boards.entry((leader, u)).or_default().push(row);
            }
        }
    }
    boards
        .into_iter()
        .filter_map(|((leader, unit), rows)| {
            let p = &org.people[leader as usize];
            let locale = &*p.locale;
            let issues = rows
                .iter()
                .map(|r| {
                    let (kind, at) = match (r.acknowledge_by, r.resolve_by) {
                        (Some(a), _) if a <= now => ("acknowledge", a),
                        (_, Some(d)) => ("resolve", d),
                        (Some(a), None) => ("acknowledge", a),
                        (None, None) => ("resolve", now),
                    };
                    OverdueIssue {
                        id: r.id.clone(),
                        category_name: rules
                            .category(&r.category)
                            .map(|c| rules.categories[c as usize].names.get(locale).to_string())
                            .unwrap_or_else(|| r.category.clone()),
                        unit_name: org
                            .unit(&r.unit)
                            .map(|u| org.units[u as usize].names.get(locale).to_string())
                            .unwrap_or_else(|| r.unit.clone()),
                        department_name: r
                            .department
                            .as_deref()
                            .and_then(|d| org.department(d))
                            .map(|d| org.departments[d as usize].names.get(locale).to_string())
                            .unwrap_or_default(),
                        deadline_kind: kind.into(),
                        deadline_at: local(at, job.tz),
                        overdue_by: format_overdue(now - at),
                    }
                })
                .collect();
            let u = &org.units[unit as usize];
            let vars = OverdueDigestVars {
                recipient: Named {
                    id: p.id.to_string(),
                    name: p.name.clone(),
                },
                unit: Named {
                    id: u.id.clone(),
                    name: u.names.get(locale).to_string(),
                },
                issues,
                as_of: local(now, job.tz),
            };
            addressed(
                rules,
                leader,
                "overdue_digest",
                serde_json::to_value(vars).expect("plain data serialises"),
            )
        })
        .collect()
}

/// Each department's contacts get their own row; the leader of each top unit gets every
/// department's.
fn scorecard(
    rules: &RuleSet,
    job: &Job,
    rows: &[DepartmentFigures],
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<ReportMessage> {
    let org = &rules.org;
    let row_for = |dept: usize, locale: &str| -> ScorecardRow {
        let d = &org.departments[dept];
        let r = rows
            .iter()
            .find(|r| r.department == d.id)
            .cloned()
            .unwrap_or_default();
        ScorecardRow {
            department: d.id.clone(),
            department_name: d.names.get(locale).to_string(),
            assigned: r.assigned,
            acknowledged_on_time: r.acknowledged_on_time,
            resolved_on_time: r.resolved_on_time,
            reopened: r.reopened,
            rated: r.rated,
            average_rating: (r.rated > 0)
                .then(|| (r.rating_sum as f64 / r.rated as f64 * 10.0).round() / 10.0),
            score: (!rules.scoring.departments.is_empty()).then(|| rules.scoring.department(&r)),
        }
    };
    let period = Period {
        from: local(from, job.tz),
        to: local(now, job.tz),
    };
    let vars = |person: u32, rows: Vec<ScorecardRow>| {
        let p = &org.people[person as usize];
        serde_json::to_value(ScorecardVars {
            recipient: Named {
                id: p.id.to_string(),
                name: p.name.clone(),
            },
            period: period.clone(),
            rows,
            as_of: local(now, job.tz),
        })
        .expect("plain data serialises")
    };
    let mut out = Vec::new();
    for (i, d) in org.departments.iter().enumerate() {
        for &c in &d.contacts {
            let locale = org.people[c as usize].locale.clone();
            if let Some(m) = addressed(rules, c, "scorecard", vars(c, vec![row_for(i, &locale)])) {
                out.push(m);
            }
        }
    }
    for u in org.units.iter().filter(|u| u.parent.is_none()) {
        let Some(leader) = u.leader else { continue };
        let locale = org.people[leader as usize].locale.clone();
        let all = (0..org.departments.len())
            .map(|i| row_for(i, &locale))
            .collect();
        if let Some(m) = addressed(rules, leader, "scorecard", vars(leader, all)) {
            out.push(m);
        }
    }
    out
}
