//! Errors of the filesystem and the TensorFlow status codes they become.

use entraflow_credential::CredentialError;

/// TensorFlow's `TF_Code` values (`tensorflow/c/tf_status.h`, same numbers as absl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum TfCode {
    /// `TF_OK`.
    Ok = 0,
    /// `TF_INVALID_ARGUMENT`.
    InvalidArgument = 3,
    /// `TF_NOT_FOUND`.
    NotFound = 5,
    /// `TF_ALREADY_EXISTS`.
    AlreadyExists = 6,
    /// `TF_PERMISSION_DENIED`.
    PermissionDenied = 7,
    /// `TF_FAILED_PRECONDITION`.
    FailedPrecondition = 9,
    /// `TF_OUT_OF_RANGE`.
    OutOfRange = 11,
    /// `TF_UNIMPLEMENTED`.
    Unimplemented = 12,
    /// `TF_INTERNAL`.
    Internal = 13,
    /// `TF_UNAVAILABLE`.
    Unavailable = 14,
    /// `TF_UNAUTHENTICATED`.
    Unauthenticated = 16,
}

/// What went wrong with an `az://` operation. Each variant maps to one [`TfCode`]
/// ([`FsError::code`]), which TensorFlow raises as the matching `tf.errors` class.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// The path is not `scheme://account/container/blob`, or names something this
    /// operation cannot act on.
    #[error("{0}")]
    InvalidPath(String),
    /// Configuration (environment) does not fit the path.
    #[error("{0}")]
    Misconfigured(String),
    /// No blob, directory or container at the path.
    #[error("not found: {0}")]
    NotFound(String),
    /// Something already exists where the operation wanted to create it.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The path exists but is the wrong kind (a file where a directory is needed, a
    /// non-empty directory).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The storage service refused the token (401).
    #[error(
        "storage refused the token for {path} (401 {code}): {message}; check that the job's identity is in the tenant the storage trusts"
    )]
    Unauthenticated {
        /// The `az://` path.
        path: String,
        /// `x-ms-error-code`.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The identity is authenticated but holds no role that allows the action (403).
    /// `explanation` is the gate's text verbatim: principal, action, scope, and the
    /// role that would grant it.
    #[error("permission denied on {path} (403 {code}): {explanation}")]
    PermissionDenied {
        /// The `az://` path.
        path: String,
        /// `x-ms-error-code`, e.g. `AuthorizationPermissionMismatch`.
        code: String,
        /// Why, as the service explained it.
        explanation: String,
    },
    /// No token could be obtained from the credential chain.
    #[error("no access token for storage: {0}")]
    Credential(Box<CredentialError>),
    /// The service could not be reached, or kept failing, after the retries.
    #[error("storage at {url} is unavailable after {attempts} attempts: {reason}")]
    Unavailable {
        /// The request URL (no query string).
        url: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The service answered with an error this plugin does not map to anything more
    /// specific.
    #[error("storage request for {path} failed ({status} {code}): {message}")]
    Service {
        /// The `az://` path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// `x-ms-error-code`.
        code: String,
        /// The service's message.
        message: String,
    },
    /// An operation TensorFlow asked for that this filesystem does not offer.
    #[error("{0}")]
    Unimplemented(String),
}

impl From<CredentialError> for FsError {
    fn from(e: CredentialError) -> Self {
        FsError::Credential(Box::new(e))
    }
}

impl FsError {
    /// The TensorFlow status code this error is reported as.
    pub fn code(&self) -> TfCode {
        match self {
            FsError::InvalidPath(_) | FsError::Misconfigured(_) => TfCode::InvalidArgument,
            FsError::NotFound(_) => TfCode::NotFound,
            FsError::AlreadyExists(_) => TfCode::AlreadyExists,
            FsError::FailedPrecondition(_) => TfCode::FailedPrecondition,
            FsError::Unauthenticated { .. } | FsError::Credential(_) => TfCode::Unauthenticated,
            FsError::PermissionDenied { .. } => TfCode::PermissionDenied,
            FsError::Unavailable { .. } => TfCode::Unavailable,
            FsError::Service { status, .. } => match status {
                400 | 412 | 416 => TfCode::FailedPrecondition,
                409 => TfCode::AlreadyExists,
                _ => TfCode::Internal,
            },
            FsError::Unimplemented(_) => TfCode::Unimplemented,
        }
    }

    /// Maps an HTTP error response (status, `x-ms-error-code`, message) for `path`.
    pub fn from_response(path: &str, status: u16, code: String, message: String) -> FsError {
        match status {
            401 => FsError::Unauthenticated {
                path: path.to_owned(),
                code,
                message,
            },
            403 => FsError::PermissionDenied {
                path: path.to_owned(),
                code,
                explanation: message,
            },
            404 => FsError::NotFound(format!("{path} ({code})")),
            _ => FsError::Service {
                path: path.to_owned(),
                status,
                code,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_tensorflow_codes() {
        let code = |s| FsError::from_response("az://a/c/b", s, "X".into(), "m".into()).code();
        assert_eq!(code(401), TfCode::Unauthenticated);
        assert_eq!(code(403), TfCode::PermissionDenied);
        assert_eq!(code(404), TfCode::NotFound);
        assert_eq!(code(409), TfCode::AlreadyExists);
        assert_eq!(code(500), TfCode::Internal);
        let unavailable = FsError::Unavailable {
            url: "u".into(),
            attempts: 4,
            reason: "r".into(),
        };
        assert_eq!(unavailable.code(), TfCode::Unavailable);
        assert_eq!(TfCode::OutOfRange as i32, 11);
    }

    #[test]
    fn a_denial_keeps_the_explanation_verbatim() {
        let why = "principal 'p' lacks action 'blobs/read' at scope '/s'; the role 'Storage Blob Data Reader' would grant it";
        let e = FsError::from_response(
            "az://a/c/b",
            403,
            "AuthorizationPermissionMismatch".into(),
            why.into(),
        );
        assert!(e.to_string().contains(why), "{e}");
    }
}
