//! Jobs as a Kubernetes pod with workload identity would run them: a process whose
//! environment holds only the pod's identity variables (plus where storage is and
//! which CA to trust), never a secret.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::error::LocalError;
use crate::provision::Project;

/// What a job needs to know about the stack it runs against.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub(crate) authority_host: String,
    pub(crate) tenant_id: String,
    pub(crate) blob_endpoint: String,
    pub(crate) ca_pem_path: PathBuf,
    pub(crate) python: PathBuf,
    pub(crate) run_id: String,
    /// The SQL gate's libpq settings (`PGHOST`, `PGPORT`, `PGSSLMODE`,
    /// `PGSSLROOTCERT`, `PGDATABASE`), when the demo has one.
    pub(crate) sql: Option<Vec<(String, String)>>,
}

/// A pod: a project's identity and its projected token file.
#[derive(Debug, Clone)]
pub(crate) struct Pod<'a> {
    pub(crate) project: &'a Project,
    pub(crate) token_file: PathBuf,
}

impl Cluster {
    /// The pod's environment, complete: nothing is inherited from the demo process
    /// except what lets Python start (PATH, HOME, locale).
    pub(crate) fn pod_env(&self, pod: &Pod<'_>) -> Vec<(String, String)> {
        let mut env = vec![
            ("AZURE_CLIENT_ID".into(), pod.project.app_id.clone()),
            ("AZURE_TENANT_ID".into(), self.tenant_id.clone()),
            ("AZURE_AUTHORITY_HOST".into(), self.authority_host.clone()),
            (
                "AZURE_FEDERATED_TOKEN_FILE".into(),
                pod.token_file.display().to_string(),
            ),
            // Not identity: where the account lives and which CA signs its certificate.
            ("ENTRAFLOW_BLOB_ENDPOINT".into(), self.blob_endpoint.clone()),
            (
                "SSL_CERT_FILE".into(),
                self.ca_pem_path.display().to_string(),
            ),
            ("ENTRAFLOW_RUN_ID".into(), self.run_id.clone()),
            ("TF_CPP_MIN_LOG_LEVEL".into(), "2".into()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
        ];
        if let Some(sql) = &self.sql {
            env.extend(sql.iter().cloned());
            // The user name a job signs in with is its principal's name.
            env.push(("PGUSER".into(), pod.project.name.clone()));
        }
        for inherited in ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "COLUMNS"] {
            if let Ok(value) = std::env::var(inherited) {
                env.push((inherited.into(), value));
            }
        }
        env
    }

    /// A Python command running `script` in `pod`.
    pub(crate) fn python(&self, pod: &Pod<'_>, script: &Path, args: &[String]) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg(script)
            .args(args)
            .env_clear()
            .envs(self.pod_env(pod));
        command
    }
}

/// Runs `command` to completion with its output on the terminal.
pub(crate) fn run_visible(
    name: &str,
    python: &Path,
    mut command: Command,
) -> Result<ExitStatus, LocalError> {
    command
        .stdin(Stdio::null())
        .status()
        .map_err(|e| job_error(name, python, format!("could not start: {e}")))
}

/// Runs `command` with its output on the terminal, and returns stderr too.
pub(crate) fn run_capturing_stderr(
    name: &str,
    python: &Path,
    mut command: Command,
) -> Result<(ExitStatus, String), LocalError> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| job_error(name, python, format!("could not start: {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprint!("{stderr}");
    Ok((output.status, stderr))
}

pub(crate) fn job_error(name: &str, python: &Path, problem: String) -> LocalError {
    LocalError::Job {
        job: name.to_owned(),
        problem,
        python: python.display().to_string(),
    }
}
