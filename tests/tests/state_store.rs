//! The S3 state store against the emulator: the state bucket's configuration, conditional
//! writes of the document, and the lock's lease, renewal, conditional release, breaking and
//! force-unlock. Every test starts its own moto server; none is ever skipped.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::Client;
use e2e::Moto;
use serde_json::Value;
use xtask::state::lock::{force_unlock, Lock, LockOptions, UnlockError};
use xtask::state::s3::{ensure_bucket, tls_only_policy, BucketStatus, S3Store, Transport};
use xtask::state::store::LockInfo;
use xtask::state::writer::StateWriter;
use xtask::state::{StateFile, StateStore, StoreError};

const BUCKET: &str = "image-analyzer-state-test";
const REGION: &str = "us-east-1";

async fn s3(moto: &Moto) -> Client {
    let config = moto.sdk_config().await;
    Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build())
}

/// A state bucket made the way the deployer makes it against an emulator, and the `dev`
/// environment's store in it.
async fn store(moto: &Moto) -> (Client, S3Store) {
    let client = s3(moto).await;
    ensure_bucket(&client, BUCKET, REGION, Transport::for_endpoint(Some(moto.endpoint()))).await.unwrap();
    let store = S3Store::new(client.clone(), BUCKET, "image-analyzer", "dev");
    (client, store)
}

async fn object(client: &Client, key: &str) -> Option<String> {
    match client.get_object().bucket(BUCKET).key(key).send().await {
        Ok(output) => Some(String::from_utf8(output.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()),
        Err(error) if error.code() == Some("NoSuchKey") => None,
        Err(error) => panic!("GetObject {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&error)),
    }
}

fn lock_info(id: &str, expires_at: &str) -> LockInfo {
    LockInfo {
        id: id.to_owned(),
        who: "bob".to_owned(),
        host: "ci-runner".to_owned(),
        pid: 4242,
        operation: "destroy".to_owned(),
        started_at: "2000-01-01T00:00:00Z".to_owned(),
        expires_at: expires_at.to_owned(),
        process: None,
    }
}

/// The facts the store relies on, checked on the raw API: moto 5.2.5 refuses PutObject with
/// `If-None-Match: *` on an existing key and PutObject / DeleteObject with a wrong `If-Match`
/// (412 PreconditionFailed, nothing changed), and answers `If-Match` on a missing key with 404
/// NoSuchKey.
#[tokio::test]
async fn moto_honours_conditional_puts_and_deletes() {
    let moto = Moto::start().unwrap();
    let client = s3(&moto).await;
    client.create_bucket().bucket(BUCKET).send().await.unwrap();
    let put =
        |body: &'static str| client.put_object().bucket(BUCKET).key("k").body(ByteStream::from_static(body.as_bytes()));

    let first = put("one").if_none_match("*").send().await.unwrap().e_tag.unwrap();
    let error = put("two").if_none_match("*").send().await.unwrap_err();
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 412);
    assert_eq!(error.code(), Some("PreconditionFailed"));
    assert_eq!(object(&client, "k").await.as_deref(), Some("one"));

    let error = put("three").if_match("\"0123456789abcdef0123456789abcdef\"").send().await.unwrap_err();
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 412);
    assert_eq!(object(&client, "k").await.as_deref(), Some("one"));
    let second = put("four").if_match(&first).send().await.unwrap().e_tag.unwrap();
    assert_eq!(object(&client, "k").await.as_deref(), Some("four"));

    let error = client.delete_object().bucket(BUCKET).key("k").if_match(&first).send().await.unwrap_err();
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 412, "a stale If-Match is refused on delete");
    assert_eq!(object(&client, "k").await.as_deref(), Some("four"), "and nothing is deleted");
    client.delete_object().bucket(BUCKET).key("k").if_match(&second).send().await.unwrap();
    assert_eq!(object(&client, "k").await, None);

    let error = client.delete_object().bucket(BUCKET).key("k").if_match(&second).send().await.unwrap_err();
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 404);
    let error = put("five").if_match(&second).send().await.unwrap_err();
    assert_eq!((error.raw_response().unwrap().status().as_u16(), error.code()), (404, Some("NoSuchKey")));
}

/// Versioning, default encryption and the public access block of a state bucket, read back.
async fn assert_state_bucket_configured(moto: &Moto, client: &Client, bucket: &str) {
    // moto 5.2.5 answers GetBucketVersioning with a `GetBucketVersioningResponse` root element,
    // which the SDK refuses to parse, so the setting is read over plain HTTP (moto does not
    // require signatures); `documents_round_trip_and_stale_writes_conflict` checks that the
    // bucket keeps versions.
    let versioning = reqwest::get(format!("{}/{bucket}?versioning", moto.endpoint())).await.unwrap();
    assert!(versioning.status().is_success(), "GetBucketVersioning {bucket}: {}", versioning.status());
    let versioning = versioning.text().await.unwrap();
    assert!(versioning.contains("<Status>Enabled</Status>"), "{bucket}: {versioning}");

    let encryption = client.get_bucket_encryption().bucket(bucket).send().await.unwrap();
    let rules = encryption.server_side_encryption_configuration().unwrap().rules();
    let by_default = rules[0].apply_server_side_encryption_by_default().unwrap();
    assert_eq!(by_default.sse_algorithm(), &ServerSideEncryption::Aes256, "{bucket}");

    let block = client.get_public_access_block().bucket(bucket).send().await.unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true)),
        "{bucket}"
    );
}

#[tokio::test]
async fn ensure_bucket_creates_a_versioned_encrypted_private_tls_only_bucket() {
    let moto = Moto::start().unwrap();
    let client = s3(&moto).await;

    // As on AWS: with the TLS-only policy.
    let tls = "image-analyzer-state-test-tls";
    assert_eq!(ensure_bucket(&client, tls, REGION, Transport::TlsOnly).await.unwrap(), BucketStatus::Created);
    assert_eq!(ensure_bucket(&client, tls, REGION, Transport::TlsOnly).await.unwrap(), BucketStatus::Existed);
    assert_state_bucket_configured(&moto, &client, tls).await;
    let policy = client.get_bucket_policy().bucket(tls).send().await.unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    assert_eq!(policy, tls_only_policy(tls, REGION));
    assert_eq!(policy["Statement"][0]["Effect"], "Deny");
    assert_eq!(policy["Statement"][0]["Condition"]["Bool"]["aws:SecureTransport"], "false");
    // moto 5.2.5 cannot evaluate `aws:SecureTransport` and applies the conditional Deny to
    // every object request, which is why emulator buckets get no such policy. If this starts
    // to pass after a moto upgrade, `Transport::PlainHttp` may no longer be needed.
    let error = client.put_object().bucket(tls).key("k").body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 403);

    // Against the emulator's plain-HTTP endpoint: the same, without the policy.
    let transport = Transport::for_endpoint(Some(moto.endpoint()));
    assert_eq!(transport, Transport::PlainHttp);
    assert_eq!(ensure_bucket(&client, BUCKET, REGION, transport).await.unwrap(), BucketStatus::Created);
    assert_state_bucket_configured(&moto, &client, BUCKET).await;
    let error = client.get_bucket_policy().bucket(BUCKET).send().await.unwrap_err();
    assert_eq!(error.code(), Some("NoSuchBucketPolicy"));

    // Outside us-east-1 the bucket is created with a location constraint.
    let regional = "image-analyzer-state-test-eu";
    assert_eq!(ensure_bucket(&client, regional, "eu-west-1", transport).await.unwrap(), BucketStatus::Created);
    let location = client.get_bucket_location().bucket(regional).send().await.unwrap();
    assert_eq!(location.location_constraint().map(|constraint| constraint.as_str()), Some("eu-west-1"));

    // Errors name the bucket and the operation.
    let error = ensure_bucket(&client, "ab", REGION, transport).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("CreateBucket on s3://ab: HTTP 400 InvalidBucketName: The specified bucket is not valid."),
        "{message}"
    );
}

#[tokio::test]
async fn documents_round_trip_and_stale_writes_conflict() {
    let moto = Moto::start().unwrap();
    let (client, store) = store(&moto).await;
    assert_eq!(store.location(), format!("s3://{BUCKET}/image-analyzer/dev/state.json"));
    assert!(store.load().await.unwrap().is_none(), "a missing document is None");

    let mut state = StateFile::new();
    let first = store.save(&state, None).await.unwrap();
    let error = store.save(&state, None).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "If-None-Match on an existing document: {error}");
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!((loaded.value, loaded.etag.as_str()), (state.clone(), first.as_str()));
    let raw = object(&client, "image-analyzer/dev/state.json").await.unwrap();
    assert!(raw.starts_with("{\n  \"version\": 1,\n  \"lineage\": "), "pretty JSON: {raw}");

    state.serial = 1;
    state.account_id = Some("123456789012".to_owned());
    let second = store.save(&state, Some(&first)).await.unwrap();
    assert_ne!(first, second);
    let stored = object(&client, "image-analyzer/dev/state.json").await.unwrap();

    let mut stale = state.clone();
    stale.serial = 2;
    let error = store.save(&stale, Some(&first)).await.unwrap_err();
    assert!(matches!(&error, StoreError::Conflict { expected, .. } if *expected == first), "{error}");
    assert!(error.to_string().contains(&store.location()), "{error}");
    assert_eq!(object(&client, "image-analyzer/dev/state.json").await.unwrap(), stored, "nothing overwritten");

    // The bucket keeps every revision.
    let versions =
        client.list_object_versions().bucket(BUCKET).prefix("image-analyzer/dev/state.json").send().await.unwrap();
    assert_eq!(versions.versions().len(), 2);

    // Two writers: the second to write finds the first's document and stops.
    let store = Arc::new(store);
    let mut ours = StateWriter::open(Arc::clone(&store)).await.unwrap();
    let mut theirs = StateWriter::open(Arc::clone(&store)).await.unwrap();
    assert_eq!(ours.state().serial, 1);
    theirs.set_record("history", serde_json::json!(["theirs"])).await.unwrap();
    let their_bytes = object(&client, "image-analyzer/dev/state.json").await.unwrap();
    let error = ours.set_record("history", serde_json::json!(["ours"])).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
    assert_eq!(object(&client, "image-analyzer/dev/state.json").await.unwrap(), their_bytes);
    assert_eq!(theirs.state().serial, 2);

    // Another environment's document sits beside it, untouched.
    let staging = S3Store::new(client.clone(), BUCKET, "image-analyzer", "staging");
    assert!(staging.load().await.unwrap().is_none());
}

#[tokio::test]
async fn the_lock_object_is_exclusive_and_changed_only_with_its_etag() {
    let moto = Moto::start().unwrap();
    let (client, store) = store(&moto).await;

    let mut held = lock_info("first", "2999-01-01T00:00:00Z");
    let etag = store.acquire_lock(&held).await.unwrap();
    let raw = object(&client, "image-analyzer/dev/state.lock").await.unwrap();
    assert!(raw.starts_with("{\n  \"id\": \"first\""), "pretty JSON: {raw}");
    match store.acquire_lock(&lock_info("second", "2999-01-01T00:00:00Z")).await.unwrap_err() {
        StoreError::Locked { holder, .. } => assert_eq!(holder, held),
        other => panic!("expected Locked, got {other}"),
    }

    held.expires_at = "2999-01-01T00:01:00Z".to_owned();
    let renewed = store.renew_lock(&held, &etag).await.unwrap();
    assert_ne!(renewed, etag);
    assert_eq!(store.read_lock().await.unwrap().unwrap().value, held);
    let error = store.renew_lock(&held, &etag).await.unwrap_err();
    assert!(matches!(error, StoreError::LockLost { .. }), "renewing with a stale ETag: {error}");

    // DeleteObject's If-Match is honoured: a wrong ETag deletes nothing.
    let error = store.delete_lock(&etag).await.unwrap_err();
    assert!(matches!(&error, StoreError::LockLost { id, .. } if id == "first"), "{error}");
    assert_eq!(store.read_lock().await.unwrap().unwrap().etag, renewed);
    store.delete_lock(&renewed).await.unwrap();
    assert!(store.read_lock().await.unwrap().is_none());
    let error = store.delete_lock(&renewed).await.unwrap_err();
    assert!(matches!(error, StoreError::LockLost { .. }), "{error}");
    let error = store.renew_lock(&held, &renewed).await.unwrap_err();
    assert!(matches!(error, StoreError::LockLost { .. }), "{error}");
}

#[tokio::test]
async fn a_run_holds_renews_and_releases_the_lock() {
    let moto = Moto::start().unwrap();
    let (_client, store) = store(&moto).await;
    let store = Arc::new(store);
    let options = LockOptions::new("deploy").lease(Duration::from_secs(3)).poll_interval(Duration::from_millis(50));

    let lock = Lock::acquire(Arc::clone(&store), &options).await.unwrap();
    let first = store.read_lock().await.unwrap().unwrap();
    assert_eq!(first.value, lock.info());

    let error = Lock::acquire(Arc::clone(&store), &LockOptions::new("plan")).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(&error, StoreError::Locked { holder, .. } if holder.id == lock.id()), "{message}");
    for part in [first.value.who.as_str(), first.value.host.as_str(), first.value.id.as_str(), "`deploy`"] {
        assert!(message.contains(part), "{message} should name {part}");
    }

    // Renewed every second, with If-Match on the last ETag.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let current = store.read_lock().await.unwrap().unwrap();
    assert_ne!(current.etag, first.etag);
    assert_eq!(
        (current.value.id.as_str(), current.value.started_at.as_str()),
        (first.value.id.as_str(), first.value.started_at.as_str())
    );
    assert!(current.value.expires_at > first.value.expires_at);
    lock.check().unwrap();

    // A waiting run gets the lock once it is released.
    let waiting = tokio::spawn({
        let store = Arc::clone(&store);
        let options = options.clone().timeout(Duration::from_secs(20));
        async move { Lock::acquire(store, &options).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    lock.release().await.unwrap();
    let next = waiting.await.unwrap().unwrap();
    assert_eq!(store.read_lock().await.unwrap().unwrap().value.id, next.id());
    next.release().await.unwrap();
    assert!(store.read_lock().await.unwrap().is_none());

    // Re-acquired after release.
    Lock::acquire(Arc::clone(&store), &options).await.unwrap().release().await.unwrap();
}

#[tokio::test]
async fn expired_leases_are_broken_and_force_unlock_checks_the_id() {
    let moto = Moto::start().unwrap();
    let (_client, store) = store(&moto).await;
    let store = Arc::new(store);

    // A crashed run's lock, long expired, is broken by the next run.
    store.acquire_lock(&lock_info("crashed", "2000-01-01T00:01:00Z")).await.unwrap();
    let lock = Lock::acquire(Arc::clone(&store), &LockOptions::new("deploy")).await.unwrap();
    assert_eq!(store.read_lock().await.unwrap().unwrap().value.id, lock.id());
    lock.release().await.unwrap();

    // A live lock is not, and `unlock --force` needs its exact id.
    let stuck = lock_info("stuck-id", "2999-01-01T00:00:00Z");
    store.acquire_lock(&stuck).await.unwrap();
    let error = Lock::acquire(Arc::clone(&store), &LockOptions::new("deploy")).await.unwrap_err();
    assert!(matches!(&error, StoreError::Locked { holder, .. } if holder.id == "stuck-id"), "{error}");

    let error = force_unlock(&*store, "wrong-id").await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, UnlockError::IdMismatch { .. }), "{message}");
    assert!(message.contains("has id stuck-id, not wrong-id"), "{message}");
    assert_eq!(store.read_lock().await.unwrap().unwrap().value, stuck, "nothing removed");

    assert_eq!(force_unlock(&*store, "stuck-id").await.unwrap(), stuck);
    assert!(store.read_lock().await.unwrap().is_none());
    let error = force_unlock(&*store, "stuck-id").await.unwrap_err();
    assert!(matches!(error, UnlockError::NotLocked { .. }), "{error}");
}
