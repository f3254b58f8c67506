//! Who may do what: bearer tokens, stored only as hashes, each with a role, a scope and an
//! owner: the person it acts as, or the named integration it serves (tokens made before owners
//! existed have neither).
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
//! - kiosk, without a scope: reads the city's wall (the console's big screen: counts and a
//!   ticker, no issue's details) and nothing else; it never acts.
//!
//! A pending extension or suspension request is decided by whom the policy names
//! (`case_flow.*.decided_by`): a leader of the unit at that tier or above, or a department.
//! Anyone who may see an issue may comment on it.
//!
//! Who reports: a person's token reports as its person (the issue's `reporter` is the person;
//! naming another is refused). An admin token or an integration's token may name any
//! `reporter`: it submits on that person's behalf, and the `reported` event's actor says so
//! (`admin#1 on behalf of p-g-0001`). A token without an owner may not name a reporter unless
//! it is an admin's.
//!
//! `derive` gives a person's token its role and scope from the organisation: a department's
//! contact (or a person on its rota) acts for the department, a grid's leader reports in the
//! grid (a unit of the lowest tier), the leader of a higher unit leads its subtree.

use chrono::{DateTime, Utc};
use escalade_rules::decide::Decider;
use escalade_rules::{Event, Issue, IssueState, RuleSet};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Reporter,
    Department,
    Leader,
    Admin,
    Kiosk,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "reporter" => Role::Reporter,
            "department" => Role::Department,
            "leader" => Role::Leader,
            "admin" => Role::Admin,
            "kiosk" => Role::Kiosk,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reporter => "reporter",
            Role::Department => "department",
            Role::Leader => "leader",
            Role::Admin => "admin",
            Role::Kiosk => "kiosk",
        }
    }
}

/// What a token grants: its role, its scope and its owner (a person or an integration, at
/// most one; neither for a token made before owners existed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub scope: Option<String>,
    pub person: Option<String>,
    pub integration: Option<String>,
}

impl Grant {
    /// A grant with no owner: what tokens made before owners existed are.
    pub fn unowned(role: Role, scope: Option<&str>) -> Grant {
        Grant {
            role,
            scope: scope.map(str::to_string),
            person: None,
            integration: None,
        }
    }

    /// `reporter for g-0001 as p-g-0001`: how `token create` describes what it made.
    pub fn describe(&self) -> String {
        let mut d = self.role.as_str().to_string();
        if let Some(s) = &self.scope {
            d.push_str(&format!(" for {s}"));
        }
        if let Some(p) = &self.person {
            d.push_str(&format!(" as {p}"));
        }
        if let Some(i) = &self.integration {
            d.push_str(&format!(" as integration {i}"));
        }
        d
    }
}

/// The caller of a request, as its token says.
#[derive(Clone, Debug)]
pub struct Actor {
    pub token: i64,
    pub role: Role,
    pub scope: Option<String>,
    /// The person the token acts as.
    pub person: Option<String>,
    /// The integration the token serves.
    pub integration: Option<String>,
}

impl Actor {
    /// The caller holding token `token`, which grants `grant`.
    pub fn new(token: i64, grant: Grant) -> Actor {
        Actor {
            token,
            role: grant.role,
            scope: grant.scope,
            person: grant.person,
            integration: grant.integration,
        }
    }

    /// How events record their actor: role, scope, token id, then the owner in parentheses:
    /// `reporter:g-0001#3(p-g-0001)` (a person's), `admin#5(integration:wechat)` (an
    /// integration's), `department:urban#2` (a token without an owner). `replay::actor_of`
    /// reads it back.
    pub fn name(&self) -> String {
        let mut n = match &self.scope {
            Some(s) => format!("{}:{s}#{}", self.role.as_str(), self.token),
            None => format!("{}#{}", self.role.as_str(), self.token),
        };
        if let Some(p) = &self.person {
            n.push_str(&format!("({p})"));
        } else if let Some(i) = &self.integration {
            n.push_str(&format!("(integration:{i})"));
        }
        n
    }

    /// What a refusal says: `a department token for urban may not {what}`, with its owner when
    /// it has one (`a reporter token for g-0001 of p-g-0001 may not ...`).
    pub fn may_not(&self, what: &str) -> String {
        let scope = self
            .scope
            .as_ref()
            .map(|s| format!(" for {s}"))
            .unwrap_or_default();
        let owner = match (&self.person, &self.integration) {
            (Some(p), _) => format!(" of {p}"),
            (None, Some(i)) => format!(" of integration {i}"),
            (None, None) => String::new(),
        };
        format!(
            "a {} token{scope}{owner} may not {what}",
            self.role.as_str()
        )
    }

    /// Why this caller may not submit an issue naming `reporter`, if it may not: a person's
    /// token reports as its person only; a token without an owner names nobody unless it is
    /// an admin's; an admin's or an integration's token may name anyone (on their behalf).
    pub fn may_not_name_reporter(&self, reporter: &str) -> Option<String> {
        if self.role == Role::Admin || self.integration.is_some() {
            return None;
        }
        match &self.person {
            Some(p) if p == reporter => None,
            Some(p) => Some(self.may_not(&format!(
                "report as {reporter}: a person's token reports as its person ({p}); only an \
                 admin or an integration reports on someone's behalf"
            ))),
            None => Some(self.may_not(&format!(
                "name a reporter ({reporter}): it belongs to no person; only an admin or an \
                 integration reports on someone's behalf"
            ))),
        }
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
            Role::Department | Role::Kiosk => false,
        }
    }

    /// May see an issue.
    pub fn may_see(&self, rules: &RuleSet, issue: &Issue, state: &IssueState) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Reporter | Role::Leader => self.in_subtree(rules, &issue.unit),
            Role::Kiosk => false,
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
            Role::Kiosk => false,
        }
    }
}

/// Why a bearer token was refused: the API's 401 code and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

/// The caller holding `token` at `now`: refused if the token is unknown or revoked
/// (`invalid_token`) or expired (`token_expired`). A use is recorded (`Store::token_used`: at
/// most once a minute per token, so no write is added to every request).
pub async fn authenticate(
    store: &crate::store::Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Result<Actor, Refused>, crate::store::StoreError> {
    let refused = |code, message: String| Ok(Err(Refused { code, message }));
    let Some(row) = store.token(&hash(token)).await? else {
        return refused("invalid_token", "the token is unknown or revoked".into());
    };
    if let Some(expired) = row.expires_at.filter(|e| *e <= now) {
        return refused(
            "token_expired",
            format!(
                "token {} expired at {}: ask for a new one",
                row.id,
                expired.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        );
    }
    let Some(role) = Role::parse(&row.role) else {
        return refused("invalid_token", "the token's role is unknown".into());
    };
    if let Err(e) = store.token_used(row.id, now).await {
        // The request goes on: a missed "last used" is not worth refusing it.
        tracing::warn!(token = row.id, error = %e, "cannot record the token's use");
    }
    Ok(Ok(Actor {
        token: row.id,
        role,
        scope: row.scope,
        person: row.person,
        integration: row.integration,
    }))
}

/// A token's lifetime as `token create --expires-in` takes it: `90d`, `12h`, `30m`, `1d12h`
/// (days, hours, minutes, seconds, in that order), longer than zero.
pub fn parse_lifetime(s: &str) -> Result<chrono::TimeDelta, String> {
    match escalade_rules::notify::parse_wall_duration(s) {
        Some(d) if d > chrono::TimeDelta::zero() => Ok(d),
        Some(_) => Err(format!(
            "--expires-in `{s}`: a lifetime must be longer than zero"
        )),
        None => Err(format!(
            "--expires-in `{s}` is not a duration: write it as `90d`, `12h`, `30m` or `1d12h` \
             (days, hours, minutes, seconds, in that order)"
        )),
    }
}

/// A token's label: at most 200 characters, no control characters (it is printed in a table).
pub fn check_label(label: &str) -> Result<(), String> {
    if label.trim().is_empty() {
        return Err("--label is empty: say what the token is for, or leave --label out".into());
    }
    if label.chars().count() > 200 {
        return Err(format!(
            "--label is {} characters long: at most 200",
            label.chars().count()
        ));
    }
    if label.chars().any(char::is_control) {
        return Err("--label holds a control character (a tab or a line break, say)".into());
    }
    Ok(())
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

/// An integration's name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, so that an actor's
/// name stays readable and unambiguous.
pub fn check_integration(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid integration name `{name}`: 1 to 64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// The tokens the organisation gives `person`, as `(role, scope)`, in the order of the rules:
/// a department token for each department it is a contact of (or on the rota of), a reporter
/// token for each grid (unit of the lowest tier) it leads, a leader token for each higher unit
/// it leads. `None` for a person the organisation does not know.
pub fn roles_of(rules: &RuleSet, person: &str) -> Option<Vec<(Role, String)>> {
    let org = &rules.org;
    let ix = org.person(person)?;
    let mut roles = Vec::new();
    for d in &org.departments {
        let on_rota = d.rota.as_ref().is_some_and(|r| r.people.contains(&ix));
        if d.contacts.contains(&ix) || on_rota {
            roles.push((Role::Department, d.id.clone()));
        }
    }
    for u in &org.units {
        if u.leader == Some(ix) {
            // Tier 0 is the first of the ladder: the grid.
            let role = if u.tier == 0 {
                Role::Reporter
            } else {
                Role::Leader
            };
            roles.push((role, u.id.clone()));
        }
    }
    Some(roles)
}

/// `--role reporter --scope g-0001, --role leader --scope c-001`.
fn choices(roles: &[(Role, String)]) -> String {
    roles
        .iter()
        .map(|(r, s)| format!("--role {} --scope {s}", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A person's token: its role and scope from the organisation (`roles_of`), or the ones asked
/// for, which must be among those. `--role admin` makes an admin token of any person the
/// organisation knows. Every refusal names what was wrong and what would do.
pub fn derive(
    rules: &RuleSet,
    person: &str,
    role: Option<Role>,
    scope: Option<&str>,
) -> Result<Grant, String> {
    let roles = roles_of(rules, person)
        .ok_or_else(|| format!("unknown person `{person}`: the organisation has no such person"))?;
    let grant = |role: Role, scope: Option<String>| Grant {
        role,
        scope,
        person: Some(person.to_string()),
        integration: None,
    };
    if role == Some(Role::Admin) {
        return match scope {
            None => Ok(grant(Role::Admin, None)),
            Some(_) => Err("an admin token has no scope".into()),
        };
    }
    if roles.is_empty() {
        return Err(format!(
            "person `{person}` has no role in the organisation: they are no department's contact \
             and lead no unit (an administrator's token is made with --role admin)"
        ));
    }
    let fitting: Vec<&(Role, String)> = roles
        .iter()
        .filter(|(r, s)| role.is_none_or(|want| want == *r) && scope.is_none_or(|want| want == s))
        .collect();
    match fitting.as_slice() {
        [(r, s)] => Ok(grant(*r, Some(s.clone()))),
        [] => {
            let asked = match (role, scope) {
                (Some(r), Some(s)) => format!("a {} token for {s}", r.as_str()),
                (Some(r), None) => format!("a {} token", r.as_str()),
                (None, Some(s)) => format!("a token for {s}"),
                (None, None) => "a token".into(),
            };
            Err(format!(
                "person `{person}` may not hold {asked}: the organisation gives them {}",
                choices(&roles)
            ))
        }
        several => Err(format!(
            "person `{person}` has several roles in the organisation; choose one with --role and \
             --scope: {}",
            choices(&several.iter().map(|x| (*x).clone()).collect::<Vec<_>>())
        )),
    }
}

/// Checks a token's role and scope against the rules before it is created.
pub fn check_scope(rules: &RuleSet, role: Role, scope: Option<&str>) -> Result<(), String> {
    match (role, scope) {
        (Role::Admin, None) => Ok(()),
        (Role::Admin, Some(_)) => Err("an admin token has no scope".into()),
        (Role::Kiosk, None) => Ok(()),
        (Role::Kiosk, Some(_)) => Err("a kiosk token has no scope".into()),
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
