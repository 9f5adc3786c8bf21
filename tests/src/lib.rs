//! What every end-to-end test needs: the real local servers (started by `scripts/test.sh`),
//! the local gateway serving the real handlers on a free port, and users with tokens.
//! Each test makes its own users, so tests run in parallel and never see each other's data.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use assistant::config::ModelConfig;
use assistant::State;
use aws_sdk_dynamodb::types::AttributeValue;
use local::{Gateway, Template, Tokens};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;

pub mod asl;
pub mod capacity;
pub mod corpus;
pub mod meter;
pub mod proxy;
pub mod recording;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn template() -> Template {
    Template::load(&workspace_root().join("template.yaml")).expect("template.yaml parses")
}

/// Handler state against the local DynamoDB server, configured as the functions are, on a
/// table of its own created from the template (moto copies a whole table on every
/// transaction, so small tables keep the suite fast as it grows).
pub async fn state() -> State {
    state_with_clock(Arc::new(SystemClock)).await
}

/// Like [`state`], with time from `clock`.
pub async fn state_with_clock(clock: Arc<dyn Clock>) -> State {
    state_configured(&[], clock).await
}

/// Like [`state`], with some configuration variables set as given (the rest from the
/// environment `scripts/test.sh` sets up) and time from `clock`.
pub async fn state_configured(overrides: &[(&str, &str)], clock: Arc<dyn Clock>) -> State {
    state_reaching(None, overrides, clock).await
}

/// Like [`state_configured`], with the handlers' AWS calls sent to `endpoint` (a
/// [`proxy::FaultProxy`] in front of the local server); the table and bucket are made
/// directly.
pub async fn state_through(endpoint: &str, overrides: &[(&str, &str)]) -> State {
    state_through_with_clock(endpoint, overrides, Arc::new(SystemClock)).await
}

/// Like [`state_through`], with time from `clock`.
pub async fn state_through_with_clock(
    endpoint: &str,
    overrides: &[(&str, &str)],
    clock: Arc<dyn Clock>,
) -> State {
    state_reaching(Some(endpoint), overrides, clock).await
}

async fn state_reaching(
    endpoint: Option<&str>,
    overrides: &[(&str, &str)],
    clock: Arc<dyn Clock>,
) -> State {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        panic!("AWS_ENDPOINT_URL is not set: run the tests through scripts/test.sh, which starts the local servers");
    }
    let sdk = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("test-{}", uuid::Uuid::new_v4().simple());
    local::table::create_table(
        &client,
        &table,
        &template().table().expect("the table's definition"),
    )
    .await
    .expect("create the test table");
    // A bucket of its own too, named like the table.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(&table)
        .send()
        .await
        .expect("create the test bucket");
    let mut overrides: HashMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    overrides
        .entry("ATTACHMENTS_BUCKET".into())
        .or_insert_with(|| table.clone());
    let lookup = |name: &str| match name {
        "TABLE_NAME" => Some(table.clone()),
        _ => overrides
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok()),
    };
    let config = Config::from_lookup(lookup).expect("a valid configuration");
    let model_config = ModelConfig::from_lookup(lookup).expect("a valid model configuration");
    let handlers_sdk = match endpoint {
        Some(endpoint) => aws_config::from_env().endpoint_url(endpoint).load().await,
        None => sdk,
    };
    State::with_clock(config, model_config, &handlers_sdk, clock)
}

/// Another instance over the same table and bucket as `state` (as another function's), its
/// AWS calls sent to `endpoint`.
pub async fn same_tables_through(state: &State, endpoint: &str) -> State {
    let sdk = aws_config::from_env().endpoint_url(endpoint).load().await;
    State::with_clock(
        state.config.clone(),
        state.model_config.clone(),
        &sdk,
        Arc::new(SystemClock),
    )
}

/// The local API over a state configured with `overrides`, and the table's stream feeding
/// `consumer` as Lambda's event source mapping feeds that function in AWS (tests drive it
/// with `poll_once`).
pub async fn api_feeding(
    consumer: local::StreamConsumer,
    overrides: &[(&str, &str)],
) -> (LocalApi, local::StreamPoller) {
    api_fed(Some(&[consumer]), overrides).await
}

/// The local API over a state configured with `overrides`, and the table's stream feeding
/// every function it feeds in AWS (tests drive it with `poll_once`).
pub async fn api_feeding_every_function(
    overrides: &[(&str, &str)],
) -> (LocalApi, local::StreamPoller) {
    api_fed(None, overrides).await
}

async fn api_fed(
    only: Option<&[local::StreamConsumer]>,
    overrides: &[(&str, &str)],
) -> (LocalApi, local::StreamPoller) {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let state = state_configured(overrides, Arc::new(SystemClock)).await;
    let api = LocalApi::serving(state).await;
    let poller = local::StreamPoller::from_latest(api.state.clone(), &template(), only)
        .await
        .expect("the table has a stream");
    (api, poller)
}

/// A fresh user id, unique to the calling test.
pub fn new_user() -> String {
    format!("user-{}", uuid::Uuid::new_v4())
}

/// The local API, serving the template's routes on a free port of 127.0.0.1.
pub struct LocalApi {
    pub base: String,
    pub tokens: Tokens,
    pub state: State,
    client: reqwest::Client,
}

impl LocalApi {
    pub async fn start() -> Self {
        Self::serving(state().await).await
    }

    /// The local API over the given handler state.
    pub async fn serving(state: State) -> Self {
        ai::provider::install_tls_provider();
        let tokens = Tokens::new("test-secret");
        let routes = template().routes().expect("template routes");
        let gateway = Gateway::new(&routes, state.clone(), tokens.clone())
            .expect("every route has a handler");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let base = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(gateway.serve(listener));
        Self {
            base,
            tokens,
            state,
            client: reqwest::Client::new(),
        }
    }

    /// A client acting as `user`.
    pub fn as_user(&self, user: &str) -> Client {
        Client {
            base: self.base.clone(),
            token: Some(self.tokens.mint(user, 3600)),
            http: self.client.clone(),
        }
    }

    /// A client that sends no token.
    pub fn anonymous(&self) -> Client {
        Client {
            base: self.base.clone(),
            token: None,
            http: self.client.clone(),
        }
    }
}

/// An HTTP client of the local API for one user.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A response: its status and its JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The error code of an error response.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

impl Client {
    pub async fn send(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("the local API answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text}"))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(&body.to_string())).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(&body.to_string())).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a conversation and returns its id.
    pub async fn create_conversation(&self, title: Option<&str>) -> String {
        let body = match title {
            Some(title) => serde_json::json!({ "title": title }),
            None => serde_json::json!({}),
        };
        let reply = self.post("/conversations", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["id"].as_str().expect("an id").to_owned()
    }

    /// Adds a user message and returns the stored message.
    pub async fn say(&self, conversation: &str, content: &str) -> Value {
        let reply = self
            .post(
                &format!("/conversations/{conversation}/messages"),
                serde_json::json!({ "role": "user", "content": content }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body
    }
}

/// The search blocks of a conversation, from its owner's search partition (read
/// consistently), oldest first.
pub async fn search_blocks_of(
    state: &State,
    user: &str,
    conversation: &str,
) -> Vec<HashMap<String, AttributeValue>> {
    let user = shared::model::UserId::parse(user).expect("a valid user id");
    let conversation = shared::model::ConversationId::parse(conversation).expect("a UUID");
    items_under(
        state,
        &shared::keys::search_partition(&user),
        &shared::keys::search_block_prefix(&conversation),
    )
    .await
}

/// Every item the table holds under a user's conversation partition, as raw attribute maps:
/// the ground truth for "nothing was written" assertions.
pub async fn items_of_conversation(
    state: &State,
    user: &str,
    conversation: &str,
) -> Vec<HashMap<String, AttributeValue>> {
    let user = shared::model::UserId::parse(user).expect("a valid user id");
    let conversation = shared::model::ConversationId::parse(conversation).expect("a UUID");
    let partition = shared::keys::conversation_partition(&user, &conversation);
    items_under(state, &partition, "").await
}

/// Every item of `partition` whose sort key starts with `prefix`, read consistently.
async fn items_under(
    state: &State,
    partition: &str,
    prefix: &str,
) -> Vec<HashMap<String, AttributeValue>> {
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let query = client
            .query()
            .table_name(&state.config.table_name)
            .expression_attribute_values(":pk", AttributeValue::S(partition.to_owned()))
            .consistent_read(true)
            .set_exclusive_start_key(start);
        let query = if prefix.is_empty() {
            query.key_condition_expression("PK = :pk")
        } else {
            query
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
        };
        let output = query.send().await.expect("query the partition");
        items.extend(output.items.unwrap_or_default());
        start = output.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// How the stand-in chat-completions server answers.
#[derive(Clone, Copy, Debug)]
pub enum ChatBehaviour {
    Answer,
    /// Answers after half a second.
    Slow,
    /// Fails the first call, answers the rest.
    FailFirst,
    Fail,
    Hang,
}

/// A stand-in for an OpenAI-compatible model endpoint (no model can run here), served over
/// real HTTP so the real provider client talks to it. It counts the calls it gets and keeps
/// what each was sent.
pub struct ChatServer {
    pub base_url: String,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    requests: Arc<std::sync::Mutex<Vec<Value>>>,
}

impl ChatServer {
    pub async fn start(behaviour: ChatBehaviour) -> Self {
        use axum::routing::post;
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let received = requests.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            post(move |body: String| {
                let counter = counter.clone();
                let received = received.clone();
                async move {
                    let call = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let behaviour = match behaviour {
                        ChatBehaviour::Slow => {
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                            ChatBehaviour::Answer
                        }
                        ChatBehaviour::FailFirst if call == 1 => ChatBehaviour::Fail,
                        ChatBehaviour::FailFirst => ChatBehaviour::Answer,
                        other => other,
                    };
                    let request: Value = serde_json::from_str(&body).unwrap_or_default();
                    received.lock().expect("not poisoned").push(request.clone());
                    let last = request["messages"]
                        .as_array()
                        .and_then(|m| m.last())
                        .and_then(|m| m["content"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    match behaviour {
                        ChatBehaviour::Answer if request["stream"] == true => {
                            // Server-sent events, as OpenAI streams: pieces, usage, [DONE].
                            let pieces = ["echo", ": ", last.as_str()];
                            let mut events: Vec<String> = pieces
                                .iter()
                                .map(|p| serde_json::json!({"choices": [{"delta": {"content": p}}]}).to_string())
                                .collect();
                            events.push(
                                serde_json::json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5}})
                                    .to_string(),
                            );
                            events.push("[DONE]".to_owned());
                            let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
                            (axum::http::StatusCode::OK, body)
                        }
                        ChatBehaviour::Answer => (
                            axum::http::StatusCode::OK,
                            serde_json::json!({
                                "choices": [{"message": {"role": "assistant", "content": format!("echo: {last}")}}],
                                "usage": {"prompt_tokens": 11, "completion_tokens": 5}
                            })
                            .to_string(),
                        ),
                        ChatBehaviour::Fail | ChatBehaviour::Slow | ChatBehaviour::FailFirst => {
                            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned())
                        }
                        ChatBehaviour::Hang => {
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                            (axum::http::StatusCode::OK, "{}".to_owned())
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("bound"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url,
            calls,
            requests,
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The request bodies received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

/// Every item of the state's table, sorted by key: the ground truth for "nothing changed".
/// Users' usage counts are left out: every limited request counts itself (`GET /usage`),
/// whatever it does or does not change (tests/tests/limits.rs proves the counts).
pub async fn table_snapshot(state: &State) -> Vec<HashMap<String, AttributeValue>> {
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let output = client
            .scan()
            .table_name(&state.config.table_name)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan the table");
        items.extend(output.items.unwrap_or_default().into_iter().filter(
            |item| !matches!(item.get("PK"), Some(AttributeValue::S(pk)) if pk.ends_with("#USAGE")),
        ));
        start = output.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    let key = |item: &HashMap<String, AttributeValue>| {
        ["PK", "SK"].map(|k| item.get(k).and_then(|v| v.as_s().ok()).cloned())
    };
    items.sort_by_key(key);
    items
}

/// Where a [`FaultyWrites`] client breaks the write it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The write never reaches the server.
    BeforeSending,
    /// The server applies the write, and its answer is lost.
    AnswerLost,
}

/// A DynamoDB client whose `k`-th write call (counting from 1) fails, and every later one, as a
/// crash would stop a run there; reads go through. Built on the SDK's interceptor hooks, so
/// everything else is the real client talking to the real local server.
#[derive(Debug)]
pub struct FaultyWrites {
    fail_from: usize,
    fault: Fault,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultyWrites {
    pub async fn client(fail_from: usize, fault: Fault) -> aws_sdk_dynamodb::Client {
        Self::build(fail_from, fault, Default::default()).await
    }

    /// A client that never fails, and the number of write calls it has made.
    pub async fn counting() -> (
        aws_sdk_dynamodb::Client,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let client = Self::build(usize::MAX, Fault::BeforeSending, Arc::clone(&writes)).await;
        (client, writes)
    }

    async fn build(
        fail_from: usize,
        fault: Fault,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    ) -> aws_sdk_dynamodb::Client {
        let sdk = aws_config::load_from_env().await;
        let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .interceptor(FaultyWrites {
                fail_from,
                fault,
                writes,
            })
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Whether the call being made writes (the SDK names the operation in the config bag).
    fn is_write(cfg: &aws_sdk_dynamodb::config::ConfigBag) -> bool {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| m.name().to_owned())
            .unwrap_or_default();
        [
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "BatchWriteItem",
            "TransactWriteItems",
        ]
        .contains(&operation.as_str())
    }

    fn check(&self, fault: Fault, write: bool) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if self.fault != fault || !write {
            return Ok(());
        }
        let n = self
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if n >= self.fail_from {
            Err(format!("injected fault at write {n} ({fault:?})").into())
        } else {
            Ok(())
        }
    }
}

impl aws_sdk_dynamodb::config::Intercept for FaultyWrites {
    fn name(&self) -> &'static str {
        "FaultyWrites"
    }

    fn read_before_transmit(
        &self,
        _: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.check(Fault::BeforeSending, Self::is_write(cfg))
    }

    fn read_before_deserialization(
        &self,
        _: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.check(Fault::AnswerLost, Self::is_write(cfg))
    }
}

/// A short-term memory entry written at `timestamp`, naming no conversation, expiring a day
/// later.
pub fn memory_entry(
    timestamp: chrono::DateTime<chrono::Utc>,
    role: shared::model::Role,
    content: &str,
) -> domain::memory::MemoryEntry {
    domain::memory::MemoryEntry {
        id: shared::model::MessageId::generate(),
        role,
        content: content.to_owned(),
        timestamp,
        conversation_id: None,
        attachments: Vec::new(),
        metadata: shared::model::Metadata::new(),
        expires_at: timestamp + chrono::Duration::hours(24),
        token_count: None,
        held: false,
        slot: None,
    }
}

/// Every conversation of `user`'s, archived or not (up to 100), newest activity first.
pub async fn all_conversations(state: &State, user: &str) -> Vec<shared::model::Conversation> {
    state
        .conversations
        .list(
            &shared::model::UserId::parse(user).expect("a valid user id"),
            shared::service::ListRequest {
                filter: shared::model::ArchiveFilter::All,
                limit: shared::service::MAX_PAGE_SIZE,
                ..Default::default()
            },
        )
        .await
        .expect("list the user's conversations")
        .items
}

/// An S3 client of the local server (path-style addressing, as it needs).
pub async fn s3() -> aws_sdk_s3::Client {
    let sdk = aws_config::load_from_env().await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

/// Measures what a DynamoDB client writes: the bytes of its write requests' bodies (PutItem,
/// UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems) and how many it sends.
#[derive(Debug, Default, Clone)]
pub struct WriteMeter {
    pub bytes: Arc<std::sync::atomic::AtomicU64>,
    pub calls: Arc<std::sync::atomic::AtomicU64>,
}

impl WriteMeter {
    /// A client of the local server whose writes are measured, and the meter.
    pub async fn client() -> (aws_sdk_dynamodb::Client, Self) {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("the local server's address");
        Self::client_through(&endpoint).await
    }

    /// The same, for a client sending its calls to `endpoint` (a meter of units in front of
    /// the local server, say).
    pub async fn client_through(endpoint: &str) -> (aws_sdk_dynamodb::Client, Self) {
        let meter = Self::default();
        let sdk = aws_config::from_env().endpoint_url(endpoint).load().await;
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(meter.clone())
                .build(),
        );
        (client, meter)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl aws_sdk_dynamodb::config::Intercept for WriteMeter {
    fn name(&self) -> &'static str {
        "WriteMeter"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if FaultyWrites::is_write(cfg) {
            let body = context.request().body().bytes().map_or(0, <[u8]>::len);
            self.bytes
                .fetch_add(body as u64, std::sync::atomic::Ordering::SeqCst);
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Counts every DynamoDB call a client makes (for the benchmarks' round-trip figures).
#[derive(Debug, Default)]
pub struct CallCounter(Arc<std::sync::atomic::AtomicU64>);

impl CallCounter {
    /// A client of the local server whose calls are counted, and the count.
    pub async fn client() -> (aws_sdk_dynamodb::Client, Arc<std::sync::atomic::AtomicU64>) {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("the local server's address");
        Self::client_through(&endpoint).await
    }

    /// The same, for a client sending its calls to `endpoint` (a meter in front of the
    /// local server, say).
    pub async fn client_through(
        endpoint: &str,
    ) -> (aws_sdk_dynamodb::Client, Arc<std::sync::atomic::AtomicU64>) {
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sdk = aws_config::from_env().endpoint_url(endpoint).load().await;
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(CallCounter(Arc::clone(&calls)))
                .build(),
        );
        (client, calls)
    }
}

impl aws_sdk_dynamodb::config::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// A conversation of `user`'s, titled "From an event", with these user messages, made through
/// the service.
pub async fn conversation_saying(
    state: &State,
    user: &str,
    messages: impl IntoIterator<Item = String>,
) -> shared::model::Conversation {
    use shared::model::{NewMessage, Role, Tags, Title, UserId};
    let owner = UserId::parse(user).expect("a valid user id");
    let conversation = state
        .conversations
        .create(
            &owner,
            Some(Title::parse("From an event").expect("a valid title")),
            Tags::default(),
            chrono::Utc::now(),
        )
        .await
        .expect("create a conversation");
    for content in messages {
        let message = NewMessage::parse(Role::User, content, vec![], Default::default(), None)
            .expect("a valid message");
        state
            .conversations
            .add_message(&owner, &conversation.id, message, chrono::Utc::now())
            .await
            .expect("add a message");
    }
    conversation
}

/// Uploads a four-byte file to `user`'s conversation as the app does (a presigned PUT) and
/// adds a message referencing it.
pub async fn say_with_a_file(
    state: &State,
    user: &str,
    conversation: &shared::model::ConversationId,
) {
    use shared::attachments::{AttachmentRef, UploadRequest};
    use shared::model::{NewMessage, Role, UserId};
    let owner = UserId::parse(user).expect("a valid user id");
    let bucket = state.attachments.as_ref().expect("the attachments bucket");
    let request = UploadRequest::parse("map.png", "image/png", 4, bucket.max_bytes())
        .expect("a valid upload");
    let upload = bucket
        .presign_upload(&owner, conversation, &request, chrono::Utc::now())
        .await
        .expect("presign an upload");
    let mut put =
        reqwest::Client::new().request(upload.method.parse().expect("a method"), &upload.url);
    for (name, value) in &upload.headers {
        put = put.header(name, value);
    }
    let sent = put.body(vec![1, 2, 3, 4]).send().await.expect("upload");
    assert!(sent.status().is_success(), "{}", sent.status());
    let attachments = bucket
        .resolve(
            &owner,
            conversation,
            vec![AttachmentRef::Upload(upload.attachment_id)],
        )
        .await
        .expect("the upload is there");
    let message = NewMessage::parse(
        Role::User,
        "the map".to_owned(),
        attachments,
        Default::default(),
        None,
    )
    .expect("a valid message");
    let added = state
        .conversations
        .add_message(&owner, conversation, message, chrono::Utc::now())
        .await
        .expect("add a message");
    bucket
        .mark_attached(&owner, conversation, &added.message.attachments)
        .await
        .expect("keep the upload");
}

/// The keys of the attachments bucket's objects under `prefix`.
pub async fn object_keys_under(state: &State, prefix: &str) -> Vec<String> {
    let bucket = state
        .config
        .attachments_bucket
        .as_deref()
        .expect("a bucket");
    let mut keys = Vec::new();
    let mut pages = s3()
        .await
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("the bucket lists");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|object| object.key().map(str::to_owned)),
        );
    }
    keys
}

/// The message the event files' message routes name (an edit, a branch switch): each run
/// swaps in [`first_message_of`] a fresh conversation.
pub const EVENT_MESSAGE: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a7a";

/// The share link the event files' share routes name: each run swaps in a link made with
/// [`share_link_of`].
pub const EVENT_SHARE: &str = "EXAMPLEsharedLINKtoken0123456789";

/// The token of a new link to `user`'s conversation, up to its newest message.
pub async fn share_link_of(
    state: &State,
    user: &str,
    conversation: &shared::model::ConversationId,
) -> String {
    let owner = shared::model::UserId::parse(user).expect("a valid user id");
    state
        .sharing
        .share(
            &owner,
            conversation,
            domain::share::ShareOptions::default(),
            chrono::Utc::now(),
        )
        .await
        .expect("share the conversation")
        .token
        .to_string()
}

/// The user the event files' person-sharing routes share with: each run swaps in a fresh
/// one, with whom the conversation is shared already ([`with_sharing_placeholders`]).
pub const EVENT_GRANTEE: &str = "5b8e2f6a-9c3d-4e1f-8a7b-6c5d4e3f2a10";
/// The conversation the event files name as shared with their user: each run swaps in another
/// user's conversation shared with them.
pub const EVENT_SHARED_CONVERSATION: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a7b";
/// The preset the event files name: each run swaps in a new preset of their user's.
pub const EVENT_PRESET: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a7c";

/// An event file's text with its placeholders for sharing and presets swapped for real ones
/// of `user` and their conversation: a link to it ([`EVENT_SHARE`]), a person it is shared
/// with ([`EVENT_GRANTEE`]), another user's conversation shared with `user`
/// ([`EVENT_SHARED_CONVERSATION`]), and a preset of `user`'s ([`EVENT_PRESET`]).
pub async fn with_placeholders(
    state: &State,
    text: String,
    user: &str,
    conversation: &shared::model::ConversationId,
) -> String {
    let mut text = text;
    if text.contains(EVENT_SHARE) {
        text = text.replace(EVENT_SHARE, &share_link_of(state, user, conversation).await);
    }
    let owner = shared::model::UserId::parse(user).expect("a valid user id");
    if text.contains(EVENT_GRANTEE) {
        let grantee = new_user();
        let person = shared::model::UserId::parse(&grantee).expect("a valid user id");
        state
            .sharing
            .share_with(&owner, conversation, &person, chrono::Utc::now())
            .await
            .expect("share with a person");
        text = text.replace(EVENT_GRANTEE, &grantee);
    }
    if text.contains(EVENT_SHARED_CONVERSATION) {
        let other = new_user();
        let theirs =
            conversation_saying(state, &other, ["shared with the event's user".to_owned()]).await;
        state
            .sharing
            .share_with(
                &shared::model::UserId::parse(&other).expect("a valid user id"),
                &theirs.id,
                &owner,
                chrono::Utc::now(),
            )
            .await
            .expect("share with the event's user");
        text = text.replace(EVENT_SHARED_CONVERSATION, &theirs.id.to_string());
    }
    if text.contains(EVENT_PRESET) {
        let preset = state
            .presets
            .create(
                &owner,
                None,
                domain::preset::PresetFields {
                    name: "Event preset".to_owned(),
                    instructions: "Be brief.".to_owned(),
                    model: None,
                    max_tokens: None,
                    temperature: None,
                    default_tags: Vec::new(),
                    starter_prompts: Vec::new(),
                },
                chrono::Utc::now(),
            )
            .await
            .expect("keep a preset");
        text = text.replace(EVENT_PRESET, &preset.id.to_string());
    }
    text
}

/// Removes the item of the message `message` (its id) of `user`'s conversation straight from
/// the table, none of its clean-up run: what a delete racing another request can leave.
pub async fn remove_message_item(state: &State, user: &str, conversation: &str, message: &str) {
    let holds = |item: &HashMap<String, AttributeValue>| {
        let by_slot = item
            .get("id")
            .and_then(|v| v.as_b().ok())
            .and_then(|b| uuid::Uuid::from_slice(b.as_ref()).ok())
            .is_some_and(|id| id.to_string() == message);
        let by_time = matches!(item.get("SK"), Some(AttributeValue::S(sk)) if sk.contains(message));
        by_slot || by_time
    };
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    for item in items_of_conversation(state, user, conversation).await {
        if holds(&item) {
            client
                .delete_item()
                .table_name(&state.config.table_name)
                .key("PK", item["PK"].clone())
                .key("SK", item["SK"].clone())
                .send()
                .await
                .expect("remove a message's item");
        }
    }
}

/// The id of the oldest message of `user`'s conversation (of the newest 200).
pub async fn first_message_of(
    state: &State,
    user: &str,
    conversation: &shared::model::ConversationId,
) -> String {
    let owner = shared::model::UserId::parse(user).expect("a valid user id");
    state
        .conversations
        .get(&owner, conversation, 200, None)
        .await
        .expect("read the conversation")
        .messages
        .first()
        .expect("a message")
        .id
        .to_string()
}

/// Lambda's limit on a function's response, which holds the body as a JSON string.
pub const LAMBDA_RESPONSE_LIMIT: usize = 6 * 1024 * 1024;

/// The size of a JSON body once Lambda's response envelope holds it (escaped again).
pub fn as_lambda_returns_it(body: &Value) -> usize {
    serde_json::to_string(&body.to_string())
        .expect("a string always serializes")
        .len()
}

/// User messages with these contents written straight into a conversation of `user`'s
/// through the migration's writer (transactions of up to 100 items): thousands in seconds,
/// and the table's stream sees them like any other write. One millisecond apart from `start`.
pub async fn append_directly(
    state: &State,
    user: &str,
    conversation: &str,
    contents: impl IntoIterator<Item = String>,
    start: chrono::DateTime<chrono::Utc>,
) -> Vec<shared::model::Message> {
    use shared::model::{ConversationId, Message, MessageId, Role, UserId};
    let owner = UserId::parse(user).expect("a valid user id");
    let id = ConversationId::parse(conversation).expect("a conversation id");
    let messages: Vec<Message> = contents
        .into_iter()
        .enumerate()
        .map(|(n, content)| Message {
            id: MessageId::generate(),
            conversation_id: id,
            role: Role::User,
            content,
            timestamp: start + chrono::Duration::milliseconds(n as i64),
            attachments: vec![],
            metadata: Default::default(),
            client_message_id: None,
            client_timestamp: None,
            token_count: None,
            slot: None,
        })
        .collect();
    let store = state.conversations.store();
    for chunk in shared::store::transaction_chunks(&messages, shared::store::TRANSACTION_MAX_ITEMS)
    {
        store
            .append_migrated(&owner, &id, chunk, None)
            .await
            .expect("append a chunk of messages");
    }
    messages
}

/// A new secret version's value: 48 random characters, as the template generates them.
pub fn new_secret_value() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), "0123456789abcdef")
}

/// A new secret on the local server, as the template's cursor signing secret: its ARN, for
/// `CURSOR_SECRET_ARN`.
pub async fn cursor_secret() -> String {
    aws_sdk_secretsmanager::Client::new(&aws_config::load_from_env().await)
        .create_secret()
        .name(format!("cursor-signing-{}", uuid::Uuid::new_v4().simple()))
        .secret_string(new_secret_value())
        .send()
        .await
        .expect("create the secret")
        .arn
        .expect("a new secret's ARN")
}
