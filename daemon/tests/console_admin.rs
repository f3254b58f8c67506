//! The console's administration over HTTP, on the real binary and a real store: a candidate's
//! replay with its differences (the API's own figures), shadow rules started, read and stopped,
//! and people's access: invited (the link shown once, emailed through a real SMTP server when
//! one is configured), their password and sessions revoked. `escalade person invite` emails the
//! link too. Each refusal (not an administrator, a form without its token or from another
//! origin, a candidate outside `candidates_dir`, missing or with errors, a bad filter, an
//! unknown person, a person with no role) reads as a page and changes nothing.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::console::{Browser, CITY, csrf, only_local_references, report};
use support::smtp::{Mail, closed_port, smtp_running, smtp_yaml};
use support::{Daemon, TestDb, admin_token, copy_rules_edited, escalade_in, expect_code};

/// Garbage goes to the market office instead of urban management.
const GARBAGE_TO_MARKET: (&str, &str, &str) = (
    "categories.yaml",
    "  - code: garbage\n    names: {zh: 垃圾堆放, en: Uncollected garbage}\n    department: urban",
    "  - code: garbage\n    names: {zh: 垃圾堆放, en: Uncollected garbage}\n    department: market",
);

/// A daemon's setting for these tests: the example city with p-huiji's address taken out and
/// p-visitor (no role) added, a candidates directory holding `market-garbage` (garbage
/// rerouted) and `broken` (a category sent to a department that does not exist), p-mayor an
/// administrator, and `extra` configuration.
struct Admin {
    _tmp: tempfile::TempDir,
    db: TestDb,
    rules: PathBuf,
    config: PathBuf,
    /// An API token of the operator's.
    token: String,
}

impl Admin {
    fn new(extra: &str) -> Admin {
        let tmp = tempfile::tempdir().unwrap();
        let rules = tmp.path().join("rules");
        copy_rules_edited(
            CITY,
            &rules,
            &[
                (
                    "people.yaml",
                    "email: huiji@example.org,     channels: [email]}",
                    "channels: [sms]}",
                ),
                (
                    "people.yaml",
                    "  - {id: p-tri-kim,",
                    "  - {id: p-visitor, name: 访客, email: visitor@example.org, channels: [email]}\n  - {id: p-tri-kim,",
                ),
            ],
        );
        let candidates = tmp.path().join("candidates");
        std::fs::create_dir_all(&candidates).unwrap();
        copy_rules_edited(
            rules.to_str().unwrap(),
            &candidates.join("market-garbage"),
            &[GARBAGE_TO_MARKET],
        );
        copy_rules_edited(
            rules.to_str().unwrap(),
            &candidates.join("broken"),
            &[(
                "categories.yaml",
                "    names: {zh: 垃圾堆放, en: Uncollected garbage}\n    department: urban",
                "    names: {zh: 垃圾堆放, en: Uncollected garbage}\n    department: nowhere",
            )],
        );
        std::fs::write(candidates.join("a-file"), "not a directory").unwrap();
        let db = TestDb::new(&tmp.path().join("state"));
        let config = tmp.path().join("escalade.yaml");
        std::fs::write(
            &config,
            format!(
                "console: {{admins: [p-mayor]}}\ncandidates_dir: {}\n{extra}",
                candidates.display()
            ),
        )
        .unwrap();
        let token = admin_token(&db, rules.to_str().unwrap());
        Admin {
            _tmp: tmp,
            db,
            rules,
            config,
            token,
        }
    }

    fn rules(&self) -> &str {
        self.rules.to_str().unwrap()
    }

    fn start(&self) -> (Daemon, String) {
        support::start_with(
            &self.db,
            self.rules(),
            std::process::Command::new(env!("CARGO_BIN_EXE_escalade")),
            &["--config", self.config.to_str().unwrap()],
        )
    }

    /// `escalade person invite PERSON` on these rules and configuration.
    fn invite_cli(&self, person: &str) -> std::process::Output {
        escalade_in(
            &self.db,
            &[],
            &[
                "person",
                "invite",
                person,
                "--rules",
                self.rules(),
                "--config",
                self.config.to_str().unwrap(),
            ],
        )
    }

    /// The path of the link `person invite` printed.
    fn invite(&self, person: &str) -> String {
        let out = self.invite_cli(person);
        expect_code(&out, 0, "person invite");
        link_path(&String::from_utf8(out.stdout).unwrap())
    }

    /// p-mayor signed in and acting as administrator.
    async fn administrator(&self, addr: &str) -> Browser {
        let invite = self.invite("p-mayor");
        let mut b = Browser::new(addr);
        b.accept(&invite, "mayor pass 2026").await;
        let p = b.get("/console/inbox").await;
        let switched = b
            .post(
                "/console/role",
                &[("role", "admin"), ("csrf", &csrf(&p.body))],
            )
            .await;
        assert_eq!(switched.status, 303, "{}", switched.body);
        b
    }

    /// `person` signed in through an invitation from the command line, in their first role.
    async fn signed_in(&self, addr: &str, person: &str) -> Browser {
        let invite = self.invite(person);
        let mut b = Browser::new(addr);
        b.accept(&invite, "a long enough password").await;
        b
    }
}

/// The path of the invitation link in `text`.
fn link_path(text: &str) -> String {
    let at = text
        .find("/console/invite/")
        .unwrap_or_else(|| panic!("no invitation link in {text}"));
    text[at..]
        .split(|c: char| c.is_whitespace() || c == '<' || c == '"')
        .next()
        .unwrap()
        .to_string()
}

/// A page's text as a browser reads it: the escapes minijinja writes undone.
fn unescape(page: &str) -> String {
    page.replace("&#x2f;", "/")
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// The text of element `id` on a page (up to its closing tag), unescaped.
fn text_of(page: &str, id: &str) -> String {
    let at = format!("id=\"{id}\"");
    let i = page
        .find(&at)
        .unwrap_or_else(|| panic!("no #{id} in {page}"));
    let rest = &page[i + at.len()..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    unescape(rest[..rest.find("</").unwrap()].trim())
}

async fn replay_api(api: &reqwest::Client, addr: &str, body: Value) -> (u16, Value) {
    support::call(
        api.post(format!("http://{addr}/api/v1/rules/replay"))
            .json(&body),
    )
    .await
}

/// The plain text of an email.
fn body_of(mail: &Mail) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_replays_a_candidate_and_reads_its_differences() {
    let s = Admin::new("");
    let (_daemon, addr) = s.start();
    let api = support::client(&s.token);
    let mut garbage = Vec::new();
    for unit in ["g-0001", "g-0002"] {
        garbage.push(
            report(
                &api,
                &addr,
                json!({"category": "garbage", "unit": unit, "description": "bins overflowing"}),
            )
            .await,
        );
    }
    report(
        &api,
        &addr,
        json!({"category": "street_vendors", "unit": "g-0003", "description": "stalls on the pavement"}),
    )
    .await;
    let mut b = s.administrator(&addr).await;

    let p = b.get("/console/admin/rules").await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    assert!(
        p.body.contains("<option value=\"market-garbage\">"),
        "{}",
        p.body
    );
    assert!(p.body.contains("<label for=\"replay-dir\">"), "{}", p.body);
    let token = csrf(&p.body);

    // The whole store through the candidate: the two garbage issues go to market instead.
    let p = b
        .post(
            "/console/admin/rules/replay",
            &[("csrf", token.as_str()), ("dir", "market-garbage")],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    assert_eq!(text_of(&p.body, "count-read"), "3", "{}", p.body);
    assert_eq!(text_of(&p.body, "count-changed"), "2", "{}", p.body);
    assert_eq!(text_of(&p.body, "count-unchanged"), "1", "{}", p.body);
    assert!(p.body.contains("class=\"kind-route\""), "{}", p.body);
    for id in &garbage {
        assert!(
            p.body.contains(&format!("id=\"changed-{id}\"")),
            "{}",
            p.body
        );
        assert!(
            p.body
                .contains(&format!("<a href=\"/console/issues/{id}\">{id}</a>")),
            "{}",
            p.body
        );
    }
    assert!(
        unescape(&p.body).contains("route: urban -> market"),
        "{}",
        p.body
    );
    // The API's replay of the same candidate says the same.
    let (status, api_report) = replay_api(&api, &addr, json!({"dir": "market-garbage"})).await;
    assert_eq!(status, 200, "{api_report}");
    assert_eq!(api_report["issues"]["changed"], 2);
    assert_eq!(
        text_of(&p.body, "candidate-version"),
        api_report["candidate"].as_str().unwrap()
    );

    // Filters: another category changes nothing; a limit of one shows one and counts the other.
    let p = b
        .post(
            "/console/admin/rules/replay",
            &[
                ("csrf", token.as_str()),
                ("dir", "market-garbage"),
                ("category", "street_vendors"),
            ],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(text_of(&p.body, "count-read"), "1", "{}", p.body);
    assert_eq!(text_of(&p.body, "count-changed"), "0", "{}", p.body);
    assert!(p.body.contains("id=\"no-differences\""), "{}", p.body);
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d")
        .to_string();
    let p = b
        .post(
            "/console/admin/rules/replay",
            &[
                ("csrf", token.as_str()),
                ("dir", "market-garbage"),
                ("from", today.as_str()),
                ("to", today.as_str()),
                ("limit", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(text_of(&p.body, "count-changed"), "2", "{}", p.body);
    assert_eq!(p.body.matches("id=\"changed-").count(), 1, "{}", p.body);
    assert!(p.body.contains("id=\"not-shown\">1 "), "{}", p.body);
    let p = b
        .post(
            "/console/admin/rules/replay",
            &[
                ("csrf", token.as_str()),
                ("dir", "market-garbage"),
                ("from", "2020-01-01"),
                ("to", "2020-01-31"),
            ],
        )
        .await;
    assert_eq!(text_of(&p.body, "count-read"), "0", "{}", p.body);

    // Candidates with errors show each at file:line:column; paths that are no candidate, and
    // bad filters, are refused naming what was wrong.
    let p = b
        .post(
            "/console/admin/rules/replay",
            &[("csrf", token.as_str()), ("dir", "broken")],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);
    let diagnostics = text_of(&p.body, "diagnostics");
    let located = regex_like_location(&diagnostics, "categories.yaml");
    assert!(located, "file:line:column: {diagnostics}");
    assert!(diagnostics.contains("nowhere"), "{diagnostics}");
    assert!(!p.body.contains("id=\"replay-result\""), "{}", p.body);
    for (dir, said) in [
        ("../rules", "not a directory under the candidates_dir"),
        ("nowhere", "no candidate directory `nowhere`"),
        ("/etc", "not a directory under the candidates_dir"),
        ("a-file", "`a-file` is not a directory"),
        ("", "name a candidate directory"),
    ] {
        let p = b
            .post(
                "/console/admin/rules/replay",
                &[("csrf", token.as_str()), ("dir", dir)],
            )
            .await;
        assert_eq!(p.status, 422, "{dir}: {}", p.body);
        assert!(
            text_of(&p.body, "error-message").contains(said),
            "{dir}: {}",
            p.body
        );
        // The form keeps what was asked.
        assert!(
            unescape(&p.body).contains(&format!("name=\"dir\" value=\"{dir}\"")),
            "{}",
            p.body
        );
    }
    for (name, value, said) in [
        ("from", "yesterday", "`yesterday` is not a day (YYYY-MM-DD)"),
        ("to", "2026-02-30", "`2026-02-30` is not a day"),
        ("category", "dragons", "unknown category `dragons`"),
        ("unit", "atlantis", "unknown unit `atlantis`"),
        ("limit", "0", "show 1 to 1000 changed issues"),
        ("limit", "many", "`many` is not a number of issues"),
    ] {
        let p = b
            .post(
                "/console/admin/rules/replay",
                &[
                    ("csrf", token.as_str()),
                    ("dir", "market-garbage"),
                    (name, value),
                ],
            )
            .await;
        assert_eq!(p.status, 422, "{name}={value}: {}", p.body);
        let message = text_of(&p.body, "error-message");
        assert!(message.contains(said), "{name}={value}: {message}");
        assert!(message.contains(name), "{name}={value}: {message}");
    }
    let p = b
        .post(
            "/console/admin/rules/replay",
            &[
                ("csrf", token.as_str()),
                ("dir", "market-garbage"),
                ("from", "2026-03-02"),
                ("to", "2026-03-01"),
            ],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);

    // Without the form's token, from another origin, or by someone not acting as
    // administrator: refused.
    let p = b
        .post("/console/admin/rules/replay", &[("dir", "market-garbage")])
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    let r = b
        .http
        .post(format!("{}/console/admin/rules/replay", b.base))
        .header("origin", "https://evil.example")
        .form(&[("csrf", token.as_str()), ("dir", "market-garbage")]);
    let p = b.send(r).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(!p.body.contains("replay-result"));
    let mut urban = s.signed_in(&addr, "p-urban-li").await;
    assert_eq!(urban.get("/console/admin/rules").await.status, 403);
    let mine = csrf(&urban.get("/console/inbox").await.body);
    let p = urban
        .post(
            "/console/admin/rules/replay",
            &[("csrf", mine.as_str()), ("dir", "market-garbage")],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(
        p.body.contains("may not replay candidate rules"),
        "{}",
        p.body
    );
}

/// Whether `text` names `file` at a line and a column (`file:12:5:`).
fn regex_like_location(text: &str, file: &str) -> bool {
    text.match_indices(&format!("{file}:")).any(|(i, m)| {
        let rest = &text[i + m.len()..];
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().unwrap_or("");
        let column = parts.next().unwrap_or("");
        !line.is_empty()
            && line.bytes().all(|b| b.is_ascii_digit())
            && !column.is_empty()
            && column.bytes().all(|b| b.is_ascii_digit())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_runs_shadow_rules_reads_their_differences_and_stops_them() {
    let s = Admin::new("");
    let (_daemon, addr) = s.start();
    let api = support::client(&s.token);
    let mut b = s.administrator(&addr).await;
    let p = b.get("/console/admin/rules").await;
    let token = csrf(&p.body);
    assert!(p.body.contains("<label for=\"shadow-dir\">"), "{}", p.body);
    assert!(!p.body.contains("id=\"shadow-version\""), "{}", p.body);
    assert!(
        !p.body.contains("/console/admin/rules/shadow/stop"),
        "{}",
        p.body
    );

    // Refusals first: nothing starts.
    let p = b
        .post(
            "/console/admin/rules/shadow",
            &[("csrf", token.as_str()), ("dir", "broken")],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);
    let diagnostics = text_of(&p.body, "diagnostics");
    assert!(
        regex_like_location(&diagnostics, "categories.yaml"),
        "{diagnostics}"
    );
    for (dir, said) in [
        ("../rules", "not a directory under the candidates_dir"),
        ("nowhere", "no candidate directory `nowhere`"),
        ("", "name a candidate directory"),
    ] {
        let p = b
            .post(
                "/console/admin/rules/shadow",
                &[("csrf", token.as_str()), ("dir", dir)],
            )
            .await;
        assert_eq!(p.status, 422, "{dir}: {}", p.body);
        assert!(
            text_of(&p.body, "error-message").contains(said),
            "{dir}: {}",
            p.body
        );
    }
    assert_eq!(
        b.post("/console/admin/rules/shadow", &[("dir", "market-garbage")])
            .await
            .status,
        403
    );
    let mut urban = s.signed_in(&addr, "p-urban-li").await;
    let mine = csrf(&urban.get("/console/inbox").await.body);
    let p = urban
        .post(
            "/console/admin/rules/shadow",
            &[("csrf", mine.as_str()), ("dir", "market-garbage")],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    let (_, shadow) = support::call(api.get(format!("http://{addr}/api/v1/rules/shadow"))).await;
    assert_eq!(shadow["active"], false, "{shadow}");
    // Stopping what does not run is refused.
    let p = b
        .post(
            "/console/admin/rules/shadow/stop",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, 409, "{}", p.body);

    // Started: it decides beside the live rules, with no effect.
    let p = b
        .post(
            "/console/admin/rules/shadow",
            &[("csrf", token.as_str()), ("dir", "market-garbage")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let (_, shadow) = support::call(api.get(format!("http://{addr}/api/v1/rules/shadow"))).await;
    assert_eq!(shadow["active"], true, "{shadow}");
    let p = b.get("/console/admin/rules").await;
    assert_eq!(
        text_of(&p.body, "shadow-version"),
        shadow["version"].as_str().unwrap()
    );
    let id = report(
        &api,
        &addr,
        json!({"category": "garbage", "unit": "g-0001", "description": "bins overflowing"}),
    )
    .await;
    let mut decided = false;
    for _ in 0..100 {
        let p = b.get("/console/admin/rules").await;
        if p.body.contains("id=\"shadow-differing\">1</span>") {
            decided = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(decided, "the shadow decided the report within 10 s");
    let p = b.get("/console/admin/rules").await;
    only_local_references(&p.body);
    assert!(p.body.contains("id=\"shadow-kind-route\""), "{}", p.body);
    let kinds = &p.body[p.body.find("id=\"shadow-kinds\"").unwrap()..];
    assert!(
        kinds.contains(&format!("<a href=\"/console/issues/{id}\">{id}</a>")),
        "{}",
        p.body
    );
    let recent = &p.body[p.body.find("id=\"shadow-recent\"").unwrap()..];
    assert!(recent.contains("market"), "{recent}");
    let issue: Value = api
        .get(format!("http://{addr}/api/v1/issues/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(issue["state"]["departments"], json!(["urban"]), "{issue}");

    // Without a token, the shadow keeps running; stopped, its differences stay.
    assert_eq!(
        b.post("/console/admin/rules/shadow/stop", &[]).await.status,
        403
    );
    let (_, shadow) = support::call(api.get(format!("http://{addr}/api/v1/rules/shadow"))).await;
    assert_eq!(shadow["active"], true, "{shadow}");
    let p = b
        .post(
            "/console/admin/rules/shadow/stop",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let (_, shadow) = support::call(api.get(format!("http://{addr}/api/v1/rules/shadow"))).await;
    assert_eq!(shadow["active"], false, "{shadow}");
    let p = b.get("/console/admin/rules").await;
    assert!(!p.body.contains("id=\"shadow-version\""), "{}", p.body);
    assert!(
        p.body.contains("id=\"shadow-differing\">1</span>"),
        "{}",
        p.body
    );
    assert!(shadow["summary"]["stopped_at"].is_string(), "{shadow}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_invites_people_and_revokes_their_access() {
    let s = Admin::new("");
    let (_daemon, addr) = s.start();
    let mut b = s.administrator(&addr).await;
    let p = b.get("/console/admin/people?q=p-mayor").await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    let mayor = &p.body[p.body.find("id=\"person-p-mayor\"").unwrap()..];
    let mayor = &mayor[..mayor.find("</tr>").unwrap()];
    assert!(mayor.contains("leader:zz, admin"), "{mayor}");
    assert!(mayor.contains("<td class=\"sessions\">1</td>"), "{mayor}");
    assert!(mayor.contains("<td class=\"password set\">"), "{mayor}");
    let token = csrf(&p.body);
    // A search by name, and pages of a hundred.
    let p = b
        .get("/console/admin/people?q=%E6%9D%8E%E5%8D%AB%E4%B8%9C")
        .await;
    assert!(p.body.contains("id=\"person-p-urban-li\""), "{}", p.body);
    assert!(!p.body.contains("id=\"person-p-mayor\""), "{}", p.body);
    let p = b.get("/console/admin/people?page=2").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("page=3"), "{}", p.body);
    assert_eq!(b.get("/console/admin/people?page=0").await.status, 400);
    let row = |page: &str, person: &str| {
        let at = page
            .find(&format!("id=\"person-{person}\""))
            .unwrap_or_else(|| panic!("{person} is not listed: {page}"));
        let rest = &page[at..];
        rest[..rest.find("</tr>").unwrap()].to_string()
    };
    let before = row(
        &b.get("/console/admin/people?q=p-urban-li").await.body,
        "p-urban-li",
    );
    assert!(before.contains("<td class=\"password none\">"), "{before}");
    assert!(
        before.contains("<td class=\"invitation none\">"),
        "{before}"
    );

    // Refusals change nothing: no token, another origin, an unknown person, one with no role,
    // someone not acting as administrator.
    assert_eq!(
        b.post("/console/admin/people/p-urban-li/invite", &[])
            .await
            .status,
        403
    );
    let r = b
        .http
        .post(format!("{}/console/admin/people/p-urban-li/invite", b.base))
        .header("origin", "https://evil.example")
        .form(&[("csrf", token.as_str())]);
    assert_eq!(b.send(r).await.status, 403);
    let p = b
        .post(
            "/console/admin/people/p-nobody/invite",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, 404, "{}", p.body);
    assert!(p.body.contains("unknown person `p-nobody`"), "{}", p.body);
    let p = b
        .post(
            "/console/admin/people/p-visitor/invite",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(p.body.contains("has no role to act in"), "{}", p.body);
    let p = b
        .post(
            "/console/admin/people/p-nobody/revoke",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, 404, "{}", p.body);
    let mut env = s.signed_in(&addr, "p-env-sun").await;
    assert_eq!(env.get("/console/admin/people").await.status, 403);
    let mine = csrf(&env.get("/console/inbox").await.body);
    let p = env
        .post(
            "/console/admin/people/p-urban-li/invite",
            &[("csrf", mine.as_str())],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    let p = env
        .post(
            "/console/admin/people/p-mayor/revoke",
            &[("csrf", mine.as_str())],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert_eq!(
        row(
            &b.get("/console/admin/people?q=p-urban-li").await.body,
            "p-urban-li"
        ),
        before
    );
    assert_eq!(b.get("/console/admin/people?q=p-mayor").await.status, 200);

    // Invited: the link is shown once; no SMTP is configured, so it is not emailed.
    let p = b
        .post(
            "/console/admin/people/p-urban-li/invite",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    only_local_references(&p.body);
    assert!(p.body.contains("class=\"emailed-no_smtp\""), "{}", p.body);
    let link = text_of(&p.body, "invite-link");
    assert!(
        link.starts_with(&format!("http://{addr}/console/invite/")),
        "{link}"
    );
    let listed = row(
        &b.get("/console/admin/people?q=p-urban-li").await.body,
        "p-urban-li",
    );
    assert!(
        listed.contains("<td class=\"invitation pending\">"),
        "{listed}"
    );
    // The person sets a password through it and signs in.
    let mut li = Browser::new(&addr);
    li.accept(&link_path(&link), "urban li pass 2026").await;
    assert_eq!(li.get("/console/inbox").await.status, 200);
    let listed = row(
        &b.get("/console/admin/people?q=p-urban-li").await.body,
        "p-urban-li",
    );
    assert!(listed.contains("<td class=\"password set\">"), "{listed}");
    assert!(listed.contains("<td class=\"sessions\">1</td>"), "{listed}");

    // Revoked: the session ends at once and the password no longer signs in.
    let p = b
        .post(
            "/console/admin/people/p-urban-li/revoke",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        p.location.as_deref(),
        Some("/console/admin/people?q=p-urban-li")
    );
    let p = li.get("/console/inbox").await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(p.location.unwrap().starts_with("/console/sign-in"));
    let mut again = Browser::new(&addr);
    let p = again
        .post(
            "/console/sign-in",
            &[("person", "p-urban-li"), ("password", "urban li pass 2026")],
        )
        .await;
    assert_eq!(p.status, 401, "{}", p.body);
    let listed = row(
        &b.get("/console/admin/people?q=p-urban-li").await.body,
        "p-urban-li",
    );
    assert!(listed.contains("<td class=\"password none\">"), "{listed}");
    assert!(listed.contains("<td class=\"sessions\">0</td>"), "{listed}");
    // The administrator's own session is untouched.
    assert_eq!(b.get("/console/admin/people").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_from_the_console_is_emailed_through_smtp() {
    let (mailbox, port) = smtp_running();
    let s = Admin::new(&smtp_yaml(port));
    let (_daemon, addr) = s.start();
    let mut b = s.administrator(&addr).await;
    let p = b.get("/console/admin/people?q=p-urban-li").await;
    let token = csrf(&p.body);
    let p = b
        .post(
            "/console/admin/people/p-urban-li/invite",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("class=\"emailed-to\""), "{}", p.body);
    assert!(
        text_of(&p.body, "emailed").contains("urban.li@example.org"),
        "{}",
        p.body
    );
    let link = text_of(&p.body, "invite-link");
    let mails = mailbox.to("urban.li@example.org");
    assert_eq!(mails.len(), 1, "{mails:?}");
    let text = body_of(&mails[0]);
    assert!(text.contains(&link), "{text}");
    // In the person's language (zh-CN).
    assert!(text.contains("李卫东"), "{text}");
    // The emailed link works once.
    let mut li = Browser::new(&addr);
    li.accept(&link_path(&link), "urban li pass 2026").await;
    assert_eq!(li.get("/console/inbox").await.status, 200);
    // Someone with no address in the organisation: shown, not emailed.
    let p = b
        .post(
            "/console/admin/people/p-huiji/invite",
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("class=\"emailed-no_address\""),
        "{}",
        p.body
    );
    assert!(
        mailbox
            .mails()
            .iter()
            .all(|m| !m.to.iter().any(|t| t.contains("huiji")))
    );
}

#[test]
fn person_invite_emails_the_link_when_smtp_is_configured_and_says_why_not_otherwise() {
    let (mailbox, port) = smtp_running();
    let s = Admin::new(&smtp_yaml(port));
    let out = s.invite_cli("p-mayor");
    expect_code(&out, 0, "person invite");
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the link was emailed to mayor@example.org"),
        "{said}"
    );
    let mails = mailbox.to("mayor@example.org");
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(body_of(&mails[0]).contains(&link), "{}", body_of(&mails[0]));
    let subject = mailparse::parse_mail(&mails[0].data)
        .unwrap()
        .headers
        .iter()
        .find(|h| h.get_key_ref().eq_ignore_ascii_case("subject"))
        .map(|h| h.get_value())
        .unwrap();
    assert_eq!(subject, "escalade 控制台邀请");
    // No address: printed, not emailed, and said so.
    let out = s.invite_cli("p-huiji");
    expect_code(&out, 0, "person invite");
    assert!(String::from_utf8_lossy(&out.stdout).contains("/console/invite/"));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("not emailed: the organisation has no email address for them"),
        "{said}"
    );
    assert_eq!(mailbox.mails().len(), 1);

    // The relay down: the link is printed and works; the failure is said.
    let down = Admin::new(&smtp_yaml(closed_port()));
    let out = down.invite_cli("p-mayor");
    expect_code(&out, 0, "person invite");
    assert!(String::from_utf8_lossy(&out.stdout).contains("/console/invite/"));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the link was not emailed to mayor@example.org: SMTP"),
        "{said}"
    );

    // No SMTP configured: said so.
    let plain = Admin::new("");
    let out = plain.invite_cli("p-mayor");
    expect_code(&out, 0, "person invite");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("not emailed: no SMTP relay is configured"),
        "{said}"
    );

    // A relay configured wrong stops the command before anything changes; so does an unknown
    // person.
    let wrong = Admin::new(&format!("{}  username: escalade\n", smtp_yaml(port)));
    let out = wrong.invite_cli("p-mayor");
    expect_code(&out, 2, "person invite with a username and no password");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("smtp"), "{said}");
    assert!(out.stdout.is_empty());
    let out = wrong.invite_cli("p-nobody");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown person `p-nobody`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mailbox.mails().len(), 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let invited = rt.block_on(async {
        let store = wrong.db.open(Default::default()).await;
        let c = store.credentials().await.unwrap();
        store.close().await;
        c
    });
    assert!(invited.is_empty(), "{invited:?}");
}
