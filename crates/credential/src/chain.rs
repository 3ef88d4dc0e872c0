//! `DefaultCredential`: the first credential that applies here, in azure-identity's
//! order — environment (secret, then certificate), workload identity, managed
//! identity, then the developer's `entraflow login`.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use entraflow_core::env;

use crate::cache::RefreshPolicy;
use crate::confidential::{CredentialOptions, WorkloadIdentityCredential};
use crate::device_code::{DeveloperLoginCredential, LoginCache};
use crate::environment::EnvironmentCredential;
use crate::error::CredentialError;
use crate::managed_identity::{
    ManagedIdentityCredential, ManagedIdentityId, ManagedIdentityOptions,
};
use crate::token::{AccessToken, TokenCredential, TokenFuture, TokenRequest};
use crate::vars::Environment;

/// How long the chain waits for a TCP connection to IMDS before deciding this host
/// has none. Only the connect is bounded; see [`crate::ManagedIdentityCredential`].
pub const IMDS_PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A chain of credentials. Credentials that do not apply are skipped; the first hard
/// failure stops the chain (so a job never silently runs as a different identity);
/// once one succeeds, it alone is used from then on.
pub struct ChainedCredential {
    links: Vec<Link>,
    chosen: OnceLock<usize>,
}

enum Link {
    Ready(Box<dyn TokenCredential>),
    /// Could not even be built: the reason is reported with the chain's failure.
    Skipped(&'static str, CredentialError),
}

impl std::fmt::Debug for ChainedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .links
            .iter()
            .map(|l| match l {
                Link::Ready(c) => c.name(),
                Link::Skipped(n, _) => n,
            })
            .collect();
        f.debug_struct("ChainedCredential")
            .field("links", &names)
            .field("chosen", &self.chosen.get().map(|i| names[*i]))
            .finish()
    }
}

/// The chain azure-identity's `DefaultAzureCredential` would build here.
pub type DefaultCredential = ChainedCredential;

impl ChainedCredential {
    /// A chain of ready credentials, tried in order.
    pub fn new(credentials: Vec<Box<dyn TokenCredential>>) -> Self {
        Self {
            links: credentials.into_iter().map(Link::Ready).collect(),
            chosen: OnceLock::new(),
        }
    }

    /// The default chain from the process environment. `data_dir` holds the sign-in
    /// cache of `entraflow login`.
    pub fn from_env(data_dir: &Path) -> Self {
        Self::from_environment(&Environment::process(), data_dir)
    }

    /// The default chain from `vars`: environment (secret, then certificate), workload
    /// identity, managed identity (with a fast connect probe), developer sign-in.
    /// Links that cannot be built are kept with their reason for the failure report.
    pub fn from_environment(vars: &Environment, data_dir: &Path) -> Self {
        Self::from_environment_with_policy(vars, data_dir, RefreshPolicy::default())
    }

    /// Like [`Self::from_environment`], every credential's cache following `refresh`.
    pub fn from_environment_with_policy(
        vars: &Environment,
        data_dir: &Path,
        refresh: RefreshPolicy,
    ) -> Self {
        type Built = Result<Box<dyn TokenCredential>, CredentialError>;
        fn boxed<C: TokenCredential + 'static>(c: Result<C, CredentialError>) -> Built {
            c.map(|c| Box::new(c) as Box<dyn TokenCredential>)
        }
        let options = CredentialOptions::from_environment(vars).map(|o| CredentialOptions {
            refresh: refresh.clone(),
            ..o
        });
        let with_options = |f: &dyn Fn(CredentialOptions) -> Built| options.clone().and_then(f);
        let managed_identity = ManagedIdentityCredential::from_environment(
            vars,
            ManagedIdentityOptions {
                id: vars.get(env::AZURE_CLIENT_ID).map_or(
                    ManagedIdentityId::SystemAssigned,
                    ManagedIdentityId::ClientId,
                ),
                probe_connect_timeout: Some(IMDS_PROBE_CONNECT_TIMEOUT),
                refresh: refresh.clone(),
                ..ManagedIdentityOptions::default()
            },
        );
        let links = [
            (
                "EnvironmentCredential",
                with_options(&|o| boxed(EnvironmentCredential::from_environment(vars, o))),
            ),
            (
                "WorkloadIdentityCredential",
                with_options(&|o| boxed(WorkloadIdentityCredential::from_environment(vars, o))),
            ),
            ("ManagedIdentityCredential", boxed(managed_identity)),
            (
                "DeveloperLoginCredential",
                with_options(&|o| {
                    boxed(DeveloperLoginCredential::from_environment(
                        vars,
                        LoginCache::in_dir(data_dir),
                        o,
                    ))
                }),
            ),
        ];
        Self {
            links: links
                .into_iter()
                .map(|(name, built)| match built {
                    Ok(c) => Link::Ready(c),
                    Err(e) => Link::Skipped(name, e),
                })
                .collect(),
            chosen: OnceLock::new(),
        }
    }

    /// The chain without the links named in `excluded` (azure-identity's
    /// `exclude_*_credential` keywords). Names that are not links are ignored.
    pub fn without(mut self, excluded: &[String]) -> Self {
        self.links.retain(|link| {
            let name = match link {
                Link::Ready(c) => c.name(),
                Link::Skipped(name, _) => name,
            };
            !excluded.iter().any(|e| e == name)
        });
        self
    }

    /// The name of the credential that produced tokens, once one has.
    pub fn chosen(&self) -> Option<&'static str> {
        match &self.links[*self.chosen.get()?] {
            Link::Ready(c) => Some(c.name()),
            Link::Skipped(..) => None,
        }
    }

    async fn first_token(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        if let Some(Link::Ready(c)) = self.chosen.get().map(|i| &self.links[*i]) {
            return c.get_token(request).await;
        }
        let mut attempts = Vec::new();
        for (index, link) in self.links.iter().enumerate() {
            match link {
                Link::Skipped(name, why) => attempts.push((*name, why.clone())),
                Link::Ready(credential) => match credential.get_token(request).await {
                    Ok(token) => {
                        tracing::debug!(credential = credential.name(), "using this credential");
                        let _ = self.chosen.set(index);
                        return Ok(token);
                    }
                    Err(e) if e.is_unavailable() => attempts.push((credential.name(), e)),
                    Err(e) => {
                        attempts.push((credential.name(), e));
                        return Err(CredentialError::ChainFailed(attempts));
                    }
                },
            }
        }
        Err(CredentialError::ChainFailed(attempts))
    }
}

impl TokenCredential for ChainedCredential {
    fn get_token<'a>(&'a self, request: &'a TokenRequest) -> TokenFuture<'a> {
        Box::pin(self.first_token(request))
    }

    fn cached_token(&self, request: &TokenRequest) -> Option<AccessToken> {
        match &self.links[*self.chosen.get()?] {
            Link::Ready(c) => c.cached_token(request),
            Link::Skipped(..) => None,
        }
    }

    fn name(&self) -> &'static str {
        "DefaultCredential"
    }
}

impl CredentialError {
    /// The error that decided the outcome: in a failed chain, the hard failure that
    /// stopped it (or `self` when every link was merely unavailable); otherwise `self`.
    pub fn decisive(&self) -> &CredentialError {
        match self {
            Self::ChainFailed(attempts) => attempts
                .iter()
                .rev()
                .map(|(_, e)| e)
                .find(|e| !e.is_unavailable())
                .map_or(self, CredentialError::decisive),
            other => other,
        }
    }
}
