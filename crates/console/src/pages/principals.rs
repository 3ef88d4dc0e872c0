//! Every principal the log names, and one principal: its accesses, the role
//! assignments that apply to it, and when they changed.

use maud::{Markup, html};

use super::{Header, Tab, bytes, layout, principal, short_action, url_segment, when};
use crate::access::Viewer;
use crate::evidence::index::{PrincipalInfo, is_denial};
use crate::evidence::principal::{MAX_SHOWN, PrincipalView};
use crate::evidence::{Directory, short_resource};

pub(crate) fn list(
    viewer: &Viewer,
    principals: &[&PrincipalInfo],
    directory: &Directory,
) -> Markup {
    let body = html! {
        h1 { "Principals" }
        p.lead { "Everyone the audit log names: workload identities, people, managed identities, and the OS users who ran admin commands." }
        table.data #principal-list {
            thead { tr {
                th { "Principal" } th { "Kind" } th { "App id" } th.num { "Events" } th.num { "Denied" }
                th.num { "Tokens issued" } th.num { "Runs" } th { "First" } th { "Last" }
            } }
            tbody {
                @for p in principals {
                    tr {
                        td { (principal(&p.label, directory.name_of(p.oid.as_deref(), p.recorded_name.as_deref()).as_deref())) }
                        td { (p.oid.as_deref().and_then(|o| directory.lookup(o)).map(|(_, k)| k).unwrap_or(if p.oid.is_none() { "OS user" } else { "-" })) }
                        td { code { (p.appid.as_deref().unwrap_or("-")) } }
                        td.num { (p.events) }
                        td.num class=[(p.denials > 0).then_some("deny")] { (p.denials) }
                        td.num { (p.tokens) }
                        td.num { (p.runs.len()) }
                        td { (when(&p.first)) }
                        td { (when(&p.last)) }
                    }
                }
            }
        }
    };
    layout(
        "Principals",
        Some(Header::from(viewer)),
        Tab::Principals,
        body,
    )
}

pub(crate) fn detail(viewer: &Viewer, p: &PrincipalView) -> Markup {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let body = html! {
        p.crumbs { a href="/principals" { "Principals" } " › " (p.label) }
        h1 { (p.name.clone().unwrap_or_else(|| p.label.clone())) }
        table.kv {
            tr { th { "Object id" } td { code { (p.label) } } }
            tr { th { "Kind" } td { (p.kind.unwrap_or("not in the local directory")) } }
            @if let Some(a) = &p.appid { tr { th { "Application id" } td { code { (a) } } } }
            tr { th { "Records" } td { (p.total) } }
        }
        section #assignments {
            h2 { "Role assignments" }
            p.lead { "From the role store the gates decide with; an assignment at a scope applies below it too." }
            @if p.assignments.is_empty() {
                p { "No role assignment names this principal directly (group assignments are not listed)." }
            } @else {
                table.data {
                    thead { tr { th { "Role" } th { "Scope" } th { "Condition" } th { "Expires" } th { "Created" } th { "State" } } }
                    tbody {
                        @for a in &p.assignments {
                            tr class=[(!a.in_effect).then_some("expired")] {
                                td { strong { (a.role_name) } }
                                td.scope { code { (a.assignment.scope) } }
                                td.cond { @if let Some(c) = &a.assignment.condition { code { (c) } } @else { "-" } }
                                td { (a.assignment.expires_at.map(fmt).unwrap_or_else(|| "never".into())) }
                                td { (fmt(a.assignment.created_at)) }
                                td { (if a.in_effect { "in effect" } else if a.assignment.expires_at.is_some_and(|e| e <= now) { "expired" } else { "-" }) }
                            }
                        }
                    }
                }
            }
        }
        section #changes {
            h2 { "When its access changed" }
            p.lead { "The " code { "admin.change" } " records on chain " code { (entraflow_authority::ADMIN_LOG_ID) } " that name it." }
            @if p.changes.is_empty() {
                p { "No admin change names this principal." }
            } @else {
                table.data {
                    thead { tr { th { "Time (UTC)" } th { "Change" } th { "By" } th { "Detail" } } }
                    tbody {
                        @for c in &p.changes {
                            tr {
                                td { a href=(format!("/event?log={}&seq={}", url_segment(&c.log), c.seq)) { (when(&c.time)) } }
                                td { code { (c.operation) } }
                                td { (c.actor) }
                                td.detail { (c.detail) }
                            }
                        }
                    }
                }
            }
        }
        section #principal-accesses {
            h2 { "Every access" }
            @if p.total as usize > MAX_SHOWN {
                p.lead { "The latest " (MAX_SHOWN) " of " (p.total) " records; " code { "entraflow audit query --principal " (p.label) } " prints them all." }
            }
            table.data {
                thead { tr { th { "Time (UTC)" } th { "Type" } th { "Decision" } th { "Action" } th { "Resource" } th.num { "Bytes" } th { "Run" } } }
                tbody {
                    @for i in p.accesses.iter().rev() {
                        @let e = &i.record.event;
                        tr class=[is_denial(i).then_some("deny")] {
                            td { a href=(format!("/event?log={}&seq={}", url_segment(&i.record.log), i.record.seq)) { (when(&e.time)) } }
                            td { (e.event_type) }
                            td { (e.decision.map(|d| d.as_str()).unwrap_or("-")) }
                            td { @if let Some(a) = &e.action { (short_action(a)) } @else { "-" } }
                            td { code title=(e.resource.clone().unwrap_or_default()) { (e.resource.as_deref().map(short_resource).unwrap_or_default()) } }
                            td.num { (e.bytes.map(bytes).unwrap_or_default()) }
                            td { @if let Some(r) = &e.run_id { a href=(format!("/runs/{}", url_segment(r))) { (r) } } }
                        }
                    }
                }
            }
        }
    };
    layout(
        &p.name.clone().unwrap_or_else(|| p.label.clone()),
        Some(Header::from(viewer)),
        Tab::Principals,
        body,
    )
}
