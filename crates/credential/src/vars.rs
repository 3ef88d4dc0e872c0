//! Where configuration variables come from: the process environment, optionally
//! backed by an env file (the local authority's `<data-dir>/env`), or an explicit map.
//! Flags beat the environment, the environment beats the file.

use std::collections::HashMap;
use std::path::Path;

/// A source of `AZURE_*` variables. Values are never printed (`Debug` lists names only).
#[derive(Clone, Default)]
pub struct Environment {
    read_process: bool,
    fallback: HashMap<String, String>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.fallback.keys().collect();
        names.sort();
        f.debug_struct("Environment")
            .field("read_process", &self.read_process)
            .field("fallback_names", &names)
            .finish()
    }
}

impl Environment {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            read_process: true,
            fallback: HashMap::new(),
        }
    }

    /// Exactly these variables, nothing from the process (tests, embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            read_process: false,
            fallback: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Fills variables that are not otherwise set from a shell-style env file
    /// (`export NAME=value`, `NAME='value'`). A missing file adds nothing.
    pub fn with_env_file(mut self, path: &Path) -> Self {
        if let Ok(text) = std::fs::read_to_string(path) {
            for (name, value) in parse_env_file(&text) {
                self.fallback.entry(name).or_insert(value);
            }
        }
        self
    }

    /// A variable's value; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let from_process = self
            .read_process
            .then(|| std::env::var(name).ok())
            .flatten();
        from_process
            .or_else(|| self.fallback.get(name).cloned())
            .filter(|v| !v.trim().is_empty())
    }
}

impl Environment {
    /// Every distinct value of a variable across the layers, process first. For
    /// bundles such as `SSL_CERT_FILE`, where a global value (the system bundle) and
    /// the local authority's CA are both wanted.
    pub fn get_all(&self, name: &str) -> Vec<String> {
        let mut values = Vec::new();
        if self.read_process
            && let Ok(v) = std::env::var(name)
        {
            values.push(v);
        }
        if let Some(v) = self.fallback.get(name) {
            values.push(v.clone());
        }
        values.retain(|v| !v.trim().is_empty());
        values.dedup();
        values
    }
}

fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, value) = line.split_once('=')?;
            Some((name.trim().to_owned(), unquote(value.trim())))
        })
        .collect()
}

/// Undoes single-quoting as the authority writes it (`'it'\''s'`) and plain double quotes.
fn unquote(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        return value[1..value.len() - 1].to_owned();
    }
    if !value.starts_with('\'') {
        return value.to_owned();
    }
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '\\' if !quoted => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_read_as_the_authority_writes_them() {
        let parsed = parse_env_file(
            "# comment\nexport AZURE_TENANT_ID=abc\nexport SSL_CERT_FILE='/tmp/it'\\''s/ca.pem'\nPLAIN=\"x y\"\n",
        );
        assert_eq!(
            parsed,
            vec![
                ("AZURE_TENANT_ID".into(), "abc".into()),
                ("SSL_CERT_FILE".into(), "/tmp/it's/ca.pem".into()),
                ("PLAIN".into(), "x y".into()),
            ]
        );
    }

    #[test]
    fn explicit_pairs_ignore_the_process_and_empty_is_unset() {
        let env = Environment::from_pairs([("A", "1"), ("B", " ")]);
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("B"), None);
        assert_eq!(
            env.get("PATH"),
            None,
            "the process environment is not consulted"
        );
        assert!(!format!("{env:?}").contains('1'));
    }
}
