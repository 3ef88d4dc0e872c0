//! Confidential clients: an application proving itself to the token endpoint with a
//! secret, a certificate-signed assertion, or a federated (workload identity) token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use entraflow_core::{JWT_BEARER_ASSERTION_TYPE, Secret, env};

use crate::assertion::CertificateSigner;
use crate::authority::{AuthorityHost, TokenResponse, post_form};
use crate::cache::{CacheKey, RefreshPolicy, TokenCache};
use crate::error::CredentialError;
use crate::http::{ClientKind, HttpClient};
use crate::token::{AccessToken, TokenCredential, TokenFuture, TokenRequest};
use crate::vars::Environment;

/// Settings every authority-backed credential shares.
#[derive(Debug, Clone)]
pub struct CredentialOptions {
    /// Where the token endpoint lives.
    pub authority: AuthorityHost,
    /// The cache's rules.
    pub refresh: RefreshPolicy,
    /// A CA certificate (PEM) to trust besides the system roots and `SSL_CERT_FILE`,
    /// e.g. a local authority's `ca.pem`.
    pub extra_ca_pem: Option<String>,
}

impl Default for CredentialOptions {
    fn default() -> Self {
        Self {
            authority: AuthorityHost::public_cloud(),
            refresh: RefreshPolicy::default(),
            extra_ca_pem: None,
        }
    }
}

impl CredentialOptions {
    /// Authority from `AZURE_AUTHORITY_HOST` (see [`AuthorityHost::from_env`]), default policy.
    pub fn from_env() -> Result<Self, CredentialError> {
        Self::from_environment(&Environment::process())
    }

    /// Like [`Self::from_env`] from `vars`. Every `SSL_CERT_FILE` the layers name is
    /// trusted explicitly, so a process-wide system bundle does not hide the local
    /// authority's CA from its env file.
    pub fn from_environment(vars: &Environment) -> Result<Self, CredentialError> {
        let mut bundles = Vec::new();
        for path in vars.get_all(env::SSL_CERT_FILE) {
            bundles.push(std::fs::read_to_string(&path).map_err(|e| {
                CredentialError::Misconfigured {
                    variable: env::SSL_CERT_FILE.into(),
                    hint: format!("cannot read the CA bundle {path}: {e}"),
                }
            })?);
        }
        let extra_ca_pem = (!bundles.is_empty()).then(|| bundles.join("\n"));
        Ok(Self {
            authority: AuthorityHost::from_environment(vars)?,
            extra_ca_pem,
            ..Self::default()
        })
    }

    pub(crate) fn http_client(&self) -> HttpClient {
        HttpClient::new(ClientKind::Authority {
            extra_ca_pem: self.extra_ca_pem.clone(),
        })
    }
}

/// How the application proves who it is.
enum ClientAuth {
    Secret(Secret),
    Certificate(CertificateSigner),
    /// Re-read on every exchange: the kubelet rotates it (~80 % of its lifetime).
    FederatedTokenFile(PathBuf),
}

struct Confidential {
    name: &'static str,
    tenant: String,
    client_id: String,
    authority: AuthorityHost,
    auth: ClientAuth,
    http: HttpClient,
    cache: TokenCache,
}

impl Confidential {
    fn new(
        name: &'static str,
        tenant: &str,
        client_id: &str,
        auth: ClientAuth,
        options: CredentialOptions,
    ) -> Result<Arc<Self>, CredentialError> {
        require(env::AZURE_TENANT_ID, tenant)?;
        require(env::AZURE_CLIENT_ID, client_id)?;
        Ok(Arc::new(Self {
            name,
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            http: options.http_client(),
            authority: options.authority,
            auth,
            cache: TokenCache::new(options.refresh),
        }))
    }

    fn key(&self, request: &TokenRequest) -> CacheKey {
        CacheKey {
            tenant: self.tenant_for(request).to_owned(),
            client: self.client_id.clone(),
            scopes: request.scope_string(),
            claims: request.claims.clone(),
        }
    }

    fn tenant_for<'a>(&'a self, request: &'a TokenRequest) -> &'a str {
        request.tenant_id.as_deref().unwrap_or(&self.tenant)
    }

    async fn get_token(
        self: &Arc<Self>,
        request: &TokenRequest,
    ) -> Result<AccessToken, CredentialError> {
        let key = self.key(request);
        let this = self.clone();
        let request = request.clone();
        self.cache
            .get(&key, move || async move { this.fetch(&request).await })
            .await
    }

    async fn fetch(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        let url = self.authority.token_endpoint(self.tenant_for(request));
        let scope = request.scope_string();
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
            ("scope", scope),
        ];
        if let Some(claims) = &request.claims {
            form.push(("claims", claims.clone()));
        }
        match &self.auth {
            ClientAuth::Secret(secret) => form.push(("client_secret", secret.expose().to_owned())),
            ClientAuth::Certificate(signer) => {
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION_TYPE.into()));
                form.push(("client_assertion", signer.assertion(&self.client_id, &url)?));
            }
            ClientAuth::FederatedTokenFile(path) => {
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION_TYPE.into()));
                form.push(("client_assertion", read_federated_token(path).await?));
            }
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response: TokenResponse = post_form(&self.http, &url, &form)
            .await
            .map_err(|e| e.into_credential_error(&url))?;
        let token = response.access_token();
        tracing::debug!(credential = self.name, client_id = %self.client_id, token = %token.fingerprint(),
            expires_on = token.expires_on, "acquired a token");
        Ok(token)
    }
}

async fn read_federated_token(path: &Path) -> Result<String, CredentialError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| CredentialError::Misconfigured {
            variable: env::AZURE_FEDERATED_TOKEN_FILE.into(),
            hint: format!(
                "cannot read the federated token file {}: {e}; check the service account token projection",
                path.display()
            ),
        })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CredentialError::Misconfigured {
            variable: env::AZURE_FEDERATED_TOKEN_FILE.into(),
            hint: format!("the federated token file {} is empty", path.display()),
        });
    }
    Ok(token.to_owned())
}

fn require(variable: &str, value: &str) -> Result<(), CredentialError> {
    if value.trim().is_empty() {
        return Err(CredentialError::Misconfigured {
            variable: variable.into(),
            hint: "it is empty; set it to the directory (tenant) or application (client) id".into(),
        });
    }
    Ok(())
}

macro_rules! confidential_credential {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            inner: Arc<Confidential>,
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("tenant", &self.inner.tenant)
                    .field("client_id", &self.inner.client_id)
                    .field("authority", &self.inner.authority)
                    .finish_non_exhaustive()
            }
        }

        impl TokenCredential for $name {
            fn get_token<'a>(&'a self, request: &'a TokenRequest) -> TokenFuture<'a> {
                Box::pin(self.inner.get_token(request))
            }

            fn cached_token(&self, request: &TokenRequest) -> Option<AccessToken> {
                self.inner.cache.fresh(&self.inner.key(request))
            }

            fn name(&self) -> &'static str {
                stringify!($name)
            }
        }
    };
}

confidential_credential!(
    /// An application authenticating with a client secret (`AZURE_CLIENT_SECRET`).
    /// Prefer a certificate or workload identity: secrets leak and expire.
    ClientSecretCredential
);
confidential_credential!(
    /// An application authenticating with a certificate: each token request carries a
    /// fresh RS256 assertion signed by the certificate's key.
    ClientCertificateCredential
);
confidential_credential!(
    /// Workload identity (AKS, GitHub Actions, any OIDC issuer): the federated token in
    /// `AZURE_FEDERATED_TOKEN_FILE` is exchanged for an Entra token. The file is read
    /// again for every exchange, because the kubelet rotates it.
    WorkloadIdentityCredential
);

impl ClientSecretCredential {
    /// A credential for `client_id` in `tenant` with `secret`.
    pub fn new(
        tenant: &str,
        client_id: &str,
        secret: Secret,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        if secret.expose().is_empty() {
            return Err(CredentialError::Misconfigured {
                variable: env::AZURE_CLIENT_SECRET.into(),
                hint: "it is empty".into(),
            });
        }
        Ok(Self {
            inner: Confidential::new(
                "ClientSecretCredential",
                tenant,
                client_id,
                ClientAuth::Secret(secret),
                options,
            )?,
        })
    }
}

impl ClientCertificateCredential {
    /// A credential from a PEM holding the certificate and its PKCS#8 RSA key.
    /// Assertions carry `x5t#S256`; see [`CertificateOptions`] for `x5t` and `x5c`.
    pub fn from_pem(
        tenant: &str,
        client_id: &str,
        pem: &Secret,
        certificate: CertificateOptions,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        let signer = CertificateSigner::from_pem(pem.expose(), certificate)?;
        Ok(Self {
            inner: Confidential::new(
                "ClientCertificateCredential",
                tenant,
                client_id,
                ClientAuth::Certificate(signer),
                options,
            )?,
        })
    }

    /// Like [`Self::from_pem`], reading `path` (`AZURE_CLIENT_CERTIFICATE_PATH`).
    pub fn from_file(
        tenant: &str,
        client_id: &str,
        path: &Path,
        certificate: CertificateOptions,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        let pem = std::fs::read_to_string(path).map_err(|e| CredentialError::Misconfigured {
            variable: env::AZURE_CLIENT_CERTIFICATE_PATH.into(),
            hint: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::from_pem(tenant, client_id, &Secret::new(pem), certificate, options)
    }
}

/// How certificate assertions identify the certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CertificateOptions {
    /// Also send the SHA-1 thumbprint `x5t` (what older SDKs send).
    pub send_sha1_thumbprint: bool,
    /// Send the certificate itself in `x5c` (subject-name/issuer authentication;
    /// `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN`).
    pub send_certificate_chain: bool,
}

impl WorkloadIdentityCredential {
    /// A credential exchanging the token in `token_file` for `client_id` in `tenant`.
    pub fn new(
        tenant: &str,
        client_id: &str,
        token_file: &Path,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        if token_file.as_os_str().is_empty() {
            return Err(CredentialError::Misconfigured {
                variable: env::AZURE_FEDERATED_TOKEN_FILE.into(),
                hint: "it is empty".into(),
            });
        }
        Ok(Self {
            inner: Confidential::new(
                "WorkloadIdentityCredential",
                tenant,
                client_id,
                ClientAuth::FederatedTokenFile(token_file.to_owned()),
                options,
            )?,
        })
    }

    /// From `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE` and
    /// `AZURE_AUTHORITY_HOST`, as AKS injects them.
    pub fn from_env() -> Result<Self, CredentialError> {
        let vars = Environment::process();
        Self::from_environment(&vars, CredentialOptions::from_environment(&vars)?)
    }

    /// Like [`Self::from_env`], from `vars`.
    pub fn from_environment(
        vars: &Environment,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        let values = crate::environment::require_vars(
            vars,
            "WorkloadIdentityCredential",
            &[
                env::AZURE_FEDERATED_TOKEN_FILE,
                env::AZURE_TENANT_ID,
                env::AZURE_CLIENT_ID,
            ],
        )?;
        Self::new(&values[1], &values[2], Path::new(&values[0]), options)
    }
}
