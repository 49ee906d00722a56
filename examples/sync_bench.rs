//! A sync of many keys from an S3-compatible store (moto, or any endpoint that takes the given
//! keys), against a running sluice: seeds KEYS small files under a fresh bucket, times a bare
//! paginated ListObjectsV2 of the prefix (through `object_store`, which pages 1,000 keys at a
//! time), creates a sync, and times its first run (every file copied) and re-runs with nothing
//! changed, interleaved with bare listings. Samples sluice's resident memory during each re-run.
//!
//! Usage: `sync_bench SLUICE_URL API_KEY SLUICE_PID S3_ENDPOINT [KEYS] [REPEATS]`
//! The server must allow the endpoint's network (`SLUICE_ALLOW_PRIVATE_NETWORKS`). Prints one
//! JSON line; times are seconds.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sluice::blob::BlobStore;

struct Api {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        ns: Option<&str>,
        body: Value,
    ) -> Value {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(ns) = ns {
            request = request.header("X-Namespace", ns);
        }
        let response = request.json(&body).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, ns: Option<&str>, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, ns, body).await
    }
}

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn seconds_between(run: &Value) -> f64 {
    let at = |key: &str| {
        time::OffsetDateTime::parse(
            run[key].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    (at("completed_at") - at("started_at")).as_seconds_f64()
}

/// Waits for the run `id` (or, with `None`, the first finished run) and returns it.
async fn finished(api: &Api, ns: &str, sync: &str, id: Option<&str>) -> Value {
    loop {
        let page = api.post(&format!("{sync}/jobs"), Some(ns), json!({})).await;
        let runs = page["results"].as_array().unwrap();
        let found = runs.iter().find(|r| {
            r["status"] != "running" && id.is_none_or(|id| r["sync_job_id"] == json!(id))
        });
        if let Some(run) = found {
            assert_eq!(run["status"], "completed", "{run}");
            return run.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, key, pid, endpoint) = (&args[1], &args[2], &args[3], &args[4]);
    let keys: usize = args.get(5).map_or(100_000, |k| k.parse().unwrap());
    let repeats: usize = args.get(6).map_or(3, |r| r.parse().unwrap());
    let api = Api { base: base.clone(), key: key.clone(), client: reqwest::Client::new() };

    // Seed.
    let bucket = format!("sync-bench-{}", uuid::Uuid::new_v4().simple());
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(created.status().is_success());
    let env = [
        ("AWS_ACCESS_KEY_ID", "sluice-bench"),
        ("AWS_SECRET_ACCESS_KEY", "sluice-bench-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let store = BlobStore::open_with_env(&format!("s3://{bucket}"), env.clone()).unwrap();
    let started = Instant::now();
    let writes = (0..keys).map(|i| {
        let store = &store;
        async move {
            let body = bytes::Bytes::from(format!("file {i}"));
            store.put(&format!("data/{:03}/{i:07}.txt", i % 100), body, None).await.unwrap();
        }
    });
    futures::stream::iter(writes).buffer_unordered(32).collect::<Vec<()>>().await;
    eprintln!("seeded {keys} keys in {:.1} s", started.elapsed().as_secs_f64());
    let prefixed = BlobStore::open_with_env(&format!("s3://{bucket}/data"), env).unwrap();

    // The sync.
    let connection = api
        .post(
            "/v1/organizations/connections",
            None,
            json!({
            "name": format!("bench-{bucket}"), "provider_type": "s3", "provider_config": {
                "endpoint_url": endpoint, "credentials": {"type": "access_key",
                "access_key_id": "sluice-bench", "secret_access_key": "sluice-bench-secret"}}}),
        )
        .await;
    let ns = api
        .post("/v1/namespaces", None, json!({"namespace_name": format!("b{}", &bucket[11..23])}))
        .await;
    let ns = ns["namespace_id"].as_str().unwrap().to_string();
    let schema = json!({"bucket_name": "files",
                        "bucket_schema": {"properties": {"content": {"type": "text"}}}});
    let target = api.post("/v1/buckets", Some(&ns), schema).await;
    let target = target["bucket_id"].as_str().unwrap().to_string();
    let sync = api
        .post(
            &format!("/v1/buckets/{target}/syncs"),
            Some(&ns),
            json!({
            "connection_id": connection["connection_id"], "source_path": format!("{bucket}/data"),
            "polling_interval_seconds": 86_400, "skip_batch_submission": true,
            "sync_concurrency": 16, "max_objects_per_run": keys * 2}),
        )
        .await;
    let sync = format!("/v1/buckets/{target}/syncs/{}", sync["sync_config_id"].as_str().unwrap());
    let first = finished(&api, &ns, &sync, None).await;
    assert_eq!(first["files_synced"], json!(keys), "{first}");
    let first_seconds = seconds_between(&first);
    eprintln!("first run: {keys} files in {first_seconds:.1} s");

    // Re-runs against bare listings, interleaved.
    let mut listings = Vec::new();
    let mut reruns = Vec::new();
    let mut growth = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        let listed =
            prefixed.list_all().fold(0usize, |n, e| async move { e.map(|_| n + 1).unwrap() }).await;
        listings.push(started.elapsed().as_secs_f64());
        assert_eq!(listed, keys);

        let before = rss_kib(pid);
        let triggered = api.post(&format!("{sync}/trigger"), Some(&ns), json!({})).await;
        let id = triggered["sync_job_id"].as_str().unwrap().to_string();
        let mut peak = before;
        let run = loop {
            peak = peak.max(rss_kib(pid));
            let page = api.post(&format!("{sync}/jobs"), Some(&ns), json!({})).await;
            let done = page["results"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["sync_job_id"] == json!(id) && r["status"] != "running");
            if done {
                break finished(&api, &ns, &sync, Some(&id)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(run["files_synced"], 0, "{run}");
        assert_eq!(run["total_files"], json!(keys), "{run}");
        reruns.push(seconds_between(&run));
        growth.push((peak.saturating_sub(before)) as f64 / 1024.0);
        eprintln!(
            "listing {:.2} s, re-run {:.2} s, RSS {:.1} → {:.1} MiB",
            listings.last().unwrap(),
            reruns.last().unwrap(),
            before as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
    let objects = api
        .post(
            &format!("/v1/buckets/{target}/objects/list?limit=1&include_total=true"),
            Some(&ns),
            json!({}),
        )
        .await;
    println!(
        "{}",
        json!({
            "keys": keys,
            "first_run_seconds": first_seconds,
            "first_run_files_per_second": keys as f64 / first_seconds,
            "listing_seconds": listings,
            "rerun_seconds": reruns,
            "rerun_over_listing": median(reruns.clone()) / median(listings.clone()),
            "rss_growth_mib": growth,
            "objects": objects["pagination"]["total"],
        })
    );
}
