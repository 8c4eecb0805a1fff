//! `/openapi.json` documents exactly the routes the server registers.

use crate::helpers::spawn_app;
use herald_api::routes::ROUTES;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

#[tokio::test]
async fn every_registered_route_is_documented_and_nothing_else() {
    // Arrange
    let app = spawn_app().await;

    // Act: no key, the document is public.
    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request sent");

    // Assert
    assert_eq!(resp.status().as_u16(), 200);
    let doc: Value = resp.json().await.expect("JSON");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                documented.insert((method.to_string(), path.clone()));
            }
        }
    }
    let registered: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes registered without documentation (add #[utoipa::path] to the handler and \
         list it in herald_api::openapi::ApiDoc): {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unserved.is_empty(),
        "documented but not registered in routes::ROUTES: {unserved:?}"
    );
}

#[tokio::test]
async fn every_operation_has_a_description_and_its_path_parameters() {
    let app = spawn_app().await;
    let (_, doc) = app.get("/openapi.json").await;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let summary = op["summary"].as_str().unwrap_or_default();
            assert!(!summary.is_empty(), "{method} {path} has no summary");
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        }
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}
