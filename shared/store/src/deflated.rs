//! Text kept deflated in its item (issue 18). Message content and conversation summaries are
//! most of what a message and a summarized conversation's item weigh, and DynamoDB bills
//! writes by the kilobyte, reads by 4 KB and storage by the byte: with `COMPRESS_TEXT` on, a
//! text that raw DEFLATE makes smaller is written as a binary attribute of the same name (a
//! 4 KB reply is then about 2 KB: 2 write units instead of 5, twice that in the append's
//! transaction). Readers take either form, so items of both kinds read the same.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use flate2::write::DeflateEncoder;
use flate2::{Compression, Decompress, FlushDecompress, Status};
use serde::de::{self, Deserializer, Visitor};

/// Below this many bytes, deflating rarely makes a text smaller and never saves a unit.
const WORTH_TRYING_FROM: usize = 128;

/// No text this store writes inflates to more than this: a larger result is refused as
/// corrupt rather than read into memory (the largest text kept in an item is 32 KiB).
const MAX_INFLATED_BYTES: u64 = 1024 * 1024;

/// `text` as raw DEFLATE, when that is smaller than the text.
pub(crate) fn deflated(text: &str) -> Option<Vec<u8>> {
    // A text longer than any reader inflates stays text (DynamoDB's item limit then applies
    // as it always did).
    if text.len() < WORTH_TRYING_FROM || text.len() as u64 > MAX_INFLATED_BYTES {
        return None;
    }
    let mut encoder =
        DeflateEncoder::new(Vec::with_capacity(text.len() / 2), Compression::default());
    encoder.write_all(text.as_bytes()).ok()?;
    let bytes = encoder.finish().ok()?;
    (bytes.len() < text.len()).then_some(bytes)
}

/// The attribute `text` is written as: binary when `compress` and deflating makes it
/// smaller, else the text.
pub fn text_attribute(text: &str, compress: bool) -> AttributeValue {
    match compress.then(|| deflated(text)).flatten() {
        Some(bytes) => AttributeValue::B(Blob::new(bytes)),
        None => AttributeValue::S(text.to_owned()),
    }
}

/// The text a deflated attribute holds. A page of messages inflates one after another, so
/// each thread keeps one inflater (about 40 KB of state) and resets it, rather than making
/// and zeroing one per message.
pub fn inflated(bytes: &[u8]) -> Result<String, String> {
    thread_local! {
        static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    }
    INFLATER
        .try_with(|inflater| inflate_with(&mut inflater.borrow_mut(), bytes))
        // Only while the thread is being torn down: an inflater of its own.
        .unwrap_or_else(|_| inflate_with(&mut Decompress::new(false), bytes))
}

fn inflate_with(inflater: &mut Decompress, bytes: &[u8]) -> Result<String, String> {
    inflater.reset(false);
    let first = bytes
        .len()
        .saturating_mul(3)
        .clamp(64, MAX_INFLATED_BYTES as usize + 1);
    let mut out = Vec::with_capacity(first);
    loop {
        let (read, written) = (inflater.total_in(), out.len());
        let rest = bytes.get(read as usize..).unwrap_or_default();
        let status = inflater
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .map_err(|e| format!("deflated text does not inflate: {e}"))?;
        if out.len() as u64 > MAX_INFLATED_BYTES {
            return Err(format!(
                "deflated text inflates past {MAX_INFLATED_BYTES} bytes"
            ));
        }
        if status == Status::StreamEnd {
            // The stores write nothing after the last block: more is a damaged item.
            if inflater.total_in() != bytes.len() as u64 {
                return Err("deflated text has bytes after its last block".to_owned());
            }
            break;
        }
        let progressed = inflater.total_in() != read || out.len() != written;
        if out.len() == out.capacity() {
            out.reserve(out.len());
        } else if !progressed {
            return Err("deflated text ends before its last block".to_owned());
        }
    }
    if out.capacity() > 2 * out.len() {
        out.shrink_to_fit();
    }
    String::from_utf8(out).map_err(|e| format!("deflated text is not UTF-8: {e}"))
}

/// For `#[serde(deserialize_with)]`: a text attribute as written, or deflated.
pub(crate) fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(TextVisitor)
}

/// For `#[serde(deserialize_with)]` on an optional field (with `default`).
pub(crate) fn optional_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_any(OptionalTextVisitor)
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("text, or deflated text")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        Ok(text.to_owned())
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<String, E> {
        Ok(text)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<String, E> {
        inflated(bytes).map_err(E::custom)
    }
}

/// `TextVisitor`'s text, or none for a null.
struct OptionalTextVisitor;

impl<'de> Visitor<'de> for OptionalTextVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("text, deflated text, or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        TextVisitor.visit_str(text).map(Some)
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        TextVisitor.visit_string(text).map(Some)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        TextVisitor.visit_bytes(bytes).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(words: usize) -> String {
        let vocabulary = [
            "the", "model", "answers", "with", "care", "and", "detail", "about",
        ];
        (0..words)
            .map(|n| vocabulary[(n * 7 + n / 3) % vocabulary.len()])
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_long_text_is_written_deflated_and_reads_back_as_it_was() {
        let text = reply(600);
        let AttributeValue::B(bytes) = text_attribute(&text, true) else {
            panic!("deflated");
        };
        assert!(bytes.as_ref().len() < text.len() / 2);
        assert_eq!(inflated(bytes.as_ref()).unwrap(), text);
        let read: String = serde_dynamo::from_attribute_value(AttributeValue::B(bytes.clone()))
            .map(|wrapped: Wrapped| wrapped.0)
            .unwrap();
        assert_eq!(read, text);
    }

    #[test]
    fn short_text_and_text_written_with_the_switch_off_stay_text() {
        let long = reply(600);
        assert_eq!(text_attribute("hi", true), AttributeValue::S("hi".into()));
        assert_eq!(
            text_attribute(&long, false),
            AttributeValue::S(long.clone())
        );
    }

    #[test]
    fn a_text_longer_than_readers_inflate_is_written_as_text() {
        let huge = "a".repeat(MAX_INFLATED_BYTES as usize + 1);
        assert!(matches!(text_attribute(&huge, true), AttributeValue::S(_)));
    }

    #[test]
    fn an_optional_text_reads_from_text_deflated_text_null_or_nothing() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Item {
            #[serde(default, deserialize_with = "optional_text")]
            summary: Option<String>,
        }
        let read = |value: Option<AttributeValue>| -> Option<String> {
            let item: std::collections::HashMap<String, AttributeValue> = value
                .map(|v| ("summary".to_owned(), v))
                .into_iter()
                .collect();
            serde_dynamo::from_item::<_, Item>(item).unwrap().summary
        };
        let long = reply(300);
        assert_eq!(read(Some(text_attribute(&long, true))), Some(long.clone()));
        assert_eq!(
            read(Some(AttributeValue::S("short".into()))),
            Some("short".into())
        );
        assert_eq!(read(Some(AttributeValue::Null(true))), None);
        assert_eq!(read(None), None);
    }

    #[test]
    fn bytes_that_are_not_deflated_text_are_an_error() {
        assert!(inflated(b"not deflate at all").is_err());
        let invalid_utf8 = {
            let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
            encoder.write_all(&[0xff, 0xfe, 0xfd]).unwrap();
            encoder.finish().unwrap()
        };
        assert!(inflated(&invalid_utf8).is_err());
    }

    #[test]
    fn bytes_after_the_last_block_are_an_error() {
        let text = reply(600);
        let AttributeValue::B(bytes) = text_attribute(&text, true) else {
            panic!("deflated");
        };
        let mut longer = bytes.as_ref().to_vec();
        longer.extend_from_slice(b"junk");
        assert!(inflated(&longer)
            .unwrap_err()
            .contains("after its last block"));
    }

    proptest::proptest! {
        #[test]
        fn any_text_deflated_reads_back_as_it_was(text in "(\\PC{0,12} ){0,80}") {
            if let AttributeValue::B(bytes) = text_attribute(&text, true) {
                proptest::prop_assert_eq!(inflated(bytes.as_ref()), Ok(text));
            }
        }
    }

    #[test]
    fn a_cut_short_text_is_an_error_and_the_next_one_still_reads() {
        let text = reply(600);
        let AttributeValue::B(bytes) = text_attribute(&text, true) else {
            panic!("deflated");
        };
        let whole = bytes.as_ref();
        assert!(inflated(&whole[..whole.len() / 2]).is_err());
        assert!(inflated(&[]).is_err());
        assert_eq!(
            inflated(whole).unwrap(),
            text,
            "the thread's inflater was reset"
        );
    }

    #[test]
    fn a_text_that_would_inflate_past_the_limit_is_refused() {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::best());
        encoder
            .write_all(&vec![b'a'; MAX_INFLATED_BYTES as usize + 1])
            .unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(inflated(&bomb).unwrap_err().contains("past"));
    }

    #[derive(serde::Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "text")] String);
}
