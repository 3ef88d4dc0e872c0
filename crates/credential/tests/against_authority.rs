//! The "Done means", against a real authority on loopback with token
//! lifetimes of seconds.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{counting_proxy, fast_policy, sleep_until_unix, unix_now_f64};
use entraflow_core::{Aadsts, Secret};
use entraflow_credential::{
    ClientSecretCredential, CredentialError, TokenCredential, TokenRequest,
};
use entraflow_testkit::report::{Doc, Suite};
use entraflow_testkit::{Authority, STORAGE_SCOPE};

fn storage() -> TokenRequest {
    TokenRequest::new(&[STORAGE_SCOPE])
}

#[tokio::test]
async fn a_secret_gets_a_token_and_a_wrong_secret_is_rejected_by_code() {
    let authority = Authority::start().await;
    let app = authority.app("trainer");
    let credential = authority.secret_credential(&app, authority.credential_options(fast_policy()));
    let token = credential.get_token(&storage()).await.unwrap();
    let claims = entraflow_credential::claims::decode_unverified(token.token.expose()).unwrap();
    assert_eq!(claims.tid, authority.tenant());
    assert_eq!(claims.client_app_id(), Some(app.app_id.as_str()));
    assert!(
        !format!("{token:?}").contains(token.token.expose()),
        "Debug never prints the token"
    );

    let wrong = ClientSecretCredential::new(
        authority.tenant(),
        &app.app_id,
        Secret::new("not-the-secret"),
        authority.credential_options(fast_policy()),
    )
    .unwrap();
    let err = wrong.get_token(&storage()).await.unwrap_err();
    match &err {
        CredentialError::AuthenticationRejected {
            code,
            trace_id,
            authority: url,
            ..
        } => {
            assert_eq!(*code, Some(Aadsts::InvalidSecret));
            assert!(!trace_id.is_empty());
            assert!(url.starts_with(authority.host()), "{url}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_during_a_refresh_cause_exactly_one_token_request() {
    let authority = Authority::start().await;
    authority.set_token_lifetime(6);
    let app = authority.app("loader");
    let proxy = counting_proxy(&authority);
    let credential = Arc::new(authority.secret_credential(
        &app,
        authority.credential_options_at(&proxy.url, fast_policy()),
    ));

    let first = credential.get_token(&storage()).await.unwrap();
    assert_eq!(proxy.count(), 1);

    // Past the token's safe margin nobody has a usable token: all 1,000 wait on one fetch.
    sleep_until_unix(first.expires_on as f64 + 0.1).await;
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let credential = credential.clone();
            tokio::spawn(async move { credential.get_token(&storage()).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for caller in callers {
        tokens.insert(caller.await.unwrap().unwrap().token.expose().to_owned());
    }
    let mut suite = Suite::new(Doc::Reliability, "Thundering herd (credential)");
    suite.check(
        "1,000 callers after the token expired",
        "1 token request, 1 new token for all",
        &format!(
            "{} token requests, {} distinct tokens",
            proxy.count() - 1,
            tokens.len()
        ),
        proxy.count() == 2 && tokens.len() == 1 && !tokens.contains(first.token.expose()),
    );

    // Past refresh_on but still usable: 1,000 callers get the cached token at once and
    // one background refresh runs.
    let second = credential.get_token(&storage()).await.unwrap();
    sleep_until_unix(second.refresh_on as f64 + 1.0).await;
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let credential = credential.clone();
            tokio::spawn(async move { credential.get_token(&storage()).await })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    for _ in 0..100 {
        if credential.cached_token(&storage()).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    suite.check(
        "1,000 callers past refresh_on, token still valid",
        "cached token at once, 1 background refresh",
        &format!("{} background refreshes", proxy.count() - 2),
        proxy.count() == 3,
    );
    suite.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_outage_is_invisible_while_the_token_is_valid_and_reported_after() {
    let mut authority = Authority::start().await;
    authority.set_token_lifetime(8);
    let app = authority.app("long-job");
    let credential = authority.secret_credential(&app, authority.credential_options(fast_policy()));
    let first = credential.get_token(&storage()).await.unwrap();

    authority.stop().await;

    // Until the safety margin (a quarter of 8 s before expiry), callers keep getting the
    // cached token although every background refresh fails: zero errors.
    let safe_until = first.expires_on as f64 - 2.5;
    let mut calls = 0;
    while unix_now_f64() < safe_until {
        let token = credential
            .get_token(&storage())
            .await
            .expect("no error while the token is valid");
        assert_eq!(token.token, first.token);
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut suite = Suite::new(Doc::Reliability, "Authority outage (credential)");
    suite.check(
        "authority down while the token is valid",
        "every call served from the cache, 0 errors",
        &format!("{calls} calls, 0 errors"),
        calls > 20,
    );

    // Past the margin: the error, naming the authority's URL.
    sleep_until_unix(first.expires_on as f64 - 1.0).await;
    let err = credential.get_token(&storage()).await.unwrap_err();
    let names_it = matches!(&err, CredentialError::AuthorityUnreachable { url, .. } if url.starts_with(authority.host()))
        && err.to_string().contains(authority.host());
    suite.check(
        "authority still down after the token's safety margin",
        "AuthorityUnreachable naming the authority's URL",
        &err.to_string().chars().take(120).collect::<String>(),
        names_it,
    );

    // The authority comes back: the same credential gets tokens again.
    authority.restart().await;
    let again = credential.get_token(&storage()).await;
    suite.check(
        "authority back: the same credential, no restart",
        "a new token",
        match &again {
            Ok(t) if t.token != first.token => "a new token",
            Ok(_) => "the old token",
            Err(_) => "an error",
        },
        again.is_ok_and(|t| t.token != first.token),
    );
    suite.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_authority_is_waited_for_while_callers_keep_the_cached_token() {
    let authority = Authority::start().await;
    authority.set_token_lifetime(20);
    let app = authority.app("throttled-job");
    let proxy = counting_proxy(&authority);
    let credential = Arc::new(authority.secret_credential(
        &app,
        authority.credential_options_at(&proxy.url, fast_policy()),
    ));
    let first = credential.get_token(&storage()).await.unwrap();
    proxy
        .throttle_seconds
        .store(3, std::sync::atomic::Ordering::SeqCst);
    // Past refresh_on: every caller is served from the cache while the one
    // background refresh is throttled, and nobody asks again before Retry-After.
    sleep_until_unix(first.refresh_on as f64 + 0.2).await;
    let before = proxy.count();
    let mut served = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let credential = credential.clone();
                tokio::spawn(async move { credential.get_token(&storage()).await })
            })
            .collect();
        for caller in callers {
            if caller.await.unwrap().is_ok_and(|t| t.token == first.token) {
                served += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = proxy.count() - before;
    let mut suite = Suite::new(Doc::Reliability, "Throttling authority (credential)");
    suite.check(
        "callers while the refresh is throttled (429, Retry-After: 3)",
        "all served the cached token",
        &format!("{served} served"),
        served >= 500,
    );
    suite.check(
        "token requests within Retry-After",
        "1 (the throttled refresh), no herd",
        &format!("{during}"),
        during == 1,
    );
    proxy
        .throttle_seconds
        .store(0, std::sync::atomic::Ordering::SeqCst);
    sleep_until_unix(unix_now_f64() + 1.0).await;
    let mut refreshed = None;
    for _ in 0..50 {
        let t = credential.get_token(&storage()).await.unwrap();
        if t.token != first.token {
            refreshed = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    suite.check(
        "throttling ends",
        "a new token from the background refresh",
        if refreshed.is_some() {
            "a new token"
        } else {
            "still the old token"
        },
        refreshed.is_some(),
    );
    suite.finish();
}
