//! Rhai hooks: the sandbox, the helpers scripts may call, and checked calls.
//!
//! All `scripts/*.rhai` files are compiled once per load into one program, so hooks may share
//! functions without module imports (which the sandbox does not have). The engine is hardened
//! by one function, `harden`, and then frozen behind an `Arc`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rhai::{AST, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position, Scope};

use crate::calendar::WorkDuration;
use crate::diag::{Diagnostic, SourceFile};
use crate::model::Org;
use crate::spec::HookLimits;

/// The compiled scripts of a rule directory and the engine that runs them.
pub struct Scripts {
    engine: Arc<Engine>,
    ast: AST,
    /// Hook name -> (file, parameter count), for the load-time checks.
    functions: BTreeMap<String, (String, usize)>,
    files: usize,
    /// The wall-clock limit of one call: a last resort, see `CallError::Overloaded`.
    timeout: Duration,
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripts")
            .field("functions", &self.functions)
            .finish_non_exhaustive()
    }
}

/// Why a hook call failed; carried by the decision that sent the issue to triage.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("hook `{hook}` {kind}")]
pub struct HookError {
    pub hook: String,
    pub kind: String,
}

/// Why a hook call gave no value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The hook failed in a way that depends only on the hook and what it was given: a script
    /// error, the operation limit, a size or depth limit. The same call fails the same way on
    /// any machine, so the decision may rest on it (the issue goes to triage).
    #[error(transparent)]
    Failed(HookError),
    /// The wall-clock limit stopped the hook. How far a hook gets in a given time depends on the
    /// machine and its load, so no decision may rest on it: the event is to be tried again.
    #[error("hook `{hook}` {message}")]
    Overloaded { hook: String, message: String },
}

thread_local! {
    /// When the running hook must stop. Rhai calls the progress callback on the thread that
    /// evaluates, so a thread-local deadline needs no locking.
    static WATCHDOG: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Applies every sandbox limit. The only place an engine is configured for scripts, so the
/// limits cannot drift between the load-time compile and the run.
pub fn harden(engine: &mut Engine, limits: &HookLimits) {
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_depth);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_strict_variables(true);
    // The wall clock, a last resort behind the operation limit: what it stops depends on the
    // machine's load, so `call` reports it as `CallError::Overloaded`, never as a failure of the
    // hook. Checking the clock on every operation would cost more than the scripts themselves.
    engine.on_progress(|ops| {
        if ops % 1024 != 0 {
            return None;
        }
        match WATCHDOG.get() {
            Some(deadline) if Instant::now() > deadline => Some("wall-clock limit".into()),
            _ => None,
        }
    });
    // Scripts print nothing: the daemon's logs are not theirs to write.
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.disable_symbol("eval");
}

/// Registers the read-only helpers over the organisation.
fn register_helpers(engine: &mut Engine, org: &Arc<Org>) {
    let o = org.clone();
    engine.register_fn(
        "is_working_time",
        move |calendar: &str, ts: i64| -> Result<bool, Box<EvalAltResult>> {
            let cal = calendar_of(&o, calendar)?;
            Ok(cal.is_working_time(instant(ts)?))
        },
    );
    let o = org.clone();
    engine.register_fn(
        "add_working",
        move |calendar: &str, ts: i64, d: &str| -> Result<i64, Box<EvalAltResult>> {
            let cal = calendar_of(&o, calendar)?;
            let d = WorkDuration::parse(d).map_err(|e| e.to_string())?;
            Ok(cal.add(instant(ts)?, d).timestamp())
        },
    );
    let o = org.clone();
    engine.register_fn(
        "unit_ancestors",
        move |unit: &str| -> Result<rhai::Array, Box<EvalAltResult>> {
            let u = o
                .unit(unit)
                .ok_or_else(|| format!("unknown unit `{unit}`"))?;
            Ok(o.branch(u)
                .map(|u| Dynamic::from(o.units[u as usize].id.clone()))
                .collect())
        },
    );
    let o = org.clone();
    engine.register_fn(
        "unit_tier",
        move |unit: &str| -> Result<String, Box<EvalAltResult>> {
            let u = o
                .unit(unit)
                .ok_or_else(|| format!("unknown unit `{unit}`"))?;
            Ok(o.tiers[o.units[u as usize].tier as usize].id.clone())
        },
    );
    let o = org.clone();
    engine.register_fn(
        "in_subtree",
        move |unit: &str, ancestor: &str| -> Result<bool, Box<EvalAltResult>> {
            let u = o
                .unit(unit)
                .ok_or_else(|| format!("unknown unit `{unit}`"))?;
            let a = o
                .unit(ancestor)
                .ok_or_else(|| format!("unknown unit `{ancestor}`"))?;
            Ok(o.in_subtree(u, a))
        },
    );
    // Word lists are the common case of hooks; one native call instead of a script loop.
    engine.register_fn("contains_any", |text: &str, words: rhai::Array| {
        words.iter().any(|w| {
            w.read_lock::<ImmutableString>()
                .is_some_and(|w| text.contains(w.as_str()))
        })
    });
    let o = org.clone();
    engine.register_fn("department_exists", move |id: &str| {
        o.department(id).is_some()
    });
}

fn calendar_of<'a>(
    org: &'a Org,
    id: &str,
) -> Result<&'a crate::calendar::Calendar, Box<EvalAltResult>> {
    org.calendar(id)
        .map(|c| &org.calendars[c as usize])
        .ok_or_else(|| format!("unknown calendar `{id}`").into())
}

fn instant(ts: i64) -> Result<DateTime<Utc>, Box<EvalAltResult>> {
    Utc.timestamp_opt(ts, 0)
        .single()
        .ok_or_else(|| format!("invalid timestamp {ts}").into())
}

impl Scripts {
    /// Compiles `(file name, source)` pairs. Syntax errors and duplicate function names become
    /// diagnostics at the script's line and column.
    pub fn compile(
        files: &[SourceFile],
        org: &Arc<Org>,
        limits: &HookLimits,
    ) -> Result<Scripts, Vec<Diagnostic>> {
        let mut engine = Engine::new();
        harden(&mut engine, limits);
        register_helpers(&mut engine, org);
        let engine = Arc::new(engine);

        let mut diags = Vec::new();
        let mut ast = AST::empty();
        let mut functions: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for file in files {
            match engine.compile(file.text()) {
                Ok(a) => {
                    for f in a.iter_functions() {
                        if let Some((other, _)) = functions.get(f.name) {
                            diags.push(file.at(
                                1,
                                1,
                                format!("function `{}` is also defined in {other}", f.name),
                            ));
                            continue;
                        }
                        functions.insert(f.name.to_string(), (file.name.clone(), f.params.len()));
                    }
                    ast = ast.merge(&a);
                }
                Err(e) => {
                    let (line, col) = position(e.position());
                    diags.push(file.at(line, col, format!("script error: {}", e.err_type())));
                }
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        // Top-level statements would run on every call; hooks are functions only.
        ast.clear_statements();
        Ok(Scripts {
            engine,
            ast,
            functions,
            files: files.len(),
            timeout: Duration::from_millis(limits.timeout_ms),
        })
    }

    pub fn files(&self) -> usize {
        self.files
    }

    pub fn functions(&self) -> impl Iterator<Item = (&str, usize)> {
        self.functions.iter().map(|(k, (_, n))| (k.as_str(), *n))
    }

    /// The parameter count of a function, if a script defines it.
    pub fn arity(&self, name: &str) -> Option<usize> {
        self.functions.get(name).map(|(_, n)| *n)
    }

    /// Calls hook `name` with the issue map. Errors and limits become a `CallError`: `Failed`
    /// for everything the hook and its input decide, `Overloaded` when the wall clock stopped
    /// it. Nothing panics and nothing outlives the call.
    pub fn call(&self, name: &str, issue: Map) -> Result<Dynamic, CallError> {
        let fail = |kind: String| {
            CallError::Failed(HookError {
                hook: name.to_string(),
                kind,
            })
        };
        if !self.functions.contains_key(name) {
            return Err(fail("is not defined".into()));
        }
        WATCHDOG.set(Some(Instant::now() + self.timeout));
        let mut scope = Scope::new();
        let options = rhai::CallFnOptions::new()
            .eval_ast(false)
            .rewind_scope(true);
        let result = self.engine.call_fn_with_options::<Dynamic>(
            options,
            &mut scope,
            &self.ast,
            name,
            (Dynamic::from_map(issue),),
        );
        WATCHDOG.set(None);
        result.map_err(|e| {
            if terminated(&e) {
                CallError::Overloaded {
                    hook: name.to_string(),
                    message: format!(
                        "was stopped by the wall-clock limit ({} ms) before reaching its operation limit",
                        self.timeout.as_millis()
                    ),
                }
            } else {
                fail(self.describe(*e, name))
            }
        })
    }
}

/// Whether the watchdog stopped the script, in the hook or in a function it called.
fn terminated(e: &EvalAltResult) -> bool {
    match e {
        EvalAltResult::ErrorTerminated(..) => true,
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => terminated(inner),
        _ => false,
    }
}

impl Scripts {
    /// A short account of a script failure, with the script position when Rhai knows it:
    /// the file of `function`, the innermost script function the failure happened in.
    fn describe(&self, mut e: EvalAltResult, function: &str) -> String {
        // Rhai's own text of an error ends with its position; it is given once, below.
        let at = e.take_position();
        let what = match e {
            EvalAltResult::ErrorTooManyOperations(_) => format!(
                "ran too long (operation limit: {} operations)",
                self.engine.max_operations()
            ),
            EvalAltResult::ErrorStackOverflow(_) => "recursed too deep".to_string(),
            EvalAltResult::ErrorDataTooLarge(what, _) => format!("built too large a value: {what}"),
            EvalAltResult::ErrorInFunctionCall(f, _, inner, _) => {
                let called = if self.functions.contains_key(f.as_str()) {
                    f.as_str()
                } else {
                    function
                };
                return self.describe(*inner, called);
            }
            other => format!("failed: {other}"),
        };
        if at.is_none() {
            return what;
        }
        let (line, col) = position(at);
        match self.functions.get(function) {
            Some((file, _)) => format!("{what} ({file}, line {line}, column {col})"),
            None => format!("{what} (line {line}, column {col})"),
        }
    }
}

fn position(p: Position) -> (usize, usize) {
    (p.line().unwrap_or(1), p.position().unwrap_or(1))
}

/// Builds a Rhai map from `(key, value)` pairs.
pub fn map<'a>(entries: impl IntoIterator<Item = (&'a str, Dynamic)>) -> Map {
    entries
        .into_iter()
        .map(|(k, v)| (k.into(), v))
        .collect::<Map>()
}

/// A string as Rhai holds it.
pub fn string(s: &str) -> Dynamic {
    Dynamic::from(ImmutableString::from(s))
}
