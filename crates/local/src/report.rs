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
    /// Writes `report.md` and `report.html` into `dir`, the run's records read
    /// from the audit log of `data_dir`; returns the Markdown's path.
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
        write("report.html", &html)?;
        write("report.md", &self.markdown())
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
