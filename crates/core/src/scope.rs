//! Scopes and resources: Entra ID issues a token for exactly one resource.

use thiserror::Error;

/// Why a scope string cannot be turned into a resource.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// No scope at all.
    #[error("no scope was given; ask for '<resource>/.default'")]
    Empty,
    /// More than one resource in one request.
    #[error("the scopes name more than one resource ({0} and {1}); request one resource at a time")]
    MultipleResources(String, String),
    /// Not a URI or GUID-shaped resource.
    #[error("'{0}' is not a valid scope; use '<resource>/.default'")]
    Invalid(String),
}

/// OIDC scopes that do not name a resource.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// The resource a single scope belongs to: `https://storage.azure.com/.default` →
/// `https://storage.azure.com`, `api://app/read` → `api://app`.
pub fn resource_of_scope(scope: &str) -> Result<String, ScopeError> {
    let scope = scope.trim();
    if scope.is_empty() {
        return Err(ScopeError::Empty);
    }
    if !scope.contains('/') {
        // A bare GUID or URI without a permission part is the resource itself (v1 style).
        return Ok(scope.to_owned());
    }
    let (resource, permission) = scope
        .rsplit_once('/')
        .ok_or_else(|| ScopeError::Invalid(scope.to_owned()))?;
    if permission.is_empty() || resource.is_empty() || resource.ends_with(':') {
        return Err(ScopeError::Invalid(scope.to_owned()));
    }
    Ok(resource.to_owned())
}

/// The one resource a space-separated scope list names, ignoring OIDC scopes.
pub fn single_resource(scopes: &str) -> Result<String, ScopeError> {
    let mut found: Option<String> = None;
    for scope in scopes.split_whitespace() {
        if OIDC_SCOPES.contains(&scope) {
            continue;
        }
        let resource = resource_of_scope(scope)?;
        match &found {
            Some(existing) if !same_resource(existing, &resource) => {
                return Err(ScopeError::MultipleResources(existing.clone(), resource));
            }
            Some(_) => {}
            None => found = Some(resource),
        }
    }
    found.ok_or(ScopeError::Empty)
}

/// Resource ids compare without a trailing slash (`https://management.azure.com/`).
pub fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// The `.default` scope of a resource.
pub fn default_scope(resource: &str) -> String {
    format!("{}/.default", resource.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scope_maps_to_resource() {
        assert_eq!(
            resource_of_scope("https://storage.azure.com/.default").unwrap(),
            "https://storage.azure.com"
        );
        assert_eq!(
            resource_of_scope("api://trainer/read").unwrap(),
            "api://trainer"
        );
        assert_eq!(
            default_scope("https://management.azure.com/"),
            "https://management.azure.com/.default"
        );
    }

    #[test]
    fn two_resources_are_refused() {
        let err = single_resource(
            "https://storage.azure.com/.default https://graph.microsoft.com/.default",
        )
        .unwrap_err();
        assert!(matches!(err, ScopeError::MultipleResources(..)));
        assert_eq!(
            single_resource("openid offline_access api://x/.default").unwrap(),
            "api://x"
        );
        assert_eq!(single_resource("openid"), Err(ScopeError::Empty));
        assert!(matches!(
            resource_of_scope("https://x/"),
            Err(ScopeError::Invalid(_))
        ));
    }
}
