//! Resources a token can be issued for: the built-in first-party APIs and every
//! registered application (by identifier URI, `api://<appId>` or bare appId).

use crate::error::AuthorityError;
use crate::store::Store;

/// A first-party resource every tenant has.
#[derive(Debug, Clone, Copy)]
pub struct BuiltIn {
    /// Resource URI (the v1 `aud`).
    pub uri: &'static str,
    /// Its application id.
    pub app_id: &'static str,
    /// Display name.
    pub name: &'static str,
}

/// Azure Storage, Microsoft Graph, ARM, Azure SQL and Azure Database for
/// PostgreSQL: all accept v1 tokens.
pub const BUILT_IN: [BuiltIn; 5] = [
    BuiltIn {
        uri: entraflow_core::STORAGE_RESOURCE,
        app_id: entraflow_core::STORAGE_APP_ID,
        name: "Azure Storage",
    },
    BuiltIn {
        uri: "https://graph.microsoft.com",
        app_id: "00000003-0000-0000-c000-000000000000",
        name: "Microsoft Graph",
    },
    BuiltIn {
        uri: "https://management.azure.com/",
        app_id: "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        name: "Azure Resource Manager",
    },
    BuiltIn {
        uri: "https://database.windows.net/",
        app_id: "022907d3-0f1b-48f7-badc-1ba6abab6d66",
        name: "Azure SQL Database",
    },
    BuiltIn {
        uri: entraflow_core::OSSRDBMS_RESOURCE,
        app_id: entraflow_core::OSSRDBMS_APP_ID,
        name: "Azure OSSRDBMS Database",
    },
];

/// The resource a request resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The resource's application id.
    pub app_id: String,
    /// `aud` of v1 tokens: the identifier the client asked for.
    pub identifier: String,
    /// Accepted token version (1 or 2).
    pub version: i64,
    /// Whether tokens carry `groups`.
    pub group_claims: bool,
    /// Registered in the tenant (app roles can be assigned on it).
    pub registered: bool,
}

impl Resource {
    /// The `aud` claim: v2 tokens name the app id, v1 tokens the identifier asked for.
    pub fn audience(&self) -> &str {
        if self.version == 2 {
            &self.app_id
        } else {
            &self.identifier
        }
    }
}

impl Store {
    /// Looks a resource up by what a client put in `scope` or `resource`.
    pub fn resolve_resource(
        &self,
        tenant_id: &str,
        requested: &str,
    ) -> Result<Option<Resource>, AuthorityError> {
        if let Some(b) = BUILT_IN.iter().find(|b| {
            entraflow_core::scope::same_resource(b.uri, requested)
                || b.app_id.eq_ignore_ascii_case(requested)
        }) {
            return Ok(Some(Resource {
                app_id: b.app_id.into(),
                identifier: b.uri.into(),
                version: 1,
                group_claims: false,
                registered: false,
            }));
        }
        let trimmed = requested.trim_end_matches('/');
        let by_api_uri = trimmed.strip_prefix("api://").unwrap_or("");
        let app = self.resource_application(tenant_id, trimmed, by_api_uri, requested, trimmed)?;
        Ok(app.map(|app| Resource {
            app_id: app.app_id,
            identifier: trimmed.to_owned(),
            version: app.token_version,
            group_claims: app.group_claims,
            registered: true,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::NewApplication;

    #[test]
    fn resolves_builtins_identifier_uris_api_uri_and_app_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tid = store.default_tenant().unwrap().id;
        let st = store
            .resolve_resource(&tid, "https://storage.azure.com")
            .unwrap()
            .unwrap();
        assert_eq!(
            (st.version, st.audience()),
            (1, "https://storage.azure.com")
        );
        let arm = store
            .resolve_resource(&tid, "https://management.azure.com")
            .unwrap()
            .unwrap();
        assert_eq!(arm.audience(), "https://management.azure.com/");
        let pg = store
            .resolve_resource(&tid, "https://ossrdbms-aad.database.windows.net")
            .unwrap()
            .unwrap();
        assert_eq!(
            (pg.version, pg.audience()),
            (1, "https://ossrdbms-aad.database.windows.net")
        );

        let app = store
            .create_application(&NewApplication {
                display_name: "api".into(),
                token_version: Some(2),
                identifier_uris: vec!["api://data".into()],
                ..Default::default()
            })
            .unwrap();
        for form in ["api://data", &format!("api://{}", app.app_id), &app.app_id] {
            let r = store.resolve_resource(&tid, form).unwrap().unwrap();
            assert_eq!(r.app_id, app.app_id);
            assert_eq!(r.audience(), app.app_id, "v2 aud is the app id");
        }
        assert_eq!(store.resolve_resource(&tid, "api://unknown").unwrap(), None);
        assert_eq!(
            store
                .resolve_resource("other-tenant", "api://data")
                .unwrap(),
            None
        );
    }
}
