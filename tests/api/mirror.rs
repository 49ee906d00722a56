use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{Backend, TestServer, assert_error, start, start_allowing};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n fake image body for mirroring";

/// A source server on loopback that serves a PNG without saying its type.
async fn source() -> String {
    let app = axum::Router::new().route("/cat", get(|| async { PNG }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://localhost:{}/cat", address.port())
}

async fn object_with_url(s: &TestServer, url: &str) -> (String, String, Value) {
    let ns = s.namespace("mirror").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {"image": {"type": "image"}}})).await;
    let body = json!({"blobs": [{"property": "image", "type": "image", "data": url}]});
    let (status, object) = s.post(&format!("/v1/buckets/{bucket}/objects"), Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    (ns, bucket, object)
}

async fn wait_mirror(s: &TestServer, ns: &str, bucket: &str, id: &str) -> Value {
    for _ in 0..400 {
        let (_, object) = s
            .get(&format!("/v1/buckets/{bucket}/objects/{id}?return_presigned_urls=true"), Some(ns))
            .await;
        if object["blobs"][0]["properties"]["mirror"] != "pending" {
            return object;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("mirroring did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_blobs_are_mirrored_when_the_network_is_allowed() {
    let url = source().await;
    let s = start_allowing(Backend::Sqlite, "127.0.0.0/8, ::1").await.unwrap();
    let (ns, bucket, object) = object_with_url(&s, &url).await;
    assert_eq!(object["blobs"][0]["properties"]["mirror"], "pending");
    let id = object["object_id"].as_str().unwrap();

    let object = wait_mirror(&s, &ns, &bucket, id).await;
    let blob = &object["blobs"][0];
    assert_eq!(blob["properties"]["mirror"], "done", "{blob}");
    assert_eq!(blob["properties"]["url"], json!(url), "the source stays recorded");
    assert_eq!(blob["details"]["size_bytes"], PNG.len());
    assert_eq!(blob["details"]["mime_type"], "image/png", "sniffed from the bytes");
    assert_eq!(blob["details"]["hash"], json!(format!("sha256:{:x}", Sha256::digest(PNG))));
    let copy = reqwest::get(blob["presigned_url"].as_str().unwrap()).await.unwrap();
    assert_eq!(copy.bytes().await.unwrap().as_ref(), PNG);
    let (_, got) = s.get(&format!("/v1/buckets/{bucket}"), Some(&ns)).await;
    assert_eq!(got["total_size_bytes"], PNG.len());

    // A batch's URL blobs are mirrored too, by one job for the whole request.
    let objects: Vec<Value> = (0..3)
        .map(|_| json!({"blobs": [{"property": "image", "type": "image", "data": url}]}))
        .collect();
    let path = format!("/v1/buckets/{bucket}/objects/batch");
    let (status, batch) = s.post(&path, Some(&ns), json!({"objects": objects})).await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    for created in batch["succeeded"].as_array().unwrap() {
        let object = wait_mirror(&s, &ns, &bucket, created["object_id"].as_str().unwrap()).await;
        assert_eq!(object["blobs"][0]["properties"]["mirror"], "done", "{object}");
    }
    let (_, got) = s.get(&format!("/v1/buckets/{bucket}"), Some(&ns)).await;
    assert_eq!(got["total_size_bytes"], 4 * PNG.len());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_sources_are_refused_by_default() {
    let url = source().await;
    let s = start(Backend::Sqlite).await.unwrap();
    // A host name that resolves to loopback is refused when the mirror job resolves it.
    let (ns, bucket, object) = object_with_url(&s, &url).await;
    let object = wait_mirror(&s, &ns, &bucket, object["object_id"].as_str().unwrap()).await;
    let blob = &object["blobs"][0];
    assert_eq!(blob["properties"]["mirror"], "failed");
    assert!(blob["properties"]["mirror_error"].as_str().unwrap().contains("non-public"), "{blob}");
    assert!(blob["properties"]["storage_key"].is_null());

    // A literal private address is refused at once.
    for bad in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/a.png",
        "http://user:pw@example.com/a.png",
    ] {
        let body = json!({"blobs": [{"property": "image", "type": "image", "data": bad}]});
        let (status, answer) =
            s.post(&format!("/v1/buckets/{bucket}/objects"), Some(&ns), body).await;
        let error = assert_error(status, &answer, 422);
        assert!(error["message"].as_str().unwrap().contains("blobs[0].data"), "{error}");
    }
    // Opting out of mirroring keeps the reference as given.
    let body = json!({"blobs": [{"property": "image", "type": "image", "data": "http://10.0.0.1/a.png",
                                 "canonicalize_source": false}]});
    let (status, object) = s.post(&format!("/v1/buckets/{bucket}/objects"), Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    assert_eq!(object["blobs"][0]["properties"]["mirror"], "off");
    s.stop().await;
}
