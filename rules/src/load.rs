//! Loading a rule directory: read, parse, resolve every reference, report every problem.
//!
//! The loader never stops at the first error: each section is checked as far as the others
//! allow, and `RuleSet::load` returns either a complete rule set or all its diagnostics.

mod case_flow;
mod scoring;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path};
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use sha2::{Digest, Sha256};

use crate::calendar::{self, Calendar, CalendarError, Span, WorkDuration};
use crate::diag::{Diagnostic, Diagnostics, SourceFile, from_serde};
use crate::jobs::{self, Job, Report, parse_cron};
use crate::model::{self, IdMap, Ix, Names, Org, OrgIndex, RuleSet};
use crate::notify::{self, Notifications, QuietHours, parse_time_of_day, parse_wall_duration};
use crate::script::Scripts;
use crate::spec::{self, Channel, Document, Priority, SECTIONS};
use crate::template::{KINDS, REPORT_KINDS, Templates};

/// Where a rule set's files come from: a directory, or files held in memory (a stored version,
/// by path relative to the directory it was loaded from). Both give the same rule set, with the
/// same version, for the same files.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Dir(&'a Path),
    Files(&'a BTreeMap<String, Arc<str>>),
}

impl Source<'_> {
    /// What diagnostics call it.
    fn describe(&self) -> String {
        match self {
            Source::Dir(d) => format!("rule directory {}", d.display()),
            Source::Files(_) => "the stored rule files".into(),
        }
    }

    /// The names of the files directly in `sub` (the top when empty) ending with one of `ext`.
    fn list(&self, sub: &str, ext: &[&str]) -> std::io::Result<Vec<String>> {
        let wanted = |n: &str| ext.iter().any(|e| n.ends_with(e));
        let mut names: Vec<String> = match self {
            Source::Dir(d) => std::fs::read_dir(d.join(sub))?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| wanted(n))
                .collect(),
            Source::Files(f) => {
                let prefix = if sub.is_empty() {
                    String::new()
                } else {
                    format!("{sub}/")
                };
                f.keys()
                    .filter_map(|k| k.strip_prefix(&prefix))
                    .filter(|n| !n.contains('/') && wanted(n))
                    .map(str::to_string)
                    .collect()
            }
        };
        names.sort();
        Ok(names)
    }

    fn read(&self, rel: &str) -> std::io::Result<Arc<str>> {
        match self {
            Source::Dir(d) => std::fs::read_to_string(d.join(rel)).map(Arc::from),
            Source::Files(f) => f.get(rel).cloned().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "not among the stored files")
            }),
        }
    }

    fn is_file(&self, rel: &str) -> bool {
        match self {
            Source::Dir(d) => d.join(rel).is_file(),
            Source::Files(f) => f.contains_key(rel),
        }
    }
}

impl RuleSet {
    /// Loads and validates the rule directory `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<RuleSet, Diagnostics> {
        RuleSet::load_from(Source::Dir(dir.as_ref()))
    }

    /// Loads and validates rule files held in memory, by their path in the rule directory:
    /// what `files` of a loaded rule set holds, so a stored version can be loaded again.
    pub fn load_files(files: &BTreeMap<String, Arc<str>>) -> Result<RuleSet, Diagnostics> {
        RuleSet::load_from(Source::Files(files))
    }

    /// Loads and validates a rule set from `source`.
    pub fn load_from(source: Source<'_>) -> Result<RuleSet, Diagnostics> {
        let mut l = Loader {
            dir: source,
            files: Vec::new(),
            diags: Vec::new(),
            hasher: Sha256::new(),
            broken: HashSet::new(),
            unparsed: false,
        };
        let result = l.run();
        match result {
            Some(rs) if l.diags.is_empty() => Ok(rs),
            _ => {
                if l.diags.is_empty() {
                    l.diags
                        .push(Diagnostic::new("the rule directory could not be loaded"));
                }
                Err(Diagnostics(l.diags))
            }
        }
    }
}

struct Loader<'a> {
    dir: Source<'a>,
    files: Vec<SourceFile>,
    diags: Vec<Diagnostic>,
    hasher: Sha256,
    /// `(kind, id)` of definitions that failed, and `(kind, "*")` for whole sections that did
    /// not parse: references to them are not reported again as unknown.
    broken: HashSet<(&'static str, String)>,
    /// A YAML file failed to parse, so a section may exist that we could not read.
    unparsed: bool,
}

/// Where a section was written: the file (an index into `Loader::files`) and its content.
struct Section<T> {
    file: usize,
    value: T,
}

#[derive(Default)]
struct Sections {
    settings: Option<Section<spec::Settings>>,
    tiers: Option<Section<Vec<spec::Tier>>>,
    units: Option<Section<Vec<spec::Unit>>>,
    unit_files: Option<Section<Vec<String>>>,
    people: Option<Section<Vec<spec::Person>>>,
    people_files: Option<Section<Vec<String>>>,
    departments: Option<Section<Vec<spec::Department>>>,
    calendars: Option<Section<Vec<spec::Calendar>>>,
    deadlines: Option<Section<BTreeMap<Priority, spec::DeadlineSpec>>>,
    categories: Option<Section<Vec<spec::Category>>>,
    routes: Option<Section<Vec<spec::Route>>>,
    ladders: Option<Section<Vec<spec::Ladder>>>,
    meetings: Option<Section<Vec<spec::Meeting>>>,
    templates: Option<Section<BTreeMap<String, BTreeMap<String, spec::TemplateVariants>>>>,
    notifications: Option<Section<spec::Notifications>>,
    jobs: Option<Section<Vec<spec::Job>>>,
    case_flow: Option<Section<spec::CaseFlow>>,
    scoring: Option<Section<spec::Scoring>>,
}

/// A reference to check: which file and path it was written at.
#[derive(Clone, Copy)]
struct At<'p> {
    file: usize,
    path: &'p str,
}

impl<'a> Loader<'a> {
    fn run(&mut self) -> Option<RuleSet> {
        let sections = self.read_documents()?;
        let org = Arc::new(self.org(&sections)?);
        let settings_section = sections.settings.as_ref();
        let Some(settings) = settings_section else {
            self.missing(
                Diagnostic::new("no `settings` section in any YAML file of the rule directory")
                    .with_help("add `settings: {locale: zh-CN, calendar: ..., triage: ...}`"),
            );
            return None;
        };
        let settings = self.settings(&org, settings);
        let scripts = self.scripts(&org, settings.as_ref().map(|s| &s.hook_limits));
        let templates =
            self.templates(&sections, settings_section.map(|s| s.value.locale.as_str()));
        let (Some(settings), Some(scripts)) = (settings, scripts) else {
            return None;
        };
        let mut policy = Policy {
            org: &org,
            scripts: &scripts,
            templates: &templates,
            settings: &settings,
            index: model::Index::default(),
        };
        let ladders = self.ladders(&sections, &mut policy);
        let meetings = self.meetings(&sections, &mut policy);
        let categories = self.categories(&sections, &mut policy);
        let routes = self.routes(&sections, &policy);
        let notifications = self.notifications(&sections, &policy);
        let jobs = self.jobs(&sections, &policy);
        let case_flow = self.case_flow(&sections, &policy);
        let scoring = self.scoring(&sections, &policy);
        let index = policy.index;
        for kind in KINDS {
            if !templates.contains(kind) {
                let at = sections.templates.as_ref().map(|s| s.file);
                let d = Diagnostic::new(format!(
                    "no template `{kind}`: every message kind needs one"
                ));
                self.diags.push(match at {
                    Some(f) => self.files[f].at_key("templates", d.message),
                    None => d,
                });
            }
        }
        if !self.diags.is_empty() {
            return None;
        }
        let version: Arc<str> = format!("{:x}", std::mem::take(&mut self.hasher).finalize()).into();
        let files = self
            .files
            .iter()
            .map(|f| (f.name.clone(), f.source.inner().clone()))
            .collect();
        Some(RuleSet {
            version,
            files: Arc::new(files),
            settings,
            org,
            categories,
            routes,
            ladders,
            meetings,
            templates,
            scripts,
            notifications,
            jobs,
            case_flow,
            scoring,
            index,
        })
    }

    /// Reads a file of the rule directory into `files` and the version hash.
    fn read(&mut self, rel: &str) -> Option<usize> {
        match self.dir.read(rel) {
            Ok(text) => {
                self.hasher.update(rel.as_bytes());
                self.hasher.update([0]);
                self.hasher.update(text.as_bytes());
                self.hasher.update([0]);
                self.files.push(SourceFile::new(rel, text));
                Some(self.files.len() - 1)
            }
            Err(e) => {
                let path = match self.dir {
                    Source::Dir(d) => d.join(rel).display().to_string(),
                    Source::Files(_) => rel.to_string(),
                };
                self.diags
                    .push(Diagnostic::new(format!("cannot read {path}: {e}")));
                None
            }
        }
    }

    /// A file named inside a YAML file must lie inside the rule directory.
    fn read_named(&mut self, rel: &str, at: At) -> Option<usize> {
        let p = Path::new(rel);
        if p.is_absolute()
            || p.components()
                .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
        {
            let d = self.files[at.file].at_path(
                at.path,
                format!("`{rel}` is outside the rule directory: name a file inside it"),
            );
            self.diags.push(d);
            return None;
        }
        if !self.dir.is_file(rel) {
            let d = self.files[at.file]
                .at_path(at.path, format!("no file `{rel}` in the rule directory"));
            self.diags.push(d);
            return None;
        }
        self.read(rel)
    }

    fn read_documents(&mut self) -> Option<Sections> {
        let names = match self.dir.list("", &[".yaml", ".yml"]) {
            Ok(n) => n,
            Err(e) => {
                self.diags.push(Diagnostic::new(format!(
                    "cannot read {}: {e}",
                    self.dir.describe()
                )));
                return None;
            }
        };
        if names.is_empty() {
            self.diags.push(Diagnostic::new(format!(
                "no YAML files in {}",
                self.dir.describe()
            )));
            return None;
        }
        let mut sections = Sections::default();
        let mut seen: HashMap<&'static str, usize> = HashMap::new();
        for name in names {
            let Some(f) = self.read(&name) else { continue };
            let parsed = match self.files[f].index_yaml() {
                Ok(()) => serde_yaml::from_str::<Document>(self.files[f].text())
                    .map_err(|e| from_serde(&self.files[f], &e)),
                Err(d) => Err(d),
            };
            let doc = match parsed {
                Ok(d) => d,
                Err(d) => {
                    self.diags.push(d);
                    self.unparsed = true;
                    // A syntax error stops the index where it is: a section written at the
                    // start of a line further on counts too.
                    let file = &self.files[f];
                    for (section, kind) in SECTION_KINDS {
                        let written = |l: &str| {
                            l.strip_prefix(section)
                                .is_some_and(|r| r.trim_start().starts_with(':'))
                        };
                        if file.has(section) || file.text().lines().any(written) {
                            self.broken.insert((kind, "*".into()));
                        }
                    }
                    continue;
                }
            };
            for s in SECTIONS {
                if !self.files[f].has(s) {
                    continue;
                }
                if let Some(&first) = seen.get(s) {
                    let (line, col) = {
                        let d = self.files[first].at_key(s, "");
                        let l = d.location.expect("located");
                        (l.line, l.column)
                    };
                    let d = self.files[f].at_key(
                        s,
                        format!(
                            "section `{s}` is already defined in {}:{line}:{col}",
                            self.files[first].name
                        ),
                    );
                    self.diags.push(d);
                } else {
                    seen.insert(s, f);
                }
            }
            macro_rules! take {
                ($($field:ident),*) => {$(
                    if let Some(v) = doc.$field {
                        if sections.$field.is_none() {
                            sections.$field = Some(Section { file: f, value: v });
                        }
                    }
                )*};
            }
            take!(
                settings,
                tiers,
                units,
                unit_files,
                people,
                people_files,
                departments,
                calendars,
                deadlines,
                categories,
                routes,
                ladders,
                meetings,
                templates,
                notifications,
                jobs,
                case_flow,
                scoring
            );
        }
        Some(sections)
    }

    /// A section missing. Not reported when a file failed to parse: it may be in there.
    fn missing(&mut self, d: Diagnostic) {
        if !self.unparsed {
            self.diags.push(d);
        }
    }

    fn err(&mut self, at: At, message: impl Into<String>) {
        let d = self.files[at.file].at_path(at.path, message);
        self.diags.push(d);
    }

    /// Resolves a reference by id, with "did you mean" on failure.
    fn resolve<V: Copy>(
        &mut self,
        map: &IdMap<V>,
        kind: &'static str,
        id: &str,
        at: At,
    ) -> Option<V> {
        if let Some(v) = map.get(id) {
            return Some(*v);
        }
        if self
            .broken
            .iter()
            .any(|(k, b)| *k == kind && (b == id || b == "*"))
        {
            return None;
        }
        let d = self.files[at.file]
            .at_path(at.path, format!("unknown {kind} `{id}`"))
            .suggest(id, map.keys().map(String::as_str));
        self.diags.push(d);
        None
    }

    /// Registers an id, reporting a duplicate at its second definition.
    fn define<V: Copy>(
        &mut self,
        map: &mut IdMap<V>,
        first: &mut HashMap<String, String>,
        kind: &str,
        id: &str,
        value: V,
        at: At,
    ) -> bool {
        if id.trim().is_empty() {
            self.err(at, format!("empty {kind} id"));
            return false;
        }
        if let Some(where_) = first.get(id) {
            let msg = format!("duplicate {kind} id `{id}` (first defined at {where_})");
            self.err(at, msg);
            return false;
        }
        let loc = self.files[at.file]
            .at_path(at.path, "")
            .location
            .expect("located");
        first.insert(
            id.to_string(),
            format!("{}:{}:{}", loc.file, loc.line, loc.column),
        );
        map.insert(id.to_string(), value);
        true
    }

    // ---- the organisation ----

    fn org(&mut self, s: &Sections) -> Option<Org> {
        let mut org = Org::default();
        let mut idx = OrgIndex::default();
        let default_locale = s
            .settings
            .as_ref()
            .map(|s| s.value.locale.clone())
            .unwrap_or_else(|| "zh-CN".into());

        // Tiers.
        match &s.tiers {
            None => self.missing(Diagnostic::new(
                "no `tiers` section: the ladder of tiers is required",
            )),
            Some(sec) => {
                let mut first = HashMap::new();
                for (i, t) in sec.value.iter().enumerate() {
                    let path = format!("tiers[{i}].id");
                    let at = At {
                        file: sec.file,
                        path: &path,
                    };
                    if org.tiers.len() >= u8::MAX as usize {
                        self.err(at, "too many tiers (255 at most)");
                        break;
                    }
                    if self.define(
                        &mut idx.tiers,
                        &mut first,
                        "tier",
                        &t.id,
                        org.tiers.len() as u8,
                        at,
                    ) {
                        org.tiers.push(model::Tier {
                            id: t.id.clone(),
                            names: Names::new(&t.names, &t.id),
                        });
                    }
                }
            }
        }

        // People, from YAML then CSV files.
        let mut people: Vec<(spec::Person, usize, String)> = Vec::new();
        if let Some(sec) = &s.people {
            for (i, p) in sec.value.iter().enumerate() {
                people.push((
                    spec::Person {
                        id: p.id.clone(),
                        name: p.name.clone(),
                        phone: p.phone.clone(),
                        email: p.email.clone(),
                        locale: p.locale.clone(),
                        channels: p.channels.clone(),
                    },
                    sec.file,
                    format!("people[{i}]"),
                ));
            }
        }
        if let Some(sec) = &s.people_files {
            for (i, name) in sec.value.iter().enumerate() {
                let path = format!("people_files[{i}]");
                let Some(f) = self.read_named(
                    name,
                    At {
                        file: sec.file,
                        path: &path,
                    },
                ) else {
                    continue;
                };
                for (rec, line) in
                    self.csv(f, &["id", "name", "phone", "email", "locale", "channels"])
                {
                    let mut channels = Vec::new();
                    for c in rec[5].split(';').map(str::trim).filter(|c| !c.is_empty()) {
                        match c {
                            "email" => channels.push(Channel::Email),
                            "sms" => channels.push(Channel::Sms),
                            other => {
                                let d = self.files[f].at(
                                    line,
                                    csv_column(&rec, 5),
                                    format!("unknown channel `{other}`: expected `email` or `sms`"),
                                );
                                self.diags.push(d);
                            }
                        }
                    }
                    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
                    people.push((
                        spec::Person {
                            id: rec[0].clone(),
                            name: rec[1].clone(),
                            phone: opt(&rec[2]),
                            email: opt(&rec[3]),
                            locale: opt(&rec[4]),
                            channels: (!channels.is_empty()).then_some(channels),
                        },
                        f,
                        format!("@{line}"),
                    ));
                }
            }
        }
        let mut first = HashMap::new();
        for (p, file, path) in people {
            let csv_line = path.strip_prefix('@').and_then(|l| l.parse::<usize>().ok());
            let id_path = format!("{path}.id");
            let at = At {
                file,
                path: &id_path,
            };
            let ok = match csv_line {
                Some(line) => {
                    if let Some(prev) = first.get(&p.id) {
                        let d = self.files[file].at(
                            line,
                            1,
                            format!("duplicate person id `{}` (first defined at {prev})", p.id),
                        );
                        self.diags.push(d);
                        false
                    } else {
                        first.insert(p.id.clone(), format!("{}:{line}:1", self.files[file].name));
                        idx.people.insert(p.id.clone(), org.people.len() as Ix);
                        true
                    }
                }
                None => self.define(
                    &mut idx.people,
                    &mut first,
                    "person",
                    &p.id,
                    org.people.len() as Ix,
                    at,
                ),
            };
            if !ok {
                continue;
            }
            let channels = p.channels.clone().unwrap_or_else(|| vec![Channel::Email]);
            for c in &channels {
                let (missing, field) = match c {
                    Channel::Email => (p.email.is_none(), "email"),
                    Channel::Sms => (p.phone.is_none(), "phone"),
                };
                if missing {
                    let msg = format!(
                        "person `{}` uses channel {} but has no {field}",
                        p.id,
                        c.as_str()
                    );
                    match csv_line {
                        Some(line) => {
                            let d = self.files[file].at(line, 1, msg);
                            self.diags.push(d);
                        }
                        None => self.err(at, msg),
                    }
                }
            }
            org.people.push(model::Person {
                id: p.id.into(),
                name: p.name,
                phone: p.phone.map(Arc::from),
                email: p.email.map(Arc::from),
                locale: p.locale.unwrap_or_else(|| default_locale.clone()).into(),
                channels,
            });
        }

        self.units(s, &mut org, &mut idx);
        org.index = idx;
        self.calendars(s, &mut org);
        self.departments(s, &mut org);
        Some(org)
    }

    /// Rows of a CSV file with exactly the given header, with their 1-based line numbers.
    fn csv(&mut self, f: usize, header: &[&str]) -> Vec<(Vec<String>, usize)> {
        let mut rows = Vec::new();
        let text = self.files[f].text().to_string();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        match reader.headers() {
            Ok(h) if h.iter().eq(header.iter().copied()) => {}
            Ok(h) => {
                let d = self.files[f]
                    .at(
                        1,
                        1,
                        format!("CSV header is `{}`", h.iter().collect::<Vec<_>>().join(",")),
                    )
                    .with_help(format!("expected `{}`", header.join(",")));
                self.diags.push(d);
                return rows;
            }
            Err(e) => {
                let d = self.files[f].at(1, 1, format!("invalid CSV: {e}"));
                self.diags.push(d);
                return rows;
            }
        }
        for rec in reader.records() {
            match rec {
                Ok(r) => {
                    let line = r.position().map(|p| p.line() as usize).unwrap_or(1);
                    if r.len() != header.len() {
                        let d = self.files[f].at(
                            line,
                            1,
                            format!("{} fields where the header has {}", r.len(), header.len()),
                        );
                        self.diags.push(d);
                        continue;
                    }
                    rows.push((r.iter().map(str::to_string).collect(), line));
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line() as usize).unwrap_or(1);
                    let d = self.files[f].at(line, 1, format!("invalid CSV: {e}"));
                    self.diags.push(d);
                }
            }
        }
        rows
    }

    fn units(&mut self, s: &Sections, org: &mut Org, idx: &mut OrgIndex) {
        // (id, tier, parent, leader, names, file, where): `where` is a YAML path or a CSV line.
        struct Raw {
            id: String,
            tier: String,
            parent: Option<String>,
            leader: Option<String>,
            names: spec::Names,
            file: usize,
            place: Place,
        }
        enum Place {
            Yaml(usize),
            Csv(usize, Vec<String>),
        }
        let mut raws = Vec::new();
        if let Some(sec) = &s.units {
            for (i, u) in sec.value.iter().enumerate() {
                raws.push(Raw {
                    id: u.id.clone(),
                    tier: u.tier.clone(),
                    parent: u.parent.clone(),
                    leader: u.leader.clone(),
                    names: u.names.clone(),
                    file: sec.file,
                    place: Place::Yaml(i),
                });
            }
        }
        if let Some(sec) = &s.unit_files {
            for (i, name) in sec.value.iter().enumerate() {
                let path = format!("unit_files[{i}]");
                let Some(f) = self.read_named(
                    name,
                    At {
                        file: sec.file,
                        path: &path,
                    },
                ) else {
                    continue;
                };
                for (rec, line) in
                    self.csv(f, &["id", "tier", "parent", "leader", "name_zh", "name_en"])
                {
                    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
                    raws.push(Raw {
                        id: rec[0].clone(),
                        tier: rec[1].clone(),
                        parent: opt(&rec[2]),
                        leader: opt(&rec[3]),
                        names: spec::Names {
                            zh: opt(&rec[4]),
                            en: opt(&rec[5]),
                        },
                        file: f,
                        place: Place::Csv(line, rec),
                    });
                }
            }
        }
        if raws.is_empty() {
            self.diags.push(Diagnostic::new(
                "no units: `units` or `unit_files` must define the unit tree",
            ));
            return;
        }
        // A diagnostic at a field of a unit, wherever it was written.
        let at_field =
            |files: &[SourceFile], r: &Raw, field: &str, col: usize, msg: String| match &r.place {
                Place::Yaml(i) => files[r.file].at_path(&format!("units[{i}].{field}"), msg),
                Place::Csv(line, rec) => files[r.file].at(*line, csv_column(rec, col), msg),
            };
        let mut first: HashMap<String, String> = HashMap::new();
        let mut kept = Vec::with_capacity(raws.len());
        for r in raws {
            if let Some(prev) = first.get(&r.id) {
                let d = at_field(
                    &self.files,
                    &r,
                    "id",
                    0,
                    format!("duplicate unit id `{}` (first defined at {prev})", r.id),
                );
                self.diags.push(d);
                continue;
            }
            let l = at_field(&self.files, &r, "id", 0, String::new())
                .location
                .expect("located");
            first.insert(r.id.clone(), format!("{}:{}:{}", l.file, l.line, l.column));
            idx.units.insert(r.id.clone(), kept.len() as Ix);
            kept.push(r);
        }
        for r in &kept {
            let tier = match idx.tiers.get(&r.tier) {
                Some(&t) => t,
                None => {
                    let d = at_field(
                        &self.files,
                        r,
                        "tier",
                        1,
                        format!("unknown tier `{}`", r.tier),
                    )
                    .suggest(&r.tier, idx.tiers.keys().map(String::as_str));
                    self.diags.push(d);
                    0
                }
            };
            let parent = r.parent.as_ref().and_then(|p| match idx.units.get(p) {
                Some(&u) => Some(u),
                None => {
                    let d = at_field(
                        &self.files,
                        r,
                        "parent",
                        2,
                        format!("unknown parent unit `{p}`"),
                    )
                    .suggest(p, idx.units.keys().map(String::as_str));
                    self.diags.push(d);
                    None
                }
            });
            let leader = r.leader.as_ref().and_then(|p| match idx.people.get(p) {
                Some(&u) => Some(u),
                None => {
                    let d = at_field(&self.files, r, "leader", 3, format!("unknown person `{p}`"))
                        .suggest(p, idx.people.keys().map(String::as_str));
                    self.diags.push(d);
                    None
                }
            });
            org.units.push(model::Unit {
                id: r.id.clone(),
                tier,
                parent,
                leader,
                names: Names::new(&r.names, &r.id),
            });
        }
        // Cycles first: a unit whose chain of parents comes back to it. Then tiers: a parent
        // sits on a higher tier, which also keeps one unit per tier in each branch.
        let n = org.units.len();
        let mut state = vec![0u8; n]; // 0 unseen, 1 on the current walk, 2 done
        let mut in_cycle = vec![false; n];
        for start in 0..n {
            let mut walk = Vec::new();
            let mut u = Some(start);
            while let Some(x) = u {
                match state[x] {
                    2 => break,
                    1 => {
                        let pos = walk.iter().position(|&w| w == x).expect("on the walk");
                        let cycle: Vec<&str> = walk[pos..]
                            .iter()
                            .chain(std::iter::once(&x))
                            .map(|&w| org.units[w].id.as_str())
                            .collect();
                        for &w in &walk[pos..] {
                            in_cycle[w] = true;
                        }
                        let d = at_field(
                            &self.files,
                            &kept[x],
                            "parent",
                            2,
                            format!("cycle in the unit tree: {}", cycle.join(" -> ")),
                        );
                        self.diags.push(d);
                        break;
                    }
                    _ => {
                        state[x] = 1;
                        walk.push(x);
                        u = org.units[x].parent.map(|p| p as usize);
                    }
                }
            }
            for w in walk {
                state[w] = 2;
            }
        }
        for (i, u) in org.units.iter().enumerate() {
            if in_cycle[i] {
                continue;
            }
            if let Some(p) = u.parent {
                let pu = &org.units[p as usize];
                if pu.tier <= u.tier
                    && idx.tiers.contains_key(&kept[i].tier)
                    && idx.tiers.contains_key(&kept[p as usize].tier)
                {
                    let d = at_field(
                        &self.files,
                        &kept[i],
                        "parent",
                        2,
                        format!(
                            "parent `{}` is a {} but `{}` is a {}: a parent must sit on a higher tier",
                            pu.id,
                            org.tiers[pu.tier as usize].id,
                            u.id,
                            org.tiers[u.tier as usize].id
                        ),
                    );
                    self.diags.push(d);
                }
            }
        }
    }

    fn calendars(&mut self, s: &Sections, org: &mut Org) {
        let Some(sec) = &s.calendars else {
            self.missing(Diagnostic::new(
                "no `calendars` section: at least one calendar is required",
            ));
            return;
        };
        let mut first = HashMap::new();
        for (i, c) in sec.value.iter().enumerate() {
            let file = sec.file;
            let p = |f: &str| format!("calendars[{i}].{f}");
            let id_path = p("id");
            if !self.define(
                &mut org.index.calendars,
                &mut first,
                "calendar",
                &c.id,
                org.calendars.len() as Ix,
                At {
                    file,
                    path: &id_path,
                },
            ) {
                continue;
            }
            let tz: Option<chrono_tz::Tz> = match c.timezone.parse() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    self.err(
                        At {
                            file,
                            path: &p("timezone"),
                        },
                        format!(
                            "unknown time zone `{}`: use an IANA name such as Asia/Shanghai",
                            c.timezone
                        ),
                    );
                    None
                }
            };
            let mut days = Vec::new();
            for (j, d) in c.working_days.iter().enumerate() {
                match calendar::parse_weekday(d) {
                    Ok(w) => days.push(w),
                    Err(e) => self.err(
                        At {
                            file,
                            path: &p(&format!("working_days[{j}]")),
                        },
                        e,
                    ),
                }
            }
            let mut spans: Vec<Span> = Vec::new();
            for (j, h) in c.hours.iter().enumerate() {
                match Span::parse(h) {
                    Ok(sp) => spans.push(sp),
                    Err(e) => self.err(
                        At {
                            file,
                            path: &p(&format!("hours[{j}]")),
                        },
                        e,
                    ),
                }
            }
            // Holidays and make-up days, inline and from files, each with where it was written.
            let mut holidays: Vec<(NaiveDate, usize, String)> = Vec::new();
            let mut makeups: Vec<(NaiveDate, usize, String)> = Vec::new();
            let add = |holidays: &mut Vec<_>,
                       makeups: &mut Vec<_>,
                       diags: &mut Vec<Diagnostic>,
                       files: &[SourceFile],
                       f: usize,
                       base: &str,
                       hs: &[spec::Holiday],
                       ms: &[spec::MakeupDay]| {
                for (k, h) in hs.iter().enumerate() {
                    let path = format!("{base}holidays[{k}]");
                    let to = h.to.unwrap_or(h.from);
                    if to < h.from || (to - h.from).num_days() > 366 {
                        diags.push(files[f].at_path(
                            &format!("{path}.to"),
                            format!(
                                "holiday ends {to}, before it starts {} or more than a year later",
                                h.from
                            ),
                        ));
                        continue;
                    }
                    let mut d = h.from;
                    while d <= to {
                        holidays.push((d, f, path.clone()));
                        d = d.succ_opt().expect("date in range");
                    }
                }
                for (k, m) in ms.iter().enumerate() {
                    makeups.push((m.date, f, format!("{base}makeup_days[{k}].date")));
                }
            };
            add(
                &mut holidays,
                &mut makeups,
                &mut self.diags,
                &self.files,
                file,
                &p(""),
                &c.holidays,
                &c.makeup_days,
            );
            for (j, name) in c.holiday_files.iter().enumerate() {
                let path = p(&format!("holiday_files[{j}]"));
                let Some(f) = self.read_named(name, At { file, path: &path }) else {
                    continue;
                };
                if let Err(d) = self.files[f].index_yaml() {
                    self.diags.push(d);
                    continue;
                }
                match serde_yaml::from_str::<spec::HolidayFile>(self.files[f].text()) {
                    Ok(hf) => add(
                        &mut holidays,
                        &mut makeups,
                        &mut self.diags,
                        &self.files,
                        f,
                        "",
                        &hf.holidays,
                        &hf.makeup_days,
                    ),
                    Err(e) => {
                        let d = from_serde(&self.files[f], &e);
                        self.diags.push(d);
                    }
                }
            }
            let parsed =
                tz.filter(|_| days.len() == c.working_days.len() && spans.len() == c.hours.len());
            let Some(tz) = parsed else {
                org.index.calendars.remove(&c.id);
                self.broken.insert(("calendar", c.id.clone()));
                continue;
            };
            match Calendar::new(
                c.id.clone(),
                tz,
                &days,
                spans,
                holidays.iter().map(|h| h.0),
                makeups.iter().map(|m| m.0),
            ) {
                Ok(cal) => org.calendars.push(cal),
                Err(e) => {
                    let d = match &e {
                        CalendarError::Overlap { b_index, .. } => self.files[file]
                            .at_path(&p(&format!("hours[{b_index}]")), e.to_string()),
                        CalendarError::HolidayAndMakeup { date } => {
                            let (_, f, path) = makeups
                                .iter()
                                .find(|m| m.0 == *date)
                                .expect("a make-up day");
                            self.files[*f].at_path(path, e.to_string())
                        }
                        _ => {
                            self.files[file].at_path(&id_path, format!("calendar `{}`: {e}", c.id))
                        }
                    };
                    self.diags.push(d);
                    org.index.calendars.remove(&c.id);
                    self.broken.insert(("calendar", c.id.clone()));
                }
            }
        }
    }

    fn departments(&mut self, s: &Sections, org: &mut Org) {
        let Some(sec) = &s.departments else {
            self.missing(Diagnostic::new("no `departments` section"));
            return;
        };
        let default_cal = s.settings.as_ref().map(|s| s.value.calendar.clone());
        let mut first = HashMap::new();
        let mut ids = IdMap::default();
        for (i, d) in sec.value.iter().enumerate() {
            let path = format!("departments[{i}].id");
            self.define(
                &mut ids,
                &mut first,
                "department",
                &d.id,
                i as Ix,
                At {
                    file: sec.file,
                    path: &path,
                },
            );
        }
        let mut index = IdMap::default();
        for (i, d) in sec.value.iter().enumerate() {
            if ids.get(&d.id) != Some(&(i as Ix)) {
                continue;
            }
            let file = sec.file;
            let p = |f: &str| format!("departments[{i}].{f}");
            let mut contacts = Vec::new();
            for (j, c) in d.contacts.iter().enumerate() {
                let path = p(&format!("contacts[{j}]"));
                if let Some(x) =
                    self.resolve(&org.index.people, "person", c, At { file, path: &path })
                {
                    contacts.push(x);
                }
            }
            let cal_path = p("calendar");
            let calendar = match (&d.calendar, &default_cal) {
                (Some(c), _) => self.resolve(
                    &org.index.calendars,
                    "calendar",
                    c,
                    At {
                        file,
                        path: &cal_path,
                    },
                ),
                (None, Some(c)) => org.index.calendars.get(c).copied(),
                (None, None) => None,
            };
            let rota = d.rota.as_ref().and_then(|r| {
                let tz = calendar.map(|c| org.calendars[c as usize].tz())?;
                let start = match NaiveDateTime::parse_from_str(&r.start, "%Y-%m-%dT%H:%M") {
                    Ok(t) => tz.from_local_datetime(&t).earliest(),
                    Err(_) => None,
                };
                let every = r
                    .every
                    .strip_suffix('h')
                    .and_then(|h| h.parse::<i64>().ok())
                    .filter(|&h| h > 0);
                let mut people = Vec::new();
                for (j, pid) in r.people.iter().enumerate() {
                    let path = p(&format!("rota.people[{j}]"));
                    if let Some(x) = self.resolve(&org.index.people, "person", pid, At { file, path: &path }) {
                        people.push(x);
                    }
                }
                if start.is_none() {
                    self.err(At { file, path: &p("rota.start") }, format!("invalid rota start `{}`: expected a local time such as 2026-01-05T08:00", r.start));
                }
                if every.is_none() {
                    self.err(At { file, path: &p("rota.every") }, format!("invalid rota period `{}`: expected whole hours such as 24h", r.every));
                }
                if r.people.is_empty() {
                    self.err(At { file, path: &p("rota.people") }, "a rota needs at least one person");
                }
                Some(model::Rota {
                    start: start?.with_timezone(&chrono::Utc),
                    every_secs: every? * 3600,
                    people: (!people.is_empty()).then_some(people)?,
                })
            });
            if d.contacts.is_empty() && d.rota.is_none() {
                self.err(
                    At {
                        file,
                        path: &p("id"),
                    },
                    format!(
                        "department `{}` has neither contacts nor a rota: nobody would be told",
                        d.id
                    ),
                );
            }
            let Some(calendar) = calendar else {
                self.broken.insert(("department", d.id.clone()));
                continue;
            };
            index.insert(d.id.clone(), org.departments.len() as Ix);
            org.departments.push(model::Department {
                id: d.id.clone(),
                key: d.id.as_str().into(),
                names: Names::new(&d.names, &d.id),
                contacts,
                calendar,
                rota,
            });
        }
        org.index.departments = index;
    }

    fn settings(&mut self, org: &Org, sec: &Section<spec::Settings>) -> Option<model::Settings> {
        let s = &sec.value;
        let file = sec.file;
        let calendar = self.resolve(
            &org.index.calendars,
            "calendar",
            &s.calendar,
            At {
                file,
                path: "settings.calendar",
            },
        );
        let triage = self.resolve(
            &org.index.departments,
            "department",
            &s.triage,
            At {
                file,
                path: "settings.triage",
            },
        );
        if s.hook_limits.max_operations == 0 || s.hook_limits.timeout_ms == 0 {
            self.err(
                At {
                    file,
                    path: "settings.hook_limits",
                },
                "hook limits must be positive",
            );
        }
        Some(model::Settings {
            locale: s.locale.clone(),
            calendar: calendar?,
            triage: triage?,
            hook_limits: s.hook_limits.clone(),
        })
    }

    fn scripts(&mut self, org: &Arc<Org>, limits: Option<&spec::HookLimits>) -> Option<Scripts> {
        let names = self.dir.list("scripts", &[".rhai"]).unwrap_or_default();
        let first = self.files.len();
        for n in &names {
            self.read(&format!("scripts/{n}"));
        }
        let files: Vec<SourceFile> = self.files.drain(first..).collect();
        let default_limits = spec::HookLimits::default();
        let result = Scripts::compile(&files, org, limits.unwrap_or(&default_limits));
        self.files.extend(files);
        match result {
            Ok(s) => Some(s),
            Err(d) => {
                self.diags.extend(d);
                None
            }
        }
    }

    fn templates(&mut self, s: &Sections, locale: Option<&str>) -> Templates {
        let locale = locale.unwrap_or("zh-CN");
        match &s.templates {
            Some(sec) => {
                let mut diags = Vec::new();
                let spec = serde_yaml::from_str::<Document>(self.files[sec.file].text())
                    .ok()
                    .and_then(|d| d.templates)
                    .unwrap_or_default();
                let t = Templates::compile(Some(&self.files[sec.file]), spec, locale, &mut diags);
                self.diags.extend(diags);
                t
            }
            None => {
                self.missing(Diagnostic::new("no `templates` section"));
                Templates::compile(None, BTreeMap::new(), locale, &mut Vec::new())
            }
        }
    }

    // ---- policies ----

    fn hook(&mut self, p: &Policy, name: &str, at: At) -> bool {
        match p.scripts.arity(name) {
            Some(1) => true,
            Some(n) => {
                self.err(
                    at,
                    format!(
                        "script function `{name}` takes {n} parameters; a hook takes one, `issue`"
                    ),
                );
                false
            }
            None => {
                let d = self.files[at.file]
                    .at_path(at.path, format!("unknown script function `{name}`"))
                    .suggest(name, p.scripts.functions().map(|f| f.0));
                self.diags.push(d);
                false
            }
        }
    }

    fn template(&mut self, p: &Policy, name: &str, at: At) {
        if REPORT_KINDS.contains(&name) {
            self.err(
                at,
                format!(
                    "template `{name}` is a report template, with variables of its own: a message of an issue needs a message template"
                ),
            );
        } else if !p.templates.contains(name) {
            let d = self.files[at.file]
                .at_path(at.path, format!("unknown template `{name}`"))
                .suggest(name, p.templates.ids());
            self.diags.push(d);
        }
    }

    fn tier(&mut self, p: &Policy, id: &str, at: At) -> Option<u8> {
        self.resolve(&p.org.index.tiers, "tier", id, at)
    }

    fn target(&mut self, p: &Policy, t: &spec::Target, at: At) -> Option<model::Target> {
        Some(match t {
            spec::Target::Leader => model::Target::Leader,
            spec::Target::Departments => model::Target::Departments,
            spec::Target::Reporter => model::Target::Reporter,
            spec::Target::Tier(x) => model::Target::Tier(self.tier(p, x, at)?),
            spec::Target::Department(x) => model::Target::Department(self.resolve(
                &p.org.index.departments,
                "department",
                x,
                at,
            )?),
            spec::Target::Person(x) => {
                model::Target::Person(self.resolve(&p.org.index.people, "person", x, at)?)
            }
        })
    }

    fn ladders(&mut self, s: &Sections, p: &mut Policy) -> Vec<model::Ladder> {
        let mut out = Vec::new();
        let Some(sec) = &s.ladders else {
            self.missing(Diagnostic::new(
                "no `ladders` section: at least one escalation ladder is required",
            ));
            return out;
        };
        let file = sec.file;
        let mut first = HashMap::new();
        for (i, l) in sec.value.iter().enumerate() {
            let id_path = format!("ladders[{i}].id");
            if !self.define(
                &mut p.index.ladders,
                &mut first,
                "ladder",
                &l.id,
                out.len() as Ix,
                At {
                    file,
                    path: &id_path,
                },
            ) {
                continue;
            }
            out.push(model::Ladder {
                id: l.id.clone(),
                steps: Vec::new(),
            });
        }
        // Steps refer to meetings, which refer to nothing in ladders: resolve meetings' ids first.
        let meeting_ids: IdMap<Ix> = s
            .meetings
            .as_ref()
            .map(|m| {
                m.value
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m.id.clone(), i as Ix))
                    .collect()
            })
            .unwrap_or_default();
        for (i, l) in sec.value.iter().enumerate() {
            let Some(&li) = p.index.ladders.get(&l.id) else {
                continue;
            };
            if first_index(&sec.value, &l.id, |x| &x.id) != i {
                continue;
            }
            let mut steps = Vec::new();
            for (j, st) in l.steps.iter().enumerate() {
                let mut actions = Vec::new();
                for (k, a) in st.actions.iter().enumerate() {
                    let path = format!("ladders[{i}].steps[{j}].actions[{k}]");
                    let at = At { file, path: &path };
                    let count = [
                        a.remind.is_some(),
                        a.notify.is_some(),
                        a.raise.is_some(),
                        a.extend.is_some(),
                        a.supervise.is_some(),
                        a.convene.is_some(),
                    ]
                    .iter()
                    .filter(|x| **x)
                    .count();
                    if count != 1 {
                        self.err(at, "an action has exactly one of `remind`, `notify`, `raise`, `extend`, `supervise`, `convene`");
                        continue;
                    }
                    let tpl_path = format!("{path}.template");
                    let template = |default: &str, this: &mut Self| -> String {
                        let t = a.template.clone().unwrap_or_else(|| default.to_string());
                        this.template(
                            p,
                            &t,
                            At {
                                file,
                                path: &tpl_path,
                            },
                        );
                        t
                    };
                    if a.template.is_some()
                        && (a.raise.is_some() || a.extend.is_some() || a.convene.is_some())
                    {
                        self.err(At { file, path: &tpl_path }, "only `remind`, `notify` and `supervise` send messages; this action takes no template");
                    }
                    let action = if let Some(r) = &a.remind {
                        if r != "departments" {
                            self.err(
                                At {
                                    file,
                                    path: &format!("{path}.remind"),
                                },
                                format!("unknown reminder target `{r}`: expected `departments`"),
                            );
                            continue;
                        }
                        model::Action::Remind {
                            template: template("overdue", self),
                        }
                    } else if let Some(t) = &a.notify {
                        let Some(target) = self.target(
                            p,
                            t,
                            At {
                                file,
                                path: &format!("{path}.notify"),
                            },
                        ) else {
                            continue;
                        };
                        model::Action::Notify {
                            target,
                            template: template("escalated", self),
                        }
                    } else if let Some(r) = &a.raise {
                        if r == "next" {
                            model::Action::Raise(model::Raise::Next)
                        } else {
                            let Some(t) = self.tier(
                                p,
                                r,
                                At {
                                    file,
                                    path: &format!("{path}.raise"),
                                },
                            ) else {
                                continue;
                            };
                            model::Action::Raise(model::Raise::To(t))
                        }
                    } else if let Some(d) = a.extend {
                        if d.is_zero() {
                            self.err(
                                At {
                                    file,
                                    path: &format!("{path}.extend"),
                                },
                                "an extension must be longer than zero",
                            );
                        }
                        model::Action::Extend(d)
                    } else if let Some(t) = &a.supervise {
                        let Some(tier) = self.tier(
                            p,
                            t,
                            At {
                                file,
                                path: &format!("{path}.supervise"),
                            },
                        ) else {
                            continue;
                        };
                        model::Action::Supervise {
                            tier,
                            template: template("supervision", self),
                        }
                    } else {
                        let m = a.convene.as_ref().expect("counted above");
                        let Some(mi) = self.resolve(
                            &meeting_ids,
                            "meeting",
                            m,
                            At {
                                file,
                                path: &format!("{path}.convene"),
                            },
                        ) else {
                            continue;
                        };
                        model::Action::Convene(mi)
                    };
                    actions.push(action);
                }
                if st.actions.is_empty() {
                    self.err(
                        At {
                            file,
                            path: &format!("ladders[{i}].steps[{j}].actions"),
                        },
                        "a step needs at least one action",
                    );
                }
                steps.push(model::Step {
                    on: st.on,
                    actions,
                    repeat: st.repeat,
                });
            }
            out[li as usize].steps = steps;
        }
        out
    }

    fn meetings(&mut self, s: &Sections, p: &mut Policy) -> Vec<model::Meeting> {
        let mut out = Vec::new();
        let Some(sec) = &s.meetings else { return out };
        let file = sec.file;
        let mut first = HashMap::new();
        for (i, m) in sec.value.iter().enumerate() {
            let pth = |f: &str| format!("meetings[{i}].{f}");
            if !self.define(
                &mut p.index.meetings,
                &mut first,
                "meeting",
                &m.id,
                out.len() as Ix,
                At {
                    file,
                    path: &pth("id"),
                },
            ) {
                continue;
            }
            // A meeting with no trigger is convened only by a ladder's `convene` action.
            let w = &m.when;
            if let Some(h) = &w.hook {
                self.hook(
                    p,
                    h,
                    At {
                        file,
                        path: &pth("when.hook"),
                    },
                );
            }
            let calendar = match &m.schedule.calendar {
                Some(c) => self.resolve(
                    &p.org.index.calendars,
                    "calendar",
                    c,
                    At {
                        file,
                        path: &pth("schedule.calendar"),
                    },
                ),
                None => Some(p.settings.calendar),
            };
            let at = parse_clock(&m.schedule.at);
            if at.is_none() {
                self.err(
                    At {
                        file,
                        path: &pth("schedule.at"),
                    },
                    format!("invalid time `{}`: expected HH:MM", m.schedule.at),
                );
            }
            let mut invite = Vec::new();
            for (j, t) in m.invite.iter().enumerate() {
                if let Some(t) = self.target(
                    p,
                    t,
                    At {
                        file,
                        path: &pth(&format!("invite[{j}]")),
                    },
                ) {
                    invite.push(t);
                }
            }
            if m.invite.is_empty() {
                self.err(
                    At {
                        file,
                        path: &pth("invite"),
                    },
                    "a meeting needs someone to invite",
                );
            }
            let template = m.template.clone().unwrap_or_else(|| "meeting".into());
            self.template(
                p,
                &template,
                At {
                    file,
                    path: &pth("template"),
                },
            );
            out.push(model::Meeting {
                id: m.id.clone(),
                names: Names::new(&m.names, &m.id),
                departments_at_least: w.departments_at_least,
                escalations_at_least: w.escalations_at_least,
                rejections_at_least: w.rejections_at_least,
                hook: w.hook.clone(),
                calendar: calendar.unwrap_or(0),
                working_days_later: m.schedule.working_days_later,
                at: at.unwrap_or(0),
                invite,
                template,
            });
        }
        out
    }

    // ---- notifications and jobs ----

    /// A located `HH:MM` time of day.
    fn time_of_day(&mut self, s: &str, at: At) -> Option<chrono::NaiveTime> {
        let t = parse_time_of_day(s);
        if t.is_none() {
            self.err(
                at,
                format!("invalid time `{s}`: expected HH:MM between 00:00 and 23:59"),
            );
        }
        t
    }

    fn notifications(&mut self, s: &Sections, p: &Policy) -> Notifications {
        let mut out = Notifications::default();
        let Some(sec) = &s.notifications else {
            return out;
        };
        let file = sec.file;
        let n = &sec.value;
        if let Some(q) = &n.quiet_hours {
            let base = "notifications.quiet_hours";
            let from = self.time_of_day(
                &q.from,
                At {
                    file,
                    path: &format!("{base}.from"),
                },
            );
            let to = self.time_of_day(
                &q.to,
                At {
                    file,
                    path: &format!("{base}.to"),
                },
            );
            let calendar = match &q.calendar {
                Some(c) => self.resolve(
                    &p.org.index.calendars,
                    "calendar",
                    c,
                    At {
                        file,
                        path: &format!("{base}.calendar"),
                    },
                ),
                None => Some(p.settings.calendar),
            };
            let channels = q.channels.clone().unwrap_or_else(|| vec![Channel::Sms]);
            let mut ok = true;
            if channels.is_empty() {
                ok = false;
                self.err(
                    At {
                        file,
                        path: &format!("{base}.channels"),
                    },
                    "quiet hours that hold no channel do nothing: name `sms`, `email` or both, or leave `channels` out for `[sms]`",
                );
            }
            if let (Some(f), Some(t)) = (from, to)
                && f == t
            {
                ok = false;
                self.err(
                    At {
                        file,
                        path: &format!("{base}.to"),
                    },
                    format!(
                        "quiet hours from {} to {} are empty: `from` and `to` must differ",
                        q.from, q.to
                    ),
                );
            }
            if let (Some(from), Some(to), Some(cal), true) = (from, to, calendar, ok) {
                out.quiet_hours = Some(QuietHours {
                    tz: p.org.calendars[cal as usize].tz(),
                    from,
                    to,
                    channels,
                });
            }
        }
        if let Some(d) = &n.digest {
            let base = "notifications.digest";
            let at = |f: &str| format!("{base}.{f}");
            let window = match parse_wall_duration(&d.window) {
                None => {
                    self.err(
                        At {
                            file,
                            path: &at("window"),
                        },
                        format!(
                            "invalid duration `{}`: expected a wall-clock duration such as 15m, 2h or 1d",
                            d.window
                        ),
                    );
                    None
                }
                Some(w) if w <= chrono::Duration::zero() => {
                    self.err(
                        At {
                            file,
                            path: &at("window"),
                        },
                        format!(
                            "a digest window must be longer than zero, not `{}`",
                            d.window
                        ),
                    );
                    None
                }
                Some(w) => Some(w),
            };
            let channels = d.channels.clone().unwrap_or_else(|| vec![Channel::Email]);
            let mut ok = window.is_some();
            if channels.contains(&Channel::Sms) || channels.is_empty() {
                ok = false;
                self.err(
                    At {
                        file,
                        path: &at("channels"),
                    },
                    "only email is merged into digests (the `digest` template is an email): write `channels: [email]` or leave it out",
                );
            }
            if !p.templates.contains("digest") && !self.broken.contains(&("template", "*".into())) {
                ok = false;
                let d = self.files[file]
                    .at_key(
                        base,
                        "no template `digest`: merging messages into a digest needs one",
                    )
                    .with_help(
                        "add `templates.digest` with an email variant in the default locale",
                    );
                self.diags.push(d);
            }
            if let (Some(window), true) = (window, ok) {
                out.digest = Some(notify::Digest { window, channels });
            }
        }
        if let Some(m) = n.sms.as_ref().and_then(|s| s.max_segments) {
            if (1..=255).contains(&m) {
                out.sms_max_segments = m;
            } else {
                self.err(
                    At {
                        file,
                        path: "notifications.sms.max_segments",
                    },
                    format!("sms.max_segments is {m}: it must be between 1 and 255"),
                );
            }
        }
        out
    }

    fn jobs(&mut self, s: &Sections, p: &Policy) -> Vec<Job> {
        let mut out = Vec::new();
        let Some(sec) = &s.jobs else { return out };
        let file = sec.file;
        let mut ids: IdMap<Ix> = IdMap::default();
        let mut first = HashMap::new();
        let mut reported_missing: HashSet<&'static str> = HashSet::new();
        for (i, j) in sec.value.iter().enumerate() {
            let pth = |f: &str| format!("jobs[{i}].{f}");
            if !self.define(
                &mut ids,
                &mut first,
                "job",
                &j.id,
                i as Ix,
                At {
                    file,
                    path: &pth("id"),
                },
            ) {
                continue;
            }
            let schedule = match parse_cron(&j.cron) {
                Ok(s) => Some(s),
                Err(e) => {
                    let path = pth("cron");
                    let mut d = match e.span {
                        Some((offset, len)) => {
                            self.files[file].at_path_within(&path, offset, len, e.message)
                        }
                        None => self.files[file].at_path(&path, e.message),
                    };
                    if let Some(h) = e.help {
                        d = d.with_help(h);
                    }
                    self.diags.push(d);
                    None
                }
            };
            let calendar = match &j.calendar {
                Some(c) => self.resolve(
                    &p.org.index.calendars,
                    "calendar",
                    c,
                    At {
                        file,
                        path: &pth("calendar"),
                    },
                ),
                None => Some(p.settings.calendar),
            };
            let report = match j.report.as_str() {
                "overdue_digest" => {
                    if j.period.is_some() {
                        self.err(
                            At {
                                file,
                                path: &pth("period"),
                            },
                            "`period` applies to `scorecard` reports only",
                        );
                    }
                    match &j.tiers {
                        None => Some(Report::OverdueDigest {
                            tiers: (0..p.org.tiers.len() as u8).collect(),
                        }),
                        Some(ts) => {
                            if ts.is_empty() {
                                self.err(
                                    At {
                                        file,
                                        path: &pth("tiers"),
                                    },
                                    "name at least one tier, or leave `tiers` out for every tier",
                                );
                            }
                            let mut tiers = Vec::new();
                            for (k, t) in ts.iter().enumerate() {
                                if let Some(x) = self.tier(
                                    p,
                                    t,
                                    At {
                                        file,
                                        path: &pth(&format!("tiers[{k}]")),
                                    },
                                ) {
                                    tiers.push(x);
                                }
                            }
                            (!ts.is_empty() && tiers.len() == ts.len())
                                .then_some(Report::OverdueDigest { tiers })
                        }
                    }
                }
                "scorecard" => {
                    if j.tiers.is_some() {
                        self.err(
                            At {
                                file,
                                path: &pth("tiers"),
                            },
                            "`tiers` applies to `overdue_digest` reports only",
                        );
                    }
                    let period = match &j.period {
                        None => Some(chrono::Duration::days(jobs::DEFAULT_SCORECARD_PERIOD_DAYS)),
                        Some(v) => match parse_wall_duration(v) {
                            None => {
                                self.err(
                                    At {
                                        file,
                                        path: &pth("period"),
                                    },
                                    format!(
                                        "invalid period `{v}`: expected a wall-clock duration such as 7d or 24h"
                                    ),
                                );
                                None
                            }
                            Some(d) if d <= chrono::Duration::zero() => {
                                self.err(
                                    At {
                                        file,
                                        path: &pth("period"),
                                    },
                                    format!(
                                        "a scorecard period must be longer than zero, not `{v}`"
                                    ),
                                );
                                None
                            }
                            Some(d) => Some(d),
                        },
                    };
                    period.map(|period| Report::Scorecard { period })
                }
                other => {
                    let mut d = self.files[file]
                        .at_path(&pth("report"), format!("unknown report `{other}`"))
                        .suggest(other, jobs::REPORTS.iter().copied());
                    if d.help.is_none() {
                        d = d.with_help(format!(
                            "a job's report is one of: {}",
                            jobs::REPORTS.join(", ")
                        ));
                    }
                    self.diags.push(d);
                    None
                }
            };
            if let Some(r) = &report
                && !p.templates.contains(r.kind())
                && !self.broken.contains(&("template", "*".into()))
                && reported_missing.insert(r.kind())
            {
                let d = self.files[file]
                    .at_path(
                        &pth("report"),
                        format!(
                            "no template `{}`: job `{}` sends this report",
                            r.kind(),
                            j.id
                        ),
                    )
                    .with_help(format!(
                        "add `templates.{}` with an email variant in the default locale",
                        r.kind()
                    ));
                self.diags.push(d);
            }
            if let (Some(schedule), Some(calendar), Some(report)) = (schedule, calendar, report) {
                out.push(Job {
                    id: j.id.clone(),
                    cron: j.cron.clone(),
                    schedule,
                    calendar,
                    tz: p.org.calendars[calendar as usize].tz(),
                    report,
                });
            }
        }
        out
    }

    fn categories(&mut self, s: &Sections, p: &mut Policy) -> Vec<model::Category> {
        let mut out = Vec::new();
        let defaults = s.deadlines.as_ref();
        if defaults.is_none() {
            self.missing(Diagnostic::new(
                "no `deadlines` section: default deadlines per priority are required",
            ));
        }
        let Some(sec) = &s.categories else {
            self.missing(Diagnostic::new("no `categories` section"));
            return out;
        };
        let file = sec.file;
        let cal_ok = |this: &mut Self, spec: &spec::DeadlineSpec, at: At| -> Option<Option<Ix>> {
            match &spec.calendar {
                Some(c) => this
                    .resolve(&p.org.index.calendars, "calendar", c, at)
                    .map(Some),
                None => Some(None),
            }
        };
        // Default deadlines: checked once, where they are written.
        if let Some(d) = defaults {
            for (prio, spec) in &d.value {
                let path = format!("deadlines.{}", prio.as_str());
                cal_ok(
                    self,
                    spec,
                    At {
                        file: d.file,
                        path: &format!("{path}.calendar"),
                    },
                );
                for (what, v) in [("acknowledge", spec.acknowledge), ("resolve", spec.resolve)] {
                    if v.is_some_and(|v| v.is_zero()) {
                        self.err(
                            At {
                                file: d.file,
                                path: &format!("{path}.{what}"),
                            },
                            "a deadline must be longer than zero",
                        );
                    }
                }
            }
        }
        let default_ladder = s.settings.as_ref().and_then(|s| s.value.ladder.clone());
        let mut first = HashMap::new();
        for (i, c) in sec.value.iter().enumerate() {
            let pth = |f: &str| format!("categories[{i}].{f}");
            if !self.define(
                &mut p.index.categories,
                &mut first,
                "category",
                &c.code,
                out.len() as Ix,
                At {
                    file,
                    path: &pth("code"),
                },
            ) {
                continue;
            }
            let department = self.resolve(
                &p.org.index.departments,
                "department",
                &c.department,
                At {
                    file,
                    path: &pth("department"),
                },
            );
            let ladder = match (&c.ladder, &default_ladder) {
                (Some(l), _) => self.resolve(
                    &p.index.ladders,
                    "ladder",
                    l,
                    At {
                        file,
                        path: &pth("ladder"),
                    },
                ),
                (None, Some(l)) => {
                    let at = At {
                        file: s.settings.as_ref().expect("has ladder").file,
                        path: "settings.ladder",
                    };
                    if i == 0 {
                        self.resolve(&p.index.ladders, "ladder", l, at)
                    } else {
                        p.index.ladders.get(l).copied()
                    }
                }
                (None, None) => {
                    self.err(
                        At {
                            file,
                            path: &pth("code"),
                        },
                        format!(
                            "category `{}` names no ladder and settings.ladder is not set",
                            c.code
                        ),
                    );
                    None
                }
            };
            for (key, hook) in [
                ("priority_hook", &c.priority_hook),
                ("deadline_hook", &c.deadline_hook),
            ] {
                if let Some(h) = hook {
                    self.hook(
                        p,
                        h,
                        At {
                            file,
                            path: &pth(key),
                        },
                    );
                }
            }
            let mut rules: Vec<model::DeadlineRule> = Vec::with_capacity(4);
            for prio in Priority::ALL {
                let base = defaults.and_then(|d| d.value.get(&prio));
                let over = c.deadlines.get(&prio);
                let over_path = pth(&format!("deadlines.{}", prio.as_str()));
                let calendar = match over {
                    Some(o) if o.calendar.is_some() => cal_ok(
                        self,
                        o,
                        At {
                            file,
                            path: &format!("{over_path}.calendar"),
                        },
                    )
                    .flatten(),
                    _ => base
                        .and_then(|b| b.calendar.as_ref())
                        .and_then(|c| p.org.index.calendars.get(c).copied()),
                };
                let pick = |f: fn(&spec::DeadlineSpec) -> Option<WorkDuration>| {
                    over.and_then(f).or_else(|| base.and_then(f))
                };
                let acknowledge = pick(|d| d.acknowledge);
                let resolve = pick(|d| d.resolve);
                if let Some(o) = over {
                    for (what, v) in [("acknowledge", o.acknowledge), ("resolve", o.resolve)] {
                        if v.is_some_and(|v| v.is_zero()) {
                            self.err(
                                At {
                                    file,
                                    path: &format!("{over_path}.{what}"),
                                },
                                "a deadline must be longer than zero",
                            );
                        }
                    }
                }
                let (Some(acknowledge), Some(resolve)) = (acknowledge, resolve) else {
                    if defaults.is_some() {
                        let at = if over.is_some() {
                            At {
                                file,
                                path: &over_path,
                            }
                        } else {
                            At {
                                file,
                                path: &pth("code"),
                            }
                        };
                        self.err(at, format!(
                            "category `{}` has no {} deadline at priority {}: set `deadlines.{}` (the defaults) or this category's",
                            c.code,
                            if acknowledge.is_none() { "acknowledge" } else { "resolve" },
                            prio.as_str(),
                            prio.as_str()
                        ));
                    }
                    rules.push(model::DeadlineRule {
                        acknowledge: WorkDuration::minutes(1),
                        resolve: WorkDuration::minutes(1),
                        remind_before: Vec::new(),
                        calendar: None,
                    });
                    continue;
                };
                let remind_before = over
                    .and_then(|o| o.remind_before.clone())
                    .or_else(|| base.and_then(|b| b.remind_before.clone()))
                    .unwrap_or_default();
                rules.push(model::DeadlineRule {
                    acknowledge,
                    resolve,
                    remind_before,
                    calendar,
                });
            }
            let (Some(department), Some(ladder)) = (department, ladder) else {
                p.index.categories.remove(&c.code);
                self.broken.insert(("category", c.code.clone()));
                continue;
            };
            out.push(model::Category {
                code: c.code.clone(),
                names: Names::new(&c.names, &c.code),
                department,
                priority: c.priority.unwrap_or(Priority::Normal),
                deadlines: rules.try_into().expect("four priorities"),
                ladder,
                priority_hook: c.priority_hook.clone(),
                deadline_hook: c.deadline_hook.clone(),
            });
        }
        out
    }

    fn routes(&mut self, s: &Sections, p: &Policy) -> Vec<model::Route> {
        let mut out = Vec::new();
        let Some(sec) = &s.routes else { return out };
        let file = sec.file;
        let mut names = HashSet::new();
        for (i, r) in sec.value.iter().enumerate() {
            let pth = |f: &str| format!("routes[{i}].{f}");
            if !names.insert(r.name.clone()) {
                self.err(
                    At {
                        file,
                        path: &pth("name"),
                    },
                    format!("duplicate route name `{}`", r.name),
                );
            }
            let w = &r.when;
            let mut ok = true;
            let categories = w.category.as_ref().map(|cs| {
                cs.iter()
                    .enumerate()
                    .filter_map(|(j, c)| {
                        let x = self.resolve(
                            &p.index.categories,
                            "category",
                            c,
                            At {
                                file,
                                path: &pth(&format!("when.category[{j}]")),
                            },
                        );
                        ok &= x.is_some();
                        x
                    })
                    .collect::<Vec<_>>()
            });
            let units = w.units.as_ref().map(|us| {
                us.iter()
                    .enumerate()
                    .filter_map(|(j, u)| {
                        let x = self.resolve(
                            &p.org.index.units,
                            "unit",
                            u,
                            At {
                                file,
                                path: &pth(&format!("when.units[{j}]")),
                            },
                        );
                        ok &= x.is_some();
                        x
                    })
                    .collect::<Vec<_>>()
            });
            let time = w.time.as_ref().and_then(|t| {
                let parsed = t
                    .split_once('-')
                    .and_then(|(a, b)| Some((parse_clock(a.trim())?, parse_clock(b.trim())?)));
                if parsed.is_none() || parsed.is_some_and(|(a, b)| a == b) {
                    self.err(
                        At {
                            file,
                            path: &pth("when.time"),
                        },
                        format!(
                            "invalid time window `{t}`: expected HH:MM-HH:MM, such as 22:00-06:00"
                        ),
                    );
                    ok = false;
                }
                parsed
            });
            let text_any = w
                .text_any
                .as_ref()
                .map(|ws| ws.iter().map(|w| w.to_lowercase()).collect::<Vec<_>>());
            if text_any
                .as_ref()
                .is_some_and(|t| t.iter().any(String::is_empty))
            {
                self.err(
                    At {
                        file,
                        path: &pth("when.text_any"),
                    },
                    "an empty word matches every text",
                );
            }
            let target = match (&r.department, &r.department_hook) {
                (Some(d), None) => self
                    .resolve(
                        &p.org.index.departments,
                        "department",
                        d,
                        At {
                            file,
                            path: &pth("department"),
                        },
                    )
                    .map(model::RouteTarget::Department),
                (None, Some(h)) => self
                    .hook(
                        p,
                        h,
                        At {
                            file,
                            path: &pth("department_hook"),
                        },
                    )
                    .then(|| model::RouteTarget::Hook(h.clone())),
                _ => {
                    self.err(
                        At {
                            file,
                            path: &pth("name"),
                        },
                        "a route has exactly one of `department` and `department_hook`",
                    );
                    None
                }
            };
            let mut co_assign = Vec::new();
            for (j, d) in r.co_assign.iter().enumerate() {
                if let Some(x) = self.resolve(
                    &p.org.index.departments,
                    "department",
                    d,
                    At {
                        file,
                        path: &pth(&format!("co_assign[{j}]")),
                    },
                ) {
                    co_assign.push(x);
                }
            }
            let return_to = match &r.return_to {
                Some(d) => {
                    let x = self.resolve(
                        &p.org.index.departments,
                        "department",
                        d,
                        At {
                            file,
                            path: &pth("return_to"),
                        },
                    );
                    ok &= x.is_some();
                    x
                }
                None => None,
            };
            let Some(target) = target else { continue };
            if !ok {
                continue;
            }
            out.push(model::Route {
                name: r.name.as_str().into(),
                categories,
                units,
                priorities: w.priority.clone(),
                text_any,
                time,
                working: w.working,
                target,
                co_assign,
                return_to,
            });
        }
        out
    }
}

/// The kind of thing each section defines, for references into a section that did not parse.
const SECTION_KINDS: &[(&str, &str)] = &[
    ("tiers", "tier"),
    ("units", "unit"),
    ("unit_files", "unit"),
    ("people", "person"),
    ("people_files", "person"),
    ("departments", "department"),
    ("calendars", "calendar"),
    ("categories", "category"),
    ("ladders", "ladder"),
    ("meetings", "meeting"),
    ("templates", "template"),
];

/// What policies resolve against.
struct Policy<'p> {
    org: &'p Org,
    scripts: &'p Scripts,
    templates: &'p Templates,
    settings: &'p model::Settings,
    index: model::Index,
}

fn first_index<T>(items: &[T], id: &str, key: impl Fn(&T) -> &String) -> usize {
    items
        .iter()
        .position(|x| key(x) == id)
        .unwrap_or(usize::MAX)
}

/// `HH:MM` as minutes after midnight; `24:00` allowed.
pub(crate) fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0)) && s.len() == 5).then_some(h * 60 + m)
}

/// The 1-based column of field `i` of a CSV record (unquoted fields, as written).
fn csv_column(rec: &[String], i: usize) -> usize {
    1 + rec[..i.min(rec.len())]
        .iter()
        .map(|f| f.chars().count() + 1)
        .sum::<usize>()
}
