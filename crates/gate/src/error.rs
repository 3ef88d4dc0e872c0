//! Errors: [`GateError`] for starting the gate, [`StorageError`] for what a client
//! sees — Azure Storage's XML error shape, with `x-ms-error-code`.

use axum::http::{HeaderValue, StatusCode};
use thiserror::Error;

/// Why the gate could not start or could not reach its collaborators.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GateError {
    /// The data directory or a file in it could not be used.
    #[error("cannot use {path}: {source}; check that the directory exists and is writable")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The gate's metadata database (`gate.db`) failed.
    #[error(
        "the gate database {path} failed: {source}; if it is corrupt, move it aside and restart"
    )]
    Database {
        /// Where it is.
        path: std::path::PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// `gate.db` cannot be brought to this version's schema.
    #[error("the gate database {path} cannot be used: {detail}")]
    Schema {
        /// Where it is.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The storage backend could not be opened.
    #[error("cannot open storage backend '{backend}': {source}")]
    Backend {
        /// The directory or URL.
        backend: String,
        /// What object_store said.
        source: object_store::Error,
    },
    /// The local CA or HTTPS setup failed.
    #[error(transparent)]
    Tls(#[from] entraflow_tls::TlsError),
    /// The configuration is incomplete or contradictory.
    /// The port could not be bound.
    #[error(transparent)]
    Bind(#[from] entraflow_tls::BindError),
    #[error("invalid gate configuration: {0}")]
    Config(String),
    /// The RBAC store could not be opened.
    #[error("cannot open the RBAC store: {0}")]
    Rbac(String),
    /// The audit log could not be opened.
    #[error("cannot open the audit log: {0}")]
    Audit(String),
}

/// An error response exactly as Azure Storage words it: a status, an error code
/// (`x-ms-error-code` and `<Code>`), a message, and optional extra XML elements
/// (`<AuthenticationErrorDetail>`, `<HeaderName>`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// HTTP status.
    pub status: StatusCode,
    /// Azure error code, e.g. `BlobNotFound`.
    pub code: &'static str,
    /// Azure's message text.
    pub message: String,
    /// Extra `(element, text)` pairs after `<Message>`.
    pub details: Vec<(&'static str, String)>,
    /// Extra response headers (`WWW-Authenticate`, `Content-Range`, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl StorageError {
    /// An error with Azure's code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Adds an element to the XML body.
    pub fn detail(mut self, element: &'static str, text: impl Into<String>) -> Self {
        self.details.push((element, text.into()));
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The XML body; `request_id` and `time` go into the message as Azure does.
    pub fn body(&self, request_id: &str) -> String {
        let message = format!(
            "{}\nRequestId:{request_id}\nTime:{}",
            self.message,
            crate::xml::iso8601_now()
        );
        crate::xml::error(self.code, &message, &self.details)
    }

    /// Builds the response (common headers are added by the server layer).
    pub fn into_response(self, request_id: &str, head: bool) -> axum::response::Response {
        use axum::response::IntoResponse;
        // A 304 carries no body, only the error code header.
        let head = head || self.status == StatusCode::NOT_MODIFIED;
        let body = if head {
            String::new()
        } else {
            self.body(request_id)
        };
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert("x-ms-error-code", HeaderValue::from_static(self.code));
        if !head {
            headers.insert("content-type", HeaderValue::from_static("application/xml"));
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }

    // Azure's wording for the errors the gate returns, in one place.

    /// 404 `ContainerNotFound`.
    pub fn container_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ContainerNotFound",
            "The specified container does not exist.",
        )
    }
    /// 409 `ContainerAlreadyExists`.
    pub fn container_already_exists() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "ContainerAlreadyExists",
            "The specified container already exists.",
        )
    }
    /// 404 `BlobNotFound`.
    pub fn blob_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BlobNotFound",
            "The specified blob does not exist.",
        )
    }
    /// 400 `InvalidResourceName`.
    pub fn invalid_resource_name() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidResourceName",
            "The specified resource name contains invalid characters.",
        )
    }
    /// 400 `InvalidQueryParameterValue`.
    pub fn invalid_query_parameter(name: &str, value: &str, reason: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
        )
        .detail("QueryParameterName", name)
        .detail("QueryParameterValue", value)
        .detail("Reason", reason)
    }
    /// 400 `InvalidHeaderValue`.
    pub fn invalid_header_value(name: &str, value: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format.",
        )
        .detail("HeaderName", name)
        .detail("HeaderValue", value)
    }
    /// 400 `MissingRequiredHeader`.
    pub fn missing_header(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified.",
        )
        .detail("HeaderName", name)
    }
    /// 400 `InvalidXmlDocument`.
    pub fn invalid_xml(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidXmlDocument",
            "XML specified is not syntactically valid.",
        )
        .detail("Reason", reason)
    }
    /// 400 `InvalidBlockList`.
    pub fn invalid_block_list() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidBlockList",
            "The specified block list is invalid.",
        )
    }
    /// 400 `InvalidBlockId`.
    pub fn invalid_block_id() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidBlockId",
            "The specified block ID is invalid. The block ID must be Base64-encoded.",
        )
    }
    /// 412 `ConditionNotMet`.
    pub fn condition_not_met() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "ConditionNotMet",
            "The condition specified using HTTP conditional header(s) is not met.",
        )
    }
    /// 409 `BlobAlreadyExists`.
    pub fn blob_already_exists() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "BlobAlreadyExists",
            "The specified blob already exists.",
        )
    }
    /// 416 `InvalidRange`.
    pub fn invalid_range(size: u64) -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "InvalidRange",
            "The range specified is invalid for the current size of the resource.",
        )
        .header("content-range", format!("bytes */{size}"))
    }
    /// 400 `UnsupportedQueryParameter`/`InvalidUri`-style refusal of an operation the gate does not implement.
    pub fn unsupported(what: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedQueryParameter",
            format!(
                "One of the query parameters specified in the request URI is not supported. The gate does not implement {what}."
            ),
        )
    }
    /// 405 `UnsupportedHttpVerb`.
    pub fn unsupported_verb() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedHttpVerb",
            "The resource doesn't support specified Http Verb.",
        )
    }
    /// 400 `InvalidUri` (e.g. the account name is not the gate's).
    pub fn invalid_uri(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
        )
        .detail("Reason", reason)
    }
    /// 404 `CannotVerifyCopySource`.
    pub fn cannot_verify_copy_source(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "CannotVerifyCopySource", reason)
    }
    /// 500 `InternalError`, with the backend's error kept out of the client's view;
    /// or, when the cause is a full disk (or a file-size limit or quota), 503
    /// `ServerBusy` saying so: the client can act on that, and retry once there is room.
    pub fn internal<E: std::error::Error + 'static>(err: E) -> Self {
        if let Some(cause) = entraflow_core::fsutil::no_room(&err) {
            tracing::error!(error = %err, "no room on the gate's data directory");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServerBusy",
                "The gate's data directory has no room for this write (full, or over a size limit); nothing was stored. Free space there and retry.",
            )
            .detail("Reason", cause);
        }
        tracing::error!(error = %err, "storage backend failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Server encountered an internal error. Please try again after some time.",
        )
    }
}

impl From<object_store::Error> for StorageError {
    fn from(err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { .. } => StorageError::blob_not_found(),
            object_store::Error::AlreadyExists { .. } => StorageError::blob_already_exists(),
            object_store::Error::Precondition { .. } => StorageError::condition_not_met(),
            object_store::Error::NotModified { .. } => StorageError::new(
                StatusCode::NOT_MODIFIED,
                "ConditionNotMet",
                "The condition specified using HTTP conditional header(s) is not met.",
            ),
            other => StorageError::internal(other),
        }
    }
}
