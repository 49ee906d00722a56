//! HTTP helpers for the requests the blob layer makes itself, beside `object_store`'s: one
//! client, status checks that never leak a signed URL, and header and date parsing.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::{BlobError, BlobMeta};
use crate::model::{StorageClass, format_time};

/// How long one metadata request (a HEAD, a tier change) may take.
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one in-place copy may take: S3 copies the whole object server-side, which for a
/// few gigabytes takes minutes.
pub(super) const COPY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The client for sluice's own requests to the store.
///
/// # Errors
///
/// Fails when the TLS backend cannot be set up.
pub(super) fn client() -> Result<reqwest::Client, BlobError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // Stores answer directly; a redirect would only carry a signature somewhere else.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| BlobError::Config(format!("could not build the HTTP client: {e}")))
}

/// Sends a request, turning a transport failure into an error without the URL (which
/// carries a signature).
pub(super) async fn send(request: reqwest::RequestBuilder) -> Result<Response, BlobError> {
    request.send().await.map_err(|e| BlobError::Request(e.without_url().to_string()))
}

/// Fails on a non-success status, with the status and the start of the store's answer
/// (an XML or JSON error, never the request's URL).
pub(super) async fn check(response: Response, what: &str) -> Result<Response, BlobError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(BlobError::Request(format!("{what} answered {status}: {}", truncate(&body, 500))))
}

/// The body of a response, as text.
pub(super) async fn body_text(response: Response) -> Result<String, BlobError> {
    response.text().await.map_err(|e| BlobError::Request(e.without_url().to_string()))
}

/// Whether a status means there is no such object.
pub(super) fn is_missing(status: StatusCode) -> bool {
    status == StatusCode::NOT_FOUND
}

/// Reads a HEAD response's metadata. `class_header` names the header that carries the class
/// and `class` maps its value; `absent` is the class a missing header means.
pub(super) fn meta_from_headers(
    headers: &HeaderMap,
    class_header: &str,
    class: fn(&str) -> Option<StorageClass>,
    absent: Option<StorageClass>,
) -> BlobMeta {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    BlobMeta {
        size: text("content-length").and_then(|v| v.parse().ok()).unwrap_or(0),
        etag: text("etag"),
        content_type: text("content-type"),
        storage_class: match text(class_header) {
            Some(name) => class(&name),
            None => absent,
        },
        last_modified: text("last-modified").and_then(|v| http_date_to_rfc3339(&v)),
    }
}

/// Rewrites an HTTP date (`Tue, 15 Nov 1994 08:12:31 GMT`) as sluice's RFC 3339 form.
pub(super) fn http_date_to_rfc3339(value: &str) -> Option<String> {
    // RFC 2822 parsing accepts the HTTP form; "GMT" is one of its zone names.
    OffsetDateTime::parse(value, &Rfc2822).ok().map(format_time)
}

/// Microseconds since the epoch in sluice's RFC 3339 form.
pub(super) fn format_timestamp_micros(micros: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok().map(format_time)
}

/// An error and its sources as one line: a store's error code sits in the innermost one.
pub(super) fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

pub(super) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_become_rfc3339() {
        assert_eq!(
            http_date_to_rfc3339("Tue, 15 Nov 1994 08:12:31 GMT").as_deref(),
            Some("1994-11-15T08:12:31.000000Z")
        );
        assert_eq!(http_date_to_rfc3339("yesterday"), None);
        assert_eq!(format_timestamp_micros(1).as_deref(), Some("1970-01-01T00:00:00.000001Z"));
    }
}
