//! A completion request of any shape, or bytes that are not JSON, never panics its parsing:
//! a 400 or a request, nothing else (`PROPTEST_CASES` cases each).

use proptest::prelude::*;
use serde_json::Value;
use shared::http::json_bytes;

use crate::service::CompletionRequest;
use crate::wire::CompletionBody;

/// Any JSON value, nested a few levels, with the completion body's keys among random ones.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("prompt".to_owned()),
        Just("conversationId".to_owned()),
        Just("stream".to_owned()),
        Just("maxTokens".to_owned()),
        Just("model".to_owned()),
        Just("requestId".to_owned()),
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        "\\PC{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn parse(bytes: &[u8]) {
    if let Ok(Some(body)) = json_bytes::<CompletionBody>(bytes) {
        if let Some(reply) = body.regenerate.as_deref() {
            let _ = CompletionRequest::regenerating(
                reply,
                body.conversation_id.as_deref(),
                body.request_id.as_deref(),
                body.max_tokens,
                body.model.clone(),
            );
        }
        let _ = CompletionRequest::parse(
            body.prompt.unwrap_or_default(),
            body.conversation_id.as_deref(),
            body.request_id.as_deref(),
            body.max_tokens,
            body.model,
        );
    }
}

proptest! {
    #[test]
    fn completion_bodies_of_any_shape_never_panic_the_parser(value in json_value()) {
        parse(value.to_string().as_bytes());
    }

    #[test]
    fn bytes_that_are_not_json_never_panic_the_completion_parser(
        bytes in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        parse(&bytes);
    }
}
