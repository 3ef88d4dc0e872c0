//! The console's static files, embedded in the binary: its stylesheet, its chart
//! script, and Chart.js (vendored from the npm registry, pinned; see
//! `assets/chart.js/VENDORED.md`). Nothing is fetched from anywhere at run time.
//! The run report ([`crate::report`]) inlines the same three into its file.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Chart.js's version, as vendored.
pub const CHART_JS_VERSION: &str = "4.6.1";
/// SHA-256 of the vendored `chart.umd.min.js`.
pub const CHART_JS_SHA256: &str =
    "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2";

pub(crate) const CHART_JS: &str = include_str!("../assets/chart.js/chart.umd.min.js");
const CHART_JS_LICENSE: &str = include_str!("../assets/chart.js/LICENSE.md");
pub(crate) const CONSOLE_JS: &str = include_str!("../assets/console.js");
pub(crate) const CONSOLE_CSS: &str = include_str!("../assets/console.css");

/// The file at `/assets/<name>`.
pub(crate) fn serve(name: &str) -> Response {
    let (body, kind): (&[u8], &str) = match name {
        "chart.umd.min.js" => (CHART_JS.as_bytes(), "text/javascript; charset=utf-8"),
        "chart.js-LICENSE.md" => (CHART_JS_LICENSE.as_bytes(), "text/plain; charset=utf-8"),
        "console.js" => (CONSOLE_JS.as_bytes(), "text/javascript; charset=utf-8"),
        "console.css" => (CONSOLE_CSS.as_bytes(), "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_chart_library_is_the_pinned_one() {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CHART_JS.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, CHART_JS_SHA256);
        let head = &CHART_JS[..200];
        assert!(
            head.contains(&format!("Chart.js v{CHART_JS_VERSION}")),
            "{head}"
        );
        assert!(CHART_JS_LICENSE.starts_with("The MIT License"));
    }
}
