//! The health and metrics listener of a real gate: `/livez`, `/readyz` naming
//! each failing check (the audit log's appends made to fail with a SQLite
//! trigger, the role store made unreadable by renaming its table away), and
//! `/metrics` in the Prometheus text format, counting requests, decisions,
//! denials by reason, audit latency and bytes without a blob name, principal or
//! token in any label.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use entraflow_testkit::{STORAGE_SCOPE, Stack};
use reqwest::Method;
use serde_json::Value;

const FAIL_APPENDS: &str = "CREATE TRIGGER fail_appends BEFORE INSERT ON audit_events \
                            BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END;";

fn db(stack: &Stack, file: &str) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(stack.data_dir().join(file)).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db
}

fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(stack: &Stack, path: &str) -> (u16, String) {
    let url = format!(
        "{}{path}",
        stack.health_url.as_deref().expect("a health listener")
    );
    let resp = plain_http().get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `/readyz` until it answers `want` (a first probe may still be fetching the
/// JWKS), failing the test after 10 s; its JSON body.
async fn readyz_until(stack: &Stack, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(stack, "/readyz").await;
        if status == want {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {status}, not {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check<'a>(body: &'a Value, name: &str) -> (bool, &'a str) {
    let c = &body["checks"][name];
    (
        c["ok"]
            .as_bool()
            .unwrap_or_else(|| panic!("no check {name} in {body}")),
        c["detail"].as_str().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_gate_is_live_and_ready_before_it_has_seen_a_token() {
    let stack = Stack::start().await;
    let url = stack.health_url.clone().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let published = entraflow_gate::read_env_file(&stack.data_dir().join("gate.env"));
    assert_eq!(
        published.get("ENTRAFLOW_GATE_HEALTH_URL"),
        Some(&url),
        "gate.env publishes the health URL"
    );
    assert_eq!(get(&stack, "/livez").await.0, 200);

    // No token has been verified, so only the probe can have fetched the keys.
    let body = readyz_until(&stack, 200).await;
    assert_eq!(body["status"], "ready", "{body}");
    for name in ["jwks", "policy", "audit"] {
        let (ok, detail) = check(&body, name);
        assert!(ok, "{name}: {detail}");
    }
    assert!(check(&body, "jwks").1.contains("keys fetched"), "{body}");
    // Only the three probe paths are served there; the Blob API is not.
    assert_eq!(get(&stack, "/devstoreaccount1?comp=list").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_audit_check_while_appends_fail() {
    let stack = Stack::start().await;
    let app = stack.app("reader");
    stack.assign(
        &app.oid,
        "Storage Blob Data Contributor",
        &stack.account_scope,
    );
    stack.wait_for_policy().await;
    let token = stack.token(&app, STORAGE_SCOPE).await;
    stack.create_container(&token, "data").await;
    readyz_until(&stack, 200).await;

    db(&stack, "audit.db").execute_batch(FAIL_APPENDS).unwrap();
    let resp = stack
        .request(
            Method::GET,
            "/data?restype=container&comp=list",
            Some(&token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        503,
        "a request whose record fails is refused"
    );

    let (status, text) = get(&stack, "/readyz").await;
    assert_eq!(status, 503, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "not ready");
    let (ok, detail) = check(&body, "audit");
    assert!(!ok);
    assert!(detail.contains("injected audit failure"), "{detail}");
    assert!(check(&body, "jwks").0 && check(&body, "policy").0, "{body}");
    let metrics = scrape(&stack).await;
    assert!(
        metrics.value("entraflow_gate_audit_append_failures_total", &[]) >= 1.0,
        "the failure is counted"
    );

    // Once an append succeeds again, the gate is ready again.
    db(&stack, "audit.db")
        .execute_batch("DROP TRIGGER fail_appends;")
        .unwrap();
    let resp = stack
        .request(
            Method::GET,
            "/data?restype=container&comp=list",
            Some(&token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = readyz_until(&stack, 200).await;
    assert!(check(&body, "audit").0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_policy_check_when_the_role_store_cannot_be_read() {
    let stack = Stack::start().await;
    readyz_until(&stack, 200).await;
    db(&stack, "rbac.db")
        .execute_batch("ALTER TABLE meta RENAME TO meta_gone;")
        .unwrap();
    let body = readyz_until(&stack, 503).await;
    let (ok, detail) = check(&body, "policy");
    assert!(!ok);
    assert!(detail.contains("role store"), "{detail}");
    assert!(check(&body, "audit").0, "{body}");
    db(&stack, "rbac.db")
        .execute_batch("ALTER TABLE meta_gone RENAME TO meta;")
        .unwrap();
    readyz_until(&stack, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_decisions_denials_and_bytes_by_fixed_labels() {
    let stack = Stack::start().await;
    let writer = stack.app("writer");
    let outsider = stack.app("outsider");
    stack.assign(
        &writer.oid,
        "Storage Blob Data Contributor",
        &stack.account_scope,
    );
    stack.wait_for_policy().await;
    let token = stack.token(&writer, STORAGE_SCOPE).await;
    let outsider_token = stack.token(&outsider, STORAGE_SCOPE).await;
    let container = "privatecontainer";
    stack.create_container(&token, container).await;
    let small = vec![7u8; 1000];
    let large = vec![9u8; 200 * 1024];
    for (name, body) in [("private-small", &small), ("private-large", &large)] {
        let resp = stack
            .put_blob(&format!("/{container}/{name}"), &token, body.clone())
            .await;
        assert_eq!(resp.status(), 201);
    }
    let read = |name: &str, token: Option<&str>| {
        stack
            .request(Method::GET, &format!("/{container}/{name}"), token)
            .send()
    };
    // A small read (sent with the headers) and a streamed one.
    for (name, body) in [("private-small", &small), ("private-large", &large)] {
        let resp = read(name, Some(&token)).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.bytes().await.unwrap()[..], &body[..]);
    }
    // Refused: no role, no token, not a token.
    assert_eq!(
        read("private-small", Some(&outsider_token))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(read("private-small", None).await.unwrap().status(), 401);
    assert_eq!(
        read("private-small", Some("not-a-jwt"))
            .await
            .unwrap()
            .status(),
        401
    );

    let (status, text) = get(&stack, "/metrics").await;
    assert_eq!(status, 200);
    let m = Scrape::parse(&text);
    let requests = "entraflow_gate_requests_total";
    assert_eq!(
        m.value(
            requests,
            &[("operation", "GetBlob"), ("status_class", "2xx")]
        ),
        2.0
    );
    assert_eq!(
        m.value(
            requests,
            &[("operation", "GetBlob"), ("status_class", "4xx")]
        ),
        3.0
    );
    assert_eq!(
        m.value(
            requests,
            &[("operation", "PutBlob"), ("status_class", "2xx")]
        ),
        2.0
    );
    assert_eq!(
        m.value(
            requests,
            &[("operation", "CreateContainer"), ("status_class", "2xx")]
        ),
        1.0
    );
    let decisions = "entraflow_gate_authz_decisions_total";
    assert_eq!(m.value(decisions, &[("decision", "allow")]), 5.0);
    assert_eq!(m.value(decisions, &[("decision", "deny")]), 1.0);
    let denials = "entraflow_gate_denials_total";
    assert_eq!(
        m.value(denials, &[("stage", "authz"), ("reason", "no_assignment")]),
        1.0
    );
    assert_eq!(
        m.value(denials, &[("stage", "authn"), ("reason", "missing")]),
        1.0
    );
    assert_eq!(
        m.value(denials, &[("stage", "authn"), ("reason", "malformed")]),
        1.0
    );
    let bytes = "entraflow_gate_blob_bytes_total";
    let total = (small.len() + large.len()) as f64;
    assert_eq!(m.value(bytes, &[("direction", "written")]), total);
    assert_eq!(m.value(bytes, &[("direction", "read")]), total);
    // Every request above appended at least one record (changes two).
    let appends = m.value("entraflow_gate_audit_append_seconds_count", &[]);
    assert!(appends >= 10.0, "{appends} appends timed");
    assert_eq!(
        m.value("entraflow_gate_audit_append_failures_total", &[]),
        0.0
    );

    // Nothing identifying in any label or anywhere in the scrape.
    for secret in [
        container,
        "private-small",
        "private-large",
        writer.oid.as_str(),
        outsider.oid.as_str(),
        writer.app_id.as_str(),
        writer.secret.as_str(),
        token.as_str(),
        outsider_token.as_str(),
    ] {
        assert!(!text.contains(secret), "the scrape contains {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_port_in_use_is_reported_as_one() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let authority = entraflow_testkit::Authority::start().await;
    let mut config = entraflow_gate::GateConfig::new(authority.data_dir());
    config.health_bind = Some(addr);
    let err = entraflow_gate::Gate::bind(config).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("health")
            && text.contains("already in use")
            && text.contains(&addr.to_string()),
        "{text}"
    );
}

async fn scrape(stack: &Stack) -> Scrape {
    let (status, text) = get(stack, "/metrics").await;
    assert_eq!(status, 200);
    Scrape::parse(&text)
}

/// A scrape checked against the Prometheus text format (0.0.4) line by line:
/// `# HELP name text`, `# TYPE name type` before its samples, and samples
/// `name{label="value",...} number` whose name is a declared family's (a
/// histogram's with `_bucket`, `_sum` or `_count`), with cumulative buckets whose
/// `+Inf` bucket equals the count.
struct Scrape {
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = BTreeMap::new();
        assert!(text.ends_with('\n'), "a scrape ends with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let (kind, rest) = rest.split_once(' ').expect(line);
                let (name, value) = rest.split_once(' ').expect(line);
                assert!(valid_name(name), "bad metric name in {line:?}");
                match kind {
                    "HELP" => assert!(!value.is_empty(), "{line:?}"),
                    "TYPE" => {
                        assert!(
                            ["counter", "gauge", "histogram", "summary", "untyped"]
                                .contains(&value),
                            "{line:?}"
                        );
                        assert!(
                            types.insert(name.to_owned(), value.to_owned()).is_none(),
                            "{name} typed twice"
                        );
                    }
                    _ => panic!("unknown comment {line:?}"),
                }
                continue;
            }
            assert!(!line.is_empty(), "blank line in the scrape");
            let (series, value) = line.rsplit_once(' ').expect(line);
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect(line))),
                None => (series, Vec::new()),
            };
            assert!(valid_name(name), "bad metric name in {line:?}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "{name} sampled before its TYPE");
            assert!(
                samples.insert((name.to_owned(), labels), value).is_none(),
                "duplicate series {line:?}"
            );
        }
        let scrape = Scrape { samples };
        for (family, kind) in &types {
            if kind != "histogram" {
                continue;
            }
            let buckets: Vec<(f64, f64)> = scrape
                .samples
                .iter()
                .filter(|((n, _), _)| *n == format!("{family}_bucket"))
                .map(|((_, labels), v)| {
                    let le = &labels.iter().find(|(k, _)| k == "le").expect("le").1;
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    };
                    (le, *v)
                })
                .collect();
            let mut sorted = buckets.clone();
            sorted.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            assert!(
                sorted.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}: not cumulative"
            );
            let inf = sorted.last().expect("buckets");
            assert_eq!(inf.0, f64::INFINITY);
            assert_eq!(inf.1, scrape.value(&format!("{family}_count"), &[]));
        }
        scrape
    }

    /// The sample with exactly these labels; fails the test if there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        want.sort();
        *self
            .samples
            .get(&(name.to_owned(), want))
            .unwrap_or_else(|| {
                panic!(
                    "no sample {name}{labels:?}; have {:#?}",
                    self.samples.keys()
                )
            })
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `a="x",b="y"` (values escaped with `\\`, `\"`, `\n`), sorted by name.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect(text);
        assert!(
            valid_name(name) && !name.starts_with("__"),
            "bad label name in {text:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (_, '\\') => match chars.next().expect("dangling escape").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c} in {text:?}"),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels.sort();
    labels
}
