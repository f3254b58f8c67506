//! What the daemon's tests share: the store each test runs on (SQLite or PostgreSQL, as the
//! environment chooses), the real binary run over it, the API served in-process, and the small
//! helpers several test files need. The benchmarks include it too.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use escalade::engine::{Clock, Engine};

pub mod browser;
pub mod console;
pub mod smtp;
use escalade::store::{Database, Store, StoreOptions};

// ---- the store's backend --------------------------------------------------------------------

/// The store's backend the tests run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// The PostgreSQL server of this URL, on which each test makes a database of its own.
    Postgres(String),
}

/// The backend that `ESCALADE_TEST_BACKEND` (`backend`) and `ESCALADE_TEST_DATABASE_URL`
/// (`url`) name: SQLite unless the first says `postgres`, which needs the second.
pub fn choose_backend(backend: Option<&str>, url: Option<&str>) -> Result<Backend, String> {
    match backend.map(str::trim).unwrap_or("") {
        "" | "sqlite" => Ok(Backend::Sqlite),
        "postgres" => match url.map(str::trim) {
            Some(u) if !u.is_empty() => Ok(Backend::Postgres(u.to_string())),
            _ => Err(
                "ESCALADE_TEST_BACKEND=postgres needs ESCALADE_TEST_DATABASE_URL, the \
                 server on which the tests make their databases: set it, e.g. \
                 ESCALADE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
                    .to_string(),
            ),
        },
        other => Err(format!(
            "ESCALADE_TEST_BACKEND={other}: expected `sqlite` (the default) or `postgres`"
        )),
    }
}

/// The backend of this run, read from the environment once; the first call says which, so
/// that no run leaves a doubt about what it tested.
pub fn backend() -> &'static Backend {
    static CHOSEN: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| {
        let var = |k: &str| std::env::var(k).ok();
        let chosen = choose_backend(
            var("ESCALADE_TEST_BACKEND").as_deref(),
            var("ESCALADE_TEST_DATABASE_URL").as_deref(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        match &chosen {
            Backend::Sqlite => say("escalade tests: the store runs on SQLite"),
            Backend::Postgres(url) => say(&format!(
                "escalade tests: the store runs on PostgreSQL at {}",
                shown(url)
            )),
        }
        chosen
    })
}

/// Writes `line` to the process's stderr as it is: the test runner keeps back what a test
/// prints with `eprintln!` unless the test fails, and these lines are meant for every run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `url` without its password, to print.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "a URL that does not parse".to_string(),
    }
}

/// Whether a test that only makes sense on SQLite (it reads or copies the SQLite file itself)
/// runs: false on PostgreSQL, saying which test is skipped and `why`.
pub fn sqlite_only(why: &str) -> bool {
    match backend() {
        Backend::Sqlite => true,
        Backend::Postgres(_) => {
            let test = std::thread::current()
                .name()
                .unwrap_or("a test")
                .to_string();
            say(&format!("{test}: skipped on PostgreSQL: {why}"));
            false
        }
    }
}

/// The store of one test, on the backend of the run, with the state directory the daemon
/// keeps its other files in (photos, its lock). On SQLite it is `escalade.sqlite` in the
/// state directory, where the binary looks when told nothing else; nothing is made until the
/// store is opened. On PostgreSQL it is a database of its own, made on the server now and
/// dropped with this value.
pub struct TestDb {
    state: PathBuf,
    database: Database,
    /// The server and the name of the database made for this test, to drop.
    made: Option<(String, String)>,
}

impl TestDb {
    /// The store of a test whose state directory is `state` (which need not exist).
    pub fn new(state: &Path) -> TestDb {
        match backend() {
            Backend::Sqlite => TestDb::sqlite(state),
            Backend::Postgres(server) => TestDb::postgres_on(state, server),
        }
    }

    /// An SQLite store whatever the run's backend: for what starts from one (moving a store).
    pub fn sqlite(state: &Path) -> TestDb {
        TestDb {
            state: state.to_path_buf(),
            database: Database::Sqlite(state.join("escalade.sqlite")),
            made: None,
        }
    }

    /// A PostgreSQL database of its own whatever the run's backend, when
    /// `ESCALADE_TEST_DATABASE_URL` names a server; none (the caller says it skipped) when not.
    pub fn postgres(state: &Path) -> Option<TestDb> {
        let url = std::env::var("ESCALADE_TEST_DATABASE_URL").ok()?;
        (!url.trim().is_empty()).then(|| TestDb::postgres_on(state, url.trim()))
    }

    fn postgres_on(state: &Path, server: &str) -> TestDb {
        // Unique across the test binaries running at once (the pid), the tests of one (the
        // counter), and databases a killed run left behind (the random part).
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "escalade_test_{}_{}_{:08x}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        let mut url = reqwest::Url::parse(server)
            .unwrap_or_else(|e| panic!("ESCALADE_TEST_DATABASE_URL is not a URL: {e}"));
        url.set_path(&format!("/{name}"));
        on_server(server, &format!("CREATE DATABASE \"{name}\"")).unwrap_or_else(|e| {
            panic!("making the test database {name} on {}: {e}", shown(server))
        });
        TestDb {
            state: state.to_path_buf(),
            database: Database::Postgres(url.to_string()),
            made: Some((server.to_string(), name)),
        }
    }

    /// The same store seen from another state directory: what a second replica of the daemon
    /// on PostgreSQL is (its photo cache and uploads its own). Dropping it drops nothing.
    pub fn sharing(&self, state: &Path) -> TestDb {
        TestDb {
            state: state.to_path_buf(),
            database: self.database.clone(),
            made: None,
        }
    }

    /// The state directory a binary run over this store is given.
    pub fn state(&self) -> &Path {
        &self.state
    }

    pub fn database(&self) -> Database {
        self.database.clone()
    }

    /// The store as a person reads it: the SQLite file, or the URL without its password.
    pub fn shown(&self) -> String {
        match &self.database {
            Database::Sqlite(p) => p.display().to_string(),
            Database::Postgres(url) => shown(url),
        }
    }

    /// The SQLite file, on SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.database {
            Database::Sqlite(p) => Some(p),
            Database::Postgres(_) => None,
        }
    }

    /// The store, opened (and migrated) as the daemon opens it, which makes its state
    /// directory first.
    pub async fn open(&self, options: StoreOptions) -> Store {
        std::fs::create_dir_all(&self.state).unwrap();
        Store::open(&self.database, options)
            .await
            .unwrap_or_else(|e| panic!("opening the store {}: {e}", self.shown()))
    }

    /// The variables a binary run over this store needs besides its state directory: none on
    /// SQLite, whose file is where the state directory puts it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match &self.database {
            Database::Sqlite(_) => Vec::new(),
            Database::Postgres(url) => vec![("ESCALADE_DATABASE", url.clone())],
        }
    }

    /// Points `command` at this store: its state directory and `env`.
    pub fn apply(&self, command: &mut Command) {
        command.env("ESCALADE_STATE_DIR", &self.state);
        if self.env().is_empty() {
            // A database named in the environment the tests run in would take the place of
            // the state directory's file.
            command.env_remove("ESCALADE_DATABASE");
        }
        command.envs(self.env());
    }

    /// The binary, pointed at this store.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_escalade"));
        self.apply(&mut c);
        c
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = self.made.take() {
            // FORCE: a store still open (an engine held elsewhere, a daemon being killed)
            // must not keep the database.
            let dropped = on_server(
                &server,
                &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            );
            if let Err(e) = dropped {
                // No panic: this may run while a failed test unwinds.
                say(&format!(
                    "the test database {name} is left on the server: {e}"
                ));
            }
        }
    }
}

/// Runs `sql` on the server of `url`, through a connection of its own, on a thread of its own
/// with a runtime of its own: the caller may be sync, in `Drop`, or inside a test's runtime,
/// where no other runtime may block.
fn on_server(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            // Sent as it is, with no statement prepared: it has no parameters and runs once.
            sqlx::raw_sql(&sql)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
            c.close().await.map_err(|e| e.to_string())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the thread that ran it panicked".to_string()))
}

/// An engine on `db`'s store (opened with the default options), the rules of `rules_dir`
/// and `clock`.
pub async fn engine(db: &TestDb, rules_dir: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Engine {
    let rules = escalade_rules::RuleSet::load(rules_dir.as_ref()).unwrap();
    Engine::new(db.open(StoreOptions::default()).await, rules, clock)
}

// ---- the real binary ------------------------------------------------------------------------

/// The daemon, killed when dropped (so a failing test leaves no process behind).
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An admin token in the store `db`, made by `escalade token create`.
pub fn admin_token(db: &TestDb, rules: &str) -> String {
    let out = db
        .command()
        .args(["token", "create", "--role", "admin", "--rules", rules])
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

/// Starts `escalade run` on port 0 over the store `db` and returns it with the address it
/// logged.
pub fn start(db: &TestDb, rules: &str) -> (Daemon, String) {
    start_with(db, rules, Command::new(env!("CARGO_BIN_EXE_escalade")), &[])
}

/// `start`, from a command the caller has prepared (more variables, say), with more flags of
/// `run`.
pub fn start_with(db: &TestDb, rules: &str, command: Command, flags: &[&str]) -> (Daemon, String) {
    let (daemon, addr, _) = start_logged(db, rules, command, flags);
    (daemon, addr)
}

/// `start_with`, keeping every line the daemon logs, as it comes, for the test to read.
pub fn start_logged(
    db: &TestDb,
    rules: &str,
    mut command: Command,
    flags: &[&str],
) -> (
    Daemon,
    String,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    db.apply(&mut command);
    let mut child = command
        .args(["run", "--rules", rules])
        .args(flags)
        .env("ESCALADE_LISTEN", "127.0.0.1:0")
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
        console: Default::default(),
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

/// Sends `request`: the answer's status and its JSON body (null if it has none).
pub async fn call(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The SHA-256 of `bytes` in hex: a photo's name.
pub fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Every file under `dir`, recursively, sorted (none if `dir` is not there).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Exposed wiring and fire risk in the example city's grid `unit`, reported by `p-UNIT`: the
/// example's hook convenes the joint meeting, which sits at 09:00 one working day later.
pub fn fire_hazard(unit: &str) -> serde_json::Value {
    serde_json::json!({"category": "fire_hazard", "unit": unit, "reporter": format!("p-{unit}"),
           "description": "电线老化漏电，楼道堆放杂物有起火风险"})
}

/// The API on a fresh store (its state directory a temp dir), served in-process on the rules
/// of `rules_dir` with a clock the test moves.
pub struct Api {
    pub base: String,
    /// A client with the first token of the store, an admin's.
    pub admin: reqwest::Client,
    pub engine: std::sync::Arc<escalade::engine::Engine>,
    pub clock: std::sync::Arc<escalade::engine::ManualClock>,
    _stop: tokio::sync::oneshot::Sender<()>,
    pub db: TestDb,
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
        let db = TestDb::new(dir.path());
        let clock = Arc::new(escalade::engine::ManualClock::new(at(now)));
        let engine = Arc::new(engine(&db, rules_dir, clock.clone()).await);
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
            db,
            dir,
        }
    }

    /// A client with a new token of `role` and `scope`.
    pub async fn client(&self, role: &str, scope: Option<&str>) -> reqwest::Client {
        client(&token(&self.engine, role, scope).await)
    }

    pub async fn get(&self, c: &reqwest::Client, path: &str) -> (u16, serde_json::Value) {
        call(c.get(format!("{}{path}", self.base))).await
    }

    pub async fn post(
        &self,
        c: &reqwest::Client,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        call(c.post(format!("{}{path}", self.base)).json(&body)).await
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

/// `escalade run` on port 0 over the store `db` and `rules`, from a command the caller has
/// prepared, without waiting for it. Its stderr is the caller's to set (else it is the test's).
pub fn spawn(db: &TestDb, rules: &str, mut command: Command, flags: &[&str]) -> Daemon {
    db.apply(&mut command);
    let child = command
        .args(["run", "--rules", rules])
        .args(flags)
        .env("ESCALADE_LISTEN", "127.0.0.1:0")
        .spawn()
        .unwrap();
    Daemon(child)
}

/// `escalade ARGS` over the store `db`, and `env` besides.
pub fn escalade_in(db: &TestDb, env: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    let mut c = db.command();
    c.args(args);
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

// ---- processes -----------------------------------------------------------------------------

/// The CPU time (user and system) the processes `pids` have used, in seconds, from
/// `/proc/PID/stat`.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: `sysconf` reads a constant of the system and touches no memory of ours.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // After the command's name in parentheses: state, then fields 4.. ; utime and
            // stime are the 14th and 15th fields of the line.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        / tick
}

/// The processes whose command is `name`.
pub fn processes_named(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}
