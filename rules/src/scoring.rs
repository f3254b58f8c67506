//! Scorecards (综合评价): the figures of a period per department and per unit, and the points a
//! policy's `scoring:` section gives them, as assessment sheets do (on-time closure rate × 60 +
//! ...). The daemon counts the figures from its store; the weekly scorecard and
//! `GET /api/v1/scorecards` both score them here, so both read the same definitions.
//!
//! Every figure is a rate between 0 and 1 of two counts. A figure with nothing to count in the
//! period (no resolution to be on time, no return to be right) scores nothing and is left out of
//! the points it could have given: a score is `points` out of `out_of`, the weights of the
//! figures that were counted.

use serde::Serialize;

/// A department's counts over a period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DepartmentFigures {
    pub department: String,
    /// Issues it was assigned (at report, by reassignment or by a joint action).
    pub assigned: u64,
    pub acknowledged: u64,
    /// Acknowledged before its acknowledge deadline passed.
    pub acknowledged_on_time: u64,
    pub resolved: u64,
    /// Resolved before a resolve deadline passed since it last reopened; a granted extension
    /// moved that deadline, and a suspension stopped it.
    pub resolved_on_time: u64,
    /// Resolutions the reporter rejected (返工).
    pub reopened: u64,
    pub rated: u64,
    pub rating_sum: u64,
    /// Its returns (退回) that the dispatcher accepted, by assigning the issue elsewhere.
    pub returns_accepted: u64,
    /// Its returns that the dispatcher sent back to it.
    pub returns_rejected: u64,
    /// Issues a supervision notice (督办) named it on.
    pub supervised: u64,
    /// Of those, the ones resolved or closed now.
    pub supervised_resolved: u64,
}

/// A unit's counts over a period: of the reports made in its subtree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnitFigures {
    pub unit: String,
    pub reported: u64,
    /// The departments' verdicts on its reports (双向评价).
    pub rated_valid: u64,
    pub rated_invalid: u64,
    pub rated_duplicate: u64,
    pub rated_not_ours: u64,
    /// Resolutions its reporters confirmed on site within their time (核查).
    pub verified_on_time: u64,
    /// Resolutions nobody checked in time.
    pub verification_lapsed: u64,
}

impl std::ops::AddAssign<&UnitFigures> for UnitFigures {
    /// Adds another unit's counts (rolling grids up to a higher tier); the id stays.
    fn add_assign(&mut self, o: &UnitFigures) {
        self.reported += o.reported;
        self.rated_valid += o.rated_valid;
        self.rated_invalid += o.rated_invalid;
        self.rated_duplicate += o.rated_duplicate;
        self.rated_not_ours += o.rated_not_ours;
        self.verified_on_time += o.verified_on_time;
        self.verification_lapsed += o.verification_lapsed;
    }
}

/// What a department is scored on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DepartmentFigure {
    /// acknowledged on time / acknowledged
    AcknowledgedOnTime,
    /// resolved on time / resolved (按时结案率)
    ResolvedOnTime,
    /// 1 - reopened / resolved (返工率, turned into a score)
    WithoutRework,
    /// average rating / 5 (满意度)
    Satisfaction,
    /// returns accepted / returns decided (退回准确率)
    ReturnAccuracy,
    /// supervised issues resolved / supervised issues (督办案件办理)
    SupervisedResolved,
}

/// What a unit is scored on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitFigure {
    /// reports rated valid / reports rated
    ValidReports,
    /// verified on time / verifications due (按时核查率)
    VerifiedOnTime,
}

impl DepartmentFigure {
    pub const ALL: [DepartmentFigure; 6] = [
        DepartmentFigure::AcknowledgedOnTime,
        DepartmentFigure::ResolvedOnTime,
        DepartmentFigure::WithoutRework,
        DepartmentFigure::Satisfaction,
        DepartmentFigure::ReturnAccuracy,
        DepartmentFigure::SupervisedResolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DepartmentFigure::AcknowledgedOnTime => "acknowledged_on_time",
            DepartmentFigure::ResolvedOnTime => "resolved_on_time",
            DepartmentFigure::WithoutRework => "without_rework",
            DepartmentFigure::Satisfaction => "satisfaction",
            DepartmentFigure::ReturnAccuracy => "return_accuracy",
            DepartmentFigure::SupervisedResolved => "supervised_resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The rate, if there was anything to count.
    pub fn rate(self, f: &DepartmentFigures) -> Option<f64> {
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        match self {
            DepartmentFigure::AcknowledgedOnTime => ratio(f.acknowledged_on_time, f.acknowledged),
            DepartmentFigure::ResolvedOnTime => ratio(f.resolved_on_time, f.resolved),
            DepartmentFigure::WithoutRework => {
                ratio(f.reopened.min(f.resolved), f.resolved).map(|r| 1.0 - r)
            }
            DepartmentFigure::Satisfaction => ratio(f.rating_sum, 5 * f.rated),
            DepartmentFigure::ReturnAccuracy => {
                ratio(f.returns_accepted, f.returns_accepted + f.returns_rejected)
            }
            DepartmentFigure::SupervisedResolved => ratio(f.supervised_resolved, f.supervised),
        }
    }
}

impl UnitFigure {
    pub const ALL: [UnitFigure; 2] = [UnitFigure::ValidReports, UnitFigure::VerifiedOnTime];

    pub fn as_str(self) -> &'static str {
        match self {
            UnitFigure::ValidReports => "valid_reports",
            UnitFigure::VerifiedOnTime => "verified_on_time",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn rate(self, f: &UnitFigures) -> Option<f64> {
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        match self {
            UnitFigure::ValidReports => ratio(
                f.rated_valid,
                f.rated_valid + f.rated_invalid + f.rated_duplicate + f.rated_not_ours,
            ),
            UnitFigure::VerifiedOnTime => ratio(
                f.verified_on_time,
                f.verified_on_time + f.verification_lapsed,
            ),
        }
    }
}

/// The policy's `scoring:` section, checked.
#[derive(Clone, Debug, Default)]
pub struct Scoring {
    /// Each figure a department is scored on, with its points, in the order written.
    pub departments: Vec<(DepartmentFigure, f64)>,
    pub units: Vec<(UnitFigure, f64)>,
    /// The tier whose units are scored.
    pub unit_tier: u8,
}

/// One figure's part of a score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Item {
    pub figure: &'static str,
    /// The rate, 0 to 1; none when there was nothing to count.
    pub rate: Option<f64>,
    /// The points the policy gives the figure at a rate of 1.
    pub weight: f64,
    /// `rate × weight`, rounded to two decimals; none when not counted.
    pub points: Option<f64>,
}

/// A score: the sum of the items' points, out of the weights of the items counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    pub points: f64,
    pub out_of: f64,
    pub items: Vec<Item>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn score<F: Copy>(
    weights: &[(F, f64)],
    rate: impl Fn(F) -> Option<f64>,
    name: impl Fn(F) -> &'static str,
) -> Score {
    let mut s = Score::default();
    for &(f, weight) in weights {
        let r = rate(f);
        let points = r.map(|r| round2(r * weight));
        if let Some(p) = points {
            s.points += p;
            s.out_of += weight;
        }
        s.items.push(Item {
            figure: name(f),
            rate: r.map(|r| (r * 10_000.0).round() / 10_000.0),
            weight,
            points,
        });
    }
    s.points = round2(s.points);
    s.out_of = round2(s.out_of);
    s
}

impl Scoring {
    pub fn department(&self, f: &DepartmentFigures) -> Score {
        score(&self.departments, |x| x.rate(f), DepartmentFigure::as_str)
    }

    pub fn unit(&self, f: &UnitFigures) -> Score {
        score(&self.units, |x| x.rate(f), UnitFigure::as_str)
    }

    /// Whether the policy scores anything.
    pub fn is_empty(&self) -> bool {
        self.departments.is_empty() && self.units.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_the_rates_times_their_weights_out_of_the_weights_counted() {
        let s = Scoring {
            departments: vec![
                (DepartmentFigure::ResolvedOnTime, 60.0),
                (DepartmentFigure::Satisfaction, 20.0),
                (DepartmentFigure::ReturnAccuracy, 10.0),
            ],
            ..Default::default()
        };
        let f = DepartmentFigures {
            resolved: 4,
            resolved_on_time: 3,
            rated: 2,
            rating_sum: 9,
            ..Default::default()
        };
        let got = s.department(&f);
        // 3/4 × 60 = 45, 9/10 × 20 = 18; no return was decided: left out.
        assert_eq!(got.points, 63.0);
        assert_eq!(got.out_of, 80.0);
        assert_eq!(got.items[2].rate, None);
        assert_eq!(got.items[2].points, None);
        assert_eq!(got.items[0].rate, Some(0.75));
    }

    #[test]
    fn rework_is_scored_as_the_share_of_resolutions_that_held() {
        let f = DepartmentFigures {
            resolved: 5,
            reopened: 1,
            ..Default::default()
        };
        assert_eq!(DepartmentFigure::WithoutRework.rate(&f), Some(0.8));
        assert_eq!(
            DepartmentFigure::WithoutRework.rate(&DepartmentFigures::default()),
            None
        );
    }

    #[test]
    fn a_units_reports_are_scored_on_the_verdicts_and_the_checks() {
        let f = UnitFigures {
            rated_valid: 3,
            rated_not_ours: 1,
            verified_on_time: 1,
            verification_lapsed: 1,
            ..Default::default()
        };
        assert_eq!(UnitFigure::ValidReports.rate(&f), Some(0.75));
        assert_eq!(UnitFigure::VerifiedOnTime.rate(&f), Some(0.5));
        for fig in UnitFigure::ALL {
            assert_eq!(UnitFigure::parse(fig.as_str()), Some(fig));
        }
        for fig in DepartmentFigure::ALL {
            assert_eq!(DepartmentFigure::parse(fig.as_str()), Some(fig));
        }
    }
}
