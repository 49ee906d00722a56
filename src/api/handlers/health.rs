//! Health, readiness, `/v1/me` and the OpenAPI document.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppStateRef;
use crate::api::auth::Caller;
use crate::error::{Error, Result};

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "service": "sluice", "version": env!("CARGO_PKG_VERSION")}))
}

pub async fn liveness() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

/// Ready when the metadata store answers.
pub async fn readiness(state: AppStateRef) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready", "checks": {"store": "ok"}})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let body = json!({
                "success": false,
                "status": 503,
                "error": {"message": "metadata store is not reachable", "type": "ServiceUnavailableError",
                          "code": "store_unavailable"},
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

pub async fn me(caller: Caller) -> Json<Value> {
    Json(json!({
        "organization_id": caller.org_id,
        "organization_name": caller.org_name,
        "account_type": "SELF_HOSTED",
        "user_email": null,
        "key": {"name": caller.key_name, "key_type": "api_key", "permissions": ["admin"],
                "expires_at": null},
        "rate_limits": null,
        "principal_scoped": false,
    }))
}

/// The OpenAPI document, parsed from the `openapi.yaml` compiled into the binary.
pub async fn openapi() -> Result<Json<Value>> {
    crate::api::openapi_document().map(Json).map_err(Error::Internal)
}
