//! One tokio runtime per process for the plugin. TensorFlow calls the plugin from
//! its own threads, synchronously; they block on futures run here. Tagged with the
//! process id so a forked child (a `tf.data` service worker, a multiprocessing pool)
//! builds its own instead of using one whose threads did not survive the fork.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::status::FsError;

static RUNTIME: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);

/// This process's runtime.
pub(crate) fn handle() -> Result<Arc<tokio::runtime::Runtime>, FsError> {
    let pid = std::process::id();
    let mut current = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = current.as_ref()
        && *owner == pid
    {
        return Ok(rt.clone());
    }
    if let Some(inherited) = current.take() {
        // Its worker threads do not exist in this process: dropping it would hang.
        std::mem::forget(inherited);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("entraflow-tfplugin")
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| FsError::Unavailable {
            url: "local async runtime".into(),
            attempts: 1,
            reason: e.to_string(),
        })?;
    *current = Some((pid, rt.clone()));
    Ok(rt)
}

/// Runs `future` to completion from a TensorFlow thread. Must not be called from
/// inside the runtime (the FFI layer is the only caller, and TensorFlow's threads
/// are never runtime threads).
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, FsError> {
    Ok(handle()?.block_on(future))
}
