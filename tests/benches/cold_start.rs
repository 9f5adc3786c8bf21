//! Cold start the way Lambda does it: every function's release binary (and a hello-world
//! `lambda_runtime` function, the floor) started as a fresh process against a local Lambda
//! Runtime API that hands it its one event (events/<function>.json, the `sam local invoke`
//! events), measuring
//! - init: from exec to the first `GET /runtime/invocation/next` (Lambda's Init Duration),
//! - first response: from exec to the function's response (or error) reaching the API,
//! - peak RSS: VmHWM of the process right after it answered (it stays alive, idle on its
//!   next `/next`, as in Lambda, and is then killed),
//! - binary size: the stripped release binary, what the deployment package carries.
//!
//! Each binary is started COLD_START_RUNS times (default 5), round after round so background
//! load spreads evenly; the times are medians, the RSS the maximum. It builds the binaries
//! first (`cargo build --release`, one invocation), creates a table from the template and a
//! bucket in the local servers under fresh names, and writes docs/benchmarks/cold-start.json;
//! the functions' logs go to target/cold-start/<function>.log.
//!
//! The test command runs it as a smoke test of a few Lambda builds: COLD_START_FUNCTIONS
//! names the functions (comma-separated; default every one), COLD_START_BINARIES a directory
//! of binaries already built in cargo-lambda's layout (`<dir>/<function>/bootstrap`, skipping
//! the build), COLD_START_RESULTS where the results go, and COLD_START_REQUIRE_ANSWERS=1 makes
//! a function that does not answer its event well (a crash at init, a hang, an error it
//! reports, a 5xx), or a binary linked position-independent, fail the run. Run it
//! against local servers of its own:
//!
//! ```sh
//! export MOTO_PORT=4581 REDIS_PORT=6395; scripts/services.sh start bench
//! source scripts/env.sh; cargo bench -p tests --bench cold_start
//! scripts/services.sh stop bench
//! ```

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

/// The baseline: the smallest `lambda_runtime` function (bench/hello).
const HELLO_WORLD: &str = "hello-world";
/// The memory size the functions are told they have (AWS_LAMBDA_FUNCTION_MEMORY_SIZE); the
/// bench does not limit their memory.
const MEMORY_MB: u32 = 512;
const DEFAULT_RUNS: usize = 5;
/// How long a function has to answer before its run counts as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The deadline each invocation is given, as Lambda gives the function's timeout.
const INVOCATION_DEADLINE: Duration = Duration::from_secs(60);
const RUNTIME: &str = "/2018-06-01/runtime";
/// Stands in for the user pool's client id: completion-stream fetches the pool's keys at
/// init, here from the runtime API's server (tests/fixtures/cognito-test-jwks.json).
const COGNITO_CLIENT_ID: &str = "cold-start-client";

/// One binary under test.
struct Function {
    name: String,
    binary: PathBuf,
    event: Bytes,
    log: PathBuf,
}

/// What the runtime API saw of the process, in the order it happens.
enum Seen {
    /// The first `GET /next`: init is done.
    NextRequested(Instant),
    /// The response or error for the event arrived.
    Answered { at: Instant, answer: String },
}

/// One cold start of one binary.
struct ColdStart {
    init: Option<Duration>,
    first_response: Option<Duration>,
    peak_rss_kib: Option<u64>,
    answer: String,
}

impl ColdStart {
    /// A start that never answered: `answer` says why.
    fn failed(init: Option<Duration>, answer: String) -> Self {
        Self {
            init,
            first_response: None,
            peak_rss_kib: None,
            answer,
        }
    }
}

#[tokio::main]
async fn main() {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        eprintln!("source scripts/env.sh first, with the local servers started (see the top of tests/benches/cold_start.rs)");
        std::process::exit(2);
    }
    let runs = runs();
    let names = binary_names();
    let built = std::env::var_os("COLD_START_BINARIES").map(PathBuf::from);
    if built.is_none() {
        build_release(&names);
    }
    let functions: Vec<Function> = names
        .iter()
        .map(|name| function(name, built.as_deref()))
        .collect();
    let environment = local_resources().await;
    let jwks = Bytes::from(
        std::fs::read(workspace_root().join("tests/fixtures/cognito-test-jwks.json"))
            .expect("the test key set"),
    );

    let mut measured: Vec<Vec<ColdStart>> = functions.iter().map(|_| Vec::new()).collect();
    for round in 1..=runs {
        println!("round {round} of {runs}");
        for (function, starts) in functions.iter().zip(&mut measured) {
            starts.push(cold_start(function, &environment, &jwks).await);
        }
    }

    let mut rows: Vec<Value> = functions
        .iter()
        .zip(&measured)
        .map(|(function, starts)| summary(function, starts))
        .collect();
    let hello_world = rows.remove(0);
    print_table(&hello_world, &rows);
    write_results(runs, hello_world, rows);
    let unanswered: Vec<String> = functions
        .iter()
        .zip(&measured)
        .flat_map(|(function, starts)| {
            starts
                .iter()
                .filter(|start| !answered_well(start))
                .map(|start| format!("{} ({})", function.name, start.answer))
        })
        .collect();
    let position_independent: Vec<&str> = functions
        .iter()
        .filter(|function| is_position_independent(&function.binary))
        .map(|function| function.name.as_str())
        .collect();
    if std::env::var("COLD_START_REQUIRE_ANSWERS").as_deref() == Ok("1") {
        if !unanswered.is_empty() {
            eprintln!("did not answer their event well: {}", unanswered.join(", "));
            std::process::exit(1);
        }
        // functions/position-dependent.rs, reaching the binaries through cargo-lambda's build.
        if !position_independent.is_empty() {
            eprintln!(
                "linked position-independent: {}",
                position_independent.join(", ")
            );
            std::process::exit(1);
        }
    }
}

/// Whether the ELF binary is a position-independent executable (type ET_DYN) rather than
/// one linked at a fixed address (ET_EXEC).
fn is_position_independent(binary: &std::path::Path) -> bool {
    use std::io::Read;
    const ET_DYN: u16 = 3;
    let mut header = [0u8; 18];
    File::open(binary)
        .and_then(|mut file| file.read_exact(&mut header))
        .expect("the binary has an ELF header");
    u16::from_le_bytes([header[16], header[17]]) == ET_DYN
}

/// A start that answered its event with a response below 500 (or "ok"): not an error the
/// function reported, a crash, a hang or a server error.
fn answered_well(start: &ColdStart) -> bool {
    start.first_response.is_some()
        && !start.answer.starts_with("error")
        && start
            .answer
            .parse::<u16>()
            .map_or(true, |status| status < 500)
}

fn runs() -> usize {
    match std::env::var("COLD_START_RUNS") {
        Ok(runs) => runs
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .expect("COLD_START_RUNS is a positive number"),
        Err(_) => DEFAULT_RUNS,
    }
}

/// hello-world first, then the functions COLD_START_FUNCTIONS names or every function under
/// functions/ (directory, package and binary share the name).
fn binary_names() -> Vec<String> {
    let mut functions: Vec<String> = match std::env::var("COLD_START_FUNCTIONS") {
        Ok(named) => named
            .split(',')
            .map(|name| name.trim().to_owned())
            .collect(),
        Err(_) => std::fs::read_dir(workspace_root().join("functions"))
            .expect("functions/ is readable")
            .map(|entry| entry.expect("a directory entry"))
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name())
            .map(|name| name.into_string().expect("a UTF-8 function name"))
            .collect(),
    };
    functions.sort();
    std::iter::once(HELLO_WORLD.to_owned())
        .chain(functions)
        .collect()
}

fn workspace_root() -> PathBuf {
    tests::workspace_root()
        .canonicalize()
        .expect("the workspace root exists")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds every binary under test in one cargo invocation.
fn build_release(names: &[String]) {
    println!(
        "building {} release binaries: cargo build --release -p {}",
        names.len(),
        names.join(" -p ")
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release"])
        .args(names.iter().flat_map(|name| ["-p", name.as_str()]))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --release failed: {status}");
}

/// The binary under test: the release build's, or cargo-lambda's `bootstrap` under `built`.
fn function(name: &str, built: Option<&std::path::Path>) -> Function {
    let event = if name == HELLO_WORLD {
        Bytes::from_static(b"{}")
    } else {
        let path = workspace_root().join(format!("events/{name}.json"));
        Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    };
    let logs = target_dir().join("cold-start");
    std::fs::create_dir_all(&logs).expect("target/cold-start can be made");
    let log = logs.join(format!("{name}.log"));
    File::create(&log).expect("the function's log can be made");
    Function {
        name: name.to_owned(),
        binary: match built {
            Some(dir) => dir.join(name).join("bootstrap"),
            None => target_dir().join("release").join(name),
        },
        event,
        log,
    }
}

/// A table from the template and a bucket in the local servers, under fresh names: the
/// environment the functions get on top of the inherited one.
async fn local_resources() -> Vec<(&'static str, String)> {
    let name = format!("cold-start-{}", uuid::Uuid::new_v4().simple());
    let sdk = aws_config::load_from_env().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = tests::template().table().expect("the table's definition");
    local::table::create_table(&dynamodb, &name, &table)
        .await
        .expect("create the table");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create the bucket");
    // The queues the dispatcher sends the table's changes to.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut environment = Vec::new();
    for worker in shared::table_changes::Worker::ALL {
        let url = sqs
            .create_queue()
            .queue_name(format!("{name}-{}.fifo", worker.binary()))
            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .expect("create a queue")
            .queue_url
            .unwrap_or_default();
        environment.push((worker.queue_variable(), url));
    }
    println!("table, bucket and queues {name}");
    environment.extend([("TABLE_NAME", name.clone()), ("ATTACHMENTS_BUCKET", name)]);
    environment
}

/// Starts the binary against a runtime API of its own, waits for its answer, reads its peak
/// RSS and kills it.
async fn cold_start(
    function: &Function,
    environment: &[(&str, String)],
    jwks: &Bytes,
) -> ColdStart {
    let mut api = RuntimeApi::start(&function.name, function.event.clone(), jwks.clone()).await;
    let mut command = command_for(function, api.address, environment);
    let started = Instant::now();
    let run = match command.spawn() {
        Ok(mut child) => {
            let run = until_answered(&mut api, &mut child, started).await;
            let _ = child.kill().await;
            run
        }
        Err(e) => ColdStart::failed(
            None,
            format!("error: cannot start {}: {e}", function.binary.display()),
        ),
    };
    api.stop();
    run
}

/// The binary with Lambda's variables, the resources and the stand-in user pool on top of
/// the inherited environment, its output to its log.
fn command_for(function: &Function, api: SocketAddr, environment: &[(&str, String)]) -> Command {
    let log = File::options()
        .append(true)
        .open(&function.log)
        .expect("the function's log opens");
    let mut command = Command::new(&function.binary);
    command
        .envs(lambda_environment(&function.name, api))
        .env("COGNITO_ISSUER", format!("http://{api}"))
        .env("COGNITO_CLIENT_ID", COGNITO_CLIENT_ID)
        .envs(environment.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log's handle"))
        .stderr(log)
        .kill_on_drop(true);
    command
}

/// Follows the process from its start until it answers, exits or runs out of time.
async fn until_answered(api: &mut RuntimeApi, child: &mut Child, started: Instant) -> ColdStart {
    let pid = child.id().expect("a running process");
    let answer_by = tokio::time::sleep(ANSWER_TIMEOUT);
    tokio::pin!(answer_by);
    let mut init = None;
    loop {
        tokio::select! {
            seen = api.seen.recv() => match seen {
                Some(Seen::NextRequested(at)) => init = Some(at - started),
                Some(Seen::Answered { at, answer }) => {
                    return ColdStart {
                        peak_rss_kib: peak_rss_kib(pid),
                        init,
                        first_response: Some(at - started),
                        answer,
                    };
                }
                None => return ColdStart::failed(init, "error: the runtime API stopped".into()),
            },
            status = child.wait() => {
                let answer = match status {
                    Ok(status) => format!("error: exited ({status}) before answering"),
                    Err(e) => format!("error: {e}"),
                };
                return ColdStart::failed(init, answer);
            }
            () = &mut answer_by => {
                let answer = format!("error: no answer in {} s", ANSWER_TIMEOUT.as_secs());
                return ColdStart::failed(init, answer);
            }
        }
    }
}

/// The variables Lambda sets for a function's runtime.
fn lambda_environment(name: &str, api: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_MB.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        // The template's LoggingConfig (JSON), at Lambda's default level for it.
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("cold-start/[$LATEST]{}", uuid::Uuid::new_v4().simple()),
        ),
    ]
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A local Lambda Runtime API serving one event to one process.
struct RuntimeApi {
    address: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    server: tokio::task::JoinHandle<()>,
    /// Dropped when the run ends, which releases the `/next` the process is waiting on.
    running: watch::Sender<()>,
}

/// The server's side of [`RuntimeApi`].
#[derive(Clone)]
struct Invocation {
    event: Bytes,
    request_id: Arc<str>,
    function_arn: Arc<str>,
    handed_out: Arc<AtomicBool>,
    seen: mpsc::UnboundedSender<Seen>,
    running: watch::Receiver<()>,
    jwks: Bytes,
}

impl RuntimeApi {
    async fn start(function_name: &str, event: Bytes, jwks: Bytes) -> Self {
        let (seen_sender, seen) = mpsc::unbounded_channel();
        let (running, running_receiver) = watch::channel(());
        let invocation = Invocation {
            event,
            request_id: uuid::Uuid::new_v4().to_string().into(),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}")
                .into(),
            handed_out: Arc::new(AtomicBool::new(false)),
            seen: seen_sender,
            running: running_receiver,
            jwks,
        };
        let router = Router::new()
            .route(&format!("{RUNTIME}/invocation/next"), get(next))
            .route(
                &format!("{RUNTIME}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{RUNTIME}/invocation/{{id}}/error"), post(error))
            .route(&format!("{RUNTIME}/init/error"), post(init_error))
            .route("/.well-known/jwks.json", get(jwks_document))
            .with_state(invocation);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("bound");
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the runtime API serves");
        });
        Self {
            address,
            seen,
            server,
            running,
        }
    }

    fn stop(self) {
        drop(self.running);
        self.server.abort();
    }
}

/// The event, the first time; after that the process waits, as an idle Lambda environment
/// does, until the run ends.
async fn next(State(invocation): State<Invocation>) -> Response {
    if invocation.handed_out.swap(true, Ordering::SeqCst) {
        let mut running = invocation.running;
        let _ = running.wait_for(|_| false).await;
        return StatusCode::GONE.into_response();
    }
    let _ = invocation.seen.send(Seen::NextRequested(Instant::now()));
    let deadline = SystemTime::now() + INVOCATION_DEADLINE;
    let deadline_ms = deadline
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let headers = [
        (
            "lambda-runtime-aws-request-id",
            invocation.request_id.to_string(),
        ),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            invocation.function_arn.to_string(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".into(),
        ),
        (header::CONTENT_TYPE.as_str(), "application/json".into()),
    ];
    (headers, Body::from(invocation.event)).into_response()
}

/// The function's answer: the instant it arrived, then its body (whole, for a streamed one).
async fn response(
    State(invocation): State<Invocation>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> StatusCode {
    let at = Instant::now();
    let streamed = request
        .headers()
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode == "streaming");
    let answer = match to_bytes(request.into_body(), usize::MAX).await {
        Err(e) => format!("error: unreadable response: {e}"),
        Ok(_) if id != *invocation.request_id => format!("error: response for unknown id {id}"),
        Ok(body) => status_of(&body, streamed),
    };
    let _ = invocation.seen.send(Seen::Answered { at, answer });
    StatusCode::ACCEPTED
}

async fn error(
    State(invocation): State<Invocation>,
    UrlPath(_id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    report_error(&invocation, &headers, &body);
    StatusCode::ACCEPTED
}

async fn init_error(
    State(invocation): State<Invocation>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    report_error(&invocation, &headers, &body);
    StatusCode::ACCEPTED
}

async fn jwks_document(State(invocation): State<Invocation>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        invocation.jwks,
    )
}

/// An error posted for the invocation or the init: its type and message.
fn report_error(invocation: &Invocation, headers: &HeaderMap, body: &[u8]) {
    let at = Instant::now();
    let error: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let kind = error["errorType"]
        .as_str()
        .or_else(|| {
            headers
                .get("lambda-runtime-function-error-type")
                .and_then(|kind| kind.to_str().ok())
        })
        .unwrap_or("unknown");
    let message = error["errorMessage"].as_str().unwrap_or_default();
    let answer = format!("error: {kind}: {message}");
    let _ = invocation.seen.send(Seen::Answered { at, answer });
}

/// The HTTP status of an API Gateway or Function URL response, "ok" for any other answer. A
/// streamed response opens with a JSON prelude ended by eight NUL bytes.
fn status_of(body: &[u8], streamed: bool) -> String {
    let prelude = match body.windows(8).position(|w| w == [0; 8]) {
        Some(end) if streamed => &body[..end],
        _ => body,
    };
    serde_json::from_slice::<Value>(prelude)
        .ok()
        .and_then(|answer| answer.get("statusCode").and_then(Value::as_u64))
        .map_or_else(|| "ok".into(), |status| status.to_string())
}

fn median_ms(mut times: Vec<Duration>) -> Option<f64> {
    if times.is_empty() {
        return None;
    }
    times.sort();
    let middle = times.len() / 2;
    let median = if times.len() % 2 == 1 {
        times[middle]
    } else {
        (times[middle - 1] + times[middle]) / 2
    };
    Some((median.as_secs_f64() * 10_000.0).round() / 10.0)
}

/// One binary's line of the results: median times, maximum RSS, the answers it gave.
fn summary(function: &Function, starts: &[ColdStart]) -> Value {
    let mut answers: Vec<&str> = Vec::new();
    for start in starts {
        if !answers.contains(&start.answer.as_str()) {
            answers.push(&start.answer);
        }
    }
    json!({
        "function": function.name,
        "initMs": median_ms(starts.iter().filter_map(|s| s.init).collect()),
        "firstResponseMs": median_ms(starts.iter().filter_map(|s| s.first_response).collect()),
        "peakRssKib": starts.iter().filter_map(|s| s.peak_rss_kib).max(),
        "binaryBytes": std::fs::metadata(&function.binary).map(|m| m.len()).ok(),
        "positionIndependent": is_position_independent(&function.binary),
        "answered": answers.join(" / "),
    })
}

fn print_table(hello_world: &Value, functions: &[Value]) {
    println!(
        "\n{:<28} {:>8} {:>15} {:>11} {:>12}  answered",
        "function", "initMs", "firstResponseMs", "peakRssKib", "binaryBytes"
    );
    for row in std::iter::once(hello_world).chain(functions) {
        println!(
            "{:<28} {:>8} {:>15} {:>11} {:>12}  {}",
            cell(&row["function"]),
            cell(&row["initMs"]),
            cell(&row["firstResponseMs"]),
            cell(&row["peakRssKib"]),
            cell(&row["binaryBytes"]),
            cell(&row["answered"]),
        );
    }
}

/// A value as the table shows it: strings bare, a missing number as "-".
fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn write_results(runs: usize, hello_world: Value, functions: Vec<Value>) {
    let results = json!({
        "benchmark": "cold start the way Lambda does it (Numina Conversations)",
        "runs": runs,
        "memoryMb": MEMORY_MB,
        "results": functions,
        "helloWorld": hello_world,
        "note": "Each release binary started as a fresh process against a local Lambda Runtime \
                 API serving its event from events/. initMs: exec to the first GET /next; \
                 firstResponseMs: exec to the response (or error) arriving; medians of the \
                 runs. peakRssKib: VmHWM right after the answer, the maximum of the runs. AWS \
                 calls go to the local moto server; the memory size is only announced, not \
                 enforced.",
    });
    let path = std::env::var_os("COLD_START_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("docs/benchmarks/cold-start.json"));
    let text = serde_json::to_string_pretty(&results).expect("the results serialise");
    std::fs::write(&path, text + "\n")
        .unwrap_or_else(|e| panic!("{} is not writable: {e}", path.display()));
    println!("\nwritten to {}", path.display());
}
