//! Commands on the daemon's store: `token` (create, revoke, list), `outbox` (list, retry) and
//! `rules` (versions, show, shadow).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::Subcommand;

use escalade_rules::RuleSet;

use super::{Failure, load, runtime};
use crate::auth::{Grant, Role};
use crate::config::Config;
use crate::store::{OUTBOX_STATUSES, OutboxFilter, Requeue, Store, TokenListing, TokenTerms};

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
        /// The rule directory the person or scope is checked against (overrides the
        /// configuration); an admin token of no one or of an integration reads no rules.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// What the token is for, shown by `token list` (at most 200 characters).
        #[arg(long)]
        label: Option<String>,
        /// How long the token works: `90d`, `12h`, `30m`, `1d12h`; without it, until revoked.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke { id: i64 },
    /// List every token: id, role, scope, owner, label, when it was created, last used (written
    /// at most once a minute) and expires, and whether it is live, expired or revoked. The
    /// tokens themselves are never shown: only their hashes are stored.
    List {
        /// One JSON object per token, in an array.
        #[arg(long)]
        json: bool,
    },
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
    let db = cfg.database();
    runtime()?
        .block_on(async {
            if let crate::store::Database::Sqlite(path) = &db {
                if create {
                    std::fs::create_dir_all(&cfg.state_dir)
                        .map_err(|e| format!("cannot create {}: {e}", cfg.state_dir.display()))?;
                } else if !path.exists() {
                    return Err(format!("no store at {}", path.display()));
                }
            }
            let store = Store::open(&db, Default::default())
                .await
                .map_err(|e| format!("{}: {e}", db.display()))?;
            let r = f(&store).await;
            store.close().await;
            r
        })
        .map_err(Failure::Usage)
}

/// What `token create` grants, checked against the organisation of `rules` (loaded only when
/// they are needed: an admin token of no one or of an integration names nothing in them): a
/// person's token as `auth::derive` makes it, an integration's with the role and scope given,
/// or an admin token of no one.
pub fn grant(
    rules: impl FnOnce() -> Result<RuleSet, Failure>,
    role: Option<Role>,
    scope: Option<String>,
    person: Option<String>,
    integration: Option<String>,
) -> Result<Grant, Failure> {
    if let Some(p) = person {
        return Ok(crate::auth::derive(&rules()?, &p, role, scope.as_deref())?);
    }
    let Some(role) = role else {
        if integration.is_some() {
            return Err(String::from(
                "an integration's token needs --role (and --scope unless admin)",
            )
            .into());
        }
        return Err(String::from(
            "say whose token it is: --person ID (role and scope from the organisation), \
             --integration NAME --role ROLE [--scope ID], or --role admin",
        )
        .into());
    };
    if let Some(name) = &integration {
        crate::auth::check_integration(name)?;
    }
    match (role, scope.as_deref()) {
        (Role::Admin, Some(_)) => return Err(String::from("an admin token has no scope").into()),
        (Role::Admin, None) => {}
        (_, _) if integration.is_none() => {
            return Err(format!(
                "a {} token belongs to a person (--person ID) or an integration (--integration NAME)",
                role.as_str()
            )
            .into());
        }
        (_, scope) => crate::auth::check_scope(&rules()?, role, scope)?,
    }
    Ok(Grant {
        role,
        scope,
        person: None,
        integration,
    })
}

/// `escalade token create|revoke|list`.
pub fn token(action: TokenAction, config_file: Option<&Path>) -> Result<(), Failure> {
    let cfg = config(config_file)?;
    match action {
        TokenAction::Create {
            role,
            scope,
            person,
            integration,
            rules,
            label,
            expires_in,
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
            if let Some(l) = &label {
                crate::auth::check_label(l)?;
            }
            let lifetime = expires_in
                .as_deref()
                .map(crate::auth::parse_lifetime)
                .transpose()?;
            let dir = rules.unwrap_or_else(|| cfg.rules.clone());
            // What the organisation allows a person is read from these rules: say which.
            let of_rules = match &person {
                Some(_) => format!(" (rules: {})", dir.display()),
                None => String::new(),
            };
            let grant =
                grant(|| load(&dir), role, scope, person, integration).map_err(|e| match e {
                    Failure::Usage(e) => Failure::Usage(format!("{e}{of_rules}")),
                    e => e,
                })?;
            let now = Utc::now();
            let terms = TokenTerms {
                label,
                expires_at: lifetime.map(|d| now + d),
            };
            let (token, hash) = crate::auth::new_token();
            let id = with_store(&cfg, true, async |store| {
                store
                    .create_token_with(&hash, &grant, &terms, now)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            let expires = match terms.expires_at {
                Some(t) => format!(", expires {}", secs(t)),
                None => String::new(),
            };
            println!("token {id} ({}{expires}):\n{token}", grant.describe());
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
        TokenAction::List { json } => {
            let tokens = with_store(&cfg, false, async |store| {
                store.tokens().await.map_err(|e| e.to_string())
            })?;
            let now = Utc::now();
            if json {
                let rows: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut v = serde_json::to_value(t).expect("plain data serialises");
                        v["status"] = token_status(t, now).into();
                        v
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("plain data serialises")
                );
                return Ok(());
            }
            println!("id\tstatus\trole\tscope\towner\tlabel\tcreated\tlast_used\texpires");
            let or_dash = |t: Option<DateTime<Utc>>| t.map(secs).unwrap_or_else(|| "-".into());
            for t in &tokens {
                let owner = match (&t.person, &t.integration) {
                    (Some(p), _) => p.clone(),
                    (None, Some(i)) => format!("integration:{i}"),
                    (None, None) => "-".into(),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{owner}\t{}\t{}\t{}\t{}",
                    t.id,
                    token_status(t, now),
                    t.role,
                    t.scope.as_deref().unwrap_or("-"),
                    t.label.as_deref().unwrap_or("-"),
                    secs(t.created_at),
                    or_dash(t.last_used_at),
                    or_dash(t.expires_at),
                );
            }
            Ok(())
        }
    }
}

/// `live`, `expired` or `revoked`.
fn token_status(t: &TokenListing, now: DateTime<Utc>) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "live"
    }
}

/// An instant to the second, in UTC.
fn secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
