//! [`AdminError`], and how it and the router's own refusals become JSON error responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Why an [`AdminBackend`](super::AdminBackend) call failed; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No service has this name (404).
    #[error("unknown service '{0}'")]
    UnknownService(String),
    /// The runtime cannot do this yet (501).
    #[error("{action} is not supported by this runtime yet")]
    NotSupported {
        /// What was asked, e.g. `pause`.
        action: &'static str,
    },
    /// The service's job is running, so it cannot run now (409).
    #[error("service '{0}' is already running")]
    AlreadyRunning(String),
    /// The service's state does not allow the action, such as pausing a stopped service (409); the
    /// message says which.
    #[error("{0}")]
    InvalidState(String),
    /// The request was understood but refused, such as a reload of a bad configuration (422).
    #[error("{0}")]
    Rejected(String),
    /// Something else went wrong, such as an unreachable database (500).
    #[error("{0}")]
    Failed(String),
}

impl From<crate::Error> for AdminError {
    fn from(error: crate::Error) -> Self {
        match error {
            crate::Error::UnknownService(name) => AdminError::UnknownService(name),
            crate::Error::AlreadyRunning(name) => AdminError::AlreadyRunning(name),
            error @ crate::Error::InvalidState { .. } => {
                AdminError::InvalidState(error.to_string())
            }
            crate::Error::Config(config) => AdminError::Rejected(config.to_string()),
            other => AdminError::Failed(other.to_string()),
        }
    }
}

/// An error response: `{"error": "<message>", "code": "<code>"}` with its status.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        let (status, code) = match &error {
            AdminError::UnknownService(_) => (StatusCode::NOT_FOUND, "unknown_service"),
            AdminError::NotSupported { .. } => (StatusCode::NOT_IMPLEMENTED, "not_supported"),
            AdminError::AlreadyRunning(_) => (StatusCode::CONFLICT, "already_running"),
            AdminError::InvalidState(_) => (StatusCode::CONFLICT, "invalid_state"),
            AdminError::Rejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
            AdminError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
