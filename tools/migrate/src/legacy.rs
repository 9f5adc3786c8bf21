//! The old Node/Mongo system's short-term memory, as `mongoexport` writes it: one Extended
//! JSON document per line (canonical or relaxed: `{"$oid": …}`, `{"$date": …}`,
//! `{"$numberLong": …}`), read with the `bson` crate's Extended JSON support.
//!
//! A document is `{_id, userId, role, content, timestamp | createdAt, conversationId?,
//! attachments?, metadata?}`; ids may be ObjectIds or strings. A line that is not such a
//! document is skipped and reported with its line number and `_id` when it has one.

use std::collections::BTreeMap;
use std::io::BufRead;

use bson::{Bson, Document};
use chrono::{DateTime, Utc};
use shared::migration::{derived_conversation_id, derived_message_id, SkippedItem, SourceItem};
use shared::model::{Attachment, Metadata, Role, UserId};

/// What a dump holds: each user's items (or why one was skipped), and the lines that name no
/// user that could be read.
#[derive(Debug, Default)]
pub struct Dump {
    pub users: BTreeMap<UserId, Vec<Result<SourceItem, SkippedItem>>>,
    pub unattributed: Vec<SkippedItem>,
}

impl Dump {
    pub fn read(reader: impl BufRead) -> std::io::Result<Self> {
        let mut dump = Self::default();
        for (index, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(index + 1, &line) {
                Ok((user, item)) => dump.users.entry(user).or_default().push(item),
                Err(skipped) => dump.unattributed.push(skipped),
            }
        }
        Ok(dump)
    }

    pub fn items(&self) -> usize {
        self.users.values().map(Vec::len).sum::<usize>() + self.unattributed.len()
    }
}

/// The document's user and its item, or (when not even the user can be read) why not.
fn parse_line(
    number: usize,
    line: &str,
) -> Result<(UserId, Result<SourceItem, SkippedItem>), SkippedItem> {
    let line_key = format!("line {number}");
    let skipped = |key: &str, reason: String| SkippedItem {
        key: key.to_owned(),
        reason,
    };
    let json: serde_json::Value =
        serde_json::from_str(line).map_err(|e| skipped(&line_key, format!("not JSON: {e}")))?;
    let document = match Bson::try_from(json) {
        Ok(Bson::Document(document)) => document,
        Ok(_) => return Err(skipped(&line_key, "not a document".into())),
        Err(e) => return Err(skipped(&line_key, format!("not Extended JSON: {e}"))),
    };
    let key = match document.get("_id").and_then(id_text) {
        Some(id) => format!("{line_key} (_id {id})"),
        None => line_key,
    };
    let user = document
        .get("userId")
        .and_then(id_text)
        .ok_or_else(|| skipped(&key, "no userId".into()))?;
    let user = UserId::parse(&user).map_err(|e| skipped(&key, format!("userId: {e}")))?;
    let item = item(&user, &document, &key).map_err(|reason| skipped(&key, reason));
    Ok((user, item.and_then(|item| item)))
}

fn item(
    user: &UserId,
    document: &Document,
    key: &str,
) -> Result<Result<SourceItem, SkippedItem>, String> {
    let role = match document.get_str("role") {
        Ok("user") => Role::User,
        Ok("assistant") => Role::Assistant,
        Ok("system") => Role::System,
        Ok(other) => return Err(format!("unknown role {other:?}")),
        Err(_) => return Err("no role".into()),
    };
    let content = document
        .get_str("content")
        .map_err(|_| "no content".to_owned())?
        .to_owned();
    let timestamp = ["timestamp", "createdAt"]
        .iter()
        .find_map(|field| document.get(field).and_then(time))
        .ok_or("no timestamp")?;
    let conversation = document
        .get("conversationId")
        .and_then(id_text)
        .map(|legacy| derived_conversation_id(user, &legacy));
    let attachments = match document.get("attachments") {
        None | Some(Bson::Null) => Vec::new(),
        Some(Bson::Array(values)) => values
            .iter()
            .map(|v| v.as_str().map(|link| Attachment::Link(link.to_owned())))
            .collect::<Option<Vec<_>>>()
            .ok_or("attachments must be strings")?,
        Some(_) => return Err("attachments must be a list".into()),
    };
    let metadata: Metadata = match document.get("metadata") {
        None | Some(Bson::Null) => Metadata::new(),
        Some(Bson::Document(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_relaxed_extjson()))
            .collect(),
        Some(_) => return Err("metadata must be a document".into()),
    };
    // The `_id` names the item for good; a line number only as long as the file is the same.
    let id_source = document
        .get("_id")
        .and_then(id_text)
        .unwrap_or_else(|| key.to_owned());
    Ok(SourceItem::new(
        key.to_owned(),
        derived_message_id(user, &id_source),
        role,
        content,
        timestamp,
        conversation,
        attachments,
        metadata,
    ))
}

/// An id as text: an ObjectId's hex, or a non-empty string.
fn id_text(value: &Bson) -> Option<String> {
    match value {
        Bson::ObjectId(id) => Some(id.to_hex()),
        Bson::String(s) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn time(value: &Bson) -> Option<DateTime<Utc>> {
    match value {
        Bson::DateTime(t) => DateTime::from_timestamp_millis(t.timestamp_millis()),
        Bson::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<(UserId, Result<SourceItem, SkippedItem>), SkippedItem> {
        parse_line(1, line)
    }

    #[test]
    fn canonical_and_relaxed_extended_json_read_the_same() {
        let canonical = r#"{"_id":{"$oid":"65f1c0a2b3c4d5e6f7a8b9c0"},"userId":{"$oid":"65f1c0a2b3c4d5e6f7a80001"},"role":"user","content":"hi","timestamp":{"$date":{"$numberLong":"1710324000000"}}}"#;
        let relaxed = r#"{"_id":{"$oid":"65f1c0a2b3c4d5e6f7a8b9c0"},"userId":{"$oid":"65f1c0a2b3c4d5e6f7a80001"},"role":"user","content":"hi","timestamp":{"$date":"2024-03-13T10:00:00Z"}}"#;
        let (user_a, a) = one(canonical).unwrap();
        let (user_b, b) = one(relaxed).unwrap();
        assert_eq!(user_a, user_b);
        assert_eq!(user_a.as_str(), "65f1c0a2b3c4d5e6f7a80001");
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.message_id, b.message_id);
        assert_eq!(a.timestamp.to_rfc3339(), "2024-03-13T10:00:00+00:00");
    }

    #[test]
    fn metadata_keeps_its_values_as_plain_json() {
        let line = r#"{"_id":{"$oid":"65f1c0a2b3c4d5e6f7a8b9c1"},"userId":"u1","role":"assistant","content":"ok","createdAt":{"$date":"2024-03-13T10:00:00Z"},"metadata":{"tokens":{"$numberInt":"42"},"mood":"calm"},"attachments":["a.png"]}"#;
        let (_, item) = one(line).unwrap();
        let item = item.unwrap();
        assert_eq!(item.metadata["tokens"], serde_json::json!(42));
        assert_eq!(item.metadata["mood"], serde_json::json!("calm"));
        assert_eq!(item.attachments, [Attachment::Link("a.png".into())]);
    }

    #[test]
    fn a_bad_document_is_skipped_under_its_user_with_its_id() {
        let (_, item) =
            one(r#"{"_id":{"$oid":"65f1c0a2b3c4d5e6f7a8b9c2"},"userId":"u1","role":"wizard","content":"x","timestamp":{"$date":"2024-03-13T10:00:00Z"}}"#)
                .unwrap();
        let skipped = item.unwrap_err();
        assert_eq!(skipped.key, "line 1 (_id 65f1c0a2b3c4d5e6f7a8b9c2)");
        assert!(skipped.reason.contains("wizard"));
        assert_eq!(one("{not json").unwrap_err().key, "line 1");
        assert!(one(r#"{"role":"user"}"#)
            .unwrap_err()
            .reason
            .contains("userId"));
    }
}
