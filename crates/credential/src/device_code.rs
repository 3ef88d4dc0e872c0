//! A person signing in: the device authorization grant, and the refresh token it
//! leaves behind in an owner-only file so later commands and jobs need no new sign-in.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entraflow_core::{DEVICE_CODE_GRANT, Secret, env};
use serde::{Deserialize, Serialize};

use crate::authority::{AuthorityHost, EndpointError, TokenResponse, post_form};
use crate::cache::{CacheKey, TokenCache};
use crate::confidential::CredentialOptions;
use crate::error::CredentialError;
use crate::http::HttpClient;
use crate::token::{AccessToken, TokenCredential, TokenFuture, TokenRequest};
use crate::vars::Environment;

/// The public client id the Azure CLI signs in with; used when none is given.
pub use entraflow_core::AZURE_CLI_CLIENT_ID;
/// Name of the sign-in cache file in the data directory.
pub const LOGIN_CACHE_FILE: &str = "token-cache.json";

/// What the person must do: open `verification_uri` and enter `user_code`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceCodeInfo {
    /// The code to type in.
    pub user_code: String,
    /// Where to type it.
    pub verification_uri: String,
    /// The authority's ready-made sentence saying both.
    #[serde(default)]
    pub message: String,
    /// Seconds until the code expires.
    pub expires_in: u64,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval: u64,
    #[serde(skip_serializing)]
    device_code: String,
}

fn default_interval() -> u64 {
    5
}

/// The stored sign-in: enough to get new tokens with no person present.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredLogin {
    /// Authority host the refresh token belongs to.
    pub authority: String,
    /// Tenant signed in to.
    pub tenant: String,
    /// Public client used.
    pub client_id: String,
    /// Who signed in, when the authority said (from the access token's claims).
    #[serde(default)]
    pub username: Option<String>,
    refresh_token: String,
}

impl std::fmt::Debug for StoredLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredLogin")
            .field("authority", &self.authority)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field(
                "refresh_token",
                &entraflow_core::fingerprint(&self.refresh_token),
            )
            .finish()
    }
}

/// The owner-only file holding a [`StoredLogin`].
#[derive(Debug, Clone)]
pub struct LoginCache {
    path: PathBuf,
}

impl LoginCache {
    /// `token-cache.json` in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(LOGIN_CACHE_FILE),
        }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored sign-in, `Ok(None)` when nobody has signed in.
    pub fn load(&self) -> Result<Option<StoredLogin>, CredentialError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CredentialError::Misconfigured {
                    variable: self.path.display().to_string(),
                    hint: format!(
                        "the sign-in cache is corrupt ({e}); run `entraflow login` again"
                    ),
                }
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CredentialError::Misconfigured {
                variable: self.path.display().to_string(),
                hint: format!("cannot read the sign-in cache: {e}"),
            }),
        }
    }

    /// Writes the sign-in, readable only by this user (0600).
    pub fn store(&self, login: &StoredLogin) -> Result<(), CredentialError> {
        let bytes = serde_json::to_vec_pretty(login).expect("plain strings serialize");
        if let Some(dir) = self.path.parent() {
            let _ = entraflow_core::fsutil::create_private_dir(dir);
        }
        entraflow_core::fsutil::write_private_file(&self.path, &bytes).map_err(|e| {
            CredentialError::Misconfigured {
                variable: self.path.display().to_string(),
                hint: format!("cannot write the sign-in cache: {e}"),
            }
        })
    }
}

type Prompt = dyn Fn(&DeviceCodeInfo) + Send + Sync;

struct Inner {
    authority: AuthorityHost,
    tenant: String,
    client_id: String,
    http: HttpClient,
    cache: TokenCache,
    store: Option<LoginCache>,
    refresh_token: Mutex<Option<Secret>>,
    prompt: Option<Box<Prompt>>,
    name: &'static str,
}

/// A person signing in with a device code (`entraflow login`), then refreshing silently.
#[derive(Clone)]
pub struct DeviceCodeCredential {
    inner: Arc<Inner>,
}

/// A person's earlier `entraflow login`, from the sign-in cache; never prompts.
/// The last link of [`crate::DefaultCredential`].
#[derive(Clone)]
pub struct DeveloperLoginCredential {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DeviceCodeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_inner("DeviceCodeCredential", &self.inner, f)
    }
}

impl std::fmt::Debug for DeveloperLoginCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_inner("DeveloperLoginCredential", &self.inner, f)
    }
}

fn debug_inner(name: &str, inner: &Inner, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct(name)
        .field("authority", &inner.authority)
        .field("tenant", &inner.tenant)
        .field("client_id", &inner.client_id)
        .finish_non_exhaustive()
}

impl DeviceCodeCredential {
    /// Signs `client_id` (a public client) in to `tenant`. `prompt` shows the person what
    /// to do; `store`, when given, keeps the refresh token for later runs.
    pub fn new(
        tenant: &str,
        client_id: &str,
        options: CredentialOptions,
        store: Option<LoginCache>,
        prompt: impl Fn(&DeviceCodeInfo) + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                http: options.http_client(),
                authority: options.authority,
                tenant: tenant.to_owned(),
                client_id: client_id.to_owned(),
                cache: TokenCache::new(options.refresh),
                store,
                refresh_token: Mutex::new(None),
                prompt: Some(Box::new(prompt)),
                name: "DeviceCodeCredential",
            }),
        }
    }
}

impl DeveloperLoginCredential {
    /// The sign-in stored in `cache`; unavailable when there is none.
    pub fn new(cache: LoginCache, options: CredentialOptions) -> Result<Self, CredentialError> {
        Self::from_environment(&Environment::process(), cache, options)
    }

    /// Like [`Self::new`]; `vars` decides whether a stored plain-http loopback
    /// authority is still allowed (`ENTRAFLOW_ALLOW_HTTP_AUTHORITY`).
    pub fn from_environment(
        vars: &Environment,
        cache: LoginCache,
        options: CredentialOptions,
    ) -> Result<Self, CredentialError> {
        let login = cache
            .load()?
            .ok_or_else(|| CredentialError::CredentialUnavailable {
                credential: "DeveloperLoginCredential",
                reason: format!(
                    "nobody has signed in ({} does not exist); run `entraflow login`",
                    cache.path().display()
                ),
            })?;
        // The stored host was validated at sign-in; the same opt-in rules apply again.
        let authority =
            AuthorityHost::parse(&login.authority, crate::authority::http_opted_in(vars))?;
        Ok(Self {
            inner: Arc::new(Inner {
                authority,
                tenant: login.tenant.clone(),
                client_id: login.client_id.clone(),
                http: options.http_client(),
                cache: TokenCache::new(options.refresh),
                store: Some(cache),
                refresh_token: Mutex::new(Some(Secret::new(login.refresh_token))),
                prompt: None,
                name: "DeveloperLoginCredential",
            }),
        })
    }

    /// Who signed in, if the cache says.
    pub fn username(&self) -> Option<String> {
        self.inner.store.as_ref()?.load().ok()??.username
    }
}

macro_rules! user_credential {
    ($name:ident) => {
        impl TokenCredential for $name {
            fn get_token<'a>(&'a self, request: &'a TokenRequest) -> TokenFuture<'a> {
                let inner = self.inner.clone();
                let owned = request.clone();
                Box::pin(async move {
                    self.inner
                        .cache
                        .get(&self.inner.key(request), move || async move {
                            inner.fetch(&owned).await
                        })
                        .await
                })
            }

            fn cached_token(&self, request: &TokenRequest) -> Option<AccessToken> {
                self.inner.cache.fresh(&self.inner.key(request))
            }

            fn name(&self) -> &'static str {
                self.inner.name
            }
        }
    };
}
user_credential!(DeviceCodeCredential);
user_credential!(DeveloperLoginCredential);

impl Inner {
    fn key(&self, request: &TokenRequest) -> CacheKey {
        CacheKey {
            tenant: self.tenant.clone(),
            client: self.client_id.clone(),
            scopes: request.scope_string(),
            claims: request.claims.clone(),
        }
    }

    /// Scopes plus `offline_access`, so a refresh token comes back.
    fn scope(request: &TokenRequest) -> String {
        let mut scope = request.scope_string();
        if !scope.split(' ').any(|s| s == "offline_access") {
            scope.push_str(" offline_access");
        }
        scope
    }

    async fn fetch(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        let refresh = self
            .refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let response = match refresh {
            Some(refresh_token) => match self.redeem_refresh_token(request, &refresh_token).await {
                Ok(r) => r,
                // A dead refresh token means a new sign-in, if a person is there to do it.
                Err(CredentialError::AuthenticationRejected { .. }) if self.prompt.is_some() => {
                    self.device_flow(request).await?
                }
                Err(e) => return Err(e),
            },
            None if self.prompt.is_some() => self.device_flow(request).await?,
            None => {
                return Err(CredentialError::CredentialUnavailable {
                    credential: self.name,
                    reason: "nobody has signed in; run `entraflow login`".into(),
                });
            }
        };
        let token = response.access_token();
        if let Some(refresh_token) = response.refresh_token {
            self.keep_refresh_token(refresh_token, &token)?;
        }
        Ok(token)
    }

    async fn redeem_refresh_token(
        &self,
        request: &TokenRequest,
        refresh_token: &Secret,
    ) -> Result<TokenResponse, CredentialError> {
        let url = self.authority.token_endpoint(&self.tenant);
        let scope = Self::scope(request);
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("refresh_token", refresh_token.expose()),
            ("scope", scope.as_str()),
        ];
        if let Some(claims) = &request.claims {
            form.push(("claims", claims));
        }
        post_form(&self.http, &url, &form)
            .await
            .map_err(|e| e.into_credential_error(&url))
    }

    async fn device_flow(&self, request: &TokenRequest) -> Result<TokenResponse, CredentialError> {
        let url = self.authority.device_code_endpoint(&self.tenant);
        let scope = Self::scope(request);
        let info: DeviceCodeInfo = post_form(
            &self.http,
            &url,
            &[
                ("client_id", self.client_id.as_str()),
                ("scope", scope.as_str()),
            ],
        )
        .await
        .map_err(|e| e.into_credential_error(&url))?;
        if let Some(prompt) = &self.prompt {
            prompt(&info);
        }
        let token_url = self.authority.token_endpoint(&self.tenant);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(info.expires_in);
        let mut interval = Duration::from_secs(info.interval.max(1));
        loop {
            tokio::time::sleep(interval).await;
            let polled = post_form::<TokenResponse>(
                &self.http,
                &token_url,
                &[
                    ("grant_type", DEVICE_CODE_GRANT),
                    ("client_id", self.client_id.as_str()),
                    ("device_code", info.device_code.as_str()),
                ],
            )
            .await;
            match polled {
                Ok(response) => return Ok(response),
                Err(EndpointError::OAuth(body)) if body.error == "authorization_pending" => {}
                Err(EndpointError::OAuth(body)) if body.error == "slow_down" => {
                    interval += Duration::from_secs(5);
                }
                Err(e) => return Err(e.into_credential_error(&token_url)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CredentialError::AuthenticationRejected {
                    code: Some(entraflow_core::Aadsts::ExpiredToken),
                    codes: vec![entraflow_core::Aadsts::ExpiredToken.code()],
                    meaning: entraflow_core::Aadsts::ExpiredToken.meaning().into(),
                    trace_id: String::new(),
                    correlation_id: String::new(),
                    authority: token_url,
                });
            }
        }
    }

    fn keep_refresh_token(
        &self,
        refresh_token: String,
        token: &AccessToken,
    ) -> Result<(), CredentialError> {
        *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Secret::new(refresh_token.clone()));
        let Some(store) = &self.store else {
            return Ok(());
        };
        let username = crate::claims::decode_unverified(token.token.expose())
            .ok()
            .and_then(|c| c.upn.or(c.preferred_username));
        store.store(&StoredLogin {
            authority: self.authority.as_str().to_owned(),
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            username,
            refresh_token,
        })
    }
}

/// The client id a sign-in uses: `AZURE_CLIENT_ID`, else the Azure CLI's public client.
pub fn default_public_client_id(vars: &Environment) -> String {
    vars.get(env::AZURE_CLIENT_ID)
        .unwrap_or_else(|| AZURE_CLI_CLIENT_ID.to_owned())
}
