//! The timeline: requests over time (reads, writes, SQL, denials, tokens
//! issued) and bytes over time, for one run or for a recent window.

use maud::{Markup, html};

use super::{Header, Tab, chart, layout, url_segment};
use crate::access::Viewer;
use crate::evidence::index::RunInfo;
use crate::evidence::timeline::Timeline;

/// What the timeline covers.
pub(crate) enum Span<'a> {
    Run(&'a str),
    Hours(u32),
}

pub(crate) fn page(
    viewer: &Viewer,
    span: &Span<'_>,
    timeline: &Timeline,
    runs: &[RunInfo],
) -> Markup {
    let what = match span {
        Span::Run(id) => format!("run {id}"),
        Span::Hours(h) => format!("the last {h} hours, every chain"),
    };
    let body = html! {
        h1 { "Timeline" }
        p.lead { "Showing " strong #timeline-span { (what) } ". "
            "Reads, writes and denials are told apart by colour and legend; hover a bar for its numbers." }
        p.choices {
            "Show: "
            a href="/timeline?hours=1" { "last hour" } " · "
            a href="/timeline?hours=24" { "last 24 hours" } " · "
            a href="/timeline?hours=168" { "last 7 days" }
            @for r in runs.iter().take(8) {
                " · " a href=(format!("/timeline?run={}", url_segment(&r.run_id))) { "run " (r.run_id) }
            }
        }
        @if timeline.is_empty() {
            p.notice { "No record in this span." }
        } @else {
            section.charts.wide {
                (chart("timeline-counts", "counts", "Requests per bar", timeline.to_json()))
                (chart("timeline-bytes", "bytes", "Bytes per bar", timeline.to_json()))
            }
        }
    };
    layout("Timeline", Some(Header::from(viewer)), Tab::Timeline, body)
}
