//! The admin API: role assignments and role definitions managed over HTTPS in the
//! shape of Azure Resource Manager (`Microsoft.Authorization`), so `az rest`, the
//! Azure SDKs' ARM conventions and plain `requests` calls work as they do against
//! Azure.
//!
//! Routes (on the gate's HTTPS listener, `api-version` required as ARM requires it):
//! - `PUT|GET|DELETE {scope}/providers/Microsoft.Authorization/roleAssignments/{guid}`
//! - `GET {scope}/providers/Microsoft.Authorization/roleAssignments[?$filter=atScope() and principalId eq '{oid}']`
//! - `PUT|GET {scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}`
//! - `GET {scope}/providers/Microsoft.Authorization/roleDefinitions[?$filter=roleName eq '{name}']`
//!
//! A path belongs here when its first segment is `subscriptions` or `providers`
//! (ARM scopes start so); Blob paths start with the account name, and the gate
//! refuses to serve an account with either name, so the two never collide.
//!
//! Every request needs a bearer token for Azure Resource Manager
//! (`aud` `https://management.azure.com/` or `https://management.core.windows.net/`,
//! with or without the slash), verified with the same keys, issuers and tenants as
//! Blob tokens; a Storage token is refused here and an ARM token on Blob paths.
//! Then RBAC, deny by default, at the scope in the path: writing an assignment needs
//! `Microsoft.Authorization/roleAssignments/write`, deleting one `.../delete`,
//! reading `.../read`; role definitions need `roleDefinitions/read|write` (write at
//! every assignable scope the role has and will have, since an update reaches every
//! assignment of the role). Owner and User Access Administrator grant them all.
//! Every request, allowed or not, is one audit event, durable before the response
//! (`admin.change` for PUT/DELETE, `admin.read` for GET, `authz.denied`,
//! `authn.failed`); its `resource` is the assignment's or definition's ARM id.

mod error;
pub(crate) mod shape;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, request::Parts};
use axum::response::Response;
use entraflow_audit::EventType;
use entraflow_rbac::{NewAssignment, PrincipalType, Request as RbacRequest, Scope, action};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::guard::{Access, GateState, Guard, HttpWire, Wire, header};
use crate::operation::Query;
use crate::verify::{AuthError, TokenVerifier};
use error::{ArmError, invalid_assignment_id};
use shape::{AssignmentFilter, DefinitionFilter, PutAssignment};

/// Event type of admin API reads.
pub(crate) const ADMIN_READ: &str = "admin.read";
/// First path segments that route to the admin API.
pub(crate) const ADMIN_ROOTS: [&str; 2] = ["subscriptions", "providers"];
/// Largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;
const PROVIDER: &str = "/providers/microsoft.authorization/";

/// Whether a request path is for the admin API rather than Blob storage.
pub(crate) fn is_admin_path(path: &str, account: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    first != account && ADMIN_ROOTS.iter().any(|r| first.eq_ignore_ascii_case(r))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Assignments,
    Definitions,
}

/// What an admin path names: a scope, a collection, and maybe one item.
#[derive(Debug)]
struct Target {
    scope: Scope,
    collection: Collection,
    name: Option<String>,
}

impl Target {
    fn parse(raw_path: &str) -> Result<Self, ArmError> {
        let path = percent_decode_str(raw_path).decode_utf8().map_err(|_| {
            ArmError::bad_request("InvalidRequestUri", "The request path is not valid UTF-8.")
        })?;
        let lower = path.to_ascii_lowercase();
        // The last one: a scope may itself contain `/providers/Microsoft.Storage/...`.
        let Some(at) = lower.rfind(PROVIDER) else {
            return Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!(
                    "The gate's admin API serves only '<scope>/providers/Microsoft.Authorization/roleAssignments' and '.../roleDefinitions'; '{path}' is neither."
                ),
            ));
        };
        let scope_text = match &path[..at] {
            "" => "/",
            s => s,
        };
        let scope = Scope::parse(scope_text)
            .map_err(|e| ArmError::bad_request("InvalidScope", e.to_string()))?;
        let rest = path[at + PROVIDER.len()..].trim_end_matches('/');
        let mut parts = rest.split('/');
        let collection = match parts.next().unwrap_or("") {
            c if c.eq_ignore_ascii_case("roleAssignments") => Collection::Assignments,
            c if c.eq_ignore_ascii_case("roleDefinitions") => Collection::Definitions,
            other => {
                return Err(ArmError::bad_request(
                    "InvalidResourceType",
                    format!(
                        "The resource type '{other}' could not be found in the namespace 'Microsoft.Authorization'; the gate serves roleAssignments and roleDefinitions."
                    ),
                ));
            }
        };
        let name = parts.next().filter(|n| !n.is_empty()).map(str::to_owned);
        if parts.next().is_some() {
            return Err(ArmError::bad_request(
                "InvalidResourceType",
                format!(
                    "'{path}' goes below a {}; name one item by its GUID.",
                    rest.split('/').next().unwrap_or("")
                ),
            ));
        }
        Ok(Self {
            scope,
            collection,
            name,
        })
    }

    /// The ARM id of what the path names (for the audit record).
    fn resource_id(&self) -> String {
        let base = match self.scope.as_str() {
            "/" => "",
            s => s,
        };
        let collection = match self.collection {
            Collection::Assignments => "roleAssignments",
            Collection::Definitions => "roleDefinitions",
        };
        let mut id = format!("{base}/providers/Microsoft.Authorization/{collection}");
        if let Some(name) = &self.name {
            id.push('/');
            id.push_str(name);
        }
        id
    }
}

/// The action a request needs at its scope.
fn required_action(method: &Method, collection: Collection) -> &'static str {
    match (collection, method.as_str()) {
        (Collection::Assignments, "PUT") => action::ROLE_ASSIGNMENTS_WRITE,
        (Collection::Assignments, "DELETE") => action::ROLE_ASSIGNMENTS_DELETE,
        (Collection::Assignments, _) => action::ROLE_ASSIGNMENTS_READ,
        (Collection::Definitions, "PUT") => action::ROLE_DEFINITIONS_WRITE,
        (Collection::Definitions, _) => action::ROLE_DEFINITIONS_READ,
    }
}

impl Wire for ArmError {
    fn verifier(state: &GateState) -> &TokenVerifier {
        &state.admin_verifier
    }

    fn unauthenticated(err: &AuthError, state: &GateState) -> Self {
        ArmError::authentication(err, &state.admin_challenge)
    }

    fn forbidden(denial: &entraflow_rbac::Denial) -> Self {
        ArmError::authorization_failed(denial)
    }

    fn audit_unavailable() -> Self {
        ArmError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The audit log is unavailable, so the request cannot be confirmed. Retry the request; list the role assignments to see whether a change took effect.",
        )
    }

    fn summary(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

impl HttpWire for ArmError {
    fn into_response(self, _request_id: &str, _head: bool) -> Response {
        ArmError::into_response(self)
    }

    fn stamp(response: &mut Response, request_id: &str, request: &HeaderMap) {
        let h = response.headers_mut();
        let set = |h: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        set(h, "x-ms-request-id", request_id);
        set(
            h,
            "x-ms-correlation-request-id",
            header(request, "x-ms-correlation-request-id").unwrap_or(request_id),
        );
        if let Some(id) = header(request, "x-ms-client-request-id") {
            set(h, "x-ms-client-request-id", id);
        }
    }
}

/// Serves one admin API request through the guard.
pub(crate) async fn handle(state: Arc<GateState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let write = matches!(parts.method, Method::PUT | Method::DELETE);
    let event_type = if write {
        EventType::AdminChange
    } else {
        EventType::Other(ADMIN_READ.into())
    };
    let mut guard = Guard::begin(&state, event_type, &parts);
    guard.set_operation(if write {
        crate::metrics::OpLabel::AdminChange
    } else {
        crate::metrics::OpLabel::AdminRead
    });
    let result = process(&mut guard, &parts, body).await;
    guard.finish(result, false, &parts.headers).await
}

async fn process(guard: &mut Guard, parts: &Parts, body: Body) -> Result<Response, ArmError> {
    // The path is parsed first so that even a refused request is audited with what
    // it named, but its errors are reported only to authenticated callers.
    let target = Target::parse(parts.uri.path());
    if let Ok(t) = &target {
        let event = guard.event();
        event.resource = Some(t.resource_id());
        event.action = Some(required_action(&parts.method, t.collection).to_owned());
    }
    guard
        .authenticate::<ArmError>(header(&parts.headers, "authorization"))
        .await?;
    let target = target?;
    let query = Query::parse(parts.uri.query());
    check_api_version(query.get("api-version"))?;
    let body = match parts.method {
        Method::PUT => Some(read_body(body).await?),
        _ => None,
    };
    // Every admin request needs its action at the path's scope; writing a role
    // definition needs more, checked by its handler.
    let action = required_action(&parts.method, target.collection);
    let access = guard.authorize::<ArmError>(RbacRequest::control(action, target.scope.clone()))?;
    let mut admin = Admin {
        access,
        target: &target,
    };
    match (
        &parts.method,
        target.collection,
        target.name.as_deref(),
        body,
    ) {
        (&Method::GET, Collection::Assignments, None, _) => {
            admin.list_assignments(query.get("$filter"))
        }
        (&Method::GET, Collection::Assignments, Some(name), _) => admin.get_assignment(name),
        (&Method::PUT, Collection::Assignments, Some(name), Some(body)) => {
            admin.put_assignment(name, &body).await
        }
        (&Method::DELETE, Collection::Assignments, Some(name), _) => {
            admin.delete_assignment(name).await
        }
        (&Method::GET, Collection::Definitions, None, _) => {
            admin.list_definitions(query.get("$filter"))
        }
        (&Method::GET, Collection::Definitions, Some(name), _) => admin.get_definition(name),
        (&Method::PUT, Collection::Definitions, Some(name), Some(body)) => {
            admin.put_definition(name, &body).await
        }
        (method, ..) => Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "The requested resource does not support http method '{method}'. Collections take GET; items take GET, PUT and (role assignments) DELETE."
            ),
        )),
    }
}

/// `api-version` is required, as ARM requires it; any dated version is accepted
/// (the shapes served are those of 2022-04-01, which older clients read too).
fn check_api_version(version: Option<&str>) -> Result<(), ArmError> {
    let Some(v) = version.filter(|v| !v.is_empty()) else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests. Use api-version=2022-04-01.",
        ));
    };
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let dated = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if dated {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!("The api-version '{v}' is invalid. Use a dated version such as 2022-04-01."),
        ))
    }
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ArmError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ArmError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestContentTooLarge",
            format!("The request content is larger than {MAX_BODY} bytes."),
        )
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ArmError> {
    serde_json::from_slice(body).map_err(|e| {
        ArmError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn guid(name: &str) -> Option<String> {
    uuid::Uuid::parse_str(name).ok().map(|u| u.to_string())
}

/// One authorized request's handlers.
struct Admin<'a, 'g> {
    access: Access<'g>,
    target: &'a Target,
}

impl Admin<'_, '_> {
    fn store(&self) -> &entraflow_rbac::RbacStore {
        self.access.rbac()
    }

    fn refresh(&self) {
        self.access.refresh_policy();
    }

    fn event(&mut self) -> &mut entraflow_audit::Event {
        self.access.event()
    }

    /// Makes the decision durable, saying what is about to change, before the store
    /// is touched.
    async fn decide(&mut self, intent: String) -> Result<(), ArmError> {
        self.access.record_decision::<ArmError>(Some(intent)).await
    }

    fn all_assignments(&self) -> Result<Vec<entraflow_rbac::RoleAssignment>, ArmError> {
        self.store().assignments().map_err(ArmError::from_rbac)
    }

    /// The assignment named `name` at exactly this scope.
    fn find_assignment(
        &self,
        name: &str,
    ) -> Result<Option<entraflow_rbac::RoleAssignment>, ArmError> {
        let name = name.to_ascii_lowercase();
        Ok(self
            .all_assignments()?
            .into_iter()
            .find(|a| a.name == name && a.scope == self.target.scope))
    }

    fn list_assignments(&mut self, filter: Option<&str>) -> Result<Response, ArmError> {
        let filter = AssignmentFilter::parse(filter)?;
        let scope = &self.target.scope;
        // As ARM lists them: assignments that apply here (at or above), and with no
        // `atScope()` also those below.
        let value: Vec<Value> = self
            .all_assignments()?
            .iter()
            .filter(|a| a.scope.contains(scope) || (!filter.at_scope && scope.contains(&a.scope)))
            .filter(|a| {
                filter
                    .principal_id
                    .as_deref()
                    .is_none_or(|p| a.principal_id == p)
            })
            .map(shape::assignment)
            .collect();
        self.event().detail = Some(format!("listed {} role assignments", value.len()));
        Ok(json(StatusCode::OK, &json!({ "value": value })))
    }

    fn get_assignment(&mut self, name: &str) -> Result<Response, ArmError> {
        match self.find_assignment(name)? {
            Some(a) => Ok(json(StatusCode::OK, &shape::assignment(&a))),
            None => Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "RoleAssignmentNotFound",
                format!(
                    "The role assignment '{name}' is not found at scope '{}'.",
                    self.target.scope
                ),
            )),
        }
    }

    async fn put_assignment(&mut self, name: &str, body: &[u8]) -> Result<Response, ArmError> {
        let name = guid(name).ok_or_else(|| invalid_assignment_id(name))?;
        let PutAssignment { properties: p } = parse_json(body)?;
        let role_guid = p
            .role_definition_id
            .trim()
            .rsplit('/')
            .next()
            .and_then(guid)
            .ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidRoleDefinitionId",
                    format!("The role definition ID '{}' is not valid; give '/providers/Microsoft.Authorization/roleDefinitions/<guid>' or the GUID.", p.role_definition_id),
                )
                .target("properties.roleDefinitionId")
            })?;
        let role = self
            .store()
            .find_definition(&role_guid)
            .map_err(ArmError::from_rbac)?;
        let principal_type = match p.principal_type.as_deref() {
            None => PrincipalType::ServicePrincipal,
            Some(t) => PrincipalType::parse(t).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidPrincipalType",
                    format!("The principal type '{t}' is not valid; use User, Group, ServicePrincipal or ManagedIdentity."),
                )
                .target("properties.principalType")
            })?,
        };
        let now = OffsetDateTime::now_utc();
        let expires_at = p
            .expires_on
            .as_deref()
            .map(|t| entraflow_rbac::parse_expiry(t, now))
            .transpose()
            .map_err(ArmError::from_rbac)?;
        let principal_id = p.principal_id.trim().to_ascii_lowercase();
        let scope = &self.target.scope;

        let existing = self.all_assignments()?;
        if let Some(same_name) = existing.iter().find(|a| a.name == name) {
            let unchanged = same_name.scope == *scope
                && same_name.principal_id == principal_id
                && same_name.role_definition_id.eq_ignore_ascii_case(&role.id)
                && same_name.condition == p.condition
                && same_name.description == p.description
                && same_name.expires_at == expires_at;
            if unchanged {
                // PUT is idempotent: the same assignment again is a success.
                self.event().detail = Some(format!(
                    "role assignment {} already exists as requested",
                    same_name.id()
                ));
                return Ok(json(StatusCode::OK, &shape::assignment(same_name)));
            }
            return Err(ArmError::new(
                StatusCode::CONFLICT,
                "RoleAssignmentUpdateNotPermitted",
                format!(
                    "The role assignment '{name}' exists with other properties; its principal, role, scope, condition, description and expiry cannot be changed. Delete it and create a new one."
                ),
            ));
        }
        self.decide(format!(
            "creating role assignment {name}: role '{}' ({}) for {principal_type} {principal_id} at {scope}",
            role.name, role.id
        ))
        .await?;
        let new = NewAssignment {
            principal_id: principal_id.clone(),
            principal_type,
            role: role.id.clone(),
            scope: scope.as_str().to_owned(),
            condition: p.condition,
            condition_version: p.condition_version,
            expires_at,
            description: p.description,
        };
        let created = self
            .store()
            .create_assignment_named(&name, new, now)
            .map_err(ArmError::from_rbac)?;
        self.refresh();
        self.event().resource = Some(created.id());
        let mut detail = format!(
            "created role assignment {}: role '{}' ({}) for {} {} at {}",
            created.name,
            role.name,
            role.id,
            created.principal_type,
            created.principal_id,
            created.scope
        );
        if created.condition.is_some() {
            detail.push_str(", with a condition");
        }
        if let Some(t) = created.expires_at {
            detail.push_str(&format!(", expires {t}"));
        }
        self.event().detail = Some(detail);
        Ok(json(StatusCode::CREATED, &shape::assignment(&created)))
    }

    async fn delete_assignment(&mut self, name: &str) -> Result<Response, ArmError> {
        let Some(found) = self.find_assignment(name)? else {
            // As ARM: deleting what is not there is 204, not an error.
            self.event().detail = Some(format!(
                "no role assignment '{name}' at this scope; nothing deleted"
            ));
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            return Ok(response);
        };
        self.decide(format!(
            "deleting role assignment {}: role {} for {} {} at {}",
            found.name,
            found.role_definition_id,
            found.principal_type,
            found.principal_id,
            found.scope
        ))
        .await?;
        let deleted = self
            .store()
            .delete_assignment(&found.id())
            .map_err(ArmError::from_rbac)?;
        self.refresh();
        let role = self
            .store()
            .find_definition(&deleted.role_definition_id)
            .map(|d| d.name)
            .unwrap_or_else(|_| deleted.role_definition_id.clone());
        self.event().detail = Some(format!(
            "deleted role assignment {}: role '{}' ({}) for {} {} at {}",
            deleted.name,
            role,
            deleted.role_definition_id,
            deleted.principal_type,
            deleted.principal_id,
            deleted.scope
        ));
        Ok(json(StatusCode::OK, &shape::assignment(&deleted)))
    }

    fn list_definitions(&mut self, filter: Option<&str>) -> Result<Response, ArmError> {
        let filter = DefinitionFilter::parse(filter)?;
        let scope = &self.target.scope;
        let value: Vec<Value> = self
            .store()
            .definitions()
            .map_err(ArmError::from_rbac)?
            .iter()
            .filter(|d| scope.as_str() == "/" || d.assignable_at(scope))
            .filter(|d| filter.matches(d))
            .map(|d| shape::definition(d, scope))
            .collect();
        self.event().detail = Some(format!("listed {} role definitions", value.len()));
        Ok(json(StatusCode::OK, &json!({ "value": value })))
    }

    fn get_definition(&mut self, name: &str) -> Result<Response, ArmError> {
        let not_found = || {
            ArmError::new(
                StatusCode::NOT_FOUND,
                "RoleDefinitionDoesNotExist",
                format!("The specified role definition with ID '{name}' does not exist."),
            )
        };
        let id = guid(name).ok_or_else(not_found)?;
        let def = self.store().find_definition(&id).map_err(|_| not_found())?;
        Ok(json(
            StatusCode::OK,
            &shape::definition(&def, &self.target.scope),
        ))
    }

    async fn put_definition(&mut self, name: &str, body: &[u8]) -> Result<Response, ArmError> {
        let id = guid(name).ok_or_else(|| {
            ArmError::bad_request(
                "InvalidRoleDefinitionId",
                format!("The role definition ID '{name}' is not valid. The role definition ID must be a GUID."),
            )
        })?;
        let mut doc: Value = parse_json(body)?;
        let Some(top) = doc.as_object_mut() else {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "The request content must be a JSON object.",
            ));
        };
        // The path names the role; a body that names another one is a mistake.
        let named = ["name", "id"]
            .iter()
            .filter_map(|k| top.get(*k).and_then(Value::as_str))
            .filter_map(|v| guid(v.rsplit('/').next().unwrap_or(v)))
            .find(|g| *g != id);
        if let Some(other) = named {
            return Err(ArmError::bad_request(
                "RoleDefinitionIdMismatch",
                format!("The body names role definition '{other}' but the path names '{id}'."),
            ));
        }
        top.insert("name".into(), Value::String(id.clone()));
        top.remove("id");
        if let Some(props) = top.get_mut("properties").and_then(Value::as_object_mut)
            && let Some(kind) = props.get("type").and_then(Value::as_str)
            && !kind.eq_ignore_ascii_case("CustomRole")
        {
            return Err(ArmError::bad_request(
                "InvalidRoleDefinition",
                format!(
                    "Only custom roles can be created (properties.type '{kind}'); built-in roles are Azure's."
                ),
            ));
        }
        let def = entraflow_rbac::RoleDefinition::from_json(&doc.to_string())
            .map_err(|e| ArmError::bad_request("InvalidRoleDefinition", e.to_string()))?;
        let prior = self
            .store()
            .definitions()
            .map_err(ArmError::from_rbac)?
            .into_iter()
            .find(|d| d.id.eq_ignore_ascii_case(&def.id));
        // Azure's rule: changing a role needs write at every scope it is assignable at
        // now *and* will be, since the change reaches every assignment of the role
        // within the old scopes as well as the new.
        let old_scopes = prior.iter().flat_map(|p| p.assignable_scopes.iter());
        for scope in old_scopes.chain(&def.assignable_scopes) {
            self.access.authorize::<ArmError>(RbacRequest::control(
                action::ROLE_DEFINITIONS_WRITE,
                scope.clone(),
            ))?;
        }
        let verb = if prior.is_some() {
            "updating"
        } else {
            "creating"
        };
        self.decide(format!("{verb} custom role '{}' ({})", def.name, def.id))
            .await?;
        let (status, stored, verb) = if let Some(prior) = &prior {
            (
                StatusCode::OK,
                self.store().update_definition(prior, def),
                "updated",
            )
        } else {
            (
                StatusCode::CREATED,
                self.store().create_definition(def),
                "created",
            )
        };
        let stored = stored.map_err(ArmError::from_rbac)?;
        self.refresh();
        self.event().detail = Some(format!(
            "{verb} custom role '{}' ({})",
            stored.name, stored.id
        ));
        Ok(json(
            status,
            &shape::definition(&stored, &self.target.scope),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_paths_route_here_and_blob_paths_do_not() {
        assert!(is_admin_path(
            "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments",
            "acct"
        ));
        assert!(is_admin_path(
            "/providers/Microsoft.Authorization/roleDefinitions",
            "acct"
        ));
        assert!(!is_admin_path("/acct/subscriptions/x", "acct"));
        assert!(!is_admin_path("/acct", "acct"));
    }

    #[test]
    fn targets_split_at_the_last_authorization_provider() {
        let t = Target::parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/c/providers/Microsoft.Authorization/roleAssignments/G").unwrap();
        assert_eq!(t.scope.container_name(), Some("c"));
        assert_eq!(t.collection, Collection::Assignments);
        assert_eq!(t.name.as_deref(), Some("G"));
        let root = Target::parse("/providers/microsoft.authorization/roledefinitions").unwrap();
        assert_eq!(root.scope.as_str(), "/");
        assert_eq!(root.collection, Collection::Definitions);
        assert_eq!(
            root.resource_id(),
            "/providers/Microsoft.Authorization/roleDefinitions"
        );
        assert_eq!(
            Target::parse("/subscriptions/s/resourceGroups/rg")
                .unwrap_err()
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Target::parse("/subscriptions/s/providers/Microsoft.Authorization/locks")
                .unwrap_err()
                .code,
            "InvalidResourceType"
        );
        assert_eq!(
            Target::parse("/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/a/b")
                .unwrap_err()
                .code,
            "InvalidResourceType"
        );
    }

    #[test]
    fn api_versions_are_required_and_dated() {
        assert!(check_api_version(Some("2022-04-01")).is_ok());
        assert!(check_api_version(Some("2020-04-01-preview")).is_ok());
        assert_eq!(
            check_api_version(None).unwrap_err().code,
            "MissingApiVersionParameter"
        );
        assert_eq!(
            check_api_version(Some("latest")).unwrap_err().code,
            "InvalidApiVersionParameter"
        );
    }
}
