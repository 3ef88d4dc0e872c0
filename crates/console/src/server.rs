//! The console's listener: binding (with the local CA's certificate, as every
//! entraflow server), its env files, and the routes.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use entraflow_audit::{
    AnyStore, AuditLog, AuditOptions, CheckpointSigner, EventType, Filter, Timestamp,
};
use entraflow_gate::{GROUP_STALENESS, GroupDirectory};
use entraflow_rbac::{Authorizer, Scope};
use maud::html;
use serde::Deserialize;

use crate::access::{self, Viewer};
use crate::config::{CALLBACK_PATH, CONSOLE_ENV_FILE, Client, ConsoleConfig, SIGNED_OUT_PATH};
use crate::error::{ConsoleError, PageError};
use crate::evidence::{self, Directory, index::Index};
use crate::oidc::{Oidc, SignInError, same};
use crate::pages::{self, Tab};
use crate::provision;
use crate::session::{
    SESSION_COOKIE, SIGN_IN_COOKIE, SIGN_IN_LIFETIME, Sessions, cookie_value, set_cookie,
};

/// What every request handler shares.
pub(crate) struct App {
    pub(crate) oidc: Oidc,
    pub(crate) sessions: Sessions,
    pub(crate) authorizer: Arc<Authorizer>,
    pub(crate) audit: AuditLog,
    pub(crate) store: AnyStore,
    pub(crate) index: tokio::sync::Mutex<Index>,
    pub(crate) directory: Directory,
    /// Group membership, as the gates look it up: a role assigned to a group
    /// (a security team) reaches its members.
    pub(crate) groups: Option<GroupDirectory>,
    pub(crate) audit_scope: Scope,
    /// The role that grants reading (named on the 403 page when RBAC suggests none).
    pub(crate) reader_role: String,
    /// `https://127.0.0.1:PORT`: what Origin a same-origin form post carries.
    pub(crate) origin: String,
    /// `<origin>/signed-out`, the sign-out's `post_logout_redirect_uri`.
    pub(crate) signed_out_uri: String,
    /// The content security policy of every page (see [`csp`]).
    pub(crate) csp: HeaderValue,
    pub(crate) data_dir: PathBuf,
    pub(crate) verifier_keys: Vec<String>,
}

/// A console bound to its port, not yet serving.
pub struct Console {
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    url: String,
    data_dir: PathBuf,
    wrote_env: AtomicBool,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// Binds the port, sets the console up (its role, and in the local tenant
    /// its app registration with this address's redirect URI), and opens the
    /// role store and the audit log.
    pub async fn bind(config: ConsoleConfig) -> Result<Console, ConsoleError> {
        entraflow_tls::install_crypto_provider();
        let sign_in = &config.sign_in;
        if uuid::Uuid::parse_str(&sign_in.tenant).is_err() {
            return Err(ConsoleError::Config(format!(
                "the tenant '{}' is not a tenant id (a GUID): ID tokens name one tenant as their issuer, so 'common' and 'organizations' cannot be checked; give the tenant's id",
                sign_in.tenant
            )));
        }
        if sign_in.authority_host.is_empty() {
            return Err(ConsoleError::Config(
                "no authority host: start the authority on this data directory (it writes <data-dir>/env) or pass --authority-host".into(),
            ));
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ConsoleError::Io { path, source }
        };
        let ca = entraflow_tls::LocalCa::load_or_create(&config.data_dir)?;
        let tls = ca.server_config(&[])?;
        let listener = entraflow_tls::bind("the console's HTTPS port", config.bind)?;
        let port = listener.local_addr().map_err(io(&config.data_dir))?.port();
        let origin = format!("https://127.0.0.1:{port}");
        let url = config
            .public_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| origin.clone());
        let redirect_uri = format!("{url}{CALLBACK_PATH}");
        let signed_out_uri = format!("{url}{SIGNED_OUT_PATH}");
        let http = entraflow_tls::https_client(Some(ca.ca_pem()))?;

        let role = provision::ensure_reader_role(
            &config.data_dir,
            &config.audit_scope,
            &config.audit_store,
        )
        .await?;
        let (client_id, client_secret) = match &sign_in.client {
            Client::RegisterLocally => {
                let r = provision::register_locally(
                    &config.data_dir,
                    &sign_in.tenant,
                    &redirect_uri,
                    &signed_out_uri,
                    &config.audit_store,
                )
                .await?;
                (r.client_id, r.client_secret)
            }
            Client::Registered {
                client_id,
                client_secret,
            } => (client_id.clone(), client_secret.clone()),
        };
        let oidc = Oidc::new(
            &sign_in.authority_host,
            &sign_in.tenant,
            &client_id,
            client_secret,
            redirect_uri,
            http,
        );
        let authorizer = Arc::new(Authorizer::open(&config.data_dir)?);
        let signer = CheckpointSigner::load_or_create(
            &config.data_dir,
            entraflow_audit::checkpoint::DEFAULT_KEY_NAME,
        )
        .map_err(entraflow_audit::AuditError::from)?;
        let audit = AuditLog::open(
            &config.audit_store,
            signer,
            AuditOptions::new(crate::config::AUDIT_LOG_ID),
        )
        .await?;
        let app = Arc::new(App {
            oidc,
            sessions: Sessions::new(config.session_lifetime),
            authorizer,
            store: audit.store().clone(),
            audit,
            index: tokio::sync::Mutex::new(Index::default()),
            directory: Directory::open(&config.data_dir),
            groups: GroupDirectory::open(&config.data_dir, GROUP_STALENESS),
            audit_scope: config.audit_scope.clone(),
            reader_role: role.name,
            origin: url.clone(),
            signed_out_uri,
            csp: csp(&sign_in.authority_host)?,
            data_dir: config.data_dir.clone(),
            verifier_keys: config.verifier_keys.clone(),
        });
        Ok(Console {
            listener,
            tls,
            app,
            url,
            data_dir: config.data_dir,
            wrote_env: AtomicBool::new(false),
        })
    }

    /// Where people open it: `https://127.0.0.1:PORT` (or the public URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The redirect URI registered for it (`<url>/auth/callback`).
    pub fn redirect_uri(&self) -> &str {
        self.app.oidc.redirect_uri()
    }

    /// The application (client) id it signs people in as.
    pub fn client_id(&self) -> &str {
        self.app.oidc.client_id()
    }

    /// The `export` line the console publishes.
    pub fn env_lines(&self) -> String {
        format!(
            "export {}={}\n",
            entraflow_core::env::ENTRAFLOW_CONSOLE_URL,
            self.url
        )
    }

    /// Writes `console.env` (its presence means the console serves; [`Console::run`]
    /// removes it on shutdown) and returns its path.
    pub fn write_env_file(&self) -> Result<PathBuf, ConsoleError> {
        let path = self.data_dir.join(CONSOLE_ENV_FILE);
        entraflow_core::fsutil::write_public_file(&path, self.env_lines().as_bytes()).map_err(
            |source| ConsoleError::Io {
                path: path.clone(),
                source,
            },
        )?;
        self.wrote_env.store(true, Ordering::Relaxed);
        Ok(path)
    }

    /// Adds the console's line to another env file (the authority's `env`, for
    /// `entraflow up`), replacing an earlier console line in it.
    pub fn append_to_env_file(&self, path: &Path) -> Result<(), ConsoleError> {
        let io = |source| ConsoleError::Io {
            path: path.to_owned(),
            source,
        };
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let ours = format!("{}=", entraflow_core::env::ENTRAFLOW_CONSOLE_URL);
        let mut text: String = existing
            .lines()
            .filter(|l| {
                !l.trim_start()
                    .strip_prefix("export ")
                    .unwrap_or(l)
                    .starts_with(&ours)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&self.env_lines());
        entraflow_core::fsutil::write_public_file(path, text.as_bytes()).map_err(io)
    }

    /// Serves until `shutdown` resolves, then withdraws `console.env` and closes
    /// the audit log (with a final signed checkpoint).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ConsoleError> {
        let app = router(Arc::clone(&self.app));
        let served = entraflow_tls::serve_https(self.listener, self.tls, app, shutdown).await;
        if self.wrote_env.load(Ordering::Relaxed) {
            let _ = std::fs::remove_file(self.data_dir.join(CONSOLE_ENV_FILE));
        }
        if let Err(e) = self.app.audit.close().await {
            tracing::warn!(error = %e, "closing the console's audit log failed");
        }
        served.map_err(|source| ConsoleError::Io {
            path: self.data_dir.clone(),
            source,
        })
    }
}

/// The content security policy: the console's own scripts and styles only, no
/// frames, forms post back to the console only, whose sign-out may then
/// redirect to the authority (browsers apply `form-action` to redirects too).
fn csp(authority_host: &str) -> Result<HeaderValue, ConsoleError> {
    let authority = url::Url::parse(authority_host)
        .map_err(|e| ConsoleError::Config(format!("authority host '{authority_host}': {e}")))?
        .origin()
        .ascii_serialization();
    HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self' {authority}; frame-ancestors 'none'; base-uri 'none'"
    ))
    .map_err(|e| ConsoleError::Config(format!("authority host '{authority_host}': {e}")))
}

async fn security_headers(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, app.csp.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The callback URL carries a code and state: never in a Referer to another
    // origin. (`no-referrer` would also make browsers send `Origin: null` on the
    // console's own sign-out form, which the origin check then refuses.)
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/runs") }))
        .route("/signin", get(sign_in))
        .route(CALLBACK_PATH, get(callback))
        .route("/signout", post(sign_out))
        .route(SIGNED_OUT_PATH, get(signed_out))
        .route("/runs", get(runs))
        .route("/runs/{run}", get(run))
        .route("/principals", get(principals))
        .route("/principals/{principal}", get(principal))
        .route("/timeline", get(timeline))
        .route("/integrity", get(integrity))
        .route("/event", get(event))
        .route(
            "/assets/{name}",
            get(|UrlPath(name): UrlPath<String>| async move { crate::assets::serve(&name) }),
        )
        .fallback(|| async {
            pages::error(
                StatusCode::NOT_FOUND,
                "No such page",
                "The console has no page here.",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            security_headers,
        ))
        .with_state(app)
}

fn page_error(e: PageError) -> Response {
    tracing::error!(error = %e, "a console page failed");
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The page could not be made",
        &e.to_string(),
    )
}

/// A path on this console to return to after signing in; anything else is `/runs`.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/runs".to_owned(),
    }
}

#[derive(Deserialize)]
struct SignInQuery {
    next: Option<String>,
}

async fn sign_in(State(app): State<Arc<App>>, Query(q): Query<SignInQuery>) -> Response {
    let next = local_path(q.next.as_deref());
    match app.oidc.begin(next).await {
        Ok((pending, url)) => {
            let id = app.sessions.start_sign_in(pending);
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, url),
                    (
                        header::SET_COOKIE,
                        set_cookie(SIGN_IN_COOKIE, &id, SIGN_IN_LIFETIME),
                    ),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                ],
            )
                .into_response()
        }
        Err(e) => pages::error(
            StatusCode::BAD_GATEWAY,
            "Sign-in is unavailable",
            &e.to_string(),
        ),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Records a refused sign-in and shows why.
async fn refuse_sign_in(app: &App, parts: &Parts, why: &SignInError) -> Response {
    let mut record = access::event(access::SIGN_IN_REFUSED, None, parts, why.to_string());
    record.decision = Some(entraflow_audit::Decision::Deny);
    record.status = Some(400);
    if let Err(e) = app.audit.append(record).await {
        tracing::error!(error = %e, "the console's audit log cannot take a refused sign-in");
    }
    let clear = set_cookie(SIGN_IN_COOKIE, "", std::time::Duration::ZERO);
    let mut res = pages::respond(
        StatusCode::BAD_REQUEST,
        pages::layout(
            "Sign-in failed",
            None,
            Tab::None,
            html! {
                section.notice.bad #signin-failed {
                    h1 { "Sign-in failed" }
                    p { (why.to_string()) }
                    p { a href="/signin" { "Sign in again" } }
                }
            },
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&clear) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn callback(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let q: CallbackQuery = match Query::try_from_uri(&parts.uri) {
        Ok(Query(q)) => q,
        Err(e) => {
            return refuse_sign_in(
                &app,
                &parts,
                &SignInError::Forged(format!("the callback's query cannot be read: {e}")),
            )
            .await;
        }
    };
    let pending =
        cookie_value(&parts.headers, SIGN_IN_COOKIE).and_then(|id| app.sessions.take_sign_in(&id));
    let Some(pending) = pending else {
        return refuse_sign_in(&app, &parts, &SignInError::Forged(
            "this answer does not belong to a sign-in started in this browser in the last 10 minutes (no or an unknown sign-in cookie); start again".into(),
        )).await;
    };
    if !q.state.as_deref().is_some_and(|s| same(s, &pending.state)) {
        return refuse_sign_in(&app, &parts, &SignInError::Forged(
            "the answer's state is not this sign-in's: it was not sent for this browser's request".into(),
        )).await;
    }
    if let Some(error) = q.error {
        return refuse_sign_in(
            &app,
            &parts,
            &SignInError::Refused {
                error,
                description: q.error_description.unwrap_or_default(),
            },
        )
        .await;
    }
    let Some(code) = q.code else {
        return refuse_sign_in(
            &app,
            &parts,
            &SignInError::Forged("the answer carries no code".into()),
        )
        .await;
    };
    let identity = match app.oidc.finish(&pending, &code).await {
        Ok(identity) => identity,
        Err(e) => return refuse_sign_in(&app, &parts, &e).await,
    };
    let mut record = access::event(
        access::SIGN_IN,
        Some(&identity),
        &parts,
        format!(
            "signed in with {} as client {}",
            app.oidc.authority_host(),
            app.oidc.client_id()
        ),
    );
    record.decision = Some(entraflow_audit::Decision::Allow);
    record.status = Some(303);
    if let Err(e) = app.audit.append(record).await {
        return pages::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The audit log cannot record this sign-in",
            &format!("Sign-ins are recorded, and this one could not be ({e}); try again."),
        );
    }
    tracing::info!(oid = %identity.oid, "signed in to the console");
    let id = app.sessions.create(identity);
    let mut res = Redirect::to(&pending.next).into_response();
    let h = res.headers_mut();
    for cookie in [
        set_cookie(SESSION_COOKIE, &id, app.sessions.lifetime()),
        set_cookie(SIGN_IN_COOKIE, "", std::time::Duration::ZERO),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    res
}

#[derive(Deserialize)]
struct SignOutForm {
    csrf: String,
}

async fn sign_out(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let form: Option<SignOutForm> = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| serde_urlencoded::from_bytes(&b).ok());
    // A cross-site form cannot carry the session's CSRF token, and a browser
    // names the page's origin on a POST.
    let origin_ok = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_none_or(|o| o == app.origin);
    let id = cookie_value(&parts.headers, SESSION_COOKIE);
    let session = id.as_deref().and_then(|id| app.sessions.get(id));
    let csrf = form.map(|f| f.csrf).unwrap_or_default();
    let Some(session) = session.filter(|s| origin_ok && same(&csrf, &s.csrf)) else {
        return pages::error(
            StatusCode::FORBIDDEN,
            "Not signed out",
            "The sign-out form did not come from this console's page (wrong origin or token). Use the Sign out button.",
        );
    };
    if let Some(id) = &id {
        app.sessions.end(id);
    }
    let mut record = access::event(
        "console.signout",
        Some(&session.identity),
        &parts,
        "signed out".into(),
    );
    record.decision = Some(entraflow_audit::Decision::Allow);
    if let Err(e) = app.audit.append(record).await {
        tracing::error!(error = %e, "the console's audit log cannot take a sign-out");
    }
    // Then at the authority, which sends the browser back to /signed-out.
    let next = app.oidc.end_session_url(&app.signed_out_uri).await;
    let mut res =
        Redirect::to(next.as_ref().map_or(SIGNED_OUT_PATH, |u| u.as_str())).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", std::time::Duration::ZERO))
    {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn signed_out() -> Response {
    pages::respond(
        StatusCode::OK,
        pages::layout(
            "Signed out",
            None,
            Tab::None,
            html! {
                section.notice {
                    h1 { "You are signed out" }
                    p { "Your console session has ended. " a href="/signin" { "Sign in again" } }
                }
            },
        ),
    )
}

async fn runs(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    let mut index = app.index.lock().await;
    if let Err(e) = index.catch_up(&app.store).await {
        return page_error(e.into());
    }
    let mut runs: Vec<_> = index.runs.values().cloned().collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.last));
    drop(index);
    pages::respond(
        StatusCode::OK,
        pages::runs::list(&viewer, &runs, &app.directory),
    )
}

async fn run(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    UrlPath(run_id): UrlPath<String>,
) -> Response {
    match evidence::run::load(&app.store, &app.directory, &run_id).await {
        Ok(view) => {
            let status = if view.events == 0 {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            pages::respond(status, pages::runs::detail(&viewer, &view))
        }
        Err(e) => page_error(e.into()),
    }
}

async fn principals(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    let mut index = app.index.lock().await;
    if let Err(e) = index.catch_up(&app.store).await {
        return page_error(e.into());
    }
    let mut list: Vec<_> = index.principals.values().collect();
    list.sort_by_key(|p| std::cmp::Reverse(p.last));
    let page = pages::principals::list(&viewer, &list, &app.directory);
    drop(index);
    pages::respond(StatusCode::OK, page)
}

async fn principal(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    UrlPath(label): UrlPath<String>,
) -> Response {
    match evidence::principal::load(&app.store, app.authorizer.store(), &app.directory, &label)
        .await
    {
        Ok(view) => pages::respond(StatusCode::OK, pages::principals::detail(&viewer, &view)),
        Err(e) => page_error(e),
    }
}

#[derive(Deserialize)]
struct TimelineQuery {
    run: Option<String>,
    hours: Option<u32>,
}

async fn timeline(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Query(q): Query<TimelineQuery>,
) -> Response {
    let mut index = app.index.lock().await;
    if let Err(e) = index.catch_up(&app.store).await {
        return page_error(e.into());
    }
    let mut runs: Vec<_> = index.runs.values().cloned().collect();
    drop(index);
    runs.sort_by_key(|r| std::cmp::Reverse(r.last));
    // Without a choice: the latest run, else the last 24 hours.
    let run = q.run.clone().or_else(|| {
        q.hours
            .is_none()
            .then(|| runs.first().map(|r| r.run_id.clone()))
            .flatten()
    });
    let (span, filter) = match &run {
        Some(id) => (
            pages::timeline::Span::Run(id),
            Filter {
                run_id: Some(id.clone()),
                ..Filter::default()
            },
        ),
        None => {
            let hours = q.hours.unwrap_or(24).clamp(1, 24 * 366);
            let since = time::OffsetDateTime::now_utc() - time::Duration::hours(i64::from(hours));
            (
                pages::timeline::Span::Hours(hours),
                Filter {
                    since: Some(Timestamp::from(since)),
                    ..Filter::default()
                },
            )
        }
    };
    let mut items = match evidence::query_all(&app.store, &filter).await {
        Ok(items) => items,
        Err(e) => return page_error(e.into()),
    };
    if run.is_some() {
        // The run's principals' token exchanges belong on its timeline too.
        if let (Some(first), Some(last)) = (
            items.iter().map(|i| i.record.event.time).min(),
            items.iter().map(|i| i.record.event.time).max(),
        ) {
            let principals: std::collections::BTreeSet<String> = items
                .iter()
                .filter_map(|i| {
                    i.record
                        .event
                        .principal
                        .as_ref()
                        .map(|p| p.label().to_owned())
                })
                .collect();
            for p in principals {
                let tokens = evidence::query_all(
                    &app.store,
                    &Filter {
                        log_id: Some(entraflow_authority::AUDIT_LOG_ID.to_owned()),
                        principal: Some(p),
                        event_type: Some(EventType::TokenIssued.as_str().to_owned()),
                        since: Some(first),
                        until: Some(Timestamp::from(
                            last.as_offset_date_time() + time::Duration::milliseconds(1),
                        )),
                        ..Filter::default()
                    },
                )
                .await;
                match tokens {
                    Ok(t) => items.extend(t),
                    Err(e) => return page_error(e.into()),
                }
            }
        }
    } else {
        // The console's own page views are not the data's timeline.
        items.retain(|i| i.record.log != crate::config::AUDIT_LOG_ID);
    }
    let t = evidence::timeline::Timeline::of_accesses(&items);
    pages::respond(
        StatusCode::OK,
        pages::timeline::page(&viewer, &span, &t, &runs),
    )
}

async fn integrity(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    match evidence::integrity::load(&app.store, &app.data_dir, &app.verifier_keys).await {
        Ok(view) => pages::respond(StatusCode::OK, pages::integrity::page(&viewer, &view)),
        Err(e) => page_error(e),
    }
}

async fn event(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(log), Some(seq)) = (
        q.get("log"),
        q.get("seq").and_then(|s| s.parse::<u64>().ok()),
    ) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Which record?",
            "Give the chain (log) and the position (seq).",
        );
    };
    use entraflow_audit::StoreBackend as _;
    let rows = match app.store.rows(log, seq, 1).await {
        Ok(rows) => rows,
        Err(e) => return page_error(e.into()),
    };
    match rows
        .first()
        .filter(|r| r.seq == seq)
        .and_then(|r| evidence::Item::parse(&r.record))
    {
        Some(item) => pages::respond(
            StatusCode::OK,
            pages::event::page(&viewer, &item, &app.directory),
        ),
        None => pages::error(
            StatusCode::NOT_FOUND,
            "No such record",
            &format!("Chain {log} has no record #{seq}."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to_after_sign_in() {
        assert_eq!(local_path(Some("/runs/demo-1?x=1")), "/runs/demo-1?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil",
            "runs",
        ] {
            assert_eq!(local_path(Some(bad)), "/runs", "{bad}");
        }
        assert_eq!(local_path(None), "/runs");
    }
}
