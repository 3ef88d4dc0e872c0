//! `doctor` against the real authority and a resource on loopback that answers like
//! Azure Storage.

mod common;

use common::fast_policy;
use entraflow_credential::TokenRequest;
use entraflow_credential::doctor::{Diagnosis, diagnose};
use entraflow_testkit::{App, Authority, STORAGE_SCOPE};

/// A resource that answers every request with `status` and a Storage error body.
async fn resource(status: u16, code: &'static str, detail: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/devstoreaccount1/train?restype=container&comp=list",
        listener.local_addr().unwrap()
    );
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| async move {
        assert!(headers.get("authorization").unwrap().to_str().unwrap().starts_with("Bearer "));
        let body = format!(
            "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>m</Message>{detail}</Error>"
        );
        let mut response = axum::response::Response::new(axum::body::Body::from(body));
        *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
        if status >= 400 {
            response.headers_mut().insert("x-ms-error-code", code.parse().unwrap());
        }
        response
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn doctor_tells_a_missing_role_from_a_network_failure_and_a_rejection() {
    let mut authority = Authority::start().await;
    let app = authority.app("doctor");
    let options = authority.credential_options(fast_policy());
    let credential = authority.secret_credential(&app, options.clone());
    let request = TokenRequest::new(&[STORAGE_SCOPE]);

    let denied = resource(
        403,
        "AuthorizationPermissionMismatch",
        "<AuthorizationDenialDetail>principal P has no role assignment granting Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read on /subscriptions/s/containers/train; assign 'Storage Blob Data Reader'</AuthorizationDenialDetail>",
    )
    .await;
    let report = diagnose(&credential, &request, &options, None, Some(&denied)).await;
    match &report.diagnosis {
        Diagnosis::MissingRole {
            principal,
            action,
            scope,
            ..
        } => {
            let oid = &report.claims.as_ref().unwrap().oid;
            assert!(principal.starts_with(oid.as_str()), "{principal}");
            assert!(principal.contains(&app.app_id), "{principal}");
            assert_eq!(
                action,
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
            );
            assert_eq!(scope, "/subscriptions/s/containers/train");
        }
        other => panic!("expected MissingRole, got {other:?}"),
    }
    assert_eq!(report.diagnosis.exit_code(), 6);
    assert_eq!(report.clock_skew_seconds.map(|s| s.abs() <= 2), Some(true));

    let refused = resource(
        401,
        "InvalidAuthenticationInfo",
        "<AuthenticationErrorDetail>Audience validation failed.</AuthenticationErrorDetail>",
    )
    .await;
    let report = diagnose(&credential, &request, &options, None, Some(&refused)).await;
    assert_eq!(
        report.diagnosis,
        Diagnosis::TokenRefusedByResource {
            detail: "Audience validation failed.".into()
        }
    );

    let fine = resource(200, "", "").await;
    let report = diagnose(&credential, &request, &options, None, Some(&fine)).await;
    assert_eq!(report.diagnosis, Diagnosis::Healthy);
    assert_eq!(report.resource_status, Some(200));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}/x", closed.local_addr().unwrap());
    drop(closed);
    let report = diagnose(&credential, &request, &options, None, Some(&nowhere)).await;
    assert!(
        matches!(report.diagnosis, Diagnosis::ResourceUnreachable { .. }),
        "{:?}",
        report.diagnosis
    );

    // A credential the authority refuses, and an authority that is down.
    let wrong = App {
        secret: "wrong".into(),
        ..app.clone()
    };
    let rejected = authority.secret_credential(&wrong, options.clone());
    let report = diagnose(&rejected, &request, &options, None, Some(&fine)).await;
    assert_eq!(report.diagnosis.exit_code(), 4, "{:?}", report.diagnosis);
    authority.stop().await;
    let fresh = authority.secret_credential(&app, options.clone());
    let report = diagnose(&fresh, &request, &options, None, Some(&fine)).await;
    assert!(
        matches!(report.diagnosis, Diagnosis::AuthorityUnreachable { .. }),
        "{:?}",
        report.diagnosis
    );
    assert!(report.diagnosis.explain().contains(authority.host()));
}
