//! A small local stand-in for API Gateway's HTTP API: verifies the bearer token, matches the
//! template's routes, builds the same version 2.0 event API Gateway sends to Lambda, and runs
//! it through `lambda_http`'s own event parsing into the same handler the function runs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use assistant::http as assistant_handlers;
use assistant::State;
use axum::body::{to_bytes, Body as AxumBody};
use axum::extract::{Request as AxumRequest, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::http::{self as handlers};
use tokio::net::TcpListener;

use crate::template::Route;
use crate::token::Tokens;

/// API Gateway's payload limit for HTTP APIs.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The handler each function binary runs, by binary name (as in the template's
/// `Metadata.BuildProperties.Binary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListConversations,
    GetConversation,
    CreateConversation,
    AddMessage,
    EditMessage,
    SwitchBranch,
    DeleteMessage,
    ShareConversation,
    ListShares,
    RevokeShare,
    ReadShared,
    ContinueShared,
    ShareWithPerson,
    ListPeople,
    UnshareWithPerson,
    ListSharedWithMe,
    GetSharedWithMe,
    DeclineSharedWithMe,
    ListPresets,
    CreatePreset,
    UpdatePreset,
    DeletePreset,
    ApplyPreset,
    RenameConversation,
    ArchiveConversation,
    SetConversationTags,
    DeleteConversation,
    GetContext,
    Complete,
    MigrateConversations,
    CreateAttachmentUpload,
    MobileSync,
    MobileBatch,
    Health,
    SearchConversations,
    ExportConversation,
    StartAccountExport,
    GetAccountExport,
    GetUsage,
}

impl Endpoint {
    pub fn for_binary(binary: &str) -> Option<Self> {
        Some(match binary {
            "list-conversations" => Self::ListConversations,
            "get-conversation" => Self::GetConversation,
            "create-conversation" => Self::CreateConversation,
            "add-message" => Self::AddMessage,
            "edit-message" => Self::EditMessage,
            "switch-branch" => Self::SwitchBranch,
            "delete-message" => Self::DeleteMessage,
            "share-conversation" => Self::ShareConversation,
            "list-shares" => Self::ListShares,
            "revoke-share" => Self::RevokeShare,
            "read-shared" => Self::ReadShared,
            "continue-shared" => Self::ContinueShared,
            "share-with-person" => Self::ShareWithPerson,
            "list-people" => Self::ListPeople,
            "unshare-with-person" => Self::UnshareWithPerson,
            "list-shared-with-me" => Self::ListSharedWithMe,
            "get-shared-with-me" => Self::GetSharedWithMe,
            "decline-shared-with-me" => Self::DeclineSharedWithMe,
            "list-presets" => Self::ListPresets,
            "create-preset" => Self::CreatePreset,
            "update-preset" => Self::UpdatePreset,
            "delete-preset" => Self::DeletePreset,
            "apply-preset" => Self::ApplyPreset,
            "rename-conversation" => Self::RenameConversation,
            "archive-conversation" => Self::ArchiveConversation,
            "set-conversation-tags" => Self::SetConversationTags,
            "delete-conversation" => Self::DeleteConversation,
            "get-context" => Self::GetContext,
            "completion" => Self::Complete,
            "migrate-conversations" => Self::MigrateConversations,
            "create-attachment-upload" => Self::CreateAttachmentUpload,
            "mobile-sync" => Self::MobileSync,
            "mobile-batch" => Self::MobileBatch,
            "health" => Self::Health,
            "search-conversations" => Self::SearchConversations,
            "export-conversation" => Self::ExportConversation,
            "start-account-export" => Self::StartAccountExport,
            "get-account-export" => Self::GetAccountExport,
            "get-usage" => Self::GetUsage,
            _ => return None,
        })
    }

    /// Runs the endpoint's handler, exactly as its Lambda binary does (through
    /// `shared::http::observed`; the metrics it writes are dropped here).
    pub async fn call(self, state: &State, request: Request) -> Response<Body> {
        self.call_observed(state, request, std::io::sink).await
    }

    /// Like [`Endpoint::call`], writing the invocation's metrics (EMF lines) to `sink`.
    pub async fn call_observed<W: std::io::Write>(
        self,
        state: &State,
        request: Request,
        sink: impl FnOnce() -> W,
    ) -> Response<Body> {
        let handler = |request| self.handle(state, request);
        match handlers::observed(&handler, request, sink).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// The endpoint's handler future, on the heap: built in a frame of its own that is gone
    /// before it is polled, so the stack never holds every handler's future side by side (an
    /// unoptimized build lays them out one after another).
    fn handle<'a>(
        self,
        state: &'a State,
        request: Request,
    ) -> futures::future::BoxFuture<'a, Result<Response<Body>, Infallible>> {
        match self {
            Self::ListConversations => Box::pin(handlers::list_conversations(state, request)),
            Self::GetConversation => Box::pin(handlers::get_conversation(state, request)),
            Self::CreateConversation => Box::pin(handlers::create_conversation(state, request)),
            Self::AddMessage => Box::pin(handlers::add_message(state, request)),
            Self::EditMessage => Box::pin(handlers::edit_message(state, request)),
            Self::SwitchBranch => Box::pin(handlers::switch_branch(state, request)),
            Self::DeleteMessage => Box::pin(handlers::delete_message(state, request)),
            Self::ShareConversation => Box::pin(handlers::share_conversation(state, request)),
            Self::ListShares => Box::pin(handlers::list_shares(state, request)),
            Self::RevokeShare => Box::pin(handlers::revoke_share(state, request)),
            Self::ReadShared => Box::pin(handlers::read_shared(state, request)),
            Self::ContinueShared => Box::pin(handlers::continue_shared(state, request)),
            Self::ShareWithPerson => Box::pin(handlers::share_with_person(state, request)),
            Self::ListPeople => Box::pin(handlers::list_people(state, request)),
            Self::UnshareWithPerson => Box::pin(handlers::unshare_with_person(state, request)),
            Self::ListSharedWithMe => Box::pin(handlers::list_shared_with_me(state, request)),
            Self::GetSharedWithMe => Box::pin(handlers::get_shared_with_me(state, request)),
            Self::DeclineSharedWithMe => Box::pin(handlers::decline_shared_with_me(state, request)),
            Self::ListPresets => Box::pin(handlers::list_presets(state, request)),
            Self::CreatePreset => Box::pin(handlers::create_preset(state, request)),
            Self::UpdatePreset => Box::pin(handlers::update_preset(state, request)),
            Self::DeletePreset => Box::pin(handlers::delete_preset(state, request)),
            Self::ApplyPreset => Box::pin(handlers::apply_preset(state, request)),
            Self::RenameConversation => Box::pin(handlers::rename_conversation(state, request)),
            Self::ArchiveConversation => Box::pin(handlers::archive_conversation(state, request)),
            Self::SetConversationTags => Box::pin(handlers::set_conversation_tags(state, request)),
            Self::DeleteConversation => Box::pin(handlers::delete_conversation(state, request)),
            Self::GetContext => Box::pin(assistant_handlers::get_context(state, request)),
            Self::Complete => Box::pin(assistant_handlers::complete(state, request)),
            Self::MigrateConversations => Box::pin(handlers::migrate_conversations(state, request)),
            Self::CreateAttachmentUpload => {
                Box::pin(handlers::create_attachment_upload(state, request))
            }
            Self::MobileSync => Box::pin(handlers::mobile_sync(state, request)),
            Self::MobileBatch => Box::pin(handlers::mobile_batch(state, request)),
            Self::Health => {
                let health = health_check::State::over(state.core.clone());
                Box::pin(async move { health_check::http::health(&health, request).await })
            }
            Self::SearchConversations => Box::pin(handlers::search_conversations(state, request)),
            Self::ExportConversation => Box::pin(handlers::export_conversation(state, request)),
            Self::StartAccountExport => Box::pin(handlers::start_account_export(state, request)),
            Self::GetAccountExport => Box::pin(handlers::get_account_export(state, request)),
            Self::GetUsage => Box::pin(handlers::get_usage(state, request)),
        }
    }
}

struct CompiledRoute {
    method: String,
    pattern: String,
    segments: Vec<Segment>,
    endpoint: Endpoint,
    /// Served without a token, as API Gateway serves a route with `Authorizer: NONE`.
    public: bool,
}

enum Segment {
    Literal(String),
    Parameter(String),
}

impl CompiledRoute {
    fn new(route: &Route) -> Result<Self, String> {
        let endpoint = Endpoint::for_binary(&route.binary)
            .ok_or_else(|| format!("no handler for binary {}", route.binary))?;
        let segments = split(&route.path)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Parameter(name.to_owned()),
                    None => Segment::Literal(s.to_owned()),
                },
            )
            .collect();
        Ok(Self {
            method: route.method.clone(),
            pattern: route.path.clone(),
            segments,
            endpoint,
            public: route.public,
        })
    }

    /// The path parameters if `path` matches, with how many literal segments matched.
    fn capture(&self, path: &str) -> Option<(usize, HashMap<String, String>)> {
        let parts: Vec<&str> = split(path).collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut parameters = HashMap::new();
        let mut literals = 0;
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(text) if text == part => literals += 1,
                Segment::Literal(_) => return None,
                Segment::Parameter(name) => {
                    parameters.insert(name.clone(), part.to_owned());
                }
            }
        }
        Some((literals, parameters))
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The local API.
pub struct Gateway {
    routes: Vec<CompiledRoute>,
    state: State,
    tokens: Tokens,
}

impl Gateway {
    pub fn new(routes: &[Route], state: State, tokens: Tokens) -> Result<Self, String> {
        Ok(Self {
            routes: routes
                .iter()
                .map(CompiledRoute::new)
                .collect::<Result<_, _>>()?,
            state,
            tokens,
        })
    }

    /// Serves until the process ends.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let app = Router::new().fallback(handle).with_state(Arc::new(self));
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    }

    /// The route for a request, the most specific first (literal segments beat parameters,
    /// as in API Gateway).
    fn route(
        &self,
        method: &Method,
        path: &str,
    ) -> Option<(&CompiledRoute, HashMap<String, String>)> {
        self.routes
            .iter()
            .filter(|r| r.method == method.as_str())
            .filter_map(|r| {
                r.capture(path)
                    .map(|(literals, params)| (literals, r, params))
            })
            .max_by_key(|(literals, _, _)| *literals)
            .map(|(_, route, params)| (route, params))
    }
}

/// API Gateway's own responses (not the functions'): it answers these before any function runs.
fn gateway_response(status: StatusCode, message: &str) -> AxumResponse {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

async fn handle(AxumState(gateway): AxumState<Arc<Gateway>>, request: AxumRequest) -> AxumResponse {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let Some((route, path_parameters)) = gateway.route(&parts.method, &path) else {
        return gateway_response(StatusCode::NOT_FOUND, "Not Found");
    };
    let claims = match route.public {
        true => Some(HashMap::new()),
        false => bearer(&parts.headers).and_then(|token| gateway.tokens.verify(token)),
    };
    let Some(claims) = claims else {
        return gateway_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return gateway_response(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let event = api_gateway_event(
        &parts.method,
        &path,
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        &route.pattern,
        path_parameters,
        claims,
        &body,
    );
    let request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(_) => return gateway_response(StatusCode::BAD_REQUEST, "Bad Request"),
    };
    let response = route.endpoint.call(&gateway.state, request).await;
    into_axum(response)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .or(Some(value))
}

/// The version 2.0 payload API Gateway HTTP APIs send to a Lambda integration.
#[allow(clippy::too_many_arguments)]
pub fn api_gateway_event(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    route_pattern: &str,
    path_parameters: HashMap<String, String>,
    claims: HashMap<String, String>,
    body: &[u8],
) -> Value {
    let mut header_map: HashMap<String, String> = HashMap::new();
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            header_map
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(value)
                })
                .or_insert_with(|| value.to_owned());
        }
    }
    let now = Utc::now();
    let route_key = format!("{method} {route_pattern}");
    let (body, is_base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (Value::String(STANDARD.encode(body)), true),
    };
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "pathParameters": path_parameters,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            // A route without an authorizer gets none, as from API Gateway.
            "authorizer": if claims.is_empty() { Value::Null } else { json!({ "jwt": { "claims": claims, "scopes": null } }) },
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid_like(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": body,
        "isBase64Encoded": is_base64,
    })
}

fn uuid_like() -> String {
    format!(
        "local-{}",
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

fn into_axum(response: Response<Body>) -> AxumResponse {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Vec::new(),
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    AxumResponse::from_parts(parts, AxumBody::from(bytes))
}

/// A local stand-in for the streaming completion function's URL (a Lambda Function URL in
/// response-streaming mode). It verifies the local bearer token as the gateway does and
/// streams the handler's events to the client as they come.
pub struct StreamingUrl {
    state: State,
    tokens: Tokens,
}

impl StreamingUrl {
    pub fn new(state: State, tokens: Tokens) -> Self {
        Self { state, tokens }
    }

    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let app = Router::new()
            .fallback(stream_completion)
            .with_state(Arc::new(self));
        axum::serve(listener, app).await
    }
}

async fn stream_completion(
    AxumState(url): AxumState<Arc<StreamingUrl>>,
    request: AxumRequest,
) -> AxumResponse {
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return gateway_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let Some(claims) = bearer(&parts.headers).and_then(|token| url.tokens.verify(token)) else {
        return gateway_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return gateway_response(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let path = parts.uri.path().to_owned();
    let event = api_gateway_event(
        &parts.method,
        &path,
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        "$default",
        HashMap::new(),
        claims,
        &body,
    );
    let Ok(request) = lambda_http::request::from_str(&event.to_string()) else {
        return gateway_response(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let response = match assistant_handlers::complete_streaming(&url.state, None, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    AxumResponse::from_parts(parts, AxumBody::new(body))
}
