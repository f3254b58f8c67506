//! Commands on the daemon's store: `token` (create, revoke) and `outbox` (list, retry).

use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::Subcommand;

use escalade_rules::RuleSet;

use super::{Failure, load, runtime};
use crate::auth::{Grant, Role};
use crate::config::Config;
use crate::store::{OUTBOX_STATUSES, OutboxFilter, Requeue, Store};

#[derive(Subcommand)]
pub enum TokenAction {
    /// Create a token; it is printed once and stored only as a hash.
    ///
    /// A person's token (`--person ID`) takes its role and scope from the organisation: a
    /// department's contact acts for the department, a grid's leader reports in the grid, a
    /// higher unit's leader leads its subtree; `--role`/`--scope` choose among several and must
    /// be among them; `--role admin` makes the person an administrator's token. An integration's
    /// token (`--integration NAME`) takes the role and scope given. Without either, only
    /// `--role admin` is made (a token of no one, as before owners existed).
    Create {
        /// reporter, department, leader or admin; for a person, derived unless several fit.
        #[arg(long)]
        role: Option<String>,
        /// The unit subtree (reporter, leader) or the department (department); none for admin.
        #[arg(long)]
        scope: Option<String>,
        /// The person of the organisation the token acts as.
        #[arg(long, conflicts_with = "integration")]
        person: Option<String>,
        /// The integration the token serves (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        integration: Option<String>,
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
        /// queued, sending, sent, dead or stale.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Queue a dead letter or a stale message again, due now (sent whatever its age).
    Retry { id: i64 },
}

/// The configuration, from `--config` and the environment, as the commands of the store need it:
/// the delivery channels are not checked nor their secrets read (`run` reads them).
pub fn config(file: Option<&Path>) -> Result<Config, Failure> {
    Config::load_for_store(file, |k| std::env::var(k).ok()).map_err(Failure::Usage)
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

/// What `token create` grants, checked against the organisation of `rules`: a person's token
/// as `auth::derive` makes it, an integration's with the role and scope given, or an admin
/// token of no one.
pub fn grant(
    rules: &RuleSet,
    role: Option<Role>,
    scope: Option<String>,
    person: Option<String>,
    integration: Option<String>,
) -> Result<Grant, String> {
    if let Some(p) = person {
        return crate::auth::derive(rules, &p, role, scope.as_deref());
    }
    let Some(role) = role else {
        if integration.is_some() {
            return Err("an integration's token needs --role (and --scope unless admin)".into());
        }
        return Err(
            "say whose token it is: --person ID (role and scope from the organisation), \
             --integration NAME --role ROLE [--scope ID], or --role admin"
                .into(),
        );
    };
    crate::auth::check_scope(rules, role, scope.as_deref())?;
    match integration {
        Some(name) => {
            crate::auth::check_integration(&name)?;
            Ok(Grant {
                role,
                scope,
                person: None,
                integration: Some(name),
            })
        }
        None if role == Role::Admin => Ok(Grant::unowned(role, None)),
        None => Err(format!(
            "a {} token belongs to a person (--person ID) or an integration (--integration NAME)",
            role.as_str()
        )),
    }
}

/// `escalade token create|revoke`.
pub fn token(action: TokenAction, config_file: Option<&Path>) -> Result<(), Failure> {
    let cfg = config(config_file)?;
    match action {
        TokenAction::Create {
            role,
            scope,
            person,
            integration,
            rules,
        } => {
            let role = role
                .map(|r| {
                    crate::auth::Role::parse(&r).ok_or_else(|| {
                        Failure::Usage(format!(
                            "unknown role `{r}`: reporter, department, leader or admin"
                        ))
                    })
                })
                .transpose()?;
            let dir = rules.unwrap_or_else(|| cfg.rules.clone());
            let rules = load(&dir)?;
            // What the organisation allows a person is read from these rules: say which.
            let of_rules = match &person {
                Some(_) => format!(" (rules: {})", dir.display()),
                None => String::new(),
            };
            let grant = grant(&rules, role, scope, person, integration)
                .map_err(|e| Failure::Usage(format!("{e}{of_rules}")))?;
            let (token, hash) = crate::auth::new_token();
            let id = with_store(&cfg, true, async |store| {
                store
                    .create_token(&hash, &grant, Utc::now())
                    .await
                    .map_err(|e| e.to_string())
            })?;
            println!("token {id} ({}):\n{token}", grant.describe());
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
                && !OUTBOX_STATUSES.contains(&s.as_str())
            {
                return Err(Failure::Usage(format!(
                    "--status: unknown status `{s}`: queued, sending, sent, dead or stale"
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
                    "message {id} is {status}, not dead: only a dead letter or a stale message is retried"
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
