//! `/v1/collections`: the collections processing writes into, and their documents.

use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::NamespacedCaller;
use crate::api::extract::{JsonBody, PathParams, QueryParams};
use crate::api::pagination::PageParams;
use crate::error::Result;
use crate::service::collections::{self, DocumentQuery, ListCollections, ListDocuments};

#[derive(Deserialize)]
pub struct DocumentsQuery {
    #[serde(flatten)]
    page: PageParams,
    return_presigned_urls: Option<bool>,
    return_vectors: Option<bool>,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(flatten)]
    page: PageParams,
    search: Option<String>,
}

pub async fn list(
    state: AppStateRef,
    caller: NamespacedCaller,
    QueryParams(page): QueryParams<PageParams>,
    JsonBody(req): JsonBody<ListCollections>,
) -> Result<Json<Value>> {
    collections::list(&state, &caller, &page, req).await.map(Json)
}

pub async fn list_get(
    state: AppStateRef,
    caller: NamespacedCaller,
    QueryParams(query): QueryParams<SearchQuery>,
) -> Result<Json<Value>> {
    let req = ListCollections { search: query.search, ..ListCollections::default() };
    collections::list(&state, &caller, &query.page, req).await.map(Json)
}

pub async fn get(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(collection): PathParams<String>,
) -> Result<Json<Value>> {
    collections::get(&state, &caller, &collection).await.map(Json)
}

pub async fn list_documents(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(collection): PathParams<String>,
    QueryParams(query): QueryParams<DocumentsQuery>,
    JsonBody(req): JsonBody<ListDocuments>,
) -> Result<Json<Value>> {
    let options = DocumentQuery {
        return_presigned_urls: query.return_presigned_urls,
        return_vectors: query.return_vectors,
    };
    collections::list_documents(&state, &caller, &collection, &query.page, &options, req)
        .await
        .map(Json)
}

pub async fn get_document(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams((collection, document)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<DocumentQuery>,
) -> Result<Json<Value>> {
    collections::get_document(&state, &caller, &collection, &document, &query).await.map(Json)
}

pub async fn count_documents(
    state: AppStateRef,
    caller: NamespacedCaller,
    PathParams(collection): PathParams<String>,
) -> Result<Json<Value>> {
    collections::count_documents(&state, &caller, &collection).await.map(Json)
}

pub async fn extractors() -> Json<Value> {
    Json(collections::extractors())
}

pub async fn extractor(PathParams(id): PathParams<String>) -> Result<Json<Value>> {
    collections::extractor(&id).map(Json)
}
