//! `/v1/events`: the change feed.

use axum::Json;
use serde_json::Value;

use super::AppStateRef;
use crate::api::auth::FilteringCaller;
use crate::api::extract::QueryParams;
use crate::error::Result;
use crate::service::events::{self, FeedQuery};

pub async fn list(
    state: AppStateRef,
    caller: FilteringCaller,
    QueryParams(query): QueryParams<FeedQuery>,
) -> Result<Json<Value>> {
    let namespace = caller.namespace_id.as_deref();
    events::feed(&state, &caller.caller, namespace, query).await.map(Json)
}
