//! Every issued or refused token is one decision, recorded in one place so the
//! audit log can hook in here. Never the token itself: its `uti` and fingerprint.

use entraflow_core::Aadsts;

/// One token decision.
#[derive(Debug, Clone, Default)]
pub(crate) struct Decision<'a> {
    /// `client_credentials`, `device_code`, `imds`, ...
    pub(crate) grant: &'a str,
    /// Object id of the principal, when known.
    pub(crate) principal: Option<&'a str>,
    /// Client application id, when known.
    pub(crate) client_id: Option<&'a str>,
    /// Resource asked for, when known.
    pub(crate) resource: Option<&'a str>,
    /// `uti` of the issued token.
    pub(crate) uti: Option<&'a str>,
    /// The issued token (only its fingerprint is logged).
    pub(crate) token: Option<&'a str>,
}

impl Decision<'_> {
    pub(crate) fn issued(&self) {
        tracing::info!(
            target: "entraflow::authority::decision",
            result = "issued",
            grant = self.grant,
            principal = self.principal.unwrap_or(""),
            client_id = self.client_id.unwrap_or(""),
            resource = self.resource.unwrap_or(""),
            uti = self.uti.unwrap_or(""),
            token = %self.token.map(entraflow_core::fingerprint).unwrap_or_default(),
            "token issued"
        );
    }

    pub(crate) fn refused(&self, code: Aadsts, why: &str) {
        tracing::warn!(
            target: "entraflow::authority::decision",
            result = "refused",
            grant = self.grant,
            principal = self.principal.unwrap_or(""),
            client_id = self.client_id.unwrap_or(""),
            resource = self.resource.unwrap_or(""),
            aadsts = code.code(),
            reason = why,
            "token refused"
        );
    }
}
