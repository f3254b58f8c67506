//! Warnings about a rule set that loads: rules that can never take effect.
//!
//! Each warning is certain from the YAML alone: a route that an earlier route always takes
//! first, a route that matches nothing, a ladder no category uses, a `repeat` that a later step
//! overrides. Anything that depends on what a hook returns or on the calendar is not judged.

use crate::diag::{Diagnostic, SourceFile};
use crate::model::{Route, RuleSet};
use crate::spec::Priority;

impl RuleSet {
    /// What `escalade check` warns about, in file order. The rule set is usable as it is.
    pub fn warnings(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        if let Some(file) = self.section_file("routes") {
            self.route_warnings(&file, &mut out);
        }
        if let Some(file) = self.section_file("ladders") {
            self.ladder_warnings(&file, &mut out);
        }
        out
    }

    /// The kept YAML file that holds `section`, indexed for positions.
    fn section_file(&self, section: &str) -> Option<SourceFile> {
        self.files
            .iter()
            .filter(|(name, _)| {
                !name.contains('/') && (name.ends_with(".yaml") || name.ends_with(".yml"))
            })
            .find_map(|(name, text)| {
                let mut f = SourceFile::new(name.clone(), text.clone());
                (f.index_yaml().is_ok() && f.has(section)).then_some(f)
            })
    }

    fn route_warnings(&self, file: &SourceFile, out: &mut Vec<Diagnostic>) {
        for (j, later) in self.routes.iter().enumerate() {
            let at = format!("routes[{j}]");
            if let Some(key) = matches_nothing(later) {
                out.push(
                    file.at_path(
                        &format!("{at}.when.{key}"),
                        format!(
                            "route `{}` matches no issue: `when.{key}` is empty",
                            later.name
                        ),
                    )
                    .with_help(format!("list at least one value, or remove `{key}`")),
                );
                continue;
            }
            let Some((i, earlier)) = self.routes[..j]
                .iter()
                .enumerate()
                .find(|(_, e)| self.takes_all_of(e, later))
            else {
                continue;
            };
            let line = file
                .at_path(&format!("routes[{i}]"), "")
                .location
                .map(|l| l.line)
                .unwrap_or(1);
            out.push(
                file.at_path(
                    &at,
                    format!(
                        "route `{}` can never match: route `{}` (line {line}) comes first and matches every issue it would",
                        later.name, earlier.name
                    ),
                )
                .with_help(format!(
                    "routes are tried in order and the first match wins; move `{}` above `{}`, or narrow `{}`",
                    later.name, earlier.name, earlier.name
                )),
            );
        }
    }

    /// Whether every issue that `later`'s conditions let through also meets every condition of
    /// `earlier`, so that `earlier` always takes it first. A route's target is no condition: a
    /// hook route whose conditions hold takes the issue whatever the hook does (a failing hook
    /// sends it to triage, it does not fall through).
    fn takes_all_of(&self, earlier: &Route, later: &Route) -> bool {
        let org = &self.org;
        let categories = subset(
            &earlier.categories,
            &later.categories,
            |c, cs| cs.contains(c),
            |cs| (0..self.categories.len() as u32).all(|c| cs.contains(&c)),
        );
        // A unit lies in an earlier subtree when one of the earlier units is it or an
        // ancestor of it: an issue may be reported at that very unit.
        let units = subset(
            &earlier.units,
            &later.units,
            |&u, us| us.iter().any(|&a| org.in_subtree(u, a)),
            |us| {
                (0..org.units.len() as u32)
                    .filter(|&u| org.units[u as usize].parent.is_none())
                    .all(|root| us.contains(&root))
            },
        );
        let priorities = subset(
            &earlier.priorities,
            &later.priorities,
            |p, ps| ps.contains(p),
            |ps| Priority::ALL.iter().all(|p| ps.contains(p)),
        );
        // A later word that contains an earlier word (as text) is found wherever it is found;
        // an earlier word list is never met by every text.
        let text = subset(
            &earlier.text_any,
            &later.text_any,
            |w, ws| ws.iter().any(|e| w.contains(e.as_str())),
            |_| false,
        );
        let time = match (earlier.time, later.time) {
            (None, _) => true,
            (Some(e), Some(l)) => {
                let (e, l) = (minutes(e), minutes(l));
                l.iter().zip(e.iter()).all(|(l, e)| !l || *e)
            }
            (Some(e), None) => minutes(e).iter().all(|m| *m),
        };
        // Whether a time of day is working time depends on the calendar: only the same
        // condition is certain.
        let working = earlier.working.is_none() || earlier.working == later.working;
        categories && units && priorities && text && time && working
    }

    fn ladder_warnings(&self, file: &SourceFile, out: &mut Vec<Diagnostic>) {
        for (i, ladder) in self.ladders.iter().enumerate() {
            if !self.categories.iter().any(|c| c.ladder as usize == i) {
                out.push(
                    file.at_path(
                        &format!("ladders[{i}].id"),
                        format!("ladder `{}` is used by no category: its steps never run", ladder.id),
                    )
                    .with_help("name it in a category's `ladder`, or in `settings.ladder` for the categories that name none"),
                );
                continue;
            }
            for (j, step) in ladder.steps.iter().enumerate() {
                if !step.repeat {
                    continue;
                }
                let Some(k) = (j + 1..ladder.steps.len()).find(|&k| ladder.steps[k].on == step.on)
                else {
                    continue;
                };
                out.push(
                    file.at_key(
                        &format!("ladders[{i}].steps[{j}].repeat"),
                        format!(
                            "`repeat` of step {} never takes effect: step {}, also on {}, runs at the next occurrence, and only the last step of a trigger repeats",
                            j + 1,
                            k + 1,
                            step.on.as_str()
                        ),
                    )
                    .with_help(format!(
                        "remove `repeat` here, or make this the last {} step",
                        step.on.as_str()
                    )),
                );
            }
        }
    }
}

/// Whether the later condition implies the earlier one: the earlier sets no condition, or
/// each later value is `covered` by the earlier values, or the later sets none and the earlier
/// values take `all`.
fn subset<T>(
    earlier: &Option<Vec<T>>,
    later: &Option<Vec<T>>,
    covered: impl Fn(&T, &[T]) -> bool,
    all: impl Fn(&[T]) -> bool,
) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(e), Some(l)) => l.iter().all(|x| covered(x, e)),
        (Some(e), None) => all(e),
    }
}

/// The minutes of the day inside a window `[start, end)`, which wraps midnight when
/// `start > end`.
fn minutes((start, end): (u32, u32)) -> Vec<bool> {
    (0..24 * 60)
        .map(|m| {
            if start < end {
                m >= start && m < end
            } else {
                m >= start || m < end
            }
        })
        .collect()
}

/// The condition of a route that no issue meets: an empty list.
fn matches_nothing(r: &Route) -> Option<&'static str> {
    if r.categories.as_ref().is_some_and(Vec::is_empty) {
        Some("category")
    } else if r.units.as_ref().is_some_and(Vec::is_empty) {
        Some("units")
    } else if r.priorities.as_ref().is_some_and(Vec::is_empty) {
        Some("priority")
    } else if r.text_any.as_ref().is_some_and(Vec::is_empty) {
        Some("text_any")
    } else {
        None
    }
}
