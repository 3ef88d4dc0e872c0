//! The run report: Markdown with two small SVG plots (the training curve and the
//! access timeline from the audit log), written into the data directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use entraflow_core::fsutil;

use crate::error::{LocalError, io};

/// What the report says.
#[derive(Debug, Default)]
pub(crate) struct RunReport {
    pub(crate) run_id: String,
    pub(crate) authority_host: String,
    pub(crate) blob_endpoint: String,
    /// Keras history: metric name → one value per epoch.
    pub(crate) history: BTreeMap<String, Vec<f64>>,
    /// Audit records of the run, as `entraflow audit query -o json` prints them.
    pub(crate) events: Vec<serde_json::Value>,
    /// `entraflow audit summary` output.
    pub(crate) summary: String,
    /// `entraflow audit verify` output.
    pub(crate) verify: String,
    /// The permission error project B's job got.
    pub(crate) denial: String,
    /// Object id → display name of the demo's principals.
    pub(crate) names: BTreeMap<String, String>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const MARGIN: f64 = 40.0;

impl RunReport {
    /// Writes `report.md`, `training.svg` and `access-timeline.svg` into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> Result<PathBuf, LocalError> {
        fsutil::create_private_dir(dir).map_err(io(dir))?;
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            fsutil::write_public_file(&path, text.as_bytes()).map_err(io(&path))
        };
        write("training.svg", &self.training_svg())?;
        write("access-timeline.svg", &self.timeline_svg())?;
        let path = dir.join("report.md");
        write("report.md", &self.markdown())?;
        Ok(path)
    }

    fn markdown(&self) -> String {
        let accuracy = self
            .history
            .get("accuracy")
            .and_then(|a| a.last())
            .copied()
            .unwrap_or(0.0);
        let mut md = String::new();
        let _ = writeln!(md, "# entraflow run `{}`\n", self.run_id);
        let _ = writeln!(
            md,
            "- Authority: {}\n- Storage (gate): {}",
            self.authority_host, self.blob_endpoint
        );
        let _ = writeln!(
            md,
            "- Final training accuracy: **{:.1} %**\n",
            accuracy * 100.0
        );
        let _ = writeln!(md, "## Training curve\n\n![training curve](training.svg)\n");
        let _ = writeln!(
            md,
            "## Who touched what\n\n![access timeline](access-timeline.svg)\n"
        );
        let _ = writeln!(md, "```text\n{}\n```\n", self.summary.trim_end());
        let _ = writeln!(
            md,
            "## The denied attempt\n\n```text\n{}\n```\n",
            self.denial.trim()
        );
        let _ = writeln!(
            md,
            "## Audit log integrity\n\n```text\n{}\n```",
            self.verify.trim_end()
        );
        md
    }

    fn training_svg(&self) -> String {
        let mut svg = svg_open("Training curve: accuracy (green) and loss (blue) per epoch");
        let epochs = self.history.values().map(Vec::len).max().unwrap_or(0);
        for (metric, colour) in [("accuracy", "#2a9d3f"), ("loss", "#1f5fbf")] {
            let Some(values) = self.history.get(metric) else {
                continue;
            };
            let top = values.iter().cloned().fold(1.0_f64, f64::max);
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let x = MARGIN + (WIDTH - 2.0 * MARGIN) * i as f64 / (epochs.max(2) - 1) as f64;
                    let y = HEIGHT - MARGIN - (HEIGHT - 2.0 * MARGIN) * (v / top);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
            if let Some(last) = values.last() {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.0}" y="{:.0}" fill="{colour}" font-size="12">{metric} {last:.3}</text>"#,
                    WIDTH - MARGIN - 110.0,
                    if metric == "accuracy" {
                        MARGIN - 8.0
                    } else {
                        MARGIN + 8.0
                    }
                );
            }
        }
        let _ = writeln!(
            svg,
            r#"<text x="{MARGIN}" y="{:.0}" font-size="12">epochs 1..{epochs}</text></svg>"#,
            HEIGHT - 10.0
        );
        svg
    }

    fn timeline_svg(&self) -> String {
        let mut svg = svg_open("Access timeline: one dot per request, green allowed, red denied");
        let times: Vec<f64> = self.events.iter().filter_map(event_time).collect();
        let (start, end) = times
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        let span = (end - start).max(1.0);
        let mut lanes: Vec<String> = Vec::new();
        for event in &self.events {
            let who = self.principal_name(event);
            if !lanes.contains(&who) {
                lanes.push(who);
            }
        }
        let lane_height = (HEIGHT - 2.0 * MARGIN) / lanes.len().max(1) as f64;
        for (i, lane) in lanes.iter().enumerate() {
            let _ = writeln!(
                svg,
                r#"<text x="4" y="{:.0}" font-size="11">{}</text>"#,
                MARGIN + lane_height * (i as f64 + 0.5),
                xml_escape(lane)
            );
        }
        for event in &self.events {
            let Some(t) = event_time(event) else { continue };
            let lane = lanes
                .iter()
                .position(|l| *l == self.principal_name(event))
                .unwrap_or(0);
            let denied = event["decision"].as_str() == Some("deny");
            let bytes = event["bytes"].as_f64().unwrap_or(0.0);
            let x = MARGIN + 130.0 + (WIDTH - 2.0 * MARGIN - 130.0) * (t - start) / span;
            let y = MARGIN + lane_height * (lane as f64 + 0.5);
            // Denials carry no bytes; draw them large enough to be seen.
            let r = if denied {
                5.0
            } else {
                2.0 + (bytes + 1.0).log10().min(8.0) / 2.0
            };
            let colour = if denied { "#d62828" } else { "#2a9d3f" };
            let _ = writeln!(
                svg,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="{colour}" fill-opacity="0.6"/>"#
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{MARGIN}" y="{:.0}" font-size="12">{:.0} s of requests</text></svg>"#,
            HEIGHT - 10.0,
            span
        );
        svg
    }

    fn principal_name(&self, event: &serde_json::Value) -> String {
        let principal = &event["principal"];
        principal["oid"]
            .as_str()
            .and_then(|oid| self.names.get(oid).cloned())
            .or_else(|| principal["name"].as_str().map(str::to_owned))
            .or_else(|| principal["oid"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "anonymous".into())
    }
}

fn svg_open(title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif"><title>{}</title><rect width="100%" height="100%" fill="white"/>
<line x1="{MARGIN}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/><line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{b}" stroke="#888"/>
"##,
        xml_escape(title),
        b = HEIGHT - MARGIN,
        r = WIDTH - MARGIN,
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Seconds since the epoch of an audit record's RFC 3339 `time`.
fn event_time(event: &serde_json::Value) -> Option<f64> {
    let text = event["time"].as_str()?;
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_plots_the_curve_and_marks_denials_red() {
        let dir = tempfile::tempdir().unwrap();
        let report = RunReport {
            run_id: "r1".into(),
            history: BTreeMap::from([
                ("accuracy".into(), vec![0.5, 0.9]),
                ("loss".into(), vec![1.2, 0.3]),
            ]),
            events: vec![
                serde_json::json!({"time": "2026-11-26T10:00:00.000Z", "decision": "allow", "bytes": 4096, "principal": {"oid": "a"}}),
                serde_json::json!({"time": "2026-11-26T10:00:05.000Z", "decision": "deny", "principal": {"oid": "b"}}),
            ],
            names: BTreeMap::from([("a".into(), "project-a-trainer".into())]),
            ..RunReport::default()
        };
        let path = report.write(dir.path()).unwrap();
        let md = std::fs::read_to_string(path).unwrap();
        assert!(md.contains("90.0 %"), "{md}");
        let timeline = std::fs::read_to_string(dir.path().join("access-timeline.svg")).unwrap();
        assert!(timeline.contains("#d62828") && timeline.contains("project-a-trainer"));
        let curve = std::fs::read_to_string(dir.path().join("training.svg")).unwrap();
        assert!(curve.contains("accuracy 0.900"));
    }
}
