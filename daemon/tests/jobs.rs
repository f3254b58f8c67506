//! The example organisation's scheduled reports on the test clock: each runs at its local time,
//! once, across a restart; a run missed while the daemon was down happens once at start-up; the
//! messages go to the right leaders and departments with the figures of their scope.

use std::sync::Arc;

use escalade::engine::{Clock, Engine, ManualClock};
use escalade::jobs::{Ran, run_due};
use escalade_rules::{Event, Issue};
use serde_json::Value;

mod support;

use support::{TestDb, at};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

async fn engine(db: &TestDb, clock: &Arc<ManualClock>) -> Engine {
    support::engine(db, CITY, clock.clone()).await
}

/// The report rows of the outbox: (person, template, vars), read from the SQLite file (the
/// store has no reader of a message's variables).
async fn reports(db: &TestDb) -> Vec<(String, String, Value)> {
    let file = db.sqlite_path().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", file.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT person, template, vars FROM outbox WHERE kind = 'report' AND issue_id IS NULL ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(p, t, v)| (p, t, serde_json::from_str(&v).unwrap()))
        .collect()
}

fn ran(job: &str, when: &str, messages: usize) -> Ran {
    Ran {
        job: job.into(),
        scheduled_at: at(when),
        messages,
    }
}

#[tokio::test]
async fn reports_run_at_their_local_times_once_across_restarts() {
    if !support::sqlite_only("reads the report messages' variables from the SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path());
    // Monday 10:00 in Zhengzhou: the jobs are first seen now, so nothing earlier runs.
    let clock = Arc::new(ManualClock::new(at("2026-03-02T10:00:00+08:00")));
    {
        let e = engine(&db, &clock).await;
        assert_eq!(run_due(&e, clock.now()).await.unwrap(), []);
        let garbage = Issue {
            category: "garbage".into(),
            unit: "g-0001".into(),
            description: "小区门口垃圾三天未清运".into(),
            ..Issue::default()
        };
        let id = e.submit(garbage, "r", None).await.unwrap().issue.issue.id;
        // Another issue, acknowledged in time and rated: it is on the scorecard, not overdue.
        let noise = Issue {
            category: "garbage".into(),
            unit: "g-0106".into(),
            description: "垃圾桶满了".into(),
            ..Issue::default()
        };
        let other = e.submit(noise, "r", None).await.unwrap().issue.issue.id;
        clock.set(at("2026-03-02T10:30:00+08:00"));
        for ev in [
            Event::Acknowledged,
            Event::Resolved {
                note: "ok".into(),
                photos: Vec::new(),
            },
            Event::Confirmed,
            Event::Evaluated {
                rating: 4,
                comment: "fast".into(),
            },
        ] {
            e.act(&other, ev, "x").await.unwrap();
        }

        // Tuesday 07:59: not yet. 08:00: the weekday digest, once. By then the ladder has
        // extended the missed acknowledgement into Tuesday's working hours: the issue is still
        // overdue, from the deadline it missed.
        clock.set(at("2026-03-03T07:59:00+08:00"));
        e.fire_due().await.unwrap();
        let st = e.store().issue(&id).await.unwrap().unwrap();
        assert!(
            st.state.acknowledge_by.unwrap() > clock.now(),
            "{:?}",
            st.state
        );
        assert!(st.state.is_overdue(clock.now()));
        assert_eq!(run_due(&e, clock.now()).await.unwrap(), []);
        clock.set(at("2026-03-03T08:00:00+08:00"));
        let r = run_due(&e, clock.now()).await.unwrap();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].job, "overdue-digest");
        assert_eq!(r[0].scheduled_at, at("2026-03-03T00:00:00Z"));
        clock.set(at("2026-03-03T08:00:30+08:00"));
        assert_eq!(run_due(&e, clock.now()).await.unwrap(), []);

        // The street, district and city leaders above g-0001 each get the overdue issue; the
        // grid and community leaders are not on the job's tiers; g-0106's issue is not overdue.
        let sent = reports(&db).await;
        let people: Vec<&str> = sent.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            people,
            ["p-mayor", "p-jinshui", "p-s-huayuanlu"],
            "{sent:?}"
        );
        for (_, template, vars) in &sent {
            assert_eq!(template, "overdue_digest");
            let ids: Vec<&str> = vars["issues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, [id.as_str()]);
            assert_eq!(vars["issues"][0]["deadline_kind"], "acknowledge");
            assert_eq!(vars["as_of"], "2026-03-03 08:00");
        }
        assert_eq!(sent[1].2["unit"]["id"], "d-jinshui");
        e.store().close().await;
    }

    // Restarted at 08:01: the run is recorded, nothing repeats.
    clock.set(at("2026-03-03T08:01:00+08:00"));
    {
        let e = engine(&db, &clock).await;
        assert_eq!(run_due(&e, clock.now()).await.unwrap(), []);
        e.store().close().await;
    }

    // Down from Tuesday 08:01 to Thursday noon: Wednesday's and Thursday's digests were missed;
    // the latest happens once at start-up.
    clock.set(at("2026-03-05T12:00:00+08:00"));
    {
        let e = engine(&db, &clock).await;
        let r = run_due(&e, clock.now()).await.unwrap();
        assert_eq!(r, [ran("overdue-digest", "2026-03-05T00:00:00Z", 3)]);
        assert_eq!(run_due(&e, clock.now()).await.unwrap(), []);

        // Monday 03-09 09:00: the scorecard of the week before, to each department's contacts
        // (their own row) and to the mayor (every department's). The digest ran at 08:00.
        clock.set(at("2026-03-09T08:00:00+08:00"));
        let r = run_due(&e, clock.now()).await.unwrap();
        assert_eq!(r.len(), 1);
        clock.set(at("2026-03-09T09:00:00+08:00"));
        let r = run_due(&e, clock.now()).await.unwrap();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].job, "weekly-scorecard");
        let sent = reports(&db).await;
        let cards: Vec<&(String, String, Value)> =
            sent.iter().filter(|(_, t, _)| t == "scorecard").collect();
        let mayor = cards.iter().find(|(p, _, _)| p == "p-mayor").unwrap();
        let rules = e.rules();
        assert_eq!(
            mayor.2["rows"].as_array().unwrap().len(),
            rules.org.departments.len()
        );
        let urban_li = cards.iter().find(|(p, _, _)| p == "p-urban-li").unwrap();
        let rows = urban_li.2["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1);
        let urban = &rows[0];
        assert_eq!(urban["department"], "urban");
        // Both garbage reports went to urban (the week is Mon 03-02 09:00 to Mon 03-09 09:00);
        // one was acknowledged and resolved in time and rated 4, the other never acknowledged.
        assert_eq!(urban["assigned"], 2, "{urban}");
        assert_eq!(urban["acknowledged_on_time"], 1);
        assert_eq!(urban["resolved_on_time"], 1);
        assert_eq!(urban["reopened"], 0);
        assert_eq!(urban["rated"], 1);
        assert_eq!(urban["average_rating"], 4.0);
        // The points of the example's scoring: resolved on time 60 × 1, acknowledged on time
        // 10 × 1 (of one acknowledgement), no rework 5 × 1, satisfaction 10 × 0.8; no return
        // and no supervision to count: left out.
        assert_eq!(urban["score"]["points"], 83.0, "{urban}");
        assert_eq!(urban["score"]["out_of"], 85.0, "{urban}");
        // The same figures as the API serves for the same period.
        let api = escalade::scorecards::scorecards(
            e.store(),
            &rules,
            at("2026-03-02T09:00:00+08:00"),
            at("2026-03-09T09:00:00+08:00"),
            &escalade::scorecards::Which::default(),
            "zh-CN",
        )
        .await
        .unwrap();
        let card = api
            .departments
            .iter()
            .find(|d| d.figures.department == "urban")
            .unwrap();
        assert_eq!(
            serde_json::to_value(&card.score).unwrap(),
            urban["score"],
            "the API and the weekly scorecard score alike"
        );
        assert_eq!(urban_li.2["period"]["from"], "2026-03-02 09:00");
        // Every report message names a template the rules can render for its recipient.
        for (person, template, vars) in &sent {
            let p = &rules.org.people[rules.org.person(person).unwrap() as usize];
            rules
                .render_report(template, &p.locale, escalade_rules::Channel::Email, vars)
                .unwrap_or_else(|e| panic!("{template} for {person}: {e}"));
        }
    }
}
