//! Scorecards: each department's and each unit's figures over a period, with the points the
//! rules' `scoring:` section gives them. The store counts; the rules score; the weekly scorecard
//! and `GET /api/v1/scorecards` both come through here, so both read the same definitions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use escalade_rules::RuleSet;
use escalade_rules::scoring::{DepartmentFigures, Score, UnitFigures};
use serde::Serialize;

use crate::store::{Result, Store};

#[derive(Clone, Debug, Serialize)]
pub struct DepartmentCard {
    pub name: String,
    #[serde(flatten)]
    pub figures: DepartmentFigures,
    /// None when the rules score no department figure.
    pub score: Option<Score>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UnitCard {
    pub name: String,
    pub tier: String,
    #[serde(flatten)]
    pub figures: UnitFigures,
    pub score: Option<Score>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scorecards {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub departments: Vec<DepartmentCard>,
    pub units: Vec<UnitCard>,
}

/// What to show: departments' cards and units' cards.
#[derive(Clone, Debug)]
pub struct Which {
    pub departments: Show,
    /// `Only(u)`: the units of `u`'s subtree.
    pub units: Show,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Show {
    None,
    All,
    Only(String),
}

impl Default for Which {
    fn default() -> Self {
        Which {
            departments: Show::All,
            units: Show::All,
        }
    }
}

/// Every department of the rules, and every unit of the scored tier that had anything to count
/// (or, with `which`, the ones asked for), in the rules' order, names in `locale`.
pub async fn scorecards(
    store: &Store,
    rules: &RuleSet,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    which: &Which,
    locale: &str,
) -> Result<Scorecards> {
    let org = &rules.org;
    let scoring = &rules.scoring;
    let mut departments = Vec::new();
    if which.departments != Show::None {
        let counted = store.scorecard(from, to).await?;
        for d in &org.departments {
            if matches!(&which.departments, Show::Only(w) if *w != d.id) {
                continue;
            }
            let figures = counted
                .iter()
                .find(|c| c.department == d.id)
                .cloned()
                .unwrap_or_else(|| DepartmentFigures {
                    department: d.id.clone(),
                    ..Default::default()
                });
            departments.push(DepartmentCard {
                name: d.names.get(locale).to_string(),
                score: (!scoring.departments.is_empty()).then(|| scoring.department(&figures)),
                figures,
            });
        }
    }
    let mut units = Vec::new();
    if which.units != Show::None {
        let within = match &which.units {
            Show::Only(u) => org.unit(u),
            _ => None,
        };
        // Each issue's unit rolled up to the scored tier; an issue reported above that tier
        // belongs to no unit of it.
        let mut rolled: BTreeMap<u32, UnitFigures> = BTreeMap::new();
        for f in store.unit_figures(from, to).await? {
            let Some(u) = org
                .unit(&f.unit)
                .and_then(|u| org.unit_at_tier(u, scoring.unit_tier))
            else {
                continue;
            };
            if within.is_some_and(|w| !org.in_subtree(u, w)) {
                continue;
            }
            *rolled.entry(u).or_insert_with(|| UnitFigures {
                unit: org.units[u as usize].id.clone(),
                ..Default::default()
            }) += &f;
        }
        let tier = org.tiers[scoring.unit_tier as usize].id.clone();
        for (u, figures) in rolled {
            units.push(UnitCard {
                name: org.units[u as usize].names.get(locale).to_string(),
                tier: tier.clone(),
                score: (!scoring.units.is_empty()).then(|| scoring.unit(&figures)),
                figures,
            });
        }
    }
    Ok(Scorecards {
        from,
        to,
        departments,
        units,
    })
}
