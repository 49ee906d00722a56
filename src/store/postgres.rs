//! The PostgreSQL backend: connection settings and migrations.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreResult;
use super::migration;
use crate::config::StoreConfig;

pub(super) async fn connect(config: &StoreConfig) -> StoreResult<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // A broken connection surfaces as a query error that the caller sees anyway; pinging
        // before every checkout would add a round trip to every request.
        .test_before_acquire(false)
        .connect(&config.database_url)
        .await?;
    Ok(pool)
}

/// A small pool whose commits return before they reach the disk (`synchronous_commit=off`);
/// only for writes that may be lost in a crash without harm.
pub(super) async fn connect_bookkeeping(config: &StoreConfig) -> StoreResult<PgPool> {
    let options: PgConnectOptions = config.database_url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections.clamp(1, 8))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .connect_lazy_with(options.options([("synchronous_commit", "off")]));
    Ok(pool)
}

pub(super) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        migration(1, "init", include_str!("../../migrations/postgres/0001_init.sql")),
        migration(2, "jobs", include_str!("../../migrations/postgres/0002_jobs.sql")),
        migration(3, "uploads", include_str!("../../migrations/postgres/0003_uploads.sql")),
        migration(4, "job leases", include_str!("../../migrations/postgres/0004_job_leases.sql")),
        migration(
            5,
            "events and webhooks",
            include_str!("../../migrations/postgres/0005_events_webhooks.sql"),
        ),
        migration(6, "batches", include_str!("../../migrations/postgres/0006_batches.sql")),
        migration(7, "connections", include_str!("../../migrations/postgres/0007_connections.sql")),
        migration(8, "syncs", include_str!("../../migrations/postgres/0008_syncs.sql")),
    ])
}
