//! The durable job queue: rows in the metadata store, claimed with leases.
//!
//! A worker claims the oldest due job by writing its own name and a lease expiry into the row.
//! PostgreSQL skips rows other workers hold (`FOR UPDATE SKIP LOCKED`); SQLite has one writer
//! at a time, so its claim is a plain update inside a write transaction. A job whose lease
//! ran out, because its worker died, is claimable again.

use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::{Db, Store, StoreResult};

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub kind: String,
    pub org_id: String,
    pub payload: Value,
    pub max_attempts: i32,
    pub run_at: String,
    /// At most one unfinished job may hold a dedupe key; enqueuing a second is a no-op.
    pub dedupe_key: Option<String>,
}

/// A job a worker holds the lease of.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    pub kind: String,
    pub org_id: String,
    pub payload: Value,
    pub attempts: i32,
    pub max_attempts: i32,
}

type ClaimedRow = (String, String, String, Json<Value>, i32, i32);

/// Inserts one job unless an unfinished job holds its dedupe key; bound by `bind_job!`.
pub(super) const ENQUEUE_SQL: &str = "INSERT INTO jobs (id, kind, org_id, payload, status, \
     attempts, max_attempts, run_at, dedupe_key, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $8, $8) ON CONFLICT DO NOTHING";

/// The two ways a job becomes claimable, each answered by its own index: queued and due, or
/// running under a lease that ran out. Due jobs go first.
const CLAIMABLE: [&str; 2] = [
    "status = 'queued' AND run_at <= $3 ORDER BY run_at",
    "status = 'running' AND lease_until < $3 ORDER BY lease_until",
];

fn claim_sql(which: &str, skip_locked: bool) -> String {
    let lock = if skip_locked { " FOR UPDATE SKIP LOCKED" } else { "" };
    format!(
        "UPDATE jobs SET status = 'running', lease_owner = $1, lease_until = $2, \
         attempts = attempts + 1, updated_at = $3 \
         WHERE id = (SELECT id FROM jobs WHERE {which} LIMIT 1{lock}) \
         RETURNING id, kind, org_id, payload, attempts, max_attempts"
    )
}

impl Store {
    /// Adds a job; returns false when an unfinished job holds the same dedupe key.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn enqueue_job(&self, job: &NewJob, now: &str) -> StoreResult<bool> {
        let inserted = with_pool!(self, pool => bind_job!(sqlx::query(ENQUEUE_SQL), job, now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(inserted > 0)
    }

    /// Claims the oldest due job, or one whose lease ran out, for `owner` until `lease_until`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn claim_job(
        &self,
        owner: &str,
        lease_until: &str,
        now: &str,
    ) -> StoreResult<Option<ClaimedJob>> {
        let lane = self.bookkeeping();
        let mut row: Option<ClaimedRow> = None;
        for which in CLAIMABLE {
            row = match &lane.db {
                Db::Postgres(pool) => {
                    sqlx::query_as(AssertSqlSafe(claim_sql(which, true)))
                        .bind(owner)
                        .bind(lease_until)
                        .bind(now)
                        .fetch_optional(pool)
                        .await?
                }
                Db::Sqlite(pool) => {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                    let row = sqlx::query_as(AssertSqlSafe(claim_sql(which, false)))
                        .bind(owner)
                        .bind(lease_until)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    row
                }
            };
            if row.is_some() {
                break;
            }
        }
        Ok(row.map(|(id, kind, org_id, Json(payload), attempts, max_attempts)| ClaimedJob {
            id,
            kind,
            org_id,
            payload,
            attempts,
            max_attempts,
        }))
    }

    /// Extends the lease of a job this owner still holds; false when it lost the lease.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn extend_job_lease(
        &self,
        id: &str,
        owner: &str,
        lease_until: &str,
    ) -> StoreResult<bool> {
        let sql = "UPDATE jobs SET lease_until = $1 \
                   WHERE id = $2 AND lease_owner = $3 AND status = 'running'";
        let lane = self.bookkeeping();
        let done = with_pool!(lane, pool => sqlx::query(sql)
            .bind(lease_until)
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Records how a claimed job ended: `done`, `failed`, or `queued` again at `run_at` for a
    /// retry. Only the lease holder's word counts. A finished job frees its dedupe key.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn finish_job(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        error: Option<&str>,
        run_at: &str,
        now: &str,
    ) -> StoreResult<()> {
        let sql = "UPDATE jobs SET status = $1, last_error = $2, run_at = $3, lease_owner = NULL, \
                   lease_until = NULL, updated_at = $4, \
                   dedupe_key = CASE WHEN $1 = 'queued' THEN dedupe_key ELSE NULL END \
                   WHERE id = $5 AND lease_owner = $6";
        let lane = self.bookkeeping();
        with_pool!(lane, pool => sqlx::query(sql)
            .bind(status)
            .bind(error)
            .bind(run_at)
            .bind(now)
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Whether this store can notify workers of new jobs (PostgreSQL's `LISTEN`).
    pub fn can_listen(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// A connection that receives a notification for every job added, by any process.
    ///
    /// # Errors
    ///
    /// Fails when the store is not PostgreSQL or the connection fails.
    pub async fn job_notifications(&self) -> StoreResult<sqlx::postgres::PgListener> {
        let Db::Postgres(pool) = &self.db else {
            return Err(sqlx::Error::Protocol("only PostgreSQL sends notifications".into()).into());
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen("sluice_jobs").await?;
        Ok(listener)
    }

    /// Counts jobs by status, for health and tests.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn job_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let sql = "SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status";
        Ok(with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)?)
    }
}
