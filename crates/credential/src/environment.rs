//! `EnvironmentCredential`: a service principal described by environment variables,
//! secret first, then certificate, as azure-identity reads them.

use std::path::Path;

use entraflow_core::{Secret, env};

use crate::confidential::{
    CertificateOptions, ClientCertificateCredential, ClientSecretCredential, CredentialOptions,
};
use crate::error::CredentialError;
use crate::token::{AccessToken, TokenCredential, TokenFuture, TokenRequest};
use crate::vars::Environment;

/// A service principal from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and either
/// `AZURE_CLIENT_SECRET` or `AZURE_CLIENT_CERTIFICATE_PATH`.
#[derive(Debug, Clone)]
pub enum EnvironmentCredential {
    /// `AZURE_CLIENT_SECRET` was set.
    Secret(ClientSecretCredential),
    /// `AZURE_CLIENT_CERTIFICATE_PATH` was set.
    Certificate(ClientCertificateCredential),
}

impl EnvironmentCredential {
    /// Reads the process environment; `CredentialUnavailable` names what is missing.
    pub fn from_env() -> Result<Self, CredentialError> {
        let vars = Environment::process();
        Self::from_environment(&vars, CredentialOptions::from_environment(&vars)?)
    }

    /// Like [`Self::from_env`], from `vars`.
    pub fn from_environment(
        vars: &Environment,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        let values = require_vars(
            vars,
            "EnvironmentCredential",
            &[env::AZURE_TENANT_ID, env::AZURE_CLIENT_ID],
        )?;
        let (tenant, client_id) = (&values[0], &values[1]);
        if let Some(secret) = vars.get(env::AZURE_CLIENT_SECRET) {
            return ClientSecretCredential::new(tenant, client_id, Secret::new(secret), options)
                .map(Self::Secret);
        }
        if let Some(path) = vars.get(env::AZURE_CLIENT_CERTIFICATE_PATH) {
            if vars.get(env::AZURE_CLIENT_CERTIFICATE_PASSWORD).is_some() {
                return Err(CredentialError::Misconfigured {
                    variable: env::AZURE_CLIENT_CERTIFICATE_PASSWORD.into(),
                    hint: "password-protected certificates are not supported; provide an unencrypted PEM (certificate + PKCS#8 key) readable only by the job".into(),
                });
            }
            let certificate = CertificateOptions {
                send_sha1_thumbprint: false,
                send_certificate_chain: vars
                    .get(env::AZURE_CLIENT_SEND_CERTIFICATE_CHAIN)
                    .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            };
            return ClientCertificateCredential::from_file(
                tenant,
                client_id,
                Path::new(&path),
                certificate,
                options,
            )
            .map(Self::Certificate);
        }
        Err(CredentialError::CredentialUnavailable {
            credential: "EnvironmentCredential",
            reason: format!(
                "neither {} nor {} is set",
                env::AZURE_CLIENT_SECRET,
                env::AZURE_CLIENT_CERTIFICATE_PATH
            ),
        })
    }

    fn inner(&self) -> &dyn TokenCredential {
        match self {
            Self::Secret(c) => c,
            Self::Certificate(c) => c,
        }
    }
}

impl TokenCredential for EnvironmentCredential {
    fn get_token<'a>(&'a self, request: &'a TokenRequest) -> TokenFuture<'a> {
        self.inner().get_token(request)
    }

    fn cached_token(&self, request: &TokenRequest) -> Option<AccessToken> {
        self.inner().cached_token(request)
    }

    fn name(&self) -> &'static str {
        "EnvironmentCredential"
    }
}

/// The values of `names`, or `CredentialUnavailable` listing the unset ones.
pub(crate) fn require_vars(
    vars: &Environment,
    credential: &'static str,
    names: &[&str],
) -> Result<Vec<String>, CredentialError> {
    let values: Vec<Option<String>> = names.iter().map(|n| vars.get(n)).collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        let verb = if missing.len() == 1 { "is" } else { "are" };
        return Err(CredentialError::CredentialUnavailable {
            credential,
            reason: format!("{} {verb} not set", missing.join(", ")),
        });
    }
    Ok(values.into_iter().flatten().collect())
}
