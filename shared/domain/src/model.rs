//! The conversation domain: who owns what, and the values that can be stored.
//! Every type here is valid by construction: parsing happens once, at the edge.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// Largest message content accepted, in UTF-8 bytes. Content over
/// `store::INLINE_CONTENT_BYTES` (32 KiB) is kept compressed in S3, so every message item
/// stays far below DynamoDB's 400 KB item limit and a page of messages within a query page.
pub const MAX_CONTENT_BYTES: usize = 2 * 1024 * 1024;
/// Largest metadata map accepted, measured as compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
pub const MAX_ATTACHMENTS: usize = 20;
pub const MAX_ATTACHMENT_CHARS: usize = 2048;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 50;
pub const MAX_CLIENT_MESSAGE_ID_CHARS: usize = 128;
/// Title shown while a conversation has neither a user-set title nor a first user message.
pub const UNTITLED: &str = "New conversation";
/// Characters of the first user message kept when deriving a title from it.
const DERIVED_TITLE_CHARS: usize = 60;

/// The authenticated caller: the `sub` claim of their token.
///
/// Restricted to characters that can never contain the `#` key delimiter, so one user's id
/// can never spell the prefix of another user's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let valid = !raw.is_empty()
            && raw.len() <= 128
            && raw.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '|')
            });
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::Unauthenticated)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stable stand-in for the user in logs: the first 8 bytes of a SHA-256 of the id, in hex.
    pub fn log_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("numina-user:{}", self.0).as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl TryFrom<String> for UserId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("Identifies one ", $what, ".")]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn parse(raw: &str) -> Result<Self, Error> {
                Uuid::try_parse(raw)
                    .map(Self)
                    .map_err(|_| Error::invalid(concat!($what, " id must be a UUID")))
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(ConversationId, "conversation");
uuid_id!(MessageId, "message");
uuid_id!(AttachmentId, "attachment");
uuid_id!(PresetId, "preset");

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    System,
}

/// A conversation's title as the user set it: trimmed, non-empty, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid("title must not be empty"));
        }
        if trimmed.chars().count() > MAX_TITLE_CHARS {
            return Err(Error::invalid(format!(
                "title must be at most {MAX_TITLE_CHARS} characters"
            )));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Error::invalid("title must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The title a conversation gets from its first user message: its first line, shortened
    /// at a word boundary.
    pub fn derived_from(content: &str) -> Self {
        let line = content
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or_default();
        let clean: String = line.chars().filter(|c| !c.is_control()).collect();
        if clean.is_empty() {
            return Self(UNTITLED.to_owned());
        }
        if clean.chars().count() <= DERIVED_TITLE_CHARS {
            return Self(clean);
        }
        let cut: String = clean.chars().take(DERIVED_TITLE_CHARS).collect();
        let at_word = match cut.rfind(char::is_whitespace) {
            Some(space) if space > DERIVED_TITLE_CHARS / 2 => cut[..space].trim_end().to_owned(),
            _ => cut,
        };
        Self(format!("{at_word}…"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A conversation's tags: trimmed, non-empty, unique, bounded in count and length.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(Vec<String>);

impl Tags {
    pub fn parse(raw: &[String]) -> Result<Self, Error> {
        let mut tags: Vec<String> = Vec::with_capacity(raw.len());
        for tag in raw {
            let tag = tag.trim();
            if tag.is_empty() {
                return Err(Error::invalid("tags must not be empty"));
            }
            if tag.chars().count() > MAX_TAG_CHARS {
                return Err(Error::invalid(format!(
                    "each tag must be at most {MAX_TAG_CHARS} characters"
                )));
            }
            if tag.chars().any(char::is_control) {
                return Err(Error::invalid("tags must not contain control characters"));
            }
            if !tags.iter().any(|seen| seen == tag) {
                tags.push(tag.to_owned());
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(Error::invalid(format!(
                "at most {MAX_TAGS} tags are allowed"
            )));
        }
        Ok(Self(tags))
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// An id the client gives a message so that retrying the same append adds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let valid = !raw.is_empty()
            && raw.chars().count() <= MAX_CLIENT_MESSAGE_ID_CHARS
            && raw.chars().all(|c| c.is_ascii_graphic());
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::invalid(format!(
                "clientMessageId must be 1 to {MAX_CLIENT_MESSAGE_ID_CHARS} printable ASCII characters"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A file or link a message carries: a link as the old model kept them (any string, e.g. a
/// URL), or a file uploaded to the attachments bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Attachment {
    Link(String),
    File(StoredFile),
}

/// An uploaded file, as checked when the message referencing it was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFile {
    pub attachment_id: AttachmentId,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
}

impl Attachment {
    /// Roughly what it adds to a stored message.
    pub fn stored_bytes(&self) -> usize {
        match self {
            Self::Link(link) => link.len() + 8,
            Self::File(file) => file.file_name.len() + file.content_type.len() + 96,
        }
    }
}

/// Free-form context stored with a message (the specification's `metadata` map).
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// A message as the caller asks for it to be added, already checked against every limit.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    pub attachments: Vec<Attachment>,
    pub metadata: Metadata,
    pub client_message_id: Option<ClientMessageId>,
    /// When the user wrote it on their device (an app that sends later, offline), if it says.
    pub client_timestamp: Option<DateTime<Utc>>,
    /// The content's length in tokens, when the writer counted it (the assistant does).
    pub token_count: Option<TokenCount>,
}

impl NewMessage {
    pub fn parse(
        role: Role,
        content: String,
        attachments: Vec<Attachment>,
        metadata: Metadata,
        client_message_id: Option<&str>,
    ) -> Result<Self, Error> {
        if content.trim().is_empty() {
            return Err(Error::invalid("content must not be empty"));
        }
        if content.len() > MAX_CONTENT_BYTES {
            return Err(Error::TooLarge(format!(
                "content is {} bytes; the limit is {MAX_CONTENT_BYTES} bytes",
                content.len()
            )));
        }
        if attachments.len() > MAX_ATTACHMENTS {
            return Err(Error::invalid(format!(
                "at most {MAX_ATTACHMENTS} attachments are allowed"
            )));
        }
        if attachments.iter().any(|a| match a {
            Attachment::Link(link) => {
                link.trim().is_empty() || link.chars().count() > MAX_ATTACHMENT_CHARS
            }
            Attachment::File(_) => false,
        }) {
            return Err(Error::invalid(format!(
                "each attachment must be 1 to {MAX_ATTACHMENT_CHARS} characters"
            )));
        }
        if metadata.keys().any(String::is_empty) {
            return Err(Error::invalid(
                "metadata cannot be stored: keys must not be empty",
            ));
        }
        for value in metadata.values() {
            storable(value, 1).map_err(|problem| {
                Error::invalid(format!("metadata cannot be stored: {problem}"))
            })?;
        }
        let metadata_bytes = serde_json::to_vec(&metadata)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if metadata_bytes > MAX_METADATA_BYTES {
            return Err(Error::TooLarge(format!(
                "metadata is {metadata_bytes} bytes as JSON; the limit is {MAX_METADATA_BYTES} bytes"
            )));
        }
        let client_message_id = client_message_id.map(ClientMessageId::parse).transpose()?;
        Ok(Self {
            role,
            content,
            attachments,
            metadata,
            client_message_id,
            client_timestamp: None,
            token_count: None,
        })
    }

    /// When the user wrote it on their device, by the app's clock: kept beside the server's
    /// time, which alone orders messages (`kept_client_timestamp`).
    pub fn written_at(mut self, client_timestamp: Option<DateTime<Utc>>) -> Self {
        self.client_timestamp = client_timestamp;
        self
    }
}

/// A message's `clientTimestamp` as kept: never later than the message arrived (`arrived`, the
/// server's time), and to the millisecond, as every time the API shows.
pub fn kept_client_timestamp(
    client_timestamp: Option<DateTime<Utc>>,
    arrived: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    client_timestamp.map(|t| t.min(arrived).trunc_subsecs(3))
}

/// How deep metadata values may nest (DynamoDB stores at most 32 levels in an item).
pub const MAX_METADATA_DEPTH: usize = 16;

/// Whether a metadata value can be stored as it is: no empty keys, numbers within DynamoDB's
/// range (magnitudes from 1e-130 to below 1e126), nesting within `MAX_METADATA_DEPTH`.
fn storable(value: &serde_json::Value, depth: usize) -> Result<(), String> {
    use serde_json::Value;
    if depth > MAX_METADATA_DEPTH {
        return Err(format!(
            "values nest deeper than {MAX_METADATA_DEPTH} levels"
        ));
    }
    match value {
        Value::Object(map) => {
            if map.keys().any(String::is_empty) {
                return Err("keys must not be empty".to_owned());
            }
            map.values().try_for_each(|v| storable(v, depth + 1))
        }
        Value::Array(items) => items.iter().try_for_each(|v| storable(v, depth + 1)),
        Value::Number(number) => {
            let magnitude = number.as_f64().map(f64::abs).unwrap_or(f64::INFINITY);
            if magnitude == 0.0 || (1e-130..1e126).contains(&magnitude) {
                Ok(())
            } else {
                Err(format!(
                    "the number {number} is out of range (1e-130 to 1e126)"
                ))
            }
        }
        _ => Ok(()),
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub role: Role,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    pub attachments: Vec<Attachment>,
    pub metadata: Metadata,
    pub client_message_id: Option<String>,
    /// When the user wrote it on their device, as the app said (`NewMessage::written_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timestamp: Option<DateTime<Utc>>,
    /// The content's length in tokens as counted when it was written; `None` when its writer
    /// does not count tokens (then a context read counts it). Internal: no response shows it.
    #[serde(skip)]
    pub token_count: Option<TokenCount>,
    /// Its slot, when the store keeps it by slot (`keys::Slot`); `None` for a message keyed by
    /// its time, or not stored yet. Internal: where it is kept, not what it is.
    #[serde(skip)]
    pub slot: Option<crate::keys::Slot>,
}

impl Message {
    /// Its sort key in its conversation's partition: by its slot, else by its time and id.
    pub fn sort_key(&self) -> String {
        match self.slot {
            Some(slot) => crate::keys::slot_sort_key(slot),
            None => crate::keys::message_sort_key(self.timestamp, &self.id),
        }
    }
}

/// A content's length in one tokenizer's tokens, counted once when the message is written so
/// reading a context does not tokenize stored messages again. Stored as `encoding:tokens`
/// (`o200k_base:153`): a count is only used with the encoding it was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCount {
    encoding: String,
    tokens: u32,
}

impl TokenCount {
    pub fn new(encoding: &str, tokens: usize) -> Self {
        Self {
            encoding: encoding.to_owned(),
            tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
        }
    }

    /// The count, when it was made with `encoding`.
    pub fn in_encoding(&self, encoding: &str) -> Option<usize> {
        (self.encoding == encoding).then_some(self.tokens as usize)
    }
}

impl Serialize for TokenCount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}:{}", self.encoding, self.tokens))
    }
}

impl<'de> Deserialize<'de> for TokenCount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.rsplit_once(':')
            .and_then(|(encoding, tokens)| {
                Some(Self {
                    encoding: encoding.to_owned(),
                    tokens: tokens.parse().ok()?,
                })
            })
            .ok_or_else(|| serde::de::Error::custom("a token count is encoding:tokens"))
    }
}

impl Message {
    /// The bytes this message takes in a response as Lambda returns it (see
    /// [`message_response_bytes`]).
    pub fn response_bytes(&self) -> usize {
        message_response_bytes(
            &self.content,
            &self.metadata,
            &self.attachments,
            self.client_message_id.as_deref(),
        )
    }
}

/// The bytes a message takes in a response as Lambda returns it: its JSON inside the JSON of
/// Lambda's response envelope, so every character escaped twice (a quote becomes four bytes),
/// plus its fields and room for a download URL per file.
pub fn message_response_bytes(
    content: &str,
    metadata: &Metadata,
    attachments: &[Attachment],
    client_message_id: Option<&str>,
) -> usize {
    let metadata = serde_json::to_string(metadata).unwrap_or_default();
    let attachments: usize = attachments
        .iter()
        .map(|a| match a {
            Attachment::Link(link) => twice_escaped_len(link) + 8,
            Attachment::File(file) => twice_escaped_len(&file.file_name) + 2048,
        })
        .sum();
    MESSAGE_FIELDS_BYTES
        + twice_escaped_len(content)
        + client_message_id.map_or(0, twice_escaped_len)
        + escaped_len(&metadata)
        + attachments
}

/// What a message's ids, role, times and field names take in a response.
const MESSAGE_FIELDS_BYTES: usize = 400;

/// The length of `text` as a JSON string's contents.
pub fn escaped_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// The length of `text` escaped as a JSON string, then escaped again (a JSON body inside
/// Lambda's JSON response).
pub fn twice_escaped_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => 4,
            '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 3,
            c if (c as u32) < 0x20 => 7,
            c => c.len_utf8(),
        })
        .sum()
}

/// One conversation, without its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub user_id: UserId,
    pub title: String,
    pub last_activity: DateTime<Utc>,
    pub is_archived: bool,
    pub tags: Vec<String>,
    pub summary: Option<String>,
    pub message_count: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The preset it was started with (or last applied), when any: its settings are kept
    /// beside it (`crate::preset::ConversationSettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<crate::preset::PresetRef>,
}

/// A conversation the user deleted, as a sync reports it (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedConversation {
    pub id: ConversationId,
    pub deleted_at: DateTime<Utc>,
}

/// A conversation with its most recent messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationWithMessages {
    pub conversation: Conversation,
    pub messages: Vec<Message>,
    /// Where to continue for older messages; `None` when the oldest message is included.
    pub older_messages: Option<String>,
    /// The siblings of the messages that have any (`tree::Siblings`), by message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub siblings: Vec<(MessageId, crate::tree::Siblings)>,
    /// The settings it keeps of its preset, when it was started with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<crate::preset::ConversationSettings>,
}

impl ConversationWithMessages {
    /// A message's siblings: itself alone unless it has any.
    pub fn siblings_of(&self, message: &MessageId) -> crate::tree::Siblings {
        self.siblings
            .iter()
            .find(|(id, _)| id == message)
            .map_or(crate::tree::Siblings::ONLY, |(_, siblings)| *siblings)
    }
}

/// The outcome of an edit: the new message (a sibling of the one edited), where it stands
/// among its siblings, and whether an earlier call with the same client message id made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    pub message: Message,
    pub siblings: crate::tree::Siblings,
    pub replayed: bool,
}

/// The outcome of an append: the stored message, and whether this call stored it or found
/// it already stored by an earlier call with the same client message id.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub message: Message,
    pub replayed: bool,
}

/// Which conversations a listing includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFilter {
    ActiveOnly,
    ArchivedOnly,
    All,
}

/// The order of a listing, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    LastActivity,
    CreatedAt,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque, signed continuation; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {

    #[test]
    fn escaped_lengths_are_what_serde_json_writes_once_and_twice() {
        for text in [
            "plain",
            "quote \" and \\ slash",
            "line\nbreak\ttab",
            "bell \u{7} é ✓",
        ] {
            let once = serde_json::to_string(text).unwrap();
            assert_eq!(escaped_len(text), once.len() - 2, "{text:?}");
            let twice = serde_json::to_string(&once).unwrap();
            // The outer quotes of both encodings, and the escaped inner ones.
            assert_eq!(twice_escaped_len(text), twice.len() - 2 - 4, "{text:?}");
        }
    }

    use super::*;

    #[test]
    fn user_ids_cannot_contain_the_key_delimiter() {
        assert!(UserId::parse("alice#ACTIVE").is_err());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11").is_ok());
    }

    #[test]
    fn derived_titles_keep_the_first_line_and_cut_at_a_word() {
        assert_eq!(
            Title::derived_from("\n  Hello there\nsecond").as_str(),
            "Hello there"
        );
        let long = "word ".repeat(30);
        let title = Title::derived_from(&long);
        assert!(title.as_str().ends_with('…'));
        assert!(title.as_str().chars().count() <= DERIVED_TITLE_CHARS + 1);
        assert!(!title.as_str().contains("wor…"));
    }

    #[test]
    fn tags_are_trimmed_and_deduplicated() {
        let tags = Tags::parse(&[" work ".into(), "work".into(), "ideas".into()]).unwrap();
        assert_eq!(tags.into_vec(), vec!["work", "ideas"]);
        assert!(Tags::parse(&["".into()]).is_err());
        assert!(Tags::parse(&vec!["x".to_string(); 1]).is_ok());
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(Tags::parse(&many).is_err());
    }

    #[test]
    fn oversized_content_is_too_large_not_invalid() {
        let big = "x".repeat(MAX_CONTENT_BYTES + 1);
        let err = NewMessage::parse(Role::User, big, vec![], Metadata::new(), None).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)));
    }
}
