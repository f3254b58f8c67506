//! `escalade person`: people's access to the web console.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::store::{config, with_store};
use super::{Failure, load};
use crate::console::InviteError;

#[derive(Subcommand)]
pub enum PersonAction {
    /// Invite a person of the organisation to the console: prints a one-time link through which
    /// they set their password, and emails it to them when SMTP is configured and the
    /// organisation has their address (a new invitation replaces one not yet used; a password
    /// already set keeps working until a new one is set).
    Invite {
        /// The person's id in the organisation (`p-urban-li`).
        person: String,
        /// The rule directory the person is checked against (overrides the configuration).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// How long the link works: `72h`, `7d`; default the configuration's `console.invite`.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
}

pub fn person(action: PersonAction, config_file: Option<&Path>) -> Result<(), Failure> {
    let cfg = config(config_file)?;
    match action {
        PersonAction::Invite {
            person,
            rules,
            expires_in,
        } => {
            let rules_dir = rules.as_deref().unwrap_or(&cfg.rules);
            let rules = load(rules_dir)?;
            let unknown = |e: InviteError| match e {
                InviteError::Unknown(p) => format!(
                    "unknown person `{p}`: the organisation of {} has no such person",
                    rules_dir.display()
                ),
                e => e.to_string(),
            };
            crate::console::invitable(&rules, &cfg.console, &person)
                .map_err(|e| Failure::Usage(unknown(e)))?;
            let lifetime = match expires_in {
                Some(e) => crate::auth::parse_lifetime(&e).map_err(Failure::Usage)?,
                None => chrono::Duration::from_std(cfg.console.invite.0)
                    .map_err(|e| Failure::Usage(format!("console.invite: {e}")))?,
            };
            // The relay as the daemon sends through it, its secret read; a relay configured
            // wrong stops here, before anything changes.
            let mailer = match &cfg.smtp {
                Some(smtp) => {
                    let mut smtp = smtp.clone();
                    smtp.check(&|k| std::env::var(k).ok())
                        .map_err(Failure::Usage)?;
                    Some(crate::notify::Email::new(&smtp).map_err(Failure::Usage)?)
                }
                None => None,
            };
            let base = cfg
                .console
                .base_url
                .clone()
                .or_else(|| cfg.links.as_ref().map(|l| l.base_url.clone()))
                .unwrap_or_else(|| format!("http://{}/", cfg.listen));
            let made = with_store(&cfg, true, async |store| {
                crate::console::invite(
                    store,
                    &rules,
                    &cfg.console,
                    mailer.as_ref(),
                    &base,
                    &person,
                    lifetime,
                    chrono::Utc::now(),
                )
                .await
                .map_err(unknown)
            })?;
            println!("{}", made.link);
            eprintln!(
                "the link lets {person} set a console password once, until {}; {}",
                made.until
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                made.emailed
            );
            Ok(())
        }
    }
}
