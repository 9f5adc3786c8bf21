//! The sharing routes (`crate::sharing`). Links: the owner's (make, list, revoke), the public
//! read any holder of a link makes without a token, and a signed-in reader's continue. With a
//! person: the owner's (share, list, take back) and the grantee's (list, read).

use chrono::{DateTime, Utc};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};

use super::wire::{
    iso_millis, optional_iso_millis, rfc3339_time, AttachmentView, ConversationView,
    ConversationWithMessagesView,
};
use super::{caller, conversation_id, json, optional_json_body, respond, HandlerResult, Query};
use crate::error::Error;
use crate::model::{Message, MessageId, Metadata, Role, UserId};
use crate::sharing::{
    SharedPage, DEFAULT_SHARED_WITH_ME_PAGE, DEFAULT_SHARE_PAGE, MAX_SHARED_WITH_ME_PAGE,
    MAX_SHARE_PAGE,
};
use crate::state::State;
use crate::store::{Grant, SharedWithMe};
use domain::share::{ShareLink, ShareOptions, ShareToken};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ShareBody {
    message_id: Option<String>,
    expires_at: Option<String>,
    #[serde(default)]
    include_metadata: bool,
    #[serde(default)]
    include_attachments: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ContinueBody {
    request_id: Option<String>,
}

/// A link as its owner sees it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ShareLinkView<'a> {
    /// The link's token: what its URL carries.
    id: &'a str,
    /// The public route that reads it (`GET /shared/{id}`).
    path: String,
    conversation_id: String,
    up_to_message_id: String,
    title: &'a str,
    #[serde(serialize_with = "iso_millis")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "optional_iso_millis")]
    expires_at: Option<DateTime<Utc>>,
    include_metadata: bool,
    include_attachments: bool,
}

impl<'a> From<&'a ShareLink> for ShareLinkView<'a> {
    fn from(link: &'a ShareLink) -> Self {
        Self {
            id: link.token.as_str(),
            path: format!("/shared/{}", link.token),
            conversation_id: link.conversation_id.to_string(),
            up_to_message_id: link.up_to.to_string(),
            title: &link.title,
            created_at: link.created_at,
            expires_at: link.expires_at,
            include_metadata: link.include_metadata,
            include_attachments: link.include_attachments,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ShareLinkListView<'a> {
    shares: Vec<ShareLinkView<'a>>,
    next_cursor: Option<String>,
}

/// A shared conversation as its readers see it: no user, no conversation id.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SharedView<'a> {
    title: &'a str,
    #[serde(serialize_with = "iso_millis")]
    shared_at: DateTime<Utc>,
    messages: Vec<SharedMessageView<'a>>,
    older_messages_cursor: Option<&'a str>,
    has_older_messages: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SharedMessageView<'a> {
    id: String,
    role: Role,
    content: &'a str,
    #[serde(serialize_with = "iso_millis")]
    timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<Vec<AttachmentView<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Metadata>,
}

impl<'a> SharedView<'a> {
    fn new(page: &'a SharedPage) -> Self {
        let link = &page.link;
        let message = |m: &'a Message| SharedMessageView {
            id: m.id.to_string(),
            role: m.role,
            content: &m.content,
            timestamp: m.timestamp,
            attachments: link
                .include_attachments
                .then(|| AttachmentView::all(&m.attachments, &page.downloads)),
            metadata: link.include_metadata.then_some(&m.metadata),
        };
        Self {
            title: &link.title,
            shared_at: link.created_at,
            messages: page.messages.iter().map(message).collect(),
            older_messages_cursor: page.older_messages.as_deref(),
            has_older_messages: page.older_messages.is_some(),
        }
    }
}

/// The `{shareId}` path parameter: a link's token (anything else names no link).
fn share_token(request: &Request) -> Result<ShareToken, Error> {
    request
        .path_parameters()
        .first("shareId")
        .ok_or(Error::ShareNotFound)
        .and_then(ShareToken::parse)
}

/// `POST /conversations/{id}/shares`: a link to the conversation up to a message of the
/// branch it shows (its newest by default), `{messageId?, expiresAt?, includeMetadata?,
/// includeAttachments?}`.
pub async fn share_conversation(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let body: ShareBody = optional_json_body(&request)?.unwrap_or_default();
        let up_to = body
            .message_id
            .as_deref()
            .map(|raw| {
                MessageId::parse(raw)
                    .map_err(|_| Error::invalid("messageId must be a message's id"))
            })
            .transpose()?;
        let options = ShareOptions {
            up_to,
            expires_at: rfc3339_time("expiresAt", body.expires_at.as_deref())?,
            include_metadata: body.include_metadata,
            include_attachments: body.include_attachments,
        };
        let link = state
            .sharing
            .share(&user, &id, options, state.now())
            .await?;
        let mut response = json(StatusCode::CREATED, &ShareLinkView::from(&link));
        if let Ok(location) = HeaderValue::from_str(&format!("/shared/{}", link.token)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    })
    .await
}

/// `GET /shares`: the caller's live links, of one conversation with `conversationId`, a page
/// at a time (`limit`, `cursor`).
pub async fn list_shares(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let query = Query::of(&request);
        let conversation = query
            .text("conversationId")?
            .map(|raw| crate::model::ConversationId::parse(&raw))
            .transpose()?;
        let limit = query
            .number("limit", 1, MAX_SHARE_PAGE)?
            .unwrap_or(DEFAULT_SHARE_PAGE);
        let cursor = query.text("cursor")?;
        let (links, next_cursor) = state
            .sharing
            .links(
                &user,
                conversation.as_ref(),
                limit,
                cursor.as_deref(),
                state.now(),
            )
            .await?;
        Ok(json(
            StatusCode::OK,
            &ShareLinkListView {
                shares: links.iter().map(ShareLinkView::from).collect(),
                next_cursor,
            },
        ))
    })
    .await
}

/// `DELETE /conversations/{id}/shares/{shareId}`: revokes the caller's link (204); its
/// readers get 404 from the next request on.
pub async fn revoke_share(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let token = share_token(&request)?;
        state.sharing.revoke(&user, &id, &token).await?;
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::Empty)
            .expect("a status makes a valid response"))
    })
    .await
}

/// What a CDN in front of the public route may do: keep the answer, but ask again each time
/// (a revoked link answers 404 at once), which costs a 304 when nothing changed.
const SHARED_CACHE_CONTROL: &str = "public, no-cache";

/// `GET /shared/{shareId}`, without a token: the shared conversation's title and messages up
/// to the link's point, newest `messageLimit` first (oldest first in the page), older ones
/// with `before`. An `ETag` of the answer; `If-None-Match` with it answers 304.
pub async fn read_shared(state: &State, request: Request) -> HandlerResult {
    let mut response = respond(async {
        let token = share_token(&request)?;
        let (limit, before) = Query::of(&request).message_window()?;
        let page = state
            .sharing
            .read(&token, limit, before.as_deref(), state.now())
            .await?;
        let body = serde_json::to_string(&SharedView::new(&page))
            .map_err(|e| Error::internal("encode a shared conversation", e))?;
        let etag = entity_tag(&body);
        let unchanged = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                // Weak comparison (RFC 9110, 13.1.2): a compressing CDN sends `W/"…"`.
                tags.split(',')
                    .map(str::trim)
                    .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
            });
        let (status, body) = match unchanged {
            true => (StatusCode::NOT_MODIFIED, Body::Empty),
            false => (StatusCode::OK, Body::Text(body)),
        };
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .expect("a status, a header and a body make a valid response");
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        Ok(response)
    })
    .await?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(SHARED_CACHE_CONTROL),
    );
    Ok(response)
}

/// A strong entity tag of a body: its SHA-256, quoted.
fn entity_tag(body: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(body.as_bytes());
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
    )
}

/// `POST /shared/{shareId}/continue`, `{requestId?}`: copies what the link shows into a new
/// conversation of the caller's (201), theirs alone from then on. With `requestId`, exactly
/// once: the same request again answers the copy it made (200).
pub async fn continue_shared(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let token = share_token(&request)?;
        let body: ContinueBody = optional_json_body(&request)?.unwrap_or_default();
        if let Some(request_id) = &body.request_id {
            if request_id.is_empty() || request_id.chars().count() > super::MAX_CLIENT_ID_CHARS {
                return Err(Error::invalid(format!(
                    "requestId must be 1 to {} characters",
                    super::MAX_CLIENT_ID_CHARS
                )));
            }
        }
        let continued = state
            .sharing
            .continue_shared(&user, &token, body.request_id.as_deref(), state.now())
            .await?;
        let status = match continued.created {
            true => StatusCode::CREATED,
            false => StatusCode::OK,
        };
        let mut response = json(status, &ConversationView::from(&continued.conversation));
        if let Ok(location) =
            HeaderValue::from_str(&format!("/conversations/{}", continued.conversation.id))
        {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrantBody {
    user_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GrantView<'a> {
    user_id: &'a str,
    #[serde(serialize_with = "iso_millis")]
    granted_at: DateTime<Utc>,
}

impl<'a> From<&'a Grant> for GrantView<'a> {
    fn from(grant: &'a Grant) -> Self {
        Self {
            user_id: grant.grantee.as_str(),
            granted_at: grant.granted_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GrantListView<'a> {
    people: Vec<GrantView<'a>>,
}

/// A conversation shared with the caller: as its owner lists it, with who shared it and when.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SharedWithMeView<'a> {
    #[serde(flatten)]
    conversation: ConversationView<'a>,
    shared_by: &'a str,
    #[serde(serialize_with = "iso_millis")]
    shared_at: DateTime<Utc>,
}

impl<'a> From<&'a SharedWithMe> for SharedWithMeView<'a> {
    fn from(shared: &'a SharedWithMe) -> Self {
        Self {
            conversation: (&shared.conversation).into(),
            shared_by: shared.shared_by.as_str(),
            shared_at: shared.granted_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SharedWithMeListView<'a> {
    conversations: Vec<SharedWithMeView<'a>>,
    next_cursor: Option<String>,
    has_more: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SharedConversationWithMessagesView<'a> {
    #[serde(flatten)]
    conversation: ConversationWithMessagesView<'a>,
    shared_by: &'a str,
}

/// Another user's id as a client names them (a body's `userId`, the `{userId}` path
/// parameter): a malformed one is the client's mistake, 400.
fn grantee(raw: &str) -> Result<UserId, Error> {
    UserId::parse(raw).map_err(|_| Error::invalid("userId must be a user's id"))
}

/// `POST /conversations/{id}/people`, `{userId}`: shares the conversation with that user, who
/// reads it as it is now until it is taken back (201; 200 when it was shared with them).
pub async fn share_with_person(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let owner = caller(&request)?;
        let id = conversation_id(&request)?;
        let body: GrantBody = super::json_body(&request)?;
        let grantee = grantee(&body.user_id)?;
        let now = state.now();
        let grant = state.sharing.share_with(&owner, &id, &grantee, now).await?;
        let status = match grant.granted_at == now {
            true => StatusCode::CREATED,
            false => StatusCode::OK,
        };
        Ok(json(status, &GrantView::from(&grant)))
    })
    .await
}

/// `GET /conversations/{id}/people`: whom the caller's conversation is shared with.
pub async fn list_people(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let owner = caller(&request)?;
        let id = conversation_id(&request)?;
        let people = state.sharing.people(&owner, &id).await?;
        Ok(json(
            StatusCode::OK,
            &GrantListView {
                people: people.iter().map(GrantView::from).collect(),
            },
        ))
    })
    .await
}

/// `DELETE /conversations/{id}/people/{userId}`: takes the conversation back from that user
/// (204); their next request gets 404.
pub async fn unshare_with_person(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let owner = caller(&request)?;
        let id = conversation_id(&request)?;
        let raw = request
            .path_parameters()
            .first("userId")
            .map(str::to_owned)
            .unwrap_or_default();
        state.sharing.unshare(&owner, &id, &grantee(&raw)?).await?;
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::Empty)
            .expect("a status makes a valid response"))
    })
    .await
}

/// `GET /shared-with-me`: the conversations others shared with the caller, as they are now,
/// newest activity first (`limit`, `cursor`).
pub async fn list_shared_with_me(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let query = Query::of(&request);
        let limit = query
            .number("limit", 1, MAX_SHARED_WITH_ME_PAGE)?
            .unwrap_or(DEFAULT_SHARED_WITH_ME_PAGE);
        let cursor = query.text("cursor")?;
        let (page, next_cursor) = state
            .sharing
            .shared_with_me(&user, limit, cursor.as_deref())
            .await?;
        Ok(json(
            StatusCode::OK,
            &SharedWithMeListView {
                conversations: page.iter().map(SharedWithMeView::from).collect(),
                has_more: next_cursor.is_some(),
                next_cursor,
            },
        ))
    })
    .await
}

/// `DELETE /shared-with-me/{id}`: the caller declines a conversation shared with them (204):
/// it leaves their list and its owner's, as if the owner had taken it back.
pub async fn decline_shared_with_me(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        state.sharing.decline(&user, &id).await?;
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::Empty)
            .expect("a status makes a valid response"))
    })
    .await
}

/// `GET /shared-with-me/{id}`: a conversation shared with the caller, read as its owner reads
/// it (the branch it shows, newest `messageLimit` messages, `before` to page back), read-only.
pub async fn get_shared_with_me(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = conversation_id(&request)?;
        let (limit, before) = Query::of(&request).message_window()?;
        let (owner, found) = state
            .sharing
            .read_shared_with_me(&user, &id, limit, before.as_deref())
            .await?;
        let links = super::download_links(state, &owner, &found.messages).await?;
        Ok(json(
            StatusCode::OK,
            &SharedConversationWithMessagesView {
                conversation: ConversationWithMessagesView::new(&found, &links),
                shared_by: owner.as_str(),
            },
        ))
    })
    .await
}
