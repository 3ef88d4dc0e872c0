//! The page at `verification_uri`: a person enters the user code, their UPN and
//! password, and approves or declines the sign-in. Tests use
//! `entraflow authority approve` instead.

use std::collections::HashMap;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use entraflow_core::DEVICE_CODE_GRANT;

use crate::authority::{Authority, ClientInfo};
use crate::decision::Decision;
use crate::device::DeviceLoginError;

/// The endpoint name device-login page decisions are audited under.
const DEVICE_LOGIN_ENDPOINT: &str = "devicelogin";

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(crate) fn layout(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>entraflow sign-in</title>\
         <style>body{{font-family:sans-serif;max-width:28em;margin:4em auto}}input{{display:block;width:100%;margin:.3em 0 1em;padding:.4em}}</style>\
         </head><body><h1>Sign in to entraflow</h1>{body}</body></html>"
    ))
}

pub(crate) async fn page() -> Html<String> {
    layout(
        "<form method=\"post\"><label>Code<input name=\"code\" autocomplete=\"off\" required></label>\
         <label>User name<input name=\"upn\" type=\"email\" required></label>\
         <label>Password<input name=\"password\" type=\"password\" required></label>\
         <button name=\"action\" value=\"approve\">Continue</button> <button name=\"action\" value=\"deny\">Decline</button></form>",
    )
}

pub(crate) async fn submit(
    State(a): State<Arc<Authority>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let bad = |msg: &str| {
        (
            StatusCode::BAD_REQUEST,
            layout(&format!(
                "<p>{}</p><p><a href=\"/devicelogin\">Try again</a></p>",
                escape(msg)
            )),
        )
            .into_response()
    };
    let form_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let Ok(bytes) = crate::server::read_limited(body).await else {
        return bad("The form is too large.");
    };
    let Some(form) = form_ok
        .then(|| serde_urlencoded::from_bytes::<HashMap<String, String>>(&bytes).ok())
        .flatten()
    else {
        return bad("The form could not be read.");
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let deny = field("action") == "deny";
    let code = field("code");
    let upn = field("upn");
    // argon2 is deliberately slow: keep it off the async workers.
    let (c, u, p) = (
        code.to_owned(),
        upn.to_owned(),
        field("password").to_owned(),
    );
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let mut decision = Decision::at(
        DEVICE_LOGIN_ENDPOINT,
        DEVICE_CODE_GRANT,
        &ClientInfo::new(Some(peer), user_agent),
    );
    let checker = a.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let outcome = checker.approve_with_password(&c, &u, &p, deny, &mut decision);
        (outcome, decision)
    })
    .await;
    let checked = match joined {
        Ok((Err(DeviceLoginError::Refused(e)), decision)) => {
            if let Err(unavailable) = a
                .record(decision.refused(e.code, 400, &e.description))
                .await
            {
                return bad(&unavailable.description);
            }
            Err(DeviceLoginError::Refused(e))
        }
        Ok((outcome, _)) => outcome,
        Err(e) => Err(DeviceLoginError::Code(
            crate::error::AuthorityError::Crypto(format!("password check failed: {e}")),
        )),
    };
    match checked {
        Ok(()) if deny => {
            layout("<p>You declined the sign-in. You can close this window.</p>").into_response()
        }
        Ok(()) => layout(&format!(
            "<p>{} is signed in on the device. You can close this window.</p>",
            escape(upn)
        ))
        .into_response(),
        Err(e) => {
            tracing::info!(user = %upn, error = %e, "device login refused");
            bad(&e.to_string())
        }
    }
}
