//! The `az://` filesystem of the TensorFlow plugin, for Python: the classes behind
//! `entraflow.fsspec` (PyTorch, JAX/Grain and pandas read the same data with the same
//! identity as TensorFlow, through the same Rust client, read-ahead and retries).
//!
//! Paths are whole URIs (`entraflow://account/container/blob`; the scheme is only
//! echoed in messages). Every call that may touch the network releases the GIL.
//! Errors become the Python exceptions fsspec callers catch: a missing blob is
//! `FileNotFoundError`, a refusal `PermissionError` carrying the gate's explanation
//! (it names the role that would grant the action), anything else an `OSError`.
//!
//! Fork safety is the plugin's: its client and runtime are rebuilt in a forked child
//! (a DataLoader worker), so a filesystem made in the parent works there.

use std::sync::{Arc, Mutex, MutexGuard};

use entraflow_tfplugin::{AzFilesystem, FileStat, FsError, Reader, Writer};
use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyNotImplementedError, PyOSError, PyPermissionError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::Credential;

/// Maps a filesystem error to the exception fsspec users expect.
fn to_py(err: FsError) -> PyErr {
    let message = err.to_string();
    match err {
        FsError::NotFound(_) => PyFileNotFoundError::new_err(message),
        FsError::PermissionDenied { .. }
        | FsError::Unauthenticated { .. }
        | FsError::Credential(_) => PyPermissionError::new_err(message),
        FsError::AlreadyExists(_) => PyFileExistsError::new_err(message),
        FsError::InvalidPath(_) | FsError::Misconfigured(_) => PyValueError::new_err(message),
        FsError::Unimplemented(_) => PyNotImplementedError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `(size, mtime_nsec, is_directory)`, the shape the Python layer turns into fsspec's
/// info dict.
type StatTuple = (u64, i64, bool);

fn stat_tuple(s: FileStat) -> StatTuple {
    (s.length, s.mtime_nsec, s.is_directory)
}

/// The filesystem: identity from the environment (the plugin's `DefaultCredential`
/// chain), or from an `entraflow.identity` credential.
#[pyclass(module = "entraflow._native", frozen)]
pub(crate) struct BlobFileSystem {
    inner: Arc<AzFilesystem>,
}

#[pymethods]
impl BlobFileSystem {
    #[new]
    #[pyo3(signature = (credential=None))]
    fn new(credential: Option<PyRef<'_, Credential>>) -> Self {
        let inner = match credential {
            Some(c) => AzFilesystem::with_credential(c.shared.clone()),
            None => AzFilesystem::from_env(),
        };
        BlobFileSystem {
            inner: Arc::new(inner),
        }
    }

    /// `(size, mtime_nsec, is_directory)`; `FileNotFoundError` if nothing is there.
    fn stat(&self, py: Python<'_>, uri: &str) -> PyResult<StatTuple> {
        py.detach(|| self.inner.stat(uri))
            .map(stat_tuple)
            .map_err(to_py)
    }

    /// `[(name, size, mtime_nsec, is_directory)]` directly inside a directory, names
    /// relative to it, from one List Blobs query.
    fn list_dir(&self, py: Python<'_>, uri: &str) -> PyResult<Vec<(String, u64, i64, bool)>> {
        let entries = py.detach(|| self.inner.list_dir(uri)).map_err(to_py)?;
        Ok(entries
            .into_iter()
            .map(|(name, s)| (name, s.length, s.mtime_nsec, s.is_directory))
            .collect())
    }

    /// Paths matching a glob (TensorFlow's rules), with one List Blobs query.
    fn glob(&self, py: Python<'_>, pattern: &str) -> PyResult<Vec<String>> {
        py.detach(|| self.inner.matching_paths(pattern))
            .map_err(to_py)
    }

    /// Bytes `start..end` (both absolute, `end` exclusive) in one ranged GET, or the
    /// whole blob when neither is given. A range starting at or after the end is
    /// empty, as for a local file.
    #[pyo3(signature = (uri, start=None, end=None))]
    fn cat(
        &self,
        py: Python<'_>,
        uri: &str,
        start: Option<u64>,
        end: Option<u64>,
    ) -> PyResult<Py<PyBytes>> {
        let data = py
            .detach(|| match (start, end) {
                (None, None) => self.inner.read_all(uri),
                (start, end) => {
                    let range = start.unwrap_or(0)..end.unwrap_or(u64::MAX);
                    if range.is_empty() {
                        return Ok(Default::default());
                    }
                    match self.inner.read_range(uri, range) {
                        // 416: the range starts past the end of the blob.
                        Err(FsError::Service { status: 416, .. }) => {
                            self.inner.stat(uri).map(|_| Default::default())
                        }
                        other => other,
                    }
                }
            })
            .map_err(to_py)?;
        Ok(PyBytes::new(py, &data).unbind())
    }

    /// Writes `data` as the whole blob (Put Blob, or blocks for a large one).
    fn put(&self, py: Python<'_>, uri: &str, data: &[u8]) -> PyResult<()> {
        py.detach(|| {
            let writer = self.inner.open_write(uri, false)?;
            writer.append(data)?;
            writer.close()
        })
        .map_err(to_py)
    }

    /// A reader with the plugin's read-ahead (one request to open: its size).
    fn open_read(&self, py: Python<'_>, uri: &str) -> PyResult<BlobReader> {
        let reader = py.detach(|| self.inner.open_read(uri)).map_err(to_py)?;
        Ok(BlobReader {
            size: reader.size(),
            reader,
            position: Mutex::new(0),
        })
    }

    /// A writer whose data becomes visible, all at once, on `close`.
    #[pyo3(signature = (uri, append=false))]
    fn open_write(&self, py: Python<'_>, uri: &str, append: bool) -> PyResult<BlobWriter> {
        let writer = py
            .detach(|| self.inner.open_write(uri, append))
            .map_err(to_py)?;
        Ok(BlobWriter {
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Delete Blob.
    fn delete_file(&self, py: Python<'_>, uri: &str) -> PyResult<()> {
        py.detach(|| self.inner.delete_file(uri)).map_err(to_py)
    }

    /// Forgets an empty (virtual) directory; `OSError` if it is not empty.
    fn delete_dir(&self, py: Python<'_>, uri: &str) -> PyResult<()> {
        py.detach(|| self.inner.delete_dir(uri)).map_err(to_py)
    }

    /// Makes a virtual directory (no marker blob; see the plugin's `create_dir`).
    #[pyo3(signature = (uri, recursive=true))]
    fn create_dir(&self, py: Python<'_>, uri: &str, recursive: bool) -> PyResult<()> {
        py.detach(|| self.inner.create_dir(uri, recursive))
            .map_err(to_py)
    }

    /// Copy Blob, server side, same account.
    fn copy_file(&self, py: Python<'_>, src: &str, dst: &str) -> PyResult<()> {
        py.detach(|| self.inner.copy_file(src, dst)).map_err(to_py)
    }

    /// Copy Blob then Delete Blob, for a file or every file under a directory.
    fn rename(&self, py: Python<'_>, src: &str, dst: &str) -> PyResult<()> {
        py.detach(|| self.inner.rename_file(src, dst))
            .map_err(to_py)
    }

    fn __repr__(&self) -> String {
        "<entraflow BlobFileSystem>".to_owned()
    }
}

/// An open blob for reading: `read(n)`, `seek`, `tell` over the plugin's reader, which
/// reads ahead in large ranged GETs while the file is scanned sequentially.
#[pyclass(module = "entraflow._native", frozen)]
pub(crate) struct BlobReader {
    reader: Reader,
    size: u64,
    position: Mutex<u64>,
}

#[pymethods]
impl BlobReader {
    /// Up to `n` bytes from the current position (all that is left when `n` is
    /// negative or absent); empty at the end.
    #[pyo3(signature = (n=-1))]
    fn read(&self, py: Python<'_>, n: i64) -> PyResult<Py<PyBytes>> {
        let data = py
            .detach(|| {
                let mut position = lock(&self.position);
                let left = self.size.saturating_sub(*position);
                let want = if n < 0 { left } else { left.min(n as u64) };
                let mut buf = vec![0u8; want as usize];
                let mut filled = 0;
                // The reader may return less than asked only at the end of the blob.
                while filled < buf.len() {
                    let got = self
                        .reader
                        .read(*position + filled as u64, &mut buf[filled..])?;
                    if got == 0 {
                        break;
                    }
                    filled += got;
                }
                buf.truncate(filled);
                *position += filled as u64;
                Ok::<_, FsError>(buf)
            })
            .map_err(to_py)?;
        Ok(PyBytes::new(py, &data).unbind())
    }

    /// Moves the position (`whence` as in `io`: 0 start, 1 current, 2 end); returns it.
    #[pyo3(signature = (offset, whence=0))]
    fn seek(&self, offset: i64, whence: i32) -> PyResult<u64> {
        let mut position = lock(&self.position);
        let base = match whence {
            0 => 0,
            1 => *position as i64,
            2 => self.size as i64,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "whence must be 0, 1 or 2, not {whence}"
                )));
            }
        };
        let target = base + offset;
        if target < 0 {
            return Err(PyValueError::new_err(format!(
                "cannot seek to {target}, before the start of the blob"
            )));
        }
        *position = target as u64;
        Ok(*position)
    }

    fn tell(&self) -> u64 {
        *lock(&self.position)
    }

    /// The blob's size when it was opened.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }
}

/// An open blob for writing: blocks are staged (Put Block) as data arrives and
/// committed by `close` (Put Block List), so a reader never sees a partial file.
#[pyclass(module = "entraflow._native", frozen)]
pub(crate) struct BlobWriter {
    writer: Mutex<Option<Writer>>,
}

impl BlobWriter {
    fn with<T>(&self, f: impl FnOnce(&Writer) -> Result<T, FsError>) -> PyResult<T> {
        match lock(&self.writer).as_ref() {
            Some(w) => f(w).map_err(to_py),
            None => Err(PyValueError::new_err(
                "I/O operation on a closed blob writer",
            )),
        }
    }
}

#[pymethods]
impl BlobWriter {
    /// Appends `data`; returns how many bytes were taken (all of them).
    fn write(&self, py: Python<'_>, data: &[u8]) -> PyResult<usize> {
        py.detach(|| self.with(|w| w.append(data)))?;
        Ok(data.len())
    }

    /// Stages everything written so far (durable on the service, not yet visible).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.with(Writer::sync))
    }

    fn tell(&self) -> PyResult<u64> {
        self.with(Writer::tell)
    }

    /// Commits the blob. Closing twice is a no-op, as for Python files.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match lock(&self.writer).take() {
            Some(w) => w.close().map_err(to_py),
            None => Ok(()),
        })
    }

    /// Drops the staged blocks without committing: the previous blob (or none) stays.
    fn discard(&self) {
        lock(&self.writer).take();
    }

    #[getter]
    fn closed(&self) -> bool {
        lock(&self.writer).is_none()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BlobFileSystem>()?;
    m.add_class::<BlobReader>()?;
    m.add_class::<BlobWriter>()?;
    Ok(())
}
