//! Jobs as a Kubernetes pod with workload identity would run them: a process whose
//! environment holds only the pod's identity variables (plus where storage is and
//! which CA to trust), never a secret.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

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
            // TensorFlow's start-up chatter (no GPU, CPU features) is not the
            // job's output; errors still surface as Python exceptions.
            ("TF_CPP_MIN_LOG_LEVEL".into(), "3".into()),
            (
                "PYTHONWARNINGS".into(),
                "ignore::UserWarning:keras.src.trainers.epoch_iterator".into(),
            ),
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

/// A started job: stdout on the terminal, stderr too but without the lines
/// TensorFlow's native libraries log before anything can configure them.
pub(crate) struct Job {
    child: Child,
    stderr: JoinHandle<String>,
}

impl Job {
    pub(crate) fn start(
        name: &str,
        python: &Path,
        mut command: Command,
    ) -> Result<Job, LocalError> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| job_error(name, python, format!("could not start: {e}")))?;
        let pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut kept = String::new();
            for line in BufReader::new(pipe).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line);
                if is_startup_noise(&line) {
                    continue;
                }
                let _ = writeln!(std::io::stderr(), "{line}");
                kept.push_str(&line);
                kept.push('\n');
            }
            kept
        });
        Ok(Job { child, stderr })
    }

    /// Waits for the job; its exit status and the stderr it printed.
    pub(crate) fn wait(
        mut self,
        name: &str,
        python: &Path,
    ) -> Result<(ExitStatus, String), LocalError> {
        let status = self
            .child
            .wait()
            .map_err(|e| job_error(name, python, e.to_string()))?;
        let stderr = self.stderr.join().unwrap_or_default();
        Ok((status, stderr))
    }
}

/// What abseil prints before logging is initialised (`WARNING: All log
/// messages before absl::InitializeLog() ...` and `I0000 00:00:... file.cc:31]`
/// info and warning lines), which TF_CPP_MIN_LOG_LEVEL does not reach.
fn is_startup_noise(line: &str) -> bool {
    if line.starts_with("WARNING: All log messages before absl::InitializeLog()") {
        return true;
    }
    let mut words = line.split_whitespace();
    // `<severity><MMDD> <hh:mm:ss.micros> <thread> <file>:<line>] <message>`
    let (Some(level), Some(_clock), Some(_thread), Some(source)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    let severity = level.as_bytes();
    severity.len() == 5
        && matches!(severity[0], b'I' | b'W')
        && severity[1..].iter().all(u8::is_ascii_digit)
        && source.ends_with(']')
        && source.contains(".cc:")
}

/// Runs `command` to completion with its output on the terminal.
pub(crate) fn run_visible(
    name: &str,
    python: &Path,
    command: Command,
) -> Result<ExitStatus, LocalError> {
    Ok(Job::start(name, python, command)?.wait(name, python)?.0)
}

/// Runs `command` with its output on the terminal, and returns stderr too.
pub(crate) fn run_capturing_stderr(
    name: &str,
    python: &Path,
    command: Command,
) -> Result<(ExitStatus, String), LocalError> {
    Job::start(name, python, command)?.wait(name, python)
}

pub(crate) fn job_error(name: &str, python: &Path, problem: String) -> LocalError {
    LocalError::Job {
        job: name.to_owned(),
        problem,
        python: python.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_startup_noise;

    #[test]
    fn abseil_start_up_lines_are_noise_and_errors_and_job_output_are_not() {
        for noise in [
            "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
            "I0000 00:00:1796223221.651660   13571 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
            "W0000 00:00:1796223221.651660   13571 cpu_feature_guard.cc:210] This TensorFlow binary is optimized",
        ] {
            assert!(is_startup_noise(noise), "{noise}");
        }
        for kept in [
            "E0000 00:00:1796223181.827752   12723 cuda_platform.cc:52] failed call to cuInit",
            "permission denied: This request is not authorized to perform this operation",
            "I0000 is not a log line",
            "",
        ] {
            assert!(!is_startup_noise(kept), "{kept}");
        }
    }
}
