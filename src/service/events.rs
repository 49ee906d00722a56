//! Change events: what the rest of sluice records when something changes, the feed that reads
//! them back (`GET /v1/events`), and the sweeper that forgets them after their retention.
//!
//! [`record`] writes one event row and, for each active webhook of the organization that wants
//! the event, a delivery and the job that sends it, all in one transaction. An organization
//! without webhooks pays one insert; the webhook list is cached briefly per organization.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::api::auth::Caller;
use crate::error::{Error, Result};
use crate::jobs::{self, JobKind};
use crate::model::{format_time, new_id, now};
use crate::service::{namespaces, webhooks};
use crate::store::{ClaimedJob, EventQuery, EventRow, NewEvent, RowEvent};

/// The event types of the official SDK's `WebhookEventType`.
pub const SDK_EVENT_TYPES: [&str; 43] = [
    "object.created",
    "objects.created.batch",
    "object.updated",
    "object.deleted",
    "document.created",
    "document.updated",
    "document.deleted",
    "documents.updated.batch",
    "documents.deleted.batch",
    "collection.created",
    "collection.updated",
    "collection.deleted",
    "collection.documents.written",
    "collection.documents.batch_completed",
    "cluster.created",
    "cluster.updated",
    "cluster.deleted",
    "cluster.execution.started",
    "cluster.execution.completed",
    "cluster.execution.failed",
    "trigger.created",
    "trigger.updated",
    "trigger.deleted",
    "trigger.paused",
    "trigger.resumed",
    "trigger.fired",
    "trigger.execution.completed",
    "trigger.execution.failed",
    "taxonomy.created",
    "taxonomy.updated",
    "taxonomy.deleted",
    "alert.created",
    "alert.updated",
    "alert.deleted",
    "alert.triggered",
    "alert.execution.completed",
    "alert.execution.failed",
    "annotation.created",
    "annotation.updated",
    "annotation.deleted",
    "resource.executed",
    "resource.execution_failed",
    "manifest.apply.resource_state",
];

/// Event types sluice emits beyond the SDK's list. The SDK refuses them in a webhook's
/// `event_types`, so only clients that speak plain HTTP can subscribe to them.
pub const SLUICE_EVENT_TYPES: [&str; 5] =
    ["batch.completed", "batch.failed", "sync.completed", "sync.failed", "upload.confirmed"];

/// The subscription that matches every event type.
pub const ALL_EVENTS: &str = "*";

/// The most events one feed page returns, and the default page size.
const MAX_PAGE: i64 = 1000;
const DEFAULT_PAGE: i64 = 100;
/// How many old rows one sweep statement deletes.
const SWEEP_CHUNK: i64 = 5000;
/// How often the sweeper runs.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Whether sluice knows `event_type`.
pub fn is_known(event_type: &str) -> bool {
    SDK_EVENT_TYPES.contains(&event_type) || SLUICE_EVENT_TYPES.contains(&event_type)
}

/// The resource an event is about: the first segment of its type, or for `resource.*` events
/// the `resource_type` the payload names.
pub fn resource_type(event_type: &str, payload: &Value) -> String {
    let first = event_type.split('.').next().unwrap_or(event_type);
    match payload.get("resource_type").and_then(Value::as_str) {
        Some(named) if first == "resource" => named.to_string(),
        _ => first.to_string(),
    }
}

/// The kind of change: `insert`, `update`, `delete` or `other`, from the verb in the type.
pub fn operation(event_type: &str) -> &'static str {
    let verbs: Vec<&str> = event_type.split('.').skip(1).collect();
    if verbs.contains(&"created") {
        "insert"
    } else if verbs.iter().any(|v| v.starts_with("updated")) {
        "update"
    } else if verbs.contains(&"deleted") {
        "delete"
    } else {
        "other"
    }
}

/// Records an event of the organization (and namespace, where it has one) and queues its
/// webhook deliveries; returns the event id (`evt_…`), which every delivery of it carries.
///
/// The payload is the event's data: for `object.*` events the object record, for batch
/// events the ids. The `*_id` keys in it name the event's subject for receivers.
///
/// # Errors
///
/// Fails on a store error; then neither the event nor any delivery was written.
pub async fn record(
    state: &AppState,
    org_id: &str,
    namespace_id: Option<&str>,
    event_type: &str,
    payload: Value,
) -> Result<String> {
    let event = NewEvent {
        id: new_id("evt_", 24),
        org_id: org_id.to_string(),
        namespace_id: namespace_id.map(String::from),
        event_type: event_type.to_string(),
        resource_type: resource_type(event_type, &payload),
        operation: operation(event_type).to_string(),
        payload,
        created_at: now(),
    };
    let hooks = webhooks::subscribers(state, org_id).await?;
    let (deliveries, jobs) = webhooks::plan(state, &event, &hooks);
    if deliveries.is_empty() && jobs.is_empty() {
        // The common case, no webhook to tell: written together with other requests' events.
        let id = event.id.clone();
        state.event_writer.insert(vec![std::sync::Arc::new(event)]).await?;
        return Ok(id);
    }
    state.store.insert_event(&event, &deliveries, &jobs).await?;
    if !jobs.is_empty() {
        jobs::wake(state);
    }
    Ok(event.id)
}

/// An event of `event_type` to write in the same statement as the row it is about, with the
/// row as its payload; `None` when a webhook of the organization wants the event, whose
/// deliveries [`record`] must queue with it.
///
/// # Errors
///
/// Fails on a store error reading the organization's webhooks.
pub async fn row_event(
    state: &AppState,
    org_id: &str,
    event_type: &str,
) -> Result<Option<RowEvent>> {
    let event = NewEvent {
        id: new_id("evt_", 24),
        org_id: org_id.to_string(),
        namespace_id: None,
        event_type: event_type.to_string(),
        resource_type: resource_type(event_type, &Value::Null),
        operation: operation(event_type).to_string(),
        payload: Value::Null,
        created_at: now(),
    };
    let hooks = webhooks::subscribers(state, org_id).await?;
    if hooks.iter().any(|hook| webhooks::wants(hook, &event)) {
        return Ok(None);
    }
    Ok(Some(RowEvent {
        id: event.id,
        event_type: event.event_type,
        resource_type: event.resource_type,
        operation: event.operation,
        created_at: event.created_at,
    }))
}

/// Records an event like [`record`], for a change that has already happened: a failure to
/// record is logged, not returned, so that the caller's answer stays true to what was done.
// Limitation: an event that cannot be written (the database failing right after the change
// itself succeeded) is lost, together with its webhook deliveries.
pub async fn record_logged(
    state: &AppState,
    org_id: &str,
    namespace_id: Option<&str>,
    event_type: &str,
    payload: Value,
) {
    if let Err(e) = record(state, org_id, namespace_id, event_type, payload).await {
        tracing::error!(error = %e, event.r#type = event_type, "could not record an event");
    }
}

/// The JSON a webhook receives for an event.
pub(crate) fn envelope(event: &NewEvent) -> Value {
    json!({
        "event_id": event.id,
        "event_type": event.event_type,
        "occurred_at": event.created_at,
        "namespace_id": event.namespace_id,
        "resource_type": event.resource_type,
        "operation": event.operation,
        "subject": subject(&event.resource_type, &event.payload),
        "metadata": event.payload,
    })
}

/// What an event is about: the `<resource>_id` of its payload, else its bucket or namespace.
fn subject(resource_type: &str, payload: &Value) -> Value {
    let singular = resource_type.strip_suffix('s').unwrap_or(resource_type);
    let own = format!("{singular}_id");
    let config = format!("{singular}_config_id");
    let candidates = [
        (singular, own.as_str()),
        (singular, config.as_str()),
        ("bucket", "bucket_id"),
        ("namespace", "namespace_id"),
    ];
    for (kind, key) in candidates {
        if let Some(id) = payload.get(key).and_then(Value::as_str) {
            return json!({"type": kind, "id": id});
        }
    }
    json!({"type": singular, "id": null})
}

/// The query string of `GET /v1/events`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FeedQuery {
    pub cursor: Option<String>,
    pub next_cursor: Option<String>,
    pub after: Option<String>,
    pub namespace_id: Option<String>,
    pub event_type: Option<String>,
    pub limit: Option<i64>,
    pub page_size: Option<i64>,
}

/// Reads the organization's feed, oldest first after the cursor, narrowed to one namespace
/// (given by `X-Namespace`, already resolved, or `namespace_id`, by name or id) and one event
/// type. A cursor only continues the filter set it was issued for.
///
/// # Errors
///
/// 400 for a cursor that is not one, or that was issued for other filters, and for a header
/// and parameter that name different namespaces; 404 for an unknown namespace; 422 for a bad
/// page size.
pub async fn feed(
    state: &AppState,
    caller: &Caller,
    header_namespace: Option<&str>,
    query: FeedQuery,
) -> Result<Value> {
    let limit = query.limit.or(query.page_size).unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::invalid("limit", format!("expected 1 to {MAX_PAGE}")));
    }
    let from_query = match query.namespace_id.as_deref().filter(|n| !n.is_empty()) {
        Some(ident) => Some(namespace_id_of(state, caller, ident).await?),
        None => None,
    };
    let namespace_id = match (header_namespace, from_query) {
        (Some(header), Some(param)) if header != param => {
            return Err(Error::bad_request(
                "namespace_mismatch",
                "X-Namespace and namespace_id name different namespaces",
            ));
        }
        (Some(header), _) => Some(header.to_string()),
        (None, param) => param,
    };
    let event_type = query.event_type.filter(|t| !t.is_empty());

    let filters = fingerprint(namespace_id.as_deref(), event_type.as_deref());
    let raw_cursor = query.cursor.or(query.next_cursor).or(query.after).filter(|c| !c.is_empty());
    let after_seq = match &raw_cursor {
        Some(raw) => decode_cursor(raw, &filters)?,
        None => 0,
    };
    let mut rows = state
        .store
        .list_events(EventQuery {
            org_id: &caller.org_id,
            namespace_id: namespace_id.as_deref(),
            event_type: event_type.as_deref(),
            after_seq,
            limit,
        })
        .await?;

    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let results: Vec<Value> = rows.iter().map(|row| event_response(row, &filters)).collect();
    let next_cursor = match rows.last() {
        Some(last) => Some(encode_cursor(last.seq, &filters)),
        None => raw_cursor,
    };
    Ok(json!({"results": results, "next_cursor": next_cursor, "has_more": has_more}))
}

async fn namespace_id_of(state: &AppState, caller: &Caller, ident: &str) -> Result<String> {
    let namespace = namespaces::resolve_shared(state, caller, ident).await?;
    Ok(namespace["namespace_id"].as_str().unwrap_or_default().to_string())
}

fn event_response(row: &EventRow, filters: &str) -> Value {
    json!({
        "seq": row.seq,
        "cursor": encode_cursor(row.seq, filters),
        "event_id": row.id,
        "namespace_id": row.namespace_id,
        "event_type": row.event_type,
        "resource_type": row.resource_type,
        "operation": row.operation,
        "payload": row.payload,
        "trace_id": row.trace_id,
        "created_at": row.created_at,
    })
}

/// A short digest of the filter set, carried in each cursor.
fn fingerprint(namespace_id: Option<&str>, event_type: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(namespace_id.unwrap_or("").as_bytes());
    hasher.update([0]);
    hasher.update(event_type.unwrap_or("").as_bytes());
    hasher.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn encode_cursor(seq: i64, filters: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"e": seq, "f": filters}).to_string())
}

fn decode_cursor(raw: &str, filters: &str) -> Result<i64> {
    let bad = || Error::bad_request("invalid_cursor", "not a cursor of the event feed");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let seq = value.get("e").and_then(Value::as_i64).ok_or_else(bad)?;
    if value.get("f").and_then(Value::as_str) != Some(filters) {
        return Err(Error::bad_request(
            "cursor_filter_mismatch",
            "this cursor was issued for other filters; send the same namespace and event_type",
        ));
    }
    Ok(seq)
}

/// Makes sure a sweep is scheduled; called at start-up. The dedupe key names the hour the
/// sweep runs in, so that restarts within the hour add nothing, and a sweep that schedules
/// its successor never collides with its own key.
///
/// # Errors
///
/// Fails on a store error.
pub async fn schedule_sweep(state: &AppState, delay: Duration) -> Result<()> {
    let at = time::OffsetDateTime::now_utc() + time::Duration::try_from(delay).unwrap_or_default();
    let run_at = format_time(at);
    let hour = run_at.get(..13).unwrap_or(&run_at).to_string();
    jobs::enqueue_once_at(
        state,
        JobKind::EventsSweep,
        "",
        json!({}),
        format!("sweep:{hour}"),
        &run_at,
    )
    .await
}

/// Deletes events and delivery records older than the retention, then schedules the next
/// sweep. Deleting what is already gone changes nothing, so a repeated run is harmless.
///
/// # Errors
///
/// Fails on a store error; the job engine retries.
pub async fn run_sweep(state: &AppState, _job: &ClaimedJob) -> Result<()> {
    let retention = time::Duration::try_from(state.hooks.settings.retention).unwrap_or_default();
    let cutoff = format_time(time::OffsetDateTime::now_utc() - retention);
    let mut removed = 0;
    loop {
        let n = state.store.delete_events_before(&cutoff, SWEEP_CHUNK).await?;
        removed += n;
        if n == 0 {
            break;
        }
    }
    if removed > 0 {
        tracing::info!(rows = removed, cutoff = %cutoff, "old events and deliveries swept");
    }
    schedule_sweep(state, SWEEP_EVERY).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_resources_come_from_the_type() {
        assert_eq!(operation("object.created"), "insert");
        assert_eq!(operation("objects.created.batch"), "insert");
        assert_eq!(operation("documents.updated.batch"), "update");
        assert_eq!(operation("object.deleted"), "delete");
        assert_eq!(operation("batch.completed"), "other");
        assert_eq!(resource_type("objects.created.batch", &json!({})), "objects");
        let ran = json!({"resource_type": "retriever"});
        assert_eq!(resource_type("resource.executed", &ran), "retriever");
        assert_eq!(resource_type("object.created", &ran), "object");
    }

    #[test]
    fn subjects_name_the_resource() {
        let object = json!({"object_id": "obj_1", "bucket_id": "bkt_1"});
        assert_eq!(subject("object", &object), json!({"type": "object", "id": "obj_1"}));
        let batch = json!({"object_ids": ["obj_1"], "bucket_id": "bkt_1"});
        assert_eq!(subject("objects", &batch), json!({"type": "bucket", "id": "bkt_1"}));
    }

    #[test]
    fn cursors_are_bound_to_their_filters() {
        let mine = fingerprint(Some("ns_1"), None);
        let other = fingerprint(None, Some("ns_1"));
        assert_ne!(mine, other);
        let cursor = encode_cursor(42, &mine);
        assert_eq!(decode_cursor(&cursor, &mine).unwrap(), 42);
        assert!(decode_cursor(&cursor, &other).is_err());
        assert!(decode_cursor("garbage", &mine).is_err());
    }

    #[test]
    fn every_known_type_is_unique() {
        let mut all: Vec<&str> =
            SDK_EVENT_TYPES.iter().chain(&SLUICE_EVENT_TYPES).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), SDK_EVENT_TYPES.len() + SLUICE_EVENT_TYPES.len());
    }
}
