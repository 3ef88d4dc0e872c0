//! One record, every field: what a denial's "open" link shows.

use maud::{Markup, html};

use super::{Header, Tab, bytes, layout, principal, url_segment, when};
use crate::access::Viewer;
use crate::evidence::{Directory, Item, missing_roles, short_resource};

pub(crate) fn page(viewer: &Viewer, item: &Item, directory: &Directory) -> Markup {
    let r = &item.record;
    let e = &r.event;
    let roles = e.detail.as_deref().map(missing_roles).unwrap_or_default();
    let p = e.principal.clone().unwrap_or_default();
    let row = |k: &str, v: Option<String>| {
        html! {
            @if let Some(v) = v { tr { th { (k) } td { code { (v) } } } }
        }
    };
    let body = html! {
        p.crumbs {
            @if let Some(run) = &e.run_id { a href=(format!("/runs/{}", url_segment(run))) { "Run " (run) } " › " }
            "Record #" (r.seq) " of " (r.log)
        }
        h1 { code { (e.event_type) } " " (e.decision.map(|d| d.as_str()).unwrap_or("")) }
        table.kv #record {
            tr { th { "Time (UTC)" } td { (when(&e.time)) } }
            @if e.principal.is_some() {
                tr { th { "Principal" } td { (principal(p.label(), directory.name_of(p.oid.as_deref(), p.name.as_deref()).as_deref())) } }
            }
            (row("Application id", p.appid.clone()))
            (row("Action", e.action.clone()))
            @if let Some(res) = &e.resource {
                tr { th { "Resource" } td #resource { code { (short_resource(res)) } br; span.pid { (res) } } }
            }
            tr { th { "Decision" } td { (e.decision.map(|d| d.as_str()).unwrap_or("-")) } }
            @if !roles.is_empty() {
                tr.deny { th { "Missing role" } td #event-missing-role { strong { (roles.join(" or ")) } } }
            }
            (row("Granted by role", e.role_name.clone()))
            (row("Granting assignment", e.assignment_id.clone()))
            (row("HTTP status", e.status.map(|s| s.to_string())))
            @if let Some(b) = e.bytes { tr { th { "Bytes" } td { (bytes(b)) " (" (b) ")" } } }
            (row("Blob version (ETag)", item.etag.clone()))
            (row("Content MD5", item.content_md5.clone()))
            (row("Operation", item.operation.clone()))
            (row("Run", e.run_id.clone()))
            (row("Request id", e.request_id.clone()))
            (row("Token uti", e.token_uti.clone()))
            (row("Tenant", e.tenant.clone()))
            (row("Client", e.client_addr.clone()))
            (row("User agent", e.user_agent.clone()))
            (row("SQL statement", e.statement.clone()))
            (row("SQLSTATE", e.sqlstate.clone()))
            @if let Some(d) = &e.detail { tr { th { "Detail" } td.detail { (d) } } }
            tr { th { "Chain, position" } td { code { (r.log) } " #" (r.seq) } }
            tr { th { "Record id" } td { code { (r.id) } } }
        }
        details {
            summary { "The stored record (canonical JSON: the bytes its Merkle leaf hashes)" }
            pre.json { (item.raw) }
        }
    };
    layout("Record", Some(Header::from(viewer)), Tab::Runs, body)
}
