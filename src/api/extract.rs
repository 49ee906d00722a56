//! Request extractors that answer bad input with the contract's envelope: JSON bodies, query
//! strings and path parameters.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::AppState;
use crate::error::Error;
use crate::model::FieldError;

/// A JSON request body. A missing or empty body reads as `{}`, because the official client
/// sends bodiless POSTs with a JSON content type.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request<Body>, state: &Arc<AppState>) -> Result<Self, Error> {
        let limit = state.limits.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| {
            Error::TooLarge(format!("request body is larger than the limit of {limit} bytes"))
        })?;
        let value = parse_json_body(&bytes)?;
        Ok(JsonBody(from_value(value, "")?))
    }
}

fn parse_json_body(bytes: &[u8]) -> Result<Value, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::bad_request("invalid_json", format!("request body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(Error::invalid("body", "expected a JSON object"));
    }
    Ok(value)
}

/// Deserializes `value` into `T`, naming the offending field (prefixed by `prefix`) on failure.
pub fn from_value<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path.as_str()) {
            (true, ".") => "body".to_string(),
            (true, _) => path,
            (false, ".") => prefix.to_string(),
            (false, _) => format!("{prefix}.{path}"),
        };
        FieldError::new(field, e.into_inner().to_string())
    })
}

/// Query-string parameters.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(QueryParams).map_err(|e| {
            let field = e.path().to_string();
            Error::invalid(format!("query.{field}"), e.into_inner().to_string())
        })
    }
}

/// Path parameters.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| PathParams(v))
            .map_err(|e| Error::bad_request("invalid_path", e.body_text()))
    }
}
