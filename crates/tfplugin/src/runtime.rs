//! TensorFlow calls the plugin from its own threads, synchronously; they block on
//! futures run on the process's one entraflow runtime, which a forked child (a
//! `tf.data` service worker, a multiprocessing pool) rebuilds for itself.

use std::future::Future;
use std::sync::Arc;

use crate::status::FsError;

/// This process's runtime (shared with the credentials; see
/// [`entraflow_credential::process_runtime`]).
pub(crate) fn handle() -> Result<Arc<tokio::runtime::Runtime>, FsError> {
    entraflow_credential::process_runtime().map_err(|e| FsError::Unavailable {
        url: "local async runtime".into(),
        attempts: 1,
        reason: e.to_string(),
    })
}

/// Runs `future` to completion from a TensorFlow thread. Must not be called from
/// inside the runtime (the FFI layer is the only caller, and TensorFlow's threads
/// are never runtime threads).
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, FsError> {
    Ok(handle()?.block_on(future))
}
