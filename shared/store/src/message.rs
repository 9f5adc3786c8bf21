//! A message as the table keeps it, and how a page of them is read back fast.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::de::value::{Error as ValueError, StringDeserializer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::holds_unknown_type;
use domain::error::Error;
use domain::keys;
use domain::model::{
    message_response_bytes, Attachment, Message, MessageId, Metadata, Role, TokenCount, UserId,
};

type Item = HashMap<String, AttributeValue>;

/// A message as stored. Its conversation is only in its partition key; its time and id are in
/// its sort key when it is keyed by time, else in `id` and `at` (kept by slot,
/// `keys::Slot`); no attachments or metadata are written when it has none (issue 18: items
/// written before also hold `conversationId`, `entity` and, keyed by time, `messageId` and
/// `timestamp`, and empty `attachments` and `metadata`, which reads ignore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageItem {
    #[serde(rename = "PK")]
    pub(super) pk: keys::ConversationPartition,
    #[serde(rename = "SK")]
    pub(super) sk: keys::MessageSortKey,
    /// Its id and time when its key does not hold them (a slot), as `id` (the UUID's 16
    /// bytes) and `at` (microseconds since the epoch): 29 bytes, where a time key's takes 48
    /// more than a slot's. Written by `Store::message_to_item`, read only where the key holds
    /// neither (`MessageItem::id`).
    #[serde(
        rename = "id",
        default,
        skip_serializing,
        deserialize_with = "stored_id"
    )]
    pub(super) message_id: Option<MessageId>,
    #[serde(
        rename = "at",
        default,
        skip_serializing,
        deserialize_with = "stored_time"
    )]
    pub(super) timestamp: Option<DateTime<Utc>>,
    pub(super) role: Role,
    /// Written deflated when the store compresses text (`deflated`).
    #[serde(deserialize_with = "super::deflated::text")]
    pub(super) content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub(super) metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_message_id: Option<String>,
    /// When the user wrote it on their device, if the app said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_timestamp: Option<DateTime<Utc>>,
    /// The S3 key of the content, when it is too large for the item (then `content` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) content_object: Option<String>,
    /// The size of the content kept in S3, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) content_bytes: Option<u64>,
    /// The content's length in tokens, when its writer counted it (`encoding:tokens`).
    #[serde(rename = "tokens", default, skip_serializing_if = "Option::is_none")]
    pub(super) token_count: Option<TokenCount>,
}

impl MessageItem {
    pub fn new(user: &UserId, message: &Message) -> Self {
        Self {
            pk: keys::ConversationPartition::new(user, message.conversation_id),
            sk: match message.slot {
                Some(slot) => keys::MessageSortKey::at_slot(slot),
                None => keys::MessageSortKey::new(message.timestamp, message.id),
            },
            message_id: message.slot.map(|_| message.id),
            timestamp: message.slot.map(|_| message.timestamp),
            role: message.role,
            content: message.content.clone(),
            attachments: message.attachments.clone(),
            metadata: message.metadata.clone(),
            client_message_id: message.client_message_id.clone(),
            client_timestamp: message.client_timestamp,
            content_object: None,
            content_bytes: None,
            token_count: message.token_count.clone(),
        }
    }

    /// The bytes this message takes in a response; for content still in S3, its stored size
    /// stands in for it until it is read (then the page is measured again).
    pub(super) fn response_bytes(&self) -> usize {
        let measured = message_response_bytes(
            &self.content,
            &self.metadata,
            &self.attachments,
            self.client_message_id.as_deref(),
        );
        match self.content_bytes {
            Some(bytes) if self.content_object.is_some() => {
                measured.saturating_add(usize::try_from(bytes).unwrap_or(usize::MAX))
            }
            _ => measured,
        }
    }

    /// Its id and time: from its key, or (kept by slot) from its attributes, which every
    /// reader requires of such an item (`MessageItem::checked`).
    fn id_and_time(&self) -> (MessageId, DateTime<Utc>) {
        match self.sk.place() {
            keys::MessagePlace::Timed { timestamp, message } => (message, timestamp),
            keys::MessagePlace::Slot(_) => (
                // Never absent in an item read (`checked`) or made (`new`).
                self.message_id
                    .unwrap_or_else(|| MessageId::from(uuid::Uuid::nil())),
                self.timestamp.unwrap_or_default(),
            ),
        }
    }

    pub fn id(&self) -> MessageId {
        self.id_and_time().0
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        self.id_and_time().1
    }

    pub fn slot(&self) -> Option<keys::Slot> {
        self.sk.slot()
    }

    pub fn sort_key(&self) -> &str {
        self.sk.as_str()
    }

    /// The item as read, if it is whole: one kept by slot must hold its id and time.
    pub fn checked(self) -> Result<Self, Error> {
        if self.sk.slot().is_some() && (self.message_id.is_none() || self.timestamp.is_none()) {
            return Err(decode_error(
                "id",
                "a message kept by slot without its id and time",
            ));
        }
        Ok(self)
    }

    pub fn into_message(self) -> Message {
        let (id, timestamp) = self.id_and_time();
        Message {
            id,
            slot: self.sk.slot(),
            conversation_id: self.pk.conversation(),
            timestamp,
            role: self.role,
            content: self.content,
            attachments: self.attachments,
            metadata: self.metadata,
            client_message_id: self.client_message_id,
            client_timestamp: self.client_timestamp,
            token_count: self.token_count,
        }
    }
}

impl super::Store {
    /// A message's item as this store writes it (`ItemShape`).
    pub(super) fn message_to_item(&self, message: &MessageItem) -> Result<Item, Error> {
        let mut item = super::to_item(message)?;
        if let Some(bytes) = self
            .compress_text
            .then(|| super::deflated::deflated(&message.content))
            .flatten()
        {
            item.insert("content".to_owned(), AttributeValue::B(bytes.into()));
        }
        let s = |text: String| AttributeValue::S(text);
        if message.slot().is_some() {
            insert_id_and_time(message, &mut item);
        } else if self.shape == super::ItemShape::Full {
            // What the releases before issue 18 read of a message keyed by time.
            item.insert("messageId".to_owned(), s(message.id().to_string()));
            item.insert(
                "timestamp".to_owned(),
                s(keys::sortable_time(message.timestamp())),
            );
        }
        if self.shape == super::ItemShape::Full {
            item.insert(
                "conversationId".to_owned(),
                s(message.pk.conversation().to_string()),
            );
            item.insert("entity".to_owned(), s("Message".to_owned()));
        }
        Ok(item)
    }
}

impl MessageItem {
    /// Reads a message item attribute by attribute, moving each string out of the item, where
    /// serde_dynamo's `from_item` first copies the whole item into a map of its own: a page of
    /// messages is the largest read on a request's path. The nested values (attachments and
    /// metadata, usually empty) and any attribute not of the shape the store writes go through
    /// serde_dynamo. Every item `from_item` reads, it reads to the same value (tested, for
    /// message items with any attribute changed or removed too).
    pub fn from_attributes(item: Item) -> Result<Self, Error> {
        // One pass over the attributes, each value moved out as it comes: no lookups.
        let mut read = ReadAttributes::default();
        for (name, value) in item {
            match name.as_str() {
                "PK" => read.pk = Some(value),
                "SK" => read.sk = Some(value),
                "id" => read.message_id = Some(value),
                "at" => read.timestamp = Some(value),
                "role" => read.role = Some(value),
                "content" => read.content = Some(value),
                "attachments" => read.attachments = Some(value),
                "metadata" => read.metadata = Some(value),
                "clientMessageId" => read.client_message_id = Some(value),
                "clientTimestamp" => read.client_timestamp = Some(value),
                "contentObject" => read.content_object = Some(value),
                "contentBytes" => read.content_bytes = Some(value),
                "tokens" => read.tokens = Some(value),
                _ => {}
            }
        }
        Self {
            pk: parsed("PK", read.pk)?,
            sk: parsed("SK", read.sk)?,
            message_id: match read.message_id {
                Some(AttributeValue::B(bytes)) => Some(id_of_bytes(bytes.as_ref())?),
                None | Some(AttributeValue::Null(_)) => None,
                Some(_) => return Err(decode_error("id", "not binary")),
            },
            timestamp: match read.timestamp {
                Some(AttributeValue::N(micros)) => Some(time_of_micros(
                    micros.parse().map_err(|e| decode_error("at", e))?,
                )?),
                None | Some(AttributeValue::Null(_)) => None,
                Some(_) => return Err(decode_error("at", "not a number")),
            },
            role: parsed("role", read.role)?,
            content: match read.content {
                Some(AttributeValue::B(bytes)) => super::deflated::inflated(bytes.as_ref())
                    .map_err(|e| decode_error("content", e))?,
                other => parsed("content", other)?,
            },
            attachments: nested("attachments", read.attachments)?.unwrap_or_default(),
            metadata: nested("metadata", read.metadata)?.unwrap_or_default(),
            client_message_id: optional("clientMessageId", read.client_message_id)?,
            client_timestamp: optional("clientTimestamp", read.client_timestamp)?,
            content_object: optional("contentObject", read.content_object)?,
            content_bytes: match read.content_bytes {
                None | Some(AttributeValue::Null(_)) => None,
                Some(value) => Some(as_serde_dynamo_reads("contentBytes", value)?),
            },
            token_count: optional("tokens", read.tokens)?,
        }
        .checked()
    }
}

/// The attributes of a message item, as found.
#[derive(Default)]
struct ReadAttributes {
    pk: Option<AttributeValue>,
    sk: Option<AttributeValue>,
    message_id: Option<AttributeValue>,
    timestamp: Option<AttributeValue>,
    role: Option<AttributeValue>,
    content: Option<AttributeValue>,
    attachments: Option<AttributeValue>,
    metadata: Option<AttributeValue>,
    client_message_id: Option<AttributeValue>,
    client_timestamp: Option<AttributeValue>,
    content_object: Option<AttributeValue>,
    content_bytes: Option<AttributeValue>,
    tokens: Option<AttributeValue>,
}

/// The `id` and `at` of a message kept by slot.
fn insert_id_and_time(message: &MessageItem, item: &mut Item) {
    item.insert(
        "id".to_owned(),
        AttributeValue::B(message.id().as_uuid().as_bytes().to_vec().into()),
    );
    item.insert(
        "at".to_owned(),
        AttributeValue::N(message.timestamp().timestamp_micros().to_string()),
    );
}

fn id_of_bytes(bytes: &[u8]) -> Result<MessageId, Error> {
    uuid::Uuid::from_slice(bytes)
        .map(MessageId::from)
        .map_err(|e| decode_error("id", e))
}

fn time_of_micros(micros: i64) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| decode_error("at", "out of range"))
}

/// serde's reading of `id`: a UUID as its 16 bytes.
fn stored_id<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<MessageId>, D::Error> {
    let bytes: Vec<u8> = serde_bytes_like(deserializer)?;
    id_of_bytes(&bytes)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// serde's reading of `at`: microseconds since the epoch.
fn stored_time<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let micros = i64::deserialize(deserializer)?;
    time_of_micros(micros)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A binary attribute's bytes, as serde_dynamo hands them to a visitor.
fn serde_bytes_like<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<u8>, D::Error> {
    struct Bytes;
    impl<'de> serde::de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::new();
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
    deserializer.deserialize_byte_buf(Bytes)
}

fn decode_error(name: &str, error: impl std::fmt::Display) -> Error {
    Error::internal("decode item", format!("{name}: {error}"))
}

/// An attribute read as `T` (a string, an id, the role, a token count): a string attribute
/// moved straight into `T`'s deserializer; any other shape as serde_dynamo reads it.
fn parsed<T: DeserializeOwned>(name: &str, value: Option<AttributeValue>) -> Result<T, Error> {
    match value {
        Some(AttributeValue::S(value)) => {
            T::deserialize(StringDeserializer::<ValueError>::new(value))
                .map_err(|e| decode_error(name, e))
        }
        Some(other) => as_serde_dynamo_reads(name, other),
        None => Err(decode_error(name, "missing")),
    }
}

fn optional<T: DeserializeOwned>(
    name: &str,
    value: Option<AttributeValue>,
) -> Result<Option<T>, Error> {
    match value {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        value => parsed(name, value).map(Some),
    }
}

/// What serde_dynamo makes of `value` as a `T`; a type this SDK does not know is refused
/// first (serde_dynamo panics on one).
fn as_serde_dynamo_reads<T: DeserializeOwned>(
    name: &str,
    value: AttributeValue,
) -> Result<T, Error> {
    if holds_unknown_type(&value) {
        return Err(decode_error(name, "a type this SDK does not know"));
    }
    serde_dynamo::from_attribute_value(value).map_err(|e| decode_error(name, e))
}

fn nested<T: DeserializeOwned + Default>(
    name: &str,
    value: Option<AttributeValue>,
) -> Result<Option<T>, Error> {
    match value {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        // Most messages have neither attachments nor metadata.
        Some(AttributeValue::L(list)) if list.is_empty() => Ok(Some(T::default())),
        Some(AttributeValue::M(map)) if map.is_empty() => Ok(Some(T::default())),
        Some(value) => as_serde_dynamo_reads(name, value).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::{from_item, to_item};
    use domain::model::{AttachmentId, ConversationId, StoredFile};

    fn message(content: &str) -> Message {
        Message {
            id: MessageId::generate(),
            conversation_id: ConversationId::generate(),
            role: Role::Assistant,
            content: content.to_owned(),
            timestamp: Utc.with_ymd_and_hms(2026, 12, 3, 9, 30, 0).unwrap(),
            attachments: Vec::new(),
            metadata: Metadata::new(),
            client_message_id: None,
            client_timestamp: None,
            token_count: None,
            slot: None,
        }
    }

    fn read_both_ways(item: &MessageItem) -> (MessageItem, MessageItem) {
        let stored = to_item(item).expect("an item");
        (
            from_item::<MessageItem>(stored.clone()).expect("serde_dynamo reads it"),
            MessageItem::from_attributes(stored).expect("read attribute by attribute"),
        )
    }

    #[test]
    fn a_plain_message_reads_as_serde_dynamo_reads_it() {
        let user = UserId::parse("alice").unwrap();
        let (expected, read) = read_both_ways(&MessageItem::new(&user, &message("hello")));
        assert_eq!(read, expected);
    }

    #[test]
    fn a_message_kept_by_slot_reads_its_id_and_time_both_ways_and_not_without_them() {
        let user = UserId::parse("alice").unwrap();
        let said = Message {
            slot: Some(keys::Slot::trunk(7)),
            ..message("at a slot")
        };
        let item = MessageItem::new(&user, &said);
        let mut stored = to_item(&item).expect("an item");
        insert_id_and_time(&item, &mut stored);
        let by_serde = from_item::<MessageItem>(stored.clone()).expect("serde_dynamo reads it");
        let read =
            MessageItem::from_attributes(stored.clone()).expect("read attribute by attribute");
        assert_eq!(read, by_serde);
        assert_eq!(read.into_message(), said);
        for missing in ["id", "at"] {
            let mut partial = stored.clone();
            partial.remove(missing);
            assert!(
                MessageItem::from_attributes(partial).is_err(),
                "without {missing}"
            );
        }
    }

    #[test]
    fn every_optional_and_nested_field_reads_as_serde_dynamo_reads_it() {
        let user = UserId::parse("alice").unwrap();
        let mut full = message("a reply with everything");
        full.attachments = vec![
            Attachment::Link("https://example.com/a.png".into()),
            Attachment::File(StoredFile {
                attachment_id: AttachmentId::generate(),
                file_name: "notes.pdf".into(),
                content_type: "application/pdf".into(),
                size: 12_345,
            }),
        ];
        full.metadata = Metadata::from([
            ("model".to_owned(), "numina-large".into()),
            (
                "nested".to_owned(),
                serde_json::json!({"a": [1, 2.5, null, {"b": true}], "c": "d"}),
            ),
        ]);
        full.client_message_id = Some("client-7".into());
        full.client_timestamp = Some(Utc.with_ymd_and_hms(2026, 12, 2, 23, 59, 1).unwrap());
        full.token_count = Some(TokenCount::new("o200k_base", 153));
        let mut item = MessageItem::new(&user, &full);
        item.content_object = Some("content/alice/x".into());
        item.content_bytes = Some(40_000);
        let (expected, read) = read_both_ways(&item);
        assert_eq!(read, expected);
        assert_eq!(read.into_message(), full);
    }

    #[test]
    fn a_malformed_item_is_an_error_not_a_panic() {
        let user = UserId::parse("alice").unwrap();
        let mut stored = to_item(&MessageItem::new(&user, &message("hi"))).unwrap();
        stored.insert(
            "SK".into(),
            AttributeValue::S("MESSAGE#not a time#x".into()),
        );
        assert!(MessageItem::from_attributes(stored.clone()).is_err());
        stored.remove("content");
        assert!(MessageItem::from_attributes(stored).is_err());
    }
}
