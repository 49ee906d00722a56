//! `/v1/tasks`.

use axum::Json;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::Caller;
use crate::api::extract::{JsonBody, PathParams, QueryParams};
use crate::api::pagination::PageParams;
use crate::error::Result;
use crate::service::tasks::{self, ListTasks};

pub async fn get(
    state: AppStateRef,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    tasks::get(&state, &caller, &id).await.map(Json)
}

pub async fn list(
    state: AppStateRef,
    caller: Caller,
    QueryParams(query): QueryParams<PageParams>,
    JsonBody(req): JsonBody<ListTasks>,
) -> Result<Json<Value>> {
    tasks::list(&state, &caller, req, &query).await.map(Json)
}

pub async fn kill(
    state: AppStateRef,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    tasks::kill(&state, &caller, &id).await.map(Json)
}
