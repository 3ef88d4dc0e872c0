//! Tenants and the `meta` table.

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::AuthorityError;

/// A tenant and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant id (GUID).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// The verified domain (`<name>.onmicrosoft.com`-like).
    pub domain: String,
    /// Lower bound of the randomized access-token lifetime, seconds.
    pub lifetime_min: i64,
    /// Upper bound, seconds.
    pub lifetime_max: i64,
}

impl Store {
    pub(super) fn ensure_default_tenant(&self) -> Result<(), AuthorityError> {
        let conn = self.conn();
        let exists: Option<String> = conn
            .query_row("SELECT id FROM tenants WHERE is_default = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        let id = match exists {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                let domain = format!("entraflow{}.onmicrosoft.com", &id[..8]);
                conn.execute(
                    "INSERT INTO tenants (id, display_name, domain, lifetime_min, lifetime_max, is_default)
                     VALUES (?1, 'entraflow local', ?2, 3600, 5400, 1)",
                    params![id, domain],
                )?;
                id
            }
        };
        // Like Entra, every tenant knows the Azure CLI's public client, so a person
        // can `entraflow login` (device code) or `az login` (authorization code on a
        // loopback redirect) before registering any application.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        conn.execute(
            "INSERT OR IGNORE INTO applications (object_id, app_id, tenant_id, display_name,
             token_version, public_client, group_claims, created_at)
             VALUES (?1, ?2, ?3, 'Microsoft Azure CLI', 1, 1, NULL, ?4)",
            params![
                uuid::Uuid::new_v4().to_string(),
                entraflow_core::AZURE_CLI_CLIENT_ID,
                id,
                now
            ],
        )?;
        conn.execute(
            "INSERT OR IGNORE INTO service_principals (object_id, app_id, tenant_id, display_name, kind)
             VALUES (?1, ?2, ?3, 'Microsoft Azure CLI', 'Application')",
            params![uuid::Uuid::new_v4().to_string(), entraflow_core::AZURE_CLI_CLIENT_ID, id],
        )?;
        conn.execute(
            "INSERT OR IGNORE INTO redirect_uris (app_id, platform, uri) VALUES (?1, ?2, 'http://localhost')",
            params![
                entraflow_core::AZURE_CLI_CLIENT_ID,
                crate::redirect_uri::Platform::PublicClient.as_str()
            ],
        )?;
        Ok(())
    }

    /// The default tenant (created on first open).
    pub fn default_tenant(&self) -> Result<Tenant, AuthorityError> {
        self.conn()
            .query_row(
                "SELECT id, display_name, domain, lifetime_min, lifetime_max FROM tenants WHERE is_default = 1",
                [],
                tenant_row,
            )
            .map_err(Into::into)
    }

    /// A tenant by id or by domain.
    pub fn find_tenant(&self, id_or_domain: &str) -> Result<Option<Tenant>, AuthorityError> {
        self.conn()
            .query_row(
                "SELECT id, display_name, domain, lifetime_min, lifetime_max FROM tenants
                 WHERE id = ?1 COLLATE NOCASE OR domain = ?1",
                [id_or_domain],
                tenant_row,
            )
            .optional()
            .map_err(Into::into)
    }

    /// A value from the `meta` table.
    pub(super) fn meta(&self, key: &str) -> Result<Option<String>, AuthorityError> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(Into::into)
    }

    /// Sets a tenant's access-token lifetime range, seconds.
    pub(crate) fn update_token_lifetime(
        &self,
        tenant_id: &str,
        min: i64,
        max: i64,
    ) -> Result<(), AuthorityError> {
        self.conn().execute(
            "UPDATE tenants SET lifetime_min = ?1, lifetime_max = ?2 WHERE id = ?3",
            params![min, max, tenant_id],
        )?;
        Ok(())
    }

    /// The subscription id managed identities' resource ids name, made on first use.
    pub(crate) fn subscription_id(&self) -> Result<String, AuthorityError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('subscription_id', ?1)",
            [uuid::Uuid::new_v4().to_string()],
        )?;
        Ok(conn.query_row(
            "SELECT value FROM meta WHERE key = 'subscription_id'",
            [],
            |r| r.get(0),
        )?)
    }
}

fn tenant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        display_name: r.get(1)?,
        domain: r.get(2)?,
        lifetime_min: r.get(3)?,
        lifetime_max: r.get(4)?,
    })
}
