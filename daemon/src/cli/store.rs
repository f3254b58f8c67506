//! Commands on the daemon's store: `token` (create, revoke) and `outbox` (list, retry).

use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::Subcommand;

use super::{Failure, load, runtime};
use crate::config::Config;
use crate::store::{OutboxFilter, Requeue, Store};

#[derive(Subcommand)]
pub enum TokenAction {
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
pub enum OutboxAction {
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

/// The configuration, from `--config` and the environment.
pub fn config(file: Option<&Path>) -> Result<Config, Failure> {
    Config::load(file, |k| std::env::var(k).ok()).map_err(Failure::Usage)
}

/// Runs `f` on the configuration's store (which must exist unless `create`), closing it after.
pub fn with_store<T>(
    cfg: &Config,
    create: bool,
    f: impl AsyncFnOnce(&Store) -> Result<T, String>,
) -> Result<T, Failure> {
    let db = cfg.database_path();
    runtime()?
        .block_on(async {
            if create {
                std::fs::create_dir_all(&cfg.state_dir)
                    .map_err(|e| format!("cannot create {}: {e}", cfg.state_dir.display()))?;
            } else if !db.exists() {
                return Err(format!("no store at {}", db.display()));
            }
            let store = Store::open_sqlite(&db)
                .await
                .map_err(|e| format!("{}: {e}", db.display()))?;
            let r = f(&store).await;
            store.close().await;
            r
        })
        .map_err(Failure::Usage)
}

/// `escalade token create|revoke`.
pub fn token(action: TokenAction, config_file: Option<&Path>) -> Result<(), Failure> {
    let cfg = config(config_file)?;
    match action {
        TokenAction::Create { role, scope, rules } => {
            let r = crate::auth::Role::parse(&role).ok_or_else(|| {
                Failure::Usage(format!(
                    "unknown role `{role}`: reporter, department, leader or admin"
                ))
            })?;
            let rules = load(rules.as_deref().unwrap_or(&cfg.rules))?;
            crate::auth::check_scope(&rules, r, scope.as_deref()).map_err(Failure::Usage)?;
            let (token, hash) = crate::auth::new_token();
            let id = with_store(&cfg, true, async |store| {
                store
                    .create_token(&hash, r.as_str(), scope.as_deref(), Utc::now())
                    .await
                    .map_err(|e| e.to_string())
            })?;
            println!(
                "token {id} ({role}{}):\n{token}",
                scope.map(|s| format!(" for {s}")).unwrap_or_default()
            );
            Ok(())
        }
        TokenAction::Revoke { id } => {
            let revoked = with_store(&cfg, false, async |store| {
                store
                    .revoke_token(id, Utc::now())
                    .await
                    .map_err(|e| e.to_string())
            })?;
            if revoked {
                println!("token {id} revoked");
                Ok(())
            } else {
                Err(Failure::Usage(format!("no live token {id}")))
            }
        }
    }
}

/// `escalade outbox list|retry`.
pub fn outbox(action: OutboxAction, config_file: Option<&Path>) -> Result<(), Failure> {
    let cfg = config(config_file)?;
    match action {
        OutboxAction::List { status, limit } => {
            if let Some(s) = &status
                && !["queued", "sending", "sent", "dead"].contains(&s.as_str())
            {
                return Err(Failure::Usage(format!(
                    "--status: unknown status `{s}`: queued, sending, sent or dead"
                )));
            }
            let f = OutboxFilter {
                status,
                after: None,
                limit: limit.clamp(1, 100_000),
            };
            let rows = with_store(&cfg, false, async |store| {
                store.outbox_page(&f).await.map_err(|e| e.to_string())
            })?;
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
            Ok(())
        }
        OutboxAction::Retry { id } => {
            let r = with_store(&cfg, false, async |store| {
                store
                    .requeue(id, Utc::now())
                    .await
                    .map_err(|e| e.to_string())
            })?;
            match r {
                Requeue::Requeued(r) => {
                    println!("message {id} queued again ({} to {})", r.channel, r.address);
                    Ok(())
                }
                Requeue::NotDead(status) => Err(Failure::Usage(format!(
                    "message {id} is {status}, not dead: only a dead letter is retried"
                ))),
                Requeue::NotFound => Err(Failure::Usage(format!("no message {id} in the outbox"))),
            }
        }
    }
}

#[derive(Subcommand)]
pub enum RulesAction {
    /// List every rule version that went live, newest first.
    Versions {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Write the files of a version that went live (its hash, or a unique prefix) to DIR.
    Show {
        version: String,
        /// The directory to write (created; must be empty or absent).
        #[arg(long)]
        out: PathBuf,
    },
    /// Summarise how shadow rules decided differently from the live rules.
    Shadow,
}

/// `escalade rules versions|show|shadow`.
pub fn rules(action: RulesAction, config_file: Option<&Path>) -> Result<(), Failure> {
    let cfg = config(config_file)?;
    match action {
        RulesAction::Versions { limit } => {
            let rows = with_store(&cfg, false, async |store| {
                store
                    .rule_versions(None, limit.clamp(1, 100_000))
                    .await
                    .map_err(|e| e.to_string())
            })?;
            println!("version\tloaded_at\tloaded_by\tfiles\tdir");
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    r.version,
                    r.loaded_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    r.loaded_by,
                    r.files,
                    r.dir
                );
            }
            Ok(())
        }
        RulesAction::Show { version, out } => {
            if out.exists()
                && std::fs::read_dir(&out)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                return Err(Failure::Usage(format!(
                    "{} exists and is not an empty directory",
                    out.display()
                )));
            }
            let found = with_store(&cfg, false, async |store| {
                store
                    .rule_version_files(&version)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            let Some((full, files)) = found else {
                return Err(Failure::Usage(format!(
                    "no rule version `{version}` in the store (or the prefix names several): see `escalade rules versions`"
                )));
            };
            for (path, content) in &files {
                let target = out.join(path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                std::fs::write(&target, content.as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            }
            println!(
                "version {full}: {} files written to {}",
                files.len(),
                out.display()
            );
            Ok(())
        }
        RulesAction::Shadow => {
            let summary = with_store(&cfg, false, async |store| {
                store.shadow_summary(5).await.map_err(|e| e.to_string())
            })?;
            match summary {
                None => println!("no shadow rules have run"),
                Some(s) => print!("{}", crate::shadow::render_summary(&s)),
            }
            Ok(())
        }
    }
}
