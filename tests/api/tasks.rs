use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{TestServer, assert_error};

async fn list_filter_and_kill(s: &TestServer) {
    let ns = s.namespace("tasky").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {}})).await;
    let (_, deletion) =
        s.call(Method::DELETE, &format!("/v1/buckets/{bucket}"), Some(&ns), None).await;
    let task_id = deletion["task_id"].as_str().unwrap().to_string();
    s.wait_task(&task_id).await;

    let (status, list) =
        s.post("/v1/tasks/list", None, json!({"task_type": "api_buckets_delete"})).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["results"][0]["task_id"], json!(task_id));
    let (_, list) =
        s.post("/v1/tasks/list", None, json!({"task_type": "api_namespaces_delete"})).await;
    assert_eq!(list["results"], json!([]));
    let (status, body) = s.post("/v1/tasks/list", None, json!({"task_type": "made_up"})).await;
    assert_error(status, &body, 422);

    // Killing a finished task forgets it; killing an unknown one succeeds too.
    let (status, body) = s.call(Method::DELETE, &format!("/v1/tasks/{task_id}"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    let (status, body) = s.get(&format!("/v1/tasks/{task_id}"), None).await;
    assert_error(status, &body, 404);
    let (status, _) = s.call(Method::DELETE, "/v1/tasks/unknown", None, None).await;
    assert_eq!(status, StatusCode::OK);
}
both_backends!(list_filter_and_kill);
