//! `/v1/organizations/connections`: storage connections.

use axum::Json;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::Caller;
use crate::api::extract::{JsonBody, PathParams, QueryParams};
use crate::api::pagination::PageParams;
use crate::error::Result;
use crate::service::connections::{self, ListConnections};

pub async fn create(
    state: AppStateRef,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    connections::create(&state, &caller, body).await.map(Json)
}

pub async fn list(
    state: AppStateRef,
    caller: Caller,
    QueryParams(query): QueryParams<PageParams>,
    JsonBody(req): JsonBody<ListConnections>,
) -> Result<Json<Value>> {
    connections::list(&state, &caller, req, &query).await.map(Json)
}

pub async fn get(
    state: AppStateRef,
    caller: Caller,
    PathParams(ident): PathParams<String>,
) -> Result<Json<Value>> {
    connections::get(&state, &caller, &ident).await.map(Json)
}

pub async fn update(
    state: AppStateRef,
    caller: Caller,
    PathParams(ident): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    connections::update(&state, &caller, &ident, body).await.map(Json)
}

pub async fn delete(
    state: AppStateRef,
    caller: Caller,
    PathParams(ident): PathParams<String>,
) -> Result<Json<Value>> {
    connections::delete(&state, &caller, &ident).await.map(Json)
}

pub async fn test(
    state: AppStateRef,
    caller: Caller,
    PathParams(ident): PathParams<String>,
) -> Result<Json<Value>> {
    connections::test(&state, &caller, &ident).await.map(Json)
}
