//! Chain integrity: every chain recomputed from its records and held against
//! its signed checkpoints, with the signer's key id.

use maud::{Markup, html};

use super::{Header, Tab, layout};
use crate::access::Viewer;
use crate::evidence::integrity::IntegrityView;

pub(crate) fn page(viewer: &Viewer, v: &IntegrityView) -> Markup {
    let all_ok = v.problem_count == 0
        && v.key_error.is_none()
        && v.chains
            .iter()
            .all(|c| c.latest.as_ref().is_none_or(|l| l.signature.is_ok()));
    let unsigned: u64 = v
        .chains
        .iter()
        .map(|c| c.size - c.signed_size.min(c.size))
        .sum();
    let body = html! {
        h1 { "Chain integrity" }
        @if all_ok {
            p.notice.good #integrity-status {
                "Verified: every chain recomputes to its signed checkpoints, and every checkpoint's signature checks against the trusted key."
                @if unsigned > 0 { " " (unsigned) " event(s) are newer than their chain's latest checkpoint (see the notes below)." }
            }
        } @else {
            p.notice.bad #integrity-status {
                "Not verified: " (v.problem_count) " problem(s)"
                @if let Some(e) = &v.key_error { "; " (e) }
                ". See below."
            }
        }
        p.lead {
            "Each chain's records were read back and hashed into its Merkle tree (RFC 6962) and the tree compared with every stored checkpoint; "
            "the signature of the latest one was checked with the verifier key(s): "
            @for k in &v.keys { code.key { (k) } " " }
        }
        table.data #chains {
            thead { tr {
                th { "Chain" } th { "Status" } th.num { "Events" } th.num { "Signed" } th.num { "Checkpoints checked" }
                th { "Latest checkpoint" } th { "Signer (key id)" } th { "Root" }
            } }
            tbody {
                @for c in &v.chains {
                    tr class=(if c.verified() { "ok" } else { "bad" }) {
                        td { code { (c.log_id) } }
                        td.status {
                            @if c.verified() { span.badge.good { "verified" } }
                            @else if c.latest.is_none() && c.problems.is_empty() { span.badge.warn { "no checkpoint yet" } }
                            @else { span.badge.bad { "FAILED" } }
                        }
                        td.num { (c.size) }
                        td.num { (c.signed_size) }
                        td.num { (c.checkpoints_checked) }
                        td {
                            @if let Some(cp) = &c.latest {
                                (cp.size) " events, " (cp.created)
                                @if let Err(e) = &cp.signature { br; span.deny { "signature: " (e) } }
                            } @else { "none" }
                        }
                        td { @if let Some(cp) = &c.latest { code.key { (cp.signer) } } }
                        td { code.root title=(c.root) { (c.root.get(..16).unwrap_or(&c.root)) "…" } }
                    }
                    @if c.signed_size < c.size && c.problems.is_empty() {
                        tr.note { td colspan="8" {
                            "Events #" (c.signed_size) " to #" (c.size - 1) " of " code { (c.log_id) }
                            " verify as recorded but are not yet covered by a signed checkpoint (the writer signs one every minute and when it stops)."
                        } }
                    }
                    @for p in &c.problems {
                        tr.problem { td colspan="8" { (p.to_string()) } }
                    }
                }
                @for p in &v.other_problems {
                    tr.problem { td colspan="8" { (p.to_string()) } }
                }
            }
        }
        @if !v.cannot_detect.is_empty() {
            section {
                h2 { "What this check cannot detect" }
                ul { @for c in &v.cannot_detect { li { (c) } } }
                p { "Keep exported checkpoints outside the system (" code { "entraflow audit checkpoint --out FILE" } ") and verify against them with " code { "entraflow audit verify --checkpoint FILE" } "." }
            }
        }
    };
    layout(
        "Chain integrity",
        Some(Header::from(viewer)),
        Tab::Integrity,
        body,
    )
}
