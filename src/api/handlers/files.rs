//! `/v1/files/{key}`: blobs read and written through sluice's own signed URLs.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use super::AppStateRef;
use crate::api::extract::PathParams;
use crate::blob::BlobError;
use crate::blob::signed::SignedQuery;
use crate::error::{Error, Result};

fn signed_query(uri: &axum::http::Uri) -> Result<SignedQuery> {
    serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|_| Error::Forbidden("missing or malformed URL signature".into()))
}

/// Streams the blob a signed GET URL names.
pub async fn get(
    state: AppStateRef,
    PathParams(key): PathParams<String>,
    uri: axum::http::Uri,
) -> Result<Response> {
    let query = signed_query(&uri)?;
    state.signer.verify("GET", &key, &query).map_err(|e| Error::Forbidden(e.to_string()))?;

    let (size, stream) = state.blobs.open_read(&key).await.map_err(|e| match e {
        BlobError::NotFound(_) => Error::not_found("file", &key),
        BlobError::Archived(_) => Error::conflict(
            "blob_archived",
            "the blob is in the archive storage class; restore it before reading",
        ),
        other => Error::Internal(format!("blob read failed: {other}")),
    })?;
    let content_type = if query.ct.is_empty() { "application/octet-stream" } else { &query.ct };
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// Receives the bytes of a one-time signed PUT URL, streaming them to the blob store. The URL
/// binds the content type and a size limit; once used successfully it cannot be used again.
pub async fn put(
    state: AppStateRef,
    PathParams(key): PathParams<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let query = signed_query(&uri)?;
    state.signer.verify("PUT", &key, &query).map_err(|e| Error::Forbidden(e.to_string()))?;
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.eq_ignore_ascii_case(&query.ct) {
        return Err(Error::Forbidden(format!("this URL takes Content-Type {}", query.ct)));
    }
    let stream = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
    let stored = crate::service::uploads::receive_signed(&state, &key, &query, stream).await?;
    let mut response = StatusCode::OK.into_response();
    if let Some(etag) = stored
        .etag
        .and_then(|e| HeaderValue::from_str(&format!("\"{}\"", e.trim_matches('"'))).ok())
    {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}
