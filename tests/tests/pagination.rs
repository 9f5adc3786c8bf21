//! Pagination walks every conversation exactly once, in order, under both sort orders and
//! every archive filter.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;
use tests::{new_user, Client, LocalApi};

/// Follows `nextCursor` from the first page to the last and returns the ids in order.
async fn walk(client: &Client, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/conversations?limit=7&{query}"),
            Some(cursor) => format!("/conversations?limit=7&{query}&cursor={cursor}"),
        };
        let page = client.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {:?}", page.body);
        let conversations = page.body["conversations"].as_array().unwrap();
        assert!(conversations.len() <= 7);
        ids.extend(
            conversations
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        assert_eq!(page.body["hasMore"], page.body["nextCursor"].is_string());
        match page.body["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(conversations.len(), 7, "only the last page is short");
                cursor = Some(next.to_owned());
            }
            None => return ids,
        }
    }
}

#[tokio::test]
async fn pagination_sees_each_of_250_conversations_exactly_once_in_order() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());

    // Created in order 0..250; every third is archived; every fifth then gets a message,
    // in reverse order, so activity order differs from creation order.
    let mut created = Vec::new();
    for i in 0..250 {
        created.push(
            alice
                .create_conversation(Some(&format!("conversation {i}")))
                .await,
        );
    }
    let archived: HashSet<usize> = (0..250).filter(|i| i % 3 == 0).collect();
    for &i in &archived {
        let reply = alice
            .put(
                &format!("/conversations/{}/archive", created[i]),
                json!({"archived": true}),
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    let touched: Vec<usize> = (0..250).filter(|i| i % 5 == 0).rev().collect();
    for &i in &touched {
        alice.say(&created[i], "bump").await;
    }

    let newest_created: Vec<usize> = (0..250).rev().collect();
    let mut by_activity: Vec<usize> = touched.iter().rev().copied().collect();
    by_activity.extend(newest_created.iter().filter(|i| !touched.contains(i)));

    let ids = |order: &[usize], keep: &dyn Fn(usize) -> bool| -> Vec<String> {
        order
            .iter()
            .filter(|&&i| keep(i))
            .map(|&i| created[i].clone())
            .collect()
    };
    let all = |_: usize| true;
    let active = |i: usize| !archived.contains(&i);
    let only_archived = |i: usize| archived.contains(&i);

    assert_eq!(
        walk(&alice, "includeArchived=true").await,
        ids(&by_activity, &all)
    );
    assert_eq!(walk(&alice, "").await, ids(&by_activity, &active));
    assert_eq!(
        walk(&alice, "archived=only").await,
        ids(&by_activity, &only_archived)
    );
    assert_eq!(
        walk(&alice, "sort=createdAt&includeArchived=true").await,
        ids(&newest_created, &all)
    );
    assert_eq!(
        walk(&alice, "sort=createdAt").await,
        ids(&newest_created, &active)
    );
    assert_eq!(
        walk(&alice, "sort=createdAt&archived=only").await,
        ids(&newest_created, &only_archived)
    );

    // Title search pages the same way: "conversation 1" matches 1, 10-19, 100-199.
    let matching = walk(&alice, "includeArchived=true&search=CONVERSATION%201").await;
    let expected: Vec<String> = ids(&by_activity, &|i| {
        format!("conversation {i}").contains("conversation 1")
    });
    assert_eq!(matching, expected);

    // Page numbers reach as far as 1,000 conversations (200 with a search).
    for (query, status) in [
        ("page=50&limit=20", StatusCode::OK),
        ("page=11&limit=20&search=conversation", StatusCode::OK),
        (
            "page=12&limit=20&search=conversation",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let reply = alice.get(&format!("/conversations?{query}")).await;
        assert_eq!(reply.status, status, "{query}: {:?}", reply.body);
    }

    // Legacy page numbers give the same pages as the cursors.
    let page_three = alice
        .get("/conversations?limit=7&page=3&includeArchived=true")
        .await;
    let third: Vec<&str> = page_three.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        third,
        ids(&by_activity, &all)[14..21]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
}
