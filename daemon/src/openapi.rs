//! The OpenAPI 3.1 document of the HTTP API, written by hand in `openapi.yaml` beside this file
//! and served as JSON at `GET /api/v1/openapi.json`. `tests/openapi.rs` checks it against the
//! router both ways, so a route cannot be added or removed without the document following.

use std::sync::OnceLock;

use serde_json::Value;

const SOURCE: &str = include_str!("openapi.yaml");

/// The document as JSON, parsed from the embedded YAML on first use.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        serde_yaml::from_str(SOURCE).expect("openapi.yaml is valid YAML (checked by its test)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_parses_as_openapi_3_1() {
        let doc = document();
        let version = doc["openapi"]
            .as_str()
            .expect("an `openapi` version string");
        assert!(version.starts_with("3.1."), "openapi: {version}");
        assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
        assert!(doc["components"]["schemas"].is_object());
    }
}
