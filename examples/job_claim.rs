//! Claim throughput of the job engine alone, on PostgreSQL: enqueues jobs, then runs workers
//! that claim and finish them (two statements each, as sluice's own workers do) until none
//! is left, and reports jobs per second and per busy core.
//!
//! Usage: `cargo run --release --example job_claim -- DATABASE_URL [JOBS] [WORKERS]`
//! The database must be empty; the schema is created. Prints one JSON line.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use serde_json::json;
use sluice::config::StoreConfig;
use sluice::store::{NewJob, Store};

const LEASE_UNTIL: &str = "2999-01-01T00:00:00Z";

fn ticks_of(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let Some((_, rest)) = stat.rsplit_once(") ") else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// CPU ticks of this process and of every PostgreSQL process.
fn cpu_ticks() -> (u64, u64) {
    let own = ticks_of("self");
    let mut postgres = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{name}/comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            postgres += ticks_of(&name);
        }
    }
    (own, postgres)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: job_claim DATABASE_URL [JOBS] [WORKERS]");
    let jobs: usize = args.next().map_or(20_000, |n| n.parse().unwrap());
    let workers: usize = args.next().map_or(8, |n| n.parse().unwrap());
    let config = StoreConfig {
        data_dir: std::env::temp_dir(),
        database_url: url,
        max_connections: u32::try_from(workers + 2).unwrap(),
    };
    let store = Store::open(&config).await.unwrap();
    let now = "2000-01-01T00:00:00Z";
    let enqueue = futures::stream::iter(0..jobs).for_each_concurrent(16, |i| {
        let store = store.clone();
        async move {
            let job = NewJob {
                id: format!("job_bench_{i}"),
                kind: "bench.noop".into(),
                org_id: "org_bench".into(),
                payload: json!({"n": i}),
                max_attempts: 1,
                run_at: now.into(),
                dedupe_key: None,
            };
            store.enqueue_job(&job, now).await.unwrap();
        }
    });
    enqueue.await;

    let done = Arc::new(AtomicU64::new(0));
    // Linux counts CPU time in ticks of 1/100 s (USER_HZ) on every common configuration.
    let ticks_per_second = 100.0;
    let (own0, pg0) = cpu_ticks();
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let owner = format!("bench-{w}");
            while let Some(job) = store.claim_job(&owner, LEASE_UNTIL, now).await.unwrap() {
                store.finish_job(&job.id, &owner, "done", None, now, now).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let (own1, pg1) = cpu_ticks();
    let finished = done.load(Ordering::Relaxed);
    assert_eq!(finished as usize, jobs, "every job was claimed once");
    let own_cores = (own1 - own0) as f64 / ticks_per_second / seconds;
    let pg_cores = (pg1 - pg0) as f64 / ticks_per_second / seconds;
    let rate = finished as f64 / seconds;
    let report = json!({
        "jobs": finished,
        "workers": workers,
        "seconds": seconds,
        "jobs_per_second": rate,
        "client_cores": own_cores,
        "postgres_cores": pg_cores,
        "jobs_per_second_per_core": rate / (own_cores + pg_cores).max(0.01),
    });
    println!("{report}");
    store.close().await;
}
