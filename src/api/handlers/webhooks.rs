//! `/v1/organizations/webhooks`, and the delivery log of each webhook.

use axum::Json;
use axum::http::StatusCode;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::Caller;
use crate::api::extract::{JsonBody, PathParams, QueryParams};
use crate::api::pagination::PageParams;
use crate::error::Result;
use crate::service::webhooks::{self, ListWebhooks};

pub async fn create(
    state: AppStateRef,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    webhooks::create(&state, &caller, body).await.map(Json)
}

pub async fn list(
    state: AppStateRef,
    caller: Caller,
    QueryParams(query): QueryParams<PageParams>,
    JsonBody(req): JsonBody<ListWebhooks>,
) -> Result<Json<Value>> {
    webhooks::list(&state, &caller, req, &query).await.map(Json)
}

pub async fn get(
    state: AppStateRef,
    caller: Caller,
    PathParams(ident): PathParams<String>,
) -> Result<Json<Value>> {
    webhooks::get(&state, &caller, &ident).await.map(Json)
}

pub async fn update(
    state: AppStateRef,
    caller: Caller,
    PathParams(ident): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    webhooks::update(&state, &caller, &ident, body).await.map(Json)
}

pub async fn delete(
    state: AppStateRef,
    caller: Caller,
    PathParams(ident): PathParams<String>,
) -> Result<StatusCode> {
    webhooks::delete(&state, &caller, &ident).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn deliveries(
    state: AppStateRef,
    caller: Caller,
    PathParams(ident): PathParams<String>,
    QueryParams(query): QueryParams<PageParams>,
) -> Result<Json<Value>> {
    webhooks::deliveries(&state, &caller, &ident, &query).await.map(Json)
}

pub async fn redeliver(
    state: AppStateRef,
    caller: Caller,
    PathParams((ident, delivery)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    webhooks::redeliver(&state, &caller, &ident, &delivery).await.map(Json)
}
