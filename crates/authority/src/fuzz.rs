//! Property-based fuzzing of what the authority reads from outside: token request
//! bodies and `Authorization` headers, client assertions (certificate and
//! federated), redirect URIs. Any input gives a value or an Entra error, never a
//! panic.
//!
//! CI runs 256 cases per property; a long run:
//! `PROPTEST_CASES=200000 cargo test -p entraflow-authority --lib fuzz::`.
//! Failures are saved under `proptest-regressions/` and replayed first: commit
//! them with the fix.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

use crate::authority::TokenRequest;

fn form() -> impl Strategy<Value = Vec<u8>> {
    let pair = prop_oneof![
        Just("grant_type=client_credentials".to_owned()),
        Just("client_id=%E2%82%AC".to_owned()),
        Just("scope=https%3A%2F%2Fstorage.azure.com%2F.default".to_owned()),
        Just("client_secret=&client_secret=x".to_owned()),
        Just("%ZZ=%".to_owned()),
        "[ -~]{0,30}",
    ];
    prop::collection::vec(pair, 0..12).prop_map(|p| p.join("&").into_bytes())
}

proptest! {
    #[test]
    fn token_requests_never_panic(
        body in prop_oneof![form(), prop::collection::vec(any::<u8>(), 0..512)],
        authorization in proptest::option::of("[ -~]{0,60}"),
        basic in "[ -~]{0,40}",
    ) {
        if let Ok(req) = TokenRequest::parse(&body, authorization.as_deref()) {
            let _ = req.client_id();
        }
        let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(&basic));
        let _ = TokenRequest::parse(&body, Some(&header));
    }

    #[test]
    fn assertions_never_panic(
        header in prop_oneof![
            Just(r#"{"alg":"RS256","x5t":"abc"}"#.to_owned()),
            Just(r#"{"alg":"PS256","x5t#S256":[]}"#.to_owned()),
            Just(r#"{"alg":"none"}"#.to_owned()),
            "[ -~]{0,40}",
        ],
        claims in prop_oneof![
            Just(r#"{"iss":"a","sub":"a","aud":"x","exp":1,"jti":"j"}"#.to_owned()),
            Just(r#"{"aud":["x","y"],"exp":"soon","nbf":-1}"#.to_owned()),
            "[ -~]{0,60}",
        ],
        raw in "[ -~]{0,100}",
    ) {
        let token = format!("{}.{}.sig", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&claims));
        let _ = crate::assertion::peek(&token);
        let _ = crate::assertion::peek(&raw);
    }

    #[test]
    fn redirect_uris_never_panic(uri in "[ -~]{0,80}", requested in "[ -~]{0,80}") {
        use crate::redirect_uri::{Platform, matches, validate};
        for platform in [Platform::PublicClient, Platform::Web] {
            let _ = validate(platform, &uri);
        }
        // Matching is exact except for a loopback port: never looser than that.
        if matches(&uri, &requested) && !uri.contains("localhost") && !uri.contains("127.0.0.1") {
            prop_assert_eq!(&uri, &requested);
        }
    }
}
