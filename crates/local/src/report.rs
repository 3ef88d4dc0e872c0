//! The run report, written into the run's directory: `report.html`, the
//! console's run page as one self-contained file (its charts drawn by the
//! console's Chart.js, inlined), and `report.md`, the same findings as text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use entraflow_audit::{AnyStore, StoreUrl};
use entraflow_console::report::ReportInput;
use entraflow_core::fsutil;

use crate::error::{LocalError, io};

/// What the report says.
#[derive(Debug, Default)]
pub(crate) struct RunReport {
    /// What the HTML page shows beside the run's records.
    pub(crate) page: ReportInput,
    /// `entraflow audit summary` output.
    pub(crate) summary: String,
    /// Object id → display name of the demo's principals.
    pub(crate) names: BTreeMap<String, String>,
}

impl RunReport {
    /// Writes `report.html` and `report.md` into `dir`, the run's records read
    /// from the audit log of `data_dir`; returns the HTML's path.
    pub(crate) async fn write(&self, dir: &Path, data_dir: &Path) -> Result<PathBuf, LocalError> {
        fsutil::create_private_dir(dir).map_err(io(dir))?;
        let store = AnyStore::open_existing(&StoreUrl::default_for(data_dir)).await?;
        let html = entraflow_console::report::render(&store, data_dir, &self.page).await?;
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            fsutil::write_public_file(&path, text.as_bytes())
                .map_err(io(&path))
                .map(|()| path)
        };
        write("report.md", &self.markdown())?;
        write("report.html", &html)
    }

    fn markdown(&self) -> String {
        let page = &self.page;
        let mut md = String::new();
        let _ = writeln!(md, "# entraflow run `{}`\n", page.run_id);
        for (k, v) in &page.facts {
            let _ = writeln!(md, "- {k}: {v}");
        }
        let _ = writeln!(
            md,
            "\nCharts (training curve, access timeline), principals by name and every denial: [report.html](report.html).\n"
        );
        let _ = writeln!(
            md,
            "## Who touched what\n\n```text\n{}\n```\n",
            self.summary.trim_end()
        );
        let _ = writeln!(
            md,
            "## The denied attempts\n\n```text\n{}\n```\n",
            page.refusals.join("\n")
        );
        if let Some(l) = &page.lineage {
            self.lineage(&mut md, l);
        }
        let _ = writeln!(
            md,
            "## Least privilege: the run's suggested assignments\n\n```text\n{}\n```\n",
            page.suggestion.trim_end()
        );
        let _ = writeln!(
            md,
            "## Signed checkpoints at the end of the run\n\n| chain | events signed | the run's records | file |\n|---|---:|---:|---|"
        );
        for c in &page.checkpoints {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | `{}` |",
                c.log, c.signed_size, c.run_records, c.file
            );
        }
        let _ = writeln!(md, "\n```text\n{}\n```", page.verify.trim_end());
        md
    }

    fn lineage(&self, md: &mut String, report: &entraflow_console::report::LineageReport) {
        let l = &report.lineage;
        let source = l.source();
        let writer = l.principal.as_ref().or(source.principal.as_ref());
        let who = writer.map_or_else(
            || "-".to_owned(),
            |p| {
                let id = p.label();
                match self.names.get(id).or(p.name.as_ref()) {
                    Some(name) => format!("{name} (`{id}`)"),
                    None => format!("`{id}`"),
                }
            },
        );
        let _ = writeln!(md, "## Model lineage\n\n`{}`\n", report.command);
        let _ = writeln!(
            md,
            "- Model `{}`, version `{}`, content MD5 `{}`\n- Written {} by {} ({}), run `{}`\n- Writer: {who}, allowed by {} (assignment `{}`)\n",
            l.blob,
            l.version.etag.as_deref().unwrap_or("-"),
            source.content_md5.as_deref().unwrap_or("-"),
            source.time,
            source.operation.as_deref().unwrap_or("a write"),
            source.event.log,
            l.run_id.as_deref().unwrap_or("-"),
            source.role_name.as_deref().unwrap_or("-"),
            source.assignment_id.as_deref().unwrap_or("-"),
        );
        let _ = writeln!(
            md,
            "| blob read | ETag | content MD5 | requests | bytes | granted by |\n|---|---|---|---:|---:|---|"
        );
        for r in &l.reads {
            let grants: Vec<String> = r
                .assignments
                .iter()
                .map(|a| {
                    let role = l
                        .grants
                        .iter()
                        .find(|g| &g.assignment_id == a)
                        .and_then(|g| g.role_name.as_deref())
                        .unwrap_or("a role");
                    format!("{role} (`{a}`)")
                })
                .collect();
            let _ = writeln!(
                md,
                "| `{}` | `{}` | `{}` | {} | {} | {} |",
                r.blob,
                r.etag.as_deref().unwrap_or("-"),
                r.content_md5.as_deref().unwrap_or("-"),
                r.requests,
                r.bytes,
                grants.join(", ")
            );
        }
        for note in &l.notes {
            let _ = writeln!(md, "\n> {note}");
        }
        let _ = writeln!(
            md,
            "\nProof bundle `{}`, verified offline:\n\n```text\n{}\n```\n",
            report.bundle,
            report.verified.trim_end()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use entraflow_console::report::{ChainCheckpoint, LineageReport};

    #[test]
    fn the_markdown_carries_the_lineage_suggestion_and_checkpoints() {
        let scope = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct/blobServices/default/containers/project-a";
        let grant = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/r1");
        let lineage = serde_json::from_value(serde_json::json!({
            "blob": "az://acct/project-a/models/r/model.keras",
            "resource": format!("{scope}/blobs/models/r/model.keras"),
            "run_id": "r",
            "principal": {"oid": "oid-a"},
            "version": {
                "event": {"log": "entraflow/gate", "seq": 9, "id": "e9"},
                "time": "2026-12-02T18:47:20.442Z", "operation": "PutBlob", "etag": "\"m1\"",
                "content_md5": "bW9kZWw=", "bytes": 5, "principal": {"oid": "oid-a"}, "run_id": "r",
                "token_uti": "u", "assignment_id": "w1", "role_name": "Storage Blob Data Contributor",
                "copy_source": null, "copy_source_etag": null
            },
            "reads": [{
                "blob": "az://acct/project-a/digits/train-00000", "resource": format!("{scope}/blobs/digits/train-00000"),
                "etag": "\"s0\"", "content_md5": "c2hhcmQ=", "requests": 2, "bytes": 10,
                "first": "2026-12-02T18:47:14.138Z", "last": "2026-12-02T18:47:19.784Z", "assignments": [grant]
            }],
            "grants": [{"assignment_id": grant, "role_name": "Storage Blob Data Reader", "reads": 2, "changes": []}],
            "notes": []
        }))
        .unwrap();
        let report = RunReport {
            page: ReportInput {
                run_id: "r".into(),
                lineage: Some(LineageReport {
                    lineage,
                    command: "entraflow audit lineage az://acct/project-a/models/r/model.keras"
                        .into(),
                    bundle: "lineage-bundle.json".into(),
                    verified: "OK: all 3 events are in their chains' signed checkpoints".into(),
                }),
                suggestion: "project-a-trainer (oid-a): 2 requests at …".into(),
                checkpoints: vec![ChainCheckpoint {
                    log: "entraflow/gate".into(),
                    size: 10,
                    signed_size: 10,
                    run_records: 4,
                    file: "checkpoints/entraflow_gate.checkpoint".into(),
                    note: "entraflow/gate\n10\n…".into(),
                }],
                ..ReportInput::default()
            },
            names: BTreeMap::from([("oid-a".into(), "project-a-trainer".into())]),
            ..RunReport::default()
        };
        let md = report.markdown();
        assert!(md.contains("Writer: project-a-trainer (`oid-a`)"), "{md}");
        assert!(md.contains(
            "| `az://acct/project-a/digits/train-00000` | `\"s0\"` | `c2hhcmQ=` | 2 | 10 | Storage Blob Data Reader"
        ), "{md}");
        assert!(md.contains("project-a-trainer (oid-a): 2 requests"));
        assert!(md.contains("| `entraflow/gate` | 10 | 4 |"));
        assert!(md.contains("[report.html](report.html)"));
    }
}
