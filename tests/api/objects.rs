use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{TestServer, assert_error};

async fn setup(s: &TestServer) -> (String, String) {
    let ns = s.namespace("objects").await;
    let schema = json!({"properties": {
        "title": {"type": "string"},
        "rank": {"type": "integer"},
        "image": {"type": "image"},
        "notes": {"type": "text"},
    }});
    let bucket = s.bucket(&ns, "things", schema).await;
    (ns, bucket)
}

async fn blob_forms_and_fields(s: &TestServer) {
    let (ns, bucket) = setup(s).await;
    let path = format!("/v1/buckets/{bucket}/objects");
    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG fake bytes");
    let body = json!({
        "title": "cat",
        "rank": 3,
        "metadata": {"source": "camera", "nested": {"a": [1, 2]}},
        "key_prefix": "pets/",
        "blobs": [
            {"property": "image", "type": "image", "data": {"base64": png, "mime_type": "image/png", "filename": "cat.png"}},
            {"property": "notes", "type": "text", "data": "a fluffy cat"},
        ],
    });
    let (status, object) = s.post(&path, Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    assert!(object["object_id"].as_str().unwrap().starts_with("obj_"));
    assert_eq!(object["bucket_id"], json!(bucket));
    assert_eq!(object["title"], "cat");
    assert_eq!(object["rank"], 3);
    assert_eq!(object["metadata"]["nested"]["a"], json!([1, 2]));
    assert_eq!(object["status"], "PENDING");
    assert_eq!(object["key_prefix"], "pets/");
    let image = &object["blobs"][0];
    assert!(image["blob_id"].as_str().unwrap().starts_with("blob_"));
    assert_eq!(image["type"], "image");
    assert_eq!(image["details"]["size_bytes"], 15);
    assert_eq!(image["details"]["mime_type"], "image/png");
    assert!(image["details"]["hash"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(object["blobs"][1]["details"]["size_bytes"], 12);

    // URL and data-URI forms.
    let data_uri = format!("data:image/png;base64,{png}");
    for data in [
        json!("https://example.com/a/cat.jpg"),
        json!({"url": "s3://bucket/cat.jpg"}),
        json!(data_uri),
    ] {
        let body = json!({"blobs": [{"property": "image", "type": "image", "data": data}]});
        let (status, object) = s.post(&path, Some(&ns), body).await;
        assert_eq!(status, StatusCode::OK, "{object}");
        assert_eq!(object["blobs"][0]["property"], "image");
    }
    let (_, object) = s
        .post(&path, Some(&ns), json!({"blobs": [{"property": "image", "type": "image", "data": "https://example.com/a/cat.jpg"}]}))
        .await;
    assert_eq!(object["blobs"][0]["properties"]["url"], "https://example.com/a/cat.jpg");
    assert_eq!(object["blobs"][0]["details"]["filename"], "cat.jpg");

    // GET returns what create returned.
    let id = object["object_id"].as_str().unwrap();
    let (status, fetched) = s.get(&format!("{path}/{id}"), Some(&ns)).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["blobs"], object["blobs"]);
}
both_backends!(blob_forms_and_fields);

async fn schema_violations_are_refused(s: &TestServer) {
    let (ns, bucket) = setup(s).await;
    let path = format!("/v1/buckets/{bucket}/objects");
    let cases = [
        (json!({"rank": "three"}), "rank"),
        (json!({"rank": 1.5}), "rank"),
        (
            json!({"blobs": [{"property": "image", "type": "video", "data": "https://x.org/a.mp4"}]}),
            "blobs[0].type",
        ),
        (
            json!({"blobs": [{"property": "nope", "type": "image", "data": "https://x.org/a.png"}]}),
            "blobs[0].property",
        ),
        (
            json!({"blobs": [{"property": "image", "type": "image", "data": "file:///etc/passwd"}]}),
            "blobs[0].data",
        ),
        (
            json!({"blobs": [{"property": "image", "type": "image", "data": {"base64": "!!!"}}]}),
            "blobs[0].data",
        ),
        (json!({"object_id": "obj_mine"}), "object_id"),
        (json!({"auto_process": true}), "auto_process"),
        (json!({"idempotency_key": 7}), "idempotency_key"),
    ];
    for (body, field) in cases {
        let (status, answer) = s.post(&path, Some(&ns), body.clone()).await;
        let error = assert_error(status, &answer, 422);
        assert!(error["message"].as_str().unwrap().contains(field), "{body} -> {error}");
    }
    let (_, list) = s.post(&format!("{path}/list"), Some(&ns), json!({})).await;
    assert_eq!(list["results"], json!([]), "nothing was written");

    let required = json!({"properties": {"title": {"type": "string", "required": true}, "image": {"type": "image", "required": true}}});
    let strict = s.bucket(&ns, "strict", required).await;
    let (status, body) =
        s.post(&format!("/v1/buckets/{strict}/objects"), Some(&ns), json!({"title": "t"})).await;
    let error = assert_error(status, &body, 422);
    assert!(error["message"].as_str().unwrap().contains("blobs"), "{error}");
}
both_backends!(schema_violations_are_refused);

async fn idempotency_and_duplicates(s: &TestServer) {
    let (ns, bucket) = setup(s).await;
    let path = format!("/v1/buckets/{bucket}/objects");
    let (_, first) =
        s.post(&path, Some(&ns), json!({"title": "a", "idempotency_key": "req-1"})).await;
    let (status, again) =
        s.post(&path, Some(&ns), json!({"title": "b", "idempotency_key": "req-1"})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["object_id"], first["object_id"]);
    assert_eq!(again["title"], "a");

    let blob = json!([{"property": "notes", "type": "text", "data": "same words"}]);
    let (_, one) = s.post(&path, Some(&ns), json!({"blobs": blob})).await;
    let (_, two) = s.post(&path, Some(&ns), json!({"blobs": blob, "skip_duplicates": true})).await;
    assert_eq!(one["object_id"], two["object_id"]);
    let (_, three) = s.post(&path, Some(&ns), json!({"blobs": blob})).await;
    assert_ne!(one["object_id"], three["object_id"]);
}
both_backends!(idempotency_and_duplicates);

async fn unique_key_policies(s: &TestServer) {
    let ns = s.namespace("unique").await;
    let body = json!({"bucket_name": "skus", "bucket_schema": {"properties": {"sku": {"type": "string"}, "price": {"type": "number"}}},
                      "unique_key": {"fields": ["sku"]}});
    let (status, bucket) = s.post("/v1/buckets", Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{bucket}");
    let path = format!("/v1/buckets/{}/objects", bucket["bucket_id"].as_str().unwrap());

    let (status, body) = s.post(&path, Some(&ns), json!({"sku": "A", "price": 1})).await;
    assert_error(status, &body, 400);
    let (status, created) =
        s.post(&format!("{path}?policy=insert"), Some(&ns), json!({"sku": "A", "price": 1})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (status, body) =
        s.post(&format!("{path}?policy=insert"), Some(&ns), json!({"sku": "A", "price": 2})).await;
    assert_error(status, &body, 409);
    let (status, body) =
        s.post(&format!("{path}?policy=update"), Some(&ns), json!({"sku": "B", "price": 2})).await;
    assert_error(status, &body, 404);
    let (status, updated) =
        s.post(&format!("{path}?policy=update"), Some(&ns), json!({"sku": "A", "price": 5})).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["object_id"], created["object_id"]);
    assert_eq!(updated["price"], 5);
    let (status, upserted) =
        s.post(&format!("{path}?policy=upsert"), Some(&ns), json!({"sku": "C", "price": 9})).await;
    assert_eq!(status, StatusCode::OK, "{upserted}");
    let (status, body) =
        s.post(&format!("{path}?policy=sometimes"), Some(&ns), json!({"sku": "D"})).await;
    assert_error(status, &body, 422);
    let (status, body) =
        s.post(&format!("{path}?policy=insert"), Some(&ns), json!({"price": 1})).await;
    assert_error(status, &body, 422);

    let (_, list) = s.post(&format!("{path}/list"), Some(&ns), json!({})).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 2);
    let (status, body) =
        s.post(&format!("{path}/batch"), Some(&ns), json!({"objects": [{"sku": "E"}]})).await;
    assert_error(status, &body, 422);
}
both_backends!(unique_key_policies);

async fn batch_partial_success(s: &TestServer) {
    let (ns, bucket) = setup(s).await;
    let path = format!("/v1/buckets/{bucket}/objects/batch");
    let objects = json!([{"title": "ok-1"}, {"rank": "bad"}, {"title": "ok-2", "idempotency_key": "x"},
                         {"title": "replay", "idempotency_key": "x"}, "not an object"]);
    let (status, body) = s.post(&path, Some(&ns), json!({"objects": objects})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total_requested"], 5);
    assert_eq!(body["succeeded_count"], 3);
    assert_eq!(body["failed_count"], 2);
    assert_eq!(body["failed"][0]["object_index"], 1);
    assert_eq!(body["failed"][0]["error_type"], "ValidationError");
    assert_eq!(body["failed"][1]["object_index"], 4);
    let succeeded = body["succeeded"].as_array().unwrap();
    assert_eq!(succeeded[2]["replayed"], true);
    assert_eq!(succeeded[2]["replayed_by"], "idempotency_key");
    assert_eq!(succeeded[2]["object_id"], succeeded[1]["object_id"]);

    let (status, body) =
        s.post(&path, Some(&ns), json!({"objects": [{"rank": "x"}, {"rank": "y"}]})).await;
    assert_eq!(status.as_u16(), 422, "{body}");
    assert_eq!(body["failed_count"], 2);
    assert_eq!(body["succeeded"], json!([]));

    let many: Vec<Value> = (0..101).map(|i| json!({"title": format!("{i}")})).collect();
    let (status, body) = s.post(&path, Some(&ns), json!({"objects": many})).await;
    assert_error(status, &body, 422);
    let (_, list) = s.get(&format!("/v1/buckets/{bucket}/objects?limit=1000"), Some(&ns)).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 2, "only the batch's good rows exist");
}
both_backends!(batch_partial_success);

async fn list_filters_sorts_selects_and_pages(s: &TestServer) {
    let (ns, bucket) = setup(s).await;
    let objects: Vec<Value> = (0..25)
        .map(|i| json!({"title": format!("item-{i:02}"), "rank": i % 5, "metadata": {"even": i % 2 == 0}}))
        .collect();
    let (status, body) = s
        .post(
            &format!("/v1/buckets/{bucket}/objects/batch"),
            Some(&ns),
            json!({"objects": objects}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = format!("/v1/buckets/{bucket}/objects/list");

    // Cursor pages: every object once, in creation order.
    let mut titles = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = if cursor.is_empty() {
            format!("{list}?limit=10")
        } else {
            format!("{list}?limit=10&cursor={cursor}")
        };
        let (status, page) = s.post(&url, Some(&ns), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        titles.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["title"].as_str().unwrap().to_string()),
        );
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("item-{i:02}")).collect();
    assert_eq!(titles, expected);

    // Filters: AND / OR / NOT, and the shorthand.
    let filters = json!({"AND": [{"field": "rank", "operator": "gte", "value": 3},
                                 {"field": "metadata.even", "operator": "eq", "value": true}]});
    let (status, page) =
        s.post(&format!("{list}?limit=100"), Some(&ns), json!({"filters": filters})).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let got: Vec<&str> =
        page["results"].as_array().unwrap().iter().map(|o| o["title"].as_str().unwrap()).collect();
    assert_eq!(got, ["item-04", "item-08", "item-14", "item-18", "item-24"]);

    let filters = json!({"OR": [{"field": "title", "operator": "eq", "value": "item-01"},
                                {"field": "title", "operator": "in", "value": ["item-02", "item-03"]}],
                         "case_sensitive": false});
    let (_, page) =
        s.post(&format!("{list}?limit=100"), Some(&ns), json!({"filters": filters})).await;
    assert_eq!(page["results"].as_array().unwrap().len(), 3, "{page}");

    let filters = json!({"NOT": [{"field": "rank", "operator": "lt", "value": 4}]});
    let (_, page) =
        s.post(&format!("{list}?limit=100"), Some(&ns), json!({"filters": filters})).await;
    assert_eq!(page["results"].as_array().unwrap().len(), 5, "{page}");

    let (_, page) = s
        .post(&format!("{list}?limit=100"), Some(&ns), json!({"filters": {"title": "item-07"}}))
        .await;
    assert_eq!(page["results"].as_array().unwrap().len(), 1, "{page}");

    // Sort descending by a custom field with a cursor, and select.
    let body = json!({"sort": {"field": "rank", "direction": "desc"}, "select": ["title"]});
    let mut ranks = Vec::new();
    let mut url = format!("{list}?limit=7");
    loop {
        let (status, page) = s.post(&url, Some(&ns), body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for o in page["results"].as_array().unwrap() {
            assert!(o.get("rank").is_none(), "select keeps only title: {o}");
            assert!(o["object_id"].is_string());
            ranks.push(o["title"].as_str().unwrap()[5..].parse::<i64>().unwrap() % 5);
        }
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => url = format!("{list}?limit=7&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(ranks.len(), 25);
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "{ranks:?}");

    // Bad filters and unknown body keys.
    let (status, body) = s
        .post(
            &list,
            Some(&ns),
            json!({"filters": {"AND": [{"field": "rank", "operator": "near", "value": 1}]}}),
        )
        .await;
    assert_error(status, &body, 422);
    let (status, body) = s.post(&list, Some(&ns), json!({"surprise": 1})).await;
    assert_error(status, &body, 422);
    let (status, body) = s.post(&format!("{list}?cursor=nonsense"), Some(&ns), json!({})).await;
    assert_error(status, &body, 422);
    let (status, body) =
        s.get(&format!("/v1/buckets/{bucket}/objects?limit=5&include_total=true"), Some(&ns)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pagination"]["total"], 25);
    assert_eq!(body["stats"]["total_objects"], 5);
}
both_backends!(list_filters_sorts_selects_and_pages);

async fn update_patch_delete(s: &TestServer) {
    let (ns, bucket) = setup(s).await;
    let path = format!("/v1/buckets/{bucket}/objects");
    let (_, object) =
        s.post(&path, Some(&ns), json!({"title": "t", "metadata": {"color": "red"}})).await;
    let id = object["object_id"].as_str().unwrap();
    let one = format!("{path}/{id}");

    let put = json!({"metadata": {"color": "blue", "size": 3}, "key_prefix": "k/"});
    let (status, updated) = s.call(Method::PUT, &one, Some(&ns), Some(put)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["metadata"]["color"], "blue");
    assert_eq!(updated["size"], 3, "keys not already in metadata go to the root");
    assert_eq!(updated["key_prefix"], "k/");

    let (status, patched) = s.call(Method::PATCH, &one, Some(&ns), Some(json!({"rank": 9}))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["rank"], 9);
    assert_eq!(patched["title"], "t");
    let (status, body) =
        s.call(Method::PATCH, &one, Some(&ns), Some(json!({"status": "COMPLETED"}))).await;
    assert_error(status, &body, 422);
    let (status, body) = s.call(Method::PATCH, &one, Some(&ns), Some(json!({"rank": "x"}))).await;
    assert_error(status, &body, 422);

    let (status, body) = s.call(Method::DELETE, &one, Some(&ns), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    let (status, body) = s.get(&one, Some(&ns)).await;
    assert_error(status, &body, 404);
    let (status, body) = s.call(Method::DELETE, &one, Some(&ns), None).await;
    assert_error(status, &body, 404);
}
both_backends!(update_patch_delete);

async fn bulk_soft_delete(s: &TestServer) {
    let (ns, bucket) = setup(s).await;
    let path = format!("/v1/buckets/{bucket}/objects");
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, o) = s.post(&path, Some(&ns), json!({"title": format!("{i}")})).await;
        ids.push(o["object_id"].as_str().unwrap().to_string());
    }
    let body = json!({"object_ids": [ids[0], ids[1], "obj_missing"], "reason": "cleanup"});
    let (status, answer) = s.post(&format!("{path}/bulk-soft-delete"), Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["soft_deleted"], 2);
    assert_eq!(answer["requested"], 3);
    let (_, list) = s.post(&format!("{path}/list"), Some(&ns), json!({})).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
    let (status, body) = s.get(&format!("{path}/{}", ids[0]), Some(&ns)).await;
    assert_error(status, &body, 404);
    let (_, bucket_now) = s.get(&format!("/v1/buckets/{bucket}"), Some(&ns)).await;
    assert_eq!(bucket_now["object_count"], 1);

    let (status, body) = s
        .post(
            &format!("{path}/bulk-soft-delete"),
            Some(&ns),
            json!({"object_ids": [], "reason": "x"}),
        )
        .await;
    assert_error(status, &body, 422);
}
both_backends!(bulk_soft_delete);

async fn presigned_urls_serve_the_bytes(s: &TestServer) {
    let (ns, bucket) = setup(s).await;
    let path = format!("/v1/buckets/{bucket}/objects");
    let body = json!({"blobs": [{"property": "notes", "type": "text", "data": "signed bytes"},
                                {"property": "image", "type": "image", "data": "https://example.com/a.png"}]});
    let (_, object) = s.post(&path, Some(&ns), body).await;
    let id = object["object_id"].as_str().unwrap();
    assert!(object["blobs"][0]["presigned_url"].is_null(), "only on request");

    let (status, object) =
        s.get(&format!("{path}/{id}?return_presigned_urls=true"), Some(&ns)).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    let url = object["blobs"][0]["presigned_url"].as_str().unwrap().to_string();
    assert_eq!(object["blobs"][0]["properties"]["presigned_url"], json!(url));
    assert_eq!(object["blobs"][1]["presigned_url"], "https://example.com/a.png");

    let client = reqwest::Client::new();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await.unwrap(), "signed bytes");

    // Any change to the URL breaks its signature; the answer is the 403 envelope.
    let tampered = [
        url.replace("ct=text%2Fplain", "ct=text%2Fhtml"),
        url.replace("method=GET", "method=PUT"),
        url.replace("/blob.txt", "/other.txt"),
        url.split("&sig=").next().unwrap().to_string(),
    ];
    for bad in tampered {
        assert_ne!(bad, url);
        let response = client.get(&bad).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_error(status, &body, 403);
    }

    let (_, list) =
        s.post(&format!("{path}/list?return_presigned_urls=true"), Some(&ns), json!({})).await;
    assert!(
        list["results"][0]["blobs"][0]["presigned_url"].as_str().unwrap().contains("/v1/files/")
    );
}
both_backends!(presigned_urls_serve_the_bytes);

/// Concurrent creates may share one INSERT; each still gets its own answer.
async fn concurrent_creates_are_answered_one_by_one(s: &TestServer) {
    let (ns, bucket) = setup(s).await;
    let path = format!("/v1/buckets/{bucket}/objects");
    let mut calls = Vec::new();
    for i in 0..40 {
        let body = json!({"title": format!("t{i}"), "idempotency_key": format!("key-{}", i % 20)});
        calls.push(s.post(&path, Some(&ns), body));
    }
    let answers = futures::future::join_all(calls).await;
    let mut by_key = std::collections::HashMap::new();
    for (i, (status, object)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK, "{object}");
        let id = object["object_id"].as_str().unwrap().to_string();
        let first = by_key.entry(i % 20).or_insert(id.clone());
        assert_eq!(*first, id, "both creates with key-{} answer the same object", i % 20);
    }
    let (_, list) = s.get(&format!("{path}?limit=100"), Some(&ns)).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 20);
}
both_backends!(concurrent_creates_are_answered_one_by_one);
