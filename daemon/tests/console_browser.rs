//! The console in a real headless Chromium (`support::browser`), each role's main path clicked
//! through: a grid leader reports with a photo from a phone; the report appears in the
//! department's open inbox without a reload; the department acknowledges and resolves with a
//! photo of the fixed site; the reporter confirms and rates; the department's scorecard counts
//! it; a street's leader finds the issue that went overdue on the board. Every page loads
//! nothing from elsewhere, logs no script error and has no serious or critical accessibility
//! fault; the same path works with JavaScript disabled. Screenshots are kept under
//! `target/screenshots/`.
//!
//! Each test says it is skipped when Chromium or its driver is not installed.

use std::time::Duration;

use fantoccini::{Client, Locator};
use support::browser::{Browser, DESKTOP, Options, PHONE};

mod support;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// How long one test may take.
const LIMIT: Duration = Duration::from_secs(120);

/// Signs `person` in on `browser` through an invitation made in the store: the password set on
/// the invitation's page, in the browser.
async fn sign_in(api: &support::Api, browser: &Browser, person: &str) {
    let (token, hash) = escalade::console::new_invite();
    let until = api.engine.now() + chrono::Duration::hours(1);
    api.engine
        .store()
        .invite(person, &hash, until)
        .await
        .unwrap();
    browser
        .goto(&format!("{}/console/invite/{token}", api.base))
        .await;
    let c = browser.client();
    fill(c, "#password", "a long enough password").await;
    fill(c, "#repeat", "a long enough password").await;
    click(c, "form.stack button[type=submit]").await;
    wait_for(c, "h1", |t| !t.is_empty()).await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/console/inbox"),
        "{person} is signed in and on the inbox"
    );
}

async fn fill(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

/// The text of the first element `css`.
async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits (up to 5 s) until the text of `css` satisfies `ok`; its text.
async fn wait_for(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let t = text(c, css).await;
        if ok(&t) {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{css} never read as expected; last: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits the action form for `event` on an issue page (its fields filled first).
async fn act(c: &Client, event: &str, fields: &[(&str, &str)]) {
    for (name, value) in fields {
        let css = format!("#{event}-{name}");
        let e = c.find(Locator::Css(&css)).await.unwrap();
        if e.prop("tagName").await.unwrap().as_deref() == Some("SELECT") {
            e.select_by_value(value).await.unwrap();
        } else {
            e.send_keys(value).await.unwrap();
        }
    }
    click(
        c,
        &format!("form.action:has(input[name=event][value={event}]) button[type=submit]"),
    )
    .await;
}

/// The checks every page passes: nothing from elsewhere, no script error, no serious or
/// critical accessibility fault.
async fn clean(browser: &Browser, origin: &str, page: &str) {
    let foreign = browser.foreign_requests(origin).await;
    assert!(
        foreign.is_empty(),
        "{page}: requests elsewhere: {foreign:?}"
    );
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{page}: console errors: {errors:?}");
    let axe = browser.axe().await;
    assert!(
        axe.violations.is_empty(),
        "{page}: axe-core: {:#?}",
        axe.violations
    );
    for rule in ["html-has-lang", "document-title", "color-contrast"] {
        assert!(
            axe.passed.iter().any(|p| p == rule),
            "{page}: axe ran and passed {rule}: {:?}",
            axe.passed
        );
    }
}

/// A PNG file of the test's, to upload.
fn photo_file(dir: &std::path::Path, name: &str, n: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, support::png(n)).unwrap();
    path.to_str().unwrap().to_string()
}

/// The state through the API.
async fn state(api: &support::Api, id: &str) -> serde_json::Value {
    api.get(&api.admin, &format!("/api/v1/issues/{id}")).await.1
}

/// The main path of every role, with JavaScript (`javascript`) or without.
async fn main_path(javascript: bool) {
    let options = |w| {
        let o = Options::new(w);
        if javascript {
            o
        } else {
            o.without_javascript()
        }
    };
    let Some(department) = Browser::start(options(DESKTOP)).await else {
        return;
    };
    let Some(reporter) = Browser::start(options(PHONE)).await else {
        return;
    };
    let api = support::Api::start(CITY, "2026-03-02T09:00:00+08:00").await;
    let origin = api.base.clone();
    let files = tempfile::tempdir().unwrap();
    // An issue reported earlier elsewhere in the street, that will go overdue.
    let (code, late) = api
        .post(
            &api.admin,
            "/api/v1/issues",
            serde_json::json!({"category": "garbage", "unit": "g-0002", "description": "older bins"}),
        )
        .await;
    assert_eq!(code, 201);
    let late = late["id"].as_str().unwrap().to_string();
    // An emergency nobody will take: its ladder raises it a tier every quarter of an hour.
    let (code, raised) = api
        .post(
            &api.admin,
            "/api/v1/issues",
            serde_json::json!({"category": "gas_leak", "unit": "g-0003", "description": "gas smell"}),
        )
        .await;
    assert_eq!(code, 201);
    let raised = raised["id"].as_str().unwrap().to_string();

    // The department opens its inbox and leaves it open.
    sign_in(&api, &department, "p-urban-li").await;
    let d = department.client();
    wait_for(d, "#inbox", |t| t.contains("older bins")).await;
    d.execute("window.keptOpen = 1;", vec![]).await.unwrap();
    clean(&department, &origin, "the inbox").await;

    // The grid leader reports from a phone: category, text, a photo.
    sign_in(&api, &reporter, "p-g-0001").await;
    let r = reporter.client();
    reporter.goto(&format!("{origin}/console/report")).await;
    clean(&reporter, &origin, "the report form").await;
    r.find(Locator::Css("#category"))
        .await
        .unwrap()
        .select_by_value("garbage")
        .await
        .unwrap();
    fill(r, "#description", "垃圾桶满溢，气味很大").await;
    fill(r, "#address", "农科路 12 号").await;
    fill(r, "#photo", &photo_file(files.path(), "bins.png", 5)).await;
    reporter.screenshot("report-form").await;
    click(r, "form.stack button[type=submit]").await;
    let title = wait_for(r, "h1", |t| t.starts_with('#')).await;
    let id = title
        .trim_start_matches('#')
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let shown: serde_json::Value = r
        .execute(
            "return Array.from(document.querySelectorAll('.photos img')).map(i => i.naturalWidth);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, serde_json::json!([5]), "the photo shows, 5 px wide");
    reporter.screenshot("reported").await;
    clean(&reporter, &origin, "the reporter's issue page").await;

    // With JavaScript, the open inbox shows it without a reload; without, a reload does.
    if javascript {
        wait_for(d, "#inbox", |t| t.contains("垃圾桶满溢")).await;
        let kept = d.execute("return window.keptOpen;", vec![]).await.unwrap();
        assert_eq!(kept, serde_json::json!(1), "the inbox was not reloaded");
    } else {
        department.goto(&format!("{origin}/console/inbox")).await;
        wait_for(d, "#inbox", |t| t.contains("垃圾桶满溢")).await;
    }
    department.screenshot("inbox").await;

    // The department acknowledges, then resolves with a photo of the fixed site.
    click(d, &format!("a[href='/console/issues/{id}']")).await;
    wait_for(d, "h1", |t| t.contains(&id)).await;
    clean(&department, &origin, "the department's issue page").await;
    act(d, "acknowledged", &[]).await;
    wait_for(d, "p.state", |t| t.contains("已签收")).await;
    fill(
        d,
        "#resolved-photo",
        &photo_file(files.path(), "clean.png", 9),
    )
    .await;
    act(d, "resolved", &[("note", "清运完毕")]).await;
    wait_for(d, "p.state", |t| t.contains("已处置")).await;
    department.screenshot("resolved").await;
    let st = state(&api, &id).await;
    assert_eq!(st["state"]["state"], "resolved");
    assert_eq!(st["state"]["after_photos"].as_array().unwrap().len(), 1);

    // The reporter finds it to check, confirms and rates it.
    reporter.goto(&format!("{origin}/console/inbox")).await;
    wait_for(r, "#inbox", |t| t.contains("垃圾桶满溢")).await;
    click(r, &format!(".verify a[href='/console/issues/{id}']")).await;
    wait_for(r, "h1", |t| t.contains(&id)).await;
    act(r, "confirmed", &[]).await;
    wait_for(r, "p.state", |t| t.contains("已结案")).await;
    act(r, "evaluated", &[("rating", "5"), ("comment", "及时")]).await;
    wait_for(r, ".timeline", |t| t.contains("评价")).await;
    reporter.screenshot("confirmed-and-rated").await;
    clean(&reporter, &origin, "the closed issue").await;
    let st = state(&api, &id).await;
    assert_eq!(st["state"]["state"], "closed");
    assert_eq!(st["state"]["rating"], 5);

    // The department's scorecard counts it.
    department
        .goto(&format!("{origin}/console/scorecards?period=week"))
        .await;
    let table = wait_for(d, "table", |t| !t.is_empty()).await;
    assert!(table.contains("城市管理"), "{table}");
    department.screenshot("scorecards").await;
    clean(&department, &origin, "the scorecards").await;

    // Two working days on, the older issue is overdue: the street's leader sees it.
    api.advance("2026-03-04T17:00:00+08:00").await;
    let Some(leader) = Browser::start(options(DESKTOP)).await else {
        return;
    };
    sign_in(&api, &leader, "p-s-huayuanlu").await;
    leader.goto(&format!("{origin}/console/board")).await;
    let board = wait_for(leader.client(), "main", |t| {
        t.contains("older bins") || t.contains(&late)
    })
    .await;
    assert!(board.contains(&format!("#{late}")), "{board}");
    leader.screenshot("board").await;
    clean(&leader, &origin, "the board").await;

    // The emergency climbed to the district: listed on the board, and its page marks the tier it
    // is at on its ladder.
    assert!(board.contains(&format!("#{raised}")), "{board}");
    assert_eq!(state(&api, &raised).await["state"]["tier"], "district");
    let l = leader.client();
    click(l, &format!("a[href='/console/issues/{raised}']")).await;
    let current = wait_for(l, ".ladder li.current", |t| !t.is_empty()).await;
    assert!(current.contains("金水区"), "{current}");
    leader.screenshot("escalated-issue").await;
    clean(&leader, &origin, "the escalated issue's page").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_s_main_path_in_a_browser() {
    Browser::within(LIMIT, main_path(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_s_main_path_without_javascript() {
    Browser::within(LIMIT, main_path(false)).await;
}
