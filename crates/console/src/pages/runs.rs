//! The runs list, and one run: its principals by name, what each read and
//! wrote, its denials, its token exchanges, and where its model's lineage is.

use maud::{Markup, html};

use super::{
    Header, Tab, Target, bytes, chart, layout, principal, principal_text, short_action,
    url_segment, when,
};
use crate::access::Viewer;
use crate::evidence::index::RunInfo;
use crate::evidence::run::{BlobAccess, RunView};
use crate::evidence::{Directory, short_resource};

pub(crate) fn list(viewer: &Viewer, runs: &[RunInfo], directory: &Directory) -> Markup {
    let body = html! {
        h1 { "Training runs" }
        p.lead { "Every run id the gates recorded (the " code { "x-ms-entraflow-run-id" } " header each job sends), newest first." }
        @if runs.is_empty() {
            p.notice { "No run yet: the audit log has no record with a run id. Run " code { "entraflow demo" } " or a job with " code { "ENTRAFLOW_RUN_ID" } " set." }
        } @else {
            table.data #runs {
                thead { tr {
                    th { "Run" } th { "First record" } th { "Last record" } th { "Principals" }
                    th.num { "Events" } th.num { "Denied" } th.num { "Read" } th.num { "Written" }
                } }
                tbody {
                    @for r in runs {
                        tr {
                            td { a.run href=(format!("/runs/{}", url_segment(&r.run_id))) { (r.run_id) } }
                            td { (when(&r.first)) }
                            td { (when(&r.last)) }
                            td.names {
                                @for (i, p) in r.principals.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (directory.name_of(Some(p), None).unwrap_or_else(|| p.clone()))
                                }
                            }
                            td.num { (r.events) }
                            td.num class=[(r.denials > 0).then_some("deny")] { (r.denials) }
                            td.num { (bytes(r.bytes_read)) }
                            td.num { (bytes(r.bytes_written)) }
                        }
                    }
                }
            }
        }
    };
    layout("Runs", Some(Header::from(viewer)), Tab::Runs, body)
}

fn blob_table(
    caption: &str,
    class: &str,
    map: &std::collections::BTreeMap<String, BlobAccess>,
) -> Markup {
    html! {
        @if !map.is_empty() {
            table.data.blobs class=(class) {
                caption { (caption) }
                thead { tr { th { "Blob" } th.num { "Requests" } th.num { "Bytes" } th { "Versions (ETag)" } } }
                tbody {
                    @for (blob, a) in map {
                        tr {
                            td { code { (blob) } }
                            td.num { (a.requests) }
                            td.num title=(format!("{} bytes", a.bytes)) { (bytes(a.bytes)) }
                            td.etags {
                                @if a.etags.is_empty() { span.muted { "not in the record" } }
                                @for e in &a.etags { code { (e) } " " }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn detail(viewer: &Viewer, run: &RunView) -> Markup {
    let body = html! {
        p.crumbs { a href="/runs" { "Runs" } " › " (run.run_id) }
        h1 { "Run " code #run-id { (run.run_id) } }
        (sections(run, Target::Console))
        @if run.events > 0 {
            section #lineage.notice {
                h2 { "Model lineage" }
                p {
                    "Which data and identity produced a saved model, with Merkle proofs against a signed checkpoint, is the CLI's: "
                    code { "entraflow audit lineage <az:// path>" } " prints it and exports a proof bundle that "
                    code { "entraflow audit verify --bundle" } " checks offline. The console does not show it yet."
                }
                @if !run.written_blobs.is_empty() {
                    p { "Blobs this run wrote:" }
                    pre { @for b in run.written_blobs.iter().take(20) { "entraflow audit lineage " (b) "\n" } }
                }
            }
        }
    };
    layout(
        &format!("Run {}", run.run_id),
        Some(Header::from(viewer)),
        Tab::Runs,
        body,
    )
}

/// The run page's evidence: principals, charts, denials, what each read and
/// wrote, token exchanges. Shared by the console's run page and the run report
/// file, which has no console to link to.
pub(crate) fn sections(run: &RunView, target: Target) -> Markup {
    let who = |label: &str, name: Option<&str>| match target {
        Target::Console => principal(label, name),
        Target::File => principal_text(label, name),
    };
    html! {
        @if run.events == 0 {
            p.notice { "The audit log has no record of this run." }
        } @else {
            p.lead {
                (run.events) " records from "
                (run.first.as_ref().map(when).unwrap_or_default()) " to "
                (run.last.as_ref().map(when).unwrap_or_default()) " UTC; "
                (run.principals.len()) " principals, "
                span class=[(!run.denials.is_empty()).then_some("deny")] { (run.denials.len()) " denied" } "."
            }
            section {
                h2 { "Principals" }
                table.data #principals {
                    thead { tr {
                        th { "Principal" } th { "Kind" } th { "App id" } th.num { "Events" }
                        th.num { "Read" } th.num { "Written" } th.num { "Denied" } th.num { "Tokens issued" }
                    } }
                    tbody {
                        @for p in &run.principals {
                            tr {
                                td { (who(&p.label, p.name.as_deref())) }
                                td { (p.kind.unwrap_or("-")) }
                                td { code { (p.summary.appid.as_deref().unwrap_or("-")) } }
                                td.num { (p.summary.events) }
                                td.num { (bytes(p.summary.bytes_read)) }
                                td.num { (bytes(p.summary.bytes_written)) }
                                td.num class=[(p.summary.denials > 0).then_some("deny")] { (p.summary.denials) }
                                td.num { (p.tokens) }
                            }
                        }
                    }
                }
            }
            @if !run.timeline.is_empty() {
                section.charts {
                    (chart("run-counts", "counts", "Requests over time: reads, writes and denials", run.timeline.to_json()))
                    (chart("run-bytes", "bytes", "Bytes read and written over time", run.timeline.to_json()))
                }
            }
            section #denials {
                h2 { "Denials" }
                @if run.denials.is_empty() {
                    p { "Nothing was denied in this run." }
                } @else {
                    table.data.denials {
                        thead { tr {
                            th { "Time (UTC)" } th { "Principal" } th { "Action" } th { "Resource" } th { "Missing role" } th { "Status" }
                            @if target == Target::Console { th {} } @else { th { "Record" } }
                        } }
                        tbody {
                            @for d in &run.denials {
                                tr.deny {
                                    td { (when(&d.time)) }
                                    td { (who(&d.label, d.name.as_deref())) }
                                    td {
                                        @if let Some(s) = &d.statement { code.statement { (s) } }
                                        @else if let Some(a) = &d.action { (short_action(a)) }
                                        @else { (d.event_type) }
                                    }
                                    td { code title=(d.resource.clone().unwrap_or_default()) { (d.resource.as_deref().map(short_resource).unwrap_or_default()) } }
                                    td.role { (d.missing()) }
                                    td { (d.status.map(|s| s.to_string()).or_else(|| d.sqlstate.clone()).unwrap_or_default()) }
                                    @if target == Target::Console {
                                        td { a.open href=(format!("/event?log={}&seq={}", url_segment(&d.log), d.seq)) { "open" } }
                                    } @else {
                                        td { code { (d.log) " #" (d.seq) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section #accesses {
                h2 { "What each principal read and wrote" }
                @for p in &run.principals {
                    @if !p.read.is_empty() || !p.written.is_empty() || !p.summary.queried.is_empty() {
                        div.principal-block {
                            h3 { (p.name.clone().unwrap_or_else(|| p.label.clone())) " " span.pid { (p.label) } }
                            (blob_table("Read", "read", &p.read))
                            (blob_table("Wrote", "write", &p.written))
                            @if !p.summary.queried.is_empty() {
                                table.data {
                                    caption { "SQL through the SQL gate" }
                                    thead { tr { th { "Database" } th.num { "Statements" } th.num { "Rows" } } }
                                    tbody { @for (db, q) in &p.summary.queried { tr { td { code { (db) } } td.num { (q.statements) } td.num { (q.rows) } } } }
                                }
                            }
                        }
                    }
                }
            }
            section #tokens {
                h2 { "Token exchanges" }
                p.lead { "What the authority (chain " code { (entraflow_authority::AUDIT_LOG_ID) } ") issued to this run's principals, from 10 minutes before its first record to its last." }
                @if !run.token_timeline.is_empty() {
                    section.charts { (chart("run-tokens", "tokens", "Tokens issued per principal over time", run.token_timeline.to_json())) }
                }
                @if run.tokens.is_empty() {
                    p { "No token exchange of these principals is recorded in that window." }
                } @else {
                    table.data {
                        thead { tr { th { "Time (UTC)" } th { "Principal" } th { "Outcome" } th { "Grant" } th { "For" } th { "Detail" } } }
                        tbody {
                            @for t in &run.tokens {
                                tr class=[(t.event_type == "token.refused").then_some("deny")] {
                                    td { (when(&t.time)) }
                                    td { (who(&t.label, t.name.as_deref())) }
                                    td { (t.event_type) }
                                    td { code { (t.grant.as_deref().unwrap_or("-")) } }
                                    td { code { (t.resource.as_deref().unwrap_or("-")) } }
                                    td.detail { (t.detail.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
