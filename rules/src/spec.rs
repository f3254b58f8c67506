//! The rule directory's YAML as written: plain serde structures, no cross-references resolved.
//!
//! Every struct refuses unknown fields, so a misspelt key is an error with a location rather
//! than a silently ignored setting. `load` turns these into the checked model.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::calendar::WorkDuration;

/// One top-level YAML file: any subset of the sections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub settings: Option<Settings>,
    pub tiers: Option<Vec<Tier>>,
    pub units: Option<Vec<Unit>>,
    pub unit_files: Option<Vec<String>>,
    pub people: Option<Vec<Person>>,
    pub people_files: Option<Vec<String>>,
    pub departments: Option<Vec<Department>>,
    pub calendars: Option<Vec<Calendar>>,
    pub deadlines: Option<BTreeMap<Priority, DeadlineSpec>>,
    pub categories: Option<Vec<Category>>,
    pub routes: Option<Vec<Route>>,
    pub ladders: Option<Vec<Ladder>>,
    pub meetings: Option<Vec<Meeting>>,
    pub templates: Option<BTreeMap<String, BTreeMap<String, TemplateVariants>>>,
    pub notifications: Option<Notifications>,
    pub jobs: Option<Vec<Job>>,
    pub case_flow: Option<CaseFlow>,
    pub scoring: Option<Scoring>,
}

/// The section names, in the order `Document` declares them, for "defined twice" checks.
pub const SECTIONS: &[&str] = &[
    "settings",
    "tiers",
    "units",
    "unit_files",
    "people",
    "people_files",
    "departments",
    "calendars",
    "deadlines",
    "categories",
    "routes",
    "ladders",
    "meetings",
    "templates",
    "notifications",
    "jobs",
    "case_flow",
    "scoring",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub locale: String,
    pub calendar: String,
    pub triage: String,
    pub ladder: Option<String>,
    #[serde(default)]
    pub hook_limits: HookLimits,
}

/// Sandbox limits of Rhai hooks. The defaults let a routing function of a few dozen lines run
/// comfortably while an endless loop is cut off within milliseconds by the operation limit.
/// Every limit but `timeout_ms` counts what the script does, so it stops a hook at the same
/// point on any machine; `timeout_ms`, wall-clock time, is a last resort against a hook that
/// is slow without being long (a helper called on huge input), and a hook it stops decides
/// nothing (see `Refusal::Overloaded`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HookLimits {
    pub max_operations: u64,
    pub max_call_depth: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub timeout_ms: u64,
}

impl Default for HookLimits {
    fn default() -> Self {
        HookLimits {
            max_operations: 100_000,
            max_call_depth: 32,
            max_expr_depth: 64,
            max_string_size: 4096,
            max_array_size: 1024,
            max_map_size: 256,
            timeout_ms: 2000,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Names {
    pub zh: Option<String>,
    pub en: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub id: String,
    #[serde(default)]
    pub names: Names,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub id: String,
    pub tier: String,
    pub parent: Option<String>,
    pub leader: Option<String>,
    #[serde(default)]
    pub names: Names,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub locale: Option<String>,
    pub channels: Option<Vec<Channel>>,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub id: String,
    #[serde(default)]
    pub names: Names,
    #[serde(default)]
    pub contacts: Vec<String>,
    pub calendar: Option<String>,
    pub rota: Option<Rota>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rota {
    /// Local date-time of the first hand-over, `2026-01-05T08:00`.
    pub start: String,
    /// Wall-clock hours between hand-overs, `24h`.
    pub every: String,
    pub people: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calendar {
    pub id: String,
    pub timezone: String,
    pub working_days: Vec<String>,
    pub hours: Vec<String>,
    #[serde(default)]
    pub holiday_files: Vec<String>,
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    #[serde(default)]
    pub makeup_days: Vec<MakeupDay>,
}

/// A holiday file under `calendars/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolidayFile {
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    #[serde(default)]
    pub makeup_days: Vec<MakeupDay>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    pub from: chrono::NaiveDate,
    pub to: Option<chrono::NaiveDate>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakeupDay {
    pub date: chrono::NaiveDate,
    pub name: Option<String>,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineSpec {
    pub acknowledge: Option<WorkDuration>,
    pub resolve: Option<WorkDuration>,
    pub remind_before: Option<Vec<WorkDuration>>,
    pub calendar: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub code: String,
    #[serde(default)]
    pub names: Names,
    pub department: String,
    pub priority: Option<Priority>,
    #[serde(default)]
    pub deadlines: BTreeMap<Priority, DeadlineSpec>,
    pub ladder: Option<String>,
    pub priority_hook: Option<String>,
    pub deadline_hook: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(default)]
    pub when: RouteWhen,
    pub department: Option<String>,
    pub department_hook: Option<String>,
    #[serde(default)]
    pub co_assign: Vec<String>,
    /// Where a department returns (退回) an issue this route chose: this department instead of
    /// the triage department.
    pub return_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteWhen {
    pub category: Option<Vec<String>>,
    pub units: Option<Vec<String>>,
    pub priority: Option<Vec<Priority>>,
    pub text_any: Option<Vec<String>>,
    pub time: Option<String>,
    pub working: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    pub id: String,
    pub steps: Vec<Step>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    AcknowledgeOverdue,
    ResolveOverdue,
    Rejected,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::AcknowledgeOverdue => "acknowledge_overdue",
            Trigger::ResolveOverdue => "resolve_overdue",
            Trigger::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub on: Trigger,
    pub actions: Vec<Action>,
    #[serde(default)]
    pub repeat: bool,
}

/// One action of a ladder step: a map with exactly one action key, plus an optional template.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub remind: Option<String>,
    pub notify: Option<Target>,
    pub raise: Option<String>,
    pub extend: Option<WorkDuration>,
    pub supervise: Option<String>,
    pub convene: Option<String>,
    pub template: Option<String>,
}

/// Who is told: `leader`, `departments`, `reporter`, or `{tier: T}`, `{department: D}`,
/// `{person: P}`. Parsed by hand so that a wrong form gets an error naming the accepted ones,
/// rather than serde's "did not match any variant".
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub enum Target {
    Leader,
    Departments,
    Reporter,
    Tier(String),
    Department(String),
    Person(String),
}

const TARGET_FORMS: &str =
    "expected `leader`, `departments`, `reporter`, `{tier: T}`, `{department: D}` or `{person: P}`";

impl TryFrom<serde_yaml::Value> for Target {
    type Error = String;

    fn try_from(value: serde_yaml::Value) -> Result<Self, String> {
        use serde_yaml::Value;
        match value {
            Value::String(s) => match s.as_str() {
                "leader" => Ok(Target::Leader),
                "departments" => Ok(Target::Departments),
                "reporter" => Ok(Target::Reporter),
                other => Err(format!("unknown recipient `{other}`: {TARGET_FORMS}")),
            },
            Value::Mapping(m) if m.len() == 1 => {
                let (k, v) = m.into_iter().next().expect("one entry");
                let (Value::String(k), Value::String(v)) = (k, v) else {
                    return Err(format!("invalid recipient: {TARGET_FORMS}"));
                };
                match k.as_str() {
                    "tier" => Ok(Target::Tier(v)),
                    "department" => Ok(Target::Department(v)),
                    "person" => Ok(Target::Person(v)),
                    other => Err(format!("unknown recipient key `{other}`: {TARGET_FORMS}")),
                }
            }
            _ => Err(format!("invalid recipient: {TARGET_FORMS}")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meeting {
    pub id: String,
    #[serde(default)]
    pub names: Names,
    #[serde(default)]
    pub when: MeetingWhen,
    pub schedule: Schedule,
    pub invite: Vec<Target>,
    pub template: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingWhen {
    pub departments_at_least: Option<u32>,
    pub escalations_at_least: Option<u32>,
    pub rejections_at_least: Option<u32>,
    pub hook: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub calendar: Option<String>,
    #[serde(default)]
    pub working_days_later: u32,
    pub at: String,
}

/// The variants of one template in one locale.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateVariants {
    pub email: Option<EmailTemplate>,
    pub sms: Option<SmsTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsTemplate {
    pub body: String,
}

/// How messages are delivered: quiet hours, digests, SMS length. Every part is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    pub quiet_hours: Option<QuietHours>,
    pub digest: Option<Digest>,
    pub sms: Option<Sms>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// Local `HH:MM` on the calendar's time zone; the window may wrap midnight.
    pub from: String,
    pub to: String,
    /// Default: settings.calendar.
    pub calendar: Option<String>,
    /// The channels held; default `[sms]`.
    pub channels: Option<Vec<Channel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// Wall-clock duration, `15m`.
    pub window: String,
    /// Default `[email]`; only email is merged.
    pub channels: Option<Vec<Channel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sms {
    pub max_segments: Option<u32>,
}

/// A scheduled job: a report sent on a cron schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub id: String,
    /// Standard five-field cron: minute hour day-of-month month day-of-week.
    pub cron: String,
    /// Its time zone; default settings.calendar.
    pub calendar: Option<String>,
    /// `overdue_digest` or `scorecard`.
    pub report: String,
    /// `overdue_digest`: which tiers' leaders get it; default all.
    pub tiers: Option<Vec<String>>,
    /// `scorecard`: the wall-clock window it covers, `7d`; default 7d.
    pub period: Option<String>,
}

/// The steps of a case beyond report, handling and escalation: returns, extensions, suspensions,
/// verification and after-photos (`case_flow:`). Every part is optional; a part left out is a
/// step the city does not allow (extensions, suspensions) or does not hold to a deadline
/// (triage, verification).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFlow {
    /// The triage department's own deadlines, for an issue a rule failed on at its report and
    /// for an issue returned to it: it escalates on its category's ladder like any issue.
    pub triage: Option<TriageDeadlines>,
    pub extensions: Option<Requests>,
    pub suspensions: Option<Requests>,
    pub verification: Option<VerificationSpec>,
    /// Categories whose resolution must carry a photo of the fixed site.
    #[serde(default)]
    pub after_photos: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageDeadlines {
    pub acknowledge: WorkDuration,
    pub resolve: WorkDuration,
}

/// Who decides a request, how soon, and what happens when they do not.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requests {
    /// `{tier: T}` (the leader of the unit at that tier), `{department: D}` (its
    /// contacts, such as the triage department) or `{person: P}`.
    pub decided_by: Target,
    /// Working time the decider has; when it runs out `on_lapse` decides.
    pub decide_within: WorkDuration,
    #[serde(default)]
    pub on_lapse: OnLapse,
    /// Requests granted at most (extensions; suspensions: times suspended).
    pub max: Option<u32>,
    /// The longest extension one request may ask for.
    pub longest: Option<WorkDuration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLapse {
    #[default]
    Refuse,
    Grant,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationSpec {
    /// Working time the reporter has to check a resolution on site (核查).
    pub within: WorkDuration,
    pub on_lapse: VerificationLapse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationLapse {
    /// Closed as confirmed, recorded as confirmed by lapse.
    Confirm,
    /// Closed, recorded as unverified.
    Unverified,
    /// The reporter's own leader is told and the reporter has the time again; a second lapse
    /// closes it as unverified.
    Escalate,
}

/// The points a scorecard gives each figure (`scoring:`; see `crate::scoring`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scoring {
    #[serde(default)]
    pub departments: Vec<FigurePoints>,
    pub units: Option<UnitScoring>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigurePoints {
    pub figure: String,
    pub points: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitScoring {
    /// The tier whose units are scored; the lowest (the grids) if left out.
    pub tier: Option<String>,
    pub figures: Vec<FigurePoints>,
}
