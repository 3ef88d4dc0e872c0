//! The browser faces of the authorization code flow: the authorization
//! endpoint's sign-in page, the answer sent back to the app's redirect URI
//! (query, fragment or an auto-submitted form), the error page shown when the
//! redirect URI cannot be trusted, and the end-session (logout) endpoint.
//!
//! The sign-in form carries the authorization request's parameters, so its
//! POST is checked again from scratch before the password is; no state is kept
//! between the two requests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use entraflow_core::Aadsts;

use crate::authcode::{AuthorizeError, AuthorizeRequest, Reply, ResponseMode};
use crate::authority::{Authority, ClientInfo, TokenRequest};
use crate::decision::{AUTHORIZE_ENDPOINT, Decision};
use crate::devicelogin::{escape, layout};
use crate::error::OAuthError;
use crate::issue::EndpointVersion;
use crate::redirect_uri;

/// The form fields of the sign-in page that are not authorization parameters.
const USERNAME: &str = "username";
const PASSWORD: &str = "password";

fn client_info(peer: SocketAddr, headers: &HeaderMap) -> ClientInfo {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    ClientInfo::new(Some(peer), user_agent)
}

fn authorize_path(segment: &str, version: EndpointVersion) -> String {
    match version {
        EndpointVersion::V2 => format!("/{segment}/oauth2/v2.0/authorize"),
        EndpointVersion::V1 => format!("/{segment}/oauth2/authorize"),
    }
}

/// Answers on the authority's own page: for requests whose redirect URI cannot be trusted.
fn error_page(err: &OAuthError, status: StatusCode) -> Response {
    let body = err.body(None);
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        layout(&format!(
            "<h2>Sorry, but we could not sign you in</h2><p><code>{}</code></p><p>{}</p>",
            escape(&body.error),
            escape(&body.error_description)
        )),
    )
        .into_response()
}

impl Reply {
    /// Sends `pairs` (and `state`) to the app's redirect URI, by the response mode.
    fn send(&self, pairs: &[(&str, &str)]) -> Response {
        let mut url = self.url.clone();
        let state = self.state.as_deref().map(|s| ("state", s));
        let all = pairs.iter().copied().chain(state);
        let location = match self.mode {
            ResponseMode::Query => {
                url.query_pairs_mut().extend_pairs(all);
                url
            }
            ResponseMode::Fragment => {
                let fragment = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(all)
                    .finish();
                url.set_fragment(Some(&fragment));
                url
            }
            ResponseMode::FormPost => {
                let inputs: String = all
                    .map(|(k, v)| {
                        format!(
                            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                            escape(k),
                            escape(v)
                        )
                    })
                    .collect();
                return (
                    [(header::CACHE_CONTROL, "no-store")],
                    Html(format!(
                        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Working…</title></head>\
                         <body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{inputs}\
                         <noscript><p>Script is disabled: continue to the application.</p><button>Continue</button></noscript></form></body></html>",
                        escape(&self.redirect_uri)
                    )),
                )
                    .into_response();
            }
        };
        (
            StatusCode::FOUND,
            [
                (header::LOCATION, location.as_str()),
                (header::CACHE_CONTROL, "no-store"),
            ],
        )
            .into_response()
    }

    /// The HTTP status [`Reply::send`] answers with, for the audit record.
    fn status(&self) -> u16 {
        match self.mode {
            ResponseMode::FormPost => 200,
            ResponseMode::Query | ResponseMode::Fragment => 302,
        }
    }

    fn send_error(&self, err: &OAuthError) -> Response {
        let body = err.body(None);
        let uri = body.error_uri.unwrap_or_default();
        self.send(&[
            ("error", body.error.as_str()),
            ("error_description", body.error_description.as_str()),
            ("error_uri", uri.as_str()),
        ])
    }
}

/// The sign-in page for a checked request; `params` are carried in the form.
fn sign_in_page(
    segment: &str,
    version: EndpointVersion,
    request: &AuthorizeRequest,
    params: &TokenRequest,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let hidden: String = params
        .params()
        .into_iter()
        .filter(|(k, _)| *k != USERNAME && *k != PASSWORD)
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let problem = problem
        .map(|p| format!("<p role=\"alert\"><strong>{}</strong></p>", escape(p)))
        .unwrap_or_default();
    let username = params
        .get(USERNAME)
        .or(request.login_hint.as_deref())
        .unwrap_or_default();
    let page = layout(&format!(
        "<h2>{app}</h2>{problem}<form method=\"post\" action=\"{action}\">{hidden}\
         <label>User name<input name=\"{USERNAME}\" type=\"email\" autocomplete=\"username\" value=\"{username}\" required></label>\
         <label>Password<input name=\"{PASSWORD}\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>\
         <p>After you sign in, you are sent back to <code>{redirect}</code>.</p>",
        app = escape(&request.app_name),
        action = escape(&authorize_path(segment, version)),
        username = escape(username),
        redirect = escape(&request.reply.redirect_uri),
    ));
    (status, [(header::CACHE_CONTROL, "no-store")], page).into_response()
}

/// Records a refused authorization request, then answers it.
async fn refuse(a: &Authority, decision: Decision, err: AuthorizeError) -> Response {
    let status = match &err {
        AuthorizeError::Page(_) => 400,
        AuthorizeError::Redirect(reply, _) => reply.status(),
    };
    let e = err.error();
    if let Err(unavailable) = a
        .record(decision.refused(e.code, status, &e.description))
        .await
    {
        return error_page(&unavailable, StatusCode::SERVICE_UNAVAILABLE);
    }
    match err {
        AuthorizeError::Page(e) => error_page(&e, StatusCode::BAD_REQUEST),
        AuthorizeError::Redirect(reply, e) => reply.send_error(&e),
    }
}

async fn authorize(
    a: Arc<Authority>,
    segment: String,
    version: EndpointVersion,
    peer: SocketAddr,
    headers: HeaderMap,
    query: Option<String>,
) -> Response {
    let mut decision = Decision::at(
        AUTHORIZE_ENDPOINT,
        "authorization_code",
        &client_info(peer, &headers),
    );
    let params = match TokenRequest::parse(query.unwrap_or_default().as_bytes(), None) {
        Ok(p) => p,
        Err(e) => return refuse(&a, decision, AuthorizeError::Page(e)).await,
    };
    match a.authorize(&segment, version, &params, &mut decision) {
        Ok(request) => sign_in_page(&segment, version, &request, &params, None, StatusCode::OK),
        Err(e) => refuse(&a, decision, e).await,
    }
}

/// `GET /{tenant}/oauth2/v2.0/authorize`: checks the request, shows the sign-in page.
pub(crate) async fn authorize_v2(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(a, t, EndpointVersion::V2, peer, headers, query).await
}

/// `GET /{tenant}/oauth2/authorize` (v1, with `resource`).
pub(crate) async fn authorize_v1(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(a, t, EndpointVersion::V1, peer, headers, query).await
}

async fn sign_in(
    a: Arc<Authority>,
    segment: String,
    version: EndpointVersion,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut decision = Decision::at(
        AUTHORIZE_ENDPOINT,
        "authorization_code",
        &client_info(peer, &headers),
    );
    let form = match crate::server::read_form(&headers, body).await {
        Ok(f) => f,
        Err(e) => return refuse(&a, decision, AuthorizeError::Page(e)).await,
    };
    let request = match a.authorize(&segment, version, &form, &mut decision) {
        Ok(r) => r,
        Err(e) => return refuse(&a, decision, e).await,
    };
    let (Some(upn), Some(password)) = (form.get(USERNAME), form.get(PASSWORD)) else {
        let problem = "Enter your user name and password.";
        return sign_in_page(
            &segment,
            version,
            &request,
            &form,
            Some(problem),
            StatusCode::BAD_REQUEST,
        );
    };
    // argon2 is deliberately slow: keep it off the async workers.
    let (checker, checked, upn, password) = (
        a.clone(),
        request.clone(),
        upn.to_owned(),
        password.to_owned(),
    );
    let joined = tokio::task::spawn_blocking(move || {
        let outcome = checker.sign_in(&checked, &upn, &password, &mut decision);
        (outcome, decision)
    })
    .await;
    let (outcome, decision) = match joined {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %e, "the password check failed to run");
            return error_page(
                &OAuthError::new(
                    Aadsts::TemporarilyUnavailable,
                    "The password could not be checked; retry shortly. The authority's log says why.",
                ),
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    match outcome {
        Ok(code) => request.reply.send(&[("code", code.as_str())]),
        Err(e) => {
            if let Err(unavailable) = a
                .record(decision.refused(e.code, 400, &e.description))
                .await
            {
                return error_page(&unavailable, StatusCode::SERVICE_UNAVAILABLE);
            }
            let problem = e.to_string();
            sign_in_page(
                &segment,
                version,
                &request,
                &form,
                Some(&problem),
                StatusCode::BAD_REQUEST,
            )
        }
    }
}

/// `POST /{tenant}/oauth2/v2.0/authorize`: the sign-in form.
pub(crate) async fn sign_in_v2(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    sign_in(a, t, EndpointVersion::V2, peer, headers, body).await
}

/// `POST /{tenant}/oauth2/authorize` (v1).
pub(crate) async fn sign_in_v1(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    sign_in(a, t, EndpointVersion::V1, peer, headers, body).await
}

/// What the end-session endpoint does with a request.
enum SignedOut {
    /// Back to the app's registered `post_logout_redirect_uri`.
    Redirect(url::Url),
    /// The signed-out page, saying why there was no redirect (if one was asked for).
    Page(Option<String>),
}

impl Authority {
    /// `/{tenant}/oauth2/v2.0/logout`: there is no browser session to end (every
    /// sign-in here is interactive); the question is only where the browser goes.
    fn sign_out(&self, segment: &str, req: &TokenRequest) -> Result<SignedOut, OAuthError> {
        self.tenant(segment, true)?;
        let Some(target) = req.get("post_logout_redirect_uri") else {
            return Ok(SignedOut::Page(None));
        };
        let client_id = match (req.get("client_id"), req.get("id_token_hint")) {
            (Some(id), _) => Some(id.to_owned()),
            (None, Some(hint)) => self
                .verify_issued(hint, false)
                .ok()
                .and_then(|c| c["aud"].as_str().map(str::to_owned)),
            (None, None) => None,
        };
        let Some(client_id) = client_id else {
            return Ok(SignedOut::Page(Some(format!(
                "You were not sent back to {target}: the sign-out request names no application (send client_id or a valid id_token_hint), so the address cannot be checked against its redirect URIs."
            ))));
        };
        let registered = self.store.redirect_uris(&client_id)?;
        if redirect_uri::find_match(&registered, target).is_none() {
            return Ok(SignedOut::Page(Some(format!(
                "You were not sent back to {target}: it is not a redirect URI registered for application '{client_id}'. Register it with `entraflow ad app update --id {client_id} --public-client-redirect-uris …` or `--web-redirect-uris …`."
            ))));
        }
        let mut url = url::Url::parse(target).map_err(|e| {
            OAuthError::new(
                Aadsts::MalformedRequest,
                format!("post_logout_redirect_uri '{target}' is not a URL: {e}."),
            )
        })?;
        if let Some(state) = req.get("state") {
            url.query_pairs_mut().append_pair("state", state);
        }
        Ok(SignedOut::Redirect(url))
    }
}

fn signed_out(a: &Authority, segment: &str, req: Result<TokenRequest, OAuthError>) -> Response {
    match req.and_then(|r| a.sign_out(segment, &r)) {
        Ok(SignedOut::Redirect(url)) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, url.as_str()),
                (header::CACHE_CONTROL, "no-store"),
            ],
        )
            .into_response(),
        Ok(SignedOut::Page(why)) => {
            let why = why
                .map(|w| format!("<p>{}</p>", escape(&w)))
                .unwrap_or_default();
            (
                [(header::CACHE_CONTROL, "no-store")],
                layout(&format!(
                    "<h2>You signed out of your account</h2>{why}<p>This authority keeps no browser \
                     sign-in session, so there was none to end. Applications keep the refresh tokens \
                     they hold until those are used or expire. You can close this window.</p>"
                )),
            )
                .into_response()
        }
        Err(e) => error_page(&e, StatusCode::BAD_REQUEST),
    }
}

/// `GET /{tenant}/oauth2/v2.0/logout` (and v1 `/oauth2/logout`).
pub(crate) async fn logout_get(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let req = TokenRequest::parse(query.unwrap_or_default().as_bytes(), None);
    signed_out(&a, &t, req)
}

/// `POST /{tenant}/oauth2/v2.0/logout` (and v1), with a form body.
pub(crate) async fn logout_post(
    State(a): State<Arc<Authority>>,
    UrlPath(t): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let req = crate::server::read_form(&headers, body).await;
    signed_out(&a, &t, req)
}
