//! The metadata store: the only module that speaks SQL.
//!
//! Two backends sit behind [`Store`]: PostgreSQL for production and SQLite for the embedded
//! default. Both keep every resource's full record as JSON in a `doc` column, with a few plain
//! columns beside it that scope, index and constrain the record. Statements are written once in
//! the SQL both databases share (`$N` placeholders work in both); where the dialects differ,
//! [`filter_sql`] and the backend modules say so. The backend is chosen from the URL scheme and
//! nothing outside this module asks which one is running.

pub mod filter_sql;
mod postgres;
mod sqlite;

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};

use crate::config::StoreConfig;
use crate::model::filter::{Filter, Sort};
use filter_sql::{Cursor, Dialect, SqlFragment, SqlValue};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; the caller knows which one it could be.
    #[error("a record with the same unique value already exists")]
    Duplicate,
    /// A row cannot be deleted while other rows refer to it.
    #[error("the record is still referenced")]
    StillReferenced,
    /// A filter's regular expression was refused by the database.
    #[error("invalid regular expression: {0}")]
    InvalidRegex(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("could not prepare the data directory: {0}")]
    DataDir(#[source] std::io::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate,
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::StillReferenced
            }
            // PostgreSQL's invalid_regular_expression, and SQLite's error from its REGEXP function.
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("2201B" | "1043")) => {
                StoreError::InvalidRegex(db.message().to_string())
            }
            _ => StoreError::Database(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds. The body is compiled once
/// per backend, so it may only use what both sqlx drivers offer.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.db {
            Db::Postgres($pool) => $body,
            Db::Sqlite($pool) => $body,
        }
    };
}

/// Opens a write transaction as `$tx` and runs `$body` in it; the body returns a `StoreResult`
/// and the transaction commits only when it is `Ok`. SQLite takes its write lock up front, so
/// that two writers wait for each other instead of failing on a lock upgrade.
macro_rules! in_transaction {
    ($store:expr, $tx:ident => $body:expr) => {
        match &$store.db {
            Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            Db::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Binds one [`SqlValue`] to a query of either backend.
macro_rules! bind_value {
    ($q:expr, $value:expr) => {
        match $value {
            SqlValue::Text(s) => $q.bind(s),
            SqlValue::Int(i) => $q.bind(i),
            SqlValue::Float(f) => $q.bind(f),
            SqlValue::Bool(b) => $q.bind(b),
            SqlValue::Json(v) => $q.bind(Json(v)),
        }
    };
}

/// Binds the columns of each [`NewObject`] to a multi-row insert, in column order.
/// Binds the [`RowEvent`]s of [`with_created_events`], each after its object's id.
macro_rules! bind_created_events {
    ($q:expr, $events:expr) => {{
        let mut q = $q;
        for (object_id, e) in &$events {
            q = q
                .bind(*object_id)
                .bind(&e.id)
                .bind(&e.event_type)
                .bind(&e.resource_type)
                .bind(&e.operation)
                .bind(&e.created_at);
        }
        q
    }};
}

macro_rules! bind_objects {
    ($q:expr, $objects:expr) => {{
        let mut q = $q;
        for o in $objects {
            q = q
                .bind(&o.id)
                .bind(&o.org_id)
                .bind(&o.namespace_id)
                .bind(&o.bucket_id)
                .bind(Json(&o.doc))
                .bind(o.size_bytes)
                .bind(&o.idempotency_key)
                .bind(&o.unique_key);
        }
        q
    }};
}

/// Binds the columns of a [`NewJob`] to [`jobs::ENQUEUE_SQL`], after the time `$now`.
macro_rules! bind_job {
    ($q:expr, $job:expr, $now:expr) => {
        $q.bind(&$job.id)
            .bind(&$job.kind)
            .bind(&$job.org_id)
            .bind(Json(&$job.payload))
            .bind($job.max_attempts)
            .bind(&$job.run_at)
            .bind(&$job.dedupe_key)
            .bind($now)
    };
}

mod batches;
mod connections;
mod syncs;
pub use syncs::LedgerEntry;
mod hooks;
mod jobs;
pub use batches::{
    FailedItem, ITEM_CANCELED, ITEM_DONE, ITEM_FAILED, ITEM_PENDING, ITEM_SKIPPED, ItemCounts,
    ItemOutcome, NewDocument,
};
pub use hooks::{AttemptRecord, Delivery, EventQuery, EventRow, NewDelivery, NewEvent};
pub use jobs::{ClaimedJob, NewJob};

/// One embedded migration.
fn migration(version: i64, name: &'static str, sql: &'static str) -> sqlx::migrate::Migration {
    use sqlx::SqlSafeStr;
    let sql = AssertSqlSafe(sql).into_sql_str();
    sqlx::migrate::Migration::new(
        version,
        name.into(),
        sqlx::migrate::MigrationType::Simple,
        sql,
        false,
    )
}

/// The tables that hold JSON records and share the generic list and lookup code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Namespaces,
    Buckets,
    Objects,
    Tasks,
    Uploads,
    Webhooks,
    Batches,
    Collections,
    Documents,
    Connections,
    Syncs,
    SyncJobs,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Namespaces => "namespaces",
            Table::Buckets => "buckets",
            Table::Objects => "objects",
            Table::Tasks => "tasks",
            Table::Uploads => "uploads",
            Table::Webhooks => "webhooks",
            Table::Batches => "batches",
            Table::Collections => "collections",
            Table::Documents => "documents",
            Table::Connections => "connections",
            Table::Syncs => "syncs",
            Table::SyncJobs => "sync_jobs",
        }
    }
}

/// Which tenant's rows a query may see. Every query is narrowed by organization, and by
/// namespace and bucket where the route is namespaced.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub org_id: &'a str,
    pub namespace_id: Option<&'a str>,
    pub bucket_id: Option<&'a str>,
    pub collection_id: Option<&'a str>,
}

impl<'a> Scope<'a> {
    pub fn org(org_id: &'a str) -> Self {
        Self { org_id, namespace_id: None, bucket_id: None, collection_id: None }
    }

    pub fn namespace(org_id: &'a str, namespace_id: &'a str) -> Self {
        Self { org_id, namespace_id: Some(namespace_id), bucket_id: None, collection_id: None }
    }

    pub fn bucket(org_id: &'a str, namespace_id: &'a str, bucket_id: &'a str) -> Self {
        Self {
            org_id,
            namespace_id: Some(namespace_id),
            bucket_id: Some(bucket_id),
            collection_id: None,
        }
    }

    pub fn collection(org_id: &'a str, namespace_id: &'a str, collection_id: &'a str) -> Self {
        Self {
            org_id,
            namespace_id: Some(namespace_id),
            bucket_id: None,
            collection_id: Some(collection_id),
        }
    }
}

/// One stored record with its position in creation order.
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: i64,
    pub doc: Value,
}

/// What a list query asks for. `after` pages by keyset; `offset` is the legacy alternative.
#[derive(Debug, Clone, Default)]
pub struct ListSpec {
    pub filter: Option<Filter>,
    pub sort: Option<Sort>,
    pub after: Option<Cursor>,
    pub offset: i64,
    pub limit: i64,
    pub include_total: bool,
}

/// One page of a list, with whether more rows follow and, when asked for, the total.
#[derive(Debug, Clone)]
pub struct Page {
    pub rows: Vec<Row>,
    pub has_more: bool,
    pub total: Option<i64>,
}

/// An organization, the unit of tenancy.
#[derive(Debug, Clone)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub internal_id: String,
    pub created_at: String,
}

/// An API key as stored: only the hash of the secret is kept.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub key_hash: String,
    pub key_prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A new object row: the record plus the columns that constrain it.
#[derive(Debug, Clone)]
pub struct NewObject {
    pub id: String,
    pub org_id: String,
    pub namespace_id: String,
    pub bucket_id: String,
    pub doc: Value,
    pub size_bytes: i64,
    pub idempotency_key: Option<String>,
    pub unique_key: Option<String>,
    pub blob_hashes: Vec<String>,
    /// A change event to record with the row, when the row is inserted.
    pub created_event: Option<RowEvent>,
}

/// A change event written together with the row it is about; its payload is the stored record.
#[derive(Debug, Clone)]
pub struct RowEvent {
    pub id: String,
    pub event_type: String,
    pub resource_type: String,
    pub operation: String,
    pub created_at: String,
}

/// The columns of each [`RowEvent`] in [`with_created_events`]: the object id it joins on, then
/// the event's own.
const ROW_EVENT_PARAMS: usize = 6;

/// Wraps a multi-row object `INSERT … RETURNING id` (of `params` parameters) so that the same
/// statement records, for each inserted row of the `events` listed after those parameters, its
/// event with the stored record as payload. Rows skipped by `ON CONFLICT` get no event.
fn with_created_events(insert: &str, params: usize, events: usize) -> String {
    let insert = insert.replace(" RETURNING id", " RETURNING id, org_id, namespace_id, doc");
    let rows: Vec<String> = (0..events)
        .map(|i| {
            let b = params + i * ROW_EVENT_PARAMS;
            let cols: Vec<String> = (1..=ROW_EVENT_PARAMS).map(|c| format!("${}", b + c)).collect();
            format!("({})", cols.join(", "))
        })
        .collect();
    format!(
        "WITH o AS ({insert}), e AS (INSERT INTO events (id, org_id, namespace_id, event_type, \
         resource_type, operation, payload, created_at) SELECT v.id, o.org_id, o.namespace_id, \
         v.event_type, v.resource_type, v.operation, o.doc::text, v.created_at FROM o JOIN \
         (VALUES {}) AS v (object_id, id, event_type, resource_type, operation, created_at) \
         ON v.object_id = o.id) SELECT id FROM o",
        rows.join(", ")
    )
}

/// Size statistics of the live objects of a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectStats {
    pub count: i64,
    pub total_size: i64,
    pub max_size: i64,
    pub min_size: i64,
}

/// The metadata store.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// On PostgreSQL, a few connections whose commits do not wait for the disk, for the job
    /// queue's claims, lease renewals and outcomes. Losing the last of those in a crash is
    /// harmless: the job is claimed again and, being idempotent, runs again to the same end.
    bookkeeping: Option<PgPool>,
}

impl Store {
    /// Connects to the database the configuration names and brings its schema up to date.
    ///
    /// # Errors
    ///
    /// Fails when the database cannot be reached or a migration fails.
    pub async fn open(config: &StoreConfig) -> StoreResult<Store> {
        let (db, bookkeeping) = if config.database_url.starts_with("sqlite:") {
            (Db::Sqlite(sqlite::connect(config).await?), None)
        } else {
            let pool = postgres::connect(config).await?;
            (Db::Postgres(pool), Some(postgres::connect_bookkeeping(config).await?))
        };
        let store = Store { db, bookkeeping };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations this backend has not seen yet.
    ///
    /// # Errors
    ///
    /// Fails when a migration fails; the failed migration leaves no trace.
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.db {
            Db::Postgres(pool) => postgres::migrator().run(pool).await?,
            Db::Sqlite(pool) => sqlite::migrator().run(pool).await?,
        }
        Ok(())
    }

    /// The SQL dialect of the running backend.
    pub fn dialect(&self) -> Dialect {
        match self.db {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// A short name of the backend for logs and health answers.
    pub fn backend_name(&self) -> &'static str {
        match self.db {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    ///
    /// Fails when it does not.
    pub async fn ping(&self) -> StoreResult<()> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
        if let Some(pool) = &self.bookkeeping {
            pool.close().await;
        }
    }

    /// The store to write job bookkeeping through: the no-wait pool where there is one.
    fn bookkeeping(&self) -> Store {
        match &self.bookkeeping {
            Some(pool) => Store { db: Db::Postgres(pool.clone()), bookkeeping: None },
            None => self.clone(),
        }
    }

    // Organizations and API keys.

    /// Creates an organization.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn insert_organization(&self, org: &Organization) -> StoreResult<()> {
        let sql = "INSERT INTO organizations (id, name, internal_id, created_at) \
                   VALUES ($1, $2, $3, $4)";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(&org.id)
            .bind(&org.name)
            .bind(&org.internal_id)
            .bind(&org.created_at)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Lists every organization, oldest first.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn list_organizations(&self) -> StoreResult<Vec<Organization>> {
        let sql = "SELECT id, name, internal_id, created_at FROM organizations ORDER BY created_at";
        let rows: Vec<(String, String, String, String)> =
            with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(id, name, internal_id, created_at)| Organization {
                id,
                name,
                internal_id,
                created_at,
            })
            .collect())
    }

    /// Finds an organization by id.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn get_organization(&self, id: &str) -> StoreResult<Option<Organization>> {
        let sql = "SELECT id, name, internal_id, created_at FROM organizations WHERE id = $1";
        let row: Option<(String, String, String, String)> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)?;
        Ok(row.map(|(id, name, internal_id, created_at)| Organization {
            id,
            name,
            internal_id,
            created_at,
        }))
    }

    /// Counts the API keys ever created, revoked ones included.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn count_api_keys(&self) -> StoreResult<i64> {
        let sql = "SELECT COUNT(*) FROM api_keys";
        Ok(with_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?)
    }

    /// Stores a new API key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] when a key with the same hash exists.
    pub async fn insert_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let sql = "INSERT INTO api_keys \
                   (id, org_id, name, key_hash, key_prefix, created_at, revoked_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(&key.id)
            .bind(&key.org_id)
            .bind(&key.name)
            .bind(&key.key_hash)
            .bind(&key.key_prefix)
            .bind(&key.created_at)
            .bind(&key.revoked_at)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Finds a live (unrevoked) key by the hash of its secret.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        let sql = format!("{API_KEY_COLUMNS} WHERE key_hash = $1 AND revoked_at IS NULL");
        let row: Option<ApiKeyRow> = with_pool!(self, pool => sqlx::query_as(AssertSqlSafe(sql))
            .bind(key_hash)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(api_key_from_row))
    }

    /// Lists API keys, of one organization or of all.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn list_api_keys(&self, org_id: Option<&str>) -> StoreResult<Vec<ApiKey>> {
        let sql =
            format!("{API_KEY_COLUMNS} WHERE ($1 IS NULL OR org_id = $1) ORDER BY created_at, id");
        let rows: Vec<ApiKeyRow> = with_pool!(self, pool => sqlx::query_as(AssertSqlSafe(sql))
            .bind(org_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(api_key_from_row).collect())
    }

    /// Revokes a key; returns whether a live key was revoked.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn revoke_api_key(&self, id: &str, at: &str) -> StoreResult<bool> {
        let sql = "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
        let done = with_pool!(self, pool => sqlx::query(sql)
            .bind(at)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    // Generic record access.

    /// Finds a record of `table` in `scope` by id, or by name where the table has names.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn get(
        &self,
        table: Table,
        scope: Scope<'_>,
        ident: &str,
    ) -> StoreResult<Option<Row>> {
        let mut binds = Vec::new();
        let mut sql = format!("SELECT seq, doc FROM {} WHERE ", table.name());
        push_scope(&mut sql, &mut binds, scope);
        binds.push(SqlValue::Text(ident.to_string()));
        let n = binds.len();
        match table {
            Table::Namespaces
            | Table::Buckets
            | Table::Webhooks
            | Table::Collections
            | Table::Connections => {
                sql.push_str(&format!(" AND (id = ${n} OR name = ${n})"));
            }
            Table::Objects => sql.push_str(&format!(" AND id = ${n} AND deleted_at IS NULL")),
            Table::Tasks
            | Table::Uploads
            | Table::Batches
            | Table::Documents
            | Table::Syncs
            | Table::SyncJobs => sql.push_str(&format!(" AND id = ${n}")),
        }
        sql.push_str(" ORDER BY seq LIMIT 1");
        Ok(self.fetch_rows(sql, binds).await?.into_iter().next())
    }

    /// Lists records of `table` in `scope`, filtered, sorted and paged as `spec` says.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn list(&self, table: Table, scope: Scope<'_>, spec: &ListSpec) -> StoreResult<Page> {
        let dialect = self.dialect();
        let mut binds = Vec::new();
        let mut filter_sql = String::new();
        push_scope(&mut filter_sql, &mut binds, scope);
        if table == Table::Objects {
            filter_sql.push_str(" AND deleted_at IS NULL");
        }
        if let Some(filter) = &spec.filter {
            let mut next = binds.len() + 1;
            let fragment = filter_sql::compile_filter(filter, dialect, "doc", &mut next);
            push_fragment(&mut filter_sql, &mut binds, fragment);
        }

        let total = if spec.include_total {
            let sql = format!("SELECT COUNT(*) FROM {} WHERE {filter_sql}", table.name());
            Some(self.fetch_count(sql, binds.clone()).await?)
        } else {
            None
        };

        let mut page_sql = filter_sql;
        if let Some(cursor) = &spec.after {
            let mut next = binds.len() + 1;
            let sort = spec.sort.as_ref();
            let fragment = filter_sql::keyset_after(sort, cursor, dialect, "doc", "seq", &mut next);
            push_fragment(&mut page_sql, &mut binds, fragment);
        }
        let order = filter_sql::order_by(spec.sort.as_ref(), dialect, "doc", "seq");
        let sql = format!(
            "SELECT seq, doc FROM {} WHERE {page_sql} ORDER BY {order} LIMIT {} OFFSET {}",
            table.name(),
            spec.limit + 1,
            spec.offset
        );

        let mut rows = self.fetch_rows(sql, binds).await?;
        let has_more = rows.len() as i64 > spec.limit;
        rows.truncate(spec.limit.max(0) as usize);
        Ok(Page { rows, has_more, total })
    }

    async fn fetch_rows(&self, sql: String, binds: Vec<SqlValue>) -> StoreResult<Vec<Row>> {
        let rows: Vec<(i64, Json<Value>)> = with_pool!(self, pool => {
            let mut q = sqlx::query_as(AssertSqlSafe(sql));
            for value in binds {
                q = bind_value!(q, value);
            }
            q.fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(|(seq, Json(doc))| Row { seq, doc }).collect())
    }

    async fn fetch_count(&self, sql: String, binds: Vec<SqlValue>) -> StoreResult<i64> {
        Ok(with_pool!(self, pool => {
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql));
            for value in binds {
                q = bind_value!(q, value);
            }
            q.fetch_one(pool).await
        })?)
    }

    // Namespaces.

    /// Stores a new named record of an organization: a namespace, webhook or connection.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] when the organization has a record of that name (or id) in
    /// `table`.
    pub async fn insert_named(
        &self,
        table: Table,
        org_id: &str,
        id: &str,
        name: &str,
        doc: &Value,
    ) -> StoreResult<()> {
        let sql =
            format!("INSERT INTO {} (id, org_id, name, doc) VALUES ($1, $2, $3, $4)", table.name());
        with_pool!(self, pool => sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(org_id)
            .bind(name)
            .bind(Json(doc))
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Replaces the record (and name) of a namespace, bucket or task.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] when the new name is taken.
    pub async fn update_doc(
        &self,
        table: Table,
        id: &str,
        name: Option<&str>,
        doc: &Value,
    ) -> StoreResult<bool> {
        let done = match (table, name) {
            (Table::Tasks, _) => {
                let sql = "UPDATE tasks SET doc = $1, status = $2, updated_at = $3 WHERE id = $4";
                let status = doc.get("status").and_then(Value::as_str).unwrap_or("PENDING");
                let updated = doc.get("updated_at").and_then(Value::as_str).unwrap_or("");
                with_pool!(self, pool => sqlx::query(sql)
                    .bind(Json(doc))
                    .bind(status)
                    .bind(updated)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))?
            }
            (Table::Uploads, _) => {
                let sql = "UPDATE uploads SET doc = $1, status = $2, size_bytes = $3 WHERE id = $4";
                let status = doc.get("status").and_then(Value::as_str).unwrap_or("PENDING");
                let size = doc.get("file_size_bytes").and_then(Value::as_i64).unwrap_or(0);
                with_pool!(self, pool => sqlx::query(sql)
                    .bind(Json(doc))
                    .bind(status)
                    .bind(size)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))?
            }
            (_, Some(name)) => {
                let sql = format!("UPDATE {} SET doc = $1, name = $2 WHERE id = $3", table.name());
                with_pool!(self, pool => sqlx::query(AssertSqlSafe(sql))
                    .bind(Json(doc))
                    .bind(name)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))?
            }
            (_, None) => {
                let sql = format!("UPDATE {} SET doc = $1 WHERE id = $2", table.name());
                with_pool!(self, pool => sqlx::query(AssertSqlSafe(sql))
                    .bind(Json(doc))
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))?
            }
        };
        Ok(done > 0)
    }

    /// Counts the buckets, live objects and stored bytes of a namespace.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn namespace_stats(&self, namespace_id: &str) -> StoreResult<(i64, ObjectStats)> {
        let buckets: i64 = with_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM buckets WHERE namespace_id = $1")
            .bind(namespace_id)
            .fetch_one(pool)
            .await)?;
        let stats = self.object_stats("namespace_id", namespace_id).await?;
        Ok((buckets, stats))
    }

    /// Size statistics of the live objects of a bucket.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn bucket_stats(&self, bucket_id: &str) -> StoreResult<ObjectStats> {
        self.object_stats("bucket_id", bucket_id).await
    }

    async fn object_stats(&self, column: &'static str, id: &str) -> StoreResult<ObjectStats> {
        // Limitation: statistics are computed by scanning the bucket's or namespace's live
        // objects on every read; very large buckets would want counters kept on write.
        let sql = format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT), \
             COALESCE(MAX(size_bytes), 0), COALESCE(MIN(size_bytes), 0) \
             FROM objects WHERE {column} = $1 AND deleted_at IS NULL"
        );
        let (count, total_size, max_size, min_size): (i64, i64, i64, i64) = with_pool!(self, pool => sqlx::query_as(AssertSqlSafe(sql))
                .bind(id)
                .fetch_one(pool)
                .await)?;
        Ok(ObjectStats { count, total_size, max_size, min_size })
    }

    /// Deletes a namespace row. Its buckets must be gone already.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_namespace_row(&self, id: &str) -> StoreResult<()> {
        with_pool!(self, pool => sqlx::query("DELETE FROM namespaces WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The ids of every bucket of a namespace.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn bucket_ids(&self, namespace_id: &str) -> StoreResult<Vec<String>> {
        let sql = "SELECT id FROM buckets WHERE namespace_id = $1 ORDER BY seq";
        Ok(with_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(namespace_id)
            .fetch_all(pool)
            .await)?)
    }

    // Buckets.

    /// Stores a new bucket.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] when the namespace has a bucket of that name.
    pub async fn insert_bucket(
        &self,
        scope: Scope<'_>,
        id: &str,
        name: &str,
        doc: &Value,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO buckets (id, org_id, namespace_id, name, doc) \
                   VALUES ($1, $2, $3, $4, $5)";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(scope.org_id)
            .bind(scope.namespace_id)
            .bind(name)
            .bind(Json(doc))
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Deletes a bucket row. Its objects must be gone already.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_bucket_row(&self, id: &str) -> StoreResult<()> {
        with_pool!(self, pool => sqlx::query("DELETE FROM buckets WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    // Objects.

    /// Inserts objects in one transaction. A row whose idempotency key or unique key is taken
    /// is skipped, not an error; the result says, per row, whether it was inserted.
    ///
    /// # Errors
    ///
    /// Fails on a database error, and then nothing was written.
    pub async fn insert_objects(&self, objects: &[&NewObject]) -> StoreResult<Vec<bool>> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = String::from(
            "INSERT INTO objects (id, org_id, namespace_id, bucket_id, doc, size_bytes, \
             idempotency_key, unique_key) VALUES ",
        );
        for i in 0..objects.len() {
            let b = i * 8;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8
            ));
        }
        sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
        let events: Vec<(&str, &RowEvent)> = objects
            .iter()
            .filter_map(|o| o.created_event.as_ref().map(|e| (o.id.as_str(), e)))
            .collect();
        if !events.is_empty() && matches!(self.db, Db::Postgres(_)) {
            sql = with_created_events(&sql, objects.len() * 8, events.len());
        }

        let hashes: Vec<(&str, &str, &str)> = objects
            .iter()
            .flat_map(|o| {
                o.blob_hashes.iter().map(|h| (o.bucket_id.as_str(), h.as_str(), o.id.as_str()))
            })
            .collect();

        // One statement is atomic by itself: without blob hashes to record, the insert needs
        // no explicit transaction, which saves two round trips per request. On PostgreSQL the
        // events are part of that statement; SQLite cannot insert from a `WITH` clause.
        let separate_events = !events.is_empty() && matches!(self.db, Db::Sqlite(_));
        let inserted: Vec<String> = if hashes.is_empty() && !separate_events {
            with_pool!(self, pool => {
                let q = bind_objects!(sqlx::query_scalar(AssertSqlSafe(sql)), objects);
                bind_created_events!(q, events).fetch_all(pool).await
            })?
        } else {
            in_transaction!(self, tx => {
                let q = bind_objects!(sqlx::query_scalar(AssertSqlSafe(sql)), objects);
                let q = if separate_events { q } else { bind_created_events!(q, events) };
                let inserted: Vec<String> = q.fetch_all(&mut *tx).await?;
                let fresh: Vec<(&NewObject, &RowEvent)> = objects
                    .iter()
                    .filter(|o| separate_events && inserted.contains(&o.id))
                    .filter_map(|o| o.created_event.as_ref().map(|e| (*o, e)))
                    .collect();
                if !fresh.is_empty() {
                    let mut q = sqlx::query(AssertSqlSafe(hooks::insert_events_sql(fresh.len())));
                    for (o, e) in &fresh {
                        q = q
                            .bind(&e.id)
                            .bind(&o.org_id)
                            .bind(&o.namespace_id)
                            .bind(&e.event_type)
                            .bind(&e.resource_type)
                            .bind(&e.operation)
                            .bind(o.doc.to_string())
                            .bind(&e.created_at);
                    }
                    q.execute(&mut *tx).await?;
                }
                for (bucket_id, hash, object_id) in &hashes {
                    if inserted.iter().any(|id| id == object_id) {
                        sqlx::query(
                            "INSERT INTO object_blob_hashes (bucket_id, hash, object_id) \
                             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        )
                        .bind(*bucket_id)
                        .bind(*hash)
                        .bind(*object_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                inserted
            })
        };
        let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
        Ok(objects.iter().map(|o| inserted.contains(&o.id)).collect())
    }

    /// Finds the live object of a bucket that holds `column = value`, where `column` is
    /// `idempotency_key` or `unique_key`.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn find_object_by(
        &self,
        bucket_id: &str,
        column: ObjectKey,
        value: &str,
    ) -> StoreResult<Option<Row>> {
        let column = match column {
            ObjectKey::Idempotency => "idempotency_key",
            ObjectKey::Unique => "unique_key",
        };
        let sql = format!(
            "SELECT seq, doc FROM objects WHERE bucket_id = $1 AND {column} = $2 \
             AND deleted_at IS NULL"
        );
        let binds = vec![SqlValue::Text(bucket_id.into()), SqlValue::Text(value.into())];
        Ok(self.fetch_rows(sql, binds).await?.into_iter().next())
    }

    /// Finds a live object of a bucket that has a blob with one of these content hashes.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn find_object_by_blob_hash(
        &self,
        bucket_id: &str,
        hashes: &[String],
    ) -> StoreResult<Option<Row>> {
        for hash in hashes {
            let sql = "SELECT o.seq, o.doc FROM object_blob_hashes h \
                       JOIN objects o ON o.id = h.object_id \
                       WHERE h.bucket_id = $1 AND h.hash = $2 AND o.deleted_at IS NULL \
                       ORDER BY o.seq LIMIT 1";
            let binds = vec![SqlValue::Text(bucket_id.into()), SqlValue::Text(hash.clone())];
            if let Some(row) = self.fetch_rows(sql.to_string(), binds).await?.into_iter().next() {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    /// Replaces an object's record, unique-key value and size.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] when another live object holds the unique key.
    pub async fn update_object(
        &self,
        id: &str,
        doc: &Value,
        unique_key: Option<&str>,
        size_bytes: i64,
    ) -> StoreResult<bool> {
        let sql = "UPDATE objects SET doc = $1, unique_key = $2, size_bytes = $3 \
                   WHERE id = $4 AND deleted_at IS NULL";
        let done = with_pool!(self, pool => sqlx::query(sql)
            .bind(Json(doc))
            .bind(unique_key)
            .bind(size_bytes)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Deletes one object for good and returns its last record.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_object(&self, bucket_id: &str, id: &str) -> StoreResult<Option<Value>> {
        let deleted: Option<Json<Value>> = in_transaction!(self, tx => {
            sqlx::query("DELETE FROM object_blob_hashes WHERE object_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query_scalar("DELETE FROM objects WHERE bucket_id = $1 AND id = $2 RETURNING doc")
                .bind(bucket_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        });
        Ok(deleted.map(|Json(doc)| doc))
    }

    /// Marks live objects of a bucket as deleted and frees their unique keys; returns the ids
    /// that were live.
    ///
    /// # Errors
    ///
    /// Fails on a database error, and then nothing was changed.
    pub async fn soft_delete_objects(
        &self,
        bucket_id: &str,
        ids: &[String],
        at: &str,
    ) -> StoreResult<Vec<String>> {
        let done: Vec<String> = in_transaction!(self, tx => {
            let mut done = Vec::new();
            for id in ids {
                let hit: Option<String> = sqlx::query_scalar(
                    "UPDATE objects SET deleted_at = $1, unique_key = NULL \
                     WHERE bucket_id = $2 AND id = $3 AND deleted_at IS NULL RETURNING id",
                )
                .bind(at)
                .bind(bucket_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                done.extend(hit);
            }
            done
        });
        Ok(done)
    }

    /// Deletes up to `limit` objects of a bucket, live or soft-deleted, and returns their
    /// records so that their blobs can be removed.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_objects_chunk(
        &self,
        bucket_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<Value>> {
        self.delete_chunk("objects", bucket_id, limit).await
    }

    /// Deletes up to `limit` rows of a bucket's `table` (objects or uploads), oldest first, in
    /// one transaction, and returns their records.
    async fn delete_chunk(
        &self,
        table: &'static str,
        bucket_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<Value>> {
        let chosen = format!("SELECT id FROM {table} WHERE bucket_id = $1 ORDER BY seq LIMIT $2");
        let hashes = format!("DELETE FROM object_blob_hashes WHERE object_id IN ({chosen})");
        let rows = format!("DELETE FROM {table} WHERE id IN ({chosen}) RETURNING doc");
        let docs: Vec<Json<Value>> = in_transaction!(self, tx => {
            if table == "objects" {
                sqlx::query(AssertSqlSafe(hashes))
                    .bind(bucket_id)
                    .bind(limit)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query_scalar(AssertSqlSafe(rows))
                .bind(bucket_id)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?
        });
        Ok(docs.into_iter().map(|Json(doc)| doc).collect())
    }

    // Tasks.

    /// Stores a new task record.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn insert_task(&self, org_id: &str, doc: &Value) -> StoreResult<()> {
        let text = |key: &str| doc.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let sql = "INSERT INTO tasks (id, org_id, task_type, status, doc, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(text("task_id"))
            .bind(org_id)
            .bind(text("task_type"))
            .bind(text("status"))
            .bind(Json(doc))
            .bind(text("created_at"))
            .bind(text("updated_at"))
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Deletes a task record; returns whether it existed.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_task(&self, org_id: &str, id: &str) -> StoreResult<bool> {
        let done = with_pool!(self, pool => sqlx::query(
            "DELETE FROM tasks WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }
}

impl Store {
    /// Stores a new upload record.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn insert_upload(&self, scope: Scope<'_>, doc: &Value) -> StoreResult<()> {
        let text = |key: &str| doc.get(key).and_then(Value::as_str).map(String::from);
        let sql = "INSERT INTO uploads (id, org_id, namespace_id, bucket_id, file_hash, status, \
                   size_bytes, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(text("upload_id"))
            .bind(scope.org_id)
            .bind(scope.namespace_id)
            .bind(scope.bucket_id)
            .bind(text("file_hash"))
            .bind(text("status"))
            .bind(doc.get("file_size_bytes").and_then(Value::as_i64).unwrap_or(0))
            .bind(Json(doc))
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Finds an upload by id alone, for the signed upload URL whose one-time nonce is the id.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn find_upload(&self, id: &str) -> StoreResult<Option<Row>> {
        let sql = "SELECT seq, doc FROM uploads WHERE id = $1";
        Ok(self.fetch_rows(sql.to_string(), vec![SqlValue::Text(id.into())]).await?.pop())
    }

    /// Replaces an upload's record only while its status is still `expected`; returns whether
    /// it did. This is how exactly one of several concurrent confirmations proceeds.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn update_upload_if(
        &self,
        id: &str,
        expected: &str,
        doc: &Value,
    ) -> StoreResult<bool> {
        let sql = "UPDATE uploads SET doc = $1, status = $2 WHERE id = $3 AND status = $4";
        let status = doc.get("status").and_then(Value::as_str).unwrap_or("PENDING");
        let done = with_pool!(self, pool => sqlx::query(sql)
            .bind(Json(doc))
            .bind(status)
            .bind(id)
            .bind(expected)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// The uploads of a bucket that carry this file hash and are not canceled or failed,
    /// oldest first.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn uploads_with_hash(&self, bucket_id: &str, hash: &str) -> StoreResult<Vec<Row>> {
        let sql = "SELECT seq, doc FROM uploads WHERE bucket_id = $1 AND file_hash = $2 \
                   AND status NOT IN ('CANCELED', 'FAILED') ORDER BY seq LIMIT 10";
        let binds = vec![SqlValue::Text(bucket_id.into()), SqlValue::Text(hash.into())];
        self.fetch_rows(sql.to_string(), binds).await
    }

    /// Counts and sizes of a bucket's uploads by status.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn upload_stats(&self, bucket_id: &str) -> StoreResult<Vec<(String, i64, i64)>> {
        let sql = "SELECT status, COUNT(*), CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) \
                   FROM uploads WHERE bucket_id = $1 GROUP BY status ORDER BY status";
        Ok(with_pool!(self, pool => sqlx::query_as(sql).bind(bucket_id).fetch_all(pool).await)?)
    }

    /// Deletes up to `limit` upload records of a bucket and returns them, so that their bytes
    /// can be removed.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_uploads_chunk(
        &self,
        bucket_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<Value>> {
        self.delete_chunk("uploads", bucket_id, limit).await
    }

    /// Marks a one-time nonce as used; false when it was used already.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn use_nonce(&self, nonce: &str, expires_at: &str) -> StoreResult<bool> {
        let sql =
            "INSERT INTO used_nonces (nonce, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        let done = with_pool!(self, pool => sqlx::query(sql)
            .bind(nonce)
            .bind(expires_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Frees a nonce whose use failed, so that the URL can be tried again.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn release_nonce(&self, nonce: &str) -> StoreResult<()> {
        with_pool!(self, pool => sqlx::query("DELETE FROM used_nonces WHERE nonce = $1")
            .bind(nonce)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }
}

/// The two per-bucket keys an object can be found by.
#[derive(Debug, Clone, Copy)]
pub enum ObjectKey {
    Idempotency,
    Unique,
}

const API_KEY_COLUMNS: &str =
    "SELECT id, org_id, name, key_hash, key_prefix, created_at, revoked_at FROM api_keys";

type ApiKeyRow = (String, String, String, String, String, String, Option<String>);

fn api_key_from_row(row: ApiKeyRow) -> ApiKey {
    let (id, org_id, name, key_hash, key_prefix, created_at, revoked_at) = row;
    ApiKey { id, org_id, name, key_hash, key_prefix, created_at, revoked_at }
}

fn push_scope(sql: &mut String, binds: &mut Vec<SqlValue>, scope: Scope<'_>) {
    binds.push(SqlValue::Text(scope.org_id.to_string()));
    sql.push_str(&format!("org_id = ${}", binds.len()));
    if let Some(ns) = scope.namespace_id {
        binds.push(SqlValue::Text(ns.to_string()));
        sql.push_str(&format!(" AND namespace_id = ${}", binds.len()));
    }
    if let Some(bucket) = scope.bucket_id {
        binds.push(SqlValue::Text(bucket.to_string()));
        sql.push_str(&format!(" AND bucket_id = ${}", binds.len()));
    }
    if let Some(collection) = scope.collection_id {
        binds.push(SqlValue::Text(collection.to_string()));
        sql.push_str(&format!(" AND collection_id = ${}", binds.len()));
    }
}

fn push_fragment(sql: &mut String, binds: &mut Vec<SqlValue>, fragment: SqlFragment) {
    sql.push_str(" AND (");
    sql.push_str(&fragment.sql);
    sql.push(')');
    binds.extend(fragment.binds);
}
