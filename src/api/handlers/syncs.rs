//! `/v1/buckets/{bucket}/syncs`: syncs from storage connections, their runs and metrics.

use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::NamespacedCaller;
use crate::api::extract::{JsonBody, PathParams, QueryParams};
use crate::api::pagination::PageParams;
use crate::error::Result;
use crate::service::syncs::{self, DeadLetterSelection, ListDeadLetters, ListRuns, ListSyncs};

#[derive(Deserialize)]
pub struct TriggerQuery {
    full_sync: Option<bool>,
}

pub async fn create(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    syncs::create(&state, &caller, &bucket, body).await.map(Json)
}

pub async fn list(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    QueryParams(query): QueryParams<PageParams>,
    JsonBody(req): JsonBody<ListSyncs>,
) -> Result<Json<Value>> {
    syncs::list(&state, &caller, &bucket, req, &query).await.map(Json)
}

pub async fn get(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    syncs::get(&state, &caller, &bucket, &sync).await.map(Json)
}

pub async fn update(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    syncs::update(&state, &caller, &bucket, &sync, body).await.map(Json)
}

pub async fn delete(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    syncs::delete(&state, &caller, &bucket, &sync).await.map(Json)
}

pub async fn trigger(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<TriggerQuery>,
) -> Result<Json<Value>> {
    let full = query.full_sync.unwrap_or(false);
    syncs::trigger(&state, &caller, &bucket, &sync, full).await.map(Json)
}

pub async fn pause(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    syncs::pause(&state, &caller, &bucket, &sync).await.map(Json)
}

pub async fn resume(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    syncs::resume(&state, &caller, &bucket, &sync).await.map(Json)
}

pub async fn unlock(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    syncs::unlock(&state, &caller, &bucket, &sync).await.map(Json)
}

pub async fn runs(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<PageParams>,
    JsonBody(req): JsonBody<ListRuns>,
) -> Result<Json<Value>> {
    syncs::runs(&state, &caller, &bucket, &sync, req, &query).await.map(Json)
}

pub async fn run(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync, run)): PathParams<(String, String, String)>,
) -> Result<Json<Value>> {
    syncs::run_record(&state, &caller, &bucket, &sync, &run).await.map(Json)
}

pub async fn dead_letters(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
    JsonBody(req): JsonBody<ListDeadLetters>,
) -> Result<Json<Value>> {
    syncs::dead_letters(&state, &caller, &bucket, &sync, req).await.map(Json)
}

pub async fn requeue(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
    JsonBody(req): JsonBody<DeadLetterSelection>,
) -> Result<Json<Value>> {
    syncs::requeue(&state, &caller, &bucket, &sync, req).await.map(Json)
}

pub async fn mark_failed(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
    JsonBody(req): JsonBody<DeadLetterSelection>,
) -> Result<Json<Value>> {
    syncs::mark_failed(&state, &caller, &bucket, &sync, req).await.map(Json)
}

pub async fn metrics(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, sync)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    syncs::metrics(&state, &caller, &bucket, &sync).await.map(Json)
}
