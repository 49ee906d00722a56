//! `/v1/buckets/{bucket}/batches` and `/v1/batches`: batches and their processing.

use axum::Json;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::{Caller, NamespacedCaller};
use crate::api::extract::{JsonBody, PathParams, QueryParams};
use crate::error::Result;
use crate::service::batches::{
    self, CreateBatch, CreateBatchQuery, ListBatches, PatchBatch, SubmitBatch,
};

#[derive(Deserialize)]
pub struct SkipValidation {
    skip_validation: Option<bool>,
}

#[derive(Deserialize)]
pub struct CancelQuery {
    reason: Option<String>,
}

#[derive(Deserialize)]
pub struct AddObjects {
    object_ids: Vec<String>,
}

pub async fn create(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    QueryParams(query): QueryParams<CreateBatchQuery>,
    JsonBody(req): JsonBody<CreateBatch>,
) -> Result<Json<Value>> {
    batches::create(&state, &caller, &bucket, query, req).await.map(Json)
}

pub async fn list(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    JsonBody(req): JsonBody<ListBatches>,
) -> Result<Json<Value>> {
    let bucket = crate::service::buckets::resolve_shared(&state, &caller, &bucket).await?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default();
    let namespace = Some(caller.namespace_id.as_str());
    batches::list(&state, &caller.caller, namespace, Some(bucket_id), req).await.map(Json)
}

pub async fn list_all(
    state: AppStateRef,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ListBatches>,
) -> Result<Json<Value>> {
    let header = headers.get("x-namespace").and_then(|v| v.to_str().ok());
    let namespace =
        batches::list_namespace(&state, &caller, header, req.namespace_id.as_deref()).await?;
    batches::list(&state, &caller, namespace.as_deref(), None, req).await.map(Json)
}

pub async fn get(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    batches::get(&state, &caller, &bucket, &id).await.map(Json)
}

pub async fn get_by_id(
    state: AppStateRef,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    batches::get_by_id(&state, &caller, &id).await.map(Json)
}

pub async fn patch(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    JsonBody(req): JsonBody<PatchBatch>,
) -> Result<Json<Value>> {
    batches::patch(&state, &caller, &bucket, &id, req).await.map(Json)
}

pub async fn delete(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    batches::delete(&state, &caller, &bucket, &id).await.map(Json)
}

pub async fn add_objects(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<SkipValidation>,
    JsonBody(req): JsonBody<AddObjects>,
) -> Result<Json<Value>> {
    let skip = query.skip_validation.unwrap_or(false);
    batches::add_objects(&state, &caller, &bucket, &id, &req.object_ids, skip).await.map(Json)
}

pub async fn submit(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    JsonBody(req): JsonBody<SubmitBatch>,
) -> Result<Json<Value>> {
    batches::submit(&state, &caller, &bucket, &id, req).await.map(Json)
}

pub async fn cancel(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<CancelQuery>,
) -> Result<Json<Value>> {
    let reason = query.reason.as_deref();
    batches::cancel(&state, &caller.caller, Some(&caller), Some(&bucket), &id, reason)
        .await
        .map(Json)
}

pub async fn cancel_by_id(
    state: AppStateRef,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<CancelQuery>,
) -> Result<Json<Value>> {
    batches::cancel(&state, &caller, None, None, &id, query.reason.as_deref()).await.map(Json)
}

pub async fn retry(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    batches::retry(&state, &caller, &bucket, &id).await.map(Json)
}
