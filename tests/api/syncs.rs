//! Syncs from an S3 connection (moto): the first run copies what the filters admit, a second
//! run with nothing changed writes nothing, a change and an addition are copied and a deletion
//! is reconciled; pause, resume, unlock, runs and metrics; and validation.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Backend, TestServer, assert_error, start_allowing, start_on_storage};

fn moto() -> Option<String> {
    match std::env::var("SLUICE_TEST_S3_ENDPOINT") {
        Ok(endpoint) => Some(endpoint),
        Err(_) if std::env::var("SLUICE_TEST_SKIP_EMULATORS").as_deref() == Ok("1") => None,
        Err(_) => {
            panic!("SLUICE_TEST_S3_ENDPOINT is not set: run `eval \"$(scripts/services.sh up)\"`")
        }
    }
}

/// Writes (or with `None` deletes) a file of a moto bucket, creating the bucket first when
/// needed (moto takes an unsigned CreateBucket).
async fn put_file(endpoint: &str, path: &str, body: Option<&str>) {
    let (bucket, key) = path.split_once('/').unwrap();
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(created.status().is_success(), "creating {bucket}: {}", created.status());
    let env = [
        ("AWS_ACCESS_KEY_ID", "sluice-test"),
        ("AWS_SECRET_ACCESS_KEY", "sluice-test-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let store = sluice::blob::BlobStore::open_with_env(&format!("s3://{bucket}"), env).unwrap();
    match body {
        Some(body) => {
            store.put(key, bytes::Bytes::from(body.to_string()), Some("text/plain")).await.unwrap();
        }
        None => store.delete(key).await.unwrap(),
    }
}

/// Waits until the sync has `count` finished runs and returns the newest.
pub(crate) async fn finished_run(s: &TestServer, ns: &str, sync: &str, count: usize) -> Value {
    for _ in 0..300 {
        let (status, page) = s.post(&format!("{sync}/jobs"), Some(ns), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let runs = page["results"].as_array().unwrap();
        let done: Vec<&Value> = runs.iter().filter(|r| r["status"] != "running").collect();
        if done.len() >= count {
            return done[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the sync did not finish {count} runs");
}

pub(crate) async fn objects(s: &TestServer, ns: &str, bucket: &str) -> Vec<Value> {
    let path = format!("/v1/buckets/{bucket}/objects/list");
    let (status, page) = s.post(&path, Some(ns), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["results"].as_array().unwrap().clone()
}

fn by_file(objects: &[Value]) -> Vec<(String, i64)> {
    let mut files: Vec<(String, i64)> = objects
        .iter()
        .map(|o| {
            let blob = &o["blobs"][0];
            assert_eq!(blob["properties"]["source"], "sync", "{o}");
            (
                blob["properties"]["source_key"].as_str().unwrap().to_string(),
                blob["details"]["size_bytes"].as_i64().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

async fn s3_sync_lifecycle(backend: Backend) {
    let Some(endpoint) = moto() else { return };
    let Some(s) = start_allowing(backend, "127.0.0.0/8").await else { return };
    let tag = if matches!(backend, Backend::Sqlite) { "sqlite" } else { "postgres" };
    let source = format!("sync-{}-{tag}", std::process::id());
    for (key, body) in [
        ("docs/a.txt", "alpha"),
        ("docs/b.txt", "bravo"),
        ("docs/c.txt", "charlie"),
        ("docs/skip.bin", "binary"),
        ("other/d.txt", "delta"),
    ] {
        put_file(&endpoint, &format!("{source}/{key}"), Some(body)).await;
    }

    let connection = json!({"name": "moto", "provider_type": "s3", "provider_config": {
        "endpoint_url": endpoint, "credentials": {"type": "access_key",
        "access_key_id": "sluice-test", "secret_access_key": "sluice-test-secret"}}});
    let (status, connection) = s.post("/v1/organizations/connections", None, connection).await;
    assert_eq!(status, StatusCode::OK, "{connection}");
    let connection_id = connection["connection_id"].as_str().unwrap();

    let ns = s.namespace("synced").await;
    let bucket = s.bucket(&ns, "docs", json!({"properties": {"body": {"type": "text"}}})).await;
    let body = json!({
        "connection_id": connection_id,
        "source_path": format!("{source}/docs"),
        "polling_interval_seconds": 3600,
        "batch_size": 2,
        "file_filters": {"extensions": ["txt"]},
    });
    let syncs = format!("/v1/buckets/{bucket}/syncs");
    let (status, created) = s.post(&syncs, Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["sync_config_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sync_"));
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["sync_mode"], "continuous");
    assert_eq!(created["schema_mapping"]["blob_property"], "body");
    let sync = format!("{syncs}/{id}");

    // The first run, scheduled at creation: the three .txt files under docs/.
    let run = finished_run(&s, &ns, &sync, 1).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["trigger"], "scheduled");
    assert_eq!(run["files_synced"], 3, "{run}");
    assert_eq!(run["progress"]["files_synced"], 3, "{run}");
    assert_eq!(run["progress"]["bytes_synced"], 17, "{run}");
    assert!(run["lag_seconds"].is_null(), "only a running run has a lag: {run}");
    let listed = objects(&s, &ns, &bucket).await;
    assert_eq!(
        by_file(&listed),
        [("docs/a.txt".into(), 5), ("docs/b.txt".into(), 5), ("docs/c.txt".into(), 7)]
    );
    let (_, got) = s.get(&sync, Some(&ns)).await;
    assert_eq!(got["total_files_synced"], 3);
    assert_eq!(got["batches_created"], 2, "three objects in batches of two");
    assert_eq!(got["locked"], false);
    assert!(got["next_sync_at"].is_string());

    // Nothing changed: a triggered run writes nothing.
    let (status, triggered) = s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{triggered}");
    let run_id = triggered["sync_job_id"].as_str().unwrap().to_string();
    let run = finished_run(&s, &ns, &sync, 2).await;
    assert_eq!(run["sync_job_id"], json!(run_id));
    assert_eq!(run["trigger"], "manual");
    assert_eq!((run["files_synced"].clone(), run["files_deleted"].clone()), (json!(0), json!(0)));
    assert_eq!(objects(&s, &ns, &bucket).await.len(), 3);

    // One file changed, one added, one deleted: exactly those.
    put_file(&endpoint, &format!("{source}/docs/b.txt"), Some("bravo, again")).await;
    put_file(&endpoint, &format!("{source}/docs/e.txt"), Some("echo")).await;
    put_file(&endpoint, &format!("{source}/docs/c.txt"), None).await;
    s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    let run = finished_run(&s, &ns, &sync, 3).await;
    assert_eq!(run["files_synced"], 2, "{run}");
    assert_eq!(run["files_deleted"], 1, "{run}");
    let listed = objects(&s, &ns, &bucket).await;
    assert_eq!(
        by_file(&listed),
        [("docs/a.txt".into(), 5), ("docs/b.txt".into(), 12), ("docs/e.txt".into(), 4)]
    );
    let (_, one) = s.get(&format!("{sync}/jobs/{run_id}"), Some(&ns)).await;
    assert_eq!(one["status"], "completed");

    // Pause, resume, unlock, metrics.
    let (_, paused) = s.post(&format!("{sync}/pause"), Some(&ns), json!({})).await;
    assert_eq!(paused["paused"], true);
    assert!(paused["next_sync_at"].is_null());
    let (_, resumed) = s.post(&format!("{sync}/resume"), Some(&ns), json!({})).await;
    assert_eq!(resumed["paused"], false);
    let run = finished_run(&s, &ns, &sync, 4).await;
    assert_eq!(run["trigger"], "scheduled", "resuming runs the sync at once");
    let (status, unlocked) = s.post(&format!("{sync}/unlock"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{unlocked}");
    let (_, metrics) = s.get(&format!("{sync}/metrics"), Some(&ns)).await;
    assert_eq!(metrics["total_files_synced"], 5, "{metrics}");
    assert_eq!(metrics["healthy"], true);
    assert!(metrics["last_job"]["sync_job_id"].is_string());

    // An initial_only sync runs once and is then COMPLETED.
    let once = json!({"connection_id": connection_id, "source_path": format!("{source}/other"),
                      "sync_mode": "initial_only"});
    let (_, created) = s.post(&syncs, Some(&ns), once).await;
    let once = format!("{syncs}/{}", created["sync_config_id"].as_str().unwrap());
    let run = finished_run(&s, &ns, &once, 1).await;
    assert_eq!(run["files_synced"], 1);
    let (_, got) = s.get(&once, Some(&ns)).await;
    assert_eq!(got["status"], "COMPLETED");
    assert!(got["next_sync_at"].is_null());

    let (_, page) = s.post(&format!("{syncs}/list"), Some(&ns), json!({})).await;
    assert_eq!(page["total"], 2);
    let (status, _) = s.call(Method::DELETE, &sync, Some(&ns), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s.get(&sync, Some(&ns)).await;
    assert_error(status, &body, 404);
    assert_eq!(objects(&s, &ns, &bucket).await.len(), 4, "a sync's objects outlive it");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sync_lifecycle_sqlite() {
    s3_sync_lifecycle(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sync_lifecycle_postgres() {
    s3_sync_lifecycle(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_syncs_are_refused() {
    let s = start_allowing(Backend::Sqlite, "127.0.0.0/8").await.unwrap();
    let ns = s.namespace("refused").await;
    let bucket = s.bucket(&ns, "b", json!({"properties": {"body": {"type": "text"}}})).await;
    let feed = json!({"name": "feed", "provider_type": "rss", "provider_config": {}});
    let (_, feed) = s.post("/v1/organizations/connections", None, feed).await;
    let s3 = json!({"name": "s3", "provider_type": "s3", "test_before_save": false,
        "provider_config": {"endpoint_url": "http://127.0.0.1:1", "credentials": {
        "type": "access_key", "access_key_id": "a", "secret_access_key": "b"}}});
    let (_, s3) = s.post("/v1/organizations/connections", None, s3).await;
    let s3 = s3["connection_id"].as_str().unwrap();
    let syncs = format!("/v1/buckets/{bucket}/syncs");
    for body in [
        json!({"connection_id": feed["connection_id"], "source_path": "ftp://example.com/rss"}),
        json!({"connection_id": feed["connection_id"], "source_path": "http://10.1.2.3/rss"}),
        json!({"connection_id": feed["connection_id"], "source_path": "https://example.com/rss",
               "schema_mapping": {"mappings": {"body": {"target_type": "field",
               "source": {"type": "column", "name": "x"}}}}}),
        json!({"connection_id": "conn_missing", "source_path": "b"}),
        json!({"connection_id": s3, "source_path": ""}),
        json!({"connection_id": s3, "source_path": "b", "sync_mode": "hourly"}),
        json!({"connection_id": s3, "source_path": "b", "polling_interval_seconds": 5}),
        json!({"connection_id": s3, "source_path": "b", "batch_size": 500}),
        json!({"connection_id": s3, "source_path": "b", "file_filters": {"mime_types": ["ab"]}}),
        json!({"connection_id": s3, "source_path": "b", "file_filters": {"metadata_filters": []}}),
        json!({"connection_id": s3, "source_path": "b", "schema_mapping": {"mappings": {
            "title": {"target_type": "field", "source": {"type": "constant", "value": "x"}}}}}),
    ] {
        let (status, answer) = s.post(&syncs, Some(&ns), body.clone()).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::NOT_FOUND,
            "{body} → {status} {answer}"
        );
        assert_error(status, &answer, status.as_u16());
    }

    // Field mappings name a field of the schema, and a source the provider offers.
    let bucket = s
        .bucket(
            &ns,
            "mapped",
            json!({"properties": {"body": {"type": "text"},
                                                      "label": {"type": "string"}}}),
        )
        .await;
    let syncs = format!("/v1/buckets/{bucket}/syncs");
    for (source, code) in [
        (json!({"type": "tag", "key": "k"}), "mapping_not_supported"),
        (json!({"type": "metadata", "key": "k"}), "mapping_not_supported"),
        (json!({"type": "rss_field", "field": "title"}), "mapping_not_supported"),
        (json!({"type": "filename_regex", "pattern": "(a)(b)"}), "validation_error"),
        (json!({"type": "filename_regex", "pattern": "(unclosed"}), "validation_error"),
        (json!({"type": "folder_path", "segment": "first"}), "validation_error"),
        (json!({"type": "nowhere"}), "validation_error"),
    ] {
        let body = json!({"connection_id": s3, "source_path": "b", "schema_mapping": {
            "mappings": {"label": {"target_type": "field", "source": source}}}});
        let (status, answer) = s.post(&syncs, Some(&ns), body.clone()).await;
        assert_error(status, &answer, 422);
        assert_eq!(answer["error"]["code"], code, "{body} → {answer}");
    }
    s.stop().await;
}

/// The same sync from GCS (fake-gcs-server) and Azure (Azurite): what the connection's bucket
/// or container holds under the sync's prefix becomes objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_and_azure_syncs_copy_their_files() {
    let Ok(gcs) = std::env::var("SLUICE_TEST_GCS_ENDPOINT") else {
        assert_eq!(std::env::var("SLUICE_TEST_SKIP_EMULATORS").as_deref(), Ok("1"));
        return;
    };
    let key_file = std::env::var("SLUICE_TEST_GCS_SERVICE_ACCOUNT").unwrap();
    let azure = std::env::var("SLUICE_TEST_AZURE_ENDPOINT").unwrap();
    let account = std::env::var("SLUICE_TEST_AZURE_ACCOUNT").unwrap();
    let account_key = std::env::var("SLUICE_TEST_AZURE_ACCOUNT_KEY").unwrap();
    let s = start_allowing(Backend::Sqlite, "127.0.0.0/8").await.unwrap();
    let name = format!("sync-{}", std::process::id());
    crate::emulators::create_gcs_bucket(&gcs, &name).await;
    crate::emulators::create_azure_container(&azure, &account, &account_key, &name).await;

    let service_account = std::fs::read_to_string(&key_file).unwrap();
    let azure_store = sluice::blob::BlobStore::open_with_env(
        &format!("az://{name}/shared"),
        [
            ("AZURE_STORAGE_ACCOUNT_NAME", account.as_str()),
            ("AZURE_STORAGE_ACCOUNT_KEY", account_key.as_str()),
            ("AZURE_STORAGE_ENDPOINT", azure.as_str()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    for (key, body) in [("in/one.txt", "one"), ("in/two.txt", "two!"), ("out/three.txt", "3")] {
        crate::emulators::put_gcs_object(&gcs, &name, &format!("shared/{key}"), body).await;
        azure_store.put(key, bytes::Bytes::from(body), Some("text/plain")).await.unwrap();
    }

    let connections = [
        json!({"name": "gcs", "provider_type": "gcs", "provider_config": {
            "bucket": name, "prefix": "shared", "endpoint_url": gcs, "credentials": {
            "type": "service_account", "service_account_json": service_account}}}),
        json!({"name": "azure", "provider_type": "azure_blob", "provider_config": {
            "container": name, "prefix": "shared", "endpoint_url": azure, "credentials": {
            "type": "account_key", "account_name": account, "account_key": account_key}}}),
    ];
    let ns = s.namespace("clouds").await;
    for connection in connections {
        let (status, connection) = s.post("/v1/organizations/connections", None, connection).await;
        assert_eq!(status, StatusCode::OK, "{connection}");
        let provider = connection["provider_type"].as_str().unwrap().to_string();
        let schema = json!({"properties": {"body": {"type": "text"}}});
        let bucket = s.bucket(&ns, &provider, schema).await;
        let body = json!({"connection_id": connection["connection_id"], "source_path": "in",
                          "sync_mode": "initial_only", "skip_batch_submission": true});
        let syncs = format!("/v1/buckets/{bucket}/syncs");
        let (status, created) = s.post(&syncs, Some(&ns), body).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let sync = format!("{syncs}/{}", created["sync_config_id"].as_str().unwrap());
        let run = finished_run(&s, &ns, &sync, 1).await;
        assert_eq!(run["files_synced"], 2, "{provider}: {run}");
        let listed = objects(&s, &ns, &bucket).await;
        assert_eq!(
            by_file(&listed),
            [("shared/in/one.txt".into(), 3), ("shared/in/two.txt".into(), 4)],
            "{provider}"
        );
    }
    s.stop().await;
}

/// Files whose objects the bucket refuses are retried on the next runs, then quarantined in the
/// dead-letter list and skipped, until requeued; marking them failed retires them for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_files_reach_the_dead_letter_list() {
    let Some(endpoint) = moto() else { return };
    let s = start_allowing(Backend::Sqlite, "127.0.0.0/8").await.unwrap();
    let source = format!("dlq-{}", std::process::id());
    for key in ["in/x.txt", "in/y.txt"] {
        put_file(&endpoint, &format!("{source}/{key}"), Some("text")).await;
    }
    let connection = json!({"name": "moto", "provider_type": "s3", "provider_config": {
        "endpoint_url": endpoint, "credentials": {"type": "access_key",
        "access_key_id": "sluice-test", "secret_access_key": "sluice-test-secret"}}});
    let (_, connection) = s.post("/v1/organizations/connections", None, connection).await;
    let ns = s.namespace("dlq").await;
    // A required field no synced file fills: every object is refused.
    let schema = json!({"properties": {"body": {"type": "text"},
                                       "title": {"type": "string", "required": true}}});
    let bucket = s.bucket(&ns, "strict", schema).await;
    let body = json!({"connection_id": connection["connection_id"],
                      "source_path": format!("{source}/in"), "polling_interval_seconds": 3600});
    let syncs = format!("/v1/buckets/{bucket}/syncs");
    let (_, created) = s.post(&syncs, Some(&ns), body).await;
    let sync = format!("{syncs}/{}", created["sync_config_id"].as_str().unwrap());

    let run = finished_run(&s, &ns, &sync, 1).await;
    assert_eq!(
        (run["files_failed"].clone(), run["status"].clone()),
        (json!(2), json!("completed"))
    );
    for count in 2..=3 {
        s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
        let run = finished_run(&s, &ns, &sync, count).await;
        assert_eq!(run["files_failed"], 2, "{run}");
    }
    let (_, page) =
        s.post(&format!("{sync}/dlq"), Some(&ns), json!({"only_max_retries": true})).await;
    assert_eq!(page["total"], 2, "{page}");
    let entry = &page["results"][0];
    assert_eq!(entry["max_retries_reached"], true);
    assert_eq!(entry["retry_count"], 3);
    assert_eq!(entry["error_type"], "object_rejected");
    assert!(entry["error_message"].as_str().unwrap().contains("title"), "{entry}");
    let (_, metrics) = s.get(&format!("{sync}/metrics"), Some(&ns)).await;
    assert_eq!(metrics["dlq_total"], 2);
    assert_eq!(metrics["dlq_by_error"]["object_rejected"], 2);

    // Quarantined files are left out of runs.
    s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    let run = finished_run(&s, &ns, &sync, 4).await;
    assert_eq!(
        (run["files_failed"].clone(), run["files_quarantined"].clone()),
        (json!(0), json!(2))
    );

    // Requeued, they are tried again; marked failed, never again.
    let (_, answer) = s.post(&format!("{sync}/dlq/requeue"), Some(&ns), json!({})).await;
    assert_eq!(answer["requeued"], 2);
    s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    let run = finished_run(&s, &ns, &sync, 5).await;
    assert_eq!(run["files_failed"], 2, "{run}");
    let mark = json!({"error_types": ["object_rejected"]});
    let (_, answer) = s.post(&format!("{sync}/dlq/bulk-mark-failed"), Some(&ns), mark).await;
    assert_eq!(answer["updated"], 2);
    s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    let run = finished_run(&s, &ns, &sync, 6).await;
    assert_eq!(
        (run["files_failed"].clone(), run["files_quarantined"].clone()),
        (json!(0), json!(2))
    );
    let (status, body) =
        s.post(&format!("{sync}/dlq/bulk-mark-failed"), Some(&ns), json!({})).await;
    assert_error(status, &body, 422);
    s.stop().await;
}

/// An S3 connection that names an IAM role: sluice assumes the role through STS (moto's) with
/// its own identity before the connection test and each run. Field mappings fill the bucket's
/// fields from each file's folders and name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_connections_sync_with_assumed_keys_and_mapped_fields() {
    let Some(endpoint) = moto() else { return };
    let tag = std::process::id();
    let storage = format!("sts-store-{tag}");
    let created = reqwest::Client::new().put(format!("{endpoint}/{storage}")).send().await.unwrap();
    assert!(created.status().is_success());
    let source = format!("sts-source-{tag}");
    for (key, body) in [
        ("reports/sales/2026-12-01_q4.txt", "sales figures"),
        ("reports/hr/notes.txt", "hr notes"),
        ("reports/img/logo.png", "not text"),
    ] {
        put_file(&endpoint, &format!("{source}/{key}"), Some(body)).await;
    }
    let identity = [
        ("AWS_ACCESS_KEY_ID", "sluice-test"),
        ("AWS_SECRET_ACCESS_KEY", "sluice-test-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    let s = start_on_storage(format!("s3://{storage}"), identity, "127.0.0.0/8").await;

    // Saving tests the connection first: the role is assumed and the temporary keys list.
    let connection = json!({"name": "role", "provider_type": "s3", "provider_config": {
        "endpoint_url": endpoint, "credentials": {"type": "iam_role",
        "role_arn": "arn:aws:iam::123456789012:role/sluice-sync",
        "external_id": "sluice-external-id-1"}}});
    let (status, connection) = s.post("/v1/organizations/connections", None, connection).await;
    assert_eq!(status, StatusCode::OK, "{connection}");
    assert_eq!(connection["provider_config"]["credentials"], json!({"type": "iam_role"}));
    let id = connection["connection_id"].as_str().unwrap();
    let (status, test) =
        s.post(&format!("/v1/organizations/connections/{id}/test"), None, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{test}");
    assert_eq!(test["success"], true, "{test}");

    let ns = s.namespace("roles").await;
    let schema = json!({"properties": {"body": {"type": "text"}, "team": {"type": "string"},
                                       "day": {"type": "string"}, "origin": {"type": "string"}}});
    let bucket = s.bucket(&ns, "reports", schema).await;
    let body = json!({
        "connection_id": id,
        "source_path": format!("{source}/reports"),
        "sync_mode": "initial_only",
        "file_filters": {"mime_types": ["text/*"]},
        "schema_mapping": {"mappings": {
            "team": {"target_type": "field", "source": {"type": "folder_path", "segment": 0},
                     "transform": "uppercase"},
            "day": {"target_type": "field", "source": {"type": "filename_regex",
                    "pattern": "^(\\d{4}-\\d{2}-\\d{2})_", "default": "undated"}},
            "origin": {"target_type": "field", "source": {"type": "constant", "value": "aws"}},
        }},
    });
    let syncs = format!("/v1/buckets/{bucket}/syncs");
    let (status, created) = s.post(&syncs, Some(&ns), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let sync = format!("{syncs}/{}", created["sync_config_id"].as_str().unwrap());
    let run = finished_run(&s, &ns, &sync, 1).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["files_synced"], 2, "{run}");

    let mut fields: Vec<(String, Value, Value, Value)> = objects(&s, &ns, &bucket)
        .await
        .iter()
        .map(|o| {
            let key = o["blobs"][0]["properties"]["source_key"].as_str().unwrap().to_string();
            (key, o["team"].clone(), o["day"].clone(), o["origin"].clone())
        })
        .collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        fields,
        [
            ("reports/hr/notes.txt".to_string(), json!("HR"), json!("undated"), json!("aws")),
            (
                "reports/sales/2026-12-01_q4.txt".to_string(),
                json!("SALES"),
                json!("2026-12-01"),
                json!("aws")
            ),
        ]
    );

    // A file whose bytes the bucket already holds is answered by the object that holds them.
    put_file(&endpoint, &format!("{source}/reports/hr/copy.txt"), Some("hr notes")).await;
    let (status, _) = s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let run = finished_run(&s, &ns, &sync, 2).await;
    assert_eq!(run["files_synced"], 1, "{run}");
    assert_eq!(objects(&s, &ns, &bucket).await.len(), 2, "skip_duplicates is on by default");

    // Without reconcile.on_update, a changed file keeps the object's earlier copy.
    let (status, _) = s
        .call(Method::PATCH, &sync, Some(&ns), Some(json!({"reconcile": {"on_update": false}})))
        .await;
    assert_eq!(status, StatusCode::OK);
    put_file(&endpoint, &format!("{source}/reports/sales/2026-12-01_q4.txt"), Some("revised"))
        .await;
    let (status, _) = s.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let run = finished_run(&s, &ns, &sync, 3).await;
    assert_eq!(
        (run["status"].clone(), run["files_synced"].clone()),
        (json!("completed"), json!(0))
    );
    let sizes: Vec<i64> = objects(&s, &ns, &bucket)
        .await
        .iter()
        .map(|o| o["blobs"][0]["details"]["size_bytes"].as_i64().unwrap())
        .collect();
    assert!(sizes.contains(&13), "the 13 bytes of the first copy stay: {sizes:?}");
    s.stop().await;
}
