use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::common::{TestServer, assert_error};

async fn setup(s: &TestServer, class: &str) -> (String, String) {
    let ns = s.namespace("uploads").await;
    let body = json!({"bucket_name": "files", "storage_class": class,
        "bucket_schema": {"properties": {"image": {"type": "image"}, "title": {"type": "string"}}}});
    let (status, bucket) = s.post("/v1/buckets", Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{bucket}");
    (ns, bucket["bucket_id"].as_str().unwrap().to_string())
}

async fn put(url: &str, content_type: &str, bytes: &'static [u8]) -> reqwest::Response {
    reqwest::Client::new()
        .put(url)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap()
}

async fn full_flow(s: &TestServer) {
    let (ns, bucket) = setup(s, "coldline").await;
    let base = format!("/v1/buckets/{bucket}/uploads");
    let body = json!({"filename": "cat.png", "content_type": "image/png", "file_size_bytes": 11,
                      "presigned_url_expiration": 600, "object_metadata": {"title": "cat"},
                      "metadata": {"source": "test"}});
    let (status, upload) = s.post(&base, Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{upload}");
    let id = upload["upload_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("upl_"));
    assert_eq!(upload["status"], "PENDING");
    assert_eq!(upload["blob_property"], "image");
    assert_eq!(upload["presigned_url_expiration"], 600);
    assert!(
        upload["s3_key"]
            .as_str()
            .unwrap()
            .contains(&format!("/api_buckets_uploads_create/{id}/cat.png"))
    );
    let url = upload["presigned_url"].as_str().unwrap().to_string();

    // Confirming before the bytes arrive is refused; a wrong content type is refused.
    let (status, body) = s.post(&format!("{base}/{id}/confirm"), Some(&ns), json!({})).await;
    assert_error(status, &body, 400);
    assert_eq!(put(&url, "text/plain", b"hello world").await.status(), StatusCode::FORBIDDEN);
    let too_big = put(&url, "image/png", b"hello world, and more").await;
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let response = put(&url, "image/png", b"hello world").await;
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    // The URL is single-use.
    assert_eq!(put(&url, "image/png", b"hello world").await.status(), StatusCode::FORBIDDEN);

    let (status, body) =
        s.post(&format!("{base}/{id}/confirm"), Some(&ns), json!({"etag": "\"nope\""})).await;
    let error = assert_error(status, &body, 400);
    assert_eq!(error["code"], "etag_mismatch");
    let (status, body) =
        s.post(&format!("{base}/{id}/confirm"), Some(&ns), json!({"file_size_bytes": 12})).await;
    assert_error(status, &body, 400);

    let confirm = json!({"etag": etag, "file_size_bytes": 11});
    let (status, confirmed) =
        s.post(&format!("{base}/{id}/confirm"), Some(&ns), confirm.clone()).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["status"], "COMPLETED");
    let object_id = confirmed["object_id"].as_str().unwrap().to_string();
    let (_, again) = s.post(&format!("{base}/{id}/confirm"), Some(&ns), confirm).await;
    assert_eq!(again["object_id"], json!(object_id), "confirming twice is idempotent");

    // The object holds the uploaded bytes, in the bucket's class.
    let path = format!("/v1/buckets/{bucket}/objects/{object_id}?return_presigned_urls=true");
    let (_, object) = s.get(&path, Some(&ns)).await;
    assert_eq!(object["title"], "cat");
    let blob = &object["blobs"][0];
    assert_eq!(blob["details"]["size_bytes"], 11);
    assert_eq!(blob["properties"]["storage_class"], "coldline");
    let download = reqwest::get(blob["presigned_url"].as_str().unwrap()).await.unwrap();
    assert_eq!(download.text().await.unwrap(), "hello world");
    let store = sluice::blob::BlobStore::open(&s.config.storage_url).unwrap();
    let key = blob["properties"]["storage_key"].as_str().unwrap();
    let meta = store.head(key).await.unwrap().unwrap();
    assert_eq!(meta.storage_class, Some(sluice::model::StorageClass::Coldline));

    // Get, list with stats, delete rules.
    let (status, got) = s.get(&format!("{base}/{id}?return_presigned_urls=true"), Some(&ns)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert!(got["presigned_url"].as_str().unwrap().contains("/v1/files/"));
    let (status, list) = s.post(&format!("{base}/list"), Some(&ns), json!({"limit": 10})).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["stats"]["total_uploads"], 1);
    assert_eq!(list["stats"]["uploads_by_status"]["COMPLETED"], 1);
    let (status, body) = s.call(Method::DELETE, &format!("{base}/{id}"), Some(&ns), None).await;
    assert_error(status, &body, 409);

    let (_, pending) =
        s.post(&base, Some(&ns), json!({"filename": "b.png", "content_type": "image/png"})).await;
    let pending_id = pending["upload_id"].as_str().unwrap();
    let (status, _) =
        s.call(Method::DELETE, &format!("{base}/{pending_id}"), Some(&ns), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, canceled) = s.get(&format!("{base}/{pending_id}"), Some(&ns)).await;
    assert_eq!(canceled["status"], "CANCELED");
}
both_backends!(full_flow);

async fn hashes_duplicates_and_batches(s: &TestServer) {
    let (ns, bucket) = setup(s, "standard").await;
    let base = format!("/v1/buckets/{bucket}/uploads");
    let bytes: &'static [u8] = b"some image bytes";
    let hash = format!("{:x}", Sha256::digest(bytes));
    let body = json!({"filename": "a.png", "content_type": "image/png", "file_hash": hash});
    let (_, first) = s.post(&base, Some(&ns), body.clone()).await;
    let (_, dup) = s.post(&base, Some(&ns), body.clone()).await;
    assert_eq!(dup["is_duplicate"], true);
    assert_eq!(dup["duplicate_of_upload_id"], first["upload_id"]);
    assert!(dup["presigned_url"].is_null());

    // A hash that does not match the bytes is caught on confirm.
    let wrong =
        json!({"filename": "b.png", "content_type": "image/png", "file_hash": "0".repeat(64)});
    let (_, upload) = s.post(&base, Some(&ns), wrong).await;
    put(upload["presigned_url"].as_str().unwrap(), "image/png", bytes).await;
    let id = upload["upload_id"].as_str().unwrap();
    let (status, body) = s.post(&format!("{base}/{id}/confirm"), Some(&ns), json!({})).await;
    assert_eq!(assert_error(status, &body, 400)["code"], "file_hash_mismatch");

    // Batch create, PUT each, batch confirm as a task.
    let uploads: Vec<Value> = (0..3)
        .map(|i| json!({"filename": format!("{i}.png"), "content_type": "image/png"}))
        .collect();
    let (status, batch) = s
        .post(
            &format!("{base}/batch"),
            Some(&ns),
            json!({"uploads": uploads, "shared_object_metadata": {"title": "batch"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["total"], 3);
    let mut confirmations = Vec::new();
    for upload in batch["uploads"].as_array().unwrap() {
        let response = put(upload["presigned_url"].as_str().unwrap(), "image/png", bytes).await;
        assert_eq!(response.status(), StatusCode::OK);
        confirmations
            .push(json!({"upload_id": upload["upload_id"], "file_size_bytes": bytes.len()}));
    }
    let (status, task) = s
        .post(&format!("{base}/confirm/batch"), Some(&ns), json!({"confirmations": confirmations}))
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["confirmations_count"], 3);
    assert_eq!(task["task"]["task_type"], "api_buckets_uploads_batch_confirm");
    let done = s.wait_task(task["task_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["outputs"].as_array().unwrap().len(), 3);
    let (_, objects) = s
        .post(
            &format!("/v1/buckets/{bucket}/objects/list"),
            Some(&ns),
            json!({"filters": {"title": "batch"}}),
        )
        .await;
    assert_eq!(objects["results"].as_array().unwrap().len(), 3);

    // Bad requests.
    for (body, field) in [
        (json!({"filename": "../x.png", "content_type": "image/png"}), "filename"),
        (json!({"filename": "x.png", "content_type": "png"}), "content_type"),
        (
            json!({"filename": "x.png", "content_type": "image/png", "presigned_url_expiration": 5}),
            "presigned_url_expiration",
        ),
        (
            json!({"filename": "x.png", "content_type": "image/png", "blob_property": "nope"}),
            "blob_property",
        ),
        (
            json!({"filename": "x.png", "content_type": "image/png", "file_hash": "abc"}),
            "file_hash",
        ),
    ] {
        let (status, answer) = s.post(&base, Some(&ns), body).await;
        let error = assert_error(status, &answer, 422);
        assert!(error["message"].as_str().unwrap().contains(field), "{error}");
    }
}
both_backends!(hashes_duplicates_and_batches);

async fn expiry_refuses_confirm_and_sweeps_bytes(s: &TestServer) {
    let (ns, bucket) = setup(s, "standard").await;
    let base = format!("/v1/buckets/{bucket}/uploads");
    let (_, upload) = s
        .post(&base, Some(&ns), json!({"filename": "late.png", "content_type": "image/png"}))
        .await;
    let id = upload["upload_id"].as_str().unwrap().to_string();
    put(upload["presigned_url"].as_str().unwrap(), "image/png", b"late bytes").await;

    // Let the upload's time run out, as a clock would.
    let store = s.store().await;
    let row = store
        .list(sluice::store::Table::Uploads, sluice::store::Scope::org(""), &Default::default())
        .await
        .unwrap();
    assert!(row.rows.is_empty(), "scoping hides other organizations' uploads");
    let (_, mut doc) = s.get(&format!("{base}/{id}"), Some(&ns)).await;
    doc["expires_at"] = json!("2020-01-01T00:00:00.000000Z");
    store.update_doc(sluice::store::Table::Uploads, &id, None, &doc).await.unwrap();
    let (status, body) = s.post(&format!("{base}/{id}/confirm"), Some(&ns), json!({})).await;
    assert_eq!(assert_error(status, &body, 409)["code"], "upload_expired");

    // The sweeper job cancels it and deletes the bytes.
    let key = doc["s3_key"].as_str().unwrap().to_string();
    let blobs = sluice::blob::BlobStore::open(&s.config.storage_url).unwrap();
    assert!(blobs.head(&key).await.unwrap().is_some());
    let (_, me) = s.get("/v1/me", None).await;
    let job = sluice::store::NewJob {
        id: "job_test_expiry".into(),
        kind: "upload.expire".into(),
        org_id: me["organization_id"].as_str().unwrap().into(),
        payload: json!({"upload_id": id, "namespace_id": ns, "bucket_id": bucket}),
        max_attempts: 3,
        run_at: sluice::model::now(),
        dedupe_key: None,
    };
    store.enqueue_job(&job, &sluice::model::now()).await.unwrap();
    store.close().await;
    for _ in 0..200 {
        let (_, doc) = s.get(&format!("{base}/{id}"), Some(&ns)).await;
        if doc["status"] == "CANCELED" {
            assert!(blobs.head(&key).await.unwrap().is_none(), "bytes are gone");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the expired upload was not swept");
}
both_backends!(expiry_refuses_confirm_and_sweeps_bytes);

async fn changing_the_class_retiers_stored_blobs(s: &TestServer) {
    let (ns, bucket) = setup(s, "standard").await;
    let path = format!("/v1/buckets/{bucket}/objects");
    let png = "data:image/png;base64,aGVsbG8=";
    let mut keys = Vec::new();
    for _ in 0..3 {
        let (_, object) = s
            .post(
                &path,
                Some(&ns),
                json!({"blobs": [{"property": "image", "type": "image", "data": png}]}),
            )
            .await;
        assert_eq!(object["blobs"][0]["properties"]["storage_class"], "standard");
        keys.push(object["blobs"][0]["properties"]["storage_key"].as_str().unwrap().to_string());
    }
    let (status, updated) = s
        .call(
            Method::PUT,
            &format!("/v1/buckets/{bucket}"),
            Some(&ns),
            Some(json!({"storage_class": "nearline"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let task = s.wait_task(updated["retier_task_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(task["outputs"][0]["blobs_moved"], 3);

    let blobs = sluice::blob::BlobStore::open(&s.config.storage_url).unwrap();
    for key in &keys {
        let meta = blobs.head(key).await.unwrap().unwrap();
        assert_eq!(meta.storage_class, Some(sluice::model::StorageClass::Nearline), "{key}");
    }
    let (_, list) = s.post(&format!("{path}/list"), Some(&ns), json!({})).await;
    for object in list["results"].as_array().unwrap() {
        assert_eq!(object["blobs"][0]["properties"]["storage_class"], "nearline");
    }
}
both_backends!(changing_the_class_retiers_stored_blobs);

/// Confirmations racing for one upload create one object, and all answer it.
async fn concurrent_confirms_create_one_object(s: &TestServer) {
    let (ns, bucket) = setup(s, "standard").await;
    let base = format!("/v1/buckets/{bucket}/uploads");
    let (_, upload) =
        s.post(&base, Some(&ns), json!({"filename": "r.png", "content_type": "image/png"})).await;
    put(upload["presigned_url"].as_str().unwrap(), "image/png", b"racing bytes").await;
    let id = upload["upload_id"].as_str().unwrap();
    let confirm = format!("{base}/{id}/confirm");
    let calls: Vec<_> = (0..8).map(|_| s.post(&confirm, Some(&ns), json!({}))).collect();
    let answers = futures::future::join_all(calls).await;
    let mut ids = std::collections::HashSet::new();
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        ids.insert(answer["object_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one object: {ids:?}");
    let (_, list) =
        s.post(&format!("/v1/buckets/{bucket}/objects/list"), Some(&ns), json!({})).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
}
both_backends!(concurrent_confirms_create_one_object);
