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
            // Success is a 2xx, or a 303 to where the result was written (an export).
            assert!(
                responses
                    .keys()
                    .any(|status| status.starts_with('2') || status == "303"),
                "{what}: a success response"
            );
            let public = operation.get("security") == Some(&Value::Array(vec![]));
            let takes_input =
                operation.get("parameters").is_some() || operation.get("requestBody").is_some();
            let expected_errors: &[&str] = match (public, takes_input) {
                (true, _) => &[],
                (false, true) => &["400", "401", "503"],
                (false, false) => &["401", "503"],
            };
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

#[tokio::test]
async fn a_streamed_completion_sends_the_events_the_contract_names() {
    // Found by schemathesis: the contract described the event stream as one string.
    let contract = contract();
    let schema = &contract["paths"]["/completion"]["post"]["responses"]["200"]["content"]
        ["text/event-stream"]["schema"];
    let names: Vec<&str> = schema["properties"]["event"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let api = tests::LocalApi::start().await;
    let alice = api.as_user(&tests::new_user());
    let id = alice.create_conversation(None).await;
    let reply = reqwest::Client::new()
        .post(format!("{}/completion", api.base))
        .bearer_auth(api.tokens.mint("streamer", 3600))
        .json(&serde_json::json!({"prompt": "hello", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["content-type"], "text/event-stream", "{id}");
    let text = reply.text().await.unwrap();
    let mut events = 0;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let name = block
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap();
        let data = block
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        assert!(names.contains(&name), "{name} is not in the contract");
        serde_json::from_str::<Value>(data).expect("each event's data is JSON");
        events += 1;
    }
    assert!(events >= 2, "{text}");
}
