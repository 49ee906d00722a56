//! The HTTP layer: routes, extractors, the error envelope and pagination envelopes.
//!
//! Handlers are thin: they take the resolved caller and the parsed request, call one service
//! function and wrap its answer. Every route sits under `/v1` except `/openapi.json`.

pub mod auth;
pub mod error;
pub mod extract;
mod handlers;
pub mod pagination;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tracing::Instrument;

use crate::AppState;
use crate::error::Error;
use handlers::{
    batches, buckets, collections, connections, events, files, health, namespaces, objects, syncs,
    tasks, uploads, webhooks,
};

/// Builds the router of the whole API.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = health_routes()
        .route("/me", get(health::me))
        .route("/namespaces", post(namespaces::create).get(namespaces::list_get))
        .route("/namespaces/list", post(namespaces::list))
        .route(
            "/namespaces/{namespace}",
            get(namespaces::get)
                .put(namespaces::update)
                .patch(namespaces::patch)
                .delete(namespaces::delete),
        )
        .route("/namespaces/{namespace}/stats", get(namespaces::stats))
        .route("/buckets", post(buckets::create).get(buckets::list_get))
        .route("/buckets/list", post(buckets::list))
        .route(
            "/buckets/{bucket}",
            get(buckets::get).put(buckets::update).patch(buckets::patch).delete(buckets::delete),
        )
        .route("/buckets/{bucket}/objects", post(objects::create).get(objects::list_get))
        .route("/buckets/{bucket}/objects/batch", post(objects::create_batch))
        .route("/buckets/{bucket}/objects/list", post(objects::list))
        .route("/buckets/{bucket}/objects/bulk-soft-delete", post(objects::bulk_soft_delete))
        .route(
            "/buckets/{bucket}/objects/{object}",
            get(objects::get).put(objects::update).patch(objects::patch).delete(objects::delete),
        )
        .route("/buckets/{bucket}/uploads", post(uploads::create))
        .route("/buckets/{bucket}/uploads/batch", post(uploads::create_batch))
        .route("/buckets/{bucket}/uploads/list", post(uploads::list))
        .route("/buckets/{bucket}/uploads/confirm/batch", post(uploads::confirm_batch))
        .route("/buckets/{bucket}/uploads/{upload}", get(uploads::get).delete(uploads::delete))
        .route("/buckets/{bucket}/uploads/{upload}/confirm", post(uploads::confirm))
        .route("/buckets/{bucket}/batches", post(batches::create))
        .route("/buckets/{bucket}/batches/list", post(batches::list))
        .route(
            "/buckets/{bucket}/batches/{batch}",
            get(batches::get).patch(batches::patch).delete(batches::delete),
        )
        .route("/buckets/{bucket}/batches/{batch}/objects", post(batches::add_objects))
        .route("/buckets/{bucket}/batches/{batch}/submit", post(batches::submit))
        .route("/buckets/{bucket}/batches/{batch}/cancel", post(batches::cancel))
        .route("/buckets/{bucket}/batches/{batch}/retry", post(batches::retry))
        .route("/buckets/{bucket}/syncs", post(syncs::create))
        .route("/buckets/{bucket}/syncs/list", post(syncs::list))
        .route(
            "/buckets/{bucket}/syncs/{sync}",
            get(syncs::get).patch(syncs::update).delete(syncs::delete),
        )
        .route("/buckets/{bucket}/syncs/{sync}/trigger", post(syncs::trigger))
        .route("/buckets/{bucket}/syncs/{sync}/pause", post(syncs::pause))
        .route("/buckets/{bucket}/syncs/{sync}/resume", post(syncs::resume))
        .route("/buckets/{bucket}/syncs/{sync}/unlock", post(syncs::unlock))
        .route("/buckets/{bucket}/syncs/{sync}/jobs", post(syncs::runs))
        .route("/buckets/{bucket}/syncs/{sync}/jobs/{job}", get(syncs::run))
        .route("/buckets/{bucket}/syncs/{sync}/metrics", get(syncs::metrics))
        .route("/buckets/{bucket}/syncs/{sync}/dlq", post(syncs::dead_letters))
        .route("/buckets/{bucket}/syncs/{sync}/dlq/requeue", post(syncs::requeue))
        .route("/buckets/{bucket}/syncs/{sync}/dlq/bulk-mark-failed", post(syncs::mark_failed))
        .route("/batches/list", post(batches::list_all))
        .route("/batches/{batch}", get(batches::get_by_id))
        .route("/batches/{batch}/cancel", post(batches::cancel_by_id))
        .route("/collections", get(collections::list_get))
        .route("/collections/list", post(collections::list))
        .route("/collections/features/extractors", get(collections::extractors))
        .route("/collections/features/extractors/{extractor}", get(collections::extractor))
        .route("/collections/{collection}", get(collections::get))
        .route("/collections/{collection}/documents/list", post(collections::list_documents))
        .route("/collections/{collection}/documents/count", get(collections::count_documents))
        .route("/collections/{collection}/documents/{document}", get(collections::get_document))
        .route("/files/{*key}", get(files::get).put(files::put))
        .route("/tasks/list", post(tasks::list))
        .route("/tasks/{task}", get(tasks::get).delete(tasks::kill))
        .route("/organizations/webhooks", post(webhooks::create))
        .route("/organizations/webhooks/", post(webhooks::create))
        .route("/organizations/webhooks/list", post(webhooks::list))
        .route(
            "/organizations/webhooks/{webhook}",
            get(webhooks::get).put(webhooks::update).delete(webhooks::delete),
        )
        .route("/organizations/webhooks/{webhook}/deliveries", get(webhooks::deliveries))
        .route(
            "/organizations/webhooks/{webhook}/deliveries/{delivery}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/organizations/connections", post(connections::create))
        .route("/organizations/connections/list", post(connections::list))
        .route(
            "/organizations/connections/{connection}",
            get(connections::get).patch(connections::update).delete(connections::delete),
        )
        .route("/organizations/connections/{connection}/test", post(connections::test))
        .route("/events", get(events::list));

    finish(Router::new().nest("/v1", v1).route("/openapi.json", get(health::openapi)), state)
}

/// The router of a worker-only process: health checks and nothing else.
pub fn health_router(state: Arc<AppState>) -> Router {
    finish(Router::new().nest("/v1", health_routes()), state)
}

fn health_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health::health))
        .route("/health/liveness", get(health::liveness))
        .route("/health/readiness", get(health::readiness))
}

fn finish(router: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), request_span))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Error {
    Error::not_found("route", uri.path())
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// Wraps each request in a span that carries the route template and, once resolved, the
/// organization and namespace; logs one line per request.
async fn request_span(
    State(_state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        http.method = %method,
        http.route = %route,
        org = tracing::field::Empty,
        namespace = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(http.status = status, elapsed_ms, "request finished");
    });
    response
}

/// The OpenAPI document: `openapi.yaml`, compiled into the binary and served as JSON.
///
/// # Errors
///
/// Fails only if the compiled-in document is not valid YAML, which a test rules out.
pub fn openapi_document() -> Result<serde_json::Value, String> {
    serde_norway::from_str(include_str!("../../openapi.yaml")).map_err(|e| e.to_string())
}
