//! The blocking facade, for callers without an async runtime: the Python binding,
//! TensorFlow's filesystem callbacks, plain threads.
//!
//! **Fork safety.** There is no runtime that outlives a `fork()`: the facade uses one
//! runtime per *process*, created on first use and tagged with the process id. A
//! forked child (a PyTorch DataLoader worker, a `multiprocessing` pool) sees a
//! different id and builds its own runtime; the parent's is leaked in the child, never
//! dropped, because its worker thread does not exist there. Credentials do the same
//! with their HTTP clients, and the cache ignores a fetch that was in flight in the
//! parent. Cached tokens *are* inherited — they are plain values and still valid.
//! Locks are held only for map lookups, never across I/O, so a fork cannot catch one
//! held for long.
//!
//! A fresh cached token is returned without entering the runtime at all
//! ([`TokenCredential::cached_token`]), so the common path is a map lookup.

use std::sync::{Arc, Mutex};

use crate::error::CredentialError;
use crate::token::{AccessToken, TokenCredential, TokenRequest};

/// Wraps any credential with a synchronous `get_token`. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct BlockingCredential {
    credential: Arc<dyn TokenCredential>,
}

impl std::fmt::Debug for BlockingCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingCredential")
            .field("credential", &self.credential.name())
            .finish()
    }
}

static RUNTIME: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);

/// This process's runtime, shared by everything in entraflow that is called
/// synchronously (this facade, the TensorFlow plugin, fsspec): two worker threads
/// that run background refreshes and read-ahead while callers block on their own
/// requests. Created on first use and again in a forked child, whose copy of the
/// parent's runtime has no threads.
pub fn process_runtime() -> std::io::Result<Arc<tokio::runtime::Runtime>> {
    let pid = std::process::id();
    let mut current = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = current.as_ref()
        && *owner == pid
    {
        return Ok(rt.clone());
    }
    if let Some(inherited) = current.take() {
        // Inherited from the parent: dropping it would wait for threads that are not here.
        std::mem::forget(inherited);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("entraflow")
        .enable_all()
        .build()
        .map(Arc::new)?;
    *current = Some((pid, rt.clone()));
    Ok(rt)
}

fn runtime() -> Result<Arc<tokio::runtime::Runtime>, CredentialError> {
    process_runtime().map_err(|e| CredentialError::Misconfigured {
        variable: "async runtime".into(),
        hint: format!("the credential runtime could not start: {e}"),
    })
}

impl BlockingCredential {
    /// Wraps `credential`.
    pub fn new(credential: impl TokenCredential + 'static) -> Self {
        Self {
            credential: Arc::new(credential),
        }
    }

    /// Wraps a shared credential.
    pub fn from_arc(credential: Arc<dyn TokenCredential>) -> Self {
        Self { credential }
    }

    /// The wrapped credential's name.
    pub fn name(&self) -> &'static str {
        self.credential.name()
    }

    /// A token, blocking the calling thread while the network is needed. Must not be
    /// called from inside an async runtime (use the async credential there).
    pub fn get_token(&self, request: &TokenRequest) -> Result<AccessToken, CredentialError> {
        if let Some(token) = self.credential.cached_token(request) {
            return Ok(token);
        }
        runtime()?.block_on(self.credential.get_token(request))
    }
}
