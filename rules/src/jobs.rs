//! Scheduled jobs (the `jobs` section): reports sent on a cron schedule in a calendar's zone.
//!
//! Administrators write the standard five-field cron they know (minute hour day-of-month month
//! day-of-week). The `cron` crate that evaluates it reads six or seven fields, seconds first,
//! and numbers weekdays from Sunday = 1, unlike standard cron (Sunday = 0 or 7, Monday = 1).
//! So a five-field expression is given to it with `0` seconds prepended, and a numeric
//! day-of-week is refused: names (`Mon-Fri`) mean the same in every dialect.
//!
//! Times are wall-clock times of the job's zone. A time the clock skips (spring forward) runs
//! when the gap ends; a time the clock shows twice (fall back) runs once, the first time.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::calendar::wall_clock_instant;
use crate::model::Ix;

/// The report kinds a job may send; each is also the id of its template.
pub const REPORTS: &[&str] = &["overdue_digest", "scorecard"];

/// The period a scorecard covers unless the job says otherwise.
pub const DEFAULT_SCORECARD_PERIOD_DAYS: i64 = 7;

/// A checked job.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    /// The expression as written (five fields).
    pub cron: String,
    /// The expression as the `cron` crate reads it (seconds first).
    pub schedule: cron::Schedule,
    /// The calendar whose zone the schedule is read in.
    pub calendar: Ix,
    pub tz: Tz,
    pub report: Report,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// To the leader of each unit on one of `tiers` (indices into `Org::tiers`, all tiers when
    /// the job names none) that has overdue open issues in its subtree; template
    /// `overdue_digest`.
    OverdueDigest { tiers: Vec<u8> },
    /// To each department's contacts and to the top unit's leader, covering the `period`
    /// before the run; template `scorecard`.
    Scorecard { period: Duration },
}

impl Report {
    /// The report kind, which is also its template's id.
    pub fn kind(&self) -> &'static str {
        match self {
            Report::OverdueDigest { .. } => "overdue_digest",
            Report::Scorecard { .. } => "scorecard",
        }
    }
}

/// At most this many candidate times are looked at in one search; only a schedule firing every
/// minute through a repeated hour comes near it (60).
const MAX_CANDIDATES: usize = 10_000;

impl Job {
    /// The first scheduled instant strictly after `t`; `None` past the `cron` crate's range
    /// (the year 2100).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = whole_seconds(t.with_timezone(&self.tz).naive_local());
        // Every wall-clock time up to `local` was shown at or before `t`, so only later ones
        // can be due after `t`; in a repeated hour some later ones were shown before `t` too.
        self.candidates_after(local)
            .take(MAX_CANDIDATES)
            .map(|c| wall_clock_instant(self.tz, c))
            .find(|&x| x > t)
    }

    /// The most recent scheduled instant in `(not_before, t]`: the run that is due after the
    /// daemon was down from `not_before` to `t`. Looks at a handful of candidates whatever the
    /// length of the gap.
    pub fn latest_at_or_before(
        &self,
        t: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let local = whole_seconds(t.with_timezone(&self.tz).naive_local());
        // The last wall-clock time at or before `local` was shown at or before `t`...
        let mut best = self
            .schedule
            .after(&Utc.from_utc_datetime(&(local + Duration::seconds(1))))
            .next_back()
            .map(|c| wall_clock_instant(self.tz, c.naive_utc()));
        // ...and so may later ones, if the clock fell back: take those too, in order.
        for c in self.candidates_after(local).take(MAX_CANDIDATES) {
            let x = wall_clock_instant(self.tz, c);
            if x > t {
                break;
            }
            best = Some(x);
        }
        best.filter(|&x| x > not_before && x <= t)
    }

    /// The next `n` runs after `t`, in the job's zone.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            let Some(next) = self.next_after(at) else {
                break;
            };
            out.push(next.with_timezone(&self.tz));
            at = next;
        }
        out
    }

    /// Wall-clock times (as naive local times) the schedule names strictly after `local`.
    fn candidates_after(&self, local: NaiveDateTime) -> impl Iterator<Item = NaiveDateTime> + '_ {
        // The crate's zone is UTC here, a stand-in for the wall clock: it has no gaps or repeats,
        // so every named time comes out once, and `wall_clock_instant` maps it to the real zone.
        self.schedule
            .after(&Utc.from_utc_datetime(&local))
            .map(|c| c.naive_utc())
    }
}

/// Scheduled times are whole seconds; the crate's searches compare whole seconds too.
fn whole_seconds(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(0).unwrap_or(t)
}

/// Why a cron expression is refused: the message, what to write instead, and where in the
/// expression (a character offset and length) the problem is, if it is one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronError {
    pub message: String,
    pub help: Option<String>,
    pub span: Option<(usize, usize)>,
}

const FIVE_FIELDS: &str = "minute hour day-of-month month day-of-week";

/// Parses a standard five-field cron expression for the `cron` crate (prepending `0` seconds),
/// refusing the forms whose meaning differs between dialects.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, CronError> {
    let err = |message: String, help: Option<String>, span| CronError {
        message,
        help,
        span,
    };
    let trimmed = expr.trim();
    if let Some(alias) = trimmed.strip_prefix('@') {
        let fields = match alias {
            "hourly" => Some("0 * * * *"),
            "daily" | "midnight" => Some("0 0 * * *"),
            "weekly" => Some("0 0 * * Sun"),
            "monthly" => Some("0 0 1 * *"),
            "yearly" | "annually" => Some("0 0 1 1 *"),
            _ => None,
        };
        return Err(err(
            format!(
                "cron alias `{trimmed}` is not accepted: write the five fields ({FIVE_FIELDS})"
            ),
            Some(match fields {
                Some(f) => format!("`{trimmed}` is `{f}`"),
                None => "such as `0 8 * * Mon-Fri` for 08:00 on weekdays".into(),
            }),
            None,
        ));
    }
    // Fields with their character offsets in `expr`.
    let mut fields: Vec<(usize, &str)> = Vec::new();
    let mut start = None;
    for (ci, (bi, c)) in expr.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some((ci, bi)),
            (true, Some((sc, sb))) => {
                fields.push((sc, &expr[sb..bi]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some((sc, sb)) = start {
        fields.push((sc, &expr[sb..]));
    }
    if fields.len() != 5 {
        let help = match fields.len() {
            6 | 7 => Some(format!(
                "without the seconds{} field: `{}`",
                if fields.len() == 7 { " and year" } else { "" },
                fields[1..6]
                    .iter()
                    .map(|f| f.1)
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            _ => Some("such as `0 8 * * Mon-Fri` for 08:00 on weekdays".into()),
        };
        return Err(err(
            format!(
                "cron `{}` has {} fields: write the standard five ({FIVE_FIELDS})",
                trimmed,
                fields.len()
            ),
            help,
            None,
        ));
    }
    let (dow_at, dow) = fields[4];
    if dow.bytes().any(|b| b.is_ascii_digit()) {
        let names = weekday_names(dow);
        let example = names.clone().unwrap_or_else(|| "Mon-Fri".into());
        return Err(err(
            format!(
                "day-of-week `{dow}` is numeric; write names ({example}): numbering differs between cron dialects"
            ),
            Some(match names {
                Some(n) => format!(
                    "write `{} {n}`: in standard cron 0 and 7 are Sunday and 1 is Monday, but the scheduler counts Sunday as 1",
                    fields[..4].iter().map(|f| f.1).collect::<Vec<_>>().join(" ")
                ),
                None => "name the days: Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges such as Mon-Fri and lists such as Mon,Wed,Fri".into(),
            }),
            Some((dow_at, dow.chars().count())),
        ));
    }
    let (dom_at, dom) = fields[2];
    let any = |f: &str| f == "*" || f == "?";
    if !any(dom) && !any(dow) {
        return Err(err(
            format!(
                "cron `{trimmed}` restricts both the day of the month (`{dom}`) and the day of the week (`{dow}`): standard cron runs when either matches, the scheduler only when both do"
            ),
            Some("restrict one of them and leave the other `*`".into()),
            Some((dom_at, dom.chars().count())),
        ));
    }
    cron::Schedule::from_str(&format!("0 {trimmed}")).map_err(|e| {
        // The crate shows the input with a caret under the problem, then the message.
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        let message = lines
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('^'))
            .map(|l| l.trim().to_string())
            .unwrap_or(text.clone());
        let message = if message.contains(&format!("0 {trimmed}")) || message.is_empty() {
            "the expression does not parse".to_string()
        } else {
            message
        };
        err(
            format!("invalid cron `{trimmed}`: {message}"),
            Some(format!(
                "write five fields: {FIVE_FIELDS}, such as `0 8 * * Mon-Fri`"
            )),
            None,
        )
    })
}

/// Standard-cron weekday numbers (0 or 7 Sunday, 1 Monday..6 Saturday) as names, if the field
/// is only numbers, ranges and lists.
fn weekday_names(field: &str) -> Option<String> {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let name = |s: &str| -> Option<&str> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            NAMES.get(s.parse::<usize>().ok()?).copied()
        } else {
            NAMES.iter().find(|n| n.eq_ignore_ascii_case(s)).copied()
        }
    };
    field
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => Some(format!("{}-{}", name(a)?, name(b)?)),
            None => name(part).map(str::to_string),
        })
        .collect::<Option<Vec<_>>>()
        .map(|v| v.join(","))
}

/// A wall-clock window of a scorecard, as the template sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Period {
    /// Local time, `2026-03-02 09:00`.
    pub from: String,
    pub to: String,
}

/// Someone or something with an id and a name in the recipient's locale.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Named {
    pub id: String,
    pub name: String,
}

/// The variables of the `overdue_digest` template.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OverdueDigestVars {
    pub recipient: Named,
    /// The leader's unit, whose subtree the issues lie in.
    pub unit: Named,
    pub issues: Vec<OverdueIssue>,
    /// Local time of the run.
    pub as_of: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OverdueIssue {
    pub id: String,
    pub category_name: String,
    pub unit_name: String,
    pub department_name: String,
    /// `acknowledge` or `resolve`.
    pub deadline_kind: String,
    /// Local time of the deadline that passed.
    pub deadline_at: String,
    /// How long ago, as text: `3h 20m`, `2d 4h`.
    pub overdue_by: String,
}

/// The variables of the `scorecard` template.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScorecardVars {
    pub recipient: Named,
    pub period: Period,
    pub rows: Vec<ScorecardRow>,
    pub as_of: String,
}

/// One department's figures over the period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScorecardRow {
    pub department: String,
    pub department_name: String,
    pub assigned: u64,
    pub acknowledged_on_time: u64,
    pub resolved_on_time: u64,
    pub reopened: u64,
    /// How many evaluations the average is of.
    pub rated: u64,
    /// `None` (the template sees `none`) when nothing was rated.
    pub average_rating: Option<f64>,
    /// The points the rules' `scoring:` gives the figures; `None` when it scores no department
    /// figure.
    pub score: Option<crate::scoring::Score>,
}

/// `overdue_by` as the templates show it: whole days, hours and minutes, the two largest.
pub fn format_overdue(d: Duration) -> String {
    let m = d.num_minutes().max(0);
    let (days, hours, minutes) = (m / 1440, m / 60 % 24, m % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};

    fn job(expr: &str, tz: Tz) -> Job {
        Job {
            id: "j".into(),
            cron: expr.into(),
            schedule: parse_cron(expr).unwrap_or_else(|e| panic!("{expr}: {e:?}")),
            calendar: 0,
            tz,
            report: Report::Scorecard {
                period: Duration::days(7),
            },
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn weekdays_in_shanghai() {
        let j = job("0 8 * * Mon-Fri", chrono_tz::Asia::Shanghai);
        // Friday 2026-03-06 after 08:00: next is Monday 08:00.
        assert_eq!(
            j.next_after(at("2026-03-06T09:00:00+08:00")),
            Some(at("2026-03-09T08:00:00+08:00"))
        );
        // Exactly at a run: strictly after.
        assert_eq!(
            j.next_after(at("2026-03-09T08:00:00+08:00")),
            Some(at("2026-03-10T08:00:00+08:00"))
        );
        assert_eq!(
            j.next_after(at("2026-03-09T07:59:59+08:00")),
            Some(at("2026-03-09T08:00:00+08:00"))
        );
        let runs = j.upcoming(at("2026-03-06T09:00:00+08:00"), 3);
        assert_eq!(
            runs.iter().map(|r| r.to_rfc3339()).collect::<Vec<_>>(),
            [
                "2026-03-09T08:00:00+08:00",
                "2026-03-10T08:00:00+08:00",
                "2026-03-11T08:00:00+08:00"
            ]
        );
    }

    #[test]
    fn mon_fri_never_fires_on_a_weekend() {
        for tz in [chrono_tz::Asia::Shanghai, chrono_tz::Europe::Berlin] {
            let j = job("30 7 * * Mon-Fri", tz);
            let mut t = at("2026-01-01T00:00:00Z");
            for _ in 0..400 {
                t = j.next_after(t).unwrap();
                let w = t.with_timezone(&tz).weekday();
                assert!(!matches!(w, Weekday::Sat | Weekday::Sun), "{t} is a {w}");
            }
        }
        let sunday = job("0 9 * * Sun", chrono_tz::Asia::Shanghai);
        let t = sunday.next_after(at("2026-03-02T00:00:00+08:00")).unwrap();
        assert_eq!(t, at("2026-03-08T09:00:00+08:00"));
    }

    #[test]
    fn missed_runs_in_shanghai() {
        let j = job("0 8 * * Mon-Fri", chrono_tz::Asia::Shanghai);
        let t = at("2026-03-09T10:00:00+08:00");
        // Down since Friday evening: Monday's run is due.
        assert_eq!(
            j.latest_at_or_before(t, at("2026-03-06T18:00:00+08:00")),
            Some(at("2026-03-09T08:00:00+08:00"))
        );
        // Monday's run already done (not_before is it): nothing.
        assert_eq!(
            j.latest_at_or_before(t, at("2026-03-09T08:00:00+08:00")),
            None
        );
        // At exactly the run: it counts.
        assert_eq!(
            j.latest_at_or_before(
                at("2026-03-09T08:00:00+08:00"),
                at("2026-03-09T07:00:00+08:00")
            ),
            Some(at("2026-03-09T08:00:00+08:00"))
        );
        // Half a second before a run: the one before it.
        let almost = at("2026-03-09T07:59:59.5+08:00");
        assert_eq!(
            j.latest_at_or_before(almost, at("2026-03-01T00:00:00Z")),
            Some(at("2026-03-06T08:00:00+08:00"))
        );
        assert_eq!(j.next_after(almost), Some(at("2026-03-09T08:00:00+08:00")));
        let just_after = at("2026-03-09T08:00:00.5+08:00");
        assert_eq!(
            j.latest_at_or_before(just_after, at("2026-03-01T00:00:00Z")),
            Some(at("2026-03-09T08:00:00+08:00"))
        );
        assert_eq!(
            j.next_after(just_after),
            Some(at("2026-03-10T08:00:00+08:00"))
        );
        // Down for years: the latest one only, found at once.
        assert_eq!(
            j.latest_at_or_before(t, at("2020-01-01T00:00:00Z")),
            Some(at("2026-03-09T08:00:00+08:00"))
        );
        // Over a weekend: Friday's.
        assert_eq!(
            j.latest_at_or_before(at("2026-03-08T23:00:00+08:00"), at("2026-03-01T00:00:00Z")),
            Some(at("2026-03-06T08:00:00+08:00"))
        );
    }

    #[test]
    fn berlin_spring_forward() {
        let berlin = chrono_tz::Europe::Berlin;
        // 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist and runs when the gap ends.
        let j = job("30 2 * * *", berlin);
        let before = at("2026-03-28T12:00:00+01:00");
        assert_eq!(j.next_after(before), Some(at("2026-03-29T03:00:00+02:00")));
        assert_eq!(
            j.next_after(at("2026-03-29T03:00:00+02:00")),
            Some(at("2026-03-30T02:30:00+02:00"))
        );
        // Daily 08:00 is 08:00 local on both sides: 23 real hours apart across the change.
        let j = job("0 8 * * *", berlin);
        let a = j.next_after(at("2026-03-28T09:00:00+01:00")).unwrap();
        assert_eq!(a, at("2026-03-29T08:00:00+02:00"));
        assert_eq!(a - at("2026-03-28T08:00:00+01:00"), Duration::hours(23));
        assert_eq!(
            j.latest_at_or_before(at("2026-03-29T07:59:00+02:00"), at("2026-03-20T00:00:00Z")),
            Some(at("2026-03-28T08:00:00+01:00"))
        );
        assert_eq!(
            j.latest_at_or_before(at("2026-03-29T08:00:00+02:00"), at("2026-03-20T00:00:00Z")),
            Some(at("2026-03-29T08:00:00+02:00"))
        );
    }

    #[test]
    fn berlin_fall_back() {
        let berlin = chrono_tz::Europe::Berlin;
        // 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 is shown twice and runs once, the first time.
        let j = job("30 2 * * *", berlin);
        let first = at("2026-10-25T02:30:00+02:00");
        assert_eq!(j.next_after(at("2026-10-24T12:00:00+02:00")), Some(first));
        assert_eq!(j.next_after(first), Some(at("2026-10-26T02:30:00+01:00")));
        // From inside the repeated hour, second time round (02:10 CET, after the first 02:30).
        assert_eq!(
            j.next_after(at("2026-10-25T02:10:00+01:00")),
            Some(at("2026-10-26T02:30:00+01:00"))
        );
        // The missed run seen from the second pass is the first 02:30.
        assert_eq!(
            j.latest_at_or_before(at("2026-10-25T02:10:00+01:00"), at("2026-10-24T00:00:00Z")),
            Some(first)
        );
        // Every 15 minutes through the repeated hour: each wall-clock time once.
        let j = job("*/15 * * * *", berlin);
        let runs: Vec<String> = j
            .upcoming(at("2026-10-25T01:50:00+02:00"), 9)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(
            runs,
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:15:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:45:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T03:15:00+01:00",
                "2026-10-25T03:30:00+01:00",
                "2026-10-25T03:45:00+01:00",
                "2026-10-25T04:00:00+01:00",
            ]
        );
        // The latest run at 02:50 CET (second pass) is 02:45 CEST: the clock showed it first.
        assert_eq!(
            j.latest_at_or_before(at("2026-10-25T02:50:00+01:00"), at("2026-10-24T00:00:00Z")),
            Some(at("2026-10-25T02:45:00+02:00"))
        );
        // And at 03:00 CET, 03:00 CET itself.
        assert_eq!(
            j.latest_at_or_before(at("2026-10-25T03:00:00+01:00"), at("2026-10-24T00:00:00Z")),
            Some(at("2026-10-25T03:00:00+01:00"))
        );
    }

    #[test]
    fn weekly_in_berlin_across_both_changes() {
        let j = job("0 9 * * Mon", chrono_tz::Europe::Berlin);
        let runs = j.upcoming(at("2026-03-20T00:00:00Z"), 2);
        assert_eq!(runs[0].to_rfc3339(), "2026-03-23T09:00:00+01:00");
        assert_eq!(runs[1].to_rfc3339(), "2026-03-30T09:00:00+02:00");
        let runs = j.upcoming(at("2026-10-20T00:00:00Z"), 2);
        assert_eq!(runs[0].to_rfc3339(), "2026-10-26T09:00:00+01:00");
        assert_eq!(runs[1].to_rfc3339(), "2026-11-02T09:00:00+01:00");
    }

    fn refused(expr: &str) -> CronError {
        parse_cron(expr).expect_err(expr)
    }

    #[test]
    fn standard_form_only() {
        for ok in [
            "0 8 * * Mon-Fri",
            "*/15 * * * *",
            "0 9 * * Mon",
            "0 0 1 * *",
            "0 8 * Jan-Mar Sat,Sun",
        ] {
            parse_cron(ok).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
        let e = refused("0 8 * * 1-5");
        assert_eq!(
            e.message,
            "day-of-week `1-5` is numeric; write names (Mon-Fri): numbering differs between cron dialects"
        );
        assert!(e.help.unwrap().contains("write `0 8 * * Mon-Fri`"));
        assert_eq!(e.span, Some((8, 3)));
        assert!(
            refused("0 8 * * 0,6")
                .message
                .contains("write names (Sun,Sat)")
        );
        assert!(refused("0 8 * * 7").message.contains("write names (Sun)"));
        assert!(refused("0 8 * * */2").message.contains("is numeric"));
        let e = refused("0 0 8 * * Mon");
        assert!(e.message.contains("has 6 fields"), "{e:?}");
        assert_eq!(
            e.help.as_deref(),
            Some("without the seconds field: `0 8 * * Mon`")
        );
        assert!(
            refused("0 0 8 * * Mon 2026")
                .message
                .contains("has 7 fields")
        );
        assert!(refused("0 8 *").message.contains("has 3 fields"));
        let e = refused("@daily");
        assert!(e.message.contains("alias `@daily` is not accepted"));
        assert_eq!(e.help.as_deref(), Some("`@daily` is `0 0 * * *`"));
        assert!(refused("0 8 1 * Mon").message.contains("restricts both"));
        assert_eq!(
            refused("0 8 * * Mnn").message,
            "invalid cron `0 8 * * Mnn`: 'Mnn' is not a valid day of the week."
        );
        let e = refused("61 8 * * *");
        assert!(
            e.message.starts_with("invalid cron `61 8 * * *`: "),
            "{e:?}"
        );
    }

    #[test]
    fn overdue_as_text() {
        assert_eq!(format_overdue(Duration::minutes(5)), "5m");
        assert_eq!(format_overdue(Duration::minutes(200)), "3h 20m");
        assert_eq!(format_overdue(Duration::hours(52)), "2d 4h");
    }
}
