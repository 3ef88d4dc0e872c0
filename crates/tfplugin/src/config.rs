//! Configuration from the environment, read once per process (per `TF_InitPlugin`
//! for the scheme).

use url::Url;

use crate::status::FsError;

/// Account URL override: `https://127.0.0.1:PORT/<account>` (the gate) or any
/// Blob endpoint. Without it, `https://<account>.blob.core.windows.net`.
pub const ENTRAFLOW_BLOB_ENDPOINT: &str = entraflow_core::env::ENTRAFLOW_BLOB_ENDPOINT;
/// Bytes per read-ahead GET (default 8 MiB).
pub const ENTRAFLOW_READ_AHEAD: &str = "ENTRAFLOW_READ_AHEAD";
/// Read-ahead GETs in flight per file (default 4).
pub const ENTRAFLOW_READ_CONCURRENCY: &str = "ENTRAFLOW_READ_CONCURRENCY";
/// The scheme the plugin registers (default `az`; `azent` when tensorflow-io holds `az`).
pub const ENTRAFLOW_TF_SCHEME: &str = "ENTRAFLOW_TF_SCHEME";
/// The scheme registered when `ENTRAFLOW_TF_SCHEME` is unset.
pub const DEFAULT_SCHEME: &str = "az";
/// The alternative the Python side retries with when `az` is taken.
pub const ALTERNATIVE_SCHEME: &str = "azent";
/// OAuth scope of Azure Storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// Sent on every request so the audit log ties it to the training run.
pub const RUN_ID_HEADER: &str = "x-ms-entraflow-run-id";

/// Bytes per block of a write (Put Block).
pub const WRITE_BLOCK: usize = 8 << 20;

/// The plugin's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ENTRAFLOW_BLOB_ENDPOINT`, parsed.
    pub endpoint: Option<Url>,
    /// `ENTRAFLOW_READ_AHEAD`.
    pub read_ahead: u64,
    /// `ENTRAFLOW_READ_CONCURRENCY`.
    pub read_concurrency: u64,
    /// `ENTRAFLOW_RUN_ID`, or a UUID generated once per process.
    pub run_id: String,
}

impl Config {
    /// Reads the environment. A malformed value is an error naming the variable.
    pub fn from_env() -> Result<Config, FsError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| -> Result<u64, FsError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    FsError::Misconfigured(format!(
                        "{name}={v} is not a positive number of bytes/requests"
                    ))
                }),
            }
        };
        let endpoint = match var(ENTRAFLOW_BLOB_ENDPOINT) {
            None => None,
            Some(v) => Some(Url::parse(v.trim_end_matches('/')).map_err(|e| {
                FsError::Misconfigured(format!(
                    "{ENTRAFLOW_BLOB_ENDPOINT}={v} is not a URL ({e}); expected https://HOST:PORT/<account>"
                ))
            })?),
        };
        Ok(Config {
            endpoint,
            read_ahead: number(ENTRAFLOW_READ_AHEAD, 8 << 20)?,
            read_concurrency: number(ENTRAFLOW_READ_CONCURRENCY, 4)?,
            run_id: run_id(),
        })
    }

    /// The account URL for `account` (no trailing `/`).
    pub fn account_url(&self, account: &str) -> Result<String, FsError> {
        match &self.endpoint {
            None => Ok(format!("https://{account}.blob.core.windows.net")),
            Some(url) => {
                // Path-style (the gate, Azurite): the account is the last path segment.
                let named = url
                    .path_segments()
                    .and_then(|mut s| s.next_back())
                    .unwrap_or("");
                let host_account = url
                    .host_str()
                    .and_then(|h| h.split('.').next())
                    .unwrap_or("");
                if named == account || (named.is_empty() && host_account == account) {
                    Ok(url.as_str().trim_end_matches('/').to_owned())
                } else {
                    Err(FsError::Misconfigured(format!(
                        "{ENTRAFLOW_BLOB_ENDPOINT}={url} serves the account '{}', but the path names '{account}'; \
                         use az://{}/... or point {ENTRAFLOW_BLOB_ENDPOINT} at this account",
                        if named.is_empty() {
                            host_account
                        } else {
                            named
                        },
                        if named.is_empty() {
                            host_account
                        } else {
                            named
                        },
                    )))
                }
            }
        }
    }
}

/// Log filter for the plugin's own logs on stderr (e.g. `info`, `entraflow_tfplugin=debug`).
/// TensorFlow does not see `tracing` events, so without it the plugin is silent.
pub const ENTRAFLOW_LOG: &str = "ENTRAFLOW_LOG";

/// Sends this library's logs to stderr when `ENTRAFLOW_LOG` is set (once).
pub(crate) fn init_logging() {
    if let Ok(filter) = std::env::var(ENTRAFLOW_LOG) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// The scheme to register, from `ENTRAFLOW_TF_SCHEME`.
pub(crate) fn scheme() -> String {
    std::env::var(ENTRAFLOW_TF_SCHEME)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SCHEME.to_owned())
}

fn run_id() -> String {
    static GENERATED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    std::env::var(entraflow_core::env::ENTRAFLOW_RUN_ID)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            GENERATED
                .get_or_init(|| uuid::Uuid::new_v4().to_string())
                .clone()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: Option<&str>) -> Config {
        Config {
            endpoint: endpoint.map(|e| Url::parse(e).unwrap()),
            read_ahead: 1,
            read_concurrency: 1,
            run_id: "r".into(),
        }
    }

    #[test]
    fn default_endpoint_is_the_public_cloud() {
        assert_eq!(
            config(None).account_url("acct").unwrap(),
            "https://acct.blob.core.windows.net"
        );
    }

    #[test]
    fn a_path_style_endpoint_must_name_the_same_account() {
        let c = config(Some("https://127.0.0.1:4443/entraflowlocal"));
        assert_eq!(
            c.account_url("entraflowlocal").unwrap(),
            "https://127.0.0.1:4443/entraflowlocal"
        );
        let err = c.account_url("other").unwrap_err().to_string();
        assert!(
            err.contains("'entraflowlocal'") && err.contains("'other'"),
            "{err}"
        );
    }

    #[test]
    fn a_host_style_endpoint_matches_by_host() {
        let c = config(Some("https://acct.blob.core.windows.net/"));
        assert_eq!(
            c.account_url("acct").unwrap(),
            "https://acct.blob.core.windows.net"
        );
    }
}
