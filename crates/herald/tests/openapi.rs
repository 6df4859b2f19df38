//! The OpenAPI document (`GET /v1/openapi.json`, docs/openapi.md) against
//! a real hub and against the sources: it is OpenAPI 3.1, it describes
//! exactly the routes the router defines, every `error.code` the hub's
//! sources answer is in it (and in docs/api.md), and real answers carry
//! the statuses and codes it lists for them.

mod support;

use reqwest::header;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use support::*;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A source file up to its test module (`#[cfg(test)]`).
fn source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    out.sort();
    out
}

/// The text of a call's arguments: from just after `(` to its matching `)`.
fn call_args(text: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return &text[..i],
            ')' => depth -= 1,
            _ => {}
        }
    }
    text
}

/// The string literal `text` starts with (after whitespace), if any.
fn leading_literal(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}

/// `text` after its first top-level comma (the second argument on).
fn after_first_arg(text: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => return &text[i + 1..],
            _ => {}
        }
    }
    ""
}

/// Every `(path, METHOD)` the router defines: the `.route(...)` calls of
/// http/mod.rs and mercure/mod.rs (Mercure's paths are built from `PATH`).
fn router_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for file in ["src/http/mod.rs", "src/mercure/mod.rs"] {
        let text = source(&crate_dir().join(file));
        for (i, _) in text.match_indices(".route(") {
            let args = call_args(&text[i + ".route(".len()..]);
            let first = args.trim_start();
            let path = if let Some(lit) = leading_literal(first) {
                lit.to_string()
            } else if let Some(fmt) = first.strip_prefix("&format!(") {
                leading_literal(fmt)
                    .unwrap_or_else(|| panic!("a route path: {args}"))
                    .replace("{PATH}", "/.well-known/mercure")
                    .replace("{{", "{")
                    .replace("}}", "}")
            } else if first.starts_with("PATH") {
                "/.well-known/mercure".to_string()
            } else {
                panic!("a route path this test cannot read: {args}");
            };
            let handlers = after_first_arg(args);
            let mut found = false;
            for method in METHODS {
                for (j, _) in handlers.match_indices(&format!("{method}(")) {
                    let before = handlers[..j].chars().next_back();
                    if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                        routes.insert((path.clone(), method.to_uppercase()));
                        found = true;
                    }
                }
            }
            assert!(found, "no method router in route {path}: {handlers}");
        }
    }
    assert!(routes.len() >= 25, "the route parser found the routes: {routes:?}");
    routes
}

/// Every `(path, METHOD)` of the document.
fn document_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                assert!(op["operationId"].is_string(), "{method} {path} has an operationId");
                routes.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    routes
}

/// The error codes the sources answer: literal codes given to the error
/// constructors of the adapters, of authentication and the hub, of `herald-core`'s
/// checks, of the stream caps and of the server's head errors.
fn source_codes() -> BTreeSet<String> {
    let src = crate_dir().join("src");
    let mut files = Vec::new();
    for dir in ["http", "mercure", "auth", "hub"] {
        files.extend(rust_files(&src.join(dir)));
    }
    files.extend(rust_files(&crate_dir().join("../herald-core/src")));
    for file in ["registry/mod.rs", "invalidation.rs", "server/head_errors.rs"] {
        files.push(src.join(file));
    }
    // Calls whose first argument is the code, and calls whose second is.
    let first = [
        "bad_request(",
        "forbidden(",
        "too_many(",
        "AuthError::new(",
        "Invalid::new(",
        "bad(",
    ];
    let second = ["ApiError::new(", "json_answer("];
    let is_code = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut codes = BTreeSet::new();
    for file in &files {
        let text = source(file);
        for call in first.iter().chain(&second) {
            for (i, _) in text.match_indices(call) {
                let before = text[..i].chars().next_back();
                if call.ends_with("bad(") && before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let args = call_args(&text[i + call.len()..]);
                let arg = if second.contains(call) {
                    after_first_arg(args)
                } else {
                    args
                };
                if let Some(code) = leading_literal(arg).filter(|c| is_code(c)) {
                    codes.insert(code.to_string());
                }
            }
        }
        // The caps name their codes in a match: `Session => "session_stream_cap"`.
        for (i, _) in text.match_indices("=> \"") {
            if let Some(code) = leading_literal(&text[i + 3..]).filter(|c| c.ends_with("_cap")) {
                codes.insert(code.to_string());
            }
        }
    }
    assert!(codes.len() >= 40, "the code scanner found the codes: {codes:?}");
    codes
}

/// Every `error.code` value some error response of the document lists.
fn document_codes(doc: &Value) -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                for code in listed_codes(response) {
                    assert!(
                        status.starts_with('4') || status.starts_with('5'),
                        "{code} under {status}"
                    );
                    codes.insert(code);
                }
            }
        }
    }
    codes
}

/// The codes one error response lists in its schema.
fn listed_codes(response: &Value) -> Vec<String> {
    let schema = &response["content"]["application/json"]["schema"];
    let Some(parts) = schema["allOf"].as_array() else {
        return Vec::new();
    };
    parts
        .iter()
        .filter_map(|p| p.pointer("/properties/error/properties/code/enum"))
        .flat_map(|e| e.as_array().cloned().unwrap_or_default())
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

async fn fetch_document(server: &Server) -> Value {
    let r = server.get("/v1/openapi.json", None).await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("the document is JSON")
}

#[tokio::test]
async fn the_document_is_served_without_credentials_and_cached() {
    let server = start();
    let r = server.get("/v1/openapi.json", None).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "application/json");
    let cache = h[header::CACHE_CONTROL].to_str().expect("ascii");
    assert!(cache.contains("max-age="), "cacheable: {cache}");
    let etag = h[header::ETAG].clone();
    let doc: Value = r.json().await.expect("JSON");
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "OpenAPI 3.1: {version}");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // Built once: the same bytes, the same tag; a client holding it gets 304.
    let again = client()
        .get(format!("{}/v1/openapi.json", server.base))
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .expect("conditional get");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[header::ETAG], etag);
}

#[tokio::test]
async fn the_document_has_exactly_the_routers_routes() {
    let server = start();
    let doc = fetch_document(&server).await;
    let routed = router_routes();
    let documented = document_routes(&doc);
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(unrouted.is_empty(), "documented but not routed: {unrouted:?}");

    // And the running router answers each of them itself, never with its
    // fallback (`404 no such endpoint`, `405`).
    for (path, method) in &documented {
        let url = format!("{}{}", server.base, path.replace("{", "x").replace("}", ""));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = client().request(method.clone(), url).send().await.expect("request");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404 && body.contains("no such endpoint") && !path.contains('{')),
            "{method} {path} fell through to the fallback: {body}"
        );
    }
}

#[tokio::test]
async fn every_operation_has_its_error_statuses() {
    let server = start();
    let doc = fetch_document(&server).await;
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            ids.insert(op["operationId"].as_str().expect("operationId").to_string());
        }
    }
    let listed: BTreeSet<String> = herald::http::error_catalog::ERRORS
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(
        ids, listed,
        "the error catalogue names exactly the document's operations"
    );
    // Every request can be refused for its head, so every operation lists
    // at least that; an authenticated one lists its `401`.
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            let responses = &op["responses"];
            assert!(listed_codes(&responses["431"]).contains(&"request_header_too_large".to_string()));
            let open = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r == &json!({})));
            if !open {
                assert!(
                    listed_codes(&responses["401"]).contains(&"missing_credential".to_string()),
                    "{} lists 401 missing_credential",
                    op["operationId"]
                );
            }
        }
    }
}

#[tokio::test]
async fn every_error_code_the_sources_answer_is_documented() {
    let server = start();
    let doc = fetch_document(&server).await;
    let documented = document_codes(&doc);
    let answered = source_codes();
    // Not per operation: `405` answers a method a path does not have (the
    // document lists the methods it has), `500` a bug.
    let path_level = ["method_not_allowed", "internal_error"];
    let missing: Vec<_> = answered
        .iter()
        .filter(|c| !documented.contains(*c) && !path_level.contains(&c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "codes the hub answers that no operation lists: {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&answered).collect();
    assert!(stale.is_empty(), "documented codes no source answers: {stale:?}");
    let api_md = std::fs::read_to_string(crate_dir().join("../../docs/api.md")).expect("docs/api.md");
    let prose: Vec<_> = documented
        .iter()
        .filter(|c| !api_md.contains(&format!("`{c}`")))
        .collect();
    assert!(prose.is_empty(), "codes missing from docs/api.md: {prose:?}");
}

/// Whether the operation `method path` lists `code` under `status`.
fn lists(doc: &Value, method: &str, path: &str, status: u16, code: &str) -> bool {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    listed_codes(response).iter().any(|c| c == code)
}

#[tokio::test]
async fn real_refusals_are_the_ones_documented() {
    let server = start();
    let doc = fetch_document(&server).await;
    let key = server.admin_key.clone();
    let post = |path: &str, credential: Option<&str>, body: &str| {
        let mut req = client()
            .post(format!("{}{path}", server.base))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        req.send()
    };
    let get = |path: &str, credential: Option<&str>| {
        let mut req = client().get(format!("{}{path}", server.base));
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        req.send()
    };
    // A single-use SSE token, spent by the stream it opened.
    let (s, minted) = server
        .post("/v1/tokens", Some(&key), json!({"sub": "carol", "subscribe": ["a"]}))
        .await;
    assert_eq!(s, 200, "{minted}");
    let spent = minted["token"].as_str().expect("token").to_string();
    let stream = server.stream("/v1/events?topic=a", &spent).await;
    let cases = vec![
        ("get", "/v1/overview", get("/v1/overview", Some(&spent)).await),
        ("post", "/v1/publish", post("/v1/publish", None, "{}").await),
        ("post", "/v1/publish", post("/v1/publish", Some(&key), "{").await),
        (
            "post",
            "/v1/publish",
            post("/v1/publish", Some(&key), &json!({"topic": "a", "data": 1}).to_string()).await,
        ),
        (
            "post",
            "/v1/publish",
            post(
                "/v1/publish",
                Some(&key),
                &json!({"topic": "a", "data": 1, "audience": "public", "type": "revoked"}).to_string(),
            )
            .await,
        ),
        ("post", "/v1/tokens", post("/v1/tokens", Some(&key), "{}").await),
        (
            "post",
            "/v1/revocations?dry_run=maybe",
            post("/v1/revocations?dry_run=maybe", Some(&key), "{}").await,
        ),
        ("get", "/v1/events", get("/v1/events?topic=", Some(&key)).await),
        ("get", "/v1/events", get("/v1/events?topic=a&token=st_nope", None).await),
        (
            "get",
            "/v1/connections/{id}",
            get("/v1/connections/nope", Some(&key)).await,
        ),
        (
            "get",
            "/v1/overview",
            get("/v1/overview", Some(&user("bob", json!({})))).await,
        ),
        (
            "get",
            "/.well-known/mercure",
            get("/.well-known/mercure?topic=a", None).await,
        ),
    ];
    for (method, path, r) in cases {
        let r = r.expect("request");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("a JSON error");
        let code = body["error"]["code"].as_str().expect("an error code");
        let documented_path = path.split('?').next().unwrap_or(path);
        assert!(
            lists(&doc, method, documented_path, status, code),
            "{method} {path} answered {status} {code}, which the document does not list"
        );
    }
    drop(stream);
}
