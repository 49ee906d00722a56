//! The scheduler: durable jobs in the metadata store, run by workers in this process.
//!
//! Enqueuing writes a row; any worker of any sluice process may claim it. A claim is a lease
//! that the worker renews while the job runs; when a worker dies, its lease runs out and another
//! worker runs the job again. Every job is therefore written to be idempotent. A failed attempt
//! is retried with exponential backoff until the job's attempts are used up. Each kind has a
//! [`RetryPolicy`]: most use the engine's default, webhook deliveries their own.
//!
//! Workers wake at once for jobs enqueued in their own process. On PostgreSQL every insert into
//! the queue also sends a notification that wakes the idle workers of every other process; on
//! SQLite, which is one process's store, and whenever the notification connection is down,
//! workers poll.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use crate::AppState;
use crate::error::{Error, Result};
use crate::model::{format_time, new_id, now};
use crate::store::{ClaimedJob, NewJob};

/// How often an idle worker looks for jobs enqueued by other processes.
const POLL: Duration = Duration::from_millis(500);
/// The first retry waits this long; each further one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Attempts a job gets unless it says otherwise.
pub const DEFAULT_ATTEMPTS: i32 = 5;

/// The kinds of job sluice runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    NamespaceDelete,
    BucketDelete,
    /// Moves every stored blob of a bucket to the bucket's storage class.
    BucketRetier,
    /// Confirms uploads in the background.
    UploadConfirm,
    /// Cancels an upload that was never confirmed, at its expiry time.
    UploadExpire,
    /// Copies the URL blobs of an object into managed storage.
    BlobMirror,
    /// Deletes a namespace whose time to live has run out.
    NamespaceExpire,
    /// Sends one webhook delivery (one attempt per run).
    WebhookDeliver,
    /// Deletes events and delivery records past their retention, then schedules itself again.
    EventsSweep,
    /// Processes one slice of a submitted batch's objects.
    BatchProcess,
    /// Cancels a draft batch that was never submitted.
    BatchExpireDraft,
    /// Runs a sync: copies new and changed files of a connection into a bucket.
    SyncRun,
}

/// How often a job is tried and how long it waits between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: i32,
    /// The wait before the first retry; each further retry waits twice as long.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl RetryPolicy {
    /// The policy of every kind that does not choose its own.
    pub const DEFAULT: RetryPolicy =
        RetryPolicy { attempts: DEFAULT_ATTEMPTS, first: FIRST_BACKOFF, cap: MAX_BACKOFF };

    /// The delay before retry number `attempts`: `first`, twice that, four times, … up to `cap`.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exponent = u32::try_from(attempts.clamp(1, 31) - 1).unwrap_or(0);
        self.first.saturating_mul(2u32.saturating_pow(exponent)).min(self.cap)
    }
}

impl JobKind {
    pub const ALL: [JobKind; 12] = [
        Self::NamespaceDelete,
        Self::BucketDelete,
        Self::BucketRetier,
        Self::UploadConfirm,
        Self::UploadExpire,
        Self::BlobMirror,
        Self::NamespaceExpire,
        Self::WebhookDeliver,
        Self::EventsSweep,
        Self::BatchProcess,
        Self::BatchExpireDraft,
        Self::SyncRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NamespaceDelete => "namespace.delete",
            Self::BucketDelete => "bucket.delete",
            Self::BucketRetier => "bucket.retier",
            Self::UploadConfirm => "upload.confirm",
            Self::UploadExpire => "upload.expire",
            Self::BlobMirror => "blob.mirror",
            Self::NamespaceExpire => "namespace.expire",
            Self::WebhookDeliver => "webhook.deliver",
            Self::EventsSweep => "events.sweep",
            Self::BatchProcess => "batch.process",
            Self::BatchExpireDraft => "batch.expire_draft",
            Self::SyncRun => "sync.run",
        }
    }

    /// The attempts and backoff of this kind's jobs.
    pub fn retry_policy(self, state: &AppState) -> RetryPolicy {
        match self {
            Self::WebhookDeliver => {
                let settings = &state.hooks.settings;
                RetryPolicy {
                    attempts: settings.max_attempts,
                    first: settings.retry_base,
                    cap: settings.retry_max,
                }
            }
            _ => RetryPolicy::DEFAULT,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Wakes this process's idle workers when a job is enqueued here.
#[derive(Default)]
pub struct JobSignal {
    notify: Notify,
}

/// Enqueues a job that may run right away.
///
/// # Errors
///
/// Fails on a store error.
pub async fn enqueue(
    state: &AppState,
    kind: JobKind,
    org_id: &str,
    payload: Value,
    dedupe_key: Option<String>,
) -> Result<()> {
    let at = now();
    enqueue_job(state, kind, org_id, payload, dedupe_key, &at).await
}

/// Enqueues a job that runs no earlier than `run_at`, unless an unfinished job holds
/// `dedupe_key`.
///
/// # Errors
///
/// Fails on a store error.
pub async fn enqueue_once_at(
    state: &AppState,
    kind: JobKind,
    org_id: &str,
    payload: Value,
    dedupe_key: String,
    run_at: &str,
) -> Result<()> {
    enqueue_job(state, kind, org_id, payload, Some(dedupe_key), run_at).await
}

/// Enqueues a job that runs no earlier than `run_at` (an RFC 3339 time as [`now`] writes it).
///
/// # Errors
///
/// Fails on a store error.
pub async fn enqueue_at(
    state: &AppState,
    kind: JobKind,
    org_id: &str,
    payload: Value,
    run_at: &str,
) -> Result<()> {
    enqueue_job(state, kind, org_id, payload, None, run_at).await
}

async fn enqueue_job(
    state: &AppState,
    kind: JobKind,
    org_id: &str,
    payload: Value,
    dedupe_key: Option<String>,
    run_at: &str,
) -> Result<()> {
    let at = now();
    let job = new_job(state, kind, org_id, payload, dedupe_key, run_at);
    state.store.enqueue_job(&job, &at).await?;
    wake(state);
    Ok(())
}

/// A job row for a caller that writes it in its own transaction; call [`wake`] after the
/// commit.
pub fn new_job(
    state: &AppState,
    kind: JobKind,
    org_id: &str,
    payload: Value,
    dedupe_key: Option<String>,
    run_at: &str,
) -> NewJob {
    NewJob {
        id: new_id("job_", 20),
        kind: kind.as_str().to_string(),
        org_id: org_id.to_string(),
        payload,
        max_attempts: kind.retry_policy(state).attempts,
        run_at: run_at.to_string(),
        dedupe_key,
    }
}

/// Wakes an idle worker of this process for a job just written.
pub fn wake(state: &AppState) {
    state.job_signal.notify.notify_one();
}

/// Runs `count` workers until `shutdown` turns true. A job still running then is abandoned
/// with its lease, and another process (or this one, after a restart) runs it again.
pub async fn run_workers(state: Arc<AppState>, count: usize, shutdown: watch::Receiver<bool>) {
    let owner = new_id("worker_", 12);
    let mut handles = Vec::with_capacity(count + 1);
    if count > 0 && state.store.can_listen() {
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        handles.push(tokio::spawn(async move {
            tokio::select! {
                () = listen(&state) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        }));
    }
    for n in 0..count {
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        let name = format!("{owner}-{n}");
        handles.push(tokio::spawn(async move {
            tokio::select! {
                () = worker(&state, &name) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        }));
    }
    for handle in handles {
        handle.await.ok();
    }
}

/// Wakes this process's idle workers whenever any process adds a job; reconnects after a
/// lost connection, while the workers poll.
async fn listen(state: &AppState) {
    loop {
        match state.store.job_notifications().await {
            Ok(mut listener) => loop {
                match listener.recv().await {
                    Ok(_) => state.job_signal.notify.notify_waiters(),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the job notification connection");
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "could not listen for job notifications"),
        }
        tokio::time::sleep(POLL * 10).await;
    }
}

async fn worker(state: &AppState, owner: &str) {
    loop {
        let claimed = state.store.claim_job(owner, &lease_until(state), &now()).await;
        match claimed {
            Ok(Some(job)) => run_claimed(state, owner, job).await,
            Ok(None) => {
                tokio::select! {
                    () = state.job_signal.notify.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not claim a job");
                tokio::time::sleep(POLL * 4).await;
            }
        }
    }
}

async fn run_claimed(state: &AppState, owner: &str, job: ClaimedJob) {
    let span =
        tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind, attempt = job.attempts);
    async {
        let outcome = tokio::select! {
            outcome = dispatch(state, &job) => outcome,
            () = keep_lease(state, &job.id, owner) => {
                tracing::warn!("lost the job's lease; another worker runs it");
                return;
            }
        };
        settle(state, owner, &job, outcome).await;
    }
    .instrument(span)
    .await
}

async fn dispatch(state: &AppState, job: &ClaimedJob) -> Result<()> {
    match JobKind::parse(&job.kind) {
        Some(JobKind::NamespaceDelete | JobKind::BucketDelete) => {
            crate::service::tasks::run_deletion(state, job).await
        }
        Some(JobKind::BucketRetier) => crate::service::buckets::run_retier(state, job).await,
        Some(JobKind::UploadConfirm) => crate::service::uploads::run_confirm_task(state, job).await,
        Some(JobKind::UploadExpire) => crate::service::uploads::run_expiry(state, job).await,
        Some(JobKind::BlobMirror) => crate::service::mirror::run(state, job).await,
        Some(JobKind::NamespaceExpire) => crate::service::namespaces::run_expiry(state, job).await,
        Some(JobKind::WebhookDeliver) => crate::service::webhooks::run_delivery(state, job).await,
        Some(JobKind::EventsSweep) => crate::service::events::run_sweep(state, job).await,
        Some(JobKind::BatchProcess) => crate::service::processing::run_slice(state, job).await,
        Some(JobKind::SyncRun) => crate::service::syncs::run(state, job).await,
        Some(JobKind::BatchExpireDraft) => {
            crate::service::batches::run_draft_expiry(state, job).await
        }
        None => Err(Error::Internal(format!("unknown job kind {}", job.kind))),
    }
}

/// Renews the lease until it is lost; never returns while the lease holds.
async fn keep_lease(state: &AppState, id: &str, owner: &str) {
    loop {
        // Renewed three times per lease, so that one slow renewal does not lose it.
        tokio::time::sleep(state.processing.job_lease / 3).await;
        match state.store.extend_job_lease(id, owner, &lease_until(state)).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(error = %e, "could not renew a job lease"),
        }
    }
}

async fn settle(state: &AppState, owner: &str, job: &ClaimedJob, outcome: Result<()>) {
    let at = now();
    let (status, error, run_at) = match &outcome {
        Ok(()) => ("done", None, at.clone()),
        Err(e) if job.attempts < job.max_attempts => {
            let policy =
                JobKind::parse(&job.kind).map_or(RetryPolicy::DEFAULT, |k| k.retry_policy(state));
            let delay = policy.backoff(job.attempts);
            tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "job attempt failed");
            ("queued", Some(e.to_string()), after(delay))
        }
        Err(e) => {
            tracing::error!(error = %e, "job failed for good");
            ("failed", Some(e.to_string()), at.clone())
        }
    };
    if let Err(e) =
        state.store.finish_job(&job.id, owner, status, error.as_deref(), &run_at, &at).await
    {
        tracing::error!(error = %e, "could not record a job's outcome; it runs again after its lease");
    }
    if outcome.is_ok() {
        tracing::info!("job done");
    }
}

fn lease_until(state: &AppState) -> String {
    after(state.processing.job_lease)
}

/// The time `delay` from now, written as [`now`] writes times.
pub fn after(delay: Duration) -> String {
    let delay = time::Duration::try_from(delay).unwrap_or(time::Duration::ZERO);
    format_time(time::OffsetDateTime::now_utc() + delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy::DEFAULT;
        assert_eq!(policy.backoff(1), Duration::from_secs(1));
        assert_eq!(policy.backoff(2), Duration::from_secs(2));
        assert_eq!(policy.backoff(5), Duration::from_secs(16));
        assert_eq!(policy.backoff(30), MAX_BACKOFF);

        let hooks = RetryPolicy {
            attempts: 30,
            first: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
        };
        assert_eq!(hooks.backoff(3), Duration::from_secs(120));
        assert_eq!(hooks.backoff(29), Duration::from_secs(3600));
        let total: Duration = (1..hooks.attempts).map(|n| hooks.backoff(n)).sum();
        assert!(total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(26 * 3600));
    }

    #[test]
    fn kinds_round_trip() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(JobKind::parse("nope"), None);
    }
}
