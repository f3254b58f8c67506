//! `escalade run`: the daemon. Start-up migrates the store, loads the rules, starts the
//! scheduler (whose first pass fires the timers that fell due while the daemon was down, in
//! batches), the scheduled reports and the delivery workers, then listens at once: a backlog of
//! due timers does not hold up serving. SIGTERM or SIGINT stops accepting, finishes the requests
//! in flight and exits.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use super::{Failure, load, runtime};
use crate::config::Config;
use crate::engine::{Engine, SystemClock};
use crate::store::Store;

#[derive(Args)]
pub struct RunArgs {
    /// The daemon's configuration (YAML); every key may be overridden by ESCALADE_*.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The rule directory (overrides the configuration).
    #[arg(long)]
    pub rules: Option<PathBuf>,
}

pub fn run(a: RunArgs) -> Result<(), Failure> {
    let mut cfg = super::store::config(a.config.as_deref())?;
    if let Some(r) = a.rules {
        cfg.rules = r;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rules = load(&cfg.rules)?;
    runtime()?
        .block_on(daemon(cfg, rules))
        .map_err(Failure::Usage)
}

async fn daemon(cfg: Config, rules: escalade_rules::RuleSet) -> Result<(), String> {
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
    let db = cfg.database_path();
    let options = crate::store::StoreOptions {
        webhook_events: cfg.webhook.is_some(),
    };
    let store = Store::open_sqlite_with(&db, options)
        .await
        .map_err(|e| format!("{}: {e}", db.display()))?;
    let version = rules.version.clone();
    let engine = Arc::new(Engine::new(store, rules, Arc::new(SystemClock)));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = Arc::new(AtomicBool::new(true));
    let scheduler = tokio::spawn(engine.clone().run_scheduler(stopped.clone()));
    // Scheduled reports: a run missed while the daemon was down happens now, once.
    let jobs = tokio::spawn(crate::jobs::run_jobs(engine.clone(), stopped.clone()));
    let delivery = Arc::new(crate::notify::Delivery::new(engine.clone(), &cfg)?);
    let workers = delivery.clone().spawn(stopped);
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        database = %db.display(),
        rules = %cfg.rules.display(),
        rules_version = %&version[..16],
        "escalade is serving"
    );
    let state = Arc::new(crate::api::AppState {
        engine: engine.clone(),
        scheduler_running: running.clone(),
        photos: Arc::new(photos),
        photo_limits: cfg.photo_limits(),
        delivery: Some(delivery),
    });
    crate::api::serve(listener, state, cfg.max_body_bytes, shutdown_signal())
        .await
        .map_err(|e| format!("server: {e}"))?;
    running.store(false, Ordering::Relaxed);
    let _ = stop.send(true);
    let _ = scheduler.await;
    let _ = jobs.await;
    // Delivery workers finish the sends in flight and settle them before the store closes.
    let _ = workers.await;
    engine.store().close().await;
    tracing::info!("escalade stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: finishing requests in flight");
}
