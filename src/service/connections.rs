//! Organization storage connections: where a team's files live and the credentials to read
//! them, which syncs use.
//!
//! A connection's credentials are sealed into its stored record ([`SecretBox`], bound to the
//! connection id) and never leave sluice again: every answer shows `credentials` as
//! `{"type": …}` only, and no credential is logged. A PATCH that leaves credential fields out
//! keeps the stored ones when the credential type is unchanged.
//!
//! Providers sluice cannot read from yet are refused when a connection is created, naming the
//! ones it can, so that no connection is accepted and then silently never synced.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::api::auth::Caller;
use crate::api::extract::from_value;
use crate::api::pagination::{MAX_LIMIT, PageParams};
use crate::error::{Error, Result};
use crate::fetch::FetchError;
use crate::model::{new_id, now};
use crate::secrets::SecretBox;
use crate::service::list_filter;
use crate::source::{self, Probe};
use crate::store::{StoreError, Table};

/// What `SecretBox` keys for connection credentials are derived for.
const SECRET_PURPOSE: &str = "sluice connection credentials";
/// The key of the sealed credentials inside the stored record.
const SEALED: &str = "sealed_credentials";

/// Every provider of the contract.
const PROVIDERS: [&str; 20] = [
    "google_drive",
    "s3",
    "snowflake",
    "sharepoint",
    "tigris",
    "postgresql",
    "instagram",
    "tiktok",
    "rss",
    "http_api",
    "box",
    "brightdata",
    "backblaze",
    "mux",
    "email",
    "supabase",
    "iconik",
    "gcs",
    "azure_blob",
    "rtsp",
];
/// The providers sluice reads from.
const SUPPORTED: [&str; 8] =
    ["s3", "tigris", "backblaze", "supabase", "gcs", "azure_blob", "rss", "http_api"];

const STATUSES: [&str; 4] = ["ACTIVE", "SUSPENDED", "FAILED", "ARCHIVED"];

/// A credential type: its name and its required fields; other fields it knows are optional.
struct CredentialType {
    name: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

const ACCESS_KEY: CredentialType = CredentialType {
    name: "access_key",
    required: &["access_key_id", "secret_access_key"],
    optional: &["session_token"],
};
const IAM_ROLE: CredentialType =
    CredentialType { name: "iam_role", required: &["role_arn", "external_id"], optional: &[] };
const HTTP_HEADERS: CredentialType =
    CredentialType { name: "http_headers", required: &["headers"], optional: &[] };

/// What a provider's `provider_config` must and may hold.
struct Rules {
    credentials: &'static [CredentialType],
    credentials_required: bool,
    required: &'static [&'static str],
    defaults: fn() -> Map<String, Value>,
}

fn rules(provider: &str) -> Rules {
    let none = Map::new;
    match provider {
        "s3" => Rules {
            credentials: &[ACCESS_KEY, IAM_ROLE],
            credentials_required: true,
            required: &[],
            defaults: || {
                object(json!({"region": "us-east-1", "use_ssl": true, "verify_ssl": true}))
            },
        },
        "tigris" => Rules {
            credentials: &[ACCESS_KEY],
            credentials_required: true,
            required: &[],
            defaults: || {
                object(json!({"region": "auto", "endpoint_url": "https://fly.storage.tigris.dev"}))
            },
        },
        "supabase" => Rules {
            credentials: &[ACCESS_KEY],
            credentials_required: true,
            required: &["endpoint_url"],
            defaults: || object(json!({"region": "auto"})),
        },
        "backblaze" => Rules {
            credentials: &[CredentialType {
                name: "application_key",
                required: &["key_id", "application_key"],
                optional: &[],
            }],
            credentials_required: true,
            required: &[],
            defaults: none,
        },
        "gcs" => Rules {
            credentials: &[CredentialType {
                name: "service_account",
                required: &["service_account_json"],
                optional: &[],
            }],
            credentials_required: true,
            required: &["bucket"],
            defaults: none,
        },
        "azure_blob" => Rules {
            credentials: &[
                CredentialType {
                    name: "account_key",
                    required: &["account_name", "account_key"],
                    optional: &[],
                },
                CredentialType {
                    name: "managed_identity",
                    required: &[],
                    optional: &["client_id"],
                },
            ],
            credentials_required: true,
            required: &["container"],
            defaults: none,
        },
        "rss" => Rules {
            credentials: &[HTTP_HEADERS],
            credentials_required: false,
            required: &[],
            defaults: || object(json!({"user_agent": USER_AGENT, "request_timeout": 30})),
        },
        _ => Rules {
            credentials: &[HTTP_HEADERS],
            credentials_required: false,
            required: &[],
            defaults: || {
                object(json!({
                    "http_method": "GET",
                    "items_path": "",
                    "item_id_field": "id",
                    "response_content_type": "json",
                    "user_agent": USER_AGENT,
                    "request_timeout": 30,
                }))
            },
        },
    }
}

const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[derive(Debug, Deserialize)]
struct CreateInput {
    name: String,
    provider_type: String,
    provider_config: Map<String, Value>,
    description: Option<String>,
    metadata: Option<Map<String, Value>>,
    write_enabled: Option<bool>,
    test_before_save: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct UpdateInput {
    name: Option<String>,
    description: Option<String>,
    metadata: Option<Map<String, Value>>,
    status: Option<String>,
    is_active: Option<bool>,
    write_enabled: Option<bool>,
    provider_config: Option<Map<String, Value>>,
}

/// The filters of a connection list.
#[derive(Debug, Default, Deserialize)]
pub struct ListConnections {
    pub provider_type: Option<String>,
    pub status: Option<String>,
    pub is_active: Option<bool>,
}

/// A checked `provider_config`: the settings as stored in the clear, and the credentials.
struct Checked {
    settings: Map<String, Value>,
    credentials: Option<Map<String, Value>>,
}

/// Creates a connection of the caller's organization, testing it first unless
/// `test_before_save` is false.
///
/// # Errors
///
/// 422 for an invalid field or a provider sluice cannot read from, 400 when the test fails,
/// 409 when the name is taken.
pub async fn create(state: &AppState, caller: &Caller, body: Value) -> Result<Value> {
    let input: CreateInput = from_value(body, "")?;
    let name = check_name(&input.name)?;
    let provider = check_provider(&input.provider_type)?;
    let description = check_description(input.description)?;
    let checked = check_config(state, provider, input.provider_config, None)?;
    let credentials = checked.credentials.unwrap_or_default();

    let id = new_id("conn_", 15);
    if input.test_before_save.unwrap_or(true) {
        let probe = source::probe(
            &state.fetcher,
            &state.aws_identity,
            provider,
            &checked.settings,
            &credentials,
        )
        .await;
        if !probe.success {
            return Err(Error::bad_request(
                "connection_test_failed",
                format!("the connection test failed: {}", probe.message),
            ));
        }
    }

    let at = now();
    let mut doc = json!({
        "connection_id": id,
        "internal_id": caller.internal_id,
        "provider_type": provider,
        "provider_config": checked.settings,
        "write_enabled": input.write_enabled.unwrap_or(false),
        "name": name,
        "description": description,
        "status": "ACTIVE",
        "is_active": true,
        "last_used_at": null,
        "last_error": null,
        "consecutive_failures": 0,
        "created_at": at,
        "updated_at": at,
        "created_by_user_id": user_id(caller),
        "metadata": input.metadata.unwrap_or_default(),
    });
    seal(state, &mut doc, &id, &credentials);
    state
        .store
        .insert_named(Table::Connections, &caller.org_id, &id, &name, &doc)
        .await
        .map_err(|e| duplicate_name(e, &name))?;
    tracing::info!(connection.id = %id, provider, "storage connection created");
    Ok(response(&doc))
}

/// Reads a connection by id or (unless archived) by name.
///
/// # Errors
///
/// 404 when the organization has none.
pub async fn get(state: &AppState, caller: &Caller, ident: &str) -> Result<Value> {
    Ok(response(&load(state, caller, ident).await?))
}

/// Lists the organization's connections, newest first. Archived ones are listed only when the
/// `status` filter asks for them.
///
/// # Errors
///
/// 422 for an invalid filter or pagination.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    req: ListConnections,
    query: &PageParams,
) -> Result<Value> {
    let paging = query.resolve(100, MAX_LIMIT)?;
    let mut conditions = Vec::new();
    if let Some(provider) = req.provider_type.filter(|p| !p.is_empty()) {
        check_known(&provider)?;
        conditions.push(json!({"field": "provider_type", "operator": "eq", "value": provider}));
    }
    match req.status.filter(|s| !s.is_empty()) {
        Some(status) => {
            let status = check_status(&status)?;
            conditions.push(json!({"field": "status", "operator": "eq", "value": status}));
        }
        None => conditions.push(json!({"field": "status", "operator": "ne", "value": "ARCHIVED"})),
    }
    if let Some(active) = req.is_active {
        conditions.push(json!({"field": "is_active", "operator": "eq", "value": active}));
    }
    let sort = json!({"field": "created_at", "direction": "desc"});
    let (filter, sort) = list_filter(None, None, Some(json!({"AND": conditions})), Some(&sort))?;

    let spec = paging.spec(filter, sort, true);
    let page = state.store.list(Table::Connections, caller.scope(), &spec).await?;
    let next = crate::service::next_cursor(&spec, &page);
    let results: Vec<Value> = page.rows.iter().map(|r| response(&r.doc)).collect();
    let total = page.total.unwrap_or(results.len() as i64);
    Ok(json!({"results": results, "pagination": paging.response(&page, next), "total": total}))
}

/// Changes a connection. `provider_config` replaces the stored settings; credential fields it
/// leaves out are kept when the credential type is unchanged, and leaving `credentials` out
/// keeps them all. `status` and `is_active` move together: only an `ACTIVE` connection is
/// active.
///
/// # Errors
///
/// 404, 409 when the new name is taken, 422 for invalid fields.
pub async fn update(state: &AppState, caller: &Caller, ident: &str, body: Value) -> Result<Value> {
    let mut doc = load(state, caller, ident).await?;
    let input: UpdateInput = from_value(body, "")?;
    let id = doc["connection_id"].as_str().unwrap_or_default().to_string();
    let provider = doc["provider_type"].as_str().unwrap_or_default().to_string();

    if let Some(name) = &input.name {
        doc["name"] = json!(check_name(name)?);
    }
    if let Some(description) = input.description {
        doc["description"] = json!(check_description(Some(description))?);
    }
    if let Some(metadata) = input.metadata {
        doc["metadata"] = Value::Object(metadata);
    }
    if let Some(write_enabled) = input.write_enabled {
        doc["write_enabled"] = json!(write_enabled);
    }
    let status = match (input.status.as_deref(), input.is_active) {
        (Some(status), _) => Some(check_status(status)?),
        (None, Some(true)) => Some("ACTIVE"),
        (None, Some(false)) if doc["status"] == "ACTIVE" => Some("SUSPENDED"),
        (None, _) => None,
    };
    if let Some(status) = status {
        doc["status"] = json!(status);
        doc["is_active"] = json!(status == "ACTIVE");
        if status == "ACTIVE" {
            doc["consecutive_failures"] = json!(0);
        }
    }
    if let Some(config) = input.provider_config {
        let stored = open_credentials(state, &doc, &id)?;
        let checked = check_config(state, &provider, config, Some(&stored))?;
        doc["provider_config"] = Value::Object(checked.settings);
        seal(state, &mut doc, &id, &checked.credentials.unwrap_or(stored));
    }
    doc["updated_at"] = json!(now());

    if doc["status"] == "ARCHIVED" {
        state.store.archive_connection(&id, &doc).await?;
    } else {
        let name = doc["name"].as_str().unwrap_or_default().to_string();
        state
            .store
            .update_doc(Table::Connections, &id, Some(&name), &doc)
            .await
            .map_err(|e| duplicate_name(e, &name))?;
    }
    tracing::info!(connection.id = %id, "storage connection updated");
    Ok(response(&doc))
}

/// Archives a connection (a soft delete): it stays readable by id with status `ARCHIVED`, and
/// its name is free again.
///
/// # Errors
///
/// 404 when the organization has none.
pub async fn delete(state: &AppState, caller: &Caller, ident: &str) -> Result<Value> {
    let mut doc = load(state, caller, ident).await?;
    let id = doc["connection_id"].as_str().unwrap_or_default().to_string();
    doc["status"] = json!("ARCHIVED");
    doc["is_active"] = json!(false);
    doc["updated_at"] = json!(now());
    state.store.archive_connection(&id, &doc).await?;
    tracing::info!(connection.id = %id, "storage connection archived");
    Ok(json!({"message": "connection archived", "connection_id": id}))
}

/// Tests a connection's stored settings and credentials, and records the outcome on it
/// (`last_error`, `consecutive_failures`).
///
/// # Errors
///
/// 404 when the organization has none; a failed test is an answer, not an error.
pub async fn test(state: &AppState, caller: &Caller, ident: &str) -> Result<Value> {
    let mut doc = load(state, caller, ident).await?;
    let id = doc["connection_id"].as_str().unwrap_or_default().to_string();
    let provider = doc["provider_type"].as_str().unwrap_or_default().to_string();
    let credentials = open_credentials(state, &doc, &id)?;
    let settings = doc["provider_config"].as_object().cloned().unwrap_or_default();
    let Probe { success, message, details } =
        source::probe(&state.fetcher, &state.aws_identity, &provider, &settings, &credentials)
            .await;

    if success {
        doc["last_error"] = Value::Null;
        doc["consecutive_failures"] = json!(0);
    } else {
        let failures = doc["consecutive_failures"].as_i64().unwrap_or(0) + 1;
        doc["last_error"] = json!(message.chars().take(1000).collect::<String>());
        doc["consecutive_failures"] = json!(failures);
    }
    doc["updated_at"] = json!(now());
    if doc["status"] != "ARCHIVED" {
        let name = doc["name"].as_str().unwrap_or_default().to_string();
        state.store.update_doc(Table::Connections, &id, Some(&name), &doc).await?;
    }
    Ok(json!({"success": success, "message": message, "details": details}))
}

/// Seals the credentials of every connection again under a new master key; returns how many
/// connections were re-sealed. Credentials already sealed under the new key are left as they
/// are, so a rotation cut short can be run again.
///
/// # Errors
///
/// Fails when a connection's credentials open under neither key (nothing is changed then), or
/// on a store error.
pub async fn reseal_all(
    store: &crate::store::Store,
    old_master: &[u8; 32],
    new_master: &[u8; 32],
) -> std::result::Result<usize, String> {
    let old = &SecretBox::new(old_master, SECRET_PURPOSE);
    let new = &SecretBox::new(new_master, SECRET_PURPOSE);
    let rows = store.all_docs(Table::Connections).await.map_err(|e| e.to_string())?;
    let mut resealed = Vec::new();
    for (id, mut doc) in rows {
        let Some(sealed) = doc.get(SEALED).and_then(Value::as_str) else { continue };
        let sealed = crate::secrets::reseal(old, new, sealed, &id)
            .ok_or_else(|| format!("the credentials of connection {id} open under neither key"))?;
        doc[SEALED] = json!(sealed);
        resealed.push((id, doc));
    }
    for (id, doc) in &resealed {
        let name = doc["name"].as_str().filter(|_| doc["status"] != "ARCHIVED");
        store.update_doc(Table::Connections, id, name, doc).await.map_err(|e| e.to_string())?;
    }
    Ok(resealed.len())
}

/// A connection of the organization as a sync reads it: the record, its provider, its settings
/// and its opened credentials.
///
/// # Errors
///
/// 404 when the organization has no such connection, 422 when it is archived.
pub(crate) async fn for_sync(
    state: &AppState,
    caller: &Caller,
    ident: &str,
) -> Result<(Value, Map<String, Value>, Map<String, Value>)> {
    let doc = load(state, caller, ident).await?;
    if doc["status"] == "ARCHIVED" {
        return Err(Error::invalid("connection_id", "the connection is archived"));
    }
    let id = doc["connection_id"].as_str().unwrap_or_default().to_string();
    let credentials = open_credentials(state, &doc, &id)?;
    let settings = doc["provider_config"].as_object().cloned().unwrap_or_default();
    Ok((doc, settings, credentials))
}

/// The box connection credentials are sealed with under `master_key`.
pub fn secret_box(master_key: &[u8; 32]) -> SecretBox {
    SecretBox::new(master_key, SECRET_PURPOSE)
}

async fn load(state: &AppState, caller: &Caller, ident: &str) -> Result<Value> {
    let row = state.store.get(Table::Connections, caller.scope(), ident).await?;
    row.map(|r| r.doc).ok_or_else(|| Error::not_found("connection", ident))
}

/// The answer for a connection record: the credentials show only their type.
fn response(doc: &Value) -> Value {
    let mut out = doc.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove(SEALED);
    }
    out
}

/// Seals `credentials` into the record and shows their type in its `provider_config`.
fn seal(state: &AppState, doc: &mut Value, id: &str, credentials: &Map<String, Value>) {
    if credentials.is_empty() {
        if let Some(map) = doc.as_object_mut() {
            map.remove(SEALED);
        }
        return;
    }
    let plain = Value::Object(credentials.clone()).to_string();
    doc[SEALED] = json!(state.connection_secrets.seal(&plain, id));
    doc["provider_config"]["credentials"] = json!({"type": credentials.get("type")});
}

/// The stored credentials of a connection, opened; empty when it has none.
fn open_credentials(state: &AppState, doc: &Value, id: &str) -> Result<Map<String, Value>> {
    let Some(sealed) = doc.get(SEALED).and_then(Value::as_str) else { return Ok(Map::new()) };
    let plain = state.connection_secrets.open(sealed, id).ok_or_else(|| {
        Error::Internal(format!(
            "the credentials of connection {id} do not open under this server's master key"
        ))
    })?;
    Ok(serde_json::from_str(&plain).unwrap_or_default())
}

/// A stable `usr_` id for the API key that made a change: sluice has keys, not users.
fn user_id(caller: &Caller) -> String {
    let digest = Sha256::digest(caller.key_id.as_bytes());
    let tail: String = digest.iter().map(|b| format!("{b:02x}")).take(8).collect();
    format!("usr_{}", &tail[..15])
}

fn check_name(name: &str) -> Result<String> {
    let count = name.chars().count();
    if name.trim().is_empty() || count > 100 {
        return Err(Error::invalid("name", "expected 1 to 100 characters"));
    }
    Ok(name.to_string())
}

fn check_description(description: Option<String>) -> Result<Option<String>> {
    match description {
        Some(d) if d.chars().count() > 500 => {
            Err(Error::invalid("description", "expected at most 500 characters"))
        }
        Some(d) if d.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn check_known(provider: &str) -> Result<()> {
    if PROVIDERS.contains(&provider) {
        return Ok(());
    }
    Err(Error::invalid(
        "provider_type",
        format!("{provider:?} is not a provider; expected one of {}", PROVIDERS.join(", ")),
    ))
}

fn check_provider(provider: &str) -> Result<&'static str> {
    check_known(provider)?;
    SUPPORTED.iter().copied().find(|p| *p == provider).ok_or_else(|| Error::Unprocessable {
        code: "provider_not_supported",
        field: "provider_type".to_string(),
        message: format!(
            "sluice cannot sync from {provider} yet; supported providers: {}",
            SUPPORTED.join(", ")
        ),
    })
}

fn check_status(status: &str) -> Result<&'static str> {
    STATUSES
        .iter()
        .copied()
        .find(|s| *s == status)
        .ok_or_else(|| Error::invalid("status", format!("expected one of {}", STATUSES.join(", "))))
}

/// Checks a `provider_config` for `provider` and splits it into settings and credentials.
/// `stored` are the current credentials, on update: fields left out of credentials of the
/// same type are taken from them.
fn check_config(
    state: &AppState,
    provider: &str,
    mut config: Map<String, Value>,
    stored: Option<&Map<String, Value>>,
) -> Result<Checked> {
    let field = |name: &str| format!("provider_config.{name}");
    let rules = rules(provider);
    match config.get("provider_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if p == provider => {}
        Some(_) => {
            return Err(Error::invalid(
                field("provider_type"),
                format!("expected {provider:?}, the connection's provider"),
            ));
        }
    }
    let given = config.remove("credentials").filter(|c| !c.is_null());
    let mut settings = (rules.defaults)();
    for (key, value) in config {
        if !value.is_null() {
            settings.insert(key, value);
        }
    }
    settings.insert("provider_type".into(), json!(provider));
    for required in rules.required {
        if settings.get(*required).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(Error::invalid(field(required), "required"));
        }
    }
    check_settings(state, provider, &settings)?;

    let credentials = match given {
        Some(Value::Object(given)) => Some(check_credentials(&rules, given, stored)?),
        Some(_) => return Err(Error::invalid(field("credentials"), "expected an object")),
        None if stored.is_some_and(|s| !s.is_empty()) => None,
        None if rules.credentials_required => {
            return Err(Error::invalid(field("credentials"), "required"));
        }
        None => Some(Map::new()),
    };
    Ok(Checked { settings, credentials })
}

fn check_settings(state: &AppState, provider: &str, settings: &Map<String, Value>) -> Result<()> {
    let field = |name: &str| format!("provider_config.{name}");
    if let Some(endpoint) = settings.get("endpoint_url").filter(|e| !e.is_null()) {
        let endpoint = endpoint
            .as_str()
            .ok_or_else(|| Error::invalid(field("endpoint_url"), "expected a URL"))?;
        state.fetcher.policy().check_url(endpoint).map_err(|e| match e {
            FetchError::Forbidden(message) => Error::invalid(
                field("endpoint_url"),
                format!(
                    "{message}; the operator can allow its network with \
                     SLUICE_ALLOW_PRIVATE_NETWORKS"
                ),
            ),
            other => Error::invalid(field("endpoint_url"), other.to_string()),
        })?;
    }
    if settings.get("verify_ssl") == Some(&Value::Bool(false)) {
        return Err(Error::invalid(
            field("verify_ssl"),
            "sluice always verifies TLS certificates; give the store a certificate a public \
             authority signed, or use http on a network the operator allows",
        ));
    }
    if provider == "backblaze"
        && settings.get("endpoint_url").is_none()
        && settings.get("region").and_then(Value::as_str).is_none()
    {
        return Err(Error::invalid(
            field("endpoint_url"),
            "required: the bucket's S3 endpoint (https://s3.REGION.backblazeb2.com), or region",
        ));
    }
    type Check = fn(&Value) -> bool;
    let checks: [(&str, Check, &str); 3] = [
        (
            "request_timeout",
            |v| v.as_i64().is_some_and(|t| (5..=120).contains(&t)),
            "expected 5 to 120 seconds",
        ),
        ("http_method", |v| matches!(v.as_str(), Some("GET" | "POST")), "expected GET or POST"),
        (
            "response_content_type",
            |v| matches!(v.as_str(), Some("json" | "jsonl")),
            "expected json or jsonl",
        ),
    ];
    for (key, valid, message) in checks {
        if let Some(value) = settings.get(key)
            && !valid(value)
        {
            return Err(Error::invalid(field(key), message));
        }
    }
    Ok(())
}

fn check_credentials(
    rules: &Rules,
    mut given: Map<String, Value>,
    stored: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>> {
    let field = |name: &str| format!("provider_config.credentials.{name}");
    let names: Vec<&str> = rules.credentials.iter().map(|c| c.name).collect();
    let kind = match given.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        None if names.len() == 1 => names[0].to_string(),
        _ => {
            return Err(Error::invalid(
                field("type"),
                format!("expected one of {}", names.join(", ")),
            ));
        }
    };
    let Some(rule) = rules.credentials.iter().find(|c| c.name == kind) else {
        return Err(Error::invalid(
            field("type"),
            format!("{kind:?} is not a credential type here; expected one of {}", names.join(", ")),
        ));
    };
    given.insert("type".into(), json!(kind));
    if let Some(stored) = stored.filter(|s| s.get("type") == Some(&json!(kind))) {
        for (key, value) in stored {
            given.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    for (key, value) in &given {
        let known = key == "type"
            || rule.required.contains(&key.as_str())
            || rule.optional.contains(&key.as_str());
        if !known {
            return Err(Error::invalid(field(key), format!("not a field of {kind} credentials")));
        }
        let valid = match (key.as_str(), value) {
            ("headers", Value::Object(headers)) => headers.values().all(Value::is_string),
            ("service_account_json", Value::Object(_) | Value::String(_)) => true,
            (_, Value::String(_) | Value::Null) => true,
            _ => false,
        };
        if !valid {
            return Err(Error::invalid(
                field(key),
                "expected a string (headers: an object of strings)",
            ));
        }
    }
    for required in rule.required {
        let present = match given.get(*required) {
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Object(_)) => true,
            _ => false,
        };
        if !present {
            return Err(Error::invalid(field(required), "required"));
        }
    }
    if kind == "iam_role" {
        let arn = given["role_arn"].as_str().unwrap_or_default();
        if !arn.starts_with("arn:") || !arn.contains(":role/") {
            return Err(Error::invalid(
                field("role_arn"),
                "expected a role ARN: arn:aws:iam::ACCOUNT:role/NAME",
            ));
        }
        let external = given["external_id"].as_str().unwrap_or_default().chars().count();
        if !(8..=128).contains(&external) {
            return Err(Error::invalid(field("external_id"), "expected 8 to 128 characters"));
        }
    }
    given.retain(|_, v| !v.is_null());
    Ok(given)
}

fn duplicate_name(e: StoreError, name: &str) -> Error {
    match e {
        StoreError::Duplicate => Error::conflict(
            "connection_name_taken",
            format!("the organization already has a connection named {name:?}"),
        ),
        other => other.into(),
    }
}
