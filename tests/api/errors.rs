use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{Backend, TestServer, assert_error, start_with};

async fn malformed_requests_get_the_envelope(s: &TestServer) {
    let ns = s.namespace("errs").await;
    let (status, body) = s.raw(Method::POST, "/v1/namespaces", None, "{not json").await;
    assert_error(status, &body, 400);
    let (status, body) = s.raw(Method::POST, "/v1/namespaces", None, "[1, 2]").await;
    assert_error(status, &body, 422);
    let (status, body) = s.get("/v1/nowhere", None).await;
    assert_error(status, &body, 404);
    let (status, body) = s.call(Method::PATCH, "/v1/tasks/list", None, None).await;
    assert_error(status, &body, 405);
    // An empty body on a list POST reads as {} (the official client sends none).
    let (status, body) = s.raw(Method::POST, "/v1/buckets/list", Some(&ns), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Strict types: 5.0 and "5" are not integers.
    for limit in [json!(5.5), json!("5")] {
        let (status, body) = s.post("/v1/namespaces/list", None, json!({"limit": limit})).await;
        assert_error(status, &body, 422);
    }
    let (status, body) = s.post("/v1/tasks/list", None, json!({"status": "CANCELLED"})).await;
    assert_error(status, &body, 422);
}
both_backends!(malformed_requests_get_the_envelope);

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let limits = sluice::config::Limits { max_body_bytes: 1024, ..Default::default() };
    let s = start_with(Backend::Sqlite, limits).await.unwrap();
    let big = "x".repeat(4096);
    let (status, body) =
        s.post("/v1/namespaces", None, json!({"namespace_name": "big", "description": big})).await;
    assert_error(status, &body, 413);
    let (_, list) = s.get("/v1/namespaces", None).await;
    assert_eq!(list["total_count"], 0);
    s.stop().await;
}

#[tokio::test]
async fn oversized_inline_blobs_are_refused() {
    let limits = sluice::config::Limits { max_inline_blob_bytes: 8, ..Default::default() };
    let s = start_with(Backend::Sqlite, limits).await.unwrap();
    let ns = s.namespace("small").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {"doc": {"type": "text"}}})).await;
    let body =
        json!({"blobs": [{"property": "doc", "type": "text", "data": "more than eight bytes"}]});
    let (status, answer) = s.post(&format!("/v1/buckets/{bucket}/objects"), Some(&ns), body).await;
    let error = assert_error(status, &answer, 422);
    assert!(error["message"].as_str().unwrap().contains("blobs[0]"), "{error}");
    s.stop().await;
}
