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
pub fn start_with(
    state: &Path,
    rules: &str,
    mut command: Command,
    flags: &[&str],
) -> (Daemon, String) {
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
    let addr = loop {
        let line = lines
            .next()
            .expect("the daemon logs where it listens")
            .unwrap();
        if let Some(i) = line.find("listen=") {
            break line[i + 7..].split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (daemon, addr)
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
    use std::sync::Arc;
    let state = Arc::new(escalade::api::AppState {
        rules,
        engine,
        scheduler_running: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        photos: Arc::new(escalade::photos::PhotoStore::open(state_dir).unwrap()),
        photo_limits: Default::default(),
        delivery: None,
        links: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(escalade::api::serve(listener, state, max_body, async {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// A token of `role` (and `scope`) in `engine`'s store.
pub async fn token(engine: &escalade::engine::Engine, role: &str, scope: Option<&str>) -> String {
    let (token, hash) = escalade::auth::new_token();
    engine
        .store()
        .create_token(&hash, role, scope, chrono::Utc::now())
        .await
        .unwrap();
    token
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
