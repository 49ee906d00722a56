use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{TestServer, assert_error};

const TERMINAL: [&str; 4] = ["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"];

/// A namespace with `extractors`, and a bucket with a text blob and a title.
async fn setup(s: &TestServer, name: &str, extractors: Value) -> (String, String) {
    let body = json!({"namespace_name": name, "feature_extractors": extractors});
    let (status, ns) = s.post("/v1/namespaces", None, body).await;
    assert_eq!(status, StatusCode::OK, "{ns}");
    let ns = ns["namespace_id"].as_str().unwrap().to_string();
    let schema = json!({"properties": {"content": {"type": "text"}, "photo": {"type": "image"},
                                       "title": {"type": "string"}}});
    let bucket = s.bucket(&ns, "docs", schema).await;
    (ns, bucket)
}

async fn text_object(s: &TestServer, ns: &str, bucket: &str, title: &str, text: &str) -> String {
    let body = json!({"title": title, "blobs": [{"property": "content", "type": "text",
                                                 "data": text}]});
    let (status, object) = s.post(&format!("/v1/buckets/{bucket}/objects"), Some(ns), body).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    object["object_id"].as_str().unwrap().to_string()
}

/// Polls a batch until its status is terminal and returns it.
pub async fn wait_batch(s: &TestServer, ns: &str, bucket: &str, id: &str) -> Value {
    for _ in 0..800 {
        let (status, batch) = s.get(&format!("/v1/buckets/{bucket}/batches/{id}"), Some(ns)).await;
        assert_eq!(status, StatusCode::OK, "{batch}");
        if TERMINAL.contains(&batch["status"].as_str().unwrap_or("")) {
            return batch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("batch {id} did not finish");
}

async fn lifecycle(s: &TestServer) {
    let (ns, bucket) = setup(s, "batching", json!([])).await;
    let a = text_object(s, &ns, &bucket, "a", "first").await;
    let b = text_object(s, &ns, &bucket, "b", "second").await;
    let base = format!("/v1/buckets/{bucket}/batches");

    let (status, batch) = s.post(&base, Some(&ns), json!({"object_ids": [a]})).await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let id = batch["batch_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("btch_") && id.len() == 17, "{id}");
    assert_eq!(batch["status"], "DRAFT");
    assert_eq!(batch["lifecycle"], "accepted");
    assert_eq!(batch["object_ids"], json!([a]));
    assert_eq!(batch["bucket_id"], bucket);
    assert!(batch["max_node_death_resubmits"].is_i64());

    // Objects join while the batch is a draft; duplicates are ignored.
    let path = format!("{base}/{id}/objects");
    let (status, batch) = s.post(&path, Some(&ns), json!({"object_ids": [b, a]})).await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["object_ids"], json!([a, b]));
    let (status, body) = s.post(&path, Some(&ns), json!({"object_ids": ["obj_nope"]})).await;
    assert_error(status, &body, 422);

    let (status, patched) = s
        .call(
            Method::PATCH,
            &format!("{base}/{id}"),
            Some(&ns),
            Some(json!({"metadata": {"tags": ["x"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["metadata"]["tags"], json!(["x"]));

    let (status, task) = s.post(&format!("{base}/{id}/submit"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["task_type"], "api_buckets_batches_process");
    let task_id = task["task_id"].as_str().unwrap().to_string();

    let done = wait_batch(s, &ns, &bucket, &id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["lifecycle"], "indexed");
    assert_eq!(done["progress"]["processed"], 2);
    assert_eq!(done["progress"]["total"], 2);
    assert_eq!(done["progress"]["percent"], 100.0);
    assert_eq!(done["documents_written"], 0);
    assert_eq!(done["failed_object_count"], 0);
    assert_eq!(done["tier_tasks"][0]["status"], "COMPLETED");
    assert_eq!(s.wait_task(&task_id).await["status"], "COMPLETED");

    // A finished batch is no draft: it takes no objects, no second submit and no cancel.
    let (status, body) = s.post(&format!("{base}/{id}/submit"), Some(&ns), json!({})).await;
    assert_error(status, &body, 409);
    let (status, body) = s.post(&format!("{base}/{id}/cancel"), Some(&ns), json!({})).await;
    assert_error(status, &body, 409);
    let (status, body) = s.post(&format!("{base}/{id}/retry"), Some(&ns), json!({})).await;
    assert_error(status, &body, 409);

    // The organization-wide routes see it without a namespace.
    let (status, same) = s.get(&format!("/v1/batches/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["status"], "COMPLETED");
    let (status, list) = s.post("/v1/batches/list", None, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total_count"], 1);
    let (status, list) =
        s.post(&format!("{base}/list"), Some(&ns), json!({"status": "DRAFT"})).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total_count"], 0);

    let (status, body) = s.call(Method::DELETE, &format!("{base}/{id}"), Some(&ns), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    let (status, body) = s.get(&format!("{base}/{id}"), Some(&ns)).await;
    assert_error(status, &body, 404);
}
both_backends!(lifecycle);

async fn bad_requests(s: &TestServer) {
    let (ns, bucket) = setup(s, "bad-batches", json!([])).await;
    let a = text_object(s, &ns, &bucket, "a", "first").await;
    let base = format!("/v1/buckets/{bucket}/batches");
    for body in [
        json!({}),
        json!({"object_ids": []}),
        json!({"object_ids": [a], "filters": {"title": "a"}}),
        json!({"object_ids": ["obj_missing"]}),
        json!({"object_ids": [a], "dedup_strategy": "sometimes"}),
        json!({"object_ids": [a], "collection_ids": ["col_nope"]}),
        json!({"filters": {"title": "nothing matches"}}),
    ] {
        let (status, error) = s.post(&base, Some(&ns), body.clone()).await;
        assert_error(status, &error, 422);
    }
    let (status, error) =
        s.post(&base, Some(&ns), json!({"object_ids": [a], "collection_ids": ["col_nope"]})).await;
    assert_eq!(assert_error(status, &error, 422)["code"], "collection_not_found");

    // Filters pick the objects on the server.
    let (status, batch) = s.post(&base, Some(&ns), json!({"filters": {"title": "a"}})).await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["object_ids"], json!([a]));

    // A webhook URL sluice may not call is refused at submit.
    let id = batch["batch_id"].as_str().unwrap();
    let body = json!({"webhook_url": "http://169.254.169.254/latest"});
    let (status, error) = s.post(&format!("{base}/{id}/submit"), Some(&ns), body).await;
    assert_error(status, &error, 422);

    // Unknown batches answer 404 on every route, and other organizations see nothing.
    let (status, error) = s.get(&format!("{base}/btch_unknown00000"), Some(&ns)).await;
    assert_error(status, &error, 404);
    let other = s.other_org_key().await;
    let (status, error) =
        s.call_as(&other, Method::GET, &format!("/v1/batches/{id}"), None, None).await;
    assert_error(status, &error, 404);
    let (status, error) =
        s.call_as(&other, Method::POST, &format!("/v1/batches/{id}/cancel"), None, None).await;
    assert_error(status, &error, 404);
}
both_backends!(bad_requests);

async fn cancel_a_draft(s: &TestServer) {
    let (ns, bucket) = setup(s, "cancel-draft", json!([])).await;
    let a = text_object(s, &ns, &bucket, "a", "first").await;
    let base = format!("/v1/buckets/{bucket}/batches");
    let (_, batch) = s.post(&base, Some(&ns), json!({"object_ids": [a]})).await;
    let id = batch["batch_id"].as_str().unwrap();
    let (status, task) = s
        .post(&format!("/v1/batches/{id}/cancel?reason=changed%20my%20mind"), None, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["status"], "CANCELED");
    assert!(task["cancellation"].is_object(), "{task}");
    let (_, batch) = s.get(&format!("{base}/{id}"), Some(&ns)).await;
    assert_eq!(batch["status"], "CANCELED");
    assert_eq!(batch["lifecycle_reason"], "changed my mind");
    // Cancelling again answers the same task.
    let (status, again) = s.post(&format!("{base}/{id}/cancel"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["task_id"], task["task_id"]);
}
both_backends!(cancel_a_draft);

async fn confirm_submits_a_batch(s: &TestServer) {
    let (ns, bucket) = setup(s, "upload-batches", json!([])).await;
    let base = format!("/v1/buckets/{bucket}/uploads");
    let body = json!({"filename": "note.txt", "content_type": "text/plain",
                      "blob_property": "content", "blob_type": "text"});
    let (status, upload) = s.post(&base, Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{upload}");
    let id = upload["upload_id"].as_str().unwrap();
    let url = upload["presigned_url"].as_str().unwrap();
    let put = reqwest::Client::new()
        .put(url)
        .header("content-type", "text/plain")
        .body("a note")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);

    let path = format!("{base}/{id}/confirm");
    let (status, confirmed) = s.post(&path, Some(&ns), json!({"auto_submit_batch": true})).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    let batch_id = confirmed["batch_id"].as_str().unwrap().to_string();
    assert!(confirmed["task_id"].is_string(), "{confirmed}");
    let batch = wait_batch(s, &ns, &bucket, &batch_id).await;
    assert_eq!(batch["status"], "COMPLETED", "{batch}");
    assert_eq!(batch["object_ids"], json!([confirmed["object_id"]]));

    // Confirming again answers the same batch instead of submitting another.
    let (status, again) = s.post(&path, Some(&ns), json!({"auto_submit_batch": true})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["batch_id"], json!(batch_id));
    let (_, list) =
        s.post(&format!("/v1/buckets/{bucket}/batches/list"), Some(&ns), json!({})).await;
    assert_eq!(list["total_count"], 1);
}
both_backends!(confirm_submits_a_batch);

/// Starts a receiver on 127.0.0.1 that keeps every JSON body posted to it.
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{address}/hook"), seen)
}

async fn callback_and_event(backend: crate::common::Backend) {
    let Some(s) = crate::common::start_allowing(backend, "127.0.0.1/32").await else { return };
    let (ns, bucket) = setup(&s, "callbacks", json!([])).await;
    let a = text_object(&s, &ns, &bucket, "a", "first").await;
    let base = format!("/v1/buckets/{bucket}/batches");
    let (_, batch) = s.post(&base, Some(&ns), json!({"object_ids": [a]})).await;
    let id = batch["batch_id"].as_str().unwrap().to_string();
    let (url, seen) = receiver().await;
    let (status, task) =
        s.post(&format!("{base}/{id}/submit"), Some(&ns), json!({"webhook_url": url})).await;
    assert_eq!(status, StatusCode::OK, "{task}");
    let done = wait_batch(&s, &ns, &bucket, &id).await;
    assert_eq!(done["webhook_url"], json!(url));

    let mut body = Value::Null;
    for _ in 0..400 {
        if let Some(first) = seen.lock().unwrap().first() {
            body = first.clone();
        }
        if !body.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(body["batch_id"], json!(id), "{body}");
    assert_eq!(body["status"], "COMPLETED");
    assert_eq!(body["documents_written"], 0);
    assert_eq!(body["progress"]["processed"], 1);
    assert!(body["completed_at"].is_string(), "{body}");
    assert!(body.get("failure_reason").is_some(), "{body}");

    // The end is in the change feed too.
    let mut found = false;
    for _ in 0..200 {
        let (_, feed) = s.get("/v1/events?event_type=batch.completed", None).await;
        found = feed["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["payload"]["batch_id"] == json!(id));
        if found {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(found, "batch.completed is in the feed");
    assert_eq!(seen.lock().unwrap().len(), 1, "the callback is sent once");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_and_event_sqlite() {
    callback_and_event(crate::common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_and_event_postgres() {
    callback_and_event(crate::common::Backend::Postgres).await;
}

/// The embeddings service the suite runs (scripts/embed-server.sh), when there is one.
fn embeddings() -> Option<sluice::config::EmbeddingSettings> {
    let Ok(url) = std::env::var("SLUICE_TEST_EMBEDDINGS_URL") else {
        assert!(
            std::env::var("SLUICE_TEST_REQUIRE_EMBEDDINGS").as_deref() != Ok("1"),
            "SLUICE_TEST_EMBEDDINGS_URL is not set: run `eval \"$(scripts/embed-server.sh up)\"`"
        );
        eprintln!("skipping: SLUICE_TEST_EMBEDDINGS_URL is not set");
        return None;
    };
    let model = std::env::var("SLUICE_TEST_EMBEDDINGS_MODEL").unwrap_or_default();
    Some(sluice::config::EmbeddingSettings { url, model, api_key: None, images: false })
}

/// With an embeddings service configured, text chunks carry vectors from the real model:
/// 384 numbers, returned only when asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_get_vectors_from_the_embeddings_service() {
    let Some(settings) = embeddings() else { return };
    let processing =
        sluice::config::ProcessingSettings { embeddings: Some(settings), ..Default::default() };
    let s =
        crate::common::start_processing(crate::common::Backend::Sqlite, processing).await.unwrap();
    let extractors = json!([{"feature_extractor_name": "text_extractor", "version": "v1"}]);
    let (ns, bucket) = setup(&s, "vectors", extractors).await;
    let a = text_object(&s, &ns, &bucket, "a", "Rivers carry water to the sea.").await;
    let base = format!("/v1/buckets/{bucket}/batches");
    let (_, batch) = s.post(&base, Some(&ns), json!({"object_ids": [a]})).await;
    let id = batch["batch_id"].as_str().unwrap();
    s.post(&format!("{base}/{id}/submit"), Some(&ns), json!({})).await;
    let done = wait_batch(&s, &ns, &bucket, id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");

    let collection = done["collection_ids"][0].as_str().unwrap();
    let path = format!("/v1/collections/{collection}/documents/list");
    let (status, plain) = s.post(&path, Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    assert!(plain["results"][0].get("embedding").is_none(), "vectors only when asked for");
    let (_, with) = s.post(&format!("{path}?return_vectors=true"), Some(&ns), json!({})).await;
    let vector = with["results"][0]["embedding"].as_array().unwrap();
    assert_eq!(vector.len(), 384);
    let norm: f64 = vector.iter().map(|v| v.as_f64().unwrap().powi(2)).sum::<f64>().sqrt();
    assert!(norm > 0.5, "a real vector, not zeros: norm {norm}");
    s.stop().await;
}
