//! The daemon's own configuration: YAML, every key overridable by an `ESCALADE_*` variable.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::links::LinksConfig;
use crate::notify::config::{DeliveryConfig, SmsConfig, SmtpConfig, TlsMode, WebhookConfig};
use crate::photos::PhotoLimits;
use crate::store::Database;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to serve the HTTP API on.
    pub listen: String,
    /// The rule directory.
    pub rules: PathBuf,
    /// Reload the rules when the files of the rule directory change (debounced), through the
    /// same path as SIGHUP and `POST /api/v1/rules/reload`.
    pub rules_watch: bool,
    /// The directory under which candidate rule directories may be named over the API (replay,
    /// shadow); no other path is read. Without it, those calls are refused.
    pub candidates_dir: Option<PathBuf>,
    /// A candidate rule directory run beside the live rules from start-up: it decides every
    /// live event with no effect, and where it differs the difference is stored.
    pub shadow_rules: Option<PathBuf>,
    /// Where the daemon keeps its data: `$STATE_DIRECTORY` (systemd) or `./data`.
    pub state_dir: PathBuf,
    /// The store: a PostgreSQL URL (`postgres://user@host/db`), which replicas share, or an
    /// SQLite file (`sqlite:PATH` or a path); default the SQLite file
    /// `state_dir/escalade.sqlite`.
    pub database: Option<String>,
    /// Largest request body accepted, in bytes (for a multipart submission: its `issue` part).
    pub max_body_bytes: usize,
    /// Largest photo accepted, in bytes.
    pub max_photo_bytes: usize,
    /// Most photos accepted with one issue.
    pub max_photos: usize,
    /// Email over SMTP; without it email rows stay queued.
    pub smtp: Option<SmtpConfig>,
    /// SMS through an HTTP gateway; without it SMS rows stay queued.
    pub sms: Option<SmsConfig>,
    /// Every committed event POSTed, signed; without it events are not queued for it.
    pub webhook: Option<WebhookConfig>,
    /// Retries, batches and leases of delivery.
    pub delivery: DeliveryConfig,
    /// One-click acknowledgement links in messages; without it messages carry none and
    /// `/ack/...` answers 404.
    pub links: Option<LinksConfig>,
    /// The web console: its administrators, how long sessions and invitations last, its
    /// address for the links `person invite` prints.
    pub console: crate::console::ConsoleConfig,
    /// The HTTP server's limits: connections, timeouts, bodies read at once.
    pub http: crate::api::HttpLimits,
    /// How the daemon writes its log to stderr: `pretty` (a line of text per event) or `json`
    /// (a JSON object per line).
    pub log_format: LogFormat,
}

/// The form of the daemon's log lines.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event: time, level, target, message, then `key=value` fields.
    #[default]
    Pretty,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields beside them.
    Json,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:8080".into(),
            rules: PathBuf::from("examples/city"),
            rules_watch: false,
            candidates_dir: None,
            shadow_rules: None,
            state_dir: std::env::var_os("STATE_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("data")),
            database: None,
            max_body_bytes: 1 << 20,
            max_photo_bytes: PhotoLimits::default().max_photo_bytes,
            max_photos: PhotoLimits::default().max_photos,
            smtp: None,
            sms: None,
            webhook: None,
            delivery: DeliveryConfig::default(),
            links: None,
            console: Default::default(),
            http: Default::default(),
            log_format: LogFormat::default(),
        }
    }
}

impl Config {
    /// Reads `file` if given, then applies `ESCALADE_LISTEN`, `ESCALADE_RULES`,
    /// `ESCALADE_RULES_WATCH`, `ESCALADE_CANDIDATES_DIR`, `ESCALADE_SHADOW_RULES`,
    /// `ESCALADE_STATE_DIR`, `ESCALADE_DATABASE`, `ESCALADE_MAX_BODY_BYTES`,
    /// `ESCALADE_MAX_PHOTO_BYTES`, `ESCALADE_MAX_PHOTOS` and `ESCALADE_LOG_FORMAT`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let mut c = Config::load_unchecked(file, &env)?;
        c.check_channels(&env)?;
        Ok(c)
    }

    /// `load` without checking the delivery channels and links or reading their secrets: what
    /// the commands that only need the store (tokens, the outbox, rule versions) read, so that
    /// they run where the delivery secrets are not set.
    pub fn load_for_store(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        Config::load_unchecked(file, &env)
    }

    fn load_unchecked(
        file: Option<&Path>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let mut c = match file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                // The key at fault is named by its path (`http.header_timeout`).
                serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text))
                    .map_err(|e| {
                        let path = e.path().to_string();
                        let e = e.into_inner();
                        let at = match e.location() {
                            Some(l) => format!("{}:{}:{}", f.display(), l.line(), l.column()),
                            None => f.display().to_string(),
                        };
                        if path == "." {
                            format!("{at}: {e}")
                        } else {
                            format!("{at}: {path}: {e}")
                        }
                    })?
            }
            None => Config::default(),
        };
        if let Some(v) = env("ESCALADE_LISTEN") {
            c.listen = v;
        }
        if let Some(v) = env("ESCALADE_RULES") {
            c.rules = v.into();
        }
        if let Some(v) = env("ESCALADE_RULES_WATCH") {
            c.rules_watch = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(format!("ESCALADE_RULES_WATCH: `{v}` is not true or false")),
            };
        }
        if let Some(v) = env("ESCALADE_CANDIDATES_DIR") {
            c.candidates_dir = Some(v.into());
        }
        if let Some(v) = env("ESCALADE_SHADOW_RULES") {
            c.shadow_rules = Some(v.into());
        }
        if let Some(v) = env("ESCALADE_STATE_DIR") {
            c.state_dir = v.into();
        }
        if let Some(v) = env("ESCALADE_DATABASE") {
            c.database = Some(v);
        }
        if let Some(v) = env("ESCALADE_MAX_BODY_BYTES") {
            c.max_body_bytes = v
                .parse()
                .map_err(|_| format!("ESCALADE_MAX_BODY_BYTES: `{v}` is not a number of bytes"))?;
        }
        if let Some(v) = env("ESCALADE_MAX_PHOTO_BYTES") {
            c.max_photo_bytes = v
                .parse()
                .map_err(|_| format!("ESCALADE_MAX_PHOTO_BYTES: `{v}` is not a number of bytes"))?;
        }
        if let Some(v) = env("ESCALADE_MAX_PHOTOS") {
            c.max_photos = v
                .parse()
                .map_err(|_| format!("ESCALADE_MAX_PHOTOS: `{v}` is not a number"))?;
        }
        c.http.check()?;
        c.console.check()?;
        if let Some(v) = env("ESCALADE_LOG_FORMAT") {
            c.log_format = match v.as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => {
                    return Err(format!(
                        "ESCALADE_LOG_FORMAT: unknown log format `{v}`, expected `pretty` or `json`"
                    ));
                }
            };
        }
        c.channel_overrides(env)?;
        c.links_overrides(env)?;
        Ok(c)
    }

    /// `ESCALADE_SMTP_HOST`, `_PORT`, `_TLS`, `_USERNAME`, `_PASSWORD_ENV`, `_PASSWORD_FILE`,
    /// `_FROM`; `ESCALADE_SMS_URL`, `ESCALADE_SMS_RATE_PER_SECOND`; `ESCALADE_WEBHOOK_URL`,
    /// `_SECRET_ENV`, `_SECRET_FILE`; `ESCALADE_DELIVERY_MAX_ATTEMPTS`. A variable of a section
    /// the file does not have starts the section from its defaults.
    fn channel_overrides(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let number = |key: &str, v: &str| format!("{key}: `{v}` is not a number");
        if let Some(v) = env("ESCALADE_DELIVERY_MAX_ATTEMPTS") {
            self.delivery.max_attempts = v
                .parse()
                .map_err(|_| number("ESCALADE_DELIVERY_MAX_ATTEMPTS", &v))?;
        }
        const SMTP: [&str; 7] = [
            "HOST",
            "PORT",
            "TLS",
            "USERNAME",
            "PASSWORD_ENV",
            "PASSWORD_FILE",
            "FROM",
        ];
        if SMTP
            .iter()
            .any(|k| env(&format!("ESCALADE_SMTP_{k}")).is_some())
        {
            let s = self.smtp.get_or_insert_with(SmtpConfig::default);
            for k in SMTP {
                let Some(v) = env(&format!("ESCALADE_SMTP_{k}")) else {
                    continue;
                };
                match k {
                    "HOST" => s.host = v,
                    "PORT" => {
                        s.port = Some(v.parse().map_err(|_| number("ESCALADE_SMTP_PORT", &v))?)
                    }
                    "TLS" => {
                        s.tls = match v.as_str() {
                            "none" => TlsMode::None,
                            "starttls" => TlsMode::Starttls,
                            "tls" => TlsMode::Tls,
                            _ => {
                                return Err(format!(
                                    "ESCALADE_SMTP_TLS: unknown TLS mode `{v}`, expected `none`, `starttls` or `tls`"
                                ));
                            }
                        }
                    }
                    "USERNAME" => s.username = Some(v),
                    "PASSWORD_ENV" => s.password_env = Some(v),
                    "PASSWORD_FILE" => s.password_file = Some(v.into()),
                    _ => s.from = v,
                }
            }
        }
        if let Some(v) = env("ESCALADE_SMS_URL") {
            self.sms.get_or_insert_with(SmsConfig::default).url = v;
        }
        if let Some(v) = env("ESCALADE_SMS_RATE_PER_SECOND") {
            self.sms
                .get_or_insert_with(SmsConfig::default)
                .rate_per_second = Some(
                v.parse()
                    .map_err(|_| number("ESCALADE_SMS_RATE_PER_SECOND", &v))?,
            );
        }
        for (k, set) in [
            ("ESCALADE_WEBHOOK_URL", 0),
            ("ESCALADE_WEBHOOK_SECRET_ENV", 1),
            ("ESCALADE_WEBHOOK_SECRET_FILE", 2),
        ] {
            if let Some(v) = env(k) {
                let w = self.webhook.get_or_insert_with(WebhookConfig::default);
                match set {
                    0 => w.url = v,
                    1 => w.secret_env = Some(v),
                    _ => w.secret_file = Some(v.into()),
                }
            }
        }
        Ok(())
    }

    /// `ESCALADE_LINKS_BASE_URL`, `_SECRET_ENV`, `_SECRET_FILE`, `_GRACE`; a variable starts
    /// the section from its defaults when the file has none.
    fn links_overrides(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        for k in ["BASE_URL", "SECRET_ENV", "SECRET_FILE", "GRACE"] {
            let key = format!("ESCALADE_LINKS_{k}");
            let Some(v) = env(&key) else {
                continue;
            };
            let l = self.links.get_or_insert_with(LinksConfig::default);
            match k {
                "BASE_URL" => l.base_url = v,
                "SECRET_ENV" => l.secret_env = Some(v),
                "SECRET_FILE" => l.secret_file = Some(v.into()),
                _ => {
                    l.grace = crate::notify::config::parse_duration(&v)
                        .map(crate::notify::config::Dur)
                        .ok_or_else(|| {
                            format!(
                                "{key}: `{v}` is not a duration: write a number and a unit, `30m` or `72h`"
                            )
                        })?
                }
            }
        }
        Ok(())
    }

    /// Checks the delivery channels and the links, and reads their secrets.
    fn check_channels(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let env: &dyn Fn(&str) -> Option<String> = env;
        if let Some(l) = &mut self.links {
            l.check(env)?;
        }
        if let Some(s) = &mut self.smtp {
            s.check(env)?;
        }
        if let Some(s) = &mut self.sms {
            s.check(env)?;
        }
        if let Some(w) = &mut self.webhook {
            w.check(env)?;
        }
        self.delivery.check()
    }

    /// The store this configuration names.
    pub fn database(&self) -> Database {
        match &self.database {
            Some(d) => Database::parse(d),
            None => Database::Sqlite(self.state_dir.join("escalade.sqlite")),
        }
    }

    /// The SQLite file of the store, for what only an SQLite store has (`what`); on PostgreSQL,
    /// an error saying so.
    pub fn database_path(&self, what: &str) -> Result<PathBuf, String> {
        match self.database() {
            Database::Sqlite(p) => Ok(p),
            Database::Postgres(_) => Err(format!(
                "{what} works on an SQLite store; this configuration's database is PostgreSQL ({}){}",
                self.database().display(),
                if what.contains("backup") || what.contains("restore") {
                    ": back it up with pg_dump and restore it with pg_restore"
                } else {
                    ""
                }
            )),
        }
    }

    pub fn photo_limits(&self) -> PhotoLimits {
        PhotoLimits {
            max_photo_bytes: self.max_photo_bytes,
            max_photos: self.max_photos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "listen: 0.0.0.0:9000\nrules: /etc/escalade/rules\n").unwrap();
        let env = |k: &str| (k == "ESCALADE_STATE_DIR").then(|| "/var/lib/escalade".to_string());
        let c = Config::load(Some(&f), env).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.rules, PathBuf::from("/etc/escalade/rules"));
        assert_eq!(
            c.database(),
            Database::Sqlite(PathBuf::from("/var/lib/escalade/escalade.sqlite"))
        );
    }

    #[test]
    fn bad_configuration_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "listen: x\nlisen: y\n").unwrap();
        let e = Config::load(Some(&f), |_| None).unwrap_err();
        assert!(
            e.contains("c.yaml:2:1") && e.contains("unknown field `lisen`"),
            "{e}"
        );
        let e = Config::load(None, |k: &str| {
            (k == "ESCALADE_MAX_BODY_BYTES").then(|| "lots".into())
        })
        .unwrap_err();
        assert!(e.contains("ESCALADE_MAX_BODY_BYTES"), "{e}");
    }

    #[test]
    fn log_format_is_read_from_the_file_or_the_environment() {
        assert_eq!(load_yaml("", &[]).unwrap().log_format, LogFormat::Pretty);
        let c = load_yaml("log_format: json\n", &[]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let c = load_yaml("log_format: json\n", &[("ESCALADE_LOG_FORMAT", "pretty")]).unwrap();
        assert_eq!(c.log_format, LogFormat::Pretty);
        let c = load_yaml("", &[("ESCALADE_LOG_FORMAT", "json")]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn an_unknown_log_format_is_refused_naming_the_key() {
        let e = load_yaml("listen: 127.0.0.1:0\nlog_format: xml\n", &[]).unwrap_err();
        assert!(
            e.contains("c.yaml:2:")
                && e.contains("log_format")
                && e.contains("unknown variant `xml`"),
            "{e}"
        );
        let e = load_yaml("", &[("ESCALADE_LOG_FORMAT", "JSON ")]).unwrap_err();
        assert!(
            e.contains("ESCALADE_LOG_FORMAT") && e.contains("`JSON `") && e.contains("`pretty`"),
            "{e}"
        );
    }

    #[test]
    fn photo_limits_default_and_are_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(None, |_| None).unwrap();
        assert_eq!(
            c.photo_limits(),
            PhotoLimits {
                max_photo_bytes: 10 << 20,
                max_photos: 8
            }
        );
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "max_photo_bytes: 1000\nmax_photos: 3\n").unwrap();
        let c = Config::load(Some(&f), |_| None).unwrap();
        assert_eq!((c.max_photo_bytes, c.max_photos), (1000, 3));
        let env = |k: &str| match k {
            "ESCALADE_MAX_PHOTO_BYTES" => Some("2048".to_string()),
            "ESCALADE_MAX_PHOTOS" => Some("0".to_string()),
            _ => None,
        };
        let c = Config::load(Some(&f), env).unwrap();
        assert_eq!((c.max_photo_bytes, c.max_photos), (2048, 0));
        let e = Config::load(None, |k: &str| {
            (k == "ESCALADE_MAX_PHOTOS").then(|| "many".into())
        })
        .unwrap_err();
        assert!(e.contains("ESCALADE_MAX_PHOTOS"), "{e}");
    }

    /// Loads `yaml` with `env`; the error if it fails.
    fn load_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, yaml).unwrap();
        Config::load(Some(&f), |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    const SMTP: &str = "smtp:\n  host: mail.city.example\n  from: escalade@city.example\n";

    #[test]
    fn channels_are_read_with_their_secrets_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("hook.key");
        std::fs::write(&key, "from-a-file\n").unwrap();
        let yaml = format!(
            "{SMTP}  username: escalade\n  password_env: SMTP_PASSWORD\n  tls: tls\n\
             sms:\n  url: https://sms.example/send\n  headers: {{x-api-key: {{env: SMS_KEY}}}}\n  rate_per_second: 5\n\
             webhook:\n  url: https://hooks.example/escalade\n  secret_file: {}\n\
             delivery: {{max_attempts: 4, backoff: 2s}}\n",
            key.display()
        );
        let c = load_yaml(&yaml, &[("SMTP_PASSWORD", "pw"), ("SMS_KEY", "k")]).unwrap();
        let smtp = c.smtp.as_ref().unwrap();
        assert_eq!((smtp.tls, smtp.port()), (TlsMode::Tls, 465));
        assert_eq!(smtp.password.as_ref().unwrap().0, "pw");
        assert_eq!(format!("{:?}", smtp.password), "Some(***)");
        let sms = c.sms.as_ref().unwrap();
        assert_eq!(sms.resolved_headers[0].0, "x-api-key");
        assert_eq!(sms.resolved_headers[0].1.0, "k");
        assert_eq!(c.webhook.as_ref().unwrap().secret.0, "from-a-file");
        assert_eq!(c.delivery.max_attempts, 4);
        assert_eq!(c.delivery.backoff.0, std::time::Duration::from_secs(2));

        // Overrides, a section started from the environment alone.
        let c = load_yaml(
            "",
            &[
                ("ESCALADE_SMTP_HOST", "relay.local"),
                ("ESCALADE_SMTP_FROM", "a@b.example"),
                ("ESCALADE_SMTP_TLS", "none"),
                ("ESCALADE_SMS_URL", "http://127.0.0.1:9/send"),
            ],
        )
        .unwrap();
        assert_eq!(c.smtp.as_ref().unwrap().port(), 25);
        assert_eq!(c.sms.as_ref().unwrap().url, "http://127.0.0.1:9/send");
        assert!(c.webhook.is_none());
        // A variable named but not set.
        let e =
            load_yaml(&format!("{SMTP}  username: u\n  password_env: NOPE\n"), &[]).unwrap_err();
        assert!(
            e.contains("smtp.password_env") && e.contains("`NOPE` is not set"),
            "{e}"
        );
    }

    #[test]
    fn a_password_in_the_configuration_is_refused() {
        let e = load_yaml(&format!("{SMTP}  username: u\n  password: hunter2\n"), &[]).unwrap_err();
        assert!(
            e.contains("smtp.password") && e.contains("never written"),
            "{e}"
        );
        assert!(e.contains("password_env") && e.contains("c.yaml:"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = load_yaml("webhook:\n  url: https://h.example/\n  secret: abc\n", &[]).unwrap_err();
        assert!(
            e.contains("webhook.secret") && e.contains("never written"),
            "{e}"
        );
        let e = load_yaml("webhook:\n  url: https://h.example/\n", &[]).unwrap_err();
        assert!(e.contains("webhook: the signing key is required"), "{e}");
    }

    #[test]
    fn a_map_template_places_both_coordinates_in_an_http_url() {
        let c = load_yaml(
            "console: {map_url: \"https://maps.example/?q={lat},{lon}&z=18\"}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.console.map_link(34.75, 113.625).as_deref(),
            Some("https://maps.example/?q=34.75,113.625&z=18")
        );
        for (template, says) in [
            (
                "https://maps.example/?q={lat}",
                "places no `{lat}` or no `{lon}`",
            ),
            (
                "https://maps.example/{lat}/{lng}/{lon}",
                "has `{`, which is not",
            ),
            ("maps.example/{lat}/{lon}", "is not a URL"),
            ("javascript:go({lat},{lon})", "is not an http or https URL"),
        ] {
            let e = load_yaml(&format!("console: {{map_url: \"{template}\"}}\n"), &[]).unwrap_err();
            assert!(
                e.contains("console.map_url") && e.contains(says),
                "{template}: {e}"
            );
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn links_are_read_with_their_secret_from_the_environment_or_a_file() {
        let c = load_yaml(
            "links: {base_url: \"https://escalade.example.org\", secret_env: LINK_KEY}\n",
            &[("LINK_KEY", SECRET)],
        )
        .unwrap();
        let l = c.links.as_ref().unwrap();
        assert_eq!(l.secret.0, SECRET);
        assert_eq!(format!("{:?}", l.secret), "***");
        assert!(!format!("{c:?}").contains(SECRET));
        assert_eq!(l.grace.0, std::time::Duration::from_secs(72 * 3600));

        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("link.key");
        std::fs::write(&key, format!("{SECRET}\n")).unwrap();
        let key = key.display().to_string();
        let c = load_yaml(
            "",
            &[
                ("ESCALADE_LINKS_BASE_URL", "http://127.0.0.1:8080/escalade/"),
                ("ESCALADE_LINKS_SECRET_FILE", &key),
                ("ESCALADE_LINKS_GRACE", "30m"),
            ],
        )
        .unwrap();
        let l = c.links.as_ref().unwrap();
        assert_eq!(l.secret.0, SECRET);
        assert_eq!(l.grace.0, std::time::Duration::from_secs(1800));
        assert!(load_yaml("", &[]).unwrap().links.is_none());
    }

    #[test]
    fn bad_links_configuration_is_refused_naming_the_key() {
        let env = [("LINK_KEY", SECRET), ("SHORT", "hunter2")];
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: [(&str, Env, &str); 8] = [
            (
                "links: {base_url: \"https://e.example\", secret: abc}\n",
                &[],
                "`links.secret` is refused",
            ),
            (
                "links: {base_url: \"https://e.example\"}\n",
                &[],
                "links: the signing secret is required",
            ),
            (
                "links: {base_url: \"https://e.example\", secret_env: NOPE}\n",
                &[],
                "links.secret_env: the environment variable `NOPE` is not set",
            ),
            (
                "links: {base_url: \"https://e.example\", secret_env: SHORT}\n",
                &env,
                "at least 32",
            ),
            (
                "links: {base_url: \"escalade.example.org\", secret_env: LINK_KEY}\n",
                &env,
                "links.base_url: `escalade.example.org` is not a URL",
            ),
            (
                "links: {base_url: \"ftp://e.example/?a=1\", secret_env: LINK_KEY}\n",
                &env,
                "not an http or https URL",
            ),
            (
                "links: {base_url: \"https://e.example\", secret_env: LINK_KEY, grace: soon}\n",
                &env,
                "`soon` is not a duration",
            ),
            (
                "",
                &[("ESCALADE_LINKS_GRACE", "3 days")],
                "ESCALADE_LINKS_GRACE",
            ),
        ];
        for (yaml, env, expected) in cases {
            let e = load_yaml(yaml, env).unwrap_err();
            assert!(e.contains(expected), "{yaml}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn an_unknown_tls_mode_is_refused() {
        let e = load_yaml(&format!("{SMTP}  tls: ssl\n"), &[]).unwrap_err();
        assert!(
            e.contains("smtp.tls") && e.contains("unknown variant `ssl`") && e.contains("starttls"),
            "{e}"
        );
        let e = load_yaml(
            "",
            &[("ESCALADE_SMTP_HOST", "h"), ("ESCALADE_SMTP_TLS", "ssl")],
        )
        .unwrap_err();
        assert!(e.contains("ESCALADE_SMTP_TLS"), "{e}");
        let e = load_yaml("smtp:\n  host: h\n  from: not an address\n", &[]).unwrap_err();
        assert!(e.contains("smtp.from"), "{e}");
    }

    #[test]
    fn an_sms_body_template_that_does_not_compile_is_refused() {
        let sms = "sms:\n  url: https://sms.example/send\n";
        let e = load_yaml(
            &format!("{sms}  body: {{to: \"{{{{ to }}}}\", text: \"{{{{ text \"}}\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("sms.body.text") && e.contains("does not compile"),
            "{e}"
        );
        let e = load_yaml(&format!("{sms}  body: {{msg: \"{{{{ txt }}}}\"}}\n"), &[]).unwrap_err();
        assert!(
            e.contains("sms.body.msg") && e.contains("unknown variable `txt`"),
            "{e}"
        );
        let e = load_yaml(
            &format!("{sms}  body_format: form\n  body: {{to: {{nested: x}}}}\n"),
            &[],
        )
        .unwrap_err();
        assert!(e.contains("sms.body.to"), "{e}");
        let e = load_yaml(&format!("{sms}  rate_per_second: 0\n"), &[]).unwrap_err();
        assert!(e.contains("sms.rate_per_second"), "{e}");
        let e = load_yaml("sms:\n  url: not a url\n", &[]).unwrap_err();
        assert!(e.contains("sms.url"), "{e}");
    }
}
