//! Property tests: request bodies of any shape, valid JSON or not, are refused or accepted by
//! the same parsing the handlers run, and never panic it. Cases per property: `PROPTEST_CASES`
//! (the test command runs 256; raise it locally for a longer search).

use proptest::prelude::*;
use serde_json::Value;

use super::request::json_bytes;
use super::wire::{
    AddMessageBody, ArchiveBody, AttachmentBody, CreateConversationBody, MigrateBody, RenameBody,
    TagsBody, UploadBody,
};
use crate::account_export::{ExportRequest, ExportRequestBody};
use crate::attachments::UploadRequest;
use crate::model::{Attachment, NewMessage, Tags, Title};

/// Any JSON value, nested a few levels, with the keys the bodies use among random ones.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("role".to_owned()),
        Just("content".to_owned()),
        Just("title".to_owned()),
        Just("tags".to_owned()),
        Just("attachments".to_owned()),
        Just("metadata".to_owned()),
        Just("clientMessageId".to_owned()),
        Just("clientTimestamp".to_owned()),
        Just("attachmentId".to_owned()),
        Just("formats".to_owned()),
        Just("clientExportId".to_owned()),
        Just("prompt".to_owned()),
        Just("archived".to_owned()),
        Just("fileName".to_owned()),
        Just("contentType".to_owned()),
        Just("size".to_owned()),
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        prop_oneof![
            Just("user".to_owned()),
            Just("assistant".to_owned()),
            Just("json".to_owned()),
            Just("image/png".to_owned()),
            Just("2026-11-30T09:15:30.250Z".to_owned()),
            Just("2026-11-30 09:15:30+01:00".to_owned()),
            "\\PC{0,40}",
            "[\u{0}-\u{7f}]{0,8}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Every body the API reads, through its type and then the domain's checks.
fn parse_every_body(bytes: &[u8]) {
    if let Ok(Some(body)) = json_bytes::<AddMessageBody>(bytes) {
        let links = body
            .attachments
            .into_iter()
            .filter_map(|a| match a {
                AttachmentBody::Link(link) => Some(Attachment::Link(link)),
                AttachmentBody::Upload(_) => None,
            })
            .collect();
        let _ = NewMessage::parse(
            body.role,
            body.content,
            links,
            body.metadata,
            body.client_message_id.as_deref(),
        );
        let _ = super::wire::client_timestamp(body.client_timestamp.as_deref());
    }
    if let Ok(Some(body)) = json_bytes::<CreateConversationBody>(bytes) {
        let _ = body.title.as_deref().map(Title::parse);
        let _ = body.tags.as_deref().map(Tags::parse);
    }
    if let Ok(Some(body)) = json_bytes::<RenameBody>(bytes) {
        let _ = Title::parse(&body.title);
    }
    if let Ok(Some(body)) = json_bytes::<TagsBody>(bytes) {
        let _ = Tags::parse(&body.tags);
    }
    if let Ok(Some(body)) = json_bytes::<UploadBody>(bytes) {
        let _ = UploadRequest::parse(&body.file_name, &body.content_type, body.size, 1 << 20);
    }
    if let Ok(Some(body)) = json_bytes::<ExportRequestBody>(bytes) {
        let _ = ExportRequest::parse(body);
    }
    let _ = json_bytes::<ArchiveBody>(bytes);
    let _ = json_bytes::<MigrateBody>(bytes);
}

proptest! {
    #[test]
    fn json_bodies_of_any_shape_never_panic_the_parsers(value in json_value()) {
        parse_every_body(value.to_string().as_bytes());
    }

    #[test]
    fn bytes_that_are_not_json_never_panic_the_parsers(
        bytes in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        parse_every_body(&bytes);
    }
}
