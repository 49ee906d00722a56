//! `/v1/namespaces`.

use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::Caller;
use crate::api::extract::{JsonBody, PathParams, QueryParams};
use crate::api::pagination::PageParams;
use crate::error::Result;
use crate::service::namespaces::{self, CreateNamespace, ListNamespaces, UpdateNamespace};

#[derive(Deserialize)]
pub struct DeleteQuery {
    force: Option<bool>,
}

pub async fn create(
    state: AppStateRef,
    caller: Caller,
    JsonBody(req): JsonBody<CreateNamespace>,
) -> Result<Json<Value>> {
    namespaces::create(&state, &caller, req).await.map(Json)
}

pub async fn list(
    state: AppStateRef,
    caller: Caller,
    QueryParams(page): QueryParams<PageParams>,
    JsonBody(req): JsonBody<ListNamespaces>,
) -> Result<Json<Value>> {
    namespaces::list(&state, &caller, req, &page).await.map(Json)
}

pub async fn list_get(
    state: AppStateRef,
    caller: Caller,
    QueryParams(page): QueryParams<PageParams>,
) -> Result<Json<Value>> {
    namespaces::list(&state, &caller, ListNamespaces::default(), &page).await.map(Json)
}

pub async fn get(
    state: AppStateRef,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    namespaces::get(&state, &caller, &id).await.map(Json)
}

pub async fn update(
    state: AppStateRef,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<UpdateNamespace>,
) -> Result<Json<Value>> {
    namespaces::update(&state, &caller, &id, req).await.map(Json)
}

pub async fn patch(
    state: AppStateRef,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<UpdateNamespace>,
) -> Result<Json<Value>> {
    namespaces::patch(&state, &caller, &id, req).await.map(Json)
}

pub async fn delete(
    state: AppStateRef,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<DeleteQuery>,
) -> Result<Json<Value>> {
    namespaces::delete(&state, &caller, &id, query.force.unwrap_or(false)).await.map(Json)
}

pub async fn stats(
    state: AppStateRef,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    namespaces::stats(&state, &caller, &id).await.map(Json)
}
