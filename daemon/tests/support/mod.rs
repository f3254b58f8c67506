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
    let mut child = Command::new(env!("CARGO_BIN_EXE_escalade"))
        .args(["run", "--rules", rules])
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

/// The API of `engine` served in-process on port 0, photos kept under `state_dir`, delivery not
/// started: its base URL, and the sender that stops it (dropping the sender stops it too).
pub async fn serve_api(
    engine: std::sync::Arc<escalade::engine::Engine>,
    state_dir: &Path,
    max_body: usize,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    use std::sync::Arc;
    let state = Arc::new(escalade::api::AppState {
        engine,
        scheduler_running: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        photos: Arc::new(escalade::photos::PhotoStore::open(state_dir).unwrap()),
        photo_limits: Default::default(),
        delivery: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(escalade::api::serve(listener, state, max_body, async {
        let _ = stopped.await;
    }));
    (base, stop)
}
