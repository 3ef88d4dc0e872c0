//! Who may see the evidence, decided and recorded before a page is made.
//!
//! A page handler takes a [`Viewer`], and a `Viewer` exists only for a
//! signed-in person whom the role store grants [`action::audit::READ`] at the
//! audit log's scope, through the same [`Authorizer`] the gates decide with,
//! and whose page view is durable on the console's audit chain. A person
//! without the role gets a 403 page naming the role and the scope, and that
//! refusal is on the chain too. If the log cannot take the record, nothing is
//! shown (503): no view of the evidence goes unrecorded.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use entraflow_audit::{Decision as Outcome, Event, EventType, Principal as AuditPrincipal};
use entraflow_gate::principal_with_groups;
use entraflow_rbac::{Decision, Request, action};

use crate::oidc::Identity;
use crate::pages;
use crate::server::App;
use crate::session::{SESSION_COOKIE, cookie_value};

/// Event type of a page view (allowed or denied) on the console's chain.
pub const PAGE_VIEW: &str = "console.view";
/// Event type of a sign-in the console refused (state, nonce, ID token).
pub const SIGN_IN_REFUSED: &str = "console.signin.refused";
/// Event type of a completed sign-in.
pub const SIGN_IN: &str = "console.signin";

/// A signed-in person allowed to read the audit log, whose view is recorded.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub(crate) identity: Identity,
    /// For the sign-out form.
    pub(crate) csrf: String,
    /// The role that granted the view and where it is assigned.
    pub(crate) role: String,
    pub(crate) grant_scope: String,
}

/// The audit record of something the console did for a person.
pub(crate) fn event(
    kind: &str,
    identity: Option<&Identity>,
    parts: &Parts,
    detail: String,
) -> Event {
    let mut event = Event::new(EventType::Other(kind.to_owned()));
    event.request_id = Some(uuid::Uuid::new_v4().to_string());
    if let Some(id) = identity {
        event.tenant = Some(id.tenant.clone());
        event.token_uti = Some(id.uti.clone());
        event.principal = Some(AuditPrincipal {
            oid: Some(id.oid.clone()),
            appid: None,
            name: Some(id.name.clone()),
        });
    }
    event.client_addr = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    event.user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());
    event.detail = Some(detail);
    event
}

/// The page asked for: method, path and query, bounded (it goes into the record).
pub(crate) fn page_of(parts: &Parts) -> String {
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .chars()
        .take(1024)
        .collect::<String>();
    format!("{} {path}", parts.method)
}

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let session =
            cookie_value(&parts.headers, SESSION_COOKIE).and_then(|id| app.sessions.get(&id));
        let Some(session) = session else {
            if parts.method == Method::GET {
                let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let to = format!(
                    "/signin?{}",
                    serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
                );
                return Err(Redirect::to(&to).into_response());
            }
            return Err(pages::error(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "Sign in first: this request needs a session.",
            ));
        };
        let identity = session.identity.clone();
        let principal = principal_with_groups(&identity.oid, &identity.groups, app.groups.as_ref());
        let request = Request::data(action::audit::READ, app.audit_scope.clone());
        let decision =
            app.authorizer
                .authorize(&principal, &request, time::OffsetDateTime::now_utc());
        let page = page_of(parts);
        let mut record = event(PAGE_VIEW, Some(&identity), parts, page.clone());
        record.action = Some(action::audit::READ.to_owned());
        record.resource = Some(app.audit_scope.to_string());
        match &decision {
            Decision::Allow {
                assignment_id,
                role_name,
                ..
            } => {
                record.decision = Some(Outcome::Allow);
                record.status = Some(200);
                record.assignment_id = Some(assignment_id.to_string());
                record.role_name = Some(role_name.to_string());
            }
            Decision::Deny(denial) => {
                record.event_type = EventType::AuthzDenied;
                record.decision = Some(Outcome::Deny);
                record.status = Some(403);
                record.detail = Some(format!("{page}: {denial}"));
            }
        }
        if let Err(e) = app.audit.append(record).await {
            tracing::error!(error = %e, page, "the console's audit log cannot take a page view");
            return Err(pages::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The audit log cannot record this view",
                &format!(
                    "Every view of the evidence is recorded, and this one could not be ({e}), so the page is not shown. Try again; if it persists, check the audit store."
                ),
            ));
        }
        match decision {
            Decision::Allow {
                role_name, scope, ..
            } => Ok(Viewer {
                identity,
                csrf: session.csrf,
                role: role_name.to_string(),
                grant_scope: scope.to_string(),
            }),
            Decision::Deny(denial) => Err(pages::forbidden(app, &identity, &session.csrf, &denial)),
        }
    }
}
