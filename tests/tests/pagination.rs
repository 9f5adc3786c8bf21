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

/// One page of `query`, continuing from `cursor`: its ids and the next cursor.
async fn page(client: &Client, query: &str, cursor: Option<&str>) -> (Vec<String>, Option<String>) {
    let path = match cursor {
        None => format!("/conversations?{query}"),
        Some(cursor) => format!("/conversations?{query}&cursor={cursor}"),
    };
    let reply = client.get(&path).await;
    assert_eq!(reply.status, 200, "{path}: {:?}", reply.body);
    let ids = reply.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, reply.body["nextCursor"].as_str().map(str::to_owned))
}

/// The ids of every page from `cursor` on.
async fn pages_from(client: &Client, query: &str, mut cursor: Option<String>) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(next) = cursor {
        let (page_ids, following) = page(client, query, Some(&next)).await;
        ids.extend(page_ids);
        cursor = following;
    }
    ids
}

async fn archive(client: &Client, id: &str, archived: bool) {
    let reply = client
        .put(
            &format!("/conversations/{id}/archive"),
            json!({"archived": archived}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test]
async fn archiving_during_a_walk_of_every_conversation_neither_skips_nor_repeats_one() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let mut created = Vec::new();
    for i in 0..10 {
        created.push(alice.create_conversation(Some(&format!("c{i}"))).await);
    }
    archive(&alice, &created[0], true).await;
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let query = "limit=3&includeArchived=true";
    let (first, cursor) = page(&alice, query, None).await;
    assert_eq!(first, newest_first[..3]);
    // One not listed yet moves to the archive, one listed moves there, and the one archived
    // from the start comes back: each still listed once, in its place.
    archive(&alice, &created[2], true).await;
    archive(&alice, &created[8], true).await;
    archive(&alice, &created[0], false).await;
    let mut seen = first;
    seen.extend(pages_from(&alice, query, cursor).await);
    assert_eq!(seen, newest_first);
}

#[tokio::test]
async fn archiving_the_last_conversation_of_a_page_does_not_list_it_again_on_the_next() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let mut created = Vec::new();
    for i in 0..6 {
        created.push(alice.create_conversation(Some(&format!("c{i}"))).await);
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let query = "limit=3&includeArchived=true";
    let (first, cursor) = page(&alice, query, None).await;
    assert_eq!(first, newest_first[..3]);

    // The app swipes away the last one it shows, then scrolls on.
    archive(&alice, &first[2], true).await;
    let mut seen = first;
    seen.extend(pages_from(&alice, query, cursor).await);
    assert_eq!(seen, newest_first);
}
