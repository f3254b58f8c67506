//! Putting rules live: at start-up and at every reload, by one path.
//!
//! A candidate directory is loaded on a blocking thread and validated whole (YAML, references,
//! scripts, templates); then checked against live data: a candidate that no longer knows a
//! category, unit, department, tier, ladder or meeting kind that open issues use is refused with
//! the list, unless forced; then its files are stored as a version and it is swapped in. A
//! request under way keeps the rule set it took; every request after the swap takes the new
//! one. A candidate that fails any step changes nothing: the old rules stay live.
//!
//! What open issues keep across a reload: their departments, tier and the deadlines already
//! promised (and the timers that watch them). Every later event of theirs is decided by the new
//! rules, so an open issue's next ladder step comes from the new ladder, its next reminder from
//! the new templates. A forced reload sends each issue that uses something removed to triage at
//! once, as a `sent_to_triage` event in its timeline with the reason.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use escalade_rules::{Diagnostics, Event, RuleSet};
use serde::Serialize;

use crate::engine::{By, Engine};
use crate::store::{Store, StoreError, Use};

/// How many issue ids a refusal lists for each thing removed.
const LISTED: i64 = 10;

/// A diagnostic as the API and the logs give it: the same content `escalade check` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiagnosticJson {
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub help: Option<String>,
}

/// `file:line:column: message (help)`, the one-line form `escalade check` prints.
impl std::fmt::Display for DiagnosticJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(file), Some(line), Some(column)) = (&self.file, self.line, self.column) {
            write!(f, "{file}:{line}:{column}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.help {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

pub fn diagnostics_json(d: &Diagnostics) -> Vec<DiagnosticJson> {
    d.iter()
        .map(|d| DiagnosticJson {
            file: d.location.as_ref().map(|l| l.file.clone()),
            line: d.location.as_ref().map(|l| l.line),
            column: d.location.as_ref().map(|l| l.column),
            message: d.message.clone(),
            help: d.help.clone(),
        })
        .collect()
}

/// Something the candidate removed that open issues still use.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InUse {
    /// `category`, `unit`, `department`, `tier`, `ladder` or `meeting`.
    pub kind: &'static str,
    pub id: String,
    /// The first few issues that use it, and how many do.
    pub issues: Vec<String>,
    pub count: i64,
    /// `department housing is removed but open issues use it: 1043, 1051, ... (12)`.
    pub message: String,
}

/// Why a candidate did not go live.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The candidate has errors; nothing changed.
    #[error("the rules have {} error(s)", .0.len())]
    Invalid(Vec<DiagnosticJson>),
    /// The candidate removes things open issues use; nothing changed.
    #[error("{}", .0.iter().map(|u| u.message.as_str()).collect::<Vec<_>>().join("; "))]
    InUse(Vec<InUse>),
    /// The store failed while checking or recording; nothing changed.
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for ReloadError {
    fn from(e: StoreError) -> ReloadError {
        ReloadError::Failed(e.to_string())
    }
}

/// Why a candidate named over the API or the console cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    /// The name is no directory under `candidates_dir`: why.
    #[error("{0}")]
    Dir(String),
    /// Its rules have errors.
    #[error("the candidate has {} error(s)", .0.len())]
    Invalid(Vec<DiagnosticJson>),
    /// It could not be loaded.
    #[error("{0}")]
    Failed(String),
}

/// A rule set as it went live.
#[derive(Clone, Debug, Serialize)]
pub struct LiveRules {
    pub version: String,
    pub loaded_at: DateTime<Utc>,
    pub loaded_by: String,
    pub dir: String,
    pub summary: escalade_rules::model::Summary,
}

impl LiveRules {
    fn of(rules: &RuleSet, at: DateTime<Utc>, by: &str, dir: String) -> LiveRules {
        LiveRules {
            version: rules.version.to_string(),
            loaded_at: at,
            loaded_by: by.to_string(),
            dir,
            summary: rules.summary(),
        }
    }
}

/// Records `rules` as a version that went live, unless the store's newest version is already
/// it (a restart on the same rules adds no row); returns that newest version as it was.
async fn record_if_new(
    store: &Store,
    rules: &RuleSet,
    at: DateTime<Utc>,
    by: &str,
    dir: &str,
) -> Result<Option<String>, StoreError> {
    let newest = store
        .rule_versions(None, 1)
        .await?
        .into_iter()
        .next()
        .map(|r| r.version);
    if newest.as_deref() != Some(&*rules.version) {
        store
            .record_rule_version(&rules.version, at, by, dir, &rules.files)
            .await?;
    }
    Ok(newest)
}

/// A reload that went through.
#[derive(Clone, Debug, Serialize)]
pub struct Reloaded {
    pub version: String,
    pub previous_version: String,
    /// False when the directory still held the live version: nothing was swapped.
    pub changed: bool,
    pub summary: escalade_rules::model::Summary,
    /// With force: what was removed though open issues used it, and which issues went to
    /// triage for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forced: Vec<InUse>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sent_to_triage: Vec<String>,
    /// How long requests could not take the rules while they were swapped, in nanoseconds:
    /// loading and checking happened beside them.
    pub swap_ns: u64,
}

/// The last reload attempt, whatever became of it.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub by: String,
    /// `loaded`, `unchanged`, `invalid`, `in_use` or `failed`.
    pub outcome: &'static str,
    /// The candidate's version, when it loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<DiagnosticJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_use: Vec<InUse>,
}

/// What `GET /api/v1/rules` shows.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub live: LiveRules,
    pub last_attempt: Option<Attempt>,
}

/// The live rules' steward: reloads them one at a time and remembers how it went.
pub struct Rules {
    engine: Arc<Engine>,
    dir: PathBuf,
    /// One reload at a time: a second waits for the first, then loads what is there then.
    serial: tokio::sync::Mutex<()>,
    status: Mutex<Status>,
    /// Stored versions loaded again (for `explain`), the most recently used last.
    versions: Mutex<Vec<Arc<RuleSet>>>,
    /// Where candidate directories named over the API must lie (replay, shadow).
    candidates_dir: Option<PathBuf>,
    /// The store, which replay reads on connections of its own.
    database: Option<crate::store::Database>,
    /// One replay at a time: it lives issues on every core.
    pub replays: tokio::sync::Semaphore,
    /// Told `RELOADING=1` then `READY=1` around every reload.
    service: crate::systemd::ServiceManager,
}

/// How many stored versions stay loaded for `explain`.
const VERSIONS_KEPT: usize = 8;

/// Loads a rule directory on a blocking thread.
async fn load(dir: &Path) -> Result<RuleSet, ReloadError> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || RuleSet::load(&d))
        .await
        .map_err(|e| ReloadError::Failed(format!("loading the rules: {e}")))?
        .map_err(|d| ReloadError::Invalid(diagnostics_json(&d)))
}

/// What open issues use that `candidate` no longer knows. `previous` (the rules they were
/// decided by) tells which ladder each category climbed.
pub async fn removed_in_use(
    store: &Store,
    previous: Option<&RuleSet>,
    candidate: &RuleSet,
    listed: i64,
) -> Result<Vec<InUse>, StoreError> {
    let uses = store.open_uses().await?;
    let org = &candidate.org;
    let mut gone: Vec<(Use, &'static str, String, Option<String>)> = Vec::new();
    for c in &uses.categories {
        if candidate.category(c).is_none() {
            gone.push((Use::Category, "category", c.clone(), None));
        }
    }
    let mut units: Vec<&str> = uses
        .branches
        .iter()
        .flat_map(|b| b.split('/').filter(|u| !u.is_empty()))
        .collect();
    units.sort_unstable();
    units.dedup();
    for u in units {
        if org.unit(u).is_none() {
            gone.push((Use::Unit, "unit", u.to_string(), None));
        }
    }
    for d in &uses.departments {
        if org.department(d).is_none() {
            gone.push((Use::Department, "department", d.clone(), None));
        }
    }
    for t in &uses.tiers {
        if org.tier(t).is_none() {
            gone.push((Use::Tier, "tier", t.clone(), None));
        }
    }
    for m in &uses.meetings {
        if candidate.meeting(m).is_none() {
            gone.push((Use::Meeting, "meeting", m.clone(), None));
        }
    }
    // A ladder is used through the categories that climb it: a kept category whose ladder is
    // gone from the candidate (a category now on another ladder simply climbs that one).
    if let Some(prev) = previous {
        for c in &uses.categories {
            let (Some(old), Some(_)) = (prev.category(c), candidate.category(c)) else {
                continue;
            };
            let ladder = &prev.ladders[prev.categories[old as usize].ladder as usize].id;
            if candidate.ladder(ladder).is_none() {
                gone.push((Use::Category, "ladder", ladder.clone(), Some(c.clone())));
            }
        }
    }
    let mut found: Vec<InUse> = Vec::new();
    for (what, kind, id, through) in gone {
        let value = through.as_deref().unwrap_or(&id);
        let (issues, count) = store.open_issues_using(what, value, listed).await?;
        if count == 0 {
            continue;
        }
        // A ladder reached through several categories is one entry.
        if let Some(same) = found.iter_mut().find(|u| u.kind == kind && u.id == id) {
            same.count += count;
            same.issues.extend(issues);
            same.issues
                .sort_by_key(|i| i.parse::<u64>().unwrap_or(u64::MAX));
            same.issues.truncate(listed as usize);
        } else {
            found.push(InUse {
                kind,
                id,
                issues,
                count,
                message: String::new(),
            });
        }
    }
    for u in &mut found {
        let more = if u.count > u.issues.len() as i64 {
            ", ..."
        } else {
            ""
        };
        u.message = format!(
            "{} {} is removed but open issues use it: {}{more} ({})",
            u.kind,
            u.id,
            u.issues.join(", "),
            u.count
        );
    }
    Ok(found)
}

impl Rules {
    /// Start-up, the first reload: loads `dir`, checks it against the store's open issues (the
    /// rules they were decided by are the newest stored version), records it as a version if
    /// it is new, and returns it to build the engine on. With `force`, every issue that uses
    /// something removed is returned, to be sent to triage once the engine runs.
    pub async fn first(
        store: &Store,
        dir: &Path,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<(RuleSet, Vec<InUse>, LiveRules), ReloadError> {
        let candidate = load(dir).await?;
        let newest = store.rule_versions(None, 1).await?.into_iter().next();
        let previous = match newest {
            Some(row) if row.version != *candidate.version => {
                match store.rule_version_files(&row.version).await? {
                    Some((_, files)) => {
                        tokio::task::spawn_blocking(move || RuleSet::load_files(&files).ok())
                            .await
                            .ok()
                            .flatten()
                    }
                    None => None,
                }
            }
            _ => None,
        };
        // Forced, every issue that uses something removed is listed, to go to triage.
        let listed = if force { i64::MAX } else { LISTED };
        let in_use = removed_in_use(store, previous.as_ref(), &candidate, listed).await?;
        if !in_use.is_empty() && !force {
            return Err(ReloadError::InUse(in_use));
        }
        let dir_s = dir.display().to_string();
        record_if_new(store, &candidate, now, "start-up", &dir_s).await?;
        let live = LiveRules::of(&candidate, now, "start-up", dir_s);
        Ok((candidate, in_use, live))
    }

    /// The steward of an engine whose rules went live as `live`, from `dir`.
    pub fn new(engine: Arc<Engine>, dir: PathBuf, live: LiveRules) -> Rules {
        Rules {
            engine,
            dir,
            serial: tokio::sync::Mutex::new(()),
            status: Mutex::new(Status {
                live,
                last_attempt: None,
            }),
            versions: Mutex::new(Vec::new()),
            candidates_dir: None,
            database: None,
            replays: tokio::sync::Semaphore::new(1),
            service: crate::systemd::ServiceManager::none(),
        }
    }

    /// The service manager to tell of every reload (`RELOADING=1`, then `READY=1` with the
    /// outcome as its status), whatever asked for it: a signal, the API or the file watcher.
    pub fn with_service_manager(mut self, service: crate::systemd::ServiceManager) -> Rules {
        self.service = service;
        self
    }

    /// Candidate directories named over the API must lie under `dir`.
    pub fn with_candidates(mut self, dir: Option<PathBuf>) -> Rules {
        self.candidates_dir = dir;
        self
    }

    /// The store, for replays (SQLite or PostgreSQL).
    pub fn with_database(mut self, db: impl Into<Option<crate::store::Database>>) -> Rules {
        self.database = db.into();
        self
    }

    pub fn database(&self) -> Option<&crate::store::Database> {
        self.database.as_ref()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// A candidate directory named over the API: `name` relative to `candidates_dir` (or a
    /// path inside it), which must exist and, links resolved, lie inside it. No other path is
    /// read.
    pub fn candidate(&self, name: &str) -> Result<PathBuf, String> {
        let Some(root) = &self.candidates_dir else {
            return Err(
                "no `candidates_dir` is configured: candidate rules cannot be named over the API"
                    .into(),
            );
        };
        let root = root
            .canonicalize()
            .map_err(|e| format!("candidates_dir {}: {e}", root.display()))?;
        let asked = root.join(name);
        let found = asked
            .canonicalize()
            .map_err(|_| format!("no candidate directory `{name}` under the candidates_dir"))?;
        if !found.starts_with(&root) || found == root {
            return Err(format!(
                "`{name}` is not a directory under the candidates_dir: only those are read"
            ));
        }
        if !found.is_dir() {
            return Err(format!("`{name}` is not a directory"));
        }
        Ok(found)
    }

    /// Loads a candidate rule directory on a blocking thread.
    pub async fn load_candidate(&self, dir: &Path) -> Result<RuleSet, ReloadError> {
        load(dir).await
    }

    /// A candidate named over the API or the console (see [`Rules::candidate`]): where it is,
    /// and its rules loaded.
    pub async fn named_candidate(&self, name: &str) -> Result<(PathBuf, RuleSet), CandidateError> {
        let path = self.candidate(name).map_err(CandidateError::Dir)?;
        let rules = self.load_candidate(&path).await.map_err(|e| match e {
            ReloadError::Invalid(d) => CandidateError::Invalid(d),
            other => CandidateError::Failed(other.to_string()),
        })?;
        Ok((path, rules))
    }

    /// The directories directly under `candidates_dir` (the first 200 by name), for a form to
    /// offer; none without one.
    pub fn candidate_names(&self) -> Vec<String> {
        let Some(root) = &self.candidates_dir else {
            return Vec::new();
        };
        let mut names: Vec<String> = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names.truncate(200);
        names
    }

    /// The steward of an engine built on rules loaded from `dir` by other means (tests,
    /// benchmarks): records them as a version, as start-up does, if the store's newest is
    /// another.
    pub async fn adopt(engine: Arc<Engine>, dir: PathBuf) -> Result<Rules, StoreError> {
        let rules = engine.rules();
        let now = engine.now();
        let d = dir.display().to_string();
        record_if_new(engine.store(), &rules, now, "start-up", &d).await?;
        let live = LiveRules::of(&rules, now, "start-up", d);
        Ok(Rules::new(engine, dir, live))
    }

    /// The rule set of a version that went live: the live one, or one loaded again from its
    /// stored files (a few are kept loaded). `None` if the store does not have it.
    pub async fn version(&self, version: &str) -> Result<Option<Arc<RuleSet>>, ReloadError> {
        let live = self.engine.rules();
        if *live.version == *version {
            return Ok(Some(live));
        }
        {
            let mut kept = self.versions.lock().expect("versions lock");
            if let Some(i) = kept.iter().position(|r| *r.version == *version) {
                let r = kept.remove(i);
                kept.push(r.clone());
                return Ok(Some(r));
            }
        }
        let Some((_, files)) = self.engine.store().rule_version_files(version).await? else {
            return Ok(None);
        };
        let loaded = tokio::task::spawn_blocking(move || RuleSet::load_files(&files))
            .await
            .map_err(|e| ReloadError::Failed(format!("loading version {version}: {e}")))?
            .map_err(|d| ReloadError::Invalid(diagnostics_json(&d)))?;
        let loaded = Arc::new(loaded);
        let mut kept = self.versions.lock().expect("versions lock");
        if kept.len() >= VERSIONS_KEPT {
            kept.remove(0);
        }
        kept.push(loaded.clone());
        Ok(Some(loaded))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn status(&self) -> Status {
        self.status.lock().expect("rules status lock").clone()
    }

    /// Reloads the rule directory: loads and validates it, checks it against open issues,
    /// stores it as a version and swaps it in. On any failure the old rules stay live; the
    /// attempt is remembered either way and a failure is logged as an error with its
    /// diagnostics.
    pub async fn reload(&self, by: &str, force: bool) -> Result<Reloaded, ReloadError> {
        let _one = self.serial.lock().await;
        self.service
            .reloading(&format!("reloading the rules ({by})"));
        let at = self.engine.now();
        let result = self.try_reload(by, force, at).await;
        let attempt = match &result {
            Ok(r) => {
                tracing::info!(
                    version = %&r.version[..16],
                    previous = %&r.previous_version[..16],
                    changed = r.changed,
                    by,
                    sent_to_triage = r.sent_to_triage.len(),
                    "rules reloaded"
                );
                Attempt {
                    at,
                    by: by.to_string(),
                    outcome: if r.changed { "loaded" } else { "unchanged" },
                    version: Some(r.version.clone()),
                    message: if r.changed {
                        format!("version {} is live", &r.version[..16])
                    } else {
                        "the rule directory holds the live version".into()
                    },
                    diagnostics: Vec::new(),
                    in_use: r.forced.clone(),
                }
            }
            Err(e) => {
                let (outcome, diagnostics, in_use) = match e {
                    ReloadError::Invalid(d) => ("invalid", d.clone(), Vec::new()),
                    ReloadError::InUse(u) => ("in_use", Vec::new(), u.clone()),
                    ReloadError::Failed(_) => ("failed", Vec::new(), Vec::new()),
                };
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                tracing::error!(
                    by,
                    outcome,
                    error = %e,
                    diagnostics = %lines.join("\n"),
                    "rules reload failed; the old rules stay live"
                );
                Attempt {
                    at,
                    by: by.to_string(),
                    outcome,
                    version: None,
                    message: e.to_string(),
                    diagnostics,
                    in_use,
                }
            }
        };
        crate::metrics::reloaded(result.is_ok(), at.timestamp());
        let live = &self.engine.rules().version;
        self.service.ready(&format!(
            "serving; rules version {} live; reload by {by}: {}",
            &live[..16.min(live.len())],
            match &result {
                Ok(_) => attempt.outcome.to_string(),
                Err(_) => format!("{}, the old rules stay live", attempt.outcome),
            }
        ));
        self.status.lock().expect("rules status lock").last_attempt = Some(attempt);
        result
    }

    async fn try_reload(
        &self,
        by: &str,
        force: bool,
        at: DateTime<Utc>,
    ) -> Result<Reloaded, ReloadError> {
        let candidate = Arc::new(load(&self.dir).await?);
        let previous = self.engine.rules();
        if candidate.version == previous.version {
            return Ok(Reloaded {
                version: candidate.version.to_string(),
                previous_version: previous.version.to_string(),
                changed: false,
                summary: candidate.summary(),
                forced: Vec::new(),
                sent_to_triage: Vec::new(),
                swap_ns: 0,
            });
        }
        let store = self.engine.store();
        let in_use = removed_in_use(store, Some(&previous), &candidate, LISTED).await?;
        if !in_use.is_empty() && !force {
            return Err(ReloadError::InUse(in_use));
        }
        let dir = self.dir.display().to_string();
        store
            .record_rule_version(&candidate.version, at, by, &dir, &candidate.files)
            .await?;
        let swap = std::time::Instant::now();
        self.engine.swap_rules(candidate.clone());
        let swap_ns = swap.elapsed().as_nanos() as u64;
        self.status.lock().expect("rules status lock").live =
            LiveRules::of(&candidate, at, by, dir);
        // Forced: every issue that uses something removed goes to triage now, decided by the
        // new rules (which no longer know what it used).
        let mut sent = Vec::new();
        if !in_use.is_empty() {
            let all = removed_in_use(store, Some(&previous), &candidate, i64::MAX).await?;
            sent = self.send_to_triage(&all, &candidate.version).await;
        }
        Ok(Reloaded {
            version: candidate.version.to_string(),
            previous_version: previous.version.to_string(),
            changed: true,
            summary: candidate.summary(),
            forced: in_use,
            sent_to_triage: sent,
            swap_ns,
        })
    }

    /// Sends each issue of `in_use` to triage, once, with the reasons that concern it.
    /// Returns the issues sent. An issue that cannot be (it closed meanwhile) is logged.
    pub async fn send_to_triage(&self, in_use: &[InUse], version: &str) -> Vec<String> {
        let mut reasons: std::collections::BTreeMap<u64, (String, Vec<String>)> =
            Default::default();
        for u in in_use {
            for id in &u.issues {
                let key = id.parse::<u64>().unwrap_or(u64::MAX);
                reasons
                    .entry(key)
                    .or_insert_with(|| (id.clone(), Vec::new()))
                    .1
                    .push(format!("{} {}", u.kind, u.id));
            }
        }
        let mut sent = Vec::new();
        for (id, why) in reasons.into_values() {
            let reason = format!(
                "{} removed by rules version {}",
                why.join(", "),
                &version[..16.min(version.len())]
            );
            match self
                .engine
                .act(
                    &id,
                    Event::SentToTriage { reason },
                    By::System("rules-reload"),
                )
                .await
            {
                Ok(_) => sent.push(id),
                Err(e) => tracing::warn!(issue = %id, error = %e, "not sent to triage"),
            }
        }
        sent
    }
}
