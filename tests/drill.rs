//! Crash drills on PostgreSQL, with sluice processes sharing one database:
//!
//! - three processes process one batch and one is killed with SIGKILL in the middle: the batch
//!   must still complete, with every object's outcome and documents written exactly once and no
//!   job left leased;
//! - a sync's process is killed in the middle of a run of a few thousand files: another process
//!   finishes the run, and every file ends up as exactly one object; runs of one sync never
//!   overlap, whichever process runs them.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::Connection;

const KEY: &str = "sk_drill_bootstrap_key_0123456789";
const OBJECTS: usize = 2000;

struct Process {
    child: Child,
    port: u16,
}

impl Drop for Process {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(dir: &std::path::Path, database_url: &str, name: &str) -> Process {
    spawn_with(dir, database_url, name, &[])
}

fn spawn_with(
    dir: &std::path::Path,
    database_url: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> Process {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE_") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    command
        .env("SLUICE_LOG", "warn")
        .env("SLUICE_DATA_DIR", dir)
        .env("DATABASE_URL", database_url)
        .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLUICE_BOOTSTRAP_API_KEY", KEY)
        .env("SLUICE_WORKERS", "2")
        .env("SLUICE_BATCH_SLICE_SIZE", "50")
        .env("SLUICE_BATCH_CONCURRENCY", "2")
        .env("SLUICE_JOB_LEASE_SECONDS", "3")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(log);
    let process = Process { child: command.spawn().unwrap(), port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return process;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("sluice {name} did not start");
}

async fn call(port: u16, path: &str, ns: Option<&str>, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut request = match body {
        Some(body) => client.post(url).json(&body),
        None => client.get(url),
    };
    request = request.bearer_auth(KEY);
    if let Some(ns) = ns {
        request = request.header("X-Namespace", ns);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

async fn fresh_database() -> Option<(String, String, String)> {
    let admin = match std::env::var("SLUICE_TEST_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) if std::env::var("SLUICE_TEST_SKIP_POSTGRES").as_deref() == Ok("1") => return None,
        Err(_) => panic!("SLUICE_TEST_POSTGRES_URL is not set; run scripts/test.sh"),
    };
    let name = format!("sluice_drill_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some((format!("{base}/{name}"), admin, name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing() {
    let Some((url, admin, name)) = fresh_database().await else {
        eprintln!("skipping: SLUICE_TEST_SKIP_POSTGRES=1");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Started together, as a deployment would start them: the others begin while the first is
    // still creating the schema and the bootstrap key, and must start all the same.
    let first = spawn(dir.path(), &url, "first");
    let second = spawn(dir.path(), &url, "second");
    let third = spawn(dir.path(), &url, "third");
    let port = first.port;
    let ns_body = json!({"namespace_name": "drill", "feature_extractors": [
        {"feature_extractor_name": "text_extractor", "version": "v1",
         "params": {"chunk_size": 400, "chunk_overlap": 0}}]});
    let ns = call(port, "/v1/namespaces", None, Some(ns_body)).await;
    let ns = ns["namespace_id"].as_str().unwrap().to_string();
    let schema = json!({"bucket_name": "texts",
                        "bucket_schema": {"properties": {"content": {"type": "text"}}}});
    let bucket = call(port, "/v1/buckets", Some(&ns), Some(schema)).await;
    let bucket = bucket["bucket_id"].as_str().unwrap().to_string();
    let mut ids = Vec::with_capacity(OBJECTS);
    for chunk in 0..OBJECTS / 100 {
        let objects: Vec<Value> = (0..100)
            .map(|i| {
                let text = format!("Object number {} says hello to the drill.", chunk * 100 + i);
                json!({"blobs": [{"property": "content", "type": "text", "data": text}]})
            })
            .collect();
        let path = format!("/v1/buckets/{bucket}/objects/batch");
        let made = call(port, &path, Some(&ns), Some(json!({"objects": objects}))).await;
        for ok in made["succeeded"].as_array().unwrap() {
            ids.push(ok["object_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(ids.len(), OBJECTS);

    let base = format!("/v1/buckets/{bucket}/batches");
    let batch = call(port, &base, Some(&ns), Some(json!({"object_ids": ids}))).await;
    let batch_id = batch["batch_id"].as_str().unwrap().to_string();
    call(port, &format!("{base}/{batch_id}/submit"), Some(&ns), Some(json!({}))).await;

    // Kill the second process once processing is under way, before it is over.
    let status_path = format!("{base}/{batch_id}");
    let mut second = Some(second);
    let mut killed_at = None;
    let deadline = Instant::now() + Duration::from_secs(240);
    let done = loop {
        assert!(Instant::now() < deadline, "the batch did not finish");
        let batch = call(port, &status_path, Some(&ns), None).await;
        let processed = batch["progress"]["processed"].as_i64().unwrap_or(0);
        if second.is_some() && processed >= (OBJECTS / 10) as i64 {
            let mut process = second.take().unwrap();
            process.child.kill().unwrap();
            process.child.wait().unwrap();
            killed_at = Some(processed);
        }
        if ["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"]
            .contains(&batch["status"].as_str().unwrap())
        {
            break batch;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed_at = killed_at.expect("the second process was killed");
    assert!(killed_at < OBJECTS as i64, "the kill came after the batch was done");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["progress"]["processed"], OBJECTS);
    assert_eq!(done["documents_written"], OBJECTS);

    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let (documents, distinct): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT object_id) FROM documents WHERE batch_id = $1",
    )
    .bind(&batch_id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((documents, distinct), (OBJECTS as i64, OBJECTS as i64), "one document each");
    let recorded_twice: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM batch_items WHERE batch_id = $1 AND (attempts <> 1 OR state <> 'done')",
    )
    .bind(&batch_id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(recorded_twice, 0, "every outcome is recorded exactly once");
    let leased: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE status = 'running' OR lease_owner IS NOT NULL",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(leased, 0, "no job is left leased");
    let rescued: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'batch.process' AND attempts > 1",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(rescued > 0, "a job of the killed process was taken over by another");
    db.close().await.ok();

    drop(third);
    drop(first);
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.ok();
}

const FILES: usize = 2000;

/// Writes the drill's source files into a fresh moto bucket; `None` when the emulators are
/// skipped on purpose.
async fn seed_moto() -> Option<(String, String)> {
    let endpoint = match std::env::var("SLUICE_TEST_S3_ENDPOINT") {
        Ok(endpoint) => endpoint,
        Err(_) if std::env::var("SLUICE_TEST_SKIP_EMULATORS").as_deref() == Ok("1") => return None,
        Err(_) => panic!("SLUICE_TEST_S3_ENDPOINT is not set; run scripts/test.sh"),
    };
    let bucket = format!("drill-{}", uuid::Uuid::new_v4().simple());
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(created.status().is_success());
    let env = [
        ("AWS_ACCESS_KEY_ID", "sluice-test"),
        ("AWS_SECRET_ACCESS_KEY", "sluice-test-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let store = sluice::blob::BlobStore::open_with_env(&format!("s3://{bucket}"), env).unwrap();
    let writes = (0..FILES).map(|i| {
        let store = &store;
        async move {
            let body = bytes::Bytes::from(format!("file {i} of the sync drill"));
            store.put(&format!("in/{i:05}.txt"), body, Some("text/plain")).await.unwrap();
        }
    });
    futures::stream::iter(writes).buffer_unordered(16).collect::<Vec<()>>().await;
    Some((endpoint, bucket))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_run_copies_every_file_once() {
    let Some((url, admin, name)) = fresh_database().await else {
        eprintln!("skipping: SLUICE_TEST_SKIP_POSTGRES=1");
        return;
    };
    let Some((endpoint, source)) = seed_moto().await else { return };
    let dir = tempfile::tempdir().unwrap();
    // moto listens on loopback, which the operator allows here.
    let allow = [("SLUICE_ALLOW_PRIVATE_NETWORKS", "127.0.0.0/8")];
    let first = spawn_with(dir.path(), &url, "sync-first", &allow);
    let port = first.port;
    let connection = json!({"name": "moto", "provider_type": "s3", "provider_config": {
        "endpoint_url": endpoint, "credentials": {"type": "access_key",
        "access_key_id": "sluice-test", "secret_access_key": "sluice-test-secret"}}});
    let connection = call(port, "/v1/organizations/connections", None, Some(connection)).await;
    let ns =
        call(port, "/v1/namespaces", None, Some(json!({"namespace_name": "sync-drill"}))).await;
    let ns = ns["namespace_id"].as_str().unwrap().to_string();
    let schema = json!({"bucket_name": "files",
                        "bucket_schema": {"properties": {"content": {"type": "text"}}}});
    let bucket = call(port, "/v1/buckets", Some(&ns), Some(schema)).await;
    let bucket = bucket["bucket_id"].as_str().unwrap().to_string();
    let body = json!({"connection_id": connection["connection_id"], "source_path": format!("{source}/in"),
                      "polling_interval_seconds": 3600, "skip_batch_submission": true});
    let sync = call(port, &format!("/v1/buckets/{bucket}/syncs"), Some(&ns), Some(body)).await;
    let sync_path =
        format!("/v1/buckets/{bucket}/syncs/{}", sync["sync_config_id"].as_str().unwrap());
    // Started after the sync, so that the first process is running its first run.
    let second = spawn_with(dir.path(), &url, "sync-second", &allow);

    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let count_sql = "SELECT COUNT(*), COUNT(DISTINCT doc->'blobs'->0->'properties'->>'source_key') \
                     FROM objects WHERE bucket_id = $1 AND deleted_at IS NULL";
    let mut first = Some(first);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed_at = None;
    let (objects, distinct) = loop {
        if Instant::now() >= deadline {
            let mut logs = String::new();
            for name in ["sync-first", "sync-second"] {
                let text = std::fs::read_to_string(dir.path().join(format!("{name}.log")));
                logs += &format!("--- {name}\n{}\n", text.unwrap_or_default());
            }
            let jobs = format!("{sync_path}/jobs");
            let runs = call(second.port, &jobs, Some(&ns), Some(json!({}))).await;
            panic!("the sync did not copy every file: {runs}\n{logs}");
        }
        let (objects, distinct): (i64, i64) =
            sqlx::query_as(count_sql).bind(&bucket).fetch_one(&mut db).await.unwrap();
        if first.is_some() && objects >= (FILES / 2) as i64 {
            let mut process = first.take().unwrap();
            process.child.kill().unwrap();
            process.child.wait().unwrap();
            killed_at = Some(objects);
        }
        if objects >= FILES as i64 {
            break (objects, distinct);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let killed_at = killed_at.expect("the first process was killed");
    assert!(killed_at < FILES as i64, "the kill came after the run was done");
    assert_eq!((objects, distinct), (FILES as i64, FILES as i64), "one object per file");
    // A file's object is created before its ledger entry: the run's end records both.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rescued_run = loop {
        assert!(Instant::now() < deadline, "the rescued run did not finish");
        let page =
            call(second.port, &format!("{sync_path}/jobs"), Some(&ns), Some(json!({}))).await;
        let runs = page["results"].as_array().unwrap();
        if !runs.is_empty() && runs.iter().all(|r| r["status"] != "running") {
            break runs[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rescued_run["status"], "completed", "{rescued_run}");
    assert!(
        rescued_run["resumed_after"].is_string(),
        "the run went on after the last page it finished: {rescued_run}"
    );
    assert_eq!(rescued_run["resumed_via"], "lease_expired", "{rescued_run}");
    let ledger: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sync_ledger").fetch_one(&mut db).await.unwrap();
    assert_eq!(ledger, FILES as i64);
    let rescued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'sync.run' AND attempts > 1")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(rescued > 0, "the killed process's run was taken over by another");

    // More runs, triggered on both remaining processes at once: they never overlap.
    let third = spawn_with(dir.path(), &url, "sync-third", &allow);
    for port in [second.port, third.port, second.port, third.port] {
        call(port, &format!("{sync_path}/trigger"), Some(&ns), Some(json!({}))).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let runs = loop {
        assert!(Instant::now() < deadline, "the triggered runs did not finish");
        let page =
            call(second.port, &format!("{sync_path}/jobs"), Some(&ns), Some(json!({}))).await;
        let runs = page["results"].as_array().unwrap().clone();
        if runs.len() >= 5 && runs.iter().all(|r| r["status"] != "running") {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut spans: Vec<(String, String)> = runs
        .iter()
        .filter(|r| r["status"] == "completed")
        .map(|r| {
            (r["started_at"].as_str().unwrap().into(), r["completed_at"].as_str().unwrap().into())
        })
        .collect();
    spans.sort();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "runs overlapped: {spans:?}");
    let statuses: Vec<&Value> = runs.iter().map(|r| &r["status"]).collect();
    assert!(
        runs.iter().all(|r| r["status"] == "completed"),
        "a triggered run waits for the run under way instead of being skipped: {statuses:?}"
    );
    let (objects, _): (i64, i64) =
        sqlx::query_as(count_sql).bind(&bucket).fetch_one(&mut db).await.unwrap();
    assert_eq!(objects, FILES as i64, "later runs copied nothing again");
    let leased: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'sync.run' AND status = 'running'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(leased, 0, "no sync run is left running");
    db.close().await.ok();

    drop((second, third));
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.ok();
}
