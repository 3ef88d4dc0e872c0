//! The run report as one HTML file (`report.html` of `entraflow demo`): the run
//! page's sections drawn by the console's own code, with its stylesheet,
//! Chart.js and its chart script inlined so that the file opens offline from
//! disk; and what only the end of a run knows, which the caller supplies: the
//! training curve, the model's lineage, the suggested least-privilege
//! assignments, and the signed checkpoints taken when the run ended.

use std::collections::BTreeMap;
use std::path::Path;

use entraflow_audit::{AnyStore, Lineage, StoreError};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Serialize;

use crate::assets::{CHART_JS, CHART_JS_VERSION, CONSOLE_CSS, CONSOLE_JS};
use crate::evidence::timeline::script_json;
use crate::evidence::{Directory, run, short_resource};
use crate::pages::{Target, bytes, chart, principal_text, runs, when};

/// One chain and the checkpoint of it signed when the run ended.
#[derive(Debug, Clone)]
pub struct ChainCheckpoint {
    /// The chain (`entraflow/gate`, ...).
    pub log: String,
    /// Its events when the log was verified against the checkpoint (more than
    /// it signs if the chain has grown since).
    pub size: u64,
    /// Events the checkpoint signs.
    pub signed_size: u64,
    /// The run's records on the chain, all inside the checkpoint.
    pub run_records: u64,
    /// Where the checkpoint was exported.
    pub file: String,
    /// The C2SP signed note.
    pub note: String,
}

/// The model's lineage and its proof bundle.
#[derive(Debug, Clone)]
pub struct LineageReport {
    /// As `entraflow audit lineage -o json` prints it.
    pub lineage: Lineage,
    /// The command that traced it.
    pub command: String,
    /// Where the proof bundle is.
    pub bundle: String,
    /// What `entraflow audit verify --bundle` said of it, offline.
    pub verified: String,
}

/// What the caller knows that the audit log does not say by itself.
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    /// The run.
    pub run_id: String,
    /// Label → value lines at the top (endpoints, accuracy).
    pub facts: Vec<(String, String)>,
    /// Keras history: metric → one value per epoch.
    pub history: BTreeMap<String, Vec<f64>>,
    /// What the refused jobs were told.
    pub refusals: Vec<String>,
    /// The model's lineage, when it was traced.
    pub lineage: Option<LineageReport>,
    /// `entraflow role suggest --run-id … --check`, as printed.
    pub suggestion: String,
    /// Every chain's checkpoint.
    pub checkpoints: Vec<ChainCheckpoint>,
    /// `entraflow audit verify --checkpoint …`, as printed.
    pub verify: String,
}

/// The report page: the run read from `store`, principals named from the
/// directory in `data_dir`.
pub async fn render(
    store: &AnyStore,
    data_dir: &Path,
    input: &ReportInput,
) -> Result<String, StoreError> {
    let directory = Directory::open(data_dir);
    let view = run::load(store, &directory, &input.run_id).await?;
    let body = html! {
        h1 { "Run " code #run-id { (input.run_id) } }
        table.kv #facts { @for (k, v) in &input.facts { tr { th { (k) } td { (v) } } } }
        @if !input.history.is_empty() {
            section.charts.wide {
                (chart("training", "curve", "Training curve: each metric per epoch", training_json(&input.history)))
            }
        }
        (runs::sections(&view, Target::File))
        @if !input.refusals.is_empty() {
            section #refusals {
                h2 { "What the refused jobs were told" }
                @for r in &input.refusals { pre.json { (r) } }
            }
        }
        @if let Some(l) = &input.lineage { (lineage(l, &view, &directory)) }
        section #suggestion {
            h2 { "Least privilege: the run's suggested assignments" }
            p.lead { "The narrowest assignments that allow what the log shows the run did, replayed against the run's requests." }
            pre.json { (input.suggestion.trim_end()) }
        }
        (checkpoints(input))
    };
    Ok(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Run " (input.run_id) " · entraflow run report" }
                // Inlined, so the file needs neither the console nor a network.
                style { (PreEscaped(CONSOLE_CSS)) }
                script { (PreEscaped(CHART_JS)) }
                script { (PreEscaped(CONSOLE_JS)) }
            }
            body {
                header.top { span.brand { "entraflow" span { " run report" } } }
                main { (body) }
                footer {
                    "From the audit log, read with the console's code; charts by Chart.js "
                    (CHART_JS_VERSION) " (MIT licence), inlined."
                }
            }
        }
    }
    .into_string())
}

/// The training curve's data, in the shape `console.js` draws.
fn training_json(history: &BTreeMap<String, Vec<f64>>) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        label: &'a str,
        kind: &'a str,
        data: &'a [f64],
    }
    #[derive(Serialize)]
    struct Curve<'a> {
        labels: Vec<usize>,
        x_title: &'a str,
        y_title: &'a str,
        counts: Vec<Line<'a>>,
    }
    let epochs = history.values().map(Vec::len).max().unwrap_or(0);
    script_json(&Curve {
        labels: (1..=epochs).collect(),
        x_title: "epoch",
        y_title: "value",
        counts: history
            .iter()
            .map(|(metric, values)| Line {
                label: metric,
                kind: "metric",
                data: values,
            })
            .collect(),
    })
}

fn lineage(report: &LineageReport, view: &run::RunView, directory: &Directory) -> Markup {
    let l = &report.lineage;
    let version = &l.version;
    let writer = l.principal.as_ref().or(l.source().principal.as_ref());
    let role_of = |id: &str| {
        l.grants
            .iter()
            .find(|g| g.assignment_id == id)
            .and_then(|g| g.role_name.clone())
    };
    // Who in this run wrote a version read, so its own intermediate files (a
    // checkpoint TensorFlow reads back while saving) tell apart from its data.
    let writer_of = |r: &entraflow_audit::lineage::BlobRead| {
        let blob = short_resource(&r.resource);
        view.principals
            .iter()
            .find(|p| {
                p.written
                    .get(&blob)
                    .is_some_and(|w| r.etag.as_ref().is_some_and(|e| w.etags.contains(e)))
            })
            .map(|p| p.name.clone().unwrap_or_else(|| p.label.clone()))
    };
    html! {
        section #lineage {
            h2 { "Model lineage" }
            p.lead { "From " code { (report.command) } ": the write that produced the model, its run and identity, every blob version that identity read in the run before it, and the role assignments that allowed each read." }
            table.kv #lineage-version {
                tr { th { "Model" } td { code { (l.blob) } } }
                tr { th { "Version (ETag)" } td { code { (version.etag.as_deref().unwrap_or("-")) } } }
                tr { th { "Content MD5" } td { code { (l.source().content_md5.as_deref().unwrap_or("-")) } } }
                tr { th { "Written" } td {
                    (when(&l.source().time)) " UTC by " (l.source().operation.as_deref().unwrap_or("a write"))
                    @if let Some(b) = l.source().bytes { ", " (bytes(b)) }
                    " (record " code { (l.source().event.log) " #" (l.source().event.seq) } ")"
                } }
                @if l.content.is_some() {
                    tr { th { "This version" } td { "a properties change at " (when(&version.time)) " UTC by " (version.operation.as_deref().unwrap_or("-")) } }
                }
                tr { th { "Writer" } td {
                    @if let Some(p) = writer {
                        (principal_text(p.label(), directory.name_of(p.oid.as_deref(), p.name.as_deref()).as_deref()))
                        @if let Some(app) = &p.appid { " app id " code { (app) } }
                    } @else { "-" }
                } }
                tr { th { "Run" } td { code { (l.run_id.as_deref().unwrap_or("-")) } } }
                tr { th { "Write allowed by" } td.scope {
                    (l.source().role_name.as_deref().unwrap_or("-"))
                    @if let Some(a) = &l.source().assignment_id { " (assignment " code { (a) } ")" }
                } }
            }
            table.data #lineage-reads {
                caption { "Blob versions the writer read in the run before the write (" (l.reads.len()) ")" }
                thead { tr {
                    th { "Blob" } th { "ETag" } th { "Content MD5" } th.num { "Requests" } th.num { "Bytes" }
                    th { "First read (UTC)" } th { "Written in this run by" } th { "Granted by" }
                } }
                tbody {
                    @for r in &l.reads {
                        tr {
                            td { code { (r.blob) } }
                            td { code { (r.etag.as_deref().unwrap_or("-")) } }
                            td { code { (r.content_md5.as_deref().unwrap_or("-")) } }
                            td.num { (r.requests) }
                            td.num title=(format!("{} bytes", r.bytes)) { (bytes(r.bytes)) }
                            td { (when(&r.first)) }
                            td { (writer_of(r).unwrap_or_else(|| "-".to_owned())) }
                            td.scope {
                                // The id's last segment; the whole id is in the grants below.
                                @for a in &r.assignments {
                                    (role_of(a).unwrap_or_else(|| "a role".to_owned()))
                                    " (assignment " code title=(a) { (a.rsplit('/').next().unwrap_or(a)) } ")" br;
                                }
                            }
                        }
                    }
                }
            }
            table.data #lineage-grants {
                caption { "The assignments, and the admin changes that made them" }
                thead { tr { th { "Assignment" } th { "Role" } th.num { "Reads" } th { "Changes" } } }
                tbody {
                    @for g in &l.grants {
                        tr {
                            td.scope { code { (g.assignment_id) } }
                            td { (g.role_name.as_deref().unwrap_or("-")) }
                            td.num { (g.reads) }
                            td.detail {
                                @if g.changes.is_empty() { span.muted { "no admin change of it is in the log" } }
                                @for c in &g.changes {
                                    (when(&c.time)) " " (c.operation.as_deref().unwrap_or("change"))
                                    " by " (c.actor.as_deref().unwrap_or("-"))
                                    @if let Some(d) = &c.detail { ": " (d) }
                                    br;
                                }
                            }
                        }
                    }
                }
            }
            @if !l.notes.is_empty() {
                ul.notes { @for n in &l.notes { li { (n) } } }
            }
            p { "Proof bundle: " code { (report.bundle) } ", each event with its inclusion proof against a signed checkpoint. Checked offline, with no database:" }
            pre.json { (report.verified.trim_end()) }
        }
    }
}

fn checkpoints(input: &ReportInput) -> Markup {
    html! {
        section #checkpoints {
            h2 { "Signed checkpoints at the end of the run" }
            p.lead { "One per chain of the log, signed when the run ended and exported; each covers every record of the run on its chain, and the log was verified against all of them." }
            table.data {
                thead { tr { th { "Chain" } th.num { "Events signed" } th.num { "Events at verification" } th.num { "The run's records" } th { "File" } } }
                tbody {
                    @for c in &input.checkpoints {
                        tr {
                            td { code { (c.log) } }
                            td.num { (c.signed_size) }
                            td.num { (c.size) }
                            td.num { (c.run_records) }
                            td { code { (c.file) } }
                        }
                    }
                }
            }
            @for c in &input.checkpoints {
                details { summary { "Checkpoint of " code { (c.log) } } pre.json { (c.note.trim_end()) } }
            }
            pre.json { (input.verify.trim_end()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inlined_scripts_cannot_end_their_element() {
        // Inside <script>, only `</script` (and `<!--`) end or change the
        // element; the vendored files must hold neither.
        for text in [CHART_JS, CONSOLE_JS] {
            assert!(!text.to_ascii_lowercase().contains("</script"));
            assert!(!text.contains("<!--"));
        }
        assert!(!CONSOLE_CSS.to_ascii_lowercase().contains("</style"));
    }

    #[tokio::test]
    async fn the_report_names_denials_and_escapes_what_the_log_holds() {
        use entraflow_audit::checkpoint::DEFAULT_KEY_NAME;
        use entraflow_audit::{
            AuditLog, AuditOptions, CheckpointSigner, Decision, Event, EventType, Principal,
            StoreUrl,
        };
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::default_for(dir.path());
        let signer = CheckpointSigner::load_or_create(dir.path(), DEFAULT_KEY_NAME).unwrap();
        let log = AuditLog::open(&url, signer, AuditOptions::new("entraflow/gate"))
            .await
            .unwrap();
        let scope = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct/blobServices/default/containers/project-a";
        let event = |kind, who: &str, decision, blob: &str| {
            let mut e = Event::new(kind);
            e.principal = Some(Principal {
                oid: Some(format!("oid-{who}")),
                name: Some(who.to_owned()),
                ..Principal::default()
            });
            e.run_id = Some("r1".into());
            e.action =
                Some("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read".into());
            e.resource = Some(format!("{scope}/blobs/{blob}"));
            e.decision = Some(decision);
            e
        };
        log.append(event(
            EventType::BlobRead,
            "trainer",
            Decision::Allow,
            "digits/<b>0",
        ))
        .await
        .unwrap();
        let mut denied = event(
            EventType::AuthzDenied,
            "intruder",
            Decision::Deny,
            "digits/1",
        );
        denied.detail = Some("no role assignment grants it; assign 'Storage Blob Data Reader' (2a2b) at this scope or above".into());
        denied.status = Some(403);
        log.append(denied).await.unwrap();
        log.close().await.unwrap();

        let store = AnyStore::open_existing(&url).await.unwrap();
        let input = ReportInput {
            run_id: "r1".into(),
            history: BTreeMap::from([("accuracy".to_owned(), vec![0.5, 0.9])]),
            suggestion: "<script>alert(1)</script>".into(),
            ..ReportInput::default()
        };
        let page = render(&store, dir.path(), &input).await.unwrap();
        assert!(page.contains("data-chart=\"curve\""), "no training chart");
        assert!(page.contains("data-chart=\"counts\""), "no access timeline");
        assert!(page.contains(&format!("Chart.js v{CHART_JS_VERSION}")));
        assert!(page.contains("intruder") && page.contains("trainer"));
        let denials = &page[page.find("id=\"denials\"").unwrap()..];
        assert!(denials.contains("Storage Blob Data Reader"), "{denials}");
        assert!(denials.contains("project-a/digits/1"));
        assert!(
            page.contains("digits/&lt;b&gt;0"),
            "a blob name is not escaped"
        );
        assert!(page.contains("&lt;script&gt;alert(1)"));
        assert!(!page.contains("<script>alert(1)"));
        assert!(
            !page.contains("src=\"/assets"),
            "the file must not need the console"
        );
    }

    #[test]
    fn the_training_curve_is_one_line_per_metric() {
        let history = BTreeMap::from([
            ("accuracy".to_owned(), vec![0.5, 0.9]),
            ("loss".to_owned(), vec![1.2, 0.3]),
        ]);
        let json: serde_json::Value = serde_json::from_str(&training_json(&history)).unwrap();
        assert_eq!(json["labels"], serde_json::json!([1, 2]));
        assert_eq!(json["counts"][0]["label"], "accuracy");
        assert_eq!(json["counts"][1]["data"], serde_json::json!([1.2, 0.3]));
    }
}
