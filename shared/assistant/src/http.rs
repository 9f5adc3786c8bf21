//! The assistant's endpoints: `GET /conversations/context[/{id}]` and `POST /completion`, behind
//! the HTTP API and through the streaming Function URL.

use std::convert::Infallible;

use domain::error::Error;
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};
use shared::http::{
    caller, error_response, json, json_body, optional_conversation_id, respond, HandlerResult,
    Query,
};

use crate::auth::JwtVerifier;
use crate::service::{Completion, CompletionEvent, CompletionRequest, ContextSource};
use crate::state::State;
use crate::wire::{CompletionBody, CompletionView, ContextMessageView, ContextView, UsageView};
use ai::context::{DEFAULT_MAX_TOKENS, DEFAULT_MESSAGE_LIMIT, MAX_MAX_TOKENS, MAX_MESSAGE_LIMIT};
use domain::usage::Metered;

/// `GET /conversations/context/{id}` and `GET /conversations/context`: the messages to send
/// a model, within `maxTokens` and `limit`.
pub async fn get_context(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = optional_conversation_id(&request)?;
        let query = Query::of(&request);
        let max_tokens = query
            .number("maxTokens", 1, MAX_MAX_TOKENS)?
            .unwrap_or(DEFAULT_MAX_TOKENS);
        let limit = query
            .number("limit", 1, MAX_MESSAGE_LIMIT)?
            .unwrap_or(DEFAULT_MESSAGE_LIMIT);
        let context = state
            .assistant
            .context(&user, id, max_tokens, limit, state.now())
            .await?;
        let (source, conversation_id) = match context.source {
            ContextSource::Conversation(id) => ("conversation", Some(id.to_string())),
            ContextSource::ShortTermMemory => ("shortTermMemory", None),
        };
        let selection = &context.selection;
        Ok(json(
            StatusCode::OK,
            &ContextView {
                source,
                conversation_id,
                messages: selection
                    .messages
                    .iter()
                    .map(|m| ContextMessageView {
                        role: m.role,
                        content: &m.content,
                    })
                    .collect(),
                token_count: selection.token_count,
                max_tokens,
                omitted_messages: selection.omitted,
                tokenizer: state.assistant.tokenizer().kind().name(),
            },
        ))
    })
    .await
}

/// Counts a completion against the user's limits, refusing one over them; a retry of an
/// answered request gets its answer again, so nothing is counted for it.
async fn admit_completion(
    state: &State,
    user: &domain::model::UserId,
    request: &CompletionRequest,
) -> Result<(), Error> {
    if state
        .assistant
        .is_answered(user, request, state.now())
        .await?
    {
        return Ok(());
    }
    state
        .usage
        .admit(user, Metered::Completion, state.now())
        .await
}

/// `POST /completion`: answers a prompt and saves both messages. A retry with the same
/// `requestId` (or `Idempotency-Key` header) gets the first answer again. With
/// `"stream": true` the answer is server-sent events: `delta` events with the reply's
/// pieces, then one `done` event with what `"stream": false` returns (or an `error` event).
/// Behind the HTTP API (a buffered integration) the events arrive together at the end; the
/// streaming Function URL (`complete_streaming`) delivers them as they come.
pub async fn complete(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let (completion_request, stream) = completion_request(&request)?;
        admit_completion(state, &user, &completion_request).await?;
        if stream {
            let mut events = state
                .assistant
                .complete_streaming(&user, completion_request, state.now())
                .await?;
            let mut text = String::new();
            while let Some(event) = events.recv().await {
                text.push_str(&server_sent_event(event));
            }
            return Ok(event_stream_response(Body::Text(text)));
        }
        let done = state
            .assistant
            .complete(&user, completion_request, state.now())
            .await?;
        Ok(json(StatusCode::OK, &completion_view(&done)))
    })
    .await
}

/// A response body whose frames are sent as they are produced (Lambda response streaming).
pub type StreamingBody = http_body_util::StreamBody<
    futures::stream::BoxStream<'static, Result<http_body::Frame<bytes::Bytes>, Infallible>>,
>;

/// `POST /completion` through the streaming Function URL: the same request and answers as
/// [`complete`], with events sent as the model produces them. API Gateway does not front the
/// URL, so without authorizer claims the bearer token is verified here, with `verifier`.
pub async fn complete_streaming(
    state: &State,
    verifier: Option<&JwtVerifier>,
    request: Request,
) -> Result<Response<StreamingBody>, Infallible> {
    let outcome = async {
        let user = match (caller(&request), verifier) {
            (Ok(user), _) => user,
            (Err(_), Some(verifier)) => {
                let header = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(Error::Unauthenticated)?;
                verifier.verify(header).await?
            }
            (Err(error), None) => return Err(error),
        };
        let (completion_request, stream) = completion_request(&request)?;
        admit_completion(state, &user, &completion_request).await?;
        if !stream {
            let done = state
                .assistant
                .complete(&user, completion_request, state.now())
                .await?;
            return Ok(Err(json(StatusCode::OK, &completion_view(&done))));
        }
        let events = state
            .assistant
            .complete_streaming(&user, completion_request, state.now())
            .await?;
        Ok(Ok(events))
    }
    .await;
    let response = match outcome {
        Ok(Ok(events)) => {
            let frames = futures::stream::unfold(events, |mut events| async move {
                let event = events.recv().await?;
                let frame = http_body::Frame::data(bytes::Bytes::from(server_sent_event(event)));
                Some((Ok(frame), events))
            });
            let (parts, _) = event_stream_response(Body::Empty).into_parts();
            Response::from_parts(
                parts,
                http_body_util::StreamBody::new(futures::StreamExt::boxed(frames)),
            )
        }
        Ok(Err(whole)) => whole.map(single_frame),
        Err(error) => error_response(&error).map(single_frame),
    };
    Ok(response)
}

fn single_frame(body: Body) -> StreamingBody {
    let bytes = bytes::Bytes::copy_from_slice(body.as_ref());
    http_body_util::StreamBody::new(futures::StreamExt::boxed(futures::stream::once(
        async move { Ok(http_body::Frame::data(bytes)) },
    )))
}

/// The body of a completion request, and whether the answer should stream.
fn completion_request(request: &Request) -> Result<(CompletionRequest, bool), Error> {
    let body: CompletionBody = json_body(request)?;
    let header_key = request
        .headers()
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::invalid("Idempotency-Key must be ASCII"))
        })
        .transpose()?;
    let request_id = match (body.request_id.as_deref(), header_key) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::invalid("requestId and Idempotency-Key differ"))
        }
        (Some(id), _) | (None, Some(id)) => Some(id),
        (None, None) => None,
    };
    let completion_request = match (body.prompt, body.regenerate.as_deref()) {
        (Some(prompt), None) => CompletionRequest::parse(
            prompt,
            body.conversation_id.as_deref(),
            request_id,
            body.max_tokens,
            body.model,
        )?,
        (None, Some(reply)) => CompletionRequest::regenerating(
            reply,
            body.conversation_id.as_deref(),
            request_id,
            body.max_tokens,
            body.model,
        )?,
        (None, None) => return Err(Error::invalid("a prompt, or a reply to regenerate, is needed")),
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "a prompt or a reply to regenerate: not both (a regenerated reply answers its own prompt again)",
            ))
        }
    };
    Ok((completion_request, body.stream))
}

/// One event of a streaming completion, as server-sent-events text.
fn server_sent_event(event: CompletionEvent) -> String {
    let (name, data) = match event {
        CompletionEvent::Delta(piece) => {
            ("delta", serde_json::json!({ "text": piece }).to_string())
        }
        CompletionEvent::Done(done) => (
            "done",
            serde_json::to_string(&completion_view(&done)).expect("wire types always serialize"),
        ),
        CompletionEvent::Failed(error) => {
            let response = error_response(&error);
            (
                "error",
                String::from_utf8_lossy(response.body().as_ref()).into_owned(),
            )
        }
    };
    format!("event: {name}\ndata: {data}\n\n")
}

fn event_stream_response(body: Body) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("a status, headers and a body make a valid response")
}

fn completion_view(done: &Completion) -> CompletionView<'_> {
    CompletionView {
        response: &done.reply,
        conversation_id: done.conversation_id.map(|id| id.to_string()),
        prompt_message_id: done.prompt_message_id.to_string(),
        reply_message_id: done.reply_message_id.to_string(),
        model: &done.model,
        usage: UsageView {
            input_tokens: done.input_tokens,
            output_tokens: done.output_tokens,
        },
        latency_ms: done.latency_ms,
        saved_to: if done.fell_back_to_short_term_memory {
            "shortTermMemory"
        } else {
            "conversation"
        },
        fallback: done.fell_back_to_short_term_memory,
        replayed: done.replayed,
    }
}
