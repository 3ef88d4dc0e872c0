//! Managed identity endpoints on their own plain-HTTP listener, like the real ones:
//! the Azure Instance Metadata Service form (`/metadata/identity/oauth2/token`,
//! `Metadata: true`) and the App Service form (`/msi/token`, `X-IDENTITY-HEADER`).
//! Both serve only the identities assigned to this host. Every number in the
//! answer is a string, exactly as IMDS writes it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use entraflow_core::Aadsts;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use crate::authority::{Authority, ClientInfo};
use crate::decision::Decision;
use crate::error::AuthorityError;
use crate::issue::{self, Principal};
use crate::store::HostIdentity;

/// State of the managed-identity listener.
#[derive(Debug, Clone)]
pub(crate) struct ImdsState {
    pub(crate) authority: Arc<Authority>,
    pub(crate) host_name: String,
    /// SHA-256 of this run's `IDENTITY_HEADER`.
    pub(crate) identity_header_sha256: Vec<u8>,
}

fn imds_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// The managed-identity router.
pub(crate) fn router(state: ImdsState) -> Router {
    Router::new()
        .route("/metadata/identity/oauth2/token", get(imds_token))
        .route("/msi/token", get(app_service_token))
        .with_state(state)
}

/// Which identity a request names.
enum Selector<'a> {
    Default,
    ClientId(&'a str),
    ObjectId(&'a str),
    ResourceId(&'a str),
}

impl ImdsState {
    fn find(
        &self,
        selector: &Selector<'_>,
    ) -> Result<Result<HostIdentity, &'static str>, AuthorityError> {
        let mut assigned = self
            .authority
            .store
            .managed_identities_on_host(&self.host_name)?
            .into_iter();
        let found = match selector {
            Selector::ClientId(v) => assigned.find(|i| i.client_id.eq_ignore_ascii_case(v)),
            Selector::ObjectId(v) => assigned.find(|i| i.principal_id.eq_ignore_ascii_case(v)),
            Selector::ResourceId(v) => assigned.find(|i| i.resource_id.eq_ignore_ascii_case(v)),
            Selector::Default => {
                let (system, user): (Vec<_>, Vec<_>) = assigned.partition(|i| i.system_assigned);
                if let Some(system) = system.into_iter().next() {
                    Some(system)
                } else if user.len() > 1 {
                    return Ok(Err(
                        "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request",
                    ));
                } else {
                    user.into_iter().next()
                }
            }
        };
        Ok(found.ok_or("Identity not found"))
    }

    async fn token(
        &self,
        selector: Selector<'_>,
        resource: &str,
        app_service: bool,
        client: ClientInfo,
    ) -> Response {
        let grant = if app_service {
            "app_service_msi"
        } else {
            "imds"
        };
        let mut decision = Decision::new(grant, &client);
        decision.resource = Some(resource.to_owned());
        let (answer, event) = match self.issue(selector, resource, &mut decision) {
            Ok(Ok(body)) => (Json(body).into_response(), decision.issued()),
            Ok(Err((status, error, description, code))) => {
                let event = decision.refused(code, status.as_u16(), &description);
                (imds_error(status, error, &description), event)
            }
            Err(e) => {
                tracing::error!(error = %e, "managed identity token failed inside the authority");
                let description = "The token could not be issued; see the authority's log.";
                let event = decision.refused(Aadsts::MalformedRequest, 500, description);
                (
                    imds_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        description,
                    ),
                    event,
                )
            }
        };
        self.answer(answer, event).await
    }

    /// A request refused before an identity was even looked up (missing header,
    /// parameter, or a wrong `X-IDENTITY-HEADER`): refused all the same, and audited.
    async fn refuse(
        &self,
        app_service: bool,
        client: ClientInfo,
        status: StatusCode,
        description: &str,
    ) -> Response {
        let grant = if app_service {
            "app_service_msi"
        } else {
            "imds"
        };
        let event = Decision::new(grant, &client).refused(
            Aadsts::MalformedRequest,
            status.as_u16(),
            description,
        );
        self.answer(imds_error(status, "invalid_request", description), event)
            .await
    }

    /// Sends `answer` only once its event is durable.
    async fn answer(&self, answer: Response, event: entraflow_audit::Event) -> Response {
        match self.authority.record(event).await {
            Ok(()) => answer,
            Err(e) => imds_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                &e.to_string(),
            ),
        }
    }

    /// The token for the selected identity, or the refusal to send.
    #[allow(
        clippy::type_complexity,
        reason = "one private call site; the tuple is the IMDS error shape"
    )]
    fn issue(
        &self,
        selector: Selector<'_>,
        resource: &str,
        decision: &mut Decision,
    ) -> Result<Result<Value, (StatusCode, &'static str, String, Aadsts)>, AuthorityError> {
        let authority = &self.authority;
        let identity = match self.find(&selector)? {
            Ok(i) => i,
            Err(msg) => {
                return Ok(Err((
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    msg.to_owned(),
                    Aadsts::AppNotFound,
                )));
            }
        };
        let tenant = authority.store.default_tenant()?;
        decision.tenant = Some(tenant.id.clone());
        decision.principal = Some(identity.principal_id.clone());
        decision.client_id = Some(identity.client_id.clone());
        decision.principal_name = Some(identity.resource_id.clone());
        let Some(res) = authority.store.resolve_resource(&tenant.id, resource)? else {
            let desc = format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant named {}.",
                tenant.id
            );
            return Ok(Err((
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                desc,
                Aadsts::ResourceNotFound,
            )));
        };
        let principal = Principal::App {
            oid: identity.principal_id.clone(),
            app_id: identity.client_id.clone(),
            acr: "2",
            mirid: Some(identity.resource_id.clone()),
        };
        let key = authority.key_ring()?.active.clone();
        let issued = issue::access_token(
            &authority.store,
            &key,
            &authority.host,
            &tenant,
            &res,
            &principal,
        )?;
        decision.resource = Some(res.identifier.clone());
        decision.uti = Some(issued.claims.uti.clone());
        decision.token_fingerprint = Some(entraflow_core::fingerprint(&issued.access_token));
        let c = &issued.claims;
        let expires_in = (c.exp - c.iat).to_string();
        Ok(Ok(json!({
            "access_token": issued.access_token,
            "client_id": identity.client_id,
            "expires_in": expires_in,
            "expires_on": c.exp.to_string(),
            "ext_expires_in": expires_in,
            "not_before": c.nbf.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        })))
    }
}

fn selector<'a>(
    q: &'a HashMap<String, String>,
    res_id_name: &str,
    object_id_name: &str,
) -> Result<Selector<'a>, &'static str> {
    let given: Vec<Selector<'a>> = [
        q.get("client_id").map(|v| Selector::ClientId(v)),
        q.get(object_id_name).map(|v| Selector::ObjectId(v)),
        q.get(res_id_name).map(|v| Selector::ResourceId(v)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err("Only one of client_id, object_id or msi_res_id may be specified");
    }
    Ok(given.into_iter().next().unwrap_or(Selector::Default))
}

async fn imds_token(
    State(state): State<ImdsState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("true"))
        != Some(true)
    {
        return state
            .refuse(
                false,
                client_info(peer, &headers),
                StatusCode::BAD_REQUEST,
                "Required metadata header not specified",
            )
            .await;
    }
    answer(
        &state,
        false,
        client_info(peer, &headers),
        query,
        ("msi_res_id", "object_id"),
    )
    .await
}

async fn app_service_token(
    State(state): State<ImdsState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let presented = headers
        .get("x-identity-header")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented);
    if presented.is_empty() || !bool::from(hash.as_ref().ct_eq(&state.identity_header_sha256)) {
        return state
            .refuse(
                true,
                client_info(peer, &headers),
                StatusCode::UNAUTHORIZED,
                "The X-IDENTITY-HEADER is missing or does not match this host's IDENTITY_HEADER",
            )
            .await;
    }
    answer(
        &state,
        true,
        client_info(peer, &headers),
        query,
        ("mi_res_id", "principal_id"),
    )
    .await
}

/// What IMDS and App Service share once the caller has shown it is on the host: the
/// query (api-version, resource, at most one identity selector) and the answer.
/// The two forms name their resource-id and object-id parameters differently.
async fn answer(
    state: &ImdsState,
    app_service: bool,
    client: ClientInfo,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    (resource_id, object_id): (&str, &str),
) -> Response {
    let Ok(Query(q)) = query else {
        return state
            .refuse(
                app_service,
                client,
                StatusCode::BAD_REQUEST,
                "The query string is malformed",
            )
            .await;
    };
    let request = if q.get("api-version").is_none_or(|v| v.is_empty()) {
        Err("Required query variable 'api-version' is missing")
    } else {
        match q.get("resource").filter(|r| !r.is_empty()) {
            None => Err("Required query variable 'resource' is missing"),
            Some(resource) => selector(&q, resource_id, object_id).map(|sel| (sel, resource)),
        }
    };
    match request {
        Ok((sel, resource)) => state.token(sel, resource, app_service, client).await,
        Err(msg) => {
            state
                .refuse(app_service, client, StatusCode::BAD_REQUEST, msg)
                .await
        }
    }
}

fn client_info(peer: std::net::SocketAddr, headers: &HeaderMap) -> ClientInfo {
    ClientInfo::new(
        Some(peer),
        headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}
