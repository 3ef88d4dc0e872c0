//! Tenant administration in the shape of `az ad`: what the CLI's `entraflow ad`
//! and `entraflow authority` commands call. Each command checks its input, writes
//! through the store and notes the change for the admin audit chain. It writes the
//! database directly: admin is local, authenticated by the data directory's file
//! permissions, and nothing here is reachable over the network.

use std::path::Path;

use serde::Serialize;

use crate::error::AuthorityError;
use crate::redirect_uri::{self, Platform, RedirectUris};
use crate::secrets;
use crate::store::{
    ApplicationRecord, CertificateRecord, ClientSecretRecord, ManagedIdentityRecord, Store, Tenant,
    UserRecord, now, rfc3339,
};

/// Entra's limit of federated identity credentials per application.
pub const MAX_FEDERATED_CREDENTIALS: usize = 20;

/// `tenant show`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantInfo {
    /// Tenant id.
    pub tenant_id: String,
    /// Display name.
    pub display_name: String,
    /// Verified domain, usable in place of the id in URLs.
    pub domain: String,
    /// Access-token lifetime range in seconds.
    pub token_lifetime: Lifetime,
}

/// A token lifetime range in seconds (`min == max` for a fixed lifetime).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Lifetime {
    /// Shortest lifetime.
    pub min: i64,
    /// Longest lifetime.
    pub max: i64,
}

impl std::str::FromStr for Lifetime {
    type Err = AuthorityError;

    /// `5` or `60-90` (seconds).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            AuthorityError::invalid(format!(
                "token lifetime '{s}' is not valid; give seconds, e.g. '5' or '3600-5400'"
            ))
        };
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let min: i64 = a.trim().parse().map_err(|_| bad())?;
        let max: i64 = b.trim().parse().map_err(|_| bad())?;
        if min < 1 || max < min || max > 86_400 {
            return Err(bad());
        }
        Ok(Lifetime { min, max })
    }
}

/// An application registration.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Client id.
    pub app_id: String,
    /// Object id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Application id URIs.
    pub identifier_uris: Vec<String>,
    /// Whether public-client flows (device code without a secret) are allowed.
    pub is_fallback_public_client: bool,
    /// `1` or `2`: the token version the app accepts as a resource.
    pub access_token_accepted_version: i64,
    /// `SecurityGroup` when tokens for this app carry `groups`.
    pub group_membership_claims: Option<String>,
    /// Roles defined on the app.
    pub app_roles: Vec<AppRole>,
    /// Mobile and desktop redirect URIs: public-client sign-ins (PKCE, no secret).
    pub public_client: RedirectUris,
    /// Web redirect URIs: confidential-client sign-ins (a secret or certificate).
    pub web: RedirectUris,
}

/// An app role.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppRole {
    /// Role id.
    pub id: String,
    /// The value that appears in `roles`.
    pub value: String,
    /// Display name.
    pub display_name: String,
    /// Always `["Application", "User"]` here.
    pub allowed_member_types: Vec<String>,
    /// Always true.
    pub is_enabled: bool,
}

impl AppRole {
    pub(crate) fn new(id: String, value: String, display_name: String) -> AppRole {
        AppRole {
            id,
            value,
            display_name,
            allowed_member_types: vec!["Application".into(), "User".into()],
            is_enabled: true,
        }
    }
}

/// A service principal.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    /// Object id (the `oid` of its tokens).
    pub id: String,
    /// The application's client id.
    pub app_id: String,
    /// Display name.
    pub display_name: String,
    /// `Application` or `ManagedIdentity`.
    pub service_principal_type: String,
}

/// The one-time answer of `credential reset`, with `az`'s keys.
#[derive(Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredential {
    /// Client id.
    pub app_id: String,
    /// The secret; shown only here.
    pub password: String,
    /// Tenant id.
    pub tenant: String,
    /// Expiry, RFC 3339.
    pub end_date_time: String,
}

impl std::fmt::Debug for PasswordCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordCredential")
            .field("app_id", &self.app_id)
            .field("password", &"****")
            .field("tenant", &self.tenant)
            .field("end_date_time", &self.end_date_time)
            .finish()
    }
}

/// An uploaded certificate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateCredential {
    /// Client id.
    pub app_id: String,
    /// SHA-1 thumbprint, upper-case hex as the portal shows it.
    pub thumbprint: String,
    /// Certificate expiry, RFC 3339.
    pub end_date_time: String,
}

/// A secret or certificate of an application as `az ad app credential list`
/// prints it (Graph's `passwordCredential` / `keyCredential`); never the secret.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppCredentialInfo {
    /// The id `credential delete --key-id` takes.
    pub key_id: String,
    /// Certificates: the SHA-1 thumbprint (upper-case hex); secrets: none.
    pub custom_key_identifier: Option<String>,
    /// Secrets: their first characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// When it was added, RFC 3339 (unknown for certificates uploaded before
    /// entraflow kept it).
    pub start_date_time: Option<String>,
    /// Expiry, RFC 3339.
    pub end_date_time: String,
    /// Certificates: `AsymmetricX509Cert`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Certificates: `Verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<&'static str>,
}

/// A federated identity credential.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredential {
    /// Credential id.
    pub id: String,
    /// Name, unique per app.
    pub name: String,
    /// Issuer, compared exactly.
    pub issuer: String,
    /// Subject, compared exactly.
    pub subject: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
}

/// An app role assignment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    /// Assignment id.
    pub id: String,
    /// Object id of the user, group, service principal or managed identity.
    pub principal_id: String,
    /// Client id of the resource application.
    pub resource_id: String,
    /// The role's id.
    pub app_role_id: String,
    /// The role's value.
    pub value: String,
}

/// A user.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Object id.
    pub id: String,
    /// UPN.
    pub user_principal_name: String,
    /// Display name.
    pub display_name: String,
}

/// A security group.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Object id.
    pub id: String,
    /// Display name.
    pub display_name: String,
}

/// A managed identity.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentity {
    /// Client id (`client_id=` at IMDS).
    pub client_id: String,
    /// Object id of its service principal (`object_id=` at IMDS).
    pub principal_id: String,
    /// ARM resource id (`msi_res_id=` at IMDS; `xms_mirid` in tokens).
    pub id: String,
}

/// Options of `ad app create`.
#[derive(Debug, Clone, Default)]
pub struct NewApplication {
    /// Display name.
    pub display_name: String,
    /// `1` (default, like Entra's null) or `2`.
    pub token_version: Option<i64>,
    /// Allow public-client flows.
    pub public_client: bool,
    /// Application id URIs.
    pub identifier_uris: Vec<String>,
    /// `SecurityGroup` to emit `groups`.
    pub group_membership_claims: Option<String>,
}

/// When a new secret expires.
#[derive(Debug, Clone, Copy)]
pub enum SecretExpiry {
    /// Years from now.
    Years(u32),
    /// A fixed Unix time.
    At(i64),
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn not_found(kind: &'static str, id: &str, cmd: &'static str) -> AuthorityError {
    AuthorityError::NotFound {
        kind,
        id: id.to_owned(),
        cmd,
    }
}

impl Store {
    /// `authority tenant show`.
    pub fn tenant_info(&self) -> Result<TenantInfo, AuthorityError> {
        let t = self.default_tenant()?;
        Ok(tenant_info(t))
    }

    /// `authority tenant update --token-lifetime`.
    pub fn set_token_lifetime(&self, lifetime: Lifetime) -> Result<TenantInfo, AuthorityError> {
        let t = self.default_tenant()?;
        self.update_token_lifetime(&t.id, lifetime.min, lifetime.max)?;
        self.changed("tenant.update", &[("tenant", &t.id)]);
        self.tenant_info()
    }

    /// `ad app create`.
    pub fn create_application(&self, new: &NewApplication) -> Result<Application, AuthorityError> {
        self.create_application_with_redirect_uris(new, &[], &[])
    }

    /// `ad app create --public-client-redirect-uris … --web-redirect-uris …`.
    pub fn create_application_with_redirect_uris(
        &self,
        new: &NewApplication,
        public_client_redirect_uris: &[String],
        web_redirect_uris: &[String],
    ) -> Result<Application, AuthorityError> {
        let tenant = self.default_tenant()?;
        let version = new.token_version.unwrap_or(1);
        if !(1..=2).contains(&version) {
            return Err(AuthorityError::invalid(format!(
                "token version {version} is not valid; use 1 or 2"
            )));
        }
        if let Some(g) = &new.group_membership_claims
            && !matches!(g.as_str(), "SecurityGroup" | "All" | "None")
        {
            return Err(AuthorityError::invalid(format!(
                "group membership claims '{g}' is not valid; use SecurityGroup, All or None"
            )));
        }
        if new.display_name.trim().is_empty() {
            return Err(AuthorityError::invalid(
                "the display name must not be empty",
            ));
        }
        let app_id = new_id();
        let object_id = new_id();
        for uri in &new.identifier_uris {
            url::Url::parse(uri).map_err(|_| {
                AuthorityError::invalid(format!(
                    "identifier URI '{uri}' is not a URI; use e.g. api://{app_id}"
                ))
            })?;
        }
        redirect_uri::validate_all(Platform::PublicClient, public_client_redirect_uris)?;
        redirect_uri::validate_all(Platform::Web, web_redirect_uris)?;
        self.insert_application(&ApplicationRecord {
            object_id: &object_id,
            app_id: &app_id,
            tenant_id: &tenant.id,
            display_name: &new.display_name,
            token_version: version,
            public_client: new.public_client,
            group_claims: new
                .group_membership_claims
                .as_deref()
                .filter(|g| *g != "None"),
            identifier_uris: &new.identifier_uris,
            public_client_redirect_uris,
            web_redirect_uris,
        })?;
        self.changed(
            "application.create",
            &[("application", &app_id), ("object", &object_id)],
        );
        self.application(&app_id)
    }

    /// An application by client id.
    pub fn application(&self, app_id: &str) -> Result<Application, AuthorityError> {
        let app_id = app_id.to_ascii_lowercase();
        self.application_by_app_id(&app_id)?
            .ok_or_else(|| not_found("application", &app_id, "app"))
    }

    /// `ad app list`.
    pub fn list_applications(&self) -> Result<Vec<Application>, AuthorityError> {
        self.application_ids()?
            .iter()
            .map(|id| self.application(id))
            .collect()
    }

    /// `ad sp create --id <appId>`.
    pub fn create_service_principal(
        &self,
        app_id: &str,
    ) -> Result<ServicePrincipal, AuthorityError> {
        let app = self.application(app_id)?;
        let tenant = self.default_tenant()?;
        let sp =
            self.ensure_service_principal(&new_id(), &app.app_id, &tenant.id, &app.display_name)?;
        self.changed(
            "service_principal.create",
            &[("service_principal", &sp.id), ("application", &sp.app_id)],
        );
        Ok(sp)
    }

    /// `ad app credential reset`: a new secret, shown once. Without `append` the
    /// app's other secrets are removed, as `az` does.
    pub fn reset_secret(
        &self,
        app_id: &str,
        expiry: SecretExpiry,
        append: bool,
    ) -> Result<PasswordCredential, AuthorityError> {
        let app = self.application(app_id)?;
        let tenant = self.default_tenant()?;
        let at = now();
        let end_at = match expiry {
            SecretExpiry::Years(y) => at + i64::from(y) * 365 * 86_400,
            SecretExpiry::At(t) => t,
        };
        let secret = secrets::generate();
        self.add_client_secret(
            &ClientSecretRecord {
                id: &new_id(),
                app_id: &app.app_id,
                sha256: &secrets::hash(&secret),
                hint: &secret[..3],
                end_at,
                created_at: at,
            },
            append,
        )?;
        // The secret itself never reaches the audit record.
        self.changed("application.secret.reset", &[("application", &app.app_id)]);
        Ok(PasswordCredential {
            app_id: app.app_id,
            password: secret,
            tenant: tenant.id,
            end_date_time: rfc3339(end_at),
        })
    }

    /// `ad app credential upload-cert --cert file.pem`.
    pub fn upload_certificate(
        &self,
        app_id: &str,
        pem_path: &Path,
    ) -> Result<CertificateCredential, AuthorityError> {
        let app = self.application(app_id)?;
        let pem = std::fs::read(pem_path).map_err(|source| AuthorityError::Io {
            what: "reading certificate",
            path: pem_path.to_owned(),
            source,
        })?;
        let der = x509_parser::pem::Pem::iter_from_buffer(&pem)
            .filter_map(Result::ok)
            .find(|p| p.label == "CERTIFICATE")
            .map(|p| p.contents)
            .ok_or_else(|| {
                AuthorityError::invalid(format!(
                    "{} holds no PEM 'CERTIFICATE' block; give the public certificate (not the key)",
                    pem_path.display()
                ))
            })?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
            AuthorityError::invalid(format!(
                "{} is not an X.509 certificate: {e}",
                pem_path.display()
            ))
        })?;
        if !matches!(
            cert.public_key().parsed(),
            Ok(x509_parser::public_key::PublicKey::RSA(_))
        ) {
            return Err(AuthorityError::invalid(
                "only RSA certificates are accepted (assertions are RS256 or PS256)",
            ));
        }
        let end_at = cert.validity().not_after.timestamp();
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        self.insert_certificate(&CertificateRecord {
            id: &new_id(),
            app_id: &app.app_id,
            der: &der,
            sha1: sha1.as_ref(),
            sha256: sha256.as_ref(),
            end_at,
        })?;
        let thumbprint = hex::encode_upper(sha1.as_ref());
        self.changed(
            "application.certificate.upload",
            &[("application", &app.app_id), ("certificate", &thumbprint)],
        );
        Ok(CertificateCredential {
            app_id: app.app_id,
            thumbprint,
            end_date_time: rfc3339(end_at),
        })
    }

    /// `ad app credential list [--cert]`: the app's secrets, or its certificates.
    pub fn list_app_credentials(
        &self,
        app: &str,
        cert: bool,
    ) -> Result<Vec<AppCredentialInfo>, AuthorityError> {
        let app_id = self.resolve_app_id(app)?;
        if cert {
            return Ok(self
                .certificates(&app_id)?
                .into_iter()
                .map(|(key_id, sha1, end_at)| AppCredentialInfo {
                    key_id,
                    custom_key_identifier: Some(hex::encode_upper(sha1)),
                    hint: None,
                    start_date_time: None,
                    end_date_time: rfc3339(end_at),
                    kind: Some("AsymmetricX509Cert"),
                    usage: Some("Verify"),
                })
                .collect());
        }
        Ok(self
            .client_secrets(&app_id)?
            .into_iter()
            .map(|(key_id, hint, start, end)| AppCredentialInfo {
                key_id,
                custom_key_identifier: None,
                hint: Some(hint),
                start_date_time: Some(rfc3339(start)),
                end_date_time: rfc3339(end),
                kind: None,
                usage: None,
            })
            .collect())
    }

    /// `ad app credential delete --key-id [--cert]`: the secret or certificate
    /// stops authenticating the app at once.
    pub fn delete_app_credential_by_key_id(
        &self,
        app: &str,
        key_id: &str,
        cert: bool,
    ) -> Result<(), AuthorityError> {
        let app_id = self.resolve_app_id(app)?;
        let what = if cert { "certificate" } else { "secret" };
        if !self.delete_app_credential(&app_id, key_id, cert)? {
            let flag = if cert { " --cert" } else { "" };
            return Err(AuthorityError::invalid(format!(
                "application {app_id} has no {what} with key id '{key_id}'; list them with `entraflow ad app credential list --id {app_id}{flag}`"
            )));
        }
        self.changed(
            if cert {
                "application.certificate.delete"
            } else {
                "application.secret.delete"
            },
            &[("application", &app_id), (what, key_id)],
        );
        Ok(())
    }

    /// `ad app federated-credential create`.
    pub fn create_federated_credential(
        &self,
        app_id: &str,
        name: &str,
        issuer: &str,
        subject: &str,
        audiences: &[String],
    ) -> Result<FederatedCredential, AuthorityError> {
        // `--id` is the appId or the object id, as in az.
        let app = self.application(&self.resolve_app_id(app_id)?)?;
        if self.list_federated_credentials(&app.app_id)?.len() >= MAX_FEDERATED_CREDENTIALS {
            return Err(AuthorityError::invalid(format!(
                "application {} already has {MAX_FEDERATED_CREDENTIALS} federated identity credentials, Entra's limit; delete one first",
                app.app_id
            )));
        }
        if issuer.is_empty() || subject.is_empty() || name.is_empty() {
            return Err(AuthorityError::invalid(
                "name, issuer and subject must not be empty",
            ));
        }
        // Entra requires an HTTPS issuer; the string is kept exactly as given,
        // since it is compared byte for byte with the token's `iss`.
        match url::Url::parse(issuer) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
            _ => {
                return Err(AuthorityError::invalid(format!(
                    "issuer '{issuer}' is not an https URL; give the issuer exactly as in the tokens' 'iss', e.g. https://oidc.example.com/cluster"
                )));
            }
        }
        if issuer.trim() != issuer || subject.trim() != subject {
            return Err(AuthorityError::invalid(
                "issuer and subject must not start or end with whitespace: they are compared exactly",
            ));
        }
        if subject.contains('*') || issuer.contains('*') {
            return Err(AuthorityError::invalid(
                "federated identity credentials match exactly; wildcards are not supported",
            ));
        }
        let audiences = if audiences.is_empty() {
            vec![entraflow_core::FEDERATION_AUDIENCE.to_owned()]
        } else {
            audiences.to_vec()
        };
        let credential = FederatedCredential {
            id: new_id(),
            name: name.into(),
            issuer: issuer.into(),
            subject: subject.into(),
            audiences,
        };
        if !self.insert_federated_credential(&app.app_id, &credential)? {
            return Err(AuthorityError::invalid(format!(
                "application {} already has a federated identity credential named '{name}'",
                app.app_id
            )));
        }
        self.changed(
            "application.federated_credential.create",
            &[
                ("application", &app.app_id),
                ("federated_credential", &credential.id),
            ],
        );
        Ok(credential)
    }

    /// `ad app role create`.
    pub fn create_app_role(
        &self,
        app_id: &str,
        value: &str,
        display_name: Option<&str>,
    ) -> Result<AppRole, AuthorityError> {
        let app = self.application(app_id)?;
        if value.is_empty() || value.contains(char::is_whitespace) {
            return Err(AuthorityError::invalid(format!(
                "role value '{value}' is not valid; use e.g. Data.Read (no spaces)"
            )));
        }
        let role = AppRole::new(new_id(), value.into(), display_name.unwrap_or(value).into());
        if !self.insert_app_role(&app.app_id, &role)? {
            return Err(AuthorityError::invalid(format!(
                "application {} already has a role '{value}'",
                app.app_id
            )));
        }
        self.changed(
            "application.app_role.create",
            &[("application", &app.app_id), ("app_role", &role.id)],
        );
        Ok(role)
    }

    /// `ad app role assign --principal <objectId> --resource <appId> --role <value>`.
    pub fn assign_app_role(
        &self,
        principal_id: &str,
        resource_app_id: &str,
        role: &str,
    ) -> Result<RoleAssignment, AuthorityError> {
        let app = self.application(resource_app_id)?;
        let role_id = app
            .app_roles
            .iter()
            .find(|r| r.value == role || r.id == role)
            .map(|r| r.id.clone())
            .ok_or_else(|| {
                AuthorityError::invalid(format!(
                    "application {} has no role '{role}'; create it with `entraflow ad app role create`",
                    app.app_id
                ))
            })?;
        let principal_id = principal_id.to_ascii_lowercase();
        if !self.principal_exists(&principal_id)? {
            return Err(not_found("principal", &principal_id, "sp"));
        }
        let id =
            self.insert_app_role_assignment(&new_id(), &principal_id, &app.app_id, &role_id)?;
        self.changed(
            "app_role_assignment.create",
            &[
                ("app_role_assignment", &id),
                ("principal", &principal_id),
                ("resource_application", &app.app_id),
                ("app_role", &role_id),
            ],
        );
        Ok(RoleAssignment {
            id,
            principal_id,
            resource_id: app.app_id,
            app_role_id: role_id,
            value: role.into(),
        })
    }

    /// `ad user create`. A password (for the device-login page) is stored as an
    /// argon2id hash: unlike client secrets, people choose guessable ones.
    pub fn create_user(
        &self,
        upn: &str,
        display_name: &str,
        password: Option<&str>,
    ) -> Result<User, AuthorityError> {
        let tenant = self.default_tenant()?;
        if !upn.contains('@') || upn.contains(char::is_whitespace) {
            return Err(AuthorityError::invalid(format!(
                "'{upn}' is not a user principal name; use name@domain"
            )));
        }
        let hash = password.map(crate::password::hash).transpose()?;
        let id = new_id();
        let inserted = self.insert_user(&UserRecord {
            id: &id,
            tenant_id: &tenant.id,
            upn,
            display_name,
            password_hash: hash.as_deref(),
        })?;
        if !inserted {
            return Err(AuthorityError::invalid(format!(
                "a user '{upn}' already exists"
            )));
        }
        // A password, if any, stays out of the record.
        self.changed("user.create", &[("user", &id), ("upn", upn)]);
        Ok(User {
            id,
            user_principal_name: upn.into(),
            display_name: display_name.into(),
        })
    }

    /// `ad group create`.
    pub fn create_group(&self, display_name: &str) -> Result<Group, AuthorityError> {
        let tenant = self.default_tenant()?;
        let group = Group {
            id: new_id(),
            display_name: display_name.into(),
        };
        self.insert_group(&group, &tenant.id)?;
        self.changed("group.create", &[("group", &group.id)]);
        Ok(group)
    }

    /// `ad group member add`.
    pub fn add_group_member(&self, group_id: &str, member_id: &str) -> Result<(), AuthorityError> {
        let group_id = group_id.to_ascii_lowercase();
        let member_id = member_id.to_ascii_lowercase();
        if !self.group_exists(&group_id)? {
            return Err(not_found("group", &group_id, "group"));
        }
        if !self.principal_exists(&member_id)? {
            return Err(not_found("member", &member_id, "user"));
        }
        self.insert_group_member(&group_id, &member_id)?;
        self.changed(
            "group.member.add",
            &[("group", &group_id), ("member", &member_id)],
        );
        Ok(())
    }

    /// `ad identity create --name N [--host H]` (user-assigned) or
    /// `--system-assigned --host H`.
    pub fn create_managed_identity(
        &self,
        name: Option<&str>,
        host: &str,
        system_assigned: bool,
    ) -> Result<ManagedIdentity, AuthorityError> {
        let tenant = self.default_tenant()?;
        let sub = self.subscription_id()?;
        let (name, resource_id) = match (system_assigned, name) {
            (true, _) => (
                host.to_owned(),
                format!(
                    "/subscriptions/{sub}/resourceGroups/entraflow/providers/Microsoft.Compute/virtualMachines/{host}"
                ),
            ),
            (false, Some(n)) if !n.is_empty() && !n.contains('/') => (
                n.to_owned(),
                format!(
                    "/subscriptions/{sub}/resourceGroups/entraflow/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}"
                ),
            ),
            _ => {
                return Err(AuthorityError::invalid(
                    "a user-assigned identity needs --name (no '/'); or pass --system-assigned",
                ));
            }
        };
        let mi = ManagedIdentity {
            client_id: new_id(),
            principal_id: new_id(),
            id: resource_id,
        };
        self.insert_managed_identity(&ManagedIdentityRecord {
            identity: &mi,
            tenant_id: &tenant.id,
            name: &name,
            host,
            system_assigned,
        })?;
        self.changed(
            "managed_identity.create",
            &[
                ("managed_identity", &mi.principal_id),
                ("client", &mi.client_id),
                ("resource", &mi.id),
            ],
        );
        Ok(mi)
    }

    /// `authority issuer add --issuer <url> --jwks-file <path>`: trust an external
    /// issuer offline. The file is re-read at every exchange so that rotating it works.
    pub fn add_trusted_issuer(&self, issuer: &str, jwks_file: &Path) -> Result<(), AuthorityError> {
        let text = std::fs::read_to_string(jwks_file).map_err(|source| AuthorityError::Io {
            what: "reading JWKS file",
            path: jwks_file.to_owned(),
            source,
        })?;
        serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&text).map_err(|e| {
            AuthorityError::invalid(format!(
                "{} is not a JWKS document: {e}",
                jwks_file.display()
            ))
        })?;
        let path = std::fs::canonicalize(jwks_file).unwrap_or_else(|_| jwks_file.to_owned());
        self.set_trusted_issuer(issuer, &path.to_string_lossy())?;
        self.changed("trusted_issuer.add", &[("issuer", issuer)]);
        Ok(())
    }

    /// `authority approve <USER_CODE> --user <UPN> [--deny]`: completes the
    /// browser step of a device-code sign-in.
    pub fn approve_device_code(
        &self,
        user_code: &str,
        upn: &str,
        deny: bool,
    ) -> Result<(), AuthorityError> {
        let (user_id, code) = self.answer_device_code(user_code, upn, deny)?;
        self.changed(
            if deny {
                "device_code.decline"
            } else {
                "device_code.approve"
            },
            &[("user", &user_id), ("user_code", &code)],
        );
        Ok(())
    }

    /// Marks a pending user code approved or declined for `upn`; returns the
    /// user's object id and the normalized code. The user's own sign-in on the
    /// device-login page comes here directly: it is not an admin change.
    pub(crate) fn answer_device_code(
        &self,
        user_code: &str,
        upn: &str,
        deny: bool,
    ) -> Result<(String, String), AuthorityError> {
        let (user, _) = self
            .user_by_upn(upn)?
            .ok_or_else(|| not_found("user", upn, "user"))?;
        let code = user_code.trim().to_ascii_uppercase();
        if !self.set_device_code_answer(&code, &user.id, deny)? {
            return Err(AuthorityError::invalid(format!(
                "no pending device code '{code}' (it may have expired, or was already answered)"
            )));
        }
        Ok((user.id, code))
    }
}

fn tenant_info(t: Tenant) -> TenantInfo {
    TenantInfo {
        tenant_id: t.id,
        display_name: t.display_name,
        domain: t.domain,
        token_lifetime: Lifetime {
            min: t.lifetime_min,
            max: t.lifetime_max,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_parses_fixed_and_ranges() {
        assert_eq!(
            "5".parse::<Lifetime>().unwrap(),
            Lifetime { min: 5, max: 5 }
        );
        assert_eq!(
            "60-90".parse::<Lifetime>().unwrap(),
            Lifetime { min: 60, max: 90 }
        );
        assert!("90-60".parse::<Lifetime>().is_err());
        assert!("0".parse::<Lifetime>().is_err());
        assert!("x".parse::<Lifetime>().is_err());
    }

    #[test]
    fn federated_credentials_are_limited_to_twenty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let app = store
            .create_application(&NewApplication {
                display_name: "a".into(),
                ..Default::default()
            })
            .unwrap();
        for i in 0..MAX_FEDERATED_CREDENTIALS {
            store
                .create_federated_credential(&app.app_id, &format!("f{i}"), "https://i", "s", &[])
                .unwrap();
        }
        let err = store
            .create_federated_credential(&app.app_id, "f21", "https://i", "s", &[])
            .unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert_eq!(
            store.list_federated_credentials(&app.app_id).unwrap()[0].audiences,
            vec![entraflow_core::FEDERATION_AUDIENCE]
        );
    }

    #[test]
    fn identifier_uris_are_unique_and_roles_assign() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let new = NewApplication {
            display_name: "api".into(),
            identifier_uris: vec!["api://data".into()],
            ..Default::default()
        };
        let api = store.create_application(&new).unwrap();
        assert!(store.create_application(&new).is_err());
        let client = store
            .create_application(&NewApplication {
                display_name: "client".into(),
                ..Default::default()
            })
            .unwrap();
        let sp = store.create_service_principal(&client.app_id).unwrap();
        assert_eq!(store.create_service_principal(&client.app_id).unwrap(), sp);
        store
            .create_app_role(&api.app_id, "Data.Read", None)
            .unwrap();
        let a = store
            .assign_app_role(&sp.id, &api.app_id, "Data.Read")
            .unwrap();
        assert_eq!(a.value, "Data.Read");
        assert!(store.assign_app_role(&sp.id, &api.app_id, "Nope").is_err());
        assert!(
            store
                .assign_app_role("not-a-principal", &api.app_id, "Data.Read")
                .is_err()
        );
    }
}
