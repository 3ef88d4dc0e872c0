//! Where the gate listens and which names its certificate carries: bound to a
//! wildcard address it is reached through any of them, and a client that asks
//! for a name given with `tls_names` (a Kubernetes Service's) verifies the
//! certificate against the local CA, while an unlisted name is refused.

use std::net::SocketAddr;
use std::time::Duration;

use entraflow_testkit::Stack;

fn client_resolving(name: &str, to: SocketAddr, ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap())
        .resolve(name, to)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_bind_serves_the_names_its_certificate_was_given() {
    let stack = Stack::start_with(|c| {
        c.bind = SocketAddr::from(([0, 0, 0, 0], 0));
        c.tls_names = vec!["gate.ml.svc.cluster.local".into()];
    })
    .await;
    // The published endpoint is one this machine reaches: loopback, not 0.0.0.0.
    assert!(
        stack.endpoint.starts_with("https://127.0.0.1:"),
        "{}",
        stack.endpoint
    );
    let port: u16 = stack.endpoint["https://127.0.0.1:".len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let at = SocketAddr::from(([127, 0, 0, 1], port));
    let ca = stack.authority.ca_pem();

    let named = client_resolving("gate.ml.svc.cluster.local", at, ca);
    let response = named
        .get(format!(
            "https://gate.ml.svc.cluster.local:{port}/{}?comp=list",
            stack.account
        ))
        .send()
        .await
        .expect("the certificate carries the name it was given");
    // No token: the gate answers as Azure does; what matters is that TLS held.
    assert_eq!(response.status().as_u16(), 401);

    let unlisted = client_resolving("other.example", at, ca);
    let err = unlisted
        .get(format!(
            "https://other.example:{port}/{}?comp=list",
            stack.account
        ))
        .send()
        .await
        .expect_err("a name the certificate does not carry is refused");
    assert!(err.is_connect(), "{err:?}");
}
