//! The blob layer's conformance suite: one set of checks run against local files, moto (S3),
//! fake-gcs-server (GCS) and Azurite (Azure), plus signature checks against s3s-fs, the one
//! S3 emulator here that verifies SigV4.
//!
//! The emulators come from `scripts/services.sh up`, whose `export` lines name their
//! endpoints. A test whose endpoint variable is missing fails and says so, unless
//! `SLUICE_TEST_SKIP_EMULATORS=1`. Every test creates a bucket (container) of its own.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use sluice::blob::{BlobBackend, BlobError, BlobStore, BlobStream};
use sluice::model::StorageClass;

#[path = "support/emulators.rs"]
mod emulators;
use emulators::{create_azure_container, create_gcs_bucket};

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Targets

/// A store under test and what its emulator can show.
struct Target {
    store: BlobStore,
    /// fake-gcs-server fails every write through the XML API, which object_store's GCS
    /// writes use; its objects are seeded through its JSON upload API instead.
    gcs_seed: Option<GcsSeed>,
    /// A local target's directory, kept alive for the test.
    dir: Option<tempfile::TempDir>,
}

struct GcsSeed {
    endpoint: String,
    bucket: String,
}

impl Target {
    fn writes(&self) -> bool {
        self.gcs_seed.is_none()
    }

    /// Stores `bytes` under `key`, through the store when it can write and through the
    /// emulator's own API when it cannot.
    async fn seed(&self, key: &str, bytes: &[u8], content_type: &str, class: StorageClass) {
        let Some(gcs) = &self.gcs_seed else {
            let stored = self
                .store
                .put_with_class(key, Bytes::copy_from_slice(bytes), Some(content_type), class)
                .await
                .unwrap();
            assert_eq!(stored.size, bytes.len() as u64);
            return;
        };
        let name = object_name(&self.store, key);
        let metadata = serde_json::json!({
            "name": name, "contentType": content_type, "storageClass": class.gcs_name(),
        });
        let boundary = "sluiceboundary";
        let mut body = format!(
            "--{boundary}\r\ncontent-type: application/json\r\n\r\n{metadata}\r\n--{boundary}\r\n\
             content-type: {content_type}\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let url =
            format!("{}/upload/storage/v1/b/{}/o?uploadType=multipart", gcs.endpoint, gcs.bucket);
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", format!("multipart/related; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "seeding GCS: {}", response.text().await.unwrap());
    }
}

/// The object name a key has in its bucket: the store's prefix and the key.
fn object_name(store: &BlobStore, key: &str) -> String {
    let url = store.url_of(key);
    let rest = url.split_once("://").unwrap().1;
    rest.split_once('/').unwrap().1.to_string()
}

/// A setting that `scripts/services.sh up` exports, or `None` when emulator tests are skipped
/// on purpose.
fn setting(variable: &str) -> Option<String> {
    if let Ok(value) = std::env::var(variable)
        && !value.is_empty()
    {
        return Some(value.trim_end_matches('/').to_string());
    }
    if std::env::var("SLUICE_TEST_SKIP_EMULATORS").as_deref() == Ok("1") {
        eprintln!("skipped: {variable} is not set and SLUICE_TEST_SKIP_EMULATORS=1");
        return None;
    }
    panic!(
        "{variable} is not set: start the emulators with `eval \"$(scripts/services.sh up)\"` \
         (or set SLUICE_TEST_SKIP_EMULATORS=1 to skip the emulator tests)"
    );
}

/// A bucket or container name no other test uses: lower-case letters and digits only, which
/// S3, GCS (fake-gcs-server percent-encodes `-`) and Azure all accept.
fn unique_bucket() -> String {
    let tail: String = sluice::model::new_id("", 14).to_ascii_lowercase();
    format!("sluicetest{tail}")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn local_target() -> Option<Target> {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(&format!("file:{}", dir.path().join("blobs").display())).unwrap();
    Some(Target { store, gcs_seed: None, dir: Some(dir) })
}

async fn moto_target() -> Option<Target> {
    let endpoint = setting("SLUICE_TEST_S3_ENDPOINT")?;
    let bucket = unique_bucket();
    create_s3_bucket(&endpoint, &bucket, "moto", "moto").await;
    let vars = env(&[
        ("AWS_ACCESS_KEY_ID", "moto"),
        ("AWS_SECRET_ACCESS_KEY", "moto"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", &endpoint),
    ]);
    let store = BlobStore::open_with_env(&format!("s3://{bucket}/tenant/prefix"), vars).unwrap();
    Some(Target { store, gcs_seed: None, dir: None })
}

async fn gcs_target() -> Option<Target> {
    let endpoint = setting("SLUICE_TEST_GCS_ENDPOINT")?;
    let credentials = setting("SLUICE_TEST_GCS_SERVICE_ACCOUNT")?;
    let bucket = unique_bucket();
    create_gcs_bucket(&endpoint, &bucket).await;

    let host = endpoint.trim_start_matches("http://");
    let vars = env(&[("GOOGLE_SERVICE_ACCOUNT", &credentials), ("STORAGE_EMULATOR_HOST", host)]);
    let store = BlobStore::open_with_env(&format!("gs://{bucket}/tenant/prefix"), vars).unwrap();
    Some(Target { store, gcs_seed: Some(GcsSeed { endpoint, bucket }), dir: None })
}

async fn azurite_target() -> Option<Target> {
    let endpoint = setting("SLUICE_TEST_AZURE_ENDPOINT")?;
    let account = setting("SLUICE_TEST_AZURE_ACCOUNT")?;
    let key = setting("SLUICE_TEST_AZURE_ACCOUNT_KEY")?;
    let container = unique_bucket();
    create_azure_container(&endpoint, &account, &key, &container).await;
    let vars = env(&[
        ("AZURE_STORAGE_ACCOUNT_NAME", &account),
        ("AZURE_STORAGE_ACCOUNT_KEY", &key),
        ("AZURE_STORAGE_ENDPOINT", &endpoint),
    ]);
    let store = BlobStore::open_with_env(&format!("az://{container}/tenant/prefix"), vars).unwrap();
    Some(Target { store, gcs_seed: None, dir: None })
}

/// Creates a bucket with a request signed by object_store's own S3 signer: a PUT on the
/// bucket's root is CreateBucket.
async fn create_s3_bucket(endpoint: &str, bucket: &str, key_id: &str, secret: &str) {
    let signer = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_access_key_id(key_id)
        .with_secret_access_key(secret)
        .build()
        .unwrap();
    let url =
        signer.signed_url(Method::PUT, &Path::from(""), Duration::from_secs(60)).await.unwrap();
    let request = reqwest::Client::new().put(url.as_str()).header("content-length", "0");
    let response = request.body("").send().await.unwrap();
    let status = response.status();
    assert!(
        status.is_success(),
        "creating bucket {bucket}: {status} {}",
        response.text().await.unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `len` bytes that do not repeat with any short period, so that a misplaced part shows.
fn generated(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

fn stream_of(bytes: &[u8], chunk: usize) -> BlobStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        bytes.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(futures::stream::iter(chunks))
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

async fn read_all(store: &BlobStore, key: &str) -> Vec<u8> {
    let (size, mut stream) = store.open_read(key).await.unwrap();
    let mut bytes = Vec::with_capacity(size as usize);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes.len() as u64, size);
    bytes
}

async fn class_of(store: &BlobStore, key: &str) -> Option<StorageClass> {
    store.head(key).await.unwrap().expect("the blob exists").storage_class
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Sends the bytes to a presigned PUT URL as the contract's clients do: `Content-Type` and
/// whatever else the store requires.
async fn upload(
    store: &BlobStore,
    url: &str,
    content_type: &str,
    bytes: &[u8],
) -> reqwest::Response {
    let mut request = http().put(url).header("content-type", content_type).body(bytes.to_vec());
    for (name, value) in store.upload_headers() {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// The checks

async fn put_head_get_delete(t: &Target) {
    let store = &t.store;
    let key = "org/ns/bkt/obj/blob/hello world.txt";
    t.seed(key, b"hello, blobs", "text/plain", StorageClass::Standard).await;

    let meta = store.head(key).await.unwrap().expect("head finds the blob");
    assert_eq!(meta.size, 12);
    assert_eq!(meta.storage_class, Some(StorageClass::Standard));
    assert!(meta.last_modified.as_deref().is_some_and(|t| t.ends_with('Z')), "{meta:?}");
    if store.backend() == BlobBackend::File {
        // Local files keep no content type: the blob record does.
        assert_eq!(meta.content_type, None);
    } else {
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
        assert!(meta.etag.is_some());
    }

    assert_eq!(&store.read(key).await.unwrap()[..], b"hello, blobs");
    assert_eq!(read_all(store, key).await, b"hello, blobs");

    store.delete(key).await.unwrap();
    assert_eq!(store.head(key).await.unwrap(), None);
    assert!(matches!(store.open_read(key).await, Err(BlobError::NotFound(k)) if k == key));
    store.delete(key).await.unwrap();
}

async fn put_stream_in_parts(t: &Target) {
    let store = &t.store;
    let payload = generated(20 * MIB + 12_345);

    // A refusal before the first part is complete writes nothing at all; this runs on every
    // store, fake-gcs-server included, because no write reaches the store.
    let small_refused = "org/ns/bkt/obj/blob/refused-early.bin";
    let result = store
        .put_stream(
            small_refused,
            stream_of(&payload, MIB),
            None,
            StorageClass::Standard,
            Some(MIB as u64),
        )
        .await;
    assert!(matches!(result, Err(BlobError::TooLarge { limit }) if limit == MIB as u64));
    assert_eq!(store.head(small_refused).await.unwrap(), None);

    if !t.writes() {
        // fake-gcs-server fails every write through the XML API, which object_store's GCS
        // uploads (single and multipart) use, so streamed writes are proven on the other stores.
        return;
    }

    let key = "org/ns/bkt/obj/blob/large.bin";
    let stored = store
        .put_stream(
            key,
            stream_of(&payload, 256 * 1024),
            Some("application/octet-stream"),
            StorageClass::Standard,
            Some(64 * MIB as u64),
        )
        .await
        .unwrap();
    assert_eq!(stored.size, payload.len() as u64);
    assert_eq!(stored.sha256.as_deref(), Some(sha256_hex(&payload).as_str()));
    let back = read_all(store, key).await;
    assert!(back == payload, "the streamed blob reads back changed");

    // Past the first part, the refusal aborts a multipart upload that has begun.
    let refused = "org/ns/bkt/obj/blob/refused-late.bin";
    let result = store
        .put_stream(
            refused,
            stream_of(&payload, MIB),
            None,
            StorageClass::Standard,
            Some(12 * MIB as u64),
        )
        .await;
    assert!(matches!(result, Err(BlobError::TooLarge { .. })), "{result:?}");
    assert_eq!(store.head(refused).await.unwrap(), None);
    if let Some(dir) = &t.dir {
        // Not even a staging file of the aborted upload is left on disk.
        let leftovers = files_under(dir.path());
        assert!(leftovers.iter().all(|f| !f.contains("refused")), "{leftovers:?}");
    }

    // A small stream is one plain write, with its digest all the same.
    let small = store
        .put_stream(
            "org/ns/bkt/obj/blob/small.txt",
            stream_of(b"tiny", 2),
            Some("text/plain"),
            StorageClass::Standard,
            None,
        )
        .await
        .unwrap();
    assert_eq!(small.sha256.as_deref(), Some(sha256_hex(b"tiny").as_str()));
    assert_eq!(small.size, 4);

    store.delete(key).await.unwrap();
}

async fn classes_on_put_read_back(t: &Target) {
    let store = &t.store;
    for class in StorageClass::ALL {
        let key = format!("org/ns/bkt/obj/{}/file.txt", class.as_str());
        // On fake-gcs-server the class is given to its JSON upload API; what is proven there is
        // that head reads `storageClass` back and maps it, not that sluice's write sets it.
        t.seed(&key, b"classy", "text/plain", class).await;
        assert_eq!(class_of(store, &key).await, Some(class), "{class:?}");
    }

    if t.writes() {
        // A multipart upload carries the class too.
        let key = "org/ns/bkt/obj/streamed/cold.bin";
        let payload = generated(9 * MIB);
        store
            .put_stream(key, stream_of(&payload, MIB), None, StorageClass::Coldline, None)
            .await
            .unwrap();
        assert_eq!(class_of(store, key).await, Some(StorageClass::Coldline));
    }
}

async fn storage_class_changes_in_place(t: &Target) {
    let store = &t.store;
    let key = "org/ns/bkt/obj/blob/retier.txt";
    t.seed(key, b"move me", "text/markdown", StorageClass::Standard).await;

    if !t.writes() {
        // fake-gcs-server accepts `rewrite` but does not keep the new storage class, so what
        // is proven here is that sluice's rewrite request is accepted and keeps the bytes; the
        // class read back is proven on the other stores.
        store.set_storage_class(key, StorageClass::Nearline).await.unwrap();
        assert_eq!(&store.read(key).await.unwrap()[..], b"move me");
        return;
    }

    for class in [StorageClass::Nearline, StorageClass::Coldline, StorageClass::Standard] {
        store.set_storage_class(key, class).await.unwrap();
        assert_eq!(class_of(store, key).await, Some(class), "{class:?}");
        // Asking again is a no-op, not the refusal S3 gives a self-copy that changes nothing.
        store.set_storage_class(key, class).await.unwrap();
    }
    let meta = store.head(key).await.unwrap().unwrap();
    assert_eq!(meta.size, 7);
    if store.backend() != BlobBackend::File {
        assert_eq!(meta.content_type.as_deref(), Some("text/markdown"), "the copy kept its type");
    }
    assert_eq!(&store.read(key).await.unwrap()[..], b"move me");

    store.set_storage_class(key, StorageClass::Archive).await.unwrap();
    assert_eq!(class_of(store, key).await, Some(StorageClass::Archive));

    let missing = store.set_storage_class("org/ns/none", StorageClass::Nearline).await;
    assert!(matches!(missing, Err(BlobError::NotFound(_))), "{missing:?}");
}

async fn archived_reads_are_refused(t: &Target) {
    let store = &t.store;
    let key = "org/ns/bkt/obj/blob/frozen.txt";
    match store.backend() {
        BlobBackend::S3 | BlobBackend::Azure => {
            t.seed(key, b"cold bytes", "text/plain", StorageClass::Archive).await;
            let read = store.open_read(key).await.map(|(size, _)| size);
            assert!(matches!(read, Err(BlobError::Archived(ref k)) if k == key), "{read:?}");
            assert!(matches!(store.read(key).await, Err(BlobError::Archived(_))));
        }
        BlobBackend::File => {
            // Local files only record the class; their bytes stay readable.
            t.seed(key, b"cold bytes", "text/plain", StorageClass::Archive).await;
            assert_eq!(&store.read(key).await.unwrap()[..], b"cold bytes");
        }
        BlobBackend::Gcs => {
            // GCS serves ARCHIVE objects directly (with a retrieval fee), so there is no
            // Archived error to provoke.
            t.seed(key, b"cold bytes", "text/plain", StorageClass::Archive).await;
            assert_eq!(&store.read(key).await.unwrap()[..], b"cold bytes");
        }
    }
}

async fn presigned_urls(t: &Target) {
    let store = &t.store;
    let key = "org/ns/bkt/upl_1/photo.png";
    let ttl = Duration::from_secs(300);

    // A name that must be percent-encoded gets no SAS on Azure (object_store would sign the
    // encoded path, which Azure refuses), so sluice's own signed URLs carry those transfers;
    // the other stores sign such names, and s3s-fs below proves S3 accepts them.
    let spaced = "org/ns/bkt/upl_2/photo two.png";
    let spaced_put = store.presign_put(spaced, "image/png", ttl, StorageClass::Standard).await;
    let spaced_get = store.presign_get(spaced, ttl).await;
    let expect_signed = matches!(store.backend(), BlobBackend::S3 | BlobBackend::Gcs);
    assert_eq!(spaced_put.unwrap().is_some(), expect_signed);
    assert_eq!(spaced_get.unwrap().is_some(), expect_signed);

    let put = store.presign_put(key, "image/png", ttl, StorageClass::Nearline).await.unwrap();
    let get = store.presign_get(key, ttl).await.unwrap();
    let Some(put) = put else {
        assert_eq!(store.backend(), BlobBackend::File, "only local files sign nothing");
        assert_eq!(get, None);
        return;
    };
    let get = get.expect("a store that signs PUTs signs GETs");

    if !t.writes() {
        // fake-gcs-server stores nothing sent to the XML API, so the upload itself cannot be
        // shown; the URL must bind the content type, and a signed GET must read seeded bytes.
        assert!(put.contains("X-Goog-SignedHeaders=content-type%3Bhost"), "{put}");
        t.seed(key, b"\x89PNG fake", "image/png", StorageClass::Standard).await;
    } else {
        if store.backend() == BlobBackend::Azure {
            // Without the headers `upload_headers` names, Azure refuses the upload.
            let bare = http().put(&put).header("content-type", "image/png").body("x");
            assert_eq!(bare.send().await.unwrap().status(), 400);
        }
        let response = upload(store, &put, "image/png", b"\x89PNG fake").await;
        let status = response.status();
        assert!(status.is_success(), "{status}: {}", response.text().await.unwrap());
        let meta = store.head(key).await.unwrap().unwrap();
        assert_eq!(meta.size, 9);
        assert_eq!(meta.content_type.as_deref(), Some("image/png"));
        // The class is not bound to the URL; it is applied when the upload is confirmed.
        store.set_storage_class(key, StorageClass::Nearline).await.unwrap();
        assert_eq!(class_of(store, key).await, Some(StorageClass::Nearline));
    }

    let response = http().get(&get).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(&response.bytes().await.unwrap()[..], b"\x89PNG fake");
    // A wrong content type is refused only where signatures are checked: moto, fake-gcs-server
    // and Azurite check none (and an Azure SAS cannot bind one), so that refusal is proven
    // against s3s-fs below.
}

async fn escaping_keys_are_refused(t: &Target) {
    let store = &t.store;
    let ttl = Duration::from_secs(60);
    for key in ["../outside", "org/../../etc/passwd", "org/./x", "org//x", ""] {
        let refused = |r: Result<_, BlobError>| matches!(r, Err(BlobError::InvalidKey(_)));
        assert!(refused(store.put(key, Bytes::from_static(b"x"), None).await.map(|_| ())), "{key}");
        assert!(refused(store.head(key).await.map(|_| ())), "{key}");
        assert!(refused(store.open_read(key).await.map(|_| ())), "{key}");
        assert!(refused(store.delete(key).await), "{key}");
        assert!(refused(store.set_storage_class(key, StorageClass::Archive).await), "{key}");
        assert!(refused(
            store.presign_put(key, "a/b", ttl, StorageClass::Standard).await.map(|_| ())
        ));
        assert!(refused(store.presign_get(key, ttl).await.map(|_| ())), "{key}");
        let stream = stream_of(b"x", 1);
        let put = store.put_stream(key, stream, None, StorageClass::Standard, None).await;
        assert!(refused(put.map(|_| ())), "{key}");
    }
}

/// One test per check and store, so a failure names both.
macro_rules! conformance {
    ($store:ident, $target:expr) => {
        mod $store {
            use super::*;

            #[tokio::test]
            async fn put_head_get_delete() {
                let Some(t) = $target.await else { return };
                super::put_head_get_delete(&t).await;
            }

            #[tokio::test]
            async fn put_stream_in_parts() {
                let Some(t) = $target.await else { return };
                super::put_stream_in_parts(&t).await;
            }

            #[tokio::test]
            async fn classes_on_put_read_back() {
                let Some(t) = $target.await else { return };
                super::classes_on_put_read_back(&t).await;
            }

            #[tokio::test]
            async fn storage_class_changes_in_place() {
                let Some(t) = $target.await else { return };
                super::storage_class_changes_in_place(&t).await;
            }

            #[tokio::test]
            async fn archived_reads_are_refused() {
                let Some(t) = $target.await else { return };
                super::archived_reads_are_refused(&t).await;
            }

            #[tokio::test]
            async fn presigned_urls() {
                let Some(t) = $target.await else { return };
                super::presigned_urls(&t).await;
            }

            #[tokio::test]
            async fn escaping_keys_are_refused() {
                let Some(t) = $target.await else { return };
                super::escaping_keys_are_refused(&t).await;
            }
        }
    };
}

conformance!(local, local_target());
conformance!(s3_moto, moto_target());
conformance!(gcs_fake, gcs_target());
conformance!(azure_azurite, azurite_target());

// ---------------------------------------------------------------------------------------------
// Signatures, against s3s-fs

/// s3s-fs checks every SigV4 signature, so what it accepts is what S3 would accept. It
/// refuses every storage class header, so only standard writes are made here.
mod s3s_signatures {
    use super::*;

    async fn target() -> Option<(BlobStore, String)> {
        let endpoint = setting("SLUICE_TEST_S3S_ENDPOINT")?;
        let key_id = setting("SLUICE_TEST_S3S_ACCESS_KEY_ID")?;
        let secret = setting("SLUICE_TEST_S3S_SECRET_ACCESS_KEY")?;
        let bucket = unique_bucket();
        create_s3_bucket(&endpoint, &bucket, &key_id, &secret).await;
        let vars = env(&[
            ("AWS_ACCESS_KEY_ID", &key_id),
            ("AWS_SECRET_ACCESS_KEY", &secret),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &endpoint),
        ]);
        let store = BlobStore::open_with_env(&format!("s3://{bucket}/pre"), vars).unwrap();
        Some((store, bucket))
    }

    #[tokio::test]
    async fn signed_requests_are_accepted() {
        let Some((store, _)) = target().await else { return };
        let key = "a/b/signed.txt";
        store.put(key, Bytes::from_static(b"signed"), Some("text/plain")).await.unwrap();
        // head is sluice's own presigned HEAD, not object_store's request.
        let meta = store.head(key).await.unwrap().unwrap();
        assert_eq!(meta.size, 6);
        assert_eq!(meta.storage_class, Some(StorageClass::Standard));
        assert_eq!(&store.read(key).await.unwrap()[..], b"signed");

        let payload = generated(17 * MIB);
        let stored = store
            .put_stream(
                "a/b/parts.bin",
                stream_of(&payload, MIB),
                None,
                StorageClass::Standard,
                None,
            )
            .await
            .unwrap();
        assert_eq!(stored.sha256.as_deref(), Some(sha256_hex(&payload).as_str()));
        assert!(read_all(&store, "a/b/parts.bin").await == payload);

        store.delete(key).await.unwrap();
        assert_eq!(store.head(key).await.unwrap(), None);
    }

    #[tokio::test]
    async fn presigned_urls_are_accepted_and_tampering_is_refused() {
        let Some((store, _)) = target().await else { return };
        let key = "a/b/upload one.png";
        let ttl = Duration::from_secs(300);
        let put = store
            .presign_put(key, "image/png", ttl, StorageClass::Standard)
            .await
            .unwrap()
            .unwrap();

        let wrong_type = upload(&store, &put, "text/html", b"<p>no</p>").await;
        assert_eq!(wrong_type.status(), 403, "a content type other than the signed one");
        assert_eq!(store.head(key).await.unwrap(), None);

        let right = upload(&store, &put, "image/png", b"png bytes").await;
        assert!(right.status().is_success(), "{}", right.status());
        assert_eq!(&store.read(key).await.unwrap()[..], b"png bytes");

        let get = store.presign_get(key, ttl).await.unwrap().unwrap();
        let response = http().get(&get).send().await.unwrap();
        assert!(response.status().is_success());
        assert_eq!(&response.bytes().await.unwrap()[..], b"png bytes");

        let tampered_signature = flip_signature(&get);
        assert_eq!(http().get(&tampered_signature).send().await.unwrap().status(), 403);
        let other_key = get.replacen("/upload%20one.png", "/other.png", 1);
        assert_ne!(other_key, get);
        assert_eq!(http().get(&other_key).send().await.unwrap().status(), 403);
        let other_put_key = put.replacen("/upload%20one.png", "/other.png", 1);
        let status = upload(&store, &other_put_key, "image/png", b"x").await.status();
        assert_eq!(status, 403);
        assert_eq!(store.head("a/b/other.png").await.unwrap(), None);
    }

    /// The URL with the last hex digit of its signature changed.
    fn flip_signature(url: &str) -> String {
        let start = url.find("X-Amz-Signature=").expect("a SigV4 URL") + "X-Amz-Signature=".len();
        let end = url[start..].find('&').map_or(url.len(), |i| start + i);
        let last = end - 1;
        let flipped = if &url[last..end] == "0" { "1" } else { "0" };
        format!("{}{flipped}{}", &url[..last], &url[end..])
    }
}

// ---------------------------------------------------------------------------------------------
// The storage class table

#[test]
fn storage_class_names_follow_the_design_table() {
    let table = [
        (StorageClass::Standard, "STANDARD", "STANDARD", "Hot"),
        (StorageClass::Nearline, "STANDARD_IA", "NEARLINE", "Cool"),
        (StorageClass::Coldline, "GLACIER_IR", "COLDLINE", "Cold"),
        (StorageClass::Archive, "GLACIER", "ARCHIVE", "Archive"),
    ];
    for (class, s3, gcs, azure) in table {
        assert_eq!((class.s3_name(), class.gcs_name(), class.azure_tier()), (s3, gcs, azure));
        assert_eq!(StorageClass::from_s3_name(s3), Some(class));
        assert_eq!(StorageClass::from_gcs_name(gcs), Some(class));
        assert_eq!(StorageClass::from_azure_tier(azure), Some(class));
    }
    assert_eq!(StorageClass::from_s3_name("DEEP_ARCHIVE"), None);
    assert_eq!(StorageClass::from_azure_tier("Premium"), None);
}

#[tokio::test]
async fn local_records_never_show_up_as_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let store = BlobStore::open(&format!("file:{}", root.display())).unwrap();
    store
        .put_with_class("a/b.txt", Bytes::from_static(b"x"), None, StorageClass::Coldline)
        .await
        .unwrap();
    assert!(matches!(
        store.head(".sluice/storage-class/a/b.txt").await,
        Err(BlobError::InvalidKey(_))
    ));

    // Listing the directory as object_store sees it shows the blob and the record tree,
    // which only the reserved first segment can reach.
    let raw = object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap();
    let names: Vec<String> =
        raw.list(None).map(|m| m.unwrap().location.to_string()).collect::<Vec<_>>().await;
    assert!(names.iter().all(|n| n == "a/b.txt" || n.starts_with(".sluice/")), "{names:?}");
    assert!(raw.head(&Path::from("a/b.txt")).await.is_ok());

    store.set_storage_class("a/b.txt", StorageClass::Standard).await.unwrap();
    store.delete("a/b.txt").await.unwrap();
    assert!(!root.join(".sluice/storage-class/a/b.txt").exists());
}
