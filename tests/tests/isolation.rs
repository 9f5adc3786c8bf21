//! Nobody sees another's data: user B tries every endpoint on user A's conversation, and
//! gets exactly what a conversation that does not exist would give, while A's items stay
//! byte for byte as they were.

use reqwest::StatusCode;
use serde_json::json;
use tests::{items_of_conversation, new_user, LocalApi};

#[tokio::test]
async fn another_user_gets_not_found_on_every_endpoint_and_changes_nothing() {
    let api = LocalApi::start().await;
    let (a, b) = (new_user(), new_user());
    let alice = api.as_user(&a);
    let bob = api.as_user(&b);

    let id = alice.create_conversation(Some("Alice's secrets")).await;
    for i in 0..4 {
        alice.say(&id, &format!("private {i}")).await;
    }
    let alice_page = alice
        .get(&format!("/conversations/{id}?messageLimit=2"))
        .await;
    let alice_message_cursor = alice_page.body["olderMessagesCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.create_conversation(Some("second")).await;
    let alice_list_cursor = alice.get("/conversations?limit=1").await.body["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = items_of_conversation(&api.state, &a, &id).await;

    let conversation = format!("/conversations/{id}");
    let attempts = [
        ("get", bob.get(&conversation).await),
        (
            "add message",
            bob.post(
                &format!("{conversation}/messages"),
                json!({"role": "user", "content": "hi"}),
            )
            .await,
        ),
        (
            "rename",
            bob.put(&format!("{conversation}/title"), json!({"title": "mine"}))
                .await,
        ),
        (
            "archive",
            bob.put(
                &format!("{conversation}/archive"),
                json!({"archived": true}),
            )
            .await,
        ),
        (
            "tags",
            bob.put(&format!("{conversation}/tags"), json!({"tags": ["x"]}))
                .await,
        ),
        (
            "context",
            bob.get(&format!("/conversations/context/{id}")).await,
        ),
        ("delete", bob.delete(&conversation).await),
    ];
    for (endpoint, reply) in &attempts {
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{endpoint}: {:?}",
            reply.body
        );
        assert_eq!(reply.error_code(), "not_found", "{endpoint}");
    }
    // The same answer as for an id that exists for nobody: nothing reveals that it exists.
    let nobody = bob
        .get(&format!("/conversations/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(nobody.body, attempts[0].1.body);

    // Alice's cursors are refused for Bob: they cannot open her partition.
    let with_her_message_cursor = bob
        .get(&format!("{conversation}?before={alice_message_cursor}"))
        .await;
    assert_eq!(with_her_message_cursor.status, StatusCode::BAD_REQUEST);
    let with_her_list_cursor = bob
        .get(&format!(
            "/conversations?limit=1&cursor={alice_list_cursor}"
        ))
        .await;
    assert_eq!(with_her_list_cursor.status, StatusCode::BAD_REQUEST);

    // Bob's own listings never include Alice's conversations, under any filter or order.
    for query in [
        "",
        "?includeArchived=true",
        "?archived=only",
        "?sort=createdAt&includeArchived=true",
        "?search=secrets",
    ] {
        let listed = bob.get(&format!("/conversations{query}")).await;
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(listed.body["conversations"], json!([]), "query {query:?}");
    }

    // Bob's sync lists nothing of Alice's; his batch reaches nothing of hers.
    let synced = bob.get("/mobile/sync").await;
    assert_eq!(synced.status, StatusCode::OK);
    assert_eq!(synced.body["conversations"], json!([]));
    assert_eq!(synced.body["deleted"], json!([]));
    let batch = bob
        .post(
            "/mobile/batch",
            json!({"operations": [
                {"opId": "1", "type": "getConversation", "conversationId": id},
                {"opId": "2", "type": "addMessage", "conversationId": id, "role": "user", "content": "hi"},
                {"opId": "3", "type": "rename", "conversationId": id, "title": "mine"},
                {"opId": "4", "type": "archive", "conversationId": id},
                {"opId": "5", "type": "setTags", "conversationId": id, "tags": ["x"]},
                {"opId": "6", "type": "delete", "conversationId": id},
            ]}),
        )
        .await;
    for result in batch.body["results"].as_array().unwrap() {
        assert_eq!(result["status"], 404, "{result}");
        assert_eq!(result["error"], attempts[0].1.body["error"], "{result}");
    }

    // Exports: Bob cannot export her conversation, nor see her account export, even by
    // sending the app's own export id: his is a different export, in his own partition.
    let exported = bob.get(&format!("{conversation}/export")).await;
    assert_eq!(exported.status, StatusCode::NOT_FOUND);
    assert_eq!(exported.body, attempts[0].1.body);
    let hers = alice
        .post("/exports", json!({"clientExportId": "settings-1"}))
        .await;
    assert_eq!(hers.status, StatusCode::ACCEPTED);
    let her_export = hers.body["id"].as_str().unwrap();
    let peeked = bob.get(&format!("/exports/{her_export}")).await;
    let no_export = bob.get(&format!("/exports/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(peeked.status, StatusCode::NOT_FOUND);
    assert_eq!(peeked.body, no_export.body);
    let his = bob
        .post("/exports", json!({"clientExportId": "settings-1"}))
        .await;
    assert_eq!(his.status, StatusCode::ACCEPTED);
    assert_ne!(his.body["id"], hers.body["id"]);

    assert_eq!(items_of_conversation(&api.state, &a, &id).await, before);
    let still = alice.get(&conversation).await;
    assert_eq!(still.body["title"], "Alice's secrets");
    assert_eq!(still.body["messageCount"], 4);
}

#[tokio::test]
async fn a_subject_that_could_spell_another_users_key_is_refused() {
    let api = LocalApi::start().await;
    let a = new_user();
    api.as_user(&a).create_conversation(Some("mine")).await;
    // "<a>#ACTIVE" would be Alice's active-conversations index key if ids could hold '#'.
    let impostor = api.as_user(&format!("{a}#ACTIVE"));
    let reply = impostor.get("/conversations?includeArchived=true").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error_code(), "unauthorized");
}
