//! Organization webhooks: their records, which of them receive an event, and the deliveries
//! that carry events (and per-batch callbacks) to them.
//!
//! A delivery is a row in the delivery log and a durable job; each run of the job is one HTTP
//! POST. A failed attempt is retried with exponential backoff (see
//! [`WebhookSettings`]) until a 2xx answer or until its attempts are used up. The event id is
//! the same on every attempt and every redelivery, so receivers deduplicate by it: delivery is
//! at least once. Redirects are not followed; a 3xx answer counts as a failure.
//!
//! Only the `webhook` channel is delivered. `email` and `slack` channels are refused when a
//! webhook is created or updated, so that no one waits for messages that never come.
//!
//! Signing secrets are stored sealed ([`SecretBox`]) and read back as `"redacted"`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::api::auth::Caller;
use crate::api::extract::from_value;
use crate::api::pagination::{PageParams, encode_cursor};
use crate::config::WebhookSettings;
use crate::error::{Error, Result};
use crate::fetch::FetchError;
use crate::jobs::{self, JobKind};
use crate::model::{new_hex_id, new_id, now};
use crate::secrets::SecretBox;
use crate::service::cache::TtlCache;
use crate::service::{events, list_filter};
use crate::store::filter_sql::Cursor;
use crate::store::{
    AttemptRecord, ClaimedJob, Delivery, NewDelivery, NewEvent, NewJob, Scope, StoreError, Table,
};
use crate::{AppState, LOOKUP_CACHE_TTL};

/// What `SecretBox` keys for signing secrets are derived for.
const SECRET_PURPOSE: &str = "sluice webhook signing secrets";
/// What a signing secret reads back as.
const REDACTED: &str = "redacted";
/// The key of a channel's sealed signing secret inside the stored record.
const SEALED: &str = "sealed_signing_secret";
/// The per-request timeout when the channel gives none, and the longest one allowed.
const DEFAULT_TIMEOUT: f64 = 10.0;
const MAX_TIMEOUT: f64 = 60.0;
/// Headers sluice sets itself, or that HTTP owns; a channel may not set them.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "x-mixpeek-event",
    "x-mixpeek-delivery",
    "x-mixpeek-signature",
];

/// Webhook state shared by all requests: settings, the secret box and the per-organization
/// cache of webhook records that [`events::record`] consults.
pub struct Hooks {
    pub settings: WebhookSettings,
    secrets: SecretBox,
    cache: TtlCache<String, Arc<Vec<Value>>>,
}

impl Hooks {
    pub fn new(settings: WebhookSettings, master_key: &[u8; 32]) -> Self {
        Self {
            settings,
            secrets: SecretBox::new(master_key, SECRET_PURPOSE),
            cache: TtlCache::new(LOOKUP_CACHE_TTL, 10_000),
        }
    }
}

/// The body of `POST /v1/organizations/webhooks/list`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListWebhooks {
    pub event_type: Option<String>,
    pub is_active: Option<bool>,
}

/// A webhook as a request describes it, before checks.
#[derive(Debug, Deserialize)]
struct WebhookInput {
    webhook_name: Option<String>,
    event_types: Option<Vec<String>>,
    resource_types: Option<Vec<String>>,
    channels: Option<Vec<ChannelInput>>,
    is_active: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ChannelInput {
    channel: String,
    configs: Value,
}

/// The configuration of an HTTP channel (`WebhookConfig`).
#[derive(Debug, Deserialize)]
struct HttpConfig {
    url: Option<String>,
    headers: Option<Map<String, Value>>,
    payload_template: Option<Value>,
    timeout: Option<f64>,
    signing_secret: Option<String>,
}

/// A checked channel, with the secret as the request gave it.
struct Channel {
    configs: Value,
    secret: SecretChange,
}

/// What a request asks for a channel's signing secret.
enum SecretChange {
    /// Keep the stored one (`"redacted"`, or no value).
    Keep,
    /// Remove it (`""`).
    Remove,
    Set(String),
}

/// Creates a webhook of the caller's organization.
///
/// # Errors
///
/// 422 for invalid fields (including a URL that is not public, unless the operator allows its
/// network), 409 when the name is taken.
pub async fn create(state: &AppState, caller: &Caller, body: Value) -> Result<Value> {
    let input: WebhookInput = from_value(body, "")?;
    let (name, event_types, resource_types, channels) = check(state, &input)?;
    let id = new_hex_id("wh_", 16);
    let at = now();
    let mut doc = json!({
        "webhook_id": id,
        "webhook_name": name,
        "event_types": event_types,
        "resource_types": resource_types,
        "channels": [],
        "is_active": input.is_active.unwrap_or(true),
        "delivery_health": healthy(),
        "created_at": at,
        "updated_at": at,
    });
    doc["channels"] = Value::Array(seal_channels(state, &id, channels, &[]));

    let inserted =
        state.store.insert_named(Table::Webhooks, &caller.org_id, &id, &name, &doc).await;
    state.hooks.cache.clear();
    inserted.map_err(|e| duplicate_name(e, &name))?;
    tracing::info!(webhook.id = %id, "webhook created");
    Ok(response(&doc))
}

/// Reads a webhook by id or name.
///
/// # Errors
///
/// 404 when the organization has none.
pub async fn get(state: &AppState, caller: &Caller, ident: &str) -> Result<Value> {
    Ok(response(&load(state, caller, ident).await?))
}

/// Replaces a webhook's settings. A signing secret sent as `"redacted"` (or left out) keeps
/// the stored one of the same channel, `""` removes it. Setting `is_active` on a paused
/// webhook resumes it and clears its delivery health; leaving `is_active` out keeps it.
///
/// # Errors
///
/// 404, 409 when the new name is taken, 422 for invalid fields.
pub async fn update(state: &AppState, caller: &Caller, ident: &str, body: Value) -> Result<Value> {
    let mut doc = load(state, caller, ident).await?;
    let input: WebhookInput = from_value(body, "")?;
    let (name, event_types, resource_types, channels) = check(state, &input)?;
    let id = doc["webhook_id"].as_str().unwrap_or_default().to_string();

    let previous = doc["channels"].as_array().cloned().unwrap_or_default();
    doc["channels"] = Value::Array(seal_channels(state, &id, channels, &previous));
    doc["webhook_name"] = json!(name);
    doc["event_types"] = json!(event_types);
    doc["resource_types"] = json!(resource_types);
    if let Some(active) = input.is_active {
        if active && doc["is_active"] != true {
            doc["delivery_health"] = healthy();
        }
        doc["is_active"] = json!(active);
    }
    doc["updated_at"] = json!(now());

    let saved = state.store.update_doc(Table::Webhooks, &id, Some(&name), &doc).await;
    state.hooks.cache.clear();
    saved.map_err(|e| duplicate_name(e, &name))?;
    tracing::info!(webhook.id = %id, "webhook updated");
    Ok(response(&doc))
}

/// Deletes a webhook and its delivery log; an unknown webhook succeeds too.
///
/// # Errors
///
/// Fails on a store error.
pub async fn delete(state: &AppState, caller: &Caller, ident: &str) -> Result<()> {
    let Some(row) = state.store.get(Table::Webhooks, caller.scope(), ident).await? else {
        return Ok(());
    };
    let id = row.doc["webhook_id"].as_str().unwrap_or_default().to_string();
    state.store.delete_webhook(&caller.org_id, &id).await?;
    state.hooks.cache.clear();
    tracing::info!(webhook.id = %id, "webhook deleted");
    Ok(())
}

/// Lists the organization's webhooks, oldest first, optionally only those subscribed to an
/// event type (directly or through `*`) or only active or paused ones.
///
/// # Errors
///
/// 422 for invalid pagination.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    req: ListWebhooks,
    query: &PageParams,
) -> Result<Value> {
    let paging = query.resolve(100, crate::api::pagination::MAX_LIMIT)?;
    let mut conditions = Vec::new();
    if let Some(event_type) = req.event_type.filter(|t| !t.is_empty()) {
        conditions.push(json!({"OR": [
            {"field": "event_types", "operator": "contains", "value": event_type},
            {"field": "event_types", "operator": "contains", "value": events::ALL_EVENTS},
        ]}));
    }
    if let Some(active) = req.is_active {
        conditions.push(json!({"field": "is_active", "operator": "eq", "value": active}));
    }
    let always = (!conditions.is_empty()).then(|| json!({"AND": conditions}));
    let (filter, sort) = list_filter(None, None, always, None)?;

    let spec = paging.spec(filter, sort, true);
    let page = state.store.list(Table::Webhooks, caller.scope(), &spec).await?;
    let next = crate::service::next_cursor(&spec, &page);
    let results: Vec<Value> = page.rows.iter().map(|r| response(&r.doc)).collect();
    let total = page.total.unwrap_or(results.len() as i64);
    Ok(json!({"results": results, "pagination": paging.response(&page, next), "total": total}))
}

async fn load(state: &AppState, caller: &Caller, ident: &str) -> Result<Value> {
    let row = state.store.get(Table::Webhooks, caller.scope(), ident).await?;
    row.map(|r| r.doc).ok_or_else(|| Error::not_found("webhook", ident))
}

fn duplicate_name(e: StoreError, name: &str) -> Error {
    match e {
        StoreError::Duplicate => Error::conflict(
            "webhook_name_taken",
            format!("the organization already has a webhook named {name:?}"),
        ),
        other => other.into(),
    }
}

/// The delivery health of a webhook without failures.
fn healthy() -> Value {
    json!({
        "consecutive_failures": 0,
        "first_failure_at": null,
        "last_failure_at": null,
        "last_failure_cause": null,
        "paused_at": null,
        "paused_reason": null,
    })
}

/// The answer for a webhook record: sealed secrets become `"redacted"`.
fn response(doc: &Value) -> Value {
    let mut out = doc.clone();
    for channel in out["channels"].as_array_mut().into_iter().flatten() {
        let sealed = channel.as_object_mut().and_then(|c| c.remove(SEALED)).is_some();
        if sealed {
            channel["configs"]["signing_secret"] = json!(REDACTED);
        }
    }
    if out["delivery_health"].is_null() {
        out["delivery_health"] = healthy();
    }
    out
}

type Checked = (String, Vec<String>, Option<Vec<String>>, Vec<Channel>);

/// Checks a webhook as a create or update request gives it.
fn check(state: &AppState, input: &WebhookInput) -> Result<Checked> {
    let name = input.webhook_name.clone().unwrap_or_default();
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid("webhook_name", "expected 1 to 200 characters"));
    }

    let event_types = input.event_types.clone().unwrap_or_default();
    if event_types.is_empty() {
        return Err(Error::invalid("event_types", "expected at least one event type"));
    }
    for (i, event_type) in event_types.iter().enumerate() {
        if !(events::is_known(event_type) || event_type == events::ALL_EVENTS) {
            return Err(Error::invalid(
                format!("event_types.{i}"),
                format!("{event_type:?} is not an event type"),
            ));
        }
    }
    let mut unique = Vec::new();
    for event_type in event_types {
        if !unique.contains(&event_type) {
            unique.push(event_type);
        }
    }

    let resource_types = input.resource_types.clone().filter(|r| !r.is_empty());
    if let Some(i) = resource_types.iter().flatten().position(|r| r.trim().is_empty()) {
        return Err(Error::invalid(format!("resource_types.{i}"), "expected a resource type"));
    }

    let inputs = input.channels.as_deref().unwrap_or_default();
    if inputs.is_empty() {
        return Err(Error::invalid("channels", "expected at least one channel"));
    }
    let channels = inputs
        .iter()
        .enumerate()
        .map(|(i, c)| check_channel(state, i, c))
        .collect::<Result<Vec<_>>>()?;
    Ok((name, unique, resource_types, channels))
}

fn check_channel(state: &AppState, i: usize, input: &ChannelInput) -> Result<Channel> {
    let at = |field: &str| format!("channels.{i}.{field}");
    match input.channel.as_str() {
        "webhook" => {}
        "email" | "slack" => {
            return Err(Error::invalid(
                at("channel"),
                format!(
                    "the {} channel is not delivered by this server; use a webhook channel",
                    input.channel
                ),
            ));
        }
        other => {
            return Err(Error::invalid(
                at("channel"),
                format!("{other:?} is not a channel; expected webhook"),
            ));
        }
    }
    let config: HttpConfig = from_value(input.configs.clone(), &at("configs"))?;

    let url = config.url.unwrap_or_default();
    let url_field = at("configs.url");
    state.fetcher.policy().check_url(&url).map_err(|e| match e {
        FetchError::Forbidden(message) => Error::invalid(
            url_field.clone(),
            format!(
                "{message}; the operator can allow its network with SLUICE_ALLOW_PRIVATE_NETWORKS"
            ),
        ),
        other => Error::invalid(url_field.clone(), other.to_string()),
    })?;

    let headers = config.headers.unwrap_or_default();
    for (name, value) in &headers {
        let field = at(&format!("configs.headers.{name}"));
        let text = value.as_str().ok_or_else(|| Error::invalid(&field, "expected a string"))?;
        let valid = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && axum::http::HeaderValue::from_str(text).is_ok();
        if !valid {
            return Err(Error::invalid(field, "not a valid HTTP header"));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Error::invalid(field, "this header is set by sluice"));
        }
    }

    let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if !(timeout > 0.0 && timeout <= MAX_TIMEOUT) {
        return Err(Error::invalid(
            at("configs.timeout"),
            format!("expected more than 0 and at most {MAX_TIMEOUT} seconds"),
        ));
    }
    let secret = match config.signing_secret.as_deref() {
        None | Some(REDACTED) => SecretChange::Keep,
        Some("") => SecretChange::Remove,
        Some(secret) => SecretChange::Set(secret.to_string()),
    };
    // Limitation: `payload_template` is stored and returned but not applied; every delivery
    // carries the standard event JSON.
    let configs = json!({
        "url": url,
        "headers": headers,
        "payload_template": config.payload_template,
        "timeout": timeout,
        "signing_secret": null,
    });
    Ok(Channel { configs, secret })
}

/// The stored channels: each with its sealed secret, kept from the channel at the same position
/// of `previous` when the request asks to keep it.
fn seal_channels(
    state: &AppState,
    webhook_id: &str,
    channels: Vec<Channel>,
    previous: &[Value],
) -> Vec<Value> {
    let sealer = &state.hooks.secrets;
    channels
        .into_iter()
        .enumerate()
        .map(|(i, channel)| {
            let sealed = match channel.secret {
                SecretChange::Keep => previous.get(i).and_then(|c| c.get(SEALED)).cloned(),
                SecretChange::Remove => None,
                SecretChange::Set(secret) => Some(json!(sealer.seal(&secret, webhook_id))),
            };
            let mut stored = json!({"channel": "webhook", "configs": channel.configs});
            if let Some(sealed) = sealed {
                stored[SEALED] = sealed;
            }
            stored
        })
        .collect()
}

/// Seals every webhook's signing secrets again under a new master key; returns how many
/// webhooks were re-sealed. See [`crate::service::connections::reseal_all`].
///
/// # Errors
///
/// Fails when a secret opens under neither key (nothing is changed then), or on a store error.
pub async fn reseal_all(
    store: &crate::store::Store,
    old_master: &[u8; 32],
    new_master: &[u8; 32],
) -> std::result::Result<usize, String> {
    let old = SecretBox::new(old_master, SECRET_PURPOSE);
    let new = SecretBox::new(new_master, SECRET_PURPOSE);
    let rows = store.all_docs(Table::Webhooks).await.map_err(|e| e.to_string())?;
    let mut resealed = Vec::new();
    for (id, mut doc) in rows {
        let mut changed = false;
        for channel in doc["channels"].as_array_mut().into_iter().flatten() {
            let Some(sealed) = channel.get(SEALED).and_then(Value::as_str) else { continue };
            let sealed = crate::secrets::reseal(&old, &new, sealed, &id).ok_or_else(|| {
                format!("a signing secret of webhook {id} opens under neither key")
            })?;
            channel[SEALED] = json!(sealed);
            changed = true;
        }
        if changed {
            resealed.push((id, doc));
        }
    }
    for (id, doc) in &resealed {
        let name = doc["webhook_name"].as_str();
        store.update_doc(Table::Webhooks, id, name, doc).await.map_err(|e| e.to_string())?;
    }
    Ok(resealed.len())
}

// Fan-out.

/// Every webhook record of the organization, from a short-lived cache that webhook changes in
/// this process clear.
///
/// # Errors
///
/// Fails on a store error.
pub(crate) async fn subscribers(state: &AppState, org_id: &str) -> Result<Arc<Vec<Value>>> {
    let key = org_id.to_string();
    if let Some(hooks) = state.hooks.cache.get(&key) {
        return Ok(hooks);
    }
    let hooks = Arc::new(state.store.webhooks_of(org_id).await?);
    state.hooks.cache.insert(key, hooks.clone());
    Ok(hooks)
}

/// The deliveries of an event, one per HTTP channel of each active webhook that wants it, with
/// the jobs that send them.
pub(crate) fn plan(
    state: &AppState,
    event: &NewEvent,
    hooks: &[Value],
) -> (Vec<NewDelivery>, Vec<NewJob>) {
    let mut deliveries = Vec::new();
    let mut jobs = Vec::new();
    let mut body = None;
    for hook in hooks.iter().filter(|h| wants(h, event)) {
        let channels = hook["channels"].as_array().into_iter().flatten().enumerate();
        for (i, channel) in channels.filter(|(_, c)| c["channel"] == "webhook") {
            let body = body.get_or_insert_with(|| events::envelope(event)).clone();
            let delivery = NewDelivery {
                id: new_id("dlv_", 20),
                org_id: event.org_id.clone(),
                webhook_id: hook["webhook_id"].as_str().map(String::from),
                channel: i32::try_from(i).unwrap_or(0),
                event_id: event.id.clone(),
                event_type: event.event_type.clone(),
                url: channel["configs"]["url"].as_str().unwrap_or_default().to_string(),
                body,
                manual: false,
                created_at: event.created_at.clone(),
            };
            jobs.push(delivery_job(state, &delivery));
            deliveries.push(delivery);
        }
    }
    (deliveries, jobs)
}

pub(crate) fn wants(hook: &Value, event: &NewEvent) -> bool {
    let listed = |key: &str, value: &str| {
        hook[key].as_array().into_iter().flatten().any(|v| v.as_str() == Some(value))
    };
    let resource_ok = match hook["resource_types"].as_array() {
        Some(types) if !types.is_empty() => listed("resource_types", &event.resource_type),
        _ => true,
    };
    hook["is_active"] == true
        && (listed("event_types", &event.event_type) || listed("event_types", events::ALL_EVENTS))
        && resource_ok
}

fn delivery_job(state: &AppState, delivery: &NewDelivery) -> NewJob {
    let payload = json!({"delivery_id": delivery.id});
    jobs::new_job(
        state,
        JobKind::WebhookDeliver,
        &delivery.org_id,
        payload,
        None,
        &delivery.created_at,
    )
}

/// Sends `payload` once, as JSON, by HTTP POST to `url`, for a per-batch `webhook_url`: through
/// the same durable delivery as webhooks (retries with backoff, at least once), without a
/// signature. The URL must be public unless the operator allows its network; that is checked
/// now for a literal address and again, on the resolved address, at every attempt.
///
/// # Errors
///
/// 422 for a URL that cannot be delivered to; a store error.
pub async fn callback(state: &AppState, org_id: &str, url: &str, payload: Value) -> Result<()> {
    check_callback_url(state, url)?;
    let at = now();
    let event_type = payload.get("event_type").and_then(Value::as_str).unwrap_or("callback");
    let delivery = NewDelivery {
        id: new_id("dlv_", 20),
        org_id: org_id.to_string(),
        webhook_id: None,
        channel: 0,
        event_id: new_id("evt_", 24),
        event_type: event_type.to_string(),
        url: url.to_string(),
        body: payload,
        manual: false,
        created_at: at.clone(),
    };
    let job = delivery_job(state, &delivery);
    state.store.insert_deliveries(std::slice::from_ref(&delivery), &[job], &at).await?;
    jobs::wake(state);
    Ok(())
}

/// Checks a callback URL the way [`callback`] does, so that a request naming one can be
/// refused before any work starts.
///
/// # Errors
///
/// 422 naming `webhook_url`.
pub fn check_callback_url(state: &AppState, url: &str) -> Result<()> {
    state
        .fetcher
        .policy()
        .check_url(url)
        .map(|_| ())
        .map_err(|e| Error::invalid("webhook_url", e.to_string()))
}

// The delivery log.

/// Lists the deliveries of a webhook, newest first.
///
/// # Errors
///
/// 404 for the webhook, 422 for invalid pagination.
pub async fn deliveries(
    state: &AppState,
    caller: &Caller,
    ident: &str,
    query: &PageParams,
) -> Result<Value> {
    let paging = query.resolve(50, crate::api::pagination::MAX_LIMIT)?;
    let hook = load(state, caller, ident).await?;
    let id = hook["webhook_id"].as_str().unwrap_or_default();
    let before = paging.after.as_ref().map(|c| c.seq);
    let mut rows = state.store.list_deliveries(&caller.org_id, id, before, paging.limit).await?;
    let has_more = rows.len() as i64 > paging.limit;
    rows.truncate(paging.limit as usize);
    let next_cursor = rows
        .last()
        .filter(|_| has_more)
        .map(|last| encode_cursor(&Cursor { seq: last.seq, value: None }));
    let results: Vec<Value> = rows.iter().map(delivery_response).collect();
    Ok(json!({"results": results, "next_cursor": next_cursor, "has_more": has_more}))
}

/// Sends an event again to the webhook, as a new delivery with the same event id. It is sent
/// even while the webhook is paused, so that a receiver can be tested before resuming.
///
/// # Errors
///
/// 404 for the webhook or the delivery.
pub async fn redeliver(
    state: &AppState,
    caller: &Caller,
    ident: &str,
    delivery_id: &str,
) -> Result<Value> {
    let hook = load(state, caller, ident).await?;
    let hook_id = hook["webhook_id"].as_str().unwrap_or_default();
    let original = state
        .store
        .get_delivery(&caller.org_id, delivery_id)
        .await?
        .filter(|d| d.webhook_id.as_deref() == Some(hook_id))
        .ok_or_else(|| Error::not_found("delivery", delivery_id))?;

    let at = now();
    let channel = usize::try_from(original.channel).unwrap_or(0);
    let url = hook["channels"][channel]["configs"]["url"].as_str().unwrap_or(&original.url);
    let delivery = NewDelivery {
        id: new_id("dlv_", 20),
        org_id: caller.org_id.clone(),
        webhook_id: Some(hook_id.to_string()),
        channel: original.channel,
        event_id: original.event_id,
        event_type: original.event_type,
        url: url.to_string(),
        body: original.body,
        manual: true,
        created_at: at.clone(),
    };
    let job = delivery_job(state, &delivery);
    state.store.insert_deliveries(std::slice::from_ref(&delivery), &[job], &at).await?;
    jobs::wake(state);
    tracing::info!(webhook.id = %hook_id, delivery.id = %delivery.id, "redelivery queued");

    let stored = state.store.get_delivery(&caller.org_id, &delivery.id).await?;
    stored
        .map(|d| delivery_response(&d))
        .ok_or_else(|| Error::Internal("a queued delivery vanished".into()))
}

fn delivery_response(d: &Delivery) -> Value {
    json!({
        "delivery_id": d.id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "url": d.url,
        "status": d.status,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "attempt_log": d.attempt_log,
        "redelivery": d.manual,
        "payload": d.body,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "next_attempt_at": d.next_attempt_at,
        "delivered_at": d.delivered_at,
    })
}

// Sending.

/// Where and how one attempt is sent.
struct Target {
    url: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    secret: Option<String>,
}

/// Makes one attempt of a delivery; the job engine calls it once per attempt. A failed attempt
/// returns an error so that the engine retries it, except the last one, which settles the
/// delivery as failed. A delivery already settled is left alone, so a repeated run sends
/// nothing twice that succeeded.
///
/// # Errors
///
/// The cause of a failed attempt that will be retried; a store error.
pub async fn run_delivery(state: &AppState, job: &ClaimedJob) -> Result<()> {
    let id = job.payload["delivery_id"].as_str().unwrap_or_default();
    let Some(delivery) = state.store.get_delivery(&job.org_id, id).await? else {
        return Ok(());
    };
    if delivery.status != "pending" {
        return Ok(());
    }
    let target = match target(state, &delivery).await? {
        Ok(target) => target,
        Err(reason) => return settle_skipped(state, &delivery, reason).await,
    };

    let body = serde_json::to_vec(&delivery.body)
        .map_err(|e| Error::Internal(format!("could not encode a delivery: {e}")))?;
    let headers = request_headers(&delivery, &target, &body);
    let started = Instant::now();
    let sent = state.fetcher.post(&target.url, &headers, body.into(), target.timeout).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    let (code, failure) = match sent {
        Ok(code) if (200..300).contains(&code) => (Some(code), None),
        Ok(code) => (Some(code), Some(format!("the receiver answered HTTP {code}"))),
        Err(FetchError::Timeout) => {
            (None, Some(format!("no answer within {} s", target.timeout.as_secs_f64())))
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let last = job.attempts >= job.max_attempts;
    let record =
        attempt_record(state, &delivery, &target, job, code, failure.as_deref(), duration_ms);
    state.store.record_attempt(&delivery.id, &record).await?;
    if let Some(webhook_id) = &delivery.webhook_id {
        update_health(state, &delivery.org_id, webhook_id, failure.as_deref(), last).await?;
    }

    match failure {
        None => {
            tracing::info!(delivery.id = %delivery.id, http.status = code, duration_ms, "webhook delivered");
            Ok(())
        }
        Some(cause) if last => {
            tracing::warn!(delivery.id = %delivery.id, cause = %cause, "webhook delivery gave up");
            Ok(())
        }
        Some(cause) => Err(Error::Internal(format!("webhook delivery failed: {cause}"))),
    }
}

/// The target of a delivery as its webhook now stands, or why it is not to be sent.
async fn target(
    state: &AppState,
    delivery: &Delivery,
) -> Result<std::result::Result<Target, &'static str>> {
    let Some(webhook_id) = &delivery.webhook_id else {
        let timeout = Duration::from_secs_f64(DEFAULT_TIMEOUT);
        let url = delivery.url.clone();
        return Ok(Ok(Target { url, headers: Vec::new(), timeout, secret: None }));
    };
    let row = state.store.get(Table::Webhooks, Scope::org(&delivery.org_id), webhook_id).await?;
    let Some(hook) = row.map(|r| r.doc) else {
        return Ok(Err("the webhook was deleted"));
    };
    if hook["is_active"] != true && !delivery.manual {
        return Ok(Err("the webhook is paused or inactive"));
    }
    let channel = &hook["channels"][usize::try_from(delivery.channel).unwrap_or(0)];
    if channel["channel"] != "webhook" {
        return Ok(Err("the webhook no longer has this channel"));
    }
    let configs = &channel["configs"];
    let headers = configs["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let seconds = configs["timeout"].as_f64().unwrap_or(DEFAULT_TIMEOUT).clamp(0.1, MAX_TIMEOUT);
    let secret = match channel.get(SEALED).and_then(Value::as_str) {
        Some(sealed) => Some(state.hooks.secrets.open(sealed, webhook_id).ok_or_else(|| {
            Error::Internal("a webhook signing secret does not open with this master key".into())
        })?),
        None => None,
    };
    Ok(Ok(Target {
        url: configs["url"].as_str().unwrap_or(&delivery.url).to_string(),
        headers,
        timeout: Duration::from_secs_f64(seconds),
        secret,
    }))
}

fn request_headers(delivery: &Delivery, target: &Target, body: &[u8]) -> Vec<(String, String)> {
    let mut headers = target.headers.clone();
    headers.push(("Content-Type".into(), "application/json".into()));
    headers.push(("X-Mixpeek-Event".into(), delivery.event_type.clone()));
    headers.push(("X-Mixpeek-Delivery".into(), delivery.id.clone()));
    if let Some(secret) = &target.secret {
        let t = time::OffsetDateTime::now_utc().unix_timestamp();
        headers.push(("X-Mixpeek-Signature".into(), signature(secret, t, body)));
    }
    headers
}

/// The `X-Mixpeek-Signature` value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let digest: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={digest}")
}

fn attempt_record(
    state: &AppState,
    delivery: &Delivery,
    target: &Target,
    job: &ClaimedJob,
    code: Option<u16>,
    failure: Option<&str>,
    duration_ms: u64,
) -> AttemptRecord {
    let at = now();
    let attempts = delivery.attempts + 1;
    let mut log = delivery.attempt_log.as_array().cloned().unwrap_or_default();
    log.push(json!({
        "attempt": attempts,
        "at": at,
        "status_code": code,
        "error": failure,
        "duration_ms": duration_ms,
    }));
    let last = job.attempts >= job.max_attempts;
    let (status, next_attempt_at) = match failure {
        None => ("succeeded", None),
        Some(_) if last => ("failed", None),
        Some(_) => {
            let delay = JobKind::WebhookDeliver.retry_policy(state).backoff(job.attempts);
            ("pending", Some(jobs::after(delay)))
        }
    };
    AttemptRecord {
        status: status.into(),
        attempts,
        url: target.url.clone(),
        last_status_code: code.map(i32::from),
        last_error: failure.map(String::from),
        attempt_log: Value::Array(log),
        updated_at: at.clone(),
        next_attempt_at,
        delivered_at: failure.is_none().then_some(at),
    }
}

async fn settle_skipped(state: &AppState, delivery: &Delivery, reason: &str) -> Result<()> {
    let record = AttemptRecord {
        status: "skipped".into(),
        attempts: delivery.attempts,
        url: delivery.url.clone(),
        last_status_code: delivery.last_status_code,
        last_error: Some(reason.to_string()),
        attempt_log: delivery.attempt_log.clone(),
        updated_at: now(),
        next_attempt_at: None,
        delivered_at: None,
    };
    state.store.record_attempt(&delivery.id, &record).await?;
    tracing::info!(delivery.id = %delivery.id, reason, "webhook delivery skipped");
    Ok(())
}

/// Counts a failed attempt against the webhook, pausing it after too many in a row or when a
/// delivery used up its retries; a success clears the count.
async fn update_health(
    state: &AppState,
    org_id: &str,
    webhook_id: &str,
    failure: Option<&str>,
    exhausted: bool,
) -> Result<()> {
    let pause_after = state.hooks.settings.pause_after;
    let mut paused = false;
    match failure {
        None => {
            // Reading first spares the common case, a healthy webhook, a write per delivery.
            let hooks = subscribers(state, org_id).await?;
            let clean = hooks.iter().any(|h| {
                h["webhook_id"] == webhook_id
                    && h["delivery_health"]["consecutive_failures"].as_i64().unwrap_or(0) == 0
            });
            if clean {
                return Ok(());
            }
            state
                .store
                .change_webhook(webhook_id, |doc| {
                    let health = &mut doc["delivery_health"];
                    health["consecutive_failures"] = json!(0);
                    health["first_failure_at"] = Value::Null;
                })
                .await?;
        }
        Some(cause) => {
            let at = now();
            state
                .store
                .change_webhook(webhook_id, |doc| {
                    if !doc["delivery_health"].is_object() {
                        doc["delivery_health"] = healthy();
                    }
                    let health = &mut doc["delivery_health"];
                    let failures = health["consecutive_failures"].as_i64().unwrap_or(0) + 1;
                    health["consecutive_failures"] = json!(failures);
                    if health["first_failure_at"].is_null() {
                        health["first_failure_at"] = json!(at);
                    }
                    health["last_failure_at"] = json!(at);
                    health["last_failure_cause"] = json!(cause);
                    if doc["is_active"] == true && (exhausted || failures >= pause_after) {
                        let reason = if exhausted {
                            format!("a delivery failed on every attempt; last cause: {cause}")
                        } else {
                            format!(
                                "{failures} delivery attempts failed in a row; last cause: {cause}"
                            )
                        };
                        doc["is_active"] = json!(false);
                        doc["delivery_health"]["paused_at"] = json!(at);
                        doc["delivery_health"]["paused_reason"] = json!(reason);
                        paused = true;
                    }
                })
                .await?;
        }
    }
    state.hooks.cache.clear();
    if paused {
        tracing::warn!(webhook.id = %webhook_id, "webhook paused after failed deliveries");
    }
    Ok(())
}
