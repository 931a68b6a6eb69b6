//! Typed errors inside the crate, and their single mapping to HTTP
//! (`application/problem+json`) at the edge.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input; the message names the field and what is wrong with it.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the request is not allowed (a console request without its CSRF token).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> AppError {
        AppError::Invalid(format!("{field}: {reason}"))
    }

    /// The database could not be reached (pool time-out, connection cut, server
    /// restarting): worth trying again, unlike a rejected statement.
    pub fn is_database_unreachable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            AppError::Pool(_) => true,
            AppError::Database(Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
                ) || {
                    let message = info.message();
                    message.contains("terminating connection")
                        || message.contains("server closed the connection")
                        || message.contains("the database system is")
                }
            }
            AppError::Database(Error::BrokenTransactionManager) => true,
            _ => false,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            AppError::Invalid(_) => "Invalid request",
            AppError::NotFound(_) => "Not found",
            AppError::Conflict(_) => "Conflict",
            AppError::Unauthorized(_) => "Unauthorized",
            AppError::Forbidden(_) => "Forbidden",
            AppError::PayloadTooLarge(_) => "Payload too large",
            AppError::UnsupportedMediaType(_) => "Unsupported media type",
            AppError::Database(_) | AppError::Pool(_) | AppError::Internal(_) => "Internal error",
        }
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::Internal(format!("background task failed: {e}"))
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        AppError::Internal(format!("background task failed: {e}"))
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

pub fn problem_response(status: StatusCode, title: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(Problem {
            kind: "about:blank".into(),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
        })
}

impl AppError {
    /// What a caller is told: the error itself, except internals (server errors), which
    /// go to the log only.
    pub fn public_detail(&self) -> String {
        if self.status_code().is_server_error() {
            "the server could not complete the request; see its log".to_string()
        } else {
            self.to_string()
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Invalid(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Database(_) | AppError::Pool(_) | AppError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            log::error!("request failed: {self}");
        }
        let detail = self.public_detail();
        let mut response = problem_response(status, self.title(), &detail);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                actix_web::http::header::WWW_AUTHENTICATE,
                actix_web::http::header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
