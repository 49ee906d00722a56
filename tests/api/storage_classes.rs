//! The bucket's storage class on every write path, read back from the store itself, on the S3
//! emulator; and a class change re-tiering what is stored. (Local files are covered in
//! `uploads.rs`; the blob conformance suite covers each backend's class handling directly.)

use axum::routing::get;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::blob::BlobStore;
use sluice::model::StorageClass;

use crate::common::start_on_storage;

fn moto() -> Option<(String, Vec<(String, String)>)> {
    let Ok(endpoint) = std::env::var("SLUICE_TEST_S3_ENDPOINT") else {
        if std::env::var("SLUICE_TEST_SKIP_EMULATORS").as_deref() == Ok("1") {
            return None;
        }
        panic!("SLUICE_TEST_S3_ENDPOINT is not set: run `eval \"$(scripts/services.sh up)\"`");
    };
    let env = [
        ("AWS_ACCESS_KEY_ID", "sluice-test"),
        ("AWS_SECRET_ACCESS_KEY", "sluice-test-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    Some((endpoint.clone(), env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
}

async fn source() -> String {
    let app = axum::Router::new().route("/pic.png", get(|| async { "\u{89}PNG mirrored bytes" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://localhost:{}/pic.png", address.port())
}

fn key_of(object: &Value) -> String {
    object["blobs"][0]["properties"]["storage_key"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_lands_in_the_class_and_retiering_moves_it() {
    let Some((endpoint, env)) = moto() else { return };
    let bucket_name = format!("sluiceclasses{}", sluice::model::new_id("", 10).to_lowercase());
    // The emulator does not check signatures, so an unsigned request creates the bucket.
    let created =
        reqwest::Client::new().put(format!("{endpoint}/{bucket_name}")).send().await.unwrap();
    assert!(created.status().is_success());
    let url = format!("s3://{bucket_name}/blobs");
    let s = start_on_storage(url.clone(), env.clone(), "127.0.0.0/8, ::1").await;
    let store = BlobStore::open_with_env(&url, env).unwrap();

    let ns = s.namespace("classes").await;
    let body = json!({"bucket_name": "cold", "storage_class": "coldline",
                      "bucket_schema": {"properties": {"image": {"type": "image"}}}});
    let (_, bucket) = s.post("/v1/buckets", Some(&ns), body).await;
    let bucket = bucket["bucket_id"].as_str().unwrap().to_string();
    let objects = format!("/v1/buckets/{bucket}/objects");

    // 1. Inline bytes.
    let inline = json!({"blobs": [{"property": "image", "type": "image",
                                   "data": "data:image/png;base64,aGVsbG8="}]});
    let (status, inline) = s.post(&objects, Some(&ns), inline).await;
    assert_eq!(status, StatusCode::OK, "{inline}");

    // 2. A presigned upload: the store's own URL, the class applied on confirm.
    let uploads = format!("/v1/buckets/{bucket}/uploads");
    let (_, upload) = s
        .post(&uploads, Some(&ns), json!({"filename": "u.png", "content_type": "image/png"}))
        .await;
    let put_url = upload["presigned_url"].as_str().unwrap();
    assert!(put_url.starts_with(&endpoint), "the store presigns: {put_url}");
    let put = reqwest::Client::new().put(put_url).header("content-type", "image/png").body("upl");
    assert!(put.send().await.unwrap().status().is_success());
    let id = upload["upload_id"].as_str().unwrap();
    let (status, confirmed) =
        s.post(&format!("{uploads}/{id}/confirm"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    let (_, uploaded) =
        s.get(&format!("{objects}/{}", confirmed["object_id"].as_str().unwrap()), Some(&ns)).await;

    // 3. A URL blob mirrored into managed storage.
    let (_, mirrored) = s
        .post(
            &objects,
            Some(&ns),
            json!({"blobs": [{"property": "image", "type": "image", "data": source().await}]}),
        )
        .await;
    let mirrored_path = format!("{objects}/{}", mirrored["object_id"].as_str().unwrap());
    let mut mirrored = mirrored;
    for _ in 0..400 {
        if mirrored["blobs"][0]["properties"]["mirror"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        mirrored = s.get(&mirrored_path, Some(&ns)).await.1;
    }
    assert_eq!(mirrored["blobs"][0]["properties"]["mirror"], "done", "{mirrored}");

    let keys = [key_of(&inline), key_of(&uploaded), key_of(&mirrored)];
    for key in &keys {
        let meta = store.head(key).await.unwrap().unwrap();
        assert_eq!(meta.storage_class, Some(StorageClass::Coldline), "{key}");
    }

    // A class change re-tiers all of them in place.
    let put = json!({"storage_class": "nearline"});
    let (_, updated) =
        s.call(Method::PUT, &format!("/v1/buckets/{bucket}"), Some(&ns), Some(put)).await;
    let task = s.wait_task(updated["retier_task_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    for key in &keys {
        let meta = store.head(key).await.unwrap().unwrap();
        assert_eq!(meta.storage_class, Some(StorageClass::Nearline), "{key}");
    }

    // The archive class is reached the same way.
    let put = json!({"storage_class": "archive"});
    let (_, updated) =
        s.call(Method::PUT, &format!("/v1/buckets/{bucket}"), Some(&ns), Some(put)).await;
    let task = s.wait_task(updated["retier_task_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    for key in &keys {
        let meta = store.head(key).await.unwrap().unwrap();
        assert_eq!(meta.storage_class, Some(StorageClass::Archive), "{key}");
    }
    s.stop().await;
}
