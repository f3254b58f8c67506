//! Business calendars: deadlines measured in working time.
//!
//! A [`Calendar`] has a time zone, a set of working weekdays, the working spans of a day
//! (such as `09:00-12:00` and `13:30-17:30`), public holidays, and make-up working days
//! (days that are worked although they fall on a weekend, China's "调休").
//!
//! # Semantics
//!
//! **Working days.** A local date is a working day if it is a make-up day; otherwise not if it is
//! a holiday; otherwise if its weekday is a working weekday. A date may not be both a holiday and
//! a make-up day.
//!
//! **Working time is real elapsed time.** For every working day, each span `[start, end)` of local
//! wall-clock time becomes a real (UTC) interval `[resolve(start), resolve(end))`; `24:00` means
//! the next day's `00:00`. A local time that does not exist (the gap when clocks spring forward)
//! resolves to the first instant after the gap. An ambiguous local time (the repeated hour when
//! clocks fall back) resolves to its earliest instant when it starts a span and to its latest
//! when it ends one. So on a daylight-saving day a span that covers the change is an hour shorter
//! or longer in real time. Working time is the union of these intervals: if two of them overlap
//! in real time (possible only when one span ends and the next starts inside the same repeated
//! hour), the overlap counts once.
//!
//! **Durations.** A [`WorkDuration`] such as `1d4h` is `days` working days plus `minutes`; one
//! working day is [`Calendar::day_minutes`], the sum of the spans, so `1d` on a `09:00-17:00`
//! calendar is eight working hours ([`Calendar::duration_seconds`]).
//!
//! **Adding.** [`Calendar::add`] starts counting at [`Calendar::next_working_instant`] of the
//! start (the start itself if it is working time, else the start of the next span) and returns
//! the instant at which that many seconds of working time have elapsed. If the last second is
//! used up exactly at the end of a span, the result is that end (close of business, such as
//! 17:30), not the next morning. A deadline of a positive duration therefore always lies in
//! working time or exactly at the close of a span. From a start inside working time, `N` working
//! days land at the same position on the working clock `N` working days later (Tue 10:00 + `1d`
//! = Wed 10:00; Fri 15:00 + `1d` = Mon 15:00); from a start outside working time counting
//! begins at the next working start, so Fri 18:00 + `1d` = Mon 17:00 on a `09:00-17:00` calendar.
//! A zero duration gives the next working instant.
//!
//! **Measuring.** [`Calendar::working_seconds_between`]`(a, b)` is the working time in `[a, b)`,
//! 0 if `b <= a`, rounded down to whole seconds. It is the exact inverse of adding: for every
//! start and every `secs >= 0`, `working_seconds_between(start, add_seconds(start, secs)) == secs`.
//!
//! **Subtracting.** [`Calendar::sub_seconds`]`(end, secs)` is the latest instant `t <= end` with
//! `working_seconds_between(t, end) == secs`; when that falls at the start of a span it is the
//! span's start (Mon 09:00, not the previous Friday's 17:00). `sub_seconds(end, 0)` is `end`.
//! It is what "remind one hour before the deadline" uses.
//!
//! **Bounded searches.** [`Calendar::new`] refuses a calendar without working weekdays or without
//! spans, so working time normally recurs every week. Holidays could still blanket years of
//! working days, so every search for working time gives up after
//! [`SCAN_LIMIT_DAYS`] (3660) consecutive local days without any: `add` and
//! `next_working_instant` then return the point the search reached (3660 days after the last
//! working time it saw) and `sub_seconds` the point it reached going back. No walk, searching
//! or measuring, covers more than [`WALK_LIMIT_DAYS`] (36,600 local days, a century): past that
//! `add` and `sub_seconds` return the point reached and `working_seconds_between` counts only
//! the first century of its range. Policy durations stay far inside these limits
//! ([`WorkDuration::parse`] accepts at most 3660 days). Nothing panics, and results outside
//! chrono's date range are clamped to it.
//!
//! **Time-zone data.** Offsets come from chrono-tz. Two wall-clock times at most five days apart
//! that have the same unambiguous offset are taken to have that offset between them, so a walk
//! looks up one offset per working day rather than one per span boundary. This relies on a zone
//! never changing its offset twice within five days, which holds for every zone in the data
//! chrono-tz 0.10 carries (the closest two changes of any zone are 6.9 days apart).
//!
//! **Cost.** Adding, measuring and subtracting allocate nothing (only `add_traced` builds its
//! list) and walk day by day, with about one offset look-up per working day visited.

use std::fmt;
use std::ops::ControlFlow;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
    Weekday,
};
use chrono_tz::{GapInfo, Tz, TzOffset};

/// How many consecutive local days without working time a search walks before it gives up.
pub const SCAN_LIMIT_DAYS: i64 = 3660;

/// How many local days any one walk covers at most (a century), so that absurd amounts cost
/// about a millisecond rather than a walk to the end of chrono's range.
pub const WALK_LIMIT_DAYS: i64 = 36_600;

const NANOS: i128 = 1_000_000_000;
/// How many days apart two days may be for a walk to reuse one's offset for the other; no zone
/// changes its offset twice within that (the closest pair in the tz data is 6.9 days apart).
const SHARE_DAYS: i64 = 4;
const SECS_PER_DAY: i64 = 86_400;
const MINUTES_PER_DAY: u32 = 1440;
/// `NaiveDate::num_days_from_ce` of 1970-01-01: day numbers inside are days since the Unix epoch.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;
/// Longest duration `WorkDuration::parse` accepts; anything longer is a typo, not a deadline.
const MAX_DURATION_DAYS: u64 = 3660;

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

/// A working-time duration as written in policies: `30m`, `2h`, `3d`, `1d4h`, `90m`.
///
/// Days stay days (their length depends on the calendar); hours are stored as minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct WorkDuration {
    pub days: u32,
    pub minutes: u32,
}

const DURATION_EXPECTED: &str = "expected a number followed by d, h or m, such as 30m, 4h or 2d";

impl WorkDuration {
    /// Parses `<n>d`, `<n>h`, `<n>m` components in that order, each at most once (`1d4h30m`);
    /// spaces between components are allowed.
    pub fn parse(s: &str) -> Result<WorkDuration, String> {
        let bad = |why: &str| format!("invalid duration `{s}`: {why}");
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad(DURATION_EXPECTED));
        }
        let (mut days, mut minutes) = (0u64, 0u64);
        let mut last_unit: Option<usize> = None;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad(DURATION_EXPECTED));
            }
            let (number, tail) = rest.split_at(digits);
            let value: u64 = number.parse().map_err(|_| bad("the number is too large"))?;
            let unit = match tail.as_bytes().first() {
                Some(b'd') => 0,
                Some(b'h') => 1,
                Some(b'm') => 2,
                _ => return Err(bad(DURATION_EXPECTED)),
            };
            if last_unit.is_some_and(|last| unit <= last) {
                return Err(bad(
                    "each of d, h and m may appear once, in that order, such as 1d4h30m",
                ));
            }
            last_unit = Some(unit);
            let too_long = || bad("longer than 3660 days; is it a typo?");
            match unit {
                0 => days = value,
                1 => {
                    minutes = value
                        .checked_mul(60)
                        .and_then(|m| m.checked_add(minutes))
                        .ok_or_else(too_long)?
                }
                _ => minutes = minutes.checked_add(value).ok_or_else(too_long)?,
            }
            if days > MAX_DURATION_DAYS || minutes > MAX_DURATION_DAYS * u64::from(MINUTES_PER_DAY)
            {
                return Err(too_long());
            }
            rest = tail[1..].trim_start();
        }
        // Both are bounded by the checks above, far below u32::MAX.
        Ok(WorkDuration {
            days: days as u32,
            minutes: minutes as u32,
        })
    }

    pub fn minutes(m: u32) -> Self {
        WorkDuration {
            days: 0,
            minutes: m,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.days == 0 && self.minutes == 0
    }
}

impl fmt::Display for WorkDuration {
    /// The canonical form: `1d4h`, `2h30m`, `30m`; zero is `0m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0m");
        }
        let (hours, minutes) = (self.minutes / 60, self.minutes % 60);
        if self.days > 0 {
            write!(f, "{}d", self.days)?;
        }
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        Ok(())
    }
}

impl serde::Serialize for WorkDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WorkDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WorkDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30m, 4h or 2d")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WorkDuration, E> {
                WorkDuration::parse(v).map_err(E::custom)
            }

            // YAML reads a bare `30` as a number; say what is missing rather than "invalid type".
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<WorkDuration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: the number needs a unit, d, h or m, such as {v}m"
                )))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<WorkDuration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: {DURATION_EXPECTED}"
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Spans and weekdays
// ---------------------------------------------------------------------------------------------

/// One working span of the day in local time, half-open `[start, end)`, in minutes after
/// midnight; `end` may be 1440 (`24:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// Parses `HH:MM-HH:MM` (`09:00-12:00`, `00:00-24:00`); the hour may have one digit and
    /// spaces around the dash are allowed. The start must be before the end.
    pub fn parse(s: &str) -> Result<Span, String> {
        let bad = |why: &str| format!("invalid working span `{s}`: {why}");
        let format = "expected HH:MM-HH:MM, such as 09:00-12:00 or 13:30-17:30";
        let (a, b) = s.split_once('-').ok_or_else(|| bad(format))?;
        let clock = |t: &str| match parse_clock(t.trim()) {
            Clock::Minutes(m) => Ok(m),
            Clock::Malformed => Err(bad(format)),
            Clock::OutOfRange => Err(bad(&format!(
                "`{}` is not a time of day; use 00:00 to 24:00",
                t.trim()
            ))),
        };
        let (start, end) = (clock(a)?, clock(b)?);
        if start >= end {
            return Err(bad("the start must be before the end"));
        }
        Ok(Span { start, end })
    }

    /// Nominal length in minutes.
    pub fn minutes(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    fn is_valid(&self) -> bool {
        self.start < self.end && self.end <= MINUTES_PER_DAY
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

enum Clock {
    Minutes(u32),
    Malformed,
    OutOfRange,
}

/// `H:MM` or `HH:MM`, 00:00 to 24:00, as minutes after midnight.
fn parse_clock(s: &str) -> Clock {
    let digits = |t: &str, min: usize, max: usize| {
        (min..=max).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())
    };
    match s.split_once(':') {
        Some((h, m)) if digits(h, 1, 2) && digits(m, 2, 2) => {
            // At most two digits each, so these parse.
            let (h, m): (u32, u32) = (h.parse().unwrap_or(99), m.parse().unwrap_or(99));
            let minutes = h * 60 + m;
            if m < 60 && minutes <= MINUTES_PER_DAY {
                Clock::Minutes(minutes)
            } else {
                Clock::OutOfRange
            }
        }
        _ => Clock::Malformed,
    }
}

/// Accepts `Mon`..`Sun` and `Monday`..`Sunday`, in any case.
pub fn parse_weekday(s: &str) -> Result<Weekday, String> {
    const NAMES: [(&str, &str, Weekday); 7] = [
        ("mon", "monday", Weekday::Mon),
        ("tue", "tuesday", Weekday::Tue),
        ("wed", "wednesday", Weekday::Wed),
        ("thu", "thursday", Weekday::Thu),
        ("fri", "friday", Weekday::Fri),
        ("sat", "saturday", Weekday::Sat),
        ("sun", "sunday", Weekday::Sun),
    ];
    let t = s.trim();
    NAMES
        .iter()
        .find(|(short, long, _)| t.eq_ignore_ascii_case(short) || t.eq_ignore_ascii_case(long))
        .map(|&(_, _, w)| w)
        .ok_or_else(|| {
            format!(
                "invalid weekday `{s}`: expected Mon, Tue, Wed, Thu, Fri, Sat or Sun (or the full name, such as Monday)"
            )
        })
}

/// The first instant at which the wall clock of `tz` shows `local` or later: the instant itself
/// when it exists once, the earlier one when the clock shows it twice (clocks fall back), and the
/// end of the gap when it does not exist (clocks spring forward). Monotonic in `local`.
pub fn wall_clock_instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earliest, _) => earliest.with_timezone(&Utc),
        LocalResult::None => match GapInfo::new(&local, &tz).and_then(|g| g.end) {
            Some(after) => after.with_timezone(&Utc),
            // Only at the edge of the tz data: the offset in force there is the best guess.
            None => {
                let off = tz.offset_from_utc_datetime(&local).fix();
                Utc.from_utc_datetime(
                    &(local - chrono::Duration::seconds(off.local_minus_utc() as i64)),
                )
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Calendar
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CalendarError {
    /// `a_index` and `b_index` are positions in the spans given to [`Calendar::new`],
    /// `a_index < b_index`.
    #[error("working spans {a} and {b} overlap")]
    Overlap {
        a: String,
        b: String,
        a_index: usize,
        b_index: usize,
    },
    /// Only reachable by building a [`Span`] by hand; [`Span::parse`] refuses these.
    #[error(
        "working span {span} is invalid: the start must be before the end, and the end no later than 24:00"
    )]
    InvalidSpan { span: String, index: usize },
    #[error("{date} is both a holiday and a make-up working day")]
    HolidayAndMakeup { date: NaiveDate },
    #[error("no working time: {reason}")]
    Empty { reason: &'static str },
}

/// A business calendar; see the [module documentation](self) for the exact semantics.
#[derive(Clone, Debug)]
pub struct Calendar {
    id: std::sync::Arc<str>,
    tz: Tz,
    /// Bit `n` set: the weekday `n` days from Monday is worked.
    weekdays: u8,
    /// Sorted, disjoint, touching spans merged.
    spans: Vec<Span>,
    /// Holidays (`false`) and make-up days (`true`) as day numbers since 1970-01-01, sorted.
    exceptions: Vec<(i64, bool)>,
    day_minutes: u32,
}

/// Working intervals `[start, end)` in order, as [`Calendar::add_traced`] reports them.
pub type WorkIntervals = Vec<(DateTime<Utc>, DateTime<Utc>)>;

/// A day number and the one unambiguous offset of a probe time on it; see `shared_offset`.
type Known = Option<(i64, i64)>;

/// How a working day's span boundaries map to UTC.
#[derive(Clone, Copy)]
enum DayOffset {
    /// One offset (seconds east of UTC) holds for the whole working part of the day.
    Uniform(i64),
    /// The offset changes during the working part of the day: resolve every boundary.
    Changing,
}

impl Calendar {
    pub fn new(
        id: impl Into<String>,
        tz: Tz,
        working_days: &[Weekday],
        spans: Vec<Span>,
        holidays: impl IntoIterator<Item = NaiveDate>,
        makeup_days: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<Calendar, CalendarError> {
        if let Some((index, span)) = spans.iter().enumerate().find(|(_, s)| !s.is_valid()) {
            return Err(CalendarError::InvalidSpan {
                span: span.to_string(),
                index,
            });
        }
        if spans.is_empty() {
            return Err(CalendarError::Empty {
                reason: "the calendar has no working hours",
            });
        }
        let weekdays = working_days
            .iter()
            .fold(0u8, |m, d| m | 1 << d.num_days_from_monday());
        if weekdays == 0 {
            return Err(CalendarError::Empty {
                reason: "the calendar has no working weekdays (make-up days alone are not a working week)",
            });
        }

        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by_key(|&i| (spans[i].start, spans[i].end));
        // Sorted by start, the first overlap always shows between neighbours.
        if let Some(w) = order
            .windows(2)
            .find(|w| spans[w[1]].start < spans[w[0]].end)
        {
            let (a_index, b_index) = (w[0].min(w[1]), w[0].max(w[1]));
            return Err(CalendarError::Overlap {
                a: spans[a_index].to_string(),
                b: spans[b_index].to_string(),
                a_index,
                b_index,
            });
        }
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for &i in &order {
            match merged.last_mut() {
                Some(last) if last.end == spans[i].start => last.end = spans[i].end,
                _ => merged.push(spans[i]),
            }
        }

        let mut holidays: Vec<i64> = holidays.into_iter().map(day_number).collect();
        let mut makeups: Vec<i64> = makeup_days.into_iter().map(day_number).collect();
        holidays.sort_unstable();
        holidays.dedup();
        makeups.sort_unstable();
        makeups.dedup();
        if let Some(&d) = makeups.iter().find(|d| holidays.binary_search(d).is_ok()) {
            return Err(CalendarError::HolidayAndMakeup { date: date_of(d) });
        }
        let mut exceptions: Vec<(i64, bool)> = holidays
            .into_iter()
            .map(|d| (d, false))
            .chain(makeups.into_iter().map(|d| (d, true)))
            .collect();
        exceptions.sort_unstable();

        Ok(Calendar {
            id: std::sync::Arc::from(id.into()),
            tz,
            weekdays,
            day_minutes: merged.iter().map(Span::minutes).sum(),
            spans: merged,
            exceptions,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id, shared (no copy).
    pub fn key(&self) -> std::sync::Arc<str> {
        self.id.clone()
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The working spans of a day, sorted, with touching spans merged.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Nominal working minutes in one working day (the sum of the spans).
    pub fn day_minutes(&self) -> u32 {
        self.day_minutes
    }

    /// Make-up day: true; holiday: false; otherwise whether the weekday is worked.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        self.is_working_day_number(day_number(date))
    }

    /// Whether `t` lies inside a span `[start, end)` of a working day.
    pub fn is_working_time(&self, t: DateTime<Utc>) -> bool {
        let t = nanos_of(t);
        let today = Day::new(self.local_day(t));
        let covers = |day: Day| {
            let offset = self.day_offset(day);
            self.spans.iter().any(|span| {
                self.interval(day, offset, span)
                    .is_some_and(|(s, e)| s <= t && t < e)
            })
        };
        let at = |day: Day, minute, as_end| self.resolve(day, minute, as_end).map(nanos_of_secs);
        let working = |day: Day| self.is_working_day_number(day.n);
        let (yesterday, tomorrow) = (today.prev(), today.next());
        // Around a repeated hour at midnight, a neighbouring day's span can cover `t`; one
        // look-up at the edge of its working hours shows whether it can.
        (working(today) && covers(today))
            || (working(yesterday)
                && at(yesterday, self.spans[self.spans.len() - 1].end, true).is_some_and(|e| e > t)
                && covers(yesterday))
            || (working(tomorrow)
                && at(tomorrow, self.spans[0].start, false).is_some_and(|s| s <= t)
                && covers(tomorrow))
    }

    /// `t` if it is working time, else the start of the next working span.
    pub fn next_working_instant(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        datetime_of(self.forward(nanos_of(t), 0))
    }

    /// The deadline `d` of working time after `start`; see the module documentation.
    pub fn add(&self, start: DateTime<Utc>, d: WorkDuration) -> DateTime<Utc> {
        self.add_seconds(start, self.duration_seconds(d))
    }

    /// The instant at which `secs` seconds of working time have elapsed from `start`.
    /// A negative `secs` walks backwards, as `sub_seconds(start, -secs)`.
    pub fn add_seconds(&self, start: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
        let t = nanos_of(start);
        let amount = i128::from(secs) * NANOS;
        datetime_of(if amount < 0 {
            self.backward(t, -amount)
        } else {
            self.forward(t, amount)
        })
    }

    /// The latest instant `t <= end` with `working_seconds_between(t, end) == secs`.
    /// A negative `secs` walks forwards, as `add_seconds(end, -secs)`.
    pub fn sub_seconds(&self, end: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
        let t = nanos_of(end);
        let amount = i128::from(secs) * NANOS;
        datetime_of(if amount < 0 {
            self.forward(t, -amount)
        } else {
            self.backward(t, amount)
        })
    }

    /// Working time in `[a, b)`, rounded down to whole seconds; 0 if `b <= a`.
    pub fn working_seconds_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
        let (a, b) = (nanos_of(a), nanos_of(b));
        if b <= a {
            return 0;
        }
        let mut total: i128 = 0;
        let last_day = self.local_day(b) + 1;
        let _ = self.walk_forward(a, Some(last_day), |s, e| {
            if s >= b {
                return ControlFlow::Break(());
            }
            total += e.min(b) - s;
            if e >= b {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        // Bounded by chrono's range (under 2^44 seconds), so it fits.
        (total / NANOS) as i64
    }

    /// `days` working days of `day_minutes` each, plus `minutes`, in seconds.
    pub fn duration_seconds(&self, d: WorkDuration) -> i64 {
        i64::from(d.days) * i64::from(self.day_minutes) * 60 + i64::from(d.minutes) * 60
    }

    /// The same as [`add`](Self::add), with the working intervals counted, in order and with
    /// touching ones joined, for `escalade explain`. A zero duration counts no interval.
    pub fn add_traced(
        &self,
        start: DateTime<Utc>,
        d: WorkDuration,
    ) -> (DateTime<Utc>, WorkIntervals) {
        let from = nanos_of(start);
        let mut remaining = i128::from(self.duration_seconds(d)) * NANOS;
        let mut pieces: Vec<(i128, i128)> = Vec::new();
        let mut count = |s: i128, e: i128| match pieces.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ if s < e => pieces.push((s, e)),
            _ => {}
        };
        let end = match self.walk_forward(from, None, |s, e| {
            if remaining <= e - s {
                count(s, s + remaining);
                ControlFlow::Break(s + remaining)
            } else {
                count(s, e);
                remaining -= e - s;
                ControlFlow::Continue(())
            }
        }) {
            Ok(t) | Err(t) => t,
        };
        let pieces = pieces
            .into_iter()
            .map(|(s, e)| (datetime_of(s), datetime_of(e)))
            .collect();
        (datetime_of(end), pieces)
    }

    // --- walking ---------------------------------------------------------------------------

    /// The instant `amount` nanoseconds of working time after `from` (`amount >= 0`).
    fn forward(&self, from: i128, amount: i128) -> i128 {
        let mut remaining = amount;
        match self.walk_forward(from, None, |s, e| {
            if remaining <= e - s {
                ControlFlow::Break(s + remaining)
            } else {
                remaining -= e - s;
                ControlFlow::Continue(())
            }
        }) {
            Ok(t) | Err(t) => t,
        }
    }

    /// The latest instant with `amount` nanoseconds of working time before `to` (`amount >= 0`).
    fn backward(&self, to: i128, amount: i128) -> i128 {
        if amount == 0 {
            return to;
        }
        let mut remaining = amount;
        match self.walk_backward(to, |s, e| {
            if remaining <= e - s {
                ControlFlow::Break(e - remaining)
            } else {
                remaining -= e - s;
                ControlFlow::Continue(())
            }
        }) {
            Ok(t) | Err(t) => t,
        }
    }

    /// Calls `visit(s, e)` for the working time at or after `from`, as non-empty, disjoint
    /// intervals in order, until it breaks. Stops after `last_day` if given, else after
    /// `SCAN_LIMIT_DAYS` days without working time, and in any case after `WALK_LIMIT_DAYS`;
    /// `Err` carries the point reached.
    fn walk_forward<B>(
        &self,
        from: i128,
        last_day: Option<i64>,
        mut visit: impl FnMut(i128, i128) -> ControlFlow<B>,
    ) -> Result<B, i128> {
        let last_end = self.spans[self.spans.len() - 1].end;
        // The previous day's last span can reach past a midnight that falls in a repeated hour.
        let first = self.local_day(from) - 1;
        let mut day = Day::new(first);
        let mut exception = self.exceptions.partition_point(|&(d, _)| d < first);
        let mut cursor = from;
        let mut known = None;
        let mut idle_days = 0;
        loop {
            let gave_up = match last_day {
                Some(last) if day.n > last => return Err(cursor),
                Some(_) => day.n - first > WALK_LIMIT_DAYS,
                None => idle_days >= SCAN_LIMIT_DAYS || day.n - first > WALK_LIMIT_DAYS,
            };
            if gave_up {
                return Err(self.local_midnight(day).map_or(cursor, |t| t.max(cursor)));
            }
            while self
                .exceptions
                .get(exception)
                .is_some_and(|&(d, _)| d < day.n)
            {
                exception += 1;
            }
            let working = match self.exceptions.get(exception) {
                Some(&(d, worked)) if d == day.n => worked,
                _ => self.is_working_weekday(day.n),
            };
            idle_days += 1;
            // Nearly always the previous day is over before `from`: one look-up shows it.
            if working && !(day.n == first && self.ends_by(day, last_end, cursor, &mut known)) {
                let offset = self.shared_offset(day, last_end, &mut known);
                for span in &self.spans {
                    let Some((s, e)) = self.interval(day, offset, span) else {
                        continue;
                    };
                    // Clamping to the cursor both skips time before `from` and counts overlapping
                    // intervals once.
                    let s = s.max(cursor);
                    if s < e {
                        idle_days = 0;
                        if let ControlFlow::Break(b) = visit(s, e) {
                            return Ok(b);
                        }
                        cursor = e;
                    }
                }
            }
            day = day.next();
        }
    }

    /// The mirror of `walk_forward` for the working time before `to`, latest first.
    fn walk_backward<B>(
        &self,
        to: i128,
        mut visit: impl FnMut(i128, i128) -> ControlFlow<B>,
    ) -> Result<B, i128> {
        let first_start = self.spans[0].start;
        let first = self.local_day(to) + 1;
        let mut day = Day::new(first);
        // Number of exceptions on or before `day`.
        let mut exception = self.exceptions.partition_point(|&(d, _)| d <= first);
        let mut cursor = to;
        let mut known = None;
        let mut idle_days = 0;
        loop {
            if idle_days >= SCAN_LIMIT_DAYS || first - day.n > WALK_LIMIT_DAYS {
                return Err(self
                    .local_midnight(day.next())
                    .map_or(cursor, |t| t.min(cursor)));
            }
            while exception > 0 && self.exceptions[exception - 1].0 > day.n {
                exception -= 1;
            }
            let working = match exception.checked_sub(1).map(|i| self.exceptions[i]) {
                Some((d, worked)) if d == day.n => worked,
                _ => self.is_working_weekday(day.n),
            };
            idle_days += 1;
            // Nearly always the next day starts after `to`: one look-up shows it.
            if working
                && !(day.n == first && self.starts_from(day, first_start, cursor, &mut known))
            {
                let offset = self.shared_offset(day, first_start, &mut known);
                for span in self.spans.iter().rev() {
                    let Some((s, e)) = self.interval(day, offset, span) else {
                        continue;
                    };
                    let e = e.min(cursor);
                    if s < e {
                        idle_days = 0;
                        if let ControlFlow::Break(b) = visit(s, e) {
                            return Ok(b);
                        }
                        cursor = s;
                    }
                }
            }
            day = day.prev();
        }
    }

    /// Whether the working hours of `day`, which end at local `last_end`, are over by `t`.
    fn ends_by(&self, day: Day, last_end: u32, t: i128, known: &mut Known) -> bool {
        let end = match self.local_offset(day, last_end) {
            Some(LocalResult::Single(o)) => {
                *known = Some((day.n, offset_secs(o)));
                Some(day.local(last_end) - offset_secs(o))
            }
            _ => self.resolve(day, last_end, true),
        };
        end.is_none_or(|e| i128::from(e) * NANOS <= t)
    }

    /// Whether the working hours of `day`, which start at local `first_start`, begin at or
    /// after `t`.
    fn starts_from(&self, day: Day, first_start: u32, t: i128, known: &mut Known) -> bool {
        let start = match self.local_offset(day, first_start) {
            Some(LocalResult::Single(o)) => {
                *known = Some((day.n, offset_secs(o)));
                Some(day.local(first_start) - offset_secs(o))
            }
            _ => self.resolve(day, first_start, false),
        };
        start.is_none_or(|s| i128::from(s) * NANOS >= t)
    }

    /// The offsets of `day` during a walk. `known` holds a day whose local `probe` minute (the
    /// end of working hours walking forward, the start walking back) had one unambiguous
    /// offset. If this day's probe has the same offset and the two are at most `SHARE_DAYS`
    /// apart, the zone cannot have changed its offset in between (it never changes twice in
    /// that time), so every boundary of this day, all lying between the two probes, resolves
    /// with it: one look-up instead of two.
    fn shared_offset(&self, day: Day, probe: u32, known: &mut Known) -> DayOffset {
        if let Some((n, o)) = *known
            && (day.n - n).abs() <= SHARE_DAYS
            && let Some(LocalResult::Single(x)) = self.local_offset(day, probe)
            && offset_secs(x) == o
        {
            *known = Some((day.n, o));
            return DayOffset::Uniform(o);
        }
        let offset = self.day_offset(day);
        *known = match offset {
            DayOffset::Uniform(o) => Some((day.n, o)),
            DayOffset::Changing => None,
        };
        offset
    }

    // --- days and offsets ------------------------------------------------------------------

    fn is_working_weekday(&self, day: i64) -> bool {
        // 1970-01-01 was a Thursday, 3 days from Monday.
        self.weekdays & (1 << (day + 3).rem_euclid(7)) != 0
    }

    fn is_working_day_number(&self, day: i64) -> bool {
        match self.exceptions.binary_search_by_key(&day, |&(d, _)| d) {
            Ok(i) => self.exceptions[i].1,
            Err(_) => self.is_working_weekday(day),
        }
    }

    /// The local date of instant `t`, as a day number.
    fn local_day(&self, t: i128) -> i64 {
        let secs = clamp_secs(t.div_euclid(NANOS));
        let offset = DateTime::from_timestamp(secs, 0).map_or(0, |utc| {
            offset_secs(self.tz.offset_from_utc_datetime(&utc.naive_utc()))
        });
        (secs + offset).div_euclid(SECS_PER_DAY)
    }

    fn local_midnight(&self, day: Day) -> Option<i128> {
        self.resolve(day, 0, false).map(|s| i128::from(s) * NANOS)
    }

    fn local_offset(&self, day: Day, minute: u32) -> Option<LocalResult<TzOffset>> {
        Some(self.tz.offset_from_local_datetime(&day.at(minute)?.0))
    }

    fn day_offset(&self, day: Day) -> DayOffset {
        let last_end = self.spans[self.spans.len() - 1].end;
        match (
            self.local_offset(day, self.spans[0].start),
            self.local_offset(day, last_end),
        ) {
            (Some(LocalResult::Single(a)), Some(LocalResult::Single(b)))
                if offset_secs(a) == offset_secs(b) =>
            {
                DayOffset::Uniform(offset_secs(a))
            }
            _ => DayOffset::Changing,
        }
    }

    /// The real interval of `span` on `day`, in nanoseconds since the epoch; `None` only
    /// outside chrono's date range.
    fn interval(&self, day: Day, offset: DayOffset, span: &Span) -> Option<(i128, i128)> {
        let (s, e) = match offset {
            DayOffset::Uniform(o) => (day.local(span.start) - o, day.local(span.end) - o),
            DayOffset::Changing => (
                self.resolve(day, span.start, false)?,
                self.resolve(day, span.end, true)?,
            ),
        };
        Some((i128::from(s) * NANOS, i128::from(e) * NANOS))
    }

    /// UTC seconds of local `minute` of `day`: gaps go to the first instant after the gap,
    /// repeated times to the earliest instant (`as_end == false`) or the latest.
    fn resolve(&self, day: Day, minute: u32, as_end: bool) -> Option<i64> {
        let (naive, local) = day.at(minute)?;
        Some(match self.tz.offset_from_local_datetime(&naive) {
            LocalResult::Single(o) => local - offset_secs(o),
            LocalResult::Ambiguous(a, b) => {
                let (x, y) = (local - offset_secs(a), local - offset_secs(b));
                if as_end { x.max(y) } else { x.min(y) }
            }
            LocalResult::None => match GapInfo::new(&naive, &self.tz).and_then(|g| g.end) {
                Some(after) => after.timestamp(),
                // chrono-tz knows no end of the gap only at the edge of its data; the offset in
                // force there is the best guess.
                None => local - offset_secs(self.tz.offset_from_utc_datetime(&naive)),
            },
        })
    }
}

/// A local date as a day number since 1970-01-01 and, inside chrono's range, as a date; the
/// walks step both so that building wall-clock times needs no calendar arithmetic.
#[derive(Clone, Copy)]
struct Day {
    n: i64,
    date: Option<NaiveDate>,
}

impl Day {
    fn new(n: i64) -> Day {
        let date = i32::try_from(n + EPOCH_DAYS_FROM_CE)
            .ok()
            .and_then(NaiveDate::from_num_days_from_ce_opt);
        Day { n, date }
    }

    fn next(self) -> Day {
        match self.date.and_then(|d| d.succ_opt()) {
            Some(date) => Day {
                n: self.n + 1,
                date: Some(date),
            },
            None => Day::new(self.n + 1),
        }
    }

    fn prev(self) -> Day {
        match self.date.and_then(|d| d.pred_opt()) {
            Some(date) => Day {
                n: self.n - 1,
                date: Some(date),
            },
            None => Day::new(self.n - 1),
        }
    }

    /// Local wall-clock seconds since 1970-01-01T00:00 of `minute` of the day.
    fn local(self, minute: u32) -> i64 {
        self.n * SECS_PER_DAY + i64::from(minute) * 60
    }

    /// `minute` of the day (1440 is the next midnight) as a naive date-time, with `local`.
    fn at(self, minute: u32) -> Option<(NaiveDateTime, i64)> {
        let date = self.date?;
        let naive = if minute < MINUTES_PER_DAY {
            date.and_time(NaiveTime::from_num_seconds_from_midnight_opt(
                minute * 60,
                0,
            )?)
        } else {
            date.succ_opt()?.and_time(NaiveTime::MIN)
        };
        Some((naive, self.local(minute)))
    }
}

fn offset_secs(o: TzOffset) -> i64 {
    i64::from(o.fix().local_minus_utc())
}

fn day_number(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce()) - EPOCH_DAYS_FROM_CE
}

fn date_of(day: i64) -> NaiveDate {
    Day::new(day).date.unwrap_or(NaiveDate::MIN)
}

fn nanos_of_secs(secs: i64) -> i128 {
    i128::from(secs) * NANOS
}

fn nanos_of(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * NANOS + i128::from(t.timestamp_subsec_nanos())
}

fn clamp_secs(secs: i128) -> i64 {
    secs.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Clamps to chrono's range: a search that ran off the end of time returns the end of time.
fn datetime_of(t: i128) -> DateTime<Utc> {
    let secs = clamp_secs(t.div_euclid(NANOS));
    let nanos = t.rem_euclid(NANOS) as u32;
    DateTime::from_timestamp(secs, nanos).unwrap_or(if t < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Antarctica, Asia, Australia, Europe, Pacific};

    /// Zones with midnight changes (Havana, Santiago), half-hour (Lord Howe) and two-hour (Troll)
    /// changes, a skipped calendar day (Apia, 30 Dec 2011), and none at all (Shanghai).
    const ZONES: [Tz; 8] = [
        Europe::Berlin,
        America::Havana,
        America::Santiago,
        America::New_York,
        Australia::Lord_Howe,
        Antarctica::Troll,
        Pacific::Apia,
        Asia::Shanghai,
    ];

    use Weekday::*;

    /// Span sets with the weekdays they are worked: around the clock, across the small hours
    /// (meeting inside Berlin's repeated hour), office hours on two days a week (so walks both
    /// reuse an offset across a two-day gap and look it up afresh across a five-day one), and
    /// late evenings up to a midnight that Havana and Santiago move.
    const SPAN_SETS: [(&[&str], &[Weekday]); 4] = [
        (&["00:00-24:00"], &[Mon, Tue, Wed, Thu, Fri, Sat, Sun]),
        (
            &["00:00-00:30", "01:00-02:15", "02:45-05:00", "23:30-24:00"],
            &[Mon, Tue, Wed, Thu, Fri],
        ),
        (&["09:00-12:00", "13:30-17:30"], &[Wed, Fri]),
        (&["22:00-24:00"], &[Mon, Tue, Wed, Thu, Fri, Sat, Sun]),
    ];

    fn calendars() -> Vec<Calendar> {
        ZONES
            .iter()
            .flat_map(|&tz| {
                SPAN_SETS.iter().map(move |(set, weekdays)| {
                    let spans = set.iter().map(|s| Span::parse(s).unwrap()).collect();
                    Calendar::new(tz.name(), tz, weekdays, spans, [], []).unwrap()
                })
            })
            .collect()
    }

    /// Joins touching intervals: walks in opposite directions cut an overlap differently.
    fn joined(intervals: impl IntoIterator<Item = (i128, i128)>) -> Vec<(i128, i128)> {
        let mut out: Vec<(i128, i128)> = Vec::new();
        for (s, e) in intervals {
            match out.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => out.push((s, e)),
            }
        }
        out
    }

    /// The first place two interval lists differ, for a readable failure.
    fn first_difference(a: &[(i128, i128)], b: &[(i128, i128)]) -> Option<String> {
        let i = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))?;
        Some(format!("at {i}: {:?} != {:?}", a.get(i), b.get(i)))
    }

    /// Working intervals the slow way: every boundary resolved on its own, then the union.
    fn reference(cal: &Calendar, days: std::ops::Range<i64>) -> Vec<(i128, i128)> {
        let mut out: Vec<(i128, i128)> = Vec::new();
        for day in days.map(Day::new) {
            if !cal.is_working_day_number(day.n) {
                continue;
            }
            for span in &cal.spans {
                let (s, e) = cal.interval(day, DayOffset::Changing, span).unwrap();
                let s = out.last().map_or(s, |last| s.max(last.1));
                if s < e {
                    out.push((s, e));
                }
            }
        }
        out
    }

    fn days(from: &str, to: &str) -> std::ops::Range<i64> {
        day_number(from.parse().unwrap())..day_number(to.parse().unwrap())
    }

    fn offset_at(tz: Tz, secs: i64) -> i64 {
        let utc = DateTime::from_timestamp(secs, 0).unwrap().naive_utc();
        offset_secs(tz.offset_from_utc_datetime(&utc))
    }

    #[test]
    fn day_numbers_and_weekdays() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(day_number(d("1970-01-01")), 0);
        assert_eq!(date_of(day_number(d("2026-02-14"))), d("2026-02-14"));
        let cal = Calendar::new(
            "sat",
            Tz::UTC,
            &[Weekday::Sat],
            vec![Span { start: 0, end: 60 }],
            [],
            [],
        )
        .unwrap();
        for n in days("2025-12-20", "2026-01-20") {
            assert_eq!(
                cal.is_working_weekday(n),
                date_of(n).weekday() == Weekday::Sat
            );
        }
    }

    /// The shortcut that resolves a whole day with one offset agrees with resolving every
    /// boundary on its own.
    #[test]
    fn uniform_days_resolve_like_each_boundary() {
        for cal in calendars() {
            for day in days("2010-01-01", "2028-01-01") {
                let day = Day::new(day);
                if let DayOffset::Uniform(_) = cal.day_offset(day) {
                    for span in &cal.spans {
                        assert_eq!(
                            cal.interval(day, cal.day_offset(day), span),
                            cal.interval(day, DayOffset::Changing, span),
                            "{} on {:?}",
                            cal.id,
                            day.date
                        );
                    }
                }
            }
        }
    }

    /// The walks, which reuse offsets between nearby days, see exactly the reference intervals.
    #[test]
    fn walks_match_resolving_every_boundary() {
        for cal in calendars() {
            for (from, to) in [("2011-01-01", "2012-01-01"), ("2026-01-01", "2027-01-01")] {
                let range = days(from, to);
                let expected = reference(&cal, range.start - 1..range.end + 1);
                let start = i128::from(range.start * SECS_PER_DAY) * NANOS;
                let end = i128::from(range.end * SECS_PER_DAY) * NANOS;
                let inside = |&(s, e): &(i128, i128)| (s.max(start), e.min(end));
                let expected = joined(expected.iter().map(inside).filter(|(s, e)| s < e));
                let mut forward = Vec::new();
                let _ = cal.walk_forward(start, None, |s, e| {
                    if s >= end {
                        return ControlFlow::Break(());
                    }
                    forward.push((s, e.min(end)));
                    ControlFlow::Continue(())
                });
                let diff = first_difference(&joined(forward), &expected);
                assert_eq!(diff, None, "{} forward from {from}", cal.id);
                let mut backward = Vec::new();
                let _ = cal.walk_backward(end, |s, e| {
                    if e <= start {
                        return ControlFlow::Break(());
                    }
                    backward.push((s.max(start), e));
                    ControlFlow::Continue(())
                });
                backward.reverse();
                let diff = first_difference(&joined(backward), &expected);
                assert_eq!(diff, None, "{} backward from {to}", cal.id);
            }
        }
    }

    /// Every identity of the module documentation, on a grid of instants around every clock
    /// change of 2011 (with Apia's skipped day) and 2026 in the zones above.
    #[test]
    fn identities_hold_around_every_clock_change() {
        let amounts = [1, 5 * 3600, 86_400 + 7];
        for cal in calendars() {
            for day in days("2011-01-01", "2012-01-01").chain(days("2026-01-01", "2027-01-01")) {
                let midnight = day * SECS_PER_DAY;
                if offset_at(cal.tz, midnight) == offset_at(cal.tz, midnight + SECS_PER_DAY) {
                    continue;
                }
                let grid = (midnight - 2 * SECS_PER_DAY..midnight + 3 * SECS_PER_DAY)
                    .step_by(35 * 60)
                    .map(|s| DateTime::from_timestamp(s, 0).unwrap());
                let mut previous: Option<DateTime<Utc>> = None;
                for t in grid {
                    let next = cal.next_working_instant(t);
                    assert!(cal.is_working_time(next), "{} next after {t}", cal.id);
                    assert_eq!(cal.working_seconds_between(t, next), 0);
                    for secs in amounts {
                        let end = cal.add_seconds(t, secs);
                        let at = || format!("{}: {t} + {secs}s = {end}", cal.id);
                        assert_eq!(cal.working_seconds_between(t, end), secs, "{}", at());
                        assert!(
                            cal.is_working_time(end)
                                || cal.is_working_time(end - chrono::TimeDelta::seconds(1)),
                            "{}",
                            at()
                        );
                        if let Some(p) = previous {
                            assert!(cal.add_seconds(p, secs) <= end, "{}", at());
                        }
                        let from = cal.sub_seconds(next, secs);
                        assert_eq!(cal.working_seconds_between(from, next), secs, "{}", at());
                        assert!(cal.is_working_time(from), "{}", at());
                    }
                    previous = Some(t);
                }
            }
        }
    }
}
