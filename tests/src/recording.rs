//! An HTTP proxy in front of the local AWS server that records every call the handlers make:
//! its operation, the IAM actions AWS would authorize it by (what moto cannot check: it
//! enforces no IAM; tests/tests/iam.rs checks them against the functions' policies) and the
//! bytes of its answer (the round-trips benchmark).

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::State as Extract;
use axum::http::{HeaderMap, Method, Request, Response};
use tokio::net::TcpListener;

/// One AWS call.
#[derive(Debug, Clone)]
pub struct Call {
    /// DynamoDB's operation (`GetItem`), or an S3 request's method (`S3 GET`).
    pub operation: String,
    /// The IAM actions AWS authorizes it by.
    pub actions: Vec<String>,
    /// The bytes of the server's answer.
    pub answer_bytes: u64,
    /// A transaction's `ClientRequestToken`, as sent.
    pub client_request_token: Option<String>,
}

/// The proxy, listening on 127.0.0.1 at `endpoint()`.
pub struct RecordingProxy {
    endpoint: String,
    calls: Arc<Mutex<Vec<Call>>>,
    losing: Arc<Mutex<Vec<String>>>,
}

struct Forwarding {
    target: String,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Operations whose next call's answer is lost (one each).
    losing: Arc<Mutex<Vec<String>>>,
}

impl RecordingProxy {
    /// A proxy in front of `target` (a URL such as `http://127.0.0.1:4576`).
    pub async fn start(target: &str) -> Self {
        ai::provider::install_tls_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let losing = Arc::new(Mutex::new(Vec::new()));
        let forwarding = Arc::new(Forwarding {
            target: target.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            calls: calls.clone(),
            losing: losing.clone(),
        });
        let app = axum::Router::new().fallback(forward).with_state(forwarding);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            endpoint,
            calls,
            losing,
        }
    }

    /// The next call of `operation` (`TransactWriteItems`) reaches the server, which applies
    /// it, and its answer is lost on the way back: the client gets a 500 (`InternalServerError`,
    /// which the SDK retries) as when a connection drops after the commit.
    pub fn lose_next_answer_of(&self, operation: &str) {
        self.losing
            .lock()
            .expect("not poisoned")
            .push(operation.to_owned());
    }

    /// Where clients should send their requests.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The calls recorded since the last take, in order.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().expect("not poisoned"))
    }

    /// The IAM actions of the calls recorded since the last take, in order.
    pub fn take(&self) -> Vec<String> {
        self.take_calls()
            .into_iter()
            .flat_map(|call| call.actions)
            .collect()
    }
}

/// Sends a request on to `target` as it came (its method, path and headers) and answers what
/// the server answered: its status, the response with its status and headers, and its body.
pub(crate) async fn pass_on(
    http: &reqwest::Client,
    target: &str,
    parts: &axum::http::request::Parts,
    body: axum::body::Bytes,
) -> (
    axum::http::StatusCode,
    axum::http::response::Builder,
    axum::body::Bytes,
) {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut sent = http.request(parts.method.clone(), format!("{target}{path}"));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            sent = sent.header(name, value);
        }
    }
    let answer = sent
        .body(body)
        .send()
        .await
        .expect("the local AWS server answers");
    let status = answer.status();
    let mut response = Response::builder().status(status);
    // A HEAD's answer says its object's length, with no body to take it from.
    let is_head = parts.method == axum::http::Method::HEAD;
    for (name, value) in answer.headers() {
        if (name != "content-length" || is_head) && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.expect("an answer body");
    (status, response, bytes)
}

async fn forward(Extract(to): Extract<Arc<Forwarding>>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.expect("a request body");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let operation = match parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
    {
        Some(target) => target.rsplit('.').next().unwrap_or(target).to_owned(),
        None => format!("S3 {}", parts.method),
    };
    let actions = iam_actions(&parts.method, path, &parts.headers, &body);
    let client_request_token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|request| request["ClientRequestToken"].as_str().map(str::to_owned));
    let (_, response, bytes) = pass_on(&to.http, &to.target, &parts, body).await;
    let lost = {
        let mut losing = to.losing.lock().expect("not poisoned");
        let found = losing.iter().position(|o| *o == operation);
        found.map(|n| losing.remove(n)).is_some()
    };
    to.calls.lock().expect("not poisoned").push(Call {
        operation,
        actions,
        answer_bytes: bytes.len() as u64,
        client_request_token,
    });
    if lost {
        return Response::builder()
            .status(500)
            .header("content-type", "application/x-amz-json-1.0")
            .body(Body::from(
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the answer was lost"}"#,
            ))
            .expect("a response");
    }
    response.body(Body::from(bytes)).expect("a response")
}

/// The IAM actions AWS authorizes a request by (an S3 object's action with the folder of the
/// objects it reaches: `s3:GetObject users/*`): DynamoDB's operation (a transaction, each
/// action it performs), ElastiCache's `Action`, S3's by method, key and sub-resource.
pub fn iam_actions(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    if let Some(target) = headers.get("x-amz-target").and_then(|t| t.to_str().ok()) {
        let operation = target.rsplit('.').next().unwrap_or(target);
        if target.starts_with("AmazonSQS.") {
            // A batch call is authorized as its single call.
            let action = operation.strip_suffix("Batch").unwrap_or(operation);
            return vec![format!("sqs:{action}")];
        }
        if target.starts_with("secretsmanager.") {
            return vec![format!("secretsmanager:{operation}")];
        }
        return match operation {
            "TransactWriteItems" => {
                let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let mut actions: Vec<String> = request["TransactItems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| item.as_object()?.keys().next().cloned())
                    .map(|kind| match kind.as_str() {
                        "Put" => "dynamodb:PutItem".to_owned(),
                        "Update" => "dynamodb:UpdateItem".to_owned(),
                        "Delete" => "dynamodb:DeleteItem".to_owned(),
                        "ConditionCheck" => "dynamodb:ConditionCheckItem".to_owned(),
                        other => format!("dynamodb:{other}"),
                    })
                    .collect();
                actions.sort();
                actions.dedup();
                actions
            }
            "TransactGetItems" => vec!["dynamodb:GetItem".to_owned()],
            operation => vec![format!("dynamodb:{operation}")],
        };
    }
    let form = String::from_utf8_lossy(body);
    if let Some(action) = form
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
    {
        return vec![format!("elasticache:{action}")];
    }
    // S3, path style: /<bucket>[/<key>][?<sub-resource>]
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let has = |name: &str| {
        query
            .split('&')
            .any(|pair| pair == name || pair.starts_with(&format!("{name}=")))
    };
    let action = match (method.as_str(), has_key) {
        ("GET" | "HEAD", false) => "ListBucket",
        ("GET" | "HEAD", true) => "GetObject",
        ("PUT", true) if has("tagging") => "PutObjectTagging",
        ("PUT" | "POST", true) => "PutObject",
        ("DELETE", true) if has("uploadId") => "AbortMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        ("POST", false) if has("delete") => {
            // Each object deleted is authorized by its own key.
            let text = String::from_utf8_lossy(body);
            let mut actions: Vec<String> = text
                .split("<Key>")
                .skip(1)
                .filter_map(|rest| rest.split('/').next())
                .map(|folder| format!("s3:DeleteObject {folder}/*"))
                .collect();
            actions.sort();
            actions.dedup();
            return actions;
        }
        (method, _) => return vec![format!("s3:<{method} {path}?{query}>")],
    };
    // An object's action is granted on the objects under a prefix: the key's first folder.
    let folder = path
        .trim_start_matches('/')
        .split('/')
        .nth(1)
        .filter(|_| has_key && action != "ListBucket");
    let mut actions = match folder {
        Some(folder) => vec![format!("s3:{action} {folder}/*")],
        None => vec![format!("s3:{action}")],
    };
    // A copy reads its source, and writes tags here: its own, or the source's (read there).
    if let (Some(source), Some(folder)) = (
        headers
            .get("x-amz-copy-source")
            .and_then(|source| source.to_str().ok()),
        folder,
    ) {
        let source_folder = source
            .trim_start_matches('/')
            .split('/')
            .nth(1)
            .unwrap_or_default();
        actions.push(format!("s3:GetObject {source_folder}/*"));
        let replaces_tags = headers
            .get("x-amz-tagging-directive")
            .is_some_and(|directive| directive == "REPLACE");
        if !replaces_tags {
            actions.push(format!("s3:GetObjectTagging {source_folder}/*"));
        }
        actions.push(format!("s3:PutObjectTagging {folder}/*"));
    }
    actions
}
