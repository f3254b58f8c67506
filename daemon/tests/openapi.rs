//! The OpenAPI document (`src/openapi.yaml`, served at `/api/v1/openapi.json`) against the real
//! router, both ways, so neither can drift from the other:
//!
//! - every operation the document describes is sent to the in-process server, with an admin
//!   token and with none: the router must serve it (not its fallback's `no such route`, not
//!   405), answer with a status the operation documents, an error `code` that response lists,
//!   the fields its schema requires, and 401 exactly where the document asks for a token;
//! - every `.route(` in `src/api.rs` and `src/api/meetings.rs`, read as text, must be in the
//!   document with the methods chained on it, except the pages listed in `NOT_API`, which must
//!   not be;
//! - every `$ref` in the document resolves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use escalade::engine::{Engine, ManualClock};
use serde_json::Value;

mod support;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// The router's sources, where every route is declared.
const SOURCES: [(&str, &str); 6] = [
    ("src/api.rs", include_str!("../src/api.rs")),
    ("src/api/submit.rs", include_str!("../src/api/submit.rs")),
    ("src/api/issues.rs", include_str!("../src/api/issues.rs")),
    ("src/api/events.rs", include_str!("../src/api/events.rs")),
    ("src/api/rules.rs", include_str!("../src/api/rules.rs")),
    (
        "src/api/meetings.rs",
        include_str!("../src/api/meetings.rs"),
    ),
];

/// The HTTP methods a path item may hold, as OpenAPI spells them (axum's `MethodRouter`
/// functions have the same names).
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> &'static Value {
    escalade::openapi::document()
}

/// Follows a local `$ref` (`#/components/...`) to what it names.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                v = r
                    .strip_prefix('#')
                    .and_then(|p| doc.pointer(p))
                    .unwrap_or_else(|| panic!("unresolved $ref `{r}`"));
            }
            None => return v,
        }
    }
    panic!("a $ref cycle")
}

/// Every operation: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                ops.push((path.clone(), m.to_string(), op));
            }
        }
    }
    ops
}

/// The path with each `{name}` replaced by its parameter's `example`, or `1`.
fn fill(doc: &Value, path: &str, op: &Value) -> String {
    let item = &doc["paths"][path];
    let params: Vec<&Value> = [op.get("parameters"), item.get("parameters")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .map(|p| deref(doc, p))
        .collect();
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closed path parameter") + open;
        let name = &rest[open + 1..close];
        let param = params
            .iter()
            .find(|p| p["in"] == "path" && p["name"] == name)
            .unwrap_or_else(|| panic!("{path}: path parameter `{name}` is not described"));
        assert_eq!(
            param["required"], true,
            "{path}: path parameter `{name}` must be required"
        );
        let value = match &param["example"] {
            Value::String(s) => s.clone(),
            Value::Null => "1".to_string(),
            other => other.to_string(),
        };
        out.push_str(&rest[..open]);
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The error codes a documented error response lists (`enum` on `error.code`, through `$ref`s
/// and `allOf`), if it narrows them.
fn listed_codes(doc: &Value, schema: &Value) -> Option<BTreeSet<String>> {
    let schema = deref(doc, schema);
    if let Some(codes) = schema
        .pointer("/properties/error/properties/code/enum")
        .and_then(Value::as_array)
    {
        return Some(
            codes
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        );
    }
    schema
        .get("allOf")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|s| listed_codes(doc, s))
        .reduce(|a, b| a.intersection(&b).cloned().collect())
}

/// Whether `value` is of the JSON Schema type `ty`.
fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown type `{other}`"),
    }
}

/// Checks `value` against `schema`, the parts of JSON Schema the document uses: `$ref`,
/// `allOf`, `oneOf` (by its discriminator, or any member), `type`, `enum`, `const`, `required`,
/// `properties`, `additionalProperties: false` and `items`. Adds what does not hold to `errors`.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = deref(doc, schema);
    for s in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        conforms(doc, s, value, at, errors);
    }
    if let Some(members) = schema.get("oneOf").and_then(Value::as_array) {
        let chosen = schema.get("discriminator").and_then(|d| {
            let name = value.get(d["propertyName"].as_str()?)?.as_str()?;
            d["mapping"].get(name)
        });
        match chosen {
            Some(r) => conforms(doc, &serde_json::json!({ "$ref": r }), value, at, errors),
            None => {
                let fits = members.iter().any(|m| {
                    let mut e = Vec::new();
                    conforms(doc, m, value, at, &mut e);
                    e.is_empty()
                });
                if !fits {
                    errors.push(format!("{at}: {value} matches none of oneOf"));
                }
            }
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
        errors.push(format!("{at}: {value} is not of type {types:?}"));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        errors.push(format!("{at}: {value} is not {c}"));
    }
    if let Some(obj) = value.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                errors.push(format!("{at}: `{r}` is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (k, v) in obj {
            match properties.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, v, &format!("{at}.{k}"), errors),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: `{k}` is not a property"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), value.as_array()) {
        for (i, v) in a.iter().enumerate() {
            conforms(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
}

/// The documented response for `status`, or a failure naming the operation.
fn documented<'a>(doc: &'a Value, what: &str, op: &'a Value, status: u16) -> &'a Value {
    let response = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{what} answered {status}, which the document does not list"));
    deref(doc, response)
}

/// Checks an answer against the response the document gives for its status.
fn check_answer(doc: &Value, what: &str, op: &Value, status: u16, body: &Value) {
    let response = documented(doc, what, op, status);
    let Some(schema) = response.pointer("/content/application~1json/schema") else {
        return;
    };
    if let Some(code) = body.pointer("/error/code").and_then(Value::as_str) {
        let all = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        assert!(
            all.as_array().unwrap().iter().any(|c| c == code),
            "{what}: error code `{code}` is not an ErrorCode"
        );
        if let Some(codes) = listed_codes(doc, schema) {
            assert!(
                codes.contains(code),
                "{what} answered {status} `{code}`, but that response lists only {codes:?}: {body}"
            );
        }
    }
    let mut errors = Vec::new();
    conforms(doc, schema, body, "body", &mut errors);
    assert!(
        errors.is_empty(),
        "{what} answered {status} unlike its documented schema:\n{}\n{body}",
        errors.join("\n")
    );
}

struct Server {
    base: String,
    engine: Arc<Engine>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path());
    let clock = Arc::new(ManualClock::new(support::at("2026-03-03T10:00:00+08:00")));
    let engine = Arc::new(support::engine(&db, CITY, clock).await);
    let (base, stop) = support::serve_api(engine.clone(), CITY, dir.path(), 1 << 20).await;
    Server {
        base,
        engine,
        _stop: stop,
        _db: db,
        _dir: dir,
    }
}

/// The JSON an operation's request body gives as its example (or the first of its examples
/// by name), else `{}`.
fn request_example(op: &Value) -> Value {
    let content = &op["requestBody"]["content"]["application/json"];
    content
        .get("example")
        .or_else(|| {
            content["examples"]
                .as_object()
                .and_then(|e| e.values().next())
                .map(|e| &e["value"])
        })
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}))
}

async fn send(
    c: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let mut request = c.request(method.clone(), format!("{base}{path}"));
    if [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ]
    .contains(&method)
    {
        request = request.json(body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.unwrap();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_as_documented() {
    let doc = doc();
    let s = start().await;
    let token = support::token(&s.engine, "admin", None).await;
    let admin = support::client(&token);
    let anonymous = reqwest::Client::new();
    let ops = operations(doc);
    assert!(ops.len() >= 14, "only {} operations documented", ops.len());

    // One issue, so the routes answer with their documented success bodies; it gets
    // the id the document's example names.
    let submit = &doc["paths"]["/api/v1/issues"]["post"];
    let example = &submit["requestBody"]["content"]["application/json"]["example"];
    for replayed in [false, true] {
        let r = admin
            .post(format!("{}/api/v1/issues", s.base))
            .header("idempotency-key", "openapi-1")
            .json(example)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            r.headers().get("idempotent-replayed").is_some(),
            replayed,
            "idempotent-replayed"
        );
        assert!(
            documented(doc, "POST /api/v1/issues", submit, status)["headers"]
                .get("idempotent-replayed")
                .is_some()
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        check_answer(doc, "POST /api/v1/issues", submit, status, &body);
        assert_eq!(
            body["id"],
            doc["components"]["parameters"]["IssueId"]["example"]
        );
    }
    // Two fire hazards convene the example city's joint meeting, the first one (the id the
    // document's example names), which sits the next working day.
    for unit in ["g-0001", "g-0002"] {
        let hazard = serde_json::json!({"category": "fire_hazard", "unit": unit,
            "description": "电线老化漏电，楼道堆放杂物有起火风险"});
        let (status, _, body) = send(&admin, &s.base, "post", "/api/v1/issues", &hazard).await;
        assert_eq!(status, 201, "{body}");
    }
    // A person's token naming someone else as the reporter: the documented 403.
    let grid = support::client(&support::person_token(&s.engine, "p-g-0001", None, None).await);
    let as_the_mayor = serde_json::json!({"category": "noise", "unit": "g-0001",
        "description": "夜间施工噪声", "reporter": "p-mayor"});
    let (status, _, body) = send(&grid, &s.base, "post", "/api/v1/issues", &as_the_mayor).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["field"], "reporter");
    check_answer(doc, "POST /api/v1/issues as another", submit, status, &body);
    let all = escalade::store::MeetingFilter {
        limit: 10,
        ..Default::default()
    };
    let meetings = s.engine.store().meetings(&all).await.unwrap();
    assert_eq!(
        meetings.iter().map(|m| m.id).collect::<Vec<_>>(),
        [doc["components"]["parameters"]["MeetingId"]["example"]
            .as_i64()
            .unwrap()]
    );
    for (path, method, op) in &ops {
        let url = fill(doc, path, op);
        let what = format!("{} {url} ({path})", method.to_uppercase());

        let example = request_example(op);
        let (status, content_type, body) = send(&admin, &s.base, method, &url, &example).await;
        assert_ne!(status, 405, "{what}: the router serves no {method} here");
        assert!(
            !(status == 404 && body.pointer("/error/message") == Some(&"no such route".into())),
            "{what}: the router has no such route"
        );
        check_answer(doc, &what, op, status, &body);
        let response = documented(doc, &what, op, status);
        if let (Some(content), Some(ct)) = (response.get("content"), content_type) {
            let essence = ct.split(';').next().unwrap().trim();
            assert!(
                content.get(essence).is_some(),
                "{what} answered {status} as {essence}, which the document does not list"
            );
        }

        // Without a token: 401 exactly where the document asks for one.
        let security = op.get("security").unwrap_or(&doc["security"]);
        let needs_token = security.as_array().is_some_and(|s| !s.is_empty());
        let (status, _, body) = send(&anonymous, &s.base, method, &url, &example).await;
        if needs_token {
            assert_eq!(status, 401, "{what} without a token: {body}");
        } else {
            assert_ne!(
                status, 401,
                "{what} is documented as needing no token: {body}"
            );
        }
        check_answer(doc, &format!("{what} without a token"), op, status, &body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_without_a_token() {
    let s = start().await;
    let r = reqwest::get(format!("{}/api/v1/openapi.json", s.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let served: Value = r.json().await.unwrap();
    assert_eq!(&served, doc());
}

/// The end of a balanced call's arguments: `s` starts just after its `(`; the answer is the
/// index of the matching `)`. String literals are skipped.
fn call_end(s: &str) -> usize {
    let mut depth = 0usize;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            // A character literal (`'{'`, `'\''`); a lifetime's quote is left alone.
            '\'' if s[i + 1..].chars().nth(1) == Some('\'') => {
                chars.next();
                chars.next();
            }
            '\'' if s[i + 1..].starts_with('\\') => {
                chars.next();
                chars.next();
                chars.next();
            }
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' if depth == 0 => return i,
            ')' | '}' | ']' => depth -= 1,
            _ => {}
        }
    }
    panic!("an unbalanced call: {s}")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The calls to `name(` in `text` that are not a longer name's tail nor another module's
/// function (`routing::get(` counts, `meetings::get(` does not).
fn calls(text: &str, name: &str) -> bool {
    let pattern = format!("{name}(");
    text.match_indices(&pattern).any(|(i, _)| {
        let before = &text[..i];
        match before.chars().next_back() {
            Some(':') => before.ends_with("routing::"),
            Some(c) => !is_ident(c),
            None => true,
        }
    })
}

/// Functions of the sources that build a `MethodRouter` (`submit_route`): name and body.
fn method_router_fns() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, src) in SOURCES {
        for (i, _) in src.match_indices("fn ") {
            let rest = &src[i + 3..];
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            let Some(open) = rest.find('{') else { continue };
            let signature = &rest[..open];
            if name.is_empty()
                || !signature.contains("MethodRouter")
                || signature.contains(';')
                || signature.contains("\n\n")
            {
                continue;
            }
            let body = &rest[open + 1..];
            out.push((name, body[..call_end(body)].to_string()));
        }
    }
    out
}

/// Routes served that are not the API, deliberately left out of its document: the page an
/// acknowledgement link opens is for a person following a link from an email or SMS, HTML by
/// default, authenticated by the signed token in its path rather than a bearer token; its token
/// format is the daemon's own, not an interface for integrations (README, Acknowledgement
/// links).
const NOT_API: [&str; 1] = ["/ack/{token}"];

/// Every `.route(PATH, ...)` of the sources (outside comments) with the methods chained on it,
/// including those of a helper that builds its `MethodRouter`.
fn source_routes() -> BTreeMap<String, BTreeSet<String>> {
    let helpers = method_router_fns();
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, src) in SOURCES {
        for (i, _) in src.match_indices(".route(") {
            let line_start = src[..i].rfind('\n').map_or(0, |n| n + 1);
            if src[line_start..i].contains("//") {
                continue;
            }
            let args_start = i + ".route(".len();
            let args = &src[args_start..args_start + call_end(&src[args_start..])];
            let literal = args.trim_start();
            assert!(
                literal.starts_with('"'),
                "{file}: a `.route(` whose path is not a string literal: {args}"
            );
            let end = literal[1..].find('"').unwrap() + 1;
            let path = literal[1..end].to_string();
            let handlers = &literal[end + 1..];
            let mut methods = BTreeSet::new();
            let mut texts = vec![handlers.to_string()];
            for (name, body) in &helpers {
                if calls(handlers, name) {
                    texts.push(body.clone());
                }
            }
            for text in &texts {
                for m in METHODS {
                    if calls(text, m) {
                        methods.insert(m.to_string());
                    }
                }
            }
            assert!(
                !methods.is_empty(),
                "{file}: no method found on the route {path}: {args}"
            );
            routes.entry(path).or_default().extend(methods);
        }
    }
    routes
}

#[test]
fn every_route_of_the_source_is_documented_with_its_methods() {
    let routes = source_routes();
    // The reading of the sources itself: a route spanning lines, methods chained and built by
    // a helper (`submit_route` holds the `post`).
    assert_eq!(
        routes.get("/api/v1/issues"),
        Some(&BTreeSet::from(["get".to_string(), "post".to_string()])),
        "{routes:?}"
    );
    assert!(routes.contains_key("/healthz") && routes.contains_key("/api/v1/meetings/{id}"));
    let paths = doc()["paths"].as_object().unwrap();
    // The exceptions are routes served, and not documented.
    for page in NOT_API {
        assert!(
            routes.contains_key(page),
            "{page} is not served: {routes:?}"
        );
        assert!(
            !paths.contains_key(page),
            "{page} is not API, yet src/openapi.yaml documents it"
        );
    }
    let mut missing = Vec::new();
    for (path, methods) in routes
        .iter()
        .filter(|(p, _)| !NOT_API.contains(&p.as_str()))
    {
        for m in methods {
            if paths.get(path).and_then(|p| p.get(m)).is_none() {
                missing.push(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from src/openapi.yaml: {missing:?}"
    );
}

/// Every `$ref` (and discriminator mapping) in `v`, with where it is.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let here = format!("{at}/{k}");
                match (k.as_str(), child) {
                    ("$ref", Value::String(r)) => out.push((here, r.clone())),
                    ("mapping", Value::Object(m)) if at.ends_with("/discriminator") => {
                        for (name, r) in m {
                            if let Value::String(r) = r {
                                out.push((format!("{here}/{name}"), r.clone()));
                            }
                        }
                    }
                    _ => refs(child, &here, out),
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                refs(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Every `discriminator` object in `v`.
fn discriminators<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                if k == "discriminator" {
                    out.push(child);
                } else {
                    discriminators(child, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|child| discriminators(child, out)),
        _ => {}
    }
}

#[test]
fn every_reference_in_the_document_resolves() {
    let doc = doc();
    let mut all = Vec::new();
    refs(doc, "", &mut all);
    assert!(all.len() > 50, "only {} references found", all.len());
    let broken: Vec<_> = all
        .iter()
        .filter(|(_, r)| r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_none())
        .collect();
    assert!(broken.is_empty(), "unresolved references: {broken:?}");

    // A discriminated union's members each fix the discriminator to the name mapped to them.
    let mut unions = Vec::new();
    discriminators(doc, &mut unions);
    assert!(!unions.is_empty());
    for d in unions {
        let property = d["propertyName"]
            .as_str()
            .expect("a discriminator's propertyName");
        for (name, r) in d["mapping"].as_object().into_iter().flatten() {
            let member = r
                .as_str()
                .and_then(|r| doc.pointer(r.strip_prefix('#')?))
                .unwrap_or_else(|| panic!("unresolved mapping {r}"));
            assert_eq!(
                member["properties"][property]["const"].as_str(),
                Some(name.as_str()),
                "{r} does not fix `{property}` to `{name}`"
            );
            assert!(
                member["required"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|p| p == property)),
                "{r} does not require `{property}`"
            );
        }
    }

    // Every tag an operation uses is declared, and every operation has a unique id.
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(doc) {
        for t in op["tags"].as_array().into_iter().flatten() {
            assert!(
                tags.contains(t.as_str().unwrap()),
                "{method} {path}: tag {t}"
            );
        }
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(
            ids.insert(id.to_string()),
            "{method} {path}: operationId `{id}`"
        );
    }
}
