//! Reading what a request carries: the caller's identity (from the authorizer's claims),
//! path and query parameters, and JSON bodies. Everything a client can get wrong becomes
//! `Error::Invalid` (400) here, before any service call.

use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::model::{ConversationId, MessageId, UserId};

/// The authenticated user: the `sub` claim the JWT authorizer verified. API Gateway only
/// invokes us after verifying the token, so a request without the claim is refused.
pub fn caller(request: &Request) -> Result<UserId, Error> {
    let sub = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .and_then(|jwt| jwt.claims.get("sub"))
            .cloned(),
        _ => None,
    };
    let user = sub
        .as_deref()
        .map(UserId::parse)
        .transpose()?
        .ok_or(Error::Unauthenticated)?;
    tracing::Span::current().record("user", user.log_hash().as_str());
    Ok(user)
}

/// The `{id}` path parameter.
pub fn conversation_id(request: &Request) -> Result<ConversationId, Error> {
    optional_conversation_id(request)?
        .ok_or_else(|| Error::invalid("the path must name a conversation"))
}

/// The `{messageId}` path parameter.
pub fn message_id(request: &Request) -> Result<MessageId, Error> {
    request
        .path_parameters()
        .first("messageId")
        .and_then(|raw| MessageId::parse(raw).ok())
        .ok_or_else(|| Error::invalid("the path must name a message by its id"))
}

/// The `{id}` path parameter of an export's route.
pub fn export_id(request: &Request) -> Result<uuid::Uuid, Error> {
    request
        .path_parameters()
        .first("id")
        .and_then(|raw| uuid::Uuid::parse_str(raw).ok())
        .ok_or_else(|| Error::invalid("the path must name an export by its id"))
}

/// The `{id}` path parameter of a route that may have none.
pub fn optional_conversation_id(request: &Request) -> Result<Option<ConversationId>, Error> {
    request
        .path_parameters()
        .first("id")
        .map(ConversationId::parse)
        .transpose()
}

/// A required JSON body.
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, Error> {
    optional_json_body(request)?.ok_or_else(|| Error::invalid("a JSON body is required"))
}

/// A JSON body that may be absent (an empty body is `None`).
pub fn optional_json_body<T: DeserializeOwned>(request: &Request) -> Result<Option<T>, Error> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => return Ok(None),
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => return Err(Error::invalid("unsupported body encoding")),
    };
    json_bytes(bytes)
}

/// A JSON object from raw body bytes (blank is `None`).
pub fn json_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("invalid JSON body: {e}")))?;
    // Serde would also read a struct from an array of its fields in order: only objects count.
    if !value.is_object() {
        return Err(Error::invalid("the JSON body must be an object"));
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| Error::invalid(format!("invalid JSON body: {e}")))
}

/// The query string, read one typed parameter at a time.
pub struct Query(QueryMap);

impl Query {
    pub fn of(request: &Request) -> Self {
        Self(request.query_string_parameters())
    }

    /// A parameter given at most once.
    pub fn text(&self, name: &str) -> Result<Option<String>, Error> {
        match self.0.all(name) {
            None => Ok(None),
            Some(values) if values.len() == 1 => Ok(Some(values[0].to_owned())),
            Some(_) => Err(Error::invalid(format!("{name} must be given at most once"))),
        }
    }

    pub fn flag(&self, name: &str) -> Result<Option<bool>, Error> {
        match self.text(name)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(Error::invalid(format!("{name} must be true or false"))),
        }
    }

    pub fn number(&self, name: &str, min: usize, max: usize) -> Result<Option<usize>, Error> {
        let Some(raw) = self.text(name)? else {
            return Ok(None);
        };
        match raw.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(Error::invalid(format!(
                "{name} must be a whole number from {min} to {max}"
            ))),
        }
    }

    /// A window of a conversation's messages: `messageLimit` (within the service's bounds)
    /// and the `before` cursor to page back from, as every read of one takes them.
    pub fn message_window(&self) -> Result<(usize, Option<String>), Error> {
        use crate::service::{DEFAULT_MESSAGE_WINDOW, MAX_MESSAGE_WINDOW};
        let limit = self
            .number("messageLimit", 1, MAX_MESSAGE_WINDOW)?
            .unwrap_or(DEFAULT_MESSAGE_WINDOW);
        Ok((limit, self.text("before")?))
    }
}
