//! What the SQL gate says when it refuses: PostgreSQL `ErrorResponse`s with the
//! SQLSTATE a client (libpq, psycopg, tokio-postgres) acts on, and the guard's
//! refusals in that shape (`impl Wire`).

use entraflow_core::OSSRDBMS_RESOURCE;
use entraflow_rbac::Denial;

use super::codec;
use super::state::SqlState;
use crate::guard::Wire;
use crate::verify::{AuthError, TokenVerifier};

/// SQLSTATE `28P01` invalid_password: the token (the password) is not accepted.
pub(crate) const INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE `28000` invalid_authorization_specification: the user name does not
/// map to the token's principal.
pub(crate) const INVALID_AUTHORIZATION: &str = "28000";
/// SQLSTATE `42501` insufficient_privilege.
pub(crate) const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE `08P01` protocol_violation.
pub(crate) const PROTOCOL_VIOLATION: &str = "08P01";
/// SQLSTATE `08006` connection_failure: the session ends (its token expired).
pub(crate) const CONNECTION_FAILURE: &str = "08006";
/// SQLSTATE `57P03` cannot_connect_now.
pub(crate) const CANNOT_CONNECT_NOW: &str = "57P03";
/// SQLSTATE `08001` sqlclient_unable_to_establish_sqlconnection.
pub(crate) const UNABLE_TO_CONNECT: &str = "08001";

/// How a client gets an acceptable password.
pub(crate) const TOKEN_HINT: &str = "Use an Entra access token for https://ossrdbms-aad.database.windows.net as the password, e.g. PGPASSWORD=$(entraflow token --resource https://ossrdbms-aad.database.windows.net --show).";

/// A FATAL `ErrorResponse` the gate sends before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl PgError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Names the user name the client tried, as PostgreSQL's own messages do.
    pub(crate) fn for_user(mut self, user: &str) -> Self {
        if self.code == INVALID_PASSWORD {
            self.message = format!(
                "password authentication failed for user \"{user}\": {}",
                self.message
            );
        }
        self
    }

    /// The `ErrorResponse` message (severity FATAL: the connection ends).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let mut field = |code: u8, value: &str| {
            body.push(code);
            // A NUL would end the field early; the gate's texts never have one.
            body.extend(value.bytes().filter(|&b| b != 0));
            body.push(0);
        };
        field(b'S', "FATAL");
        field(b'V', "FATAL");
        field(b'C', self.code);
        field(b'M', &self.message);
        if let Some(hint) = &self.hint {
            field(b'H', hint);
        }
        body.push(0);
        codec::message(b'E', &body)
    }
}

impl Wire<SqlState> for PgError {
    fn verifier(state: &SqlState) -> &TokenVerifier {
        &state.verifier
    }

    fn unauthenticated(err: &AuthError, _state: &SqlState) -> Self {
        let message = match err {
            AuthError::Missing | AuthError::KeyBasedNotPermitted => {
                "no password was sent; the password must be an Entra access token".to_owned()
            }
            AuthError::Malformed(why) => {
                format!("the password is not an Entra access token ({why})")
            }
            AuthError::Audience(aud) => {
                format!("the token's audience is '{aud}', not {OSSRDBMS_RESOURCE}")
            }
            AuthError::Expired => "the token has expired".to_owned(),
            other => format!("the token was refused: {other}"),
        };
        PgError::new(INVALID_PASSWORD, message).hint(TOKEN_HINT)
    }

    fn forbidden(denial: &Denial) -> Self {
        PgError::new(
            INSUFFICIENT_PRIVILEGE,
            format!("permission denied to connect: {denial}"),
        )
    }

    fn audit_unavailable() -> Self {
        PgError::new(
            CANNOT_CONNECT_NOW,
            "the audit log is unavailable, so the SQL gate serves nothing; retry later",
        )
    }

    fn summary(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_carry_severity_sqlstate_message_and_hint() {
        let e = PgError::new(INVALID_PASSWORD, "the token has expired")
            .hint(TOKEN_HINT)
            .for_user("alice@contoso.com");
        let bytes = e.to_bytes();
        assert_eq!(bytes[0], b'E');
        let fields = codec::error_fields(&bytes[5..]);
        assert!(fields.contains(&(b'S', "FATAL")));
        assert!(fields.contains(&(b'C', "28P01")));
        assert!(fields.contains(&(
            b'M',
            "password authentication failed for user \"alice@contoso.com\": the token has expired"
        )));
        assert!(
            fields
                .iter()
                .any(|(c, v)| *c == b'H' && v.contains("entraflow token"))
        );
    }
}
