//! `/v1/buckets/{bucket}/uploads`: presigned uploads.

use axum::Json;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::NamespacedCaller;
use crate::api::extract::{JsonBody, PathParams, QueryParams};
use crate::api::pagination::PageParams;
use crate::error::Result;
use crate::service::uploads::{self, Confirm, CreateUpload, CreateUploads, ListUploads};

#[derive(Deserialize)]
pub struct ConfirmQuery {
    #[serde(rename = "async")]
    run_async: Option<bool>,
    policy: Option<String>,
}

#[derive(Deserialize)]
pub struct GetQuery {
    return_presigned_urls: Option<bool>,
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    delete_s3_object: Option<bool>,
}

#[derive(Deserialize)]
pub struct ConfirmBatch {
    confirmations: Vec<Confirm>,
}

pub async fn create(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    JsonBody(req): JsonBody<CreateUpload>,
) -> Result<Json<Value>> {
    uploads::create(&state, &caller, &bucket, req).await.map(Json)
}

pub async fn create_batch(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    JsonBody(req): JsonBody<CreateUploads>,
) -> Result<Json<Value>> {
    uploads::create_batch(&state, &caller, &bucket, req).await.map(Json)
}

pub async fn confirm(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<ConfirmQuery>,
    JsonBody(req): JsonBody<Confirm>,
) -> Result<Json<Value>> {
    let run_async = query.run_async.unwrap_or(false);
    let policy = query.policy.as_deref();
    uploads::confirm(&state, &caller, &bucket, &id, req, policy, run_async).await.map(Json)
}

pub async fn confirm_batch(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    QueryParams(query): QueryParams<ConfirmQuery>,
    JsonBody(req): JsonBody<ConfirmBatch>,
) -> Result<Json<Value>> {
    let policy = query.policy.as_deref();
    uploads::confirm_batch(&state, &caller, &bucket, req.confirmations, policy).await.map(Json)
}

pub async fn get(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<GetQuery>,
) -> Result<Json<Value>> {
    let presign = query.return_presigned_urls.unwrap_or(false);
    uploads::get(&state, &caller, &bucket, &id, presign).await.map(Json)
}

pub async fn list(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    QueryParams(query): QueryParams<PageParams>,
    JsonBody(mut req): JsonBody<ListUploads>,
) -> Result<Json<Value>> {
    req.limit = req.limit.or(query.limit).or(query.page_size);
    req.offset = req.offset.or(query.offset);
    uploads::list(&state, &caller, &bucket, req).await.map(Json)
}

pub async fn delete(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<DeleteQuery>,
) -> Result<StatusCode> {
    let delete_bytes = query.delete_s3_object.unwrap_or(true);
    uploads::delete(&state, &caller, &bucket, &id, delete_bytes).await?;
    Ok(StatusCode::NO_CONTENT)
}
