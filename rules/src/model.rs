//! The checked rule set: every reference resolved to an index, every duration parsed.
//!
//! Indices (`Ix`) rather than strings keep a decision to a few lookups; ids stay beside them
//! for what a decision reports.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::calendar::{Calendar, WorkDuration};
use crate::jobs::Job;
use crate::notify::Notifications;
use crate::script::Scripts;
use crate::spec::{Channel, HookLimits, OnLapse, Priority, Trigger, VerificationLapse};
use crate::template::Templates;

pub type Ix = u32;

/// Id to index maps, hashed with FxHash: every decision looks ids up, and the keys come from
/// the rule directory, so no client can fill a map with colliding keys (looking up a client's
/// string cannot degrade a map).
pub type IdMap<V> = rustc_hash::FxHashMap<String, V>;

/// Names in Chinese and English; either falls back to the other, then to the id.
#[derive(Clone, Debug, Default)]
pub struct Names {
    pub zh: String,
    pub en: String,
}

impl Names {
    pub fn new(spec: &crate::spec::Names, id: &str) -> Names {
        let zh = spec.zh.clone().or_else(|| spec.en.clone());
        let en = spec.en.clone().or_else(|| spec.zh.clone());
        Names {
            zh: zh.unwrap_or_else(|| id.to_string()),
            en: en.unwrap_or_else(|| id.to_string()),
        }
    }

    /// The name for a locale such as `zh-CN` or `en`.
    pub fn get(&self, locale: &str) -> &str {
        if locale.starts_with("zh") {
            &self.zh
        } else {
            &self.en
        }
    }
}

#[derive(Debug)]
pub struct Tier {
    pub id: String,
    pub names: Names,
}

#[derive(Debug)]
pub struct Unit {
    pub id: String,
    /// Position in the tier ladder; parents have larger values.
    pub tier: u8,
    pub parent: Option<Ix>,
    pub leader: Option<Ix>,
    pub names: Names,
}

#[derive(Debug)]
pub struct Person {
    /// Shared, like the addresses and locale: every message carries them.
    pub id: Arc<str>,
    pub name: String,
    pub phone: Option<Arc<str>>,
    pub email: Option<Arc<str>>,
    pub locale: Arc<str>,
    pub channels: Vec<Channel>,
}

#[derive(Debug)]
pub struct Department {
    pub id: String,
    /// The id again, shared: what every message to the department carries.
    pub key: Arc<str>,
    pub names: Names,
    pub contacts: Vec<Ix>,
    pub calendar: Ix,
    pub rota: Option<Rota>,
}

/// People on duty in turn: person `k` from `start + k * every`, cycling.
#[derive(Debug)]
pub struct Rota {
    pub start: DateTime<Utc>,
    pub every_secs: i64,
    pub people: Vec<Ix>,
}

impl Rota {
    pub fn on_duty(&self, now: DateTime<Utc>) -> Ix {
        let shifts = (now - self.start).num_seconds().div_euclid(self.every_secs);
        self.people[shifts.rem_euclid(self.people.len() as i64) as usize]
    }
}

/// Deadlines of one category at one priority, defaults already merged in.
#[derive(Clone, Debug)]
pub struct DeadlineRule {
    pub acknowledge: WorkDuration,
    pub resolve: WorkDuration,
    pub remind_before: Vec<WorkDuration>,
    /// The calendar the deadlines count on; `None`: the primary department's.
    pub calendar: Option<Ix>,
}

#[derive(Debug)]
pub struct Category {
    pub code: String,
    pub names: Names,
    pub department: Ix,
    pub priority: Priority,
    /// Indexed by `Priority as usize`.
    pub deadlines: [DeadlineRule; 4],
    pub ladder: Ix,
    pub priority_hook: Option<String>,
    pub deadline_hook: Option<String>,
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub categories: Option<Vec<Ix>>,
    pub units: Option<Vec<Ix>>,
    pub priorities: Option<Vec<Priority>>,
    /// Lower-cased, matched against the lower-cased description.
    pub text_any: Option<Vec<String>>,
    /// Minutes after local midnight on the default calendar, `[start, end)`; wraps midnight
    /// when `start > end`.
    pub time: Option<(u32, u32)>,
    pub working: Option<bool>,
    pub target: RouteTarget,
    pub co_assign: Vec<Ix>,
    pub return_to: Option<Ix>,
}

#[derive(Debug)]
pub enum RouteTarget {
    Department(Ix),
    Hook(String),
}

#[derive(Debug)]
pub struct Ladder {
    pub id: String,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct Step {
    pub on: Trigger,
    pub actions: Vec<Action>,
    pub repeat: bool,
}

impl Ladder {
    /// The step run on the `occurrence`-th (1-based) time `trigger` happens.
    pub fn step(&self, trigger: Trigger, occurrence: u32) -> Option<(usize, &Step)> {
        let steps: Vec<(usize, &Step)> = self
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.on == trigger)
            .collect();
        let k = occurrence as usize;
        if k == 0 {
            return None;
        }
        match steps.get(k - 1) {
            Some(s) => Some(*s),
            None => steps.last().filter(|(_, s)| s.repeat).copied(),
        }
    }
}

#[derive(Debug)]
pub enum Action {
    Remind { template: String },
    Notify { target: Target, template: String },
    Raise(Raise),
    Extend(WorkDuration),
    Supervise { tier: u8, template: String },
    Convene(Ix),
}

#[derive(Clone, Copy, Debug)]
pub enum Raise {
    Next,
    To(u8),
}

#[derive(Clone, Debug)]
pub enum Target {
    Leader,
    Departments,
    Reporter,
    Tier(u8),
    Department(Ix),
    Person(Ix),
}

#[derive(Debug)]
pub struct Meeting {
    pub id: String,
    pub names: Names,
    pub departments_at_least: Option<u32>,
    pub escalations_at_least: Option<u32>,
    pub rejections_at_least: Option<u32>,
    pub hook: Option<String>,
    pub calendar: Ix,
    pub working_days_later: u32,
    /// Minutes after local midnight.
    pub at: u32,
    pub invite: Vec<Target>,
    pub template: String,
}

#[derive(Debug)]
pub struct Settings {
    pub locale: String,
    pub calendar: Ix,
    pub triage: Ix,
    pub hook_limits: HookLimits,
}

/// The organisation: shared with the Rhai helpers, which read the unit tree and calendars.
#[derive(Debug, Default)]
pub struct Org {
    pub tiers: Vec<Tier>,
    pub units: Vec<Unit>,
    pub people: Vec<Person>,
    pub departments: Vec<Department>,
    pub calendars: Vec<Calendar>,
    pub(crate) index: OrgIndex,
}

/// Id to index maps of the organisation.
#[derive(Debug, Default)]
pub(crate) struct OrgIndex {
    pub tiers: IdMap<u8>,
    pub units: IdMap<Ix>,
    pub people: IdMap<Ix>,
    pub departments: IdMap<Ix>,
    pub calendars: IdMap<Ix>,
}

impl Org {
    pub fn unit(&self, id: &str) -> Option<Ix> {
        self.index.units.get(id).copied()
    }
    pub fn department(&self, id: &str) -> Option<Ix> {
        self.index.departments.get(id).copied()
    }
    pub fn person(&self, id: &str) -> Option<Ix> {
        self.index.people.get(id).copied()
    }
    pub fn tier(&self, id: &str) -> Option<u8> {
        self.index.tiers.get(id).copied()
    }
    pub fn calendar(&self, id: &str) -> Option<Ix> {
        self.index.calendars.get(id).copied()
    }

    /// The unit and its ancestors, the unit first.
    pub fn branch(&self, unit: Ix) -> impl Iterator<Item = Ix> + '_ {
        std::iter::successors(Some(unit), |&u| self.units[u as usize].parent)
    }

    /// The unit of tier `tier` in the branch of `unit`, if the branch has one.
    pub fn unit_at_tier(&self, unit: Ix, tier: u8) -> Option<Ix> {
        self.branch(unit)
            .find(|&u| self.units[u as usize].tier == tier)
    }

    /// Whether `unit` lies in the subtree of `ancestor` (itself included).
    pub fn in_subtree(&self, unit: Ix, ancestor: Ix) -> bool {
        self.branch(unit).any(|u| u == ancestor)
    }
}

/// A loaded, validated rule directory. Immutable: a reload builds a new one.
#[derive(Debug)]
pub struct RuleSet {
    /// SHA-256 of every file read, hex. Shared: every decision carries it.
    pub version: Arc<str>,
    /// Every file read, by its path in the rule directory: what `RuleSet::load_files` loads
    /// again into the same rule set, with the same version.
    pub files: Arc<std::collections::BTreeMap<String, Arc<str>>>,
    pub settings: Settings,
    pub org: Arc<Org>,
    pub categories: Vec<Category>,
    pub routes: Vec<Route>,
    pub ladders: Vec<Ladder>,
    pub meetings: Vec<Meeting>,
    pub templates: Templates,
    pub scripts: Scripts,
    /// Quiet hours, digests and SMS length.
    pub notifications: Notifications,
    /// Scheduled reports, in the order written.
    pub jobs: Vec<Job>,
    pub case_flow: CaseFlow,
    pub scoring: crate::scoring::Scoring,
    pub(crate) index: Index,
}

/// Id to index maps of the policies.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub categories: IdMap<Ix>,
    pub ladders: IdMap<Ix>,
    pub meetings: IdMap<Ix>,
}

/// What `escalade check` prints about a clean rule set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub units: usize,
    pub people: usize,
    pub departments: usize,
    pub categories: usize,
    pub routes: usize,
    pub ladders: usize,
    pub meetings: usize,
    pub templates: usize,
    pub scripts: usize,
    pub hooks: usize,
    pub jobs: usize,
}

impl RuleSet {
    pub fn category(&self, id: &str) -> Option<Ix> {
        self.index.categories.get(id).copied()
    }

    /// The calendar the deadlines of an issue of `category` at `priority` count on: the
    /// deadline rule's own, else the primary department's (the first of `departments`), else
    /// the default.
    pub fn deadline_calendar(
        &self,
        category: &Category,
        priority: Priority,
        departments: &[String],
    ) -> &Calendar {
        let org = &self.org;
        let c = category.deadlines[priority as usize]
            .calendar
            .or_else(|| {
                departments
                    .first()
                    .and_then(|d| org.department(d))
                    .map(|d| org.departments[d as usize].calendar)
            })
            .unwrap_or(self.settings.calendar);
        &org.calendars[c as usize]
    }
    pub fn ladder(&self, id: &str) -> Option<Ix> {
        self.index.ladders.get(id).copied()
    }
    pub fn meeting(&self, id: &str) -> Option<Ix> {
        self.index.meetings.get(id).copied()
    }
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    pub fn summary(&self) -> Summary {
        Summary {
            units: self.org.units.len(),
            people: self.org.people.len(),
            departments: self.org.departments.len(),
            categories: self.categories.len(),
            routes: self.routes.len(),
            ladders: self.ladders.len(),
            meetings: self.meetings.len(),
            templates: self.templates.len(),
            scripts: self.scripts.files(),
            hooks: self.scripts.functions().count(),
            jobs: self.jobs.len(),
        }
    }
}

/// The case flow's policy (`case_flow:`), checked.
#[derive(Debug, Default)]
pub struct CaseFlow {
    pub triage: Option<(WorkDuration, WorkDuration)>,
    pub extensions: Option<Requests>,
    pub suspensions: Option<Requests>,
    pub verification: Option<(WorkDuration, VerificationLapse)>,
    /// Categories whose resolution needs a photo.
    pub after_photos: Vec<Ix>,
}

#[derive(Debug)]
pub struct Requests {
    pub decided_by: Target,
    pub decide_within: WorkDuration,
    pub on_lapse: OnLapse,
    pub max: Option<u32>,
    pub longest: Option<WorkDuration>,
}
