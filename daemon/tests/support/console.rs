//! The console as its tests see it: a daemon set up with a `console:` configuration, a browser
//! that keeps the session cookie and follows no redirect, and readers of the pages it gets.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value;

use super::{Daemon, TestDb, admin_token, escalade_in, expect_code, start_with};

pub const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// A daemon on a new store with `console_yaml` as its configuration's `console:`, and the
/// configuration file.
pub struct Setup {
    pub _tmp: tempfile::TempDir,
    pub db: TestDb,
    pub config: std::path::PathBuf,
    pub admin: String,
}

impl Setup {
    pub fn new(console_yaml: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let db = TestDb::new(&tmp.path().join("state"));
        let config = tmp.path().join("escalade.yaml");
        std::fs::write(&config, format!("console: {console_yaml}\n")).unwrap();
        let admin = admin_token(&db, CITY);
        Setup {
            _tmp: tmp,
            db,
            config,
            admin,
        }
    }

    pub fn start(&self) -> (Daemon, String) {
        start_with(
            &self.db,
            CITY,
            std::process::Command::new(env!("CARGO_BIN_EXE_escalade")),
            &["--config", self.config.to_str().unwrap()],
        )
    }

    /// `escalade person invite PERSON`: the path of the link it printed.
    pub fn invite(&self, person: &str) -> String {
        let out = self.cli(&["person", "invite", person, "--rules", CITY]);
        expect_code(&out, 0, "person invite");
        let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let path = link
            .find("/console/invite/")
            .map(|i| link[i..].to_string())
            .unwrap_or_else(|| panic!("no invitation link in {link}"));
        assert!(link.starts_with("http"), "{link}");
        path
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut all = args.to_vec();
        all.extend(["--config", self.config.to_str().unwrap()]);
        escalade_in(&self.db, &[], &all)
    }
}

/// A browser, as far as the console cares: it keeps the session cookie and follows no redirect
/// by itself, so each answer is seen.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub csp: Option<String>,
    pub body: String,
}

impl Browser {
    pub fn new(addr: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: format!("http://{addr}"),
            cookie: None,
        }
    }

    pub async fn send(&mut self, r: reqwest::RequestBuilder) -> Page {
        let r = match &self.cookie {
            Some(c) => r.header(COOKIE, c),
            None => r,
        };
        let resp = r.send().await.unwrap();
        if let Some(set) = resp.headers().get(SET_COOKIE) {
            let set = set.to_str().unwrap();
            assert!(set.contains("HttpOnly"), "{set}");
            assert!(set.contains("SameSite=Strict"), "{set}");
            let pair = set.split(';').next().unwrap().to_string();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        let header = |h: &str| {
            resp.headers()
                .get(h)
                .map(|v| v.to_str().unwrap().to_string())
        };
        Page {
            status: resp.status().as_u16(),
            location: header(LOCATION.as_str()),
            csp: header("content-security-policy"),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self.http.get(format!("{}{path}", self.base));
        self.send(r).await
    }

    /// A form posted as a browser on this page's origin posts it.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .form(form);
        self.send(r).await
    }
}

impl Browser {
    /// A form with files, posted as a browser on this page's origin posts it.
    pub async fn post_multipart(&mut self, path: &str, form: reqwest::multipart::Form) -> Page {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .multipart(form);
        self.send(r).await
    }

    /// Sets the password through an invitation: signed in.
    pub async fn accept(&mut self, invite: &str, password: &str) {
        let p = self
            .post(invite, &[("password", password), ("repeat", password)])
            .await;
        assert_eq!(p.status, 303, "{}", p.body);
    }
}

/// The value of hidden input `name` on a page.
pub fn hidden(page: &str, name: &str) -> String {
    let at = format!("name=\"{name}\" value=\"");
    let i = page
        .find(&at)
        .unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[i + at.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The value of the first hidden `csrf` input of a page.
pub fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no form token in {page}"));
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The issue ids an inbox page lists, in its order.
pub fn listed(page: &str) -> Vec<String> {
    page.match_indices("<a href=\"/console/issues/")
        .map(|(i, m)| {
            let rest = &page[i + m.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// Every `src` and `href` of a page points at this server (a path), never at another origin;
/// but a link marked as external (a map's), which the page never requests by itself.
pub fn only_local_references(page: &str) {
    for attr in ["src=\"", "href=\""] {
        for (i, _) in page.match_indices(attr) {
            let value = &page[i + attr.len()..];
            let end = value.find('"').unwrap();
            let external = attr == "href=\""
                && page[..i].ends_with("<a ")
                && value[end..].starts_with("\" rel=\"noreferrer external\"");
            // As a browser reads the attribute: the templates write `/` as `&#x2f;`.
            let value = value[..end].replace("&#x2f;", "/");
            assert!(
                external
                    || value.starts_with('/')
                    || value.starts_with('?')
                    || value.starts_with('#'),
                "a reference to elsewhere: {attr}{value}\""
            );
        }
    }
}

pub async fn report(api: &reqwest::Client, addr: &str, body: Value) -> String {
    let r = api
        .post(format!("http://{addr}/api/v1/issues"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn api_issue(api: &reqwest::Client, addr: &str, id: &str) -> Value {
    api.get(format!("http://{addr}/api/v1/issues/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The value of attribute `name` on a page.
pub fn hidden_attr(page: &str, name: &str) -> String {
    let at = format!("{name}=\"");
    let i = page
        .find(&at)
        .unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[i + at.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A person of the in-process API signed in to its console, through an invitation made in the
/// store.
pub async fn signed_in(api: &super::Api, person: &str) -> Browser {
    let (token, hash) = escalade::console::new_invite();
    let until = api.engine.now() + chrono::Duration::hours(1);
    api.engine
        .store()
        .invite(person, &hash, until)
        .await
        .unwrap();
    let mut b = Browser::new(api.base.trim_start_matches("http://"));
    b.accept(
        &format!("/console/invite/{token}"),
        "a long enough password",
    )
    .await;
    b
}
