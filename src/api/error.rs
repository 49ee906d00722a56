//! The contract's error envelope and the status of each [`Error`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::Error;

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Invalid(_) | Error::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Store(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `type`, `code`, message and details of the envelope. Internal errors answer a
    /// generic message: their text goes to the log, never to the caller.
    fn parts(&self) -> (&'static str, String, String, Value) {
        match self {
            Error::NotFound { resource, id } => (
                "NotFoundError",
                format!("{resource}_not_found"),
                format!("{} not found: {id}", capitalize(resource)),
                json!({"resource": resource, "id": id}),
            ),
            Error::Conflict { code, message } => {
                ("AlreadyExistsError", code.to_string(), message.clone(), Value::Null)
            }
            Error::Invalid(e) => (
                "ValidationError",
                "validation_error".into(),
                format!("{}: {}", e.field, e.message),
                json!({"validation_errors": [{
                    "type": "value_error",
                    "location": e.field.split('.').collect::<Vec<_>>(),
                    "message": e.message,
                }], "field": e.field}),
            ),
            Error::Unprocessable { code, field, message } => (
                "ValidationError",
                code.to_string(),
                format!("{field}: {message}"),
                json!({"validation_errors": [{
                    "type": "value_error",
                    "location": field.split('.').collect::<Vec<_>>(),
                    "message": message,
                }], "field": field}),
            ),
            Error::BadRequest { code, message } => {
                ("BadRequestError", code.to_string(), message.clone(), Value::Null)
            }
            Error::TooLarge(message) => {
                ("PayloadTooLargeError", "payload_too_large".into(), message.clone(), Value::Null)
            }
            Error::MethodNotAllowed => (
                "MethodNotAllowedError",
                "method_not_allowed".into(),
                "this route does not take that method".into(),
                Value::Null,
            ),
            Error::Forbidden(message) => {
                ("ForbiddenError", "forbidden".into(), message.clone(), Value::Null)
            }
            Error::Unauthorized(message) => {
                ("UnauthorizedError", "unauthorized".into(), message.clone(), Value::Null)
            }
            Error::Store(_) | Error::Internal(_) => (
                "InternalServerError",
                "internal_error".into(),
                "Internal server error".into(),
                Value::Null,
            ),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let (kind, code, message, details) = self.parts();
        let mut error = json!({"message": message, "type": kind, "code": code});
        if !details.is_null() {
            error["details"] = details;
        }
        let body = json!({"success": false, "status": status.as_u16(), "error": error});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>().replace('_', " "),
        None => String::new(),
    }
}
