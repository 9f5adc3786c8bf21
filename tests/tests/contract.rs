//! `openapi.yaml` is the contract the mobile team builds against: it names exactly the routes
//! `template.yaml` deploys and the local gateway serves, and every operation documents the
//! API's one error shape.

use std::collections::BTreeSet;

use serde_json::Value;
use tests::{template, workspace_root};

fn contract() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("openapi.yaml")).unwrap();
    serde_norway::from_str(&text).expect("openapi.yaml is YAML")
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// (METHOD, path) of every operation in the contract.
fn contract_routes(contract: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in contract["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn the_contract_the_template_and_the_local_gateway_name_the_same_routes() {
    let contract = contract_routes(&contract());
    let routes = template().routes().unwrap();
    let deployed: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let in_contract_only: Vec<_> = contract.difference(&deployed).collect();
    let deployed_only: Vec<_> = deployed.difference(&contract).collect();
    assert!(
        in_contract_only.is_empty() && deployed_only.is_empty(),
        "only in openapi.yaml: {in_contract_only:?}; only in template.yaml: {deployed_only:?}"
    );
    // The local gateway routes exactly the template's routes, each to a handler.
    for route in &routes {
        assert!(
            local::Endpoint::for_binary(&route.binary).is_some(),
            "{} {} has no handler in the local gateway",
            route.method,
            route.path
        );
    }
}

#[test]
fn every_operation_documents_its_errors_in_the_one_error_shape() {
    let contract = contract();
    for (path, item) in contract["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let what = format!("{} {path}", method.to_uppercase());
            assert!(operation["operationId"].is_string(), "{what}: operationId");
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{what}: a success response"
            );
            let public = operation.get("security") == Some(&Value::Array(vec![]));
            let expected_errors: &[&str] = if public { &[] } else { &["400", "401", "503"] };
            for status in expected_errors {
                assert!(responses.contains_key(*status), "{what}: {status}");
            }
            if path.contains("{id}") {
                assert!(responses.contains_key("404"), "{what}: 404");
            }
            // The health report is its own answer, 503 included.
            let health = operation["operationId"] == "health";
            for (status, response) in responses {
                if !health && (status.starts_with('4') || status.starts_with('5')) {
                    let reference = response["$ref"].as_str().unwrap_or_default();
                    let inline = response["content"]["application/json"]["schema"]["$ref"]
                        .as_str()
                        .unwrap_or_default();
                    assert!(
                        reference.starts_with("#/components/responses/")
                            || inline == "#/components/schemas/Error",
                        "{what}: {status} must use the error shape"
                    );
                }
            }
        }
    }
}
