//! `/v1/buckets/{bucket}/objects`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AppStateRef;
use crate::api::auth::NamespacedCaller;
use crate::api::extract::{JsonBody, PathParams, QueryParams, from_value};
use crate::api::pagination::PageParams;
use crate::error::{Error, Result};
use crate::service::objects::{self, BulkSoftDelete, ListObjects};

#[derive(Deserialize)]
pub struct CreateQuery {
    policy: Option<String>,
    auto_process: Option<bool>,
}

#[derive(Deserialize)]
pub struct GetQuery {
    return_presigned_urls: Option<bool>,
}

#[derive(Deserialize)]
pub struct BatchBody {
    objects: Vec<Value>,
}

fn refuse_auto_process(auto_process: Option<bool>) -> Result<()> {
    if auto_process == Some(true) {
        return Err(Error::bad_request(
            "processing_unavailable",
            "auto_process needs batch processing, which this server does not offer yet",
        ));
    }
    Ok(())
}

pub async fn create(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    QueryParams(query): QueryParams<CreateQuery>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>> {
    refuse_auto_process(query.auto_process)?;
    objects::create(&state, &caller, &bucket, body, query.policy.as_deref()).await.map(Json)
}

pub async fn create_batch(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    QueryParams(query): QueryParams<CreateQuery>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response> {
    refuse_auto_process(query.auto_process)?;
    let body: BatchBody = from_value(body, "")?;
    let (all_failed, answer) =
        objects::create_batch(&state, &caller, &bucket, body.objects).await?;
    let status = if all_failed { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok((status, Json(answer)).into_response())
}

pub async fn list(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    QueryParams(query): QueryParams<PageParams>,
    QueryParams(presign): QueryParams<GetQuery>,
    JsonBody(mut req): JsonBody<ListObjects>,
) -> Result<Json<Value>> {
    req.return_presigned_urls = presign.return_presigned_urls.or(req.return_presigned_urls);
    objects::list(&state, &caller, &bucket, req, &query).await.map(Json)
}

pub async fn list_get(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    QueryParams(query): QueryParams<PageParams>,
    QueryParams(presign): QueryParams<GetQuery>,
) -> Result<Json<Value>> {
    let req =
        ListObjects { return_presigned_urls: presign.return_presigned_urls, ..Default::default() };
    objects::list(&state, &caller, &bucket, req, &query).await.map(Json)
}

pub async fn get(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<GetQuery>,
) -> Result<Json<Value>> {
    let presign = query.return_presigned_urls.unwrap_or(false);
    objects::get(&state, &caller, &bucket, &id, presign).await.map(Json)
}

pub async fn update(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>> {
    objects::update(&state, &caller, &bucket, &id, body).await.map(Json)
}

pub async fn patch(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>> {
    objects::patch(&state, &caller, &bucket, &id, body).await.map(Json)
}

pub async fn delete(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((bucket, id)): PathParams<(String, String)>,
) -> Result<StatusCode> {
    objects::delete(&state, &caller, &bucket, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn bulk_soft_delete(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(bucket): PathParams<String>,
    JsonBody(req): JsonBody<BulkSoftDelete>,
) -> Result<Json<Value>> {
    objects::bulk_soft_delete(&state, &caller, &bucket, req).await.map(Json)
}
