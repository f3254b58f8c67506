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
pub const VARIABLES: Variables = &[
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
    ("links", Some(&["acknowledge"])),
];

/// The variables of a template variable set: names and, for maps, their fields.
pub type Variables = &'static [(&'static str, Option<&'static [&'static str]>)];

/// The variables of the `overdue_digest` report. `issues` is a list of maps with fields
/// `id category_name unit_name department_name deadline_kind deadline_at overdue_by`.
pub const OVERDUE_DIGEST_VARIABLES: Variables = &[
    ("recipient", Some(&["id", "name"])),
    ("unit", Some(&["id", "name"])),
    ("issues", None),
    ("as_of", None),
];

/// The variables of the `scorecard` report. `rows` is a list of maps with fields `department
/// department_name assigned acknowledged_on_time resolved_on_time reopened rated
/// average_rating`.
pub const SCORECARD_VARIABLES: Variables = &[
    ("recipient", Some(&["id", "name"])),
    ("period", Some(&["from", "to"])),
    ("rows", None),
    ("as_of", None),
];

/// The variables of the `digest` email. `messages` is a list of maps with fields `subject body`.
pub const DIGEST_VARIABLES: Variables = &[("recipient", Some(&["id", "name"])), ("messages", None)];

/// Templates that are not messages of an issue: the jobs' reports and the digest. Their ids
/// are fixed, their variables their own; email is required in the default locale, SMS
/// optional (refused for `digest`, which merges emails).
pub const REPORT_KINDS: &[&str] = &["overdue_digest", "scorecard", "digest"];

/// The variables template `id` may use.
pub fn variables(id: &str) -> Variables {
    match id {
        "overdue_digest" => OVERDUE_DIGEST_VARIABLES,
        "scorecard" => SCORECARD_VARIABLES,
        "digest" => DIGEST_VARIABLES,
        _ => VARIABLES,
    }
}

/// Sample variables of a report template, rendered at load so that a misspelt field of a list
/// item (which no static check sees) or a filter that fails on real data is reported then.
/// Lists have two items, one of them with an empty rating.
fn sample(id: &str) -> Option<serde_json::Value> {
    use crate::jobs::{
        Named, OverdueDigestVars, OverdueIssue, Period, ScorecardRow, ScorecardVars,
    };
    use crate::notify::{DigestItem, DigestVars};
    let who = Named {
        id: "p-1".into(),
        name: "Name".into(),
    };
    let v = match id {
        "overdue_digest" => {
            let issue = OverdueIssue {
                id: "I-1".into(),
                category_name: "Category".into(),
                unit_name: "Unit".into(),
                department_name: "Department".into(),
                deadline_kind: "acknowledge".into(),
                deadline_at: "2026-03-02 09:00".into(),
                overdue_by: "3h 20m".into(),
            };
            serde_json::to_value(OverdueDigestVars {
                recipient: who.clone(),
                unit: who,
                issues: vec![
                    issue.clone(),
                    OverdueIssue {
                        deadline_kind: "resolve".into(),
                        ..issue
                    },
                ],
                as_of: "2026-03-02 08:00".into(),
            })
        }
        "scorecard" => {
            let row = ScorecardRow {
                department: "d-1".into(),
                department_name: "Department".into(),
                assigned: 10,
                acknowledged_on_time: 9,
                resolved_on_time: 8,
                reopened: 1,
                rated: 4,
                average_rating: Some(4.5),
                score: Some(crate::scoring::Score {
                    points: 63.0,
                    out_of: 80.0,
                    items: vec![crate::scoring::Item {
                        figure: "resolved_on_time",
                        rate: Some(0.75),
                        weight: 60.0,
                        points: Some(45.0),
                    }],
                }),
            };
            serde_json::to_value(ScorecardVars {
                recipient: who,
                period: Period {
                    from: "2026-02-23 09:00".into(),
                    to: "2026-03-02 09:00".into(),
                },
                rows: vec![
                    row.clone(),
                    ScorecardRow {
                        rated: 0,
                        average_rating: None,
                        score: None,
                        ..row
                    },
                ],
                as_of: "2026-03-02 09:00".into(),
            })
        }
        "digest" => {
            let m = DigestItem {
                subject: "Subject".into(),
                body: "Body".into(),
            };
            serde_json::to_value(DigestVars {
                recipient: who,
                messages: vec![m.clone(), m],
            })
        }
        _ => return None,
    };
    v.ok()
}

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
        // HTML parts escape what they insert: descriptions and reasons come from reporters.
        env.set_auto_escape_callback(|name| {
            if name.ends_with("/html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
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
                let report = REPORT_KINDS.contains(&id.as_str());
                if id == "digest"
                    && channels.contains(&Channel::Sms)
                    && let Some(f) = file
                {
                    diags.push(f.at_key(
                        &format!("{base}.sms"),
                        "template `digest` merges emails: it has no sms variant",
                    ));
                }
                if locale == default_locale {
                    let required: &[Channel] = if report {
                        &[Channel::Email]
                    } else {
                        &[Channel::Email, Channel::Sms]
                    };
                    for &c in required {
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
                let vars = variables(&id);
                let sample = sample(&id);
                for (path, part, source) in parts {
                    let name = format!("{id}/{locale}/{part}");
                    match env.add_template_owned(name.clone(), source) {
                        Ok(()) => {
                            let t = env.get_template(&name).expect("just added");
                            let mut unknown = false;
                            for var in t.undeclared_variables(true) {
                                if let Some(problem) = check_variable(&var, vars)
                                    && let Some(f) = file
                                {
                                    unknown = true;
                                    diags.push(problem.at(f, &path, vars));
                                }
                            }
                            if let (Some(sample), false, Some(f)) = (&sample, unknown, file)
                                && let Err(e) = t.render(sample)
                            {
                                let detail = match e.detail() {
                                    Some(d) => format!("{}: {d}", e.kind()),
                                    None => e.kind().to_string(),
                                };
                                diags.push(
                                    at_template_line(
                                        f,
                                        &path,
                                        e.line(),
                                        format!("template fails on sample data: {detail}"),
                                    )
                                    .with_help(format!(
                                        "variables of `{id}`: {}; the fields of list items are in docs/rules.md",
                                        vars.iter().map(|v| v.0).collect::<Vec<_>>().join(", ")
                                    )),
                                );
                            }
                        }
                        Err(e) => {
                            if let Some(f) = file {
                                diags.push(at_template_line(
                                    f,
                                    &path,
                                    e.line(),
                                    format!(
                                        "template syntax error: {}",
                                        e.detail().unwrap_or("invalid template")
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

/// A diagnostic at line `line` (1-based) of the template written at `path`: that line of the file
/// when the template is a literal block (`body: |`), else the template's start, naming the line.
fn at_template_line(
    f: &SourceFile,
    path: &str,
    line: Option<usize>,
    message: String,
) -> Diagnostic {
    let start = f.at_path(path, "").location.expect("located");
    let key_line = f.at_key(path, "").location.expect("located").line;
    let literal = f
        .text()
        .lines()
        .nth(key_line.saturating_sub(1))
        .map(|l| {
            let l = l.split(" #").next().unwrap_or(l).trim_end();
            l.ends_with('|') || l.ends_with("|-") || l.ends_with("|+")
        })
        .unwrap_or(false);
    match line {
        Some(n) if literal && start.line > key_line => {
            f.at(start.line + n.saturating_sub(1), start.column, message)
        }
        Some(n) => f.at_path(path, format!("{message} (template line {n})")),
        None => f.at_path(path, message),
    }
}

struct VariableProblem {
    message: String,
    suggestion: Option<String>,
}

impl VariableProblem {
    fn at(self, file: &SourceFile, path: &str, vars: Variables) -> Diagnostic {
        let d = file.at_path(path, self.message);
        match self.suggestion {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d.with_help(format!(
                "known variables: {}",
                vars.iter().map(|v| v.0).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Checks one variable path as minijinja reports it (`issue.id`, `reason`).
fn check_variable(var: &str, vars: Variables) -> Option<VariableProblem> {
    let (root, field) = match var.split_once('.') {
        Some((r, f)) => (r, Some(f.split('.').next().unwrap_or(f))),
        None => (var, None),
    };
    let Some((_, fields)) = vars.iter().find(|(n, _)| *n == root) else {
        return Some(VariableProblem {
            message: format!("template uses unknown variable `{root}`"),
            suggestion: did_you_mean(root, vars.iter().map(|v| v.0)),
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
