//! Named cases of the attack and fault suites, written where the test command
//! gathers them into SECURITY.md and RELIABILITY.md (`scripts/reports.py`).
//!
//! A suite checks every case, records each outcome, writes them all, and only then
//! fails if any case did not hold — so the generated table shows every case, not
//! just the ones before the first failure.

use std::path::PathBuf;

use serde_json::json;

/// Which generated document a suite belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Doc {
    /// SECURITY.md: attacks and their expected refusals.
    Security,
    /// RELIABILITY.md: injected faults and the expected recovery.
    Reliability,
}

/// The cases of one suite.
#[derive(Debug)]
pub struct Suite {
    doc: Doc,
    name: String,
    cases: Vec<serde_json::Value>,
    failures: Vec<String>,
}

/// Where reports go: `ENTRAFLOW_REPORT_DIR`, else `target/reports` of the workspace.
pub fn report_dir() -> PathBuf {
    std::env::var_os("ENTRAFLOW_REPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/reports"))
}

impl Suite {
    /// A suite called `name` (one table in `doc`).
    pub fn new(doc: Doc, name: &str) -> Self {
        Self {
            doc,
            name: name.to_owned(),
            cases: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Records case `case`: what was expected and what happened.
    pub fn check(&mut self, case: &str, expected: &str, observed: &str, held: bool) {
        if !held {
            self.failures
                .push(format!("{case}: expected {expected}, got {observed}"));
        }
        self.cases.push(json!({
            "case": case, "expected": expected, "observed": observed, "held": held,
        }));
    }

    /// How many cases were recorded.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether no case was recorded.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Writes the suite's cases, then panics listing every case that did not hold.
    pub fn finish(self) {
        let doc = match self.doc {
            Doc::Security => "security",
            Doc::Reliability => "reliability",
        };
        let dir = report_dir().join(doc);
        std::fs::create_dir_all(&dir).unwrap();
        let body = serde_json::to_string_pretty(&json!({
            "suite": self.name, "cases": self.cases,
        }))
        .unwrap();
        let file = self.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        std::fs::write(dir.join(format!("{file}.json")), body).unwrap();
        assert!(
            self.failures.is_empty(),
            "{} of {} cases did not hold:\n{}",
            self.failures.len(),
            self.cases.len(),
            self.failures.join("\n")
        );
    }
}
