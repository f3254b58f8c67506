//! Message templates (minijinja): compiled once per load, their variables checked against
//! what a message provides, rendered on demand.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::Environment;
use serde::Serialize;

use crate::diag::{Diagnostic, SourceFile, did_you_mean};
use crate::spec::{Channel, TemplateVariants};

/// The variables a template may use, and the fields of each. A field list of `None` means the
/// variable is a plain value (a string or a list).
pub const VARIABLES: &[(&str, Option<&[&str]>)] = &[
    (
        "issue",
        Some(&[
            "id",
            "category",
            "category_name",
            "unit",
            "unit_name",
            "description",
            "priority",
            "tier",
            "tier_name",
            "state",
            "reported_at",
            "address",
        ]),
    ),
    ("department", Some(&["id", "name"])),
    ("departments", None),
    ("deadline", Some(&["kind", "at"])),
    ("recipient", Some(&["id", "name"])),
    ("meeting", Some(&["id", "name", "at"])),
    ("step", Some(&["trigger", "occurrence"])),
    ("reason", None),
];

/// The message kinds and the template each uses unless an action names another.
pub const KINDS: &[&str] = &[
    "assigned",
    "reminder",
    "overdue",
    "escalated",
    "supervision",
    "meeting",
    "resolved",
    "reopened",
    "triage",
];

/// What a rendered message says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub subject: Option<String>,
    pub body: String,
    pub html: Option<String>,
}

/// All templates of a rule set. Names inside the environment are `id/locale/channel/part`.
pub struct Templates {
    env: Environment<'static>,
    /// id -> locales that define it -> channels defined there.
    ids: BTreeMap<Arc<str>, rustc_hash::FxHashMap<String, Vec<Channel>>>,
    default_locale: Arc<str>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl Templates {
    /// Compiles every template and checks its variables; `path` is the section's path in the
    /// file for diagnostics.
    pub fn compile(
        file: Option<&SourceFile>,
        spec: BTreeMap<String, BTreeMap<String, TemplateVariants>>,
        default_locale: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let mut ids = BTreeMap::new();
        for (id, locales) in spec {
            let mut by_locale = rustc_hash::FxHashMap::default();
            if !locales.contains_key(default_locale)
                && let Some(f) = file
            {
                diags.push(f.at_key(
                    &format!("templates.{id}"),
                    format!(
                        "template `{id}` has no variant in the default locale `{default_locale}`"
                    ),
                ));
            }
            for (locale, variants) in locales {
                let mut channels = Vec::new();
                let base = format!("templates.{id}.{locale}");
                let mut parts: Vec<(String, String, String)> = Vec::new();
                if let Some(e) = variants.email {
                    channels.push(Channel::Email);
                    parts.push((
                        format!("{base}.email.subject"),
                        "email/subject".into(),
                        e.subject,
                    ));
                    parts.push((format!("{base}.email.body"), "email/body".into(), e.body));
                    if let Some(h) = e.html {
                        parts.push((format!("{base}.email.html"), "email/html".into(), h));
                    }
                }
                if let Some(s) = variants.sms {
                    channels.push(Channel::Sms);
                    parts.push((format!("{base}.sms.body"), "sms/body".into(), s.body));
                }
                if locale == default_locale {
                    for c in [Channel::Email, Channel::Sms] {
                        if !channels.contains(&c)
                            && let Some(f) = file
                        {
                            diags.push(f.at_key(
                                &base,
                                format!(
                                    "template `{id}` has no {} variant in the default locale `{locale}`",
                                    c.as_str()
                                ),
                            ));
                        }
                    }
                }
                for (path, part, source) in parts {
                    let name = format!("{id}/{locale}/{part}");
                    match env.add_template_owned(name.clone(), source) {
                        Ok(()) => {
                            let t = env.get_template(&name).expect("just added");
                            for var in t.undeclared_variables(true) {
                                if let Some(problem) = check_variable(&var)
                                    && let Some(f) = file
                                {
                                    diags.push(problem.at(f, &path));
                                }
                            }
                        }
                        Err(e) => {
                            if let Some(f) = file {
                                let line = e.line().map(|l| format!(" (template line {l})"));
                                diags.push(f.at_path(
                                    &path,
                                    format!(
                                        "template syntax error: {}{}",
                                        e.detail().unwrap_or("invalid template"),
                                        line.unwrap_or_default()
                                    ),
                                ));
                            }
                        }
                    }
                }
                by_locale.insert(locale, channels);
            }
            ids.insert(Arc::from(id), by_locale);
        }
        Templates {
            env,
            ids,
            default_locale: default_locale.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.keys().map(|k| &**k)
    }

    /// The locale whose variant of `id` on `channel` is used for a person of `locale`: their
    /// own if it has that channel, else the default.
    pub fn locale_for(&self, id: &str, channel: Channel, locale: &Arc<str>) -> Arc<str> {
        match self.ids.get(id).and_then(|l| l.get(&**locale)) {
            Some(channels) if channels.contains(&channel) => locale.clone(),
            _ => self.default_locale.clone(),
        }
    }

    /// The shared name of template `id`, so messages do not copy it.
    pub fn interned(&self, id: &str) -> Option<Arc<str>> {
        self.ids.get_key_value(id).map(|(k, _)| k.clone())
    }

    /// Renders template `id` for a channel and locale (as chosen by `locale_for`).
    pub fn render(
        &self,
        id: &str,
        channel: Channel,
        locale: &str,
        vars: &impl Serialize,
    ) -> Result<Rendered, String> {
        let part = |p: &str| -> Result<Option<String>, String> {
            let name = format!("{id}/{locale}/{}/{p}", channel.as_str());
            match self.env.get_template(&name) {
                Ok(t) => t
                    .render(vars)
                    .map(Some)
                    .map_err(|e| format!("template `{name}`: {e:#}")),
                Err(_) => Ok(None),
            }
        };
        let body = part("body")?.ok_or_else(|| {
            format!(
                "template `{id}` has no {} variant in `{locale}`",
                channel.as_str()
            )
        })?;
        Ok(Rendered {
            subject: part("subject")?,
            body,
            html: part("html")?,
        })
    }
}

struct VariableProblem {
    message: String,
    suggestion: Option<String>,
}

impl VariableProblem {
    fn at(self, file: &SourceFile, path: &str) -> Diagnostic {
        let d = file.at_path(path, self.message);
        match self.suggestion {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d.with_help(format!(
                "known variables: {}",
                VARIABLES.iter().map(|v| v.0).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Checks one variable path as minijinja reports it (`issue.id`, `reason`).
fn check_variable(var: &str) -> Option<VariableProblem> {
    let (root, field) = match var.split_once('.') {
        Some((r, f)) => (r, Some(f.split('.').next().unwrap_or(f))),
        None => (var, None),
    };
    let Some((_, fields)) = VARIABLES.iter().find(|(n, _)| *n == root) else {
        return Some(VariableProblem {
            message: format!("template uses unknown variable `{root}`"),
            suggestion: did_you_mean(root, VARIABLES.iter().map(|v| v.0)),
        });
    };
    match (fields, field) {
        (Some(fields), Some(f)) if !fields.contains(&f) => Some(VariableProblem {
            message: format!("template uses unknown variable `{root}.{f}`"),
            suggestion: did_you_mean(f, fields.iter().copied()).map(|s| format!("{root}.{s}")),
        }),
        _ => None,
    }
}
