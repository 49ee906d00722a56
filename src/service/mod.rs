//! The service layer: plain async functions over the store, the blob layer and the task
//! runner. Validation, state changes and id generation happen here; HTTP does not.

pub mod batches;
pub mod buckets;
pub mod cache;
pub mod collections;
pub mod connections;
pub mod events;
pub mod keys;
pub mod mirror;
pub mod namespaces;
pub mod objects;
pub mod processing;
pub mod sync_mapping;
pub mod syncs;
pub mod tasks;
pub mod uploads;
pub mod webhooks;
pub mod writer;

use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::pagination::encode_cursor;
use crate::error::{Error, Result};
use crate::model::filter::{Filter, Sort};
use crate::store::filter_sql::{Cursor, sort_key};
use crate::store::{ListSpec, Page, Scope, Table};
use cache::TtlCache;

/// How a namespace or bucket is found by name or id: through a short-lived cache keyed by its
/// parent, and only while no deletion has started.
pub(crate) struct Lookup<'a> {
    pub table: Table,
    pub resource: &'static str,
    pub cache: &'a TtlCache<(String, String), Arc<Value>>,
}

impl Lookup<'_> {
    /// The live record named `ident` under `parent` within `scope`.
    ///
    /// # Errors
    ///
    /// 404 when there is none, or when it is being deleted.
    pub async fn live(
        &self,
        state: &AppState,
        scope: Scope<'_>,
        parent: &str,
        ident: &str,
    ) -> Result<Arc<Value>> {
        let key = (parent.to_string(), ident.to_string());
        if let Some(doc) = self.cache.get(&key) {
            return Ok(doc);
        }
        let row = state.store.get(self.table, scope, ident).await?;
        let doc = row
            .map(|r| Arc::new(r.doc))
            .filter(|doc| doc.get("deleting").is_none())
            .ok_or_else(|| Error::not_found(self.resource, ident))?;
        self.cache.insert(key, doc.clone());
        Ok(doc)
    }
}

/// Builds a list query's filter from the caller's `filters`, an optional name search
/// `(field, text, case_sensitive)` and an optional condition the service always adds, and
/// parses the caller's `sort`.
///
/// # Errors
///
/// 422 naming the part of `filters` or `sort` that is invalid.
pub fn list_filter(
    filters: Option<&Value>,
    search: Option<(&str, &str, Option<bool>)>,
    always: Option<Value>,
    sort: Option<&Value>,
) -> Result<(Option<Filter>, Option<Sort>)> {
    let mut parts = Vec::new();
    if let Some(filters) = filters {
        parts.extend(Filter::parse(filters, "filters")?);
    }
    if let Some((field, text, case_sensitive)) = search.filter(|(_, t, _)| !t.is_empty()) {
        let condition = json!({"AND": [{"field": field, "operator": "contains", "value": text,
                                        "case_sensitive": case_sensitive.unwrap_or(false)}]});
        parts.extend(Filter::parse(&condition, "search")?);
    }
    if let Some(always) = always {
        parts.extend(Filter::parse(&json!({"AND": [always]}), "filters")?);
    }
    let filter = match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Filter::And(parts)),
    };
    let sort = match sort {
        Some(sort) => Sort::parse(sort, "sort")?,
        None => None,
    };
    Ok((filter, sort))
}

/// A URL that reads the stored blob under `key` for `ttl`: the store's own presigned URL where
/// it has one, else (and always when the operator asks for it) a URL sluice signs and serves.
///
/// # Errors
///
/// Fails when the store cannot presign.
pub(crate) async fn download_url(
    state: &AppState,
    key: &str,
    content_type: Option<&str>,
    ttl: std::time::Duration,
) -> Result<String> {
    if !state.sluice_signs_urls {
        let native = state.blobs.presign_get(key, ttl).await;
        if let Some(url) = native.map_err(|e| Error::Internal(format!("presigning failed: {e}")))? {
            return Ok(url);
        }
    }
    Ok(state.signer.get_url(key, content_type, ttl))
}

/// The cursor that continues after the last row of `page`, when more rows follow.
pub fn next_cursor(spec: &ListSpec, page: &Page) -> Option<String> {
    let last = page.rows.last().filter(|_| page.has_more)?;
    let value = sort_key(spec.sort.as_ref(), &last.doc);
    Some(encode_cursor(&Cursor { seq: last.seq, value }))
}

/// Deserializes a field that distinguishes "absent" (`None`) from an explicit `null`
/// (`Some(None)`); use with `#[serde(default)]`.
pub fn present<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
