//! Workload identity federation: an external OIDC issuer's JWT exchanged for an
//! Entra token, matched against the application's federated identity credentials
//! (issuer and subject compared exactly: a trailing `/` matters).
//!
//! The issuer's keys come from a registered offline JWKS file (re-read on every
//! exchange so that rotating the file works), else from its OIDC discovery
//! document over HTTPS, cached for five minutes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use entraflow_core::{Aadsts, FEDERATION_AUDIENCE};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::assertion::{AssertionClaims, AssertionHeader, check_time, verify_signature};
use crate::error::OAuthError;
use crate::store::Store;

const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// Keys fetched by OIDC discovery, per issuer.
#[derive(Debug, Default)]
pub(crate) struct IssuerKeyCache {
    entries: Mutex<HashMap<String, (Instant, JwkSet)>>,
}

/// Whether `iss` is an Entra issuer (a token of ours, or of the real service).
pub(crate) fn is_entra_issuer(iss: &str, host: &str) -> bool {
    iss.starts_with("https://sts.windows.net/")
        || iss.starts_with("https://login.microsoftonline.com/")
        || iss.starts_with(&format!("{}/", host.trim_end_matches('/')))
}

fn unreachable(issuer: &str, why: impl std::fmt::Display) -> OAuthError {
    OAuthError::new(
        Aadsts::ExternalIssuerUnreachable,
        format!(
            "Unable to fetch the signing keys of issuer '{issuer}': {why}. Register an offline JWKS with `entraflow authority issuer add`, or make the issuer's discovery document reachable."
        ),
    )
}

impl IssuerKeyCache {
    async fn keys(
        &self,
        store: &Store,
        http: &reqwest::Client,
        issuer: &str,
    ) -> Result<JwkSet, OAuthError> {
        if let Some(file) = store.trusted_issuer_jwks_file(issuer)? {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| unreachable(issuer, format!("JWKS file {file}: {e}")))?;
            return serde_json::from_str(&text)
                .map_err(|e| unreachable(issuer, format!("JWKS file {file}: {e}")));
        }
        if let Some((at, set)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(issuer)
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(set.clone());
        }
        if !issuer.starts_with("https://") {
            return Err(unreachable(issuer, "the issuer is not an https URL"));
        }
        let config_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let get = |url: String| async move {
            let resp = http
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| unreachable(issuer, format!("GET {url}: {e}")))?;
            if !resp.status().is_success() {
                return Err(unreachable(
                    issuer,
                    format!("GET {url}: HTTP {}", resp.status()),
                ));
            }
            resp.json::<serde_json::Value>()
                .await
                .map_err(|e| unreachable(issuer, format!("GET {url}: {e}")))
        };
        let config = get(config_url).await?;
        let jwks_uri = config["jwks_uri"]
            .as_str()
            .ok_or_else(|| unreachable(issuer, "the discovery document has no jwks_uri"))?
            .to_owned();
        let set: JwkSet =
            serde_json::from_value(get(jwks_uri).await?).map_err(|e| unreachable(issuer, e))?;
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(issuer.to_owned(), (Instant::now(), set.clone()));
        Ok(set)
    }
}

/// A federated identity credential that matches, if any.
pub(crate) fn find_match(
    store: &Store,
    app_id: &str,
    iss: &str,
    sub: &str,
    aud: &[&str],
) -> Result<Option<String>, OAuthError> {
    let creds = store.list_federated_credentials(app_id)?;
    Ok(creds
        .into_iter()
        .find(|c| {
            c.issuer == iss
                && c.subject == sub
                && c.audiences.iter().any(|a| aud.contains(&a.as_str()))
        })
        .map(|c| c.name))
}

/// Verifies a federated assertion for `client_id`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn verify_federated_assertion(
    store: &Store,
    cache: &IssuerKeyCache,
    http: &reqwest::Client,
    host: &str,
    client_id: &str,
    assertion: &str,
    header: &AssertionHeader,
    claims: &AssertionClaims,
) -> Result<(), OAuthError> {
    let iss = claims.iss.as_deref().unwrap_or_default();
    let sub = claims.sub.as_deref().unwrap_or_default();
    if is_entra_issuer(iss, host) {
        return Err(OAuthError::new(
            Aadsts::EntraTokenAsAssertion,
            "An Entra ID-issued token cannot be used as a federated identity assertion; present the external identity provider's token.",
        ));
    }
    let aud: Vec<&str> = claims.aud.as_ref().map(|a| a.values()).unwrap_or_default();
    let matched = find_match(store, client_id, iss, sub, &aud)?;
    if matched.is_none() {
        return Err(OAuthError::new(
            Aadsts::NoFederatedMatch,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion (subject '{sub}', audience {aud:?}; the issuer must match exactly, including any trailing '/', and the audience must include '{FEDERATION_AUDIENCE}')."
            ),
        ));
    }
    let alg = match header.alg() {
        Some(
            alg @ (Algorithm::RS256
            | Algorithm::PS256
            | Algorithm::ES256
            | Algorithm::RS384
            | Algorithm::RS512),
        ) => alg,
        _ => {
            return Err(OAuthError::new(
                Aadsts::AssertionSignatureInvalid,
                "The federated assertion's algorithm is not supported; use RS256, RS384, RS512, PS256 or ES256.",
            ));
        }
    };
    let set = cache.keys(store, http, iss).await?;
    let candidates: Vec<_> = match &header.kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => set.keys.iter().collect(),
    };
    let verified = candidates
        .into_iter()
        .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
        .any(|key| verify_signature(assertion, alg, &key));
    if !verified {
        return Err(OAuthError::new(
            Aadsts::AssertionSignatureInvalid,
            format!(
                "The federated assertion's signature does not verify with any key of issuer '{iss}' (kid {:?}).",
                header.kid
            ),
        ));
    }
    // Unlike a certificate assertion, a federated token is reusable until it expires:
    // Entra accepts the same service-account token for several exchanges, and the
    // kubelet only rotates the file at ~80 % of its lifetime.
    check_time(claims, None).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::NewApplication;

    #[test]
    fn matching_is_exact_including_trailing_slash_and_needs_exchange_audience() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let app = store
            .create_application(&NewApplication {
                display_name: "w".into(),
                ..Default::default()
            })
            .unwrap();
        store
            .create_federated_credential(
                &app.app_id,
                "k8s",
                "https://oidc.example/issuer",
                "system:serviceaccount:ns:sa",
                &[],
            )
            .unwrap();
        let aud = [FEDERATION_AUDIENCE];
        let m = |iss, sub, aud: &[&str]| find_match(&store, &app.app_id, iss, sub, aud).unwrap();
        assert_eq!(
            m(
                "https://oidc.example/issuer",
                "system:serviceaccount:ns:sa",
                &aud
            ),
            Some("k8s".into())
        );
        assert_eq!(
            m(
                "https://oidc.example/issuer/",
                "system:serviceaccount:ns:sa",
                &aud
            ),
            None
        );
        assert_eq!(
            m(
                "https://oidc.example/issuer",
                "system:serviceaccount:ns:other",
                &aud
            ),
            None
        );
        assert_eq!(
            m(
                "https://oidc.example/issuer",
                "system:serviceaccount:ns:sa",
                &["api://other"]
            ),
            None
        );
    }

    #[test]
    fn entra_issuers_are_recognised() {
        assert!(is_entra_issuer(
            "https://sts.windows.net/t/",
            "https://127.0.0.1:1"
        ));
        assert!(is_entra_issuer(
            "https://127.0.0.1:1/t/v2.0",
            "https://127.0.0.1:1"
        ));
        assert!(!is_entra_issuer(
            "https://kubernetes.default.svc",
            "https://127.0.0.1:1"
        ));
    }
}
