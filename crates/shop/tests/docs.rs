//! `/openapi.json` documents every route with the envelope on every error, and `/docs` renders
//! it with no internet access (Swagger UI is served from the binary), in headless Chromium.
#![allow(clippy::unwrap_used)]
mod common;

use common::browser::Browser;
use common::spawn_app;
use serde_json::Value;

const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("post", "/users"),
    ("get", "/users/{id}"),
    ("post", "/products"),
    ("get", "/products/{id}"),
    ("post", "/orders"),
    ("get", "/orders/{id}"),
    ("post", "/webhook-endpoints"),
    ("delete", "/webhook-endpoints/{id}"),
    ("post", "/webhook-endpoints/{id}/rotate-secret"),
    ("get", "/webhook-endpoints/{id}/deliveries"),
    ("post", "/webhooks/payments"),
    ("get", "/ws"),
    ("get", "/ws/events"),
    ("get", "/admin"),
    ("get", "/admin/jobs"),
    ("post", "/admin/jobs/{id}/retry"),
    ("get", "/admin/stats"),
    ("get", "/admin/webhook-endpoints"),
];

/// The repository's contract, docs/API.md, names every route the service serves (as
/// `` `METHOD /path`` followed by a backquote, a space or a query).
#[test]
fn the_contract_in_the_repository_names_every_route() {
    let contract = include_str!("../../../docs/API.md");
    for (method, path) in ROUTES {
        let named = format!("`{} {path}", method.to_uppercase());
        let found = contract.match_indices(&named).any(|(at, _)| {
            matches!(
                contract[at + named.len()..].chars().next(),
                Some('`' | ' ' | '?')
            )
        });
        assert!(found, "docs/API.md does not name {named}`");
    }
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_every_error_is_the_envelope() {
    let app = spawn_app().await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        ROUTES.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (method, path) in ROUTES {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        for (status, response) in operation["responses"].as_object().unwrap() {
            let is_error =
                status == "default" || status.starts_with('4') || status.starts_with('5');
            if is_error {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorEnvelope",
                    "{method} {path} {status}"
                );
            }
        }
    }
    let envelope = &doc["components"]["schemas"]["ErrorEnvelope"];
    let mut required: Vec<&str> = envelope["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["code", "error", "request_id", "success"]);
    assert!(envelope["example"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    // Examples for the main errors.
    let conflict = &doc["paths"]["/users"]["post"]["responses"]["409"]["content"]
        ["application/json"]["example"];
    assert_eq!(conflict["code"], "conflict");
    let stock = &doc["paths"]["/orders"]["post"]["responses"]["409"]["content"]["application/json"]
        ["example"];
    assert_eq!(stock["code"], "insufficient_stock");
}

#[tokio::test]
async fn the_docs_page_renders_every_operation_offline() {
    let app = spawn_app().await;
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no CDN"
    );

    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let tab = browser.open(&app.url("/docs/")).await;
    // One block per documented operation.
    let every_operation = format!(
        "document.querySelectorAll('.opblock').length === {}",
        ROUTES.len()
    );
    browser.wait_for(&tab, &every_operation, 30).await;
    let title = browser
        .eval(&tab, "document.querySelector('.title')?.textContent ?? ''")
        .await;
    assert!(title.as_str().unwrap().starts_with("shop"), "{title}");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("shop-docs.png");
    browser.screenshot(&tab, &shot).await;
    println!("screenshot: {}", shot.display());
}
