//! Server-rendered HTML (maud: every interpolated value is escaped). One
//! module per page; this one holds the layout and the small formatters they
//! share. Pages load only the console's own CSS and scripts (Chart.js, vendored,
//! and `console.js`, which draws the charts from JSON embedded in the page), so
//! they work without a network and under a strict Content-Security-Policy.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use entraflow_audit::Timestamp;
use entraflow_rbac::Denial;
use maud::{DOCTYPE, Markup, html};

use crate::access::Viewer;
use crate::oidc::Identity;
use crate::server::App;

pub(crate) mod event;
pub(crate) mod integrity;
pub(crate) mod principals;
pub(crate) mod runs;
pub(crate) mod timeline;

/// Which tab is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Runs,
    Principals,
    Timeline,
    Integrity,
    None,
}

/// Where a page is read: in the console, whose pages it links to, or as a
/// file (the run report), which links nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Console,
    File,
}

/// Who the header names, and the sign-out form's token.
pub(crate) struct Header<'a> {
    pub(crate) identity: &'a Identity,
    pub(crate) csrf: &'a str,
    /// The role that grants the view, and the scope it is assigned at.
    pub(crate) role: Option<(&'a str, &'a str)>,
}

impl<'a> From<&'a Viewer> for Header<'a> {
    fn from(v: &'a Viewer) -> Header<'a> {
        Header {
            identity: &v.identity,
            csrf: &v.csrf,
            role: Some((&v.role, &v.grant_scope)),
        }
    }
}

/// The page: header with the tabs and the person, then `body`.
pub(crate) fn layout(title: &str, header: Option<Header<'_>>, tab: Tab, body: Markup) -> Markup {
    let tabs = [
        (Tab::Runs, "/runs", "Runs"),
        (Tab::Principals, "/principals", "Principals"),
        (Tab::Timeline, "/timeline", "Timeline"),
        (Tab::Integrity, "/integrity", "Chain integrity"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · entraflow console" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/chart.umd.min.js" defer {}
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/runs" { "entraflow" span { " security console" } }
                    @if header.is_some() {
                        nav {
                            @for (t, href, label) in tabs {
                                a href=(href) class=[(t == tab).then_some("current")] { (label) }
                            }
                        }
                    }
                    @if let Some(h) = &header {
                        div.who {
                            span.name title=(h.identity.oid) { (h.identity.name) }
                            @if let Some((role, scope)) = h.role { span.role title=(format!("assigned at {scope}")) { (role) } }
                            form method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(h.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
                footer {
                    "Every page view is recorded on audit chain " code { (crate::config::AUDIT_LOG_ID) } "."
                }
            }
        }
    }
}

/// A full HTML response with the console's headers.
pub(crate) fn respond(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page.into_string(),
    )
        .into_response()
}

/// An error page that says what happened and what to do.
pub(crate) fn error(status: StatusCode, title: &str, text: &str) -> Response {
    respond(
        status,
        layout(
            title,
            None,
            Tab::None,
            html! {
                section.notice.bad {
                    h1 { (title) }
                    p { (text) }
                    p { a href="/runs" { "Back to the console" } }
                }
            },
        ),
    )
}

/// The 403 page: who is signed in, which role is missing, at which scope, and
/// the command that would grant it.
pub(crate) fn forbidden(app: &App, identity: &Identity, csrf: &str, denial: &Denial) -> Response {
    let roles: Vec<String> = if denial.suggestions.is_empty() {
        vec![app.reader_role.clone()]
    } else {
        denial.suggestions.iter().map(|s| s.name.clone()).collect()
    };
    let assignee = identity
        .username
        .clone()
        .unwrap_or_else(|| identity.oid.clone());
    let reason = match &denial.reason {
        entraflow_rbac::DenialReason::Expired { assignment_ids } => Some(format!(
            "An assignment would grant it, but it has expired: {}.",
            assignment_ids.join(", ")
        )),
        entraflow_rbac::DenialReason::ConditionNotMet { assignment_ids } => Some(format!(
            "An assignment grants it, but its condition is false: {}.",
            assignment_ids.join(", ")
        )),
        _ => None,
    };
    let body = html! {
        section.notice.bad #denied {
            h1 { "You do not have access to the audit log" }
            p {
                "You are signed in as " strong { (identity.name) } " (object id " code { (identity.oid) } "), "
                "but no role assignment of yours grants reading the evidence."
            }
            table.kv {
                tr { th { "Missing role" } td #missing-role { (roles.join(" or ")) } }
                tr { th { "Scope" } td #missing-scope { code { (denial.scope) } " or above" } }
                tr { th { "Data action" } td { code { (denial.action) } } }
            }
            @if let Some(r) = reason { p { (r) } }
            p { "Ask an administrator of the tenant to grant it:" }
            pre { "entraflow role assignment create --assignee " (assignee) " \\\n    --role \"" (roles[0]) "\" \\\n    --scope " (denial.scope) }
            p.muted { "This refusal is recorded on audit chain " code { (crate::config::AUDIT_LOG_ID) } "." }
        }
    };
    respond(
        StatusCode::FORBIDDEN,
        layout(
            "Access denied",
            Some(Header {
                identity,
                csrf,
                role: None,
            }),
            Tab::None,
            body,
        ),
    )
}

/// `2026-11-26 16:38:36.123` (UTC).
pub(crate) fn when(t: &Timestamp) -> String {
    let s = t.to_string();
    s.trim_end_matches('Z').replacen('T', " ", 1)
}

/// `1.5 MiB` and the like.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The last two segments of an action (`blobs/read`), the whole in a tooltip.
pub(crate) fn short_action(action: &str) -> Markup {
    let short: Vec<&str> = action.rsplitn(3, '/').take(2).collect();
    let short = short.into_iter().rev().collect::<Vec<_>>().join("/");
    html! { code title=(action) { (short) } }
}

/// A principal: its name (linked) over its id.
pub(crate) fn principal(label: &str, name: Option<&str>) -> Markup {
    let href = format!("/principals/{}", url_segment(label));
    html! { a.principal href=(href) { (name_over_id(label, name)) } }
}

/// A principal as [`principal`] shows it, without the link.
pub(crate) fn principal_text(label: &str, name: Option<&str>) -> Markup {
    html! { span.principal { (name_over_id(label, name)) } }
}

fn name_over_id(label: &str, name: Option<&str>) -> Markup {
    html! {
        @if let Some(n) = name { span.pname { (n) } br; span.pid { (label) } }
        @else { span.pid { (label) } }
    }
}

/// A value for one URL path segment.
pub(crate) fn url_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A chart: the canvas and its data (drawn by `console.js`).
pub(crate) fn chart(id: &str, kind: &str, title: &str, json: String) -> Markup {
    html! {
        figure.chart {
            figcaption { (title) }
            div.canvas { canvas id=(id) data-chart=(kind) data-source=(format!("{id}-data")) role="img" aria-label=(title) {} }
            script type="application/json" id=(format!("{id}-data")) { (maud::PreEscaped(json)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        let t: Timestamp = "2026-11-26T16:38:36.123Z".parse().unwrap();
        assert_eq!(when(&t), "2026-11-26 16:38:36.123");
    }

    #[test]
    fn record_text_is_escaped() {
        let page = layout("<script>", None, Tab::None, html! { p { ("<b>&") } }).into_string();
        assert!(page.contains("<title>&lt;script&gt; ·"), "{page}");
        assert!(page.contains("&lt;b&gt;&amp;"));
    }
}
