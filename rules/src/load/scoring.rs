//! The `scoring:` section: the points each figure gives, for departments and for units.

use super::{At, Loader, Policy, Sections};
use crate::scoring::{DepartmentFigure, Scoring, UnitFigure};
use crate::spec::FigurePoints;

impl Loader<'_> {
    pub(super) fn scoring(&mut self, s: &Sections, p: &Policy) -> Scoring {
        // Tiers are written from the lowest up: the grids are tier 0.
        let lowest = p.org.units.iter().map(|u| u.tier).min().unwrap_or(0);
        let Some(sec) = &s.scoring else {
            return Scoring {
                unit_tier: lowest,
                ..Default::default()
            };
        };
        let file = sec.file;
        let mut out = Scoring {
            unit_tier: lowest,
            ..Default::default()
        };
        out.departments = self.figures(
            file,
            "scoring.departments",
            &sec.value.departments,
            DepartmentFigure::parse,
            DepartmentFigure::ALL.map(DepartmentFigure::as_str),
        );
        if let Some(u) = &sec.value.units {
            if let Some(t) = &u.tier
                && let Some(t) = self.tier(
                    p,
                    t,
                    At {
                        file,
                        path: "scoring.units.tier",
                    },
                )
            {
                out.unit_tier = t;
            }
            out.units = self.figures(
                file,
                "scoring.units.figures",
                &u.figures,
                UnitFigure::parse,
                UnitFigure::ALL.map(UnitFigure::as_str),
            );
        }
        out
    }

    fn figures<F: Copy + PartialEq, const N: usize>(
        &mut self,
        file: usize,
        at: &str,
        written: &[FigurePoints],
        parse: impl Fn(&str) -> Option<F>,
        names: [&'static str; N],
    ) -> Vec<(F, f64)> {
        let mut out: Vec<(F, f64)> = Vec::new();
        for (i, fp) in written.iter().enumerate() {
            let Some(f) = parse(&fp.figure) else {
                let d = self.files[file]
                    .at_path(
                        &format!("{at}[{i}].figure"),
                        format!(
                            "unknown figure `{}`: expected one of {}",
                            fp.figure,
                            names.join(", ")
                        ),
                    )
                    .suggest(&fp.figure, names);
                self.diags.push(d);
                continue;
            };
            if !(fp.points.is_finite() && fp.points > 0.0) {
                self.err(
                    At {
                        file,
                        path: &format!("{at}[{i}].points"),
                    },
                    format!("points must be a positive number, not {}", fp.points),
                );
                continue;
            }
            if out.iter().any(|(g, _)| *g == f) {
                self.err(
                    At {
                        file,
                        path: &format!("{at}[{i}].figure"),
                    },
                    format!("figure `{}` is scored twice", fp.figure),
                );
                continue;
            }
            out.push((f, fp.points));
        }
        out
    }
}
