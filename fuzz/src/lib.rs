//! What the fuzz targets share: the example organisation's files, and the real HTTP router on
//! a temp SQLite store, built once per process and driven in-process (no sockets).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use escalade_rules::RuleSet;
use tower::ServiceExt;

/// The example organisation the targets run on.
pub const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// The files `RuleSet::load` reads from the example organisation, by their path in it.
pub fn city_files() -> &'static BTreeMap<String, Arc<str>> {
    static FILES: OnceLock<BTreeMap<String, Arc<str>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let rules = RuleSet::load(CITY).unwrap_or_else(|d| panic!("{d}"));
        (*rules.files).clone()
    })
}

/// The router of the daemon on a fresh store, with an admin's token; one per process.
pub struct Http {
    runtime: tokio::runtime::Runtime,
    router: Router,
    token: String,
    _dir: tempfile::TempDir,
}

/// Where every submission made by `Http::report` starts: a grid of the example, a category
/// per selector.
const CATEGORIES: [&str; 4] = ["noise", "road_damage", "garbage", "illegal_construction"];

impl Http {
    pub fn get() -> &'static Http {
        static HTTP: OnceLock<Http> = OnceLock::new();
        HTTP.get_or_init(Http::start)
    }

    fn start() -> Http {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        // In memory where there is a tmpfs: no disk writes, however many issues a run makes.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temp dir");
        // libFuzzer ends the process by `exit`, which drops no static: the store is removed
        // then (a crash leaves it, with the input that caused it).
        static STORE: OnceLock<std::path::PathBuf> = OnceLock::new();
        extern "C" fn remove_store() {
            if let Some(p) = STORE.get() {
                let _ = std::fs::remove_dir_all(p);
            }
        }
        let _ = STORE.set(dir.path().to_path_buf());
        // SAFETY: registers a function taking no arguments, which only removes a directory.
        unsafe { libc::atexit(remove_store) };
        let (router, token) = runtime.block_on(async {
            let store = escalade::store::Store::open_sqlite(&dir.path().join("db.sqlite"))
                .await
                .expect("a store");
            // A Monday morning, inside working hours.
            let now = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:00+08:00")
                .expect("a time")
                .with_timezone(&chrono::Utc);
            let clock = Arc::new(escalade::engine::ManualClock::new(now));
            let engine = Arc::new(escalade::engine::Engine::new(
                store,
                RuleSet::load(CITY).unwrap_or_else(|d| panic!("{d}")),
                clock,
            ));
            let rules = Arc::new(
                escalade::reload::Rules::adopt(engine.clone(), CITY.into())
                    .await
                    .expect("the rules adopted"),
            );
            let (token, hash) = escalade::auth::new_token();
            let grant = escalade::auth::Grant::unowned(escalade::auth::Role::Admin, None);
            engine
                .store()
                .create_token(&hash, &grant, chrono::Utc::now())
                .await
                .expect("a token");
            let state = Arc::new(escalade::api::AppState {
                rules,
                engine,
                scheduler_running: Arc::new(std::sync::atomic::AtomicBool::new(true)),
                photos: Arc::new(
                    escalade::photos::PhotoStore::open(dir.path()).expect("a photo store"),
                ),
                photo_limits: Default::default(),
                delivery: None,
                links: None,
                turns: Arc::new(escalade::api::Turns::new(Default::default(), 1 << 20)),
            });
            (escalade::api::router(state), token)
        });
        Http {
            runtime,
            router,
            token,
            _dir: dir,
        }
    }

    /// Sends `method path` with `body` of `content_type` as the admin; the status and body.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("a request");
        self.runtime.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("the body");
            (status, body)
        })
    }

    /// `send`, which must not answer a server error: bad input is the client's.
    pub fn send_ok(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Bytes) {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let (status, answer) = self.send(method, path, content_type, body);
        assert!(
            !status.is_server_error(),
            "{method} {path} answered {status}: {}\nrequest body: {shown:?}",
            String::from_utf8_lossy(&answer)
        );
        (status, answer)
    }

    /// Reports a fresh issue (of the category `selector` picks) and returns its id.
    pub fn report(&self, selector: u8) -> String {
        let category = CATEGORIES[usize::from(selector) % CATEGORIES.len()];
        let body = format!(
            r#"{{"category": "{category}", "unit": "g-0001", "description": "fuzzing", "reporter": "p-g-0001"}}"#
        );
        let (status, answer) =
            self.send_ok("POST", "/api/v1/issues", "application/json", body.into());
        assert_eq!(status, StatusCode::CREATED, "{answer:?}");
        id_of(&answer).expect("the new issue's id")
    }
}

/// The `id` of a submission's answer.
pub fn id_of(answer: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(answer).ok()?;
    Some(v.get("id")?.as_str()?.to_string())
}
