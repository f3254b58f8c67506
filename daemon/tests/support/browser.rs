//! A real headless Chromium, driven through chromedriver over WebDriver, for the tests of the
//! pages the daemon serves. Each `Browser` runs a chromedriver of its own on a free port of
//! 127.0.0.1, with a profile (and temporary files) in a directory of its own; dropping it ends
//! the browser's session and kills the driver's whole process group, so that a test that panics
//! leaves no process and no file behind.
//!
//! What a test can ask of a page besides driving it: every request it made (Chromium's
//! performance log, `Network.requestWillBeSent`), the errors on its console (the browser log,
//! level SEVERE), the serious and critical violations axe-core finds in it, and screenshots
//! kept as artifacts under `target/screenshots/<test>/`.
//!
//! When `chromium` or `chromedriver` is not installed, `Browser::start` says the test is
//! skipped (`<test>: skipped: install chromium and chromium-driver`) and gives `None`, and the
//! test returns; any other failure to start is a panic.
//!
//! The WebDriver client is `fantoccini` rather than `thirtyfour`: it talks to the driver over
//! plain HTTP with hyper, which the daemon already builds, with its default features off it
//! brings no TLS stack (the driver is on 127.0.0.1) and no driver manager (whose downloads could
//! not run here anyway), and `Client::issue_cmd` sends the one command the W3C protocol lacks,
//! chromedriver's log endpoint, without leaving the client.
//!
//! Scripts the test runs (`Client::execute`, axe-core) go through the DevTools protocol, which
//! a page's Content-Security-Policy does not govern and which runs even where the page's own
//! scripts are disabled: axe runs in the daemon's pages, whose policy allows no script at all.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// axe-core, vendored (see `tests/assets/README.md`).
const AXE: &str = include_str!("../assets/axe.min.js");

/// A viewport of `width` by `height` CSS pixels. A `mobile` one is an emulated phone (a mobile
/// viewport, which honours `<meta name="viewport">`, and a touch screen); another is the window
/// itself, sized so that its viewport is exactly this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub width: u32,
    pub height: u32,
    pub mobile: bool,
}

/// A small phone.
pub const PHONE: Window = Window {
    width: 360,
    height: 740,
    mobile: true,
};

/// A laptop's screen.
pub const DESKTOP: Window = Window {
    width: 1366,
    height: 900,
    mobile: false,
};

/// How the browser is started.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub window: Window,
    /// Whether pages may run scripts (a Chromium content setting); scripts the test runs
    /// itself run either way.
    pub javascript: bool,
}

impl Options {
    pub fn new(window: Window) -> Options {
        Options {
            window,
            javascript: true,
        }
    }

    /// The same, with the pages' scripts disabled.
    pub fn without_javascript(self) -> Options {
        Options {
            javascript: false,
            ..self
        }
    }
}

/// A request a page made (or tried to: one a Content-Security-Policy blocked is here too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub url: String,
    /// What Chromium says the request was for: `Document`, `Image`, `Script`...
    pub kind: String,
}

/// One rule axe-core found broken.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The rule, as axe names it (`label`, `color-contrast`...).
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: String,
    pub help: String,
    /// The elements at fault, each as its CSS selector and its HTML.
    pub nodes: Vec<String>,
}

/// What axe-core found in a page.
#[derive(Clone, Debug)]
pub struct Axe {
    /// The violations of impact `serious` or `critical`.
    pub violations: Vec<Violation>,
    /// The rules the page passed: evidence that axe ran at all.
    pub passed: Vec<String>,
}

/// What the driver's logs said so far: each read of a log empties it in the driver.
#[derive(Default)]
struct Logs {
    requests: Vec<Request>,
    errors: Vec<String>,
}

/// A headless Chromium under a chromedriver of its own.
pub struct Browser {
    client: Client,
    test: String,
    /// Whether pages run scripts.
    javascript: bool,
    logs: Mutex<Logs>,
    // Dropped last: it ends the session and kills the driver.
    driver: Driver,
}

/// The chromedriver process (under a shell leading a process group that Chromium joins, and
/// that is killed when `_input` closes) and the directory of the browser's profile and
/// temporary files.
struct Driver {
    child: Child,
    _input: Option<std::process::ChildStdin>,
    port: u16,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Chromium quits when its session ends; the group is killed in any case (a session that
        // never started, a browser that hangs).
        if let Some(id) = self.session.take() {
            end_session(self.port, &id);
        }
        // SAFETY: kill(2) on the group this driver leads; no memory is involved.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// `DELETE /session/{id}`, sent by hand (this runs in `Drop`, where nothing may be awaited),
/// waiting at most a few seconds for Chromium to quit.
fn end_session(port: u16, id: &str) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    if s.write_all(request.as_bytes()).is_ok() {
        let _ = s.read_to_end(&mut Vec::new());
    }
}

/// chromedriver's `POST /session/{id}/se/log`: the entries of the log `kind` since the last
/// read (`browser`, `performance`).
#[derive(Debug)]
struct ReadLog(&'static str);

impl WebDriverCompatibleCommand for ReadLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({ "type": self.0 }).to_string()),
        )
    }
}

/// The name of the running test, as the test runner names its thread.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string()
}

/// `name` found in `PATH`.
fn installed(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The arguments Chromium runs with: headless, as root (no sandbox), on a machine with a small
/// `/dev/shm` and no GPU, asking nothing of any server of its own (updates, sync, safe
/// browsing, translation), and taking no proxy from the environment.
fn chromium_args(profile: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-client-side-phishing-detection",
        "--disable-crash-reporter",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        "--metrics-recording-only",
        "--password-store=basic",
        "--no-proxy-server",
        "--mute-audio",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

/// Chromium and chromedriver, if both are installed; if not, says that the running test is
/// skipped (on stderr, past the test runner's capture) and gives `None`.
pub fn browser_installed() -> Option<(PathBuf, PathBuf)> {
    match (installed("chromium"), installed("chromedriver")) {
        (Some(chromium), Some(chromedriver)) => Some((chromium, chromedriver)),
        _ => {
            super::say(&format!(
                "{}: skipped: install chromium and chromium-driver",
                test_name()
            ));
            None
        }
    }
}

impl Browser {
    /// A new headless Chromium, its window as `options` says; `None` (the test is said to be
    /// skipped) when Chromium or its driver is not installed.
    pub async fn start(options: Options) -> Option<Browser> {
        let test = test_name();
        let (chromium, chromedriver) = browser_installed()?;
        let profile = tempfile::tempdir().unwrap();
        let tmp = profile.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        // A process group of its own, which the driver and the browser it starts join: dropping
        // the driver kills the group. The shell leading it kills the group too when its input
        // closes, which is when this process ends however it ends (killed, say, where no `Drop`
        // runs). TMPDIR: the browser's shared memory files (`--disable-dev-shm-usage`) and the
        // driver's files go with the profile.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" --port=0 </dev/null & cat >/dev/null; kill -KILL 0"#)
            .arg(&chromedriver)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let stdout = child.stdout.take().unwrap();
        let mut driver = Driver {
            _input: child.stdin.take(),
            child,
            port: 0,
            session: None,
            _profile: profile,
        };
        // "ChromeDriver was started successfully on port 41235." Its output is read to the end
        // so that it never blocks on a full pipe.
        let (tell, told) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("on port ")
                    .nth(1)
                    .and_then(|p| p.trim_end_matches('.').trim().parse::<u16>().ok())
                    .filter(|p| *p != 0)
                {
                    let _ = tell.send(port);
                }
            }
        });
        driver.port = told
            .recv_timeout(Duration::from_secs(20))
            .expect("chromedriver says the port it listens on within 20 s");

        let profile = driver._profile.path().join("profile");
        let mut chrome = json!({
            "binary": chromium,
            "args": chromium_args(&profile),
            "prefs": {},
        });
        if !options.javascript {
            chrome["prefs"]["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        let window = options.window;
        if window.mobile {
            // A touch screen, but not where pages run no script: chromedriver's click on a
            // touch screen then never returns (Chromium 156).
            chrome["mobileEmulation"] = json!({"deviceMetrics": {
                "width": window.width, "height": window.height, "pixelRatio": 1.0,
                "mobile": true, "touch": options.javascript,
            }});
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": chrome,
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
            "timeouts": {"script": 30_000, "pageLoad": 30_000, "implicit": 0},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}/", driver.port))
            .await
            .unwrap_or_else(|e| {
                panic!("starting {} through chromedriver: {e}", chromium.display())
            });
        driver.session = client.session_id().await.unwrap();
        let browser = Browser {
            client,
            test,
            javascript: options.javascript,
            logs: Mutex::new(Logs::default()),
            driver,
        };
        browser.size(window).await;
        // What the browser did before the test's first page is not the test's.
        browser.read_logs().await;
        *browser.logs.lock().unwrap() = Logs::default();
        Some(browser)
    }

    /// Makes the viewport `window`: the phone is emulated; a window is resized until its
    /// viewport (the window less the browser's own bars) has the size asked.
    async fn size(&self, window: Window) {
        let measure = |what: &'static str| async move {
            let v = self
                .client
                .execute(&format!("return [{what}];"), vec![])
                .await
                .unwrap();
            (v[0].as_i64().unwrap(), v[1].as_i64().unwrap())
        };
        let wanted = (i64::from(window.width), i64::from(window.height));
        // An emulated phone's viewport is laid out 980 wide until a page's `<meta
        // name="viewport">` says otherwise; its screen is the device's.
        let got = if window.mobile {
            measure("screen.width, screen.height").await
        } else {
            let viewport = "window.innerWidth, window.innerHeight";
            self.client
                .set_window_size(window.width, window.height)
                .await
                .unwrap();
            let (w, h) = measure(viewport).await;
            let (bars_w, bars_h) = (i64::from(window.width) - w, i64::from(window.height) - h);
            self.client
                .set_window_size(
                    (i64::from(window.width) + bars_w) as u32,
                    (i64::from(window.height) + bars_h) as u32,
                )
                .await
                .unwrap();
            measure(viewport).await
        };
        assert_eq!(got, wanted, "the viewport of {window:?}");
    }

    /// The WebDriver client, to drive the page.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url`, and waits for its load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The entries of the driver's log `kind` since its last read.
    async fn log(&self, kind: &'static str) -> Vec<Value> {
        match self.client.issue_cmd(ReadLog(kind)).await {
            Ok(Value::Array(entries)) => entries,
            Ok(other) => panic!("the {kind} log is not a list: {other}"),
            Err(e) => panic!("reading the {kind} log: {e}"),
        }
    }

    /// Moves what the driver logged since the last read into `self.logs`.
    async fn read_logs(&self) {
        let performance = self.log("performance").await;
        let console = self.log("browser").await;
        let mut logs = self.logs.lock().unwrap();
        for entry in performance {
            let message: Value = entry["message"]
                .as_str()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_else(|| panic!("a performance entry that is not JSON: {entry}"));
            let message = &message["message"];
            if message["method"] == "Network.requestWillBeSent" {
                let params = &message["params"];
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                logs.requests.push(Request {
                    method: text(&params["request"]["method"]),
                    url: text(&params["request"]["url"]),
                    kind: text(&params["type"]),
                });
            }
        }
        for entry in console {
            if entry["level"] == "SEVERE" {
                logs.errors.push(
                    entry["message"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| entry.to_string()),
                );
            }
        }
    }

    /// Every request the pages made since the browser started, in order.
    pub async fn requests(&self) -> Vec<Request> {
        self.read_logs().await;
        self.logs.lock().unwrap().requests.clone()
    }

    /// The requests that went (or tried to go) anywhere but `origin` (`http://127.0.0.1:8080`):
    /// all but those to `origin` and those that stay in the browser (`data:`, `blob:`,
    /// `about:`).
    pub async fn foreign_requests(&self, origin: &str) -> Vec<Request> {
        let origin = reqwest::Url::parse(origin)
            .unwrap_or_else(|e| panic!("{origin} is not a URL: {e}"))
            .origin();
        self.requests()
            .await
            .into_iter()
            .filter(|r| match reqwest::Url::parse(&r.url) {
                Ok(u) if ["data", "blob", "about"].contains(&u.scheme()) => false,
                Ok(u) => u.origin() != origin,
                Err(_) => true,
            })
            .collect()
    }

    /// The errors on the browser's console since it started (script errors, failed loads, a
    /// Content-Security-Policy's refusals), as Chromium words them.
    pub async fn console_errors(&self) -> Vec<String> {
        self.read_logs().await;
        self.logs.lock().unwrap().errors.clone()
    }

    /// Runs axe-core on the page as it is now.
    pub async fn axe(&self) -> Axe {
        let injected = self
            .client
            .execute(&format!("{AXE}\n;return typeof window.axe;"), vec![])
            .await
            .unwrap_or_else(|e| panic!("injecting axe-core: {e}"));
        assert_eq!(injected, "object", "axe-core is loaded in the page");
        // Without page scripts Chromium fires no timer, which axe-core waits on between rules;
        // the test's scripts still run, and so do promise callbacks. For the run, a timer of a
        // short delay runs as a promise callback instead, and a longer one (axe's guards, that
        // a run ends in time) never fires; the page's own timers are put back after.
        let script = r#"
            const done = arguments[arguments.length - 1];
            const scripts = arguments[0];
            const timers = [window.setTimeout, window.clearTimeout];
            if (!scripts) {
              const cancelled = new Set();
              let next = 1;
              window.setTimeout = (f, ms, ...rest) => {
                const id = next++;
                if (!(ms > 1000)) {
                  Promise.resolve().then(() => { if (!cancelled.has(id)) f(...rest); });
                }
                return id;
              };
              window.clearTimeout = (id) => cancelled.add(id);
            }
            const finish = (answer) => {
              [window.setTimeout, window.clearTimeout] = timers;
              done(answer);
            };
            axe.run(document, { resultTypes: ["violations"] }).then(
              (r) => finish({
                violations: r.violations.map((v) => ({
                  id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.map((n) => n.target.join(" ") + " " + n.html),
                })),
                passed: r.passes.map((p) => p.id),
              }),
              (e) => finish({ error: String(e) }),
            );
        "#;
        let result = self
            .client
            .execute_async(script, vec![json!(self.javascript)])
            .await
            .unwrap_or_else(|e| panic!("running axe-core: {e}"));
        if let Some(e) = result.get("error") {
            panic!("axe-core failed: {e}");
        }
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let violations = result["violations"]
            .as_array()
            .expect("axe-core's violations")
            .iter()
            .map(|v| Violation {
                id: text(&v["id"]),
                impact: text(&v["impact"]),
                help: text(&v["help"]),
                nodes: v["nodes"]
                    .as_array()
                    .map(|n| n.iter().map(text).collect())
                    .unwrap_or_default(),
            })
            .filter(|v| v.impact == "serious" || v.impact == "critical")
            .collect();
        let passed = result["passed"]
            .as_array()
            .expect("axe-core's passes")
            .iter()
            .map(text)
            .collect();
        Axe { violations, passed }
    }

    /// A screenshot of the viewport, kept as `target/screenshots/<test>/<name>.png`: its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("taking the screenshot {name}: {e}"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "a screenshot is a PNG"
        );
        let dir = target_dir()
            .join("screenshots")
            .join(self.test.replace("::", "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs `test` with this browser, panicking if it takes longer than `limit`: a page or a
    /// driver that hangs fails the test (and the browser is killed) instead of holding the run.
    pub async fn within<T>(limit: Duration, test: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(limit, test)
            .await
            .unwrap_or_else(|_| panic!("{}: over {limit:?}", test_name()))
    }

    /// The driver's port, for a test that checks it is gone.
    pub fn driver_port(&self) -> u16 {
        self.driver.port
    }

    /// The process group of the driver and the browser.
    pub fn process_group(&self) -> u32 {
        self.driver.child.id()
    }
}

/// The width and height of the PNG at `path`, from its header.
pub fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() >= 24 && &bytes[12..16] == b"IHDR",
        "{path:?} is a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// The workspace's target directory: the one holding this test binary (it has cargo's
/// `CACHEDIR.TAG`), else `CARGO_TARGET_DIR`, else `target`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
}
