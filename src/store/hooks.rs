//! The change feed, webhook records and the webhook delivery log.
//!
//! An event and the deliveries it causes are written in one transaction together with the jobs
//! that send them, so that a delivery is never recorded without the job that carries it out,
//! nor an event lost between its row and its deliveries. An event that no webhook wants is one
//! plain insert.

use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::jobs::ENQUEUE_SQL;
use super::{Db, NewJob, Store, StoreResult};

/// How long the PostgreSQL feed waits before it shows an event. A transaction takes its `seq`
/// when it inserts and becomes visible when it commits, so a reader could see `seq` 11 before
/// 10 commits and then page past 10 for good; hiding the last second of inserts gives such
/// transactions time to commit. SQLite has one writer at a time and needs no wait.
// Limitation: a transaction that commits more than a second after its insert (a stalled disk,
// a paused process) can still be skipped by a reader that paged past it meanwhile.
const FEED_SETTLE: &str = "1 second";

/// A change event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub org_id: String,
    pub namespace_id: Option<String>,
    pub event_type: String,
    pub resource_type: String,
    pub operation: String,
    pub payload: Value,
    pub created_at: String,
}

/// A recorded event, as the feed reads it.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub namespace_id: Option<String>,
    pub event_type: String,
    pub resource_type: String,
    pub operation: String,
    pub payload: Value,
    pub trace_id: Option<String>,
    pub created_at: String,
}

type EventTuple =
    (i64, String, Option<String>, String, String, String, String, Option<String>, String);

/// One page request of the feed: events after `after_seq`, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct EventQuery<'a> {
    pub org_id: &'a str,
    pub namespace_id: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub after_seq: i64,
    pub limit: i64,
}

/// A delivery to record: one event to one HTTP channel of a webhook, or to a callback URL.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub org_id: String,
    pub webhook_id: Option<String>,
    pub channel: i32,
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub body: Value,
    /// A redelivery asked for by a caller; it is sent even while the webhook is paused.
    pub manual: bool,
    pub created_at: String,
}

/// A delivery as stored, with the outcome of its attempts so far.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: i64,
    pub id: String,
    pub org_id: String,
    pub webhook_id: Option<String>,
    pub channel: i32,
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub body: Value,
    pub manual: bool,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub attempt_log: Value,
    pub created_at: String,
    pub updated_at: String,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
}

/// The state of a delivery after an attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub status: String,
    pub attempts: i32,
    pub url: String,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub attempt_log: Value,
    pub updated_at: String,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
}

const DELIVERY_COLUMNS: &str = "SELECT seq, id, org_id, webhook_id, channel, event_id, event_type, \
     url, body, manual, status, attempts, last_status_code, last_error, attempt_log, created_at, \
     updated_at, next_attempt_at, delivered_at FROM webhook_deliveries";

const INSERT_EVENT: &str = "INSERT INTO events (id, org_id, namespace_id, event_type, \
     resource_type, operation, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries (id, org_id, webhook_id, channel, \
     event_id, event_type, url, body, manual, status, attempts, attempt_log, created_at, \
     updated_at, next_attempt_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $11, $11, $11)";

/// Binds the columns of a [`NewEvent`] to [`INSERT_EVENT`].
macro_rules! bind_event {
    ($q:expr, $e:expr) => {
        $q.bind(&$e.id)
            .bind(&$e.org_id)
            .bind(&$e.namespace_id)
            .bind(&$e.event_type)
            .bind(&$e.resource_type)
            .bind(&$e.operation)
            .bind($e.payload.to_string())
            .bind(&$e.created_at)
    };
}

/// Binds the columns of a [`NewDelivery`] to [`INSERT_DELIVERY`].
/// Decodes a row of [`DELIVERY_COLUMNS`] of either backend into a [`Delivery`].
macro_rules! delivery_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let r = $row;
        Ok::<Delivery, sqlx::Error>(Delivery {
            seq: r.try_get(0)?,
            id: r.try_get(1)?,
            org_id: r.try_get(2)?,
            webhook_id: r.try_get(3)?,
            channel: r.try_get(4)?,
            event_id: r.try_get(5)?,
            event_type: r.try_get(6)?,
            url: r.try_get(7)?,
            body: r.try_get::<Json<Value>, _>(8)?.0,
            manual: r.try_get(9)?,
            status: r.try_get(10)?,
            attempts: r.try_get(11)?,
            last_status_code: r.try_get(12)?,
            last_error: r.try_get(13)?,
            attempt_log: r.try_get::<Json<Value>, _>(14)?.0,
            created_at: r.try_get(15)?,
            updated_at: r.try_get(16)?,
            next_attempt_at: r.try_get(17)?,
            delivered_at: r.try_get(18)?,
        })
    }};
}

macro_rules! bind_delivery {
    ($q:expr, $d:expr) => {
        $q.bind(&$d.id)
            .bind(&$d.org_id)
            .bind(&$d.webhook_id)
            .bind($d.channel)
            .bind(&$d.event_id)
            .bind(&$d.event_type)
            .bind(&$d.url)
            .bind(Json(&$d.body))
            .bind($d.manual)
            .bind(Json(Value::Array(Vec::new())))
            .bind(&$d.created_at)
    };
}

impl Store {
    // Events.

    /// Records events that queue no deliveries, with one statement.
    ///
    /// On PostgreSQL the statement commits without waiting for the disk, so that recording an
    /// event adds no second wait for a flush to the request that made the change.
    ///
    /// # Errors
    ///
    /// Fails on a database error; then none of them was written.
    // Limitation: a crash of PostgreSQL itself (not of sluice) can lose the feed events of the
    // last fraction of a second, while the changes they describe are kept. Events that queue
    // webhook deliveries are written with those, durably, by `insert_event`.
    pub async fn insert_events(&self, events: &[&NewEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let sql = insert_events_sql(events.len());
        let lane = self.bookkeeping();
        with_pool!(lane, pool => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for event in events {
                q = bind_event!(q, event);
            }
            q.execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }

    /// Records an event and, in the same transaction, the deliveries it causes and their jobs.
    ///
    /// # Errors
    ///
    /// Fails on a database error, and then nothing was written.
    pub async fn insert_event(
        &self,
        event: &NewEvent,
        deliveries: &[NewDelivery],
        jobs: &[NewJob],
    ) -> StoreResult<()> {
        if deliveries.is_empty() && jobs.is_empty() {
            with_pool!(self, pool => bind_event!(sqlx::query(INSERT_EVENT), event)
                .execute(pool)
                .await
                .map(|_| ()))?;
            return Ok(());
        }
        in_transaction!(self, tx => {
            bind_event!(sqlx::query(INSERT_EVENT), event).execute(&mut *tx).await?;
            for delivery in deliveries {
                bind_delivery!(sqlx::query(INSERT_DELIVERY), delivery).execute(&mut *tx).await?;
            }
            for job in jobs {
                bind_job!(sqlx::query(ENQUEUE_SQL), job, &event.created_at)
                    .execute(&mut *tx)
                    .await?;
            }
        });
        Ok(())
    }

    /// Reads up to `limit + 1` events of the feed after `after_seq`, oldest first.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn list_events(&self, query: EventQuery<'_>) -> StoreResult<Vec<EventRow>> {
        let mut sql = String::from(
            "SELECT seq, id, namespace_id, event_type, resource_type, operation, payload, \
             trace_id, created_at FROM events WHERE org_id = $1 AND seq > $2",
        );
        let mut n = 2;
        if query.namespace_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND namespace_id = ${n}"));
        }
        if query.event_type.is_some() {
            n += 1;
            sql.push_str(&format!(" AND event_type = ${n}"));
        }
        if matches!(self.db, Db::Postgres(_)) {
            sql.push_str(&format!(
                " AND recorded_at < clock_timestamp() - interval '{FEED_SETTLE}'"
            ));
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", query.limit + 1));

        let rows: Vec<EventTuple> = with_pool!(self, pool => {
            let mut q = sqlx::query_as(AssertSqlSafe(sql)).bind(query.org_id).bind(query.after_seq);
            if let Some(ns) = query.namespace_id {
                q = q.bind(ns);
            }
            if let Some(event_type) = query.event_type {
                q = q.bind(event_type);
            }
            q.fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(event_from_row).collect())
    }

    /// Deletes events and deliveries created before `cutoff`, up to `limit` of each; returns
    /// how many rows went. Call again until it removes none.
    ///
    /// Events are taken from the oldest `seq` on: of the `limit` oldest, those before the
    /// cutoff go. `seq` follows creation time to within the moments between an event's
    /// creation and its insert, so expired events form the oldest part of the table.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_events_before(&self, cutoff: &str, limit: i64) -> StoreResult<u64> {
        let mut removed = 0;
        let statements = [
            "DELETE FROM events WHERE seq IN (SELECT seq FROM \
             (SELECT seq, created_at FROM events ORDER BY seq LIMIT $2) AS oldest \
             WHERE created_at < $1)",
            "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries \
             WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        ];
        for sql in statements {
            removed += with_pool!(self, pool => sqlx::query(sql)
                .bind(cutoff)
                .bind(limit)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(removed)
    }

    // Webhooks.

    /// Every webhook record of an organization, oldest first.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn webhooks_of(&self, org_id: &str) -> StoreResult<Vec<Value>> {
        let sql = "SELECT doc FROM webhooks WHERE org_id = $1 ORDER BY seq";
        let docs: Vec<Json<Value>> =
            with_pool!(self, pool => sqlx::query_scalar(sql).bind(org_id).fetch_all(pool).await)?;
        Ok(docs.into_iter().map(|Json(doc)| doc).collect())
    }

    /// Changes a webhook's record with `change` while holding the row, so that concurrent
    /// changes (deliveries counting failures) do not overwrite each other. Returns the new
    /// record, or `None` when the webhook is gone.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn change_webhook(
        &self,
        id: &str,
        change: impl FnOnce(&mut Value),
    ) -> StoreResult<Option<Value>> {
        let lock = match self.db {
            Db::Postgres(_) => " FOR UPDATE",
            Db::Sqlite(_) => "",
        };
        let select = format!("SELECT doc FROM webhooks WHERE id = $1{lock}");
        let mut change = Some(change);
        let doc: Option<Value> = in_transaction!(self, tx => {
            let found: Option<Json<Value>> = sqlx::query_scalar(AssertSqlSafe(select.clone()))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match (found, change.take()) {
                (Some(Json(mut doc)), Some(change)) => {
                    change(&mut doc);
                    sqlx::query("UPDATE webhooks SET doc = $1 WHERE id = $2")
                        .bind(Json(&doc))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    Some(doc)
                }
                _ => None,
            }
        });
        Ok(doc)
    }

    /// Deletes a webhook and its delivery log; returns whether it existed.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn delete_webhook(&self, org_id: &str, id: &str) -> StoreResult<bool> {
        let done = in_transaction!(self, tx => {
            sqlx::query("DELETE FROM webhook_deliveries WHERE org_id = $1 AND webhook_id = $2")
                .bind(org_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM webhooks WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    // Deliveries.

    /// Records deliveries with the jobs that send them, in one transaction.
    ///
    /// # Errors
    ///
    /// Fails on a database error, and then nothing was written.
    pub async fn insert_deliveries(
        &self,
        deliveries: &[NewDelivery],
        jobs: &[NewJob],
        now: &str,
    ) -> StoreResult<()> {
        in_transaction!(self, tx => {
            for delivery in deliveries {
                bind_delivery!(sqlx::query(INSERT_DELIVERY), delivery).execute(&mut *tx).await?;
            }
            for job in jobs {
                bind_job!(sqlx::query(ENQUEUE_SQL), job, now).execute(&mut *tx).await?;
            }
        });
        Ok(())
    }

    /// Finds a delivery by id, within an organization.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn get_delivery(&self, org_id: &str, id: &str) -> StoreResult<Option<Delivery>> {
        let sql = format!("{DELIVERY_COLUMNS} WHERE org_id = $1 AND id = $2");
        let delivery = with_pool!(self, pool => {
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(org_id)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(|r| delivery_from_row!(&r)).transpose()
        })?;
        Ok(delivery)
    }

    /// Lists up to `limit + 1` deliveries of a webhook, newest first, older than `before_seq`
    /// when given.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn list_deliveries(
        &self,
        org_id: &str,
        webhook_id: &str,
        before_seq: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let sql = format!(
            "{DELIVERY_COLUMNS} WHERE org_id = $1 AND webhook_id = $2 AND seq < $3 \
             ORDER BY seq DESC LIMIT {}",
            limit + 1
        );
        let deliveries = with_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(org_id)
                .bind(webhook_id)
                .bind(before_seq.unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| delivery_from_row!(r)).collect::<Result<Vec<_>, sqlx::Error>>()
        })?;
        Ok(deliveries)
    }

    /// Writes the outcome of an attempt onto a delivery.
    ///
    /// # Errors
    ///
    /// Fails on a database error.
    pub async fn record_attempt(&self, id: &str, record: &AttemptRecord) -> StoreResult<()> {
        let sql = "UPDATE webhook_deliveries SET status = $1, attempts = $2, url = $3, \
                   last_status_code = $4, last_error = $5, attempt_log = $6, updated_at = $7, \
                   next_attempt_at = $8, delivered_at = $9 WHERE id = $10";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(&record.status)
            .bind(record.attempts)
            .bind(&record.url)
            .bind(record.last_status_code)
            .bind(&record.last_error)
            .bind(Json(&record.attempt_log))
            .bind(&record.updated_at)
            .bind(&record.next_attempt_at)
            .bind(&record.delivered_at)
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }
}

/// A multi-row `INSERT` of `rows` events, each bound as [`bind_event!`] binds one.
pub(super) fn insert_events_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let cols: Vec<String> = (1..=8).map(|c| format!("${}", i * 8 + c)).collect();
            format!("({})", cols.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO events (id, org_id, namespace_id, event_type, resource_type, operation, \
         payload, created_at) VALUES {}",
        values.join(", ")
    )
}

fn event_from_row(row: EventTuple) -> EventRow {
    let (seq, id, namespace_id, event_type, resource_type, operation, payload, trace_id, at) = row;
    // The payload was written by sluice as JSON; a row that is not is shown as null.
    let payload = serde_json::from_str(&payload).unwrap_or(Value::Null);
    EventRow {
        seq,
        id,
        namespace_id,
        event_type,
        resource_type,
        operation,
        payload,
        trace_id,
        created_at: at,
    }
}
