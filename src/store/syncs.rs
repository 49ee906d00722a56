//! Sync configurations, their runs, the lock a run holds, and the ledger of copied files.
//! Reads, lists and record updates go through the generic functions of [`Table::Syncs`] and
//! [`Table::SyncJobs`].

use std::collections::HashMap;

use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::{Db, Scope, Store, StoreResult, Table};

/// A source file as a sync last copied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub key: String,
    pub etag: Option<String>,
    pub size: i64,
    pub last_modified: String,
    pub object_id: String,
}

/// How many keys one ledger statement names.
const KEYS_PER_STATEMENT: usize = 500;

type LedgerTuple = (String, Option<String>, i64, String, String);

impl Store {
    /// Stores a new record of a bucket's sync (`table` is [`Table::Syncs`]) or of one of its
    /// runs ([`Table::SyncJobs`], with `sync_id`).
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn insert_sync_record(
        &self,
        table: Table,
        scope: Scope<'_>,
        id: &str,
        sync_id: Option<&str>,
        doc: &Value,
    ) -> StoreResult<()> {
        let (columns, values) = match sync_id {
            Some(_) => (", sync_id", ", $6"),
            None => ("", ""),
        };
        let sql = format!(
            "INSERT INTO {} (id, org_id, namespace_id, bucket_id, doc{columns}) \
             VALUES ($1, $2, $3, $4, $5{values})",
            table.name()
        );
        with_pool!(self, pool => {
            let mut q = sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .bind(scope.org_id)
                .bind(scope.namespace_id.unwrap_or_default())
                .bind(scope.bucket_id.unwrap_or_default())
                .bind(Json(doc));
            if let Some(sync_id) = sync_id {
                q = q.bind(sync_id);
            }
            q.execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }

    /// Takes the lock of a sync for `owner` until `until`, when it is free, expired at `now`,
    /// or already `owner`'s; answers whether `owner` holds it.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn lock_sync(
        &self,
        id: &str,
        owner: &str,
        until: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let sql = "UPDATE syncs SET locked_by = $2, locked_until = $3 WHERE id = $1 \
                   AND (locked_until IS NULL OR locked_until < $4 OR locked_by = $2)";
        let done = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(owner)
            .bind(until)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Releases the lock of a sync: `owner`'s only, or whoever holds it when `owner` is `None`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn unlock_sync(&self, id: &str, owner: Option<&str>) -> StoreResult<bool> {
        let sql = "UPDATE syncs SET locked_by = NULL, locked_until = NULL WHERE id = $1 \
                   AND locked_by IS NOT NULL AND ($2 IS NULL OR locked_by = $2)";
        let done = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Who holds the lock of a sync, and until when.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn sync_lock(&self, id: &str) -> StoreResult<Option<(String, String)>> {
        let sql = "SELECT locked_by, locked_until FROM syncs WHERE id = $1";
        let row: Option<(Option<String>, Option<String>)> = with_pool!(self, pool =>
            sqlx::query_as(sql).bind(id).fetch_optional(pool).await)?;
        Ok(row.and_then(|(by, until)| by.zip(until)))
    }

    /// The ledger entries of a sync for `keys`, by key.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn ledger_entries(
        &self,
        sync_id: &str,
        keys: &[&str],
    ) -> StoreResult<HashMap<String, LedgerEntry>> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let sql = format!(
                "SELECT key, etag, size, last_modified, object_id FROM sync_ledger \
                 WHERE sync_id = $1 AND key IN ({})",
                placeholders(2, chunk.len())
            );
            let rows: Vec<LedgerTuple> = with_pool!(self, pool => {
                let mut q = sqlx::query_as(AssertSqlSafe(sql)).bind(sync_id);
                for key in chunk {
                    q = q.bind(*key);
                }
                q.fetch_all(pool).await
            })?;
            for (key, etag, size, last_modified, object_id) in rows {
                let entry = LedgerEntry { key: key.clone(), etag, size, last_modified, object_id };
                found.insert(key, entry);
            }
        }
        Ok(found)
    }

    /// Records that run `run` of a sync saw `keys` in its listing.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn ledger_mark_seen(
        &self,
        sync_id: &str,
        keys: &[&str],
        run: i64,
    ) -> StoreResult<()> {
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE sync_ledger SET seen_run = $2 WHERE sync_id = $1 AND key IN ({})",
                placeholders(3, chunk.len())
            );
            with_pool!(self, pool => {
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(sync_id).bind(run);
                for key in chunk {
                    q = q.bind(*key);
                }
                q.execute(pool).await.map(|_| ())
            })?;
        }
        Ok(())
    }

    /// Records a copied file (new or replacing its earlier entry), seen by run `run`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn ledger_put(
        &self,
        sync_id: &str,
        entry: &LedgerEntry,
        run: i64,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO sync_ledger \
                   (sync_id, key, etag, size, last_modified, object_id, seen_run) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sync_id, key) DO UPDATE SET \
                   etag = excluded.etag, size = excluded.size, \
                   last_modified = excluded.last_modified, object_id = excluded.object_id, \
                   seen_run = excluded.seen_run";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(sync_id)
            .bind(&entry.key)
            .bind(&entry.etag)
            .bind(entry.size)
            .bind(&entry.last_modified)
            .bind(&entry.object_id)
            .bind(run)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Up to `limit` ledger entries of a sync that run `run` did not see, and how many entries
    /// the ledger holds in all.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn ledger_unseen(
        &self,
        sync_id: &str,
        run: i64,
        limit: i64,
    ) -> StoreResult<(Vec<LedgerEntry>, i64)> {
        let sql = "SELECT key, etag, size, last_modified, object_id FROM sync_ledger \
                   WHERE sync_id = $1 AND seen_run < $2 ORDER BY key LIMIT $3";
        let rows: Vec<LedgerTuple> = with_pool!(self, pool => sqlx::query_as(sql)
            .bind(sync_id)
            .bind(run)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        let total: i64 = with_pool!(self, pool =>
            sqlx::query_scalar("SELECT COUNT(*) FROM sync_ledger WHERE sync_id = $1")
                .bind(sync_id)
                .fetch_one(pool)
                .await)?;
        let entries = rows
            .into_iter()
            .map(|(key, etag, size, last_modified, object_id)| LedgerEntry {
                key,
                etag,
                size,
                last_modified,
                object_id,
            })
            .collect();
        Ok((entries, total))
    }

    /// Forgets a file of a sync's ledger.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn ledger_forget(&self, sync_id: &str, key: &str) -> StoreResult<()> {
        let sql = "DELETE FROM sync_ledger WHERE sync_id = $1 AND key = $2";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(sync_id)
            .bind(key)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The failure record of a sync's file, if it has one: its state and record.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn sync_failure(&self, sync_id: &str, key: &str) -> StoreResult<Option<Value>> {
        let sql = "SELECT doc FROM sync_failures WHERE sync_id = $1 AND key = $2";
        let doc: Option<Json<Value>> = with_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(sync_id)
            .bind(key)
            .fetch_optional(pool)
            .await)?;
        Ok(doc.map(|Json(doc)| doc))
    }

    /// The failure states (`retrying`, `quarantined`, `failed`) of those of `keys` that have
    /// failed, by key.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn sync_failure_states(
        &self,
        sync_id: &str,
        keys: &[&str],
    ) -> StoreResult<HashMap<String, String>> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let sql = format!(
                "SELECT key, state FROM sync_failures WHERE sync_id = $1 AND key IN ({})",
                placeholders(2, chunk.len())
            );
            let rows: Vec<(String, String)> = with_pool!(self, pool => {
                let mut q = sqlx::query_as(AssertSqlSafe(sql)).bind(sync_id);
                for key in chunk {
                    q = q.bind(*key);
                }
                q.fetch_all(pool).await
            })?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// Stores the failure record of a sync's file.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn put_sync_failure(&self, sync_id: &str, key: &str, doc: &Value) -> StoreResult<()> {
        let sql = "INSERT INTO sync_failures (sync_id, key, state, error_type, doc) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sync_id, key) DO UPDATE SET \
                   state = excluded.state, error_type = excluded.error_type, doc = excluded.doc";
        let state = doc["state"].as_str().unwrap_or("retrying");
        let error_type = doc["error_type"].as_str().unwrap_or("");
        with_pool!(self, pool => sqlx::query(sql)
            .bind(sync_id)
            .bind(key)
            .bind(state)
            .bind(error_type)
            .bind(Json(doc))
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Forgets the failure record of a sync's file, once it was copied.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn clear_sync_failure(&self, sync_id: &str, key: &str) -> StoreResult<()> {
        let sql = "DELETE FROM sync_failures WHERE sync_id = $1 AND key = $2";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(sync_id)
            .bind(key)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The failure records of a sync in `states`, of `error_types` when given, oldest key
    /// first, at most `limit`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn sync_failures(
        &self,
        sync_id: &str,
        states: &[&str],
        error_types: &[String],
        limit: i64,
    ) -> StoreResult<Vec<Value>> {
        let mut sql = format!(
            "SELECT doc FROM sync_failures WHERE sync_id = $1 AND state IN ({})",
            placeholders(2, states.len())
        );
        if !error_types.is_empty() {
            let first = 2 + states.len();
            sql.push_str(&format!(
                " AND error_type IN ({})",
                placeholders(first, error_types.len())
            ));
        }
        sql.push_str(&format!(" ORDER BY key LIMIT {limit}"));
        let docs: Vec<Json<Value>> = with_pool!(self, pool => {
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql)).bind(sync_id);
            for state in states {
                q = q.bind(*state);
            }
            for error_type in error_types {
                q = q.bind(error_type);
            }
            q.fetch_all(pool).await
        })?;
        Ok(docs.into_iter().map(|Json(doc)| doc).collect())
    }

    /// Deletes a sync with its runs and its ledger.
    ///
    /// # Errors
    ///
    /// Fails on a database error; then nothing was deleted.
    pub async fn delete_sync(&self, id: &str) -> StoreResult<()> {
        in_transaction!(self, tx => {
            for sql in [
                "DELETE FROM sync_ledger WHERE sync_id = $1",
                "DELETE FROM sync_failures WHERE sync_id = $1",
                "DELETE FROM sync_jobs WHERE sync_id = $1",
                "DELETE FROM syncs WHERE id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }
}

/// `$first, $first+1, …` for `count` parameters.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
