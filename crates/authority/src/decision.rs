//! Every issued or refused token is one decision, recorded in one place: a
//! `tracing` line and one audit event (`token.issued` / `token.refused`) that is
//! durable before the client sees the answer. Never the token itself: its `uti`
//! (and, in the log line only, its fingerprint).

use entraflow_audit::{Event, EventType};
use entraflow_core::Aadsts;

/// The token endpoint, as audit actions name it.
pub(crate) const TOKEN_ENDPOINT: &str = "oauth2/token";
/// The authorization endpoint, as audit actions name it.
pub(crate) const AUTHORIZE_ENDPOINT: &str = "oauth2/authorize";

/// One token decision, filled in as the request is understood.
#[derive(Debug, Clone, Default)]
pub(crate) struct Decision {
    /// The endpoint that decided: `oauth2/token` (every grant, IMDS too) or
    /// `oauth2/authorize` (the sign-in step of the authorization code flow).
    pub(crate) endpoint: &'static str,
    /// `client_credentials`, `device_code`, `imds`, ...
    pub(crate) grant: String,
    /// Tenant id, once resolved.
    pub(crate) tenant: Option<String>,
    /// Object id of the principal, when known.
    pub(crate) principal: Option<String>,
    /// Display name or UPN of the principal, when known.
    pub(crate) principal_name: Option<String>,
    /// Client application id, when known.
    pub(crate) client_id: Option<String>,
    /// Resource asked for (or issued for), when known.
    pub(crate) resource: Option<String>,
    /// `uti` of the issued token.
    pub(crate) uti: Option<String>,
    /// Fingerprint of the issued token (log line only, never the audit record).
    pub(crate) token_fingerprint: Option<String>,
    /// `ip:port` of the client.
    pub(crate) client_addr: Option<String>,
    /// The client's `User-Agent`.
    pub(crate) user_agent: Option<String>,
}

impl Decision {
    /// The client's address without its port, for per-source limits.
    pub(crate) fn source_ip(&self) -> Option<std::net::IpAddr> {
        self.client_addr
            .as_deref()?
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.ip())
    }

    /// A decision about a `grant` request from a client at the token endpoint.
    pub(crate) fn new(grant: &str, client: &crate::authority::ClientInfo) -> Decision {
        Decision::at(TOKEN_ENDPOINT, grant, client)
    }

    /// A decision taken at `endpoint` about a `grant` request from a client.
    pub(crate) fn at(
        endpoint: &'static str,
        grant: &str,
        client: &crate::authority::ClientInfo,
    ) -> Decision {
        Decision {
            endpoint,
            grant: grant.to_owned(),
            client_addr: client.addr.clone(),
            user_agent: client.user_agent.clone(),
            ..Default::default()
        }
    }

    /// Logs the issuance and returns its audit event.
    pub(crate) fn issued(&self) -> Event {
        tracing::info!(
            target: "entraflow::authority::decision",
            result = "issued",
            endpoint = self.endpoint,
            grant = %self.grant,
            principal = self.principal.as_deref().unwrap_or(""),
            client_id = self.client_id.as_deref().unwrap_or(""),
            resource = self.resource.as_deref().unwrap_or(""),
            uti = self.uti.as_deref().unwrap_or(""),
            token = self.token_fingerprint.as_deref().unwrap_or(""),
            "token issued"
        );
        let mut event = self.event(EventType::TokenIssued);
        event.decision = Some(entraflow_audit::Decision::Allow);
        event.status = Some(200);
        event.token_uti = self.uti.clone();
        event
    }

    /// Logs the refusal and returns its audit event.
    pub(crate) fn refused(&self, code: Aadsts, status: u16, why: &str) -> Event {
        tracing::warn!(
            target: "entraflow::authority::decision",
            result = "refused",
            endpoint = self.endpoint,
            grant = %self.grant,
            principal = self.principal.as_deref().unwrap_or(""),
            client_id = self.client_id.as_deref().unwrap_or(""),
            resource = self.resource.as_deref().unwrap_or(""),
            aadsts = code.code(),
            reason = why,
            "token refused"
        );
        let mut event = self.event(EventType::TokenRefused);
        event.decision = Some(entraflow_audit::Decision::Deny);
        event.status = Some(status);
        event.detail = Some(format!("{code}: {why}"));
        event
    }

    fn event(&self, event_type: EventType) -> Event {
        let mut event = Event::new(event_type);
        event.tenant = self.tenant.clone();
        event.principal = Some(entraflow_audit::Principal {
            oid: self.principal.clone(),
            appid: self.client_id.clone(),
            name: self.principal_name.clone(),
        });
        // The grant is what the client asked to do: `audit query --action` filters on it.
        event.action = Some(format!("{}:{}", self.endpoint, self.grant));
        event.resource = self.resource.clone();
        event.client_addr = self.client_addr.clone();
        event.user_agent = self.user_agent.clone();
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_decision_but_no_token_material() {
        let d = Decision {
            endpoint: TOKEN_ENDPOINT,
            grant: "client_credentials".into(),
            tenant: Some("t-1".into()),
            principal: Some("oid-1".into()),
            principal_name: Some("trainer".into()),
            client_id: Some("app-1".into()),
            resource: Some("https://storage.azure.com".into()),
            uti: Some("uti-1".into()),
            token_fingerprint: Some("sha256:abcd".into()),
            client_addr: Some("127.0.0.1:5000".into()),
            user_agent: Some("azsdk-python-identity/1.0".into()),
        };
        let issued = d.issued();
        assert_eq!(issued.event_type, EventType::TokenIssued);
        assert_eq!(issued.token_uti.as_deref(), Some("uti-1"));
        assert_eq!(issued.tenant.as_deref(), Some("t-1"));
        assert_eq!(
            issued.action.as_deref(),
            Some("oauth2/token:client_credentials")
        );
        let p = issued.principal.clone().unwrap();
        assert_eq!(
            (p.oid.as_deref(), p.appid.as_deref(), p.name.as_deref()),
            (Some("oid-1"), Some("app-1"), Some("trainer"))
        );
        let text = serde_json::to_string(&issued).unwrap();
        assert!(
            !text.contains("sha256:abcd"),
            "no fingerprint in the record"
        );

        let refused = d.refused(
            Aadsts::InvalidSecret,
            401,
            "Invalid client secret provided.",
        );
        assert_eq!(refused.event_type, EventType::TokenRefused);
        assert_eq!(refused.status, Some(401));
        assert_eq!(refused.decision, Some(entraflow_audit::Decision::Deny));
        assert_eq!(
            refused.detail.as_deref(),
            Some("AADSTS7000215: Invalid client secret provided.")
        );
        let sign_in = Decision::at(
            AUTHORIZE_ENDPOINT,
            "authorization_code",
            &Default::default(),
        )
        .refused(Aadsts::InvalidUserNameOrPassword, 400, "wrong password");
        assert_eq!(
            sign_in.action.as_deref(),
            Some("oauth2/authorize:authorization_code")
        );
    }
}
