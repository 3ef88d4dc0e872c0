//! Redirect URIs (reply URLs): how an application registers them and how an
//! authorization request's `redirect_uri` is matched against them, by Entra's
//! rules: `https`, except `http` on loopback (`localhost`, `127.0.0.1`), whose
//! port is ignored when matching (RFC 8252 §7.3); paths are case-sensitive; no
//! wildcards, fragments or `! $ ' ( ) , ;`; at most 256 characters each and 256
//! per application. `[::1]` is refused, as Entra does not support it.
//!
//! Where a URI is registered decides the client type of the flow: a
//! `publicClient` (mobile and desktop) redirect is a public client, which must
//! use PKCE and must not send a secret; a `web` redirect is a confidential
//! client, which must authenticate at the token endpoint.

use serde::Serialize;

use crate::admin::Application;
use crate::error::AuthorityError;
use crate::store::Store;

/// Entra's limit of redirect URIs per application.
pub(crate) const MAX_REDIRECT_URIS: usize = 256;
/// Entra's limit on the length of one redirect URI.
const MAX_URI_LEN: usize = 256;

/// Where a redirect URI is registered, in `az ad app`'s terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    /// Mobile and desktop applications (`publicClient.redirectUris`).
    PublicClient,
    /// Web applications (`web.redirectUris`).
    Web,
}

impl Platform {
    /// The name stored in the database.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Platform::PublicClient => "publicClient",
            Platform::Web => "web",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Platform> {
        [Platform::PublicClient, Platform::Web]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// The `entraflow ad app update` flag that registers URIs on this platform.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Platform::PublicClient => "--public-client-redirect-uris",
            Platform::Web => "--web-redirect-uris",
        }
    }
}

/// An application's redirect URIs on one platform, as `az ad app show` prints them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedirectUris {
    /// The registered URIs, in order.
    pub redirect_uris: Vec<String>,
}

fn is_loopback_host(url: &url::Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1"))
}

/// Checks that `uri` may be registered on `platform`.
pub(crate) fn validate(platform: Platform, uri: &str) -> Result<(), AuthorityError> {
    let bad = |why: &str| {
        AuthorityError::invalid(format!("redirect URI '{uri}' cannot be registered: {why}"))
    };
    if uri.len() > MAX_URI_LEN {
        return Err(bad(&format!("it is longer than {MAX_URI_LEN} characters")));
    }
    if uri.contains('*') {
        return Err(bad(
            "wildcards are not supported; register each address (for loopback, the port is ignored when matching)",
        ));
    }
    if let Some(c) = uri.chars().find(|c| "!$'(),;".contains(*c)) {
        return Err(bad(&format!("'{c}' is not allowed in a redirect URI")));
    }
    let url = url::Url::parse(uri)
        .ok()
        // `localhost:5000` parses, with the scheme `localhost`.
        .filter(|_| uri.contains("://"))
        .ok_or_else(|| {
            bad("it is not an absolute URI such as http://localhost or https://app.example/cb")
        })?;
    if url.fragment().is_some() {
        return Err(bad("a redirect URI must not have a fragment ('#…')"));
    }
    if url.host_str() == Some("[::1]") {
        return Err(bad(
            "the IPv6 loopback [::1] is not supported; use http://127.0.0.1 or http://localhost",
        ));
    }
    match url.scheme() {
        "https" if url.has_host() => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => Err(bad(
            "http is allowed only on localhost and 127.0.0.1; use https",
        )),
        "https" => Err(bad("an https redirect URI needs a host")),
        // Mobile and desktop apps may use their own scheme (e.g. msal<appId>://auth).
        _ if platform == Platform::PublicClient => Ok(()),
        other => Err(bad(&format!(
            "web redirect URIs must be https (http only on localhost), not '{other}'; custom schemes belong under --public-client-redirect-uris"
        ))),
    }
}

/// Whether the `redirect_uri` a client sent matches a registered one: the same
/// URI (scheme and host compare case-insensitively, a missing path is `/`),
/// except that on loopback hosts the port is ignored.
pub(crate) fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(r), Ok(q)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    if q.fragment().is_some() || !q.username().is_empty() || q.password().is_some() {
        return false;
    }
    if is_loopback_host(&r) && is_loopback_host(&q) {
        return r.scheme() == q.scheme()
            && r.host_str() == q.host_str()
            && r.path() == q.path()
            && r.query() == q.query();
    }
    r.as_str() == q.as_str()
}

/// The platform of the registered redirect URI that `requested` matches: an
/// exact registration wins over a loopback one that differs in port.
pub(crate) fn find_match(registered: &[(Platform, String)], requested: &str) -> Option<Platform> {
    registered
        .iter()
        .find(|(_, uri)| uri == requested)
        .or_else(|| registered.iter().find(|(_, uri)| matches(uri, requested)))
        .map(|(p, _)| *p)
}

/// Checks every URI to be registered on `platform`.
pub(crate) fn validate_all(platform: Platform, uris: &[String]) -> Result<(), AuthorityError> {
    uris.iter().try_for_each(|uri| validate(platform, uri))
}

impl Store {
    /// `ad app update --public-client-redirect-uris … --web-redirect-uris …`:
    /// replaces the URIs of each platform given (an empty list clears it).
    pub fn update_redirect_uris(
        &self,
        app_id: &str,
        public_client: Option<&[String]>,
        web: Option<&[String]>,
    ) -> Result<Application, AuthorityError> {
        let app = self.application(app_id)?;
        if public_client.is_none() && web.is_none() {
            return Err(AuthorityError::invalid(
                "nothing to update; give --public-client-redirect-uris and/or --web-redirect-uris",
            ));
        }
        let platforms: Vec<(Platform, &[String])> = [
            (Platform::PublicClient, public_client),
            (Platform::Web, web),
        ]
        .into_iter()
        .filter_map(|(platform, uris)| uris.map(|u| (platform, u)))
        .collect();
        for (platform, uris) in &platforms {
            validate_all(*platform, uris)?;
        }
        self.set_redirect_uris(&app.app_id, &platforms)?;
        self.changed("application.update", &[("application", &app.app_id)]);
        self.application(&app.app_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_follows_entras_rules() {
        for ok in [
            "https://app.example/callback",
            "http://localhost",
            "http://127.0.0.1:8400/auth",
        ] {
            validate(Platform::Web, ok).unwrap();
        }
        validate(Platform::PublicClient, "msal0000://auth").unwrap();
        for (platform, bad, why) in [
            (Platform::Web, "http://app.example/cb", "only on localhost"),
            (Platform::Web, "https://*.example/cb", "wildcards"),
            (Platform::Web, "https://app.example/cb#x", "fragment"),
            (Platform::PublicClient, "http://[::1]:5000", "[::1]"),
            (Platform::Web, "msal0000://auth", "custom schemes"),
            (Platform::Web, "https://app.example/a,b", "','"),
            (Platform::Web, "localhost:5000", "absolute"),
        ] {
            let err = validate(platform, bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long = format!("https://app.example/{}", "a".repeat(MAX_URI_LEN));
        assert!(validate(Platform::Web, &long).is_err());
    }

    #[test]
    fn loopback_ports_are_ignored_and_everything_else_is_exact() {
        assert!(matches("http://localhost", "http://localhost:53123"));
        assert!(matches("http://localhost", "http://localhost:53123/"));
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:9/cb"));
        assert!(!matches("http://localhost", "http://127.0.0.1:53123"));
        assert!(!matches("http://localhost/cb", "http://localhost:5000/CB"));
        assert!(!matches(
            "http://localhost/cb",
            "http://localhost:5000/cb?x=1"
        ));
        assert!(!matches("http://localhost", "https://localhost:5000"));
        assert!(matches("https://app.example", "https://APP.example/"));
        assert!(!matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
        assert!(!matches("https://app.example/cb", "https://app.example/Cb"));
        assert!(!matches(
            "https://app.example/cb",
            "https://app.example/cb#frag"
        ));
        let registered = vec![
            (Platform::PublicClient, "http://localhost".to_owned()),
            (Platform::Web, "http://localhost:5000".to_owned()),
        ];
        assert_eq!(
            find_match(&registered, "http://localhost:5000"),
            Some(Platform::Web),
            "an exact registration wins"
        );
        assert_eq!(
            find_match(&registered, "http://localhost:6000"),
            Some(Platform::PublicClient)
        );
        assert_eq!(find_match(&registered, "https://evil.example"), None);
    }

    #[test]
    fn apps_register_and_replace_redirect_uris() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let app = store
            .create_application_with_redirect_uris(
                &crate::NewApplication {
                    display_name: "notebook".into(),
                    ..Default::default()
                },
                &["http://localhost".into()],
                &[],
            )
            .unwrap();
        assert_eq!(app.public_client.redirect_uris, vec!["http://localhost"]);
        assert!(app.web.redirect_uris.is_empty());
        let app = store
            .update_redirect_uris(&app.app_id, None, Some(&["https://app.example/cb".into()]))
            .unwrap();
        assert_eq!(app.public_client.redirect_uris, vec!["http://localhost"]);
        assert_eq!(app.web.redirect_uris, vec!["https://app.example/cb"]);
        let app = store
            .update_redirect_uris(&app.app_id, Some(&[]), None)
            .unwrap();
        assert!(app.public_client.redirect_uris.is_empty());
        let err = store
            .update_redirect_uris(&app.app_id, None, Some(&["http://app.example".into()]))
            .unwrap_err();
        assert!(err.to_string().contains("only on localhost"), "{err}");
        assert_eq!(
            store.application(&app.app_id).unwrap().web.redirect_uris,
            vec!["https://app.example/cb"],
            "a refused update changes nothing"
        );
        assert!(store.update_redirect_uris(&app.app_id, None, None).is_err());
        let cli = store
            .application(entraflow_core::AZURE_CLI_CLIENT_ID)
            .unwrap();
        assert_eq!(
            cli.public_client.redirect_uris,
            vec!["http://localhost"],
            "the Azure CLI signs in on a loopback redirect, as `az login` does"
        );
    }
}
