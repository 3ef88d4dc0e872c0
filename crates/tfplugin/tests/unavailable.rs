//! A storage endpoint nobody listens on: the filesystem retries with backoff, then
//! reports `UNAVAILABLE` naming the URL (never a hang, never NOT_FOUND).

use std::sync::Arc;

use entraflow_core::Secret;
use entraflow_credential::{AccessToken, TokenCredential, TokenFuture, TokenRequest};
use entraflow_tfplugin::{AzFilesystem, BlobClient, Config, FsError, TfCode};

/// Hands out a fixed token: this test is about the storage side.
struct FixedToken;

impl TokenCredential for FixedToken {
    fn get_token<'a>(&'a self, request: &'a TokenRequest) -> TokenFuture<'a> {
        let token = self.cached_token(request);
        Box::pin(async move { Ok(token.expect("fixed")) })
    }

    fn cached_token(&self, _: &TokenRequest) -> Option<AccessToken> {
        Some(AccessToken {
            token: Secret::new("not-a-real-token"),
            expires_on: i64::MAX / 2,
            refresh_on: i64::MAX / 2,
            token_type: "Bearer".into(),
        })
    }

    fn name(&self) -> &'static str {
        "FixedToken"
    }
}

#[test]
fn an_unreachable_endpoint_is_unavailable_after_retries() {
    // Bind then drop: a loopback port with no listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("https://127.0.0.1:{port}/acct");
    let config = Config {
        endpoint: Some(url::Url::parse(&endpoint).unwrap()),
        read_ahead: 1 << 20,
        read_concurrency: 2,
        run_id: "t".into(),
    };
    let fs = AzFilesystem::new(BlobClient::new(
        config,
        Arc::new(FixedToken),
        entraflow_tls::https_client(None).unwrap(),
    ));
    let err = fs.stat("az://acct/data/x").unwrap_err();
    assert_eq!(err.code(), TfCode::Unavailable, "{err}");
    match &err {
        FsError::Unavailable { url, attempts, .. } => {
            assert!(url.starts_with(&endpoint), "{url}");
            assert_eq!(*attempts, 4);
        }
        other => panic!("{other}"),
    }
    // The path must name the endpoint's account.
    let err = fs.stat("az://other/data/x").unwrap_err();
    assert_eq!(err.code(), TfCode::InvalidArgument, "{err}");
    assert!(
        err.to_string().contains("'acct'") && err.to_string().contains("'other'"),
        "{err}"
    );
}
