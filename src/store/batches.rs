//! Batches, their per-object outcomes, collections and documents.
//!
//! A batch's record lives in `doc` like every other resource; its objects live in
//! `batch_items`, one row each, so that progress is counted from rows rather than rewritten
//! into the record for every object. Processing writes an object's outcome, its documents and
//! its object's document count in one transaction.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::filter_sql::SqlValue;
use super::{Db, Store, StoreResult};

/// Rows bound per multi-row statement; keeps every statement well under both backends' limit
/// on bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// The item states a batch's objects go through.
pub const ITEM_PENDING: &str = "pending";
pub const ITEM_DONE: &str = "done";
pub const ITEM_FAILED: &str = "failed";
pub const ITEM_SKIPPED: &str = "skipped";
pub const ITEM_CANCELED: &str = "canceled";

/// How many objects of a batch are in each state, and the documents they wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemCounts {
    pub pending: i64,
    pub done: i64,
    pub failed: i64,
    pub skipped: i64,
    pub canceled: i64,
    pub documents: i64,
}

impl ItemCounts {
    pub fn total(&self) -> i64 {
        self.pending + self.done + self.failed + self.skipped + self.canceled
    }

    /// Objects with an outcome.
    pub fn finished(&self) -> i64 {
        self.done + self.failed + self.skipped
    }
}

/// One object's failure, as a batch reports it.
#[derive(Debug, Clone)]
pub struct FailedItem {
    pub object_id: String,
    pub error: String,
    pub error_type: String,
    pub at: String,
}

/// The outcome of processing one object.
#[derive(Debug, Clone)]
pub struct ItemOutcome {
    pub object_id: String,
    pub state: &'static str,
    pub error: Option<String>,
    pub error_type: Option<String>,
    pub documents: i64,
}

/// A document to write.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub id: String,
    pub org_id: String,
    pub namespace_id: String,
    pub collection_id: String,
    pub bucket_id: String,
    pub object_id: String,
    pub batch_id: String,
    pub doc: Value,
}

/// A failed item as read: object id, error, error type, finish time.
type FailureRow = (String, Option<String>, Option<String>, Option<String>);

/// `($1, $2), ($3, $4), …` for `rows` rows of `cols` placeholders, starting after `first - 1`.
fn placeholders(rows: usize, cols: usize, first: usize) -> String {
    let mut out = String::new();
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", first + r * cols + c));
        }
        out.push(')');
    }
    out
}

fn list_placeholders(count: usize, first: usize) -> String {
    (0..count).map(|i| format!("${}", first + i)).collect::<Vec<_>>().join(", ")
}

/// Runs one statement with `binds` on a connection or transaction of either backend.
macro_rules! run_binds {
    ($conn:expr, $sql:expr, $binds:expr) => {{
        let mut q = sqlx::query(AssertSqlSafe($sql));
        for value in $binds {
            q = bind_value!(q, value);
        }
        q.execute($conn).await.map(|r| r.rows_affected())
    }};
}

impl Store {
    /// Stores a new batch and its objects, in order.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn insert_batch(
        &self,
        scope: (&str, &str, &str),
        doc: &Value,
        object_ids: &[String],
    ) -> StoreResult<()> {
        let (org_id, namespace_id, bucket_id) = scope;
        let id = doc["batch_id"].as_str().unwrap_or_default();
        let status = doc["status"].as_str().unwrap_or("DRAFT");
        in_transaction!(self, tx => {
            sqlx::query(
                "INSERT INTO batches (id, org_id, namespace_id, bucket_id, status, doc) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(org_id)
            .bind(namespace_id)
            .bind(bucket_id)
            .bind(status)
            .bind(Json(doc))
            .execute(&mut *tx)
            .await?;
            for (sql, binds) in item_inserts(id, 0, object_ids) {
                run_binds!(&mut *tx, sql, binds)?;
            }
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }

    /// Adds objects to a batch after the ones it has, skipping those it already holds, and
    /// replaces its record; only while the batch is still `expected_status`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn add_batch_items(
        &self,
        id: &str,
        expected_status: &str,
        doc: &Value,
        object_ids: &[String],
    ) -> StoreResult<bool> {
        let updated = in_transaction!(self, tx => {
            let updated = sqlx::query("UPDATE batches SET doc = $1 WHERE id = $2 AND status = $3")
                .bind(Json(doc))
                .bind(id)
                .bind(expected_status)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated > 0 {
                let next: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(MAX(position) + 1, 0) AS BIGINT) FROM batch_items \
                     WHERE batch_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                for (sql, binds) in item_inserts(id, next, object_ids) {
                    run_binds!(&mut *tx, sql, binds)?;
                }
            }
            Ok::<bool, sqlx::Error>(updated > 0)
        })?;
        Ok(updated)
    }

    /// Replaces a batch's record when its status is one of `from`; false when it is not.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn update_batch_if(&self, id: &str, from: &[&str], doc: &Value) -> StoreResult<bool> {
        let status = doc["status"].as_str().unwrap_or_default();
        let sql = format!(
            "UPDATE batches SET doc = $1, status = $2 WHERE id = $3 AND status IN ({})",
            list_placeholders(from.len(), 4)
        );
        let done = with_pool!(self, pool => {
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(Json(doc)).bind(status).bind(id);
            for s in from {
                q = q.bind(*s);
            }
            q.execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(done > 0)
    }

    /// The status column of a batch, cheaper to read than its record.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn batch_status(&self, id: &str) -> StoreResult<Option<String>> {
        Ok(with_pool!(self, pool => sqlx::query_scalar("SELECT status FROM batches WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await)?)
    }

    /// Deletes a batch and its items while its status is one of `statuses`; false when it is
    /// not.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_batch_if(&self, id: &str, statuses: &[&str]) -> StoreResult<bool> {
        let sql = format!(
            "DELETE FROM batches WHERE id = $1 AND status IN ({})",
            list_placeholders(statuses.len(), 2)
        );
        let done = in_transaction!(self, tx => {
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(id);
            for status in statuses {
                q = q.bind(*status);
            }
            let done = q.execute(&mut *tx).await?.rows_affected();
            if done > 0 {
                sqlx::query("DELETE FROM batch_items WHERE batch_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            done
        });
        Ok(done > 0)
    }

    /// One past the highest position of a batch's objects: the range its jobs must cover.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn batch_position_span(&self, id: &str) -> StoreResult<i64> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(position) + 1, 0) AS BIGINT) FROM batch_items \
             WHERE batch_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await)?)
    }

    /// Counts a batch's objects by state.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn batch_item_counts(&self, id: &str) -> StoreResult<ItemCounts> {
        let rows: Vec<(String, i64, i64)> = with_pool!(self, pool => sqlx::query_as(
            "SELECT state, COUNT(*), CAST(COALESCE(SUM(documents), 0) AS BIGINT) \
             FROM batch_items WHERE batch_id = $1 GROUP BY state")
            .bind(id)
            .fetch_all(pool)
            .await)?;
        let mut counts = ItemCounts::default();
        for (state, n, documents) in rows {
            counts.documents += documents;
            match state.as_str() {
                ITEM_PENDING => counts.pending = n,
                ITEM_DONE => counts.done = n,
                ITEM_FAILED => counts.failed = n,
                ITEM_SKIPPED => counts.skipped = n,
                _ => counts.canceled += n,
            }
        }
        Ok(counts)
    }

    /// A batch's object ids in order, at most `limit` of them.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn batch_object_ids(&self, id: &str, limit: i64) -> StoreResult<Vec<String>> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "SELECT object_id FROM batch_items WHERE batch_id = $1 ORDER BY position LIMIT $2")
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }

    /// The failed objects of a batch, first failed first, at most `limit`; and the count of
    /// failures by error type.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn batch_failures(
        &self,
        id: &str,
        limit: i64,
    ) -> StoreResult<(Vec<FailedItem>, HashMap<String, i64>)> {
        let rows: Vec<FailureRow> = with_pool!(self, pool => sqlx::query_as(
                "SELECT object_id, error, error_type, finished_at FROM batch_items \
                 WHERE batch_id = $1 AND state = 'failed' ORDER BY position LIMIT $2")
                .bind(id)
                .bind(limit)
                .fetch_all(pool)
                .await)?;
        let summary: Vec<(Option<String>, i64)> = with_pool!(self, pool => sqlx::query_as(
            "SELECT error_type, COUNT(*) FROM batch_items \
             WHERE batch_id = $1 AND state = 'failed' GROUP BY error_type")
            .bind(id)
            .fetch_all(pool)
            .await)?;
        let failed = rows
            .into_iter()
            .map(|(object_id, error, error_type, at)| FailedItem {
                object_id,
                error: error.unwrap_or_default(),
                error_type: error_type.unwrap_or_else(|| "permanent".into()),
                at: at.unwrap_or_default(),
            })
            .collect();
        let summary = summary
            .into_iter()
            .map(|(t, n)| (t.unwrap_or_else(|| "permanent".into()), n))
            .collect();
        Ok((failed, summary))
    }

    /// The next `limit` pending objects of a batch at positions in `[from, to)`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn pending_batch_items(
        &self,
        id: &str,
        from: i64,
        to: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "SELECT object_id FROM batch_items WHERE batch_id = $1 AND state = 'pending' \
             AND position >= $2 AND position < $3 ORDER BY position LIMIT $4")
            .bind(id)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }

    /// Moves a batch's objects in state `from` to `to`, clearing their errors when they go back
    /// to pending; returns how many moved.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn move_batch_items(&self, id: &str, from: &str, to: &str) -> StoreResult<u64> {
        let sql = "UPDATE batch_items SET state = $1, \
                   error = CASE WHEN $1 = 'pending' THEN NULL ELSE error END, \
                   error_type = CASE WHEN $1 = 'pending' THEN NULL ELSE error_type END \
                   WHERE batch_id = $2 AND state = $3";
        Ok(with_pool!(self, pool => sqlx::query(sql)
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?)
    }

    /// The objects among `object_ids` that already have documents in `collection_id` written
    /// by a batch other than `batch_id`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn objects_with_documents(
        &self,
        collection_id: &str,
        batch_id: &str,
        object_ids: &[String],
    ) -> StoreResult<Vec<String>> {
        if object_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT object_id FROM documents WHERE collection_id = $1 AND batch_id <> $2 \
             AND object_id IN ({})",
            list_placeholders(object_ids.len(), 3)
        );
        Ok(with_pool!(self, pool => {
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql)).bind(collection_id).bind(batch_id);
            for id in object_ids {
                q = q.bind(id);
            }
            q.fetch_all(pool).await
        })?)
    }

    /// Records the outcome of a group of objects of a batch: replaces their documents in the
    /// batch's collections, marks them finished, and updates each object's document count, all
    /// in one transaction. Objects no longer pending (a cancel came first) are left as they are.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn record_batch_outcomes(
        &self,
        batch_id: &str,
        collection_ids: &[String],
        outcomes: &[ItemOutcome],
        documents: &[NewDocument],
        finished_at: &str,
    ) -> StoreResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let object_ids: Vec<String> = outcomes.iter().map(|o| o.object_id.clone()).collect();
        let dialect = self.dialect();
        in_transaction!(self, tx => {
            // Only objects still pending are recorded; the rest are left alone.
            let mut binds = vec![SqlValue::Text(batch_id.to_string())];
            binds.extend(object_ids.iter().map(|id| SqlValue::Text(id.clone())));
            let sql = format!(
                "SELECT object_id FROM batch_items WHERE batch_id = $1 AND state = 'pending' \
                 AND object_id IN ({}) FOR UPDATE",
                list_placeholders(object_ids.len(), 2)
            );
            let sql = if matches!(dialect, super::filter_sql::Dialect::Sqlite) {
                sql.replace(" FOR UPDATE", "")
            } else {
                sql
            };
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql));
            for value in binds {
                q = bind_value!(q, value);
            }
            let pending: Vec<String> = q.fetch_all(&mut *tx).await?;
            let pending: std::collections::HashSet<String> = pending.into_iter().collect();
            if pending.is_empty() {
                return Ok(());
            }
            let live: Vec<&String> = object_ids.iter().filter(|id| pending.contains(*id)).collect();
            // A failed object keeps the documents an earlier batch wrote for it.
            let replaced: Vec<&String> = outcomes
                .iter()
                .filter(|o| o.state == ITEM_DONE && pending.contains(&o.object_id))
                .map(|o| &o.object_id)
                .collect();

            if !collection_ids.is_empty() && !replaced.is_empty() {
                let mut binds: Vec<SqlValue> =
                    collection_ids.iter().map(|c| SqlValue::Text(c.clone())).collect();
                binds.extend(replaced.iter().map(|id| SqlValue::Text((*id).clone())));
                let sql = format!(
                    "DELETE FROM documents WHERE collection_id IN ({}) AND object_id IN ({})",
                    list_placeholders(collection_ids.len(), 1),
                    list_placeholders(replaced.len(), collection_ids.len() + 1)
                );
                run_binds!(&mut *tx, sql, binds)?;
            }

            let docs: Vec<&NewDocument> =
                documents.iter().filter(|d| pending.contains(&d.object_id)).collect();
            for group in docs.chunks(ROWS_PER_STATEMENT / 4) {
                let sql = format!(
                    "INSERT INTO documents (id, org_id, namespace_id, collection_id, bucket_id, \
                     object_id, batch_id, doc) VALUES {}",
                    placeholders(group.len(), 8, 1)
                );
                let mut binds = Vec::with_capacity(group.len() * 8);
                for d in group {
                    binds.extend([
                        SqlValue::Text(d.id.clone()),
                        SqlValue::Text(d.org_id.clone()),
                        SqlValue::Text(d.namespace_id.clone()),
                        SqlValue::Text(d.collection_id.clone()),
                        SqlValue::Text(d.bucket_id.clone()),
                        SqlValue::Text(d.object_id.clone()),
                        SqlValue::Text(d.batch_id.clone()),
                        SqlValue::Json(d.doc.clone()),
                    ]);
                }
                run_binds!(&mut *tx, sql, binds)?;
            }

            for o in outcomes.iter().filter(|o| pending.contains(&o.object_id)) {
                sqlx::query(
                    "UPDATE batch_items SET state = $1, error = $2, error_type = $3, \
                     documents = $4, finished_at = $5, attempts = attempts + 1 \
                     WHERE batch_id = $6 AND object_id = $7",
                )
                .bind(o.state)
                .bind(&o.error)
                .bind(&o.error_type)
                .bind(o.documents)
                .bind(finished_at)
                .bind(batch_id)
                .bind(&o.object_id)
                .execute(&mut *tx)
                .await?;
            }

            let count_expr = "(SELECT COUNT(*) FROM documents d WHERE d.object_id = objects.id)";
            let set = match dialect {
                super::filter_sql::Dialect::Postgres => {
                    format!("jsonb_set(doc, '{{document_count}}', to_jsonb({count_expr}))")
                }
                super::filter_sql::Dialect::Sqlite => {
                    format!("json_set(doc, '$.document_count', {count_expr})")
                }
            };
            let sql = format!(
                "UPDATE objects SET doc = {set} WHERE id IN ({})",
                list_placeholders(live.len(), 1)
            );
            let binds = live.iter().map(|id| SqlValue::Text((*id).clone()));
            run_binds!(&mut *tx, sql, binds)?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }

    /// The ids among `ids` of live objects of a bucket.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn existing_object_ids(
        &self,
        bucket_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<String>> {
        let mut found = Vec::with_capacity(ids.len());
        for group in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT id FROM objects WHERE bucket_id = $1 AND deleted_at IS NULL AND id IN ({})",
                list_placeholders(group.len(), 2)
            );
            let rows: Vec<String> = with_pool!(self, pool => {
                let mut q = sqlx::query_scalar(AssertSqlSafe(sql)).bind(bucket_id);
                for id in group {
                    q = q.bind(id);
                }
                q.fetch_all(pool).await
            })?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// The records of the live objects of a bucket among `ids`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn objects_by_ids(&self, bucket_id: &str, ids: &[String]) -> StoreResult<Vec<Value>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT doc FROM objects WHERE bucket_id = $1 AND deleted_at IS NULL AND id IN ({})",
            list_placeholders(ids.len(), 2)
        );
        let rows: Vec<Json<Value>> = with_pool!(self, pool => {
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql)).bind(bucket_id);
            for id in ids {
                q = q.bind(id);
            }
            q.fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(|Json(doc)| doc).collect())
    }

    /// The ids of the live objects in `scope` that match `filter`, oldest first, at most
    /// `limit`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn matching_object_ids(
        &self,
        scope: super::Scope<'_>,
        filter: Option<&crate::model::filter::Filter>,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let mut binds = Vec::new();
        let mut sql = String::from("SELECT id FROM objects WHERE ");
        super::push_scope(&mut sql, &mut binds, scope);
        sql.push_str(" AND deleted_at IS NULL");
        if let Some(filter) = filter {
            let mut next = binds.len() + 1;
            let fragment =
                super::filter_sql::compile_filter(filter, self.dialect(), "doc", &mut next);
            super::push_fragment(&mut sql, &mut binds, fragment);
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {limit}"));
        Ok(with_pool!(self, pool => {
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql));
            for value in binds {
                q = bind_value!(q, value);
            }
            q.fetch_all(pool).await
        })?)
    }

    /// The organization a task belongs to.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn task_org(&self, task_id: &str) -> StoreResult<Option<String>> {
        Ok(with_pool!(self, pool => sqlx::query_scalar("SELECT org_id FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_optional(pool)
            .await)?)
    }

    /// Stores a collection.
    ///
    /// # Errors
    ///
    /// [`super::StoreError::Duplicate`] when the namespace has a collection of that name.
    pub async fn insert_collection(
        &self,
        org_id: &str,
        namespace_id: &str,
        doc: &Value,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO collections (id, org_id, namespace_id, name, doc) \
                   VALUES ($1, $2, $3, $4, $5)";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(doc["collection_id"].as_str().unwrap_or_default())
            .bind(org_id)
            .bind(namespace_id)
            .bind(doc["collection_name"].as_str().unwrap_or_default())
            .bind(Json(doc))
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Every collection of a namespace, oldest first.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn namespace_collections(&self, namespace_id: &str) -> StoreResult<Vec<Value>> {
        let rows: Vec<Json<Value>> = with_pool!(self, pool => sqlx::query_scalar(
            "SELECT doc FROM collections WHERE namespace_id = $1 ORDER BY seq")
            .bind(namespace_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(|Json(doc)| doc).collect())
    }

    /// Counts the collections and the documents of a namespace.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn namespace_processing_counts(&self, namespace_id: &str) -> StoreResult<(i64, i64)> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM collections WHERE namespace_id = $1), \
                    (SELECT COUNT(*) FROM documents WHERE namespace_id = $1)")
            .bind(namespace_id)
            .fetch_one(pool)
            .await)?)
    }

    /// Counts the documents of a collection.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn collection_document_count(&self, collection_id: &str) -> StoreResult<i64> {
        Ok(with_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM documents WHERE collection_id = $1")
            .bind(collection_id)
            .fetch_one(pool)
            .await)?)
    }

    /// Deletes what processing wrote for a namespace: its batches, their items, collections
    /// and documents.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_namespace_processing(&self, namespace_id: &str) -> StoreResult<()> {
        in_transaction!(self, tx => {
            for sql in [
                "DELETE FROM batch_items WHERE batch_id IN \
                 (SELECT id FROM batches WHERE namespace_id = $1)",
                "DELETE FROM batches WHERE namespace_id = $1",
                "DELETE FROM documents WHERE namespace_id = $1",
                "DELETE FROM collections WHERE namespace_id = $1",
            ] {
                sqlx::query(sql).bind(namespace_id).execute(&mut *tx).await?;
            }
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }

    /// Deletes the batches of a bucket and the documents of its objects.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_bucket_processing(&self, bucket_id: &str) -> StoreResult<()> {
        in_transaction!(self, tx => {
            for sql in [
                "DELETE FROM batch_items WHERE batch_id IN \
                 (SELECT id FROM batches WHERE bucket_id = $1)",
                "DELETE FROM batches WHERE bucket_id = $1",
                "DELETE FROM documents WHERE bucket_id = $1",
            ] {
                sqlx::query(sql).bind(bucket_id).execute(&mut *tx).await?;
            }
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }
}

/// The inserts of a batch's items, numbered from `first_position`.
fn item_inserts(
    batch_id: &str,
    first_position: i64,
    object_ids: &[String],
) -> Vec<(String, Vec<SqlValue>)> {
    let mut out = Vec::new();
    for (n, group) in object_ids.chunks(ROWS_PER_STATEMENT).enumerate() {
        let sql = format!(
            "INSERT INTO batch_items (batch_id, position, object_id, state) VALUES {} \
             ON CONFLICT DO NOTHING",
            placeholders(group.len(), 4, 1)
        );
        let mut binds = Vec::with_capacity(group.len() * 4);
        for (i, object_id) in group.iter().enumerate() {
            let position = first_position + (n * ROWS_PER_STATEMENT + i) as i64;
            binds.extend([
                SqlValue::Text(batch_id.to_string()),
                SqlValue::Int(position),
                SqlValue::Text(object_id.clone()),
                SqlValue::Text(ITEM_PENDING.to_string()),
            ]);
        }
        out.push((sql, binds));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(placeholders(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 2, 4), "($4, $5)");
        assert_eq!(list_placeholders(3, 2), "$2, $3, $4");
    }

    #[test]
    fn item_inserts_number_positions_across_statements() {
        let ids: Vec<String> = (0..ROWS_PER_STATEMENT + 2).map(|i| format!("obj_{i}")).collect();
        let inserts = item_inserts("btch_1", 10, &ids);
        assert_eq!(inserts.len(), 2);
        let (_, binds) = &inserts[1];
        assert_eq!(binds[1], SqlValue::Int(10 + ROWS_PER_STATEMENT as i64));
        assert_eq!(binds[2], SqlValue::Text(format!("obj_{ROWS_PER_STATEMENT}")));
    }
}
