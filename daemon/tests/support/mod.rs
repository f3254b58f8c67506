//! Running the real binary: shared by the end-to-end tests and the intake benchmark.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The daemon, killed when dropped (so a failing test leaves no process behind).
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An admin token in the store of `state`, made by `escalade token create`.
pub fn admin_token(state: &Path, rules: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_escalade"))
        .args(["token", "create", "--role", "admin", "--rules", rules])
        .env("ESCALADE_STATE_DIR", state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

/// Starts `escalade run` on port 0 and returns it with the address it logged.
pub fn start(state: &Path, rules: &str) -> (Daemon, String) {
    start_with(
        state,
        rules,
        Command::new(env!("CARGO_BIN_EXE_escalade")),
        &[],
    )
}

/// `start`, from a command the caller has prepared (more variables, say), with more flags of
/// `run`.
pub fn start_with(state: &Path, rules: &str, command: Command, flags: &[&str]) -> (Daemon, String) {
    let (daemon, addr, _) = start_logged(state, rules, command, flags);
    (daemon, addr)
}

/// `start_with`, keeping every line the daemon logs, as it comes, for the test to read.
pub fn start_logged(
    state: &Path,
    rules: &str,
    mut command: Command,
    flags: &[&str],
) -> (
    Daemon,
    String,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut child = command
        .args(["run", "--rules", rules])
        .args(flags)
        .env("ESCALADE_LISTEN", "127.0.0.1:0")
        .env("ESCALADE_STATE_DIR", state)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let daemon = Daemon(child);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let addr = loop {
        let line = lines
            .next()
            .expect("the daemon logs where it listens")
            .unwrap();
        log.lock().unwrap().push(line.clone());
        if let Some(i) = line.find("listen=") {
            break line[i + 7..].split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so the daemon never blocks on a full pipe.
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    (daemon, addr, log)
}

/// A client that sends `token` with every request.
pub fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}

/// The steward of `engine`'s rules, loaded from `rules_dir`, recorded as a version as start-up
/// records them.
pub async fn steward(
    engine: &std::sync::Arc<escalade::engine::Engine>,
    rules_dir: &str,
) -> std::sync::Arc<escalade::reload::Rules> {
    std::sync::Arc::new(
        escalade::reload::Rules::adopt(engine.clone(), rules_dir.into())
            .await
            .unwrap(),
    )
}

/// The API of `engine` (its rules loaded from `rules_dir`) served in-process on port 0, photos
/// kept under `state_dir`, delivery not started: its base URL, and the sender that stops it
/// (dropping the sender stops it too).
pub async fn serve_api(
    engine: std::sync::Arc<escalade::engine::Engine>,
    rules_dir: &str,
    state_dir: &Path,
    max_body: usize,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let rules = steward(&engine, rules_dir).await;
    serve_steward(engine, rules, state_dir, max_body).await
}

/// `serve_api` with a steward of the rules the caller built (with a candidates directory, say).
pub async fn serve_steward(
    engine: std::sync::Arc<escalade::engine::Engine>,
    rules: std::sync::Arc<escalade::reload::Rules>,
    state_dir: &Path,
    max_body: usize,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let turns = escalade::api::Turns::new(Default::default(), max_body);
    serve_limited(engine, rules, state_dir, turns).await
}

/// `serve_steward` with the server's limits the caller chose.
pub async fn serve_limited(
    engine: std::sync::Arc<escalade::engine::Engine>,
    rules: std::sync::Arc<escalade::reload::Rules>,
    state_dir: &Path,
    turns: escalade::api::Turns,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    use std::sync::Arc;
    let state = Arc::new(escalade::api::AppState {
        rules,
        engine,
        scheduler_running: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        photos: Arc::new(escalade::photos::PhotoStore::open(state_dir).unwrap()),
        photo_limits: Default::default(),
        delivery: None,
        links: None,
        turns: Arc::new(turns),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(escalade::api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// A token of `role` (and `scope`) in `engine`'s store, belonging to no one: what tokens made
/// before owners existed are.
pub async fn token(engine: &escalade::engine::Engine, role: &str, scope: Option<&str>) -> String {
    let role = escalade::auth::Role::parse(role).expect("a role");
    granted(engine, &escalade::auth::Grant::unowned(role, scope))
        .await
        .1
}

/// A token granting `grant` in `engine`'s store: its id and the token.
pub async fn granted(
    engine: &escalade::engine::Engine,
    grant: &escalade::auth::Grant,
) -> (i64, String) {
    let (token, hash) = escalade::auth::new_token();
    let id = engine
        .store()
        .create_token(&hash, grant, chrono::Utc::now())
        .await
        .unwrap();
    (id, token)
}

/// A token of `person`, its role and scope derived from the organisation of `engine`'s rules
/// as `escalade token create --person` derives them (`role` and `scope` choose among several).
pub async fn person_token(
    engine: &escalade::engine::Engine,
    person: &str,
    role: Option<&str>,
    scope: Option<&str>,
) -> String {
    let role = role.map(|r| escalade::auth::Role::parse(r).expect("a role"));
    let grant = escalade::auth::derive(&engine.rules(), person, role, scope)
        .unwrap_or_else(|e| panic!("a token of {person}: {e}"));
    granted(engine, &grant).await.1
}

/// A token of the integration `name`, with `role` and `scope`.
pub async fn integration_token(
    engine: &escalade::engine::Engine,
    name: &str,
    role: &str,
    scope: Option<&str>,
) -> String {
    let grant = escalade::auth::Grant {
        integration: Some(name.to_string()),
        ..escalade::auth::Grant::unowned(escalade::auth::Role::parse(role).expect("a role"), scope)
    };
    granted(engine, &grant).await.1
}

/// A copy of the rule directory `from` at `to` (created), to edit in a test.
pub fn copy_rules(from: &str, to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).unwrap();
            }
        }
    }
    copy(Path::new(from), to);
}

/// Replaces `old` (which must be there) by `new` in the file `path`.
pub fn edit(path: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(old), "{} has no `{old}`", path.display());
    std::fs::write(path, text.replacen(old, new, 1)).unwrap();
}

/// A copy of the rule directory `from` at `to` with `edits` applied: `(file, old, new)`
/// replaces the first `old` (which must be there); an empty `old` appends `new`.
pub fn copy_rules_edited(from: &str, to: &Path, edits: &[(&str, &str, &str)]) {
    copy_rules(from, to);
    for (file, old, new) in edits {
        let p = to.join(file);
        if old.is_empty() {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            std::fs::write(&p, format!("{text}{new}")).unwrap();
        } else {
            edit(&p, old, new);
        }
    }
}

/// An instant written with its offset, as the tests write them.
pub fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::FixedOffset>::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// The API on a fresh SQLite store in a temp dir, served in-process on the rules of `rules_dir`
/// with a clock the test moves.
pub struct Api {
    pub base: String,
    /// A client with the first token of the store, an admin's.
    pub admin: reqwest::Client,
    pub engine: std::sync::Arc<escalade::engine::Engine>,
    pub clock: std::sync::Arc<escalade::engine::ManualClock>,
    _stop: tokio::sync::oneshot::Sender<()>,
    pub dir: tempfile::TempDir,
}

impl Api {
    pub async fn start(rules_dir: &str, now: &str) -> Api {
        Api::start_with(rules_dir, now, Default::default()).await
    }

    /// `start`, with the server's limits the test chose.
    pub async fn start_with(rules_dir: &str, now: &str, limits: escalade::api::HttpLimits) -> Api {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let store = escalade::store::Store::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        let clock = Arc::new(escalade::engine::ManualClock::new(at(now)));
        let engine = Arc::new(escalade::engine::Engine::new(
            store,
            escalade_rules::RuleSet::load(rules_dir).unwrap(),
            clock.clone(),
        ));
        let rules = steward(&engine, rules_dir).await;
        let turns = escalade::api::Turns::new(limits, 1 << 20);
        let (base, stop) = serve_limited(engine.clone(), rules, dir.path(), turns).await;
        let admin = client(&token(&engine, "admin", None).await);
        Api {
            base,
            admin,
            engine,
            clock,
            _stop: stop,
            dir,
        }
    }

    /// A client with a new token of `role` and `scope`.
    pub async fn client(&self, role: &str, scope: Option<&str>) -> reqwest::Client {
        client(&token(&self.engine, role, scope).await)
    }

    pub async fn get(&self, c: &reqwest::Client, path: &str) -> (u16, serde_json::Value) {
        let r = c.get(format!("{}{path}", self.base)).send().await.unwrap();
        (
            r.status().as_u16(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post(
        &self,
        c: &reqwest::Client,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = c
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Posts an event to issue `id`.
    pub async fn act(
        &self,
        c: &reqwest::Client,
        id: &str,
        event: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.post(c, &format!("/api/v1/issues/{id}/events"), event)
            .await
    }

    /// Moves the clock to `now` and fires every timer due by then.
    pub async fn advance(&self, now: &str) {
        self.clock.set(at(now));
        while self.engine.fire_due().await.unwrap() > 0 {}
    }
}

/// A 1×1 RGBA PNG.
pub const PNG: [u8; 70] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A service manager's notification socket, bound as systemd binds one: a daemon started with
/// `NOTIFY_SOCKET` set to `path` sends its notifications (`READY=1`, `STATUS=...`) here.
pub struct NotifySocket {
    pub path: std::path::PathBuf,
    socket: std::os::unix::net::UnixDatagram,
    _dir: tempfile::TempDir,
}

/// One notification: its `KEY=value` lines, and when it arrived.
#[derive(Clone, Debug)]
pub struct Notification {
    pub lines: Vec<String>,
    pub at: std::time::Instant,
}

impl Notification {
    /// The value of `key` in this notification.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            path,
            socket,
            _dir: dir,
        }
    }

    /// The next notification, or `None` if none comes within `timeout`.
    pub fn next(&self, timeout: std::time::Duration) -> Option<Notification> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(Notification {
                lines: String::from_utf8(buf[..n].to_vec())
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect(),
                at: std::time::Instant::now(),
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("reading the notification socket: {e}"),
        }
    }

    /// Every notification up to and including the first that has `key=value` (a `value` of
    /// `*` matches any); panics naming `key` if none comes within 15 s.
    pub fn until(&self, key: &str, value: &str) -> Vec<Notification> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let n = self.next(left.max(std::time::Duration::from_millis(1)));
            let Some(n) = n else {
                panic!("no {key}={value} within 15 s; received {seen:?}");
            };
            let found = n.get(key).is_some_and(|v| value == "*" || v == value);
            seen.push(n);
            if found {
                return seen;
            }
        }
    }

    /// Every notification that arrives within `span`.
    pub fn during(&self, span: std::time::Duration) -> Vec<Notification> {
        let end = std::time::Instant::now() + span;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return seen;
            }
            match self.next(left) {
                Some(n) => seen.push(n),
                None => return seen,
            }
        }
    }
}

/// `escalade run` on port 0 over `state` and `rules`, from a command the caller has prepared,
/// without waiting for it. Its stderr is the caller's to set (else it is the test's).
pub fn spawn(state: &Path, rules: &str, mut command: Command, flags: &[&str]) -> Daemon {
    let child = command
        .args(["run", "--rules", rules])
        .args(flags)
        .env("ESCALADE_LISTEN", "127.0.0.1:0")
        .env("ESCALADE_STATE_DIR", state)
        .spawn()
        .unwrap();
    Daemon(child)
}

/// `escalade ARGS` with the store in `state` (`ESCALADE_STATE_DIR`), and `env` besides.
pub fn escalade_in(state: &Path, env: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_escalade"));
    c.args(args).env("ESCALADE_STATE_DIR", state);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the binary runs")
}

/// A valid PNG `n` pixels wide and one high: a different photo for each `n`.
pub fn png(n: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(n, 1, image::Rgb([n as u8, 80, 160]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// Asserts a command's exit code, printing its output when it is not the expected one.
pub fn expect_code(out: &std::process::Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
