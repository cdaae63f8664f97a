//! The REST contract: `GET /openapi.json` from a live gateway is an OpenAPI
//! 3.1 document naming every route of the router (the routes are read from
//! the router's source, so a new route without its annotation fails here),
//! and schemathesis, run against the same live gateway over every operation
//! with the admin key, finds no 5xx and no answer off the schema.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gateway::http::openapi::{ALIASES, NOT_IN_DOCUMENT};
use serde_json::{Value, json};
use tests::pay::{PayGateway, PayOptions};
use tests::{Backend, TestApp};

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(method, path)` of every `.route("PATH", get(..).post(..))` in the
/// gateway's source, the path as written (a nested router's without its
/// prefix).
fn routes_in_source() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let args = rest.trim_start();
            let Some(args) = args.strip_prefix('"') else {
                continue;
            };
            let end = args.find('"').expect("closing quote");
            let path = &args[..end];
            // The method routers: up to the `)` that closes `.route(`.
            let mut depth = 1usize;
            let mut close = args.len();
            for (i, c) in args[end + 1..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = end + 1 + i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &args[end + 1..close];
            let mut found = false;
            for m in METHODS {
                let word = format!("{m}(");
                let named = call.match_indices(&word).any(|(i, _)| {
                    i == 0
                        || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && call.as_bytes()[i - 1] != b'_'
                });
                if named {
                    routes.insert((m.to_owned(), path.to_owned()));
                    found = true;
                }
            }
            assert!(found, "{}: no method for route {path}", file.display());
        }
    }
    routes
}

/// `(method, path)` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_owned(), path.clone()));
            }
        }
    }
    ops
}

/// A concrete URL path for a templated one: each `{param}` a plausible value.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("closing brace") + open;
        out.push_str(match &rest[open + 1..close] {
            "store" => "S001",
            "sku" => "COLA",
            "action" => "accept",
            "platform" => "meituan",
            _ => "x1",
        });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn openapi_document_names_every_route() {
    let Some(t) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    // No key needed.
    let resp = t
        .http
        .get(t.url("/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = resp.json().await.expect("the document is JSON");
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "OpenAPI {version}, not 3.1");
    assert!(doc["info"]["title"].is_string());

    // Every route of the router is in the document, or left out on purpose.
    let documented = operations(&doc);
    let left_out: BTreeSet<(String, String)> = NOT_IN_DOCUMENT
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let routes = routes_in_source();
    assert!(
        routes.len() > 30,
        "only {} routes read from the source",
        routes.len()
    );
    for (method, path) in &routes {
        let full = [path.clone(), format!("/api/v1{path}")];
        let known = full.iter().any(|p| {
            let key = (method.clone(), p.clone());
            documented.contains(&key) || left_out.contains(&key)
        });
        assert!(
            known,
            "route {} {path} is not in /openapi.json",
            method.to_uppercase()
        );
    }
    // And nothing in the document that the router does not serve: each
    // operation, called, is routed (not the fallback's `no such route`, not
    // 405).
    for (method, path) in &documented {
        if path.ends_with("/stream") {
            continue; // an endless answer; routed, see the feed tests
        }
        let url = t.url(&concrete(path));
        let req = match method.as_str() {
            "get" => t.http.get(&url),
            "put" => t.http.put(&url),
            "post" => t.http.post(&url),
            other => panic!("unexpected method {other}"),
        };
        let resp = req.bearer_auth(&t.admin).send().await.expect("send");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: not routed for this method");
        assert!(
            !body.contains("no such route"),
            "{method} {path}: documented but the router does not know it"
        );
    }
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            }
        }
    }
    for (alias, of) in ALIASES {
        assert!(doc["paths"][alias].is_object() && doc["paths"][of].is_object());
    }

    // The problem document, its codes, the key scheme, money as a string.
    let schemas = &doc["components"]["schemas"];
    let codes: BTreeSet<&str> = schemas["ProblemCode"]["enum"]
        .as_array()
        .expect("problem codes")
        .iter()
        .map(|c| c.as_str().expect("code"))
        .collect();
    let all: BTreeSet<&str> = gateway::error::Code::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(codes, all);
    assert!(codes.contains("out_of_stock"));
    let problem = &schemas["Problem"]["properties"];
    for field in ["type", "title", "status", "code", "detail"] {
        assert!(problem[field].is_object(), "Problem has no {field}");
    }
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let create = &doc["paths"]["/api/v1/orders"]["post"];
    assert_eq!(create["security"][0]["api_key"], Value::Array(vec![]));
    assert!(
        create["responses"]["4XX"]["content"]["application/problem+json"].is_object(),
        "{create}"
    );
    assert!(doc["paths"]["/livez"]["get"].get("security").is_none());
    let money = &schemas["Money"];
    assert_eq!(money["type"], "string");
    assert!(
        money["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("[0-9]"))
    );
    assert!(
        schemas["Order"]["properties"]["total"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/Money"))
    );
    t.stop().await;
}

/// A query or a path the router cannot read is refused with the problem
/// document like every other error, not axum's plain text (found by
/// schemathesis: a parameter given twice).
#[tokio::test]
async fn unreadable_query_and_path_are_problems() {
    let Some(t) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let cases = [
        (
            "/api/v1/stores/S001/orders?since=1&since=2",
            400,
            "invalid_query",
        ),
        ("/api/v1/outbox?limit=1&limit=2", 400, "invalid_query"),
        ("/api/v1/orders/%FF", 400, "invalid_request"),
        ("/api/v1/stores/%FF%FE/catalog", 400, "invalid_request"),
    ];
    for (path, status, code) in cases {
        let resp = t
            .http
            .get(t.url(path))
            .bearer_auth(&t.admin)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let body: Value = resp.json().await.expect("problem JSON");
        assert_eq!(body["code"], code, "{path}: {body}");
    }
    t.stop().await;
}

/// schemathesis against a live gateway (payments on, against the provider
/// simulator) with the demo catalog and an order: every operation but the
/// endless feed, a bounded number of cases each, checked for 5xx and for
/// answers off the schema.
async fn schemathesis_on(backend: Backend) {
    let Some(python) = tests::interop_python("schemathesis", "schemathesis") else {
        return;
    };
    let cli = python.with_file_name("schemathesis");
    let Some(gw) = PayGateway::spawn(backend, PayOptions::default()).await else {
        return;
    };
    gateway::demo::seed(&gw.db).await.expect("demo data");
    let (status, order) = gw
        .send(
            gw.http.post(gw.url("/api/v1/orders")),
            &gw.admin,
            json!({"store_id": "S001", "lines": [{"sku": "COLA", "quantity": "2"}]}),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let report = tempfile::tempdir().expect("report dir");
    let out = tokio::process::Command::new(&cli)
        .arg("run")
        .arg(gw.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {}", gw.admin)])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", "25"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--exclude-path", "/api/v1/stores/{store}/orders/stream"])
        .args(["--request-timeout", "30"])
        .args(["--seed", "20261203"])
        // One worker: with two, schemathesis 4.32 on CPython 3.11 sometimes
        // fails inside its own generator ("AST constructor recursion depth
        // mismatch"), whatever the API answers.
        .args(["--workers", "1"])
        .arg("--no-color")
        .current_dir(report.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("passed"), "no summary:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_nor_answer_off_schema_sqlite() {
    schemathesis_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_nor_answer_off_schema_postgres() {
    schemathesis_on(Backend::Postgres).await;
}
