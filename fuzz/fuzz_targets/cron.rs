//! Cron expressions as the `jobs` section's loader reads them (`parse_cron`), and the runs of
//! those it accepts in one of four zones (chosen by the input's length): never a panic, an
//! error's span inside the expression, runs in order.
#![no_main]

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use escalade_rules::jobs::{Job, Report, parse_cron};
use libfuzzer_sys::fuzz_target;

const ZONES: [Tz; 4] = [
    chrono_tz::Asia::Shanghai,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::UTC,
];

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let schedule = match parse_cron(expr) {
        Ok(s) => s,
        Err(e) => {
            if let Some((offset, len)) = e.span {
                assert!(
                    offset + len <= expr.chars().count(),
                    "span {offset}+{len} outside {expr:?}"
                );
            }
            return;
        }
    };
    let job = Job {
        id: "fuzz".into(),
        cron: expr.into(),
        schedule,
        calendar: 0,
        tz: ZONES[data.len() % ZONES.len()],
        report: Report::Scorecard {
            period: Duration::days(7),
        },
    };
    // Around the daylight-saving changes of 2026 in Berlin and New York, and near 2100.
    for at in [
        "2026-03-08T06:30:00Z",
        "2026-03-29T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2099-12-31T23:00:00Z",
    ] {
        let t: DateTime<Utc> = at.parse().expect("a time");
        let runs = job.upcoming(t, 3);
        assert!(runs.windows(2).all(|w| w[0] < w[1]), "{expr:?}: {runs:?}");
        assert!(runs.iter().all(|r| r.with_timezone(&Utc) > t));
        if let Some(last) = job.latest_at_or_before(t, t - Duration::days(400)) {
            assert!(last <= t && last > t - Duration::days(400));
        }
    }
});
