//! A TensorFlow filesystem plugin for `az://<account>/<container>/<path>`, written in
//! Rust: TensorFlow's modular filesystem C API (`filesystem_interface.h`) over the
//! Azure Blob REST API, with Microsoft Entra ID tokens from the credential chain.
//! Existing TensorFlow code (`tf.data.TFRecordDataset`, `tf.io.gfile`, `model.save`,
//! checkpoints) gets identity-enforced storage by changing a path.
//!
//! **For:** being loaded by `tf.experimental.register_filesystem_plugin(path)` (the
//! `cdylib`), and the same filesystem as safe Rust ([`AzFilesystem`]). **Not for:**
//! issuing or caching tokens (`entraflow-credential`) or authorizing requests (the
//! gate or Azure Storage does that).
//!
//! # Design
//! All `unsafe` is in one module, `ffi`: the `#[repr(C)]` tables, `TF_InitPlugin`,
//! and `TF_SetStatus` looked up at run time with `dlsym`, so this library has no
//! link-time dependency on TensorFlow. Everything else is safe and testable without
//! TensorFlow: [`AzFilesystem`] (what each callback does), a small Blob REST client
//! (`blob`: ranged GETs, List Blobs, Put Block/Put Block List, Copy Blob, bounded
//! retries, 403 never retried), the read-ahead planner ([`readahead`]), TensorFlow's
//! glob rules ([`glob`]), and the status mapping ([`FsError::code`]).
//!
//! TensorFlow's threads call in synchronously and block on one tokio runtime per
//! process; read-ahead GETs and block uploads run on it concurrently, over one
//! pooled HTTP/1.1 client (separate connections spread TLS work over cores).
//!
//! # Semantics on a flat namespace
//! - Writes are staged as Put Block calls (8 MiB) while TensorFlow appends and
//!   become visible only on `close` (Put Block List; one Put Blob for small
//!   files). `flush`/`sync` stage what is buffered but do not commit, so a reader
//!   never sees a partial checkpoint. Appendable files re-stage the existing blob.
//! - Directories are virtual: a directory exists when some blob name has it as a
//!   prefix. No marker blobs (the gate, like a file-backed store, cannot hold a
//!   blob `d` beside blobs `d/...`); an empty directory from `create_dir` is
//!   remembered by the process that made it.
//! - `rename_file` is Copy Blob + Delete Blob (per file for a directory): not atomic.
//! - `get_matching_paths` is one flat List Blobs query for the glob's literal prefix,
//!   matched with TensorFlow's rules (`*` never crosses `/`).
//!
//! # Configuration (environment, read when the filesystem is first used)
//! `ENTRAFLOW_BLOB_ENDPOINT` (`https://127.0.0.1:PORT/<account>` for the gate;
//! default `https://<account>.blob.core.windows.net`), the azure-identity variables
//! for [`entraflow_credential::DefaultCredential`], `SSL_CERT_FILE`,
//! `ENTRAFLOW_RUN_ID` (sent as `x-ms-entraflow-run-id` and in
//! `x-ms-client-request-id = <run id>:<uuid>`), `ENTRAFLOW_READ_AHEAD` (8 MiB),
//! `ENTRAFLOW_READ_CONCURRENCY` (4), `ENTRAFLOW_LOG` (stderr logs), and at
//! registration `ENTRAFLOW_TF_SCHEME` (`az`; use `azent` when tensorflow-io holds `az`).
//!
//! ```
//! use entraflow_tfplugin::{BlobPath, FsError, TfCode, glob};
//! let p = BlobPath::parse("az://myaccount/data/train/shard-00001.tfrecord").unwrap();
//! assert_eq!((p.container.as_str(), p.blob.as_str()), ("data", "train/shard-00001.tfrecord"));
//! // A glob becomes one List Blobs query with this prefix.
//! assert_eq!(glob::literal_prefix("train/shard-*.tfrecord"), "train/shard-");
//! // A 403 from storage surfaces as tf.errors.PermissionDeniedError.
//! let e = FsError::from_response("az://myaccount/data/x", 403, "AuthorizationPermissionMismatch".into(), "why".into());
//! assert_eq!(e.code(), TfCode::PermissionDenied);
//! ```
#![deny(unsafe_code)]

mod blob;
mod config;
mod ffi;
mod fs;
pub mod glob;
mod path;
pub mod readahead;
mod runtime;
mod status;

pub use blob::{API_VERSION, BlobClient, Listing, Properties};
pub use config::{
    ALTERNATIVE_SCHEME, Config, DEFAULT_SCHEME, ENTRAFLOW_BLOB_ENDPOINT, ENTRAFLOW_LOG,
    ENTRAFLOW_READ_AHEAD, ENTRAFLOW_READ_CONCURRENCY, ENTRAFLOW_TF_SCHEME, RUN_ID_HEADER,
    STORAGE_SCOPE, WRITE_BLOCK,
};
pub use fs::{AzFilesystem, FileStat, Reader, Writer};
pub use path::BlobPath;
pub use status::{FsError, TfCode};
