use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{TestServer, assert_error};

/// Organization B's key sees none of organization A's resources, on any route: every answer is
/// the same 404 a missing resource gets, and nothing of A's changes.
async fn organizations_are_isolated(s: &TestServer) {
    let ns = s.namespace("tenant-a").await;
    let bucket = s.bucket(&ns, "private", json!({"properties": {"t": {"type": "string"}}})).await;
    let (_, object) =
        s.post(&format!("/v1/buckets/{bucket}/objects"), Some(&ns), json!({"t": "secret"})).await;
    let object = object["object_id"].as_str().unwrap().to_string();
    let (_, del) = s.call(Method::DELETE, "/v1/buckets/does-not-exist", Some(&ns), None).await;
    assert_eq!(del["status"], 404);
    let other_ns = s.namespace("scratch").await;
    let (_, deletion) =
        s.call(Method::DELETE, &format!("/v1/namespaces/{other_ns}"), None, None).await;
    let task = deletion["task_id"].as_str().unwrap().to_string();

    let b = s.other_org_key().await;
    let obj = format!("/v1/buckets/{bucket}/objects/{object}");
    let attempts = [
        (Method::GET, format!("/v1/namespaces/{ns}"), None),
        (Method::GET, "/v1/namespaces/tenant-a".to_string(), None),
        (Method::PATCH, format!("/v1/namespaces/{ns}"), None),
        (Method::DELETE, format!("/v1/namespaces/{ns}"), None),
        (Method::GET, format!("/v1/namespaces/{ns}/stats"), None),
        (Method::GET, format!("/v1/buckets/{bucket}"), Some(ns.as_str())),
        (Method::GET, format!("/v1/buckets/{bucket}/objects"), Some(ns.as_str())),
        (Method::GET, obj.clone(), Some(ns.as_str())),
        (Method::DELETE, obj.clone(), Some(ns.as_str())),
        (Method::GET, format!("/v1/tasks/{task}"), None),
    ];
    for (method, path, header) in attempts {
        let body = (method == Method::PATCH).then(|| json!({"description": "mine now"}));
        let (status, answer) = s.call_as(&b, method.clone(), &path, header, body).await;
        let error = assert_error(status, &answer, 404);
        assert!(!answer.to_string().contains("secret"), "{method} {path}: {error}");
    }

    // B's lists are empty, and B can use the same names without clashing.
    let (_, list) = s.call_as(&b, Method::GET, "/v1/namespaces", None, None).await;
    assert_eq!(list["total_count"], 0);
    let (status, mine) = s
        .call_as(
            &b,
            Method::POST,
            "/v1/namespaces",
            None,
            Some(json!({"namespace_name": "tenant-a"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_ne!(mine["namespace_id"], json!(ns));
    let (_, tasks) = s.call_as(&b, Method::POST, "/v1/tasks/list", None, Some(json!({}))).await;
    assert_eq!(tasks["results"], json!([]));

    // A's object is untouched.
    let (status, still) = s.get(&obj, Some(&ns)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still["t"], "secret");
}
both_backends!(organizations_are_isolated);

/// A namespace's header does not reach another namespace's buckets.
async fn namespaces_are_isolated(s: &TestServer) {
    let a = s.namespace("ns-a").await;
    let b = s.namespace("ns-b").await;
    let bucket = s.bucket(&a, "only-a", json!({"properties": {}})).await;
    for path in [
        format!("/v1/buckets/{bucket}"),
        "/v1/buckets/only-a".to_string(),
        format!("/v1/buckets/{bucket}/objects"),
    ] {
        let (status, body) = s.get(&path, Some(&b)).await;
        assert_error(status, &body, 404);
    }
    let (status, body) =
        s.post(&format!("/v1/buckets/{bucket}/objects"), Some(&b), json!({})).await;
    assert_error(status, &body, 404);
    let (_, list) = s.get("/v1/buckets", Some(&b)).await;
    assert_eq!(list["total_count"], 0);
    // The same bucket name is free in the other namespace.
    s.bucket(&b, "only-a", json!({"properties": {}})).await;
}
both_backends!(namespaces_are_isolated);

async fn keys_are_checked(s: &TestServer) {
    let (status, body) =
        s.call_as("sk_wrong_key_000000000000", Method::GET, "/v1/me", None, None).await;
    assert_error(status, &body, 401);
    let (status, body) = s.call_as("", Method::GET, "/v1/namespaces", None, None).await;
    assert_error(status, &body, 401);
    let (status, me) = s.get("/v1/me", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert!(me["organization_id"].as_str().unwrap().starts_with("org_"));

    let (status, body) = s.get("/v1/buckets", None).await;
    let error = assert_error(status, &body, 400);
    assert_eq!(error["code"], "namespace_required");
    let (status, body) = s.get("/v1/buckets", Some("no-such-namespace")).await;
    assert_error(status, &body, 404);

    // Health needs no key.
    let client = reqwest::Client::new();
    for path in ["/v1/health", "/v1/health/liveness", "/v1/health/readiness"] {
        let response = client.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}
both_backends!(keys_are_checked);
