//! The daemon's own configuration: YAML, every key overridable by an `ESCALADE_*` variable.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::photos::PhotoLimits;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to serve the HTTP API on.
    pub listen: String,
    /// The rule directory.
    pub rules: PathBuf,
    /// Where the daemon keeps its data: `$STATE_DIRECTORY` (systemd) or `./data`.
    pub state_dir: PathBuf,
    /// The SQLite database file; default `state_dir/escalade.sqlite`.
    pub database: Option<PathBuf>,
    /// Largest request body accepted, in bytes (for a multipart submission: its `issue` part).
    pub max_body_bytes: usize,
    /// Largest photo accepted, in bytes.
    pub max_photo_bytes: usize,
    /// Most photos accepted with one issue.
    pub max_photos: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:8080".into(),
            rules: PathBuf::from("examples/city"),
            state_dir: std::env::var_os("STATE_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("data")),
            database: None,
            max_body_bytes: 1 << 20,
            max_photo_bytes: PhotoLimits::default().max_photo_bytes,
            max_photos: PhotoLimits::default().max_photos,
        }
    }
}

impl Config {
    /// Reads `file` if given, then applies `ESCALADE_LISTEN`, `ESCALADE_RULES`,
    /// `ESCALADE_STATE_DIR`, `ESCALADE_DATABASE`, `ESCALADE_MAX_BODY_BYTES`,
    /// `ESCALADE_MAX_PHOTO_BYTES` and `ESCALADE_MAX_PHOTOS`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let mut c = match file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                serde_yaml::from_str(&text).map_err(|e| match e.location() {
                    Some(l) => format!("{}:{}:{}: {e}", f.display(), l.line(), l.column()),
                    None => format!("{}: {e}", f.display()),
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
        if let Some(v) = env("ESCALADE_STATE_DIR") {
            c.state_dir = v.into();
        }
        if let Some(v) = env("ESCALADE_DATABASE") {
            c.database = Some(v.into());
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
        Ok(c)
    }

    pub fn database_path(&self) -> PathBuf {
        self.database
            .clone()
            .unwrap_or_else(|| self.state_dir.join("escalade.sqlite"))
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
            c.database_path(),
            PathBuf::from("/var/lib/escalade/escalade.sqlite")
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
}
