//! The HTTP layer: turns an API Gateway request into a service call and its result into a
//! response. One handler per endpoint; each Lambda binary runs exactly one of them, and the
//! local gateway runs the same ones.

mod batch;
#[cfg(test)]
mod no_panics;
mod presets;
mod request;
mod shares;
pub mod wire;

pub use batch::{
    conversation_for_client_id, mobile_batch, MAX_BATCH_BYTES, MAX_BATCH_OPERATIONS,
    MAX_CLIENT_ID_CHARS,
};
pub use presets::{create_preset, delete_preset, list_presets, update_preset};
pub use shares::{
    continue_shared, decline_shared_with_me, get_shared_with_me, list_people, list_shared_with_me,
    list_shares, read_shared, revoke_share, share_conversation, share_with_person,
    unshare_with_person,
};

use std::convert::Infallible;

use lambda_http::http::{header, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::account_export::{ExportRequest, ExportRequestBody};
use crate::attachments::{AttachmentRef, Attachments, DownloadLinks, UploadRequest};
use crate::error::{chain, Error};
use crate::export::ExportFormat;
use crate::model::{
    ArchiveFilter, Attachment, AttachmentId, NewMessage, SortOrder, Tags, Title, MAX_ATTACHMENTS,
};
use crate::search::{SearchQuery, DEFAULT_SEARCH_PAGE, MAX_SEARCH_PAGE};
use crate::service::{
    ListRequest, DEFAULT_PAGE_SIZE, MAX_LEGACY_PAGE, MAX_PAGE_SIZE, MAX_SEARCH_CHARS,
};
pub use crate::state::State;
use crate::store::ExportStatus;
use crate::sync::{SyncRequest, Synced, DEFAULT_SYNC_PAGE, MAX_SYNC_MESSAGES, MAX_SYNC_PAGE};
use domain::usage::Metered;
// The request readers every handler starts with (public for the benchmarks of parsing).
pub use request::{
    caller, conversation_id, json_body, json_bytes, optional_conversation_id, Query,
};
use request::{export_id, message_id, optional_json_body};
use wire::{
    AccountExportView, AddMessageBody, ArchiveBody, AttachmentBody, ConversationListView,
    ConversationView, ConversationWithMessagesView, CreateConversationBody, EditMessageBody,
    ErrorBody, ErrorDetail, ExportView, MessageView, MigrateBody, MigrationView, RenameBody,
    SearchView, SwitchBranchBody, SyncView, TagsBody, UploadBody, UploadView, UsageView,
};

pub type HandlerResult = Result<Response<Body>, Infallible>;

/// Serves `handler` as this Lambda function's HTTP handler: what each `functions/*/main.rs`
/// calls. Each request goes through [`observed`], its metrics written to stdout.
pub async fn serve<H, Fut>(handler: H) -> Result<(), lambda_http::Error>
where
    H: Fn(Request) -> Fut + Sync,
    Fut: std::future::Future<Output = HandlerResult> + Send,
{
    lambda_http::run(lambda_http::service_fn(|request| {
        observed(&handler, request, std::io::stdout)
    }))
    .await
}

/// Runs one request through `handler` as the functions do: in a span with its route, API
/// Gateway's request id and (once known) a hash of the caller, never their content; its count,
/// status class and latency recorded by route; the invocation's metrics written to `sink` as
/// EMF when it ends.
pub async fn observed<H, Fut, W>(
    handler: &H,
    request: Request,
    sink: impl FnOnce() -> W,
) -> HandlerResult
where
    H: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = HandlerResult>,
    W: std::io::Write,
{
    use tracing::Instrument;
    crate::metrics::collector();
    let (endpoint, request_id) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => (
            context.route_key.clone().unwrap_or_default(),
            context.request_id.clone().unwrap_or_default(),
        ),
        _ => (String::new(), String::new()),
    };
    let span = tracing::info_span!(
        "request",
        endpoint = %endpoint,
        requestId = %request_id,
        user = tracing::field::Empty
    );
    let started = std::time::Instant::now();
    // On the heap: the handlers' futures are large, and this one wraps each of them.
    let response = Box::pin(handler(request).instrument(span.clone())).await?;
    let took = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(parent: &span, status, latencyMs = took.as_millis() as u64, "answered");
    crate::metrics::request(&endpoint, status, took);
    crate::metrics::flush(sink());
    Ok(response)
}

/// `GET /conversations`
pub async fn list_conversations(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let query = Query::of(&request);
        let filter = if query.text("archived")?.as_deref() == Some("only") {
            ArchiveFilter::ArchivedOnly
        } else if query.flag("includeArchived")?.unwrap_or(false) {
            ArchiveFilter::All
        } else {
            ArchiveFilter::ActiveOnly
        };
        if let Some(archived) = query.text("archived")? {
            if archived != "only" {
                return Err(Error::invalid("archived must be \"only\" when given"));
            }
        }
        let sort = match query.text("sort")?.as_deref() {
            None | Some("lastActivity") => SortOrder::LastActivity,
            Some("createdAt") => SortOrder::CreatedAt,
            Some(_) => return Err(Error::invalid("sort must be lastActivity or createdAt")),
        };
        let search = query
            .text("search")?
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if search
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS)
        {
            return Err(Error::invalid(format!(
                "search must be at most {MAX_SEARCH_CHARS} characters"
            )));
        }
        let list = ListRequest {
            filter,
            sort,
            limit: query
                .number("limit", 1, MAX_PAGE_SIZE)?
                .unwrap_or(DEFAULT_PAGE_SIZE),
            cursor: query.text("cursor")?,
            search,
            page: query.number("page", 1, MAX_LEGACY_PAGE)?,
        };
        if list.cursor.is_some() && list.page.is_some() {
            return Err(Error::invalid("give either cursor or page, not both"));
        }
        let (limit, page_number) = (list.limit, list.page);
        let page = state.conversations.list(&user, list).await?;
        Ok(json(
            StatusCode::OK,
            &ConversationListView {
                conversations: page.items.iter().map(ConversationView::from).collect(),
                next_cursor: page.next_cursor.as_deref(),
                has_more: page.next_cursor.is_some(),
                limit,
                page: page_number,
            },
        ))
    })
    .await
}

/// `GET /search?q=`: the caller's conversations whose title or messages have every word of
/// `q` (see `crate::search`).
pub async fn search_conversations(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let query = Query::of(&request);
        let q = query
            .text("q")?
            .ok_or_else(|| Error::invalid("q is required: the words to search for"))?;
        let search = SearchQuery::parse(&q)?;
        let limit = query
            .number("limit", 1, MAX_SEARCH_PAGE)?
            .unwrap_or(DEFAULT_SEARCH_PAGE);
        let cursor = query.text("cursor")?;
        state
            .usage
            .admit(&user, Metered::Search, state.now())
            .await?;
        let page = state
            .search
            .search(&user, &search, limit, cursor.as_deref())
            .await?;
        Ok(json(
            StatusCode::OK,
            &SearchView::new(&page, search.terms()),
        ))
    })
    .await
}

/// `GET /conversations/{id}/export?format=json|markdown`: writes the whole conversation to a
/// file and answers `303 See Other` to its download link (the body says the same as JSON).
pub async fn export_conversation(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let format = ExportFormat::parse(Query::of(&request).text("format")?.as_deref())?;
        let bucket = configured_attachments(state)?;
        state
            .usage
            .admit(&user, Metered::Export, state.now())
            .await?;
        let file = state
            .exports
            .export_conversation(bucket, &user, &id, format, state.now())
            .await?;
        let mut response = json(StatusCode::SEE_OTHER, &ExportView::from(&file));
        let location = header::HeaderValue::from_str(&file.download_url)
            .map_err(|e| Error::internal("export location", e))?;
        response.headers_mut().insert(header::LOCATION, location);
        Ok(response)
    })
    .await
}

/// `POST /exports`: starts an export of all the caller's conversations; 202 with the export
/// (and its `Location`), the same one again for a start sent again with its `clientExportId`.
pub async fn start_account_export(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        // The export is written later (run-account-exports), to a bucket that must exist;
        // this function itself never reaches it.
        if state.config.attachments_bucket.is_none() {
            return Err(no_bucket());
        }
        let body: ExportRequestBody = optional_json_body(&request)?.unwrap_or_default();
        let export = ExportRequest::parse(body)?;
        state
            .usage
            .admit(&user, Metered::Export, state.now())
            .await?;
        let (job, _) = state
            .account_exports
            .start(&user, export, state.now())
            .await?;
        let mut response = json(StatusCode::ACCEPTED, &AccountExportView::new(&job, &[]));
        if let Ok(location) = format!("/exports/{}", job.export_id).parse() {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    })
    .await
}

/// `GET /exports/{id}`: where the caller's export stands; once done, fresh download links.
pub async fn get_account_export(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = export_id(&request)?;
        let job = state.account_exports.status(&user, &id).await?;
        let downloads = match job.status {
            ExportStatus::Done => {
                state
                    .account_exports
                    .downloads(configured_attachments(state)?, &job, state.now())
                    .await?
            }
            _ => Vec::new(),
        };
        Ok(json(
            StatusCode::OK,
            &AccountExportView::new(&job, &downloads),
        ))
    })
    .await
}

/// `GET /conversations/{id}`
pub async fn get_conversation(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let (limit, before) = Query::of(&request).message_window()?;
        let found = state
            .conversations
            .get(&user, &id, limit, before.as_deref())
            .await?;
        Ok(json(
            StatusCode::OK,
            &ConversationWithMessagesView::new(
                &found,
                &download_links(state, &user, &found.messages).await?,
            ),
        ))
    })
    .await
}

/// `POST /conversations`
pub async fn create_conversation(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let body: CreateConversationBody = optional_json_body(&request)?.unwrap_or_default();
        let title = body.title.as_deref().map(Title::parse).transpose()?;
        let tags = body.tags.as_deref().map(Tags::parse).transpose()?;
        let conversation = match body.preset_id.as_deref() {
            Some(preset) => {
                let preset = crate::model::PresetId::parse(preset)
                    .map_err(|_| Error::invalid("presetId must be a preset's id"))?;
                state
                    .conversations
                    .create_with_preset(&user, title, tags, &preset, state.now())
                    .await?
            }
            None => {
                state
                    .conversations
                    .create(&user, title, tags.unwrap_or_default(), state.now())
                    .await?
            }
        };
        let mut response = json(StatusCode::CREATED, &ConversationView::from(&conversation));
        if let Ok(location) = format!("/conversations/{}", conversation.id).parse() {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    })
    .await
}

/// `POST /conversations/{id}/messages`: 201 when stored, 200 when a retry found it stored.
pub async fn add_message(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let body: AddMessageBody = json_body(&request)?;
        let appended = append_message(state, &user, &id, body, None).await?;
        let status = if appended.replayed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        let links = download_links(state, &user, [&appended.message]).await?;
        Ok(json(status, &MessageView::new(&appended.message, &links)))
    })
    .await
}

/// `POST /conversations/{id}/messages/{messageId}/edit`: the user's message said again in
/// other words, as a sibling on a new branch, which becomes the active one (201; 200 when an
/// earlier call with the same `clientMessageId` made it).
pub async fn edit_message(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let target = message_id(&request)?;
        let body: EditMessageBody = json_body(&request)?;
        let edited = edit_in(state, &user, &id, &target, body).await?;
        let status = if edited.replayed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        let links = download_links(state, &user, [&edited.message]).await?;
        Ok(json(
            status,
            &MessageView::new(&edited.message, &links).with_siblings(edited.siblings),
        ))
    })
    .await
}

/// Checks an edit and makes it: the one path of `POST …/messages/{messageId}/edit` and of the
/// batch's `editMessage`.
pub(super) async fn edit_in(
    state: &State,
    user: &crate::model::UserId,
    id: &crate::model::ConversationId,
    target: &crate::model::MessageId,
    body: EditMessageBody,
) -> Result<crate::model::Edited, Error> {
    let written_at = wire::client_timestamp(body.client_timestamp.as_deref())?;
    let edited = crate::model::NewMessage::parse(
        crate::model::Role::User,
        body.content,
        Vec::new(),
        body.metadata,
        body.client_message_id.as_deref(),
    )?
    .written_at(written_at);
    state
        .conversations
        .edit_message(user, id, target, edited, state.now())
        .await
}

/// `PUT /conversations/{id}/branch`: `{"messageId", "position"?}`: the newest leaf under the
/// message (or under its sibling at `position`, from 1) becomes the active one; answers the
/// conversation as `GET /conversations/{id}` then reads it.
pub async fn switch_branch(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let body: SwitchBranchBody = json_body(&request)?;
        let target = crate::model::MessageId::parse(&body.message_id)
            .map_err(|_| Error::invalid("messageId must be a message's id"))?;
        if body.position == Some(0) {
            return Err(Error::invalid("position counts from 1"));
        }
        let found = state
            .conversations
            .switch_branch(&user, &id, &target, body.position, state.now())
            .await?;
        Ok(json(
            StatusCode::OK,
            &ConversationWithMessagesView::new(
                &found,
                &download_links(state, &user, &found.messages).await?,
            ),
        ))
    })
    .await
}

/// Resolves a message's attachments and appends it: the one path of
/// `POST /conversations/{id}/messages` and of the batch's `addMessage`. `default_client_id`
/// stands in for a missing `clientMessageId`.
async fn append_message(
    state: &State,
    user: &crate::model::UserId,
    id: &crate::model::ConversationId,
    body: AddMessageBody,
    default_client_id: Option<&str>,
) -> Result<crate::model::Appended, Error> {
    // Checked before any upload is looked at in S3.
    let written_at = wire::client_timestamp(body.client_timestamp.as_deref())?;
    let refs = body
        .attachments
        .into_iter()
        .map(|a| match a {
            AttachmentBody::Link(link) => Ok(AttachmentRef::Link(link)),
            AttachmentBody::Upload(upload) => {
                AttachmentId::parse(&upload.attachment_id).map(AttachmentRef::Upload)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if refs.len() > MAX_ATTACHMENTS {
        return Err(Error::invalid(format!(
            "at most {MAX_ATTACHMENTS} attachments are allowed"
        )));
    }
    let attachments = match &state.attachments {
        // Links need no bucket; an upload reference without one is our misconfiguration.
        None if refs.iter().all(|r| matches!(r, AttachmentRef::Link(_))) => refs
            .into_iter()
            .filter_map(|r| match r {
                AttachmentRef::Link(link) => Some(Attachment::Link(link)),
                AttachmentRef::Upload(_) => None,
            })
            .collect(),
        _ => {
            configured_attachments(state)?
                .resolve(user, id, refs)
                .await?
        }
    };
    let message = NewMessage::parse(
        body.role,
        body.content,
        attachments,
        body.metadata,
        body.client_message_id.as_deref().or(default_client_id),
    )?
    .written_at(written_at);
    let appended = state
        .conversations
        .add_message(user, id, message, state.now())
        .await?;
    // Stored: now its uploads are kept. If marking fails the request fails, and its retry
    // (the same clientMessageId, or the batch's opId) finds the message and marks them again.
    if let Some(attachments) = &state.attachments {
        // Boxed: the S3 call's future is large, and the batch runs this inside its own.
        Box::pin(attachments.mark_attached(user, id, &appended.message.attachments)).await?;
    }
    Ok(appended)
}

/// `GET /mobile/sync`: what changed since the app's last sync (`since`, the cursor it was
/// given), deletions included; `hasMore` says to ask again at once with the new cursor.
pub async fn mobile_sync(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let query = Query::of(&request);
        let sync = SyncRequest {
            since: query.text("since")?,
            limit: query
                .number("limit", 1, MAX_SYNC_PAGE)?
                .unwrap_or(DEFAULT_SYNC_PAGE),
            include_messages: query
                .number("includeMessages", 0, MAX_SYNC_MESSAGES)?
                .unwrap_or(0),
        };
        let page = state.sync.sync(&user, sync, state.now()).await?;
        let mut messages = Vec::new();
        for synced in &page.conversations {
            if let Synced::WithMessages(found) = synced {
                messages.extend(found.messages.iter());
            }
        }
        let links = download_links(state, &user, messages).await?;
        Ok(json(StatusCode::OK, &SyncView::new(&page, &links)))
    })
    .await
}

/// `POST /conversations/migrate`: moves the caller's short-term memory into conversations
/// (`{"dryRun": true}` reports what it would do and writes nothing). Safe to repeat: a
/// repeat, or a retry after a timeout, continues where the last call stopped.
pub async fn migrate_conversations(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let body: MigrateBody = optional_json_body(&request)?.unwrap_or_default();
        state
            .usage
            .admit(&user, Metered::Migration, state.now())
            .await?;
        let summary = state
            .migrator
            .migrate_memory(&user, body.dry_run, state.now())
            .await?;
        Ok(json(StatusCode::OK, &MigrationView::from(&summary)))
    })
    .await
}

/// `GET /usage`: the caller's use today of the limited routes and of the model, and their
/// limits (what a 429 `rate_limited` is counted against).
pub async fn get_usage(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let now = state.now();
        let report = state.usage.report(&user, now).await?;
        Ok(json(StatusCode::OK, &UsageView::new(&report, now)))
    })
    .await
}

/// The attachments bucket; a request that needs it when none is configured is our failure.
fn configured_attachments(state: &State) -> Result<&Attachments, Error> {
    state.attachments.as_ref().ok_or_else(no_bucket)
}

fn no_bucket() -> Error {
    Error::internal("attachments", "ATTACHMENTS_BUCKET is not configured")
}

/// Presigned download URLs for the uploaded files of these messages (none without a bucket).
pub(super) async fn download_links<'m>(
    state: &State,
    user: &crate::model::UserId,
    messages: impl IntoIterator<Item = &'m crate::model::Message>,
) -> Result<DownloadLinks, Error> {
    match &state.attachments {
        Some(attachments) => {
            attachments
                .download_links(user, messages, state.now())
                .await
        }
        None => Ok(DownloadLinks::new()),
    }
}

/// `POST /conversations/{id}/attachments`: a short-lived presigned URL to upload one file of
/// the declared name, type and size into the conversation.
pub async fn create_attachment_upload(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let attachments = configured_attachments(state)?;
        let body: UploadBody = json_body(&request)?;
        let upload = UploadRequest::parse(
            &body.file_name,
            &body.content_type,
            body.size,
            attachments.max_bytes(),
        )?;
        if !state
            .conversations
            .store()
            .conversation_exists(&user, &id)
            .await?
        {
            return Err(Error::NotFound);
        }
        let presigned = attachments
            .presign_upload(&user, &id, &upload, state.now())
            .await?;
        Ok(json(
            StatusCode::CREATED,
            &UploadView::new(&presigned, &upload),
        ))
    })
    .await
}

/// `PUT /conversations/{id}/title`
pub async fn rename_conversation(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let body: RenameBody = json_body(&request)?;
        let title = Title::parse(&body.title)?;
        let conversation = state
            .conversations
            .rename(&user, &id, title, state.now())
            .await?;
        Ok(json(StatusCode::OK, &ConversationView::from(&conversation)))
    })
    .await
}

/// `PUT /conversations/{id}/preset`: `{"presetId"}`: the conversation keeps that preset's
/// settings as they are now (a later edit of the preset changes it only when applied again).
pub async fn apply_preset(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let body: wire::ApplyPresetBody = json_body(&request)?;
        let preset = crate::model::PresetId::parse(&body.preset_id)
            .map_err(|_| Error::invalid("presetId must be a preset's id"))?;
        let conversation = state
            .conversations
            .apply_preset(&user, &id, &preset, state.now())
            .await?;
        Ok(json(StatusCode::OK, &ConversationView::from(&conversation)))
    })
    .await
}

/// `PUT /conversations/{id}/archive`: `{"archived": false}` unarchives; an empty body
/// archives, as the specification's original endpoint did.
pub async fn archive_conversation(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let archived = optional_json_body::<ArchiveBody>(&request)?.is_none_or(|b| b.archived);
        let conversation = state
            .conversations
            .set_archived(&user, &id, archived, state.now())
            .await?;
        Ok(json(StatusCode::OK, &ConversationView::from(&conversation)))
    })
    .await
}

/// `PUT /conversations/{id}/tags`
pub async fn set_conversation_tags(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let body: TagsBody = json_body(&request)?;
        let tags = Tags::parse(&body.tags)?;
        let conversation = state
            .conversations
            .set_tags(&user, &id, tags, state.now())
            .await?;
        Ok(json(StatusCode::OK, &ConversationView::from(&conversation)))
    })
    .await
}

/// `DELETE /conversations/{id}`: 204 once the conversation is gone from every read.
pub async fn delete_conversation(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        state
            .conversations
            .delete(&user, &id, state.now(), state.config.delete_purge_budget)
            .await?;
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::Empty)
            .expect("a status and an empty body make a valid response"))
    })
    .await
}

/// `DELETE /conversations/{id}/messages/{messageId}`: the message and every message that grew
/// from it (the rest of its branch, and the branches forked from those) are deleted; 204.
pub async fn delete_message(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let target = message_id(&request)?;
        state
            .conversations
            .delete_message(&user, &id, &target, state.config.delete_purge_budget)
            .await?;
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::Empty)
            .expect("a status and an empty body make a valid response"))
    })
    .await
}

/// Runs a handler body and turns its error, if any, into the API's error response.
pub async fn respond(
    work: impl std::future::Future<Output = Result<Response<Body>, Error>>,
) -> HandlerResult {
    Ok(work.await.unwrap_or_else(|error| error_response(&error)))
}

pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_string(value).expect("wire types always serialize");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body))
        .expect("a status, a header and a body make a valid response")
}

/// The one place errors become HTTP: a status, a stable code, and a message that never
/// carries internals. Server-side failures are logged with their whole cause chain.
pub fn error_response(error: &Error) -> Response<Body> {
    let (status, detail) = error_detail(error);
    let mut response = json(status, &ErrorBody { error: detail });
    let retry_after = match error {
        // Over a limit: when the same request is admitted again.
        Error::RateLimited {
            retry_after_seconds,
            ..
        } => Some(header::HeaderValue::from(*retry_after_seconds)),
        // Busy, or not run for lack of time: worth sending again shortly.
        _ if status == StatusCode::SERVICE_UNAVAILABLE => {
            Some(header::HeaderValue::from_static(RETRY_AFTER_SECONDS))
        }
        _ => None,
    };
    if let Some(retry_after) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after);
    }
    response
}

/// What a 503 tells the client to wait before sending the request again.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// An error's status and the detail the client sees (also each failed batch operation's).
fn error_detail(error: &Error) -> (StatusCode, ErrorDetail) {
    let (status, code) = match error {
        Error::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthorized"),
        Error::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        Error::NotFound | Error::ExportNotFound | Error::ShareNotFound => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        Error::Conflict(_) => (StatusCode::CONFLICT, "request_in_progress"),
        Error::Superseded(_) => (StatusCode::CONFLICT, "conflict"),
        Error::OperationReused(_) => (StatusCode::CONFLICT, "operation_id_reused"),
        Error::ResyncRequired(_) => (StatusCode::GONE, "resync_required"),
        Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        Error::NotRun => (StatusCode::SERVICE_UNAVAILABLE, "not_run"),
        Error::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
        Error::ModelFailed(_) => (StatusCode::BAD_GATEWAY, "model_failed"),
        Error::ModelTimeout => (StatusCode::GATEWAY_TIMEOUT, "model_timeout"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Error::Internal { .. } | Error::Config(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    let message = if status.is_server_error() {
        tracing::error!(error = %chain(error), "request failed");
        match error {
            Error::Unavailable(_) => "the service is busy; retry shortly".to_owned(),
            Error::NotRun => error.to_string(),
            Error::ModelFailed(_) => "the model did not answer; your prompt was saved".to_owned(),
            Error::ModelTimeout => {
                "the model did not answer in time; your prompt was saved".to_owned()
            }
            _ => "something went wrong on our side".to_owned(),
        }
    } else {
        // The message can quote what the client sent: only the code is logged.
        tracing::info!(%code, "request refused");
        error.to_string()
    };
    (
        status,
        ErrorDetail {
            code: code.to_owned(),
            message,
        },
    )
}
