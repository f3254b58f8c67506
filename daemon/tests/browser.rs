//! The daemon's pages in a real headless Chromium (`support::browser`): the acknowledgement
//! link from a real email, opened on a phone with and without JavaScript, acknowledges the
//! issue; the page loads nothing from elsewhere, logs no error and has no serious accessibility
//! fault. A page of the test's own, with each of those faults, shows that the checks catch
//! them, and a browser dropped by a panic leaves no process behind.
//!
//! Each test says it is skipped when Chromium or its driver is not installed.

use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{Value, json};
use support::browser::{Browser, DESKTOP, Options, PHONE, png_size};
use support::smtp::{Mail, closed_port, smtp_running};

mod support;

use support::TestDb;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// How long one test may take: each takes a few seconds.
const LIMIT: Duration = Duration::from_secs(60);

const LINK_KEY: &str = "3f1c0a8e9b7d4c2a6e5f1b0d9c8a7e6f";

/// The plain text of an email (its text/plain part, when it has several).
fn text_of(mail: &Mail) -> String {
    let parsed = mailparse::parse_mail(&mail.data).unwrap();
    if parsed.subparts.is_empty() {
        return parsed.get_body().unwrap();
    }
    parsed
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "text/plain")
        .map(|p| p.get_body().unwrap())
        .unwrap_or_default()
}

/// The first link under `prefix` in `text`, whole.
fn link_in(text: &str, prefix: &str) -> Option<String> {
    let i = text.find(prefix)?;
    let token: String = text[i + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    (!token.is_empty()).then(|| format!("{prefix}{token}"))
}

/// The real daemon, its email going to an SMTP server of the test's and its links pointing at
/// itself, with one issue reported: what the email to the assigned department links to.
struct Reported {
    _daemon: support::Daemon,
    // Dropped after the daemon: on PostgreSQL, dropping it drops the test's database.
    _db: TestDb,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`, where the daemon listens and its links point.
    origin: String,
    admin: reqwest::Client,
    id: String,
    link: String,
}

impl Reported {
    async fn start() -> Reported {
        let (mailbox, smtp) = smtp_running();
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(dir.path());
        let admin = support::admin_token(&db, CITY);
        // The links must name the daemon's port before it starts. `start_with` sets
        // ESCALADE_LISTEN to port 0 after the command's own variables, so the port chosen here
        // (free a moment ago) is set by `env` in the daemon's own environment, which comes last.
        let port = closed_port();
        let origin = format!("http://127.0.0.1:{port}");
        let mut command = Command::new("env");
        command
            .arg(format!("ESCALADE_LISTEN=127.0.0.1:{port}"))
            .arg(env!("CARGO_BIN_EXE_escalade"))
            .env("ESCALADE_SMTP_HOST", "127.0.0.1")
            .env("ESCALADE_SMTP_PORT", smtp.to_string())
            .env("ESCALADE_SMTP_TLS", "none")
            .env("ESCALADE_SMTP_FROM", "escalade@city.example")
            .env("ESCALADE_LINKS_BASE_URL", format!("{origin}/"))
            .env("ESCALADE_LINKS_SECRET_ENV", "LINK_KEY")
            .env("LINK_KEY", LINK_KEY);
        let (daemon, addr) = support::start_with(&db, CITY, command, &[]);
        assert_eq!(addr, format!("127.0.0.1:{port}"), "the daemon's address");
        let admin = support::client(&admin);
        let r = admin
            .post(format!("{origin}/api/v1/issues"))
            .json(&json!({"category": "garbage", "unit": "g-0001", "description": "垃圾堆积"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let started = Instant::now();
        while mailbox.to("urban.li@example.org").is_empty() {
            assert!(started.elapsed() < Duration::from_secs(15), "no email");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = text_of(&mailbox.to("urban.li@example.org")[0]);
        let link = link_in(&text, &format!("{origin}/ack/"))
            .unwrap_or_else(|| panic!("no link to {origin} in the email:\n{text}"));
        Reported {
            _daemon: daemon,
            _db: db,
            _dir: dir,
            origin,
            admin,
            id,
            link,
        }
    }

    /// The state, and the actor of its last event, through the API.
    async fn state(&self) -> (String, Value) {
        let v: Value = self
            .admin
            .get(format!("{}/api/v1/issues/{}", self.origin, self.id))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["state"]["state"].as_str().unwrap().to_string(),
            v["timeline"].as_array().unwrap().last().unwrap()["actor"].clone(),
        )
    }
}

/// Asserts that the page axe-core just checked has no serious or critical violation, and that
/// axe did run in it (the page's policy allows no script).
fn assert_accessible(axe: &support::browser::Axe, page: &str) {
    assert!(
        axe.violations.is_empty(),
        "axe-core on the {page}: {:#?}",
        axe.violations
    );
    for rule in ["html-has-lang", "document-title", "meta-viewport"] {
        assert!(
            axe.passed.iter().any(|p| p == rule),
            "axe-core ran on the {page} and passed {rule}: {:?}",
            axe.passed
        );
    }
}

/// Asserts that the page fits the viewport's width (no sideways scrolling) and that the
/// element `css` lies inside it.
async fn assert_fits(browser: &Browser, css: &str, width: u32) {
    let c = browser.client();
    let scroll = c
        .execute("return document.documentElement.scrollWidth;", vec![])
        .await
        .unwrap();
    assert!(
        scroll.as_u64().unwrap() <= u64::from(width),
        "the page is {scroll} wide in a {width} wide viewport"
    );
    let (x, _, w, _) = c
        .find(Locator::Css(css))
        .await
        .unwrap()
        .rectangle()
        .await
        .unwrap();
    assert!(
        x >= 0.0 && x + w <= f64::from(width),
        "{css} spans {x}..{} of {width}",
        x + w
    );
}

/// Opens the link of a real email in a browser started with `options`, sees the issue and the
/// button, clicks it and sees the answer; the API says the link acknowledged the issue.
async fn the_link_acknowledges(options: Options) {
    let Some(browser) = Browser::start(options).await else {
        return;
    };
    let r = Reported::start().await;
    let c = browser.client();

    browser.goto(&r.link).await;
    let title = c.title().await.unwrap();
    if title != "签收问题 / Acknowledge an issue" {
        let body = c.source().await.unwrap_or_default();
        panic!("the link opened {title:?}: {body}");
    }
    let shown = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for fact in [r.id.as_str(), "垃圾堆积", "签收时限 / Acknowledge by"] {
        assert!(shown.contains(fact), "the page shows {fact}:\n{shown}");
    }
    let button = c
        .find(Locator::Css("form[method=post] button[type=submit]"))
        .await
        .unwrap();
    assert_eq!(button.text().await.unwrap(), "签收 / Acknowledge");
    assert!(button.is_displayed().await.unwrap());
    assert_fits(&browser, "form button", options.window.width).await;
    let before = browser.screenshot("before").await;
    assert_eq!(
        png_size(&before),
        (options.window.width, options.window.height)
    );
    assert_accessible(&browser.axe().await, "link's page");
    // Opening the page acknowledged nothing.
    assert_eq!(r.state().await.0, "assigned");

    button.click().await.unwrap();
    let title = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("h1.ok"))
        .await
        .unwrap_or_else(|e| panic!("no answer after the click: {e}"));
    assert_eq!(title.text().await.unwrap(), "已签收 / Acknowledged");
    let answer = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        answer.contains(&format!("Issue {} is acknowledged", r.id)),
        "{answer}"
    );
    assert_fits(&browser, "h1", options.window.width).await;
    let after = browser.screenshot("after").await;
    assert_ne!(
        std::fs::read(&before).unwrap(),
        std::fs::read(&after).unwrap()
    );
    assert_accessible(&browser.axe().await, "answer");
    assert_eq!(
        r.state().await,
        ("acknowledged".to_string(), json!("link:urban"))
    );

    // The recorder saw both pages load, from the daemon alone.
    let requests = browser.requests().await;
    for method in ["GET", "POST"] {
        assert!(
            requests
                .iter()
                .any(|q| q.method == method && q.url == r.link && q.kind == "Document"),
            "a {method} of the link: {requests:#?}"
        );
    }
    assert_eq!(browser.foreign_requests(&r.origin).await, vec![]);
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emailed_link_acknowledges_on_a_phone() {
    Browser::within(LIMIT, the_link_acknowledges(Options::new(PHONE))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emailed_link_acknowledges_on_a_phone_without_javascript() {
    let options = Options::new(PHONE).without_javascript();
    Browser::within(LIMIT, the_link_acknowledges(options)).await;
}

// ---- the checks themselves ------------------------------------------------------------------

/// A page with faults, served on 127.0.0.1 with an image from another origin (another port):
/// the page's base URL, and the image's URL.
async fn faulty_page() -> (String, String) {
    use axum::http::header;
    use axum::routing::get;
    let images = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let image = format!("http://{}/pixel.png", images.local_addr().unwrap());
    let pixel = axum::Router::new().route(
        "/pixel.png",
        get(|| async { ([(header::CONTENT_TYPE, "image/png")], support::PNG.to_vec()) }),
    );
    tokio::spawn(async move { axum::serve(images, pixel).await });
    // An image without text, a field without a label, a script that fails; a policy that
    // allows no script from anywhere, as the daemon's pages have.
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>no script ran</title></head><body><main><h1>Faults</h1>\
         <img src=\"{image}\"><form><input type=\"text\" name=\"q\"></form>\
         <script>document.title = \"a script ran\"; notDefined();</script>\
         </main></body></html>"
    );
    let policy = format!(
        "default-src 'none'; img-src {}; script-src 'unsafe-inline'",
        image.trim_end_matches("/pixel.png")
    );
    let page = axum::Router::new().route(
        "/",
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
                    (header::CONTENT_SECURITY_POLICY, policy),
                ],
                html,
            )
        }),
    );
    let pages = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", pages.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(pages, page).await });
    (base, image)
}

/// The faults axe-core must find in the faulty page, whatever the page's scripts did.
fn assert_faults_found(axe: &support::browser::Axe) {
    let ids: Vec<&str> = axe.violations.iter().map(|v| v.id.as_str()).collect();
    for rule in ["image-alt", "label"] {
        assert!(ids.contains(&rule), "axe-core finds {rule}: {ids:?}");
    }
    assert!(
        axe.violations
            .iter()
            .all(|v| v.impact == "serious" || v.impact == "critical")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_catch_a_foreign_request_a_console_error_and_an_accessibility_fault() {
    Browser::within(LIMIT, async {
        let Some(browser) = Browser::start(Options::new(DESKTOP)).await else {
            return;
        };
        let (base, image) = faulty_page().await;
        browser.goto(&format!("{base}/")).await;
        assert_eq!(browser.client().title().await.unwrap(), "a script ran");
        let foreign = browser.foreign_requests(&base).await;
        assert_eq!(
            foreign
                .iter()
                .map(|r| (r.method.as_str(), r.url.as_str(), r.kind.as_str()))
                .collect::<Vec<_>>(),
            vec![("GET", image.as_str(), "Image")]
        );
        let errors = browser.console_errors().await;
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("notDefined is not defined"),
            "{errors:#?}"
        );
        assert_faults_found(&browser.axe().await);
        let shot = browser.screenshot("faulty").await;
        assert_eq!(png_size(&shot), (DESKTOP.width, DESKTOP.height));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_no_script_of_the_page_runs_and_the_checks_still_do() {
    Browser::within(LIMIT, async {
        let Some(browser) = Browser::start(Options::new(PHONE).without_javascript()).await else {
            return;
        };
        let (base, image) = faulty_page().await;
        browser.goto(&format!("{base}/")).await;
        assert_eq!(browser.client().title().await.unwrap(), "no script ran");
        assert_eq!(browser.console_errors().await, Vec::<String>::new());
        let foreign = browser.foreign_requests(&base).await;
        assert_eq!(
            foreign.iter().map(|r| r.url.as_str()).collect::<Vec<_>>(),
            vec![image.as_str()]
        );
        assert_faults_found(&browser.axe().await);
    })
    .await;
}

/// The processes of process group `group`, but for those already dead (zombies).
fn group_members(group: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string() {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_dropped_by_a_panic_leaves_no_process_behind() {
    if support::browser::browser_installed().is_none() {
        return;
    }
    let (tell, told) = tokio::sync::oneshot::channel();
    let failed = tokio::spawn(async move {
        let browser = Browser::start(Options::new(DESKTOP)).await;
        let started = browser
            .as_ref()
            .map(|b| (b.process_group(), b.driver_port()));
        let _ = tell.send(started);
        if let Some(b) = &browser {
            b.goto("about:blank").await;
            panic!("a test fails with its browser open (on purpose)");
        }
    })
    .await;
    let (group, port) = told.await.unwrap().expect("the browser starts");
    assert!(failed.unwrap_err().is_panic());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "chromedriver still listens on {port}"
    );
    let started = Instant::now();
    loop {
        let left = group_members(group);
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "processes of the browser's group {group} left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
