//! Property tests: stream records' images of any shape (what the stream functions decode) are
//! refused or read, never a panic. Cases per property: `PROPTEST_CASES`.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use proptest::prelude::*;

use super::{from_item, ConversationItem, ExportJob, MessageItem, Store};

/// Any attribute value, nested a few levels; numbers are any text (DynamoDB sends them as
/// strings, and a decoder must not trust them).
fn attribute() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        "\\PC{0,24}".prop_map(AttributeValue::S),
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "\\PC{0,12}",
            Just("1e400".to_owned()),
        ]
        .prop_map(AttributeValue::N),
        any::<bool>().prop_map(AttributeValue::Bool),
        Just(AttributeValue::Null(true)),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| AttributeValue::B(Blob::new(b))),
        prop::collection::vec("\\PC{0,8}", 0..4).prop_map(AttributeValue::Ss),
        prop::collection::vec(any::<i32>().prop_map(|n| n.to_string()), 0..4)
            .prop_map(AttributeValue::Ns),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(AttributeValue::L),
            prop::collection::hash_map("\\PC{0,10}", inner, 0..6).prop_map(AttributeValue::M),
        ]
    })
}

/// An item with the attribute names the items use (and some others), of any values.
fn image() -> impl Strategy<Value = HashMap<String, AttributeValue>> {
    let name = prop_oneof![
        Just("PK"),
        Just("SK"),
        Just("entity"),
        Just("owner"),
        Just("ownerState"),
        Just("userId"),
        Just("conversationId"),
        Just("messageId"),
        Just("exportId"),
        Just("status"),
        Just("formats"),
        Just("chunk"),
        Just("uploads"),
        Just("messageCount"),
        Just("tip"),
        Just("id"),
        Just("at"),
        Just("summarizedThrough"),
        Just("createdAt"),
        Just("lastActivity"),
        Just("updatedAt"),
        Just("timestamp"),
        Just("role"),
        Just("content"),
        Just("metadata"),
        Just("attachments"),
        Just("tags"),
        Just("isArchived"),
        Just("expiresAt"),
        Just("cursor"),
    ]
    .prop_map(str::to_owned);
    prop::collection::hash_map(prop_oneof![name, "\\PC{0,10}"], attribute(), 0..24)
}

/// A message item as the store writes it, from any content (short, or long enough to be kept
/// deflated), ids, attachments and counts, under a time key or a slot.
fn message_item() -> impl Strategy<Value = HashMap<String, AttributeValue>> {
    (
        any::<bool>(),
        prop_oneof!["\\PC{0,40}", "(\\PC{1,8} ){20,60}"],
        any::<bool>(),
        prop::option::of("\\PC{1,12}"),
        prop::option::of(0u64..5_000_000),
        prop::option::of(0usize..100_000),
        any::<i64>(),
        prop::option::of(any::<i64>()),
        prop::option::of(1..=domain::keys::Slot::MAX_NUMBER),
    )
        .prop_map(
            |(
                assistant,
                content,
                deflate,
                client_id,
                offloaded,
                tokens,
                seconds,
                written,
                slot,
            )| {
                use domain::model::{
                    Attachment, Message, MessageId, Metadata, Role, TokenCount, UserId,
                };
                let message = Message {
                    id: MessageId::generate(),
                    conversation_id: domain::model::ConversationId::generate(),
                    role: if assistant {
                        Role::Assistant
                    } else {
                        Role::User
                    },
                    content,
                    timestamp: chrono::DateTime::from_timestamp(
                        seconds.rem_euclid(4_000_000_000),
                        0,
                    )
                    .unwrap_or_default(),
                    attachments: vec![Attachment::Link("https://example.com/x".into())],
                    metadata: Metadata::from([("k".to_owned(), serde_json::json!([1, "two"]))]),
                    client_message_id: client_id,
                    client_timestamp: written.and_then(|millis| {
                        chrono::DateTime::from_timestamp_millis(millis.rem_euclid(1 << 45))
                    }),
                    token_count: tokens.map(|t| TokenCount::new("o200k_base", t)),
                    // Kept by slot: its id and time in `id` and `at`.
                    slot: slot.map(domain::keys::Slot::trunk),
                };
                let mut item = MessageItem::new(&UserId::parse("alice").unwrap(), &message);
                if let Some(bytes) = offloaded {
                    item.content_object = Some("content/alice/x".into());
                    item.content_bytes = Some(bytes);
                }
                let mut item = crate::to_item(&item).expect("an item");
                // As the store writes it with `COMPRESS_TEXT` on, or off.
                item.insert(
                    "content".to_owned(),
                    crate::deflated::text_attribute(&message.content, deflate),
                );
                item
            },
        )
}

/// A message item with a few attributes replaced by values of any shape, or removed.
fn changed_message_item() -> impl Strategy<Value = HashMap<String, AttributeValue>> {
    let name = prop_oneof![
        Just("PK"),
        Just("SK"),
        Just("entity"),
        Just("messageId"),
        Just("id"),
        Just("at"),
        Just("conversationId"),
        Just("role"),
        Just("content"),
        Just("timestamp"),
        Just("attachments"),
        Just("metadata"),
        Just("clientMessageId"),
        Just("clientTimestamp"),
        Just("contentObject"),
        Just("contentBytes"),
        Just("tokens"),
    ];
    (
        message_item(),
        prop::collection::vec((name, prop::option::of(attribute())), 0..3),
    )
        .prop_map(|(mut item, changes)| {
            for (name, value) in changes {
                match value {
                    Some(value) => item.insert(name.to_owned(), value),
                    None => item.remove(name),
                };
            }
            item
        })
}

proptest! {
    #[test]
    fn a_message_item_reads_attribute_by_attribute_as_serde_dynamo_reads_it(
        item in changed_message_item()
    ) {
        // serde_dynamo reads field by field; the rule across fields (an item kept by slot holds
        // its id and time) is `checked`'s, which the attribute reader applies too.
        let read_by_serde_dynamo = from_item::<MessageItem>(item.clone()).and_then(MessageItem::checked);
        let read_by_attribute = MessageItem::from_attributes(item);
        if let Ok(expected) = read_by_serde_dynamo {
            prop_assert_eq!(read_by_attribute.ok(), Some(expected));
        }
    }


    #[test]
    fn stream_images_of_any_shape_never_panic_the_decoders(item in image()) {
        let _ = Store::conversation_of_image(item.clone());
        let _ = from_item::<ConversationItem>(item.clone());
        // serde_dynamo reads field by field; the rule across fields (an item kept by slot holds
        // its id and time) is `checked`'s, which the attribute reader applies too.
        let read_by_serde_dynamo = from_item::<MessageItem>(item.clone()).and_then(MessageItem::checked);
        let read_by_attribute = MessageItem::from_attributes(item.clone());
        if let Ok(expected) = read_by_serde_dynamo {
            prop_assert_eq!(read_by_attribute.ok(), Some(expected));
        }
        let _ = from_item::<ExportJob>(item.clone());
        // The export runner reads its records' images through serde_dynamo's own item type.
        let streamed: serde_dynamo::Item = item.into();
        let _ = serde_dynamo::from_item::<_, ExportJob>(streamed);
    }
}
