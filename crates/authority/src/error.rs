//! The two kinds of failure: administrative ones (for the CLI and the embedding
//! program) and protocol ones (what a client of the token endpoint sees).

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use entraflow_core::aadsts::{Aadsts, ErrorResponse};

/// A failure of an administrative operation or of starting the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The SQLite database could not be opened or queried.
    #[error("authority database {path}: {source}; check the data directory's permissions")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database's schema cannot be brought to this version's.
    #[error("authority database {path}: {reason}")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A port could not be bound.
    #[error(transparent)]
    Bind(#[from] entraflow_tls::BindError),
    /// A query failed on an already-open database.
    #[error("authority database query failed: {0}")]
    Query(#[from] rusqlite::Error),
    /// A file in the data directory could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An object named on the command line does not exist.
    #[error("{kind} '{id}' not found in the tenant; list them with `entraflow ad {cmd} list`")]
    NotFound {
        /// `application`, `user`, ...
        kind: &'static str,
        /// The id that was looked up.
        id: String,
        /// The `ad` sub-command that lists them.
        cmd: &'static str,
    },
    /// The request conflicts with existing state or breaks a rule of Entra ID.
    #[error("{0}")]
    Invalid(String),
    /// Key generation, certificate parsing or signing failed.
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
    /// The HTTPS layer failed (CA, certificate, listener).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The audit log could not be opened, written or closed; nothing was
    /// answered (or changed) without its record where this is returned.
    #[error(
        "audit log: {0}; check the audit store (`entraflow audit verify`) and the data directory"
    )]
    Audit(String),
}

impl AuthorityError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}

/// A refusal by the token endpoint, rendered exactly as Entra ID renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The AADSTS code clients classify by.
    pub code: Aadsts,
    /// The human description after `AADSTSnnnn: `.
    pub description: String,
    /// Overrides the HTTP status (device-code polling uses 400 for every code).
    pub status: Option<u16>,
}

impl OAuthError {
    /// A refusal with `code` and a description that says what was wrong with what.
    pub fn new(code: Aadsts, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            status: None,
        }
    }

    /// The JSON body Entra sends, with a fresh trace and correlation id.
    pub fn body(&self, correlation_id: Option<&str>) -> ErrorResponse {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = correlation_id
            .filter(|c| uuid::Uuid::parse_str(c).is_ok())
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let now = time::OffsetDateTime::now_utc();
        let timestamp = now
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]Z"
            ))
            .unwrap_or_default();
        ErrorResponse {
            error: self.code.oauth_error().to_owned(),
            error_description: format!(
                "{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.code, self.description
            ),
            error_codes: vec![self.code.code()],
            timestamp,
            trace_id,
            correlation_id,
            error_uri: Some(format!(
                "https://login.microsoftonline.com/error?code={}",
                self.code.code()
            )),
        }
    }

    pub(crate) fn http_status(&self) -> StatusCode {
        StatusCode::from_u16(self.status.unwrap_or(self.code.http_status()))
            .unwrap_or(StatusCode::BAD_REQUEST)
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        (self.http_status(), axum::Json(self.body(None))).into_response()
    }
}

/// Store failures inside a token request are the server's fault, and passing:
/// the client gets `temporarily_unavailable` (which MSAL and azure-identity retry),
/// 503 naming the cause when the data directory has no room, else 500; the
/// operator gets the details in the log.
impl From<AuthorityError> for OAuthError {
    fn from(err: AuthorityError) -> Self {
        tracing::error!(error = %err, "token request failed inside the authority");
        if let Some(cause) = entraflow_core::fsutil::no_room(&err) {
            return OAuthError {
                code: Aadsts::TemporarilyUnavailable,
                description: format!(
                    "The authority's data directory has no room to store this request ({cause}); nothing was stored. Free space there and retry."
                ),
                status: Some(503),
            };
        }
        OAuthError {
            code: Aadsts::TemporarilyUnavailable,
            description: "The authority could not process the request because of an internal failure; retry shortly. The authority's log says why.".into(),
            status: Some(500),
        }
    }
}
