//! `/v1/buckets`.

use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::NamespacedCaller;
use crate::api::extract::{JsonBody, PathParams, QueryParams};
use crate::api::pagination::PageParams;
use crate::error::Result;
use crate::service::buckets::{self, BucketInput, ListBuckets, UpdateKind};

#[derive(Deserialize)]
pub struct UpdateQuery {
    force_schema_break: Option<bool>,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    search: Option<String>,
}

pub async fn create(
    state: AppStateRef,
    caller: NamespacedCaller,
    JsonBody(req): JsonBody<BucketInput>,
) -> Result<Json<Value>> {
    buckets::create(&state, &caller, req).await.map(Json)
}

pub async fn list(
    state: AppStateRef,
    caller: NamespacedCaller,
    QueryParams(page): QueryParams<PageParams>,
    QueryParams(query): QueryParams<SearchQuery>,
    JsonBody(mut req): JsonBody<ListBuckets>,
) -> Result<Json<Value>> {
    req.search = req.search.or(query.search);
    buckets::list(&state, &caller, req, &page).await.map(Json)
}

pub async fn list_get(
    state: AppStateRef,
    caller: NamespacedCaller,
    QueryParams(page): QueryParams<PageParams>,
    QueryParams(query): QueryParams<SearchQuery>,
) -> Result<Json<Value>> {
    let req = ListBuckets { search: query.search, ..ListBuckets::default() };
    buckets::list(&state, &caller, req, &page).await.map(Json)
}

pub async fn get(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    buckets::get(&state, &caller, &id).await.map(Json)
}

pub async fn update(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<UpdateQuery>,
    JsonBody(req): JsonBody<BucketInput>,
) -> Result<Json<Value>> {
    let force = query.force_schema_break.unwrap_or(false);
    buckets::update(&state, &caller, &id, req, UpdateKind::Put, force).await.map(Json)
}

pub async fn patch(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<UpdateQuery>,
    JsonBody(req): JsonBody<BucketInput>,
) -> Result<Json<Value>> {
    let force = query.force_schema_break.unwrap_or(false);
    buckets::update(&state, &caller, &id, req, UpdateKind::Patch, force).await.map(Json)
}

pub async fn delete(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    buckets::delete(&state, &caller, &id).await.map(Json)
}
