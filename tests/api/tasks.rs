use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::common::{Backend, TestServer, assert_error, start_custom};

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

/// A deletion whose worker died mid-way (its lease still held) is finished by the next process
/// once the lease runs out.
async fn abandoned_work_resumes_after_a_restart(backend: Backend) {
    let Some(s) = start_custom(backend, Default::default(), 0).await else { return };
    let ns = s.namespace("crashy").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {"t": {"type": "string"}}})).await;
    for i in 0..3 {
        s.post(&format!("/v1/buckets/{bucket}/objects"), Some(&ns), json!({"t": format!("{i}")}))
            .await;
    }
    let (_, deletion) =
        s.call(Method::DELETE, &format!("/v1/buckets/{bucket}"), Some(&ns), None).await;
    let task_id = deletion["task_id"].as_str().unwrap().to_string();
    let (_, task) = s.get(&format!("/v1/tasks/{task_id}"), None).await;
    assert_eq!(task["status"], "PENDING", "no worker runs in this process");

    // A worker of another process claims the job and dies with a two-second lease.
    let store = s.store().await;
    let now = sluice::model::now();
    let lease =
        sluice::model::format_time(time::OffsetDateTime::now_utc() + time::Duration::seconds(2));
    let claimed = store.claim_job("dead-worker", &lease, &now).await.unwrap();
    assert!(claimed.is_some());
    store.close().await;

    let s = s.restart(2).await;
    let task = s.wait_task(&task_id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(task["outputs"][0]["objects_deleted"], 3);
    let (status, body) = s.get(&format!("/v1/buckets/{bucket}"), Some(&ns)).await;
    assert_error(status, &body, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_work_resumes_after_a_restart_sqlite() {
    abandoned_work_resumes_after_a_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_work_resumes_after_a_restart_postgres() {
    abandoned_work_resumes_after_a_restart(Backend::Postgres).await;
}
