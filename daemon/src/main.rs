//! The `escalade` command: the daemon (`run`), its tokens and outbox, and the rule tools.
//!
//! Exit codes: 0 success, 1 rule errors or failing rule tests, 2 usage errors (bad flags,
//! unreadable or malformed input files).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use escalade_rules::{Diagnostics, Issue, RuleSet};
use miette::{GraphicalReportHandler, GraphicalTheme};

use escalade::generate;

#[derive(Parser)]
#[command(
    name = "escalade",
    version,
    about = "Routes reported problems to departments, holds them to deadlines and escalates them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the HTTP API, the engine and the scheduler.
    Run {
        /// The daemon's configuration (YAML); every key may be overridden by ESCALADE_*.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The rule directory (overrides the configuration).
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Create or revoke API tokens (in the daemon's store).
    Token {
        #[command(subcommand)]
        action: TokenAction,
        /// The daemon's configuration, for the location of its store.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// List the outbox's messages or retry a dead letter (in the daemon's store).
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
        /// The daemon's configuration, for the location of its store.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Validate a rule directory and summarise it.
    Check {
        /// The rule directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run the rule tests in DIR/tests/*.yaml.
    Test {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Show the decision for a new issue, its trace and the escalations projected forward.
    Explain {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The issue, as JSON: {"category", "unit", "description", ...}.
        #[arg(long)]
        issue: PathBuf,
        /// When it is reported (RFC 3339); default: now.
        #[arg(long)]
        at: Option<DateTime<chrono::FixedOffset>>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write a synthetic organisation of the given size, for benchmarks.
    GenerateCity {
        /// Number of grids; streets and communities scale with it.
        #[arg(long, default_value_t = 19_801)]
        grids: usize,
        /// The directory to write (created; must be empty or absent).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        /// reporter, department, leader or admin.
        #[arg(long)]
        role: String,
        /// The unit subtree (reporter, leader) or the department (department); none for admin.
        #[arg(long)]
        scope: Option<String>,
        /// The rule directory the scope is checked against (overrides the configuration).
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Revoke a token by its id.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum OutboxAction {
    /// List messages by id, with their attempts, last error and when they are due.
    List {
        /// queued, sending, sent or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Queue a dead letter again, due now.
    Retry { id: i64 },
}

/// Exit code 1: the rules or their tests are wrong. Exit code 2: the command was used wrongly.
enum Failure {
    Rules,
    Usage(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rules) => ExitCode::from(1),
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run { config, rules } => {
            let mut cfg =
                escalade::config::Config::load(config.as_deref(), |k| std::env::var(k).ok())
                    .map_err(Failure::Usage)?;
            if let Some(r) = rules {
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
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))?;
            runtime.block_on(daemon(cfg, rules)).map_err(Failure::Usage)
        }
        Command::Token { action, config } => {
            let cfg = escalade::config::Config::load(config.as_deref(), |k| std::env::var(k).ok())
                .map_err(Failure::Usage)?;
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))?;
            match action {
                TokenAction::Create { role, scope, rules } => {
                    let r = escalade::auth::Role::parse(&role).ok_or_else(|| {
                        Failure::Usage(format!(
                            "unknown role `{role}`: reporter, department, leader or admin"
                        ))
                    })?;
                    let rules = load(rules.as_deref().unwrap_or(&cfg.rules))?;
                    escalade::auth::check_scope(&rules, r, scope.as_deref())
                        .map_err(Failure::Usage)?;
                    let (token, hash) = escalade::auth::new_token();
                    let id = runtime
                        .block_on(async {
                            std::fs::create_dir_all(&cfg.state_dir).map_err(|e| e.to_string())?;
                            let store = escalade::store::Store::open_sqlite(&cfg.database_path())
                                .await
                                .map_err(|e| e.to_string())?;
                            let id = store
                                .create_token(&hash, r.as_str(), scope.as_deref(), Utc::now())
                                .await
                                .map_err(|e| e.to_string());
                            store.close().await;
                            id
                        })
                        .map_err(Failure::Usage)?;
                    println!(
                        "token {id} ({role}{}):\n{token}",
                        scope.map(|s| format!(" for {s}")).unwrap_or_default()
                    );
                    Ok(())
                }
                TokenAction::Revoke { id } => {
                    let revoked = runtime
                        .block_on(async {
                            let store = escalade::store::Store::open_sqlite(&cfg.database_path())
                                .await
                                .map_err(|e| e.to_string())?;
                            let r = store
                                .revoke_token(id, Utc::now())
                                .await
                                .map_err(|e| e.to_string());
                            store.close().await;
                            r
                        })
                        .map_err(Failure::Usage)?;
                    if revoked {
                        println!("token {id} revoked");
                        Ok(())
                    } else {
                        Err(Failure::Usage(format!("no live token {id}")))
                    }
                }
            }
        }
        Command::Outbox { action, config } => {
            let cfg = escalade::config::Config::load(config.as_deref(), |k| std::env::var(k).ok())
                .map_err(Failure::Usage)?;
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))?;
            runtime
                .block_on(outbox(&cfg, action))
                .map_err(Failure::Usage)
        }
        Command::Check { dir } => {
            let rules = load(&dir)?;
            let s = rules.summary();
            println!(
                "ok: {} units, {} people, {} departments, {} categories, {} routes, {} ladders, {} meetings, {} templates, {} scripts ({} functions); version {}",
                s.units,
                s.people,
                s.departments,
                s.categories,
                s.routes,
                s.ladders,
                s.meetings,
                s.templates,
                s.scripts,
                s.hooks,
                &rules.version[..16]
            );
            // Each job's next three runs, in its own time zone.
            let now = Utc::now();
            for job in &rules.jobs {
                let runs: Vec<String> = job
                    .upcoming(now, 3)
                    .iter()
                    .map(|t| t.format("%Y-%m-%d %H:%M %:z").to_string())
                    .collect();
                println!(
                    "job {} ({}, {}): {}",
                    job.id,
                    job.cron,
                    job.tz.name(),
                    if runs.is_empty() {
                        "never runs again".to_string()
                    } else {
                        runs.join(", ")
                    }
                );
            }
            Ok(())
        }
        Command::Test { dir } => {
            let rules = load(&dir)?;
            let report = escalade_rules::ruletest::run(&rules, &dir);
            print_diagnostics(&Diagnostics(report.errors.clone()));
            for c in &report.cases {
                if c.failures.is_empty() {
                    println!("ok   {} :: {}", c.file, c.name);
                } else {
                    println!("FAIL {} :: {}", c.file, c.name);
                    for f in &c.failures {
                        println!("       {f}");
                    }
                }
            }
            println!(
                "{} passed, {} failed",
                report.passed(),
                report.failed() + report.errors.len()
            );
            if report.failed() > 0 || !report.errors.is_empty() {
                Err(Failure::Rules)
            } else {
                Ok(())
            }
        }
        Command::Explain {
            dir,
            issue,
            at,
            json,
        } => {
            let text = std::fs::read_to_string(&issue)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", issue.display())))?;
            let parsed: Issue = serde_json::from_str(&text).map_err(|e| {
                Failure::Usage(format!(
                    "{}:{}:{}: invalid issue: {e}",
                    issue.display(),
                    e.line(),
                    e.column()
                ))
            })?;
            let rules = load(&dir)?;
            let at = at.map(|t| t.with_timezone(&Utc)).unwrap_or_else(Utc::now);
            let x = rules
                .explain(&parsed, at)
                .map_err(|e| Failure::Usage(format!("{}: {e}", issue.display())))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&x).expect("serialisable")
                );
            } else {
                print_explanation(&x);
            }
            Ok(())
        }
        Command::GenerateCity { grids, out } => {
            if grids == 0 {
                return Err(Failure::Usage("--grids must be at least 1".into()));
            }
            let summary = generate::city(&out, grids)
                .map_err(|e| Failure::Usage(format!("{}: {e}", out.display())))?;
            println!("{summary}");
            Ok(())
        }
    }
}

/// Start-up: migrate the store, start the scheduler (whose first pass fires the timers that fell
/// due while the daemon was down, in batches) and the workers, then listen at once: a backlog of
/// due timers does not hold up serving. SIGTERM or SIGINT stops accepting, finishes the requests in flight and exits.
async fn daemon(cfg: escalade::config::Config, rules: RuleSet) -> Result<(), String> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use escalade::engine::{Engine, SystemClock};
    use escalade::store::Store;

    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| {
        format!(
            "cannot create state directory {}: {e}",
            cfg.state_dir.display()
        )
    })?;
    let photos = escalade::photos::PhotoStore::open(&cfg.state_dir).map_err(|e| {
        format!(
            "cannot create the photo store in {}: {e}",
            cfg.state_dir.display()
        )
    })?;
    let db = cfg.database_path();
    let options = escalade::store::StoreOptions {
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
    let jobs = tokio::spawn(escalade::jobs::run_jobs(engine.clone(), stopped.clone()));
    let delivery = Arc::new(escalade::notify::Delivery::new(engine.clone(), &cfg)?);
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
    let state = Arc::new(escalade::api::AppState {
        engine: engine.clone(),
        scheduler_running: running.clone(),
        photos: Arc::new(photos),
        photo_limits: cfg.photo_limits(),
        delivery: Some(delivery),
    });
    escalade::api::serve(listener, state, cfg.max_body_bytes, shutdown_signal())
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

/// `escalade outbox list|retry` on the store of the configuration's state directory.
async fn outbox(cfg: &escalade::config::Config, action: OutboxAction) -> Result<(), String> {
    use escalade::store::{OutboxFilter, Requeue, Store};
    let db = cfg.database_path();
    if !db.exists() {
        return Err(format!("no store at {}", db.display()));
    }
    let store = Store::open_sqlite(&db)
        .await
        .map_err(|e| format!("{}: {e}", db.display()))?;
    let result = match action {
        OutboxAction::List { status, limit } => {
            if let Some(s) = &status
                && !["queued", "sending", "sent", "dead"].contains(&s.as_str())
            {
                store.close().await;
                return Err(format!(
                    "--status: unknown status `{s}`: queued, sending, sent or dead"
                ));
            }
            let f = OutboxFilter {
                status,
                after: None,
                limit: limit.clamp(1, 100_000),
            };
            store.outbox_page(&f).await.map(|rows| {
                println!(
                    "id\tstatus\tchannel\tto\ttemplate\tattempts\tnot_before\tsent_at\tlast_error"
                );
                for r in rows {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r.id,
                        r.status,
                        r.channel,
                        if r.address.is_empty() {
                            &r.person
                        } else {
                            &r.address
                        },
                        if r.template.is_empty() {
                            &r.kind
                        } else {
                            &r.template
                        },
                        r.attempts,
                        r.not_before
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        r.sent_at
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                            .unwrap_or_else(|| "-".into()),
                        r.last_error.as_deref().unwrap_or("-"),
                    );
                }
            })
        }
        OutboxAction::Retry { id } => match store.requeue(id, Utc::now()).await {
            Ok(Requeue::Requeued(r)) => {
                println!("message {id} queued again ({} to {})", r.channel, r.address);
                Ok(())
            }
            Ok(Requeue::NotDead(status)) => {
                store.close().await;
                return Err(format!(
                    "message {id} is {status}, not dead: only a dead letter is retried"
                ));
            }
            Ok(Requeue::NotFound) => {
                store.close().await;
                return Err(format!("no message {id} in the outbox"));
            }
            Err(e) => Err(e),
        },
    };
    store.close().await;
    result.map_err(|e| e.to_string())
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

fn load(dir: &Path) -> Result<RuleSet, Failure> {
    if !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    RuleSet::load(dir).map_err(|d| {
        print_diagnostics(&d);
        eprintln!("{}: {} error(s)", dir.display(), d.len());
        Failure::Rules
    })
}

fn print_diagnostics(d: &Diagnostics) {
    let theme = if std::io::stderr().is_terminal() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    for diag in d.iter() {
        let mut out = String::new();
        match handler.render_report(&mut out, &escalade_rules::diag::Report(diag)) {
            Ok(()) => eprint!("{out}"),
            Err(_) => eprintln!("{diag}"),
        }
        // The one-line form too: greppable, and what editors jump to.
        eprintln!("  --> {diag}\n");
    }
}

fn print_explanation(x: &escalade_rules::explain::Explanation) {
    println!("rules version   {}", x.rules_version);
    println!("reported at     {}", x.reported_at);
    println!("priority        {}", x.priority);
    println!("departments     {}", x.departments.join(", "));
    if let Some(t) = &x.triage {
        println!("TRIAGE          {t}");
    }
    println!("\ntrace:");
    for t in &x.trace {
        println!("  - {t}");
    }
    println!("\ndeadlines:");
    println!(
        "  acknowledge by {}",
        x.deadlines.acknowledge.as_deref().unwrap_or("-")
    );
    println!(
        "  resolve by     {}",
        x.deadlines.resolve.as_deref().unwrap_or("-")
    );
    for s in &x.deadline_steps {
        println!("  {s}");
    }
    println!("\nmessages:");
    for m in &x.messages {
        println!("  - {m}");
    }
    println!("\nif nobody acts:");
    if x.escalations.is_empty() {
        println!("  (no escalation)");
    }
    for e in &x.escalations {
        println!(
            "  {}  {}  tier {}  told: {}",
            e.at,
            e.trigger,
            e.tier,
            if e.notify.is_empty() {
                "-".into()
            } else {
                e.notify.join(", ")
            }
        );
        for t in &e.trace {
            println!("      {t}");
        }
    }
    for m in &x.meetings {
        println!(
            "  meeting {} at {} with {}",
            m.meeting,
            m.at,
            m.participants.join(", ")
        );
    }
}
