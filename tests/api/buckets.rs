use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{TestServer, assert_error};

fn sdk_schema() -> Value {
    // The official SDK sends every optional key of a schema field, mostly as null.
    let field = |t: &str| {
        json!({"type": t, "description": null, "default": null, "required": false, "enum": null,
               "examples": null, "items": null, "properties": null})
    };
    json!({"properties": {"title": field("string"), "video": field("video"), "rank": field("integer")}})
}

async fn lifecycle(s: &TestServer) {
    let ns = s.namespace("bucketspace").await;
    let body = json!({"bucket_name": "clips", "bucket_schema": sdk_schema(), "storage_class": "nearline",
                      "metadata": {"team": "a"}, "description": "videos"});
    let (status, bucket) = s.post("/v1/buckets", Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{bucket}");
    let id = bucket["bucket_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("bkt_"));
    assert_eq!(bucket["storage_class"], "nearline");
    assert_eq!(bucket["object_count"], 0);
    assert_eq!(bucket["total_size_bytes"], 0);
    assert_eq!(bucket["bucket_schema"]["properties"]["video"]["type"], "video");
    assert_eq!(bucket["metadata"]["team"], "a");

    // The namespace header takes a name too; the bucket path takes a name too.
    let (status, by_name) = s.get("/v1/buckets/clips", Some("bucketspace")).await;
    assert_eq!(status, StatusCode::OK, "{by_name}");
    assert_eq!(by_name["bucket_id"], json!(id));

    // PUT changes the storage class and adds an optional property.
    let mut schema = sdk_schema();
    schema["properties"]["extra"] = json!({"type": "string"});
    let put = json!({"storage_class": "archive", "bucket_schema": schema});
    let (status, updated) =
        s.call(Method::PUT, &format!("/v1/buckets/{id}"), Some(&ns), Some(put)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["storage_class"], "archive");
    assert_eq!(updated["bucket_schema"]["properties"]["extra"]["type"], "string");

    // Dropping a property breaks the schema unless forced.
    let narrow = json!({"bucket_schema": {"properties": {"title": {"type": "string"}}}});
    let path = format!("/v1/buckets/{id}");
    let (status, body) = s.call(Method::PATCH, &path, Some(&ns), Some(narrow.clone())).await;
    assert_error(status, &body, 409);
    let forced = format!("{path}?force_schema_break=true");
    let (status, body) = s.call(Method::PATCH, &forced, Some(&ns), Some(narrow)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["bucket_schema"]["properties"].as_object().unwrap().len(), 1);

    // PATCH cannot change the storage class.
    let (status, body) =
        s.call(Method::PATCH, &path, Some(&ns), Some(json!({"storage_class": "standard"}))).await;
    assert_error(status, &body, 422);

    // Lists: POST and GET.
    s.bucket(&ns, "second", json!({"properties": {}})).await;
    let (status, list) = s.post("/v1/buckets/list", Some(&ns), json!({"search": "CLI"})).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["results"][0]["bucket_name"], "clips");
    let (status, list) = s.get("/v1/buckets?limit=1", Some(&ns)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total_count"], 2);
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
    assert!(list["pagination"]["next_cursor"].is_string());
}
both_backends!(lifecycle);

async fn bad_buckets_are_refused(s: &TestServer) {
    let ns = s.namespace("strict").await;
    let cases = [
        (
            json!({"bucket_name": "x", "bucket_schema": {"properties": {"v": {"type": "VIDEO"}}}}),
            422,
            "bucket_schema.properties.v.type",
        ),
        (
            json!({"bucket_name": "x", "bucket_schema": {"properties": {}}, "storage_class": "glacier"}),
            422,
            "storage_class",
        ),
        (json!({"bucket_name": "x"}), 422, "bucket_schema"),
        (json!({"bucket_schema": {"properties": {}}}), 422, "bucket_name"),
        (
            json!({"bucket_name": "has space", "bucket_schema": {"properties": {}}}),
            422,
            "bucket_name",
        ),
        (
            json!({"bucket_name": "x", "bucket_schema": {"properties": {"a": {"type": "string"}}},
                "unique_key": {"fields": []}}),
            422,
            "unique_key.fields",
        ),
    ];
    for (body, code, field) in cases {
        let (status, answer) = s.post("/v1/buckets", Some(&ns), body).await;
        let error = assert_error(status, &answer, code);
        assert!(error["message"].as_str().unwrap().contains(field), "{field}: {error}");
    }

    s.bucket(&ns, "dup", json!({"properties": {}})).await;
    let (status, body) = s
        .post(
            "/v1/buckets",
            Some(&ns),
            json!({"bucket_name": "dup", "bucket_schema": {"properties": {}}}),
        )
        .await;
    let error = assert_error(status, &body, 409);
    assert_eq!(error["code"], "bucket_name_taken");

    // Nothing half-written: the refused buckets are not listed.
    let (_, list) = s.post("/v1/buckets/list", Some(&ns), json!({})).await;
    assert_eq!(list["total_count"], 1);
}
both_backends!(bad_buckets_are_refused);

async fn delete_removes_objects_and_blobs(s: &TestServer) {
    let ns = s.namespace("deleting").await;
    let schema = json!({"properties": {"doc": {"type": "text"}}});
    let id = s.bucket(&ns, "b", schema).await;
    let (status, object) = s
        .post(
            &format!("/v1/buckets/{id}/objects"),
            Some(&ns),
            json!({"blobs": [{"property": "doc", "type": "text", "data": "hello world"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{object}");
    let key = object["blobs"][0]["properties"]["storage_key"].as_str().unwrap().to_string();
    let blob_path = s.config.storage_url.strip_prefix("file:").unwrap().to_string() + "/" + &key;
    assert_eq!(std::fs::read_to_string(&blob_path).unwrap(), "hello world");

    let (status, body) =
        s.call(Method::DELETE, &format!("/v1/buckets/{id}"), Some(&ns), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["object_count"], 1);
    let task = s.wait_task(body["task_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");

    let (status, body) = s.get(&format!("/v1/buckets/{id}"), Some(&ns)).await;
    assert_error(status, &body, 404);
    assert!(!std::path::Path::new(&blob_path).exists(), "blob file is gone");
}
both_backends!(delete_removes_objects_and_blobs);
