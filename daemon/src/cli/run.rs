//! `escalade run`: the daemon. Start-up migrates the store, loads the rules, starts the
//! scheduler (whose first pass fires the timers that fell due while the daemon was down, in
//! batches), the scheduled reports and the delivery workers, then listens at once: a backlog of
//! due timers does not hold up serving. SIGTERM or SIGINT stops accepting, finishes the requests
//! in flight and exits.
//!
//! Under systemd (`Type=notify`) it says `READY=1` once the store is migrated, the rules loaded
//! and the socket listening, with `STATUS=` lines on the way; the scheduler pings the watchdog
//! (see `crate::systemd`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::{Failure, load, runtime};
use crate::config::{Config, LogFormat};
use crate::engine::{Engine, SystemClock};
use crate::reload::{ReloadError, Rules};
use crate::store::Store;

#[derive(Args)]
pub struct RunArgs {
    /// The daemon's configuration (YAML); every key may be overridden by ESCALADE_*.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The rule directory (overrides the configuration).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Start even if the rules no longer know things open issues use; those issues go to
    /// triage at once.
    #[arg(long)]
    pub force_rules: bool,
}

pub fn run(a: RunArgs) -> Result<(), Failure> {
    // The daemon delivers: its channels are checked and their secrets read.
    let mut cfg = crate::config::Config::load(a.config.as_deref(), |k| std::env::var(k).ok())
        .map_err(Failure::Usage)?;
    if let Some(r) = a.rules {
        cfg.rules = r;
    }
    init_log(cfg.log_format);
    // Diagnostics print as `escalade check` prints them; start-up loads again through the
    // reload path, which also checks the rules against the store's open issues.
    load(&cfg.rules)?;
    runtime()?
        .block_on(daemon(cfg, a.force_rules))
        .map_err(Failure::Usage)
}

/// The log on stderr, filtered by `RUST_LOG` (default `info`), in the configured form.
fn init_log(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // PostgreSQL's notices at start-up ("relation ... already exists, skipping" as the
        // migrations check their table) are not the operator's news.
        .add_directive(
            "sqlx::postgres::notice=warn"
                .parse()
                .expect("a valid directive"),
        );
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => log.with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields beside `message`, not nested: what journald and log shippers
        // index.
        LogFormat::Json => log.json().flatten_event(true).init(),
    }
}

/// Holds an exclusive lock on `<database>.lock` for as long as the daemon runs: only one
/// daemon may own an SQLite store. The lock file names the process that holds it.
pub(crate) fn own_store(db: &std::path::Path) -> Result<std::fs::File, String> {
    use std::io::{Read, Seek, Write};
    let path = PathBuf::from(format!("{}.lock", db.display()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(format!(
                "another escalade ({}) owns the store {}: stop it first, or give this one another state_dir or database",
                if holder.is_empty() {
                    "a running daemon"
                } else {
                    holder
                },
                db.display()
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", path.display()));
        }
    }
    f.set_len(0)
        .and_then(|_| f.rewind())
        .and_then(|_| writeln!(f, "pid {}", std::process::id()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(f)
}

async fn daemon(cfg: Config, force_rules: bool) -> Result<(), String> {
    // Metrics are recorded from the first commit on.
    crate::metrics::install();
    let service = crate::systemd::ServiceManager::from_env();
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| {
        format!(
            "cannot create state directory {}: {e}",
            cfg.state_dir.display()
        )
    })?;
    let photos = crate::photos::PhotoStore::open(&cfg.state_dir).map_err(|e| {
        format!(
            "cannot create the photo store in {}: {e}",
            cfg.state_dir.display()
        )
    })?;
    let db = cfg.database();
    // One daemon owns an SQLite file; replicas share a PostgreSQL database.
    let _owned = match &db {
        crate::store::Database::Sqlite(path) => Some(own_store(path)?),
        crate::store::Database::Postgres(_) => None,
    };
    service.status(&format!("opening and migrating the store {}", db.display()));
    let options = crate::store::StoreOptions {
        webhook_events: cfg.webhook.is_some(),
        ..Default::default()
    };
    let store = Store::open(&db, options)
        .await
        .map_err(|e| format!("{}: {e}", db.display()))?;
    service.status(&format!("loading the rules {}", cfg.rules.display()));
    // Start-up is the first reload: checked against open issues, recorded as a version.
    // To the millisecond, as the engine keeps time.
    let now = Utc::now();
    let now = chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let (rules, in_use, live) = Rules::first(&store, &cfg.rules, force_rules, now)
        .await
        .map_err(|e| match e {
            ReloadError::InUse(_) => format!(
                "{e}; start with --force-rules to send those issues to triage, or restore what the rules removed"
            ),
            e => format!("{}: {e}", cfg.rules.display()),
        })?;
    let version = rules.version.clone();
    let store_backend = store.backend();
    let engine = Arc::new(Engine::new(store, rules, Arc::new(SystemClock)));
    let steward = Arc::new(
        Rules::new(engine.clone(), cfg.rules.clone(), live)
            .with_candidates(cfg.candidates_dir.clone())
            .with_database(Some(db.clone()))
            .with_service_manager(service.clone()),
    );
    crate::metrics::reloaded(true, engine.now().timestamp());
    if let Some(dir) = &cfg.shadow_rules {
        let rules = steward.load_candidate(dir).await.map_err(|e| match e {
            ReloadError::Invalid(d) => format!(
                "shadow_rules {}: {}",
                dir.display(),
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            e => format!("shadow_rules {}: {e}", dir.display()),
        })?;
        let shadow = crate::shadow::Shadow::start(
            engine.clone(),
            Arc::new(rules),
            dir.display().to_string(),
            "configuration",
        )
        .await
        .map_err(|e| e.to_string())?;
        tracing::info!(dir = %dir.display(), version = %&shadow.rules.version[..16], "shadow rules run beside the live rules");
        engine.set_shadow(Some(Arc::new(shadow)));
    }
    if !in_use.is_empty() {
        // Forced: `in_use` lists every issue (the ladders removed too, which only the rules
        // the issues were decided by can tell).
        let sent = steward.send_to_triage(&in_use, &version).await;
        tracing::warn!(
            issues = sent.len(),
            "open issues sent to triage: the rules removed what they used"
        );
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = Arc::new(AtomicBool::new(true));
    // The watchdog is pinged from the scheduler's loop: a scheduler that hangs is restarted.
    let watchdog = service.watchdog();
    if let Some(w) = &watchdog {
        tracing::info!(
            ping_every_ms = w.every().as_millis() as u64,
            "the scheduler pings the service manager's watchdog"
        );
    }
    let scheduler = tokio::spawn(
        engine
            .clone()
            .run_scheduler_watched(stopped.clone(), watchdog),
    );
    // Scheduled reports: a run missed while the daemon was down happens now, once.
    let jobs = tokio::spawn(crate::jobs::run_jobs(engine.clone(), stopped.clone()));
    // Photos a failed commit or a crash left behind, nothing naming them.
    tokio::spawn(
        engine
            .clone()
            .run_photo_sweeps(photos.clone(), stopped.clone()),
    );
    let delivery = Arc::new(crate::notify::Delivery::new(engine.clone(), &cfg)?);
    let workers = delivery.clone().spawn(stopped.clone());
    // The signals are caught from here on, before READY=1: a SIGHUP that follows at once
    // reloads, a SIGTERM stops cleanly (uncaught, either would end the process).
    let hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    let term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let reloads = tokio::spawn(reload_on_signal(steward.clone(), hup, stopped.clone()));
    let watcher = if cfg.rules_watch {
        Some(watch_rules(steward.clone(), stopped)?)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        listen = %listen,
        database = %db.display(),
        backend = store_backend,
        rules = %cfg.rules.display(),
        rules_version = %&version[..16],
        "escalade is serving"
    );
    let state = Arc::new(crate::api::AppState {
        engine: engine.clone(),
        scheduler_running: running.clone(),
        photos: Arc::new(photos),
        photo_limits: cfg.photo_limits(),
        rules: steward,
        links: delivery.links(),
        delivery: Some(delivery),
        turns: Arc::new(crate::api::Turns::new(cfg.http.clone(), cfg.max_body_bytes)),
        console: Arc::new(crate::console::Console::new(cfg.console.clone())),
    });
    // The socket listens (connections queue until the server accepts them): ready.
    service.ready(&format!(
        "serving on {listen}; rules version {}",
        &version[..16]
    ));
    let stopping = async move {
        shutdown_signal(term, int).await;
        service.stopping();
    };
    crate::api::serve(listener, state, stopping)
        .await
        .map_err(|e| format!("server: {e}"))?;
    running.store(false, Ordering::Relaxed);
    let _ = stop.send(true);
    let _ = scheduler.await;
    let _ = jobs.await;
    let _ = reloads.await;
    drop(watcher);
    // Delivery workers finish the sends in flight and settle them before the store closes.
    let _ = workers.await;
    if let Some(shadow) = engine.set_shadow(None) {
        let _ = engine.store().stop_shadow(shadow.run, engine.now()).await;
    }
    engine.store().close().await;
    tracing::info!("escalade stopped");
    Ok(())
}

/// Reloads the rules on every SIGHUP; a failed reload is logged and the old rules stay live:
/// a SIGHUP never stops the daemon.
async fn reload_on_signal(
    rules: Arc<Rules>,
    mut hup: tokio::signal::unix::Signal,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = rules.reload("signal", false).await;
            }
            _ = stop.changed() => return,
        }
    }
}

/// Reloads the rules after their files change: events are debounced for 500 ms, so an editor's
/// save (or a `git checkout`) is one reload. Returns the watcher, which stops when dropped.
fn watch_rules(
    rules: Arc<Rules>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<
    notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
    String,
> {
    use notify_debouncer_mini::notify::RecursiveMode;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut debouncer = notify_debouncer_mini::new_debouncer(
        std::time::Duration::from_millis(500),
        move |r: notify_debouncer_mini::DebounceEventResult| {
            let _ = tx.send(r);
        },
    )
    .map_err(|e| format!("cannot watch the rule directory: {e}"))?;
    debouncer
        .watcher()
        .watch(rules.dir(), RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", rules.dir().display()))?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(Ok(_)) => {
                        // Changes that came while this reload ran are in the next batch.
                        let _ = rules.reload("watch", false).await;
                    }
                    Some(Err(e)) => tracing::error!(error = %e, "watching the rule directory"),
                    None => return,
                },
                _ = stop.changed() => return,
            }
        }
    });
    Ok(debouncer)
}

async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping: finishing requests in flight");
}
