//! `escalade person`: people's access to the web console.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::store::{config, with_store};
use super::{Failure, load};

#[derive(Subcommand)]
pub enum PersonAction {
    /// Invite a person of the organisation to the console: prints a one-time link through which
    /// they set their password (a new invitation replaces one not yet used; a password already
    /// set keeps working until a new one is set).
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
            let rules = load(rules.as_deref().unwrap_or(&cfg.rules))?;
            if rules.org.person(&person).is_none() {
                return Err(Failure::Usage(format!(
                    "unknown person `{person}`: the organisation of {} has no such person",
                    cfg.rules.display()
                )));
            }
            let roles = crate::auth::roles_of(&rules, &person).unwrap_or_default();
            let admin = cfg.console.admins.contains(&person);
            if roles.is_empty() && !admin {
                return Err(Failure::Usage(format!(
                    "person `{person}` has no role to act in: they are no department's contact, \
                     lead no unit, and `console.admins` does not name them"
                )));
            }
            let lifetime = match expires_in {
                Some(e) => crate::auth::parse_lifetime(&e).map_err(Failure::Usage)?,
                None => chrono::Duration::from_std(cfg.console.invite.0)
                    .map_err(|e| Failure::Usage(format!("console.invite: {e}")))?,
            };
            let (token, hash) = crate::console::new_invite();
            let now = chrono::Utc::now();
            let until = now + lifetime;
            with_store(&cfg, true, async |store| {
                store
                    .invite(&person, &hash, until)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            let base = cfg
                .console
                .base_url
                .clone()
                .or_else(|| cfg.links.as_ref().map(|l| l.base_url.clone()))
                .unwrap_or_else(|| format!("http://{}/", cfg.listen));
            let base = base.trim_end_matches('/');
            println!("{base}/console/invite/{token}");
            eprintln!(
                "the link lets {person} set a console password once, until {}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            Ok(())
        }
    }
}
