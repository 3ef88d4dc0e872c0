//! `DefaultCredential` built from explicit environments (the process environment is
//! never modified: tests run in parallel).

use entraflow_credential::{
    CredentialError, DefaultCredential, Environment, TokenCredential, TokenRequest,
};
use entraflow_testkit::{Authority, STORAGE_SCOPE};

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[tokio::test]
async fn with_nothing_configured_every_link_says_why_it_was_skipped_in_order() {
    let data_dir = tempfile::tempdir().unwrap();
    let vars = Environment::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", closed_port_url())]);
    let chain = DefaultCredential::from_environment(&vars, data_dir.path());
    let err = chain
        .get_token(&TokenRequest::new(&[STORAGE_SCOPE]))
        .await
        .unwrap_err();
    let CredentialError::ChainFailed(attempts) = &err else {
        panic!("expected ChainFailed, got {err:?}");
    };
    let names: Vec<&str> = attempts.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "EnvironmentCredential",
            "WorkloadIdentityCredential",
            "ManagedIdentityCredential",
            "DeveloperLoginCredential"
        ]
    );
    assert!(attempts.iter().all(|(_, e)| e.is_unavailable()), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("AZURE_TENANT_ID, AZURE_CLIENT_ID are not set"),
        "{text}"
    );
    assert!(text.contains("entraflow login"), "{text}");
    assert!(matches!(err.decisive(), CredentialError::ChainFailed(_)));
}

#[tokio::test]
async fn the_authority_env_file_plus_a_secret_is_enough() {
    let authority = Authority::start().await;
    let app = authority.app("env-job");
    // Process-level variables win; the rest (host, tenant, CA) come from <data-dir>/env.
    let vars = Environment::from_pairs([
        ("AZURE_CLIENT_ID", app.app_id.clone()),
        ("AZURE_CLIENT_SECRET", app.secret.clone()),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", closed_port_url()),
    ])
    .with_env_file(&authority.data_dir().join("env"));
    let chain = DefaultCredential::from_environment(&vars, authority.data_dir());
    let token = chain
        .get_token(&TokenRequest::new(&[STORAGE_SCOPE]))
        .await
        .unwrap();
    assert_eq!(chain.chosen(), Some("EnvironmentCredential"));
    let claims = entraflow_credential::claims::decode_unverified(token.token.expose()).unwrap();
    assert_eq!(claims.tid, authority.tenant());
}

#[tokio::test]
async fn a_broken_workload_identity_stops_the_chain_instead_of_falling_through() {
    let data_dir = tempfile::tempdir().unwrap();
    let vars = Environment::from_pairs([
        ("AZURE_TENANT_ID", "t".to_owned()),
        ("AZURE_CLIENT_ID", "c".to_owned()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            data_dir.path().join("missing").display().to_string(),
        ),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", closed_port_url()),
    ]);
    let chain = DefaultCredential::from_environment(&vars, data_dir.path());
    let err = chain
        .get_token(&TokenRequest::new(&[STORAGE_SCOPE]))
        .await
        .unwrap_err();
    let CredentialError::ChainFailed(attempts) = &err else {
        panic!("expected ChainFailed, got {err:?}");
    };
    assert_eq!(attempts.len(), 2, "managed identity was not tried: {err}");
    assert!(matches!(
        err.decisive(),
        CredentialError::Misconfigured { variable, .. } if variable == "AZURE_FEDERATED_TOKEN_FILE"
    ));
}
