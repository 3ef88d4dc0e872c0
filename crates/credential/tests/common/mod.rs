//! Helpers of the credential tests beyond the shared set-up (`entraflow_testkit`):
//! refresh timing and a proxy that counts token requests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use entraflow_credential::RefreshPolicy;
use entraflow_testkit::Authority;

/// A policy for second-long tokens: short backoff so retries happen within the test.
pub fn fast_policy() -> RefreshPolicy {
    RefreshPolicy {
        retry_backoff: Duration::from_millis(300),
        ..RefreshPolicy::default()
    }
}

pub fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Sleeps until the Unix time `t` (seconds).
pub async fn sleep_until_unix(t: f64) {
    let now = unix_now_f64();
    if t > now {
        tokio::time::sleep(Duration::from_secs_f64(t - now)).await;
    }
}

/// A TLS-terminating reverse proxy in front of the authority that counts token requests.
pub struct CountingProxy {
    pub url: String,
    pub token_requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// While set, token requests are answered 429 with this many seconds of `Retry-After`.
    pub throttle_seconds: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl CountingProxy {
    pub fn count(&self) -> usize {
        self.token_requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub fn counting_proxy(authority: &Authority) -> CountingProxy {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let ca = entraflow_tls::LocalCa::load_or_create(authority.data_dir()).unwrap();
    let config = ca.server_config(&[]).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let upstream = authority.host().to_owned();
    let client = entraflow_tls::https_client(Some(authority.ca_pem())).unwrap();
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counter = token_requests.clone();
    let throttle_seconds = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let throttle = throttle_seconds.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let client = client.clone();
            let upstream = upstream.clone();
            let counter = counter.clone();
            let throttle = throttle.clone();
            async move {
                if method == Method::POST && uri.path().ends_with("/oauth2/v2.0/token") {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let wait = throttle.load(Ordering::SeqCst);
                    if wait > 0 {
                        let mut out = axum::response::Response::new(axum::body::Body::from("{}"));
                        *out.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                        out.headers_mut()
                            .insert(header::RETRY_AFTER, wait.to_string().parse().unwrap());
                        return out;
                    }
                }
                let target = format!(
                    "{upstream}{}",
                    uri.path_and_query().map_or("/", |p| p.as_str())
                );
                let mut request = client.request(method, target).body(body);
                if let Some(ct) = headers.get(header::CONTENT_TYPE) {
                    request = request.header(header::CONTENT_TYPE, ct);
                }
                match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let ct = response.headers().get(header::CONTENT_TYPE).cloned();
                        let body = response.bytes().await.unwrap_or_default();
                        let mut out = axum::response::Response::new(axum::body::Body::from(body));
                        *out.status_mut() = status;
                        if let Some(ct) = ct {
                            out.headers_mut().insert(header::CONTENT_TYPE, ct);
                        }
                        out
                    }
                    Err(e) => {
                        let mut out =
                            axum::response::Response::new(axum::body::Body::from(e.to_string()));
                        *out.status_mut() = StatusCode::BAD_GATEWAY;
                        out
                    }
                }
            }
        },
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(entraflow_tls::serve_https(listener, config, app, async {
        let _ = rx.await;
    }));
    CountingProxy {
        url,
        token_requests,
        throttle_seconds,
        stop: Some(tx),
    }
}
