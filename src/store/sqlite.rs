//! The embedded SQLite backend: connection settings and migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{StoreError, StoreResult, migration};
use crate::config::StoreConfig;

/// Opens (creating when missing) the database file, in WAL mode so that readers never wait for
/// the writer, and with REGEXP available for object filters.
pub(super) async fn connect(config: &StoreConfig) -> StoreResult<SqlitePool> {
    std::fs::create_dir_all(&config.data_dir).map_err(StoreError::DataDir)?;
    let options = SqliteConnectOptions::from_str(&config.database_url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        .with_regexp();
    let pool = SqlitePoolOptions::new()
        .max_connections(config.max_connections.min(8))
        .connect_with(options)
        .await?;
    Ok(pool)
}

pub(super) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        migration(1, "init", include_str!("../../migrations/sqlite/0001_init.sql")),
        migration(2, "jobs", include_str!("../../migrations/sqlite/0002_jobs.sql")),
        migration(3, "uploads", include_str!("../../migrations/sqlite/0003_uploads.sql")),
        migration(4, "job leases", include_str!("../../migrations/sqlite/0004_job_leases.sql")),
        migration(
            5,
            "events and webhooks",
            include_str!("../../migrations/sqlite/0005_events_webhooks.sql"),
        ),
        migration(6, "batches", include_str!("../../migrations/sqlite/0006_batches.sql")),
        migration(7, "connections", include_str!("../../migrations/sqlite/0007_connections.sql")),
        migration(8, "syncs", include_str!("../../migrations/sqlite/0008_syncs.sql")),
    ])
}
