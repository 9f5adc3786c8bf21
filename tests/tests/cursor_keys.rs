//! Pagination cursors signed with the versions of a Secrets Manager secret (moto's here, as
//! the template's in AWS): a rotation (`put-secret-value`) needs no redeploy and breaks no
//! cursor handed out before it, whichever instance, started before or after it, reads it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use shared::clock::SystemClock;
use shared::cursor::Position;
use shared::cursor_keys::Cursors;
use shared::error::Error;
use tests::{cursor_secret, new_user, LocalApi};

async fn secrets() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&aws_config::load_from_env().await)
}

/// What an operator runs to rotate the secret: a new version becomes current, the one it
/// replaces previous.
async fn rotate(arn: &str) {
    secrets()
        .await
        .put_secret_value()
        .secret_id(arn)
        .secret_string(tests::new_secret_value())
        .send()
        .await
        .unwrap();
}

fn key_id(cursor: &str) -> &str {
    cursor.rsplit('.').next().unwrap()
}

fn position() -> Position {
    Position::from([("PK".to_owned(), "USER#alice#CONV#1".to_owned())])
}

#[tokio::test]
async fn cursors_outlive_one_rotation_on_instances_started_before_or_after_it() {
    let arn = cursor_secret().await;
    let started_before =
        Cursors::stored(secrets().await, &arn).with_unknown_key_interval(Duration::ZERO);
    let signed_before = started_before
        .encode("alice/list", position())
        .await
        .unwrap();

    rotate(&arn).await;
    let started_after = Cursors::stored(secrets().await, &arn);
    let signed_after = started_after
        .encode("alice/list", position())
        .await
        .unwrap();
    assert_ne!(
        key_id(&signed_before),
        key_id(&signed_after),
        "each names its key"
    );
    // An instance started after the rotation still accepts the cursors signed before it.
    assert_eq!(
        started_after
            .decode("alice/list", &signed_before)
            .await
            .unwrap(),
        position()
    );
    // One started before learns the new key from the first cursor that names it, and signs
    // with it from then on.
    assert_eq!(
        started_before
            .decode("alice/list", &signed_after)
            .await
            .unwrap(),
        position()
    );
    let signed_later = started_before
        .encode("alice/list", position())
        .await
        .unwrap();
    assert_eq!(key_id(&signed_later), key_id(&signed_after));

    // After a second rotation the first key is gone.
    rotate(&arn).await;
    let started_last = Cursors::stored(secrets().await, &arn);
    assert!(matches!(
        started_last.decode("alice/list", &signed_before).await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(
        started_last
            .decode("alice/list", &signed_after)
            .await
            .unwrap(),
        position()
    );
}

#[tokio::test]
async fn a_cursor_naming_an_unknown_key_is_refused_without_reading_the_keys_each_time() {
    let arn = cursor_secret().await;
    let cursors = Cursors::stored(secrets().await, &arn);
    let genuine = cursors.encode("alice/list", position()).await.unwrap();
    let (body, _) = genuine.rsplit_once('.').unwrap();
    for invented in ["00000000", "ffffffff", "not-a-key"] {
        assert!(matches!(
            cursors
                .decode("alice/list", &format!("{body}.{invented}"))
                .await,
            Err(Error::Invalid(_))
        ));
    }
    // The secret gone, the keys already read go on serving (no read within the minute).
    secrets()
        .await
        .delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        cursors.decode("alice/list", &genuine).await.unwrap(),
        position()
    );
}

#[tokio::test]
async fn the_api_pages_with_cursors_signed_by_the_stored_secret() {
    let arn = cursor_secret().await;
    let state =
        tests::state_configured(&[("CURSOR_SECRET_ARN", &arn)], Arc::new(SystemClock)).await;
    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&new_user());
    for title in ["one", "two", "three"] {
        alice.create_conversation(Some(title)).await;
    }
    let first = alice.get("/conversations?limit=2").await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(
        cursor.split('.').count(),
        3,
        "the cursor names its key: {cursor}"
    );

    rotate(&arn).await;
    let second = alice
        .get(&format!("/conversations?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    assert_eq!(second.body["conversations"].as_array().unwrap().len(), 1);

    let forged = format!("{}x", cursor);
    let refused = alice
        .get(&format!("/conversations?limit=2&cursor={forged}"))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.body
    );
}

#[tokio::test]
async fn a_sync_cursor_signed_with_a_retired_key_asks_for_a_full_sync() {
    let arn = cursor_secret().await;
    let instance = || async {
        LocalApi::serving(
            tests::state_configured(&[("CURSOR_SECRET_ARN", &arn)], Arc::new(SystemClock)).await,
        )
        .await
    };
    let user = new_user();
    let first = instance().await;
    first.as_user(&user).create_conversation(Some("kept")).await;
    let synced = first.as_user(&user).get("/mobile/sync").await;
    assert_eq!(synced.status, StatusCode::OK, "{:?}", synced.body);
    let cursor = synced.body["cursor"].as_str().unwrap().to_owned();

    // Weeks later, two rotations on, on an instance started since.
    rotate(&arn).await;
    rotate(&arn).await;
    let later = instance().await;
    let resync = later
        .as_user(&user)
        .get(&format!("/mobile/sync?since={cursor}"))
        .await;
    assert_eq!(resync.status, StatusCode::GONE, "{:?}", resync.body);
    assert_eq!(resync.error_code(), "resync_required");
    // A current key's cursor altered by hand is still a bad request.
    let fresh = later.as_user(&user).get("/mobile/sync").await;
    let fresh = fresh.body["cursor"].as_str().unwrap().to_owned();
    let (payload, rest) = fresh.split_once('.').unwrap();
    let swapped = if payload.starts_with('A') { "B" } else { "A" };
    let altered = format!("{swapped}{}.{rest}", &payload[1..]);
    assert_ne!(altered, fresh);
    let refused = later
        .as_user(&user)
        .get(&format!("/mobile/sync?since={altered}"))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.body
    );
}
