//! The one error type of the service layer. The HTTP layer maps each variant to a status and
//! the contract's error envelope in one place (`api::error`).

use crate::model::FieldError;
use crate::store::StoreError;

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource does not exist or belongs to another tenant; both answer the same.
    #[error("{resource} {id:?} not found")]
    NotFound { resource: &'static str, id: String },

    /// The request conflicts with the current state, e.g. a name already taken.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },

    /// A field of the request is invalid.
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),

    /// A field of the request names something that does not exist or cannot be used, with a
    /// fine-grained code such as `feature_extractor_not_found`.
    #[error("{field}: {message}")]
    Unprocessable { code: &'static str, field: String, message: String },

    /// The request cannot be understood at all, or asks for something unsupported.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },

    /// The request body is larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),

    /// The route exists but does not take the request's method.
    #[error("method not allowed")]
    MethodNotAllowed,

    /// The request carries credentials that do not allow it, e.g. a bad signed URL.
    #[error("{0}")]
    Forbidden(String),

    /// No valid API key was presented.
    #[error("{0}")]
    Unauthorized(String),

    /// The metadata store failed.
    #[error(transparent)]
    Store(StoreError),

    /// Anything else that went wrong inside sluice.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound { resource, id: id.into() }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid(FieldError::new(field, message))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict { code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest { code, message: message.into() }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidRegex(message) => Error::bad_request(
                "invalid_regex",
                format!("filters: the regular expression is not valid: {message}"),
            ),
            other => Error::Store(other),
        }
    }
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Error::Invalid(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
