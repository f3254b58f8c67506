//! Diagnostics: what is wrong with a rule directory, and exactly where.
//!
//! serde_yaml tells where a syntax or type error is, but not where a value that deserialised
//! fine sits in its file. A second, event-level pass over each YAML file (yaml-rust2) records
//! the position of every key and value under its path (`routes[3].department`), so the
//! validation that finds an unknown department can point at it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceCode};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A file of the rule directory, kept for the spans of its diagnostics.
#[derive(Debug)]
pub struct SourceFile {
    /// The path relative to the rule directory, as diagnostics show it.
    pub name: String,
    pub source: Arc<NamedSource<Arc<str>>>,
    line_starts: Vec<usize>,
    index: HashMap<String, Node>,
}

/// Where a key and its value start; `key` is absent for sequence items and the root.
#[derive(Clone, Copy, Debug)]
struct Node {
    key: Option<(usize, usize)>,
    value: (usize, usize),
}

impl SourceFile {
    /// Keeps the text; `index_yaml` must be called for YAML files to locate paths.
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> SourceFile {
        let name = name.into();
        let text: Arc<str> = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            source: Arc::new(NamedSource::new(&name, text)),
            name,
            line_starts,
            index: HashMap::new(),
        }
    }

    pub fn text(&self) -> &str {
        self.source.inner()
    }

    /// Records the position of every node by path (up to the error, if any). Returns the syntax
    /// error or the first key repeated in a mapping, if any, as a diagnostic where the problem is: a flow collection
    /// still open on an earlier line than the parser's error at its bracket (the parser only
    /// notices where the text stops making sense), a repeated key where it is repeated.
    pub fn index_yaml(&mut self) -> Result<(), Diagnostic> {
        let text = self.source.inner().clone();
        let mut recorder = Recorder::default();
        let mut parser = Parser::new_from_str(&text);
        let result = parser.load(&mut recorder, false);
        // What was indexed, up to an error: the sections a broken file holds.
        self.index = std::mem::take(&mut recorder.index);
        if let Err(e) = result {
            let (line, col) = pos(e.marker());
            let open = recorder.stack.iter().rev().find_map(|f| {
                let (at, kind) = match f {
                    Frame::Map { start, .. } => (*start, ('{', "mapping")),
                    Frame::Seq { start, .. } => (*start, ('[', "sequence")),
                };
                let opener = self.text()[self.offset(at.0, at.1)..].chars().next();
                (opener == Some(kind.0)).then_some((at, kind.1))
            });
            return Err(match open {
                Some(((l, c), kind)) if l < line => self
                    .at(
                        l,
                        c,
                        format!("invalid YAML: this flow {kind} is not closed"),
                    )
                    .with_help(format!(
                        "the parser stopped at line {line}, column {col}: {}",
                        e.info()
                    )),
                _ => self.at(line, col, format!("invalid YAML: {}", e.info())),
            });
        }
        if let Some(d) = recorder.duplicate {
            let path = if d.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", d.path)
            };
            return Err(self.at(
                d.at.0,
                d.at.1,
                format!(
                    "{path}duplicate key `{}` (first at line {}, column {})",
                    d.key, d.first.0, d.first.1
                ),
            ));
        }
        Ok(())
    }

    /// A diagnostic at a 1-based line and column (in characters).
    pub fn at(&self, line: usize, column: usize, message: impl Into<String>) -> Diagnostic {
        let offset = self.offset(line, column);
        Diagnostic {
            message: message.into(),
            help: None,
            location: Some(Location {
                file: self.name.clone(),
                line,
                column,
                offset,
                len: self.token_len(offset),
                source: Some(self.source.clone()),
            }),
        }
    }

    /// A diagnostic at the value found under `path`, or the nearest enclosing node found.
    pub fn at_path(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.find(path, false);
        self.at(line, col, message)
    }

    /// A diagnostic at part of the scalar under `path`: `len` characters from `offset` characters
    /// into its text (after the opening quote of a quoted scalar), such as one field of a cron
    /// expression. Falls back to `at_path` when `path` is not in the file.
    pub fn at_path_within(
        &self,
        path: &str,
        offset: usize,
        len: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        if !self.index.contains_key(path) {
            return self.at_path(path, message);
        }
        let (line, col) = self.find(path, false);
        let start = self.offset(line, col);
        let quoted = matches!(self.text()[start..].chars().next(), Some('"' | '\''));
        let mut d = self.at(line, col + usize::from(quoted) + offset, message);
        if let Some(l) = &mut d.location {
            let rest = &self.text()[l.offset..];
            l.len = rest
                .char_indices()
                .nth(len)
                .map(|(i, _)| i)
                .unwrap_or(rest.len())
                .max(1);
        }
        d
    }

    /// A diagnostic at the key of `path` (for "unknown or duplicate key" kinds of errors).
    pub fn at_key(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.find(path, true);
        self.at(line, col, message)
    }

    /// Whether the file holds a node at `path` (a section present, an optional key written).
    pub fn has(&self, path: &str) -> bool {
        self.index.contains_key(path)
    }

    fn find(&self, path: &str, key: bool) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(n) = self.index.get(p) {
                return match (key, n.key) {
                    (true, Some(k)) => k,
                    _ => n.value,
                };
            }
            // Walk up to the parent: `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> ``.
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None if !p.is_empty() => p = "",
                None => return (1, 1),
            }
        }
    }

    fn offset(&self, line: usize, column: usize) -> usize {
        let text = self.text();
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return text.len();
        };
        let rest = &text[start..];
        rest.char_indices()
            .nth(column.saturating_sub(1))
            .map(|(i, _)| start + i)
            .unwrap_or(start + rest.find('\n').unwrap_or(rest.len()))
    }

    /// The length of the token at `offset`, so the caret underlines a whole word or value.
    fn token_len(&self, offset: usize) -> usize {
        let rest = &self.text()[offset.min(self.text().len())..];
        let end = rest
            .char_indices()
            .find(|&(_, c)| c == '\n' || c == '#' || c == ',' || c == '}' || c == ']')
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        rest[..end].trim_end().len().max(1)
    }
}

#[derive(Default)]
struct Recorder {
    index: HashMap<String, Node>,
    stack: Vec<Frame>,
    /// The first key found twice in one mapping.
    duplicate: Option<Duplicate>,
}

struct Duplicate {
    /// The mapping's path.
    path: String,
    key: String,
    first: (usize, usize),
    at: (usize, usize),
}

enum Frame {
    Map {
        path: String,
        /// Where the mapping starts: its `{` in flow style.
        start: (usize, usize),
        key: Option<(String, (usize, usize))>,
        keys: usize,
        /// Each scalar key seen so far (see `KeyId`) and where.
        seen: HashMap<KeyId, (usize, usize)>,
    },
    Seq {
        path: String,
        start: (usize, usize),
        next: usize,
    },
}

/// A scalar key as YAML compares keys: a quoted key is a string; a plain one is a string
/// unless it reads as a number, a boolean or null (`1` and `"1"` are different keys).
#[derive(PartialEq, Eq, Hash)]
struct KeyId {
    string: bool,
    text: String,
}

impl KeyId {
    fn new(text: &str, style: TScalarStyle) -> KeyId {
        let typed = || {
            matches!(
                text,
                "~" | "null"
                    | "Null"
                    | "NULL"
                    | "true"
                    | "True"
                    | "TRUE"
                    | "false"
                    | "False"
                    | "FALSE"
            ) || text.parse::<f64>().is_ok()
                || text.parse::<i64>().is_ok()
        };
        KeyId {
            string: style != TScalarStyle::Plain || !typed(),
            text: text.to_string(),
        }
    }
}

fn pos(m: &Marker) -> (usize, usize) {
    (m.line(), m.col() + 1)
}

impl Recorder {
    /// Where the next value goes: its path and its key's position. `None` while a mapping
    /// waits for a key.
    fn slot(&mut self) -> Option<(String, Option<(usize, usize)>)> {
        match self.stack.last_mut() {
            None => Some((String::new(), None)),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key, .. }) => {
                let (k, at) = key.take().expect("checked above");
                let p = if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                };
                Some((p, Some(at)))
            }
            Some(Frame::Seq { path, next, .. }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some((p, None))
            }
        }
    }
}

impl Recorder {
    /// A key that is not a scalar (an alias, a collection) takes the key's place, named
    /// `name`; it is never taken for a repeated key.
    fn other_key(&mut self, name: &str, at: (usize, usize)) {
        if let Some(Frame::Map { key, keys, .. }) = self.stack.last_mut() {
            *keys += 1;
            *key = Some((name.to_string(), at));
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, style, ..) => match self.slot() {
                None => {
                    if let Some(Frame::Map {
                        key,
                        path,
                        keys,
                        seen,
                        ..
                    }) = self.stack.last_mut()
                    {
                        // A block mapping's start mark sits after its first key; its first key
                        // is where a reader looks for it.
                        if *keys == 0
                            && let Some(n) = self.index.get_mut(path.as_str())
                        {
                            n.value = pos(&mark);
                        }
                        *keys += 1;
                        if let Some(&first) = seen.get(&KeyId::new(&value, style)) {
                            self.duplicate.get_or_insert_with(|| Duplicate {
                                path: path.clone(),
                                key: value.clone(),
                                first,
                                at: pos(&mark),
                            });
                        } else {
                            seen.insert(KeyId::new(&value, style), pos(&mark));
                        }
                        *key = Some((value, pos(&mark)));
                    }
                }
                Some((path, key)) => {
                    self.index.insert(
                        path,
                        Node {
                            key,
                            value: pos(&mark),
                        },
                    );
                }
            },
            Event::Alias(_) => match self.slot() {
                Some((path, key)) => {
                    self.index.insert(
                        path,
                        Node {
                            key,
                            value: pos(&mark),
                        },
                    );
                }
                None => self.other_key("*", pos(&mark)),
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A complex (non-scalar) mapping key has no path; it is indexed under `?`.
                let (path, key) = self.slot().unwrap_or_else(|| {
                    self.other_key("?", pos(&mark));
                    ("?".into(), None)
                });
                self.index.insert(
                    path.clone(),
                    Node {
                        key,
                        value: pos(&mark),
                    },
                );
                let start = pos(&mark);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        path,
                        start,
                        key: None,
                        keys: 0,
                        seen: HashMap::new(),
                    }
                } else {
                    Frame::Seq {
                        path,
                        start,
                        next: 0,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Where a diagnostic points.
#[derive(Clone, Debug)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    offset: usize,
    len: usize,
    source: Option<Arc<NamedSource<Arc<str>>>>,
}

/// One problem found in a rule directory.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub message: String,
    pub help: Option<String>,
    pub location: Option<Location>,
}

impl Diagnostic {
    /// A diagnostic about the directory as a whole, or a file that could not be read.
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            help: None,
            location: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean" when a candidate is close to `name`.
    pub fn suggest<'a>(
        self,
        name: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Diagnostic {
        match did_you_mean(name, candidates) {
            Some(s) => self.with_help(format!("did you mean `{s}`?")),
            None => self,
        }
    }
}

/// `file:line:column: message (help)`, the plain one-line form for logs and tests.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.location {
            write!(f, "{}:{}:{}: ", l.file, l.line, l.column)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.help {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// The graphical form of a diagnostic: the message as the headline, the location in the
/// source excerpt below it, the help last (miette renders it).
#[derive(Debug)]
pub struct Report<'a>(pub &'a Diagnostic);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.0
            .location
            .as_ref()
            .and_then(|l| l.source.as_deref())
            .map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let l = self.0.location.as_ref()?;
        l.source.as_ref()?;
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(Some("here".to_string()), (l.offset, l.len)),
        )))
    }
}

/// All the problems of one load, in the order they were found.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(f, "{} error(s)", self.0.len())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to a misspelt name, if it is close enough to be the likely intent.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// Turns a serde_yaml error into a diagnostic at its position, with "did you mean" for unknown
/// fields and variants (serde lists the expected names in its message).
pub fn from_serde(file: &SourceFile, err: &serde_yaml::Error) -> Diagnostic {
    let text = err.to_string();
    // serde_yaml appends " at line L column C"; the location is carried separately.
    let message = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text.clone(),
    };
    let d = match err.location() {
        Some(l) => file.at(l.line(), l.column(), message.clone()),
        None => {
            let mut d = Diagnostic::new(message.clone());
            d.location = Some(Location {
                file: file.name.clone(),
                line: 1,
                column: 1,
                offset: 0,
                len: 0,
                source: None,
            });
            d
        }
    };
    for kind in ["unknown field `", "unknown variant `"] {
        if let Some(start) = message.find(kind) {
            let rest = &message[start + kind.len()..];
            let Some(end) = rest.find('`') else { break };
            let name = &rest[..end];
            let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
            return d.suggest(name, expected);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_point_at_keys_and_values() {
        let mut f = SourceFile::new(
            "p.yaml",
            "routes:\n  - name: a\n    when:\n      category: [noise, dust]\n    department: urbn\n",
        );
        f.index_yaml().unwrap();
        let d = f.at_path("routes[0].department", "x");
        let l = d.location.unwrap();
        assert_eq!((l.line, l.column), (5, 17));
        let d = f.at_key("routes[0].department", "x");
        let l = d.location.unwrap();
        assert_eq!((l.line, l.column), (5, 5));
        let l = f
            .at_path("routes[0].when.category[1]", "x")
            .location
            .unwrap();
        assert_eq!((l.line, l.column), (4, 25));
        assert_eq!(&f.text()[l.offset..l.offset + l.len], "dust");
        // A path that is absent falls back to its nearest ancestor.
        let l = f.at_path("routes[0].co_assign", "x").location.unwrap();
        assert_eq!((l.line, l.column), (2, 5));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let mut f = SourceFile::new("u.yaml", "names: {zh: 噪声, en: Noise}\n");
        f.index_yaml().unwrap();
        let l = f.at_path("names.en", "x").location.unwrap();
        assert_eq!((l.line, l.column), (1, 21));
        assert_eq!(&f.text()[l.offset..l.offset + l.len], "Noise");
    }

    fn repeated_key(text: &str) -> Option<String> {
        let mut f = SourceFile::new("k.yaml", text);
        f.index_yaml().err().map(|d| d.to_string())
    }

    #[test]
    fn a_key_is_repeated_as_yaml_compares_keys() {
        assert_eq!(
            repeated_key("a: 1\n'a': 2\n").as_deref(),
            Some("k.yaml:2:1: duplicate key `a` (first at line 1, column 1)")
        );
        assert_eq!(
            repeated_key("m:\n  - {x: 1, y: {x: 2, \"x\": 3}}\n").as_deref(),
            Some("k.yaml:2:22: m[0].y: duplicate key `x` (first at line 2, column 16)")
        );
        // A number and a string are different keys; so are keys of different mappings.
        assert_eq!(repeated_key("1: a\n'1': b\nt: {1: a}\n"), None);
    }

    #[test]
    fn keys_that_are_not_scalars_are_never_taken_for_repeated_ones() {
        // Each value below would be read as the next key if the alias or collection before it
        // did not take the key's place.
        assert_eq!(
            repeated_key("x: &a k\ny: &b l\nm: {*a : v, *b : v}\n"),
            None
        );
        assert_eq!(repeated_key("m: {? [a] : v, ? [c] : v}\n"), None);
        assert_eq!(
            repeated_key("m:\n  ? {a: 1}\n  : v\n  ? {b: 1}\n  : v\n"),
            None
        );
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(
            did_you_mean("departmnet", ["department", "co_assign"]),
            Some("department".into())
        );
        assert_eq!(did_you_mean("zzz", ["department", "co_assign"]), None);
    }
}
