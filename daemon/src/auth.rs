//! Who may do what: bearer tokens, stored only as hashes, each with a role and a scope.
//!
//! - reporter, scoped to a unit subtree: submits there; confirms, rejects, evaluates and closes
//!   at grid level the issues of that subtree.
//! - department, scoped to a department: sees and handles the issues assigned to it: acknowledges,
//!   notes progress, resolves, returns (its primary issues), asks for more time or a stopped
//!   clock, resumes a suspended issue and rates the report. The dispatcher of an issue (the
//!   triage department, or a route's `return_to`) assigns an issue it holds elsewhere and marks
//!   duplicates; the triage department, the command centre, sees every issue.
//! - leader, scoped to a unit subtree: sees it, reassigns, records meeting outcomes, marks
//!   duplicates, resumes suspended issues.
//! - admin: everything.
//!
//! A pending extension or suspension request is decided by whom the policy names
//! (`case_flow.*.decided_by`): a leader of the unit at that tier or above, or a department.
//! Anyone who may see an issue may comment on it.

use escalade_rules::decide::Decider;
use escalade_rules::{Event, Issue, IssueState, RuleSet};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Reporter,
    Department,
    Leader,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "reporter" => Role::Reporter,
            "department" => Role::Department,
            "leader" => Role::Leader,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reporter => "reporter",
            Role::Department => "department",
            Role::Leader => "leader",
            Role::Admin => "admin",
        }
    }
}

/// The caller of a request, as its token says.
#[derive(Clone, Debug)]
pub struct Actor {
    pub token: i64,
    pub role: Role,
    pub scope: Option<String>,
}

impl Actor {
    /// How events record their actor: `department:urban#3` (role, scope, token id).
    pub fn name(&self) -> String {
        match &self.scope {
            Some(s) => format!("{}:{s}#{}", self.role.as_str(), self.token),
            None => format!("{}#{}", self.role.as_str(), self.token),
        }
    }

    /// What a refusal says: `a department token for urban may not {what}`.
    pub fn may_not(&self, what: &str) -> String {
        format!(
            "a {} token{} may not {what}",
            self.role.as_str(),
            self.scope
                .as_ref()
                .map(|s| format!(" for {s}"))
                .unwrap_or_default()
        )
    }

    /// Whether `unit` lies in the subtree this leader's (or reporter's) scope names.
    pub fn in_subtree(&self, rules: &RuleSet, unit: &str) -> bool {
        let org = &rules.org;
        match (
            self.scope.as_deref().and_then(|s| org.unit(s)),
            org.unit(unit),
        ) {
            (Some(scope), Some(u)) => org.in_subtree(u, scope),
            _ => false,
        }
    }

    /// May submit an issue in `unit`.
    pub fn may_submit(&self, rules: &RuleSet, unit: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Reporter | Role::Leader => self.in_subtree(rules, unit),
            Role::Department => false,
        }
    }

    /// May see an issue.
    pub fn may_see(&self, rules: &RuleSet, issue: &Issue, state: &IssueState) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Reporter | Role::Leader => self.in_subtree(rules, &issue.unit),
            Role::Department => self.scope.as_ref().is_some_and(|d| {
                state.departments.contains(d)
                    || state.returned_by.as_ref() == Some(d)
                    || rules.org.departments[rules.settings.triage as usize].id == *d
                    || rules.decider(issue, state) == Some(Decider::Department(d.clone()))
            }),
        }
    }

    /// Whether the policy has this caller decide the request waiting on the issue.
    fn decides(&self, rules: &RuleSet, issue: &Issue, state: &IssueState) -> bool {
        match (rules.decider(issue, state), self.role, &self.scope) {
            (Some(Decider::Leader(unit)), Role::Leader, Some(scope)) => {
                let org = &rules.org;
                match (org.unit(&unit), org.unit(scope)) {
                    (Some(u), Some(s)) => org.in_subtree(u, s),
                    _ => false,
                }
            }
            (Some(Decider::Department(d)), Role::Department, Some(scope)) => d == *scope,
            _ => false,
        }
    }

    /// May post this event to an issue it can see.
    pub fn may_act(
        &self,
        rules: &RuleSet,
        issue: &Issue,
        state: &IssueState,
        event: &Event,
    ) -> bool {
        if !self.may_see(rules, issue, state) {
            return false;
        }
        if matches!(event, Event::Commented { .. }) {
            return true;
        }
        match self.role {
            Role::Admin => true,
            Role::Reporter => matches!(
                event,
                Event::Confirmed
                    | Event::Rejected { .. }
                    | Event::Evaluated { .. }
                    | Event::ClosedAtGrid { .. }
            ),
            Role::Department => {
                let scope = self.scope.as_deref().unwrap_or_default();
                let holds = state.departments.iter().any(|d| d == scope);
                let dispatches = rules.dispatcher(state) == scope;
                match event {
                    Event::Acknowledged
                    | Event::Progress { .. }
                    | Event::Resolved { .. }
                    | Event::ExtensionRequested { .. }
                    | Event::SuspensionRequested { .. }
                    | Event::Resumed { .. } => holds,
                    Event::Returned { .. } => {
                        state.departments.first().map(String::as_str) == Some(scope)
                    }
                    Event::ReportRated { .. } => {
                        holds || state.returned_by.as_deref() == Some(scope)
                    }
                    Event::Reassigned { .. } => dispatches && holds,
                    Event::Duplicate { .. } => dispatches,
                    Event::RequestDecided { .. } => self.decides(rules, issue, state),
                    _ => false,
                }
            }
            Role::Leader => match event {
                Event::Reassigned { .. }
                | Event::MeetingOutcome { .. }
                | Event::Duplicate { .. }
                | Event::Resumed { .. } => true,
                Event::RequestDecided { .. } => self.decides(rules, issue, state),
                _ => false,
            },
        }
    }
}

/// A new random token (256 bits, hex) and the hash that is stored.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("esc_{hex}");
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// Checks a token's role and scope against the rules before it is created.
pub fn check_scope(rules: &RuleSet, role: Role, scope: Option<&str>) -> Result<(), String> {
    match (role, scope) {
        (Role::Admin, None) => Ok(()),
        (Role::Admin, Some(_)) => Err("an admin token has no scope".into()),
        (_, None) => Err(format!("a {} token needs --scope", role.as_str())),
        (Role::Department, Some(d)) => rules
            .org
            .department(d)
            .map(|_| ())
            .ok_or_else(|| format!("unknown department `{d}`")),
        (Role::Reporter | Role::Leader, Some(u)) => rules
            .org
            .unit(u)
            .map(|_| ())
            .ok_or_else(|| format!("unknown unit `{u}`")),
    }
}
