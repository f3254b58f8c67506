//! The `case_flow:` section: returns, extensions, suspensions, verification and after-photos.

use super::{At, Loader, Policy, Sections};
use crate::model::{self, Target};
use crate::spec;

impl Loader<'_> {
    pub(super) fn case_flow(&mut self, s: &Sections, p: &Policy) -> model::CaseFlow {
        let Some(sec) = &s.case_flow else {
            return model::CaseFlow::default();
        };
        let file = sec.file;
        let c = &sec.value;
        let mut out = model::CaseFlow {
            triage: c.triage.as_ref().map(|t| (t.acknowledge, t.resolve)),
            verification: c.verification.as_ref().map(|v| (v.within, v.on_lapse)),
            ..Default::default()
        };
        if let Some(t) = &c.triage
            && (t.acknowledge.is_zero() || t.resolve.is_zero())
        {
            self.err(
                At {
                    file,
                    path: "case_flow.triage",
                },
                "the triage department's deadlines must be longer than zero",
            );
        }
        if let Some(v) = &c.verification
            && v.within.is_zero()
        {
            self.err(
                At {
                    file,
                    path: "case_flow.verification.within",
                },
                "the time to verify must be longer than zero",
            );
        }
        out.extensions = c
            .extensions
            .as_ref()
            .and_then(|r| self.requests(p, r, file, "extensions"));
        out.suspensions = c
            .suspensions
            .as_ref()
            .and_then(|r| self.requests(p, r, file, "suspensions"));
        if let Some(r) = &c.suspensions
            && r.longest.is_some()
        {
            self.err(
                At {
                    file,
                    path: "case_flow.suspensions.longest",
                },
                "`longest` limits an extension; a suspension lasts until it is resumed",
            );
        }
        if c.extensions.is_some() || c.suspensions.is_some() {
            for kind in ["request", "decided"] {
                if !p.templates.contains(kind) {
                    self.err(
                        At {
                            file,
                            path: "case_flow",
                        },
                        format!(
                            "no template `{kind}`: requests for more time or a stopped clock tell their decider (`request`) and the department (`decided`)"
                        ),
                    );
                }
            }
        }
        for (i, code) in c.after_photos.iter().enumerate() {
            if let Some(x) = self.resolve(
                &p.index.categories,
                "category",
                code,
                At {
                    file,
                    path: &format!("case_flow.after_photos[{i}]"),
                },
            ) {
                out.after_photos.push(x);
            }
        }
        out
    }

    fn requests(
        &mut self,
        p: &Policy,
        r: &spec::Requests,
        file: usize,
        part: &str,
    ) -> Option<model::Requests> {
        let path = format!("case_flow.{part}.decided_by");
        let decided_by = self.target(p, &r.decided_by, At { file, path: &path })?;
        if matches!(decided_by, Target::Departments | Target::Reporter) {
            self.err(
                At { file, path: &path },
                "a request is decided by `{tier: T}`, `{department: D}`, `{person: P}` or `leader`, not by the departments that ask or the reporter",
            );
            return None;
        }
        if r.decide_within.is_zero() {
            self.err(
                At {
                    file,
                    path: &format!("case_flow.{part}.decide_within"),
                },
                "the decider's time must be longer than zero",
            );
        }
        if r.max == Some(0) {
            self.err(
                At {
                    file,
                    path: &format!("case_flow.{part}.max"),
                },
                format!("`max: 0` allows no {part}: leave `{part}` out instead"),
            );
        }
        if r.longest.is_some_and(|d| d.is_zero()) {
            self.err(
                At {
                    file,
                    path: &format!("case_flow.{part}.longest"),
                },
                "`longest` must be longer than zero",
            );
        }
        Some(model::Requests {
            decided_by,
            decide_within: r.decide_within,
            on_lapse: r.on_lapse,
            max: r.max,
            longest: r.longest,
        })
    }
}
