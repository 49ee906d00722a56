use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{TestServer, assert_error};

async fn lifecycle(s: &TestServer) {
    let body = json!({
        "namespace_name": "media",
        "description": "pictures",
        "mode": "managed",
        "feature_extractors": [{"feature_extractor_name": "text_extractor", "version": "v1"}],
        "payload_indexes": [{"field_name": "title", "type": "keyword"}],
    });
    let (status, ns) = s.post("/v1/namespaces", None, body).await;
    assert_eq!(status, StatusCode::OK, "{ns}");
    let id = ns["namespace_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ns_"));
    assert_eq!(ns["namespace_name"], "media");
    assert_eq!(ns["feature_extractors"][0]["feature_extractor_id"], "text_extractor_v1");
    assert_eq!(ns["payload_index_count"], 1);
    assert_eq!(ns["bucket_count"], 0);
    assert_eq!(ns["namespace_ready"], true);

    // By name and by id.
    let (_, by_name) = s.get("/v1/namespaces/media", None).await;
    let (_, by_id) = s.get(&format!("/v1/namespaces/{id}"), None).await;
    assert_eq!(by_name["namespace_id"], json!(id));
    assert_eq!(by_id["namespace_name"], "media");

    // PATCH appends extractors and changes the description; PUT renames.
    let patch = json!({"description": "photos",
        "feature_extractors": [{"feature_extractor_name": "image_extractor", "version": "v1"}]});
    let (status, patched) = s.call(Method::PATCH, "/v1/namespaces/media", None, Some(patch)).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["description"], "photos");
    assert_eq!(patched["feature_extractors"].as_array().unwrap().len(), 2);
    let put = json!({"namespace_name": "media2"});
    let (status, renamed) =
        s.call(Method::PUT, &format!("/v1/namespaces/{id}"), None, Some(put)).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["namespace_name"], "media2");
    let (status, body) = s.get("/v1/namespaces/media", None).await;
    assert_error(status, &body, 404);

    // Stats count buckets.
    s.bucket(&id, "b1", json!({"properties": {"t": {"type": "string"}}})).await;
    let (status, stats) = s.get("/v1/namespaces/media2/stats", None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["bucket_count"], 1);
    assert_eq!(stats["object_count"], 0);
}
both_backends!(lifecycle);

async fn names_are_unique_and_validated(s: &TestServer) {
    s.namespace("alpha").await;
    let (status, body) = s.post("/v1/namespaces", None, json!({"namespace_name": "alpha"})).await;
    let error = assert_error(status, &body, 409);
    assert_eq!(error["code"], "namespace_name_taken");

    let (status, body) = s.post("/v1/namespaces", None, json!({"namespace_name": "ab"})).await;
    let error = assert_error(status, &body, 422);
    assert!(error["message"].as_str().unwrap().contains("namespace_name"), "{error}");

    let (status, body) = s.post("/v1/namespaces", None, json!({"namespace_name": 5})).await;
    let error = assert_error(status, &body, 422);
    assert!(error["message"].as_str().unwrap().starts_with("namespace_name"), "{error}");

    let (status, body) = s.post("/v1/namespaces", None, json!({})).await;
    assert_error(status, &body, 422);
}
both_backends!(names_are_unique_and_validated);

async fn list_paginates_and_searches(s: &TestServer) {
    for i in 0..7 {
        s.namespace(&format!("space-{i}")).await;
    }
    s.namespace("other-thing").await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = json!({"limit": 3, "search": "SPACE"});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let (status, page) = s.post("/v1/namespaces/list", None, body).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total_count"], 7);
        for ns in page["results"].as_array().unwrap() {
            seen.push(ns["namespace_name"].as_str().unwrap().to_string());
        }
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("space-{i}")).collect();
    assert_eq!(seen, expected);

    let (status, page) = s.get("/v1/namespaces?limit=2&page=2", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert_eq!(page["results"][0]["namespace_name"], "space-2");
    assert_eq!(page["total_count"], 8);

    let (status, body) = s.get("/v1/namespaces?limit=0", None).await;
    assert_error(status, &body, 422);
}
both_backends!(list_paginates_and_searches);

async fn delete_runs_as_a_task(s: &TestServer) {
    let id = s.namespace("doomed").await;
    let bucket = s.bucket(&id, "b", json!({"properties": {"t": {"type": "string"}}})).await;
    for i in 0..3 {
        let (status, body) = s
            .post(&format!("/v1/buckets/{bucket}/objects"), Some(&id), json!({"t": format!("{i}")}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let (status, body) = s.call(Method::DELETE, "/v1/namespaces/doomed", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["namespace_id"], json!(id));
    let task = s.wait_task(body["task_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(task["task_type"], "api_namespaces_delete");
    assert_eq!(task["outputs"][0]["objects_deleted"], 3);

    let (status, body) = s.get(&format!("/v1/namespaces/{id}"), None).await;
    assert_error(status, &body, 404);
    // The name is free again.
    s.namespace("doomed").await;
}
both_backends!(delete_runs_as_a_task);

async fn expired_namespaces_are_deleted(s: &TestServer) {
    let id = s.namespace("short-lived").await;
    let patch = json!({"expires_at": "2020-01-01T00:00:00Z"});
    let (status, body) =
        s.call(Method::PATCH, &format!("/v1/namespaces/{id}"), None, Some(patch)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_at"], "2020-01-01T00:00:00Z");
    for _ in 0..400 {
        let (status, _) = s.get(&format!("/v1/namespaces/{id}"), None).await;
        if status == StatusCode::NOT_FOUND {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the expired namespace was not deleted");
}
both_backends!(expired_namespaces_are_deleted);

async fn ttl_sets_a_future_expiry(s: &TestServer) {
    let body = json!({"namespace_name": "with-ttl", "ttl_seconds": 3600});
    let (status, ns) = s.post("/v1/namespaces", None, body).await;
    assert_eq!(status, StatusCode::OK, "{ns}");
    let expires = sluice::model::parse_time(ns["expires_at"].as_str().unwrap()).unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(59) && left <= time::Duration::hours(1), "{left}");
    let (status, body) = s
        .post("/v1/namespaces", None, json!({"namespace_name": "bad-ttl", "ttl_seconds": 5}))
        .await;
    assert_error(status, &body, 422);
}
both_backends!(ttl_sets_a_future_expiry);
