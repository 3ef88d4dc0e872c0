//! Application registrations: their identifier URIs, app roles and redirect
//! URIs, and deleting an application with everything that exists only for it.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::principals::delete_service_principals_of;
use super::{Store, now};
use crate::admin::{AppRole, Application};
use crate::error::AuthorityError;
use crate::redirect_uri::{MAX_REDIRECT_URIS, Platform, RedirectUris};

/// An application to store, with its URIs (already validated).
pub(crate) struct ApplicationRecord<'a> {
    pub(crate) object_id: &'a str,
    pub(crate) app_id: &'a str,
    pub(crate) tenant_id: &'a str,
    pub(crate) display_name: &'a str,
    pub(crate) token_version: i64,
    pub(crate) public_client: bool,
    pub(crate) group_claims: Option<&'a str>,
    pub(crate) identifier_uris: &'a [String],
    pub(crate) public_client_redirect_uris: &'a [String],
    pub(crate) web_redirect_uris: &'a [String],
}

/// A client application of a tenant, as a sign-in needs it.
pub(crate) struct TenantApp {
    pub(crate) app_id: String,
    pub(crate) display_name: String,
    /// Public-client flows (device code without a secret) are allowed.
    pub(crate) public_client: bool,
}

/// A registered application as a resource tokens are issued for.
pub(crate) struct ResourceApp {
    pub(crate) app_id: String,
    pub(crate) token_version: i64,
    pub(crate) group_claims: bool,
}

impl Store {
    /// Stores an application in one transaction; an identifier URI another
    /// application of the tenant has, or more redirect URIs than Entra allows,
    /// are refused with nothing written.
    pub(crate) fn insert_application(
        &self,
        app: &ApplicationRecord<'_>,
    ) -> Result<(), AuthorityError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO applications (object_id, app_id, tenant_id, display_name, token_version,
                 public_client, group_claims, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    app.object_id,
                    app.app_id,
                    app.tenant_id,
                    app.display_name,
                    app.token_version,
                    app.public_client,
                    app.group_claims,
                    now()
                ],
            )?;
            for uri in app.identifier_uris {
                let taken = tx.execute(
                    "INSERT OR IGNORE INTO identifier_uris (tenant_id, uri, app_id) VALUES (?1, ?2, ?3)",
                    params![app.tenant_id, uri, app.app_id],
                )?;
                if taken == 0 {
                    return Err(AuthorityError::invalid(format!(
                        "identifier URI '{uri}' is already used by another application in the tenant"
                    )));
                }
            }
            replace_redirect_uris(
                tx,
                app.app_id,
                Platform::PublicClient,
                app.public_client_redirect_uris,
            )?;
            replace_redirect_uris(tx, app.app_id, Platform::Web, app.web_redirect_uris)
        })
    }

    /// An application by client id (as given: callers lower-case it).
    pub(crate) fn application_by_app_id(
        &self,
        app_id: &str,
    ) -> Result<Option<Application>, AuthorityError> {
        let conn = self.conn();
        let row: Option<(String, String, bool, i64, Option<String>)> = conn
            .query_row(
                "SELECT object_id, display_name, public_client, token_version, group_claims
                 FROM applications WHERE app_id = ?1 COLLATE NOCASE",
                [app_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((id, display_name, public_client_flows, version, group_claims)) = row else {
            return Ok(None);
        };
        let mut stmt =
            conn.prepare("SELECT uri FROM identifier_uris WHERE app_id = ?1 ORDER BY uri")?;
        let identifier_uris = stmt
            .query_map([app_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT id, value, display_name FROM app_roles WHERE app_id = ?1 ORDER BY value",
        )?;
        let app_roles = stmt
            .query_map([app_id], |r| {
                Ok(AppRole::new(r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut public_client = RedirectUris::default();
        let mut web = RedirectUris::default();
        for (platform, uri) in redirect_uri_rows(&conn, app_id)? {
            match platform {
                Platform::PublicClient => public_client.redirect_uris.push(uri),
                Platform::Web => web.redirect_uris.push(uri),
            }
        }
        Ok(Some(Application {
            app_id: app_id.to_owned(),
            id,
            display_name,
            identifier_uris,
            is_fallback_public_client: public_client_flows,
            access_token_accepted_version: version,
            group_membership_claims: group_claims,
            app_roles,
            public_client,
            web,
        }))
    }

    /// Every application's client id, oldest first.
    pub(crate) fn application_ids(&self) -> Result<Vec<String>, AuthorityError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT app_id FROM applications ORDER BY created_at, app_id")?;
        Ok(stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// The client id of the application with this client id or object id (any case).
    pub(crate) fn app_id_by_id(&self, id: &str) -> Result<Option<String>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT app_id FROM applications WHERE app_id = ?1 COLLATE NOCASE OR object_id = ?1 COLLATE NOCASE",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Client `client_id` (any case) of a tenant.
    pub(crate) fn tenant_application(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<TenantApp>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT app_id, display_name, public_client FROM applications
                 WHERE app_id = ?1 COLLATE NOCASE AND tenant_id = ?2",
                [client_id, tenant_id],
                |r| {
                    Ok(TenantApp {
                        app_id: r.get(0)?,
                        display_name: r.get(1)?,
                        public_client: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// The application of a tenant that is `app_id` or `api_app_id` (any case),
    /// or has identifier URI `uri` or `trimmed_uri`.
    pub(crate) fn resource_application(
        &self,
        tenant_id: &str,
        app_id: &str,
        api_app_id: &str,
        uri: &str,
        trimmed_uri: &str,
    ) -> Result<Option<ResourceApp>, AuthorityError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT a.app_id, a.token_version, a.group_claims FROM applications a
                 WHERE a.tenant_id = ?1 AND (a.app_id = ?2 COLLATE NOCASE OR a.app_id = ?3 COLLATE NOCASE
                   OR a.app_id IN (SELECT app_id FROM identifier_uris WHERE tenant_id = ?1 AND (uri = ?4 OR uri = ?5)))",
                params![tenant_id, app_id, api_app_id, uri, trimmed_uri],
                |r| {
                    Ok(ResourceApp {
                        app_id: r.get(0)?,
                        token_version: r.get(1)?,
                        group_claims: r.get::<_, Option<String>>(2)?.is_some(),
                    })
                },
            )
            .optional()?)
    }

    /// Stores a role of `app_id`; false if the app has one with that value.
    pub(crate) fn insert_app_role(
        &self,
        app_id: &str,
        role: &AppRole,
    ) -> Result<bool, AuthorityError> {
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO app_roles (id, app_id, value, display_name) VALUES (?1, ?2, ?3, ?4)",
            params![role.id, app_id, role.value, role.display_name],
        )?;
        Ok(inserted != 0)
    }

    /// An application's registered redirect URIs, with their platform.
    pub(crate) fn redirect_uris(
        &self,
        app_id: &str,
    ) -> Result<Vec<(Platform, String)>, AuthorityError> {
        redirect_uri_rows(&self.conn(), app_id)
    }

    /// Replaces the redirect URIs (already validated) of each platform given, in
    /// one transaction.
    pub(crate) fn set_redirect_uris(
        &self,
        app_id: &str,
        platforms: &[(Platform, &[String])],
    ) -> Result<(), AuthorityError> {
        self.write(|tx| {
            for (platform, uris) in platforms {
                replace_redirect_uris(tx, app_id, *platform, uris)?;
            }
            Ok(())
        })
    }

    /// Deletes an application, its service principals, credentials and grants.
    pub(crate) fn delete_application_cascade(&self, app_id: &str) -> Result<(), AuthorityError> {
        self.write(|tx| {
            delete_service_principals_of(tx, app_id)?;
            for table in [
                "identifier_uris",
                "app_roles",
                "client_secrets",
                "certificates",
                "federated_credentials",
                "redirect_uris",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE app_id = ?1"), [app_id])?;
            }
            tx.execute(
                "DELETE FROM app_role_assignments WHERE resource_app_id = ?1",
                [app_id],
            )?;
            tx.execute("DELETE FROM applications WHERE app_id = ?1", [app_id])?;
            Ok(())
        })
    }
}

fn redirect_uri_rows(
    conn: &Connection,
    app_id: &str,
) -> Result<Vec<(Platform, String)>, AuthorityError> {
    let mut stmt = conn.prepare_cached(
        "SELECT platform, uri FROM redirect_uris WHERE app_id = ?1 COLLATE NOCASE ORDER BY platform, uri",
    )?;
    let rows: Vec<(String, String)> = stmt
        .query_map([app_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(p, uri)| Platform::parse(&p).map(|p| (p, uri)))
        .collect())
}

/// Replaces an application's URIs on `platform`, refusing more in all than
/// Entra allows.
fn replace_redirect_uris(
    tx: &Transaction<'_>,
    app_id: &str,
    platform: Platform,
    uris: &[String],
) -> Result<(), AuthorityError> {
    tx.execute(
        "DELETE FROM redirect_uris WHERE app_id = ?1 AND platform = ?2",
        params![app_id, platform.as_str()],
    )?;
    for uri in uris {
        tx.execute(
            "INSERT OR IGNORE INTO redirect_uris (app_id, platform, uri) VALUES (?1, ?2, ?3)",
            params![app_id, platform.as_str(), uri],
        )?;
    }
    let count: i64 = tx.query_row(
        "SELECT COUNT(*) FROM redirect_uris WHERE app_id = ?1",
        [app_id],
        |r| r.get(0),
    )?;
    if count > MAX_REDIRECT_URIS as i64 {
        return Err(AuthorityError::invalid(format!(
            "application {app_id} would have {count} redirect URIs; Entra allows {MAX_REDIRECT_URIS}"
        )));
    }
    Ok(())
}
